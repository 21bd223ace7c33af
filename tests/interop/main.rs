//! Interop against an independent, OpenID-certified authorization server: node
//! `oidc-provider` from npm (pinned in `package.json`), started by `harness.rs` from
//! `server.mjs` on an ephemeral loopback port, one server per test. tokenward talks to it
//! with its real `ReqwestClient`.
//!
//! The cases go through the core `TokenCache` directly (this file), and through the two
//! integrations (`integrations.rs`): tokenward-tower's `AuthLayer` around a real hyper
//! client (also inside a timeout → `ClassifiedRetry` stack) and tokenward-reqwest's
//! `AuthMiddleware` on a reqwest-middleware client.
//!
//! The node dependencies must be installed (`npm ci --prefix tests/interop`; the README's
//! test command does it): without them every test here fails, it never skips.
//!
//! Real time, so nothing asserts timing: counts come from the server's own counters
//! (oidc-provider's events), outcomes from the responses.

mod assertion;
mod cli;
mod discovery;
mod fleet;
mod harness;
mod integrations;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use http::header::AUTHORIZATION;
use secrecy::ExposeSecret;
use tokenward::store::MemoryStore;
use tokenward::{
    Action, ClientAuth, ClientCredentials, Error, Failure, Introspection, RefreshTokenGrant,
    Revocation, TokenCache, TokenSource, TokenTypeHint,
};

use harness::{Provider, http};

fn cc_grant(op: &Provider) -> ClientCredentials {
    ClientCredentials::builder(&op.token_endpoint, &op.cc.id)
        .client_secret(&op.cc.secret)
        .auth_method(ClientAuth::Post)
        .scope("jobs.read")
        .param("resource", &op.resource)
        .build()
        .unwrap()
}

fn refresh_grant(op: &Provider, store: MemoryStore) -> RefreshTokenGrant {
    RefreshTokenGrant::from_store(&op.token_endpoint, &op.web.id, store)
        .client_secret(&op.web.secret)
        .build()
        .unwrap()
}

/// RFC 7009 revocation as the client-credentials client (which may revoke its own tokens).
fn cc_revocation(op: &Provider) -> Revocation {
    Revocation::builder(&op.revocation_endpoint, &op.cc.id)
        .client_secret(&op.cc.secret)
        .auth_method(ClientAuth::Post)
        .build()
        .unwrap()
}

/// RFC 7662 introspection as the resource server's client.
fn introspection(op: &Provider) -> Introspection {
    Introspection::builder(&op.introspection_endpoint, &op.rs.id)
        .client_secret(&op.rs.secret)
        .build()
        .unwrap()
}

async fn get(http: &reqwest::Client, url: &str, auth: &HeaderValue) -> reqwest::Response {
    http.get(url)
        .header(AUTHORIZATION, auth.clone())
        .send()
        .await
        .unwrap()
}

/// The bare token of a `Bearer ..` header value.
fn bearer(header: &HeaderValue) -> &str {
    header.to_str().unwrap().strip_prefix("Bearer ").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_through_the_cache() {
    let op = Provider::start(300);
    let http = http();
    let cache = TokenCache::new(cc_grant(&op));

    // 50 concurrent first callers: one token request, one token, accepted by the resource.
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (cache, http, url) = (cache.clone(), http.clone(), op.resource.clone());
            tokio::spawn(async move {
                let header = cache.header().await.unwrap();
                let status = get(&http, &url, &header).await.status();
                (header, status)
            })
        })
        .collect();
    let mut headers = HashSet::new();
    for task in tasks {
        let (header, status) = task.await.unwrap();
        assert_eq!(status, 200);
        headers.insert(header);
    }
    assert_eq!(headers.len(), 1);
    let first = headers.into_iter().next().unwrap();
    let token = cache.cached().unwrap();
    assert_eq!(token.scope(), Some("jobs.read"));
    assert_eq!(token.lifetime(), Duration::from_secs(300));
    let stats = op.stats(&http).await;
    assert_eq!(stats.grants("client_credentials"), 1);
    assert_eq!(stats.resource(200), 50);

    // force_refresh: a new token at once, and it works.
    let forced = cache.force_refresh().await.unwrap();
    assert_ne!(forced.header_value(), &first);
    assert_eq!(
        get(&http, &op.resource, forced.header_value())
            .await
            .status(),
        200
    );
    assert_eq!(op.stats(&http).await.grants("client_credentials"), 2);

    // Invalidate by value: the replaced header drops nothing, the cached one is dropped and
    // the next read fetches a third token.
    assert!(!cache.invalidate(&first));
    assert!(cache.invalidate(forced.header_value()));
    let third = cache.header().await.unwrap();
    assert_ne!(&third, forced.header_value());
    assert_eq!(get(&http, &op.resource, &third).await.status(), 200);
    assert_eq!(op.stats(&http).await.grants("client_credentials"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_code_with_pkce_then_refresh_from_the_store() {
    let op = Provider::start(300);
    let http = http();
    let flow = op.code_flow();
    let request = flow.authorize_with(&[("prompt", "consent"), ("resource", &op.resource)]);
    assert!(request.url().contains("code_challenge_method=S256"));
    let callback = op.browse(&http, request.url()).await;
    // oidc-provider adds RFC 9207's `iss` to the callback; the exchange ignores it.
    assert!(callback.contains("iss="), "{callback}");

    let token = flow.exchange(request, &callback).await.unwrap();
    assert_eq!(token.scope(), Some("jobs.read"));
    assert_eq!(token.lifetime(), Duration::from_secs(300));
    let first_refresh = token.refresh_token().unwrap().expose_secret().to_owned();
    assert_eq!(
        get(&http, &op.resource, token.header_value())
            .await
            .status(),
        200
    );

    let store = MemoryStore::new();
    tokenward::store_refresh_token(&token, &store)
        .await
        .unwrap();
    let stored = store.snapshot().unwrap();
    assert_eq!(stored.refresh_token.expose_secret(), first_refresh);
    assert_eq!(stored.scope.as_deref(), Some("jobs.read"));

    // Refresh from the store: a new access token, and a rotated refresh token persisted.
    let grant = refresh_grant(&op, store.clone());
    let fresh = grant.fetch().await.unwrap();
    assert_ne!(fresh.header_value(), token.header_value());
    assert_eq!(fresh.scope(), Some("jobs.read"));
    assert_eq!(
        get(&http, &op.resource, fresh.header_value())
            .await
            .status(),
        200
    );
    let rotated = store.snapshot().unwrap().refresh_token;
    assert_ne!(rotated.expose_secret(), first_refresh);
    assert_eq!(
        grant.current_refresh_token().unwrap().expose_secret(),
        rotated.expose_secret()
    );

    let stats = op.stats(&http).await;
    assert_eq!(stats.grants("authorization_code"), 1);
    assert_eq!(stats.grants("refresh_token"), 1);
    assert_eq!(stats.refresh_token_reuse(), 0);
    assert_eq!(stats.grants_revoked(), 0);
}

/// The oracle of the rotation test below: oidc-provider notices a rotated refresh token
/// presented again and revokes the whole grant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_refresh_token_revokes_the_grant() {
    let op = Provider::start(300);
    let http = http();
    let (token, store) = op.authorized_store(&http).await;
    let original = token.refresh_token().unwrap().expose_secret().to_owned();
    let grant = refresh_grant(&op, store);
    let rotated = grant.fetch().await.unwrap();

    // Someone presents the rotated-out refresh token.
    let replay = RefreshTokenGrant::builder(&op.token_endpoint, &op.web.id, original)
        .client_secret(&op.web.secret)
        .build()
        .unwrap();
    let error = replay.fetch().await.unwrap_err();
    assert!(
        matches!(error, Error::ReauthorizationRequired(_)),
        "{error}"
    );

    let stats = op.stats(&http).await;
    assert_eq!(stats.refresh_token_reuse(), 1);
    assert_eq!(stats.grants_revoked(), 1);
    // The whole grant is gone: the current refresh token and its access token too.
    let error = grant.fetch().await.unwrap_err();
    assert!(error.is_reauthorization_required(), "{error}");
    let response = get(&http, &op.resource, rotated.header_value()).await;
    assert_eq!(response.status(), 401);
}

/// 50 callers through one cache over a rotating refresh token, with 3-second access tokens
/// and forced refreshes mixed in, for 10 seconds: not one rotated refresh token is presented
/// twice (oidc-provider would revoke the grant), and the grant still works at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_under_50_concurrent_callers_never_reuses_a_refresh_token() {
    const CALLERS: usize = 50;
    const RUN: Duration = Duration::from_secs(10);
    let op = Provider::start(3);
    let http = http();
    let (_, store) = op.authorized_store(&http).await;
    let grant = Arc::new(refresh_grant(&op, store.clone()));
    let cache = TokenCache::new(Arc::clone(&grant));

    let until = tokio::time::Instant::now() + RUN;
    let tasks: Vec<_> = (0..CALLERS)
        .map(|caller| {
            let (cache, http, url) = (cache.clone(), http.clone(), op.resource.clone());
            tokio::spawn(async move {
                let (mut ok, mut retried, mut seen) = (0u64, 0u64, HashSet::new());
                let mut round = 0u64;
                while tokio::time::Instant::now() < until {
                    // A few callers force a refresh now and then, on top of the expiries.
                    if caller % 10 == 0 && round % 20 == 10 {
                        cache.force_refresh().await.unwrap();
                    }
                    let header = cache.header().await.unwrap();
                    let response = get(&http, &url, &header).await;
                    match response.status().as_u16() {
                        200 => ok += 1,
                        // A token that expired on the way: refresh and retry once.
                        401 => {
                            let action =
                                tokenward::classify(response.status(), response.headers(), None)
                                    .map(|c| c.action);
                            assert_eq!(action, Some(Action::RefreshAndRetryOnce));
                            cache.invalidate(&header);
                            let fresh = cache.header().await.unwrap();
                            assert_eq!(get(&http, &url, &fresh).await.status(), 200);
                            retried += 1;
                        }
                        status => panic!("the resource answered {status}"),
                    }
                    seen.insert(header);
                    round += 1;
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
                (ok, retried, seen)
            })
        })
        .collect();
    let (mut ok, mut retried, mut seen) = (0, 0, HashSet::new());
    for task in tasks {
        let (o, r, s) = task.await.unwrap();
        ok += o;
        retried += r;
        seen.extend(s);
    }

    let stats = op.stats(&http).await;
    let rotations = stats.grants("refresh_token");
    eprintln!(
        "rotation: {ok} requests accepted, {retried} retried after 401, {} access tokens, \
         {rotations} refreshes; server counters: {stats:?}",
        seen.len()
    );
    assert_eq!(stats.refresh_token_reuse(), 0, "{}", op.stderr());
    assert_eq!(stats.grant_errors("invalid_grant"), 0);
    assert_eq!(stats.grants_revoked(), 0);
    assert!(ok > 0);
    assert!(rotations >= 2, "{rotations} refreshes in {RUN:?}");
    // Every refresh rotated the refresh token, and every rotation was persisted once.
    assert_eq!(store.writes(), 1 + rotations);
    let stored = store.snapshot().unwrap().refresh_token;
    assert_eq!(
        grant.current_refresh_token().unwrap().expose_secret(),
        stored.expose_secret()
    );

    // The grant still works: the stored refresh token is active, and refreshes.
    let introspection = introspection(&op);
    let info = introspection
        .introspect_with_hint(stored.expose_secret(), Some(TokenTypeHint::RefreshToken))
        .await
        .unwrap();
    assert!(info.active);
    assert_eq!(info.client_id.as_deref(), Some(op.web.id.as_str()));
    let last = cache.force_refresh().await.unwrap();
    assert_eq!(
        get(&http, &op.resource, last.header_value()).await.status(),
        200
    );
    assert_eq!(op.stats(&http).await.refresh_token_reuse(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_reports_active_and_inactive_tokens() {
    let op = Provider::start(300);
    let http = http();
    let cache = TokenCache::new(cc_grant(&op));
    let header = cache.header().await.unwrap();
    let introspection = introspection(&op);

    let info = introspection.introspect(bearer(&header)).await.unwrap();
    assert!(info.active);
    assert_eq!(info.scope.as_deref(), Some("jobs.read"));
    assert_eq!(info.scopes().collect::<Vec<_>>(), ["jobs.read"]);
    assert_eq!(info.client_id.as_deref(), Some(op.cc.id.as_str()));
    assert_eq!(info.token_type.as_deref(), Some("Bearer"));
    assert_eq!(info.iss.as_deref(), Some(op.issuer.as_str()));
    assert_eq!(
        info.aud.as_ref().and_then(|a| a.as_str()),
        Some(op.resource.as_str())
    );
    assert_eq!(info.exp.unwrap() - info.iat.unwrap(), 300);

    let unknown = introspection.introspect("no-such-token").await.unwrap();
    assert!(!unknown.active);

    // Revoked by its client: inactive, and rejected by the resource.
    let revocation = cc_revocation(&op);
    revocation
        .revoke(bearer(&header), Some(TokenTypeHint::AccessToken))
        .await
        .unwrap();
    assert!(
        !introspection
            .introspect(bearer(&header))
            .await
            .unwrap()
            .active
    );
    assert_eq!(get(&http, &op.resource, &header).await.status(), 401);
    // Revoking again is fine (RFC 7009 §2.2).
    revocation.revoke(bearer(&header), None).await.unwrap();

    // A wrong secret is a configuration error, not an inactive token.
    let wrong = Introspection::builder(&op.introspection_endpoint, &op.rs.id)
        .client_secret("not-the-secret")
        .build()
        .unwrap();
    let error = wrong.introspect(bearer(&header)).await.unwrap_err();
    assert!(matches!(error, Error::InvalidClient(_)), "{error}");
}

/// Revoking the access token (not the grant): the resource answers 401 `invalid_token`,
/// the classification says refresh and retry once, and one refresh recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_access_token_is_invalid_token_then_recovered() {
    let op = Provider::start(300);
    let http = http();
    let (_, store) = op.authorized_store(&http).await;
    let cache = TokenCache::new(refresh_grant(&op, store));
    let first = cache.header().await.unwrap();
    assert_eq!(get(&http, &op.resource, &first).await.status(), 200);

    let revocation = Revocation::builder(&op.revocation_endpoint, &op.web.id)
        .client_secret(&op.web.secret)
        .build()
        .unwrap();
    revocation
        .revoke(bearer(&first), Some(TokenTypeHint::AccessToken))
        .await
        .unwrap();

    let response = get(&http, &op.resource, &first).await;
    assert_eq!(response.status(), 401);
    let classification = tokenward::classify(response.status(), response.headers(), None).unwrap();
    assert!(
        matches!(classification.failure, Failure::InvalidToken { .. }),
        "{:?}",
        classification.failure
    );
    assert_eq!(classification.action, Action::RefreshAndRetryOnce);

    assert!(cache.invalidate(&first));
    assert!(!cache.invalidate(&first));
    let second = cache.header().await.unwrap();
    assert_ne!(second, first);
    assert_eq!(get(&http, &op.resource, &second).await.status(), 200);

    // One refresh to fill the cache, one to recover; revoking an access token left the
    // grant alone.
    let stats = op.stats(&http).await;
    assert_eq!(stats.grants("refresh_token"), 2);
    assert_eq!(stats.grants_revoked(), 0);
    assert_eq!(stats.refresh_token_reuse(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insufficient_scope_is_not_retried() {
    let op = Provider::start(300);
    let http = http();
    let cache = TokenCache::new(cc_grant(&op));
    let header = cache.header().await.unwrap();
    let read = get(&http, &op.resource_requiring("jobs.read"), &header).await;
    assert_eq!(read.status(), 200);

    let response = get(&http, &op.resource_requiring("jobs.write"), &header).await;
    assert_eq!(response.status(), 403);
    let classification = tokenward::classify(response.status(), response.headers(), None).unwrap();
    assert!(
        matches!(
            &classification.failure,
            Failure::InsufficientScope { scope: Some(scope), .. } if scope == "jobs.write"
        ),
        "{:?}",
        classification.failure
    );
    assert_eq!(
        classification.action,
        Action::Regrant {
            missing: Some("jobs.write".into())
        }
    );
    assert!(!classification.failure.is_retryable());
    assert!(!classification.action.is_retry());

    // Nothing was refreshed: the same token is cached, one token request was made.
    assert_eq!(cache.header().await.unwrap(), header);
    let stats = op.stats(&http).await;
    assert_eq!(stats.grants("client_credentials"), 1);
    assert_eq!(stats.resource(403), 1);
}
