//! Discovery against oidc-provider: it serves OpenID Connect's
//! `/.well-known/openid-configuration` (not RFC 8414's URL, which answers 404), and names
//! RFC 9207's `iss` in its metadata.

use tokenward::discovery::DiscoveryError;
use tokenward::{
    AuthorizationCode, AuthorizationServer, ClientAuth, ClientCredentials, Error, Introspection,
    Revocation, TokenCache,
};

use crate::harness::{Provider, http};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_comes_from_the_issuer() {
    let op = Provider::start(300);
    let http = http();
    let server = AuthorizationServer::discover(&op.issuer).await.unwrap();
    let metadata = server.metadata();
    assert_eq!(metadata.issuer, op.issuer);
    assert_eq!(metadata.token_endpoint.as_ref(), Some(&op.token_endpoint));
    assert_eq!(
        metadata.authorization_endpoint.as_ref(),
        Some(&op.authorization_endpoint)
    );
    assert_eq!(
        metadata.introspection_endpoint.as_ref(),
        Some(&op.introspection_endpoint)
    );
    assert_eq!(
        metadata.revocation_endpoint.as_ref(),
        Some(&op.revocation_endpoint)
    );
    assert!(metadata.authorization_response_iss_parameter_supported);

    let grant = ClientCredentials::from_issuer(&server, &op.cc.id)
        .client_secret(&op.cc.secret)
        .auth_method(ClientAuth::Post)
        .scope("jobs.read")
        .param("resource", &op.resource)
        .build()
        .unwrap();
    let cache = TokenCache::builder(grant).build();
    let header = cache.header().await.unwrap();
    assert_eq!(crate::get(&http, &op.resource, &header).await.status(), 200);
    let token = crate::bearer(&header).to_owned();

    let introspection = Introspection::from_issuer(&server, &op.rs.id)
        .client_secret(&op.rs.secret)
        .build()
        .unwrap();
    assert!(introspection.introspect(&token).await.unwrap().active);
    Revocation::from_issuer(&server, &op.cc.id)
        .client_secret(&op.cc.secret)
        .auth_method(ClientAuth::Post)
        .build()
        .unwrap()
        .revoke(&token, None)
        .await
        .unwrap();
    assert!(!introspection.introspect(&token).await.unwrap().active);

    // The code flow: the metadata says the callback carries `iss`, so it is required.
    let flow = AuthorizationCode::from_issuer(&server, &op.web.id)
        .redirect_uri(&op.redirect_uri)
        .client_secret(&op.web.secret)
        .scope("openid offline_access jobs.read")
        .build()
        .unwrap();
    let request = flow.authorize_with(&[("prompt", "consent"), ("resource", &op.resource)]);
    assert!(request.url().starts_with(&op.authorization_endpoint));
    let callback = op.browse(&http, request.url()).await;
    let state = request.state().to_owned();
    let without_iss: Vec<&str> = callback
        .split('&')
        .filter(|pair| !pair.starts_with("iss="))
        .collect();
    let verifier = tokenward::ExposeSecret::expose_secret(request.code_verifier()).to_owned();
    let error = flow
        .exchange(request, &without_iss.join("&"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::IssuerMismatch { received: None, .. }),
        "{error:?}"
    );
    // The same callback with its `iss`: exchanged.
    let request = tokenward::AuthorizationRequest::resume(state, verifier).unwrap();
    let token = flow.exchange(request, &callback).await.unwrap();
    assert!(token.refresh_token().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issuer_with_a_path_and_a_mismatched_one() {
    let op = Provider::start_at(300, "/tenants/a");
    assert!(op.issuer.ends_with("/tenants/a"), "{}", op.issuer);
    let server = AuthorizationServer::discover(&op.issuer).await.unwrap();
    assert_eq!(
        server.metadata().token_endpoint.as_ref(),
        Some(&op.token_endpoint)
    );
    let grant = ClientCredentials::from_issuer(&server, &op.cc.id)
        .client_secret(&op.cc.secret)
        .auth_method(ClientAuth::Post)
        .scope("jobs.read")
        .param("resource", &op.resource)
        .build()
        .unwrap();
    let header = TokenCache::builder(grant).build().header().await.unwrap();
    assert_eq!(
        crate::get(&http(), &op.resource, &header).await.status(),
        200
    );

    // The same server under another name: its metadata names its own issuer, so it is
    // refused.
    let alias = op.issuer.replace("127.0.0.1", "localhost");
    let error = AuthorizationServer::discover(&alias).await.unwrap_err();
    match error {
        Error::Discovery(e) => match *e {
            DiscoveryError::IssuerMismatch { expected, found } => {
                assert_eq!(expected, alias);
                assert_eq!(found, op.issuer);
            }
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}
