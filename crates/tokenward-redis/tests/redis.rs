//! `RedisStore` against a real `redis-server` (started here, on a loopback port, without
//! persistence): the grant, the lock, sealing, and every way Redis fails.
//!
//! Without `redis-server` installed these tests skip with a loud message, unless
//! `TOKENWARD_REQUIRE_REDIS=1` (CI) makes that a failure.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::ExposeSecret;
use tokenward::store::{CasOutcome, StoreError, StoredGrant, TokenStore};
use tokenward::{ClientCredentials, Error, RefreshTokenGrant, TokenCache};
use tokenward_redis::{ConfigError, EncryptionKey, RedisStore};
use tokenward_testkit::{FakeServer, RedisServer};
use tracing_subscriber::fmt::MakeWriter;

fn store(redis: &RedisServer, name: &str, key: &EncryptionKey) -> RedisStore {
    RedisStore::builder(redis.url(), name)
        .encryption_key(EncryptionKey::from_base64(key.to_base64().expose_secret()).unwrap())
        .share_access_token(true)
        .command_timeout(Duration::from_millis(500))
        .lock_ttl(Duration::from_secs(5))
        .build()
        .unwrap()
}

async fn admin(redis: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn raw_get(redis: &RedisServer, key: &str) -> Option<Vec<u8>> {
    redis::cmd("GET")
        .arg(key)
        .query_async(&mut admin(redis).await)
        .await
        .unwrap()
}

async fn raw_set(redis: &RedisServer, key: &str, value: &[u8]) {
    let () = redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query_async(&mut admin(redis).await)
        .await
        .unwrap();
}

fn server() -> FakeServer {
    FakeServer::builder()
        .client("redis-client", "redis-secret")
        .build()
}

/// `store`, holding a refresh token the server issued.
async fn seeded(store: RedisStore, server: &FakeServer) -> RedisStore {
    store
        .compare_and_swap(
            None,
            StoredGrant::new(server.issue_refresh_token("redis-client", "jobs.read")),
        )
        .await
        .unwrap();
    store
}

/// Makes Redis hold every client's commands for `ms` milliseconds.
async fn pause(redis: &RedisServer, ms: u64) {
    let () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(ms)
        .arg("ALL")
        .query_async(&mut admin(redis).await)
        .await
        .unwrap();
}

fn refresh_grant(server: &FakeServer, store: RedisStore) -> RefreshTokenGrant {
    RefreshTokenGrant::from_store(server.token_url(), "redis-client", store)
        .client_secret("redis-secret")
        .http_client(server.http_client())
        .build()
        .unwrap()
}

/// A `MakeWriter` that keeps everything logged.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    fn install(&self) -> tracing::subscriber::DefaultGuard {
        let subscriber = tracing_subscriber::fmt()
            .with_writer(self.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .finish();
        tracing::subscriber::set_default(subscriber)
    }
}

#[test]
fn a_store_needs_an_explicit_choice_of_how_tokens_are_kept() {
    let err = RedisStore::builder("redis://127.0.0.1:1", "g")
        .build()
        .unwrap_err();
    assert!(matches!(err, ConfigError::NoEncryptionChoice), "{err}");
    for name in ["", "a{b", "a}b", "a\nb"] {
        let err = RedisStore::builder("redis://127.0.0.1:1", name)
            .store_plaintext()
            .build()
            .unwrap_err();
        assert!(matches!(err, ConfigError::Name(_)), "{name:?}: {err}");
    }
    let err = RedisStore::builder("redis://:hunter2@[bad", "g")
        .store_plaintext()
        .build()
        .unwrap_err();
    assert!(matches!(err, ConfigError::Url));
    assert!(
        !tokenward::error::chain(&err)
            .to_string()
            .contains("hunter2")
    );
    for ttl in [Duration::from_millis(999), Duration::from_secs(90_000)] {
        let err = RedisStore::builder("redis://127.0.0.1:1", "g")
            .store_plaintext()
            .lock_ttl(ttl)
            .build()
            .unwrap_err();
        assert!(matches!(err, ConfigError::LockTtl), "{ttl:?}: {err}");
    }
    assert!(EncryptionKey::from_bytes(&[0; 31]).is_err());
    assert!(EncryptionKey::from_base64("not base64!").is_err());
    let key = EncryptionKey::generate();
    let encoded = key.to_base64();
    assert!(!format!("{key:?}").contains(encoded.expose_secret()));
    let store = RedisStore::builder("redis://:hunter2@127.0.0.1:1", "g")
        .namespace("billing")
        .encryption_key(key)
        .build()
        .unwrap();
    assert_eq!(store.grant_key(), "billing:{g}:grant");
    assert_eq!(store.lock_key(), "billing:{g}:lock");
    assert_eq!(store.access_key(), "billing:{g}:access");
    assert!(!format!("{store:?}").contains("hunter2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_and_swap_round_trip_sealed_and_bound_to_its_key() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let key = EncryptionKey::generate();
    let store = store(&redis, "roundtrip", &key);
    assert!(store.load().await.unwrap().is_none());
    let first = StoredGrant::new("rt-Sealed-1")
        .with_scope(Some("jobs.read".into()))
        .with_generation(1);
    assert!(matches!(
        store.compare_and_swap(None, first).await.unwrap(),
        CasOutcome::Swapped
    ));
    let loaded = store.load().await.unwrap().unwrap();
    assert_eq!(loaded.refresh_token.expose_secret(), "rt-Sealed-1");
    assert_eq!(loaded.scope.as_deref(), Some("jobs.read"));
    assert_eq!(loaded.generation, 1);

    // Only the holder of the current refresh token replaces it.
    let stale = store
        .compare_and_swap(None, StoredGrant::new("rt-other"))
        .await
        .unwrap();
    let CasOutcome::Conflict {
        current: Some(current),
    } = stale
    else {
        panic!("{stale:?}")
    };
    assert_eq!(current.refresh_token.expose_secret(), "rt-Sealed-1");
    let next = store
        .compare_and_swap(Some(&loaded.refresh_token), StoredGrant::new("rt-Sealed-2"))
        .await
        .unwrap();
    assert!(matches!(next, CasOutcome::Swapped));

    // Sealed: the token is not in Redis in clear.
    let raw = raw_get(&redis, store.grant_key()).await.unwrap();
    assert!(!String::from_utf8_lossy(&raw).contains("rt-Sealed-2"));

    // Another key does not open it.
    let other = self::store(&redis, "roundtrip", &EncryptionKey::generate());
    let err = other.load().await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    // A value moved to another grant's key does not open there.
    let moved = self::store(&redis, "elsewhere", &key);
    raw_set(&redis, moved.grant_key(), &raw).await;
    let err = moved.load().await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    // A plaintext value is refused by a store with a key (nobody plants a grant).
    raw_set(
        &redis,
        store.grant_key(),
        br#"tw1p{"version":1,"refresh_token":"rt-planted"}"#,
    )
    .await;
    let err = store.load().await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(
        !tokenward::error::chain(&err)
            .to_string()
            .contains("rt-planted"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lock_has_one_holder_and_a_lapsed_holder_never_releases_the_next_ones() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let key = EncryptionKey::generate();
    let a = store(&redis, "lock", &key);
    let b = self::store(&redis, "lock", &key);
    let held = a.lock_exchange().await.unwrap().expect("a lock");
    assert!(held.expires().is_some(), "a Redis lock lapses by itself");
    let owner = String::from_utf8(raw_get(&redis, a.lock_key()).await.unwrap()).unwrap();
    assert!(
        owner.starts_with(&format!("pid={};", std::process::id())),
        "{owner}"
    );
    let waiting = tokio::time::timeout(Duration::from_millis(300), b.lock_exchange()).await;
    assert!(waiting.is_err(), "taken twice");
    drop(held);
    // Well within the 5 s TTL: released, not lapsed.
    let again = tokio::time::timeout(Duration::from_secs(1), b.lock_exchange()).await;
    let again = again.expect("released on drop").unwrap().unwrap();

    // A holder whose lock lapsed does not delete the next holder's.
    let short = RedisStore::builder(redis.url(), "lapse")
        .store_plaintext()
        .lock_ttl(Duration::from_secs(1))
        .build()
        .unwrap();
    let first = short.lock_exchange().await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let second = tokio::time::timeout(Duration::from_secs(5), short.lock_exchange())
        .await
        .expect("a lapsed lock is free")
        .unwrap()
        .unwrap();
    let second_owner = raw_get(&redis, short.lock_key()).await.unwrap();
    let scripts_before = script_calls(&redis).await;
    drop(first);
    // Wait until the first holder's release script has run, then look.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while script_calls(&redis).await == scripts_before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no release was attempted"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        raw_get(&redis, short.lock_key()).await.as_deref(),
        Some(second_owner.as_slice()),
        "the first holder released the second one's lock"
    );
    drop((second, again));
}

/// How many scripts Redis has run (`EVALSHA` and `EVAL` calls, from `INFO commandstats`).
async fn script_calls(redis: &RedisServer) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut admin(redis).await)
        .await
        .unwrap();
    info.lines()
        .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
        .filter_map(|l| {
            l.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotating_grant_fails_closed_when_redis_is_down_and_recovers_after() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let server = server();
    let key = EncryptionKey::generate();
    let store = seeded(store(&redis, "down", &key), &server).await;
    let cache = TokenCache::new(refresh_grant(&server, store.clone()));
    cache.token().await.unwrap();
    redis.stop();
    let err = cache.force_refresh().await.unwrap_err();
    assert!(
        matches!(err.cause(), Error::Store(StoreError::Backend(_))),
        "{err:?}"
    );
    assert_eq!(
        server.counters().issued_for("refresh_token"),
        1,
        "no refresh without the lock"
    );
    redis.restart();
    // Redis came back empty: the grant is written back with the newest refresh token.
    let token = cache.force_refresh().await.unwrap();
    assert!(!token.access_token().expose_secret().is_empty());
    assert_eq!(server.counters().refresh_reuse_detected, 0);
    assert!(store.load().await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_redis_is_a_timeout_not_a_hang() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let server = server();
    let store = seeded(store(&redis, "slow", &EncryptionKey::generate()), &server).await;
    let cache = TokenCache::new(refresh_grant(&server, store));
    pause(&redis, 3000).await;
    let started = tokio::time::Instant::now();
    let err = cache.token().await.unwrap_err();
    assert!(
        matches!(err.cause(), Error::Store(StoreError::Backend(_))),
        "{err:?}"
    );
    // The backend's error is the source: the whole chain says what happened.
    let chain = tokenward::error::chain(&err).to_string();
    assert!(chain.contains("did not answer"), "{chain}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "bounded by the command timeout"
    );
    assert_eq!(server.counters().issued_for("refresh_token"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_in_redis_is_corrupt_and_never_quoted() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let server = server();
    let store = store(&redis, "garbage", &EncryptionKey::generate());
    raw_set(
        &redis,
        store.grant_key(),
        b"rt-Garbage-Quoted-9 not a grant",
    )
    .await;
    let cache = TokenCache::new(refresh_grant(&server, store.clone()));
    let err = cache.token().await.unwrap_err();
    let Error::Store(StoreError::Corrupt { reason, .. }) = err.cause() else {
        panic!("{err:?}")
    };
    assert!(!reason.contains("Garbage"));
    assert!(!format!("{} {err:?}", tokenward::error::chain(&err)).contains("rt-Garbage-Quoted-9"));
    assert_eq!(server.counters().token_requests, 0);
    // The value is left as it was: nothing is silently replaced.
    assert_eq!(
        raw_get(&redis, store.grant_key()).await.as_deref(),
        Some(&b"rt-Garbage-Quoted-9 not a grant"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restored_from_an_older_snapshot_is_written_over_not_replayed() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let server = server();
    let store = seeded(
        store(&redis, "snapshot", &EncryptionKey::generate()),
        &server,
    )
    .await;
    let cache = TokenCache::new(refresh_grant(&server, store.clone()));
    cache.token().await.unwrap();
    // The snapshot: the grant after one rotation.
    let snapshot = raw_get(&redis, store.grant_key()).await.unwrap();
    cache.force_refresh().await.unwrap();
    cache.force_refresh().await.unwrap();
    let newest = store.load().await.unwrap().unwrap();
    raw_set(&redis, store.grant_key(), &snapshot).await;

    cache.force_refresh().await.unwrap();
    let counters = server.counters();
    assert_eq!(
        counters.refresh_reuse_detected, 0,
        "an older refresh token was replayed"
    );
    let now = store.load().await.unwrap().unwrap();
    assert!(
        now.generation > newest.generation,
        "{} !> {}",
        now.generation,
        newest.generation
    );
}

#[tokio::test]
async fn client_credentials_share_one_token_and_degrade_to_their_own_with_a_warning() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let capture = Capture::default();
    let _guard = capture.install();
    let server = FakeServer::builder()
        .client("cc-client", "cc-Secret-Shared-4")
        .build();
    let key = EncryptionKey::generate();
    let grant = |store: RedisStore| {
        ClientCredentials::builder(server.token_url(), "cc-client")
            .client_secret("cc-Secret-Shared-4")
            .http_client(server.http_client())
            .share_through(store)
            .build()
            .unwrap()
    };
    // Two processes' caches: the second adopts the first one's token.
    let a = TokenCache::new(grant(store(&redis, "cc", &key)));
    let b = TokenCache::new(grant(store(&redis, "cc", &key)));
    let first = a.token().await.unwrap();
    let second = b.token().await.unwrap();
    assert_eq!(
        first.access_token().expose_secret(),
        second.access_token().expose_secret()
    );
    assert_eq!(server.counters().issued_for("client_credentials"), 1);

    // Garbage where the shared token should be: not adopted, a token of its own.
    raw_set(&redis, "tokenward:{cc}:access", b"tw1s garbage").await;
    let d = TokenCache::new(grant(store(&redis, "cc", &key)));
    let after_garbage = d.token().await.unwrap();
    assert_ne!(
        after_garbage.access_token().expose_secret(),
        first.access_token().expose_secret()
    );
    assert_eq!(server.counters().issued_for("client_credentials"), 2);

    // Redis paused (slow): bounded by the command timeout, then a token of its own.
    pause(&redis, 2000).await;
    let e = TokenCache::new(grant(store(&redis, "cc", &key)));
    e.token().await.unwrap();
    assert_eq!(server.counters().issued_for("client_credentials"), 3);

    // Redis down: each obtains its own, with a WARN event, and is served.
    redis.stop();
    let c = TokenCache::new(grant(store(&redis, "cc", &key)));
    let own = c.token().await.unwrap();
    assert_ne!(
        own.access_token().expose_secret(),
        first.access_token().expose_secret()
    );
    assert_eq!(server.counters().issued_for("client_credentials"), 4);
    let logs = capture.text();
    assert!(
        logs.contains("WARN") && logs.contains("obtaining a token for this process alone"),
        "{logs}"
    );
    assert!(!logs.contains("cc-Secret-Shared-4"));
    assert!(!logs.contains(own.access_token().expose_secret()));
}

#[tokio::test]
async fn client_credentials_over_an_unreadable_grant_file_get_their_own_token_with_a_warning() {
    let capture = Capture::default();
    let _guard = capture.install();
    let server = FakeServer::builder()
        .client("cc-client", "cc-secret")
        .build();
    let dir = std::env::temp_dir().join(format!(
        "tokenward-cc-file-{}-{:x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let grant = |store: tokenward::store::FileStore| {
        ClientCredentials::builder(server.token_url(), "cc-client")
            .client_secret("cc-secret")
            .http_client(server.http_client())
            .share_through(store)
            .build()
            .unwrap()
    };
    let shared = || tokenward::store::FileStore::new(dir.join("cc.json")).share_access_token(true);
    let a = TokenCache::new(grant(shared()));
    let b = TokenCache::new(grant(shared()));
    let first = a.token().await.unwrap();
    let second = b.token().await.unwrap();
    assert_eq!(
        first.access_token().expose_secret(),
        second.access_token().expose_secret()
    );
    assert_eq!(server.counters().issued_for("client_credentials"), 1);

    // A folder that is not there: the lock cannot be taken; a token of its own.
    let missing =
        tokenward::store::FileStore::new(dir.join("gone/cc.json")).share_access_token(true);
    let c = TokenCache::new(grant(missing));
    c.token().await.unwrap();
    assert_eq!(server.counters().issued_for("client_credentials"), 2);
    // An unreadable shared token file: not adopted, a token of its own.
    std::fs::write(dir.join("cc.json.access"), "not json").unwrap();
    let d = TokenCache::new(grant(shared()));
    d.token().await.unwrap();
    assert_eq!(server.counters().issued_for("client_credentials"), 3);
    let logs = capture.text();
    assert!(
        logs.contains("obtaining a token for this process alone")
            && logs.contains("could not read the shared access token"),
        "{logs}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_living_on_shared_access_tokens_still_learns_each_rotation() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let server = server();
    let key = EncryptionKey::generate();
    seeded(store(&redis, "learns", &key), &server).await;
    let a = TokenCache::new(refresh_grant(&server, store(&redis, "learns", &key)));
    let b = TokenCache::new(refresh_grant(&server, store(&redis, "learns", &key)));
    a.token().await.unwrap();
    b.token().await.unwrap();
    a.force_refresh().await.unwrap();
    a.force_refresh().await.unwrap();
    // B adopts A's newest access token: no call, but B learns the newest refresh token too.
    let calls = server.counters().issued_for("refresh_token");
    b.force_refresh().await.unwrap();
    assert_eq!(
        server.counters().issued_for("refresh_token"),
        calls,
        "adopted, not refreshed"
    );

    // Redis loses everything; B is the first to notice and writes back what it holds.
    redis.restart();
    b.force_refresh().await.unwrap();
    assert_eq!(
        server.counters().refresh_reuse_detected,
        0,
        "B wrote back a refresh token A had rotated out"
    );
    a.force_refresh().await.unwrap();
    assert_eq!(server.counters().refresh_reuse_detected, 0);
}
