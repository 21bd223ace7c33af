//! `tokenward`: the operator CLI. See the crate's library documentation and the README.

use std::io::IsTerminal as _;

#[tokio::main]
async fn main() {
    // The core crate's warnings (a grant file readable by others, a store that failed) reach
    // the operator on stderr; they never carry a secret.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing_subscriber::filter::LevelFilter::WARN)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    std::process::exit(tokenward_cli::run_terminal(std::env::args_os()).await);
}
