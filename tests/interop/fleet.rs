//! Processes sharing one grant against oidc-provider (rotation on, no reuse grace): two
//! `fleet_child` processes on one grant file, and two on one Redis, 25 callers each, through
//! `AuthLayer` and `AuthMiddleware`, for several refresh periods. No refresh token is ever
//! presented twice, and no request fails.

use std::process::{Command, Stdio};

use secrecy::ExposeSecret;
use tokenward::store::{FileStore, TokenStore};
use tokenward::store_refresh_token;
use tokenward_redis::{EncryptionKey, RedisStore};
use tokenward_testkit::RedisServer;

use crate::harness::{Provider, http};

const ACCESS_TOKEN_TTL: u64 = 3;
const SECONDS: u64 = 8;

/// Runs two processes with `configure`d stores against a freshly authorized grant, seeded
/// into `store`, and checks the server's counters.
async fn two_processes(op: &Provider, store: &dyn TokenStore, configure: impl Fn(&mut Command)) {
    let http = http();
    let token = op.authorize(&http).await;
    store_refresh_token(&token, store).await.unwrap();

    let child = env!("CARGO_BIN_EXE_fleet_child");
    let mut children: Vec<_> = ["tower", "reqwest"]
        .into_iter()
        .map(|via| {
            let mut command = Command::new(child);
            command
                .args([
                    via,
                    &op.token_endpoint,
                    &op.resource,
                    &SECONDS.to_string(),
                    "25",
                ])
                .env("FLEET_CLIENT_ID", &op.web.id)
                .env("FLEET_CLIENT_SECRET", &op.web.secret)
                .env("FLEET_PAUSE_MS", "100")
                .env("FLEET_BARRIER", "1")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            configure(&mut command);
            command.spawn().unwrap()
        })
        .collect();
    tokenward_tests::release_barrier(&mut children);
    let outputs = tokenward_tests::outputs(children).await;
    let stats = op.stats(&http).await;
    for output in &outputs {
        eprintln!("{}", String::from_utf8_lossy(&output.stdout).trim());
    }
    eprintln!("server counters: {stats:?}");
    for output in &outputs {
        assert!(
            output.status.success(),
            "{}: {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert_eq!(stats.refresh_token_reuse(), 0, "{}", op.stderr());
    assert_eq!(stats.grant_errors("invalid_grant"), 0);
    assert_eq!(stats.grants_revoked(), 0);
    let rotations = stats.grants("refresh_token");
    assert!(rotations >= 2, "{rotations} refreshes in {SECONDS} s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_grant_file_never_replay_a_rotated_refresh_token() {
    let op = Provider::start(ACCESS_TOKEN_TTL);
    let dir = std::env::temp_dir().join(format!(
        "tokenward-interop-fleet-{}-{:x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("grant.json");
    two_processes(&op, &FileStore::new(&path), |command| {
        command.env("FLEET_STORE", "file").env("FLEET_FILE", &path);
    })
    .await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_redis_never_replay_a_rotated_refresh_token() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let op = Provider::start(ACCESS_TOKEN_TTL);
    let key = EncryptionKey::generate();
    let store = RedisStore::builder(redis.url(), "interop")
        .encryption_key(EncryptionKey::from_base64(key.to_base64().expose_secret()).unwrap())
        .build()
        .unwrap();
    two_processes(&op, &store, |command| {
        command
            .env("FLEET_STORE", "redis")
            .env("FLEET_REDIS_URL", redis.url())
            .env("FLEET_NAME", "interop")
            .env("FLEET_KEY", key.to_base64().expose_secret())
            .env("FLEET_LOCK_TTL_MS", "60000");
    })
    .await;
}
