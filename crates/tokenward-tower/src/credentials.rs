//! [`Credentials`]: which token cache serves a request.
//!
//! One [`TokenCache`] serves every request ([`AuthLayer::new`](crate::AuthLayer::new)), or a
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
use tokenward::TokenCache;

use crate::AuthError;

/// Maps a request to the [`TokenCache`] whose token it carries.
pub trait Credentials<B> {
    /// The cache for this request, or why there is none (the request is then failed with
    /// this error and not sent).
    ///
    /// Called once per request, before it is sent; keep it cheap (a `TokenCache` clone is a
    /// reference-count increment).
    fn cache_for(&self, request: &Request<B>) -> Result<TokenCache, AuthError>;
}

/// One cache for every request.
impl<B> Credentials<B> for TokenCache {
    #[inline]
    fn cache_for(&self, _request: &Request<B>) -> Result<TokenCache, AuthError> {
        Ok(self.clone())
    }
}
