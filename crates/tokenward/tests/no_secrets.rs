//! No secret (client secret, access token, refresh token) ever appears in `tracing` output
//! at TRACE level, in `Debug` output, or in error messages — across successes, rotations and
//! every kind of failure; nor the credentials and query values of a configured URL, nor the
//! values of extra parameters; nor a secret that a server echoes back in its error body.

mod common;

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::pass;
use secrecy::ExposeSecret;
use tokenward::grant::Lifetimes;
use tokenward::timing::Backoff;
use tokenward::{
    AuthorizationCode, ClientAuth, ClientCredentials, Error, Introspection, RefreshTokenGrant,
    Revocation, TokenCache,
};
use tokenward_testkit::{Endpoint, FakeServer, Fault};
use tracing::subscriber::DefaultGuard;
use tracing_subscriber::fmt::MakeWriter;

const CLIENT_SECRET: &str = "cs-Very-Secret-7f3a9c";

/// A `MakeWriter` that appends everything to one shared buffer.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Capture {
    /// Captures every event of this thread, at TRACE level, until the guard is dropped.
    fn start() -> (Capture, DefaultGuard) {
        let capture = Capture::default();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(capture.clone())
            .with_ansi(false)
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
            .finish();
        (capture, tracing::subscriber::set_default(subscriber))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test(start_paused = true)]
async fn no_secret_in_logs_debug_or_errors() {
    let (capture, _guard) = Capture::start();

    let server = FakeServer::builder()
        .client("svc", CLIENT_SECRET)
        .token_lifetime(Duration::from_secs(100))
        .build();
    let mut secrets: Vec<String> = vec![CLIENT_SECRET.to_owned()];
    let mut shown: Vec<String> = Vec::new();

    // Client credentials, both authentication methods, through refreshes and faults.
    for auth in [ClientAuth::Basic, ClientAuth::Post] {
        let grant = ClientCredentials::builder(server.token_url(), "svc")
            .client_secret(CLIENT_SECRET)
            .auth_method(auth)
            .http_client(server.http_client())
            .build()
            .unwrap();
        shown.push(format!("{grant:?}"));
        let cache = TokenCache::builder(grant)
            .clock_skew(Duration::from_secs(5))
            .min_refresh_lead(Duration::ZERO)
            .build();
        let token = cache.token().await.unwrap();
        secrets.push(token.access_token().expose_secret().to_owned());
        shown.push(format!("{token:?} {:?} {cache:?}", token.header_value()));
        shown.push(format!("{:?}", cache.status()));

        for fault in [
            Fault::RateLimited {
                retry_after: Some("3".into()),
            },
            Fault::Status(503),
            Fault::ErrorBody200,
            Fault::GarbageBody,
            Fault::OversizedBody(100_000),
            Fault::ConnectionReset,
            Fault::InvalidClient,
        ] {
            server.push_faults(fault, 4);
            let err = cache.force_refresh().await.unwrap_err();
            shown.push(format!("{err} {err:?}"));
            shown.push(format!("{:?}", cache.status()));
            server.clear_faults();
            pass(Duration::from_secs(4)).await; // past any Retry-After window
        }
        let header = cache.header().await.unwrap();
        assert!(cache.invalidate(&header));
        // The invalid_client is held: a forced refresh asks again.
        let token = cache.force_refresh().await.unwrap();
        secrets.push(token.access_token().expose_secret().to_owned());
        shown.push(format!("{token:?}"));
    }

    // Refresh tokens, rotated on every use, and a reuse that revokes the grant.
    let seed = server.issue_refresh_token("svc", "jobs.read");
    secrets.push(seed.clone());
    let grant = Arc::new(
        RefreshTokenGrant::builder(server.token_url(), "svc", seed.clone())
            .client_secret(CLIENT_SECRET)
            .http_client(server.http_client())
            .lifetimes(Lifetimes::default())
            .build()
            .unwrap(),
    );
    let cache = TokenCache::new(Arc::clone(&grant));
    for _ in 0..3 {
        let token = cache.force_refresh().await.unwrap();
        secrets.push(token.access_token().expose_secret().to_owned());
        secrets.push(
            grant
                .current_refresh_token()
                .unwrap()
                .expose_secret()
                .to_owned(),
        );
        shown.push(format!("{token:?} {grant:?} {cache:?}"));
    }
    let replay = RefreshTokenGrant::builder(server.token_url(), "svc", seed)
        .client_secret(CLIENT_SECRET)
        .http_client(server.http_client())
        .build()
        .unwrap();
    let err = TokenCache::new(replay).header().await.unwrap_err();
    assert!(err.is_reauthorization_required());
    shown.push(format!("{err} {err:?}"));

    // Authorization code + PKCE: the verifier, the state, the code and the tokens; then
    // introspection and revocation of them.
    let server = FakeServer::builder()
        .client("web", CLIENT_SECRET)
        .redirect_uri("web", "https://app.example.com/cb")
        .build();
    let flow = AuthorizationCode::builder("web")
        .authorization_url(server.authorize_url())
        .token_url(server.token_url())
        .redirect_uri("https://app.example.com/cb")
        .client_secret(CLIENT_SECRET)
        .http_client(server.http_client())
        .build()
        .unwrap();
    let request = flow.authorize();
    secrets.push(request.code_verifier().expose_secret().to_owned());
    shown.push(format!("{flow:?} {request:?}"));
    let callback = server.approve(request.url()).unwrap();
    let code = callback
        .split('&')
        .find_map(|kv| kv.strip_prefix("code="))
        .unwrap()
        .to_owned();
    secrets.push(code);
    let token = flow.exchange(request, &callback).await.unwrap();
    secrets.push(token.access_token().expose_secret().to_owned());
    secrets.push(token.refresh_token().unwrap().expose_secret().to_owned());
    shown.push(format!("{token:?}"));
    let introspection = Introspection::builder(server.introspect_url(), "web")
        .client_secret(CLIENT_SECRET)
        .http_client(server.http_client())
        .build()
        .unwrap();
    let info = introspection
        .introspect(token.access_token().expose_secret())
        .await
        .unwrap();
    shown.push(format!("{info:?} {introspection:?}"));
    let revocation = Revocation::builder(server.revoke_url(), "web")
        .client_secret(CLIENT_SECRET)
        .http_client(server.http_client())
        .build()
        .unwrap();
    revocation
        .revoke(token.access_token().expose_secret(), None)
        .await
        .unwrap();
    shown.push(format!("{revocation:?}"));
    let wrong = Introspection::builder(server.introspect_url(), "web")
        .client_secret("wrong")
        .http_client(server.http_client())
        .build()
        .unwrap();
    let err = wrong
        .introspect(token.access_token().expose_secret())
        .await
        .unwrap_err();
    shown.push(format!("{err} {err:?}"));

    let logs = capture.text();
    assert!(
        logs.contains("token obtained") && logs.contains("token refresh failed"),
        "the capture saw the cache's events:\n{logs}"
    );
    assert!(
        logs.contains("TRACE") || logs.contains("DEBUG"),
        "captured below INFO"
    );
    let everything = format!("{logs}\n{}", shown.join("\n"));
    secrets.sort();
    secrets.dedup();
    assert!(
        secrets.len() >= 10,
        "collected the secrets: {}",
        secrets.len()
    );
    for secret in &secrets {
        assert!(secret.len() >= 8);
        assert!(
            !everything.contains(secret.as_str()),
            "a secret leaked into logs/Debug/errors"
        );
    }
}

// -------------------------------------------------------------------------------------------
// Configured URLs and extra parameters

const URL_USER: &str = "alice-Ux7w";
const URL_PASSWORD: &str = "p4ssw0rd-Vb2q";
const URL_KEY: &str = "k3y-Qr9tLm";
/// A signed JWT, sent as an extra parameter.
const ASSERTION: &str = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJzdmMiLCJzdWIiOiJzdmMifQ.c2lnLXNlY3JldA";

/// `https://auth.example.com{path}?api_key=k3y-…` (a user name or password in a URL is
/// refused at build: see `a_url_with_a_user_or_password_is_shown_nowhere_and_refused`).
fn url_with_credentials(path: &str) -> String {
    format!("https://auth.example.com{path}?api_key={URL_KEY}")
}

fn assert_hides_url_secrets(text: &str) {
    for secret in [URL_USER, URL_PASSWORD, URL_KEY, ASSERTION] {
        assert!(!text.contains(secret), "{secret} shown in:\n{text}");
    }
}

#[tokio::test]
async fn debug_hides_url_credentials_query_values_and_param_values() {
    let token_url = url_with_credentials("/token");
    let builder = ClientCredentials::builder(&token_url, "svc")
        .client_secret(CLIENT_SECRET)
        .scope("jobs.read")
        .param("assertion_hint", ASSERTION);
    let builder_debug = format!("{builder:?}");
    let grant = builder.build().unwrap();
    let grant_debug = format!("{grant:?}");
    let cache = TokenCache::new(grant);
    let refresh = RefreshTokenGrant::builder(&token_url, "svc", "rt-seed-Jk29xx")
        .client_secret(CLIENT_SECRET)
        .param("assertion_hint", ASSERTION)
        .build()
        .unwrap();
    let introspection = Introspection::builder(url_with_credentials("/introspect"), "svc")
        .client_secret(CLIENT_SECRET)
        .param("assertion_hint", ASSERTION)
        .build()
        .unwrap();
    let revocation = Revocation::builder(url_with_credentials("/revoke"), "svc")
        .client_secret(CLIENT_SECRET)
        .build()
        .unwrap();
    let flow = AuthorizationCode::builder("svc")
        .authorization_url(url_with_credentials("/authorize"))
        .token_url(&token_url)
        .redirect_uri(format!("https://app.example.com/cb?session={URL_KEY}"))
        .client_secret(CLIENT_SECRET)
        .param("assertion_hint", ASSERTION)
        .build()
        .unwrap();

    for shown in [
        builder_debug,
        grant_debug,
        format!("{cache:?}"),
        format!("{refresh:?}"),
        format!("{introspection:?}"),
        format!("{revocation:?}"),
        format!("{flow:?}"),
    ] {
        assert_hides_url_secrets(&shown);
        assert!(!shown.contains(CLIENT_SECRET), "{shown}");
        // What helps an operator stays: the host and path, the query and parameter names.
        assert!(shown.contains("https://auth.example.com/"), "{shown}");
        assert!(shown.contains("?api_key=[REDACTED]"), "{shown}");
    }
    let cache_debug = format!("{cache:?}");
    assert!(
        cache_debug.contains("auth.example.com/token?api_key=[REDACTED]"),
        "{cache_debug}"
    );
    assert!(
        cache_debug.contains("assertion_hint=[REDACTED]"),
        "{cache_debug}"
    );
    assert!(
        cache_debug.contains(r#"scope: Some("jobs.read")"#),
        "{cache_debug}"
    );
    let flow_debug = format!("{flow:?}");
    assert!(
        flow_debug.contains("https://app.example.com/cb?session=[REDACTED]"),
        "{flow_debug}"
    );
}

#[tokio::test]
async fn a_url_with_a_user_or_password_is_shown_nowhere_and_refused() {
    let url = format!("https://{URL_USER}:{URL_PASSWORD}@auth.example.com/token?api_key={URL_KEY}");
    // A builder holds any string until `build`: its Debug hides what the URL carries.
    let builder = ClientCredentials::builder(&url, "svc").client_secret(CLIENT_SECRET);
    assert_hides_url_secrets(&format!("{builder:?}"));
    let error = builder.build().unwrap_err();
    assert!(matches!(error, Error::Config(_)), "{error:?}");
    assert_hides_url_secrets(&format!("{error} {error:?}"));

    // A configuration: its Debug hides them; its build refuses the URL, unquoted.
    let config: tokenward::config::ClientConfig = serde_json::from_value(serde_json::json!({
        "token_url": url,
        "client_id": "svc",
        "client_secret_env": "SVC_SECRET",
    }))
    .unwrap();
    assert_hides_url_secrets(&format!("{config:?}"));
    for error in [
        config.validate().unwrap_err(),
        config.build().await.unwrap_err(),
    ] {
        let message = format!("{error} {error:?}");
        assert!(message.contains("token_url"), "{message}");
        assert_hides_url_secrets(&message);
    }
}

#[test]
fn config_errors_never_quote_url_credentials() {
    let cases = [
        // Not a URL at all (a space in the host): nothing of it is quoted.
        format!("https://{URL_USER}:{URL_PASSWORD}@auth example.com/token?api_key={URL_KEY}"),
        // No scheme, no host.
        format!("{URL_USER}:{URL_PASSWORD}@/token?api_key={URL_KEY}"),
        // A secret pasted where the URL belongs.
        URL_KEY.to_owned(),
        // Not http(s): quoted redacted.
        format!("ftp://auth.example.com/token?api_key={URL_KEY}"),
        // A user name and password in the URL: refused, not quoted.
        format!("https://{URL_USER}:{URL_PASSWORD}@auth.example.com/token?api_key={URL_KEY}"),
    ];
    for url in &cases {
        let err = ClientCredentials::builder(url, "svc")
            .client_secret(CLIENT_SECRET)
            .build()
            .unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err:?}");
        assert_hides_url_secrets(&format!("{err} {err:?}"));
    }
    let err = ClientCredentials::builder(&cases[3], "svc")
        .client_secret(CLIENT_SECRET)
        .build()
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("ftp://auth.example.com/token?api_key=[REDACTED]"),
        "{err}"
    );
    let err = ClientCredentials::builder(&cases[4], "svc")
        .client_secret(CLIENT_SECRET)
        .build()
        .unwrap_err();
    assert!(
        err.to_string().contains("holds a user name or password"),
        "{err}"
    );

    // The authorization URL's fragment and the redirect URI are quoted redacted too.
    let with_fragment = format!("{}#{URL_KEY}", url_with_credentials("/authorize"));
    let not_absolute = format!("/cb?session={URL_KEY}");
    for (authorize_url, redirect_uri, expect) in [
        (
            with_fragment.as_str(),
            "https://app.example.com/cb",
            "has a fragment",
        ),
        (
            "https://auth.example.com/authorize",
            not_absolute.as_str(),
            "is not an absolute URI",
        ),
    ] {
        let err = AuthorizationCode::builder("svc")
            .authorization_url(authorize_url)
            .token_url("https://auth.example.com/token")
            .redirect_uri(redirect_uri)
            .auth_method(ClientAuth::None)
            .build()
            .unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(text.contains(expect), "{text}");
        assert!(text.contains("[REDACTED]"), "{text}");
        assert_hides_url_secrets(&text);
    }
}

// -------------------------------------------------------------------------------------------
// A server that echoes a secret (over loopback TCP, with the default reqwest client)

fn echo(status: u16, error: &str, param: &str) -> Fault {
    Fault::EchoParam {
        status,
        error: error.into(),
        param: param.into(),
    }
}

/// One attempt for a refusal, two (without delay) for a transient failure: the WARN line of
/// a retry is logged too.
fn quick_cache(source: impl tokenward::TokenSource) -> TokenCache {
    TokenCache::builder(source)
        .max_attempts(2)
        .backoff(Backoff::new(Duration::ZERO, Duration::ZERO))
        .build()
}

/// The server's text reaches the error redacted; the named accessors still return it raw.
fn check_echo(err: &Error, param: &str, secret: &str) {
    let oauth = err
        .endpoint_error()
        .and_then(|e| e.oauth.as_ref())
        .unwrap_or_else(|| panic!("{param}: no error body in {err:?}"));
    assert!(oauth.is_redacted(), "{param}: {oauth:?}");
    assert_eq!(
        oauth.unredacted_description(),
        Some(format!("Invalid {param}: {secret}").as_str()),
        "{param}: the raw text is kept"
    );
    assert!(
        oauth.unredacted_uri().is_some_and(|u| u.contains(secret)),
        "{param}"
    );
    assert_eq!(
        oauth.error_description.as_deref(),
        Some(format!("Invalid {param}: [REDACTED]").as_str())
    );
    assert_eq!(
        oauth.error_uri.as_deref(),
        Some("https://as.example/errors?value=[REDACTED]")
    );
    assert!(
        err.to_string().contains("[REDACTED]"),
        "{param}: the error still shows the server's text: {err}"
    );
}

#[tokio::test]
async fn secrets_a_server_echoes_never_reach_display_debug_or_logs() {
    let (capture, _guard) = Capture::start();
    let server = FakeServer::builder()
        .client("svc", CLIENT_SECRET)
        .redirect_uri("svc", "https://app.example.com/cb")
        .build();
    let running = server.listen().await.unwrap();
    let token_url = running.token_url();
    let mut secrets: Vec<String> = vec![CLIENT_SECRET.to_owned(), ASSERTION.to_owned()];
    let mut shown: Vec<String> = Vec::new();
    let mut record = |err: Error, cache: Option<&TokenCache>, param: &str, secret: &str| {
        check_echo(&err, param, secret);
        shown.push(format!("{err} {err:#} {err:?} {err:#?}"));
        if let Some(cache) = cache {
            shown.push(format!("{:?} {cache:?}", cache.status()));
        }
    };

    // A refresh token quoted in an invalid_grant, and in a 503's JSON body (retried once).
    let refresh_token = server.issue_refresh_token("svc", "jobs.read");
    secrets.push(refresh_token.clone());
    for (status, code, times) in [(400, "invalid_grant", 1), (503, "server_error", 2)] {
        let grant = RefreshTokenGrant::builder(&token_url, "svc", refresh_token.clone())
            .client_secret(CLIENT_SECRET)
            .build()
            .unwrap();
        let cache = quick_cache(grant);
        server.push_faults(echo(status, code, "refresh_token"), times);
        let err = cache.header().await.unwrap_err();
        assert_eq!(err.status().map(|s| s.as_u16()), Some(status), "{err:?}");
        assert_eq!(err.is_reauthorization_required(), status == 400);
        record(err, Some(&cache), "refresh_token", &refresh_token);
    }

    // The client secret quoted back, sent in the body and in the Basic header.
    for auth in [ClientAuth::Post, ClientAuth::Basic] {
        let grant = ClientCredentials::builder(&token_url, "svc")
            .client_secret(CLIENT_SECRET)
            .auth_method(auth)
            .build()
            .unwrap();
        let cache = quick_cache(grant);
        server.push_fault(echo(401, "invalid_client", "client_secret"));
        let err = cache.header().await.unwrap_err();
        assert!(matches!(err, Error::InvalidClient(_)), "{err:?}");
        record(err, Some(&cache), "client_secret", CLIENT_SECRET);
    }

    // An extra parameter (a client assertion) quoted in a 200 that carries an error.
    let grant = ClientCredentials::builder(&token_url, "svc")
        .client_secret(CLIENT_SECRET)
        .param("assertion_hint", ASSERTION)
        .build()
        .unwrap();
    let cache = quick_cache(grant);
    server.push_faults(echo(200, "server_error", "assertion_hint"), 2);
    let err = cache.header().await.unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(200), "{err:?}");
    record(err, Some(&cache), "assertion_hint", ASSERTION);

    // The code and the PKCE verifier quoted by the token endpoint; the state by the
    // authorization server's error callback.
    let flow = AuthorizationCode::builder("svc")
        .authorization_url(running.authorize_url())
        .token_url(&token_url)
        .redirect_uri("https://app.example.com/cb")
        .client_secret(CLIENT_SECRET)
        .build()
        .unwrap();
    for param in ["code", "code_verifier"] {
        let request = flow.authorize();
        let callback = server.approve(request.url()).unwrap();
        let code = callback
            .split('&')
            .find_map(|kv| kv.strip_prefix("code="))
            .unwrap()
            .to_owned();
        let verifier = request.code_verifier().expose_secret().to_owned();
        let secret = if param == "code" { &code } else { &verifier };
        secrets.extend([code.clone(), verifier.clone()]);
        server.push_fault(echo(400, "invalid_grant", param));
        let err = flow.exchange(request, &callback).await.unwrap_err();
        assert!(err.is_reauthorization_required(), "{err:?}");
        record(err, None, param, secret);
    }
    let request = flow.authorize();
    let state = request.state().to_owned();
    secrets.push(state.clone());
    let callback = format!(
        "error=access_denied&error_description=Invalid+state%3A+{state}&\
         error_uri=https%3A%2F%2Fas.example%2Ferrors%3Fvalue%3D{state}&state={state}"
    );
    let err = flow.exchange(request, &callback).await.unwrap_err();
    record(err, None, "state", &state);

    // The token sent to introspection (401) and to revocation (503).
    let access_token = server.issue_access_token("svc", "jobs.read");
    secrets.push(access_token.clone());
    let introspection = Introspection::builder(running.introspect_url(), "svc")
        .client_secret(CLIENT_SECRET)
        .build()
        .unwrap();
    server.push_fault_at(Endpoint::Introspect, echo(401, "invalid_client", "token"));
    let err = introspection.introspect(&access_token).await.unwrap_err();
    assert!(matches!(err, Error::InvalidClient(_)), "{err:?}");
    record(err, None, "token", &access_token);
    let revocation = Revocation::builder(running.revoke_url(), "svc")
        .client_secret(CLIENT_SECRET)
        .build()
        .unwrap();
    server.push_fault_at(
        Endpoint::Revoke,
        echo(503, "temporarily_unavailable", "token"),
    );
    let err = revocation.revoke(&access_token, None).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    record(err, None, "token", &access_token);

    running.shutdown().await;
    let logs = capture.text();
    assert!(
        logs.contains("token refresh failed") && logs.contains("retrying after backoff"),
        "the capture saw the cache's WARN lines:\n{logs}"
    );
    assert!(
        logs.contains("Invalid refresh_token: [REDACTED]"),
        "the server's text is logged, redacted:\n{logs}"
    );
    let everything = format!("{logs}\n{}", shown.join("\n"));
    for secret in &secrets {
        assert!(secret.len() >= 8, "a secret of the test is long: {secret}");
        assert!(
            !everything.contains(secret.as_str()),
            "a secret leaked into logs/Debug/errors"
        );
    }
}
