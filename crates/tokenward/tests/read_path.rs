//! The read path is correct by itself: every read checks the token against the clock, on
//! any runtime, after the one that filled the cache is gone, and from a thread with none;
//! refresh-ahead only makes refreshes earlier.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Scripted, Step, pass, settle};
use tokenward::grant::from_fn;
use tokenward::timing::Backoff;
use tokenward::{CacheConfig, Error, RefreshAhead, TenantCache, Token, TokenCache};
use tokio::runtime::{Builder, Runtime};
use tokio::time::Instant;

fn paused() -> Runtime {
    Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

fn real_time() -> Runtime {
    Builder::new_current_thread().enable_time().build().unwrap()
}

#[test]
fn a_cache_filled_on_a_dropped_runtime_never_serves_its_expired_token() {
    let source = Scripted::new(Duration::from_secs(1));
    let cache = TokenCache::new(source.clone());
    let setup = paused();
    let old = setup.block_on(cache.header()).unwrap();
    assert_eq!(old, "Bearer token-1");
    drop(setup); // a setup runtime, a test fixture, a block_on helper

    paused().block_on(async {
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(cache.try_header().is_none(), "expired: not served");
        assert_eq!(cache.header().await.unwrap(), "Bearer token-2");
    });
    assert_eq!(source.calls(), 2);
}

#[test]
fn a_cache_filled_on_an_idle_runtime_never_serves_its_expired_token() {
    let source = Scripted::new(Duration::from_secs(1));
    let cache = TokenCache::new(source.clone());
    // Alive, but nothing drives it: its timers never fire.
    let idle = real_time();
    let old = idle.block_on(cache.header()).unwrap();

    paused().block_on(async {
        tokio::time::advance(Duration::from_secs(2)).await;
        let new = cache.header().await.unwrap();
        assert_ne!(new, old, "the expired token is never handed out");
        assert_eq!(new, "Bearer token-2");
    });
    drop(idle);
}

#[test]
fn a_blocked_current_thread_runtime_reads_past_expiry_get_a_new_token() {
    let source = Scripted::new(Duration::from_secs(1));
    let cache = TokenCache::new(source.clone());
    real_time().block_on(async {
        let old = cache.header().await.unwrap();
        // Synchronous code blocks the runtime past the token's expiry: no timer can run.
        std::thread::sleep(Duration::from_millis(1_100));
        assert!(cache.try_header().is_none());
        let new = cache.header().await.unwrap();
        assert_ne!(new, old);
        assert!(Instant::now() < cache.token().await.unwrap().expires_at());
    });
}

/// Outside any runtime nothing can refresh: a read that needs a token says so, and does not
/// panic.
#[test]
fn reading_an_empty_cache_without_a_runtime_is_an_error_not_a_panic() {
    let cache = TokenCache::new(Scripted::new(Duration::from_secs(60)));
    let read = std::thread::spawn(move || futures_executor(cache.header()))
        .join()
        .expect("no panic");
    assert!(matches!(read, Err(Error::Config(_))), "{read:?}");
}

/// Polls a future to completion on this thread, without a Tokio runtime.
fn futures_executor<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::yield_now();
    }
}

#[test]
fn try_header_from_a_thread_without_a_runtime() {
    let source = Scripted::new(Duration::from_secs(1));
    let cache = TokenCache::new(source.clone());
    real_time().block_on(cache.header()).unwrap();
    let reader = cache.clone();
    let (fresh, expired) = std::thread::spawn(move || {
        let fresh = reader.try_header();
        std::thread::sleep(Duration::from_millis(1_100));
        (fresh, reader.try_header())
    })
    .join()
    .unwrap();
    assert_eq!(
        fresh.unwrap(),
        "Bearer token-1",
        "usable: served, no runtime needed"
    );
    assert!(expired.is_none(), "expired: never served");
    assert_eq!(source.calls(), 1, "no runtime, no refresh");
}

/// 64 tasks read in a loop for 20 s of 2 s tokens from an endpoint that takes 20 ms: no
/// token handed out is past its expiry, and after the first token nobody waits.
#[tokio::test(start_paused = true)]
async fn looping_callers_with_short_tokens_never_wait_and_never_get_an_expired_token() {
    let source = Scripted::new(Duration::from_secs(2));
    source.otherwise(Step::Delay(Duration::from_millis(20)));
    let cache = TokenCache::new(source.clone());
    cache.header().await.unwrap();
    let end = Instant::now() + Duration::from_secs(20);
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let cache = cache.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(i)).await;
                let mut longest = Duration::ZERO;
                let mut reads = 0u32;
                while Instant::now() < end {
                    let before = Instant::now();
                    let token = cache.token().await.unwrap();
                    let now = Instant::now();
                    assert!(now < token.expires_at(), "an expired token was handed out");
                    longest = longest.max(now - before);
                    reads += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                (longest, reads)
            })
        })
        .collect();
    for task in tasks {
        let (longest, reads) = task.await.unwrap();
        assert_eq!(longest, Duration::ZERO, "no caller waited on the endpoint");
        assert!(reads > 1_000);
    }
    // A refresh every 0.8 × 2 s less up to 5 % jitter: at most 20 / 1.52 + the first.
    let calls = source.calls();
    assert!((12..=14).contains(&calls), "token calls: {calls}");
}

/// A 1 s token nobody reads is refreshed ahead, so the burst after the quiet period finds a
/// fresh token: 10,000 callers at 1.5 s, no token call among them, nobody waits.
#[tokio::test(start_paused = true)]
async fn an_idle_cache_refreshes_ahead_so_a_burst_never_waits() {
    let source = Scripted::new(Duration::from_secs(1));
    source.otherwise(Step::Delay(Duration::from_millis(20)));
    let cache = TokenCache::new(source.clone());
    cache.header().await.unwrap();
    assert_eq!(source.calls(), 1);

    // Nobody reads; at 0.8 s the timer refreshes. (Time moves in steps, so that what is due
    // runs when it is due.)
    for _ in 0..15 {
        pass(Duration::from_millis(100)).await;
    }
    assert_eq!(source.calls(), 2, "refreshed ahead, with no reader");

    let start = Instant::now();
    let tasks: Vec<_> = (0..10_000)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.header().await.unwrap() })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), "Bearer token-2");
    }
    assert_eq!(Instant::now(), start, "nobody waited for the endpoint");
    assert_eq!(source.calls(), 2, "no token call in the burst");
}

#[tokio::test(start_paused = true)]
async fn on_demand_caches_do_not_refresh_ahead() {
    let source = Scripted::new(Duration::from_secs(10));
    let cache = TokenCache::builder(source.clone())
        .refresh_ahead(RefreshAhead::OnDemand)
        .build();
    cache.header().await.unwrap();
    pass(Duration::from_secs(20)).await;
    assert_eq!(source.calls(), 1);
    assert!(cache.try_header().is_none());
    cache.header().await.unwrap();
    assert_eq!(source.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn tenants_refresh_ahead_only_while_read() {
    let (read, idle) = (
        Scripted::new(Duration::from_secs(10)),
        Scripted::new(Duration::from_secs(10)),
    );
    let tenants: TenantCache<&str> = TenantCache::builder()
        .tenant("read", read.clone())
        .tenant("idle", idle.clone())
        .build();
    tenants.header("read").await.unwrap();
    tenants.header("idle").await.unwrap();
    pass(Duration::from_secs(1)).await;
    tenants.header("read").await.unwrap(); // read during its token's lifetime
    pass(Duration::from_secs(8)).await; // past refresh_at (8 s)
    assert_eq!(read.calls(), 2, "read: refreshed ahead");
    assert_eq!(idle.calls(), 1, "idle: no background call");
    // The new token was not read: no further refresh ahead.
    pass(Duration::from_secs(30)).await;
    assert_eq!(read.calls(), 2);
    assert_eq!(idle.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_refresh_ahead_timer_never_keeps_a_dropped_cache_alive() {
    let marker = Arc::new(());
    let held = Arc::clone(&marker);
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let cache = TokenCache::new(from_fn(move || {
        let _held = &held;
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async {
            Token::builder("t")
                .expires_in(Duration::from_secs(10))
                .build()
        }
    }));
    cache.header().await.unwrap();
    settle().await;
    assert_eq!(Arc::strong_count(&marker), 2, "the cache's source holds it");
    drop(cache);
    settle().await;
    assert_eq!(
        Arc::strong_count(&marker),
        1,
        "dropped with the last handle"
    );
    pass(Duration::from_secs(60)).await;
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "no refresh after the drop"
    );
}

/// A refresh started on a runtime that is then never driven again (a `block_on` helper that
/// gave up): callers on other runtimes are not held by it beyond its deadline; they start
/// their own refresh.
#[test]
fn a_refresh_stranded_on_an_undriven_runtime_does_not_hold_other_callers() {
    let source = Scripted::new(Duration::from_secs(3600));
    source.then([Step::Delay(Duration::from_secs(60))]);
    let cache = TokenCache::builder(source.clone())
        .refresh_deadline(Duration::from_secs(5))
        .build();
    let stranded = paused();
    stranded.block_on(async {
        // The caller gives up at once; the refresh it started stays on this runtime.
        let gave_up = tokio::time::timeout(Duration::from_millis(1), cache.header()).await;
        assert!(gave_up.is_err());
    });
    assert!(cache.status().refreshing);

    paused().block_on(async {
        let start = Instant::now();
        let header = tokio::time::timeout(Duration::from_secs(60), cache.header())
            .await
            .expect("held by a refresh nobody runs");
        // The caller waits out the stranded refresh's deadline and grace, then starts a
        // refresh of its own, on this runtime.
        assert_eq!(header.unwrap(), "Bearer token-1");
        assert!(Instant::now() - start <= Duration::from_secs(6));
        // Stale and fresh reads are not held by the stranded one either.
        assert!(cache.try_header().is_some());
    });
    assert_eq!(source.calls(), 2);
    drop(stranded);
}

/// A refresh ahead that fails is tried again when its cool-down ends, still ahead of the
/// expiry, with nobody reading.
#[tokio::test(start_paused = true)]
async fn a_failed_refresh_ahead_is_tried_again_before_the_expiry() {
    let source = Scripted::new(Duration::from_secs(10));
    // One attempt per refresh, so the failure ends the refresh (and opens a cool-down under
    // 0.4 s); fresh until 8 s, served until 9 s.
    let mut config = CacheConfig::default();
    config.cool_down = Backoff::new(Duration::from_millis(400), Duration::from_secs(1));
    let cache = TokenCache::builder(source.clone())
        .config(config)
        .refresh_jitter(0.0)
        .max_attempts(1)
        .build();
    cache.header().await.unwrap();
    source.then([Step::Fail(common::server_error(500))]);
    // Nobody reads.
    for _ in 0..89 {
        pass(Duration::from_millis(100)).await;
    }
    assert_eq!(
        source.calls(),
        3,
        "the first token, the failed refresh, the retry"
    );
    assert_eq!(cache.status().consecutive_failures, 0);
    assert_eq!(cache.try_header().unwrap(), "Bearer token-2");
}

/// An `IfRead` cache (fresh until 80 s, served until 90 s) whose token was fetched and
/// not read, then a refresh of it met a 429 window that ends at 85 s, past `refresh_at`.
async fn fetched_then_rate_limited_until_85_s() -> (Scripted, TokenCache) {
    let source = Scripted::new(Duration::from_secs(100));
    let mut config = CacheConfig::default();
    config.max_retry_after = Duration::from_secs(200);
    let cache = TokenCache::builder(source.clone())
        .config(config)
        .refresh_ahead(RefreshAhead::IfRead)
        .refresh_jitter(0.0)
        .clock_skew(Duration::from_secs(10))
        .min_refresh_lead(Duration::ZERO)
        .max_attempts(1)
        .build();
    cache.force_refresh().await.unwrap();
    source.then([Step::Fail(common::rate_limited(85))]);
    assert!(matches!(
        cache.force_refresh().await,
        Err(Error::RateLimited { .. })
    ));
    assert_eq!(source.calls(), 2);
    (source, cache)
}

/// Read first while fresh: the refresh ahead waits for the window to end, then happens.
#[tokio::test(start_paused = true)]
async fn a_token_first_read_before_a_429_window_ends_is_refreshed_ahead_when_it_ends() {
    let (source, cache) = fetched_then_rate_limited_until_85_s().await;
    pass(Duration::from_secs(1)).await;
    assert_eq!(cache.try_header().unwrap(), "Bearer token-1");
    pass(Duration::from_secs(83)).await; // 84 s: past refresh_at, still in the window
    assert_eq!(source.calls(), 2, "no request inside the 429 window");
    pass(Duration::from_secs(2)).await; // 86 s
    assert_eq!(source.calls(), 3, "refreshed ahead once the window ended");
    assert_eq!(cache.try_header().unwrap(), "Bearer token-2");
}

/// Read first while stale and inside the window: no refresh can start then, and one starts
/// when the window ends, with nobody reading again.
#[tokio::test(start_paused = true)]
async fn a_token_first_read_stale_inside_a_429_window_is_refreshed_when_it_ends() {
    let (source, cache) = fetched_then_rate_limited_until_85_s().await;
    pass(Duration::from_secs(82)).await;
    assert_eq!(cache.try_header().unwrap(), "Bearer token-1");
    settle().await;
    assert_eq!(source.calls(), 2, "no request inside the 429 window");
    pass(Duration::from_secs(4)).await; // 86 s
    assert_eq!(source.calls(), 3, "refreshed once the window ended");
    assert_eq!(cache.try_header().unwrap(), "Bearer token-2");
}
