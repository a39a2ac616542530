//! End-to-end: what a hostile command inside `authsome run --sandbox` must not be able to do,
//! and the safe defaults that stop it (docs/architecture.md, "Threat model"). Each test here
//! failed on the code before the defaults it checks.

mod common;

use common::sandbox::{OPENAI_KEY, echoes, setup};
use common::seen;

const GH_PAT: &str = "ghp_SANDBOXESCAPE0000000000000000000001";

/// A sandbox reaches the hosts of the providers it holds credentials for, and nothing else
/// unless `--allow` names it (a host or a group such as `@npm`); plain `run` keeps every host.
#[test]
fn egress_defaults_to_provider_hosts_and_allow_adds_to_it() {
    let s = setup();
    let probe = r#"
for host in api.openai.com allowed.example.org registry.npmjs.org; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -m 5 --noproxy '*' "https://$host/") || code=refused
  echo "$host $code"
done"#;
    let run = s.sandboxed(&[], probe).ok();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines[0], "api.openai.com 200", "{}", run.stdout);
    for line in &lines[1..] {
        assert!(line.ends_with("refused") || line.ends_with("403"), "reached by default: {line}");
    }

    let run = s.sandboxed(&["--allow", "allowed.example.org", "--allow", "@npm"], probe).ok();
    assert_eq!(
        run.stdout.trim(),
        "api.openai.com 200\nallowed.example.org 200\nregistry.npmjs.org 200",
        "stderr: {}",
        run.stderr
    );

    let unknown = s.sandboxed(&["--allow", "@nosuchgroup"], "true");
    assert_eq!(unknown.code, 125, "{}", unknown.stderr);
    assert!(unknown.stderr.contains("@npm"), "the hint lists the groups: {}", unknown.stderr);

    // Plain run: every host, as before.
    let mut plain = s.env.command(&[
        "run",
        "--",
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "https://allowed.example.org/",
    ]);
    plain.current_dir(&s.project);
    let out = plain.output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "{}", String::from_utf8_lossy(&out.stderr));
}

/// `--provider NAME` exposes only that provider's connections: no placeholder for the others,
/// no injection on their hosts.
#[test]
fn provider_flag_limits_the_connections_a_run_exposes() {
    let s = setup();
    s.env.login("github", "default", GH_PAT);
    let script = r#"echo "github=${GH_TOKEN:-none} openai=${OPENAI_API_KEY:+set}"
curl -sS https://api.github.com/user; echo
curl -sS -H "Authorization: Bearer $OPENAI_API_KEY" https://api.openai.com/v1/models; echo"#;
    let mut cmd = s.env.command(&["run", "--provider", "openai", "--", "sh", "-c", script]);
    cmd.current_dir(&s.project);
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.lines().next(), Some("github=none openai=set"));
    let run = common::Run { code: 0, stdout: stdout.into_owned(), stderr: String::new() };
    let seen_by: Vec<(String, Vec<String>)> =
        echoes(&run).iter().map(|e| (e["host"].as_str().unwrap_or("").to_string(), seen(e, "authorization"))).collect();
    assert_eq!(
        seen_by,
        vec![
            ("api.github.com".to_string(), vec![]),
            ("api.openai.com".to_string(), vec![format!("Bearer {OPENAI_KEY}")])
        ],
        "{}",
        run.stdout
    );

    let not_connected = s.env.command(&["run", "--provider", "anthropic", "--", "true"]).output().unwrap();
    assert_eq!(not_connected.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&not_connected.stderr).contains("authsome login anthropic"));
    let clash = s
        .env
        .command(&["run", "--provider", "openai", "--connection", "github=default", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(clash.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&clash.stderr).contains("--provider github"));
}

/// authsome holds keys in memory: another process of the same user (here: the command it runs)
/// cannot read its memory or environment, and it never dumps core.
#[test]
fn authsome_itself_is_not_dumpable() {
    const UID: u32 = 64_126;
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to run authsome as a throwaway user");
        return;
    }
    let base = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let home = base.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    for path in [base.path(), home.as_path()] {
        nix::unistd::chown(path, Some(UID.into()), Some(UID.into())).unwrap();
    }
    let script = "cat /proc/$PPID/environ >/dev/null 2>&1 && echo environ-readable
head -c 1 /proc/$PPID/mem >/dev/null 2>&1 && echo mem-readable
echo done";
    let out = std::process::Command::new("setpriv")
        .args([&format!("--reuid={UID}"), &format!("--regid={UID}"), "--clear-groups", "--inh-caps=-all", "--"])
        .arg(common::BIN)
        .args(["run", "--", "sh", "-c", script])
        .current_dir(&home)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .env("HOME", &home)
        .env("AUTHSOME_HOME", home.join(".authsome"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.trim(), "done", "stderr: {}", String::from_utf8_lossy(&out.stderr));
}
