//! The metadata document (RFC 8414, OpenID Connect Discovery 1.0) at the issuer's two
//! well-known URLs, and endpoints that can move.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::header::HOST;
use http::{Method, StatusCode, Uri};
use serde_json::json;

use crate::fault::Endpoint;
use crate::server::Shared;
use crate::token::{Reply, serve_form};

const OAUTH_WELL_KNOWN: &str = "/.well-known/oauth-authorization-server";
const OPENID_WELL_KNOWN: &str = "/.well-known/openid-configuration";
/// The endpoints [`FakeServer::move_endpoints`](crate::FakeServer::move_endpoints) moves.
const MOVABLE: [&str; 4] = ["/authorize", "/token", "/introspect", "/revoke"];
/// Where a request to a moved-away endpoint is sent: nothing is there.
const NOWHERE: &str = "/.testkit-moved";

/// The router's fallback: the metadata at the issuer's well-known URLs, 404 elsewhere.
pub(crate) async fn metadata_endpoint(
    State(shared): State<Arc<Shared>>,
    request: Request,
) -> Response {
    let path = request.uri().path();
    let (oauth, openid) = {
        let inner = shared.lock();
        let issuer_path = &inner.issuer_path;
        (
            format!("{OAUTH_WELL_KNOWN}{issuer_path}"),
            format!("{issuer_path}{OPENID_WELL_KNOWN}"),
        )
    };
    let is_get = request.method() == Method::GET || request.method() == Method::HEAD;
    if !is_get || (path != oauth && path != openid) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let base = base_url(&request);
    serve_form(&shared, Endpoint::Metadata, request, move |shared, _| {
        let inner = shared.lock();
        let at = |path: &str| format!("{base}{}{path}", inner.endpoint_prefix);
        let issuer = inner
            .metadata_issuer
            .clone()
            .unwrap_or_else(|| format!("{base}{}", inner.issuer_path));
        Reply::json(
            StatusCode::OK,
            &json!({
                "issuer": issuer,
                "authorization_endpoint": at("/authorize"),
                "token_endpoint": at("/token"),
                "introspection_endpoint": at("/introspect"),
                "revocation_endpoint": at("/revoke"),
                "response_types_supported": ["code"],
                "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
                "code_challenge_methods_supported": ["S256"],
            }),
        )
    })
    .await
}

/// `http://<authority>`: from the request's absolute URI (the in-process client) or its
/// `Host` header (TCP).
fn base_url(request: &Request) -> String {
    let host = request
        .uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            request
                .headers()
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "testkit.invalid".to_owned());
    format!("http://{host}")
}

/// With the endpoints moved under a prefix, serves `<prefix>/token` as `/token` and sends
/// `/token` nowhere (404).
pub(crate) fn relocate(shared: &Shared, mut request: Request) -> Request {
    let prefix = shared.lock().endpoint_prefix.clone();
    if prefix.is_empty() {
        return request;
    }
    let path = request.uri().path();
    let moved_to = match path.strip_prefix(prefix.as_str()) {
        Some(rest) if MOVABLE.contains(&rest) => rest.to_owned(),
        _ if MOVABLE.contains(&path) => NOWHERE.to_owned(),
        _ => return request,
    };
    let mut parts = request.uri().clone().into_parts();
    let query = request
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    parts.path_and_query = format!("{moved_to}{query}").parse().ok();
    if let Ok(uri) = Uri::from_parts(parts) {
        *request.uri_mut() = uri;
    }
    request
}
