//! Starts `node tests/interop/server.mjs` (oidc-provider) as a child process and drives the
//! parts of the authorization code flow a browser would.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::Value;
use tokenward::store::MemoryStore;
use tokenward::{AuthorizationCode, ClientAuth, Token, store_refresh_token};

/// How long oidc-provider may take to start and print its JSON line.
const START_TIMEOUT: Duration = Duration::from_secs(20);

const INSTALL_HINT: &str = "install the interop test's node dependencies first: \
                            `npm ci --prefix tests/interop` (node >= 20 and npm are required)";

/// One registered client, as `server.mjs` reports it.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    pub(crate) id: String,
    pub(crate) secret: String,
}

/// The node child process: killed (and reaped) when dropped. It also exits by itself when
/// this process goes away, because its stdin (a pipe held here) closes.
#[derive(Debug)]
struct Node {
    child: Child,
    _stdin: Option<ChildStdin>,
    stderr: Arc<Mutex<String>>,
}

impl Node {
    fn fail(&mut self, what: &str) -> ! {
        let _ = self.child.kill();
        let status = self.child.wait();
        // Let the stderr reader catch up with the last words.
        std::thread::sleep(Duration::from_millis(100));
        let stderr = self.stderr.lock().unwrap().clone();
        panic!(
            "{what} (exit: {status:?}). If node or its packages are missing: {INSTALL_HINT}.\n\
             --- node stderr ---\n{stderr}"
        );
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running oidc-provider (`server.mjs`), stopped when dropped.
#[derive(Debug)]
pub(crate) struct Provider {
    node: Node,
    pub(crate) issuer: String,
    /// `http://127.0.0.1:<port>`, where the routes other than the provider's are.
    pub(crate) origin: String,
    pub(crate) authorization_endpoint: String,
    pub(crate) token_endpoint: String,
    pub(crate) introspection_endpoint: String,
    pub(crate) revocation_endpoint: String,
    /// The protected resource, which is also the resource indicator tokens are issued for.
    pub(crate) resource: String,
    /// client_credentials, `client_secret_post`.
    pub(crate) cc: Client,
    /// authorization_code + refresh_token, `client_secret_basic`.
    pub(crate) web: Client,
    pub(crate) redirect_uri: String,
    /// The resource server's own client, for introspection.
    pub(crate) rs: Client,
    /// The `private_key_jwt` client's id and its private keys (PKCS#8 PEM) by algorithm,
    /// each registered with the algorithm as its `kid`.
    pub(crate) key_client: (String, BTreeMap<String, String>),
    /// The same private keys as JWK text by algorithm, each with its `kid`.
    pub(crate) key_client_jwks: BTreeMap<String, String>,
}

impl Provider {
    /// Starts oidc-provider with access tokens living `access_token_ttl` seconds. Panics (the
    /// test fails, never skips) when node or the node dependencies are missing, or when the
    /// server does not come up in time.
    pub(crate) fn start(access_token_ttl: u64) -> Provider {
        Self::start_at(access_token_ttl, "")
    }

    /// As [`start`](Self::start), with the provider mounted under `issuer_path` (`""`: at the
    /// root), which its issuer then has.
    pub(crate) fn start_at(access_token_ttl: u64, issuer_path: &str) -> Provider {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop");
        let installed = dir.join("node_modules/oidc-provider/package.json");
        assert!(
            installed.is_file(),
            "oidc-provider is not installed ({} is missing): {INSTALL_HINT}",
            installed.display()
        );
        let mut child = Command::new("node")
            .arg("server.mjs")
            .arg("--access-token-ttl")
            .arg(access_token_ttl.to_string())
            .arg(format!("--issuer-path={issuer_path}"))
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `node` ({e}): {INSTALL_HINT}"));

        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().unwrap();
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = err_pipe.read(&mut buf) {
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let (tx, rx) = mpsc::channel();
        let out_pipe = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(out_pipe).lines();
            let _ = tx.send(lines.next());
            // Keep draining so the child never blocks on a full pipe.
            for _ in lines {}
        });
        let mut node = Node {
            _stdin: child.stdin.take(),
            child,
            stderr,
        };

        let line = match rx.recv_timeout(START_TIMEOUT) {
            Ok(Some(Ok(line))) => line,
            Ok(_) => node.fail("oidc-provider exited before printing its endpoints"),
            Err(_) => node.fail(&format!(
                "oidc-provider printed no endpoints within {START_TIMEOUT:?}"
            )),
        };
        let info: Value = match serde_json::from_str(&line) {
            Ok(info) => info,
            Err(e) => node.fail(&format!("oidc-provider printed {line:?}, not JSON: {e}")),
        };
        let text = |v: &Value| {
            v.as_str()
                .expect("a string in server.mjs's JSON")
                .to_owned()
        };
        let client = |name: &str| Client {
            id: text(&info["clients"][name]["id"]),
            secret: text(&info["clients"][name]["secret"]),
        };
        Provider {
            node,
            issuer: text(&info["issuer"]),
            origin: text(&info["origin"]),
            authorization_endpoint: text(&info["authorization_endpoint"]),
            token_endpoint: text(&info["token_endpoint"]),
            introspection_endpoint: text(&info["introspection_endpoint"]),
            revocation_endpoint: text(&info["revocation_endpoint"]),
            resource: text(&info["resource"]),
            cc: client("clientCredentials"),
            web: client("web"),
            redirect_uri: text(&info["clients"]["web"]["redirect_uri"]),
            rs: client("resourceServer"),
            key_client: (
                text(&info["clients"]["keyClient"]["id"]),
                info["clients"]["keyClient"]["keys"]
                    .as_object()
                    .expect("the key client's keys")
                    .iter()
                    .map(|(alg, pem)| (alg.clone(), text(pem)))
                    .collect(),
            ),
            key_client_jwks: info["clients"]["keyClient"]["jwks"]
                .as_object()
                .expect("the key client's JWKs")
                .iter()
                .map(|(alg, jwk)| (alg.clone(), text(jwk)))
                .collect(),
        }
    }

    /// What node wrote to stderr so far (warnings, the interactions it completed).
    pub(crate) fn stderr(&self) -> String {
        self.node.stderr.lock().unwrap().clone()
    }

    /// The protected resource requiring `scope` (403 `insufficient_scope` without it).
    pub(crate) fn resource_requiring(&self, scope: &str) -> String {
        format!("{}/{scope}", self.resource)
    }

    /// The server's counters (see server.mjs): `grant_success`, `grant_error` (by grant type
    /// and error code), `refresh_token_reuse`, `grants_revoked`, `resource` (by status).
    pub(crate) async fn stats(&self, http: &reqwest::Client) -> Stats {
        let body = http
            .get(format!("{}/stats", self.origin))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        Stats(serde_json::from_slice(&body).unwrap())
    }

    /// The authorization code flow for the web client: PKCE, `prompt=consent`, the
    /// resource indicator; scope `openid offline_access jobs.read`.
    pub(crate) fn code_flow(&self) -> AuthorizationCode {
        AuthorizationCode::builder(&self.web.id)
            .authorization_url(&self.authorization_endpoint)
            .token_url(&self.token_endpoint)
            .redirect_uri(&self.redirect_uri)
            .client_secret(&self.web.secret)
            .auth_method(ClientAuth::Basic)
            .issuer(&self.issuer) // oidc-provider sends RFC 9207's `iss`: require it
            .scope("openid offline_access jobs.read")
            .build()
            .unwrap()
    }

    /// Runs the whole authorization code flow, as the user's browser and the app would, and
    /// returns the token.
    pub(crate) async fn authorize(&self, http: &reqwest::Client) -> Token {
        let flow = self.code_flow();
        let request = flow.authorize_with(&[("prompt", "consent"), ("resource", &self.resource)]);
        let callback = self.browse(http, request.url()).await;
        flow.exchange(request, &callback).await.unwrap()
    }

    /// Authorizes and stores the refresh token in a fresh [`MemoryStore`].
    pub(crate) async fn authorized_store(&self, http: &reqwest::Client) -> (Token, MemoryStore) {
        let token = self.authorize(http).await;
        let store = MemoryStore::new();
        store_refresh_token(&token, &store).await.unwrap();
        (token, store)
    }

    /// Follows the redirects from the authorization URL through server.mjs's interaction
    /// route (which logs the user in and grants consent) back to the redirect URI, keeping
    /// cookies like a browser. Returns the callback's query string.
    pub(crate) async fn browse(&self, http: &reqwest::Client, authorize_url: &str) -> String {
        let location = self
            .browse_until(http, authorize_url, &self.redirect_uri)
            .await;
        location[self.redirect_uri.len()..]
            .trim_start_matches('?')
            .to_owned()
    }

    /// As [`browse`](Self::browse), for any client: follows the redirects until one goes to
    /// a URL starting with `redirect_prefix`, and returns that URL.
    pub(crate) async fn browse_until(
        &self,
        http: &reqwest::Client,
        authorize_url: &str,
        redirect_prefix: &str,
    ) -> String {
        let mut cookies = BTreeMap::<String, String>::new();
        let mut url = authorize_url.to_owned();
        for _ in 0..8 {
            let mut request = http.get(&url);
            if !cookies.is_empty() {
                let jar: Vec<String> = cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
                request = request.header(COOKIE, jar.join("; "));
            }
            let response = request.send().await.unwrap();
            for set in response.headers().get_all(SET_COOKIE) {
                let pair = set.to_str().unwrap().split(';').next().unwrap_or_default();
                if let Some((name, value)) = pair.split_once('=') {
                    if value.is_empty() {
                        cookies.remove(name.trim());
                    } else {
                        cookies.insert(name.trim().to_owned(), value.to_owned());
                    }
                }
            }
            let status = response.status();
            let Some(location) = response.headers().get(LOCATION) else {
                let body = response.text().await.unwrap_or_default();
                panic!("{url} answered {status} without a redirect: {body}");
            };
            let location = location.to_str().unwrap();
            let location = if location.starts_with('/') {
                format!("{}{location}", self.origin)
            } else {
                location.to_owned()
            };
            if location.starts_with(redirect_prefix) {
                return location;
            }
            url = location;
        }
        panic!("too many redirects from {authorize_url}");
    }
}

/// The counters `server.mjs` keeps from oidc-provider's events.
#[derive(Debug)]
pub(crate) struct Stats(pub Value);

impl Stats {
    /// Successful token requests of `grant_type`.
    pub(crate) fn grants(&self, grant_type: &str) -> u64 {
        self.0["grant_success"][grant_type].as_u64().unwrap_or(0)
    }

    /// Token requests that failed with `error`.
    pub(crate) fn grant_errors(&self, error: &str) -> u64 {
        self.0["grant_error"][error].as_u64().unwrap_or(0)
    }

    /// Rotated refresh tokens presented again (oidc-provider then revokes the whole grant).
    pub(crate) fn refresh_token_reuse(&self) -> u64 {
        self.0["refresh_token_reuse"].as_u64().unwrap()
    }

    /// Grants revoked (on refresh-token reuse, or by revoking a refresh token).
    pub(crate) fn grants_revoked(&self) -> u64 {
        self.0["grants_revoked"].as_u64().unwrap()
    }

    /// Answers of the protected resource with `status`.
    pub(crate) fn resource(&self, status: u16) -> u64 {
        self.0["resource"][status.to_string()].as_u64().unwrap_or(0)
    }
}

/// A reqwest client that does not follow redirects (the authorization flow reads them).
pub(crate) fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}
