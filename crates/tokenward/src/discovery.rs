//! Authorization server discovery: every endpoint from one issuer URL (RFC 8414 authorization
//! server metadata, and OpenID Connect Discovery 1.0).
//!
//! [`AuthorizationServer::discover`] fetches the issuer's metadata document and checks that
//! the `issuer` it names is exactly the issuer asked for (RFC 8414 §3.3): a document that
//! names another issuer is refused, so one server cannot pass itself off as another. The
//! grants, the code flow, introspection and revocation are then built from it with their
//! `from_issuer` constructors; they share its HTTP client (one connection pool).
//!
//! # Where the document is looked for
//!
//! For an issuer `https://auth.example.com/tenant-a`, in this order (see [`WellKnown`]):
//!
//! 1. `https://auth.example.com/.well-known/oauth-authorization-server/tenant-a` (RFC 8414
//!    §3.1: the well-known path goes *between* the host and the issuer's path);
//! 2. `https://auth.example.com/tenant-a/.well-known/openid-configuration` (OpenID Connect
//!    Discovery §4: appended to the issuer).
//!
//! The second is tried only when the first is not there (a 4xx other than 429, or a body
//! that is not a JSON object). A document that is there but names another issuer stops the
//! discovery: it is never skipped in favour of the next.
//!
//! # Fetched again
//!
//! Servers move endpoints and rotate metadata, and a client that fetched it once at start-up
//! keeps calling the old URLs. The metadata is fetched again, *before* the next request to
//! one of its endpoints (never by a background task):
//!
//! * once it is older than [`max_age`](AuthorizationServerBuilder::max_age) (24 hours by
//!   default), and
//! * after a request to one of its endpoints could not connect, or was answered 404 Not
//!   Found or 410 Gone: the endpoint may have moved.
//!
//! At most once per [`min_refetch_interval`](AuthorizationServerBuilder::min_refetch_interval)
//! (one minute by default), so a failing endpoint does not turn into a stream of metadata
//! requests. A re-fetch that fails, or that brings a document for another issuer, keeps the
//! metadata already held (with a WARN event): a failure never costs working endpoints.
//!
//! # Example
//!
//! ```
//! use tokenward::{AuthorizationServer, ClientCredentials, TokenCache};
//! use tokenward_testkit::FakeServer;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tokenward::Error> {
//! # let fake = FakeServer::builder().client("my-client", "s3cr3t").build();
//! # let issuer_url = fake.issuer();
//! let server = AuthorizationServer::builder(&issuer_url)
//! #   .http_client(fake.http_client())
//!     .discover()
//!     .await?;
//! let grant = ClientCredentials::from_issuer(&server, "my-client")
//!     .client_secret("s3cr3t")
//!     .build()?;
//! let cache = TokenCache::builder(grant).build();
//! assert!(cache.header().await?.to_str().unwrap().starts_with("Bearer "));
//! # Ok(()) }
//! ```

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::{StatusCode, Uri};
use serde::Deserialize;
use tokio::time::Instant;

use crate::endpoint::{default_http_client, parse_url};
use crate::error::{Error, TransportError, TransportErrorKind};
use crate::redact::redact_url;
use crate::transport::{HttpClient, read_body};

/// Default [`max_age`](AuthorizationServerBuilder::max_age).
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);
/// Default [`min_refetch_interval`](AuthorizationServerBuilder::min_refetch_interval).
const DEFAULT_MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(60);
/// Default [`fetch_timeout`](AuthorizationServerBuilder::fetch_timeout).
const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Metadata documents are small; this leaves room for servers that list a lot.
const MAX_METADATA_BYTES: usize = 256 * 1024;

const OAUTH_WELL_KNOWN: &str = "/.well-known/oauth-authorization-server";
const OPENID_WELL_KNOWN: &str = "/.well-known/openid-configuration";

/// Which well-known URLs [`AuthorizationServer::discover`] tries (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WellKnown {
    /// RFC 8414's `oauth-authorization-server`, then OpenID Connect's `openid-configuration`
    /// (the default).
    #[default]
    Any,
    /// Only RFC 8414's `/.well-known/oauth-authorization-server`, inserted before the
    /// issuer's path.
    OAuth,
    /// Only OpenID Connect's `/.well-known/openid-configuration`, appended to the issuer.
    OpenId,
}

/// An authorization server's metadata (RFC 8414 §2; OpenID Connect Discovery §3). Only what
/// tokenward uses, or a user may want to check, is kept; unknown fields are ignored.
///
/// Every endpoint is an absolute http(s) URL (checked when the document is fetched).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct ServerMetadata {
    /// The issuer identifier: exactly the issuer that was discovered.
    pub issuer: String,
    /// The authorization endpoint, for the authorization code flow.
    #[serde(default)]
    pub authorization_endpoint: Option<String>,
    /// The token endpoint.
    #[serde(default)]
    pub token_endpoint: Option<String>,
    /// The introspection endpoint (RFC 7662).
    #[serde(default)]
    pub introspection_endpoint: Option<String>,
    /// The revocation endpoint (RFC 7009).
    #[serde(default)]
    pub revocation_endpoint: Option<String>,
    /// The server's JSON Web Key Set.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// OpenID Connect's userinfo endpoint.
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
    /// Scopes the server supports, if it says.
    #[serde(default)]
    pub scopes_supported: Vec<String>,
    /// Grant types the server supports, if it says (RFC 8414: `authorization_code` and
    /// `implicit` when it does not).
    #[serde(default)]
    pub grant_types_supported: Vec<String>,
    /// Client authentication methods of the token endpoint (RFC 8414:
    /// `client_secret_basic` when it does not say).
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Vec<String>,
    /// Signing algorithms the token endpoint accepts for `private_key_jwt` assertions.
    #[serde(default)]
    pub token_endpoint_auth_signing_alg_values_supported: Vec<String>,
    /// PKCE methods the server supports (RFC 7636).
    #[serde(default)]
    pub code_challenge_methods_supported: Vec<String>,
    /// Whether the authorization response carries `iss` (RFC 9207). When it does, a flow
    /// built [from the issuer](crate::AuthorizationCode::from_issuer) requires it.
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
}

impl ServerMetadata {
    /// The URL of `endpoint`, if the server has one.
    pub(crate) fn endpoint(&self, endpoint: EndpointKind) -> Option<&str> {
        match endpoint {
            EndpointKind::Token => self.token_endpoint.as_deref(),
            EndpointKind::Introspection => self.introspection_endpoint.as_deref(),
            EndpointKind::Revocation => self.revocation_endpoint.as_deref(),
            EndpointKind::Authorization => self.authorization_endpoint.as_deref(),
        }
    }

    /// Every endpoint must be an absolute http(s) URL without a fragment, and https when the
    /// issuer is: metadata cannot send credentials over plain http.
    fn validate(&self) -> Result<(), DiscoveryError> {
        let https = self.issuer.starts_with("https://");
        let urls = [
            ("authorization_endpoint", &self.authorization_endpoint),
            ("token_endpoint", &self.token_endpoint),
            ("introspection_endpoint", &self.introspection_endpoint),
            ("revocation_endpoint", &self.revocation_endpoint),
            ("jwks_uri", &self.jwks_uri),
            ("userinfo_endpoint", &self.userinfo_endpoint),
        ];
        for (field, url) in urls {
            let Some(url) = url else { continue };
            if parse_url(url).is_err() || url.contains('#') {
                return Err(DiscoveryError::Invalid(
                    format!("its {field} is not an absolute http(s) URL without a fragment").into(),
                ));
            }
            if https && !url.starts_with("https://") {
                return Err(DiscoveryError::Invalid(
                    format!("its {field} is not https, though the issuer is").into(),
                ));
            }
        }
        Ok(())
    }
}

/// The endpoints a grant can be built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EndpointKind {
    Token,
    Introspection,
    Revocation,
    Authorization,
}

impl EndpointKind {
    fn field(self) -> &'static str {
        match self {
            EndpointKind::Token => "token_endpoint",
            EndpointKind::Introspection => "introspection_endpoint",
            EndpointKind::Revocation => "revocation_endpoint",
            EndpointKind::Authorization => "authorization_endpoint",
        }
    }
}

/// Why discovery failed. See [`Error::Discovery`].
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The metadata names another issuer than the one discovered (RFC 8414 §3.3 forbids
    /// using it). Often only a trailing `/`: give the issuer exactly as the server names it.
    #[error(
        "the metadata names the issuer {found:?}, not {expected:?}: it is refused (RFC 8414 §3.3); \
         give the issuer exactly as the server names it"
    )]
    IssuerMismatch {
        /// The issuer discovered.
        expected: String,
        /// The issuer the document names.
        found: String,
    },
    /// No metadata document at any of the well-known URLs tried.
    #[error("no authorization server metadata at {}", .tried.join(" or "))]
    NotFound {
        /// The URLs tried (without query or userinfo), and what each answered.
        tried: Vec<String>,
    },
    /// The document is not usable metadata.
    #[error("the authorization server metadata is unusable: {0}")]
    Invalid(Cow<'static, str>),
    /// The metadata has no endpoint of the kind being built.
    #[error("the authorization server's metadata has no {0}")]
    MissingEndpoint(&'static str),
    /// The metadata could not be fetched: the server is unreachable, slow, rate-limiting or
    /// failing. Retryable.
    #[error("the authorization server metadata could not be fetched from {url}: {reason}")]
    Unavailable {
        /// The URL (without query or userinfo).
        url: String,
        /// What happened: `HTTP 503`, `no answer within 10s`, a transport failure's kind.
        reason: Cow<'static, str>,
        /// The transport's error, when it failed.
        #[source]
        source: Option<TransportError>,
    },
}

impl DiscoveryError {
    pub(crate) fn is_retryable(&self) -> bool {
        matches!(self, DiscoveryError::Unavailable { .. })
    }
}

/// Builds an [`AuthorizationServer`]. Start with [`AuthorizationServer::builder`].
pub struct AuthorizationServerBuilder {
    issuer: String,
    well_known: WellKnown,
    http: Option<Arc<dyn HttpClient>>,
    max_age: Duration,
    min_refetch_interval: Duration,
    fetch_timeout: Duration,
}

impl fmt::Debug for AuthorizationServerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizationServerBuilder")
            .field("issuer", &redact_url(&self.issuer))
            .field("well_known", &self.well_known)
            .field("max_age", &self.max_age)
            .field("min_refetch_interval", &self.min_refetch_interval)
            .field("fetch_timeout", &self.fetch_timeout)
            .finish_non_exhaustive()
    }
}

impl AuthorizationServerBuilder {
    /// Which well-known URLs to try (default: [`WellKnown::Any`]).
    pub fn well_known(mut self, well_known: WellKnown) -> Self {
        self.well_known = well_known;
        self
    }

    /// The HTTP client for the metadata and, unless a grant is given its own, for every
    /// endpoint built from this server (default: a [`ReqwestClient`](crate::ReqwestClient)).
    pub fn http_client(mut self, http: impl HttpClient) -> Self {
        self.http = Some(Arc::new(http));
        self
    }

    /// Metadata older than this is fetched again before the next request to one of its
    /// endpoints (default 24 hours).
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// The metadata is fetched again at most this often, whatever prompts it (default one
    /// minute).
    pub fn min_refetch_interval(mut self, interval: Duration) -> Self {
        self.min_refetch_interval = interval;
        self
    }

    /// How long one metadata request may take (default 10 s).
    pub fn fetch_timeout(mut self, timeout: Duration) -> Self {
        self.fetch_timeout = timeout;
        self
    }

    /// Fetches and checks the metadata.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an issuer that is not an absolute http(s) URL without query or
    /// fragment (RFC 8414 §2); [`Error::Discovery`] when no document is found, one names
    /// another issuer, is not valid metadata, or cannot be fetched (retryable).
    pub async fn discover(self) -> Result<AuthorizationServer, Error> {
        let issuer = &self.issuer;
        let uri = parse_url(issuer)?;
        if uri.query().is_some() || issuer.contains('#') {
            return Err(Error::Config(
                format!(
                    "the issuer {:?} has a query or fragment, which RFC 8414 §2 forbids",
                    redact_url(issuer)
                )
                .into(),
            ));
        }
        let http = match self.http {
            Some(http) => http,
            None => default_http_client()?,
        };
        let source = Source {
            urls: well_known_urls(&uri, self.well_known),
            issuer: self.issuer,
            http,
            fetch_timeout: self.fetch_timeout,
        };
        let metadata = source.fetch().await.map_err(discovery)?;
        let now = Instant::now();
        Ok(AuthorizationServer {
            inner: Arc::new(Inner {
                source,
                max_age: self.max_age,
                min_refetch_interval: self.min_refetch_interval,
                state: Mutex::new(State {
                    metadata: Arc::new(metadata),
                    fetched_at: now,
                    attempted_at: now,
                    suspect: false,
                }),
                fetching: tokio::sync::Mutex::new(()),
            }),
        })
    }
}

fn discovery(error: DiscoveryError) -> Error {
    Error::Discovery(Box::new(error))
}

#[cfg(test)]
fn placeholder() -> ServerMetadata {
    ServerMetadata {
        issuer: String::new(),
        authorization_endpoint: None,
        token_endpoint: None,
        introspection_endpoint: None,
        revocation_endpoint: None,
        jwks_uri: None,
        userinfo_endpoint: None,
        scopes_supported: Vec::new(),
        grant_types_supported: Vec::new(),
        token_endpoint_auth_methods_supported: Vec::new(),
        token_endpoint_auth_signing_alg_values_supported: Vec::new(),
        code_challenge_methods_supported: Vec::new(),
        authorization_response_iss_parameter_supported: false,
    }
}

/// The well-known URLs for `issuer`, in the order they are tried.
fn well_known_urls(issuer: &Uri, which: WellKnown) -> Vec<String> {
    let origin = format!(
        "{}://{}",
        issuer.scheme_str().unwrap_or("https"),
        issuer.authority().map_or("", |a| a.as_str())
    );
    // Any terminating "/" is removed first (RFC 8414 §3.1; OpenID Connect Discovery §4.1).
    let path = issuer.path().trim_end_matches('/');
    let oauth = format!("{origin}{OAUTH_WELL_KNOWN}{path}");
    let openid = format!("{origin}{path}{OPENID_WELL_KNOWN}");
    match which {
        WellKnown::Any => vec![oauth, openid],
        WellKnown::OAuth => vec![oauth],
        WellKnown::OpenId => vec![openid],
    }
}

/// An authorization server found by its issuer URL, with its metadata: build grants and
/// clients from it with their `from_issuer` constructors. Cheap to clone: clones share the
/// metadata, its re-fetches and the HTTP client. See the [module docs](self).
#[derive(Clone)]
pub struct AuthorizationServer {
    inner: Arc<Inner>,
}

struct Inner {
    source: Source,
    max_age: Duration,
    min_refetch_interval: Duration,
    state: Mutex<State>,
    /// One metadata request at a time.
    fetching: tokio::sync::Mutex<()>,
}

/// Where and how the metadata is fetched.
struct Source {
    issuer: String,
    urls: Vec<String>,
    http: Arc<dyn HttpClient>,
    fetch_timeout: Duration,
}

struct State {
    metadata: Arc<ServerMetadata>,
    fetched_at: Instant,
    attempted_at: Instant,
    /// An endpoint failed as if it had moved: fetch again.
    suspect: bool,
}

impl fmt::Debug for AuthorizationServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizationServer")
            .field("issuer", &redact_url(&self.inner.source.issuer))
            .field("max_age", &self.inner.max_age)
            .field("min_refetch_interval", &self.inner.min_refetch_interval)
            .finish_non_exhaustive()
    }
}

impl AuthorizationServer {
    /// Starts configuring discovery for `issuer`, e.g. `https://auth.example.com` or
    /// `https://login.example.com/tenant-a/v2.0`: exactly the issuer identifier the server
    /// names in its metadata (and in its tokens' `iss`).
    pub fn builder(issuer: impl Into<String>) -> AuthorizationServerBuilder {
        AuthorizationServerBuilder {
            issuer: issuer.into(),
            well_known: WellKnown::Any,
            http: None,
            max_age: DEFAULT_MAX_AGE,
            min_refetch_interval: DEFAULT_MIN_REFETCH_INTERVAL,
            fetch_timeout: DEFAULT_FETCH_TIMEOUT,
        }
    }

    /// Discovers `issuer` with the defaults: `AuthorizationServer::builder(issuer).discover()`.
    pub async fn discover(issuer: impl Into<String>) -> Result<AuthorizationServer, Error> {
        Self::builder(issuer).discover().await
    }

    /// The issuer identifier.
    pub fn issuer(&self) -> &str {
        &self.inner.source.issuer
    }

    /// The metadata held now (no I/O).
    pub fn metadata(&self) -> Arc<ServerMetadata> {
        self.inner.lock().metadata.clone()
    }

    pub(crate) fn http_client(&self) -> Arc<dyn HttpClient> {
        self.inner.source.http.clone()
    }

    /// The URL of `endpoint` in the metadata held now, or the typed error for its absence.
    pub(crate) fn require(&self, endpoint: EndpointKind) -> Result<String, Error> {
        self.metadata()
            .endpoint(endpoint)
            .map(str::to_owned)
            .ok_or_else(|| discovery(DiscoveryError::MissingEndpoint(endpoint.field())))
    }

    /// The URL of `endpoint`, after fetching the metadata again if that is due.
    pub(crate) async fn resolve(&self, endpoint: EndpointKind) -> Result<Uri, Error> {
        if self.inner.lock().due(&self.inner, Instant::now()) {
            self.inner.refetch().await;
        }
        let url = self.require(endpoint)?;
        parse_url(&url)
    }

    /// Looks at the outcome of a request to one of the endpoints: one that could not
    /// connect, or was answered 404 or 410, may have moved, and the metadata is due to be
    /// fetched again. Returns whether it looked so.
    /// Only a failure of the URL the metadata names now counts: a late answer from a URL
    /// already replaced does not.
    pub(crate) fn observe(
        &self,
        endpoint: EndpointKind,
        from: &Uri,
        outcome: Result<StatusCode, TransportErrorKind>,
    ) -> bool {
        let moved = match outcome {
            Ok(status) => matches!(status, StatusCode::NOT_FOUND | StatusCode::GONE),
            Err(kind) => kind == TransportErrorKind::Connect,
        };
        if !moved {
            return false;
        }
        let mut state = self.inner.lock();
        let current = state
            .metadata
            .endpoint(endpoint)
            .is_some_and(|url| parse_url(url).is_ok_and(|url| &url == from));
        if current {
            state.suspect = true;
        }
        current
    }
}

impl State {
    fn due(&self, inner: &Inner, now: Instant) -> bool {
        // A `Duration::MAX` means never: no overflow.
        let passed =
            |since: Instant, after: Duration| since.checked_add(after).is_some_and(|at| now >= at);
        let wanted = self.suspect || passed(self.fetched_at, inner.max_age);
        wanted && passed(self.attempted_at, inner.min_refetch_interval)
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn refetch(&self) {
        // Due only by age: the metadata held works, so a request does not wait for another
        // one's fetch. After a failure it does: the endpoint may have moved.
        let _one = if self.lock().suspect {
            self.fetching.lock().await
        } else {
            match self.fetching.try_lock() {
                Ok(one) => one,
                Err(_) => return,
            }
        };
        let now = Instant::now();
        if !self.lock().due(self, now) {
            return; // another request fetched it meanwhile
        }
        self.lock().attempted_at = now;
        match self.source.fetch().await {
            Ok(metadata) => {
                let mut state = self.lock();
                state.metadata = Arc::new(metadata);
                state.fetched_at = now;
                state.suspect = false;
                tracing::debug!(issuer = %redact_url(&self.source.issuer), "fetched the authorization server metadata again");
            }
            Err(error) => {
                let age = now.saturating_duration_since(self.lock().fetched_at);
                tracing::warn!(
                    issuer = %redact_url(&self.source.issuer),
                    error = %crate::error::chain(&error),
                    age_s = age.as_secs(),
                    "fetching the authorization server metadata again failed; keeping the metadata held"
                );
            }
        }
    }
}

impl Source {
    /// Fetches from the well-known URLs in turn; see the module docs.
    async fn fetch(&self) -> Result<ServerMetadata, DiscoveryError> {
        let mut tried = Vec::new();
        for url in &self.urls {
            match self.fetch_one(url).await {
                Ok(metadata) => return Ok(metadata),
                Err(Absent(why)) => tried.push(format!("{} ({why})", redact_url(url))),
                Err(Stop(error)) => return Err(error),
            }
        }
        Err(DiscoveryError::NotFound { tried })
    }

    async fn fetch_one(&self, url: &str) -> Result<ServerMetadata, Fetch> {
        let uri =
            parse_url(url).map_err(|e| Stop(DiscoveryError::Invalid(e.to_string().into())))?;
        let request = http::Request::get(uri)
            .header(http::header::ACCEPT, "application/json")
            .body(bytes::Bytes::new())
            .map_err(|_| {
                Stop(DiscoveryError::Invalid(
                    "the well-known URL is invalid".into(),
                ))
            })?;
        let unavailable = |reason: Cow<'static, str>, source: Option<TransportError>| {
            Stop(DiscoveryError::Unavailable {
                url: redact_url(url),
                reason,
                source,
            })
        };
        let exchange = async {
            let response = self.http.send(request).await.map_err(Error::Transport)?;
            let (parts, body) = response.into_parts();
            let body = read_body(body, MAX_METADATA_BYTES).await?;
            Ok::<_, Error>((parts.status, body))
        };
        let (status, body) = match tokio::time::timeout(self.fetch_timeout, exchange).await {
            Err(_) => {
                let within = format!("no answer within {:?}", self.fetch_timeout);
                return Err(unavailable(within.into(), None));
            }
            Ok(Err(Error::Transport(error))) => {
                // The transport error says what failed.
                return Err(unavailable("the request failed".into(), Some(error)));
            }
            Ok(Err(Error::ResponseTooLarge { limit })) => {
                let reason = format!("the document exceeds {limit} bytes");
                return Err(Stop(DiscoveryError::Invalid(reason.into())));
            }
            Ok(Err(other)) => return Err(unavailable(other.to_string().into(), None)),
            Ok(Ok(answer)) => answer,
        };
        if status.is_redirection() {
            let reason = format!(
                "it answers HTTP {} (a redirect, not followed): give the issuer exactly as the server names it",
                status.as_u16()
            );
            return Err(Stop(DiscoveryError::Invalid(reason.into())));
        }
        if !status.is_success() {
            let reason = format!("HTTP {}", status.as_u16());
            if status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS {
                return Err(Absent(reason));
            }
            return Err(unavailable(reason.into(), None));
        }
        let value: serde_json::Value = match serde_json::from_slice(&body) {
            Ok(value @ serde_json::Value::Object(_)) => value,
            _ => return Err(Absent("not a JSON object".into())),
        };
        let metadata = ServerMetadata::deserialize(value).map_err(|e| {
            Stop(DiscoveryError::Invalid(
                format!("its fields are not RFC 8414 metadata ({e})").into(),
            ))
        })?;
        if metadata.issuer != self.issuer {
            return Err(Stop(DiscoveryError::IssuerMismatch {
                expected: self.issuer.clone(),
                found: metadata.issuer,
            }));
        }
        metadata.validate().map_err(Stop)?;
        Ok(metadata)
    }
}

/// How one well-known URL failed: not there (try the next), or stop.
enum Fetch {
    Absent(String),
    Stop(DiscoveryError),
}
use Fetch::{Absent, Stop};

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(issuer: &str, which: WellKnown) -> Vec<String> {
        well_known_urls(&issuer.parse().unwrap(), which)
    }

    #[test]
    fn the_well_known_path_goes_before_the_issuers_path() {
        assert_eq!(
            urls("https://auth.example.com", WellKnown::Any),
            [
                "https://auth.example.com/.well-known/oauth-authorization-server",
                "https://auth.example.com/.well-known/openid-configuration"
            ]
        );
        assert_eq!(
            urls("https://auth.example.com/", WellKnown::Any),
            [
                "https://auth.example.com/.well-known/oauth-authorization-server",
                "https://auth.example.com/.well-known/openid-configuration"
            ]
        );
        assert_eq!(
            urls("https://example.com:8443/tenant-a/v2/", WellKnown::Any),
            [
                "https://example.com:8443/.well-known/oauth-authorization-server/tenant-a/v2",
                "https://example.com:8443/tenant-a/v2/.well-known/openid-configuration"
            ]
        );
        assert_eq!(
            urls("http://127.0.0.1:9/x", WellKnown::OpenId),
            ["http://127.0.0.1:9/x/.well-known/openid-configuration"]
        );
        assert_eq!(
            urls("http://127.0.0.1:9/x", WellKnown::OAuth),
            ["http://127.0.0.1:9/.well-known/oauth-authorization-server/x"]
        );
    }

    #[test]
    fn endpoints_must_be_urls() {
        let mut metadata = placeholder();
        metadata.token_endpoint = Some("/token".into());
        assert!(matches!(
            metadata.validate(),
            Err(DiscoveryError::Invalid(why)) if why.contains("token_endpoint")
        ));
        metadata.token_endpoint = Some("https://a.example/token".into());
        assert!(metadata.validate().is_ok());
    }
}
