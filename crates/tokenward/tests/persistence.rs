//! Rotated refresh tokens persisted before use, store failures, conflicts between processes,
//! restarts, corrupt files, and refresh-token decay with keep-alive — against the testkit
//! server (rotation with reuse detection), in-process, under paused time.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::settle;
use secrecy::{ExposeSecret, SecretString};
use tokenward::decay::{DecayPolicy, DecayState, ManualClock, WallClock, spawn_keep_alive};
use tokenward::grant::PersistFailure;
use tokenward::store::{
    CasOutcome, FileStore, MemoryStore, StoreError, StoreFuture, StoredGrant, TokenStore,
};
use tokenward::{Error, RefreshAhead, RefreshTokenGrant, TokenCache};
use tokenward_testkit::FakeServer;
use tokio::sync::Semaphore;

const CLIENT: &str = "app";
const SECRET: &str = "app-secret";
const DAY: Duration = Duration::from_secs(86_400);

fn server() -> FakeServer {
    FakeServer::builder().client(CLIENT, SECRET).build()
}

fn grant_from(
    server: &FakeServer,
    store: impl TokenStore,
) -> tokenward::grant::GrantBuilder<tokenward::grant::ForRefreshToken> {
    RefreshTokenGrant::from_store(server.token_url(), CLIENT, store)
        .client_secret(SECRET)
        .http_client(server.http_client())
}

fn stored_rt(store: &MemoryStore) -> String {
    store
        .snapshot()
        .unwrap()
        .refresh_token
        .expose_secret()
        .to_owned()
}

/// A store whose writes wait for a permit: shows what the cache does while a write is in
/// flight.
#[derive(Debug, Clone)]
struct GatedStore {
    inner: MemoryStore,
    gate: Arc<Semaphore>,
}

impl TokenStore for GatedStore {
    fn load(&self) -> StoreFuture<'_, Option<StoredGrant>> {
        self.inner.load()
    }
    fn compare_and_swap<'a>(
        &'a self,
        expected: Option<&'a SecretString>,
        new: StoredGrant,
    ) -> StoreFuture<'a, CasOutcome> {
        Box::pin(async move {
            let _permit = self.gate.acquire().await.unwrap();
            self.inner.compare_and_swap(expected, new).await
        })
    }
}

#[tokio::test(start_paused = true)]
async fn the_rotated_refresh_token_is_persisted_before_the_access_token_is_handed_out() {
    let server = server();
    let seed = server.issue_refresh_token(CLIENT, "jobs.read");
    let memory = MemoryStore::with_refresh_token(seed.clone());
    let gate = Arc::new(Semaphore::new(0));
    let store = GatedStore {
        inner: memory.clone(),
        gate: Arc::clone(&gate),
    };
    let cache = TokenCache::new(grant_from(&server, store).build().unwrap());

    let reader = tokio::spawn({
        let cache = cache.clone();
        async move { cache.token().await }
    });
    settle().await;
    assert_eq!(
        server.counters().issued_for("refresh_token"),
        1,
        "the server rotated"
    );
    assert!(
        !reader.is_finished(),
        "no access token before the write completes"
    );
    assert_eq!(stored_rt(&memory), seed, "not yet persisted");

    gate.add_permits(1);
    let token = reader.await.unwrap().unwrap();
    let persisted = stored_rt(&memory);
    assert_ne!(persisted, seed);
    assert_eq!(
        token.refresh_token().unwrap().expose_secret(),
        persisted,
        "the handed-out token's refresh token is the persisted one"
    );
    let stored = memory.snapshot().unwrap();
    assert!(stored.last_used.is_some() && stored.stored_at.is_some());
    assert_eq!(stored.scope.as_deref(), Some("jobs.read"));
}

#[tokio::test(start_paused = true)]
async fn a_failed_write_fails_closed_and_the_next_attempt_persists_the_kept_token() {
    let server = server();
    let seed = server.issue_refresh_token(CLIENT, "jobs.read");
    let store = MemoryStore::with_refresh_token(seed.clone());
    let grant = Arc::new(grant_from(&server, store.clone()).build().unwrap());
    let cache = TokenCache::new(Arc::clone(&grant));

    store.fail_writes(Some("disk full"));
    let err = cache.token().await.unwrap_err();
    assert!(
        matches!(&err, Error::Store(StoreError::Injected(r)) if r == "disk full"),
        "{err:?}"
    );
    assert!(cache.cached().is_none(), "no access token was handed out");
    let kept = grant.current_refresh_token().unwrap();
    assert_ne!(
        kept.expose_secret(),
        seed,
        "the rotated token is kept in memory"
    );
    assert_eq!(stored_rt(&store), seed, "the store still has the old one");

    store.fail_writes(None);
    tokio::time::advance(Duration::from_secs(1)).await; // past the cool-down
    cache.token().await.unwrap();
    assert_eq!(server.counters().refresh_reuse_detected, 0);
    assert_eq!(
        stored_rt(&store),
        grant.current_refresh_token().unwrap().expose_secret(),
        "persisted, and in step with memory"
    );
    // The kept token was persisted first, then used (and rotated again).
    assert_eq!(server.counters().issued_for("refresh_token"), 2);
    assert_eq!(store.writes(), 2);
}

#[tokio::test(start_paused = true)]
async fn serve_anyway_hands_out_the_token_and_persists_later() {
    let server = server();
    let seed = server.issue_refresh_token(CLIENT, "jobs.read");
    let store = MemoryStore::with_refresh_token(seed.clone());
    let grant = Arc::new(
        grant_from(&server, store.clone())
            .on_persist_failure(PersistFailure::ServeAnyway)
            .build()
            .unwrap(),
    );
    let cache = TokenCache::new(Arc::clone(&grant));
    store.fail_writes(Some("read-only filesystem"));
    cache.token().await.unwrap();
    assert_eq!(stored_rt(&store), seed);
    store.fail_writes(None);
    cache.force_refresh().await.unwrap();
    assert_eq!(
        stored_rt(&store),
        grant.current_refresh_token().unwrap().expose_secret()
    );
    assert_eq!(server.counters().refresh_reuse_detected, 0);
}

#[tokio::test(start_paused = true)]
async fn a_process_adopts_the_rotation_of_another_instead_of_replaying() {
    let server = server();
    let seed = server.issue_refresh_token(CLIENT, "jobs.read");
    let shared = MemoryStore::with_refresh_token(seed.clone());
    // Two processes, both started from the seed.
    let a = TokenCache::new(grant_from(&server, shared.clone()).build().unwrap());
    let b_grant = Arc::new(
        RefreshTokenGrant::builder(server.token_url(), CLIENT, seed.clone())
            .client_secret(SECRET)
            .http_client(server.http_client())
            .store(shared.clone())
            .build()
            .unwrap(),
    );
    let b = TokenCache::new(Arc::clone(&b_grant));
    for round in 0..6 {
        // They take turns; each must pick up the other's rotation from the store.
        let cache = if round % 2 == 0 { &a } else { &b };
        cache.force_refresh().await.unwrap();
    }
    assert_eq!(server.counters().refresh_reuse_detected, 0);
    assert_eq!(server.counters().issued_for("refresh_token"), 6);
    // B refreshed last: its rotation is the stored one.
    assert_eq!(
        stored_rt(&shared),
        b_grant.current_refresh_token().unwrap().expose_secret()
    );
}

#[tokio::test(start_paused = true)]
async fn a_stored_refresh_token_wins_over_the_configured_seed() {
    let server = server();
    let stale_seed = server.issue_refresh_token(CLIENT, "jobs.read");
    let current = server.issue_refresh_token(CLIENT, "jobs.read");
    server.revoke_grant_of(&stale_seed);
    let store = MemoryStore::with_refresh_token(current);
    let grant = RefreshTokenGrant::builder(server.token_url(), CLIENT, stale_seed)
        .client_secret(SECRET)
        .http_client(server.http_client())
        .store(store)
        .build()
        .unwrap();
    TokenCache::new(grant).token().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_empty_store_is_a_typed_reauthorization_error_and_a_seed_fills_it() {
    let server = server();
    let err = TokenCache::new(grant_from(&server, MemoryStore::new()).build().unwrap())
        .token()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoRefreshToken), "{err:?}");
    assert!(err.is_reauthorization_required());
    assert_eq!(server.token_calls(), 0);

    let seed = server.issue_refresh_token(CLIENT, "jobs.read");
    let store = MemoryStore::new();
    let grant = RefreshTokenGrant::builder(server.token_url(), CLIENT, seed)
        .client_secret(SECRET)
        .http_client(server.http_client())
        .store(store.clone())
        .build()
        .unwrap();
    TokenCache::new(grant).token().await.unwrap();
    assert_eq!(store.writes(), 2, "the seed, then its rotation");
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tokenward-persist-{name}-{}-{:x}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn rand_suffix() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

#[tokio::test(start_paused = true)]
async fn a_restarted_process_continues_from_the_file() {
    let server = server();
    let dir = temp_dir("restart");
    let path = dir.join("grant.json");
    let seed = server.issue_refresh_token(CLIENT, "jobs.read");
    FileStore::new(&path)
        .compare_and_swap(None, StoredGrant::new(seed))
        .await
        .unwrap();
    for _process in 0..3 {
        let cache = TokenCache::new(grant_from(&server, FileStore::new(&path)).build().unwrap());
        cache.token().await.unwrap();
        cache.force_refresh().await.unwrap();
        drop(cache); // the process ends
    }
    assert_eq!(server.counters().issued_for("refresh_token"), 6);
    assert_eq!(server.counters().refresh_reuse_detected, 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_corrupt_file_is_a_typed_error_and_nothing_is_sent() {
    let server = server();
    let dir = temp_dir("corrupt");
    let path = dir.join("grant.json");
    std::fs::write(&path, b"{\"version\":1,\"refresh_token\":").unwrap();
    let err = TokenCache::new(grant_from(&server, FileStore::new(&path)).build().unwrap())
        .token()
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Store(StoreError::Corrupt { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains("re-authorize"), "{err}");
    assert_eq!(server.token_calls(), 0);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        b"{\"version\":1,\"refresh_token\":",
        "untouched"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(start_paused = true)]
async fn decay_warns_pages_and_hard_fails_without_calling_the_endpoint() {
    let server = server();
    let clock = ManualClock::new(SystemTime::UNIX_EPOCH + 20_000 * DAY);
    let seed = server.issue_refresh_token(CLIENT, "jobs.read");
    let store = MemoryStore::new();
    store
        .compare_and_swap(
            None,
            StoredGrant::new(seed).with_last_used(Some(clock.now())),
        )
        .await
        .unwrap();
    let grant = Arc::new(
        grant_from(&server, store.clone())
            .wall_clock(clock.clone())
            .build()
            .unwrap(),
    );
    let cache = TokenCache::new(Arc::clone(&grant));

    let expect = [
        (10, DecayState::Healthy),
        (61, DecayState::Warn),
        (76, DecayState::Page),
        (85, DecayState::HardFail),
    ];
    let mut at = 0;
    for (day, state) in expect {
        let day: u32 = day;
        clock.advance((day - at) * DAY);
        at = day;
        let status = grant.decay_status().await.unwrap();
        assert_eq!(status.state, state, "day {day}");
        assert_eq!(status.idle, DAY * day);
    }
    let calls = server.token_calls();
    let err = cache.token().await.unwrap_err();
    assert!(
        matches!(err, Error::RefreshTokenDecayed { idle, .. } if idle == 85 * DAY),
        "{err:?}"
    );
    assert!(err.is_reauthorization_required());
    assert!(err.to_string().contains("authorize the application again"));
    assert_eq!(server.token_calls(), calls, "the endpoint was not called");
}

#[tokio::test(start_paused = true)]
async fn the_cache_status_reports_decay_as_the_process_last_saw_it() {
    let server = server();
    let clock = ManualClock::new(SystemTime::UNIX_EPOCH + 20_000 * DAY);
    let seed = server.issue_refresh_token(CLIENT, "jobs.read");
    let grant = grant_from(&server, MemoryStore::with_refresh_token(seed))
        .wall_clock(clock.clone())
        .build()
        .unwrap();
    let cache = TokenCache::builder(grant)
        .refresh_ahead(tokenward::RefreshAhead::OnDemand)
        .build();
    cache.token().await.unwrap();
    let status = cache.status();
    let decay = status
        .decay
        .as_ref()
        .expect("a refresh grant reports decay");
    assert_eq!(decay.state, DecayState::Healthy);
    assert!(status.is_usable() && !status.needs_attention());

    // Idle for 61 days: still a usable token? No, it expired long ago; none has failed
    // yet, so the first read would obtain one, and the decay warning needs attention.
    clock.advance(61 * DAY);
    tokio::time::advance(Duration::from_secs(7200)).await;
    let status = cache.status();
    assert_eq!(status.decay.as_ref().unwrap().state, DecayState::Warn);
    assert!(status.is_usable());
    assert!(status.needs_attention());
    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(json["decay"]["state"], "warn");
    assert_eq!(json["decay"]["idle_days"], 61);
    assert_eq!(json["decay"]["remaining_days"], 29);

    // Past the hard-fail age: not usable, before any read fails.
    clock.advance(25 * DAY);
    let status = cache.status();
    assert_eq!(status.decay.as_ref().unwrap().state, DecayState::HardFail);
    assert!(!status.is_usable());
    let err = cache.token().await.unwrap_err();
    assert!(matches!(err, Error::RefreshTokenDecayed { .. }), "{err:?}");
    let json = serde_json::to_value(cache.status()).unwrap();
    assert_eq!(json["usable"], false);
    assert_eq!(json["last_error"]["kind"], "decayed");
}

#[tokio::test(start_paused = true)]
async fn a_refresh_resets_the_decay_clock() {
    let server = server();
    let clock = ManualClock::new(SystemTime::UNIX_EPOCH + 20_000 * DAY);
    let seed = server.issue_refresh_token(CLIENT, "jobs.read");
    let grant = Arc::new(
        grant_from(&server, MemoryStore::with_refresh_token(seed))
            .wall_clock(clock.clone())
            .build()
            .unwrap(),
    );
    let cache = TokenCache::new(Arc::clone(&grant));
    cache.token().await.unwrap();
    clock.advance(70 * DAY);
    assert_eq!(grant.decay_status().await.unwrap().state, DecayState::Warn);
    cache.force_refresh().await.unwrap();
    let status = grant.decay_status().await.unwrap();
    assert_eq!(status.state, DecayState::Healthy);
    assert_eq!(status.idle, Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn keep_alive_refreshes_an_idle_grant_so_a_seasonal_integration_never_decays() {
    let server = server();
    let clock = ManualClock::new(SystemTime::UNIX_EPOCH + 20_000 * DAY);
    let seed = server.issue_refresh_token(CLIENT, "jobs.read");
    let store = MemoryStore::with_refresh_token(seed);
    let grant = Arc::new(
        grant_from(&server, store.clone())
            .wall_clock(clock.clone())
            .decay_policy(DecayPolicy::with_keep_alive(30 * DAY))
            .build()
            .unwrap(),
    );
    // On demand: an eager cache refreshes a token nobody reads anyway (and so keeps the
    // grant alive itself); keep-alive is for caches that only refresh when read.
    let cache = TokenCache::builder(Arc::clone(&grant))
        .refresh_ahead(RefreshAhead::OnDemand)
        .build();
    cache.token().await.unwrap(); // the last use before the quiet season
    let _keep_alive = spawn_keep_alive(cache.clone(), Arc::clone(&grant), DAY);

    let mut worst = DecayState::Healthy;
    for _day in 0..200 {
        clock.advance(DAY);
        tokio::time::advance(DAY).await;
        settle().await;
        worst = worst.max(grant.decay_status().await.unwrap().state);
    }
    assert_eq!(worst, DecayState::Healthy, "never reached the warn age");
    let refreshes = server.counters().issued_for("refresh_token");
    // One refresh per ~30 idle days over 200 days (plus the first use).
    assert!((6..=8).contains(&refreshes), "refreshes: {refreshes}");
    assert_eq!(server.counters().refresh_reuse_detected, 0);
    // And the grant still works after the season.
    cache.force_refresh().await.unwrap();
}

/// A `MakeWriter` collecting `tracing` output.
#[derive(Clone, Default)]
struct Capture(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

#[tokio::test(start_paused = true)]
async fn warn_and_page_are_tracing_events_with_the_age_and_the_action() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(capture.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let server = server();
    let clock = ManualClock::new(SystemTime::UNIX_EPOCH + 20_000 * DAY);
    let seed = server.issue_refresh_token(CLIENT, "jobs.read");
    let store = MemoryStore::new();
    store
        .compare_and_swap(
            None,
            StoredGrant::new(seed).with_last_used(Some(clock.now())),
        )
        .await
        .unwrap();
    let grant = grant_from(&server, store)
        .wall_clock(clock.clone())
        .build()
        .unwrap();

    clock.advance(62 * DAY);
    grant.decay_status().await.unwrap().emit();
    clock.advance(14 * DAY);
    grant.decay_status().await.unwrap().emit();
    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    let warn = logs
        .lines()
        .find(|l| l.contains("decay warning"))
        .expect(&logs);
    assert!(
        warn.contains("WARN") && warn.contains("idle_days=62"),
        "{warn}"
    );
    assert!(warn.contains("enable keep-alive"), "{warn}");
    let page = logs
        .lines()
        .find(|l| l.contains("about to decay"))
        .expect(&logs);
    assert!(
        page.contains("ERROR") && page.contains("idle_days=76"),
        "{page}"
    );
    assert!(page.contains("remaining_days=14"), "{page}");
}

/// A store written before generations existed (or by a third party): it keeps everything
/// but the generation, which it gives back as 0.
#[derive(Debug, Clone, Default)]
struct NoGenerations(MemoryStore);

impl TokenStore for NoGenerations {
    fn load(&self) -> StoreFuture<'_, Option<StoredGrant>> {
        let grant = self.0.snapshot().map(|g| g.with_generation(0));
        Box::pin(async move { Ok(grant) })
    }
    fn compare_and_swap<'a>(
        &'a self,
        expected: Option<&'a SecretString>,
        new: StoredGrant,
    ) -> StoreFuture<'a, CasOutcome> {
        Box::pin(async move {
            match self
                .0
                .compare_and_swap(expected, new.with_generation(0))
                .await?
            {
                CasOutcome::Conflict { current } => Ok(CasOutcome::Conflict {
                    current: current.map(|g| g.with_generation(0)),
                }),
                swapped => Ok(swapped),
            }
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_new_authorization_after_rotations_is_adopted_not_written_over() {
    let server = server();
    let store = MemoryStore::with_refresh_token(server.issue_refresh_token(CLIENT, "jobs.read"));
    let cache = TokenCache::new(grant_from(&server, store.clone()).build().unwrap());
    cache.token().await.unwrap();
    cache.force_refresh().await.unwrap();
    cache.force_refresh().await.unwrap();

    // The grant is revoked and the user authorizes again: the new refresh token is stored.
    let old = stored_rt(&store);
    assert!(server.revoke_grant_of(&old));
    let fresh = server.issue_refresh_token(CLIENT, "jobs.read");
    let token = tokenward::Token::builder("at-from-the-code-flow")
        .refresh_token(fresh.clone())
        .build()
        .unwrap();
    tokenward::store_refresh_token(&token, &store)
        .await
        .unwrap();

    cache.force_refresh().await.unwrap();
    assert_ne!(
        stored_rt(&store),
        old,
        "the revoked refresh token was written back"
    );
    assert_eq!(server.counters().refresh_reuse_detected, 0);
    assert_eq!(
        server.last_token_request().unwrap().params["refresh_token"],
        fresh,
        "the new authorization's refresh token was sent"
    );
}

#[tokio::test(start_paused = true)]
async fn two_processes_on_a_store_without_generations_never_write_an_older_grant_back() {
    let server = server();
    let store = NoGenerations(MemoryStore::with_refresh_token(
        server.issue_refresh_token(CLIENT, "jobs.read"),
    ));
    let a = TokenCache::new(grant_from(&server, store.clone()).build().unwrap());
    let b = TokenCache::new(grant_from(&server, store.clone()).build().unwrap());
    for _ in 0..4 {
        a.force_refresh().await.unwrap();
        b.force_refresh().await.unwrap();
    }
    assert_eq!(server.counters().refresh_reuse_detected, 0);
    assert_eq!(server.counters().issued_for("refresh_token"), 8);
}

/// A store whose exchange lock lapses after `valid_for`, like a networked lock with a TTL;
/// `released` says whether its guard was dropped (the lock released) rather than left to
/// lapse.
#[derive(Debug, Clone)]
struct LapsingLock {
    inner: MemoryStore,
    valid_for: Duration,
    released: Arc<std::sync::atomic::AtomicBool>,
}

struct ReleaseOnDrop(Arc<std::sync::atomic::AtomicBool>);

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl TokenStore for LapsingLock {
    fn load(&self) -> StoreFuture<'_, Option<StoredGrant>> {
        self.inner.load()
    }
    fn compare_and_swap<'a>(
        &'a self,
        expected: Option<&'a SecretString>,
        new: StoredGrant,
    ) -> StoreFuture<'a, CasOutcome> {
        self.inner.compare_and_swap(expected, new)
    }
    fn lock_exchange(&self) -> StoreFuture<'_, Option<tokenward::store::ExchangeLock>> {
        let lock = tokenward::store::ExchangeLock::expiring(
            ReleaseOnDrop(Arc::clone(&self.released)),
            self.valid_for,
        );
        Box::pin(async move { Ok(Some(lock)) })
    }
}

fn lapsing(server: &FakeServer, valid_for: Duration) -> LapsingLock {
    LapsingLock {
        inner: MemoryStore::with_refresh_token(server.issue_refresh_token(CLIENT, "jobs.read")),
        valid_for,
        released: Arc::default(),
    }
}

#[tokio::test(start_paused = true)]
async fn a_request_outlasting_its_lock_is_given_up_and_the_lock_left_to_lapse() {
    let server = server();
    server.push_fault(tokenward_testkit::Fault::Latency(Duration::from_secs(10)));
    let store = lapsing(&server, Duration::from_secs(2));
    let cache = TokenCache::new(grant_from(&server, store.clone()).build().unwrap());
    let err = cache.token().await.unwrap_err();
    assert!(matches!(err.cause(), Error::Timeout(_)), "{err:?}");
    assert!(
        !store.released.load(std::sync::atomic::Ordering::SeqCst),
        "released while the request may still be at the server"
    );

    // Answered in time: released as usual.
    let store = lapsing(&server, Duration::from_secs(2));
    let cache = TokenCache::new(grant_from(&server, store.clone()).build().unwrap());
    cache.token().await.unwrap();
    assert!(store.released.load(std::sync::atomic::Ordering::SeqCst));
}

#[tokio::test(start_paused = true)]
async fn no_request_is_sent_under_a_lock_with_no_time_left() {
    let server = server();
    let store = lapsing(&server, Duration::ZERO);
    let cache = TokenCache::new(grant_from(&server, store.clone()).build().unwrap());
    let err = cache.token().await.unwrap_err();
    assert!(matches!(err.cause(), Error::Timeout(_)), "{err:?}");
    assert_eq!(server.counters().token_requests, 0);
    assert!(store.released.load(std::sync::atomic::Ordering::SeqCst));
}
