//! No secret — the client secret, any access token issued — appears in `tracing` output at
//! TRACE level (every crate's, hyper's and reqwest's included), in `Debug` output or in error
//! messages, while requests go through tokenward-tower's `AuthLayer` (over a hyper client)
//! and tokenward-reqwest's `AuthMiddleware` and `RetryMiddleware`: successes, a 401
//! `invalid_token` and its resend, a streaming body that is not resent, a token endpoint
//! that fails, and tenant errors. (The core's own flows are covered by
//! `crates/tokenward/tests/no_secrets.rs`.)
//!
//! The spans' fields and the metrics' labels are checked the same way.
//!
//! One test in this binary: it installs a global subscriber and a global metrics recorder,
//! so threads other than the test's (hyper's and reqwest's connection tasks) are captured
//! too.

use std::convert::Infallible;
use std::io;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::Request;
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use metrics_util::debugging::DebuggingRecorder;
use reqwest_middleware::ClientBuilder;
use secrecy::ExposeSecret;
use tokenward::{ClientCredentials, TenantCache, TokenCache};
use tokenward_reqwest::{AuthMiddleware, RetryMiddleware};
use tokenward_testkit::{FakeServer, Fault};
use tokenward_tower::tenant::Tenant;
use tokenward_tower::{AuthLayer, BoxError};
use tower::{Layer, Service, ServiceExt};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::FmtSpan;

const CLIENT_SECRET: &str = "cs-Integrations-Secret-4b1d";

/// A request body that streams: never copied, never resent.
type Streaming = StreamBody<
    futures_util::stream::Iter<std::array::IntoIter<Result<Frame<Bytes>, Infallible>, 2>>,
>;

/// A `MakeWriter` that appends everything to one shared buffer.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Every token the cache has held so far, recorded by the caller as it goes.
fn record(cache: &TokenCache, secrets: &mut Vec<String>) {
    if let Some(token) = cache.cached() {
        let value = token.access_token().expose_secret().to_owned();
        if !secrets.contains(&value) {
            secrets.push(value);
        }
    }
}

fn grant(token_url: String) -> ClientCredentials {
    ClientCredentials::builder(token_url, "svc")
        .client_secret(CLIENT_SECRET)
        .scope("jobs.read")
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_logs_debug_or_errors_through_the_integrations() {
    let capture = Capture::default();
    // Spans are written when they close too, with every field recorded on them.
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .with_ansi(false)
        .with_span_events(FmtSpan::CLOSE)
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();
    // And every metric, with its labels.
    let recorder = DebuggingRecorder::new();
    let metrics = recorder.snapshotter();
    metrics::set_global_recorder(recorder).unwrap();

    let server = FakeServer::builder().client("svc", CLIENT_SECRET).build();
    let running = server.listen().await.unwrap();
    let mut secrets = vec![CLIENT_SECRET.to_owned()];
    let mut shown: Vec<String> = Vec::new();

    // tower: AuthLayer over a hyper client.
    let cache = TokenCache::new(grant(running.token_url()));
    let hyper = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let client = AuthLayer::new(cache.clone()).layer(hyper);
    shown.push(format!("{client:?}"));
    let get = || {
        Request::get(running.resource_url())
            .body(Full::default())
            .unwrap()
    };
    let response = client.clone().oneshot(get()).await.unwrap();
    assert_eq!(response.status(), 200);
    shown.push(format!("{response:?}"));
    record(&cache, &mut secrets);
    // Revoked: 401 invalid_token, invalidated, refreshed, resent once.
    server.revoke_all_access_tokens();
    let mut service = client.clone();
    let future = service.ready().await.unwrap().call(get());
    shown.push(format!("{future:?}"));
    assert_eq!(future.await.unwrap().status(), 200);
    record(&cache, &mut secrets);
    assert_eq!(server.counters().token_requests, 2);
    // A streaming body after another revocation: returned as is, never resent.
    server.revoke_all_access_tokens();
    let streamed = AuthLayer::new(cache.clone())
        .layer(Client::builder(TokioExecutor::new()).build_http::<Streaming>());
    let chunks = [&b"chunk-1"[..], b"chunk-2"]
        .map(|chunk| Ok::<_, Infallible>(Frame::data(Bytes::from_static(chunk))));
    let request = Request::post(running.resource_url())
        .body(StreamBody::new(futures_util::stream::iter(chunks)))
        .unwrap();
    let response = streamed.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 401);
    shown.push(format!(
        "{:?}",
        response.into_body().collect().await.unwrap()
    ));
    // The token endpoint fails: a typed error, nothing sent.
    server.set_fault(Some(Fault::InvalidClient));
    let error: BoxError = client.clone().oneshot(get()).await.unwrap_err();
    shown.push(format!("{error} {error:?}"));
    server.set_fault(None);
    // Tenants: an unknown one.
    let tenants: TenantCache<String> = TenantCache::builder()
        .tenant("acme".to_string(), grant(running.token_url()))
        .build();
    let by_tenant = AuthLayer::tenants(tenants.clone())
        .layer(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());
    let mut request = get();
    request.extensions_mut().insert(Tenant("acme".to_string()));
    assert_eq!(
        by_tenant.clone().oneshot(request).await.unwrap().status(),
        200
    );
    record(&tenants.get("acme").unwrap(), &mut secrets);
    let mut request = get();
    request
        .extensions_mut()
        .insert(Tenant("initech".to_string()));
    let error = by_tenant.oneshot(request).await.unwrap_err();
    shown.push(format!("{error} {error:?} {tenants:?}"));

    // reqwest: RetryMiddleware outermost, then AuthMiddleware.
    let cache = TokenCache::new(grant(running.token_url()));
    let auth = AuthMiddleware::new(cache.clone());
    shown.push(format!("{auth:?} {:?}", RetryMiddleware::new()));
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(RetryMiddleware::new())
        .with(auth)
        .build();
    let response = client.get(running.resource_url()).send().await.unwrap();
    assert_eq!(response.status(), 200);
    shown.push(format!("{response:?}"));
    record(&cache, &mut secrets);
    server.revoke_all_access_tokens();
    // An API credential in the query string: the resend's log line names the URL without it.
    let query_secret = "qs-Api-Key-Secret-9f2e";
    let url = format!("{}?api_key={query_secret}", running.resource_url());
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200, "refreshed and resent once");
    record(&cache, &mut secrets);
    secrets.push(query_secret.to_owned());
    server.set_fault(Some(Fault::InvalidClient));
    cache.clear();
    let error = client.get(running.resource_url()).send().await.unwrap_err();
    shown.push(format!("{error} {error:?}"));
    server.set_fault(None);

    // Every token was seen, and the capture did record the layers' own events.
    assert!(secrets.len() >= 7, "{} secrets", secrets.len());
    let logs = String::from_utf8_lossy(&capture.0.lock().unwrap()).into_owned();
    assert!(
        logs.contains("invalid_token"),
        "the 401 handling was logged"
    );
    assert!(
        logs.contains("hyper"),
        "hyper's own TRACE events were captured"
    );
    for span in [
        "tokenward.token_request",
        "tokenward.refresh",
        "tokenward.resend",
    ] {
        assert!(logs.contains(span), "the {span} spans were captured");
    }
    let labels: Vec<String> = metrics
        .snapshot()
        .into_vec()
        .into_iter()
        .flat_map(|(key, ..)| {
            let key = key.key().clone();
            let name = key.name().to_owned();
            key.labels()
                .map(|l| format!("{name} {}={}", l.key(), l.value()))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        labels.iter().any(|l| l.contains("tokenward.rejections")),
        "the resends were counted: {labels:?}"
    );
    shown.extend(labels);
    for secret in &secrets {
        assert!(!logs.contains(secret.as_str()), "a secret in the logs");
        for text in &shown {
            assert!(!text.contains(secret.as_str()), "a secret in: {text}");
        }
    }
}
