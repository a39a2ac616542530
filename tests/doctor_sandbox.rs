//! End-to-end: `authsome doctor --sandbox`'s runtime matrix with the real binary and the real
//! clients CI has (curl, Python with requests and httpx from target/test-deps, Node, git, a JRE),
//! and the CA-trust environment of `run` and `run --sandbox`: every trust variable names a file
//! (or directory) that verifies the run's CA.

mod common;

use std::path::{Path, PathBuf};

use common::sandbox::setup;
use common::{Env, Run};
use serde_json::Value;

/// `PATH` with the test venv first (its `python3` imports requests and httpx), and `extra`
/// before that.
fn path_with(extra: Option<&Path>) -> String {
    let venv = common::python().parent().unwrap().to_path_buf();
    let mut dirs: Vec<PathBuf> = extra.map(Path::to_path_buf).into_iter().collect();
    dirs.push(venv);
    dirs.extend(std::env::split_paths(&std::env::var_os("PATH").unwrap()));
    std::env::join_paths(dirs).unwrap().to_string_lossy().into_owned()
}

fn doctor(args: &[&str], path: &str) -> Run {
    let env = Env::outside_tmp();
    let mut all = vec!["doctor", "--sandbox"];
    all.extend_from_slice(args);
    env.run_with(&all, None, &[("PATH", path)])
}

fn probe<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["runtimes"]["probes"]
        .as_array()
        .unwrap_or_else(|| panic!("no runtimes in {doc}"))
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no probe {name} in {doc}"))
}

fn installed(program: &str) -> bool {
    std::env::split_paths(&std::env::var_os("PATH").unwrap()).any(|d| d.join(program).is_file())
}

#[test]
fn the_matrix_runs_every_installed_client_through_the_capture_path() {
    let run = doctor(&["--json", "--require", "curl,python,node,git"], &path_with(None)).ok();
    let doc = run.json();
    assert_eq!(doc["status"], "ready", "{doc}");
    let mut expected_ok =
        vec!["curl", "python-urllib", "python-requests", "python-httpx", "node-https", "node-fetch", "git"];
    if installed("java") {
        expected_ok.push("java");
    }
    for name in expected_ok {
        let p = probe(&doc, name);
        assert_eq!(p["status"], "ok", "{name}: {p}");
        assert_eq!((p["captured"].as_bool(), p["ca_trusted"].as_bool()), (Some(true), Some(true)), "{name}: {p}");
        assert!(p["via"].as_str().is_some_and(|v| !v.is_empty()), "{name} says what made it work: {p}");
        assert!(p["fix"].is_null(), "{p}");
    }
    for p in doc["runtimes"]["probes"].as_array().unwrap() {
        let status = p["status"].as_str().unwrap();
        assert!(["ok", "failed", "not_installed"].contains(&status), "{p}");
        let program = match p["runtime"].as_str().unwrap() {
            "python" => "python3",
            other => other,
        };
        if !installed(program) {
            assert_eq!(status, "not_installed", "{p}");
        }
    }
    assert!(doc["runtimes"]["millis"].as_f64().unwrap() > 0.0);
    assert_eq!(doc["runtimes"]["host"], "doctor.authsome.test");

    // The same as a table, one row per client under a `runtimes:` line.
    let text = doctor(&[], &path_with(None)).ok().stdout;
    let summary = text.lines().find(|l| l.starts_with("runtimes:")).unwrap_or_else(|| panic!("{text}"));
    assert!(summary.contains("installed clients work inside a sandbox"), "{summary}");
    assert!(text.lines().any(|l| l.trim_start().starts_with("python-requests") && l.contains(" ok ")), "{text}");
}

/// A client that rejects the run's certificate: `--require` fails with exit 1 and names it, the
/// matrix says it was captured but did not trust the CA, and gives that client's fix.
#[test]
fn require_fails_on_a_client_that_does_not_trust_the_ca() {
    let bin = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let fake = bin.path().join("node");
    std::fs::write(&fake, "#!/bin/sh\necho 'Error: self-signed certificate in certificate chain' >&2\nexit 1\n")
        .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = path_with(Some(bin.path()));

    let run = doctor(&["--json", "--require", "node"], &path).fails(1);
    let doc = run.json();
    assert_eq!(doc["required"], serde_json::json!({"runtimes": ["node"], "failed": ["node (node-https failed)"]}));
    let p = probe(&doc, "node-https").clone();
    assert_eq!(p["status"], "failed", "{p}");
    assert_eq!((p["captured"].as_bool(), p["ca_trusted"].as_bool()), (Some(true), Some(false)), "{p}");
    assert!(p["fix"].as_str().unwrap().contains("NODE_EXTRA_CA_CERTS"), "{p}");
    assert!(p["detail"].as_str().unwrap().contains("self-signed"), "{p}");

    let text = doctor(&["--require", "node"], &path).fails(1);
    assert!(text.stderr.contains("error: required runtimes failed: node (node-https failed)"), "{}", text.stderr);
    assert!(text.stdout.contains("fix: a `ca:` option replaces Node's roots"), "{}", text.stdout);
    // The others still pass, and naming only them succeeds.
    doctor(&["--require", "python,curl"], &path).ok();
    let unknown = doctor(&["--require", "cobol"], &path).fails(2);
    assert!(
        unknown.stderr.contains("not a runtime the doctor probes") && unknown.stderr.contains("hint:"),
        "{}",
        unknown.stderr
    );
}

/// What each trust variable names, checked by Python's `ssl` inside the child: a bundle
/// variable's file alone (no default paths) verifies the proxy's certificate for a provider
/// host, so does the hashed directory alone, and the Java options name a PKCS#12 store.
const CHECK_TRUST: &str = r#"T=$(mktemp); cat > "$T" <<'PY'
import os, ssl, urllib.request
def verifies(**where):
    context = ssl.create_default_context(**where)
    try:
        urllib.request.urlopen("https://api.openai.com/v1/trust", context=context, timeout=20).read()
        return True
    except Exception as e:
        return repr(e)
for v in ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO", "PIP_CERT", "CARGO_HTTP_CAINFO",
          "npm_config_cafile", "NIX_SSL_CERT_FILE", "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", "NODE_EXTRA_CA_CERTS", "DENO_CERT"]:
    f = os.environ.get(v, "")
    r = verifies(cafile=f) if os.path.isfile(f) else "not a file"
    print("trusts " + v if r is True else "FAILS %s=%s: %s" % (v, f, r))
d = os.environ.get("SSL_CERT_DIR", "")
r = verifies(capath=d) if os.path.isdir(d) else "not a directory"
print("trusts SSL_CERT_DIR" if r is True else "FAILS SSL_CERT_DIR=%s: %s" % (d, r))
options = os.environ.get("JAVA_TOOL_OPTIONS", "").split()
store = [o.split("=", 1)[1] for o in options if o.startswith("-Djavax.net.ssl.trustStore=")]
kind = [o.split("=", 1)[1] for o in options if o.startswith("-Djavax.net.ssl.trustStoreType=")]
print("java store type: %s" % kind)
print("java store present" if store and os.path.isfile(store[-1]) else "java store missing")
print("java store:" + (store[-1] if store else ""))
PY
python3 "$T"; rm -f "$T"
"#;

fn assert_trusted(run: &Run) {
    for v in [
        "SSL_CERT_FILE",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "GIT_SSL_CAINFO",
        "PIP_CERT",
        "CARGO_HTTP_CAINFO",
        "npm_config_cafile",
        "NIX_SSL_CERT_FILE",
        "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH",
        "NODE_EXTRA_CA_CERTS",
        "DENO_CERT",
        "SSL_CERT_DIR",
    ] {
        assert!(run.stdout.lines().any(|l| l == format!("trusts {v}")), "{v}:\n{}\n{}", run.stdout, run.stderr);
    }
    assert!(run.stdout.contains("java store type: ['PKCS12']\njava store present\n"), "{}", run.stdout);
}

#[test]
fn every_trust_variable_verifies_the_run_ca_in_the_sandbox() {
    let s = setup();
    let run = s.sandboxed(&[], CHECK_TRUST).ok();
    assert_trusted(&run);
    // Inside, the hashed directory sits where CApath users look, and Debian's JDK `cacerts`
    // link (into /etc/ssl/certs/java/) reaches the run's store.
    let inside = s.sandboxed(&[], "echo \"$SSL_CERT_DIR\"; ls /etc/ssl/certs/java/cacerts").ok();
    assert!(inside.stdout.starts_with("/etc/ssl/certs\n/etc/ssl/certs/java/cacerts"), "{}", inside.stdout);
    // A hostile child cannot plant a root of its own where other tools in the sandbox look, nor
    // change the trust store (both are read-only binds); the host's names are still there.
    let planted = s
        .sandboxed(
            &[],
            "cp \"$SSL_CERT_FILE\" /etc/ssl/certs/0badc0de.0 2>/dev/null && echo planted-root\n\
             echo x 2>/dev/null > /etc/ssl/certs/java/cacerts && echo replaced-store\n\
             echo x 2>/dev/null > /etc/ssl/certs/ca-certificates.crt && echo replaced-bundle\n\
             ls /etc/ssl/certs | grep -c '\\.pem$'",
        )
        .ok();
    assert!(!planted.stdout.contains("planted") && !planted.stdout.contains("replaced"), "{}", planted.stdout);
    let host_pems = std::fs::read_dir("/etc/ssl/certs")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".pem"))
        .count();
    assert_eq!(planted.stdout.trim(), host_pems.to_string(), "the host's names are kept: {}", planted.stdout);
}

#[test]
fn every_trust_variable_verifies_the_run_ca_in_plain_run() {
    let s = setup();
    let mut cmd = s.env.command(&["run", "--", "sh", "-c", CHECK_TRUST]);
    cmd.current_dir(&s.project).env("PATH", path_with(None));
    let out = cmd.stdin(std::process::Stdio::null()).output().unwrap();
    let run = Run::from(out).ok();
    assert_trusted(&run);
    // The store the JVM is pointed at holds the system roots and the profile's CA, as trusted
    // entries the JDK's own tool lists.
    let store = run.stdout.lines().find_map(|l| l.strip_prefix("java store:")).unwrap().to_string();
    if installed("keytool") {
        let out = std::process::Command::new("keytool")
            .args(["-list", "-storetype", "PKCS12", "-keystore", &store])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.matches("trustedCertEntry").count() > 1, "{text}{}", String::from_utf8_lossy(&out.stderr));
    }
}
