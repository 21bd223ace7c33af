//! [`RetryMiddleware`]: retries driven by tokenward's classification, honouring
//! `Retry-After`.
//!
//! reqwest-retry's policies decide from the attempt count alone: they never see the response,
//! so they cannot wait for the `Retry-After` a server sent. This middleware sees it. What it
//! does with each outcome ([`tokenward::classify()`] decides, for responses):
//!
//! | outcome | retried? | wait before the next attempt |
//! |---|---|---|
//! | 429 with `Retry-After` (seconds or HTTP date) | yes | `Retry-After`, capped ([`max_retry_after`](RetryMiddleware::max_retry_after), 60 s) |
//! | 429 without (or with an unparseable) `Retry-After` | yes | backoff |
//! | 408, 500, 502, 503, 504 | yes | `Retry-After` if sent (capped), else backoff |
//! | connect error, timeout | yes | backoff |
//! | 401 (`invalid_token` included: that is [`AuthMiddleware`](crate::AuthMiddleware)'s job), 403, other 4xx | no | — |
//! | 501, 505 and other 5xx that will fail the same way | no | — |
//! | any other error (a middleware's, such as a token-endpoint failure; a broken body) | no | — |
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
//! *at that attempt* — after a 60 s `Retry-After` the token may well have been refreshed.
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
use std::time::{Duration, SystemTime};

use http::{Extensions, HeaderMap, StatusCode};
use reqwest::{Request, Response};
use reqwest_middleware::{Error, Middleware, Next, Result};
use tokenward::Action;
use tokenward::classify::{DEFAULT_MAX_ATTEMPTS, classify_at, retry_after};
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
    max_attempts: u32,
    backoff: Backoff,
    max_retry_after: Duration,
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
            .field("max_attempts", &self.max_attempts)
            .field("backoff", &self.backoff)
            .field("max_retry_after", &self.max_retry_after)
            .finish_non_exhaustive()
    }
}

impl RetryMiddleware {
    /// 4 attempts, backoff from 250 ms doubling to 10 s with full jitter, `Retry-After`
    /// capped at 60 s, waits on Tokio's timer.
    pub fn new() -> Self {
        RetryMiddleware {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            backoff: Backoff::default(),
            max_retry_after: Duration::from_secs(60),
            sleeper: Arc::new(TokioSleeper),
        }
    }

    /// Attempts in total, the first included (default 4; at least 1, which disables retries).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The backoff between attempts when the server gave no `Retry-After`.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The longest `Retry-After` honoured (default 60 s): a longer one is waited for this long.
    pub fn max_retry_after(mut self, cap: Duration) -> Self {
        self.max_retry_after = cap;
        self
    }

    /// Replaces how the middleware waits (default [`TokioSleeper`]).
    pub fn sleeper(mut self, sleeper: impl Sleeper) -> Self {
        self.sleeper = Arc::new(sleeper);
        self
    }

    /// How long to wait before retrying after `outcome`, the result of attempt
    /// `retries + 1` — or `None` if it is not to be retried. Does not look at the attempt
    /// limit. Backoff delays are drawn at random; `Retry-After` delays are exact.
    pub fn delay_for(&self, outcome: &Result<Response>, retries: u32) -> Option<Duration> {
        let sample = rand_sample();
        match outcome {
            Ok(response) => self.delay_for_response(
                response.status(),
                response.headers(),
                retries,
                sample,
                SystemTime::now(),
            ),
            Err(error) => is_retryable_error(error).then(|| self.backoff.delay(retries, sample)),
        }
    }

    /// The decision for a response, with the jitter `sample` and the wall clock passed in.
    pub(crate) fn delay_for_response(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        retries: u32,
        sample: f64,
        now: SystemTime,
    ) -> Option<Duration> {
        let action = classify_at(status, headers, None, now)?.action;
        if !is_retried(&action) {
            return None;
        }
        // 429 carries its parsed Retry-After in the action; a 5xx may carry one too.
        let told = match action {
            Action::RetryAfter { delay } => delay,
            _ => retry_after(headers, now),
        };
        Some(match told {
            Some(delay) => delay.min(self.max_retry_after),
            None => self.backoff.delay(retries, sample),
        })
    }
}

/// Actions a retry layer acts on. `RefreshAndRetryOnce` (`invalid_token`) is the auth
/// middleware's: it resends with a new token, which a retry of the same request cannot do.
pub(crate) fn is_retried(action: &Action) -> bool {
    matches!(action, Action::RetryAfter { .. } | Action::Backoff { .. })
}

/// Errors worth another attempt: the connection could not be made, or a timeout fired.
/// Middleware errors (such as a token-endpoint failure, already retried by the cache) and
/// every other transport error are not.
pub(crate) fn is_retryable_error(error: &Error) -> bool {
    match error {
        Error::Reqwest(e) => e.is_connect() || e.is_timeout(),
        Error::Middleware(_) => false,
    }
}

fn rand_sample() -> f64 {
    rand::random::<f64>()
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
        // The extensions as the caller made them: every attempt starts from a copy.
        let original = (self.max_attempts > 1).then(|| extensions.clone());
        let mut retries = 0u32;
        loop {
            let last = retries + 1 >= self.max_attempts;
            let replay = if last { None } else { req.try_clone() };
            let outcome = next.clone().run(req, extensions).await;
            if last {
                return outcome;
            }
            let Some(delay) = self.delay_for(&outcome, retries) else {
                return outcome;
            };
            let (Some(replay), Some(original)) = (replay, original.as_ref()) else {
                tracing::debug!(
                    "the request has a streaming body that cannot be replayed: not retried"
                );
                return outcome;
            };
            match &outcome {
                Ok(response) => tracing::warn!(
                    status = response.status().as_u16(),
                    url = %response.url(),
                    attempt = retries + 1,
                    max_attempts = self.max_attempts,
                    delay_ms = delay.as_millis() as u64,
                    "retryable response; retrying after the delay"
                ),
                Err(error) => tracing::warn!(
                    error = %error,
                    attempt = retries + 1,
                    max_attempts = self.max_attempts,
                    delay_ms = delay.as_millis() as u64,
                    "retryable transport error; retrying after the delay"
                ),
            }
            drop(outcome);
            self.sleeper.sleep(delay).await;
            *extensions = original.clone();
            req = replay;
            retries += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use http::header::{RETRY_AFTER, WWW_AUTHENTICATE};

    fn retry() -> RetryMiddleware {
        RetryMiddleware::new().backoff(Backoff::new(
            Duration::from_millis(100),
            Duration::from_secs(2),
        ))
    }

    /// Wed, 21 Oct 2015 07:28:00 GMT
    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480)
    }

    fn headers(pairs: &[(http::HeaderName, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| (name.clone(), HeaderValue::from_static(value)))
            .collect()
    }

    fn decide(status: u16, headers: &HeaderMap, retries: u32, sample: f64) -> Option<Duration> {
        retry().delay_for_response(
            StatusCode::from_u16(status).unwrap(),
            headers,
            retries,
            sample,
            now(),
        )
    }

    #[test]
    fn rate_limited_waits_retry_after_exactly() {
        let h = headers(&[(RETRY_AFTER, "7")]);
        for sample in [0.0, 0.5, 0.999] {
            assert_eq!(decide(429, &h, 0, sample), Some(Duration::from_secs(7)));
            assert_eq!(decide(429, &h, 3, sample), Some(Duration::from_secs(7)));
        }
        let date = headers(&[(RETRY_AFTER, "Wed, 21 Oct 2015 07:28:12 GMT")]);
        assert_eq!(decide(429, &date, 0, 0.3), Some(Duration::from_secs(12)));
        let zero = headers(&[(RETRY_AFTER, "0")]);
        assert_eq!(decide(429, &zero, 0, 0.3), Some(Duration::ZERO));
    }

    #[test]
    fn retry_after_is_capped() {
        let h = headers(&[(RETRY_AFTER, "3600")]);
        assert_eq!(decide(429, &h, 0, 0.5), Some(Duration::from_secs(60)));
        let short = retry().max_retry_after(Duration::from_secs(5));
        let d = short.delay_for_response(StatusCode::TOO_MANY_REQUESTS, &h, 0, 0.5, now());
        assert_eq!(d, Some(Duration::from_secs(5)));
        // An HTTP date a year ahead, too.
        let far = headers(&[(RETRY_AFTER, "Fri, 21 Oct 2016 07:28:00 GMT")]);
        assert_eq!(decide(429, &far, 0, 0.5), Some(Duration::from_secs(60)));
    }

    #[test]
    fn rate_limited_without_retry_after_backs_off() {
        for bad in [None, Some("soon"), Some("-1")] {
            let h = match bad {
                Some(v) => headers(&[(RETRY_AFTER, v)]),
                None => HeaderMap::new(),
            };
            assert_eq!(decide(429, &h, 0, 0.5), Some(Duration::from_millis(50)));
            assert_eq!(decide(429, &h, 2, 0.5), Some(Duration::from_millis(200)));
        }
    }

    #[test]
    fn server_errors_back_off_with_full_jitter() {
        let none = HeaderMap::new();
        for status in [408, 500, 502, 503, 504] {
            // Full jitter: anywhere in [0, min(cap, base * 2^retry)).
            assert_eq!(
                decide(status, &none, 0, 0.0),
                Some(Duration::ZERO),
                "{status}"
            );
            assert_eq!(
                decide(status, &none, 0, 0.5),
                Some(Duration::from_millis(50))
            );
            assert_eq!(
                decide(status, &none, 1, 0.5),
                Some(Duration::from_millis(100))
            );
            assert_eq!(
                decide(status, &none, 3, 0.5),
                Some(Duration::from_millis(400))
            );
            // The cap (2 s) bounds late retries.
            assert_eq!(decide(status, &none, 10, 0.5), Some(Duration::from_secs(1)));
            let almost = decide(status, &none, 10, 0.999_999).unwrap();
            assert!(almost < Duration::from_secs(2), "{almost:?}");
        }
    }

    #[test]
    fn server_errors_honour_retry_after_when_sent() {
        let h = headers(&[(RETRY_AFTER, "3")]);
        assert_eq!(decide(503, &h, 0, 0.1), Some(Duration::from_secs(3)));
        let long = headers(&[(RETRY_AFTER, "600")]);
        assert_eq!(decide(503, &long, 0, 0.1), Some(Duration::from_secs(60)));
    }

    #[test]
    fn never_retried() {
        let invalid_token = headers(&[(WWW_AUTHENTICATE, r#"Bearer error="invalid_token""#)]);
        let scope = headers(&[(
            WWW_AUTHENTICATE,
            r#"Bearer error="insufficient_scope", scope="jobs.write""#,
        )]);
        let none = HeaderMap::new();
        assert_eq!(decide(401, &invalid_token, 0, 0.5), None);
        assert_eq!(decide(401, &none, 0, 0.5), None);
        assert_eq!(decide(403, &scope, 0, 0.5), None);
        for status in [400, 403, 404, 405, 409, 410, 422, 501, 505] {
            assert_eq!(decide(status, &none, 0, 0.5), None, "{status}");
        }
        // Even with a Retry-After, a 4xx that is not 429 is not retried.
        let h = headers(&[(RETRY_AFTER, "1")]);
        assert_eq!(decide(400, &h, 0, 0.5), None);
    }

    #[test]
    fn success_and_redirects_are_not_retried() {
        let none = HeaderMap::new();
        for status in [200, 201, 204, 301, 304] {
            assert_eq!(decide(status, &none, 0, 0.5), None, "{status}");
        }
    }

    #[test]
    fn attempts_are_at_least_one() {
        assert_eq!(RetryMiddleware::new().max_attempts(0).max_attempts, 1);
        assert_eq!(
            RetryMiddleware::default().max_attempts,
            DEFAULT_MAX_ATTEMPTS
        );
    }
}
