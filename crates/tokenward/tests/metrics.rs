//! The metrics each behaviour moves, seen through a recorder (`metrics-util`'s debugging
//! recorder, installed for the test's thread only). The spans are in `spans.rs`.
//!
//! Each test runs on a current-thread runtime with paused time inside
//! `metrics::with_local_recorder`, so the refresh tasks record to the test's recorder.

mod common;

use std::collections::BTreeMap;
use std::future::Future;

use std::time::{Duration, SystemTime};

use common::pass;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tokenward::metrics::{
    CONSECUTIVE_FAILURES, RATE_LIMIT_END_TIME, REFRESHES, REFRESHES_IN_FLIGHT, TOKEN_EXPIRY_TIME,
    TOKEN_REQUEST_DURATION, TOKEN_REQUESTS,
};
use tokenward::{ClientCredentials, Error, RefreshAhead, TenantCache, TokenCache};
use tokenward_testkit::{FakeServer, Fault};

const SECRET: &str = "svc-Secret-9f2e";

/// Everything recorded: `(name, labels, value)`.
struct Recorded(Vec<(String, BTreeMap<String, String>, DebugValue)>);

impl Recorded {
    fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a DebugValue> + 'a {
        self.0
            .iter()
            .filter(move |(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| v)
    }

    /// The sum of the counters with this name and these labels (among others).
    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.matching(name, labels)
            .map(|v| match v {
                DebugValue::Counter(n) => *n,
                other => panic!("{name} is not a counter: {other:?}"),
            })
            .sum()
    }

    /// The one gauge with this name and these labels.
    fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let values: Vec<f64> = self
            .matching(name, labels)
            .map(|v| match v {
                DebugValue::Gauge(g) => g.0,
                other => panic!("{name} is not a gauge: {other:?}"),
            })
            .collect();
        assert_eq!(values.len(), 1, "{name} {labels:?}: {values:?}");
        values[0]
    }

    /// The samples of the histograms with this name and these labels.
    fn samples(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        self.matching(name, labels)
            .flat_map(|v| match v {
                DebugValue::Histogram(h) => h.iter().map(|x| x.0).collect::<Vec<_>>(),
                other => panic!("{name} is not a histogram: {other:?}"),
            })
            .collect()
    }

    /// Every label of every metric, `key=value`.
    fn all_labels(&self) -> Vec<String> {
        self.0
            .iter()
            .flat_map(|(_, l, _)| l.iter().map(|(k, v)| format!("{k}={v}")))
            .collect()
    }
}

/// Runs `test` on a current-thread runtime with paused time, recording its metrics.
fn recorded<F: Future>(test: impl FnOnce() -> F) -> (F::Output, Recorded) {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    let output = metrics::with_local_recorder(&recorder, || runtime.block_on(test()));
    let all = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let labels = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            (key.name().to_owned(), labels, value)
        })
        .collect();
    (output, Recorded(all))
}

fn server() -> FakeServer {
    FakeServer::builder()
        .client("svc", SECRET)
        .token_lifetime(Duration::from_secs(100))
        .build()
}

fn cache_with(server: &FakeServer, secret: &str) -> TokenCache {
    let grant = ClientCredentials::builder(server.token_url(), "svc")
        .client_secret(secret)
        .http_client(server.http_client())
        .build()
        .unwrap();
    TokenCache::builder(grant)
        .name("billing")
        .refresh_jitter(0.0)
        .refresh_deadline(Duration::from_secs(10))
        .build()
}

const BILLING: (&str, &str) = ("cache", "billing");
const GRANT: (&str, &str) = ("grant", "client_credentials");

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn a_first_token_counts_one_request_one_refresh_and_sets_its_expiry() {
    let server = server();
    let (tokens, m) = recorded(|| async {
        let cache = cache_with(&server, SECRET);
        cache.header().await.unwrap();
        // Fresh reads record nothing more.
        for _ in 0..10 {
            cache.header().await.unwrap();
        }
        server.token_calls()
    });
    assert_eq!(tokens, 1);
    let success = [BILLING, GRANT, ("outcome", "success")];
    assert_eq!(m.counter(TOKEN_REQUESTS, &success), 1);
    assert_eq!(m.counter(TOKEN_REQUESTS, &[]), 1);
    assert_eq!(m.samples(TOKEN_REQUEST_DURATION, &success).len(), 1);
    assert_eq!(m.counter(REFRESHES, &[BILLING, ("reason", "first")]), 1);
    assert_eq!(m.counter(REFRESHES, &[]), 1);
    assert_eq!(m.gauge(REFRESHES_IN_FLIGHT, &[BILLING]), 0.0);
    assert_eq!(m.gauge(CONSECUTIVE_FAILURES, &[BILLING]), 0.0);
    assert_eq!(m.gauge(RATE_LIMIT_END_TIME, &[BILLING]), 0.0);
    let left = m.gauge(TOKEN_EXPIRY_TIME, &[BILLING, GRANT]) - unix_now();
    assert!((95.0..=101.0).contains(&left), "expiry {left} s from now");
}

#[test]
fn a_429_is_counted_and_opens_the_window_on_its_gauge_until_a_success() {
    let server = server();
    let ((), m) = recorded(|| async {
        let cache = cache_with(&server, SECRET);
        server.push_fault(Fault::RateLimited {
            retry_after: Some("30".into()),
        });
        let error = cache.header().await.unwrap_err();
        assert!(matches!(error, Error::RateLimited { .. }), "{error:?}");
    });
    assert_eq!(
        m.counter(TOKEN_REQUESTS, &[BILLING, ("outcome", "rate_limited")]),
        1
    );
    let window = m.gauge(RATE_LIMIT_END_TIME, &[BILLING]) - unix_now();
    assert!((25.0..=31.0).contains(&window), "window ends in {window} s");
    assert_eq!(m.gauge(CONSECUTIVE_FAILURES, &[BILLING]), 1.0);

    // After the window, a success closes it.
    let server = self::server();
    let ((), m) = recorded(|| async {
        let cache = cache_with(&server, SECRET);
        server.push_fault(Fault::RateLimited {
            retry_after: Some("30".into()),
        });
        cache.header().await.unwrap_err();
        pass(Duration::from_secs(31)).await;
        cache.header().await.unwrap();
    });
    assert_eq!(m.gauge(RATE_LIMIT_END_TIME, &[BILLING]), 0.0);
    assert_eq!(m.gauge(CONSECUTIVE_FAILURES, &[BILLING]), 0.0);
    assert_eq!(m.counter(REFRESHES, &[("reason", "first")]), 2);
}

#[test]
fn server_errors_count_each_attempt_of_one_refresh() {
    let server = server();
    let ((), m) = recorded(|| async {
        let cache = cache_with(&server, SECRET);
        server.push_faults(Fault::Status(503), 2);
        cache.header().await.unwrap();
    });
    assert_eq!(
        m.counter(TOKEN_REQUESTS, &[BILLING, ("outcome", "server_error")]),
        2
    );
    assert_eq!(
        m.counter(TOKEN_REQUESTS, &[BILLING, ("outcome", "success")]),
        1
    );
    assert_eq!(m.samples(TOKEN_REQUEST_DURATION, &[BILLING]).len(), 3);
    assert_eq!(m.counter(REFRESHES, &[]), 1);
    assert_eq!(m.gauge(CONSECUTIVE_FAILURES, &[BILLING]), 0.0);
}

#[test]
fn a_wrong_secret_counts_invalid_client_and_a_failure() {
    let server = server();
    let ((), m) = recorded(|| async {
        let cache = cache_with(&server, "not-the-secret");
        let error = cache.header().await.unwrap_err();
        assert!(matches!(error, Error::InvalidClient(_)), "{error:?}");
    });
    assert_eq!(
        m.counter(TOKEN_REQUESTS, &[BILLING, ("outcome", "invalid_client")]),
        1
    );
    assert_eq!(m.counter(TOKEN_REQUESTS, &[("outcome", "success")]), 0);
    assert_eq!(m.gauge(CONSECUTIVE_FAILURES, &[BILLING]), 1.0);
}

#[test]
fn a_hung_endpoint_counts_a_timeout() {
    let server = server();
    let ((), m) = recorded(|| async {
        let cache = cache_with(&server, SECRET);
        server.push_fault(Fault::Hang);
        let error = cache.header().await.unwrap_err();
        assert!(matches!(error, Error::Timeout(_)), "{error:?}");
    });
    assert_eq!(
        m.counter(TOKEN_REQUESTS, &[BILLING, ("outcome", "timeout")]),
        1
    );
    assert_eq!(m.gauge(REFRESHES_IN_FLIGHT, &[BILLING]), 0.0);
}

#[test]
fn refreshes_are_counted_by_reason() {
    let server = server();
    let ((), m) = recorded(|| async {
        let grant = ClientCredentials::builder(server.token_url(), "svc")
            .client_secret(SECRET)
            .http_client(server.http_client())
            .build()
            .unwrap();
        let cache = TokenCache::builder(grant)
            .name("billing")
            .refresh_jitter(0.0)
            .refresh_ahead(RefreshAhead::OnDemand)
            .build();
        let first = cache.header().await.unwrap();
        cache.force_refresh().await.unwrap();
        // The API rejected the token: the next one is obtained for that reason.
        let current = cache.header().await.unwrap();
        assert_ne!(current, first);
        cache.replace_rejected(&current).await.unwrap().unwrap();
        // Past 80 % of the lifetime, a read starts the refresh in the background.
        pass(Duration::from_secs(81)).await;
        cache.header().await.unwrap();
        pass(Duration::from_secs(1)).await;
        // Past the expiry, with nobody reading: the next read waits for an `expired` one.
        pass(Duration::from_secs(101)).await;
        cache.header().await.unwrap();
    });
    for reason in ["first", "forced", "rejected"] {
        assert_eq!(
            m.counter(REFRESHES, &[BILLING, GRANT, ("reason", reason)]),
            1,
            "{reason}"
        );
    }
    assert_eq!(m.counter(REFRESHES, &[("reason", "stale")]), 1);
    assert_eq!(m.counter(REFRESHES, &[("reason", "expired")]), 1);
}

#[test]
fn tenants_share_a_cache_label_and_get_a_tenant_label_only_when_asked() {
    let server = server();
    let grant = |server: &FakeServer| {
        ClientCredentials::builder(server.token_url(), "svc")
            .client_secret(SECRET)
            .http_client(server.http_client())
            .build()
            .unwrap()
    };
    let ((), m) = recorded(|| async {
        let tenants = TenantCache::new();
        tenants.insert("acme".to_owned(), grant(&server));
        tenants.insert("globex".to_owned(), grant(&server));
        tenants.header("acme").await.unwrap();
        tenants.header("globex").await.unwrap();
    });
    assert_eq!(
        m.counter(
            TOKEN_REQUESTS,
            &[("cache", "tenants"), ("outcome", "success")]
        ),
        2
    );
    assert!(
        m.all_labels().iter().all(|l| !l.starts_with("tenant=")),
        "{:?}",
        m.all_labels()
    );

    let ((), m) = recorded(|| async {
        let tenants = TenantCache::builder()
            .name("orgs")
            .tenant_label(true)
            .tenant("acme".to_owned(), grant(&server))
            .build();
        tenants.insert("globex".to_owned(), grant(&server));
        tenants.header("acme").await.unwrap();
        tenants.header("globex").await.unwrap();
    });
    for tenant in ["acme", "globex"] {
        assert_eq!(
            m.counter(
                TOKEN_REQUESTS,
                &[
                    ("cache", "orgs"),
                    ("tenant", tenant),
                    ("outcome", "success")
                ]
            ),
            1,
            "{tenant}"
        );
    }
}

#[test]
fn no_label_carries_a_secret_or_a_token() {
    let server = server();
    let (tokens, m) = recorded(|| async {
        let cache = cache_with(&server, SECRET);
        let mut seen = vec![cache.header().await.unwrap()];
        server.push_fault(Fault::InvalidClient);
        seen.push(
            cache
                .force_refresh()
                .await
                .map_or(seen[0].clone(), |t| t.header_value().clone()),
        );
        seen.push(cache.force_refresh().await.unwrap().header_value().clone());
        seen
    });
    let labels = m.all_labels();
    assert!(!labels.is_empty());
    for label in &labels {
        assert!(!label.contains(SECRET), "{label}");
        assert!(!label.contains("at_"), "{label}");
        for token in &tokens {
            let token = token.to_str().unwrap().trim_start_matches("Bearer ");
            assert!(!label.contains(token), "{label}");
        }
    }
}
