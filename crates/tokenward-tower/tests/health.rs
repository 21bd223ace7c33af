//! `TokenHealth` mounted in a real axum server on 127.0.0.1 and asked over a real hyper
//! client: 200 and the status JSON while the token is usable, 503 once it is not.

mod support;

use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use support::e2e::{cache_for, hyper};
use tokenward::{ClientCredentials, TenantCache};
use tokenward_testkit::FakeServer;
use tokenward_tower::health::TokenHealth;

/// Serves `app` on a loopback port; returns its base URL.
async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

async fn ask(method: Method, url: &str) -> (StatusCode, Option<String>, Bytes) {
    let request = Request::builder()
        .method(method)
        .uri(url)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = hyper().request(request).await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, content_type, body)
}

fn server() -> FakeServer {
    FakeServer::builder()
        .client("svc", "svc-Secret-hh1")
        .token_lifetime(Duration::from_secs(3600))
        .build()
}

#[tokio::test]
async fn answers_200_with_the_status_while_the_token_is_usable_and_503_once_it_is_not() {
    let server = server();
    let running = server.listen().await.unwrap();
    let good = cache_for(&running, "svc", "svc-Secret-hh1", "");
    let bad = cache_for(&running, "svc", "wrong-Secret-hh2", "");
    let app = Router::new()
        .route_service("/health/tokens", TokenHealth::new(good.clone()))
        .route_service("/health/bad", TokenHealth::new(bad.clone()));
    let base = serve(app).await;

    good.header().await.unwrap();
    let (status, content_type, body) = ask(Method::GET, &format!("{base}/health/tokens")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type.as_deref(), Some("application/json"));
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["usable"], true);
    assert_eq!(json["phase"], "fresh");
    assert!(json["expires_in_secs"].as_u64().unwrap() > 3500);

    bad.header().await.unwrap_err();
    let (status, _, body) = ask(Method::GET, &format!("{base}/health/bad")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["usable"], false);
    assert_eq!(json["last_error"]["kind"], "invalid_client");
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert!(!text.contains("Secret-hh"), "{text}");

    let (status, _, body) = ask(Method::HEAD, &format!("{base}/health/bad")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.is_empty());
    let (status, _, _) = ask(Method::POST, &format!("{base}/health/tokens")).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn tenants_answer_503_when_one_is_not_usable_and_name_it() {
    let server = server();
    let running = server.listen().await.unwrap();
    let grant = |secret: &str| {
        ClientCredentials::builder(running.token_url(), "svc")
            .client_secret(secret)
            .build()
            .unwrap()
    };
    let tenants = TenantCache::new();
    tenants.insert("acme".to_owned(), grant("svc-Secret-hh1"));
    tenants.insert("umbrella".to_owned(), grant("wrong-Secret-hh3"));
    let base =
        serve(Router::new().route_service("/health/tokens", TokenHealth::tenants(tenants.clone())))
            .await;
    let url = format!("{base}/health/tokens");

    tenants.header("acme").await.unwrap();
    let (status, _, _) = ask(Method::GET, &url).await;
    assert_eq!(status, StatusCode::OK, "umbrella has not failed yet");

    tenants.header("umbrella").await.unwrap_err();
    let (status, _, body) = ask(Method::GET, &url).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["tenants"], 2);
    assert_eq!(json["unusable"], 1);
    assert_eq!(json["attention"][0]["tenant"], "umbrella");

    // One tenant at a time: the healthy one answers 200 with its own status.
    let (status, _, body) = ask(Method::GET, &format!("{url}?tenant=acme")).await;
    assert_eq!(status, StatusCode::OK);
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["phase"], "fresh");
    let (status, _, _) = ask(Method::GET, &format!("{url}?tenant=umbrella")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let (status, _, _) = ask(Method::GET, &format!("{url}?tenant=acmee")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a key it does not have");
}

#[tokio::test]
async fn the_report_holds_no_secret_even_when_the_server_echoes_one() {
    let server = server();
    let running = server.listen().await.unwrap();
    let cache = cache_for(&running, "svc", "svc-Secret-hh1", "");
    // The token endpoint quotes the client secret in its error description.
    server.push_fault(tokenward_testkit::Fault::EchoParam {
        status: 400,
        error: "invalid_request".into(),
        param: "client_secret".into(),
    });
    let base =
        serve(Router::new().route_service("/health/tokens", TokenHealth::new(cache.clone()))).await;
    cache.header().await.unwrap_err();
    let (status, _, body) = ask(Method::GET, &format!("{base}/health/tokens")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert!(text.contains("invalid_request"), "{text}");
    assert!(!text.contains("svc-Secret-hh1"), "{text}");
    let (status, _, _) = ask(Method::GET, &format!("{base}/health/tokens?tenant=x")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "one cache has no tenants");
}
