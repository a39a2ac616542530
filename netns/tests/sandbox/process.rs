//! Process tests: exit status, signals, terminal, PID 1, capabilities, keyring, fail-closed.

use super::*;

pub fn large_environment_and_odd_arguments_arrive_intact(ctx: &Ctx) -> Result<(), String> {
    let cwd = ctx.workdir("bigenv");
    let mut spec = ctx.spec(&cwd, "");
    // several spec chunks; one string stays under the kernel's 128 KiB per-string limit
    for name in ["BIG", "BIG2", "BIG3"] {
        spec.env.push((name.into(), "x".repeat(100_000).into()));
    }
    spec.env.push(("EMPTY".into(), "".into()));
    spec.args = vec![
        "-c".into(),
        "exec >out.txt; echo big=${#BIG}; echo empty=[${EMPTY-unset}]; printf 'arg=%s\\n' \"$@\"; env | wc -l | sed 's/^/vars=/'".into(),
        "sh".into(),
        "two words".into(),
        "".into(),
        "semi;colon".into(),
    ];
    let (status, out) = run(&spec, false)?;
    expect_success(status, &out)?;
    let want = "big=100000\nempty=[]\narg=two words\narg=\narg=semi;colon\n";
    check(out.starts_with(want), "arguments and environment must arrive byte for byte", &out)?;
    // exactly spec.env (PWD may be added by sh itself)
    let vars: usize = lines(&out).get("vars").and_then(|v| v.parse().ok()).unwrap_or(99);
    check(vars <= spec.env.len() + 1, "nothing but spec.env is passed", &out)
}

pub fn exit_code_propagates(ctx: &Ctx) -> Result<(), String> {
    let cwd = ctx.workdir("exit");
    let (status, out) = run(&ctx.spec(&cwd, "exit 7"), false)?;
    check(status == CommandStatus::Exited(7), &format!("expected Exited(7), got {status:?}"), &out)?;
    check(status.code() == 7, "code", &out)
}

pub fn background_processes_end_with_the_command(ctx: &Ctx) -> Result<(), String> {
    let cwd = ctx.workdir("background");
    let started = Instant::now();
    let (status, out) = run(&ctx.spec(&cwd, "sleep 30 & sleep 30 & exit 3"), false)?;
    check(status == CommandStatus::Exited(3), &format!("expected Exited(3), got {status:?}"), &out)?;
    check(started.elapsed() < Duration::from_secs(5), "wait must not wait for background processes", &out)
}

pub fn death_by_signal_propagates(ctx: &Ctx) -> Result<(), String> {
    let cwd = ctx.workdir("signaled");
    let (status, out) = run(&ctx.spec(&cwd, "kill -TERM $$"), false)?;
    check(status == CommandStatus::Signaled(15), &format!("expected Signaled(15), got {status:?}"), &out)?;
    check(status.code() == 143, "128 + 15", &out)
}

pub fn signals_are_forwarded_to_the_command(ctx: &Ctx) -> Result<(), String> {
    let cwd = ctx.workdir("forward");
    let spec = ctx.spec(&cwd, "trap 'echo got-term; exit 42' TERM\ntouch ready\nwhile :; do sleep 0.02; done");
    let (mut sandbox, _sockets) = Sandbox::start(&ctx.exe, &spec).map_err(|e| format!("{e:?}"))?;
    sandbox.release().map_err(|e| format!("{e:?}"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cwd.join("ready").exists() {
        if Instant::now() > deadline {
            return Err("the command never became ready".into());
        }
        thread::sleep(Duration::from_millis(5));
    }
    sandbox.signaller().signal(libc::SIGTERM).map_err(|e| format!("{e:?}"))?;
    let status = sandbox.wait().map_err(|e| format!("{e:?}"))?;
    let out = fs::read_to_string(cwd.join("out.txt")).unwrap_or_default();
    check(status == CommandStatus::Exited(42) && out.contains("got-term"), &format!("status {status:?}"), &out)
}

pub fn proc_shows_only_the_sandbox(ctx: &Ctx) -> Result<(), String> {
    let cwd = ctx.workdir("proc");
    let script = r#"
echo pids=$(ls /proc | grep -E '^[0-9]+$' | tr '\n' ' ')
echo self=$$
echo init=$(tr '\0' ' ' < /proc/1/cmdline)
cat /proc/1/environ >/dev/null 2>&1; echo init_environ=$?
"#;
    let (status, out) = run(&ctx.spec(&cwd, script), false)?;
    expect_success(status, &out)?;
    let got = lines(&out);
    let pids: Vec<u32> =
        got.get("pids").map(|p| p.split_whitespace().filter_map(|n| n.parse().ok()).collect()).unwrap_or_default();
    check(
        pids.contains(&1) && pids.len() < 10 && pids.iter().all(|&p| p < 50),
        "only a handful of sandbox pids",
        &out,
    )?;
    check(got.get("self").map(String::as_str) == Some("2"), "the command is pid 2", &out)?;
    check(got.get("init").is_some_and(|c| c.contains("__authsome-sandbox-helper")), "pid 1 is our init", &out)?;
    check(got.get("init_environ").is_some_and(|c| c != "0"), "the command must not read init's memory", &out)
}

pub fn capabilities_are_dropped(ctx: &Ctx) -> Result<(), String> {
    let cwd = ctx.workdir("caps");
    let (status, out) = run(
        &ctx.spec(&cwd, "grep -E '^(Cap|NoNewPrivs|Seccomp:)' /proc/self/status | tr -d '\t' | sed 's/:/=/'"),
        false,
    )?;
    expect_success(status, &out)?;
    let got = lines(&out);
    for key in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        check(got.get(key).map(String::as_str) == Some("0000000000000000"), &format!("{key} must be zero"), &out)?;
    }
    check(got.get("NoNewPrivs").map(String::as_str) == Some("1"), "NoNewPrivs must be 1", &out)?;
    check(got.get("Seccomp").map(String::as_str) == Some("2"), "the seccomp filter must be on", &out)
}

pub fn sysctls_and_host_ipc_are_out_of_reach(ctx: &Ctx) -> Result<(), String> {
    // Opening for append writes nothing, so a failure of this test cannot change the host.
    let cwd = ctx.workdir("sysctl");
    let script = r#"
true >> /proc/sys/kernel/core_pattern 2>/dev/null; echo core_pattern=$?
true >> /proc/sys/net/ipv4/ip_forward 2>/dev/null; echo net_sysctl=$?
echo renamed > /proc/self/comm; echo own_proc=$?
hostname authsome-test 2>/dev/null; echo sethostname=$?
echo ipc=$(stat -L -c %i /proc/self/ns/ipc)
echo uts=$(stat -L -c %i /proc/self/ns/uts)
"#;
    let (status, out) = run(&ctx.spec(&cwd, script), false)?;
    expect_success(status, &out)?;
    let got = lines(&out);
    for key in ["core_pattern", "net_sysctl", "sethostname"] {
        check(got.get(key).is_some_and(|c| c != "0"), &format!("{key} must fail"), &out)?;
    }
    check(got.get("own_proc").map(String::as_str) == Some("0"), "the command's own /proc entries stay writable", &out)?;
    for ns in ["ipc", "uts"] {
        let host = fs::metadata(format!("/proc/self/ns/{ns}")).map(|m| m.ino().to_string()).unwrap_or_default();
        check(
            got.get(ns).is_some_and(|inside| *inside != host),
            &format!("{ns} namespace must be the sandbox's own"),
            &out,
        )?;
    }
    Ok(())
}

pub fn terminal_injection_is_blocked(ctx: &Ctx) -> Result<(), String> {
    let cwd = ctx.workdir("tiocsti");
    let script = r#"python3 -c '
import fcntl, termios
try:
    fcntl.ioctl(0, termios.TIOCSTI, b"x"); print("tiocsti=allowed")
except OSError as e:
    print(f"tiocsti={e.errno}")
'"#;
    let (status, out) = run(&ctx.spec(&cwd, script), false)?;
    expect_success(status, &out)?;
    // EPERM from our filter (without it: ENOTTY on a non-terminal, or success on one)
    check(lines(&out).get("tiocsti").map(String::as_str) == Some("1"), "TIOCSTI must fail with EPERM", &out)
}

pub fn stdio_passes_through_untouched(ctx: &Ctx) -> Result<(), String> {
    use nix::fcntl::OFlag;
    use nix::unistd::{dup, dup2_stdin, dup2_stdout, pipe2};
    let cwd = ctx.workdir("stdio");
    let mut spec = ctx.spec(&cwd, "");
    spec.args = vec!["-c".into(), "cat; echo done-on-stdout".into()]; // no redirection: real stdio
    let (in_read, in_write) = pipe2(OFlag::O_CLOEXEC).map_err(|e| e.to_string())?;
    let (out_read, out_write) = pipe2(OFlag::O_CLOEXEC).map_err(|e| e.to_string())?;
    let saved_in = dup(std::io::stdin()).map_err(|e| e.to_string())?;
    let saved_out = dup(std::io::stdout()).map_err(|e| e.to_string())?;
    std::io::stdout().flush().unwrap();
    dup2_stdin(&in_read).map_err(|e| e.to_string())?;
    dup2_stdout(&out_write).map_err(|e| e.to_string())?;
    let started = Sandbox::start(&ctx.exe, &spec);
    // the helper has inherited them: restore ours before anything can fail
    dup2_stdin(&saved_in).unwrap();
    dup2_stdout(&saved_out).unwrap();
    drop((in_read, out_write));
    let (mut sandbox, _sockets) = started.map_err(|e| format!("{e:?}"))?;
    sandbox.release().map_err(|e| format!("{e:?}"))?;
    let request = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{\"bytes\":\"\\u00e9\\t\"}}\n";
    let mut writer = fs::File::from(in_write);
    writer.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    drop(writer);
    let mut output = String::new();
    fs::File::from(out_read).read_to_string(&mut output).map_err(|e| e.to_string())?;
    let status = sandbox.wait().map_err(|e| format!("{e:?}"))?;
    expect_success(status, &output)?;
    check(output == format!("{request}done-on-stdout\n"), "stdin must reach stdout byte for byte", &output)
}

pub fn fails_closed_before_the_command_runs(ctx: &Ctx) -> Result<(), String> {
    let cwd = ctx.workdir("failclosed");
    let mut spec = ctx.spec(&cwd, "");
    spec.program = "authsome-no-such-command".into();
    match Sandbox::start(&ctx.exe, &spec) {
        Err(e @ NamespaceError::CommandNotFound { .. }) => check(e.hint().contains("PATH"), "hint", "")?,
        other => return Err(format!("missing command: expected CommandNotFound, got {other:?}")),
    }
    let mut spec = ctx.spec(&cwd, "touch ran");
    spec.fs.writable = vec![ctx.base.join("does-not-exist")];
    match Sandbox::start(&ctx.exe, &spec) {
        Err(NamespaceError::Setup { step: authsome_netns::Step::OpenHostPath, ref detail, .. })
            if detail.contains("does-not-exist") => {}
        other => return Err(format!("missing writable path: expected Setup(OpenHostPath), got {other:?}")),
    }
    let mut spec = ctx.spec(&cwd, "touch ran");
    spec.inner_proxy_port = Some(443);
    check(matches!(Sandbox::start(&ctx.exe, &spec), Err(NamespaceError::InvalidSpec(_))), "port clash is invalid", "")?;
    // a sandbox dropped before release never runs its command
    let spec = ctx.spec(&cwd, "touch ran");
    let (sandbox, _sockets) = Sandbox::start(&ctx.exe, &spec).map_err(|e| format!("{e:?}"))?;
    drop(sandbox);
    thread::sleep(Duration::from_millis(50));
    check(!cwd.join("ran").exists(), "a command ran without release()", "")
}

/// Child mode for `launcher_death_kills_the_sandbox`: start a sandbox, print its helper pid,
/// then wait to be killed.
pub fn launcher_child() -> ! {
    let ctx = Ctx::new();
    let cwd = ctx.workdir("orphan");
    let spec = ctx.spec(&cwd, "sleep 31.25");
    let (mut sandbox, _sockets) = Sandbox::start(&ctx.exe, &spec).expect("start");
    sandbox.release().expect("release");
    println!("{}", sandbox.pid());
    std::io::stdout().flush().unwrap();
    thread::sleep(Duration::from_secs(60));
    std::process::exit(0);
}

pub fn sleepers() -> Vec<u32> {
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == b"sleep\x0031.25\x00"))
        .collect()
}

pub fn launcher_death_kills_the_sandbox(ctx: &Ctx) -> Result<(), String> {
    let mut child =
        Command::new(&ctx.exe).env(LAUNCHER_ENV, "1").stdout(Stdio::piped()).spawn().map_err(|e| e.to_string())?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).map_err(|e| e.to_string())?;
    let helper: u32 = line.trim().parse().map_err(|_| format!("bad helper pid {line:?}"))?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while sleepers().is_empty() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    if sleepers().is_empty() {
        let _ = child.kill();
        return Err("the sandboxed sleep never showed up".into());
    }
    let child_base = PathBuf::from(format!("/var/tmp/authsome-netns-test-{}-{}", child.id(), ctx.uid));
    child.kill().map_err(|e| e.to_string())?; // SIGKILL: no cleanup code runs in the launcher
    let _ = child.wait();
    let _ = fs::remove_dir_all(child_base);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let helper_alive = fs::read_to_string(format!("/proc/{helper}/stat"))
            .is_ok_and(|s| !s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'));
        if !helper_alive && sleepers().is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("after the launcher died: helper alive {helper_alive}, sleepers {:?}", sleepers()));
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Child mode for `session_keyring_is_fresh`, run under `keyctl session -`: put a key in our
/// session keyring, show it is readable here, then try to read it from inside a sandbox.
pub fn keyring_child() -> ! {
    let ctx = Ctx::new();
    let add = Command::new("keyctl").args(["add", "user", "authsome-test-key", "not-for-the-sandbox", "@s"]).output();
    let outside = Command::new("keyctl").args(["print", "%user:authsome-test-key"]).output();
    let cwd = ctx.workdir("keyring");
    let spec = ctx.spec(&cwd, "keyctl print %user:authsome-test-key; echo inside=$?");
    let inside = run(&spec, false).map(|(status, out)| format!("{status:?} {out}"));
    println!(
        "add_ok={} outside={} inside_result={:?}",
        add.is_ok_and(|o| o.status.success()),
        outside.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned()).unwrap_or_default(),
        inside
    );
    let _ = fs::remove_dir_all(&ctx.base);
    std::process::exit(0);
}

pub fn session_keyring_is_fresh(ctx: &Ctx) -> Result<(), String> {
    if !Path::new("/usr/bin/keyctl").exists() && !Path::new("/bin/keyctl").exists() {
        return Err("keyctl is not installed (apt-get install keyutils)".into());
    }
    let out = Command::new("keyctl")
        .args(["session", "-"])
        .arg(&ctx.exe)
        .env(KEYRING_ENV, "1")
        .stderr(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    let out = String::from_utf8_lossy(&out.stdout).into_owned();
    check(
        out.contains("add_ok=true") && out.contains("outside=not-for-the-sandbox"),
        "control: key readable outside",
        &out,
    )?;
    check(out.contains("Exited(0)"), "the sandboxed command ran", &out)?;
    check(
        !out.contains("inside=0") && !out.contains("not-for-the-sandbox\\ninside"),
        "key must be unreachable inside",
        &out,
    )
}

/// Child mode for `ctrl_c_on_a_terminal_reaches_the_command`: a launcher on a terminal that,
/// like authsome, survives Ctrl-C itself and reports how the command ended.
pub fn tty_child() -> ! {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
    let mut int = SigSet::empty();
    int.add(Signal::SIGINT);
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&int), None).expect("block SIGINT");
    let ctx = Ctx::new();
    let cwd = ctx.workdir("tty");
    // python reports TIOCSTI, then counts the SIGINTs it gets within 1 s of the first one
    let script = r#"exec python3 -c '
import fcntl, signal, termios, time
try:
    fcntl.ioctl(0, termios.TIOCSTI, b"x")
except OSError as e:
    print("tiocsti=%d" % e.errno, flush=True)
hits = []
signal.signal(signal.SIGINT, lambda *a: hits.append(time.time()))
while not hits:
    time.sleep(0.01)
time.sleep(1)
print("sigints=%d" % len(hits), flush=True)
'"#;
    let spec = ctx.spec(&cwd, script);
    let (mut sandbox, _sockets) = Sandbox::start(&ctx.exe, &spec).expect("start");
    sandbox.release().expect("release");
    thread::sleep(Duration::from_millis(300)); // let python finish and sleep start
    println!("started");
    std::io::stdout().flush().unwrap();
    let status = sandbox.wait();
    let out = fs::read_to_string(cwd.join("out.txt")).unwrap_or_default();
    println!("status={status:?} out={out:?}");
    std::io::stdout().flush().unwrap();
    let _ = fs::remove_dir_all(&ctx.base);
    std::process::exit(0);
}

pub fn ctrl_c_on_a_terminal_reaches_the_command(ctx: &Ctx) -> Result<(), String> {
    use std::sync::mpsc;
    let pty = nix::pty::openpty(None, None).map_err(|e| e.to_string())?;
    let slave = fs::File::from(pty.slave);
    let stdio = || slave.try_clone().map(Stdio::from).map_err(|e| e.to_string());
    // setsid -c: a new session whose controlling terminal is the pty, in its foreground group
    let mut child = Command::new("setsid")
        .arg("-c")
        .arg(&ctx.exe)
        .env(TTY_ENV, "1")
        .stdin(stdio()?)
        .stdout(stdio()?)
        .stderr(stdio()?)
        .spawn()
        .map_err(|e| format!("setsid: {e}"))?;
    drop(slave);
    let mut master = fs::File::from(pty.master);
    let reader = master.try_clone().map_err(|e| e.to_string())?;
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            match line {
                Ok(l) => {
                    if tx.send(l).is_err() {
                        break;
                    }
                }
                Err(_) => break, // EIO once the terminal has no writer left
            }
        }
    });
    let mut seen = String::new();
    let wait_for = |what: &str, seen: &mut String| -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
                seen.push_str(&line);
                seen.push('\n');
                if line.contains(what) {
                    return true;
                }
            }
        }
        false
    };
    if !wait_for("started", &mut seen) {
        let _ = child.kill();
        return Err(format!("the sandboxed command did not start; terminal:\n{seen}"));
    }
    let sent = Instant::now();
    master.write_all(b"\x03").map_err(|e| e.to_string())?; // Ctrl-C
    let ended = wait_for("status=", &mut seen);
    let latency = sent.elapsed();
    // the child exits by itself after printing its status; kill it only if it does not
    let deadline = Instant::now() + Duration::from_secs(3);
    while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = fs::remove_dir_all(format!("/var/tmp/authsome-netns-test-{}-{}", child.id(), ctx.uid));
    check(ended, "no status after Ctrl-C", &seen)?;
    check(seen.contains("status=Ok(Exited(0))"), "the command must end normally after handling SIGINT", &seen)?;
    check(seen.contains("sigints=1"), "Ctrl-C must reach the command exactly once", &seen)?;
    check(latency < Duration::from_secs(3), "Ctrl-C must act at once (python waits 1 s to count)", &seen)?;
    check(seen.contains("tiocsti=1"), "TIOCSTI on the real terminal must fail with EPERM", &seen)
}

/// Child mode for `probe_inside_a_sandbox_explains_the_refusal`: runs inside a sandbox, where
/// user namespaces are switched off, and prints what `probe` says.
pub fn nested_probe_child() -> ! {
    let report = probe_with(&std::env::current_exe().unwrap());
    let kind = |e: &NamespaceError| format!("{e:?}").split([' ', '{', '(']).next().unwrap_or("").to_owned();
    println!("live={}", report.live.as_ref().err().map(kind).unwrap_or_else(|| "ok".into()));
    println!("static={}", report.static_problem.as_ref().map(kind).unwrap_or_else(|| "none".into()));
    if let Err(e) = &report.live {
        println!("message={e}");
        println!("hint={}", e.hint());
    }
    println!("container={}", report.facts.container.unwrap_or_default());
    std::process::exit(0);
}

pub fn probe_inside_a_sandbox_explains_the_refusal(ctx: &Ctx) -> Result<(), String> {
    // A sandbox is a host where user namespaces are disabled (user.max_user_namespaces=0) and
    // which is itself inside a user namespace: the live failure path of `doctor --sandbox`.
    let cwd = ctx.workdir("nested");
    let mut spec = ctx.spec(&cwd, &format!("exec {}", ctx.exe.display()));
    spec.env.push((NESTED_ENV.into(), "1".into()));
    let (status, out) = run(&spec, false)?;
    expect_success(status, &out)?;
    let got = lines(&out);
    check(
        got.get("live").map(String::as_str) == Some("UserNamespacesDisabled"),
        "live probe must name the cause",
        &out,
    )?;
    check(got.get("static").map(String::as_str) == Some("UserNamespacesDisabled"), "static check too", &out)?;
    check(got.get("message").is_some_and(|m| m.contains("user.max_user_namespaces = 0")), "the sysctl is named", &out)?;
    check(
        got.get("hint").is_some_and(|h| h.contains("authsome run") && !h.contains("--sandbox=container")),
        "the hint offers plain `authsome run` and no backend that does not exist",
        &out,
    )?;
    // (this machine has a /.dockerenv, which wins over the uid_map check)
    check(got.get("container").is_some_and(|c| !c.is_empty()), "nesting is detected", &out)
}

/// `wait` returns with the command's status while the helper may still be tearing the
/// namespaces down; the helper is reaped anyway (by a thread), never left a zombie.
pub fn helper_is_reaped_after_wait(ctx: &Ctx) -> Result<(), String> {
    let cwd = ctx.workdir("reaped");
    let spec = ctx.spec(&cwd, "exit 3");
    let (mut sandbox, _sockets) = Sandbox::start(&ctx.exe, &spec).map_err(|e| format!("{e:?}"))?;
    sandbox.release().map_err(|e| format!("{e:?}"))?;
    let pid = sandbox.pid();
    let status = sandbox.wait().map_err(|e| format!("{e:?}"))?;
    if status.code() != 3 {
        return Err(format!("expected exit 3, got {status:?}"));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    // A reaped helper has no /proc entry; an unreaped one stays a zombie ("Z") for good.
    while fs::metadata(format!("/proc/{pid}")).is_ok() {
        if Instant::now() > deadline {
            let state = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            return Err(format!("helper {pid} not reaped 5 s after wait: {state}"));
        }
        thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}
