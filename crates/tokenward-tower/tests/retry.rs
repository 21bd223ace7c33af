//! `ClassifiedRetry` under `tower::retry::Retry`, against `tower_test::mock`, on paused time.

mod support;

use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use support::*;
use tokenward::TransportErrorKind;
use tokenward::classify::IDEMPOTENCY_KEY;
use tokenward::timing::Backoff;
use tokenward_tower::BoxError;
use tokenward_tower::retry::ClassifiedRetry;
use tokenward_tower::tenant::Tenant;
use tokio::time::Instant;
use tower::retry::budget::TpsBudget;
use tower::retry::{Retry, RetryLayer};
use tower_test::mock::{self, Handle, Spawn};

type Mocked = Spawn<Retry<ClassifiedRetry, mock::Mock<Req, Res>>>;

fn spawn(policy: ClassifiedRetry) -> (Mocked, Handle<Req, Res>) {
    mock::spawn_layer(RetryLayer::new(policy))
}

fn send(service: &mut Mocked, req: Req) -> tokio::task::JoinHandle<Result<Res, BoxError>> {
    match service.poll_ready() {
        Poll::Ready(Ok(())) => {}
        other => panic!("not ready: {other:?}"),
    }
    tokio::spawn(service.call(req))
}

/// The next attempt, and when it arrived.
async fn next(handle: &mut Handle<Req, Res>) -> (Req, mock::SendResponse<Res>, Instant) {
    let (req, reply) = tokio::time::timeout(Duration::from_secs(600), handle.next_request())
        .await
        .expect("no attempt within 10 minutes")
        .unwrap();
    (req, reply, Instant::now())
}

async fn no_more_attempts(handle: &mut Handle<Req, Res>) {
    assert!(
        tokio::time::timeout(Duration::from_secs(600), handle.next_request())
            .await
            .is_err(),
        "unexpected attempt"
    );
}

/// A request of `method` with the header the retries must keep (`support::request` is a POST).
fn with_method(method: http::Method) -> Req {
    http::Request::builder()
        .method(method)
        .uri("http://api.example/jobs")
        .header("x-request", "kept")
        .body(Full::new(Bytes::from_static(b"x")))
        .unwrap()
}

/// A GET: idempotent, so retried after a 5xx.
fn get() -> Req {
    with_method(http::Method::GET)
}

/// A POST with an `Idempotency-Key`: retried like a GET.
fn keyed_post(body: &'static str) -> Req {
    let mut req = request(body);
    req.headers_mut().insert(
        IDEMPOTENCY_KEY,
        http::HeaderValue::from_static("order-7f3a"),
    );
    req
}

fn rate_limited(retry_after: Option<&'static str>) -> Res {
    let mut r = response(429);
    if let Some(value) = retry_after {
        r.headers_mut().insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static(value),
        );
    }
    r
}

#[tokio::test(start_paused = true)]
async fn server_errors_back_off_with_full_jitter_and_at_most_four_attempts() {
    for status in [500, 502, 503, 504, 408] {
        let (mut service, mut handle) = spawn(ClassifiedRetry::new());
        let call = send(&mut service, get());
        let (_, reply, mut at) = next(&mut handle).await;
        reply.send_response(response(status));
        // Retry n waits below min(10 s, 250 ms × 2ⁿ).
        for ceiling_ms in [250u64, 500, 1000] {
            let (req, reply, now) = next(&mut handle).await;
            assert!(
                now - at <= Duration::from_millis(ceiling_ms),
                "{status}: waited {:?}, ceiling {ceiling_ms} ms",
                now - at
            );
            assert_eq!(req.headers()["x-request"], "kept");
            at = now;
            reply.send_response(response(status));
        }
        // Four attempts in all: the fourth answer is the caller's.
        assert_eq!(call.await.unwrap().unwrap().status(), status);
        no_more_attempts(&mut handle).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_retry_that_succeeds_returns_the_success() {
    let (mut service, mut handle) = spawn(ClassifiedRetry::new());
    let call = send(&mut service, keyed_post("payload"));
    let (_, reply, _) = next(&mut handle).await;
    reply.send_response(response(503));
    let (req, reply, _) = next(&mut handle).await;
    let body = http_body_util::BodyExt::collect(req.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(body, "payload", "the retry carries the body");
    reply.send_response(response(200));
    assert_eq!(call.await.unwrap().unwrap().status(), 200);
}

#[tokio::test(start_paused = true)]
async fn rate_limited_waits_retry_after() {
    let (mut service, mut handle) = spawn(ClassifiedRetry::new());
    let call = send(&mut service, request("x"));
    let (_, reply, at) = next(&mut handle).await;
    reply.send_response(rate_limited(Some("5")));
    let (_, reply, now) = next(&mut handle).await;
    assert_eq!(now - at, Duration::from_secs(5), "exactly Retry-After");
    reply.send_response(response(200));
    assert_eq!(call.await.unwrap().unwrap().status(), 200);
}

#[tokio::test(start_paused = true)]
async fn rate_limited_beyond_the_cap_is_returned_at_once() {
    let policy = ClassifiedRetry::new().max_retry_after(Duration::from_secs(10));
    let (mut service, mut handle) = spawn(policy);
    let call = send(&mut service, request("x"));
    let (_, reply, at) = next(&mut handle).await;
    reply.send_response(rate_limited(Some("3600")));
    let response = call.await.unwrap().unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "3600");
    assert_eq!(Instant::now(), at, "no wait");
    no_more_attempts(&mut handle).await;
}

#[tokio::test(start_paused = true)]
async fn rate_limited_without_retry_after_backs_off() {
    let (mut service, mut handle) = spawn(ClassifiedRetry::new());
    let call = send(&mut service, request("x"));
    let (_, reply, at) = next(&mut handle).await;
    reply.send_response(rate_limited(Some("soon")));
    let (_, reply, now) = next(&mut handle).await;
    assert!(now - at <= Duration::from_millis(250));
    reply.send_response(response(200));
    assert_eq!(call.await.unwrap().unwrap().status(), 200);
}

#[tokio::test(start_paused = true)]
async fn a_503_with_retry_after_is_honoured() {
    let (mut service, mut handle) = spawn(ClassifiedRetry::new());
    let call = send(&mut service, get());
    let (_, reply, at) = next(&mut handle).await;
    let mut r = response(503);
    r.headers_mut().insert(
        http::header::RETRY_AFTER,
        http::HeaderValue::from_static("7"),
    );
    reply.send_response(r);
    let (_, reply, now) = next(&mut handle).await;
    assert_eq!(now - at, Duration::from_secs(7));
    reply.send_response(response(200));
    assert_eq!(call.await.unwrap().unwrap().status(), 200);
}

#[tokio::test(start_paused = true)]
async fn client_errors_and_unretryable_server_errors_are_not_retried() {
    let cases = [
        invalid_token(),
        response(401),
        challenge(
            403,
            r#"Bearer error="insufficient_scope", scope="jobs.write""#,
        ),
        response(403),
        response(400),
        response(404),
        response(409),
        response(422),
        response(501),
        response(505),
        response(200),
        response(204),
        response(302),
    ];
    for case in cases {
        let status = case.status();
        let (mut service, mut handle) = spawn(ClassifiedRetry::new());
        let call = send(&mut service, get());
        let (_, reply, _) = next(&mut handle).await;
        reply.send_response(case);
        assert_eq!(call.await.unwrap().unwrap().status(), status);
        no_more_attempts(&mut handle).await;
    }
}

#[tokio::test(start_paused = true)]
async fn max_attempts_and_backoff_are_configurable() {
    let policy = ClassifiedRetry::new()
        .max_attempts(2)
        .backoff(Backoff::new(Duration::from_secs(1), Duration::from_secs(1)));
    let (mut service, mut handle) = spawn(policy);
    let call = send(&mut service, get());
    let (_, reply, at) = next(&mut handle).await;
    reply.send_response(response(502));
    let (_, reply, now) = next(&mut handle).await;
    assert!(now - at <= Duration::from_secs(1));
    reply.send_response(response(502));
    assert_eq!(call.await.unwrap().unwrap().status(), 502);
    no_more_attempts(&mut handle).await;
}

#[tokio::test(start_paused = true)]
async fn attempts_are_counted_per_request() {
    let (mut service, mut handle) = spawn(ClassifiedRetry::new().max_attempts(2));
    for _ in 0..3 {
        let call = send(&mut service, get());
        let (_, reply, _) = next(&mut handle).await;
        reply.send_response(response(503));
        let (_, reply, _) = next(&mut handle).await;
        reply.send_response(response(200));
        assert_eq!(call.await.unwrap().unwrap().status(), 200);
    }
}

#[tokio::test(start_paused = true)]
async fn an_empty_budget_stops_retries() {
    // No floor and no share of requests: every withdrawal fails.
    let budget = Arc::new(TpsBudget::new(Duration::from_secs(10), 0, 0.0));
    let (mut service, mut handle) = spawn(ClassifiedRetry::new().budget(budget));
    let call = send(&mut service, get());
    let (_, reply, _) = next(&mut handle).await;
    reply.send_response(response(503));
    assert_eq!(call.await.unwrap().unwrap().status(), 503);
    no_more_attempts(&mut handle).await;

    // A budget of 50 % of requests: two requests deposit, one retry is allowed.
    let budget = Arc::new(TpsBudget::new(Duration::from_secs(10), 0, 0.5));
    let (mut service, mut handle) = spawn(ClassifiedRetry::new().budget(budget));
    let call = send(&mut service, get());
    let (_, reply, _) = next(&mut handle).await;
    reply.send_response(response(200));
    call.await.unwrap().unwrap();
    let call = send(&mut service, get());
    let (_, reply, _) = next(&mut handle).await;
    reply.send_response(response(503));
    let (_, reply, _) = next(&mut handle).await;
    reply.send_response(response(503));
    assert_eq!(call.await.unwrap().unwrap().status(), 503, "budget spent");
    no_more_attempts(&mut handle).await;
}

#[tokio::test(start_paused = true)]
async fn errors_are_not_retried_unless_asked() {
    #[derive(Debug, thiserror::Error)]
    #[error("refused")]
    struct Refused;

    // A GET, which the method rule would retry: only the error closure stops it.
    let (mut service, mut handle) = spawn(ClassifiedRetry::new());
    let call = send(&mut service, get());
    let (_, reply, _) = next(&mut handle).await;
    reply.send_error(Refused);
    assert!(call.await.unwrap().unwrap_err().is::<Refused>());
    no_more_attempts(&mut handle).await;

    let policy = ClassifiedRetry::new()
        .retry_errors_if(|e: &BoxError| e.is::<Refused>().then_some(TransportErrorKind::Connect));
    let (mut service, mut handle) = mock::spawn_layer::<Req, Res, _>(RetryLayer::new(policy));
    match service.poll_ready() {
        Poll::Ready(Ok(())) => {}
        other => panic!("{other:?}"),
    }
    let call = tokio::spawn(service.call(request("x")));
    let (_, reply, _) = next(&mut handle).await;
    reply.send_error(Refused);
    let (_, reply, _) = next(&mut handle).await;
    reply.send_response(response(200));
    assert_eq!(call.await.unwrap().unwrap().status(), 200);
}

#[tokio::test(start_paused = true)]
async fn a_streaming_body_is_never_retried() {
    type StreamReq = http::Request<support::e2e::Streaming>;
    let (mut service, mut handle) =
        mock::spawn_layer::<StreamReq, Res, _>(RetryLayer::new(ClassifiedRetry::new()));
    match service.poll_ready() {
        Poll::Ready(Ok(())) => {}
        other => panic!("{other:?}"),
    }
    let req = http::Request::put("/upload")
        .body(support::e2e::streaming(2, 8))
        .unwrap();
    let call = tokio::spawn(service.call(req));
    let (_, reply) = handle.next_request().await.unwrap();
    reply.send_response(response(503));
    assert_eq!(call.await.unwrap().unwrap().status(), 503);
    assert!(
        tokio::time::timeout(Duration::from_secs(600), handle.next_request())
            .await
            .is_err()
    );
}

#[tokio::test(start_paused = true)]
async fn each_attempt_gets_its_own_copy_of_the_extensions() {
    #[derive(Clone, Debug, PartialEq)]
    struct Attempt(u32);

    let (mut service, mut handle) = spawn(ClassifiedRetry::new());
    let mut req = get();
    req.extensions_mut().insert(Tenant("acme"));
    let call = send(&mut service, req);
    let (mut first, reply, _) = next(&mut handle).await;
    assert_eq!(first.extensions().get(), Some(&Tenant("acme")));
    first.extensions_mut().insert(Attempt(1)); // state of the first attempt
    reply.send_response(response(503));
    let (second, reply, _) = next(&mut handle).await;
    assert_eq!(second.extensions().get(), Some(&Tenant("acme")));
    assert_eq!(second.extensions().get::<Attempt>(), None, "nothing leaks");
    reply.send_response(response(200));
    call.await.unwrap().unwrap();
}

// ---------------------------------------------------------------------------------------------
// Which requests: a request that is not idempotent is repeated only when that is safe.

/// Sends `req` through `policy` and answers every attempt with `answer()` until the policy
/// stops: how many attempts reached the service, and the status the caller got.
async fn attempts_answered(
    policy: ClassifiedRetry,
    req: Req,
    answer: impl Fn() -> Res,
) -> (usize, u16) {
    let (mut service, mut handle) = spawn(policy);
    let call = send(&mut service, req);
    let mut attempts = 0;
    // Paused time: the wait ends only once nothing else can happen (backoffs are shorter).
    while let Ok(Some((_, reply))) =
        tokio::time::timeout(Duration::from_secs(600), handle.next_request()).await
    {
        attempts += 1;
        reply.send_response(answer());
    }
    (attempts, call.await.unwrap().unwrap().status().as_u16())
}

#[tokio::test(start_paused = true)]
async fn a_post_after_a_502_is_sent_exactly_once() {
    for status in [502, 500, 503, 504, 408] {
        let (attempts, got) = attempts_answered(ClassifiedRetry::new(), request("charge"), || {
            response(status)
        })
        .await;
        assert_eq!((attempts, got), (1, status), "POST {status}");
    }
    // A Retry-After on a 503 does not make a POST safe to repeat.
    let unavailable = || {
        let mut r = response(503);
        r.headers_mut().insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("1"),
        );
        r
    };
    let (attempts, _) = attempts_answered(ClassifiedRetry::new(), request("x"), unavailable).await;
    assert_eq!(attempts, 1);
    // Nor does a PATCH or an extension method count as idempotent.
    for method in [
        http::Method::PATCH,
        http::Method::from_bytes(b"CHARGE").unwrap(),
    ] {
        let (attempts, _) =
            attempts_answered(ClassifiedRetry::new(), with_method(method.clone()), || {
                response(502)
            })
            .await;
        assert_eq!(attempts, 1, "{method}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_get_after_a_502_is_retried() {
    for method in [
        http::Method::GET,
        http::Method::HEAD,
        http::Method::OPTIONS,
        http::Method::TRACE,
        http::Method::PUT,
        http::Method::DELETE,
    ] {
        let (attempts, got) =
            attempts_answered(ClassifiedRetry::new(), with_method(method.clone()), || {
                response(502)
            })
            .await;
        assert_eq!((attempts, got), (4, 502), "{method}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_post_with_an_idempotency_key_is_retried() {
    let (mut service, mut handle) = spawn(ClassifiedRetry::new());
    let call = send(&mut service, keyed_post("charge"));
    let (_, reply, _) = next(&mut handle).await;
    reply.send_response(response(502));
    let (req, reply, _) = next(&mut handle).await;
    assert_eq!(req.method(), http::Method::POST);
    assert_eq!(
        req.headers()[IDEMPOTENCY_KEY],
        "order-7f3a",
        "the key is resent"
    );
    reply.send_response(response(200));
    assert_eq!(call.await.unwrap().unwrap().status(), 200);
    no_more_attempts(&mut handle).await;

    let (attempts, _) =
        attempts_answered(ClassifiedRetry::new(), keyed_post("x"), || response(503)).await;
    assert_eq!(attempts, 4);
}

#[tokio::test(start_paused = true)]
async fn a_post_after_a_429_is_retried() {
    // The server refused it before acting: with or without Retry-After.
    for retry_after in [None, Some("2")] {
        let (mut service, mut handle) = spawn(ClassifiedRetry::new());
        let call = send(&mut service, request("charge"));
        let (_, reply, at) = next(&mut handle).await;
        reply.send_response(rate_limited(retry_after));
        let (req, reply, now) = next(&mut handle).await;
        assert_eq!(req.method(), http::Method::POST);
        if retry_after.is_some() {
            assert_eq!(now - at, Duration::from_secs(2));
        }
        reply.send_response(response(200));
        assert_eq!(call.await.unwrap().unwrap().status(), 200);
    }
    let (attempts, got) =
        attempts_answered(ClassifiedRetry::new(), request("x"), || rate_limited(None)).await;
    assert_eq!((attempts, got), (4, 429), "up to the attempt limit");
}

#[tokio::test(start_paused = true)]
async fn an_opted_in_post_is_retried() {
    let policy = ClassifiedRetry::new().retry_non_idempotent(true);
    let (attempts, got) = attempts_answered(policy.clone(), request("x"), || response(502)).await;
    assert_eq!((attempts, got), (4, 502));

    let (mut service, mut handle) = spawn(policy);
    let call = send(&mut service, request("payload"));
    let (_, reply, _) = next(&mut handle).await;
    reply.send_response(response(503));
    let (req, reply, _) = next(&mut handle).await;
    assert_eq!(req.method(), http::Method::POST);
    reply.send_response(response(200));
    assert_eq!(call.await.unwrap().unwrap().status(), 200);
    // The opt-in does not make final responses retryable.
    let policy = ClassifiedRetry::new().retry_non_idempotent(true);
    let (attempts, _) = attempts_answered(policy, request("x"), || response(501)).await;
    assert_eq!(attempts, 1);
}

#[tokio::test(start_paused = true)]
async fn a_connect_error_is_retried_for_a_post_a_timeout_only_for_a_get() {
    #[derive(Debug, thiserror::Error)]
    #[error("connection refused")]
    struct Refused;
    #[derive(Debug, thiserror::Error)]
    #[error("timed out")]
    struct TimedOut;

    fn policy() -> ClassifiedRetry<tokenward_tower::replay::CloneableBodies, Classify> {
        ClassifiedRetry::new().retry_errors_if(classify as Classify)
    }
    type Classify = fn(&BoxError) -> Option<TransportErrorKind>;
    fn classify(e: &BoxError) -> Option<TransportErrorKind> {
        if e.is::<Refused>() {
            Some(TransportErrorKind::Connect)
        } else if e.is::<TimedOut>() {
            Some(TransportErrorKind::Timeout)
        } else {
            None
        }
    }

    /// Attempts made when every one fails with `error()`, and the caller got an error.
    async fn attempts_failing(
        policy: ClassifiedRetry<tokenward_tower::replay::CloneableBodies, Classify>,
        req: Req,
        error: fn() -> BoxError,
    ) -> usize {
        let (mut service, mut handle) = mock::spawn_layer::<Req, Res, _>(RetryLayer::new(policy));
        match service.poll_ready() {
            Poll::Ready(Ok(())) => {}
            other => panic!("{other:?}"),
        }
        let call = tokio::spawn(service.call(req));
        let mut attempts = 0;
        while let Ok(Some((_, reply))) =
            tokio::time::timeout(Duration::from_secs(600), handle.next_request()).await
        {
            attempts += 1;
            reply.send_error(error());
        }
        assert!(call.await.unwrap().is_err());
        attempts
    }

    let refused = || -> BoxError { Box::new(Refused) };
    let timed_out = || -> BoxError { Box::new(TimedOut) };
    assert_eq!(attempts_failing(policy(), request("x"), refused).await, 4);
    assert_eq!(attempts_failing(policy(), request("x"), timed_out).await, 1);
    assert_eq!(attempts_failing(policy(), get(), timed_out).await, 4);
    assert_eq!(
        attempts_failing(policy(), keyed_post("x"), timed_out).await,
        4
    );
    let opted_in = policy().retry_non_idempotent(true);
    assert_eq!(attempts_failing(opted_in, request("x"), timed_out).await, 4);
    // An error the closure does not classify is returned at once.
    let other = || -> BoxError { "broken".into() };
    assert_eq!(attempts_failing(policy(), get(), other).await, 1);
}

/// A 401 `invalid_token` is the auth layer's to resend, for a POST too: the retry policy
/// outside it neither blocks that resend nor adds one.
#[tokio::test(start_paused = true)]
async fn a_post_refused_with_invalid_token_is_resent_once_by_auth() {
    let (cache, calls) = counting_cache();
    let layer = tower::ServiceBuilder::new()
        .layer(RetryLayer::new(ClassifiedRetry::new()))
        .layer(tokenward_tower::AuthLayer::new(cache))
        .into_inner();
    let (mut service, mut handle) = mock::spawn_layer::<Req, Res, _>(layer);
    match service.poll_ready() {
        Poll::Ready(Ok(())) => {}
        other => panic!("{other:?}"),
    }
    let call = tokio::spawn(service.call(request("charge")));
    let (first, reply, _) = next(&mut handle).await;
    assert_eq!(bearer(&first), "Bearer tok-1");
    reply.send_response(invalid_token());
    let (second, reply, _) = next(&mut handle).await;
    assert_eq!(second.method(), http::Method::POST);
    assert_eq!(bearer(&second), "Bearer tok-2");
    reply.send_response(invalid_token());
    assert_eq!(call.await.unwrap().unwrap().status(), 401);
    no_more_attempts(&mut handle).await;
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[test]
fn debug_shows_the_configuration() {
    let dbg = format!("{:?}", ClassifiedRetry::new().max_attempts(3));
    assert!(dbg.contains("max_attempts: 3"), "{dbg}");
    assert!(dbg.contains("retry_non_idempotent: false"), "{dbg}");
    assert!(dbg.contains("budget: false"), "{dbg}");
    let dbg = format!("{:?}", ClassifiedRetry::new().retry_non_idempotent(true));
    assert!(dbg.contains("retry_non_idempotent: true"), "{dbg}");
}
