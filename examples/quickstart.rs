//! The quickstart: a client-credentials token kept fresh for many concurrent requests,
//! across several expiries, through a forced 401, a 429 and a 503 — against the embedded
//! fake authorization server on 127.0.0.1.
//!
//! Run: `cargo run --example quickstart`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::header::AUTHORIZATION;
use tokenward::{Action, ClientCredentials, Token, TokenCache};
use tokenward_testkit::{FakeServer, Fault};
use tokio::time::Instant;

const WORKERS: usize = 16;
const RUN_FOR: Duration = Duration::from_secs(10);
const LIFETIME: Duration = Duration::from_secs(4);

#[derive(Default)]
struct Tally {
    requests: AtomicU64,
    retried_after_401: AtomicU64,
    errors: AtomicU64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The fake authorization server and protected resource, on an ephemeral loopback port.
    let server = FakeServer::builder()
        .client("demo-client", "demo-secret")
        .token_lifetime(LIFETIME)
        .build();
    let running = server.listen().await?;

    // The cache: refresh at half the lifetime (jittered), stop using a token 0.5 s before
    // it expires (margins are capped at a tenth of the lifetime: 0.4 s here). Production
    // defaults are 0.8 and 30 s; the demo refreshes earlier to show more refreshes.
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

    println!(
        "tokenward quickstart: {WORKERS} workers for {:.0} s, token lifetime {:.0} s, fake server at {}",
        RUN_FOR.as_secs_f64(),
        LIFETIME.as_secs_f64(),
        running.addr()
    );
    let http = reqwest::Client::new();
    let tally = Arc::new(Tally::default());
    let start = Instant::now();
    let deadline = start + RUN_FOR;

    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (cache, http, tally) = (cache.clone(), http.clone(), Arc::clone(&tally));
            let url = running.resource_url();
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let ok = call_api(&cache, &http, &url, &tally).await;
                    tally.requests.fetch_add(1, Ordering::Relaxed);
                    if !ok {
                        tally.errors.fetch_add(1, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
        })
        .collect();

    // The script of trouble, and a watch on which token the cache holds.
    let mut tokens: Vec<(Duration, &str)> = Vec::new();
    let mut seen: Option<Token> = None;
    let mut revoked = false;
    let mut faults = false;
    let mut why = "first request";
    let mut faults_seen = 0;
    while Instant::now() < deadline {
        let t = start.elapsed();
        if !revoked && t >= Duration::from_millis(2600) {
            server.revoke_all_access_tokens();
            println!(
                "  t={:>4.1} s  the server revokes every access token: requests get 401 invalid_token",
                t.as_secs_f64()
            );
            revoked = true;
            why = "after the forced 401";
        }
        if !faults && t >= Duration::from_millis(3000) {
            server.push_fault(Fault::RateLimited {
                retry_after: Some("1".into()),
            });
            server.push_fault(Fault::Status(503));
            println!(
                "  t={:>4.1} s  the next token calls will meet a 429 (Retry-After: 1) and then a 503",
                t.as_secs_f64()
            );
            faults = true;
        }
        if let Some(current) = cache.cached()
            && seen.as_ref().is_none_or(|s| !Token::ptr_eq(s, &current))
        {
            let label = if tokens.is_empty() {
                "first request"
            } else {
                why
            };
            let faulted = server.counters().faulted;
            let note = if faulted > faults_seen {
                faults_seen = faulted;
                "; its first calls met the 429 and the 503, the cached token served meanwhile"
            } else {
                ""
            };
            println!(
                "  t={:>4.1} s  new token in use ({label}{note})",
                t.as_secs_f64()
            );
            tokens.push((t, label));
            seen = Some(current);
            why = "refresh period";
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for w in workers {
        w.await?;
    }
    running.shutdown().await;

    let counters = server.counters();
    let requests = tally.requests.load(Ordering::Relaxed);
    let errors = tally.errors.load(Ordering::Relaxed);
    let periods = tokens
        .iter()
        .filter(|(_, why)| *why == "refresh period")
        .count();
    println!();
    println!(
        "tokens issued: {} = 1 first + {periods} refresh periods (one successful token call each) + 1 after the forced 401",
        counters.issued
    );
    println!(
        "token calls: {} ({} issued, {} answered with a scripted fault); requests retried once after 401: {}",
        counters.token_requests,
        counters.issued,
        counters.faulted,
        tally.retried_after_401.load(Ordering::Relaxed)
    );
    println!(
        "requests={requests} token_calls={} errors={errors}",
        counters.token_requests
    );
    if errors > 0 {
        std::process::exit(1);
    }
    Ok(())
}

/// One API call: the cached header; on 401 `invalid_token`, invalidate that token (only if
/// it is still cached) and resend once with a fresh one. (The tower layer and the reqwest
/// middleware do exactly this for you.)
async fn call_api(cache: &TokenCache, http: &reqwest::Client, url: &str, tally: &Tally) -> bool {
    let Ok(auth) = cache.header().await else {
        return false;
    };
    let Ok(response) = http
        .get(url)
        .header(AUTHORIZATION, auth.clone())
        .send()
        .await
    else {
        return false;
    };
    if response.status().is_success() {
        return true;
    }
    let action = tokenward::classify(response.status(), response.headers(), None).map(|c| c.action);
    if action != Some(Action::RefreshAndRetryOnce) {
        return false;
    }
    cache.invalidate(&auth);
    tally.retried_after_401.fetch_add(1, Ordering::Relaxed);
    let Ok(fresh) = cache.header().await else {
        return false;
    };
    match http.get(url).header(AUTHORIZATION, fresh).send().await {
        Ok(r) => r.status().is_success(),
        Err(_) => false,
    }
}
