//! A rotated refresh token is never dropped, and never replayed blindly: against the fake
//! server, which rotates on every refresh and revokes the whole grant when a rotated-out
//! refresh token comes back (reuse detection).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::pass;
use secrecy::ExposeSecret;
use tokenward::grant::{ForRefreshToken, GrantBuilder};
use tokenward::store::{MemoryStore, TokenStore};
use tokenward::transport::SendFuture;
use tokenward::{
    Error, HttpClient, RefreshTokenGrant, TokenCache, TransportError, TransportErrorKind,
};
use tokenward_testkit::{Alter, FakeServer, Fault, InProcessClient};

const CLIENT: &str = "app";
const SECRET: &str = "app-secret";

fn server(grace: Duration) -> FakeServer {
    FakeServer::builder()
        .client(CLIENT, SECRET)
        .refresh_token_grace(grace)
        .build()
}

/// A grant on `store`, through the fake server's in-process client.
fn from_store(server: &FakeServer, store: &MemoryStore) -> GrantBuilder<ForRefreshToken> {
    RefreshTokenGrant::from_store(server.token_url(), CLIENT, store.clone())
        .client_secret(SECRET)
        .http_client(server.http_client())
}

/// A grant holding `refresh_token` in memory, through the fake server's in-process client.
fn from_token(server: &FakeServer, refresh_token: &str) -> GrantBuilder<ForRefreshToken> {
    RefreshTokenGrant::builder(server.token_url(), CLIENT, refresh_token)
        .client_secret(SECRET)
        .http_client(server.http_client())
}

async fn stored(store: &MemoryStore) -> String {
    store
        .load()
        .await
        .unwrap()
        .unwrap()
        .refresh_token
        .expose_secret()
        .to_owned()
}

#[tokio::test(start_paused = true)]
async fn a_rotated_refresh_token_in_a_refused_200_is_persisted_before_the_error() {
    for alter in [
        Alter::NoAccessToken,
        Alter::TokenType("mac".into()),
        Alter::UnsendableAccessToken,
        Alter::ScopeAsArray,
    ] {
        let server = server(Duration::ZERO);
        let seed = server.issue_refresh_token(CLIENT, "read");
        let store = MemoryStore::with_refresh_token(seed.clone());
        let grant = Arc::new(from_store(&server, &store).build().unwrap());
        let cache = TokenCache::new(Arc::clone(&grant));

        server.push_fault(Fault::AfterServing(alter.clone()));
        let err = cache.token().await.unwrap_err();
        assert!(
            matches!(err, Error::InvalidResponse { .. }),
            "{alter:?}: {err:?}"
        );
        let kept = stored(&store).await;
        assert_ne!(kept, seed, "{alter:?}: the rotated refresh token is stored");
        assert_eq!(
            grant.current_refresh_token().unwrap().expose_secret(),
            kept,
            "{alter:?}: and is the one sent next"
        );
        assert!(
            !format!("{err} {err:?}").contains(&kept),
            "{alter:?}: {err}"
        );

        // The next refresh (after the cool-down) sends the new one: no reuse, a token.
        pass(Duration::from_secs(1)).await;
        cache.token().await.unwrap();
        assert_eq!(
            server.counters().refresh_reuse_detected,
            0,
            "{alter:?}: the old refresh token was never replayed"
        );
        assert_eq!(server.token_calls(), 2, "{alter:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_rotated_refresh_token_in_a_refused_200_is_kept_without_a_store() {
    let server = server(Duration::ZERO);
    let seed = server.issue_refresh_token(CLIENT, "read");
    let grant = Arc::new(from_token(&server, &seed).build().unwrap());
    let cache = TokenCache::new(Arc::clone(&grant));
    server.push_fault(Fault::AfterServing(Alter::TokenType("mac".into())));
    cache.token().await.unwrap_err();
    assert_ne!(grant.current_refresh_token().unwrap().expose_secret(), seed);
    pass(Duration::from_secs(1)).await;
    cache.token().await.unwrap();
    assert_eq!(server.counters().refresh_reuse_detected, 0);
}

/// The server rotated, then a gateway lost the answer (502). Without a reuse grace, the
/// refresh is not repeated at once with the same refresh token.
#[tokio::test(start_paused = true)]
async fn after_an_ambiguous_failure_the_exchange_is_not_repeated_at_once() {
    let server = server(Duration::ZERO);
    let seed = server.issue_refresh_token(CLIENT, "read");
    let store = MemoryStore::with_refresh_token(seed);
    let cache = TokenCache::new(from_store(&server, &store).build().unwrap());
    server.push_fault(Fault::AfterServing(Alter::Status(502)));
    let err = cache.token().await.unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(502), "{err:?}");
    assert_eq!(server.token_calls(), 1, "one attempt, not four");
    assert_eq!(server.counters().refresh_reuse_detected, 0);

    // A 502 that did not reach the server (nothing rotated) costs only the cool-down.
    let server = server_with_seed_and(Fault::Status(502));
    let err = server.1.token().await.unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(502), "{err:?}");
    assert_eq!(server.0.token_calls(), 1);
    pass(Duration::from_secs(1)).await;
    server.1.token().await.unwrap();
    assert_eq!(server.0.token_calls(), 2);
    assert_eq!(server.0.counters().refresh_reuse_detected, 0);
}

fn server_with_seed_and(fault: Fault) -> (FakeServer, TokenCache) {
    let server = server(Duration::ZERO);
    let seed = server.issue_refresh_token(CLIENT, "read");
    let cache = TokenCache::new(from_token(&server, &seed).build().unwrap());
    server.push_fault(fault);
    (server, cache)
}

/// With the server's reuse grace configured, the same ambiguous failure is tried again at
/// once, and the replay inside the grace gets the rotated token.
#[tokio::test(start_paused = true)]
async fn with_a_reuse_grace_an_ambiguous_failure_is_repeated_within_it() {
    let server = server(Duration::from_secs(30));
    let seed = server.issue_refresh_token(CLIENT, "read");
    let store = MemoryStore::with_refresh_token(seed);
    let cache = TokenCache::new(
        from_store(&server, &store)
            .reuse_grace(Duration::from_secs(30))
            .build()
            .unwrap(),
    );
    server.push_fault(Fault::AfterServing(Alter::Status(502)));
    cache.token().await.unwrap();
    assert_eq!(server.token_calls(), 2, "repeated at once");
    assert_eq!(server.counters().refresh_grace_used, 1);
    assert_eq!(server.counters().refresh_reuse_detected, 0);
}

/// A transport that fails to connect a number of times, then hands requests to the fake
/// server.
#[derive(Debug)]
struct RefusesConnections {
    inner: InProcessClient,
    refusals: AtomicUsize,
}

impl HttpClient for RefusesConnections {
    fn send(&self, request: http::Request<Bytes>) -> SendFuture<'_> {
        let refuse = self
            .refusals
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if refuse {
            return Box::pin(async {
                Err(TransportError::new(
                    TransportErrorKind::Connect,
                    std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused"),
                ))
            });
        }
        self.inner.send(request)
    }
}

/// Nothing was sent: repeated at once, without a grace.
#[tokio::test(start_paused = true)]
async fn a_connect_error_is_repeated_at_once() {
    let server = server(Duration::ZERO);
    let seed = server.issue_refresh_token(CLIENT, "read");
    let cache = TokenCache::new(
        RefreshTokenGrant::builder(server.token_url(), CLIENT, seed)
            .client_secret(SECRET)
            .http_client(RefusesConnections {
                inner: server.http_client(),
                refusals: AtomicUsize::new(2),
            })
            .build()
            .unwrap(),
    );
    cache.token().await.unwrap();
    assert_eq!(
        server.token_calls(),
        1,
        "the two refused attempts sent nothing"
    );
    assert_eq!(cache.status().consecutive_failures, 0);
}

/// `temporarily_unavailable`: the server did nothing; repeated at once.
#[tokio::test(start_paused = true)]
async fn temporarily_unavailable_is_repeated_at_once() {
    let (server, cache) = server_with_seed_and(Fault::TemporarilyUnavailable);
    cache.token().await.unwrap();
    assert_eq!(server.token_calls(), 2);
}
