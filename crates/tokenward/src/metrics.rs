//! Metrics through the [`metrics`](https://docs.rs/metrics) facade (feature `metrics`).
//!
//! With the feature on, tokenward records to whatever recorder the application installed
//! (Prometheus, OpenTelemetry, StatsD, ...); with none installed, or the feature off, the
//! calls do nothing. The names and labels are constants here, so dashboards and tests can
//! name them; [`describe`] gives the recorder each one's unit and description.
//!
//! Names follow the OpenTelemetry rules: dot-separated, seconds for durations, and a
//! Prometheus exporter turns `tokenward.token.requests` into `tokenward_token_requests`.
//!
//! | name | kind | labels | what moves it |
//! |---|---|---|---|
//! | [`TOKEN_REQUESTS`] | counter | cache, grant, outcome | every attempt to obtain a token |
//! | [`TOKEN_REQUEST_DURATION`] | histogram (s) | cache, grant, outcome | the same attempts |
//! | [`REFRESHES`] | counter | cache, grant, reason | every refresh started |
//! | [`REFRESHES_IN_FLIGHT`] | gauge | cache, grant | a refresh starts or ends |
//! | [`TOKEN_EXPIRY_TIME`] | gauge (Unix s) | cache, grant | a token is obtained |
//! | [`RATE_LIMIT_END_TIME`] | gauge (Unix s) | cache, grant | a 429 opens a window; 0 after a success |
//! | [`CONSECUTIVE_FAILURES`] | gauge | cache, grant | a refresh fails or succeeds |
//! | [`REFRESH_TOKEN_LAST_USED_TIME`] | gauge (Unix s) | cache, grant | a refresh ends, for sources with a refresh token |
//! | [`REJECTIONS`] | counter | integration, outcome | an API answers 401 `invalid_token` |
//! | [`RETRIES`] | counter | integration, reason | a retry layer sends a request again |
//!
//! * `cache` is the cache's [name](crate::TokenCacheBuilder::name): give each cache its own, or
//!   their gauges say only which one set them last. A [`TenantCache`](crate::TenantCache)'s
//!   tenants share one `cache` label (the tenant cache's
//!   [name](crate::TenantCacheBuilder::name)) and get a `tenant` label only when
//!   [asked for](crate::TenantCacheBuilder::tenant_label): tenants can be many. Without it
//!   they record the counters, the histogram and the in-flight gauge, which add up across
//!   tenants, but not the per-cache gauges (expiry, 429 window, failures, last use): for one
//!   tenant's state, read [`TenantCache::status`](crate::TenantCache::status) or turn the
//!   label on.
//! * `grant` is the source's [kind](crate::TokenSource::kind): `client_credentials`,
//!   `refresh_token`, or `custom`.
//! * `outcome` of a token request is `success` or an [`Error::code`](crate::Error::code): `rate_limited`,
//!   `server_error`, `invalid_client`, `invalid_grant`, `insufficient_scope`, `timeout`,
//!   `transport`, ...
//! * `reason` of a refresh: `first` (no token yet), `stale` (refreshed ahead or in the
//!   background), `expired`, `forced`, `rejected` (the API rejected the token).
//! * `integration` is `tower` or `reqwest`.
//! * `outcome` of a rejection: `resent`, `same_token` (the next token is the rejected one: not
//!   resent), `not_replayable` (the body cannot be copied: not resent), `failed` (no next token).
//! * `reason` of a retry: `rate_limited`, `server_error`, `timeout`, `connect`, `transport`.
//!
//! Label values are these fixed words and the names you choose: never a token, a secret or
//! a URL.
//!
//! Time left on the token is [`TOKEN_EXPIRY_TIME`] minus now (in PromQL,
//! `tokenward_token_expiry_time_seconds - time()`), and a refresh token's idle time (its
//! [decay](crate::decay)) is now minus [`REFRESH_TOKEN_LAST_USED_TIME`]: a gauge of seconds
//! left would need a task to keep it current, and would be wrong whenever that task is not
//! run. A time only changes when something happens.
//!
//! The read of a usable token records nothing: every metric moves on the slow path only
//! (a refresh, a failure, a 401, a retry), and never under the cache's lock. A token
//! request is an attempt of the source: one that adopts a token another process shared
//! ([`share_through`](crate::grant::GrantBuilder::share_through)) counts
//! too. The gauges appear with the first refresh of the process: until then a recorder has
//! no value for them.

use crate::classify::Attempt;
#[cfg(feature = "metrics")]
use crate::error::Error;

/// Counter: attempts to obtain a token, by `outcome`.
pub const TOKEN_REQUESTS: &str = "tokenward.token.requests";
/// Histogram, seconds: how long each attempt to obtain a token took, by `outcome`.
pub const TOKEN_REQUEST_DURATION: &str = "tokenward.token.request.duration";
/// Counter: refreshes started, by `reason`.
pub const REFRESHES: &str = "tokenward.refreshes";
/// Gauge: refreshes running.
pub const REFRESHES_IN_FLIGHT: &str = "tokenward.refreshes.in_flight";
/// Gauge, Unix time in seconds: when the last token obtained expires.
pub const TOKEN_EXPIRY_TIME: &str = "tokenward.token.expiry_time";
/// Gauge, Unix time in seconds: when the 429 window ends; 0 once a refresh succeeded. A
/// window is open while it is in the future.
pub const RATE_LIMIT_END_TIME: &str = "tokenward.rate_limit.end_time";
/// Gauge: failed refreshes since the last success.
pub const CONSECUTIVE_FAILURES: &str = "tokenward.refresh.consecutive_failures";
/// Gauge, Unix time in seconds: when the source's refresh token was last used, as the
/// process last saw it (see [`TokenSource::decay_status`](crate::TokenSource::decay_status)).
/// Its decay warns and pages at ages measured from here.
pub const REFRESH_TOKEN_LAST_USED_TIME: &str = "tokenward.refresh_token.last_used_time";
/// Counter: responses that rejected the token (401 `invalid_token`), by `integration` and
/// `outcome`.
pub const REJECTIONS: &str = "tokenward.rejections";
/// Counter: requests sent again by a retry layer, by `integration` and `reason`.
pub const RETRIES: &str = "tokenward.http.retries";

/// Describes every metric (unit and description) to the installed recorder. Call it once,
/// after installing the recorder; exporters such as Prometheus's use it for `# HELP` lines.
/// Does nothing without the `metrics` feature.
pub fn describe() {
    #[cfg(feature = "metrics")]
    {
        use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
        describe_counter!(
            TOKEN_REQUESTS,
            Unit::Count,
            "Attempts to obtain an access token, by outcome"
        );
        describe_histogram!(
            TOKEN_REQUEST_DURATION,
            Unit::Seconds,
            "How long each attempt to obtain an access token took"
        );
        describe_counter!(REFRESHES, Unit::Count, "Token refreshes started, by reason");
        describe_gauge!(REFRESHES_IN_FLIGHT, Unit::Count, "Token refreshes running");
        describe_gauge!(
            TOKEN_EXPIRY_TIME,
            Unit::Seconds,
            "Unix time at which the last access token obtained expires"
        );
        describe_gauge!(
            RATE_LIMIT_END_TIME,
            Unit::Seconds,
            "Unix time at which the token endpoint's 429 window ends (0: none)"
        );
        describe_gauge!(
            CONSECUTIVE_FAILURES,
            Unit::Count,
            "Failed token refreshes since the last success"
        );
        describe_gauge!(
            REFRESH_TOKEN_LAST_USED_TIME,
            Unit::Seconds,
            "Unix time at which the refresh token was last used (its decay counts from here)"
        );
        describe_counter!(
            REJECTIONS,
            Unit::Count,
            "API responses that rejected the access token (401 invalid_token), by outcome"
        );
        describe_counter!(
            RETRIES,
            Unit::Count,
            "Requests sent again by a tokenward retry layer, by reason"
        );
    }
}

/// What an integration did with a response that rejected its token. See [`REJECTIONS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejected {
    /// Resent once with the next token.
    Resent,
    /// Not resent: the next token is the rejected one.
    SameToken,
    /// Not resent: the request's body cannot be copied (or resends are off).
    NotReplayable,
    /// Not resent: no next token could be obtained.
    Failed,
}

impl Rejected {
    /// The `outcome` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Rejected::Resent => "resent",
            Rejected::SameToken => "same_token",
            Rejected::NotReplayable => "not_replayable",
            Rejected::Failed => "failed",
        }
    }
}

/// Counts a response that rejected the token, for an integration (`"tower"`, `"reqwest"`,
/// or your own). The tower layer and the reqwest middleware call it.
pub fn record_rejection(integration: &'static str, outcome: Rejected) {
    #[cfg(feature = "metrics")]
    metrics::counter!(REJECTIONS, "integration" => integration, "outcome" => outcome.as_str())
        .increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = (integration, outcome);
}

/// Counts a retry a retry layer makes after `attempt`, for an integration. The tower retry
/// policy and the reqwest retry middleware call it when they send again.
pub fn record_retry(integration: &'static str, attempt: &Attempt<'_>) {
    #[cfg(feature = "metrics")]
    metrics::counter!(RETRIES, "integration" => integration, "reason" => attempt.reason())
        .increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = (integration, attempt);
}

/// A cache's labels and its recording, on the slow path only.
#[derive(Debug, Clone, Default)]
pub(crate) struct CacheMetrics {
    #[cfg(feature = "metrics")]
    labels: Box<[metrics::Label]>,
    /// Whether this cache's labels are its own, so that it sets the per-cache gauges (a
    /// gauge several caches set says only which one set it last).
    #[cfg(feature = "metrics")]
    gauges: bool,
}

/// A refresh counted as running: the gauge goes down when this is dropped (through the same
/// handle, so on the same recorder).
pub(crate) struct InFlight {
    #[cfg(feature = "metrics")]
    gauge: metrics::Gauge,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        #[cfg(feature = "metrics")]
        self.gauge.decrement(1.0);
    }
}

impl CacheMetrics {
    /// `cache` (and `tenant`, if given) and `grant` labels; `gauges`: whether they are this
    /// cache's alone.
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn new(
        cache: &std::sync::Arc<str>,
        tenant: Option<&std::sync::Arc<str>>,
        grant: &'static str,
        gauges: bool,
    ) -> Self {
        #[cfg(feature = "metrics")]
        {
            // The names are shared, not copied: a tenant map's caches hold one `cache` name.
            // Exactly as many as it holds: a tenant map has one set per tenant.
            let mut labels = Vec::with_capacity(2 + usize::from(tenant.is_some()));
            labels.push(metrics::Label::new("cache", std::sync::Arc::clone(cache)));
            if let Some(tenant) = tenant {
                labels.push(metrics::Label::new("tenant", std::sync::Arc::clone(tenant)));
            }
            labels.push(metrics::Label::from_static_parts("grant", grant));
            CacheMetrics {
                labels: labels.into_boxed_slice(),
                gauges,
            }
        }
        #[cfg(not(feature = "metrics"))]
        CacheMetrics {}
    }

    #[cfg(feature = "metrics")]
    fn with(&self, name: &'static str, value: &'static str) -> Vec<metrics::Label> {
        let mut labels = Vec::with_capacity(self.labels.len() + 1);
        labels.extend_from_slice(&self.labels);
        labels.push(metrics::Label::from_static_parts(name, value));
        labels
    }

    /// One attempt to obtain a token ended.
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn token_request(
        &self,
        outcome: Result<(), &crate::Error>,
        took: std::time::Duration,
    ) {
        #[cfg(feature = "metrics")]
        {
            let outcome = outcome.map_or_else(Error::code, |()| "success");
            let labels = self.with("outcome", outcome);
            metrics::histogram!(TOKEN_REQUEST_DURATION, labels.clone()).record(took.as_secs_f64());
            metrics::counter!(TOKEN_REQUESTS, labels).increment(1);
        }
    }

    /// A refresh started.
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn refresh(&self, reason: &'static str) {
        #[cfg(feature = "metrics")]
        metrics::counter!(REFRESHES, self.with("reason", reason)).increment(1);
    }

    /// A refresh started: counted as running until the handle is dropped.
    pub(crate) fn in_flight(&self) -> InFlight {
        #[cfg(feature = "metrics")]
        {
            let gauge = metrics::gauge!(REFRESHES_IN_FLIGHT, self.labels.to_vec());
            gauge.increment(1.0);
            InFlight { gauge }
        }
        #[cfg(not(feature = "metrics"))]
        InFlight {}
    }

    /// A refresh ended: its token's expiry, the failure count, the 429 window and the
    /// refresh token's last use.
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn refreshed(
        &self,
        expiry: Option<std::time::SystemTime>,
        consecutive_failures: u32,
        rate_limit_end: Option<std::time::SystemTime>,
        refresh_token_used: Option<std::time::SystemTime>,
    ) {
        #[cfg(feature = "metrics")]
        if self.gauges {
            let unix = |t: std::time::SystemTime| {
                t.duration_since(std::time::UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64())
            };
            if let Some(expiry) = expiry {
                metrics::gauge!(TOKEN_EXPIRY_TIME, self.labels.to_vec()).set(unix(expiry));
            }
            metrics::gauge!(CONSECUTIVE_FAILURES, self.labels.to_vec())
                .set(f64::from(consecutive_failures));
            metrics::gauge!(RATE_LIMIT_END_TIME, self.labels.to_vec())
                .set(rate_limit_end.map_or(0.0, unix));
            if let Some(used) = refresh_token_used {
                metrics::gauge!(REFRESH_TOKEN_LAST_USED_TIME, self.labels.to_vec()).set(unix(used));
            }
        }
    }
}
