//! [`AuthLayer`] and [`Auth`].

use std::hash::Hash;
use std::task::{Context, Poll};
use std::{fmt, mem};

use http::header::AUTHORIZATION;
use http::{Request, Response};
use tokenward::{Reader, TenantCache, TokenCache};
use tower::{Layer, Service};

use crate::BoxError;
use crate::credentials::{Credentials, Lookup};
use crate::future::{ResponseFuture, Sent};
use crate::replay::{CloneableBodies, Kept, Replay, copy_for_resend};
use crate::tenant::{FromExtension, Tenants};

/// Wraps a service in [`Auth`]: every request carries a fresh access token.
///
/// `C` finds the token cache of a request (a [`Reader`] of one [`TokenCache`],
/// [`Tenants`] for many); `R` decides which requests may be resent
/// ([`CloneableBodies`] by default; see [`replay`](crate::replay)).
///
/// See the [crate docs](crate) for an example and the behaviour in full.
#[derive(Debug, Clone)]
pub struct AuthLayer<C = Reader, R = CloneableBodies> {
    credentials: C,
    replay: R,
    retry_bare_401: bool,
}

impl AuthLayer {
    /// Every request carries `cache`'s token. Each service the layer makes reads it through
    /// a [`Reader`] of its own, so a fresh read takes no claim on the shared cache. (A reader
    /// keeps the token it read last alive until its next read, also once the cache dropped
    /// it: one token per idle service, and one in the layer.)
    pub fn new(cache: TokenCache) -> Self {
        AuthLayer::with_credentials(cache.reader())
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
            retry_bare_401: false,
        }
    }
}

impl<C, R> AuthLayer<C, R> {
    /// Which requests can be resent after a 401 `invalid_token`: see
    /// [`replay`](crate::replay). [`NeverReplay`](crate::replay::NeverReplay) never resends and
    /// keeps no copy; a closure `Fn(&B) -> Option<B>` copies bodies of any type.
    pub fn replay<R2>(self, replay: R2) -> AuthLayer<C, R2> {
        AuthLayer {
            credentials: self.credentials,
            replay,
            retry_bare_401: self.retry_bare_401,
        }
    }

    /// Also treat a bare 401 (no `error` code in the `Bearer` challenge, or no challenge) as a
    /// rejected token: invalidate it and resend once. Off by default: a bare 401 usually means
    /// the resource wants other credentials, and a new token will not help.
    pub fn retry_bare_401(mut self, enabled: bool) -> Self {
        self.retry_bare_401 = enabled;
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
            retry_bare_401: self.retry_bare_401,
        }
    }
}

/// Sets `Authorization` from a token cache on every request, and resends once with a new
/// token after a 401 `invalid_token`. Made by [`AuthLayer`].
///
/// Errors are [`BoxError`]: the layer's own are [`AuthError`](crate::AuthError)s, the inner
/// service's pass through unchanged. See the [crate docs](crate).
#[derive(Debug, Clone)]
pub struct Auth<S, C = Reader, R = CloneableBodies> {
    inner: S,
    credentials: C,
    replay: R,
    retry_bare_401: bool,
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
    type Future = ResponseFuture<S, B, R::Kept>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let lookup = match self.credentials.lookup(&request) {
            Ok(lookup) => lookup,
            Err(error) => return ResponseFuture::failed(error),
        };
        // The copy for one resend is made before the first send (the inner service consumes
        // the request) and without the Authorization header (the resend carries a new one).
        // A strategy that never copies (`NeverReplay`) skips this at compile time.
        let copy = if <R::Kept as Kept<B>>::COPIES {
            copy_for_resend(&self.replay, &request)
        } else {
            None
        };
        let Some(copy) = copy else {
            // Nothing to resend: a fresh token's future keeps a receipt (no reference count).
            let fresh = match lookup {
                Lookup::Reader(reader) => match reader.try_fresh() {
                    Some(fresh) => Ok((fresh.header().clone(), fresh.receipt())),
                    None => Err(reader.cache().clone()),
                },
                Lookup::Cache(cache) => match cache.try_lease() {
                    Some(lease) => Ok((lease.header().clone(), lease.receipt())),
                    None => Err(cache),
                },
            };
            return match fresh {
                Ok((header, receipt)) => {
                    request.headers_mut().insert(AUTHORIZATION, header);
                    let future = self.inner.call(request);
                    let sent = Sent::Receipt(receipt);
                    ResponseFuture::calling(future, sent, None, None, None, self.retry_bare_401)
                }
                Err(cache) => self.wait(cache, request, None),
            };
        };
        // A resend is possible: the future keeps a lease (the header sent, to compare with
        // the next one) and the cache (to refresh from, even if every other handle is gone).
        let fresh = match lookup {
            Lookup::Reader(reader) => match reader.try_fresh() {
                Some(fresh) => Ok((fresh.lease(), reader.cache().clone())),
                None => Err(reader.cache().clone()),
            },
            Lookup::Cache(cache) => match cache.try_lease() {
                Some(lease) => Ok((lease, cache)),
                None => Err(cache),
            },
        };
        match fresh {
            Ok((lease, cache)) => {
                request
                    .headers_mut()
                    .insert(AUTHORIZATION, lease.header().clone());
                // A resend needs a service of its own: take the ready one, leave a clone.
                let clone = self.inner.clone();
                let mut ready = mem::replace(&mut self.inner, clone);
                let future = ready.call(request);
                ResponseFuture::calling(
                    future,
                    Sent::Lease(lease),
                    Some(cache),
                    Some(copy),
                    Some(ready),
                    self.retry_bare_401,
                )
            }
            Err(cache) => self.wait(cache, request, Some(copy)),
        }
    }
}

impl<S, C, R> Auth<S, C, R> {
    /// No fresh token: the request waits for one (out of line: the slow path).
    #[inline(never)]
    fn wait<B>(
        &mut self,
        cache: TokenCache,
        request: Request<B>,
        copy: Option<Request<B>>,
    ) -> ResponseFuture<S, B, R::Kept>
    where
        S: Service<Request<B>> + Clone,
        R: Replay<B>,
    {
        let clone = self.inner.clone();
        let ready = mem::replace(&mut self.inner, clone);
        ResponseFuture::acquiring(cache, request, copy, ready, self.retry_bare_401)
    }
}
