//! The token cache: lock-free reads, proactive single-flight refresh, failures that never
//! cost a usable token.
//!
//! # The three states of a cached token
//!
//! | state | from | callers get | refresh |
//! |---|---|---|---|
//! | fresh | issued | the token, at once (an atomic load + a refcount) | none |
//! | stale | `refresh_at` = issued + fraction × lifetime − jitter | the token, at once | exactly one, in the background |
//! | expired | `usable_until` = expiry − clock-skew allowance | the new token, when the one refresh ends | callers wait on it |
//!
//! A lifetime too short for the margins is refreshed (and stops being handed out) at half of
//! it: never a hot loop. See [`timing`](crate::timing) for the exact maths.
//!
//! # Single flight
//!
//! At most one refresh runs at a time. It runs on its own task, so a caller that gives up
//! (a dropped future, a timeout) does not cancel it; it has its own deadline (default 30 s);
//! every caller waiting on it gets the same outcome, errors included.
//!
//! # Failures
//!
//! * A failed refresh never replaces a usable token: stale callers keep getting it, and the
//!   next background attempt waits for an exponential, jittered cool-down.
//! * 5xx, 408, `temporarily_unavailable`, connect errors and timeouts are retried inside the
//!   refresh with full-jitter exponential backoff, at most 4 attempts.
//! * 429 opens a window of `Retry-After` (capped, default 60 s): no request is made in it;
//!   callers without a usable token fail fast with [`Error::RateLimited`].
//! * `invalid_grant` ([`Error::ReauthorizationRequired`]) and `invalid_client`
//!   ([`Error::InvalidClient`]) are not retried. A failure is not remembered: the next caller
//!   without a usable token starts a new refresh (except inside a 429 window).
//!
//! # How fresh reads stay cheap
//!
//! Reading the clock costs more than the rest of a read, so a fresh read does not: each
//! cached token carries a phase flag that a timer on the Tokio runtime moves from fresh to
//! stale at `refresh_at` and to expired at `usable_until`. Reads in the stale and expired
//! phases check the clock themselves. (Without a runtime timer, every read checks the clock.)
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use tokenward::{Token, TokenCache, grant::from_fn};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tokenward::Error> {
//! let cache = TokenCache::builder(from_fn(|| async {
//!     Token::builder("abc").expires_in(Duration::from_secs(3600)).build()
//! }))
//! .refresh_fraction(0.75)
//! .clock_skew(Duration::from_secs(60))
//! .build();
//!
//! let header = cache.header().await?;
//! assert_eq!(header, "Bearer abc");
//! assert!(header.is_sensitive());
//! // A 401 invalid_token for that header? Drop it, if it is still the cached one.
//! assert!(cache.invalidate(&header));
//! assert!(!cache.invalidate(&header)); // already gone: a burst of 401s makes one refresh
//! # Ok(()) }
//! ```
//!
//! # Reading for a layer: `Reader`, `Lease`, `Receipt`
//!
//! A layer that sets `Authorization` must remember which token it sent, so that a 401
//! `invalid_token` drops *that* token and not a newer one. A [`Lease`] is that memory in one
//! reference count: the cached token, its pre-built header value, and the way back to its
//! cache for [`Lease::invalidate`]. Keeping a [`TokenCache`] and a [`HeaderValue`] instead
//! costs two.
//!
//! A [`Reader`] is a handle for one holder (one service, one task) whose fresh reads take no
//! claim on the shared cache: it keeps the cache entry it read last and checks, with one
//! atomic load, that it is still the cached one. [`TokenCache::try_lease`] and [`TokenCache::try_header`] take a
//! short-lived claim on the shared cache instead (a few atomic read-modify-writes). Use a
//! reader where reads are hot and the holder is `&mut`; it keeps the last token it saw alive
//! until its next read.
//!
//! A [`Receipt`] says which token a request was sent with, in two numbers and no reference
//! count (its cache's id and a keyed hash of its value): enough to invalidate it by value
//! after a 401, for code that will not send the request again. [`Reader::try_fresh`] gives the header and a
//! receipt, or a lease, without touching the entry's count for what is not kept.
//!
//! ```
//! use std::time::Duration;
//! use tokenward::{Token, TokenCache, grant::from_fn};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tokenward::Error> {
//! let cache = TokenCache::new(from_fn(|| async {
//!     Token::builder("abc").expires_in(Duration::from_secs(3600)).build()
//! }));
//! let mut reader = cache.reader();
//! assert!(reader.try_lease().is_none(), "nothing fetched yet: a reader never fetches");
//!
//! let lease = cache.lease().await?; // fetches, like `header()`
//! assert_eq!(lease.header(), "Bearer abc");
//! let again = reader.try_lease().expect("fresh");
//! assert_eq!(again.header(), lease.header());
//!
//! // The server said 401 invalid_token for it: drop it (if it is still the cached one).
//! assert!(lease.invalidate());
//! assert!(!again.invalidate(), "already gone: a burst of 401s drops it once");
//! assert!(reader.try_lease().is_none());
//! # Ok(()) }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use http::HeaderValue;
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tracing::Instrument as _;

use crate::error::{EndpointError, Error};
use crate::grant::TokenSource;
use crate::timing::{Backoff, Schedule, TimingConfig};
use crate::token::Token;

mod lease;
pub use lease::{Fresh, Lease, LeaseFuture, Reader, Receipt};

/// Everything that tunes a [`TokenCache`]. All fields have production defaults.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CacheConfig {
    /// When tokens turn stale and expired.
    pub timing: TimingConfig,
    /// Deadline of one refresh, all attempts included. Default 30 s.
    pub refresh_deadline: Duration,
    /// Attempts per refresh for transient failures. Default 4.
    pub max_attempts: u32,
    /// Backoff between attempts within a refresh. Default 250 ms doubling to 10 s, full jitter.
    pub backoff: Backoff,
    /// Cap on a `Retry-After` from a 429. Default 60 s.
    pub max_retry_after: Duration,
    /// Cool-down between failed *background* refreshes while a usable token is cached.
    /// Default 1 s doubling to 60 s, full jitter.
    pub background_backoff: Backoff,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            timing: TimingConfig::default(),
            refresh_deadline: Duration::from_secs(30),
            max_attempts: crate::classify::DEFAULT_MAX_ATTEMPTS,
            backoff: Backoff::default(),
            max_retry_after: Duration::from_secs(60),
            background_backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(60)),
        }
    }
}

/// Builds a [`TokenCache`]. See [`TokenCache::builder`].
#[derive(Debug)]
pub struct TokenCacheBuilder {
    source: Arc<dyn TokenSource>,
    config: CacheConfig,
    name: Arc<str>,
}

impl TokenCacheBuilder {
    /// Replaces the whole configuration.
    pub fn config(mut self, config: CacheConfig) -> Self {
        self.config = config;
        self
    }

    /// Fraction of the lifetime after which a token is refreshed in the background (0.8).
    pub fn refresh_fraction(mut self, fraction: f64) -> Self {
        self.config.timing.refresh_fraction = fraction;
        self
    }

    /// Random share of the lifetime taken off the refresh point (0.05).
    pub fn refresh_jitter(mut self, jitter: f64) -> Self {
        self.config.timing.refresh_jitter = jitter;
        self
    }

    /// Stop handing a token out this long before it expires (30 s).
    pub fn clock_skew(mut self, skew: Duration) -> Self {
        self.config.timing.clock_skew = skew;
        self
    }

    /// Refresh no later than this long before expiry (60 s).
    pub fn min_refresh_lead(mut self, lead: Duration) -> Self {
        self.config.timing.min_refresh_lead = lead;
        self
    }

    /// Deadline for one refresh, all attempts included (30 s).
    pub fn refresh_deadline(mut self, deadline: Duration) -> Self {
        self.config.refresh_deadline = deadline;
        self
    }

    /// Attempts per refresh for transient failures (4).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.config.max_attempts = attempts.max(1);
        self
    }

    /// Backoff between attempts within one refresh.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.config.backoff = backoff;
        self
    }

    /// Cap on `Retry-After` (60 s).
    pub fn max_retry_after(mut self, cap: Duration) -> Self {
        self.config.max_retry_after = cap;
        self
    }

    /// A name for this cache in `tracing` output (e.g. the API or tenant it serves).
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Builds the cache. No token is requested until the first read.
    pub fn build(self) -> TokenCache {
        let inner = Arc::new(Inner {
            id: lease::next_cache_id(),
            source: self.source,
            config: self.config,
            name: self.name,
            current: ArcSwapOption::empty(),
            state: Mutex::new(State::default()),
            refreshing: AtomicBool::new(false),
        });
        lease::register(&inner);
        TokenCache { inner }
    }
}

/// Keeps one access token fresh. Cheap to clone; clones share the token.
#[derive(Clone)]
pub struct TokenCache {
    inner: Arc<Inner>,
}

struct Inner {
    /// Process-unique: what a [`Receipt`] names its cache by.
    id: u64,
    source: Arc<dyn TokenSource>,
    config: CacheConfig,
    name: Arc<str>,
    current: ArcSwapOption<Entry>,
    state: Mutex<State>,
    /// A hint for the stale path, so stale reads do not take the lock while a refresh runs.
    refreshing: AtomicBool,
}

type Outcome = Result<Token, Error>;

#[derive(Default)]
struct State {
    /// The refresh in flight, if any.
    flight: Option<watch::Receiver<Option<Outcome>>>,
    /// A 429 window: no request until then.
    rate_limited: Option<(Instant, Option<Box<EndpointError>>)>,
    /// No background refresh before then (after a failed one).
    background_not_before: Option<Instant>,
    consecutive_failures: u32,
    last_error: Option<Error>,
}

const FRESH: u8 = 0;
const STALE: u8 = 1;
const EXPIRED: u8 = 2;
/// No timer drives the flag: every read checks the clock.
const UNTIMED: u8 = 3;

/// Where a cached token is in its life. See the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Phase {
    /// No token is cached.
    Empty,
    /// Served as is.
    Fresh,
    /// Served, and refreshed in the background.
    Stale,
    /// Not served; callers wait for a refresh.
    Expired,
}

struct Entry {
    /// What a [`Receipt`] compares by: [`lease::value_hash`] of the header value.
    value_hash: u64,
    /// The id of the cache it belongs to.
    cache_id: u64,
    token: Token,
    refresh_at: Instant,
    usable_until: Instant,
    phase: AtomicU8,
    timer: OnceLock<AbortHandle>,
    /// The cache it belongs to, for [`Lease::invalidate`]: weak, so a lease kept past the
    /// cache's life does not keep the cache (and its source) alive.
    cache: Weak<Inner>,
}

impl Entry {
    fn phase_at(&self, now: Instant) -> Phase {
        if self.phase.load(Ordering::Relaxed) == EXPIRED || now >= self.usable_until {
            Phase::Expired
        } else if now >= self.refresh_at {
            Phase::Stale
        } else {
            Phase::Fresh
        }
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        if let Some(timer) = self.timer.get() {
            timer.abort();
        }
    }
}

async fn phase_timer(entry: Weak<Entry>, refresh_at: Instant, usable_until: Instant) {
    tokio::time::sleep_until(refresh_at).await;
    match entry.upgrade() {
        Some(e) => {
            let _ = e
                .phase
                .compare_exchange(FRESH, STALE, Ordering::Relaxed, Ordering::Relaxed);
        }
        None => return,
    }
    tokio::time::sleep_until(usable_until).await;
    if let Some(e) = entry.upgrade() {
        e.phase.store(EXPIRED, Ordering::Relaxed);
    }
}

enum Joined {
    Ready(Token),
    Wait(watch::Receiver<Option<Outcome>>),
}

impl TokenCache {
    /// Starts building a cache over `source`.
    pub fn builder(source: impl TokenSource) -> TokenCacheBuilder {
        TokenCacheBuilder {
            source: Arc::new(source),
            config: CacheConfig::default(),
            name: Arc::from("default"),
        }
    }

    /// A cache over `source` with the default configuration.
    pub fn new(source: impl TokenSource) -> TokenCache {
        TokenCache::builder(source).build()
    }

    /// The `Authorization` header value of a usable token, refreshing as needed.
    ///
    /// While the token is fresh this is an atomic load and a reference-count increment:
    /// no lock, no allocation, no clock read. The check happens when `header()` is called;
    /// the returned future is then ready at once.
    #[inline]
    pub fn header(&self) -> HeaderFuture<'_> {
        match self.try_header() {
            Some(header) => HeaderFuture {
                state: HeaderState::Ready(Some(header)),
            },
            None => HeaderFuture {
                state: HeaderState::Slow(self.slow()),
            },
        }
    }

    /// The header value of the cached token if it is fresh; `None` otherwise. Never waits,
    /// never starts a refresh.
    #[inline]
    pub fn try_header(&self) -> Option<HeaderValue> {
        self.with_fresh(|token| token.header_value().clone())
    }

    #[inline]
    fn with_fresh<R>(&self, f: impl FnOnce(&Token) -> R) -> Option<R> {
        let guard = self.inner.current.load();
        match &*guard {
            Some(entry) if entry.phase.load(Ordering::Relaxed) == FRESH => Some(f(&entry.token)),
            _ => None,
        }
    }

    /// A usable token (with its scope, expiry and header), refreshing as needed. Like
    /// [`header`](Self::header), a fresh read is ready at once and allocates nothing.
    #[inline]
    pub fn token(&self) -> TokenFuture<'_> {
        match self.with_fresh(Token::clone) {
            Some(token) => TokenFuture {
                state: TokenState::Ready(Some(token)),
            },
            None => TokenFuture {
                state: TokenState::Slow(self.slow()),
            },
        }
    }

    /// Gets a new token now, whatever the cached one's state: joins the refresh in flight or
    /// starts one. Still respects a 429 window ([`Error::RateLimited`]).
    pub async fn force_refresh(&self) -> Result<Token, Error> {
        self.acquire(true).await
    }

    /// Drops the cached token if it is still the one whose header is `rejected` (the server
    /// answered 401 `invalid_token` for it). Returns whether it was dropped.
    ///
    /// Comparing by value makes a burst of 401s for one token cost one refresh: the first
    /// call drops it, the rest find a different (or no) token and do nothing.
    pub fn invalidate(&self, rejected: &HeaderValue) -> bool {
        self.invalidate_if(|entry| entry.token.header_value() == rejected)
    }

    /// Drops the cached entry if `rejected` says it is the one the server rejected.
    fn invalidate_if(&self, rejected: impl FnOnce(&Entry) -> bool) -> bool {
        let current = self.inner.current.load();
        let Some(entry) = current.as_ref() else {
            return false;
        };
        if !rejected(entry) {
            return false;
        }
        let previous = self
            .inner
            .current
            .compare_and_swap(&current, None::<Arc<Entry>>);
        let dropped = matches!(&*previous, Some(p) if Arc::ptr_eq(p, entry));
        if dropped {
            tracing::info!(cache = %self.inner.name, "cached token invalidated after the server rejected it");
        }
        dropped
    }

    /// Drops the cached token, whatever it is (credentials replaced, tenant idle). The next
    /// read fetches a new one. Returns whether a token was cached.
    pub fn clear(&self) -> bool {
        let dropped = self.inner.current.swap(None).is_some();
        if dropped {
            tracing::debug!(cache = %self.inner.name, "cached token dropped");
        }
        dropped
    }

    /// The cached token, whatever its state, without refreshing.
    pub fn cached(&self) -> Option<Token> {
        self.inner.current.load().as_ref().map(|e| e.token.clone())
    }

    /// A snapshot of the cache's state, for health checks and dashboards.
    pub fn status(&self) -> CacheStatus {
        let now = Instant::now();
        let entry = self.inner.current.load_full();
        let st = self.inner.lock_state();
        CacheStatus {
            phase: entry.as_ref().map_or(Phase::Empty, |e| e.phase_at(now)),
            expires_in: entry
                .as_ref()
                .map(|e| e.token.expires_at().saturating_duration_since(now)),
            refreshing: st.flight.is_some(),
            rate_limited_for: st
                .rate_limited
                .as_ref()
                .map(|(until, _)| until.saturating_duration_since(now))
                .filter(|d| !d.is_zero()),
            consecutive_failures: st.consecutive_failures,
            last_error: st.last_error.clone(),
        }
    }

    /// The path for a token that is not fresh, kept out of line so the fresh path stays small.
    #[cold]
    #[inline(never)]
    fn slow(&self) -> SlowFuture<'_> {
        Box::pin(self.acquire(false))
    }

    async fn acquire(&self, force: bool) -> Result<Token, Error> {
        let now = Instant::now();
        if !force && let Some(entry) = self.inner.current.load_full() {
            match entry.phase_at(now) {
                Phase::Fresh => return Ok(entry.token.clone()),
                Phase::Stale => {
                    self.inner.start_background(now);
                    return Ok(entry.token.clone());
                }
                Phase::Expired | Phase::Empty => {}
            }
        }
        match self.inner.join_or_start(now, force)? {
            Joined::Ready(token) => Ok(token),
            Joined::Wait(rx) => wait(rx).await,
        }
    }
}

type SlowFuture<'a> = Pin<Box<dyn Future<Output = Result<Token, Error>> + Send + 'a>>;

// HeaderFuture and TokenFuture are two concrete types on purpose: one generic future
// (with a fn pointer or a sealed trait for the slow path's mapping) measured 35-50% slower
// on the fresh read in `benches/cached_read.rs`.

/// The future of [`TokenCache::header`]: ready at once while the token is fresh.
#[must_use = "futures do nothing unless polled"]
pub struct HeaderFuture<'a> {
    state: HeaderState<'a>,
}

enum HeaderState<'a> {
    Ready(Option<HeaderValue>),
    Slow(SlowFuture<'a>),
}

impl Future for HeaderFuture<'_> {
    type Output = Result<HeaderValue, Error>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.state {
            HeaderState::Ready(header) => match header.take() {
                Some(header) => Poll::Ready(Ok(header)),
                None => panic!("HeaderFuture polled after completion"),
            },
            HeaderState::Slow(fut) => fut
                .as_mut()
                .poll(cx)
                .map(|r| r.map(|t| t.header_value().clone())),
        }
    }
}

impl fmt::Debug for HeaderFuture<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HeaderFuture")
    }
}

/// The future of [`TokenCache::token`]: ready at once while the token is fresh.
#[must_use = "futures do nothing unless polled"]
pub struct TokenFuture<'a> {
    state: TokenState<'a>,
}

enum TokenState<'a> {
    Ready(Option<Token>),
    Slow(SlowFuture<'a>),
}

impl Future for TokenFuture<'_> {
    type Output = Result<Token, Error>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.state {
            TokenState::Ready(token) => match token.take() {
                Some(token) => Poll::Ready(Ok(token)),
                None => panic!("TokenFuture polled after completion"),
            },
            TokenState::Slow(fut) => fut.as_mut().poll(cx),
        }
    }
}

impl fmt::Debug for TokenFuture<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenFuture")
    }
}

async fn wait(mut rx: watch::Receiver<Option<Outcome>>) -> Outcome {
    // An error here means the refresh task ended without sending (panic, runtime shutdown).
    let _ = rx.wait_for(Option::is_some).await;
    let outcome = rx.borrow().clone();
    outcome.unwrap_or(Err(Error::RefreshAborted))
}

impl Inner {
    fn lock_state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Under the lock: join the refresh in flight, or find a usable token installed since
    /// the caller looked, or start a refresh (outside a 429 window).
    fn join_or_start(self: &Arc<Self>, now: Instant, force: bool) -> Result<Joined, Error> {
        let mut st = self.lock_state();
        if let Some(rx) = live_flight(&mut st) {
            return Ok(Joined::Wait(rx));
        }
        if !force
            && let Some(entry) = self.current.load_full()
            && entry.phase_at(now) != Phase::Expired
        {
            return Ok(Joined::Ready(entry.token.clone()));
        }
        if let Some((until, response)) = &st.rate_limited {
            if now < *until {
                return Err(Error::RateLimited {
                    retry_after: *until - now,
                    response: response.clone(),
                });
            }
            st.rate_limited = None;
        }
        let reason = if force { "forced" } else { "expired" };
        Ok(Joined::Wait(self.start_flight(&mut st, reason)))
    }

    /// The stale path: make sure one background refresh runs, unless a refresh is in
    /// flight, a 429 window is open, or a failed background refresh is cooling down.
    fn start_background(self: &Arc<Self>, now: Instant) {
        if self.refreshing.load(Ordering::Relaxed) {
            return;
        }
        let mut st = self.lock_state();
        if live_flight(&mut st).is_some() {
            return;
        }
        if matches!(&st.rate_limited, Some((until, _)) if now < *until) {
            return;
        }
        if matches!(st.background_not_before, Some(t) if now < t) {
            return;
        }
        drop(self.start_flight(&mut st, "stale"));
    }

    fn start_flight(
        self: &Arc<Self>,
        st: &mut State,
        reason: &'static str,
    ) -> watch::Receiver<Option<Outcome>> {
        let (tx, rx) = watch::channel(None);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                st.flight = Some(rx.clone());
                self.refreshing.store(true, Ordering::Relaxed);
                let span = tracing::info_span!("tokenward.refresh", cache = %self.name, reason);
                runtime.spawn(run_flight(Arc::clone(self), tx).instrument(span));
            }
            Err(_) => {
                tx.send_replace(Some(Err(Error::Config(
                    "tokenward needs a Tokio runtime (with time enabled) to refresh tokens".into(),
                ))));
            }
        }
        rx
    }

    async fn fetch_with_retries(&self) -> Outcome {
        let max_attempts = self.config.max_attempts.max(1);
        let mut attempt = 1;
        loop {
            tracing::debug!(attempt, "requesting a token");
            match self.source.fetch().await {
                Ok(token) => return Ok(token),
                Err(e) if e.is_transient() && attempt < max_attempts => {
                    let delay = self.config.backoff.delay_random(attempt - 1);
                    tracing::warn!(
                        attempt,
                        max_attempts,
                        delay_ms = delay.as_millis() as u64,
                        error = %e,
                        "token request failed; retrying after backoff"
                    );
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Failure bookkeeping: count it, open a 429 window, cool the background path down.
    fn record_failure(&self, st: &mut State, error: &Error, now: Instant) {
        st.consecutive_failures = st.consecutive_failures.saturating_add(1);
        let cool_down = self
            .config
            .background_backoff
            .delay_random(st.consecutive_failures - 1);
        let mut not_before = now + cool_down;
        if let Error::RateLimited {
            retry_after,
            response,
        } = error
        {
            let until = now + (*retry_after).min(self.config.max_retry_after);
            st.rate_limited = Some((until, response.clone()));
            not_before = not_before.max(until);
        }
        st.background_not_before = Some(not_before);
        st.last_error = Some(error.clone());
        let usable = self
            .current
            .load()
            .as_ref()
            .is_some_and(|e| e.phase_at(now) != Phase::Expired);
        tracing::warn!(
            error = %error,
            usable_token_kept = usable,
            consecutive_failures = st.consecutive_failures,
            "token refresh failed"
        );
    }

    /// Makes `token` the cached one and starts the timer that moves its phase flag.
    fn install(self: &Arc<Self>, token: Token, now: Instant) {
        let schedule = Schedule::compute(token.lifetime(), &self.config.timing, rand::random());
        let issued = token.issued_at();
        let entry = Arc::new(Entry {
            value_hash: lease::value_hash(token.header_value()),
            cache_id: self.id,
            refresh_at: issued + schedule.refresh_after,
            usable_until: issued + schedule.usable_for,
            token,
            phase: AtomicU8::new(UNTIMED),
            timer: OnceLock::new(),
            cache: Arc::downgrade(self),
        });
        let phase = entry.phase_at(now);
        if phase != Phase::Expired
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let flag = if phase == Phase::Fresh { FRESH } else { STALE };
            entry.phase.store(flag, Ordering::Relaxed);
            let timer = runtime.spawn(phase_timer(
                Arc::downgrade(&entry),
                entry.refresh_at,
                entry.usable_until,
            ));
            let _ = entry.timer.set(timer.abort_handle());
        }
        tracing::info!(
            lifetime_secs = entry.token.lifetime().as_secs(),
            refresh_in_secs = entry.refresh_at.saturating_duration_since(now).as_secs(),
            "token obtained"
        );
        self.current.store(Some(entry));
    }
}

/// The refresh in flight, forgetting one whose task died without a result.
fn live_flight(st: &mut State) -> Option<watch::Receiver<Option<Outcome>>> {
    match &st.flight {
        Some(rx) if rx.has_changed().is_ok() => Some(rx.clone()),
        Some(_) => {
            st.flight = None;
            None
        }
        None => None,
    }
}

/// Clears the flight if its task ends without finishing (a panicking source, a runtime
/// shutting down): waiters then see [`Error::RefreshAborted`] and the next caller starts
/// a new refresh.
struct FlightGuard {
    inner: Arc<Inner>,
    finished: bool,
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        if !self.finished {
            let mut st = self.inner.lock_state();
            self.inner
                .record_failure(&mut st, &Error::RefreshAborted, Instant::now());
            st.flight = None;
            self.inner.refreshing.store(false, Ordering::Relaxed);
        }
    }
}

async fn run_flight(inner: Arc<Inner>, tx: watch::Sender<Option<Outcome>>) {
    let mut guard = FlightGuard {
        inner: Arc::clone(&inner),
        finished: false,
    };
    let deadline = inner.config.refresh_deadline;
    let outcome = match tokio::time::timeout(deadline, inner.fetch_with_retries()).await {
        Ok(outcome) => outcome,
        Err(_) => Err(Error::Timeout(deadline)),
    };
    let now = Instant::now();
    {
        let mut st = inner.lock_state();
        match &outcome {
            Ok(token) => {
                inner.install(token.clone(), now);
                st.consecutive_failures = 0;
                st.background_not_before = None;
                st.rate_limited = None;
                st.last_error = None;
            }
            Err(error) => inner.record_failure(&mut st, error, now),
        }
        st.flight = None;
        inner.refreshing.store(false, Ordering::Relaxed);
        guard.finished = true;
    }
    // Waiters are told the window the cache really keeps (Retry-After, capped).
    let outcome = outcome.map_err(|e| match e {
        Error::RateLimited {
            retry_after,
            response,
        } => Error::RateLimited {
            retry_after: retry_after.min(inner.config.max_retry_after),
            response,
        },
        other => other,
    });
    tx.send_replace(Some(outcome));
}

/// A snapshot of a [`TokenCache`]. See [`TokenCache::status`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CacheStatus {
    /// Where the cached token is in its life.
    pub phase: Phase,
    /// Time left until the cached token's expiry.
    pub expires_in: Option<Duration>,
    /// Whether a refresh is in flight.
    pub refreshing: bool,
    /// Time left in a 429 window.
    pub rate_limited_for: Option<Duration>,
    /// Failed refreshes since the last success.
    pub consecutive_failures: u32,
    /// The last refresh error, until a refresh succeeds.
    pub last_error: Option<Error>,
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCache")
            .field("name", &self.inner.name)
            .field("source", &self.inner.source)
            .field("cached", &self.cached())
            .finish_non_exhaustive()
    }
}
