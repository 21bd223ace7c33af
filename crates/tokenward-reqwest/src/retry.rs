//! [`RetryMiddleware`]: retries driven by tokenward's classification, honouring
//! `Retry-After`.
//!
//! reqwest-retry's policies decide from the attempt count alone: they never see the response,
//! so they cannot wait for the `Retry-After` a server sent. This middleware sees it. What it
//! does with each outcome ([`tokenward::classify()`] decides, for responses, and the core's
//! [`RetryRule`] turns that into a wait — the same rule as tokenward-tower's
//! `ClassifiedRetry`):
//!
//! | outcome | retried for | wait before the next attempt |
//! |---|---|---|
//! | 429 with `Retry-After` (seconds or HTTP date) up to [`max_retry_after`](RetryMiddleware::max_retry_after) (30 s) | any request: the server refused it before acting | exactly `Retry-After` |
//! | 429 with `Retry-After` above that cap | none: the 429 is returned at once (waiting less than the server asked only earns another 429; the caller sees the header) | — |
//! | 429 without (or with an unparseable) `Retry-After` | any request | backoff |
//! | 408, 500, 502, 503, 504 | requests safe to repeat¹ | `Retry-After` if sent (same cap), else backoff |
//! | connect error (`reqwest::Error::is_connect`): the request was never sent | any request | backoff |
//! | timeout (`is_timeout`): the request may have reached the server | requests safe to repeat¹ | backoff |
//! | 401 (`invalid_token` included: that is [`AuthMiddleware`](crate::AuthMiddleware)'s one resend, made for any method, as the server refused the request before acting), 403, other 4xx | none | — |
//! | 501, 505 and other 5xx that will fail the same way | none | — |
//! | any other error (a middleware's, such as a token-endpoint failure; a broken body) | none | — |
//!
//! ¹ An idempotent method (GET, HEAD, OPTIONS, TRACE, PUT, DELETE) or a request with an
//! `Idempotency-Key` header ([`IDEMPOTENCY_KEY`](tokenward::classify::IDEMPOTENCY_KEY)); any
//! request with [`retry_non_idempotent(true)`](RetryMiddleware::retry_non_idempotent). A POST
//! after a 502 or a timeout is returned as it is: nothing says whether the charge behind it was
//! made.
//!
//! Backoff is exponential with full jitter ([`tokenward::timing::Backoff`]: a uniform draw
//! below `min(cap, base × 2^retry)`, 250 ms doubling to 10 s by default). At most
//! [`max_attempts`](RetryMiddleware::max_attempts) attempts are made, the first included
//! (default [`DEFAULT_MAX_ATTEMPTS`] = 4); then the last response or error is returned
//! unchanged — errors are never wrapped, so downcasting works as without retries.
//!
//! A request whose body cannot be replayed (a streaming body) is sent once and its outcome
//! returned, whatever it is. (reqwest-retry refuses to send it at all.)
//!
//! Each attempt gets a fresh copy of the request's extensions as they were before the first
//! attempt; the caller sees what the last attempt left in them.
//!
//! # Order with `AuthMiddleware`
//!
//! Attach the retry middleware **first** (outermost), then [`AuthMiddleware`](crate::AuthMiddleware):
//! every attempt then goes through the auth middleware and carries the token that is current
//! *at that attempt* — after a 30 s `Retry-After` the token may well have been refreshed.
//! The other way round, every retry would resend the header read before the first attempt.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use reqwest_middleware::ClientBuilder;
//! use tokenward::{TokenCache, timing::Backoff};
//! use tokenward_reqwest::{AuthMiddleware, RetryMiddleware};
//! # use tokenward::{Token, grant::from_fn};
//!
//! # let cache = TokenCache::new(from_fn(|| async { Token::builder("t").build() }));
//! let client = ClientBuilder::new(reqwest::Client::new())
//!     .with(
//!         RetryMiddleware::new()
//!             .max_attempts(4)
//!             .backoff(Backoff::new(Duration::from_millis(100), Duration::from_secs(5)))
//!             .max_retry_after(Duration::from_secs(30)),
//!     )
//!     .with(AuthMiddleware::new(cache))
//!     .build();
//! # let _ = client;
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::Extensions;
use reqwest::{Request, Response};
use reqwest_middleware::{Error, Middleware, Next, Result};
use tokenward::TransportErrorKind;
#[cfg(doc)]
use tokenward::classify::DEFAULT_MAX_ATTEMPTS;
use tokenward::classify::{Attempt, Idempotency, RetryRule};
use tokenward::timing::Backoff;

/// Waits between attempts. [`TokioSleeper`] (`tokio::time::sleep`) unless replaced with
/// [`RetryMiddleware::sleeper`] — for tests, or for a runtime other than Tokio.
///
/// Any `Fn(Duration) -> impl Future<Output = ()>` that is `Send + Sync + 'static` is a
/// sleeper:
///
/// ```
/// use std::time::Duration;
/// use tokenward_reqwest::RetryMiddleware;
///
/// // Record the waits instead of waiting.
/// let waits = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
/// let log = waits.clone();
/// let retry = RetryMiddleware::new().sleeper(move |delay: Duration| {
///     log.lock().unwrap().push(delay);
///     std::future::ready(())
/// });
/// # let _ = retry;
/// ```
pub trait Sleeper: Send + Sync + 'static {
    /// A future that completes after `delay`.
    fn sleep(&self, delay: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>>;
}

impl<F, Fut> Sleeper for F
where
    F: Fn(Duration) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    fn sleep(&self, delay: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        Box::pin(self(delay))
    }
}

/// The default [`Sleeper`]: `tokio::time::sleep` (so paused Tokio time applies).
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioSleeper;

impl Sleeper for TokioSleeper {
    fn sleep(&self, delay: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        Box::pin(tokio::time::sleep(delay))
    }
}

/// A `reqwest_middleware::Middleware` that retries what tokenward classifies as retryable,
/// waiting `Retry-After` when the server sent one. See the [module docs](self).
///
/// Cheap to clone.
#[derive(Clone)]
pub struct RetryMiddleware {
    rule: RetryRule,
    sleeper: Arc<dyn Sleeper>,
}

impl Default for RetryMiddleware {
    fn default() -> Self {
        RetryMiddleware::new()
    }
}

impl fmt::Debug for RetryMiddleware {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryMiddleware")
            .field("max_attempts", &self.rule.max_attempts)
            .field("backoff", &self.rule.backoff)
            .field("max_retry_after", &self.rule.max_retry_after)
            .field("retry_non_idempotent", &self.rule.retry_non_idempotent)
            .finish_non_exhaustive()
    }
}

impl RetryMiddleware {
    /// 4 attempts, backoff from 250 ms doubling to 10 s with full jitter, `Retry-After`
    /// honoured up to 30 s ([`RetryRule::default`]), waits on Tokio's timer.
    pub fn new() -> Self {
        RetryMiddleware {
            rule: RetryRule::default(),
            sleeper: Arc::new(TokioSleeper),
        }
    }

    /// Attempts in total, the first included (default 4; at least 1, which disables retries).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.rule = self.rule.with_max_attempts(attempts);
        self
    }

    /// The backoff between attempts when the server gave no `Retry-After`.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.rule = self.rule.with_backoff(backoff);
        self
    }

    /// The longest `Retry-After` waited for (default 30 s). A response asking for longer is
    /// returned at once, not retried.
    pub fn max_retry_after(mut self, cap: Duration) -> Self {
        self.rule = self.rule.with_max_retry_after(cap);
        self
    }

    /// Whether requests that are not idempotent (a POST, a PATCH without an
    /// `Idempotency-Key`) are retried after an outcome that may have acted on them: 408, 5xx,
    /// a timeout. Default `false`: they are retried only after a 429 or a connect error. Turn
    /// it on only for a server known to deduplicate, or requests whose second effect is
    /// harmless.
    pub fn retry_non_idempotent(mut self, retry: bool) -> Self {
        self.rule = self.rule.with_retry_non_idempotent(retry);
        self
    }

    /// Replaces the whole [`RetryRule`] (attempts, backoff, `Retry-After` cap, the opt-in for
    /// requests that are not idempotent): share one rule between this middleware and other
    /// clients.
    pub fn rule(mut self, rule: RetryRule) -> Self {
        self.rule = rule;
        self
    }

    /// Replaces how the middleware waits (default [`TokioSleeper`]).
    pub fn sleeper(mut self, sleeper: impl Sleeper) -> Self {
        self.sleeper = Arc::new(sleeper);
        self
    }

    /// How long to wait before retrying `request` (see [`Idempotency::of`]) after `outcome`,
    /// the result of attempt `retries + 1` — or `None` if it is not to be retried. Does not
    /// look at the attempt limit. Backoff delays are drawn at random; `Retry-After` delays are
    /// exact.
    pub fn delay_for(
        &self,
        request: Idempotency,
        outcome: &Result<Response>,
        retries: u32,
    ) -> Option<Duration> {
        self.rule.next_delay(request, attempt_of(outcome), retries)
    }
}

/// How an attempt ended, for the rule.
fn attempt_of(outcome: &Result<Response>) -> Attempt<'_> {
    match outcome {
        Ok(response) => Attempt::Response(response.status(), response.headers()),
        Err(error) => Attempt::Failed(transport_error(error)),
    }
}

/// The errors worth another attempt, by kind: the connection could not be made (never sent),
/// or a timeout fired (it may have reached the server). Middleware errors (such as a
/// token-endpoint failure, already retried by the cache) and every other transport error are
/// not.
pub(crate) fn transport_error(error: &Error) -> Option<TransportErrorKind> {
    match error {
        // A connect timeout is both: it was never sent.
        Error::Reqwest(e) if e.is_connect() => Some(TransportErrorKind::Connect),
        Error::Reqwest(e) if e.is_timeout() => Some(TransportErrorKind::Timeout),
        Error::Reqwest(_) | Error::Middleware(_) => None,
    }
}

#[async_trait::async_trait]
impl Middleware for RetryMiddleware {
    async fn handle(
        &self,
        req: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> Result<Response> {
        let mut req = req;
        let idempotency = Idempotency::of(req.method(), req.headers());
        // The extensions as the caller made them: every attempt starts from a copy.
        let original = (!self.rule.is_last(1)).then(|| extensions.clone());
        let mut retries = 0u32;
        loop {
            let last = self.rule.is_last(retries + 1);
            let replay = if last { None } else { req.try_clone() };
            let outcome = next.clone().run(req, extensions).await;
            if last {
                return outcome;
            }
            let Some(delay) = self.delay_for(idempotency, &outcome, retries) else {
                return outcome;
            };
            let (Some(replay), Some(original)) = (replay, original.as_ref()) else {
                tracing::debug!(
                    "the request has a streaming body that cannot be replayed: not retried"
                );
                return outcome;
            };
            tokenward::metrics::record_retry("reqwest", &attempt_of(&outcome));
            match outcome {
                Ok(response) => tracing::warn!(
                    status = response.status().as_u16(),
                    url = %crate::loggable_url(response.url()),
                    attempt = retries + 1,
                    max_attempts = self.rule.max_attempts,
                    delay_ms = delay.as_millis() as u64,
                    "retryable response; retrying after the delay"
                ),
                Err(error) => {
                    // reqwest's message quotes the whole URL: log it without, and the URL
                    // without its credentials and query.
                    let url = match &error {
                        Error::Reqwest(e) => e.url().map(crate::loggable_url),
                        Error::Middleware(_) => None,
                    };
                    let error = match error {
                        Error::Reqwest(e) => Error::Reqwest(e.without_url()),
                        other => other,
                    };
                    tracing::warn!(
                        error = %tokenward::error::chain(&error),
                        url = url.as_ref().map(tracing::field::display),
                        attempt = retries + 1,
                        max_attempts = self.rule.max_attempts,
                        delay_ms = delay.as_millis() as u64,
                        "retryable transport error; retrying after the delay"
                    );
                }
            }
            self.sleeper.sleep(delay).await;
            *extensions = original.clone();
            req = replay;
            retries += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    //! The decisions themselves are the core's `RetryRule` (tested there); these check that
    //! the middleware's settings reach it.
    use super::*;
    use std::time::SystemTime;

    use http::header::RETRY_AFTER;
    use http::{HeaderMap, HeaderValue, StatusCode};

    /// Wed, 21 Oct 2015 07:28:00 GMT
    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480)
    }

    fn retry_after(value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn the_settings_reach_the_rule() {
        let decide = |retry: &RetryMiddleware, status: u16, headers: &HeaderMap, retries| {
            let status = StatusCode::from_u16(status).unwrap();
            retry.rule.after_response(
                Idempotency::Idempotent,
                status,
                headers,
                retries,
                0.5,
                now(),
            )
        };
        let default = RetryMiddleware::new();
        assert_eq!(default.rule, RetryRule::default());
        assert_eq!(
            decide(&default, 429, &retry_after("30"), 0),
            Some(Duration::from_secs(30))
        );
        assert_eq!(decide(&default, 429, &retry_after("31"), 0), None);

        let tuned = RetryMiddleware::new()
            .max_attempts(0)
            .backoff(Backoff::new(
                Duration::from_millis(100),
                Duration::from_secs(2),
            ))
            .max_retry_after(Duration::from_secs(5));
        assert_eq!(tuned.rule.max_attempts, 1, "at least one attempt");
        assert_eq!(
            decide(&tuned, 429, &retry_after("5"), 0),
            Some(Duration::from_secs(5))
        );
        assert_eq!(decide(&tuned, 429, &retry_after("6"), 0), None);
        assert_eq!(
            decide(&tuned, 503, &HeaderMap::new(), 2),
            Some(Duration::from_millis(200))
        );
        assert_eq!(decide(&tuned, 403, &HeaderMap::new(), 0), None);

        assert!(!default.rule.retry_non_idempotent);
        assert!(
            RetryMiddleware::new()
                .retry_non_idempotent(true)
                .rule
                .retry_non_idempotent
        );

        let mut shared = RetryRule::default();
        shared.max_attempts = 2;
        assert_eq!(RetryMiddleware::new().rule(shared).rule, shared);
        assert_eq!(
            RetryMiddleware::default().rule.max_attempts,
            tokenward::classify::DEFAULT_MAX_ATTEMPTS
        );
    }
}
