//! Fault injection, one table: for each token-endpoint fault, with and without a usable token
//! cached — no panic, a usable token is never lost, the typed error is the right one, and the
//! cache recovers once the fault clears. The README's fault table states these outcomes.

mod common;

use std::time::Duration;

use common::pass;
use tokenward::cache::Phase;
use tokenward::{ClientCredentials, Error, TokenCache, TransportErrorKind};
use tokenward_testkit::{FakeServer, Fault};

/// What the caller sees when no usable token is cached and the fault persists.
#[derive(Debug, Clone, Copy)]
enum Expect {
    RateLimited,
    Status(u16),
    Timeout,
    ConnectionReset,
    InvalidResponse,
    TooLarge,
}

fn faults() -> Vec<(&'static str, Fault, Expect)> {
    vec![
        (
            "429 + Retry-After",
            Fault::RateLimited {
                retry_after: Some("5".into()),
            },
            Expect::RateLimited,
        ),
        ("500", Fault::Status(500), Expect::Status(500)),
        ("502", Fault::Status(502), Expect::Status(502)),
        ("503", Fault::Status(503), Expect::Status(503)),
        ("504", Fault::Status(504), Expect::Status(504)),
        ("hang", Fault::Hang, Expect::Timeout),
        (
            "connection reset",
            Fault::ConnectionReset,
            Expect::ConnectionReset,
        ),
        ("garbage body", Fault::GarbageBody, Expect::InvalidResponse),
        (
            "oversized body",
            Fault::OversizedBody(100_000),
            Expect::TooLarge,
        ),
        (
            "200 with an error",
            Fault::ErrorBody200,
            Expect::Status(200),
        ),
        (
            "slow drip",
            Fault::SlowDrip {
                chunk: 4,
                interval: Duration::from_secs(1),
            },
            Expect::Timeout,
        ),
    ]
}

fn check(name: &str, err: &Error, expect: Expect) {
    let ok = match expect {
        Expect::RateLimited => matches!(err, Error::RateLimited { .. }),
        Expect::Status(s) => {
            matches!(err, Error::Endpoint(_)) && err.status().map(|x| x.as_u16()) == Some(s)
        }
        Expect::Timeout => matches!(err, Error::Timeout(_)),
        Expect::ConnectionReset => {
            matches!(err, Error::Transport(t) if t.kind() == TransportErrorKind::Io)
        }
        Expect::InvalidResponse => matches!(err, Error::InvalidResponse { .. }),
        Expect::TooLarge => matches!(err, Error::ResponseTooLarge { .. }),
    };
    assert!(ok, "{name}: unexpected error {err:?}");
    let transient = !matches!(expect, Expect::InvalidResponse | Expect::TooLarge);
    assert_eq!(
        err.is_retryable(),
        transient,
        "{name}: retryability of {err:?}"
    );
}

/// Lifetime 100 s: fresh until 80 s, stale until 95 s; refresh deadline 10 s.
fn cache(server: &FakeServer) -> TokenCache {
    TokenCache::builder(
        ClientCredentials::builder(server.token_url(), "svc")
            .client_secret("svc-secret")
            .http_client(server.http_client())
            .build()
            .unwrap(),
    )
    .refresh_jitter(0.0)
    .clock_skew(Duration::from_secs(5))
    .min_refresh_lead(Duration::ZERO)
    .refresh_deadline(Duration::from_secs(10))
    .build()
}

fn server() -> FakeServer {
    FakeServer::builder()
        .client("svc", "svc-secret")
        .token_lifetime(Duration::from_secs(100))
        .build()
}

#[tokio::test(start_paused = true)]
async fn a_persistent_fault_never_costs_the_usable_token_and_recovery_follows() {
    for (name, fault, _) in faults() {
        let server = server();
        let cache = cache(&server);
        let start = tokio::time::Instant::now();
        let header = cache.header().await.unwrap();
        server.set_fault(Some(fault));
        pass(Duration::from_secs(81)).await; // stale: refreshed (ahead) in the background
        // Reads keep getting the cached token at once while refreshes fail, until 95 s.
        for _ in 0..13 {
            assert_eq!(cache.header().await.unwrap(), header, "{name}: token kept");
            pass(Duration::from_secs(1)).await;
        }
        let status = cache.status();
        assert_eq!(status.phase, Phase::Stale, "{name}");
        assert!(
            status.consecutive_failures >= 1,
            "{name}: the refresh did fail"
        );
        assert!(status.last_error.is_some(), "{name}");
        // The fault clears: a new token arrives as soon as the cool-down (or the 429
        // window) allows; no read fails while the old token is still usable (until 95 s).
        server.set_fault(None);
        let mut recovered = None;
        for step in 0..40 {
            tokio::time::sleep(Duration::from_millis(500)).await; // paused: runs due timers
            match cache.header().await {
                Ok(h) if h != header => {
                    recovered = Some(step);
                    break;
                }
                Ok(_) => {}
                Err(e) => assert!(
                    start.elapsed() >= Duration::from_secs(95),
                    "{name}: a read failed while the token was usable: {e:?}"
                ),
            }
        }
        assert!(recovered.is_some(), "{name}: no recovery within 20 s");
        assert_eq!(cache.status().consecutive_failures, 0, "{name}");
    }
}

#[tokio::test(start_paused = true)]
async fn without_a_usable_token_the_typed_error_is_right_and_recovery_follows() {
    for (name, fault, expect) in faults() {
        let server = server();
        let cache = cache(&server);
        server.set_fault(Some(fault));
        let err = cache.header().await.unwrap_err();
        check(name, &err, expect);
        assert!(
            cache.cached().is_none(),
            "{name}: nothing cached from a fault"
        );
        server.set_fault(None);
        pass(Duration::from_secs(6)).await; // past any Retry-After window
        cache
            .header()
            .await
            .unwrap_or_else(|e| panic!("{name}: no recovery: {e:?}"));
    }
}
