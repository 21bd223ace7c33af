//! Any tower `Service` as the client that reaches the authorization server:
//! [`TowerHttpClient`].

use std::fmt;
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tokenward::error::BoxError;
use tokenward::transport::{HttpClient, ResponseBody, SendFuture};
use tokenward::{TransportError, TransportErrorKind};
use tower::{Service, ServiceExt};

/// An [`HttpClient`] over any tower [`Service`] of `http` requests, so the token,
/// introspection, revocation and metadata requests go through your own stack: a hyper
/// client inside trace, metrics or timeout layers, a proxy, a test double.
///
/// The service is cloned for each request (wrap one that is not `Clone` in
/// `tower::buffer::Buffer`). It should not follow redirects. Its errors become
/// [`TransportError`]s: a refused connection ([`std::io::ErrorKind::ConnectionRefused`]
/// anywhere in the error's sources) is [`TransportErrorKind::Connect`], which tells the
/// cache the request was never sent; a timeout (`tower::timeout`'s, or an
/// [`std::io::ErrorKind::TimedOut`]) is [`TransportErrorKind::Timeout`]; anything else is
/// [`TransportErrorKind::Other`].
///
/// # Example
///
/// ```no_run
/// use std::time::Duration;
///
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use hyper_util::client::legacy::Client;
/// use hyper_util::rt::TokioExecutor;
/// use tokenward::ClientCredentials;
/// use tokenward_tower::TowerHttpClient;
///
/// # fn main() -> Result<(), tokenward::Error> {
/// let hyper = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
/// let stack = tower::ServiceBuilder::new()
///     .timeout(Duration::from_secs(10))
///     // .layer(your trace or metrics layer)
///     .service(hyper);
/// let grant = ClientCredentials::builder("http://127.0.0.1:8080/token", "my-client")
///     .client_secret("s3cr3t")
///     .http_client(TowerHttpClient::new(stack))
///     .build()?;
/// # let _ = grant;
/// # Ok(()) }
/// ```
pub struct TowerHttpClient<S> {
    /// Behind a lock only so that a service that is `Send` but not `Sync` (a
    /// `BoxCloneService`) can be shared: each request clones it out at once.
    service: Mutex<S>,
}

impl<S: Clone> Clone for TowerHttpClient<S> {
    fn clone(&self) -> Self {
        TowerHttpClient::new(self.service())
    }
}

impl<S: Clone> TowerHttpClient<S> {
    fn service(&self) -> S {
        self.service
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl<S> fmt::Debug for TowerHttpClient<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TowerHttpClient").finish_non_exhaustive()
    }
}

impl<S> TowerHttpClient<S> {
    /// Sends through `service`.
    pub fn new(service: S) -> Self {
        TowerHttpClient {
            service: Mutex::new(service),
        }
    }
}

/// What kind of transport failure `error` is, from its sources.
fn kind_of(error: &(dyn std::error::Error + 'static)) -> TransportErrorKind {
    let mut next = Some(error);
    while let Some(error) = next {
        if error.is::<tower::timeout::error::Elapsed>() {
            return TransportErrorKind::Timeout;
        }
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return TransportErrorKind::Connect,
                std::io::ErrorKind::TimedOut => return TransportErrorKind::Timeout,
                _ => {}
            }
        }
        next = error.source();
    }
    TransportErrorKind::Other
}

fn transport(error: impl Into<BoxError>) -> TransportError {
    let error = error.into();
    TransportError::from_box(kind_of(&*error), error)
}

impl<S, B> HttpClient for TowerHttpClient<S>
where
    S: Service<http::Request<Full<Bytes>>, Response = http::Response<B>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    fn send(&self, request: http::Request<Bytes>) -> SendFuture<'_> {
        let service = self.service();
        Box::pin(async move {
            let response = service
                .oneshot(request.map(Full::new))
                .await
                .map_err(transport)?;
            Ok(response.map(|body| -> ResponseBody { body.map_err(Into::into).boxed_unsync() }))
        })
    }
}
