//! [`InProcessClient`]: an [`HttpClient`] that calls the fake server's router directly.

use std::fmt;

use axum::Router;
use bytes::Bytes;
use http_body_util::BodyExt;
use tokenward::error::BoxError;
use tokenward::transport::{HttpClient, ResponseBody, SendFuture};
use tokenward::{TransportError, TransportErrorKind};
use tower::ServiceExt;

use crate::fault::ResetConnection;

/// An [`HttpClient`] that hands each request to a [`FakeServer`](crate::FakeServer)'s router
/// with `tower::ServiceExt::oneshot`: no sockets, no DNS, no real time. Obtain one with
/// [`FakeServer::http_client`](crate::FakeServer::http_client).
///
/// Only the request's path and query select the endpoint; scheme and host are ignored. A
/// [`Fault::ConnectionReset`](crate::Fault::ConnectionReset) becomes a [`TransportError`] of
/// kind [`TransportErrorKind::Io`].
///
/// # Example
///
/// ```
/// use bytes::Bytes;
/// use http_body_util::BodyExt;
/// use tokenward::HttpClient;
/// use tokenward_testkit::FakeServer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let server = FakeServer::builder().build();
/// let token = server.issue_access_token("demo-client", "jobs.read");
/// let request = http::Request::get(server.url("/resource/jobs.read"))
///     .header("authorization", format!("Bearer {token}"))
///     .body(Bytes::new())
///     .unwrap();
/// let response = server.http_client().send(request).await.unwrap();
/// assert_eq!(response.status(), 200);
/// let body = response.into_body().collect().await.unwrap().to_bytes();
/// let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
/// assert_eq!(body["client_id"], "demo-client");
/// # }
/// ```
#[derive(Clone)]
pub struct InProcessClient {
    router: Router,
}

impl fmt::Debug for InProcessClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InProcessClient").finish_non_exhaustive()
    }
}

impl InProcessClient {
    pub(crate) fn new(router: Router) -> Self {
        InProcessClient { router }
    }
}

impl HttpClient for InProcessClient {
    fn send(&self, request: http::Request<Bytes>) -> SendFuture<'_> {
        let router = self.router.clone();
        Box::pin(async move {
            let request = request.map(axum::body::Body::from);
            let response = match router.oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            if response.extensions().get::<ResetConnection>().is_some() {
                return Err(TransportError::new(
                    TransportErrorKind::Io,
                    std::io::Error::new(
                        std::io::ErrorKind::ConnectionReset,
                        "connection reset by peer (testkit Fault::ConnectionReset)",
                    ),
                ));
            }
            Ok(
                response
                    .map(|body| -> ResponseBody { body.map_err(BoxError::from).boxed_unsync() }),
            )
        })
    }
}
