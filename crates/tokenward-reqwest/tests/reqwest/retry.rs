//! RetryMiddleware: against a scripted server on loopback with a recording sleeper, against
//! canned responses with paused time, and once in real time.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use reqwest_middleware::{ClientBuilder, Middleware};
use tokenward::classify::IDEMPOTENCY_KEY;
use tokenward::timing::Backoff;
use tokenward_reqwest::{AuthMiddleware, RetryMiddleware, token_error};
use tokenward_testkit::Fault;

use crate::helpers::*;

fn retry(recorder: &Recorder) -> RetryMiddleware {
    RetryMiddleware::new()
        .backoff(Backoff::new(
            Duration::from_millis(100),
            Duration::from_secs(2),
        ))
        .sleeper(recorder.sleeper())
}

fn retry_client(recorder: &Recorder) -> reqwest_middleware::ClientWithMiddleware {
    client_with(vec![Arc::new(retry(recorder))])
}

#[tokio::test]
async fn rate_limited_429_waits_retry_after() {
    let script = Scripted::start([Answer::status(429).header("retry-after", "2")]).await;
    let recorder = Recorder::default();
    let response = retry_client(&recorder)
        .get(script.url())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(recorder.delays(), [Duration::from_secs(2)]);
    assert_eq!(script.requests(), 2);
}

#[tokio::test]
async fn retry_after_as_an_http_date_is_waited() {
    let at = std::time::SystemTime::now() + Duration::from_secs(30);
    let script =
        Scripted::start([Answer::status(429).header("retry-after", httpdate::fmt_http_date(at))])
            .await;
    let recorder = Recorder::default();
    let response = retry_client(&recorder)
        .get(script.url())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let waited = recorder.delays()[0];
    // Whole seconds on the wire: between 28 and 30 s from when the server wrote it.
    assert!(
        waited > Duration::from_secs(27) && waited <= Duration::from_secs(30),
        "{waited:?}"
    );
}

#[tokio::test]
async fn a_retry_after_beyond_the_cap_is_returned_at_once() {
    // Up to the cap it is waited for...
    let script = Scripted::start([
        Answer::status(429).header("retry-after", "5"),
        Answer::status(503).header("retry-after", "5"),
    ])
    .await;
    let recorder = Recorder::default();
    let client = client_with(vec![Arc::new(
        retry(&recorder).max_retry_after(Duration::from_secs(5)),
    )]);
    let response = client.get(script.url()).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(recorder.delays(), [Duration::from_secs(5); 2]);
    assert_eq!(script.requests(), 3);

    // ... beyond it the response is final: returned at once, its Retry-After for the caller.
    for status in [429, 503] {
        let script = Scripted::start([Answer::status(status).header("retry-after", "6")]).await;
        let recorder = Recorder::default();
        let client = client_with(vec![Arc::new(
            retry(&recorder).max_retry_after(Duration::from_secs(5)),
        )]);
        let response = client.get(script.url()).send().await.unwrap();
        assert_eq!(response.status(), status);
        assert_eq!(response.headers()["retry-after"], "6");
        assert!(recorder.delays().is_empty());
        assert_eq!(script.requests(), 1);
    }

    // The default cap is 30 s: a day is not waited for, 30 s is.
    let script = Scripted::start([Answer::status(429).header("retry-after", "86400")]).await;
    let recorder = Recorder::default();
    let response = retry_client(&recorder)
        .get(script.url())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert!(recorder.delays().is_empty());
    let script = Scripted::start([Answer::status(429).header("retry-after", "30")]).await;
    let recorder = Recorder::default();
    let response = retry_client(&recorder)
        .get(script.url())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(recorder.delays(), [Duration::from_secs(30)]);
}

#[tokio::test]
async fn service_unavailable_is_retried_up_to_the_limit() {
    let script = Scripted::start(vec![Answer::status(503); 10]).await;
    let recorder = Recorder::default();
    let response = retry_client(&recorder)
        .get(script.url())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503, "the last response is returned");
    assert_eq!(script.requests(), 4, "4 attempts in all");
    let delays = recorder.delays();
    assert_eq!(delays.len(), 3);
    // Full jitter below 100 ms, 200 ms, 400 ms.
    for (retry, delay) in delays.iter().enumerate() {
        assert!(
            *delay < Duration::from_millis(100 << retry),
            "{retry}: {delay:?}"
        );
    }
}

#[tokio::test]
async fn server_errors_then_success() {
    let script = Scripted::start([
        Answer::status(500),
        Answer::status(502),
        Answer::status(504),
    ])
    .await;
    let recorder = Recorder::default();
    let response = retry_client(&recorder)
        .get(script.url())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(script.requests(), 4);
}

#[tokio::test]
async fn a_503_with_retry_after_waits_it() {
    let script = Scripted::start([Answer::status(503).header("retry-after", "3")]).await;
    let recorder = Recorder::default();
    let response = retry_client(&recorder)
        .get(script.url())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(recorder.delays(), [Duration::from_secs(3)]);
}

#[tokio::test]
async fn max_attempts_is_configurable() {
    let script = Scripted::start(vec![Answer::status(503); 10]).await;
    let recorder = Recorder::default();
    let client = client_with(vec![Arc::new(retry(&recorder).max_attempts(2))]);
    assert_eq!(client.get(script.url()).send().await.unwrap().status(), 503);
    assert_eq!(script.requests(), 2);

    let script = Scripted::start(vec![Answer::status(503); 10]).await;
    let client = client_with(vec![Arc::new(retry(&recorder).max_attempts(1))]);
    assert_eq!(client.get(script.url()).send().await.unwrap().status(), 503);
    assert_eq!(script.requests(), 1);
}

#[tokio::test]
async fn client_errors_and_unretryable_server_errors_are_never_retried() {
    let cases = [
        Answer::status(401).header("www-authenticate", r#"Bearer error="invalid_token""#),
        Answer::status(401),
        Answer::status(403).header(
            "www-authenticate",
            r#"Bearer error="insufficient_scope", scope="jobs.write""#,
        ),
        Answer::status(403),
        Answer::status(400).header("retry-after", "1"),
        Answer::status(404),
        Answer::status(409),
        Answer::status(422),
        Answer::status(501),
        Answer::status(505),
    ];
    for case in cases {
        let status = case.status;
        let script = Scripted::start([case]).await;
        let recorder = Recorder::default();
        let response = retry_client(&recorder)
            .get(script.url())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status);
        assert_eq!(script.requests(), 1, "{status} was retried");
        assert!(recorder.delays().is_empty());
    }
}

#[tokio::test]
async fn connect_errors_are_retried() {
    let port = closed_port();
    let recorder = Recorder::default();
    let probe = Probe::default();
    let client = client_with(vec![Arc::new(retry(&recorder)), Arc::new(probe.clone())]);
    let err = client
        .get(format!("http://127.0.0.1:{port}/api"))
        .send()
        .await
        .unwrap_err();
    assert!(
        err.is_connect(),
        "the error is passed through unwrapped: {err:?}"
    );
    assert_eq!(probe.attempts(), 4);
    assert_eq!(recorder.delays().len(), 3);
}

/// Everything logged on this thread while `f` runs, at TRACE level.
async fn logged<F: std::future::Future>(f: F) -> (F::Output, String) {
    #[derive(Clone, Default)]
    struct Capture(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    let output = f.await;
    drop(guard);
    let text = String::from_utf8_lossy(&capture.0.lock().unwrap()).into_owned();
    (output, text)
}

#[tokio::test]
async fn a_retried_transport_error_is_logged_without_the_urls_credentials_or_query() {
    let port = closed_port();
    let recorder = Recorder::default();
    let client = retry_client(&recorder);
    let url = format!("http://alice-Ux7w:p4ssw0rd-Vb2q@127.0.0.1:{port}/api?api_key=k3y-Qr9tLm");
    let (result, logs) = logged(client.get(&url).send()).await;
    assert!(result.unwrap_err().is_connect());
    assert_eq!(recorder.delays().len(), 3);
    assert!(
        logs.contains("retryable transport error")
            && logs.contains(&format!("url=http://127.0.0.1:{port}/api")),
        "the retries are logged, with the URL's host and path:\n{logs}"
    );
    for secret in ["alice-Ux7w", "p4ssw0rd-Vb2q", "k3y-Qr9tLm"] {
        assert!(!logs.contains(secret), "{secret} logged:\n{logs}");
    }
}

#[tokio::test]
async fn timeouts_are_retried() {
    let script = Scripted::start([
        Answer::status(200).delay(Duration::from_secs(5)),
        Answer::status(200).delay(Duration::from_secs(5)),
    ])
    .await;
    let recorder = Recorder::default();
    let client = ClientBuilder::new(
        reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_millis(200))
            .build()
            .unwrap(),
    )
    .with(retry(&recorder))
    .build();
    let response = client.get(script.url()).send().await.unwrap();
    assert_eq!(response.status(), 200);
    // Two timeouts, then the answer (a third timeout on a very slow machine would still be
    // retried once more).
    assert!(script.requests() >= 3, "{}", script.requests());
    assert_eq!(recorder.delays().len(), script.requests() - 1);
}

#[tokio::test]
async fn a_streaming_body_is_sent_once_and_its_response_returned() {
    let script = Scripted::start([Answer::status(503)]).await;
    let recorder = Recorder::default();
    // A PUT: retried after a 503 if its body could be sent again.
    let response = retry_client(&recorder)
        .put(script.url())
        .body(reqwest::Body::wrap(String::from("streamed")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(script.requests(), 1);
    assert_eq!(script.seen()[0].body_len, 8, "sent with its body");
    assert!(recorder.delays().is_empty());
}

#[tokio::test]
async fn a_buffered_body_is_resent_whole() {
    let script = Scripted::start([Answer::status(503), Answer::status(429)]).await;
    let recorder = Recorder::default();
    let response = retry_client(&recorder)
        .post(script.url())
        .header(IDEMPOTENCY_KEY, "upload-1")
        .body("0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let lens: Vec<_> = script.seen().iter().map(|s| s.body_len).collect();
    assert_eq!(lens, [10, 10, 10]);
}

#[tokio::test]
async fn each_attempt_gets_fresh_extensions() {
    let script = Scripted::start([Answer::status(503), Answer::status(503)]).await;
    let recorder = Recorder::default();
    let probe = Probe::default();
    let client = client_with(vec![Arc::new(retry(&recorder)), Arc::new(probe.clone())]);
    let request = client.get(script.url()).build().unwrap();
    let mut extensions = http::Extensions::new();
    extensions.insert(String::from("the caller's"));
    let response = client
        .execute_with_extensions(request, &mut extensions)
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(probe.attempts(), 3);
    assert_eq!(probe.leaked(), 0);
    assert_eq!(extensions.get::<AttemptMarker>(), Some(&AttemptMarker(3)));
    assert_eq!(extensions.get::<String>().unwrap(), "the caller's");
}

// ---------------------------------------------------------------------------------------------
// Which requests: a request that is not idempotent is repeated only when that is safe.

/// A port on 127.0.0.1 nobody listens on: bound, noted, closed.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn a_post_after_a_502_is_sent_exactly_once() {
    for status in [502, 500, 503, 504, 408] {
        let script = Scripted::start(vec![Answer::status(status); 4]).await;
        let recorder = Recorder::default();
        let response = retry_client(&recorder)
            .post(script.url())
            .body("charge")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status);
        assert_eq!(script.requests(), 1, "POST {status} was sent again");
        assert!(recorder.delays().is_empty());
    }
    // A Retry-After on a 503 does not make a POST safe to repeat; nor is a PATCH idempotent.
    let script = Scripted::start([Answer::status(503).header("retry-after", "1")]).await;
    let recorder = Recorder::default();
    let client = retry_client(&recorder);
    assert_eq!(
        client.post(script.url()).send().await.unwrap().status(),
        503
    );
    assert_eq!(script.requests(), 1);
    let script = Scripted::start([Answer::status(502)]).await;
    assert_eq!(
        client.patch(script.url()).send().await.unwrap().status(),
        502
    );
    assert_eq!(script.requests(), 1);
}

#[tokio::test]
async fn a_get_after_a_502_is_retried() {
    for method in [
        reqwest::Method::GET,
        reqwest::Method::HEAD,
        reqwest::Method::OPTIONS,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
    ] {
        let script = Scripted::start([Answer::status(502)]).await;
        let recorder = Recorder::default();
        let response = retry_client(&recorder)
            .request(method.clone(), script.url())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{method}");
        assert_eq!(script.requests(), 2, "{method}");
        assert_eq!(recorder.delays().len(), 1);
    }
}

#[tokio::test]
async fn a_post_with_an_idempotency_key_is_retried() {
    let script = Scripted::start(vec![Answer::status(502); 10]).await;
    let recorder = Recorder::default();
    let response = retry_client(&recorder)
        .post(script.url())
        .header(IDEMPOTENCY_KEY, "order-7f3a")
        .body("charge")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    assert_eq!(script.requests(), 4);
    let lens: Vec<_> = script.seen().iter().map(|s| s.body_len).collect();
    assert_eq!(lens, [6; 4], "each attempt with its body");
}

#[tokio::test]
async fn a_post_after_a_429_is_retried() {
    let script = Scripted::start([
        Answer::status(429).header("retry-after", "2"),
        Answer::status(429),
    ])
    .await;
    let recorder = Recorder::default();
    let response = retry_client(&recorder)
        .post(script.url())
        .body("charge")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(script.requests(), 3);
    let delays = recorder.delays();
    assert_eq!(delays[0], Duration::from_secs(2), "Retry-After");
    assert!(
        delays[1] < Duration::from_millis(200),
        "backoff: {delays:?}"
    );
}

#[tokio::test]
async fn an_opted_in_post_is_retried() {
    let script = Scripted::start(vec![Answer::status(502); 10]).await;
    let recorder = Recorder::default();
    let client = client_with(vec![Arc::new(retry(&recorder).retry_non_idempotent(true))]);
    let response = client.post(script.url()).body("x").send().await.unwrap();
    assert_eq!(response.status(), 502);
    assert_eq!(script.requests(), 4);
    assert_eq!(recorder.delays().len(), 3);
    // The opt-in does not make final responses retryable.
    let script = Scripted::start([Answer::status(501)]).await;
    assert_eq!(
        client.post(script.url()).send().await.unwrap().status(),
        501
    );
    assert_eq!(script.requests(), 1);
}

/// A client whose every request times out after 100 ms against a server that never
/// answers, with the retry middleware (opted in or not) and a probe counting the attempts
/// below it.
async fn attempts_timing_out(
    method: reqwest::Method,
    key: bool,
    retry_non_idempotent: bool,
) -> u64 {
    let script = Scripted::start(vec![Answer::hang(); 4]).await;
    let recorder = Recorder::default();
    let probe = Probe::default();
    let client = ClientBuilder::new(
        reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_millis(100))
            .build()
            .unwrap(),
    )
    .with(retry(&recorder).retry_non_idempotent(retry_non_idempotent))
    .with(probe.clone())
    .build();
    let mut request = client.request(method, script.url()).body("charge");
    if key {
        request = request.header(IDEMPOTENCY_KEY, "order-7f3a");
    }
    let err = request.send().await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(recorder.delays().len() as u64, probe.attempts() - 1);
    probe.attempts()
}

#[tokio::test]
async fn a_post_that_times_out_is_not_retried() {
    use reqwest::Method;
    assert_eq!(attempts_timing_out(Method::POST, false, false).await, 1);
    assert_eq!(attempts_timing_out(Method::PATCH, false, false).await, 1);
    // Safe to repeat, or opted in: retried up to the limit.
    assert_eq!(attempts_timing_out(Method::GET, false, false).await, 4);
    assert_eq!(attempts_timing_out(Method::POST, true, false).await, 4);
    assert_eq!(attempts_timing_out(Method::POST, false, true).await, 4);
}

#[tokio::test]
async fn a_post_whose_connection_fails_is_retried() {
    let recorder = Recorder::default();
    let probe = Probe::default();
    let client = client_with(vec![Arc::new(retry(&recorder)), Arc::new(probe.clone())]);
    let err = client
        .post(format!("http://127.0.0.1:{}/api", closed_port()))
        .body("charge")
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    assert_eq!(probe.attempts(), 4, "never sent: safe to send again");
    assert_eq!(recorder.delays().len(), 3);
}

// ---------------------------------------------------------------------------------------------
// With AuthMiddleware

#[tokio::test]
async fn retry_outside_auth_sends_the_current_token_on_each_attempt() {
    let script = Scripted::start([Answer::status(503), Answer::status(503)]).await;
    let (cache, fetches) = counting_cache();
    // While the retry waits, the token is replaced (refreshed, rotated, revoked ...).
    let between = cache.clone();
    let retry = RetryMiddleware::new().sleeper(move |_delay: Duration| {
        between.clear();
        std::future::ready(())
    });
    let client = ClientBuilder::new(reqwest_client())
        .with(retry)
        .with(AuthMiddleware::new(cache))
        .build();
    let response = client.get(script.url()).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let sent: Vec<_> = script
        .seen()
        .into_iter()
        .map(|s| s.authorization.unwrap())
        .collect();
    assert_eq!(sent, ["Bearer t1", "Bearer t2", "Bearer t3"]);
    assert_eq!(fetches.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn with_auth_a_401_is_refreshed_by_auth_and_not_retried_again() {
    let script = Scripted::start([
        Answer::status(401).header("www-authenticate", r#"Bearer error="invalid_token""#),
        Answer::status(401).header("www-authenticate", r#"Bearer error="invalid_token""#),
    ])
    .await;
    let (cache, fetches) = counting_cache();
    let recorder = Recorder::default();
    let client = ClientBuilder::new(reqwest_client())
        .with(retry(&recorder))
        .with(AuthMiddleware::new(cache))
        .build();
    let response = client.get(script.url()).send().await.unwrap();
    assert_eq!(
        response.status(),
        401,
        "auth resent once; the retry layer adds nothing"
    );
    assert_eq!(script.requests(), 2);
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
    assert!(recorder.delays().is_empty());
}

/// A 401 `invalid_token` is the auth middleware's to resend, for a POST too: the retry
/// middleware outside it neither blocks that resend nor adds one.
#[tokio::test]
async fn with_auth_a_post_refused_with_invalid_token_is_resent_once() {
    let invalid =
        || Answer::status(401).header("www-authenticate", r#"Bearer error="invalid_token""#);
    let script = Scripted::start([invalid(), invalid()]).await;
    let (cache, fetches) = counting_cache();
    let recorder = Recorder::default();
    let client = ClientBuilder::new(reqwest_client())
        .with(retry(&recorder))
        .with(AuthMiddleware::new(cache))
        .build();
    let response = client
        .post(script.url())
        .body("charge")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let sent: Vec<_> = script
        .seen()
        .into_iter()
        .map(|s| (s.authorization.unwrap(), s.body_len))
        .collect();
    assert_eq!(
        sent,
        [("Bearer t1".to_owned(), 6), ("Bearer t2".to_owned(), 6)]
    );
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
    assert!(recorder.delays().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_errors_pass_through_retry_unretried_and_unwrapped() {
    let (server, running, cache) = testkit().await;
    server.set_fault(Some(Fault::InvalidClient));
    let recorder = Recorder::default();
    let client = ClientBuilder::new(reqwest_client())
        .with(retry(&recorder))
        .with(AuthMiddleware::new(cache))
        .build();
    let err = client.get(running.resource_url()).send().await.unwrap_err();
    let reqwest_middleware::Error::Middleware(inner) = &err else {
        panic!("{err:?}")
    };
    assert!(matches!(
        inner.downcast_ref::<tokenward::Error>(),
        Some(tokenward::Error::InvalidClient(_))
    ));
    assert!(token_error(&err).is_some());
    assert!(recorder.delays().is_empty(), "not retried");
    assert_eq!(server.token_calls(), 1);
    assert_eq!(server.counters().resource_requests, 0);
}

// ---------------------------------------------------------------------------------------------
// Paused time, no sockets: the default sleeper really waits (tokio time).

#[tokio::test(start_paused = true)]
async fn paused_time_429_waits_retry_after_on_tokio_time() {
    let canned = Canned::new([
        Answer::status(429).header("retry-after", "30"),
        Answer::status(429).header("retry-after", "10"),
    ]);
    let client = ClientBuilder::new(reqwest_client())
        .with(RetryMiddleware::new())
        .with(canned.clone())
        .build();
    let start = tokio::time::Instant::now();
    let response = client.get("http://canned.invalid/").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(start.elapsed(), Duration::from_secs(40));
    assert_eq!(canned.calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn paused_time_503_backoff_stays_within_the_jitter_bounds() {
    let canned = Canned::new(vec![Answer::status(503); 10]);
    let client = ClientBuilder::new(reqwest_client())
        .with(RetryMiddleware::new().backoff(Backoff::new(
            Duration::from_secs(1),
            Duration::from_secs(60),
        )))
        .with(canned.clone())
        .build();
    let start = tokio::time::Instant::now();
    let response = client.get("http://canned.invalid/").send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(canned.calls.load(Ordering::SeqCst), 4);
    // Full jitter below 1 s + 2 s + 4 s.
    assert!(
        start.elapsed() < Duration::from_secs(7),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn paused_time_429_without_retry_after_backs_off() {
    let canned: Arc<dyn Middleware> = Arc::new(Canned::new([Answer::status(429)]));
    let client = client_with(vec![
        Arc::new(RetryMiddleware::new().backoff(Backoff::new(
            Duration::from_secs(8),
            Duration::from_secs(60),
        ))),
        canned,
    ]);
    let start = tokio::time::Instant::now();
    let response = client.get("http://canned.invalid/").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        start.elapsed() < Duration::from_secs(8),
        "{:?}",
        start.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// Real time, once.

#[tokio::test]
async fn real_time_retry_after_one_second_is_waited() {
    let script = Scripted::start([Answer::status(429).header("retry-after", "1")]).await;
    let client = client_with(vec![Arc::new(RetryMiddleware::new())]);
    let start = std::time::Instant::now();
    let response = client.get(script.url()).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(script.requests(), 2);
}
