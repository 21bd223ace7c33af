//! The interop cases through the integrations rather than the bare cache:
//! tokenward-tower's `AuthLayer` around a real hyper client (alone, and inside a timeout →
//! `ClassifiedRetry` stack) and tokenward-reqwest's `AuthMiddleware` on a reqwest-middleware
//! client. Each scenario is written once and run through each integration, one
//! oidc-provider per test; the caller never sets `Authorization` itself.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http::header::WWW_AUTHENTICATE;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use serde_json::Value;
use tokenward::{TokenCache, TokenTypeHint};
use tokenward_reqwest::AuthMiddleware;
use tokenward_tower::retry::ClassifiedRetry;
use tokenward_tower::{AuthLayer, BoxError};
use tower::util::BoxCloneSyncService;
use tower::{Layer, ServiceBuilder, ServiceExt};

use crate::harness::{Provider, http};
use crate::{bearer, cc_grant, cc_revocation, introspection};

/// What the protected resource answered, read to the end.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    /// `WWW-Authenticate`, if any.
    challenge: Option<String>,
    body: Value,
}

impl Answer {
    fn new(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Answer {
        Answer {
            status,
            challenge: headers
                .get(WWW_AUTHENTICATE)
                .map(|v| v.to_str().unwrap().to_owned()),
            body: serde_json::from_slice(body).unwrap(),
        }
    }
}

/// A tower stack over hyper, whatever its layers, answering with the [`Answer`].
type TowerClient = BoxCloneSyncService<Request<Full<Bytes>>, Answer, BoxError>;

/// How the application sends its requests: the cache's token is set by the integration.
#[derive(Clone)]
enum Via {
    Tower(TowerClient),
    Reqwest(ClientWithMiddleware),
}

/// A service's response, read into an [`Answer`].
async fn answer<B>(response: Response<B>) -> Result<Answer, BoxError>
where
    B: BodyExt,
    B::Error: Into<BoxError>,
{
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(Into::into)?.to_bytes();
    Ok(Answer::new(parts.status, &parts.headers, &body))
}

fn hyper() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>()
}

impl Via {
    /// `AuthLayer` directly around a hyper client.
    fn auth_layer(cache: &TokenCache) -> Via {
        let client = AuthLayer::new(cache.clone()).layer(hyper());
        Via::Tower(BoxCloneSyncService::new(client.and_then(answer)))
    }

    /// The order the tower crate documents, outermost first: the caller's deadline,
    /// `ClassifiedRetry`, `AuthLayer`, hyper.
    fn timeout_retry_auth(cache: &TokenCache) -> Via {
        let client = ServiceBuilder::new()
            .timeout(Duration::from_secs(30))
            .retry(ClassifiedRetry::new())
            .layer(AuthLayer::new(cache.clone()))
            .service(hyper());
        Via::Tower(BoxCloneSyncService::new(client.and_then(answer)))
    }

    /// `AuthMiddleware` on a reqwest-middleware client.
    fn auth_middleware(cache: &TokenCache) -> Via {
        let client = ClientBuilder::new(http())
            .with(AuthMiddleware::new(cache.clone()))
            .build();
        Via::Reqwest(client)
    }

    /// GET `url`. `'static` and `Send`, to be spawned.
    fn get(&self, url: &str) -> impl Future<Output = Answer> + Send + 'static {
        let (via, url) = (self.clone(), url.to_owned());
        async move {
            match via {
                Via::Tower(client) => {
                    let request = Request::get(url).body(Full::default()).unwrap();
                    client.oneshot(request).await.unwrap()
                }
                Via::Reqwest(client) => {
                    let response = client.get(url).send().await.unwrap();
                    let (status, headers) = (response.status(), response.headers().clone());
                    Answer::new(status, &headers, &response.bytes().await.unwrap())
                }
            }
        }
    }
}

/// The header of the token `cache` holds now.
fn cached(cache: &TokenCache) -> HeaderValue {
    cache.cached().unwrap().header_value().clone()
}

/// 50 concurrent first requests through the integration: one client_credentials grant, and
/// every request accepted by the resource with that token; a later request reads the cache.
async fn client_credentials(via: fn(&TokenCache) -> Via) {
    let op = Provider::start(300);
    let http = http();
    let cache = TokenCache::new(cc_grant(&op));
    let via = via(&cache);

    let tasks: Vec<_> = (0..50)
        .map(|_| tokio::spawn(via.get(&op.resource)))
        .collect();
    for task in tasks {
        let answer = task.await.unwrap();
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(answer.body["client_id"], op.cc.id.as_str());
        assert_eq!(answer.body["scope"], "jobs.read");
    }
    let stats = op.stats(&http).await;
    assert_eq!(stats.grants("client_credentials"), 1, "{stats:?}");
    assert_eq!(stats.resource(200), 50);
    assert_eq!(stats.resource(401), 0);

    let token = cached(&cache);
    assert_eq!(via.get(&op.resource).await.status, 200);
    assert_eq!(cached(&cache), token);
    let stats = op.stats(&http).await;
    assert_eq!(stats.grants("client_credentials"), 1);
    assert_eq!(stats.resource(200), 51);
}

/// The cached token is revoked at the provider (RFC 7009): the next request meets a 401
/// `invalid_token`, and the integration drops the token, gets one new token and resends
/// once, so the caller sees a 200.
async fn revoked_token_refreshed_and_resent_once(via: fn(&TokenCache) -> Via) {
    let op = Provider::start(300);
    let http = http();
    let cache = TokenCache::new(cc_grant(&op));
    let via = via(&cache);
    assert_eq!(via.get(&op.resource).await.status, 200);
    let revoked = cached(&cache);

    cc_revocation(&op)
        .revoke(bearer(&revoked), Some(TokenTypeHint::AccessToken))
        .await
        .unwrap();
    // Revoked, but still in the cache: nothing told the cache yet.
    assert_eq!(cached(&cache), revoked);

    let answer = via.get(&op.resource).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body["client_id"], op.cc.id.as_str());
    let fresh = cached(&cache);
    assert_ne!(fresh, revoked);
    let stats = op.stats(&http).await;
    assert_eq!(stats.grants("client_credentials"), 2, "{stats:?}");
    assert_eq!(stats.resource(401), 1, "the revoked token, once");
    assert_eq!(stats.resource(200), 2, "the first request, the resend");

    // The provider agrees: the old token is dead, the one now cached is live.
    let introspection = introspection(&op);
    let (old, new) = (
        introspection.introspect(bearer(&revoked)).await.unwrap(),
        introspection.introspect(bearer(&fresh)).await.unwrap(),
    );
    assert!(!old.active);
    assert!(new.active);
}

/// 403 `insufficient_scope` reaches the caller as is: one request at the resource, no new
/// token (it would have the same scopes), and the cached token still serves what it may.
async fn insufficient_scope_not_retried(via: fn(&TokenCache) -> Via) {
    let op = Provider::start(300);
    let http = http();
    let cache = TokenCache::new(cc_grant(&op));
    let via = via(&cache);

    let answer = via.get(&op.resource_requiring("jobs.write")).await;
    assert_eq!(answer.status, 403, "{answer:?}");
    let challenge = answer.challenge.unwrap();
    assert!(
        challenge.contains(r#"error="insufficient_scope""#)
            && challenge.contains(r#"scope="jobs.write""#),
        "{challenge}"
    );
    assert_eq!(answer.body["error"], "insufficient_scope");
    let token = cached(&cache);
    let stats = op.stats(&http).await;
    assert_eq!(stats.grants("client_credentials"), 1, "{stats:?}");
    assert_eq!(stats.resource(403), 1, "not resent");
    assert_eq!(stats.resource(200) + stats.resource(401), 0);

    let answer = via.get(&op.resource_requiring("jobs.read")).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(cached(&cache), token);
    let stats = op.stats(&http).await;
    assert_eq!(stats.grants("client_credentials"), 1);
    assert_eq!(stats.resource(403), 1);
    assert_eq!(stats.resource(200), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_through_auth_layer() {
    client_credentials(Via::auth_layer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_through_auth_middleware() {
    client_credentials(Via::auth_middleware).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_through_timeout_retry_auth() {
    client_credentials(Via::timeout_retry_auth).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_refreshed_and_resent_once_through_auth_layer() {
    revoked_token_refreshed_and_resent_once(Via::auth_layer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_refreshed_and_resent_once_through_auth_middleware() {
    revoked_token_refreshed_and_resent_once(Via::auth_middleware).await;
}

/// `ClassifiedRetry` never retries a 401: `AuthLayer`, inside it, does the one resend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_refreshed_and_resent_once_through_timeout_retry_auth() {
    revoked_token_refreshed_and_resent_once(Via::timeout_retry_auth).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insufficient_scope_is_not_retried_through_auth_layer() {
    insufficient_scope_not_retried(Via::auth_layer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insufficient_scope_is_not_retried_through_auth_middleware() {
    insufficient_scope_not_retried(Via::auth_middleware).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insufficient_scope_is_not_retried_through_timeout_retry_auth() {
    insufficient_scope_not_retried(Via::timeout_retry_auth).await;
}
