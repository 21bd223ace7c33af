//! Cross-crate end-to-end tests for tokenward: real sockets on 127.0.0.1, the real reqwest
//! transport, the testkit's fake authorization server. See `e2e/`.

// The README's examples run as doctests here, where every crate of the workspace (tower and
// reqwest integrations included) is a dependency.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
