//! End-to-end OAuth against a real authorization server we did not write (panva's
//! oidc-provider over TLS, see `common/idp.rs`): browser login with code + PKCE, the device
//! flow, dynamic registration with discovery, refresh (near expiry, rotation, ten processes at
//! once, failure after expiry), a forged `state`, a token-endpoint error, and revocation.

mod common;
#[path = "common/idp.rs"]
mod idp;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{Env, Run, redact};
use idp::{CLIENT_ID, CLIENT_SECRET, Idp, Options, eventually, free_port, rt};
use serde_json::{Value, json};

/// A home wired to an IdP and its own daemon port, with the provider `name` registered.
struct Setup {
    env: Env,
    idp: Idp,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = self.env.run(&["daemon", "stop"]);
        if std::thread::panicking() {
            eprintln!("--- oidc-provider log ---\n{}", self.idp.log());
            eprintln!("--- daemon log ---\n{}", self.env.run(&["daemon", "logs"]).stdout);
        }
    }
}

fn setup(name: &str, flow: &str, extra: Value, options: Options) -> Setup {
    let idp = Idp::start(options);
    let mut env = Env::new().set("AUTHSOME_DAEMON_PORT", &free_port().to_string());
    for (key, value) in idp.env() {
        env = env.set(key, &value);
    }
    let file = env.cwd.path().join(format!("{name}.json"));
    std::fs::write(&file, serde_json::to_string_pretty(&idp.provider(name, flow, extra)).unwrap()).unwrap();
    env.run(&["register", file.to_str().unwrap(), "--yes"]).ok();
    Setup { env, idp }
}

/// A running `authsome login …` whose stderr is read line by line.
struct Login {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Login {
    fn spawn(env: &Env, args: &[&str], stdin: Option<&str>) -> Self {
        let mut cmd = env.command(args);
        cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        if let Some(input) = stdin {
            child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        }
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Self { child, lines, seen: Vec::new() }
    }

    /// `login idp` with the static client, its secret given on stdin.
    fn with_client_secret(env: &Env, secret: &str) -> Self {
        Self::spawn(
            env,
            &["login", "idp", "--no-browser", "--client-id", CLIENT_ID, "--client-secret-stdin"],
            Some(secret),
        )
    }

    /// The first stderr line containing `needle`.
    fn line_with(&mut self, needle: &str) -> String {
        if let Some(line) = self.seen.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("no line with {needle:?}; saw {:?}", self.seen));
            self.seen.push(line.clone());
            if line.contains(needle) {
                return line;
            }
        }
    }

    fn url(&mut self) -> String {
        self.line_with("http://127.0.0.1:").trim().to_string()
    }

    fn finish(mut self) -> Run {
        let status = self.child.wait().unwrap();
        let mut stdout = String::new();
        std::io::Read::read_to_string(&mut self.child.stdout.take().unwrap(), &mut stdout).unwrap();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
            self.seen.push(line);
        }
        Run { code: status.code().unwrap_or(-1), stdout, stderr: self.seen.join("\n") }
    }
}

fn export(env: &Env, provider: &str) -> Value {
    env.run(&["export", provider, "--format", "json"]).ok().json()
}

fn connection(env: &Env, provider: &str) -> Value {
    let list = env.run(&["list", "--json"]).ok().json();
    let entry = list["custom"].as_array().unwrap().iter().find(|p| p["name"] == provider).cloned().unwrap();
    entry["connections"].as_array().unwrap().first().cloned().unwrap_or(Value::Null)
}

/// Log in through the browser with the static client (secret on stdin).
fn browser_login(s: &Setup, name: &str, extra_args: &[&str]) -> Run {
    let mut args = vec!["login", name, "--no-browser", "--client-id", CLIENT_ID, "--client-secret-stdin"];
    args.extend_from_slice(extra_args);
    let mut login = Login::spawn(&s.env, &args, Some(CLIENT_SECRET));
    let url = login.url();
    let page = rt().block_on(s.idp.browser().authorize(&url));
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Logged in"), "{}", page.body);
    login.finish()
}

#[test]
fn code_pkce_login_stores_the_granted_token() {
    let s = setup("idp", "pkce", json!({}), Options::default());
    let run = browser_login(&s, "idp", &["--scopes", "openid,offline_access,profile,made.up.scope", "--json"]).ok();
    assert!(!run.all().contains(CLIENT_SECRET));
    let doc = run.json();
    assert_eq!(doc["status"], "completed");
    assert_eq!(doc["provider"], "idp");
    assert_eq!(doc["connection"], "default");
    assert_eq!(doc["record_status"], "connected");

    // The granted scopes are stored: the unknown scope was dropped by the server.
    let conn = connection(&s.env, "idp");
    assert_eq!(conn["status"], "connected");
    let scopes: Vec<&str> = conn["scopes"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(scopes.contains(&"openid") && scopes.contains(&"offline_access"), "{scopes:?}");
    assert!(!scopes.contains(&"made.up.scope"), "{scopes:?}");

    let tokens = export(&s.env, "idp");
    let access = tokens["IDP_TOKEN"].as_str().unwrap().to_string();
    assert!(tokens["IDP_REFRESH"].is_string());
    assert!(rt().block_on(s.idp.active(&access)), "the stored token works at the provider");

    let log = s.env.run(&["log", "--json"]).ok().json();
    let logins: Vec<&Value> = log.as_array().unwrap().iter().filter(|e| e["event"] == "login").collect();
    assert!(
        logins.iter().any(|e| e["status"] == "success" && e["flow"] == "pkce" && e["provider"] == "idp"),
        "{logins:?}"
    );
    assert!(!log.to_string().contains(&access));

    // Already connected: no second browser trip.
    let again = s.env.run(&["login", "idp", "--no-browser"]).ok();
    assert!(again.stderr.contains("Already logged in"), "{}", again.stderr);
}

#[test]
fn browser_form_collects_the_client_then_logs_in() {
    let s = setup("idp", "pkce", json!({}), Options::default());
    let run = s.env.run(&["login", "idp", "--no-wait", "--no-browser", "--json"]).ok();
    let doc = run.json();
    assert_eq!(doc["status"], "started");
    assert_eq!(doc["record_status"], "waiting_for_user");
    let url = doc["url"].as_str().unwrap().to_string();

    let browser = s.idp.browser();
    rt().block_on(async {
        let form = browser.get(&url).await;
        assert!(form.body.contains("name=\"client_id\""), "{}", form.body);
        assert!(form.body.contains("name=\"csrf\""));
        let page = browser.submit(&form, &[("client_id", CLIENT_ID), ("client_secret", CLIENT_SECRET)]).await;
        let page = if page.body.contains("Logged in") { page } else { browser.authorize(&page.url).await };
        assert!(page.body.contains("Logged in"), "{}", page.body);
    });
    assert!(eventually(Duration::from_secs(10), || connection(&s.env, "idp")["status"] == "connected"));
}

#[test]
fn device_flow_with_slow_down() {
    let s = setup("idp", "device_code", json!({}), Options { slow_down: true, ..Options::default() });
    let mut login = Login::with_client_secret(&s.env, CLIENT_SECRET);
    let code_line = login.line_with("one-time code:");
    let code = code_line.rsplit(' ').next().unwrap().to_string();
    let open_line = login.line_with("Then open ");
    let uri = open_line.trim_start_matches("Then open ").trim_end_matches(" and enter it.").to_string();
    assert!(uri.starts_with("https://idp.example.test/device"), "{uri}");
    rt().block_on(s.idp.browser().approve_device(&uri, &code));
    let run = login.finish().ok();
    assert!(run.stderr.contains("Logged in to"), "{}", run.stderr);
    assert_eq!(connection(&s.env, "idp")["status"], "connected");
    assert_eq!(s.idp.count("slow_down"), 1, "the server asked to slow down once");
    assert_eq!(s.idp.count_grant("urn:ietf:params:oauth:grant-type:device_code"), 1);
    let access = export(&s.env, "idp")["IDP_TOKEN"].as_str().unwrap().to_string();
    assert!(rt().block_on(s.idp.active(&access)));
}

#[test]
fn dynamic_registration_discovers_and_registers_once() {
    // No registration_endpoint: found by discovery. Public client (PKCE, no secret).
    let s = setup("dcr", "dcr_pkce", json!({"token_auth_method": "none"}), Options::default());
    for round in 0..2 {
        let mut args = vec!["login", "dcr", "--no-browser"];
        if round == 1 {
            args.push("--force");
        }
        let mut login = Login::spawn(&s.env, &args, None);
        let url = login.url();
        let page = rt().block_on(s.idp.browser().authorize(&url));
        assert!(page.body.contains("Logged in"), "{}", page.body);
        login.finish().ok();
    }
    assert_eq!(s.idp.count("registration"), 1, "one client for two logins: {:?}", s.idp.events());
    assert_eq!(connection(&s.env, "dcr")["status"], "connected");
    let access = export(&s.env, "dcr")["DCR_TOKEN"].as_str().unwrap().to_string();
    assert!(rt().block_on(s.idp.active(&access)));
}

/// Reads the token through the library (`AuthService::headers`) in a child process with the
/// test's environment; see `library_probe`.
fn library_token(env: &Env) -> String {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "library_probe", "--ignored", "--nocapture", "--test-threads=1"]);
    let probe = env.command(&[]);
    for (k, v) in probe.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .split_whitespace()
        .find_map(|w| w.strip_prefix("TOKEN="))
        .unwrap_or_else(|| panic!("library probe failed: {stdout}{}", String::from_utf8_lossy(&out.stderr)))
        .to_string()
}

#[test]
#[ignore = "run by library_token in a child process"]
fn library_probe() {
    let service = authsome::AuthService::open(None).unwrap();
    let headers = service.headers("idp", None).unwrap();
    use secrecy::ExposeSecret;
    let value = headers[0].1.expose_secret().to_string();
    println!("TOKEN={}", value.trim_start_matches("Bearer "));
}

#[test]
fn refresh_near_expiry_rotates_for_export_and_the_library() {
    let s = setup("idp", "pkce", json!({}), Options { access_ttl: 8, ..Options::default() });
    browser_login(&s, "idp", &[]).ok();
    let first = export(&s.env, "idp");
    // Fresh (margin 4 s of 8): the same token, no request.
    assert_eq!(export(&s.env, "idp"), first);
    assert_eq!(s.idp.count_grant("refresh_token"), 0);

    std::thread::sleep(Duration::from_millis(4_500));
    let second = export(&s.env, "idp");
    assert_ne!(second["IDP_TOKEN"], first["IDP_TOKEN"], "refreshed near expiry");
    assert_ne!(second["IDP_REFRESH"], first["IDP_REFRESH"], "the rotated refresh token is stored");
    assert_eq!(s.idp.count_grant("refresh_token"), 1);
    assert!(rt().block_on(s.idp.active(second["IDP_TOKEN"].as_str().unwrap())));

    std::thread::sleep(Duration::from_millis(4_500));
    let via_library = library_token(&s.env);
    assert_ne!(via_library, second["IDP_TOKEN"].as_str().unwrap());
    assert_eq!(s.idp.count_grant("refresh_token"), 2);
    assert!(rt().block_on(s.idp.active(&via_library)));
    assert_eq!(export(&s.env, "idp")["IDP_TOKEN"], via_library.as_str());
}

#[test]
fn ten_processes_refresh_one_rotating_token() {
    let s = setup("idp", "pkce", json!({}), Options { access_ttl: 12, ..Options::default() });
    browser_login(&s, "idp", &[]).ok();
    let before = export(&s.env, "idp");
    std::thread::sleep(Duration::from_millis(6_500));
    let children: Vec<_> = (0..10)
        .map(|_| {
            s.env
                .command(&["export", "idp", "--format", "json"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut tokens = Vec::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        tokens.push(doc["IDP_TOKEN"].as_str().unwrap().to_string());
    }
    assert_eq!(s.idp.count_grant("refresh_token"), 1, "one refresh for ten processes: {:?}", s.idp.events());
    assert_eq!(s.idp.count("grant_error"), 0, "no refresh token was presented twice");
    for token in &tokens {
        assert_ne!(token, before["IDP_TOKEN"].as_str().unwrap());
        assert!(rt().block_on(s.idp.active(token)), "every process ends with a working token");
    }
    assert_eq!(connection(&s.env, "idp")["status"], "connected");
}

#[test]
fn refresh_failure_keeps_the_token_until_expiry_then_marks_expired() {
    let s = setup("idp", "pkce", json!({}), Options { access_ttl: 8, ..Options::default() });
    browser_login(&s, "idp", &[]).ok();
    let first = export(&s.env, "idp");
    // The user revokes access at the provider: the refresh token is dead.
    rt().block_on(s.idp.revoke(first["IDP_REFRESH"].as_str().unwrap()));

    std::thread::sleep(Duration::from_millis(4_500));
    // Due but not expired: the old token comes back and the error is recorded.
    assert_eq!(export(&s.env, "idp")["IDP_TOKEN"], first["IDP_TOKEN"]);
    let record = s.env.run(&["get", "idp", "--json"]).ok().json();
    assert!(record["metadata"]["last_refresh_error"].as_str().unwrap().contains("invalid_grant"), "{record}");

    std::thread::sleep(Duration::from_millis(4_000));
    let failed = s.env.run(&["export", "idp", "--format", "json"]).fails(6);
    assert!(failed.stderr.contains("could not be refreshed"), "{}", failed.stderr);
    assert!(failed.stderr.contains("invalid_grant"), "the provider's error: {}", failed.stderr);
    assert!(failed.stderr.contains("hint: log in again with `authsome login idp --connection default --force`"));
    assert_eq!(connection(&s.env, "idp")["status"], "expired");
}

#[test]
fn a_forged_state_is_rejected_and_nothing_is_written() {
    let s = setup("idp", "pkce", json!({}), Options::default());
    let mut login = Login::with_client_secret(&s.env, CLIENT_SECRET);
    let url = login.url();
    let browser = s.idp.browser();
    let (forged, real) = rt().block_on(async {
        let to_provider = browser.get(&url).await;
        let callback_base = url.split("/auth/sessions/").next().unwrap().to_string();
        let forged = browser
            .get(&format!(
                "{callback_base}/auth/callback/oauth?code=stolen&state=not-the-state&iss=https%3A%2F%2Fidp.example.test"
            ))
            .await;
        // The real login still completes afterwards.
        let real = browser.authorize(&to_provider.url).await;
        (forged, real)
    });
    assert_eq!(forged.status, 400);
    assert!(forged.body.contains("Nothing was stored"), "{}", forged.body);
    assert!(real.body.contains("Logged in"), "{}", real.body);
    login.finish().ok();
    assert_eq!(s.idp.count_grant("authorization_code"), 1);
}

#[test]
fn an_answer_naming_another_issuer_is_rejected_and_nothing_is_written() {
    // RFC 9207: oidc-provider sends `iss`; a tampered one (a mix-up attack) must not be used.
    let s = setup("idp", "pkce", json!({}), Options::default());
    let mut login = Login::with_client_secret(&s.env, CLIENT_SECRET);
    let url = login.url();
    let browser = s.idp.browser().rewriting_callback(|url| {
        let mut parsed = url::Url::parse(url).unwrap();
        let pairs: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
        assert!(pairs.iter().any(|(k, _)| k == "iss"), "oidc-provider sends iss: {url}");
        let mut query = parsed.query_pairs_mut();
        query.clear();
        for (k, v) in pairs {
            query.append_pair(&k, if k == "iss" { "https://attacker.example.test" } else { &v });
        }
        drop(query);
        parsed.to_string()
    });
    let page = rt().block_on(browser.authorize(&url));
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.body.contains("another authorization server"), "{}", page.body);
    let run = login.finish();
    assert_ne!(run.code, 0, "{}", run.all());
    assert!(connection(&s.env, "idp").is_null(), "nothing was written");
    assert_eq!(s.idp.count_grant("authorization_code"), 0, "the code was never exchanged");
}

#[test]
fn a_forged_state_alone_stores_nothing() {
    let s = setup("idp", "pkce", json!({}), Options::default());
    let doc = s
        .env
        .run_stdin(
            &["login", "idp", "--no-wait", "--no-browser", "--json", "--client-id", CLIENT_ID, "--client-secret-stdin"],
            CLIENT_SECRET,
        )
        .ok()
        .json();
    let base = doc["url"].as_str().unwrap().split("/auth/sessions/").next().unwrap().to_string();
    let page = rt().block_on(s.idp.browser().get(&format!("{base}/auth/callback/oauth?code=x&state=y")));
    assert_eq!(page.status, 400);
    assert!(connection(&s.env, "idp").is_null(), "nothing was written");
    assert_eq!(s.idp.count("token_request"), 0, "no code was exchanged");
}

#[test]
fn a_token_endpoint_error_is_surfaced_with_the_providers_words() {
    let s = setup("idp", "pkce", json!({}), Options::default());
    let mut login = Login::with_client_secret(&s.env, "the wrong secret");
    let url = login.url();
    let page = rt().block_on(s.idp.browser().authorize(&url));
    assert_eq!(page.status, 400);
    assert!(page.body.contains("invalid_client"), "{}", page.body);
    let run = login.finish().fails(4);
    assert!(run.stderr.contains("refused the token exchange"), "{}", run.stderr);
    assert!(run.stderr.contains("invalid_client: client authentication failed"), "{}", run.stderr);
    assert!(run.stderr.contains("hint:"), "{}", run.stderr);
    assert!(connection(&s.env, "idp").is_null());
    let log = s.env.run(&["log", "--json"]).ok().json();
    assert!(log.as_array().unwrap().iter().any(|e| e["event"] == "login" && e["status"] == "failure"));
}

#[test]
fn logout_revokes_at_the_provider_and_deletes_even_when_revocation_fails() {
    let mut s = setup("idp", "pkce", json!({}), Options::default());
    browser_login(&s, "idp", &[]).ok();
    let tokens = export(&s.env, "idp");
    let access = tokens["IDP_TOKEN"].as_str().unwrap();
    let refresh = tokens["IDP_REFRESH"].as_str().unwrap();
    assert!(rt().block_on(s.idp.active(access)));
    let out = s.env.run(&["logout", "idp", "--json"]).ok().json();
    assert_eq!(out["revocation"], "revoked");
    assert!(!rt().block_on(s.idp.active(access)), "the access token is dead at the provider");
    assert!(!rt().block_on(s.idp.active(refresh)), "and the refresh token");
    assert!(connection(&s.env, "idp").is_null());

    // The provider is gone: the local record is deleted anyway, and both outcomes audited.
    browser_login(&s, "idp", &["--force"]).ok();
    s.idp.stop();
    let env = &s.env;
    let run = env.run(&["logout", "idp"]).ok();
    assert!(run.stderr.contains("could not revoke"), "{}", run.stderr);
    let list = env.run(&["list", "--json"]).ok().json();
    let entry = list["custom"].as_array().unwrap().iter().find(|p| p["name"] == "idp").unwrap();
    assert_eq!(entry["connections"], json!([]));
    let log = env.run(&["log", "--json"]).ok().json();
    let outcomes: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "logout")
        .map(|e| e["revocation"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, vec!["revoked", "failed"]);
}

/// `authsome run` refreshes on the wire: a token inside its margin is refreshed before it is
/// injected, and a 401 from the API triggers one forced refresh and one retry.
#[test]
fn run_refreshes_before_injecting_and_once_after_a_401() {
    use authsome_testkit::{Echo, Pki};
    let s = setup("idp", "pkce", json!({}), Options { access_ttl: 8, ..Options::default() });
    browser_login(&s, "idp", &[]).ok();
    let first = export(&s.env, "idp")["IDP_TOKEN"].as_str().unwrap().to_string();

    let pki = Pki::new(&["api.example.test"]);
    let echo = Echo::https(&pki);
    let roots = s.env.cwd.path().join("roots.pem");
    let idp_ca = std::fs::read_to_string(&s.idp.ca).unwrap();
    std::fs::write(&roots, format!("{idp_ca}\n{}", pki.ca_pem)).unwrap();
    let idp_connect = s.idp.env().into_iter().find(|(k, _)| *k == "AUTHSOME_CONNECT_TO").unwrap().1;
    let connect = format!("{idp_connect},api.example.test:443:127.0.0.1:{}", echo.port());
    let run = |path: &str| -> Value {
        let out = s
            .env
            .run_with(
                &["run", "--", "curl", "-sS", &format!("https://api.example.test{path}")],
                None,
                &[("AUTHSOME_EXTRA_ROOTS", roots.to_str().unwrap()), ("AUTHSOME_CONNECT_TO", &connect)],
            )
            .ok();
        serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {} {}", out.stdout, out.stderr))
    };
    let bearer = |echo: &Value| -> String {
        common::seen(echo, "authorization")
            .first()
            .map(|v| v.trim_start_matches("Bearer ").to_string())
            .unwrap_or_default()
    };

    assert_eq!(bearer(&run("/fresh")), first, "a fresh token is injected as is");
    assert_eq!(s.idp.count_grant("refresh_token"), 0);

    std::thread::sleep(Duration::from_millis(4_500));
    let refreshed = bearer(&run("/due"));
    assert_ne!(refreshed, first, "refreshed before injection");
    assert_eq!(s.idp.count_grant("refresh_token"), 1);
    assert!(rt().block_on(s.idp.active(&refreshed)));

    // The API says 401 (the echo answers /status/401 whatever the token): one forced refresh,
    // one retry, and the 401 is what the client finally gets.
    let out = s
        .env
        .run_with(
            &[
                "run",
                "--",
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "https://api.example.test/status/401",
            ],
            None,
            &[("AUTHSOME_EXTRA_ROOTS", roots.to_str().unwrap()), ("AUTHSOME_CONNECT_TO", &connect)],
        )
        .ok();
    assert_eq!(out.stdout.trim(), "401");
    assert_eq!(s.idp.count_grant("refresh_token"), 2, "exactly one forced refresh");
    let log = s.env.run(&["log", "--json", "-n", "1"]).ok().json();
    assert_eq!(log[0]["hosts"]["api.example.test"]["refreshed_after_401"], 1, "{log}");
}

/// Log in connection `connection` of `idp` by dynamic registration (a confidential client of
/// its own, `client_secret_basic`), through the browser.
fn dcr_login(s: &Setup, connection: &str) {
    let args = ["login", "idp", "--no-browser", "--connection", connection, "--flow", "dcr_pkce"];
    let mut login = Login::spawn(&s.env, &args, None);
    let url = login.url();
    let page = rt().block_on(s.idp.browser().authorize(&url));
    assert!(page.body.contains("Logged in"), "{}", page.body);
    login.finish().ok();
}

fn export_connection(env: &Env, connection: &str) -> Value {
    env.run(&["export", "idp", "--connection", connection, "--format", "json"]).ok().json()
}

/// Issue #11: the OAuth client is per connection. `a` is obtained with the static client,
/// then `b` by dynamic registration (which replaces the provider's stored client). Refreshing
/// and revoking `a` must still use the static client, `b` its registered one: the server
/// refuses a token presented by another client.
#[test]
fn each_connection_refreshes_and_revokes_with_the_client_that_obtained_it() {
    let s = setup("idp", "pkce", json!({}), Options { access_ttl: 8, ..Options::default() });
    browser_login(&s, "idp", &["--connection", "a"]).ok();
    dcr_login(&s, "b");
    assert_eq!(s.idp.count("registration"), 1);
    let (a1, b1) = (export_connection(&s.env, "a"), export_connection(&s.env, "b"));

    // Inside the margin (4 s of 8): each refresh goes out with its own client and succeeds.
    std::thread::sleep(Duration::from_millis(4_500));
    let (a2, b2) = (export_connection(&s.env, "a"), export_connection(&s.env, "b"));
    assert_ne!(a2["IDP_TOKEN"], a1["IDP_TOKEN"], "a refreshed: {:?}", s.idp.events());
    assert_ne!(b2["IDP_TOKEN"], b1["IDP_TOKEN"], "b refreshed: {:?}", s.idp.events());
    assert_eq!(s.idp.count_grant("refresh_token"), 2);
    assert_eq!(s.idp.count("grant_error"), 0, "{:?}", s.idp.events());
    let a_access = a2["IDP_TOKEN"].as_str().unwrap().to_string();
    assert!(rt().block_on(s.idp.active(&a_access)));

    // Revocation: each with its own client.
    let out = s.env.run(&["logout", "idp", "--connection", "a", "--json"]).ok();
    assert!(!out.all().contains(CLIENT_SECRET));
    assert_eq!(out.json()["revocation"], "revoked", "{}", out.all());
    assert!(!rt().block_on(s.idp.active(&a_access)), "a's token is dead at the provider");
    let out = s.env.run(&["logout", "idp", "--connection", "b", "--json"]).ok().json();
    assert_eq!(out["revocation"], "revoked");
}

/// `client list` shows the stored client and each connection's (ids and origin, no secret);
/// `client forget` drops the stored one only: connections keep working and refreshing, and the
/// next login asks for a client again instead of silently reusing the old id.
#[test]
fn client_list_and_forget_keep_connections() {
    let s = setup("idp", "pkce", json!({}), Options { access_ttl: 8, ..Options::default() });
    browser_login(&s, "idp", &["--connection", "a"]).ok();
    dcr_login(&s, "b");
    let run = s.env.run(&["client", "list", "--json"]).ok();
    assert!(!run.all().contains(CLIENT_SECRET), "{}", run.all());
    let doc = run.json();
    let row = doc["clients"].as_array().unwrap().iter().find(|r| r["provider"] == "idp").cloned().unwrap();
    assert_eq!(row["stored"]["source"], "dcr", "{row}");
    let registered = row["stored"]["client_id"].as_str().unwrap().to_string();
    assert_ne!(registered, CLIENT_ID);
    assert_eq!(
        row["connections"],
        json!([
            {"connection": "a", "client_id": CLIENT_ID, "source": "static"},
            {"connection": "b", "client_id": registered, "source": "dcr"},
        ])
    );
    let text = s.env.run(&["client", "list"]).ok();
    assert!(text.stdout.contains(CLIENT_ID) && text.stdout.contains("(dcr)"), "{}", text.stdout);

    let forgot = s.env.run(&["client", "forget", "idp", "--json"]).ok().json();
    assert_eq!(forgot["client_id"], registered.as_str());
    let row = s.env.run(&["client", "list", "--json"]).ok().json()["clients"][0].clone();
    assert!(row["stored"].is_null(), "{row}");
    assert_eq!(row["connections"].as_array().unwrap().len(), 2, "connections are kept");
    let again = s.env.run(&["client", "forget", "idp"]);
    assert_eq!(again.code, 3, "{}", again.all());

    // The connections still refresh, each with its own client.
    let a1 = export_connection(&s.env, "a");
    std::thread::sleep(Duration::from_millis(4_500));
    assert_ne!(export_connection(&s.env, "a")["IDP_TOKEN"], a1["IDP_TOKEN"]);
    assert_eq!(s.idp.count("grant_error"), 0, "{:?}", s.idp.events());

    // The next login has no client to reuse: the browser form asks for one.
    let doc = s.env.run(&["login", "idp", "--connection", "c", "--no-wait", "--no-browser", "--json"]).ok().json();
    let url = doc["url"].as_str().unwrap().to_string();
    let form = rt().block_on(s.idp.browser().get(&url));
    assert!(form.body.contains("name=\"client_id\""), "{}", form.body);
}

/// Issue #11: an unreachable provider is a network failure (exit 1 with the cause), not
/// "authentication failed" (4); the failed login is audited.
#[test]
fn an_unreachable_provider_exits_1_with_the_cause_and_is_audited() {
    let mut s = setup("idp", "device_code", json!({}), Options::default());
    s.idp.stop();
    let run = Login::with_client_secret(&s.env, CLIENT_SECRET).finish();
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stderr.contains("device authorization request failed"), "{}", run.stderr);
    assert!(run.stderr.contains("check the network"), "{}", run.stderr);
    assert!(!run.all().contains(CLIENT_SECRET));
    let log = s.env.run(&["log", "--json"]).ok().json();
    assert!(log.as_array().unwrap().iter().any(|e| e["event"] == "login" && e["status"] == "failure"), "{log}");
}

/// Issue #11: a device login without a client is a missing credential (exit 5) with a hint
/// naming `--client-id`, not "authentication failed"; nothing reached the provider.
#[test]
fn a_device_login_without_a_client_exits_5_with_a_hint() {
    let s = setup("idp", "device_code", json!({}), Options::default());
    let run = s.env.run(&["login", "idp", "--no-browser"]);
    assert_eq!(run.code, 5, "{}", run.all());
    assert!(run.stderr.contains("--client-id"), "{}", run.stderr);
    assert_eq!(s.idp.count("token_request"), 0);
}

/// Issue #11: dynamic registration and its metadata discovery that get no answer (the
/// provider's port is closed) exit 1 with the cause and the network hint, not 4
/// "authentication failed"; the failure is audited and nothing is stored.
#[test]
fn dcr_and_discovery_without_an_answer_exit_1_with_the_cause() {
    // No registration_endpoint: the endpoint has to be discovered first.
    let mut s = setup("dcr", "dcr_pkce", json!({"token_auth_method": "none"}), Options::default());
    s.idp.stop();
    let discovery = s.env.run(&["login", "dcr", "--no-browser"]);
    assert_eq!(discovery.code, 1, "{}", discovery.all());
    assert!(discovery.stderr.contains("check the network"), "{}", discovery.stderr);
    assert!(discovery.stderr.contains("/.well-known/oauth-authorization-server"), "{}", discovery.stderr);

    // A named registration endpoint that does not answer.
    let mut s2 = setup(
        "dcr",
        "dcr_pkce",
        json!({"token_auth_method": "none", "registration_endpoint": format!("{}/reg", idp::ISSUER)}),
        Options::default(),
    );
    s2.idp.stop();
    let registration = s2.env.run(&["login", "dcr", "--no-browser"]);
    assert_eq!(registration.code, 1, "{}", registration.all());
    assert!(registration.stderr.contains("client registration failed"), "{}", registration.stderr);
    assert!(registration.stderr.contains("check the network"), "{}", registration.stderr);
    let clients = s2.env.run(&["client", "list", "--json"]).ok().json();
    assert_eq!(clients["clients"], json!([]), "nothing stored: {clients}");

    insta::assert_snapshot!(
        "dcr_unreachable",
        format!(
            "$ authsome login dcr   (discovery, provider down)\n{}\n$ authsome login dcr   (registration endpoint down)\n{}",
            redact(&discovery.stderr, &s.env),
            redact(&registration.stderr, &s2.env)
        )
    );
}

/// Issue #11: a client id from a failed login is not reused in silence. The next login without
/// `--client-id` says which stored client it uses and how to forget it; after `client forget`
/// the login asks for a client again.
#[test]
fn a_client_id_from_a_failed_login_is_announced_by_the_next_login() {
    let s = setup("idp", "device_code", json!({}), Options::default());
    let first = Login::spawn(
        &s.env,
        &["login", "idp", "--no-browser", "--client-id", "mistyped-client", "--client-secret-stdin"],
        Some("secret-of-a-mistyped-client"),
    )
    .finish();
    assert_ne!(first.code, 0, "{}", first.all());
    let second = s.env.run(&["login", "idp", "--no-browser"]);
    assert_ne!(second.code, 0, "{}", second.all());
    assert!(second.stderr.contains("mistyped-client"), "the reused id is named: {}", second.stderr);
    assert!(second.stderr.contains("authsome client forget idp"), "{}", second.stderr);
    assert!(!second.all().contains("secret-of-a-mistyped-client"), "never the secret");
    s.env.run(&["client", "forget", "idp"]).ok();
    let third = s.env.run(&["login", "idp", "--no-browser"]);
    assert_eq!(third.code, 5, "no client left: {}", third.all());
    assert!(!third.stderr.contains("mistyped-client"), "{}", third.stderr);
    insta::assert_snapshot!("reused_client", redact(&second.stderr, &s.env));
}
