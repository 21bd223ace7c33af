//! Cross-crate end-to-end tests live in this crate's `tests/`... (see the test targets).
