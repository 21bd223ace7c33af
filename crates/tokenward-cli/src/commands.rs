//! The commands. Protocol work is the core crate's: this module builds grants from the
//! configuration, calls them, and reports.

use std::cell::RefCell;
use std::io::{Read as _, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokenward::decay::DecayState;
use tokenward::grant::GrantBuilder;
use tokenward::store::{FileStore, TokenStore};
use tokenward::{
    ClientCredentials, Introspection, RefreshTokenGrant, Revocation, ScopeSet, Token, TokenSource,
    TokenTypeHint,
};

use crate::config::{Config, GrantKind, SecretSource, Tenant};
use crate::output::{Failure, Level, Report, Spinner, grid, paint, pairs, span, time, unix};
use crate::{Cli, Command, Format};

/// What every command needs besides its own arguments.
pub(crate) struct Context<'a> {
    pub(crate) config: Config,
    pub(crate) tenant: Option<String>,
    /// Colour in tables and a spinner on waits.
    pub(crate) terminal: bool,
    /// Where to tell the person something while the command runs (stderr).
    pub(crate) notices: &'a dyn Notices,
}

/// A place for lines the person must see at once.
pub(crate) trait Notices {
    fn line(&self, text: &str);
}

impl<W: Write> Notices for RefCell<W> {
    fn line(&self, text: &str) {
        let mut w = self.borrow_mut();
        let _ = writeln!(w, "{text}");
        let _ = w.flush();
    }
}

impl Context<'_> {
    /// Writes a line for the person at once (stderr).
    pub(crate) fn notice(&self, text: &str) {
        self.notices.line(text);
    }
}

pub(crate) async fn dispatch(
    cli: Cli,
    terminal: bool,
    notices: &dyn Notices,
) -> Result<Report, Failure> {
    let ctx = Context {
        config: Config::load(&cli.config)?,
        tenant: cli.tenant,
        terminal,
        notices,
    };
    match cli.command {
        Command::Token {
            force,
            reveal,
            format,
        } => token(&ctx, force, reveal, format).await,
        Command::Verify { introspect, url } => verify(&ctx, introspect, url.as_deref()).await,
        Command::Scopes => scopes(&ctx).await,
        Command::RotateSecret {
            new_secret_env,
            new_secret_file,
        } => {
            let source = match (new_secret_env, new_secret_file) {
                (Some(env), None) => SecretSource::Env(env),
                (None, Some(file)) => SecretSource::File(file),
                _ => {
                    return Err(Failure::config(
                        "name where the new secret is: --new-secret-env VAR or --new-secret-file PATH (never the secret itself)",
                    ));
                }
            };
            rotate_secret(&ctx, &source).await
        }
        Command::Decay => decay(&ctx).await,
        Command::Status => status(&ctx).await,
        Command::Introspect { stdin } => introspect(&ctx, stdin).await,
        Command::Revoke {
            refresh_token,
            stdin,
        } => revoke(&ctx, refresh_token, stdin).await,
        Command::Authorize { open, timeout } => {
            crate::authorize::authorize(&ctx, open, timeout).await
        }
    }
}

impl Context<'_> {
    /// The tenant the command is for, as configured.
    fn configured(&self) -> Result<&Tenant, Failure> {
        Ok(self.config.tenant(self.tenant.as_deref())?)
    }

    /// The tenant the command is for, its endpoints discovered when it names an issuer.
    pub(crate) async fn tenant(&self) -> Result<Tenant, Failure> {
        let mut tenant = self.configured()?.clone();
        if let Err(error) = tenant.discover().await {
            let mut failure = Failure::from_error(&error);
            failure.message = format!(
                "{}: tenant {}: discovering the endpoints from its issuer: {}",
                tenant.at, tenant.name, failure.message
            );
            return Err(failure);
        }
        Ok(tenant)
    }
}

/// The options every grant shares, from the tenant's configuration.
fn configure<G>(
    mut builder: GrantBuilder<G>,
    tenant: &Tenant,
    secret: Option<&SecretString>,
) -> Result<GrantBuilder<G>, Failure> {
    builder = builder.auth_method(tenant.auth()?);
    if let Some(secret) = secret {
        builder = builder.client_secret(secret.expose_secret());
    }
    if let Some(scope) = &tenant.scope {
        builder = builder.scope(scope.clone());
    }
    for (name, value) in &tenant.params {
        builder = builder.param(name.clone(), value.clone());
    }
    Ok(builder)
}

/// The token endpoint: the discovered server's, or `token_url`.
fn token_url(tenant: &Tenant) -> &str {
    tenant.token_url.as_deref().unwrap_or_default()
}

fn client_credentials(
    tenant: &Tenant,
    secret: Option<&SecretString>,
) -> Result<ClientCredentials, Failure> {
    let builder = match &tenant.server {
        Some(server) => ClientCredentials::from_issuer(server, &tenant.client_id),
        None => ClientCredentials::builder(token_url(tenant), &tenant.client_id),
    };
    Ok(configure(builder, tenant, secret)?.build()?)
}

fn store_of(tenant: &Tenant) -> Result<&Path, Failure> {
    tenant.store.as_deref().ok_or_else(|| {
        Failure::config(format!(
            "{}: tenant {} has no grant file (store)",
            tenant.at, tenant.name
        ))
    })
}

/// Refuses to write a grant file another user owns: the write replaces it with a file only
/// this user can read, and the service that owns it could no longer read its grant. Before
/// the file exists, the same for its folder, when running as root (a file root creates in a
/// service's folder is root's).
#[cfg(unix)]
pub(crate) fn check_owner(path: &Path) -> Result<(), Failure> {
    use std::os::unix::fs::MetadataExt as _;
    let me = rustix::process::geteuid().as_raw();
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let (what, owner) = match std::fs::metadata(path) {
        Ok(meta) => ("the grant file", meta.uid()),
        Err(_) if me == 0 => match std::fs::metadata(folder) {
            Ok(meta) => ("the grant file's folder", meta.uid()),
            Err(_) => return Ok(()),
        },
        Err(_) => return Ok(()),
    };
    if owner == me {
        return Ok(());
    }
    Err(Failure::failed(
        "grant_file_owner",
        format!(
            "{what} {} belongs to uid {owner}, and this runs as uid {me}: writing it would \
             leave a file only uid {me} can read, and the service could no longer read its \
             grant; run as its owner (for example `sudo -u <owner> tokenward ...`)",
            path.display()
        ),
    ))
}

#[cfg(not(unix))]
pub(crate) fn check_owner(_path: &Path) -> Result<(), Failure> {
    Ok(())
}

fn refresh_grant(
    tenant: &Tenant,
    secret: Option<&SecretString>,
    share: bool,
) -> Result<RefreshTokenGrant, Failure> {
    check_owner(store_of(tenant)?)?;
    let store = FileStore::new(store_of(tenant)?).share_access_token(share);
    let builder = match &tenant.server {
        Some(server) => RefreshTokenGrant::from_issuer(server, &tenant.client_id).store(store),
        None => RefreshTokenGrant::from_store(token_url(tenant), &tenant.client_id, store),
    };
    let mut builder = configure(builder, tenant, secret)?.decay_policy(tenant.decay.clone());
    if let Some(token) = tenant.refresh_token()? {
        builder = builder.refresh_token(token.expose_secret());
    }
    Ok(builder.build()?)
}

/// A token with the tenant's grant and its current secret; for a refresh grant, a rotated
/// refresh token is persisted before this returns. `force`: not the access token the grant
/// file shares.
async fn obtain(ctx: &Context<'_>, tenant: &Tenant, force: bool) -> Result<Token, Failure> {
    let secret = tenant.client_secret()?;
    let _spinner = Spinner::start("waiting for the token endpoint", ctx.terminal);
    let token = match tenant.grant {
        GrantKind::ClientCredentials => {
            client_credentials(tenant, secret.as_ref())?.fetch().await?
        }
        GrantKind::RefreshToken => {
            refresh_grant(tenant, secret.as_ref(), tenant.share_access_token && !force)?
                .fetch()
                .await?
        }
    };
    Ok(token)
}

/// When `token` expires, on the wall clock.
fn expires_at(token: &Token) -> SystemTime {
    let left = token
        .expires_at()
        .saturating_duration_since(tokio::time::Instant::now());
    SystemTime::now() + left
}

fn token_facts(tenant: &Tenant, token: &Token) -> (Vec<(&'static str, String)>, Value) {
    let expires = expires_at(token);
    let left = expires
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    let rows = vec![
        (
            "tenant",
            format!("{} ({})", tenant.name, tenant.grant.as_str()),
        ),
        ("type", "Bearer".to_owned()),
        ("expires", format!("{} (in {})", time(expires), span(left))),
        ("lifetime", span(token.lifetime())),
        (
            "scopes",
            token.scope().unwrap_or("(none reported)").to_owned(),
        ),
    ];
    let json = json!({
        "tenant": tenant.name,
        "grant": tenant.grant.as_str(),
        "token_type": "Bearer",
        "expires_at": unix(expires),
        "expires_in": left.as_secs(),
        "lifetime": token.lifetime().as_secs(),
        "scope": token.scope(),
    });
    (rows, json)
}

async fn token(
    ctx: &Context<'_>,
    force: bool,
    reveal: bool,
    format: Format,
) -> Result<Report, Failure> {
    let tenant = &ctx.tenant().await?;
    let before = stored_refresh_token(tenant).await;
    let token = obtain(ctx, tenant, force).await?;
    let secret = token.access_token().expose_secret();
    match format {
        Format::Header => {
            return Ok(Report::ok(
                format!("Authorization: Bearer {secret}\n"),
                json!({ "header": format!("Bearer {secret}") }),
            ));
        }
        Format::Env => {
            // Single-quoted for a POSIX shell: a quote in the token cannot end the string.
            let quoted = secret.replace('\'', "'\\''");
            return Ok(Report::ok(
                format!("export TOKENWARD_ACCESS_TOKEN='{quoted}'\n"),
                json!({ "access_token": secret }),
            ));
        }
        Format::Text => {}
    }
    let (mut rows, mut json) = token_facts(tenant, &token);
    if tenant.grant == GrantKind::RefreshToken {
        let after = stored_refresh_token(tenant).await;
        let rotated = before.is_some() && after.is_some() && before != after;
        let path = store_of(tenant)?.display().to_string();
        rows.push((
            "refresh token",
            if rotated {
                format!("rotated, persisted to {path}")
            } else {
                format!("unchanged ({path})")
            },
        ));
        json["refresh_token_rotated"] = Value::Bool(rotated);
    }
    if reveal {
        rows.push(("access token", secret.to_owned()));
        json["access_token"] = Value::String(secret.to_owned());
    }
    Ok(Report::ok(pairs(&rows), json))
}

/// A digest of the stored refresh token (never the token), to tell whether it rotated.
async fn stored_refresh_token(tenant: &Tenant) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let store = FileStore::new(tenant.store.as_ref()?);
    let grant = store.load().await.ok()??;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    grant.refresh_token.expose_secret().hash(&mut h);
    Some(h.finish())
}

async fn verify(ctx: &Context<'_>, introspect: bool, url: Option<&str>) -> Result<Report, Failure> {
    let tenant = &ctx.tenant().await?;
    if tenant.grant != GrantKind::ClientCredentials {
        return Err(Failure::config(format!(
            "{}: verify checks a client credentials pair; tenant {} uses the refresh_token grant (run `tokenward token`)",
            tenant.at, tenant.name
        )));
    }
    let secret = tenant.client_secret()?;
    verify_with(ctx, tenant, secret, introspect, url).await
}

/// The verification steps with `secret` alone: a token, then the optional checks.
async fn verify_with(
    ctx: &Context<'_>,
    tenant: &Tenant,
    secret: Option<SecretString>,
    introspect: bool,
    url: Option<&str>,
) -> Result<Report, Failure> {
    let mut rows = vec![(
        "tenant",
        format!("{} ({})", tenant.name, tenant.grant.as_str()),
    )];
    let mut steps = Vec::new();
    let grant = client_credentials(tenant, secret.as_ref())?;
    let obtained = {
        let _spinner = Spinner::start("waiting for the token endpoint", ctx.terminal);
        grant.verify(url).await
    };
    // Never the URL itself in the output: it may hold credentials.
    let token = match obtained {
        Ok(token) => {
            rows.push(("token", "PASS obtained with this secret alone".to_owned()));
            steps.push(json!({"step": "token", "ok": true}));
            if url.is_some() {
                rows.push(("url", "PASS the URL answered 2xx".to_owned()));
                steps.push(json!({"step": "url", "ok": true}));
            }
            token
        }
        // The token was obtained; the URL refused it.
        Err(tokenward::Error::CheckFailed(check)) => {
            rows.push(("token", "PASS obtained with this secret alone".to_owned()));
            steps.push(json!({"step": "token", "ok": true}));
            rows.push(("url", format!("FAIL {check}")));
            steps.push(json!({
                "step": "url",
                "ok": false,
                "status": check.status.map(|s| s.as_u16()),
                "error": check.to_string(),
            }));
            return Ok(Report::failed(
                pairs(&rows),
                json!({"tenant": tenant.name, "steps": steps}),
            ));
        }
        Err(error) => {
            rows.push(("token", format!("FAIL {}", tokenward::error::chain(&error))));
            steps.push(json!({"step": "token", "ok": false, "error": tokenward::error::chain(&error).to_string()}));
            return Ok(Report::failed(
                pairs(&rows),
                json!({"tenant": tenant.name, "steps": steps}),
            ));
        }
    };
    if introspect {
        let introspection = introspection(tenant, secret.as_ref())?;
        match introspection
            .introspect_with_hint(
                token.access_token().expose_secret(),
                Some(TokenTypeHint::AccessToken),
            )
            .await
        {
            Ok(info) if info.active => {
                rows.push(("introspection", "PASS active".to_owned()));
                steps.push(json!({"step": "introspection", "ok": true}));
            }
            Ok(_) => {
                rows.push((
                    "introspection",
                    "FAIL the server says the token is not active".to_owned(),
                ));
                steps.push(json!({"step": "introspection", "ok": false}));
                return Ok(Report::failed(
                    pairs(&rows),
                    json!({"tenant": tenant.name, "steps": steps}),
                ));
            }
            Err(error) => {
                rows.push((
                    "introspection",
                    format!("FAIL {}", tokenward::error::chain(&error)),
                ));
                steps.push(
                    json!({"step": "introspection", "ok": false, "error": tokenward::error::chain(&error).to_string()}),
                );
                return Ok(Report::failed(
                    pairs(&rows),
                    json!({"tenant": tenant.name, "steps": steps}),
                ));
            }
        }
    }
    Ok(Report::ok(
        pairs(&rows),
        json!({"tenant": tenant.name, "steps": steps}),
    ))
}

fn introspection(tenant: &Tenant, secret: Option<&SecretString>) -> Result<Introspection, Failure> {
    let url = tenant.introspection_url.as_deref().ok_or_else(|| {
        Failure::config(format!(
            "{}: tenant {} has no introspection_url",
            tenant.at, tenant.name
        ))
    })?;
    let builder = match &tenant.server {
        Some(server) => Introspection::from_issuer(server, &tenant.client_id),
        None => Introspection::builder(url, &tenant.client_id),
    };
    let mut builder = builder.auth_method(tenant.auth()?);
    if let Some(secret) = secret {
        builder = builder.client_secret(secret.expose_secret());
    }
    Ok(builder.build()?)
}

fn revocation(tenant: &Tenant, secret: Option<&SecretString>) -> Result<Revocation, Failure> {
    let url = tenant.revocation_url.as_deref().ok_or_else(|| {
        Failure::config(format!(
            "{}: tenant {} has no revocation_url",
            tenant.at, tenant.name
        ))
    })?;
    let builder = match &tenant.server {
        Some(server) => Revocation::from_issuer(server, &tenant.client_id),
        None => Revocation::builder(url, &tenant.client_id),
    };
    let mut builder = builder.auth_method(tenant.auth()?);
    if let Some(secret) = secret {
        builder = builder.client_secret(secret.expose_secret());
    }
    Ok(builder.build()?)
}

async fn scopes(ctx: &Context<'_>) -> Result<Report, Failure> {
    let tenant = &ctx.tenant().await?;
    let Some(required) = &tenant.require_scopes else {
        return Err(Failure::config(format!(
            "{}: tenant {} has no require_scopes to check against",
            tenant.at, tenant.name
        )));
    };
    let required = ScopeSet::parse(required);
    let token = obtain(ctx, tenant, false).await?;
    let granted = ScopeSet::parse(token.scope().unwrap_or_default());
    let missing = granted.missing(&required);
    let action = |scope: &str| match tenant.grant {
        GrantKind::ClientCredentials => format!(
            "grant {scope} to client {} at the authorization server",
            tenant.client_id
        ),
        GrantKind::RefreshToken => format!(
            "re-authorize with `tokenward authorize`, consenting to {scope} (the user or an admin)"
        ),
    };
    let rows: Vec<Vec<String>> = required
        .iter()
        .map(|scope| {
            let ok = !missing.contains(scope);
            vec![
                scope.to_owned(),
                paint(
                    if ok { "granted" } else { "MISSING" },
                    if ok { Level::Good } else { Level::Bad },
                    ctx.terminal,
                ),
                if ok { String::new() } else { action(scope) },
            ]
        })
        .collect();
    let mut human = format!("tenant {} ({})\n", tenant.name, tenant.grant.as_str());
    human.push_str(&grid(&["required", "state", "action"], &rows));
    human.push_str(&format!(
        "granted: {}\n",
        token.scope().filter(|s| !s.is_empty()).unwrap_or("(none)")
    ));
    let json = json!({
        "tenant": tenant.name,
        "required": required.iter().collect::<Vec<_>>(),
        "granted": granted.iter().collect::<Vec<_>>(),
        "missing": missing.iter().map(|s| json!({"scope": s, "action": action(s)})).collect::<Vec<_>>(),
    });
    if missing.is_empty() {
        Ok(Report::ok(human, json))
    } else {
        Ok(Report::failed(human, json))
    }
}

async fn rotate_secret(ctx: &Context<'_>, new: &SecretSource) -> Result<Report, Failure> {
    let tenant = &ctx.tenant().await?;
    let new_secret = new.read("the new client secret")?;
    if let Ok(Some(current)) = tenant.client_secret()
        && current.expose_secret() == new_secret.expose_secret()
    {
        return Err(Failure::config(
            "the new secret is the one configured now: nothing to rotate",
        ));
    }
    let mut rows: Vec<(&str, String)> = vec![("tenant", tenant.name.clone())];
    let mut steps = Vec::new();
    let stop = |rows: &[(&str, String)], steps: Vec<Value>, why: String| {
        let mut human = pairs(rows);
        human.push_str(&format!("stopped: {why}\n"));
        Report::failed(
            human,
            json!({"tenant": tenant.name, "steps": steps, "stopped": why}),
        )
    };

    // 1. The new secret works on its own.
    let _spinner = Spinner::start("verifying the new secret", ctx.terminal);
    if let Err(error) = secret_works(tenant, Some(&new_secret)).await {
        rows.push((
            "1 verify new",
            format!("FAIL {}", tokenward::error::chain(&error)),
        ));
        steps.push(json!({"step": "verify_new", "ok": false, "error": tokenward::error::chain(&error).to_string()}));
        let why = if matches!(error.cause(), tokenward::Error::InvalidClient(_)) {
            "the new secret is refused: nothing was changed. Add it to the client at the authorization server first"
        } else {
            "the new secret could not be checked: nothing was changed. Try again when the token endpoint answers"
        };
        return Ok(stop(&rows, steps, why.into()));
    }
    rows.push((
        "1 verify new",
        "PASS a token with the new secret alone".into(),
    ));
    steps.push(json!({"step": "verify_new", "ok": true}));

    // 2. Switch the configured source to it.
    let file = match &tenant.secret {
        Some(SecretSource::File(path)) => path.clone(),
        Some(SecretSource::Env(name)) => {
            rows.push((
                "2 switch",
                format!("TODO set {name} to the new secret where your processes get their environment, restart or reload them, then run `tokenward verify`"),
            ));
            steps.push(json!({"step": "switch", "ok": false, "action": format!("set {name}")}));
            return Ok(stop(
                &rows,
                steps,
                format!(
                    "an environment variable ({name}) cannot be switched from here; the old secret stays valid until you remove it"
                ),
            ));
        }
        None => {
            return Err(Failure::config(format!(
                "{}: tenant {} has no client secret",
                tenant.at, tenant.name
            )));
        }
    };
    let previous = file.with_file_name(format!(
        "{}.previous",
        file.file_name().unwrap_or_default().to_string_lossy()
    ));
    if previous.exists() {
        return Ok(stop(
            &rows,
            steps,
            format!(
                "{} exists from an earlier rotation: remove it once that old secret is retired, then run this again",
                previous.display()
            ),
        ));
    }
    if let Err(e) = switch_file(&file, &previous, &new_secret) {
        rows.push(("2 switch", format!("FAIL {e}")));
        steps.push(json!({"step": "switch", "ok": false, "error": e.to_string()}));
        return Ok(stop(
            &rows,
            steps,
            format!("{} was left as it was", file.display()),
        ));
    }
    rows.push((
        "2 switch",
        format!(
            "PASS {} holds the new secret (the old one is in {})",
            file.display(),
            previous.display()
        ),
    ));
    steps.push(json!({"step": "switch", "ok": true}));

    // 3. Verify again, through the configured source.
    let verified = match tenant.client_secret() {
        Ok(reread) => secret_works(tenant, reread.as_ref()).await,
        Err(e) => Err(tokenward::Error::Config(e.message.into())),
    };
    if let Err(error) = verified {
        // Undo: put the old secret back.
        let undone = std::fs::rename(&previous, &file).is_ok();
        rows.push((
            "3 verify",
            format!("FAIL {}", tokenward::error::chain(&error)),
        ));
        steps.push(json!({"step": "verify_configured", "ok": false, "error": tokenward::error::chain(&error).to_string(), "undone": undone}));
        return Ok(stop(
            &rows,
            steps,
            if undone {
                format!("{} holds the old secret again", file.display())
            } else {
                format!("restore {} from {}", file.display(), previous.display())
            },
        ));
    }
    rows.push((
        "3 verify",
        "PASS a token through the configured secret file".into(),
    ));
    steps.push(json!({"step": "verify_configured", "ok": true}));

    // 4. What retires the old secret.
    let next = format!(
        "reload every process using {} (SIGHUP with spawn_reload_on_sighup, or a restart), then delete the old secret of client {} at the authorization server (OAuth has no standard API for it) and remove {}",
        file.display(),
        tenant.client_id,
        previous.display()
    );
    rows.push(("4 old secret", format!("TODO {next}")));
    steps.push(json!({"step": "revoke_old", "ok": true, "action": next}));
    Ok(Report::ok(
        pairs(&rows),
        json!({"tenant": tenant.name, "steps": steps}),
    ))
}

/// Whether `secret` alone obtains a token: a client credentials token, or a refresh of the
/// stored grant (its rotation persisted, as every refresh).
async fn secret_works(
    tenant: &Tenant,
    secret: Option<&SecretString>,
) -> Result<(), tokenward::Error> {
    let failed = |f: Failure| tokenward::Error::Config(f.message.into());
    match tenant.grant {
        GrantKind::ClientCredentials => client_credentials(tenant, secret)
            .map_err(failed)?
            .verify(None)
            .await
            .map(drop),
        GrantKind::RefreshToken => refresh_grant(tenant, secret, false)
            .map_err(failed)?
            .fetch()
            .await
            .map(drop),
    }
}

/// Replaces the secret file's contents with `new`, keeping the old file as `previous`: a
/// temporary file beside it (created new, the original's permissions), renamed over it. On
/// any error the original is untouched and nothing is left behind.
fn switch_file(file: &Path, previous: &Path, new: &SecretString) -> std::io::Result<()> {
    use std::io::Write as _;
    let meta = std::fs::symlink_metadata(file)?;
    if meta.file_type().is_symlink() {
        return Err(std::io::Error::other(format!(
            "{} is a symbolic link: configure the file it points to",
            file.display()
        )));
    }
    let tmp = file.with_file_name(format!(
        ".{}.{:016x}.new",
        file.file_name().unwrap_or_default().to_string_lossy(),
        rand::random::<u64>()
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = (|| {
        let mut f = options.open(&tmp)?;
        f.write_all(new.expose_secret().as_bytes())?;
        f.write_all(b"\n")?;
        // Whoever could read the old file reads the new one.
        f.set_permissions(meta.permissions())?;
        f.sync_all()?;
        std::fs::copy(file, previous)?;
        std::fs::rename(&tmp, file)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Removes the access token a grant file shares (`<store>.access`), if any.
pub(crate) fn forget_shared_token(store: &Path) {
    let access = store.with_file_name(format!(
        "{}.access",
        store.file_name().unwrap_or_default().to_string_lossy()
    ));
    let _ = std::fs::remove_file(access);
}

async fn decay(ctx: &Context<'_>) -> Result<Report, Failure> {
    // The grant file alone: no endpoint, so no discovery (it works with the issuer down).
    let tenant = ctx.configured()?;
    if tenant.grant != GrantKind::RefreshToken {
        return Err(Failure::config(format!(
            "{}: tenant {} uses client credentials: there is no refresh token to decay",
            tenant.at, tenant.name
        )));
    }
    let store = FileStore::new(store_of(tenant)?);
    let Some(grant) = store.load().await.map_err(tokenward::Error::from)? else {
        return Err(Failure::failed(
            "no_refresh_token",
            format!(
                "{} holds no refresh token: run `tokenward authorize`",
                store.path().display()
            ),
        ));
    };
    let last = grant.last_used.or(grant.stored_at);
    let status = tenant.decay.status(last, SystemTime::now());
    let days = |d: Duration| d.as_secs() / 86_400;
    let policy = &tenant.decay;
    let (label, level) = decay_label(status.state);
    let rows = vec![
        ("tenant", tenant.name.clone()),
        (
            "last used",
            last.map_or("unknown".into(), |t| {
                format!("{} ({} days ago)", time(t), days(status.idle))
            }),
        ),
        ("state", paint(label, level, ctx.terminal)),
        (
            "thresholds",
            format!(
                "warn at {} days, page at {}, refused at {}, the server's limit {}",
                days(policy.warn_after),
                days(policy.page_after),
                days(policy.hard_fail_after),
                days(policy.lifetime)
            ),
        ),
        ("left", format!("{} days", days(status.remaining))),
        ("action", status.action().to_owned()),
    ];
    let json = json!({
        "tenant": tenant.name,
        "state": label,
        "idle_days": days(status.idle),
        "remaining_days": days(status.remaining),
        "last_used": last.map(unix),
        "warn_days": days(policy.warn_after),
        "page_days": days(policy.page_after),
        "hard_fail_days": days(policy.hard_fail_after),
        "action": status.action(),
    });
    if matches!(status.state, DecayState::Page | DecayState::HardFail) {
        Ok(Report::failed(pairs(&rows), json))
    } else {
        Ok(Report::ok(pairs(&rows), json))
    }
}

fn decay_label(state: DecayState) -> (&'static str, Level) {
    match state {
        DecayState::Healthy => ("healthy", Level::Good),
        DecayState::Warn => ("warn", Level::Warn),
        DecayState::Page => ("page", Level::Bad),
        DecayState::HardFail => ("hard-fail", Level::Bad),
        _ => ("unknown", Level::Warn),
    }
}

async fn status(ctx: &Context<'_>) -> Result<Report, Failure> {
    let mut rows = Vec::new();
    let mut items = Vec::new();
    let mut broken = false;
    let tenants: Vec<&Tenant> = match &ctx.tenant {
        Some(_) => vec![ctx.configured()?],
        None => ctx.config.tenants.iter().collect(),
    };
    for tenant in tenants {
        let mut line = match tenant.grant {
            GrantKind::ClientCredentials => StatusLine {
                token: "not kept (obtained per process)".into(),
                ..StatusLine::default()
            },
            GrantKind::RefreshToken => refresh_status(tenant).await,
        };
        if let Some(url) = &tenant.health_url {
            let _spinner = Spinner::start("asking the service", ctx.terminal);
            line.merge(service_health(url, tenant.health_tenant.as_deref()).await);
        }
        broken |= line.broken;
        items.push(json!({
            "tenant": tenant.name,
            "grant": tenant.grant.as_str(),
            "token": line.token,
            "expires_in": line.expires_in.map(|d| d.as_secs()),
            "last_refresh": line.last_refresh.map(unix),
            "decay": line.decay.map(|(label, _)| label),
            "last_error": line.error,
        }));
        let now = SystemTime::now();
        rows.push(vec![
            tenant.name.clone(),
            tenant.grant.as_str().to_owned(),
            line.token.clone(),
            line.expires_in.map_or("-".into(), span),
            line.last_refresh.map_or("-".into(), |t| {
                format!("{} ago", span(now.duration_since(t).unwrap_or_default()))
            }),
            line.decay.map_or("-".into(), |(label, level)| {
                paint(label, level, ctx.terminal)
            }),
            match &line.error {
                Some(e) => paint(e, Level::Bad, ctx.terminal),
                None => "-".into(),
            },
        ]);
    }
    let human = grid(
        &[
            "tenant",
            "grant",
            "token",
            "expires in",
            "last refresh",
            "decay",
            "last error",
        ],
        &rows,
    );
    let json = json!({ "tenants": items });
    // A tenant that cannot refresh (no grant, an unreadable file, a decaying token) fails
    // the run, so a cron job or a probe notices.
    Ok(if broken {
        Report::failed(human, json)
    } else {
        Report::ok(human, json)
    })
}

/// One tenant's line of `status`.
#[derive(Default)]
struct StatusLine {
    token: String,
    expires_in: Option<Duration>,
    last_refresh: Option<SystemTime>,
    decay: Option<(&'static str, Level)>,
    error: Option<String>,
    broken: bool,
}

impl StatusLine {
    /// What the running service said (or why it could not be asked) replaces what the files
    /// say of the token, its last refresh and the last error; the grant file's decay stays,
    /// the service's fills in without one. Whether the tenant can refresh is then the
    /// service's word (a grant file this host cannot read does not fail the run), unless
    /// the grant file's refresh token is decaying.
    fn merge(&mut self, service: Result<ServiceView, String>) {
        match service {
            Ok(view) => {
                self.token = format!("{} (service)", view.token);
                self.expires_in = view.expires_in;
                if view.last_refresh.is_some() {
                    self.last_refresh = view.last_refresh;
                }
                if self.decay.is_none() {
                    self.decay = view.decay.map(decay_label);
                }
                if view.error.is_some() {
                    self.error = view.error;
                }
                let decaying = self
                    .decay
                    .is_some_and(|(_, level)| matches!(level, Level::Bad));
                self.broken = !view.usable || decaying;
            }
            Err(error) => {
                self.error = Some(format!("service health: {error}"));
                self.broken = true;
            }
        }
    }
}

/// A tenant's token as its running service reports it.
struct ServiceView {
    usable: bool,
    token: String,
    expires_in: Option<Duration>,
    last_refresh: Option<SystemTime>,
    decay: Option<DecayState>,
    error: Option<String>,
}

/// Asks a service's token health endpoint (`tokenward_tower::health::TokenHealth`: 200 or
/// 503 with the status JSON) what it sees. For a service with many tenants, `tenant` is the
/// key it is asked about (`?tenant=`; a key it does not have is an error).
async fn service_health(url: &str, tenant: Option<&str>) -> Result<ServiceView, String> {
    const LIMIT: usize = 1 << 20;
    let mut url = reqwest::Url::parse(url).map_err(|_| "health_url is not a URL".to_owned())?;
    if let Some(key) = tenant {
        url.query_pairs_mut().append_pair("tenant", key);
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.without_url().to_string())?;
    let response = client
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    let status = response.status();
    if status == reqwest::StatusCode::NOT_FOUND && tenant.is_some() {
        return Err(format!(
            "the service has no tenant {:?} (health_tenant)",
            tenant.unwrap_or_default()
        ));
    }
    if status != reqwest::StatusCode::OK && status != reqwest::StatusCode::SERVICE_UNAVAILABLE {
        return Err(format!("answered {status}, not a token health report"));
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| e.without_url().to_string())?;
    if body.len() > LIMIT {
        return Err("the report is larger than 1 MiB".into());
    }
    let cache: Value =
        serde_json::from_slice(&body).map_err(|_| "the report is not JSON".to_owned())?;
    if cache.get("attention").is_some() {
        return Err(
            "the service reports many tenants: set health_tenant to this tenant's key".into(),
        );
    }
    let Some(usable) = cache["usable"].as_bool() else {
        return Err("the report is not a token health report".into());
    };
    let secs = |v: &Value| v.as_u64().map(Duration::from_secs);
    let error = cache["last_error"].as_object().map(|e| {
        let kind = e.get("kind").and_then(Value::as_str).unwrap_or("error");
        let message = e.get("message").and_then(Value::as_str).unwrap_or("");
        format!("{kind}: {message}")
    });
    let decay = match cache["decay"]["state"].as_str() {
        Some("healthy") => Some(DecayState::Healthy),
        Some("warn") => Some(DecayState::Warn),
        Some("page") => Some(DecayState::Page),
        Some("hard_fail") => Some(DecayState::HardFail),
        _ => None,
    };
    Ok(ServiceView {
        usable,
        token: cache["phase"].as_str().unwrap_or("unknown").to_owned(),
        expires_in: secs(&cache["expires_in_secs"]),
        last_refresh: secs(&cache["last_refresh"]).map(|d| SystemTime::UNIX_EPOCH + d),
        decay,
        error,
    })
}

async fn refresh_status(tenant: &Tenant) -> StatusLine {
    let failed = |error: String| StatusLine {
        token: "-".into(),
        error: Some(error),
        broken: true,
        ..StatusLine::default()
    };
    let Some(path) = &tenant.store else {
        return failed("no grant file".into());
    };
    let store = FileStore::new(path).share_access_token(true);
    let grant = match store.load().await {
        Ok(Some(grant)) => grant,
        Ok(None) => return failed("no refresh token: run authorize".into()),
        Err(e) => return failed(e.to_string()),
    };
    let now = SystemTime::now();
    let mut line = StatusLine {
        last_refresh: grant.last_used,
        ..StatusLine::default()
    };
    match store.load_shared_token().await {
        Ok(Some(shared)) => match shared.expires_at.duration_since(now) {
            Ok(left) => {
                line.token = "fresh".into();
                line.expires_in = Some(left);
            }
            Err(_) => line.token = "expired".into(),
        },
        Ok(None) => line.token = "none shared".into(),
        Err(e) => {
            line.token = "unreadable".into();
            line.error = Some(e.to_string());
        }
    }
    let status = tenant
        .decay
        .status(grant.last_used.or(grant.stored_at), now);
    line.decay = Some(decay_label(status.state));
    line.broken = matches!(status.state, DecayState::Page | DecayState::HardFail);
    line
}

/// A token from stdin (one line), never from the command line.
fn token_from_stdin() -> Result<SecretString, Failure> {
    let mut text = String::new();
    std::io::stdin()
        .take(64 * 1024)
        .read_to_string(&mut text)
        .map_err(|e| Failure::config(format!("cannot read the token from stdin: {e}")))?;
    let token = text.lines().next().unwrap_or_default().trim().to_owned();
    if token.is_empty() {
        return Err(Failure::config("stdin holds no token"));
    }
    Ok(SecretString::from(token))
}

async fn introspect(ctx: &Context<'_>, stdin: bool) -> Result<Report, Failure> {
    let tenant = &ctx.tenant().await?;
    let client = introspection(tenant, tenant.client_secret()?.as_ref())?;
    let (token, hint) = if stdin {
        (token_from_stdin()?, None)
    } else {
        let token = obtain(ctx, tenant, false).await?;
        (
            token.access_token().clone(),
            Some(TokenTypeHint::AccessToken),
        )
    };
    let info = client
        .introspect_with_hint(token.expose_secret(), hint)
        .await?;
    let mut rows = vec![
        ("tenant", tenant.name.clone()),
        ("active", info.active.to_string()),
    ];
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    if info.active {
        rows.push(("scope", opt(&info.scope)));
        rows.push(("client_id", opt(&info.client_id)));
        rows.push(("sub", opt(&info.sub)));
        rows.push(("expires", info.expires_at().map_or("-".into(), time)));
    }
    let json = json!({
        "tenant": tenant.name,
        "active": info.active,
        "scope": info.scope,
        "client_id": info.client_id,
        "sub": info.sub,
        "exp": info.exp,
    });
    Ok(Report::ok(pairs(&rows), json))
}

async fn revoke(ctx: &Context<'_>, refresh_token: bool, stdin: bool) -> Result<Report, Failure> {
    let tenant = &ctx.tenant().await?;
    let client = revocation(tenant, tenant.client_secret()?.as_ref())?;
    if refresh_token {
        let store = FileStore::new(store_of(tenant)?);
        let Some(grant) = store.load().await.map_err(tokenward::Error::from)? else {
            return Err(Failure::failed(
                "no_refresh_token",
                format!("{} holds no refresh token", store.path().display()),
            ));
        };
        client
            .revoke(
                grant.refresh_token.expose_secret(),
                Some(TokenTypeHint::RefreshToken),
            )
            .await?;
        // The access token the grant file shares came from the grant just ended.
        forget_shared_token(store.path());
        return Ok(Report::ok(
            pairs(&[
                ("tenant", tenant.name.clone()),
                (
                    "revoked",
                    format!(
                        "the refresh token in {} (the grant has ended: run `tokenward authorize` to start a new one)",
                        store.path().display()
                    ),
                ),
            ]),
            json!({"tenant": tenant.name, "revoked": "refresh_token"}),
        ));
    }
    if !stdin {
        return Err(Failure::config(
            "say what to revoke: --refresh-token (the stored one) or --stdin (a token read from stdin)",
        ));
    }
    let token = token_from_stdin()?;
    client.revoke(token.expose_secret(), None).await?;
    Ok(Report::ok(
        pairs(&[
            ("tenant", tenant.name.clone()),
            ("revoked", "the token read from stdin".into()),
        ]),
        json!({"tenant": tenant.name, "revoked": "token"}),
    ))
}
