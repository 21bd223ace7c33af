//! [`AuthLayer`] and [`Auth`].

use std::fmt;
use std::hash::Hash;
use std::task::{Context, Poll};

use http::{Request, Response};
use tokenward::{Rejection, TenantCache, TokenCache};
use tower::{Layer, Service};

use crate::BoxError;
use crate::credentials::Credentials;
use crate::future::ResponseFuture;
use crate::replay::{CloneableBodies, Replay, try_clone_request};
use crate::tenant::{FromExtension, Tenants};

/// Wraps a service in [`Auth`]: every request carries a fresh access token.
///
/// `C` finds the token cache of a request (one [`TokenCache`], [`Tenants`] for many); `R`
/// decides which requests may be resent ([`CloneableBodies`] by default; see
/// [`replay`](crate::replay)).
///
/// See the [crate docs](crate) for an example and the behaviour in full.
#[derive(Debug, Clone)]
pub struct AuthLayer<C = TokenCache, R = CloneableBodies> {
    credentials: C,
    replay: R,
    rejection: Rejection,
}

impl AuthLayer {
    /// Every request carries `cache`'s token.
    pub fn new(cache: TokenCache) -> Self {
        AuthLayer::with_credentials(cache)
    }
}

impl<K> AuthLayer<Tenants<K>>
where
    K: Eq + Hash + Clone + fmt::Debug + fmt::Display + Send + Sync + 'static,
{
    /// Each request carries the token of the tenant named by its
    /// [`Tenant<K>`](crate::tenant::Tenant) extension. See [`tenant`](crate::tenant).
    pub fn tenants(cache: TenantCache<K>) -> Self {
        AuthLayer::with_credentials(Tenants::new(cache, FromExtension))
    }
}

impl<K, X> AuthLayer<Tenants<K, X>> {
    /// Each request carries the token of the tenant that `extract` finds in it (a closure
    /// `Fn(&Request<B>) -> Option<K>`, or an [`ExtractTenant`](crate::tenant::ExtractTenant)).
    ///
    /// ```
    /// use tokenward::TenantCache;
    /// use tokenward_tower::AuthLayer;
    ///
    /// let tenants: TenantCache<String> = TenantCache::new();
    /// let layer = AuthLayer::tenants_by(tenants, |req: &http::Request<String>| {
    ///     let org = req.headers().get("x-org")?.to_str().ok()?;
    ///     Some(org.to_owned())
    /// });
    /// # let _ = layer;
    /// ```
    pub fn tenants_by(cache: TenantCache<K>, extract: X) -> Self {
        AuthLayer::with_credentials(Tenants::new(cache, extract))
    }
}

impl<C> AuthLayer<C> {
    /// Requests carry the token of the cache that `credentials` picks for them.
    pub fn with_credentials(credentials: C) -> Self {
        AuthLayer {
            credentials,
            replay: CloneableBodies,
            rejection: Rejection::new(),
        }
    }
}

impl<C, R> AuthLayer<C, R> {
    /// Which requests can be resent after a 401 `invalid_token`: see
    /// [`replay`](crate::replay). [`NeverReplay`](crate::replay::NeverReplay) never resends and
    /// makes no copy; a closure `Fn(&B) -> Option<B>` copies bodies of any type.
    pub fn replay<R2>(self, replay: R2) -> AuthLayer<C, R2> {
        AuthLayer {
            credentials: self.credentials,
            replay,
            rejection: self.rejection,
        }
    }

    /// Also treat a bare 401 (no `error` code in the `Bearer` challenge, or no challenge) as a
    /// rejected token: invalidate it and resend once ([`Rejection::bare_401`]). Off by
    /// default: a bare 401 usually means the resource wants other credentials, and a new
    /// token will not help.
    pub fn retry_bare_401(mut self, enabled: bool) -> Self {
        self.rejection = self.rejection.bare_401(enabled);
        self
    }

    /// The credentials.
    pub fn credentials(&self) -> &C {
        &self.credentials
    }
}

impl<S, C: Clone, R: Clone> Layer<S> for AuthLayer<C, R> {
    type Service = Auth<S, C, R>;

    fn layer(&self, inner: S) -> Self::Service {
        Auth {
            inner,
            credentials: self.credentials.clone(),
            replay: self.replay.clone(),
            rejection: self.rejection,
        }
    }
}

/// Sets `Authorization` from a token cache on every request, and resends once with a new
/// token after a 401 `invalid_token`. Made by [`AuthLayer`].
///
/// Errors are [`BoxError`]: the layer's own are [`AuthError`](crate::AuthError)s, the inner
/// service's pass through unchanged. See the [crate docs](crate).
///
/// `poll_ready` is the inner service's. A request whose token is usable at once is sent
/// through the service `poll_ready` made ready; one that must wait for its token gives that
/// reservation back (the ready service, with the permit or slot it holds, is dropped and an
/// un-ready clone takes its place), and once its token is there drives a clone's readiness
/// through [`tower::util::Oneshot`]. So a request waiting for a token never holds a permit
/// of a `ConcurrencyLimit` or a slot of a `Buffer` below.
#[derive(Debug, Clone)]
pub struct Auth<S, C = TokenCache, R = CloneableBodies> {
    inner: S,
    credentials: C,
    replay: R,
    rejection: Rejection,
}

impl<S> Auth<S> {
    /// Wraps `inner`; every request carries `cache`'s token.
    pub fn new(inner: S, cache: TokenCache) -> Self {
        AuthLayer::new(cache).layer(inner)
    }

    /// An [`AuthLayer`] over `cache`: `Auth::layer(cache)` is `AuthLayer::new(cache)`.
    pub fn layer(cache: TokenCache) -> AuthLayer {
        AuthLayer::new(cache)
    }
}

impl<S, C, R> Auth<S, C, R> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The credentials.
    pub fn credentials(&self) -> &C {
        &self.credentials
    }
}

impl<S, C, R, B, ResB> Service<Request<B>> for Auth<S, C, R>
where
    S: Service<Request<B>, Response = Response<ResB>> + Clone,
    S::Error: Into<BoxError>,
    C: Credentials<B>,
    R: Replay<B>,
{
    type Response = Response<ResB>;
    type Error = BoxError;
    type Future = ResponseFuture<S, B>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let cache = match self.credentials.cache_for(&request) {
            Ok(cache) => cache,
            Err(error) => return ResponseFuture::failed(error),
        };
        // The copy for one resend is made before the first send: the inner service consumes
        // the request.
        let copy = try_clone_request(&self.replay, &request);
        ResponseFuture::new(cache, request, copy, &mut self.inner, self.rejection)
    }
}
