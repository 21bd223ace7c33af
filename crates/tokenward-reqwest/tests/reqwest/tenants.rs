//! Tenants: from the request's `Tenant` extension, or bound per client. Never a fallback.

use std::sync::Arc;
use std::time::Duration;

use tokenward::TenantCache;
use tokenward_reqwest::{AuthMiddleware, Tenant, token_error};
use tokenward_testkit::{FakeServer, RunningServer};

use crate::helpers::*;

async fn two_tenants() -> (FakeServer, RunningServer, TenantCache<String>) {
    let server = FakeServer::builder()
        .client("acme-app", "acme-secret")
        .client_scopes("acme-app", "jobs.read")
        .client("globex-app", "globex-secret")
        .client_scopes("globex-app", "jobs.read")
        .token_lifetime(Duration::from_secs(3600))
        .build();
    let running = server.listen().await.unwrap();
    let tenants = TenantCache::new();
    tenants.insert(
        "acme".to_owned(),
        grant(&running, "acme-app", "acme-secret"),
    );
    tenants.insert(
        "globex".to_owned(),
        grant(&running, "globex-app", "globex-secret"),
    );
    (server, running, tenants)
}

/// The typed tenant error behind a middleware error, and its message.
fn tenant_error(err: &reqwest_middleware::Error) -> (&tokenward::Error, String) {
    match token_error(err) {
        Some(
            e @ (tokenward::Error::MissingTenant
            | tokenward::Error::TenantMismatch { .. }
            | tokenward::Error::UnknownTenant { .. }),
        ) => (e, e.to_string()),
        other => panic!("expected a tenant error, got {other:?} from {err:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_uses_its_tenants_credentials() {
    let (server, running, tenants) = two_tenants().await;
    let client = client_with(vec![Arc::new(AuthMiddleware::tenants(tenants))]);
    for (tenant, client_id) in [
        ("acme", "acme-app"),
        ("globex", "globex-app"),
        ("acme", "acme-app"),
    ] {
        let response = client
            .get(running.resource_url())
            .with_extension(Tenant::new(tenant))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(json(response).await["client_id"], client_id);
    }
    assert_eq!(server.token_calls(), 2, "one token per tenant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_tenant_is_a_typed_error_and_nothing_is_sent() {
    let (server, running, tenants) = two_tenants().await;
    let client = client_with(vec![Arc::new(AuthMiddleware::tenants(tenants))]);
    let err = client
        .get(running.resource_url())
        .with_extension(Tenant::from("initech"))
        .send()
        .await
        .unwrap_err();
    match token_error(&err) {
        Some(tokenward::Error::UnknownTenant { tenant }) => assert_eq!(tenant, "initech"),
        other => panic!("{other:?}"),
    }
    assert_eq!(server.counters().resource_requests, 0);
    assert_eq!(server.token_calls(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_a_tenant_is_refused() {
    let (server, running, tenants) = two_tenants().await;
    let client = client_with(vec![Arc::new(AuthMiddleware::tenants(tenants))]);
    let err = client.get(running.resource_url()).send().await.unwrap_err();
    let (error, message) = tenant_error(&err);
    assert!(
        matches!(error, tokenward::Error::MissingTenant),
        "{error:?}"
    );
    assert!(message.contains("names no tenant"), "{message}");
    assert_eq!(server.counters().resource_requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bound_client_uses_its_tenant_and_refuses_another() {
    let (server, running, tenants) = two_tenants().await;
    let client = client_with(vec![Arc::new(AuthMiddleware::for_tenant(
        tenants.clone(),
        "globex",
    ))]);
    let response = client.get(running.resource_url()).send().await.unwrap();
    assert_eq!(json(response).await["client_id"], "globex-app");
    // Naming the same tenant is fine; naming another is refused, not rerouted.
    let response = client
        .get(running.resource_url())
        .with_extension(Tenant::new("globex"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let err = client
        .get(running.resource_url())
        .with_extension(Tenant::new("acme"))
        .send()
        .await
        .unwrap_err();
    let (error, message) = tenant_error(&err);
    assert!(
        matches!(error, tokenward::Error::TenantMismatch { named, .. } if named == "acme"),
        "{error:?}"
    );
    assert!(message.contains("bound to \"globex\""), "{message}");
    assert_eq!(server.counters().resource_requests, 2);

    // Removing the tenant takes effect at once: its requests fail, unsent.
    assert!(tenants.remove("globex"));
    let err = client.get(running.resource_url()).send().await.unwrap_err();
    assert!(matches!(
        token_error(&err),
        Some(tokenward::Error::UnknownTenant { .. })
    ));
    assert_eq!(server.counters().resource_requests, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_cache_refuses_a_request_naming_a_tenant() {
    let (server, running, cache) = testkit().await;
    let client = client_with(vec![Arc::new(AuthMiddleware::new(cache))]);
    let err = client
        .get(running.resource_url())
        .with_extension(Tenant::new("acme"))
        .send()
        .await
        .unwrap_err();
    let (error, message) = tenant_error(&err);
    assert!(
        matches!(error, tokenward::Error::TenantMismatch { .. }),
        "{error:?}"
    );
    assert!(message.contains("one token cache"), "{message}");
    assert_eq!(server.counters().resource_requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_401_refreshes_only_that_tenant() {
    let (server, running, tenants) = two_tenants().await;
    let client = client_with(vec![Arc::new(AuthMiddleware::tenants(tenants.clone()))]);
    for tenant in ["acme", "globex"] {
        let response = client
            .get(running.resource_url())
            .with_extension(Tenant::new(tenant))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let globex = tenants.get("globex").unwrap().cached().unwrap();
    server.revoke_all_access_tokens();
    let response = client
        .get(running.resource_url())
        .with_extension(Tenant::new("acme"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(server.token_calls(), 3);
    let still = tenants.get("globex").unwrap().cached().unwrap();
    assert!(
        tokenward::Token::ptr_eq(&globex, &still),
        "globex's token untouched"
    );
}
