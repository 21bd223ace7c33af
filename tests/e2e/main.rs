//! End to end over loopback TCP: tokenward's reqwest transport against the testkit server.
//! Nothing here asserts timing; counts come from the server's own counters.

use std::time::Duration;

use http::header::AUTHORIZATION;
use tokenward::{Action, ClientCredentials, Error, TokenCache};
use tokenward_testkit::{FakeServer, Fault, RunningServer};

async fn setup() -> (FakeServer, RunningServer, TokenCache) {
    let server = FakeServer::builder()
        .client("svc", "svc-secret")
        .token_lifetime(Duration::from_secs(3600))
        .build();
    let running = server.listen().await.unwrap();
    let grant = ClientCredentials::builder(running.token_url(), "svc")
        .client_secret("svc-secret")
        .scope("jobs.read")
        .build()
        .unwrap();
    let cache = TokenCache::new(grant);
    (server, running, cache)
}

async fn get(http: &reqwest::Client, url: &str, auth: &http::HeaderValue) -> reqwest::Response {
    http.get(url)
        .header(AUTHORIZATION, auth.clone())
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_first_requests_make_one_token_call() {
    let (server, running, cache) = setup().await;
    let http = reqwest::Client::new();
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let (cache, http, url) = (cache.clone(), http.clone(), running.resource_url());
            tokio::spawn(async move {
                let auth = cache.header().await.unwrap();
                get(&http, &url, &auth).await.status()
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(server.counters().token_requests, 1);
    assert_eq!(server.counters().resource_requests, 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_replaced_once_for_a_burst_of_401s() {
    let (server, running, cache) = setup().await;
    let http = reqwest::Client::new();
    let first = cache.header().await.unwrap();
    server.revoke_all_access_tokens();

    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let (cache, http, url) = (cache.clone(), http.clone(), running.resource_url());
            let rejected = first.clone();
            tokio::spawn(async move {
                let response = get(&http, &url, &rejected).await;
                assert_eq!(response.status(), 401);
                let action = tokenward::classify(response.status(), response.headers(), None)
                    .map(|c| c.action);
                assert_eq!(action, Some(Action::RefreshAndRetryOnce));
                cache.invalidate(&rejected);
                let fresh = cache.header().await.unwrap();
                get(&http, &url, &fresh).await.status()
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(
        server.counters().token_requests,
        2,
        "one more token for 200 401s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_reset_at_the_token_endpoint_is_retried() {
    let (server, _running, cache) = setup().await;
    server.push_fault(Fault::ConnectionReset);
    cache.header().await.unwrap();
    assert_eq!(server.counters().token_requests, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_token_endpoint_is_a_retryable_transport_error() {
    // Bind and drop a listener: nothing listens on that port any more.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let grant = ClientCredentials::builder(format!("http://127.0.0.1:{port}/token"), "svc")
        .client_secret("svc-secret")
        .build()
        .unwrap();
    let cache = TokenCache::builder(grant).max_attempts(2).build();
    let err = cache.header().await.unwrap_err();
    assert!(
        matches!(&err, Error::Transport(t) if t.kind() == tokenward::TransportErrorKind::Connect),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert!(!err.to_string().contains("svc-secret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insufficient_scope_is_classified_for_an_admin_regrant() {
    let (_server, running, cache) = setup().await;
    let http = reqwest::Client::new();
    let auth = cache.header().await.unwrap();
    let response = get(&http, &running.url("/resource/jobs.write"), &auth).await;
    assert_eq!(response.status(), 403);
    let c = tokenward::classify(response.status(), response.headers(), None).unwrap();
    assert_eq!(
        c.action,
        Action::Regrant {
            missing: Some("jobs.write".into())
        }
    );
    assert!(!c.action.is_retry());
}
