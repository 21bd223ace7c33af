//! The authorization code flow with PKCE, token introspection and revocation, against the
//! testkit's fake authorization server, in-process and under paused Tokio time.

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use secrecy::ExposeSecret;
use tokenward::authorization_code::{AuthorizationCode, AuthorizationRequest, store_refresh_token};
use tokenward::introspection::{Introspection, Revocation, TokenTypeHint};
use tokenward::store::{MemoryStore, StoredGrant, TokenStore};
use tokenward::{ClientAuth, Error, HttpClient, RefreshTokenGrant, Token, TokenSource};
use tokenward_testkit::{AuthMethod, Endpoint, FakeServer, Fault};

const WEB: &str = "web-app";
const WEB_SECRET: &str = "ws-Secret-77c1";
const SPA: &str = "spa";
const RS: &str = "resource-server";
const RS_SECRET: &str = "rs-Secret-90af";
const CALLBACK: &str = "https://app.example.com/callback";
const SPA_CALLBACK: &str = "http://127.0.0.1:8080/callback";
/// RFC 7636 Appendix B.
const RFC_VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const RFC_CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

/// A confidential web app, a public SPA, and a resource server that introspects.
fn server() -> FakeServer {
    FakeServer::builder()
        .client(WEB, WEB_SECRET)
        .redirect_uri(WEB, CALLBACK)
        .public_client(SPA)
        .redirect_uri(SPA, SPA_CALLBACK)
        .client(RS, RS_SECRET)
        .build()
}

fn web_flow(server: &FakeServer) -> AuthorizationCode {
    AuthorizationCode::builder(WEB)
        .authorization_url(server.authorize_url())
        .token_url(server.token_url())
        .redirect_uri(CALLBACK)
        .client_secret(WEB_SECRET)
        .scope("jobs.read jobs.write")
        .http_client(server.http_client())
        .build()
        .unwrap()
}

fn spa_flow(server: &FakeServer) -> AuthorizationCode {
    AuthorizationCode::builder(SPA)
        .authorization_url(server.authorize_url())
        .token_url(server.token_url())
        .redirect_uri(SPA_CALLBACK)
        .auth_method(ClientAuth::None)
        .scope("jobs.read")
        .http_client(server.http_client())
        .build()
        .unwrap()
}

fn introspection(server: &FakeServer, secret: &str) -> Introspection {
    Introspection::builder(server.introspect_url(), RS)
        .client_secret(secret)
        .http_client(server.http_client())
        .build()
        .unwrap()
}

fn revocation(server: &FakeServer) -> Revocation {
    Revocation::builder(server.revoke_url(), WEB)
        .client_secret(WEB_SECRET)
        .http_client(server.http_client())
        .build()
        .unwrap()
}

/// Runs the whole flow for the web app and returns its token.
async fn authorize_web(server: &FakeServer) -> Token {
    let flow = web_flow(server);
    let request = flow.authorize();
    let callback = server.approve(request.url()).unwrap();
    flow.exchange(request, &callback).await.unwrap()
}

fn refresh_token(token: &Token) -> String {
    token
        .refresh_token()
        .expect("a refresh token")
        .expose_secret()
        .to_owned()
}

/// `GET /resource` with the token; the status and the `WWW-Authenticate` header.
async fn resource(server: &FakeServer, access_token: &str) -> (StatusCode, Option<String>) {
    let request = http::Request::get(server.resource_url())
        .header(AUTHORIZATION, format!("Bearer {access_token}"))
        .body(Bytes::new())
        .unwrap();
    let response = server.http_client().send(request).await.unwrap();
    let challenge = response
        .headers()
        .get(WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned());
    (response.status(), challenge)
}

fn query_pairs(url: &str) -> Vec<(String, String)> {
    let query = url.split_once('?').unwrap().1;
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

fn query_param(url: &str, name: &str) -> Option<String> {
    query_pairs(url)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

// ---------------------------------------------------------------------------------------------
// The flow

#[tokio::test(start_paused = true)]
async fn confidential_client_flow_stores_a_refresh_token_that_refreshes() {
    let server = server();
    let flow = web_flow(&server);
    let request = flow.authorize();
    let callback = server.approve(request.url()).unwrap();
    assert!(callback.starts_with("code="), "{callback}");
    let token = flow.exchange(request, &callback).await.unwrap();
    assert_eq!(token.scope(), Some("jobs.read jobs.write"));
    assert_eq!(
        resource(&server, token.access_token().expose_secret())
            .await
            .0,
        200
    );

    let sent = server.last_token_request().unwrap();
    assert_eq!(sent.grant_type, "authorization_code");
    assert_eq!(sent.auth_method, AuthMethod::Basic);
    assert_eq!(sent.param("redirect_uri"), Some(CALLBACK));
    assert_eq!(sent.param("code_verifier").map(str::len), Some(43));

    let store = MemoryStore::new();
    store_refresh_token(&token, &store).await.unwrap();
    let stored = store.snapshot().unwrap();
    assert_eq!(stored.refresh_token.expose_secret(), refresh_token(&token));
    assert_eq!(stored.scope.as_deref(), Some("jobs.read jobs.write"));
    assert!(stored.stored_at.is_some());
    assert!(stored.last_used.is_none());

    let grant = RefreshTokenGrant::builder(server.token_url(), WEB, refresh_token(&token))
        .client_secret(WEB_SECRET)
        .http_client(server.http_client())
        .build()
        .unwrap();
    let refreshed = grant.fetch().await.unwrap();
    assert_eq!(refreshed.scope(), Some("jobs.read jobs.write"));
    assert_ne!(
        refreshed.access_token().expose_secret(),
        token.access_token().expose_secret()
    );
    let counters = server.counters();
    assert_eq!(counters.authorize_requests, 1);
    assert_eq!(counters.codes_issued, 1);
    assert_eq!(counters.issued_for("authorization_code"), 1);
    assert_eq!(counters.issued_for("refresh_token"), 1);
}

#[tokio::test(start_paused = true)]
async fn public_client_flow_with_pkce_and_a_store() {
    let server = server();
    let flow = spa_flow(&server);
    let request = flow.authorize();
    let callback = server.approve(request.url()).unwrap();
    let token = flow.exchange(request, &callback).await.unwrap();
    let sent = server.last_token_request().unwrap();
    assert_eq!(sent.auth_method, AuthMethod::None);
    assert_eq!(sent.client_id, SPA);

    // The store is where the refresh grant finds (and rotates) the refresh token.
    let store = MemoryStore::new();
    store_refresh_token(&token, &store).await.unwrap();
    let grant = RefreshTokenGrant::from_store(server.token_url(), SPA, store.clone())
        .auth_method(ClientAuth::None)
        .http_client(server.http_client())
        .build()
        .unwrap();
    grant.fetch().await.unwrap();
    let rotated = store.snapshot().unwrap().refresh_token;
    assert_ne!(rotated.expose_secret(), refresh_token(&token));

    // The builder form works as well, from the rotated token.
    let grant = RefreshTokenGrant::builder(server.token_url(), SPA, rotated.expose_secret())
        .auth_method(ClientAuth::None)
        .http_client(server.http_client())
        .build()
        .unwrap();
    grant.fetch().await.unwrap();
    assert_eq!(server.counters().issued_for("refresh_token"), 2);
}

#[tokio::test(start_paused = true)]
async fn a_public_client_without_pkce_is_refused_by_the_server() {
    let server = server();
    let url = format!(
        "{}?response_type=code&client_id={SPA}&redirect_uri={}&state=s1",
        server.authorize_url(),
        form_urlencoded::byte_serialize(SPA_CALLBACK.as_bytes()).collect::<String>()
    );
    let callback = server.approve(&url).unwrap();
    assert!(callback.starts_with("error=invalid_request"), "{callback}");
    assert!(callback.ends_with("&state=s1"), "{callback}");
    assert_eq!(server.counters().codes_issued, 0);
}

#[tokio::test(start_paused = true)]
async fn a_state_mismatch_is_refused_before_the_token_endpoint() {
    let server = server();
    let flow = web_flow(&server);
    let first = flow.authorize();
    let second = flow.authorize();
    let callback_for_first = server.approve(first.url()).unwrap();
    let code = query_param(&format!("?{callback_for_first}"), "code").unwrap();

    // The callback of another request (a login CSRF attempt).
    let err = flow
        .exchange(second, &callback_for_first)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::StateMismatch), "{err:?}");
    assert!(err.to_string().contains("state mismatch"), "{err}");
    assert!(err.to_string().contains("CSRF"), "{err}");
    assert!(!err.is_retryable());

    // A callback without state, and a state passed separately that does not match.
    let err = flow
        .exchange(flow.authorize(), &format!("code={code}"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::StateMismatch), "{err:?}");
    let err = flow
        .exchange_code(flow.authorize(), &code, "forged", None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::StateMismatch), "{err:?}");
    assert!(!err.to_string().contains(&code));
    assert_eq!(server.token_calls(), 0, "the token endpoint was not called");

    // The real pair still works: nothing was spent.
    let state = first.state().to_owned();
    let token = flow
        .exchange_code(first, &code, &state, None)
        .await
        .unwrap();
    assert!(token.refresh_token().is_some());
    assert_eq!(server.token_calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_wrong_code_verifier_is_invalid_grant() {
    let server = server();
    let flow = web_flow(&server);
    let request = flow.authorize();
    let callback = server.approve(request.url()).unwrap();
    let other = flow.authorize();
    let tampered =
        AuthorizationRequest::resume(request.state(), other.code_verifier().expose_secret())
            .unwrap();
    let err = flow.exchange(tampered, &callback).await.unwrap_err();
    assert!(err.is_reauthorization_required(), "{err:?}");
    assert_eq!(
        err.endpoint_error().and_then(|e| e.error_code()),
        Some("invalid_grant")
    );
    let code = query_param(&format!("?{callback}"), "code").unwrap();
    let message = format!("{err} {err:?}");
    for secret in [
        code.as_str(),
        request.state(),
        other.code_verifier().expose_secret(),
        request.code_verifier().expose_secret(),
    ] {
        assert!(!message.contains(secret), "{secret} leaked: {message}");
    }
    assert_eq!(server.counters().issued, 0);
}

#[tokio::test(start_paused = true)]
async fn a_reused_code_is_invalid_grant_and_revokes_what_it_issued() {
    let server = server();
    let flow = web_flow(&server);
    let request = flow.authorize();
    let (state, verifier) = (
        request.state().to_owned(),
        request.code_verifier().expose_secret().to_owned(),
    );
    let callback = server.approve(request.url()).unwrap();
    let token = flow.exchange(request, &callback).await.unwrap();
    let access = token.access_token().expose_secret().to_owned();
    assert_eq!(resource(&server, &access).await.0, 200);

    // An attacker who saw the redirect replays it (with the verifier, in the worst case).
    let replay = AuthorizationRequest::resume(state, verifier).unwrap();
    let err = flow.exchange(replay, &callback).await.unwrap_err();
    assert!(err.is_reauthorization_required(), "{err:?}");
    assert_eq!(server.counters().code_reuse_detected, 1);

    // RFC 6749 §4.1.2: the tokens issued from the code are revoked.
    assert_eq!(resource(&server, &access).await.0, 401);
    let grant = RefreshTokenGrant::builder(server.token_url(), WEB, refresh_token(&token))
        .client_secret(WEB_SECRET)
        .http_client(server.http_client())
        .build()
        .unwrap();
    assert!(
        grant
            .fetch()
            .await
            .unwrap_err()
            .is_reauthorization_required()
    );
}

#[tokio::test(start_paused = true)]
async fn a_code_expires_after_a_minute() {
    let server = server();
    let flow = web_flow(&server);
    let request = flow.authorize();
    let callback = server.approve(request.url()).unwrap();
    tokio::time::advance(Duration::from_secs(61)).await;
    let err = flow.exchange(request, &callback).await.unwrap_err();
    assert!(err.is_reauthorization_required(), "{err:?}");
}

#[tokio::test(start_paused = true)]
async fn an_error_callback_is_a_typed_error_naming_it() {
    let server = server();
    let flow = web_flow(&server);
    server.set_consent(false);
    let request = flow.authorize();
    let callback = server.approve(request.url()).unwrap();
    assert!(callback.starts_with("error=access_denied"), "{callback}");
    let err = flow.exchange(request, &callback).await.unwrap_err();
    assert!(matches!(err, Error::Endpoint(_)), "{err:?}");
    assert_eq!(err.status(), Some(StatusCode::BAD_REQUEST));
    assert_eq!(
        err.endpoint_error().and_then(|e| e.error_code()),
        Some("access_denied")
    );
    assert!(err.to_string().contains("access_denied"), "{err}");
    assert!(!err.is_retryable());
    assert!(!err.is_reauthorization_required());

    // Written by hand, with a description and a leading `?`; and one without a state.
    let request = flow.authorize();
    let query = format!(
        "?error=invalid_scope&error_description=scope+jobs.admin+is+not+allowed&state={}",
        request.state()
    );
    let err = flow.exchange(request, &query).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("invalid_scope: scope jobs.admin is not allowed"),
        "{err}"
    );
    let err = flow
        .exchange(flow.authorize(), "error=access_denied")
        .await
        .unwrap_err();
    assert_eq!(
        err.endpoint_error().and_then(|e| e.error_code()),
        Some("access_denied")
    );
    assert_eq!(server.token_calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_callback_without_code_or_with_repeats_is_refused() {
    let server = server();
    let flow = web_flow(&server);
    let request = flow.authorize();
    let err = flow.exchange(request, "state=whatever").await.unwrap_err();
    assert!(matches!(err, Error::StateMismatch), "{err:?}");
    let request = flow.authorize();
    let state = request.state().to_owned();
    let err = flow
        .exchange(request, &format!("state={state}"))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("neither a code nor an error"),
        "{err}"
    );
    let request = flow.authorize();
    let query = format!("code=a&code=b&state={}", request.state());
    let err = flow.exchange(request, &query).await.unwrap_err();
    assert!(err.to_string().contains("more than once"), "{err}");
    assert_eq!(server.token_calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_authorization_url_carries_every_parameter_encoded() {
    let server = server();
    let flow = AuthorizationCode::builder("my client/1")
        .authorization_url("https://auth.example.com/oauth/authorize?tenant=acme")
        .token_url(server.token_url())
        .redirect_uri("https://app.example.com/cb?x=1&y=2")
        .client_secret("s")
        .scope("jobs.read jobs.write")
        .http_client(server.http_client())
        .build()
        .unwrap();
    let request = flow.authorize();
    let url = request.url();
    assert!(
        url.starts_with("https://auth.example.com/oauth/authorize?tenant=acme&response_type=code&"),
        "{url}"
    );
    assert!(url.contains("&client_id=my+client%2F1&"), "{url}");
    assert!(
        url.contains("&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb%3Fx%3D1%26y%3D2&"),
        "{url}"
    );
    assert!(url.contains("&scope=jobs.read+jobs.write&"), "{url}");
    let pairs = query_pairs(url);
    let names: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "tenant",
            "response_type",
            "client_id",
            "redirect_uri",
            "scope",
            "state",
            "code_challenge",
            "code_challenge_method"
        ]
    );
    assert_eq!(
        query_param(url, "redirect_uri").as_deref(),
        Some("https://app.example.com/cb?x=1&y=2")
    );
    assert_eq!(query_param(url, "state").as_deref(), Some(request.state()));
    assert_eq!(
        query_param(url, "code_challenge"),
        Some(request.code_challenge())
    );
    assert_eq!(
        query_param(url, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert!(!url.contains(request.code_verifier().expose_secret()));

    // Without a query, `?`; extra parameters go last; the flow's own cannot be overridden.
    let flow = web_flow(&server);
    let request = flow.authorize_with(&[
        ("prompt", "consent"),
        ("state", "fixed"),
        ("login_hint", "a@b.c"),
    ]);
    assert!(
        request
            .url()
            .starts_with(&format!("{}?response_type=code&", server.authorize_url()))
    );
    assert!(
        request
            .url()
            .ends_with("&prompt=consent&login_hint=a%40b.c"),
        "{}",
        request.url()
    );
    assert_eq!(
        query_pairs(request.url())
            .iter()
            .filter(|(k, _)| k == "state")
            .count(),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn state_and_verifier_are_random_and_never_printed() {
    let server = server();
    let flow = web_flow(&server);
    let a = flow.authorize();
    let b = flow.authorize();
    assert_ne!(a.state(), b.state());
    assert_ne!(
        a.code_verifier().expose_secret(),
        b.code_verifier().expose_secret()
    );
    assert_ne!(a.code_challenge(), b.code_challenge());
    for request in [&a, &b] {
        // 256 bits each, base64url: 43 characters of the unreserved set.
        assert_eq!(request.state().len(), 43);
        let verifier = request.code_verifier().expose_secret();
        assert_eq!(verifier.len(), 43);
        assert!(
            verifier
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        let debug = format!("{request:?} {request:#?} {flow:?}");
        assert!(!debug.contains(request.state()), "{debug}");
        assert!(!debug.contains(verifier), "{debug}");
        assert!(!debug.contains(WEB_SECRET), "{debug}");
        assert!(debug.contains("[REDACTED]"));
    }
}

#[test]
fn the_s256_challenge_matches_rfc_7636_appendix_b() {
    let request = AuthorizationRequest::resume("state", RFC_VERIFIER).unwrap();
    assert_eq!(request.code_challenge(), RFC_CHALLENGE);
    // Verifiers outside RFC 7636 §4.1 cannot be resumed.
    for bad in [
        "",
        "short",
        &"a".repeat(129),
        &format!("{}+", "a".repeat(43)),
    ] {
        assert!(AuthorizationRequest::resume("state", bad).is_err(), "{bad}");
    }
    assert!(AuthorizationRequest::resume("", RFC_VERIFIER).is_err());
}

#[test]
fn invalid_urls_are_configuration_errors() {
    let build = |authorize: &str, token: &str, redirect: &str| {
        AuthorizationCode::builder(WEB)
            .authorization_url(authorize)
            .token_url(token)
            .redirect_uri(redirect)
            .client_secret("s")
            .http_client(FakeServer::builder().build().http_client())
            .build()
    };
    let ok = (
        "https://a.example/authorize",
        "https://a.example/token",
        CALLBACK,
    );
    assert!(build(ok.0, ok.1, ok.2).is_ok());
    assert!(build(ok.0, ok.1, "com.example.app:/oauth2redirect").is_ok());
    for (authorize, token, redirect) in [
        ("/authorize", ok.1, ok.2),
        ("ftp://a.example/authorize", ok.1, ok.2),
        ("https://a.example/authorize#x", ok.1, ok.2),
        (ok.0, "token", ok.2),
        (ok.0, ok.1, "/callback"),
        (ok.0, ok.1, "https://app.example.com/cb#frag"),
    ] {
        let err = build(authorize, token, redirect).unwrap_err();
        assert!(
            matches!(err, Error::Config(_)),
            "{authorize} {token} {redirect}: {err:?}"
        );
    }
    // A confidential client needs its secret; a public one says so.
    let err = AuthorizationCode::builder(WEB)
        .authorization_url(ok.0)
        .token_url(ok.1)
        .redirect_uri(ok.2)
        .http_client(FakeServer::builder().build().http_client())
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("ClientAuth::None"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Storing the refresh token

#[tokio::test(start_paused = true)]
async fn a_new_authorization_replaces_the_stored_grant() {
    let server = server();
    let store = MemoryStore::new();
    store
        .compare_and_swap(
            None,
            StoredGrant::new("rt-old").with_scope(Some("old".into())),
        )
        .await
        .unwrap();
    let token = authorize_web(&server).await;
    store_refresh_token(&token, &store).await.unwrap();
    let stored = store.snapshot().unwrap();
    assert_eq!(stored.refresh_token.expose_secret(), refresh_token(&token));
    assert_eq!(stored.scope.as_deref(), Some("jobs.read jobs.write"));
    assert_eq!(store.writes(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_token_without_refresh_token_cannot_be_stored() {
    let token = Token::builder("at-without-rt").build().unwrap();
    let store = MemoryStore::new();
    let err = store_refresh_token(&token, &store).await.unwrap_err();
    assert!(matches!(err, Error::InvalidResponse { .. }), "{err:?}");
    assert_eq!(err.status(), Some(StatusCode::OK));
    assert!(err.to_string().contains("ask for offline access"), "{err}");
    assert!(store.snapshot().is_none());

    // A store that cannot be written is a store error.
    let server = server();
    let token = authorize_web(&server).await;
    store.fail_writes(Some("disk full"));
    let err = store_refresh_token(&token, &store).await.unwrap_err();
    assert!(matches!(err, Error::Store(_)), "{err:?}");
    assert!(!err.to_string().contains(&refresh_token(&token)));
}

// ---------------------------------------------------------------------------------------------
// Introspection

#[tokio::test(start_paused = true)]
async fn introspection_reports_active_revoked_and_unknown_tokens() {
    let server = server();
    let token = authorize_web(&server).await;
    let access = token.access_token().expose_secret().to_owned();
    let introspection = introspection(&server, RS_SECRET);

    let info = introspection.introspect(&access).await.unwrap();
    assert!(info.active);
    assert_eq!(info.scope.as_deref(), Some("jobs.read jobs.write"));
    assert_eq!(
        info.scopes().collect::<Vec<_>>(),
        ["jobs.read", "jobs.write"]
    );
    assert_eq!(info.client_id.as_deref(), Some(WEB));
    assert_eq!(info.token_type.as_deref(), Some("Bearer"));
    assert!(info.sub.is_some());
    let (exp, iat) = (info.exp.unwrap(), info.iat.unwrap());
    assert_eq!(exp - iat, 3600);

    let rt = refresh_token(&token);
    let info = introspection
        .introspect_with_hint(&rt, Some(TokenTypeHint::RefreshToken))
        .await
        .unwrap();
    assert!(info.active);
    assert_eq!(info.client_id.as_deref(), Some(WEB));

    assert!(server.revoke_access_token(&access));
    let info = introspection.introspect(&access).await.unwrap();
    assert!(!info.active);
    assert_eq!(info.scope, None);
    assert!(
        !introspection
            .introspect("no-such-token")
            .await
            .unwrap()
            .active
    );
    // A hint that is wrong only costs the server a second look.
    let info = introspection
        .introspect_with_hint(&rt, Some(TokenTypeHint::AccessToken))
        .await
        .unwrap();
    assert!(info.active);

    assert_eq!(server.counters().introspect_requests, 5);
    let debug = format!("{introspection:?} {info:?}");
    assert!(!debug.contains(RS_SECRET) && !debug.contains(&rt) && !debug.contains(&access));
}

#[tokio::test(start_paused = true)]
async fn introspection_with_a_wrong_secret_is_invalid_client() {
    let server = server();
    let access = server.issue_access_token(WEB, "jobs.read");
    let err = introspection(&server, "wrong-secret")
        .introspect(&access)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidClient(_)), "{err:?}");
    assert!(!err.is_retryable());
    let message = format!("{err} {err:?}");
    assert!(!message.contains(&access) && !message.contains("wrong-secret"));
}

#[tokio::test(start_paused = true)]
async fn an_unusable_introspection_response_is_invalid_response() {
    let server = server();
    let access = server.issue_access_token(WEB, "jobs.read");
    let introspection = introspection(&server, RS_SECRET);
    server.push_fault_at(Endpoint::Introspect, Fault::GarbageBody);
    let err = introspection.introspect(&access).await.unwrap_err();
    assert!(matches!(err, Error::InvalidResponse { .. }), "{err:?}");
    assert!(!err.to_string().contains("It works"), "{err}");
    server.push_fault_at(Endpoint::Introspect, Fault::Status(502));
    let err = introspection.introspect(&access).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert!(introspection.introspect(&access).await.unwrap().active);
}

// ---------------------------------------------------------------------------------------------
// Revocation

#[tokio::test(start_paused = true)]
async fn a_revoked_access_token_is_invalid_token_at_the_resource() {
    let server = server();
    let token = authorize_web(&server).await;
    let access = token.access_token().expose_secret().to_owned();
    assert_eq!(resource(&server, &access).await.0, 200);

    revocation(&server)
        .revoke(&access, Some(TokenTypeHint::AccessToken))
        .await
        .unwrap();
    let (status, challenge) = resource(&server, &access).await;
    assert_eq!(status, 401);
    let challenge = challenge.unwrap();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    let mut headers = http::HeaderMap::new();
    headers.insert(WWW_AUTHENTICATE, challenge.parse().unwrap());
    let classified = tokenward::classify(StatusCode::UNAUTHORIZED, &headers, None).unwrap();
    assert!(
        matches!(classified.failure, tokenward::Failure::InvalidToken { .. }),
        "{classified:?}"
    );

    // Just the access token: the refresh token still works.
    let grant = RefreshTokenGrant::builder(server.token_url(), WEB, refresh_token(&token))
        .client_secret(WEB_SECRET)
        .http_client(server.http_client())
        .build()
        .unwrap();
    grant.fetch().await.unwrap();
    assert_eq!(server.counters().revoke_requests, 1);
}

#[tokio::test(start_paused = true)]
async fn a_revoked_refresh_token_requires_reauthorization() {
    let server = server();
    let token = authorize_web(&server).await;
    let grant = RefreshTokenGrant::builder(server.token_url(), WEB, refresh_token(&token))
        .client_secret(WEB_SECRET)
        .http_client(server.http_client())
        .build()
        .unwrap();
    let refreshed = grant.fetch().await.unwrap();
    let current = grant.current_refresh_token().unwrap();

    revocation(&server)
        .revoke(current.expose_secret(), Some(TokenTypeHint::RefreshToken))
        .await
        .unwrap();
    let err = grant.fetch().await.unwrap_err();
    assert!(err.is_reauthorization_required(), "{err:?}");
    // The whole grant went: its access tokens too.
    let access = refreshed.access_token().expose_secret().to_owned();
    assert_eq!(resource(&server, &access).await.0, 401);
}

#[tokio::test(start_paused = true)]
async fn revocation_503_is_retryable_and_keeps_retry_after() {
    let server = server();
    let token = authorize_web(&server).await;
    let access = token.access_token().expose_secret().to_owned();
    let revocation = revocation(&server);
    server.push_fault_at(
        Endpoint::Revoke,
        Fault::ServiceUnavailable {
            retry_after: Some("7".into()),
        },
    );
    let err = revocation.revoke(&access, None).await.unwrap_err();
    assert!(matches!(err, Error::Endpoint(_)), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(err.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
    assert_eq!(err.endpoint_error().unwrap().headers["retry-after"], "7");
    assert!(!format!("{err} {err:?}").contains(&access));
    assert_eq!(resource(&server, &access).await.0, 200, "not revoked yet");

    revocation.revoke(&access, None).await.unwrap();
    assert_eq!(resource(&server, &access).await.0, 401);
    // Revoking again, or revoking something unknown, is fine (RFC 7009 §2.2).
    revocation.revoke(&access, None).await.unwrap();
    revocation.revoke("no-such-token", None).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn revocation_authenticates_the_client() {
    let server = server();
    let token = authorize_web(&server).await;
    let access = token.access_token().expose_secret().to_owned();
    let wrong = Revocation::builder(server.revoke_url(), WEB)
        .client_secret("wrong-secret")
        .http_client(server.http_client())
        .build()
        .unwrap();
    let err = wrong.revoke(&access, None).await.unwrap_err();
    assert!(matches!(err, Error::InvalidClient(_)), "{err:?}");

    // Another client may not revoke the web app's tokens.
    let other = Revocation::builder(server.revoke_url(), RS)
        .client_secret(RS_SECRET)
        .http_client(server.http_client())
        .build()
        .unwrap();
    assert!(other.revoke(&access, None).await.is_err());
    assert_eq!(resource(&server, &access).await.0, 200);

    // A public client revokes its own tokens with its client id alone.
    let flow = spa_flow(&server);
    let request = flow.authorize();
    let callback = server.approve(request.url()).unwrap();
    let spa_token = flow.exchange(request, &callback).await.unwrap();
    let spa = Revocation::builder(server.revoke_url(), SPA)
        .auth_method(ClientAuth::None)
        .http_client(server.http_client())
        .build()
        .unwrap();
    spa.revoke(
        &refresh_token(&spa_token),
        Some(TokenTypeHint::RefreshToken),
    )
    .await
    .unwrap();
    let spa_access = spa_token.access_token().expose_secret().to_owned();
    assert_eq!(resource(&server, &spa_access).await.0, 401);
}

#[tokio::test(start_paused = true)]
async fn with_an_issuer_configured_the_callback_iss_must_match_rfc_9207() {
    let server = server();
    let flow = AuthorizationCode::builder(WEB)
        .authorization_url(server.authorize_url())
        .token_url(server.token_url())
        .redirect_uri(CALLBACK)
        .client_secret(WEB_SECRET)
        .issuer("https://as.example.com")
        .http_client(server.http_client())
        .build()
        .unwrap();
    for (suffix, accepted) in [
        ("&iss=https%3A%2F%2Fas.example.com", true),
        ("&iss=https%3A%2F%2Fevil.example.com", false),
        ("", false),
    ] {
        let request = flow.authorize();
        let callback = format!("{}{suffix}", server.approve(request.url()).unwrap());
        let calls = server.token_calls();
        let result = flow.exchange(request, &callback).await;
        if accepted {
            result.unwrap();
            assert_eq!(server.token_calls(), calls + 1);
        } else {
            let err = result.unwrap_err();
            assert!(
                matches!(&err, Error::IssuerMismatch { expected, .. } if expected == "https://as.example.com"),
                "{err:?}"
            );
            assert!(err.to_string().contains("issuer mismatch"), "{err}");
            assert_eq!(server.token_calls(), calls, "the code was not exchanged");
        }
    }
    // exchange_code checks the issuer too: none, or another, is refused before the exchange.
    for (iss, accepted) in [
        (Some("https://as.example.com"), true),
        (Some("https://evil.example.com"), false),
        (None, false),
    ] {
        let request = flow.authorize();
        let state = request.state().to_owned();
        let callback = server.approve(request.url()).unwrap();
        let code = query_param(&format!("?{callback}"), "code").unwrap();
        let calls = server.token_calls();
        let result = flow.exchange_code(request, &code, &state, iss).await;
        if accepted {
            result.unwrap();
            assert_eq!(server.token_calls(), calls + 1);
        } else {
            let err = result.unwrap_err();
            assert!(
                matches!(&err, Error::IssuerMismatch { received, .. } if received.as_deref() == iss),
                "{err:?}"
            );
            assert_eq!(server.token_calls(), calls, "the code was not exchanged");
        }
    }
}
