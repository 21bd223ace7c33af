//! `private_key_jwt` (RFC 7523 §2.2) against oidc-provider, which checks the signature with
//! the client's registered public keys, the audience, the lifetime and the `jti`.

use tokenward::assertion::{PrivateKeyJwt, SigningAlgorithm};
use tokenward::{AuthorizationServer, ClientAuth, ClientCredentials, TokenCache, TokenSource};

use crate::harness::{Provider, http};

fn key(op: &Provider, alg: &str, algorithm: SigningAlgorithm) -> ClientAuth {
    let pem = &op.key_client.1[alg];
    ClientAuth::private_key_jwt(
        PrivateKeyJwt::from_pem(algorithm, pem.as_bytes())
            .unwrap()
            .key_id(alg),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_key_jwt_with_each_algorithm() {
    let op = Provider::start(300);
    let http = http();
    let server = AuthorizationServer::discover(&op.issuer).await.unwrap();
    for (alg, algorithm) in [
        ("ES256", SigningAlgorithm::Es256),
        ("RS256", SigningAlgorithm::Rs256),
        ("EdDSA", SigningAlgorithm::EdDsa),
    ] {
        // From the issuer: `aud` is the issuer.
        let grant = ClientCredentials::from_issuer(&server, &op.key_client.0)
            .auth_method(key(&op, alg, algorithm))
            .scope("jobs.read")
            .param("resource", &op.resource)
            .build()
            .unwrap();
        let cache = TokenCache::builder(grant).build();
        let header = cache
            .header()
            .await
            .unwrap_or_else(|e| panic!("{alg}: {}", tokenward::error::chain(&e)));
        assert_eq!(crate::get(&http, &op.resource, &header).await.status(), 200);
        // A second token: a new assertion (oidc-provider refuses a replayed jti).
        cache.force_refresh().await.unwrap();

        // From the token URL: `aud` is the token endpoint. The key from its JWK, whose kid
        // and algorithm it carries.
        let jwk = PrivateKeyJwt::from_jwk(&op.key_client_jwks[alg]).unwrap();
        assert_eq!(jwk.algorithm(), algorithm);
        let grant = ClientCredentials::builder(&op.token_endpoint, &op.key_client.0)
            .auth_method(ClientAuth::private_key_jwt(jwk))
            .scope("jobs.read")
            .param("resource", &op.resource)
            .build()
            .unwrap();
        grant.fetch().await.unwrap();
    }
    assert_eq!(op.stats(&http).await.grants("client_credentials"), 9);

    // A key the server does not have for the client: invalid_client, not retried.
    let other = ClientCredentials::builder(&op.token_endpoint, &op.key_client.0)
        .auth_method(ClientAuth::private_key_jwt(
            PrivateKeyJwt::from_pem(
                SigningAlgorithm::Es256,
                include_bytes!("../../crates/tokenward/tests/keys/ec-p256.pem"),
            )
            .unwrap()
            .key_id("ES256"),
        ))
        .param("resource", &op.resource)
        .build()
        .unwrap();
    let error = other.fetch().await.unwrap_err();
    assert_eq!(error.code(), "invalid_client", "{error}");
}
