//! [`ResponseFuture`]: the state machine behind [`Auth`](crate::Auth).
//!
//! ```text
//!             call()
//!    fresh token │ no fresh token ──► Acquiring (boxed: the only allocation, slow path only)
//!                ▼                        │ header
//!             Calling ◄───────────────────┘
//!                │ 401 invalid_token, body replayable
//!                ▼
//!            Refreshing (invalidate by value, single-flight refresh; boxed)
//!                │ a new token (different from the rejected one)
//!                ▼
//!            Resending (tower::util::Oneshot: readiness driven again) ──► the response, as is
//! ```
//!
//! A request that cannot be resent stops at `Calling`: its 401 is returned after the token
//! is invalidated (by value, through the [`Receipt`] or
//! [`Lease`] the future kept).
//!
//! A fresh token and a response that is not a 401 `invalid_token` take the first arrow only:
//! no boxing and no allocation in the layer.
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
use http::{Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tokenward::{Failure, Lease, Receipt, TokenCache};
use tower::Service;
use tower::util::Oneshot;

use crate::replay::Kept;
use crate::{AuthError, BoxError};

/// A boxed wait for a token: only on the slow paths (no fresh token; after a 401).
pub(crate) type LeaseWait =
    Pin<Box<dyn Future<Output = Result<Lease, tokenward::Error>> + Send + 'static>>;

/// An owned wait for a lease on `cache`'s token: the cache's own future borrows it, this one
/// owns a clone (a reference count), hence the box.
pub(crate) fn owned_lease(cache: TokenCache) -> LeaseWait {
    Box::pin(async move { cache.lease().await })
}

pin_project! {
    /// The response future of [`Auth`](crate::Auth).
    ///
    /// `K` is where the copy of the request for a resend is kept: `Option<Request<B>>`, or
    /// [`NoCopy`](crate::replay::NoCopy) for a layer that never resends
    /// ([`NeverReplay`](crate::replay::NeverReplay)). See [`Replay::Kept`](crate::replay::Replay::Kept).
    #[must_use = "futures do nothing unless polled"]
    pub struct ResponseFuture<S, B, K = Option<Request<B>>>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S, B>,
        // The token sent, to invalidate it after a 401.
        sent: Option<Sent>,
        // The cache to refresh from for a resend: kept alive (the service that made this
        // future may be gone) only when there is a copy to resend.
        cache: Option<TokenCache>,
        // A copy of the request (without Authorization) for one resend, if the body replays.
        copy: K,
        // The service for the resend (taken ready with mem::replace, driven again by Oneshot).
        service: Option<S>,
        retry_bare_401: bool,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<B>>,
    {
        Failed { error: Option<Box<AuthError>> },
        // The slow paths are boxed, so the fast path's future stays small.
        Acquiring { pending: Option<Box<Pending<B>>> },
        Calling { #[pin] future: S::Future },
        Refreshing { wait: LeaseWait, response: Option<Box<S::Response>> },
        Resending { future: Pin<Box<Oneshot<S, Request<B>>>> },
    }
}

/// What a response future keeps of the token it sent.
#[derive(Debug)]
pub(crate) enum Sent {
    /// It cannot resend: enough to invalidate the token, and no reference count.
    Receipt(Receipt),
    /// It may resend: the header sent (not resent if the new token is the same) and the
    /// token's entry.
    Lease(Lease),
}

impl Sent {
    fn invalidate(&self) -> bool {
        match self {
            Sent::Receipt(receipt) => receipt.invalidate(),
            Sent::Lease(lease) => lease.invalidate(),
        }
    }

    fn is(&self, lease: &Lease) -> bool {
        matches!(self, Sent::Lease(sent) if sent.header() == lease.header())
    }
}

/// A request waiting for its token.
struct Pending<B> {
    wait: LeaseWait,
    request: Request<B>,
}

impl<S, B, K> ResponseFuture<S, B, K>
where
    S: Service<Request<B>>,
    K: Kept<B>,
{
    /// Fails at once, without calling the inner service.
    pub(crate) fn failed(error: AuthError) -> Self {
        ResponseFuture {
            state: State::Failed {
                error: Some(Box::new(error)),
            },
            sent: None,
            cache: None,
            copy: K::keep(None),
            service: None,
            retry_bare_401: false,
        }
    }

    /// The fast path: the request is already sent with `sent`'s header.
    #[inline(always)]
    pub(crate) fn calling(
        future: S::Future,
        sent: Sent,
        cache: Option<TokenCache>,
        copy: Option<Request<B>>,
        service: Option<S>,
        retry_bare_401: bool,
    ) -> Self {
        ResponseFuture {
            state: State::Calling { future },
            sent: Some(sent),
            cache,
            copy: K::keep(copy),
            service,
            retry_bare_401,
        }
    }

    /// The slow path: wait for a token, then send `request` through the ready `service`.
    pub(crate) fn acquiring(
        cache: TokenCache,
        request: Request<B>,
        copy: Option<Request<B>>,
        service: S,
        retry_bare_401: bool,
    ) -> Self {
        ResponseFuture {
            state: State::Acquiring {
                pending: Some(Box::new(Pending {
                    wait: owned_lease(cache.clone()),
                    request,
                })),
            },
            sent: None,
            cache: copy.is_some().then_some(cache),
            copy: K::keep(copy),
            service: Some(service),
            retry_bare_401,
        }
    }
}

/// Whether a 401 rejects the token it was sent with: `WWW-Authenticate: Bearer
/// error="invalid_token"` (or, if enabled, a bare 401).
fn rejects_token<T>(response: &Response<T>, retry_bare_401: bool) -> bool {
    match tokenward::classify(response.status(), response.headers(), None) {
        Some(c) => match c.failure {
            Failure::InvalidToken { .. } => true,
            Failure::Unauthorized => retry_bare_401,
            _ => false,
        },
        None => false,
    }
}

/// The copy for a resend is not needed any more (the answer is final): its header map goes
/// back to the thread's spare maps.
#[inline]
fn release<B, K: Kept<B>>(copy: &mut K) {
    if K::COPIES
        && let Some(copy) = copy.take()
    {
        crate::replay::recycle(copy);
    }
}

const POLLED_AFTER_COMPLETION: &str =
    "tokenward_tower::future::ResponseFuture polled after completion";

type Output<ResB> = Result<Response<ResB>, BoxError>;

impl<S, B, K, ResB> Future for ResponseFuture<S, B, K>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
    K: Kept<B>,
{
    type Output = Output<ResB>;

    /// The fast path stays small enough to inline: the inner call's answer, and a status
    /// check. Everything else is out of line.
    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.as_mut().project();
        if let StateProj::Calling { future } = this.state.project() {
            return match future.poll(cx) {
                Poll::Ready(Ok(response)) if response.status() != StatusCode::UNAUTHORIZED => {
                    release(this.copy);
                    Poll::Ready(Ok(response))
                }
                Poll::Ready(Ok(response)) => self.on_unauthorized(response, cx),
                Poll::Ready(Err(error)) => {
                    release(this.copy);
                    Poll::Ready(Err(error.into()))
                }
                Poll::Pending => Poll::Pending,
            };
        }
        self.poll_slow(cx)
    }
}

impl<S, B, K, ResB> ResponseFuture<S, B, K>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
    K: Kept<B>,
{
    /// A 401 came back: if it rejects the token, invalidate it and (when the request can be
    /// replayed) get a new one to resend.
    #[cold]
    #[inline(never)]
    fn on_unauthorized(
        mut self: Pin<&mut Self>,
        response: Response<ResB>,
        cx: &mut Context<'_>,
    ) -> Poll<Output<ResB>> {
        let this = self.as_mut().project();
        if !rejects_token(&response, *this.retry_bare_401) {
            release(this.copy);
            return Poll::Ready(Ok(response));
        }
        let Some(sent) = this.sent.as_ref() else {
            release(this.copy);
            return Poll::Ready(Ok(response));
        };
        let dropped = sent.invalidate();
        if !this.copy.is_kept() || this.service.is_none() {
            tracing::debug!(
                invalidated = dropped,
                "401 invalid_token: the request body cannot be replayed, so the response is \
                 returned; the next request carries a new token"
            );
            return Poll::Ready(Ok(response));
        }
        let Some(cache) = this.cache.take() else {
            return Poll::Ready(Ok(response));
        };
        tracing::debug!(
            invalidated = dropped,
            "401 invalid_token: getting a new token to resend once"
        );
        let mut state = this.state;
        state.set(State::Refreshing {
            wait: owned_lease(cache),
            response: Some(Box::new(response)),
        });
        self.poll_slow(cx)
    }

    /// Every state but a plain answer to the first send.
    #[inline(never)]
    fn poll_slow(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Output<ResB>> {
        loop {
            let mut this = self.as_mut().project();
            let response = match this.state.as_mut().project() {
                StateProj::Calling { future } => match ready!(future.poll(cx)) {
                    Ok(response) if response.status() == StatusCode::UNAUTHORIZED => response,
                    other => {
                        release(this.copy);
                        return Poll::Ready(other.map_err(Into::into));
                    }
                },
                StateProj::Acquiring { pending } => {
                    let waiting = pending.as_mut().expect(POLLED_AFTER_COMPLETION);
                    let result = ready!(waiting.wait.as_mut().poll(cx));
                    let lease = match result {
                        Ok(lease) => lease,
                        Err(error) => {
                            release(this.copy);
                            return Poll::Ready(Err(AuthError::from(error).into()));
                        }
                    };
                    let Pending { mut request, .. } =
                        *pending.take().expect(POLLED_AFTER_COMPLETION);
                    request
                        .headers_mut()
                        .insert(AUTHORIZATION, lease.header().clone());
                    *this.sent = Some(Sent::Lease(lease));
                    // The service was made ready by `poll_ready` before `call` took it.
                    let future = if this.copy.is_kept() {
                        this.service
                            .as_mut()
                            .expect(POLLED_AFTER_COMPLETION)
                            .call(request)
                    } else {
                        let mut service = this.service.take().expect(POLLED_AFTER_COMPLETION);
                        service.call(request)
                    };
                    this.state.set(State::Calling { future });
                    continue;
                }
                StateProj::Refreshing { wait, response } => {
                    let result = ready!(wait.as_mut().poll(cx));
                    let fresh = match result {
                        Ok(fresh) => fresh,
                        Err(error) => {
                            release(this.copy);
                            return Poll::Ready(Err(AuthError::from(error).into()));
                        }
                    };
                    if this.sent.as_ref().is_some_and(|sent| sent.is(&fresh)) {
                        tracing::debug!(
                            "the token obtained after a 401 is the rejected one: not resending"
                        );
                        let response = response.take().expect(POLLED_AFTER_COMPLETION);
                        release(this.copy);
                        return Poll::Ready(Ok(*response));
                    }
                    // Drop the 401 (and its connection) before resending.
                    drop(response.take());
                    let mut request = this.copy.take().expect(POLLED_AFTER_COMPLETION);
                    let service = this.service.take().expect(POLLED_AFTER_COMPLETION);
                    request
                        .headers_mut()
                        .insert(AUTHORIZATION, fresh.header().clone());
                    *this.sent = Some(Sent::Lease(fresh));
                    this.state.set(State::Resending {
                        future: Box::pin(Oneshot::new(service, request)),
                    });
                    continue;
                }
                StateProj::Resending { future } => {
                    // A second 401 is the caller's: returned as is.
                    return future.as_mut().poll(cx).map_err(Into::into);
                }
                StateProj::Failed { error } => {
                    let error: BoxError = error.take().expect(POLLED_AFTER_COMPLETION);
                    return Poll::Ready(Err(error));
                }
            };
            return self.on_unauthorized(response, cx);
        }
    }
}

impl<S, B, K> fmt::Debug for ResponseFuture<S, B, K>
where
    S: Service<Request<B>>,
    K: Kept<B>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Failed { .. } => "Failed",
            State::Acquiring { .. } => "Acquiring",
            State::Calling { .. } => "Calling",
            State::Refreshing { .. } => "Refreshing",
            State::Resending { .. } => "Resending",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field("replayable", &self.copy.is_kept())
            .finish_non_exhaustive()
    }
}
