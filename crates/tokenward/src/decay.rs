//! Refresh-token decay: the 90-day non-use clock.
//!
//! Many authorization servers revoke a refresh token that has not been used for a while
//! (90 days is common). A seasonal integration — quiet all summer — finds its grant dead on
//! the first busy day. tokenward records when the refresh token was last used (in the
//! [`TokenStore`](crate::store::TokenStore) when there is one) and reports its health:
//!
//! | idle for | state | what happens |
//! |---|---|---|
//! | < 60 days | [`Healthy`](DecayState::Healthy) | nothing |
//! | ≥ 60 days | [`Warn`](DecayState::Warn) | a `tracing` event at WARN with the age and the action |
//! | ≥ 75 days | [`Page`](DecayState::Page) | a `tracing` event at ERROR: page someone |
//! | ≥ 85 days | [`HardFail`](DecayState::HardFail) | the endpoint is not called; [`Error::RefreshTokenDecayed`] |
//!
//! All ages are configurable. With keep-alive ([`DecayPolicy::keep_alive_after`] and
//! [`spawn_keep_alive`]) a background task refreshes an idle grant before it reaches the
//! warn age, so it never decays.
//!
//! Ages are measured with a [`WallClock`] (real time: the server's clock keeps running while
//! the process sleeps or restarts), which tests replace with a `ManualClock` (feature
//! `test-util`).
//!
//! # Example
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use tokenward::decay::{DecayPolicy, DecayState};
//!
//! const DAY: Duration = Duration::from_secs(86_400);
//! let policy = DecayPolicy::default();
//! let now = SystemTime::now();
//! assert_eq!(policy.status(Some(now - 10 * DAY), now).state, DecayState::Healthy);
//! assert_eq!(policy.status(Some(now - 61 * DAY), now).state, DecayState::Warn);
//! assert_eq!(policy.status(Some(now - 80 * DAY), now).state, DecayState::Page);
//! assert_eq!(policy.status(Some(now - 86 * DAY), now).state, DecayState::HardFail);
//! ```

use std::fmt;
use std::sync::Arc;
#[cfg(feature = "test-util")]
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use crate::cache::TokenCache;
use crate::error::Error;
use crate::grant::RefreshTokenGrant;

const DAY: Duration = Duration::from_secs(86_400);

/// The time of day, as the authorization server sees it. Injected so tests need not wait.
pub trait WallClock: fmt::Debug + Send + Sync + 'static {
    /// Now.
    fn now(&self) -> SystemTime;
}

/// [`SystemTime::now`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl WallClock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that moves only when told to, for tests. Clones share the time.
#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<SystemTime>>,
}

#[cfg(feature = "test-util")]
impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: SystemTime) -> Self {
        ManualClock {
            now: Arc::new(Mutex::new(start)),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        *now += by;
    }

    /// Sets the clock.
    pub fn set(&self, to: SystemTime) {
        *self.now.lock().unwrap_or_else(|p| p.into_inner()) = to;
    }
}

#[cfg(feature = "test-util")]
impl WallClock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// When an idle refresh token is reported, and when it is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DecayPolicy {
    /// Warn from this idle age on. Default 60 days.
    pub warn_after: Duration,
    /// Page from this idle age on. Default 75 days.
    pub page_after: Duration,
    /// Refuse to use the refresh token from this idle age on. Default 85 days.
    pub hard_fail_after: Duration,
    /// The server's idle lifetime of a refresh token (for the status's time left). Default
    /// 90 days.
    pub lifetime: Duration,
    /// With keep-alive running ([`spawn_keep_alive`]), refresh an idle grant from this age
    /// on. Default `None` (off). Must be below `warn_after`.
    pub keep_alive_after: Option<Duration>,
}

impl Default for DecayPolicy {
    fn default() -> Self {
        DecayPolicy {
            warn_after: 60 * DAY,
            page_after: 75 * DAY,
            hard_fail_after: 85 * DAY,
            lifetime: 90 * DAY,
            keep_alive_after: None,
        }
    }
}

impl DecayPolicy {
    /// The default ages with keep-alive at `after` (e.g. 30 days).
    pub fn with_keep_alive(after: Duration) -> Self {
        DecayPolicy {
            keep_alive_after: Some(after),
            ..DecayPolicy::default()
        }
    }

    /// Checks that the ages are in order.
    pub fn validate(&self) -> Result<(), Error> {
        let ordered = self.warn_after <= self.page_after
            && self.page_after <= self.hard_fail_after
            && self.hard_fail_after <= self.lifetime
            && self.keep_alive_after.is_none_or(|k| k < self.warn_after);
        if ordered {
            Ok(())
        } else {
            Err(Error::Config(
                "decay ages must satisfy keep_alive < warn <= page <= hard_fail <= lifetime".into(),
            ))
        }
    }

    /// The status of a refresh token last used at `last_used` (`None`: unknown, treated as
    /// just used), at `now`.
    pub fn status(&self, last_used: Option<SystemTime>, now: SystemTime) -> DecayStatus {
        let idle = last_used
            .and_then(|t| now.duration_since(t).ok())
            .unwrap_or_default();
        let state = if idle >= self.hard_fail_after {
            DecayState::HardFail
        } else if idle >= self.page_after {
            DecayState::Page
        } else if idle >= self.warn_after {
            DecayState::Warn
        } else {
            DecayState::Healthy
        };
        DecayStatus {
            state,
            idle,
            last_used,
            remaining: self.lifetime.saturating_sub(idle),
            hard_fail_after: self.hard_fail_after,
        }
    }
}

/// How close a refresh token is to decaying.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum DecayState {
    /// Recently used.
    Healthy,
    /// Idle long enough to warn.
    Warn,
    /// Idle long enough to page someone.
    Page,
    /// Refused: re-authorize.
    HardFail,
}

impl DecayState {
    /// `healthy`, `warn`, `page` or `hard_fail`.
    pub fn as_str(self) -> &'static str {
        match self {
            DecayState::Healthy => "healthy",
            DecayState::Warn => "warn",
            DecayState::Page => "page",
            DecayState::HardFail => "hard_fail",
        }
    }
}

/// A refresh token's decay status. See [`RefreshTokenGrant::decay_status`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DecayStatus {
    /// The state.
    pub state: DecayState,
    /// How long since the refresh token was last used.
    pub idle: Duration,
    /// When it was last used, if known.
    pub last_used: Option<SystemTime>,
    /// Time left before the server's idle lifetime runs out.
    pub remaining: Duration,
    hard_fail_after: Duration,
}

impl DecayStatus {
    /// What the operator should do.
    pub fn action(&self) -> &'static str {
        match self.state {
            DecayState::Healthy => "none",
            DecayState::Warn => {
                "use the integration (any refresh resets the clock) or enable keep-alive before the refresh token decays"
            }
            DecayState::Page => {
                "the refresh token decays soon: refresh it now (force a refresh) or plan a re-authorization"
            }
            DecayState::HardFail => {
                "the refresh token is refused as decayed: the user or an organisation admin must authorize again"
            }
        }
    }

    /// Emits the status as a `tracing` event: WARN for [`Warn`](DecayState::Warn), ERROR for
    /// [`Page`](DecayState::Page) and [`HardFail`](DecayState::HardFail), nothing when healthy.
    pub fn emit(&self) {
        let idle_days = self.idle.as_secs() / 86_400;
        let remaining_days = self.remaining.as_secs() / 86_400;
        match self.state {
            DecayState::Healthy => {}
            DecayState::Warn => tracing::warn!(
                idle_days,
                remaining_days,
                action = self.action(),
                "refresh token idle: decay warning"
            ),
            DecayState::Page | DecayState::HardFail => tracing::error!(
                idle_days,
                remaining_days,
                state = ?self.state,
                action = self.action(),
                "refresh token about to decay"
            ),
        }
    }

    /// The error for a hard-failed status, `None` otherwise.
    pub(crate) fn hard_fail_error(&self) -> Option<Error> {
        (self.state == DecayState::HardFail).then_some(Error::RefreshTokenDecayed {
            idle: self.idle,
            limit: self.hard_fail_after,
        })
    }
}

/// A running keep-alive task; stops when dropped.
#[derive(Debug)]
pub struct KeepAlive {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Every `check_every` (tokio time), checks `grant`'s decay status, emits it, and — once the
/// grant has been idle for the policy's `keep_alive_after` — refreshes it through `cache`
/// (single flight, like any other refresh), which resets the idle clock.
///
/// Without `keep_alive_after` in the grant's policy it only monitors.
pub fn spawn_keep_alive(
    cache: TokenCache,
    grant: Arc<RefreshTokenGrant>,
    check_every: Duration,
) -> KeepAlive {
    let task = tokio::spawn(async move {
        let mut ticks = tokio::time::interval(check_every.max(Duration::from_millis(1)));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let status = match grant.decay_status().await {
                Ok(status) => status,
                Err(error) => {
                    tracing::warn!(error = %crate::error::chain(&error), "keep-alive could not read the grant's status");
                    continue;
                }
            };
            status.emit();
            let due = grant
                .decay_policy()
                .keep_alive_after
                .is_some_and(|after| status.idle >= after);
            if due && status.state != DecayState::HardFail {
                match cache.force_refresh().await {
                    Ok(_) => tracing::info!(
                        idle_days = status.idle.as_secs() / 86_400,
                        "keep-alive refreshed an idle grant"
                    ),
                    Err(error) => {
                        tracing::warn!(error = %crate::error::chain(&error), "keep-alive refresh failed")
                    }
                }
            }
        }
    });
    KeepAlive { task }
}
