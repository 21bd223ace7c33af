//! Cached read vs the floor (an `ArcSwap` load, a `HeaderValue` clone and one read of the
//! clock the cache uses) and vs the naive pattern (a `tokio::sync::Mutex<Option<Token>>` with
//! an expiry re-check); and the clocks the cache could read (`std::time::Instant`, Tokio's
//! `Instant`, `quanta`'s TSC clock).
//!
//! The `metrics` feature is on (the dev-dependencies turn it on) and a Prometheus recorder is
//! installed, as in a service that exports metrics: a fresh read records nothing.
//!
//! Run: `cargo bench -p tokenward --bench cached_read`. Figures go to BENCHMARKS.md as ratios.
#![allow(missing_docs)]

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use arc_swap::ArcSwap;
use criterion::{Criterion, criterion_group, criterion_main};
use http::HeaderValue;
use tokenward::{Token, TokenCache, grant::from_fn};
use tokio::time::Instant;

/// Polls a future that is expected to be ready at once (all the reads benchmarked here are).
fn ready<F: Future>(fut: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(fut).poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("expected a ready future"),
    }
}

/// The naive pattern many hand-written clients use.
struct Naive {
    token: tokio::sync::Mutex<Option<Token>>,
}

impl Naive {
    async fn header(&self) -> HeaderValue {
        let guard = self.token.lock().await;
        match &*guard {
            Some(t) if Instant::now() + Duration::from_secs(30) < t.expires_at() => {
                t.header_value().clone()
            }
            _ => unreachable!("the benchmark keeps the token fresh"),
        }
    }
}

fn bench(c: &mut Criterion) {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let scrape = recorder.handle();
    metrics::set_global_recorder(recorder).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let token =
        Token::builder("eyJhbGciOiJSUzI1NiJ9.a-typical-jwt-sized-payload-goes-here.signature")
            .expires_in(Duration::from_secs(3600))
            .build()
            .unwrap();

    let floor = ArcSwap::from_pointee(token.header_value().clone());
    let t = token.clone();
    let cache = TokenCache::new(from_fn(move || {
        let t = t.clone();
        async move { Ok(t) }
    }));
    rt.block_on(cache.header()).unwrap();
    assert!(
        scrape.render().contains("tokenward_token_requests"),
        "the recorder sees the first refresh"
    );
    let naive = Arc::new(Naive {
        token: tokio::sync::Mutex::new(Some(token.clone())),
    });

    let mut g = c.benchmark_group("cached_read");
    g.bench_function("floor_arcswap_load_clone", |b| {
        b.iter(|| black_box(HeaderValue::clone(&floor.load())))
    });
    g.bench_function("floor_arcswap_load_clone_clock", |b| {
        b.iter(|| {
            let header = floor.load();
            black_box(Instant::now());
            black_box(HeaderValue::clone(&header))
        })
    });
    g.bench_function("floor_polled_as_a_future", |b| {
        b.iter(|| black_box(ready(std::future::ready(HeaderValue::clone(&floor.load())))))
    });
    g.bench_function("tokenward_header", |b| {
        b.iter(|| black_box(ready(cache.header()).unwrap()))
    });
    g.bench_function("tokenward_try_header", |b| {
        b.iter(|| black_box(cache.try_header().unwrap()))
    });
    g.bench_function("naive_tokio_mutex_recheck", |b| {
        b.iter(|| black_box(ready(naive.header())))
    });
    g.finish();

    let mut g = c.benchmark_group("clock");
    g.bench_function("std_instant_now", |b| {
        b.iter(|| black_box(std::time::Instant::now()))
    });
    g.bench_function("tokio_instant_now", |b| {
        b.iter(|| black_box(Instant::now()))
    });
    let quanta = quanta::Clock::new();
    g.bench_function("quanta_clock_now", |b| b.iter(|| black_box(quanta.now())));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
