//! `authsome doctor --sandbox`'s runtime matrix: which installed clients work inside the
//! sandbox, through the real capture path, and trust the run's CA (docs/runtimes.md).
//!
//! The doctor plays both ends with nothing of the user's: a throw-away home (file key) with one
//! custom provider, `authsome-doctor` on `doctor.authsome.test`, and a random key; a local
//! HTTPS upstream for that host (`echo.rs`); then this binary's own `run --sandbox` runs every
//! probe at once (`probes.rs`), its proxy sending the host to the upstream through
//! `AUTHSOME_CONNECT_TO`. A probe passed when the upstream saw its request with the injected
//! key. Nothing here is reachable by other commands: the route exists only in that home, for
//! that run.

mod echo;
mod probes;

use std::ffi::OsString;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::error::{CliError, CliResult, Kind};
use crate::run::RunDir;

/// The doctor's provider host (`.test` is reserved: it never resolves anywhere else).
pub(crate) const DOCTOR_HOST: &str = "doctor.authsome.test";
const PROVIDER: &str = "authsome-doctor";
/// The whole matrix is stopped after this long.
const DEADLINE: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Ok,
    Failed,
    Missing,
}

#[derive(Debug)]
pub(crate) struct ProbeResult {
    pub(crate) name: &'static str,
    pub(crate) runtime: &'static str,
    pub(crate) status: Status,
    pub(crate) captured: Option<bool>,
    pub(crate) ca_trusted: Option<bool>,
    pub(crate) via: &'static str,
    pub(crate) detail: Option<String>,
    pub(crate) fix: Option<String>,
}

#[derive(Debug)]
pub(crate) struct Matrix {
    pub(crate) took: Duration,
    pub(crate) results: Vec<ProbeResult>,
}

/// The names `--require` takes: runtimes (`python`: each of its installed clients must pass)
/// and single clients (`python-requests`: it must be installed and pass).
pub(crate) fn check_names(names: &[String]) -> CliResult {
    for name in names {
        if !probes::PROBES.iter().any(|p| p.runtime == name || p.name == name) {
            let mut known: Vec<&str> = probes::PROBES.iter().map(|p| p.runtime).collect();
            known.dedup();
            return Err(CliError::new(Kind::Usage, format!("--require {name}: not a runtime the doctor probes"))
                .hint(format!("one of {}, or a single client such as python-requests", known.join(", "))));
        }
    }
    Ok(())
}

/// What `--require` names that did not pass, each with why.
pub(crate) fn unmet(matrix: &Matrix, names: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for name in names {
        let mine: Vec<&ProbeResult> = matrix.results.iter().filter(|r| r.runtime == name || r.name == name).collect();
        let installed: Vec<&&ProbeResult> = mine.iter().filter(|r| r.status != Status::Missing).collect();
        if installed.is_empty() {
            out.push(format!("{name} (not installed)"));
        } else if let Some(failed) = installed.iter().find(|r| r.status == Status::Failed) {
            out.push(format!("{name} ({} failed)", failed.name));
        }
    }
    out
}

pub(crate) fn run_matrix() -> CliResult<Matrix> {
    let started = Instant::now();
    let failed = |what: &str, e: &dyn std::fmt::Display| CliError::new(Kind::Generic, format!("{what}: {e}"));
    let work = RunDir::create()?;
    let git_root = work.path().join("git");
    let git_root = make_repository(work.path(), &git_root).then_some(git_root);
    let key = crate::run::random_token()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("authsome-doctor")
        .enable_all()
        .build()
        .map_err(|e| failed("cannot start the doctor's runtime", &e))?;
    let echo = runtime
        .block_on(echo::Echo::bind(DOCTOR_HOST, format!("Bearer {key}"), git_root))
        .map_err(|e| failed("cannot start the doctor's upstream", &e))?;
    let (port, seen) = (echo.port, echo.seen.clone());
    let upstream_ca = work.path().join("upstream-ca.pem");
    std::fs::write(&upstream_ca, &echo.ca_pem).map_err(|e| failed("cannot write the upstream CA", &e))?;
    runtime.spawn(echo.serve());

    let definition = json!({
        "schema_version": 1, "name": PROVIDER, "display_name": "authsome doctor",
        "auth_type": "api_key", "flow": "api_key", "hosts": [DOCTOR_HOST],
        "inject": {"type": "header", "name": "Authorization", "value": "Bearer {secret}"},
        "env": {"api_key": ["AUTHSOME_DOCTOR_KEY"]},
    });
    let provider_file = work.path().join("provider.json");
    std::fs::write(&provider_file, definition.to_string()).map_err(|e| failed("cannot write the provider", &e))?;
    let env = child_env(work.path(), &upstream_ca, port);
    let exe = std::env::current_exe().map_err(|e| failed("cannot find this program", &e))?;
    let step = |args: &[&str], stdin: Option<&str>| -> CliResult<std::process::Output> {
        let mut command = Command::new(&exe);
        command.args(args).env_clear().envs(env.iter().cloned()).current_dir("/");
        command.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().map_err(|e| failed("cannot start authsome", &e))?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            let _ = pipe.write_all(text.as_bytes());
        }
        let out = wait_until(child, started + DEADLINE).map_err(|e| failed("the doctor's run", &e))?;
        Ok(out)
    };
    let must = |out: std::process::Output, what: &str| -> CliResult<std::process::Output> {
        if out.status.success() {
            return Ok(out);
        }
        Err(CliError::new(Kind::Generic, format!("the runtime matrix could not {what}"))
            .cause(String::from_utf8_lossy(&out.stderr).trim().to_string()))
    };
    let file = provider_file.to_string_lossy().into_owned();
    must(step(&["register", &file, "--yes", "--quiet"], None)?, "register its provider")?;
    must(step(&["login", PROVIDER, "--stdin", "--quiet"], Some(&key))?, "store its key")?;
    let script = probes::script(DOCTOR_HOST);
    let out = step(&["run", "--sandbox", "--quiet", "--", "/bin/sh", "-c", &script], None)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let reported = probes::parse(&stdout);
    if reported.is_empty() {
        return Err(CliError::new(Kind::Generic, "the runtime matrix's sandbox reported nothing")
            .cause(String::from_utf8_lossy(&out.stderr).trim().to_string()));
    }
    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    let results = probes::PROBES
        .iter()
        .map(|probe| {
            let (code, output) = reported
                .iter()
                .find(|(name, _, _)| name == probe.name)
                .map_or((-1, String::new()), |(_, code, output)| (*code, output.clone()));
            classify(probe, code, &output, seen.get(probe.name).copied())
        })
        .collect();
    runtime.shutdown_background();
    Ok(Matrix { took: started.elapsed(), results })
}

/// The user's environment without authsome's own settings, pointed at the doctor's home.
fn child_env(work: &Path, upstream_ca: &Path, port: u16) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> =
        std::env::vars_os().filter(|(k, _)| !k.to_string_lossy().starts_with("AUTHSOME_")).collect();
    env.push(("AUTHSOME_HOME".into(), work.join("home").into()));
    env.push(("AUTHSOME_KEY_BACKEND".into(), "file".into()));
    env.push(("AUTHSOME_EXTRA_ROOTS".into(), upstream_ca.into()));
    env.push(("AUTHSOME_CONNECT_TO".into(), format!("{DOCTOR_HOST}:443:127.0.0.1:{port}").into()));
    env
}

/// A bare repository with one commit, laid out for git's dumb HTTP protocol, made with the
/// host's git (`false` without one: the git probe then finds no git in the sandbox either).
fn make_repository(work: &Path, root: &Path) -> bool {
    let source = work.join("git-source");
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .env("HOME", work)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let (source, bare) = (source.to_string_lossy(), root.join("repo.git"));
    let bare = bare.to_string_lossy();
    git(&["init", "-q", &source])
        && git(&[
            "-C",
            &source,
            "-c",
            "user.name=authsome doctor",
            "-c",
            "user.email=doctor@authsome.invalid",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "authsome doctor",
        ])
        && git(&["clone", "-q", "--bare", &source, &bare])
        && git(&["-C", &bare, "update-server-info"])
}

/// Wait for `child` with a deadline (then it is killed), collecting its output.
fn wait_until(mut child: std::process::Child, deadline: Instant) -> std::io::Result<std::process::Output> {
    use std::io::Read;
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        if let Some(pipe) = stderr.as_mut() {
            let _ = pipe.read_to_end(&mut text);
        }
        text
    });
    let mut out = Vec::new();
    let (tx, rx) = std::sync::mpsc::channel();
    let out_reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        if let Some(pipe) = stdout.as_mut() {
            let _ = pipe.read_to_end(&mut text);
        }
        let _ = tx.send(());
        text
    });
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            break child.wait()?;
        }
        let _ = rx.recv_timeout(Duration::from_millis(20));
    };
    out.extend(out_reader.join().unwrap_or_default());
    Ok(std::process::Output { status, stdout: out, stderr: reader.join().unwrap_or_default() })
}

fn classify(probe: &probes::Probe, code: i32, output: &str, seen: Option<bool>) -> ProbeResult {
    let mut result = ProbeResult {
        name: probe.name,
        runtime: probe.runtime,
        status: Status::Failed,
        captured: None,
        ca_trusted: None,
        via: probe.via,
        detail: None,
        fix: None,
    };
    let last_line =
        || output.lines().map(str::trim).rfind(|l| !l.is_empty()).map(|l| l.chars().take(300).collect::<String>());
    if code == probes::MISSING || code == 127 {
        result.status = Status::Missing;
        return result;
    }
    match seen {
        Some(true) => {
            result.captured = Some(true);
            result.ca_trusted = Some(true);
            if code == 0 {
                result.status = Status::Ok;
            } else {
                result.detail = last_line().or_else(|| Some(format!("exit status {code}")));
            }
        }
        Some(false) => {
            result.captured = Some(true);
            result.ca_trusted = Some(true);
            result.detail = Some("the request reached the upstream without the injected credential".into());
            result.fix = Some("the client sent its own Authorization header; let authsome inject it".into());
        }
        None if code == 124 => {
            result.detail = Some("timed out after 60 s".into());
        }
        None if looks_like_tls_trust(output) => {
            result.captured = Some(true);
            result.ca_trusted = Some(false);
            result.detail = last_line();
            result.fix = Some(probe.fix.to_string());
        }
        None => {
            result.captured = Some(false);
            result.detail = last_line().or_else(|| Some(format!("exit status {code}")));
            result.fix = Some("the request never reached the proxy: see the detail".into());
        }
    }
    result
}

/// Whether a client's error reads like a certificate it did not trust.
fn looks_like_tls_trust(output: &str) -> bool {
    let text = output.to_ascii_lowercase();
    ["certificate", "cert_", "ssl", "tls", "pkix", "x509", "self signed", "self-signed", "unknown ca", "issuer"]
        .iter()
        .any(|word| text.contains(word))
}

pub(crate) fn to_json(matrix: &Matrix) -> Value {
    let probes: Vec<Value> = matrix
        .results
        .iter()
        .map(|r| {
            json!({
                "name": r.name,
                "runtime": r.runtime,
                "status": match r.status { Status::Ok => "ok", Status::Failed => "failed", Status::Missing => "not_installed" },
                "captured": r.captured,
                "ca_trusted": r.ca_trusted,
                "via": r.via,
                "detail": r.detail,
                "fix": r.fix,
            })
        })
        .collect();
    json!({"millis": (matrix.took.as_secs_f64() * 1e3).round(), "host": DOCTOR_HOST, "probes": probes})
}

/// One line: how many installed clients work, and how long the matrix took.
pub(crate) fn summary(matrix: &Matrix) -> String {
    let installed = matrix.results.iter().filter(|r| r.status != Status::Missing).count();
    let ok = matrix.results.iter().filter(|r| r.status == Status::Ok).count();
    format!(
        "{ok} of {installed} installed clients work inside a sandbox, through the capture path ({:.1} s)",
        matrix.took.as_secs_f64()
    )
}

/// One row per client, indented under the `runtimes:` line.
pub(crate) fn table(matrix: &Matrix) -> String {
    let yes_no = |v: Option<bool>| match v {
        Some(true) => "yes",
        Some(false) => "no",
        None => "?",
    };
    let mut text = format!("  {:<16} {:<8} {:<9} {:<11} {}\n", "client", "result", "captured", "CA trusted", "via");
    for r in &matrix.results {
        if r.status == Status::Missing {
            text.push_str(&format!("  {:<16} not installed\n", r.name));
            continue;
        }
        let result = if r.status == Status::Ok { "ok" } else { "FAILED" };
        text.push_str(&format!(
            "  {:<16} {:<8} {:<9} {:<11} {}\n",
            r.name,
            result,
            yes_no(r.captured),
            yes_no(r.ca_trusted),
            r.via
        ));
        if let Some(detail) = &r.detail {
            text.push_str(&format!("      error: {detail}\n"));
        }
        if let Some(fix) = &r.fix {
            text.push_str(&format!("      fix: {fix}\n"));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_are_classified_by_what_the_upstream_saw() {
        let curl = &probes::PROBES[0];
        assert_eq!(classify(curl, 0, "200\n", Some(true)).status, Status::Ok);
        let untrusted = classify(curl, 60, "curl: (60) SSL certificate problem: unable to get local issuer", None);
        assert_eq!(
            (untrusted.status, untrusted.captured, untrusted.ca_trusted),
            (Status::Failed, Some(true), Some(false))
        );
        assert_eq!(untrusted.fix.as_deref(), Some(curl.fix));
        let refused = classify(curl, 7, "curl: (7) Failed to connect", None);
        assert_eq!((refused.captured, refused.ca_trusted), (Some(false), None));
        assert_eq!(classify(curl, probes::MISSING, "", None).status, Status::Missing);
    }

    #[test]
    fn require_names_runtimes_or_clients() {
        assert!(check_names(&["node".into(), "python-httpx".into()]).is_ok());
        let e = check_names(&["cobol".into()]).unwrap_err();
        assert!(e.hint.unwrap().contains("python, node"), "the hint lists the runtimes");
        let result = |name, runtime, status| ProbeResult {
            name,
            runtime,
            status,
            captured: None,
            ca_trusted: None,
            via: "",
            detail: None,
            fix: None,
        };
        let matrix = Matrix {
            took: Duration::ZERO,
            results: vec![
                result("python-urllib", "python", Status::Ok),
                result("python-httpx", "python", Status::Missing),
                result("node-https", "node", Status::Failed),
                result("go", "go", Status::Missing),
            ],
        };
        assert!(unmet(&matrix, &["python".into()]).is_empty(), "a missing client of a present runtime is fine");
        assert_eq!(
            unmet(&matrix, &["python-httpx".into(), "node".into(), "go".into()]),
            vec!["python-httpx (not installed)", "node (node-https failed)", "go (not installed)"]
        );
    }
}
