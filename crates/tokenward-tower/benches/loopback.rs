//! End-to-end cost on loopback: a hyper client (`hyper_util`'s legacy `Client`) wrapped in
//! tower-http's `SetRequestHeader` with a static header, in `Auth` (default: a copy of every
//! request kept for a resend), and in `Auth` with `NeverReplay` (no copy), each sending
//! `REQUESTS` sequential POSTs (small static JSON body, response body read) per iteration to a
//! minimal hyper server on 127.0.0.1 answering 200. Compare them in the same run.
//!
//! The in-process bench (`auth_layer`) puts the layer's copy for a resend at about 0.1 µs per
//! request; this one shows that copy against what a real HTTP round trip costs, with sockets,
//! parsing and a connection pool in the way.
//!
//! Criterion measures the three one after the other, so anything else running on the machine
//! moves their ratio. The bench therefore also prints a *paired* measurement: `ROUNDS` rounds,
//! each timing one batch of every variant back to back (in rotating order), and the median of
//! the per-round cost ratios to the first variant — drift between rounds cancels out.
//!
//! Run: `cargo bench -p tokenward-tower --bench loopback`
#![allow(missing_docs)] // criterion_group! generates an undocumented function

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
mod support;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::paired::paired;
use tokenward_tower::AuthLayer;
use tokenward_tower::replay::NeverReplay;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_http::set_header::SetRequestHeaderLayer;

type Req = Request<Full<Bytes>>;

const REQUESTS: u64 = 50;
const ROUNDS: usize = 200;

/// A hyper HTTP/1.1 server on 127.0.0.1, on its own thread and runtime, answering every
/// request with 200 and a 2-byte body once it has read the request's body (so the connection
/// is kept alive).
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
                    let service = service_fn(|request: Request<Incoming>| async move {
                        black_box(request.into_body().collect().await?);
                        Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::from_static(b"ok"))))
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

/// What a client builds per request: a POST with a content type and a small static body.
#[inline]
fn build(uri: &Uri) -> Req {
    let mut req = Request::new(Full::new(Bytes::from_static(b"{\"run\":true}")));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = uri.clone();
    req.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    req
}

/// `REQUESTS` requests built and sent one after the other through the same service, each
/// response's body read to the end.
async fn run<S>(service: &mut S, uri: &Uri)
where
    S: Service<Req, Response = Response<Incoming>>,
    S::Error: std::fmt::Debug,
{
    for _ in 0..REQUESTS {
        let response = service
            .ready()
            .await
            .unwrap()
            .call(build(uri))
            .await
            .unwrap();
        assert!(response.status().is_success());
        black_box(response.into_body().collect().await.unwrap().to_bytes());
    }
}

fn loopback(c: &mut Criterion) {
    let addr = start_server();
    let uri: Uri = format!("http://{addr}/jobs").parse().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let (cache, _, static_header) = support::token::fresh_cache(&runtime);

    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(connector);

    let mut set_header = ServiceBuilder::new()
        .layer(SetRequestHeaderLayer::overriding(
            AUTHORIZATION,
            static_header,
        ))
        .service(client.clone());
    let mut auth = ServiceBuilder::new()
        .layer(AuthLayer::new(cache.clone()))
        .service(client.clone());
    let mut auth_never = ServiceBuilder::new()
        .layer(AuthLayer::new(cache.clone()).replay(NeverReplay))
        .service(client.clone());
    // The clones share one pool: warm it (one kept-alive connection) before measuring.
    runtime.block_on(async {
        run(&mut set_header, &uri).await;
        run(&mut auth, &uri).await;
        run(&mut auth_never, &uri).await;
    });

    let mut group = c.benchmark_group("loopback_post");
    group.throughput(Throughput::Elements(REQUESTS));
    group.measurement_time(Duration::from_secs(8));
    group.bench_function("SetRequestHeader (static)", |b| {
        b.iter(|| runtime.block_on(run(&mut set_header, &uri)))
    });
    group.bench_function("Auth, default", |b| {
        b.iter(|| runtime.block_on(run(&mut auth, &uri)))
    });
    group.bench_function("Auth, NeverReplay", |b| {
        b.iter(|| runtime.block_on(run(&mut auth_never, &uri)))
    });
    group.finish();

    paired(
        "loopback POST, body read",
        ROUNDS,
        REQUESTS as usize,
        &mut [
            ("SetRequestHeader (static)", &mut || {
                runtime.block_on(run(&mut set_header, &uri))
            }),
            ("Auth, default", &mut || {
                runtime.block_on(run(&mut auth, &uri))
            }),
            ("Auth, NeverReplay", &mut || {
                runtime.block_on(run(&mut auth_never, &uri))
            }),
        ],
    );
    assert!(
        cache.try_header().is_some(),
        "the token stayed fresh throughout"
    );
}

criterion_group!(benches, loopback);
criterion_main!(benches);
