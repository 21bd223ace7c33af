//! Typed errors: every failure says what happened and what the operator should do.
//!
//! Errors are [`Clone`] because one refresh serves many callers: every caller waiting on a
//! refresh receives the same error value.
//!
//! # Example
//!
//! ```
//! use tokenward::Error;
//!
//! fn react(err: &Error) -> &'static str {
//!     if err.is_reauthorization_required() {
//!         "ask the user (or an org admin) to sign in again"
//!     } else if let Some(wait) = err.retry_after() {
//!         if wait.as_secs() > 60 { "back off for a while" } else { "retry shortly" }
//!     } else if err.is_retryable() {
//!         "retry with backoff"
//!     } else {
//!         "fix the configuration"
//!     }
//! }
//! # let _ = react;
//! ```

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, StatusCode};

use crate::redact::Sent;

/// A boxed error, as used by transports.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Displays `error` and each of its [`source`](std::error::Error::source)s, joined by `: `,
/// as anyhow's `{:#}` does: for a log line or a message that shows the whole cause.
///
/// Every error of tokenward's says what happened at its own level in its `Display` and
/// leaves the cause to `source()`, so each cause appears once in the chain.
///
/// ```
/// use tokenward::error::chain;
/// use tokenward::store::StoreError;
///
/// let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "permission denied");
/// let error = tokenward::Error::Store(StoreError::Read {
///     path: "/var/lib/app/grant.json".into(),
///     source: std::sync::Arc::new(io),
/// });
/// assert_eq!(
///     chain(&error).to_string(),
///     "could not read /var/lib/app/grant.json: permission denied"
/// );
/// ```
pub fn chain<'a>(error: &'a (dyn std::error::Error + 'a)) -> Chain<'a> {
    Chain(error)
}

/// An error and its sources, displayed one after another. Made by [`chain`].
#[derive(Debug, Clone, Copy)]
pub struct Chain<'a>(&'a (dyn std::error::Error + 'a));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(error) = source {
            write!(f, ": {error}")?;
            source = error.source();
        }
        Ok(())
    }
}

/// Everything that can go wrong while obtaining a token.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The token endpoint answered 429 (or the cache is still inside a `Retry-After` window
    /// from an earlier 429) and no usable token is cached.
    #[error(
        "the token endpoint is rate-limiting this client (HTTP 429): no token can be obtained for {}s; \
         the cache retries by itself after that",
        retry_after.as_secs_f64().ceil()
    )]
    RateLimited {
        /// How long until the cache will call the endpoint again (Retry-After, capped).
        retry_after: Duration,
        /// The 429 response that started the window.
        response: Option<Box<EndpointError>>,
    },

    /// A refresh failed a moment ago and the cache is cooling down: no request is made to the
    /// token endpoint until `retry_in` has passed. `error` is that failure.
    ///
    /// The cool-down grows with consecutive failures and ends with a success. A failure
    /// that only a new configuration fixes (`invalid_client`, `invalid_grant`, missing
    /// scopes) is held until the configuration changes (a rotated client secret, a new
    /// refresh token), a [`force_refresh`](crate::TokenCache::force_refresh), or the hold's
    /// cap; `retry_in` is then the time left of the cap. The questions asked of an error
    /// ([`is_retryable`](Error::is_retryable), [`is_reauthorization_required`](Error::is_reauthorization_required),
    /// [`status`](Error::status), ...) are answered for `error`; [`cause`](Error::cause)
    /// gives it.
    #[error("{error} (the last refresh failed; no new request for {}s)", retry_in.as_secs_f64().ceil())]
    CoolingDown {
        /// Time left until the cache calls the token endpoint again.
        retry_in: Duration,
        /// The failure that started the cool-down.
        error: Box<Error>,
    },

    /// The grant (refresh token, authorization code) is no longer valid: `invalid_grant`.
    /// Retrying cannot help; the user or an organisation admin must authorize again.
    #[error(
        "the grant was rejected ({0}): the refresh token or code is expired, revoked or already used; \
         the user or an organisation admin must authorize the application again"
    )]
    ReauthorizationRequired(Box<EndpointError>),

    /// The endpoint rejected the client's own credentials (`invalid_client`,
    /// `unauthorized_client`): a configuration problem, never retried.
    #[error(
        "the token endpoint rejected the client credentials ({0}): check the client id, the client \
         secret (rotated or expired?) and the client authentication method (basic or post)"
    )]
    InvalidClient(Box<EndpointError>),

    /// Any other error response from the token endpoint. Retryable when it is a 5xx, a 408
    /// or `temporarily_unavailable`; otherwise the request itself is wrong (for example
    /// `invalid_scope`).
    #[error("the token endpoint refused the request ({0})")]
    Endpoint(Box<EndpointError>),

    /// The endpoint answered 200 but the body is not a usable token response (not JSON, an
    /// error object, no `access_token`, an unsupported `token_type`, ...).
    #[error(
        "the token endpoint sent an unusable response (HTTP {status}): {reason}; check that the \
         token URL points at the OAuth 2.0 token endpoint"
    )]
    InvalidResponse {
        /// The response's status code.
        status: StatusCode,
        /// What was wrong with it. Never contains a token or a secret.
        reason: Cow<'static, str>,
    },

    /// The response body was larger than the configured limit and was not read.
    #[error("the token endpoint's response exceeded the {limit}-byte limit and was refused")]
    ResponseTooLarge {
        /// The limit in bytes.
        limit: usize,
    },

    /// The authorization server (its token, introspection or revocation endpoint) could not
    /// be reached, or the exchange broke off.
    #[error("could not reach the authorization server")]
    Transport(#[from] TransportError),

    /// The refresh (all of its attempts) did not finish within its deadline.
    #[error(
        "the token refresh did not finish within its {0:?} deadline; the endpoint may be hanging"
    )]
    Timeout(Duration),

    /// The refresh task ended without a result (it panicked or its runtime shut down).
    #[error("the token refresh was aborted before it finished (runtime shutting down?)")]
    RefreshAborted,

    /// The cache or a grant is configured wrongly.
    #[error("invalid tokenward configuration: {0}")]
    Config(Cow<'static, str>),

    /// The token was obtained but lacks scopes this grant requires: scope drift after a
    /// re-grant. The token is not handed out.
    #[error(
        "the token lacks required scopes: missing {missing:?} (granted {granted:?}); an organisation \
         admin must re-grant the application these scopes"
    )]
    InsufficientScope {
        /// The required scopes that the granted ones do not cover, space-separated.
        missing: String,
        /// What the server granted, space-separated.
        granted: String,
    },

    /// No refresh token is stored for this grant: it was never authorized, or its store was
    /// emptied. Run the authorization (code + PKCE) flow.
    #[error("no refresh token is stored for this grant: run the authorization flow to obtain one")]
    NoRefreshToken,

    /// The refresh token has not been used for so long that the server will soon (or has
    /// already) let it decay; tokenward refuses to use it and asks for re-authorization.
    #[error(
        "the refresh token has been idle for {} days (hard-fail at {} days): the user or an \
         organisation admin must authorize the application again; enable keep-alive to prevent this",
        idle.as_secs() / 86_400,
        limit.as_secs() / 86_400
    )]
    RefreshTokenDecayed {
        /// How long since the refresh token was last used.
        idle: Duration,
        /// The configured hard-fail age.
        limit: Duration,
    },

    /// The tenant is not configured. tokenward never falls back to another tenant's
    /// credentials.
    #[error(
        "unknown tenant {tenant:?}: no credentials are configured for it (no fallback is used)"
    )]
    UnknownTenant {
        /// The tenant key, as given.
        tenant: String,
    },

    /// A request needs a tenant's token, but names no tenant (no
    /// [`Tenant`](crate::Tenant) extension, or nothing a tenant extractor recognised).
    #[error(
        "the request names no tenant: add a Tenant extension to it (or bind the client to one tenant)"
    )]
    MissingTenant,

    /// The request names a tenant other than the one its client is bound to. tokenward
    /// refuses rather than send it with another tenant's credentials.
    #[error("the request names tenant {named:?}, but this client is bound to {bound}")]
    TenantMismatch {
        /// The tenant the request names.
        named: String,
        /// What the client is bound to: a tenant key, or one token cache.
        bound: String,
    },

    /// The tenant was removed, or its credentials replaced, while this request was in
    /// flight: no token is fetched with the credentials it had.
    #[error(
        "tenant {tenant:?} was removed or its credentials replaced while the request was in flight; no new token is fetched with the old credentials"
    )]
    TenantRemoved {
        /// The tenant key, as the cache is named.
        tenant: String,
    },

    /// The [resolver](crate::TenantCacheBuilder::resolver) that loads tenants failed for
    /// this one. Nothing is remembered: the next request for it asks the resolver again.
    #[error("the tenant resolver failed for tenant {tenant:?}")]
    TenantResolver {
        /// The tenant key.
        tenant: String,
        /// The resolver's error.
        #[source]
        source: Arc<dyn std::error::Error + Send + Sync>,
    },

    /// The authorization callback's `state` is missing or is not the one of the request it
    /// is completed with (possible CSRF). The code was not exchanged.
    #[error(
        "state mismatch: the callback does not belong to this authorization request (possible CSRF); the code was not exchanged"
    )]
    StateMismatch,

    /// The authorization callback's issuer (`iss`, RFC 9207) is missing or is not the
    /// configured one (possible mix-up attack). The code was not exchanged.
    #[error(
        "issuer mismatch: the callback's iss is {received:?}, expected {expected:?} (RFC 9207; possible mix-up attack): the code was not exchanged"
    )]
    IssuerMismatch {
        /// The configured issuer.
        expected: String,
        /// The callback's `iss`, if it had one.
        received: Option<String>,
    },

    /// The token store failed to load or persist the grant.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),

    /// The check URL of [`ClientCredentials::verify`](crate::ClientCredentials::verify) did
    /// not answer 2xx to the token just obtained (so the credentials themselves work): the
    /// [`CheckFailure`] says which side is wrong.
    #[error("the check URL failed: {0}")]
    CheckFailed(Box<CheckFailure>),

    /// Discovering the authorization server's endpoints from its issuer failed; see
    /// [`discovery`](crate::discovery).
    #[error(transparent)]
    Discovery(Box<crate::discovery::DiscoveryError>),
}

/// Why a check URL refused a token that was obtained. See [`Error::CheckFailed`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CheckFailure {
    /// The URL is not an absolute http(s) URL: nothing was sent.
    pub invalid_url: bool,
    /// The URL's status, if it answered.
    pub status: Option<StatusCode>,
    /// How its answer classifies ([`classify`](crate::classify())), if it does.
    pub failure: Option<crate::classify::Failure>,
    /// Why it did not answer, if it did not.
    pub transport: Option<TransportError>,
}

impl fmt::Display for CheckFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::classify::Failure;
        if self.invalid_url {
            return f.write_str(
                "the URL is not an absolute http(s) URL (not shown: it may hold credentials)",
            );
        }
        if let Some(transport) = &self.transport {
            return match transport.kind() {
                TransportErrorKind::Connect => f.write_str("the URL could not be reached"),
                TransportErrorKind::Timeout => f.write_str("the URL did not answer in time"),
                _ => f.write_str("the URL's answer could not be read"),
            };
        }
        let Some(status) = self.status else {
            return f.write_str("the URL did not answer");
        };
        match &self.failure {
            Some(Failure::InvalidToken { .. }) => write!(
                f,
                "{status}: the API rejected the token (invalid_token): it does not take tokens \
                 of this token endpoint or client (check the audience and the issuer)"
            ),
            Some(Failure::Unauthorized) => write!(
                f,
                "{status} without invalid_token: the URL wants other credentials, or it is \
                 not the API's"
            ),
            Some(Failure::InsufficientScope { scope, .. }) => {
                write!(f, "{status}: the token lacks a scope the API needs")?;
                if let Some(scope) = scope {
                    write!(f, " ({scope})")?;
                }
                f.write_str(": re-grant the client")
            }
            Some(Failure::Forbidden) => {
                write!(f, "{status}: the client is authenticated but not allowed")
            }
            _ if status == StatusCode::NOT_FOUND => {
                write!(f, "{status}: nothing at this URL: check it")
            }
            _ if status.is_redirection() => {
                write!(f, "{status}: a redirect, not an answer: give the final URL")
            }
            _ => write!(f, "the URL answered {status}"),
        }
    }
}

impl Error {
    /// Whether trying again later can succeed: transport failures, timeouts, 5xx, 408,
    /// `temporarily_unavailable` and 429.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::CoolingDown { error, .. } => error.is_retryable(),
            Error::RateLimited { .. } => true,
            Error::Endpoint(e) => e.is_transient(),
            Error::Transport(_) | Error::Timeout(_) | Error::RefreshAborted => true,
            Error::ResponseTooLarge { .. } => false,
            Error::Store(e) => e.is_retryable(),
            Error::Discovery(e) => e.is_retryable(),
            // A database or a secret store: most failures pass.
            Error::TenantResolver { .. } => true,
            Error::ReauthorizationRequired(_)
            | Error::InvalidClient(_)
            | Error::InvalidResponse { .. }
            | Error::Config(_)
            | Error::InsufficientScope { .. }
            | Error::NoRefreshToken
            | Error::RefreshTokenDecayed { .. }
            | Error::UnknownTenant { .. }
            | Error::MissingTenant
            | Error::TenantMismatch { .. }
            | Error::TenantRemoved { .. }
            | Error::StateMismatch
            | Error::IssuerMismatch { .. }
            | Error::CheckFailed(_) => false,
        }
    }

    /// A short, stable name for this kind of failure: the `outcome` label of the
    /// [metrics](crate::metrics) and the `kind` of a health report's last error.
    ///
    /// `rate_limited`, `server_error` (5xx, 408, `temporarily_unavailable`), `client_error`
    /// (another 4xx), `invalid_client`, `invalid_grant`, `no_refresh_token`, `decayed` (these
    /// three need a new authorization: [`is_reauthorization_required`](Self::is_reauthorization_required)),
    /// `insufficient_scope`, `invalid_response`, `timeout`, `transport`, `aborted`, `config`,
    /// `store`, `tenant`, `tenant_resolver`, `authorization_response`, `check_failed`,
    /// `discovery`. A cool-down reports the
    /// failure it holds.
    ///
    /// ```
    /// assert_eq!(tokenward::Error::NoRefreshToken.code(), "no_refresh_token");
    /// ```
    pub fn code(&self) -> &'static str {
        match self {
            Error::CoolingDown { error, .. } => error.code(),
            Error::RateLimited { .. } => "rate_limited",
            Error::ReauthorizationRequired(_) => "invalid_grant",
            Error::InvalidClient(_) => "invalid_client",
            Error::Endpoint(e) if e.is_transient() => "server_error",
            Error::Endpoint(_) => "client_error",
            Error::InvalidResponse { .. } | Error::ResponseTooLarge { .. } => "invalid_response",
            Error::Transport(_) => "transport",
            Error::Timeout(_) => "timeout",
            Error::RefreshAborted => "aborted",
            Error::Config(_) => "config",
            Error::InsufficientScope { .. } => "insufficient_scope",
            Error::NoRefreshToken => "no_refresh_token",
            Error::RefreshTokenDecayed { .. } => "decayed",
            Error::UnknownTenant { .. }
            | Error::MissingTenant
            | Error::TenantMismatch { .. }
            | Error::TenantRemoved { .. } => "tenant",
            Error::StateMismatch | Error::IssuerMismatch { .. } => "authorization_response",
            Error::Store(_) => "store",
            Error::CheckFailed(_) => "check_failed",
            Error::Discovery(_) => "discovery",
            Error::TenantResolver { .. } => "tenant_resolver",
        }
    }

    /// Whether a refresh should try again *at once, within the same refresh* (with backoff):
    /// the transient failures, but not 429, which has its own window.
    pub(crate) fn is_transient(&self) -> bool {
        !matches!(
            self,
            Error::RateLimited { .. } | Error::Store(_) | Error::CoolingDown { .. }
        ) && self.is_retryable()
    }

    /// Whether the transient failure provably had no effect at the server: the request was
    /// never sent (a connect error), or the authorization server said it is unavailable
    /// (`temporarily_unavailable`, RFC 6749 §5.2). A timeout, a broken connection or a 5xx
    /// (even one with an error object: gateways send those too, and `server_error` may come
    /// after a rotation was committed) may come after the server acted.
    pub(crate) fn had_no_effect(&self) -> bool {
        match self {
            Error::Transport(t) => t.kind() == TransportErrorKind::Connect,
            Error::Endpoint(e) => e
                .error_code()
                .is_some_and(|c| c.eq_ignore_ascii_case("temporarily_unavailable")),
            _ => false,
        }
    }

    /// Whether only a new configuration fixes this: the cache holds it (makes no request)
    /// until the source's configuration changes.
    pub(crate) fn needs_new_configuration(&self) -> bool {
        matches!(
            self,
            Error::InvalidClient(_) | Error::InsufficientScope { .. }
        ) || self.is_reauthorization_required()
    }

    /// The failure itself: for [`Error::CoolingDown`], the refresh failure it holds; for
    /// anything else, `self`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tokenward::Error;
    ///
    /// let held = Error::CoolingDown {
    ///     retry_in: Duration::from_secs(30),
    ///     error: Box::new(Error::NoRefreshToken),
    /// };
    /// assert!(matches!(held.cause(), Error::NoRefreshToken));
    /// assert!(held.is_reauthorization_required());
    /// assert_eq!(held.retry_after(), Some(Duration::from_secs(30)));
    /// ```
    pub fn cause(&self) -> &Error {
        match self {
            Error::CoolingDown { error, .. } => error.cause(),
            other => other,
        }
    }

    /// `true` for `invalid_grant`: the user or an admin must authorize again.
    ///
    /// Also `true` when no refresh token is stored and when the refresh token decayed.
    pub fn is_reauthorization_required(&self) -> bool {
        matches!(
            self.cause(),
            Error::ReauthorizationRequired(_)
                | Error::NoRefreshToken
                | Error::RefreshTokenDecayed { .. }
        )
    }

    /// How long until the cache calls the token endpoint again: the 429 window, or the
    /// cool-down after a failed refresh.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::RateLimited { retry_after, .. } => Some(*retry_after),
            Error::CoolingDown { retry_in, .. } => Some(*retry_in),
            _ => None,
        }
    }

    /// The token endpoint's error response, when there was one.
    pub fn endpoint_error(&self) -> Option<&EndpointError> {
        match self.cause() {
            Error::RateLimited { response, .. } => response.as_deref(),
            Error::ReauthorizationRequired(e) | Error::InvalidClient(e) | Error::Endpoint(e) => {
                Some(e)
            }
            _ => None,
        }
    }

    /// The HTTP status of the token endpoint's response, when there was one.
    pub fn status(&self) -> Option<StatusCode> {
        match self.cause() {
            Error::InvalidResponse { status, .. } => Some(*status),
            _ => self.endpoint_error().map(|e| e.status),
        }
    }

    pub(crate) fn invalid_response(
        status: StatusCode,
        reason: impl Into<Cow<'static, str>>,
    ) -> Self {
        Error::InvalidResponse {
            status,
            reason: reason.into(),
        }
    }
}

/// An error response from the token endpoint, kept whole: status, headers and the RFC 6749
/// §5.2 error body.
#[derive(Clone)]
#[non_exhaustive]
pub struct EndpointError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The response headers (`Set-Cookie` and similar are marked sensitive and not printed).
    pub headers: HeaderMap,
    /// The parsed OAuth error body, when the body was one.
    pub oauth: Option<OAuthError>,
}

impl EndpointError {
    /// An error response with this status, these headers and this error body (for custom
    /// token sources and tests).
    pub fn new(status: StatusCode, headers: HeaderMap, oauth: Option<OAuthError>) -> Self {
        EndpointError {
            status,
            headers,
            oauth,
        }
    }

    /// The OAuth `error` code, if the body carried one.
    pub fn error_code(&self) -> Option<&str> {
        self.oauth.as_ref().map(|o| o.error.as_str())
    }

    /// Whether the failure is temporary, as [`classify`](crate::classify()) decides: 408,
    /// 500, 502, 503, 504, or the codes `temporarily_unavailable` / `server_error` (in any
    /// case). Not 501 or 505: the same request fails the same way.
    pub fn is_transient(&self) -> bool {
        matches!(
            crate::classify::classify_code(self.status, &self.headers, self.error_code()),
            Some(crate::classify::Action::Backoff { .. })
        )
    }
}

impl fmt::Debug for EndpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointError")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("oauth", &self.oauth)
            .finish()
    }
}

impl fmt::Display for EndpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {}", self.status.as_u16())?;
        if let Some(o) = &self.oauth {
            write!(f, " {}", o.error)?;
            if let Some(d) = &o.error_description {
                write!(f, ": {d}")?;
            }
        }
        Ok(())
    }
}

/// The RFC 6749 §5.2 error body.
///
/// Some servers quote what they were sent ("Invalid refresh token: …"). tokenward knows every
/// secret it sent — client secrets, refresh tokens, codes and code verifiers, the tokens it
/// introspects or revokes, every extra [`param`](crate::grant::GrantBuilder::param) value —
/// and replaces each occurrence in `error`, `error_description` and `error_uri` with
/// `[REDACTED]` before the error is built, so `Display`, `Debug` and logs never show them.
/// The text as the server sent it stays behind
/// [`unredacted_description`](Self::unredacted_description) and its siblings.
///
/// Secrets of 8 bytes or more are replaced wherever they occur; shorter ones where they stand
/// as a whole word (not touching a letter, digit or `_`), so a short client secret does not
/// wreck the text. Their form-urlencoded spelling is replaced too.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[non_exhaustive]
pub struct OAuthError {
    /// The error code, e.g. `invalid_grant`.
    pub error: String,
    /// Human-readable text from the server, with the secrets tokenward sent redacted.
    #[serde(default)]
    pub error_description: Option<String>,
    /// A page about the error, with the secrets tokenward sent redacted.
    #[serde(default)]
    pub error_uri: Option<String>,
    /// The server's text as it came, when secrets were redacted from it.
    #[serde(skip)]
    unredacted: Option<Box<Unredacted>>,
}

#[derive(Clone, PartialEq, Eq)]
struct Unredacted {
    error: String,
    error_description: Option<String>,
    error_uri: Option<String>,
}

impl OAuthError {
    /// An error body with this code and no description.
    pub fn new(error: impl Into<String>) -> Self {
        OAuthError {
            error: error.into(),
            error_description: None,
            error_uri: None,
            unredacted: None,
        }
    }

    /// With this `error_description`.
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.error_description = Some(description.into());
        self
    }

    /// Whether tokenward replaced secrets it had sent in this error's text with `[REDACTED]`.
    pub fn is_redacted(&self) -> bool {
        self.unredacted.is_some()
    }

    /// The `error_description` exactly as the server sent it: **it may hold a secret**
    /// (a refresh token, the client secret) that the server echoed. Never log or show it.
    pub fn unredacted_description(&self) -> Option<&str> {
        match &self.unredacted {
            Some(raw) => raw.error_description.as_deref(),
            None => self.error_description.as_deref(),
        }
    }

    /// The `error_uri` exactly as the server sent it: it may hold a secret. Never log it.
    pub fn unredacted_uri(&self) -> Option<&str> {
        match &self.unredacted {
            Some(raw) => raw.error_uri.as_deref(),
            None => self.error_uri.as_deref(),
        }
    }

    /// The `error` code exactly as the server sent it: it may hold a secret. Never log it.
    pub fn unredacted_error(&self) -> &str {
        match &self.unredacted {
            Some(raw) => &raw.error,
            None => &self.error,
        }
    }

    /// Replaces the secrets of `sent` in the server's text, keeping the original aside.
    pub(crate) fn redact(mut self, sent: &Sent<'_>) -> Self {
        let error = sent.scrub(&self.error).into_owned();
        let scrub = |text: &Option<String>| text.as_deref().map(|t| sent.scrub(t).into_owned());
        let error_description = scrub(&self.error_description);
        let error_uri = scrub(&self.error_uri);
        if error == self.error
            && error_description == self.error_description
            && error_uri == self.error_uri
        {
            return self;
        }
        let raw = Unredacted {
            error: std::mem::replace(&mut self.error, error),
            error_description: std::mem::replace(&mut self.error_description, error_description),
            error_uri: std::mem::replace(&mut self.error_uri, error_uri),
        };
        // Redacting twice keeps the first original.
        self.unredacted.get_or_insert(Box::new(raw));
        self
    }
}

/// Prints the redacted text only.
impl fmt::Debug for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("OAuthError");
        s.field("error", &self.error)
            .field("error_description", &self.error_description)
            .field("error_uri", &self.error_uri);
        if self.is_redacted() {
            s.field("redacted", &true);
        }
        s.finish()
    }
}

/// What kind of transport failure happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportErrorKind {
    /// The connection could not be made: nothing was sent. A refresh token exchange is
    /// repeated at once after it, so a custom [`HttpClient`](crate::HttpClient) must use it
    /// only when no byte of the request can have reached the server.
    Connect,
    /// The transport's own timeout fired.
    Timeout,
    /// The connection broke while the request or response was in flight.
    Io,
    /// Anything else.
    Other,
}

impl fmt::Display for TransportErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransportErrorKind::Connect => "connect",
            TransportErrorKind::Timeout => "timeout",
            TransportErrorKind::Io => "connection broken",
            TransportErrorKind::Other => "transport",
        })
    }
}

/// A failure of the [`HttpClient`](crate::HttpClient) that carries token requests.
#[derive(Debug, Clone)]
pub struct TransportError {
    kind: TransportErrorKind,
    source: Arc<dyn std::error::Error + Send + Sync + 'static>,
}

impl TransportError {
    /// Wraps a transport's own error.
    pub fn new(kind: TransportErrorKind, source: impl Into<BoxError>) -> Self {
        Self::from_box(kind, source.into())
    }

    /// Wraps an already boxed error.
    pub fn from_box(kind: TransportErrorKind, source: BoxError) -> Self {
        TransportError {
            kind,
            source: Arc::from(source),
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> TransportErrorKind {
        self.kind
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The cause is the source, not repeated here.
        f.write_str(match self.kind {
            TransportErrorKind::Connect => "could not connect",
            TransportErrorKind::Timeout => "the transport timed out",
            TransportErrorKind::Io => "the connection broke",
            TransportErrorKind::Other => "the transport failed",
        })
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(status: u16, code: Option<&str>) -> Box<EndpointError> {
        Box::new(EndpointError::new(
            StatusCode::from_u16(status).unwrap(),
            HeaderMap::new(),
            code.map(OAuthError::new),
        ))
    }

    #[test]
    fn retryability_follows_the_failure() {
        assert!(Error::Endpoint(endpoint(503, None)).is_retryable());
        assert!(Error::Endpoint(endpoint(408, None)).is_retryable());
        assert!(Error::Endpoint(endpoint(400, Some("temporarily_unavailable"))).is_retryable());
        assert!(!Error::Endpoint(endpoint(400, Some("invalid_scope"))).is_retryable());
        // One classification: the same rules (and case rules) as a resource's response.
        assert!(Error::Endpoint(endpoint(400, Some("Temporarily_Unavailable"))).is_retryable());
        assert!(Error::Endpoint(endpoint(200, Some("server_error"))).is_retryable());
        assert!(
            !Error::Endpoint(endpoint(501, None)).is_retryable(),
            "501: not retried"
        );
        assert!(!Error::Endpoint(endpoint(505, None)).is_retryable());
        assert!(
            !Error::ReauthorizationRequired(endpoint(400, Some("invalid_grant"))).is_retryable()
        );
        assert!(!Error::InvalidClient(endpoint(401, Some("invalid_client"))).is_retryable());
        let limited = Error::RateLimited {
            retry_after: Duration::from_secs(3),
            response: None,
        };
        assert!(limited.is_retryable());
        assert!(!limited.is_transient());
        assert_eq!(limited.retry_after(), Some(Duration::from_secs(3)));
    }

    #[test]
    fn messages_tell_the_operator_what_to_do() {
        let e = Error::ReauthorizationRequired(endpoint(400, Some("invalid_grant")));
        let msg = e.to_string();
        assert!(msg.contains("HTTP 400 invalid_grant"), "{msg}");
        assert!(msg.contains("authorize the application again"), "{msg}");
        let e = Error::InvalidClient(endpoint(401, Some("invalid_client")));
        assert!(e.to_string().contains("check the client id"));
        assert_eq!(e.status(), Some(StatusCode::UNAUTHORIZED));
    }

    #[test]
    fn oauth_errors_keep_the_raw_text_behind_named_accessors() {
        let plain = OAuthError::new("invalid_grant").with_description("expired");
        let mut sent = Sent::default();
        sent.secret("rt-secret-value");
        // Nothing to redact: nothing kept aside, equal to what was built.
        let same = plain.clone().redact(&sent);
        assert_eq!(same, plain);
        assert!(!same.is_redacted());
        assert_eq!(same.unredacted_description(), Some("expired"));
        assert_eq!(same.unredacted_error(), "invalid_grant");

        let echoed = OAuthError::new("invalid_grant")
            .with_description("Invalid refresh token: rt-secret-value")
            .redact(&sent);
        assert!(echoed.is_redacted());
        assert_eq!(
            echoed.error_description.as_deref(),
            Some("Invalid refresh token: [REDACTED]")
        );
        let debug = format!("{echoed:?}");
        assert!(!debug.contains("rt-secret-value"), "{debug}");
        assert!(debug.contains("redacted: true"), "{debug}");
        // Redacting again (with other secrets) keeps the server's original.
        let mut more = Sent::default();
        more.secret("Invalid");
        let twice = echoed.redact(&more);
        assert_eq!(
            twice.error_description.as_deref(),
            Some("[REDACTED] refresh token: [REDACTED]")
        );
        assert_eq!(
            twice.unredacted_description(),
            Some("Invalid refresh token: rt-secret-value")
        );
        let e = EndpointError::new(StatusCode::BAD_REQUEST, HeaderMap::new(), Some(twice));
        assert_eq!(
            e.to_string(),
            "HTTP 400 invalid_grant: [REDACTED] refresh token: [REDACTED]"
        );
    }
}
