//! Tenants: each request carries the token of its own tenant (organisation).
//!
//! [`AuthLayer::tenants`](crate::AuthLayer::tenants) reads the tenant key from a [`Tenant`]
//! request extension; [`AuthLayer::tenants_by`](crate::AuthLayer::tenants_by) from a function
//! of the request (a header, a path segment, the host). The key selects that tenant's cache
//! in a [`TenantCache`]:
//!
//! * no key: the request fails with [`AuthError::MissingTenant`] and is not sent;
//! * a key with no credentials: [`AuthError::UnknownTenant`], not sent. Never another
//!   tenant's token, never a default.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use http::{Request, Response};
//! use tokenward::{TenantCache, Token, grant::from_fn};
//! use tokenward_tower::{AuthError, AuthLayer, BoxError, tenant::Tenant};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), BoxError> {
//! let source = |org: &'static str| from_fn(move || async move {
//!     Token::builder(format!("{org}-token")).expires_in(Duration::from_secs(3600)).build()
//! });
//! let tenants: TenantCache<String> = TenantCache::builder()
//!     .tenant("acme".to_string(), source("acme"))
//!     .build();
//!
//! // Echo the Authorization header back, in place of an HTTP client.
//! let client = ServiceBuilder::new()
//!     .layer(AuthLayer::tenants(tenants))
//!     .service(service_fn(|req: Request<String>| async move {
//!         Ok::<_, BoxError>(Response::new(req.headers()["authorization"].clone()))
//!     }));
//!
//! let mut request = Request::new(String::new());
//! request.extensions_mut().insert(Tenant("acme".to_string()));
//! let response = client.clone().oneshot(request).await?;
//! assert_eq!(response.body(), "Bearer acme-token");
//!
//! let mut request = Request::new(String::new());
//! request.extensions_mut().insert(Tenant("initech".to_string()));
//! let error = client.clone().oneshot(request).await.unwrap_err();
//! assert!(matches!(error.downcast_ref(), Some(AuthError::UnknownTenant { .. })));
//!
//! let error = client.oneshot(Request::new(String::new())).await.unwrap_err();
//! assert!(matches!(error.downcast_ref(), Some(AuthError::MissingTenant)));
//! # Ok(()) }
//! ```

use std::fmt;
use std::hash::Hash;

use http::Request;
use tokenward::{TenantCache, TokenCache};

use crate::AuthError;
use crate::credentials::Credentials;

/// The request extension that names the request's tenant, read by
/// [`AuthLayer::tenants`](crate::AuthLayer::tenants): the core's, shared with the reqwest
/// middleware.
pub use tokenward::Tenant;

/// Finds a request's tenant key. Implemented by [`FromExtension`] and by closures
/// `Fn(&Request<B>) -> Option<K>`.
pub trait ExtractTenant<B, K> {
    /// Calls `f` with the request's tenant key, or `None` if it names none.
    fn with_tenant<R>(&self, request: &Request<B>, f: impl FnOnce(Option<&K>) -> R) -> R;
}

/// Reads the key from the request's [`Tenant<K>`] extension: no copy of the key is made.
#[derive(Debug, Clone, Copy, Default)]
pub struct FromExtension;

impl<B, K> ExtractTenant<B, K> for FromExtension
where
    K: Send + Sync + 'static,
{
    #[inline]
    fn with_tenant<R>(&self, request: &Request<B>, f: impl FnOnce(Option<&K>) -> R) -> R {
        f(request.extensions().get::<Tenant<K>>().map(|t| &t.0))
    }
}

impl<B, K, F> ExtractTenant<B, K> for F
where
    F: Fn(&Request<B>) -> Option<K>,
{
    #[inline]
    fn with_tenant<R>(&self, request: &Request<B>, f: impl FnOnce(Option<&K>) -> R) -> R {
        let key = self(request);
        f(key.as_ref())
    }
}

/// [`Credentials`] that pick the request's tenant's cache out of a [`TenantCache`]. Made by
/// [`AuthLayer::tenants`](crate::AuthLayer::tenants) and
/// [`AuthLayer::tenants_by`](crate::AuthLayer::tenants_by).
#[derive(Clone)]
pub struct Tenants<K, X = FromExtension> {
    cache: TenantCache<K>,
    extract: X,
}

impl<K, X> Tenants<K, X> {
    /// Tenants from `cache`, keyed by what `extract` finds in each request.
    pub fn new(cache: TenantCache<K>, extract: X) -> Self {
        Tenants { cache, extract }
    }

    /// The tenant cache (to add, replace or remove tenants while requests run).
    pub fn cache(&self) -> &TenantCache<K> {
        &self.cache
    }
}

impl<K: fmt::Debug + std::hash::Hash + Eq, X> fmt::Debug for Tenants<K, X> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tenants")
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl<B, K, X> Credentials<B> for Tenants<K, X>
where
    K: Eq + Hash + Clone + fmt::Debug + fmt::Display + Send + Sync + 'static,
    X: ExtractTenant<B, K>,
{
    #[inline]
    fn cache_for(&self, request: &Request<B>) -> Result<TokenCache, AuthError> {
        self.extract.with_tenant(request, |key| match key {
            Some(key) => self.cache.get(key).map_err(AuthError::from),
            None => Err(AuthError::MissingTenant),
        })
    }
}
