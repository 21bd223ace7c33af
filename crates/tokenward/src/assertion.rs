//! Client authentication with assertions (RFC 7521, RFC 7523 §2.2): `private_key_jwt`, and
//! assertions that come from elsewhere (workload identity federation).
//!
//! A client authenticated by assertion sends no secret: each request to the token,
//! introspection or revocation endpoint carries a fresh `client_assertion` of type
//! `urn:ietf:params:oauth:client-assertion-type:jwt-bearer`, made by an [`AssertionSource`]:
//!
//! * [`PrivateKeyJwt`] (feature `private-key-jwt`) signs a JWT with the client's private key
//!   (RS256, ES256 or EdDSA; the server holds the public key, registered or from the
//!   client's JWKS). Each one has `iss` and `sub` the client id, `aud` the authorization
//!   server, a unique `jti`, and expires within a minute.
//! * [`from_file`] reads an assertion someone else issues and renews: a Kubernetes projected
//!   service account token, a CI system's OIDC token. The file is read for every request,
//!   so a renewed token is used as soon as it is written.
//! * [`from_fn`] asks your own code.
//!
//! The audience (`aud`) is the issuer for a grant built
//! [from the issuer](crate::discovery), as the current revision of RFC 7523 asks; otherwise
//! the endpoint's URL, which every server accepts. Set it with
//! [`assertion_audience`](crate::grant::GrantBuilder::assertion_audience).
//!
//! # Example
//!
//! ```
//! use tokenward::assertion;
//! use tokenward::{ClientAuth, ClientCredentials};
//!
//! // The token Kubernetes projects into the pod, exchanged for one of the server's.
//! let grant = ClientCredentials::builder("https://auth.example.com/oauth/token", "my-client")
//!     .auth_method(ClientAuth::assertion(assertion::from_file(
//!         "/var/run/secrets/tokens/auth-token",
//!     )))
//!     .build()
//!     .unwrap();
//! # let _ = grant;
//! ```

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use secrecy::SecretString;

use crate::error::Error;

/// The assertion type of a JWT (RFC 7523 §2.2), sent as `client_assertion_type`.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The future an [`AssertionSource`] returns.
pub type AssertionFuture<'a> =
    Pin<Box<dyn Future<Output = Result<SecretString, Error>> + Send + 'a>>;

/// Makes the client assertion for one request (RFC 7521 §4.2).
pub trait AssertionSource: fmt::Debug + Send + Sync + 'static {
    /// An assertion for a request by `client_id` to an endpoint of the authorization server
    /// `audience`. Called once per request: never reuse a signed assertion, servers refuse
    /// a `jti` seen before.
    fn assertion<'a>(&'a self, client_id: &'a str, audience: &'a str) -> AssertionFuture<'a>;
}

/// An assertion read from a file for every request. See [`from_file`].
#[derive(Debug, Clone)]
pub struct AssertionFile {
    path: PathBuf,
}

/// An assertion that something else writes to `path` and renews (a Kubernetes projected
/// service account token, a CI job's OIDC token), read for every request. Surrounding
/// whitespace is trimmed; an unreadable file, an empty one, one larger than 64 KiB or not
/// UTF-8 is [`Error::Config`], naming the file.
pub fn from_file(path: impl Into<PathBuf>) -> AssertionFile {
    AssertionFile { path: path.into() }
}

impl AssertionSource for AssertionFile {
    fn assertion<'a>(&'a self, _client_id: &'a str, _audience: &'a str) -> AssertionFuture<'a> {
        Box::pin(async move {
            let path = self.path.clone();
            tokio::task::spawn_blocking(move || {
                crate::secret::read_secret_file(&path, "client assertion")
            })
            .await
            .map_err(|_| {
                Error::Config(
                    format!(
                        "reading the client assertion file {} did not finish",
                        self.path.display()
                    )
                    .into(),
                )
            })?
        })
    }
}

/// An [`AssertionSource`] from an async function. See [`from_fn`].
pub struct FnAssertion<F> {
    f: F,
}

impl<F> fmt::Debug for FnAssertion<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnAssertion").finish_non_exhaustive()
    }
}

/// An assertion from your own async function, called with the client id and the audience
/// for every request.
///
/// ```
/// use tokenward::{ClientAuth, SecretString, assertion};
///
/// let auth = ClientAuth::assertion(assertion::from_fn(|_client_id, _audience| async {
///     Ok(SecretString::from("eyJ...from-the-workload-identity-agent"))
/// }));
/// # let _ = auth;
/// ```
pub fn from_fn<F, Fut>(f: F) -> FnAssertion<F>
where
    F: Fn(String, String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<SecretString, Error>> + Send + 'static,
{
    FnAssertion { f }
}

impl<F, Fut> AssertionSource for FnAssertion<F>
where
    F: Fn(String, String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<SecretString, Error>> + Send + 'static,
{
    fn assertion<'a>(&'a self, client_id: &'a str, audience: &'a str) -> AssertionFuture<'a> {
        Box::pin((self.f)(client_id.to_owned(), audience.to_owned()))
    }
}

#[cfg(feature = "private-key-jwt")]
pub use self::jwt::{PrivateKeyJwt, SigningAlgorithm};

#[cfg(feature = "private-key-jwt")]
mod jwt {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use base64::Engine as _;
    use jsonwebtoken::{EncodingKey, Header};

    use super::*;

    /// How long an assertion is valid by default.
    const DEFAULT_LIFETIME: Duration = Duration::from_secs(60);

    /// The algorithm a [`PrivateKeyJwt`] signs with.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    #[non_exhaustive]
    pub enum SigningAlgorithm {
        /// RSASSA-PKCS1-v1_5 with SHA-256: an RSA key.
        Rs256,
        /// ECDSA on P-256 with SHA-256: an EC key on P-256.
        Es256,
        /// Ed25519.
        EdDsa,
    }

    impl SigningAlgorithm {
        /// The JOSE name (`RS256`, `ES256`, `EdDSA`).
        pub(crate) fn name(self) -> &'static str {
            match self {
                SigningAlgorithm::Rs256 => "RS256",
                SigningAlgorithm::Es256 => "ES256",
                SigningAlgorithm::EdDsa => "EdDSA",
            }
        }

        fn jwt(self) -> jsonwebtoken::Algorithm {
            match self {
                SigningAlgorithm::Rs256 => jsonwebtoken::Algorithm::RS256,
                SigningAlgorithm::Es256 => jsonwebtoken::Algorithm::ES256,
                SigningAlgorithm::EdDsa => jsonwebtoken::Algorithm::EdDSA,
            }
        }
    }

    /// `private_key_jwt` (RFC 7523 §2.2, OpenID Connect Core §9): a JWT signed with the
    /// client's private key for every request. See the [module docs](crate::assertion).
    ///
    /// Its `Debug` output shows the algorithm and key id, never the key.
    ///
    /// ```
    /// use tokenward::assertion::{PrivateKeyJwt, SigningAlgorithm};
    /// use tokenward::{ClientAuth, ClientCredentials};
    ///
    /// # let pem = include_bytes!("../tests/keys/ec-p256.pem");
    /// // pem: the bytes of a PKCS#8 PEM file ("-----BEGIN PRIVATE KEY-----").
    /// let key = PrivateKeyJwt::from_pem(SigningAlgorithm::Es256, pem)?.key_id("2026-12");
    /// let grant = ClientCredentials::builder("https://auth.example.com/oauth/token", "my-client")
    ///     .auth_method(ClientAuth::private_key_jwt(key))
    ///     .build()?;
    /// # let _ = grant;
    /// # Ok::<(), tokenward::Error>(())
    /// ```
    #[derive(Clone)]
    pub struct PrivateKeyJwt {
        algorithm: SigningAlgorithm,
        key: EncodingKey,
        key_id: Option<String>,
        lifetime: Duration,
    }

    impl fmt::Debug for PrivateKeyJwt {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("PrivateKeyJwt")
                .field("algorithm", &self.algorithm)
                .field("key_id", &self.key_id)
                .field("lifetime", &self.lifetime)
                .finish_non_exhaustive()
        }
    }

    impl PrivateKeyJwt {
        /// A key from PEM: PKCS#8 (`BEGIN PRIVATE KEY`) for every algorithm, or PKCS#1
        /// (`BEGIN RSA PRIVATE KEY`) for RS256.
        ///
        /// # Errors
        ///
        /// [`Error::Config`] when the PEM is not a private key for `algorithm` (the message
        /// never quotes it).
        pub fn from_pem(algorithm: SigningAlgorithm, pem: &[u8]) -> Result<Self, Error> {
            let key = match algorithm {
                SigningAlgorithm::Rs256 => EncodingKey::from_rsa_pem(pem),
                SigningAlgorithm::Es256 => EncodingKey::from_ec_pem(pem),
                SigningAlgorithm::EdDsa => EncodingKey::from_ed_pem(pem),
            }
            .map_err(|_| {
                Error::Config(
                    format!("the private key is not a PEM {algorithm:?} private key (not shown)")
                        .into(),
                )
            })?;
            Self::checked(algorithm, key, None)
        }

        /// A key from a private JWK (RFC 7517): RSA (`RS256`), EC on P-256 (`ES256`) or OKP
        /// Ed25519 (`EdDSA`). The algorithm follows from `kty` and `crv` (an `alg` must agree
        /// with it), and the JWK's `kid` becomes the [key id](Self::key_id).
        ///
        /// ```
        /// use tokenward::assertion::PrivateKeyJwt;
        ///
        /// # let jwk = include_str!("../tests/keys/ec-p256.jwk.json");
        /// // jwk: the text of a private JWK, such as `{"kty":"EC","crv":"P-256","d":...}`.
        /// let key = PrivateKeyJwt::from_jwk(jwk)?;
        /// # let _ = key;
        /// # Ok::<(), tokenward::Error>(())
        /// ```
        ///
        /// # Errors
        ///
        /// [`Error::Config`] when the text is not a private JWK of one of these kinds (the
        /// message never quotes it).
        pub fn from_jwk(jwk: &str) -> Result<Self, Error> {
            let parsed = jwk::parse(jwk)?;
            let key = match parsed.algorithm {
                SigningAlgorithm::Rs256 => EncodingKey::from_rsa_der(&parsed.der),
                SigningAlgorithm::Es256 => EncodingKey::from_ec_der(&parsed.der),
                SigningAlgorithm::EdDsa => EncodingKey::from_ed_der(&parsed.der),
            };
            Self::checked(parsed.algorithm, key, parsed.key_id)
        }

        /// The algorithm this key signs with.
        pub fn algorithm(&self) -> SigningAlgorithm {
            self.algorithm
        }

        fn checked(
            algorithm: SigningAlgorithm,
            key: EncodingKey,
            key_id: Option<String>,
        ) -> Result<Self, Error> {
            let signer = PrivateKeyJwt {
                algorithm,
                key,
                key_id,
                lifetime: DEFAULT_LIFETIME,
            };
            // A key that parses but cannot sign (another curve, another type) fails here,
            // not at the first request.
            signer
                .sign("check", "check")
                .map_err(|_| {
                    Error::Config(
                        format!("the private key cannot sign {algorithm:?} (not shown)").into(),
                    )
                })
                .map(|_| signer)
        }

        /// The key id (`kid`) the server finds the public key by, in the client's JWKS.
        pub fn key_id(mut self, key_id: impl Into<String>) -> Self {
            self.key_id = Some(key_id.into());
            self
        }

        /// How long each assertion is valid (default 60 s; at least a second).
        pub fn lifetime(mut self, lifetime: Duration) -> Self {
            self.lifetime = lifetime.max(Duration::from_secs(1));
            self
        }

        fn sign(&self, client_id: &str, audience: &str) -> Result<String, Error> {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            let jti: [u8; 32] = rand::random();
            let claims = serde_json::json!({
                "iss": client_id,
                "sub": client_id,
                "aud": audience,
                "jti": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(jti),
                "iat": now,
                "exp": now.saturating_add(self.lifetime.as_secs()),
            });
            let mut header = Header::new(self.algorithm.jwt());
            header.kid = self.key_id.clone();
            jsonwebtoken::encode(&header, &claims, &self.key).map_err(|e| {
                Error::Config(format!("could not sign the client assertion: {e}").into())
            })
        }
    }

    /// Private JWKs to the DER documents the signer reads: PKCS#1 for RSA, PKCS#8 for EC and
    /// Ed25519.
    mod jwk {
        use base64::Engine as _;
        use simple_asn1::{ASN1Block, ASN1Class, BigInt, BigUint, oid, to_der};

        use super::SigningAlgorithm;
        use crate::Error;

        pub(super) struct Parsed {
            pub(super) algorithm: SigningAlgorithm,
            pub(super) der: Vec<u8>,
            pub(super) key_id: Option<String>,
        }

        #[derive(serde::Deserialize)]
        struct Jwk {
            kty: String,
            crv: Option<String>,
            alg: Option<String>,
            kid: Option<String>,
            n: Option<String>,
            e: Option<String>,
            d: Option<String>,
            p: Option<String>,
            q: Option<String>,
            dp: Option<String>,
            dq: Option<String>,
            qi: Option<String>,
            x: Option<String>,
            y: Option<String>,
            #[serde(rename = "use")]
            use_: Option<String>,
            key_ops: Option<Vec<String>>,
        }

        fn bad(why: &str) -> Error {
            Error::Config(format!("the private key JWK {why} (not shown)").into())
        }

        /// A base64url member (padding tolerated), required.
        fn member(value: &Option<String>, name: &str) -> Result<Vec<u8>, Error> {
            let value = value
                .as_deref()
                .ok_or_else(|| bad(&format!("has no `{name}`")))?;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(value.trim_end_matches('='))
                .map_err(|_| bad(&format!("has a `{name}` that is not base64url")))
        }

        /// A fixed-size member, left-padded with zeros (some encoders drop leading zeros).
        fn fixed(value: &Option<String>, name: &str, len: usize) -> Result<Vec<u8>, Error> {
            let bytes = member(value, name)?;
            if bytes.len() > len {
                return Err(bad(&format!("has a `{name}` longer than {len} bytes")));
            }
            let mut out = vec![0; len - bytes.len()];
            out.extend_from_slice(&bytes);
            Ok(out)
        }

        fn integer(value: &Option<String>, name: &str) -> Result<ASN1Block, Error> {
            let bytes = member(value, name)?;
            Ok(ASN1Block::Integer(
                0,
                BigInt::from(BigUint::from_bytes_be(&bytes)),
            ))
        }

        fn der(block: &ASN1Block) -> Result<Vec<u8>, Error> {
            to_der(block).map_err(|_| bad("could not be encoded"))
        }

        /// A PKCS#8 PrivateKeyInfo around `private_key`: version 0, or with `public_key`
        /// version 1 (RFC 5958's OneAsymmetricKey), whose public key the signer checks
        /// against the private one.
        fn pkcs8(
            algorithm: Vec<ASN1Block>,
            private_key: Vec<u8>,
            public_key: Option<Vec<u8>>,
        ) -> Result<Vec<u8>, Error> {
            let mut parts = vec![
                ASN1Block::Integer(0, BigInt::from(u8::from(public_key.is_some()))),
                ASN1Block::Sequence(0, algorithm),
                ASN1Block::OctetString(0, private_key),
            ];
            if let Some(key) = public_key {
                // publicKey [1] IMPLICIT BIT STRING: no unused bits, then the key.
                let mut bits = vec![0];
                bits.extend(key);
                parts.push(ASN1Block::Unknown(
                    ASN1Class::ContextSpecific,
                    false,
                    0,
                    BigUint::from(1u8),
                    bits,
                ));
            }
            der(&ASN1Block::Sequence(0, parts))
        }

        pub(super) fn parse(text: &str) -> Result<Parsed, Error> {
            let jwk: Jwk =
                serde_json::from_str(text).map_err(|_| bad("is not a JSON Web Key object"))?;
            if jwk.d.is_none() {
                return Err(bad("is a public key (it has no `d`)"));
            }
            if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
                return Err(bad("is not for signatures (its `use` is not \"sig\")"));
            }
            if jwk
                .key_ops
                .as_ref()
                .is_some_and(|ops| !ops.iter().any(|op| op == "sign"))
            {
                return Err(bad("is not for signing (its `key_ops` has no \"sign\")"));
            }
            let (algorithm, der) = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
                ("RSA", _) => {
                    let mut parts = vec![ASN1Block::Integer(0, BigInt::from(0))];
                    for (value, name) in [
                        (&jwk.n, "n"),
                        (&jwk.e, "e"),
                        (&jwk.d, "d"),
                        (&jwk.p, "p"),
                        (&jwk.q, "q"),
                        (&jwk.dp, "dp"),
                        (&jwk.dq, "dq"),
                        (&jwk.qi, "qi"),
                    ] {
                        parts.push(integer(value, name)?);
                    }
                    (
                        SigningAlgorithm::Rs256,
                        der(&ASN1Block::Sequence(0, parts))?,
                    )
                }
                ("EC", Some("P-256")) => {
                    let mut point = vec![4];
                    point.extend(fixed(&jwk.x, "x", 32)?);
                    point.extend(fixed(&jwk.y, "y", 32)?);
                    let ec_private_key = der(&ASN1Block::Sequence(
                        0,
                        vec![
                            ASN1Block::Integer(0, BigInt::from(1)),
                            ASN1Block::OctetString(0, fixed(&jwk.d, "d", 32)?),
                            ASN1Block::Explicit(
                                ASN1Class::ContextSpecific,
                                0,
                                BigUint::from(1u8),
                                Box::new(ASN1Block::BitString(0, point.len() * 8, point)),
                            ),
                        ],
                    ))?;
                    let algorithm = vec![
                        ASN1Block::ObjectIdentifier(0, oid!(1, 2, 840, 10045, 2, 1)),
                        ASN1Block::ObjectIdentifier(0, oid!(1, 2, 840, 10045, 3, 1, 7)),
                    ];
                    (
                        SigningAlgorithm::Es256,
                        pkcs8(algorithm, ec_private_key, None)?,
                    )
                }
                ("OKP", Some("Ed25519")) => {
                    let seed = der(&ASN1Block::OctetString(0, fixed(&jwk.d, "d", 32)?))?;
                    let algorithm = vec![ASN1Block::ObjectIdentifier(0, oid!(1, 3, 101, 112))];
                    // With its public key, which the signer checks against `d`.
                    let public = fixed(&jwk.x, "x", 32)?;
                    (
                        SigningAlgorithm::EdDsa,
                        pkcs8(algorithm, seed, Some(public))?,
                    )
                }
                _ => {
                    return Err(bad(
                        "is not an RSA, P-256 or Ed25519 key (kty RSA, EC with crv P-256, or \
                         OKP with crv Ed25519)",
                    ));
                }
            };
            let expected = algorithm.name();
            if let Some(alg) = &jwk.alg
                && alg != expected
                && !(expected == "EdDSA" && alg == "Ed25519")
            {
                return Err(bad(&format!(
                    "names another alg than {expected}, the only one its key signs"
                )));
            }
            Ok(Parsed {
                algorithm,
                der,
                key_id: jwk.kid,
            })
        }
    }

    impl AssertionSource for PrivateKeyJwt {
        fn assertion<'a>(&'a self, client_id: &'a str, audience: &'a str) -> AssertionFuture<'a> {
            let signed = self.sign(client_id, audience).map(SecretString::from);
            Box::pin(std::future::ready(signed))
        }
    }
}
