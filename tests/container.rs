//! End-to-end: `authsome run --sandbox=container --image IMG -- CMD` against real podman
//! (rootful) and the offline test image `localhost/authsome-test:1` (images/test-image.sh,
//! built on first use). Clients inside the workload reach "api.openai.com" — the local echo
//! upstream, dialled by the HOST's proxy through AUTHSOME_CONNECT_TO — and it sees the real key
//! while the container holds only placeholders; then escape attempts that must all fail, and
//! no container left behind after success, failure or `kill -9`.
//!
//! Every escape script starts with GUARD (tests/common/sandbox.rs): inside, the network
//! namespace must differ from the host's and hold only `lo`, or it exits 99 doing nothing.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::sandbox::{GUARD, OPENAI_KEY, Setup, echoes, host_netns, setup};
use common::{Run, seen};

const IMAGE: &str = "localhost/authsome-test:1";
const PID_LABEL: &str = "io.authsome.pid";

/// Build the test image once per test process (cached as a tar under target/).
fn image() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../images/test-image.sh");
        let status = Command::new(script).status().expect("run images/test-image.sh");
        assert!(status.success(), "images/test-image.sh failed: the container tests need podman and mmdebstrap");
    });
    IMAGE
}

/// `authsome run --sandbox=container --image IMG [extra…] -- sh -c GUARD+script` from the
/// project directory; returns the run and the pid authsome had (its containers' label).
fn contained(s: &Setup, extra: &[&str], script: &str, stdin: &[u8]) -> (Run, u32) {
    let netns = format!("HOST_NETNS={}", host_netns());
    let body = format!("{GUARD}\n{script}");
    let mut args: Vec<&str> = vec!["run", "--sandbox=container", "--image", image(), "--env", &netns];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", "sh", "-c", &body]);
    let mut cmd = s.env.command(&args);
    cmd.current_dir(&s.project).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let pid = child.id();
    let _ = child.stdin.take().unwrap().write_all(stdin);
    let out = child.wait_with_output().unwrap();
    let run = Run::from(out);
    assert_ne!(run.code, 99, "the container sandbox failed open: {}", run.stdout);
    (run, pid)
}

/// Containers whose owner was authsome process `pid`.
fn containers_of(pid: u32) -> Vec<String> {
    let out = Command::new("podman")
        .args(["ps", "-a", "--filter", &format!("label={PID_LABEL}={pid}"), "--format", "{{.Names}}"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

/// The run's containers are removed right after it ends (by its janitor, off authsome's exit
/// path: a few hundred milliseconds).
fn gone(pid: u32, when: &str) {
    wait_until(&format!("no container is left {when}"), Duration::from_secs(15), || containers_of(pid).is_empty());
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn clients_in_the_container_are_captured_and_injected_on_the_host() {
    let s = setup();
    let node = r#"node -e "fetch('https://api.openai.com/v1/node').then(r => r.text()).then(t => console.log(t)).catch(e => { console.error(e); process.exit(1) })""#;
    let python = r#"python3 -c "
import requests
s = requests.Session()
s.trust_env = False
print(s.get('https://api.openai.com/v1/python').text)""#;
    let script = format!(
        "curl -sS --noproxy '*' https://api.openai.com/v1/curl; echo\n{node}\n{python}\n\
         curl -sS https://api.openai.com/v1/cooperating; echo"
    );
    let (run, pid) = contained(&s, &[], &script, b"");
    let run = run.ok();
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
    assert!(run.stderr.contains("sandbox backend: container (podman"), "{}", run.stderr);
    gone(pid, "after success");
}

#[test]
fn no_credential_enters_the_container() {
    let s = setup();
    let script = format!(
        r#"
env | grep -q 'OPENAI_API_KEY=sk-authsome_' && echo placeholder-ok
env | grep -E 'AUTHSOME_CONNECT_TO|AUTHSOME_EXTRA_ROOTS|SANDBOX_CANARY' && echo env-leaked
grep -rls "{OPENAI_KEY}" /etc /tmp /run /proc/self/environ 2>/dev/null && echo key-found
cat /proc/1/environ 2>/dev/null && echo sidecar-environ-read
ls /proc/1/root/ 2>/dev/null && echo sidecar-root-read
cat /proc/1/root/run/authsome/token 2>/dev/null && echo token-read
ls /run/authsome 2>/dev/null && echo channel-visible
echo done"#
    );
    let (run, _) = contained(&s, &[], &script, b"");
    assert_eq!(run.ok().stdout.trim(), "placeholder-ok\ndone");
}

#[test]
fn exit_code_and_stdio_are_byte_exact() {
    let s = setup();
    let input: Vec<u8> = (0u8..=255).chain(b"\r\n\x00end".iter().copied()).collect();
    let (run, pid) = contained(&s, &["--quiet"], "cat; printf 'tail\\000\\377'; echo to-stderr >&2; exit 7", &input);
    assert_eq!(run.code, 7, "{}", run.stderr);
    let mut expected = String::from_utf8_lossy(&input).into_owned();
    expected.push_str(&String::from_utf8_lossy(b"tail\x00\xff"));
    assert_eq!(run.stdout, expected);
    assert_eq!(run.stderr, "to-stderr\n", "--quiet leaves stderr to the command");
    gone(pid, "after a failing command");
}

/// The address of this host that is not loopback (where a leak would land), if any.
fn host_address() -> Option<String> {
    let out = Command::new("hostname").arg("-I").output().ok()?;
    String::from_utf8_lossy(&out.stdout).split_whitespace().find(|a| !a.contains(':')).map(str::to_string)
}

#[test]
fn escapes_from_the_workload_never_leave() {
    let s = setup();
    // Listeners this test controls on the host: any byte or connection here is an escape.
    let tcp = TcpListener::bind("0.0.0.0:0").unwrap();
    tcp.set_nonblocking(true).unwrap();
    let udp = UdpSocket::bind("0.0.0.0:0").unwrap();
    udp.set_nonblocking(true).unwrap();
    let (tport, uport) = (tcp.local_addr().unwrap().port(), udp.local_addr().unwrap().port());
    let ip = host_address().unwrap_or_else(|| "127.0.0.1".into());
    let script = format!(
        r#"
curl -s -m 3 --noproxy '*' -o /dev/null http://{ip}:{tport}/ && echo tcp-host-ip
curl -s -m 3 --noproxy '*' -o /dev/null http://127.0.0.1:{tport}/ && echo tcp-host-loopback
curl -sf -m 3 --noproxy '*' -o /dev/null https://1.1.1.1/ && echo raw-ip-reached
curl -sf -m 3 --noproxy '*' -6 -o /dev/null 'https://[2606:4700:4700::1111]/' && echo ipv6-reached
python3 - <<'PY'
import socket
for host in ("{ip}", "127.0.0.1"):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.sendto(b"escape", (host, {uport}))
    except OSError:
        pass
# DNS to a public resolver is answered inside (fake IPs), never by 8.8.8.8.
q = bytes.fromhex("abcd0100000100000000000003617069066f70656e616903636f6d0000010001")
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
s.sendto(q, ("8.8.8.8", 53))
try:
    reply = s.recv(512)
    ip = ".".join(str(b) for b in reply[-4:])
    print("dns-answer-fake" if ip.startswith("198.18.") or ip.startswith("198.19.") else "dns-answer-real " + ip)
except OSError as e:
    print("dns-no-answer")
PY
ip route add 10.9.9.0/24 dev lo 2>/dev/null && echo route-added
ip route del local 0.0.0.0/0 dev lo table local 2>/dev/null && echo capture-route-deleted
nft flush ruleset 2>/dev/null && echo nft-flushed
ip link set lo down 2>/dev/null && echo lo-down
grep -E '^Cap(Eff|Prm|Bnd)' /proc/self/status | grep -v '0000000000000000' && echo has-caps
curl -sS --noproxy '*' https://api.openai.com/v1/after; echo
"#
    );
    let (run, _) = contained(&s, &[], &script, b"");
    let run = run.ok();
    let lines: Vec<&str> = run.stdout.lines().filter(|l| !l.starts_with('{') && !l.is_empty()).collect();
    assert_eq!(lines, vec!["dns-answer-fake"], "stderr: {}", run.stderr);
    let after = echoes(&run);
    assert_eq!(after.len(), 1, "the capture still works after the attempts: {}", run.stdout);
    assert_eq!(seen(&after[0], "authorization"), vec![format!("Bearer {OPENAI_KEY}")]);
    assert!(tcp.accept().is_err(), "a TCP connection reached the host's listener");
    let mut buf = [0u8; 64];
    assert!(udp.recv_from(&mut buf).is_err(), "a UDP datagram reached the host's socket");
}

#[test]
fn kill_9_of_authsome_leaves_nothing_behind() {
    let s = setup();
    let netns = format!("HOST_NETNS={}", host_netns());
    let body = format!("{GUARD}\necho started; sleep 120");
    let mut cmd =
        s.env.command(&["run", "--sandbox=container", "--image", image(), "--env", &netns, "--", "sh", "-c", &body]);
    cmd.current_dir(&s.project).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let pid = child.id();
    let mut first = [0u8; 8];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    assert_eq!(&first, b"started\n");
    assert_eq!(containers_of(pid).len(), 2, "a sidecar and a workload while it runs");
    // The run's directory on the host (the sidecar's only mount): socket, bundle, env file.
    let sidecar = containers_of(pid).into_iter().find(|n| n.ends_with("-sidecar")).unwrap();
    let inspect = Command::new("podman")
        .args(["inspect", "--format", "{{range .Mounts}}{{.Source}}{{end}}", &sidecar])
        .output()
        .unwrap();
    let run_dir = String::from_utf8_lossy(&inspect.stdout).trim().to_string();
    assert!(run_dir.contains("authsome-run-") && std::path::Path::new(&run_dir).is_dir(), "{run_dir:?}");
    child.kill().unwrap();
    child.wait().unwrap();
    wait_until("the killed run's containers are gone", Duration::from_secs(30), || containers_of(pid).is_empty());
    wait_until("the killed run's directory is gone", Duration::from_secs(10), || {
        !std::path::Path::new(&run_dir).exists()
    });
}

#[test]
fn sandbox_container_needs_an_image_and_an_engine() {
    let s = setup();
    let mut cmd = s.env.command(&["run", "--sandbox=container", "--", "true"]);
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--image"), "{}", String::from_utf8_lossy(&out.stderr));

    let empty = tempfile::tempdir().unwrap();
    let mut cmd = s.env.command(&["run", "--sandbox=container", "--image", IMAGE, "--", "true"]);
    cmd.env("PATH", empty.path());
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{stderr}");
    assert!(stderr.contains("neither podman nor docker") && stderr.contains("hint:"), "{stderr}");
}

/// The run flags mean the same as with `--sandbox`: egress defaults to provider hosts,
/// `--allow`/`--deny`/`--policy` change it, `--provider` limits the connections, `--env`
/// passes a variable.
#[test]
fn run_flags_mean_the_same_in_a_container() {
    let s = setup();
    s.env.login("github", "default", "ghp_CONTAINERFLAGS00000000000000000001");
    let probe = r#"
echo "github=${GH_TOKEN:+set} openai=${OPENAI_API_KEY:+set} passed=${PASSED:-none}"
for host in api.openai.com allowed.example.org registry.npmjs.org; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -m 5 --noproxy '*' "https://$host/") || code=refused
  echo "$host $code"
done"#;
    let (run, _) = contained(&s, &[], probe, b"");
    let stdout = run.ok().stdout;
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "github=set openai=set passed=none");
    assert_eq!(lines[1], "api.openai.com 200");
    for line in &lines[2..] {
        assert!(line.ends_with("refused") || line.ends_with("403"), "reached by default: {line}");
    }

    let policy = s.project.join("policy.json");
    std::fs::write(&policy, r#"{"allow": ["registry.npmjs.org"]}"#).unwrap();
    let extra = [
        "--allow",
        "allowed.example.org",
        "--deny",
        "api.openai.com",
        "--policy",
        policy.to_str().unwrap(),
        "--provider",
        "openai",
        "--env",
        "PASSED=yes",
    ];
    let (run, _) = contained(&s, &extra, probe, b"");
    let stdout = run.ok().stdout;
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "github= openai=set passed=yes");
    assert!(lines[1] == "api.openai.com refused" || lines[1] == "api.openai.com 403", "--deny wins: {stdout}");
    assert_eq!(&lines[2..], ["allowed.example.org 200", "registry.npmjs.org 200"]);
}

/// SIGTERM and SIGINT (Ctrl-C from a supervisor) to authsome reach the command in the
/// container, its exit status comes back, and the run's containers are gone.
#[test]
fn signals_stop_the_container_and_its_status_comes_back() {
    let s = setup();
    let netns = format!("HOST_NETNS={}", host_netns());
    for (signal, code) in [("-TERM", 42), ("-INT", 43)] {
        let body = format!(
            "{GUARD}\ntrap 'echo got-term; exit 42' TERM; trap 'echo got-int; exit 43' INT; echo started; \
             while :; do sleep 0.1; done"
        );
        let mut cmd = s.env.command(&[
            "run",
            "--sandbox=container",
            "--image",
            image(),
            "--env",
            &netns,
            "--",
            "sh",
            "-c",
            &body,
        ]);
        cmd.current_dir(&s.project).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
        let mut child = cmd.spawn().unwrap();
        let pid = child.id();
        let mut stdout = child.stdout.take().unwrap();
        let mut first = [0u8; 8];
        stdout.read_exact(&mut first).unwrap();
        assert_eq!(&first, b"started\n");
        Command::new("kill").args([signal, &pid.to_string()]).status().unwrap();
        let status = child.wait().unwrap();
        let mut rest = String::new();
        stdout.read_to_string(&mut rest).unwrap();
        let expected = if code == 42 { "got-term\n" } else { "got-int\n" };
        assert_eq!(rest, expected, "{signal}");
        assert_eq!(status.code(), Some(code), "{signal}");
        gone(pid, "after a signal");
    }
}

/// A run whose authsome and janitor were both killed can leave a container behind (the engine
/// keeps a sidecar whose workload still existed when it exited). Made here directly, labelled as
/// a run of a process that is gone: `doctor` reports it, `sandbox prune` removes it and leaves a
/// live run's containers alone.
#[test]
fn doctor_reports_leftovers_and_prune_removes_them() {
    let s = setup();
    let mut gone_process = Command::new("true").spawn().unwrap();
    let dead = gone_process.id();
    gone_process.wait().unwrap();
    let run_id = format!("test{dead}");
    let started = Command::new("podman")
        .args(["run", "-d", "--rm", "--network", "none", "--label", &format!("io.authsome.run={run_id}")])
        .args(["--label", &format!("{PID_LABEL}={dead}"), image(), "sleep", "120"])
        .output()
        .unwrap();
    assert!(started.status.success(), "{}", String::from_utf8_lossy(&started.stderr));
    assert_eq!(containers_of(dead).len(), 1);

    // A live run meanwhile: prune must not touch it.
    let mut cmd =
        s.env.command(&["run", "--sandbox=container", "--image", image(), "--", "sh", "-c", "echo started; sleep 60"]);
    cmd.current_dir(&s.project).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
    let mut live = cmd.spawn().unwrap();
    let mut first = [0u8; 8];
    live.stdout.take().unwrap().read_exact(&mut first).unwrap();

    let doctor = s.env.run(&["doctor", "--json"]).ok().json();
    let leftovers = doctor["container_leftovers"].as_array().cloned().unwrap_or_default();
    assert!(leftovers.contains(&serde_json::json!(run_id)), "{doctor}");
    let text = s.env.run(&["doctor"]).ok().stdout;
    assert!(text.contains("sandbox prune"), "doctor names the way out: {text}");
    let prune = s.env.run(&["sandbox", "prune"]).ok();
    assert!(prune.stdout.lines().any(|l| l == run_id), "{}", prune.all());
    assert_eq!(containers_of(dead), Vec::<String>::new(), "prune removed them");
    assert_eq!(containers_of(live.id()).len(), 2, "a live run is left alone");
    live.kill().unwrap();
    live.wait().unwrap();
    gone(live.id(), "after kill");
}

/// `image build` makes the running binary's sidecar image, tagged with its version, and prints
/// the tag; a container run uses exactly that tag.
#[test]
fn image_build_tags_the_sidecar_with_the_binary_version() {
    let s = setup();
    let built = s.env.run(&["image", "build"]).ok();
    let tag = built.stdout.trim();
    let version = s.env.run(&["--version"]).ok().stdout;
    let version = version.split_whitespace().last().unwrap();
    assert!(tag.starts_with(&format!("localhost/authsome-sidecar:{version}-")), "{tag}");
    let exists = Command::new("podman").args(["image", "exists", tag]).status().unwrap();
    assert!(exists.success(), "{tag} is in the engine");
    // A run of this binary starts its sidecar from that very tag.
    let mut cmd =
        s.env.command(&["run", "--sandbox=container", "--image", image(), "--", "sh", "-c", "echo started; sleep 60"]);
    cmd.current_dir(&s.project).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let pid = child.id();
    let mut first = [0u8; 8];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    let out = Command::new("podman")
        .args(["ps", "--filter", &format!("label={PID_LABEL}={pid}"), "--format", "{{.Names}} {{.Image}}"])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    child.kill().unwrap();
    child.wait().unwrap();
    let sidecar = listing.lines().find(|l| l.split_whitespace().next().is_some_and(|n| n.ends_with("-sidecar")));
    assert_eq!(sidecar.and_then(|l| l.split_whitespace().nth(1)), Some(tag), "{listing}");
    gone(pid, "after kill");
}

/// The working directory is writable at the same path, but what the host runs later (git
/// configuration and hooks, .envrc) stays read-only; the image's own root is the rest.
#[test]
fn the_working_directory_is_writable_except_what_the_host_runs() {
    let s = setup();
    for dir in [".git/hooks", ".git/objects"] {
        std::fs::create_dir_all(s.project.join(dir)).unwrap();
    }
    std::fs::write(s.project.join(".git/config"), "[core]\n").unwrap();
    std::fs::write(s.project.join(".envrc"), "").unwrap();
    let home = s.user_home.display().to_string();
    let script = format!(
        r#"
[ "$(pwd)" = "{project}" ] && echo same-path
echo made > made-inside && echo wrote-cwd
echo x >> .git/config 2>/dev/null && echo git-config-written
echo x > .git/hooks/pre-commit 2>/dev/null && echo hook-planted
echo x >> .envrc 2>/dev/null && echo envrc-written
echo x > .git/objects/inside && echo git-objects-ok
ls "{home}/.ssh" 2>/dev/null && echo host-home-visible
echo done"#,
        project = s.project.display()
    );
    let (run, _) = contained(&s, &[], &script, b"");
    assert_eq!(run.ok().stdout.trim(), "same-path\nwrote-cwd\ngit-objects-ok\ndone");
    assert_eq!(std::fs::read_to_string(s.project.join("made-inside")).unwrap(), "made\n");
    assert_eq!(std::fs::read_to_string(s.project.join(".git/config")).unwrap(), "[core]\n");
}

/// `authsome run --sandbox` with user namespaces unavailable (a user namespace of the test's
/// own whose `user.max_user_namespaces` is 0): an error naming `--sandbox=container --image`,
/// and with `sandbox.image` in config.json, the container backend instead.
#[test]
fn sandbox_falls_back_to_the_configured_image_where_namespaces_are_unavailable() {
    let s = setup();
    let without_userns = |args: &[&str]| {
        let inner = s.env.command(args);
        let mut cmd = Command::new("unshare");
        cmd.args(["-U", "-r", "sh", "-c", "echo 0 > /proc/sys/user/max_user_namespaces && exec \"$@\"", "sh"])
            .arg(inner.get_program())
            .args(inner.get_args())
            .current_dir(&s.project);
        for (name, value) in inner.get_envs() {
            match value {
                Some(value) => cmd.env(name, value),
                None => cmd.env_remove(name),
            };
        }
        let out = cmd.stdin(Stdio::null()).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, stderr) = without_userns(&["run", "--sandbox", "--", "true"]);
    assert_eq!(code, Some(125), "{stderr}");
    assert!(stderr.contains("user namespaces") && stderr.contains("--sandbox=container --image"), "{stderr}");
    assert!(!stderr.contains("sandbox backend: container"), "{stderr}");

    let config_path = s.env.home().join("config.json");
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["sandbox"] = serde_json::json!({"image": IMAGE});
    std::fs::write(&config_path, config.to_string()).unwrap();
    let (_, stderr) = without_userns(&["run", "--sandbox", "--", "true"]);
    assert!(stderr.contains("falling back to the container backend"), "{stderr}");
    assert!(stderr.contains("sandbox backend: container (podman"), "{stderr}");
}

/// `--no-mount-cwd`: no host path enters the container, not even the working directory.
#[test]
fn no_mount_cwd_mounts_nothing_of_the_host() {
    let s = setup();
    std::fs::write(s.project.join("host-file"), "from the host").unwrap();
    let script = format!(
        r#"
[ -e "{project}/host-file" ] && echo host-file-visible
[ "$(pwd)" = "{project}" ] && echo same-path
echo done"#,
        project = s.project.display()
    );
    let (run, _) = contained(&s, &["--no-mount-cwd"], &script, b"");
    assert_eq!(run.ok().stdout.trim(), "done");
}

/// The channel on the host answers only the run's sidecar: the token file is gone once the
/// sidecar is up, and a stream with any other token is closed without an answer.
#[test]
fn the_channel_refuses_streams_without_the_run_token() {
    use std::os::unix::net::UnixStream;
    let s = setup();
    let mut cmd =
        s.env.command(&["run", "--sandbox=container", "--image", image(), "--", "sh", "-c", "echo started; sleep 60"]);
    cmd.current_dir(&s.project).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let pid = child.id();
    let mut first = [0u8; 8];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    let sidecar = containers_of(pid).into_iter().find(|n| n.ends_with("-sidecar")).unwrap();
    let inspect = Command::new("podman")
        .args(["inspect", "--format", "{{range .Mounts}}{{.Source}}{{end}}", &sidecar])
        .output()
        .unwrap();
    let run_dir = std::path::PathBuf::from(String::from_utf8_lossy(&inspect.stdout).trim());
    let token_left = run_dir.join("token").exists();

    // A DNS query for api.openai.com under a made-up token: a real answer would start with
    // the length of a reply.
    let query = b"\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03api\x06openai\x03com\x00\x00\x01\x00\x01";
    let hello = format!("authsome-sidecar/1 {} dns", "0".repeat(48));
    let mut stream = UnixStream::connect(run_dir.join("channel.sock")).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut bytes = (hello.len() as u16).to_be_bytes().to_vec();
    bytes.extend_from_slice(hello.as_bytes());
    bytes.extend_from_slice(&(query.len() as u16).to_be_bytes());
    bytes.extend_from_slice(query);
    let _ = stream.write_all(&bytes);
    let mut answer = Vec::new();
    let read = stream.read_to_end(&mut answer);

    child.kill().unwrap();
    child.wait().unwrap();
    gone(pid, "after kill");
    assert!(!token_left, "the token file outlived the sidecar's start");
    // Closed (EOF, or a reset since our query was never read), not left hanging.
    let hanging =
        matches!(&read, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut));
    assert!(!hanging, "the stream was left open: {read:?}");
    assert!(answer.is_empty(), "answered a stream with a wrong token: {answer:?}");
}
