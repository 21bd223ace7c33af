//! Token calls per refresh period for 1, 2, 4 and 8 processes sharing one rotating grant
//! (ideal: one each, whatever the number of processes), on one Redis and on one grant file,
//! through `AuthLayer` and `AuthMiddleware` against the fake server over loopback.
//!
//! Run: `cargo bench -p tokenward-tests --bench fleet` (needs `redis-server`; about 80 s).
//! Figures go to BENCHMARKS.md. Under `cargo test` (no `--bench` argument) it runs two
//! processes only, as a check that it still works.
#![allow(missing_docs, dead_code)]

#[path = "../fleet/run.rs"]
mod run;

use std::time::Duration;

use run::{SECONDS, Shared, periods, run};
use tokenward_testkit::RedisServer;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let redis = RedisServer::start();
    let periods = periods(SECONDS as f64);
    println!(
        "{SECONDS} s with {:?} tokens: {periods} refresh periods",
        run::LIFETIME
    );
    println!("store  processes  token calls  calls/period  requests  failed  reuse");
    let counts: &[usize] = if std::env::args().any(|arg| arg == "--bench") {
        &[1, 2, 4, 8]
    } else {
        &[2]
    };
    for &processes in counts {
        let mut stores = vec![("file", Shared::file())];
        if let Some(redis) = &redis {
            stores.push(("redis", Shared::redis(redis, Duration::from_secs(60))));
        }
        for (name, shared) in stores {
            let r = run(shared, processes, Duration::ZERO, false).await;
            println!(
                "{name:<6} {processes:>9}  {:>11}  {:>12.2}  {:>8}  {:>6}  {:>5}",
                r.token_calls,
                r.token_calls as f64 / periods as f64,
                r.requests,
                r.failed.len(),
                r.reuse_detected
            );
        }
    }
}
