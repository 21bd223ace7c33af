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
            // Debug never shows the tokens: it does not depend on them at all. The same body
            // with other access and refresh tokens prints the same. (Searching the output for
            // the token would flag tokens that happen to spell a field name.)
            let debug = format!("{token:?}");
            assert!(debug.contains("[REDACTED]"));
            if let Some(other) = with_other_tokens(data) {
                if let Ok(other) = parse_response(&other, Some("jobs.read"), &lifetimes) {
                    // (An empty refresh token counts as none; with "-other" it is one.)
                    if other.refresh_token().is_some() == token.refresh_token().is_some() {
                        assert_eq!(debug, format!("{other:?}"), "Debug shows a token");
                    }
                }
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

/// `data` re-serialised with different `access_token` and `refresh_token` strings.
fn with_other_tokens(data: &[u8]) -> Option<Vec<u8>> {
    let mut value: serde_json::Value = serde_json::from_slice(data).ok()?;
    let object = value.as_object_mut()?;
    for field in ["access_token", "refresh_token"] {
        if let Some(serde_json::Value::String(s)) = object.get_mut(field) {
            s.push_str("-other");
        }
    }
    serde_json::to_vec(&value).ok()
}
