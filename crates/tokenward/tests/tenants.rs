//! The tenant cache: no fallback, isolation between tenants, credentials replaced at run
//! time, idle eviction, and a storm of concurrent reads across many tenants.

mod common;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{pass, server_error, settle};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokenward::grant::FetchFuture;
use tokenward::{CacheConfig, Error, TenantCache, Token, TokenCache, TokenSource};
use tokio::time::Instant;

/// What an organisation's token endpoint does.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// Issue `<name>-<n>` at once.
    Ok,
    /// Wait (paused or real time) a few milliseconds, varying per call, then issue.
    Jitter,
    /// Never answer.
    Hang,
    /// 503 every time.
    Unavailable,
}

/// One organisation's credentials: issues `<name>-1`, `<name>-2`, ... and counts its calls.
#[derive(Debug, Clone)]
struct Org {
    inner: Arc<OrgInner>,
}

#[derive(Debug)]
struct OrgInner {
    name: String,
    lifetime: Duration,
    mode: Mutex<Mode>,
    calls: AtomicUsize,
    issued: AtomicUsize,
}

impl Org {
    fn new(name: impl Into<String>, lifetime: Duration, mode: Mode) -> Org {
        Org {
            inner: Arc::new(OrgInner {
                name: name.into(),
                lifetime,
                mode: Mutex::new(mode),
                calls: AtomicUsize::new(0),
                issued: AtomicUsize::new(0),
            }),
        }
    }

    fn calls(&self) -> usize {
        self.inner.calls.load(Ordering::SeqCst)
    }
}

impl TokenSource for Org {
    fn fetch(&self) -> FetchFuture<'_> {
        let call = self.inner.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let mode = *self.inner.mode.lock().unwrap();
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            match mode {
                Mode::Ok => {}
                Mode::Jitter => {
                    tokio::time::sleep(Duration::from_millis((call as u64 * 7) % 5)).await;
                }
                Mode::Hang => std::future::pending::<()>().await,
                Mode::Unavailable => return Err(server_error(503)),
            }
            let n = inner.issued.fetch_add(1, Ordering::SeqCst) + 1;
            Token::builder(format!("{}-{n}", inner.name))
                .expires_in(inner.lifetime)
                .build()
        })
    }
}

const TTL: Duration = Duration::from_secs(100);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// No jitter, 10 s skew, no lead: a 100 s token is fresh until 80 s, stale until 90 s.
fn config() -> CacheConfig {
    let mut config = CacheConfig::default();
    config.timing.refresh_jitter = 0.0;
    config.timing.clock_skew = Duration::from_secs(10);
    config.timing.min_refresh_lead = Duration::ZERO;
    config
}

fn tenants() -> TenantCache<String> {
    TenantCache::builder().cache_config(config()).build()
}

async fn header<K>(tenants: &TenantCache<K>, tenant: &str) -> String
where
    K: Eq + std::hash::Hash + Clone + fmt::Debug + fmt::Display + Send + Sync + 'static,
    K: std::borrow::Borrow<str>,
{
    let value = tenants.header(tenant).await.unwrap();
    value.to_str().unwrap().to_owned()
}

fn assert_unknown(result: Result<impl fmt::Debug, Error>, tenant: &str) {
    match result {
        Err(Error::UnknownTenant { tenant: t }) => assert_eq!(t, tenant),
        other => panic!("expected UnknownTenant for {tenant}, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn an_unknown_tenant_is_an_error_and_nothing_is_fetched() {
    let acme = Org::new("acme", TTL, Mode::Ok);
    let tenants = tenants();
    tenants.insert("acme".to_string(), acme.clone());

    assert_unknown(tenants.header("globex").await, "globex");
    assert_unknown(tenants.token("globex").await, "globex");
    assert_unknown(tenants.get("globex"), "globex");
    assert!(!tenants.contains("globex"));
    assert!(!tenants.invalidate("globex", &"Bearer acme-1".parse().unwrap()));
    let err = tenants.header("globex").await.unwrap_err();
    assert!(err.to_string().contains("no fallback"), "{err}");
    assert!(!err.is_retryable());
    settle().await;
    assert_eq!(
        acme.calls(),
        0,
        "no tenant's endpoint is called for an unknown one"
    );

    // Keys are compared exactly: no case folding, no trimming, no prefix matching.
    assert_unknown(tenants.get("ACME"), "ACME");
    assert_unknown(tenants.get("acme "), "acme ");
    assert_unknown(tenants.get(""), "");
    assert_eq!(header(&tenants, "acme").await, "Bearer acme-1");
}

#[tokio::test(start_paused = true)]
async fn a_removed_tenant_is_unknown() {
    let acme = Org::new("acme", TTL, Mode::Ok);
    let globex = Org::new("globex", TTL, Mode::Ok);
    let tenants = tenants();
    tenants.insert("acme".to_string(), acme.clone());
    tenants.insert("globex".to_string(), globex.clone());
    assert_eq!(tenants.len(), 2);
    let acme_header = tenants.header("acme").await.unwrap();
    let detached = tenants.get("acme").unwrap();

    assert!(tenants.remove("acme"));
    assert!(!tenants.remove("acme"));
    assert!(!tenants.contains("acme"));
    assert_eq!(tenants.tenants(), vec!["globex".to_string()]);
    assert_unknown(tenants.header("acme").await, "acme");
    assert_unknown(tenants.get("acme"), "acme");
    assert!(!tenants.invalidate("acme", &acme_header));
    assert!(
        detached.cached().is_none(),
        "the removed tenant's token is dropped"
    );
    assert_eq!(acme.calls(), 1);
    assert_eq!(header(&tenants, "globex").await, "Bearer globex-1");
}

#[tokio::test(start_paused = true)]
async fn a_hanging_tenant_never_delays_another() {
    let acme = Org::new("acme", TTL, Mode::Hang);
    let globex = Org::new("globex", TTL, Mode::Ok);
    let tenants = tenants();
    // acme's refreshes hang for an hour before its deadline gives up.
    tenants.insert_cache(
        "acme".to_string(),
        TokenCache::builder(acme.clone())
            .refresh_deadline(Duration::from_secs(3600))
            .build(),
    );
    tenants.insert("globex".to_string(), globex.clone());

    let stuck = tokio::spawn({
        let tenants = tenants.clone();
        async move { tenants.header("acme").await }
    });
    settle().await;
    assert_eq!(acme.calls(), 1, "acme's refresh is in flight and hangs");

    // globex's first read: fetched and returned without any time passing.
    let t0 = Instant::now();
    assert_eq!(header(&tenants, "globex").await, "Bearer globex-1");
    assert_eq!(Instant::now(), t0);
    assert_eq!(globex.calls(), 1);

    // globex's background refresh, while acme still hangs.
    pass(Duration::from_secs(81)).await;
    let t1 = Instant::now();
    assert_eq!(
        header(&tenants, "globex").await,
        "Bearer globex-1",
        "stale: served at once"
    );
    settle().await;
    assert_eq!(header(&tenants, "globex").await, "Bearer globex-2");
    assert_eq!(Instant::now(), t1);
    assert_eq!(globex.calls(), 2);

    // globex's token rejected: the read that follows waits only for globex's own endpoint.
    let rejected = tenants.header("globex").await.unwrap();
    assert!(tenants.invalidate("globex", &rejected));
    assert_eq!(header(&tenants, "globex").await, "Bearer globex-3");
    assert_eq!(Instant::now(), t1);

    assert!(
        !stuck.is_finished(),
        "acme is still waiting on its own refresh"
    );
    assert_eq!(acme.calls(), 1);
    stuck.abort();
}

#[tokio::test(start_paused = true)]
async fn a_failing_tenant_never_delays_another() {
    let acme = Org::new("acme", TTL, Mode::Unavailable);
    let globex = Org::new("globex", TTL, Mode::Ok);
    let tenants = tenants();
    tenants.insert("acme".to_string(), acme.clone());
    tenants.insert("globex".to_string(), globex.clone());

    let failing = tokio::spawn({
        let tenants = tenants.clone();
        async move { tenants.header("acme").await }
    });
    settle().await;
    assert!(acme.calls() >= 1, "acme failed and is backing off");

    let t0 = Instant::now();
    assert_eq!(header(&tenants, "globex").await, "Bearer globex-1");
    assert_eq!(Instant::now(), t0);
    assert_eq!(globex.calls(), 1);

    let err = failing.await.unwrap().unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(503));
    assert_eq!(acme.calls(), 4, "four attempts, then the error");

    // acme keeps failing (a new refresh per read) while globex refreshes normally.
    pass(Duration::from_secs(81)).await;
    let again = tokio::spawn({
        let tenants = tenants.clone();
        async move { tenants.header("acme").await }
    });
    settle().await;
    let t1 = Instant::now();
    assert_eq!(header(&tenants, "globex").await, "Bearer globex-1");
    settle().await;
    assert_eq!(header(&tenants, "globex").await, "Bearer globex-2");
    assert_eq!(Instant::now(), t1);
    assert_eq!(globex.calls(), 2);
    assert!(again.await.unwrap().is_err());

    let acme_status = tenants.get("acme").unwrap().status();
    let globex_status = tenants.get("globex").unwrap().status();
    assert!(acme_status.consecutive_failures > 0);
    assert_eq!(globex_status.consecutive_failures, 0);
    assert!(globex_status.last_error.is_none());
}

#[tokio::test(start_paused = true)]
async fn replaced_credentials_fetch_a_new_token() {
    let old = Org::new("acme-v1", TTL, Mode::Ok);
    let new = Org::new("acme-v2", TTL, Mode::Ok);
    let tenants = tenants();
    assert!(tenants.insert("acme".to_string(), old.clone()).is_none());
    let old_header = tenants.header("acme").await.unwrap();
    assert_eq!(old_header, "Bearer acme-v1-1");
    let held = tenants.get("acme").unwrap();

    let replaced = tenants.insert("acme".to_string(), new.clone());
    let replaced = replaced.expect("the old tenant's cache is returned");
    assert!(replaced.cached().is_none(), "the old token is dropped");
    assert!(held.cached().is_none(), "also for clones taken before");
    assert!(
        !tenants.invalidate("acme", &old_header),
        "not the current token"
    );

    assert_eq!(header(&tenants, "acme").await, "Bearer acme-v2-1");
    assert_eq!(header(&tenants, "acme").await, "Bearer acme-v2-1");
    assert_eq!((old.calls(), new.calls()), (1, 1));
    assert_eq!(tenants.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn invalidation_is_per_tenant_and_by_value() {
    let acme = Org::new("acme", TTL, Mode::Ok);
    let globex = Org::new("globex", TTL, Mode::Ok);
    let tenants = tenants();
    tenants.insert("acme".to_string(), acme.clone());
    tenants.insert("globex".to_string(), globex.clone());
    let a = tenants.header("acme").await.unwrap();
    let g = tenants.header("globex").await.unwrap();

    assert!(
        !tenants.invalidate("globex", &a),
        "another tenant's header changes nothing"
    );
    assert!(tenants.invalidate("acme", &a));
    assert!(
        !tenants.invalidate("acme", &a),
        "a burst of 401s makes one refresh"
    );
    assert_eq!(header(&tenants, "acme").await, "Bearer acme-2");
    assert_eq!(tenants.header("globex").await.unwrap(), g);
    assert_eq!((acme.calls(), globex.calls()), (1 + 1, 1));
}

#[tokio::test(start_paused = true)]
async fn idle_tenants_lose_their_token_and_active_ones_keep_it() {
    let acme = Org::new("acme", DAY, Mode::Ok);
    let globex = Org::new("globex", DAY, Mode::Ok);
    let initech = Org::new("initech", DAY, Mode::Ok);
    let tenants: TenantCache<String> = TenantCache::builder()
        .cache_config(config())
        .idle_eviction(Duration::from_secs(600)) // swept every 150 s
        .tenant("acme".to_string(), acme.clone())
        .tenant("globex".to_string(), globex.clone())
        .tenant("initech".to_string(), initech.clone())
        .build();
    assert_eq!(header(&tenants, "acme").await, "Bearer acme-1");
    assert_eq!(header(&tenants, "globex").await, "Bearer globex-1");

    // globex is read every minute; acme and initech are never read again. Debug output
    // does not count as a read.
    let phase_of = |name: &str| {
        let dbg = format!("{tenants:?}");
        let at = dbg.find(&format!("{name:?}: ")).unwrap() + name.len() + 4;
        dbg[at..]
            .split([',', '}'])
            .next()
            .unwrap()
            .trim()
            .to_owned()
    };
    for minute in 1..=20 {
        pass(Duration::from_secs(60)).await;
        assert_eq!(header(&tenants, "globex").await, "Bearer globex-1");
        if minute == 9 {
            assert_eq!(phase_of("acme"), "Fresh", "not idle long enough yet");
        }
    }
    assert_eq!(phase_of("acme"), "Empty", "idle for 20 minutes: evicted");
    assert_eq!(phase_of("globex"), "Fresh", "read every minute: kept");
    assert_eq!(phase_of("initech"), "Empty", "never read: nothing cached");
    assert_eq!(tenants.evict_idle(), 0, "the sweeper already did it");

    // Configuration stays: the next read simply fetches a new token.
    assert!(tenants.contains("acme"));
    assert_eq!(header(&tenants, "acme").await, "Bearer acme-2");
    assert_eq!(header(&tenants, "initech").await, "Bearer initech-1");
    assert_eq!((acme.calls(), globex.calls(), initech.calls()), (2, 1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_caller_configured_cache_is_evicted_too() {
    let acme = Org::new("acme", DAY, Mode::Ok);
    let tenants: TenantCache<&'static str> = TenantCache::builder()
        .idle_eviction(Duration::from_secs(60))
        .tenant_cache(
            "acme",
            TokenCache::builder(acme.clone()).name("acme").build(),
        )
        .build();
    assert_eq!(tenants.header("acme").await.unwrap(), "Bearer acme-1");
    for _ in 0..8 {
        pass(Duration::from_secs(15)).await; // one sweep per step
    }
    assert_eq!(tenants.get("acme").unwrap().cached().map(|_| ()), None);
    assert_eq!(tenants.header("acme").await.unwrap(), "Bearer acme-2");
    assert_eq!(acme.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn health_checks_do_not_keep_an_idle_tenant_from_eviction() {
    let acme = Org::new("acme", DAY, Mode::Ok);
    let tenants: TenantCache<String> = TenantCache::builder()
        .idle_eviction(Duration::from_secs(60))
        .tenant("acme".to_string(), acme.clone())
        .build();
    assert_eq!(tenants.header("acme").await.unwrap(), "Bearer acme-1");
    for _ in 0..8 {
        pass(Duration::from_secs(15)).await; // one sweep per step
        // A probe every step, as a readiness check would.
        assert!(tenants.status_of("acme").is_some());
        assert_eq!(tenants.status().tenants.len(), 1);
    }
    let status = tenants.status_of("acme").unwrap();
    assert_eq!(
        status.phase,
        tokenward::Phase::Empty,
        "evicted despite the probes"
    );
    assert!(tenants.status_of("nobody").is_none());
}

// ---- the storm --------------------------------------------------------------------------

const TENANTS: usize = 50;
const TASKS: usize = 2_000;
const OPS_PER_TASK: usize = 5;

struct Storm {
    tenants: TenantCache<String>,
    orgs: Vec<Org>,
    /// Invalidations that dropped a token, per tenant.
    invalidated: Vec<AtomicUsize>,
    /// Reads, per tenant.
    reads: Vec<AtomicUsize>,
}

fn storm(lifetime: Duration) -> Arc<Storm> {
    let tenants = tenants();
    let orgs: Vec<Org> = (0..TENANTS)
        .map(|i| Org::new(format!("org{i}"), lifetime, Mode::Jitter))
        .collect();
    for org in &orgs {
        tenants.insert(org.inner.name.clone(), org.clone());
    }
    Arc::new(Storm {
        tenants,
        orgs,
        invalidated: (0..TENANTS).map(|_| AtomicUsize::new(0)).collect(),
        reads: (0..TENANTS).map(|_| AtomicUsize::new(0)).collect(),
    })
}

/// `Bearer org7-3` → ("org7", 3).
fn owner(header: &str) -> (&str, usize) {
    let token = header.strip_prefix("Bearer ").unwrap();
    let (tenant, n) = token.rsplit_once('-').unwrap();
    (tenant, n.parse().unwrap())
}

/// One task: random tenants, random yields, reads, invalidations and (with `sleeps`)
/// paused-time sleeps. Checks that every token belongs to the tenant asked for.
async fn worker(storm: Arc<Storm>, seed: u64, sleeps: bool) {
    let mut rng = StdRng::seed_from_u64(seed);
    for _ in 0..OPS_PER_TASK {
        let i = rng.random_range(0..TENANTS);
        let tenant = format!("org{i}");
        for _ in 0..rng.random_range(0..4) {
            tokio::task::yield_now().await;
        }
        let header = match rng.random_range(0..10) {
            0..=2 => storm
                .tenants
                .token(&tenant)
                .await
                .unwrap()
                .header_value()
                .clone(),
            _ => storm.tenants.header(&tenant).await.unwrap(),
        };
        storm.reads[i].fetch_add(1, Ordering::SeqCst);
        let text = header.to_str().unwrap();
        let (owner, _) = owner(text);
        assert_eq!(owner, tenant, "{tenant} was handed {owner}'s token");
        assert!(header.is_sensitive());
        if rng.random_bool(0.02) {
            for _ in 0..rng.random_range(0..3) {
                tokio::task::yield_now().await;
            }
            if storm.tenants.invalidate(&tenant, &header) {
                storm.invalidated[i].fetch_add(1, Ordering::SeqCst);
            }
        }
        if sleeps && rng.random_bool(0.3) {
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..60_000))).await;
        }
    }
}

async fn run_storm(storm: &Arc<Storm>, seed: u64, sleeps: bool) {
    let tasks: Vec<_> = (0..TASKS as u64)
        .map(|t| tokio::spawn(worker(Arc::clone(storm), seed ^ (t * 0x9E37_79B9), sleeps)))
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

/// Per tenant: at most one call per invalidation, plus the first, plus `expiries`.
fn check_calls(storm: &Storm, expiries: usize) -> HashMap<String, usize> {
    let mut calls = HashMap::new();
    for (i, org) in storm.orgs.iter().enumerate() {
        let n = org.calls();
        let invalidated = storm.invalidated[i].load(Ordering::SeqCst);
        let reads = storm.reads[i].load(Ordering::SeqCst);
        assert!(reads > 0, "every tenant is read in a storm this size");
        assert!(n >= 1, "{}: read but never fetched", org.inner.name);
        assert!(
            n <= 1 + invalidated + expiries,
            "{}: {n} token calls for {invalidated} invalidations and {expiries} expiries",
            org.inner.name
        );
        calls.insert(org.inner.name.clone(), n);
    }
    assert_eq!(
        storm
            .reads
            .iter()
            .map(|r| r.load(Ordering::SeqCst))
            .sum::<usize>(),
        TASKS * OPS_PER_TASK
    );
    calls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storm_on_two_threads_never_mixes_tenants() {
    // Real time; tokens live a day, so only invalidations cause fetches.
    let storm = storm(DAY);
    run_storm(&storm, 0x5EED, false).await;
    check_calls(&storm, 0);
}

#[tokio::test(start_paused = true)]
async fn storm_in_paused_time_never_mixes_tenants() {
    // Paused time that moves while tasks sleep: tokens go stale (80 s) and expire (90 s).
    let storm = storm(TTL);
    let start = Instant::now();
    run_storm(&storm, 0xC0FFEE, true).await;
    let elapsed = Instant::now() - start;
    assert!(elapsed > Duration::from_secs(80), "time moved: {elapsed:?}");
    // A token is refreshed for its age no sooner than 80 s after it was issued.
    let expiries = (elapsed.as_secs() / 80) as usize;
    check_calls(&storm, expiries);
}

/// Counts the requests it passes on to the testkit.
#[derive(Debug, Clone)]
struct Counting {
    inner: tokenward_testkit::InProcessClient,
    sent: Arc<AtomicUsize>,
}

impl tokenward::HttpClient for Counting {
    fn send(&self, request: http::Request<bytes::Bytes>) -> tokenward::transport::SendFuture<'_> {
        self.sent.fetch_add(1, Ordering::SeqCst);
        self.inner.send(request)
    }
}

#[tokio::test(start_paused = true)]
async fn grants_added_as_builders_share_one_http_client() {
    use tokenward::{ClientCredentials, RefreshTokenGrant};
    let server = tokenward_testkit::FakeServer::builder()
        .client("acme", "acme-secret")
        .client("globex", "globex-secret")
        .client("initech", "initech-secret")
        .build();
    let shared = Arc::new(AtomicUsize::new(0));
    let own = Arc::new(AtomicUsize::new(0));
    let client = |sent: &Arc<AtomicUsize>| Counting {
        inner: server.http_client(),
        sent: sent.clone(),
    };
    let refresh = server.issue_refresh_token("globex", "jobs.read");
    let tenants: TenantCache<String> = TenantCache::builder()
        .http_client(client(&shared))
        .grant(
            "acme".into(),
            ClientCredentials::builder(server.token_url(), "acme").client_secret("acme-secret"),
        )
        .unwrap()
        .grant(
            "globex".into(),
            RefreshTokenGrant::builder(server.token_url(), "globex", refresh)
                .client_secret("globex-secret"),
        )
        .unwrap()
        .build();
    tenants
        .insert_grant(
            "initech".into(),
            ClientCredentials::builder(server.token_url(), "initech")
                .client_secret("initech-secret")
                .http_client(client(&own)),
        )
        .unwrap();
    for tenant in ["acme", "globex", "initech"] {
        tenants.header(tenant).await.unwrap();
    }
    assert_eq!(
        shared.load(Ordering::SeqCst),
        2,
        "acme and globex on the shared client"
    );
    assert_eq!(
        own.load(Ordering::SeqCst),
        1,
        "initech kept the client it was given"
    );
    // The shared client is handed out for grants built elsewhere.
    let again = tenants.http_client().unwrap();
    let request = http::Request::get(server.url("/resource"))
        .body(bytes::Bytes::new())
        .unwrap();
    again.send(request).await.unwrap();
    assert_eq!(shared.load(Ordering::SeqCst), 3);

    // A builder that cannot build leaves the tenants as they were.
    let error = tenants
        .insert_grant(
            "broken".into(),
            ClientCredentials::builder("not a url", "x").client_secret("s"),
        )
        .unwrap_err();
    assert!(matches!(error, Error::Config(_)));
    assert!(!tenants.contains("broken"));
}
