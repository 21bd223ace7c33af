//! The fleet runner, shared by the fleet tests and the fleet benchmark: OS processes
//! (`fleet_child`), half sending through `AuthLayer`, half through `AuthMiddleware`, sharing
//! one rotating grant through Redis or a grant file, against the fake server over loopback.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use secrecy::ExposeSecret;
use tokenward::store::{FileStore, StoredGrant, TokenStore};
use tokenward_redis::{EncryptionKey, RedisStore};
use tokenward_testkit::{FakeServer, Fault, RedisServer};

pub(crate) const CLIENT_ID: &str = "fleet-client";
pub(crate) const CLIENT_SECRET: &str = "fleet-secret";
pub(crate) const LIFETIME: Duration = Duration::from_secs(4);
pub(crate) const SECONDS: u64 = 9;
pub(crate) const CALLERS: usize = 6;

pub(crate) enum Shared<'a> {
    Redis {
        redis: &'a RedisServer,
        name: String,
        key: EncryptionKey,
        lock_ttl: Duration,
    },
    File {
        dir: PathBuf,
    },
}

impl Shared<'_> {
    pub(crate) fn redis(redis: &RedisServer, lock_ttl: Duration) -> Shared<'_> {
        Shared::Redis {
            redis,
            name: format!("fleet-{:x}", rand::random::<u32>()),
            key: EncryptionKey::generate(),
            lock_ttl,
        }
    }

    pub(crate) fn file() -> Shared<'static> {
        let dir = std::env::temp_dir().join(format!(
            "tokenward-fleet-{}-{:x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Shared::File { dir }
    }

    fn store(&self) -> Box<dyn TokenStore> {
        match self {
            Shared::Redis {
                redis, name, key, ..
            } => Box::new(
                RedisStore::builder(redis.url(), name.clone())
                    .encryption_key(
                        EncryptionKey::from_base64(key.to_base64().expose_secret()).unwrap(),
                    )
                    .build()
                    .unwrap(),
            ),
            Shared::File { dir } => Box::new(FileStore::new(dir.join("grant.json"))),
        }
    }

    fn configure(&self, command: &mut Command) {
        match self {
            Shared::Redis {
                redis,
                name,
                key,
                lock_ttl,
            } => {
                command
                    .env("FLEET_STORE", "redis")
                    .env("FLEET_REDIS_URL", redis.url())
                    .env("FLEET_NAME", name)
                    .env("FLEET_KEY", key.to_base64().expose_secret())
                    .env("FLEET_LOCK_TTL_MS", lock_ttl.as_millis().to_string());
            }
            Shared::File { dir } => {
                command
                    .env("FLEET_STORE", "file")
                    .env("FLEET_FILE", dir.join("grant.json"));
            }
        }
    }

    /// The pid holding the exchange lock, if any.
    async fn holder(&self) -> Option<u32> {
        match self {
            Shared::Redis { redis, name, .. } => {
                let mut conn = redis::Client::open(redis.url())
                    .unwrap()
                    .get_multiplexed_async_connection()
                    .await
                    .unwrap();
                let owner: Option<String> = redis::cmd("GET")
                    .arg(format!("tokenward:{{{name}}}:lock"))
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                owner?.strip_prefix("pid=")?.split(';').next()?.parse().ok()
            }
            Shared::File { dir } => flock_holder(&dir.join("grant.json.exchange-lock")),
        }
    }
}

impl Drop for Shared<'_> {
    fn drop(&mut self) {
        if let Shared::File { dir } = self {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The pid holding an OS (flock) lock on `path`, from `/proc/locks`.
fn flock_holder(path: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt as _;
    let inode = std::fs::metadata(path).ok()?.ino();
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // "1: FLOCK ADVISORY WRITE <pid> <major>:<minor>:<inode> 0 EOF"
        let (kind, pid, file) = (fields.get(1)?, fields.get(4)?, fields.get(5)?);
        let ino: u64 = file.rsplit(':').next()?.parse().ok()?;
        (*kind == "FLOCK" && ino == inode)
            .then(|| pid.parse().ok())
            .flatten()
    })
}

pub(crate) struct Run {
    pub(crate) token_calls: u64,
    pub(crate) token_errors: u64,
    pub(crate) reuse_detected: u64,
    pub(crate) grace_used: u64,
    pub(crate) resource_rejected: u64,
    pub(crate) failed: Vec<String>,
    pub(crate) requests: u64,
    /// With a kill: how long after the holder was killed the grant was refreshed.
    pub(crate) takeover: Option<Duration>,
}

pub(crate) async fn run(
    shared: Shared<'_>,
    processes: usize,
    grace: Duration,
    kill_holder: bool,
) -> Run {
    let server = FakeServer::builder()
        .client(CLIENT_ID, CLIENT_SECRET)
        .token_lifetime(LIFETIME)
        .refresh_token_grace(grace)
        .build();
    let running = server.listen().await.unwrap();
    let seed = server.issue_refresh_token(CLIENT_ID, "jobs.read");
    shared
        .store()
        .compare_and_swap(None, StoredGrant::new(seed))
        .await
        .unwrap();
    if kill_holder {
        // The first refresh never gets an answer: its process is killed while it waits,
        // holding the lock, before the server has rotated anything.
        server.push_fault(Fault::Hang);
    }

    let child = env!("CARGO_BIN_EXE_fleet_child");
    let mut children: Vec<Child> = (0..processes)
        .map(|i| {
            let mut command = Command::new(child);
            command
                .args([
                    if i % 2 == 0 { "tower" } else { "reqwest" },
                    &running.token_url(),
                    &running.resource_url(),
                    &SECONDS.to_string(),
                    &CALLERS.to_string(),
                ])
                .env("FLEET_CLIENT_ID", CLIENT_ID)
                .env("FLEET_CLIENT_SECRET", CLIENT_SECRET)
                .env("FLEET_BARRIER", "1")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            shared.configure(&mut command);
            command.spawn().unwrap()
        })
        .collect();
    tokenward_tests::release_barrier(&mut children);

    let mut killed = None;
    let mut takeover = None;
    if kill_holder {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let pid = loop {
            if server.counters().token_requests >= 1
                && let Some(pid) = shared.holder().await
            {
                break pid;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no process took the lock"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let index = children
            .iter()
            .position(|c| c.id() == pid)
            .expect("the holder is one of the children");
        children[index].kill().unwrap();
        let at = tokio::time::Instant::now();
        killed = Some(index);
        while server.counters().issued_for("refresh_token") == 0 {
            assert!(
                at.elapsed() < Duration::from_secs(20),
                "nobody took over the grant"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        takeover = Some(at.elapsed());
    }

    let outputs = tokenward_tests::outputs(children).await;
    let mut failed = Vec::new();
    let mut requests = 0;
    for (i, output) in outputs.iter().enumerate() {
        if Some(i) == killed {
            continue;
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        requests += stdout
            .trim()
            .strip_prefix("requests=")
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        if !output.status.success() {
            failed.push(format!(
                "process {i}: {}: {stdout}{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
                    .lines()
                    .take(4)
                    .collect::<Vec<_>>()
                    .join(" / ")
            ));
        }
    }
    let counters = server.counters();
    Run {
        token_calls: counters.issued_for("refresh_token"),
        token_errors: counters.errors,
        reuse_detected: counters.refresh_reuse_detected,
        grace_used: counters.refresh_grace_used,
        resource_rejected: counters.resource_rejected,
        failed,
        requests,
        takeover,
    }
}

/// The refresh periods in `seconds`: the first token, then one every 0.8 × lifetime (less
/// up to 5% jitter).
pub(crate) fn periods(seconds: f64) -> u64 {
    let period = LIFETIME.as_secs_f64() * 0.8 * 0.95;
    1 + (seconds / period).floor() as u64
}
