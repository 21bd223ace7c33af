//! Token sources: the grants that obtain access tokens.
//!
//! A [`TokenSource`] makes *one attempt* to obtain a token; the [`TokenCache`](crate::TokenCache)
//! decides when to call it, retries it with backoff, and shares its result. Built in:
//!
//! * [`ClientCredentials`]: RFC 6749 §4.4, machine-to-machine.
//! * [`RefreshTokenGrant`]: RFC 6749 §6, with refresh-token rotation (a response carrying a
//!   new refresh token replaces the old one; a response without one keeps it).
//! * [`from_fn`]: any async function, for tokens that come from elsewhere.
//!
//! # Example
//!
//! ```
//! use tokenward::{ClientAuth, ClientCredentials};
//!
//! let grant = ClientCredentials::builder("https://auth.example.com/oauth/token", "my-client")
//!     .client_secret("s3cr3t")
//!     .auth_method(ClientAuth::Post)
//!     .scope("jobs.read")
//!     .param("audience", "https://api.example.com")
//!     .build()
//!     .unwrap();
//! // Debug output never shows the secret.
//! assert!(!format!("{grant:?}").contains("s3cr3t"));
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use secrecy::SecretString;

mod refresh;
mod shared;

pub use self::refresh::{ForRefreshToken, PersistFailure, RefreshTokenGrant};
use self::shared::Sharing;
use crate::decay::{DecayStatus, SystemClock};
use crate::discovery::{AuthorizationServer, EndpointKind};
pub use crate::endpoint::ClientAuth;
use crate::endpoint::{
    DEFAULT_MAX_RESPONSE_BYTES, Endpoint, EndpointUrl, Refusal, default_http_client, parse_url,
};
use crate::error::{CheckFailure, Error};
use crate::redact::{ParamsDebug, redact_url};
use crate::scope::ScopeSet;
use crate::secret::ClientSecret;
use crate::store::TokenStore;
pub use crate::token::Lifetimes;
use crate::token::Token;
use crate::transport::HttpClient;

/// The future a [`TokenSource`] returns.
pub type FetchFuture<'a> = Pin<Box<dyn Future<Output = Result<Token, Error>> + Send + 'a>>;

/// Something that can obtain an access token: one attempt per call.
///
/// Implement it for tokens from elsewhere (a sidecar, a cloud metadata service, a vault);
/// the cache adds scheduling, single flight, retries and backoff. Return transient failures
/// as [`Error::Transport`], [`Error::Endpoint`] with a 5xx status, or [`Error::Timeout`] so
/// that they are retried, and anything else to stop.
pub trait TokenSource: fmt::Debug + Send + Sync + 'static {
    /// Makes one attempt to obtain a token.
    fn fetch(&self) -> FetchFuture<'_>;

    /// A number that changes whenever the source's configuration changes: a rotated client
    /// secret, a new refresh token stored. The cache holds a failure that only a new
    /// configuration fixes (`invalid_client`, `invalid_grant`) until it changes, so it is
    /// read on every call that meets such a hold: make it cheap. The default, `0`, never
    /// changes: the hold ends with its cap (see [`CacheConfig::hold`](crate::CacheConfig::hold))
    /// or a [`force_refresh`](crate::TokenCache::force_refresh).
    fn revision(&self) -> u64 {
        0
    }

    /// Whether the cache may make another attempt, within the same refresh, after the
    /// transient failure `error`. The default says yes. A source whose request must not be
    /// repeated when it may have reached the server (a rotating refresh token:
    /// [`RefreshTokenGrant`]) says no for such failures; the next refresh, after the
    /// cool-down, tries again.
    fn may_repeat(&self, error: &Error) -> bool {
        let _ = error;
        true
    }

    /// What kind of grant this is, as the `grant` label of the [metrics](crate::metrics) and
    /// of the token request spans: `client_credentials`, `refresh_token`, or the default,
    /// `custom`. Return a fixed word, never something from the configuration.
    fn kind(&self) -> &'static str {
        "custom"
    }

    /// How close the grant's refresh token is to decaying, as this process last saw it (no
    /// I/O), for [`TokenCache::status`](crate::TokenCache::status). The default, `None`: the
    /// source has no refresh token.
    fn decay_status(&self) -> Option<DecayStatus> {
        None
    }
}

impl<T: TokenSource + ?Sized> TokenSource for Arc<T> {
    fn fetch(&self) -> FetchFuture<'_> {
        (**self).fetch()
    }

    fn revision(&self) -> u64 {
        (**self).revision()
    }

    fn may_repeat(&self, error: &Error) -> bool {
        (**self).may_repeat(error)
    }

    fn kind(&self) -> &'static str {
        (**self).kind()
    }

    fn decay_status(&self) -> Option<DecayStatus> {
        (**self).decay_status()
    }
}

impl<T: TokenSource + ?Sized> TokenSource for Box<T> {
    fn fetch(&self) -> FetchFuture<'_> {
        (**self).fetch()
    }

    fn revision(&self) -> u64 {
        (**self).revision()
    }

    fn may_repeat(&self, error: &Error) -> bool {
        (**self).may_repeat(error)
    }

    fn kind(&self) -> &'static str {
        (**self).kind()
    }

    fn decay_status(&self) -> Option<DecayStatus> {
        (**self).decay_status()
    }
}

/// A [`TokenSource`] from an async function. See [`from_fn`].
pub struct FnSource<F> {
    f: F,
}

impl<F> fmt::Debug for FnSource<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnSource").finish_non_exhaustive()
    }
}

/// Makes a [`TokenSource`] from an async function.
///
/// ```
/// use std::time::Duration;
/// use tokenward::{Token, TokenCache, grant::from_fn};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let cache = TokenCache::builder(from_fn(|| async {
///     Token::builder("from-the-sidecar").expires_in(Duration::from_secs(600)).build()
/// }))
/// .build();
/// assert_eq!(cache.header().await.unwrap(), "Bearer from-the-sidecar");
/// # }
/// ```
pub fn from_fn<F, Fut>(f: F) -> FnSource<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Token, Error>> + Send + 'static,
{
    FnSource { f }
}

impl<F, Fut> TokenSource for FnSource<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Token, Error>> + Send + 'static,
{
    fn fetch(&self) -> FetchFuture<'_> {
        Box::pin((self.f)())
    }
}

/// Builds a grant. Created by [`ClientCredentials::builder`] or [`RefreshTokenGrant::builder`];
/// the options common to every grant live here.
pub struct GrantBuilder<G> {
    url: Target,
    client_id: String,
    client_secret: Option<SecretString>,
    auth: ClientAuth,
    audience: Option<String>,
    scope: Option<String>,
    required_scopes: Option<ScopeSet>,
    params: Vec<(String, String)>,
    http: Option<Arc<dyn HttpClient>>,
    max_response_bytes: usize,
    lifetimes: Lifetimes,
    pub(crate) grant: G,
}

impl<G> fmt::Debug for GrantBuilder<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrantBuilder")
            .field("url", &self.url)
            .field("client_id", &self.client_id)
            .field("scope", &self.scope)
            .field("params", &ParamsDebug(&self.params))
            .finish_non_exhaustive()
    }
}

/// Marker for a [`GrantBuilder`] that builds [`ClientCredentials`].
#[derive(Debug)]
pub struct ForClientCredentials {
    shared: Option<Arc<dyn TokenStore>>,
    lock_wait: std::time::Duration,
}

impl Default for ForClientCredentials {
    fn default() -> Self {
        ForClientCredentials {
            shared: None,
            lock_wait: std::time::Duration::from_secs(10),
        }
    }
}

/// Where a builder's endpoint is.
enum Target {
    Url(String),
    Discovered(AuthorizationServer, EndpointKind),
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Url(url) => redact_url(url).fmt(f),
            Target::Discovered(server, kind) => {
                write!(f, "{kind:?} endpoint of {:?}", redact_url(server.issuer()))
            }
        }
    }
}

impl<G> GrantBuilder<G> {
    pub(crate) fn new(url: impl Into<String>, client_id: impl Into<String>, grant: G) -> Self {
        Self::to(Target::Url(url.into()), client_id, grant)
    }

    /// A builder for the `kind` endpoint of `server`, with its HTTP client.
    pub(crate) fn discovered(
        server: &AuthorizationServer,
        kind: EndpointKind,
        client_id: impl Into<String>,
        grant: G,
    ) -> Self {
        let mut builder = Self::to(Target::Discovered(server.clone(), kind), client_id, grant);
        builder.http = Some(server.http_client());
        builder
    }

    /// Whether no endpoint URL was given yet.
    pub(crate) fn url_is_unset(&self) -> bool {
        matches!(&self.url, Target::Url(url) if url.is_empty())
    }

    /// Points the builder at `url`.
    pub(crate) fn with_url(mut self, url: String) -> Self {
        self.url = Target::Url(url);
        self
    }

    fn to(url: Target, client_id: impl Into<String>, grant: G) -> Self {
        GrantBuilder {
            url,
            client_id: client_id.into(),
            client_secret: None,
            auth: ClientAuth::Basic,
            audience: None,
            scope: None,
            required_scopes: None,
            params: Vec::new(),
            http: None,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            lifetimes: Lifetimes::default(),
            grant,
        }
    }

    /// The client secret (confidential clients).
    pub fn client_secret(mut self, secret: impl Into<String>) -> Self {
        self.client_secret = Some(SecretString::from(secret.into()));
        self
    }

    /// How the client authenticates: [`ClientAuth::Basic`] (default), `Post`, `None`, or
    /// an [assertion](crate::assertion) (`private_key_jwt`).
    pub fn auth_method(mut self, auth: ClientAuth) -> Self {
        self.auth = auth;
        self
    }

    /// The audience (`aud`) of client assertions: by default the issuer for an endpoint
    /// built from the issuer, else the endpoint's URL. See [`assertion`](crate::assertion).
    pub fn assertion_audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// The scopes to request: a space-separated string (`"jobs.read jobs.write"`), or a
    /// list (`["jobs.read", "jobs.write"]`), or a [`ScopeSet`]; as
    /// [`require_scopes`](Self::require_scopes) takes them.
    pub fn scope(mut self, scope: impl Into<ScopeSet>) -> Self {
        let scope = scope.into();
        self.scope = (!scope.is_empty()).then(|| scope.to_string());
        self
    }

    /// Scopes every token must carry (`resource.action` names; wildcards in the *granted*
    /// scopes count, e.g. a granted `jobs.*` covers `jobs.read`). Checked on every token
    /// obtained, before it is used: a token that lacks one is refused with
    /// [`Error::InsufficientScope`] naming what is missing — an organisation admin must
    /// re-grant. A response without `scope` means the requested scopes (RFC 6749 §5.1).
    pub fn require_scopes(mut self, scopes: impl Into<ScopeSet>) -> Self {
        self.required_scopes = Some(scopes.into());
        self
    }

    /// An extra form parameter sent with every token request (`resource`, `audience`, ...).
    /// A parameter the grant sends itself (`grant_type`, `client_id`, `client_secret`,
    /// `client_assertion`, `scope`, `refresh_token`, `code`, ...) is refused by `build`.
    ///
    /// Servers with resource indicators (RFC 8707) — oidc-provider, Azure AD v1, Auth0's
    /// `audience` — issue a token without an audience unless the request names the API:
    /// `.param("resource", "https://api.example.com")`.
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.push((name.into(), value.into()));
        self
    }

    /// The HTTP client that reaches the endpoint (default: [`ReqwestClient`](crate::ReqwestClient)).
    pub fn http_client(mut self, http: impl HttpClient) -> Self {
        self.http = Some(Arc::new(http));
        self
    }

    /// Refuse response bodies larger than this (default 64 KiB).
    pub fn max_response_bytes(mut self, limit: usize) -> Self {
        self.max_response_bytes = limit;
        self
    }

    /// How missing or absurd `expires_in` values are handled.
    pub fn lifetimes(mut self, lifetimes: Lifetimes) -> Self {
        self.lifetimes = lifetimes;
        self
    }

    pub(crate) fn into_parts(self) -> Result<(GrantConfig, G), Error> {
        if self.client_id.is_empty() {
            return Err(Error::Config("the client id is empty".into()));
        }
        if let Some((name, _)) = self
            .params
            .iter()
            .find(|(name, _)| GRANT_PARAMS.contains(&name.as_str()))
        {
            return Err(Error::Config(
                format!(
                    "the parameter {name} is set by the grant itself (its own setter, or the client authentication); it cannot be an extra parameter"
                )
                .into(),
            ));
        }
        if matches!(self.auth, ClientAuth::Basic | ClientAuth::Post) && self.client_secret.is_none()
        {
            return Err(Error::Config(
                "a client secret is required for client_secret_basic/post; use ClientAuth::None for a public client"
                    .into(),
            ));
        }
        let http = match self.http {
            Some(http) => http,
            None => default_http_client()?,
        };
        let (url, audience) = match self.url {
            Target::Url(url) => (EndpointUrl::Fixed(parse_url(&url)?), url),
            Target::Discovered(server, kind) => {
                server.require(kind)?;
                let issuer = server.issuer().to_owned();
                (EndpointUrl::Discovered(server, kind), issuer)
            }
        };
        let endpoint = Endpoint {
            url,
            audience: self.audience.unwrap_or(audience),
            client_id: self.client_id,
            secret: ClientSecret::new(self.client_secret),
            auth: self.auth,
            http,
            max_response_bytes: self.max_response_bytes,
            lifetimes: self.lifetimes,
        };
        let config = GrantConfig {
            endpoint,
            scope: self.scope,
            required_scopes: self.required_scopes.filter(|r| !r.is_empty()),
            params: self.params,
        };
        Ok((config, self.grant))
    }
}

/// Form parameters a grant or its client authentication sends itself: never extra ones
/// (the names of credentials among them, so a secret cannot slip in as a plain parameter).
pub(crate) const GRANT_PARAMS: &[&str] = &[
    "grant_type",
    "client_id",
    "client_secret",
    "client_assertion",
    "client_assertion_type",
    "scope",
    "refresh_token",
    "code",
    "code_verifier",
    "redirect_uri",
    "password",
    "assertion",
    "subject_token",
    "actor_token",
    // Introspection's and revocation's own (RFC 7662, RFC 7009).
    "token",
    "token_type_hint",
];

/// A grant's builder that a [`TenantCache`](crate::TenantCache) can finish on its shared
/// HTTP client: [`GrantBuilder`] for [`ClientCredentials`] and [`RefreshTokenGrant`]. See
/// [`TenantCacheBuilder::grant`](crate::TenantCacheBuilder::grant).
pub trait TenantGrant: private::Sealed {}

pub(crate) mod private {
    use super::*;

    /// Builds the grant, on `http()` unless the builder has its own client.
    pub trait Sealed: Send + 'static {
        fn into_source(
            self,
            http: &dyn Fn() -> Result<Arc<dyn HttpClient>, Error>,
        ) -> Result<Box<dyn TokenSource>, Error>;
    }
}

impl<G> GrantBuilder<G> {
    fn with_client(
        mut self,
        http: &dyn Fn() -> Result<Arc<dyn HttpClient>, Error>,
    ) -> Result<Self, Error> {
        if self.http.is_none() {
            self.http = Some(http()?);
        }
        Ok(self)
    }
}

impl TenantGrant for GrantBuilder<ForClientCredentials> {}

impl private::Sealed for GrantBuilder<ForClientCredentials> {
    fn into_source(
        self,
        http: &dyn Fn() -> Result<Arc<dyn HttpClient>, Error>,
    ) -> Result<Box<dyn TokenSource>, Error> {
        Ok(Box::new(self.with_client(http)?.build()?))
    }
}

impl TenantGrant for GrantBuilder<ForRefreshToken> {}

impl private::Sealed for GrantBuilder<ForRefreshToken> {
    fn into_source(
        self,
        http: &dyn Fn() -> Result<Arc<dyn HttpClient>, Error>,
    ) -> Result<Box<dyn TokenSource>, Error> {
        Ok(Box::new(self.with_client(http)?.build()?))
    }
}

/// What every grant shares: the endpoint, the scope to request, extra parameters.
pub(crate) struct GrantConfig {
    pub(crate) endpoint: Endpoint,
    pub(crate) scope: Option<String>,
    pub(crate) required_scopes: Option<ScopeSet>,
    pub(crate) params: Vec<(String, String)>,
}

/// Extra parameters show their names only: a value may be a credential (`client_assertion`).
impl fmt::Debug for GrantConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrantConfig")
            .field("endpoint", &self.endpoint)
            .field("scope", &self.scope)
            .field("required_scopes", &self.required_scopes)
            .field("params", &ParamsDebug(&self.params))
            .finish()
    }
}

impl GrantConfig {
    pub(crate) async fn request(&self, grant_params: &[(&str, &str)]) -> Result<Token, Error> {
        self.request_with(grant_params, true)
            .await
            .map_err(|refusal| refusal.error)
    }

    /// Refuses a token whose granted scopes (`granted`, or when unknown the requested ones)
    /// do not cover the required ones.
    pub(crate) fn check_scopes(&self, granted: Option<&str>) -> Result<(), Error> {
        let Some(required) = &self.required_scopes else {
            return Ok(());
        };
        match granted.or(self.scope.as_deref()) {
            Some(granted) => ScopeSet::parse(granted).require(required),
            None => {
                tracing::debug!("the granted scope is unknown; required scopes not checked");
                Ok(())
            }
        }
    }

    /// With `fallback` false, only the current client secret is tried (for verification).
    /// A refused 2xx answer keeps the refresh token it carried.
    pub(crate) async fn request_with(
        &self,
        grant_params: &[(&str, &str)],
        fallback: bool,
    ) -> Result<Token, Refusal> {
        let mut params: Vec<(&str, &str)> = grant_params.to_vec();
        if let Some(scope) = &self.scope {
            params.push(("scope", scope));
        }
        params.extend(self.params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        self.endpoint
            .request_token(&params, self.scope.as_deref(), fallback)
            .await
    }
}

/// The client credentials grant (RFC 6749 §4.4).
///
/// With [`share_through`](GrantBuilder::share_through), the processes using one store
/// (a [`FileStore`](crate::store::FileStore) on one host, a Redis store for a fleet) share
/// the access token: under the store's exchange lock, a process adopts the token another one
/// obtained (at least half its lifetime left) and makes no call, so N processes make about
/// one token call per refresh period instead of N. When the store fails (down, slow, its
/// lock not taken within [`shared_lock_wait`](GrantBuilder::shared_lock_wait)), each process
/// obtains its own token as if nothing were shared, with a WARN event: a client credentials
/// token can always be asked for again, so nothing is risked.
#[derive(Debug)]
pub struct ClientCredentials {
    config: GrantConfig,
    shared: Option<Shared>,
}

#[derive(Debug)]
struct Shared {
    store: Arc<dyn TokenStore>,
    sharing: Sharing,
    lock_wait: std::time::Duration,
}

impl ClientCredentials {
    /// Starts building a client credentials grant for `token_url` and `client_id`.
    pub fn builder(
        token_url: impl Into<String>,
        client_id: impl Into<String>,
    ) -> GrantBuilder<ForClientCredentials> {
        GrantBuilder::new(token_url, client_id, ForClientCredentials::default())
    }

    /// Starts building a client credentials grant for the token endpoint of a
    /// [discovered](crate::discovery) authorization server, with its HTTP client. The URL
    /// follows the server's metadata when it is fetched again.
    ///
    /// `build` fails with [`Error::Discovery`] when the metadata has no `token_endpoint`.
    pub fn from_issuer(
        server: &AuthorizationServer,
        client_id: impl Into<String>,
    ) -> GrantBuilder<ForClientCredentials> {
        GrantBuilder::discovered(
            server,
            EndpointKind::Token,
            client_id,
            ForClientCredentials::default(),
        )
    }
}

impl GrantBuilder<ForClientCredentials> {
    /// Shares the access token with the other processes using `store` (see
    /// [`ClientCredentials`]); the store must share access tokens (a `FileStore` with
    /// [`share_access_token`](crate::store::FileStore::share_access_token), a Redis store
    /// with its `share_access_token`), or `build` fails.
    pub fn share_through(mut self, store: impl TokenStore) -> Self {
        self.grant.shared = Some(Arc::new(store));
        self
    }

    /// How long a grant sharing its token waits for the store's exchange lock before it
    /// obtains a token of its own (default 10 s).
    pub fn shared_lock_wait(mut self, wait: std::time::Duration) -> Self {
        self.grant.lock_wait = wait;
        self
    }

    /// Builds the grant. Fails on an invalid URL, an empty client id, a missing secret, or
    /// a store given to [`share_through`](Self::share_through) that does not share access
    /// tokens.
    pub fn build(self) -> Result<ClientCredentials, Error> {
        let (config, grant) = self.into_parts()?;
        if grant
            .shared
            .as_ref()
            .is_some_and(|s| !s.shares_access_token())
        {
            return Err(Error::Config(
                "the store given to share_through does not share access tokens (turn on its share_access_token)"
                    .into(),
            ));
        }
        let lock_wait = grant.lock_wait;
        Ok(ClientCredentials {
            config,
            shared: grant.shared.map(|store| Shared {
                store,
                sharing: Sharing::default(),
                lock_wait,
            }),
        })
    }
}

impl ClientCredentials {
    /// The client secret: a handle to rotate it at run time. See [`secret`](crate::secret).
    pub fn client_secret(&self) -> ClientSecret {
        self.config.endpoint.secret.clone()
    }

    /// Health check for a secret rotation: obtains a token with the *current* secret only
    /// (no fallback to the previous one) and, if `check_url` is given, GETs it with the token
    /// and requires a 2xx (e.g. an introspection-backed `/me`). Returns the token.
    ///
    /// A check URL that does not answer 2xx is [`Error::CheckFailed`], which says whether
    /// the URL (unreachable, 404, a redirect) or the token (rejected, a scope missing) is
    /// wrong; a failure to obtain the token is the token endpoint's error, as for any grant.
    pub async fn verify(&self, check_url: Option<&str>) -> Result<Token, Error> {
        let token = self
            .config
            .request_with(&[("grant_type", "client_credentials")], false)
            .await
            .map_err(|refusal| refusal.error)?;
        if let Some(url) = check_url {
            let failed = |failure: CheckFailure| Error::CheckFailed(Box::new(failure));
            let invalid = || {
                failed(CheckFailure {
                    invalid_url: true,
                    status: None,
                    failure: None,
                    transport: None,
                })
            };
            let uri = crate::endpoint::parse_url(url).map_err(|_| invalid())?;
            let request = http::Request::get(uri)
                .header(http::header::AUTHORIZATION, token.header_value().clone())
                .body(bytes::Bytes::new())
                .map_err(|_| invalid())?;
            let response = self.config.endpoint.http.send(request).await.map_err(|e| {
                failed(CheckFailure {
                    invalid_url: false,
                    status: None,
                    failure: None,
                    transport: Some(e),
                })
            })?;
            let status = response.status();
            if !status.is_success() {
                return Err(failed(CheckFailure {
                    invalid_url: false,
                    status: Some(status),
                    failure: crate::classify(status, response.headers(), None).map(|c| c.failure),
                    transport: None,
                }));
            }
        }
        Ok(token)
    }
}

impl ClientCredentials {
    async fn request(&self) -> Result<Token, Error> {
        let token = self
            .config
            .request(&[("grant_type", "client_credentials")])
            .await?;
        self.config.check_scopes(token.scope())?;
        Ok(token)
    }

    /// Under the store's lock: adopt the shared token, or obtain one and share it. Any
    /// failure of the store falls back to a token of this process's own.
    async fn shared(&self, shared: &Shared) -> Result<Token, Error> {
        let (store, sharing, wait) = (shared.store.as_ref(), &shared.sharing, shared.lock_wait);
        let clock = SystemClock;
        let _lock = match tokio::time::timeout(wait, store.lock_exchange()).await {
            Ok(Ok(lock)) => lock,
            Ok(Err(error)) => {
                tracing::warn!(error = %crate::error::chain(&error), "the shared token store failed; obtaining a token for this process alone");
                return self.request().await;
            }
            Err(_) => {
                tracing::warn!(
                    ?wait,
                    "the shared token store's lock was not free in time; obtaining a token for this process alone"
                );
                return self.request().await;
            }
        };
        if let Some(token) = sharing.adopt(store, &self.config, &clock).await {
            return Ok(token);
        }
        let token = self.request().await?;
        sharing.share(store, &token, &clock).await;
        Ok(token)
    }
}

impl TokenSource for ClientCredentials {
    fn fetch(&self) -> FetchFuture<'_> {
        Box::pin(async move {
            match &self.shared {
                Some(shared) => self.shared(shared).await,
                None => self.request().await,
            }
        })
    }

    fn revision(&self) -> u64 {
        self.config.endpoint.secret.revision()
    }

    fn kind(&self) -> &'static str {
        "client_credentials"
    }
}
