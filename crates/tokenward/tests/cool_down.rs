//! The cool-down after a failed refresh: with no usable token, callers get the last failure
//! at once (typed, with the time left) and no request is made. A failure only a new
//! configuration fixes is held until the configuration changes; the others back off,
//! growing with consecutive failures, and a success resets them.
//!
//! Against the fake authorization server (in process, paused time): 16 callers reading for
//! 3 s.

mod common;

use std::time::Duration;

use common::{Scripted, Step, pass, server_error};
use secrecy::SecretString;
use tokenward::store::{MemoryStore, StoredGrant, TokenStore};
use tokenward::timing::Backoff;
use tokenward::{ClientCredentials, Error, RefreshAhead, RefreshTokenGrant, TokenCache};
use tokenward_testkit::{FakeServer, Fault};
use tokio::time::Instant;

/// 16 callers read for `period`, 10 ms apart; every outcome, in order per caller.
async fn sixteen_callers(cache: &TokenCache, period: Duration) -> Vec<Result<String, Error>> {
    let end = Instant::now() + period;
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                while Instant::now() < end {
                    let outcome = cache.header().await.map(|h| h.to_str().unwrap().to_owned());
                    outcomes.push(outcome);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                outcomes
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all
}

fn server() -> FakeServer {
    FakeServer::builder()
        .client("svc", "right-secret")
        .token_lifetime(Duration::from_secs(600))
        .build()
}

#[tokio::test(start_paused = true)]
async fn a_wrong_client_secret_is_held_until_the_secret_is_rotated() {
    let server = server();
    let grant = ClientCredentials::builder(server.token_url(), "svc")
        .client_secret("wrong-secret")
        .http_client(server.http_client())
        .build()
        .unwrap();
    let secret = grant.client_secret();
    let cache = TokenCache::new(grant);

    let outcomes = sixteen_callers(&cache, Duration::from_secs(3)).await;
    let calls = server.token_calls();
    eprintln!("wrong client secret: {calls} token calls in 3 s by 16 callers");
    assert!(calls <= 3, "{calls} token calls in 3 s (target: at most 3)");
    assert_eq!(calls, 1, "held after the first invalid_client");
    assert!(outcomes.len() > 16 * 100, "the callers kept reading");
    for outcome in &outcomes {
        let err = outcome.as_ref().unwrap_err();
        assert!(matches!(err.cause(), Error::InvalidClient(_)), "{err:?}");
        assert!(!err.is_retryable());
        if let Error::CoolingDown { retry_in, .. } = err {
            // Held for the cap (5 minutes) unless the configuration changes.
            assert!(*retry_in > Duration::from_secs(290), "{retry_in:?}");
        }
    }
    assert!(cache.status().cooling_down_for.is_some());

    // Rotating the secret ends the hold: the next caller gets a token at once.
    secret.rotate("right-secret", Duration::ZERO);
    cache.header().await.unwrap();
    assert_eq!(server.token_calls(), 2);
    assert!(cache.status().cooling_down_for.is_none());
}

#[tokio::test(start_paused = true)]
async fn a_revoked_refresh_token_is_held_until_a_new_one_is_stored() {
    let server = FakeServer::builder()
        .client("app", "app-secret")
        .token_lifetime(Duration::from_secs(600))
        .build();
    let revoked = server.issue_refresh_token("app", "read");
    assert!(server.revoke_grant_of(&revoked));
    let store = MemoryStore::with_refresh_token(revoked.clone());
    let cache = TokenCache::new(
        RefreshTokenGrant::from_store(server.token_url(), "app", store.clone())
            .client_secret("app-secret")
            .http_client(server.http_client())
            .build()
            .unwrap(),
    );

    let outcomes = sixteen_callers(&cache, Duration::from_secs(3)).await;
    let calls = server.token_calls();
    eprintln!("revoked refresh token: {calls} token calls in 3 s by 16 callers");
    assert!(calls <= 3, "{calls} token calls in 3 s (target: at most 3)");
    assert_eq!(calls, 1, "held after the first invalid_grant");
    for outcome in &outcomes {
        let err = outcome.as_ref().unwrap_err();
        assert!(err.is_reauthorization_required(), "{err:?}");
    }

    // The user authorizes again: a new refresh token is stored, and the hold ends at once.
    let fresh = server.issue_refresh_token("app", "read");
    let old = SecretString::from(revoked);
    store
        .compare_and_swap(Some(&old), StoredGrant::new(fresh))
        .await
        .unwrap();
    cache.header().await.unwrap();
    assert_eq!(server.token_calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_held_failure_is_tried_again_after_the_cap_or_when_forced() {
    let server = server();
    let cache = TokenCache::builder(
        ClientCredentials::builder(server.token_url(), "svc")
            .client_secret("wrong-secret")
            .http_client(server.http_client())
            .build()
            .unwrap(),
    )
    .hold(Duration::from_secs(60))
    .build();
    cache.header().await.unwrap_err();
    pass(Duration::from_secs(59)).await;
    let err = cache.header().await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(1)), "{err:?}");
    assert_eq!(server.token_calls(), 1);
    // The cap passes: one new request (the secret is still wrong: held again).
    pass(Duration::from_secs(1)).await;
    let err = cache.header().await.unwrap_err();
    assert!(matches!(err, Error::InvalidClient(_)), "{err:?}");
    assert_eq!(server.token_calls(), 2);
    // A forced refresh does not wait for the hold.
    let err = cache.force_refresh().await.unwrap_err();
    assert!(matches!(err, Error::InvalidClient(_)), "{err:?}");
    assert_eq!(server.token_calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn server_errors_back_off_across_refreshes_and_a_success_resets_it() {
    let server = server();
    server.set_fault(Some(Fault::Status(503)));
    let cache = TokenCache::builder(
        ClientCredentials::builder(server.token_url(), "svc")
            .client_secret("right-secret")
            .http_client(server.http_client())
            .build()
            .unwrap(),
    )
    .build();

    let outcomes = sixteen_callers(&cache, Duration::from_secs(3)).await;
    let calls = server.token_calls();
    let cooling = outcomes
        .iter()
        .filter(|o| matches!(o, Err(Error::CoolingDown { .. })))
        .count();
    eprintln!(
        "503: {calls} token calls in 3 s by 16 callers ({} outcomes, {cooling} in a cool-down)",
        outcomes.len()
    );
    // Every refresh makes up to 4 attempts; in the cool-downs between refreshes (jittered
    // below 1 s, 2 s, 4 s, ...) callers are answered at once. A caller gets the refresh's
    // own error only by waiting on it: at most the 16 callers per refresh.
    assert_eq!(calls % 4, 0, "whole refreshes of 4 attempts: {calls}");
    let waited = outcomes.len() - cooling;
    assert!(
        waited as u64 <= 16 * (calls / 4),
        "{waited} waited on {calls} calls"
    );
    for outcome in &outcomes {
        let err = outcome.as_ref().unwrap_err();
        assert_eq!(err.status().map(|s| s.as_u16()), Some(503), "{err:?}");
        assert!(err.is_retryable());
    }
    let status = cache.status();
    let refreshes = calls / 4;
    assert_eq!(u64::from(status.consecutive_failures), refreshes);
    let ceiling = Backoff::new(Duration::from_secs(1), Duration::from_secs(60))
        .ceiling(status.consecutive_failures - 1);
    assert!(status.cooling_down_for.unwrap_or_default() <= ceiling);

    // The fault clears: after the cool-down, a token, and the backoff starts over.
    server.set_fault(None);
    pass(ceiling).await;
    cache.header().await.unwrap();
    let status = cache.status();
    assert_eq!(status.consecutive_failures, 0);
    assert!(status.cooling_down_for.is_none());
}

#[tokio::test(start_paused = true)]
async fn in_a_cool_down_no_request_is_made_and_the_error_says_how_long() {
    let source = Scripted::new(Duration::from_secs(600));
    source.otherwise(Step::Fail(server_error(500)));
    let cache = TokenCache::builder(source.clone())
        .max_attempts(1)
        .cool_down(Backoff::new(Duration::from_secs(8), Duration::from_secs(8)))
        .build();
    let first = cache.header().await.unwrap_err();
    assert!(matches!(first, Error::Endpoint(_)), "{first:?}");
    assert_eq!(source.calls(), 1);
    let cool_down = cache.status().cooling_down_for.unwrap();
    for _ in 0..100 {
        let err = cache.header().await.unwrap_err();
        let Error::CoolingDown { retry_in, error } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(*retry_in, cool_down);
        assert!(matches!(**error, Error::Endpoint(_)));
        assert!(err.to_string().contains("HTTP 500"), "{err}");
    }
    assert_eq!(source.calls(), 1, "no request in the cool-down");
    pass(cool_down).await;
    source.otherwise(Step::Ok);
    cache.header().await.unwrap();
    assert_eq!(source.calls(), 2);
}

/// With a usable token cached, a held failure stops the background refreshes too (the
/// stale token is still served), until the configuration changes.
#[tokio::test(start_paused = true)]
async fn a_held_failure_with_a_usable_token_serves_it_and_stops_background_refreshes() {
    let server = FakeServer::builder()
        .client("svc", "first-secret")
        .token_lifetime(Duration::from_secs(100))
        .build();
    let grant = ClientCredentials::builder(server.token_url(), "svc")
        .client_secret("first-secret")
        .http_client(server.http_client())
        .build()
        .unwrap();
    let secret = grant.client_secret();
    let cache = TokenCache::builder(grant)
        .refresh_jitter(0.0)
        .refresh_ahead(RefreshAhead::OnDemand)
        .build();
    let first = cache.header().await.unwrap();
    // The server forgets the secret; the token turns stale.
    server.add_client_secret("svc", "second-secret");
    assert!(server.remove_client_secret("svc", "first-secret"));
    pass(Duration::from_secs(82)).await;
    for _ in 0..200 {
        assert_eq!(cache.header().await.unwrap(), first);
        pass(Duration::from_millis(20)).await;
    }
    assert_eq!(
        server.token_calls(),
        2,
        "one failed background refresh, held"
    );
    secret.rotate("second-secret", Duration::ZERO);
    assert_eq!(cache.header().await.unwrap(), first);
    pass(Duration::ZERO).await;
    assert_ne!(cache.header().await.unwrap(), first);
    assert_eq!(server.token_calls(), 3);
}

/// Missing scopes need an admin's re-grant: held like `invalid_client`.
#[tokio::test(start_paused = true)]
async fn missing_scopes_are_held() {
    let source = Scripted::new(Duration::from_secs(600));
    source.then([Step::Fail(Error::InsufficientScope {
        missing: "jobs.write".into(),
        granted: "jobs.read".into(),
    })]);
    let cache = TokenCache::new(source.clone());
    let err = cache.header().await.unwrap_err();
    assert!(matches!(err, Error::InsufficientScope { .. }), "{err:?}");
    pass(Duration::from_secs(60)).await;
    let err = cache.header().await.unwrap_err();
    assert!(
        matches!(err.cause(), Error::InsufficientScope { .. }),
        "{err:?}"
    );
    assert_eq!(source.calls(), 1, "held: no request a minute later");
    cache.force_refresh().await.unwrap();
    assert_eq!(source.calls(), 2);
}

/// A refresh grant whose token lacks a required scope: each refresh rotates and writes the
/// store, and that own write is no new configuration — held after one call.
#[tokio::test(start_paused = true)]
async fn missing_scopes_of_a_stored_refresh_grant_are_held() {
    let server = FakeServer::builder()
        .client("app", "app-secret")
        .token_lifetime(Duration::from_secs(600))
        .build();
    let seed = server.issue_refresh_token("app", "jobs.read");
    let store = MemoryStore::with_refresh_token(seed);
    let cache = TokenCache::new(
        RefreshTokenGrant::from_store(server.token_url(), "app", store.clone())
            .client_secret("app-secret")
            .require_scopes("jobs.write")
            .http_client(server.http_client())
            .build()
            .unwrap(),
    );
    let outcomes = sixteen_callers(&cache, Duration::from_secs(3)).await;
    let calls = server.token_calls();
    eprintln!("missing scopes, stored refresh grant: {calls} token calls in 3 s by 16 callers");
    assert!(calls <= 3, "{calls} token calls in 3 s (target: at most 3)");
    assert_eq!(calls, 1, "held after the first refusal");
    assert_eq!(store.writes(), 1, "the rotation was persisted once");
    for outcome in &outcomes {
        let err = outcome.as_ref().unwrap_err();
        assert!(
            matches!(err.cause(), Error::InsufficientScope { .. }),
            "{err:?}"
        );
    }
}
