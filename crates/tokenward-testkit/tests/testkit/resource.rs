//! The protected resource and its `WWW-Authenticate` challenges.

use bytes::Bytes;

use crate::helpers::*;

#[tokio::test(start_paused = true)]
async fn a_valid_token_opens_the_resource() {
    let server = server();
    let access = client_credentials(&server, "jobs.read")
        .await
        .access_token();
    let response = get(&server, "/resource", Some(&access)).await;
    assert_eq!(response.status, 200);
    let body = response.json();
    assert_eq!(body["ok"], true);
    assert_eq!(body["client_id"], CLIENT);
    assert_eq!(body["scope"], "jobs.read");
    assert_eq!(
        get(&server, "/resource/jobs.read", Some(&access))
            .await
            .status,
        200
    );
}

#[tokio::test(start_paused = true)]
async fn the_bearer_scheme_is_case_insensitive() {
    let server = server();
    let access = server.issue_access_token(CLIENT, "");
    let request = http::Request::get(server.resource_url())
        .header("authorization", format!("bEaReR {access}"))
        .body(Bytes::new())
        .unwrap();
    assert_eq!(send(&server, request).await.status, 200);
}

#[tokio::test(start_paused = true)]
async fn no_token_gets_a_bare_challenge() {
    let server = server();
    let response = get(&server, "/resource", None).await;
    assert_eq!(response.status, 401);
    assert_eq!(
        response.header("www-authenticate"),
        Some(r#"Bearer realm="testkit""#)
    );
    // Another scheme counts as no bearer token.
    let request = http::Request::get(server.resource_url())
        .header("authorization", basic(CLIENT, SECRET))
        .body(Bytes::new())
        .unwrap();
    let response = send(&server, request).await;
    assert_eq!(
        response.header("www-authenticate"),
        Some(r#"Bearer realm="testkit""#)
    );
}

#[tokio::test(start_paused = true)]
async fn unknown_and_revoked_tokens_are_invalid_token() {
    let server = server();
    let response = get(&server, "/resource", Some("at_made_up")).await;
    assert_eq!(response.status, 401);
    assert_eq!(
        response.header("www-authenticate"),
        Some(
            r#"Bearer realm="testkit", error="invalid_token", error_description="the access token is unknown""#
        )
    );
    assert_eq!(response.error(), "invalid_token");

    let one = client_credentials(&server, "").await.access_token();
    let two = client_credentials(&server, "").await.access_token();
    assert!(server.revoke_access_token(&one));
    assert!(!server.revoke_access_token("at_made_up"));
    let response = get(&server, "/resource", Some(&one)).await;
    assert!(
        response
            .header("www-authenticate")
            .unwrap()
            .contains("was revoked")
    );
    assert_eq!(get(&server, "/resource", Some(&two)).await.status, 200);

    server.revoke_all_access_tokens();
    assert_eq!(get(&server, "/resource", Some(&two)).await.status, 401);
    let three = client_credentials(&server, "").await.access_token();
    assert_eq!(get(&server, "/resource", Some(&three)).await.status, 200);
}

#[tokio::test(start_paused = true)]
async fn a_missing_scope_is_403_insufficient_scope() {
    let server = server();
    let access = client_credentials(&server, "jobs.read")
        .await
        .access_token();
    let response = get(&server, "/resource/jobs.write", Some(&access)).await;
    assert_eq!(response.status, 403);
    assert_eq!(
        response.header("www-authenticate"),
        Some(r#"Bearer error="insufficient_scope", scope="jobs.write""#)
    );
    assert_eq!(response.error(), "insufficient_scope");
    assert_eq!(response.json()["scope"], "jobs.write");
    assert_eq!(server.counters().resource_rejected, 1);
}

#[tokio::test(start_paused = true)]
async fn any_method_is_served_and_the_body_length_echoed() {
    let server = server();
    let access = server.issue_access_token(CLIENT, "jobs.write");
    let request = http::Request::post(server.url("/resource/jobs.write"))
        .header("authorization", format!("Bearer {access}"))
        .body(Bytes::from(vec![b'x'; 12_345]))
        .unwrap();
    let response = send(&server, request).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.json()["body_len"], 12_345);
    assert_eq!(response.json()["method"], "POST");
}

#[tokio::test(start_paused = true)]
async fn faults_leave_the_resource_alone() {
    let server = server();
    let access = server.issue_access_token(CLIENT, "");
    server.set_fault(Some(tokenward_testkit::Fault::Status(503)));
    assert_eq!(get(&server, "/resource", Some(&access)).await.status, 200);
    assert_eq!(server.counters().faulted, 0);
}
