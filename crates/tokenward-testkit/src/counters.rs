//! [`Counters`]: what the fake server has seen.

use std::collections::BTreeMap;

/// A snapshot of what the server has seen since it was built or since
/// [`FakeServer::reset_counters`](crate::FakeServer::reset_counters).
///
/// # Example
///
/// ```
/// # use tokenward_testkit::FakeServer;
/// let server = FakeServer::builder().client("c", "s").build();
/// let counters = server.counters();
/// assert_eq!(counters.token_requests, 0);
/// assert_eq!(counters.issued_for("client_credentials"), 0);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counters {
    /// Requests that reached `/token`, faulted ones included.
    pub token_requests: u64,
    /// Successful token responses (a token was issued).
    pub issued: u64,
    /// Token responses with a 4xx or 5xx status, from faults or from the OAuth logic.
    pub errors: u64,
    /// Token requests that met a scripted [`Fault`](crate::Fault).
    pub faulted: u64,
    /// Requests that reached the protected resource.
    pub resource_requests: u64,
    /// Resource requests answered 401 or 403.
    pub resource_rejected: u64,
    /// Rotated refresh tokens presented again (each revoked its whole grant).
    pub refresh_reuse_detected: u64,
    pub(crate) issued_by_grant: BTreeMap<String, u64>,
}

impl Counters {
    /// Successful token responses for one `grant_type`, e.g. `"client_credentials"` or
    /// `"refresh_token"`.
    pub fn issued_for(&self, grant_type: &str) -> u64 {
        self.issued_by_grant.get(grant_type).copied().unwrap_or(0)
    }

    pub(crate) fn count_issued(&mut self, grant_type: &str) {
        self.issued += 1;
        *self
            .issued_by_grant
            .entry(grant_type.to_owned())
            .or_default() += 1;
    }
}
