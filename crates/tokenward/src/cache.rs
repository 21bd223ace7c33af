//! The token cache: lock-free reads, proactive single-flight refresh, failures that never
//! cost a usable token.
//!
//! # The three states of a cached token
//!
//! | state | from | callers get | refresh |
//! |---|---|---|---|
//! | fresh | issued | the token, at once (an atomic load, a clock read, a refcount) | none (or refresh-ahead, below) |
//! | stale | `refresh_at` = issued + fraction × lifetime − jitter | the token, at once | exactly one, in the background |
//! | expired | `usable_until` = expiry − clock-skew allowance | the new token, when the one refresh ends | callers wait on it |
//!
//! Every read compares the token's instants with the clock: what a caller gets never depends
//! on a background task, a timer or a runtime being driven. The cache works from any Tokio
//! runtime, from several, after the one that filled it is gone, and
//! ([`try_header`](TokenCache::try_header)) from a thread with no runtime at all. The margins
//! scale with the lifetime, so every token from a second up keeps a stale window; see
//! [`timing`](crate::timing).
//!
//! # Refresh-ahead
//!
//! By default ([`RefreshAhead::Eager`]) the cache also refreshes at `refresh_at` when nobody
//! reads, so the first burst after a quiet period finds a fresh token. That timer is only an
//! optimisation: if it never runs (no runtime, a runtime gone or blocked), reads still do the
//! right thing. It holds the cache weakly and ends with it. [`RefreshAhead::IfRead`] (the
//! default of a [`TenantCache`](crate::TenantCache)) refreshes ahead only tokens that were
//! read; [`RefreshAhead::OnDemand`] only refreshes when a read finds the token stale.
//!
//! # Single flight
//!
//! At most one refresh runs at a time. It runs on its own task, so a caller that gives up
//! (a dropped future, a timeout) does not cancel it; it has its own deadline (default 30 s);
//! every caller waiting on it gets the same outcome, errors included.
//!
//! # Failures
//!
//! * A failed refresh never replaces a usable token: stale callers keep getting it.
//! * 5xx, 408, `temporarily_unavailable`, connect errors and timeouts are retried inside the
//!   refresh with full-jitter exponential backoff, at most 4 attempts.
//! * After a failed refresh the cache cools down: no background refresh starts until the
//!   cool-down ends. After a failure with no usable token cached, no request is made at all
//!   and callers get [`Error::CoolingDown`] at once, holding the failure and the time left;
//!   after one with a usable token cached, the first caller to find it expired tries again.
//!   It grows with consecutive failures (default 1 s doubling to 60 s, full jitter) and a
//!   success resets it.
//! * 429 opens a window of `Retry-After` (capped, default 60 s; at least 1 s, doubling with
//!   consecutive 429s): callers without a usable token fail fast with [`Error::RateLimited`].
//! * A failure only a new configuration fixes — `invalid_client` ([`Error::InvalidClient`]),
//!   `invalid_grant` ([`Error::ReauthorizationRequired`]), no or a decayed refresh token,
//!   missing scopes — is not retried, and is held: no request until the source's
//!   configuration changes (a rotated client secret, a new refresh token stored: see
//!   [`TokenSource::revision`]), a [`force_refresh`](TokenCache::force_refresh), or
//!   [`CacheConfig::hold`] (default 5 minutes) passes.
//!
//! # A token the server rejected
//!
//! [`invalidate`](TokenCache::invalidate) drops the cached token only if it is still the one
//! rejected, so a burst of 401s makes one refresh. [`Rejection`] decides whether a response
//! rejects the token it carried, and [`replace_rejected`](TokenCache::replace_rejected)
//! drops it and gets the next one, saying whether a resend makes sense: the one routine the
//! tower layer and the reqwest middleware share.
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

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use http::{HeaderMap, HeaderValue, StatusCode};
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tracing::Instrument as _;

use crate::classify::{Failure, classify};
use crate::decay::{DecayState, DecayStatus};
use crate::error::Error;
use crate::grant::TokenSource;
use crate::metrics::{CacheMetrics, InFlight};
use crate::timing::{Backoff, Schedule, TimingConfig};
use crate::token::{Token, checked_add as later};

/// When a [`TokenCache`] refreshes a token that nobody reads in its stale window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RefreshAhead {
    /// At `refresh_at`, whether or not the token is read: the first burst after a quiet
    /// period finds a fresh token. The default of a [`TokenCache`].
    #[default]
    Eager,
    /// At `refresh_at`, if the token was read since it was obtained (the caller whose wait
    /// fetched it does not count): an idle cache makes no calls. The default of a
    /// [`TenantCache`](crate::TenantCache)'s tenants.
    IfRead,
    /// Only when a read finds the token stale.
    OnDemand,
}

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
    /// The shortest 429 window, whatever `Retry-After` says (`0`, a date in the past, none):
    /// doubled for each consecutive 429, up to `max_retry_after`. Default 1 s.
    pub min_retry_after: Duration,
    /// The cool-down after a failed refresh: no background refresh starts until it ends, and
    /// after a failure with no usable token cached, callers get [`Error::CoolingDown`] at
    /// once (no request). Callers with a usable token keep getting it. Grows with
    /// consecutive failures; a success resets it. Default 1 s doubling to 60 s, full jitter.
    pub cool_down: Backoff,
    /// How long a failure that only a new configuration fixes (`invalid_client`,
    /// `invalid_grant`, a missing or decayed refresh token, missing scopes) is held: no
    /// request until the source's configuration changes (see
    /// [`TokenSource::revision`]), a
    /// [`force_refresh`](TokenCache::force_refresh), or this long. Default 5 minutes.
    pub hold: Duration,
    /// Whether a token nobody reads is refreshed at `refresh_at`. Default
    /// [`RefreshAhead::Eager`].
    pub refresh_ahead: RefreshAhead,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            timing: TimingConfig::default(),
            refresh_deadline: Duration::from_secs(30),
            max_attempts: crate::classify::DEFAULT_MAX_ATTEMPTS,
            backoff: Backoff::default(),
            max_retry_after: Duration::from_secs(60),
            min_retry_after: Duration::from_secs(1),
            cool_down: Backoff::new(Duration::from_secs(1), Duration::from_secs(60)),
            hold: Duration::from_secs(300),
            refresh_ahead: RefreshAhead::Eager,
        }
    }
}

/// Builds a [`TokenCache`]. See [`TokenCache::builder`].
#[derive(Debug)]
pub struct TokenCacheBuilder {
    source: Arc<dyn TokenSource>,
    config: CacheConfig,
    name: Arc<str>,
    /// The metrics' `cache` and `tenant` labels, when not the name alone (a tenant's).
    labels: Option<(Arc<str>, Option<Arc<str>>)>,
    /// A configuration shared with other caches (a tenant map's), used instead of `config`.
    shared_config: Option<Arc<CacheConfig>>,
    /// The cache whose tokens this one serves, once there is one (a tenant being loaded).
    serves: Option<Arc<OnceLock<TokenCache>>>,
}

impl TokenCacheBuilder {
    /// Uses `config`, shared with other caches, instead of its own.
    pub(crate) fn shared_config(mut self, config: Arc<CacheConfig>) -> Self {
        self.shared_config = Some(config);
        self
    }

    /// Serves the tokens of the cache `serves` will hold (a tenant being loaded): a token
    /// rejected through this cache is dropped from that one too. Its refreshes are not
    /// counted (that cache counts its own), nor its token requests once that cache exists:
    /// only a load that failed is counted here, the one place it shows.
    pub(crate) fn serves(mut self, serves: Arc<OnceLock<TokenCache>>) -> Self {
        self.serves = Some(serves);
        self
    }

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

    /// Up to this share of the refresh point is taken off it at random (0.05).
    pub fn refresh_jitter(mut self, jitter: f64) -> Self {
        self.config.timing.refresh_jitter = jitter;
        self
    }

    /// Stop handing a token out this long before it expires (30 s; at most a tenth of the
    /// lifetime).
    pub fn clock_skew(mut self, skew: Duration) -> Self {
        self.config.timing.clock_skew = skew;
        self
    }

    /// Refresh no later than this long before expiry (60 s; at most a fifth of the lifetime).
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

    /// The shortest 429 window (1 s), doubled for each consecutive 429.
    pub fn min_retry_after(mut self, floor: Duration) -> Self {
        self.config.min_retry_after = floor;
        self
    }

    /// The cool-down after a failed refresh (1 s doubling to 60 s, full jitter).
    pub fn cool_down(mut self, backoff: Backoff) -> Self {
        self.config.cool_down = backoff;
        self
    }

    /// How long a failure that only a new configuration fixes is held (5 minutes).
    pub fn hold(mut self, hold: Duration) -> Self {
        self.config.hold = hold;
        self
    }

    /// Whether a token nobody reads is refreshed at `refresh_at` ([`RefreshAhead::Eager`]).
    pub fn refresh_ahead(mut self, mode: RefreshAhead) -> Self {
        self.config.refresh_ahead = mode;
        self
    }

    /// A name for this cache in `tracing` output and the [metrics](crate::metrics)' `cache`
    /// label (e.g. the API it serves). Default `default`.
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// A tenant's labels: the tenant cache's name as `cache`, and the tenant if asked for.
    pub(crate) fn labels(mut self, cache: Arc<str>, tenant: Option<Arc<str>>) -> Self {
        self.labels = Some((cache, tenant));
        self
    }

    /// Builds the cache. No token is requested until the first read.
    pub fn build(self) -> TokenCache {
        let kind = self.source.kind();
        let metrics = match &self.labels {
            // Tenants that share their labels share their series: no per-cache gauges.
            Some((cache, tenant)) => {
                CacheMetrics::new(cache, tenant.as_ref(), kind, tenant.is_some())
            }
            None => CacheMetrics::new(&self.name, None, kind, true),
        };
        TokenCache {
            inner: Arc::new(Inner {
                source: self.source,
                config: self.shared_config.unwrap_or_else(|| Arc::new(self.config)),
                metrics,
                name: self.name,
                current: ArcSwapOption::empty(),
                state: Mutex::new(State::default()),
                serves: self.serves,
            }),
        }
    }
}

/// Keeps one access token fresh. Cheap to clone; clones share the token.
#[derive(Clone)]
pub struct TokenCache {
    inner: Arc<Inner>,
}

struct Inner {
    source: Arc<dyn TokenSource>,
    /// Shared by the caches of a tenant map.
    config: Arc<CacheConfig>,
    metrics: CacheMetrics,
    name: Arc<str>,
    current: ArcSwapOption<Entry>,
    state: Mutex<State>,
    /// The cache whose tokens this one serves (see [`TokenCacheBuilder::serves`]).
    serves: Option<Arc<OnceLock<TokenCache>>>,
}

type Outcome = Result<Token, Error>;

/// A refresh in flight: its result channel, which one it is, and when it started.
struct Flight {
    rx: watch::Receiver<Option<Outcome>>,
    id: u64,
    started: Instant,
}

#[derive(Default)]
struct State {
    /// The refresh in flight, if any (boxed: most caches, most of the time, have none).
    flight: Option<Box<Flight>>,
    /// The id of the next flight.
    next_flight: u64,
    /// After a failed refresh: no request until it ends.
    cool_down: Option<Box<CoolDown>>,
    consecutive_failures: u32,
    /// 429s in a row, for the growing floor of the window.
    consecutive_rate_limits: u32,
    /// The refresh-ahead timer of the cached token.
    ahead: Option<AbortHandle>,
    /// The tenant, once a [`TenantCache`](crate::TenantCache) removed or replaced it.
    retired: Option<Box<str>>,
    /// When the last token was obtained (wall clock); `None` before the first.
    last_refresh: Option<SystemTime>,
    /// The cached token was dropped because an API rejected it: the next refresh's reason.
    rejected: bool,
}

/// After a failed refresh, no request is made until it ends; callers without a usable token
/// get the failure at once.
struct CoolDown {
    /// The end of the backoff (or of the 429 window).
    until: Instant,
    /// For a failure only a new configuration fixes: the source's revision it failed with,
    /// and the end of the hold. Another revision ends the hold (not the backoff).
    held: Option<(u64, Instant)>,
    error: Error,
    /// Whether callers without a usable token are held back too, not only background
    /// refreshes: after a failure with no usable token cached, or a 429. Not for a refresh
    /// that was aborted (its runtime shut down): the endpoint did not fail.
    foreground: bool,
}

impl CoolDown {
    /// When it ends, as things stand.
    fn end(&self, source: &dyn TokenSource) -> Instant {
        match self.held {
            Some((revision, until)) if revision == source.revision() => until.max(self.until),
            _ => self.until,
        }
    }

    fn active(&self, now: Instant, source: &dyn TokenSource) -> bool {
        now < self.end(source)
    }

    fn is_rate_limit(&self) -> bool {
        matches!(self.error, Error::RateLimited { .. })
    }

    /// What a caller without a usable token gets in it: the failure, with the time left.
    fn error(&self, now: Instant, source: &dyn TokenSource) -> Error {
        let left = self.end(source).saturating_duration_since(now);
        match &self.error {
            Error::RateLimited { response, .. } => Error::RateLimited {
                retry_after: left,
                response: response.clone(),
            },
            error => Error::CoolingDown {
                retry_in: left,
                error: Box::new(error.clone()),
            },
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(timer) = st.ahead.take() {
            timer.abort();
        }
    }
}

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
    token: Token,
    refresh_at: Instant,
    usable_until: Instant,
    /// Whether a caller read it (for [`RefreshAhead::IfRead`]).
    read: AtomicBool,
}

/// How long after its deadline a refresh that has not reported is taken for dead (its task
/// is not being run: its runtime is blocked, idle or gone).
const FLIGHT_GRACE: Duration = Duration::from_secs(1);

/// The soonest a failed refresh ahead is tried again, whatever the cool-down says.
const MIN_REARM: Duration = Duration::from_millis(100);

impl Entry {
    fn phase_at(&self, now: Instant) -> Phase {
        if now >= self.usable_until {
            Phase::Expired
        } else if now >= self.refresh_at {
            Phase::Stale
        } else {
            Phase::Fresh
        }
    }
}

enum Joined {
    Ready(Token),
    /// Wait for this refresh, until then at most.
    Wait(watch::Receiver<Option<Outcome>>, Instant),
}

impl TokenCache {
    /// Starts building a cache over `source`.
    pub fn builder(source: impl TokenSource) -> TokenCacheBuilder {
        TokenCacheBuilder {
            source: Arc::new(source),
            config: CacheConfig::default(),
            name: Arc::from("default"),
            labels: None,
            shared_config: None,
            serves: None,
        }
    }

    /// A cache over `source` with the default configuration.
    pub fn new(source: impl TokenSource) -> TokenCache {
        TokenCache::builder(source).build()
    }

    /// The `Authorization` header value of a usable token, refreshing as needed.
    ///
    /// While the token is fresh or stale this is ready at once: an atomic load, a clock
    /// read and a reference-count increment, with no lock and no allocation. Once it is
    /// expired (or before the first token), callers wait on the one refresh.
    pub async fn header(&self) -> Result<HeaderValue, Error> {
        match self.try_header() {
            Some(header) => Ok(header),
            None => self.slow().await.map(|t| t.header_value().clone()),
        }
    }

    /// A usable token (with its scope, expiry and header), refreshing as needed. Like
    /// [`header`](Self::header), a read of a usable token is ready at once.
    pub async fn token(&self) -> Result<Token, Error> {
        match self.read(Token::clone) {
            Some(token) => Ok(token),
            None => self.slow().await,
        }
    }

    /// The header value of the cached token if it is usable (fresh or stale); `None` if
    /// there is none or it is expired. Never waits; a stale read starts the background
    /// refresh (when called inside a Tokio runtime). Works from any thread.
    #[inline]
    pub fn try_header(&self) -> Option<HeaderValue> {
        self.read(|token| token.header_value().clone())
    }

    /// The read path: the cached entry, checked against the clock.
    #[inline]
    fn read<R>(&self, f: impl FnOnce(&Token) -> R) -> Option<R> {
        let guard = self.inner.current.load();
        let entry = guard.as_ref()?;
        let now = Instant::now();
        if now >= entry.usable_until {
            return None;
        }
        if !entry.read.load(Ordering::Relaxed) {
            entry.read.store(true, Ordering::Relaxed);
            self.inner.first_read(entry, now);
        }
        if now >= entry.refresh_at {
            self.inner.start_background(now);
        }
        Some(f(&entry.token))
    }

    /// Gets a new token now, whatever the cached one's state: joins the refresh in flight or
    /// starts one, also in a cool-down or a held failure. Still respects a 429 window
    /// ([`Error::RateLimited`]).
    pub async fn force_refresh(&self) -> Result<Token, Error> {
        let span = tracing::info_span!("tokenward.wait", cache = %self.inner.name, forced = true);
        self.acquire(true).instrument(span).await
    }

    /// Drops the cached token if it is still the one whose header is `rejected` (the server
    /// answered 401 `invalid_token` for it). Returns whether it was dropped.
    ///
    /// Comparing by value makes a burst of 401s for one token cost one refresh: the first
    /// call drops it, the rest find a different (or no) token and do nothing.
    pub fn invalidate(&self, rejected: &HeaderValue) -> bool {
        // The same token is cached where it came from: dropped there too, or a request
        // that does not resend would leave it served.
        let upstream = (self.inner.serves.as_ref())
            .and_then(|serves| serves.get())
            .is_some_and(|upstream| upstream.invalidate(rejected));
        self.invalidate_own(rejected) || upstream
    }

    /// [`invalidate`](Self::invalidate) for this cache's own token.
    fn invalidate_own(&self, rejected: &HeaderValue) -> bool {
        let current = self.inner.current.load();
        let Some(entry) = current.as_ref() else {
            return false;
        };
        if entry.token.header_value() != rejected {
            return false;
        }
        // Under the state lock, so the next refresh to start is the one the rejection causes.
        let mut st = self.inner.lock_state();
        let previous = self
            .inner
            .current
            .compare_and_swap(&current, None::<Arc<Entry>>);
        let dropped = matches!(&*previous, Some(p) if Arc::ptr_eq(p, entry));
        if dropped {
            // A refresh already in flight is the one callers join: it has its own reason. (A
            // dead one is forgotten here, as the next caller would.)
            st.rejected = self.inner.live_flight(&mut st, Instant::now()).is_none();
            drop(st);
            tracing::info!(cache = %self.inner.name, "cached token invalidated after the server rejected it");
        }
        dropped
    }

    /// The server rejected `rejected` (see [`Rejection`]): drops it if it is still cached
    /// (by value), then gets the next token. `Ok(Some(next))`: resend with `next`.
    /// `Ok(None)`: the next token is the rejected one again, so a resend cannot help.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tokenward::{Token, TokenCache, grant::from_fn};
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tokenward::Error> {
    /// static N: AtomicUsize = AtomicUsize::new(0);
    /// let cache = TokenCache::new(from_fn(|| async {
    ///     let n = N.fetch_add(1, Ordering::SeqCst);
    ///     Token::builder(format!("t{n}")).expires_in(Duration::from_secs(3600)).build()
    /// }));
    /// let sent = cache.header().await?;
    /// let next = cache.replace_rejected(&sent).await?.expect("a new token");
    /// assert_eq!(next, "Bearer t1");
    /// # Ok(()) }
    /// ```
    pub async fn replace_rejected(
        &self,
        rejected: &HeaderValue,
    ) -> Result<Option<HeaderValue>, Error> {
        let dropped = self.invalidate(rejected);
        let next = self.header().await?;
        if next == rejected {
            tracing::debug!(
                cache = %self.inner.name,
                "the token obtained after the rejection is the rejected one: no resend"
            );
            return Ok(None);
        }
        tracing::debug!(cache = %self.inner.name, dropped, "a new token replaces the rejected one");
        Ok(Some(next))
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

    /// A retired cache serves a tenant again (it was inserted into a `TenantCache`).
    pub(crate) fn revive(&self) {
        self.inner.lock_state().retired = None;
    }

    /// How many handles of this cache exist (a tenant map's, and each request's).
    pub(crate) fn handles(&self) -> usize {
        Arc::strong_count(&self.inner)
    }

    /// Whether both handles are the same cache.
    pub(crate) fn same(&self, other: &TokenCache) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// The tenant this cache served was removed or replaced: drop the token, and fetch no
    /// other (reads fail with [`Error::TenantRemoved`]). A refresh in flight runs to its end
    /// (a rotated refresh token is never lost), but its token is handed to nobody.
    pub(crate) fn retire(&self, tenant: String) {
        let mut st = self.inner.lock_state();
        st.retired = Some(tenant.into_boxed_str());
        if let Some(timer) = st.ahead.take() {
            timer.abort();
        }
        self.inner.current.store(None);
    }

    /// The cached token, whatever its state, without refreshing.
    pub fn cached(&self) -> Option<Token> {
        self.inner.current.load().as_ref().map(|e| e.token.clone())
    }

    /// A snapshot of the cache's state, for health checks and dashboards.
    pub fn status(&self) -> CacheStatus {
        let now = Instant::now();
        let entry = self.inner.current.load_full();
        // The source is asked before the cache's lock is taken.
        let decay = self.inner.source.decay_status();
        let st = self.inner.lock_state();
        let phase = entry.as_ref().map_or(Phase::Empty, |e| e.phase_at(now));
        CacheStatus {
            phase,
            expires_in: entry
                .as_ref()
                .map(|e| e.token.expires_at().saturating_duration_since(now)),
            refreshing: st.flight.is_some(),
            rate_limited_for: st
                .cool_down
                .as_ref()
                .filter(|c| c.is_rate_limit())
                .map(|c| c.until.saturating_duration_since(now))
                .filter(|d| !d.is_zero()),
            cooling_down_for: st
                .cool_down
                .as_ref()
                .map(|c| c.end(&*self.inner.source).saturating_duration_since(now))
                .filter(|d| !d.is_zero()),
            consecutive_failures: st.consecutive_failures,
            last_error: st.cool_down.as_ref().map(|c| c.error.clone()),
            last_refresh: st.last_refresh,
            // As `join_or_start` decides: a usable token, or a read would ask for one.
            usable: match phase {
                Phase::Fresh | Phase::Stale => true,
                Phase::Empty | Phase::Expired => {
                    !st.cool_down
                        .as_ref()
                        .is_some_and(|c| c.foreground && c.active(now, &*self.inner.source))
                        && decay
                            .as_ref()
                            .is_none_or(|d| d.state != DecayState::HardFail)
                }
            },
            decay,
        }
    }

    /// The path for a token that is not usable, kept out of line so the read path stays small.
    #[cold]
    #[inline(never)]
    fn slow(&self) -> Pin<Box<dyn Future<Output = Outcome> + Send + '_>> {
        let span = tracing::info_span!("tokenward.wait", cache = %self.inner.name);
        Box::pin(self.acquire(false).instrument(span))
    }

    async fn acquire(&self, force: bool) -> Outcome {
        if !force && let Some(token) = self.read(Token::clone) {
            return Ok(token);
        }
        // A refresh that overruns its limit is not being run (its runtime is blocked, idle
        // or gone): the caller then joins or starts another, once.
        for _ in 0..2 {
            match self.inner.join_or_start(Instant::now(), force)? {
                Joined::Ready(token) => return Ok(token),
                Joined::Wait(rx, until) => {
                    if let Some(outcome) = wait(rx, until).await {
                        return outcome;
                    }
                }
            }
        }
        Err(Error::Timeout(self.inner.config.refresh_deadline))
    }
}

/// The refresh's outcome, or `None` if it has none by `until`.
async fn wait(mut rx: watch::Receiver<Option<Outcome>>, until: Instant) -> Option<Outcome> {
    if let Some(outcome) = rx.borrow().clone() {
        return Some(outcome);
    }
    // An error means the refresh task ended without sending (panic, runtime shutdown).
    let aborted = || Some(Err(Error::RefreshAborted));
    if tokio::runtime::Handle::try_current().is_err() {
        // No timer here: the refresh runs on another runtime, and has its own deadline.
        return match rx.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.clone().or_else(aborted),
            Err(_) => aborted(),
        };
    }
    match tokio::time::timeout_at(until, rx.wait_for(Option::is_some)).await {
        Ok(Ok(outcome)) => outcome.clone().or_else(aborted),
        Ok(Err(_)) => aborted(),
        Err(_) => None,
    }
}

impl Inner {
    fn lock_state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Under the lock: join the refresh in flight, or find a usable token installed since
    /// the caller looked, or start a refresh (outside a 429 window).
    fn join_or_start(self: &Arc<Self>, now: Instant, force: bool) -> Result<Joined, Error> {
        let mut st = self.lock_state();
        if let Some(tenant) = &st.retired {
            return Err(Error::TenantRemoved {
                tenant: tenant.to_string(),
            });
        }
        if let Some(joined) = self.live_flight(&mut st, now) {
            return Ok(joined);
        }
        if !force
            && let Some(entry) = self.current.load_full()
            && entry.phase_at(now) != Phase::Expired
        {
            return Ok(Joined::Ready(entry.token.clone()));
        }
        // A forced refresh ends a cool-down (a hold included), but not a 429 window.
        if let Some(cool_down) = &st.cool_down
            && cool_down.foreground
            && cool_down.active(now, &*self.source)
            && (!force || cool_down.is_rate_limit())
        {
            return Err(cool_down.error(now, &*self.source));
        }
        let reason = if force {
            "forced"
        } else if std::mem::take(&mut st.rejected) {
            "rejected"
        } else if st.last_refresh.is_none() {
            "first"
        } else {
            "expired"
        };
        let rx = self.start_flight(&mut st, now, reason);
        Ok(Joined::Wait(rx, later(now, self.flight_limit())))
    }

    /// The stale path (and the refresh-ahead timer): make sure one background refresh runs,
    /// unless a refresh is in flight or a failed one is cooling down.
    #[cold]
    #[inline(never)]
    fn start_background(self: &Arc<Self>, now: Instant) {
        // Outside a runtime no refresh can start: the stale token is still served.
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let mut st = self.lock_state();
        if st.retired.is_some() || self.live_flight(&mut st, now).is_some() {
            return;
        }
        // A refresh may have ended (and installed a fresh token) while this caller waited
        // for the lock.
        if self
            .current
            .load()
            .as_ref()
            .is_some_and(|e| now < e.refresh_at)
        {
            return;
        }
        if st
            .cool_down
            .as_ref()
            .is_some_and(|c| c.active(now, &*self.source))
        {
            return;
        }
        drop(self.start_flight(&mut st, now, "stale"));
    }

    /// The refresh in flight, forgetting one whose task died without a result or that is
    /// past its deadline without a word (its task is not being run).
    fn live_flight(&self, st: &mut State, now: Instant) -> Option<Joined> {
        let flight = st.flight.as_ref()?;
        let until = later(flight.started, self.flight_limit());
        if flight.rx.has_changed().is_ok() && now < until {
            return Some(Joined::Wait(flight.rx.clone(), until));
        }
        if flight.rx.has_changed().is_ok() {
            tracing::warn!(
                cache = %self.name,
                "a token refresh is past its deadline without a result (its runtime is not \
                 running it); starting another"
            );
        }
        st.flight = None;
        None
    }

    /// How long a refresh may take before it is taken for dead: its deadline and a grace.
    fn flight_limit(&self) -> Duration {
        self.config.refresh_deadline.saturating_add(FLIGHT_GRACE)
    }

    fn start_flight(
        self: &Arc<Self>,
        st: &mut State,
        now: Instant,
        reason: &'static str,
    ) -> watch::Receiver<Option<Outcome>> {
        let (tx, rx) = watch::channel(None);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let id = st.next_flight;
                st.next_flight += 1;
                st.flight = Some(Box::new(Flight {
                    rx: rx.clone(),
                    id,
                    started: now,
                }));
                // Whatever started it, this is the refresh after a rejection, if one came.
                st.rejected = false;
                let span = tracing::info_span!(
                    "tokenward.refresh",
                    cache = %self.name,
                    grant = self.source.kind(),
                    reason
                );
                // The caller whose read started it (if it waits: its `tokenward.wait`).
                span.follows_from(tracing::Span::current());
                let deadline = later(now, self.config.refresh_deadline);
                let flight = run_flight(Arc::clone(self), tx, id, reason, deadline);
                runtime.spawn(flight.instrument(span));
            }
            Err(_) => {
                tx.send_replace(Some(Err(Error::Config(
                    "tokenward needs a Tokio runtime (with time enabled) to refresh tokens".into(),
                ))));
            }
        }
        rx
    }

    /// The refresh's attempts, until one succeeds, one fails for good, or `deadline` (the
    /// caller's timeout ends them then).
    async fn fetch_with_retries(&self, deadline: Instant) -> Outcome {
        let max_attempts = self.config.max_attempts.max(1);
        let mut attempt = 1;
        let mut waited = Duration::ZERO;
        loop {
            match self.attempt(attempt, waited, deadline).await {
                Ok(token) => return Ok(token),
                Err(e)
                    if e.is_transient() && attempt < max_attempts && self.source.may_repeat(&e) =>
                {
                    let delay = self.config.backoff.delay_random(attempt - 1);
                    tracing::warn!(
                        attempt,
                        max_attempts,
                        delay_ms = delay.as_millis() as u64,
                        error = %crate::error::chain(&e),
                        "token request failed; retrying after backoff"
                    );
                    tokio::time::sleep(delay).await;
                    waited = delay;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One request for a token, in its span (`tokenward.token_request`), counted. `waited`
    /// is the backoff slept before it.
    async fn attempt(&self, attempt: u32, waited: Duration, deadline: Instant) -> Outcome {
        let span = tracing::info_span!(
            "tokenward.token_request",
            cache = %self.name,
            grant = self.source.kind(),
            attempt,
            wait_ms = waited.as_millis() as u64,
            "http.response.status_code" = tracing::field::Empty,
            outcome = tracing::field::Empty,
        );
        let mut record = Attempted {
            metrics: &self.metrics,
            serves: self.serves.as_deref(),
            span: span.clone(),
            started: Instant::now(),
            deadline,
            limit: self.config.refresh_deadline,
            done: false,
        };
        let outcome = self.source.fetch().instrument(span).await;
        record.end(outcome.as_ref().map(|_| ()));
        outcome
    }

    /// Failure bookkeeping: count it, open the cool-down, and (refreshing ahead) try again
    /// when it ends. `revision` is the source's when the refresh started.
    fn record_failure(
        self: &Arc<Self>,
        st: &mut State,
        error: &Error,
        now: Instant,
        rearm: bool,
        revision: Option<u64>,
    ) {
        st.consecutive_failures = st.consecutive_failures.saturating_add(1);
        let mut held = None;
        let backoff = if let Error::RateLimited { retry_after, .. } = error {
            // Never less than a floor that doubles with each 429 in a row: `Retry-After: 0`
            // or a date in the past does not send every caller straight back.
            st.consecutive_rate_limits = st.consecutive_rate_limits.saturating_add(1);
            let cap = self.config.max_retry_after;
            let floor = Backoff::new(
                self.config.min_retry_after,
                cap.max(self.config.min_retry_after),
            )
            .ceiling(st.consecutive_rate_limits - 1);
            (*retry_after).min(cap).max(floor)
        } else {
            st.consecutive_rate_limits = 0;
            // Held under the revision the refresh started with, if the source's
            // configuration did not change meanwhile (a secret rotated mid-flight: the new
            // one is tried after the backoff).
            if error.needs_new_configuration()
                && let Some(revision) = revision
                && revision == self.source.revision()
            {
                held = Some((revision, later(now, self.config.hold)));
            }
            self.config
                .cool_down
                .delay_random(st.consecutive_failures - 1)
        };
        let until = later(now, backoff);
        let current = self.current.load_full();
        let usable = current
            .as_ref()
            .is_some_and(|e| e.phase_at(now) != Phase::Expired);
        // A failure while a usable token was cached cools the background refreshes down;
        // once it expires, the first caller without one tries again. A 429 window holds
        // everyone back.
        let foreground = matches!(error, Error::RateLimited { .. })
            || (!usable && !matches!(error, Error::RefreshAborted));
        let cool_down = CoolDown {
            until,
            held,
            error: error.clone(),
            foreground,
        };
        let end = cool_down.end(&*self.source);
        let length = end.saturating_duration_since(now);
        st.cool_down = Some(Box::new(cool_down));
        // Refreshing ahead, try again after the cool-down (not before `refresh_at`, nor less
        // than a moment from now). With `IfRead`, not for a token nobody read: its first
        // read arms it.
        if rearm {
            let at = end.max(later(now, MIN_REARM));
            let wanted = |e: &Arc<Entry>| {
                self.config.refresh_ahead != RefreshAhead::IfRead || e.read.load(Ordering::Relaxed)
            };
            if let Some(entry) = current.filter(|e| at < e.usable_until && wanted(e)) {
                self.arm_refresh_ahead(st, &entry, at.max(entry.refresh_at));
            }
        }
        tracing::warn!(
            error = %crate::error::chain(&error),
            usable_token_kept = usable,
            consecutive_failures = st.consecutive_failures,
            no_request_for_ms = length.as_millis() as u64,
            held_until_reconfigured = held.is_some(),
            "token refresh failed"
        );
    }

    /// Makes `token` the cached one, and sets its refresh-ahead timer. Returns whether it
    /// did (not for a retired cache).
    fn install(self: &Arc<Self>, st: &mut State, token: Token, now: Instant) -> bool {
        if st.retired.is_some() {
            return false;
        }
        st.last_refresh = Some(SystemTime::now());
        let schedule = Schedule::compute(token.lifetime(), &self.config.timing, rand::random());
        let issued = token.issued_at();
        let entry = Arc::new(Entry {
            refresh_at: issued + schedule.refresh_after,
            usable_until: issued + schedule.usable_for,
            token,
            read: AtomicBool::new(false),
        });
        if let Some(timer) = st.ahead.take() {
            timer.abort();
        }
        // With `IfRead`, the token's first read arms it: a token nobody reads holds no timer.
        if entry.refresh_at > now && self.config.refresh_ahead != RefreshAhead::IfRead {
            self.arm_refresh_ahead(st, &entry, entry.refresh_at);
        }
        tracing::info!(
            lifetime_secs = entry.token.lifetime().as_secs(),
            refresh_in_secs = entry.refresh_at.saturating_duration_since(now).as_secs(),
            "token obtained"
        );
        self.current.store(Some(entry));
        true
    }
}

impl Inner {
    /// The first read of `entry`: with [`RefreshAhead::IfRead`], arms its refresh-ahead
    /// timer, if it is still the cached token and no timer is set (a cool-down's). Not
    /// before a cool-down ends, when one is on; not at all when the token is stale and may
    /// be refreshed now (the read starts that refresh).
    #[cold]
    #[inline(never)]
    fn first_read(self: &Arc<Self>, entry: &Arc<Entry>, now: Instant) {
        if self.config.refresh_ahead != RefreshAhead::IfRead {
            return;
        }
        let mut st = self.lock_state();
        let cached = matches!(&*self.current.load(), Some(e) if Arc::ptr_eq(e, entry));
        if cached && st.ahead.is_none() && st.retired.is_none() {
            if tokio::runtime::Handle::try_current().is_err() {
                // No runtime to run the timer on: a later read, on one, arms it.
                entry.read.store(false, Ordering::Relaxed);
                return;
            }
            let cool_down = st.cool_down.as_ref().map(|c| c.end(&*self.source));
            let at = cool_down.map_or(entry.refresh_at, |end| end.max(entry.refresh_at));
            if now < at && at < entry.usable_until {
                self.arm_refresh_ahead(&mut st, entry, at);
            }
        }
    }

    /// Sets the refresh-ahead timer (replacing the one before) to refresh `entry` at `at`.
    fn arm_refresh_ahead(self: &Arc<Self>, st: &mut State, entry: &Arc<Entry>, at: Instant) {
        if let Some(timer) = st.ahead.take() {
            timer.abort();
        }
        if self.config.refresh_ahead != RefreshAhead::OnDemand
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let timer = refresh_ahead(Arc::downgrade(self), Arc::downgrade(entry), at);
            st.ahead = Some(runtime.spawn(timer).abort_handle());
        }
    }
}

/// Refreshes `entry` at `at` if it is still the cached one (and, for
/// [`RefreshAhead::IfRead`], was read). Holds both weakly: a dropped cache ends it.
async fn refresh_ahead(cache: Weak<Inner>, entry: Weak<Entry>, at: Instant) {
    tokio::time::sleep_until(at).await;
    let (Some(inner), Some(entry)) = (cache.upgrade(), entry.upgrade()) else {
        return;
    };
    let cached = matches!(&*inner.current.load(), Some(e) if Arc::ptr_eq(e, &entry));
    let wanted = match inner.config.refresh_ahead {
        RefreshAhead::IfRead => entry.read.load(Ordering::Relaxed),
        _ => true,
    };
    if cached && wanted {
        inner.start_background(Instant::now());
    }
}

/// Clears the flight if its task ends without finishing (a panicking source, a runtime
/// shutting down): waiters then see [`Error::RefreshAborted`] and the next caller starts
/// a new refresh.
struct FlightGuard {
    inner: Arc<Inner>,
    id: u64,
    finished: bool,
    /// The refresh counted as running, until it ends.
    in_flight: Option<InFlight>,
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        drop(self.in_flight.take());
        if !self.finished {
            let mut st = self.inner.lock_state();
            // Its runtime may be shutting down: no timer is armed from here.
            if is_current(&st, self.id) {
                let now = Instant::now();
                self.inner
                    .record_failure(&mut st, &Error::RefreshAborted, now, false, None);
                st.flight = None;
                let gauges = Gauges::of(&st, None, now);
                drop(st);
                gauges.record(&self.inner.metrics, None);
            }
        }
    }
}

/// The gauges a refresh's end sets, read under the cache's lock and recorded after it.
struct Gauges {
    expiry: Option<SystemTime>,
    consecutive_failures: u32,
    rate_limit_end: Option<SystemTime>,
}

impl Gauges {
    fn of(st: &State, expiry: Option<SystemTime>, now: Instant) -> Gauges {
        Gauges {
            expiry,
            consecutive_failures: st.consecutive_failures,
            rate_limit_end: st
                .cool_down
                .as_ref()
                .filter(|c| c.is_rate_limit())
                .map(|c| wall(c.until, now)),
        }
    }

    fn record(self, metrics: &CacheMetrics, refresh_token_used: Option<SystemTime>) {
        metrics.refreshed(
            self.expiry,
            self.consecutive_failures,
            self.rate_limit_end,
            refresh_token_used,
        );
    }
}

/// Counts one token request when it ends, and records its outcome in its span. A request
/// dropped before it ended counts as a `timeout` at the refresh's deadline, as `aborted`
/// before it (its task was dropped: the runtime shut down).
struct Attempted<'a> {
    metrics: &'a CacheMetrics,
    /// The cache this one passes tokens on from, if any (see [`TokenCacheBuilder::serves`]).
    serves: Option<&'a OnceLock<TokenCache>>,
    span: tracing::Span,
    started: Instant,
    /// When the refresh's deadline ends it.
    deadline: Instant,
    /// The deadline's length, for the error.
    limit: Duration,
    done: bool,
}

impl Attempted<'_> {
    fn end(&mut self, outcome: Result<(), &Error>) {
        self.done = true;
        let code = outcome.map_or_else(Error::code, |()| "success");
        self.span.record("outcome", code);
        if let Err(error) = outcome {
            tracing::debug!(parent: &self.span, error = %crate::error::chain(&error), "token request failed");
        }
        // Passed on from a loaded tenant's cache, which counted it.
        if self.serves.is_none_or(|serves| serves.get().is_none()) {
            self.metrics.token_request(outcome, self.started.elapsed());
        }
    }
}

impl Drop for Attempted<'_> {
    fn drop(&mut self) {
        if !self.done {
            let error = if Instant::now() >= self.deadline {
                Error::Timeout(self.limit)
            } else {
                Error::RefreshAborted
            };
            self.end(Err(&error));
        }
    }
}

/// The wall-clock time of `at`, an instant measured against `now`.
fn wall(at: Instant, now: Instant) -> SystemTime {
    let now_wall = SystemTime::now();
    if at >= now {
        now_wall.checked_add(at - now).unwrap_or(now_wall)
    } else {
        now_wall.checked_sub(now - at).unwrap_or(now_wall)
    }
}

/// Whether `id` is the refresh in flight (not one forgotten since, for overrunning).
fn is_current(st: &State, id: u64) -> bool {
    st.flight.as_ref().is_some_and(|f| f.id == id)
}

async fn run_flight(
    inner: Arc<Inner>,
    tx: watch::Sender<Option<Outcome>>,
    id: u64,
    reason: &'static str,
    deadline: Instant,
) {
    let counted = inner.serves.is_none();
    if counted {
        inner.metrics.refresh(reason);
    }
    let mut guard = FlightGuard {
        inner: Arc::clone(&inner),
        id,
        finished: false,
        in_flight: counted.then(|| inner.metrics.in_flight()),
    };
    let limit = inner.config.refresh_deadline;
    let revision = inner.source.revision();
    let mut outcome =
        match tokio::time::timeout_at(deadline, inner.fetch_with_retries(deadline)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(Error::Timeout(limit)),
        };
    let now = Instant::now();
    // The refresh token's last use, for the metrics (read before the cache's lock).
    let used = inner.source.decay_status().and_then(|d| d.last_used);
    let window;
    let mut gauges = None;
    {
        let mut st = inner.lock_state();
        // A refresh forgotten for overrunning reports to its own waiters only: the one that
        // replaced it keeps the cache's bookkeeping.
        if is_current(&st, id) {
            let expiry = match &outcome {
                Ok(token) => {
                    let installed = inner.install(&mut st, token.clone(), now);
                    st.consecutive_failures = 0;
                    st.consecutive_rate_limits = 0;
                    st.cool_down = None;
                    installed.then(|| wall(token.expires_at(), now))
                }
                Err(error) => {
                    inner.record_failure(&mut st, error, now, true, Some(revision));
                    None
                }
            };
            gauges = Some(Gauges::of(&st, expiry, now));
            st.flight = None;
        }
        guard.finished = true;
        window = st
            .cool_down
            .as_ref()
            .filter(|c| c.is_rate_limit())
            .map(|c| c.until.saturating_duration_since(now));
        // Retired while the refresh ran: its token is not handed out either.
        if let (Some(tenant), Ok(_)) = (&st.retired, &outcome) {
            outcome = Err(Error::TenantRemoved {
                tenant: tenant.to_string(),
            });
        }
    }
    if let Some(gauges) = gauges {
        gauges.record(&inner.metrics, used);
    }
    // The refresh has ended: no longer counted as running once its waiters hear of it.
    drop(guard.in_flight.take());
    // Waiters are told the window the cache really keeps (Retry-After, capped, floored).
    let outcome = outcome.map_err(|e| match e {
        Error::RateLimited {
            retry_after,
            response,
        } => Error::RateLimited {
            retry_after: window.unwrap_or(retry_after),
            response,
        },
        other => other,
    });
    tx.send_replace(Some(outcome));
}

/// Which responses of a protected resource reject the access token they carried: a 401
/// whose `Bearer` challenge says `error="invalid_token"` (RFC 6750 §3.1) and, if enabled,
/// a bare 401 (no error code). Nothing else: a 403 `insufficient_scope` needs a re-grant,
/// not a new token, and a 400 is a malformed request.
///
/// The tower layer and the reqwest middleware both decide with this, then call
/// [`TokenCache::replace_rejected`] (or [`TokenCache::invalidate`], when they cannot resend).
///
/// ```
/// use http::{HeaderMap, HeaderValue, StatusCode, header::WWW_AUTHENTICATE};
/// use tokenward::Rejection;
///
/// let mut headers = HeaderMap::new();
/// headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static(r#"Bearer error="invalid_token""#));
/// assert!(Rejection::new().rejects(StatusCode::UNAUTHORIZED, &headers));
/// assert!(!Rejection::new().rejects(StatusCode::BAD_REQUEST, &headers));
///
/// let bare = HeaderMap::new();
/// assert!(!Rejection::new().rejects(StatusCode::UNAUTHORIZED, &bare));
/// assert!(Rejection::new().bare_401(true).rejects(StatusCode::UNAUTHORIZED, &bare));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rejection {
    bare_401: bool,
}

impl Rejection {
    /// Only 401 `invalid_token` rejects the token.
    pub const fn new() -> Self {
        Rejection { bare_401: false }
    }

    /// Also treat a bare 401 (no `error` code in the `Bearer` challenge, or no challenge) as
    /// a rejected token. Off by default: a bare 401 usually means the resource wants other
    /// credentials, and a new token will not help.
    pub const fn bare_401(mut self, enabled: bool) -> Self {
        self.bare_401 = enabled;
        self
    }

    /// Whether a response with this status and these headers rejects the token it carried.
    pub fn rejects(&self, status: StatusCode, headers: &HeaderMap) -> bool {
        if status != StatusCode::UNAUTHORIZED {
            return false;
        }
        match classify(status, headers, None).map(|c| c.failure) {
            Some(Failure::InvalidToken { .. }) => true,
            Some(Failure::Unauthorized) => self.bare_401,
            _ => false,
        }
    }
}

/// A snapshot of a [`TokenCache`]. See [`TokenCache::status`].
///
/// It serialises (serde) to the JSON the health handler of `tokenward-tower` answers with:
/// durations in whole seconds, times as Unix seconds, the last error as its
/// [code](Error::code) and message, and `usable` ([`is_usable`](Self::is_usable)):
///
/// ```json
/// {"usable": true, "phase": "fresh", "expires_in_secs": 3412, "refreshing": false,
///  "rate_limited_for_secs": null, "cooling_down_for_secs": null, "consecutive_failures": 0,
///  "last_refresh": 1796169600, "last_error": null,
///  "decay": {"state": "healthy", "idle_days": 0, "remaining_days": 90, "last_used": 1796169600}}
/// ```
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
    /// Time left in the cool-down after a failed refresh (a 429 window included): no
    /// request is made before then. For a held failure, the time left of the hold.
    pub cooling_down_for: Option<Duration>,
    /// Failed refreshes since the last success.
    pub consecutive_failures: u32,
    /// The last refresh error, until a refresh succeeds.
    pub last_error: Option<Error>,
    /// When the last token was obtained (wall clock), if one was.
    pub last_refresh: Option<SystemTime>,
    /// How close the source's refresh token is to decaying, as this process last saw it;
    /// `None` for sources without one (see [`TokenSource::decay_status`]).
    pub decay: Option<DecayStatus>,
    usable: bool,
}

impl CacheStatus {
    /// Whether a caller gets a token now, or a read now would try to get one: a usable
    /// (fresh or stale) token is cached, or none is and no cool-down, hold or 429 window
    /// keeps the cache from asking (the next read does), and the refresh token has not
    /// decayed past its hard-fail age.
    ///
    /// So a service with no token recovers once its cool-down ends, also when nothing
    /// reads it meanwhile (a readiness probe that took it out of service). A failing refresh
    /// while a usable token is cached is usable too: both show in
    /// [`last_error`](Self::last_error) and [`consecutive_failures`](Self::consecutive_failures),
    /// and in [`needs_attention`](Self::needs_attention).
    pub fn is_usable(&self) -> bool {
        self.usable
    }

    /// Whether it needs someone's attention: not usable, failing, or a refresh token at
    /// its decay warning age or past it.
    pub fn needs_attention(&self) -> bool {
        !self.is_usable()
            || self.consecutive_failures > 0
            || self
                .decay
                .as_ref()
                .is_some_and(|d| d.state >= DecayState::Warn)
    }
}

impl Phase {
    /// `empty`, `fresh`, `stale` or `expired`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Empty => "empty",
            Phase::Fresh => "fresh",
            Phase::Stale => "stale",
            Phase::Expired => "expired",
        }
    }
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl serde::Serialize for CacheStatus {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let secs = |d: Option<Duration>| d.map(|d| d.as_secs());
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("usable", &self.is_usable())?;
        map.serialize_entry("phase", self.phase.as_str())?;
        map.serialize_entry("expires_in_secs", &secs(self.expires_in))?;
        map.serialize_entry("refreshing", &self.refreshing)?;
        map.serialize_entry("rate_limited_for_secs", &secs(self.rate_limited_for))?;
        map.serialize_entry("cooling_down_for_secs", &secs(self.cooling_down_for))?;
        map.serialize_entry("consecutive_failures", &self.consecutive_failures)?;
        map.serialize_entry("last_refresh", &self.last_refresh.map(unix_secs))?;
        let error = self
            .last_error
            .as_ref()
            .map(|e| serde_json::json!({ "kind": e.code(), "message": crate::error::chain(e).to_string() }));
        map.serialize_entry("last_error", &error)?;
        let decay = self.decay.as_ref().map(|d| {
            serde_json::json!({
                "state": d.state.as_str(),
                "idle_days": d.idle.as_secs() / 86_400,
                "remaining_days": d.remaining.as_secs() / 86_400,
                "last_used": d.last_used.map(unix_secs),
            })
        });
        map.serialize_entry("decay", &decay)?;
        map.end()
    }
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
