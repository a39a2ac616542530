//! The sandbox harness: a fake user home with secrets, a project directory, an HTTPS echo upstream
//! standing in for provider hosts (through AUTHSOME_CONNECT_TO), and `authsome run --sandbox`
//! started from the project with a script that first checks it really is inside (GUARD).
//!
//! Every script that tries an escape starts with GUARD: it checks, inside, that it runs in a
//! network namespace of its own holding only `lo`, and otherwise exits 99 without doing anything
//! (so a sandbox that failed open never flushes this machine's routes or firewall).

use std::path::PathBuf;

use authsome_testkit::{Echo, Pki};
use serde_json::Value;

use super::{Env, Run};

pub const OPENAI_KEY: &str = "sk-SANDBOXREALKEY00000000000000001";
pub const HOSTS: &[&str] = &[
    "api.openai.com",
    "api.github.com",
    "allowed.example.org",
    "blocked.example.org",
    "raw.example.org",
    "registry.npmjs.org",
];

pub const GUARD: &str = r#"
[ -n "$HOST_NETNS" ] || { echo GUARD: HOST_NETNS unset; exit 99; }
[ "$(readlink /proc/self/ns/net)" != "$HOST_NETNS" ] || { echo GUARD: same netns as the host; exit 99; }
links=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\n' ' ')
[ "$links" = "lo " ] || { echo "GUARD: links are '$links'"; exit 99; }
"#;

pub struct Setup {
    pub env: Env,
    /// A fake user home with secrets a sandboxed agent must not see.
    pub user_home: PathBuf,
    pub project: PathBuf,
    _echo: Echo,
}

pub fn host_netns() -> String {
    std::fs::read_link("/proc/self/ns/net").unwrap().to_string_lossy().into_owned()
}

pub fn setup() -> Setup {
    let pki = Pki::new(HOSTS);
    let echo = Echo::https(&pki);
    let base = Env::outside_tmp();
    let ca = pki.write_ca(base.cwd.path(), "upstream-ca.pem");
    let user_home = base.cwd.path().join("home");
    let project = user_home.join("project");
    for dir in [".ssh", ".aws", ".config/gh", "project"] {
        std::fs::create_dir_all(user_home.join(dir)).unwrap();
    }
    std::fs::write(user_home.join(".ssh/id_ed25519"), "PRIVATE-SSH-KEY").unwrap();
    std::fs::write(user_home.join(".aws/credentials"), "aws_secret_access_key = AWSSECRET").unwrap();
    std::fs::write(user_home.join(".bashrc"), "# bashrc\n").unwrap();
    std::fs::write(user_home.join(".netrc"), "machine x password NETRCSECRET").unwrap();
    let connect_to: Vec<String> = HOSTS.iter().map(|h| format!("{h}:443:127.0.0.1:{}", echo.port())).collect();
    let env = base
        .set("AUTHSOME_CONNECT_TO", &connect_to.join(","))
        .set("AUTHSOME_EXTRA_ROOTS", ca.to_str().unwrap())
        .set("HOME", user_home.to_str().unwrap())
        .set("SANDBOX_CANARY", "must-not-pass");
    env.login("openai", "default", OPENAI_KEY);
    Setup { env, user_home, project, _echo: echo }
}

impl Setup {
    /// `authsome run --sandbox [extra…] -- sh -c GUARD+script`, from the project directory.
    pub fn sandboxed(&self, extra: &[&str], script: &str) -> Run {
        let netns = format!("HOST_NETNS={}", host_netns());
        let body = format!("{GUARD}\n{script}");
        let mut args: Vec<&str> = vec!["run", "--sandbox", "--env", &netns];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--", "sh", "-c", &body]);
        let mut cmd = self.env.command(&args);
        cmd.current_dir(&self.project);
        let out = cmd.stdin(std::process::Stdio::null()).output().unwrap();
        Run::from(out).not_failed_open()
    }
}

pub fn echoes(run: &Run) -> Vec<Value> {
    run.stdout.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// A user with no password-database entry and a home of its own, for runs that must not touch
/// the real user's home: with no entry, authsome takes `$HOME` as the user's home.
pub struct Stranger {
    pub uid: u32,
    pub base: tempfile::TempDir,
    pub home: PathBuf,
}

impl Stranger {
    /// `None` when not root (setpriv needs it); callers skip with a printed reason.
    pub fn new(uid: u32) -> Option<Self> {
        use std::os::unix::fs::PermissionsExt;
        if !nix::unistd::geteuid().is_root() {
            return None;
        }
        assert!(nix::unistd::User::from_uid(uid.into()).unwrap().is_none(), "uid {uid} has a passwd entry");
        let base = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let home = base.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let stranger = Stranger { uid, base, home };
        stranger.own(&stranger.home);
        Some(stranger)
    }

    /// Give `path` (and what is below it) to this user.
    pub fn own(&self, path: &std::path::Path) {
        let status =
            std::process::Command::new("chown").args(["-R", &format!("{0}:{0}", self.uid)]).arg(path).status().unwrap();
        assert!(status.success());
    }

    /// `authsome ARGS` as this user from `cwd`, with `HOME` its home and `extra` variables.
    pub fn run(&self, cwd: &std::path::Path, args: &[&str], extra: &[(&str, &str)]) -> Run {
        let mut cmd = std::process::Command::new("setpriv");
        cmd.args([
            &format!("--reuid={}", self.uid),
            &format!("--regid={}", self.uid),
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg("--")
        .arg(super::BIN)
        .args(args)
        .current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .env("HOME", &self.home)
        .env("AUTHSOME_HOME", self.home.join(".authsome"))
        .stdin(std::process::Stdio::null());
        for (name, value) in extra {
            cmd.env(name, value);
        }
        let out = cmd.output().unwrap();
        Run::from(out)
    }
}
