//! [`TokenHealth`]: a ready-made health endpoint for the token caches of a service.
//!
//! It answers `GET` (and `HEAD`) with the JSON of [`TokenCache::status`] or
//! [`TenantCache::status`]: `200 OK` when every token is usable
//! ([`CacheStatus::is_usable`](tokenward::CacheStatus::is_usable)), `503 Service Unavailable`
//! otherwise, so a load balancer or an orchestrator's readiness probe can act on it. For a
//! tenant cache, `?tenant=<key>` answers for that tenant alone (`404` for a key it does not
//! have): one tenant's revoked credentials make the whole report 503, so probe with a
//! tenant, or use the whole report for alerts rather than readiness.
//!
//! The report makes no token request and holds no secret or token, but it does hold error
//! messages (the token endpoint's `error_description`, a grant file's path) and tenant keys:
//! mount it where operators reach it, beside `/metrics`, not on the public API.
//!
//! It is a tower [`Service`], so axum mounts it with `route_service`:
//!
//! ```
//! use axum::Router;
//! use tokenward::{Token, TokenCache, grant::from_fn};
//! use tokenward_tower::health::TokenHealth;
//!
//! let cache = TokenCache::new(from_fn(|| async { Token::builder("t0k3n").build() }));
//! let app: Router = Router::new().route_service("/health/tokens", TokenHealth::new(cache));
//! # let _ = app;
//! ```

use std::convert::Infallible;
use std::fmt;
use std::future::{Ready, ready};
use std::hash::Hash;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use tokenward::{TenantCache, TokenCache};
use tower::Service;

type Report = dyn Fn() -> (bool, Vec<u8>) + Send + Sync;
type TenantReport = dyn Fn(&str) -> Option<(bool, Vec<u8>)> + Send + Sync;

/// A tower [`Service`] that answers with the health of a [`TokenCache`] or a
/// [`TenantCache`]. See the [module docs](self). Cheap to clone.
#[derive(Clone)]
pub struct TokenHealth {
    report: Arc<Report>,
    /// One tenant's report, by its key's `Display`, for a tenant cache.
    tenant: Option<Arc<TenantReport>>,
}

impl TokenHealth {
    /// The health of one cache: [`TokenCache::status`] as JSON.
    pub fn new(cache: TokenCache) -> Self {
        TokenHealth {
            report: Arc::new(move || {
                let status = cache.status();
                (status.is_usable(), to_json(&status))
            }),
            tenant: None,
        }
    }

    /// The health of every tenant: [`TenantCache::status`] as JSON (a summary, and the
    /// tenants that need attention), `503` if any tenant is not usable. `?tenant=<key>`
    /// answers for one tenant, its key parsed with [`FromStr`]; a probe does not count as a
    /// read of the tenant (it does not keep it from idle eviction).
    pub fn tenants<K>(tenants: TenantCache<K>) -> Self
    where
        K: Eq + Hash + Clone + fmt::Debug + fmt::Display + FromStr + Send + Sync + 'static,
    {
        let one = tenants.clone();
        TokenHealth {
            report: Arc::new(move || {
                let status = tenants.status();
                (status.is_usable(), to_json(&status))
            }),
            tenant: Some(Arc::new(move |wanted: &str| {
                let key = K::from_str(wanted).ok()?;
                let status = one.status_of(&key)?;
                Some((status.is_usable(), to_json(&status)))
            })),
        }
    }

    fn respond(&self, method: &Method, query: Option<&str>) -> Response<Full<Bytes>> {
        if method != Method::GET && method != Method::HEAD {
            let mut response = Response::new(Full::new(Bytes::new()));
            *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
        let wanted = query.and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(name, _)| name == "tenant")
                .map(|(_, value)| value.into_owned())
        });
        let (usable, report) = match (wanted, &self.tenant) {
            (None, _) => (self.report)(),
            (Some(key), Some(tenant)) => match tenant(&key) {
                Some(report) => report,
                None => return json_error(method, StatusCode::NOT_FOUND, "no such tenant"),
            },
            (Some(_), None) => {
                return json_error(
                    method,
                    StatusCode::BAD_REQUEST,
                    "this report is of one cache",
                );
            }
        };
        let body = if method == Method::HEAD {
            Bytes::new()
        } else {
            Bytes::from(report)
        };
        let mut response = Response::new(Full::new(body));
        if !usable {
            *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        }
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

fn json_error(method: &Method, status: StatusCode, error: &str) -> Response<Full<Bytes>> {
    let body = if method == Method::HEAD {
        Bytes::new()
    } else {
        Bytes::from(serde_json::json!({ "error": error }).to_string())
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn to_json(report: &impl serde::Serialize) -> Vec<u8> {
    // The status types serialise to maps of plain values: this cannot fail.
    serde_json::to_vec(report).unwrap_or_else(|_| b"null".to_vec())
}

impl<B> Service<Request<B>> for TokenHealth {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        ready(Ok(self.respond(request.method(), request.uri().query())))
    }
}

impl fmt::Debug for TokenHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenHealth").finish_non_exhaustive()
    }
}
