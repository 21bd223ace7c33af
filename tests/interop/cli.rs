//! The CLI's `authorize` against oidc-provider: a native public client on a loopback
//! redirect URI (RFC 8252, any port), PKCE and the issuer check; then `token` refreshes from
//! the grant file it wrote. The CLI runs in-process (`tokenward_cli::run`), its stderr read
//! line by line for the URL a person would open.

use std::io::Write;

use crate::harness::{Provider, http};

/// Lines written to it go to a channel.
struct Lines {
    tx: tokio::sync::mpsc::UnboundedSender<String>,
    partial: Vec<u8>,
}

impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.partial.extend_from_slice(buf);
        while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            let _ = self
                .tx
                .send(String::from_utf8_lossy(&line).trim_end().to_owned());
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_authorize_then_token_against_oidc_provider() {
    let op = Provider::start(300);
    let dir = std::env::temp_dir().join(format!(
        "tokenward-interop-cli-{}-{:x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("tokenward.toml");
    std::fs::write(
        &config,
        format!(
            r#"[tenant.op]
grant = "refresh_token"
issuer = "{issuer}"
client_id = "cli-client"
auth_method = "none"
scope = "openid offline_access jobs.read"
params = {{ resource = "{resource}" }}
authorize_params = {{ resource = "{resource}", prompt = "consent" }}
store = "grant.json"
"#,
            resource = op.resource,
            issuer = op.issuer,
        ),
    )
    .unwrap();
    let config = config.to_string_lossy().into_owned();

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut err = Lines {
        tx,
        partial: Vec::new(),
    };
    let mut out = Vec::new();
    let cli = tokenward_cli::run(
        [
            "tokenward",
            "--config",
            &config,
            "authorize",
            "--timeout",
            "60s",
        ],
        &mut out,
        &mut err,
    );
    let browser = tokio::time::timeout(std::time::Duration::from_secs(90), async {
        // "Open this URL … (waiting 1m on http://127.0.0.1:<port>/callback):", then the URL.
        let mut redirect_uri = None;
        let url = loop {
            let line = rx.recv().await.expect("the CLI printed no URL");
            if line.starts_with("http") {
                break line;
            }
            if let Some((_, rest)) = line.split_once(" on ") {
                redirect_uri = rest.strip_suffix("):").map(str::to_owned);
            }
        };
        let redirect_uri = redirect_uri.expect("the CLI named its redirect URI");
        let http = http();
        let callback = op.browse_until(&http, &url, &redirect_uri).await;
        let page = http.get(&callback).send().await.unwrap();
        assert_eq!(page.status(), 200);
        page.text().await.unwrap()
    });
    let (code, page) = tokio::join!(cli, browser);
    let page = page.expect("the CLI printed no URL, or the browser's part took too long");
    let out = String::from_utf8(out).unwrap();
    assert_eq!(code, 0, "{out}\n{}", op.stderr());
    assert!(page.contains("Authorized"), "{page}");
    assert!(out.contains("refresh token  stored in"), "{out}");

    // The refresh grant finds it: `token` refreshes (and rotates) from the file.
    let mut out = Vec::new();
    let mut err = Vec::new();
    let code = tokenward_cli::run(
        ["tokenward", "--config", &config, "--json", "token"],
        &mut out,
        &mut err,
    )
    .await;
    let out = String::from_utf8(out).unwrap();
    assert_eq!(code, 0, "{out}{}", String::from_utf8_lossy(&err));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["refresh_token_rotated"], true, "{out}");
    let stats = op.stats(&http()).await;
    assert_eq!(stats.grants("authorization_code"), 1);
    assert_eq!(stats.grants("refresh_token"), 1);
    assert_eq!(stats.refresh_token_reuse(), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}
