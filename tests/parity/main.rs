//! One table of API responses through `AuthLayer` (over a hyper client) and `AuthMiddleware`
//! (over reqwest), against the same scripted resource on 127.0.0.1: both integrations make
//! the same decision — resent or not, token calls, final status, and what the
//! `tokenward.rejections` metric counted — because both call the core's one routine
//! (`tokenward::Rejection`, `TokenCache::replace_rejected`).
//!
//! A second table does the same for the retry layers, `ClassifiedRetry` and `RetryMiddleware`:
//! both ask the core's `RetryRule` whether a request (by its method and `Idempotency-Key`) may
//! be sent again after a response.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use std::time::Duration;
use tokio::sync::Notify;

use bytes::Bytes;
use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokenward::classify::IDEMPOTENCY_KEY;
use tokenward::grant::from_fn;
use tokenward::metrics::REJECTIONS;
use tokenward::timing::Backoff;
use tokenward::{Error, Tenant, TenantCache, Token, TokenCache};
use tokenward_reqwest::{AuthMiddleware, RetryMiddleware, token_error};
use tokenward_testkit::metrics::record;
use tokenward_tower::retry::ClassifiedRetry;
use tokenward_tower::{AuthError, AuthLayer};
use tower::{Layer, ServiceBuilder, ServiceExt};

/// The first answer of the resource; every later request is answered 200.
#[derive(Debug, Clone, Copy)]
struct First {
    status: u16,
    challenge: Option<&'static str>,
}

/// A resource on 127.0.0.1 that answers its first request with `first`, then 200, and
/// counts the requests. With a gate, the first answer waits until the gate opens (and
/// `arrived` is notified when the first request is in).
struct Resource {
    url: String,
    requests: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<String>>>,
    arrived: Arc<Notify>,
    gate: Option<Arc<Notify>>,
    _server: tokio::task::JoinHandle<()>,
}

async fn resource(first: First) -> Resource {
    serve(first, None).await
}

async fn serve(first: First, gate: Option<Arc<Notify>>) -> Resource {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jobs", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let arrived = Arc::new(Notify::new());
    let (count, log) = (Arc::clone(&requests), Arc::clone(&seen));
    let (arrival, held) = (Arc::clone(&arrived), gate.clone());
    let server = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (count, log) = (Arc::clone(&count), Arc::clone(&log));
            let (arrival, held) = (Arc::clone(&arrival), held.clone());
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let n = count.fetch_add(1, Ordering::SeqCst);
                let auth = req.headers().get(AUTHORIZATION).cloned();
                log.lock().unwrap().push(
                    auth.map(|v| v.to_str().unwrap().to_owned())
                        .unwrap_or_default(),
                );
                let (arrival, held) = (Arc::clone(&arrival), held.clone());
                async move {
                    // Read the body, as a server does.
                    let _ = req.into_body().collect().await;
                    if n == 0 {
                        arrival.notify_one();
                        if let Some(gate) = held {
                            gate.notified().await;
                        }
                    }
                    let mut response = Response::new(Full::new(Bytes::from_static(b"{}")));
                    if n == 0 {
                        *response.status_mut() = StatusCode::from_u16(first.status).unwrap();
                        if let Some(challenge) = first.challenge {
                            response
                                .headers_mut()
                                .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
                        }
                    }
                    Ok::<_, Infallible>(response)
                }
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Resource {
        url,
        requests,
        seen,
        arrived,
        gate,
        _server: server,
    }
}

/// A cache issuing `t1`, `t2`, ... (or always the same token), and its token calls.
fn cache(same_token: bool) -> (TokenCache, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let cache = TokenCache::new(from_fn(move || {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            let name = if same_token {
                "same".to_owned()
            } else {
                format!("t{n}")
            };
            Token::builder(name)
                .expires_in(Duration::from_secs(3600))
                .build()
        }
    }));
    (cache, calls)
}

#[derive(Debug, Clone, Copy)]
struct Row {
    name: &'static str,
    first: First,
    bare_401: bool,
    streaming: bool,
    same_token: bool,
}

/// What one integration did with a row.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    resent: bool,
    token_calls: usize,
    status: u16,
    /// Whether the rejected token is still cached afterwards.
    first_token_cached: bool,
    /// What `tokenward.rejections` counted (its `outcome`), if anything.
    counted: Option<String>,
}

type TowerBody = Either<
    Full<Bytes>,
    StreamBody<futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>,
>;

/// The resource of a row, a cache, its token calls, and the token it holds before the request.
async fn setup(row: Row) -> (Resource, TokenCache, Arc<AtomicUsize>, HeaderValue) {
    let resource = resource(row.first).await;
    let (cache, calls) = cache(row.same_token);
    let first = cache.header().await.unwrap();
    (resource, cache, calls, first)
}

async fn through_tower(row: Row) -> Outcome {
    let (resource, cache, calls, first) = setup(row).await;
    let hyper = Client::builder(TokioExecutor::new()).build_http::<TowerBody>();
    let client = AuthLayer::new(cache.clone())
        .retry_bare_401(row.bare_401)
        .layer(hyper);
    let body: TowerBody = if row.streaming {
        Either::Right(StreamBody::new(futures_util::stream::iter(vec![Ok(
            Frame::data(Bytes::from_static(b"streamed")),
        )])))
    } else {
        Either::Left(Full::new(Bytes::from_static(b"payload")))
    };
    let request = Request::post(&resource.url).body(body).unwrap();
    let status = client.oneshot(request).await.unwrap().status();
    outcome(&resource, &calls, status.as_u16(), &cache, &first)
}

async fn through_reqwest(row: Row) -> Outcome {
    let (resource, cache, calls, first) = setup(row).await;
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(AuthMiddleware::new(cache.clone()).retry_bare_401(row.bare_401))
        .build();
    let body = if row.streaming {
        reqwest::Body::wrap(String::from("streamed"))
    } else {
        reqwest::Body::from("payload")
    };
    let status = client
        .post(&resource.url)
        .body(body)
        .send()
        .await
        .unwrap()
        .status();
    outcome(&resource, &calls, status.as_u16(), &cache, &first)
}

fn outcome(
    resource: &Resource,
    calls: &AtomicUsize,
    status: u16,
    cache: &TokenCache,
    first: &HeaderValue,
) -> Outcome {
    let seen = resource.seen.lock().unwrap().clone();
    assert_eq!(seen.first().map(String::as_str), first.to_str().ok());
    Outcome {
        resent: resource.requests.load(Ordering::SeqCst) > 1,
        token_calls: calls.load(Ordering::SeqCst),
        status,
        first_token_cached: cache.cached().is_some_and(|t| t.header_value() == first),
        counted: None,
    }
}

/// Runs one integration's row on a current-thread runtime, with a recorder for its metrics:
/// the outcome, and what the rejections counter counted under `integration`.
fn run(integration: &str, row: Row, through: fn(Row) -> BoxedOutcome) -> Outcome {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (mut outcome, recorded) = record(|| runtime.block_on(through(row)));
    let counted: Vec<&str> = ["resent", "same_token", "not_replayable", "failed"]
        .into_iter()
        .filter(|o| {
            recorded.counter(REJECTIONS, &[("integration", integration), ("outcome", o)]) > 0
        })
        .collect();
    assert!(counted.len() <= 1, "{}: {counted:?}", row.name);
    assert_eq!(
        recorded.counter(REJECTIONS, &[]),
        counted.len() as u64,
        "{}: one count at most",
        row.name
    );
    outcome.counted = counted.first().map(|o| (*o).to_owned());
    outcome
}

type BoxedOutcome = std::pin::Pin<Box<dyn std::future::Future<Output = Outcome>>>;

const INVALID_TOKEN: &str = r#"Bearer realm="api", error="invalid_token""#;

fn row(name: &'static str, status: u16, challenge: Option<&'static str>) -> Row {
    Row {
        name,
        first: First { status, challenge },
        bare_401: false,
        streaming: false,
        same_token: false,
    }
}

#[test]
fn both_integrations_decide_alike() {
    let bare = Some("Bearer realm=\"api\"");
    let scope = Some(r#"Bearer error="insufficient_scope", scope="jobs.write""#);
    let other = Some(r#"Bearer error="invalid_request""#);
    let with = |row: Row, f: fn(&mut Row)| {
        let mut row = row;
        f(&mut row);
        row
    };
    // (row, expected: resent, token calls, final status, the rejected token still cached,
    // what the rejections counter counted)
    let rows = [
        (
            row("401 invalid_token", 401, Some(INVALID_TOKEN)),
            (true, 2, 200, false, Some("resent")),
        ),
        (row("bare 401", 401, bare), (false, 1, 401, true, None)),
        (
            row("401 without a challenge", 401, None),
            (false, 1, 401, true, None),
        ),
        (
            with(row("bare 401, bare_401 on", 401, bare), |r| {
                r.bare_401 = true
            }),
            (true, 2, 200, false, Some("resent")),
        ),
        (
            with(
                row("401 without a challenge, bare_401 on", 401, None),
                |r| r.bare_401 = true,
            ),
            (true, 2, 200, false, Some("resent")),
        ),
        (
            row("401 with another error", 401, other),
            (false, 1, 401, true, None),
        ),
        (
            row("400 invalid_token", 400, Some(INVALID_TOKEN)),
            (false, 1, 400, true, None),
        ),
        (
            row("403 insufficient_scope", 403, scope),
            (false, 1, 403, true, None),
        ),
        (
            with(
                row("a body that cannot be replayed", 401, Some(INVALID_TOKEN)),
                |r| r.streaming = true,
            ),
            (false, 1, 401, false, Some("not_replayable")),
        ),
        (
            with(
                row("the same token returned again", 401, Some(INVALID_TOKEN)),
                |r| r.same_token = true,
            ),
            (false, 2, 401, true, Some("same_token")),
        ),
    ];
    for (row, (resent, token_calls, status, first_token_cached, counted)) in rows {
        let tower = run("tower", row, |row| Box::pin(through_tower(row)));
        let reqwest = run("reqwest", row, |row| Box::pin(through_reqwest(row)));
        assert_eq!(tower, reqwest, "{}: the integrations disagree", row.name);
        let expected = Outcome {
            resent,
            token_calls,
            status,
            first_token_cached,
            counted: counted.map(str::to_owned),
        };
        assert_eq!(tower, expected, "{}", row.name);
    }
}

/// One row of the retry table: a request and the resource's first answer (then 200).
#[derive(Debug, Clone, Copy)]
struct RetryRow {
    name: &'static str,
    method: &'static str,
    idempotency_key: bool,
    first: u16,
    retry_non_idempotent: bool,
}

/// What one retry layer did with a row.
#[derive(Debug, PartialEq, Eq)]
struct Attempts {
    /// Requests the resource received.
    requests: usize,
    /// The status the caller got.
    status: u16,
}

/// Backoff short enough for real time.
fn quick() -> Backoff {
    Backoff::new(Duration::from_millis(1), Duration::from_millis(5))
}

async fn retried_by_tower(row: RetryRow) -> Attempts {
    let resource = resource(First {
        status: row.first,
        challenge: None,
    })
    .await;
    let hyper = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let policy = ClassifiedRetry::new()
        .backoff(quick())
        .retry_non_idempotent(row.retry_non_idempotent);
    let client = ServiceBuilder::new().retry(policy).service(hyper);
    let mut request = Request::builder().method(row.method).uri(&resource.url);
    if row.idempotency_key {
        request = request.header(IDEMPOTENCY_KEY, "order-7f3a");
    }
    let request = request
        .body(Full::new(Bytes::from_static(b"charge")))
        .unwrap();
    let status = client.oneshot(request).await.unwrap().status().as_u16();
    Attempts {
        requests: resource.requests.load(Ordering::SeqCst),
        status,
    }
}

async fn retried_by_reqwest(row: RetryRow) -> Attempts {
    let resource = resource(First {
        status: row.first,
        challenge: None,
    })
    .await;
    let retry = RetryMiddleware::new()
        .backoff(quick())
        .retry_non_idempotent(row.retry_non_idempotent);
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(retry)
        .build();
    let method = reqwest::Method::from_bytes(row.method.as_bytes()).unwrap();
    let mut request = client.request(method, &resource.url).body("charge");
    if row.idempotency_key {
        request = request.header(IDEMPOTENCY_KEY, "order-7f3a");
    }
    let status = request.send().await.unwrap().status().as_u16();
    Attempts {
        requests: resource.requests.load(Ordering::SeqCst),
        status,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_retry_layers_apply_one_method_rule() {
    let row = |name, method, first| RetryRow {
        name,
        method,
        idempotency_key: false,
        first,
        retry_non_idempotent: false,
    };
    let keyed = |row: RetryRow| RetryRow {
        idempotency_key: true,
        ..row
    };
    let opted_in = |row: RetryRow| RetryRow {
        retry_non_idempotent: true,
        ..row
    };
    // (row, expected: requests the resource received, final status)
    let rows = [
        (row("POST + 502", "POST", 502), (1, 502)),
        (
            keyed(row("POST + Idempotency-Key + 502", "POST", 502)),
            (2, 200),
        ),
        (row("POST + 429", "POST", 429), (2, 200)),
        (row("GET + 502", "GET", 502), (2, 200)),
        (row("PUT + 503", "PUT", 503), (2, 200)),
        (row("PATCH + 503", "PATCH", 503), (1, 503)),
        (opted_in(row("POST + 502, opted in", "POST", 502)), (2, 200)),
        (opted_in(row("POST + 501, opted in", "POST", 501)), (1, 501)),
    ];
    for (row, (requests, status)) in rows {
        let tower = retried_by_tower(row).await;
        let reqwest = retried_by_reqwest(row).await;
        assert_eq!(tower, reqwest, "{}: the integrations disagree", row.name);
        assert_eq!(tower, Attempts { requests, status }, "{}", row.name);
    }
}

/// A request in flight when its tenant is removed is not resent with a new token, in both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_tenant_is_not_resent_in_either() {
    for integration in ["tower", "reqwest"] {
        let gate = Arc::new(Notify::new());
        let first = First {
            status: 401,
            challenge: Some(INVALID_TOKEN),
        };
        let resource = serve(first, Some(Arc::clone(&gate))).await;
        let (cache, calls) = cache(false);
        let tenants: TenantCache<String> = TenantCache::new();
        tenants.insert_cache("acme".to_owned(), cache);
        let url = resource.url.clone();
        let call = match integration {
            "tower" => {
                let hyper = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
                let client = AuthLayer::tenants(tenants.clone()).layer(hyper);
                let mut request = Request::get(&url).body(Full::default()).unwrap();
                request.extensions_mut().insert(Tenant::new("acme"));
                tokio::spawn(async move {
                    let error = client.oneshot(request).await.unwrap_err();
                    match error.downcast_ref::<AuthError>() {
                        Some(AuthError::Token(e @ Error::TenantRemoved { .. })) => e.to_string(),
                        other => panic!("{other:?}"),
                    }
                })
            }
            _ => {
                let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
                    .with(AuthMiddleware::tenants(tenants.clone()))
                    .build();
                tokio::spawn(async move {
                    let send = client.get(&url).with_extension(Tenant::new("acme")).send();
                    let error = send.await.unwrap_err();
                    match token_error(&error) {
                        Some(e @ Error::TenantRemoved { .. }) => e.to_string(),
                        other => panic!("{other:?}"),
                    }
                })
            }
        };
        // The request is at the resource; the tenant goes; then the 401 comes back.
        resource.arrived.notified().await;
        assert!(tenants.remove("acme"));
        resource.gate.as_ref().unwrap().notify_one();
        let error = call.await.unwrap();
        assert!(error.contains("\"acme\""), "{integration}: {error}");
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "{integration}: no new token"
        );
        assert_eq!(
            resource.requests.load(Ordering::SeqCst),
            1,
            "{integration}: not resent"
        );
    }
}
