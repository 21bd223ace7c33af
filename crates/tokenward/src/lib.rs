//! # tokenward
//!
//! OAuth 2.0 access tokens kept fresh for Rust HTTP clients, and the auth-side failures that
//! take production integrations down survived.
//!
//! The heart is [`TokenCache`]: it holds one token from a [`TokenSource`] (a grant such as
//! [`ClientCredentials`] or [`RefreshTokenGrant`]) and hands out its pre-built, sensitive
//! `Authorization` header value.
//!
//! * **Lock-free, allocation-free reads.** While the token is usable a read is an atomic
//!   load, a clock read and a reference-count increment; no answer depends on a background
//!   task being driven.
//! * **Proactive refresh.** At a fraction of the lifetime (0.8 by default, with jitter) the
//!   token turns *stale*: callers still get it at once and exactly one refresh runs in the
//!   background. Only once it is *expired* do callers wait, all on that one refresh.
//! * **Failures never cost a usable token.** A failed refresh leaves the cached token in
//!   place; 429 honours `Retry-After`; 5xx, 408 and network failures are retried with
//!   exponential backoff and full jitter; `invalid_grant` and `invalid_client` are typed
//!   errors that say what to do, and are never retried blindly.
//! * **Invalidate by value.** A burst of 401s for one token makes one refresh.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use tokenward::{ClientCredentials, TokenCache};
//!
//! # async fn run() -> Result<(), tokenward::Error> {
//! let grant = ClientCredentials::builder("https://auth.example.com/oauth/token", "my-client")
//!     .client_secret("s3cr3t")
//!     .scope("jobs.read jobs.write")
//!     .build()?;
//! let cache = TokenCache::builder(grant).refresh_fraction(0.8).build();
//!
//! // On every request: a cheap clone of the pre-built header value.
//! let authorization = cache.header().await?;
//! let request = http::Request::get("https://api.example.com/jobs")
//!     .header(http::header::AUTHORIZATION, authorization.clone())
//!     .body(())
//!     .unwrap();
//! # let _ = request;
//! // The API answered 401 invalid_token? Drop that token (only if still cached) and retry once.
//! cache.invalidate(&authorization);
//! # let _ = Duration::ZERO;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod assertion;
pub mod authorization_code;
pub mod cache;
pub mod classify;
pub mod config;
pub mod decay;
pub mod discovery;
pub mod error;
pub mod grant;
pub mod introspection;
pub mod metrics;
pub mod scope;
pub mod secret;
pub mod store;
pub mod tenant;
pub mod timing;
pub mod token;
pub mod transport;

mod endpoint;
mod redact;

pub use authorization_code::{AuthorizationCode, AuthorizationRequest, store_refresh_token};
pub use cache::{
    CacheConfig, CacheStatus, Phase, RefreshAhead, Rejection, TokenCache, TokenCacheBuilder,
};
pub use classify::{Action, Classification, Failure, classify};
pub use discovery::AuthorizationServer;
pub use error::{
    CheckFailure, EndpointError, Error, OAuthError, TransportError, TransportErrorKind,
};
pub use grant::{ClientAuth, ClientCredentials, RefreshTokenGrant, TokenSource};
pub use introspection::{Introspection, IntrospectionResponse, Revocation, TokenTypeHint};
pub use scope::ScopeSet;
pub use tenant::{Tenant, TenantCache, TenantCacheBuilder, TenantsStatus};
pub use token::Token;

/// The `http` crate, whose types tokenward's API uses (`HeaderValue`, `StatusCode`, ...).
pub use http;
/// [`secrecy`]'s types that tokenward's API hands out: an access token is a
/// [`SecretString`]; read it with [`ExposeSecret::expose_secret`].
pub use secrecy::{ExposeSecret, SecretString};
pub use transport::HttpClient;
#[cfg(feature = "reqwest")]
pub use transport::ReqwestClient;
