//! Redis for [`tokenward`]: the replicas of a service share one OAuth 2.0 grant,
//! refresh it one at a time, and never replay a rotated refresh token.
//!
//! Each replica keeps its own [`TokenCache`](tokenward::TokenCache): reads never touch Redis
//! while the cached token is usable. When a refresh is due, the replica takes the grant's
//! lock in Redis, reads the grant (another replica may just have rotated it), adopts the
//! access token another replica obtained if it is fresh (no call), or exchanges the refresh
//! token and writes the rotation back with a compare-and-swap before anyone uses it.
//!
//! [`RedisStore`] is a [`TokenStore`]: give it to
//! [`RefreshTokenGrant::from_store`](tokenward::RefreshTokenGrant::from_store), or to
//! [`share_through`](tokenward::grant::GrantBuilder::share_through) for a client credentials
//! token.
//!
//! # Example
//!
//! ```no_run
//! use tokenward::{RefreshTokenGrant, TokenCache};
//! use tokenward_redis::{EncryptionKey, RedisStore};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // 32 bytes, base64; from your secret manager, the same on every replica.
//! let key = EncryptionKey::from_base64(&std::env::var("TOKEN_ENCRYPTION_KEY")?)?;
//! let store = RedisStore::builder("redis://redis.internal:6379", "billing-api")
//!     .encryption_key(key)
//!     .share_access_token(true)
//!     .build()?;
//! let grant = RefreshTokenGrant::from_store("https://auth.example.com/oauth/token", "my-client", store)
//!     .client_secret("s3cr3t")
//!     .build()?;
//! let cache = TokenCache::new(grant);
//! # let _ = cache; Ok(()) }
//! ```
//!
//! # Keys
//!
//! For the grant named `billing-api` in the default namespace `tokenward`:
//! `tokenward:{billing-api}:grant` (the refresh token), `tokenward:{billing-api}:access`
//! (the shared access token, expiring with it) and `tokenward:{billing-api}:lock` (the
//! exchange lock, expiring after [`lock_ttl`](RedisStoreBuilder::lock_ttl)). The braces keep
//! one grant's keys in one Redis Cluster slot.
//!
//! # What is protected, and what is not
//!
//! Values are sealed with XChaCha20-Poly1305 under a key only the replicas hold, bound to
//! their Redis key: someone who can read Redis (a backup, a replica, a shared instance)
//! learns nothing of the tokens, and someone who can write it cannot plant a grant or move
//! one between keys: what does not open with the key is refused as corrupt, and a store with
//! a key refuses plaintext values. Someone who can write Redis can still delete values or
//! hold the lock (denial of service), and a replica's memory holds the tokens in clear.
//! Plaintext storage exists for development only, by an explicit
//! [`store_plaintext`](RedisStoreBuilder::store_plaintext).
//!
//! Durability is Redis's: a rotated refresh token is safe once Redis has it, as safe as
//! Redis's persistence makes it (use AOF with `appendfsync always` for grants you cannot
//! re-authorize). A Redis that loses the grant is written back by the first replica that
//! notices, with the newest refresh token it holds; a Redis restored from an older snapshot
//! is recognised by the grant's generation and overwritten the same way. That is the newest
//! token *that replica* holds: every replica reads the grant each time it takes the lock,
//! so it is at most one rotation behind, but a replica that has not taken the lock since the
//! last rotation, or one started after the loss with an older refresh token in its own
//! configuration, writes back a rotated-out token and the server revokes the grant. A Redis
//! that restarts without its data also forgets the lock while a refresh may be under way.
//! Redis persistence is what closes these.
//!
//! # When Redis fails
//!
//! Every command is bounded by [`command_timeout`](RedisStoreBuilder::command_timeout). A
//! rotating refresh grant fails closed when Redis is down, slow or answers with garbage (a
//! typed [`StoreError`], never a second refresh with the same token); a client credentials
//! grant falls back to a token of its own per replica, with a WARN event.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use redis::Script;
use redis::aio::ConnectionManager;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use serde::{Deserialize, Serialize};
use tokenward::store::{
    CasOutcome, ExchangeLock, SharedToken, StoreError, StoreFuture, StoredGrant, TokenStore,
};

const FORMAT_VERSION: u32 = 1;
const SEALED: &[u8] = b"tw1s";
const PLAIN: &[u8] = b"tw1p";
const NONCE_BYTES: usize = 24;
/// Values larger than this are not ours.
const MAX_VALUE_BYTES: usize = 64 * 1024;
/// How many times a compare-and-swap is tried when the value changes under it.
const CAS_ATTEMPTS: usize = 8;
const MIN_LOCK_TTL: Duration = Duration::from_secs(1);
const MAX_LOCK_TTL: Duration = Duration::from_secs(24 * 3600);

/// A 256-bit key the stored tokens are sealed with. Its `Debug` never shows it.
pub struct EncryptionKey(SecretBox<[u8; 32]>);

impl EncryptionKey {
    /// A key from 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ConfigError> {
        let array: [u8; 32] = bytes.try_into().map_err(|_| ConfigError::KeyLength)?;
        Ok(EncryptionKey(SecretBox::new(Box::new(array))))
    }

    /// A key from its standard base64 encoding (44 characters), as secret managers hold it.
    pub fn from_base64(encoded: &str) -> Result<Self, ConfigError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| ConfigError::KeyEncoding)?;
        EncryptionKey::from_bytes(&bytes)
    }

    /// A new random key (for tests and examples: every replica needs the same key, so
    /// production keys come from a secret manager).
    pub fn generate() -> Self {
        EncryptionKey(SecretBox::new(Box::new(rand::random::<[u8; 32]>())))
    }

    /// The key in standard base64, to put in a secret manager.
    pub fn to_base64(&self) -> SecretString {
        SecretString::from(base64::engine::general_purpose::STANDARD.encode(self.0.expose_secret()))
    }
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EncryptionKey([REDACTED])")
    }
}

/// A [`RedisStore`] that cannot be built.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The Redis URL is not one (it is not shown: it may hold a password).
    #[error("the Redis URL is not valid (not shown: it may hold a password)")]
    Url,
    /// Neither an encryption key nor plaintext storage was chosen.
    #[error(
        "choose how tokens are stored: .encryption_key(key), or .store_plaintext() for development"
    )]
    NoEncryptionChoice,
    /// The grant's name or the namespace is empty, or holds a brace or a control character.
    #[error("the {0} must be non-empty, without braces or control characters")]
    Name(&'static str),
    /// An encryption key is not 32 bytes.
    #[error("an encryption key is 32 bytes")]
    KeyLength,
    /// An encryption key is not standard base64.
    #[error("the encryption key is not standard base64")]
    KeyEncoding,
    /// A duration is zero.
    #[error("the {0} must be longer than zero")]
    ZeroDuration(&'static str),
    /// The lock TTL is shorter than a second or longer than a day.
    #[error("the lock TTL must be between 1 s and 24 h")]
    LockTtl,
}

/// A failure talking to Redis, as the [`StoreError::Backend`] source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// Redis refused or failed the command, or could not be reached.
    #[error("the redis command failed")]
    Redis(#[from] redis::RedisError),
    /// Redis did not answer in time.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    /// The value kept changing under a compare-and-swap.
    #[error("the stored grant kept changing during a compare-and-swap")]
    Contended,
}

/// Builds a [`RedisStore`]; see [`RedisStore::builder`].
pub struct RedisStoreBuilder {
    url: String,
    name: String,
    namespace: String,
    key: Option<EncryptionKey>,
    plaintext: bool,
    share: bool,
    lock_ttl: Duration,
    command_timeout: Duration,
}

impl fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStoreBuilder")
            .field("name", &self.name)
            .field("namespace", &self.namespace)
            .field("encrypted", &self.key.is_some())
            .field("share_access_token", &self.share)
            .field("lock_ttl", &self.lock_ttl)
            .field("command_timeout", &self.command_timeout)
            .finish_non_exhaustive()
    }
}

impl RedisStoreBuilder {
    /// The first part of every key (default `tokenward`): to keep several applications or
    /// environments apart on one Redis.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// Seal every stored token with `key` (the same on every replica).
    pub fn encryption_key(mut self, key: EncryptionKey) -> Self {
        self.key = Some(key);
        self
    }

    /// Store tokens in plaintext: anyone who can read Redis, its backups or its replicas can
    /// use them. For development only; a store with an encryption key ignores this.
    pub fn store_plaintext(mut self) -> Self {
        self.plaintext = true;
        self
    }

    /// Share the access token too (off by default), so the replicas together make one token
    /// call per refresh period. It expires in Redis when it expires.
    pub fn share_access_token(mut self, share: bool) -> Self {
        self.share = share;
        self
    }

    /// How long the exchange lock lasts if its holder dies (default 60 s; 1 s to 24 h). A
    /// request to the token endpoint is only sent, and only waited for, until the TTL less a
    /// margin (a tenth of it, or three command timeouts if longer, at most half) — the
    /// margin is for persisting what it brings back. A request given up is left to the
    /// lock's lapse, never released early. Keep it well above the token endpoint's slowest
    /// answer.
    pub fn lock_ttl(mut self, ttl: Duration) -> Self {
        self.lock_ttl = ttl;
        self
    }

    /// How long one Redis command may take, connecting included (default 2 s).
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// Builds the store. No connection is made until it is first used (so a replica starts
    /// while Redis is down).
    pub fn build(self) -> Result<RedisStore, ConfigError> {
        let valid =
            |s: &str| !s.is_empty() && !s.chars().any(|c| c == '{' || c == '}' || c.is_control());
        if !valid(&self.name) {
            return Err(ConfigError::Name("grant's name"));
        }
        if !valid(&self.namespace) {
            return Err(ConfigError::Name("namespace"));
        }
        if !(MIN_LOCK_TTL..=MAX_LOCK_TTL).contains(&self.lock_ttl) {
            return Err(ConfigError::LockTtl);
        }
        if self.command_timeout.is_zero() {
            return Err(ConfigError::ZeroDuration("command timeout"));
        }
        let seal = match (self.key, self.plaintext) {
            (Some(key), _) => Seal::Key(
                XChaCha20Poly1305::new_from_slice(key.0.expose_secret())
                    .map_err(|_| ConfigError::KeyLength)?,
            ),
            (None, true) => Seal::Plain,
            (None, false) => return Err(ConfigError::NoEncryptionChoice),
        };
        let client = redis::Client::open(self.url.as_str()).map_err(|_| ConfigError::Url)?;
        let base = format!("{}:{{{}}}", self.namespace, self.name);
        Ok(RedisStore {
            inner: Arc::new(Inner {
                client,
                conn: tokio::sync::OnceCell::new(),
                grant_key: format!("{base}:grant"),
                access_key: format!("{base}:access"),
                lock_key: format!("{base}:lock"),
                seal,
                share: self.share,
                lock_ttl: self.lock_ttl,
                command_timeout: self.command_timeout,
                seen: Mutex::new(None),
                revision: AtomicU64::new(0),
            }),
        })
    }
}

/// A [`TokenStore`] in Redis, shared by every replica that uses the same grant name.
///
/// See the [crate documentation](crate) for the keys, the threat model and what happens
/// when Redis fails. Clones share one connection.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: redis::Client,
    conn: tokio::sync::OnceCell<ConnectionManager>,
    grant_key: String,
    access_key: String,
    lock_key: String,
    seal: Seal,
    share: bool,
    lock_ttl: Duration,
    command_timeout: Duration,
    /// A digest of the grant value last read or written, and the revision counter it bumps.
    seen: Mutex<Option<u64>>,
    revision: AtomicU64,
}

enum Seal {
    Key(XChaCha20Poly1305),
    Plain,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the URL: it may hold a password.
        f.debug_struct("RedisStore")
            .field("grant_key", &self.inner.grant_key)
            .field("encrypted", &matches!(self.inner.seal, Seal::Key(_)))
            .field("share_access_token", &self.inner.share)
            .field("lock_ttl", &self.inner.lock_ttl)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Starts building a store for the grant called `name` on the Redis at `url`
    /// (`redis://[:password@]host:port[/db]`). Every replica sharing the grant uses the
    /// same URL, name, namespace and key.
    pub fn builder(url: impl Into<String>, name: impl Into<String>) -> RedisStoreBuilder {
        RedisStoreBuilder {
            url: url.into(),
            name: name.into(),
            namespace: "tokenward".to_owned(),
            key: None,
            plaintext: false,
            share: false,
            lock_ttl: Duration::from_secs(60),
            command_timeout: Duration::from_secs(2),
        }
    }

    /// The key the grant is stored under.
    pub fn grant_key(&self) -> &str {
        &self.inner.grant_key
    }

    /// The key of the exchange lock; its value names the holder as `pid=<pid>;id=<random>`.
    pub fn lock_key(&self) -> &str {
        &self.inner.lock_key
    }

    /// The key of the shared access token.
    pub fn access_key(&self) -> &str {
        &self.inner.access_key
    }
}

impl Inner {
    fn backend(error: impl Into<BackendError>) -> StoreError {
        StoreError::Backend(Arc::new(error.into()))
    }

    /// A Redis error; its own timeouts read as ours.
    fn failed(&self, error: redis::RedisError) -> StoreError {
        if error.is_timeout() {
            Inner::backend(BackendError::Timeout(self.command_timeout))
        } else {
            Inner::backend(error)
        }
    }

    fn corrupt(&self, key: &str, reason: &str) -> StoreError {
        StoreError::Corrupt {
            path: format!("redis key {key}").into(),
            reason: reason.to_owned(),
        }
    }

    async fn connection(&self) -> Result<ConnectionManager, StoreError> {
        let conn = self
            .conn
            .get_or_try_init(|| async {
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.command_timeout))
                    .set_response_timeout(Some(self.command_timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(500));
                ConnectionManager::new_lazy_with_config(self.client.clone(), config)
            })
            .await
            .map_err(Inner::backend)?;
        Ok(conn.clone())
    }

    /// Runs `cmd`, bounded by the command timeout. A command that met a dropped connection
    /// (Redis restarted, a proxy closed it) is sent once more on the new one; the second
    /// result says whether that happened.
    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        self.query_noting_resend(cmd).await.map(|(value, _)| value)
    }

    async fn query_noting_resend<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
    ) -> Result<(T, bool), StoreError> {
        let mut resent = false;
        loop {
            let mut conn = self.connection().await?;
            match tokio::time::timeout(self.command_timeout, cmd.query_async(&mut conn)).await {
                Ok(Ok(value)) => return Ok((value, resent)),
                Ok(Err(e)) if !resent && e.is_connection_dropped() => resent = true,
                Ok(Err(e)) => return Err(self.failed(e)),
                Err(_) => return Err(Inner::backend(BackendError::Timeout(self.command_timeout))),
            }
        }
    }

    async fn script<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        let mut resent = false;
        loop {
            let mut conn = self.connection().await?;
            match tokio::time::timeout(self.command_timeout, invocation.invoke_async(&mut conn))
                .await
            {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(e)) if !resent && e.is_connection_dropped() => resent = true,
                Ok(Err(e)) => return Err(self.failed(e)),
                Err(_) => return Err(Inner::backend(BackendError::Timeout(self.command_timeout))),
            }
        }
    }

    fn seal(&self, key: &str, plain: &[u8]) -> Result<Vec<u8>, StoreError> {
        match &self.seal {
            Seal::Plain => Ok([PLAIN, plain].concat()),
            Seal::Key(cipher) => {
                let nonce_bytes = rand::random::<[u8; NONCE_BYTES]>();
                let sealed = cipher
                    .encrypt(
                        &XNonce::from(nonce_bytes),
                        Payload {
                            msg: plain,
                            aad: key.as_bytes(),
                        },
                    )
                    .map_err(|_| self.corrupt(key, "could not be sealed"))?;
                Ok([SEALED, &nonce_bytes, &sealed].concat())
            }
        }
    }

    /// The plaintext of a value read from `key`; anything not sealed by this store (or, for
    /// a plaintext store, not ours) is refused as corrupt. Never quotes the value.
    fn open(&self, key: &str, value: &[u8]) -> Result<Vec<u8>, StoreError> {
        if value.len() > MAX_VALUE_BYTES {
            return Err(self.corrupt(key, "the value is larger than 64 KiB"));
        }
        match (&self.seal, value.split_at_checked(SEALED.len())) {
            (Seal::Key(cipher), Some((SEALED, rest))) if rest.len() > NONCE_BYTES => {
                let (nonce, sealed) = rest.split_at(NONCE_BYTES);
                let nonce = XNonce::try_from(nonce)
                    .map_err(|_| self.corrupt(key, "its nonce is malformed"))?;
                cipher
                    .decrypt(
                        &nonce,
                        Payload {
                            msg: sealed,
                            aad: key.as_bytes(),
                        },
                    )
                    .map_err(|_| {
                        self.corrupt(
                            key,
                            "it does not open with the configured encryption key (another key, or not written for this key)",
                        )
                    })
            }
            (Seal::Key(_), Some((PLAIN, _))) => Err(self.corrupt(
                key,
                "it is stored in plaintext, but this store has an encryption key",
            )),
            (Seal::Plain, Some((SEALED, _))) => {
                Err(self.corrupt(key, "it is encrypted, but this store has no encryption key"))
            }
            (Seal::Plain, Some((PLAIN, rest))) => Ok(rest.to_vec()),
            _ => Err(self.corrupt(key, "not a tokenward value")),
        }
    }

    fn decode_grant(&self, value: &[u8]) -> Result<StoredGrant, StoreError> {
        let plain = self.open(&self.grant_key, value)?;
        // Never quote serde's message: it can contain the token.
        let format: GrantFormat = serde_json::from_slice(&plain)
            .map_err(|_| self.corrupt(&self.grant_key, "not a tokenward grant"))?;
        if format.version != FORMAT_VERSION || format.refresh_token.is_empty() {
            return Err(self.corrupt(&self.grant_key, "not a tokenward grant"));
        }
        Ok(StoredGrant::new(format.refresh_token)
            .with_scope(format.scope)
            .with_last_used(format.last_used_ms.map(from_unix_ms))
            .with_stored_at(format.stored_at_ms.map(from_unix_ms))
            .with_generation(format.generation))
    }

    fn encode_grant(&self, grant: &StoredGrant) -> Result<Vec<u8>, StoreError> {
        let format = GrantFormat {
            version: FORMAT_VERSION,
            refresh_token: grant.refresh_token.expose_secret().to_owned(),
            scope: grant.scope.clone(),
            last_used_ms: grant.last_used.map(to_unix_ms),
            stored_at_ms: grant.stored_at.map(to_unix_ms),
            generation: grant.generation,
        };
        let plain = serde_json::to_vec(&format)
            .map_err(|_| self.corrupt(&self.grant_key, "could not be encoded"))?;
        self.seal(&self.grant_key, &plain)
    }

    /// Notes the grant value seen: a different one than last time is a new revision.
    fn saw(&self, value: Option<&[u8]>) {
        let digest = value.map(|v| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            v.hash(&mut h);
            h.finish()
        });
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if *seen != digest {
            *seen = digest;
            self.revision.fetch_add(1, Ordering::Relaxed);
        }
    }

    async fn load_raw(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let value: Option<Vec<u8>> = self.query(redis::cmd("GET").arg(&self.grant_key)).await?;
        self.saw(value.as_deref());
        Ok(value)
    }

    async fn load(&self) -> Result<Option<StoredGrant>, StoreError> {
        match self.load_raw().await? {
            Some(value) => self.decode_grant(&value).map(Some),
            None => Ok(None),
        }
    }

    async fn compare_and_swap(
        &self,
        expected: Option<&SecretString>,
        new: StoredGrant,
    ) -> Result<CasOutcome, StoreError> {
        let encoded = self.encode_grant(&new)?;
        for _ in 0..CAS_ATTEMPTS {
            let raw = self.load_raw().await?;
            let current = raw.as_deref().map(|v| self.decode_grant(v)).transpose()?;
            let matches = match (&current, expected) {
                (None, None) => true,
                (Some(stored), Some(expected)) => stored.holds(expected),
                _ => false,
            };
            if !matches {
                return Ok(CasOutcome::Conflict { current });
            }
            // Replace exactly the value just read: if it changed since, read again.
            let mut invocation = cas_script().prepare_invoke();
            invocation
                .key(&self.grant_key)
                .arg(if raw.is_some() { "1" } else { "0" })
                .arg(raw.as_deref().unwrap_or_default())
                .arg(&encoded);
            let swapped: i64 = self.script(&invocation).await?;
            if swapped == 1 {
                self.saw(Some(&encoded));
                return Ok(CasOutcome::Swapped);
            }
        }
        Err(Inner::backend(BackendError::Contended))
    }

    async fn lock(&self) -> Result<ExchangeLock, StoreError> {
        let owner = format!(
            "pid={};id={:016x}",
            std::process::id(),
            rand::random::<u64>()
        );
        let ttl_ms = u64::try_from(self.lock_ttl.as_millis()).unwrap_or(u64::MAX);
        let margin = (self.lock_ttl / 10)
            .max(self.command_timeout * 3)
            .min(self.lock_ttl / 2);
        let mut pause = Duration::from_millis(5);
        loop {
            // Armed while an answer is outstanding: a SET that timed out or was cancelled may
            // still have taken the lock, and nobody else would release it.
            let mut guard = LockGuard {
                conn: self.connection().await?,
                key: self.lock_key.clone(),
                owner: owner.clone(),
                timeout: self.command_timeout,
                armed: true,
            };
            // The TTL runs from when Redis takes the SET: count from before it is sent.
            let asked = tokio::time::Instant::now();
            let (taken, resent): (Option<String>, bool) = self
                .query_noting_resend(
                    redis::cmd("SET")
                        .arg(&self.lock_key)
                        .arg(&owner)
                        .arg("NX")
                        .arg("PX")
                        .arg(ttl_ms),
                )
                .await?;
            // A resent SET whose first copy took the lock finds it held: by us.
            let ours = taken.is_some()
                || (resent
                    && self
                        .query::<Option<String>>(redis::cmd("GET").arg(&self.lock_key))
                        .await?
                        .is_some_and(|holder| holder == owner));
            if ours {
                let valid_for = self
                    .lock_ttl
                    .saturating_sub(margin)
                    .saturating_sub(asked.elapsed());
                return Ok(ExchangeLock::expiring(guard, valid_for));
            }
            // Held by another: nothing of ours to release.
            guard.armed = false;
            drop(guard);
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    async fn load_shared(&self) -> Result<Option<SharedToken>, StoreError> {
        if !self.share {
            return Ok(None);
        }
        let value: Option<Vec<u8>> = self.query(redis::cmd("GET").arg(&self.access_key)).await?;
        let Some(value) = value else {
            return Ok(None);
        };
        let plain = self.open(&self.access_key, &value)?;
        let format: SharedFormat = serde_json::from_slice(&plain)
            .map_err(|_| self.corrupt(&self.access_key, "not a tokenward access token"))?;
        if format.version != FORMAT_VERSION || format.access_token.is_empty() {
            return Err(self.corrupt(&self.access_key, "not a tokenward access token"));
        }
        Ok(Some(SharedToken::new(
            format.access_token,
            from_unix_ms(format.issued_at_ms),
            from_unix_ms(format.expires_at_ms),
            format.scope,
        )))
    }

    async fn store_shared(&self, token: SharedToken) -> Result<(), StoreError> {
        if !self.share {
            return Ok(());
        }
        let left = token
            .expires_at
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        let left_ms = u64::try_from(left.as_millis()).unwrap_or(u64::MAX);
        if left_ms == 0 {
            return Ok(());
        }
        let format = SharedFormat {
            version: FORMAT_VERSION,
            access_token: token.access_token.expose_secret().to_owned(),
            issued_at_ms: to_unix_ms(token.issued_at),
            expires_at_ms: to_unix_ms(token.expires_at),
            scope: token.scope,
        };
        let plain = serde_json::to_vec(&format)
            .map_err(|_| self.corrupt(&self.access_key, "could not be encoded"))?;
        let sealed = self.seal(&self.access_key, &plain)?;
        let () = self
            .query(
                redis::cmd("SET")
                    .arg(&self.access_key)
                    .arg(sealed)
                    .arg("PX")
                    .arg(left_ms),
            )
            .await?;
        Ok(())
    }
}

/// Replaces the value only if it is still the one read: `ARGV[1]` is `1` when a value was
/// read (`ARGV[2]`), `0` when none was.
fn cas_script() -> &'static Script {
    static SCRIPT: std::sync::OnceLock<Script> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| {
        Script::new(
            r"local current = redis.call('GET', KEYS[1])
if ARGV[1] == '0' then
  if current then return 0 end
elseif current ~= ARGV[2] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[3])
return 1",
        )
    })
}

/// Deletes the lock only if this process still holds it.
fn release_script() -> &'static Script {
    static SCRIPT: std::sync::OnceLock<Script> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| {
        Script::new(
            r"if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0",
        )
    })
}

/// Releases the exchange lock when dropped (from a task on the current runtime; without
/// one, the lock lapses by its TTL).
struct LockGuard {
    conn: ConnectionManager,
    key: String,
    owner: String,
    timeout: Duration,
    armed: bool,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut conn = self.conn.clone();
        let (key, owner, timeout) = (
            std::mem::take(&mut self.key),
            std::mem::take(&mut self.owner),
            self.timeout,
        );
        runtime.spawn(async move {
            let mut invocation = release_script().prepare_invoke();
            invocation.key(&key).arg(&owner);
            let released = tokio::time::timeout(timeout, invocation.invoke_async::<i64>(&mut conn));
            if !matches!(released.await, Ok(Ok(_))) {
                tracing::debug!("could not release the exchange lock; it lapses by its TTL");
            }
        });
    }
}

impl TokenStore for RedisStore {
    fn load(&self) -> StoreFuture<'_, Option<StoredGrant>> {
        Box::pin(self.inner.load())
    }

    fn compare_and_swap<'a>(
        &'a self,
        expected: Option<&'a SecretString>,
        new: StoredGrant,
    ) -> StoreFuture<'a, CasOutcome> {
        Box::pin(self.inner.compare_and_swap(expected, new))
    }

    fn shares_access_token(&self) -> bool {
        self.inner.share
    }

    /// Bumped whenever this process reads or writes a different grant value than it last
    /// saw.
    fn revision(&self) -> u64 {
        self.inner.revision.load(Ordering::Relaxed)
    }

    /// `SET <lock> <owner> NX PX <ttl>`, polled (5 ms doubling to 100 ms) until it is free;
    /// released with a compare-and-delete, so a process never releases another's lock.
    fn lock_exchange(&self) -> StoreFuture<'_, Option<ExchangeLock>> {
        Box::pin(async move { self.inner.lock().await.map(Some) })
    }

    fn load_shared_token(&self) -> StoreFuture<'_, Option<SharedToken>> {
        Box::pin(self.inner.load_shared())
    }

    fn store_shared_token(&self, token: SharedToken) -> StoreFuture<'_, ()> {
        Box::pin(self.inner.store_shared(token))
    }
}

/// Fields added later are ignored by earlier versions (a rolling deploy); the seal already
/// vouches for what is in it.
#[derive(Serialize, Deserialize)]
struct GrantFormat {
    version: u32,
    refresh_token: String,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    last_used_ms: Option<u64>,
    #[serde(default)]
    stored_at_ms: Option<u64>,
    #[serde(default)]
    generation: u64,
}

#[derive(Serialize, Deserialize)]
struct SharedFormat {
    version: u32,
    access_token: String,
    issued_at_ms: u64,
    expires_at_ms: u64,
    #[serde(default)]
    scope: Option<String>,
}

fn to_unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn from_unix_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH
        .checked_add(Duration::from_millis(ms))
        .unwrap_or(UNIX_EPOCH)
}
