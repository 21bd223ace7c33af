//! The TCP listener: the same routes and state over real sockets (real time; no timing is
//! asserted beyond generous upper bounds).

use std::time::Duration;

use tokenward_testkit::Fault;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

async fn post_token(client: &reqwest::Client, url: &str) -> reqwest::Result<reqwest::Response> {
    client
        .post(url)
        .header("authorization", basic(CLIENT, SECRET))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&scope=jobs.read")
        .send()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_the_same_routes_and_state() {
    let server = server();
    let running = server.listen().await.unwrap();
    assert!(running.addr().ip().is_loopback());
    assert_eq!(
        running.token_url(),
        format!("http://{}/token", running.addr())
    );
    assert_eq!(
        running.url("resource/x"),
        format!("http://{}/resource/x", running.addr())
    );

    let client = http();
    let response = post_token(&client, &running.token_url()).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    let access = body["access_token"].as_str().unwrap().to_owned();

    // A token from TCP works in-process and the other way round: one state.
    assert_eq!(get(&server, "/resource", Some(&access)).await.status, 200);
    let response = client
        .get(running.url("/resource/jobs.write"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(
        response.headers()["www-authenticate"],
        r#"Bearer error="insufficient_scope", scope="jobs.write""#
    );
    let response = client
        .post(running.resource_url())
        .bearer_auth(&access)
        .body(vec![0u8; 100_000])
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(body["body_len"], 100_000);

    assert_eq!(server.token_calls(), 1);
    assert_eq!(running.server().counters().resource_requests, 3);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_apply_over_tcp() {
    let server = server();
    let running = server.listen().await.unwrap();
    let client = http();

    server.push_fault(Fault::RateLimited {
        retry_after: Some("7".into()),
    });
    let response = post_token(&client, &running.token_url()).await.unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "7");

    server.push_fault(Fault::SlowDrip {
        chunk: 16,
        interval: Duration::from_millis(5),
    });
    let response = post_token(&client, &running.token_url()).await.unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(body["scope"], "jobs.read");

    server.push_fault(Fault::OversizedBody(300_000));
    let response = post_token(&client, &running.token_url()).await.unwrap();
    assert_eq!(response.bytes().await.unwrap().len(), 300_000);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_reset_fails_the_client() {
    let server = server();
    let running = server.listen().await.unwrap();

    server.push_fault(Fault::ConnectionReset);
    let error = post_token(&http(), &running.token_url()).await.unwrap_err();
    assert!(!error.is_timeout(), "{error:?}");
    assert!(error.status().is_none(), "no response at all: {error:?}");

    // At the byte level: not a single byte of a response.
    server.push_fault(Fault::ConnectionReset);
    let mut stream = TcpStream::connect(running.addr()).await.unwrap();
    let form = "grant_type=client_credentials";
    let request = format!(
        "POST /token HTTP/1.1\r\nHost: testkit\r\nAuthorization: {}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        basic(CLIENT, SECRET),
        form.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    let outcome = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut received))
        .await
        .expect("the server neither answered nor closed");
    assert!(
        received.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&received)
    );
    if let Err(e) = outcome {
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset);
    }

    // The listener itself is fine afterwards.
    assert_eq!(
        post_token(&http(), &running.token_url())
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(server.counters().faulted, 2);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_cuts_a_hanging_request_short() {
    let server = server();
    let running = server.listen().await.unwrap();
    server.set_fault(Some(Fault::Hang));
    let url = running.token_url();
    let request = tokio::spawn(async move { post_token(&http(), &url).await });
    while server.token_calls() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::timeout(Duration::from_secs(10), running.shutdown())
        .await
        .expect("shutdown waited for the hanging request");
    let outcome = tokio::time::timeout(Duration::from_secs(10), request)
        .await
        .unwrap()
        .unwrap();
    assert!(outcome.is_err(), "a hanging request got a response");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_server_stops_the_listener() {
    let server = server();
    let running = server.listen().await.unwrap();
    let addr = running.addr();
    assert_eq!(
        post_token(&http(), &running.token_url())
            .await
            .unwrap()
            .status(),
        200
    );
    drop(running);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).await.is_ok() {
        assert!(tokio::time::Instant::now() < deadline, "still listening");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
