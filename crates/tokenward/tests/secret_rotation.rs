//! Client secret rotation under continuous traffic: deploy new, reload, verify, revoke old —
//! in either order — with zero failed requests. Paused time, in-process testkit server.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::settle;
use tokenward::{Action, ClientCredentials, Error, HttpClient, TokenCache};
use tokenward_testkit::FakeServer;
use tokio::time::{Instant, sleep_until};

const OLD: &str = "old-secret-1a2b";
const NEW: &str = "new-secret-3c4d";

struct Traffic {
    ok: AtomicU64,
    failed: AtomicU64,
}

/// One request to the protected resource, with the 401 refresh-and-retry-once.
async fn call(server: &FakeServer, cache: &TokenCache) -> bool {
    let client = server.http_client();
    let send = |auth: http::HeaderValue| {
        let request = http::Request::get(server.resource_url())
            .header(http::header::AUTHORIZATION, auth)
            .body(Bytes::new())
            .unwrap();
        client.send(request)
    };
    let Ok(auth) = cache.header().await else {
        return false;
    };
    let Ok(response) = send(auth.clone()).await else {
        return false;
    };
    if response.status().is_success() {
        return true;
    }
    let action = tokenward::classify(response.status(), response.headers(), None).map(|c| c.action);
    if action != Some(Action::RefreshAndRetryOnce) {
        return false;
    }
    cache.invalidate(&auth);
    match cache.header().await {
        Ok(fresh) => send(fresh).await.is_ok_and(|r| r.status().is_success()),
        Err(_) => false,
    }
}

/// Runs 20 clients, one request each per 100 ms, for `run_for` (paused time), while
/// `script` runs; returns (ok, failed).
async fn with_traffic<F, Fut>(
    server: &FakeServer,
    cache: &TokenCache,
    run_for: Duration,
    script: F,
) -> (u64, u64)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let traffic = Arc::new(Traffic {
        ok: AtomicU64::new(0),
        failed: AtomicU64::new(0),
    });
    let end = Instant::now() + run_for;
    let clients: Vec<_> = (0..20)
        .map(|i| {
            let (server, cache, traffic) = (server.clone(), cache.clone(), Arc::clone(&traffic));
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(i * 5)).await;
                while Instant::now() < end {
                    let counter = if call(&server, &cache).await {
                        &traffic.ok
                    } else {
                        &traffic.failed
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        })
        .collect();
    script().await;
    for c in clients {
        c.await.unwrap();
    }
    (
        traffic.ok.load(Ordering::Relaxed),
        traffic.failed.load(Ordering::Relaxed),
    )
}

fn setup() -> (FakeServer, Arc<ClientCredentials>, TokenCache) {
    let server = FakeServer::builder()
        .client("svc", OLD)
        .token_lifetime(Duration::from_secs(10))
        .build();
    let grant = Arc::new(
        ClientCredentials::builder(server.token_url(), "svc")
            .client_secret(OLD)
            .http_client(server.http_client())
            .build()
            .unwrap(),
    );
    let cache = TokenCache::builder(Arc::clone(&grant))
        .clock_skew(Duration::from_secs(1))
        .build();
    (server, grant, cache)
}

#[tokio::test(start_paused = true)]
async fn rotation_server_first_drops_no_request() {
    let (server, grant, cache) = setup();
    let t0 = Instant::now();
    let at = |s: u64| sleep_until(t0 + Duration::from_secs(s));
    let (ok, failed) = with_traffic(&server, &cache, Duration::from_secs(120), || async {
        at(10).await;
        server.add_client_secret("svc", NEW); // 1. deploy new at the server
        at(20).await;
        grant.client_secret().rotate(NEW, Duration::from_secs(300)); // 2. reload
        at(25).await;
        grant.verify(Some(&server.resource_url())).await.unwrap(); // 3. verify
        at(30).await;
        assert!(server.remove_client_secret("svc", OLD)); // 4. revoke old
    })
    .await;
    assert_eq!(failed, 0, "failed requests during the rotation ({ok} ok)");
    assert!(ok > 20_000, "traffic ran throughout: {ok}");
    // Tokens kept being refreshed with the new secret after the old one was revoked.
    assert!(server.counters().issued > 10);
    assert!(server.last_token_request().is_some());
}

#[tokio::test(start_paused = true)]
async fn rotation_app_first_falls_back_during_the_overlap_and_drops_no_request() {
    let (server, grant, cache) = setup();
    let t0 = Instant::now();
    let at = |s: u64| sleep_until(t0 + Duration::from_secs(s));
    let (ok, failed) = with_traffic(&server, &cache, Duration::from_secs(120), || async {
        at(10).await;
        grant.client_secret().rotate(NEW, Duration::from_secs(300)); // the app learns it first
        at(20).await;
        // Not yet at the server: verification says so (it never falls back)...
        let err = grant.verify(None).await.unwrap_err();
        assert!(matches!(err, Error::InvalidClient(_)), "{err:?}");
        at(30).await;
        server.add_client_secret("svc", NEW);
        at(40).await;
        grant.verify(Some(&server.resource_url())).await.unwrap();
        at(50).await;
        assert!(server.remove_client_secret("svc", OLD));
    })
    .await;
    assert_eq!(failed, 0, "failed requests during the rotation ({ok} ok)");
    assert!(ok > 20_000, "traffic ran throughout: {ok}");
}

#[tokio::test(start_paused = true)]
async fn the_fallback_ends_with_the_overlap_window() {
    let (_server, grant, cache) = setup();
    cache.token().await.unwrap();
    grant.client_secret().rotate(NEW, Duration::from_secs(5));
    cache.force_refresh().await.unwrap(); // falls back to the old secret
    tokio::time::advance(Duration::from_secs(6)).await;
    settle().await;
    assert!(!grant.client_secret().in_overlap());
    let err = cache.force_refresh().await.unwrap_err();
    assert!(matches!(err, Error::InvalidClient(_)), "{err:?}");
    assert!(!err.to_string().contains(NEW) && !err.to_string().contains(OLD));
}

#[tokio::test(start_paused = true)]
async fn reload_from_a_secret_file() {
    let (server, grant, cache) = setup();
    let dir = std::env::temp_dir().join(format!("tokenward-secret-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("client_secret");
    let secret = grant.client_secret();

    std::fs::write(&path, format!("{OLD}\n")).unwrap();
    assert!(
        !secret
            .reload_from_file(&path, Duration::from_secs(60))
            .unwrap(),
        "unchanged"
    );
    std::fs::write(&path, format!("  {NEW}\n")).unwrap();
    server.add_client_secret("svc", NEW);
    assert!(
        secret
            .reload_from_file(&path, Duration::from_secs(60))
            .unwrap()
    );
    assert!(secret.in_overlap());
    grant.verify(None).await.unwrap();
    server.remove_client_secret("svc", OLD);
    cache.force_refresh().await.unwrap();

    std::fs::write(&path, "\n").unwrap();
    let err = secret
        .reload_from_file(&path, Duration::from_secs(60))
        .unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
    let err = secret
        .reload_from_file(&dir.join("missing"), Duration::from_secs(60))
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)));
    cache.force_refresh().await.unwrap(); // a failed reload changed nothing
    assert!(!format!("{secret:?}").contains(NEW));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[cfg(all(unix, feature = "sighup"))]
#[tokio::test]
async fn sighup_reloads_the_secret_file() {
    let (_server, grant, _cache) = setup();
    let dir = std::env::temp_dir().join(format!("tokenward-sighup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("client_secret");
    std::fs::write(&path, NEW).unwrap();
    let secret = grant.client_secret();
    let task =
        tokenward::secret::spawn_reload_on_sighup(secret.clone(), &path, Duration::from_secs(60))
            .unwrap();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // Wait (bounded) for the handler to run.
    for _ in 0..200 {
        if secret.in_overlap() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(secret.in_overlap(), "the SIGHUP reload rotated the secret");
    task.abort();
    std::fs::remove_dir_all(&dir).unwrap();
}
