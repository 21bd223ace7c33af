//! `GET /authorize` and the authorization-code grant at `/token`.

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokenward_testkit::FakeServer;

use crate::helpers::*;

const WEB: &str = "web";
const WEB_SECRET: &str = "web-secret";
const CALLBACK: &str = "https://app.example.com/cb";
const SPA_CALLBACK: &str = "http://127.0.0.1:8080/cb?app=1";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

fn code_server() -> FakeServer {
    FakeServer::builder()
        .client(WEB, WEB_SECRET)
        .client_scopes(WEB, "jobs.read jobs.write")
        .redirect_uri(WEB, CALLBACK)
        .redirect_uri(WEB, "https://app.example.com/other")
        .public_client("spa")
        .redirect_uri("spa", SPA_CALLBACK)
        .client("m2m", "m2m-secret")
        .redirect_uri("m2m", CALLBACK)
        .client_grant_types("m2m", "client_credentials")
        .build()
}

fn challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn authorize_url(server: &FakeServer, params: &[(&str, &str)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (name, value) in params {
        query.append_pair(name, value);
    }
    format!("{}?{}", server.authorize_url(), query.finish())
}

/// A complete PKCE request for `client` with `redirect_uri`.
fn pkce_params<'a>(client: &'a str, redirect_uri: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("response_type", "code"),
        ("client_id", client),
        ("redirect_uri", redirect_uri),
        ("state", "st-1"),
        ("code_challenge_method", "S256"),
    ]
}

fn param(query: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Approves a PKCE request for the web client and returns the code.
fn web_code(server: &FakeServer) -> String {
    let challenge = challenge(VERIFIER);
    let mut params = pkce_params(WEB, CALLBACK);
    params.push(("code_challenge", &challenge));
    params.push(("scope", "jobs.read"));
    let callback = server.approve(&authorize_url(server, &params)).unwrap();
    param(&callback, "code").unwrap()
}

async fn redeem(
    server: &FakeServer,
    code: &str,
    redirect_uri: Option<&str>,
    verifier: Option<&str>,
) -> Collected {
    let mut params = vec![("grant_type", "authorization_code"), ("code", code)];
    params.extend(redirect_uri.map(|r| ("redirect_uri", r)));
    params.extend(verifier.map(|v| ("code_verifier", v)));
    token_basic(server, WEB, WEB_SECRET, &params).await
}

#[tokio::test(start_paused = true)]
async fn authorize_redirects_with_a_code_and_the_state() {
    let server = code_server();
    let challenge = challenge(VERIFIER);
    let mut params = pkce_params("spa", SPA_CALLBACK);
    params.push(("code_challenge", &challenge));
    let request = http::Request::get(authorize_url(&server, &params))
        .body(Bytes::new())
        .unwrap();
    let response = send(&server, request).await;
    assert_eq!(response.status, 302);
    let location = response.header("location").unwrap();
    // Appended to the registered URI's own query.
    assert!(
        location.starts_with("http://127.0.0.1:8080/cb?app=1&code=ac_"),
        "{location}"
    );
    assert!(location.ends_with("&state=st-1"), "{location}");
    assert_eq!(response.header("cache-control"), Some("no-store"));
    let counters = server.counters();
    assert_eq!(counters.authorize_requests, 1);
    assert_eq!(counters.codes_issued, 1);

    // The public client redeems it with the verifier and its client id alone.
    let code = param(location.split_once('?').unwrap().1, "code").unwrap();
    let response = token(
        &server,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", "spa"),
            ("code", &code),
            ("redirect_uri", SPA_CALLBACK),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_eq!(response.status, 200, "{:?}", response.json());
    let body = response.json();
    assert!(body["refresh_token"].as_str().unwrap().starts_with("rt_"));
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(server.counters().issued_for("authorization_code"), 1);
    // The refresh token starts a grant that rotates like any other.
    let refreshed = token(
        &server,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", "spa"),
            ("refresh_token", body["refresh_token"].as_str().unwrap()),
        ],
    )
    .await;
    assert_eq!(refreshed.status, 200);
    assert_ne!(refreshed.refresh_token(), body["refresh_token"]);
}

#[tokio::test(start_paused = true)]
async fn untrusted_clients_and_redirect_uris_get_an_error_page() {
    let server = code_server();
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("response_type", "code")], "client_id is missing"),
        (
            &[("response_type", "code"), ("client_id", "nobody")],
            "unknown client",
        ),
        (
            &[
                ("response_type", "code"),
                ("client_id", WEB),
                ("redirect_uri", "https://evil.example.com/cb"),
            ],
            "not registered",
        ),
        (
            // Two registered: which one is meant?
            &[("response_type", "code"), ("client_id", WEB)],
            "redirect_uri is required",
        ),
        (
            &[
                ("response_type", "code"),
                ("client_id", WEB),
                ("redirect_uri", CALLBACK),
                ("redirect_uri", CALLBACK),
            ],
            "more than once",
        ),
    ];
    for (params, message) in cases {
        let url = authorize_url(&server, params);
        let err = server.approve(&url).unwrap_err();
        assert!(err.contains(message), "{params:?}: {err}");
        let response = send(&server, http::Request::get(url).body(Bytes::new()).unwrap()).await;
        assert_eq!(response.status, 400, "{params:?}");
        assert_eq!(response.header("location"), None);
        assert!(
            response
                .header("content-type")
                .unwrap()
                .starts_with("text/html")
        );
    }
    // A client without any registered redirect URI cannot use the flow.
    let server = FakeServer::builder().client("c", "s").build();
    let err = server
        .approve(&authorize_url(
            &server,
            &[("response_type", "code"), ("client_id", "c")],
        ))
        .unwrap_err();
    assert!(err.contains("no redirect_uri is registered"), "{err}");
    assert_eq!(server.counters().codes_issued, 0);
}

#[tokio::test(start_paused = true)]
async fn bad_requests_are_redirected_with_an_error() {
    let server = code_server();
    let good = challenge(VERIFIER);
    let good = good.as_str();
    fn with<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut params = vec![
            ("client_id", WEB),
            ("redirect_uri", CALLBACK),
            ("state", "s"),
        ];
        params.extend_from_slice(extra);
        params
    }
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (with(&[]), "invalid_request"),
        (
            with(&[("response_type", "token")]),
            "unsupported_response_type",
        ),
        (
            with(&[("response_type", "code"), ("scope", "jobs.admin")]),
            "invalid_scope",
        ),
        (
            with(&[("response_type", "code"), ("code_challenge", good)]),
            "invalid_request",
        ),
        (
            with(&[
                ("response_type", "code"),
                ("code_challenge", good),
                ("code_challenge_method", "plain"),
            ]),
            "invalid_request",
        ),
        (
            with(&[
                ("response_type", "code"),
                ("code_challenge", "too-short"),
                ("code_challenge_method", "S256"),
            ]),
            "invalid_request",
        ),
        (
            with(&[("response_type", "code"), ("code_challenge_method", "S256")]),
            "invalid_request",
        ),
        (
            with(&[("response_type", "code"), ("response_type", "code")]),
            "invalid_request",
        ),
        (
            vec![
                ("response_type", "code"),
                ("client_id", "m2m"),
                ("redirect_uri", CALLBACK),
                ("state", "s"),
            ],
            "unauthorized_client",
        ),
        (
            vec![
                ("response_type", "code"),
                ("client_id", "spa"),
                ("redirect_uri", SPA_CALLBACK),
                ("state", "s"),
            ],
            "invalid_request",
        ),
    ];
    for (params, error) in cases {
        let callback = server.approve(&authorize_url(&server, &params)).unwrap();
        assert_eq!(
            param(&callback, "error").as_deref(),
            Some(error),
            "{params:?}"
        );
        assert_eq!(
            param(&callback, "state").as_deref(),
            Some("s"),
            "{params:?}"
        );
        assert!(param(&callback, "error_description").is_some());
        assert!(param(&callback, "code").is_none());
    }
    assert_eq!(server.counters().codes_issued, 0);

    // The simulated user says no.
    server.set_consent(false);
    let callback = server
        .approve(&authorize_url(&server, &with(&[("response_type", "code")])))
        .unwrap();
    assert_eq!(param(&callback, "error").as_deref(), Some("access_denied"));
    server.set_consent(true);
    // A confidential client may go without PKCE; without state, none comes back.
    let callback = server
        .approve(&authorize_url(
            &server,
            &[
                ("response_type", "code"),
                ("client_id", WEB),
                ("redirect_uri", CALLBACK),
            ],
        ))
        .unwrap();
    assert!(
        callback.starts_with("code=") && !callback.contains("state="),
        "{callback}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_code_exchange_checks_redirect_uri_and_verifier() {
    let server = code_server();
    let cases: &[(Option<&str>, Option<&str>, &str)] = &[
        (
            Some("https://app.example.com/other"),
            Some(VERIFIER),
            "redirect_uri",
        ),
        (None, Some(VERIFIER), "redirect_uri"),
        (Some(CALLBACK), None, "code_verifier is missing"),
        (
            Some(CALLBACK),
            Some("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
            "does not match",
        ),
        (Some(CALLBACK), Some("short"), "does not match"),
    ];
    for (redirect_uri, verifier, why) in cases {
        let code = web_code(&server);
        let response = redeem(&server, &code, *redirect_uri, *verifier).await;
        assert_eq!(response.status, 400);
        assert_eq!(response.error(), "invalid_grant");
        let description = response.json()["error_description"].to_string();
        assert!(description.contains(why), "{why}: {description}");
        // Any attempt uses the code up.
        let again = redeem(&server, &code, Some(CALLBACK), Some(VERIFIER)).await;
        assert_eq!(again.error(), "invalid_grant");
    }
    assert_eq!(server.counters().issued, 0);

    // A verifier for a request that had no challenge is refused (PKCE downgrade).
    let callback = server
        .approve(&authorize_url(
            &server,
            &[
                ("response_type", "code"),
                ("client_id", WEB),
                ("redirect_uri", CALLBACK),
            ],
        ))
        .unwrap();
    let code = param(&callback, "code").unwrap();
    let response = redeem(&server, &code, Some(CALLBACK), Some(VERIFIER)).await;
    assert_eq!(response.error(), "invalid_grant");
    let callback = server
        .approve(&authorize_url(
            &server,
            &[
                ("response_type", "code"),
                ("client_id", WEB),
                ("redirect_uri", CALLBACK),
            ],
        ))
        .unwrap();
    let code = param(&callback, "code").unwrap();
    let response = redeem(&server, &code, Some(CALLBACK), None).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.json()["scope"], "jobs.read jobs.write");

    // Unknown codes, codes of another client, missing codes.
    assert_eq!(
        redeem(&server, "ac_nope", Some(CALLBACK), Some(VERIFIER))
            .await
            .error(),
        "invalid_grant"
    );
    let code = web_code(&server);
    let response = token(
        &server,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", "spa"),
            ("code", &code),
            ("redirect_uri", CALLBACK),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_eq!(response.error(), "invalid_grant");
    let response = token_basic(
        &server,
        WEB,
        WEB_SECRET,
        &[("grant_type", "authorization_code")],
    )
    .await;
    assert_eq!(response.error(), "invalid_request");
}

#[tokio::test(start_paused = true)]
async fn a_reused_code_revokes_its_grant() {
    let server = code_server();
    let code = web_code(&server);
    let first = redeem(&server, &code, Some(CALLBACK), Some(VERIFIER)).await;
    let (access, refresh) = (first.access_token(), first.refresh_token());
    assert_eq!(get(&server, "/resource", Some(&access)).await.status, 200);

    let second = redeem(&server, &code, Some(CALLBACK), Some(VERIFIER)).await;
    assert_eq!(second.error(), "invalid_grant");
    assert_eq!(server.counters().code_reuse_detected, 1);
    assert_eq!(get(&server, "/resource", Some(&access)).await.status, 401);
    let response = token_basic(
        &server,
        WEB,
        WEB_SECRET,
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    )
    .await;
    assert_eq!(response.error(), "invalid_grant");
}

#[tokio::test(start_paused = true)]
async fn codes_expire() {
    let server = code_server();
    let code = web_code(&server);
    tokio::time::advance(Duration::from_secs(59)).await;
    assert_eq!(
        redeem(&server, &code, Some(CALLBACK), Some(VERIFIER))
            .await
            .status,
        200
    );
    let code = web_code(&server);
    tokio::time::advance(Duration::from_secs(60)).await;
    let response = redeem(&server, &code, Some(CALLBACK), Some(VERIFIER)).await;
    assert_eq!(response.error(), "invalid_grant");
    assert!(
        response.json()["error_description"]
            .to_string()
            .contains("expired")
    );

    let server = FakeServer::builder()
        .client(WEB, WEB_SECRET)
        .redirect_uri(WEB, CALLBACK)
        .code_lifetime(Duration::from_secs(600))
        .build();
    let code = web_code(&server);
    tokio::time::advance(Duration::from_secs(599)).await;
    assert_eq!(
        redeem(&server, &code, Some(CALLBACK), Some(VERIFIER))
            .await
            .status,
        200
    );
}

#[tokio::test(start_paused = true)]
async fn grant_types_can_be_limited_per_client() {
    let server = code_server();
    let response = token_basic(
        &server,
        "m2m",
        "m2m-secret",
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(response.status, 200);
    let refresh_token = server.issue_refresh_token("m2m", "a");
    let response = token_basic(
        &server,
        "m2m",
        "m2m-secret",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh_token),
        ],
    )
    .await;
    assert_eq!(response.error(), "unauthorized_client");
}

#[tokio::test(start_paused = true)]
async fn endpoint_urls() {
    let server = code_server();
    assert_eq!(server.authorize_url(), "http://testkit.invalid/authorize");
    assert_eq!(server.introspect_url(), "http://testkit.invalid/introspect");
    assert_eq!(server.revoke_url(), "http://testkit.invalid/revoke");
    let running = server.listen().await.unwrap();
    assert!(running.authorize_url().ends_with("/authorize"));
    assert!(running.introspect_url().ends_with("/introspect"));
    assert!(running.revoke_url().ends_with("/revoke"));
    assert!(running.authorize_url().starts_with("http://127.0.0.1:"));
    running.shutdown().await;
}

#[test]
#[should_panic(expected = "names a client that is not registered")]
fn redirect_uris_for_an_unregistered_client_panic() {
    let _ = FakeServer::builder()
        .redirect_uri("ghost", CALLBACK)
        .build();
}

#[test]
#[should_panic(expected = "fragment")]
fn redirect_uris_with_a_fragment_panic() {
    let _ = FakeServer::builder()
        .client("c", "s")
        .redirect_uri("c", "https://a/cb#x");
}
