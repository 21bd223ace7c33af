//! [`Credentials`]: which token cache serves a request.
//!
//! One [`TokenCache`] serves every request ([`AuthLayer::new`](crate::AuthLayer::new), through a
//! [`Reader`]), or a
//! [`TenantCache`](tokenward::TenantCache) picks one per request by its tenant
//! ([`AuthLayer::tenants`](crate::AuthLayer::tenants), see [`tenant`](crate::tenant)).
//! Implement the trait for anything else that maps a request to a cache.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use http::Request;
//! use tokenward::{Token, TokenCache, grant::from_fn};
//! use tokenward_tower::{AuthError, AuthLayer, credentials::Credentials};
//!
//! /// Reads go to one API, writes to another: two clients, two caches.
//! #[derive(Clone)]
//! struct ByMethod { read: TokenCache, write: TokenCache }
//!
//! impl<B> Credentials<B> for ByMethod {
//!     fn cache_for(&self, request: &Request<B>) -> Result<TokenCache, AuthError> {
//!         Ok(if request.method().is_safe() { self.read.clone() } else { self.write.clone() })
//!     }
//! }
//!
//! let cache = |name: &'static str| TokenCache::new(from_fn(move || async move {
//!     Token::builder(name).expires_in(Duration::from_secs(3600)).build()
//! }));
//! let layer = AuthLayer::with_credentials(ByMethod { read: cache("r"), write: cache("w") });
//! # let _ = layer;
//! ```

use http::Request;
use tokenward::{Reader, TokenCache};

use crate::AuthError;

/// Maps a request to the [`TokenCache`] whose token it carries.
pub trait Credentials<B> {
    /// The cache for this request, or why there is none (the request is then failed with
    /// this error and not sent).
    ///
    /// Called once per request, before it is sent; keep it cheap (a `TokenCache` clone is a
    /// reference-count increment).
    fn cache_for(&self, request: &Request<B>) -> Result<TokenCache, AuthError>;

    /// Where [`Auth`](crate::Auth) reads this request's token: what it calls.
    ///
    /// The default is [`cache_for`](Self::cache_for). Override it to read through a
    /// [`Reader`] of your own, as the [`Reader`] implementation does.
    #[inline]
    fn lookup(&mut self, request: &Request<B>) -> Result<Lookup<'_>, AuthError> {
        self.cache_for(request).map(Lookup::Cache)
    }
}

/// Where [`Credentials::lookup`] says a request's token is read.
#[derive(Debug)]
#[non_exhaustive]
pub enum Lookup<'a> {
    /// Through this reader (fresh reads take no claim on the shared cache).
    Reader(&'a mut Reader),
    /// From this cache.
    Cache(TokenCache),
}

/// One cache for every request, read through the shared cache (a few atomic
/// read-modify-writes per request). [`AuthLayer::new`](crate::AuthLayer::new) uses a
/// [`Reader`] instead.
impl<B> Credentials<B> for TokenCache {
    #[inline]
    fn cache_for(&self, _request: &Request<B>) -> Result<TokenCache, AuthError> {
        Ok(self.clone())
    }
}

/// One cache for every request, read through this service's own [`Reader`]: a fresh read
/// takes no claim on the shared cache. What [`AuthLayer::new`](crate::AuthLayer::new) uses; each service
/// the layer makes gets a reader of its own.
impl<B> Credentials<B> for Reader {
    #[inline]
    fn cache_for(&self, _request: &Request<B>) -> Result<TokenCache, AuthError> {
        Ok(self.cache().clone())
    }

    #[inline(always)]
    fn lookup(&mut self, _request: &Request<B>) -> Result<Lookup<'_>, AuthError> {
        Ok(Lookup::Reader(self))
    }
}
