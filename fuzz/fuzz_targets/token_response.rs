//! Token-response parsing never panics; a parsed token has a valid sensitive header, a
//! clamped lifetime, and errors never quote the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenward::token::{Lifetimes, parse_response};

fuzz_target!(|data: &[u8]| {
    let lifetimes = Lifetimes::default();
    match parse_response(data, Some("jobs.read"), &lifetimes) {
        Ok(token) => {
            assert!(token.header_value().is_sensitive());
            assert!(token.lifetime() >= lifetimes.min && token.lifetime() <= lifetimes.max);
            // Debug never shows the token (checked where the check is meaningful: a token
            // long enough not to occur in the Debug wording, and not echoed as the scope).
            let secret = secrecy::ExposeSecret::expose_secret(token.access_token());
            let debug = format!("{token:?}");
            assert!(debug.contains("[REDACTED]"));
            if secret.len() >= 12 && token.scope().is_none_or(|s| !s.contains(secret)) {
                assert!(!debug.contains(secret), "Debug shows the token");
            }
        }
        Err(e) => {
            let text = e.to_string();
            // Bodies with a brace cannot be mistaken for our own wording (which has none).
            if data.len() >= 16 && data.contains(&b'{') {
                if let Ok(body) = std::str::from_utf8(data) {
                    assert!(!text.contains(body), "the error quotes the body");
                }
            }
        }
    }
});
