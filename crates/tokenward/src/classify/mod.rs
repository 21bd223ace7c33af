//! One classification of HTTP error responses, shared by every integration.
//!
//! [`classify`] maps a response (status, headers, optional body) to a typed [`Failure`] and
//! the [`Action`] to take. The token cache uses it for token-endpoint responses; the tower
//! layer and the reqwest middleware use it for protected-resource responses.
//!
//! The error code is looked for in the first `Bearer` challenge of `WWW-Authenticate`
//! (RFC 6750 §3) first, then in the body as an RFC 6749 §5.2 JSON error object
//! (`{"error": "...", "error_description": "..."}`; a body that is not such an object is
//! ignored). For 408, 429 and 5xx the status decides, whatever the code; for other 4xx the
//! code decides, then the status:
//!
//! | response | [`Failure`] | [`Action`] |
//! |---|---|---|
//! | 1xx, 2xx, 3xx | — (`None`) | — |
//! | 4xx `invalid_token` (normally 401) | [`InvalidToken`](Failure::InvalidToken) | [`RefreshAndRetryOnce`](Action::RefreshAndRetryOnce) |
//! | 4xx `invalid_grant` (normally 400/401) | [`InvalidGrant`](Failure::InvalidGrant) | [`Reauthorize`](Action::Reauthorize) |
//! | 4xx `insufficient_scope` (normally 403), `scope=…` | [`InsufficientScope`](Failure::InsufficientScope) | [`Regrant`](Action::Regrant) (an admin must re-grant; no retry) |
//! | 4xx `invalid_client` / `unauthorized_client` | [`InvalidClient`](Failure::InvalidClient) | [`FixConfiguration`](Action::FixConfiguration) |
//! | 4xx `temporarily_unavailable` / `server_error` | [`ServerError`](Failure::ServerError) | [`Backoff`](Action::Backoff) |
//! | 4xx any other code (`invalid_request`, `invalid_scope`, …) | [`ClientError`](Failure::ClientError) with the code | [`DoNotRetry`](Action::DoNotRetry) |
//! | 401 without a code (bare challenge or no header) | [`Unauthorized`](Failure::Unauthorized) | [`DoNotRetry`](Action::DoNotRetry) |
//! | 403 without a code | [`Forbidden`](Failure::Forbidden) | [`DoNotRetry`](Action::DoNotRetry) |
//! | other 4xx without a code | [`ClientError`](Failure::ClientError) | [`DoNotRetry`](Action::DoNotRetry) |
//! | 429, `Retry-After` parsed (uncapped) | [`RateLimited`](Failure::RateLimited) | [`RetryAfter`](Action::RetryAfter) |
//! | 408, 500, 502, 503, 504 | [`ServerError`](Failure::ServerError) | [`Backoff`](Action::Backoff) (full jitter, [`DEFAULT_MAX_ATTEMPTS`]) |
//! | other 5xx (501, 505, 507, …) | [`ServerError`](Failure::ServerError) | [`DoNotRetry`](Action::DoNotRetry) |
//!
//! Error codes are compared ASCII case-insensitively and reported as received.
//!
//! # Example
//!
//! ```
//! use http::header::WWW_AUTHENTICATE;
//! use http::{HeaderMap, HeaderValue, StatusCode};
//! use tokenward::classify::{classify, Action, Failure};
//!
//! let mut headers = HeaderMap::new();
//! headers.insert(
//!     WWW_AUTHENTICATE,
//!     HeaderValue::from_static(r#"Bearer error="invalid_token", error_description="expired""#),
//! );
//! let classification = classify(StatusCode::UNAUTHORIZED, &headers, None).unwrap();
//! assert_eq!(classification.action, Action::RefreshAndRetryOnce);
//! assert_eq!(
//!     classification.failure,
//!     Failure::InvalidToken { description: Some("expired".into()) }
//! );
//! assert!(classification.action.is_retry());
//!
//! // Success is not a failure.
//! assert_eq!(classify(StatusCode::OK, &headers, None), None);
//! ```

use std::fmt;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, StatusCode};
use serde::Deserialize;

pub mod retry_after;
pub mod rule;
pub mod www_authenticate;

pub use retry_after::{parse_retry_after, retry_after};
pub use rule::{Attempt, IDEMPOTENCY_KEY, Idempotency, RetryRule};
pub use www_authenticate::{BearerError, Challenge, bearer_error, parse_all};

/// How many attempts (the first included) [`Action::Backoff`] allows by default.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 4;

/// A failed response, classified: what went wrong and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Classification {
    /// What went wrong.
    pub failure: Failure,
    /// What to do about it; always `failure.action()`.
    pub action: Action,
}

impl From<Failure> for Classification {
    fn from(failure: Failure) -> Self {
        let action = failure.action();
        Classification { failure, action }
    }
}

/// What went wrong, from the client's point of view.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The access token was rejected (`invalid_token`, normally with 401): expired,
    /// revoked or malformed. A fresh token may succeed.
    InvalidToken {
        /// The server's `error_description`.
        description: Option<String>,
    },
    /// 401 without an error code (a bare challenge, or no `WWW-Authenticate` at all).
    Unauthorized,
    /// The grant (refresh token, authorization code) is no longer valid (`invalid_grant`).
    InvalidGrant {
        /// The server's `error_description`.
        description: Option<String>,
    },
    /// The token lacks a scope the resource needs (`insufficient_scope`, normally 403).
    InsufficientScope {
        /// The scope the resource needs, from the challenge's (or body's) `scope`.
        scope: Option<String>,
        /// The server's `error_description`.
        description: Option<String>,
    },
    /// 403 without an error code: authenticated, but not allowed.
    Forbidden,
    /// The client's own credentials were rejected (`invalid_client` or
    /// `unauthorized_client`).
    InvalidClient {
        /// The server's `error_description`.
        description: Option<String>,
    },
    /// 429 Too Many Requests.
    RateLimited {
        /// The `Retry-After` delay, uncapped; `None` if absent or unparseable.
        retry_after: Option<Duration>,
    },
    /// A server-side failure: any 5xx, 408, or the codes `temporarily_unavailable` and
    /// `server_error` (whatever the status).
    ServerError {
        /// The response status.
        status: StatusCode,
    },
    /// Any other 4xx: the request itself is wrong (`invalid_request`, `invalid_scope`, ...).
    ClientError {
        /// The response status.
        status: StatusCode,
        /// The error code, if one was sent.
        error: Option<String>,
    },
}

impl Failure {
    /// The action this failure calls for.
    pub fn action(&self) -> Action {
        match self {
            Failure::InvalidToken { .. } => Action::RefreshAndRetryOnce,
            Failure::InvalidGrant { .. } => Action::Reauthorize,
            Failure::InsufficientScope { scope, .. } => Action::Regrant {
                missing: scope.clone(),
            },
            Failure::InvalidClient { .. } => Action::FixConfiguration,
            Failure::RateLimited { retry_after } => Action::RetryAfter {
                delay: *retry_after,
            },
            Failure::ServerError { status } => match status.as_u16() {
                408 | 500 | 502 | 503 | 504 => Action::Backoff {
                    max_attempts: DEFAULT_MAX_ATTEMPTS,
                },
                // 501 Not Implemented, 505 HTTP Version Not Supported, 507, 508, ...:
                // the same request will fail the same way.
                500..=599 => Action::DoNotRetry,
                // Not a 5xx: a `temporarily_unavailable` or `server_error` code.
                _ => Action::Backoff {
                    max_attempts: DEFAULT_MAX_ATTEMPTS,
                },
            },
            Failure::Unauthorized | Failure::Forbidden | Failure::ClientError { .. } => {
                Action::DoNotRetry
            }
        }
    }

    /// Whether the request may be sent again (possibly after a refresh or a delay).
    pub fn is_retryable(&self) -> bool {
        self.action().is_retry()
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn description(f: &mut fmt::Formatter<'_>, d: &Option<String>) -> fmt::Result {
            match d {
                Some(d) => write!(f, ": {d}"),
                None => Ok(()),
            }
        }
        match self {
            Failure::InvalidToken { description: d } => {
                f.write_str("the access token was rejected (invalid_token")?;
                description(f, d)?;
                f.write_str("); refresh it and retry once")
            }
            Failure::Unauthorized => f.write_str(
                "the request was rejected as unauthenticated (HTTP 401 without an error code); \
                 check that credentials are sent to this resource",
            ),
            Failure::InvalidGrant { description: d } => {
                f.write_str("the grant was rejected (invalid_grant")?;
                description(f, d)?;
                f.write_str("); the user or an organisation admin must authorize again")
            }
            Failure::InsufficientScope {
                scope,
                description: d,
            } => {
                f.write_str("the token lacks a required scope (insufficient_scope")?;
                description(f, d)?;
                match scope {
                    Some(scope) => write!(f, "); an org admin must re-grant: missing {scope}"),
                    None => f.write_str("); an org admin must re-grant the missing scopes"),
                }
            }
            Failure::Forbidden => f.write_str(
                "access forbidden (HTTP 403): the credentials are valid but not allowed here; \
                 retrying will not help",
            ),
            Failure::InvalidClient { description: d } => {
                f.write_str("the client credentials were rejected (invalid_client")?;
                description(f, d)?;
                f.write_str(
                    "); check the client id, the client secret and the authentication method",
                )
            }
            Failure::RateLimited { retry_after } => match retry_after {
                Some(delay) => write!(
                    f,
                    "rate limited (HTTP 429); retry after {}s",
                    delay.as_secs_f64().ceil()
                ),
                None => f.write_str("rate limited (HTTP 429); retry later"),
            },
            Failure::ServerError { status } => {
                if self.is_retryable() {
                    write!(f, "the server failed ({status}); retry with backoff")
                } else {
                    write!(f, "the server failed ({status}); retrying will not help")
                }
            }
            Failure::ClientError { status, error } => {
                write!(f, "the request was refused ({status}")?;
                if let Some(error) = error {
                    write!(f, ", {error}")?;
                }
                f.write_str("); fix the request, retrying will not help")
            }
        }
    }
}

impl std::error::Error for Failure {}

/// What to do about a [`Failure`].
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Drop the rejected token (invalidate by value), get a fresh one and resend once.
    RefreshAndRetryOnce,
    /// The grant is dead: the user or an organisation admin must authorize again.
    Reauthorize,
    /// An organisation admin must re-grant the application; do not retry.
    Regrant {
        /// The scope the resource asked for, if it said.
        missing: Option<String>,
    },
    /// The client configuration (id, secret, authentication method) is wrong; do not retry.
    FixConfiguration,
    /// Wait, then retry.
    RetryAfter {
        /// The server's `Retry-After` delay (uncapped; callers cap it), or `None` if it
        /// gave none: use the caller's own backoff.
        delay: Option<Duration>,
    },
    /// Retry with exponential backoff and full jitter.
    Backoff {
        /// Attempts allowed in total, the first included.
        max_attempts: u32,
    },
    /// Do not send the request again.
    DoNotRetry,
}

impl Action {
    /// Whether this action sends the request again.
    pub fn is_retry(&self) -> bool {
        matches!(
            self,
            Action::RefreshAndRetryOnce | Action::RetryAfter { .. } | Action::Backoff { .. }
        )
    }

    /// Whether a retry layer may send the *same* request again ([`RetryAfter`](Action::RetryAfter)
    /// or [`Backoff`](Action::Backoff)). [`RefreshAndRetryOnce`](Action::RefreshAndRetryOnce)
    /// is not: it needs a new token, which is the auth layer's resend.
    pub fn retries_same_request(&self) -> bool {
        matches!(self, Action::RetryAfter { .. } | Action::Backoff { .. })
    }
}

/// Classifies a response; `None` unless the status is 4xx or 5xx.
///
/// `body` is the (size-limited) response body, if the caller has it. See the
/// [module docs](self) for the mapping.
pub fn classify(
    status: StatusCode,
    headers: &HeaderMap,
    body: Option<&[u8]>,
) -> Option<Classification> {
    classify_at(status, headers, body, SystemTime::now())
}

/// [`classify`] with an explicit clock, against which an HTTP-date `Retry-After` is
/// measured.
pub fn classify_at(
    status: StatusCode,
    headers: &HeaderMap,
    body: Option<&[u8]>,
    now: SystemTime,
) -> Option<Classification> {
    failure(status, headers, body, now).map(Classification::from)
}

/// The status a token endpoint's response is classified under: a 2xx carrying an error
/// object is classified as the error it carries (as a 400).
pub(crate) fn error_status(status: StatusCode) -> StatusCode {
    if status.is_success() {
        StatusCode::BAD_REQUEST
    } else {
        status
    }
}

/// The action for a token endpoint's error response whose body was already parsed: the
/// same rules as [`classify`], with the error code given (see [`error_status`]).
pub(crate) fn classify_code(
    status: StatusCode,
    headers: &HeaderMap,
    code: Option<&str>,
) -> Option<Action> {
    let status = error_status(status);
    let details = || match code {
        Some(code) => Details {
            code: Some(code.to_owned()),
            ..Details::default()
        },
        None => Details::from_response(headers, None),
    };
    failure_with(status, headers, SystemTime::now(), details).map(|f| f.action())
}

fn failure(
    status: StatusCode,
    headers: &HeaderMap,
    body: Option<&[u8]>,
    now: SystemTime,
) -> Option<Failure> {
    failure_with(status, headers, now, || {
        Details::from_response(headers, body)
    })
}

fn failure_with(
    status: StatusCode,
    headers: &HeaderMap,
    now: SystemTime,
    details: impl FnOnce() -> Details,
) -> Option<Failure> {
    if !status.is_client_error() && !status.is_server_error() {
        return None;
    }
    match status.as_u16() {
        429 => {
            return Some(Failure::RateLimited {
                retry_after: retry_after(headers, now),
            });
        }
        408 | 500..=599 => return Some(Failure::ServerError { status }),
        _ => {}
    }

    let details = details();
    let Some(code) = details.code else {
        return Some(match status {
            StatusCode::UNAUTHORIZED => Failure::Unauthorized,
            StatusCode::FORBIDDEN => Failure::Forbidden,
            _ => Failure::ClientError {
                status,
                error: None,
            },
        });
    };
    let is = |known: &str| code.eq_ignore_ascii_case(known);
    let description = details.description;
    Some(if is("invalid_token") {
        Failure::InvalidToken { description }
    } else if is("invalid_grant") {
        Failure::InvalidGrant { description }
    } else if is("insufficient_scope") {
        Failure::InsufficientScope {
            scope: details.scope,
            description,
        }
    } else if is("invalid_client") || is("unauthorized_client") {
        Failure::InvalidClient { description }
    } else if is("temporarily_unavailable") || is("server_error") {
        Failure::ServerError { status }
    } else {
        Failure::ClientError {
            status,
            error: Some(code),
        }
    })
}

/// The error attributes of a response, from the `Bearer` challenge or else the body.
#[derive(Debug, Default)]
struct Details {
    code: Option<String>,
    description: Option<String>,
    scope: Option<String>,
}

impl Details {
    fn from_response(headers: &HeaderMap, body: Option<&[u8]>) -> Details {
        let bearer = bearer_error(headers).unwrap_or_default();
        if let Some(code) = non_empty(bearer.error) {
            return Details {
                code: Some(code),
                description: bearer.error_description,
                scope: bearer.scope,
            };
        }
        let body = body.and_then(ErrorBody::parse).unwrap_or_default();
        Details {
            code: body.error,
            description: body.error_description,
            scope: bearer.scope.or(body.scope),
        }
    }
}

/// An RFC 6749 §5.2 error object, read leniently: unknown fields are ignored, and a field
/// of the wrong type counts as absent.
#[derive(Debug, Default, Deserialize)]
struct RawErrorBody {
    error: Option<serde_json::Value>,
    error_description: Option<serde_json::Value>,
    scope: Option<serde_json::Value>,
}

#[derive(Debug, Default)]
struct ErrorBody {
    error: Option<String>,
    error_description: Option<String>,
    scope: Option<String>,
}

impl ErrorBody {
    fn parse(body: &[u8]) -> Option<ErrorBody> {
        let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
        let raw: RawErrorBody = serde_json::from_slice(body).ok()?;
        let string = |v: Option<serde_json::Value>| match v {
            Some(serde_json::Value::String(s)) => Some(s),
            _ => None,
        };
        Some(ErrorBody {
            error: non_empty(string(raw.error)),
            error_description: string(raw.error_description),
            scope: string(raw.scope),
        })
    }
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use http::header::{RETRY_AFTER, WWW_AUTHENTICATE};

    /// Wed, 21 Oct 2015 07:28:00 GMT
    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480)
    }

    fn headers(pairs: &[(http::HeaderName, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name.clone(), HeaderValue::from_static(value));
        }
        map
    }

    fn run(status: u16, headers: &HeaderMap, body: Option<&str>) -> Classification {
        let status = StatusCode::from_u16(status).unwrap();
        let c = classify_at(status, headers, body.map(str::as_bytes), now())
            .unwrap_or_else(|| panic!("{status} should be a failure"));
        assert_eq!(c.action, c.failure.action());
        c
    }

    fn challenge(value: &'static str) -> HeaderMap {
        headers(&[(WWW_AUTHENTICATE, value)])
    }

    fn backoff() -> Action {
        Action::Backoff {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
        }
    }

    #[test]
    fn invalid_token_401() {
        let c = run(
            401,
            &challenge(r#"Bearer realm="api", error="invalid_token", error_description="expired""#),
            None,
        );
        assert_eq!(
            c.failure,
            Failure::InvalidToken {
                description: Some("expired".into())
            }
        );
        assert_eq!(c.action, Action::RefreshAndRetryOnce);
        assert!(c.failure.is_retryable());
    }

    #[test]
    fn bare_401_does_not_retry() {
        for h in [
            HeaderMap::new(),
            challenge(r#"Bearer realm="api""#),
            challenge("Basic"),
        ] {
            let c = run(401, &h, None);
            assert_eq!(c.failure, Failure::Unauthorized);
            assert_eq!(c.action, Action::DoNotRetry);
            assert!(!c.failure.is_retryable());
        }
    }

    #[test]
    fn only_the_bearer_challenge_counts() {
        // An error on a non-Bearer challenge is not ours.
        let c = run(401, &challenge(r#"Basic error="invalid_token""#), None);
        assert_eq!(c.failure, Failure::Unauthorized);
        // The first Bearer challenge wins, even after another scheme.
        let h = headers(&[
            (WWW_AUTHENTICATE, r#"Basic realm="x""#),
            (
                WWW_AUTHENTICATE,
                r#"Bearer error="invalid_token", Bearer error="invalid_grant""#,
            ),
        ]);
        assert_eq!(run(401, &h, None).action, Action::RefreshAndRetryOnce);
    }

    #[test]
    fn invalid_client_401_and_400() {
        let c = run(401, &challenge(r#"Bearer error="invalid_client""#), None);
        assert_eq!(c.failure, Failure::InvalidClient { description: None });
        assert_eq!(c.action, Action::FixConfiguration);

        let c = run(
            400,
            &HeaderMap::new(),
            Some(r#"{"error":"unauthorized_client","error_description":"no client_credentials"}"#),
        );
        assert_eq!(
            c.failure,
            Failure::InvalidClient {
                description: Some("no client_credentials".into())
            }
        );
        assert!(!c.action.is_retry());
    }

    #[test]
    fn invalid_grant_400_from_body() {
        let c = run(
            400,
            &headers(&[(http::header::CONTENT_TYPE, "application/json")]),
            Some(
                r#"{"error": "invalid_grant", "error_description": "refresh token revoked", "extra": [1, 2]}"#,
            ),
        );
        assert_eq!(
            c.failure,
            Failure::InvalidGrant {
                description: Some("refresh token revoked".into())
            }
        );
        assert_eq!(c.action, Action::Reauthorize);
        assert!(!c.action.is_retry());
    }

    #[test]
    fn invalid_grant_401_in_challenge() {
        let c = run(401, &challenge(r#"Bearer error="invalid_grant""#), None);
        assert_eq!(c.failure, Failure::InvalidGrant { description: None });
        assert_eq!(c.action, Action::Reauthorize);
    }

    #[test]
    fn challenge_beats_body() {
        let c = run(
            401,
            &challenge(r#"Bearer error="invalid_token""#),
            Some(r#"{"error":"invalid_grant"}"#),
        );
        assert_eq!(c.failure, Failure::InvalidToken { description: None });
    }

    #[test]
    fn insufficient_scope_403() {
        let c = run(
            403,
            &challenge(
                r#"Bearer error="insufficient_scope", scope="jobs.write admin.read", error_description="needs write""#,
            ),
            None,
        );
        assert_eq!(
            c.failure,
            Failure::InsufficientScope {
                scope: Some("jobs.write admin.read".into()),
                description: Some("needs write".into()),
            }
        );
        assert_eq!(
            c.action,
            Action::Regrant {
                missing: Some("jobs.write admin.read".into())
            }
        );
        assert!(!c.action.is_retry());
        assert!(
            c.failure
                .to_string()
                .contains("an org admin must re-grant: missing jobs.write admin.read")
        );
    }

    #[test]
    fn insufficient_scope_in_body_with_challenge_scope() {
        let c = run(
            400,
            &challenge(r#"Bearer scope="jobs.write""#),
            Some(r#"{"error":"insufficient_scope"}"#),
        );
        assert_eq!(
            c.failure,
            Failure::InsufficientScope {
                scope: Some("jobs.write".into()),
                description: None
            }
        );
    }

    #[test]
    fn plain_403() {
        let c = run(403, &HeaderMap::new(), Some("<html>Forbidden</html>"));
        assert_eq!(c.failure, Failure::Forbidden);
        assert_eq!(c.action, Action::DoNotRetry);
    }

    #[test]
    fn rate_limited_with_seconds() {
        let c = run(429, &headers(&[(RETRY_AFTER, "30")]), None);
        assert_eq!(
            c.failure,
            Failure::RateLimited {
                retry_after: Some(Duration::from_secs(30))
            }
        );
        assert_eq!(
            c.action,
            Action::RetryAfter {
                delay: Some(Duration::from_secs(30))
            }
        );
        assert!(c.action.is_retry());
    }

    #[test]
    fn rate_limited_with_http_date() {
        let c = run(
            429,
            &headers(&[(RETRY_AFTER, "Wed, 21 Oct 2015 07:30:00 GMT")]),
            None,
        );
        assert_eq!(
            c.action,
            Action::RetryAfter {
                delay: Some(Duration::from_secs(120))
            }
        );
    }

    #[test]
    fn rate_limited_uncapped_and_without_header() {
        let c = run(429, &headers(&[(RETRY_AFTER, "31536000")]), None);
        assert_eq!(
            c.action,
            Action::RetryAfter {
                delay: Some(Duration::from_secs(31_536_000))
            }
        );
        let c = run(429, &HeaderMap::new(), Some(r#"{"error":"invalid_grant"}"#));
        assert_eq!(c.failure, Failure::RateLimited { retry_after: None });
        assert_eq!(c.action, Action::RetryAfter { delay: None });
    }

    #[test]
    fn server_errors_back_off() {
        for status in [500, 502, 503, 504] {
            let c = run(status, &HeaderMap::new(), Some("upstream failed"));
            assert_eq!(
                c.failure,
                Failure::ServerError {
                    status: StatusCode::from_u16(status).unwrap()
                }
            );
            assert_eq!(c.action, backoff(), "{status}");
            assert!(c.action.is_retry());
        }
    }

    #[test]
    fn request_timeout_408_backs_off() {
        let c = run(408, &HeaderMap::new(), None);
        assert_eq!(
            c.failure,
            Failure::ServerError {
                status: StatusCode::REQUEST_TIMEOUT
            }
        );
        assert_eq!(c.action, backoff());
    }

    #[test]
    fn temporarily_unavailable_400_backs_off() {
        for body in [
            r#"{"error":"temporarily_unavailable"}"#,
            r#"{"error":"server_error","error_description":"db down"}"#,
        ] {
            let c = run(400, &HeaderMap::new(), Some(body));
            assert_eq!(
                c.failure,
                Failure::ServerError {
                    status: StatusCode::BAD_REQUEST
                }
            );
            assert_eq!(c.action, backoff());
        }
    }

    #[test]
    fn invalid_scope_400_is_a_client_error() {
        let c = run(400, &HeaderMap::new(), Some(r#"{"error":"invalid_scope"}"#));
        assert_eq!(
            c.failure,
            Failure::ClientError {
                status: StatusCode::BAD_REQUEST,
                error: Some("invalid_scope".into())
            }
        );
        assert_eq!(c.action, Action::DoNotRetry);
    }

    #[test]
    fn other_4xx_without_code() {
        let c = run(404, &HeaderMap::new(), Some("not json"));
        assert_eq!(
            c.failure,
            Failure::ClientError {
                status: StatusCode::NOT_FOUND,
                error: None
            }
        );
        assert_eq!(c.action, Action::DoNotRetry);
    }

    #[test]
    fn unknown_code_on_401_keeps_the_code() {
        let c = run(401, &challenge(r#"Bearer error="invalid_request""#), None);
        assert_eq!(
            c.failure,
            Failure::ClientError {
                status: StatusCode::UNAUTHORIZED,
                error: Some("invalid_request".into())
            }
        );
    }

    #[test]
    fn success_and_redirects_are_not_failures() {
        let h = challenge(r#"Bearer error="invalid_token""#);
        for status in [100, 200, 204, 301, 304] {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(
                classify_at(status, &h, Some(br#"{"error":"invalid_grant"}"#), now()),
                None
            );
        }
        assert_eq!(classify(StatusCode::OK, &HeaderMap::new(), None), None);
    }

    #[test]
    fn not_implemented_501_and_505_do_not_retry() {
        for status in [501, 505, 507] {
            let c = run(status, &HeaderMap::new(), None);
            assert_eq!(
                c.failure,
                Failure::ServerError {
                    status: StatusCode::from_u16(status).unwrap()
                }
            );
            assert_eq!(c.action, Action::DoNotRetry, "{status}");
            assert!(!c.failure.is_retryable());
        }
    }

    #[test]
    fn lenient_body_parsing() {
        // Wrong types count as absent; a UTF-8 BOM is tolerated; codes are case-insensitive.
        let c = run(
            400,
            &HeaderMap::new(),
            Some(r#"{"error": {"code": 7}, "error_description": 3}"#),
        );
        assert_eq!(
            c.failure,
            Failure::ClientError {
                status: StatusCode::BAD_REQUEST,
                error: None
            }
        );
        let c = run(
            400,
            &HeaderMap::new(),
            Some("\u{feff}{\"error\":\"INVALID_GRANT\"}"),
        );
        assert_eq!(c.failure, Failure::InvalidGrant { description: None });
        // An empty code is no code.
        let c = run(
            401,
            &challenge(r#"Bearer error="""#),
            Some(r#"{"error":""}"#),
        );
        assert_eq!(c.failure, Failure::Unauthorized);
        // Truncated JSON is ignored.
        let c = run(400, &HeaderMap::new(), Some(r#"{"error":"invalid_grant""#));
        assert_eq!(
            c.failure,
            Failure::ClientError {
                status: StatusCode::BAD_REQUEST,
                error: None
            }
        );
    }

    #[test]
    fn actions_and_messages() {
        assert!(Action::RefreshAndRetryOnce.is_retry());
        assert!(Action::RetryAfter { delay: None }.is_retry());
        assert!(backoff().is_retry());
        for action in [
            Action::Reauthorize,
            Action::Regrant { missing: None },
            Action::FixConfiguration,
            Action::DoNotRetry,
        ] {
            assert!(!action.is_retry(), "{action:?}");
        }
        assert_eq!(
            Failure::RateLimited {
                retry_after: Some(Duration::from_millis(1500))
            }
            .to_string(),
            "rate limited (HTTP 429); retry after 2s"
        );
        assert_eq!(
            Failure::ClientError {
                status: StatusCode::BAD_REQUEST,
                error: Some("invalid_scope".into())
            }
            .to_string(),
            "the request was refused (400 Bad Request, invalid_scope); fix the request, retrying will not help"
        );
    }
}
