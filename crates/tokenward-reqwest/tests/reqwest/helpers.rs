//! Shared helpers: the testkit on loopback, a scripted resource server (429/503/latency, which
//! the testkit's resource does not fault), a recording sleeper, probe and canned middlewares.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use http::{Extensions, HeaderValue, StatusCode};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware, Middleware, Next};
use tokenward::{ClientCredentials, Token, TokenCache, grant::from_fn};
use tokenward_testkit::{FakeServer, RunningServer};

/// The testkit with one client `svc` allowed `jobs.read`, listening on loopback, and a
/// client-credentials cache for it.
pub(crate) async fn testkit() -> (FakeServer, RunningServer, TokenCache) {
    let server = FakeServer::builder()
        .client("svc", "svc-secret")
        .client_scopes("svc", "jobs.read")
        .token_lifetime(Duration::from_secs(3600))
        .build();
    let running = server.listen().await.unwrap();
    let cache = TokenCache::new(grant(&running, "svc", "svc-secret"));
    (server, running, cache)
}

pub(crate) fn grant(running: &RunningServer, client_id: &str, secret: &str) -> ClientCredentials {
    ClientCredentials::builder(running.token_url(), client_id)
        .client_secret(secret)
        .scope("jobs.read")
        .build()
        .unwrap()
}

/// A reqwest client that ignores proxy settings from the environment.
pub(crate) fn reqwest_client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

pub(crate) fn client_with(middlewares: Vec<Arc<dyn Middleware>>) -> ClientWithMiddleware {
    let mut builder = ClientBuilder::new(reqwest_client());
    for m in middlewares {
        builder = builder.with_arc(m);
    }
    builder.build()
}

/// A cache over tokens `t1`, `t2`, ... (unknown to any server), counting fetches.
pub(crate) fn counting_cache() -> (TokenCache, Arc<AtomicU64>) {
    let fetches = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&fetches);
    let cache = TokenCache::new(from_fn(move || {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            Token::builder(format!("t{n}"))
                .expires_in(Duration::from_secs(3600))
                .build()
        }
    }));
    (cache, fetches)
}

pub(crate) async fn json(response: reqwest::Response) -> serde_json::Value {
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}

// ---------------------------------------------------------------------------------------------
// A scripted resource server

/// One scripted answer: a status with headers, after an optional delay.
#[derive(Clone, Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) delay: Duration,
}

impl Answer {
    pub(crate) fn status(status: u16) -> Self {
        Answer {
            status,
            headers: Vec::new(),
            delay: Duration::ZERO,
        }
    }

    pub(crate) fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub(crate) fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// An answer that never comes within a test: the request is read, then nothing is sent
    /// back for a day (a client timeout always fires first, however slow the machine).
    pub(crate) fn hang() -> Self {
        Answer::status(200).delay(Duration::from_secs(86_400))
    }
}

/// What the scripted server saw of one request.
#[derive(Clone, Debug)]
pub(crate) struct Seen {
    pub(crate) authorization: Option<String>,
    pub(crate) body_len: usize,
}

#[derive(Default)]
struct ScriptState {
    script: Mutex<VecDeque<Answer>>,
    seen: Mutex<Vec<Seen>>,
}

/// A tiny axum server on 127.0.0.1: answers each request with the next scripted [`Answer`]
/// (200 once the script is exhausted) and records what it saw.
pub(crate) struct Scripted {
    addr: SocketAddr,
    state: Arc<ScriptState>,
    task: tokio::task::JoinHandle<()>,
}

impl Scripted {
    pub(crate) async fn start(script: impl IntoIterator<Item = Answer>) -> Scripted {
        let state = Arc::new(ScriptState::default());
        state.script.lock().unwrap().extend(script);
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Scripted { addr, state, task }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}/api", self.addr)
    }

    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    pub(crate) fn requests(&self) -> usize {
        self.state.seen.lock().unwrap().len()
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(State(state): State<Arc<ScriptState>>, request: Request) -> Response {
    let authorization = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap().to_owned());
    let next = state.script.lock().unwrap().pop_front();
    let body = axum::body::to_bytes(request.into_body(), usize::MAX)
        .await
        .unwrap_or_default();
    state.seen.lock().unwrap().push(Seen {
        authorization,
        body_len: body.len(),
    });
    let answer = next.unwrap_or_else(|| Answer::status(200));
    if !answer.delay.is_zero() {
        tokio::time::sleep(answer.delay).await;
    }
    let mut response = Response::new(Body::from(format!("answer {}", answer.status)));
    *response.status_mut() = StatusCode::from_u16(answer.status).unwrap();
    for (name, value) in answer.headers {
        response
            .headers_mut()
            .insert(name, HeaderValue::from_str(&value).unwrap());
    }
    response
}

// ---------------------------------------------------------------------------------------------
// Sleepers and middlewares for observing attempts

/// A sleeper that records the delays asked for and returns at once.
#[derive(Clone, Default)]
pub(crate) struct Recorder(pub Arc<Mutex<Vec<Duration>>>);

impl Recorder {
    pub(crate) fn delays(&self) -> Vec<Duration> {
        self.0.lock().unwrap().clone()
    }

    pub(crate) fn sleeper(
        &self,
    ) -> impl Fn(Duration) -> std::future::Ready<()> + Send + Sync + 'static {
        let log = Arc::clone(&self.0);
        move |delay| {
            log.lock().unwrap().push(delay);
            std::future::ready(())
        }
    }
}

/// A marker a [`Probe`] leaves in the extensions of the attempt it saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AttemptMarker(pub u64);

/// Counts the attempts that pass through it, records the `Authorization` each carried, and
/// whether an attempt found a marker left by an earlier one (state leaking between attempts).
#[derive(Clone, Default)]
pub(crate) struct Probe {
    pub(crate) attempts: Arc<AtomicU64>,
    pub(crate) leaked: Arc<AtomicU64>,
    pub(crate) authorization: Arc<Mutex<Vec<Option<String>>>>,
}

impl Probe {
    pub(crate) fn attempts(&self) -> u64 {
        self.attempts.load(Ordering::SeqCst)
    }

    pub(crate) fn leaked(&self) -> u64 {
        self.leaked.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl Middleware for Probe {
    async fn handle(
        &self,
        req: reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let n = self.attempts.fetch_add(1, Ordering::SeqCst) + 1;
        if extensions.get::<AttemptMarker>().is_some() {
            self.leaked.fetch_add(1, Ordering::SeqCst);
        }
        extensions.insert(AttemptMarker(n));
        self.authorization.lock().unwrap().push(
            req.headers()
                .get(http::header::AUTHORIZATION)
                .map(|v| v.to_str().unwrap().to_owned()),
        );
        next.run(req, extensions).await
    }
}

/// A terminal middleware that answers from a script without any socket (so paused Tokio time
/// works), 200 once the script is exhausted.
#[derive(Clone, Default)]
pub(crate) struct Canned {
    script: Arc<Mutex<VecDeque<Answer>>>,
    pub(crate) calls: Arc<AtomicU64>,
}

impl Canned {
    pub(crate) fn new(script: impl IntoIterator<Item = Answer>) -> Self {
        Canned {
            script: Arc::new(Mutex::new(script.into_iter().collect())),
            calls: Arc::default(),
        }
    }
}

pub(crate) fn canned_response(answer: &Answer) -> reqwest::Response {
    let mut builder = http::Response::builder().status(answer.status);
    for (name, value) in &answer.headers {
        builder = builder.header(*name, value.as_str());
    }
    reqwest::Response::from(builder.body(String::new()).unwrap())
}

#[async_trait::async_trait]
impl Middleware for Canned {
    async fn handle(
        &self,
        _req: reqwest::Request,
        _extensions: &mut Extensions,
        _next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let answer = self
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| Answer::status(200));
        Ok(canned_response(&answer))
    }
}
