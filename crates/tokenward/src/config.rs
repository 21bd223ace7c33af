//! Configuration: from a service's config file (any serde format) or the environment to a
//! [`TokenCache`] or a [`TenantCache`] in a few lines.
//!
//! A [`ClientConfig`] describes one client: the grant, where the server is (an `issuer` to
//! [discover](crate::discovery), or a `token_url`), the client id and how it
//! authenticates, the scopes, and the cache's tuning. A [`TenantsConfig`] has one per
//! tenant, built on one shared HTTP client, with one discovery per issuer.
//!
//! **Secrets are never in the file.** The file names the environment variable
//! (`client_secret_env`) or the file (`client_secret_file`) that holds the client secret;
//! a key such as `client_secret` is refused, naming it. A secret file is read again when the
//! token endpoint answers `invalid_client`, so a rotated secret written to it is picked up
//! without a restart. Private keys and refresh tokens work the same way
//! (`private_key_file`, `refresh_token_env`, a grant file as `store`).
//!
//! # From a file
//!
//! ```
//! use tokenward::config::ClientConfig;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = std::env::temp_dir().join(format!("tokenward-config-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir)?;
//! # let secret_file = dir.join("secret");
//! # std::fs::write(&secret_file, "s3cr3t")?;
//! let text = r#"{
//!     "token_url": "https://auth.example.com/oauth/token",
//!     "client_id": "my-client",
//!     "client_secret_file": "/run/secrets/client-secret",
//!     "scope": "jobs.read",
//!     "cache": { "refresh_fraction": 0.75 }
//! }"#;
//! # let text = text.replace("/run/secrets/client-secret", &secret_file.display().to_string());
//! let config: ClientConfig = serde_json::from_str(&text)?; // or toml, yaml, ...
//! let cache = config.build().await?;
//! # let _ = cache;
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(()) }
//! ```
//!
//! # From the environment
//!
//! [`ClientConfig::from_env`] reads `<PREFIX>_ISSUER` or `<PREFIX>_TOKEN_URL`,
//! `<PREFIX>_CLIENT_ID`, `<PREFIX>_CLIENT_SECRET` (the secret itself, or
//! `<PREFIX>_CLIENT_SECRET_FILE`) and the other keys of [`ClientConfig`] in upper case:
//!
//! ```no_run
//! # async fn run() -> Result<(), tokenward::Error> {
//! // MYAPP_ISSUER=https://auth.example.com MYAPP_CLIENT_ID=my-client MYAPP_CLIENT_SECRET=...
//! let cache = tokenward::config::ClientConfig::from_env("MYAPP")?.build().await?;
//! # let _ = cache; Ok(()) }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::cache::{CacheConfig, TokenCache};
use crate::discovery::{AuthorizationServer, DiscoveryError};
use crate::endpoint::{ClientAuth, default_http_client};
use crate::error::Error;
use crate::grant::{ClientCredentials, FetchFuture, GrantBuilder, RefreshTokenGrant, TokenSource};
use crate::secret::ClientSecret;
use crate::store::FileStore;
use crate::tenant::TenantCache;
use crate::transport::HttpClient;

/// How long the previous client secret stays accepted after a secret file is read again.
const RELOAD_OVERLAP: Duration = Duration::from_secs(300);

/// The grant a client uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum GrantKind {
    /// `client_credentials` (the default).
    #[default]
    ClientCredentials,
    /// `refresh_token`: from `refresh_token_env` and/or a grant file (`store`).
    RefreshToken,
}

/// How a client authenticates, by its RFC 8414 name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuthMethod {
    /// `client_secret_basic` (the default with a secret); `basic` is accepted too.
    #[serde(alias = "basic")]
    ClientSecretBasic,
    /// `client_secret_post`; `post` is accepted too.
    #[serde(alias = "post")]
    ClientSecretPost,
    /// `none`: a public client.
    None,
    /// `private_key_jwt`: a `private_key_file` (feature `private-key-jwt`), or an
    /// `assertion_file`.
    PrivateKeyJwt,
}

/// The algorithm of `private_key_file`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[non_exhaustive]
pub enum SigningAlgorithmName {
    /// RS256.
    #[serde(rename = "RS256")]
    Rs256,
    /// ES256.
    #[serde(rename = "ES256")]
    Es256,
    /// EdDSA (Ed25519).
    #[serde(rename = "EdDSA")]
    EdDsa,
}

/// The cache's tuning; everything not given keeps [`CacheConfig`]'s default.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct CacheSettings {
    /// When a token turns stale, as a fraction of its lifetime (0 to 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_fraction: Option<f64>,
    /// How long one refresh may take, all attempts together, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_deadline_secs: Option<u64>,
    /// Attempts per refresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
}

impl CacheSettings {
    /// Checks the values (a fraction above 0 and at most 1, at least one attempt, a
    /// deadline of at least a second).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the key (`cache.max_attempts: ...`).
    pub fn validate(&self) -> Result<(), Error> {
        self.apply(CacheConfig::default(), "").map(drop)
    }

    fn apply(&self, mut config: CacheConfig, key: &str) -> Result<CacheConfig, Error> {
        if let Some(fraction) = self.refresh_fraction {
            if !(fraction > 0.0 && fraction <= 1.0) {
                return Err(config_error(
                    key,
                    "cache.refresh_fraction",
                    "must be above 0 and at most 1",
                ));
            }
            config.timing.refresh_fraction = fraction;
        }
        if let Some(secs) = self.refresh_deadline_secs {
            if secs == 0 {
                return Err(config_error(
                    key,
                    "cache.refresh_deadline_secs",
                    "must be at least 1",
                ));
            }
            config.refresh_deadline = Duration::from_secs(secs);
        }
        if let Some(attempts) = self.max_attempts {
            if attempts == 0 {
                return Err(config_error(
                    key,
                    "cache.max_attempts",
                    "must be at least 1",
                ));
            }
            config.max_attempts = attempts;
        }
        Ok(config)
    }
}

/// When an idle refresh token is reported and refused (a [`DecayPolicy`]), in days; every
/// age not given keeps the policy's default.
///
/// [`DecayPolicy`]: crate::decay::DecayPolicy
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct DecaySettings {
    /// Warn from this idle age on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warn_days: Option<u64>,
    /// Page from this idle age on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_days: Option<u64>,
    /// Refuse to use the refresh token from this idle age on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hard_fail_days: Option<u64>,
    /// The server's idle lifetime of a refresh token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime_days: Option<u64>,
    /// With keep-alive running, refresh an idle grant from this age on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_alive_days: Option<u64>,
}

impl DecaySettings {
    /// The policy these days describe.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the ages are out of order (`warn_days <= page_days <=
    /// hard_fail_days <= lifetime_days`, keep-alive before the warning).
    pub fn policy(&self) -> Result<crate::decay::DecayPolicy, Error> {
        let day = |n: u64| Duration::from_secs(n.saturating_mul(86_400));
        let mut policy = crate::decay::DecayPolicy::default();
        for (days, age) in [
            (self.warn_days, &mut policy.warn_after),
            (self.page_days, &mut policy.page_after),
            (self.hard_fail_days, &mut policy.hard_fail_after),
            (self.lifetime_days, &mut policy.lifetime),
        ] {
            if let Some(days) = days {
                *age = day(days);
            }
        }
        policy.keep_alive_after = self.keep_alive_days.map(day);
        policy.validate().map_err(|_| {
            Error::Config(
                "the days must satisfy keep_alive_days < warn_days <= page_days <= \
                 hard_fail_days <= lifetime_days"
                    .into(),
            )
        })?;
        Ok(policy)
    }
}

/// One client's configuration. See the [module docs](self).
///
/// Deserialize it with any serde format; unknown keys are refused. Its serialised form never
/// holds a secret given as a value (only where secrets are), and round-trips: URLs are
/// written as given (one with a user name or password in it is refused by `build`). Its
/// `Debug` output redacts the URLs' query values too.
#[derive(Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ClientConfig {
    /// The grant (default `client_credentials`).
    #[serde(default)]
    pub grant: GrantKind,
    /// The issuer to discover the endpoints from. Give this or `token_url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The token endpoint. Give this or `issuer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_url: Option<String>,
    /// The client id.
    pub client_id: String,
    /// The environment variable that holds the client secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_env: Option<String>,
    /// The file that holds the client secret, read again on `invalid_client`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_file: Option<PathBuf>,
    /// How the client authenticates (default: `client_secret_basic` with a secret,
    /// `private_key_jwt` with a private key or an assertion file; a public client must say
    /// `none`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_method: Option<AuthMethod>,
    /// The private key for `private_key_jwt`: a private JWK (its `kty`/`crv` give the
    /// algorithm, its `kid` the key id), or PEM (PKCS#8, or PKCS#1 for RS256) with
    /// `signing_algorithm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_file: Option<PathBuf>,
    /// The algorithm of `private_key_file`: required for PEM, checked against a JWK.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_algorithm: Option<SigningAlgorithmName>,
    /// The `kid` of `private_key_file` in the client's JWKS (default: a JWK's own `kid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// A file holding a client assertion that something else renews (workload identity),
    /// read for every request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assertion_file: Option<PathBuf>,
    /// The space-separated scopes to request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Scopes every token must carry (see
    /// [`require_scopes`](crate::grant::GrantBuilder::require_scopes)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_scopes: Option<String>,
    /// Extra form parameters (`resource`, `audience`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, String>,
    /// For `refresh_token`: the environment variable that holds the refresh token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token_env: Option<String>,
    /// For `refresh_token`: the grant file the refresh token lives in (a
    /// [`FileStore`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<PathBuf>,
    /// For `refresh_token` with a `store`: the grant file shares the access token too, so
    /// processes on the host share one (see
    /// [`FileStore::share_access_token`]). Default off.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub share_access_token: bool,
    /// For `refresh_token`: when an idle refresh token is reported and refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decay: Option<DecaySettings>,
    /// The cache's tuning.
    #[serde(default, skip_serializing_if = "is_default")]
    pub cache: CacheSettings,
    /// A secret given as a value (by [`from_env`](Self::from_env) or in code): never read
    /// from or written to a file.
    #[serde(skip)]
    secrets: Values,
    /// Secrets written into the file itself: accepted by the parser (whose errors would
    /// quote the line), never kept, and refused by `build`, naming the key.
    #[serde(default, rename = "client_secret", skip_serializing)]
    inline_client_secret: Option<serde::de::IgnoredAny>,
    #[serde(default, rename = "refresh_token", skip_serializing)]
    inline_refresh_token: Option<serde::de::IgnoredAny>,
    #[serde(default, rename = "private_key", skip_serializing)]
    inline_private_key: Option<serde::de::IgnoredAny>,
}

fn is_default(settings: &CacheSettings) -> bool {
    *settings == CacheSettings::default()
}

/// Secrets given as values.
#[derive(Clone, Default)]
struct Values {
    client_secret: Option<SecretString>,
    refresh_token: Option<SecretString>,
}

/// Values are compared by presence only: configurations are equal regardless of secrets.
impl PartialEq for Values {
    fn eq(&self, other: &Self) -> bool {
        self.client_secret.is_some() == other.client_secret.is_some()
            && self.refresh_token.is_some() == other.refresh_token.is_some()
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |url: &Option<String>| url.as_deref().map(crate::redact::redact_url);
        f.debug_struct("ClientConfig")
            .field("grant", &self.grant)
            .field("issuer", &redacted(&self.issuer))
            .field("token_url", &redacted(&self.token_url))
            .field("client_id", &self.client_id)
            .field(
                "client_secret_env",
                &self.client_secret_env.as_deref().map(VarName),
            )
            .field("client_secret_file", &self.client_secret_file)
            .field("client_secret_value", &self.secrets.client_secret.is_some())
            .field("auth_method", &self.auth_method)
            .field("private_key_file", &self.private_key_file)
            .field("signing_algorithm", &self.signing_algorithm)
            .field("key_id", &self.key_id)
            .field("assertion_file", &self.assertion_file)
            .field("scope", &self.scope)
            .field("require_scopes", &self.require_scopes)
            .field("params", &self.params.keys().collect::<Vec<_>>())
            .field(
                "refresh_token_env",
                &self.refresh_token_env.as_deref().map(VarName),
            )
            .field("refresh_token_value", &self.secrets.refresh_token.is_some())
            .field("store", &self.store)
            .field("share_access_token", &self.share_access_token)
            .field("decay", &self.decay)
            .field("cache", &self.cache)
            .finish()
    }
}

/// The name of an environment variable, shown only when it looks like one (upper case,
/// digits and `_`): a secret pasted where its variable's name belongs is never printed.
struct VarName<'a>(&'a str);

impl VarName<'_> {
    fn looks_like_a_name(&self) -> bool {
        let mut chars = self.0.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_uppercase() || c == '_')
            && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            && self.0.len() <= 64
    }
}

impl fmt::Display for VarName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.looks_like_a_name() {
            f.write_str(self.0)
        } else {
            f.write_str("(a name not in upper case, not shown)")
        }
    }
}

impl fmt::Debug for VarName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.looks_like_a_name() {
            fmt::Debug::fmt(self.0, f)
        } else {
            fmt::Display::fmt(self, f)
        }
    }
}

fn config_error(key: &str, field: &str, what: impl fmt::Display) -> Error {
    let at = if key.is_empty() {
        field.to_owned()
    } else {
        format!("{key}.{field}")
    };
    Error::Config(format!("{at}: {what}").into())
}

/// A grant's own configuration error, prefixed with the tenant's key (`tenants.acme: ...`).
fn in_key(key: &str, error: Error) -> Error {
    match error {
        Error::Config(why) if !key.is_empty() => Error::Config(format!("{key}: {why}").into()),
        other => other,
    }
}

/// The keys [`ClientConfig::from_vars`] reads after `<prefix>_`.
const VAR_KEYS: &[&str] = &[
    "ISSUER",
    "TOKEN_URL",
    "CLIENT_ID",
    "CLIENT_SECRET",
    "CLIENT_SECRET_FILE",
    "GRANT",
    "AUTH_METHOD",
    "PRIVATE_KEY_FILE",
    "SIGNING_ALGORITHM",
    "KEY_ID",
    "ASSERTION_FILE",
    "SCOPE",
    "REQUIRE_SCOPES",
    "REFRESH_TOKEN",
    "STORE",
    "SHARE_ACCESS_TOKEN",
    "REFRESH_FRACTION",
    "REFRESH_DEADLINE_SECS",
    "MAX_ATTEMPTS",
];

impl ClientConfig {
    /// A configuration for `client_id` at `token_url`, to fill in from code.
    pub fn new(token_url: impl Into<String>, client_id: impl Into<String>) -> Self {
        ClientConfig {
            token_url: Some(token_url.into()),
            client_id: client_id.into(),
            ..ClientConfig::default()
        }
    }

    /// The client secret as a value (from a vault, or code). It is never serialised.
    pub fn client_secret(mut self, secret: impl Into<String>) -> Self {
        self.secrets.client_secret = Some(SecretString::from(secret.into()));
        self
    }

    /// The configuration in the environment variables `<prefix>_<KEY>`: `ISSUER`,
    /// `TOKEN_URL`, `CLIENT_ID`, `CLIENT_SECRET` (the secret itself), `CLIENT_SECRET_FILE`,
    /// `GRANT`, `AUTH_METHOD`, `PRIVATE_KEY_FILE`, `SIGNING_ALGORITHM`, `KEY_ID`,
    /// `ASSERTION_FILE`, `SCOPE`, `REQUIRE_SCOPES`, `REFRESH_TOKEN` (the token itself),
    /// `STORE`, `SHARE_ACCESS_TOKEN`, `REFRESH_FRACTION`, `REFRESH_DEADLINE_SECS`, `MAX_ATTEMPTS`, and
    /// `PARAM_<NAME>` for each extra parameter (`MYAPP_PARAM_AUDIENCE` sends `audience`).
    /// Other variables, under the prefix or not, are the application's and never read.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the variable: `CLIENT_ID` missing, a value that does not
    /// parse, one of these variables not Unicode.
    pub fn from_env(prefix: &str) -> Result<ClientConfig, Error> {
        let lead = format!("{prefix}_");
        let mut vars = Vec::new();
        for (name, value) in std::env::vars_os() {
            let Some(name) = name.to_str() else { continue };
            let Some(key) = name.strip_prefix(&lead) else {
                continue;
            };
            if !VAR_KEYS.contains(&key) && !key.starts_with("PARAM_") {
                continue;
            }
            match value.into_string() {
                Ok(value) => vars.push((name.to_owned(), value)),
                Err(_) => {
                    return Err(Error::Config(format!("{name} is not valid Unicode").into()));
                }
            }
        }
        Self::from_vars(prefix, vars)
    }

    /// As [`from_env`](Self::from_env), from the given `(name, value)` pairs instead of the
    /// process's environment (names are matched exactly, `<prefix>_<KEY>`).
    pub fn from_vars(
        prefix: &str,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<ClientConfig, Error> {
        let lead = format!("{prefix}_");
        let mut config = ClientConfig::default();
        let mut client_id = None;
        for (name, value) in vars {
            let Some(key) = name.strip_prefix(&lead) else {
                continue;
            };
            let parse = |what: &str| Error::Config(format!("{name}: {what}").into());
            match key {
                "ISSUER" => config.issuer = Some(value),
                "TOKEN_URL" => config.token_url = Some(value),
                "CLIENT_ID" => client_id = Some(value),
                "CLIENT_SECRET" => config.secrets.client_secret = Some(value.into()),
                "CLIENT_SECRET_FILE" => config.client_secret_file = Some(value.into()),
                "GRANT" => {
                    config.grant = enum_value(&value)
                        .ok_or_else(|| parse("client_credentials or refresh_token"))?
                }
                "AUTH_METHOD" => {
                    config.auth_method = Some(enum_value(&value).ok_or_else(|| {
                        parse("client_secret_basic, client_secret_post, none or private_key_jwt")
                    })?)
                }
                "PRIVATE_KEY_FILE" => config.private_key_file = Some(value.into()),
                "SIGNING_ALGORITHM" => {
                    config.signing_algorithm =
                        Some(enum_value(&value).ok_or_else(|| parse("RS256, ES256 or EdDSA"))?)
                }
                "KEY_ID" => config.key_id = Some(value),
                "ASSERTION_FILE" => config.assertion_file = Some(value.into()),
                "SCOPE" => config.scope = Some(value),
                "REQUIRE_SCOPES" => config.require_scopes = Some(value),
                "REFRESH_TOKEN" => config.secrets.refresh_token = Some(value.into()),
                "STORE" => config.store = Some(value.into()),
                "SHARE_ACCESS_TOKEN" => {
                    config.share_access_token = value.parse().map_err(|_| parse("true or false"))?
                }
                "REFRESH_FRACTION" => {
                    config.cache.refresh_fraction =
                        Some(value.parse().map_err(|_| parse("a number"))?)
                }
                "REFRESH_DEADLINE_SECS" => {
                    config.cache.refresh_deadline_secs =
                        Some(value.parse().map_err(|_| parse("whole seconds"))?)
                }
                "MAX_ATTEMPTS" => {
                    config.cache.max_attempts =
                        Some(value.parse().map_err(|_| parse("a whole number"))?)
                }
                other => {
                    if let Some(param) = other.strip_prefix("PARAM_") {
                        config.params.insert(param.to_ascii_lowercase(), value);
                    }
                    // Anything else under the prefix belongs to the application.
                }
            }
        }
        config.client_id =
            client_id.ok_or_else(|| Error::Config(format!("{lead}CLIENT_ID is not set").into()))?;
        Ok(config)
    }

    /// Builds a cache over this client's grant, discovering the issuer if one is given.
    ///
    /// An issuer that cannot be reached now (its metadata unavailable: a connection
    /// refused, a 5xx) does not fail the build: it is logged, and discovered on the first
    /// token request, and again on each later one until it answers. The service starts,
    /// and gets its tokens once the server is back.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the key that is missing, contradicts another or cannot be
    /// read (a secret file, an environment variable); the grant's own `build` errors;
    /// [`Error::Discovery`] when the issuer answers with unusable metadata (another
    /// issuer's, none at all).
    pub async fn build(&self) -> Result<TokenCache, Error> {
        self.build_on(default_http_client()?).await
    }

    /// As [`build`](Self::build), on `http` (a client shared with the rest of the service,
    /// or a [`TowerHttpClient`](https://docs.rs/tokenward-tower)).
    pub async fn build_on(&self, http: Arc<dyn HttpClient>) -> Result<TokenCache, Error> {
        let config = self.cache.apply(CacheConfig::default(), "")?;
        let source = self.source(http, &mut Servers::default(), "").await?;
        Ok(TokenCache::builder(source).config(config).build())
    }

    /// The grant, on `http`, with servers discovered once per issuer.
    async fn source(
        &self,
        http: Arc<dyn HttpClient>,
        servers: &mut Servers,
        key: &str,
    ) -> Result<Box<dyn TokenSource>, Error> {
        let checked = self.check(key)?;
        let Some(issuer) = &self.issuer else {
            return self.grant(&checked, None, http, key);
        };
        match servers.get(issuer, &http).await {
            Ok(Discovered::Now(server)) => self.grant(&checked, Some(server), http, key),
            Ok(Discovered::Later(server)) => Ok(Box::new(Deferred {
                config: self.clone(),
                checked,
                http,
                key: key.to_owned(),
                server,
                source: tokio::sync::OnceCell::new(),
            })),
            Err(error) if key.is_empty() => Err(error),
            Err(error) => Err(config_error(key, "issuer", crate::error::chain(&error))),
        }
    }

    /// Checks what needs no I/O, as [`build`](Self::build) does first: no secret written
    /// into the configuration, a client id, the cache's tuning, one source of the client
    /// secret, `issuer` or `token_url` (not both) and a usable URL, no extra parameter the
    /// grant sends itself, the client authentication's keys consistent, the decay ages in
    /// order, a `store` where one is needed. Nothing is
    /// read: an environment variable or a file named is not looked at.
    ///
    /// # Errors
    ///
    /// [`Error::Config`], starting with the key at fault (`token_url: ...`).
    pub fn validate(&self) -> Result<(), Error> {
        self.validate_at("")
    }

    /// The client authentication this configuration describes: a secret's method
    /// (`client_secret_basic`, `client_secret_post`; the secret itself is read by
    /// [`build`](Self::build)), `none`, or `private_key_jwt` with its private key read and
    /// checked now, or its assertion file.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the key, as [`build`](Self::build).
    pub fn client_auth(&self) -> Result<ClientAuth, Error> {
        self.auth("").map(|(auth, _)| auth)
    }

    fn validate_at(&self, key: &str) -> Result<(), Error> {
        let inline = [
            (
                self.inline_client_secret.is_some(),
                "client_secret",
                "client_secret_env or client_secret_file",
            ),
            (
                self.inline_refresh_token.is_some(),
                "refresh_token",
                "refresh_token_env or a store",
            ),
            (
                self.inline_private_key.is_some(),
                "private_key",
                "private_key_file",
            ),
        ];
        if let Some((_, field, instead)) = inline.iter().find(|(given, _, _)| *given) {
            return Err(config_error(
                key,
                field,
                format!(
                    "a secret is never read from the configuration itself (not shown); use {instead}"
                ),
            ));
        }
        if self.client_id.trim().is_empty() {
            return Err(config_error(key, "client_id", "is empty"));
        }
        self.cache.apply(CacheConfig::default(), key)?;
        let sources = [
            self.secrets.client_secret.is_some(),
            self.client_secret_env.is_some(),
            self.client_secret_file.is_some(),
        ];
        if sources.iter().filter(|given| **given).count() > 1 {
            return Err(config_error(
                key,
                "client_secret_env",
                "give one of client_secret_env, client_secret_file (or a value), not several",
            ));
        }
        match (&self.issuer, &self.token_url) {
            (Some(_), Some(_)) => {
                return Err(config_error(
                    key,
                    "issuer",
                    "give issuer or token_url, not both",
                ));
            }
            (None, None) => {
                return Err(config_error(key, "token_url", "give token_url or issuer"));
            }
            (Some(url), None) => {
                crate::endpoint::parse_url(url).map_err(|e| config_at(key, "issuer", e))?;
            }
            (None, Some(url)) => {
                crate::endpoint::parse_url(url).map_err(|e| config_at(key, "token_url", e))?;
            }
        }
        if let Some(name) = self
            .params
            .keys()
            .find(|name| crate::grant::GRANT_PARAMS.contains(&name.as_str()))
        {
            return Err(config_error(
                key,
                &format!("params.{name}"),
                "the grant sends this parameter itself (a credential has its own key, read from the environment or a file)",
            ));
        }
        self.method(key)?;
        if let Some(decay) = &self.decay {
            decay.policy().map_err(|e| config_at(key, "decay", e))?;
        }
        if self.share_access_token && self.store.is_none() {
            return Err(config_error(
                key,
                "share_access_token",
                "shares the access token through the grant file: set store too",
            ));
        }
        let has_refresh_token =
            self.secrets.refresh_token.is_some() || self.refresh_token_env.is_some();
        if self.grant == GrantKind::RefreshToken && !has_refresh_token && self.store.is_none() {
            return Err(config_error(
                key,
                "store",
                "a refresh_token grant needs refresh_token_env or a store",
            ));
        }
        Ok(())
    }

    /// Everything that can be checked, and every secret read, before the server is known.
    fn check(&self, key: &str) -> Result<Checked, Error> {
        self.validate_at(key)?;
        let (auth, secret_file) = self.auth(key)?;
        let secret = self.secret(key)?;
        let refresh_token = self.refresh_token(key)?;
        Ok(Checked {
            auth,
            secret,
            secret_file,
            refresh_token,
        })
    }

    /// The grant, from what [`check`](Self::check) read, at `server` or the token URL.
    fn grant(
        &self,
        checked: &Checked,
        server: Option<AuthorizationServer>,
        http: Arc<dyn HttpClient>,
        key: &str,
    ) -> Result<Box<dyn TokenSource>, Error> {
        let client_id = self.client_id.clone();
        let url = self.token_url.clone().unwrap_or_default();
        let secret_file = checked.secret_file.clone();
        match self.grant {
            GrantKind::ClientCredentials => {
                let builder = match &server {
                    Some(server) => ClientCredentials::from_issuer(server, client_id),
                    None => ClientCredentials::builder(url, client_id),
                };
                let grant = self
                    .common(builder, checked, http)
                    .build()
                    .map_err(|e| in_key(key, e))?;
                let secret = grant.client_secret();
                Ok(reloading(grant, secret, secret_file))
            }
            GrantKind::RefreshToken => {
                let mut builder = match &server {
                    Some(server) => RefreshTokenGrant::from_issuer(server, client_id),
                    None => RefreshTokenGrant::for_url(url, client_id),
                };
                if let Some(token) = &checked.refresh_token {
                    builder = builder.refresh_token(token.expose_secret());
                }
                if let Some(path) = &self.store {
                    builder = builder
                        .store(FileStore::new(path).share_access_token(self.share_access_token));
                }
                if let Some(decay) = &self.decay {
                    builder = builder.decay_policy(decay.policy().map_err(|e| in_key(key, e))?);
                }
                let grant = self
                    .common(builder, checked, http)
                    .build()
                    .map_err(|e| in_key(key, e))?;
                let secret = grant.client_secret();
                Ok(reloading(grant, secret, secret_file))
            }
        }
    }

    /// The options every grant shares.
    fn common<G>(
        &self,
        mut builder: GrantBuilder<G>,
        checked: &Checked,
        http: Arc<dyn HttpClient>,
    ) -> GrantBuilder<G> {
        if let Some(secret) = &checked.secret {
            builder = builder.client_secret(secret.expose_secret());
        }
        builder = builder.auth_method(checked.auth.clone()).http_client(http);
        if let Some(scope) = &self.scope {
            builder = builder.scope(scope);
        }
        if let Some(required) = &self.require_scopes {
            builder = builder.require_scopes(required);
        }
        for (name, value) in &self.params {
            builder = builder.param(name, value);
        }
        builder
    }

    /// The client secret: the value, the environment variable or the file.
    /// (Only one of them: [`validate`](Self::validate) checked.)
    fn secret(&self, key: &str) -> Result<Option<SecretString>, Error> {
        if let Some(secret) = &self.secrets.client_secret {
            return Ok(Some(secret.clone()));
        }
        if let Some(var) = &self.client_secret_env {
            return env_secret(var)
                .map(Some)
                .map_err(|why| config_error(key, "client_secret_env", why));
        }
        if let Some(path) = &self.client_secret_file {
            return crate::secret::read_secret_file(path, "client secret")
                .map(Some)
                .map_err(|e| config_at(key, "client_secret_file", e));
        }
        Ok(None)
    }

    fn refresh_token(&self, key: &str) -> Result<Option<SecretString>, Error> {
        if let Some(token) = &self.secrets.refresh_token {
            return Ok(Some(token.clone()));
        }
        match &self.refresh_token_env {
            None => Ok(None),
            Some(var) => env_secret(var)
                .map(Some)
                .map_err(|why| config_error(key, "refresh_token_env", why)),
        }
    }

    /// The client authentication, and the secret file to read again on `invalid_client`.
    fn auth(&self, key: &str) -> Result<(ClientAuth, Option<PathBuf>), Error> {
        let auth = match self.method(key)? {
            AuthMethod::ClientSecretBasic => ClientAuth::Basic,
            AuthMethod::ClientSecretPost => ClientAuth::Post,
            AuthMethod::None => ClientAuth::None,
            AuthMethod::PrivateKeyJwt => self.assertion(key)?,
        };
        Ok((auth, self.client_secret_file.clone()))
    }

    /// The authentication method, checked against the keys given (nothing read).
    fn method(&self, key: &str) -> Result<AuthMethod, Error> {
        let has_secret = self.secrets.client_secret.is_some()
            || self.client_secret_env.is_some()
            || self.client_secret_file.is_some();
        let method = match self.auth_method {
            Some(method) => method,
            None if self.private_key_file.is_some() || self.assertion_file.is_some() => {
                AuthMethod::PrivateKeyJwt
            }
            None if has_secret => AuthMethod::ClientSecretBasic,
            // No credentials at all is more often a forgotten key than a public client.
            None => {
                return Err(config_error(
                    key,
                    "client_secret_env",
                    "no client credentials: give client_secret_env, client_secret_file or \
                     private_key_file, or auth_method = \"none\" for a public client",
                ));
            }
        };
        let needs_secret = |name: &str| {
            config_error(
                key,
                "auth_method",
                format!("{name} needs client_secret_env or client_secret_file"),
            )
        };
        match method {
            AuthMethod::ClientSecretBasic if !has_secret => {
                Err(needs_secret("client_secret_basic"))
            }
            AuthMethod::ClientSecretPost if !has_secret => Err(needs_secret("client_secret_post")),
            AuthMethod::None if has_secret => Err(config_error(
                key,
                "auth_method",
                "none (a public client) sends no secret: remove the client secret's key",
            )),
            AuthMethod::PrivateKeyJwt => match (&self.private_key_file, &self.assertion_file) {
                (Some(_), Some(_)) => Err(config_error(
                    key,
                    "assertion_file",
                    "give private_key_file or assertion_file, not both",
                )),
                (None, None) => Err(config_error(
                    key,
                    "private_key_file",
                    "private_key_jwt needs private_key_file (and signing_algorithm) or assertion_file",
                )),
                _ => Ok(method),
            },
            _ => Ok(method),
        }
    }

    /// The assertion of `private_key_jwt`, whose keys [`method`](Self::method) checked.
    fn assertion(&self, key: &str) -> Result<ClientAuth, Error> {
        match (&self.private_key_file, &self.assertion_file) {
            (Some(path), _) => self.private_key(key, path),
            (None, Some(path)) => Ok(ClientAuth::assertion(crate::assertion::from_file(path))),
            (None, None) => Err(config_error(key, "private_key_file", "is not set")),
        }
    }

    #[cfg(feature = "private-key-jwt")]
    fn private_key(&self, key: &str, path: &Path) -> Result<ClientAuth, Error> {
        use crate::assertion::{PrivateKeyJwt, SigningAlgorithm};
        let algorithm = self.signing_algorithm.map(|name| match name {
            SigningAlgorithmName::Rs256 => SigningAlgorithm::Rs256,
            SigningAlgorithmName::Es256 => SigningAlgorithm::Es256,
            SigningAlgorithmName::EdDsa => SigningAlgorithm::EdDsa,
        });
        let text = crate::secret::read_secret_file(path, "private key")
            .map_err(|e| config_at(key, "private_key_file", e))?;
        // (A byte order mark is trimmed by the reader.)
        let text = text.expose_secret();
        // A JWK names its own algorithm; a PEM file does not.
        let mut signer = if text.starts_with('{') {
            let signer =
                PrivateKeyJwt::from_jwk(text).map_err(|e| config_at(key, "private_key_file", e))?;
            if algorithm.is_some_and(|algorithm| algorithm != signer.algorithm()) {
                return Err(config_error(
                    key,
                    "signing_algorithm",
                    format!(
                        "the JWK in private_key_file signs {}",
                        signer.algorithm().name()
                    ),
                ));
            }
            signer
        } else {
            let Some(algorithm) = algorithm else {
                return Err(config_error(
                    key,
                    "signing_algorithm",
                    "a PEM private_key_file needs signing_algorithm: RS256, ES256 or EdDSA",
                ));
            };
            PrivateKeyJwt::from_pem(algorithm, text.as_bytes())
                .map_err(|e| config_at(key, "private_key_file", e))?
        };
        if let Some(key_id) = &self.key_id {
            signer = signer.key_id(key_id);
        }
        Ok(ClientAuth::private_key_jwt(signer))
    }

    #[cfg(not(feature = "private-key-jwt"))]
    fn private_key(&self, key: &str, _path: &Path) -> Result<ClientAuth, Error> {
        Err(config_error(
            key,
            "private_key_file",
            "signing with a private key needs tokenward's `private-key-jwt` feature",
        ))
    }
}

/// Matches a serde enum's name (`client_credentials`, `ES256`, ...).
fn enum_value<T: serde::de::DeserializeOwned>(value: &str) -> Option<T> {
    serde_json::from_value(serde_json::Value::String(value.to_owned())).ok()
}

/// A configuration error from reading `field`, prefixed with `key.field`.
fn config_at(key: &str, field: &str, error: Error) -> Error {
    match error {
        Error::Config(why) => config_error(key, field, why),
        other => other,
    }
}

/// The secret in the environment variable `var`; the error shows the name only if it looks
/// like one.
fn env_secret(var: &str) -> Result<SecretString, String> {
    match std::env::var(var) {
        Ok(secret) if !secret.is_empty() => Ok(secret.into()),
        _ => Err(format!(
            "the environment variable {} is not set (or empty)",
            VarName(var)
        )),
    }
}

/// What a client's configuration says before its server is known, secrets read.
#[derive(Debug)]
struct Checked {
    auth: ClientAuth,
    secret: Option<SecretString>,
    secret_file: Option<PathBuf>,
    refresh_token: Option<SecretString>,
}

/// The issuers discovered so far, each once.
#[derive(Default)]
struct Servers(HashMap<String, Discovered>);

/// An issuer's server: discovered, or to discover on the first token request of any of its
/// clients (one discovery for all of them).
#[derive(Clone)]
enum Discovered {
    Now(AuthorizationServer),
    Later(Arc<tokio::sync::OnceCell<AuthorizationServer>>),
}

impl Servers {
    async fn get(&mut self, issuer: &str, http: &Arc<dyn HttpClient>) -> Result<Discovered, Error> {
        if let Some(server) = self.0.get(issuer) {
            return Ok(server.clone());
        }
        let server = match discover(issuer, http).await {
            Ok(server) => Discovered::Now(server),
            Err(error)
                if matches!(&error, Error::Discovery(why)
                    if matches!(**why, DiscoveryError::Unavailable { .. })) =>
            {
                tracing::warn!(
                    issuer = %crate::redact::redact_url(issuer),
                    error = %crate::error::chain(&error),
                    "the issuer's metadata is unavailable; it is fetched again on the first token request"
                );
                Discovered::Later(Arc::default())
            }
            Err(error) => return Err(error),
        };
        self.0.insert(issuer.to_owned(), server.clone());
        Ok(server)
    }
}

async fn discover(issuer: &str, http: &Arc<dyn HttpClient>) -> Result<AuthorizationServer, Error> {
    AuthorizationServer::builder(issuer)
        .http_client(Arc::clone(http))
        .discover()
        .await
}

/// A client whose issuer could not be reached when the configuration was built: the
/// issuer is discovered, and the grant built, on the first token request (and again on
/// each one until that works). Its token requests are then the grant's.
struct Deferred {
    config: ClientConfig,
    checked: Checked,
    http: Arc<dyn HttpClient>,
    key: String,
    /// Shared by every client of the issuer.
    server: Arc<tokio::sync::OnceCell<AuthorizationServer>>,
    source: tokio::sync::OnceCell<Box<dyn TokenSource>>,
}

impl fmt::Debug for Deferred {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deferred")
            .field("config", &self.config)
            .field("source", &self.source.get())
            .finish_non_exhaustive()
    }
}

impl TokenSource for Deferred {
    fn fetch(&self) -> FetchFuture<'_> {
        Box::pin(async move {
            let source = self
                .source
                .get_or_try_init(|| async {
                    let issuer = self.config.issuer.as_deref().unwrap_or_default();
                    let server = self
                        .server
                        .get_or_try_init(|| discover(issuer, &self.http))
                        .await
                        .map_err(|error| match error {
                            // Still down: the cache tries again, as after any outage.
                            Error::Discovery(why)
                                if matches!(*why, DiscoveryError::Unavailable { .. }) =>
                            {
                                Error::Discovery(why)
                            }
                            error if self.key.is_empty() => error,
                            error => config_error(&self.key, "issuer", crate::error::chain(&error)),
                        })?;
                    self.config.grant(
                        &self.checked,
                        Some(server.clone()),
                        Arc::clone(&self.http),
                        &self.key,
                    )
                })
                .await?;
            source.fetch().await
        })
    }

    fn revision(&self) -> u64 {
        self.source.get().map_or(0, |source| source.revision())
    }

    fn may_repeat(&self, error: &Error) -> bool {
        // Before the grant exists only the discovery failed, which is safe to repeat.
        self.source
            .get()
            .is_none_or(|source| source.may_repeat(error))
    }

    fn kind(&self) -> &'static str {
        match self.config.grant {
            GrantKind::ClientCredentials => "client_credentials",
            GrantKind::RefreshToken => "refresh_token",
        }
    }

    fn decay_status(&self) -> Option<crate::decay::DecayStatus> {
        self.source.get().and_then(|source| source.decay_status())
    }
}

/// Wraps `grant` so that an `invalid_client` answer reads the secret file again and, if it
/// holds a new secret, tries once more (nothing was granted, so nothing is replayed).
fn reloading<G: TokenSource>(
    grant: G,
    secret: ClientSecret,
    file: Option<PathBuf>,
) -> Box<dyn TokenSource> {
    match file {
        None => Box::new(grant),
        Some(file) => Box::new(Reloading {
            grant,
            secret,
            file,
            stamp: std::sync::Mutex::new(None),
        }),
    }
}

#[derive(Debug)]
struct Reloading<G> {
    grant: G,
    secret: ClientSecret,
    file: PathBuf,
    /// The file's last stamp, and when it was taken.
    stamp: std::sync::Mutex<Option<(tokio::time::Instant, u64)>>,
}

/// How long a secret file's stamp is reused before the file is looked at again.
const STAMP_REUSE: Duration = Duration::from_secs(1);

impl<G> Reloading<G> {
    /// The file's stamp, looked at (a `stat`, never a read) at most once per
    /// [`STAMP_REUSE`]: this runs under the cache's lock, on every request of a hold.
    fn stamp(&self) -> u64 {
        let mut last = self
            .stamp
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = tokio::time::Instant::now();
        match *last {
            Some((at, stamp)) if now.saturating_duration_since(at) < STAMP_REUSE => stamp,
            _ => {
                let stamp = file_stamp(&self.file);
                *last = Some((now, stamp));
                stamp
            }
        }
    }
}

/// A number that changes when `file` is written or replaced, without reading it: its size
/// and modification time and, on unix, its inode and change time (which a copy that keeps
/// the modification time, `cp -p` or `rsync -t`, still changes).
fn file_stamp(file: &Path) -> u64 {
    use std::hash::{Hash as _, Hasher as _};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    if let Ok(meta) = std::fs::metadata(file) {
        meta.len().hash(&mut hasher);
        meta.modified().ok().hash(&mut hasher);
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt as _;
            (meta.dev(), meta.ino(), meta.ctime(), meta.ctime_nsec()).hash(&mut hasher);
        }
    }
    hasher.finish()
}

impl<G: TokenSource> TokenSource for Reloading<G> {
    fn fetch(&self) -> FetchFuture<'_> {
        Box::pin(async move {
            let detail = match self.grant.fetch().await {
                Err(Error::InvalidClient(detail)) => detail,
                other => return other,
            };
            let (secret, file) = (self.secret.clone(), self.file.clone());
            let reloaded =
                tokio::task::spawn_blocking(move || secret.reload_from_file(&file, RELOAD_OVERLAP))
                    .await
                    .unwrap_or(Ok(false));
            match reloaded {
                Ok(true) => {
                    tracing::info!(
                        file = %self.file.display(),
                        "invalid_client: the client secret file holds a new secret; trying it"
                    );
                    self.grant.fetch().await
                }
                Ok(false) => Err(Error::InvalidClient(detail)),
                Err(error) => {
                    tracing::warn!(error = %crate::error::chain(&error), "invalid_client, and the client secret file could not be read again");
                    Err(Error::InvalidClient(detail))
                }
            }
        })
    }

    /// The grant's, and the secret file's: an `invalid_client` held until the
    /// configuration changes ends when the file is written, not after the hold's cap.
    fn revision(&self) -> u64 {
        self.grant.revision() ^ self.stamp()
    }

    fn may_repeat(&self, error: &Error) -> bool {
        self.grant.may_repeat(error)
    }

    fn kind(&self) -> &'static str {
        self.grant.kind()
    }

    fn decay_status(&self) -> Option<crate::decay::DecayStatus> {
        self.grant.decay_status()
    }
}

/// Many tenants' configurations: one [`ClientConfig`] per tenant key, and the tuning they
/// share. Built on one HTTP client, with one discovery per issuer.
///
/// ```
/// use tokenward::config::TenantsConfig;
///
/// let config: TenantsConfig = serde_json::from_str(r#"{
///     "cache": { "refresh_fraction": 0.8 },
///     "tenants": {
///         "acme": { "token_url": "https://auth.acme.example/token", "client_id": "a",
///                   "client_secret_env": "ACME_SECRET" },
///         "globex": { "issuer": "https://login.globex.example", "client_id": "g",
///                     "client_secret_file": "/run/secrets/globex" }
///     }
/// }"#).unwrap();
/// assert_eq!(config.tenants.len(), 2);
/// // config.build().await? is a TenantCache<String>
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TenantsConfig {
    /// Tuning for every tenant's cache; a tenant's own `cache` settings override it.
    #[serde(default, skip_serializing_if = "is_default")]
    pub cache: CacheSettings,
    /// The tenants, by key.
    #[serde(default)]
    pub tenants: BTreeMap<String, ClientConfig>,
}

impl TenantsConfig {
    /// Builds a [`TenantCache`] with every tenant, on one HTTP client (the default one).
    ///
    /// A tenant whose issuer cannot be reached now is discovered on its first token
    /// request, as [`ClientConfig::build`] says: one server down does not keep the others
    /// from starting.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the tenant and the key: `tenants.acme.token_url: ...`,
    /// `tenants.acme.issuer: ...` (metadata that names another issuer, or none), and a
    /// grant's own `build` errors as `tenants.acme: ...`.
    pub async fn build(&self) -> Result<TenantCache<String>, Error> {
        self.build_on(default_http_client()?).await
    }

    /// As [`build`](Self::build), on `http`.
    pub async fn build_on(&self, http: Arc<dyn HttpClient>) -> Result<TenantCache<String>, Error> {
        let shared = self.cache.apply(CacheConfig::default(), "")?;
        let mut tenants = TenantCache::builder()
            .cache_config(shared.clone())
            .http_client(Arc::clone(&http));
        let mut servers = Servers::default();
        for (name, client) in &self.tenants {
            let key = format!("tenants.{name}");
            let source = client.source(Arc::clone(&http), &mut servers, &key).await?;
            tenants = if client.cache == CacheSettings::default() {
                tenants.tenant(name.clone(), source)
            } else {
                let own = client.cache.apply(shared.clone(), &key)?;
                tenants.tenant_with_config(name.clone(), source, own)
            };
        }
        Ok(tenants.build())
    }
}
