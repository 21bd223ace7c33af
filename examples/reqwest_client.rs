//! reqwest-middleware with tokenward: `RetryMiddleware` (outermost) and `AuthMiddleware`,
//! against the embedded fake authorization server and protected resource on 127.0.0.1.
//!
//! Shows: the header set from the cache, a revoked token answered by one resend with a fresh
//! token, a 403 `insufficient_scope` returned as is (never retried) with what to do, a
//! token-endpoint failure surfacing as a typed error with nothing sent, and tenants.
//!
//! Run: `cargo run --example reqwest_client`

use std::time::Duration;

use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use tokenward::{ClientCredentials, TenantCache, TokenCache};
use tokenward_reqwest::{AuthMiddleware, RetryMiddleware, Tenant, token_error};
use tokenward_testkit::{FakeServer, Fault};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = FakeServer::builder()
        .client("demo-client", "demo-secret")
        .client_scopes("demo-client", "jobs.read")
        .client("acme-app", "acme-secret")
        .client("globex-app", "globex-secret")
        .token_lifetime(Duration::from_secs(3600))
        .build();
    let running = server.listen().await?;
    println!(
        "fake authorization server and API at http://{}",
        running.addr()
    );

    let grant = ClientCredentials::builder(running.token_url(), "demo-client")
        .client_secret("demo-secret")
        .scope("jobs.read")
        .build()?;
    let cache = TokenCache::builder(grant).name("demo").build();
    // Retry outermost: each attempt goes through AuthMiddleware and carries the current token.
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(RetryMiddleware::new())
        .with(AuthMiddleware::new(cache.clone()))
        .build();

    // 1. The header comes from the cache: one token call, then lock-free reads.
    for _ in 0..3 {
        let body = get_json(&client, &running.url("/resource/jobs.read")).await?;
        assert_eq!(body["client_id"], "demo-client");
    }
    println!(
        "1. three requests, {} token call: Authorization set from the cache",
        server.token_calls()
    );

    // 2. The API revokes the token: 401 invalid_token, one refresh, one resend.
    server.revoke_all_access_tokens();
    let response = client.get(running.resource_url()).send().await?;
    assert_eq!(response.status(), 200);
    println!(
        "2. token revoked by the API: the 401 was answered with a fresh token and one resend \
         ({} token calls, {} requests reached the API, {} rejected)",
        server.token_calls(),
        server.counters().resource_requests,
        server.counters().resource_rejected
    );
    assert_eq!(server.token_calls(), 2);

    // 3. A scope the grant lacks: 403 insufficient_scope, returned, never retried.
    let before = server.counters().resource_requests;
    let response = client
        .get(running.url("/resource/jobs.write"))
        .send()
        .await?;
    assert_eq!(response.status(), 403);
    assert_eq!(server.counters().resource_requests, before + 1);
    let failure = tokenward::classify(response.status(), response.headers(), None)
        .ok_or("a 403 is a failure")?
        .failure;
    println!("3. 403, not retried: {failure}");

    // 4. The token endpoint refuses the client: a typed error, and the request is not sent.
    server.set_fault(Some(Fault::InvalidClient));
    cache.clear();
    let before = server.counters().resource_requests;
    let err = client
        .get(running.resource_url())
        .send()
        .await
        .err()
        .ok_or("expected an error")?;
    let cause = token_error(&err).ok_or("expected a tokenward::Error")?;
    assert!(matches!(cause, tokenward::Error::InvalidClient(_)));
    assert_eq!(server.counters().resource_requests, before);
    println!("4. token endpoint failure, nothing sent: {cause}");
    server.set_fault(None);

    // 5. Tenants: each request names its tenant; an unknown one is refused, never defaulted.
    let tenants: TenantCache<String> = TenantCache::new();
    for (tenant, client_id, secret) in [
        ("acme", "acme-app", "acme-secret"),
        ("globex", "globex-app", "globex-secret"),
    ] {
        let grant = ClientCredentials::builder(running.token_url(), client_id)
            .client_secret(secret)
            .build()?;
        tenants.insert(tenant.to_owned(), grant);
    }
    let multi = ClientBuilder::new(reqwest::Client::new())
        .with(RetryMiddleware::new())
        .with(AuthMiddleware::tenants(tenants))
        .build();
    for tenant in ["acme", "globex"] {
        let response = multi
            .get(running.resource_url())
            .with_extension(Tenant::new(tenant))
            .send()
            .await?;
        let body: serde_json::Value = serde_json::from_slice(&response.bytes().await?)?;
        println!(
            "5. tenant {tenant}: the API saw client {}",
            body["client_id"]
        );
    }
    let err = multi
        .get(running.resource_url())
        .with_extension(Tenant::new("initech"))
        .send()
        .await
        .err()
        .ok_or("expected an error")?;
    let cause = token_error(&err).ok_or("expected a tokenward::Error")?;
    assert!(matches!(cause, tokenward::Error::UnknownTenant { .. }));
    println!("5. {cause}");

    running.shutdown().await;
    println!("done");
    Ok(())
}

async fn get_json(
    client: &ClientWithMiddleware,
    url: &str,
) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let response = client.get(url).send().await?.error_for_status()?;
    Ok(serde_json::from_slice(&response.bytes().await?)?)
}
