//! [`RetryRule`]: when a request is sent again after a failed response, and after how long.
//!
//! The integrations retry requests with the same rule: tokenward-tower's `ClassifiedRetry`
//! (a `tower::retry::Policy`) and tokenward-reqwest's `RetryMiddleware` both hold a
//! `RetryRule` and ask it, after each attempt, whether and when to try again. The rule
//! turns [`classify`](super::classify)'s [`Action`] into a wait:
//!
//! | response | wait before the next attempt |
//! |---|---|
//! | 429 with `Retry-After` (seconds or HTTP date) up to [`max_retry_after`](RetryRule::max_retry_after) | exactly `Retry-After` |
//! | 429 with `Retry-After` above the cap | none: the 429 is final (waiting less than the server asked only earns another 429, and the caller sees the header) |
//! | 429 without a usable `Retry-After` | backoff |
//! | 408, 500, 502, 503, 504 | `Retry-After` if sent (same cap), else backoff |
//! | 401 (`invalid_token` included: the auth layer's one refresh-and-resend), 403, other 4xx, 501, 505, … | none: final |
//! | a transport error the integration deems retryable (connect, timeout) | backoff |
//!
//! Backoff is exponential with full jitter ([`Backoff`]): retry `n` (0-based) waits a uniform
//! draw below `min(cap, base × 2ⁿ)`. At most [`max_attempts`](RetryRule::max_attempts)
//! attempts are made, the first included.
//!
//! # Example
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use http::{HeaderMap, HeaderValue, StatusCode, header::RETRY_AFTER};
//! use tokenward::classify::RetryRule;
//!
//! let rule = RetryRule::default();
//! let now = SystemTime::now();
//! let mut headers = HeaderMap::new();
//! headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
//! // After the first attempt (0 retries so far), a 429 waits exactly its Retry-After.
//! assert_eq!(
//!     rule.after_response(StatusCode::TOO_MANY_REQUESTS, &headers, 0, 0.5, now),
//!     Some(Duration::from_secs(7)),
//! );
//! // A 503 without one backs off: half of the first ceiling (250 ms) for a sample of 0.5.
//! assert_eq!(
//!     rule.after_response(StatusCode::SERVICE_UNAVAILABLE, &HeaderMap::new(), 0, 0.5, now),
//!     Some(Duration::from_millis(125)),
//! );
//! // 403 is final; so is anything after the last attempt.
//! assert_eq!(rule.after_response(StatusCode::FORBIDDEN, &headers, 0, 0.5, now), None);
//! assert!(rule.is_last(4));
//! ```

use std::time::{Duration, SystemTime};

use http::{HeaderMap, StatusCode};

use super::{Action, DEFAULT_MAX_ATTEMPTS, classify_at, retry_after};
use crate::timing::Backoff;

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
}

impl Default for RetryRule {
    fn default() -> Self {
        RetryRule {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            backoff: Backoff::default(),
            max_retry_after: RetryRule::DEFAULT_MAX_RETRY_AFTER,
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

    /// Whether attempt `attempt` (1-based) is the last one allowed.
    #[inline]
    pub fn is_last(&self, attempt: u32) -> bool {
        attempt >= self.max_attempts.max(1)
    }

    /// The wait before the next attempt after a response, or `None` if the response is final.
    /// `retries` is how many retries were made before this response (0 after the first
    /// attempt), `sample` a uniform draw in `[0, 1)` for the jitter, `now` the wall clock an
    /// HTTP-date `Retry-After` is read against. Does not look at the attempt limit: see
    /// [`is_last`](Self::is_last).
    pub fn after_response(
        &self,
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
            // A 429 carries its parsed Retry-After in the action.
            Action::RetryAfter { delay } => delay,
            // 408 and 5xx may carry one too.
            _ => retry_after(headers, now),
        };
        match told {
            Some(delay) => (delay <= self.max_retry_after).then_some(delay),
            None => Some(self.backoff.delay(retries, sample)),
        }
    }

    /// The wait before the next attempt after an error the caller judged worth retrying (a
    /// connection refused, a timeout): the backoff for retry `retries`.
    #[inline]
    pub fn after_error(&self, retries: u32, sample: f64) -> Duration {
        self.backoff.delay(retries, sample)
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

    fn decide(status: u16, headers: &HeaderMap, retries: u32, sample: f64) -> Option<Duration> {
        rule().after_response(
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
        let d = patient.after_response(StatusCode::TOO_MANY_REQUESTS, &h, 0, 0.5, now());
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
        assert_eq!(
            rule.after_error(2, 0.5),
            Backoff::default().delay(2, 0.5),
            "errors back off like responses"
        );
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
            },
            "0 attempts is stored as 1"
        );
    }
}
