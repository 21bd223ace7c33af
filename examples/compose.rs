//! `AuthLayer` composed with tower's timeout and retry (`ClassifiedRetry`), against the
//! embedded fake server on 127.0.0.1 — and why the order matters.
//!
//! The right order, outermost first: timeout → retry → `AuthLayer` → client.
//!
//! The fake resource does not fail by itself, so a small `Upstream` layer plays a flaky
//! gateway in front of it: it forwards each attempt and can rewrite the answer's status.
//!
//! Run: `cargo run --example compose`

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokenward::timing::Backoff;
use tokenward::{ClientCredentials, TokenCache};
use tokenward_testkit::{FakeServer, Fault, RunningServer};
use tokenward_tower::retry::ClassifiedRetry;
use tokenward_tower::{AuthLayer, BoxError};
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let server = FakeServer::builder().client("svc", "svc-secret").build();
    let running = server.listen().await?;
    let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let retry = ClassifiedRetry::new().backoff(Backoff::new(
        Duration::from_millis(50),
        Duration::from_secs(1),
    ));
    println!("fake server at {}\n", running.addr());

    // 1. The right stack rides out a flaky gateway: 503, 502, then the real answer.
    let cache = new_cache(&running)?;
    let upstream = Upstream::new(&server, &cache, [Rewrite(503, None), Rewrite(502, None)]);
    let client = ServiceBuilder::new()
        .timeout(Duration::from_secs(10)) // the caller's deadline: everything below
        .retry(retry.clone()) // 429 after Retry-After, 5xx with backoff
        .layer(AuthLayer::new(cache)) // the token, per attempt
        .layer(upstream.clone())
        .service(http.clone());
    let response = client.oneshot(get(&running)?).await?;
    println!(
        "1. timeout → retry → auth: {} after {} attempts",
        response.status(),
        upstream.attempts()
    );
    server.reset_counters();

    // 2. A 429 with Retry-After: 1, and meanwhile another request refreshed the token (the old
    //    one is revoked). AuthLayer inside the retry sets the token that is valid at retry
    //    time; outside it, the retry resends the stale token and pays a 401 round trip.
    for (name, inside) in [
        ("timeout → retry → auth", true),
        ("timeout → auth → retry", false),
    ] {
        let cache = new_cache(&running)?;
        let upstream = Upstream::new(&server, &cache, [RewriteAndRotate(429, Some("1"))]);
        let stack = ServiceBuilder::new().timeout(Duration::from_secs(10));
        let response = if inside {
            let client = stack
                .retry(retry.clone())
                .layer(AuthLayer::new(cache))
                .layer(upstream.clone())
                .service(http.clone());
            client.oneshot(get(&running)?).await?
        } else {
            let client = stack
                .layer(AuthLayer::new(cache))
                .retry(retry.clone())
                .layer(upstream.clone())
                .service(http.clone());
            client.oneshot(get(&running)?).await?
        };
        let c = server.counters();
        println!(
            "2. {name}: {} after {} attempts, {} rejected with 401",
            response.status(),
            upstream.attempts(),
            c.resource_rejected
        );
        server.reset_counters();
    }

    // 3. The token endpoint is slow (1.5 s). The timeout outermost bounds the wait for the
    //    token too; a timeout below AuthLayer only covers the HTTP exchange.
    let cache_right = new_cache(&running)?;
    server.push_fault(Fault::Latency(Duration::from_millis(1500)));
    let right = ServiceBuilder::new()
        .timeout(Duration::from_millis(200))
        .retry(retry.clone())
        .layer(AuthLayer::new(cache_right))
        .service(http.clone());
    match right.oneshot(get(&running)?).await {
        Err(e) if e.is::<tower::timeout::error::Elapsed>() => {
            println!("3. timeout → retry → auth: timed out after 200 ms, as the caller asked")
        }
        other => println!("3. timeout → retry → auth: unexpected {other:?}"),
    }
    let cache_wrong = new_cache(&running)?;
    server.push_fault(Fault::Latency(Duration::from_millis(1500)));
    let wrong = ServiceBuilder::new()
        .layer(AuthLayer::new(cache_wrong))
        .timeout(Duration::from_millis(200))
        .service(http);
    let started = tokio::time::Instant::now();
    let response = wrong.oneshot(get(&running)?).await?;
    println!(
        "3. auth → timeout: {} after {:.1} s — the 200 ms timeout never covered the token wait",
        response.status(),
        started.elapsed().as_secs_f64()
    );

    running.shutdown().await;
    Ok(())
}

fn new_cache(running: &RunningServer) -> Result<TokenCache, tokenward::Error> {
    let grant = ClientCredentials::builder(running.token_url(), "svc")
        .client_secret("svc-secret")
        .build()?;
    Ok(TokenCache::new(grant))
}

fn get(running: &RunningServer) -> Result<Request<Full<Bytes>>, http::Error> {
    Request::get(running.resource_url()).body(Full::default())
}

/// What the gateway does to the next attempt (afterwards, it forwards as is).
#[derive(Debug, Clone, Copy)]
enum Step {
    /// Forward, then answer with this status (and Retry-After).
    Rewrite(u16, Option<&'static str>),
    /// As `Rewrite`; meanwhile another request refreshed the token and the old one is revoked.
    RewriteAndRotate(u16, Option<&'static str>),
}
use Step::*;

/// A flaky gateway between `AuthLayer` and the client, counting attempts.
#[derive(Debug, Clone)]
struct Upstream {
    state: Arc<UpstreamState>,
}

#[derive(Debug)]
struct UpstreamState {
    server: FakeServer,
    cache: TokenCache,
    steps: Mutex<VecDeque<Step>>,
    attempts: Mutex<usize>,
}

impl Upstream {
    fn new(server: &FakeServer, cache: &TokenCache, steps: impl IntoIterator<Item = Step>) -> Self {
        Upstream {
            state: Arc::new(UpstreamState {
                server: server.clone(),
                cache: cache.clone(),
                steps: Mutex::new(steps.into_iter().collect()),
                attempts: Mutex::new(0),
            }),
        }
    }

    fn attempts(&self) -> usize {
        *self.state.attempts.lock().unwrap()
    }
}

impl<S> Layer<S> for Upstream {
    type Service = UpstreamService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        UpstreamService {
            inner,
            state: Arc::clone(&self.state),
        }
    }
}

#[derive(Debug, Clone)]
struct UpstreamService<S> {
    inner: S,
    state: Arc<UpstreamState>,
}

impl<S, B, ResB> Service<Request<B>> for UpstreamService<S>
where
    S: Service<Request<B>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
    ResB: Send + 'static,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ResB>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        *self.state.attempts.lock().unwrap() += 1;
        let step = self.state.steps.lock().unwrap().pop_front();
        let (inner, state) = (self.inner.clone(), Arc::clone(&self.state));
        Box::pin(async move {
            let mut response = inner.oneshot(request).await?;
            let (status, retry_after, rotate) = match step {
                None => return Ok(response),
                Some(Rewrite(s, r)) => (s, r, false),
                Some(RewriteAndRotate(s, r)) => (s, r, true),
            };
            *response.status_mut() = StatusCode::from_u16(status).expect("a status code");
            if let Some(value) = retry_after {
                let value = HeaderValue::from_static(value);
                response
                    .headers_mut()
                    .insert(http::header::RETRY_AFTER, value);
            }
            if rotate {
                state.server.revoke_all_access_tokens();
                let _ = state.cache.force_refresh().await;
            }
            Ok(response)
        })
    }
}
