//! The spans of a refresh: every token request in its own span, with its attempt, wait,
//! status and outcome, under the refresh's span; the caller's wait in another. One test in
//! this binary: a subscriber scoped to one thread meets `tracing`'s global callsite cache,
//! which other tests' threads would fill without it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokenward::{ClientCredentials, TokenCache};
use tokenward_testkit::{FakeServer, Fault};

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
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
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

#[test]
fn every_token_request_has_a_span_with_its_attempt_status_and_outcome() {
    use tracing_subscriber::layer::SubscriberExt as _;
    let spans = Spans::default();
    let subscriber = tracing_subscriber::registry().with(spans.clone());
    let server = FakeServer::builder().client("svc", SECRET).build();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    tracing::subscriber::with_default(subscriber, || {
        runtime.block_on(async {
            let grant = ClientCredentials::builder(server.token_url(), "svc")
                .client_secret(SECRET)
                .http_client(server.http_client())
                .build()
                .unwrap();
            let cache = TokenCache::builder(grant).name("billing").build();
            server.push_fault(Fault::Status(503));
            cache.header().await.unwrap();
        })
    });
    let spans = spans.0.lock().unwrap().clone();
    let named = |name: &str| {
        spans
            .iter()
            .filter(|(_, n, _)| n == name)
            .map(|(_, _, f)| f.clone())
            .collect::<Vec<_>>()
    };
    let requests = named("tokenward.token_request");
    assert_eq!(requests.len(), 2, "{spans:?}");
    let field = |f: &BTreeMap<String, String>, k: &str| f.get(k).cloned().unwrap_or_default();
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
    let refreshes = named("tokenward.refresh");
    assert_eq!(refreshes.len(), 1);
    assert_eq!(field(&refreshes[0], "reason"), "first");
    assert_eq!(named("tokenward.wait").len(), 1, "the caller waited");
    for (_, name, fields) in &spans {
        for value in fields.values() {
            assert!(!value.contains(SECRET), "{name}: {value}");
            assert!(!value.contains("at_"), "{name}: {value}");
        }
    }
}
