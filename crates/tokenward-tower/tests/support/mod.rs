//! Helpers shared by the integration tests (each test binary uses a part of them).
#![allow(dead_code, unreachable_pub)]

pub mod e2e;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::WWW_AUTHENTICATE;
use http::{Response, StatusCode};
use http_body_util::Full;
use tokenward::{Token, TokenCache, grant::from_fn};

/// The request type of the mock tests.
pub type Req = http::Request<Full<Bytes>>;
/// The response type of the mock tests.
pub type Res = Response<String>;

/// A cache whose source issues `tok-1`, `tok-2`, ... (valid for an hour), and the count of
/// token calls.
pub fn counting_cache() -> (TokenCache, Arc<AtomicUsize>) {
    counting_cache_with(Duration::ZERO)
}

/// As [`counting_cache`], each token call taking `latency` (tokio time).
pub fn counting_cache_with(latency: Duration) -> (TokenCache, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let cache = TokenCache::new(from_fn(move || {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            Token::builder(format!("tok-{n}"))
                .expires_in(Duration::from_secs(3600))
                .build()
        }
    }));
    (cache, calls)
}

/// A cache whose source always issues the same token.
pub fn same_token_cache() -> (TokenCache, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let cache = TokenCache::new(from_fn(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        async {
            Token::builder("always-the-same")
                .expires_in(Duration::from_secs(3600))
                .build()
        }
    }));
    (cache, calls)
}

pub fn request(body: &'static str) -> Req {
    http::Request::post("http://api.example/jobs")
        .header("x-request", "kept")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

pub fn response(status: u16) -> Res {
    let mut r = Response::new(format!("status {status}"));
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r
}

pub fn challenge(status: u16, www_authenticate: &'static str) -> Res {
    let mut r = response(status);
    r.headers_mut().insert(
        WWW_AUTHENTICATE,
        http::HeaderValue::from_static(www_authenticate),
    );
    r
}

pub fn invalid_token() -> Res {
    challenge(
        401,
        r#"Bearer realm="api", error="invalid_token", error_description="expired""#,
    )
}

pub fn bearer(req: &http::Request<impl Sized>) -> String {
    req.headers()
        .get(http::header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}
