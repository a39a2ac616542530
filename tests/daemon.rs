//! End-to-end: the daemon's guards (bearer token, CSRF, Host and Origin), its identity (a
//! daemon of another home is never trusted), `daemon status|start|stop|logs`, and the
//! browser form for an API key when `login` has no terminal.

mod common;
#[path = "common/idp.rs"]
mod idp;

use common::Env;
use idp::{free_port, rt};
use serde_json::{Value, json};

const OPENAI_KEY: &str = "sk-TESTKEY0000000000000000001";

/// A home with its daemon started on a free port; stopped on drop.
struct Daemon {
    env: Env,
    port: u16,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.env.run(&["daemon", "stop"]);
    }
}

impl Daemon {
    fn start() -> Self {
        let port = free_port();
        let env = Env::new().set("AUTHSOME_DAEMON_PORT", &port.to_string());
        env.run(&["daemon", "start"]).ok();
        Self { env, port }
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn token(&self) -> String {
        std::fs::read_to_string(self.env.home().join("daemon/daemon.token")).unwrap().trim().to_string()
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// A browser: its own cookie jar, follows redirects.
fn browser() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().cookie_store(true).build().unwrap()
}

#[test]
fn status_start_stop_and_private_files() {
    let port = free_port();
    let env = Env::new().set("AUTHSOME_DAEMON_PORT", &port.to_string());
    let status = env.run(&["daemon", "status"]).ok().json();
    assert_eq!(status["running"], false);
    env.run(&["daemon", "start"]).ok();
    // Status is JSON even without --json, in upstream's shape.
    let status = env.run(&["daemon", "status"]).ok().json();
    assert_eq!(status["running"], true);
    assert_eq!(status["health"]["status"], "ok");
    assert_eq!(status["health"]["mode"], "local");
    assert_eq!(status["ready"]["status"], "ready");
    assert!(status["pid_file"].as_str().unwrap().ends_with("daemon/daemon.pid"));
    assert!(status["log_file"].as_str().unwrap().ends_with("daemon/daemon.log"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(env.home().join("daemon/daemon.token")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let info: Value = serde_json::from_slice(&std::fs::read(env.home().join("daemon/daemon.json")).unwrap()).unwrap();
    assert_eq!(info["port"], port);
    assert_eq!(info["home"], env.home().display().to_string());

    // Starting again finds the running one.
    let again = env.run(&["daemon", "start"]).ok();
    assert!(again.stderr.contains(&format!("pid {}", info["pid"])), "{}", again.stderr);
    assert!(env.run(&["daemon", "logs"]).ok().stdout.contains("listening on"));
    env.run(&["daemon", "stop"]).ok();
    assert_eq!(env.run(&["daemon", "status"]).ok().json()["running"], false);
    assert!(!env.home().join("daemon/daemon.json").exists());
}

#[test]
fn the_api_needs_the_bearer_token() {
    let d = Daemon::start();
    let (without, wrong, with, health) = rt().block_on(async {
        let c = http();
        let body = json!({"provider": "openai", "flow": "api_key"});
        let without = c.post(format!("{}/auth/sessions", d.base())).json(&body).send().await.unwrap();
        let wrong = c.get(format!("{}/ready", d.base())).bearer_auth("not-the-token").send().await.unwrap();
        let with = c.get(format!("{}/ready", d.base())).bearer_auth(d.token()).send().await.unwrap();
        let health: Value = c.get(format!("{}/health", d.base())).send().await.unwrap().json().await.unwrap();
        (without.status().as_u16(), wrong.status().as_u16(), with.status().as_u16(), health)
    });
    assert_eq!(without, 401);
    assert_eq!(wrong, 401);
    assert_eq!(with, 200);
    // Health is public but holds no secret: status, version, pid and the instance id.
    assert_eq!(health["status"], "ok");
    assert!(!health.to_string().contains(&d.token()));
}

#[test]
fn a_foreign_host_or_origin_is_refused() {
    let d = Daemon::start();
    let (rebinding, cross_origin, own) = rt().block_on(async {
        let c = http();
        let rebinding = c
            .get(format!("{}/health", d.base()))
            .header("host", format!("evil.example:{}", d.port))
            .send()
            .await
            .unwrap();
        let cross_origin = c
            .get(format!("{}/ready", d.base()))
            .bearer_auth(d.token())
            .header("origin", "https://evil.example")
            .send()
            .await
            .unwrap();
        let own =
            c.get(format!("{}/health", d.base())).header("host", format!("localhost:{}", d.port)).send().await.unwrap();
        (rebinding.status().as_u16(), cross_origin.status().as_u16(), own.status().as_u16())
    });
    assert_eq!(rebinding, 421, "DNS rebinding: a foreign Host is refused");
    assert_eq!(cross_origin, 403);
    assert_eq!(own, 200);
}

#[test]
fn the_api_key_form_needs_its_csrf_token() {
    let d = Daemon::start();
    let c = http();
    let session: Value = rt().block_on(async {
        let response = c
            .post(format!("{}/auth/sessions", d.base()))
            .bearer_auth(d.token())
            .json(&json!({"provider": "openai", "connection": "form", "flow": "api_key"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 201);
        response.json().await.unwrap()
    });
    assert_eq!(session["status"], "waiting_for_user");
    let opened = session["next_action"]["url"].as_str().unwrap().to_string();
    let b = browser();
    let (page, no_csrf, bad_csrf, bad_key, good) = rt().block_on(async {
        let response = b.get(&opened).send().await.unwrap();
        let url = response.url().to_string();
        let page = response.text().await.unwrap();
        let (_, fields) = idp::parse_form(&page).unwrap();
        let csrf = fields.iter().find(|(n, _)| n == "csrf").unwrap().1.clone();
        let post = |form: Vec<(&'static str, String)>| {
            let c = b.clone();
            let url = url.clone();
            async move { c.post(&url).form(&form).send().await.unwrap() }
        };
        let no_csrf = post(vec![("api_key", OPENAI_KEY.into())]).await.status().as_u16();
        let bad_csrf = post(vec![("api_key", OPENAI_KEY.into()), ("csrf", "forged".into())]).await.status().as_u16();
        let bad_key = post(vec![("api_key", "not-a-key".into()), ("csrf", csrf.clone())]).await;
        let bad_key = (bad_key.status().as_u16(), bad_key.text().await.unwrap());
        let good = post(vec![("api_key", OPENAI_KEY.into()), ("csrf", csrf)]).await.status().as_u16();
        (page, no_csrf, bad_csrf, bad_key, good)
    });
    // The form shows the provider's key pattern and where to get a key.
    assert!(page.contains("pattern=\""), "{page}");
    assert!(page.contains("https://"), "{page}");
    assert_eq!(no_csrf, 403);
    assert_eq!(bad_csrf, 403);
    assert_eq!(bad_key.0, 400);
    assert!(!bad_key.1.contains("not-a-key"), "the rejected value is not echoed");
    assert_eq!(good, 200);
    let exported = d.env.run(&["export", "openai", "--connection", "form", "--format", "json"]).ok().json();
    assert_eq!(exported["OPENAI_API_KEY"], OPENAI_KEY);
    let log = d.env.run(&["log", "--json"]).ok().json();
    assert!(
        log.as_array()
            .unwrap()
            .iter()
            .any(|e| e["event"] == "login" && e["status"] == "success" && e["flow"] == "api_key")
    );
}

#[test]
fn login_without_a_terminal_falls_back_to_the_browser_form() {
    let port = free_port();
    let env = Env::new().set("AUTHSOME_DAEMON_PORT", &port.to_string());
    let doc = env.run(&["login", "openai", "--no-wait", "--no-browser", "--json"]).ok().json();
    assert_eq!(doc["status"], "started");
    assert_eq!(doc["record_status"], "waiting_for_user");
    let url = doc["url"].as_str().unwrap();
    assert!(url.starts_with(&format!("http://127.0.0.1:{port}/auth/sessions/sess_")), "{url}");
    let page = rt().block_on(async { browser().get(url).send().await.unwrap().text().await.unwrap() });
    assert!(page.contains("OpenAI API key"), "{page}");
    env.run(&["daemon", "stop"]).ok();
}

#[test]
fn a_daemon_of_another_home_is_never_trusted() {
    let a = Daemon::start();
    // Home B is configured for the same port: something answers, but not its daemon.
    let b = Env::new().set("AUTHSOME_DAEMON_PORT", &a.port.to_string());
    let status = b.run(&["daemon", "status"]).ok().json();
    assert_eq!(status["running"], false);
    assert!(status["note"].as_str().unwrap().contains("not this home's daemon"));
    let stop = b.run(&["daemon", "stop"]).ok();
    assert!(stop.stderr.contains("No daemon of this home"), "{}", stop.stderr);
    assert_eq!(a.env.run(&["daemon", "status"]).ok().json()["running"], true, "B's stop left A's daemon alone");
    let login = b.run(&["login", "openai", "--no-wait", "--no-browser"]).fails(9);
    assert!(login.stderr.contains("not this home's authsome daemon"), "{}", login.stderr);
    assert!(login.stderr.contains("AUTHSOME_DAEMON_PORT"), "{}", login.stderr);
    assert!(!b.home().join("daemon/daemon.token").exists());

    // B's stale daemon.json naming A's port (another instance) is not trusted either.
    std::fs::create_dir_all(b.home().join("daemon")).unwrap();
    let mut info: Value =
        serde_json::from_slice(&std::fs::read(a.env.home().join("daemon/daemon.json")).unwrap()).unwrap();
    info["instance"] = "someone-else".into();
    std::fs::write(b.home().join("daemon/daemon.json"), info.to_string()).unwrap();
    std::fs::write(b.home().join("daemon/daemon.token"), a.token()).unwrap();
    assert_eq!(b.run(&["daemon", "status"]).ok().json()["running"], false);
    b.run(&["login", "openai", "--no-wait", "--no-browser"]).fails(9);
}

/// A program squatting a port: answers every request with `body` and keeps what it was sent.
struct Squatter {
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Squatter {
    fn start(port: u16, body: String) -> Self {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                stream.set_read_timeout(Some(std::time::Duration::from_secs(2))).ok();
                let mut buf = [0u8; 16 * 1024];
                let n = stream.read(&mut buf).unwrap_or(0);
                log.lock().unwrap().push(String::from_utf8_lossy(&buf[..n]).into_owned());
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(reply.as_bytes());
            }
        });
        Self { seen }
    }

    fn requests(&self) -> String {
        self.seen.lock().unwrap().join("\n")
    }
}

#[test]
fn a_squatter_replaying_health_is_not_trusted() {
    let d = Daemon::start();
    let token = d.token();
    // Anyone on the machine may read the public /health.
    let public =
        rt().block_on(async { http().get(format!("{}/health", d.base())).send().await.unwrap().text().await.unwrap() });
    let info: Value = serde_json::from_slice(&std::fs::read(d.env.home().join("daemon/daemon.json")).unwrap()).unwrap();
    assert!(
        !public.contains(info["instance"].as_str().unwrap()),
        "the public /health must not reveal what the CLI trusts: {public}"
    );
    // The daemon dies without cleaning up (its files stay); a local program takes the port and
    // replays what /health showed (with the instance id the old /health used to reveal).
    let pid = info["pid"].to_string();
    assert!(std::process::Command::new("kill").args(["-KILL", &pid]).status().unwrap().success());
    idp::eventually(std::time::Duration::from_secs(5), || std::net::TcpListener::bind(("127.0.0.1", d.port)).is_ok());
    let mut replay: Value = serde_json::from_str(&public).unwrap();
    replay["instance"] = info["instance"].clone();
    let squatter = Squatter::start(d.port, replay.to_string());

    let status = d.env.run(&["daemon", "status"]).ok().json();
    assert_eq!(status["running"], false, "{status}");
    let login = d.env.run(&["login", "openai", "--no-wait", "--no-browser"]).fails(9);
    assert!(login.stderr.contains("not this home's authsome daemon"), "{}", login.stderr);
    let sent = squatter.requests();
    assert!(sent.contains("GET /health"), "the CLI asked: {sent}");
    assert!(!sent.contains(&token), "the token went to the squatter: {sent}");
    assert!(!sent.contains("/auth/sessions"), "a login went to the squatter: {sent}");
}

/// Start an API-key login session through the API; its document.
fn api_key_session(d: &Daemon, connection: &str) -> Value {
    rt().block_on(async {
        let response = http()
            .post(format!("{}/auth/sessions", d.base()))
            .bearer_auth(d.token())
            .json(&json!({"provider": "openai", "connection": connection, "flow": "api_key"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 201);
        response.json().await.unwrap()
    })
}

#[test]
fn a_login_url_is_bound_to_the_first_browser_that_opens_it() {
    let d = Daemon::start();
    let session = api_key_session(&d, "bound");
    let url = session["next_action"]["url"].as_str().unwrap().to_string();
    let id = session["id"].as_str().unwrap().to_string();
    let input = format!("{}/auth/sessions/{id}/input", d.base());
    let (first, second, direct, forged, good) = rt().block_on(async {
        // The user's browser opens the link first: it lands on the form, without the capability.
        let user = browser();
        let response = user.get(&url).send().await.unwrap();
        assert_eq!(response.url().as_str(), input, "the capability leaves the address bar");
        let first = (response.status().as_u16(), response.text().await.unwrap());
        // Another local user who read the URL (from the opener's argv) gets nothing useful.
        let other = browser();
        let response = other.get(&url).send().await.unwrap();
        let second = (response.status().as_u16(), response.text().await.unwrap());
        let response = other.get(&input).send().await.unwrap();
        let direct = (response.status().as_u16(), response.text().await.unwrap());
        let (_, fields) = idp::parse_form(&first.1).unwrap();
        let csrf = fields.iter().find(|(n, _)| n == "csrf").unwrap().1.clone();
        let form = [("api_key", "sk-ATTACKER000000000000000001"), ("csrf", csrf.as_str())];
        let forged = other.post(&input).form(&form).send().await.unwrap().status().as_u16();
        let form = [("api_key", OPENAI_KEY), ("csrf", csrf.as_str())];
        let good = user.post(&input).form(&form).send().await.unwrap().status().as_u16();
        (first, second, direct, forged, good)
    });
    assert_eq!(first.0, 200);
    assert!(first.1.contains("OpenAI API key"), "{}", first.1);
    assert_eq!(second.0, 404, "{}", second.1);
    assert!(!second.1.contains("csrf"), "{}", second.1);
    assert_eq!(direct.0, 403, "{}", direct.1);
    assert!(!direct.1.contains("csrf"), "{}", direct.1);
    assert_eq!(forged, 403, "even with the CSRF token, another browser cannot submit");
    assert_eq!(good, 200);
    let exported = d.env.run(&["export", "openai", "--connection", "bound", "--format", "json"]).ok().json();
    assert_eq!(exported["OPENAI_API_KEY"], OPENAI_KEY);
}

#[test]
fn ui_opens_a_one_time_overview_without_secrets() {
    let port = free_port();
    let env = Env::new().set("AUTHSOME_DAEMON_PORT", &port.to_string());
    env.login("openai", "work", OPENAI_KEY);
    let out = env.run(&["ui", "--no-browser"]).ok();
    let url = out.stdout.trim().to_string();
    assert!(url.starts_with(&format!("http://127.0.0.1:{port}/ui/open/")), "{url}");
    let base = format!("http://127.0.0.1:{port}");
    let (first, second, direct, again) = rt().block_on(async {
        let user = browser();
        let response = user.get(&url).send().await.unwrap();
        let landed = response.url().to_string();
        let first = (response.status().as_u16(), landed, response.text().await.unwrap());
        let other = browser();
        let second = other.get(&url).send().await.unwrap().status().as_u16();
        let direct = other.get(format!("{base}/ui/")).send().await.unwrap().status().as_u16();
        let again = user.get(format!("{base}/ui/")).send().await.unwrap().status().as_u16();
        (first, second, direct, again)
    });
    assert_eq!(first.0, 200, "{}", first.2);
    assert_eq!(first.1, format!("{base}/ui/"), "the capability leaves the address bar");
    assert!(first.2.contains("openai") && first.2.contains("work"), "{}", first.2);
    assert!(first.2.contains("github"), "the providers one can log in to are listed: {}", first.2);
    assert!(!first.2.contains(OPENAI_KEY), "no secret on the page");
    assert_eq!(second, 404, "the link works once");
    assert_eq!(direct, 403, "the overview needs the first browser's cookie");
    assert_eq!(again, 200, "the first browser keeps it");
    let doc = env.run(&["ui", "--no-browser", "--json"]).ok().json();
    assert!(doc["url"].as_str().unwrap().contains("/ui/open/"), "{doc}");
    env.run(&["daemon", "stop"]).ok();
}

#[test]
fn daemon_restart_replaces_the_running_daemon() {
    let d = Daemon::start();
    let pid = |env: &Env| -> u64 {
        let info: Value =
            serde_json::from_slice(&std::fs::read(env.home().join("daemon/daemon.json")).unwrap()).unwrap();
        info["pid"].as_u64().unwrap()
    };
    let old = pid(&d.env);
    let doc = d.env.run(&["daemon", "restart", "--json"]).ok().json();
    assert_eq!(doc["stopped"], true, "{doc}");
    assert_eq!(doc["running"], true, "{doc}");
    assert_eq!(doc["url"], d.base(), "{doc}");
    let new = pid(&d.env);
    assert_ne!(new, old);
    assert_eq!(doc["pid"], new, "{doc}");
    assert!(
        idp::eventually(std::time::Duration::from_secs(5), || !std::path::Path::new(&format!("/proc/{old}")).exists()),
        "the old daemon is gone"
    );
    assert_eq!(d.env.run(&["daemon", "status"]).ok().json()["running"], true);
    // Restart with nothing running starts one.
    d.env.run(&["daemon", "stop"]).ok();
    let text = d.env.run(&["daemon", "restart"]).ok();
    assert!(text.stderr.contains("authsome daemon started at"), "{}", text.stderr);
    assert_eq!(d.env.run(&["daemon", "status"]).ok().json()["running"], true);
}

#[test]
fn a_busy_store_does_not_stall_the_daemon() {
    use std::io::{BufRead, Write};
    let d = Daemon::start();
    d.env.login("openai", "default", OPENAI_KEY);
    // Another process holds the store: every vault access waits on SQLite's busy timeout.
    let db = d.env.home().join("profiles/default/store.db");
    let mut locker = match std::process::Command::new("sqlite3")
        .arg(&db)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            eprintln!("SKIP a_busy_store_does_not_stall_the_daemon: no sqlite3 binary ({e})");
            return;
        }
    };
    let mut stdin = locker.stdin.take().unwrap();
    stdin
        .write_all(
            b"PRAGMA locking_mode=EXCLUSIVE;\nBEGIN EXCLUSIVE;\nSELECT count(*) FROM connections;\nSELECT 'locked';\n",
        )
        .unwrap();
    let mut lines = std::io::BufReader::new(locker.stdout.take().unwrap()).lines();
    while lines.next().unwrap().unwrap() != "locked" {}
    let health_took = rt().block_on(async {
        let c = http();
        let waiting: Vec<_> = (0..4)
            .map(|_| {
                let request = c.get(format!("{}/ready", d.base())).bearer_auth(d.token()).send();
                tokio::spawn(request)
            })
            .collect();
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let started = std::time::Instant::now();
        let health = c.get(format!("{}/health", d.base())).timeout(std::time::Duration::from_secs(5)).send().await;
        let took = started.elapsed();
        assert!(health.is_ok_and(|r| r.status().is_success()), "/health answers while the store is busy");
        drop(stdin);
        let _ = locker.wait();
        for request in waiting {
            let _ = request.await;
        }
        took
    });
    assert!(health_took < std::time::Duration::from_secs(2), "/health took {health_took:?}");
}

/// An `xdg-open` that plays the user's browser: it records its argv (what another local user
/// can read in /proc) and opens the URL with its own cookie jar.
fn fake_opener(dir: &std::path::Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let script = bin.join("xdg-open");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > {argv}.tmp && mv {argv}.tmp {argv}\n\
             curl -s -o {page} -c {jar} -b {jar} -L \"$1\"\n",
            argv = dir.join("argv").display(),
            page = dir.join("page").display(),
            jar = dir.join("jar").display(),
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

#[test]
fn a_login_url_read_from_the_openers_argv_is_worthless() {
    let port = free_port();
    let env = Env::new().set("AUTHSOME_DAEMON_PORT", &port.to_string());
    let bin = fake_opener(env.cwd.path());
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    env.run_with(&["login", "openai", "--no-wait"], None, &[("DISPLAY", ":99"), ("PATH", &path)]).ok();
    let argv_file = env.cwd.path().join("argv");
    let page_file = env.cwd.path().join("page");
    assert!(
        idp::eventually(std::time::Duration::from_secs(10), || std::fs::metadata(&page_file)
            .is_ok_and(|m| m.len() > 0)),
        "the opener ran"
    );
    let argv = std::fs::read_to_string(&argv_file).unwrap();
    let url = argv.lines().next().unwrap().to_string();
    assert!(std::fs::read_to_string(&page_file).unwrap().contains("OpenAI API key"), "the user's browser got the form");
    // Another local user replays what they read in /proc/PID/cmdline.
    let (status, body) = rt().block_on(async {
        let response = browser().get(&url).send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    });
    assert_eq!(status, 404, "{body}");
    assert!(!body.contains("csrf"), "{body}");
    // No token in any argv: the opener's, the daemon's.
    let token = std::fs::read_to_string(env.home().join("daemon/daemon.token")).unwrap();
    let info: Value = serde_json::from_slice(&std::fs::read(env.home().join("daemon/daemon.json")).unwrap()).unwrap();
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", info["pid"])).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains(token.trim()));
    assert!(!argv.contains(token.trim()));
    env.run(&["daemon", "stop"]).ok();
}

#[test]
fn the_daemon_never_prompts_on_its_terminal() {
    use std::io::Read;
    let port = free_port();
    let env = Env::new().set("AUTHSOME_DAEMON_PORT", &port.to_string());
    env.run_with(
        &["profile", "create", "locked", "--key-backend", "passphrase", "--key-cache", "0"],
        None,
        &[("AUTHSOME_PASSPHRASE", "correct horse")],
    )
    .ok();
    // `daemon serve` in the foreground of a terminal (script(1) gives it one), no passphrase.
    let serve = env.command(&[]);
    let line = format!("exec '{}' daemon serve --port {port}", common::BIN);
    let mut script = std::process::Command::new("script");
    script.args(["-qfec", &line, "/dev/null"]);
    for (name, value) in serve.get_envs() {
        match value {
            Some(value) => script.env(name, value),
            None => script.env_remove(name),
        };
    }
    script.current_dir(env.cwd.path()).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped());
    let mut child = match script.spawn() {
        Ok(child) => child,
        Err(e) => {
            eprintln!("SKIP the_daemon_never_prompts_on_its_terminal: no script(1) ({e})");
            return;
        }
    };
    assert!(
        idp::eventually(std::time::Duration::from_secs(10), || env.home().join("daemon/daemon.json").exists()),
        "the daemon started"
    );
    let token = std::fs::read_to_string(env.home().join("daemon/daemon.token")).unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let answered = rt().block_on(async {
        let session: Value = http()
            .post(format!("{base}/auth/sessions"))
            .bearer_auth(token.trim())
            .json(&json!({"profile": "locked", "provider": "openai", "flow": "api_key"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let user = browser();
        let response = user.get(session["next_action"]["url"].as_str().unwrap()).send().await.unwrap();
        let input = response.url().to_string();
        let page = response.text().await.unwrap();
        let (_, fields) = idp::parse_form(&page).unwrap();
        let csrf = fields.iter().find(|(n, _)| n == "csrf").unwrap().1.clone();
        let form = [("api_key", OPENAI_KEY), ("csrf", csrf.as_str())];
        let submit = user.post(&input).form(&form).timeout(std::time::Duration::from_secs(15)).send().await;
        submit.map(|r| r.status().as_u16())
    });
    let _ = env.run(&["daemon", "stop"]);
    drop(child.stdin.take());
    let _ = child.kill();
    let _ = child.wait();
    let mut terminal = String::new();
    child.stdout.take().unwrap().read_to_string(&mut terminal).unwrap();
    assert!(!terminal.contains("Passphrase"), "the daemon prompted on its terminal:\n{terminal}");
    let status = answered.expect("the form submit got an answer (no handler waits on a prompt)");
    assert_ne!(status, 200, "nothing can be stored without the passphrase");
}
