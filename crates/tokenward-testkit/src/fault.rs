//! Scripted failures of the token endpoint.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::Extensions;
use http_body::Frame;
use tokio::time::Sleep;

use crate::listen::ConnectionHandle;

/// An endpoint that faults can be queued for with
/// [`FakeServer::push_fault_at`](crate::FakeServer::push_fault_at).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Endpoint {
    /// `POST /token`.
    Token,
    /// `POST /introspect` (RFC 7662).
    Introspect,
    /// `POST /revoke` (RFC 7009).
    Revoke,
    /// `GET` of the metadata document (RFC 8414, OpenID Connect Discovery).
    Metadata,
}

/// A failure an endpoint acts out instead of (or before) answering normally.
///
/// Queue faults for the token endpoint with [`FakeServer::push_fault`](crate::FakeServer::push_fault) /
/// [`push_faults`](crate::FakeServer::push_faults), or make one permanent with
/// [`set_fault`](crate::FakeServer::set_fault); queue them for introspection and revocation
/// with [`push_fault_at`](crate::FakeServer::push_fault_at). The authorization endpoint and the
/// protected resource keep answering normally.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tokenward_testkit::{Fault, FakeServer};
///
/// let server = FakeServer::builder().client("demo-client", "demo-secret").build();
/// server.push_fault(Fault::RateLimited { retry_after: Some("2".into()) });
/// server.push_faults(Fault::Status(503), 3);
/// server.push_fault(Fault::Latency(Duration::from_millis(500)));
/// // The fourth request waits 500 ms and then succeeds; the fifth succeeds at once.
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// 429 with `{"error":"rate_limited",..}` and, when given, a `Retry-After` header with this
    /// value verbatim (delta-seconds such as `"2"`, an HTTP-date, or something malformed to
    /// test a parser). It must be a valid header value.
    RateLimited {
        /// The `Retry-After` header value, sent as is.
        retry_after: Option<String>,
    },
    /// This status with a small HTML body, as a proxy or load balancer sends it (500, 502,
    /// 503, 504, 408, ...). The code must be in `100..=999`.
    Status(u16),
    /// 503 with a small HTML body and, when given, a `Retry-After` header with this value
    /// verbatim (it must be a valid header value), as an overloaded server sends it.
    ServiceUnavailable {
        /// The `Retry-After` header value, sent as is.
        retry_after: Option<String>,
    },
    /// 400 `{"error":"temporarily_unavailable"}`.
    TemporarilyUnavailable,
    /// 400 `{"error":"invalid_grant"}`, whatever the request.
    InvalidGrant,
    /// 401 `{"error":"invalid_client"}`, whatever the request.
    InvalidClient,
    /// Waits this long (tokio time), then answers normally.
    Latency(Duration),
    /// Never answers. (A [`RunningServer`](crate::RunningServer) that shuts down drops the
    /// connection instead.)
    Hang,
    /// 200 with an HTML page instead of JSON.
    GarbageBody,
    /// 200 with a JSON token response padded to exactly this many bytes (when it is at least
    /// large enough to hold the token fields; smaller sizes give that many bytes of padding).
    /// Its access token is not a valid one.
    OversizedBody(usize),
    /// 200 with an error object: `{"error":"server_error","error_description":..}`.
    ErrorBody200,
    /// Over TCP, the connection is reset without any response. With the
    /// [`InProcessClient`](crate::InProcessClient), `send` fails with a
    /// [`TransportError`](tokenward::TransportError) of kind
    /// [`Io`](tokenward::TransportErrorKind::Io).
    ConnectionReset,
    /// This status with an error object that quotes what the request sent as `param`, as
    /// careless servers do: `{"error": error, "error_description": "Invalid <param>: <value>",
    /// "error_uri": "https://as.example/errors?value=<value, form-encoded>"}`. `param` names a
    /// form parameter (`refresh_token`, `code`, `code_verifier`, `token`, `client_assertion`,
    /// ...) or `client_secret`, which is also read from the Basic credentials. A parameter
    /// that was not sent is quoted as empty. To test that a client never shows the secrets a
    /// server echoes. The code must be in `100..=999`.
    EchoParam {
        /// The status, e.g. 400, 401, 500, or 200 for an error object carried by a 200.
        status: u16,
        /// The `error` code.
        error: String,
        /// The parameter whose value is quoted.
        param: String,
    },
    /// A normal (valid) token response whose body is sent `chunk` bytes at a time with
    /// `interval` between chunks.
    SlowDrip {
        /// Bytes per chunk (0 counts as 1).
        chunk: usize,
        /// The pause between two chunks (tokio time).
        interval: Duration,
    },
    /// The request is served as usual — a refresh token is rotated, a code is spent — and
    /// then its answer is altered or lost on the way back, as a buggy server or a gateway
    /// does it. Only a successful answer is altered.
    AfterServing(Alter),
}

/// How [`Fault::AfterServing`] alters a served answer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Alter {
    /// The `access_token` field is removed (the rest, a new refresh token included, is kept).
    NoAccessToken,
    /// The `token_type` is this instead.
    TokenType(String),
    /// The access token gets a space: it cannot be sent in an `Authorization` header.
    UnsendableAccessToken,
    /// The `scope` is a JSON array of its names instead of a string (as some servers send
    /// it).
    ScopeAsArray,
    /// The whole answer is replaced by this status with an HTML body: a gateway that lost
    /// the response (502, 504). The code must be in `100..=999`.
    Status(u16),
}

impl Fault {
    pub(crate) fn validate(&self) {
        match self {
            Fault::Status(code)
            | Fault::AfterServing(Alter::Status(code))
            | Fault::EchoParam { status: code, .. } => assert!(
                (100..=999).contains(code),
                "tokenward-testkit: Fault::Status({code}) is not an HTTP status code (100..=999)"
            ),
            Fault::RateLimited {
                retry_after: Some(value),
            }
            | Fault::ServiceUnavailable {
                retry_after: Some(value),
            } => assert!(
                http::HeaderValue::try_from(value.as_str()).is_ok(),
                "tokenward-testkit: the fault's retry_after {value:?} is not a valid header value"
            ),
            _ => {}
        }
    }
}

/// Marks a response that stands for a reset connection; the in-process client turns it into a
/// transport error.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ResetConnection;

/// What a handler can do to its connection: only over TCP ([`ConnectionHandle`] comes from
/// `ConnectInfo`); in-process every method degrades gracefully.
pub(crate) struct Control {
    connection: Option<ConnectionHandle>,
}

impl Control {
    pub(crate) fn from_extensions(extensions: &Extensions) -> Self {
        Control {
            connection: extensions
                .get::<axum::extract::ConnectInfo<ConnectionHandle>>()
                .map(|info| info.0.clone()),
        }
    }

    /// Resolves when the listener is shutting down; never in-process.
    pub(crate) async fn shutdown(&self) {
        match &self.connection {
            Some(connection) => connection.shutdown().await,
            None => std::future::pending().await,
        }
    }

    /// Sleeps, cut short by a listener shutdown.
    pub(crate) async fn sleep(&self, duration: Duration) {
        tokio::select! {
            () = tokio::time::sleep(duration) => {}
            () = self.shutdown() => {}
        }
    }

    /// Resets the connection (over TCP) and returns the response that marks it.
    pub(crate) fn reset(&self) -> axum::response::Response {
        if let Some(connection) = &self.connection {
            connection.kill();
        }
        let mut response = axum::response::Response::new(axum::body::Body::empty());
        *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
        response.extensions_mut().insert(ResetConnection);
        response
    }
}

/// A body sent in chunks with pauses between them.
pub(crate) struct DripBody {
    data: Bytes,
    chunk: usize,
    interval: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl DripBody {
    pub(crate) fn new(data: Bytes, chunk: usize, interval: Duration) -> Self {
        DripBody {
            data,
            chunk: chunk.max(1),
            interval,
            sleep: None,
        }
    }
}

impl http_body::Body for DripBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.data.is_empty() {
            return Poll::Ready(None);
        }
        if let Some(sleep) = self.sleep.as_mut() {
            ready!(sleep.as_mut().poll(cx));
        }
        let n = self.chunk.min(self.data.len());
        let chunk = self.data.split_to(n);
        if !self.data.is_empty() {
            let interval = self.interval;
            self.sleep = Some(Box::pin(tokio::time::sleep(interval)));
        }
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_empty()
    }
}
