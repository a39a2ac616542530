//! Real-kernel tests of the sandbox: real namespaces, real commands (sh, python3, curl, ip, nft,
//! unshare), the test process playing the launcher and accepting on the capture sockets.
//!
//! `harness = false`: `main` calls `maybe_run_helper()` first, so this binary is its own helper.
//! Run as root it runs every test, then runs itself again as an unprivileged uid (rootless
//! mode) through `setpriv`. A test is skipped only when the kernel refuses user namespaces,
//! and the reason is printed.
//!
//! Safety: every test that tries an escape or sends traffic first checks, inside the sandbox,
//! that it is in a network namespace of its own holding only `lo` (sandbox-recipes "Guard for
//! destructive escape tests") and otherwise exits 99 without doing anything. All traffic stays
//! inside the sandbox's namespace.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use authsome_netns::{
    CaptureSocket, CommandStatus, FsPolicy, NamespaceError, Sandbox, SandboxSpec, default_hidden_paths,
    maybe_run_helper, probe_with,
};

const ROOTLESS_ENV: &str = "AUTHSOME_NETNS_TEST_ROOTLESS";
const LAUNCHER_ENV: &str = "AUTHSOME_NETNS_TEST_LAUNCHER";
const KEYRING_ENV: &str = "AUTHSOME_NETNS_TEST_KEYRING";
const TTY_ENV: &str = "AUTHSOME_NETNS_TEST_TTY";
const ROOTLESS_UID: u32 = 64_123;
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const TEST_CA: &str = "-----BEGIN CERTIFICATE-----\nauthsome test bundle\n-----END CERTIFICATE-----\n";

/// Shell prelude: refuse to do anything unless we are in our own netns with only `lo`.
const GUARD: &str = r#"
guard() {
  [ "$(stat -L -c %i /proc/self/ns/net)" != "$AUTHSOME_TEST_HOST_NETNS" ] || { echo "GUARD: same netns as the host"; exit 99; }
  links=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\n' ' ')
  [ "$links" = "lo " ] || { echo "GUARD: unexpected links: $links"; exit 99; }
}
guard
"#;

struct Ctx {
    exe: PathBuf,
    host_netns: u64,
    base: PathBuf,
    ca: PathBuf,
    uid: u32,
}

type TestFn = fn(&Ctx) -> Result<(), String>;

fn main() {
    maybe_run_helper();
    if std::env::var_os(LAUNCHER_ENV).is_some() {
        launcher_child();
    }
    if std::env::var_os(KEYRING_ENV).is_some() {
        keyring_child();
    }
    if std::env::var_os(TTY_ENV).is_some() {
        tty_child();
    }
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let rootless = std::env::var_os(ROOTLESS_ENV).is_some();
    let mode = if rootless {
        "rootless"
    } else if nix::unistd::geteuid().is_root() {
        "root"
    } else {
        "user"
    };
    let ctx = Ctx::new();

    let report = probe_with(&ctx.exe);
    if let Err(e) = &report.live {
        if matches!(
            e,
            NamespaceError::UserNamespacesDisabled { .. }
                | NamespaceError::AppArmorRestricted { .. }
                | NamespaceError::InContainer { .. }
        ) {
            println!("SKIP [{mode}] all sandbox tests: the kernel refuses: {e} (hint: {})", e.hint());
            println!("0 passed, 0 failed, 1 skipped");
            return;
        }
        println!("probe failed [{mode}]: {e:?} (hint: {})", e.hint());
    }

    let tests: &[(&str, TestFn)] = &[
        ("probe_live_run_succeeds", probe_live_run_succeeds),
        ("exit_code_propagates", exit_code_propagates),
        ("large_environment_and_odd_arguments_arrive_intact", large_environment_and_odd_arguments_arrive_intact),
        ("death_by_signal_propagates", death_by_signal_propagates),
        ("signals_are_forwarded_to_the_command", signals_are_forwarded_to_the_command),
        ("tcp_udp_and_inner_proxy_are_captured", tcp_udp_and_inner_proxy_are_captured),
        ("curl_reaches_the_capture_listener", curl_reaches_the_capture_listener),
        ("escape_attempts_fail", escape_attempts_fail),
        ("host_root_is_read_only_and_cwd_writable", host_root_is_read_only_and_cwd_writable),
        ("secrets_are_hidden_even_inside_writable_home", secrets_are_hidden_even_inside_writable_home),
        ("cwd_under_tmp_stays_writable", cwd_under_tmp_stays_writable),
        ("proc_shows_only_the_sandbox", proc_shows_only_the_sandbox),
        ("capabilities_are_dropped", capabilities_are_dropped),
        ("sysctls_and_host_ipc_are_out_of_reach", sysctls_and_host_ipc_are_out_of_reach),
        ("terminal_injection_is_blocked", terminal_injection_is_blocked),
        ("set_user_id_files_cannot_be_made", set_user_id_files_cannot_be_made),
        ("ca_bundle_and_resolv_conf_inside_only", ca_bundle_and_resolv_conf_inside_only),
        ("open_policy_keeps_host_tree", open_policy_keeps_host_tree),
        ("stdio_passes_through_untouched", stdio_passes_through_untouched),
        ("fails_closed_before_the_command_runs", fails_closed_before_the_command_runs),
        ("launcher_death_kills_the_sandbox", launcher_death_kills_the_sandbox),
        ("session_keyring_is_fresh", session_keyring_is_fresh),
        ("ctrl_c_on_a_terminal_reaches_the_command", ctrl_c_on_a_terminal_reaches_the_command),
    ];
    let (mut passed, mut failed) = (0, 0);
    for (name, test) in tests {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let started = Instant::now();
        match test(&ctx) {
            Ok(()) => {
                passed += 1;
                println!("test [{mode}] {name} ... ok ({} ms)", started.elapsed().as_millis());
            }
            Err(e) => {
                failed += 1;
                println!("test [{mode}] {name} ... FAILED\n    {}", e.replace('\n', "\n    "));
            }
        }
    }
    let _ = fs::remove_dir_all(&ctx.base);

    let (mut skipped, mut total_passed, mut total_failed) = (0, passed, failed);
    if mode == "root" {
        match run_rootless(&ctx, filter.as_deref()) {
            Ok((p, f)) => {
                total_passed += p;
                total_failed += f;
            }
            Err(why) => {
                println!("SKIP [rootless] suite: {why}");
                skipped += 1;
            }
        }
    }
    if skipped > 0 {
        println!("{total_passed} passed, {total_failed} failed, {skipped} skipped");
    } else {
        println!("{total_passed} passed, {total_failed} failed");
    }
    std::process::exit(if total_failed == 0 { 0 } else { 1 });
}

impl Ctx {
    fn new() -> Ctx {
        let uid = nix::unistd::geteuid().as_raw();
        // Not under /tmp: the sandbox's /tmp is private, and a cwd under $HOME is the usual case.
        let base = PathBuf::from(format!("/var/tmp/authsome-netns-test-{}-{uid}", std::process::id()));
        fs::create_dir_all(&base).expect("create the test base directory");
        let ca = base.join("combined-ca.pem");
        fs::write(&ca, TEST_CA).expect("write the test CA bundle");
        Ctx {
            exe: std::env::current_exe().expect("current_exe"),
            host_netns: fs::metadata("/proc/self/ns/net").expect("stat our netns").ino(),
            base,
            ca,
            uid,
        }
    }

    /// A fresh, empty working directory for one test.
    fn workdir(&self, name: &str) -> PathBuf {
        let dir = self.base.join(name);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create a test workdir");
        dir
    }

    fn spec(&self, cwd: &Path, script: &str) -> SandboxSpec {
        let mut spec = SandboxSpec::new("/bin/sh", cwd, &self.ca);
        spec.args = vec!["-c".into(), format!("exec >out.txt 2>&1\n{GUARD}\n{script}").into()];
        spec.env = vec![
            ("PATH".into(), PATH.into()),
            ("HOME".into(), cwd.join("home").into()),
            ("AUTHSOME_TEST_HOST_NETNS".into(), self.host_netns.to_string().into()),
        ];
        spec
    }
}

/// Start, serve the capture sockets, release, wait; the command's status and its output.
fn run(spec: &SandboxSpec, serve_sockets: bool) -> Result<(CommandStatus, String), String> {
    let (mut sandbox, sockets) = Sandbox::start(&std::env::current_exe().unwrap(), spec)
        .map_err(|e| format!("start: {e} ({e:?}); hint: {}", e.hint()))?;
    if serve_sockets {
        serve(sockets);
    }
    sandbox.release().map_err(|e| format!("release: {e} ({e:?})"))?;
    let status = sandbox.wait().map_err(|e| format!("wait: {e:?}"))?;
    let out = fs::read_to_string(spec.cwd.join("out.txt")).unwrap_or_default();
    Ok((status, out))
}

fn expect_success(status: CommandStatus, out: &str) -> Result<(), String> {
    if status == CommandStatus::Exited(0) {
        Ok(())
    } else {
        Err(format!("command ended with {status:?}; output:\n{out}"))
    }
}

/// Play the proxy: every TCP listener answers each connection with the address it was accepted
/// on (the original destination); UDP answers "answer:<query>". Threads stop after 30 s.
fn serve(sockets: Vec<CaptureSocket>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    for socket in sockets {
        match socket {
            CaptureSocket::Tcp { listener, .. } | CaptureSocket::InnerProxy { listener } => {
                thread::spawn(move || serve_tcp(listener, deadline));
            }
            CaptureSocket::Udp { socket, .. } => {
                thread::spawn(move || serve_udp(socket, deadline));
            }
        }
    }
}

fn serve_tcp(listener: TcpListener, deadline: Instant) {
    listener.set_nonblocking(true).unwrap();
    while Instant::now() < deadline {
        match listener.accept() {
            Ok((mut stream, _)) => {
                let local = stream.local_addr().map(|a| a.to_string()).unwrap_or_default();
                let _ = stream.set_nonblocking(false);
                let _ = stream.write_all(format!("{local}\n").as_bytes());
                // half-close, then drain the request so closing does not reset the connection
                let _ = stream.shutdown(std::net::Shutdown::Write);
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = std::io::copy(&mut stream, &mut std::io::sink());
            }
            Err(_) => thread::sleep(Duration::from_millis(2)),
        }
    }
}

/// Answer from the address the query was sent to (its pktinfo), as the launcher's DNS must.
fn serve_udp(socket: UdpSocket, deadline: Instant) {
    use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, sendmsg};
    use std::io::{IoSlice, IoSliceMut};
    use std::os::fd::AsRawFd;
    socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let fd = socket.as_raw_fd();
    let mut buf = [0u8; 512];
    while Instant::now() < deadline {
        let mut cmsg = nix::cmsg_space!(libc::in6_pktinfo);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let Ok(msg) = recvmsg::<SockaddrStorage>(fd, &mut iov, Some(&mut cmsg), MsgFlags::empty()) else { continue };
        let (n, from) = (msg.bytes, msg.address);
        let mut v4 = None;
        let mut v6 = None;
        for c in msg.cmsgs().into_iter().flatten() {
            match c {
                ControlMessageOwned::Ipv4PacketInfo(mut info) => {
                    info.ipi_spec_dst = info.ipi_addr;
                    info.ipi_ifindex = 0;
                    v4 = Some(info);
                }
                ControlMessageOwned::Ipv6PacketInfo(mut info) => {
                    info.ipi6_ifindex = 0;
                    v6 = Some(info);
                }
                _ => {}
            }
        }
        let mut answer = b"answer:".to_vec();
        answer.extend_from_slice(&buf[..n]);
        let control: Vec<ControlMessage<'_>> = match (&v4, &v6) {
            (Some(i), _) => vec![ControlMessage::Ipv4PacketInfo(i)],
            (_, Some(i)) => vec![ControlMessage::Ipv6PacketInfo(i)],
            _ => vec![],
        };
        let _ = sendmsg(fd, &[IoSlice::new(&answer)], &control, MsgFlags::empty(), from.as_ref());
    }
}

fn lines(out: &str) -> BTreeMap<String, String> {
    out.lines().filter_map(|l| l.split_once('=').map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))).collect()
}

fn check(cond: bool, what: &str, out: &str) -> Result<(), String> {
    if cond { Ok(()) } else { Err(format!("{what}; output:\n{out}")) }
}

// ------------------------------------------------------------------------------------------
// tests

fn probe_live_run_succeeds(ctx: &Ctx) -> Result<(), String> {
    let report = probe_with(&ctx.exe);
    report.live.map(drop).map_err(|e| format!("{e:?}; hint: {}", e.hint()))?;
    // what the launcher calls: the helper is /proc/self/exe
    let report = authsome_netns::probe();
    check(report.ok() && report.static_problem.is_none(), &format!("probe(): {report:?}"), "")
}

fn large_environment_and_odd_arguments_arrive_intact(ctx: &Ctx) -> Result<(), String> {
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

fn exit_code_propagates(ctx: &Ctx) -> Result<(), String> {
    let cwd = ctx.workdir("exit");
    let (status, out) = run(&ctx.spec(&cwd, "exit 7"), false)?;
    check(status == CommandStatus::Exited(7), &format!("expected Exited(7), got {status:?}"), &out)?;
    check(status.code() == 7, "code", &out)
}

fn death_by_signal_propagates(ctx: &Ctx) -> Result<(), String> {
    let cwd = ctx.workdir("signaled");
    let (status, out) = run(&ctx.spec(&cwd, "kill -TERM $$"), false)?;
    check(status == CommandStatus::Signaled(15), &format!("expected Signaled(15), got {status:?}"), &out)?;
    check(status.code() == 143, "128 + 15", &out)
}

fn signals_are_forwarded_to_the_command(ctx: &Ctx) -> Result<(), String> {
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

const PY_CLIENT: &str = r#"
import socket, time
def tcp(host, port, fam, name):
    s = socket.socket(fam, socket.SOCK_STREAM); s.settimeout(5)
    t = time.time()
    try:
        s.connect((host, port)); print(f"{name}=ok {s.recv(200).decode().strip()}")
    except OSError as e:
        print(f"{name}=err {e.errno} {time.time() - t:.3f}")
def udp(host, fam, name):
    # connected, like glibc's resolver: only answers from the queried address get through
    u = socket.socket(fam, socket.SOCK_DGRAM); u.settimeout(5)
    u.connect((host, 53)); u.send(b"q-" + name.encode())
    try:
        d, a = u.recvfrom(200); print(f"{name}={d.decode()} from {a[0]}:{a[1]}")
    except OSError as e:
        print(f"{name}=err {e.errno}")
tcp("1.2.3.4", 443, socket.AF_INET, "v4_443")
tcp("2001:db8::7", 443, socket.AF_INET6, "v6_443")
tcp("93.184.216.34", 80, socket.AF_INET, "v4_80")
tcp("1.2.3.4", 8443, socket.AF_INET, "v4_8443")
tcp("1.2.3.4", 22, socket.AF_INET, "v4_22")
tcp("127.0.0.1", INNER, socket.AF_INET, "inner")
udp("8.8.8.8", socket.AF_INET, "dns_v4")
udp("2001:4860:4860::8888", socket.AF_INET6, "dns_v6")
"#;

fn tcp_udp_and_inner_proxy_are_captured(ctx: &Ctx) -> Result<(), String> {
    let cwd = ctx.workdir("capture");
    let script = format!("python3 - <<'EOF'\n{}\nEOF", PY_CLIENT.replace("INNER", "3128"));
    let mut spec = ctx.spec(&cwd, &script);
    spec.tcp_ports = vec![8443];
    spec.inner_proxy_port = Some(3128);
    let (status, out) = run(&spec, true)?;
    expect_success(status, &out)?;
    let got = lines(&out);
    let want =
        |k: &str, v: &str| check(got.get(k).map(String::as_str) == Some(v), &format!("{k} should be {v:?}"), &out);
    want("v4_443", "ok [::ffff:1.2.3.4]:443")?;
    want("v6_443", "ok [2001:db8::7]:443")?;
    want("v4_80", "ok [::ffff:93.184.216.34]:80")?;
    want("v4_8443", "ok [::ffff:1.2.3.4]:8443")?;
    want("inner", "ok 127.0.0.1:3128")?;
    want("dns_v4", "answer:q-dns_v4 from 8.8.8.8:53")?;
    want("dns_v6", "answer:q-dns_v6 from 2001:4860:4860::8888:53")?;
    let refused = got.get("v4_22").cloned().unwrap_or_default();
    let fields: Vec<&str> = refused.split_whitespace().collect();
    check(
        fields.first() == Some(&"err") && fields.get(1) == Some(&"111"),
        "port 22 must be refused (ECONNREFUSED)",
        &out,
    )?;
    let secs: f64 = fields.get(2).and_then(|s| s.parse().ok()).unwrap_or(99.0);
    check(secs < 0.5, "port 22 must be refused at once", &out)
}

fn curl_reaches_the_capture_listener(ctx: &Ctx) -> Result<(), String> {
    if !Path::new("/usr/bin/curl").exists() {
        return Err("curl is not installed (apt-get install curl)".into());
    }
    let cwd = ctx.workdir("curl");
    let spec = ctx.spec(&cwd, "curl -sS --max-time 5 --http0.9 --noproxy '*' http://93.184.216.34/");
    let (status, out) = run(&spec, true)?;
    expect_success(status, &out)?;
    check(out.trim() == "[::ffff:93.184.216.34]:80", "curl should reach our :80 listener", &out)
}

fn escape_attempts_fail(ctx: &Ctx) -> Result<(), String> {
    let cwd = ctx.workdir("escape");
    let script = r#"
for tool in ip nft unshare; do command -v $tool >/dev/null || echo "missing=$tool"; done
ip route del local 0.0.0.0/0 dev lo table local 2>/dev/null; echo route_del=$?
ip -6 route del local ::/0 dev lo table local 2>/dev/null; echo route6_del=$?
ip link set lo down 2>/dev/null; echo lo_down=$?
nft flush ruleset 2>/dev/null; echo nft_flush=$?
unshare -Ur true 2>/dev/null; echo unshare_root=$?
unshare -Urn true 2>/dev/null; echo unshare_net=$?
ip route show table local | grep -c '^local default' | sed 's/^/routes_left=/'
cat /sys/class/net/lo/operstate 2>/dev/null | sed 's/^/lo_state=/'
"#;
    let (status, out) = run(&ctx.spec(&cwd, script), false)?;
    expect_success(status, &out)?;
    let got = lines(&out);
    check(
        !got.contains_key("missing"),
        "ip, nft and unshare must be installed (iproute2, nftables, util-linux)",
        &out,
    )?;
    for key in ["route_del", "route6_del", "lo_down", "nft_flush", "unshare_root", "unshare_net"] {
        let code = got.get(key).cloned().unwrap_or_default();
        check(!code.is_empty() && code != "0", &format!("{key} must fail (exit {code:?})"), &out)?;
    }
    check(got.get("routes_left").map(String::as_str) == Some("1"), "the v4 local route must survive", &out)
}

fn host_root_is_read_only_and_cwd_writable(ctx: &Ctx) -> Result<(), String> {
    let cwd = ctx.workdir("readonly");
    let outside = ctx.workdir("readonly-outside");
    fs::write(outside.join("owned-by-me"), "original").unwrap();
    let extra = ctx.workdir("readonly-extra");
    let host_marker = PathBuf::from(format!("/tmp/authsome-netns-host-marker-{}", std::process::id()));
    fs::write(&host_marker, "host").unwrap();
    let script = format!(
        r#"
echo x > {outside}/owned-by-me 2>/dev/null; echo write_outside=$?
touch {outside}/new 2>/dev/null; echo create_outside=$?
touch /etc/authsome-netns-probe 2>/dev/null; echo create_etc=$?
touch /usr/authsome-netns-probe 2>/dev/null; echo create_usr=$?
touch /var/tmp/authsome-netns-probe 2>/dev/null; echo create_var_tmp=$?
echo inside > cwd-file; echo write_cwd=$?
mkdir -p sub/dir && echo deep > sub/dir/f; echo write_cwd_deep=$?
echo extra > {extra}/f; echo write_extra=$?
test -e {marker}; echo host_tmp_visible=$?
echo t > /tmp/inside-only; echo write_tmp=$?
echo s > /dev/shm/inside-only; echo write_shm=$?
echo n > /dev/null; echo write_dev_null=$?
ls /dev | tr '\n' ' ' | sed 's/^/dev=/'; echo
"#,
        outside = outside.display(),
        extra = extra.display(),
        marker = host_marker.display()
    );
    let mut spec = ctx.spec(&cwd, &script);
    spec.fs.writable = vec![extra.clone()];
    let (status, out) = run(&spec, false)?;
    let _ = fs::remove_file(&host_marker);
    expect_success(status, &out)?;
    let got = lines(&out);
    for key in ["write_outside", "create_outside", "create_etc", "create_usr", "create_var_tmp", "host_tmp_visible"] {
        check(got.get(key).is_some_and(|c| c != "0"), &format!("{key} must fail"), &out)?;
    }
    for key in ["write_cwd", "write_cwd_deep", "write_extra", "write_tmp", "write_shm", "write_dev_null"] {
        check(got.get(key).map(String::as_str) == Some("0"), &format!("{key} must succeed"), &out)?;
    }
    check(fs::read_to_string(outside.join("owned-by-me")).unwrap() == "original", "host file changed", &out)?;
    check(fs::read_to_string(cwd.join("cwd-file")).is_ok_and(|s| s == "inside\n"), "cwd write not on host", &out)?;
    check(fs::read_to_string(extra.join("f")).is_ok_and(|s| s == "extra\n"), "--writable write not on host", &out)?;
    check(!Path::new("/tmp/inside-only").exists(), "the sandbox's /tmp leaked to the host", &out)?;
    check(
        got.get("dev").map(String::as_str)
            == Some("fd full null ptmx pts random shm stderr stdin stdout tty urandom zero"),
        "/dev must be the minimal set",
        &out,
    )
}

fn secrets_are_hidden_even_inside_writable_home(ctx: &Ctx) -> Result<(), String> {
    // $HOME inside the writable cwd, as when running from the home directory
    let cwd = ctx.workdir("hidden");
    let home = cwd.join("home");
    let authsome_home = home.join(".authsome");
    for dir in [".ssh", ".aws", ".config/gh", ".gnupg", ".docker", ".kube", ".authsome/profiles/default"] {
        fs::create_dir_all(home.join(dir)).unwrap();
    }
    fs::write(home.join(".ssh/id_ed25519"), "PRIVATE KEY").unwrap();
    fs::write(home.join(".aws/credentials"), "aws_secret_access_key=x").unwrap();
    fs::write(home.join(".netrc"), "machine x password y").unwrap();
    fs::write(authsome_home.join("profiles/default/store.db"), "vault").unwrap();
    let custom = cwd.join("project-secrets");
    fs::create_dir_all(&custom).unwrap();
    fs::write(custom.join("token"), "t").unwrap();
    let script = r#"
for p in .ssh .aws .config/gh .gnupg .docker .kube .authsome; do echo "$p=$(ls -A "$HOME/$p" | wc -l)"; done
echo netrc_bytes=$(wc -c < "$HOME/.netrc")
echo custom=$(ls -A project-secrets | wc -l)
echo run_entries=$(ls -A /run 2>/dev/null | wc -l)
touch "$HOME/.ssh/planted" 2>/dev/null; echo plant_ssh=$?
echo x >> "$HOME/.netrc" 2>/dev/null; echo write_netrc=$?
echo ok > "$HOME/.bashrc-test"; echo write_home=$?
"#;
    let mut spec = ctx.spec(&cwd, script);
    spec.fs.hide = default_hidden_paths(&home, &authsome_home, ctx.uid);
    spec.fs.hide.push(custom.clone());
    let (status, out) = run(&spec, false)?;
    expect_success(status, &out)?;
    let got = lines(&out);
    for key in [".ssh", ".aws", ".config/gh", ".gnupg", ".docker", ".kube", ".authsome", "netrc_bytes", "custom"] {
        check(got.get(key).map(String::as_str) == Some("0"), &format!("{key} must look empty"), &out)?;
    }
    for key in ["plant_ssh", "write_netrc"] {
        check(got.get(key).is_some_and(|c| c != "0"), &format!("{key} must fail"), &out)?;
    }
    check(got.get("write_home").map(String::as_str) == Some("0"), "the rest of a writable home stays writable", &out)?;
    if ctx.uid == 0 {
        check(
            got.get("run_entries").map(String::as_str) == Some("0"),
            "as root, /run (daemon sockets) is hidden",
            &out,
        )?;
    } else {
        check(got.get("run_entries").is_some_and(|n| n != "0"), "a normal user keeps /run", &out)?;
    }
    check(fs::read_to_string(home.join(".ssh/id_ed25519")).unwrap() == "PRIVATE KEY", "host secret changed", &out)
}

fn cwd_under_tmp_stays_writable(ctx: &Ctx) -> Result<(), String> {
    let cwd = PathBuf::from(format!("/tmp/authsome-netns-test-cwd-{}-{}", std::process::id(), ctx.uid));
    let _ = fs::remove_dir_all(&cwd);
    fs::create_dir_all(&cwd).unwrap();
    fs::write(cwd.join("existing"), "here").unwrap();
    let spec = ctx
        .spec(&cwd, "cat existing; echo; echo made > made; echo write=$?; ls /tmp | wc -l | sed 's/^/tmp_entries=/'");
    let result = run(&spec, false);
    let made = fs::read_to_string(cwd.join("made"));
    let _ = fs::remove_dir_all(&cwd);
    let (status, out) = result?;
    expect_success(status, &out)?;
    check(out.starts_with("here"), "the cwd's host content must be visible", &out)?;
    check(made.is_ok_and(|s| s == "made\n"), "a write in a cwd under /tmp must reach the host", &out)?;
    check(lines(&out).get("tmp_entries").map(String::as_str) == Some("1"), "only the cwd's path in /tmp", &out)
}

fn proc_shows_only_the_sandbox(ctx: &Ctx) -> Result<(), String> {
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

fn capabilities_are_dropped(ctx: &Ctx) -> Result<(), String> {
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

fn sysctls_and_host_ipc_are_out_of_reach(ctx: &Ctx) -> Result<(), String> {
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

fn terminal_injection_is_blocked(ctx: &Ctx) -> Result<(), String> {
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

fn set_user_id_files_cannot_be_made(ctx: &Ctx) -> Result<(), String> {
    let cwd = ctx.workdir("suid");
    let script = r#"
cp /bin/true ./prog && chmod u+s ./prog 2>/dev/null; echo chmod_suid=$?
chmod 755 ./prog; echo chmod_plain=$?
python3 -c 'import os; os.open("created", os.O_CREAT | os.O_WRONLY, 0o4755)' 2>/dev/null; echo create_suid=$?
python3 -c 'import os; os.close(os.open("plain", os.O_CREAT | os.O_WRONLY, 0o644))'; echo create_plain=$?
mkdir shared && chmod g+s shared; echo setgid_dir=$?
"#;
    let (status, out) = run(&ctx.spec(&cwd, script), false)?;
    expect_success(status, &out)?;
    let got = lines(&out);
    for key in ["chmod_suid", "create_suid"] {
        check(got.get(key).is_some_and(|c| c != "0"), &format!("{key} must fail"), &out)?;
    }
    for key in ["chmod_plain", "create_plain", "setgid_dir"] {
        check(got.get(key).map(String::as_str) == Some("0"), &format!("{key} must work"), &out)?;
    }
    let mode = fs::metadata(cwd.join("prog")).map(|m| m.permissions().mode()).unwrap_or(0);
    check(mode & 0o4000 == 0, &format!("the host sees a set-user-ID file (mode {mode:o})"), &out)?;
    check(!cwd.join("created").exists(), "the set-user-ID create must not leave a file", &out)
}

fn digest(path: &Path) -> Option<Vec<u8>> {
    fs::read(path).ok()
}

fn ca_bundle_and_resolv_conf_inside_only(ctx: &Ctx) -> Result<(), String> {
    let cwd = ctx.workdir("trust");
    let host_ca = Path::new("/etc/ssl/certs/ca-certificates.crt");
    let before = (digest(Path::new("/etc/resolv.conf")), digest(host_ca), digest(Path::new("/etc/hosts")));
    let mut spec = ctx.spec(&cwd, "cat /etc/resolv.conf; cat /etc/hosts; cat /etc/ssl/certs/ca-certificates.crt; test -f /usr/lib/ssl/cert.pem && cat /usr/lib/ssl/cert.pem; ls -A /tmp | wc -l");
    spec.resolv_conf = "nameserver 198.18.0.53\n".into();
    spec.hosts_file = Some("127.0.0.1 localhost authsome-test-host\n".into());
    let (status, out) = run(&spec, false)?;
    expect_success(status, &out)?;
    let after = (digest(Path::new("/etc/resolv.conf")), digest(host_ca), digest(Path::new("/etc/hosts")));
    check(before == after, "the host's resolv.conf / CA bundle / hosts changed", &out)?;
    check(out.contains("nameserver 198.18.0.53") && out.contains("authsome-test-host"), "our resolv.conf/hosts", &out)?;
    check(out.contains("authsome test bundle"), "our CA bundle over the distro path", &out)?;
    check(out.trim_end().ends_with('0'), "staging files must not be left in /tmp", &out)?;
    check(!String::from_utf8_lossy(&after.0.unwrap_or_default()).contains("198.18.0.53"), "host resolv.conf", &out)
}

fn open_policy_keeps_host_tree(ctx: &Ctx) -> Result<(), String> {
    let cwd = ctx.workdir("open");
    let home = cwd.join("home");
    fs::create_dir_all(home.join(".ssh")).unwrap();
    fs::write(home.join(".ssh/id_rsa"), "k").unwrap();
    let marker = PathBuf::from(format!("/tmp/authsome-netns-open-marker-{}-{}", std::process::id(), ctx.uid));
    fs::write(&marker, "m").unwrap();
    let script = format!(
        "test -e {}; echo host_tmp=$?\necho ssh=$(ls -A $HOME/.ssh | wc -l)\ngrep -c authsome /etc/ssl/certs/ca-certificates.crt | sed 's/^/ca=/'",
        marker.display()
    );
    let mut spec = ctx.spec(&cwd, &script);
    spec.fs = FsPolicy { open: true, writable: vec![], hide: vec![home.join(".ssh")] };
    let result = run(&spec, false);
    let _ = fs::remove_file(&marker);
    let (status, out) = result?;
    expect_success(status, &out)?;
    let got = lines(&out);
    check(got.get("host_tmp").map(String::as_str) == Some("0"), "open policy shows the host /tmp", &out)?;
    check(got.get("ssh").map(String::as_str) == Some("0"), "hide still applies", &out)?;
    check(got.get("ca").map(String::as_str) == Some("1"), "CA bundle still replaced", &out)
}

fn stdio_passes_through_untouched(ctx: &Ctx) -> Result<(), String> {
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

fn fails_closed_before_the_command_runs(ctx: &Ctx) -> Result<(), String> {
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
fn launcher_child() -> ! {
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

fn sleepers() -> Vec<u32> {
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == b"sleep\x0031.25\x00"))
        .collect()
}

fn launcher_death_kills_the_sandbox(ctx: &Ctx) -> Result<(), String> {
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
fn keyring_child() -> ! {
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

fn session_keyring_is_fresh(ctx: &Ctx) -> Result<(), String> {
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
fn tty_child() -> ! {
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

fn ctrl_c_on_a_terminal_reaches_the_command(ctx: &Ctx) -> Result<(), String> {
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
    let _ = child.kill();
    let _ = child.wait();
    check(ended, "no status after Ctrl-C", &seen)?;
    check(seen.contains("status=Ok(Exited(0))"), "the command must end normally after handling SIGINT", &seen)?;
    check(seen.contains("sigints=1"), "Ctrl-C must reach the command exactly once", &seen)?;
    check(latency < Duration::from_secs(3), "Ctrl-C must act at once (python waits 1 s to count)", &seen)?;
    check(seen.contains("tiocsti=1"), "TIOCSTI on the real terminal must fail with EPERM", &seen)
}

// ------------------------------------------------------------------------------------------
// rootless re-run

/// Run this binary again as an unprivileged uid (no passwd entry needed) and fold its results in.
fn run_rootless(ctx: &Ctx, filter: Option<&str>) -> Result<(u32, u32), String> {
    if !Path::new("/usr/bin/setpriv").exists() {
        return Err("setpriv (util-linux) is not installed".into());
    }
    // The unprivileged uid must be able to run this binary: copy it out of a private tree.
    let searchable =
        ctx.exe.ancestors().skip(1).all(|dir| fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o001 != 0));
    let copy_dir = PathBuf::from(format!("/var/tmp/authsome-netns-rootless-{}", std::process::id()));
    let exe = if searchable {
        ctx.exe.clone()
    } else {
        fs::create_dir_all(&copy_dir).map_err(|e| e.to_string())?;
        fs::set_permissions(&copy_dir, fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
        let copy = copy_dir.join("sandbox-tests");
        fs::copy(&ctx.exe, &copy).map_err(|e| format!("copying the test binary: {e}"))?;
        copy
    };
    let mut cmd = Command::new("/usr/bin/setpriv");
    cmd.args(["--reuid", &ROOTLESS_UID.to_string(), "--regid", &ROOTLESS_UID.to_string(), "--clear-groups", "--"])
        .arg(&exe)
        .args(filter)
        .env(ROOTLESS_ENV, "1")
        .env("HOME", "/nonexistent")
        .current_dir("/")
        .stdout(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("setpriv: {e}"))?;
    let (mut passed, mut failed) = (None, None);
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.map_err(|e| e.to_string())?;
        if let Some((p, rest)) = line.split_once(" passed, ")
            && let Some(f) = rest.split(" failed").next()
        {
            passed = p.trim().parse().ok();
            failed = f.trim().parse().ok();
            if rest.contains("skipped") {
                println!("[rootless] {line}");
            }
            continue;
        }
        println!("{line}");
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    let _ = fs::remove_dir_all(&copy_dir);
    match (passed, failed) {
        (Some(p), Some(f)) => Ok((p, f)),
        _ => Err(format!("the rootless run printed no summary ({status})")),
    }
}
