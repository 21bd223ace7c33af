//! A fleet: four replicas (OS processes: this example starting itself again) share one
//! rotating refresh grant and its access token through Redis, against the embedded fake
//! authorization server on 127.0.0.1. The server rotates the refresh token on every use and
//! revokes the whole grant if one is presented twice; the replicas refresh one at a time
//! under a lock in Redis, and together make one token call per refresh period.
//!
//! Run: `cargo run --example fleet`. It starts its own `redis-server` (Debian:
//! `apt-get install redis-server`), or uses the one at `REDIS_URL` if set, e.g.
//! `docker run --rm -p 6379:6379 redis:7` and `REDIS_URL=redis://127.0.0.1:6379`.

use std::process::{Command, Stdio};
use std::time::Duration;

use tokenward::ExposeSecret;
use tokenward::store::{StoredGrant, TokenStore};
use tokenward::{RefreshTokenGrant, TokenCache};
use tokenward_redis::{EncryptionKey, RedisStore};
use tokenward_reqwest::AuthMiddleware;
use tokenward_testkit::{FakeServer, RedisServer};

const REPLICAS: usize = 4;
const SECONDS: u64 = 10;
const LIFETIME: Duration = Duration::from_secs(4);

/// What every replica is configured with (in production: the same config and secret
/// manager entries on every replica). The Redis URL may hold a password and the key is a
/// secret: they come from the environment, never the command line (`ps` shows that).
fn store(
    redis_url: &str,
    grant: &str,
    key: &str,
) -> Result<RedisStore, Box<dyn std::error::Error>> {
    Ok(RedisStore::builder(redis_url, grant)
        .encryption_key(EncryptionKey::from_base64(key)?)
        .share_access_token(true)
        .build()?)
}

fn store_from_env() -> Result<RedisStore, Box<dyn std::error::Error>> {
    let var = |name: &str| std::env::var(name).map_err(|_| format!("{name} is not set"));
    store(
        &var("FLEET_REDIS_URL")?,
        &var("FLEET_GRANT")?,
        &var("FLEET_KEY")?,
    )
}

/// One replica: requests to the protected resource through `AuthMiddleware`.
async fn replica(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let [token_url, resource_url] = args else {
        return Err("usage: fleet --replica <token_url> <resource_url>".into());
    };
    let grant = RefreshTokenGrant::from_store(token_url, "fleet-client", store_from_env()?)
        .client_secret("fleet-secret")
        .build()?;
    let cache = TokenCache::new(grant);
    let http = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(AuthMiddleware::new(cache))
        .build();
    let end = tokio::time::Instant::now() + Duration::from_secs(SECONDS);
    let (mut ok, mut failed) = (0u64, 0u64);
    while tokio::time::Instant::now() < end {
        match http.get(resource_url).send().await {
            Ok(response) if response.status().is_success() => ok += 1,
            _ => failed += 1,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "replica {}: {ok} requests answered, {failed} failed",
        std::process::id()
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--replica") {
        return replica(&args[1..]).await;
    }

    let started;
    let redis_url = match std::env::var("REDIS_URL") {
        Ok(url) => url,
        Err(_) => {
            let Some(redis) = RedisServer::start() else {
                eprintln!(
                    "This example needs Redis: install redis-server (Debian: `apt-get install \
                     redis-server`), or start one (`docker run --rm -p 6379:6379 redis:7`) and \
                     run with REDIS_URL=redis://127.0.0.1:6379"
                );
                std::process::exit(1);
            };
            started = redis;
            started.url()
        }
    };

    let server = FakeServer::builder()
        .client("fleet-client", "fleet-secret")
        .token_lifetime(LIFETIME)
        .build();
    let running = server.listen().await?;
    // This run's configuration, handed to the replicas in their environment: a new key and
    // grant name each run, so a Redis kept between runs holds nothing sealed with another
    // run's key.
    let key = EncryptionKey::generate().to_base64();
    let grant = format!("fleet-demo-{:08x}", rand::random::<u32>());
    // The grant the authorization code flow would have stored.
    let seed = server.issue_refresh_token("fleet-client", "jobs.read");
    store(&redis_url, &grant, key.expose_secret())?
        .compare_and_swap(None, StoredGrant::new(seed))
        .await?;

    println!("{REPLICAS} replicas for {SECONDS} s, tokens living {LIFETIME:?}, one Redis ...");
    let me = std::env::current_exe()?;
    let replicas: Vec<_> = (0..REPLICAS)
        .map(|_| {
            Command::new(&me)
                .args(["--replica", &running.token_url(), &running.resource_url()])
                .env("FLEET_REDIS_URL", &redis_url)
                .env("FLEET_GRANT", &grant)
                .env("FLEET_KEY", key.expose_secret())
                .stdout(Stdio::inherit())
                .spawn()
        })
        .collect::<Result<_, _>>()?;
    let statuses = tokio::task::spawn_blocking(move || {
        replicas
            .into_iter()
            .map(|mut r| r.wait())
            .collect::<Result<Vec<_>, _>>()
    })
    .await??;

    let counters = server.counters();
    println!(
        "token calls: {} (about one per refresh period, not {REPLICAS} per period); \
         refresh tokens presented twice: {}",
        counters.issued_for("refresh_token"),
        counters.refresh_reuse_detected
    );
    if statuses.iter().any(|s| !s.success()) || counters.refresh_reuse_detected > 0 {
        return Err("a replica failed".into());
    }
    Ok(())
}
