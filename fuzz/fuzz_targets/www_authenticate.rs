//! The WWW-Authenticate parser and the classification built on it never panic, and what
//! they return is self-consistent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenward::classify::{classify, www_authenticate};

fuzz_target!(|data: &[u8]| {
    let challenges = www_authenticate::parse(data);
    for c in &challenges {
        assert!(!c.scheme().is_empty());
        assert!(c.is_scheme(&c.scheme().to_ascii_uppercase()));
        for (name, value) in c.params() {
            assert!(c.param(name).is_some(), "{name}={value}");
        }
    }
    if let Ok(value) = http::HeaderValue::from_bytes(data) {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::WWW_AUTHENTICATE, value.clone());
        headers.insert(http::header::RETRY_AFTER, value);
        for status in [400u16, 401, 403, 429, 503] {
            let status = http::StatusCode::from_u16(status).unwrap();
            if let Some(c) = classify(status, &headers, Some(data)) {
                assert_eq!(c.action, c.failure.action());
            }
        }
    }
});
