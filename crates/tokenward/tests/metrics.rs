//! The metrics each behaviour moves, seen through a recorder (`metrics-util`'s debugging
//! recorder, installed for the test's thread only). The spans are in `tests/spans`.
//!
//! Each test runs on a current-thread runtime with paused time inside the testkit's
//! `metrics::record`, so the refresh tasks record to the test's recorder.

mod common;

use std::future::Future;

use std::time::{Duration, SystemTime};

use common::pass;
use tokenward::metrics::{
    CONSECUTIVE_FAILURES, RATE_LIMIT_END_TIME, REFRESHES, REFRESHES_IN_FLIGHT, TOKEN_EXPIRY_TIME,
    TOKEN_REQUEST_DURATION, TOKEN_REQUESTS,
};
use tokenward::{ClientCredentials, Error, RefreshAhead, TenantCache, TokenCache};
use tokenward_testkit::metrics::{Recorded, record};
use tokenward_testkit::{FakeServer, Fault};

const SECRET: &str = "svc-Secret-9f2e";

/// Runs `test` on a current-thread runtime with paused time, recording its metrics.
fn recorded<F: Future>(test: impl FnOnce() -> F) -> (F::Output, Recorded) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    record(|| runtime.block_on(test()))
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

/// As [`cache_with`], refreshed only when a read finds the token stale or expired.
fn on_demand(server: &FakeServer) -> TokenCache {
    let grant = ClientCredentials::builder(server.token_url(), "svc")
        .client_secret(SECRET)
        .http_client(server.http_client())
        .build()
        .unwrap();
    TokenCache::builder(grant)
        .name("billing")
        .refresh_jitter(0.0)
        .refresh_ahead(RefreshAhead::OnDemand)
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
        let cache = on_demand(&server);
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
        m.labels().iter().all(|l| !l.starts_with("tenant=")),
        "{:?}",
        m.labels()
    );
    // Tenants that share their labels set no per-cache gauge: it would show the last one.
    assert!(
        !m.names().contains(&TOKEN_EXPIRY_TIME) && !m.names().contains(&CONSECUTIVE_FAILURES),
        "{m:?}"
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
        assert_eq!(
            m.gauge(
                CONSECUTIVE_FAILURES,
                &[("cache", "orgs"), ("tenant", tenant)]
            ),
            0.0
        );
    }
}

#[test]
fn a_tenant_loaded_on_demand_counts_its_token_request_once() {
    let server = server();
    let url = server.token_url();
    let http = server.http_client();
    let ((), m) = recorded(|| async {
        let tenants = TenantCache::builder()
            .tenant_label(true)
            .resolver(move |_name: String| {
                let (url, http) = (url.clone(), http.clone());
                async move {
                    Ok::<_, std::io::Error>(Some(
                        ClientCredentials::builder(url, "svc")
                            .client_secret(SECRET)
                            .http_client(http)
                            .build()
                            .unwrap(),
                    ))
                }
            })
            .build();
        // Ten requests that arrive while the tenant loads, then one after.
        let asks: Vec<_> = (0..10)
            .map(|_| {
                let tenants = tenants.clone();
                tokio::spawn(async move { tenants.header("acme").await.unwrap() })
            })
            .collect();
        for ask in asks {
            ask.await.unwrap();
        }
        tenants.header("acme").await.unwrap();
    });
    assert_eq!(server.token_calls(), 1);
    // The load passes the tenant's token on: only the tenant's own cache counts it.
    assert_eq!(
        m.counter(TOKEN_REQUESTS, &[("cache", "tenants")]),
        1,
        "{m:?}"
    );
    assert_eq!(
        m.counter(
            TOKEN_REQUESTS,
            &[("tenant", "acme"), ("outcome", "success")]
        ),
        1
    );
    assert_eq!(m.counter(REFRESHES, &[("cache", "tenants")]), 1, "{m:?}");
    assert_eq!(
        m.gauge(
            REFRESHES_IN_FLIGHT,
            &[("cache", "tenants"), ("tenant", "acme")]
        ),
        0.0
    );
}

#[test]
fn a_load_that_fails_is_counted_where_it_shows() {
    let ((), m) = recorded(|| async {
        let tenants: TenantCache<String> = TenantCache::builder()
            .tenant_label(true)
            .resolver(|name: String| async move {
                if name == "acme" {
                    Err(std::io::Error::other("the directory is down"))
                } else {
                    Ok(None::<ClientCredentials>)
                }
            })
            .build();
        let error = tenants.header("acme").await.unwrap_err();
        assert!(matches!(error, Error::TenantResolver { .. }), "{error:?}");
        let error = tenants.header("nobody").await.unwrap_err();
        assert!(matches!(error, Error::UnknownTenant { .. }), "{error:?}");
    });
    assert_eq!(
        m.counter(
            TOKEN_REQUESTS,
            &[("cache", "tenants"), ("outcome", "tenant_resolver")]
        ),
        1,
        "{m:?}"
    );
    assert_eq!(
        m.counter(
            TOKEN_REQUESTS,
            &[("cache", "tenants"), ("outcome", "tenant")]
        ),
        1,
        "{m:?}"
    );
    // No series for a key nobody configured, and no refresh counted for a load.
    assert!(
        m.labels().iter().all(|l| !l.starts_with("tenant=")),
        "{:?}",
        m.labels()
    );
    assert_eq!(m.counter(REFRESHES, &[]), 0, "{m:?}");
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
    let labels = m.labels();
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

#[test]
fn a_refresh_grant_sets_when_its_refresh_token_was_last_used() {
    use tokenward::RefreshTokenGrant;
    use tokenward::decay::ManualClock;
    use tokenward::metrics::REFRESH_TOKEN_LAST_USED_TIME;
    use tokenward::store::MemoryStore;

    const DAY: Duration = Duration::from_secs(86_400);
    let server = server();
    let clock = ManualClock::new(SystemTime::UNIX_EPOCH + 20_000 * DAY);
    let seed = server.issue_refresh_token("svc", "");
    let ((), m) = recorded(|| async {
        let grant = RefreshTokenGrant::from_store(
            server.token_url(),
            "svc",
            MemoryStore::with_refresh_token(seed),
        )
        .client_secret(SECRET)
        .http_client(server.http_client())
        .wall_clock(clock.clone())
        .build()
        .unwrap();
        let cache = TokenCache::builder(grant).name("crm").build();
        cache.header().await.unwrap();
    });
    let labels = [("cache", "crm"), ("grant", "refresh_token")];
    assert_eq!(
        m.gauge(REFRESH_TOKEN_LAST_USED_TIME, &labels),
        (20_000 * DAY).as_secs_f64()
    );
    assert_eq!(
        m.counter(
            TOKEN_REQUESTS,
            &[("grant", "refresh_token"), ("outcome", "success")]
        ),
        1
    );
}

#[test]
fn each_failure_is_counted_under_its_outcome() {
    let cases: [(&str, Option<Fault>, Option<&str>); 4] = [
        ("invalid_grant", Some(Fault::InvalidGrant), None),
        ("transport", Some(Fault::ConnectionReset), None),
        ("server_error", Some(Fault::TemporarilyUnavailable), None),
        ("insufficient_scope", None, Some("jobs.admin")),
    ];
    for (outcome, fault, require) in cases {
        let server = FakeServer::builder()
            .client("svc", SECRET)
            .client_scopes("svc", "jobs.read")
            .build();
        let ((), m) = recorded(|| async {
            let mut grant = ClientCredentials::builder(server.token_url(), "svc")
                .client_secret(SECRET)
                .scope("jobs.read")
                .http_client(server.http_client());
            if let Some(scopes) = require {
                grant = grant.require_scopes(scopes);
            }
            let cache = TokenCache::builder(grant.build().unwrap())
                .name("billing")
                .max_attempts(1)
                .build();
            if let Some(fault) = fault {
                server.push_fault(fault);
            }
            cache.header().await.unwrap_err();
        });
        assert_eq!(
            m.counter(TOKEN_REQUESTS, &[BILLING, ("outcome", outcome)]),
            1,
            "{outcome}: {m:?}"
        );
        assert_eq!(m.counter(TOKEN_REQUESTS, &[]), 1, "{outcome}");
        assert_eq!(m.gauge(CONSECUTIVE_FAILURES, &[BILLING]), 1.0, "{outcome}");
    }
}

#[test]
fn a_refresh_that_is_running_shows_in_flight() {
    let server = server();
    let ((), m) = recorded(|| async {
        let cache = cache_with(&server, SECRET);
        server.push_fault(Fault::Hang);
        let waiting = tokio::spawn(async move { cache.header().await });
        pass(Duration::from_secs(1)).await;
        assert!(!waiting.is_finished());
        // The snapshot is taken with the refresh still running.
    });
    assert_eq!(m.gauge(REFRESHES_IN_FLIGHT, &[BILLING]), 1.0);
    assert_eq!(m.counter(REFRESHES, &[("reason", "first")]), 1);
    assert_eq!(m.counter(TOKEN_REQUESTS, &[]), 0, "no request has ended");
}

#[test]
fn a_rejection_labels_only_the_refresh_it_causes() {
    let server = server();
    let ((), m) = recorded(|| async {
        let cache = on_demand(&server);
        let first = cache.header().await.unwrap();
        // Dropped for a rejection, then refreshed by force before any read: that refresh
        // is the forced one, and the rejection labels no later refresh.
        assert!(cache.invalidate(&first));
        cache.force_refresh().await.unwrap();
        pass(Duration::from_secs(101)).await;
        cache.header().await.unwrap();
    });
    assert_eq!(m.counter(REFRESHES, &[("reason", "first")]), 1);
    assert_eq!(m.counter(REFRESHES, &[("reason", "forced")]), 1);
    assert_eq!(m.counter(REFRESHES, &[("reason", "expired")]), 1);
    assert_eq!(m.counter(REFRESHES, &[("reason", "rejected")]), 0);
}

#[test]
fn a_refresh_aborted_with_its_runtime_is_counted_as_aborted_and_its_gauges_follow() {
    let server = server();
    let ((), m) = record(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async {
            let cache = cache_with(&server, SECRET);
            server.push_fault(Fault::Hang);
            tokio::spawn(async move { cache.header().await });
            pass(Duration::from_secs(1)).await;
        });
        // The runtime shuts down with the refresh running: its task is dropped here.
        drop(runtime);
    });
    assert_eq!(
        m.counter(TOKEN_REQUESTS, &[BILLING, ("outcome", "aborted")]),
        1
    );
    assert_eq!(m.counter(TOKEN_REQUESTS, &[("outcome", "timeout")]), 0);
    assert_eq!(m.gauge(REFRESHES_IN_FLIGHT, &[BILLING]), 0.0);
    assert_eq!(m.gauge(CONSECUTIVE_FAILURES, &[BILLING]), 1.0);
}
