//! TokenwardStrategy with reqwest-retry's RetryTransientMiddleware (feature `reqwest-retry`).

use std::sync::Arc;
use std::time::Duration;

use reqwest_middleware::ClientBuilder;
use reqwest_retry::policies::ExponentialBackoff;
use reqwest_retry::{RetryTransientMiddleware, Retryable, RetryableStrategy};
use tokenward_reqwest::{AuthMiddleware, TokenwardStrategy, token_error};
use tokenward_testkit::Fault;

use crate::helpers::*;

fn verdict(answer: Answer) -> Option<&'static str> {
    let outcome = Ok(canned_response(&answer));
    TokenwardStrategy.handle(&outcome).map(|r| match r {
        Retryable::Transient => "transient",
        Retryable::Fatal => "fatal",
    })
}

#[test]
fn speaks_reqwest_retrys_vocabulary() {
    let invalid_token = r#"Bearer error="invalid_token""#;
    let scope = r#"Bearer error="insufficient_scope", scope="jobs.write""#;
    let table = [
        (Answer::status(200), None),
        (Answer::status(204), None),
        (Answer::status(304), None),
        (Answer::status(429), Some("transient")),
        (
            Answer::status(429).header("retry-after", "5"),
            Some("transient"),
        ),
        (Answer::status(408), Some("transient")),
        (Answer::status(500), Some("transient")),
        (Answer::status(502), Some("transient")),
        (Answer::status(503), Some("transient")),
        (Answer::status(504), Some("transient")),
        (Answer::status(501), Some("fatal")),
        (Answer::status(505), Some("fatal")),
        (
            Answer::status(401).header("www-authenticate", invalid_token),
            Some("fatal"),
        ),
        (Answer::status(401), Some("fatal")),
        (
            Answer::status(403).header("www-authenticate", scope),
            Some("fatal"),
        ),
        (Answer::status(403), Some("fatal")),
        (Answer::status(400), Some("fatal")),
        (Answer::status(404), Some("fatal")),
    ];
    for (answer, expected) in table {
        let status = answer.status;
        assert_eq!(verdict(answer), expected, "{status}");
    }
}

#[tokio::test]
async fn errors_connect_is_transient_middleware_is_fatal() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let err = reqwest_client()
        .get(format!("http://127.0.0.1:{port}/"))
        .send()
        .await
        .unwrap_err();
    let outcome = Err(reqwest_middleware::Error::Reqwest(err));
    assert!(TokenwardStrategy.handle(&outcome) == Some(Retryable::Transient));
    let outcome = Err(reqwest_middleware::Error::middleware(
        tokenward::Error::NoRefreshToken,
    ));
    assert!(TokenwardStrategy.handle(&outcome) == Some(Retryable::Fatal));
}

fn policy() -> ExponentialBackoff {
    ExponentialBackoff::builder()
        .retry_bounds(Duration::from_millis(1), Duration::from_millis(5))
        .build_with_max_retries(3)
}

#[tokio::test]
async fn with_retry_transient_middleware() {
    let script = Scripted::start([Answer::status(503), Answer::status(429)]).await;
    let client = ClientBuilder::new(reqwest_client())
        .with(RetryTransientMiddleware::new_with_policy_and_strategy(
            policy(),
            TokenwardStrategy,
        ))
        .build();
    assert_eq!(client.get(script.url()).send().await.unwrap().status(), 200);
    assert_eq!(script.requests(), 3);

    let script = Scripted::start([Answer::status(403)]).await;
    assert_eq!(client.get(script.url()).send().await.unwrap().status(), 403);
    assert_eq!(script.requests(), 1, "403 is fatal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_error_looks_through_reqwest_retrys_wrapper() {
    let (server, running, cache) = testkit().await;
    server.set_fault(Some(Fault::InvalidClient));
    let client = client_with(vec![
        Arc::new(RetryTransientMiddleware::new_with_policy_and_strategy(
            policy(),
            TokenwardStrategy,
        )),
        Arc::new(AuthMiddleware::new(cache)),
    ]);
    let err = client.get(running.resource_url()).send().await.unwrap_err();
    // reqwest-retry wraps it: a plain downcast to tokenward::Error no longer finds it ...
    let reqwest_middleware::Error::Middleware(inner) = &err else {
        panic!("{err:?}")
    };
    assert!(inner.downcast_ref::<tokenward::Error>().is_none());
    // ... token_error does.
    assert!(matches!(
        token_error(&err),
        Some(tokenward::Error::InvalidClient(_))
    ));
    assert_eq!(server.token_calls(), 1, "fatal: not retried");
    assert_eq!(server.counters().resource_requests, 0);
}
