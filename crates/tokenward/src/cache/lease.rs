//! [`Lease`], [`Reader`], [`Receipt`] and [`Fresh`]: see the `cache` module docs.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::ops::Deref;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::{Context, Poll};

use arc_swap::ArcSwapOption;
use http::HeaderValue;
use tokio::time::Instant;

use super::{EXPIRED, Entry, FRESH, Inner, SlowFuture, TokenCache};
use crate::error::Error;
use crate::token::Token;

static NEXT_CACHE: AtomicU64 = AtomicU64::new(1);

/// The live caches by id, for [`Receipt::invalidate`]: only touched when a cache is built or
/// dropped and when a receipt is redeemed (after a 401), never on a read.
static CACHES: Mutex<BTreeMap<u64, Weak<Inner>>> = Mutex::new(BTreeMap::new());

fn caches() -> std::sync::MutexGuard<'static, BTreeMap<u64, Weak<Inner>>> {
    CACHES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(super) fn next_cache_id() -> u64 {
    NEXT_CACHE.fetch_add(1, Ordering::Relaxed)
}

/// A keyed hash of a token's header value, computed once per cached token: what a
/// [`Receipt`] compares by. The key is random per process, so the number says nothing about
/// the token outside it.
pub(super) fn value_hash(header: &HeaderValue) -> u64 {
    static KEY: OnceLock<RandomState> = OnceLock::new();
    KEY.get_or_init(RandomState::new)
        .hash_one(header.as_bytes())
}

pub(super) fn register(inner: &Arc<Inner>) {
    caches().insert(inner.id, Arc::downgrade(inner));
}

impl Drop for Inner {
    fn drop(&mut self) {
        caches().remove(&self.id);
    }
}

/// Which token a request was sent with, without holding it: two numbers, no reference
/// count, `Copy`. Redeem it with [`invalidate`](Self::invalidate) after a 401
/// `invalid_token`.
///
/// Made by [`Fresh::receipt`] and [`Lease::receipt`]: the cache's id and a keyed 64-bit hash
/// of the token's value (computed once per cached token; random per process). It invalidates
/// by value, as [`TokenCache::invalidate`] does: the cached token is dropped if it has the
/// same value, even when it was fetched again since (servers that hand out the same token
/// twice), and a different token never is (a hash collision, at odds of 2⁻⁶⁴, would cost one
/// extra refresh). It does not keep the token or the cache alive: it is for code that only
/// has to take a token back, not to send it again (for that, keep a [`Lease`] and the
/// cache). Its `Debug` shows the cache's id only.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Receipt {
    cache: u64,
    value: u64,
}

impl Receipt {
    /// Drops the token from its cache if it is still the cached one (by value). Returns
    /// whether it was dropped; `false` once the cache is gone. Takes a process-wide lock
    /// briefly (to find the cache): for the 401 path, not for every request.
    pub fn invalidate(&self) -> bool {
        let cache = caches().get(&self.cache).and_then(Weak::upgrade);
        match cache {
            Some(inner) => TokenCache { inner }.invalidate_if(|e| e.value_hash == self.value),
            None => false,
        }
    }
}

impl fmt::Debug for Receipt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receipt")
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

/// A token read out of a [`TokenCache`], with what it takes to drop it from the cache if the
/// server rejects it. One reference count; cloning it is another.
///
/// Made by [`TokenCache::try_lease`], [`TokenCache::lease`] and [`Reader::try_lease`]. A lease
/// does not keep its cache alive: once every handle to the cache is gone,
/// [`invalidate`](Self::invalidate) does nothing and [`cache`](Self::cache) is `None`.
#[derive(Clone)]
pub struct Lease {
    entry: Arc<Entry>,
}

impl Lease {
    /// The `Authorization` header value (sensitive), shared with the cache: clone it into a
    /// request with a reference-count increment.
    #[inline]
    pub fn header(&self) -> &HeaderValue {
        self.entry.token.header_value()
    }

    /// The token.
    #[inline]
    pub fn token(&self) -> &Token {
        &self.entry.token
    }

    /// Drops the token from its cache if it is still the cached one, by value: exactly
    /// [`TokenCache::invalidate`] with [`header`](Self::header). Returns whether it was dropped.
    pub fn invalidate(&self) -> bool {
        match self.cache() {
            Some(cache) => cache.invalidate(self.header()),
            None => false,
        }
    }

    /// The cache the token came from, while it exists (to fetch a new token after
    /// [`invalidate`](Self::invalidate)).
    pub fn cache(&self) -> Option<TokenCache> {
        self.entry.cache.upgrade().map(|inner| TokenCache { inner })
    }

    /// A [`Receipt`] for the token: what it takes to invalidate it, without holding it.
    #[inline]
    pub fn receipt(&self) -> Receipt {
        receipt_of(&self.entry)
    }
}

#[inline]
fn receipt_of(entry: &Entry) -> Receipt {
    Receipt {
        cache: entry.cache_id,
        value: entry.value_hash,
    }
}

/// The cache's fresh token, borrowed from a [`Reader`]: made by [`Reader::try_fresh`]. Take
/// what the request needs (the [`header`](Self::header) to send, and a
/// [`receipt`](Self::receipt) or a [`lease`](Self::lease) to keep) without touching the
/// token's reference count for what you do not keep.
#[derive(Clone, Copy)]
pub struct Fresh<'a> {
    entry: &'a Arc<Entry>,
}

impl<'a> Fresh<'a> {
    /// The `Authorization` header value (sensitive).
    #[inline]
    pub fn header(&self) -> &'a HeaderValue {
        self.entry.token.header_value()
    }

    /// The token.
    #[inline]
    pub fn token(&self) -> &'a Token {
        &self.entry.token
    }

    /// A [`Receipt`] for it: no reference count.
    #[inline]
    pub fn receipt(&self) -> Receipt {
        receipt_of(self.entry)
    }

    /// A [`Lease`] on it: one reference count.
    #[inline]
    pub fn lease(&self) -> Lease {
        Lease {
            entry: Arc::clone(self.entry),
        }
    }
}

impl fmt::Debug for Fresh<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fresh")
            .field("token", &self.entry.token)
            .finish()
    }
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("token", &self.entry.token)
            .finish()
    }
}

impl TokenCache {
    /// A lease on the cached token if it is fresh; `None` otherwise. Never waits, never
    /// starts a refresh. Like [`try_header`](Self::try_header): no lock, no allocation.
    #[inline]
    pub fn try_lease(&self) -> Option<Lease> {
        let guard = self.inner.current.load();
        match &*guard {
            Some(entry) if entry.phase.load(Ordering::Relaxed) == FRESH => Some(Lease {
                entry: Arc::clone(entry),
            }),
            _ => None,
        }
    }

    /// A lease on a usable token, refreshing as needed: [`header`](Self::header), with what
    /// it takes to invalidate the token later. A fresh read is ready at once.
    #[inline]
    pub fn lease(&self) -> LeaseFuture<'_> {
        match self.try_lease() {
            Some(lease) => LeaseFuture {
                state: LeaseState::Ready(Some(lease)),
            },
            None => LeaseFuture {
                state: LeaseState::Slow(self, self.slow()),
            },
        }
    }

    /// A [`Reader`] of this cache, for one holder: fresh reads that take no claim on the shared
    /// cache.
    pub fn reader(&self) -> Reader {
        Reader {
            cache: self.clone(),
            seen: arc_swap::Cache::new(Current(Arc::clone(&self.inner))),
        }
    }

    /// The lease for a token a slow read returned: the cached entry's when it is that token
    /// (nearly always), otherwise one of its own (the token was replaced meanwhile).
    fn lease_of(&self, token: Token) -> Lease {
        if let Some(entry) = self.inner.current.load_full()
            && entry.token.header_value() == token.header_value()
        {
            return Lease { entry };
        }
        let now = Instant::now();
        Lease {
            entry: Arc::new(Entry {
                value_hash: value_hash(token.header_value()),
                cache_id: self.inner.id,
                token,
                refresh_at: now,
                usable_until: now,
                phase: AtomicU8::new(EXPIRED),
                timer: OnceLock::new(),
                cache: Arc::downgrade(&self.inner),
            }),
        }
    }
}

/// The future of [`TokenCache::lease`].
#[must_use = "futures do nothing unless polled"]
pub struct LeaseFuture<'a> {
    state: LeaseState<'a>,
}

enum LeaseState<'a> {
    Ready(Option<Lease>),
    Slow(&'a TokenCache, SlowFuture<'a>),
}

impl Future for LeaseFuture<'_> {
    type Output = Result<Lease, Error>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.state {
            LeaseState::Ready(lease) => match lease.take() {
                Some(lease) => Poll::Ready(Ok(lease)),
                None => panic!("LeaseFuture polled after completion"),
            },
            LeaseState::Slow(cache, fut) => {
                let cache = *cache;
                fut.as_mut().poll(cx).map(|r| r.map(|t| cache.lease_of(t)))
            }
        }
    }
}

impl fmt::Debug for LeaseFuture<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LeaseFuture")
    }
}

/// The cache's slot, as `arc_swap::Cache` wants it.
#[derive(Clone)]
struct Current(Arc<Inner>);

impl Deref for Current {
    type Target = ArcSwapOption<Entry>;

    #[inline]
    fn deref(&self) -> &ArcSwapOption<Entry> {
        &self.0.current
    }
}

/// A handle to a [`TokenCache`] for one holder, whose fresh reads take no claim on the shared
/// cache. Made by [`TokenCache::reader`]; see the [`cache`](crate::cache) module docs.
///
/// It keeps the entry it read last and revalidates it on every read with one atomic load,
/// so a token the cache dropped or replaced is never returned. The only shared memory a read
/// writes is the reference count of what the caller keeps: [`try_fresh`](Self::try_fresh)
/// with a receipt writes none, [`try_header`](Self::try_header) the header value's,
/// [`try_lease`](Self::try_lease) the entry's. It never fetches: on `None`, wait on
/// [`cache`](Self::cache)'s [`lease`](TokenCache::lease) or [`header`](TokenCache::header).
///
/// Until its next read it keeps the entry it saw last alive, even once the cache has dropped
/// it ([`clear`](TokenCache::clear), [`invalidate`](TokenCache::invalidate)): one token per
/// reader, for as long as the reader sits idle.
pub struct Reader {
    cache: TokenCache,
    seen: arc_swap::Cache<Current, Option<Arc<Entry>>>,
}

impl Reader {
    /// A lease on the cached token if it is fresh; `None` otherwise. One atomic load and a
    /// reference-count increment while the cached token is the one this reader saw last.
    #[inline(always)]
    pub fn try_lease(&mut self) -> Option<Lease> {
        Some(self.try_fresh()?.lease())
    }

    /// The cached token if it is fresh, borrowed: one atomic load while the cached token is
    /// the one this reader saw last, and nothing written.
    #[inline(always)]
    pub fn try_fresh(&mut self) -> Option<Fresh<'_>> {
        let entry = self.fresh()?;
        Some(Fresh { entry })
    }

    /// The header value of the cached token if it is fresh; `None` otherwise.
    #[inline]
    pub fn try_header(&mut self) -> Option<HeaderValue> {
        Some(self.fresh()?.token.header_value().clone())
    }

    /// The cache this reader reads.
    #[inline]
    pub fn cache(&self) -> &TokenCache {
        &self.cache
    }

    #[inline(always)]
    fn fresh(&mut self) -> Option<&Arc<Entry>> {
        match self.seen.load() {
            Some(entry) if entry.phase.load(Ordering::Relaxed) == FRESH => Some(entry),
            _ => None,
        }
    }
}

/// A reader of the same cache, starting from this one's snapshot (reference counts, no load:
/// its first read revalidates it).
impl Clone for Reader {
    fn clone(&self) -> Self {
        Reader {
            cache: self.cache.clone(),
            seen: self.seen.clone(),
        }
    }
}

impl From<TokenCache> for Reader {
    fn from(cache: TokenCache) -> Self {
        cache.reader()
    }
}

impl fmt::Debug for Reader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reader")
            .field("cache", &self.cache.inner.name)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::grant::from_fn;

    fn counting() -> (TokenCache, Arc<std::sync::atomic::AtomicUsize>) {
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = Arc::clone(&calls);
        let cache = TokenCache::new(from_fn(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                Token::builder(format!("token-{n}"))
                    .expires_in(Duration::from_secs(3600))
                    .build()
            }
        }));
        (cache, calls)
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_follows_the_cache() {
        let (cache, calls) = counting();
        let mut reader = cache.reader();
        assert!(reader.try_lease().is_none());
        assert!(reader.try_header().is_none());

        let first = cache.lease().await.unwrap();
        assert_eq!(first.header(), "Bearer token-0");
        assert_eq!(reader.try_header().unwrap(), "Bearer token-0");
        assert!(first.header().is_sensitive());

        // Replaced behind the reader's back: it never returns the old entry.
        cache.force_refresh().await.unwrap();
        assert_eq!(reader.try_lease().unwrap().header(), "Bearer token-1");
        assert!(!first.invalidate(), "token-0 is no longer cached");
        assert_eq!(cache.try_header().unwrap(), "Bearer token-1");

        // Dropped: the reader sees it at once.
        assert!(cache.try_lease().unwrap().invalidate());
        assert!(reader.try_lease().is_none());
        assert_eq!(calls.load(Ordering::SeqCst), 2);

        // Clones are readers of their own over the same cache.
        let mut other = reader.clone();
        assert_eq!(cache.lease().await.unwrap().header(), "Bearer token-2");
        assert_eq!(other.try_header().unwrap(), "Bearer token-2");
        assert_eq!(reader.try_header().unwrap(), "Bearer token-2");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reader_on_another_thread_sees_an_invalidation() {
        let (cache, _) = counting();
        cache.header().await.unwrap();
        let mut reader = cache.reader();
        assert!(reader.try_fresh().is_some());
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            // Read on this thread, then wait for the invalidation, then read again.
            let before = reader.try_header().map(|h| h.to_str().unwrap().to_owned());
            done_tx.send(()).unwrap();
            rx.recv().unwrap();
            (before, reader.try_header().is_some())
        });
        done_rx.recv().unwrap();
        assert!(cache.try_lease().unwrap().receipt().invalidate());
        tx.send(()).unwrap();
        let (before, after) = thread.join().unwrap();
        assert_eq!(before.as_deref(), Some("Bearer token-0"));
        assert!(!after, "the reader saw the invalidation");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stale_token_is_not_fresh_for_a_reader() {
        let (cache, _) = counting();
        let mut reader = cache.reader();
        cache.header().await.unwrap();
        assert!(reader.try_lease().is_some());
        // Past the refresh point (default 0.8 of the lifetime, less jitter).
        tokio::time::sleep(Duration::from_secs(3500)).await;
        assert!(
            reader.try_lease().is_none(),
            "stale: reads go to the slow path"
        );
        assert!(cache.try_lease().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_of_a_replaced_token_stands_alone() {
        let (cache, _) = counting();
        let token = cache.token().await.unwrap();
        assert!(cache.clear());
        let lease = cache.lease_of(token.clone());
        assert_eq!(lease.header(), token.header_value());
        assert!(!lease.invalidate(), "not cached: nothing to drop");
        // A token that is the cached one shares the cache's entry.
        cache.header().await.unwrap();
        let cached = cache.lease_of(cache.token().await.unwrap());
        assert!(Arc::ptr_eq(
            &cached.entry,
            &cache.try_lease().unwrap().entry
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_does_not_keep_its_cache_alive() {
        let (cache, _) = counting();
        let lease = cache.lease().await.unwrap();
        assert!(lease.cache().is_some());
        drop(cache);
        assert!(lease.cache().is_none());
        assert!(!lease.invalidate());
        assert_eq!(lease.header(), "Bearer token-0");
    }

    #[tokio::test(start_paused = true)]
    async fn a_receipt_drops_its_token_and_no_other() {
        let (cache, _) = counting();
        let mut reader = cache.reader();
        cache.header().await.unwrap();
        let fresh = reader.try_fresh().unwrap();
        assert_eq!(fresh.header(), "Bearer token-0");
        assert_eq!(fresh.token().header_value(), fresh.header());
        let receipt = fresh.receipt();
        assert_eq!(receipt, fresh.lease().receipt());
        assert_eq!(receipt, cache.try_lease().unwrap().receipt());

        assert!(receipt.invalidate());
        assert!(!receipt.invalidate(), "dropped once");
        assert!(cache.try_header().is_none());

        // A newer token is never dropped by an older receipt.
        cache.header().await.unwrap();
        assert!(!receipt.invalidate());
        let newer = reader.try_fresh().unwrap().receipt();
        assert_ne!(newer, receipt);
        assert_eq!(cache.try_header().unwrap(), "Bearer token-1");

        // Once the cache is gone, a receipt does nothing (and does not panic).
        drop(reader);
        drop(cache);
        assert!(!newer.invalidate());
    }

    #[tokio::test(start_paused = true)]
    async fn a_receipt_invalidates_by_value_like_a_lease() {
        // A server that hands out the same token again: the rejected value is dropped, by a
        // receipt as by a lease, even from the entry fetched since.
        let cache = TokenCache::new(from_fn(|| async {
            Token::builder("same")
                .expires_in(Duration::from_secs(3600))
                .build()
        }));
        let first = cache.lease().await.unwrap();
        let receipt = first.receipt();
        cache.force_refresh().await.unwrap();
        assert!(
            !Arc::ptr_eq(&first.entry, &cache.try_lease().unwrap().entry),
            "refetched"
        );
        assert_eq!(
            cache.try_lease().unwrap().receipt(),
            receipt,
            "same value, same receipt"
        );
        assert!(receipt.invalidate());
        assert!(cache.cached().is_none());
        cache.force_refresh().await.unwrap();
        assert!(first.invalidate());
    }

    #[tokio::test(start_paused = true)]
    async fn receipts_of_two_caches_do_not_mix() {
        let (a, _) = counting();
        let (b, _) = counting();
        let ra = a.lease().await.unwrap().receipt();
        let rb = b.lease().await.unwrap().receipt();
        assert_ne!(ra, rb);
        assert!(rb.invalidate());
        assert!(a.try_header().is_some(), "b's receipt left a alone");
        assert!(ra.invalidate());
    }

    #[tokio::test(start_paused = true)]
    async fn debug_output_carries_no_token() {
        let (cache, _) = counting();
        let lease = cache.lease().await.unwrap();
        let mut reader = cache.reader();
        let fresh = format!("{:?}", reader.try_fresh().unwrap());
        let receipt = format!("{:?}", lease.receipt());
        assert!(
            !receipt.contains(&lease.receipt().value.to_string()),
            "{receipt}"
        );
        for debug in [format!("{lease:?}"), format!("{reader:?}"), fresh, receipt] {
            assert!(!debug.contains("token-0"), "{debug}");
        }
        assert!(format!("{lease:?}").contains("REDACTED"));
    }
}
