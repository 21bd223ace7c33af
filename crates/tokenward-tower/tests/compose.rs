//! `AuthLayer` composed with tower's `TimeoutLayer` and `RetryLayer` (with `ClassifiedRetry`),
//! in the orders users write, over a real hyper client against the testkit server on
//! 127.0.0.1. Real time; outcomes and the server's counters are asserted, not durations.
//!
//! The right order, outermost first: timeout, retry, `AuthLayer`, the client.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use support::e2e::*;
use tokenward::TenantCache;
use tokenward::timing::Backoff;
use tokenward_testkit::Fault;
use tokenward_tower::AuthLayer;
use tokenward_tower::retry::ClassifiedRetry;
use tokenward_tower::tenant::Tenant;
use tower::{ServiceBuilder, ServiceExt};

fn get(url: String) -> http::Request<Full<Bytes>> {
    http::Request::get(url).body(Full::default()).unwrap()
}

fn quick_retry() -> ClassifiedRetry {
    ClassifiedRetry::new().backoff(Backoff::new(
        Duration::from_millis(10),
        Duration::from_millis(50),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn right_order_retries_server_errors_each_attempt_with_the_token() {
    let (server, running, cache) = setup().await;
    let script = Script::new(
        &server,
        [
            Step::Rewrite {
                status: 503,
                retry_after: None,
            },
            Step::Rewrite {
                status: 502,
                retry_after: None,
            },
        ],
    );
    let client = ServiceBuilder::new()
        .timeout(Duration::from_secs(30))
        .retry(quick_retry())
        .layer(AuthLayer::new(cache))
        .layer(script.layer())
        .service(hyper::<Full<Bytes>>());

    let response = client.oneshot(get(running.resource_url())).await.unwrap();
    assert_eq!(response.status(), 200);
    let seen = script.seen();
    assert_eq!(seen.len(), 3);
    assert!(
        seen.iter()
            .all(|s| s.authorization.is_some() && s.sensitive)
    );
    let counters = server.counters();
    assert_eq!(counters.resource_requests, 3);
    assert_eq!(counters.token_requests, 1);
}

/// While a request waits out a `Retry-After`, another request refreshed the token (the old one
/// was revoked). Inside the retry, `AuthLayer` sets the current token on the retry; outside
/// it, the retry resends the old one and pays a 401 round trip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_inside_the_retry_sends_the_token_that_is_valid_at_retry_time() {
    let step = || Step::RewriteAndRotate {
        status: 429,
        retry_after: Some("1"),
    };

    // Right: retry outside, AuthLayer inside.
    let (server, running, cache) = setup().await;
    let script = Script::with_cache(&server, Some(cache.clone()), [step()]);
    let right = ServiceBuilder::new()
        .timeout(Duration::from_secs(30))
        .retry(quick_retry())
        .layer(AuthLayer::new(cache))
        .layer(script.layer())
        .service(hyper::<Full<Bytes>>());
    let response = right.oneshot(get(running.resource_url())).await.unwrap();
    assert_eq!(response.status(), 200);
    let seen = script.seen();
    assert_eq!(seen.len(), 2);
    assert_ne!(
        seen[0].authorization, seen[1].authorization,
        "the new token"
    );
    let counters = server.counters();
    assert_eq!(counters.resource_requests, 2);
    assert_eq!(counters.resource_rejected, 0);
    assert_eq!(
        counters.token_requests, 2,
        "the first token and the other request's refresh"
    );

    // Wrong: AuthLayer outside the retry.
    let (server, running, cache) = setup().await;
    let script = Script::with_cache(&server, Some(cache.clone()), [step()]);
    let wrong = ServiceBuilder::new()
        .timeout(Duration::from_secs(30))
        .layer(AuthLayer::new(cache))
        .retry(quick_retry())
        .layer(script.layer())
        .service(hyper::<Full<Bytes>>());
    let response = wrong.oneshot(get(running.resource_url())).await.unwrap();
    assert_eq!(response.status(), 200, "recovered, but at a cost");
    let seen = script.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(
        seen[0].authorization, seen[1].authorization,
        "the stale token, resent"
    );
    let counters = server.counters();
    assert_eq!(counters.resource_requests, 3);
    assert_eq!(
        counters.resource_rejected, 1,
        "a 401 round trip the right order avoids"
    );
}

/// The timeout outermost bounds the wait for a token too; inside `AuthLayer` it does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timeout_outermost_bounds_waiting_for_a_token() {
    // Right: the caller's deadline covers the slow token endpoint.
    let (server, running, cache) = setup().await;
    server.push_fault(Fault::Latency(Duration::from_millis(1500)));
    let right = ServiceBuilder::new()
        .timeout(Duration::from_millis(100))
        .retry(quick_retry())
        .layer(AuthLayer::new(cache))
        .service(hyper::<Full<Bytes>>());
    let error = right
        .oneshot(get(running.resource_url()))
        .await
        .unwrap_err();
    assert!(error.is::<tower::timeout::error::Elapsed>(), "{error}");
    assert_eq!(server.counters().resource_requests, 0);

    // Wrong: the timeout below AuthLayer only covers the HTTP exchange; the caller waits for
    // the token endpoint however long it takes (up to the cache's refresh deadline).
    let (server, running, cache) = setup().await;
    server.push_fault(Fault::Latency(Duration::from_millis(1500)));
    let wrong = ServiceBuilder::new()
        .layer(AuthLayer::new(cache))
        .timeout(Duration::from_millis(100))
        .service(hyper::<Full<Bytes>>());
    let response = wrong.oneshot(get(running.resource_url())).await.unwrap();
    assert_eq!(
        response.status(),
        200,
        "no timeout fired while waiting 1.5 s for a token"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_keep_the_tenant_and_a_401_inside_a_retry_is_refreshed_once() {
    let (server, running, cache) = setup().await;
    let tenants: TenantCache<String> = TenantCache::builder()
        .tenant_cache("acme".into(), cache)
        .build();
    let script = Script::new(
        &server,
        [
            Step::Rewrite {
                status: 503,
                retry_after: None,
            },
            Step::RevokeThenForward,
        ],
    );
    let client = ServiceBuilder::new()
        .timeout(Duration::from_secs(30))
        .retry(quick_retry())
        .layer(AuthLayer::tenants(tenants))
        .layer(script.layer())
        .service(hyper::<Full<Bytes>>());
    let mut request = get(running.resource_url());
    request.extensions_mut().insert(Tenant("acme".to_string()));
    let response = client.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(json(response).await["client_id"], "svc");
    // 503 → retry → 401 invalid_token → Auth refreshes and resends → 200.
    let counters = server.counters();
    assert_eq!(counters.resource_requests, 3);
    assert_eq!(counters.resource_rejected, 1);
    assert_eq!(counters.token_requests, 2);
}
