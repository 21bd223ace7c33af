//! The seam between tokenward and the HTTP client that reaches the token endpoint.
//!
//! tokenward speaks to token, introspection and revocation endpoints through the small
//! [`HttpClient`] trait. With the default `reqwest` feature, [`ReqwestClient`] implements it;
//! a hyper-only application can implement it in a few lines instead. The core reads response
//! bodies itself, so size limits and timeouts apply whatever the client.
//!
//! # Example: your own client
//!
//! ```
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Full};
//! use tokenward::transport::{HttpClient, ResponseBody, SendFuture};
//!
//! /// Answers every request with a canned token response (a real one would do I/O).
//! #[derive(Debug)]
//! struct Canned;
//!
//! impl HttpClient for Canned {
//!     fn send(&self, _request: http::Request<Bytes>) -> SendFuture<'_> {
//!         Box::pin(async {
//!             let body = Full::new(Bytes::from_static(br#"{"access_token":"t","token_type":"Bearer"}"#));
//!             let body: ResponseBody = body.map_err(|never| match never {}).boxed_unsync();
//!             Ok(http::Response::new(body))
//!         })
//!     }
//! }
//! # let _ = Canned;
//! ```

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use http_body_util::BodyExt;

use crate::error::{BoxError, Error, TransportError, TransportErrorKind};

/// The body type an [`HttpClient`] hands back.
pub type ResponseBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// The future an [`HttpClient`] returns.
pub type SendFuture<'a> =
    Pin<Box<dyn Future<Output = Result<http::Response<ResponseBody>, TransportError>> + Send + 'a>>;

/// Sends one HTTP request to an authorization server.
///
/// Implementations should not follow redirects (a token endpoint never redirects) and should
/// report connection failures as [`TransportErrorKind::Connect`] and their own timeouts as
/// [`TransportErrorKind::Timeout`], so the cache can tell what is worth retrying.
pub trait HttpClient: std::fmt::Debug + Send + Sync + 'static {
    /// Sends `request` and returns the response with its body still to be read.
    fn send(&self, request: http::Request<Bytes>) -> SendFuture<'_>;
}

impl<T: HttpClient + ?Sized> HttpClient for std::sync::Arc<T> {
    fn send(&self, request: http::Request<Bytes>) -> SendFuture<'_> {
        (**self).send(request)
    }
}

/// Reads a whole response body, refusing more than `limit` bytes (without reading them).
pub(crate) async fn read_body(mut body: ResponseBody, limit: usize) -> Result<Bytes, Error> {
    use http_body::Body as _;
    if body.size_hint().lower() > limit as u64 {
        return Err(Error::ResponseTooLarge { limit });
    }
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| Error::Transport(TransportError::from_box(TransportErrorKind::Io, e)))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(Error::ResponseTooLarge { limit });
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

#[cfg(feature = "reqwest")]
pub use self::reqwest_client::ReqwestClient;

#[cfg(feature = "reqwest")]
mod reqwest_client {
    use std::time::Duration;

    use super::*;

    /// An [`HttpClient`] over [`reqwest::Client`]: https with rustls (feature `rustls`, the
    /// default) or the platform's TLS (`native-tls`); with neither, http only. With both,
    /// rustls.
    ///
    /// The default client has a 10-second connect timeout, a 30-second request timeout and
    /// no redirects.
    #[derive(Debug, Clone)]
    pub struct ReqwestClient {
        client: reqwest::Client,
    }

    impl ReqwestClient {
        /// A client with tokenward's defaults.
        pub fn new() -> Result<Self, Error> {
            let builder = reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .timeout(Duration::from_secs(30))
                .redirect(reqwest::redirect::Policy::none());
            // With both TLS features on (another crate turned on `native-tls`), the default
            // one.
            #[cfg(feature = "rustls")]
            let builder = builder.tls_backend_rustls();
            let client = builder.build().map_err(|e| {
                Error::Config(format!("could not build the HTTP client: {e}").into())
            })?;
            Ok(ReqwestClient { client })
        }

        /// Uses a client you configured (proxies, root certificates, mTLS, ...).
        pub fn from_client(client: reqwest::Client) -> Self {
            ReqwestClient { client }
        }
    }

    fn kind_of(e: &reqwest::Error) -> TransportErrorKind {
        if e.is_connect() {
            TransportErrorKind::Connect
        } else if e.is_timeout() {
            TransportErrorKind::Timeout
        } else if e.is_body() || e.is_request() {
            TransportErrorKind::Io
        } else {
            TransportErrorKind::Other
        }
    }

    impl HttpClient for ReqwestClient {
        fn send(&self, request: http::Request<Bytes>) -> SendFuture<'_> {
            Box::pin(async move {
                let request = reqwest::Request::try_from(request)
                    .map_err(|e| TransportError::new(TransportErrorKind::Other, e.without_url()))?;
                let response = self
                    .client
                    .execute(request)
                    .await
                    .map_err(|e| TransportError::new(kind_of(&e), e.without_url()))?;
                let response: http::Response<reqwest::Body> = response.into();
                Ok(response.map(|body| body.map_err(BoxError::from).boxed_unsync()))
            })
        }
    }
}
