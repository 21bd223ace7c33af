//! `tokenward`: the operator CLI. See the crate's library documentation and the README.

#[tokio::main]
async fn main() {
    std::process::exit(tokenward_cli::run_terminal(std::env::args_os()).await);
}
