//! No secret (client secret, access token, refresh token) ever appears in `tracing` output
//! at TRACE level, in `Debug` output, or in error messages — across successes, rotations and
//! every kind of failure.

mod common;

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::pass;
use secrecy::ExposeSecret;
use tokenward::grant::Lifetimes;
use tokenward::{
    AuthorizationCode, ClientAuth, ClientCredentials, Introspection, RefreshTokenGrant, Revocation,
    TokenCache,
};
use tokenward_testkit::{FakeServer, Fault};
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
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test(start_paused = true)]
async fn no_secret_in_logs_debug_or_errors() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

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
    let flow = AuthorizationCode::builder(
        server.authorize_url(),
        server.token_url(),
        "web",
        "https://app.example.com/cb",
    )
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
