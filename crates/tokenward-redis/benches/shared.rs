//! Two figures for a shared grant:
//!
//! 1. A fresh read (`TokenCache::header` on a usable token) from a cache whose grant shares
//!    through a `FileStore` or a `RedisStore`, against the floor (an `ArcSwap` load, a
//!    `HeaderValue` clone and a clock read) and against the same grant without a store:
//!    sharing adds nothing to the hot read, which never touches the store. Paired: each
//!    round times every variant back to back, and the ratios are taken within a round.
//! 2. The hand-off: how long a process waiting for the exchange lock takes to see the new
//!    grant after the holder persists it and releases the lock, for holds of 20 ms and
//!    500 ms (waiters poll, 5 ms doubling to 100 ms).
//!
//! Run: `cargo bench -p tokenward-redis --bench shared` (starts a `redis-server`; without
//! one, the Redis rows are left out). Figures go to BENCHMARKS.md.
#![allow(missing_docs)]

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http::HeaderValue;
use secrecy::ExposeSecret;
use tokenward::store::{FileStore, StoredGrant, TokenStore};
use tokenward::{RefreshTokenGrant, TokenCache};
use tokenward_redis::{EncryptionKey, RedisStore};
use tokenward_testkit::{FakeServer, RedisServer};

const READS: u32 = 200_000;
const ROUNDS: usize = 15;
const HANDOFFS: usize = 30;

fn ready<F: Future>(fut: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(fut).poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("expected a ready future"),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn percentile(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn redis_store(redis: &RedisServer, name: &str, key: &str) -> RedisStore {
    RedisStore::builder(redis.url(), name)
        .encryption_key(EncryptionKey::from_base64(key).unwrap())
        .share_access_token(true)
        .build()
        .unwrap()
}

async fn cache_over(server: &FakeServer, store: Option<Arc<dyn TokenStore>>) -> TokenCache {
    let seed = server.issue_refresh_token("bench-client", "jobs.read");
    let builder = match store {
        Some(store) => {
            store
                .compare_and_swap(None, StoredGrant::new(seed))
                .await
                .unwrap();
            RefreshTokenGrant::from_store(server.token_url(), "bench-client", store)
        }
        None => RefreshTokenGrant::builder(server.token_url(), "bench-client", seed),
    };
    let grant = builder
        .client_secret("bench-secret")
        .http_client(server.http_client())
        .build()
        .unwrap();
    let cache = TokenCache::new(grant);
    cache.header().await.unwrap();
    cache
}

fn time(mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..READS {
        f();
    }
    start.elapsed().as_secs_f64() / f64::from(READS) * 1e9
}

/// How long after the holder's persist + release a waiter has the lock and the new grant.
async fn handoff(
    holder: &dyn TokenStore,
    waiter: Arc<dyn TokenStore>,
    hold: Duration,
) -> Vec<Duration> {
    let mut current = holder.load().await.unwrap().unwrap().refresh_token;
    let mut seen = Vec::new();
    for i in 0..HANDOFFS {
        let lock = holder.lock_exchange().await.unwrap();
        let w = Arc::clone(&waiter);
        let waiting = tokio::spawn(async move {
            let _lock = w.lock_exchange().await.unwrap();
            let grant = w.load().await.unwrap().unwrap();
            (
                Instant::now(),
                grant.refresh_token.expose_secret().to_owned(),
            )
        });
        tokio::time::sleep(hold).await;
        let next = format!("rt-handoff-{i}");
        holder
            .compare_and_swap(Some(&current), StoredGrant::new(next.clone()))
            .await
            .unwrap();
        let persisted = Instant::now();
        drop(lock);
        let (at, got) = waiting.await.unwrap();
        assert_eq!(got, next);
        seen.push(at.saturating_duration_since(persisted));
        current = secrecy::SecretString::from(next);
    }
    seen
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let redis = RedisServer::start();
    let server = FakeServer::builder()
        .client("bench-client", "bench-secret")
        .token_lifetime(Duration::from_secs(3600))
        .build();
    let dir = std::env::temp_dir().join(format!("tokenward-bench-shared-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = EncryptionKey::generate().to_base64();

    let mut caches = vec![("no store", rt.block_on(cache_over(&server, None)))];
    caches.push((
        "FileStore, shared",
        rt.block_on(cache_over(
            &server,
            Some(Arc::new(
                FileStore::new(dir.join("read.json")).share_access_token(true),
            )),
        )),
    ));
    if let Some(redis) = &redis {
        caches.push((
            "RedisStore, shared",
            rt.block_on(cache_over(
                &server,
                Some(Arc::new(redis_store(redis, "read", key.expose_secret()))),
            )),
        ));
    }

    let header = caches[0].1.cached().unwrap().header_value().clone();
    let floor = ArcSwap::from_pointee(header);
    let _enter = rt.enter();
    let mut per_round: Vec<Vec<f64>> = vec![Vec::new(); caches.len() + 1];
    for _ in 0..ROUNDS {
        per_round[0].push(time(|| {
            let h = floor.load();
            black_box(tokio::time::Instant::now());
            black_box(HeaderValue::clone(&h));
        }));
        for (i, (_, cache)) in caches.iter().enumerate() {
            per_round[i + 1].push(time(|| {
                black_box(ready(cache.header()).unwrap());
            }));
        }
    }
    println!("fresh read, {ROUNDS} rounds of {READS} reads each, medians of per-round ratios:");
    println!("  floor: {:.1} ns", median(per_round[0].clone()));
    for (i, (name, _)) in caches.iter().enumerate() {
        let to_floor: Vec<f64> = (0..ROUNDS)
            .map(|r| per_round[i + 1][r] / per_round[0][r])
            .collect();
        let to_plain: Vec<f64> = (0..ROUNDS)
            .map(|r| per_round[i + 1][r] / per_round[1][r])
            .collect();
        println!(
            "  {name:<20} {:.1} ns  ×{:.2} the floor  ×{:.2} no store",
            median(per_round[i + 1].clone()),
            median(to_floor),
            median(to_plain)
        );
    }
    drop(_enter);

    println!(
        "hand-off ({HANDOFFS} each): persisted + released → the waiter has the lock and the new grant"
    );
    for hold in [Duration::from_millis(20), Duration::from_millis(500)] {
        let file = rt.block_on(async {
            let holder = FileStore::new(dir.join("handoff.json"));
            let _ = std::fs::remove_file(dir.join("handoff.json"));
            holder
                .compare_and_swap(None, StoredGrant::new("rt-start"))
                .await
                .unwrap();
            handoff(
                &holder,
                Arc::new(FileStore::new(dir.join("handoff.json"))),
                hold,
            )
            .await
        });
        report("FileStore", hold, file);
        if let Some(redis) = &redis {
            let name = format!("handoff-{}", hold.as_millis());
            let seen = rt.block_on(async {
                let holder = redis_store(redis, &name, key.expose_secret());
                holder
                    .compare_and_swap(None, StoredGrant::new("rt-start"))
                    .await
                    .unwrap();
                let waiter = redis_store(redis, &name, key.expose_secret());
                handoff(&holder, Arc::new(waiter), hold).await
            });
            report("RedisStore", hold, seen);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn report(name: &str, hold: Duration, seen: Vec<Duration>) {
    println!(
        "  {name:<10} held {hold:>6?}: median {:>9.1?}  p90 {:>9.1?}  max {:>9.1?}",
        percentile(seen.clone(), 0.5),
        percentile(seen.clone(), 0.9),
        percentile(seen, 1.0)
    );
}
