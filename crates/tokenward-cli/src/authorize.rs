//! `tokenward authorize`: the authorization code flow with PKCE for a person at a browser,
//! with a loopback redirect URI (RFC 8252 §7.3): `http://127.0.0.1:<port>/callback`.

use std::time::Duration;

use secrecy::ExposeSecret as _;
use serde_json::json;
use tokenward::AuthorizationCode;
use tokenward::store::FileStore;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use crate::commands::Context;
use crate::config::GrantKind;
use crate::output::{Failure, Report, Spinner, pairs, span, time};

/// The loopback address and path to listen on, from a configured redirect URI, or an
/// ephemeral port.
fn listen_on(redirect_uri: Option<&str>) -> Result<(u16, String), Failure> {
    let Some(uri) = redirect_uri else {
        return Ok((0, "/callback".into()));
    };
    let bad = || {
        Failure::config(format!(
            "redirect_uri {uri:?} is not a loopback URI: http://127.0.0.1:<port>/<path> (RFC 8252)"
        ))
    };
    let rest = uri.strip_prefix("http://127.0.0.1").ok_or_else(bad)?;
    if rest.contains(['?', '#']) {
        return Err(bad());
    }
    let (port, path) = match rest.split_once('/') {
        Some((port, path)) => (port, format!("/{path}")),
        None => (rest, "/".to_owned()),
    };
    let port = match port.strip_prefix(':') {
        Some(port) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            port.parse().map_err(|_| bad())?
        }
        Some(_) => return Err(bad()),
        None if port.is_empty() => 80,
        None => return Err(bad()),
    };
    Ok((port, path))
}

pub(crate) async fn authorize(
    ctx: &Context<'_>,
    open: bool,
    timeout: Duration,
) -> Result<Report, Failure> {
    let tenant = &ctx.tenant().await?;
    if tenant.grant != GrantKind::RefreshToken {
        return Err(Failure::config(format!(
            "{}: authorize obtains a refresh token; tenant {} uses client credentials",
            tenant.at, tenant.name
        )));
    }
    let Some(authorization_url) = &tenant.authorization_url else {
        return Err(Failure::config(format!(
            "{}: tenant {} has no authorization_url",
            tenant.at, tenant.name
        )));
    };
    let Some(store) = &tenant.store else {
        return Err(Failure::config(format!(
            "{}: tenant {} has no store",
            tenant.at, tenant.name
        )));
    };
    let (port, path) = listen_on(tenant.redirect_uri.as_deref())?;
    let port_fixed = port != 0;
    // The grant file's folder must take the refresh token: checked before anyone consents.
    let folder = match store.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => std::path::PathBuf::from("."),
    };
    if !folder.is_dir() {
        return Err(Failure::config(format!(
            "{}: tenant {}: the grant file's folder {} does not exist",
            tenant.at,
            tenant.name,
            folder.display()
        )));
    }
    crate::commands::check_owner(store)?;
    let listener = TcpListener::bind(("127.0.0.1", port)).await.map_err(|e| {
        Failure::failed("listen", format!("cannot listen on 127.0.0.1:{port}: {e}"))
    })?;
    let port = listener
        .local_addr()
        .map_err(|e| Failure::failed("listen", e.to_string()))?
        .port();
    // A configured redirect URI is sent as written; an ephemeral one names the port taken.
    let redirect_uri = match &tenant.redirect_uri {
        Some(uri) if port_fixed => uri.clone(),
        _ => format!("http://127.0.0.1:{port}{path}"),
    };

    let secret = tenant.client_secret()?;
    // From an issuer, the callback's `iss` is checked as its metadata says (RFC 9207).
    let builder = match &tenant.server {
        Some(server) => AuthorizationCode::from_issuer(server, &tenant.client_id),
        None => AuthorizationCode::builder(&tenant.client_id)
            .authorization_url(authorization_url)
            .token_url(tenant.token_url.as_deref().unwrap_or_default()),
    };
    let mut builder = builder
        .redirect_uri(&redirect_uri)
        .auth_method(tenant.auth()?);
    if let Some(secret) = &secret {
        builder = builder.client_secret(secret.expose_secret());
    }
    if let Some(scope) = &tenant.scope {
        builder = builder.scope(scope.clone());
    }
    for (name, value) in &tenant.params {
        builder = builder.param(name.clone(), value.clone());
    }
    let flow = builder.build()?;
    let extra: Vec<(&str, &str)> = tenant
        .authorize_params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let request = flow.authorize_with(&extra);

    ctx.notice(&format!(
        "Open this URL in a browser and authorize (waiting {} on {redirect_uri}):\n{}",
        span(timeout),
        request.url()
    ));
    if open && !open_browser(request.url()) {
        ctx.notice("(no browser could be started: open the URL yourself)");
    }
    let _spinner = Spinner::start("waiting for the browser", ctx.terminal);
    let state = request.state().to_owned();
    let waiting = callback(&listener, &path, &state);
    let (mut stream, query) = match tokio::time::timeout(timeout, waiting).await {
        Ok(Ok(found)) => found,
        Ok(Err(e)) => return Err(Failure::failed("listen", e.to_string())),
        Err(_) => {
            return Err(Failure::failed(
                "timeout",
                format!(
                    "nobody completed the authorization within {}: run `tokenward authorize` again and open the URL in a browser",
                    span(timeout)
                ),
            ));
        }
    };
    let result = flow.exchange(request, &query).await;
    let token = match result {
        Ok(token) => token,
        Err(error) => {
            reply(&mut stream, false).await;
            return Err(error.into());
        }
    };
    let file = FileStore::new(store);
    let stored = tokenward::store_refresh_token(&token, &file).await;
    reply(&mut stream, stored.is_ok()).await;
    stored?;
    // An access token shared from the previous grant (its scopes) is not this grant's.
    crate::commands::forget_shared_token(store);
    let expires = std::time::SystemTime::now()
        + token
            .expires_at()
            .saturating_duration_since(tokio::time::Instant::now());
    Ok(Report::ok(
        pairs(&[
            ("tenant", tenant.name.clone()),
            ("refresh token", format!("stored in {}", store.display())),
            (
                "scopes",
                token.scope().unwrap_or("(none reported)").to_owned(),
            ),
            ("access token", format!("expires {}", time(expires))),
        ]),
        json!({
            "tenant": tenant.name,
            "store": store.display().to_string(),
            "scope": token.scope(),
        }),
    ))
}

/// How long one connection to the listener may take to send its request.
const REQUEST_READ: Duration = Duration::from_secs(5);

/// Waits for the browser's redirect to `path` carrying this request's `state`. Anything else
/// (a favicon, a probe, a callback for another request, a connection that sends nothing or
/// breaks) is answered or dropped, and the wait goes on.
async fn callback(
    listener: &TcpListener,
    path: &str,
    state: &str,
) -> std::io::Result<(TcpStream, String)> {
    loop {
        let (mut stream, _) = listener.accept().await?;
        let Ok(Ok(head)) = tokio::time::timeout(REQUEST_READ, read_head(&mut stream)).await else {
            continue;
        };
        let target = head
            .lines()
            .next()
            .and_then(|line| line.strip_prefix("GET "))
            .and_then(|rest| rest.split(' ').next())
            .unwrap_or_default();
        let (target_path, query) = target.split_once('?').unwrap_or((target, ""));
        if target_path != path {
            let _ = stream
                .write_all(
                    b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await;
            continue;
        }
        let theirs = form_urlencoded::parse(query.as_bytes())
            .find(|(name, _)| name == "state")
            .map(|(_, value)| value.into_owned())
            .unwrap_or_default();
        if same(theirs.as_bytes(), state.as_bytes()) {
            return Ok((stream, query.to_owned()));
        }
        let body = "not the callback of this authorization request\n";
        let _ = stream
            .write_all(
                format!(
                    "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            )
            .await;
    }
}

/// The request line and headers (at most 16 KiB).
async fn read_head(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// Equal, in time independent of where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn reply(stream: &mut TcpStream, ok: bool) {
    let body = if ok {
        "<!doctype html><title>tokenward</title><p>Authorized. You can close this window.</p>\n"
    } else {
        "<!doctype html><title>tokenward</title><p>The authorization failed; see the terminal.</p>\n"
    };
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Starts the system's URL opener; whether it could be started.
fn open_browser(url: &str) -> bool {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    std::process::Command::new(opener)
        .arg(url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .is_ok()
}
