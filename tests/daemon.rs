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
    let url = session["next_action"]["url"].as_str().unwrap().to_string();
    let (page, no_csrf, bad_csrf, bad_key, good) = rt().block_on(async {
        let page = c.get(&url).send().await.unwrap().text().await.unwrap();
        let (_, fields) = idp::parse_form(&page).unwrap();
        let csrf = fields.iter().find(|(n, _)| n == "csrf").unwrap().1.clone();
        let post = |form: Vec<(&'static str, String)>| {
            let c = c.clone();
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
    let page = rt().block_on(async { http().get(url).send().await.unwrap().text().await.unwrap() });
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
