//! Metrics and the health endpoint: the quickstart's workload (concurrent requests across
//! several token expiries, a forced 401, a 429 and a 503, against the embedded fake server)
//! through `AuthMiddleware` and `RetryMiddleware`, with the Prometheus exporter
//! (`metrics-exporter-prometheus`) installed. A loopback port serves `/metrics` (the
//! exporter's scrape) and `/health/tokens` (`tokenward_tower::health::TokenHealth`); at the
//! end the example scrapes both over HTTP and prints them.
//!
//! Run: `cargo run --example metrics`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use reqwest_middleware::ClientBuilder;
use tokenward::{ClientCredentials, TokenCache};
use tokenward_reqwest::{AuthMiddleware, RetryMiddleware};
use tokenward_testkit::{FakeServer, Fault};
use tokenward_tower::health::TokenHealth;
use tokio::time::Instant;

const WORKERS: usize = 8;
const RUN_FOR: Duration = Duration::from_secs(10);
const LIFETIME: Duration = Duration::from_secs(4);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The recorder first, so every metric lands in it; then their units and descriptions.
    // Prometheus's naming (`_total`, `_seconds`), and buckets for the duration histogram.
    let prometheus = PrometheusBuilder::new()
        .with_recommended_naming(true)
        .set_buckets_for_metric(
            Matcher::Full(tokenward::metrics::TOKEN_REQUEST_DURATION.to_owned()),
            &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0],
        )?
        .install_recorder()?;
    tokenward::metrics::describe();

    let server = FakeServer::builder()
        .client("demo-client", "demo-secret")
        .token_lifetime(LIFETIME)
        .build();
    let running = server.listen().await?;
    let grant = ClientCredentials::builder(running.token_url(), "demo-client")
        .client_secret("demo-secret")
        .scope("jobs.read")
        .build()?;
    let cache = TokenCache::builder(grant)
        .name("quickstart")
        .refresh_fraction(0.5)
        .clock_skew(Duration::from_millis(500))
        .min_refresh_lead(Duration::ZERO)
        .build();

    // The operator's port: the scrape and the token health, on loopback.
    let ops = Router::new()
        .route(
            "/metrics",
            get(move || std::future::ready(prometheus.render())),
        )
        .route_service("/health/tokens", TokenHealth::new(cache.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let ops_addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, ops).await });
    println!(
        "tokenward metrics: {WORKERS} workers for {} s, token lifetime {} s; scrape at http://{ops_addr}/metrics",
        RUN_FOR.as_secs(),
        LIFETIME.as_secs()
    );

    let plain = reqwest::Client::builder().no_proxy().build()?;
    let client = ClientBuilder::new(plain.clone())
        .with(RetryMiddleware::new())
        .with(AuthMiddleware::new(cache.clone()))
        .build();
    let (requests, errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let deadline = Instant::now() + RUN_FOR;
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (client, url) = (client.clone(), running.resource_url());
            let (requests, errors) = (Arc::clone(&requests), Arc::clone(&errors));
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let ok =
                        matches!(client.get(&url).send().await, Ok(r) if r.status().is_success());
                    requests.fetch_add(1, Ordering::Relaxed);
                    if !ok {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        })
        .collect();

    // The trouble: every token revoked (401 invalid_token, resent once), then a 429 and a
    // 503 for the next token calls.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    server.revoke_all_access_tokens();
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.push_fault(Fault::RateLimited {
        retry_after: Some("1".into()),
    });
    server.push_fault(Fault::Status(503));
    for worker in workers {
        worker.await?;
    }

    let scrape = plain
        .get(format!("http://{ops_addr}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    println!("\n--- GET /metrics (tokenward's series) ---");
    for line in scrape.lines().filter(|l| l.contains("tokenward_")) {
        println!("{line}");
    }
    let health = plain
        .get(format!("http://{ops_addr}/health/tokens"))
        .send()
        .await?;
    println!("\n--- GET /health/tokens: {} ---", health.status());
    println!("{}", health.text().await?);

    let (requests, errors) = (
        requests.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
    );
    println!(
        "\nrequests={requests} errors={errors} token_calls={}",
        server.counters().token_requests
    );
    running.shutdown().await;
    let expected = [
        "tokenward_token_requests_total",
        "tokenward_token_request_duration_seconds_bucket",
        "tokenward_refreshes_total",
        "tokenward_rejections_total",
        "tokenward_token_expiry_time_seconds",
    ];
    if errors > 0 || expected.iter().any(|name| !scrape.contains(name)) {
        std::process::exit(1);
    }
    Ok(())
}
