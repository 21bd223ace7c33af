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
use crate::discovery::AuthorizationServer;
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
    /// `client_secret_basic` (the default with a secret).
    ClientSecretBasic,
    /// `client_secret_post`.
    ClientSecretPost,
    /// `none`: a public client.
    None,
    /// `private_key_jwt`: `private_key_file` and `signing_algorithm` (feature
    /// `private-key-jwt`), or an `assertion_file`.
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

/// One client's configuration. See the [module docs](self).
///
/// Deserialize it with any serde format; unknown keys are refused. Its `Debug` output and
/// its serialised form never hold a secret (only where secrets are).
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
    /// `private_key_jwt` with a private key or an assertion file, else `none`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_method: Option<AuthMethod>,
    /// A PEM private key (PKCS#8, or PKCS#1 for RS256) for `private_key_jwt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_file: Option<PathBuf>,
    /// The algorithm of `private_key_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_algorithm: Option<SigningAlgorithmName>,
    /// The `kid` of `private_key_file` in the client's JWKS.
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
        f.debug_struct("ClientConfig")
            .field("grant", &self.grant)
            .field("issuer", &self.issuer)
            .field(
                "token_url",
                &self.token_url.as_deref().map(crate::redact::redact_url),
            )
            .field("client_id", &self.client_id)
            .field("client_secret_env", &self.client_secret_env)
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
            .field("refresh_token_env", &self.refresh_token_env)
            .field("refresh_token_value", &self.secrets.refresh_token.is_some())
            .field("store", &self.store)
            .field("cache", &self.cache)
            .finish()
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
    /// `STORE`, `REFRESH_FRACTION`, `REFRESH_DEADLINE_SECS`, `MAX_ATTEMPTS`, and
    /// `PARAM_<NAME>` for each extra parameter (`MYAPP_PARAM_AUDIENCE` sends `audience`).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the variable: `CLIENT_ID` missing, a value that does not
    /// parse, a variable that is not Unicode.
    pub fn from_env(prefix: &str) -> Result<ClientConfig, Error> {
        let vars: Vec<(String, String)> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v)))
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| match v.into_string() {
                Ok(v) => Ok((k, v)),
                Err(_) => Err(Error::Config(format!("{k} is not valid Unicode").into())),
            })
            .collect::<Result<_, _>>()?;
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
    /// # Errors
    ///
    /// [`Error::Config`] naming the key that is missing, contradicts another or cannot be
    /// read (a secret file, an environment variable); the grant's own `build` errors;
    /// [`Error::Discovery`] when the issuer cannot be discovered.
    pub async fn build(&self) -> Result<TokenCache, Error> {
        let source = self
            .source(default_http_client()?, &mut Servers::default(), "")
            .await?;
        let config = self.cache.apply(CacheConfig::default(), "")?;
        Ok(TokenCache::builder(source).config(config).build())
    }

    /// The grant, on `http`, with servers discovered once per issuer.
    async fn source(
        &self,
        http: Arc<dyn HttpClient>,
        servers: &mut Servers,
        key: &str,
    ) -> Result<Box<dyn TokenSource>, Error> {
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
        if self.client_id.is_empty() {
            return Err(config_error(key, "client_id", "is empty"));
        }
        let server = match (&self.issuer, &self.token_url) {
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
            (Some(issuer), None) => Some(servers.get(issuer, &http).await?),
            (None, Some(_)) => None,
        };
        let (auth, secret_file) = self.auth(key)?;
        let client_id = self.client_id.clone();
        let url = self.token_url.clone().unwrap_or_default();
        match self.grant {
            GrantKind::ClientCredentials => {
                let builder = match &server {
                    Some(server) => ClientCredentials::from_issuer(server, client_id),
                    None => ClientCredentials::builder(url, client_id),
                };
                let builder = self.common(builder, auth, http, key)?;
                let grant = builder.build()?;
                let secret = grant.client_secret();
                Ok(reloading(grant, secret, secret_file))
            }
            GrantKind::RefreshToken => {
                let mut builder = match &server {
                    Some(server) => RefreshTokenGrant::from_issuer(server, client_id),
                    None => RefreshTokenGrant::for_url(url, client_id),
                };
                if let Some(token) = self.refresh_token(key)? {
                    builder = builder.refresh_token(token.expose_secret());
                }
                if let Some(path) = &self.store {
                    builder = builder.store(FileStore::new(path));
                }
                let builder = self.common(builder, auth, http, key)?;
                let grant = builder.build().map_err(|e| match e {
                    Error::Config(why) if why.contains("needs a refresh token") => config_error(
                        key,
                        "store",
                        "a refresh_token grant needs refresh_token_env or a store",
                    ),
                    other => other,
                })?;
                let secret = grant.client_secret();
                Ok(reloading(grant, secret, secret_file))
            }
        }
    }

    /// The options every grant shares.
    fn common<G>(
        &self,
        mut builder: GrantBuilder<G>,
        auth: ClientAuth,
        http: Arc<dyn HttpClient>,
        key: &str,
    ) -> Result<GrantBuilder<G>, Error> {
        if let Some(secret) = self.secret(key)? {
            builder = builder.client_secret(secret.expose_secret());
        }
        builder = builder.auth_method(auth).http_client(http);
        if let Some(scope) = &self.scope {
            builder = builder.scope(scope);
        }
        if let Some(required) = &self.require_scopes {
            builder = builder.require_scopes(required);
        }
        for (name, value) in &self.params {
            builder = builder.param(name, value);
        }
        Ok(builder)
    }

    /// The client secret: the value, the environment variable or the file.
    fn secret(&self, key: &str) -> Result<Option<SecretString>, Error> {
        let given = [
            self.secrets.client_secret.is_some(),
            self.client_secret_env.is_some(),
            self.client_secret_file.is_some(),
        ];
        if given.iter().filter(|g| **g).count() > 1 {
            return Err(config_error(
                key,
                "client_secret_env",
                "give one of client_secret_env, client_secret_file (or a value), not several",
            ));
        }
        if let Some(secret) = &self.secrets.client_secret {
            return Ok(Some(secret.clone()));
        }
        if let Some(var) = &self.client_secret_env {
            return match std::env::var(var) {
                Ok(secret) if !secret.is_empty() => Ok(Some(secret.into())),
                _ => Err(config_error(
                    key,
                    "client_secret_env",
                    format!("the environment variable {var} is not set (or empty)"),
                )),
            };
        }
        if let Some(path) = &self.client_secret_file {
            return read_secret(path)
                .map(Some)
                .map_err(|why| config_error(key, "client_secret_file", why));
        }
        Ok(None)
    }

    fn refresh_token(&self, key: &str) -> Result<Option<SecretString>, Error> {
        if let Some(token) = &self.secrets.refresh_token {
            return Ok(Some(token.clone()));
        }
        match &self.refresh_token_env {
            None => Ok(None),
            Some(var) => match std::env::var(var) {
                Ok(token) if !token.is_empty() => Ok(Some(token.into())),
                _ => Err(config_error(
                    key,
                    "refresh_token_env",
                    format!("the environment variable {var} is not set (or empty)"),
                )),
            },
        }
    }

    /// The client authentication, and the secret file to read again on `invalid_client`.
    fn auth(&self, key: &str) -> Result<(ClientAuth, Option<PathBuf>), Error> {
        let has_secret = self.secrets.client_secret.is_some()
            || self.client_secret_env.is_some()
            || self.client_secret_file.is_some();
        let method = match self.auth_method {
            Some(method) => method,
            None if self.private_key_file.is_some() || self.assertion_file.is_some() => {
                AuthMethod::PrivateKeyJwt
            }
            None if has_secret => AuthMethod::ClientSecretBasic,
            None => AuthMethod::None,
        };
        let needs_secret = |name: &str| {
            config_error(
                key,
                "auth_method",
                format!("{name} needs client_secret_env or client_secret_file"),
            )
        };
        let auth = match method {
            AuthMethod::ClientSecretBasic if !has_secret => {
                return Err(needs_secret("client_secret_basic"));
            }
            AuthMethod::ClientSecretPost if !has_secret => {
                return Err(needs_secret("client_secret_post"));
            }
            AuthMethod::ClientSecretBasic => ClientAuth::Basic,
            AuthMethod::ClientSecretPost => ClientAuth::Post,
            AuthMethod::None => ClientAuth::None,
            AuthMethod::PrivateKeyJwt => self.assertion(key)?,
        };
        Ok((auth, self.client_secret_file.clone()))
    }

    fn assertion(&self, key: &str) -> Result<ClientAuth, Error> {
        match (&self.private_key_file, &self.assertion_file) {
            (Some(_), Some(_)) => Err(config_error(
                key,
                "assertion_file",
                "give private_key_file or assertion_file, not both",
            )),
            (None, Some(path)) => Ok(ClientAuth::assertion(crate::assertion::from_file(path))),
            (None, None) => Err(config_error(
                key,
                "private_key_file",
                "private_key_jwt needs private_key_file (and signing_algorithm) or assertion_file",
            )),
            (Some(path), None) => self.private_key(key, path),
        }
    }

    #[cfg(feature = "private-key-jwt")]
    fn private_key(&self, key: &str, path: &Path) -> Result<ClientAuth, Error> {
        use crate::assertion::{PrivateKeyJwt, SigningAlgorithm};
        let algorithm = match self.signing_algorithm {
            Some(SigningAlgorithmName::Rs256) => SigningAlgorithm::Rs256,
            Some(SigningAlgorithmName::Es256) => SigningAlgorithm::Es256,
            Some(SigningAlgorithmName::EdDsa) => SigningAlgorithm::EdDsa,
            None => {
                return Err(config_error(
                    key,
                    "signing_algorithm",
                    "private_key_file needs signing_algorithm: RS256, ES256 or EdDSA",
                ));
            }
        };
        let pem = std::fs::read(path).map_err(|e| {
            config_error(
                key,
                "private_key_file",
                format!("could not read {}: {e}", path.display()),
            )
        })?;
        let mut signer = PrivateKeyJwt::from_pem(algorithm, &pem)
            .map_err(|e| config_error(key, "private_key_file", e))?;
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

fn read_secret(path: &Path) -> Result<SecretString, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("could not read {}: {e}", path.display()))?;
    let secret = text.trim();
    if secret.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(SecretString::from(secret.to_owned()))
}

/// The issuers discovered so far, each once.
#[derive(Default)]
struct Servers(HashMap<String, AuthorizationServer>);

impl Servers {
    async fn get(
        &mut self,
        issuer: &str,
        http: &Arc<dyn HttpClient>,
    ) -> Result<AuthorizationServer, Error> {
        if let Some(server) = self.0.get(issuer) {
            return Ok(server.clone());
        }
        let server = AuthorizationServer::builder(issuer)
            .http_client(Arc::clone(http))
            .discover()
            .await?;
        self.0.insert(issuer.to_owned(), server.clone());
        Ok(server)
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
        }),
    }
}

#[derive(Debug)]
struct Reloading<G> {
    grant: G,
    secret: ClientSecret,
    file: PathBuf,
}

impl<G: TokenSource> TokenSource for Reloading<G> {
    fn fetch(&self) -> FetchFuture<'_> {
        Box::pin(async move {
            match self.grant.fetch().await {
                Err(Error::InvalidClient(detail)) => {
                    match self.secret.reload_from_file(&self.file, RELOAD_OVERLAP) {
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
                }
                other => other,
            }
        })
    }

    fn revision(&self) -> u64 {
        self.grant.revision()
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
    /// # Errors
    ///
    /// As [`ClientConfig::build`], naming the tenant: `tenants.acme.token_url: ...`.
    pub async fn build(&self) -> Result<TenantCache<String>, Error> {
        self.build_on(default_http_client()?).await
    }

    /// As [`build`](Self::build), on `http`.
    pub async fn build_on(&self, http: Arc<dyn HttpClient>) -> Result<TenantCache<String>, Error> {
        let shared = self.cache.apply(CacheConfig::default(), "cache")?;
        let tenants = TenantCache::builder()
            .cache_config(shared.clone())
            .http_client(Arc::clone(&http))
            .build();
        let mut servers = Servers::default();
        for (name, client) in &self.tenants {
            let key = format!("tenants.{name}");
            let source = client.source(Arc::clone(&http), &mut servers, &key).await?;
            if client.cache == CacheSettings::default() {
                tenants.insert(name.clone(), source);
            } else {
                let config = client.cache.apply(shared.clone(), &key)?;
                let cache = TokenCache::builder(source)
                    .config(config)
                    .name(name.as_str())
                    .build();
                tenants.insert_cache(name.clone(), cache);
            }
        }
        Ok(tenants)
    }
}
