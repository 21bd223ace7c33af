//! [`ResponseFuture`]: the state machine behind [`Auth`](crate::Auth).
//!
//! ```text
//!             call()
//!   usable token │ none ──► Waiting (the cache's single flight; boxed, slow path only)
//!                ▼             │ header
//!   Calling (the ready         ▼
//!   inner service)          Sending (a clone through tower::util::Oneshot: its readiness
//!                │             │     is driven only once the token is there)
//!                ├─────────────┘
//!                │ 401 invalid_token (tokenward::Rejection), body replayable
//!                ▼
//!            Renewing (TokenCache::replace_rejected: invalidate by value, next token; boxed)
//!                │ a new token (different from the rejected one)
//!                ▼
//!            Resending (Oneshot again) ──► the response, as is
//! ```
//!
//! A request that cannot be resent stops there: its 401 is returned after the token
//! is invalidated (by value, with the header the future kept).
//!
//! A usable token and a response that is not a 401 `invalid_token` take the first arrow
//! only: nothing boxed, and no allocation in the layer beyond the copy for a resend.
//!
//! # Example
//!
//! The future is named, so it can be stored or returned without boxing:
//!
//! ```
//! use std::time::Duration;
//! use http::{Request, Response};
//! use tokenward::{Token, TokenCache, grant::from_fn};
//! use tokenward_tower::{AuthLayer, BoxError, future::ResponseFuture};
//! use tower::{Layer, Service, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), BoxError> {
//! let cache = TokenCache::new(from_fn(|| async {
//!     Token::builder("t0k3n").expires_in(Duration::from_secs(3600)).build()
//! }));
//! let echo = service_fn(|req: Request<String>| async move {
//!     Ok::<_, BoxError>(Response::new(req.headers()["authorization"].to_str()?.to_owned()))
//! });
//! let mut service = AuthLayer::new(cache).layer(echo);
//! let future: ResponseFuture<_, String> = service.ready().await?.call(Request::new(String::new()));
//! assert_eq!(future.await?.body(), "Bearer t0k3n");
//! # Ok(()) }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tokenward::metrics::Rejected;
use tokenward::{Rejection, TokenCache};
use tower::Service;
use tower::util::Oneshot;

use crate::{AuthError, BoxError};

type Wait<T> = Pin<Box<dyn Future<Output = Result<T, tokenward::Error>> + Send + 'static>>;

pin_project! {
    /// The response future of [`Auth`](crate::Auth).
    #[must_use = "futures do nothing unless polled"]
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S, B>,
        // The cache the token came from (to invalidate it, and to get the next one).
        cache: Option<TokenCache>,
        // The header sent, to invalidate by value and to compare with the next one.
        sent: Option<HeaderValue>,
        // A copy of the request for one resend, if its body can be copied.
        copy: Option<Request<B>>,
        // A clone of the inner service for the resend.
        service: Option<S>,
        rejection: Rejection,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<B>>,
    {
        Failed { error: Option<AuthError> },
        // The first send on the fast path: the service `poll_ready` made ready, called.
        Calling { #[pin] future: S::Future },
        // The request and a clone of the inner service wait for the token.
        Waiting { wait: Wait<HeaderValue>, request: Option<Request<B>>, service: Option<S> },
        // The first send after waiting for the token: a clone, its readiness driven now.
        Sending { #[pin] future: Oneshot<S, Request<B>> },
        // In a `tokenward.resend` span: the next token, then the resend.
        Renewing { wait: Wait<Option<HeaderValue>>, response: Option<S::Response>, span: tracing::Span },
        Resending { #[pin] future: Oneshot<S, Request<B>>, span: tracing::Span },
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>> + Clone,
{
    /// Fails at once, without calling the inner service.
    pub(crate) fn failed(error: AuthError) -> Self {
        ResponseFuture {
            state: State::Failed { error: Some(error) },
            cache: None,
            sent: None,
            copy: None,
            service: None,
            rejection: Rejection::new(),
        }
    }

    /// Sends `request` with `cache`'s token: through `ready` (which `poll_ready` made
    /// ready) if the token is usable now; otherwise through a clone of it once the token is
    /// there, so that the wait holds nothing of the service below.
    pub(crate) fn new(
        cache: TokenCache,
        mut request: Request<B>,
        copy: Option<Request<B>>,
        ready: &mut S,
        rejection: Rejection,
    ) -> Self {
        // A clone for the resend, if there is a copy to resend.
        let service = copy.as_ref().map(|_| ready.clone());
        let (state, sent) = match cache.try_header() {
            Some(header) => {
                request.headers_mut().insert(AUTHORIZATION, header.clone());
                let future = ready.call(request);
                (State::Calling { future }, Some(header))
            }
            None => {
                // Give the reservation back: the service `poll_ready` made ready (and the
                // permit or slot it holds) is dropped, an un-ready clone stays for the next
                // request. This request drives a clone's readiness once its token is there.
                *ready = ready.clone();
                let waiting = cache.clone();
                let wait = Box::pin(async move { waiting.header().await });
                let waiting = State::Waiting {
                    wait,
                    request: Some(request),
                    service: Some(ready.clone()),
                };
                (waiting, None)
            }
        };
        ResponseFuture {
            state,
            cache: Some(cache),
            sent,
            copy,
            service,
            rejection,
        }
    }
}

/// The `integration` of this crate's metrics and spans.
const INTEGRATION: &str = "tower";

/// Records what was done with a rejected token: on the resend's span and in the metrics.
fn rejected(span: &tracing::Span, outcome: Rejected) {
    span.record("outcome", outcome.as_str());
    tokenward::metrics::record_rejection(INTEGRATION, outcome);
}

const POLLED_AFTER_COMPLETION: &str =
    "tokenward_tower::future::ResponseFuture polled after completion";

impl<S, B, ResB> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResB>> + Clone,
    S::Error: Into<BoxError>,
{
    type Output = Result<Response<ResB>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let result = match this.state.as_mut().project() {
                StateProj::Calling { future } => ready!(future.poll(cx)),
                StateProj::Sending { future } => ready!(future.poll(cx)),
                StateProj::Renewing {
                    wait,
                    response,
                    span,
                } => {
                    let next = match ready!(span.in_scope(|| wait.as_mut().poll(cx))) {
                        Ok(next) => next,
                        Err(error) => {
                            rejected(span, Rejected::Failed);
                            return Poll::Ready(Err(AuthError::from(error).into()));
                        }
                    };
                    let Some(header) = next else {
                        rejected(span, Rejected::SameToken);
                        return Poll::Ready(Ok(response.take().expect(POLLED_AFTER_COMPLETION)));
                    };
                    rejected(span, Rejected::Resent);
                    let span = span.clone();
                    // Drop the 401 (and its connection) before resending.
                    drop(response.take());
                    let mut request = this.copy.take().expect(POLLED_AFTER_COMPLETION);
                    request.headers_mut().insert(AUTHORIZATION, header);
                    let service = this.service.take().expect(POLLED_AFTER_COMPLETION);
                    this.state.set(State::Resending {
                        future: Oneshot::new(service, request),
                        span,
                    });
                    continue;
                }
                // A second 401 is the caller's: returned as is.
                StateProj::Resending { future, span } => {
                    let result = ready!(span.in_scope(|| future.poll(cx)));
                    if let Ok(response) = &result {
                        span.record("http.response.status_code", response.status().as_u16());
                    }
                    return Poll::Ready(result.map_err(Into::into));
                }
                StateProj::Waiting {
                    wait,
                    request,
                    service,
                } => {
                    let header = match ready!(wait.as_mut().poll(cx)) {
                        Ok(header) => header,
                        Err(error) => return Poll::Ready(Err(AuthError::from(error).into())),
                    };
                    let mut request = request.take().expect(POLLED_AFTER_COMPLETION);
                    request.headers_mut().insert(AUTHORIZATION, header.clone());
                    *this.sent = Some(header);
                    let service = service.take().expect(POLLED_AFTER_COMPLETION);
                    this.state.set(State::Sending {
                        future: Oneshot::new(service, request),
                    });
                    continue;
                }
                StateProj::Failed { error } => {
                    let error = error.take().expect(POLLED_AFTER_COMPLETION);
                    return Poll::Ready(Err(error.into()));
                }
            };
            // The answer to the first send.
            let response = result.map_err(Into::into)?;
            if !this
                .rejection
                .rejects(response.status(), response.headers())
            {
                return Poll::Ready(Ok(response));
            }
            let (Some(cache), Some(sent)) = (this.cache.as_ref(), this.sent.take()) else {
                return Poll::Ready(Ok(response));
            };
            if this.copy.is_none() {
                tokenward::metrics::record_rejection(INTEGRATION, Rejected::NotReplayable);
                let dropped = cache.invalidate(&sent);
                tracing::debug!(
                    invalidated = dropped,
                    "401 invalid_token: the request cannot be resent (its body cannot be \
                     copied), so the response is returned; the next request carries a new token"
                );
                return Poll::Ready(Ok(response));
            }
            let span = tracing::info_span!(
                "tokenward.resend",
                integration = INTEGRATION,
                outcome = tracing::field::Empty,
                "http.response.status_code" = tracing::field::Empty,
            );
            span.in_scope(|| {
                tracing::debug!("401 invalid_token: getting a new token to resend once")
            });
            let cache = cache.clone();
            this.state.set(State::Renewing {
                wait: Box::pin(async move { cache.replace_rejected(&sent).await }),
                response: Some(response),
                span,
            });
        }
    }
}

impl<S, B> fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Failed { .. } => "Failed",
            State::Calling { .. } => "Calling",
            State::Waiting { .. } => "Waiting",
            State::Sending { .. } => "Sending",
            State::Renewing { .. } => "Renewing",
            State::Resending { .. } => "Resending",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field("replayable", &self.copy.is_some())
            .finish_non_exhaustive()
    }
}
