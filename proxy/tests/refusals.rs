//! Refusals, each in the one denial format: placeholders outside their declared location,
//! ports the run does not allow, TRACE, path traversal out of a route's prefix, IP literals
//! and addresses of this machine, and the text / JSON bodies a refused client reads.

mod common;

use std::sync::atomic::Ordering;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use authsome_proxy::{Denial, DenialHook, DenyRule, EgressMode, EgressPolicy, ProxyEvent, Verdict};
use common::*;
use tokio::io::AsyncWriteExt;

fn ca(h: &Harness) -> String {
    h.proxy_ca_path.to_str().unwrap().to_owned()
}

fn denials(h: &Harness) -> Vec<Denial> {
    h.events
        .all()
        .into_iter()
        .filter_map(|e| match e {
            ProxyEvent::Denied { denial } => Some(denial),
            _ => None,
        })
        .collect()
}

/// curl through the proxy; returns (status, body).
async fn status_of(h: &Harness, args: &[&str]) -> (String, String) {
    let mut all = vec!["-w", "\n%{http_code}"];
    all.extend_from_slice(args);
    let (_, out) = h.curl(&all).await;
    let (body, status) = out.rsplit_once('\n').unwrap();
    (status.to_owned(), body.to_owned())
}

#[tokio::test]
async fn a_placeholder_outside_the_declared_header_is_refused_and_not_forwarded() {
    let h = harness(Options::default()).await;
    let ca = ca(&h);
    let cases = [
        (format!("X-Echo: {PH_OPENAI_WORK}"), "https://api.example.test/v1".to_owned(), "header x-echo"),
        ("X-A: b".to_owned(), format!("https://api.example.test/v1?ref={PH_OPENAI_WORK}"), "query parameter ref"),
        ("X-A: b".to_owned(), format!("https://api.example.test/echo/{PH_OPENAI_WORK}"), "path"),
    ];
    for (header, url, location) in cases {
        let hits = h.upstream.hits.load(Ordering::SeqCst);
        let auth = format!("Authorization: Bearer {PH_OPENAI_WORK}");
        let (status, body) = status_of(&h, &["--cacert", &ca, "-H", &auth, "-H", &header, &url]).await;
        assert_eq!(status, "403", "{url}: {body}");
        assert!(body.contains(location), "{body}");
        assert!(!body.contains(PH_OPENAI_WORK), "{body}");
        assert_eq!(h.upstream.hits.load(Ordering::SeqCst), hits, "{location}: nothing may reach the upstream");
        assert!(denials(&h).iter().any(|d| matches!(&d.rule,
            DenyRule::PlaceholderMisplaced { owner, location: l } if owner.0 == "openai" && l == location)));
    }
    assert!(!format!("{:?}", h.events.all()).contains(PH_OPENAI_WORK));
}

#[tokio::test]
async fn trace_and_track_are_refused() {
    let h = harness(Options::default()).await;
    let ca = ca(&h);
    for method in ["TRACE", "TRACK"] {
        let hits = h.upstream.hits.load(Ordering::SeqCst);
        let (status, body) = status_of(&h, &["--cacert", &ca, "-X", method, "https://api.example.test/x"]).await;
        assert_eq!(status, "405", "{method}: {body}");
        assert!(body.starts_with("authsome: denied api.example.test:443"), "{body}");
        assert_eq!(h.upstream.hits.load(Ordering::SeqCst), hits);
    }
    let (status, _) = status_of(&h, &["-X", "TRACE", "http://other.example.test/x"]).await;
    assert_eq!(status, "405");
    assert!(denials(&h).iter().all(|d| d.rule == DenyRule::TraceMethod));
}

#[tokio::test]
async fn connect_to_a_port_not_allowed_is_refused_by_every_way_in() {
    let h = harness(Options { allowed_ports: vec![443, 80], ..Options::default() }).await;
    let (_, head) = h.raw_connect("api.example.test:22", Some(&basic_token())).await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    let (_, head) = h.raw_connect("api.example.test:443", Some(&basic_token())).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let (status, body) = status_of(&h, &["http://api.example.test:5432/x"]).await;
    assert_eq!(status, "403", "{body}");
    assert_eq!(body.trim(), "authsome: denied api.example.test:5432 (port not allowed); allow with --port 5432");
    let ports: Vec<u16> = denials(&h).iter().filter(|d| d.rule == DenyRule::Port).map(|d| d.port).collect();
    assert_eq!(ports, [22, 5432]);
    // The transparent way in: a port that is not an HTTP(S) one is raw TCP only, decided
    // before a byte is read; with no --allow-tcp rule the connection is closed unanswered.
    let dns = Arc::new(authsome_proxy::dns::FakeDns::new());
    let named = dns.ip_for("api.example.test");
    for (dst, rule) in [
        (std::net::SocketAddr::new(named.into(), 8443), DenyRule::TcpNotAllowed),
        ("203.0.113.7:8443".parse().unwrap(), DenyRule::UnnamedAddress),
    ] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let proxy = h.proxy.clone();
        let dns = dns.clone();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            proxy.serve_transparent(stream, dst, Some(&dns)).await;
        });
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _ = tcp.write_all(b"GET /x HTTP/1.1\r\nHost: api.example.test\r\nConnection: close\r\n\r\n").await;
        let mut response = Vec::new();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut tcp, &mut response).await;
        assert!(response.is_empty(), "{}", String::from_utf8_lossy(&response));
        assert!(denials(&h).iter().any(|d| d.port == 8443 && d.rule == rule), "{rule:?}");
    }
    let refused = denials(&h).into_iter().find(|d| d.rule == DenyRule::TcpNotAllowed).unwrap();
    assert_eq!(refused.hint(), "allow with --allow-tcp api.example.test:8443");
}

#[tokio::test]
async fn allowed_tcp_is_relayed_raw_with_its_byte_counts() {
    // An SSH-like server: it speaks first, then echoes one read back.
    let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server_port = server.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = server.accept().await {
            tokio::spawn(async move {
                stream.write_all(b"SSH-2.0-test\r\n").await.unwrap();
                let mut buf = [0u8; 64];
                let n = tokio::io::AsyncReadExt::read(&mut stream, &mut buf).await.unwrap();
                stream.write_all(&buf[..n]).await.unwrap();
            });
        }
    });
    let h = harness(Options {
        allowed_ports: vec![443, 80],
        egress: EgressPolicy { tcp: vec!["git.example.test:22".parse().unwrap()], ..EgressPolicy::default() },
        extra_connect_to: vec![format!("git.example.test:22:127.0.0.1:{server_port}")],
        ..Options::default()
    })
    .await;
    let dns = Arc::new(authsome_proxy::dns::FakeDns::new());
    let dst = std::net::SocketAddr::new(dns.ip_for("git.example.test").into(), 22);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let proxy = h.proxy.clone();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        proxy.serve_transparent(stream, dst, Some(&dns)).await;
    });
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut banner = [0u8; 14];
    tokio::io::AsyncReadExt::read_exact(&mut tcp, &mut banner).await.unwrap();
    assert_eq!(&banner, b"SSH-2.0-test\r\n", "the server spoke first, through the relay");
    tcp.write_all(b"ping").await.unwrap();
    let mut rest = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut tcp, &mut rest).await.unwrap();
    assert_eq!(rest, b"ping");
    drop(tcp);
    let relayed = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            let found = h.events.all().into_iter().find_map(|e| match e {
                ProxyEvent::TcpRelayed { host, port, bytes_out, bytes_in } => Some((host, port, bytes_out, bytes_in)),
                _ => None,
            });
            if let Some(found) = found {
                return found;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(relayed, ("git.example.test".to_string(), 22, 4, 18));
}

#[tokio::test]
async fn a_path_that_escapes_the_route_prefix_gets_no_credential() {
    let h = harness(Options::default()).await;
    let ca = ca(&h);
    let (_, body) = h.curl(&["--cacert", &ca, "https://scoped.example.test/api/v1"]).await;
    assert_eq!(echoed(&body, "authorization"), ["Bearer real-scoped-default-0"]);
    for path in ["/api/../admin", "/api/%2e%2e/admin", "/api%2F..%2Fadmin", "/api;x/../admin"] {
        let url = format!("https://scoped.example.test{path}");
        let (code, body) = h.curl(&["--path-as-is", "--cacert", &ca, &url]).await;
        assert_eq!(code, 0, "{body}");
        assert!(echoed(&body, "authorization").is_empty(), "{path}: {body}");
    }
}

#[tokio::test]
async fn denial_bodies_are_text_or_json_as_the_client_accepts() {
    let h = harness(Options {
        egress: EgressPolicy { mode: EgressMode::Allowlist, ..EgressPolicy::default() },
        ..Options::default()
    })
    .await;
    let (status, text) = status_of(&h, &["http://other.example.test/x"]).await;
    assert_eq!(status, "403");
    assert_eq!(
        text.trim(),
        "authsome: denied other.example.test:80 (not in the allowlist); allow with --allow other.example.test"
    );
    let (status, json) = status_of(&h, &["-H", "Accept: application/json", "http://other.example.test/x"]).await;
    assert_eq!(status, "403");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["host"], "other.example.test");
    assert_eq!(v["port"], 80);
    assert_eq!(v["rule"], "not_allowlisted");
    assert_eq!(v["hint"], "allow with --allow other.example.test");
    // CONNECT too.
    let mut tcp = tokio::net::TcpStream::connect(h.proxy_addr).await.unwrap();
    let auth = basic_token();
    tcp.write_all(
        format!(
            "CONNECT other.example.test:443 HTTP/1.1\r\nProxy-Authorization: {auth}\r\nAccept: application/json\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut response = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut tcp, &mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 403"), "{response}");
    assert!(response.contains(r#""rule":"not_allowlisted""#), "{response}");
}

#[tokio::test]
async fn providers_mode_counts_allow_patterns() {
    let h = harness(Options {
        egress: EgressPolicy {
            mode: EgressMode::Providers,
            allow: vec!["other.example.test".parse().unwrap()],
            ..EgressPolicy::default()
        },
        ..Options::default()
    })
    .await;
    let (_, head) = h.raw_connect("other.example.test:443", Some(&basic_token())).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let (_, head) = h.raw_connect("unlisted.example.test:443", Some(&basic_token())).await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    assert!(denials(&h).iter().any(|d| d.host == "unlisted.example.test" && d.rule == DenyRule::NotAProviderHost));
}

/// Inside a network namespace of its own (this test re-executes itself under `unshare`), an
/// address that is neither loopback nor private is put on `lo` and a name resolves to it
/// through a bind-mounted `/etc/hosts`: the proxy must refuse both the name (an address of
/// this machine) and the IP literal, while a service listens there.
#[test]
fn addresses_of_this_machine_and_ip_literals_are_refused() {
    const INNER: &str = "AUTHSOME_PROXY_TEST_IN_NETNS";
    const ADDR: &str = "203.0.113.77";
    if std::env::var_os(INNER).is_some() {
        return in_netns(ADDR);
    }
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, format!("127.0.0.1 localhost\n{ADDR} self.example.test\n")).unwrap();
    let exe = std::env::current_exe().unwrap();
    let script = format!(
        "set -e; ip link set lo up; ip addr add {ADDR}/32 dev lo; mount --bind {} /etc/hosts; exec {} --exact addresses_of_this_machine_and_ip_literals_are_refused --nocapture --test-threads 1",
        hosts.display(),
        exe.display()
    );
    let output =
        std::process::Command::new("unshare").args(["--net", "--mount", "sh", "-c", &script]).env(INNER, "1").output();
    let output = match output {
        Ok(o) => o,
        Err(e) => panic!("unshare is required for this test: {e}"),
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() && (stderr.contains("Operation not permitted") || stderr.contains("cannot open")) {
        eprintln!("SKIPPED: the kernel refused a network namespace here: {stderr}");
        return;
    }
    assert!(output.status.success(), "inner run failed:\n{}\n{stderr}", String::from_utf8_lossy(&output.stdout));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("1 passed"),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

fn in_netns(addr: &str) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        // A host service bound to all interfaces.
        let service = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
        let port = service.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = service.accept().await {
                let _ = s.write_all(b"SSH-2.0-host-service\r\n").await;
            }
        });
        assert!(tokio::net::TcpStream::connect((addr, port)).await.is_ok(), "the service is reachable directly");
        let h = harness(Options { connect_to: false, ..Options::default() }).await;
        let (_, head) = h.raw_connect(&format!("self.example.test:{port}"), Some(&basic_token())).await;
        assert!(head.starts_with("HTTP/1.1 403"), "name of a local address: {head}");
        let (_, head) = h.raw_connect(&format!("{addr}:{port}"), Some(&basic_token())).await;
        assert!(head.starts_with("HTTP/1.1 403"), "IP literal: {head}");
        let rules: Vec<DenyRule> = denials(&h).into_iter().map(|d| d.rule).collect();
        assert_eq!(rules, [DenyRule::LocalAddress(addr.parse().unwrap()), DenyRule::IpLiteral]);
        // --allow-private opens private networks, never this machine's own addresses.
        let open = harness(Options { connect_to: false, allow_private: true, ..Options::default() }).await;
        let (_, head) = open.raw_connect(&format!("self.example.test:{port}"), Some(&basic_token())).await;
        assert!(head.starts_with("HTTP/1.1 403"), "--allow-private reached the host: {head}");
        let (_, head) = open.raw_connect(&format!("127.0.0.1:{port}"), Some(&basic_token())).await;
        assert!(head.starts_with("HTTP/1.1 403"), "--allow-private reached loopback: {head}");
    });
}

/// Allows one host when asked; remembers every question.
struct Answers {
    allow: &'static str,
    asked: Mutex<Vec<String>>,
}

impl DenialHook for Answers {
    fn decide(&self, denial: Denial) -> Pin<Box<dyn Future<Output = Verdict> + Send + '_>> {
        self.asked.lock().unwrap().push(format!("{}:{}", denial.host, denial.port));
        let verdict = if denial.host == self.allow { Verdict::Allow } else { Verdict::Deny };
        Box::pin(async move {
            // The request waits while the hook decides.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            verdict
        })
    }
}

#[tokio::test]
async fn a_denial_hook_decides_refusals_a_flag_could_lift_and_nothing_else() {
    let answers = Arc::new(Answers { allow: "other.example.test", asked: Mutex::new(Vec::new()) });
    let h = harness(Options {
        egress: EgressPolicy {
            mode: EgressMode::Allowlist,
            deny: vec!["q.example.test".parse().unwrap()],
            ..EgressPolicy::default()
        },
        allowed_ports: vec![443, 80],
        hook: Some(answers.clone()),
        ..Options::default()
    })
    .await;
    let ca = ca(&h);
    // Allowed by the hook: CONNECT (tunnelled) and plain http, and not recorded as denied.
    let (status, _) =
        status_of(&h, &["--cacert", &h.upstream_ca_path.to_string_lossy(), "https://other.example.test/x"]).await;
    assert_eq!(status, "200");
    let (status, _) = status_of(&h, &["http://other.example.test/y"]).await;
    assert_eq!(status, "200");
    // Refused by the hook: the policy's 403.
    let (status, body) = status_of(&h, &["http://nowhere.example.test/x"]).await;
    assert_eq!(
        (status.as_str(), body.trim()),
        (
            "403",
            "authsome: denied nowhere.example.test:80 (not in the allowlist); allow with --allow nowhere.example.test"
        )
    );
    // A port refusal is asked too; --deny and allowed hosts never are.
    let (_, head) = h.raw_connect("api.example.test:22", Some(&basic_token())).await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    let (status, _) = status_of(&h, &["http://q.example.test/x"]).await;
    assert_eq!(status, "403");
    let (status, _) = status_of(&h, &["--cacert", &ca, "https://api.example.test/v1"]).await;
    assert_eq!(status, "200");
    assert_eq!(
        *answers.asked.lock().unwrap(),
        ["other.example.test:443", "other.example.test:80", "nowhere.example.test:80", "api.example.test:22"]
    );
    let denied: Vec<String> = denials(&h).iter().map(|d| format!("{}:{}", d.host, d.port)).collect();
    assert_eq!(denied, ["nowhere.example.test:80", "api.example.test:22", "q.example.test:80"]);
    // The traffic counters saw the allowed hosts.
    let traffic = h.proxy.traffic();
    assert_eq!(traffic["other.example.test"].connections, 1, "{traffic:?}");
    assert_eq!(traffic["other.example.test"].requests, 1, "plain http: {traffic:?}");
    assert!(traffic["other.example.test"].bytes_up > 0 && traffic["other.example.test"].bytes_down > 0, "{traffic:?}");
    assert_eq!(traffic["api.example.test"].requests, 1, "{traffic:?}");
    assert!(!traffic.contains_key("nowhere.example.test"), "{traffic:?}");
}
