//! No secret or token in any Debug output.

use tokenward_testkit::FakeServer;

use crate::helpers::*;

#[tokio::test(start_paused = true)]
async fn debug_output_contains_no_secret() {
    let builder = FakeServer::builder()
        .client("c", "super-secret-one")
        .client("c", "super-secret-two")
        .redirect_uri("c", "https://app.example.com/cb")
        .public_client("spa");
    let builder_debug = format!("{builder:?}");
    let server = builder.build();
    server.add_client_secret("c", "super-secret-three");
    let refresh_token = server.issue_refresh_token("c", "a");
    let response = token_basic(
        &server,
        "c",
        "super-secret-one",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh_token),
        ],
    )
    .await;
    let access = response.access_token();
    let rotated = response.refresh_token();
    let record = server.last_token_request().unwrap();
    assert_eq!(record.param("refresh_token"), Some(refresh_token.as_str()));
    let callback = server
        .approve(
            "/authorize?response_type=code&client_id=c&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb",
        )
        .unwrap();
    let code = callback.strip_prefix("code=").unwrap().to_owned();

    let running = server.listen().await.unwrap();
    let outputs = [
        builder_debug,
        format!("{server:?}"),
        format!("{server:#?}"),
        format!("{record:?}"),
        format!("{:?}", server.http_client()),
        format!("{running:?}"),
        format!("{:?}", server.counters()),
    ];
    for output in &outputs {
        for secret in [
            "super-secret",
            refresh_token.as_str(),
            rotated.as_str(),
            access.as_str(),
            code.as_str(),
        ] {
            assert!(!output.contains(secret), "{secret} leaked in {output}");
        }
    }
    assert!(
        outputs[1].contains("\"c\""),
        "client ids are shown: {}",
        outputs[1]
    );
    assert!(outputs[3].contains("[REDACTED]"));
    running.shutdown().await;
}
