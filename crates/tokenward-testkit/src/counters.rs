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
    /// Requests (to any endpoint) that met a scripted [`Fault`](crate::Fault).
    pub faulted: u64,
    /// Requests that reached the protected resource.
    pub resource_requests: u64,
    /// Resource requests answered 401 or 403.
    pub resource_rejected: u64,
    /// Rotated refresh tokens presented again (each revoked its whole grant).
    pub refresh_reuse_detected: u64,
    /// Rotated-out refresh tokens accepted within the
    /// [grace period](crate::FakeServerBuilder::refresh_token_grace).
    pub refresh_grace_used: u64,
    /// Requests to `/authorize`, [`FakeServer::approve`](crate::FakeServer::approve) included.
    pub authorize_requests: u64,
    /// Authorization codes issued (successful authorization requests).
    pub codes_issued: u64,
    /// Authorization codes presented again (each revoked the tokens issued from it).
    pub code_reuse_detected: u64,
    /// Requests that reached `/introspect`, faulted ones included.
    pub introspect_requests: u64,
    /// Requests that reached `/revoke`, faulted ones included.
    pub revoke_requests: u64,
    /// Requests for the metadata document (either well-known URL), faulted ones included.
    pub metadata_requests: u64,
    pub(crate) issued_by_grant: BTreeMap<String, u64>,
}

impl Counters {
    /// Successful token responses for one `grant_type`, e.g. `"client_credentials"`,
    /// `"authorization_code"` or `"refresh_token"`.
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
