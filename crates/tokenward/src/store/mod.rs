//! Persisting the grant — the refresh token, when it was last used, its scope — so that a
//! rotated refresh token survives a crash and a restart.
//!
//! A [`TokenStore`] loads the stored grant and replaces it with a compare-and-swap on the
//! refresh token: a process only overwrites the refresh token it last read. When another
//! process rotated first, the swap reports a conflict and the newer stored grant is adopted,
//! never overwritten. [`RefreshTokenGrant`](crate::RefreshTokenGrant) persists each rotated
//! refresh token *before* the access token that came with it is handed to anyone.
//!
//! Stores: [`MemoryStore`] (tests, single process), [`FileStore`] (atomic JSON file, mode
//! 0600).
//!
//! # Example
//!
//! ```
//! use secrecy::{ExposeSecret, SecretString};
//! use tokenward::store::{CasOutcome, MemoryStore, StoredGrant, TokenStore};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tokenward::store::StoreError> {
//! let store = MemoryStore::with_refresh_token("rt-1");
//! let old = store.load().await?.unwrap().refresh_token;
//! // Only the holder of the current refresh token may replace it.
//! let outcome = store.compare_and_swap(Some(&old), StoredGrant::new("rt-2")).await?;
//! assert!(matches!(outcome, CasOutcome::Swapped));
//! let stale = store.compare_and_swap(Some(&old), StoredGrant::new("rt-3")).await?;
//! let CasOutcome::Conflict { current } = stale else { panic!() };
//! assert_eq!(current.unwrap().refresh_token.expose_secret(), "rt-2");
//! # Ok(()) }
//! ```

mod file;

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use secrecy::{ExposeSecret, SecretString};

pub use self::file::{FileStore, parse_grant_file};

/// The future a [`TokenStore`] returns.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// What is persisted for one grant.
#[derive(Clone)]
#[non_exhaustive]
pub struct StoredGrant {
    /// The refresh token to use next.
    pub refresh_token: SecretString,
    /// The scope granted with it, space-separated.
    pub scope: Option<String>,
    /// When the refresh token was last used successfully (for decay monitoring); `None`
    /// when never used since it was stored.
    pub last_used: Option<SystemTime>,
    /// When this refresh token was first stored.
    pub stored_at: Option<SystemTime>,
    /// How many times the grant has been replaced: every write by
    /// [`RefreshTokenGrant`](crate::RefreshTokenGrant) or
    /// [`store_refresh_token`](crate::store_refresh_token) stores one more than the grant
    /// it replaces. A store that hands back a lower generation than a process last saw,
    /// stored no later than its own, lost writes (a Redis restarted from an old snapshot, a
    /// file restored from a backup): the process writes its newer grant back instead of
    /// adopting the older one. `0` when unknown: never taken for older. Stores keep it as
    /// given.
    pub generation: u64,
}

impl StoredGrant {
    /// A grant holding `refresh_token` and nothing else.
    pub fn new(refresh_token: impl Into<String>) -> Self {
        StoredGrant {
            refresh_token: SecretString::from(refresh_token.into()),
            scope: None,
            last_used: None,
            stored_at: None,
            generation: 0,
        }
    }

    /// With the granted scope.
    pub fn with_scope(mut self, scope: Option<String>) -> Self {
        self.scope = scope;
        self
    }

    /// With the time of the last successful use.
    pub fn with_last_used(mut self, at: Option<SystemTime>) -> Self {
        self.last_used = at;
        self
    }

    /// With the time the refresh token was first stored.
    pub fn with_stored_at(mut self, at: Option<SystemTime>) -> Self {
        self.stored_at = at;
        self
    }

    /// With the generation (see [`generation`](StoredGrant::generation)).
    pub fn with_generation(mut self, generation: u64) -> Self {
        self.generation = generation;
        self
    }

    /// Whether this grant holds `refresh_token`.
    pub fn holds(&self, refresh_token: &SecretString) -> bool {
        self.refresh_token.expose_secret() == refresh_token.expose_secret()
    }
}

impl fmt::Debug for StoredGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredGrant")
            .field("refresh_token", &"[REDACTED]")
            .field("scope", &self.scope)
            .field("last_used", &self.last_used)
            .field("stored_at", &self.stored_at)
            .field("generation", &self.generation)
            .finish()
    }
}

/// The result of [`TokenStore::compare_and_swap`].
#[derive(Debug)]
#[non_exhaustive]
pub enum CasOutcome {
    /// The new grant is stored.
    Swapped,
    /// The stored refresh token was not the expected one (another process rotated it):
    /// nothing was written. Here is what is stored.
    Conflict {
        /// The grant currently stored.
        current: Option<StoredGrant>,
    },
}

/// Persists one grant.
///
/// Implementations must make `compare_and_swap` atomic with respect to every other process
/// sharing the store, and durable before it returns `Swapped`, and give back every field of
/// [`StoredGrant`] as written ([`generation`](StoredGrant::generation) included; a store
/// that cannot keep it returns `0`).
pub trait TokenStore: fmt::Debug + Send + Sync + 'static {
    /// The stored grant, or `None` when nothing is stored.
    fn load(&self) -> StoreFuture<'_, Option<StoredGrant>>;

    /// Stores `new` if the stored refresh token is `expected` (`None`: if nothing is stored).
    fn compare_and_swap<'a>(
        &'a self,
        expected: Option<&'a SecretString>,
        new: StoredGrant,
    ) -> StoreFuture<'a, CasOutcome>;

    /// A number that changes whenever the stored grant may have changed (a new refresh
    /// token stored by this process or another), read without waiting. A
    /// [`TokenCache`](crate::TokenCache) holding an `invalid_grant` failure compares it to
    /// retry at once when a new grant is stored. The default, `0`, never changes: the hold
    /// then ends with its cap (or a forced refresh).
    fn revision(&self) -> u64 {
        0
    }

    /// Takes the grant's exchange lock: while it is held, no other process sharing the
    /// store exchanges the grant's refresh token. A
    /// [`RefreshTokenGrant`](crate::RefreshTokenGrant) holds it across load → exchange →
    /// persist, so processes sharing a rotating grant never send the same refresh token
    /// twice. Waits until the lock is free (the caller bounds the wait); a holder that dies
    /// must release it (an OS file lock; a TTL for a networked store). The default, for a
    /// store only one process uses, returns `None` at once.
    fn lock_exchange(&self) -> StoreFuture<'_, Option<ExchangeLock>> {
        Box::pin(async { Ok(None) })
    }

    /// Whether the store shares access tokens between processes (see
    /// [`FileStore::share_access_token`]). The default: no.
    fn shares_access_token(&self) -> bool {
        false
    }

    /// The access token the processes sharing this store last obtained, if the store shares
    /// one (see [`FileStore::share_access_token`]). The default shares none.
    fn load_shared_token(&self) -> StoreFuture<'_, Option<SharedToken>> {
        Box::pin(async { Ok(None) })
    }

    /// Shares `token` with the other processes using this store. The default does nothing.
    fn store_shared_token(&self, token: SharedToken) -> StoreFuture<'_, ()> {
        let _ = token;
        Box::pin(async { Ok(()) })
    }
}

/// A store's exchange lock (see [`TokenStore::lock_exchange`]): released when dropped.
#[must_use = "the lock is released when dropped"]
pub struct ExchangeLock {
    _held: Box<dyn Send + Sync>,
    expires: Option<tokio::time::Instant>,
}

impl ExchangeLock {
    /// A lock that `held` keeps until dropped (an open locked file): dropping it releases
    /// the lock.
    pub fn new(held: impl Send + Sync + 'static) -> Self {
        ExchangeLock {
            _held: Box::new(held),
            expires: None,
        }
    }

    /// A lock that lapses by itself (a networked lock with a TTL), kept by `held` (a guard
    /// that deletes the lock key when dropped). `valid_for` is how long a request to the
    /// token endpoint may run under it: the TTL less a margin for persisting what the
    /// request brings back. A refresh sends no request once it has passed and gives up a
    /// request still running then, leaving the lock to lapse
    /// ([`abandon`](Self::abandon)).
    pub fn expiring(held: impl Send + Sync + 'static, valid_for: std::time::Duration) -> Self {
        ExchangeLock {
            _held: Box::new(held),
            expires: Some(crate::token::checked_add(
                tokio::time::Instant::now(),
                valid_for,
            )),
        }
    }

    /// When the lock lapses by itself (`None`: it is held until dropped).
    pub fn expires(&self) -> Option<tokio::time::Instant> {
        self.expires
    }

    /// Gives the lock up without releasing it, when the exchange under it may still be
    /// running at the server: a lock that lapses by itself is left to lapse (its guard is
    /// never dropped), so no other process sends the same refresh token meanwhile. A lock
    /// without a TTL is released.
    pub fn abandon(self) {
        if self.expires.is_some() {
            std::mem::forget(self._held);
        }
    }
}

impl fmt::Debug for ExchangeLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExchangeLock")
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

/// An access token shared by the processes using one store, so that together they make one
/// token call per refresh period. Its `Debug` never shows the token.
#[derive(Clone)]
#[non_exhaustive]
pub struct SharedToken {
    /// The access token.
    pub access_token: SecretString,
    /// When it was obtained (wall clock).
    pub issued_at: SystemTime,
    /// When it expires (wall clock).
    pub expires_at: SystemTime,
    /// The scope granted with it.
    pub scope: Option<String>,
}

impl SharedToken {
    /// A shared token.
    pub fn new(
        access_token: impl Into<String>,
        issued_at: SystemTime,
        expires_at: SystemTime,
        scope: Option<String>,
    ) -> Self {
        SharedToken {
            access_token: SecretString::from(access_token.into()),
            issued_at,
            expires_at,
            scope,
        }
    }
}

impl fmt::Debug for SharedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedToken")
            .field("access_token", &"[REDACTED]")
            .field("issued_at", &self.issued_at)
            .field("expires_at", &self.expires_at)
            .field("scope", &self.scope)
            .finish()
    }
}

impl<T: TokenStore + ?Sized> TokenStore for Arc<T> {
    fn load(&self) -> StoreFuture<'_, Option<StoredGrant>> {
        (**self).load()
    }

    fn compare_and_swap<'a>(
        &'a self,
        expected: Option<&'a SecretString>,
        new: StoredGrant,
    ) -> StoreFuture<'a, CasOutcome> {
        (**self).compare_and_swap(expected, new)
    }

    fn revision(&self) -> u64 {
        (**self).revision()
    }

    fn lock_exchange(&self) -> StoreFuture<'_, Option<ExchangeLock>> {
        (**self).lock_exchange()
    }

    fn shares_access_token(&self) -> bool {
        (**self).shares_access_token()
    }

    fn load_shared_token(&self) -> StoreFuture<'_, Option<SharedToken>> {
        (**self).load_shared_token()
    }

    fn store_shared_token(&self, token: SharedToken) -> StoreFuture<'_, ()> {
        (**self).store_shared_token(token)
    }
}

/// A failure of a [`TokenStore`]. Messages name the file or backend, never a secret.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store could not be read.
    #[error("could not read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: Arc<std::io::Error>,
    },
    /// The store could not be written; the previous contents are intact.
    #[error("could not write {} (the previous contents are intact)", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: Arc<std::io::Error>,
    },
    /// The stored data is not a valid grant. It is left untouched: nothing is silently
    /// treated as empty.
    #[error(
        "{} is corrupt ({reason}); it was left untouched: restore it from a backup or remove it and re-authorize",
        path.display()
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong (never the file's contents).
        reason: String,
    },
    /// A store backend (e.g. Redis) failed.
    #[error("the store backend failed")]
    Backend(#[source] Arc<dyn std::error::Error + Send + Sync>),
    /// A deliberate failure, for tests of the failure policy.
    #[error("injected store failure: {0}")]
    Injected(String),
}

impl StoreError {
    /// Whether trying again may succeed (I/O and backend failures; not corruption).
    pub fn is_retryable(&self) -> bool {
        !matches!(self, StoreError::Corrupt { .. })
    }
}

/// An in-memory [`TokenStore`]: for tests and for a single process that re-authorizes on
/// restart. Clones share the same grant.
#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<MemoryInner>>,
}

#[derive(Default)]
struct MemoryInner {
    grant: Option<StoredGrant>,
    fail_writes: Option<String>,
    writes: u64,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }

    /// A store holding `refresh_token`.
    pub fn with_refresh_token(refresh_token: impl Into<String>) -> Self {
        let store = MemoryStore::default();
        store.lock().grant = Some(StoredGrant::new(refresh_token));
        store
    }

    /// What is stored now.
    pub fn snapshot(&self) -> Option<StoredGrant> {
        self.lock().grant.clone()
    }

    /// Makes every write fail with [`StoreError::Injected`] (`None` to stop), for testing
    /// what happens when persisting fails.
    pub fn fail_writes(&self, reason: Option<&str>) {
        self.lock().fail_writes = reason.map(str::to_owned);
    }

    /// How many writes succeeded.
    pub fn writes(&self) -> u64 {
        self.lock().writes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("grant", &self.lock().grant)
            .finish_non_exhaustive()
    }
}

impl TokenStore for MemoryStore {
    fn load(&self) -> StoreFuture<'_, Option<StoredGrant>> {
        let grant = self.snapshot();
        Box::pin(async move { Ok(grant) })
    }

    fn compare_and_swap<'a>(
        &'a self,
        expected: Option<&'a SecretString>,
        new: StoredGrant,
    ) -> StoreFuture<'a, CasOutcome> {
        let outcome = {
            let mut inner = self.lock();
            if let Some(reason) = &inner.fail_writes {
                Err(StoreError::Injected(reason.clone()))
            } else if matches_expected(inner.grant.as_ref(), expected) {
                inner.grant = Some(new);
                inner.writes += 1;
                Ok(CasOutcome::Swapped)
            } else {
                Ok(CasOutcome::Conflict {
                    current: inner.grant.clone(),
                })
            }
        };
        Box::pin(async move { outcome })
    }

    fn revision(&self) -> u64 {
        self.lock().writes
    }
}

/// Whether the stored grant holds the expected refresh token (or both are absent).
pub(crate) fn matches_expected(
    stored: Option<&StoredGrant>,
    expected: Option<&SecretString>,
) -> bool {
    match (stored, expected) {
        (None, None) => true,
        (Some(s), Some(e)) => s.holds(e),
        _ => false,
    }
}
