//! End-to-end: what a run tells about its network use and its refusals. `--report` and `authsome
//! log --run`/`--denied`, `--learn FILE` (and that the learned file lets the next run through),
//! and `--ask` on a pseudo-terminal: answered on the terminal, answered with `authsome approve`
//! while the command holds the terminal in raw mode, and refused without a terminal.
//!
//! Every sandboxed script starts with the sandbox harness's GUARD (see `common/sandbox.rs`).

mod common;

use std::path::Path;
use std::process::Stdio;

use common::sandbox::{GUARD, host_netns, setup};
use common::{Run, sandbox::Setup};
use serde_json::Value;

fn run_id_of(stderr: &str) -> String {
    let line =
        stderr.lines().find(|l| l.starts_with("authsome: run ")).unwrap_or_else(|| panic!("no report: {stderr}"));
    line["authsome: run ".len()..].split_whitespace().next().unwrap().to_string()
}

/// The report block: from its first line to the totals.
fn report_of(stderr: &str) -> String {
    let start = stderr.find("authsome: run ").unwrap_or_else(|| panic!("no report: {stderr}"));
    let block = &stderr[start..];
    let end = block.find("  total (").map(|i| i + block[i..].find('\n').unwrap() + 1).unwrap();
    block[..end].to_string()
}

fn row<'a>(report: &'a str, host: &str) -> Vec<&'a str> {
    let line = report
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{host} ")))
        .unwrap_or_else(|| panic!("no row for {host}:\n{report}"));
    line.split_whitespace().collect()
}

#[test]
fn report_at_exit_and_the_same_table_from_the_log() {
    let s = setup();
    let script = r#"
curl -s -o /dev/null -w 'openai %{http_code}\n' https://api.openai.com/v1/one
curl -s -o /dev/null -w 'openai %{http_code}\n' --noproxy '*' https://api.openai.com/v1/two
curl -s -o /dev/null -m 5 https://blocked.example.org/ || echo blocked-refused
exit 3"#;
    let run = s.sandboxed(&["--report", "--quiet"], script);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert_eq!(run.stdout.trim(), "openai 200\nopenai 200\nblocked-refused", "{}", run.stderr);
    let report = report_of(&run.stderr);
    let id = run_id_of(&run.stderr);
    assert!(report.contains("exit 3"), "{report}");
    assert!(report.contains("HOST") && report.contains("REQUESTS") && report.contains("DOWN"), "{report}");
    // HOST CONNS REQUESTS INJECTED DENIED UP(n unit) DOWN(n unit)
    let openai = row(&report, "api.openai.com");
    assert_eq!(&openai[1..5], ["2", "2", "2", "0"], "{report}");
    assert_ne!(openai[5], "0", "bytes up: {report}");
    assert_ne!(openai[7], "0", "bytes down: {report}");
    let blocked = row(&report, "blocked.example.org");
    assert_eq!(&blocked[1..5], ["0", "0", "0", "1"], "{report}");
    // --quiet hid the denial line, not the report asked for by name.
    assert!(!run.stderr.contains("authsome: denied"), "{}", run.stderr);

    // The same table later, by id or a prefix of it.
    let later = s.env.run(&["log", "--run", &id[..8]]).ok();
    assert_eq!(later.stdout, report);
    let record = s.env.run(&["log", "--run", &id, "--json"]).ok().json();
    assert_eq!(record["run_id"], id.as_str());
    assert_eq!(record["hosts"]["api.openai.com"]["requests"], 2);
    assert_eq!(record["hosts"]["api.openai.com"]["injected"], 2);
    assert!(record["hosts"]["api.openai.com"]["bytes_down"].as_u64().unwrap() > 0, "{record}");
    let missing = s.env.run(&["log", "--run", "ffffffffffff"]);
    assert_eq!(missing.code, 1, "{}", missing.all());
    assert!(missing.stderr.contains("hint:"), "{}", missing.stderr);

    // Denials across runs, each with the flag that allows it and its run's id.
    let other = s.sandboxed(&[], "curl -s -o /dev/null -m 5 --noproxy '*' https://raw.example.org/; true").ok();
    assert!(
        other
            .stderr
            .contains("authsome: denied raw.example.org:443 (not a provider host); allow with --allow raw.example.org"),
        "{}",
        other.stderr
    );
    let denied = s.env.run(&["log", "--denied"]).ok().stdout;
    let lines: Vec<&str> = denied.lines().collect();
    assert_eq!(lines.len(), 2, "{denied}");
    assert!(lines[0].contains(&format!("run {id}")), "{denied}");
    assert!(
        lines[0]
            .ends_with("denied blocked.example.org:443 (not a provider host); allow with --allow blocked.example.org"),
        "{denied}"
    );
    assert!(lines[1].contains("raw.example.org:443"), "{denied}");
    let json = s.env.run(&["log", "--denied", "-n", "1", "--json"]).ok().json();
    let entries = json.as_array().unwrap();
    assert_eq!(entries.len(), 1, "{json}");
    assert_eq!(entries[0]["host"], "raw.example.org");
    assert_eq!(entries[0]["hint"], "allow with --allow raw.example.org");
    assert!(entries[0]["run_id"].as_str().is_some_and(|r| r != id), "{json}");
}

/// No 403 fits inside TLS: a TLS connection refused by policy (a named host not allowed, or
/// a raw address with no name at all) is reset, not left to end as a failed handshake.
#[test]
fn a_refused_tls_connection_is_reset() {
    let s = setup();
    let script = r#"python3 - <<'PY'
import socket, ssl
for name in ["blocked.example.org", None]:
    s = socket.create_connection(("1.2.3.4", 443), 5)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        ctx.wrap_socket(s, server_hostname=name)
        print("handshake")
    except Exception as e:
        print(type(e).__name__)
PY"#;
    let run = s.sandboxed(&[], script).ok();
    assert_eq!(run.stdout.trim(), "ConnectionResetError\nConnectionResetError", "{}", run.stderr);
    assert!(run.stderr.contains("authsome: denied blocked.example.org:443"), "{}", run.stderr);
}

#[test]
fn report_on_plain_run_counts_tunnels_and_explicit_requests() {
    let s = setup();
    let run = s
        .env
        .command(&[
            "run",
            "--report",
            "--",
            "sh",
            "-c",
            "curl -s -o /dev/null -w '%{http_code}\\n' https://api.openai.com/v1/a && \
             curl -s -o /dev/null -w '%{http_code}\\n' https://allowed.example.org/",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(String::from_utf8_lossy(&run.stdout), "200\n200\n", "{stderr}");
    let report = report_of(&stderr);
    assert_eq!(&row(&report, "api.openai.com")[1..5], ["1", "1", "1", "0"], "{report}");
    // Not a provider host: tunnelled, one connection, no request the proxy can see.
    let tunnel = row(&report, "allowed.example.org");
    assert_eq!(&tunnel[1..5], ["1", "0", "0", "0"], "{report}");
    assert_ne!(tunnel[5], "0", "{report}");
}

fn policy(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn learn_writes_a_policy_the_next_run_passes() {
    let s = setup();
    let file = s.project.join("learned.json");
    let path = file.to_str().unwrap();
    // The command also tries to plant its own entry in the file: it is ignored.
    let script = r#"
curl -s -o /dev/null -m 5 --noproxy '*' https://allowed.example.org/ && echo allowed-reached
curl -s -o /dev/null -w 'openai %{http_code}\n' https://api.openai.com/v1/x
echo '{"egress": "all"}' > learned.json 2>/dev/null
true"#;
    let run = s.sandboxed(&["--learn", path], script).ok();
    assert_eq!(run.stdout.trim(), "openai 200", "refused during the learning run: {}", run.stderr);
    assert!(run.stderr.contains("review it, then run with --policy"), "{}", run.stderr);
    let learned = policy(&file);
    assert_eq!(learned["egress"], "allowlist", "{learned}");
    let allow: Vec<&str> = learned["allow"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(allow, ["allowed.example.org", "api.openai.com"], "{learned}");

    // The learned file lets the next run through, and nothing else.
    let script = r#"
curl -s -o /dev/null -w 'allowed %{http_code}\n' -m 5 --noproxy '*' https://allowed.example.org/
curl -s -o /dev/null -m 5 --noproxy '*' https://blocked.example.org/ && echo blocked-reached
echo done"#;
    let run = s.sandboxed(&["--policy", path], script).ok();
    assert_eq!(run.stdout.trim(), "allowed 200\ndone", "{}", run.stderr);

    // Learning again adds to the file, never replaces it.
    s.sandboxed(&["--policy", path, "--learn", path], "curl -s -o /dev/null -m 5 https://registry.npmjs.org/; true")
        .ok();
    let allow = policy(&file)["allow"].clone();
    assert_eq!(allow, serde_json::json!(["allowed.example.org", "api.openai.com", "registry.npmjs.org"]));

    // A file that is not a policy is refused before the command runs.
    let bad = s.project.join("notes.json");
    std::fs::write(&bad, "my notes").unwrap();
    let refused = s.sandboxed(&["--learn", bad.to_str().unwrap()], "echo ran");
    assert_eq!(refused.code, 125, "{}", refused.stderr);
    assert!(!refused.stdout.contains("ran"));
    assert!(refused.stderr.contains("hint: --learn adds to an existing policy file"), "{}", refused.stderr);
    assert_eq!(std::fs::read_to_string(&bad).unwrap(), "my notes");
}

/// The driver: runs a command on a fresh pseudo-terminal (its controlling terminal), copies
/// what it prints, and when WANT appears, either types ANSWER on the terminal or, for
/// `!COMMAND`, runs COMMAND elsewhere (another terminal's `authsome approve`).
const PTY_DRIVER: &str = r#"
import os, pty, select, subprocess, sys, time
want, answer, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
pid, fd = pty.fork()
if pid == 0:
    os.execvp(argv[0], argv)
out, answered, deadline = b"", False, time.time() + 90
while time.time() < deadline:
    r, _, _ = select.select([fd], [], [], 0.2)
    if fd in r:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    if not answered and want.encode() in out:
        answered = True
        if answer.startswith("!"):
            done = subprocess.run(answer[1:], shell=True, capture_output=True, text=True)
            out += ("\n[approve exit %d] %s%s\n" % (done.returncode, done.stdout, done.stderr)).encode()
        else:
            os.write(fd, answer.encode() + b"\n")
_, status = os.waitpid(pid, 0)
sys.stdout.write(out.decode(errors="replace"))
sys.exit(os.waitstatus_to_exitcode(status))
"#;

/// `authsome run --sandbox EXTRA -- sh -c GUARD+SCRIPT` on a pseudo-terminal.
fn on_pty(s: &Setup, extra: &[&str], script: &str, want: &str, answer: &str, env: &[(&str, &str)]) -> Run {
    let netns = format!("HOST_NETNS={}", host_netns());
    let body = format!("{GUARD}\n{script}");
    let mut args: Vec<&str> = vec!["run", "--sandbox", "--env", &netns];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", "sh", "-c", &body]);
    let inner = s.env.command(&args);
    let mut driver = std::process::Command::new("python3");
    driver.args(["-c", PTY_DRIVER, want, answer]).arg(inner.get_program()).args(inner.get_args());
    driver.current_dir(&s.project).stdin(Stdio::null());
    for (name, value) in inner.get_envs() {
        match value {
            Some(value) => driver.env(name, value),
            None => driver.env_remove(name),
        };
    }
    for (name, value) in env {
        driver.env(name, value);
    }
    let out = driver.output().unwrap();
    Run::from(out).not_failed_open()
}

fn ask_events(s: &Setup) -> Vec<Value> {
    let log = s.env.run(&["log", "--json", "-n", "200"]).ok().json();
    log.as_array().unwrap().iter().filter(|e| e["event"] == "proxy_ask").cloned().collect()
}

#[test]
fn ask_on_the_terminal_always_adds_to_the_policy_file() {
    let s = setup();
    let file = s.project.join("policy.json");
    std::fs::write(&file, r#"{"allow": []}"#).unwrap();
    let script = r#"
curl -s -o /dev/null -w 'first %{http_code}\n' -m 30 --noproxy '*' https://allowed.example.org/
curl -s -o /dev/null -w 'second %{http_code}\n' -m 30 https://allowed.example.org/again
"#;
    let run = on_pty(&s, &["--ask", "--policy", file.to_str().unwrap()], script, "[d]eny?", "a", &[]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert!(
        run.stdout.contains("allowed.example.org:443 (not a provider host)"),
        "the full destination: {}",
        run.stdout
    );
    assert!(run.stdout.contains("first 200") && run.stdout.contains("second 200"), "{}", run.stdout);
    assert_eq!(run.stdout.matches("[d]eny?").count(), 1, "asked once: {}", run.stdout);
    assert_eq!(policy(&file)["allow"], serde_json::json!(["allowed.example.org"]));
    let events = ask_events(&s);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!((events[0]["decision"].as_str(), events[0]["via"].as_str()), (Some("always"), Some("terminal")));

    // "deny" refuses, and is not asked again in the run.
    let script = r#"
curl -s -o /dev/null -m 30 --noproxy '*' https://raw.example.org/ && echo first-reached
curl -s -o /dev/null -m 30 https://raw.example.org/ && echo second-reached
echo done"#;
    let run = on_pty(&s, &["--ask"], script, "[d]eny?", "d", &[]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert!(!run.stdout.contains("reached") && run.stdout.contains("done"), "{}", run.stdout);
    assert!(!run.stdout.contains("[a]lways"), "no --policy, no always: {}", run.stdout);
    assert_eq!(run.stdout.matches("[d]eny?").count(), 1, "{}", run.stdout);
}

/// A question nobody answers is refused after the timeout; the answer typed to the next one
/// goes to the next one.
#[test]
fn an_unanswered_question_times_out_and_the_next_answer_is_not_lost() {
    let s = setup();
    let script = r#"
curl -s -o /dev/null -m 30 --noproxy '*' https://raw.example.org/ && echo raw-reached
curl -s -o /dev/null -w 'allowed %{http_code}\n' -m 30 --noproxy '*' https://allowed.example.org/
"#;
    let run = on_pty(&s, &["--ask"], script, "wants allowed.example.org:443", "r", &[("AUTHSOME_ASK_TIMEOUT", "1")]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert!(!run.stdout.contains("raw-reached"), "{}", run.stdout);
    assert!(run.stdout.contains("allowed 200"), "{}", run.stdout);
    let decided: Vec<(String, String)> = ask_events(&s)
        .iter()
        .map(|e| (e["decision"].as_str().unwrap().to_string(), e["via"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(decided, [("deny".to_string(), "timeout".to_string()), ("run".to_string(), "terminal".to_string())]);
}

#[test]
fn ask_while_the_command_owns_the_terminal_waits_for_approve() {
    let s = setup();
    // The command puts the terminal in raw mode, as a full-screen agent does.
    let script = r#"
stty raw -echo
curl -s -o /dev/null -w 'approved %{http_code}\r\n' -m 30 --noproxy '*' https://allowed.example.org/
curl -s -o /dev/null -m 30 https://raw.example.org/ && printf 'raw-reached\r\n'
stty sane
echo done"#;
    let home = s.env.home().to_str().unwrap().to_string();
    let listed = s.env.cwd.path().join("waiting.json");
    let approve = format!(
        "!AUTHSOME_HOME='{home}' {bin} --json approve > '{}' && AUTHSOME_HOME='{home}' {bin} approve allowed.example.org:443",
        listed.display(),
        bin = common::BIN
    );
    let run = on_pty(
        &s,
        &["--ask"],
        script,
        "authsome approve allowed.example.org:443",
        &approve,
        &[("AUTHSOME_ASK_TIMEOUT", "2")],
    );
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert!(run.stdout.contains("[approve exit 0]"), "{}", run.stdout);
    // `approve` alone listed what was waiting, by run.
    let waiting: Value = serde_json::from_str(&std::fs::read_to_string(&listed).unwrap()).unwrap();
    let runs = waiting["waiting"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{waiting}");
    assert_eq!(runs[0]["destinations"], serde_json::json!(["allowed.example.org:443"]), "{waiting}");
    assert!(run.stdout.contains("approved 200"), "{}", run.stdout);
    // Nobody approved raw.example.org: refused after the timeout.
    assert!(!run.stdout.contains("raw-reached") && run.stdout.contains("done"), "{}", run.stdout);
    let events = ask_events(&s);
    let decided: Vec<(&str, &str, &str)> = events
        .iter()
        .map(|e| (e["host"].as_str().unwrap(), e["decision"].as_str().unwrap(), e["via"].as_str().unwrap()))
        .collect();
    assert_eq!(decided, [("allowed.example.org", "run", "approve"), ("raw.example.org", "deny", "timeout")]);
    // Nothing waits any more; the run's socket is gone.
    let none = s.env.run(&["approve", "allowed.example.org"]);
    assert_eq!(none.code, 1, "{}", none.all());
    assert!(none.stderr.contains("no run is waiting"), "{}", none.stderr);
}

#[test]
fn ask_without_a_terminal_refuses() {
    let s = setup();
    let netns = format!("HOST_NETNS={}", host_netns());
    let body = format!(
        "{GUARD}\ncurl -s -o /dev/null -m 10 --noproxy '*' https://allowed.example.org/ && echo reached; echo done"
    );
    let inner = s.env.command(&["run", "--sandbox", "--ask", "--env", &netns, "--", "sh", "-c", &body]);
    // setsid: a new session with no controlling terminal.
    let mut cmd = std::process::Command::new("setsid");
    cmd.arg("-w").arg(inner.get_program()).args(inner.get_args()).current_dir(&s.project).stdin(Stdio::null());
    for (name, value) in inner.get_envs() {
        match value {
            Some(value) => cmd.env(name, value),
            None => cmd.env_remove(name),
        };
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert_eq!(stdout.trim(), "done", "{stderr}");
    assert!(stderr.contains("authsome: denied allowed.example.org:443"), "{stderr}");
    let events = ask_events(&s);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["via"], "no_terminal");
}
