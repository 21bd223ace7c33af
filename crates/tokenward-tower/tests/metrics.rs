//! The metrics the layer and the retry policy move: a 401 `invalid_token` resent (or not),
//! and a retry with its reason. Recorded with the testkit's `metrics::record` on a
//! current-thread runtime with paused time.

mod support;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use support::*;
use tokenward::metrics::{REFRESHES, REJECTIONS, RETRIES};
use tokenward_testkit::metrics::{Recorded, record};
use tokenward_tower::replay::NeverReplay;
use tokenward_tower::retry::ClassifiedRetry;
use tokenward_tower::{AuthLayer, BoxError};
use tower::retry::RetryLayer;
use tower::{Layer, ServiceExt};

fn recorded<F: Future>(test: impl FnOnce() -> F) -> (F::Output, Recorded) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    record(|| runtime.block_on(test()))
}

/// An API that rejects `tok-1` with 401 `invalid_token` and accepts any other token.
fn api() -> impl tower::Service<Req, Response = Res, Error = BoxError, Future: Send> + Clone {
    tower::service_fn(|req: Req| async move {
        Ok::<_, BoxError>(if bearer(&req) == "Bearer tok-1" {
            invalid_token()
        } else {
            response(200)
        })
    })
}

#[test]
fn a_resend_after_invalid_token_is_counted_with_the_refresh_it_caused() {
    let ((status, calls), m) = recorded(|| async {
        let (cache, calls) = counting_cache();
        let client = AuthLayer::new(cache).layer(api());
        let response = client.oneshot(request("x")).await.unwrap();
        (response.status(), calls.load(Ordering::SeqCst))
    });
    assert_eq!(status, 200);
    assert_eq!(calls, 2);
    assert_eq!(
        m.counter(
            REJECTIONS,
            &[("integration", "tower"), ("outcome", "resent")]
        ),
        1
    );
    assert_eq!(m.counter(REJECTIONS, &[]), 1);
    assert_eq!(m.counter(REFRESHES, &[("reason", "rejected")]), 1);
}

#[test]
fn a_rejection_that_cannot_be_resent_is_counted_as_such() {
    let (status, m) = recorded(|| async {
        let (cache, _) = counting_cache();
        let client = AuthLayer::new(cache).replay(NeverReplay).layer(api());
        client.oneshot(request("x")).await.unwrap().status()
    });
    assert_eq!(status, 401);
    assert_eq!(
        m.counter(
            REJECTIONS,
            &[("integration", "tower"), ("outcome", "not_replayable")]
        ),
        1
    );

    let (status, m) = recorded(|| async {
        let (cache, _) = same_token_cache();
        let rejecting = tower::service_fn(|_: Req| async { Ok::<_, BoxError>(invalid_token()) });
        let client = AuthLayer::new(cache).layer(rejecting);
        client.oneshot(request("x")).await.unwrap().status()
    });
    assert_eq!(status, 401);
    assert_eq!(
        m.counter(
            REJECTIONS,
            &[("integration", "tower"), ("outcome", "same_token")]
        ),
        1
    );
}

#[test]
fn a_rejection_without_a_next_token_is_counted_as_failed() {
    let (result, m) = recorded(|| async {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&calls);
        // The first token, then the token endpoint refuses the client.
        let cache = tokenward::TokenCache::new(tokenward::grant::from_fn(move || {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    tokenward::Token::builder("tok-1").build()
                } else {
                    Err(tokenward::Error::NoRefreshToken)
                }
            }
        }));
        let client = AuthLayer::new(cache).layer(api());
        client.oneshot(request("x")).await.map(|r| r.status())
    });
    assert!(result.is_err(), "{result:?}");
    assert_eq!(
        m.counter(
            REJECTIONS,
            &[("integration", "tower"), ("outcome", "failed")]
        ),
        1
    );
}

#[test]
fn retries_are_counted_by_reason() {
    let (status, m) = recorded(|| async {
        let calls = Arc::new(AtomicUsize::new(0));
        let flaky = tower::service_fn(move |_: Req| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                Ok::<_, BoxError>(match n {
                    0 => response(503),
                    1 => challenge(429, "Bearer"),
                    _ => response(200),
                })
            }
        });
        let client = RetryLayer::new(ClassifiedRetry::new()).layer(flaky);
        let request = http::Request::get("http://api.example/jobs")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        client.oneshot(request).await.unwrap().status()
    });
    assert_eq!(status, 200);
    for reason in ["server_error", "rate_limited"] {
        assert_eq!(
            m.counter(RETRIES, &[("integration", "tower"), ("reason", reason)]),
            1,
            "{reason}"
        );
    }
    assert_eq!(m.counter(RETRIES, &[]), 2);
}
