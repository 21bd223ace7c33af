//! `GET /authorize` (RFC 6749 §4.1.1, PKCE per RFC 7636) approved at once by a simulated
//! user, and the redemption of its codes at `/token` (RFC 6749 §4.1.3).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::Response;
use base64::Engine as _;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use http::{HeaderValue, StatusCode};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::server::{CodeRecord, Shared, parse_scope, random_token};
use crate::token::{Reply, invalid_grant, success};

/// What `/authorize` does with a request.
pub(crate) enum Outcome {
    /// Redirect the browser to `location`, whose added query is `query` (a code, or an error).
    Redirect { location: String, query: String },
    /// Show an error page (400) and redirect nowhere: the client or the redirect URI cannot
    /// be trusted (RFC 6749 §4.1.2.1).
    Page(String),
}

/// The `/authorize` handler.
pub(crate) async fn authorize_endpoint(
    State(shared): State<Arc<Shared>>,
    request: Request,
) -> Response {
    let query = request.uri().query().unwrap_or_default();
    let (status, location, body) = match authorize(&shared, query) {
        Outcome::Redirect { location, .. } => (StatusCode::FOUND, Some(location), String::new()),
        Outcome::Page(message) => (
            StatusCode::BAD_REQUEST,
            None,
            format!(
                "<html><head><title>Authorization error</title></head><body><h1>Authorization \
                 error</h1><p>{}</p></body></html>\n",
                escape_html(&message)
            ),
        ),
    };
    let mut response = Response::new(axum::body::Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    match location.and_then(|l| HeaderValue::try_from(l).ok()) {
        Some(location) => {
            headers.insert(LOCATION, location);
        }
        None => {
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
        }
    }
    response
}

/// The authorization request proper: validate, let the simulated user decide, issue a code.
pub(crate) fn authorize(shared: &Shared, query: &str) -> Outcome {
    let mut inner = shared.lock();
    inner.counters.authorize_requests += 1;

    let mut params = BTreeMap::new();
    let mut duplicate = None;
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        if params
            .insert(name.to_string(), value.into_owned())
            .is_some()
        {
            duplicate.get_or_insert_with(|| name.into_owned());
        }
    }
    // A parameter sent without a value is treated as omitted (RFC 6749 §3.1).
    let param = |name: &str| {
        params
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };

    // Until the client and its redirect URI are known good, errors are shown, not redirected.
    if let Some(name @ ("client_id" | "redirect_uri")) = duplicate.as_deref() {
        return Outcome::Page(format!("parameter {name} was sent more than once"));
    }
    let Some(client_id) = param("client_id") else {
        return Outcome::Page("client_id is missing".into());
    };
    let Some(client) = inner.clients.get(client_id) else {
        return Outcome::Page("unknown client".into());
    };
    let redirect_uri = match (param("redirect_uri"), client.redirect_uris.as_slice()) {
        (Some(uri), registered) if registered.iter().any(|r| redirect_matches(r, uri)) => {
            uri.to_owned()
        }
        (Some(_), _) => {
            return Outcome::Page("redirect_uri is not registered for this client".into());
        }
        (None, [only]) => only.clone(),
        (None, []) => {
            return Outcome::Page("no redirect_uri is registered for this client".into());
        }
        (None, _) => {
            return Outcome::Page(
                "redirect_uri is required: this client has several registered".into(),
            );
        }
    };
    let redirect_uri_sent = param("redirect_uri").is_some();
    let state = param("state");
    let refuse = |error: &str, description: &str| {
        let mut added = vec![("error", error), ("error_description", description)];
        added.extend(state.map(|s| ("state", s)));
        redirect(&redirect_uri, &added)
    };

    if let Some(name) = &duplicate {
        return refuse(
            "invalid_request",
            &format!("parameter {name} was sent more than once"),
        );
    }
    match param("response_type") {
        Some("code") => {}
        None => return refuse("invalid_request", "response_type is missing"),
        Some(_) => {
            return refuse(
                "unsupported_response_type",
                "only response_type=code is supported",
            );
        }
    }
    if !client.may_use("authorization_code") {
        return refuse(
            "unauthorized_client",
            "this client may not use the authorization code grant",
        );
    }
    let challenge = match (param("code_challenge"), param("code_challenge_method")) {
        (None, None) if client.is_public() => {
            return refuse(
                "invalid_request",
                "PKCE is required for public clients: send code_challenge and \
                 code_challenge_method=S256",
            );
        }
        (None, None) => None,
        (None, Some(_)) => {
            return refuse(
                "invalid_request",
                "code_challenge_method was sent without code_challenge",
            );
        }
        (Some(challenge), Some("S256")) if is_s256_challenge(challenge) => {
            Some(challenge.to_owned())
        }
        (Some(_), Some("S256")) => {
            return refuse(
                "invalid_request",
                "code_challenge is not a base64url-encoded SHA-256 hash (43 characters)",
            );
        }
        (Some(_), _) => {
            return refuse(
                "invalid_request",
                "transform algorithm not supported: only code_challenge_method=S256 is accepted",
            );
        }
    };
    let requested = param("scope").map(parse_scope).unwrap_or_default();
    let scope = if requested.is_empty() {
        client.scopes.clone().unwrap_or_default()
    } else {
        let not_allowed = client
            .scopes
            .as_ref()
            .and_then(|allowed| requested.iter().find(|s| !allowed.contains(s)));
        if let Some(scope) = not_allowed {
            return refuse(
                "invalid_scope",
                &format!("scope {scope} is not allowed for this client"),
            );
        }
        requested
    };
    if !inner.consent {
        return refuse("access_denied", "the user denied the request");
    }

    let code = random_token("ac_");
    let record = CodeRecord {
        client_id: client_id.to_owned(),
        redirect_uri: redirect_uri.clone(),
        redirect_uri_sent,
        scope,
        challenge,
        expires_at: Instant::now() + inner.code_lifetime,
        used: false,
        family: None,
    };
    let mut added = vec![("code", code.as_str())];
    added.extend(state.map(|s| ("state", s)));
    let outcome = redirect(&redirect_uri, &added);
    inner.codes.insert(code.clone(), record);
    inner.counters.codes_issued += 1;
    outcome
}

/// Whether `sent` is the `registered` redirect URI: the same string, or, for a loopback IP
/// literal over http, the same but for the port (RFC 8252 §7.3: native apps pick a free port
/// when they start).
fn redirect_matches(registered: &str, sent: &str) -> bool {
    /// The host and path of an http URI on a loopback IP literal, the port left out.
    fn loopback(uri: &str) -> Option<(&str, &str)> {
        let rest = uri.strip_prefix("http://")?;
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let (host, port) = match authority.strip_prefix("[::1]") {
            Some(port) => ("[::1]", port),
            None => authority.split_at(authority.find(':').unwrap_or(authority.len())),
        };
        let port_ok = port.is_empty()
            || port
                .strip_prefix(':')
                .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        (port_ok && matches!(host, "127.0.0.1" | "[::1]")).then_some((host, path))
    }
    registered == sent
        || matches!((loopback(registered), loopback(sent)), (Some(a), Some(b)) if a == b)
}

#[cfg(test)]
mod redirect_tests {
    use super::redirect_matches;

    #[test]
    fn loopback_redirect_uris_match_any_port_and_nothing_else_does() {
        let registered = "http://127.0.0.1/callback";
        assert!(redirect_matches(
            registered,
            "http://127.0.0.1:53123/callback"
        ));
        assert!(redirect_matches("http://[::1]:1/cb", "http://[::1]:2/cb"));
        assert!(!redirect_matches(
            registered,
            "http://127.0.0.1:53123/other"
        ));
        assert!(!redirect_matches(
            registered,
            "http://127.0.0.2:53123/callback"
        ));
        assert!(!redirect_matches(
            registered,
            "http://localhost:53123/callback"
        ));
        assert!(!redirect_matches(
            registered,
            "https://127.0.0.1:53123/callback"
        ));
        assert!(!redirect_matches(registered, "http://127.0.0.1:x/callback"));
        assert!(!redirect_matches(
            "https://app.example/cb",
            "https://app.example:444/cb"
        ));
    }
}

/// A redirect to `redirect_uri` with `added` appended to its query.
fn redirect(redirect_uri: &str, added: &[(&str, &str)]) -> Outcome {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (name, value) in added {
        query.append_pair(name, value);
    }
    let query = query.finish();
    let separator = match redirect_uri.split_once('?') {
        None => "?",
        Some((_, "")) => "",
        Some(_) if redirect_uri.ends_with('&') => "",
        Some(_) => "&",
    };
    Outcome::Redirect {
        location: format!("{redirect_uri}{separator}{query}"),
        query,
    }
}

/// Redeems an authorization code at `/token` for an authenticated client (RFC 6749 §4.1.3,
/// RFC 7636 §4.6). A code is single-use: any attempt uses it up, and presenting it again
/// revokes the grant its first redemption started.
pub(crate) fn redeem(
    inner: &mut crate::server::Inner,
    client_id: &str,
    code: &str,
    redirect_uri: Option<&str>,
    verifier: Option<&str>,
) -> Reply {
    let Some(record) = inner.codes.get_mut(code) else {
        return invalid_grant("the authorization code is unknown");
    };
    if record.used {
        let family = record.family;
        inner.counters.code_reuse_detected += 1;
        if let Some(family) = family {
            inner.families[family].revoked = true;
        }
        return invalid_grant(
            "the authorization code was already used; the tokens issued from it are revoked",
        );
    }
    record.used = true;
    if Instant::now() >= record.expires_at {
        return invalid_grant("the authorization code expired");
    }
    if record.client_id != client_id {
        return invalid_grant("the authorization code was issued to another client");
    }
    let redirect_matches = match redirect_uri {
        Some(uri) => uri == record.redirect_uri,
        None => !record.redirect_uri_sent,
    };
    if !redirect_matches {
        return invalid_grant("redirect_uri does not match the authorization request");
    }
    match (&record.challenge, verifier) {
        (None, None) => {}
        (Some(challenge), Some(verifier))
            if is_verifier(verifier) && s256(verifier) == *challenge => {}
        (Some(_), None) => return invalid_grant("code_verifier is missing (PKCE)"),
        (Some(_), Some(_)) => {
            return invalid_grant("the code_verifier does not match the code_challenge (PKCE)");
        }
        (None, Some(_)) => {
            return invalid_grant(
                "a code_verifier was sent, but the authorization request had no code_challenge",
            );
        }
    }
    let scope = record.scope.clone();
    let family = inner.new_family(client_id, scope.clone());
    if let Some(record) = inner.codes.get_mut(code) {
        record.family = Some(family);
    }
    let refresh_token = inner.new_refresh_token(family);
    let access_token = inner.new_access_token(client_id, scope.clone(), Some(family));
    inner.counters.count_issued("authorization_code");
    success(inner, access_token, &scope, Some(refresh_token))
}

/// `BASE64URL-NOPAD(SHA256(verifier))` (RFC 7636 §4.2).
pub(crate) fn s256(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// A code verifier: 43 to 128 characters of `[A-Za-z0-9-._~]` (RFC 7636 §4.1).
fn is_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// An S256 challenge: 43 base64url characters (a SHA-256 hash, unpadded).
fn is_s256_challenge(challenge: &str) -> bool {
    challenge.len() == 43
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s256_matches_rfc_7636_appendix_b() {
        assert_eq!(
            s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert!(is_s256_challenge(
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!is_s256_challenge(
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw+cM"
        ));
    }

    #[test]
    fn verifiers_follow_rfc_7636() {
        assert!(is_verifier(&"a".repeat(43)));
        assert!(is_verifier(&"~._-".repeat(32)));
        assert!(!is_verifier(&"a".repeat(42)));
        assert!(!is_verifier(&"a".repeat(129)));
        assert!(!is_verifier(&format!("{}+", "a".repeat(43))));
    }

    #[test]
    fn redirects_append_to_an_existing_query() {
        let location = |uri: &str| match redirect(uri, &[("code", "a b"), ("state", "s&t")]) {
            Outcome::Redirect { location, .. } => location,
            Outcome::Page(_) => unreachable!(),
        };
        assert_eq!(
            location("https://a/cb"),
            "https://a/cb?code=a+b&state=s%26t"
        );
        assert_eq!(
            location("https://a/cb?x=1"),
            "https://a/cb?x=1&code=a+b&state=s%26t"
        );
        assert_eq!(
            location("https://a/cb?"),
            "https://a/cb?code=a+b&state=s%26t"
        );
        assert_eq!(
            location("https://a/cb?x=1&"),
            "https://a/cb?x=1&code=a+b&state=s%26t"
        );
    }
}
