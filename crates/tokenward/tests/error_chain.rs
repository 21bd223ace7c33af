//! Each cause appears once in an error's chain: a wrapper's `Display` says what happened at
//! its level and leaves the cause to `source()`, so walking the chain (as anyhow's `{:#}`,
//! `tokenward::error::chain` or a log line does) prints every message exactly once.

use std::sync::Arc;

use tokenward::error::chain;
use tokenward::store::StoreError;
use tokenward::{AuthorizationServer, ClientCredentials, Error, TokenSource, TransportErrorKind};

/// Every message in the chain, outermost first.
fn messages(error: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut out = vec![error.to_string()];
    let mut source = error.source();
    while let Some(e) = source {
        out.push(e.to_string());
        source = e.source();
    }
    out
}

/// Each message of the chain is in the walked text once, and no message repeats another.
fn printed_once(error: &(dyn std::error::Error + 'static), innermost: &str) {
    let all = messages(error);
    let walked = chain(error).to_string();
    assert_eq!(walked, all.join(": "));
    assert_eq!(
        walked.matches(innermost).count(),
        1,
        "{innermost:?} once in {walked:?}"
    );
    for (i, outer) in all.iter().enumerate() {
        for inner in &all[i + 1..] {
            assert!(
                !outer.contains(inner.as_str()),
                "{outer:?} repeats {inner:?}"
            );
        }
    }
}

fn io(message: &str) -> Arc<std::io::Error> {
    Arc::new(std::io::Error::other(message.to_owned()))
}

#[test]
fn store_errors_print_their_io_error_once() {
    let read = Error::Store(StoreError::Read {
        path: "/var/lib/app/grant.json".into(),
        source: io("disk on fire"),
    });
    printed_once(&read, "disk on fire");
    assert_eq!(
        chain(&read).to_string(),
        "could not read /var/lib/app/grant.json: disk on fire"
    );
    let write = Error::Store(StoreError::Write {
        path: "/var/lib/app/grant.json".into(),
        source: io("no space left"),
    });
    printed_once(&write, "no space left");
    let backend = Error::Store(StoreError::Backend(Arc::new(std::io::Error::other(
        "redis said no",
    ))));
    printed_once(&backend, "redis said no");
    assert_eq!(
        messages(&backend).len(),
        2,
        "the backend's error is the source"
    );
}

#[tokio::test]
async fn a_transport_failure_prints_each_layer_once() {
    // Nothing listens on this port: reqwest's own chain comes under ours.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let grant = ClientCredentials::builder(format!("http://127.0.0.1:{port}/token"), "svc")
        .client_secret("s")
        .build()
        .unwrap();
    let error = grant.fetch().await.unwrap_err();
    let Error::Transport(transport) = &error else {
        panic!("{error:?}");
    };
    assert_eq!(transport.kind(), TransportErrorKind::Connect);
    let all = messages(&error);
    assert!(all.len() >= 3, "{all:?}");
    assert_eq!(all[0], "could not reach the authorization server");
    assert_eq!(all[1], "could not connect");
    let innermost = all.last().unwrap().clone();
    printed_once(&error, &innermost);
}

#[tokio::test]
async fn a_discovery_failure_prints_its_transport_error_once() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let error = AuthorizationServer::discover(format!("http://127.0.0.1:{port}"))
        .await
        .unwrap_err();
    assert!(error.is_retryable());
    let all = messages(&error);
    assert!(
        all[0].starts_with("the authorization server metadata could not be fetched"),
        "{all:?}"
    );
    let innermost = all.last().unwrap().clone();
    printed_once(&error, &innermost);
}
