//! `Auth<S>` over a no-op ready service against tower-http's `SetRequestHeader` with a static
//! header, in the same run. Results, as ratios, in the repository's BENCHMARKS.md.
//!
//! `cargo bench -p tokenward-tower --bench auth_layer`
#![allow(missing_docs)] // criterion_group! generates an undocumented function

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
mod support;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Request, Response};
use http_body_util::Full;
use support::paired::paired;
use tokenward_tower::AuthLayer;
use tokenward_tower::replay::NeverReplay;
use tower::{Layer, Service};
use tower_http::follow_redirect::FollowRedirectLayer;
use tower_http::set_header::SetRequestHeaderLayer;

type Req = Request<Full<Bytes>>;

/// A ready service that answers at once.
#[derive(Clone, Copy, Debug)]
struct Noop;

impl Service<Req> for Noop {
    type Response = Response<()>;
    type Error = Infallible;
    type Future = Ready<Result<Response<()>, Infallible>>;

    #[inline]
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        black_box(&req);
        ready(Ok(Response::new(())))
    }
}

#[inline(always)]
fn now<F: Future>(fut: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(fut).poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => unreachable!("ready at once"),
    }
}

/// What a client builds per request: a POST with a content type and a small static body.
#[inline]
fn build() -> Req {
    let mut req = Request::new(Full::new(Bytes::from_static(b"{\"run\":true}")));
    *req.method_mut() = http::Method::POST;
    *req.uri_mut() = http::Uri::from_static("http://api.example/jobs");
    req.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    req
}

#[inline(always)]
fn send<S>(service: &mut S, req: Req) -> Response<()>
where
    S: Service<Req, Response = Response<()>>,
    S::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    match service.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        _ => unreachable!(),
    }
    now(service.call(req)).unwrap()
}

/// One request built and sent, behind a call the optimiser cannot see through: every variant
/// runs the same harness code (`send` and `now` always inlined into it, so no variant pays a
/// call boundary another does not), and none is merged into the measuring loop (where the
/// loop's code placement, not the layer, decides several nanoseconds).
#[inline(never)]
fn one<S>(service: &mut S) -> Response<()>
where
    S: Service<Req, Response = Response<()>>,
    S::Error: std::fmt::Debug,
{
    send(service, build())
}

/// One prebuilt request sent, as [`one`].
#[inline(never)]
fn one_prebuilt<S>(service: &mut S, req: Req) -> Response<()>
where
    S: Service<Req, Response = Response<()>>,
    S::Error: std::fmt::Debug,
{
    send(service, req)
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let (cache, header, static_header) = support::token::fresh_cache(&rt);

    let mut set_header =
        SetRequestHeaderLayer::overriding(AUTHORIZATION, static_header.clone()).layer(Noop);
    // The token's own (reference-counted) value: each clone is an atomic increment.
    let mut set_shared = SetRequestHeaderLayer::overriding(AUTHORIZATION, header).layer(Noop);
    let mut auth_never = AuthLayer::new(cache.clone())
        .replay(NeverReplay)
        .layer(Noop);
    let mut auth = AuthLayer::new(cache.clone()).layer(Noop);
    // tower-http's own middleware that resends: it copies each request (head and body) before
    // the first send, as `Auth` must for a resend.
    let mut follow = FollowRedirectLayer::new().layer(Noop);
    // A static header over it: what "set the header, and be able to resend" costs with
    // tower-http's layers (the header is set before the copy is made, so it is copied too).
    let mut set_follow = SetRequestHeaderLayer::overriding(AUTHORIZATION, static_header.clone())
        .layer(FollowRedirectLayer::new().layer(Noop));

    let mut group = c.benchmark_group("per request (build + send)");
    group.bench_function("SetRequestHeader (static)", |b| {
        b.iter(|| one(&mut set_header))
    });
    group.bench_function("SetRequestHeader (shared value)", |b| {
        b.iter(|| one(&mut set_shared))
    });
    group.bench_function("Auth, NeverReplay", |b| b.iter(|| one(&mut auth_never)));
    group.bench_function("Auth, default (copy for a resend)", |b| {
        b.iter(|| one(&mut auth))
    });
    group.bench_function("FollowRedirect (tower-http, copies for a resend)", |b| {
        b.iter(|| one(&mut follow))
    });
    group.bench_function("SetRequestHeader (static) + FollowRedirect", |b| {
        b.iter(|| one(&mut set_follow))
    });
    group.finish();

    let mut group = c.benchmark_group("send only (request prebuilt)");
    group.bench_function("SetRequestHeader (static)", |b| {
        b.iter_batched(
            build,
            |req| one_prebuilt(&mut set_header, req),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("Auth, NeverReplay", |b| {
        b.iter_batched(
            build,
            |req| one_prebuilt(&mut auth_never, req),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("Auth, default (copy for a resend)", |b| {
        b.iter_batched(
            build,
            |req| one_prebuilt(&mut auth, req),
            BatchSize::SmallInput,
        )
    });
    group.finish();

    paired(
        "build + send",
        ROUNDS,
        BATCH,
        &mut [
            ("SetRequestHeader (static)", &mut || batch(&mut set_header)),
            ("SetRequestHeader (shared value)", &mut || {
                batch(&mut set_shared)
            }),
            ("Auth, NeverReplay", &mut || batch(&mut auth_never)),
            ("Auth, default", &mut || batch(&mut auth)),
            ("FollowRedirect (copies too)", &mut || batch(&mut follow)),
            ("SetRequestHeader + FollowRedirect", &mut || {
                batch(&mut set_follow)
            }),
        ],
    );
}

const BATCH: usize = 10_000;
const ROUNDS: usize = 200;

/// `BATCH` requests built and sent.
fn batch<S>(service: &mut S)
where
    S: Service<Req, Response = Response<()>>,
    S::Error: std::fmt::Debug,
{
    for _ in 0..BATCH {
        black_box(one(service));
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
