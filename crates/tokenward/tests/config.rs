//! Configuration: from TOML or JSON and from environment variables to working caches against
//! the testkit over loopback; round trips; errors that name the key; secrets never in the
//! file, in `Debug` or in the serialised form; a rotated secret file picked up on
//! `invalid_client`.

use std::path::PathBuf;
use std::time::Duration;

use tokenward::Error;
use tokenward::config::{AuthMethod, ClientConfig, GrantKind, TenantsConfig};
use tokenward_testkit::{Endpoint, FakeServer, Fault};

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let dir =
            std::env::temp_dir().join(format!("tokenward-config-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    fn file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn config_error(error: Error) -> String {
    match error {
        Error::Config(why) => why.into_owned(),
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_toml_file_builds_tenants_that_get_tokens() {
    let server = FakeServer::builder()
        .client("acme", "acme-secret")
        .client("globex", "globex-secret")
        .client_scopes("globex", "jobs.read")
        .build();
    let running = server.listen().await.unwrap();
    let dir = Dir::new("tenants");
    let secret = dir.file("acme-secret", "acme-secret\n");
    let globex_secret = dir.file("globex-secret", "globex-secret");
    let text = format!(
        r#"
        [cache]
        refresh_fraction = 0.5

        [tenants.acme]
        token_url = "{token_url}"
        client_id = "acme"
        client_secret_file = "{secret}"
        auth_method = "client_secret_post"

        [tenants.globex]
        issuer = "{issuer}"
        client_id = "globex"
        client_secret_file = "{globex_secret}"
        scope = "jobs.read"
        require_scopes = "jobs.read"
        params = {{ audience = "https://api.example" }}
        cache = {{ max_attempts = 2 }}
        "#,
        token_url = running.token_url(),
        issuer = running.issuer(),
        secret = secret.display(),
        globex_secret = globex_secret.display(),
    );
    let config: TenantsConfig = toml::from_str(&text).unwrap();
    assert_eq!(
        config.tenants["acme"].auth_method,
        Some(AuthMethod::ClientSecretPost)
    );
    assert_eq!(config.tenants["globex"].grant, GrantKind::ClientCredentials);

    // Round trip: what serialises parses back to the same configuration.
    let again: TenantsConfig = toml::from_str(&toml::to_string(&config).unwrap()).unwrap();
    assert_eq!(again, config);

    let tenants = config.build().await.unwrap();
    assert_eq!(tenants.len(), 2);
    tenants.header("acme").await.unwrap();
    tenants.header("globex").await.unwrap();
    let last = server.last_token_request().unwrap();
    assert_eq!(last.param("audience"), Some("https://api.example"));
    assert_eq!(server.counters().issued_for("client_credentials"), 2);
    assert_eq!(server.counters().metadata_requests, 1);
    running.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn environment_variables_build_a_cache() {
    let server = FakeServer::builder().client("svc", "svc-secret").build();
    let vars = |extra: &[(&str, &str)]| {
        let mut vars: Vec<(String, String)> = vec![
            ("MYAPP_TOKEN_URL".into(), server.token_url()),
            ("MYAPP_CLIENT_ID".into(), "svc".into()),
            ("MYAPP_CLIENT_SECRET".into(), "svc-secret".into()),
            ("MYAPP_SCOPE".into(), "jobs.read".into()),
            ("MYAPP_PARAM_RESOURCE".into(), "https://api.example".into()),
            ("MYAPP_REFRESH_FRACTION".into(), "0.5".into()),
            ("MYAPP_LOG_LEVEL".into(), "debug".into()), // the application's own
            ("OTHER_CLIENT_ID".into(), "someone-else".into()),
        ];
        vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        vars
    };
    let config = ClientConfig::from_vars("MYAPP", vars(&[])).unwrap();
    assert_eq!(config.client_id, "svc");
    assert_eq!(config.params["resource"], "https://api.example");
    assert_eq!(config.cache.refresh_fraction, Some(0.5));
    // The secret is a value: never serialised, never in Debug.
    let serialised = serde_json::to_string(&config).unwrap();
    assert!(!serialised.contains("svc-secret"), "{serialised}");
    assert!(!format!("{config:?}").contains("svc-secret"));

    let grant_source = ClientConfig::from_vars("MYAPP", vars(&[])).unwrap();
    // In-process: the grant is built on the testkit's client through a TenantsConfig.
    let mut tenants = TenantsConfig::default();
    tenants.tenants.insert("svc".into(), grant_source);
    let tenants = tenants
        .build_on(std::sync::Arc::new(server.http_client()))
        .await
        .unwrap();
    tenants.header("svc").await.unwrap();
    let last = server.last_token_request().unwrap();
    assert_eq!(last.param("scope"), Some("jobs.read"));
    assert_eq!(last.param("resource"), Some("https://api.example"));

    // Errors name the variable.
    let error =
        ClientConfig::from_vars("MYAPP", vars(&[("MYAPP_REFRESH_FRACTION", "most")])).unwrap_err();
    assert!(config_error(error).starts_with("MYAPP_REFRESH_FRACTION:"));
    let error = ClientConfig::from_vars("MYAPP", vars(&[("MYAPP_GRANT", "password")])).unwrap_err();
    assert!(config_error(error).starts_with("MYAPP_GRANT:"));
    let error = ClientConfig::from_vars("NOPE", vars(&[])).unwrap_err();
    assert_eq!(config_error(error), "NOPE_CLIENT_ID is not set");
}

#[tokio::test(start_paused = true)]
async fn errors_name_the_key_and_a_secret_is_never_in_the_file() {
    // A secret written into the file is refused, and the message names the key only. (It is
    // accepted by the parser, whose own errors would quote the line, and never kept.)
    let config = toml::from_str::<ClientConfig>(
        r#"
        token_url = "https://a.example/token"
        client_id = "svc"
        client_secret = "do-not-put-me-here"
        "#,
    )
    .unwrap();
    assert!(!format!("{config:?}").contains("do-not-put-me-here"));
    assert!(
        !toml::to_string(&config)
            .unwrap()
            .contains("do-not-put-me-here")
    );
    let error = config_error(config.build().await.unwrap_err());
    assert!(
        error.starts_with("client_secret: a secret is never read"),
        "{error}"
    );
    assert!(!error.contains("do-not-put-me-here"), "{error}");

    let http = || -> std::sync::Arc<dyn tokenward::HttpClient> {
        std::sync::Arc::new(FakeServer::builder().build().http_client())
    };
    let cases: &[(&str, &str)] = &[
        (
            r#"[tenants.a]
            client_id = "svc""#,
            "tenants.a.token_url: give token_url or issuer",
        ),
        (
            r#"[tenants.a]
            token_url = "https://a.example/token"
            issuer = "https://a.example"
            client_id = "svc""#,
            "tenants.a.issuer: give issuer or token_url, not both",
        ),
        (
            r#"[tenants.a]
            token_url = "https://a.example/token"
            client_id = "svc"
            auth_method = "client_secret_basic""#,
            "tenants.a.auth_method: client_secret_basic needs client_secret_env or client_secret_file",
        ),
        (
            r#"[tenants.a]
            token_url = "https://a.example/token"
            client_id = "svc"
            client_secret_env = "TOKENWARD_TEST_SURELY_UNSET_VARIABLE""#,
            "tenants.a.client_secret_env: the environment variable TOKENWARD_TEST_SURELY_UNSET_VARIABLE is not set (or empty)",
        ),
        (
            r#"[tenants.a]
            token_url = "https://a.example/token"
            client_id = "svc"
            client_secret_file = "/nonexistent/tokenward/secret""#,
            "tenants.a.client_secret_file: the client secret file /nonexistent/tokenward/secret: could not be read",
        ),
        (
            r#"[tenants.a]
            grant = "refresh_token"
            token_url = "https://a.example/token"
            client_id = "svc"
            auth_method = "none""#,
            "tenants.a.store: a refresh_token grant needs refresh_token_env or a store",
        ),
        (
            r#"[tenants.a]
            token_url = "https://a.example/token"
            client_id = "svc"
            private_key_file = "/nonexistent/key.pem""#,
            "tenants.a.private_key_file: the private key file /nonexistent/key.pem: could not be read",
        ),
        (
            r#"[tenants.a]
            token_url = "https://a.example/token"
            client_id = "svc"
            auth_method = "none"
            cache = { refresh_fraction = 1.5 }"#,
            "tenants.a.cache.refresh_fraction: must be above 0 and at most 1",
        ),
        (
            r#"[tenants.a]
            token_url = "https://a.example/token"
            client_id = "svc""#,
            "tenants.a.client_secret_env: no client credentials",
        ),
        (
            r#"[tenants.a]
            token_url = "https://svc:hunter2@a.example/token"
            client_id = "svc"
            auth_method = "none""#,
            "tenants.a.token_url: an endpoint URL holds a user name or password (not shown)",
        ),
        (
            r#"[tenants.a]
            token_url = "https://a.example/token"
            client_id = "svc"
            auth_method = "none"
            params = { grant_type = "password" }"#,
            "tenants.a.params.grant_type: the grant sends this parameter itself",
        ),
    ];
    for (text, expected) in cases {
        let config: TenantsConfig = toml::from_str(text).unwrap();
        let error = config.build_on(http()).await.unwrap_err();
        let message = config_error(error);
        assert!(!message.contains("hunter2"), "{message}");
        assert!(
            message.starts_with(expected),
            "{message:?} should start with {expected:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_rotated_secret_file_is_read_again_on_invalid_client() {
    let server = FakeServer::builder().client("svc", "old-secret").build();
    let dir = Dir::new("rotation");
    let file = dir.file("secret", "old-secret");
    let text = format!(
        r#"{{"tenants": {{"svc": {{"token_url": "{}", "client_id": "svc", "client_secret_file": "{}"}}}}}}"#,
        server.token_url(),
        file.display()
    );
    let config: TenantsConfig = serde_json::from_str(&text).unwrap();
    let tenants = config
        .build_on(std::sync::Arc::new(server.http_client()))
        .await
        .unwrap();
    tenants.header("svc").await.unwrap();

    // The secret is rotated at the server and in the file; the old one stops working.
    server.add_client_secret("svc", "new-secret");
    server.remove_client_secret("svc", "old-secret");
    std::fs::write(&file, "new-secret\n").unwrap();
    let cache = tenants.get("svc").unwrap();
    cache.force_refresh().await.unwrap();
    assert_eq!(server.counters().issued_for("client_credentials"), 2);

    // A file that still holds the refused secret: the error stands.
    server.remove_client_secret("svc", "new-secret");
    server.add_client_secret("svc", "third-secret");
    let error = cache.force_refresh().await.unwrap_err();
    assert_eq!(error.code(), "invalid_client", "{error}");
}

#[tokio::test(start_paused = true)]
async fn a_secret_file_rewritten_during_the_hold_is_tried_at_once() {
    let server = FakeServer::builder()
        .client("svc", "old-secret")
        .token_lifetime(Duration::from_secs(60))
        .build();
    let dir = Dir::new("hold");
    let file = dir.file("secret", "old-secret");
    let tenants = tenants_with_secret_file(&server, &file).await;
    tenants.header("svc").await.unwrap();

    // The secret is rotated at the server only; the token expires; the file's secret fails.
    server.add_client_secret("svc", "new-secret");
    server.remove_client_secret("svc", "old-secret");
    tokio::time::advance(Duration::from_secs(61)).await;
    let error = tenants.header("svc").await.unwrap_err();
    assert_eq!(error.code(), "invalid_client", "{error}");
    // Past the cool-down, still held: the same file is not tried again.
    tokio::time::advance(Duration::from_secs(2)).await;
    let before = server.counters().token_requests;
    let error = tenants.header("svc").await.unwrap_err();
    assert_eq!(error.code(), "invalid_client", "{error}");
    assert_eq!(server.counters().token_requests, before);

    // The operator replaces the file as deployment tools do (a new file renamed over it),
    // with a secret of the same length and the old modification time: the next look at the
    // file (at most a second later) sees it, with no wait for the hold (five minutes).
    let modified = std::fs::metadata(&file).unwrap().modified().unwrap();
    let next = dir.file("secret.next", "new-secret");
    std::fs::File::options()
        .write(true)
        .open(&next)
        .unwrap()
        .set_modified(modified)
        .unwrap();
    std::fs::rename(&next, &file).unwrap();
    assert_eq!(
        std::fs::metadata(&file).unwrap().len(),
        "old-secret".len() as u64
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    tenants.header("svc").await.unwrap();
    assert_eq!(server.counters().issued_for("client_credentials"), 2);
}

async fn tenants_with_secret_file(
    server: &FakeServer,
    file: &std::path::Path,
) -> tokenward::TenantCache<String> {
    let text = format!(
        r#"{{"tenants": {{"svc": {{"token_url": "{}", "client_id": "svc", "client_secret_file": "{}"}}}}}}"#,
        server.token_url(),
        file.display()
    );
    let config: TenantsConfig = serde_json::from_str(&text).unwrap();
    config
        .build_on(std::sync::Arc::new(server.http_client()))
        .await
        .unwrap()
}

/// Tenant `svc` at the server's issuer, its secret `svc-secret` in a file of `dir`.
fn svc_at_issuer(server: &FakeServer, dir: &Dir) -> TenantsConfig {
    let secret = dir.file("secret", "svc-secret");
    let text = format!(
        r#"{{"tenants": {{"svc": {{"issuer": "{}", "client_id": "svc", "client_secret_file": "{}"}}}}}}"#,
        server.issuer(),
        secret.display()
    );
    serde_json::from_str(&text).unwrap()
}

#[tokio::test]
async fn a_secret_file_must_be_small_utf8_and_not_empty() {
    let dir = Dir::new("limits");
    let big = dir.file("big", &"x".repeat(64 * 1024 + 1));
    let empty = dir.file("empty", " \n");
    let binary = dir.0.join("binary");
    std::fs::write(&binary, [0xff, 0xfe, 0x00]).unwrap();
    for (path, why) in [
        (big, "is larger than 64 KiB"),
        (empty, "is empty"),
        (binary, "is not UTF-8"),
    ] {
        let text = format!(
            r#"
            token_url = "https://a.example/token"
            client_id = "svc"
            client_secret_file = "{}"
            "#,
            path.display()
        );
        let config: ClientConfig = toml::from_str(&text).unwrap();
        let error = config_error(config.build().await.unwrap_err());
        assert_eq!(
            error,
            format!(
                "client_secret_file: the client secret file {}: {why}",
                path.display()
            )
        );
    }
}

#[tokio::test(start_paused = true)]
async fn an_issuer_unavailable_at_build_is_discovered_on_the_first_fetch() {
    let server = FakeServer::builder().client("svc", "svc-secret").build();
    server.push_fault_at(Endpoint::Metadata, Fault::Status(503));
    let dir = Dir::new("deferred");
    let config = svc_at_issuer(&server, &dir);
    // The build does not fail for an outage; the first fetch discovers, then gets a token.
    let tenants = config
        .build_on(std::sync::Arc::new(server.http_client()))
        .await
        .unwrap();
    assert_eq!(server.counters().token_requests, 0);
    tenants.header("svc").await.unwrap();
    assert_eq!(server.counters().issued_for("client_credentials"), 1);
    assert!(server.counters().metadata_requests >= 2);
}

#[tokio::test(start_paused = true)]
async fn tenants_of_an_issuer_down_past_the_first_fetch_share_one_discovery() {
    let server = FakeServer::builder()
        .client("a", "a-secret")
        .client("b", "b-secret")
        .build();
    for _ in 0..50 {
        server.push_fault_at(Endpoint::Metadata, Fault::Status(503));
    }
    let dir = Dir::new("deferred-shared");
    let (a, b) = (dir.file("a", "a-secret"), dir.file("b", "b-secret"));
    let text = format!(
        r#"{{"tenants": {{
            "a": {{"issuer": "{issuer}", "client_id": "a", "client_secret_file": "{a}"}},
            "b": {{"issuer": "{issuer}", "client_id": "b", "client_secret_file": "{b}"}}
        }}}}"#,
        issuer = server.issuer(),
        a = a.display(),
        b = b.display()
    );
    let config: TenantsConfig = serde_json::from_str(&text).unwrap();
    let tenants = config
        .build_on(std::sync::Arc::new(server.http_client()))
        .await
        .unwrap();
    // Still down at the first request: an error that names no key (it is not the
    // configuration's fault), and no token request.
    let error = tenants.header("a").await.unwrap_err();
    assert!(matches!(error, Error::Discovery(_)), "{error:?}");
    assert_eq!(server.counters().token_requests, 0);

    // Back: one discovery serves both tenants.
    server.clear_faults();
    server.reset_counters();
    tokio::time::advance(Duration::from_secs(60)).await;
    tenants.header("a").await.unwrap();
    tenants.header("b").await.unwrap();
    assert_eq!(server.counters().issued_for("client_credentials"), 2);
    assert_eq!(server.counters().metadata_requests, 1);
}

#[tokio::test(start_paused = true)]
async fn a_client_whose_issuer_is_down_at_build_starts_and_gets_tokens_later() {
    let server = FakeServer::builder().client("svc", "svc-secret").build();
    for _ in 0..4 {
        server.push_fault_at(Endpoint::Metadata, Fault::Status(503));
    }
    let mut config = ClientConfig::default();
    config.issuer = Some(server.issuer());
    config.client_id = "svc".into();
    let cache = config
        .client_secret("svc-secret")
        .build_on(std::sync::Arc::new(server.http_client()))
        .await
        .unwrap();
    server.clear_faults();
    cache.header().await.unwrap();
    assert_eq!(server.counters().issued_for("client_credentials"), 1);
}

#[tokio::test(start_paused = true)]
async fn an_issuer_back_with_another_issuers_metadata_fails_its_fetches_naming_the_tenant() {
    let server = FakeServer::builder().client("svc", "svc-secret").build();
    for _ in 0..4 {
        server.push_fault_at(Endpoint::Metadata, Fault::Status(503));
    }
    let dir = Dir::new("deferred-other");
    let config = svc_at_issuer(&server, &dir);
    let tenants = config
        .build_on(std::sync::Arc::new(server.http_client()))
        .await
        .unwrap();
    server.clear_faults();
    server.set_metadata_issuer(Some("https://other.example"));
    let error = config_error(tenants.header("svc").await.unwrap_err());
    assert!(error.starts_with("tenants.svc.issuer: "), "{error}");
    assert_eq!(server.counters().token_requests, 0);
}

#[test]
fn a_secret_file_may_start_with_a_byte_order_mark() {
    use tokenward::ExposeSecret as _;
    let dir = Dir::new("bom");
    let file = dir.file("secret", "\u{feff}s3cr3t\r\n");
    let secret = tokenward::secret::read_file(&file).unwrap();
    assert_eq!(secret.expose_secret(), "s3cr3t");
}

#[tokio::test(start_paused = true)]
async fn metadata_naming_another_issuer_fails_the_build_naming_the_tenant() {
    let server = FakeServer::builder().client("svc", "svc-secret").build();
    server.set_metadata_issuer(Some("https://other.example"));
    let dir = Dir::new("other-issuer");
    let config = svc_at_issuer(&server, &dir);
    let error = config
        .build_on(std::sync::Arc::new(server.http_client()))
        .await
        .unwrap_err();
    let error = config_error(error);
    assert!(error.starts_with("tenants.svc.issuer: "), "{error}");
}

#[test]
fn a_serialised_config_is_the_same_config() {
    // Azure AD B2C names its policy in the query: written out as given.
    let text = r#"
        token_url = "https://login.example/tenant/oauth2/v2.0/token?p=B2C_1_signin"
        client_id = "svc"
        client_secret_env = "SVC_SECRET"
        auth_method = "post"
        grant = "refresh_token"
        store = "/var/lib/svc/grant.json"
        share_access_token = true
        decay = { warn_days = 30, page_days = 45 }
        "#;
    let config: ClientConfig = toml::from_str(text).unwrap();
    assert_eq!(config.auth_method, Some(AuthMethod::ClientSecretPost));
    let written = toml::to_string(&config).unwrap();
    assert!(written.contains("?p=B2C_1_signin"), "{written}");
    let again: ClientConfig = toml::from_str(&written).unwrap();
    assert_eq!(again, config);
    // Debug still hides query values.
    assert!(!format!("{config:?}").contains("B2C_1_signin"));
    config.validate().unwrap();
}

#[test]
fn validate_checks_the_keys_and_reads_nothing() {
    // A variable that is not set and a file that does not exist: not looked at.
    let config: ClientConfig = toml::from_str(
        r#"
        token_url = "https://a.example/token"
        client_id = "svc"
        client_secret_env = "TOKENWARD_TEST_NOT_SET_ANYWHERE"
        "#,
    )
    .unwrap();
    config.validate().unwrap();
    let mut config = ClientConfig::new("https://a.example/token", "svc");
    assert!(
        config_error(config.validate().unwrap_err())
            .starts_with("client_secret_env: no client credentials")
    );
    config.auth_method = Some(AuthMethod::None);
    config.validate().unwrap();
    config.share_access_token = true;
    assert!(config_error(config.validate().unwrap_err()).starts_with("share_access_token: "));
    config.share_access_token = false;
    config.decay = Some(toml::from_str("warn_days = 50\npage_days = 40").unwrap());
    assert!(
        config_error(config.validate().unwrap_err()).starts_with("decay: the days must satisfy")
    );
    config.decay = None;
    config.cache.max_attempts = Some(0);
    assert!(config_error(config.validate().unwrap_err()).starts_with("cache.max_attempts: "));
    config.cache.max_attempts = None;
    config.client_id = "  ".into();
    assert!(config_error(config.validate().unwrap_err()).starts_with("client_id: is empty"));
}

#[tokio::test]
async fn a_refresh_grant_shares_its_access_token_and_keeps_its_decay_policy() {
    use tokenward::store::{FileStore, StoredGrant, TokenStore as _};
    let server = FakeServer::builder().public_client("app").build();
    let running = server.listen().await.unwrap();
    let dir = Dir::new("share");
    let store = dir.0.join("grant.json");
    let used = std::time::SystemTime::now() - Duration::from_secs(25 * 86_400);
    FileStore::new(&store)
        .compare_and_swap(
            None,
            StoredGrant::new(server.issue_refresh_token("app", "jobs.read"))
                .with_last_used(Some(used))
                .with_stored_at(Some(used)),
        )
        .await
        .unwrap();
    let config = |extra: &str| {
        let text = format!(
            r#"
            grant = "refresh_token"
            token_url = "{}"
            client_id = "app"
            auth_method = "none"
            store = "{}"
            {extra}
            "#,
            running.token_url(),
            store.display()
        );
        toml::from_str::<ClientConfig>(&text).unwrap()
    };
    // Idle 25 days, refused from 20: the configured policy, not the default (85).
    let cache = config("decay = { warn_days = 10, page_days = 15, hard_fail_days = 20 }")
        .build()
        .await
        .unwrap();
    let error = cache.header().await.unwrap_err();
    assert_eq!(error.code(), "decayed", "{error}");
    assert_eq!(server.counters().token_requests, 0);

    // Shared: the access token is written beside the grant for the host's other processes.
    let cache = config("share_access_token = true").build().await.unwrap();
    cache.header().await.unwrap();
    assert!(dir.0.join("grant.json.access").exists());
    running.shutdown().await;
}

#[cfg(feature = "private-key-jwt")]
#[tokio::test(start_paused = true)]
async fn a_private_key_file_is_a_jwk_or_a_pem_with_its_algorithm() {
    let keys = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keys");
    let build = |file: &str, extra: &str| {
        let text = format!(
            r#"
            token_url = "https://a.example/token"
            client_id = "svc"
            private_key_file = "{}"
            {extra}
            "#,
            keys.join(file).display()
        );
        let config: ClientConfig = toml::from_str(&text).unwrap();
        async move {
            config
                .build_on(std::sync::Arc::new(
                    FakeServer::builder().build().http_client(),
                ))
                .await
        }
    };
    // A JWK carries its algorithm; one named must agree with it.
    build("ec-p256.jwk.json", "").await.unwrap();
    build("ed25519.jwk.json", r#"signing_algorithm = "EdDSA""#)
        .await
        .unwrap();
    let error = config_error(
        build("ec-p256.jwk.json", r#"signing_algorithm = "RS256""#)
            .await
            .unwrap_err(),
    );
    assert!(
        error.starts_with("signing_algorithm: the JWK in private_key_file signs ES256"),
        "{error}"
    );
    // A PEM file does not.
    build("rsa.pem", r#"signing_algorithm = "RS256""#)
        .await
        .unwrap();
    let error = config_error(build("rsa.pem", "").await.unwrap_err());
    assert!(
        error.starts_with("signing_algorithm: a PEM private_key_file needs signing_algorithm"),
        "{error}"
    );
}

#[cfg(feature = "private-key-jwt")]
#[tokio::test]
async fn a_jwk_file_signs_with_the_configured_key_id_and_may_start_with_a_bom() {
    use base64::Engine as _;
    let server = FakeServer::builder().build();
    let running = server.listen().await.unwrap();
    let keys = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keys");
    let jwk = std::fs::read_to_string(keys.join("ec-p256.jwk.json")).unwrap();
    let dir = Dir::new("jwk-bom");
    let file = dir.file("key.jwk.json", &format!("\u{feff}{jwk}"));
    let token_url = running.token_url();
    let kid_of = async |config: ClientConfig| {
        let auth = config.client_auth().unwrap();
        // Sign through a grant's request: the assertion's header names the kid.
        let grant = tokenward::ClientCredentials::builder(&token_url, "svc")
            .auth_method(auth)
            .build()
            .unwrap();
        let _ = tokenward::TokenSource::fetch(&grant).await;
        let request = server.last_token_request().unwrap();
        let assertion = request.param("client_assertion").unwrap().to_owned();
        let header = assertion.split('.').next().unwrap().to_owned();
        let header: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(header)
                .unwrap(),
        )
        .unwrap();
        header["kid"].as_str().map(str::to_owned)
    };
    let text = format!(
        r#"
        token_url = "{}"
        client_id = "svc"
        private_key_file = "{}"
        "#,
        running.token_url(),
        file.display()
    );
    let config: ClientConfig = toml::from_str(&text).unwrap();
    // The BOM is not taken for PEM; the JWK's own kid is used.
    assert_eq!(
        kid_of(config.clone()).await.as_deref(),
        Some("ec-p256-2026")
    );
    let mut config = config;
    config.key_id = Some("rotated-2027".into());
    assert_eq!(kid_of(config).await.as_deref(), Some("rotated-2027"));
    running.shutdown().await;
}

#[test]
fn scopes_come_from_a_list_of_strings() {
    let scopes = tokenward::ScopeSet::from(vec!["b".to_owned(), "a".to_owned()]);
    assert!(scopes.contains("a") && scopes.contains("b"));
}

#[test]
fn building_can_be_spawned() {
    fn send<T: Send>(_: &T) {}
    let client = ClientConfig::new("https://a.example/token", "svc");
    send(&client.build());
    let tenants = TenantsConfig::default();
    send(&tenants.build());
}
