//! The protected resource: `/resource` (any valid token) and `/resource/{scope}` (a token
//! with that scope), answering with RFC 6750 challenges.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::response::Response;
use http::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::{Value, json};

use crate::server::{AccessStatus, Shared};

/// Request bodies up to this size are read (and their length echoed).
const MAX_RESOURCE_BODY: usize = 16 * 1024 * 1024;

/// `/resource`: any valid token.
pub(crate) async fn resource_root(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    serve(&shared, None, request).await
}

/// `/resource/{scope}`: a valid token that carries `scope`.
pub(crate) async fn resource_scoped(
    State(shared): State<Arc<Shared>>,
    Path(scope): Path<String>,
    request: Request,
) -> Response {
    serve(&shared, Some(scope), request).await
}

/// The token from `Authorization: Bearer <token>` (scheme compared case-insensitively).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

async fn serve(shared: &Shared, required_scope: Option<String>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let verdict = {
        let mut inner = shared.lock();
        inner.counters.resource_requests += 1;
        let verdict = match bearer(&parts.headers) {
            None => Err(challenge(
                StatusCode::UNAUTHORIZED,
                "Bearer realm=\"testkit\"".to_owned(),
                None,
            )),
            Some(token) => match inner.access_status(token) {
                AccessStatus::Valid(record) => match &required_scope {
                    Some(scope) if !record.scope.contains(scope) => Err(challenge(
                        StatusCode::FORBIDDEN,
                        format!("Bearer error=\"insufficient_scope\", scope=\"{scope}\""),
                        Some(json!({
                            "error": "insufficient_scope",
                            "error_description": format!("the access token lacks scope {scope}"),
                            "scope": scope,
                        })),
                    )),
                    _ => Ok((record.client_id.clone(), record.scope.join(" "))),
                },
                AccessStatus::Unknown => Err(invalid_token("the access token is unknown")),
                AccessStatus::Expired => Err(invalid_token("the access token expired")),
                AccessStatus::Revoked => Err(invalid_token("the access token was revoked")),
            },
        };
        if verdict.is_err() {
            inner.counters.resource_rejected += 1;
        }
        verdict
    };
    let (client_id, scope) = match verdict {
        Ok(granted) => granted,
        Err(response) => return response,
    };
    let body_len = match axum::body::to_bytes(body, MAX_RESOURCE_BODY).await {
        Ok(body) => body.len(),
        Err(_) => return json_response(StatusCode::PAYLOAD_TOO_LARGE, None, &json!({"ok": false})),
    };
    json_response(
        StatusCode::OK,
        None,
        &json!({
            "ok": true,
            "client_id": client_id,
            "scope": scope,
            "method": parts.method.as_str(),
            "body_len": body_len,
        }),
    )
}

fn invalid_token(description: &str) -> Response {
    challenge(
        StatusCode::UNAUTHORIZED,
        format!(
            "Bearer realm=\"testkit\", error=\"invalid_token\", error_description=\"{description}\""
        ),
        Some(json!({ "error": "invalid_token", "error_description": description })),
    )
}

fn challenge(status: StatusCode, www_authenticate: String, body: Option<Value>) -> Response {
    let header = HeaderValue::try_from(www_authenticate).ok();
    match body {
        Some(body) => json_response(status, header, &body),
        None => {
            let mut response = Response::new(axum::body::Body::empty());
            *response.status_mut() = status;
            if let Some(header) = header {
                response.headers_mut().insert(WWW_AUTHENTICATE, header);
            }
            response
        }
    }
}

fn json_response(
    status: StatusCode,
    www_authenticate: Option<HeaderValue>,
    body: &Value,
) -> Response {
    let body = serde_json::to_vec(body).unwrap_or_default();
    let mut response = Response::new(axum::body::Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(header) = www_authenticate {
        headers.insert(WWW_AUTHENTICATE, header);
    }
    response
}
