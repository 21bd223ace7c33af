//! The access token and the parsing of token responses (RFC 6749 §5.1).
//!
//! A [`Token`] is a cheap handle (one reference count) to an immutable token: the secret
//! itself, the pre-built `Authorization` header value (marked sensitive), the granted scope,
//! when it was issued and when it expires, and the refresh token that came with it.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use tokenward::Token;
//!
//! let token = Token::builder("eyJhbGciOi...")
//!     .expires_in(Duration::from_secs(3600))
//!     .scope("jobs.read")
//!     .build()
//!     .unwrap();
//! assert_eq!(token.header_value().to_str().unwrap(), "Bearer eyJhbGciOi...");
//! assert!(token.header_value().is_sensitive());
//! // Debug never shows the secret.
//! assert!(!format!("{token:?}").contains("eyJhbGciOi"));
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, StatusCode};
use secrecy::SecretString;
use serde::Deserialize;
use tokio::time::Instant;

use crate::error::Error;

/// An access token, ready to be sent. Cloning is a reference-count increment.
#[derive(Clone)]
pub struct Token {
    inner: Arc<Inner>,
}

struct Inner {
    access_token: SecretString,
    header: HeaderValue,
    scope: Option<String>,
    issued_at: Instant,
    expires_at: Instant,
    refresh_token: Option<SecretString>,
}

impl Token {
    /// Starts building a bearer token (for custom [`TokenSource`](crate::TokenSource)s and tests).
    pub fn builder(access_token: impl Into<String>) -> TokenBuilder {
        TokenBuilder {
            access_token: access_token.into(),
            issued_at: None,
            expires_in: Duration::from_secs(3600),
            scope: None,
            refresh_token: None,
        }
    }

    /// The access token itself. Handle with care: it is a bearer credential.
    pub fn access_token(&self) -> &SecretString {
        &self.inner.access_token
    }

    /// The `Authorization` header value (`Bearer <token>`), built once and marked sensitive.
    /// Clone it into each request: that is a reference-count increment, not a copy.
    pub fn header_value(&self) -> &HeaderValue {
        &self.inner.header
    }

    /// The scope granted, as the server sent it (or as requested, when it sent none).
    pub fn scope(&self) -> Option<&str> {
        self.inner.scope.as_deref()
    }

    /// When the token request was sent (the lifetime counts from here, conservatively).
    pub fn issued_at(&self) -> Instant {
        self.inner.issued_at
    }

    /// When the server says the token expires.
    pub fn expires_at(&self) -> Instant {
        self.inner.expires_at
    }

    /// The lifetime the server granted (after clamping).
    pub fn lifetime(&self) -> Duration {
        self.inner
            .expires_at
            .saturating_duration_since(self.inner.issued_at)
    }

    /// The refresh token that came with this access token, if any.
    pub fn refresh_token(&self) -> Option<&SecretString> {
        self.inner.refresh_token.as_ref()
    }

    /// Whether two handles point at the very same token.
    pub fn ptr_eq(a: &Token, b: &Token) -> bool {
        Arc::ptr_eq(&a.inner, &b.inner)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("access_token", &"[REDACTED]")
            .field("scope", &self.inner.scope)
            .field("lifetime", &self.lifetime())
            .field(
                "refresh_token",
                &self.inner.refresh_token.as_ref().map(|_| "[REDACTED]"),
            )
            .finish()
    }
}

/// Builds a [`Token`]. See [`Token::builder`].
#[derive(Clone)]
pub struct TokenBuilder {
    access_token: String,
    issued_at: Option<Instant>,
    expires_in: Duration,
    scope: Option<String>,
    refresh_token: Option<String>,
}

impl fmt::Debug for TokenBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenBuilder")
            .field("access_token", &"[REDACTED]")
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl TokenBuilder {
    /// Lifetime from `issued_at` (default one hour).
    pub fn expires_in(mut self, lifetime: Duration) -> Self {
        self.expires_in = lifetime;
        self
    }

    /// When the token was issued (default: now).
    pub fn issued_at(mut self, at: Instant) -> Self {
        self.issued_at = Some(at);
        self
    }

    /// The scope granted.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// A refresh token that came with the access token.
    pub fn refresh_token(mut self, refresh_token: impl Into<String>) -> Self {
        self.refresh_token = Some(refresh_token.into());
        self
    }

    /// Builds the token and its header value. Fails if the token has characters a header
    /// cannot carry (the message never contains the token).
    pub fn build(self) -> Result<Token, Error> {
        let issued_at = self.issued_at.unwrap_or_else(Instant::now);
        let expires_at = checked_add(issued_at, self.expires_in);
        Token::assemble(
            self.access_token,
            issued_at,
            expires_at,
            self.scope,
            self.refresh_token,
            StatusCode::OK,
        )
    }
}

impl Token {
    fn assemble(
        access_token: String,
        issued_at: Instant,
        expires_at: Instant,
        scope: Option<String>,
        refresh_token: Option<String>,
        status: StatusCode,
    ) -> Result<Token, Error> {
        if access_token.is_empty() {
            return Err(Error::invalid_response(status, "the access_token is empty"));
        }
        // RFC 6750 b64token: visible ASCII without spaces. HeaderValue would accept more
        // (spaces, obs-text); a token like that would not survive proxies either.
        if !access_token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::invalid_response(
                status,
                "the access_token has characters that cannot be sent in an Authorization header",
            ));
        }
        let mut header = HeaderValue::try_from(format!("Bearer {access_token}")).map_err(|_| {
            Error::invalid_response(status, "the access_token cannot be sent in a header")
        })?;
        header.set_sensitive(true);
        let refresh_token = refresh_token.filter(|r| !r.is_empty());
        Ok(Token {
            inner: Arc::new(Inner {
                access_token: SecretString::from(access_token),
                header,
                scope,
                issued_at,
                expires_at,
                refresh_token: refresh_token.map(SecretString::from),
            }),
        })
    }
}

/// `at + d`, or a year after `at` when that overflows: configured and received durations
/// (`Duration::MAX` included) never panic where they meet an instant.
pub(crate) fn checked_add(at: Instant, d: Duration) -> Instant {
    at.checked_add(d)
        .or_else(|| at.checked_add(Duration::from_secs(365 * 24 * 3600)))
        .unwrap_or(at)
}

/// How absent or absurd `expires_in` values are handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lifetimes {
    /// Lifetime assumed when the response has no (or an unreadable) `expires_in`.
    /// Default 5 minutes: conservative, never "forever".
    pub default: Duration,
    /// Shorter lifetimes are raised to this (an `expires_in` of 0 would otherwise mean a
    /// refresh on every call). Default 1 s.
    pub min: Duration,
    /// Longer lifetimes are cut to this. Default 24 h.
    pub max: Duration,
}

impl Default for Lifetimes {
    fn default() -> Self {
        Lifetimes {
            default: Duration::from_secs(300),
            min: Duration::from_secs(1),
            max: Duration::from_secs(24 * 3600),
        }
    }
}

impl Lifetimes {
    fn clamp(&self, lifetime: Duration) -> Duration {
        let max = self.max.max(self.min);
        lifetime.clamp(self.min, max)
    }
}

/// `expires_in` as servers really send it: a number, a float, or a string.
#[derive(Deserialize)]
#[serde(untagged)]
enum ExpiresIn {
    Unsigned(u64),
    Signed(i64),
    Float(f64),
    Text(String),
}

impl ExpiresIn {
    fn seconds(&self) -> Option<f64> {
        match self {
            ExpiresIn::Unsigned(n) => Some(*n as f64),
            ExpiresIn::Signed(n) => Some(*n as f64),
            ExpiresIn::Float(f) => Some(*f),
            ExpiresIn::Text(s) => s.trim().parse::<f64>().ok(),
        }
        .filter(|s| s.is_finite())
    }
}

#[derive(Deserialize)]
struct RawTokenResponse {
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<ExpiresIn>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

/// Parses a token endpoint's 2xx response body (RFC 6749 §5.1) the way tokenward's own
/// grants do: `expires_in` as a number or a string, missing → `lifetimes.default`, absurd
/// values clamped; a body that is not JSON, has no `access_token`, carries an `error`, or has
/// a `token_type` other than Bearer is an [`Error::InvalidResponse`] (whose message never
/// quotes the body). For custom [`TokenSource`](crate::TokenSource)s that get token
/// responses some other way. The lifetime counts from now.
///
/// ```
/// use tokenward::token::{Lifetimes, parse_response};
///
/// let token = parse_response(br#"{"access_token":"abc","expires_in":"600"}"#, None, &Lifetimes::default())?;
/// assert_eq!(token.lifetime().as_secs(), 600);
/// assert!(parse_response(b"<html>", None, &Lifetimes::default()).is_err());
/// # Ok::<(), tokenward::Error>(())
/// ```
pub fn parse_response(
    body: &[u8],
    requested_scope: Option<&str>,
    lifetimes: &Lifetimes,
) -> Result<Token, Error> {
    match parse_token_response(
        StatusCode::OK,
        body,
        Instant::now(),
        lifetimes,
        requested_scope,
    )? {
        Parsed::Token(token) => Ok(token),
        Parsed::Error { .. } => Err(Error::invalid_response(
            StatusCode::OK,
            "the body is an OAuth error object, not a token",
        )),
        Parsed::Refused { error, .. } => Err(error),
    }
}

/// What a successful-looking body turned out to be.
pub(crate) enum Parsed {
    Token(Token),
    /// A 2xx whose body is an OAuth error object (and the refresh token it carried, if any).
    Error {
        refresh_token: Option<SecretString>,
    },
    /// A 2xx token response refused for what it holds (no `access_token`, an unsupported
    /// `token_type`, an access token that cannot be sent), with the refresh token it
    /// carried: the server may have rotated, so it must not be lost.
    Refused {
        error: Error,
        refresh_token: SecretString,
    },
}

/// Parses a 2xx token response body.
///
/// `issued_at` is when the request was sent; `requested_scope` is used when the server
/// does not echo a scope (RFC 6749 §5.1).
pub(crate) fn parse_token_response(
    status: StatusCode,
    body: &[u8],
    issued_at: Instant,
    lifetimes: &Lifetimes,
    requested_scope: Option<&str>,
) -> Result<Parsed, Error> {
    // Never put serde's message in the error: it can quote the input.
    let mut raw: RawTokenResponse = match serde_json::from_slice(body) {
        Ok(raw) => raw,
        Err(e) if e.is_syntax() || e.is_eof() => {
            return Err(Error::invalid_response(status, "the body is not JSON"));
        }
        Err(_) => {
            let error =
                Error::invalid_response(status, "the body is JSON but not a token response object");
            // A field of an unexpected type (a `scope` array, say): a refresh token in it is
            // still a rotation.
            let refresh_token = serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| match v.get("refresh_token") {
                    Some(serde_json::Value::String(r)) if !r.is_empty() => Some(r.clone()),
                    _ => None,
                });
            return match refresh_token {
                Some(r) => Ok(Parsed::Refused {
                    error,
                    refresh_token: SecretString::from(r),
                }),
                None => Err(error),
            };
        }
    };
    // A refresh token in the body is kept whatever else is wrong with it.
    let refresh_token = raw.refresh_token.take().filter(|r| !r.is_empty());
    if raw.error.is_some() {
        return Ok(Parsed::Error {
            refresh_token: refresh_token.map(SecretString::from),
        });
    }
    match assemble_response(
        raw,
        refresh_token.clone(),
        status,
        issued_at,
        lifetimes,
        requested_scope,
    ) {
        Ok(token) => Ok(Parsed::Token(token)),
        Err(error) => match refresh_token {
            Some(refresh_token) => Ok(Parsed::Refused {
                error,
                refresh_token: SecretString::from(refresh_token),
            }),
            None => Err(error),
        },
    }
}

/// The token in a 2xx body that is not an error object.
fn assemble_response(
    raw: RawTokenResponse,
    refresh_token: Option<String>,
    status: StatusCode,
    issued_at: Instant,
    lifetimes: &Lifetimes,
    requested_scope: Option<&str>,
) -> Result<Token, Error> {
    let Some(access_token) = raw.access_token else {
        return Err(Error::invalid_response(
            status,
            "the body has no access_token",
        ));
    };
    match raw.token_type.as_deref() {
        None => {
            tracing::debug!("token response has no token_type; assuming Bearer");
        }
        Some(t) if t.eq_ignore_ascii_case("bearer") => {}
        Some(other) => {
            let shown: String = other
                .chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .take(32)
                .collect();
            return Err(Error::invalid_response(
                status,
                format!("unsupported token_type {shown:?} (only Bearer is supported)"),
            ));
        }
    }
    let lifetime = match raw.expires_in.as_ref().map(ExpiresIn::seconds) {
        Some(Some(secs)) if secs <= 0.0 => lifetimes.min,
        Some(Some(secs)) => Duration::try_from_secs_f64(secs).unwrap_or(lifetimes.max),
        Some(None) => {
            tracing::warn!(
                default_secs = lifetimes.default.as_secs(),
                "token response has an unreadable expires_in; assuming the default lifetime"
            );
            lifetimes.default
        }
        None => lifetimes.default,
    };
    let lifetime = lifetimes.clamp(lifetime);
    let scope = raw.scope.or_else(|| requested_scope.map(str::to_owned));
    Token::assemble(
        access_token,
        issued_at,
        checked_add(issued_at, lifetime),
        scope,
        refresh_token,
        status,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn parse(body: &str) -> Result<Token, Error> {
        let now = Instant::now();
        match parse_token_response(
            StatusCode::OK,
            body.as_bytes(),
            now,
            &Lifetimes::default(),
            Some("req"),
        )? {
            Parsed::Token(t) => Ok(t),
            Parsed::Error { .. } => panic!("unexpected error body"),
            Parsed::Refused { error, .. } => Err(error),
        }
    }

    #[tokio::test]
    async fn expires_in_as_number_string_float_or_missing() {
        let secs = |body: &str| parse(body).unwrap().lifetime().as_secs();
        assert_eq!(
            secs(r#"{"access_token":"a","token_type":"Bearer","expires_in":3600}"#),
            3600
        );
        assert_eq!(
            secs(r#"{"access_token":"a","token_type":"bearer","expires_in":"120"}"#),
            120
        );
        assert_eq!(secs(r#"{"access_token":"a","expires_in":" 90 "}"#), 90);
        assert_eq!(secs(r#"{"access_token":"a","expires_in":59.9}"#), 59);
        assert_eq!(secs(r#"{"access_token":"a"}"#), 300);
        assert_eq!(secs(r#"{"access_token":"a","expires_in":"soon"}"#), 300);
        assert_eq!(secs(r#"{"access_token":"a","expires_in":null}"#), 300);
    }

    #[tokio::test]
    async fn absurd_lifetimes_are_clamped() {
        let secs = |body: &str| parse(body).unwrap().lifetime().as_secs();
        assert_eq!(secs(r#"{"access_token":"a","expires_in":0}"#), 1);
        assert_eq!(secs(r#"{"access_token":"a","expires_in":-5}"#), 1);
        assert_eq!(
            secs(r#"{"access_token":"a","expires_in":18446744073709551615}"#),
            86400
        );
        assert_eq!(secs(r#"{"access_token":"a","expires_in":1e300}"#), 86400);
        assert_eq!(
            secs(r#"{"access_token":"a","expires_in":"99999999999999999999999"}"#),
            86400
        );
    }

    #[tokio::test]
    async fn scope_defaults_to_the_requested_one() {
        assert_eq!(
            parse(r#"{"access_token":"a"}"#).unwrap().scope(),
            Some("req")
        );
        assert_eq!(
            parse(r#"{"access_token":"a","scope":"x y"}"#)
                .unwrap()
                .scope(),
            Some("x y")
        );
    }

    #[tokio::test]
    async fn bad_bodies_are_typed_errors_without_the_token() {
        for (body, expect) in [
            ("<html>hi</html>", "not JSON"),
            ("", "not JSON"),
            ("[1,2]", "not a token response"),
            (r#"{"token_type":"Bearer"}"#, "no access_token"),
            (r#"{"access_token":"sec ret"}"#, "cannot be sent"),
            (r#"{"access_token":""}"#, "empty"),
            (
                r#"{"access_token":"secret","token_type":"mac"}"#,
                "unsupported token_type",
            ),
            (r#"{"access_token":12345}"#, "not a token response"),
        ] {
            let err = parse(body).unwrap_err();
            let text = format!("{err} {err:?}");
            assert!(text.contains(expect), "{body}: {text}");
            assert!(
                !text.contains("secret") && !text.contains("sec ret"),
                "{text}"
            );
            assert!(matches!(err, Error::InvalidResponse { .. }));
        }
    }

    #[tokio::test]
    async fn error_object_in_a_200_is_not_a_token() {
        let r = parse_token_response(
            StatusCode::OK,
            br#"{"error":"server_error"}"#,
            Instant::now(),
            &Lifetimes::default(),
            None,
        )
        .unwrap();
        assert!(matches!(r, Parsed::Error { .. }));
    }

    #[tokio::test]
    async fn debug_is_redacted() {
        let t = parse(r#"{"access_token":"hunter2","refresh_token":"r-hunter3"}"#).unwrap();
        let dbg = format!("{t:?}");
        assert!(!dbg.contains("hunter"), "{dbg}");
        assert!(dbg.contains("[REDACTED]"));
        assert_eq!(t.refresh_token().unwrap().expose_secret(), "r-hunter3");
        assert_eq!(format!("{:?}", t.header_value()), "Sensitive");
    }
}
