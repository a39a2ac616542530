//! End-to-end: `authsome run -- CMD` with real clients (curl, Python requests/httpx/urllib and
//! the OpenAI SDK, Node https) against a local HTTPS echo upstream that stands in for
//! api.openai.com and friends (`AUTHSOME_CONNECT_TO` + `AUTHSOME_EXTRA_ROOTS`). Every test
//! asserts what the upstream received, and that the child never held a secret.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::Stdio;
use std::time::Duration;

use authsome_testkit::{Echo, Pki};
use common::{Env, Run, redact, seen};
use serde_json::Value;

const OPENAI_KEY: &str = "sk-REALOPENAI0000000000000000001";
const OPENAI_WORK_KEY: &str = "sk-REALOPENAIWORK000000000000002";
const GH_PAT: &str = "ghp_REALGITHUBPAT000000000000000000003";
const HOSTS: &[&str] = &["api.openai.com", "api.github.com", "api.anthropic.com", "unknown.example.org"];

struct Setup {
    env: Env,
    _echo: Echo,
    _plain: Echo,
}

fn setup() -> Setup {
    let pki = Pki::new(HOSTS);
    let echo = Echo::https(&pki);
    let plain = Echo::http();
    let home = Env::new();
    let ca = pki.write_ca(home.cwd.path(), "upstream-ca.pem");
    let mut connect_to: Vec<String> = HOSTS.iter().map(|h| format!("{h}:443:127.0.0.1:{}", echo.port())).collect();
    connect_to.push(format!("api.openai.com:80:127.0.0.1:{}", plain.port()));
    let env = home.set("AUTHSOME_CONNECT_TO", &connect_to.join(",")).set("AUTHSOME_EXTRA_ROOTS", ca.to_str().unwrap());
    env.login("openai", "default", OPENAI_KEY);
    env.login("openai", "work", OPENAI_WORK_KEY);
    env.run_stdin(&["login", "github", "--stdin"], GH_PAT).ok();
    Setup { env, _echo: echo, _plain: plain }
}

fn echo_of(run: &Run) -> Value {
    serde_json::from_str(run.stdout.trim())
        .unwrap_or_else(|e| panic!("not an echo ({e}):\n{}\n{}", run.stdout, run.stderr))
}

fn sh(env: &Env, script: &str) -> Run {
    env.run(&["run", "--", "sh", "-c", script])
}

#[test]
fn curl_gets_the_real_key_on_the_wire() {
    let s = setup();
    let run = sh(&s.env, "curl -sS --fail-with-body https://api.openai.com/v1/models?limit=2").ok();
    let echo = echo_of(&run);
    assert_eq!(seen(&echo, "authorization"), vec![format!("Bearer {OPENAI_KEY}")]);
    assert_eq!(echo["path"], "/v1/models");
    assert_eq!(echo["query"], "limit=2");

    // The client's own header carrying the placeholder is replaced (gh sends `token …`).
    let run = sh(&s.env, r#"curl -sS -H "Authorization: token $GH_TOKEN" https://api.github.com/user"#).ok();
    assert_eq!(seen(&echo_of(&run), "authorization"), vec![format!("Bearer {GH_PAT}")]);
    assert!(!run.all().contains(GH_PAT) || run.stdout.contains(GH_PAT), "only the upstream's echo may show it");
}

#[test]
fn python_clients_and_the_openai_sdk() {
    let s = setup();
    let python = common::python();
    let script = r#"
import json, os, urllib.request
import requests, httpx, openai
out = {}
out["requests"] = requests.get("https://api.openai.com/v1/requests").json()
out["httpx"] = httpx.get("https://api.openai.com/v1/httpx").json()
opener = urllib.request.build_opener()
with opener.open("https://api.openai.com/v1/urllib") as r:
    out["urllib"] = json.loads(r.read())
client = openai.OpenAI()
raw = client.models.with_raw_response.list()
out["openai"] = json.loads(raw.text)
out["env_key"] = os.environ["OPENAI_API_KEY"]
print(json.dumps(out))
"#;
    let run = s.env.run(&["run", "--", python.to_str().unwrap(), "-c", script]).ok();
    let out: Value =
        serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {} {}", run.stdout, run.stderr));
    for client in ["requests", "httpx", "urllib", "openai"] {
        assert_eq!(seen(&out[client], "authorization"), vec![format!("Bearer {OPENAI_KEY}")], "{client}");
    }
    assert_eq!(out["openai"]["path"], "/v1/models");
    let placeholder = out["env_key"].as_str().unwrap();
    assert!(placeholder.starts_with("sk-authsome_"), "{placeholder}");
}

#[test]
fn node_https_through_a_proxy_agent() {
    let s = setup();
    let script = r#"
const https = require('https');
const { HttpsProxyAgent } = require('https-proxy-agent');
const agent = new HttpsProxyAgent(process.env.HTTPS_PROXY);
https.get('https://api.anthropic.com/v1/messages', { agent, headers: { 'x-api-key': 'none' } }, (res) => {
  let body = '';
  res.on('data', (c) => body += c);
  res.on('end', () => { console.log(body); });
}).on('error', (e) => { console.error(e); process.exit(1); });
"#;
    let node_path = common::node_modules();
    let run_node = || {
        s.env.run_with(&["run", "--", "node", "-e", script], None, &[("NODE_PATH", node_path.to_str().unwrap())]).ok()
    };
    // No anthropic connection: the request passes untouched (tunnelled) and keeps its header.
    let run = run_node();
    assert_eq!(seen(&echo_of(&run), "x-api-key"), vec!["none"]);
    s.env.login("anthropic", "default", "sk-ant-REALANTHROPIC00000000000004");
    let run = run_node();
    assert_eq!(seen(&echo_of(&run), "x-api-key"), vec!["sk-ant-REALANTHROPIC00000000000004"]);
}

#[test]
fn plain_http_and_unknown_hosts_are_untouched() {
    let s = setup();
    let run = sh(&s.env, "curl -sS http://api.openai.com/v1/plain").ok();
    assert!(seen(&echo_of(&run), "authorization").is_empty(), "plain http must never get a credential");

    // A host no provider owns is tunnelled: the client talks TLS to the upstream itself.
    let run = sh(&s.env, "curl -sSv https://unknown.example.org/x 2>&1 >/dev/null | grep -i 'issuer:'; curl -sS https://unknown.example.org/y").ok();
    assert!(run.stdout.contains("authsome test upstream CA"), "not tunnelled: {}", run.stdout);
    let body = run.stdout.lines().last().unwrap();
    let echo: Value = serde_json::from_str(body).unwrap();
    assert!(seen(&echo, "authorization").is_empty());

    // With --inspect-all the same host is intercepted (our CA), still without a credential.
    let run = s
        .env
        .run(&[
            "run",
            "--inspect-all",
            "--",
            "sh",
            "-c",
            "curl -sSv https://unknown.example.org/x 2>&1 >/dev/null | grep -i 'issuer:'",
        ])
        .ok();
    assert!(run.stdout.contains("authsome"), "{}", run.stdout);
    assert!(!run.stdout.contains("test upstream CA"), "{}", run.stdout);
}

#[test]
fn the_proxy_refuses_callers_without_the_run_token() {
    let s = setup();
    // curl reports a refused CONNECT in %{http_connect} (and exits 56).
    let probe = |proxy: &str| {
        format!(
            r#"port=${{HTTPS_PROXY##*:}}; curl -s -o /dev/null -w '%{{http_connect}}' -x "{proxy}$port" https://api.openai.com/; true"#
        )
    };
    for proxy in ["http://127.0.0.1:", "http://wrong@127.0.0.1:", "http://authsome:wrong@127.0.0.1:"] {
        let run = sh(&s.env, &probe(proxy)).ok();
        assert_eq!(run.stdout.trim(), "407", "{proxy}");
    }
    // Plain http through the proxy without the token: 407 as well.
    let run = sh(&s.env, r#"port=${HTTPS_PROXY##*:}; curl -s -o /dev/null -w '%{http_code}' -x "http://127.0.0.1:$port" http://api.openai.com/"#).ok();
    assert_eq!(run.stdout.trim(), "407");
}

#[test]
fn a_placeholder_sent_to_another_providers_host_is_blocked() {
    let s = setup();
    let run = sh(&s.env, r#"curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $OPENAI_API_KEY" https://api.github.com/user"#).ok();
    assert_eq!(run.stdout.trim(), "403");
    let run = s
        .env
        .run(&[
            "run",
            "--inspect-all",
            "--",
            "sh",
            "-c",
            r#"curl -s -o /dev/null -w '%{http_code}' "https://unknown.example.org/?key=$OPENAI_API_KEY""#,
        ])
        .ok();
    assert_eq!(run.stdout.trim(), "403");
    let log = s.env.run(&["log", "--json", "-n", "200"]).ok().json();
    let blocked: Vec<&Value> = log.as_array().unwrap().iter().filter(|e| e["event"] == "proxy_leak_blocked").collect();
    assert_eq!(blocked.len(), 2, "{log}");
    assert_eq!(blocked[0]["provider"], "openai");
    assert_eq!(blocked[0]["host"], "api.github.com");
    assert!(!log.to_string().contains("sk-authsome_"), "placeholders never reach the audit log");
}

#[test]
fn per_request_connection_selection() {
    let s = setup();
    let both = r#"curl -sS -H "Authorization: Bearer $OPENAI_API_KEY" https://api.openai.com/a; echo; curl -sS -H "Authorization: Bearer $OPENAI_API_KEY_OPENAI_WORK" https://api.openai.com/b"#;
    let run = sh(&s.env, both).ok();
    let lines: Vec<Value> =
        run.stdout.lines().filter(|l| !l.is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(seen(&lines[0], "authorization"), vec![format!("Bearer {OPENAI_KEY}")]);
    assert_eq!(seen(&lines[1], "authorization"), vec![format!("Bearer {OPENAI_WORK_KEY}")]);

    let run = s.env.run(&["run", "--connection", "openai=work", "--", "curl", "-sS", "https://api.openai.com/c"]).ok();
    assert_eq!(seen(&echo_of(&run), "authorization"), vec![format!("Bearer {OPENAI_WORK_KEY}")]);
    let run = s.env.run(&["run", "--connection", "openai=nope", "--", "true"]).fails(125);
    assert!(run.stderr.contains("connection 'nope' not found"), "{}", run.stderr);
    s.env.run(&["run", "--connection", "openai", "--", "true"]).fails(125);
}

#[test]
fn the_child_environment_holds_no_secret() {
    let s = setup();
    let run = s
        .env
        .run_with(
            &["run", "--", "sh", "-c", "env; tr '\\0' '\\n' < /proc/self/environ"],
            None,
            &[
                ("OPENAI_API_KEY", OPENAI_KEY),
                ("STASHED", &format!("x {GH_PAT} y")),
                ("AUTHSOME_PASSPHRASE", "hunter2hunter2"),
            ],
        )
        .ok();
    for secret in [OPENAI_KEY, OPENAI_WORK_KEY, GH_PAT, "hunter2hunter2"] {
        assert!(!run.stdout.contains(secret), "{secret} reached the child");
    }
    assert!(run.stdout.contains("OPENAI_API_KEY=sk-authsome_"));
    assert!(run.stdout.contains("GH_TOKEN=ghp_authsome_"));
    assert!(run.stdout.contains("HTTPS_PROXY=http://"));
    assert!(run.stdout.contains("NODE_USE_ENV_PROXY=1"));
    assert!(!run.stdout.contains("STASHED="));
    assert_eq!(run.stderr, "", "run prints nothing of its own");
}

#[test]
fn stdio_and_exit_codes_pass_through() {
    let s = setup();
    let payload: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    let mut child = s
        .env
        .command(&["run", "--", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = payload.clone();
    let writer = std::thread::spawn(move || stdin.write_all(&input).unwrap());
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(output.status.success());
    assert_eq!(output.stdout.len(), payload.len());
    assert!(output.stdout == payload, "stdout differs from stdin");
    assert!(output.stderr.is_empty());

    assert_eq!(sh(&s.env, "exit 7").code, 7);
    assert_eq!(sh(&s.env, "kill -TERM $$").code, 128 + 15);
    assert_eq!(s.env.run(&["run", "--", "/definitely/not/a/command"]).code, 127);
    s.env.run(&["run"]).fails(2);
}

#[test]
fn signals_sent_to_run_reach_the_child() {
    let s = setup();
    let mut child = s
        .env
        .command(&[
            "run",
            "--",
            "sh",
            "-c",
            "trap 'echo got-term; exit 3' TERM; echo ready; while :; do sleep 0.05; done",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    let status = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let code = child.wait().unwrap().code();
    assert_eq!(rest, "got-term\n");
    assert_eq!(code, Some(3));
}

#[test]
fn runs_are_audited_with_a_host_summary() {
    let s = setup();
    sh(&s.env, "curl -sS https://api.openai.com/1 >/dev/null; curl -sS https://api.openai.com/2 >/dev/null; curl -sS https://unknown.example.org/ >/dev/null").ok();
    std::thread::sleep(Duration::from_millis(50));
    let log = s.env.run(&["log", "--json", "-n", "2"]).ok().json();
    let start = &log[0];
    let end = &log[1];
    assert_eq!((start["event"].as_str(), start["phase"].as_str()), (Some("run"), Some("start")));
    assert_eq!(start["command"], "sh");
    assert_eq!(start["providers"], serde_json::json!(["github/default", "openai/default"]));
    assert_eq!(end["phase"], "end");
    assert_eq!(end["exit_code"], 0);
    assert_eq!(end["hosts"]["api.openai.com"]["injected"], 2);
    assert_eq!(end["hosts"]["api.openai.com"]["connections"]["openai/default"], 2);
    assert_eq!(end["hosts"]["unknown.example.org"]["tunnelled"], 1);
    assert_eq!(start["run_id"], end["run_id"]);
}

#[test]
fn ca_path_points_at_the_profiles_ca() {
    let s = setup();
    let path = s.env.run(&["ca", "path"]).ok().stdout.trim().to_string();
    assert!(path.ends_with("profiles/default/ca/ca.pem"), "{path}");
    let pem = std::fs::read_to_string(&path).unwrap();
    assert!(pem.contains("BEGIN CERTIFICATE"));
    use std::os::unix::fs::PermissionsExt;
    let key = std::path::Path::new(&path).with_file_name("ca.key");
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    // The same CA is reused by the next run.
    sh(&s.env, "true").ok();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), pem);
}

/// Whether `pid` is alive (a zombie waiting for its reaper counts as dead).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit(')').next().and_then(|rest| rest.split_whitespace().next()).map(|s| s != "Z"))
        .unwrap_or(false)
}

#[test]
fn kill_9_of_run_takes_the_child_with_it() {
    let s = setup();
    // The shell prints its pid and becomes the sleep, so the pid is the sleep's.
    let mut run = s
        .env
        .command(&["run", "--", "sh", "-c", "echo $$; exec sleep 30"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(run.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let sleep: u32 = line.trim().parse().unwrap_or_else(|_| panic!("no pid: {line:?}"));
    std::thread::sleep(Duration::from_millis(200));
    assert!(alive(sleep), "the child should still run while authsome does");
    run.kill().unwrap(); // SIGKILL: no handler of ours runs
    run.wait().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    while alive(sleep) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let survived = alive(sleep);
    if survived {
        let _ = std::process::Command::new("kill").args(["-KILL", &sleep.to_string()]).status();
    }
    assert!(!survived, "the child outlived `authsome run` by more than a second");
}

/// Issue #11: plain `run -- node` on a Node that ignores the proxy variables (before 24), with
/// no npm package: the built-in `https.get` and the global `fetch` go through the proxy and get
/// the credential; plain `http` is tunnelled and gets none; the user's own NODE_OPTIONS stay in
/// force.
#[test]
fn node_builtin_https_and_fetch_use_the_proxy() {
    let s = setup();
    let user_preload = s.env.cwd.path().join("user-preload.js");
    std::fs::write(&user_preload, "globalThis.userPreloadRan = true;\n").unwrap();
    let script = r#"
const http = require('http');
const https = require('https');
const get = (mod, url) => new Promise((resolve, reject) => {
  mod.get(url, (res) => {
    let body = '';
    res.on('data', (c) => body += c);
    res.on('end', () => resolve(JSON.parse(body)));
  }).on('error', reject);
});
(async () => {
  const out = { version: process.versions.node, user: globalThis.userPreloadRan === true };
  out.https = await get(https, 'https://api.openai.com/v1/https');
  out.fetch = await (await fetch('https://api.openai.com/v1/fetch')).json();
  out.fetch2 = await (await fetch('https://api.openai.com/v1/fetch2', { method: 'POST', body: 'x' })).json();
  out.http = await get(http, 'http://api.openai.com/v1/plain');
  out.fetchHttp = await (await fetch('http://api.openai.com/v1/plain-fetch')).json();
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(e); process.exit(1); });
"#;
    let options = format!("--require {}", user_preload.display());
    let run = s.env.run_with(&["run", "--", "node", "-e", script], None, &[("NODE_OPTIONS", &options)]).ok();
    let out = echo_of(&run);
    assert_eq!(out["user"], true, "the user's NODE_OPTIONS were dropped: {out}");
    for client in ["https", "fetch", "fetch2"] {
        assert_eq!(seen(&out[client], "authorization"), vec![format!("Bearer {OPENAI_KEY}")], "{client}: {out}");
    }
    assert_eq!(out["fetch2"]["method"], "POST", "{out}");
    for client in ["http", "fetchHttp"] {
        assert_eq!(out[client]["path"], format!("/v1/{}", if client == "http" { "plain" } else { "plain-fetch" }));
        assert!(seen(&out[client], "authorization").is_empty(), "plain http never gets a credential: {out}");
    }
    assert!(!run.all().contains(OPENAI_KEY) || run.stdout.contains(OPENAI_KEY), "only the echo shows it");
}

/// Issue #11: `--verbose` into a pipe has no colour codes; `--log-file` writes the log to the
/// file as well as to stderr (and alone, to the file only).
#[test]
fn verbose_log_has_no_colour_in_a_pipe_and_log_file_adds_a_copy() {
    let s = setup();
    let curl = ["run", "--", "curl", "-sS", "https://api.openai.com/v1/models"];
    // Colour is what a terminal would get; the variable the tests set must not be what hides it.
    let mut args = vec!["--verbose"];
    args.extend(curl);
    let verbose = s.env.run_with(&args, None, &[("NO_COLOR", "")]).ok();
    assert!(verbose.stderr.contains("injected"), "no debug log: {}", verbose.stderr);
    assert!(!verbose.stderr.contains('\x1b'), "colour codes in a pipe: {:?}", verbose.stderr);

    let file = s.env.cwd.path().join("authsome.log");
    let mut args = vec!["--verbose", "--log-file", file.to_str().unwrap()];
    args.extend(curl);
    let both = s.env.run(&args).ok();
    let logged = std::fs::read_to_string(&file).unwrap();
    assert!(both.stderr.contains("injected"), "stderr lost the log: {}", both.stderr);
    assert!(logged.contains("injected"), "the file lost the log: {logged}");
    assert!(!logged.contains('\x1b'), "{logged:?}");

    std::fs::remove_file(&file).unwrap();
    let mut args = vec!["--log-file", file.to_str().unwrap()];
    args.extend(curl);
    let file_only = s.env.run(&args).ok();
    assert!(!file_only.stderr.contains("injected"), "{}", file_only.stderr);
    assert!(std::fs::read_to_string(&file).unwrap().contains("injected"));
    for text in [verbose.stderr, both.stderr, logged, file_only.stderr] {
        assert!(!text.contains(OPENAI_KEY), "a secret in the log");
    }
}

/// A command that cannot be started: 126/127, text on stderr, the JSON error on stdout with --json.
#[test]
fn a_command_that_cannot_start_is_reported_like_before() {
    let s = setup();
    let missing = s.env.run(&["run", "--", "/definitely/not/a/command"]);
    assert_eq!(missing.code, 127, "{}", missing.all());
    let script = s.env.cwd.path().join("not-executable.sh");
    std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
    let denied = s.env.run(&["run", "--", script.to_str().unwrap()]);
    assert_eq!(denied.code, 126, "{}", denied.all());
    let json = s.env.run(&["--json", "run", "--", "/definitely/not/a/command"]);
    assert_eq!(json.code, 127, "{}", json.all());
    insta::assert_snapshot!(
        "run_cannot_start",
        redact(
            &format!(
                "$ authsome run -- /definitely/not/a/command\n{}\n$ authsome run -- ./not-executable.sh\n{}\n$ authsome --json run -- /definitely/not/a/command\n{}",
                missing.stderr, denied.stderr, json.stdout
            ),
            &s.env
        )
    );
}

/// The preload of an outer plain `run` is not passed on next to an inner one's (nor into a
/// sandbox, where its path is hidden): a nested `run` leaves exactly one, and the user's own
/// options stay.
#[test]
fn a_nested_run_keeps_one_node_preload() {
    let s = setup();
    let script = "console.log(process.env.NODE_OPTIONS)";
    let run = s
        .env
        .run_with(
            &["run", "--", common::BIN, "run", "--", "node", "-e", script],
            None,
            &[("NODE_OPTIONS", "--trace-warnings")],
        )
        .ok();
    let options = run.stdout.trim();
    assert_eq!(options.matches("node-preload.cjs").count(), 1, "{options}");
    assert!(options.starts_with("--trace-warnings --require "), "{options}");
}

const GHE_PAT: &str = "ghp_REALENTERPRISEPAT0000000000000000005";

/// A home whose github hosts (public and enterprise) lead to one local echo.
fn github_and_enterprise() -> (Env, Echo) {
    let hosts = ["api.github.com", "ghe.example.com"];
    let pki = Pki::new(&hosts);
    let echo = Echo::https(&pki);
    let home = Env::new();
    let ca = pki.write_ca(home.cwd.path(), "upstream-ca.pem");
    let connect_to: Vec<String> = hosts.iter().map(|h| format!("{h}:443:127.0.0.1:{}", echo.port())).collect();
    let env = home.set("AUTHSOME_CONNECT_TO", &connect_to.join(",")).set("AUTHSOME_EXTRA_ROOTS", ca.to_str().unwrap());
    (env, echo)
}

fn echoes(run: &Run) -> Vec<Value> {
    run.stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not an echo ({e}): {l}\n{}", run.stderr)))
        .collect()
}

/// Routing by connection: a connection logged in with `--base-url` gets its own host (under
/// the definition's API path there) and nothing else; the public service keeps its own token.
#[test]
fn a_base_url_connection_is_routed_to_its_own_host_only() {
    let (env, _echo) = github_and_enterprise();
    let login_ghe = ["login", "github", "--connection", "ghe", "--base-url", "https://ghe.example.com", "--stdin"];
    env.run_stdin(&login_ghe, GHE_PAT).ok();
    let script = "curl -sS https://ghe.example.com/api/v3/user; echo; curl -sS https://api.github.com/user; echo; \
                  curl -sS https://ghe.example.com/login";
    let lines = echoes(&sh(&env, script).ok());
    assert_eq!(seen(&lines[0], "authorization"), vec![format!("Bearer {GHE_PAT}")], "the enterprise API");
    assert!(seen(&lines[1], "authorization").is_empty(), "the enterprise token reached api.github.com");
    assert!(seen(&lines[2], "authorization").is_empty(), "outside the enterprise API path");

    // Even when the child sends the enterprise placeholder there itself: no route, so the host
    // is not intercepted and only the placeholder travels.
    let run = sh(&env, r#"curl -sS -H "Authorization: token $GH_TOKEN" https://api.github.com/user"#).ok();
    let sent = seen(&echo_of(&run), "authorization");
    assert!(sent.len() == 1 && sent[0].starts_with("token ghp_authsome_"), "{sent:?}");

    // A second home: the public connection first (the default), then the enterprise one.
    let (env, _echo) = github_and_enterprise();
    env.run_stdin(&["login", "github", "--stdin"], GH_PAT).ok();
    env.run_stdin(&login_ghe, GHE_PAT).ok();
    let lines = echoes(&sh(&env, script).ok());
    assert_eq!(seen(&lines[0], "authorization"), vec![format!("Bearer {GHE_PAT}")]);
    assert_eq!(seen(&lines[1], "authorization"), vec![format!("Bearer {GH_PAT}")]);
    // Each placeholder is swapped on its own connection's host and refused on the other's.
    let swapped = r#"curl -sS -H "Authorization: token $GH_TOKEN_GITHUB_GHE" https://ghe.example.com/api/graphql; echo; curl -sS -H "Authorization: token $GH_TOKEN" https://api.github.com/user"#;
    let lines = echoes(&sh(&env, swapped).ok());
    assert_eq!(seen(&lines[0], "authorization"), vec![format!("Bearer {GHE_PAT}")]);
    assert_eq!(seen(&lines[1], "authorization"), vec![format!("Bearer {GH_PAT}")]);
    for (var, url) in
        [("GH_TOKEN", "https://ghe.example.com/api/v3/user"), ("GH_TOKEN_GITHUB_GHE", "https://api.github.com/user")]
    {
        let run =
            sh(&env, &format!(r#"curl -s -o /dev/null -w '%{{http_code}}' -H "Authorization: token ${var}" {url}"#));
        assert_eq!(run.ok().stdout.trim(), "403", "{var} at {url}");
    }
}

/// A base URL is checked against the definition when it is typed, and never widens.
#[test]
fn login_refuses_base_urls_that_widen_or_do_not_apply() {
    let env = Env::new();
    for bad in [
        "https://*.example.com",
        "https://user:pw@ghe.example.com",
        "https://10.1.2.3",
        "https://localhost",
        "http://ghe.example.com",
        "https://ghe.example.com/../x",
    ] {
        let run = env.run_stdin(&["login", "github", "--base-url", bad, "--stdin"], GHE_PAT).fails(2);
        assert!(run.stderr.contains("--base-url"), "{bad}: {}", run.stderr);
    }
    let run = env.run_stdin(&["login", "openai", "--base-url", "https://api.example.com", "--stdin"], OPENAI_KEY);
    let run = run.fails(2);
    assert!(run.stderr.contains("does not take a base URL"), "{}", run.stderr);
}

const GITLAB_PAT: &str = "glpat-REALSELFMANAGED00000006";
const AZURE_KEY: &str = "0123456789abcdef0123456789abcdef";

/// Self-hosted and per-tenant variants through `--base-url`: GitLab self-managed (bundled,
/// any host the user names, under `/api`), and a definition whose base URL must fit a
/// one-label template (an Azure OpenAI resource, `{resource}.openai.azure.com`).
#[test]
fn self_hosted_and_tenant_hosts_through_base_url() {
    let hosts = ["gitlab.com", "gitlab.example.com", "myres.openai.azure.com", "other.openai.azure.com"];
    let pki = Pki::new(&hosts);
    let echo = Echo::https(&pki);
    let home = Env::new();
    let ca = pki.write_ca(home.cwd.path(), "upstream-ca.pem");
    let connect_to: Vec<String> = hosts.iter().map(|h| format!("{h}:443:127.0.0.1:{}", echo.port())).collect();
    let env = home.set("AUTHSOME_CONNECT_TO", &connect_to.join(",")).set("AUTHSOME_EXTRA_ROOTS", ca.to_str().unwrap());
    env.run_stdin(&["login", "gitlab", "--base-url", "https://gitlab.example.com", "--stdin"], GITLAB_PAT).ok();
    let azure = r#"{"schema_version": 1, "name": "azure-lab", "display_name": "Azure OpenAI (lab)",
      "auth_type": "api_key", "flow": "api_key", "hosts": ["*.openai.azure.com"],
      "inject": {"type": "header", "name": "api-key", "value": "{secret}"},
      "env": {"api_key": ["AZURE_OPENAI_API_KEY"]},
      "base_url": {"hosts": ["{resource}.openai.azure.com"], "example": "https://my-resource.openai.azure.com"}}"#;
    let file = env.cwd.path().join("azure-lab.json");
    std::fs::write(&file, azure).unwrap();
    env.run(&["register", file.to_str().unwrap(), "--yes"]).ok();
    for bad in ["https://a.b.openai.azure.com", "https://openai.azure.com", "https://myres.openai.azure.com.evil.test"]
    {
        let run = env.run_stdin(&["login", "azure-lab", "--base-url", bad, "--stdin"], AZURE_KEY).fails(2);
        assert!(run.stderr.contains("{resource}.openai.azure.com"), "{bad}: {}", run.stderr);
    }
    env.run_stdin(&["login", "azure-lab", "--base-url", "https://myres.openai.azure.com", "--stdin"], AZURE_KEY).ok();
    // A definition whose hosts are per tenant only (a Supabase project) requires the base URL.
    let project = azure.replace("azure-lab", "project-lab").replace(r#"["*.openai.azure.com"]"#, "[]").replace(
        r#""base_url": {"hosts": ["{resource}.openai.azure.com"], "example": "https://my-resource.openai.azure.com"}"#,
        r#""base_url": {"hosts": ["{project}.supabase.co"], "example": "https://abcd.supabase.co", "required": true}"#,
    );
    let file = env.cwd.path().join("project-lab.json");
    std::fs::write(&file, project).unwrap();
    env.run(&["register", file.to_str().unwrap(), "--yes"]).ok();
    let run = env.run_stdin(&["login", "project-lab", "--stdin"], AZURE_KEY).fails(2);
    assert!(run.stderr.contains("needs --base-url") && run.stderr.contains("abcd.supabase.co"), "{}", run.stderr);
    // An OAuth login whose endpoints do not follow the base URL would route the public
    // service's token to the user's server: refused before any flow starts.
    let fixed = azure
        .replace("azure-lab", "oauth-lab")
        .replace(r#""auth_type": "api_key", "flow": "api_key""#, r#""auth_type": "oauth2", "flow": "pkce""#)
        .replace(
            r#""env": {"api_key": ["AZURE_OPENAI_API_KEY"]}"#,
            r#""env": {"access_token": ["LAB_TOKEN"]}, "oauth": {"authorization_url": "https://login.lab.example.com/authorize", "token_url": "https://login.lab.example.com/token"}"#,
        );
    let file = env.cwd.path().join("oauth-lab.json");
    std::fs::write(&file, fixed).unwrap();
    env.run(&["register", file.to_str().unwrap(), "--yes"]).ok();
    let run = env.run(&["login", "oauth-lab", "--base-url", "https://myres.openai.azure.com"]).fails(2);
    assert!(run.stderr.contains("does not follow --base-url"), "{}", run.stderr);

    let script = "curl -sS https://gitlab.example.com/api/v4/user; echo; curl -sS https://gitlab.com/api/v4/user; echo; \
                  curl -sS https://gitlab.example.com/users/sign_in; echo; \
                  curl -sS https://myres.openai.azure.com/openai/deployments; echo; curl -sS https://other.openai.azure.com/openai/x";
    let lines = echoes(&sh(&env, script).ok());
    assert_eq!(seen(&lines[0], "authorization"), vec![format!("Bearer {GITLAB_PAT}")]);
    assert!(seen(&lines[1], "authorization").is_empty(), "the self-managed token reached gitlab.com");
    assert!(seen(&lines[2], "authorization").is_empty(), "outside /api");
    assert_eq!(seen(&lines[3], "api-key"), vec![AZURE_KEY]);
    assert!(seen(&lines[4], "api-key").is_empty(), "another resource got the key");
}

/// Two-value credentials on the wire, as the vendors document them: Datadog's two headers,
/// Twilio's Basic `SID:token`, Algolia's id and key headers. The command holds placeholders for
/// the secrets and the real identifiers (SID, application id), which SDKs put in URLs.
#[test]
fn two_value_credentials_are_injected_both() {
    let hosts = ["api.datadoghq.com", "api.datadoghq.eu", "api.twilio.com", "myapp-dsn.algolia.net"];
    let pki = Pki::new(&hosts);
    let echo = Echo::https(&pki);
    let home = Env::new();
    let ca = pki.write_ca(home.cwd.path(), "upstream-ca.pem");
    let connect_to: Vec<String> = hosts.iter().map(|h| format!("{h}:443:127.0.0.1:{}", echo.port())).collect();
    let env = home.set("AUTHSOME_CONNECT_TO", &connect_to.join(",")).set("AUTHSOME_EXTRA_ROOTS", ca.to_str().unwrap());
    let (dd_api, dd_app) = ("0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210fedcba98");
    let (sid, token) = ("AC0123456789abcdef0123456789abcdef", "00112233445566778899aabbccddeeff");
    let (app_id, algolia_key) = ("MYAPP12345", "abcdefabcdefabcdefabcdefabcdef12");
    env.run_stdin(&["login", "datadog", "--stdin"], &format!("DD_API_KEY={dd_api}\nDD_APP_KEY={dd_app}\n")).ok();
    env.run_stdin(&["login", "twilio", "--stdin"], &format!("TWILIO_ACCOUNT_SID={sid}\nTWILIO_AUTH_TOKEN={token}\n"))
        .ok();
    env.run_stdin(&["login", "algolia", "--stdin"], &format!("{algolia_key}\n{app_id}\n")).ok();

    let script = r#"curl -sS -H "DD-API-KEY: $DD_API_KEY" -H "DD-APPLICATION-KEY: $DD_APP_KEY" https://api.datadoghq.com/api/v1/validate; echo;
curl -sS -u "$TWILIO_ACCOUNT_SID:$TWILIO_AUTH_TOKEN" "https://api.twilio.com/2010-04-01/Accounts/$TWILIO_ACCOUNT_SID.json"; echo;
curl -sS -H "X-Algolia-Application-Id: $ALGOLIA_APP_ID" -H "X-Algolia-API-Key: $ALGOLIA_API_KEY" https://myapp-dsn.algolia.net/1/indexes; echo;
echo "$DD_API_KEY $DD_APP_KEY $TWILIO_AUTH_TOKEN $TWILIO_ACCOUNT_SID $ALGOLIA_API_KEY $ALGOLIA_APP_ID""#;
    let run = sh(&env, script).ok();
    let mut lines = run.stdout.lines().filter(|l| !l.trim().is_empty());
    let datadog: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(seen(&datadog, "dd-api-key"), vec![dd_api]);
    assert_eq!(seen(&datadog, "dd-application-key"), vec![dd_app]);
    let twilio: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    // base64("AC0123456789abcdef0123456789abcdef:00112233445566778899aabbccddeeff"), computed
    // outside authsome from Twilio's documented `-u SID:AuthToken`.
    let basic = "Basic QUMwMTIzNDU2Nzg5YWJjZGVmMDEyMzQ1Njc4OWFiY2RlZjowMDExMjIzMzQ0NTU2Njc3ODg5OWFhYmJjY2RkZWVmZg==";
    assert_eq!(seen(&twilio, "authorization"), vec![basic]);
    assert_eq!(twilio["path"], format!("/2010-04-01/Accounts/{sid}.json"), "the real SID is in the path");
    let algolia: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(seen(&algolia, "x-algolia-application-id"), vec![app_id]);
    assert_eq!(seen(&algolia, "x-algolia-api-key"), vec![algolia_key]);
    let env_line = lines.next().unwrap();
    let values: Vec<&str> = env_line.split(' ').collect();
    for (i, secret) in [dd_api, dd_app, token, "", algolia_key].iter().enumerate() {
        if !secret.is_empty() {
            assert!(values[i].contains("authsome_") && values[i] != *secret, "{i}: {env_line}");
        }
    }
    assert_eq!((values[3], values[5]), (sid, app_id), "identifiers are given as they are");

    // A regional site through --base-url: the EU connection's keys go to the EU API only, and
    // the US connection keeps the US one. A look-alike of a site is refused at login.
    let eu_api = "abcdef0123456789abcdef0123456789";
    let eu_lines = format!("DD_API_KEY={eu_api}\nDD_APP_KEY={dd_app}\n");
    for bad in ["https://api.datadoghq.eu.evil.test", "https://x.datadoghq.eu", "https://*.datadoghq.eu"] {
        env.run_stdin(&["login", "datadog", "--connection", "eu", "--base-url", bad, "--stdin"], &eu_lines).fails(2);
    }
    let login_eu = ["login", "datadog", "--connection", "eu", "--base-url", "https://api.datadoghq.eu", "--stdin"];
    env.run_stdin(&login_eu, &eu_lines).ok();
    let script =
        "curl -sS https://api.datadoghq.eu/api/v1/validate; echo; curl -sS https://api.datadoghq.com/api/v1/validate";
    let lines = echoes(&sh(&env, script).ok());
    assert_eq!(seen(&lines[0], "dd-api-key"), vec![eu_api]);
    assert_eq!(seen(&lines[1], "dd-api-key"), vec![dd_api]);
}
