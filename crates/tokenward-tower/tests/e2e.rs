//! End to end: `AuthLayer` around a real hyper client, against the testkit's fake
//! authorization server and protected resource on 127.0.0.1. Real time: nothing here asserts
//! timing; counts come from the server's own counters.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use support::e2e::*;
use tokenward::{ClientCredentials, RefreshAhead, TenantCache, TokenCache};
use tokenward_testkit::{FakeServer, Fault};
use tokenward_tower::tenant::Tenant;
use tokenward_tower::{AuthError, AuthLayer};
use tower::{Layer, ServiceBuilder, ServiceExt};

fn get(url: String) -> http::Request<Full<Bytes>> {
    http::Request::get(url).body(Full::default()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sets_a_sensitive_header_the_resource_accepts() {
    let (server, running, cache) = setup().await;
    let script = Script::new(&server, []);
    let client = ServiceBuilder::new()
        .layer(AuthLayer::new(cache.clone()))
        .layer(script.layer())
        .service(hyper::<Full<Bytes>>());

    let response = client.oneshot(get(running.resource_url())).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = json(response).await;
    assert_eq!(body["client_id"], "svc");
    let seen = script.seen();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].sensitive, "the header is marked sensitive");
    assert_eq!(
        seen[0].authorization.as_ref(),
        cache.cached().map(|t| t.header_value().clone()).as_ref()
    );
    let counters = server.counters();
    assert_eq!(counters.token_requests, 1);
    assert_eq!(counters.resource_requests, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_token_is_retried_once_with_a_new_token() {
    let (server, running, cache) = setup().await;
    let script = Script::new(&server, [Step::Forward, Step::RevokeThenForward]);
    let client = ServiceBuilder::new()
        .layer(AuthLayer::new(cache))
        .layer(script.layer())
        .service(hyper::<Full<Bytes>>());

    assert_eq!(
        client
            .clone()
            .oneshot(get(running.resource_url()))
            .await
            .unwrap()
            .status(),
        200
    );
    // The server revokes the token before the next request reaches it: 401 invalid_token,
    // then a resend with a new token.
    let response = client.oneshot(get(running.resource_url())).await.unwrap();
    assert_eq!(response.status(), 200);
    let seen = script.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].authorization, seen[1].authorization);
    assert_ne!(seen[1].authorization, seen[2].authorization, "a new token");
    assert!(seen[2].sensitive);
    let counters = server.counters();
    assert_eq!(counters.token_requests, 2);
    assert_eq!(counters.resource_requests, 3);
    assert_eq!(counters.resource_rejected, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_401_is_returned_to_the_caller() {
    let (server, running, cache) = setup().await;
    // Every attempt meets a freshly revoked token.
    let script = Script::new(&server, [Step::RevokeThenForward, Step::RevokeThenForward]);
    let client = ServiceBuilder::new()
        .layer(AuthLayer::new(cache))
        .layer(script.layer())
        .service(hyper::<Full<Bytes>>());

    let response = client.oneshot(get(running.resource_url())).await.unwrap();
    assert_eq!(response.status(), 401);
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(challenge.contains("invalid_token"), "{challenge}");
    let counters = server.counters();
    assert_eq!(counters.resource_requests, 2, "sent, resent once, no more");
    assert_eq!(counters.resource_rejected, 2);
    assert_eq!(counters.token_requests, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_is_not_retried() {
    let (server, running, cache) = setup().await;
    let client = AuthLayer::new(cache).layer(hyper::<Full<Bytes>>());
    let response = client
        .oneshot(get(running.url("/resource/admin.write")))
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert!(
        response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("insufficient_scope")
    );
    let counters = server.counters();
    assert_eq!(counters.resource_requests, 1);
    assert_eq!(counters.token_requests, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_body_is_sent_once_and_never_resent_without_it() {
    let (server, running, cache) = setup().await;
    let client = AuthLayer::new(cache).layer(hyper::<Streaming>());
    let post = |body| {
        http::Request::post(running.resource_url())
            .body(body)
            .unwrap()
    };

    // A streamed upload arrives whole.
    let response = client
        .clone()
        .oneshot(post(streaming(16, 4096)))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(json(response).await["body_len"], 16 * 4096);

    // The token is revoked: the 401 comes back, the stream is not sent again. (Small, so that
    // it is written whole before the server answers without reading it.)
    server.revoke_all_access_tokens();
    let response = client
        .clone()
        .oneshot(post(streaming(2, 512)))
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let counters = server.counters();
    assert_eq!(counters.resource_requests, 2);
    assert_eq!(
        counters.token_requests, 1,
        "no refresh needed to return the 401"
    );

    // But the rejected token was dropped: the next upload carries a new one.
    let response = client.oneshot(post(streaming(4, 1024))).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(json(response).await["body_len"], 4 * 1024);
    let counters = server.counters();
    assert_eq!(counters.resource_requests, 3);
    assert_eq!(counters.token_requests, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayable_body_is_resent_whole() {
    let (server, running, cache) = setup().await;
    let client = AuthLayer::new(cache).layer(hyper::<Full<Bytes>>());
    client
        .clone()
        .oneshot(get(running.resource_url()))
        .await
        .unwrap();
    server.revoke_all_access_tokens();
    let body = Full::new(Bytes::from(vec![b'j'; 10_000]));
    let request = http::Request::post(running.resource_url())
        .body(body)
        .unwrap();
    let response = client.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = json(response).await;
    assert_eq!(body["body_len"], 10_000);
    assert_eq!(body["method"], "POST");
    assert_eq!(server.counters().resource_requests, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_requests_with_an_expired_token_make_one_token_call() {
    let (server, running, _) = setup().await;
    // On demand: no refresh-ahead, so the token does expire.
    let grant = ClientCredentials::builder(running.token_url(), "svc")
        .client_secret("svc-secret")
        .build()
        .unwrap();
    let cache = TokenCache::builder(grant)
        .refresh_ahead(RefreshAhead::OnDemand)
        .build();
    // Cache a token that expires quickly, then serve long-lived ones.
    server.set_token_lifetime(Duration::from_secs(1));
    cache.header().await.unwrap();
    server.set_token_lifetime(Duration::from_secs(3600));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(cache.try_header().is_none(), "the cached token has expired");

    let client = AuthLayer::new(cache).layer(hyper::<Full<Bytes>>());
    let tasks: Vec<_> = (0..1000)
        .map(|_| tokio::spawn(client.clone().oneshot(get(running.resource_url()))))
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap().status(), 200);
    }
    let counters = server.counters();
    assert_eq!(
        counters.token_requests, 2,
        "the first token, then one refresh"
    );
    assert_eq!(counters.resource_requests, 1000);
    assert_eq!(counters.resource_rejected, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_401s_for_a_revoked_token_make_one_token_call() {
    let (server, running, cache) = setup().await;
    cache.header().await.unwrap();
    server.revoke_all_access_tokens();

    let client = AuthLayer::new(cache).layer(hyper::<Full<Bytes>>());
    let tasks: Vec<_> = (0..1000)
        .map(|_| tokio::spawn(client.clone().oneshot(get(running.resource_url()))))
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap().status(), 200);
    }
    let counters = server.counters();
    assert_eq!(
        counters.token_requests, 2,
        "the first token, then one refresh"
    );
    // Requests sent with the old token were rejected and resent once; requests that started
    // after the refresh went out with the new token at once.
    assert!(counters.resource_rejected >= 1, "{counters:?}");
    assert_eq!(
        counters.resource_requests,
        1000 + counters.resource_rejected,
        "{counters:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_are_isolated() {
    let server = FakeServer::builder()
        .client("acme-app", "acme-secret")
        .client_scopes("acme-app", "jobs.read")
        .client("globex-app", "globex-secret")
        .client_scopes("globex-app", "jobs.read jobs.write")
        .build();
    let running = server.listen().await.unwrap();
    let tenants: TenantCache<String> = TenantCache::builder()
        .tenant_cache(
            "acme".into(),
            cache_for(&running, "acme-app", "acme-secret", "jobs.read"),
        )
        .tenant_cache(
            "globex".into(),
            cache_for(
                &running,
                "globex-app",
                "globex-secret",
                "jobs.read jobs.write",
            ),
        )
        .build();
    let client = AuthLayer::tenants(tenants.clone()).layer(hyper::<Full<Bytes>>());
    let request = |org: &str, path: &str| {
        let mut req = get(running.url(path));
        req.extensions_mut().insert(Tenant(org.to_string()));
        req
    };

    for (org, client_id) in [("acme", "acme-app"), ("globex", "globex-app")] {
        let response = client
            .clone()
            .oneshot(request(org, "/resource"))
            .await
            .unwrap();
        assert_eq!(json(response).await["client_id"], client_id);
    }
    // Each tenant has its own scopes: acme cannot write, globex can.
    let acme = client
        .clone()
        .oneshot(request("acme", "/resource/jobs.write"));
    assert_eq!(acme.await.unwrap().status(), 403);
    let globex = client
        .clone()
        .oneshot(request("globex", "/resource/jobs.write"));
    assert_eq!(globex.await.unwrap().status(), 200);

    // acme's token is revoked: acme refreshes, globex keeps its token.
    let acme_token = tenants.get("acme").unwrap().cached().unwrap();
    let globex_token = tenants.get("globex").unwrap().cached().unwrap();
    let raw = acme_token.header_value().to_str().unwrap();
    assert!(server.revoke_access_token(raw.strip_prefix("Bearer ").unwrap()));
    let response = client
        .clone()
        .oneshot(request("acme", "/resource"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_ne!(
        tenants
            .get("acme")
            .unwrap()
            .cached()
            .unwrap()
            .header_value(),
        acme_token.header_value()
    );
    assert_eq!(
        tenants
            .get("globex")
            .unwrap()
            .cached()
            .unwrap()
            .header_value(),
        globex_token.header_value()
    );
    assert_eq!(server.counters().issued_for("client_credentials"), 3);

    // Unknown and missing tenants: a typed error, nothing sent.
    let before = server.counters().resource_requests;
    let error = client
        .clone()
        .oneshot(request("initech", "/resource"))
        .await
        .unwrap_err();
    assert!(matches!(
        error.downcast_ref(),
        Some(AuthError::UnknownTenant { .. })
    ));
    let error = client
        .oneshot(get(running.resource_url()))
        .await
        .unwrap_err();
    assert!(matches!(
        error.downcast_ref(),
        Some(AuthError::MissingTenant)
    ));
    assert_eq!(server.counters().resource_requests, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_endpoint_down_fails_with_a_typed_error_and_sends_nothing() {
    let (server, running, cache) = setup().await;
    server.set_fault(Some(Fault::InvalidClient));
    let client = AuthLayer::new(cache).layer(hyper::<Full<Bytes>>());
    let error = client
        .oneshot(get(running.resource_url()))
        .await
        .unwrap_err();
    let auth = error.downcast_ref::<AuthError>().expect("an AuthError");
    assert!(
        matches!(auth.token_error(), Some(tokenward::Error::InvalidClient(_))),
        "{auth:?}"
    );
    assert_eq!(server.counters().resource_requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_cancelled_mid_refresh_does_not_cancel_the_refresh() {
    let (server, running, cache) = setup().await;
    server.push_fault(Fault::Latency(Duration::from_millis(300)));
    let client = AuthLayer::new(cache.clone()).layer(hyper::<Full<Bytes>>());

    // The first request waits for the slow token endpoint; its caller gives up.
    let gave_up = tokio::time::timeout(
        Duration::from_millis(50),
        client.clone().oneshot(get(running.resource_url())),
    )
    .await;
    assert!(gave_up.is_err(), "still waiting for the token");

    // The next request joins the same refresh (or finds its token): one token call.
    let response = client.oneshot(get(running.resource_url())).await.unwrap();
    assert_eq!(response.status(), 200);
    let counters = server.counters();
    assert_eq!(counters.token_requests, 1);
    assert_eq!(
        counters.resource_requests, 1,
        "the cancelled request was never sent"
    );
}
