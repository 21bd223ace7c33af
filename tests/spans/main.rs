//! The spans a trace shows: every token request in its own `tokenward.token_request` span
//! (grant, attempt, wait, status, outcome) under the refresh's `tokenward.refresh`, the
//! caller's `tokenward.wait`, and a resend after 401 `invalid_token` in `tokenward.resend`,
//! through both integrations (the tower layer over a service, the reqwest middleware over
//! loopback). No field carries a secret or a token.
//!
//! One test in this binary, with a subscriber for its thread set before anything runs:
//! `tracing` caches each callsite's interest globally, and other tests' threads without a
//! subscriber would fill that cache first.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use tokenward::{ClientCredentials, Token, TokenCache, grant::from_fn};
use tokenward_reqwest::AuthMiddleware;
use tokenward_testkit::{FakeServer, Fault};
use tokenward_tower::{AuthLayer, BoxError};
use tower::{Layer as _, ServiceExt as _};
use tracing_subscriber::layer::SubscriberExt as _;

const SECRET: &str = "svc-Secret-9f2e";

/// Spans and the fields recorded on them, by span id, in the order they were created.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<Span>>>);

/// A span's id, name and fields.
type Span = (u64, String, BTreeMap<String, String>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Spans {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        let parent = attrs.parent().cloned().or_else(|| {
            attrs
                .is_contextual()
                .then(|| ctx.current_span().id().cloned())
                .flatten()
        });
        if let Some(parent) = parent {
            fields.insert("parent_id".into(), parent.into_u64().to_string());
        }
        let name = attrs.metadata().name().to_owned();
        self.0.lock().unwrap().push((id.into_u64(), name, fields));
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut spans = self.0.lock().unwrap();
        if let Some((_, _, fields)) = spans.iter_mut().rev().find(|(i, ..)| *i == id.into_u64()) {
            values.record(&mut Fields(fields));
        }
    }
}

fn field(f: &BTreeMap<String, String>, k: &str) -> String {
    f.get(k).cloned().unwrap_or_default()
}

fn named(spans: &[Span], name: &str) -> Vec<BTreeMap<String, String>> {
    spans
        .iter()
        .filter(|(_, n, _)| n == name)
        .map(|(_, _, f)| f.clone())
        .collect()
}

/// A cache over `tok-1`, `tok-2`, ...
fn counting() -> TokenCache {
    let n = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    TokenCache::new(from_fn(move || {
        let n = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        async move { Token::builder(format!("tok-{n}")).build() }
    }))
}

#[test]
fn token_requests_waits_and_resends_have_spans_with_their_fields() {
    let spans = Spans::default();
    let subscriber = tracing_subscriber::registry().with(spans.clone());
    let _guard = tracing::subscriber::set_default(subscriber);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = FakeServer::builder().client("svc", SECRET).build();

    // A refresh whose first request meets a 503: two requests in one refresh.
    runtime.block_on(async {
        let grant = ClientCredentials::builder(server.token_url(), "svc")
            .client_secret(SECRET)
            .http_client(server.http_client())
            .build()
            .unwrap();
        let cache = TokenCache::builder(grant).name("billing").build();
        server.push_fault(Fault::Status(503));
        cache.header().await.unwrap();
    });
    let seen = spans.0.lock().unwrap().clone();
    let requests = named(&seen, "tokenward.token_request");
    assert_eq!(requests.len(), 2, "{seen:?}");
    assert_eq!(field(&requests[0], "attempt"), "1");
    assert_eq!(field(&requests[0], "wait_ms"), "0");
    assert_eq!(field(&requests[0], "http.response.status_code"), "503");
    assert_eq!(field(&requests[0], "outcome"), "server_error");
    assert_eq!(field(&requests[1], "attempt"), "2");
    assert_ne!(field(&requests[1], "wait_ms"), "0", "the backoff waited");
    assert_eq!(field(&requests[1], "http.response.status_code"), "200");
    assert_eq!(field(&requests[1], "outcome"), "success");
    for request in &requests {
        assert_eq!(field(request, "grant"), "client_credentials");
        assert_eq!(field(request, "cache"), "billing");
    }
    let refreshes = named(&seen, "tokenward.refresh");
    assert_eq!(refreshes.len(), 1);
    assert_eq!(field(&refreshes[0], "reason"), "first");
    assert_eq!(field(&refreshes[0], "grant"), "client_credentials");
    assert_eq!(named(&seen, "tokenward.wait").len(), 1, "the caller waited");
    // Each request is inside the refresh's span.
    let refresh_id = seen
        .iter()
        .find(|(_, n, _)| n == "tokenward.refresh")
        .map(|(id, ..)| id.to_string())
        .unwrap();
    for request in &requests {
        assert_eq!(field(request, "parent_id"), refresh_id);
    }

    // A refresh-token exchange runs in a task of its own: its status still reaches the
    // request's span.
    runtime.block_on(async {
        let seed = server.issue_refresh_token("svc", "");
        let grant = tokenward::RefreshTokenGrant::from_store(
            server.token_url(),
            "svc",
            tokenward::store::MemoryStore::with_refresh_token(seed),
        )
        .client_secret(SECRET)
        .http_client(server.http_client())
        .build()
        .unwrap();
        TokenCache::new(grant).header().await.unwrap();
    });
    let seen = spans.0.lock().unwrap().clone();
    let exchange = named(&seen, "tokenward.token_request")
        .into_iter()
        .find(|f| field(f, "grant") == "refresh_token")
        .expect("the refresh-token request's span");
    assert_eq!(field(&exchange, "http.response.status_code"), "200");
    assert_eq!(field(&exchange, "outcome"), "success");

    // tower: a 401 invalid_token for tok-1, resent with tok-2.
    runtime.block_on(async {
        let api = tower::service_fn(|req: http::Request<Full<Bytes>>| async move {
            let rejected = req.headers()["authorization"] == "Bearer tok-1";
            let mut response = http::Response::new(String::new());
            if rejected {
                *response.status_mut() = http::StatusCode::UNAUTHORIZED;
                response.headers_mut().insert(
                    http::header::WWW_AUTHENTICATE,
                    http::HeaderValue::from_static(r#"Bearer error="invalid_token""#),
                );
            }
            Ok::<_, BoxError>(response)
        });
        let client = AuthLayer::new(counting()).layer(api);
        let response = client
            .oneshot(http::Request::new(Full::new(Bytes::from_static(b"x"))))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    });
    // reqwest: every token revoked, the request resent once with a new one.
    runtime.block_on(async {
        let running = server.listen().await.unwrap();
        let grant = ClientCredentials::builder(running.token_url(), "svc")
            .client_secret(SECRET)
            .build()
            .unwrap();
        let cache = TokenCache::new(grant);
        let client = reqwest_middleware::ClientBuilder::new(
            reqwest::Client::builder().no_proxy().build().unwrap(),
        )
        .with(AuthMiddleware::new(cache))
        .build();
        client.get(running.resource_url()).send().await.unwrap();
        server.revoke_all_access_tokens();
        let response = client.get(running.resource_url()).send().await.unwrap();
        assert_eq!(response.status(), 200);
        running.shutdown().await;
    });
    let seen = spans.0.lock().unwrap().clone();
    let resends = named(&seen, "tokenward.resend");
    assert_eq!(resends.len(), 2, "{resends:?}");
    for (resend, integration) in resends.iter().zip(["tower", "reqwest"]) {
        assert_eq!(field(resend, "integration"), integration);
        assert_eq!(field(resend, "outcome"), "resent", "{integration}");
        assert_eq!(
            field(resend, "http.response.status_code"),
            "200",
            "{integration}"
        );
    }
    assert_eq!(
        named(&seen, "tokenward.refresh")
            .iter()
            .filter(|f| field(f, "reason") == "rejected")
            .count(),
        2,
        "each resend's token was refreshed for the rejection"
    );
    for (_, name, fields) in &seen {
        for value in fields.values() {
            assert!(!value.contains(SECRET), "{name}: {value}");
            assert!(
                !value.contains("at_") && !value.contains("tok-"),
                "{name}: {value}"
            );
        }
    }
}
