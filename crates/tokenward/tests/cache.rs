//! The cache's state machine, under paused Tokio time: no real waiting, no racing sleeps.

mod common;

use std::time::Duration;

use common::{
    Scripted, Step, invalid_client, invalid_grant, pass as advance, rate_limited, server_error,
    settle,
};
use tokenward::cache::Phase;
use tokenward::timing::Backoff;
use tokenward::{Error, RefreshAhead, TokenCache};
use tokio::time::Instant;

const TTL: Duration = Duration::from_secs(100);

/// Lifetime 100 s, no jitter, 10 s skew, no lead: fresh until 80 s, stale until 90 s.
/// Refreshed on demand: these tests drive the read path (refresh-ahead has its own tests).
fn cache(source: &Scripted) -> TokenCache {
    TokenCache::builder(source.clone())
        .refresh_jitter(0.0)
        .clock_skew(Duration::from_secs(10))
        .min_refresh_lead(Duration::ZERO)
        .refresh_ahead(RefreshAhead::OnDemand)
        .build()
}

async fn header(cache: &TokenCache) -> String {
    cache.header().await.unwrap().to_str().unwrap().to_owned()
}

#[tokio::test(start_paused = true)]
async fn first_read_fetches_then_reads_are_served_from_the_cache() {
    let source = Scripted::new(TTL);
    let cache = cache(&source);
    assert_eq!(cache.status().phase, Phase::Empty);
    assert!(cache.try_header().is_none());
    assert_eq!(header(&cache).await, "Bearer token-1");
    for _ in 0..100 {
        assert_eq!(header(&cache).await, "Bearer token-1");
    }
    assert_eq!(source.calls(), 1);
    assert_eq!(cache.status().phase, Phase::Fresh);
    assert!(cache.try_header().is_some());
}

#[tokio::test(start_paused = true)]
async fn refresh_starts_at_the_fraction_of_the_lifetime() {
    let source = Scripted::new(TTL);
    let cache = cache(&source);
    header(&cache).await;

    advance(Duration::from_millis(79_999)).await;
    assert_eq!(header(&cache).await, "Bearer token-1");
    settle().await;
    assert_eq!(source.calls(), 1, "no refresh before 0.8 of the lifetime");
    assert_eq!(cache.status().phase, Phase::Fresh);

    advance(Duration::from_millis(1)).await;
    assert_eq!(cache.status().phase, Phase::Stale);
    assert_eq!(
        cache.try_header().unwrap(),
        "Bearer token-1",
        "stale: served at once, by try_header too"
    );
    assert!(
        cache.status().refreshing,
        "and the read started the refresh"
    );
    assert_eq!(
        header(&cache).await,
        "Bearer token-1",
        "stale: served at once"
    );
    settle().await;
    assert_eq!(
        source.calls(),
        2,
        "one background refresh at 0.8 of the lifetime"
    );
    assert_eq!(header(&cache).await, "Bearer token-2");
}

#[tokio::test(start_paused = true)]
async fn stale_reads_return_at_once_and_start_exactly_one_background_refresh() {
    let source = Scripted::new(TTL);
    let cache = cache(&source);
    header(&cache).await;
    source.then([Step::Delay(Duration::from_secs(5))]);
    advance(Duration::from_secs(85)).await;

    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..500 {
        let cache = cache.clone();
        tasks.push(tokio::spawn(async move { header(&cache).await }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), "Bearer token-1");
    }
    assert_eq!(Instant::now(), start, "nobody waited for the refresh");
    assert_eq!(source.calls(), 2);
    assert!(cache.status().refreshing);

    advance(Duration::from_secs(5)).await;
    settle().await;
    assert_eq!(header(&cache).await, "Bearer token-2");
    assert_eq!(source.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn expired_callers_all_wait_on_the_same_refresh() {
    let source = Scripted::new(TTL);
    let cache = cache(&source);
    header(&cache).await;
    source.then([Step::Delay(Duration::from_secs(3))]);
    advance(Duration::from_secs(95)).await; // past usable_until (90 s)
    assert_eq!(cache.status().phase, Phase::Expired);

    let start = Instant::now();
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { (header(&cache).await, Instant::now()) })
        })
        .collect();
    for t in tasks {
        let (h, at) = t.await.unwrap();
        assert_eq!(h, "Bearer token-2", "an expired token is never handed out");
        assert_eq!(
            at - start,
            Duration::from_secs(3),
            "waited for the one refresh"
        );
    }
    assert_eq!(source.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn ten_thousand_callers_across_an_expiry_make_one_token_call() {
    let source = Scripted::new(TTL);
    let cache = cache(&source);
    header(&cache).await;
    source.then([Step::Delay(Duration::from_millis(200))]);
    advance(Duration::from_secs(91)).await;

    let tasks: Vec<_> = (0..10_000)
        .map(|i| {
            let cache = cache.clone();
            tokio::spawn(async move {
                // Spread the callers across the refresh.
                tokio::time::sleep(Duration::from_micros(i * 50)).await;
                header(&cache).await
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), "Bearer token-2");
    }
    assert_eq!(
        source.calls(),
        2,
        "one call for the first token, one across the expiry"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_background_refresh_keeps_the_usable_token() {
    let source = Scripted::new(TTL);
    let cache = cache(&source);
    header(&cache).await;
    source.otherwise(Step::Fail(server_error(503)));
    advance(Duration::from_secs(81)).await;

    assert_eq!(header(&cache).await, "Bearer token-1");
    // The refresh retries 4 times with backoff (at most 0.25 + 0.5 + 1 s).
    for _ in 0..20 {
        advance(Duration::from_millis(100)).await;
    }
    assert_eq!(source.calls(), 1 + 4, "4 attempts for a 503");
    let status = cache.status();
    assert_eq!(status.consecutive_failures, 1);
    assert!(matches!(status.last_error, Some(Error::Endpoint(_))));
    assert_eq!(status.phase, Phase::Stale);
    for _ in 0..100 {
        assert_eq!(header(&cache).await, "Bearer token-1", "usable token kept");
    }
    // Recovery once the endpoint is back, still before the token expires.
    source.otherwise(Step::Ok);
    advance(Duration::from_secs(4)).await; // past any cool-down and backoff so far
    header(&cache).await;
    settle().await;
    assert_eq!(header(&cache).await, "Bearer token-2");
    assert_eq!(cache.status().consecutive_failures, 0);
}

#[tokio::test(start_paused = true)]
async fn background_retries_cool_down_instead_of_hammering() {
    let source = Scripted::new(TTL);
    let cache = TokenCache::builder(source.clone())
        .refresh_jitter(0.0)
        .clock_skew(Duration::from_secs(10))
        .min_refresh_lead(Duration::ZERO)
        .max_attempts(1)
        .build();
    header(&cache).await;
    source.otherwise(Step::Fail(server_error(500)));
    advance(Duration::from_secs(80)).await;
    // Stale for 10 s, read every 10 ms: without a cool-down this would be ~1000 calls.
    for _ in 0..1000 {
        assert_eq!(header(&cache).await, "Bearer token-1");
        advance(Duration::from_millis(10)).await;
    }
    // Cool-downs are drawn below 1, 2, 4, 8 s: at most a handful of refreshes in 10 s
    // (and at least 2: the first, and one after the first cool-down of under 1 s).
    let refreshes = source.calls() - 1;
    assert!((2..=10).contains(&refreshes), "refreshes: {refreshes}");
}

#[tokio::test(start_paused = true)]
async fn every_waiter_gets_the_same_error_and_later_callers_get_it_at_once() {
    let source = Scripted::new(TTL);
    let cache = cache(&source);
    source.then([Step::DelayThenFail(
        Duration::from_secs(1),
        invalid_client(),
    )]);
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let c = cache.clone();
            tokio::spawn(async move { c.header().await })
        })
        .collect();
    for t in tasks {
        let err = t.await.unwrap().unwrap_err();
        assert!(matches!(err, Error::InvalidClient(_)), "{err:?}");
    }
    assert_eq!(
        source.calls(),
        1,
        "invalid_client is not retried, and shared by all waiters"
    );
    // The failure is held: later callers get it at once, and no request is made.
    let err = cache.header().await.unwrap_err();
    assert!(matches!(err.cause(), Error::InvalidClient(_)), "{err:?}");
    assert!(matches!(err, Error::CoolingDown { .. }), "{err:?}");
    assert_eq!(source.calls(), 1);
    // A forced refresh ends the hold.
    assert_eq!(
        cache.force_refresh().await.unwrap().header_value(),
        "Bearer token-1"
    );
    assert_eq!(source.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn invalid_grant_is_not_retried_and_says_reauthorize() {
    let source = Scripted::new(TTL);
    let cache = cache(&source);
    source.then([Step::Fail(invalid_grant())]);
    let err = cache.header().await.unwrap_err();
    assert!(err.is_reauthorization_required());
    assert!(err.to_string().contains("authorize the application again"));
    assert_eq!(source.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn server_errors_are_retried_with_backoff_at_most_four_times() {
    for status in [500, 502, 503, 504, 408] {
        let source = Scripted::new(TTL);
        let cache = cache(&source);
        source.otherwise(Step::Fail(server_error(status)));
        let start = Instant::now();
        let err = cache.header().await.unwrap_err();
        assert_eq!(err.status().map(|s| s.as_u16()), Some(status));
        assert_eq!(source.calls(), 4, "status {status}");
        let b = Backoff::default();
        let max_wait = b.ceiling(0) + b.ceiling(1) + b.ceiling(2);
        assert!(
            Instant::now() - start <= max_wait,
            "full-jitter delays stay under their ceilings"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn transient_then_success_within_one_refresh() {
    let source = Scripted::new(TTL);
    let cache = cache(&source);
    source.then([Step::Fail(server_error(503)), Step::Fail(server_error(502))]);
    assert_eq!(header(&cache).await, "Bearer token-1");
    assert_eq!(source.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured_failing_fast_meanwhile() {
    let source = Scripted::new(TTL);
    let cache = cache(&source);
    source.then([Step::Fail(rate_limited(5))]);
    let err = cache.header().await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(5)));
    assert_eq!(source.calls(), 1, "a 429 is not retried inside the refresh");

    advance(Duration::from_secs(2)).await;
    let err = cache.header().await.unwrap_err();
    assert!(matches!(err, Error::RateLimited { .. }));
    assert_eq!(
        err.retry_after(),
        Some(Duration::from_secs(3)),
        "fails fast with the time left"
    );
    assert_eq!(source.calls(), 1, "no call inside the window");
    assert_eq!(
        cache.status().rate_limited_for,
        Some(Duration::from_secs(3))
    );
    assert!(matches!(
        cache.force_refresh().await,
        Err(Error::RateLimited { .. })
    ));

    advance(Duration::from_secs(3)).await;
    assert_eq!(header(&cache).await, "Bearer token-1");
    assert_eq!(source.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_capped() {
    let source = Scripted::new(TTL);
    let cache = TokenCache::builder(source.clone())
        .max_retry_after(Duration::from_secs(60))
        .build();
    source.then([Step::Fail(rate_limited(86_400))]);
    cache.header().await.unwrap_err();
    advance(Duration::from_secs(59)).await;
    let err = cache.header().await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
    advance(Duration::from_secs(1)).await;
    cache.header().await.unwrap();
    assert_eq!(source.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_429_during_the_stale_window_keeps_serving_the_token() {
    let source = Scripted::new(TTL);
    let cache = cache(&source);
    header(&cache).await;
    source.then([Step::Fail(rate_limited(4))]);
    advance(Duration::from_secs(81)).await;
    assert_eq!(header(&cache).await, "Bearer token-1");
    settle().await;
    assert_eq!(source.calls(), 2);
    for _ in 0..30 {
        advance(Duration::from_millis(100)).await;
        assert_eq!(header(&cache).await, "Bearer token-1");
    }
    assert_eq!(source.calls(), 2, "no call inside the Retry-After window");
    advance(Duration::from_secs(2)).await;
    assert_eq!(header(&cache).await, "Bearer token-1");
    settle().await;
    assert_eq!(source.calls(), 3);
    assert_eq!(header(&cache).await, "Bearer token-2");
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_caller_does_not_cancel_the_refresh() {
    let source = Scripted::new(TTL);
    let cache = cache(&source);
    source.then([Step::Delay(Duration::from_secs(5))]);
    let r = tokio::time::timeout(Duration::from_secs(1), cache.header()).await;
    assert!(r.is_err(), "the caller gave up");
    assert!(cache.status().refreshing);
    advance(Duration::from_secs(4)).await;
    settle().await;
    assert!(
        cache.cached().is_some(),
        "the refresh finished without its caller"
    );
    assert_eq!(header(&cache).await, "Bearer token-1");
    assert_eq!(source.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_hanging_endpoint_hits_the_refresh_deadline() {
    let source = Scripted::new(TTL);
    let cache = TokenCache::builder(source.clone())
        .refresh_deadline(Duration::from_secs(7))
        .build();
    source.then([Step::Hang]);
    let start = Instant::now();
    let err = cache.header().await.unwrap_err();
    assert!(
        matches!(err, Error::Timeout(d) if d == Duration::from_secs(7)),
        "{err:?}"
    );
    assert_eq!(Instant::now() - start, Duration::from_secs(7));
    assert!(err.is_retryable());
    // The next call, in the cool-down (under 1 s), is told so; after it, a new attempt.
    let err = cache.header().await.unwrap_err();
    assert!(matches!(err.cause(), Error::Timeout(_)), "{err:?}");
    assert!(
        err.retry_after().unwrap() <= Duration::from_secs(1),
        "{err:?}"
    );
    assert_eq!(source.calls(), 1);
    advance(Duration::from_secs(1)).await;
    assert_eq!(header(&cache).await, "Bearer token-1");
    assert_eq!(source.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_401s_for_one_token_makes_one_refresh() {
    let source = Scripted::new(TTL);
    let cache = cache(&source);
    let rejected = cache.header().await.unwrap();
    source.then([Step::Delay(Duration::from_millis(50))]);
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let cache = cache.clone();
            let rejected = rejected.clone();
            tokio::spawn(async move {
                let dropped = cache.invalidate(&rejected);
                (dropped, header(&cache).await)
            })
        })
        .collect();
    let mut dropped = 0;
    for t in tasks {
        let (d, h) = t.await.unwrap();
        dropped += usize::from(d);
        assert_eq!(h, "Bearer token-2");
    }
    assert_eq!(dropped, 1, "only the first 401 dropped the token");
    assert_eq!(source.calls(), 2);
    // A late 401 for the old token does not drop the new one.
    assert!(!cache.invalidate(&rejected));
    assert_eq!(header(&cache).await, "Bearer token-2");
}

#[tokio::test(start_paused = true)]
async fn force_refresh_joins_the_flight_in_progress() {
    let source = Scripted::new(TTL);
    let cache = cache(&source);
    header(&cache).await;
    source.then([Step::Delay(Duration::from_secs(1))]);
    let (a, b) = tokio::join!(cache.force_refresh(), cache.force_refresh());
    assert!(tokenward::Token::ptr_eq(&a.unwrap(), &b.unwrap()));
    assert_eq!(source.calls(), 2);
    assert_eq!(header(&cache).await, "Bearer token-2");
}

#[tokio::test(start_paused = true)]
async fn short_lifetimes_never_hot_loop() {
    let source = Scripted::new(Duration::from_secs(1));
    let cache = cache(&source);
    // One read per 10 ms for 60 s of (paused) time.
    for _ in 0..6000 {
        cache.header().await.unwrap();
        advance(Duration::from_millis(10)).await;
    }
    // The skew (10 s) exceeds the lifetime: it is capped at a tenth of it, so a refresh
    // every 0.8 s (0.5 s at the very least), plus the first token.
    let calls = source.calls();
    assert!(calls <= 60 * 2 + 1, "calls: {calls}");
    assert!(calls >= 60, "tokens are still refreshed: {calls}");
}

#[tokio::test(start_paused = true)]
async fn an_expired_token_is_never_handed_out() {
    let source = Scripted::new(TTL);
    let cache = cache(&source);
    header(&cache).await;
    source.otherwise(Step::Fail(server_error(503)));
    advance(Duration::from_secs(90)).await; // exactly usable_until
    let err = cache.header().await.unwrap_err();
    assert!(err.is_retryable());
    assert!(cache.try_header().is_none());
    assert!(cache.token().await.is_err());
}

#[tokio::test(start_paused = true)]
async fn a_panicking_source_fails_its_waiters_and_the_cache_recovers() {
    let source = Scripted::new(TTL);
    let cache = cache(&source);
    source.then([Step::Panic]);
    let (a, b) = tokio::join!(cache.header(), cache.header());
    assert!(matches!(a, Err(Error::RefreshAborted)), "{a:?}");
    assert!(matches!(b, Err(Error::RefreshAborted)), "{b:?}");
    assert!(!cache.status().refreshing);
    advance(Duration::from_secs(1)).await; // past the cool-down (under 1 s)
    assert_eq!(
        header(&cache).await,
        "Bearer token-1",
        "the next call after the cool-down starts a new refresh"
    );

    // A panic in a background refresh neither wedges the stale path nor hot-loops it.
    source.then([Step::Panic]);
    advance(Duration::from_secs(81)).await;
    assert_eq!(header(&cache).await, "Bearer token-1");
    settle().await;
    assert!(matches!(
        cache.status().last_error,
        Some(Error::RefreshAborted)
    ));
    for _ in 0..100 {
        assert_eq!(header(&cache).await, "Bearer token-1");
    }
    settle().await;
    assert_eq!(source.calls(), 3, "cooling down after the panic");
    advance(Duration::from_secs(2)).await; // past the cool-down (under 1 s)
    header(&cache).await;
    settle().await;
    assert_eq!(header(&cache).await, "Bearer token-2");
    assert_eq!(source.calls(), 4);
}

/// `Retry-After: 0` (or a date in the past) still opens a window, and consecutive 429s
/// double it: 16 callers reading for 3 s make a handful of calls, not hundreds.
#[tokio::test(start_paused = true)]
async fn retry_after_zero_opens_a_window_that_grows_with_each_429() {
    let source = Scripted::new(TTL);
    source.otherwise(Step::Fail(rate_limited(0)));
    let cache = cache(&source);
    let end = Instant::now() + Duration::from_secs(3);
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move {
                let mut errors = Vec::new();
                while Instant::now() < end {
                    errors.push(cache.header().await.unwrap_err());
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                errors
            })
        })
        .collect();
    for task in tasks {
        for error in task.await.unwrap() {
            assert!(matches!(error, Error::RateLimited { .. }), "{error:?}");
            let left = error.retry_after().unwrap();
            assert!(
                left > Duration::ZERO && left <= Duration::from_secs(2),
                "{left:?}"
            );
        }
    }
    // Windows of 1 s, then 2 s: calls at 0 s and 1 s (the next one is due at 3 s).
    assert_eq!(source.calls(), 2, "token calls in 3 s");
    // A success resets the floor.
    advance(Duration::from_secs(1)).await;
    source.otherwise(Step::Ok);
    assert_eq!(header(&cache).await, "Bearer token-1");
}

/// Extreme configurations and answers (zero and maximum durations, fractions beyond their
/// bounds, a `Retry-After` of `u64::MAX` seconds honoured uncapped): nothing panics, no
/// refresh task dies, and the cache keeps answering.
#[test]
fn extreme_durations_and_fractions_never_panic() {
    use proptest::prelude::*;
    use tokenward::CacheConfig;

    let duration = prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::from_nanos(1)),
        Just(Duration::MAX),
        (0u64..7_200_000).prop_map(Duration::from_millis),
    ];
    let fraction = prop_oneof![
        Just(f64::NAN),
        Just(f64::NEG_INFINITY),
        Just(-1.0),
        Just(0.0),
        Just(1.0),
        Just(2.0),
        Just(f64::INFINITY),
        0.0f64..1.0,
    ];
    let config = (
        (
            fraction.clone(),
            fraction,
            duration.clone(),
            duration.clone(),
        ),
        (
            duration.clone(),
            duration.clone(),
            duration.clone(),
            duration,
        ),
        (
            0u32..6,
            prop_oneof![Just(0u64), Just(u64::MAX), 0u64..100_000],
        ),
    );
    proptest!(ProptestConfig::with_cases(64), |(
        ((fraction, jitter, skew, lead), (deadline, max_retry, min_retry, backoff), (attempts, retry_secs)) in config
    )| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut cfg = CacheConfig::default();
            cfg.timing.refresh_fraction = fraction;
            cfg.timing.refresh_jitter = jitter;
            cfg.timing.clock_skew = skew;
            cfg.timing.min_refresh_lead = lead;
            cfg.refresh_deadline = deadline;
            cfg.max_retry_after = max_retry;
            cfg.min_retry_after = min_retry;
            cfg.max_attempts = attempts;
            cfg.backoff = Backoff::new(backoff, backoff);
            cfg.cool_down = Backoff::new(backoff, Duration::MAX);
            let source = Scripted::new(TTL);
            source.then([
                Step::Fail(rate_limited(retry_secs)),
                Step::Fail(server_error(503)),
            ]);
            let cache = TokenCache::builder(source.clone()).config(cfg).build();
            for _ in 0..4 {
                let read = tokio::time::timeout(Duration::from_secs(3600), cache.header()).await;
                if let Ok(Err(error)) = read {
                    assert!(!matches!(error, Error::RefreshAborted), "a refresh task died");
                }
                let _ = cache.status();
                advance(Duration::from_secs(61)).await;
            }
        });
    });
}
