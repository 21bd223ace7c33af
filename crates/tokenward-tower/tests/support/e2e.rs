//! End-to-end helpers: the testkit server on loopback, a real hyper client, and a shim that
//! records what each attempt carried and can rewrite a response's status.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, RETRY_AFTER};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokenward::{ClientCredentials, TokenCache};
use tokenward_testkit::{FakeServer, RunningServer};
use tower::{Layer, Service, ServiceExt};

pub type Hyper<B> = Client<HttpConnector, B>;

/// A fake server with client `svc` (scopes `jobs.read jobs.write`), listening on 127.0.0.1,
/// and a cache for it that reaches the token endpoint over TCP.
pub async fn setup() -> (FakeServer, RunningServer, TokenCache) {
    let server = FakeServer::builder()
        .client("svc", "svc-secret")
        .client_scopes("svc", "jobs.read jobs.write")
        .token_lifetime(Duration::from_secs(3600))
        .build();
    let running = server.listen().await.unwrap();
    let cache = cache_for(&running, "svc", "svc-secret", "jobs.read");
    (server, running, cache)
}

pub fn cache_for(running: &RunningServer, client: &str, secret: &str, scope: &str) -> TokenCache {
    let grant = ClientCredentials::builder(running.token_url(), client)
        .client_secret(secret)
        .scope(scope)
        .build()
        .unwrap();
    TokenCache::builder(grant).name(client.to_owned()).build()
}

pub fn hyper<B>() -> Hyper<B>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    Client::builder(TokioExecutor::new()).build_http()
}

/// The JSON body of a response.
pub async fn json<B>(response: Response<B>) -> serde_json::Value
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let body = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null)
}

/// What the shim does to the next attempt.
#[derive(Debug, Clone)]
pub enum Step {
    /// Send it on as is.
    Forward,
    /// Revoke every access token at the server, then send it on (it meets a 401).
    RevokeThenForward,
    /// Send it on, then answer with this status (and `Retry-After`) instead.
    Rewrite {
        status: u16,
        retry_after: Option<&'static str>,
    },
    /// As `Rewrite`, and meanwhile another request refreshed the token: revoke every token
    /// and make `refresh` get a new one.
    RewriteAndRotate {
        status: u16,
        retry_after: Option<&'static str>,
    },
}

/// What an attempt carried.
#[derive(Debug, Clone)]
pub struct Seen {
    pub authorization: Option<HeaderValue>,
    pub sensitive: bool,
}

#[derive(Debug)]
pub struct Script {
    server: FakeServer,
    refresh: Option<TokenCache>,
    steps: Mutex<VecDeque<Step>>,
    seen: Mutex<Vec<Seen>>,
}

impl Script {
    pub fn new(server: &FakeServer, steps: impl IntoIterator<Item = Step>) -> Arc<Self> {
        Self::with_cache(server, None, steps)
    }

    pub fn with_cache(
        server: &FakeServer,
        refresh: Option<TokenCache>,
        steps: impl IntoIterator<Item = Step>,
    ) -> Arc<Self> {
        Arc::new(Script {
            server: server.clone(),
            refresh,
            steps: Mutex::new(steps.into_iter().collect()),
            seen: Mutex::new(Vec::new()),
        })
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn layer(self: &Arc<Self>) -> ShimLayer {
        ShimLayer(Arc::clone(self))
    }
}

#[derive(Debug, Clone)]
pub struct ShimLayer(Arc<Script>);

impl<S> Layer<S> for ShimLayer {
    type Service = Shim<S>;
    fn layer(&self, inner: S) -> Shim<S> {
        Shim {
            inner,
            script: Arc::clone(&self.0),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Shim<S> {
    inner: S,
    script: Arc<Script>,
}

type BoxFut<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, ResB> Service<Request<B>> for Shim<S>
where
    S: Service<Request<B>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
    ResB: Send + 'static,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = BoxFut<Result<Response<ResB>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let authorization = request.headers().get(AUTHORIZATION).cloned();
        self.script.seen.lock().unwrap().push(Seen {
            sensitive: authorization
                .as_ref()
                .is_some_and(HeaderValue::is_sensitive),
            authorization,
        });
        let step = self
            .script
            .steps
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Step::Forward);
        let inner = self.inner.clone();
        let script = Arc::clone(&self.script);
        Box::pin(async move {
            if let Step::RevokeThenForward = step {
                script.server.revoke_all_access_tokens();
            }
            let mut response = inner.oneshot(request).await?;
            let (status, retry_after, rotate) = match step {
                Step::Rewrite {
                    status,
                    retry_after,
                } => (status, retry_after, false),
                Step::RewriteAndRotate {
                    status,
                    retry_after,
                } => (status, retry_after, true),
                _ => return Ok(response),
            };
            *response.status_mut() = StatusCode::from_u16(status).unwrap();
            if let Some(value) = retry_after {
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from_static(value));
            }
            if rotate {
                script.server.revoke_all_access_tokens();
                let cache = script.refresh.as_ref().expect("a cache to refresh");
                cache.force_refresh().await.unwrap();
            }
            Ok(response)
        })
    }
}

/// A streaming request body: `chunks` frames of `size` bytes, produced one at a time.
pub type Streaming = http_body_util::StreamBody<
    futures_util::stream::Iter<std::vec::IntoIter<Result<http_body::Frame<Bytes>, std::io::Error>>>,
>;

pub fn streaming(chunks: usize, size: usize) -> Streaming {
    let frames: Vec<_> = (0..chunks)
        .map(|_| Ok(http_body::Frame::data(Bytes::from(vec![b'x'; size]))))
        .collect();
    http_body_util::StreamBody::new(futures_util::stream::iter(frames))
}
