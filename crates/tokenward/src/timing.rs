//! The timing maths: when a token turns stale and expired, and how long to back off.
//!
//! Both are pure functions of their inputs (the random sample is passed in), so they are
//! property-tested and can be reasoned about without a clock.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use tokenward::timing::{Backoff, Schedule, TimingConfig};
//!
//! let cfg = TimingConfig::default(); // refresh at 0.8 of the lifetime, 30 s clock-skew allowance
//! let s = Schedule::compute(Duration::from_secs(3600), &cfg, 0.0);
//! assert_eq!(s.refresh_after, Duration::from_secs(2880));
//! assert_eq!(s.usable_for, Duration::from_secs(3570));
//!
//! // A lifetime shorter than the margins: they scale with it, and a stale window remains.
//! let s = Schedule::compute(Duration::from_secs(40), &cfg, 0.0);
//! assert_eq!((s.refresh_after, s.usable_for), (Duration::from_secs(32), Duration::from_secs(36)));
//!
//! // Full-jitter exponential backoff: a uniform draw below min(cap, base * 2^retry).
//! let b = Backoff::new(Duration::from_millis(250), Duration::from_secs(10));
//! assert_eq!(b.delay(2, 0.5), Duration::from_millis(500));
//! ```

use std::time::Duration;

/// When to refresh a token and when to stop handing it out, relative to its lifetime.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TimingConfig {
    /// Fraction of the lifetime after which the token is *stale* (refreshed in the
    /// background while still served). Default 0.8; clamped to `0.05..=1.0`, and the token
    /// turns stale at least a tenth of its lifetime before it stops being served.
    pub refresh_fraction: f64,
    /// Up to this fraction of the lifetime is taken off the refresh point at random, so a
    /// fleet does not refresh in lockstep. Default 0.05; clamped to `0.0..=0.5`.
    pub refresh_jitter: f64,
    /// The token turns *stale* no later than this long before it expires. Default 60 s; at
    /// most a fifth of the lifetime.
    pub min_refresh_lead: Duration,
    /// The token is no longer handed out this long before it expires (allowance for clock
    /// skew and requests in flight). Default 30 s; at most a tenth of the lifetime.
    pub clock_skew: Duration,
}

impl Default for TimingConfig {
    fn default() -> Self {
        TimingConfig {
            refresh_fraction: 0.8,
            refresh_jitter: 0.05,
            min_refresh_lead: Duration::from_secs(60),
            clock_skew: Duration::from_secs(30),
        }
    }
}

/// Offsets from the moment a token was issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Schedule {
    /// From here on the token is stale: served, and refreshed in the background.
    pub refresh_after: Duration,
    /// From here on the token is expired: callers wait for a new one.
    pub usable_for: Duration,
}

impl Schedule {
    /// Computes the schedule of a token with `lifetime`, given a jitter `sample` in `[0, 1)`.
    ///
    /// The margins scale with the lifetime: the clock-skew allowance is at most a tenth of
    /// it, the minimum refresh lead at most a fifth, and the stale window (from
    /// `refresh_after` to `usable_for`) at least a tenth. Guarantees, for any input
    /// (property-tested):
    /// * `0 < refresh_after < usable_for <= lifetime` for a non-zero lifetime;
    /// * `usable_for - refresh_after >= lifetime / 10`: callers are served while one refresh
    ///   runs, whatever the lifetime;
    /// * `usable_for = lifetime - min(clock_skew, lifetime / 10)`;
    /// * `refresh_after >= min(fraction * (1 - jitter), 0.8) * lifetime`: the refresh period
    ///   is proportional to the lifetime, so a short lifetime can never make a hot loop.
    pub fn compute(lifetime: Duration, cfg: &TimingConfig, sample: f64) -> Schedule {
        let fraction = clamp_f64(cfg.refresh_fraction, 0.05, 1.0);
        let jitter = clamp_f64(cfg.refresh_jitter, 0.0, 0.5);
        let sample = clamp_f64(sample, 0.0, 1.0);
        let tenth = lifetime / 10;

        let usable_for = lifetime - cfg.clock_skew.min(tenth);
        let proportional = scale(lifetime, fraction * (1.0 - jitter * sample));
        let by_lead = lifetime - cfg.min_refresh_lead.min(lifetime / 5);
        let refresh_after = proportional.min(by_lead).min(usable_for - tenth);
        Schedule {
            refresh_after,
            usable_for,
        }
    }
}

/// `d * factor` for a factor in `[0, 1]`, never more than `d` and never a panic (`Duration`'s
/// own `mul_f64` panics when `d` is near `Duration::MAX`).
fn scale(d: Duration, factor: f64) -> Duration {
    Duration::try_from_secs_f64(d.as_secs_f64() * factor)
        .unwrap_or(d)
        .min(d)
}

fn clamp_f64(v: f64, lo: f64, hi: f64) -> f64 {
    if v.is_nan() { lo } else { v.clamp(lo, hi) }
}

/// Exponential backoff with full jitter: the delay before retry `n` (0-based) is drawn
/// uniformly from `[0, min(cap, base * 2^n))`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
}

impl Backoff {
    /// A backoff starting at `base` and never exceeding `cap`.
    pub const fn new(base: Duration, cap: Duration) -> Self {
        Backoff { base, cap }
    }

    /// The upper bound of the delay before retry `retry` (0-based).
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The delay before retry `retry` for a uniform `sample` in `[0, 1)`.
    pub fn delay(&self, retry: u32, sample: f64) -> Duration {
        scale(self.ceiling(retry), clamp_f64(sample, 0.0, 1.0))
    }

    /// The delay before retry `retry`, drawn from the thread-local RNG.
    pub fn delay_random(&self, retry: u32) -> Duration {
        self.delay(retry, rand::random::<f64>())
    }
}

impl Default for Backoff {
    /// 250 ms, doubling, capped at 10 s.
    fn default() -> Self {
        Backoff::new(Duration::from_millis(250), Duration::from_secs(10))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cfg_strategy() -> impl Strategy<Value = TimingConfig> {
        (0.0f64..1.5, 0.0f64..0.7, 0u64..7_200_000, 0u64..7_200_000).prop_map(
            |(fraction, jitter, lead_ms, skew_ms)| TimingConfig {
                refresh_fraction: fraction,
                refresh_jitter: jitter,
                min_refresh_lead: Duration::from_millis(lead_ms),
                clock_skew: Duration::from_millis(skew_ms),
            },
        )
    }

    #[test]
    fn refresh_boundary_is_the_fraction_of_the_lifetime() {
        let cfg = TimingConfig {
            refresh_jitter: 0.0,
            ..TimingConfig::default()
        };
        let s = Schedule::compute(Duration::from_secs(1000), &cfg, 0.9);
        assert_eq!(s.refresh_after, Duration::from_secs(800));
        assert_eq!(s.usable_for, Duration::from_secs(970));
    }

    #[test]
    fn lead_pulls_the_refresh_earlier_within_a_fifth_of_the_lifetime() {
        let cfg = TimingConfig {
            refresh_fraction: 0.95,
            refresh_jitter: 0.0,
            clock_skew: Duration::ZERO,
            ..TimingConfig::default()
        };
        // 0.95 * 300 = 285 but the 60 s lead says 240.
        let s = Schedule::compute(Duration::from_secs(300), &cfg, 0.0);
        assert_eq!(s.refresh_after, Duration::from_secs(240));
        assert_eq!(s.usable_for, Duration::from_secs(300));
        // 200 s: the lead is capped at a fifth, 40 s.
        let s = Schedule::compute(Duration::from_secs(200), &cfg, 0.0);
        assert_eq!(s.refresh_after, Duration::from_secs(160));
        // 3600 s: the lead would allow 3540, but the stale window keeps a tenth of the
        // lifetime before `usable_for` (3600 - 30 s skew).
        let cfg = TimingConfig {
            clock_skew: Duration::from_secs(30),
            ..cfg
        };
        let s = Schedule::compute(Duration::from_secs(3600), &cfg, 0.0);
        assert_eq!(s.usable_for, Duration::from_secs(3570));
        assert_eq!(s.refresh_after, Duration::from_secs(3210));
    }

    #[test]
    fn short_tokens_keep_a_stale_window() {
        let cfg = TimingConfig::default();
        for secs in [1, 2, 10, 60] {
            let lifetime = Duration::from_secs(secs);
            let s = Schedule::compute(lifetime, &cfg, 0.0);
            assert_eq!(s.refresh_after, lifetime.mul_f64(0.8), "{secs} s");
            assert_eq!(s.usable_for, lifetime - lifetime / 10, "{secs} s");
        }
    }

    #[test]
    fn jitter_only_moves_the_refresh_earlier() {
        let cfg = TimingConfig::default();
        let early = Schedule::compute(Duration::from_secs(3600), &cfg, 1.0);
        let late = Schedule::compute(Duration::from_secs(3600), &cfg, 0.0);
        assert_eq!(late.refresh_after, Duration::from_secs(2880));
        assert_eq!(early.refresh_after, Duration::from_secs(2736)); // 0.8 * 0.95 * 3600
    }

    #[test]
    fn backoff_doubles_until_the_cap() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let ceilings: Vec<_> = (0..6).map(|n| b.ceiling(n).as_millis()).collect();
        assert_eq!(ceilings, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(1));
    }

    proptest! {
        #[test]
        fn schedule_invariants(lifetime_ms in 1u64..400_000_000, cfg in cfg_strategy(), sample in 0.0f64..1.0) {
            let lifetime = Duration::from_millis(lifetime_ms);
            let s = Schedule::compute(lifetime, &cfg, sample);
            prop_assert!(s.refresh_after > Duration::ZERO);
            prop_assert!(s.refresh_after < s.usable_for);
            prop_assert!(s.usable_for <= lifetime);
            prop_assert!(s.usable_for - s.refresh_after >= lifetime / 10, "window {:?}", s);
            prop_assert_eq!(s.usable_for, lifetime - cfg.clock_skew.min(lifetime / 10));
            // No hot loop: the refresh period is proportional to the lifetime.
            let fraction = cfg.refresh_fraction.clamp(0.05, 1.0);
            let jitter = cfg.refresh_jitter.clamp(0.0, 0.5);
            let min_share = (fraction * (1.0 - jitter)).min(0.8);
            let slack = Duration::from_nanos(2);
            prop_assert!(s.refresh_after + slack >= lifetime.mul_f64(min_share),
                "refresh_after {:?} < {:?} of {:?}", s.refresh_after, min_share, lifetime);
            // Never later than the (capped) lead allows.
            prop_assert!(s.refresh_after <= lifetime - cfg.min_refresh_lead.min(lifetime / 5));
        }

        /// The issue's range, with the defaults: every lifetime from 1 s to 24 h.
        #[test]
        fn every_lifetime_from_a_second_to_a_day_keeps_a_window(lifetime_ms in 1_000u64..=86_400_000, sample in 0.0f64..1.0) {
            let lifetime = Duration::from_millis(lifetime_ms);
            let s = Schedule::compute(lifetime, &TimingConfig::default(), sample);
            prop_assert!(Duration::ZERO < s.refresh_after && s.refresh_after < s.usable_for && s.usable_for <= lifetime);
            prop_assert!(s.usable_for - s.refresh_after >= lifetime / 10);
            prop_assert!(s.refresh_after >= lifetime.mul_f64(0.8 * 0.95) - Duration::from_nanos(2));
        }

        /// Zero and maximum durations, fractions beyond their bounds: no panic, and the
        /// ordering still holds.
        #[test]
        fn extreme_inputs_never_panic(
            lifetime in prop_oneof![Just(Duration::ZERO), Just(Duration::MAX), (0u64..u64::MAX).prop_map(Duration::from_nanos)],
            skew in prop_oneof![Just(Duration::ZERO), Just(Duration::MAX)],
            lead in prop_oneof![Just(Duration::ZERO), Just(Duration::MAX)],
            fraction in prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(-1.0), Just(2.0), 0.0f64..1.0],
            sample in prop_oneof![Just(f64::NAN), Just(1.0), Just(0.999_999_999_999), 0.0f64..1.0],
            retry in 0u32..u32::MAX,
        ) {
            let cfg = TimingConfig { refresh_fraction: fraction, refresh_jitter: fraction, min_refresh_lead: lead, clock_skew: skew };
            let s = Schedule::compute(lifetime, &cfg, sample);
            prop_assert!(s.refresh_after <= s.usable_for && s.usable_for <= lifetime);
            let b = Backoff::new(Duration::MAX, Duration::MAX);
            prop_assert!(b.delay(retry, sample) <= Duration::MAX);
            let b = Backoff::new(lifetime, skew);
            prop_assert!(b.delay(retry, sample) <= skew);
        }

        #[test]
        fn schedule_is_monotonic_in_lifetime(a in 1u64..100_000_000, b in 1u64..100_000_000) {
            let cfg = TimingConfig { refresh_jitter: 0.0, ..TimingConfig::default() };
            let (short, long) = (a.min(b), a.max(b));
            let s = Schedule::compute(Duration::from_millis(short), &cfg, 0.0);
            let l = Schedule::compute(Duration::from_millis(long), &cfg, 0.0);
            prop_assert!(s.usable_for <= l.usable_for);
            prop_assert!(s.refresh_after <= l.refresh_after);
        }

        #[test]
        fn backoff_stays_within_full_jitter_bounds(base_ms in 1u64..10_000, cap_ms in 1u64..100_000, retry in 0u32..64, sample in 0.0f64..1.0) {
            let b = Backoff::new(Duration::from_millis(base_ms), Duration::from_millis(cap_ms));
            let d = b.delay(retry, sample);
            prop_assert!(d <= Duration::from_millis(cap_ms));
            prop_assert!(d <= b.ceiling(retry));
            let exp = Duration::from_millis(base_ms).saturating_mul(1u32.checked_shl(retry).unwrap_or(u32::MAX));
            prop_assert!(b.ceiling(retry) == exp.min(Duration::from_millis(cap_ms)));
        }
    }
}
