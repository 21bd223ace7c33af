//! Each scripted fault, once, on the in-process client under paused time.

use std::time::Duration;

use http_body_util::BodyExt;
use tokenward::{HttpClient, TransportErrorKind};
use tokenward_testkit::Fault;
use tokio::time::Instant;

use crate::helpers::*;

fn cc_request(server: &tokenward_testkit::FakeServer) -> http::Request<bytes::Bytes> {
    form_request(&server.token_url())
        .header("authorization", basic(CLIENT, SECRET))
        .body(encode_form(&[("grant_type", "client_credentials")]))
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn rate_limited_with_and_without_retry_after() {
    let server = server();
    server.push_fault(Fault::RateLimited {
        retry_after: Some("2".into()),
    });
    server.push_fault(Fault::RateLimited {
        retry_after: Some("Wed, 21 Oct 2015 07:28:00 GMT".into()),
    });
    server.push_fault(Fault::RateLimited { retry_after: None });

    let response = client_credentials(&server, "").await;
    assert_eq!(response.status, 429);
    assert_eq!(response.header("retry-after"), Some("2"));
    assert_eq!(response.error(), "rate_limited");
    let response = client_credentials(&server, "").await;
    assert_eq!(
        response.header("retry-after"),
        Some("Wed, 21 Oct 2015 07:28:00 GMT")
    );
    let response = client_credentials(&server, "").await;
    assert_eq!(response.status, 429);
    assert_eq!(response.header("retry-after"), None);
    assert_eq!(client_credentials(&server, "").await.status, 200);

    let counters = server.counters();
    assert_eq!(
        (
            counters.token_requests,
            counters.faulted,
            counters.errors,
            counters.issued
        ),
        (4, 3, 3, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn status_faults_send_a_small_html_body() {
    let server = server();
    for code in [500, 502, 503, 504, 408] {
        server.push_fault(Fault::Status(code));
        let response = client_credentials(&server, "").await;
        assert_eq!(response.status.as_u16(), code);
        assert!(
            response
                .header("content-type")
                .unwrap()
                .starts_with("text/html")
        );
        assert!(serde_json::from_slice::<serde_json::Value>(&response.body).is_err());
        assert!(response.body.len() < 200);
    }
    assert_eq!(server.counters().errors, 5);
}

#[test]
#[should_panic(expected = "not an HTTP status code")]
fn an_impossible_status_panics_early() {
    server().push_fault(Fault::Status(42));
}

#[tokio::test(start_paused = true)]
async fn oauth_error_faults() {
    let server = server();
    server.push_fault(Fault::TemporarilyUnavailable);
    server.push_fault(Fault::InvalidGrant);
    server.push_fault(Fault::InvalidClient);
    server.push_fault(Fault::InvalidClient);

    let response = client_credentials(&server, "").await;
    assert_eq!(
        (response.status.as_u16(), response.error().as_str()),
        (400, "temporarily_unavailable")
    );
    let response = client_credentials(&server, "").await;
    assert_eq!(
        (response.status.as_u16(), response.error().as_str()),
        (400, "invalid_grant")
    );
    let response = client_credentials(&server, "").await;
    assert_eq!(
        (response.status.as_u16(), response.error().as_str()),
        (401, "invalid_client")
    );
    assert_eq!(response.header("www-authenticate"), None);
    let response = send(&server, cc_request(&server)).await;
    assert_eq!(response.error(), "invalid_client");
    assert_eq!(
        response.header("www-authenticate"),
        Some("Basic realm=\"testkit\"")
    );
}

#[tokio::test(start_paused = true)]
async fn latency_delays_then_answers_normally() {
    let server = server();
    server.push_fault(Fault::Latency(Duration::from_secs(5)));
    let start = Instant::now();
    let response = client_credentials(&server, "").await;
    assert_eq!(response.status, 200);
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    assert_eq!(server.counters().issued, 1);
    assert_eq!(server.counters().faulted, 1);
}

#[tokio::test(start_paused = true)]
async fn hang_never_answers() {
    let server = server();
    server.push_fault(Fault::Hang);
    let client = server.http_client();
    let outcome = tokio::time::timeout(
        Duration::from_secs(24 * 3600),
        client.send(cc_request(&server)),
    )
    .await;
    assert!(outcome.is_err(), "a hung request answered");
    let counters = server.counters();
    assert_eq!(
        (
            counters.token_requests,
            counters.faulted,
            counters.issued,
            counters.errors
        ),
        (1, 1, 0, 0)
    );
    // The next request is served normally.
    assert_eq!(client_credentials(&server, "").await.status, 200);
}

#[tokio::test(start_paused = true)]
async fn garbage_body_is_html_with_200() {
    let server = server();
    server.push_fault(Fault::GarbageBody);
    let response = client_credentials(&server, "").await;
    assert_eq!(response.status, 200);
    assert!(
        response
            .header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert!(response.body.starts_with(b"<html>"));
    assert!(serde_json::from_slice::<serde_json::Value>(&response.body).is_err());
    assert_eq!(server.counters().issued, 0);
}

#[tokio::test(start_paused = true)]
async fn oversized_body_has_the_requested_size() {
    let server = server();
    server.push_fault(Fault::OversizedBody(1_000_000));
    let response = client_credentials(&server, "").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(response.body.len(), 1_000_000);
    assert_eq!(response.json()["token_type"], "Bearer");
}

#[tokio::test(start_paused = true)]
async fn error_body_with_200() {
    let server = server();
    server.push_fault(Fault::ErrorBody200);
    let response = client_credentials(&server, "").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.error(), "server_error");
    assert!(response.json().get("access_token").is_none());
}

#[tokio::test(start_paused = true)]
async fn connection_reset_is_an_io_transport_error() {
    let server = server();
    server.push_fault(Fault::ConnectionReset);
    let error = server
        .http_client()
        .send(cc_request(&server))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), TransportErrorKind::Io);
    // The kind is the message; the cause is the source.
    assert_eq!(error.to_string(), "the connection broke");
    let source = std::error::Error::source(&error).unwrap().to_string();
    assert!(source.contains("reset"), "{source}");
    assert_eq!(server.counters().faulted, 1);
}

#[tokio::test(start_paused = true)]
async fn slow_drip_streams_a_valid_token_chunk_by_chunk() {
    let server = server();
    server.push_fault(Fault::SlowDrip {
        chunk: 10,
        interval: Duration::from_secs(1),
    });
    let start = Instant::now();
    let response = server
        .http_client()
        .send(cc_request(&server))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(start.elapsed(), Duration::ZERO, "the head comes at once");

    let mut body = response.into_body();
    let mut collected = Vec::new();
    let mut frames = 0;
    while let Some(frame) = body.frame().await {
        let data = frame.unwrap().into_data().unwrap();
        assert!(data.len() <= 10);
        collected.extend_from_slice(&data);
        frames += 1;
    }
    assert_eq!(frames, collected.len().div_ceil(10));
    assert_eq!(start.elapsed(), Duration::from_secs(frames as u64 - 1));
    let token: serde_json::Value = serde_json::from_slice(&collected).unwrap();
    let access = token["access_token"].as_str().unwrap();
    assert_eq!(get(&server, "/resource", Some(access)).await.status, 200);
    assert_eq!(server.counters().issued, 1);
}

#[tokio::test(start_paused = true)]
async fn queue_goes_first_then_the_persistent_fault() {
    let server = server();
    server.push_faults(Fault::Status(503), 2);
    server.set_fault(Some(Fault::Status(500)));
    let statuses = [
        client_credentials(&server, "").await.status.as_u16(),
        client_credentials(&server, "").await.status.as_u16(),
        client_credentials(&server, "").await.status.as_u16(),
        client_credentials(&server, "").await.status.as_u16(),
    ];
    assert_eq!(statuses, [503, 503, 500, 500]);
    server.set_fault(None);
    assert_eq!(client_credentials(&server, "").await.status, 200);

    server.push_faults(Fault::Status(503), 3);
    server.set_fault(Some(Fault::Hang));
    server.clear_faults();
    assert_eq!(client_credentials(&server, "").await.status, 200);
    assert_eq!(server.counters().faulted, 4);
}

#[tokio::test(start_paused = true)]
async fn faulted_requests_are_still_recorded() {
    let server = server();
    server.push_fault(Fault::Status(502));
    let response = token(
        &server,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT),
            ("client_secret", SECRET),
            ("audience", "jobs-api"),
        ],
    )
    .await;
    assert_eq!(response.status, 502);
    let record = server.last_token_request().unwrap();
    assert_eq!(record.param("audience"), Some("jobs-api"));
}

#[tokio::test(start_paused = true)]
async fn echo_param_quotes_what_the_request_sent() {
    let server = server();
    server.push_fault(Fault::EchoParam {
        status: 400,
        error: "invalid_grant".into(),
        param: "refresh_token".into(),
    });
    server.push_fault(Fault::EchoParam {
        status: 401,
        error: "invalid_client".into(),
        param: "client_secret".into(),
    });
    server.push_fault(Fault::EchoParam {
        status: 200,
        error: "server_error".into(),
        param: "not_sent".into(),
    });
    let refresh = form_request(&server.token_url())
        .header("authorization", basic(CLIENT, SECRET))
        .body(encode_form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", "rt a+b"),
        ]))
        .unwrap();
    let response = send(&server, refresh).await;
    assert_eq!(response.status, 400);
    assert_eq!(response.error(), "invalid_grant");
    let body = response.json();
    assert_eq!(body["error_description"], "Invalid refresh_token: rt a+b");
    assert_eq!(
        body["error_uri"],
        "https://as.example/errors?value=rt+a%2Bb"
    );
    // Basic credentials count as the client_secret sent.
    let response = send(&server, cc_request(&server)).await;
    assert_eq!(response.status, 401);
    assert_eq!(
        response.json()["error_description"],
        format!("Invalid client_secret: {SECRET}")
    );
    let response = client_credentials(&server, "").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.error(), "server_error");
    assert_eq!(response.json()["error_description"], "Invalid not_sent: ");
    assert_eq!(server.counters().faulted, 3);
}
