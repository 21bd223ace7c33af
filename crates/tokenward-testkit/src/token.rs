//! `POST /token`: RFC 6749 client authentication, the authorization-code, client-credentials
//! and refresh-token grants, and the scripted faults. The form parsing, client authentication
//! and fault handling here serve `/introspect` and `/revoke` too.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::Response;
use base64::Engine as _;
use bytes::Bytes;
use http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, PRAGMA, RETRY_AFTER, WWW_AUTHENTICATE,
};
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use crate::fault::{Alter, Control, DripBody, Endpoint, Fault};
use crate::record::{AuthMethod, TokenRequestRecord};
use crate::server::{ExpiresIn, Inner, Shared, parse_scope};

/// Larger token request bodies are refused.
const MAX_REQUEST_BODY: usize = 64 * 1024;

/// A response not yet turned into an axum one, so faults can reshape it.
pub(crate) struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    pub(crate) fn new(
        status: StatusCode,
        content_type: &'static str,
        body: impl Into<Bytes>,
    ) -> Self {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
        Reply {
            status,
            headers,
            body: body.into(),
        }
    }

    pub(crate) fn json(status: StatusCode, value: &Value) -> Self {
        let body = serde_json::to_vec(value).unwrap_or_default();
        Reply::new(status, "application/json", body)
    }

    /// An RFC 6749 §5.2 error response.
    pub(crate) fn oauth_error(status: StatusCode, error: &str, description: &str) -> Self {
        Reply::json(
            status,
            &json!({ "error": error, "error_description": description }),
        )
    }

    /// 401 `invalid_client`, with the Basic challenge RFC 6749 §5.2 requires when the client
    /// tried the `Authorization` header.
    pub(crate) fn invalid_client(basic: bool, description: &str) -> Self {
        let mut reply = Reply::oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", description);
        if basic {
            reply.headers.insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"testkit\""),
            );
        }
        reply
    }

    pub(crate) fn invalid_request(description: &str) -> Self {
        Reply::oauth_error(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    fn into_response(self) -> Response {
        let body = axum::body::Body::from(self.body.clone());
        self.with_body(body)
    }

    fn with_body(self, body: axum::body::Body) -> Response {
        let mut response = Response::new(body);
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers;
        response
    }
}

/// The parsed request: every form parameter and the Basic credentials, not yet validated.
pub(crate) struct FormRequest {
    params: BTreeMap<String, String>,
    duplicate: Option<String>,
    form_content_type: bool,
    /// `Some` when an `Authorization: Basic` header was sent; `Err` when it did not decode.
    basic: Option<Result<(String, String), ()>>,
}

impl FormRequest {
    fn parse(headers: &HeaderMap, body: &[u8]) -> Self {
        let mut params = BTreeMap::new();
        let mut duplicate = None;
        for (name, value) in form_urlencoded::parse(body) {
            if params
                .insert(name.to_string(), value.into_owned())
                .is_some()
            {
                duplicate.get_or_insert_with(|| name.into_owned());
            }
        }
        let form_content_type = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| {
                v.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
        let basic = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
            .map(|(_, credentials)| decode_basic(credentials.trim()).ok_or(()));
        FormRequest {
            params,
            duplicate,
            form_content_type,
            basic,
        }
    }

    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.params
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// What the request sent as `name`: a form parameter, or `client_secret` from the Basic
    /// credentials too.
    fn sent_value(&self, name: &str) -> Option<String> {
        match (&self.basic, name) {
            (Some(Ok((_, secret))), "client_secret") => Some(secret.clone()),
            _ => self.params.get(name).cloned(),
        }
    }

    fn record(&self) -> TokenRequestRecord {
        let client_id = match &self.basic {
            Some(Ok((id, _))) => id.clone(),
            _ => self.param("client_id").unwrap_or_default().to_owned(),
        };
        let auth_method = if self.basic.is_some() {
            AuthMethod::Basic
        } else if self.params.contains_key("client_secret") {
            AuthMethod::Post
        } else {
            AuthMethod::None
        };
        let mut params = self.params.clone();
        params.remove("client_secret");
        TokenRequestRecord {
            grant_type: self.param("grant_type").unwrap_or_default().to_owned(),
            client_id,
            auth_method,
            params,
        }
    }
}

/// Decodes `base64(urlencode(id) ":" urlencode(secret))` (RFC 6749 §2.3.1).
fn decode_basic(credentials: &str) -> Option<(String, String)> {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(credentials)
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((form_decode(id)?, form_decode(secret)?))
}

/// `application/x-www-form-urlencoded` decoding of one component: `+` is a space, `%XX` a
/// byte. Malformed escapes are kept as they are, as browsers do.
fn form_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (hex_at(bytes, i + 1), hex_at(bytes, i + 2)) {
                (Some(high), Some(low)) => {
                    out.push(high * 16 + low);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn hex_at(bytes: &[u8], i: usize) -> Option<u8> {
    let digit = char::from(*bytes.get(i)?).to_digit(16)?;
    u8::try_from(digit).ok()
}

/// The `/token` handler.
pub(crate) async fn token_endpoint(
    State(shared): State<Arc<Shared>>,
    request: Request,
) -> Response {
    serve_form(&shared, Endpoint::Token, request, handle).await
}

/// Reads a request (a form POST; the metadata's GET has an empty body), counts it, and answers with the endpoint's next fault or with `handle`:
/// what the endpoint does with a request that met no fault (or a fault that answers normally
/// after all).
pub(crate) async fn serve_form(
    shared: &Shared,
    endpoint: Endpoint,
    request: Request,
    handle: impl FnOnce(&Shared, Result<FormRequest, axum::Error>) -> Reply,
) -> Response {
    let (parts, body) = request.into_parts();
    let control = Control::from_extensions(&parts.extensions);
    let body = axum::body::to_bytes(body, MAX_REQUEST_BODY).await;
    let request = body.map(|body| FormRequest::parse(&parts.headers, &body));

    let fault = {
        let mut inner = shared.lock();
        match endpoint {
            Endpoint::Token => {
                inner.counters.token_requests += 1;
                if let Ok(request) = &request {
                    inner.last_request = Some(request.record());
                }
            }
            Endpoint::Introspect => inner.counters.introspect_requests += 1,
            Endpoint::Revoke => inner.counters.revoke_requests += 1,
            Endpoint::Metadata => inner.counters.metadata_requests += 1,
        }
        let fault = inner.next_fault(endpoint);
        if fault.is_some() {
            inner.counters.faulted += 1;
        }
        fault
    };
    let basic = matches!(&request, Ok(r) if r.basic.is_some());
    // `errors` counts token responses only.
    let count = |reply: &Reply| {
        if endpoint == Endpoint::Token {
            count_errors(shared, reply);
        }
    };

    let reply = match fault {
        None => handle(shared, request),
        Some(Fault::RateLimited { retry_after }) => {
            let mut reply = Reply::oauth_error(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many token requests; slow down",
            );
            if let Some(value) = retry_after.and_then(|v| HeaderValue::try_from(v).ok()) {
                reply.headers.insert(RETRY_AFTER, value);
            }
            reply
        }
        Some(Fault::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            html_status(status)
        }
        Some(Fault::ServiceUnavailable { retry_after }) => {
            let mut reply = html_status(StatusCode::SERVICE_UNAVAILABLE);
            if let Some(value) = retry_after.and_then(|v| HeaderValue::try_from(v).ok()) {
                reply.headers.insert(RETRY_AFTER, value);
            }
            reply
        }
        Some(Fault::TemporarilyUnavailable) => Reply::oauth_error(
            StatusCode::BAD_REQUEST,
            "temporarily_unavailable",
            "the authorization server is temporarily unavailable",
        ),
        Some(Fault::InvalidGrant) => Reply::oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "the grant is invalid, expired or revoked",
        ),
        Some(Fault::InvalidClient) => Reply::invalid_client(basic, "client authentication failed"),
        Some(Fault::Latency(delay)) => {
            control.sleep(delay).await;
            handle(shared, request)
        }
        Some(Fault::Hang) => {
            control.shutdown().await;
            return control.reset();
        }
        Some(Fault::ConnectionReset) => return control.reset(),
        Some(Fault::GarbageBody) => Reply::new(
            StatusCode::OK,
            "text/html; charset=utf-8",
            "<html><head><title>Welcome</title></head><body><p>It works!</p></body></html>\n",
        ),
        Some(Fault::OversizedBody(size)) => {
            Reply::new(StatusCode::OK, "application/json", oversized_body(size))
        }
        Some(Fault::ErrorBody200) => Reply::oauth_error(
            StatusCode::OK,
            "server_error",
            "an error object sent with status 200",
        ),
        Some(Fault::AfterServing(alter)) => altered(handle(shared, request), &alter),
        Some(Fault::EchoParam {
            status,
            error,
            param,
        }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
            let value = request
                .as_ref()
                .ok()
                .and_then(|r| r.sent_value(&param))
                .unwrap_or_default();
            let encoded: String = form_urlencoded::byte_serialize(value.as_bytes()).collect();
            Reply::json(
                status,
                &json!({
                    "error": error,
                    "error_description": format!("Invalid {param}: {value}"),
                    "error_uri": format!("https://as.example/errors?value={encoded}"),
                }),
            )
        }
        Some(Fault::SlowDrip { chunk, interval }) => {
            let reply = handle(shared, request);
            count(&reply);
            let body = DripBody::new(reply.body.clone(), chunk, interval);
            return reply.with_body(axum::body::Body::new(body));
        }
    };
    count(&reply);
    reply.into_response()
}

/// A served answer, altered on the way back.
fn altered(reply: Reply, alter: &Alter) -> Reply {
    if !reply.status.is_success() {
        return reply;
    }
    if let Alter::Status(code) = alter {
        return html_status(StatusCode::from_u16(*code).unwrap_or(StatusCode::BAD_GATEWAY));
    }
    let Ok(Value::Object(mut body)) = serde_json::from_slice::<Value>(&reply.body) else {
        return reply;
    };
    match alter {
        Alter::NoAccessToken => {
            body.remove("access_token");
        }
        Alter::TokenType(token_type) => {
            body.insert("token_type".into(), Value::String(token_type.clone()));
        }
        Alter::UnsendableAccessToken => {
            if let Some(Value::String(token)) = body.get_mut("access_token") {
                token.insert(token.len() / 2, ' ');
            }
        }
        Alter::ScopeAsArray => {
            let names: Vec<Value> = body
                .get("scope")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .split(' ')
                .map(|s| Value::String(s.to_owned()))
                .collect();
            body.insert("scope".into(), Value::Array(names));
        }
        Alter::Status(_) => {}
    }
    Reply::json(reply.status, &Value::Object(body))
}

/// `status` with a small HTML body, as a proxy or load balancer sends it.
fn html_status(status: StatusCode) -> Reply {
    let body = format!(
        "<html><head><title>{status}</title></head><body><h1>{status}</h1></body></html>\n"
    );
    Reply::new(status, "text/html; charset=utf-8", body)
}

fn count_errors(shared: &Shared, reply: &Reply) {
    if reply.status.is_client_error() || reply.status.is_server_error() {
        shared.lock().counters.errors += 1;
    }
}

/// A JSON token response of exactly `size` bytes (when `size` allows it).
fn oversized_body(size: usize) -> Vec<u8> {
    let head =
        br#"{"access_token":"oversized","token_type":"Bearer","expires_in":3600,"padding":""#;
    let tail = br#""}"#;
    if size < head.len() + tail.len() {
        return vec![b' '; size];
    }
    let mut body = Vec::with_capacity(size);
    body.extend_from_slice(head);
    body.resize(size - tail.len(), b'x');
    body.extend_from_slice(tail);
    body
}

/// A well-formed form request, or the `invalid_request` reply.
pub(crate) fn well_formed(
    request: Result<FormRequest, axum::Error>,
) -> Result<FormRequest, Box<Reply>> {
    let Ok(request) = request else {
        return Err(
            Reply::invalid_request("the request body could not be read (too large?)").into(),
        );
    };
    if !request.form_content_type {
        return Err(Reply::invalid_request(
            "Content-Type must be application/x-www-form-urlencoded",
        )
        .into());
    }
    if let Some(name) = &request.duplicate {
        return Err(
            Reply::invalid_request(&format!("parameter {name} was sent more than once")).into(),
        );
    }
    Ok(request)
}

/// A client that authenticated (or, public, identified itself).
pub(crate) struct Authenticated {
    pub(crate) client_id: String,
    /// A public client (no secret).
    pub(crate) public: bool,
    /// The scopes it may obtain (`None`: any).
    pub(crate) scopes: Option<Vec<String>>,
    /// It authenticated with `Authorization: Basic`.
    pub(crate) basic: bool,
}

/// Client authentication (RFC 6749 §2.3): `client_secret_basic`, `client_secret_post`, or a
/// public client's bare `client_id`.
pub(crate) fn authenticate(
    inner: &Inner,
    request: &FormRequest,
) -> Result<Authenticated, Box<Reply>> {
    let basic = request.basic.is_some();
    let (client_id, secret) = match &request.basic {
        Some(Err(())) => {
            return Err(
                Reply::invalid_client(true, "the Basic credentials could not be decoded").into(),
            );
        }
        Some(Ok((id, secret))) => {
            if request.params.contains_key("client_secret") {
                return Err(Reply::invalid_request(
                    "more than one client authentication method was used",
                )
                .into());
            }
            if request
                .param("client_id")
                .is_some_and(|body_id| body_id != id)
            {
                return Err(Reply::invalid_request(
                    "client_id does not match the Authorization header",
                )
                .into());
            }
            (id.as_str(), Some(secret.as_str()))
        }
        None => match request.param("client_id") {
            Some(id) => (id, request.params.get("client_secret").map(String::as_str)),
            None => {
                return Err(
                    Reply::invalid_client(false, "no client authentication was sent").into(),
                );
            }
        },
    };
    let Some(client) = inner.clients.get(client_id) else {
        return Err(Reply::invalid_client(basic, "unknown client").into());
    };
    let authenticated = match secret {
        Some(secret) => {
            client.secrets.iter().any(|s| s == secret) || (client.public && secret.is_empty())
        }
        None => client.public,
    };
    if !authenticated {
        let why = if secret.is_some() {
            "client authentication failed"
        } else {
            "this client must authenticate with its secret"
        };
        return Err(Reply::invalid_client(basic, why).into());
    }
    Ok(Authenticated {
        client_id: client_id.to_owned(),
        public: client.is_public(),
        scopes: client.scopes.clone(),
        basic,
    })
}

/// The OAuth logic proper.
fn handle(shared: &Shared, request: Result<FormRequest, axum::Error>) -> Reply {
    let request = match well_formed(request) {
        Ok(request) => request,
        Err(reply) => return *reply,
    };
    let mut inner = shared.lock();
    let Authenticated {
        client_id,
        public,
        scopes: allowed,
        ..
    } = match authenticate(&inner, &request) {
        Ok(client) => client,
        Err(reply) => return *reply,
    };

    let requested = request.param("scope").map(parse_scope).unwrap_or_default();
    let Some(grant_type) = request.param("grant_type") else {
        return Reply::invalid_request("grant_type is missing");
    };
    let known = matches!(
        grant_type,
        "authorization_code" | "client_credentials" | "refresh_token"
    );
    if known && !inner.clients[&client_id].may_use(grant_type) {
        return Reply::oauth_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            &format!("this client may not use the {grant_type} grant"),
        );
    }
    match grant_type {
        "authorization_code" => {
            let Some(code) = request.param("code") else {
                return Reply::invalid_request("code is missing");
            };
            crate::authorize::redeem(
                &mut inner,
                &client_id,
                code,
                request.param("redirect_uri"),
                request.param("code_verifier"),
            )
        }
        "client_credentials" => {
            if public {
                return Reply::oauth_error(
                    StatusCode::BAD_REQUEST,
                    "unauthorized_client",
                    "a public client cannot use the client_credentials grant",
                );
            }
            let granted = if requested.is_empty() {
                allowed.unwrap_or_default()
            } else {
                let not_allowed = allowed
                    .as_ref()
                    .and_then(|allowed| requested.iter().find(|s| !allowed.contains(s)));
                if let Some(missing) = not_allowed {
                    return invalid_scope(&format!(
                        "scope {missing} is not allowed for this client"
                    ));
                }
                requested
            };
            let access = inner.new_access_token(&client_id, granted.clone(), None);
            inner.counters.count_issued("client_credentials");
            success(&inner, access, &granted, None)
        }
        "refresh_token" => {
            let Some(presented) = request.param("refresh_token") else {
                return Reply::invalid_request("refresh_token is missing");
            };
            refresh(&mut inner, &client_id, presented, requested)
        }
        other => Reply::oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            &format!("grant_type {other} is not supported"),
        ),
    }
}

fn invalid_scope(description: &str) -> Reply {
    Reply::oauth_error(StatusCode::BAD_REQUEST, "invalid_scope", description)
}

pub(crate) fn invalid_grant(description: &str) -> Reply {
    Reply::oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", description)
}

/// The refresh-token grant (RFC 6749 §6) with rotation and reuse detection (RFC 9700 §4.14).
fn refresh(inner: &mut Inner, client_id: &str, presented: &str, requested: Vec<String>) -> Reply {
    let Some(record) = inner.refresh.get(presented) else {
        return invalid_grant("the refresh token is unknown");
    };
    let (family_id, rotated) = (record.family, record.rotated);
    let family = &inner.families[family_id];
    if family.revoked {
        return invalid_grant("the refresh token was revoked");
    }
    if family.client_id != client_id {
        return invalid_grant("the refresh token was issued to another client");
    }
    if rotated {
        // Within the grace period, the token just rotated out is accepted once more if its
        // successor was never used (the client lost it): the successor is retired.
        let unused_successor = record.rotated_to.as_ref().and_then(|(at, successor)| {
            let in_grace = Instant::now() < *at + inner.refresh_grace;
            let unused = inner.refresh.get(successor).is_some_and(|r| !r.rotated);
            (in_grace && unused).then(|| successor.clone())
        });
        match unused_successor {
            Some(successor) => {
                if let Some(lost) = inner.refresh.get_mut(&successor) {
                    lost.rotated = true;
                }
                inner.counters.refresh_grace_used += 1;
            }
            None => {
                inner.families[family_id].revoked = true;
                inner.counters.refresh_reuse_detected += 1;
                return invalid_grant(
                    "the refresh token was already used (reuse detected); the whole grant is revoked",
                );
            }
        }
    }
    let granted = if requested.is_empty() {
        family.scope.clone()
    } else {
        if let Some(extra) = requested.iter().find(|s| !family.scope.contains(s)) {
            return invalid_scope(&format!(
                "scope {extra} exceeds the scope originally granted"
            ));
        }
        requested
    };
    let new_refresh = if inner.rotate {
        let successor = inner.new_refresh_token(family_id);
        if let Some(record) = inner.refresh.get_mut(presented) {
            record.rotated = true;
            record.rotated_to = Some((Instant::now(), successor.clone()));
        }
        Some(successor)
    } else {
        None
    };
    let access = inner.new_access_token(client_id, granted.clone(), Some(family_id));
    inner.counters.count_issued("refresh_token");
    success(inner, access, &granted, new_refresh)
}

/// A successful token response (RFC 6749 §5.1).
pub(crate) fn success(
    inner: &Inner,
    access_token: String,
    scope: &[String],
    refresh: Option<String>,
) -> Reply {
    let mut body = Map::new();
    body.insert("access_token".into(), Value::String(access_token));
    body.insert("token_type".into(), Value::String(inner.token_type.clone()));
    let seconds = inner.lifetime.as_secs();
    match inner.expires_in {
        ExpiresIn::Number => {
            body.insert("expires_in".into(), Value::from(seconds));
        }
        ExpiresIn::String => {
            body.insert("expires_in".into(), Value::String(seconds.to_string()));
        }
        ExpiresIn::Omitted => {}
    }
    if !scope.is_empty() {
        body.insert("scope".into(), Value::String(scope.join(" ")));
    }
    if let Some(refresh) = refresh {
        body.insert("refresh_token".into(), Value::String(refresh));
    }
    Reply::json(StatusCode::OK, &Value::Object(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_decoded() {
        let encoded = base64::engine::general_purpose::STANDARD.encode("my%20client:s%2Bc+r%3At");
        assert_eq!(
            decode_basic(&encoded),
            Some(("my client".to_owned(), "s+c r:t".to_owned()))
        );
        assert_eq!(decode_basic("!!!"), None);
        let no_colon = base64::engine::general_purpose::STANDARD.encode("nocolon");
        assert_eq!(decode_basic(&no_colon), None);
    }

    #[test]
    fn malformed_escapes_are_kept() {
        assert_eq!(form_decode("100%").as_deref(), Some("100%"));
        assert_eq!(form_decode("%zz%4").as_deref(), Some("%zz%4"));
        assert_eq!(form_decode("%41b").as_deref(), Some("Ab"));
    }

    #[test]
    fn oversized_body_has_the_exact_size() {
        for size in [0, 10, 84, 85, 1000, 70_000] {
            let body = oversized_body(size);
            assert_eq!(body.len(), size);
            if size > 100 {
                let value: Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(value["token_type"], "Bearer");
            }
        }
    }
}
