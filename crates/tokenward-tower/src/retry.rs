//! [`ClassifiedRetry`]: a [`tower::retry::Policy`] driven by tokenward's classification.
//!
//! Each response goes through [`tokenward::classify()`] (status and headers) and the policy acts
//! on the [`Action`] as the core's [`RetryRule`] says, for the request's [`Idempotency`] (its
//! method and headers) — the same rule as tokenward-reqwest's `RetryMiddleware`:
//!
//! | outcome | retried for | wait |
//! |---|---|---|
//! | 2xx, 3xx | — (done) | — |
//! | 429 with `Retry-After` ≤ the cap (30 s by default) | any request: the server refused it before acting | `Retry-After` |
//! | 429 with `Retry-After` above the cap | none: the 429 is returned at once (waiting less than the server asked would only earn another 429; the caller sees the header) | — |
//! | 429 without `Retry-After` | any request | exponential backoff with full jitter |
//! | 408, 500, 502, 503, 504 (`temporarily_unavailable`, `server_error`) | requests safe to repeat¹ | backoff (a `Retry-After` on them is honoured like a 429's) |
//! | 401, 403, other 4xx, 501, 505, … | none: never retried by the policy ([`Auth`](crate::Auth) owns the one refresh-and-resend after a 401 `invalid_token`, for any method: the server refused the request before acting; 403 never helps) | — |
//! | `Err` that [`retry_errors_if`](ClassifiedRetry::retry_errors_if) calls [`Connect`](TransportErrorKind::Connect) (never sent) | any request | backoff |
//! | `Err` that it calls another [`TransportErrorKind`] (`Timeout`, `Io`, …: it may have reached the server) | requests safe to repeat¹ | backoff |
//! | any other `Err` (all of them by default) | none | — |
//!
//! ¹ An idempotent method (GET, HEAD, OPTIONS, TRACE, PUT, DELETE) or a request with an
//! `Idempotency-Key` header ([`IDEMPOTENCY_KEY`](tokenward::classify::IDEMPOTENCY_KEY)); any
//! request with [`retry_non_idempotent(true)`](ClassifiedRetry::retry_non_idempotent). A POST
//! after a 502 is returned as it is: the gateway does not say whether the charge behind it was
//! made.
//!
//! At most [`max_attempts`](ClassifiedRetry::max_attempts) attempts in all (4 by default, the
//! first included). With a [`budget`](ClassifiedRetry::budget) (`TpsBudget`) every request
//! deposits once and every retry withdraws: a fleet under stress stops multiplying its load.
//!
//! [`clone_request`](tower::retry::Policy::clone_request) copies the request through a
//! [`Replay`] strategy ([`CloneableBodies`] by default): a request whose body cannot be copied
//! (a stream) is never retried, and never resent without its body.
//!
//! tower's `Retry` clones the policy for every request, so the attempt count is per request;
//! the budget is shared through an `Arc`. Delays are `tokio::time::sleep`s: testable with
//! paused time.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use tokenward_tower::retry::ClassifiedRetry;
//! use tower::retry::budget::TpsBudget;
//!
//! let policy = ClassifiedRetry::new()
//!     .max_attempts(3)
//!     .max_retry_after(Duration::from_secs(10))
//!     // At most 10 % extra load from retries, plus 5 retries a second to get going.
//!     .budget(Arc::new(TpsBudget::new(Duration::from_secs(10), 5, 0.1)));
//! let layer = tower::retry::RetryLayer::new(policy);
//! # let _ = layer;
//! ```
//!
//! See the [crate docs](crate#composing-with-retry-and-timeout) for where the retry layer goes
//! relative to [`AuthLayer`](crate::AuthLayer) and `TimeoutLayer`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use tokenward::TransportErrorKind;
#[cfg(doc)]
use tokenward::classify::Action;
use tokenward::classify::{Attempt, Idempotency, RetryRule};
use tokenward::timing::Backoff;
use tower::retry::Policy;
use tower::retry::budget::Budget;

use crate::replay::{CloneableBodies, Replay, try_clone_request};

/// Decides whether an `Err` from the service is retried, and what kind of failure it was.
/// Implemented by [`NoErrorRetry`] and by closures `Fn(&E) -> T` where `T` is
/// `Option<TransportErrorKind>` (or a plain [`TransportErrorKind`]: every error is retried).
///
/// The policy cannot tell from a generic error whether the request reached the server, so the
/// answer says it: [`TransportErrorKind::Connect`] (the connection was never made) is retried
/// for any request; every other kind only for requests safe to repeat (see the
/// [module docs](self)).
pub trait RetryError<E> {
    /// The kind of failure `error` is, if it is worth another attempt; `None` ends the
    /// retries and `error` is returned.
    fn classify(&self, error: &E) -> Option<TransportErrorKind>;
}

/// Errors are not retried: the policy cannot tell whether the request reached the server.
/// The default.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoErrorRetry;

impl<E> RetryError<E> for NoErrorRetry {
    #[inline]
    fn classify(&self, _error: &E) -> Option<TransportErrorKind> {
        None
    }
}

impl<E, F, T> RetryError<E> for F
where
    F: Fn(&E) -> T,
    T: Into<Option<TransportErrorKind>>,
{
    #[inline]
    fn classify(&self, error: &E) -> Option<TransportErrorKind> {
        self(error).into()
    }
}

/// A [`tower::retry::Policy`] for HTTP that retries what tokenward's classification says is
/// worth retrying: 429 after `Retry-After`; 408 and 5xx with full-jitter backoff, for requests
/// that are safe to repeat. See the [module docs](self).
#[derive(Clone)]
pub struct ClassifiedRetry<R = CloneableBodies, F = NoErrorRetry> {
    /// Attempts made so far for this request (the policy is cloned per request).
    attempts: u32,
    rule: RetryRule,
    budget: Option<Arc<dyn Budget + Send + Sync>>,
    replay: R,
    on_error: F,
}

impl ClassifiedRetry {
    /// At most 4 attempts, backoff from 250 ms doubling to 10 s with full jitter,
    /// `Retry-After` honoured up to 30 s, no budget.
    pub fn new() -> Self {
        ClassifiedRetry {
            attempts: 0,
            rule: RetryRule::default(),
            budget: None,
            replay: CloneableBodies,
            on_error: NoErrorRetry,
        }
    }
}

impl Default for ClassifiedRetry {
    fn default() -> Self {
        ClassifiedRetry::new()
    }
}

impl<R, F> ClassifiedRetry<R, F> {
    /// Attempts in all, the first included (at least 1; 1 never retries). Default 4.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.rule = self.rule.with_max_attempts(attempts);
        self
    }

    /// The backoff between attempts for 408, 5xx and a 429 without `Retry-After`: retry `n`
    /// (0-based) waits a uniform draw below `min(cap, base × 2ⁿ)`.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.rule = self.rule.with_backoff(backoff);
        self
    }

    /// The longest `Retry-After` the policy waits for (default 30 s). A longer one ends the
    /// retries and the response is returned.
    pub fn max_retry_after(mut self, cap: Duration) -> Self {
        self.rule = self.rule.with_max_retry_after(cap);
        self
    }

    /// Whether requests that are not idempotent (a POST, a PATCH without an
    /// `Idempotency-Key`) are retried after an outcome that may have acted on them: 408, 5xx,
    /// an error classified other than [`Connect`](TransportErrorKind::Connect). Default
    /// `false`: they are retried only after a 429 or a connect error. Turn it on only for a
    /// server known to deduplicate, or requests whose second effect is harmless.
    pub fn retry_non_idempotent(mut self, retry: bool) -> Self {
        self.rule = self.rule.with_retry_non_idempotent(retry);
        self
    }

    /// Replaces the whole [`RetryRule`] (attempts, backoff, `Retry-After` cap, the opt-in for
    /// requests that are not idempotent): share one rule between this policy and other
    /// clients.
    pub fn rule(mut self, rule: RetryRule) -> Self {
        self.rule = rule;
        self
    }

    /// A retry budget shared by every request through this policy, e.g.
    /// [`TpsBudget`](tower::retry::budget::TpsBudget): each request deposits once, each retry
    /// withdraws, and an empty budget ends the retries.
    pub fn budget<Bu>(mut self, budget: Arc<Bu>) -> Self
    where
        Bu: Budget + Send + Sync + 'static,
    {
        let budget: Arc<dyn Budget + Send + Sync> = budget;
        self.budget = Some(budget);
        self
    }

    /// Which requests can be retried: see [`replay`](crate::replay).
    pub fn replay<R2>(self, replay: R2) -> ClassifiedRetry<R2, F> {
        ClassifiedRetry {
            attempts: self.attempts,
            rule: self.rule,
            budget: self.budget,
            replay,
            on_error: self.on_error,
        }
    }

    /// Retry (with backoff) the service's errors that `classify` gives a
    /// [`TransportErrorKind`] for: [`Connect`](TransportErrorKind::Connect) errors (the request
    /// was never sent) for any request, other kinds (a per-attempt timeout's `Elapsed`, a
    /// connection broken mid-exchange: the request may have reached the server) only for
    /// requests safe to repeat, or any request with
    /// [`retry_non_idempotent`](Self::retry_non_idempotent). Errors it gives `None` for are
    /// returned at once.
    ///
    /// With hyper-util's client under a per-attempt `tower::timeout`:
    ///
    /// ```
    /// use hyper_util::client::legacy::Error as ClientError;
    /// use tokenward::TransportErrorKind;
    /// use tokenward_tower::{BoxError, retry::ClassifiedRetry};
    ///
    /// let policy = ClassifiedRetry::new().retry_errors_if(|e: &BoxError| {
    ///     if e.downcast_ref::<ClientError>().is_some_and(ClientError::is_connect) {
    ///         Some(TransportErrorKind::Connect)
    ///     } else if e.is::<tower::timeout::error::Elapsed>() {
    ///         Some(TransportErrorKind::Timeout)
    ///     } else {
    ///         None
    ///     }
    /// });
    /// # let _ = policy;
    /// ```
    pub fn retry_errors_if<F2>(self, classify: F2) -> ClassifiedRetry<R, F2> {
        ClassifiedRetry {
            attempts: self.attempts,
            rule: self.rule,
            budget: self.budget,
            replay: self.replay,
            on_error: classify,
        }
    }

    /// The retries made so far for this request: attempts minus the first.
    fn retries(&self) -> u32 {
        self.attempts.saturating_sub(1)
    }
}

impl<B, ResB, E, R, F> Policy<Request<B>, Response<ResB>, E> for ClassifiedRetry<R, F>
where
    R: Replay<B>,
    F: RetryError<E>,
{
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        request: &mut Request<B>,
        result: &mut Result<Response<ResB>, E>,
    ) -> Option<Self::Future> {
        self.attempts = self.attempts.saturating_add(1);
        if self.attempts == 1
            && let Some(budget) = &self.budget
        {
            budget.deposit();
        }
        // tower hands back the copy kept for the next attempt: the same method and headers.
        let idempotency = Idempotency::of(request.method(), request.headers());
        let attempt = match result {
            Ok(response) => Attempt::Response(response.status(), response.headers()),
            Err(error) => Attempt::Failed(self.on_error.classify(error)),
        };
        let delay = self.rule.next_delay(idempotency, attempt, self.retries())?;
        if self.rule.is_last(self.attempts) {
            tracing::debug!(attempts = self.attempts, "retries exhausted");
            return None;
        }
        if let Some(budget) = &self.budget
            && !budget.withdraw()
        {
            tracing::debug!("retry budget exhausted: not retrying");
            return None;
        }
        tracing::debug!(
            attempt = self.attempts,
            delay_ms = delay.as_millis() as u64,
            reason = attempt.reason(),
            "retrying after a classified failure"
        );
        tokenward::metrics::record_retry("tower", &attempt);
        Some(tokio::time::sleep(delay))
    }

    fn clone_request(&mut self, request: &Request<B>) -> Option<Request<B>> {
        try_clone_request(&self.replay, request)
    }
}

impl<R: fmt::Debug, F> fmt::Debug for ClassifiedRetry<R, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClassifiedRetry")
            .field("attempts", &self.attempts)
            .field("max_attempts", &self.rule.max_attempts)
            .field("backoff", &self.rule.backoff)
            .field("max_retry_after", &self.rule.max_retry_after)
            .field("retry_non_idempotent", &self.rule.retry_non_idempotent)
            .field("budget", &self.budget.is_some())
            .field("replay", &self.replay)
            .finish_non_exhaustive()
    }
}
