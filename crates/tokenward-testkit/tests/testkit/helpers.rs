//! Shared helpers: request builders and a collected response.

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tokenward::HttpClient;
use tokenward_testkit::FakeServer;

pub(crate) const CLIENT: &str = "demo-client";
pub(crate) const SECRET: &str = "demo-secret";

/// `demo-client`/`demo-secret` limited to `jobs.read jobs.write`, a public client `spa`, and
/// `open-client`/`open-secret` with no scope limit.
pub(crate) fn server() -> FakeServer {
    FakeServer::builder()
        .client(CLIENT, SECRET)
        .client_scopes(CLIENT, "jobs.read jobs.write")
        .client("open-client", "open-secret")
        .public_client("spa")
        .build()
}

/// A response with its body read.
#[derive(Debug)]
pub(crate) struct Collected {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Collected {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    pub(crate) fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_default().to_owned()
    }

    pub(crate) fn access_token(&self) -> String {
        assert_eq!(
            self.status,
            200,
            "{:?}",
            String::from_utf8_lossy(&self.body)
        );
        self.json()["access_token"].as_str().unwrap().to_owned()
    }

    pub(crate) fn refresh_token(&self) -> String {
        assert_eq!(
            self.status,
            200,
            "{:?}",
            String::from_utf8_lossy(&self.body)
        );
        self.json()["refresh_token"].as_str().unwrap().to_owned()
    }
}

pub(crate) async fn send(server: &FakeServer, request: http::Request<Bytes>) -> Collected {
    let response = server
        .http_client()
        .send(request)
        .await
        .expect("in-process send");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Collected {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

pub(crate) fn encode_form(params: &[(&str, &str)]) -> Bytes {
    let mut form = form_urlencoded::Serializer::new(String::new());
    for (name, value) in params {
        form.append_pair(name, value);
    }
    Bytes::from(form.finish())
}

/// `Basic base64(urlencode(id):urlencode(secret))`, RFC 6749 §2.3.1.
pub(crate) fn basic(id: &str, secret: &str) -> String {
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let credentials = format!("{}:{}", enc(id), enc(secret));
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(credentials)
    )
}

pub(crate) fn form_request(url: &str) -> http::request::Builder {
    http::Request::post(url).header("content-type", "application/x-www-form-urlencoded")
}

/// A token request with `client_secret_post`-style parameters (or none) in `params`.
pub(crate) async fn token(server: &FakeServer, params: &[(&str, &str)]) -> Collected {
    let request = form_request(&server.token_url())
        .body(encode_form(params))
        .unwrap();
    send(server, request).await
}

/// A token request authenticated with `client_secret_basic`.
pub(crate) async fn token_basic(
    server: &FakeServer,
    id: &str,
    secret: &str,
    params: &[(&str, &str)],
) -> Collected {
    let request = form_request(&server.token_url())
        .header("authorization", basic(id, secret))
        .body(encode_form(params))
        .unwrap();
    send(server, request).await
}

/// Client credentials for `demo-client` with `client_secret_post`.
pub(crate) async fn client_credentials(server: &FakeServer, scope: &str) -> Collected {
    let mut params = vec![
        ("grant_type", "client_credentials"),
        ("client_id", CLIENT),
        ("client_secret", SECRET),
    ];
    if !scope.is_empty() {
        params.push(("scope", scope));
    }
    token(server, &params).await
}

/// A refresh for `demo-client` (basic authentication).
pub(crate) async fn refresh(server: &FakeServer, refresh_token: &str) -> Collected {
    token_basic(
        server,
        CLIENT,
        SECRET,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ],
    )
    .await
}

/// `GET {path}` with a bearer token (or none).
pub(crate) async fn get(server: &FakeServer, path: &str, token: Option<&str>) -> Collected {
    let mut request = http::Request::get(server.url(path));
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    send(server, request.body(Bytes::new()).unwrap()).await
}
