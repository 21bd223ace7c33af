//! [`TokenwardStrategy`]: a `reqwest_retry::RetryableStrategy` driven by tokenward's
//! classification, for users who keep reqwest-retry's `RetryTransientMiddleware`
//! (feature `reqwest-retry`).
//!
//! | outcome | [`Retryable`] |
//! |---|---|
//! | 2xx, 3xx | `None` (not a failure) |
//! | 429, 408, 500, 502, 503, 504 | `Transient` |
//! | 401 (`invalid_token` included: [`AuthMiddleware`](crate::AuthMiddleware) resends it itself), 403, other 4xx | `Fatal` |
//! | 501, 505 and other 5xx that will fail the same way | `Fatal` |
//! | connect error, timeout | `Transient` |
//! | any other error, a middleware's included (a token-endpoint failure was already retried by the cache) | `Fatal` |
//!
//! Compared with reqwest-retry's `DefaultRetryableStrategy`: 401 `invalid_token` and 403
//! `insufficient_scope` are never retried blindly, and neither are 501/505. What
//! reqwest-retry still cannot do is wait for `Retry-After`: its policy never sees the
//! response. Nor does a strategy see the request: it cannot apply the core's method rule
//! (a POST after a 502 or a timeout is `Transient` here, as with reqwest-retry's own
//! strategy). Use [`RetryMiddleware`](crate::RetryMiddleware) for both: it retries such a
//! POST only when asked to.
//!
//! reqwest-retry wraps the errors it returns in its `RetryError`;
//! [`token_error`](crate::token_error) looks through it.
//!
//! # Example
//!
//! ```
//! use reqwest_middleware::ClientBuilder;
//! use reqwest_retry::RetryTransientMiddleware;
//! use reqwest_retry::policies::ExponentialBackoff;
//! use tokenward_reqwest::{AuthMiddleware, TokenwardStrategy};
//! # use tokenward::{Token, TokenCache, grant::from_fn};
//!
//! # let cache = TokenCache::new(from_fn(|| async { Token::builder("t").build() }));
//! let policy = ExponentialBackoff::builder().build_with_max_retries(3);
//! let client = ClientBuilder::new(reqwest::Client::new())
//!     .with(RetryTransientMiddleware::new_with_policy_and_strategy(policy, TokenwardStrategy))
//!     .with(AuthMiddleware::new(cache))
//!     .build();
//! # let _ = client;
//! ```

use reqwest::Response;
use reqwest_middleware::Result;
use reqwest_retry::{Retryable, RetryableStrategy};

use crate::retry::transport_error;

/// A `reqwest_retry::RetryableStrategy` that uses [`tokenward::classify()`]. See the
/// [module docs](self).
#[derive(Debug, Clone, Copy, Default)]
pub struct TokenwardStrategy;

impl RetryableStrategy for TokenwardStrategy {
    fn handle(&self, res: &Result<Response>) -> Option<Retryable> {
        match res {
            Ok(response) => {
                let classification =
                    tokenward::classify(response.status(), response.headers(), None)?;
                Some(if classification.action.retries_same_request() {
                    Retryable::Transient
                } else {
                    Retryable::Fatal
                })
            }
            Err(error) => Some(if transport_error(error).is_some() {
                Retryable::Transient
            } else {
                Retryable::Fatal
            }),
        }
    }
}
