//! A fresh read allocates nothing: counted with a counting global allocator.

use std::alloc::System;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tokenward::{Token, TokenCache, grant::from_fn};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn ready<F: Future>(fut: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(fut).poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("a fresh read must not wait"),
    }
}

#[test]
fn fresh_reads_do_not_allocate() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let cache = TokenCache::new(from_fn(|| async {
        Token::builder("a-token-of-some-length")
            .expires_in(Duration::from_secs(3600))
            .build()
    }));
    let first = rt.block_on(cache.header()).unwrap();
    // Warm up: arc-swap sets up its per-thread debt list on first use.
    for _ in 0..10 {
        ready(cache.header()).unwrap();
        cache.try_header().unwrap();
        ready(cache.token()).unwrap();
    }

    let region = Region::new(GLOBAL);
    let mut same = 0usize;
    for _ in 0..10_000 {
        let h = ready(cache.header()).unwrap();
        same += usize::from(h == first);
        let t = cache.try_header().unwrap();
        same += usize::from(t == first);
        let tok = ready(cache.token()).unwrap();
        same += usize::from(*tok.header_value() == first);
    }
    let stats = region.change();
    assert_eq!(same, 30_000, "every read returned the cached token");
    assert_eq!(stats.allocations, 0, "{stats:?}");
    assert_eq!(stats.reallocations, 0, "{stats:?}");

    // The counter works: an invalidation followed by a refresh does allocate.
    let region = Region::new(GLOBAL);
    assert!(cache.invalidate(&first));
    rt.block_on(cache.header()).unwrap();
    assert!(region.change().allocations > 0);
}
