//! Tenants: one token cache per organisation, behind one key.
//!
//! A [`TenantCache`] maps a tenant key (an organisation id, a customer name) to that
//! tenant's own [`TokenCache`]: its own credentials, cached token, single-flight refresh,
//! backoff and 429 window. One tenant's slow, hanging or failing token endpoint therefore
//! never delays another tenant's reads or refreshes.
//!
//! * **No fallback.** A key with no credentials is [`Error::UnknownTenant`], never another
//!   tenant's (or a default) token.
//! * **Lock-free reads, flat writes.** The tenants are in a concurrent hash map
//!   ([papaya](https://docs.rs/papaya)): a read is a hash lookup with no lock, then the
//!   tenant's own lock-free [`TokenCache`] read, and an [`insert`](TenantCache::insert) or a
//!   [`remove`](TenantCache::remove) costs the same with ten tenants or a hundred thousand.
//! * **Tenants loaded on demand.** With a [`resolver`](TenantCacheBuilder::resolver), a
//!   tenant not in the map is loaded the first time it is asked for (its credentials read
//!   from your database, say): one resolver call per tenant however many requests ask at
//!   once, a key the resolver does not know remembered for a while, a resolver error
//!   ([`Error::TenantResolver`]) never remembered.
//! * **Run-time changes.** Tenants are added, re-keyed with new credentials (the old
//!   cached token is dropped at once: new credentials, new token) and removed while
//!   requests run.
//! * **Idle eviction.** With [`idle_eviction`](TenantCacheBuilder::idle_eviction), the
//!   cached tokens of tenants nobody has read for that long are dropped (the credentials
//!   stay); the tenant's next read simply fetches a new token.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use tokenward::{Error, TenantCache, Token, grant::from_fn};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Error> {
//! // In production the sources are grants: ClientCredentials::builder(..).build()?
//! let source = |org: &'static str| {
//!     from_fn(move || async move {
//!         Token::builder(format!("{org}-token")).expires_in(Duration::from_secs(3600)).build()
//!     })
//! };
//! let tenants: TenantCache<String> = TenantCache::builder()
//!     .idle_eviction(Duration::from_secs(30 * 60))
//!     .tenant("acme".to_string(), source("acme"))
//!     .build();
//! tenants.insert("globex".to_string(), source("globex"));
//!
//! assert_eq!(tenants.header("acme").await?, "Bearer acme-token");
//! assert_eq!(tenants.header("globex").await?, "Bearer globex-token");
//! // An unknown tenant is an error, never someone else's token.
//! assert!(matches!(tenants.header("initech").await, Err(Error::UnknownTenant { .. })));
//! # Ok(()) }
//! ```

use std::borrow::Borrow;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::Duration;

use http::HeaderValue;
use tokio::task::AbortHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::cache::{CacheConfig, CacheStatus, RefreshAhead, TokenCache};
use crate::decay::DecayState;
use crate::endpoint::default_http_client;
use crate::error::{BoxError, Error};
use crate::grant::TenantGrant;
use crate::grant::TokenSource;
use crate::token::Token;
use crate::transport::HttpClient;

/// The request extension that names a request's tenant: what the tower layer and the
/// reqwest middleware read (through [`TenantCache::for_request`]) to pick the tenant's token.
///
/// ```
/// use tokenward::{Error, TenantCache, Tenant};
///
/// let tenants: TenantCache<String> = TenantCache::new();
/// let mut request = http::Request::new(());
/// assert!(matches!(tenants.for_request(request.extensions()), Err(Error::MissingTenant)));
/// request.extensions_mut().insert(Tenant::new("acme"));
/// assert!(matches!(tenants.for_request(request.extensions()), Err(Error::UnknownTenant { .. })));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Tenant<K = String>(pub K);

impl Tenant<String> {
    /// The tenant with this key.
    pub fn new(key: impl Into<String>) -> Self {
        Tenant(key.into())
    }

    /// The tenant key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Tenant<String> {
    fn from(key: &str) -> Self {
        Tenant(key.to_owned())
    }
}

impl From<String> for Tenant<String> {
    fn from(key: String) -> Self {
        Tenant(key)
    }
}

impl<K: fmt::Display> fmt::Display for Tenant<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A snapshot of every tenant of a [`TenantCache`]. See [`TenantCache::status`].
///
/// It serialises (serde) to a summary and the tenants that need attention (not usable,
/// failing, or decaying: [`CacheStatus::needs_attention`]), each with its key and status;
/// the healthy rest are counted, not listed, so the report stays small with many tenants:
///
/// ```json
/// {"usable": false, "tenants": 3, "unusable": 1, "failing": 1, "decaying": 0,
///  "attention": [{"tenant": "acme", "status": {"usable": false, "phase": "empty", ...}}]}
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TenantsStatus<K> {
    /// Each tenant's key and status, in no particular order.
    pub tenants: Vec<(K, CacheStatus)>,
}

impl<K> TenantsStatus<K> {
    /// Whether every tenant is usable ([`CacheStatus::is_usable`]).
    pub fn is_usable(&self) -> bool {
        self.tenants.iter().all(|(_, s)| s.is_usable())
    }

    /// The tenants that need attention ([`CacheStatus::needs_attention`]).
    pub fn attention(&self) -> impl Iterator<Item = &(K, CacheStatus)> {
        self.tenants.iter().filter(|(_, s)| s.needs_attention())
    }
}

impl<K: fmt::Display> serde::Serialize for TenantsStatus<K> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let count = |f: fn(&CacheStatus) -> bool| self.tenants.iter().filter(|(_, s)| f(s)).count();
        let attention: Vec<_> = self
            .attention()
            .map(|(key, status)| serde_json::json!({ "tenant": key.to_string(), "status": status }))
            .collect();
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("usable", &self.is_usable())?;
        map.serialize_entry("tenants", &self.tenants.len())?;
        map.serialize_entry("unusable", &count(|s| !s.is_usable()))?;
        map.serialize_entry("failing", &count(|s| s.consecutive_failures > 0))?;
        map.serialize_entry(
            "decaying",
            &count(|s| {
                s.decay
                    .as_ref()
                    .is_some_and(|d| d.state >= DecayState::Warn)
            }),
        )?;
        map.serialize_entry("attention", &attention)?;
        map.end()
    }
}

/// Token caches for many tenants (organisations), each with its own credentials. Cheap to
/// clone; clones share the tenants.
///
/// Debug output shows the tenant keys and the phase of each one's cached token, never a
/// token or a secret.
///
/// Look a tenant up on every request ([`header`](Self::header), or [`get`](Self::get) and
/// then [`TokenCache::header`]) rather than keeping the [`TokenCache`] that `get` returns:
/// once a tenant is replaced or removed, that cache is detached and keeps using the old
/// credentials.
pub struct TenantCache<K> {
    shared: Arc<Shared<K>>,
}

struct Shared<K> {
    /// The tenants: read without a lock; an insert or a removal costs the same at any size.
    map: papaya::HashMap<K, Entry>,
    config: Arc<CacheConfig>,
    naming: Naming,
    idle: Option<Duration>,
    /// Bumped by every eviction sweep; reads stamp it on the tenant they read.
    generation: AtomicU64,
    /// `(generation, when it ended)` for the sweeps that may still matter, oldest first.
    sweeps: Mutex<VecDeque<(u64, Instant)>>,
    sweeper: OnceLock<AbortHandle>,
    /// The HTTP client (one connection pool) of the grants added as builders: given, or
    /// made on first need.
    http: Mutex<Option<Arc<dyn HttpClient>>>,
    /// Loads a tenant that is not in the map, and rebuilds its key from the text of the one
    /// asked for.
    resolver: Option<(Box<Resolve<K>>, ParseKey<K>)>,
    /// Tenants being loaded, each with the cache their first requests share (and its id).
    loading: Mutex<HashMap<K, (u64, TokenCache)>>,
    /// Ids of the loading caches.
    loads: AtomicU64,
    /// Keys the resolver knows no tenant for, and until when that answer stands.
    unknown: Mutex<HashMap<K, Instant>>,
    unknown_for: Duration,
    /// At most this many tenants in the map, dropping loaded ones past it.
    max_tenants: Option<usize>,
    /// One shrink at a time.
    shrinking: Mutex<()>,
    /// No shrink below this many tenants.
    next_shrink: AtomicUsize,
    /// Idle loaded tenants are dropped whole.
    drop_idle: bool,
}

/// A resolver, boxed: the tenant key to its source, `None` for a key it does not know.
type Resolve<K> = dyn Fn(K) -> ResolveFuture + Send + Sync;

/// A tenant key from its `Display` text.
type ParseKey<K> = fn(&str) -> Option<K>;

/// What a resolver's call comes to.
type ResolveFuture = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Option<Box<dyn TokenSource>>, BoxError>> + Send>,
>;

/// At most this many unknown keys are remembered (each for `unknown_for`).
const MAX_UNKNOWN: usize = 100_000;

struct Entry {
    cache: TokenCache,
    /// The eviction generation in which the tenant was last read (or inserted).
    last_seen: AtomicU64,
    /// Loaded by the resolver (which can load it again): it may be dropped whole.
    loaded: bool,
}

impl Entry {
    #[inline]
    fn touch(&self, generation: u64) {
        // Only write when the generation moved: hot tenants' reads stay read-only.
        if self.last_seen.load(Ordering::Relaxed) != generation {
            self.last_seen.store(generation, Ordering::Relaxed);
        }
    }
}

impl<K> Drop for Shared<K> {
    fn drop(&mut self) {
        if let Some(sweeper) = self.sweeper.get() {
            sweeper.abort();
        }
    }
}

/// Builds a [`TenantCache`]. See [`TenantCache::builder`].
pub struct TenantCacheBuilder<K> {
    config: CacheConfig,
    idle: Option<Duration>,
    tenants: Vec<(K, Pending)>,
    naming: Naming,
    http: Option<Arc<dyn HttpClient>>,
    resolver: Option<(Box<Resolve<K>>, ParseKey<K>)>,
    unknown_for: Duration,
    max_tenants: Option<usize>,
    drop_idle: bool,
}

/// Builds a tenant's cache from its source, once the configuration is known.
type MakeCache = Box<dyn FnOnce(&Arc<CacheConfig>, &Naming, Arc<str>) -> TokenCache + Send>;

/// The metrics' labels of the tenants' caches.
#[derive(Debug, Clone)]
struct Naming {
    /// The `cache` label of every tenant.
    name: Arc<str>,
    /// Whether each tenant gets a `tenant` label.
    tenant_label: bool,
}

impl Default for Naming {
    fn default() -> Self {
        Naming {
            name: Arc::from("tenants"),
            tenant_label: false,
        }
    }
}

/// A tenant's cache over `source`: named after the tenant in `tracing` output, labelled
/// as `naming` says in the metrics.
fn tenant_cache(
    source: impl TokenSource,
    config: &Arc<CacheConfig>,
    naming: &Naming,
    tenant: Arc<str>,
) -> TokenCache {
    let label = naming.tenant_label.then(|| Arc::clone(&tenant));
    TokenCache::builder(source)
        .shared_config(Arc::clone(config))
        .name(tenant)
        .labels(Arc::clone(&naming.name), label)
        .build()
}

enum Pending {
    Source(MakeCache),
    Cache(TokenCache),
}

impl<K: fmt::Debug> fmt::Debug for TenantCacheBuilder<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantCacheBuilder")
            .field("config", &self.config)
            .field("idle_eviction", &self.idle)
            .field("name", &self.naming.name)
            .field("tenant_label", &self.naming.tenant_label)
            .field(
                "tenants",
                &self.tenants.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("resolver", &self.resolver.is_some())
            .field("unknown_for", &self.unknown_for)
            .field("max_tenants", &self.max_tenants)
            .field("drop_idle_tenants", &self.drop_idle)
            .finish()
    }
}

impl<K> TenantCacheBuilder<K>
where
    K: Eq + Hash + Clone + fmt::Debug + fmt::Display + Send + Sync + 'static,
{
    /// The configuration of every tenant's [`TokenCache`] created from a source (by
    /// [`tenant`](Self::tenant) or [`TenantCache::insert`]); see
    /// [`TokenCacheBuilder::config`](crate::TokenCacheBuilder::config). Default:
    /// [`CacheConfig::default()`]. Tenants refresh ahead only tokens that were read
    /// ([`RefreshAhead::Eager`] counts as [`RefreshAhead::IfRead`] here), so idle tenants make
    /// no calls. Each cache is named after its tenant in `tracing` output.
    pub fn cache_config(mut self, config: CacheConfig) -> Self {
        self.config = config;
        self
    }

    /// Drops the cached token of tenants that have not been read for `period` (default:
    /// never). Their credentials stay; the next read fetches a new token.
    ///
    /// When the cache is built inside a Tokio runtime, a background task sweeps every
    /// quarter of `period` (at least once a minute, at most once a second), so a token
    /// is dropped between `period` and `period` plus one sweep interval after its
    /// tenant's last read; the task ends when the last clone of the cache is dropped. Built
    /// outside a runtime, call [`TenantCache::evict_idle`] yourself.
    pub fn idle_eviction(mut self, period: Duration) -> Self {
        self.idle = Some(period);
        self
    }

    /// The `cache` label of the tenants' [metrics](crate::metrics). Default `tenants`.
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.naming.name = name.into();
        self
    }

    /// Whether each tenant's [metrics](crate::metrics) carry a `tenant` label (its key's
    /// `Display`). Default `false`: with many tenants, a label each makes as many series.
    /// Turn it on for a few tenants whose keys are not secret.
    pub fn tenant_label(mut self, enabled: bool) -> Self {
        self.naming.tenant_label = enabled;
        self
    }

    /// Adds a tenant with its credentials. A later one with the same key replaces it.
    pub fn tenant(mut self, tenant: K, source: impl TokenSource) -> Self {
        let make = move |config: &Arc<CacheConfig>, naming: &Naming, name: Arc<str>| {
            tenant_cache(source, config, naming, name)
        };
        self.tenants.push((tenant, Pending::Source(Box::new(make))));
        self
    }

    /// The HTTP client the grants added with [`grant`](Self::grant) and
    /// [`TenantCache::insert_grant`] share (default: one
    /// [`ReqwestClient`](crate::ReqwestClient), made when first needed): one connection pool
    /// for every tenant.
    pub fn http_client(mut self, http: impl HttpClient) -> Self {
        self.http = Some(Arc::new(http));
        self
    }

    /// Adds a tenant from its grant's builder (`ClientCredentials::builder(..)`,
    /// `RefreshTokenGrant::builder(..)`, their `from_issuer`), built here on the tenants'
    /// shared [HTTP client](Self::http_client) unless the builder was given its own.
    ///
    /// # Errors
    ///
    /// The grant's own `build` error, or the default HTTP client's.
    ///
    /// ```
    /// use tokenward::{ClientCredentials, TenantCache};
    ///
    /// # fn main() -> Result<(), tokenward::Error> {
    /// let tenants: TenantCache<String> = TenantCache::builder()
    ///     .grant(
    ///         "acme".into(),
    ///         ClientCredentials::builder("https://auth.acme.example/token", "acme-client")
    ///             .client_secret("acme-secret"),
    ///     )?
    ///     .grant(
    ///         "globex".into(),
    ///         ClientCredentials::builder("https://login.globex.example/token", "globex-client")
    ///             .client_secret("globex-secret"),
    ///     )?
    ///     .build();
    /// assert_eq!(tenants.len(), 2);
    /// # Ok(()) }
    /// ```
    pub fn grant(mut self, tenant: K, grant: impl TenantGrant) -> Result<Self, Error> {
        // The default client is made only for a builder that has none of its own.
        let http = std::cell::RefCell::new(self.http.take());
        let source = grant.into_source(&|| {
            let mut http = http.borrow_mut();
            if let Some(http) = &*http {
                return Ok(Arc::clone(http));
            }
            let made = default_http_client()?;
            *http = Some(Arc::clone(&made));
            Ok(made)
        });
        self.http = http.into_inner();
        let source = source?;
        let make = move |config: &Arc<CacheConfig>, naming: &Naming, name: Arc<str>| {
            tenant_cache(source, config, naming, name)
        };
        self.tenants.push((tenant, Pending::Source(Box::new(make))));
        Ok(self)
    }

    /// Adds a tenant with its own cache configuration (a configuration file's per-tenant
    /// settings): named and labelled as the others are, and refreshing ahead only tokens
    /// that were read.
    pub(crate) fn tenant_with_config(
        mut self,
        tenant: K,
        source: impl TokenSource,
        mut own: CacheConfig,
    ) -> Self {
        if own.refresh_ahead == RefreshAhead::Eager {
            own.refresh_ahead = RefreshAhead::IfRead;
        }
        let make = move |_: &Arc<CacheConfig>, naming: &Naming, name: Arc<str>| {
            tenant_cache(source, &Arc::new(own), naming, name)
        };
        self.tenants.push((tenant, Pending::Source(Box::new(make))));
        self
    }

    /// Loads tenants on demand: the first time a tenant that is not configured is asked for
    /// ([`header`](TenantCache::header), [`token`](TenantCache::token),
    /// [`get`](TenantCache::get), and so the tower layer and the reqwest middleware),
    /// `resolve` is called with its key and answers with its grant, or `None` for a key it
    /// does not know.
    ///
    /// * **One call per tenant.** Requests that ask for the tenant while it loads share one
    ///   call, and one token request after it.
    /// * **Unknown keys are remembered** for [`unknown_for`](Self::unknown_for) (default
    ///   30 s): a flood of requests for a bad key asks once, and each gets
    ///   [`Error::UnknownTenant`]. Inserting the tenant ends that at once.
    /// * **Errors are not remembered.** A failed call is [`Error::TenantResolver`] for the
    ///   requests that waited on it; the next request asks again.
    ///
    /// A loaded tenant is then like one inserted: [`remove`](TenantCache::remove) or
    /// [`insert`](TenantCache::insert) it when its credentials change.
    ///
    /// The key `resolve` gets is rebuilt from the text (`Display`) of the one asked for, so
    /// `K` is `FromStr` (`String`, the integers, your id type); a key whose text does not
    /// parse back to it is not loaded.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tokenward::{Error, TenantCache, Token, grant::from_fn};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Error> {
    /// let tenants: TenantCache<String> = TenantCache::builder()
    ///     .resolver(|org: String| async move {
    ///         // Look the organisation's credentials up (a database, a vault).
    ///         if org != "acme" {
    ///             return Ok::<_, std::io::Error>(None);
    ///         }
    ///         Ok(Some(from_fn(|| async {
    ///             Token::builder("acme-token").expires_in(Duration::from_secs(3600)).build()
    ///         })))
    ///     })
    ///     .build();
    /// assert_eq!(tenants.header("acme").await?, "Bearer acme-token");
    /// assert!(tenants.contains("acme"));
    /// assert!(matches!(tenants.header("initech").await, Err(Error::UnknownTenant { .. })));
    /// # Ok(()) }
    /// ```
    pub fn resolver<F, Fut, S, E>(mut self, resolve: F) -> Self
    where
        K: std::str::FromStr,
        F: Fn(K) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<Option<S>, E>> + Send + 'static,
        S: TokenSource,
        E: Into<BoxError>,
    {
        let resolve: Box<Resolve<K>> = Box::new(move |key: K| -> ResolveFuture {
            let call = resolve(key);
            Box::pin(async move {
                match call.await {
                    Ok(Some(source)) => Ok(Some(Box::new(source) as Box<dyn TokenSource>)),
                    Ok(None) => Ok(None),
                    Err(error) => Err(error.into()),
                }
            })
        });
        self.resolver = Some((resolve, |text| text.parse().ok()));
        self
    }

    /// How long a key the [`resolver`](Self::resolver) said it does not know stays unknown
    /// without asking it again (default 30 s; at most 100,000 keys are remembered).
    pub fn unknown_for(mut self, period: Duration) -> Self {
        self.unknown_for = period;
        self
    }

    /// Keeps memory bounded: past `max` tenants, the tenants the
    /// [`resolver`](Self::resolver) loaded are dropped, least recently read first, down to
    /// nine tenths of `max` (so the scan this takes is made once per `max / 10` loads). A
    /// tenant that a request is using is never dropped, and one dropped while a request has
    /// just picked it up still serves that request; the next request loads it again.
    /// Tenants inserted by hand are never dropped. Default: no limit.
    pub fn max_tenants(mut self, max: usize) -> Self {
        self.max_tenants = Some(max.max(1));
        self
    }

    /// With [`idle_eviction`](Self::idle_eviction), drops the tenants the
    /// [`resolver`](Self::resolver) loaded whole once idle for the period, credentials and
    /// all, instead of only their token (default `false`). A tenant in use is never dropped;
    /// the next request for a dropped one loads it again.
    pub fn drop_idle_tenants(mut self, drop: bool) -> Self {
        self.drop_idle = drop;
        self
    }

    /// Adds a tenant with a cache configured by the caller (for example with its own
    /// deadline or backoff).
    pub fn tenant_cache(mut self, tenant: K, cache: TokenCache) -> Self {
        self.tenants.push((tenant, Pending::Cache(cache)));
        self
    }

    /// Builds the tenant cache. No token is requested until a tenant is first read.
    pub fn build(mut self) -> TenantCache<K> {
        if self.config.refresh_ahead == RefreshAhead::Eager {
            self.config.refresh_ahead = RefreshAhead::IfRead;
        }
        let config = Arc::new(self.config);
        let map = papaya::HashMap::with_capacity(self.tenants.len());
        {
            let map = map.pin();
            for (key, tenant) in self.tenants {
                let cache = match tenant {
                    Pending::Source(make) => {
                        make(&config, &self.naming, Arc::from(key.to_string()))
                    }
                    Pending::Cache(cache) => cache,
                };
                map.insert(key, new_tenant(cache, 0));
            }
        }
        let shared = Arc::new(Shared {
            map,
            config,
            naming: self.naming,
            idle: self.idle,
            generation: AtomicU64::new(0),
            sweeps: Mutex::new(VecDeque::new()),
            sweeper: OnceLock::new(),
            http: Mutex::new(self.http),
            resolver: self.resolver,
            loading: Mutex::new(HashMap::new()),
            loads: AtomicU64::new(0),
            unknown: Mutex::new(HashMap::new()),
            unknown_for: self.unknown_for,
            max_tenants: self.max_tenants,
            shrinking: Mutex::new(()),
            next_shrink: AtomicUsize::new(0),
            drop_idle: self.drop_idle,
        });
        if let Some(period) = self.idle {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    let every = (period / 4)
                        .min(Duration::from_secs(60))
                        .max(Duration::from_secs(1));
                    let task = runtime.spawn(sweep(Arc::downgrade(&shared), every));
                    let _ = shared.sweeper.set(task.abort_handle());
                }
                Err(_) => tracing::info!(
                    idle_secs = period.as_secs(),
                    "tenant cache built outside a Tokio runtime: no idle sweeper runs; \
                     call TenantCache::evict_idle periodically"
                ),
            }
        }
        TenantCache { shared }
    }
}

fn new_tenant(cache: TokenCache, generation: u64) -> Entry {
    Entry {
        cache,
        last_seen: AtomicU64::new(generation),
        loaded: false,
    }
}

fn loaded_tenant(cache: TokenCache, generation: u64) -> Entry {
    Entry {
        cache,
        last_seen: AtomicU64::new(generation),
        loaded: true,
    }
}

async fn sweep<K>(shared: Weak<Shared<K>>, every: Duration)
where
    K: Eq + Hash + Clone + fmt::Debug + fmt::Display + Send + Sync + 'static,
{
    let mut interval = tokio::time::interval_at(Instant::now() + every, every);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        shared.evict_idle();
    }
}

impl<K> Clone for TenantCache<K> {
    fn clone(&self) -> Self {
        TenantCache {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<K> Default for TenantCache<K>
where
    K: Eq + Hash + Clone + fmt::Debug + fmt::Display + Send + Sync + 'static,
{
    fn default() -> Self {
        TenantCache::builder().build()
    }
}

impl<K> TenantCache<K>
where
    K: Eq + Hash + Clone + fmt::Debug + fmt::Display + Send + Sync + 'static,
{
    /// Starts building a tenant cache.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tokenward::{CacheConfig, TenantCache};
    ///
    /// let mut config = CacheConfig::default();
    /// config.refresh_deadline = Duration::from_secs(10);
    /// let tenants: TenantCache<u64> = TenantCache::builder()
    ///     .cache_config(config)
    ///     .idle_eviction(Duration::from_secs(3600))
    ///     .build();
    /// assert!(tenants.is_empty());
    /// ```
    pub fn builder() -> TenantCacheBuilder<K> {
        TenantCacheBuilder {
            config: CacheConfig::default(),
            idle: None,
            tenants: Vec::new(),
            naming: Naming::default(),
            http: None,
            resolver: None,
            unknown_for: Duration::from_secs(30),
            max_tenants: None,
            drop_idle: false,
        }
    }

    /// An empty tenant cache with the default configuration and no idle eviction.
    pub fn new() -> Self {
        TenantCache::builder().build()
    }

    /// Adds a tenant, or replaces its credentials, while requests run. Returns the replaced
    /// tenant's cache, if there was one.
    ///
    /// Replacing drops the old cached token at once: the next read fetches a new token with
    /// the new credentials. The returned cache is retired: empty, and its reads fail with
    /// [`Error::TenantRemoved`] (a request in flight is not resent with the old credentials).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tokenward::{TenantCache, Token, grant::from_fn};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let issue = |name: &'static str| {
    ///     from_fn(move || async move { Token::builder(name).build() })
    /// };
    /// let tenants = TenantCache::new();
    /// assert!(tenants.insert("acme", issue("old-secret-token")).is_none());
    /// assert_eq!(tenants.header("acme").await.unwrap(), "Bearer old-secret-token");
    /// assert!(tenants.insert("acme", issue("new-secret-token")).is_some());
    /// assert_eq!(tenants.header("acme").await.unwrap(), "Bearer new-secret-token");
    /// # }
    /// ```
    pub fn insert(&self, tenant: K, source: impl TokenSource) -> Option<TokenCache> {
        let name = Arc::from(tenant.to_string());
        let cache = tenant_cache(source, &self.shared.config, &self.shared.naming, name);
        self.insert_cache(tenant, cache)
    }

    /// Like [`insert`](Self::insert), from a grant's builder, built on the tenants' shared
    /// [HTTP client](Self::http_client) unless the builder was given its own (see
    /// [`TenantCacheBuilder::grant`]).
    ///
    /// # Errors
    ///
    /// The grant's own `build` error, or the default HTTP client's; the tenants are then
    /// unchanged.
    pub fn insert_grant(
        &self,
        tenant: K,
        grant: impl TenantGrant,
    ) -> Result<Option<TokenCache>, Error> {
        let source = grant.into_source(&|| self.http_client())?;
        Ok(self.insert(tenant, source))
    }

    /// The HTTP client the tenants' grants share: the one given to
    /// [`TenantCacheBuilder::http_client`], or a [`ReqwestClient`](crate::ReqwestClient)
    /// made on first call. Give it to grants built elsewhere (an
    /// [`AuthorizationServer`](crate::AuthorizationServer) too) to share its connection pool.
    ///
    /// # Errors
    ///
    /// When the default client cannot be made (no `reqwest` feature, a TLS set-up failure).
    pub fn http_client(&self) -> Result<Arc<dyn HttpClient>, Error> {
        let mut http = self
            .shared
            .http
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(http) = &*http {
            return Ok(Arc::clone(http));
        }
        // Made under the lock on purpose: callers racing here wait (once, for a few
        // milliseconds) and get the same client, so every tenant shares one pool.
        let made = default_http_client()?;
        *http = Some(Arc::clone(&made));
        Ok(made)
    }

    /// Like [`insert`](Self::insert), with a cache the caller configured (its own
    /// deadline, backoff or timing). Idle eviction applies to it too. A cache serves one
    /// tenant: removing or replacing that tenant retires it (inserting it again revives it).
    pub fn insert_cache(&self, tenant: K, cache: TokenCache) -> Option<TokenCache> {
        let generation = self.shared.generation.load(Ordering::Relaxed);
        let name = tenant.to_string();
        // A cache retired from an earlier tenant serves again here.
        cache.revive();
        let new = cache.clone();
        // One writer at a time (and no load of this key finishes meanwhile).
        let mut loading = lock(&self.shared.loading);
        lock(&self.shared.unknown).remove(&tenant);
        // A load of this key in flight is cancelled: these are its credentials now.
        if let Some((_, load)) = loading.remove(&tenant) {
            load.retire(name.clone());
        }
        let map = self.shared.map.pin();
        let old = map
            .insert(tenant, new_tenant(cache, generation))
            .map(|old| old.cache.clone());
        drop(map);
        drop(loading);
        old.inspect(|old| {
            // Inserting the cache the tenant already has changes nothing.
            if !old.same(&new) {
                old.retire(name);
            }
        })
    }

    /// Removes a tenant and drops its cached token. Returns whether it was there. Its reads
    /// fail with [`Error::UnknownTenant`] from now on, and a request in flight for it is not
    /// resent with a new token ([`Error::TenantRemoved`]).
    pub fn remove<Q>(&self, tenant: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + fmt::Display + ?Sized,
    {
        let mut loading = lock(&self.shared.loading);
        // A load in flight is cancelled too: a removed tenant does not come back.
        let load = loading.remove(tenant);
        let map = self.shared.map.pin();
        let old = map.remove(tenant).map(|old| old.cache.clone());
        drop(map);
        drop(loading);
        if let Some((_, load)) = &load {
            load.retire(tenant.to_string());
        }
        match old {
            Some(old) => {
                old.retire(tenant.to_string());
                true
            }
            None => false,
        }
    }

    /// Whether the tenant is configured.
    pub fn contains<Q>(&self, tenant: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shared.map.pin().contains_key(tenant)
    }

    /// The configured tenants, in no particular order.
    pub fn tenants(&self) -> Vec<K> {
        self.shared.map.pin().keys().cloned().collect()
    }

    /// How many tenants are configured.
    pub fn len(&self) -> usize {
        self.shared.map.len()
    }

    /// Whether no tenant is configured.
    pub fn is_empty(&self) -> bool {
        self.shared.map.is_empty()
    }

    /// The tenant's token cache, or [`Error::UnknownTenant`]: never another tenant's, never a
    /// default. Lock-free for a tenant in the map; counts as a read for idle eviction. With a
    /// [`resolver`](TenantCacheBuilder::resolver), a tenant not configured yet gets the cache
    /// that loads it (shared by every request while it loads), unless the resolver said a
    /// moment ago that it does not know the key.
    ///
    /// ```
    /// use tokenward::{Error, TenantCache};
    ///
    /// let tenants: TenantCache<String> = TenantCache::new();
    /// match tenants.get("acme") {
    ///     Err(Error::UnknownTenant { tenant }) => assert_eq!(tenant, "acme"),
    ///     other => panic!("{other:?}"),
    /// }
    /// ```
    #[inline]
    pub fn get<Q>(&self, tenant: &Q) -> Result<TokenCache, Error>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + fmt::Display + ?Sized,
    {
        let map = self.shared.map.pin();
        match map.get(tenant) {
            Some(entry) => {
                entry.touch(self.shared.generation.load(Ordering::Relaxed));
                Ok(entry.cache.clone())
            }
            None => {
                drop(map);
                self.load(tenant)
            }
        }
    }

    /// The cache that loads `tenant` through the resolver, or why there is none.
    #[cold]
    fn load<Q>(&self, tenant: &Q) -> Result<TokenCache, Error>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + fmt::Display + ?Sized,
    {
        let shared = &self.shared;
        let Some((_, parse)) = &shared.resolver else {
            return Err(unknown(tenant));
        };
        {
            let mut unknown_keys = lock(&shared.unknown);
            if let Some(until) = unknown_keys.get(tenant) {
                if Instant::now() < *until {
                    return Err(unknown(tenant));
                }
                unknown_keys.remove(tenant);
            }
        }
        let mut loading = lock(&shared.loading);
        // Loaded, or inserted, since the lookup.
        if let Some(entry) = shared.map.pin().get(tenant) {
            return Ok(entry.cache.clone());
        }
        if let Some((_, cache)) = loading.get(tenant) {
            return Ok(cache.clone());
        }
        // The key, rebuilt from the one asked for; one that does not come back the same
        // (its `FromStr` and `Display` disagree) is not loaded.
        let Some(key) = parse(&tenant.to_string()).filter(|key| key.borrow() == tenant) else {
            return Err(unknown(tenant));
        };
        let id = shared.loads.fetch_add(1, Ordering::Relaxed);
        let name: Arc<str> = Arc::from(key.to_string());
        let loaded = Arc::new(OnceLock::new());
        let source = Loading {
            key: key.clone(),
            id,
            shared: Arc::downgrade(shared),
            loaded: Arc::clone(&loaded),
            last: Mutex::new(None),
        };
        // One attempt: the resolver is called once per load, and the loaded tenant's own
        // cache retries its token requests.
        let mut config = CacheConfig::clone(&shared.config);
        config.max_attempts = 1;
        let config = Arc::new(config);
        // No `tenant` label: a key nobody configured makes no series. It counts only a
        // load that failed; the loaded tenant's cache counts its own token requests.
        let cache = TokenCache::builder(source)
            .shared_config(config)
            .name(name)
            .labels(Arc::clone(&shared.naming.name), None)
            .serves(loaded)
            .build();
        // Loads nobody fetched through (a `get` whose cache was dropped unused) are
        // forgotten now and then: only the map holds their cache.
        if loading.len() >= 64 && loading.len().is_power_of_two() {
            loading.retain(|_, (_, cache)| cache.handles() > 1);
        }
        loading.insert(key, (id, cache.clone()));
        Ok(cache)
    }

    /// The cache of the tenant that the request's [`Tenant<K>`] extension names:
    /// [`Error::MissingTenant`] without one, [`Error::UnknownTenant`] for a tenant with no
    /// credentials. What the reqwest middleware calls; the tower layer reads the same
    /// extension.
    pub fn for_request(&self, extensions: &http::Extensions) -> Result<TokenCache, Error> {
        match extensions.get::<Tenant<K>>() {
            Some(Tenant(key)) => self.get(key),
            None => Err(Error::MissingTenant),
        }
    }

    /// The `Authorization` header value of a usable token for the tenant: the tenant's
    /// [`TokenCache::header`]. [`Error::UnknownTenant`] for an unknown tenant, with nothing
    /// fetched.
    pub async fn header<Q>(&self, tenant: &Q) -> Result<HeaderValue, Error>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + fmt::Display + Sync + ?Sized,
    {
        let cache = {
            let map = self.shared.map.pin();
            match map.get(tenant) {
                Some(entry) => {
                    entry.touch(self.shared.generation.load(Ordering::Relaxed));
                    // A usable token: no reference count touched.
                    if let Some(header) = entry.cache.try_header() {
                        return Ok(header);
                    }
                    entry.cache.clone()
                }
                None => {
                    drop(map);
                    self.load(tenant)?
                }
            }
        };
        cache.header().await
    }

    /// A usable token for the tenant: the tenant's [`TokenCache::token`].
    pub async fn token<Q>(&self, tenant: &Q) -> Result<Token, Error>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + fmt::Display + Sync + ?Sized,
    {
        self.get(tenant)?.token().await
    }

    /// The tenant's API rejected `rejected` (401 `invalid_token`): drops the tenant's cached
    /// token if it is still that one. See [`TokenCache::invalidate`]. `false` for an
    /// unknown tenant, or when another tenant's header is passed.
    pub fn invalidate<Q>(&self, tenant: &Q, rejected: &HeaderValue) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shared
            .map
            .pin()
            .get(tenant)
            .is_some_and(|entry| entry.cache.invalidate(rejected))
    }

    /// One tenant's [`TokenCache::status`], `None` if there is no such tenant. Not a read:
    /// it does not keep the tenant from being evicted for being idle.
    pub fn status_of<Q>(&self, tenant: &Q) -> Option<CacheStatus>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shared
            .map
            .pin()
            .get(tenant)
            .map(|entry| entry.cache.status())
    }

    /// A snapshot of every tenant's cache ([`TokenCache::status`]), for health checks.
    /// Like [`status_of`](Self::status_of), it does not count as a read: a health check does
    /// not keep idle tenants from being evicted.
    ///
    /// ```
    /// use tokenward::{TenantCache, Token, grant::from_fn};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let tenants = TenantCache::new();
    /// tenants.insert("acme", from_fn(|| async { Token::builder("t").build() }));
    /// tenants.header("acme").await.unwrap();
    /// let status = tenants.status();
    /// assert!(status.is_usable());
    /// assert_eq!(status.tenants.len(), 1);
    /// # }
    /// ```
    pub fn status(&self) -> TenantsStatus<K> {
        let map = self.shared.map.pin();
        TenantsStatus {
            tenants: map
                .iter()
                .map(|(key, entry)| (key.clone(), entry.cache.status()))
                .collect(),
        }
    }

    /// Drops the cached token of every tenant not read for the
    /// [idle period](TenantCacheBuilder::idle_eviction), keeping its credentials (with
    /// [`drop_idle_tenants`](TenantCacheBuilder::drop_idle_tenants), a tenant the resolver
    /// loaded is dropped whole, unless a request is using it), and returns how many were
    /// dropped. Does nothing without an idle period.
    ///
    /// Reads do not look at the clock: each sweep starts a new *generation* and a read
    /// stamps the current one on its tenant. A tenant is evicted once the sweep that ended
    /// the generation of its last read is at least the idle period in the past, so the
    /// precision is the interval between sweeps, and a tenant read within the period is
    /// never evicted. A background sweeper calls this for you (see
    /// [`idle_eviction`](TenantCacheBuilder::idle_eviction)).
    pub fn evict_idle(&self) -> usize {
        self.shared.evict_idle()
    }
}

impl<K> Shared<K>
where
    K: Eq + Hash + Clone + fmt::Debug + fmt::Display + Send + Sync + 'static,
{
    /// The load `id` of `key` ended: later requests look the tenant up (or load it again).
    fn loaded(&self, key: &K, id: u64) {
        let mut loading = lock(&self.loading);
        if loading.get(key).is_some_and(|(current, _)| *current == id) {
            loading.remove(key);
        }
    }

    /// Past [`max_tenants`](TenantCacheBuilder::max_tenants): drops loaded tenants, least
    /// recently read first, that no request is using, down to nine tenths of the limit.
    fn shrink(&self) {
        let Some(max) = self.max_tenants else {
            return;
        };
        let len = self.map.len();
        if len <= max || len < self.next_shrink.load(Ordering::Relaxed) {
            return;
        }
        let Ok(_one) = self.shrinking.try_lock() else {
            return; // another call is shrinking
        };
        let target = max - max / 10;
        let map = self.map.pin();
        let mut loaded: Vec<(u64, &K, &Entry)> = map
            .iter()
            .filter(|(_, entry)| entry.loaded)
            .map(|(key, entry)| (entry.last_seen.load(Ordering::Relaxed), key, entry))
            .collect();
        loaded.sort_unstable_by_key(|(seen, _, _)| *seen);
        let mut excess = map.len().saturating_sub(target);
        let mut dropped = 0;
        for (_, key, entry) in loaded {
            if excess == 0 {
                break;
            }
            if self.drop_unused(&map, key, entry) {
                excess -= 1;
                dropped += 1;
            }
        }
        // Reads from now on are newer than every read before: the next shrink drops
        // tenants not read since this one first.
        self.generation.fetch_add(1, Ordering::Relaxed);
        // Tenants that could not go (in use, inserted by hand) are not scanned again on
        // every load: the next shrink waits for a tenth of `max` more.
        self.next_shrink
            .store(self.map.len() + max.div_ceil(10), Ordering::Relaxed);
        tracing::debug!(dropped, max, "dropped loaded tenants past max_tenants");
    }

    /// Drops `entry` if it is still `key`'s (the very entry, read under the same guard, so
    /// not one inserted since) and no request is using its cache (the map holds the only
    /// handle). Not retired: a request that picked it up meanwhile is served.
    fn drop_unused<G: papaya::Guard>(
        &self,
        map: &papaya::HashMapRef<'_, K, Entry, std::hash::RandomState, G>,
        key: &K,
        entry: &Entry,
    ) -> bool {
        if entry.cache.handles() > 1 {
            return false;
        }
        matches!(
            map.remove_if(key, |_, current| std::ptr::eq(current, entry)),
            Ok(Some(_))
        )
    }

    /// The resolver does not know `key`: remembered for `unknown_for`, within
    /// [`MAX_UNKNOWN`] keys.
    fn remember_unknown(&self, key: K) {
        let now = Instant::now();
        let mut unknown = lock(&self.unknown);
        if unknown.len() >= MAX_UNKNOWN {
            unknown.retain(|_, until| *until > now);
            // Still full: forgotten all at once, so the scan is made once per
            // `MAX_UNKNOWN` keys, never on each one.
            if unknown.len() >= MAX_UNKNOWN / 2 {
                unknown.clear();
            }
        }
        if let Some(until) = now.checked_add(self.unknown_for) {
            unknown.insert(key, until);
        }
    }

    fn evict_idle(&self) -> usize {
        let Some(period) = self.idle else {
            return 0;
        };
        let now = Instant::now();
        let threshold = {
            let mut sweeps = lock(&self.sweeps);
            let ended = self.generation.fetch_add(1, Ordering::Relaxed);
            sweeps.push_back((ended, now));
            let Some(cutoff) = now.checked_sub(period) else {
                return 0;
            };
            // The newest generation that ended at least `period` ago: tenants last read in
            // it (or before) have not been read since `cutoff`.
            let mut threshold = None;
            while let Some(&(generation, ended_at)) = sweeps.front() {
                if ended_at > cutoff {
                    break;
                }
                threshold = Some(generation);
                sweeps.pop_front();
            }
            match threshold {
                Some(generation) => {
                    // Later sweeps' cutoffs only move forward: this one still counts.
                    sweeps.push_front((generation, cutoff));
                    generation
                }
                None => return 0,
            }
        };
        let map = self.map.pin();
        let mut evicted = 0;
        for (key, tenant) in map.iter() {
            if tenant.last_seen.load(Ordering::Relaxed) > threshold {
                continue;
            }
            if self.drop_idle && tenant.loaded {
                // In use: kept whole, token too.
                if self.drop_unused(&map, key, tenant) {
                    tracing::debug!(tenant = %key, "idle loaded tenant dropped");
                    evicted += 1;
                }
            } else if tenant.cache.clear() {
                tracing::debug!(tenant = %key, "idle tenant's cached token dropped");
                evicted += 1;
            }
        }
        if evicted > 0 {
            tracing::info!(
                evicted,
                idle_secs = period.as_secs(),
                "dropped the cached tokens of idle tenants"
            );
        }
        evicted
    }
}

/// The source of a tenant being loaded: calls the resolver once, puts the tenant it gives
/// in the map, and hands out that tenant's tokens (to the requests that asked while it
/// loaded; later ones find the tenant itself).
struct Loading<K> {
    key: K,
    id: u64,
    shared: Weak<Shared<K>>,
    /// The loaded tenant's cache (shared with the loading cache, which forwards rejections).
    loaded: Arc<OnceLock<TokenCache>>,
    /// The header last handed out: a fetch after it (it was rejected, or went stale) drops
    /// it from the loaded tenant's cache too, if it is still there.
    last: Mutex<Option<HeaderValue>>,
}

impl<K: fmt::Debug> fmt::Debug for Loading<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Loading")
            .field("tenant", &self.key)
            .field("loaded", &self.loaded.get().is_some())
            .finish_non_exhaustive()
    }
}

impl<K> Loading<K>
where
    K: Eq + Hash + Clone + fmt::Debug + fmt::Display + Send + Sync + 'static,
{
    /// The loaded tenant's cache: found, or asked of the resolver.
    async fn tenant(&self) -> Result<TokenCache, Error> {
        if let Some(cache) = self.loaded.get() {
            return Ok(cache.clone());
        }
        let Some(shared) = self.shared.upgrade() else {
            return Err(unknown(&self.key));
        };
        let Some((resolve, _)) = &shared.resolver else {
            return Err(unknown(&self.key));
        };
        // However the call ends (an answer, the refresh deadline, a panic), the load ends:
        // the next request asks again.
        let _done = LoadDone {
            shared: &shared,
            key: &self.key,
            id: self.id,
        };
        let outcome = resolve(self.key.clone()).await;
        match outcome {
            Ok(Some(source)) => {
                let name = Arc::from(self.key.to_string());
                let cache = tenant_cache(source, &shared.config, &shared.naming, name);
                let generation = shared.generation.load(Ordering::Relaxed);
                let loading = lock(&shared.loading);
                // Removed or inserted since the load began: that stands.
                if loading.get(&self.key).is_none_or(|(id, _)| *id != self.id) {
                    return Err(Error::TenantRemoved {
                        tenant: self.key.to_string(),
                    });
                }
                let map = shared.map.pin();
                let cache = map
                    .get_or_insert(self.key.clone(), loaded_tenant(cache, generation))
                    .cache
                    .clone();
                drop(map);
                drop(loading);
                shared.shrink();
                let _ = self.loaded.set(cache.clone());
                tracing::debug!(tenant = %self.key, "tenant loaded by the resolver");
                Ok(cache)
            }
            Ok(None) => {
                shared.remember_unknown(self.key.clone());
                Err(unknown(&self.key))
            }
            Err(error) => {
                tracing::warn!(tenant = %self.key, error = %crate::error::chain(&*error), "the tenant resolver failed");
                Err(Error::TenantResolver {
                    tenant: self.key.to_string(),
                    source: Arc::from(error),
                })
            }
        }
    }
}

/// Ends a load when dropped.
struct LoadDone<'a, K>
where
    K: Eq + Hash + Clone + fmt::Debug + fmt::Display + Send + Sync + 'static,
{
    shared: &'a Shared<K>,
    key: &'a K,
    id: u64,
}

impl<K> Drop for LoadDone<'_, K>
where
    K: Eq + Hash + Clone + fmt::Debug + fmt::Display + Send + Sync + 'static,
{
    fn drop(&mut self) {
        self.shared.loaded(self.key, self.id);
    }
}

impl<K> TokenSource for Loading<K>
where
    K: Eq + Hash + Clone + fmt::Debug + fmt::Display + Send + Sync + 'static,
{
    fn fetch(&self) -> crate::grant::FetchFuture<'_> {
        Box::pin(async move {
            let tenant = self.tenant().await?;
            let last = lock(&self.last).take();
            if let Some(last) = last {
                tenant.invalidate(&last);
            }
            let token = tenant.token().await?;
            *lock(&self.last) = Some(token.header_value().clone());
            Ok(token)
        })
    }

    fn may_repeat(&self, _error: &Error) -> bool {
        // The loaded tenant's cache made its own attempts; a resolver call is made once.
        false
    }
}

#[cold]
fn unknown<Q: fmt::Display + ?Sized>(tenant: &Q) -> Error {
    Error::UnknownTenant {
        tenant: tenant.to_string(),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<K: fmt::Debug + Hash + Eq> fmt::Debug for TenantCache<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Phases<'a, K>(&'a papaya::HashMap<K, Entry>);
        impl<K: fmt::Debug + Hash + Eq> fmt::Debug for Phases<'_, K> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let map = self.0.pin();
                f.debug_map()
                    .entries(map.iter().map(|(k, t)| (k, t.cache.status().phase)))
                    .finish()
            }
        }
        f.debug_struct("TenantCache")
            .field("tenants", &Phases(&self.shared.map))
            .field("resolver", &self.shared.resolver.is_some())
            .field("idle_eviction", &self.shared.idle)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grant::from_fn;

    fn issuing(name: &'static str) -> impl TokenSource {
        from_fn(move || async move { Token::builder(name).build() })
    }

    #[tokio::test(start_paused = true)]
    async fn debug_shows_keys_and_phases_only() {
        let tenants = TenantCache::new();
        tenants.insert("acme", issuing("sekrit-acme"));
        tenants.insert("globex", issuing("sekrit-globex"));
        tenants.header("acme").await.unwrap();
        let dbg = format!("{tenants:?}");
        assert!(dbg.contains("\"acme\": Fresh"), "{dbg}");
        assert!(dbg.contains("\"globex\": Empty"), "{dbg}");
        assert!(!dbg.contains("sekrit"), "{dbg}");
    }

    #[tokio::test(start_paused = true)]
    async fn replacing_retires_the_old_cache_but_not_the_same_one() {
        let tenants = TenantCache::new();
        let cache = TokenCache::new(issuing("a"));
        tenants.insert_cache("acme", cache.clone());
        assert!(tenants.insert_cache("acme", cache.clone()).is_some());
        assert_eq!(
            tenants.header("acme").await.unwrap(),
            "Bearer a",
            "same cache: kept"
        );
        let old = tenants.insert("acme", issuing("b")).unwrap();
        assert_eq!(tenants.header("acme").await.unwrap(), "Bearer b");
        assert!(matches!(
            old.header().await,
            Err(Error::TenantRemoved { tenant }) if tenant == "acme"
        ));
    }

    #[test]
    fn sweeps_evict_only_after_the_period() {
        // Built outside a runtime: no background sweeper, only the sweeps made here.
        let tenants = TenantCache::builder()
            .idle_eviction(Duration::from_secs(100))
            .tenant("acme", issuing("a"))
            .tenant("globex", issuing("g"))
            .build();
        assert!(tenants.shared.sweeper.get().is_none());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async {
            tenants.header("acme").await.unwrap();
            tenants.header("globex").await.unwrap();
            // Generation 0 ends now: nothing is old enough yet.
            assert_eq!(tenants.evict_idle(), 0);
            tokio::time::advance(Duration::from_secs(60)).await;
            tenants.header("globex").await.unwrap(); // read in generation 1
            tokio::time::advance(Duration::from_secs(39)).await;
            assert_eq!(tenants.evict_idle(), 0, "99 s idle is not 100 s");
            tokio::time::advance(Duration::from_secs(2)).await;
            assert_eq!(tenants.evict_idle(), 1, "acme: idle since generation 0");
            assert!(tenants.get("acme").unwrap().cached().is_none());
            assert!(tenants.get("globex").unwrap().cached().is_some());
            // globex was last read (by `get` above) at 101 s.
            for _ in 0..110 {
                tokio::time::advance(Duration::from_secs(1)).await;
                tenants.evict_idle();
            }
            assert!(
                lock(&tenants.shared.sweeps).len() <= 102,
                "history stays bounded"
            );
            assert!(tenants.get("globex").unwrap().cached().is_none());
            // Credentials stay: the next read fetches again.
            assert_eq!(tenants.header("globex").await.unwrap(), "Bearer g");
        });
    }
}
