//! Tenants: one token cache per organisation, behind one key.
//!
//! A [`TenantCache`] maps a tenant key (an organisation id, a customer name) to that
//! tenant's own [`TokenCache`]: its own credentials, cached token, single-flight refresh,
//! backoff and 429 window. One tenant's slow, hanging or failing token endpoint therefore
//! never delays another tenant's reads or refreshes.
//!
//! * **No fallback.** A key with no credentials is [`Error::UnknownTenant`], never another
//!   tenant's (or a default) token.
//! * **Lock-free reads.** The tenant map is an `ArcSwap`'d `HashMap`, replaced
//!   copy-on-write by [`insert`](TenantCache::insert) and [`remove`](TenantCache::remove);
//!   a read is an atomic load, a hash lookup and a reference-count increment, then the
//!   tenant's own lock-free [`TokenCache`] read.
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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::HeaderValue;
use tokio::task::AbortHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::cache::{CacheConfig, CacheStatus, RefreshAhead, TokenCache};
use crate::decay::DecayState;
use crate::endpoint::default_http_client;
use crate::error::Error;
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
    /// The tenants. Replaced whole (copy-on-write) under `write`; read without a lock.
    map: ArcSwap<HashMap<K, Arc<Entry>>>,
    /// Serialises writers, so no insert or removal is lost to a concurrent one.
    write: Mutex<()>,
    config: CacheConfig,
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
}

struct Entry {
    cache: TokenCache,
    /// The eviction generation in which the tenant was last read (or inserted).
    last_seen: AtomicU64,
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
}

/// Builds a tenant's cache from its source, once the configuration is known.
type MakeCache = Box<dyn FnOnce(&CacheConfig, &Naming, Arc<str>) -> TokenCache + Send>;

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
    config: &CacheConfig,
    naming: &Naming,
    tenant: Arc<str>,
) -> TokenCache {
    let label = naming.tenant_label.then(|| Arc::clone(&tenant));
    TokenCache::builder(source)
        .config(config.clone())
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
        let make = move |config: &CacheConfig, naming: &Naming, name: Arc<str>| {
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
        let make = move |config: &CacheConfig, naming: &Naming, name: Arc<str>| {
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
        let make = move |_: &CacheConfig, naming: &Naming, name: Arc<str>| {
            tenant_cache(source, &own, naming, name)
        };
        self.tenants.push((tenant, Pending::Source(Box::new(make))));
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
        let mut map = HashMap::with_capacity(self.tenants.len());
        for (key, tenant) in self.tenants {
            let cache = match tenant {
                Pending::Source(make) => {
                    make(&self.config, &self.naming, Arc::from(key.to_string()))
                }
                Pending::Cache(cache) => cache,
            };
            map.insert(key, new_tenant(cache, 0));
        }
        let shared = Arc::new(Shared {
            map: ArcSwap::from_pointee(map),
            write: Mutex::new(()),
            config: self.config,
            naming: self.naming,
            idle: self.idle,
            generation: AtomicU64::new(0),
            sweeps: Mutex::new(VecDeque::new()),
            sweeper: OnceLock::new(),
            http: Mutex::new(self.http),
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

fn new_tenant(cache: TokenCache, generation: u64) -> Arc<Entry> {
    Arc::new(Entry {
        cache,
        last_seen: AtomicU64::new(generation),
    })
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
        let old = self
            .shared
            .update(|map| map.insert(tenant, new_tenant(cache, generation)));
        old.map(|old| {
            // Inserting the cache the tenant already has changes nothing.
            if !old.cache.same(&new) {
                old.cache.retire(name);
            }
            old.cache.clone()
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
        if !self.contains(tenant) {
            return false;
        }
        match self.shared.update(|map| map.remove(tenant)) {
            Some(old) => {
                old.cache.retire(tenant.to_string());
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
        self.shared.map.load().contains_key(tenant)
    }

    /// The configured tenants, in no particular order.
    pub fn tenants(&self) -> Vec<K> {
        self.shared.map.load().keys().cloned().collect()
    }

    /// How many tenants are configured.
    pub fn len(&self) -> usize {
        self.shared.map.load().len()
    }

    /// Whether no tenant is configured.
    pub fn is_empty(&self) -> bool {
        self.shared.map.load().is_empty()
    }

    /// The tenant's token cache, or [`Error::UnknownTenant`]: never another tenant's, never a
    /// default. Lock-free; counts as a read for idle eviction.
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
        let map = self.shared.map.load();
        match map.get(tenant) {
            Some(entry) => {
                entry.touch(self.shared.generation.load(Ordering::Relaxed));
                Ok(entry.cache.clone())
            }
            None => Err(unknown(tenant)),
        }
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
        self.get(tenant)?.header().await
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
            .load()
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
        let map = self.shared.map.load();
        map.get(tenant).map(|entry| entry.cache.status())
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
        let map = self.shared.map.load();
        TenantsStatus {
            tenants: map
                .iter()
                .map(|(key, entry)| (key.clone(), entry.cache.status()))
                .collect(),
        }
    }

    /// Drops the cached token of every tenant not read for the
    /// [idle period](TenantCacheBuilder::idle_eviction), keeping its credentials, and
    /// returns how many tokens were dropped. Does nothing without an idle period.
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
    /// Copy-on-write update of the tenant map, one writer at a time.
    fn update<R>(&self, change: impl FnOnce(&mut HashMap<K, Arc<Entry>>) -> R) -> R {
        let _writer = lock(&self.write);
        let mut map = HashMap::clone(&self.map.load());
        let result = change(&mut map);
        self.map.store(Arc::new(map));
        result
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
        let map = self.map.load();
        let mut evicted = 0;
        for (key, tenant) in map.iter() {
            if tenant.last_seen.load(Ordering::Relaxed) <= threshold && tenant.cache.clear() {
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

impl<K: fmt::Debug> fmt::Debug for TenantCache<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Phases<'a, K>(&'a HashMap<K, Arc<Entry>>);
        impl<K: fmt::Debug> fmt::Debug for Phases<'_, K> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_map()
                    .entries(self.0.iter().map(|(k, t)| (k, t.cache.status().phase)))
                    .finish()
            }
        }
        let map = self.shared.map.load();
        f.debug_struct("TenantCache")
            .field("tenants", &Phases(&map))
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
