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

fn git(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The working directory is writable, but nothing in it that the host runs or trusts later:
/// git's config, hooks and attributes (here and in a nested repository), direnv, editor and
/// agent configuration, the policy file of this very run — also where they do not exist yet,
/// and also by renaming what holds them. Commits, branches and the index still work.
#[test]
fn the_working_directory_cannot_plant_code_the_host_runs_later() {
    let s = setup();
    git(&s.project, &["init", "-q"]);
    git(&s.project, &["commit", "-q", "--allow-empty", "-m", "init"]);
    let nested = s.project.join("vendor/lib");
    std::fs::create_dir_all(&nested).unwrap();
    git(&nested, &["init", "-q"]);
    let policy = s.project.join("policy.json");
    std::fs::write(&policy, r#"{"egress": "providers"}"#).unwrap();
    let config_before = std::fs::read_to_string(s.project.join(".git/config")).unwrap();
    let script = r#"
try() { sh -c "$1" 2>/dev/null && echo "$2"; }
try 'git config core.fsmonitor "touch /tmp/pwned #"' config-written
try 'echo x > .git/hooks/pre-commit' hook-written
try 'mkdir -p .git/info && echo "* filter=evil" >> .git/info/attributes' attributes-written
try 'echo evil > .envrc' envrc-written
try 'mkdir -p .vscode && echo {} > .vscode/tasks.json' vscode-written
try 'echo {} > .mcp.json' mcp-written
try 'mkdir -p .claude/commands && echo x > .claude/commands/x.md' claude-written
try 'echo x > .gitmodules' gitmodules-written
try 'git -C vendor/lib config core.pager evil' nested-config-written
try 'mv .git .git-old' git-moved
try 'rm -rf .vscode' vscode-removed
try 'echo {\"egress\":\"all\"} > policy.json' policy-widened
echo work > file.txt && git add file.txt && git -c user.name=a -c user.email=a@b commit -qm work && echo committed
git checkout -qb feature && echo branched
echo done"#;
    let run = s.sandboxed(&["--policy", policy.to_str().unwrap()], script).ok();
    assert_eq!(run.stdout.trim(), "committed\nbranched\ndone", "stderr: {}", run.stderr);

    assert_eq!(std::fs::read_to_string(s.project.join(".git/config")).unwrap(), config_before);
    assert!(!s.project.join(".git/hooks/pre-commit").exists());
    assert_eq!(std::fs::read_to_string(&policy).unwrap(), r#"{"egress": "providers"}"#);
    // The placeholders go once the run is over: the sandbox's janitor removes them right after
    // the command ends, off the run's critical path (netns/src/janitor.rs), so give it a moment.
    for name in [".envrc", ".vscode", ".mcp.json", ".claude", ".gitmodules", ".git-old"] {
        assert!(gone_soon(&s.project.join(name)), "{name} was left in the project");
    }
    let log =
        std::process::Command::new("git").args(["log", "--format=%s", "feature"]).current_dir(&s.project).output();
    assert_eq!(String::from_utf8_lossy(&log.unwrap().stdout), "work\ninit\n");

    // The explicit opt-out.
    let run = s.sandboxed(&["--writable", ".git"], "git config authsome.test yes && echo written").ok();
    assert_eq!(run.stdout.trim(), "written", "stderr: {}", run.stderr);
}

/// The home is an empty private directory by default: credential files, histories and caches
/// of the real home are not there; toolchains and ~/.gitconfig are, read-only; what the
/// command writes there is gone after the run. `--fs home` shows the real home minus the
/// credential files; `--read` adds a path.
#[test]
fn the_home_is_private_by_default() {
    use std::os::unix::fs::PermissionsExt;
    let Some(user) = common::sandbox::Stranger::new(64_130) else {
        eprintln!("skipped: needs root to run authsome as a throwaway user");
        return;
    };
    let home = &user.home;
    for (path, text) in [
        (".git-credentials", "https://u:GITSECRET@github.com"),
        (".npmrc", "//registry.npmjs.org/:_authToken=NPMSECRET"),
        (".bash_history", "export TOKEN=HISTSECRET"),
        (".config/gcloud/credentials.db", "GCLOUDSECRET"),
        (".gitconfig", "[user]\n\tname = Sandboxed Tester\n"),
        (".cargo/bin/mytool", "#!/bin/sh\necho tool-ran\n"),
        ("notes/todo.txt", "readable-with-read"),
        ("project/.keep", ""),
    ] {
        let file = home.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, text).unwrap();
    }
    std::fs::set_permissions(home.join(".cargo/bin/mytool"), std::fs::Permissions::from_mode(0o755)).unwrap();
    user.own(home);
    let project = home.join("project");
    let script = r#"cat ~/.git-credentials ~/.npmrc ~/.bash_history ~/.config/gcloud/credentials.db 2>/dev/null
cat ~/notes/todo.txt 2>/dev/null
~/.cargo/bin/mytool
git config --global user.name
echo cache > ~/.cache-test && cat ~/.cache-test
echo out > result.txt && echo project-written
ls -A ~ | tr '\n' ' '; echo"#;
    let run = user.run(&project, &["run", "--sandbox", "--", "sh", "-c", script], &[]);
    assert_eq!(run.code, 0, "{}", run.all());
    let mut lines = run.stdout.lines();
    assert_eq!(lines.next(), Some("tool-ran"), "{}", run.all());
    assert_eq!(lines.next(), Some("Sandboxed Tester"));
    assert_eq!(lines.next(), Some("cache"));
    assert_eq!(lines.next(), Some("project-written"));
    let listing = lines.next().unwrap_or_default();
    for secret in [".git-credentials", ".npmrc", ".bash_history", "notes"] {
        assert!(!listing.split_whitespace().any(|e| e == secret), "{secret} in the private home: {listing}");
    }
    assert!(!run.stdout.contains("SECRET") && !run.stdout.contains("readable-with-read"), "{}", run.stdout);
    assert!(!home.join(".cache-test").exists(), "the private home was written through");
    assert_eq!(std::fs::read_to_string(project.join("result.txt")).unwrap(), "out\n");

    let notes = home.join("notes");
    let run = user.run(
        &project,
        &[
            "run",
            "--sandbox",
            "--read",
            notes.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            "cat ~/notes/todo.txt; echo x > ~/notes/n 2>/dev/null && echo wrote",
        ],
        &[],
    );
    assert_eq!(run.stdout.trim(), "readable-with-read", "{}", run.all());

    let run = user.run(
        &project,
        &[
            "run",
            "--sandbox",
            "--fs",
            "home",
            "--",
            "sh",
            "-c",
            "cat ~/notes/todo.txt; echo; cat ~/.git-credentials ~/.npmrc 2>/dev/null; echo end",
        ],
        &[],
    );
    assert_eq!(run.stdout.trim(), "readable-with-read\nend", "{}", run.all());
}

/// From the home, an ancestor of it, or `/`: nothing on the host is writable, and one notice
/// says so (MCP clients often start servers from `/` or the home). `--writable` of such a
/// directory is refused.
#[test]
fn a_home_or_root_working_directory_gets_nothing_writable() {
    let Some(user) = common::sandbox::Stranger::new(64_131) else {
        eprintln!("skipped: needs root to run authsome as a throwaway user");
        return;
    };
    let script = "touch here.txt 2>/dev/null; touch /tmp/t && echo tmp-ok; echo served";
    for cwd in [user.home.clone(), std::path::PathBuf::from("/")] {
        let run = user.run(&cwd, &["run", "--sandbox", "--", "sh", "-c", script], &[]);
        assert_eq!(run.code, 0, "{}", run.all());
        assert_eq!(run.stdout.trim(), "tmp-ok\nserved", "{}", run.all());
        assert!(run.stderr.contains("nothing on the host is writable"), "{}", run.stderr);
        assert!(!cwd.join("here.txt").exists(), "wrote into {}", cwd.display());
        let quiet = user.run(&cwd, &["--quiet", "run", "--sandbox", "--", "true"], &[]);
        assert_eq!((quiet.code, quiet.stderr.as_str()), (0, ""), "{}", quiet.all());
    }
    let project = user.home.join("p");
    std::fs::create_dir_all(&project).unwrap();
    user.own(&project);
    let refused =
        user.run(&project, &["run", "--sandbox", "--writable", user.home.to_str().unwrap(), "--", "true"], &[]);
    assert_eq!(refused.code, 125, "{}", refused.all());
    assert!(refused.stderr.contains("--fs open"), "{}", refused.stderr);
}

/// Users whose earlier sandboxed runs had the old defaults are told once; new users never.
#[test]
fn changed_defaults_are_announced_once_to_earlier_sandbox_users() {
    let s = setup();
    let first = s.sandboxed(&[], "true").ok();
    assert!(!first.stderr.contains("safer defaults"), "a new user is not told: {}", first.stderr);

    let s = setup();
    let old_run = r#"{"timestamp":"2026-11-01T10:00:00.000000+00:00","event":"run","profile":"default","phase":"start","mode":"sandbox"}"#;
    let log = s.env.home().join("audit.log");
    let mut text = std::fs::read_to_string(&log).unwrap_or_default();
    text = format!("{old_run}\n{text}");
    std::fs::write(&log, text).unwrap();
    let first = s.sandboxed(&[], "true").ok();
    assert!(first.stderr.contains("safer defaults") && first.stderr.contains("Upgrading"), "{}", first.stderr);
    let second = s.sandboxed(&[], "true").ok();
    assert!(!second.stderr.contains("safer defaults"), "told twice: {}", second.stderr);
}

/// An endpoint on a provider host that echoes the request (headers, query) cannot hand the real
/// key to the child: the response is scrubbed, and a placeholder outside the provider's
/// credential header is refused before anything is sent. TRACE is never forwarded.
#[test]
fn the_real_key_never_comes_back_to_the_child() {
    let s = setup();
    let script = r#"curl -sS -H "Authorization: Bearer $OPENAI_API_KEY" https://api.openai.com/v1/echo; echo
curl -s -o /dev/null -w 'other-header %{http_code}\n' -H "X-Debug: $OPENAI_API_KEY" https://api.openai.com/v1/echo
curl -s -o /dev/null -w 'query %{http_code}\n' "https://api.openai.com/v1/echo?ref=$OPENAI_API_KEY"
curl -s -o /dev/null -w 'path %{http_code}\n' "https://api.openai.com/v1/$OPENAI_API_KEY"
curl -s -o /dev/null -w 'trace %{http_code}\n' -X TRACE https://api.openai.com/v1/echo"#;
    let run = s.sandboxed(&[], script).ok();
    assert!(!run.stdout.contains(OPENAI_KEY) && !run.stderr.contains(OPENAI_KEY), "the key came back: {}", run.stdout);
    let echoed = echoes(&run);
    assert_eq!(echoed.len(), 1, "only the well-formed request reached the upstream: {}", run.stdout);
    assert_eq!(seen(&echoed[0], "authorization"), vec![format!("Bearer {OPENAI_KEY}")], "the upstream got the key");
    let masked = echoed[0]["headers"].as_array().unwrap().iter().find(|h| h[0] == "authorization").unwrap()[1].clone();
    assert_eq!(masked.as_str().unwrap().len(), format!("Bearer {OPENAI_KEY}").len(), "masked to the same length");
    let codes: Vec<&str> = run.stdout.lines().skip(1).collect();
    assert_eq!(codes, ["other-header 403", "query 403", "path 403", "trace 405"], "{}", run.stdout);
}

/// Through the listener for proxy-aware clients too, only the captured ports are reachable,
/// and every refusal is explained once per destination on stderr.
#[test]
fn other_ports_are_refused_and_denials_are_explained_once() {
    let s = setup();
    let script = r#"curl -s -o /dev/null -w '%{http_connect}\n' https://api.openai.com:8443/ || true
curl -s -o /dev/null https://blocked.example.org/ || true
curl -s -o /dev/null https://blocked.example.org/again || true
echo done"#;
    let run = s.sandboxed(&[], script).ok();
    assert_eq!(run.stdout.trim(), "403\ndone", "stderr: {}", run.stderr);
    let lines: Vec<&str> = run.stderr.lines().filter(|l| l.starts_with("authsome: denied")).collect();
    assert!(lines.iter().any(|l| l.contains("api.openai.com:8443") && l.contains("--port 8443")), "{lines:?}");
    let blocked: Vec<&&str> = lines.iter().filter(|l| l.contains("blocked.example.org")).collect();
    assert_eq!(blocked.len(), 1, "once per destination: {lines:?}");
    assert!(blocked[0].contains("--allow blocked.example.org"), "{lines:?}");
    let quiet = s.sandboxed(&["--quiet"], "curl -s -o /dev/null https://blocked.example.org/; echo done").ok();
    assert!(!quiet.stderr.contains("denied"), "{}", quiet.stderr);
}

/// Whether `path` is gone, or goes within a few seconds.
fn gone_soon(path: &std::path::Path) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while path.symlink_metadata().is_ok() {
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    true
}
