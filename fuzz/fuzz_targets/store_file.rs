//! The grant-file parser never panics, and never quotes the file in its errors.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tokenward::store::parse_grant_file;

fuzz_target!(|data: &[u8]| {
    match parse_grant_file(Path::new("grant.json"), data) {
        Ok(grant) => {
            let secret = secrecy::ExposeSecret::expose_secret(&grant.refresh_token);
            assert!(!secret.is_empty());
            let debug = format!("{grant:?}");
            assert!(debug.contains("[REDACTED]"));
            if secret.len() >= 12 && grant.scope.as_deref().is_none_or(|s| !s.contains(secret)) {
                assert!(!debug.contains(secret), "Debug shows the refresh token");
            }
        }
        Err(e) => {
            // Bodies with a brace cannot be mistaken for our own wording (which has none).
            if data.len() >= 16 && data.contains(&b'{') {
                if let Ok(text) = std::str::from_utf8(data) {
                    assert!(!e.to_string().contains(text), "the error quotes the file");
                }
            }
        }
    }
});
