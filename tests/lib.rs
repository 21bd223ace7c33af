//! Cross-crate end-to-end tests for tokenward: real sockets on 127.0.0.1, the real reqwest
//! transport, the testkit's fake authorization server. See `e2e/`.
