//! `POST /introspect` (RFC 7662) and `POST /revoke` (RFC 7009).

use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use tokenward_testkit::{Endpoint, FakeServer, Fault};

use crate::helpers::*;

async fn introspect(
    server: &FakeServer,
    id: &str,
    secret: &str,
    params: &[(&str, &str)],
) -> Collected {
    let request = form_request(&server.introspect_url())
        .header("authorization", basic(id, secret))
        .body(encode_form(params))
        .unwrap();
    send(server, request).await
}

async fn revoke(server: &FakeServer, params: &[(&str, &str)]) -> Collected {
    let request = form_request(&server.revoke_url())
        .body(encode_form(params))
        .unwrap();
    send(server, request).await
}

/// `demo-client` revokes with `client_secret_post`.
async fn revoke_own(server: &FakeServer, token: &str, hint: Option<&str>) -> Collected {
    let mut params = vec![
        ("client_id", CLIENT),
        ("client_secret", SECRET),
        ("token", token),
    ];
    params.extend(hint.map(|h| ("token_type_hint", h)));
    revoke(server, &params).await
}

#[tokio::test(start_paused = true)]
async fn introspection_describes_active_tokens() {
    let server = server();
    let access = client_credentials(&server, "jobs.read")
        .await
        .access_token();
    let response = introspect(&server, "open-client", "open-secret", &[("token", &access)]).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("cache-control"), Some("no-store"));
    let body = response.json();
    assert_eq!(body["active"], true);
    assert_eq!(body["scope"], "jobs.read");
    assert_eq!(body["client_id"], CLIENT);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(
        body["sub"], CLIENT,
        "a client-credentials token acts for its client"
    );
    let (exp, iat) = (body["exp"].as_u64().unwrap(), body["iat"].as_u64().unwrap());
    assert_eq!(exp - iat, 3600);

    let refresh_token = server.issue_refresh_token(CLIENT, "jobs.read jobs.write");
    let body = introspect(
        &server,
        CLIENT,
        SECRET,
        &[
            ("token", &refresh_token),
            ("token_type_hint", "refresh_token"),
        ],
    )
    .await
    .json();
    assert_eq!(body["active"], true);
    assert_eq!(body["scope"], "jobs.read jobs.write");
    assert_eq!(body["client_id"], CLIENT);
    assert!(body["sub"].is_string());
    assert!(body.get("exp").is_none());
    assert_eq!(server.counters().introspect_requests, 2);
}

#[tokio::test(start_paused = true)]
async fn expired_revoked_rotated_and_unknown_tokens_are_inactive() {
    let server = server();
    let inactive = json!({ "active": false });
    let first = server.issue_refresh_token(CLIENT, "jobs.read");
    let refreshed = refresh(&server, &first).await;
    let (access, second) = (refreshed.access_token(), refreshed.refresh_token());
    let look = |token: String| {
        let server = server.clone();
        async move {
            introspect(&server, CLIENT, SECRET, &[("token", &token)])
                .await
                .json()
        }
    };
    assert_eq!(look(first.clone()).await, inactive, "rotated");
    assert_eq!(look("nope".into()).await, inactive, "unknown");
    assert_eq!(look(second.clone()).await["active"], true);

    tokio::time::advance(Duration::from_secs(3600)).await;
    assert_eq!(look(access.clone()).await, inactive, "expired");
    assert!(server.revoke_grant_of(&second));
    assert_eq!(look(second).await, inactive, "revoked");
}

#[tokio::test(start_paused = true)]
async fn introspection_requires_an_authenticated_confidential_client() {
    let server = server();
    let access = server.issue_access_token(CLIENT, "jobs.read");
    let response = introspect(&server, CLIENT, "wrong", &[("token", &access)]).await;
    assert_eq!(response.status, 401);
    assert_eq!(response.error(), "invalid_client");
    // A public client has nothing to authenticate with.
    let request = form_request(&server.introspect_url())
        .body(encode_form(&[("client_id", "spa"), ("token", &access)]))
        .unwrap();
    let response = send(&server, request).await;
    assert_eq!(
        (response.status.as_u16(), response.error().as_str()),
        (401, "invalid_client")
    );
    let response = introspect(&server, CLIENT, SECRET, &[]).await;
    assert_eq!(response.error(), "invalid_request");
    // Introspection and revocation do not count as token requests or token errors.
    let counters = server.counters();
    assert_eq!((counters.token_requests, counters.errors), (0, 0));
    assert_eq!(counters.introspect_requests, 3);
}

#[tokio::test(start_paused = true)]
async fn revoking_an_access_token_revokes_just_it() {
    let server = server();
    let refresh_token = server.issue_refresh_token(CLIENT, "jobs.read");
    let refreshed = refresh(&server, &refresh_token).await;
    let access = refreshed.access_token();
    let response = revoke_own(&server, &access, Some("access_token")).await;
    assert_eq!(response.status, 200);
    let rejected = get(&server, "/resource", Some(&access)).await;
    assert_eq!(rejected.status, 401);
    assert!(
        rejected
            .header("www-authenticate")
            .unwrap()
            .contains("invalid_token")
    );
    // Its grant lives on.
    let again = refresh(&server, &refreshed.refresh_token()).await;
    assert_eq!(
        get(&server, "/resource", Some(&again.access_token()))
            .await
            .status,
        200
    );
    assert_eq!(server.counters().revoke_requests, 1);
}

#[tokio::test(start_paused = true)]
async fn revoking_a_refresh_token_revokes_its_grant() {
    let server = server();
    let first = server.issue_refresh_token(CLIENT, "jobs.read");
    let refreshed = refresh(&server, &first).await;
    let (access, second) = (refreshed.access_token(), refreshed.refresh_token());
    // A wrong hint is only a hint.
    let response = revoke_own(&server, &second, Some("access_token")).await;
    assert_eq!(response.status, 200);
    assert_eq!(refresh(&server, &second).await.error(), "invalid_grant");
    assert_eq!(get(&server, "/resource", Some(&access)).await.status, 401);
    // Again, unknown, and an unknown hint: still 200.
    assert_eq!(revoke_own(&server, &second, None).await.status, 200);
    assert_eq!(
        revoke_own(&server, "nope", Some("refresh_token"))
            .await
            .status,
        200
    );
    assert_eq!(
        revoke_own(&server, "nope", Some("id_token")).await.status,
        200
    );
}

#[tokio::test(start_paused = true)]
async fn revocation_authenticates_and_checks_ownership() {
    let server = server();
    let access = server.issue_access_token(CLIENT, "jobs.read");
    let response = revoke(
        &server,
        &[
            ("client_id", CLIENT),
            ("client_secret", "wrong"),
            ("token", &access),
        ],
    )
    .await;
    assert_eq!(
        (response.status.as_u16(), response.error().as_str()),
        (401, "invalid_client")
    );
    let response = revoke(
        &server,
        &[
            ("client_id", "open-client"),
            ("client_secret", "open-secret"),
            ("token", &access),
        ],
    )
    .await;
    assert_eq!(
        (response.status.as_u16(), response.error().as_str()),
        (400, "unauthorized_client")
    );
    assert_eq!(get(&server, "/resource", Some(&access)).await.status, 200);
    let response = revoke(&server, &[("client_id", CLIENT), ("client_secret", SECRET)]).await;
    assert_eq!(response.error(), "invalid_request");

    // A public client revokes its own refresh token with its id alone.
    let refresh_token = server.issue_refresh_token("spa", "a");
    let response = revoke(&server, &[("client_id", "spa"), ("token", &refresh_token)]).await;
    assert_eq!(response.status, 200);
    let response = token(
        &server,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", "spa"),
            ("refresh_token", &refresh_token),
        ],
    )
    .await;
    assert_eq!(response.error(), "invalid_grant");
}

#[tokio::test(start_paused = true)]
async fn faults_can_be_queued_for_introspection_and_revocation() {
    let server = server();
    let access = server.issue_access_token(CLIENT, "jobs.read");
    server.push_fault_at(
        Endpoint::Revoke,
        Fault::ServiceUnavailable {
            retry_after: Some("7".into()),
        },
    );
    server.push_fault_at(Endpoint::Introspect, Fault::Status(502));
    let response = revoke_own(&server, &access, None).await;
    assert_eq!(response.status, 503);
    assert_eq!(response.header("retry-after"), Some("7"));
    assert_eq!(get(&server, "/resource", Some(&access)).await.status, 200);
    let response = introspect(&server, CLIENT, SECRET, &[("token", &access)]).await;
    assert_eq!(response.status, 502);
    // One each; the token endpoint was not affected.
    assert_eq!(client_credentials(&server, "").await.status, 200);
    assert_eq!(revoke_own(&server, &access, None).await.status, 200);
    assert_eq!(
        introspect(&server, CLIENT, SECRET, &[("token", &access)])
            .await
            .json()["active"],
        false
    );
    let counters = server.counters();
    assert_eq!(counters.faulted, 2);
    assert_eq!(counters.errors, 0, "errors counts token responses only");

    // clear_faults empties every queue; a 503 also works at /token.
    server.push_fault_at(Endpoint::Revoke, Fault::Status(500));
    server.push_fault_at(
        Endpoint::Token,
        Fault::ServiceUnavailable { retry_after: None },
    );
    server.clear_faults();
    assert_eq!(revoke_own(&server, &access, None).await.status, 200);
    server.push_fault_at(
        Endpoint::Token,
        Fault::ServiceUnavailable { retry_after: None },
    );
    let response = client_credentials(&server, "").await;
    assert_eq!(response.status, 503);
    assert_eq!(response.header("retry-after"), None);
}

#[tokio::test(start_paused = true)]
async fn introspection_and_revocation_are_post_only() {
    let server = server();
    for url in [server.introspect_url(), server.revoke_url()] {
        let request = http::Request::get(url).body(Bytes::new()).unwrap();
        assert_eq!(send(&server, request).await.status, 405);
    }
}
