//! `POST /introspect` (RFC 7662) and `POST /revoke` (RFC 7009), both with client
//! authentication as at the token endpoint.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::response::Response;
use http::StatusCode;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use crate::fault::Endpoint;
use crate::server::{AccessStatus, Inner, Shared, USER_SUBJECT};
use crate::token::{FormRequest, Reply, authenticate, serve_form, well_formed};

/// The `/introspect` handler.
pub(crate) async fn introspect_endpoint(
    State(shared): State<Arc<Shared>>,
    request: Request,
) -> Response {
    serve_form(&shared, Endpoint::Introspect, request, introspect).await
}

/// The `/revoke` handler.
pub(crate) async fn revoke_endpoint(
    State(shared): State<Arc<Shared>>,
    request: Request,
) -> Response {
    serve_form(&shared, Endpoint::Revoke, request, revoke).await
}

/// Which kind of token to look for first: the `token_type_hint` is only a hint (RFC 7009
/// §2.1, RFC 7662 §2.1), so the other kind is searched too.
fn refresh_first(request: &FormRequest) -> bool {
    request.param("token_type_hint") == Some("refresh_token")
}

fn introspect(shared: &Shared, request: Result<FormRequest, axum::Error>) -> Reply {
    let request = match well_formed(request) {
        Ok(request) => request,
        Err(reply) => return *reply,
    };
    let inner = shared.lock();
    let client = match authenticate(&inner, &request) {
        Ok(client) => client,
        Err(reply) => return *reply,
    };
    if client.public {
        return Reply::invalid_client(
            client.basic,
            "a public client cannot introspect tokens: authenticate with a client secret",
        );
    }
    let Some(token) = request.param("token") else {
        return Reply::invalid_request("token is missing");
    };
    let found = if refresh_first(&request) {
        refresh_info(&inner, token).or_else(|| access_info(&inner, token))
    } else {
        access_info(&inner, token).or_else(|| refresh_info(&inner, token))
    };
    // Unknown, expired, revoked and rotated tokens all look the same: inactive (RFC 7662 §2.2).
    let body = found.unwrap_or_else(|| json!({ "active": false }));
    Reply::json(StatusCode::OK, &body)
}

/// What introspection says about an access token, `None` if it is not one.
fn access_info(inner: &Inner, token: &str) -> Option<Value> {
    if !inner.access.contains_key(token) {
        return None;
    }
    let AccessStatus::Valid(record) = inner.access_status(token) else {
        return Some(json!({ "active": false }));
    };
    let mut body = Map::new();
    body.insert("active".into(), Value::Bool(true));
    if !record.scope.is_empty() {
        body.insert("scope".into(), Value::String(record.scope.join(" ")));
    }
    body.insert("client_id".into(), Value::String(record.client_id.clone()));
    body.insert("token_type".into(), Value::String(inner.token_type.clone()));
    body.insert("exp".into(), Value::from(unix_time(record.expires_at)));
    body.insert("iat".into(), Value::from(unix_time(record.issued_at)));
    // Tokens of a grant act for the simulated user; client-credentials tokens for the client.
    let sub = match record.family {
        Some(_) => USER_SUBJECT,
        None => record.client_id.as_str(),
    };
    body.insert("sub".into(), Value::String(sub.to_owned()));
    Some(Value::Object(body))
}

/// What introspection says about a refresh token, `None` if it is not one.
fn refresh_info(inner: &Inner, token: &str) -> Option<Value> {
    let record = inner.refresh.get(token)?;
    let family = &inner.families[record.family];
    if family.revoked || record.rotated {
        return Some(json!({ "active": false }));
    }
    let mut body = Map::new();
    body.insert("active".into(), Value::Bool(true));
    if !family.scope.is_empty() {
        body.insert("scope".into(), Value::String(family.scope.join(" ")));
    }
    body.insert("client_id".into(), Value::String(family.client_id.clone()));
    body.insert("iat".into(), Value::from(unix_time(record.issued_at)));
    body.insert("sub".into(), Value::String(USER_SUBJECT.to_owned()));
    Some(Value::Object(body))
}

/// Seconds since the Unix epoch at `at` (tokio time, mapped onto the wall clock now).
fn unix_time(at: Instant) -> u64 {
    let now = Instant::now();
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let then = if at >= now {
        wall + (at - now)
    } else {
        wall.saturating_sub(now - at)
    };
    then.as_secs()
}

fn revoke(shared: &Shared, request: Result<FormRequest, axum::Error>) -> Reply {
    let request = match well_formed(request) {
        Ok(request) => request,
        Err(reply) => return *reply,
    };
    let mut inner = shared.lock();
    // Public clients may revoke their own tokens with their client_id (RFC 7009 §5).
    let client = match authenticate(&inner, &request) {
        Ok(client) => client,
        Err(reply) => return *reply,
    };
    let Some(token) = request.param("token") else {
        return Reply::invalid_request("token is missing");
    };
    let client_id = client.client_id.as_str();
    let outcome = if refresh_first(&request) {
        revoke_refresh(&mut inner, client_id, token)
            .or_else(|| revoke_access(&mut inner, client_id, token))
    } else {
        revoke_access(&mut inner, client_id, token)
            .or_else(|| revoke_refresh(&mut inner, client_id, token))
    };
    match outcome {
        Some(Err(reply)) => reply,
        // Unknown (or already invalid) tokens are answered 200 as well (RFC 7009 §2.2).
        Some(Ok(())) | None => Reply::new(StatusCode::OK, "application/json", "{}"),
    }
}

fn not_yours() -> Reply {
    Reply::oauth_error(
        StatusCode::BAD_REQUEST,
        "unauthorized_client",
        "the token was issued to another client",
    )
}

/// Revokes just this access token. `None` if it is not one.
fn revoke_access(inner: &mut Inner, client_id: &str, token: &str) -> Option<Result<(), Reply>> {
    let record = inner.access.get_mut(token)?;
    if record.client_id != client_id {
        return Some(Err(not_yours()));
    }
    record.revoked = true;
    Some(Ok(()))
}

/// Revokes the grant of this refresh token: its refresh and access tokens (RFC 7009 §2.1).
/// `None` if it is not one.
fn revoke_refresh(inner: &mut Inner, client_id: &str, token: &str) -> Option<Result<(), Reply>> {
    let family = inner.refresh.get(token)?.family;
    let family = &mut inner.families[family];
    if family.client_id != client_id {
        return Some(Err(not_yours()));
    }
    family.revoked = true;
    Some(Ok(()))
}
