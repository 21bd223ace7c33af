//! The `Auth` state machine against `tower_test::mock`, on paused time.

mod support;

use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http_body_util::{BodyExt, Full, StreamBody};
use support::*;
use tokenward::TenantCache;
use tokenward_tower::credentials::Credentials;
use tokenward_tower::replay::NeverReplay;
use tokenward_tower::tenant::Tenant;
use tokenward_tower::{Auth, AuthError, AuthLayer, BoxError};
use tower::{Layer, Service, ServiceExt};
use tower_test::mock::{self, Handle, Spawn};

type Mocked = Spawn<Auth<mock::Mock<Req, Res>>>;

fn ready<S, R>(service: &mut Spawn<S>)
where
    S: Service<R>,
    S::Error: std::fmt::Debug,
{
    match service.poll_ready() {
        Poll::Ready(Ok(())) => {}
        other => panic!("service not ready: {other:?}"),
    }
}

/// Calls the service (after `poll_ready`) and runs the response future on its own task.
fn send(service: &mut Mocked, req: Req) -> tokio::task::JoinHandle<Result<Res, BoxError>> {
    ready(service);
    tokio::spawn(service.call(req))
}

/// One request sent with `oneshot` through a layer over `credentials` (never resending, or
/// the default) on its own task; the service is gone once the request is out.
fn oneshot_through<C>(
    credentials: C,
    never_replay: bool,
) -> (
    tokio::task::JoinHandle<Result<Res, BoxError>>,
    Handle<Req, Res>,
)
where
    C: Credentials<Full<Bytes>> + Clone + Send + 'static,
{
    let (inner, handle) = mock::pair::<Req, Res>();
    let layer = AuthLayer::with_credentials(credentials);
    let call = if never_replay {
        tokio::spawn(layer.replay(NeverReplay).layer(inner).oneshot(request("x")))
    } else {
        tokio::spawn(layer.layer(inner).oneshot(request("x")))
    };
    (call, handle)
}

async fn next(handle: &mut Handle<Req, Res>) -> (Req, mock::SendResponse<Res>) {
    tokio::time::timeout(Duration::from_secs(60), handle.next_request())
        .await
        .expect("no request reached the inner service")
        .expect("the inner service was dropped")
}

/// Nothing more reaches the inner service (waits a minute of paused time).
async fn nothing_more(handle: &mut Handle<Req, Res>) {
    if let Ok(Some((req, _))) =
        tokio::time::timeout(Duration::from_secs(60), handle.next_request()).await
    {
        panic!("unexpected request: {} {}", req.method(), req.uri());
    }
}

#[tokio::test(start_paused = true)]
async fn sets_a_sensitive_authorization_header_from_the_cache() {
    let (cache, calls) = counting_cache();
    let (mut service, mut handle) = mock::spawn_layer(AuthLayer::new(cache));

    let mut req = request("hello");
    req.headers_mut().insert(
        AUTHORIZATION,
        http::HeaderValue::from_static("Basic c3R1ZmY="),
    );
    let call = send(&mut service, req);
    let (seen, reply) = next(&mut handle).await;
    assert_eq!(seen.headers()[AUTHORIZATION], "Bearer tok-1", "replaced");
    assert!(seen.headers()[AUTHORIZATION].is_sensitive());
    assert_eq!(seen.headers()["x-request"], "kept");
    assert_eq!(seen.headers().get_all(AUTHORIZATION).iter().count(), 1);
    reply.send_response(response(200));
    assert_eq!(call.await.unwrap().unwrap().status(), 200);

    // The second request takes the fast path: the cached token, no token call.
    let call = send(&mut service, request("again"));
    let (seen, reply) = next(&mut handle).await;
    assert_eq!(bearer(&seen), "Bearer tok-1");
    reply.send_response(response(204));
    assert_eq!(call.await.unwrap().unwrap().status(), 204);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn invalid_token_is_refreshed_and_resent_once_with_the_same_request() {
    let (cache, calls) = counting_cache();
    let (mut service, mut handle) = mock::spawn_layer(AuthLayer::new(cache.clone()));

    let call = send(&mut service, request("payload"));
    let (first, reply) = next(&mut handle).await;
    assert_eq!(bearer(&first), "Bearer tok-1");
    reply.send_response(invalid_token());

    let (second, reply) = next(&mut handle).await;
    assert_eq!(bearer(&second), "Bearer tok-2");
    assert!(second.headers()[AUTHORIZATION].is_sensitive());
    assert_eq!(second.method(), first.method());
    assert_eq!(second.uri(), first.uri());
    assert_eq!(second.headers()["x-request"], "kept");
    let body = second.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "payload", "resent with its body");
    reply.send_response(response(200));

    assert_eq!(call.await.unwrap().unwrap().status(), 200);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(cache.try_header().unwrap(), "Bearer tok-2");
    nothing_more(&mut handle).await;
}

#[tokio::test(start_paused = true)]
async fn a_copy_is_resent_whole_with_its_own_headers() {
    let (cache, _) = counting_cache();
    let (mut service, mut handle) = mock::spawn_layer(AuthLayer::new(cache.clone()));
    // A first request answered 200.
    let mut first = request("one");
    first
        .headers_mut()
        .insert("x-first", "only-here".parse().unwrap());
    let call = send(&mut service, first);
    let (_, reply) = next(&mut handle).await;
    reply.send_response(response(200));
    assert_eq!(call.await.unwrap().unwrap().status(), 200);

    // The next copy holds this request's headers, and only them.
    let mut second = request("two");
    second.headers_mut().append("x-multi", "1".parse().unwrap());
    second.headers_mut().append("x-multi", "2".parse().unwrap());
    let call = send(&mut service, second);
    let (_, reply) = next(&mut handle).await;
    reply.send_response(invalid_token());
    let (resent, reply) = next(&mut handle).await;
    assert_eq!(bearer(&resent), "Bearer tok-2");
    assert_eq!(resent.headers()["x-request"], "kept");
    let multi: Vec<_> = resent.headers().get_all("x-multi").iter().collect();
    assert_eq!(multi, ["1", "2"]);
    assert!(
        resent.headers().get("x-first").is_none(),
        "nothing of the first request"
    );
    assert_eq!(resent.headers().len(), 4, "{:?}", resent.headers());
    let body = resent.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "two");
    reply.send_response(response(200));
    assert_eq!(call.await.unwrap().unwrap().status(), 200);
}

#[tokio::test(start_paused = true)]
async fn a_second_401_is_returned_as_is() {
    let (cache, calls) = counting_cache();
    let (mut service, mut handle) = mock::spawn_layer(AuthLayer::new(cache));

    let call = send(&mut service, request("x"));
    let (_, reply) = next(&mut handle).await;
    reply.send_response(invalid_token());
    let (second, reply) = next(&mut handle).await;
    assert_eq!(bearer(&second), "Bearer tok-2");
    let mut again = invalid_token();
    *again.body_mut() = "second".into();
    reply.send_response(again);

    let response = call.await.unwrap().unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.body(), "second");
    assert_eq!(calls.load(Ordering::SeqCst), 2, "one refresh, not two");
    nothing_more(&mut handle).await;
}

#[tokio::test(start_paused = true)]
async fn not_resent_when_the_new_token_is_the_rejected_one() {
    let (cache, calls) = same_token_cache();
    let (mut service, mut handle) = mock::spawn_layer(AuthLayer::new(cache));

    let call = send(&mut service, request("x"));
    let (_, reply) = next(&mut handle).await;
    reply.send_response(invalid_token());
    let response = call.await.unwrap().unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(calls.load(Ordering::SeqCst), 2, "it did try a new token");
    nothing_more(&mut handle).await;
}

#[tokio::test(start_paused = true)]
async fn a_bare_401_is_returned_unless_enabled() {
    for challenge_value in [None, Some(r#"Bearer realm="api""#)] {
        let bare = || match challenge_value {
            Some(v) => challenge(401, v),
            None => response(401),
        };
        let (cache, calls) = counting_cache();
        let (mut service, mut handle) = mock::spawn_layer(AuthLayer::new(cache.clone()));
        let call = send(&mut service, request("x"));
        let (_, reply) = next(&mut handle).await;
        reply.send_response(bare());
        assert_eq!(call.await.unwrap().unwrap().status(), 401);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(
            cache.try_header().unwrap(),
            "Bearer tok-1",
            "not invalidated"
        );
        nothing_more(&mut handle).await;

        let (cache, calls) = counting_cache();
        let layer = AuthLayer::new(cache).retry_bare_401(true);
        let (mut service, mut handle) = mock::spawn_layer(layer);
        let call = send(&mut service, request("x"));
        let (_, reply) = next(&mut handle).await;
        reply.send_response(bare());
        let (second, reply) = next(&mut handle).await;
        assert_eq!(bearer(&second), "Bearer tok-2");
        reply.send_response(response(200));
        assert_eq!(call.await.unwrap().unwrap().status(), 200);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}

#[tokio::test(start_paused = true)]
async fn other_statuses_are_never_retried() {
    let cases = [
        challenge(
            403,
            r#"Bearer error="insufficient_scope", scope="jobs.write""#,
        ),
        response(403),
        challenge(401, r#"Bearer error="invalid_request""#),
        challenge(400, r#"Bearer error="invalid_token""#),
        response(404),
        response(429),
        response(500),
        response(503),
    ];
    for case in cases {
        let status = case.status();
        let (cache, calls) = counting_cache();
        let (mut service, mut handle) = mock::spawn_layer(AuthLayer::new(cache.clone()));
        let call = send(&mut service, request("x"));
        let (_, reply) = next(&mut handle).await;
        reply.send_response(case);
        assert_eq!(call.await.unwrap().unwrap().status(), status);
        assert_eq!(calls.load(Ordering::SeqCst), 1, "{status}");
        assert_eq!(cache.try_header().unwrap(), "Bearer tok-1", "{status}");
        nothing_more(&mut handle).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_streaming_body_is_not_resent_but_the_token_is_invalidated() {
    type StreamReq = http::Request<
        StreamBody<
            futures_util::stream::Iter<
                std::vec::IntoIter<Result<http_body::Frame<Bytes>, BoxError>>,
            >,
        >,
    >;
    let stream = || {
        let chunks: Vec<Result<http_body::Frame<Bytes>, BoxError>> = vec![
            Ok(http_body::Frame::data(Bytes::from_static(b"chunk-1 "))),
            Ok(http_body::Frame::data(Bytes::from_static(b"chunk-2"))),
        ];
        StreamBody::new(futures_util::stream::iter(chunks))
    };
    let (cache, calls) = counting_cache();
    let (mut service, mut handle) =
        mock::spawn_layer::<StreamReq, Res, _>(AuthLayer::new(cache.clone()));

    ready(&mut service);
    let call = tokio::spawn(service.call(http::Request::post("/upload").body(stream()).unwrap()));
    let (seen, reply) = tokio::time::timeout(Duration::from_secs(60), handle.next_request())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bearer(&seen), "Bearer tok-1");
    let body = seen.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "chunk-1 chunk-2");
    reply.send_response(invalid_token());

    // The 401 comes back: the stream was consumed and cannot be sent again.
    assert_eq!(call.await.unwrap().unwrap().status(), 401);
    assert!(
        tokio::time::timeout(Duration::from_secs(60), handle.next_request())
            .await
            .is_err(),
        "not resent"
    );
    // But the rejected token is gone: the next request carries a new one.
    assert!(cache.cached().is_none());
    ready(&mut service);
    let call = tokio::spawn(service.call(http::Request::post("/upload").body(stream()).unwrap()));
    let (seen, reply) = handle.next_request().await.unwrap();
    assert_eq!(bearer(&seen), "Bearer tok-2");
    reply.send_response(response(200));
    assert_eq!(call.await.unwrap().unwrap().status(), 200);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn never_replay_invalidates_without_resending() {
    let (cache, calls) = counting_cache();
    let layer = AuthLayer::new(cache.clone()).replay(NeverReplay);
    let (mut service, mut handle) = mock::spawn_layer::<Req, Res, _>(layer);
    ready(&mut service);
    let call = tokio::spawn(service.call(request("x")));
    let (_, reply) = next(&mut handle).await;
    reply.send_response(invalid_token());
    assert_eq!(call.await.unwrap().unwrap().status(), 401);
    assert!(cache.cached().is_none(), "invalidated");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    nothing_more(&mut handle).await;
}

#[tokio::test(start_paused = true)]
async fn never_replay_invalidates_a_fresh_token_by_value() {
    let (cache, calls) = counting_cache();
    cache.header().await.unwrap();
    let layer = AuthLayer::new(cache.clone()).replay(NeverReplay);
    let (mut service, mut handle) = mock::spawn_layer::<Req, Res, _>(layer);
    // Two requests on the fresh token (the fast path), both rejected.
    let mut calls_out = Vec::new();
    for _ in 0..2 {
        ready(&mut service);
        calls_out.push(tokio::spawn(service.call(request("x"))));
    }
    for _ in 0..2 {
        let (req, reply) = next(&mut handle).await;
        assert_eq!(bearer(&req), "Bearer tok-1");
        reply.send_response(invalid_token());
    }
    for call in calls_out {
        assert_eq!(call.await.unwrap().unwrap().status(), 401, "not resent");
    }
    assert!(cache.cached().is_none(), "invalidated");
    // The next request carries a new token: one refresh for the burst.
    ready(&mut service);
    let call = tokio::spawn(service.call(request("y")));
    let (req, reply) = next(&mut handle).await;
    assert_eq!(bearer(&req), "Bearer tok-2");
    reply.send_response(response(200));
    assert_eq!(call.await.unwrap().unwrap().status(), 200);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_late_401_never_drops_a_newer_token() {
    for never_replay in [true, false] {
        let (cache, _) = counting_cache();
        cache.header().await.unwrap();
        let (call, mut handle) = oneshot_through(cache.clone(), never_replay);
        let (req, reply) = next(&mut handle).await;
        assert_eq!(bearer(&req), "Bearer tok-1");
        // Another part of the program replaces the token while the request is out.
        assert_eq!(
            cache.force_refresh().await.unwrap().header_value(),
            "Bearer tok-2"
        );
        reply.send_response(invalid_token());
        if !never_replay {
            // Resent with the current token, which was not dropped.
            let (req, reply) = next(&mut handle).await;
            assert_eq!(bearer(&req), "Bearer tok-2");
            reply.send_response(response(200));
        }
        let status = call.await.unwrap().unwrap().status();
        assert_eq!(status, if never_replay { 401 } else { 200 });
        assert_eq!(
            cache.cached().unwrap().header_value(),
            "Bearer tok-2",
            "the newer token is kept (never_replay: {never_replay})"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_late_401_drops_the_same_token_fetched_again() {
    // A server that hands out the same token on every fetch: a 401 for it drops it even from
    // the entry fetched since (by value), whether or not the request can be resent.
    for never_replay in [true, false] {
        let (cache, calls) = same_token_cache();
        cache.header().await.unwrap();
        let (call, mut handle) = oneshot_through(cache.clone(), never_replay);
        let (req, reply) = next(&mut handle).await;
        let sent = bearer(&req);
        cache.force_refresh().await.unwrap();
        assert_eq!(
            cache.try_header().unwrap(),
            sent.as_str(),
            "the same value again"
        );
        reply.send_response(invalid_token());
        let status = call.await.unwrap().unwrap().status();
        // Resending is pointless with the same token: not resent either way.
        assert_eq!(status, 401, "never_replay: {never_replay}");
        if never_replay {
            assert!(cache.cached().is_none(), "the rejected value is dropped");
            assert_eq!(calls.load(Ordering::SeqCst), 2);
        } else {
            // Dropped, then fetched again for the resend: the same value, so not resent.
            assert_eq!(calls.load(Ordering::SeqCst), 3, "dropped and fetched again");
        }
        nothing_more(&mut handle).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_401_through_a_shared_cache_invalidates_too() {
    // `with_credentials(TokenCache)`, as `AuthLayer::new`.
    for never_replay in [true, false] {
        let (cache, calls) = counting_cache();
        cache.header().await.unwrap();
        let (call, mut handle) = oneshot_through(cache.clone(), never_replay);
        let (req, reply) = next(&mut handle).await;
        assert_eq!(bearer(&req), "Bearer tok-1");
        reply.send_response(invalid_token());
        if never_replay {
            assert_eq!(call.await.unwrap().unwrap().status(), 401);
            assert!(cache.cached().is_none(), "invalidated by value");
        } else {
            let (req, reply) = next(&mut handle).await;
            assert_eq!(bearer(&req), "Bearer tok-2");
            reply.send_response(response(200));
            assert_eq!(call.await.unwrap().unwrap().status(), 200);
            assert_eq!(calls.load(Ordering::SeqCst), 2);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_response_future_may_outlive_its_service_and_every_cache_handle() {
    // NeverReplay: the 401 is returned (nothing left to invalidate), no panic.
    let (cache, _) = counting_cache();
    cache.header().await.unwrap();
    let (call, mut handle) = oneshot_through(cache.clone(), true);
    drop(cache);
    let (_, reply) = next(&mut handle).await;
    reply.send_response(invalid_token());
    assert_eq!(call.await.unwrap().unwrap().status(), 401);

    // A request that can be resent keeps its cache: the resend still gets a new token.
    let (cache, calls) = counting_cache();
    cache.header().await.unwrap();
    let (call, mut handle) = oneshot_through(cache.clone(), false);
    drop(cache);
    let (req, reply) = next(&mut handle).await;
    assert_eq!(bearer(&req), "Bearer tok-1");
    reply.send_response(invalid_token());
    let (req, reply) = next(&mut handle).await;
    assert_eq!(bearer(&req), "Bearer tok-2");
    reply.send_response(response(200));
    assert_eq!(call.await.unwrap().unwrap().status(), 200);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn the_resend_drives_readiness_again() {
    let (cache, _) = counting_cache();
    let (mut service, mut handle) = mock::spawn_layer(AuthLayer::new(cache));
    handle.allow(1);
    let call = send(&mut service, request("x"));
    let (_, reply) = next(&mut handle).await;
    reply.send_response(invalid_token());
    // The resend waits for the inner service to be ready again.
    assert!(
        tokio::time::timeout(Duration::from_secs(60), handle.next_request())
            .await
            .is_err()
    );
    handle.allow(1);
    let (second, reply) = next(&mut handle).await;
    assert_eq!(bearer(&second), "Bearer tok-2");
    reply.send_response(response(200));
    assert_eq!(call.await.unwrap().unwrap().status(), 200);
}

#[tokio::test(start_paused = true)]
async fn token_failure_fails_the_request_without_calling_the_inner_service() {
    let cache = tokenward::TokenCache::builder(tokenward::grant::from_fn(|| async {
        Err(tokenward::Error::Config("no credentials here".into()))
    }))
    .max_attempts(1)
    .build();
    let (mut service, mut handle) = mock::spawn_layer::<Req, Res, _>(AuthLayer::new(cache));
    ready(&mut service);
    let error = service.call(request("x")).await.unwrap_err();
    let auth = error.downcast_ref::<AuthError>().expect("an AuthError");
    assert!(matches!(
        auth,
        AuthError::Token(tokenward::Error::Config(_))
    ));
    assert!(!auth.is_retryable());
    assert!(error.to_string().contains("was not sent"), "{error}");
    drop(service);
    assert!(handle.next_request().await.is_none(), "nothing was sent");
}

#[tokio::test(start_paused = true)]
async fn refresh_failure_after_a_401_is_a_typed_error() {
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = calls.clone();
    let cache = tokenward::TokenCache::builder(tokenward::grant::from_fn(move || {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        async move {
            if n == 0 {
                tokenward::Token::builder("first")
                    .expires_in(Duration::from_secs(3600))
                    .build()
            } else {
                Err(tokenward::Error::NoRefreshToken)
            }
        }
    }))
    .build();
    let (mut service, mut handle) = mock::spawn_layer(AuthLayer::new(cache));
    let call = send(&mut service, request("x"));
    let (_, reply) = next(&mut handle).await;
    reply.send_response(invalid_token());
    let error = call.await.unwrap().unwrap_err();
    let auth = error.downcast_ref::<AuthError>().unwrap();
    assert!(auth.token_error().unwrap().is_reauthorization_required());
    nothing_more(&mut handle).await;
}

#[tokio::test(start_paused = true)]
async fn inner_errors_pass_through_unchanged() {
    #[derive(Debug, thiserror::Error)]
    #[error("connection refused (test)")]
    struct Refused;

    let (cache, _) = counting_cache();
    let (mut service, mut handle) = mock::spawn_layer(AuthLayer::new(cache));
    let call = send(&mut service, request("x"));
    let (_, reply) = next(&mut handle).await;
    reply.send_error(Refused);
    let error = call.await.unwrap().unwrap_err();
    assert!(error.downcast_ref::<AuthError>().is_none());
    assert!(error.is::<Refused>(), "{error:?}");
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_401s_for_one_token_makes_one_refresh() {
    let (cache, calls) = counting_cache();
    let (mut service, mut handle) = mock::spawn_layer(AuthLayer::new(cache));
    let calls_out: Vec<_> = (0..50).map(|_| send(&mut service, request("x"))).collect();
    let mut first = Vec::new();
    for _ in 0..50 {
        let (req, reply) = next(&mut handle).await;
        assert_eq!(bearer(&req), "Bearer tok-1");
        first.push(reply);
    }
    for reply in first {
        reply.send_response(invalid_token());
    }
    for _ in 0..50 {
        let (req, reply) = next(&mut handle).await;
        assert_eq!(bearer(&req), "Bearer tok-2");
        reply.send_response(response(200));
    }
    for call in calls_out {
        assert_eq!(call.await.unwrap().unwrap().status(), 200);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn concurrent_first_requests_wait_on_one_token_call() {
    let (cache, calls) = counting_cache_with(Duration::from_secs(2));
    let (mut service, mut handle) = mock::spawn_layer(AuthLayer::new(cache));
    let calls_out: Vec<_> = (0..100).map(|_| send(&mut service, request("x"))).collect();
    for _ in 0..100 {
        let (req, reply) = next(&mut handle).await;
        assert_eq!(bearer(&req), "Bearer tok-1");
        reply.send_response(response(200));
    }
    for call in calls_out {
        assert_eq!(call.await.unwrap().unwrap().status(), 200);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_request_cancelled_while_waiting_for_a_token_does_not_cancel_the_refresh() {
    let (cache, calls) = counting_cache_with(Duration::from_secs(5));
    let (mut service, mut handle) = mock::spawn_layer(AuthLayer::new(cache.clone()));

    ready(&mut service);
    let waiting = service.call(request("x"));
    assert!(
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .is_err(),
        "still waiting for the token"
    );
    // The caller gave up (its future is dropped); the refresh goes on.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(cache.try_header().unwrap(), "Bearer tok-1");

    let call = send(&mut service, request("y"));
    let (req, reply) = next(&mut handle).await;
    assert_eq!(bearer(&req), "Bearer tok-1");
    reply.send_response(response(200));
    assert_eq!(call.await.unwrap().unwrap().status(), 200);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_request_cancelled_while_its_resend_refreshes_leaves_the_refresh_running() {
    let (cache, calls) = counting_cache_with(Duration::from_secs(5));
    cache.header().await.unwrap(); // tok-1 cached
    let (mut service, mut handle) = mock::spawn_layer(AuthLayer::new(cache.clone()));
    let call = send(&mut service, request("x"));
    let (_, reply) = next(&mut handle).await;
    reply.send_response(invalid_token());
    tokio::time::sleep(Duration::from_secs(1)).await;
    call.abort(); // cancelled mid-refresh
    assert!(call.await.unwrap_err().is_cancelled());
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(cache.try_header().unwrap(), "Bearer tok-2");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    nothing_more(&mut handle).await;
}

#[tokio::test(start_paused = true)]
async fn tenants_from_the_extension_and_typed_errors_for_missing_or_unknown() {
    let issued = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let source = |name: &'static str| {
        let issued = issued.clone();
        tokenward::grant::from_fn(move || {
            let n = issued.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                tokenward::Token::builder(format!("{name}-{n}"))
                    .expires_in(Duration::from_secs(3600))
                    .build()
            }
        })
    };
    let tenants: TenantCache<String> = TenantCache::builder()
        .tenant("acme".to_string(), source("acme"))
        .tenant("globex".to_string(), source("globex"))
        .build();
    let (mock, mut handle) = mock::pair::<Req, Res>();
    let service = AuthLayer::tenants(tenants.clone()).layer(mock);
    let with_tenant = |org: &str| {
        let mut req = request("x");
        req.extensions_mut().insert(Tenant(org.to_string()));
        req
    };

    for (org, token) in [
        ("acme", "acme-1"),
        ("globex", "globex-2"),
        ("acme", "acme-1"),
    ] {
        let call = tokio::spawn(service.clone().oneshot(with_tenant(org)));
        let (seen, reply) = next(&mut handle).await;
        assert_eq!(bearer(&seen), format!("Bearer {token}"));
        reply.send_response(response(200));
        assert_eq!(call.await.unwrap().unwrap().status(), 200);
    }

    let error = service.clone().oneshot(request("x")).await.unwrap_err();
    assert!(matches!(
        error.downcast_ref(),
        Some(AuthError::MissingTenant)
    ));
    let error = service
        .clone()
        .oneshot(with_tenant("initech"))
        .await
        .unwrap_err();
    match error.downcast_ref::<AuthError>() {
        Some(AuthError::UnknownTenant { tenant }) => assert_eq!(tenant, "initech"),
        other => panic!("{other:?}"),
    }

    // A tenant's 401 drops and refreshes that tenant's token only.
    let call = tokio::spawn(service.clone().oneshot(with_tenant("acme")));
    let (_, reply) = next(&mut handle).await;
    reply.send_response(invalid_token());
    let (seen, reply) = next(&mut handle).await;
    assert_eq!(bearer(&seen), "Bearer acme-3");
    reply.send_response(response(200));
    assert_eq!(call.await.unwrap().unwrap().status(), 200);
    assert_eq!(
        tenants.get("globex").unwrap().try_header().unwrap(),
        "Bearer globex-2"
    );

    // The extractor form: the tenant from a header.
    let (mock, mut handle) = mock::pair::<Req, Res>();
    let by_header = AuthLayer::tenants_by(tenants, |req: &Req| {
        Some(req.headers().get("x-org")?.to_str().ok()?.to_owned())
    })
    .layer(mock);
    let mut req = request("x");
    req.headers_mut()
        .insert("x-org", http::HeaderValue::from_static("globex"));
    let call = tokio::spawn(by_header.clone().oneshot(req));
    let (seen, reply) = next(&mut handle).await;
    assert_eq!(bearer(&seen), "Bearer globex-2");
    reply.send_response(response(200));
    assert_eq!(call.await.unwrap().unwrap().status(), 200);
    let error = by_header.clone().oneshot(request("x")).await.unwrap_err();
    assert!(matches!(
        error.downcast_ref(),
        Some(AuthError::MissingTenant)
    ));
    drop((service, by_header));
    assert!(
        handle.next_request().await.is_none(),
        "nothing else was sent"
    );
}

#[tokio::test(start_paused = true)]
async fn layer_and_service_are_clone_and_debug_with_accessors() {
    let (cache, _) = counting_cache();
    let layer = AuthLayer::new(cache.clone()).retry_bare_401(true);
    let dbg = format!("{:?}", layer.clone());
    assert!(
        dbg.contains("AuthLayer") && dbg.contains("bare_401: true"),
        "{dbg}"
    );
    let (mock, _handle) = mock::pair::<Req, Res>();
    let mut service = Auth::new(mock, cache.clone());
    let _: &mock::Mock<Req, Res> = service.get_ref();
    let _: &mut mock::Mock<Req, Res> = service.get_mut();
    let cloned = service.clone();
    assert!(format!("{cloned:?}").starts_with("Auth"));
    let _inner: mock::Mock<Req, Res> = cloned.into_inner();
    let _layer: AuthLayer = Auth::<()>::layer(cache.clone());
    // Debug output never shows a token.
    cache.header().await.unwrap();
    let fut = service.ready().await.unwrap().call(request("x"));
    assert!(!format!("{fut:?} {service:?}").contains("tok-1"));
}

/// Two tenants over `ConcurrencyLimit(1)`: acme's token endpoint hangs. Its request waits for
/// its token without holding the one permit, so globex's requests go through at once.
#[tokio::test(start_paused = true)]
async fn a_tenant_waiting_for_its_token_holds_no_permit_below() {
    let acme_calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = acme_calls.clone();
    let tenants: TenantCache<String> = TenantCache::builder()
        .tenant(
            "acme".to_string(),
            tokenward::grant::from_fn(move || {
                counted.fetch_add(1, Ordering::SeqCst);
                std::future::pending()
            }),
        )
        .tenant(
            "globex".to_string(),
            tokenward::grant::from_fn(|| async {
                tokenward::Token::builder("globex-token")
                    .expires_in(Duration::from_secs(3600))
                    .build()
            }),
        )
        .build();
    let echo = tower::service_fn(|req: Req| async move {
        Ok::<_, BoxError>(response(200).map(|_| bearer(&req)))
    });
    let client = tower::ServiceBuilder::new()
        .layer(AuthLayer::tenants(tenants))
        .concurrency_limit(1)
        .service(echo);
    let with_tenant = |org: &str| {
        let mut req = request("x");
        req.extensions_mut().insert(Tenant(org.to_string()));
        req
    };

    let stuck = tokio::spawn(client.clone().oneshot(with_tenant("acme")));
    while acme_calls.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    for _ in 0..3 {
        let start = tokio::time::Instant::now();
        let response = tokio::time::timeout(
            Duration::from_secs(1),
            client.clone().oneshot(with_tenant("globex")),
        )
        .await
        .expect("globex was held up behind acme's hanging token endpoint")
        .unwrap();
        assert_eq!(response.body(), "Bearer globex-token");
        assert_eq!(tokio::time::Instant::now(), start, "at once");
    }
    assert!(!stuck.is_finished(), "acme still waits for its token");
    stuck.abort();
}

/// A request in flight when its tenant is removed: its 401 is not answered with a new token
/// fetched with the removed tenant's credentials.
#[tokio::test(start_paused = true)]
async fn a_request_for_a_removed_tenant_is_not_resent_with_a_new_token() {
    let (cache, calls) = counting_cache();
    let tenants: TenantCache<String> = TenantCache::new();
    tenants.insert_cache("acme".to_string(), cache);
    let (mock, mut handle) = mock::pair::<Req, Res>();
    let service = AuthLayer::tenants(tenants.clone()).layer(mock);
    let mut req = request("x");
    req.extensions_mut().insert(Tenant("acme".to_string()));
    let call = tokio::spawn(service.oneshot(req));
    let (seen, reply) = next(&mut handle).await;
    assert_eq!(bearer(&seen), "Bearer tok-1");

    assert!(tenants.remove("acme"));
    reply.send_response(invalid_token());
    let error = call.await.unwrap().unwrap_err();
    match error.downcast_ref::<AuthError>() {
        Some(AuthError::Token(tokenward::Error::TenantRemoved { tenant })) => {
            assert_eq!(tenant, "acme")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "no new token");
    nothing_more(&mut handle).await;
}

/// One service used again and again (`ready().await` then `call`) over `ConcurrencyLimit(1)`,
/// with no usable token: the request that waits for its token gives the permit back, so its
/// own send (through a clone) and the next request get it.
#[tokio::test(start_paused = true)]
async fn a_reused_service_gives_its_permit_back_while_a_request_waits_for_its_token() {
    let (cache, calls) = counting_cache_with(Duration::from_millis(50));
    let echo = tower::service_fn(|req: Req| async move {
        Ok::<_, BoxError>(response(200).map(|_| bearer(&req)))
    });
    let mut client = tower::ServiceBuilder::new()
        .layer(AuthLayer::new(cache))
        .concurrency_limit(1)
        .service(echo);
    let first = client.ready().await.unwrap().call(request("a"));
    let response = tokio::time::timeout(Duration::from_secs(5), first)
        .await
        .expect("the request waited for the permit its own service held")
        .unwrap();
    assert_eq!(response.body(), "Bearer tok-1");
    // The service is used again: still works, and the token is now cached.
    let second = client.ready().await.unwrap().call(request("b"));
    assert_eq!(second.await.unwrap().body(), "Bearer tok-1");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_tenant_the_resolver_loads_is_served_through_the_layer() {
    let loads = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = loads.clone();
    let tenants: TenantCache<String> = TenantCache::builder()
        .resolver(move |org: String| {
            counted.fetch_add(1, Ordering::SeqCst);
            async move {
                if org != "acme" {
                    return Ok::<_, std::io::Error>(None);
                }
                Ok(Some(tokenward::grant::from_fn(|| async {
                    tokenward::Token::builder("acme-loaded")
                        .expires_in(Duration::from_secs(3600))
                        .build()
                })))
            }
        })
        .build();
    let (mock, mut handle) = mock::pair::<Req, Res>();
    let service = AuthLayer::tenants(tenants.clone()).layer(mock);
    let with_tenant = |org: &str| {
        let mut req = request("x");
        req.extensions_mut().insert(Tenant(org.to_string()));
        req
    };
    for _ in 0..2 {
        let call = tokio::spawn(service.clone().oneshot(with_tenant("acme")));
        let (seen, reply) = next(&mut handle).await;
        assert_eq!(bearer(&seen), "Bearer acme-loaded");
        reply.send_response(response(200));
        assert_eq!(call.await.unwrap().unwrap().status(), 200);
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    // A key the resolver does not know: the typed error, and nothing sent.
    let error = service
        .clone()
        .oneshot(with_tenant("initech"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error.downcast_ref(),
            Some(AuthError::UnknownTenant { tenant }) if tenant == "initech"
        ),
        "{error:?}"
    );
    drop(service);
    assert!(
        handle.next_request().await.is_none(),
        "nothing else was sent"
    );
}
