//! End-to-end: raw TCP by policy inside `authsome run --sandbox` (`--allow-tcp HOST:PORT`,
//! `--allow-host-port PORT`). An SSH-like banner server (it speaks first) and a Postgres-like
//! echo run on this machine's loopback; AUTHSOME_CONNECT_TO points the test names at them, as
//! for the HTTPS upstreams of tests/sandbox.rs. A hostile child then tries the ports and names
//! no rule allows: each attempt must be reset (or refused by the kernel), reach nothing, and
//! print one denial line.
//!
//! Every script starts with GUARD (tests/common/sandbox.rs): it exits 99 unless it really runs
//! in a network namespace of its own.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::Run;
use common::sandbox::{GUARD, Setup, host_netns, setup};
use serde_json::Value;

const BANNER: &str = "SSH-2.0-authsome-test\r\n";

/// A loopback TCP server counting its connections.
struct Server {
    port: u16,
    accepted: Arc<AtomicUsize>,
}

impl Server {
    /// SSH-like: sends the banner first, then answers one line with `got LINE`, then closes.
    fn banner() -> Server {
        Server::start(|mut stream| {
            stream.write_all(BANNER.as_bytes())?;
            let mut line = String::new();
            BufReader::new(stream.try_clone()?).read_line(&mut line)?;
            stream.write_all(format!("got {line}").as_bytes())
        })
    }

    /// Postgres-like stand-in: echoes what it reads until the client is done.
    fn echo() -> Server {
        Server::start(|mut stream| {
            let mut buf = Vec::new();
            stream.read_to_end(&mut buf)?;
            stream.write_all(&buf)
        })
    }

    /// Just enough of the Postgres wire protocol (v3) for `psql -c`: no TLS, trust
    /// authentication, and each simple query answered with one text row holding the query.
    fn postgres() -> Server {
        fn message(tag: u8, payload: &[u8]) -> Vec<u8> {
            let mut out = vec![tag];
            out.extend_from_slice(&(payload.len() as u32 + 4).to_be_bytes());
            out.extend_from_slice(payload);
            out
        }
        fn read_body(stream: &mut std::net::TcpStream) -> std::io::Result<Vec<u8>> {
            let mut len = [0u8; 4];
            stream.read_exact(&mut len)?;
            let mut body = vec![0; (u32::from_be_bytes(len) as usize).saturating_sub(4)];
            stream.read_exact(&mut body)?;
            Ok(body)
        }
        Server::start(|mut stream| {
            // SSLRequest / GSSENCRequest get "N"; then comes the startup message.
            loop {
                let body = read_body(&mut stream)?;
                if body.len() == 4 && body[..2] == [0x04, 0xd2] {
                    stream.write_all(b"N")?;
                    continue;
                }
                break;
            }
            let mut hello = message(b'R', &0u32.to_be_bytes());
            hello.extend(message(b'S', b"server_version\x0016.0\x00"));
            hello.extend(message(b'S', b"client_encoding\x00UTF8\x00"));
            hello.extend(message(b'S', b"standard_conforming_strings\x00on\x00"));
            hello.extend(message(b'K', &[0, 0, 0, 1, 0, 0, 0, 2]));
            hello.extend(message(b'Z', b"I"));
            stream.write_all(&hello)?;
            loop {
                let mut tag = [0u8; 1];
                stream.read_exact(&mut tag)?;
                let body = read_body(&mut stream)?;
                match tag[0] {
                    b'X' => return Ok(()),
                    b'Q' => {
                        let query = body.strip_suffix(&[0]).unwrap_or(&body);
                        let mut field = b"\x00\x01echo\x00".to_vec();
                        field.extend_from_slice(&[
                            0, 0, 0, 0, 0, 0, 0, 0, 0, 25, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0,
                        ]);
                        let mut row = vec![0, 1];
                        row.extend_from_slice(&(query.len() as u32).to_be_bytes());
                        row.extend_from_slice(query);
                        let mut answer = message(b'T', &field);
                        answer.extend(message(b'D', &row));
                        answer.extend(message(b'C', b"SELECT 1\x00"));
                        answer.extend(message(b'Z', b"I"));
                        stream.write_all(&answer)?;
                    }
                    _ => return Ok(()),
                }
            }
        })
    }

    /// Accepts and counts, nothing else (a service the sandbox must not reach).
    fn silent() -> Server {
        Server::start(|_| Ok(()))
    }

    fn start(serve: fn(std::net::TcpStream) -> std::io::Result<()>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                count.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || {
                    let _ = serve(stream);
                });
            }
        });
        Server { port, accepted }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// `tcp HOST PORT MODE [DATA]` inside the sandbox prints one line: `HOST:PORT ok 'REPLY'`,
/// `refused` (nobody listens), `reset`, or `closed` (accepted, then nothing). MODE `banner`
/// reads the server's first line before sending; `send` sends DATA first. `connect HOST PORT
/// DATA` does the same through the inner proxy's CONNECT (`HTTPS_PROXY`), printing the status
/// line when it is not 200.
const CLIENT: &str = r#"
tcp() { python3 - "$@" <<'PY'
import socket, sys
host, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
data = (sys.argv[4] if len(sys.argv) > 4 else "hello") + "\n"
try:
    s = socket.create_connection((host, port), 3)
    s.settimeout(5)
    got = b""
    if mode == "banner":
        while not got.endswith(b"\n"):
            chunk = s.recv(1)
            if not chunk:
                break
            got += chunk
    s.sendall(data.encode())
    s.shutdown(socket.SHUT_WR)
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        got += chunk
    print(f"{host}:{port} " + (f"ok {got.decode()!r}" if got else "closed"))
except ConnectionRefusedError:
    print(f"{host}:{port} refused")
except (ConnectionResetError, BrokenPipeError):
    print(f"{host}:{port} reset")
except Exception as e:
    print(f"{host}:{port} error {type(e).__name__} {e}")
PY
}
connect() { python3 - "$@" <<'PY'
import base64, os, socket, sys, urllib.parse
host, port, data = sys.argv[1], sys.argv[2], sys.argv[3] + "\n"
proxy = urllib.parse.urlsplit(os.environ["HTTPS_PROXY"])
auth = base64.b64encode(f"{proxy.username}:{proxy.password}".encode()).decode()
s = socket.create_connection((proxy.hostname, proxy.port), 3)
s.settimeout(5)
s.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\nProxy-Authorization: Basic {auth}\r\n\r\n".encode())
head = b""
while b"\r\n\r\n" not in head:
    chunk = s.recv(1)
    if not chunk:
        break
    head += chunk
status = head.split(b"\r\n")[0].decode()
if " 200 " not in status:
    body = s.recv(4096).decode()
    print(f"connect {host}:{port} {status} {body.strip()}")
    sys.exit(0)
s.sendall(data.encode())
s.shutdown(socket.SHUT_WR)
got = b""
while True:
    chunk = s.recv(4096)
    if not chunk:
        break
    got += chunk
print(f"connect {host}:{port} ok {got.decode()!r}")
PY
}
"#;

/// `authsome run --sandbox [extra…] -- sh -c GUARD+CLIENT+script`, with AUTHSOME_CONNECT_TO
/// set to `connect_to`.
fn sandboxed(s: &Setup, connect_to: &str, extra: &[&str], script: &str) -> Run {
    let netns = format!("HOST_NETNS={}", host_netns());
    let body = format!("{GUARD}\n{CLIENT}\n{script}");
    let mut args: Vec<&str> = vec!["run", "--sandbox", "--env", &netns];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", "sh", "-c", &body]);
    let mut cmd = s.env.command(&args);
    cmd.current_dir(&s.project).env("AUTHSOME_CONNECT_TO", connect_to);
    let out = cmd.stdin(std::process::Stdio::null()).output().unwrap();
    Run::from(out).not_failed_open()
}

fn log(s: &Setup) -> Vec<Value> {
    s.env.run(&["log", "--json", "-n", "200"]).ok().json().as_array().unwrap().clone()
}

fn denial_lines<'a>(run: &'a Run, needle: &str) -> Vec<&'a str> {
    run.stderr.lines().filter(|l| l.starts_with("authsome: denied") && l.contains(needle)).collect()
}

#[test]
fn allowed_tcp_destinations_are_relayed_raw_and_everything_else_is_reset() {
    let s = setup();
    let (ssh, db, dev) = (Server::banner(), Server::echo(), Server::echo());
    let connect_to = format!("git.example.org:22:127.0.0.1:{},db.example.org:5432:127.0.0.1:{}", ssh.port, db.port);
    let dev_port = dev.port.to_string();
    let script = format!(
        r#"
tcp git.example.org 22 banner hello
tcp db.example.org 5432 send 'SELECT 1;'
tcp host.authsome.internal {dev_port} send dev-ping
# The hostile part: other ports of allowed hosts, allowed ports of other hosts, a provider
# host, the host-loopback name on a port not allowed, raw IPs, the sandbox's own localhost.
tcp git.example.org 5432 send x
tcp git.example.org 5432 send again
tcp db.example.org 22 banner
tcp db.example.org 5433 send x
tcp api.openai.com 22 banner
tcp host.authsome.internal 22 banner
tcp host.authsome.internal 5432 send x
tcp 1.2.3.4 22 banner
tcp 127.0.0.1 5432 send x
tcp localhost {dev_port} send x
echo done"#
    );
    let run = sandboxed(
        &s,
        &connect_to,
        &["--allow-tcp", "git.example.org:22", "--allow-tcp", "DB.example.org:5432", "--allow-host-port", &dev_port],
        &script,
    )
    .ok();
    let lines: Vec<&str> = run.stdout.lines().collect();
    let expected = [
        format!("git.example.org:22 ok '{}got hello\\n'", BANNER.replace('\r', "\\r").replace('\n', "\\n")),
        "db.example.org:5432 ok 'SELECT 1;\\n'".to_string(),
        format!("host.authsome.internal:{dev_port} ok 'dev-ping\\n'"),
        "git.example.org:5432 reset".to_string(),
        "git.example.org:5432 reset".to_string(),
        "db.example.org:22 reset".to_string(),
        "db.example.org:5433 refused".to_string(),
        "api.openai.com:22 reset".to_string(),
        "host.authsome.internal:22 reset".to_string(),
        "host.authsome.internal:5432 reset".to_string(),
        "1.2.3.4:22 reset".to_string(),
        "127.0.0.1:5432 reset".to_string(),
        format!("localhost:{dev_port} reset"),
        "done".to_string(),
    ];
    assert_eq!(lines, expected, "stderr: {}", run.stderr);
    assert_eq!((ssh.accepted(), db.accepted(), dev.accepted()), (1, 1, 1), "only the allowed connections arrive");

    // One line per denied destination, with the flag that allows it.
    assert_eq!(
        denial_lines(&run, "git.example.org:5432"),
        [
            "authsome: denied git.example.org:5432 (not an allowed TCP destination); allow with --allow-tcp git.example.org:5432"
        ],
        "{}",
        run.stderr
    );
    assert_eq!(
        denial_lines(&run, "host.authsome.internal:22"),
        ["authsome: denied host.authsome.internal:22 (a host port not allowed); allow with --allow-host-port 22"]
    );
    assert_eq!(denial_lines(&run, "api.openai.com:22").len(), 1, "{}", run.stderr);
    assert_eq!(denial_lines(&run, "1.2.3.4:22 (a raw IP without a host name)").len(), 1, "{}", run.stderr);

    // Audited with bytes in and out; denials audited with their rule.
    let log = log(&s);
    let tcp = |host: &str, port: u64| {
        log.iter()
            .find(|e| e["event"] == "proxy_tcp" && e["host"] == host && e["port"] == port)
            .unwrap_or_else(|| panic!("no proxy_tcp event for {host}:{port}: {log:?}"))
            .clone()
    };
    let ssh_event = tcp("git.example.org", 22);
    assert_eq!(ssh_event["bytes_out"], "hello\n".len());
    assert_eq!(ssh_event["bytes_in"], BANNER.len() + "got hello\n".len());
    let db_event = tcp("db.example.org", 5432);
    assert_eq!((db_event["bytes_out"].clone(), db_event["bytes_in"].clone()), (10.into(), 10.into()));
    let dev_event = tcp("host.authsome.internal", dev.port.into());
    assert_eq!(dev_event["bytes_in"], "dev-ping\n".len());
    assert!(
        log.iter()
            .any(|e| e["event"] == "proxy_deny" && e["host"] == "db.example.org" && e["rule"] == "tcp_not_allowed"),
        "{log:?}"
    );
}

#[test]
fn connect_through_the_inner_proxy_relays_allowed_tcp_only() {
    let s = setup();
    let (db, dev) = (Server::echo(), Server::echo());
    let connect_to = format!("db.example.org:5432:127.0.0.1:{}", db.port);
    let dev_port = dev.port.to_string();
    let script = format!(
        r#"
connect db.example.org 5432 over-connect
connect host.authsome.internal {dev_port} dev-over-connect
connect db.example.org 5433 x
connect other.example.org 5432 x
connect host.authsome.internal 22 x
echo done"#
    );
    let run =
        sandboxed(&s, &connect_to, &["--allow-tcp", "db.example.org:5432", "--allow-host-port", &dev_port], &script)
            .ok();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines[0], "connect db.example.org:5432 ok 'over-connect\\n'", "{}\n{}", run.stdout, run.stderr);
    assert_eq!(lines[1], format!("connect host.authsome.internal:{dev_port} ok 'dev-over-connect\\n'"));
    assert!(lines[2].starts_with("connect db.example.org:5433 HTTP/1.1 403"), "{}", lines[2]);
    assert!(lines[3].starts_with("connect other.example.org:5432 HTTP/1.1 403"), "{}", lines[3]);
    assert!(lines[4].contains("403") && lines[4].contains("allow with --allow-host-port 22"), "{}", lines[4]);
    assert_eq!(lines[5], "done");
    assert_eq!((db.accepted(), dev.accepted()), (1, 1));
    let log = log(&s);
    assert!(
        log.iter().any(|e| e["event"] == "proxy_tcp"
            && e["host"] == "db.example.org"
            && e["bytes_out"] == "over-connect\n".len()
            && e["bytes_in"] == "over-connect\n".len()),
        "{log:?}"
    );
}

#[test]
fn the_ssrf_guard_still_applies_to_allowed_tcp() {
    let s = setup();
    let secret = Server::silent();
    let port = secret.port.to_string();
    // An IP literal of this machine's loopback: refused even with --allow-private. A private
    // literal: refused without --allow-private (no packet leaves: the guard stops the dial).
    let script = format!(
        r#"
tcp 127.0.0.1 {port} send x
tcp 10.255.255.1 5432 send x
echo done"#
    );
    let allow_loopback = format!("127.0.0.1:{port}");
    let run = sandboxed(
        &s,
        "",
        &["--allow-tcp", &allow_loopback, "--allow-tcp", "10.255.255.1:5432", "--allow-private"],
        &format!("tcp 127.0.0.1 {port} send x\necho done"),
    )
    .ok();
    assert_eq!(run.stdout.trim(), format!("127.0.0.1:{port} reset\ndone"), "{}", run.stderr);
    assert_eq!(
        denial_lines(&run, &format!("127.0.0.1:{port} (resolves to 127.0.0.1, an address of this machine)")).len(),
        1,
        "{}",
        run.stderr
    );
    let run = sandboxed(&s, "", &["--allow-tcp", &allow_loopback, "--allow-tcp", "10.255.255.1:5432"], &script).ok();
    assert_eq!(run.stdout.trim(), format!("127.0.0.1:{port} reset\n10.255.255.1:5432 reset\ndone"), "{}", run.stderr);
    assert_eq!(
        denial_lines(&run, "10.255.255.1:5432"),
        ["authsome: denied 10.255.255.1:5432 (an IP address, not a host name); allow with --allow-private"]
    );
    assert_eq!(secret.accepted(), 0, "the host's loopback service was reached");
}

#[test]
fn a_policy_file_allows_tcp_and_host_ports() {
    let s = setup();
    let (db, dev) = (Server::echo(), Server::echo());
    let policy = s.project.join("authsome-policy.json");
    std::fs::write(&policy, format!(r#"{{"allow_tcp": ["db.example.org:5432"], "allow_host_ports": [{}]}}"#, dev.port))
        .unwrap();
    let connect_to = format!("db.example.org:5432:127.0.0.1:{}", db.port);
    let script =
        format!("tcp db.example.org 5432 send from-policy\ntcp host.authsome.internal {} send dev\n", dev.port);
    let run = sandboxed(&s, &connect_to, &["--policy", policy.to_str().unwrap()], &script).ok();
    assert_eq!(
        run.stdout.trim(),
        format!("db.example.org:5432 ok 'from-policy\\n'\nhost.authsome.internal:{} ok 'dev\\n'", dev.port),
        "{}",
        run.stderr
    );
    // Without the rule the name does not even resolve, and nothing is captured.
    let run =
        sandboxed(&s, &connect_to, &[], "tcp db.example.org 5432 send x\ntcp host.authsome.internal 3000 send x\n")
            .ok();
    assert!(run.stdout.contains("db.example.org:5432 error gaierror"), "{}", run.stdout);
    assert!(run.stdout.contains("host.authsome.internal:3000 error gaierror"), "{}", run.stdout);
    assert_eq!(
        denial_lines(&run, "host.authsome.internal"),
        ["authsome: denied host.authsome.internal (a host port not allowed); allow with --allow-host-port PORT"],
        "{}",
        run.stderr
    );
    assert_eq!(db.accepted(), 1);
}

#[test]
fn bad_tcp_rules_are_refused_with_a_hint() {
    let s = setup();
    let cases: &[(&[&str], &str, &str)] = &[
        (&["--allow-tcp", "db.example.org:22"], "--allow-tcp needs --sandbox", "add --sandbox"),
        (&["--allow-host-port", "3000"], "--allow-host-port needs --sandbox", "add --sandbox"),
        (&["--sandbox", "--allow-tcp", "*.example.org:22"], "wildcards are not allowed", "exact destination"),
        (&["--sandbox", "--allow-tcp", "db.example.org"], "expected HOST:PORT", "--allow-tcp github.com:22"),
        (&["--sandbox", "--allow-tcp", "github.com:443"], "port 443 is captured for HTTP(S)", "use --allow github.com"),
        (&["--sandbox", "--port", "8443", "--allow-tcp", "x.org:8443"], "captured for HTTP(S)", "--allow x.org"),
        (&["--sandbox", "--allow-tcp", "localhost:5432"], "loopback", "--allow-host-port 5432"),
        (&["--sandbox", "--allow-tcp", "host.authsome.internal:3000"], "loopback", "--allow-host-port 3000"),
        (&["--sandbox", "--allow-host-port", "0"], "not a port", "--allow-host-port 3000"),
        (&["--sandbox", "--allow-tcp", "proxy.example.org:3128"], "own proxy listener", "port 3128"),
    ];
    for (flags, error, hint) in cases {
        let mut args = vec!["run"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["--", "true"]);
        let run = s.env.run(&args).fails(125);
        assert!(run.stderr.contains(error), "{flags:?}: {}", run.stderr);
        let hint_line = run.stderr.lines().find(|l| l.starts_with("hint:")).unwrap_or_default();
        assert!(hint_line.contains(hint), "{flags:?}: {}", run.stderr);
    }
}

#[test]
fn a_dev_server_on_the_host_answers_curl_by_its_reserved_name() {
    // curl honours HTTP_PROXY: the reserved name is in NO_PROXY, so it dials it itself and
    // the connection is relayed raw to the host's loopback.
    let s = setup();
    let dev = authsome_testkit::Echo::http();
    let port = dev.port().to_string();
    let script = format!(
        "curl -sS -m 5 http://host.authsome.internal:{port}/dev-server; echo\n\
         curl -sS -m 5 -o /dev/null http://localhost:{port}/ 2>/dev/null || echo localhost-unreachable"
    );
    let run = sandboxed(&s, "", &["--allow-host-port", &port], &script).ok();
    let first: Value = serde_json::from_str(run.stdout.lines().next().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", run.stdout, run.stderr));
    assert_eq!(first["path"], "/dev-server");
    assert_eq!(run.stdout.lines().nth(1), Some("localhost-unreachable"), "{}", run.stdout);
}

#[test]
fn a_real_ssh_client_reaches_the_allowed_ssh_port() {
    // OpenSSH itself, through the relay: it reads the server's banner (the server speaks
    // first) before the handshake fails on this stand-in server.
    let s = setup();
    let ssh = Server::banner();
    let connect_to = format!("git.example.org:22:127.0.0.1:{}", ssh.port);
    let script = r#"
command -v ssh >/dev/null || { echo no-ssh; exit 0; }
ssh -v -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ConnectTimeout=5 \
    git@git.example.org true 2>&1 | grep -o 'remote software version authsome-test' | head -1
ssh -o BatchMode=yes -o ConnectTimeout=5 -p 2222 git@git.example.org true 2>/dev/null || echo port-2222-refused
"#;
    let run = sandboxed(&s, &connect_to, &["--allow-tcp", "git.example.org:22"], script).ok();
    assert_ne!(
        run.stdout.trim(),
        "no-ssh",
        "no ssh client on this machine: `bash .ci/install-deps` installs openssh-client"
    );
    assert_eq!(run.stdout.trim(), "remote software version authsome-test\nport-2222-refused", "{}", run.stderr);
    assert_eq!(ssh.accepted(), 1);
}

#[test]
fn a_real_postgres_client_queries_the_allowed_database() {
    let s = setup();
    let db = Server::postgres();
    let connect_to = format!("db.example.org:5432:127.0.0.1:{}", db.port);
    let conninfo = "port=5432 user=app dbname=app sslmode=disable gssencmode=disable connect_timeout=5";
    let script = format!(
        r#"
command -v psql >/dev/null || {{ echo no-psql; exit 0; }}
psql "host=db.example.org {conninfo}" -At -c "select 'through the relay'"
psql "host=other.example.org {conninfo}" -At -c "select 1" 2>/dev/null || echo other-host-refused
"#
    );
    let run = sandboxed(&s, &connect_to, &["--allow-tcp", "db.example.org:5432"], &script).ok();
    assert_ne!(
        run.stdout.trim(),
        "no-psql",
        "no psql on this machine: `bash .ci/install-deps` installs postgresql-client"
    );
    assert_eq!(run.stdout.trim(), "select 'through the relay'\nother-host-refused", "{}", run.stderr);
    assert_eq!(db.accepted(), 1);
}
