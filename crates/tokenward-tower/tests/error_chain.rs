//! `AuthError::Token` says the request was not sent, and leaves the why to its source: each
//! message appears once when the chain is walked.

use std::sync::Arc;

use tokenward::error::chain;
use tokenward::store::StoreError;
use tokenward_tower::AuthError;

#[test]
fn a_token_error_prints_the_core_error_once() {
    let core = tokenward::Error::Store(StoreError::Read {
        path: "/g.json".into(),
        source: Arc::new(std::io::Error::other("gone")),
    });
    let error = AuthError::Token(core);
    assert_eq!(
        error.to_string(),
        "no access token could be obtained, so the request was not sent"
    );
    let walked = chain(&error).to_string();
    assert_eq!(
        walked,
        "no access token could be obtained, so the request was not sent: could not read /g.json: gone"
    );
    assert_eq!(walked.matches("gone").count(), 1);
}
