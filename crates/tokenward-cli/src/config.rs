//! `tokenward.toml`: one table per tenant under `[tenant.<name>]` (or `[tenants.<name>]`,
//! as a service's `tokenward::config::TenantsConfig` reads it). Each table is a
//! `tokenward::config::ClientConfig`, the keys a service reads, checked by the library's
//! own rules, plus the CLI's own keys ([`CLI_KEYS`]). Secrets are never in the file: it
//! names the environment variable or the file that holds each.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use tokenward::ClientAuth;
use tokenward::config::{CacheSettings, ClientConfig};
use tokenward::decay::DecayPolicy;
use tokenward::discovery::AuthorizationServer;

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

/// The keys of a tenant's table that are the CLI's, not the client's: split off before the
/// rest is read as a `ClientConfig`.
const CLI_KEYS: [&str; 7] = [
    "authorization_url",
    "redirect_uri",
    "authorize_params",
    "introspection_url",
    "revocation_url",
    "health_url",
    "health_tenant",
];

/// The CLI's own keys of a tenant.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CliKeys {
    /// The authorization endpoint, for `authorize` (discovered with an issuer).
    authorization_url: Option<String>,
    /// The redirect URI `authorize` listens on.
    redirect_uri: Option<String>,
    /// Extra parameters of the authorization URL (`prompt`, `access_type`).
    #[serde(default)]
    authorize_params: BTreeMap<String, String>,
    /// The introspection endpoint (discovered with an issuer).
    introspection_url: Option<String>,
    /// The revocation endpoint (discovered with an issuer).
    revocation_url: Option<String>,
    /// The running service's token health endpoint.
    health_url: Option<String>,
    /// The tenant's key in that report.
    health_tenant: Option<String>,
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
    /// A file, read as the library reads secret files (trimmed, at most 64 KiB).
    File(PathBuf),
}

/// An environment variable's name as messages show it: only when it looks like one (upper
/// case, digits and `_`), so a secret pasted where its variable's name belongs is never
/// printed.
pub(crate) fn var_name(name: &str) -> &str {
    let mut chars = name.chars();
    let looks_like_one = name.len() <= 64
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_uppercase() || c == '_')
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if looks_like_one {
        name
    } else {
        "(a name not in upper case, not shown)"
    }
}

impl SecretSource {
    /// Reads the secret.
    pub(crate) fn read(&self, what: &str) -> Result<SecretString, ConfigError> {
        match self {
            SecretSource::Env(name) => match std::env::var(name) {
                Ok(value) if !value.is_empty() => Ok(SecretString::from(value)),
                Ok(_) => Err(ConfigError {
                    message: format!(
                        "{what}: the environment variable {} is empty",
                        var_name(name)
                    ),
                }),
                Err(_) => Err(ConfigError {
                    message: format!(
                        "{what}: the environment variable {} is not set",
                        var_name(name)
                    ),
                }),
            },
            SecretSource::File(path) => {
                tokenward::secret::read_file(path).map_err(|e| ConfigError {
                    message: format!("{what}: {}", tokenward::error::chain(&e)),
                })
            }
        }
    }
}

/// One tenant's configuration.
#[derive(Debug, Clone)]
pub(crate) struct Tenant {
    pub(crate) name: String,
    /// The client, as a service reads it; relative paths resolved from the file's folder.
    pub(crate) client: ClientConfig,
    pub(crate) grant: GrantKind,
    pub(crate) client_id: String,
    pub(crate) secret: Option<SecretSource>,
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
    /// The token endpoint, unless the endpoints come from `issuer`.
    pub(crate) token_url: Option<String>,
    pub(crate) introspection_url: Option<String>,
    pub(crate) revocation_url: Option<String>,
    pub(crate) authorization_url: Option<String>,
    pub(crate) redirect_uri: Option<String>,
    /// The issuer the endpoints are discovered from.
    pub(crate) issuer: Option<String>,
    /// The discovered server, once [`discover`](Self::discover) ran.
    pub(crate) server: Option<AuthorizationServer>,
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

/// A TOML error as `file:line: <within>key: message`, never quoting a value (it could be a
/// misplaced secret).
fn toml_error(path: &Path, text: &str, within: &str, e: &toml::de::Error) -> ConfigError {
    let message = unquoted(e.message().trim_end());
    ConfigError {
        message: match e.span() {
            Some(span) => {
                let line = line_of(text, span.start);
                let key = text
                    .lines()
                    .nth(line - 1)
                    .and_then(|l| l.split_once('='))
                    .map(|(key, _)| key.trim())
                    .filter(|key| !key.is_empty() && !key.starts_with('['));
                match key {
                    Some(key) => format!("{}:{line}: {within}{key}: {message}", path.display()),
                    None => format!("{}:{line}: {within}{message}", path.display()),
                }
            }
            None => format!("{}: {within}{message}", path.display()),
        },
    }
}

/// serde's message without the value it quotes (`unknown variant \`x\``, `invalid type:
/// string "x"`): what was expected stays.
fn unquoted(message: &str) -> String {
    for lead in [
        "unknown variant ",
        "invalid value: string ",
        "invalid type: string ",
    ] {
        if let Some(rest) = message.strip_prefix(lead) {
            let rest = rest
                .split_once(", expected")
                .map_or(String::new(), |(_, expected)| {
                    format!(", expected{expected}")
                });
            return format!("{}(not shown){rest}", lead);
        }
    }
    message.to_owned()
}

struct Locator<'a> {
    path: &'a Path,
    text: &'a str,
    /// `tenant` or `tenants`, as the file says.
    table: &'a str,
    tenant: &'a str,
}

impl Locator<'_> {
    fn error(&self, span: Range<usize>, key: &str, what: &str) -> ConfigError {
        self.within(span, &format!("{key}: {what}"))
    }

    /// `file:line: tenant.<name>.<what>`.
    fn within(&self, span: Range<usize>, what: &str) -> ConfigError {
        ConfigError {
            message: format!(
                "{}:{}: {}.{}.{what}",
                self.path.display(),
                line_of(self.text, span.start),
                self.table,
                self.tenant
            ),
        }
    }
}

/// The library's configuration error without its lead (`key: what`).
fn config_message(e: &tokenward::Error) -> String {
    match e {
        tokenward::Error::Config(why) => why.to_string(),
        other => tokenward::error::chain(other).to_string(),
    }
}

/// Reads `T` from the table `within` of the file, errors pointing into `text`.
fn read<'i, T: Deserialize<'i>>(
    table: DeTable<'i>,
    span: Range<usize>,
    path: &Path,
    text: &str,
    within: &str,
) -> Result<T, ConfigError> {
    T::deserialize(toml::de::Deserializer::from(Spanned::new(span, table)))
        .map_err(|e| toml_error(path, text, within, &e))
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
        let root = DeTable::parse(text).map_err(|e| toml_error(path, text, "", &e))?;
        let mut tables = Vec::new();
        for (key, value) in root.into_inner() {
            let (key_span, key) = (key.span(), key.into_inner());
            let (span, value) = (value.span(), value.into_inner());
            match (key.as_ref(), value) {
                ("tenant" | "tenants", DeValue::Table(table)) => {
                    tables.push((key.into_owned(), table));
                }
                // The tuning a service's TenantsConfig shares; checked, and not used by the
                // CLI's one-off requests.
                ("cache", DeValue::Table(table)) => {
                    let cache: CacheSettings = read(table, span.clone(), path, text, "cache.")?;
                    cache.validate().map_err(|e| ConfigError {
                        message: format!(
                            "{}:{}: {}",
                            path.display(),
                            line_of(text, span.start),
                            config_message(&e)
                        ),
                    })?;
                }
                (key, _) => {
                    return Err(ConfigError {
                        message: format!(
                            "{}:{}: {key}: not a key of this file: [tenant.<name>] tables (or \
                             [tenants.<name>]) and [cache]",
                            path.display(),
                            line_of(text, key_span.start)
                        ),
                    });
                }
            }
        }
        let folder = path.parent().unwrap_or(Path::new("."));
        let mut tenants: Vec<Tenant> = Vec::new();
        for (table_name, name, value) in tables.into_iter().flat_map(|(table, tenants)| {
            tenants.into_iter().map(move |(n, v)| (table.clone(), n, v))
        }) {
            let (name_span, name) = (name.span(), name.into_inner().into_owned());
            let (span, DeValue::Table(table)) = (value.span(), value.into_inner()) else {
                return Err(ConfigError {
                    message: format!(
                        "{}:{}: {table_name}.{name}: is not a table",
                        path.display(),
                        line_of(text, name_span.start)
                    ),
                });
            };
            if tenants.iter().any(|t| t.name == name) {
                return Err(ConfigError {
                    message: format!(
                        "{}:{}: {table_name}.{name}: configured twice (under tenant and tenants)",
                        path.display(),
                        line_of(text, name_span.start)
                    ),
                });
            }
            let (mut cli, mut client) = (DeTable::new(), DeTable::new());
            for (key, value) in table {
                if CLI_KEYS.contains(&key.get_ref().as_ref()) {
                    cli.insert(key, value);
                } else {
                    client.insert(key, value);
                }
            }
            let within = format!("{table_name}.{name}.");
            let cli: CliKeys = read(cli, span.clone(), path, text, &within)?;
            let client: ClientConfig = read(client, span.clone(), path, text, &within)?;
            let at = Locator {
                path,
                text,
                table: &table_name,
                tenant: &name,
            };
            tenants.push(Tenant::check(&name, client, cli, &at, folder, span)?);
        }
        if tenants.is_empty() {
            return Err(ConfigError {
                message: format!(
                    "{}: no tenant is configured (add a [tenant.<name>] table)",
                    path.display()
                ),
            });
        }
        tenants.sort_by(|a, b| a.name.cmp(&b.name));
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
        mut client: ClientConfig,
        cli: CliKeys,
        at: &Locator<'_>,
        folder: &Path,
        span: Range<usize>,
    ) -> Result<Tenant, ConfigError> {
        // Paths in the file are relative to its folder.
        for path in [
            &mut client.client_secret_file,
            &mut client.private_key_file,
            &mut client.assertion_file,
            &mut client.store,
        ]
        .into_iter()
        .flatten()
        {
            *path = folder.join(&*path);
        }
        // The library's own rules, as a service applies them.
        client
            .validate()
            .map_err(|e| at.within(span.clone(), &config_message(&e)))?;
        let grant = match client.grant {
            tokenward::config::GrantKind::ClientCredentials => GrantKind::ClientCredentials,
            tokenward::config::GrantKind::RefreshToken => GrantKind::RefreshToken,
            _ => {
                return Err(at.error(span, "grant", "is not a grant this CLI runs"));
            }
        };
        let secret = match (&client.client_secret_env, &client.client_secret_file) {
            (Some(env), _) => Some(SecretSource::Env(env.clone())),
            (None, Some(file)) => Some(SecretSource::File(file.clone())),
            (None, None) => None,
        };
        let urls = [
            ("introspection_url", &cli.introspection_url),
            ("revocation_url", &cli.revocation_url),
            ("authorization_url", &cli.authorization_url),
            ("redirect_uri", &cli.redirect_uri),
            ("health_url", &cli.health_url),
        ];
        for (key, value) in urls {
            if let Some(url) = value
                && !url.starts_with("https://")
                && !url.starts_with("http://")
            {
                return Err(at.error(span.clone(), key, "is not an http(s) URL"));
            }
        }
        if client.issuer.is_some() {
            for (key, value) in &urls[..3] {
                if value.is_some() {
                    return Err(at.error(
                        span.clone(),
                        key,
                        "is discovered from the issuer: remove it, or give token_url and the \
                         endpoints instead of issuer",
                    ));
                }
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
        if let Some(name) = cli
            .authorize_params
            .keys()
            .find(|k| SECRET_PARAMS.contains(&k.as_str()))
        {
            return Err(at.error(
                span.clone(),
                "authorize_params",
                &format!("{name} is a credential: it cannot be a parameter in this file"),
            ));
        }
        if cli.health_tenant.is_some() && cli.health_url.is_none() {
            return Err(at.error(
                span.clone(),
                "health_tenant",
                "names a tenant of the service's health report: set health_url too",
            ));
        }
        if grant == GrantKind::RefreshToken && client.store.is_none() {
            return Err(at.error(
                span.clone(),
                "store",
                "a refresh_token tenant needs the grant file it keeps its refresh token in",
            ));
        }
        let decay = match &client.decay {
            // Checked by validate.
            Some(days) => days
                .policy()
                .map_err(|_| at.error(span.clone(), "decay", "the days are out of order"))?,
            None => DecayPolicy::default(),
        };
        Ok(Tenant {
            name: name.to_owned(),
            grant,
            client_id: client.client_id.clone(),
            secret,
            scope: client.scope.clone(),
            require_scopes: client.require_scopes.clone(),
            params: client.params.clone(),
            authorize_params: cli.authorize_params,
            store: client.store.clone(),
            share_access_token: client.share_access_token,
            token_url: client.token_url.clone(),
            introspection_url: cli.introspection_url,
            revocation_url: cli.revocation_url,
            authorization_url: cli.authorization_url,
            redirect_uri: cli.redirect_uri,
            issuer: client.issuer.clone(),
            server: None,
            health_url: cli.health_url,
            health_tenant: cli.health_tenant,
            decay,
            at: format!("{}:{}", at.path.display(), line_of(at.text, span.start)),
            client,
        })
    }

    /// The client secret, read from its source now.
    pub(crate) fn client_secret(&self) -> Result<Option<SecretString>, ConfigError> {
        self.secret
            .as_ref()
            .map(|s| s.read(&format!("tenant {}: client secret", self.name)))
            .transpose()
    }

    /// How the client authenticates: a private key is read (and checked) now.
    pub(crate) fn auth(&self) -> Result<ClientAuth, ConfigError> {
        self.client.client_auth().map_err(|e| ConfigError {
            message: format!("{}: tenant.{}.{}", self.at, self.name, config_message(&e)),
        })
    }

    /// The refresh token of `refresh_token_env`, read now.
    pub(crate) fn refresh_token(&self) -> Result<Option<SecretString>, ConfigError> {
        self.client
            .refresh_token_env
            .as_ref()
            .map(|name| {
                SecretSource::Env(name.clone())
                    .read(&format!("tenant {}: refresh token", self.name))
            })
            .transpose()
    }

    /// Discovers the server when the endpoints come from an issuer.
    pub(crate) async fn discover(&mut self) -> Result<(), tokenward::Error> {
        if let (Some(issuer), None) = (&self.issuer, &self.server) {
            let server = AuthorizationServer::builder(issuer).discover().await?;
            let metadata = server.metadata();
            self.introspection_url = metadata.introspection_endpoint.clone();
            self.revocation_url = metadata.revocation_endpoint.clone();
            self.authorization_url = metadata.authorization_endpoint.clone();
            self.server = Some(server);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's example of `tokenward.toml` is a configuration this CLI accepts.
    #[test]
    fn the_readme_example_parses() {
        let readme = include_str!("../../../README.md");
        let section = &readme[readme.find("## The operator CLI").unwrap()..];
        let start = section.find("```toml\n").unwrap() + "```toml\n".len();
        let text = &section[start..start + section[start..].find("```").unwrap()];
        let config = Config::parse(Path::new("/etc/tokenward/tokenward.toml"), text).unwrap();
        let names: Vec<&str> = config.tenants.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["billing", "crm"]);
        let crm = config.tenant(Some("crm")).unwrap();
        assert_eq!(crm.grant, GrantKind::RefreshToken);
        assert_eq!(crm.issuer.as_deref(), Some("https://auth.example.com"));
        assert!(crm.share_access_token);
        assert_eq!(crm.decay.page_after.as_secs(), 75 * 86_400);
    }

    /// The same rules as the library: a service's tenants file is read as it is.
    #[test]
    fn a_tenants_config_file_is_a_cli_file() {
        let text = r#"
            [cache]
            max_attempts = 2

            [tenants.acme]
            token_url = "https://auth.acme.example/token"
            client_id = "a"
            client_secret_file = "acme.secret"
            cache = { refresh_fraction = 0.5 }
        "#;
        let service: tokenward::config::TenantsConfig = toml::from_str(text).unwrap();
        let cli = Config::parse(Path::new("/srv/tokenward.toml"), text).unwrap();
        let acme = cli.tenant(None).unwrap();
        assert_eq!(acme.client_id, service.tenants["acme"].client_id);
        // Relative to the file's folder.
        assert!(
            matches!(&acme.secret, Some(SecretSource::File(p)) if p == Path::new("/srv/acme.secret"))
        );
    }
}
