//! AuthMiddleware against the testkit on loopback. Counts come from the server's counters.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use reqwest_middleware::Middleware;
use tokenward::TokenCache;
use tokenward_reqwest::{AuthMiddleware, token_error};
use tokenward_testkit::{FakeServer, Fault};

use crate::helpers::*;

fn auth_client(cache: &TokenCache) -> reqwest_middleware::ClientWithMiddleware {
    client_with(vec![Arc::new(AuthMiddleware::new(cache.clone()))])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sets_the_authorization_header_from_the_cache() {
    let (server, running, cache) = testkit().await;
    let client = auth_client(&cache);
    let response = client.get(running.resource_url()).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(json(response).await["client_id"], "svc");
    // Fresh token: the second request reads the cache, no second token call.
    let response = client
        .get(running.url("/resource/jobs.read"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(server.token_calls(), 1);
    assert_eq!(server.counters().resource_requests, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_header_is_the_cached_one_and_replaces_the_callers() {
    let script = Scripted::start([]).await;
    let (cache, _) = counting_cache();
    let probe = Probe::default();
    let client = client_with(vec![
        Arc::new(AuthMiddleware::new(cache.clone())),
        Arc::new(probe.clone()),
    ]);
    let response = client
        .get(script.url())
        .header("authorization", "Bearer stale-from-the-caller")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(script.seen()[0].authorization.as_deref(), Some("Bearer t1"));
    // Marked sensitive, as the cache built it.
    assert!(cache.try_header().unwrap().is_sensitive());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_token_is_resent_once_with_a_fresh_token() {
    let (server, running, cache) = testkit().await;
    let client = auth_client(&cache);
    assert_eq!(
        client
            .get(running.resource_url())
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let first = cache.cached().unwrap();

    server.revoke_all_access_tokens();
    let response = client.get(running.resource_url()).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let counters = server.counters();
    assert_eq!(counters.token_requests, 2, "one refresh after the 401");
    assert_eq!(
        counters.resource_requests, 3,
        "warm-up, the 401, the resend"
    );
    assert_eq!(counters.resource_rejected, 1);
    assert!(!tokenward::Token::ptr_eq(&first, &cache.cached().unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_resend_carries_the_body() {
    let (server, running, cache) = testkit().await;
    let client = auth_client(&cache);
    cache.header().await.unwrap();
    server.revoke_all_access_tokens();
    let response = client
        .post(running.resource_url())
        .body(vec![b'x'; 1234])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(json(response).await["body_len"], 1234);
    assert_eq!(server.counters().resource_requests, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_401_is_returned() {
    // Tokens t1, t2, ... that the testkit never issued: every request is 401 invalid_token.
    let server = FakeServer::builder().client("svc", "svc-secret").build();
    let running = server.listen().await.unwrap();
    let (cache, fetches) = counting_cache();
    let probe = Probe::default();
    let client = client_with(vec![
        Arc::new(AuthMiddleware::new(cache)),
        Arc::new(probe.clone()),
    ]);
    let response = client.get(running.resource_url()).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert!(
        response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
    assert_eq!(
        server.counters().resource_requests,
        2,
        "sent, resent once, no more"
    );
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
    let sent = probe.authorization.lock().unwrap().clone();
    assert_eq!(sent, [Some("Bearer t1".into()), Some("Bearer t2".into())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insufficient_scope_403_is_not_retried() {
    let (server, running, cache) = testkit().await;
    let client = auth_client(&cache);
    let response = client
        .get(running.url("/resource/jobs.write"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let classification = tokenward::classify(response.status(), response.headers(), None).unwrap();
    assert_eq!(
        classification.failure,
        tokenward::Failure::InsufficientScope {
            scope: Some("jobs.write".into()),
            description: None
        }
    );
    assert_eq!(server.counters().resource_requests, 1);
    assert_eq!(server.token_calls(), 1);
    assert!(cache.cached().is_some(), "a 403 does not drop the token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_body_is_not_resent() {
    let (server, running, cache) = testkit().await;
    let client = auth_client(&cache);
    cache.header().await.unwrap();
    server.revoke_all_access_tokens();

    let streaming = reqwest::Body::wrap(String::from("streamed, so it cannot be replayed"));
    let response = client
        .post(running.resource_url())
        .body(streaming)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401, "the 401 is returned, not resent");
    assert_eq!(server.counters().resource_requests, 1);
    // The rejected token was dropped: the next request gets a fresh one.
    assert!(cache.cached().is_none());
    let response = client.get(running.resource_url()).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(server.token_calls(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_resends_off_the_401_is_returned_and_the_token_dropped() {
    let (server, running, cache) = testkit().await;
    let client = client_with(vec![Arc::new(
        AuthMiddleware::new(cache.clone()).resend_on_invalid_token(false),
    )]);
    assert_eq!(
        client
            .get(running.resource_url())
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    server.revoke_all_access_tokens();
    let response = client.get(running.resource_url()).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(server.counters().resource_requests, 2, "not resent");
    assert!(cache.cached().is_none(), "the rejected token was dropped");
    assert_eq!(
        client
            .get(running.resource_url())
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(server.token_calls(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_endpoint_failure_sends_nothing() {
    let (server, running, cache) = testkit().await;
    server.set_fault(Some(Fault::InvalidClient));
    let client = auth_client(&cache);
    let err = client.get(running.resource_url()).send().await.unwrap_err();
    assert!(err.is_middleware());
    // anyhow's downcast on the middleware error ...
    let reqwest_middleware::Error::Middleware(inner) = &err else {
        panic!("{err:?}")
    };
    let cause = inner.downcast_ref::<tokenward::Error>().unwrap();
    assert!(
        matches!(cause, tokenward::Error::InvalidClient(_)),
        "{cause:?}"
    );
    // ... and the helper agree.
    let cause = token_error(&err).unwrap();
    assert_eq!(cause.status(), Some(http::StatusCode::UNAUTHORIZED));
    assert!(err.to_string().contains("check the client id"), "{err}");
    assert_eq!(
        server.counters().resource_requests,
        0,
        "nothing sent without a token"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_endpoint_failure_on_the_resend_sends_nothing_more() {
    let (server, running, cache) = testkit().await;
    let client = auth_client(&cache);
    cache.header().await.unwrap();
    server.revoke_all_access_tokens();
    server.set_fault(Some(Fault::InvalidGrant));
    let err = client.get(running.resource_url()).send().await.unwrap_err();
    assert!(
        token_error(&err).is_some_and(|e| e.is_reauthorization_required()),
        "{err:?}"
    );
    assert_eq!(
        server.counters().resource_requests,
        1,
        "only the rejected request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_resend_gets_fresh_extensions() {
    let (server, running, cache) = testkit().await;
    let probe = Probe::default();
    let client = client_with(vec![
        Arc::new(AuthMiddleware::new(cache.clone())),
        Arc::new(probe.clone()),
    ]);
    cache.header().await.unwrap();
    server.revoke_all_access_tokens();

    let request = client.get(running.resource_url()).build().unwrap();
    let mut extensions = http::Extensions::new();
    let response = client
        .execute_with_extensions(request, &mut extensions)
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(probe.attempts(), 2);
    assert_eq!(
        probe.leaked(),
        0,
        "the resend saw the first attempt's extensions"
    );
    // The caller sees what the last attempt left.
    assert_eq!(extensions.get::<AttemptMarker>(), Some(&AttemptMarker(2)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_requests_across_an_expiry_make_one_token_call() {
    let server = FakeServer::builder()
        .client("svc", "svc-secret")
        .client_scopes("svc", "jobs.read")
        .token_lifetime(Duration::from_secs(1))
        .build();
    let running = server.listen().await.unwrap();
    // No early refresh, no skew allowance: the token is used until it expires.
    let cache = TokenCache::builder(grant(&running, "svc", "svc-secret"))
        .refresh_fraction(1.0)
        .refresh_jitter(0.0)
        .min_refresh_lead(Duration::ZERO)
        .clock_skew(Duration::ZERO)
        .build();
    let client = auth_client(&cache);
    assert_eq!(
        client
            .get(running.resource_url())
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(server.token_calls(), 1);
    // The next token lives long enough to outlast the burst.
    server.set_token_lifetime(Duration::from_secs(3600));

    // Past the expiry (a lower bound this test imposes; nothing races it).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let url = running.resource_url();
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move { client.get(url).send().await.unwrap().status() })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }
    assert_eq!(
        server.token_calls(),
        2,
        "one token call for the whole burst"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_401s_make_one_token_call() {
    let (server, running, cache) = testkit().await;
    let client = auth_client(&cache);
    assert_eq!(
        client
            .get(running.resource_url())
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    server.revoke_all_access_tokens();

    let url = running.resource_url();
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move { client.get(url).send().await.unwrap().status() })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }
    let counters = server.counters();
    assert_eq!(
        counters.token_requests, 2,
        "invalidate by value: one refresh"
    );
    assert!(counters.resource_rejected >= 1 && counters.resource_rejected <= 1000);
}

#[test]
fn debug_output_shows_no_token() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (cache, _) = counting_cache();
        cache.header().await.unwrap();
        let middleware = AuthMiddleware::new(cache);
        let debug = format!("{middleware:?}");
        assert!(debug.contains("AuthMiddleware"), "{debug}");
        assert!(!debug.contains("t1"), "{debug}");
        let _: &dyn Middleware = &middleware;
    });
}
