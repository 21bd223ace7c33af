//! The `tokenward` binary end to end, against the testkit's fake authorization server on
//! 127.0.0.1 that each test starts: every command, and the failures an operator meets (a wrong
//! secret, a missing scope, a decayed token, an unreachable endpoint, a corrupt config, an
//! unknown tenant). Human output is snapshotted (times and durations masked), every `--json`
//! output parses, and nothing prints a secret or a token without `--reveal`.

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Command as StdCommand, Stdio};
use std::time::{Duration, SystemTime};

use assert_cmd::Command;
use serde_json::Value;
use tokenward::store::{FileStore, StoredGrant, TokenStore};
use tokenward_testkit::{FakeServer, RunningServer};

const SVC_SECRET: &str = "svc-Secret-0001";
const APP_SECRET: &str = "app-Secret-0002";

/// A fake server on loopback and a folder holding `tokenward.toml`.
struct Fixture {
    rt: tokio::runtime::Runtime,
    server: FakeServer,
    running: Option<RunningServer>,
    dir: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let server = FakeServer::builder()
            .client("svc", SVC_SECRET)
            .client_scopes("svc", "jobs.read jobs.write")
            .client("app", APP_SECRET)
            .redirect_uri("app", "http://127.0.0.1/callback")
            .token_lifetime(Duration::from_secs(3600))
            .build();
        let running = rt.block_on(server.listen()).unwrap();
        let dir = std::env::temp_dir().join(format!(
            "tokenward-cli-{}-{:x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let fixture = Fixture {
            rt,
            server,
            running: Some(running),
            dir,
        };
        fixture.config(&fixture.standard_config());
        fixture
    }

    fn running(&self) -> &RunningServer {
        self.running.as_ref().unwrap()
    }

    fn standard_config(&self) -> String {
        let r = self.running();
        format!(
            r#"# tenants of the CLI tests
[tenant.svc]
grant = "client_credentials"
token_url = "{token}"
client_id = "svc"
client_secret_env = "SVC_SECRET"
scope = "jobs.read"
require_scopes = "jobs.read"
introspection_url = "{introspect}"
revocation_url = "{revoke}"

[tenant.app]
grant = "refresh_token"
token_url = "{token}"
client_id = "app"
client_secret_env = "APP_SECRET"
scope = "jobs.read"
store = "app-grant.json"
authorization_url = "{authorize}"
introspection_url = "{introspect}"
revocation_url = "{revoke}"
"#,
            token = r.token_url(),
            introspect = r.introspect_url(),
            revoke = r.revoke_url(),
            authorize = r.authorize_url(),
        )
    }

    fn config(&self, text: &str) {
        std::fs::write(self.dir.join("tokenward.toml"), text).unwrap();
    }

    fn cmd(&self) -> Command {
        let mut cmd = Command::cargo_bin("tokenward").unwrap();
        cmd.current_dir(&self.dir)
            .env("SVC_SECRET", SVC_SECRET)
            .env("APP_SECRET", APP_SECRET)
            .env("NO_COLOR", "1");
        cmd
    }

    /// Runs `args`; returns the exit code, stdout and stderr.
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        run(self.cmd().args(args))
    }

    /// Puts a refresh token for `app` in its grant file, last used `idle` ago.
    fn seed_app(&self, idle: Duration) {
        let refresh_token = self.server.issue_refresh_token("app", "jobs.read");
        let used = SystemTime::now() - idle;
        let store = FileStore::new(self.dir.join("app-grant.json"));
        self.rt
            .block_on(
                store.compare_and_swap(
                    None,
                    StoredGrant::new(refresh_token)
                        .with_scope(Some("jobs.read".into()))
                        .with_last_used(Some(used))
                        .with_stored_at(Some(used)),
                ),
            )
            .unwrap();
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            self.rt.block_on(running.shutdown());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run(cmd: &mut Command) -> (i32, String, String) {
    let output = cmd.output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let code = output.status.code().unwrap_or(-1);
    let (out, err) = (text(&output.stdout), text(&output.stderr));
    assert_no_secret(&out);
    assert_no_secret(&err);
    (code, out, err)
}

/// No client secret and nothing shaped like a testkit token (`at_…`, `rt_…`, `ac_…`).
fn assert_no_secret(text: &str) {
    for secret in [
        SVC_SECRET,
        APP_SECRET,
        "svc-Secret-NEW-0003",
        "svc-Secret-NEWER-04",
    ] {
        assert!(
            !text.contains(secret),
            "a client secret was printed:\n{text}"
        );
    }
    let token = regex::Regex::new(r"\b(at|rt|ac)_[A-Za-z0-9_-]{12,}").unwrap();
    assert!(!token.is_match(text), "a token was printed:\n{text}");
}

/// Times, durations and ports vary: masked in snapshots.
fn masked(text: &str) -> String {
    let rules = [
        (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "[TIME]"),
        (r"\(in [^)]*\)", "(in [DURATION])"),
        (r"(lifetime\s+)\S.*", "${1}[DURATION]"),
        (r"127\.0\.0\.1:\d+", "127.0.0.1:[PORT]"),
        (r"/tmp/[^ \n)]*/", "[DIR]/"),
    ];
    let mut text = text.to_owned();
    for (pattern, with) in rules {
        text = regex::Regex::new(pattern)
            .unwrap()
            .replace_all(&text, with)
            .into_owned();
    }
    text
}

/// A table whose durations vary in length, and its columns with them: durations masked,
/// spaces folded.
fn folded(text: &str) -> String {
    let text = regex::Regex::new(r"\d+m( \d+s)?|\d+s")
        .unwrap()
        .replace_all(text, "[D]")
        .into_owned();
    let text = regex::Regex::new(r" {2,}")
        .unwrap()
        .replace_all(&text, " | ")
        .into_owned();
    masked(&text)
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

#[test]
fn token_prints_what_was_obtained_and_the_token_only_when_asked() {
    let f = Fixture::new();
    let (code, out, err) = f.run(&["token", "--tenant", "svc"]);
    assert_eq!(code, 0, "{err}");
    insta::assert_snapshot!("token_svc", masked(&out));

    let (code, out, _) = f.run(&["--json", "token", "--tenant", "svc"]);
    assert_eq!(code, 0);
    let v = json(&out);
    assert_eq!(v["ok"], true);
    assert_eq!(v["scope"], "jobs.read");
    assert!(v["expires_in"].as_u64().unwrap() > 3000);
    assert!(v.get("access_token").is_none());

    // With --reveal (or a script format), the token, and it is one the server accepts.
    let output = f
        .cmd()
        .args(["token", "--tenant", "svc", "--format", "header"])
        .output()
        .unwrap();
    let header = String::from_utf8(output.stdout).unwrap();
    let token = header
        .trim()
        .strip_prefix("Authorization: Bearer ")
        .unwrap()
        .to_owned();
    let status = f.rt.block_on(async {
        reqwest::Client::new()
            .get(f.running().resource_url())
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status, 200);
    let output = f
        .cmd()
        .args(["token", "--tenant", "svc", "--reveal"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8(output.stdout)
            .unwrap()
            .contains("access token  at_")
    );
    let output = f
        .cmd()
        .args(["token", "--tenant", "svc", "--format", "env"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8(output.stdout)
            .unwrap()
            .starts_with("export TOKENWARD_ACCESS_TOKEN='at_")
    );
}

#[test]
fn token_with_a_refresh_grant_persists_the_rotation() {
    let f = Fixture::new();
    f.seed_app(Duration::from_secs(60));
    let (code, out, err) = f.run(&["token", "--tenant", "app", "--force"]);
    assert_eq!(code, 0, "{err}");
    insta::assert_snapshot!("token_app", masked(&out));
    // The next run sends the rotated refresh token the first one persisted, not the old one.
    let (code, out, err) = f.run(&["--json", "token", "--tenant", "app"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(json(&out)["refresh_token_rotated"], true);
    assert_eq!(f.server.counters().issued_for("refresh_token"), 2);
    assert_eq!(f.server.counters().refresh_reuse_detected, 0);
    // Access tokens are not written to disk unless the config shares them.
    assert!(!f.path("app-grant.json.access").exists());
}

#[test]
fn verify_passes_with_the_right_secret_and_fails_with_a_wrong_one() {
    let f = Fixture::new();
    let (code, out, err) = f.run(&["verify", "--tenant", "svc", "--introspect"]);
    assert_eq!(code, 0, "{err}");
    insta::assert_snapshot!("verify_pass", masked(&out));

    let (code, out, _) = run(f
        .cmd()
        .env("SVC_SECRET", "svc-Secret-NEW-0003")
        .args(["verify", "--tenant", "svc"]));
    assert_eq!(code, 1);
    assert!(out.contains("FAIL"), "{out}");
    let (code, out, _) = run(f
        .cmd()
        .env("SVC_SECRET", "svc-Secret-NEW-0003")
        .args(["--json", "verify", "--tenant", "svc"]));
    assert_eq!(code, 1);
    assert_eq!(json(&out)["ok"], false);
}

#[test]
fn scopes_lists_what_is_missing_with_the_action_and_fails_on_drift() {
    let f = Fixture::new();
    let (code, _, err) = f.run(&["scopes", "--tenant", "svc"]);
    assert_eq!(code, 0, "{err}");
    f.config(&f.standard_config().replace(
        "require_scopes = \"jobs.read\"",
        "require_scopes = \"jobs.read reports.*\"",
    ));
    let (code, out, _) = f.run(&["scopes", "--tenant", "svc"]);
    assert_eq!(code, 1);
    insta::assert_snapshot!("scopes_drift", masked(&out));
    let (code, out, _) = f.run(&["--json", "scopes", "--tenant", "svc"]);
    assert_eq!(code, 1);
    assert_eq!(json(&out)["missing"][0]["scope"], "reports.*");
}

#[test]
fn decay_reports_the_age_and_pages_on_an_old_token() {
    let f = Fixture::new();
    f.seed_app(Duration::from_secs(80 * 86_400));
    let (code, out, _) = f.run(&["decay", "--tenant", "app"]);
    assert_eq!(code, 1, "page is a failure: {out}");
    insta::assert_snapshot!("decay_page", masked(&out));
    let (_, out, _) = f.run(&["--json", "decay", "--tenant", "app"]);
    let v = json(&out);
    assert_eq!(v["state"], "page");
    assert_eq!(v["idle_days"], 80);

    // Past the hard-fail age, the token is not even sent.
    let f = Fixture::new();
    f.seed_app(Duration::from_secs(86 * 86_400));
    let (code, _, err) = f.run(&["token", "--tenant", "app"]);
    assert_eq!(code, 1);
    assert!(err.contains("idle for 86 days"), "{err}");
    assert_eq!(f.server.counters().token_requests, 0);
}

#[test]
fn status_is_one_line_per_tenant() {
    let f = Fixture::new();
    f.seed_app(Duration::from_secs(3 * 86_400));
    let (code, _, err) = f.run(&["token", "--tenant", "app"]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = f.run(&["status"]);
    assert_eq!(code, 0, "{err}");
    insta::assert_snapshot!("status", folded(&out));
    let (_, out, _) = f.run(&["--json", "status"]);
    let v = json(&out);
    assert_eq!(v["tenants"].as_array().unwrap().len(), 2);
    let app = &v["tenants"][0];
    assert_eq!(app["tenant"], "app");
    assert!(
        app["last_refresh"].as_u64().unwrap() > 1_700_000_000,
        "{app}"
    );
    assert_eq!(app["decay"], "healthy");
    assert!(app["last_error"].is_null());

    // A tenant that cannot refresh fails the run, for a probe or a cron job.
    std::fs::remove_file(f.path("app-grant.json")).unwrap();
    let (code, out, _) = f.run(&["status"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no refresh token: run authorize"), "{out}");
}

#[test]
fn introspect_and_revoke() {
    let f = Fixture::new();
    let (code, out, err) = f.run(&["introspect", "--tenant", "svc"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("active     true"), "{out}");
    assert!(out.contains("client_id  svc"), "{out}");

    // A token given on stdin, never on the command line.
    let (code, out, _) = run(f
        .cmd()
        .args(["--json", "introspect", "--tenant", "svc", "--stdin"])
        .write_stdin("at_not_a_token_this_server_issued\n"));
    assert_eq!(code, 0);
    assert_eq!(json(&out)["active"], false);

    f.seed_app(Duration::from_secs(60));
    let (code, out, err) = f.run(&["revoke", "--tenant", "app", "--refresh-token"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("the grant has ended"), "{out}");
    let (code, _, err) = f.run(&["token", "--tenant", "app"]);
    assert_eq!(code, 1);
    assert!(err.contains("authoriz"), "{err}");
    let (code, out, _) = f.run(&["--json", "token", "--tenant", "app"]);
    assert_eq!(code, 1);
    assert_eq!(json(&out)["error"]["kind"], "reauthorization_required");
}

#[test]
fn authorize_stores_the_refresh_token_where_the_grant_finds_it() {
    let f = Fixture::new();
    let mut child = StdCommand::new(assert_cmd::cargo::cargo_bin("tokenward"))
        .current_dir(&f.dir)
        .env("APP_SECRET", APP_SECRET)
        .args(["authorize", "--tenant", "app", "--timeout", "30s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut redirect_uri = None;
    let url = lines
        .by_ref()
        .map(Result::unwrap)
        .find(|l| {
            if let Some((_, rest)) = l.split_once(" on ") {
                redirect_uri = rest.strip_suffix("):").map(str::to_owned);
            }
            l.starts_with("http")
        })
        .expect("the authorization URL");
    let redirect_uri = redirect_uri.expect("the redirect URI");
    assert!(url.contains("code_challenge_method=S256"), "{url}");
    // The browser: the server approves and redirects to the loopback listener.
    f.rt.block_on(async {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        // Other requests to the listener (a forged callback, an idle connection) do not end
        // the wait.
        let forged = http
            .get(format!(
                "{redirect_uri}?code=ac_forged_code_000000&state=wrong"
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(forged.status(), 400);
        let host = redirect_uri
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        let idle = tokio::net::TcpStream::connect(host).await.unwrap();
        let response = http.get(&url).send().await.unwrap();
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        assert!(location.starts_with("http://127.0.0.1:"), "{location}");
        let page = http.get(&location).send().await.unwrap();
        assert_eq!(page.status(), 200);
        assert!(page.text().await.unwrap().contains("Authorized"));
        drop(idle);
    });
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    assert_no_secret(&rest.join("\n"));
    let output = child.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&output.stdout);
    assert_no_secret(&out);
    assert!(output.status.success(), "{out}");
    insta::assert_snapshot!("authorize", masked(&out));
    let (code, _, err) = f.run(&["token", "--tenant", "app"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(f.server.counters().codes_issued, 1);
}

#[test]
fn authorize_gives_up_with_a_clear_message() {
    let f = Fixture::new();
    let (code, _, err) = f.run(&["authorize", "--tenant", "app", "--timeout", "1s"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("nobody completed the authorization within 1s"),
        "{err}"
    );
}

#[test]
fn rotate_secret_switches_a_secret_file_after_verifying_and_stops_at_a_refusal() {
    let f = Fixture::new();
    std::fs::write(f.path("svc.secret"), format!("{SVC_SECRET}\n")).unwrap();
    // Readable by the service's group: the new file keeps that.
    #[cfg(unix)]
    std::fs::set_permissions(
        f.path("svc.secret"),
        std::os::unix::fs::PermissionsExt::from_mode(0o640),
    )
    .unwrap();
    f.config(&f.standard_config().replace(
        "client_secret_env = \"SVC_SECRET\"",
        "client_secret_file = \"svc.secret\"",
    ));
    // Not yet added at the server: refused, nothing changed.
    let (code, out, _) = run(f.cmd().env("NEW_SECRET", "svc-Secret-NEW-0003").args([
        "rotate-secret",
        "--tenant",
        "svc",
        "--new-secret-env",
        "NEW_SECRET",
    ]));
    assert_eq!(code, 1);
    assert!(out.contains("stopped: the new secret is refused"), "{out}");
    assert_eq!(
        std::fs::read_to_string(f.path("svc.secret"))
            .unwrap()
            .trim(),
        SVC_SECRET
    );

    f.server.add_client_secret("svc", "svc-Secret-NEW-0003");
    let (code, out, err) = run(f.cmd().env("NEW_SECRET", "svc-Secret-NEW-0003").args([
        "rotate-secret",
        "--tenant",
        "svc",
        "--new-secret-env",
        "NEW_SECRET",
    ]));
    assert_eq!(code, 0, "{err}");
    insta::assert_snapshot!("rotate_secret", masked(&out));
    assert_eq!(
        std::fs::read_to_string(f.path("svc.secret"))
            .unwrap()
            .trim(),
        "svc-Secret-NEW-0003"
    );
    assert_eq!(
        std::fs::read_to_string(f.path("svc.secret.previous"))
            .unwrap()
            .trim(),
        SVC_SECRET
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(f.path("svc.secret"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o640);
    }
    // Again before the old secret is retired: refused, the kept old secret not overwritten.
    f.server.add_client_secret("svc", "svc-Secret-NEWER-04");
    let (code, out, _) = run(f.cmd().env("NEW_SECRET", "svc-Secret-NEWER-04").args([
        "rotate-secret",
        "--tenant",
        "svc",
        "--new-secret-env",
        "NEW_SECRET",
    ]));
    assert_eq!(code, 1);
    assert!(out.contains("exists from an earlier rotation"), "{out}");
    assert_eq!(
        std::fs::read_to_string(f.path("svc.secret.previous"))
            .unwrap()
            .trim(),
        SVC_SECRET
    );
    // The old one can go: the configured source now works alone.
    assert!(f.server.remove_client_secret("svc", SVC_SECRET));
    let (code, _, err) = f.run(&["verify", "--tenant", "svc"]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn operator_mistakes_are_named_precisely() {
    let f = Fixture::new();
    // An unreachable endpoint: a port that was just free.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    f.config(
        &f.standard_config()
            .replace(&f.running().token_url(), &format!("http://{closed}/token")),
    );
    let (code, out, _) = f.run(&["--json", "token", "--tenant", "svc"]);
    assert_eq!(code, 1);
    assert_eq!(json(&out)["error"]["kind"], "unreachable");

    // A corrupt configuration: the file, the line, the key.
    f.config("[tenant.svc]\ngrant = \"client_credentials\"\ntoken_url = 7\n");
    let (code, _, err) = f.run(&["token"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("tokenward.toml:3: tenant.svc.token_url: invalid type"),
        "{err}"
    );
    f.config(
        &f.standard_config()
            .replace("grant = \"client_credentials\"", "grant = \"password\""),
    );
    let (code, _, err) = f.run(&["token", "--tenant", "svc"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("tokenward.toml:3: tenant.svc.grant: unknown variant (not shown), expected"),
        "{err}"
    );
    assert!(!err.contains("password"), "{err}");
    // Two sources of one secret: refused, as a service refuses them.
    f.config(&f.standard_config().replace(
        "client_secret_env = \"SVC_SECRET\"",
        "client_secret_env = \"SVC_SECRET\"\nclient_secret_file = \"svc.secret\"",
    ));
    let (code, _, err) = f.run(&["token", "--tenant", "svc"]);
    assert_eq!(code, 2);
    assert!(
        err.contains(
            "tenant.svc.client_secret_env: give one of client_secret_env, client_secret_file"
        ),
        "{err}"
    );
    // A secret pasted where the variable's name belongs is not printed.
    f.config(&f.standard_config().replace(
        "client_secret_env = \"SVC_SECRET\"",
        "client_secret_env = \"svc-Secret-0001\"",
    ));
    let (code, _, err) = f.run(&["token", "--tenant", "svc"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("(a name not in upper case, not shown) is not set"),
        "{err}"
    );

    // An unknown tenant, and no tenant among several.
    f.config(&f.standard_config());
    let (code, _, err) = f.run(&["token", "--tenant", "nope"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("no tenant \"nope\" (configured: app, svc)"),
        "{err}"
    );
    let (code, _, err) = f.run(&["token"]);
    assert_eq!(code, 2);
    assert!(err.contains("choose one with --tenant"), "{err}");

    // A secret's variable not set.
    let (code, _, err) = run(f
        .cmd()
        .env_remove("SVC_SECRET")
        .args(["token", "--tenant", "svc"]));
    assert_eq!(code, 2);
    assert!(err.contains("SVC_SECRET is not set"), "{err}");

    // A secret in the file itself is not accepted.
    f.config(&f.standard_config().replace(
        "client_secret_env = \"SVC_SECRET\"",
        "client_secret = \"svc-Secret-0001\"",
    ));
    let (code, _, err) = f.run(&["token", "--tenant", "svc"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("tenant.svc.client_secret: a secret is never read from the configuration"),
        "{err}"
    );
    assert!(!err.contains("svc-Secret-0001"), "{err}");
}

#[test]
fn every_json_output_parses() {
    let f = Fixture::new();
    f.seed_app(Duration::from_secs(60));
    let (code, out, _) = f.run(&["--json", "token", "--bogus"]);
    assert_eq!(code, 2);
    assert_eq!(json(&out)["error"]["kind"], "usage");
    for args in [
        &["token", "--tenant", "svc"][..],
        &["verify", "--tenant", "svc"],
        &["scopes", "--tenant", "svc"],
        &["decay", "--tenant", "app"],
        &["status"],
        &["introspect", "--tenant", "svc"],
        &["token", "--tenant", "nope"],
        &["revoke", "--tenant", "app", "--refresh-token"],
    ] {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let (_, out, _) = f.run(&all);
        let v = json(&out);
        assert!(v["ok"].is_boolean(), "{args:?}: {out}");
    }
}

#[test]
fn every_command_names_an_unknown_tenant_and_fails_on_a_wrong_secret() {
    let f = Fixture::new();
    f.seed_app(Duration::from_secs(60));
    for args in [
        &["token"][..],
        &["verify"],
        &["scopes"],
        &["decay"],
        &["status"],
        &["introspect"],
        &["revoke", "--refresh-token"],
        &["authorize", "--timeout", "1s"],
        &["rotate-secret", "--new-secret-env", "SVC_SECRET"],
    ] {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--tenant", "nope"]);
        let (code, _, err) = f.run(&all);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains("no tenant \"nope\""), "{args:?}: {err}");
    }
    // A wrong secret: a failure of the command, never the secret shown.
    for args in [
        &["token", "--tenant", "svc"][..],
        &["verify", "--tenant", "svc"],
        &["scopes", "--tenant", "svc"],
        &["introspect", "--tenant", "svc"],
        &["token", "--tenant", "app", "--force"],
    ] {
        let (code, out, err) = run(f
            .cmd()
            .env("SVC_SECRET", "svc-Secret-NEW-0003")
            .env("APP_SECRET", "svc-Secret-NEW-0003")
            .args(args));
        assert_eq!(code, 1, "{args:?}: {out}{err}");
    }
    // Credentials written as parameters are refused, with the line.
    f.config(&f.standard_config().replace(
        "scope = \"jobs.read\"\nrequire_scopes",
        "scope = \"jobs.read\"\nparams = { client_assertion = \"eyJ\" }\nrequire_scopes",
    ));
    let (code, _, err) = f.run(&["token", "--tenant", "svc"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("tokenward.toml:2: tenant.svc.params.client_assertion: the grant sends this parameter itself"),
        "{err}"
    );
    assert!(!err.contains("eyJ"), "{err}");
}

#[test]
fn rotate_secret_for_a_refresh_grant_verifies_with_a_refresh() {
    let f = Fixture::new();
    f.seed_app(Duration::from_secs(60));
    std::fs::write(f.path("app.secret"), format!("{APP_SECRET}\n")).unwrap();
    f.config(&f.standard_config().replace(
        "client_secret_env = \"APP_SECRET\"",
        "client_secret_file = \"app.secret\"",
    ));
    f.server.add_client_secret("app", "svc-Secret-NEW-0003");
    let (code, out, err) = run(f.cmd().env("NEW_SECRET", "svc-Secret-NEW-0003").args([
        "rotate-secret",
        "--tenant",
        "app",
        "--new-secret-env",
        "NEW_SECRET",
    ]));
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        std::fs::read_to_string(f.path("app.secret"))
            .unwrap()
            .trim(),
        "svc-Secret-NEW-0003"
    );
    // Two refreshes (one per verification), each sending the refresh token the last stored.
    assert_eq!(f.server.counters().issued_for("refresh_token"), 2);
    assert_eq!(f.server.counters().refresh_reuse_detected, 0);
}

/// A running service's token health endpoint on loopback (`TokenHealth` in axum); its URL.
fn serve_health(f: &Fixture, health: tokenward_tower::health::TokenHealth) -> String {
    f.rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().route_service("/health/tokens", health);
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/health/tokens")
    })
}

/// The standard configuration with `svc` told where its service's health endpoint is.
fn with_health(f: &Fixture, url: &str, tenant: Option<&str>) {
    let mut lines = format!("require_scopes = \"jobs.read\"\nhealth_url = \"{url}\"\n");
    if let Some(tenant) = tenant {
        lines.push_str(&format!("health_tenant = \"{tenant}\"\n"));
    }
    f.config(
        &f.standard_config()
            .replacen("require_scopes = \"jobs.read\"\n", &lines, 1),
    );
}

fn service_cache(f: &Fixture, secret: &str) -> tokenward::TokenCache {
    let grant = tokenward::ClientCredentials::builder(f.running().token_url(), "svc")
        .client_secret(secret)
        .build()
        .unwrap();
    tokenward::TokenCache::new(grant)
}

#[test]
fn status_shows_what_the_running_service_sees() {
    use tokenward_tower::health::TokenHealth;
    let f = Fixture::new();
    let good = service_cache(&f, SVC_SECRET);
    f.rt.block_on(good.header()).unwrap();
    with_health(&f, &serve_health(&f, TokenHealth::new(good)), None);
    let (code, out, err) = f.run(&["status", "--tenant", "svc"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("fresh (service)"), "{out}");
    insta::assert_snapshot!("status_service", folded(&out));
    let (_, out, _) = f.run(&["--json", "status", "--tenant", "svc"]);
    let svc = &json(&out)["tenants"][0];
    assert_eq!(svc["token"], "fresh (service)");
    assert!(svc["expires_in"].as_u64().unwrap() > 3500, "{svc}");
    assert!(
        svc["last_refresh"].as_u64().unwrap() > 1_700_000_000,
        "{svc}"
    );
    assert!(svc["last_error"].is_null());

    // The service's refreshes fail: its last error shows, and the run fails.
    let bad = service_cache(&f, "wrong-Secret-0009");
    f.rt.block_on(bad.header()).unwrap_err();
    with_health(&f, &serve_health(&f, TokenHealth::new(bad)), None);
    let (code, out, _) = f.run(&["status", "--tenant", "svc"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("empty (service)"), "{out}");
    assert!(out.contains("invalid_client:"), "{out}");
    assert!(!out.contains("wrong-Secret-0009"), "{out}");

    // A service that cannot be asked.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    with_health(&f, &format!("http://{closed}/health/tokens"), None);
    let (code, out, _) = f.run(&["--json", "status", "--tenant", "svc"]);
    assert_eq!(code, 1, "{out}");
    let error = json(&out)["tenants"][0]["last_error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(error.starts_with("service health: "), "{error}");
}

#[test]
fn status_finds_its_tenant_in_a_service_with_many() {
    use tokenward_tower::health::TokenHealth;
    let f = Fixture::new();
    let grant = |secret: &str| {
        tokenward::ClientCredentials::builder(f.running().token_url(), "svc")
            .client_secret(secret)
            .build()
            .unwrap()
    };
    let tenants = tokenward::TenantCache::new();
    tenants.insert("acme".to_owned(), grant(SVC_SECRET));
    tenants.insert("umbrella".to_owned(), grant("wrong-Secret-0010"));
    f.rt.block_on(tenants.header("acme")).unwrap();
    f.rt.block_on(tenants.header("umbrella")).unwrap_err();
    let url = serve_health(&f, TokenHealth::tenants(tenants));

    with_health(&f, &url, Some("umbrella"));
    let (code, out, _) = f.run(&["status", "--tenant", "svc"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("invalid_client:"), "{out}");

    with_health(&f, &url, Some("acme"));
    let (code, out, err) = f.run(&["status", "--tenant", "svc"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("fresh (service)"), "{out}");

    // A key the service does not have is an error, not a healthy tenant.
    with_health(&f, &url, Some("acmee"));
    let (code, out, _) = f.run(&["status", "--tenant", "svc"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("has no tenant"), "{out}");

    with_health(&f, &url, None);
    let (code, out, _) = f.run(&["status", "--tenant", "svc"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("set health_tenant"), "{out}");
}

#[test]
fn verify_url_says_whether_the_url_or_the_token_is_wrong() {
    let f = Fixture::new();
    let verify = |url: &str| {
        let (code, out, _) = f.run(&["--json", "verify", "--tenant", "svc", "--url", url]);
        let v = json(&out);
        let steps = v["steps"].as_array().unwrap().clone();
        assert_eq!(steps[0]["step"], "token");
        assert_eq!(steps[0]["ok"], true, "the token step passes on its own");
        (code, steps[1].clone())
    };
    let (code, url) = verify(&f.running().resource_url());
    assert_eq!((code, url["ok"].clone()), (0, Value::Bool(true)), "{url}");

    // Another server's API does not take this server's tokens: the token is the problem.
    let other = FakeServer::builder().client("svc", SVC_SECRET).build();
    let other_running = f.rt.block_on(other.listen()).unwrap();
    let (code, url) = verify(&other_running.resource_url());
    assert_eq!(code, 1);
    assert_eq!(url["status"], 401);
    assert!(
        url["error"]
            .as_str()
            .unwrap()
            .contains("rejected the token (invalid_token)"),
        "{url}"
    );

    // Nothing there: the URL is the problem.
    let (code, url) = verify(&f.running().url("/no-such-api"));
    assert_eq!(code, 1);
    assert_eq!(url["status"], 404);
    assert!(
        url["error"]
            .as_str()
            .unwrap()
            .contains("nothing at this URL"),
        "{url}"
    );

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (code, url) = verify(&format!("http://{closed}/api"));
    assert_eq!(code, 1);
    assert!(url["status"].is_null());
    assert!(
        url["error"]
            .as_str()
            .unwrap()
            .contains("could not be reached"),
        "{url}"
    );

    // A URL that is no URL: the token step still passes, and the URL is not shown.
    let (code, url) = verify("not a url k-Secret-78");
    assert_eq!(code, 1);
    assert!(
        url["error"]
            .as_str()
            .unwrap()
            .contains("not an absolute http(s) URL"),
        "{url}"
    );
    assert!(!url.to_string().contains("k-Secret-78"));

    // The human form names the step, never the URL.
    let secret_url = format!("{}?api_key=k-Secret-77", f.running().url("/no-such-api"));
    let (code, out, _) = f.run(&["verify", "--tenant", "svc", "--url", &secret_url]);
    assert_eq!(code, 1);
    let row = |name: &str| {
        out.lines()
            .find(|l| l.starts_with(name))
            .map(|l| l[name.len()..].trim_start().to_owned())
            .unwrap_or_default()
    };
    assert!(row("token").starts_with("PASS"), "{out}");
    assert!(
        row("url").starts_with("FAIL 404 Not Found: nothing at this URL"),
        "{out}"
    );
    assert!(!out.contains("k-Secret-77"), "{out}");
    insta::assert_snapshot!("verify_url_404", masked(&out));
    f.rt.block_on(other_running.shutdown());
}

#[cfg(unix)]
#[test]
fn a_command_that_writes_the_grant_file_refuses_one_another_user_owns() {
    let f = Fixture::new();
    f.seed_app(Duration::from_secs(86_400));
    let grant_file = f.path("app-grant.json");
    // As root, the file is given to another user; otherwise a file root owns stands in.
    let owner = match std::os::unix::fs::chown(&grant_file, Some(4242), None) {
        Ok(()) => 4242,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            let config = f
                .standard_config()
                .replace("store = \"app-grant.json\"", "store = \"/etc/passwd\"");
            f.config(&config);
            0
        }
        Err(e) => panic!("{e}"),
    };
    let written = if owner == 0 {
        std::path::PathBuf::from("/etc/passwd")
    } else {
        grant_file.clone()
    };
    let before = std::fs::read(&written).unwrap();
    let (code, out, err) = f.run(&["token", "--tenant", "app"]);
    assert_eq!(code, 1, "{out}{err}");
    let text = format!("{out}{err}");
    assert!(text.contains(&format!("belongs to uid {owner}")), "{text}");
    assert!(text.contains("run as its owner"), "{text}");
    assert_eq!(
        f.server.counters().token_requests,
        0,
        "nothing was refreshed"
    );
    assert_eq!(
        std::fs::read(&written).unwrap(),
        before,
        "the file is untouched"
    );
    // Reading it is fine.
    if owner != 0 {
        let (code, out, _) = f.run(&["decay", "--tenant", "app"]);
        assert_eq!(code, 0, "{out}");
    }
}

#[test]
fn reads_a_services_tenants_file_and_discovers_its_endpoints_from_the_issuer() {
    let f = Fixture::new();
    let issuer = f.running().issuer();
    // The file a service reads with `tokenward::config::TenantsConfig`: `[tenants.*]`, the
    // library's names, shared tuning, an issuer instead of endpoints.
    let text = format!(
        r#"[cache]
refresh_fraction = 0.8

[tenants.svc]
issuer = "{issuer}"
client_id = "svc"
client_secret_file = "svc.secret"
auth_method = "client_secret_post"
scope = "jobs.read"
require_scopes = "jobs.read"
"#
    );
    std::fs::write(f.path("svc.secret"), format!("{SVC_SECRET}\n")).unwrap();
    f.config(&text);
    let service: tokenward::config::TenantsConfig = toml::from_str(&text).unwrap();
    assert_eq!(
        service.tenants["svc"].issuer.as_deref(),
        Some(issuer.as_str())
    );

    let (code, out, err) = f.run(&["--json", "token"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(json(&out)["scope"], "jobs.read");
    // Introspection's endpoint came from the metadata too.
    let (code, out, err) = f.run(&["introspect"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("active     true"), "{out}");
    let (code, _, err) = f.run(&["scopes"]);
    assert_eq!(code, 0, "{err}");

    // The CLI's short names of the methods, as before.
    f.config(&text.replace("client_secret_post", "post"));
    let (code, _, err) = f.run(&["token"]);
    assert_eq!(code, 0, "{err}");

    // An endpoint beside the issuer would contradict the metadata: refused.
    let introspect = f.running().introspect_url();
    f.config(&text.replace(
        "scope = ",
        &format!("introspection_url = \"{introspect}\"\nscope = "),
    ));
    let (code, _, err) = f.run(&["token"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("tenants.svc.introspection_url: is discovered from the issuer"),
        "{err}"
    );
    // The library's checks, with the line of the tenant's table.
    f.config(&text.replace(
        "client_id = \"svc\"",
        &format!(
            "client_id = \"svc\"\ntoken_url = \"{}\"",
            f.running().token_url()
        ),
    ));
    let (code, _, err) = f.run(&["token"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("tokenward.toml:4: tenants.svc.issuer: give issuer or token_url, not both"),
        "{err}"
    );
    // A key of neither file, and one tenant under both names.
    f.config(&format!("{text}\n[tenantz.x]\nclient_id = \"x\"\n"));
    let (code, _, err) = f.run(&["token"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("tokenward.toml:12: tenantz: not a key"),
        "{err}"
    );
    f.config(&format!(
        "{text}\n[tenant.svc]\ntoken_url = \"{}\"\nclient_id = \"svc\"\nauth_method = \"none\"\n",
        f.running().token_url()
    ));
    let (code, _, err) = f.run(&["token"]);
    assert_eq!(code, 2);
    assert!(err.contains("tenants.svc: configured twice"), "{err}");

    // An issuer that cannot be reached: commands that need an endpoint say so; `decay`
    // reads the grant file alone and still answers.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    f.seed_app(Duration::from_secs(60));
    f.config(&format!(
        "[tenant.app]\ngrant = \"refresh_token\"\nissuer = \"http://{closed}\"\nclient_id = \"app\"\nauth_method = \"none\"\nstore = \"app-grant.json\"\n"
    ));
    let (code, _, err) = f.run(&["token"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("tenant app: discovering the endpoints from its issuer"),
        "{err}"
    );
    let (code, out, err) = f.run(&["decay"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("healthy"), "{out}");
}
