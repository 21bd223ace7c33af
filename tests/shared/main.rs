//! Processes sharing one rotating grant through a `FileStore` never replay a rotated refresh
//! token: 4 OS processes, 25 callers each, 4 s tokens, for 8 s (three refresh periods),
//! against the fake server (rotation on every refresh, no reuse grace: a replay revokes the
//! whole grant).

use std::process::Command;
use std::time::Duration;

use tokenward::store::{FileStore, StoredGrant, TokenStore};
use tokenward_testkit::FakeServer;

const PROCESSES: usize = 4;
const SECONDS: u64 = 8;
const LIFETIME: Duration = Duration::from_secs(4);

struct Run {
    token_calls: u64,
    reuse_detected: u64,
    failed_processes: Vec<String>,
}

async fn run(mode: &str) -> Run {
    let server = FakeServer::builder()
        .client("share-client", "share-secret")
        .token_lifetime(LIFETIME)
        .build();
    let running = server.listen().await.unwrap();
    let dir = std::env::temp_dir().join(format!(
        "tokenward-shared-{mode}-{}-{:x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("grant.json");
    let seed = server.issue_refresh_token("share-client", "jobs.read");
    FileStore::new(&path)
        .compare_and_swap(None, StoredGrant::new(seed))
        .await
        .unwrap();

    let child = env!("CARGO_BIN_EXE_share_child");
    let (url, file, mode_arg) = (
        running.token_url(),
        path.to_string_lossy().into_owned(),
        mode.to_owned(),
    );
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            Command::new(child)
                .args([&url, &file, &mode_arg, &SECONDS.to_string(), "25"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs = tokenward_tests::outputs(children).await;
    let failed_processes = outputs
        .iter()
        .filter(|o| !o.status.success())
        .map(|o| {
            format!(
                "{}: {}{}",
                o.status,
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
                    .lines()
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" / ")
            )
        })
        .collect();
    std::fs::remove_dir_all(&dir).unwrap();
    let counters = server.counters();
    Run {
        token_calls: counters.issued_for("refresh_token"),
        reuse_detected: counters.refresh_reuse_detected,
        failed_processes,
    }
}

/// The refresh periods in the run: the first token, then one every 0.8 × lifetime (less
/// up to 5% jitter).
fn periods() -> u64 {
    let period = LIFETIME.as_secs_f64() * 0.8 * 0.95;
    1 + (SECONDS as f64 / period).floor() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_sharing_the_access_token_make_one_call_per_refresh_period() {
    let run = run("share").await;
    eprintln!(
        "{PROCESSES} processes, access token shared: {} token calls for {} refresh periods",
        run.token_calls,
        periods()
    );
    assert!(
        run.failed_processes.is_empty(),
        "{:?}",
        run.failed_processes
    );
    assert_eq!(
        run.reuse_detected, 0,
        "a rotated refresh token was replayed"
    );
    assert!(
        run.token_calls <= periods() + 1,
        "{} token calls for {} periods (ideal: one each, not {PROCESSES}×)",
        run.token_calls,
        periods()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_sharing_only_the_grant_refresh_in_turn_and_never_replay() {
    let run = run("lock").await;
    eprintln!(
        "{PROCESSES} processes, grant shared, access token not: {} token calls for {} refresh periods",
        run.token_calls,
        periods()
    );
    assert!(
        run.failed_processes.is_empty(),
        "{:?}",
        run.failed_processes
    );
    assert_eq!(
        run.reuse_detected, 0,
        "a rotated refresh token was replayed"
    );
    assert!(run.token_calls >= periods(), "every process refreshes");
}
