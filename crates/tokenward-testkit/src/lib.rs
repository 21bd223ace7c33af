//! # tokenward-testkit
//!
//! A fake OAuth 2.0 authorization server and protected resource, for testing
//! [`tokenward`] and the code that uses it, deterministically.
//!
//! * **`GET /authorize`** (RFC 6749 §4.1, PKCE S256 per RFC 7636): a simulated user approves
//!   at once and the browser is redirected with `code` and `state` (or an RFC 6749 §4.1.2.1
//!   `error`); only registered redirect URIs, PKCE required for public clients.
//!   [`FakeServer::approve`] runs this step in-process.
//! * **`POST /token`** (RFC 6749): `client_secret_basic`, `client_secret_post` and public
//!   clients; the authorization-code grant (single-use codes that expire, redirect URI and PKCE
//!   verifier checked, a reused code revokes what it issued); the client-credentials grant; the
//!   refresh-token grant with rotation and reuse detection (a rotated refresh token presented
//!   again revokes its whole grant, as real servers do); scope limits per client; `expires_in`
//!   as a number, a string or omitted.
//! * **`POST /introspect`** (RFC 7662) and **`POST /revoke`** (RFC 7009), with client
//!   authentication; revoking a refresh token revokes its whole grant.
//! * **`/resource`** and **`/resource/{scope}`**: a protected resource that answers 401 and 403
//!   with RFC 6750 `WWW-Authenticate` challenges (`invalid_token`, `insufficient_scope`).
//! * **Scripted [`Fault`]s** on the token endpoint (and, queued with
//!   [`FakeServer::push_fault_at`], on introspection and revocation): 429 or 503 with
//!   `Retry-After`, 5xx, latency, hangs, garbage, oversized or slowly dripped bodies, a 200
//!   carrying an error, connection resets.
//! * **[`Counters`]** and the [last token request](FakeServer::last_token_request) for
//!   assertions; admin methods to revoke tokens and rotate client secrets.
//!
//! Reach it in-process with [`FakeServer::http_client`] (a [`tokenward::HttpClient`]; no
//! sockets, and every expiry runs on tokio time, so `#[tokio::test(start_paused = true)]` and
//! `tokio::time::advance` work), or over TCP with [`FakeServer::listen`] for any HTTP client.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//!
//! use bytes::Bytes;
//! use http_body_util::BodyExt;
//! use tokenward::HttpClient;
//! use tokenward_testkit::{Fault, FakeServer};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let server = FakeServer::builder()
//!     .client("demo-client", "demo-secret")
//!     .client_scopes("demo-client", "jobs.read jobs.write")
//!     .token_lifetime(Duration::from_secs(3600))
//!     .build();
//! let client = server.http_client();
//!
//! let token_request = || {
//!     http::Request::post(server.token_url())
//!         .header("content-type", "application/x-www-form-urlencoded")
//!         .body(Bytes::from_static(
//!             b"grant_type=client_credentials&client_id=demo-client&client_secret=demo-secret&scope=jobs.read",
//!         ))
//!         .unwrap()
//! };
//!
//! // The first token request meets a scripted 503, the second succeeds.
//! server.push_fault(Fault::Status(503));
//! let response = client.send(token_request()).await.unwrap();
//! assert_eq!(response.status(), 503);
//! let response = client.send(token_request()).await.unwrap();
//! assert_eq!(response.status(), 200);
//! let body = response.into_body().collect().await.unwrap().to_bytes();
//! let token: serde_json::Value = serde_json::from_slice(&body).unwrap();
//! assert_eq!(token["expires_in"], 3600);
//! let access_token = token["access_token"].as_str().unwrap().to_owned();
//!
//! // The token opens the resource ...
//! let resource = |path: &str| {
//!     http::Request::get(server.url(path))
//!         .header("authorization", format!("Bearer {access_token}"))
//!         .body(Bytes::new())
//!         .unwrap()
//! };
//! assert_eq!(client.send(resource("/resource/jobs.read")).await.unwrap().status(), 200);
//! // ... but not what needs a scope it lacks,
//! let forbidden = client.send(resource("/resource/jobs.write")).await.unwrap();
//! assert_eq!(forbidden.status(), 403);
//! assert_eq!(
//!     forbidden.headers()["www-authenticate"],
//!     r#"Bearer error="insufficient_scope", scope="jobs.write""#
//! );
//! // ... and not after it expired (paused time: advancing is instant).
//! tokio::time::advance(Duration::from_secs(3600)).await;
//! let expired = client.send(resource("/resource")).await.unwrap();
//! assert_eq!(expired.status(), 401);
//!
//! let counters = server.counters();
//! assert_eq!(counters.token_requests, 2);
//! assert_eq!(counters.issued_for("client_credentials"), 1);
//! assert_eq!(counters.faulted, 1);
//! assert_eq!(counters.resource_rejected, 2);
//! # }
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod authorize;
mod client;
mod counters;
mod discovery;
mod fault;
mod introspect;
mod listen;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
mod record;
mod redis;
mod resource;
mod server;
mod token;

pub use client::InProcessClient;
pub use counters::Counters;
pub use fault::{Alter, Endpoint, Fault};
pub use listen::RunningServer;
pub use record::{AuthMethod, TokenRequestRecord};
pub use redis::{REQUIRE_REDIS, RedisServer};
pub use server::{ExpiresIn, FakeServer, FakeServerBuilder};
