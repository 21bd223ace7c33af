//! A scripted token source for deterministic cache tests.
#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{HeaderMap, StatusCode};
use tokenward::grant::FetchFuture;
use tokenward::{EndpointError, Error, OAuthError, Token, TokenSource};

/// What the next fetch does.
#[derive(Debug, Clone)]
pub enum Step {
    /// Issue `token-N` with the source's lifetime.
    Ok,
    /// Wait, then issue.
    Delay(Duration),
    /// Fail with this error.
    Fail(Error),
    /// Wait, then fail.
    DelayThenFail(Duration, Error),
    /// Never finish.
    Hang,
    /// Panic (a buggy custom source).
    Panic,
}

/// Issues `token-1`, `token-2`, ... with a fixed lifetime, following a script of steps
/// (then `Step::Ok` forever), and counts its calls.
#[derive(Debug, Clone)]
pub struct Scripted {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    calls: AtomicUsize,
    issued: AtomicUsize,
    lifetime: Mutex<Duration>,
    script: Mutex<VecDeque<Step>>,
    default: Mutex<Step>,
}

impl Scripted {
    pub fn new(lifetime: Duration) -> Self {
        Scripted {
            inner: Arc::new(Inner {
                calls: AtomicUsize::new(0),
                issued: AtomicUsize::new(0),
                lifetime: Mutex::new(lifetime),
                script: Mutex::new(VecDeque::new()),
                default: Mutex::new(Step::Ok),
            }),
        }
    }

    /// Queues steps for the next fetches.
    pub fn then(&self, steps: impl IntoIterator<Item = Step>) -> &Self {
        self.inner.script.lock().unwrap().extend(steps);
        self
    }

    /// What fetches do once the script is used up.
    pub fn otherwise(&self, step: Step) {
        *self.inner.default.lock().unwrap() = step;
    }

    pub fn set_lifetime(&self, lifetime: Duration) {
        *self.inner.lifetime.lock().unwrap() = lifetime;
    }

    /// How many fetches started.
    pub fn calls(&self) -> usize {
        self.inner.calls.load(Ordering::SeqCst)
    }
}

impl TokenSource for Scripted {
    fn fetch(&self) -> FetchFuture<'_> {
        self.inner.calls.fetch_add(1, Ordering::SeqCst);
        let step = self
            .inner
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| self.inner.default.lock().unwrap().clone());
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            match step {
                Step::Ok => {}
                Step::Delay(d) => tokio::time::sleep(d).await,
                Step::Fail(e) => return Err(e),
                Step::DelayThenFail(d, e) => {
                    tokio::time::sleep(d).await;
                    return Err(e);
                }
                Step::Hang => std::future::pending::<()>().await,
                Step::Panic => panic!("scripted panic in a token source"),
            }
            let n = inner.issued.fetch_add(1, Ordering::SeqCst) + 1;
            let lifetime = *inner.lifetime.lock().unwrap();
            Token::builder(format!("token-{n}"))
                .expires_in(lifetime)
                .build()
        })
    }
}

pub fn endpoint_error(status: u16, code: Option<&str>) -> Box<EndpointError> {
    Box::new(EndpointError::new(
        StatusCode::from_u16(status).unwrap(),
        HeaderMap::new(),
        code.map(OAuthError::new),
    ))
}

pub fn server_error(status: u16) -> Error {
    Error::Endpoint(endpoint_error(status, None))
}

pub fn invalid_grant() -> Error {
    Error::ReauthorizationRequired(endpoint_error(400, Some("invalid_grant")))
}

pub fn invalid_client() -> Error {
    Error::InvalidClient(endpoint_error(401, Some("invalid_client")))
}

pub fn rate_limited(secs: u64) -> Error {
    Error::RateLimited {
        retry_after: Duration::from_secs(secs),
        response: Some(endpoint_error(429, None)),
    }
}

/// Lets every spawned task run until all are blocked (paused time does not move).
pub async fn settle() {
    for _ in 0..8 {
        tokio::task::yield_now().await;
    }
}

/// Moves paused time forward and lets the runtime run what became due (its timers first):
/// refresh-ahead timers and background refreshes, as in production.
pub async fn pass(d: Duration) {
    tokio::time::advance(d).await;
    settle().await;
}
