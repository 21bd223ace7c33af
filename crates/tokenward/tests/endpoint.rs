//! The grants and the cache against the testkit's fake authorization server, in-process and
//! under paused Tokio time: client authentication, refresh-token rotation and reuse
//! detection, `expires_in` variants, every scripted token-endpoint fault, bad configuration.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::{pass, settle};
use http::StatusCode;
use http::header::WWW_AUTHENTICATE;
use secrecy::ExposeSecret;
use tokenward::cache::Phase;
use tokenward::{
    ClientAuth, ClientCredentials, Error, RefreshTokenGrant, TokenCache, TransportErrorKind,
};
use tokenward_testkit::{AuthMethod, ExpiresIn, FakeServer, Fault};
use tokio::time::Instant;

const CLIENT: &str = "svc";
const SECRET: &str = "cs-Secret-4b1e";

fn server() -> FakeServer {
    FakeServer::builder().client(CLIENT, SECRET).build()
}

fn client_credentials(server: &FakeServer) -> ClientCredentials {
    ClientCredentials::builder(server.token_url(), CLIENT)
        .client_secret(SECRET)
        .http_client(server.http_client())
        .build()
        .unwrap()
}

fn refresh_grant(server: &FakeServer, refresh_token: &str) -> Arc<RefreshTokenGrant> {
    Arc::new(
        RefreshTokenGrant::builder(server.token_url(), CLIENT, refresh_token)
            .client_secret(SECRET)
            .http_client(server.http_client())
            .build()
            .unwrap(),
    )
}

/// A client-credentials cache whose refresh has the given deadline.
fn cache_with_deadline(server: &FakeServer, deadline: Duration) -> TokenCache {
    TokenCache::builder(client_credentials(server))
        .refresh_deadline(deadline)
        .build()
}

fn header_text(token: &tokenward::Token) -> String {
    token.header_value().to_str().unwrap().to_owned()
}

/// Lets paused time run for `d` with every timer firing in order (the backoff sleeps of a
/// refresh included), then lets the woken tasks run.
async fn run_for(d: Duration) {
    tokio::time::sleep(d).await;
    settle().await;
}

// -------------------------------------------------------------------------------------------
// Client credentials and client authentication

#[tokio::test(start_paused = true)]
async fn client_secret_basic_sends_the_form_encoded_credentials_in_the_header() {
    // An id and a secret with characters that RFC 6749 §2.3.1 says to form-encode first.
    let (id, secret) = ("svc:eu west", "s3c+r/t:=%&");
    let server = FakeServer::builder().client(id, secret).build();
    let grant = ClientCredentials::builder(server.token_url(), id)
        .client_secret(secret)
        .scope("jobs.read jobs.write")
        .param("audience", "https://api.example.com")
        .param("resource", "urn:example:jobs")
        .http_client(server.http_client())
        .build()
        .unwrap();
    let cache = TokenCache::new(grant);

    let token = cache.token().await.unwrap();
    assert!(header_text(&token).starts_with("Bearer at_"));
    assert_eq!(token.scope(), Some("jobs.read jobs.write"));
    assert_eq!(server.counters().issued_for("client_credentials"), 1);

    let request = server.last_token_request().unwrap();
    assert_eq!(request.grant_type, "client_credentials");
    assert_eq!(request.auth_method, AuthMethod::Basic);
    assert_eq!(request.client_id, id);
    assert_eq!(request.param("scope"), Some("jobs.read jobs.write"));
    assert_eq!(request.param("audience"), Some("https://api.example.com"));
    assert_eq!(request.param("resource"), Some("urn:example:jobs"));
    // Basic: neither the secret nor a second copy of the client id goes in the body.
    assert_eq!(request.param("client_id"), None);
    assert!(!request.params.contains_key("client_secret"));
    assert!(request.params.values().all(|v| !v.contains(secret)));
}

#[tokio::test(start_paused = true)]
async fn client_secret_post_sends_the_credentials_in_the_body() {
    let server = server();
    let grant = ClientCredentials::builder(server.token_url(), CLIENT)
        .client_secret(SECRET)
        .auth_method(ClientAuth::Post)
        .scope("jobs.read")
        .param("audience", "https://api.example.com")
        .param("resource", "urn:example:jobs")
        .http_client(server.http_client())
        .build()
        .unwrap();
    let cache = TokenCache::new(grant);

    let token = cache.token().await.unwrap();
    assert_eq!(token.scope(), Some("jobs.read"));

    let request = server.last_token_request().unwrap();
    assert_eq!(request.grant_type, "client_credentials");
    // The server records Post only when `client_secret` was in the form body.
    assert_eq!(request.auth_method, AuthMethod::Post);
    assert_eq!(request.client_id, CLIENT);
    assert_eq!(request.param("client_id"), Some(CLIENT));
    assert_eq!(request.param("scope"), Some("jobs.read"));
    assert_eq!(request.param("audience"), Some("https://api.example.com"));
    assert_eq!(request.param("resource"), Some("urn:example:jobs"));
    assert!(!request.params.contains_key("client_secret"));
    assert!(request.params.values().all(|v| !v.contains(SECRET)));
}

#[tokio::test(start_paused = true)]
async fn wrong_secret_is_invalid_client_not_retried_and_keeps_the_response() {
    let server = server();
    let grant = ClientCredentials::builder(server.token_url(), CLIENT)
        .client_secret("not-the-secret")
        .http_client(server.http_client())
        .build()
        .unwrap();
    let cache = TokenCache::new(grant);

    let err = cache.token().await.unwrap_err();
    assert!(matches!(err, Error::InvalidClient(_)), "{err:?}");
    assert!(!err.is_retryable());
    assert_eq!(server.token_calls(), 1, "invalid_client is never retried");

    let msg = err.to_string();
    assert!(
        msg.contains("check the client id, the client secret"),
        "{msg}"
    );
    assert!(!msg.contains("not-the-secret"), "{msg}");
    assert_eq!(err.status(), Some(StatusCode::UNAUTHORIZED));
    let response = err.endpoint_error().unwrap();
    assert_eq!(response.status, StatusCode::UNAUTHORIZED);
    assert_eq!(response.error_code(), Some("invalid_client"));
    // The Basic challenge the server sent is kept, and marked sensitive.
    let challenge = response.headers.get(WWW_AUTHENTICATE).unwrap();
    assert_eq!(challenge, "Basic realm=\"testkit\"");
    assert!(challenge.is_sensitive());
    assert_eq!(
        response.headers.get("cache-control").unwrap(),
        "no-store",
        "the other headers are kept as sent"
    );

    // The failure is held: the next caller gets it at once, and no request is made.
    let again = cache.token().await.unwrap_err();
    assert!(
        matches!(again.cause(), Error::InvalidClient(_)),
        "{again:?}"
    );
    assert_eq!(again.status(), Some(StatusCode::UNAUTHORIZED));
    assert_eq!(server.token_calls(), 1);
}

// -------------------------------------------------------------------------------------------
// Refresh tokens

#[tokio::test(start_paused = true)]
async fn refresh_grant_uses_the_latest_rotated_refresh_token_every_time() {
    let server = server();
    let seed = server.issue_refresh_token(CLIENT, "jobs.read");
    let grant = refresh_grant(&server, &seed);
    let cache = TokenCache::new(Arc::clone(&grant));

    let mut previous = seed.clone();
    let mut headers = Vec::new();
    for round in 1..=4 {
        assert_eq!(
            grant.current_refresh_token().unwrap().expose_secret(),
            previous
        );
        let token = cache.force_refresh().await.unwrap();
        let request = server.last_token_request().unwrap();
        assert_eq!(request.grant_type, "refresh_token");
        assert_eq!(
            request.param("refresh_token"),
            Some(previous.as_str()),
            "round {round}: the refresh presented the latest refresh token"
        );
        let current = grant
            .current_refresh_token()
            .unwrap()
            .expose_secret()
            .to_owned();
        assert_ne!(
            current, previous,
            "round {round}: the refresh token rotated"
        );
        assert_eq!(
            token.refresh_token().unwrap().expose_secret(),
            current,
            "the grant adopted the rotated refresh token"
        );
        assert_eq!(token.scope(), Some("jobs.read"));
        headers.push(header_text(&token));
        previous = current;
    }
    headers.dedup();
    assert_eq!(headers.len(), 4, "every forced refresh gave a new token");
    assert_eq!(server.counters().issued_for("refresh_token"), 4);
    assert_eq!(server.counters().refresh_reuse_detected, 0);

    // Two forced refreshes at once share one flight: one rotation, no replay.
    let calls = server.token_calls();
    let (a, b) = tokio::join!(cache.force_refresh(), cache.force_refresh());
    assert!(tokenward::Token::ptr_eq(&a.unwrap(), &b.unwrap()));
    assert_eq!(server.token_calls(), calls + 1);
    assert_eq!(server.counters().refresh_reuse_detected, 0);
}

#[tokio::test(start_paused = true)]
async fn refresh_without_rotation_keeps_the_refresh_token_and_it_keeps_working() {
    let server = server();
    server.set_rotate_refresh_tokens(false);
    let seed = server.issue_refresh_token(CLIENT, "jobs.read");
    let grant = refresh_grant(&server, &seed);
    let cache = TokenCache::new(Arc::clone(&grant));

    let first = cache.force_refresh().await.unwrap();
    assert!(
        first.refresh_token().is_none(),
        "no refresh_token in the response"
    );
    assert_eq!(grant.current_refresh_token().unwrap().expose_secret(), seed);
    let second = cache.force_refresh().await.unwrap();
    assert_ne!(header_text(&first), header_text(&second));
    assert_eq!(grant.current_refresh_token().unwrap().expose_secret(), seed);
    assert_eq!(
        server.last_token_request().unwrap().param("refresh_token"),
        Some(seed.as_str())
    );
    assert_eq!(server.counters().issued_for("refresh_token"), 2);
}

#[tokio::test(start_paused = true)]
async fn replaying_a_rotated_refresh_token_revokes_the_whole_grant() {
    let server = server();
    let seed = server.issue_refresh_token(CLIENT, "jobs.read");
    let first = refresh_grant(&server, &seed);
    let second = refresh_grant(&server, &seed);
    let first_cache = TokenCache::new(Arc::clone(&first));
    let second_cache = TokenCache::new(Arc::clone(&second));

    // The first grant refreshes: `seed` is rotated out.
    first_cache.token().await.unwrap();
    assert_ne!(first.current_refresh_token().unwrap().expose_secret(), seed);

    // The second grant still holds `seed` and presents it: reuse.
    let err = second_cache.token().await.unwrap_err();
    assert!(err.is_reauthorization_required(), "{err:?}");
    assert_eq!(
        err.endpoint_error().unwrap().error_code(),
        Some("invalid_grant")
    );
    assert!(!err.is_retryable());
    assert_eq!(server.counters().refresh_reuse_detected, 1);
    assert_eq!(server.token_calls(), 2, "invalid_grant is not retried");

    // The server revoked the family: the first grant's rotated token is dead too.
    let err = first_cache.force_refresh().await.unwrap_err();
    assert!(err.is_reauthorization_required(), "{err:?}");
    assert_eq!(
        err.endpoint_error().unwrap().error_code(),
        Some("invalid_grant")
    );
    assert_eq!(server.token_calls(), 3);
    assert!(
        err.to_string()
            .contains("must authorize the application again"),
        "{err}"
    );
}

// -------------------------------------------------------------------------------------------
// Token responses

#[tokio::test(start_paused = true)]
async fn lifetime_follows_expires_in_as_number_string_or_omitted() {
    let server = server();
    let cache = TokenCache::new(client_credentials(&server));

    // Number (the default), the server's default lifetime of one hour.
    assert_eq!(
        cache.token().await.unwrap().lifetime(),
        Duration::from_secs(3600)
    );

    server.set_token_lifetime(Duration::from_secs(1234));
    let token = cache.force_refresh().await.unwrap();
    assert_eq!(token.lifetime(), Duration::from_secs(1234));
    assert_eq!(
        cache.token().await.unwrap().lifetime(),
        Duration::from_secs(1234)
    );

    server.set_expires_in_format(ExpiresIn::String);
    server.set_token_lifetime(Duration::from_secs(777));
    cache.force_refresh().await.unwrap();
    assert_eq!(
        cache.token().await.unwrap().lifetime(),
        Duration::from_secs(777)
    );

    // Omitted: the configured default (5 minutes), never "forever", whatever the server does.
    server.set_expires_in_format(ExpiresIn::Omitted);
    cache.force_refresh().await.unwrap();
    let token = cache.token().await.unwrap();
    assert_eq!(token.lifetime(), Duration::from_secs(300));
    assert_eq!(
        token.expires_at() - token.issued_at(),
        Duration::from_secs(300)
    );
    assert_eq!(server.token_calls(), 4);
}

#[tokio::test(start_paused = true)]
async fn lower_case_bearer_token_type_is_accepted_and_sent_as_bearer() {
    let server = server();
    server.set_token_type("bearer");
    let cache = TokenCache::new(client_credentials(&server));
    let token = cache.token().await.unwrap();
    assert_eq!(
        header_text(&token),
        format!("Bearer {}", token.access_token().expose_secret())
    );
    assert_eq!(cache.header().await.unwrap(), token.header_value());
}

// -------------------------------------------------------------------------------------------
// Faults, one at a time

#[tokio::test(start_paused = true)]
async fn rate_limited_with_delta_seconds_fails_fast_until_retry_after_passes() {
    let server = server();
    let cache = TokenCache::new(client_credentials(&server));
    server.push_fault(Fault::RateLimited {
        retry_after: Some("7".into()),
    });

    let err = cache.token().await.unwrap_err();
    assert!(matches!(err, Error::RateLimited { .. }), "{err:?}");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
    assert_eq!(err.status(), Some(StatusCode::TOO_MANY_REQUESTS));
    assert_eq!(
        server.token_calls(),
        1,
        "429 is not retried inside a refresh"
    );

    // Inside the window: no request, an immediate error with the time left.
    pass(Duration::from_secs(3)).await;
    let started = Instant::now();
    let err = cache.token().await.unwrap_err();
    assert_eq!(Instant::now(), started, "fails fast");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(4)));
    assert_eq!(err.status(), Some(StatusCode::TOO_MANY_REQUESTS));
    assert!(matches!(
        cache.force_refresh().await,
        Err(Error::RateLimited { .. })
    ));
    assert_eq!(server.token_calls(), 1);
    assert_eq!(
        cache.status().rate_limited_for,
        Some(Duration::from_secs(4))
    );

    pass(Duration::from_secs(4)).await;
    cache.token().await.unwrap();
    assert_eq!(server.token_calls(), 2);
    assert_eq!(cache.status().rate_limited_for, None);
}

#[tokio::test(start_paused = true)]
async fn rate_limited_with_an_http_date_waits_until_that_date() {
    let server = server();
    let cache = TokenCache::new(client_credentials(&server));
    let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
    server.push_fault(Fault::RateLimited {
        retry_after: Some(date),
    });

    let err = cache.token().await.unwrap_err();
    let wait = err.retry_after().unwrap();
    assert!(
        (Duration::from_secs(29)..=Duration::from_secs(31)).contains(&wait),
        "{wait:?}"
    );
    assert_eq!(server.token_calls(), 1);

    pass(Duration::from_secs(10)).await;
    assert!(matches!(
        cache.token().await,
        Err(Error::RateLimited { .. })
    ));
    assert_eq!(server.token_calls(), 1);

    pass(Duration::from_secs(21)).await;
    cache.token().await.unwrap();
    assert_eq!(server.token_calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn server_errors_are_retried_four_times_then_reported() {
    for status in [500, 502, 503, 504, 408] {
        let server = server();
        let cache = TokenCache::new(client_credentials(&server));
        server.push_faults(Fault::Status(status), 4);

        let err = cache.token().await.unwrap_err();
        assert!(matches!(err, Error::Endpoint(_)), "{status}: {err:?}");
        assert_eq!(err.status().map(|s| s.as_u16()), Some(status));
        assert!(err.is_retryable());
        assert_eq!(server.token_calls(), 4, "{status}: exactly 4 attempts");
        assert!(cache.cached().is_none());

        // The queue is empty: after the cool-down (under 1 s), the next caller starts a new
        // refresh, which succeeds.
        tokio::time::advance(Duration::from_secs(1)).await;
        cache.token().await.unwrap();
        assert_eq!(server.token_calls(), 5, "{status}");
    }
}

#[tokio::test(start_paused = true)]
async fn server_errors_that_stop_in_time_cost_nothing_but_attempts() {
    for status in [500, 502, 503, 504, 408] {
        let server = server();
        let cache = TokenCache::new(client_credentials(&server));
        server.push_faults(Fault::Status(status), 2);

        let started = Instant::now();
        let token = cache.token().await.unwrap();
        assert!(header_text(&token).starts_with("Bearer at_"));
        assert_eq!(server.token_calls(), 3, "{status}: success on the 3rd call");
        // Full-jitter backoff: below 250 ms + 500 ms in total.
        assert!(started.elapsed() < Duration::from_millis(750));
        assert_eq!(server.counters().issued, 1);
    }
}

#[tokio::test(start_paused = true)]
async fn temporarily_unavailable_is_retried() {
    let server = server();
    let cache = TokenCache::new(client_credentials(&server));
    server.push_fault(Fault::TemporarilyUnavailable);
    cache.token().await.unwrap();
    assert_eq!(server.token_calls(), 2);

    server.push_faults(Fault::TemporarilyUnavailable, 4);
    let err = cache.force_refresh().await.unwrap_err();
    assert!(matches!(err, Error::Endpoint(_)), "{err:?}");
    assert_eq!(
        err.endpoint_error().unwrap().error_code(),
        Some("temporarily_unavailable")
    );
    assert!(err.is_retryable());
    assert_eq!(server.token_calls(), 6);
}

#[tokio::test(start_paused = true)]
async fn invalid_grant_and_invalid_client_faults_are_not_retried() {
    let server = server();
    let cache = TokenCache::new(client_credentials(&server));

    server.push_fault(Fault::InvalidGrant);
    let err = cache.token().await.unwrap_err();
    assert!(err.is_reauthorization_required(), "{err:?}");
    assert_eq!(server.token_calls(), 1);
    // Held: the next caller gets it at once; a forced refresh asks again.
    assert!(
        cache
            .token()
            .await
            .unwrap_err()
            .is_reauthorization_required()
    );
    assert_eq!(server.token_calls(), 1);

    server.push_fault(Fault::InvalidClient);
    let err = cache.force_refresh().await.unwrap_err();
    assert!(matches!(err, Error::InvalidClient(_)), "{err:?}");
    assert_eq!(err.status(), Some(StatusCode::UNAUTHORIZED));
    assert_eq!(server.token_calls(), 2);

    cache.force_refresh().await.unwrap();
    assert_eq!(server.token_calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_hanging_endpoint_times_out_at_the_refresh_deadline() {
    let server = server();
    let cache = cache_with_deadline(&server, Duration::from_secs(5));
    server.push_fault(Fault::Hang);

    let started = Instant::now();
    let err = cache.token().await.unwrap_err();
    assert!(
        matches!(err, Error::Timeout(d) if d == Duration::from_secs(5)),
        "{err:?}"
    );
    assert_eq!(started.elapsed(), Duration::from_secs(5));
    assert_eq!(server.token_calls(), 1);
    assert!(err.is_retryable());

    tokio::time::advance(Duration::from_secs(1)).await; // past the cool-down
    let started = Instant::now();
    cache.token().await.unwrap();
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(server.token_calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn latency_within_the_deadline_is_waited_for() {
    let server = server();
    let cache = cache_with_deadline(&server, Duration::from_secs(5));
    server.push_fault(Fault::Latency(Duration::from_secs(2)));

    let started = Instant::now();
    let token = cache.token().await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    assert_eq!(server.token_calls(), 1);
    // The lifetime counts from when the request was sent, conservatively.
    assert_eq!(token.issued_at(), started);
}

#[tokio::test(start_paused = true)]
async fn a_200_with_an_html_body_is_an_invalid_response_not_retried() {
    let server = server();
    let cache = TokenCache::new(client_credentials(&server));
    server.push_fault(Fault::GarbageBody);

    let err = cache.token().await.unwrap_err();
    match &err {
        Error::InvalidResponse { status, reason } => {
            assert_eq!(*status, StatusCode::OK);
            assert!(reason.contains("not JSON"), "{reason}");
        }
        other => panic!("expected InvalidResponse, got {other:?}"),
    }
    assert!(!err.to_string().contains("<html>"));
    assert_eq!(server.token_calls(), 1);
    assert!(cache.cached().is_none());

    tokio::time::advance(Duration::from_secs(1)).await; // past the cool-down
    cache.token().await.unwrap();
    assert_eq!(server.token_calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_200_carrying_an_error_object_is_never_a_token() {
    let server = server();
    let cache = TokenCache::new(client_credentials(&server));

    // Every attempt gets it: an error, with status 200 and the error code, and nothing cached.
    server.push_faults(Fault::ErrorBody200, 4);
    let err = cache.token().await.unwrap_err();
    assert!(matches!(err, Error::Endpoint(_)), "{err:?}");
    assert_eq!(err.status(), Some(StatusCode::OK));
    assert_eq!(
        err.endpoint_error().unwrap().error_code(),
        Some("server_error")
    );
    assert!(err.is_retryable(), "server_error is transient");
    assert_eq!(server.token_calls(), 4);
    assert!(cache.cached().is_none());

    // Once: retried, and the token comes from the real answer.
    tokio::time::advance(Duration::from_secs(1)).await; // past the cool-down
    server.push_fault(Fault::ErrorBody200);
    let token = cache.token().await.unwrap();
    assert_eq!(server.token_calls(), 6);
    assert!(header_text(&token).starts_with("Bearer at_"));
    let request = http::Request::get(server.url("/resource"))
        .header(http::header::AUTHORIZATION, token.header_value().clone())
        .body(bytes::Bytes::new())
        .unwrap();
    let response = tokenward::HttpClient::send(&server.http_client(), request)
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "the server knows the token"
    );
}

#[tokio::test(start_paused = true)]
async fn oversized_bodies_are_refused_unless_the_limit_allows_them() {
    let server = server();
    let cache = TokenCache::new(client_credentials(&server));
    server.push_fault(Fault::OversizedBody(100_000));

    let err = cache.token().await.unwrap_err();
    assert!(
        matches!(err, Error::ResponseTooLarge { limit: 65536 }),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert_eq!(server.token_calls(), 1);

    let roomy = ClientCredentials::builder(server.token_url(), CLIENT)
        .client_secret(SECRET)
        .max_response_bytes(200_000)
        .http_client(server.http_client())
        .build()
        .unwrap();
    let cache = TokenCache::new(roomy);
    server.push_fault(Fault::OversizedBody(100_000));
    let token = cache.token().await.unwrap();
    assert_eq!(header_text(&token), "Bearer oversized");
    assert_eq!(token.lifetime(), Duration::from_secs(3600));
    assert_eq!(server.token_calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_reset_connection_is_a_retryable_transport_error() {
    let server = server();
    let cache = TokenCache::new(client_credentials(&server));

    server.push_fault(Fault::ConnectionReset);
    cache.token().await.unwrap();
    assert_eq!(server.token_calls(), 2, "retried once, then a token");

    server.push_faults(Fault::ConnectionReset, 4);
    let err = cache.force_refresh().await.unwrap_err();
    match &err {
        Error::Transport(e) => assert_eq!(e.kind(), TransportErrorKind::Io),
        other => panic!("expected a transport error, got {other:?}"),
    }
    assert!(err.is_retryable());
    assert_eq!(server.token_calls(), 6);
}

#[tokio::test(start_paused = true)]
async fn a_slowly_dripped_body_is_read_within_the_deadline_or_times_out() {
    let server = server();
    let drip = Fault::SlowDrip {
        chunk: 8,
        interval: Duration::from_millis(100),
    };

    let cache = cache_with_deadline(&server, Duration::from_secs(5));
    server.push_fault(drip.clone());
    let started = Instant::now();
    let token = cache.token().await.unwrap();
    let took = started.elapsed();
    assert!(header_text(&token).starts_with("Bearer at_"));
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert_eq!(server.token_calls(), 1);

    // The body takes `took`; a deadline shorter than that cuts it off.
    let short = took / 2;
    let cache = cache_with_deadline(&server, short);
    server.push_fault(drip);
    let started = Instant::now();
    let err = cache.token().await.unwrap_err();
    assert!(matches!(err, Error::Timeout(d) if d == short), "{err:?}");
    assert_eq!(started.elapsed(), short);
    assert_eq!(server.token_calls(), 2);

    tokio::time::advance(Duration::from_secs(1)).await; // past the cool-down
    cache.token().await.unwrap();
    assert_eq!(server.token_calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_failing_endpoint_never_costs_the_usable_token() {
    let server = FakeServer::builder()
        .client(CLIENT, SECRET)
        .token_lifetime(Duration::from_secs(100))
        .build();
    // Lifetime 100 s: fresh until 80 s, stale (served, refreshed in the background) until 95 s.
    let cache = TokenCache::builder(client_credentials(&server))
        .clock_skew(Duration::from_secs(5))
        .min_refresh_lead(Duration::ZERO)
        .refresh_jitter(0.0)
        .build();
    let start = Instant::now();
    let old = cache.header().await.unwrap();
    assert_eq!(server.token_calls(), 1);

    server.set_fault(Some(Fault::Status(503)));
    pass(Duration::from_secs(85)).await; // the refresh ahead at 80 s failed
    assert_eq!(cache.status().phase, Phase::Stale);

    // Stale reads return the old token at once while the background refreshes fail.
    for _ in 0..20 {
        assert_eq!(cache.header().await.unwrap(), old);
        run_for(Duration::from_millis(100)).await;
    }
    let status = cache.status();
    assert!(server.token_calls() >= 5, "{}", server.token_calls());
    assert!(status.consecutive_failures >= 1);
    assert_eq!(
        status.last_error.as_ref().and_then(Error::status),
        Some(StatusCode::SERVICE_UNAVAILABLE)
    );
    assert_eq!(status.phase, Phase::Stale);
    assert_eq!(cache.cached().unwrap().header_value(), old);

    // The endpoint recovers: a new token arrives before the old one stops being usable.
    server.set_fault(None);
    let new = loop {
        let header = cache.header().await.unwrap();
        if header != old {
            break header;
        }
        assert!(
            start.elapsed() < Duration::from_secs(95),
            "no new token in time"
        );
        run_for(Duration::from_millis(100)).await;
    };
    assert!(start.elapsed() < Duration::from_secs(95));
    assert_eq!(cache.status().phase, Phase::Fresh);
    assert_eq!(cache.status().consecutive_failures, 0);
    assert_eq!(cache.try_header(), Some(new));
    assert_eq!(server.counters().issued, 2);
}

// -------------------------------------------------------------------------------------------
// Configuration

#[tokio::test(start_paused = true)]
async fn bad_configuration_is_a_typed_error() {
    let server = server();
    for url in ["not a url", "ftp://x/token", "/token", ""] {
        let err = ClientCredentials::builder(url, CLIENT)
            .client_secret(SECRET)
            .http_client(server.http_client())
            .build()
            .unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{url:?}: {err:?}");
        assert!(err.to_string().contains("URL"), "{url:?}: {err}");
    }

    let err = ClientCredentials::builder(server.token_url(), "")
        .client_secret(SECRET)
        .http_client(server.http_client())
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    assert!(err.to_string().contains("client id"), "{err}");

    for auth in [ClientAuth::Basic, ClientAuth::Post] {
        let err = ClientCredentials::builder(server.token_url(), CLIENT)
            .auth_method(auth.clone())
            .http_client(server.http_client())
            .build()
            .unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{auth:?}: {err:?}");
        assert!(err.to_string().contains("client secret"), "{err}");
    }

    let err = RefreshTokenGrant::builder("ftp://x/token", CLIENT, "rt")
        .client_secret(SECRET)
        .http_client(server.http_client())
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    let err = RefreshTokenGrant::builder(server.token_url(), CLIENT, "")
        .client_secret(SECRET)
        .http_client(server.http_client())
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");

    assert_eq!(server.token_calls(), 0);
}

// -------------------------------------------------------------------------------------------
// Known bugs (see the ignore reasons)

#[tokio::test(start_paused = true)]
async fn a_retry_after_beyond_the_cap_is_reported_as_the_capped_wait() {
    let server = server();
    let cache = TokenCache::new(client_credentials(&server));
    server.push_fault(Fault::RateLimited {
        retry_after: Some("3600".into()),
    });

    let first = cache.token().await.unwrap_err();
    let second = cache.token().await.unwrap_err();
    assert_eq!(second.retry_after(), Some(Duration::from_secs(60)));
    // `Error::RateLimited::retry_after` is documented as "how long until the cache will call
    // the endpoint again (Retry-After, capped)": both callers must be told the same thing.
    assert_eq!(first.retry_after(), Some(Duration::from_secs(60)));

    pass(Duration::from_secs(60)).await;
    cache.token().await.unwrap();
    assert_eq!(server.token_calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_refresh_cut_off_by_its_deadline_does_not_replay_the_rotated_refresh_token() {
    let server = server();
    let seed = server.issue_refresh_token(CLIENT, "jobs.read");
    let grant = refresh_grant(&server, &seed);
    let cache = TokenCache::builder(Arc::clone(&grant))
        .refresh_deadline(Duration::from_millis(500))
        .build();

    // The server rotates and answers, but the body arrives too slowly (a slow link).
    server.push_fault(Fault::SlowDrip {
        chunk: 8,
        interval: Duration::from_millis(100),
    });
    let err = cache.token().await.unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");
    assert_eq!(
        server.counters().issued_for("refresh_token"),
        1,
        "the server rotated"
    );

    // A refresh while that exchange is still dripping waits for it rather than sending the
    // rotated-out token (here it runs into its own deadline, having sent nothing).
    let calls = server.counters().token_requests;
    let err = cache.force_refresh().await.unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");
    assert_eq!(
        server.counters().token_requests,
        calls,
        "nothing was sent meanwhile"
    );

    // Once the slow response is in, its rotated refresh token is the one used next.
    // (A paused-time sleep: the clock jumps from timer to timer while the drip completes.)
    tokio::time::sleep(Duration::from_secs(10)).await;
    let token = cache.force_refresh().await.unwrap();
    assert!(token.refresh_token().is_some());
    assert_eq!(server.counters().refresh_reuse_detected, 0);
    assert_eq!(server.counters().issued_for("refresh_token"), 2);
}

#[test]
fn a_parameter_a_request_sends_itself_cannot_be_an_extra_one() {
    let refused = |result: Result<(), tokenward::Error>, name: &str| {
        let error = result.unwrap_err();
        assert!(
            matches!(&error, tokenward::Error::Config(why) if why.contains(name)),
            "{name}: {error:?}"
        );
    };
    let url = "https://auth.example.com/x";
    for name in ["grant_type", "client_secret", "scope", "refresh_token"] {
        refused(
            tokenward::ClientCredentials::builder(url, "svc")
                .client_secret("s")
                .param(name, "v")
                .build()
                .map(drop),
            name,
        );
    }
    // Introspection and revocation send `token` and its hint: a second one could make the
    // server act on another token.
    for name in ["token", "token_type_hint"] {
        refused(
            tokenward::Introspection::builder(url, "svc")
                .client_secret("s")
                .param(name, "v")
                .build()
                .map(drop),
            name,
        );
        refused(
            tokenward::Revocation::builder(url, "svc")
                .client_secret("s")
                .param(name, "v")
                .build()
                .map(drop),
            name,
        );
    }
}
