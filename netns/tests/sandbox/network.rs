//! Network tests: capture of TCP/UDP/inner proxy, and escape attempts (all behind the guard).

use super::*;

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

pub fn tcp_udp_and_inner_proxy_are_captured(ctx: &Ctx) -> Result<(), String> {
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

pub fn curl_reaches_the_capture_listener(ctx: &Ctx) -> Result<(), String> {
    if !Path::new("/usr/bin/curl").exists() {
        return Err("curl is not installed (apt-get install curl)".into());
    }
    let cwd = ctx.workdir("curl");
    let spec = ctx.spec(&cwd, "curl -sS --max-time 5 --http0.9 --noproxy '*' http://93.184.216.34/");
    let (status, out) = run(&spec, true)?;
    expect_success(status, &out)?;
    check(out.trim() == "[::ffff:93.184.216.34]:80", "curl should reach our :80 listener", &out)
}

pub fn escape_attempts_fail(ctx: &Ctx) -> Result<(), String> {
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

/// Play the proxy: every TCP listener answers each connection with the address it was accepted
/// on (the original destination); UDP answers "answer:<query>". Threads stop after 30 s.
pub fn serve(sockets: Vec<CaptureSocket>) {
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

pub fn serve_tcp(listener: TcpListener, deadline: Instant) {
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
pub fn serve_udp(socket: UdpSocket, deadline: Instant) {
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

/// Host services on loopback and on abstract Unix sockets (X11, D-Bus, agents) belong to the
/// host's network namespace and must be out of reach.
pub fn host_loopback_and_abstract_sockets_are_out_of_reach(ctx: &Ctx) -> Result<(), String> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixListener};
    let name = format!("authsome-netns-test-{}-{}", std::process::id(), ctx.uid);
    let abstract_listener =
        UnixListener::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).map_err(|e| e.to_string())?)
            .map_err(|e| format!("abstract bind: {e}"))?;
    let tcp = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let port = tcp.local_addr().map_err(|e| e.to_string())?.port();
    let cwd = ctx.workdir("hostloopback");
    let script = format!(
        r#"python3 - <<'EOF'
import socket
u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    u.connect("\0{name}"); print("abstract=connected")
except OSError as e:
    print(f"abstract=err {{e.errno}}")
t = socket.socket(); t.settimeout(3)
try:
    t.connect(("127.0.0.1", {port})); print("loopback=connected")
except OSError as e:
    print(f"loopback=err {{e.errno}}")
EOF"#
    );
    let (status, out) = run(&ctx.spec(&cwd, &script), false)?;
    drop((abstract_listener, tcp));
    expect_success(status, &out)?;
    let got = lines(&out);
    check(got.get("abstract").is_some_and(|v| v.starts_with("err")), "host abstract socket reachable", &out)?;
    check(got.get("loopback").map(String::as_str) == Some("err 111"), "host loopback port must be refused", &out)
}
