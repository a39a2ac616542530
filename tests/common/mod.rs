//! Shared harness for end-to-end tests: the real `authsome` binary, a temporary
//! `AUTHSOME_HOME`, and an environment scrubbed of the developer's own settings.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub mod sandbox;

pub const BIN: &str = env!("CARGO_BIN_EXE_authsome");

/// A throwaway home and working directory.
pub struct Env {
    pub home: tempfile::TempDir,
    pub cwd: tempfile::TempDir,
    extra: Vec<(String, String)>,
}

/// What a run produced.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(out: Output) -> Self {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Run {
    /// A sandboxed run whose guard (`common::sandbox::GUARD`) did not find itself on the host's
    /// network (it exits 99 there).
    #[track_caller]
    pub fn not_failed_open(self) -> Self {
        assert_ne!(self.code, 99, "the sandbox failed open: {}", self.stdout);
        self
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(self.code, 0, "expected success\nstdout: {}\nstderr: {}", self.stdout, self.stderr);
        self
    }
    #[track_caller]
    pub fn fails(self, code: i32) -> Self {
        assert_eq!(self.code, code, "expected exit {code}\nstdout: {}\nstderr: {}", self.stdout, self.stderr);
        self
    }
    /// Everything the user saw.
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

impl Env {
    pub fn new() -> Self {
        Self { home: tempfile::tempdir().unwrap(), cwd: tempfile::tempdir().unwrap(), extra: Vec::new() }
    }

    /// Directories outside /tmp (the sandbox gives the child a private /tmp, which would hide
    /// anything under it for the wrong reason).
    pub fn outside_tmp() -> Self {
        // A checkout under /tmp puts the target directory there too: use /var/tmp then.
        let target = env!("CARGO_TARGET_TMPDIR");
        let base = if Path::new(target).starts_with("/tmp") { "/var/tmp" } else { target };
        Self { home: tempfile::tempdir_in(base).unwrap(), cwd: tempfile::tempdir_in(base).unwrap(), extra: Vec::new() }
    }

    pub fn home(&self) -> &Path {
        self.home.path()
    }

    pub fn set(mut self, name: &str, value: &str) -> Self {
        self.extra.push((name.into(), value.into()));
        self
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args).current_dir(self.cwd.path());
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name.starts_with("AUTHSOME_") || name.ends_with("_API_KEY") || name.ends_with("_TOKEN") {
                cmd.env_remove(name.as_ref());
            }
        }
        cmd.env("AUTHSOME_HOME", self.home.path()).env("NO_COLOR", "1").env_remove("RUST_BACKTRACE");
        // No keychain unless a test brings its own (tests/common/secret_service.rs): a developer's
        // desktop keychain must neither be used nor change which key backend a profile gets.
        cmd.env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/authsome-tests/bus");
        for (name, value) in &self.extra {
            cmd.env(name, value);
        }
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, None, &[])
    }

    pub fn run_stdin(&self, args: &[&str], stdin: &str) -> Run {
        self.run_with(args, Some(stdin), &[])
    }

    pub fn run_with(&self, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Run {
        let mut cmd = self.command(args);
        for (name, value) in env {
            cmd.env(name, value);
        }
        cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn authsome");
        if let Some(input) = stdin {
            // The command may exit before reading (an early error): a broken pipe is fine.
            let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
        }
        Run::from(child.wait_with_output().unwrap())
    }

    /// Store an API key the way a user does.
    pub fn login(&self, provider: &str, connection: &str, secret: &str) {
        self.run_stdin(&["login", provider, "--connection", connection, "--stdin"], secret).ok();
    }

    pub fn file(&self, relative: &str) -> PathBuf {
        self.home.path().join(relative)
    }

    /// Every byte under the home directory, for "no secret on disk" checks.
    pub fn all_home_bytes(&self) -> Vec<(PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        let mut stack = vec![self.home.path().to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    out.push((path.clone(), std::fs::read(&path).unwrap()));
                }
            }
        }
        out
    }
}

/// Replace run-specific text (temp paths, timestamps, versions) for snapshots.
pub fn redact(text: &str, env: &Env) -> String {
    let mut out = text.replace(&env.home.path().display().to_string(), "[HOME]");
    out = out.replace(&env.cwd.path().display().to_string(), "[CWD]");
    let iso = regex_lite(&out);
    out = iso;
    out.replace(env!("CARGO_PKG_VERSION"), "[VERSION]")
}

/// `2026-11-25T13:07:32.304029Z` / `+00:00` → `[TIME]` without a regex dependency.
fn regex_lite(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let looks_like_date = i + 19 <= bytes.len()
            && bytes[i..i + 4].iter().all(u8::is_ascii_digit)
            && bytes[i + 4] == b'-'
            && bytes[i + 7] == b'-'
            && bytes[i + 10] == b'T'
            && bytes[i + 13] == b':';
        if looks_like_date {
            let mut j = i + 19;
            while j < bytes.len() && (bytes[j].is_ascii_digit() || b".:+Z".contains(&bytes[j])) {
                j += 1;
            }
            out.push_str("[TIME]");
            i = j;
        } else {
            let ch = text[i..].chars().next().unwrap();
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// Real clients installed by `.ci/install-deps` (a Python venv and npm packages).
pub fn test_deps() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-deps");
    assert!(
        dir.join("py/bin/python").is_file() && dir.join("node/node_modules").is_dir(),
        "test clients are missing: run `bash .ci/install-deps` (it installs them into {})",
        dir.display()
    );
    dir
}

pub fn python() -> PathBuf {
    test_deps().join("py/bin/python")
}

pub fn node_modules() -> PathBuf {
    test_deps().join("node/node_modules")
}

/// The values of header `name` that a test echo received, as it received them: read from its
/// `headers_hex` (the plain `headers` come back through the proxy with the real credential
/// masked).
pub fn seen(echo: &serde_json::Value, name: &str) -> Vec<String> {
    echo["headers_hex"]
        .as_array()
        .unwrap_or_else(|| panic!("not an echo: {echo}"))
        .iter()
        .filter(|h| h[0].as_str().unwrap().eq_ignore_ascii_case(name))
        .map(|h| unhex(h[1].as_str().unwrap()))
        .collect()
}

/// The query string a test echo received (see [`seen`]).
pub fn seen_query(echo: &serde_json::Value) -> String {
    unhex(echo["query_hex"].as_str().unwrap_or_default())
}

fn unhex(hex: &str) -> String {
    let bytes: Vec<u8> = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
    String::from_utf8(bytes).unwrap()
}

/// Fail if `secret` appears in clear anywhere under the home (every file, every byte).
#[track_caller]
pub fn no_secret_on_disk(env: &Env, secret: &str) {
    for (path, bytes) in env.all_home_bytes() {
        assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "secret found in {}", path.display());
    }
}
