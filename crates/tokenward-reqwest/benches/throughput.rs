//! End-to-end throughput on loopback: a `ClientWithMiddleware` with no middleware, the same
//! client with `AuthMiddleware` (token fresh), and with `RetryMiddleware` + `AuthMiddleware`,
//! each sending `REQUESTS` sequential GETs (body read) per iteration to a minimal hyper server
//! answering 200. Compare them in the same run; see BENCHMARKS.md.
//!
//! Two references help read the ratio: `header` (no middleware; the same `Authorization` set
//! as a default header: what the token costs on the wire) and `set-header` (a minimal
//! middleware inserting a fixed header: the floor for any header-setting middleware).
//!
//! Criterion measures the three one after the other, so anything else running on the machine
//! moves their ratio. The bench therefore also prints a *paired* measurement: `ROUNDS` rounds,
//! each timing one batch of every client back to back (in rotating order), and the median of
//! the per-round ratios — drift between rounds cancels out.
//!
//! Run: `cargo bench -p tokenward-reqwest --bench throughput`
#![allow(missing_docs)]

use std::convert::Infallible;
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use tokenward::{Token, TokenCache, grant::from_fn};
use tokenward_reqwest::{AuthMiddleware, RetryMiddleware};

const REQUESTS: u64 = 50;
const ROUNDS: usize = 300;

/// A hyper HTTP/1.1 server on 127.0.0.1, on its own thread and runtime, answering every
/// request with 200 and a 2-byte body.
fn start_server() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                stream.set_nodelay(true).unwrap();
                tokio::spawn(async move {
                    let service = service_fn(|_request| async {
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                            b"ok",
                        ))))
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    });
    addr
}

fn reqwest_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .build()
        .unwrap()
}

async fn run(client: &ClientWithMiddleware, url: &str) {
    for _ in 0..REQUESTS {
        let response = client.get(url).send().await.unwrap();
        assert!(response.status().is_success());
        black_box(response.bytes().await.unwrap());
    }
}

fn throughput(c: &mut Criterion) {
    let addr = start_server();
    let url = format!("http://{addr}/api");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let cache = runtime.block_on(async {
        let cache = TokenCache::new(from_fn(|| async {
            Token::builder("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJiZW5jaCJ9.c2lnbmF0dXJlLXBhZGRpbmc")
                .expires_in(Duration::from_secs(24 * 3600))
                .build()
        }));
        cache.header().await.unwrap();
        cache
    });

    let plain = ClientBuilder::new(reqwest_client()).build();
    let auth = ClientBuilder::new(reqwest_client())
        .with(AuthMiddleware::new(cache.clone()))
        .build();
    let retry_auth = ClientBuilder::new(reqwest_client())
        .with(RetryMiddleware::new())
        .with(AuthMiddleware::new(cache.clone()))
        .build();
    // No middleware, the same header value set by a default header: what sending the token
    // costs on the wire, whoever sets it.
    let by_hand = ClientBuilder::new(
        reqwest::Client::builder()
            .no_proxy()
            .tcp_nodelay(true)
            .default_headers(http::HeaderMap::from_iter([(
                http::header::AUTHORIZATION,
                cache.try_header().unwrap(),
            )]))
            .build()
            .unwrap(),
    )
    .build();
    // The least any header-setting middleware does: insert a fixed value, call the next one.
    let set_header = ClientBuilder::new(reqwest_client())
        .with(SetHeader(cache.try_header().unwrap()))
        .build();
    // AuthMiddleware without the copy for a resend.
    let no_resend = ClientBuilder::new(reqwest_client())
        .with(AuthMiddleware::new(cache.clone()).resend_on_invalid_token(false))
        .build();
    for client in [
        &plain,
        &by_hand,
        &set_header,
        &auth,
        &no_resend,
        &retry_auth,
    ] {
        runtime.block_on(run(client, &url)); // warm the connection pools
    }

    let mut group = c.benchmark_group("loopback_get");
    group.throughput(Throughput::Elements(REQUESTS));
    group.measurement_time(Duration::from_secs(8));
    group.bench_function("plain", |b| b.iter(|| runtime.block_on(run(&plain, &url))));
    group.bench_function("auth", |b| b.iter(|| runtime.block_on(run(&auth, &url))));
    group.bench_function("retry+auth", |b| {
        b.iter(|| runtime.block_on(run(&retry_auth, &url)))
    });
    group.finish();

    paired(
        &runtime,
        &[
            ("plain", &plain),
            ("header", &by_hand),
            ("set-header", &set_header),
            ("auth", &auth),
            ("no-resend", &no_resend),
            ("retry+auth", &retry_auth),
        ],
        &url,
    );
    assert!(
        cache.try_header().is_some(),
        "the token stayed fresh throughout"
    );

    // The middleware's own cost, without sockets: the chain ends in a middleware that answers
    // 200 at once.
    let terminal = || ClientBuilder::new(reqwest_client());
    let bare = terminal().with(Answer200).build();
    let auth = terminal()
        .with(AuthMiddleware::new(cache.clone()))
        .with(Answer200)
        .build();
    let retry_auth = terminal()
        .with(RetryMiddleware::new())
        .with(AuthMiddleware::new(cache.clone()))
        .with(Answer200)
        .build();
    let set_header = terminal()
        .with(SetHeader(cache.try_header().unwrap()))
        .with(Answer200)
        .build();
    let mut group = c.benchmark_group("in_process");
    group.bench_function("no middleware", |b| {
        b.iter(|| runtime.block_on(one(&bare, &url)))
    });
    group.bench_function("set-header", |b| {
        b.iter(|| runtime.block_on(one(&set_header, &url)))
    });
    group.bench_function("auth", |b| b.iter(|| runtime.block_on(one(&auth, &url))));
    group.bench_function("retry+auth", |b| {
        b.iter(|| runtime.block_on(one(&retry_auth, &url)))
    });
    group.finish();
}

async fn one(client: &ClientWithMiddleware, url: &str) {
    let response = client.get(url).send().await.unwrap();
    black_box(response.status());
}

/// A terminal middleware: 200 at once, nothing sent.
struct Answer200;

#[async_trait::async_trait]
impl reqwest_middleware::Middleware for Answer200 {
    async fn handle(
        &self,
        _req: reqwest::Request,
        _extensions: &mut http::Extensions,
        _next: reqwest_middleware::Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        Ok(reqwest::Response::from(http::Response::new("ok")))
    }
}

/// Per round, one batch per client back to back (order rotating); prints, per client, the
/// median batch time and the median (with the interquartile range) of the per-round
/// throughput ratios to the first client.
fn paired(runtime: &tokio::runtime::Runtime, clients: &[(&str, &ClientWithMiddleware)], url: &str) {
    let mut times = vec![Vec::with_capacity(ROUNDS); clients.len()];
    for round in 0..ROUNDS {
        for k in 0..clients.len() {
            let i = (round + k) % clients.len();
            let start = std::time::Instant::now();
            runtime.block_on(run(clients[i].1, url));
            times[i].push(start.elapsed().as_secs_f64());
        }
    }
    let quartiles = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[v.len() / 4], v[v.len() / 2], v[v.len() * 3 / 4])
    };
    println!("paired, {ROUNDS} rounds of {REQUESTS} requests per client:");
    for (i, (name, _)) in clients.iter().enumerate() {
        // Throughput ratio to the baseline = baseline time / this time, in the same round.
        let ratios = (0..ROUNDS).map(|r| times[0][r] / times[i][r]).collect();
        let (q1, q2, q3) = quartiles(ratios);
        let (_, batch, _) = quartiles(times[i].clone());
        println!(
            "  {name:<11} median batch {:>7.3} ms, throughput vs {}: {q2:.3}x (IQR {q1:.3}-{q3:.3})",
            batch * 1e3,
            clients[0].0,
        );
    }
}

criterion_group!(benches, throughput);
criterion_main!(benches);

/// A minimal middleware that sets a fixed `Authorization`: the floor for any header-setting
/// middleware.
struct SetHeader(http::HeaderValue);

#[async_trait::async_trait]
impl reqwest_middleware::Middleware for SetHeader {
    async fn handle(
        &self,
        mut req: reqwest::Request,
        extensions: &mut http::Extensions,
        next: reqwest_middleware::Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        req.headers_mut()
            .insert(http::header::AUTHORIZATION, self.0.clone());
        next.run(req, extensions).await
    }
}
