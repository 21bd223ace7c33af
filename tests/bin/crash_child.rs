//! The process the crash test kills: refreshes a rotating grant from a `FileStore` against
//! the test's fake server, in a loop (`loop`) or once (`once`, exit 0 on success).
//!
//! Usage: `crash_child <token_url> <grant_file> loop|once`

use std::io::Write as _;

use tokenward::store::FileStore;
use tokenward::{RefreshTokenGrant, TokenCache};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, token_url, grant_file, mode] = args.as_slice() else {
        eprintln!("usage: crash_child <token_url> <grant_file> loop|once");
        std::process::exit(64);
    };
    let grant =
        RefreshTokenGrant::from_store(token_url, "crash-client", FileStore::new(grant_file))
            .client_secret("crash-secret")
            .build()
            .unwrap_or_else(|e| {
                eprintln!("bad configuration: {e}");
                std::process::exit(64)
            });
    let cache = TokenCache::new(grant);
    let mut out = std::io::stdout();
    let _ = writeln!(out, "ready");
    let _ = out.flush();
    loop {
        match cache.force_refresh().await {
            Ok(_) if mode == "once" => std::process::exit(0),
            Ok(_) => {}
            Err(e) => {
                eprintln!("refresh failed: {e}");
                std::process::exit(2);
            }
        }
    }
}
