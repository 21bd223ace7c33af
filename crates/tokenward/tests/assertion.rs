//! Client assertions (RFC 7523 §2.2): `private_key_jwt` signed per request, and assertions
//! read from a file; what the token endpoint receives, checked with the public keys.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use tokenward::assertion::{self, JWT_BEARER, PrivateKeyJwt, SigningAlgorithm};
use tokenward::{AuthorizationServer, ClientAuth, ClientCredentials, Error, TokenSource};
use tokenward_testkit::{FakeServer, Fault};

const RSA: &[u8] = include_bytes!("keys/rsa.pem");
const RSA_PUB: &[u8] = include_bytes!("keys/rsa.pub.pem");
const EC: &[u8] = include_bytes!("keys/ec-p256.pem");
const EC_PUB: &[u8] = include_bytes!("keys/ec-p256.pub.pem");
const ED: &[u8] = include_bytes!("keys/ed25519.pem");
const ED_PUB: &[u8] = include_bytes!("keys/ed25519.pub.pem");

#[derive(Debug, serde::Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: String,
    jti: String,
    iat: u64,
    exp: u64,
}

fn grant(fake: &FakeServer, auth: ClientAuth) -> ClientCredentials {
    ClientCredentials::builder(fake.token_url(), "svc")
        .auth_method(auth)
        .http_client(fake.http_client())
        .build()
        .unwrap()
}

/// The assertion the last token request carried, verified with `public` for `audience`.
fn received(fake: &FakeServer, algorithm: Algorithm, public: &[u8], audience: &str) -> Claims {
    let request = fake.last_token_request().unwrap();
    assert_eq!(request.param("client_assertion_type"), Some(JWT_BEARER));
    assert_eq!(request.param("client_id"), Some("svc"));
    assert_eq!(request.param("client_secret"), None);
    let jwt = request.param("client_assertion").unwrap();
    let key = match algorithm {
        Algorithm::RS256 => DecodingKey::from_rsa_pem(public),
        Algorithm::ES256 => DecodingKey::from_ec_pem(public),
        _ => DecodingKey::from_ed_pem(public),
    }
    .unwrap();
    let mut validation = Validation::new(algorithm);
    validation.set_audience(&[audience]);
    validation.set_issuer(&["svc"]);
    let data = jsonwebtoken::decode::<Claims>(jwt, &key, &validation)
        .unwrap_or_else(|e| panic!("{algorithm:?}: {e}"));
    assert_eq!(data.header.kid.as_deref(), Some("k1"));
    data.claims
}

#[tokio::test]
async fn each_request_carries_a_fresh_signed_assertion() {
    let fake = FakeServer::builder().client("svc", "unused").build();
    for (algorithm, alg, private, public) in [
        (SigningAlgorithm::Rs256, Algorithm::RS256, RSA, RSA_PUB),
        (SigningAlgorithm::Es256, Algorithm::ES256, EC, EC_PUB),
        (SigningAlgorithm::EdDsa, Algorithm::EdDSA, ED, ED_PUB),
    ] {
        let key = PrivateKeyJwt::from_pem(algorithm, private)
            .unwrap()
            .key_id("k1");
        let grant = grant(&fake, ClientAuth::private_key_jwt(key));
        // The testkit does not take assertions: it refuses the client, after recording.
        let _ = grant.fetch().await;
        let first = received(&fake, alg, public, &fake.token_url());
        let _ = grant.fetch().await;
        let second = received(&fake, alg, public, &fake.token_url());
        assert_eq!((first.iss.as_str(), first.sub.as_str()), ("svc", "svc"));
        assert_eq!(first.aud, fake.token_url());
        assert_eq!(first.exp - first.iat, 60, "a short lifetime");
        assert_ne!(first.jti, second.jti, "a unique jti per request");
        assert!(first.jti.len() >= 43, "{}", first.jti);
    }
}

#[tokio::test]
async fn the_audience_is_the_issuer_when_discovered_or_as_set() {
    let fake = FakeServer::builder().client("svc", "unused").build();
    let server = AuthorizationServer::builder(fake.issuer())
        .http_client(fake.http_client())
        .discover()
        .await
        .unwrap();
    let key = || {
        ClientAuth::private_key_jwt(
            PrivateKeyJwt::from_pem(SigningAlgorithm::Es256, EC)
                .unwrap()
                .key_id("k1")
                .lifetime(Duration::from_secs(30)),
        )
    };
    let grant = ClientCredentials::from_issuer(&server, "svc")
        .auth_method(key())
        .build()
        .unwrap();
    let _ = grant.fetch().await;
    let claims = received(&fake, Algorithm::ES256, EC_PUB, &fake.issuer());
    assert_eq!(claims.exp - claims.iat, 30);

    let grant = ClientCredentials::builder(fake.token_url(), "svc")
        .auth_method(key())
        .assertion_audience("https://audience.example")
        .http_client(fake.http_client())
        .build()
        .unwrap();
    let _ = grant.fetch().await;
    received(&fake, Algorithm::ES256, EC_PUB, "https://audience.example");
}

#[tokio::test]
async fn an_assertion_file_is_read_for_every_request() {
    let fake = FakeServer::builder().client("svc", "unused").build();
    let dir = std::env::temp_dir().join(format!("tokenward-assertion-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("token");
    std::fs::write(&path, "first.projected.token\n").unwrap();
    let grant = grant(&fake, ClientAuth::assertion(assertion::from_file(&path)));
    let _ = grant.fetch().await;
    let sent = |fake: &FakeServer| {
        fake.last_token_request()
            .unwrap()
            .param("client_assertion")
            .map(str::to_owned)
    };
    assert_eq!(sent(&fake).as_deref(), Some("first.projected.token"));
    std::fs::write(&path, "renewed.projected.token").unwrap();
    let _ = grant.fetch().await;
    assert_eq!(sent(&fake).as_deref(), Some("renewed.projected.token"));

    std::fs::write(&path, "  \n").unwrap();
    let calls = fake.token_calls();
    let error = grant.fetch().await.unwrap_err();
    assert!(matches!(error, Error::Config(_)), "{error:?}");
    assert!(error.to_string().contains("is empty"), "{error}");
    assert_eq!(
        fake.token_calls(),
        calls,
        "nothing sent without an assertion"
    );
    std::fs::remove_file(&path).unwrap();
    let error = grant.fetch().await.unwrap_err();
    assert!(
        error.to_string().contains(&path.display().to_string()),
        "{error}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn an_echoed_assertion_and_the_key_are_never_shown() {
    let fake = FakeServer::builder().client("svc", "unused").build();
    fake.push_fault(Fault::EchoParam {
        status: 401,
        error: "invalid_client".into(),
        param: "client_assertion".into(),
    });
    let key = PrivateKeyJwt::from_pem(SigningAlgorithm::Rs256, RSA).unwrap();
    let debug_key = format!("{key:?}");
    let auth = ClientAuth::private_key_jwt(key);
    let debug_auth = format!("{auth:?}");
    let grant = grant(&fake, auth);
    let error = grant.fetch().await.unwrap_err();
    let jwt = fake
        .last_token_request()
        .unwrap()
        .param("client_assertion")
        .unwrap()
        .to_owned();
    let shown = format!(
        "{error} {error:?} {} {debug_key} {debug_auth} {grant:?}",
        tokenward::error::chain(&error)
    );
    assert!(!shown.contains(&jwt), "{shown}");
    // Neither a piece of the signature nor of the PEM.
    let signature = jwt.rsplit('.').next().unwrap();
    assert!(!shown.contains(&signature[..16]), "{shown}");
    let pem = std::str::from_utf8(RSA).unwrap();
    let line = pem.lines().nth(1).unwrap();
    assert!(!shown.contains(line), "{shown}");
    assert!(shown.contains("[REDACTED]"), "{shown}");
}

const RSA_JWK: &str = include_str!("keys/rsa.jwk.json");
const EC_JWK: &str = include_str!("keys/ec-p256.jwk.json");
const ED_JWK: &str = include_str!("keys/ed25519.jwk.json");

#[tokio::test]
async fn a_private_jwk_signs_with_its_own_algorithm_and_kid() {
    let fake = FakeServer::builder().client("svc", "unused").build();
    for (jwk, algorithm, alg, public, kid) in [
        (
            RSA_JWK,
            SigningAlgorithm::Rs256,
            Algorithm::RS256,
            RSA_PUB,
            "rsa-2026",
        ),
        (
            EC_JWK,
            SigningAlgorithm::Es256,
            Algorithm::ES256,
            EC_PUB,
            "ec-p256-2026",
        ),
        (
            ED_JWK,
            SigningAlgorithm::EdDsa,
            Algorithm::EdDSA,
            ED_PUB,
            "ed25519-2026",
        ),
    ] {
        let key = PrivateKeyJwt::from_jwk(jwk).unwrap();
        assert_eq!(key.algorithm(), algorithm);
        let _ = grant(&fake, ClientAuth::private_key_jwt(key)).fetch().await;
        let request = fake.last_token_request().unwrap();
        let header =
            jsonwebtoken::decode_header(request.param("client_assertion").unwrap()).unwrap();
        assert_eq!(header.kid.as_deref(), Some(kid), "the JWK's own kid");
        assert_eq!(header.alg, alg);
        // The signature checks with the public key from the PEM file of the same key.
        let key = PrivateKeyJwt::from_jwk(jwk).unwrap().key_id("k1");
        let _ = grant(&fake, ClientAuth::private_key_jwt(key)).fetch().await;
        received(&fake, alg, public, &fake.token_url());
    }
}

#[test]
fn a_jwk_that_is_not_a_usable_private_key_is_refused_without_quoting_it() {
    let with = |base: &str, change: &dyn Fn(&mut serde_json::Map<String, serde_json::Value>)| {
        let mut jwk: serde_json::Value = serde_json::from_str(base).unwrap();
        change(jwk.as_object_mut().unwrap());
        jwk.to_string()
    };
    let cases = [
        (
            with(EC_JWK, &|j| {
                j.remove("d");
            }),
            "is a public key",
        ),
        (
            with(EC_JWK, &|j| {
                j.insert("alg".into(), "RS256".into());
            }),
            "names another alg than ES256",
        ),
        (
            with(EC_JWK, &|j| {
                j.insert("crv".into(), "P-384".into());
            }),
            "is not an RSA, P-256 or Ed25519 key",
        ),
        (
            with(RSA_JWK, &|j| {
                j.remove("qi");
            }),
            "has no `qi`",
        ),
        (
            with(ED_JWK, &|j| {
                j.insert("d".into(), "not base64!".into());
            }),
            "has a `d` that is not base64url",
        ),
        // A private key that does not belong to its public half.
        (
            with(EC_JWK, &|j| {
                let other: serde_json::Value = serde_json::from_str(ED_JWK).unwrap();
                j.insert("d".into(), other["d"].clone());
            }),
            "cannot sign",
        ),
        // The same for Ed25519, whose `x` is checked against `d`.
        (
            with(ED_JWK, &|j| {
                let mut x = j["x"].as_str().unwrap().to_owned().into_bytes();
                x[0] = if x[0] == b'A' { b'B' } else { b'A' };
                j.insert("x".into(), String::from_utf8(x).unwrap().into());
            }),
            "cannot sign",
        ),
        (
            with(ED_JWK, &|j| {
                j.remove("x");
            }),
            "has no `x`",
        ),
        // A key for encryption, or for verifying only.
        (
            with(EC_JWK, &|j| {
                j.insert("use".into(), "enc".into());
            }),
            "is not for signatures",
        ),
        (
            with(RSA_JWK, &|j| {
                j.insert("key_ops".into(), serde_json::json!(["verify"]));
            }),
            "is not for signing",
        ),
        ("{\"kty\": 5}".to_owned(), "is not a JSON Web Key object"),
        (
            "-----BEGIN PRIVATE KEY-----".to_owned(),
            "is not a JSON Web Key object",
        ),
    ];
    let secrets: Vec<String> = [RSA_JWK, EC_JWK, ED_JWK]
        .iter()
        .map(|jwk| serde_json::from_str::<serde_json::Value>(jwk).unwrap()["d"].to_string())
        .collect();
    for (jwk, expected) in &cases {
        let error = PrivateKeyJwt::from_jwk(jwk).unwrap_err();
        assert!(matches!(error, Error::Config(_)), "{error:?}");
        let message = format!("{error} {error:?}");
        assert!(
            message.contains(expected),
            "{message} should say {expected:?}"
        );
        for secret in &secrets {
            assert!(!message.contains(secret.trim_matches('"')), "{message}");
        }
    }
}

#[test]
fn a_key_that_does_not_fit_its_algorithm_is_refused_without_quoting_it() {
    for (algorithm, pem) in [
        (SigningAlgorithm::Rs256, EC),
        (SigningAlgorithm::Es256, ED),
        (SigningAlgorithm::EdDsa, RSA),
        (SigningAlgorithm::Es256, RSA_PUB),
        (SigningAlgorithm::Es256, b"not a pem".as_slice()),
    ] {
        let error = PrivateKeyJwt::from_pem(algorithm, pem).unwrap_err();
        assert!(matches!(error, Error::Config(_)), "{error:?}");
        let message = error.to_string();
        let text = String::from_utf8_lossy(pem);
        let line = text.lines().nth(1).unwrap_or("not a pem");
        assert!(!message.contains(line), "{message}");
    }
}
