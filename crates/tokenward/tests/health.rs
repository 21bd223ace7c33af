//! `TokenCache::status` and `TenantCache::status` as a health check reads them: whether a
//! caller gets a token now, what failed, and the JSON they serialise to.

mod common;

use std::time::{Duration, SystemTime};

use common::pass;
use tokenward::{ClientCredentials, Phase, TenantCache, TokenCache};
use tokenward_testkit::{FakeServer, Fault};

const SECRET: &str = "svc-Secret-77aa";

fn server() -> FakeServer {
    FakeServer::builder()
        .client("svc", SECRET)
        .token_lifetime(Duration::from_secs(100))
        .build()
}

fn grant(server: &FakeServer, secret: &str) -> ClientCredentials {
    ClientCredentials::builder(server.token_url(), "svc")
        .client_secret(secret)
        .http_client(server.http_client())
        .build()
        .unwrap()
}

fn cache(server: &FakeServer, secret: &str) -> TokenCache {
    TokenCache::builder(grant(server, secret))
        .refresh_jitter(0.0)
        .build()
}

#[tokio::test(start_paused = true)]
async fn a_new_cache_is_usable_and_says_it_has_no_token_yet() {
    let server = server();
    let cache = cache(&server, SECRET);
    let status = cache.status();
    assert_eq!(status.phase, Phase::Empty);
    assert!(status.is_usable(), "the first read obtains one");
    assert!(!status.needs_attention());
    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "usable": true, "phase": "empty", "expires_in_secs": null, "refreshing": false,
            "rate_limited_for_secs": null, "cooling_down_for_secs": null,
            "consecutive_failures": 0, "last_refresh": null, "last_error": null,
            "decay": null,
        })
    );
    assert_eq!(server.token_calls(), 0, "a status makes no call");
}

#[tokio::test(start_paused = true)]
async fn a_cached_token_reports_its_expiry_and_last_refresh() {
    let server = server();
    let cache = cache(&server, SECRET);
    let before = SystemTime::now();
    cache.header().await.unwrap();
    pass(Duration::from_secs(10)).await;
    let json = serde_json::to_value(cache.status()).unwrap();
    assert_eq!(json["usable"], true);
    assert_eq!(json["phase"], "fresh");
    assert_eq!(json["expires_in_secs"], 90);
    let last = json["last_refresh"].as_u64().unwrap();
    let unix = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    assert!((unix(before)..=unix(SystemTime::now())).contains(&last));
}

#[tokio::test(start_paused = true)]
async fn a_failed_first_refresh_is_not_usable_and_names_its_error_without_the_secret() {
    let server = server();
    let cache = cache(&server, "wrong-Secret-0000");
    cache.header().await.unwrap_err();
    let status = cache.status();
    assert!(!status.is_usable());
    assert!(status.needs_attention());
    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(json["usable"], false);
    assert_eq!(json["consecutive_failures"], 1);
    assert_eq!(json["last_error"]["kind"], "invalid_client");
    let text = json.to_string();
    assert!(
        !text.contains("wrong-Secret-0000") && !text.contains(SECRET),
        "{text}"
    );
    assert!(json["cooling_down_for_secs"].as_u64().is_some());
}

#[tokio::test(start_paused = true)]
async fn a_failing_refresh_with_a_usable_token_stays_usable_but_needs_attention() {
    let server = server();
    let cache = cache(&server, SECRET);
    cache.header().await.unwrap();
    server.set_fault(Some(Fault::Status(503)));
    pass(Duration::from_secs(81)).await; // the refresh ahead starts, and backs off
    for _ in 0..6 {
        pass(Duration::from_secs(1)).await;
    }
    let status = cache.status();
    assert_eq!(status.phase, Phase::Stale);
    assert!(status.is_usable());
    assert!(status.needs_attention());
    assert_eq!(status.last_error.as_ref().unwrap().code(), "server_error");
    // Once the token expires with the endpoint still failing, it is not.
    pass(Duration::from_secs(30)).await;
    cache.header().await.unwrap_err();
    assert!(!cache.status().is_usable());
}

#[tokio::test(start_paused = true)]
async fn tenants_report_the_ones_that_need_attention_and_count_the_rest() {
    let server = server();
    let tenants = TenantCache::new();
    for ok in ["acme", "globex", "initech"] {
        tenants.insert(ok.to_owned(), grant(&server, SECRET));
    }
    tenants.insert("umbrella".to_owned(), grant(&server, "revoked-Secret-1"));
    for tenant in ["acme", "globex", "initech"] {
        tenants.header(tenant).await.unwrap();
    }
    let status = tenants.status();
    assert!(
        status.is_usable(),
        "umbrella was never read: nothing failed yet"
    );
    tenants.header("umbrella").await.unwrap_err();
    let status = tenants.status();
    assert!(!status.is_usable());
    assert_eq!(status.tenants.len(), 4);
    let attention: Vec<_> = status.attention().map(|(k, _)| k.as_str()).collect();
    assert_eq!(attention, ["umbrella"]);
    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(json["usable"], false);
    assert_eq!(json["tenants"], 4);
    assert_eq!(json["unusable"], 1);
    assert_eq!(json["failing"], 1);
    assert_eq!(json["decaying"], 0);
    assert_eq!(json["attention"].as_array().unwrap().len(), 1);
    assert_eq!(json["attention"][0]["tenant"], "umbrella");
    assert_eq!(
        json["attention"][0]["status"]["last_error"]["kind"],
        "invalid_client"
    );
    assert!(!json.to_string().contains("revoked-Secret-1"));
}
