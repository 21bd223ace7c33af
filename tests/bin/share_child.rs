//! One of the processes the shared-grant test starts: reads a token in a loop, from a
//! rotating refresh grant in a `FileStore` it shares with its siblings, and reports.
//!
//! Usage: `share_child <token_url> <grant_file> <share|lock> <seconds> <callers>`; prints
//! `reads=N errors=N` and exits 0 when no read failed.

use std::time::Duration;

use tokenward::store::FileStore;
use tokenward::{RefreshTokenGrant, TokenCache};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, token_url, grant_file, mode, seconds, callers] = args.as_slice() else {
        eprintln!("usage: share_child <token_url> <grant_file> <share|lock> <seconds> <callers>");
        std::process::exit(64);
    };
    let (Ok(seconds), Ok(callers)) = (seconds.parse::<u64>(), callers.parse::<usize>()) else {
        eprintln!("seconds and callers are numbers");
        std::process::exit(64);
    };
    let store = FileStore::new(grant_file).share_access_token(mode == "share");
    let grant = RefreshTokenGrant::from_store(token_url, "share-client", store)
        .client_secret("share-secret")
        .build()
        .unwrap_or_else(|e| {
            eprintln!("bad configuration: {e}");
            std::process::exit(64)
        });
    let cache = TokenCache::new(grant);
    let end = tokio::time::Instant::now() + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move {
                let (mut reads, mut errors) = (0u64, 0u64);
                while tokio::time::Instant::now() < end {
                    match cache.header().await {
                        Ok(_) => reads += 1,
                        Err(e) => {
                            errors += 1;
                            eprintln!("read failed: {e}");
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                (reads, errors)
            })
        })
        .collect();
    let (mut reads, mut errors) = (0, 0);
    for task in tasks {
        let (r, e) = task.await.unwrap();
        reads += r;
        errors += e;
    }
    println!("reads={reads} errors={errors}");
    std::process::exit(if errors == 0 { 0 } else { 2 });
}
