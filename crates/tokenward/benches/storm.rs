//! Storm: 10,000 concurrent callers across a token expiry. Reports token calls and the p50 /
//! p99 latency of `header()` for reads while the token is fresh, inside the refresh (stale)
//! window, and past expiry (callers wait for the one refresh), all in one run. Then, with the
//! default configuration: 10,000 callers after an idle period longer than the token's life
//! (refresh-ahead), and 64 callers looping for 20 s over 2 s tokens.
//!
//! Run: `cargo bench -p tokenward --bench storm` (a plain harness; it prints a table).
#![allow(missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokenward::{Token, TokenCache, TokenCacheBuilder, grant::from_fn};

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
        // Lifetime 4 s; with the settings below fresh until 2 s, stale until 3.5 s.
        let (builder, calls) = source(Duration::from_secs(4));
        let cache = builder
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

        idle_burst().await;
        looping().await;
    });
}

/// A cache builder over a counting source of `lifetime` tokens, each call taking `FETCH`.
fn source(lifetime: Duration) -> (TokenCacheBuilder, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let builder = TokenCache::builder(from_fn(move || {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            tokio::time::sleep(FETCH).await;
            Token::builder(format!("token-{n}"))
                .expires_in(lifetime)
                .build()
        }
    }));
    (builder, calls)
}

/// Default configuration, 1 s tokens: one read, nobody reads for 1.5 s, then 10,000 callers.
async fn idle_burst() {
    let (builder, calls) = source(Duration::from_secs(1));
    let cache = builder.build();
    cache.header().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = calls.load(Ordering::SeqCst);
    let burst = storm(&cache).await;
    let during = calls.load(Ordering::SeqCst) - before;
    println!();
    println!(
        "| after an idle 1.5 s (1 s tokens, default config) | token calls while idle | in the burst | p50 | p99 |"
    );
    println!("|---|---|---|---|---|");
    println!(
        "| {CALLERS} callers | {} | {during} | {:.1} µs | {:.1} µs |",
        before - 1,
        percentile(&burst, 0.5).as_secs_f64() * 1e6,
        percentile(&burst, 0.99).as_secs_f64() * 1e6,
    );
}

/// Default configuration, 2 s tokens: 64 tasks read in a loop (a read, then a 1 ms sleep)
/// for 20 s; every token is checked against its expiry.
async fn looping() {
    const RUN: Duration = Duration::from_secs(20);
    let (builder, calls) = source(Duration::from_secs(2));
    let cache = builder.build();
    let start = Instant::now();
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move {
                let (mut longest, mut expired, mut reads) = (Duration::ZERO, 0u64, 0u64);
                while start.elapsed() < RUN {
                    let begin = Instant::now();
                    let token = cache.token().await.unwrap();
                    if reads > 0 {
                        longest = longest.max(begin.elapsed());
                    }
                    expired += u64::from(tokio::time::Instant::now() >= token.expires_at());
                    reads += 1;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                (longest, expired, reads)
            })
        })
        .collect();
    let (mut longest, mut expired, mut reads) = (Duration::ZERO, 0, 0);
    for task in tasks {
        let (l, e, r) = task.await.unwrap();
        longest = longest.max(l);
        expired += e;
        reads += r;
    }
    println!();
    println!(
        "| 64 looping callers, 2 s tokens, 20 s, default config | token calls | reads | expired tokens handed out | longest read after the first | ÷ endpoint latency |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| | {} | {reads} | {expired} | {:.1} µs | {:.3}× |",
        calls.load(Ordering::SeqCst),
        longest.as_secs_f64() * 1e6,
        longest.as_secs_f64() / FETCH.as_secs_f64(),
    );
}
