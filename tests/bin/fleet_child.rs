//! One replica of the fleet tests: sends requests to a protected resource through
//! tokenward-tower's `AuthLayer` (over hyper) or tokenward-reqwest's `AuthMiddleware`, with a
//! rotating refresh grant it shares with its siblings through Redis or a grant file.
//!
//! Usage: `fleet_child <tower|reqwest> <token_url> <resource_url> <seconds> <callers>`, with
//! the store and the client in the environment:
//! - `FLEET_CLIENT_ID`, `FLEET_CLIENT_SECRET`;
//! - `FLEET_STORE=redis` with `FLEET_REDIS_URL`, `FLEET_NAME`, `FLEET_KEY` (base64) and
//!   `FLEET_LOCK_TTL_MS`; or `FLEET_STORE=file` with `FLEET_FILE`;
//! - `FLEET_PAUSE_MS`: each caller's pause between two requests (default 50);
//! - `FLEET_BARRIER=1`: wait for a line on stdin before the first request, so that siblings
//!   started one after the other begin together.
//!
//! Prints `requests=N failed=N` and exits 0 when every request was answered with a 2xx.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokenward::store::{FileStore, TokenStore};
use tokenward::{RefreshTokenGrant, TokenCache};
use tokenward_redis::{EncryptionKey, RedisStore};
use tower::{Layer, ServiceExt};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        eprintln!("{name} is not set");
        std::process::exit(64)
    })
}

fn store() -> Arc<dyn TokenStore> {
    match env("FLEET_STORE").as_str() {
        "redis" => {
            let key = EncryptionKey::from_base64(&env("FLEET_KEY")).unwrap_or_else(|e| {
                eprintln!("FLEET_KEY: {e}");
                std::process::exit(64)
            });
            let ttl = env("FLEET_LOCK_TTL_MS").parse().unwrap_or(60_000);
            let store = RedisStore::builder(env("FLEET_REDIS_URL"), env("FLEET_NAME"))
                .encryption_key(key)
                .share_access_token(true)
                .lock_ttl(Duration::from_millis(ttl))
                .build()
                .unwrap_or_else(|e| {
                    eprintln!("bad Redis configuration: {e}");
                    std::process::exit(64)
                });
            Arc::new(store)
        }
        "file" => Arc::new(FileStore::new(env("FLEET_FILE")).share_access_token(true)),
        other => {
            eprintln!("FLEET_STORE={other}: redis or file");
            std::process::exit(64)
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, via, token_url, resource_url, seconds, callers] = args.as_slice() else {
        eprintln!(
            "usage: fleet_child <tower|reqwest> <token_url> <resource_url> <seconds> <callers>"
        );
        std::process::exit(64);
    };
    let (Ok(seconds), Ok(callers)) = (seconds.parse::<u64>(), callers.parse::<usize>()) else {
        eprintln!("seconds and callers are numbers");
        std::process::exit(64);
    };
    let grant = RefreshTokenGrant::from_store(token_url, env("FLEET_CLIENT_ID"), store())
        .client_secret(env("FLEET_CLIENT_SECRET"))
        .build()
        .unwrap_or_else(|e| {
            eprintln!("bad configuration: {e}");
            std::process::exit(64)
        });
    let cache = TokenCache::new(grant);

    let tower = {
        let hyper = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        tokenward_tower::AuthLayer::new(cache.clone()).layer(hyper)
    };
    let reqwest = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(tokenward_reqwest::AuthMiddleware::new(cache.clone()))
        .build();
    let via_tower = match via.as_str() {
        "tower" => true,
        "reqwest" => false,
        other => {
            eprintln!("{other}: tower or reqwest");
            std::process::exit(64)
        }
    };

    let pause = Duration::from_millis(
        std::env::var("FLEET_PAUSE_MS")
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or(50),
    );
    if std::env::var("FLEET_BARRIER").is_ok_and(|v| v == "1") {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    }
    let (requests, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let end = tokio::time::Instant::now() + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let (tower, reqwest, url) = (tower.clone(), reqwest.clone(), resource_url.clone());
            let (requests, failed) = (Arc::clone(&requests), Arc::clone(&failed));
            tokio::spawn(async move {
                while tokio::time::Instant::now() < end {
                    let outcome = if via_tower {
                        let request = http::Request::get(&url).body(Full::default()).unwrap();
                        match tower.clone().oneshot(request).await {
                            Ok(response) => {
                                let status = response.status();
                                let _ = response.into_body().collect().await;
                                Ok(status)
                            }
                            Err(e) => Err(e.to_string()),
                        }
                    } else {
                        match reqwest.get(&url).send().await {
                            Ok(response) => {
                                let status = response.status();
                                let _ = response.bytes().await;
                                Ok(status)
                            }
                            Err(e) => Err(e.to_string()),
                        }
                    };
                    requests.fetch_add(1, Ordering::Relaxed);
                    match outcome {
                        Ok(status) if status.is_success() => {}
                        Ok(status) => {
                            if failed.fetch_add(1, Ordering::Relaxed) < 3 {
                                eprintln!("request failed: {status}");
                            }
                        }
                        Err(e) => {
                            if failed.fetch_add(1, Ordering::Relaxed) < 3 {
                                eprintln!("request failed: {e}");
                            }
                        }
                    }
                    tokio::time::sleep(pause).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let (requests, failed) = (
        requests.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    println!("requests={requests} failed={failed}");
    std::process::exit(if failed == 0 && requests > 0 { 0 } else { 2 });
}
