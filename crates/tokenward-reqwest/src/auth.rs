//! [`AuthMiddleware`]: the `Authorization` header from a token cache, and one resend with a
//! fresh token when the API answers 401 `invalid_token`.
//!
//! # What it does to a request
//!
//! 1. Picks the token cache: the one it holds, or a tenant's from a [`TenantCache`] (the
//!    tenant named by the request's [`Tenant`] extension, or the one the client is bound to).
//!    An unknown or missing tenant is an error and nothing is sent.
//! 2. Reads the cached header (a lock-free load while the token is fresh; otherwise it waits
//!    for the cache's single refresh). A token-endpoint failure is returned as an error: the
//!    request is **never** sent without a token.
//! 3. Sets `Authorization` (marked sensitive; any `Authorization` the request carried is
//!    replaced) and sends the request.
//! 4. On a 401 that rejects the token ([`tokenward::Rejection`]: `WWW-Authenticate: Bearer
//!    error="invalid_token"`, or a bare 401 with
//!    [`retry_bare_401`](AuthMiddleware::retry_bare_401); the same rule as the tower layer):
//!    drops that token from the cache *if it is still the cached one* (so a burst of 401s
//!    makes one refresh), gets the next one
//!    ([`TokenCache::replace_rejected`]) and resends the request **once**, with a fresh copy
//!    of the extensions. Not when the next token equals the rejected one. A second 401 is
//!    returned as it is.
//!
//! Every other response, 403 `insufficient_scope` included, is returned untouched.
//!
//! # Bodies that cannot be replayed
//!
//! The resend is a copy made with [`reqwest::Request::try_clone`] before the first send.
//! A request with a streaming body (`reqwest::Body::wrap`, `wrap_stream`) cannot be copied:
//! on a 401 `invalid_token` its token is still dropped from the cache (the *next* request
//! gets a fresh one) but the request is **not** resent, and the 401 is returned to the caller.
//! It is never resent without its body.
//!
//! [`AuthMiddleware::resend_on_invalid_token(false)`](AuthMiddleware::resend_on_invalid_token)
//! makes no copy at all and treats every request that way.
//!
//! # Example
//!
//! ```
//! use reqwest_middleware::ClientBuilder;
//! use tokenward::{ClientCredentials, TokenCache};
//! use tokenward_reqwest::AuthMiddleware;
//! # use tokenward_testkit::FakeServer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let server = FakeServer::builder().client("my-client", "s3cr3t").build();
//! # let running = server.listen().await?;
//! # let token_url = running.token_url();
//! # let api = running.resource_url();
//! let grant = ClientCredentials::builder(token_url, "my-client")
//!     .client_secret("s3cr3t")
//!     .build()?;
//! let client = ClientBuilder::new(reqwest::Client::new())
//!     .with(AuthMiddleware::new(TokenCache::new(grant)))
//!     .build();
//!
//! let response = client.get(&api).send().await?;
//! assert_eq!(response.status(), 200);
//!
//! // The API revokes the token: the 401 is answered with one resend, with a fresh token.
//! # server.revoke_all_access_tokens();
//! let response = client.get(&api).send().await?;
//! assert_eq!(response.status(), 200);
//! # assert_eq!(server.token_calls(), 2);
//! # Ok(()) }
//! ```

use std::borrow::Cow;
use std::fmt;
use tokenward::metrics::Rejected;
use tracing::Instrument as _;

use http::Extensions;
use http::header::AUTHORIZATION;
use reqwest::{Request, Response};
use reqwest_middleware::{Error, Middleware, Next, Result};
use tokenward::{Rejection, TenantCache, TokenCache};

/// The tenant a request is for: the core's request extension, read by an [`AuthMiddleware`]
/// built with [`AuthMiddleware::tenants`] (or checked against the binding of one built with
/// [`AuthMiddleware::for_tenant`]), as the tower layer reads it.
///
/// ```
/// use tokenward_reqwest::Tenant;
/// # fn f(client: reqwest_middleware::ClientWithMiddleware) {
/// let request = client
///     .get("https://api.example.com/jobs")
///     .with_extension(Tenant::new("acme"));
/// # let _ = request; }
/// ```
pub use tokenward::Tenant;

/// A `reqwest_middleware::Middleware` that sets `Authorization` from a tokenward cache and
/// resends once, with a fresh token, on 401 `invalid_token`. See the [module docs](self).
///
/// Cheap to clone: clones share the caches.
///
/// # Errors
///
/// Failures to obtain a token, and tenant errors, are
/// [`reqwest_middleware::Error::Middleware`] wrapping a [`tokenward::Error`]; nothing is sent.
/// Downcast with `anyhow`'s `downcast_ref` or with [`crate::token_error`]:
///
/// | situation | `tokenward::Error` |
/// |---|---|
/// | the token endpoint failed (after the cache's own retries) | the cache's error: `InvalidClient`, `ReauthorizationRequired`, `RateLimited`, `Transport`, ... |
/// | the token endpoint failed a moment ago, and the cache is cooling down or holding the failure | `CoolingDown` (its [`cause`](tokenward::Error::cause) is the failure) |
/// | the request's [`Tenant`] is not configured | `UnknownTenant` |
/// | a tenant-keyed middleware got a request without a [`Tenant`] | `MissingTenant` |
/// | the request's [`Tenant`] is not the one the client is bound to | `TenantMismatch` |
/// | a single-cache middleware got a request naming a [`Tenant`] | `TenantMismatch` |
/// | the tenant was removed while the request was in flight (at a 401: not resent) | `TenantRemoved` |
///
/// The last three refuse rather than guess: a request is never sent with another tenant's
/// credentials.
#[derive(Clone)]
pub struct AuthMiddleware {
    tokens: Tokens,
    resend: bool,
    rejection: Rejection,
}

#[derive(Clone)]
enum Tokens {
    Single(TokenCache),
    PerRequest(TenantCache<String>),
    Bound {
        tenants: TenantCache<String>,
        tenant: String,
    },
}

impl AuthMiddleware {
    /// One set of credentials for every request.
    pub fn new(cache: TokenCache) -> Self {
        AuthMiddleware {
            tokens: Tokens::Single(cache),
            resend: true,
            rejection: Rejection::new(),
        }
    }

    /// Many tenants; each request names its own with a [`Tenant`] extension
    /// (`RequestBuilder::with_extension(Tenant::new("acme"))`). A request without one, or
    /// naming a tenant the cache does not know, fails without being sent.
    ///
    /// ```
    /// use reqwest_middleware::ClientBuilder;
    /// use tokenward::{ClientCredentials, TenantCache};
    /// use tokenward_reqwest::{AuthMiddleware, Tenant};
    /// # use tokenward_testkit::FakeServer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let server = FakeServer::builder().client("acme-app", "acme-secret").build();
    /// # let running = server.listen().await?;
    /// # let (token_url, api) = (running.token_url(), running.resource_url());
    /// let tenants: TenantCache<String> = TenantCache::new();
    /// tenants.insert(
    ///     "acme".to_owned(),
    ///     ClientCredentials::builder(&token_url, "acme-app").client_secret("acme-secret").build()?,
    /// );
    /// let client = ClientBuilder::new(reqwest::Client::new())
    ///     .with(AuthMiddleware::tenants(tenants))
    ///     .build();
    ///
    /// let ok = client.get(&api).with_extension(Tenant::new("acme")).send().await?;
    /// assert_eq!(ok.status(), 200);
    ///
    /// let err = client.get(&api).with_extension(Tenant::new("initech")).send().await.unwrap_err();
    /// assert!(matches!(
    ///     tokenward_reqwest::token_error(&err),
    ///     Some(tokenward::Error::UnknownTenant { .. })
    /// ));
    /// # assert_eq!(server.counters().resource_requests, 1);
    /// # Ok(()) }
    /// ```
    pub fn tenants(tenants: TenantCache<String>) -> Self {
        AuthMiddleware {
            tokens: Tokens::PerRequest(tenants),
            resend: true,
            rejection: Rejection::new(),
        }
    }

    /// Every request of this client is for `tenant` (looked up in `tenants` on each request,
    /// so replaced credentials take effect at once). A request whose [`Tenant`] extension
    /// names another tenant fails without being sent.
    pub fn for_tenant(tenants: TenantCache<String>, tenant: impl Into<String>) -> Self {
        AuthMiddleware {
            tokens: Tokens::Bound {
                tenants,
                tenant: tenant.into(),
            },
            resend: true,
            rejection: Rejection::new(),
        }
    }

    /// Whether a request rejected with 401 `invalid_token` is resent once with a fresh token
    /// (default `true`). With `false` no copy of the request is made before sending (a little
    /// less work per request); the rejected token is still dropped from the cache, so the
    /// *next* request gets a fresh one, and the 401 is returned to the caller.
    pub fn resend_on_invalid_token(mut self, resend: bool) -> Self {
        self.resend = resend;
        self
    }

    /// Also treat a bare 401 (no error code) as a rejected token: drop it and resend once
    /// ([`Rejection::bare_401`]). Off by default, as in the tower layer.
    pub fn retry_bare_401(mut self, enabled: bool) -> Self {
        self.rejection = self.rejection.bare_401(enabled);
        self
    }

    /// The cache for this request, or why there is none.
    fn cache(
        &self,
        extensions: &Extensions,
    ) -> std::result::Result<Cow<'_, TokenCache>, tokenward::Error> {
        let named = extensions.get::<Tenant>();
        let mismatch = |named: &Tenant, bound: String| tokenward::Error::TenantMismatch {
            named: named.0.clone(),
            bound,
        };
        match &self.tokens {
            Tokens::Single(cache) => match named {
                None => Ok(Cow::Borrowed(cache)),
                Some(named) => Err(mismatch(named, "one token cache, not a TenantCache".into())),
            },
            Tokens::PerRequest(tenants) => tenants.for_request(extensions).map(Cow::Owned),
            Tokens::Bound { tenants, tenant } => match named {
                Some(named) if named.0 != *tenant => Err(mismatch(named, format!("{tenant:?}"))),
                _ => tenants.get(tenant.as_str()).map(Cow::Owned),
            },
        }
    }
}

impl fmt::Debug for AuthMiddleware {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("AuthMiddleware");
        match &self.tokens {
            Tokens::Single(cache) => d.field("cache", cache),
            Tokens::PerRequest(tenants) => d.field("tenants", tenants),
            Tokens::Bound { tenants, tenant } => {
                d.field("tenants", tenants).field("tenant", tenant)
            }
        };
        d.field("resend", &self.resend)
            .field("rejection", &self.rejection)
            .finish()
    }
}

#[async_trait::async_trait]
impl Middleware for AuthMiddleware {
    async fn handle(
        &self,
        mut req: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> Result<Response> {
        let cache = self.cache(extensions).map_err(Error::middleware)?;
        let sent = cache.header().await.map_err(Error::middleware)?;
        // The copy for a resend, and the extensions as they were before the first attempt
        // (so the resend does not see what the first attempt left in them).
        let replay = if self.resend {
            req.try_clone().map(|copy| (copy, extensions.clone()))
        } else {
            None
        };
        req.headers_mut().insert(AUTHORIZATION, sent.clone());

        let response = next.clone().run(req, extensions).await?;
        if !self
            .rejection
            .rejects(response.status(), response.headers())
        {
            return Ok(response);
        }
        let url = crate::loggable_url(response.url());
        let Some((mut resend, fresh_extensions)) = replay else {
            tokenward::metrics::record_rejection(INTEGRATION, Rejected::NotReplayable);
            let dropped = cache.invalidate(&sent);
            tracing::info!(
                %url,
                token_dropped = dropped,
                "the API rejected the access token (invalid_token); the request is not resent (a \
                 streaming body, or resends turned off): returning the response"
            );
            return Ok(response);
        };
        let span = tracing::info_span!(
            "tokenward.resend",
            integration = INTEGRATION,
            outcome = tracing::field::Empty,
            "http.response.status_code" = tracing::field::Empty,
        );
        let next_token = match cache.replace_rejected(&sent).instrument(span.clone()).await {
            Ok(Some(next_token)) => next_token,
            Ok(None) => {
                rejected(&span, Rejected::SameToken);
                return Ok(response);
            }
            Err(error) => {
                rejected(&span, Rejected::Failed);
                return Err(Error::middleware(error));
            }
        };
        rejected(&span, Rejected::Resent);
        span.in_scope(|| {
            tracing::debug!(%url, "the API rejected the access token (invalid_token): resending once");
        });
        drop(response);
        resend.headers_mut().insert(AUTHORIZATION, next_token);
        *extensions = fresh_extensions;
        let resent = next.run(resend, extensions).instrument(span.clone()).await;
        if let Ok(response) = &resent {
            span.record("http.response.status_code", response.status().as_u16());
        }
        resent
    }
}

/// The `integration` of this crate's metrics and spans.
const INTEGRATION: &str = "reqwest";

/// Records what was done with a rejected token: on the resend's span and in the metrics.
fn rejected(span: &tracing::Span, outcome: Rejected) {
    span.record("outcome", outcome.as_str());
    tokenward::metrics::record_rejection(INTEGRATION, outcome);
}
