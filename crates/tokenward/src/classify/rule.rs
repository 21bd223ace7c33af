//! [`RetryRule`]: whether a request is sent again after a failed attempt, and after how long.
//!
//! The integrations retry requests with the same rule: tokenward-tower's `ClassifiedRetry`
//! (a `tower::retry::Policy`) and tokenward-reqwest's `RetryMiddleware` both hold a
//! `RetryRule` and ask it, after each attempt, whether and when to try again. The rule
//! turns [`classify`](super::classify)'s [`Action`] into a wait, and looks at the request
//! ([`Idempotency::of`] its method and headers) for outcomes that may have acted on it:
//!
//! | outcome | retried for | wait before the next attempt |
//! |---|---|---|
//! | 429 with `Retry-After` (seconds or HTTP date) up to [`max_retry_after`](RetryRule::max_retry_after) | any request: the server refused it before acting | exactly `Retry-After` |
//! | 429 with `Retry-After` above the cap | none: the 429 is final (waiting less than the server asked only earns another 429, and the caller sees the header) | — |
//! | 429 without a usable `Retry-After` | any request | backoff |
//! | 408, 500, 502, 503, 504 | requests safe to repeat¹ | `Retry-After` if sent (same cap), else backoff |
//! | 401 `invalid_token` | none by the retry layer: it is the auth layer's one refresh-and-resend, which is made for any request (the server refused it before acting) | — |
//! | other 401, 403, other 4xx, 501, 505, … | none: final | — |
//! | a connect error ([`TransportErrorKind::Connect`]): the request was never sent | any request | backoff |
//! | another transport error the integration deems retryable (a timeout, a broken connection): the request may have reached the server | requests safe to repeat¹ | backoff |
//!
//! ¹ Safe to repeat ([`Idempotency::Idempotent`]): an idempotent method (RFC 9110 §9.2.2:
//! GET, HEAD, OPTIONS, TRACE, PUT, DELETE), or a request of any method that carries an
//! [`Idempotency-Key`](IDEMPOTENCY_KEY) header (the server recognises the copy). Any other
//! request — a POST, a PATCH — that may have reached the server is not sent again: a 502
//! from a gateway does not say whether the charge behind it was made. Set
//! [`retry_non_idempotent`](RetryRule::retry_non_idempotent) to retry those too.
//!
//! Backoff is exponential with full jitter ([`Backoff`]): retry `n` (0-based) waits a uniform
//! draw below `min(cap, base × 2ⁿ)`. At most [`max_attempts`](RetryRule::max_attempts)
//! attempts are made, the first included.
//!
//! # Example
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use http::{HeaderMap, HeaderValue, Method, StatusCode, header::RETRY_AFTER};
//! use tokenward::TransportErrorKind;
//! use tokenward::classify::{Idempotency, RetryRule};
//!
//! let rule = RetryRule::default();
//! let now = SystemTime::now();
//! let get = Idempotency::of(&Method::GET, &HeaderMap::new());
//! let post = Idempotency::of(&Method::POST, &HeaderMap::new());
//! let mut headers = HeaderMap::new();
//! headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
//! // After the first attempt (0 retries so far), a 429 waits exactly its Retry-After,
//! // whatever the method.
//! assert_eq!(
//!     rule.after_response(post, StatusCode::TOO_MANY_REQUESTS, &headers, 0, 0.5, now),
//!     Some(Duration::from_secs(7)),
//! );
//! // A 503 without one backs off: half of the first ceiling (250 ms) for a sample of 0.5...
//! let unavailable = StatusCode::SERVICE_UNAVAILABLE;
//! assert_eq!(
//!     rule.after_response(get, unavailable, &HeaderMap::new(), 0, 0.5, now),
//!     Some(Duration::from_millis(125)),
//! );
//! // ... for a GET; a POST may have been acted on, so its 503 is final.
//! assert_eq!(rule.after_response(post, unavailable, &HeaderMap::new(), 0, 0.5, now), None);
//! // A POST that was never sent (the connection failed) is retried.
//! assert!(rule.after_error(post, TransportErrorKind::Connect, 0, 0.5).is_some());
//! assert_eq!(rule.after_error(post, TransportErrorKind::Timeout, 0, 0.5), None);
//! // 403 is final; so is anything after the last attempt.
//! assert_eq!(rule.after_response(get, StatusCode::FORBIDDEN, &headers, 0, 0.5, now), None);
//! assert!(rule.is_last(4));
//! ```

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, Method, StatusCode};

use super::{Action, DEFAULT_MAX_ATTEMPTS, classify_at, retry_after};
use crate::error::TransportErrorKind;
use crate::timing::Backoff;

/// The `Idempotency-Key` request header (draft-ietf-httpapi-idempotency-key-header): a
/// request that carries it may be retried whatever its method.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// Whether a request may be sent twice with the effect of once, as far as its method and
/// headers tell. See the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idempotency {
    /// An idempotent method (RFC 9110 §9.2.2: GET, HEAD, OPTIONS, TRACE, PUT, DELETE), or a
    /// request of any method with an [`Idempotency-Key`](IDEMPOTENCY_KEY) header.
    Idempotent,
    /// Any other request (POST, PATCH, CONNECT, an extension method): a second copy may act
    /// a second time.
    NotIdempotent,
}

impl Idempotency {
    /// The idempotency of a request with `method` and `headers`. Methods are compared as
    /// RFC 9110 says: case-sensitively (`get` is an extension method, not GET).
    pub fn of(method: &Method, headers: &HeaderMap) -> Idempotency {
        let by_method = matches!(
            method.as_str(),
            "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
        );
        if by_method || headers.contains_key(IDEMPOTENCY_KEY) {
            Idempotency::Idempotent
        } else {
            Idempotency::NotIdempotent
        }
    }
}

/// How an attempt ended, for [`RetryRule::next_delay`].
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Attempt<'a> {
    /// A response with this status and these headers.
    Response(StatusCode, &'a HeaderMap),
    /// No response: a transport failure of this kind, or `None` for a failure the
    /// integration does not retry.
    Failed(Option<TransportErrorKind>),
}

impl Attempt<'_> {
    /// Why a retry after this attempt is made, as the `reason` label of
    /// [`metrics::RETRIES`](crate::metrics::RETRIES): `rate_limited` (429), `timeout` (408, or
    /// a transport timeout), `connect`, `transport` or `server_error` (5xx and the rest).
    pub fn reason(&self) -> &'static str {
        match self {
            Attempt::Response(StatusCode::TOO_MANY_REQUESTS, _) => "rate_limited",
            Attempt::Response(StatusCode::REQUEST_TIMEOUT, _) => "timeout",
            Attempt::Response(..) => "server_error",
            Attempt::Failed(Some(TransportErrorKind::Connect)) => "connect",
            Attempt::Failed(Some(TransportErrorKind::Timeout)) => "timeout",
            Attempt::Failed(_) => "transport",
        }
    }
}

/// When and after how long a request is retried. See the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryRule {
    /// Attempts in all, the first included (at least 1: 1 never retries). Default
    /// [`DEFAULT_MAX_ATTEMPTS`] (4).
    pub max_attempts: u32,
    /// The wait between attempts when the server gave no `Retry-After`. Default 250 ms
    /// doubling to 10 s, full jitter.
    pub backoff: Backoff,
    /// The longest `Retry-After` waited for; a response asking for longer is final. Default
    /// [`RetryRule::DEFAULT_MAX_RETRY_AFTER`] (30 s).
    pub max_retry_after: Duration,
    /// Whether requests that are not [idempotent](Idempotency) are retried like idempotent
    /// ones after an outcome that may have acted on them (408, 5xx, a timeout). Default
    /// `false`: only after a 429 or a connect error. Turn it on only when the server is known
    /// to deduplicate, or a second effect is harmless.
    pub retry_non_idempotent: bool,
}

impl Default for RetryRule {
    fn default() -> Self {
        RetryRule {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            backoff: Backoff::default(),
            max_retry_after: RetryRule::DEFAULT_MAX_RETRY_AFTER,
            retry_non_idempotent: false,
        }
    }
}

impl RetryRule {
    /// The default cap on a `Retry-After` that is waited for: 30 s.
    pub const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

    /// With `attempts` attempts in all, the first included (at least 1; 1 never retries).
    #[must_use]
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// With `backoff` between attempts when the server gave no `Retry-After`.
    #[must_use]
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// With `cap` as the longest `Retry-After` waited for.
    #[must_use]
    pub fn with_max_retry_after(mut self, cap: Duration) -> Self {
        self.max_retry_after = cap;
        self
    }

    /// With requests that are not idempotent retried (`true`) or not (`false`, the default)
    /// after an outcome that may have acted on them. See
    /// [`retry_non_idempotent`](Self::retry_non_idempotent).
    #[must_use]
    pub fn with_retry_non_idempotent(mut self, retry: bool) -> Self {
        self.retry_non_idempotent = retry;
        self
    }

    /// Whether attempt `attempt` (1-based) is the last one allowed.
    #[inline]
    pub fn is_last(&self, attempt: u32) -> bool {
        attempt >= self.max_attempts.max(1)
    }

    /// The wait before the next attempt of `request` after a response, or `None` if the
    /// response is final. `retries` is how many retries were made before this response (0
    /// after the first attempt), `sample` a uniform draw in `[0, 1)` for the jitter, `now`
    /// the wall clock an HTTP-date `Retry-After` is read against. Does not look at the attempt
    /// limit: see [`is_last`](Self::is_last).
    pub fn after_response(
        &self,
        request: Idempotency,
        status: StatusCode,
        headers: &HeaderMap,
        retries: u32,
        sample: f64,
        now: SystemTime,
    ) -> Option<Duration> {
        let action = classify_at(status, headers, None, now)?.action;
        // RefreshAndRetryOnce is the auth layer's (a retry of the same request cannot carry a
        // new token); the rest never helps.
        if !action.retries_same_request() {
            return None;
        }
        let told = match action {
            // A 429: the server refused the request before acting on it; any request may be
            // sent again. It carries its parsed Retry-After in the action.
            Action::RetryAfter { delay } => delay,
            // 408 and 5xx: the request may have been acted on. They may carry a Retry-After.
            _ if self.may_repeat(request) => retry_after(headers, now),
            _ => {
                tracing::debug!(
                    status = status.as_u16(),
                    "not retried: the request is not idempotent and may have been acted on"
                );
                return None;
            }
        };
        match told {
            Some(delay) => (delay <= self.max_retry_after).then_some(delay),
            None => Some(self.backoff.delay(retries, sample)),
        }
    }

    /// The wait before the next attempt of `request` after a transport error the integration
    /// deems worth retrying (a connection refused, a timeout), or `None` if it is final: a
    /// [`Connect`](TransportErrorKind::Connect) error (the request was never sent) backs off
    /// for any request, any other kind (it may have reached the server) only for a request
    /// safe to repeat. `retries` and `sample` as for [`after_response`](Self::after_response).
    pub fn after_error(
        &self,
        request: Idempotency,
        error: TransportErrorKind,
        retries: u32,
        sample: f64,
    ) -> Option<Duration> {
        let never_sent = error == TransportErrorKind::Connect;
        if !never_sent && !self.may_repeat(request) {
            tracing::debug!(
                error = %error,
                "not retried: the request is not idempotent and may have reached the server"
            );
            return None;
        }
        Some(self.backoff.delay(retries, sample))
    }

    /// The wait before the next attempt after `attempt`, or `None` if it is final: what
    /// both integrations call after each attempt. Draws the backoff's jitter at random and
    /// reads an HTTP-date `Retry-After` against the system clock; see
    /// [`after_response`](Self::after_response) and [`after_error`](Self::after_error) for
    /// the same with both given. Does not look at the attempt limit.
    pub fn next_delay(
        &self,
        request: Idempotency,
        attempt: Attempt<'_>,
        retries: u32,
    ) -> Option<Duration> {
        let sample = rand::random::<f64>();
        match attempt {
            Attempt::Response(status, headers) => {
                self.after_response(request, status, headers, retries, sample, SystemTime::now())
            }
            Attempt::Failed(kind) => {
                kind.and_then(|kind| self.after_error(request, kind, retries, sample))
            }
        }
    }

    /// Whether `request` may be sent again after an outcome that may have acted on it.
    fn may_repeat(&self, request: Idempotency) -> bool {
        request == Idempotency::Idempotent || self.retry_non_idempotent
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use http::header::{RETRY_AFTER, WWW_AUTHENTICATE};

    fn rule() -> RetryRule {
        RetryRule {
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(2)),
            ..RetryRule::default()
        }
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

    /// The decision for an idempotent request (the method rule is tested on its own below).
    fn decide(status: u16, headers: &HeaderMap, retries: u32, sample: f64) -> Option<Duration> {
        rule().after_response(
            Idempotency::Idempotent,
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
    fn a_retry_after_beyond_the_cap_is_final() {
        let at_cap = headers(&[(RETRY_AFTER, "30")]);
        assert_eq!(decide(429, &at_cap, 0, 0.5), Some(Duration::from_secs(30)));
        let h = headers(&[(RETRY_AFTER, "31")]);
        assert_eq!(decide(429, &h, 0, 0.5), None);
        assert_eq!(decide(503, &h, 0, 0.5), None);
        // An HTTP date a year ahead, too.
        let far = headers(&[(RETRY_AFTER, "Fri, 21 Oct 2016 07:28:00 GMT")]);
        assert_eq!(decide(429, &far, 0, 0.5), None);
        // A larger cap waits for it.
        let patient = RetryRule {
            max_retry_after: Duration::from_secs(60),
            ..rule()
        };
        let d = patient.after_response(
            Idempotency::Idempotent,
            StatusCode::TOO_MANY_REQUESTS,
            &h,
            0,
            0.5,
            now(),
        );
        assert_eq!(d, Some(Duration::from_secs(31)));
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
            assert_eq!(decide(status, &none, 0, 0.0), Some(Duration::ZERO));
            assert_eq!(
                decide(status, &none, 0, 0.5),
                Some(Duration::from_millis(50))
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
        let h = headers(&[(RETRY_AFTER, "3")]);
        assert_eq!(decide(503, &h, 0, 0.1), Some(Duration::from_secs(3)));
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
        for status in [
            200, 201, 204, 301, 304, 400, 403, 404, 405, 409, 410, 422, 501, 505,
        ] {
            assert_eq!(decide(status, &none, 0, 0.5), None, "{status}");
        }
        // Even with a Retry-After, a 4xx that is not 429 is not retried.
        let h = headers(&[(RETRY_AFTER, "1")]);
        assert_eq!(decide(400, &h, 0, 0.5), None);
    }

    #[test]
    fn attempts() {
        let rule = RetryRule::default();
        assert_eq!(rule.max_attempts, DEFAULT_MAX_ATTEMPTS);
        assert!(!rule.is_last(1) && !rule.is_last(3) && rule.is_last(4) && rule.is_last(5));
        let once = RetryRule {
            max_attempts: 0,
            ..rule
        };
        assert!(once.is_last(1), "0 counts as 1");
        for kind in [TransportErrorKind::Connect, TransportErrorKind::Timeout] {
            assert_eq!(
                rule.after_error(Idempotency::Idempotent, kind, 2, 0.5),
                Some(Backoff::default().delay(2, 0.5)),
                "errors back off like responses"
            );
        }
    }

    #[test]
    fn builders_set_one_field_each() {
        let backoff = Backoff::new(Duration::from_millis(10), Duration::from_secs(1));
        let rule = RetryRule::default()
            .with_max_attempts(0)
            .with_backoff(backoff)
            .with_max_retry_after(Duration::from_secs(5));
        assert_eq!(
            rule,
            RetryRule {
                max_attempts: 1,
                backoff,
                max_retry_after: Duration::from_secs(5),
                retry_non_idempotent: false,
            },
            "0 attempts is stored as 1"
        );
        assert!(rule.with_retry_non_idempotent(true).retry_non_idempotent);
        assert!(!RetryRule::default().retry_non_idempotent, "off by default");
    }

    fn keyed() -> HeaderMap {
        headers(&[(IDEMPOTENCY_KEY, "order-7f3a")])
    }

    #[test]
    fn idempotency_from_the_method_and_the_key() {
        use Idempotency::{Idempotent, NotIdempotent};
        let none = HeaderMap::new();
        for method in [
            Method::GET,
            Method::HEAD,
            Method::OPTIONS,
            Method::TRACE,
            Method::PUT,
            Method::DELETE,
        ] {
            assert_eq!(Idempotency::of(&method, &none), Idempotent, "{method}");
        }
        let extension = Method::from_bytes(b"PURGE").unwrap();
        let lowercase = Method::from_bytes(b"get").unwrap();
        for method in [
            Method::POST,
            Method::PATCH,
            Method::CONNECT,
            extension,
            lowercase,
        ] {
            assert_eq!(Idempotency::of(&method, &none), NotIdempotent, "{method}");
            assert_eq!(Idempotency::of(&method, &keyed()), Idempotent, "{method}");
        }
        // The header's name, whatever its value; another header does not count.
        let empty = headers(&[(IDEMPOTENCY_KEY, "")]);
        assert_eq!(Idempotency::of(&Method::POST, &empty), Idempotent);
        let other = headers(&[(http::header::IF_MATCH, "\"v1\"")]);
        assert_eq!(Idempotency::of(&Method::POST, &other), NotIdempotent);
    }

    /// The method rule, row by row: (outcome, retried for a POST, for a GET, for an opted-in
    /// POST).
    #[test]
    fn what_a_request_that_is_not_idempotent_is_retried_after() {
        let post = Idempotency::of(&Method::POST, &HeaderMap::new());
        let keyed_post = Idempotency::of(&Method::POST, &keyed());
        let get = Idempotency::of(&Method::GET, &HeaderMap::new());
        let opted_in = rule().with_retry_non_idempotent(true);
        let none = HeaderMap::new();
        let invalid_token = headers(&[(WWW_AUTHENTICATE, r#"Bearer error="invalid_token""#)]);
        let temporarily = headers(&[(
            WWW_AUTHENTICATE,
            r#"Bearer error="temporarily_unavailable""#,
        )]);
        let rows: [(u16, &HeaderMap, bool, bool, bool); 11] = [
            // Refused before acting: any method.
            (429, &none, true, true, true),
            (429, &headers(&[(RETRY_AFTER, "2")]), true, true, true),
            // May have acted: idempotent requests, or with the opt-in.
            (408, &none, false, true, true),
            (500, &none, false, true, true),
            (502, &none, false, true, true),
            (503, &none, false, true, true),
            (503, &headers(&[(RETRY_AFTER, "2")]), false, true, true),
            (504, &none, false, true, true),
            (400, &temporarily, false, true, true),
            // Never by the retry layer, whatever the method (401 invalid_token is the auth
            // layer's resend, made for any method).
            (401, &invalid_token, false, false, false),
            (501, &none, false, false, false),
        ];
        for (status, h, for_post, for_get, for_opted_in) in rows {
            let status = StatusCode::from_u16(status).unwrap();
            let retried = |rule: &RetryRule, request| {
                rule.after_response(request, status, h, 0, 0.5, now())
                    .is_some()
            };
            assert_eq!(retried(&rule(), post), for_post, "POST {status}");
            assert_eq!(retried(&rule(), keyed_post), for_get, "keyed POST {status}");
            assert_eq!(retried(&rule(), get), for_get, "GET {status}");
            assert_eq!(
                retried(&opted_in, post),
                for_opted_in,
                "opted-in POST {status}"
            );
        }
        // A retried POST waits what a GET would.
        let h = headers(&[(RETRY_AFTER, "2")]);
        let wait = |rule: &RetryRule, request, status| {
            rule.after_response(
                request,
                StatusCode::from_u16(status).unwrap(),
                &h,
                0,
                0.5,
                now(),
            )
        };
        assert_eq!(wait(&rule(), post, 429), Some(Duration::from_secs(2)));
        assert_eq!(wait(&rule(), get, 429), Some(Duration::from_secs(2)));
        assert_eq!(wait(&opted_in, post, 503), Some(Duration::from_secs(2)));
        assert_eq!(wait(&rule(), get, 503), Some(Duration::from_secs(2)));
    }

    #[test]
    fn a_request_never_sent_is_retried_whatever_its_method() {
        let post = Idempotency::NotIdempotent;
        let backoff = Some(rule().backoff.delay(1, 0.5));
        assert_eq!(
            rule().after_error(post, TransportErrorKind::Connect, 1, 0.5),
            backoff
        );
        // It may have reached the server: only with the opt-in.
        for kind in [
            TransportErrorKind::Timeout,
            TransportErrorKind::Io,
            TransportErrorKind::Other,
        ] {
            assert_eq!(rule().after_error(post, kind, 1, 0.5), None, "{kind}");
            assert_eq!(
                rule().after_error(Idempotency::Idempotent, kind, 1, 0.5),
                backoff,
                "{kind}"
            );
            let opted_in = rule().with_retry_non_idempotent(true);
            assert_eq!(opted_in.after_error(post, kind, 1, 0.5), backoff, "{kind}");
        }
    }
}
