//! `TowerHttpClient`: a hyper client inside tower layers reaches the token endpoint, and
//! its failures keep their kinds (a refused connection is `Connect`, a layer's timeout is
//! `Timeout`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokenward::{
    ClientCredentials, Error, ExposeSecret, TokenCache, TokenSource, TransportErrorKind,
};
use tokenward_testkit::{FakeServer, Fault};
use tokenward_tower::TowerHttpClient;
use tower::ServiceBuilder;

fn hyper() -> Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_requests_go_through_the_stack() {
    let server = FakeServer::builder().client("svc", "svc-secret").build();
    let running = server.listen().await.unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let counted = seen.clone();
    let stack = ServiceBuilder::new()
        .map_request(move |request: http::Request<Full<Bytes>>| {
            counted.fetch_add(1, Ordering::SeqCst);
            request
        })
        .service(hyper());
    let grant = ClientCredentials::builder(running.token_url(), "svc")
        .client_secret("svc-secret")
        .http_client(TowerHttpClient::new(stack))
        .build()
        .unwrap();
    let cache = TokenCache::builder(grant).build();
    cache.header().await.unwrap();
    cache.force_refresh().await.unwrap();
    assert_eq!(
        seen.load(Ordering::SeqCst),
        2,
        "both token requests went through the layer"
    );
    assert_eq!(server.counters().issued_for("client_credentials"), 2);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_connect_and_a_layer_timeout_is_timeout() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let grant = ClientCredentials::builder(format!("http://127.0.0.1:{port}/token"), "svc")
        .client_secret("s")
        .http_client(TowerHttpClient::new(hyper()))
        .build()
        .unwrap();
    match grant.fetch().await.unwrap_err() {
        Error::Transport(e) => assert_eq!(e.kind(), TransportErrorKind::Connect, "{e:?}"),
        other => panic!("{other:?}"),
    }

    let server = FakeServer::builder().client("svc", "svc-secret").build();
    server.push_fault(Fault::Hang);
    let running = server.listen().await.unwrap();
    let stack = ServiceBuilder::new()
        .timeout(Duration::from_millis(200))
        .service(hyper());
    let grant = ClientCredentials::builder(running.token_url(), "svc")
        .client_secret("svc-secret")
        .http_client(TowerHttpClient::new(stack))
        .build()
        .unwrap();
    match grant.fetch().await.unwrap_err() {
        Error::Transport(e) => assert_eq!(e.kind(), TransportErrorKind::Timeout, "{e:?}"),
        other => panic!("{other:?}"),
    }
    running.shutdown().await;
}

/// A stack boxed as a `BoxCloneService` (`Send`, not `Sync`) is a token client too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_boxed_clone_service_is_a_token_client() {
    let server = FakeServer::builder().client("svc", "svc-secret").build();
    let running = server.listen().await.unwrap();
    let boxed = tower::util::BoxCloneService::new(
        ServiceBuilder::new()
            .map_err(
                |e: hyper_util::client::legacy::Error| -> tokenward::error::BoxError {
                    Box::new(e)
                },
            )
            .service(hyper()),
    );
    let grant = ClientCredentials::builder(running.token_url(), "svc")
        .client_secret("svc-secret")
        .http_client(TowerHttpClient::new(boxed))
        .build()
        .unwrap();
    let token = grant.fetch().await.unwrap();
    assert!(!token.access_token().expose_secret().is_empty());
    assert_eq!(server.counters().issued_for("client_credentials"), 1);
    running.shutdown().await;
}
