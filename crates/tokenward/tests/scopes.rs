//! Required scopes are checked on every token obtained, before it is used; a granted
//! wildcard covers what it names; drift after a re-grant is a typed error that says what is
//! missing — and never costs the rotated refresh token.

use std::sync::Arc;

use secrecy::ExposeSecret;
use tokenward::store::MemoryStore;
use tokenward::{ClientCredentials, Error, RefreshTokenGrant, TokenCache};
use tokenward_testkit::FakeServer;

fn client_credentials(server: &FakeServer, require: &str) -> TokenCache {
    TokenCache::new(
        ClientCredentials::builder(server.token_url(), "svc")
            .client_secret("svc-secret")
            .http_client(server.http_client())
            .require_scopes(require)
            .build()
            .unwrap(),
    )
}

#[tokio::test(start_paused = true)]
async fn a_token_missing_a_required_scope_is_refused_with_what_is_missing() {
    let server = FakeServer::builder()
        .client("svc", "svc-secret")
        .client_scopes("svc", "jobs.read reports.read")
        .build();
    let cache = client_credentials(&server, "jobs.read jobs.write");
    let err = cache.header().await.unwrap_err();
    match &err {
        Error::InsufficientScope { missing, granted } => {
            assert_eq!(missing, "jobs.write");
            assert_eq!(granted, "jobs.read reports.read");
        }
        other => panic!("expected InsufficientScope, got {other:?}"),
    }
    assert!(err.to_string().contains("admin must re-grant"), "{err}");
    assert!(!err.is_retryable());
    assert!(
        cache.cached().is_none(),
        "the token was not handed out or cached"
    );
    assert_eq!(server.token_calls(), 1, "not retried");
}

#[tokio::test(start_paused = true)]
async fn granted_wildcards_cover_the_required_scopes() {
    let server = FakeServer::builder()
        .client("svc", "svc-secret")
        .client_scopes("svc", "jobs.* admin.*")
        .build();
    let cache = client_credentials(&server, "jobs.read jobs.write admin.users.delete");
    cache.header().await.unwrap();
    // ... but not scopes outside them.
    let cache = client_credentials(&server, "jobs.read billing.read");
    let err = cache.header().await.unwrap_err();
    assert!(matches!(&err, Error::InsufficientScope { missing, .. } if missing == "billing.read"));
}

#[tokio::test(start_paused = true)]
async fn scope_drift_on_refresh_is_caught_and_the_rotated_token_is_still_persisted() {
    let server = FakeServer::builder().client("app", "app-secret").build();
    // An admin re-granted the application without jobs.write.
    let seed = server.issue_refresh_token("app", "jobs.read");
    let store = MemoryStore::with_refresh_token(seed.clone());
    let grant = Arc::new(
        RefreshTokenGrant::from_store(server.token_url(), "app", store.clone())
            .client_secret("app-secret")
            .http_client(server.http_client())
            .require_scopes("jobs.read jobs.write")
            .build()
            .unwrap(),
    );
    let cache = TokenCache::new(Arc::clone(&grant));
    let err = cache.token().await.unwrap_err();
    assert!(
        matches!(&err, Error::InsufficientScope { missing, .. } if missing == "jobs.write"),
        "{err:?}"
    );
    let stored = store.snapshot().unwrap();
    assert_ne!(
        stored.refresh_token.expose_secret(),
        seed,
        "rotation persisted"
    );
    assert_eq!(stored.scope.as_deref(), Some("jobs.read"));
    // Held: the next caller gets it at once, with no request.
    let held = cache.token().await.unwrap_err();
    assert!(
        matches!(held.cause(), Error::InsufficientScope { .. }),
        "{held:?}"
    );
    assert_eq!(server.token_calls(), 1);
    // A forced refresh sends the persisted token, which still works: no reuse detected.
    assert!(matches!(
        cache.force_refresh().await,
        Err(Error::InsufficientScope { .. })
    ));
    assert_eq!(server.token_calls(), 2);
    assert_eq!(server.counters().refresh_reuse_detected, 0);
}
