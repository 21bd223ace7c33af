//! Talking to an OAuth 2.0 endpoint: form POSTs with client authentication, size-limited
//! bodies, and the mapping of error responses to typed errors.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, StatusCode, Uri};
use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;

use crate::assertion::AssertionSource;
use crate::classify::{self, Failure};
use crate::discovery::{AuthorizationServer, EndpointKind};
use crate::error::{EndpointError, Error, OAuthError, TransportErrorKind};
use crate::redact::{Sent, UrlDebug, redact_url};
use crate::secret::ClientSecret;
use crate::token::{Lifetimes, Parsed, Token, parse_token_response};
use crate::transport::{HttpClient, read_body};

/// How the client authenticates to the token, introspection and revocation endpoints
/// (RFC 6749 §2.3.1, RFC 7523 §2.2).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum ClientAuth {
    /// `client_secret_basic`: HTTP Basic with the form-urlencoded id and secret (the default).
    #[default]
    Basic,
    /// `client_secret_post`: `client_id` and `client_secret` in the form body.
    Post,
    /// A public client: only `client_id` in the body, no secret.
    None,
    /// A fresh client assertion for every request (`private_key_jwt`, or one from
    /// elsewhere): `client_id`, `client_assertion_type` and `client_assertion` in the form
    /// body, no secret. Made with [`ClientAuth::private_key_jwt`] or
    /// [`ClientAuth::assertion`]; see [`assertion`](crate::assertion).
    Assertion(Arc<dyn AssertionSource>),
}

impl ClientAuth {
    /// `private_key_jwt`: a JWT signed with `key` for every request.
    #[cfg(feature = "private-key-jwt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "private-key-jwt")))]
    pub fn private_key_jwt(key: crate::assertion::PrivateKeyJwt) -> Self {
        ClientAuth::Assertion(Arc::new(key))
    }

    /// An assertion from `source` for every request: a file a workload identity system
    /// renews ([`assertion::from_file`](crate::assertion::from_file)), or your own code.
    pub fn assertion(source: impl AssertionSource) -> Self {
        ClientAuth::Assertion(Arc::new(source))
    }

    /// The RFC 8414 name of the method: `client_secret_basic`, `client_secret_post`,
    /// `none`, or `private_key_jwt` for any assertion (also one from a file or a function:
    /// on the wire they are the same).
    pub fn name(&self) -> &'static str {
        match self {
            ClientAuth::Basic => "client_secret_basic",
            ClientAuth::Post => "client_secret_post",
            ClientAuth::None => "none",
            ClientAuth::Assertion(_) => "private_key_jwt",
        }
    }
}

/// A failed token request, and the refresh token a refused 2xx body carried: the server
/// may have rotated, and the new refresh token must not be lost.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) error: Error,
    pub(crate) refresh_token: Option<SecretString>,
}

impl From<Error> for Refusal {
    fn from(error: Error) -> Self {
        Refusal {
            error,
            refresh_token: None,
        }
    }
}

/// Default limit on endpoint response bodies.
pub(crate) const DEFAULT_MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Where an endpoint is: a URL given, or the one the issuer's metadata names now.
#[derive(Clone)]
pub(crate) enum EndpointUrl {
    Fixed(Uri),
    Discovered(AuthorizationServer, EndpointKind),
}

impl fmt::Debug for EndpointUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndpointUrl::Fixed(url) => UrlDebug(&url.to_string()).fmt(f),
            EndpointUrl::Discovered(server, kind) => {
                write!(f, "{kind:?} endpoint of {:?}", redact_url(server.issuer()))
            }
        }
    }
}

impl EndpointUrl {
    async fn resolve(&self) -> Result<Uri, Error> {
        match self {
            EndpointUrl::Fixed(url) => Ok(url.clone()),
            EndpointUrl::Discovered(server, kind) => server.resolve(*kind).await,
        }
    }

    /// After a request to `from` that failed as if the endpoint had moved: the URL the
    /// metadata names now, fetched again if that is allowed, when it is another one.
    /// With `single_use`, only a request that was never sent (could not connect) is.
    async fn moved(
        &self,
        from: &Uri,
        outcome: Result<StatusCode, TransportErrorKind>,
        single_use: bool,
    ) -> Option<Uri> {
        let EndpointUrl::Discovered(server, kind) = self else {
            return None;
        };
        if !server.observe(*kind, from, outcome) || (single_use && outcome.is_ok()) {
            return None;
        }
        server.resolve(*kind).await.ok().filter(|url| url != from)
    }
}

/// One authorization-server endpoint and the client's credentials for it.
#[derive(Clone)]
pub(crate) struct Endpoint {
    pub(crate) url: EndpointUrl,
    /// The `aud` of client assertions.
    pub(crate) audience: String,
    pub(crate) client_id: String,
    pub(crate) secret: ClientSecret,
    pub(crate) auth: ClientAuth,
    pub(crate) http: Arc<dyn HttpClient>,
    pub(crate) max_response_bytes: usize,
    pub(crate) lifetimes: Lifetimes,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.url)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.secret)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

/// What authenticates one request.
#[derive(Clone, Copy)]
struct Credentials<'a> {
    secret: Option<&'a SecretString>,
    assertion: Option<&'a SecretString>,
}

/// A raw response: status, headers, body (already size-limited), and the client assertion
/// the request carried (to redact from the answer).
pub(crate) struct RawResponse {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    pub(crate) assertion: Option<SecretString>,
}

/// Parses an endpoint URL. Errors quote it redacted (no userinfo, no query values), and an
/// unparsable one not at all: it may be a credential pasted in the wrong place.
pub(crate) fn parse_url(url: &str) -> Result<Uri, Error> {
    let not_shown = || {
        Error::Config(
            format!(
                "an endpoint URL ({} characters, not shown: it may hold credentials) is not an \
                 absolute http(s) URL",
                url.chars().count()
            )
            .into(),
        )
    };
    let uri: Uri = url.parse().map_err(|_| not_shown())?;
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(Error::Config(
            "an endpoint URL holds a user name or password (not shown); give the client's \
             credentials as its secret, never in the URL"
                .into(),
        ));
    }
    match uri.scheme_str() {
        Some("http" | "https") if uri.host().is_some() => Ok(uri),
        Some(_) if uri.host().is_some() => Err(Error::Config(
            format!("{:?} is not an http(s) URL", redact_url(url)).into(),
        )),
        _ => Err(not_shown()),
    }
}

#[cfg(feature = "reqwest")]
pub(crate) fn default_http_client() -> Result<Arc<dyn HttpClient>, Error> {
    Ok(Arc::new(crate::transport::ReqwestClient::new()?))
}

#[cfg(not(feature = "reqwest"))]
pub(crate) fn default_http_client() -> Result<Arc<dyn HttpClient>, Error> {
    Err(Error::Config(
        "no HTTP client: enable the `reqwest` feature or pass one with `.http_client(..)`".into(),
    ))
}

fn form_encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

impl Endpoint {
    /// POSTs `params` as a form, authenticating the client with the current secret, and
    /// reads the response.
    pub(crate) async fn post_form(&self, params: &[(&str, &str)]) -> Result<RawResponse, Error> {
        let secret = self.secret.load().current.clone();
        self.post_form_with(params, secret.as_ref()).await
    }

    async fn post_form_with(
        &self,
        params: &[(&str, &str)],
        secret: Option<&SecretString>,
    ) -> Result<RawResponse, Error> {
        let url = self.url.resolve().await?;
        let mut assertion = self.assertion().await?;
        let credentials = Credentials {
            secret,
            assertion: assertion.as_ref(),
        };
        let request = self.build_request(url.clone(), params, credentials)?;
        let mut response = self.http.send(request).await;
        let outcome = response.as_ref().map(|r| r.status()).map_err(|e| e.kind());
        // A request that could not connect was never sent: it goes where the metadata names
        // the endpoint now. One answered 404 or 410 goes there too, unless it carries a
        // single-use credential (a refresh token, an authorization code) that a server may
        // have seen: that one fails, and the next request goes to the new URL.
        let single_use = params
            .iter()
            .any(|(name, _)| matches!(*name, "refresh_token" | "code"));
        if let Some(moved) = self.url.moved(&url, outcome, single_use).await {
            tracing::info!(
                url = %redact_url(&moved.to_string()),
                "the endpoint has moved (its metadata names another URL now); sending the request there"
            );
            // A fresh assertion: never the same `jti` twice.
            assertion = self.assertion().await?;
            let credentials = Credentials {
                secret,
                assertion: assertion.as_ref(),
            };
            let request = self.build_request(moved, params, credentials)?;
            response = self.http.send(request).await;
        }
        let response = response?;
        // On the cache's `tokenward.token_request` span, if that is the current one (never on
        // a span of the caller's that happens to declare the field).
        let span = tracing::Span::current();
        if span
            .metadata()
            .is_some_and(|m| m.name() == "tokenward.token_request")
        {
            span.record("http.response.status_code", response.status().as_u16());
        }
        let (parts, body) = response.into_parts();
        let body = read_body(body, self.max_response_bytes).await?;
        Ok(RawResponse {
            status: parts.status,
            headers: parts.headers,
            body,
            assertion,
        })
    }

    /// A client assertion for one request, when the client authenticates with them.
    async fn assertion(&self) -> Result<Option<SecretString>, Error> {
        match &self.auth {
            ClientAuth::Assertion(source) => source
                .assertion(&self.client_id, &self.audience)
                .await
                .map(Some),
            _ => Ok(None),
        }
    }

    fn build_request(
        &self,
        url: Uri,
        params: &[(&str, &str)],
        credentials: Credentials<'_>,
    ) -> Result<http::Request<Bytes>, Error> {
        let Credentials { secret, assertion } = credentials;
        let mut form = form_urlencoded::Serializer::new(String::new());
        for (k, v) in params {
            form.append_pair(k, v);
        }
        let mut basic = None;
        match (&self.auth, secret) {
            (ClientAuth::Basic, Some(secret)) => {
                let pair = format!(
                    "{}:{}",
                    form_encode(&self.client_id),
                    form_encode(secret.expose_secret())
                );
                let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
                let mut value =
                    HeaderValue::try_from(format!("Basic {encoded}")).map_err(|_| {
                        Error::Config("the client credentials cannot be encoded".into())
                    })?;
                value.set_sensitive(true);
                basic = Some(value);
            }
            (ClientAuth::Post, Some(secret)) => {
                form.append_pair("client_id", &self.client_id);
                form.append_pair("client_secret", secret.expose_secret());
            }
            (ClientAuth::Assertion(_), _) => {
                form.append_pair("client_id", &self.client_id);
                form.append_pair("client_assertion_type", crate::assertion::JWT_BEARER);
                if let Some(assertion) = assertion {
                    form.append_pair("client_assertion", assertion.expose_secret());
                }
            }
            // Public clients, or confidential auth configured without a secret.
            (_, None) | (ClientAuth::None, _) => {
                form.append_pair("client_id", &self.client_id);
            }
        }
        let mut builder = http::Request::post(url)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json");
        if let Some(value) = basic {
            builder = builder.header(AUTHORIZATION, value);
        }
        builder
            .body(Bytes::from(form.finish()))
            .map_err(|_| Error::Config("could not build the token request".into()))
    }

    /// Requests a token with the given grant parameters. During a secret rotation's overlap
    /// window, an `invalid_client` answer to the current secret is retried once with the
    /// previous one (`fallback`; nothing was granted, so nothing is replayed).
    pub(crate) async fn request_token(
        &self,
        params: &[(&str, &str)],
        requested_scope: Option<&str>,
        fallback: bool,
    ) -> Result<Token, Refusal> {
        let current = self.secret.load().current.clone();
        let result = self
            .request_token_with(params, requested_scope, current.as_ref())
            .await;
        if let (
            Err(Refusal {
                error: Error::InvalidClient(_),
                refresh_token: None,
            }),
            true,
        ) = (&result, fallback)
            && let Some(previous) = self.secret.previous_in_window()
        {
            tracing::warn!(
                "the token endpoint answered invalid_client to the new client secret; \
                 falling back to the previous one during the rotation overlap"
            );
            return self
                .request_token_with(params, requested_scope, Some(&previous))
                .await;
        }
        result
    }

    async fn request_token_with(
        &self,
        params: &[(&str, &str)],
        requested_scope: Option<&str>,
        secret: Option<&SecretString>,
    ) -> Result<Token, Refusal> {
        let sent_at = Instant::now();
        let mut response = self.post_form_with(params, secret).await?;
        let assertion = response.assertion.take();
        let mut refresh_token = None;
        if response.status.is_success() {
            match parse_token_response(
                response.status,
                &response.body,
                sent_at,
                &self.lifetimes,
                requested_scope,
            )? {
                Parsed::Token(token) => return Ok(token),
                Parsed::Error { refresh_token: r } => refresh_token = r,
                Parsed::Refused {
                    error,
                    refresh_token,
                } => {
                    return Err(Refusal {
                        error,
                        refresh_token: Some(refresh_token),
                    });
                }
            }
        }
        let known = self.secret.load();
        let mut sent = Sent::form(params);
        sent.client_secret(secret).client_secrets(&known);
        if let Some(assertion) = &assertion {
            sent.secret(assertion.expose_secret());
        }
        Err(Refusal {
            error: error_from_response(response, &sent),
            refresh_token,
        })
    }
}

/// Maps a token-endpoint error response (or a 2xx carrying an error object) to a typed
/// error, through the shared [`classify`](crate::classify()). The secrets the request `sent`
/// are redacted from the error body, and headers that quote one are marked sensitive.
pub(crate) fn error_from_response(response: RawResponse, sent: &Sent<'_>) -> Error {
    let oauth = serde_json::from_slice::<OAuthError>(&response.body)
        .ok()
        .map(|oauth| oauth.redact(sent));
    let as_status = classify::error_status(response.status);
    let failure =
        classify::classify(as_status, &response.headers, Some(&response.body)).map(|c| c.failure);
    let mut headers = response.headers;
    for value in headers.values_mut() {
        if sent.found_in(&String::from_utf8_lossy(value.as_bytes())) {
            value.set_sensitive(true);
        }
    }
    for name in [http::header::SET_COOKIE, http::header::WWW_AUTHENTICATE] {
        if let http::header::Entry::Occupied(mut e) = headers.entry(name) {
            for v in e.iter_mut() {
                v.set_sensitive(true);
            }
        }
    }
    let detail = Box::new(EndpointError {
        status: response.status,
        headers,
        oauth,
    });
    match failure {
        Some(Failure::RateLimited { retry_after }) => Error::RateLimited {
            retry_after: retry_after.unwrap_or(DEFAULT_RETRY_AFTER),
            response: Some(detail),
        },
        Some(Failure::InvalidGrant { .. }) => Error::ReauthorizationRequired(detail),
        // At a token endpoint a 401 means the client failed to authenticate (RFC 6749 §5.2).
        Some(
            Failure::InvalidClient { .. } | Failure::Unauthorized | Failure::InvalidToken { .. },
        ) => Error::InvalidClient(detail),
        _ => Error::Endpoint(detail),
    }
}

/// Wait assumed for a 429 without `Retry-After`.
pub(crate) const DEFAULT_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(1);
