//! # tokenward-reqwest
//!
//! [tokenward] for [reqwest-middleware](reqwest_middleware) 0.5 / reqwest 0.13:
//!
//! * [`AuthMiddleware`] sets `Authorization` from a [`tokenward::TokenCache`] (or a tenant's,
//!   from a [`tokenward::TenantCache`]) and, on 401 `invalid_token`, drops that token, gets a
//!   fresh one and resends the request once. A token-endpoint failure is an error, never a
//!   request sent without a token.
//! * [`RetryMiddleware`] retries what [`tokenward::classify()`] calls retryable — 429 after its
//!   `Retry-After` (up to a 30 s cap; a longer one is returned at once) and connect errors for
//!   any request; 5xx with exponential backoff and full jitter, and timeouts, for requests
//!   safe to repeat (an idempotent method or an `Idempotency-Key`) — at most 4 attempts; never
//!   401, 403 or other 4xx.
//! * [`TokenwardStrategy`] (feature `reqwest-retry`) is the same classification as a
//!   `reqwest_retry::RetryableStrategy`, for users who keep reqwest-retry.
//!
//! Attach the retry middleware first (outermost) and the auth middleware after it, so that
//! every attempt carries the token current at that attempt.
//!
//! A resend runs in a `tokenward.resend` span. With the `metrics` feature, resends and
//! retries are counted (`tokenward.rejections`, `tokenward.http.retries`: see
//! [`tokenward::metrics`]); for a health endpoint, see `tokenward_tower::health`.
//!
//! # Example
//!
//! ```
//! use reqwest_middleware::ClientBuilder;
//! use tokenward::{ClientCredentials, TokenCache};
//! use tokenward_reqwest::{AuthMiddleware, RetryMiddleware};
//! # use tokenward_testkit::FakeServer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let server = FakeServer::builder()
//! #     .client("my-client", "s3cr3t")
//! #     .client_scopes("my-client", "jobs.read")
//! #     .build();
//! # let running = server.listen().await?;
//! # let token_url = running.token_url();
//! # let jobs = running.url("/resource/jobs.read");
//! let grant = ClientCredentials::builder(token_url, "my-client")
//!     .client_secret("s3cr3t")
//!     .scope("jobs.read")
//!     .build()?;
//! let cache = TokenCache::new(grant);
//!
//! let client = ClientBuilder::new(reqwest::Client::new())
//!     .with(RetryMiddleware::new()) // outermost: each attempt goes through auth again
//!     .with(AuthMiddleware::new(cache))
//!     .build();
//!
//! let response = client.get(&jobs).send().await?;
//! assert_eq!(response.status(), 200);
//! # assert_eq!(server.token_calls(), 1);
//! # Ok(()) }
//! ```
//!
//! # Errors, and downcasting them
//!
//! The middlewares return [`reqwest_middleware::Error`]. When no token could be obtained
//! (the token endpoint refused or failed, an unknown tenant, ...) it is
//! [`Error::Middleware`](reqwest_middleware::Error::Middleware) holding a [`tokenward::Error`]
//! — the core's typed error, with its status, its `Retry-After` and what to do — and the
//! request was not sent. Get it back with `downcast_ref`, or with [`token_error`], which also
//! looks through wrappers such as reqwest-retry's `RetryError`:
//!
//! ```
//! use reqwest_middleware::ClientBuilder;
//! use tokenward::{ClientCredentials, TokenCache};
//! use tokenward_reqwest::{AuthMiddleware, token_error};
//! # use tokenward_testkit::{Fault, FakeServer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let server = FakeServer::builder().client("my-client", "s3cr3t").build();
//! # let running = server.listen().await?;
//! # let (token_url, api) = (running.token_url(), running.resource_url());
//! # server.set_fault(Some(Fault::InvalidClient));
//! let grant = ClientCredentials::builder(token_url, "my-client")
//!     .client_secret("rotated-away")
//!     .build()?;
//! let client = ClientBuilder::new(reqwest::Client::new())
//!     .with(AuthMiddleware::new(TokenCache::new(grant)))
//!     .build();
//!
//! let err = client.get(&api).send().await.unwrap_err();
//! // With anyhow's downcast_ref, on the middleware error ...
//! if let reqwest_middleware::Error::Middleware(inner) = &err {
//!     let cause = inner.downcast_ref::<tokenward::Error>().unwrap();
//!     assert!(matches!(cause, tokenward::Error::InvalidClient(_)));
//! }
//! // ... or with token_error, through any wrapper.
//! match token_error(&err) {
//!     Some(tokenward::Error::InvalidClient(response)) => {
//!         assert_eq!(response.status, 401);
//!     }
//!     other => panic!("{other:?}"),
//! }
//! // The failure is held: later requests get it at once, as Error::CoolingDown, and
//! // `cause()` is the failure itself.
//! let again = client.get(&api).send().await.unwrap_err();
//! let held = token_error(&again).unwrap();
//! assert!(matches!(held, tokenward::Error::CoolingDown { .. }));
//! assert!(matches!(held.cause(), tokenward::Error::InvalidClient(_)));
//! # assert_eq!(server.counters().resource_requests, 0, "nothing was sent");
//! # Ok(()) }
//! ```
//!
//! Errors of the request itself (connect, timeout, ...) stay
//! [`Error::Reqwest`](reqwest_middleware::Error::Reqwest); the retry middleware never wraps
//! errors.
//!
//! # Features
//!
//! * `reqwest-retry`: [`TokenwardStrategy`], and [`token_error`] looking through
//!   `reqwest_retry::RetryError`.
//!
#![cfg_attr(
    feature = "reqwest-retry",
    doc = "[`TokenwardStrategy`]: crate::TokenwardStrategy"
)]
#![cfg_attr(
    not(feature = "reqwest-retry"),
    doc = "[`TokenwardStrategy`]: https://docs.rs/tokenward-reqwest/latest/tokenward_reqwest/strategy/struct.TokenwardStrategy.html"
)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod auth;
pub mod retry;
#[cfg(feature = "reqwest-retry")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest-retry")))]
pub mod strategy;

pub use auth::{AuthMiddleware, Tenant};
pub use retry::{RetryMiddleware, Sleeper, TokioSleeper};
#[cfg(feature = "reqwest-retry")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest-retry")))]
pub use strategy::TokenwardStrategy;

use std::error::Error as StdError;

/// The [`tokenward::Error`] behind a middleware error, if there is one: why no token could
/// be obtained (and so why the request was not sent).
///
/// Looks inside [`reqwest_middleware::Error::Middleware`], down the chain of sources, and
/// through nested `reqwest_middleware::Error`s (with the `reqwest-retry` feature, also through
/// `reqwest_retry::RetryError`, whose transparent variant hides its source). `None` for
/// [`reqwest_middleware::Error::Reqwest`].
pub fn token_error(err: &reqwest_middleware::Error) -> Option<&tokenward::Error> {
    match err {
        reqwest_middleware::Error::Middleware(inner) => {
            inner.chain().find_map(|cause| in_cause(cause))
        }
        reqwest_middleware::Error::Reqwest(_) => None,
    }
}

/// A URL as the middlewares log it: without its userinfo, query and fragment, which may carry
/// credentials (a password, an API key, RFC 6750 §2.3's access token in the query) or user
/// data.
pub(crate) fn loggable_url(url: &reqwest::Url) -> reqwest::Url {
    let mut url = url.clone();
    // Both fail only for URLs that cannot have userinfo.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_query(None);
    url.set_fragment(None);
    url
}

fn in_cause<'a>(cause: &'a (dyn StdError + 'static)) -> Option<&'a tokenward::Error> {
    if let Some(found) = cause.downcast_ref::<tokenward::Error>() {
        return Some(found);
    }
    if let Some(nested) = cause.downcast_ref::<reqwest_middleware::Error>() {
        return token_error(nested);
    }
    #[cfg(feature = "reqwest-retry")]
    if let Some(retry) = cause.downcast_ref::<reqwest_retry::RetryError>() {
        return match retry {
            reqwest_retry::RetryError::WithRetries { err, .. }
            | reqwest_retry::RetryError::Error(err) => token_error(err),
        };
    }
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn logged_urls_have_no_query() {
        let url = reqwest::Url::parse("https://api.example/jobs?access_token=s3cr3t#f").unwrap();
        assert_eq!(
            super::loggable_url(&url).as_str(),
            "https://api.example/jobs"
        );
    }

    #[test]
    fn logged_urls_have_no_userinfo() {
        let url = reqwest::Url::parse("https://alice:p4ss@api.example:8443/jobs?k=v").unwrap();
        assert_eq!(
            super::loggable_url(&url).as_str(),
            "https://api.example:8443/jobs"
        );
        let url = reqwest::Url::parse("https://alice@api.example/jobs").unwrap();
        assert_eq!(
            super::loggable_url(&url).as_str(),
            "https://api.example/jobs"
        );
    }
}
