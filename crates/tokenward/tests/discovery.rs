//! Discovery (RFC 8414, OpenID Connect Discovery) against the testkit: grants, the code flow,
//! introspection and revocation from an issuer URL; the issuer check; re-fetches.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use tokenward::discovery::{DiscoveryError, WellKnown};
use tokenward::transport::{HttpClient, ResponseBody, SendFuture};
use tokenward::{
    AuthorizationCode, AuthorizationServer, ClientAuth, ClientCredentials, Error, Introspection,
    RefreshTokenGrant, Revocation, TokenCache, TokenSource,
};
use tokenward_testkit::{Endpoint, FakeServer, Fault};

fn fake() -> FakeServer {
    FakeServer::builder()
        .client("svc", "svc-secret")
        .public_client("app")
        .redirect_uri("app", "http://127.0.0.1:8080/callback")
        .build()
}

async fn discover(fake: &FakeServer) -> AuthorizationServer {
    AuthorizationServer::builder(fake.issuer())
        .http_client(fake.http_client())
        .discover()
        .await
        .unwrap()
}

fn discovery_error(error: Error) -> DiscoveryError {
    match error {
        Error::Discovery(e) => *e,
        other => panic!("expected a discovery error, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_client_credentials_grant_from_the_issuer_gets_tokens() {
    let fake = fake();
    let server = discover(&fake).await;
    assert_eq!(server.issuer(), "http://testkit.invalid");
    let metadata = server.metadata();
    assert_eq!(
        metadata.token_endpoint.as_deref(),
        Some("http://testkit.invalid/token")
    );
    assert_eq!(metadata.code_challenge_methods_supported, ["S256"]);
    let grant = ClientCredentials::from_issuer(&server, "svc")
        .client_secret("svc-secret")
        .build()
        .unwrap();
    let cache = TokenCache::builder(grant).build();
    let header = cache.header().await.unwrap();
    assert!(header.to_str().unwrap().starts_with("Bearer at_"));
    let counters = fake.counters();
    assert_eq!(
        counters.metadata_requests, 1,
        "one document, at the first URL"
    );
    assert_eq!(counters.issued_for("client_credentials"), 1);
}

#[tokio::test(start_paused = true)]
async fn an_issuer_with_a_path_is_found_at_both_well_known_urls() {
    let fake = FakeServer::builder()
        .client("svc", "svc-secret")
        .issuer_path("/tenants/a")
        .build();
    assert_eq!(fake.issuer(), "http://testkit.invalid/tenants/a");
    for which in [WellKnown::Any, WellKnown::OAuth, WellKnown::OpenId] {
        let server = AuthorizationServer::builder(fake.issuer())
            .well_known(which)
            .http_client(fake.http_client())
            .discover()
            .await
            .unwrap_or_else(|e| panic!("{which:?}: {e}"));
        assert_eq!(server.metadata().issuer, "http://testkit.invalid/tenants/a");
        let grant = ClientCredentials::from_issuer(&server, "svc")
            .client_secret("svc-secret")
            .build()
            .unwrap();
        grant.fetch().await.unwrap();
    }
    // The testkit serves the document only where the issuer's well-known URLs are: an
    // issuer whose path is not this server's finds nothing, and the error says where it looked.
    let error = AuthorizationServer::builder("http://testkit.invalid/tenants/b")
        .http_client(fake.http_client())
        .discover()
        .await
        .unwrap_err();
    assert!(!error.is_retryable());
    let message = error.to_string();
    match discovery_error(error) {
        DiscoveryError::NotFound { tried } => assert_eq!(
            tried,
            [
                "http://testkit.invalid/.well-known/oauth-authorization-server/tenants/b (HTTP 404)",
                "http://testkit.invalid/tenants/b/.well-known/openid-configuration (HTTP 404)"
            ]
        ),
        other => panic!("{other:?}"),
    }
    assert!(
        message.contains("no authorization server metadata at"),
        "{message}"
    );
}

#[tokio::test(start_paused = true)]
async fn metadata_for_another_issuer_is_refused() {
    let fake = fake();
    fake.set_metadata_issuer(Some("https://evil.example"));
    let error = AuthorizationServer::builder(fake.issuer())
        .http_client(fake.http_client())
        .discover()
        .await
        .unwrap_err();
    assert_eq!(error.code(), "discovery");
    assert!(!error.is_retryable());
    assert!(error.to_string().contains("RFC 8414 §3.3"), "{error}");
    match discovery_error(error) {
        DiscoveryError::IssuerMismatch { expected, found } => {
            assert_eq!(expected, "http://testkit.invalid");
            assert_eq!(found, "https://evil.example");
        }
        other => panic!("{other:?}"),
    }
    // The mismatch stops discovery: the OpenID Connect URL is not tried in its place.
    assert_eq!(fake.counters().metadata_requests, 1);

    // Only an identical issuer passes: a trailing slash is another issuer.
    fake.set_metadata_issuer(None);
    let error = AuthorizationServer::builder(format!("{}/", fake.issuer()))
        .http_client(fake.http_client())
        .discover()
        .await
        .unwrap_err();
    assert!(matches!(
        discovery_error(error),
        DiscoveryError::IssuerMismatch { .. }
    ));
}

#[tokio::test(start_paused = true)]
async fn an_unavailable_server_is_a_retryable_error() {
    let fake = fake();
    fake.push_fault_at(Endpoint::Metadata, Fault::Status(503));
    let error = AuthorizationServer::builder(fake.issuer())
        .http_client(fake.http_client())
        .discover()
        .await
        .unwrap_err();
    assert!(error.is_retryable(), "{error}");
    assert!(matches!(
        discovery_error(error),
        DiscoveryError::Unavailable { ref reason, .. } if reason == "HTTP 503"
    ));
    fake.push_fault_at(Endpoint::Metadata, Fault::Hang);
    let error = AuthorizationServer::builder(fake.issuer())
        .http_client(fake.http_client())
        .fetch_timeout(Duration::from_secs(2))
        .discover()
        .await
        .unwrap_err();
    assert!(error.to_string().contains("no answer within 2s"), "{error}");
    // Then it answers.
    discover(&fake).await;
}

#[tokio::test(start_paused = true)]
async fn a_moved_endpoint_is_followed_within_the_same_request() {
    let fake = fake();
    let server = discover(&fake).await;
    let grant = ClientCredentials::from_issuer(&server, "svc")
        .client_secret("svc-secret")
        .build()
        .unwrap();
    grant.fetch().await.unwrap();

    tokio::time::advance(Duration::from_secs(61)).await;
    fake.move_endpoints("/v2");
    fake.reset_counters();
    grant.fetch().await.unwrap();
    let counters = fake.counters();
    // The old URL answered 404 (nothing there), then the new one issued the token.
    assert_eq!(counters.token_requests, 1);
    assert_eq!(counters.issued_for("client_credentials"), 1);
    assert_eq!(counters.metadata_requests, 1);
    assert_eq!(
        server.metadata().token_endpoint.as_deref(),
        Some("http://testkit.invalid/v2/token")
    );
    // From now on, straight to the new URL.
    fake.reset_counters();
    grant.fetch().await.unwrap();
    assert_eq!(fake.counters().token_requests, 1);
    assert_eq!(fake.counters().metadata_requests, 0);
}

#[tokio::test(start_paused = true)]
async fn a_failing_endpoint_prompts_at_most_one_fetch_per_interval() {
    let fake = fake();
    let server = discover(&fake).await;
    let grant = ClientCredentials::from_issuer(&server, "svc")
        .client_secret("svc-secret")
        .build()
        .unwrap();
    // Within a minute of discovery: the 404 is the answer, no metadata request.
    fake.move_endpoints("/v2");
    let error = grant.fetch().await.unwrap_err();
    assert_eq!(error.status(), Some(http::StatusCode::NOT_FOUND));
    assert_eq!(fake.counters().metadata_requests, 1);

    tokio::time::advance(Duration::from_secs(61)).await;
    // The re-fetch fails: the old metadata is kept (the 404 stands), and the next request
    // within the interval does not fetch again.
    fake.push_fault_at(Endpoint::Metadata, Fault::Status(503));
    grant.fetch().await.unwrap_err();
    assert_eq!(fake.counters().metadata_requests, 2);
    assert_eq!(
        server.metadata().token_endpoint.as_deref(),
        Some("http://testkit.invalid/token")
    );
    grant.fetch().await.unwrap_err();
    assert_eq!(fake.counters().metadata_requests, 2);

    tokio::time::advance(Duration::from_secs(61)).await;
    grant.fetch().await.unwrap();
    assert_eq!(fake.counters().metadata_requests, 3);
}

#[tokio::test(start_paused = true)]
async fn metadata_is_fetched_again_after_its_max_age_and_a_bad_document_is_not_taken() {
    let fake = fake();
    let server = AuthorizationServer::builder(fake.issuer())
        .http_client(fake.http_client())
        .max_age(Duration::from_secs(3600))
        .discover()
        .await
        .unwrap();
    let grant = ClientCredentials::from_issuer(&server, "svc")
        .client_secret("svc-secret")
        .build()
        .unwrap();
    grant.fetch().await.unwrap();
    tokio::time::advance(Duration::from_secs(1800)).await;
    grant.fetch().await.unwrap();
    assert_eq!(fake.counters().metadata_requests, 1, "not yet");

    // Past its age, the next request fetches it first. The document now names another
    // issuer: refused, the metadata held is kept, the request goes out as before.
    tokio::time::advance(Duration::from_secs(1800)).await;
    fake.set_metadata_issuer(Some("https://evil.example"));
    fake.move_endpoints("/v2");
    grant.fetch().await.unwrap_err();
    assert_eq!(fake.counters().metadata_requests, 2);
    assert_eq!(server.metadata().issuer, "http://testkit.invalid");
    assert_eq!(
        server.metadata().token_endpoint.as_deref(),
        Some("http://testkit.invalid/token")
    );

    fake.set_metadata_issuer(None);
    tokio::time::advance(Duration::from_secs(61)).await;
    grant.fetch().await.unwrap();
    assert_eq!(
        server.metadata().token_endpoint.as_deref(),
        Some("http://testkit.invalid/v2/token")
    );
}

#[tokio::test(start_paused = true)]
async fn the_code_flow_introspection_and_revocation_come_from_the_issuer() {
    let fake = fake();
    let server = discover(&fake).await;
    let flow = AuthorizationCode::from_issuer(&server, "app")
        .redirect_uri("http://127.0.0.1:8080/callback")
        .auth_method(ClientAuth::None)
        .scope("jobs.read")
        .build()
        .unwrap();
    let request = flow.authorize();
    assert!(
        request
            .url()
            .starts_with("http://testkit.invalid/authorize?response_type=code&client_id=app"),
        "{}",
        request.url()
    );
    let callback = fake.approve(request.url()).unwrap();
    // An `iss` that is not the issuer's is refused (RFC 9207); the testkit sends none, and
    // its metadata does not say it would, so none is accepted.
    let wrong = format!("{callback}&iss=https%3A%2F%2Fevil.example");
    let error = flow.exchange(request, &wrong).await.unwrap_err();
    assert!(matches!(error, Error::IssuerMismatch { .. }), "{error:?}");
    assert_eq!(fake.counters().issued_for("authorization_code"), 0);

    let request = flow.authorize();
    let callback = fake.approve(request.url()).unwrap();
    let with_iss = format!("{callback}&iss=http%3A%2F%2Ftestkit.invalid");
    flow.exchange(request, &with_iss).await.unwrap();

    let introspection = Introspection::from_issuer(&server, "svc")
        .client_secret("svc-secret")
        .build()
        .unwrap();
    let access = fake.issue_access_token("svc", "jobs.read");
    assert!(introspection.introspect(&access).await.unwrap().active);
    let revocation = Revocation::from_issuer(&server, "svc")
        .client_secret("svc-secret")
        .build()
        .unwrap();
    revocation.revoke(&access, None).await.unwrap();
    assert!(!introspection.introspect(&access).await.unwrap().active);

    let refresh = fake.issue_refresh_token("app", "jobs.read");
    let grant = RefreshTokenGrant::from_issuer(&server, "app")
        .auth_method(ClientAuth::None)
        .refresh_token(refresh)
        .build()
        .unwrap();
    grant.fetch().await.unwrap();
    let error = RefreshTokenGrant::from_issuer(&server, "app")
        .auth_method(ClientAuth::None)
        .build()
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("needs a refresh token or a store"),
        "{error}"
    );
}

/// Answers every request with one document (for metadata the testkit would not serve).
#[derive(Debug)]
struct Canned(&'static str);

impl HttpClient for Canned {
    fn send(&self, _request: http::Request<Bytes>) -> SendFuture<'_> {
        let body = self.0;
        Box::pin(async move {
            let body = http_body_util::Full::new(Bytes::from_static(body.as_bytes()));
            let body: ResponseBody = body.map_err(|never| match never {}).boxed_unsync();
            Ok(http::Response::new(body))
        })
    }
}

#[tokio::test(start_paused = true)]
async fn what_the_metadata_lacks_or_gets_wrong_is_a_typed_error() {
    let minimal = r#"{"issuer":"https://as.example","token_endpoint":"https://as.example/token"}"#;
    let server = AuthorizationServer::builder("https://as.example")
        .http_client(Canned(minimal))
        .discover()
        .await
        .unwrap();
    let error = Introspection::from_issuer(&server, "svc")
        .client_secret("s")
        .build()
        .unwrap_err();
    assert!(matches!(
        discovery_error(error),
        DiscoveryError::MissingEndpoint("introspection_endpoint")
    ));
    let error = AuthorizationCode::from_issuer(&server, "app")
        .redirect_uri("https://app.example/cb")
        .auth_method(ClientAuth::None)
        .build()
        .unwrap_err();
    assert!(
        error.to_string().contains("authorization_endpoint"),
        "{error}"
    );

    let relative = r#"{"issuer":"https://as.example","token_endpoint":"/token"}"#;
    let error = AuthorizationServer::builder("https://as.example")
        .http_client(Canned(relative))
        .discover()
        .await
        .unwrap_err();
    assert!(error.to_string().contains("token_endpoint"), "{error}");

    // Not a JSON object at either URL (an HTML page): nothing found.
    let error = AuthorizationServer::builder("https://as.example")
        .http_client(Canned("<html>welcome</html>"))
        .discover()
        .await
        .unwrap_err();
    assert!(matches!(
        discovery_error(error),
        DiscoveryError::NotFound { tried } if tried.len() == 2 && tried[0].ends_with("(not a JSON object)")
    ));

    for issuer in [
        "https://as.example?tenant=a",
        "https://as.example#x",
        "as.example",
    ] {
        let error = AuthorizationServer::builder(issuer)
            .http_client(Canned(minimal))
            .discover()
            .await
            .unwrap_err();
        assert!(matches!(error, Error::Config(_)), "{issuer}: {error:?}");
    }
}

#[tokio::test]
async fn discovery_over_tcp_with_the_default_client() {
    let fake = fake();
    let running = fake.listen().await.unwrap();
    let server = AuthorizationServer::discover(running.issuer())
        .await
        .unwrap();
    assert_eq!(
        server.metadata().token_endpoint,
        Some(running.token_url()),
        "the metadata names the URLs the client reached it at"
    );
    let grant = ClientCredentials::from_issuer(&server, "svc")
        .client_secret("svc-secret")
        .build()
        .unwrap();
    TokenCache::builder(grant).build().header().await.unwrap();
    running.shutdown().await;
}

/// Answers every request with one status (a server whose endpoints moved away).
#[derive(Debug, Clone)]
struct Status(u16, &'static str);

impl HttpClient for Status {
    fn send(&self, _request: http::Request<Bytes>) -> SendFuture<'_> {
        let (status, body) = (self.0, self.1);
        Box::pin(async move {
            let body = http_body_util::Full::new(Bytes::from_static(body.as_bytes()));
            let body: ResponseBody = body.map_err(|never| match never {}).boxed_unsync();
            let mut response = http::Response::new(body);
            *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
            Ok(response)
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_refresh_token_answered_404_is_not_sent_again_but_the_next_request_follows() {
    let fake = fake();
    let server = discover(&fake).await;
    let refresh = fake.issue_refresh_token("app", "jobs.read");
    let grant = RefreshTokenGrant::from_issuer(&server, "app")
        .auth_method(ClientAuth::None)
        .refresh_token(refresh)
        .build()
        .unwrap();
    tokio::time::advance(Duration::from_secs(61)).await;
    fake.move_endpoints("/v2");
    // The old URL answered: a single-use credential is not resent at once ...
    let error = grant.fetch().await.unwrap_err();
    assert_eq!(error.status(), Some(http::StatusCode::NOT_FOUND));
    assert_eq!(fake.counters().token_requests, 0);
    assert_eq!(
        fake.counters().metadata_requests,
        1,
        "the failure marks the metadata"
    );
    // ... the next request fetches the metadata first and goes to the new URL.
    tokio::time::advance(Duration::from_secs(61)).await;
    grant.fetch().await.unwrap();
    assert_eq!(fake.counters().metadata_requests, 2);
    assert_eq!(fake.counters().issued_for("refresh_token"), 1);
    assert_eq!(fake.counters().refresh_reuse_detected, 0);
}

#[tokio::test(start_paused = true)]
async fn metadata_cannot_downgrade_to_http_redirect_or_overflow() {
    let downgrade = r#"{"issuer":"https://as.example","token_endpoint":"http://as.example/token"}"#;
    let error = AuthorizationServer::builder("https://as.example")
        .http_client(Canned(downgrade))
        .discover()
        .await
        .unwrap_err();
    assert!(error.to_string().contains("not https"), "{error}");

    let error = AuthorizationServer::builder("https://as.example")
        .http_client(Status(301, ""))
        .discover()
        .await
        .unwrap_err();
    assert!(!error.is_retryable(), "{error}");
    assert!(error.to_string().contains("redirect"), "{error}");

    // "Never fetch again" is a Duration::MAX, not a panic.
    let fake = fake();
    let server = AuthorizationServer::builder(fake.issuer())
        .http_client(fake.http_client())
        .max_age(Duration::MAX)
        .min_refetch_interval(Duration::MAX)
        .discover()
        .await
        .unwrap();
    let grant = ClientCredentials::from_issuer(&server, "svc")
        .client_secret("svc-secret")
        .build()
        .unwrap();
    tokio::time::advance(Duration::from_secs(365 * 24 * 3600)).await;
    grant.fetch().await.unwrap();
    assert_eq!(fake.counters().metadata_requests, 1);
}
