//! The authorization code grant with PKCE (RFC 6749 §4.1, RFC 7636 `S256`): send the user to
//! the authorization URL, check the callback, exchange the code, keep the refresh token.
//!
//! 1. [`AuthorizationCode::authorize`] makes a fresh [`AuthorizationRequest`]: a random
//!    `state` (256 bits) and a PKCE code verifier (256 bits), and the URL to send the user's
//!    browser to.
//! 2. The authorization server redirects back to the `redirect_uri` with `code` and `state`
//!    (or an `error`). [`AuthorizationCode::exchange`] takes that query string: it checks the
//!    `state` (constant-time) before anything else, turns an `error` into a typed error, and
//!    exchanges the code with its verifier at the token endpoint.
//! 3. [`store_refresh_token`] persists the refresh token in a [`TokenStore`], from which a
//!    [`RefreshTokenGrant`](crate::RefreshTokenGrant) keeps access tokens fresh.
//!
//! Between steps 1 and 2 a web application keeps the request in its server-side session:
//! save [`state`](AuthorizationRequest::state) and
//! [`code_verifier`](AuthorizationRequest::code_verifier), and rebuild it with
//! [`AuthorizationRequest::resume`].
//!
//! # Example
//!
//! ```
//! use tokenward::authorization_code::{AuthorizationCode, store_refresh_token};
//! use tokenward::store::MemoryStore;
//! use tokenward::{ClientAuth, RefreshTokenGrant, TokenSource};
//! use tokenward_testkit::FakeServer;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tokenward::Error> {
//! # let server = FakeServer::builder()
//! #     .public_client("my-app")
//! #     .redirect_uri("my-app", "http://127.0.0.1:8080/callback")
//! #     .build();
//! # let (authorize_url, token_url) = (server.authorize_url(), server.token_url());
//! // A public client (a CLI or desktop app): no secret, PKCE protects the code.
//! let flow = AuthorizationCode::builder("my-app")
//!     .authorization_url(&authorize_url)
//!     .token_url(&token_url)
//!     .redirect_uri("http://127.0.0.1:8080/callback")
//!     .auth_method(ClientAuth::None)
//!     .scope("jobs.read offline_access")
//! #   .http_client(server.http_client())
//!     .build()?;
//!
//! let request = flow.authorize();
//! // Open request.url() in the user's browser; the redirect to the callback carries this query:
//! # let callback_query = server.approve(request.url()).unwrap();
//! let token = flow.exchange(request, &callback_query).await?;
//!
//! let store = MemoryStore::new();
//! store_refresh_token(&token, &store).await?;
//! let grant = RefreshTokenGrant::from_store(&token_url, "my-app", store)
//!     .auth_method(ClientAuth::None)
//! #   .http_client(server.http_client())
//!     .build()?;
//! let fresh = grant.fetch().await?;
//! # let _ = fresh;
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine as _;
use http::{HeaderMap, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::discovery::{AuthorizationServer, EndpointKind};
use crate::endpoint::parse_url;
use crate::error::{EndpointError, Error, OAuthError};
use crate::grant::{GrantBuilder, GrantConfig};
use crate::redact::{Sent, redact_url};
use crate::store::{CasOutcome, StoreError, StoredGrant, TokenStore};
use crate::token::Token;

/// Parameters the flow sets itself; [`AuthorizationCode::authorize_with`] ignores them.
const RESERVED: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
];

/// How often [`store_refresh_token`] reloads and retries when another writer got in between.
const STORE_ATTEMPTS: usize = 5;

/// Marker for a [`GrantBuilder`] that builds an [`AuthorizationCode`] flow.
#[derive(Clone)]
pub struct ForAuthorizationCode {
    authorize_url: String,
    redirect_uri: String,
    issuer: Option<String>,
    require_iss: bool,
    server: Option<AuthorizationServer>,
}

impl fmt::Debug for ForAuthorizationCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForAuthorizationCode")
            .field("authorize_url", &redact_url(&self.authorize_url))
            .field("redirect_uri", &redact_url(&self.redirect_uri))
            .field("issuer", &self.issuer)
            .field("require_iss", &self.require_iss)
            .finish_non_exhaustive()
    }
}

/// The authorization code flow with PKCE `S256` (RFC 6749 §4.1, RFC 7636).
///
/// It is not a [`TokenSource`](crate::TokenSource): a user has to take part once. Keep the
/// refresh token it yields with [`store_refresh_token`] and refresh with a
/// [`RefreshTokenGrant`](crate::RefreshTokenGrant). See the [module docs](self).
///
/// `scope` and [`param`](GrantBuilder::param)s are sent with the token request, as for every
/// grant; `scope` also goes into the authorization URL. Public clients (no secret) use
/// [`ClientAuth::None`](crate::ClientAuth::None).
///
/// Its `Debug` output shows its URLs without userinfo or query values.
pub struct AuthorizationCode {
    config: GrantConfig,
    authorize_url: String,
    redirect_uri: String,
    issuer: Option<String>,
    /// Whether a callback without `iss` is refused.
    require_iss: bool,
    /// The discovered server whose metadata names the authorization endpoint.
    server: Option<AuthorizationServer>,
}

impl fmt::Debug for AuthorizationCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizationCode")
            .field("config", &self.config)
            .field("authorize_url", &redact_url(&self.authorize_url))
            .field("redirect_uri", &redact_url(&self.redirect_uri))
            .field("issuer", &self.issuer)
            .field("require_iss", &self.require_iss)
            .finish_non_exhaustive()
    }
}

impl AuthorizationCode {
    /// Starts building the flow for `client_id`. Give it the
    /// [`authorization_url`](GrantBuilder::authorization_url), the
    /// [`token_url`](GrantBuilder::token_url) and the
    /// [`redirect_uri`](GrantBuilder::redirect_uri) registered for the client; or build it
    /// [from the issuer](Self::from_issuer), which knows the two URLs.
    pub fn builder(client_id: impl Into<String>) -> GrantBuilder<ForAuthorizationCode> {
        GrantBuilder::new(
            String::new(),
            client_id,
            ForAuthorizationCode {
                authorize_url: String::new(),
                redirect_uri: String::new(),
                issuer: None,
                require_iss: false,
                server: None,
            },
        )
    }

    /// Starts building the flow for a [discovered](crate::discovery) authorization server
    /// (its authorization and token endpoints, and its HTTP client) and a client. Give it
    /// the [`redirect_uri`](GrantBuilder::redirect_uri) registered for the client.
    ///
    /// The callback's `iss` (RFC 9207), when present, must be the server's issuer; when the
    /// metadata says the server sends it
    /// (`authorization_response_iss_parameter_supported`), a callback without it is refused
    /// too.
    ///
    /// `build` fails with [`Error::Discovery`] when the metadata has no
    /// `authorization_endpoint` or `token_endpoint`.
    pub fn from_issuer(
        server: &AuthorizationServer,
        client_id: impl Into<String>,
    ) -> GrantBuilder<ForAuthorizationCode> {
        let metadata = server.metadata();
        GrantBuilder::discovered(
            server,
            EndpointKind::Token,
            client_id,
            ForAuthorizationCode {
                authorize_url: metadata.authorization_endpoint.clone().unwrap_or_default(),
                redirect_uri: String::new(),
                issuer: Some(server.issuer().to_owned()),
                require_iss: metadata.authorization_response_iss_parameter_supported,
                server: Some(server.clone()),
            },
        )
    }

    /// A fresh authorization request: a random `state`, a random PKCE code verifier and the
    /// URL to send the user's browser to. Use each request once.
    pub fn authorize(&self) -> AuthorizationRequest {
        self.authorize_with(&[])
    }

    /// As [`authorize`](Self::authorize), with extra parameters in the authorization URL
    /// (`prompt=consent`, `login_hint=..`, `access_type=offline`, `resource=..`). Parameters
    /// the flow sets itself (`response_type`, `client_id`, `redirect_uri`, `scope`, `state`,
    /// `code_challenge`, `code_challenge_method`) are ignored.
    pub fn authorize_with(&self, extra: &[(&str, &str)]) -> AuthorizationRequest {
        let state = random_url_safe();
        let code_verifier = random_url_safe();
        let challenge = s256_challenge(&code_verifier);
        let mut query = form_urlencoded::Serializer::new(String::new());
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.config.endpoint.client_id)
            .append_pair("redirect_uri", &self.redirect_uri);
        if let Some(scope) = &self.config.scope {
            query.append_pair("scope", scope);
        }
        query
            .append_pair("state", &state)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        for (name, value) in extra {
            if !RESERVED.contains(name) {
                query.append_pair(name, value);
            }
        }
        // A discovered endpoint follows the metadata held now.
        let discovered = self
            .server
            .as_ref()
            .and_then(|server| server.metadata().authorization_endpoint.clone());
        let base = discovered.as_ref().unwrap_or(&self.authorize_url);
        let separator = match base.split_once('?') {
            None => "?",
            Some((_, "")) => "",
            Some(_) if base.ends_with('&') => "",
            Some(_) => "&",
        };
        AuthorizationRequest {
            url: format!("{base}{separator}{}", query.finish()),
            state: SecretString::from(state),
            code_verifier: SecretString::from(code_verifier),
        }
    }

    /// Completes `request` with the query string of the redirect to the `redirect_uri`
    /// (`code=..&state=..`, with or without the leading `?`).
    ///
    /// In this order:
    /// * the `state` must be `request`'s (compared in constant time), else
    ///   [`Error::StateMismatch`] (possible CSRF), and the token endpoint is not called. An
    ///   `error` callback without any `state` is reported as its error;
    /// * with an issuer configured (the builder's `issuer`), the callback's `iss`
    ///   must be it, else [`Error::IssuerMismatch`], and the token endpoint is not called.
    ///   A flow [from the issuer](Self::from_issuer) checks an `iss` that is there, and
    ///   refuses a callback without one only when the metadata says the server sends it;
    /// * an `error` (`access_denied`, `invalid_scope`, ...) becomes [`Error::Endpoint`] with
    ///   status 400 and the callback's [`OAuthError`];
    /// * the code is exchanged with the verifier. `invalid_grant` (a code used twice, expired,
    ///   or a verifier that does not match) is [`Error::ReauthorizationRequired`]: start over.
    pub async fn exchange(
        &self,
        request: AuthorizationRequest,
        callback_query: &str,
    ) -> Result<Token, Error> {
        let callback = Callback::parse(callback_query)?;
        match &callback.state {
            Some(state) => request.check_state(state)?,
            None if callback.error.is_some() => {}
            None => return Err(Error::StateMismatch),
        }
        self.check_issuer(callback.iss.as_deref())?;
        if let Some(error) = callback.error {
            // The request's `state` went through the authorization server too.
            let mut sent = Sent::default();
            sent.secret(request.state());
            let mut oauth = OAuthError::new(error);
            oauth.error_description = callback.error_description;
            oauth.error_uri = callback.error_uri;
            return Err(Error::Endpoint(Box::new(EndpointError {
                status: StatusCode::BAD_REQUEST,
                headers: HeaderMap::new(),
                oauth: Some(oauth.redact(&sent)),
            })));
        }
        let Some(code) = callback.code else {
            return Err(Error::Config(
                "the callback has neither a code nor an error: pass the query string of the \
                 redirect to the redirect_uri"
                    .into(),
            ));
        };
        self.redeem(&request, &code).await
    }

    /// Completes `request` with a `code`, `state` and issuer (`iss`, RFC 9207) taken from the
    /// callback by other means. They are checked first, as in [`exchange`](Self::exchange):
    /// with an issuer configured (the builder's `issuer`), an `iss` of `None`
    /// is refused (from the issuer: only when the metadata says the server sends it).
    pub async fn exchange_code(
        &self,
        request: AuthorizationRequest,
        code: &str,
        state: &str,
        iss: Option<&str>,
    ) -> Result<Token, Error> {
        request.check_state(state)?;
        self.check_issuer(iss)?;
        self.redeem(&request, code).await
    }

    /// With an issuer configured, the callback's `iss` must be it; without `iss`, the
    /// callback passes only if `iss` is not required.
    fn check_issuer(&self, iss: Option<&str>) -> Result<(), Error> {
        let Some(expected) = &self.issuer else {
            return Ok(());
        };
        match iss {
            Some(iss) if iss == expected => Ok(()),
            None if !self.require_iss => Ok(()),
            _ => Err(Error::IssuerMismatch {
                expected: expected.clone(),
                received: iss.map(str::to_owned),
            }),
        }
    }

    async fn redeem(&self, request: &AuthorizationRequest, code: &str) -> Result<Token, Error> {
        if code.is_empty() {
            return Err(Error::Config("the authorization code is empty".into()));
        }
        self.config
            .request(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", &self.redirect_uri),
                ("code_verifier", request.code_verifier.expose_secret()),
            ])
            .await
    }

    /// The redirect URI the flow sends.
    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }
}

impl GrantBuilder<ForAuthorizationCode> {
    /// The authorization endpoint, where the user's browser is sent.
    pub fn authorization_url(mut self, url: impl Into<String>) -> Self {
        self.grant.authorize_url = url.into();
        self
    }

    /// The token endpoint, where the code is exchanged.
    pub fn token_url(self, url: impl Into<String>) -> Self {
        self.with_url(url.into())
    }

    /// The redirect URI registered for the client, where the authorization server sends
    /// the user back with the code.
    pub fn redirect_uri(mut self, uri: impl Into<String>) -> Self {
        self.grant.redirect_uri = uri.into();
        self
    }

    /// The authorization server's issuer identifier. When set, the callback must carry an
    /// `iss` parameter equal to it (RFC 9207), which defeats mix-up attacks between several
    /// authorization servers. Set it for servers that send `iss`
    /// (`authorization_response_iss_parameter_supported` in their metadata).
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.grant.issuer = Some(issuer.into());
        self.grant.require_iss = true;
        self
    }

    /// Builds the flow. Fails on an authorization or token URL that is not an absolute
    /// http(s) URL, a redirect URI that is not absolute, an empty client id, or a missing
    /// secret (public clients: `.auth_method(ClientAuth::None)`).
    pub fn build(self) -> Result<AuthorizationCode, Error> {
        let unset = |what: &str| {
            Error::Config(format!("the authorization code flow needs its {what}").into())
        };
        if self.url_is_unset() {
            return Err(unset("token_url"));
        }
        if self.grant.server.is_none() && self.grant.authorize_url.is_empty() {
            return Err(unset("authorization_url"));
        }
        if self.grant.redirect_uri.is_empty() {
            return Err(unset("redirect_uri"));
        }
        let (config, flow) = self.into_parts()?;
        if let Some(server) = &flow.server {
            server.require(EndpointKind::Authorization)?;
        }
        parse_url(&flow.authorize_url)?;
        if flow.authorize_url.contains('#') {
            return Err(Error::Config(
                format!(
                    "the authorization URL {:?} has a fragment, which RFC 6749 §3.1 forbids",
                    redact_url(&flow.authorize_url)
                )
                .into(),
            ));
        }
        if !is_absolute_uri(&flow.redirect_uri) {
            return Err(Error::Config(
                format!(
                    "the redirect URI {:?} is not an absolute URI without a fragment \
                     (RFC 6749 §3.1.2)",
                    redact_url(&flow.redirect_uri)
                )
                .into(),
            ));
        }
        Ok(AuthorizationCode {
            config,
            authorize_url: flow.authorize_url,
            redirect_uri: flow.redirect_uri,
            issuer: flow.issuer,
            require_iss: flow.require_iss,
            server: flow.server,
        })
    }
}

/// One authorization attempt: the URL to send the user to, and the `state` and PKCE code
/// verifier that the callback and the code exchange are checked against.
///
/// Its `Debug` output shows neither the state nor the verifier. It is consumed by the
/// exchange: each request is used once.
pub struct AuthorizationRequest {
    url: String,
    state: SecretString,
    code_verifier: SecretString,
}

impl fmt::Debug for AuthorizationRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizationRequest")
            .field("state", &"[REDACTED]")
            .field("code_verifier", &"[REDACTED]")
            .finish_non_exhaustive()
    }
}

impl AuthorizationRequest {
    /// The authorization URL: the authorization endpoint with `response_type=code`,
    /// `client_id`, `redirect_uri`, `scope`, `state`, `code_challenge` and
    /// `code_challenge_method=S256` (form-urlencoded, appended to any query it already has).
    /// Empty for a [resumed](Self::resume) request.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The `state` sent in the URL, which the callback must carry back.
    pub fn state(&self) -> &str {
        self.state.expose_secret()
    }

    /// The PKCE code verifier (RFC 7636 §4.1), to keep in a server-side session between the
    /// redirect and the callback. Never send it anywhere but the token endpoint.
    pub fn code_verifier(&self) -> &SecretString {
        &self.code_verifier
    }

    /// The PKCE code challenge sent in the URL: `BASE64URL(SHA256(code_verifier))`, without
    /// padding (RFC 7636 §4.2, method `S256`).
    pub fn code_challenge(&self) -> String {
        s256_challenge(self.code_verifier.expose_secret())
    }

    /// Rebuilds a request from its saved `state` and code verifier, e.g. when the callback
    /// arrives in another HTTP request than the one that started the flow.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an empty state or a verifier that is not 43 to 128 characters of
    /// `A-Z a-z 0-9 - . _ ~`.
    pub fn resume(
        state: impl Into<String>,
        code_verifier: impl Into<String>,
    ) -> Result<AuthorizationRequest, Error> {
        let state = state.into();
        let code_verifier = code_verifier.into();
        if state.is_empty() {
            return Err(Error::Config("the saved state is empty".into()));
        }
        if !is_code_verifier(&code_verifier) {
            return Err(Error::Config(
                "the saved code verifier is not 43 to 128 characters of A-Z a-z 0-9 - . _ ~ \
                 (RFC 7636 §4.1)"
                    .into(),
            ));
        }
        Ok(AuthorizationRequest {
            url: String::new(),
            state: SecretString::from(state),
            code_verifier: SecretString::from(code_verifier),
        })
    }

    fn check_state(&self, returned: &str) -> Result<(), Error> {
        if constant_time_eq(returned.as_bytes(), self.state.expose_secret().as_bytes()) {
            Ok(())
        } else {
            Err(Error::StateMismatch)
        }
    }
}

/// Persists the refresh token of a freshly authorized `token` in `store`, replacing whatever
/// grant is stored there (a new authorization deliberately supersedes an older one), with the
/// granted scope and the time it was stored.
///
/// The write is a compare-and-swap on what was just loaded; when another writer gets in
/// between, it loads and tries again (a few times).
///
/// # Errors
///
/// [`Error::InvalidResponse`] when the token came without a refresh token (ask for offline
/// access: a scope such as `offline_access`, or `access_type=offline` with
/// [`authorize_with`](AuthorizationCode::authorize_with)); [`Error::Store`] when the store
/// fails or keeps changing under it.
pub async fn store_refresh_token(token: &Token, store: &dyn TokenStore) -> Result<(), Error> {
    let Some(refresh_token) = token.refresh_token() else {
        return Err(Error::invalid_response(
            StatusCode::OK,
            "the token response has no refresh_token: ask for offline access",
        ));
    };
    for _ in 0..STORE_ATTEMPTS {
        let stored = store.load().await?;
        // A new authorization is newer than anything stored: one generation on, and stored
        // now, so no process takes it for a store that went back in time.
        let generation = stored
            .as_ref()
            .map_or(0, |g| g.generation)
            .saturating_add(1);
        let expected = stored.map(|stored| stored.refresh_token);
        let grant = StoredGrant::new(refresh_token.expose_secret())
            .with_scope(token.scope().map(str::to_owned))
            .with_stored_at(Some(SystemTime::now()))
            .with_generation(generation);
        match store.compare_and_swap(expected.as_ref(), grant).await? {
            CasOutcome::Swapped => return Ok(()),
            CasOutcome::Conflict { .. } => {
                tracing::debug!("the stored grant changed while storing a new one; retrying");
            }
        }
    }
    Err(Error::Store(StoreError::Backend(Arc::new(
        std::io::Error::other(format!(
            "the stored grant changed during each of {STORE_ATTEMPTS} attempts to replace it; \
             another process keeps writing it"
        )),
    ))))
}

/// The parameters of an authorization callback (RFC 6749 §4.1.2 and §4.1.2.1).
struct Callback {
    code: Option<String>,
    state: Option<String>,
    iss: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
    error_uri: Option<String>,
}

impl Callback {
    fn parse(query: &str) -> Result<Callback, Error> {
        let query = query.split_once('#').map_or(query, |(query, _)| query);
        let query = query.strip_prefix('?').unwrap_or(query);
        let mut callback = Callback {
            code: None,
            state: None,
            iss: None,
            error: None,
            error_description: None,
            error_uri: None,
        };
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            let slot = match &*name {
                "code" => &mut callback.code,
                "state" => &mut callback.state,
                "iss" => &mut callback.iss,
                "error" => &mut callback.error,
                "error_description" => &mut callback.error_description,
                "error_uri" => &mut callback.error_uri,
                _ => continue,
            };
            if slot.is_some() {
                return Err(Error::Config(
                    format!("the callback carries {name} more than once").into(),
                ));
            }
            // A parameter without a value counts as absent (RFC 6749 §3.1).
            if !value.is_empty() {
                *slot = Some(value.into_owned());
            }
        }
        Ok(callback)
    }
}

/// 256 random bits, base64url without padding: 43 characters of the unreserved set.
fn random_url_safe() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// `BASE64URL-ENCODE(SHA256(ASCII(code_verifier)))` (RFC 7636 §4.2).
pub(crate) fn s256_challenge(code_verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(code_verifier))
}

/// 43 to 128 characters of `[A-Za-z0-9-._~]` (RFC 7636 §4.1).
fn is_code_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// An absolute URI (RFC 3986 §4.3: a scheme, no fragment) without spaces or controls.
/// Native apps' private-use schemes (`com.example.app:/callback`) qualify.
fn is_absolute_uri(uri: &str) -> bool {
    let Some((scheme, rest)) = uri.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !rest.is_empty()
        && !uri.contains('#')
        && !uri.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Compares two byte strings in time that depends on their lengths only.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s256_matches_rfc_7636_appendix_b() {
        assert_eq!(
            s256_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn random_values_are_valid_verifiers() {
        let value = random_url_safe();
        assert_eq!(value.len(), 43);
        assert!(is_code_verifier(&value));
        assert_ne!(value, random_url_safe());
    }

    #[test]
    fn absolute_uris() {
        for good in [
            "https://app.example.com/cb",
            "http://127.0.0.1:8080/callback?x=1",
            "com.example.app:/oauth2redirect",
        ] {
            assert!(is_absolute_uri(good), "{good}");
        }
        for bad in [
            "/callback",
            "app.example.com/cb",
            "https://a/cb#frag",
            "https://a/c b",
            "1http://a",
            "https:",
        ] {
            assert!(!is_absolute_uri(bad), "{bad}");
        }
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn callbacks_parse_and_refuse_repeats() {
        let c = Callback::parse("?code=a%2Bb&state=s+t&other=1#frag").unwrap();
        assert_eq!(c.code.as_deref(), Some("a+b"));
        assert_eq!(c.state.as_deref(), Some("s t"));
        assert!(c.error.is_none());
        assert!(Callback::parse("code=a&code=b&state=s").is_err());
        let c = Callback::parse("error=access_denied&error_description=no&state=").unwrap();
        assert_eq!(c.error.as_deref(), Some("access_denied"));
        assert!(c.state.is_none());
    }
}
