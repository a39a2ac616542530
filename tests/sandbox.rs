//! End-to-end: `authsome run --sandbox -- CMD` with the real binary. Clients that ignore proxy
//! variables (Node's fetch, `curl --noproxy '*'`, Python urllib without proxies) still reach
//! "api.openai.com" — a local echo upstream reached through AUTHSOME_CONNECT_TO — and it sees the
//! real key; then a list of escape attempts that must all fail.
//!
//! Every script that tries an escape starts with GUARD: it checks, inside, that it runs in a
//! network namespace of its own holding only `lo`, and otherwise exits 99 without doing anything
//! (so a sandbox that failed open never flushes this machine's routes or firewall).

mod common;

use std::io::Read;
use std::net::{TcpListener, UdpSocket};
use std::path::Path;
use std::time::Duration;

use authsome_testkit::{Echo, Pki};
use common::sandbox::{GUARD, HOSTS, OPENAI_KEY, echoes, host_netns, setup};
use common::{Env, Run, seen};
use serde_json::Value;

#[test]
fn clients_that_ignore_proxy_settings_are_captured_and_injected() {
    let s = setup();
    let node = r#"node -e "fetch('https://api.openai.com/v1/node').then(r => r.text()).then(t => console.log(t)).catch(e => { console.error(e); process.exit(1) })""#;
    let python = r#"python3 -c "
import urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
print(opener.open('https://api.openai.com/v1/python').read().decode())""#;
    let script = format!(
        "curl -sS --noproxy '*' https://api.openai.com/v1/curl; echo\n{node}\n{python}\n\
         curl -sS https://api.openai.com/v1/cooperating; echo"
    );
    let run = s.sandboxed(&[], &script).ok();
    let seen_by: Vec<(String, Vec<String>)> =
        echoes(&run).iter().map(|e| (e["path"].as_str().unwrap().to_string(), seen(e, "authorization"))).collect();
    let expected = vec![format!("Bearer {OPENAI_KEY}")];
    assert_eq!(
        seen_by,
        vec![
            ("/v1/curl".to_string(), expected.clone()),
            ("/v1/node".to_string(), expected.clone()),
            ("/v1/python".to_string(), expected.clone()),
            ("/v1/cooperating".to_string(), expected),
        ],
        "stderr: {}",
        run.stderr
    );
}

#[test]
fn the_child_sees_no_secret_in_its_environment_or_filesystem() {
    let s = setup();
    let home = s.user_home.display().to_string();
    let authsome_home = s.env.home().display().to_string();
    let script = format!(
        r#"
env | grep -c . >/dev/null
env | grep -q 'OPENAI_API_KEY=sk-authsome_' && echo placeholder-ok
env | grep -E 'AUTHSOME_CONNECT_TO|AUTHSOME_EXTRA_ROOTS|SANDBOX_CANARY' && echo env-leaked
grep -rls "{OPENAI_KEY}" /etc {home} /tmp /proc/self/environ 2>/dev/null && echo key-found
ls -A "{authsome_home}" | head -1 | grep -q . && echo vault-visible
grep -qs PRIVATE-SSH-KEY "{home}/.ssh/id_ed25519" && echo ssh-visible
grep -qs AWSSECRET "{home}/.aws/credentials" && echo aws-visible
grep -qs NETRCSECRET "{home}/.netrc" && echo netrc-visible
ls -A "{home}/.config/gh" | head -1 | grep -q . && echo gh-visible
echo done"#
    );
    let run = s.sandboxed(&[], &script).ok();
    assert_eq!(run.stdout.trim(), "placeholder-ok\ndone", "stderr: {}", run.stderr);
}

#[test]
fn the_filesystem_is_read_only_outside_the_writable_paths() {
    let s = setup();
    let home = s.user_home.display().to_string();
    let script = format!(
        r#"
echo planted >> "{home}/.bashrc" 2>/dev/null && echo bashrc-written
echo x > /etc/authsome-escape 2>/dev/null && echo etc-written
echo x > /usr/authsome-escape 2>/dev/null && echo usr-written
echo ok > ./inside-project && echo project-written
echo ok > /tmp/private && echo tmp-written
echo done"#
    );
    let run = s.sandboxed(&[], &script).ok();
    assert_eq!(run.stdout.trim(), "project-written\ntmp-written\ndone");
    assert_eq!(std::fs::read_to_string(s.user_home.join(".bashrc")).unwrap(), "# bashrc\n");
    assert!(!Path::new("/etc/authsome-escape").exists());
    assert!(s.project.join("inside-project").exists());
    assert!(!Path::new("/tmp/private").exists(), "the child's /tmp is private");

    // --writable adds a path; --fs open leaves the host as it is (but still hides secrets).
    let extra = s.user_home.join("cache");
    std::fs::create_dir_all(&extra).unwrap();
    let run = s
        .sandboxed(&["--writable", extra.to_str().unwrap()], &format!("echo y > {}/f && echo ok", extra.display()))
        .ok();
    assert_eq!(run.stdout.trim(), "ok");
    let run = s
        .sandboxed(
            &["--fs", "open"],
            &format!(
                "echo more >> {home}/.bashrc && echo written; cat {home}/.ssh/id_ed25519 2>/dev/null || echo ssh-hidden"
            ),
        )
        .ok();
    assert_eq!(run.stdout.trim(), "written\nssh-hidden");
}

#[test]
fn the_network_has_no_way_out_but_the_proxy() {
    let s = setup();
    let host_tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    host_tcp.set_nonblocking(true).unwrap();
    let host_udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    host_udp.set_nonblocking(true).unwrap();
    let (tcp_port, udp_port) = (host_tcp.local_addr().unwrap().port(), host_udp.local_addr().unwrap().port());
    let script = format!(
        r#"
probe() {{ python3 -c "$1" 2>/dev/null && echo "$2"; }}
probe "import socket; socket.create_connection(('1.2.3.4', 8080), 2)" raw-ip-reached
probe "import socket; socket.create_connection(('127.0.0.1', {tcp_port}), 2)" host-loopback-reached
probe "import socket; socket.create_connection(('2001:db8::1', 8080), 2)" ipv6-reached
# sendto() always succeeds locally; the host socket below must receive nothing.
python3 -c "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b'x', ('127.0.0.1', {udp_port}))"
probe "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2); s.connect(('1.2.3.4', 443)); s.send(b'quic'); s.recv(10)" quic-answered
python3 -c "
import socket, struct
q = struct.pack('>HHHHHH', 0x1234, 0x0100, 1, 0, 0, 0) + b'\x03api\x06openai\x03com\x00' + struct.pack('>HH', 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3); s.sendto(q, ('8.8.8.8', 53))
data, src = s.recvfrom(512)
print('dns-from', src[0], 'answer', '.'.join(str(b) for b in data[-4:]))"
ip route del local 0.0.0.0/0 table local 2>/dev/null && echo route-deleted
ip link set lo down 2>/dev/null && echo lo-down
nft flush ruleset 2>/dev/null && echo nft-flushed
unshare -Ur true 2>/dev/null && echo nested-userns
echo done"#
    );
    let run = s.sandboxed(&[], &script).ok();
    let lines: Vec<&str> = run.stdout.lines().collect();
    let dns =
        lines.iter().find(|l| l.starts_with("dns-from")).unwrap_or_else(|| panic!("no DNS answer: {}", run.stdout));
    let parts: Vec<&str> = dns.split_whitespace().collect();
    assert_eq!(parts[1], "8.8.8.8", "the answer comes from the address asked");
    assert!(parts[3].starts_with("198.18.") || parts[3].starts_with("198.19."), "fake-IP answer: {dns}");
    assert_eq!(
        lines.iter().filter(|l| !l.starts_with("dns-from")).copied().collect::<Vec<_>>(),
        vec!["done"],
        "{}",
        run.stdout
    );
    std::thread::sleep(Duration::from_millis(100));
    assert!(host_tcp.accept().is_err(), "a connection reached the host's loopback");
    let mut buf = [0u8; 16];
    assert!(host_udp.recv_from(&mut buf).is_err(), "a datagram reached the host's loopback");
}

#[test]
fn the_proxy_refuses_loopback_metadata_and_private_destinations() {
    let s = setup();
    let script = r#"
code() { curl -s -o /dev/null -w '%{http_code} %{http_connect}' -m 5 "$@"; echo; }
code http://169.254.169.254/latest/meta-data/
code http://localhost:7998/health
code -x "$HTTPS_PROXY" http://localhost:7998/health
code -x "$HTTPS_PROXY" https://localhost:7998/health
code -x "$HTTPS_PROXY" http://169.254.169.254/latest/meta-data/
echo done"#;
    let run = s.sandboxed(&[], script).ok();
    for line in run.stdout.lines().filter(|l| *l != "done") {
        assert!(!line.starts_with("200") && !line.ends_with(" 200"), "reached: {line}\n{}", run.stdout);
    }
}

#[test]
fn egress_policy_allowlist_and_deny() {
    let s = setup();
    let script = r#"
curl -s -o /dev/null -w 'allowed %{http_code}\n' -m 5 --noproxy '*' https://allowed.example.org/ || echo "allowed failed"
curl -s -o /dev/null -w 'blocked %{http_code}\n' -m 5 --noproxy '*' https://blocked.example.org/ || echo "blocked refused"
curl -s -o /dev/null -w 'provider %{http_code}\n' -m 5 --noproxy '*' https://api.openai.com/ || echo "provider failed"
"#;
    let run = s.sandboxed(&["--egress", "allowlist", "--allow", "allowed.example.org"], script).ok();
    assert!(run.stdout.contains("allowed 200"), "{}", run.stdout);
    assert!(run.stdout.contains("blocked refused") || run.stdout.contains("blocked 403"), "{}", run.stdout);
    assert!(run.stdout.contains("provider 200"), "{}", run.stdout);
    let run = s
        .sandboxed(
            &["--deny", "api.openai.com"],
            "curl -s -o /dev/null -m 5 https://api.openai.com/ && echo reached || echo refused",
        )
        .ok();
    assert_eq!(run.stdout.trim(), "refused", "{}", run.stdout);
    let log = s.env.run(&["log", "--json", "-n", "100"]).ok().json();
    assert!(
        log.as_array().unwrap().iter().any(|e| e["event"] == "proxy_deny" && e["host"] == "blocked.example.org"),
        "{log}"
    );
}

#[test]
fn exit_codes_stdio_and_host_files() {
    let s = setup();
    let hash = |p: &str| std::fs::read(p).map(|b| b.len()).unwrap_or(0);
    let before = (std::fs::read("/etc/resolv.conf").ok(), hash("/etc/ssl/certs/ca-certificates.crt"));
    assert_eq!(s.sandboxed(&[], "exit 7").code, 7);
    assert_eq!(s.sandboxed(&[], "kill -TERM $$").code, 143);
    let mut child = s
        .env
        .command(&["run", "--sandbox", "--", "cat"])
        .current_dir(&s.project)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let payload: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    let mut stdin = child.stdin.take().unwrap();
    let input = payload.clone();
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &input).unwrap());
    let mut out = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    writer.join().unwrap();
    assert!(child.wait().unwrap().success());
    assert!(out == payload, "stdout differs from stdin");
    let missing =
        s.env.command(&["run", "--sandbox", "--", "no-such-command-xyz"]).current_dir(&s.project).output().unwrap();
    assert_eq!(missing.status.code(), Some(127));
    // The helper starts before the vault is read: a run that fails there never runs the command.
    let marker = s.project.join("ran");
    let bad = s
        .env
        .command(&["run", "--sandbox", "--connection", "openai=nosuch", "--", "touch", marker.to_str().unwrap()])
        .current_dir(&s.project)
        .output()
        .unwrap();
    assert!(!bad.status.success(), "{}", String::from_utf8_lossy(&bad.stderr));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("nosuch"), "{}", String::from_utf8_lossy(&bad.stderr));
    assert!(!marker.exists(), "the command ran although run failed");
    assert_eq!(before, (std::fs::read("/etc/resolv.conf").ok(), hash("/etc/ssl/certs/ca-certificates.crt")));
    let log = s.env.run(&["log", "--json", "-n", "1"]).ok().json();
    assert_eq!(log[0]["mode"], "sandbox");
}

#[test]
fn doctor_sandbox_reports_a_working_sandbox() {
    let env = Env::new();
    let doc = env.run(&["doctor", "--sandbox", "--json"]).ok().json();
    assert_eq!(doc["status"], "ready", "{doc}");
    assert_eq!(doc["live_probe"]["ok"], true);
    // The defaults in force, for users upgrading from the old ones.
    assert_eq!(doc["defaults"]["egress"], "providers");
    assert_eq!(doc["defaults"]["home"], "private");
    assert!(doc["defaults"]["protected_in_writable_paths"].as_array().unwrap().iter().any(|p| p == ".git/hooks"));
    let text = env.run(&["doctor", "--sandbox"]).ok().stdout;
    let starts: Vec<usize> = text
        .lines()
        .filter(|l| !l.starts_with(' '))
        .map(|l| {
            l.find(':').unwrap() + 1 + l[l.find(':').unwrap() + 1..].len()
                - l[l.find(':').unwrap() + 1..].trim_start().len()
        })
        .collect();
    assert!(starts.windows(2).all(|w| w[0] == w[1]), "the values line up: {text}");
}

/// The sandbox without any privilege: as root (CI) the whole run is repeated as a throwaway
/// uid through setpriv; as a normal user it already is rootless.
#[test]
fn rootless_sandbox_injects_and_hides() {
    use std::os::unix::fs::PermissionsExt;
    const UID: u32 = 64_124;
    let root = nix::unistd::geteuid().is_root();
    let pki = Pki::new(HOSTS);
    let echo = Echo::https(&pki);
    let base = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let user_home = base.path().join("home");
    let authsome_home = user_home.join(".authsome");
    let project = user_home.join("project");
    std::fs::create_dir_all(&project).unwrap();
    let ca = pki.write_ca(&user_home, "upstream-ca.pem");
    if root {
        for path in [&user_home, &project, &ca] {
            nix::unistd::chown(path.as_path(), Some(UID.into()), Some(UID.into())).unwrap();
        }
    }
    let run = |args: &[&str], stdin: Option<&str>| -> Run {
        let mut cmd = if root {
            let mut c = std::process::Command::new("setpriv");
            c.args([&format!("--reuid={UID}"), &format!("--regid={UID}"), "--clear-groups", "--inh-caps=-all", "--"]);
            c.arg(common::BIN);
            c
        } else {
            std::process::Command::new(common::BIN)
        };
        cmd.args(args)
            .current_dir(&project)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap())
            .env("HOME", &user_home)
            .env("AUTHSOME_HOME", &authsome_home)
            .env("AUTHSOME_EXTRA_ROOTS", &ca)
            .env("AUTHSOME_CONNECT_TO", format!("api.openai.com:443:127.0.0.1:{}", echo.port()))
            .stdin(if stdin.is_some() { std::process::Stdio::piped() } else { std::process::Stdio::null() })
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("spawn (setpriv is in util-linux)");
        if let Some(input) = stdin {
            let _ = std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.as_bytes());
        }
        let out = child.wait_with_output().unwrap();
        Run::from(out)
    };
    run(&["login", "openai", "--stdin"], Some(OPENAI_KEY)).ok();
    let netns = format!("HOST_NETNS={}", host_netns());
    let script = format!(
        "{GUARD}\nid -u; cat /proc/self/status | grep -E '^CapEff'; ls -A {} | head -1 | grep -q . && echo vault-visible\n\
         curl -sS --noproxy '*' https://api.openai.com/v1/rootless",
        authsome_home.display()
    );
    let out = run(&["run", "--sandbox", "--env", &netns, "--", "sh", "-c", &script], None);
    assert_ne!(out.code, 99, "the sandbox failed open: {}", out.stdout);
    let out = out.ok();
    let mut lines = out.stdout.lines();
    let expected_uid = if root { UID } else { nix::unistd::getuid().as_raw() };
    assert_eq!(lines.next(), Some(expected_uid.to_string().as_str()), "{}", out.stdout);
    assert_eq!(lines.next().map(|l| l.split_whitespace().last().unwrap_or("")), Some("0000000000000000"));
    let echo_json: Value =
        serde_json::from_str(lines.next().unwrap_or_else(|| panic!("{}\n{}", out.stdout, out.stderr))).unwrap();
    assert_eq!(seen(&echo_json, "authorization"), vec![format!("Bearer {OPENAI_KEY}")]);
    assert!(!out.stdout.contains("vault-visible"));
}

#[test]
fn host_sockets_keyrings_and_processes_are_out_of_reach() {
    let s = setup();
    // A Unix socket where an ssh-agent or a session bus would be, and one under /tmp.
    let agent_dir = s.user_home.join(".ssh");
    let agent = agent_dir.join("agent.sock");
    let _agent = std::os::unix::net::UnixListener::bind(&agent).unwrap();
    let tmp_dir = tempfile::tempdir().unwrap();
    let tmp_socket = tmp_dir.path().join("bus.sock");
    let _bus = std::os::unix::net::UnixListener::bind(&tmp_socket).unwrap();
    let script = format!(
        r#"
for sock in "{agent}" "{tmp}"; do
  python3 -c "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])" "$sock" 2>/dev/null && echo "reached $sock"
done
pids=$(ls /proc | grep -cE '^[0-9]+$')
[ "$pids" -le 6 ] || echo "sees $pids processes"
[ -e /proc/{host_pid} ] && echo host-pid-visible
echo done"#,
        agent = agent.display(),
        tmp = tmp_socket.display(),
        host_pid = std::process::id(),
    );
    let run = s.sandboxed(&[], &script).ok();
    assert_eq!(run.stdout.trim(), "done", "stderr: {}", run.stderr);

    // The parent's session keyring: a canary added in a session shared by this shell and the
    // authsome it starts is visible outside and not inside (the command joins a fresh one).
    let canary = format!("authsome-e2e-canary-{}", std::process::id());
    let netns = format!("HOST_NETNS={}", host_netns());
    let inside =
        format!("{GUARD}\nkeyctl search @s user {canary} >/dev/null 2>&1 && echo inside-sees-canary; echo inside-done");
    let outer = format!(
        "keyctl add user {canary} secret-value @s >/dev/null && keyctl search @s user {canary} >/dev/null && echo host-sees-canary; \
         exec \"$0\" run --sandbox --env {netns} -- sh -c \"$1\""
    );
    let mut cmd = std::process::Command::new("keyctl");
    cmd.args(["session", "-", "sh", "-c", &outer, common::BIN, &inside]).current_dir(&s.project);
    for (name, value) in s.env.command(&[]).get_envs() {
        match value {
            Some(v) => cmd.env(name, v),
            None => cmd.env_remove(name),
        };
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.trim(), "host-sees-canary\ninside-done", "stderr: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_policy_file_sets_egress_rules_and_ports() {
    let s = setup();
    let policy = s.project.join("authsome-policy.json");
    std::fs::write(
        &policy,
        r#"{"egress": "allowlist", "allow": ["allowed.example.org"], "deny": [], "ports": [8443]}"#,
    )
    .unwrap();
    let script = r#"
curl -s -o /dev/null -m 5 --noproxy '*' https://allowed.example.org/ && echo allowed-ok
curl -s -o /dev/null -m 5 --noproxy '*' https://blocked.example.org/ && echo blocked-reached
python3 -c "import socket; socket.create_connection(('1.2.3.4', 8443), 2)" 2>/dev/null && echo port-8443-captured
python3 -c "import socket; socket.create_connection(('1.2.3.4', 8444), 2)" 2>/dev/null && echo port-8444-open
echo done"#;
    let run = s.sandboxed(&["--policy", policy.to_str().unwrap()], script).ok();
    assert_eq!(run.stdout.trim(), "allowed-ok\nport-8443-captured\ndone", "stderr: {}", run.stderr);
    std::fs::write(&policy, r#"{"egress": "sometimes"}"#).unwrap();
    let bad = s.env.command(&["run", "--policy", policy.to_str().unwrap(), "--", "true"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("hint:"));
}

#[test]
fn a_file_without_the_exec_bit_gives_126_as_outside() {
    use std::os::unix::fs::PermissionsExt;
    let s = setup();
    let script = s.project.join("noexec");
    std::fs::write(&script, "#!/bin/sh\necho ran\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    let bin = s.project.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(&script, bin.join("noexec-on-path")).unwrap();
    std::fs::set_permissions(bin.join("noexec-on-path"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let path = format!("PATH={}:/usr/bin:/bin", bin.display());
    for args in [
        vec!["run", "--sandbox", "--", "./noexec"],
        vec!["run", "--sandbox", "--env", &path, "--", "noexec-on-path"],
        vec!["run", "--", "./noexec"],
    ] {
        let out = s.env.command(&args).current_dir(&s.project).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(126), "{args:?}: {stderr}");
        assert!(stderr.contains("permission denied"), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?} ran it");
    }
}

#[test]
fn tty_inside_the_sandbox_names_the_users_terminal() {
    if std::process::Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: util-linux `script` (a pseudo-terminal for the run) is not installed");
        return;
    }
    let s = setup();
    // `script` runs authsome on a fresh pty, as a user's terminal would.
    let inner = s.env.command(&[
        "run",
        "--sandbox",
        "--",
        "sh",
        "-c",
        "t=$(tty) && echo \"name=$t\" && echo written-to-tty > \"$t\"",
    ]);
    let quote = |a: &std::ffi::OsStr| format!("'{}'", a.to_string_lossy().replace('\'', r"'\''"));
    let line: Vec<String> = std::iter::once(inner.get_program()).chain(inner.get_args()).map(quote).collect();
    let mut outer = std::process::Command::new("script");
    outer.args(["-qec", &line.join(" "), "/dev/null"]).current_dir(&s.project).stdin(std::process::Stdio::null());
    for (name, value) in inner.get_envs() {
        match value {
            Some(value) => outer.env(name, value),
            None => outer.env_remove(name),
        };
    }
    let out = outer.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let name = stdout.lines().find_map(|l| l.trim().strip_prefix("name=")).unwrap_or_default();
    assert!(name.starts_with("/dev/pts/") && name[9..].parse::<u32>().is_ok(), "{stdout}");
    assert!(stdout.contains("written-to-tty"), "{stdout}");
}
