//! [`TokenRequestRecord`]: what a token request carried.

use std::collections::BTreeMap;
use std::fmt;

/// How a token request authenticated its client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthMethod {
    /// `client_secret_basic`: an `Authorization: Basic` header (RFC 6749 §2.3.1).
    Basic,
    /// `client_secret_post`: `client_id` and `client_secret` in the form body.
    Post,
    /// No client secret at all (a public client sending only `client_id`, or no client).
    None,
}

/// What one request to `/token` carried, as seen by the server. Read it with
/// [`FakeServer::last_token_request`](crate::FakeServer::last_token_request).
///
/// Its `Debug` output redacts `refresh_token`, `code`, `code_verifier`, `password` and
/// assertion parameters; `client_secret` is never kept at all.
///
/// # Example
///
/// ```
/// # use tokenward_testkit::{AuthMethod, FakeServer};
/// # let server = FakeServer::builder().build();
/// if let Some(request) = server.last_token_request() {
///     assert_eq!(request.grant_type, "client_credentials");
///     assert_eq!(request.auth_method, AuthMethod::Basic);
///     assert_eq!(request.param("audience"), Some("https://api.example.com"));
/// }
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenRequestRecord {
    /// The `grant_type` parameter (empty if there was none).
    pub grant_type: String,
    /// The client id, from the `Authorization: Basic` header or the `client_id` parameter
    /// (empty if there was none).
    pub client_id: String,
    /// How the client authenticated.
    pub auth_method: AuthMethod,
    /// Every form parameter except `client_secret` (`grant_type`, `scope`, `resource`,
    /// `audience`, `refresh_token`, ...). A repeated parameter keeps its last value.
    pub params: BTreeMap<String, String>,
}

impl TokenRequestRecord {
    /// One form parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

const SECRET_PARAMS: &[&str] = &[
    "refresh_token",
    "code",
    "code_verifier",
    "password",
    "assertion",
    "client_assertion",
    "subject_token",
    "actor_token",
    "client_secret",
];

struct RedactedParams<'a>(&'a BTreeMap<String, String>);

impl fmt::Debug for RedactedParams<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (name, value) in self.0 {
            if SECRET_PARAMS.contains(&name.as_str()) {
                map.entry(name, &format_args!("[REDACTED]"));
            } else {
                map.entry(name, value);
            }
        }
        map.finish()
    }
}

impl fmt::Debug for TokenRequestRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenRequestRecord")
            .field("grant_type", &self.grant_type)
            .field("client_id", &self.client_id)
            .field("auth_method", &self.auth_method)
            .field("params", &RedactedParams(&self.params))
            .finish()
    }
}
