//! A fleet sharing one rotating grant: OS processes (`fleet_child`), half sending through
//! tokenward-tower's `AuthLayer`, half through tokenward-reqwest's `AuthMiddleware`, against
//! the fake server over loopback (a refresh token rotated on every use; a replay revokes the
//! whole grant). 8 processes on one Redis, and 4 on one grant file, each under the server's
//! reuse grace of 0, 5 s and 60 s: one token call per refresh period, no `invalid_grant`,
//! no failed request, and the grace never used. Then the lock holder is SIGKILLed in the
//! middle of its refresh: the grant survives and another process takes over.
//!
//! The Redis runs skip without `redis-server` unless `TOKENWARD_REQUIRE_REDIS=1` (CI).

mod run;

use std::time::Duration;

use tokenward_testkit::RedisServer;

use run::{Run, SECONDS, Shared, periods, run};

fn check(what: &str, run: &Run, processes: usize, seconds: f64) {
    eprintln!(
        "{what}: {processes} processes, {} requests: {} token calls for {} refresh periods; \
         {} token errors, {} reuse, {} grace used, {} resource rejections",
        run.requests,
        run.token_calls,
        periods(seconds),
        run.token_errors,
        run.reuse_detected,
        run.grace_used,
        run.resource_rejected
    );
    assert!(run.failed.is_empty(), "{what}: {:#?}", run.failed);
    assert!(run.requests > 0, "{what}: no request was sent");
    assert_eq!(
        run.reuse_detected, 0,
        "{what}: a rotated refresh token was replayed"
    );
    assert_eq!(
        run.token_errors, 0,
        "{what}: the token endpoint refused a request"
    );
    assert_eq!(
        run.grace_used, 0,
        "{what}: a process relied on the reuse grace"
    );
    assert!(
        run.token_calls <= periods(seconds) + 1,
        "{what}: {} token calls for {} periods (ideal: one each, not {processes}×)",
        run.token_calls,
        periods(seconds)
    );
}

const GRACES: [Duration; 3] = [
    Duration::ZERO,
    Duration::from_secs(5),
    Duration::from_secs(60),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_processes_on_one_redis_make_one_call_per_period_under_every_grace() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    for grace in GRACES {
        let run = run(
            Shared::redis(&redis, Duration::from_secs(60)),
            8,
            grace,
            false,
        )
        .await;
        check(&format!("Redis, grace {grace:?}"), &run, 8, SECONDS as f64);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_on_one_grant_file_make_one_call_per_period_under_every_grace() {
    for grace in GRACES {
        let run = run(Shared::file(), 4, grace, false).await;
        check(&format!("file, grace {grace:?}"), &run, 4, SECONDS as f64);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_redis_lock_holder_is_taken_over_within_the_lock_ttl() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let ttl = Duration::from_secs(3);
    let run = run(Shared::redis(&redis, ttl), 8, Duration::ZERO, true).await;
    let takeover = run.takeover.unwrap();
    eprintln!("Redis: the grant was refreshed {takeover:?} after its lock holder was killed");
    check("Redis, holder killed", &run, 7, SECONDS as f64);
    assert!(takeover <= ttl + Duration::from_secs(1), "{takeover:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_file_lock_holder_is_taken_over_at_once() {
    let run = run(Shared::file(), 4, Duration::ZERO, true).await;
    let takeover = run.takeover.unwrap();
    eprintln!("file: the grant was refreshed {takeover:?} after its lock holder was killed");
    check("file, holder killed", &run, 3, SECONDS as f64);
    assert!(takeover <= Duration::from_secs(1), "{takeover:?}");
}
