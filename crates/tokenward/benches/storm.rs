//! Storm: 10,000 concurrent callers across a token expiry. Reports token calls and the p50 /
//! p99 latency of `header()` for reads while the token is fresh, inside the refresh (stale)
//! window, and past expiry (callers wait for the one refresh), all in one run.
//!
//! Run: `cargo bench -p tokenward --bench storm` (a plain harness; it prints a table).
#![allow(missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokenward::{Token, TokenCache, grant::from_fn};

const CALLERS: usize = 10_000;
/// The token endpoint's latency.
const FETCH: Duration = Duration::from_millis(20);

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// `CALLERS` tasks each read once, all released at the same moment; returns sorted latencies.
async fn storm(cache: &TokenCache) -> Vec<Duration> {
    let barrier = Arc::new(tokio::sync::Barrier::new(CALLERS));
    let tasks: Vec<_> = (0..CALLERS)
        .map(|_| {
            let (cache, barrier) = (cache.clone(), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                let start = Instant::now();
                cache.header().await.unwrap();
                start.elapsed()
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(CALLERS);
    for t in tasks {
        latencies.push(t.await.unwrap());
    }
    latencies.sort();
    latencies
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&calls);
        // Lifetime 4 s; with the settings below fresh until 2 s, stale until 3.5 s.
        let cache = TokenCache::builder(from_fn(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                tokio::time::sleep(FETCH).await;
                Token::builder(format!("token-{n}"))
                    .expires_in(Duration::from_secs(4))
                    .build()
            }
        }))
        .refresh_fraction(0.5)
        .refresh_jitter(0.0)
        .clock_skew(Duration::from_millis(500))
        .min_refresh_lead(Duration::ZERO)
        .build();

        cache.header().await.unwrap();
        let start = Instant::now();
        let fresh = storm(&cache).await;
        let after_fresh = calls.load(Ordering::SeqCst);

        tokio::time::sleep(Duration::from_millis(2300).saturating_sub(start.elapsed())).await;
        let stale = storm(&cache).await;
        tokio::time::sleep(FETCH * 3).await; // let the background refresh land
        let after_stale = calls.load(Ordering::SeqCst);

        cache.clear(); // as if the token had expired with no traffic in its refresh window
        let expired = storm(&cache).await;
        let after_expired = calls.load(Ordering::SeqCst);

        println!("| {CALLERS} callers | token calls | p50 | p99 | p99 relative to |");
        println!("|---|---|---|---|---|");
        let fresh_p99 = percentile(&fresh, 0.99).as_secs_f64();
        let rows = [
            ("fresh", &fresh, after_fresh - 1, "—".to_owned()),
            (
                "stale (refresh window)",
                &stale,
                after_stale - after_fresh,
                format!(
                    "{:.2}× the fresh p99",
                    percentile(&stale, 0.99).as_secs_f64() / fresh_p99
                ),
            ),
            (
                "expired (wait for the refresh)",
                &expired,
                after_expired - after_stale,
                format!(
                    "{:.2}× the endpoint latency",
                    percentile(&expired, 0.99).as_secs_f64() / FETCH.as_secs_f64()
                ),
            ),
        ];
        for (name, lat, calls, relative) in rows {
            let (p50, p99) = (percentile(lat, 0.5), percentile(lat, 0.99));
            println!(
                "| {name} | {calls} | {:.1} µs | {:.1} µs | {relative} |",
                p50.as_secs_f64() * 1e6,
                p99.as_secs_f64() * 1e6,
            );
        }
        println!("(token endpoint latency {FETCH:?}; a stale read never waits for it)");
    });
}
