//! The refresh token grant, with rotation, persistence and decay monitoring.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use secrecy::{ExposeSecret, SecretString};
use tracing::Instrument as _;

use super::shared::Sharing;
use super::{FetchFuture, GrantBuilder, GrantConfig, TokenSource};
use crate::decay::{DecayPolicy, DecayStatus, SystemClock, WallClock};
use crate::endpoint::Refusal;
use crate::error::Error;
use crate::store::{
    CasOutcome, ExchangeLock, StoreError, StoredGrant, TokenStore, matches_expected,
};
use crate::token::Token;

/// What to do when a rotated refresh token cannot be persisted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PersistFailure {
    /// Hand out nothing: the refresh fails with [`Error::Store`]. The new refresh token is
    /// kept in memory and persisted before the next exchange. (Default.)
    #[default]
    FailClosed,
    /// Hand out the access token anyway and keep the new refresh token in memory only
    /// (logged at ERROR). A crash before the next successful write loses the grant.
    ServeAnyway,
}

/// Marker for a [`GrantBuilder`] that builds a [`RefreshTokenGrant`].
pub struct ForRefreshToken {
    refresh_token: Option<SecretString>,
    exchange_timeout: Duration,
    store: Option<Arc<dyn TokenStore>>,
    persist_failure: PersistFailure,
    decay: DecayPolicy,
    clock: Arc<dyn WallClock>,
    reuse_grace: Option<Duration>,
}

impl fmt::Debug for ForRefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForRefreshToken")
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[REDACTED]"),
            )
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

/// The refresh token grant (RFC 6749 §6), with rotation.
///
/// * **Rotation.** A response carrying a new refresh token replaces the current one; a
///   response without one keeps it.
/// * **Persisted before use.** With a [`TokenStore`], the new refresh token is written
///   (compare-and-swap on the old one) *before* the access token that came with it is
///   returned. If another process rotated first, its newer stored token is adopted, never
///   overwritten. If the write fails, [`PersistFailure`] decides (default: fail closed and
///   keep the new token in memory to persist before the next exchange).
/// * **One exchange at a time, run to completion.** Each exchange runs on its own task: if
///   the refresh that started it is cancelled (its deadline passed while the response was
///   arriving), the exchange still records the rotated token, and the next one waits for it
///   instead of replaying the old token — which would make the server revoke the grant. An
///   exchange is given up after [`exchange_timeout`](GrantBuilder::exchange_timeout).
/// * **A refused answer keeps its refresh token.** A 2xx answer refused for another reason
///   (no `access_token`, an unsupported `token_type`, an access token that cannot be sent)
///   that carries a refresh token is a rotation: the new refresh token is persisted before
///   the error is reported.
/// * **Not repeated after an ambiguous failure.** Within one refresh, the exchange is tried
///   again at once only after failures that provably had no effect at the server: a connect
///   error (nothing was sent) or `temporarily_unavailable`. After a
///   timeout, a broken connection or a gateway's 5xx page the server may have rotated the
///   refresh token, and an immediate replay would make a server with reuse detection revoke
///   the grant; the refresh fails, and the next one (after the cache's cool-down) sends it
///   again. A server with a reuse grace (Okta's grace period, Auth0's reuse interval)
///   accepts that replay: configure it with [`reuse_grace`](GrantBuilder::reuse_grace) and
///   such failures are tried again at once within the grace.
/// * **Decay.** The last successful use is recorded; see [`decay`](crate::decay).
///
/// One grant is refreshed by one cache: the cache's single flight is what keeps a rotated
/// refresh token from being replayed within a process; the store's compare-and-swap does it
/// across processes.
///
/// ```
/// use tokenward::RefreshTokenGrant;
/// use tokenward::store::FileStore;
///
/// let grant = RefreshTokenGrant::from_store(
///     "https://auth.example.com/oauth/token",
///     "my-client",
///     FileStore::new("/var/lib/my-app/grant.json"),
/// )
/// .client_secret("s3cr3t")
/// .build()
/// .unwrap();
/// # let _ = grant;
/// ```
pub struct RefreshTokenGrant {
    inner: Arc<RefreshInner>,
}

struct RefreshInner {
    config: GrantConfig,
    state: Mutex<RefreshState>,
    store: Option<Arc<dyn TokenStore>>,
    persist_failure: PersistFailure,
    decay: DecayPolicy,
    clock: Arc<dyn WallClock>,
    /// Serialises exchanges: one refresh token in flight at a time.
    exchange: Arc<tokio::sync::Mutex<()>>,
    exchange_timeout: Duration,
    reuse_grace: Option<Duration>,
    /// The store's revision after this grant's own last write, and the revision reported
    /// for it: the grant's own writes do not count as a new configuration.
    own_write: Mutex<Option<(u64, u64)>>,
    /// The access token shared with the other processes using the store.
    sharing: Sharing,
}

#[derive(Default)]
struct RefreshState {
    /// The refresh token the next exchange sends.
    current: Option<SecretString>,
    /// What the store holds, as far as this process knows.
    persisted: Option<SecretString>,
    /// `current` came from a rotation whose write failed: it must be persisted first.
    pending: bool,
    last_used: Option<SystemTime>,
    stored_at: Option<SystemTime>,
    scope: Option<String>,
    /// When the current refresh token was first sent (for the reuse grace).
    first_sent: Option<(SecretString, tokio::time::Instant)>,
    /// The generation of the stored grant this process last read or wrote.
    generation: u64,
}

impl RefreshState {
    fn adopt(&mut self, stored: StoredGrant) {
        self.current = Some(stored.refresh_token.clone());
        self.persisted = Some(stored.refresh_token);
        self.pending = false;
        self.last_used = stored.last_used;
        self.stored_at = stored.stored_at;
        self.scope = stored.scope;
        self.generation = stored.generation;
    }

    /// The grant to write in place of the one last read or written: one generation later.
    fn to_stored(&self, refresh_token: SecretString) -> StoredGrant {
        StoredGrant::new(refresh_token.expose_secret().to_owned())
            .with_scope(self.scope.clone())
            .with_last_used(self.last_used)
            .with_stored_at(self.stored_at)
            .with_generation(self.generation.saturating_add(1))
    }

    /// Whether `stored` is older than the grant this process last read or wrote: a store
    /// that went back in time (restored from a snapshot or a backup). Only a known, lower
    /// generation, not stored later than ours, counts: a generation of 0 (a store or a writer
    /// that does not keep one) never does, and a new authorization is stored later.
    fn is_older(&self, stored: &StoredGrant) -> bool {
        stored.generation != 0
            && stored.generation < self.generation
            && match (stored.stored_at, self.stored_at) {
                (Some(theirs), Some(ours)) => theirs <= ours,
                _ => true,
            }
    }

    /// `grant` (made by [`to_stored`](Self::to_stored)) is what the store holds now.
    fn persisted(&mut self, grant: &StoredGrant) {
        self.current = Some(grant.refresh_token.clone());
        self.persisted = Some(grant.refresh_token.clone());
        self.pending = false;
        self.generation = grant.generation;
    }
}

impl fmt::Debug for RefreshTokenGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshTokenGrant")
            .field("config", &self.inner.config)
            .field("refresh_token", &"[REDACTED]")
            .field("store", &self.inner.store)
            .field("persist_failure", &self.inner.persist_failure)
            .finish_non_exhaustive()
    }
}

impl RefreshTokenGrant {
    /// Starts building a refresh token grant from the current refresh token. With a
    /// [`store`](GrantBuilder::store), a refresh token already stored there wins (it is newer).
    pub fn builder(
        token_url: impl Into<String>,
        client_id: impl Into<String>,
        refresh_token: impl Into<String>,
    ) -> GrantBuilder<ForRefreshToken> {
        GrantBuilder::new(
            token_url,
            client_id,
            ForRefreshToken::new(Some(SecretString::from(refresh_token.into()))),
        )
    }

    /// Starts building a refresh token grant whose refresh token lives in `store` (put there
    /// by the authorization code flow). An empty store makes refreshes fail with
    /// [`Error::NoRefreshToken`].
    pub fn from_store(
        token_url: impl Into<String>,
        client_id: impl Into<String>,
        store: impl TokenStore,
    ) -> GrantBuilder<ForRefreshToken> {
        GrantBuilder::new(token_url, client_id, ForRefreshToken::new(None)).store(store)
    }

    /// A builder without a refresh token yet: a store or a later setter gives it.
    pub(crate) fn for_url(
        token_url: impl Into<String>,
        client_id: impl Into<String>,
    ) -> GrantBuilder<ForRefreshToken> {
        GrantBuilder::new(token_url, client_id, ForRefreshToken::new(None))
    }

    /// Starts building a refresh token grant for the token endpoint of a
    /// [discovered](crate::discovery) authorization server, with its HTTP client. Give it
    /// the refresh token with [`refresh_token`](GrantBuilder::refresh_token), a
    /// [`store`](GrantBuilder::store) holding it, or both.
    ///
    /// `build` fails with [`Error::Discovery`] when the metadata has no `token_endpoint`.
    pub fn from_issuer(
        server: &crate::AuthorizationServer,
        client_id: impl Into<String>,
    ) -> GrantBuilder<ForRefreshToken> {
        GrantBuilder::discovered(
            server,
            crate::discovery::EndpointKind::Token,
            client_id,
            ForRefreshToken::new(None),
        )
    }

    /// The refresh token the next refresh will send, if known yet.
    pub fn current_refresh_token(&self) -> Option<SecretString> {
        self.inner.lock().current.clone()
    }

    /// The client secret: a handle to rotate it at run time. See [`secret`](crate::secret).
    pub fn client_secret(&self) -> crate::secret::ClientSecret {
        self.inner.config.endpoint.secret.clone()
    }

    /// The decay policy.
    pub fn decay_policy(&self) -> &DecayPolicy {
        &self.inner.decay
    }

    /// How close the refresh token is to decaying, from the last successful use recorded in
    /// the store (or in memory without one).
    pub async fn decay_status(&self) -> Result<DecayStatus, Error> {
        let last_used = match &self.inner.store {
            Some(store) => store
                .load()
                .await?
                .and_then(|g| g.last_used.or(g.stored_at)),
            None => {
                let st = self.inner.lock();
                st.last_used.or(st.stored_at)
            }
        };
        Ok(self.inner.decay.status(last_used, self.inner.clock.now()))
    }

    async fn refresh(&self) -> Result<Token, Error> {
        // Waiting for the previous exchange is cancellable: nothing has been sent yet.
        let one_at_a_time = Arc::clone(&self.inner.exchange).lock_owned().await;
        let inner = Arc::clone(&self.inner);
        // From here on the exchange finishes even if this future is dropped.
        // In the caller's span (the cache's `tokenward.token_request`).
        let span = tracing::Span::current();
        let exchange = tokio::spawn(
            async move {
                let _one_at_a_time = one_at_a_time;
                match tokio::time::timeout(inner.exchange_timeout, inner.exchange_shared()).await {
                    Ok(result) => result,
                    Err(_) => Err(Error::Timeout(inner.exchange_timeout)),
                }
            }
            .instrument(span),
        );
        exchange.await.unwrap_or(Err(Error::RefreshAborted))
    }
}

impl RefreshInner {
    fn lock(&self) -> MutexGuard<'_, RefreshState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Across the processes sharing the store: under its exchange lock, bring the grant up
    /// to date, then adopt the access token another process obtained meanwhile (making no
    /// call), or exchange and share the new one.
    async fn exchange_shared(&self) -> Result<Token, Error> {
        let Some(store) = self.store.clone() else {
            return self.exchange(false, None).await;
        };
        // Fails closed: without the lock, two processes could send one refresh token.
        let held = Held {
            lock: store.lock_exchange().await?,
            in_flight: AtomicBool::new(false),
        };
        // Always read the grant: a process living on shared access tokens still learns each
        // rotation, and never holds an older refresh token than the newest stored.
        self.sync_with_store(store.as_ref()).await?;
        if let Some(token) = self
            .sharing
            .adopt(store.as_ref(), &self.config, self.clock.as_ref())
            .await
        {
            return Ok(token);
        }
        let token = self.exchange(true, Some(&held)).await?;
        self.sharing
            .share(store.as_ref(), &token, self.clock.as_ref())
            .await;
        drop(held);
        Ok(token)
    }

    /// The store's revision, the grant's own writes left out.
    fn store_revision(&self) -> u64 {
        let Some(store) = &self.store else {
            return 0;
        };
        let now = store.revision();
        let own = self.own_write.lock().unwrap_or_else(|p| p.into_inner());
        match *own {
            Some((after, reported)) if after == now => reported,
            _ => now,
        }
    }

    /// A compare-and-swap whose success does not change the grant's revision.
    async fn swap(
        &self,
        store: &dyn TokenStore,
        expected: Option<&SecretString>,
        grant: StoredGrant,
    ) -> Result<CasOutcome, StoreError> {
        let reported = self.store_revision();
        let outcome = store.compare_and_swap(expected, grant).await;
        if matches!(outcome, Ok(CasOutcome::Swapped)) {
            *self.own_write.lock().unwrap_or_else(|p| p.into_inner()) =
                Some((store.revision(), reported));
        }
        outcome
    }

    /// A write failed: apply the policy. `Ok` means go on.
    fn on_write_failure(&self, error: StoreError) -> Result<(), Error> {
        match self.persist_failure {
            PersistFailure::FailClosed => Err(Error::Store(error)),
            PersistFailure::ServeAnyway => {
                tracing::error!(error = %crate::error::chain(&error), "could not persist the refresh token; serving from memory (PersistFailure::ServeAnyway)");
                Ok(())
            }
        }
    }

    /// Brings the in-memory state in line with the store before an exchange: adopt a newer
    /// stored grant, persist a pending rotation, or seed an empty store.
    async fn sync_with_store(&self, store: &dyn TokenStore) -> Result<(), Error> {
        let stored = store.load().await?;
        let (pending, current, persisted, generation, older) = {
            let st = self.lock();
            (
                st.pending,
                st.current.clone(),
                st.persisted.clone(),
                st.generation,
                stored.as_ref().is_some_and(|s| st.is_older(s)),
            )
        };
        if let (Some(older), Some(ours), true) = (&stored, &current, older)
            && !older.holds(ours)
        {
            // The store lost writes (restored from a snapshot or a backup): what it holds is
            // older than what this process last saw. Adopting it would replay a rotated
            // refresh token; write ours back instead.
            tracing::warn!(
                stored = older.generation,
                known = generation,
                "the store holds an older grant than this process last saw (it lost writes); writing the newer one back"
            );
            let older = older.refresh_token.clone();
            return self.write_back(store, Some(&older), ours.clone()).await;
        }
        if stored.is_none()
            && persisted.is_some()
            && let Some(ours) = &current
        {
            tracing::warn!(
                "the store lost the grant (emptied or restarted without its data); writing back the newest refresh token this process holds"
            );
            return self.write_back(store, None, ours.clone()).await;
        }
        if pending && !matches_expected(stored.as_ref(), persisted.as_ref()) {
            // Another process wrote after our failed write: its grant is newer.
            tracing::warn!(
                "another process replaced the stored grant; adopting it over an unpersisted rotation"
            );
        } else if pending || (stored.is_none() && current.is_some()) {
            // Persist what we hold: a rotation whose write failed, or the seed.
            let Some(current) = current else {
                return Err(Error::NoRefreshToken);
            };
            // A pending rotation replaces what we last persisted; a seed fills an empty store.
            let expected = if pending { persisted.as_ref() } else { None };
            return self.write_back(store, expected, current).await;
        }
        match stored {
            Some(grant) => {
                self.lock().adopt(grant);
                Ok(())
            }
            None => Err(Error::NoRefreshToken),
        }
    }

    /// Writes `ours` in place of `expected` (a pending rotation, a seed, or the newer grant
    /// a store lost). A conflict with a newer grant adopts it; one with an older grant (the
    /// store went back in time again) writes over it, a few times at most.
    async fn write_back(
        &self,
        store: &dyn TokenStore,
        expected: Option<&SecretString>,
        ours: SecretString,
    ) -> Result<(), Error> {
        let mut expected = expected.cloned();
        for _ in 0..3 {
            let grant = self.lock().to_stored(ours.clone());
            match self.swap(store, expected.as_ref(), grant.clone()).await {
                Ok(CasOutcome::Swapped) => {
                    self.lock().persisted(&grant);
                    return Ok(());
                }
                Ok(CasOutcome::Conflict {
                    current: Some(other),
                }) => {
                    let mut st = self.lock();
                    if !st.is_older(&other) {
                        st.adopt(other);
                        return Ok(());
                    }
                    expected = Some(other.refresh_token);
                }
                Ok(CasOutcome::Conflict { current: None }) => expected = None,
                Err(error) => return self.on_write_failure(error),
            }
        }
        Err(Error::Store(StoreError::Backend(Arc::new(
            std::io::Error::other(
                "the stored grant kept changing while this process wrote back its newer one",
            ),
        ))))
    }

    /// One exchange of the refresh token (`synced`: the state was just brought in line with
    /// the store), under the store's lock when it has one (`held`): no request is sent once
    /// a lapsing lock's time for requests has passed, and one still running then is given
    /// up.
    async fn exchange(&self, mut synced: bool, held: Option<&Held>) -> Result<Token, Error> {
        let lapses = held
            .and_then(|h| h.lock.as_ref())
            .and_then(ExchangeLock::expires);
        // Two rounds at most: a second one only after adopting a refresh token that another
        // process rotated between our load and our request.
        let mut adopted_after_rejection = false;
        loop {
            if let Some(store) = &self.store
                && !std::mem::take(&mut synced)
            {
                self.sync_with_store(store.as_ref()).await?;
            }
            let (current, status) = {
                let st = self.lock();
                let status = self
                    .decay
                    .status(st.last_used.or(st.stored_at), self.clock.now());
                (st.current.clone(), status)
            };
            let Some(current) = current else {
                return Err(Error::NoRefreshToken);
            };
            {
                let mut st = self.lock();
                if st
                    .first_sent
                    .as_ref()
                    .is_none_or(|(sent, _)| sent.expose_secret() != current.expose_secret())
                {
                    st.first_sent = Some((current.clone(), tokio::time::Instant::now()));
                }
            }
            status.emit();
            if let Some(error) = status.hard_fail_error() {
                return Err(error);
            }
            let params = [
                ("grant_type", "refresh_token"),
                ("refresh_token", current.expose_secret()),
            ];
            let request = self.config.request_with(&params, true);
            let started = tokio::time::Instant::now();
            if let Some(at) = lapses
                && started >= at
            {
                tracing::warn!(
                    "the exchange lock lapses before a request could be sent; giving the refresh up"
                );
                return Err(Error::Timeout(Duration::ZERO));
            }
            if let Some(held) = held {
                held.in_flight.store(true, Ordering::Relaxed);
            }
            let result = match lapses {
                // Past the lock's TTL another process may take it and send this refresh
                // token too: give the request up first.
                Some(at) => match tokio::time::timeout_at(at, request).await {
                    Ok(result) => result,
                    Err(_) => {
                        tracing::warn!(
                            "the exchange lock lapsed before the token endpoint answered; giving the refresh up"
                        );
                        return Err(Error::Timeout(at.saturating_duration_since(started)));
                    }
                },
                None => request.await,
            };
            // Answered: nothing of this request is left at the server.
            if let Some(held) = held {
                held.in_flight.store(false, Ordering::Relaxed);
            }
            let result = match result {
                Ok(token) => Ok(token),
                Err(Refusal {
                    error,
                    refresh_token: Some(rotated),
                }) => {
                    // The server rotated, then the answer was refused for something else:
                    // the new refresh token is persisted first (replaying the old one
                    // would make a server with reuse detection revoke the grant).
                    tracing::warn!(
                        error = %crate::error::chain(&error),
                        "the token endpoint rotated the refresh token in a response that was refused; keeping the new refresh token"
                    );
                    self.persist_use(current, Some(rotated), None).await?;
                    return Err(error);
                }
                Err(refusal) => Err(refusal.error),
            };
            match result {
                Ok(token) => {
                    // Persist first, check scopes second: a scope error must not cost the
                    // rotated refresh token.
                    let token = self.record_success(current, token).await?;
                    let granted = token
                        .scope()
                        .map(str::to_owned)
                        .or_else(|| self.lock().scope.clone());
                    self.config.check_scopes(granted.as_deref())?;
                    return Ok(token);
                }
                Err(error) if error.is_reauthorization_required() && !adopted_after_rejection => {
                    let Some(store) = &self.store else {
                        return Err(error);
                    };
                    match store.load().await? {
                        Some(stored) if !stored.holds(&current) => {
                            tracing::warn!(
                                "the refresh token was rotated by another process; retrying with the stored one"
                            );
                            adopted_after_rejection = true;
                        }
                        _ => return Err(error),
                    }
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// After a successful exchange with `sent`: record the use, persist a rotation before
    /// returning the token.
    async fn record_success(&self, sent: SecretString, token: Token) -> Result<Token, Error> {
        self.persist_use(sent, token.refresh_token().cloned(), token.scope())
            .await
            .map(|()| token)
    }

    /// The server accepted `sent`: record the use and persist the rotated refresh token
    /// (compare-and-swap on the one last persisted) before anything is handed out.
    async fn persist_use(
        &self,
        sent: SecretString,
        rotated: Option<SecretString>,
        scope: Option<&str>,
    ) -> Result<(), Error> {
        let now = self.clock.now();
        let next = rotated.clone().unwrap_or_else(|| sent.clone());
        let (grant, persisted) = {
            let mut st = self.lock();
            st.last_used = Some(now);
            if rotated.is_some() {
                st.stored_at = Some(now);
            }
            if let Some(scope) = scope {
                st.scope = Some(scope.to_owned());
            }
            if self.store.is_none() {
                st.current = Some(next);
                if rotated.is_some() {
                    tracing::debug!("refresh token rotated");
                }
                return Ok(());
            }
            (st.to_stored(next.clone()), st.persisted.clone())
        };
        let Some(store) = &self.store else {
            return Ok(());
        };
        // A rotation the store could not take is tried again a moment later, twice: the
        // server has already retired the old refresh token, so the next process to read the
        // store would replay it.
        let mut outcome = self
            .swap(store.as_ref(), persisted.as_ref(), grant.clone())
            .await;
        for pause in [Duration::from_millis(50), Duration::from_millis(250)] {
            match &outcome {
                Err(error) if rotated.is_some() && error.is_retryable() => {
                    tracing::warn!(error = %crate::error::chain(&error), "could not persist the rotated refresh token; trying again");
                    tokio::time::sleep(pause).await;
                    outcome = self
                        .swap(store.as_ref(), persisted.as_ref(), grant.clone())
                        .await;
                }
                _ => break,
            }
        }
        match outcome {
            Ok(CasOutcome::Swapped) => {
                self.lock().persisted(&grant);
                if rotated.is_some() {
                    tracing::debug!("rotated refresh token persisted");
                }
                Ok(())
            }
            Ok(CasOutcome::Conflict {
                current: Some(older),
            }) if self.lock().is_older(&older) => {
                // The store lost writes since our last read: ours is the newer grant.
                tracing::warn!(
                    "the store holds an older grant than this process last saw (it lost writes); writing the newer one back"
                );
                let older = older.refresh_token.clone();
                self.lock().current = Some(next.clone());
                self.write_back(store.as_ref(), Some(&older), next).await
            }
            Ok(CasOutcome::Conflict { current }) => {
                tracing::warn!(
                    "another process rotated the refresh token concurrently; adopting the stored one"
                );
                if let Some(newer) = current {
                    self.lock().adopt(newer);
                }
                Ok(())
            }
            Err(error) if rotated.is_some() => {
                {
                    let mut st = self.lock();
                    st.current = Some(next);
                    st.pending = true;
                }
                self.on_write_failure(error)
            }
            Err(error) => {
                // Only the last-used time was not recorded: nothing is lost.
                tracing::warn!(error = %crate::error::chain(&error), "could not record the refresh token's last use");
                Ok(())
            }
        }
    }
}

/// The store's exchange lock, held across one refresh. When the refresh ends or is
/// cancelled while a request that may have reached the server is unanswered, a lock that
/// lapses by itself is left to lapse rather than released: no other process sends the same
/// refresh token while the server may still be rotating it.
struct Held {
    lock: Option<ExchangeLock>,
    in_flight: AtomicBool,
}

impl Drop for Held {
    fn drop(&mut self) {
        // Otherwise the lock is released as it drops, with `Held`.
        if *self.in_flight.get_mut()
            && let Some(lock) = self.lock.take()
        {
            lock.abandon();
        }
    }
}

impl ForRefreshToken {
    fn new(refresh_token: Option<SecretString>) -> Self {
        ForRefreshToken {
            refresh_token,
            exchange_timeout: Duration::from_secs(60),
            store: None,
            persist_failure: PersistFailure::default(),
            decay: DecayPolicy::default(),
            clock: Arc::new(SystemClock),
            reuse_grace: None,
        }
    }
}

impl GrantBuilder<ForRefreshToken> {
    /// The current refresh token. With a [`store`](Self::store), a refresh token already
    /// stored there wins (it is newer).
    pub fn refresh_token(mut self, refresh_token: impl Into<String>) -> Self {
        self.grant.refresh_token = Some(SecretString::from(refresh_token.into()));
        self
    }

    /// How long one exchange with the token endpoint may take, even after the refresh that
    /// started it gave up (default 60 s).
    pub fn exchange_timeout(mut self, timeout: Duration) -> Self {
        self.grant.exchange_timeout = timeout;
        self
    }

    /// Persist the grant in `store` (see [`store`](crate::store)).
    pub fn store(mut self, store: impl TokenStore) -> Self {
        self.grant.store = Some(Arc::new(store));
        self
    }

    /// The server's reuse grace: how long after a rotation it still accepts the refresh
    /// token it rotated out (Okta's grace period, Auth0's reuse interval). With it, a
    /// refresh that failed after the request may have reached the server (a timeout, a
    /// broken connection, a gateway's 5xx) is tried again at once while within the grace of
    /// the first send. Without it (the default), only failures that provably had no effect
    /// are. Set it no longer than the server's.
    pub fn reuse_grace(mut self, grace: Duration) -> Self {
        self.grant.reuse_grace = Some(grace);
        self
    }

    /// What to do when a rotated refresh token cannot be persisted (default: fail closed).
    pub fn on_persist_failure(mut self, policy: PersistFailure) -> Self {
        self.grant.persist_failure = policy;
        self
    }

    /// The decay ages (default 60 / 75 / 85 of 90 days).
    pub fn decay_policy(mut self, policy: DecayPolicy) -> Self {
        self.grant.decay = policy;
        self
    }

    /// The wall clock decay is measured with (default: the system clock).
    pub fn wall_clock(mut self, clock: impl WallClock) -> Self {
        self.grant.clock = Arc::new(clock);
        self
    }

    /// Builds the grant. Public clients: use `.auth_method(ClientAuth::None)`.
    pub fn build(self) -> Result<RefreshTokenGrant, Error> {
        let (config, grant) = self.into_parts()?;
        if grant
            .refresh_token
            .as_ref()
            .is_some_and(|t| t.expose_secret().is_empty())
        {
            return Err(Error::Config("the refresh token is empty".into()));
        }
        if grant.refresh_token.is_none() && grant.store.is_none() {
            return Err(Error::Config(
                "a refresh token grant needs a refresh token or a store that holds one".into(),
            ));
        }
        grant.decay.validate()?;
        Ok(RefreshTokenGrant {
            inner: Arc::new(RefreshInner {
                config,
                state: Mutex::new(RefreshState {
                    current: grant.refresh_token,
                    ..RefreshState::default()
                }),
                store: grant.store,
                persist_failure: grant.persist_failure,
                decay: grant.decay,
                clock: grant.clock,
                exchange: Arc::new(tokio::sync::Mutex::new(())),
                exchange_timeout: grant.exchange_timeout,
                reuse_grace: grant.reuse_grace,
                own_write: Mutex::new(None),
                sharing: Sharing::default(),
            }),
        })
    }
}

impl TokenSource for RefreshTokenGrant {
    fn fetch(&self) -> FetchFuture<'_> {
        Box::pin(self.refresh())
    }

    /// Changes when the client secret is rotated or the stored grant is replaced.
    fn revision(&self) -> u64 {
        let secret = self.inner.config.endpoint.secret.revision();
        secret.rotate_left(32) ^ self.inner.store_revision()
    }

    fn kind(&self) -> &'static str {
        "refresh_token"
    }

    /// From the last use this process recorded or read from the store.
    fn decay_status(&self) -> Option<DecayStatus> {
        let last_used = {
            let st = self.inner.lock();
            st.last_used.or(st.stored_at)
        };
        Some(self.inner.decay.status(last_used, self.inner.clock.now()))
    }

    /// Yes after a failure that provably had no effect at the server; after one that may
    /// have come after a rotation, only within the configured reuse grace.
    fn may_repeat(&self, error: &Error) -> bool {
        if error.had_no_effect() {
            return true;
        }
        let Some(grace) = self.inner.reuse_grace else {
            tracing::debug!(
                error = %crate::error::chain(error),
                "not repeating the refresh token exchange at once: the server may have rotated"
            );
            return false;
        };
        let st = self.inner.lock();
        st.first_sent
            .as_ref()
            .is_some_and(|(_, at)| at.elapsed() < grace)
    }
}
