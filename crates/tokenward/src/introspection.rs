//! Token introspection (RFC 7662) and revocation (RFC 7009) clients.
//!
//! Both authenticate to their endpoint as a client does at the token endpoint
//! (`client_secret_basic` by default, `client_secret_post`, or a public client's bare
//! `client_id`), are built with the same [`GrantBuilder`] options, and map error responses to
//! the same typed [`Error`]s. The token sent is never logged, printed or put in an error.
//!
//! # Example
//!
//! ```
//! use tokenward::introspection::{Introspection, Revocation, TokenTypeHint};
//! use tokenward_testkit::FakeServer;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tokenward::Error> {
//! # let server = FakeServer::builder().client("api", "api-secret").build();
//! # let (introspect_url, revoke_url) = (server.introspect_url(), server.revoke_url());
//! # let access_token = server.issue_access_token("api", "jobs.read");
//! let introspection = Introspection::builder(&introspect_url, "api")
//!     .client_secret("api-secret")
//! #   .http_client(server.http_client())
//!     .build()?;
//! let info = introspection.introspect(&access_token).await?;
//! assert!(info.active);
//! assert_eq!(info.scope.as_deref(), Some("jobs.read"));
//!
//! let revocation = Revocation::builder(&revoke_url, "api")
//!     .client_secret("api-secret")
//! #   .http_client(server.http_client())
//!     .build()?;
//! revocation.revoke(&access_token, Some(TokenTypeHint::AccessToken)).await?;
//! assert!(!introspection.introspect(&access_token).await?.active);
//! # Ok(()) }
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::StatusCode;
use serde_json::{Map, Value};

use crate::endpoint::{RawResponse, error_from_response};
use crate::error::Error;
use crate::grant::{GrantBuilder, GrantConfig};
use crate::redact::Sent;

/// Which kind of token is being introspected or revoked: a hint that helps the server look
/// it up (it searches the other kinds too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenTypeHint {
    /// `access_token`.
    AccessToken,
    /// `refresh_token`.
    RefreshToken,
}

impl TokenTypeHint {
    /// The `token_type_hint` value.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenTypeHint::AccessToken => "access_token",
            TokenTypeHint::RefreshToken => "refresh_token",
        }
    }
}

/// Marker for a [`GrantBuilder`] that builds an [`Introspection`] client.
#[derive(Debug, Clone, Copy)]
pub struct ForIntrospection;

/// Marker for a [`GrantBuilder`] that builds a [`Revocation`] client.
#[derive(Debug, Clone, Copy)]
pub struct ForRevocation;

/// An RFC 7662 token introspection client: asks the authorization server whether a token is
/// active, and what it grants.
///
/// The builder's `scope` and `lifetimes` do not apply; its [`param`](GrantBuilder::param)s
/// are sent with every request.
#[derive(Debug)]
pub struct Introspection {
    config: GrantConfig,
}

impl Introspection {
    /// Starts building a client for the introspection endpoint `introspect_url`. Introspection
    /// endpoints require client authentication: give a
    /// [`client_secret`](GrantBuilder::client_secret).
    pub fn builder(
        introspect_url: impl Into<String>,
        client_id: impl Into<String>,
    ) -> GrantBuilder<ForIntrospection> {
        GrantBuilder::new(introspect_url, client_id, ForIntrospection)
    }

    /// Starts building a client for the introspection endpoint of a
    /// [discovered](crate::discovery) authorization server, with its HTTP client.
    ///
    /// `build` fails with [`Error::Discovery`] when the metadata has no
    /// `introspection_endpoint`.
    pub fn from_issuer(
        server: &crate::AuthorizationServer,
        client_id: impl Into<String>,
    ) -> GrantBuilder<ForIntrospection> {
        GrantBuilder::discovered(
            server,
            crate::discovery::EndpointKind::Introspection,
            client_id,
            ForIntrospection,
        )
    }

    /// Introspects `token`.
    ///
    /// An unknown, expired or revoked token is not an error: the response says
    /// `active: false`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidClient`] when the endpoint rejects the client's credentials, other
    /// typed errors for other error responses (a 5xx is retryable), and
    /// [`Error::InvalidResponse`] for a 2xx whose body is not a JSON object with a boolean
    /// `active`.
    pub async fn introspect(&self, token: &str) -> Result<IntrospectionResponse, Error> {
        self.introspect_with_hint(token, None).await
    }

    /// Introspects `token`, telling the server what kind of token it is.
    pub async fn introspect_with_hint(
        &self,
        token: &str,
        hint: Option<TokenTypeHint>,
    ) -> Result<IntrospectionResponse, Error> {
        let response = post(&self.config, token, hint, "introspect").await?;
        if !response.status.is_success() {
            return Err(refusal(&self.config, token, response));
        }
        IntrospectionResponse::parse(response.status, &response.body)
    }
}

impl GrantBuilder<ForIntrospection> {
    /// Builds the client. Fails on an invalid URL, an empty client id, or a missing secret.
    pub fn build(self) -> Result<Introspection, Error> {
        let (config, ForIntrospection) = self.into_parts()?;
        Ok(Introspection { config })
    }
}

/// An RFC 7009 token revocation client.
///
/// The builder's `scope` and `lifetimes` do not apply; its [`param`](GrantBuilder::param)s
/// are sent with every request. Public clients use
/// [`ClientAuth::None`](crate::ClientAuth::None).
#[derive(Debug)]
pub struct Revocation {
    config: GrantConfig,
}

impl Revocation {
    /// Starts building a client for the revocation endpoint `revoke_url`.
    pub fn builder(
        revoke_url: impl Into<String>,
        client_id: impl Into<String>,
    ) -> GrantBuilder<ForRevocation> {
        GrantBuilder::new(revoke_url, client_id, ForRevocation)
    }

    /// Starts building a client for the revocation endpoint of a
    /// [discovered](crate::discovery) authorization server, with its HTTP client.
    ///
    /// `build` fails with [`Error::Discovery`] when the metadata has no
    /// `revocation_endpoint`.
    pub fn from_issuer(
        server: &crate::AuthorizationServer,
        client_id: impl Into<String>,
    ) -> GrantBuilder<ForRevocation> {
        GrantBuilder::discovered(
            server,
            crate::discovery::EndpointKind::Revocation,
            client_id,
            ForRevocation,
        )
    }

    /// Revokes `token`. Revoking a refresh token usually revokes the whole grant (its access
    /// tokens too); revoking an access token revokes just it.
    ///
    /// A 2xx is success, also for a token the server does not know or that was already
    /// invalid (RFC 7009 §2.2): revoking twice is fine.
    ///
    /// # Errors
    ///
    /// A 503 is a retryable [`Error::Endpoint`] (its `Retry-After` is kept in the
    /// [`headers`](crate::EndpointError::headers)); a 429 is [`Error::RateLimited`]; a
    /// rejected client is [`Error::InvalidClient`]; `unsupported_token_type` and other
    /// refusals are [`Error::Endpoint`].
    pub async fn revoke(&self, token: &str, hint: Option<TokenTypeHint>) -> Result<(), Error> {
        let response = post(&self.config, token, hint, "revoke").await?;
        if response.status.is_success() {
            Ok(())
        } else {
            Err(refusal(&self.config, token, response))
        }
    }
}

impl GrantBuilder<ForRevocation> {
    /// Builds the client. Fails on an invalid URL, an empty client id, or a missing secret
    /// (public clients: `.auth_method(ClientAuth::None)`).
    pub fn build(self) -> Result<Revocation, Error> {
        let (config, ForRevocation) = self.into_parts()?;
        Ok(Revocation { config })
    }
}

async fn post(
    config: &GrantConfig,
    token: &str,
    hint: Option<TokenTypeHint>,
    what: &str,
) -> Result<RawResponse, Error> {
    if token.is_empty() {
        return Err(Error::Config(
            format!("the token to {what} is empty").into(),
        ));
    }
    let mut params = vec![("token", token)];
    if let Some(hint) = hint {
        params.push(("token_type_hint", hint.as_str()));
    }
    params.extend(config.params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    config.endpoint.post_form(&params).await
}

/// The typed error for a refusal, with what was sent (the token, the extra parameters, the
/// client secret) redacted from the server's text.
fn refusal(config: &GrantConfig, token: &str, mut response: RawResponse) -> Error {
    let known = config.endpoint.secret.load();
    let assertion = response.assertion.take();
    let mut sent = Sent::default();
    sent.secret(token)
        .params(&config.params)
        .client_secrets(&known);
    if let Some(assertion) = &assertion {
        sent.secret(secrecy::ExposeSecret::expose_secret(assertion));
    }
    error_from_response(response, &sent)
}

/// What the introspection endpoint says about a token (RFC 7662 §2.2).
///
/// Only `active` is certain; the server decides which other fields it sends (for an inactive
/// token usually none). Fields of the wrong type are left in `extra`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct IntrospectionResponse {
    /// Whether the token is currently active: issued by this server, not expired, not revoked.
    pub active: bool,
    /// The token's scopes, space-separated.
    pub scope: Option<String>,
    /// The client the token was issued to.
    pub client_id: Option<String>,
    /// A human-readable identifier of the resource owner.
    pub username: Option<String>,
    /// The token's type, e.g. `Bearer`.
    pub token_type: Option<String>,
    /// When the token expires, in seconds since the Unix epoch.
    pub exp: Option<u64>,
    /// When the token was issued, in seconds since the Unix epoch.
    pub iat: Option<u64>,
    /// Not to be used before, in seconds since the Unix epoch.
    pub nbf: Option<u64>,
    /// The subject: usually a machine-readable id of the resource owner.
    pub sub: Option<String>,
    /// The intended audience: a string or an array of strings.
    pub aud: Option<Value>,
    /// The issuer.
    pub iss: Option<String>,
    /// The token's identifier.
    pub jti: Option<String>,
    /// Every other member of the response.
    pub extra: Map<String, Value>,
}

impl IntrospectionResponse {
    /// The scopes, one by one.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope
            .as_deref()
            .unwrap_or_default()
            .split(' ')
            .filter(|s| !s.is_empty())
    }

    /// When the token expires, from `exp`.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.exp
            .and_then(|exp| UNIX_EPOCH.checked_add(Duration::from_secs(exp)))
    }

    fn parse(status: StatusCode, body: &[u8]) -> Result<IntrospectionResponse, Error> {
        // The body is never quoted in the error: it may hold anything.
        let Ok(Value::Object(mut map)) = serde_json::from_slice::<Value>(body) else {
            return Err(Error::invalid_response(
                status,
                "the introspection response is not a JSON object",
            ));
        };
        let Some(Value::Bool(active)) = map.remove("active") else {
            return Err(Error::invalid_response(
                status,
                "the introspection response has no boolean `active` member",
            ));
        };
        Ok(IntrospectionResponse {
            active,
            scope: take_string(&mut map, "scope"),
            client_id: take_string(&mut map, "client_id"),
            username: take_string(&mut map, "username"),
            token_type: take_string(&mut map, "token_type"),
            exp: take_time(&mut map, "exp"),
            iat: take_time(&mut map, "iat"),
            nbf: take_time(&mut map, "nbf"),
            sub: take_string(&mut map, "sub"),
            aud: map.remove("aud").filter(|aud| !aud.is_null()),
            iss: take_string(&mut map, "iss"),
            jti: take_string(&mut map, "jti"),
            extra: map,
        })
    }
}

/// Takes a string member; anything else stays in the map.
fn take_string(map: &mut Map<String, Value>, key: &str) -> Option<String> {
    match map.remove(key)? {
        Value::String(s) => Some(s),
        Value::Null => None,
        other => {
            map.insert(key.to_owned(), other);
            None
        }
    }
}

/// Takes a NumericDate member: a non-negative number (fractions dropped) or, leniently, a
/// string of digits; anything else stays in the map.
fn take_time(map: &mut Map<String, Value>, key: &str) -> Option<u64> {
    let value = map.remove(key)?;
    let seconds = match &value {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0 && *f < u64::MAX as f64)
                .map(|f| f as u64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    if seconds.is_none() && !value.is_null() {
        map.insert(key.to_owned(), value);
    }
    seconds
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<IntrospectionResponse, Error> {
        IntrospectionResponse::parse(StatusCode::OK, body.as_bytes())
    }

    #[test]
    fn full_response() {
        let r = parse(
            r#"{"active":true,"scope":"a b","client_id":"c","username":"u","token_type":"Bearer",
                "exp":1700000000,"iat":1699990000.5,"nbf":"1699990000","sub":"s","aud":["x","y"],
                "iss":"https://as","jti":"j","custom":1}"#,
        )
        .unwrap();
        assert!(r.active);
        assert_eq!(r.scopes().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(r.exp, Some(1_700_000_000));
        assert_eq!(r.iat, Some(1_699_990_000));
        assert_eq!(r.nbf, Some(1_699_990_000));
        assert_eq!(r.aud, Some(serde_json::json!(["x", "y"])));
        assert_eq!(r.extra.get("custom"), Some(&Value::from(1)));
        assert_eq!(
            r.expires_at(),
            Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        );
    }

    #[test]
    fn inactive_and_wrongly_typed_members() {
        let r = parse(r#"{"active":false,"exp":"soon","scope":7}"#).unwrap();
        assert!(!r.active);
        assert_eq!(r.exp, None);
        assert_eq!(r.scope, None);
        assert_eq!(r.scopes().count(), 0);
        assert_eq!(r.extra.len(), 2);
    }

    #[test]
    fn not_an_introspection_response() {
        for body in [
            "",
            "<html>secret-looking-body</html>",
            "[]",
            r#"{"active":"true"}"#,
            r#"{"error":"server_error"}"#,
        ] {
            let err = parse(body).unwrap_err();
            assert!(
                matches!(err, Error::InvalidResponse { .. }),
                "{body}: {err}"
            );
            assert!(!err.to_string().contains("secret-looking-body"));
        }
    }
}
