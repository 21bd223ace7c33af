//! # tokenward-tower
//!
//! A [`tower`] layer that keeps an OAuth 2.0 access token on every request: wrap any
//! `Service<http::Request<B>>` (a hyper client, a tonic/axum client channel, a service stack)
//! in [`AuthLayer`], and compose it with tower's own retry and timeout layers.
//!
//! [`AuthLayer`] → [`Auth<S>`](Auth) → [`future::ResponseFuture`], in the style of
//! tower-http's `auth` and `follow_redirect` middleware.
//!
//! # What it does
//!
//! * **Sets `Authorization`** to the [`TokenCache`](tokenward::TokenCache)'s pre-built header
//!   value (marked sensitive: never logged by `Debug`, never indexed by HTTP/2 HPACK),
//!   replacing any the request had, then calls the inner service.
//! * **A request waiting for its token holds nothing below.** With a usable token the request
//!   goes to the service `poll_ready` made ready. Without one it gives that reservation back
//!   (a `ConcurrencyLimit` permit, a `Buffer` slot), waits for its token, then drives the
//!   readiness of a clone through [`tower::util::Oneshot`]. A hanging token endpoint (a
//!   tenant's slow refresh) never holds up other requests (other tenants).
//! * **Usable token** (fresh or stale): read at once from the cache (an atomic load, a clock
//!   read, a reference count); the future is a `pin_project_lite` state machine and nothing
//!   is boxed.
//! * **No usable token** (first request, expired): the request waits for the cache's single
//!   flight refresh; a thousand concurrent requests make one token call. If no token can be had
//!   (endpoint down, 429 window, grant revoked) the request fails with
//!   [`AuthError::Token`] **without calling the inner service**.
//! * **401 with `WWW-Authenticate: Bearer error="invalid_token"`** (as
//!   [`tokenward::Rejection`] decides, the same rule as the reqwest middleware): the
//!   rejected token is invalidated *by value* (if it is still the cached one, so a burst of
//!   401s drops it once and makes one refresh), the next token is obtained
//!   ([`TokenCache::replace_rejected`](tokenward::TokenCache::replace_rejected)), and the
//!   request is **resent once** through [`tower::util::Oneshot`]. A second 401 is returned to
//!   the caller as is. The request is not resent if the next token equals the rejected one.
//! * **A bare 401** (no error code) is returned as is; enable
//!   [`retry_bare_401`](AuthLayer::retry_bare_401) to treat it as `invalid_token`.
//!   **403** (`insufficient_scope` or not) is never retried: a new token has the same scopes.
//! * **Tenants**: the token can come from the request's tenant's cache
//!   ([`AuthLayer::tenants`], [`tenant`]); a missing or unknown tenant fails the request with
//!   a typed error and sends nothing. A request in flight for a tenant that is removed
//!   meanwhile is not resent with a new token.
//! * **Seen from outside.** A resend runs in a `tokenward.resend` span; with the `metrics`
//!   feature, resends and the retries of [`retry::ClassifiedRetry`] are counted
//!   (`tokenward.rejections`, `tokenward.http.retries`: see [`tokenward::metrics`]).
//!   [`health::TokenHealth`] answers a health check with the caches' status: 200 while every
//!   token is usable, 503 otherwise.
//!
//! # Request bodies: what is resent, and what is not
//!
//! A resend needs a second copy of the request, made before the first send. The layer copies
//! the request only if its [`Replay`](replay::Replay) strategy can copy the body (by default
//! [`CloneableBodies`](replay::CloneableBodies): `Full`, `Empty`, `String`, `Bytes`, … via
//! [`CloneBody`](replay::CloneBody)). **A body that cannot be copied — a stream such as
//! `http_body_util::StreamBody`, a boxed body of unknown length — is never resent, with or
//! without its body**: on a 401 `invalid_token` the layer still invalidates the token and
//! returns the 401, so the caller's next request (or its own retry with a new body) carries a
//! fresh token. See [`replay`] for closures (other body types) and
//! [`NeverReplay`](replay::NeverReplay).
//!
//! # Errors
//!
//! `Auth<S>`'s error type is [`BoxError`] (tower's convention). The layer's own failures are
//! an [`AuthError`] inside it: `error.downcast_ref::<AuthError>()`. Errors of the inner
//! service are passed through unchanged: downcast them to their own type (a
//! `hyper_util::client::legacy::Error`, a `tower::timeout::error::Elapsed`, …).
//!
//! # Example
//!
//! A hyper client against the testkit's fake authorization server and protected resource on
//! `127.0.0.1`:
//!
//! ```
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Full};
//! use hyper_util::client::legacy::Client;
//! use hyper_util::rt::TokioExecutor;
//! use tokenward::{ClientCredentials, TokenCache};
//! use tokenward_testkit::FakeServer;
//! use tokenward_tower::{AuthLayer, BoxError};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let server = FakeServer::builder().client("svc", "svc-secret").build();
//! let running = server.listen().await?;
//!
//! let grant = ClientCredentials::builder(running.token_url(), "svc")
//!     .client_secret("svc-secret")
//!     .build()?;
//! let cache = TokenCache::new(grant);
//!
//! let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
//! let client = ServiceBuilder::new().layer(AuthLayer::new(cache)).service(http);
//!
//! let request = http::Request::get(running.resource_url()).body(Full::default())?;
//! let response = client.clone().oneshot(request).await?;
//! assert_eq!(response.status(), 200);
//! let body = response.into_body().collect().await?.to_bytes();
//! assert!(body.starts_with(br#"{"#));
//!
//! // The server revokes the token: the next request meets a 401 invalid_token, and the
//! // layer refreshes the token and resends the request once.
//! server.revoke_all_access_tokens();
//! let request = http::Request::get(running.resource_url()).body(Full::default())?;
//! assert_eq!(client.oneshot(request).await?.status(), 200);
//! assert_eq!(server.counters().token_requests, 2);
//! # Ok(()) }
//! ```
//!
//! # Composing with retry and timeout
//!
//! [`retry::ClassifiedRetry`] is a [`tower::retry::Policy`] driven by the same
//! classification (429 after `Retry-After`, 5xx with backoff for requests safe to repeat,
//! never 401 or 403). The right order, outermost first:
//!
//! ```
//! # use std::time::Duration;
//! # use tokenward::{Token, TokenCache, grant::from_fn};
//! # use tokenward_tower::{AuthLayer, BoxError, retry::ClassifiedRetry};
//! # use tower::ServiceBuilder;
//! # let cache = TokenCache::new(from_fn(|| async { Token::builder("t").build() }));
//! # let http = tower::service_fn(|_req: http::Request<String>| async {
//! #     Ok::<_, BoxError>(http::Response::new(String::new()))
//! # });
//! let client = ServiceBuilder::new()
//!     .timeout(Duration::from_secs(10))                         // 1. the caller's deadline
//!     .retry(ClassifiedRetry::new())                            // 2. 429 / 5xx
//!     .layer(AuthLayer::new(cache))                             // 3. the token, per attempt
//!     .service(http);
//! # let _ = client;
//! ```
//!
//! * **`AuthLayer` innermost** (inside the retry): every attempt reads the token anew, so a
//!   retry after a long `Retry-After` carries the token that is valid *then*, and a token
//!   revoked between attempts is refreshed by `Auth` within that attempt. The retry layer's
//!   copy of the request holds no token at all.
//! * **Timeout outermost**: it bounds what the caller waits for in total — waiting for a token,
//!   every attempt, every backoff and `Retry-After` sleep. A timeout *inside* the retry is a
//!   per-attempt timeout; its `Elapsed` errors are not retried unless you opt in with
//!   [`retry_errors_if`](retry::ClassifiedRetry::retry_errors_if) (as
//!   `TransportErrorKind::Timeout`: the request may have reached the server, so only
//!   requests safe to repeat are retried). Both can be combined: a total deadline outside, a
//!   per-attempt one between the retry and `AuthLayer`.
//! * **Wrong: `AuthLayer` outside the retry.** The header is set once, so every retry resends
//!   the token read before the first attempt, even after a `Retry-After` long enough for it
//!   to be revoked or expire (one more 401 round trip, then `Auth`'s resend), and each
//!   request is copied by both layers.
//! * **Wrong: the timeout inside `AuthLayer`.** Waiting for a token (up to the cache's
//!   refresh deadline, 30 s by default) is then not bounded by your timeout.
//!
//! `examples/compose.rs` runs these stacks against the fake server, and
//! `tests/compose.rs` shows the difference.
//!
//! # Costs
//!
//! Per request on the fast path (a usable token, no 401): a read of the cache, the header
//! value's reference count, and, for a request that can be resent, a clone of the inner
//! service and the copy of the request for the resend, made before the first send (a
//! header-map clone when it has headers). Use
//! [`NeverReplay`](replay::NeverReplay) to make no copy. The figures are in the repository's
//! `BENCHMARKS.md`.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod credentials;
pub mod future;
pub mod health;
pub mod replay;
pub mod retry;
pub mod tenant;

mod error;
mod service;
mod transport;

pub use error::AuthError;
pub use service::{Auth, AuthLayer};
pub use transport::TowerHttpClient;

/// tower's boxed error: the error type of [`Auth`]. Downcast it to [`AuthError`] for the
/// layer's own failures.
pub use tower::BoxError;
