//! Cross-crate end-to-end tests for tokenward: real sockets on 127.0.0.1, the real reqwest
//! transport, the testkit's fake authorization server. See `e2e/`.

// The README's examples run as doctests here, where every crate of the workspace (tower and
// reqwest integrations included) is a dependency.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// Starts `fleet_child` processes spawned with `FLEET_BARRIER=1` and a piped stdin together:
/// each waits for a line on its stdin before its first request.
pub fn release_barrier(children: &mut [std::process::Child]) {
    use std::io::Write as _;
    for child in children {
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(b"\n");
        }
    }
}

/// Waits for every child and collects its output, off the async threads.
pub async fn outputs(children: Vec<std::process::Child>) -> Vec<std::process::Output> {
    tokio::task::spawn_blocking(move || {
        children
            .into_iter()
            .map(|c| c.wait_with_output().unwrap())
            .collect()
    })
    .await
    .unwrap()
}
