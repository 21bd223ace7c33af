//! Tenants at scale: the memory a tenant with a cached token takes, fetched and then read
//! (measured first, before anything else has allocated), inserting 100,000 tenants one by
//! one at run time, one insert into maps of 1,000 and 100,000, and `header(random key)` for a
//! cached tenant beside a plain concurrent map's lookup and clone (one task, and 256 tasks on
//! two threads). All in one run; it prints tables.
//!
//! Run: `cargo bench -p tokenward --bench tenants` (a plain harness). Under `cargo test`
//! (no `--bench` argument) it runs once at small sizes, as a check that it still works.
#![allow(missing_docs)]

use std::alloc::System;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::HeaderValue;
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};
use tokenward::{TenantCache, Token, grant::from_fn};

/// Counts the bytes held on the heap, for the memory per tenant.
#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes on the heap now.
fn held() -> isize {
    let stats = GLOBAL.stats();
    stats.bytes_allocated as isize - stats.bytes_deallocated as isize + stats.bytes_reallocated
}

const TASKS: usize = 256;

/// The sizes measured: the under `cargo bench`, small ones under `cargo test`.
struct Scale {
    /// Tenants in the map, for the memory and the inserts.
    counts: &'static [usize],
    /// Tenants in the map, for the reads.
    sizes: &'static [usize],
    /// Reads per measurement.
    reads: usize,
}

impl Scale {
    fn from_args() -> Scale {
        if std::env::args().any(|arg| arg == "--bench") {
            Scale {
                counts: &[1_000, 10_000, 100_000],
                sizes: &[100, 1_000, 10_000, 100_000],
                reads: 2_000_000,
            }
        } else {
            Scale {
                counts: &[100, 1_000],
                sizes: &[100, 1_000],
                reads: 10 * TASKS,
            }
        }
    }
}

fn key(i: usize) -> String {
    format!("tenant-{i:06}")
}

/// A tenant's credentials: a source that issues a 40-byte token valid for a day.
fn source(i: usize) -> impl tokenward::TokenSource {
    from_fn(move || async move {
        Token::builder(format!("at_{i:06}_{}", "x".repeat(30)))
            .expires_in(Duration::from_secs(86_400))
            .build()
    })
}

fn filled(n: usize) -> TenantCache<String> {
    let tenants = TenantCache::new();
    for i in 0..n {
        tenants.insert(key(i), source(i));
    }
    tenants
}

/// A cheap random walk over `0..n` (xorshift), the same for both maps.
fn walk(n: usize, seed: u64) -> impl FnMut() -> usize {
    let mut x = seed | 1;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % n as u64) as usize
    }
}

fn per_op(total: Duration, ops: usize) -> f64 {
    total.as_nanos() as f64 / ops as f64
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn main() {
    let Scale {
        counts,
        sizes,
        reads,
    } = Scale::from_args();

    println!("## Memory per tenant with a cached token\n");
    println!(
        "| tenants | bytes per tenant, token fetched | once read too (refresh-ahead armed) | of which the key and the token |"
    );
    println!("|---|---|---|---|");
    for &n in counts {
        // A runtime of its own: the refresh-ahead timers go with it, before what follows.
        let rt = runtime();
        let before = held();
        let tenants = filled(n);
        rt.block_on(async {
            // The first call fetches: the token is cached but nobody has read it yet.
            for i in 0..n {
                tenants.header(key(i).as_str()).await.unwrap();
            }
        });
        let fetched = (held() - before) as f64 / n as f64;
        rt.block_on(async {
            // A read in the token's lifetime arms its refresh-ahead timer.
            for i in 0..n {
                tenants.header(key(i).as_str()).await.unwrap();
            }
        });
        let read = (held() - before) as f64 / n as f64;
        // The key's heap bytes, and the token's text (as the source issued it).
        let own = (key(0).len() + 40) as f64;
        println!("| {n} | {fetched:.0} B | {read:.0} B | {own:.0} B |");
        drop(tenants);
    }
    println!();

    println!("## Inserts\n");
    println!("| tenants | all inserted one by one | one more insert (mean of 10,000) |");
    println!("|---|---|---|");
    let mut one_insert = Vec::new();
    for &n in counts {
        let tenants = TenantCache::new();
        let start = Instant::now();
        for i in 0..n {
            tenants.insert(key(i), source(i));
        }
        let all = start.elapsed();
        // Warmed up first, then measured.
        for j in 10_000..20_000 {
            tenants.insert(key(n + j), source(n + j));
            tenants.remove(key(n + j).as_str());
        }
        let mut spent = Duration::ZERO;
        for j in 0..10_000 {
            let extra = key(n + j);
            let start = Instant::now();
            tenants.insert(extra.clone(), source(n + j));
            spent += start.elapsed();
            tenants.remove(extra.as_str());
        }
        let one = per_op(spent, 10_000);
        one_insert.push(one);
        println!(
            "| {n} | {:.1} ms | {:.0} ns |",
            all.as_secs_f64() * 1e3,
            one
        );
    }
    println!(
        "\none insert at {} ÷ at {}: {:.2}×\n",
        counts[counts.len() - 1],
        counts[0],
        one_insert[one_insert.len() - 1] / one_insert[0]
    );

    let rt = runtime();
    println!("## `header(random key)`, one task\n");
    println!(
        "| tenants | `TenantCache::header` | papaya lookup + clone | ÷ | papaya lookup + clone + clock | ÷ |"
    );
    println!("|---|---|---|---|---|---|");
    for &n in sizes {
        let tenants = filled(n);
        let plain: papaya::HashMap<String, HeaderValue> = papaya::HashMap::new();
        rt.block_on(async {
            for i in 0..n {
                let header = tenants.header(key(i).as_str()).await.unwrap();
                plain.pin().insert(key(i), header);
            }
        });
        let keys: Vec<String> = (0..n).map(key).collect();
        let ours = rt.block_on(async {
            let mut next = walk(n, 7);
            let start = Instant::now();
            for _ in 0..reads {
                black_box(tenants.header(keys[next()].as_str()).await.unwrap());
            }
            per_op(start.elapsed(), reads)
        });
        let lookup = {
            let mut next = walk(n, 7);
            let start = Instant::now();
            for _ in 0..reads {
                black_box(plain.pin().get(keys[next()].as_str()).cloned().unwrap());
            }
            per_op(start.elapsed(), reads)
        };
        let clocked = {
            let mut next = walk(n, 7);
            let start = Instant::now();
            for _ in 0..reads {
                black_box(tokio::time::Instant::now());
                black_box(plain.pin().get(keys[next()].as_str()).cloned().unwrap());
            }
            per_op(start.elapsed(), reads)
        };
        println!(
            "| {n} | {ours:.0} ns | {lookup:.0} ns | {:.2}× | {clocked:.0} ns | {:.2}× |",
            ours / lookup,
            ours / clocked
        );
    }

    println!("\n## `header(random key)`, {TASKS} tasks on 2 threads, reads per second\n");
    println!("| tenants | `TenantCache::header` | papaya lookup + clone | ÷ |");
    println!("|---|---|---|---|");
    for &n in sizes {
        let tenants = filled(n);
        let plain: Arc<papaya::HashMap<String, HeaderValue>> = Arc::new(papaya::HashMap::new());
        let keys: Arc<Vec<String>> = Arc::new((0..n).map(key).collect());
        rt.block_on(async {
            for i in 0..n {
                let header = tenants.header(key(i).as_str()).await.unwrap();
                plain.pin().insert(key(i), header);
            }
        });
        let per_task = reads / TASKS;
        let ours = rt.block_on(async {
            let start = Instant::now();
            let tasks: Vec<_> = (0..TASKS)
                .map(|t| {
                    let (tenants, keys) = (tenants.clone(), Arc::clone(&keys));
                    tokio::spawn(async move {
                        let mut next = walk(keys.len(), t as u64 + 1);
                        for r in 0..per_task {
                            black_box(tenants.header(keys[next()].as_str()).await.unwrap());
                            if r % 64 == 0 {
                                tokio::task::yield_now().await;
                            }
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
            (per_task * TASKS) as f64 / start.elapsed().as_secs_f64()
        });
        let lookup = rt.block_on(async {
            let start = Instant::now();
            let tasks: Vec<_> = (0..TASKS)
                .map(|t| {
                    let (plain, keys) = (Arc::clone(&plain), Arc::clone(&keys));
                    tokio::spawn(async move {
                        let mut next = walk(keys.len(), t as u64 + 1);
                        for r in 0..per_task {
                            black_box(plain.pin().get(keys[next()].as_str()).cloned().unwrap());
                            if r % 64 == 0 {
                                tokio::task::yield_now().await;
                            }
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
            (per_task * TASKS) as f64 / start.elapsed().as_secs_f64()
        });
        println!(
            "| {n} | {:.1} M/s | {:.1} M/s | {:.2}× |",
            ours / 1e6,
            lookup / 1e6,
            ours / lookup
        );
    }
}
