//! The fast path (usable token, response not a 401) allocates nothing beyond what setting a
//! header costs anyway, counted with a counting global allocator against tower-http's
//! `SetRequestHeader` over the same requests.
//!
//! What a resend's copy of the request costs is counted too: nothing for a request without
//! headers or extensions, one header-map clone for a request with headers, nothing at all
//! with `NeverReplay`.

use std::alloc::System;
use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Request, Response};
use http_body_util::Full;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tokenward::{Token, TokenCache, grant::from_fn};
use tokenward_tower::AuthLayer;
use tokenward_tower::replay::NeverReplay;
use tower::{Layer, Service};
use tower_http::set_header::SetRequestHeaderLayer;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const N: usize = 5_000;

type Req = Request<Full<Bytes>>;

/// A ready service that answers 200 at once.
#[derive(Clone, Copy, Debug)]
struct Noop;

impl Service<Req> for Noop {
    type Response = Response<()>;
    type Error = Infallible;
    type Future = Ready<Result<Response<()>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        assert!(req.headers().contains_key(AUTHORIZATION));
        ready(Ok(Response::new(())))
    }
}

fn now<F: Future>(fut: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(fut).poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the fast path must not wait"),
    }
}

/// Requests built before counting: with one header (so the map has room for Authorization)
/// or with none.
fn requests(with_header: bool) -> Vec<Req> {
    (0..N)
        .map(|_| {
            let mut builder = Request::post("http://api.example/jobs");
            if with_header {
                builder =
                    builder.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            }
            builder
                .body(Full::new(Bytes::from_static(b"{\"run\":true}")))
                .unwrap()
        })
        .collect()
}

/// Allocations made while sending `requests` through `service`.
fn count<S>(mut service: S, batch: Vec<Req>) -> u64
where
    S: Service<Req, Response = Response<()>>,
    S::Error: std::fmt::Debug,
{
    // Warm up (arc-swap's per-thread state, lazy statics).
    for req in requests(true).into_iter().take(10) {
        now(std::future::poll_fn(|cx| service.poll_ready(cx))).unwrap();
        now(service.call(req)).unwrap();
    }
    let region = Region::new(GLOBAL);
    for req in batch {
        now(std::future::poll_fn(|cx| service.poll_ready(cx))).unwrap();
        let response = now(service.call(req)).unwrap();
        assert_eq!(response.status(), 200);
    }
    let stats = region.change();
    stats.allocations as u64 + stats.reallocations as u64
}

#[test]
fn the_fast_path_allocates_no_more_than_setting_a_static_header() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let cache = TokenCache::new(from_fn(|| async {
        Token::builder("a-token-of-some-length")
            .expires_in(Duration::from_secs(3600))
            .build()
    }));
    rt.block_on(cache.header()).unwrap();
    let set_header = || {
        SetRequestHeaderLayer::overriding(
            AUTHORIZATION,
            HeaderValue::from_static("Bearer a-token-of-some-length"),
        )
        .layer(Noop)
    };

    // Requests whose header map has room: setting a header allocates nothing, and neither does
    // the layer, with or without a copy for a resend... except the copy's header-map clone.
    let baseline = count(set_header(), requests(true));
    assert_eq!(baseline, 0);
    let never = count(
        AuthLayer::new(cache.clone())
            .replay(NeverReplay)
            .layer(Noop),
        requests(true),
    );
    assert_eq!(never, 0, "NeverReplay: no allocation at all");

    // Requests without headers: inserting Authorization allocates the map, for both; the
    // copy of a request without headers or extensions is free.
    let baseline = count(set_header(), requests(false));
    assert!(baseline >= N as u64);
    let replayable = count(AuthLayer::new(cache.clone()).layer(Noop), requests(false));
    assert_eq!(
        replayable, baseline,
        "the default layer: nothing beyond the header insert"
    );

    // With headers, the copy for a resend clones the header map: exactly that, no more.
    let one_clone = {
        let reqs = requests(true);
        let region = Region::new(GLOBAL);
        for req in &reqs {
            drop(req.headers().clone());
        }
        let stats = region.change();
        stats.allocations as u64 + stats.reallocations as u64
    };
    let replayable = count(AuthLayer::new(cache.clone()).layer(Noop), requests(true));
    assert_eq!(
        replayable, one_clone,
        "the copy's header-map clone, nothing else"
    );

    // The counter does see the slow path: no fresh token, a refresh, a boxed wait.
    assert!(cache.invalidate(&cache.try_header().unwrap()));
    let mut auth = AuthLayer::new(cache.clone()).layer(Noop);
    let region = Region::new(GLOBAL);
    let req = requests(true).pop().unwrap();
    rt.block_on(async {
        std::future::poll_fn(|cx| auth.poll_ready(cx))
            .await
            .unwrap();
        auth.call(req).await.unwrap();
    });
    assert!(region.change().allocations > 0);
}
