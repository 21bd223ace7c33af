//! `Retry-After` (RFC 9110 §10.2.3): delta-seconds or an HTTP-date.
//!
//! The delay is returned as sent, **uncapped**: callers apply their own ceiling so that a
//! hostile or broken server cannot park a client for a year.
//!
//! # Example
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use http::HeaderValue;
//! use tokenward::classify::parse_retry_after;
//!
//! let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480); // 21 Oct 2015 07:28:00 GMT
//! let seconds = HeaderValue::from_static("120");
//! assert_eq!(parse_retry_after(&seconds, now), Some(Duration::from_secs(120)));
//! let date = HeaderValue::from_static("Wed, 21 Oct 2015 07:29:00 GMT");
//! assert_eq!(parse_retry_after(&date, now), Some(Duration::from_secs(60)));
//! assert_eq!(parse_retry_after(&HeaderValue::from_static("soon"), now), None);
//! ```

use std::time::{Duration, SystemTime};

use http::header::RETRY_AFTER;
use http::{HeaderMap, HeaderValue};

/// Parses one `Retry-After` value relative to `now`.
///
/// * delta-seconds (ASCII digits only, surrounding spaces or tabs allowed): that many
///   seconds; values beyond `u64::MAX` saturate;
/// * an HTTP-date (IMF-fixdate, or the obsolete RFC 850 and asctime forms): the time from
///   `now` until then, or [`Duration::ZERO`] if it is already past;
/// * anything else (negative or fractional numbers, empty, garbage): `None`.
pub fn parse_retry_after(value: &HeaderValue, now: SystemTime) -> Option<Duration> {
    let trimmed = trim_ows(value.as_bytes());
    if trimmed.is_empty() {
        return None;
    }
    if trimmed.iter().all(u8::is_ascii_digit) {
        let seconds = trimmed.iter().fold(0u64, |acc, &digit| {
            acc.saturating_mul(10)
                .saturating_add(u64::from(digit - b'0'))
        });
        return Some(Duration::from_secs(seconds));
    }
    let text = std::str::from_utf8(trimmed).ok()?;
    let date = httpdate::parse_http_date(text).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The delay requested by the first `Retry-After` header in `headers`, relative to `now`.
///
/// See [`parse_retry_after`]; `None` if the header is absent or unparseable.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    parse_retry_after(headers.get(RETRY_AFTER)?, now)
}

/// Strips spaces and tabs (HTTP's optional whitespace) from both ends.
fn trim_ows(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Wed, 21 Oct 2015 07:28:00 GMT
    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480)
    }

    fn parse(s: &str) -> Option<Duration> {
        parse_retry_after(&HeaderValue::from_str(s).unwrap(), now())
    }

    #[test]
    fn delta_seconds() {
        assert_eq!(parse("0"), Some(Duration::ZERO));
        assert_eq!(parse("120"), Some(Duration::from_secs(120)));
        assert_eq!(parse("007"), Some(Duration::from_secs(7)));
        assert_eq!(parse(" \t30 \t"), Some(Duration::from_secs(30)));
    }

    #[test]
    fn huge_delta_seconds_saturate() {
        assert_eq!(
            parse("18446744073709551615"),
            Some(Duration::from_secs(u64::MAX))
        );
        assert_eq!(
            parse("99999999999999999999999999999999999999"),
            Some(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn http_dates() {
        assert_eq!(
            parse("Wed, 21 Oct 2015 07:29:00 GMT"),
            Some(Duration::from_secs(60))
        );
        // Obsolete RFC 850 and asctime forms.
        assert_eq!(
            parse("Wednesday, 21-Oct-15 07:30:00 GMT"),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse("Wed Oct 21 07:28:05 2015"),
            Some(Duration::from_secs(5))
        );
        // Now, and in the past.
        assert_eq!(parse("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        assert_eq!(parse("Tue, 20 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        assert_eq!(
            parse("  Wed, 21 Oct 2015 07:29:00 GMT "),
            Some(Duration::from_secs(60))
        );
    }

    #[test]
    fn sub_second_now_is_measured_exactly() {
        let now = now() + Duration::from_millis(250);
        let value = HeaderValue::from_static("Wed, 21 Oct 2015 07:28:10 GMT");
        assert_eq!(
            parse_retry_after(&value, now),
            Some(Duration::from_millis(9_750))
        );
    }

    #[test]
    fn anything_else_is_none() {
        for bad in [
            "",
            "  ",
            "-1",
            "+5",
            "1.5",
            "1e3",
            "12 34",
            "0x10",
            "soon",
            "120s",
            "Wed, 32 Oct 2015 07:29:00 GMT",
            "21 Oct 2015",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        let obs_text = HeaderValue::from_bytes(b"\xff120").unwrap();
        assert_eq!(parse_retry_after(&obs_text, now()), None);
    }

    #[test]
    fn header_map() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers, now()), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static("42"));
        headers.append(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&headers, now()), Some(Duration::from_secs(42)));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("later"));
        assert_eq!(retry_after(&headers, now()), None);
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64), offset in any::<u64>()) {
            if let Ok(value) = HeaderValue::from_bytes(&bytes) {
                let now = SystemTime::UNIX_EPOCH + Duration::from_secs(offset % 10_000_000_000);
                let _ = parse_retry_after(&value, now);
            }
        }

        #[test]
        fn delta_seconds_are_exact(n in any::<u32>()) {
            let value = HeaderValue::from_str(&n.to_string()).unwrap();
            prop_assert_eq!(parse_retry_after(&value, now()), Some(Duration::from_secs(u64::from(n))));
        }

        #[test]
        fn future_dates_round_trip(secs in 0u64..400_000_000) {
            let value = HeaderValue::from_str(&httpdate::fmt_http_date(now() + Duration::from_secs(secs))).unwrap();
            prop_assert_eq!(parse_retry_after(&value, now()), Some(Duration::from_secs(secs)));
        }
    }
}
