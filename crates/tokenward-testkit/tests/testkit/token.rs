//! `POST /token`: client authentication, grants, scopes, rotation, response formats.

use std::time::Duration;

use bytes::Bytes;
use tokenward_testkit::{AuthMethod, ExpiresIn, FakeServer};

use crate::helpers::*;

#[tokio::test(start_paused = true)]
async fn client_credentials_with_basic() {
    let server = server();
    let response = token_basic(
        &server,
        CLIENT,
        SECRET,
        &[("grant_type", "client_credentials"), ("scope", "jobs.read")],
    )
    .await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("cache-control"), Some("no-store"));
    assert_eq!(response.header("content-type"), Some("application/json"));
    let body = response.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["scope"], "jobs.read");
    assert!(body.get("refresh_token").is_none());
    let token = body["access_token"].as_str().unwrap();
    assert!(token.len() >= 40);
    assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );

    let record = server.last_token_request().unwrap();
    assert_eq!(record.grant_type, "client_credentials");
    assert_eq!(record.client_id, CLIENT);
    assert_eq!(record.auth_method, AuthMethod::Basic);
    assert_eq!(record.param("scope"), Some("jobs.read"));
}

#[tokio::test(start_paused = true)]
async fn client_credentials_with_post_records_extra_params() {
    let server = server();
    let response = token(
        &server,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT),
            ("client_secret", SECRET),
            ("audience", "https://api.example.com"),
            ("resource", "https://api.example.com/jobs"),
        ],
    )
    .await;
    assert_eq!(response.status, 200);
    // No scope requested: every allowed scope is granted.
    assert_eq!(response.json()["scope"], "jobs.read jobs.write");

    let record = server.last_token_request().unwrap();
    assert_eq!(record.auth_method, AuthMethod::Post);
    assert_eq!(record.client_id, CLIENT);
    assert_eq!(record.param("audience"), Some("https://api.example.com"));
    assert_eq!(
        record.param("resource"),
        Some("https://api.example.com/jobs")
    );
    assert_eq!(
        record.param("client_secret"),
        None,
        "the secret is never recorded"
    );
}

#[tokio::test(start_paused = true)]
async fn secrets_with_special_characters_are_form_encoded_in_basic() {
    let server = FakeServer::builder()
        .client("my client", "p@ss:w+rd %")
        .build();
    let response = token_basic(
        &server,
        "my client",
        "p@ss:w+rd %",
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    // The same secret sent without form-encoding is a different secret.
    let raw = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        "my client:p@ss:w+rd %",
    );
    let request = form_request(&server.token_url())
        .header("authorization", format!("Basic {raw}"))
        .body(encode_form(&[("grant_type", "client_credentials")]))
        .unwrap();
    assert_eq!(send(&server, request).await.status, 401);
}

#[tokio::test(start_paused = true)]
async fn every_registered_secret_is_accepted_and_secrets_rotate() {
    let server = FakeServer::builder()
        .client("c", "old")
        .client("c", "new")
        .build();
    for secret in ["old", "new"] {
        let response = token_basic(
            &server,
            "c",
            secret,
            &[("grant_type", "client_credentials")],
        )
        .await;
        assert_eq!(response.status, 200);
    }
    assert!(server.remove_client_secret("c", "old"));
    assert!(!server.remove_client_secret("c", "old"));
    let response = token_basic(&server, "c", "old", &[("grant_type", "client_credentials")]).await;
    assert_eq!(response.error(), "invalid_client");
    server.add_client_secret("c", "newer");
    let response = token_basic(
        &server,
        "c",
        "newer",
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(response.status, 200);
}

#[tokio::test(start_paused = true)]
async fn wrong_or_missing_secret_is_invalid_client() {
    let server = server();
    // Basic: 401 with a Basic challenge.
    let response = token_basic(
        &server,
        CLIENT,
        "wrong",
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(response.status, 401);
    assert_eq!(response.error(), "invalid_client");
    assert_eq!(
        response.header("www-authenticate"),
        Some("Basic realm=\"testkit\"")
    );

    // Post: 401 without a challenge.
    let response = token(
        &server,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT),
            ("client_secret", "wrong"),
        ],
    )
    .await;
    assert_eq!(response.status, 401);
    assert_eq!(response.error(), "invalid_client");
    assert_eq!(response.header("www-authenticate"), None);

    // Missing secret, unknown client, no client at all, undecodable Basic.
    for params in [
        &[("grant_type", "client_credentials"), ("client_id", CLIENT)][..],
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "nobody"),
            ("client_secret", "x"),
        ][..],
        &[("grant_type", "client_credentials")][..],
    ] {
        let response = token(&server, params).await;
        assert_eq!(
            (response.status.as_u16(), response.error().as_str()),
            (401, "invalid_client"),
            "{params:?}"
        );
    }
    let request = form_request(&server.token_url())
        .header("authorization", "Basic !!!not-base64")
        .body(encode_form(&[("grant_type", "client_credentials")]))
        .unwrap();
    let response = send(&server, request).await;
    assert_eq!(response.status, 401);
    assert_eq!(
        response.header("www-authenticate"),
        Some("Basic realm=\"testkit\"")
    );
    assert_eq!(server.counters().errors, 6);
    assert_eq!(server.counters().issued, 0);
}

#[tokio::test(start_paused = true)]
async fn two_authentication_methods_at_once_are_refused() {
    let server = server();
    let response = token_basic(
        &server,
        CLIENT,
        SECRET,
        &[
            ("grant_type", "client_credentials"),
            ("client_secret", SECRET),
        ],
    )
    .await;
    assert_eq!(response.status, 400);
    assert_eq!(response.error(), "invalid_request");
}

#[tokio::test(start_paused = true)]
async fn public_clients_authenticate_with_their_id_only() {
    let server = server();
    let refresh_token = server.issue_refresh_token("spa", "profile");
    let response = token(
        &server,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", "spa"),
            ("refresh_token", &refresh_token),
        ],
    )
    .await;
    assert_eq!(response.status, 200);
    assert_eq!(
        server.last_token_request().unwrap().auth_method,
        AuthMethod::None
    );
    // ... but may not use client credentials.
    let response = token(
        &server,
        &[("grant_type", "client_credentials"), ("client_id", "spa")],
    )
    .await;
    assert_eq!(response.status, 400);
    assert_eq!(response.error(), "unauthorized_client");
}

#[tokio::test(start_paused = true)]
async fn scopes_outside_the_client_limit_are_invalid_scope() {
    let server = server();
    let response = client_credentials(&server, "jobs.read admin").await;
    assert_eq!(response.status, 400);
    assert_eq!(response.error(), "invalid_scope");
    // A client without limits gets what it asks for.
    let response = token_basic(
        &server,
        "open-client",
        "open-secret",
        &[
            ("grant_type", "client_credentials"),
            ("scope", "anything at-all"),
        ],
    )
    .await;
    assert_eq!(response.json()["scope"], "anything at-all");
}

#[tokio::test(start_paused = true)]
async fn malformed_requests_are_invalid_request_or_unsupported() {
    let server = server();
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("client_id", CLIENT), ("client_secret", SECRET)],
            "invalid_request",
        ),
        (
            &[
                ("grant_type", "password"),
                ("client_id", CLIENT),
                ("client_secret", SECRET),
            ],
            "unsupported_grant_type",
        ),
        (
            &[
                ("grant_type", "refresh_token"),
                ("client_id", CLIENT),
                ("client_secret", SECRET),
            ],
            "invalid_request",
        ),
    ];
    for (params, error) in cases {
        let response = token(&server, params).await;
        assert_eq!(response.status, 400, "{params:?}");
        assert_eq!(response.error(), *error, "{params:?}");
    }

    // Repeated parameter.
    let request = form_request(&server.token_url())
        .body(Bytes::from(
            "grant_type=client_credentials&grant_type=client_credentials&client_id=demo-client&client_secret=demo-secret",
        ))
        .unwrap();
    assert_eq!(send(&server, request).await.error(), "invalid_request");

    // JSON instead of a form.
    let request = http::Request::post(server.token_url())
        .header("content-type", "application/json")
        .body(Bytes::from(r#"{"grant_type":"client_credentials"}"#))
        .unwrap();
    let response = send(&server, request).await;
    assert_eq!(
        (response.status.as_u16(), response.error().as_str()),
        (400, "invalid_request")
    );

    // GET is not allowed at all.
    let request = http::Request::get(server.token_url())
        .body(Bytes::new())
        .unwrap();
    assert_eq!(send(&server, request).await.status, 405);
}

#[tokio::test(start_paused = true)]
async fn refresh_rotates_and_reuse_revokes_the_whole_grant() {
    let server = server();
    let first = server.issue_refresh_token(CLIENT, "jobs.read jobs.write");

    let response = refresh(&server, &first).await;
    let body = response.json();
    assert_eq!(body["scope"], "jobs.read jobs.write");
    let second = response.refresh_token();
    let access_1 = response.access_token();
    assert_ne!(second, first);
    assert_ne!(access_1, second);

    let response = refresh(&server, &second).await;
    let third = response.refresh_token();
    let access_2 = response.access_token();
    assert_eq!(get(&server, "/resource", Some(&access_2)).await.status, 200);

    // The first (rotated) refresh token comes back: reuse detected, the grant is revoked.
    let response = refresh(&server, &first).await;
    assert_eq!(response.status, 400);
    assert_eq!(response.error(), "invalid_grant");
    assert_eq!(server.counters().refresh_reuse_detected, 1);

    // Every token of the grant is dead now, even the newest refresh token.
    for access in [&access_1, &access_2] {
        let response = get(&server, "/resource", Some(access)).await;
        assert_eq!(response.status, 401);
        assert_eq!(
            response.header("www-authenticate"),
            Some(
                r#"Bearer realm="testkit", error="invalid_token", error_description="the access token was revoked""#
            )
        );
    }
    let response = refresh(&server, &third).await;
    assert_eq!(response.error(), "invalid_grant");
    assert_eq!(server.counters().issued_for("refresh_token"), 2);
}

#[tokio::test(start_paused = true)]
async fn refresh_without_rotation_keeps_the_token() {
    let server = FakeServer::builder()
        .client(CLIENT, SECRET)
        .rotate_refresh_tokens(false)
        .build();
    let refresh_token = server.issue_refresh_token(CLIENT, "jobs.read");
    for _ in 0..3 {
        let response = refresh(&server, &refresh_token).await;
        assert_eq!(response.status, 200);
        assert!(response.json().get("refresh_token").is_none());
    }
    server.set_rotate_refresh_tokens(true);
    assert_eq!(refresh(&server, &refresh_token).await.status, 200);
    assert_eq!(
        refresh(&server, &refresh_token).await.error(),
        "invalid_grant"
    );
}

#[tokio::test(start_paused = true)]
async fn refresh_may_narrow_but_not_widen_scope() {
    let server = server();
    let refresh_token = server.issue_refresh_token(CLIENT, "jobs.read jobs.write");
    let response = token_basic(
        &server,
        CLIENT,
        SECRET,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh_token),
            ("scope", "jobs.read"),
        ],
    )
    .await;
    assert_eq!(response.json()["scope"], "jobs.read");
    // The new refresh token keeps the original scope.
    let next = response.refresh_token();
    let response = refresh(&server, &next).await;
    assert_eq!(response.json()["scope"], "jobs.read jobs.write");
    let third = response.refresh_token();

    let response = token_basic(
        &server,
        CLIENT,
        SECRET,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &third),
            ("scope", "jobs.read admin"),
        ],
    )
    .await;
    assert_eq!(response.status, 400);
    assert_eq!(response.error(), "invalid_scope");
    // A refused refresh does not use the refresh token up.
    assert_eq!(refresh(&server, &third).await.status, 200);
}

#[tokio::test(start_paused = true)]
async fn unknown_foreign_and_revoked_refresh_tokens_are_invalid_grant() {
    let server = server();
    assert_eq!(
        refresh(&server, "rt_nonsense").await.error(),
        "invalid_grant"
    );

    let foreign = server.issue_refresh_token("open-client", "x");
    assert_eq!(refresh(&server, &foreign).await.error(), "invalid_grant");

    let revoked = server.issue_refresh_token(CLIENT, "jobs.read");
    assert!(server.revoke_grant_of(&revoked));
    assert!(!server.revoke_grant_of("rt_nonsense"));
    assert_eq!(refresh(&server, &revoked).await.error(), "invalid_grant");
    assert_eq!(server.counters().refresh_reuse_detected, 0);
}

#[tokio::test(start_paused = true)]
async fn tokens_expire_after_their_lifetime() {
    let server = FakeServer::builder()
        .client(CLIENT, SECRET)
        .token_lifetime(Duration::from_secs(60))
        .build();
    let response = client_credentials(&server, "").await;
    assert_eq!(response.json()["expires_in"], 60);
    assert!(
        response.json().get("scope").is_none(),
        "nothing requested, nothing granted"
    );
    let access = response.access_token();

    tokio::time::advance(Duration::from_secs(59)).await;
    assert_eq!(get(&server, "/resource", Some(&access)).await.status, 200);
    tokio::time::advance(Duration::from_secs(1)).await;
    let response = get(&server, "/resource", Some(&access)).await;
    assert_eq!(response.status, 401);
    assert_eq!(
        response.header("www-authenticate"),
        Some(
            r#"Bearer realm="testkit", error="invalid_token", error_description="the access token expired""#
        )
    );

    // A new lifetime applies to tokens issued from then on.
    server.set_token_lifetime(Duration::from_secs(5));
    let access = client_credentials(&server, "").await.access_token();
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(get(&server, "/resource", Some(&access)).await.status, 401);
}

#[tokio::test(start_paused = true)]
async fn expires_in_formats_and_token_type() {
    let server = FakeServer::builder()
        .client(CLIENT, SECRET)
        .expires_in_format(ExpiresIn::String)
        .build();
    assert_eq!(
        client_credentials(&server, "").await.json()["expires_in"],
        "3600"
    );

    server.set_expires_in_format(ExpiresIn::Omitted);
    let response = client_credentials(&server, "").await;
    assert!(response.json().get("expires_in").is_none());
    // Omitted from the response, but the token still expires.
    let access = response.access_token();
    tokio::time::advance(Duration::from_secs(3600)).await;
    assert_eq!(get(&server, "/resource", Some(&access)).await.status, 401);

    server.set_expires_in_format(ExpiresIn::Number);
    server.set_token_type("bearer");
    let body = client_credentials(&server, "").await.json();
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["token_type"], "bearer");
}

#[tokio::test(start_paused = true)]
async fn tokens_are_distinct() {
    let server = server();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..20 {
        let access = client_credentials(&server, "").await.access_token();
        assert!(seen.insert(access));
    }
    let refresh_token = server.issue_refresh_token(CLIENT, "jobs.read");
    assert!(seen.insert(refresh_token));
}

#[tokio::test(start_paused = true)]
async fn counters_count_and_reset() {
    let server = server();
    client_credentials(&server, "jobs.read").await;
    client_credentials(&server, "admin").await;
    let refresh_token = server.issue_refresh_token(CLIENT, "jobs.read");
    let access = refresh(&server, &refresh_token).await.access_token();
    get(&server, "/resource", Some(&access)).await;
    get(&server, "/resource", None).await;
    get(&server, "/resource/jobs.write", Some(&access)).await;

    let counters = server.counters();
    assert_eq!(counters.token_requests, 3);
    assert_eq!(server.token_calls(), 3);
    assert_eq!(counters.issued, 2);
    assert_eq!(counters.issued_for("client_credentials"), 1);
    assert_eq!(counters.issued_for("refresh_token"), 1);
    assert_eq!(counters.issued_for("password"), 0);
    assert_eq!(counters.errors, 1);
    assert_eq!(counters.faulted, 0);
    assert_eq!(counters.resource_requests, 3);
    assert_eq!(counters.resource_rejected, 2);

    server.reset_counters();
    assert_eq!(server.counters(), tokenward_testkit::Counters::default());
}

#[tokio::test(start_paused = true)]
async fn clones_share_state() {
    let server = server();
    let clone = server.clone();
    client_credentials(&clone, "").await;
    assert_eq!(server.token_calls(), 1);
    assert_eq!(server.last_token_request().unwrap().client_id, CLIENT);
}

#[test]
#[should_panic(expected = "not registered")]
fn scopes_for_an_unregistered_client_panic() {
    let _ = FakeServer::builder().client_scopes("ghost", "a b").build();
}

#[tokio::test(start_paused = true)]
async fn within_the_grace_period_the_previous_refresh_token_is_accepted_once() {
    let server = FakeServer::builder()
        .client(CLIENT, SECRET)
        .refresh_token_grace(Duration::from_secs(30))
        .build();
    let first = server.issue_refresh_token(CLIENT, "jobs.read");
    let lost = refresh(&server, &first).await.refresh_token(); // the client dies with it

    // The client comes back with the previous token, within the grace period.
    let response = refresh(&server, &first).await;
    let third = response.refresh_token();
    assert_eq!(server.counters().refresh_grace_used, 1);
    assert_eq!(server.counters().refresh_reuse_detected, 0);

    // The lost successor is retired: presenting it now is reuse, and revokes the grant.
    let response = refresh(&server, &lost).await;
    assert_eq!(response.error(), "invalid_grant");
    assert_eq!(server.counters().refresh_reuse_detected, 1);
    assert_eq!(refresh(&server, &third).await.error(), "invalid_grant");
}

#[tokio::test(start_paused = true)]
async fn grace_ends_when_the_successor_is_used_or_the_period_passes() {
    let server = FakeServer::builder()
        .client(CLIENT, SECRET)
        .refresh_token_grace(Duration::from_secs(30))
        .build();
    // The successor was used: the previous token is plain reuse.
    let first = server.issue_refresh_token(CLIENT, "jobs.read");
    let second = refresh(&server, &first).await.refresh_token();
    refresh(&server, &second).await.refresh_token();
    assert_eq!(refresh(&server, &first).await.error(), "invalid_grant");
    assert_eq!(server.counters().refresh_grace_used, 0);
    assert_eq!(server.counters().refresh_reuse_detected, 1);

    // The period passed.
    let first = server.issue_refresh_token(CLIENT, "jobs.read");
    refresh(&server, &first).await.refresh_token();
    tokio::time::advance(Duration::from_secs(31)).await;
    assert_eq!(refresh(&server, &first).await.error(), "invalid_grant");
    assert_eq!(server.counters().refresh_reuse_detected, 2);
}
