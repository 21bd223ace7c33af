//! `tokenward.toml`: one table per tenant under `[tenant.<name>]`. Secrets are never in the
//! file: it names the environment variable or the file that holds each.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;
use toml::Spanned;

use tokenward::ClientAuth;
use tokenward::decay::DecayPolicy;

/// A configuration that cannot be used: names the file, the line and the key.
#[derive(Debug)]
pub(crate) struct ConfigError {
    pub(crate) message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    tenant: BTreeMap<String, Spanned<RawTenant>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTenant {
    grant: Spanned<String>,
    token_url: Spanned<String>,
    client_id: Spanned<String>,
    client_secret_env: Option<Spanned<String>>,
    client_secret_file: Option<Spanned<String>>,
    auth_method: Option<Spanned<String>>,
    scope: Option<String>,
    require_scopes: Option<String>,
    #[serde(default)]
    params: BTreeMap<String, String>,
    #[serde(default)]
    authorize_params: BTreeMap<String, String>,
    store: Option<Spanned<String>>,
    #[serde(default)]
    share_access_token: bool,
    introspection_url: Option<String>,
    revocation_url: Option<String>,
    authorization_url: Option<String>,
    redirect_uri: Option<String>,
    issuer: Option<String>,
    health_url: Option<String>,
    health_tenant: Option<String>,
    decay: Option<Spanned<RawDecay>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDecay {
    warn_days: u64,
    page_days: u64,
    hard_fail_days: u64,
    lifetime_days: u64,
}

/// The grant a tenant uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GrantKind {
    /// `client_credentials`.
    ClientCredentials,
    /// `refresh_token`, with a grant file.
    RefreshToken,
}

impl GrantKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            GrantKind::ClientCredentials => "client_credentials",
            GrantKind::RefreshToken => "refresh_token",
        }
    }
}

/// Where a secret comes from.
#[derive(Debug, Clone)]
pub(crate) enum SecretSource {
    /// An environment variable.
    Env(String),
    /// A file (its first line, trimmed).
    File(PathBuf),
}

impl SecretSource {
    /// Reads the secret.
    pub(crate) fn read(&self, what: &str) -> Result<SecretString, ConfigError> {
        let value = match self {
            SecretSource::Env(name) => std::env::var(name).map_err(|_| ConfigError {
                message: format!("{what}: the environment variable {name} is not set"),
            })?,
            SecretSource::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
                    message: format!("{what}: cannot read {}: {e}", path.display()),
                })?;
                text.lines().next().unwrap_or_default().trim().to_owned()
            }
        };
        if value.is_empty() {
            return Err(ConfigError {
                message: format!("{what}: {} is empty", self.describe()),
            });
        }
        Ok(SecretString::from(value))
    }

    pub(crate) fn describe(&self) -> String {
        match self {
            SecretSource::Env(name) => format!("the environment variable {name}"),
            SecretSource::File(path) => format!("the file {}", path.display()),
        }
    }
}

/// One tenant's configuration.
#[derive(Debug, Clone)]
pub(crate) struct Tenant {
    pub(crate) name: String,
    pub(crate) grant: GrantKind,
    pub(crate) token_url: String,
    pub(crate) client_id: String,
    pub(crate) secret: Option<SecretSource>,
    pub(crate) auth: ClientAuth,
    pub(crate) scope: Option<String>,
    pub(crate) require_scopes: Option<String>,
    /// Extra parameters of token requests (`audience`, `resource`).
    pub(crate) params: BTreeMap<String, String>,
    /// Extra parameters of the authorization URL (`prompt`, `resource`, `access_type`).
    pub(crate) authorize_params: BTreeMap<String, String>,
    pub(crate) store: Option<PathBuf>,
    /// The grant file shares the access token too (`<store>.access`), as the service's
    /// `FileStore::share_access_token(true)` does. Off by default.
    pub(crate) share_access_token: bool,
    pub(crate) introspection_url: Option<String>,
    pub(crate) revocation_url: Option<String>,
    pub(crate) authorization_url: Option<String>,
    pub(crate) redirect_uri: Option<String>,
    pub(crate) issuer: Option<String>,
    /// The running service's token health endpoint (`tokenward_tower::health::TokenHealth`),
    /// which `status` asks for what the service sees.
    pub(crate) health_url: Option<String>,
    /// The tenant's key in that report, when the service serves a `TenantCache`.
    pub(crate) health_tenant: Option<String>,
    pub(crate) decay: DecayPolicy,
    /// `file:line` of the tenant's table, for messages.
    pub(crate) at: String,
}

/// The whole file.
#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) path: PathBuf,
    pub(crate) tenants: Vec<Tenant>,
}

/// The line (1-based) of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

struct Locator<'a> {
    path: &'a Path,
    text: &'a str,
    tenant: &'a str,
}

impl Locator<'_> {
    fn error(&self, span: Range<usize>, key: &str, what: &str) -> ConfigError {
        ConfigError {
            message: format!(
                "{}:{}: tenant.{}.{key}: {what}",
                self.path.display(),
                line_of(self.text, span.start),
                self.tenant
            ),
        }
    }
}

impl Config {
    /// Reads and checks `path`.
    pub(crate) fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            message: format!(
                "{}: cannot read the configuration: {e} (give another with --config)",
                path.display()
            ),
        })?;
        Config::parse(path, &text)
    }

    /// Checks the contents `text` of `path`.
    pub(crate) fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let file: File = toml::from_str(text).map_err(|e| {
            let message = e.message().trim_end();
            ConfigError {
                message: match e.span() {
                    Some(span) => {
                        let line = line_of(text, span.start);
                        // The key on that line, never its value (it could be a misplaced
                        // secret).
                        let key = text
                            .lines()
                            .nth(line - 1)
                            .and_then(|l| l.split_once('='))
                            .map(|(key, _)| key.trim())
                            .filter(|key| !key.is_empty() && !key.starts_with('['));
                        match key {
                            Some(key) => format!("{}:{line}: {key}: {message}", path.display()),
                            None => format!("{}:{line}: {message}", path.display()),
                        }
                    }
                    None => format!("{}: {message}", path.display()),
                },
            }
        })?;
        if file.tenant.is_empty() {
            return Err(ConfigError {
                message: format!(
                    "{}: no tenant is configured (add a [tenant.<name>] table)",
                    path.display()
                ),
            });
        }
        let folder = path.parent().unwrap_or(Path::new("."));
        let mut tenants = Vec::new();
        for (name, raw) in file.tenant {
            let span = raw.span();
            let raw = raw.into_inner();
            let at = Locator {
                path,
                text,
                tenant: &name,
            };
            tenants.push(Tenant::check(&name, raw, &at, folder, span)?);
        }
        Ok(Config {
            path: path.to_owned(),
            tenants,
        })
    }

    /// The tenant called `name`, or the only one when `name` is `None`.
    pub(crate) fn tenant(&self, name: Option<&str>) -> Result<&Tenant, ConfigError> {
        let names = || {
            self.tenants
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match name {
            Some(name) => self
                .tenants
                .iter()
                .find(|t| t.name == name)
                .ok_or_else(|| ConfigError {
                    message: format!(
                        "{}: no tenant {name:?} (configured: {})",
                        self.path.display(),
                        names()
                    ),
                }),
            None if self.tenants.len() == 1 => Ok(&self.tenants[0]),
            None => Err(ConfigError {
                message: format!(
                    "{}: several tenants are configured; choose one with --tenant ({})",
                    self.path.display(),
                    names()
                ),
            }),
        }
    }
}

impl Tenant {
    fn check(
        name: &str,
        raw: RawTenant,
        at: &Locator<'_>,
        folder: &Path,
        span: Range<usize>,
    ) -> Result<Tenant, ConfigError> {
        let grant = match raw.grant.get_ref().as_str() {
            "client_credentials" => GrantKind::ClientCredentials,
            "refresh_token" => GrantKind::RefreshToken,
            other => {
                return Err(at.error(
                    raw.grant.span(),
                    "grant",
                    &format!("{other:?} is not a grant: client_credentials or refresh_token"),
                ));
            }
        };
        let auth = match raw.auth_method.as_ref().map(|m| m.get_ref().as_str()) {
            None | Some("basic") => ClientAuth::Basic,
            Some("post") => ClientAuth::Post,
            Some("none") => ClientAuth::None,
            Some(other) => {
                return Err(at.error(
                    raw.auth_method.as_ref().map_or(0..0, Spanned::span),
                    "auth_method",
                    &format!("{other:?} is not an authentication method: basic, post or none"),
                ));
            }
        };
        let secret = match (&raw.client_secret_env, &raw.client_secret_file) {
            (Some(env), None) => Some(SecretSource::Env(env.get_ref().clone())),
            (None, Some(file)) => Some(SecretSource::File(folder.join(file.get_ref()))),
            (Some(_), Some(file)) => {
                return Err(at.error(
                    file.span(),
                    "client_secret_file",
                    "give client_secret_env or client_secret_file, not both",
                ));
            }
            (None, None) if !matches!(auth, ClientAuth::None) => {
                return Err(at.error(
                    raw.client_id.span(),
                    "client_secret_env",
                    "name the environment variable (client_secret_env) or the file \
                     (client_secret_file) that holds the client secret; secrets are never in \
                     this file",
                ));
            }
            (None, None) => None,
        };
        for (key, value) in [("token_url", &raw.token_url), ("client_id", &raw.client_id)] {
            if value.get_ref().trim().is_empty() {
                return Err(at.error(value.span(), key, "is empty"));
            }
        }
        if !raw.token_url.get_ref().starts_with("https://")
            && !raw.token_url.get_ref().starts_with("http://")
        {
            return Err(at.error(raw.token_url.span(), "token_url", "is not an http(s) URL"));
        }
        let urls = [
            ("introspection_url", &raw.introspection_url),
            ("revocation_url", &raw.revocation_url),
            ("authorization_url", &raw.authorization_url),
            ("redirect_uri", &raw.redirect_uri),
            ("issuer", &raw.issuer),
            ("health_url", &raw.health_url),
        ];
        for (key, value) in urls {
            if let Some(url) = value
                && !url.starts_with("https://")
                && !url.starts_with("http://")
            {
                return Err(at.error(span.clone(), key, "is not an http(s) URL"));
            }
        }
        // Credentials have their own keys, read from the environment or a file: never as a
        // parameter written in this file.
        const SECRET_PARAMS: [&str; 6] = [
            "client_secret",
            "client_assertion",
            "password",
            "refresh_token",
            "code",
            "code_verifier",
        ];
        for (key, params) in [
            ("params", &raw.params),
            ("authorize_params", &raw.authorize_params),
        ] {
            if let Some(name) = params.keys().find(|k| SECRET_PARAMS.contains(&k.as_str())) {
                return Err(at.error(
                    span.clone(),
                    key,
                    &format!("{name} is a credential: it cannot be a parameter in this file"),
                ));
            }
        }
        if raw.health_tenant.is_some() && raw.health_url.is_none() {
            return Err(at.error(
                span.clone(),
                "health_tenant",
                "names a tenant of the service's health report: set health_url too",
            ));
        }
        let store = raw.store.as_ref().map(|s| folder.join(s.get_ref()));
        if grant == GrantKind::RefreshToken && store.is_none() {
            return Err(at.error(
                raw.grant.span(),
                "store",
                "a refresh_token tenant needs the grant file it keeps its refresh token in",
            ));
        }
        let decay = match raw.decay {
            None => DecayPolicy::default(),
            Some(d) => {
                let span = d.span();
                let d = d.into_inner();
                let day = |n: u64| Duration::from_secs(n.saturating_mul(86_400));
                let mut policy = DecayPolicy::default();
                policy.warn_after = day(d.warn_days);
                policy.page_after = day(d.page_days);
                policy.hard_fail_after = day(d.hard_fail_days);
                policy.lifetime = day(d.lifetime_days);
                policy.validate().map_err(|_| {
                    at.error(
                        span,
                        "decay",
                        "the days must satisfy warn_days <= page_days <= hard_fail_days <= lifetime_days",
                    )
                })?;
                policy
            }
        };
        Ok(Tenant {
            name: name.to_owned(),
            grant,
            token_url: raw.token_url.into_inner(),
            client_id: raw.client_id.into_inner(),
            secret,
            auth,
            scope: raw.scope,
            require_scopes: raw.require_scopes,
            params: raw.params,
            authorize_params: raw.authorize_params,
            store,
            share_access_token: raw.share_access_token,
            introspection_url: raw.introspection_url,
            revocation_url: raw.revocation_url,
            authorization_url: raw.authorization_url,
            redirect_uri: raw.redirect_uri,
            issuer: raw.issuer,
            health_url: raw.health_url,
            health_tenant: raw.health_tenant,
            decay,
            at: format!("{}:{}", at.path.display(), line_of(at.text, span.start)),
        })
    }

    /// The client secret, read from its source now.
    pub(crate) fn client_secret(&self) -> Result<Option<SecretString>, ConfigError> {
        self.secret
            .as_ref()
            .map(|s| s.read(&format!("tenant {}: client secret", self.name)))
            .transpose()
    }
}
