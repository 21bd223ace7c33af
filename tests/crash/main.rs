//! SIGKILL at random points during refresh and persist, many times over; after each kill a
//! new process starts from the grant file and must refresh successfully against the fake
//! server, which rotates refresh tokens and revokes the whole grant on reuse.
//!
//! The server accepts the immediately previous refresh token for a grace period after a
//! rotation (as Okta's grace period and Auth0's reuse interval do): a kill that lands after
//! the server rotated but before the new token reached the disk can only be survived that
//! way — the new token existed only in the killed process. What tokenward guarantees, and
//! this test proves, is that the file never holds anything older than that: it is never
//! torn, never corrupt, and never two rotations behind.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use rand::RngExt as _;
use tokenward::store::{FileStore, StoredGrant, TokenStore};
use tokenward_testkit::FakeServer;

fn iterations() -> u32 {
    std::env::var("TOKENWARD_CRASH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_refresh_and_persist_never_loses_the_grant() {
    let server = FakeServer::builder()
        .client("crash-client", "crash-secret")
        .refresh_token_grace(Duration::from_secs(60))
        .build();
    let running = server.listen().await.unwrap();
    let dir = std::env::temp_dir().join(format!("tokenward-crash-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("grant.json");
    let seed = server.issue_refresh_token("crash-client", "jobs.read");
    FileStore::new(&path)
        .compare_and_swap(None, StoredGrant::new(seed))
        .await
        .unwrap();

    let child = env!("CARGO_BIN_EXE_crash_child");
    let token_url = running.token_url();
    let path_arg = path.to_string_lossy().into_owned();
    let n = iterations();
    let mut killed = 0u32;
    for i in 0..n {
        let delay = Duration::from_micros(rand::rng().random_range(0..20_000));
        let (url, file) = (token_url.clone(), path_arg.clone());
        let early = tokio::task::spawn_blocking(move || {
            let mut process = Command::new(child)
                .args([url.as_str(), file.as_str(), "loop"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let mut ready = String::new();
            BufReader::new(process.stdout.take().unwrap())
                .read_line(&mut ready)
                .unwrap();
            assert_eq!(ready.trim(), "ready");
            std::thread::sleep(delay);
            let early = process.try_wait().unwrap();
            process.kill().unwrap(); // SIGKILL
            process.wait().unwrap();
            early
        })
        .await
        .unwrap();
        if let Some(status) = early {
            panic!("iteration {i}: the refreshing process failed on its own ({status})");
        }
        killed += 1;

        // A new process, from the file alone, must refresh.
        let (url, file) = (token_url.clone(), path_arg.clone());
        let out = tokio::task::spawn_blocking(move || {
            Command::new(child)
                .args([url.as_str(), file.as_str(), "once"])
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        assert!(
            out.status.success(),
            "iteration {i}: recovery failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let c = server.counters();
    eprintln!(
        "crash test: {n} iterations, {killed} SIGKILLs; refresh tokens rotated {}; \
         kills that landed after the server rotated but before the file was replaced (survived \
         through the server's grace for the previous token): {}; reuse detected: {}",
        c.issued_for("refresh_token"),
        c.refresh_grace_used,
        c.refresh_reuse_detected
    );
    assert_eq!(
        c.refresh_reuse_detected, 0,
        "no refresh token older than the previous was ever sent"
    );
    assert!(
        c.issued_for("refresh_token") >= u64::from(n),
        "every recovery refreshed"
    );
    // The file is whole, and no temporary file is left behind by the killed writers.
    assert!(FileStore::new(&path).load().await.unwrap().is_some());
    let leftovers = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".tmp-")
        })
        .count();
    assert_eq!(leftovers, 0, "no temporary files left");
    drop(running);
    std::fs::remove_dir_all(&dir).unwrap();
}
