//! The metrics the middlewares move: a 401 `invalid_token` resent (or not), and a retry
//! with its reason. Over loopback, on a current-thread runtime inside the testkit's
//! `metrics::record`, so the middlewares record to the test's recorder.

use std::future::Future;
use std::sync::Arc;

use tokenward::metrics::{REFRESHES, REJECTIONS, RETRIES};
use tokenward_reqwest::{AuthMiddleware, RetryMiddleware};
use tokenward_testkit::metrics::{Recorded, record};

use crate::helpers::*;

fn recorded<F: Future>(test: impl FnOnce() -> F) -> (F::Output, Recorded) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    record(|| runtime.block_on(test()))
}

#[test]
fn a_resend_after_invalid_token_is_counted_with_the_refresh_it_caused() {
    let (status, m) = recorded(|| async {
        let (server, running, cache) = testkit().await;
        let client = client_with(vec![Arc::new(AuthMiddleware::new(cache))]);
        client.get(running.resource_url()).send().await.unwrap();
        server.revoke_all_access_tokens();
        let response = client.get(running.resource_url()).send().await.unwrap();
        response.status()
    });
    assert_eq!(status, 200);
    assert_eq!(
        m.counter(
            REJECTIONS,
            &[("integration", "reqwest"), ("outcome", "resent")]
        ),
        1
    );
    assert_eq!(m.counter(REJECTIONS, &[]), 1);
    assert_eq!(m.counter(REFRESHES, &[("reason", "rejected")]), 1);
    assert_eq!(m.counter(REFRESHES, &[("reason", "first")]), 1);
}

#[test]
fn rejections_that_are_not_resent_are_counted_as_such() {
    let (status, m) = recorded(|| async {
        let (server, running, cache) = testkit().await;
        let client = client_with(vec![Arc::new(
            AuthMiddleware::new(cache).resend_on_invalid_token(false),
        )]);
        client.get(running.resource_url()).send().await.unwrap();
        server.revoke_all_access_tokens();
        client
            .get(running.resource_url())
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status, 401);
    assert_eq!(
        m.counter(
            REJECTIONS,
            &[("integration", "reqwest"), ("outcome", "not_replayable")]
        ),
        1
    );
}

#[test]
fn retries_are_counted_by_reason() {
    let (status, m) = recorded(|| async {
        let script = Scripted::start([
            Answer::status(503),
            Answer::status(429).header("retry-after", "1"),
        ])
        .await;
        let recorder = Recorder::default();
        let client = client_with(vec![Arc::new(
            RetryMiddleware::new().sleeper(recorder.sleeper()),
        )]);
        client.get(script.url()).send().await.unwrap().status()
    });
    assert_eq!(status, 200);
    for reason in ["server_error", "rate_limited"] {
        assert_eq!(
            m.counter(RETRIES, &[("integration", "reqwest"), ("reason", reason)]),
            1,
            "{reason}"
        );
    }
    assert_eq!(m.counter(RETRIES, &[]), 2);
}
