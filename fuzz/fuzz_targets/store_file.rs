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
            // Debug must not depend on the refresh token at all: the same grant with another
            // refresh token prints the same. (Searching the output for the token would flag
            // tokens that happen to spell a field name, such as "refresh_token".)
            let mut other = grant.clone();
            other.refresh_token = secrecy::SecretString::from(format!("{secret}-other"));
            assert_eq!(debug, format!("{other:?}"), "Debug shows the refresh token");
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
