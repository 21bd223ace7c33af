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

// -------------------------------------------------------------------------------------------
// Tenants loaded on demand

/// A resolver's database: orgs by name, calls counted, and optionally failing.
#[derive(Clone, Default)]
struct Directory {
    orgs: Arc<Mutex<HashMap<String, Org>>>,
    calls: Arc<AtomicUsize>,
    failing: Arc<std::sync::atomic::AtomicBool>,
    /// Lookups never answer.
    hanging: Arc<std::sync::atomic::AtomicBool>,
    /// Each lookup takes this long (50 ms unless set).
    delay: Option<Duration>,
}

impl Directory {
    fn with(names: &[&str], lifetime: Duration) -> Directory {
        let directory = Directory::default();
        for name in names {
            directory
                .orgs
                .lock()
                .unwrap()
                .insert((*name).to_owned(), Org::new(*name, lifetime, Mode::Ok));
        }
        directory
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// A tenant cache that loads from this directory, each lookup taking 50 ms.
    fn tenants(&self) -> TenantCache<String> {
        let directory = self.clone();
        TenantCache::builder()
            .cache_config(config())
            .unknown_for(Duration::from_secs(30))
            .resolver(move |name: String| {
                let directory = directory.clone();
                async move {
                    directory.calls.fetch_add(1, Ordering::SeqCst);
                    let delay = directory.delay.unwrap_or(Duration::from_millis(50));
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    if directory.hanging.load(Ordering::SeqCst) {
                        std::future::pending::<()>().await;
                    }
                    if directory.failing.load(Ordering::SeqCst) {
                        return Err(std::io::Error::other("the directory is down"));
                    }
                    Ok(directory.orgs.lock().unwrap().get(&name).cloned())
                }
            })
            .build()
    }
}

#[tokio::test(start_paused = true)]
async fn a_hundred_first_requests_for_a_tenant_make_one_resolver_call() {
    let directory = Directory::with(&["acme"], DAY);
    let tenants = directory.tenants();
    assert!(!tenants.contains("acme"));
    let asks: Vec<_> = (0..100)
        .map(|_| {
            let tenants = tenants.clone();
            tokio::spawn(async move { header(&tenants, "acme").await })
        })
        .collect();
    for ask in asks {
        assert_eq!(ask.await.unwrap(), "Bearer acme-1");
    }
    assert_eq!(directory.calls(), 1);
    assert_eq!(directory.orgs.lock().unwrap()["acme"].calls(), 1);
    // Loaded: like an inserted tenant from now on, with no further resolver call.
    assert!(tenants.contains("acme"));
    assert_eq!(header(&tenants, "acme").await, "Bearer acme-1");
    assert!(tenants.get("acme").unwrap().cached().is_some());
    assert_eq!(directory.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_unknown_key_is_remembered_for_a_while_and_inserting_it_ends_that() {
    let directory = Directory::with(&[], DAY);
    let tenants = directory.tenants();
    let asks: Vec<_> = (0..50)
        .map(|_| {
            let tenants = tenants.clone();
            tokio::spawn(async move { tenants.header("initech").await })
        })
        .collect();
    for ask in asks {
        assert_unknown(ask.await.unwrap(), "initech");
    }
    assert_eq!(directory.calls(), 1);
    // A flood later within the window asks nobody.
    for _ in 0..1_000 {
        assert_unknown(tenants.header("initech").await, "initech");
    }
    assert_eq!(directory.calls(), 1);
    assert!(!tenants.contains("initech"));
    // After the window, the resolver is asked again (the org may exist now).
    tokio::time::advance(Duration::from_secs(31)).await;
    directory
        .orgs
        .lock()
        .unwrap()
        .insert("initech".into(), Org::new("initech", DAY, Mode::Ok));
    assert_eq!(header(&tenants, "initech").await, "Bearer initech-1");
    assert_eq!(directory.calls(), 2);

    // Inserted by hand while remembered as unknown: known at once.
    assert_unknown(tenants.header("hooli").await, "hooli");
    tenants.insert("hooli".to_owned(), Org::new("hooli", DAY, Mode::Ok));
    assert_eq!(header(&tenants, "hooli").await, "Bearer hooli-1");
    assert_eq!(directory.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_resolver_error_reaches_the_requests_that_waited_and_is_not_remembered() {
    let directory = Directory::with(&["acme"], DAY);
    directory.failing.store(true, Ordering::SeqCst);
    let tenants = directory.tenants();
    let asks: Vec<_> = (0..20)
        .map(|_| {
            let tenants = tenants.clone();
            tokio::spawn(async move { tenants.header("acme").await })
        })
        .collect();
    for ask in asks {
        match ask.await.unwrap() {
            Err(error @ Error::TenantResolver { .. }) => {
                assert!(error.is_retryable());
                assert_eq!(error.code(), "tenant_resolver");
                assert_eq!(
                    tokenward::error::chain(&error).to_string(),
                    "the tenant resolver failed for tenant \"acme\": the directory is down"
                );
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(directory.calls(), 1);
    assert!(!tenants.contains("acme"));
    // Not remembered: the next request asks again, and the directory is back.
    directory.failing.store(false, Ordering::SeqCst);
    assert_eq!(header(&tenants, "acme").await, "Bearer acme-1");
    assert_eq!(directory.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_thousand_tenants_expiring_at_once_make_a_thousand_token_calls() {
    let names: Vec<String> = (0..1_000).map(|i| format!("org{i}")).collect();
    let orgs: Vec<Org> = names
        .iter()
        .map(|n| Org::new(n, TTL, Mode::Jitter))
        .collect();
    let tenants = tenants();
    for org in &orgs {
        tenants.insert(org.inner.name.clone(), org.clone());
    }
    for name in &names {
        header(&tenants, name).await;
    }
    // Every token has expired (90 s), none was refreshed ahead (nothing was read since).
    tokio::time::advance(Duration::from_secs(95)).await;
    let asks: Vec<_> = names
        .iter()
        .flat_map(|name| std::iter::repeat_n(name.clone(), 10))
        .map(|name| {
            let tenants = tenants.clone();
            tokio::spawn(async move {
                let got = header(&tenants, &name).await;
                assert_eq!(
                    got,
                    format!("Bearer {name}-2"),
                    "{name} got another's token"
                );
            })
        })
        .collect();
    for ask in asks {
        ask.await.unwrap();
    }
    for org in &orgs {
        assert_eq!(
            org.calls(),
            2,
            "{}: a duplicated or missing call",
            org.inner.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_stay_with_their_tenant_while_tenants_come_and_go() {
    // Real time, two threads: readers of random tenants, loaded or inserted, while others
    // are inserted and removed. Every token a reader gets is its tenant's.
    let names: Vec<String> = (0..200).map(|i| format!("org{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut directory = Directory::with(&refs, DAY);
    directory.delay = Some(Duration::ZERO);
    let tenants = directory.tenants();
    // The churn runs its rounds while the readers read until it is done: every read overlaps
    // inserts and removals.
    let churning = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let readers: Vec<_> = (0..8u64)
        .map(|seed| {
            let (tenants, churning) = (tenants.clone(), Arc::clone(&churning));
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(seed);
                let mut reads = 0;
                while churning.load(Ordering::SeqCst) {
                    reads += 1;
                    let name = format!("org{}", rng.random_range(0..200));
                    match tenants.header(name.as_str()).await {
                        Ok(value) => {
                            let (owner, _) = owner(value.to_str().unwrap());
                            assert_eq!(owner, name, "{name} was handed {owner}'s token");
                        }
                        // Removed while its request was in flight: refused, never mixed.
                        Err(Error::TenantRemoved { tenant }) => assert_eq!(tenant, name),
                        Err(other) => panic!("{name}: {other:?}"),
                    }
                    tokio::task::yield_now().await;
                }
                reads
            })
        })
        .collect();
    let mut rng = StdRng::seed_from_u64(7);
    for round in 0..4_000 {
        let name = format!("org{}", rng.random_range(0..200));
        if round % 2 == 0 {
            tenants.insert(name.clone(), Org::new(&name, DAY, Mode::Ok));
        } else {
            tenants.remove(name.as_str());
        }
        tokio::task::yield_now().await;
    }
    churning.store(false, Ordering::SeqCst);
    let mut reads = 0;
    for reader in readers {
        reads += reader.await.unwrap();
    }
    assert!(reads >= 8, "the readers read while tenants came and went");
}

#[tokio::test(start_paused = true)]
async fn inserting_and_removing_many_tenants_keeps_the_count() {
    let tenants = tenants();
    for i in 0..20_000 {
        tenants.insert(
            format!("org{i}"),
            Org::new(format!("org{i}"), DAY, Mode::Ok),
        );
    }
    assert_eq!(tenants.len(), 20_000);
    for i in (0..20_000).step_by(2) {
        assert!(tenants.remove(format!("org{i}").as_str()));
    }
    assert_eq!(tenants.len(), 10_000);
    assert_unknown(tenants.header("org0").await, "org0");
    assert_eq!(header(&tenants, "org1").await, "Bearer org1-1");
}

#[tokio::test(start_paused = true)]
async fn a_failed_refresh_of_a_token_nobody_read_holds_no_timer() {
    let alive = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };
    let acme = Org::new("acme", TTL, Mode::Ok);
    let tenants = tenants();
    tenants.insert("acme".to_owned(), acme.clone());
    let cache = tenants.get("acme").unwrap();
    // Fetched, not read: no refresh-ahead timer.
    cache.force_refresh().await.unwrap();
    settle().await;
    assert_eq!(alive(), 0);
    // A refresh of it fails: the cool-down's retry is not armed for a token nobody reads.
    *acme.inner.mode.lock().unwrap() = Mode::Unavailable;
    cache.force_refresh().await.unwrap_err();
    settle().await;
    assert_eq!(alive(), 0, "a timer for an unread token");
    let calls = acme.calls();
    *acme.inner.mode.lock().unwrap() = Mode::Ok;
    // Its first read arms it, and it is refreshed ahead (fresh until 80 s).
    assert_eq!(header(&tenants, "acme").await, "Bearer acme-1");
    assert_eq!(alive(), 1);
    tokio::time::sleep(Duration::from_secs(85)).await;
    assert_eq!(acme.calls(), calls + 1);
    assert_eq!(header(&tenants, "acme").await, "Bearer acme-2");
}

#[tokio::test(start_paused = true)]
async fn idle_loaded_tenants_are_dropped_whole_but_never_one_in_use() {
    let directory = Directory::with(&["acme", "globex", "initech"], DAY);
    let loader = directory.clone();
    let tenants: TenantCache<String> = TenantCache::builder()
        .cache_config(config())
        .idle_eviction(Duration::from_secs(100))
        .drop_idle_tenants(true)
        .resolver(move |name: String| {
            let directory = loader.clone();
            async move {
                directory.calls.fetch_add(1, Ordering::SeqCst);
                Ok::<_, std::io::Error>(directory.orgs.lock().unwrap().get(&name).cloned())
            }
        })
        .build();
    tenants.insert("hooli".to_owned(), Org::new("hooli", DAY, Mode::Ok));
    for name in ["acme", "globex", "initech", "hooli"] {
        header(&tenants, name).await;
    }
    assert_eq!(directory.calls(), 3);
    // A request is using globex's cache (it picked it up and is waiting to send).
    let in_flight = tenants.get("globex").unwrap();
    // Idle past the period: the sweeper runs every 25 s.
    tokio::time::sleep(Duration::from_secs(160)).await;
    assert!(!tenants.contains("acme"), "loaded and idle: dropped");
    assert!(!tenants.contains("initech"));
    assert!(tenants.contains("globex"), "in use: kept");
    assert!(
        tenants.contains("hooli"),
        "inserted by hand: kept (its token dropped)"
    );
    assert!(tenants.get("hooli").unwrap().cached().is_none());
    // The request in flight is served; the dropped tenants load again when asked.
    assert_eq!(in_flight.header().await.unwrap(), "Bearer globex-1");
    assert_eq!(header(&tenants, "acme").await, "Bearer acme-2");
    assert_eq!(directory.calls(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_tenants_the_least_recent_are_dropped_and_no_request_fails() {
    let names: Vec<String> = (0..500).map(|i| format!("org{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let directory = Directory::with(&refs, DAY);
    let loader = directory.clone();
    let tenants: TenantCache<String> = TenantCache::builder()
        .cache_config(config())
        .max_tenants(100)
        .resolver(move |name: String| {
            let directory = loader.clone();
            async move {
                directory.calls.fetch_add(1, Ordering::SeqCst);
                tokio::task::yield_now().await;
                Ok::<_, std::io::Error>(directory.orgs.lock().unwrap().get(&name).cloned())
            }
        })
        .build();
    // Readers of 500 tenants through a map of at most 100: loads and drops all the time,
    // and every read gets its own tenant's token, through `header` or a held cache.
    let readers: Vec<_> = (0..8u64)
        .map(|seed| {
            let tenants = tenants.clone();
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(seed);
                for _ in 0..1_000 {
                    let name = format!("org{}", rng.random_range(0..500));
                    let value = if rng.random_bool(0.5) {
                        tenants.header(name.as_str()).await.unwrap()
                    } else {
                        let cache = tenants.get(name.as_str()).unwrap();
                        tokio::task::yield_now().await;
                        cache.header().await.unwrap()
                    };
                    let (owner, _) = owner(value.to_str().unwrap());
                    assert_eq!(owner, name, "{name} was handed {owner}'s token");
                }
            })
        })
        .collect();
    for reader in readers {
        reader.await.unwrap();
    }
    assert!(tenants.len() <= 100 + 8, "{} tenants kept", tenants.len());
    assert!(
        directory.calls() > 500,
        "tenants were dropped and loaded again"
    );
}

#[tokio::test(start_paused = true)]
async fn ten_thousand_idle_tenants_make_no_background_calls() {
    let orgs: Vec<Org> = (0..10_000)
        .map(|i| Org::new(format!("org{i}"), TTL, Mode::Ok))
        .collect();
    let tenants = tenants();
    for org in &orgs {
        tenants.insert(org.inner.name.clone(), org.clone());
        header(&tenants, &org.inner.name).await; // fetched, then never read again
    }
    header(&tenants, "org0").await; // org0 alone is read during its token's life
    // Past every token's refresh point (80 s) and expiry (90 s).
    tokio::time::sleep(Duration::from_secs(200)).await;
    assert_eq!(orgs[0].calls(), 2, "the read tenant was refreshed ahead");
    for org in &orgs[1..] {
        assert_eq!(
            org.calls(),
            1,
            "{}: an idle tenant made a call",
            org.inner.name
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_tenant_removed_while_it_loads_does_not_come_back() {
    let directory = Directory::with(&["acme"], DAY);
    let tenants = directory.tenants();
    let asking = {
        let tenants = tenants.clone();
        tokio::spawn(async move { tenants.header("acme").await })
    };
    tokio::time::sleep(Duration::from_millis(10)).await; // the lookup takes 50 ms
    assert!(!tenants.remove("acme"), "not in the map yet");
    match asking.await.unwrap() {
        Err(Error::TenantRemoved { tenant }) => assert_eq!(tenant, "acme"),
        other => panic!("{other:?}"),
    }
    assert!(!tenants.contains("acme"), "a removed tenant came back");
    assert_eq!(directory.orgs.lock().unwrap()["acme"].calls(), 0);
    // Asked for again later, it is loaded again.
    assert_eq!(header(&tenants, "acme").await, "Bearer acme-1");
}

#[tokio::test(start_paused = true)]
async fn a_token_rejected_through_a_request_that_began_while_its_tenant_loaded_is_dropped() {
    let directory = Directory::with(&["acme"], DAY);
    let tenants = directory.tenants();
    // Picked up before the tenant is in the map (as the tower layer and the reqwest
    // middleware do): the handle loads the tenant and passes its tokens on.
    let during_load = tenants.get("acme").unwrap();
    assert!(!tenants.contains("acme"));
    let sent = during_load.header().await.unwrap();
    assert_eq!(sent, "Bearer acme-1");
    assert!(tenants.contains("acme"));
    // The API rejects it, and the request is not resent (nothing else is fetched through
    // the handle): the tenant itself no longer serves it.
    assert!(during_load.invalidate(&sent));
    assert_eq!(header(&tenants, "acme").await, "Bearer acme-2");
    assert_eq!(directory.orgs.lock().unwrap()["acme"].calls(), 2);
    // A second report of the same rejection changes nothing.
    assert!(!during_load.invalidate(&sent));
    assert_eq!(header(&tenants, "acme").await, "Bearer acme-2");
    assert_eq!(directory.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_resolver_past_the_refresh_deadline_is_asked_again_by_the_next_request() {
    let directory = Directory::with(&["acme"], DAY);
    directory.hanging.store(true, Ordering::SeqCst);
    let tenants = directory.tenants();
    let error = tenants.header("acme").await.unwrap_err();
    assert!(error.is_retryable(), "{error:?}");
    assert_eq!(directory.calls(), 1);
    // Not held in a cool-down, not remembered: the next request asks at once.
    directory.hanging.store(false, Ordering::SeqCst);
    assert_eq!(header(&tenants, "acme").await, "Bearer acme-1");
    assert_eq!(directory.calls(), 2);
}
