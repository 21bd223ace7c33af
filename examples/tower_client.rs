//! A hyper client wrapped in `tokenward_tower::AuthLayer`, against the embedded fake
//! authorization server and protected resource on 127.0.0.1: the header set on every request,
//! 200 concurrent first requests on one token call, a revoked token refreshed and the request
//! resent once, a 403 not retried, a streamed upload never resent, and per-tenant tokens.
//!
//! Run: `cargo run --example tower_client`

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokenward::{ClientCredentials, TenantCache, TokenCache};
use tokenward_testkit::FakeServer;
use tokenward_tower::tenant::Tenant;
use tokenward_tower::{AuthError, AuthLayer, BoxError};
use tower::{Layer, ServiceBuilder, ServiceExt};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let server = FakeServer::builder()
        .client("svc", "svc-secret")
        .client_scopes("svc", "jobs.read")
        .client("acme-app", "acme-secret")
        .client("globex-app", "globex-secret")
        .build();
    let running = server.listen().await?;
    println!("fake server at {}", running.addr());
    let cache_for = |client: &str, secret: &str| -> Result<TokenCache, tokenward::Error> {
        let grant = ClientCredentials::builder(running.token_url(), client)
            .client_secret(secret)
            .scope("jobs.read")
            .build()?;
        Ok(TokenCache::builder(grant).name(client.to_owned()).build())
    };

    // Any tower service will do; here a plain hyper client.
    let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let client = ServiceBuilder::new()
        .layer(AuthLayer::new(cache_for("svc", "svc-secret")?))
        .service(http.clone());
    let get = |path: &str| http::Request::get(running.url(path)).body(Full::default());

    // 1. Many concurrent first requests: they all wait on one token call.
    let calls: Vec<_> = (0..200)
        .map(|_| tokio::spawn(client.clone().oneshot(get("/resource").unwrap())))
        .collect();
    for call in calls {
        assert_eq!(call.await??.status(), 200);
    }
    let c = server.counters();
    println!(
        "200 concurrent requests: {} ok, {} token call",
        c.resource_requests, c.token_requests
    );

    // 2. The server revokes the token: 401 invalid_token, a new token, the request resent once.
    server.revoke_all_access_tokens();
    let response = client.clone().oneshot(get("/resource")?).await?;
    let c = server.counters();
    println!(
        "after revocation: {} (401s seen by the server: {}, token calls: {})",
        response.status(),
        c.resource_rejected,
        c.token_requests
    );
    assert_eq!(response.status(), 200);

    // 3. A scope the client does not have: 403 insufficient_scope, never retried.
    let response = client.clone().oneshot(get("/resource/jobs.write")?).await?;
    println!(
        "missing scope: {} {}",
        response.status(),
        response.headers()["www-authenticate"].to_str()?
    );
    assert_eq!(response.status(), 403);

    // 4. A streamed upload: sent once; after a 401 it is not resent (it cannot be replayed),
    //    but the rejected token is dropped, so the next request carries a fresh one.
    let streaming = Client::builder(TokioExecutor::new()).build_http();
    let uploads = AuthLayer::new(cache_for("svc", "svc-secret")?).layer(streaming);
    let upload = || {
        let chunks: Vec<Result<_, std::io::Error>> = (0..4)
            .map(|_| Ok(http_body::Frame::data(Bytes::from_static(&[b'x'; 256]))))
            .collect();
        http::Request::post(running.resource_url())
            .body(StreamBody::new(futures_util::stream::iter(chunks)))
    };
    let response = uploads.clone().oneshot(upload()?).await?;
    let body = response.into_body().collect().await?.to_bytes();
    println!("streamed upload: {}", String::from_utf8_lossy(&body));
    server.revoke_all_access_tokens();
    let response = uploads.clone().oneshot(upload()?).await?;
    println!(
        "streamed upload with a revoked token: {} (not resent)",
        response.status()
    );
    assert_eq!(response.status(), 401);
    let response = uploads.oneshot(upload()?).await?;
    println!("next upload: {} (a fresh token)", response.status());
    assert_eq!(response.status(), 200);

    // 5. Tenants: the request's Tenant extension picks the token; unknown tenants fail typed.
    let tenants: TenantCache<String> = TenantCache::builder()
        .tenant_cache("acme".into(), cache_for("acme-app", "acme-secret")?)
        .tenant_cache("globex".into(), cache_for("globex-app", "globex-secret")?)
        .build();
    let per_tenant = AuthLayer::tenants(tenants).layer(http);
    for org in ["acme", "globex", "initech"] {
        let mut request = get("/resource")?;
        request.extensions_mut().insert(Tenant(org.to_string()));
        match per_tenant.clone().oneshot(request).await {
            Ok(response) => {
                let body = response.into_body().collect().await?.to_bytes();
                let body: serde_json::Value = serde_json::from_slice(&body)?;
                println!("tenant {org}: served as {}", body["client_id"]);
            }
            Err(error) => match error.downcast_ref::<AuthError>() {
                Some(e @ AuthError::UnknownTenant { .. }) => println!("tenant {org}: {e}"),
                _ => return Err(error),
            },
        }
    }

    running.shutdown().await;
    Ok(())
}
