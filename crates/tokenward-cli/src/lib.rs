//! The tokenward operator CLI, as a library: [`run`] is the `tokenward` binary, callable
//! in-process (the interop tests drive it so).
//!
//! Every command reads `tokenward.toml` (or `--config`), one `[tenant.<name>]` (or
//! `[tenants.<name>]`) table per tenant: a `tokenward::config::ClientConfig`, as a service
//! reads it, and the CLI's own keys. It never takes a secret on the command line or from the
//! file: the file names the environment variable or the secret file. Human output is a table; `--json` prints one
//! JSON object per run. Exit codes: 0 success, 1 the check or the operation failed (a refused
//! secret, missing scopes, an unreachable endpoint, a decaying token), 2 the configuration
//! or the command line is wrong.

mod authorize;
mod commands;
mod config;
mod output;

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

/// `tokenward`: act on OAuth 2.0 credentials without writing code.
#[derive(Debug, Parser)]
#[command(name = "tokenward", version, about, max_term_width = 100)]
struct Cli {
    /// The configuration file.
    #[arg(long, global = true, default_value = "tokenward.toml")]
    config: PathBuf,
    /// The tenant (a `[tenant.<name>]` table); optional when only one is configured.
    #[arg(long, global = true)]
    tenant: Option<String>,
    /// One JSON object on stdout, for scripts.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

/// How `token` prints the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// What was obtained, the token itself only with `--reveal`.
    Text,
    /// `Authorization: Bearer …` (prints the token).
    Header,
    /// `export TOKENWARD_ACCESS_TOKEN='…'` (prints the token).
    Env,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Obtain a token with the tenant's grant (a rotated refresh token is persisted first).
    Token {
        /// Obtain a new one even if the grant file shares a usable one.
        #[arg(long)]
        force: bool,
        /// Print the access token too.
        #[arg(long)]
        reveal: bool,
        /// `header` and `env` print the token for scripts.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Health-check the client credentials: a token obtained with the current secret alone,
    /// then optionally introspected or sent to a URL that must answer 2xx.
    Verify {
        /// Introspect the token (the tenant's `introspection_url`): it must be active.
        #[arg(long)]
        introspect: bool,
        /// GET this URL with the token: it must answer 2xx.
        #[arg(long)]
        url: Option<String>,
    },
    /// Required (`require_scopes`) against granted scopes; exit 1 when some are missing.
    Scopes,
    /// Rotate the client secret without downtime: verify the new one, switch the configured
    /// secret source to it, verify again, then say what revokes the old one.
    RotateSecret {
        /// The environment variable holding the new secret.
        #[arg(long, conflicts_with = "new_secret_file")]
        new_secret_env: Option<String>,
        /// The file holding the new secret.
        #[arg(long)]
        new_secret_file: Option<PathBuf>,
    },
    /// How long the stored refresh token has been idle, and its decay state.
    Decay,
    /// One line per tenant: grant, token, last refresh, decay.
    Status,
    /// RFC 7662: introspect the tenant's current token, or one read from stdin.
    Introspect {
        /// Read the token from stdin instead.
        #[arg(long)]
        stdin: bool,
    },
    /// RFC 7009: revoke the stored refresh token, or a token read from stdin.
    Revoke {
        /// Revoke the refresh token in the tenant's grant file (the grant ends).
        #[arg(long, conflicts_with = "stdin")]
        refresh_token: bool,
        /// Read the token to revoke from stdin.
        #[arg(long)]
        stdin: bool,
    },
    /// The authorization code flow with PKCE for a person, on a loopback redirect URI; the
    /// refresh token goes to the tenant's grant file.
    Authorize {
        /// Open the URL in a browser.
        #[arg(long)]
        open: bool,
        /// How long to wait for the browser.
        #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
}

/// Runs the CLI with `args` (the program name first), writing to `out` and `err`, without
/// colour or spinner; returns the exit code.
pub async fn run(
    args: impl IntoIterator<Item = impl Into<OsString> + Clone>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    run_with(args, out, err, false).await
}

/// As [`run`], on the process's stdout and stderr: colour and a spinner when they are
/// terminals.
pub async fn run_terminal(args: impl IntoIterator<Item = impl Into<OsString> + Clone>) -> i32 {
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr();
    let code = run_with(args, &mut out, &mut err, output::colour_on_terminal()).await;
    let _ = out.flush();
    code
}

async fn run_with(
    args: impl IntoIterator<Item = impl Into<OsString> + Clone>,
    out: &mut dyn Write,
    err: &mut dyn Write,
    terminal: bool,
) -> i32 {
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => {
            let text = e.render().to_string();
            let code = e.exit_code();
            if e.use_stderr() && args.iter().any(|a| a.to_str() == Some("--json")) {
                let report = serde_json::json!({
                    "ok": false,
                    "error": { "kind": "usage", "message": e.kind().to_string() },
                });
                let _ = writeln!(out, "{report}");
                let _ = write!(err, "{text}");
            } else if e.use_stderr() {
                let _ = write!(err, "{text}");
            } else {
                let _ = write!(out, "{text}");
            }
            return code;
        }
    };
    let json = cli.json;
    let report = {
        let notices = std::cell::RefCell::new(&mut *err);
        match commands::dispatch(cli, terminal, &notices).await {
            Ok(report) => report,
            Err(failure) => failure.into_report(),
        }
    };
    report.print(json, out, err)
}

pub use output::{EXIT_CONFIG, EXIT_FAILED};
