//! tokenward-reqwest integration tests, over loopback TCP unless a test says otherwise.

mod auth;
mod helpers;
mod metrics;
mod retry;
#[cfg(feature = "reqwest-retry")]
mod strategy;
mod tenants;
