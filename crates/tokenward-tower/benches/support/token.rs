//! The token both tower benches use.

use std::time::Duration;

use http::HeaderValue;
use tokenward::{Token, TokenCache, grant::from_fn};

/// A cache holding a JWT-sized token, fresh for an hour (fetched on `runtime`), with the
/// token's own header value and a static copy of it (what a fixed header setter is given).
pub(crate) fn fresh_cache(
    runtime: &tokio::runtime::Runtime,
) -> (TokenCache, HeaderValue, HeaderValue) {
    let token = format!("eyJhbGciOiJSUzI1NiJ9.{}.sig", "x".repeat(48));
    let cache = TokenCache::new(from_fn(move || {
        let token = token.clone();
        async move {
            Token::builder(token)
                .expires_in(Duration::from_secs(3600))
                .build()
        }
    }));
    let header = runtime.block_on(cache.header()).unwrap();
    let static_header = HeaderValue::from_str(header.to_str().unwrap()).unwrap();
    (cache, header, static_header)
}
