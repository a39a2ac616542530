//! The explicit way in, driven by real clients (curl, reqwest) against a local HTTPS echo
//! upstream reached through connect-to and trusted through extra roots.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use authsome_proxy::{Denial, DenyRule, EgressMode, EgressPolicy, Owner, ProxyEvent};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn ca(h: &Harness) -> String {
    h.proxy_ca_path.to_str().unwrap().to_owned()
}

#[tokio::test]
async fn curl_gets_the_credential_on_http1_and_h2() {
    let h = harness(Options::default()).await;
    for version in ["--http1.1", "--http2"] {
        let (code, body) = h.curl(&[version, "--cacert", &ca(&h), "https://api.example.test/v1/models?x=1"]).await;
        assert_eq!(code, 0, "{body}");
        assert_eq!(echoed(&body, "authorization"), ["Bearer real-openai-default-0"]);
        assert_eq!(echoed_field(&body, "uri"), "/v1/models?x=1");
        // No proxy headers reach the upstream; header names stay lower-case.
        assert!(echoed(&body, "proxy-authorization").is_empty());
        assert_eq!(echoed_field(&body, "authority"), "api.example.test");
    }
    let events = h.events.all();
    assert!(events.iter().any(|e| matches!(e,
        ProxyEvent::Injected { owner, host, status: 200, retried_after_refresh: false, path, .. }
            if owner.0 == "openai" && host == "api.example.test" && path == "/v1/models")));
    // The Injected event never carries a secret.
    assert!(!format!("{events:?}").contains("real-openai"));
}

#[tokio::test]
async fn placeholder_selects_the_connection_and_is_swapped() {
    let h = harness(Options::default()).await;
    let (code, body) = h
        .curl(&[
            "--cacert",
            &ca(&h),
            "-H",
            &format!("Authorization: Bearer {PH_OPENAI_WORK}"),
            "https://api.example.test/v1?x=1",
        ])
        .await;
    assert_eq!(code, 0);
    assert_eq!(echoed(&body, "authorization"), ["Bearer real-openai-work-0"]);
    assert_eq!(echoed_field(&body, "uri"), "/v1?x=1");
    let requests = h.source.requests.lock().unwrap().clone();
    assert_eq!(requests[0].connection.as_deref(), Some("work"));
    assert_eq!(requests[0].path, "/v1");
}

#[tokio::test]
async fn a_client_carried_placeholder_is_swapped_in_a_declared_header() {
    // The query-parameter provider declares `authorization` as a header its client fills.
    let h = harness(Options {
        source: FakeSource { query_param: Some("api_key".into()), ..FakeSource::default() },
        ..Options::default()
    })
    .await;
    let (code, body) = h
        .curl(&[
            "--cacert",
            &ca(&h),
            "-H",
            &format!("Authorization: token {PH_OPENAI_WORK}"),
            "https://api.example.test/v1?api_key=x",
        ])
        .await;
    assert_eq!(code, 0);
    assert_eq!(echoed(&body, "authorization"), ["token real-openai-work-0"]);
    assert_eq!(echoed_field(&body, "uri"), "/v1?api_key=real-openai-work-0");
}

#[tokio::test]
async fn query_parameter_injection() {
    let h = harness(Options {
        source: FakeSource { query_param: Some("api_key".into()), ..FakeSource::default() },
        ..Options::default()
    })
    .await;
    let (code, body) = h.curl(&["--cacert", &ca(&h), "https://q.example.test/x?api_key=client&a=b"]).await;
    assert_eq!(code, 0);
    assert_eq!(echoed_field(&body, "uri"), "/x?api_key=real-q-default-0&a=b");
}

#[tokio::test]
async fn plain_http_is_never_injected() {
    let h = harness(Options::default()).await;
    let (code, body) = h.curl(&["http://api.example.test/plain"]).await;
    assert_eq!(code, 0, "{body}");
    assert!(echoed(&body, "authorization").is_empty());
    // the run token never travels upstream
    assert!(echoed(&body, "proxy-authorization").is_empty());
    assert_eq!(h.source.calls.load(Ordering::SeqCst), 0);
    // but a placeholder for another owner is still blocked
    let (_, body) = h
        .curl(&["-w", "%{http_code}", "-H", &format!("Authorization: {PH_GITHUB}"), "http://api.example.test/plain"])
        .await;
    assert!(body.ends_with("403"), "{body}");
}

#[tokio::test]
async fn unknown_host_is_tunnelled_untouched() {
    let h = harness(Options::default()).await;
    // The client trusts the upstream's own CA: only an opaque tunnel can satisfy it.
    let (code, body) = h
        .curl(&[
            "--cacert",
            h.upstream_ca_path.to_str().unwrap(),
            "-H",
            "Authorization: Bearer client-own",
            "https://other.example.test/x",
        ])
        .await;
    assert_eq!(code, 0, "{body}");
    assert_eq!(echoed(&body, "authorization"), ["Bearer client-own"]);
    assert!(h.events.all().iter().any(|e| matches!(e,
        ProxyEvent::Tunnelled { host, port: 443 } if host == "other.example.test")));
    // and an owned host is not tunnelled: the upstream's CA alone is not enough there
    let (code, _) = h.curl(&["--cacert", h.upstream_ca_path.to_str().unwrap(), "https://api.example.test/x"]).await;
    assert_eq!(code, 60);
}

#[tokio::test]
async fn missing_or_wrong_run_token_gets_407() {
    let h = harness(Options::default()).await;
    let (_, head) = h.raw_connect("api.example.test:443", None).await;
    assert!(head.starts_with("HTTP/1.1 407"), "{head}");
    assert!(head.to_ascii_lowercase().contains("proxy-authenticate: basic"), "{head}");
    let (_, head) = h.raw_connect("api.example.test:443", Some("Basic d3Jvbmc6")).await;
    assert!(head.starts_with("HTTP/1.1 407"), "{head}");
    let (_, head) = h.raw_connect("api.example.test:443", Some(&basic_token())).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // curl without credentials in the proxy URL
    let output = tokio::process::Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--proxy"])
        .arg(format!("http://{}", h.proxy_addr))
        .arg("http://api.example.test/x")
        .output()
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "407");
}

#[tokio::test]
async fn placeholder_to_the_wrong_host_is_blocked() {
    let h = harness(Options::default()).await;
    let hits_before = h.upstream.hits.load(Ordering::SeqCst);
    let (code, body) = h
        .curl(&[
            "-w",
            "\n%{http_code}",
            "--cacert",
            &ca(&h),
            "-H",
            &format!("x-api-key: {PH_GITHUB}"),
            "https://api.example.test/v1",
        ])
        .await;
    assert_eq!(code, 0);
    assert!(body.ends_with("403"), "{body}");
    assert_eq!(h.upstream.hits.load(Ordering::SeqCst), hits_before);
    let events = h.events.all();
    assert!(events.iter().any(|e| matches!(e,
        ProxyEvent::Denied { denial: Denial { host, rule: DenyRule::PlaceholderForeignHost { owner, location: "header" }, .. } }
            if owner.0 == "github" && host == "api.example.test")));
    assert!(!format!("{events:?}").contains(PH_GITHUB));
    // in the query too
    let (_, body) = h
        .curl(&["-w", "\n%{http_code}", "--cacert", &ca(&h), &format!("https://api.example.test/v1?k={PH_GITHUB}")])
        .await;
    assert!(body.ends_with("403"), "{body}");
}

#[tokio::test]
async fn ssrf_guard_refuses_loopback_without_connect_to() {
    let h = harness(Options::default()).await;
    let port = h.upstream.tls_addr.port();
    for authority in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
        let (_, head) = h.raw_connect(&authority, Some(&basic_token())).await;
        assert!(head.starts_with("HTTP/1.1 403"), "{authority}: {head}");
    }
    // MITM'd hosts are guarded too (inspect_all)
    let h2 = harness(Options { inspect_all: true, ..Options::default() }).await;
    let (code, body) =
        h2.curl(&["-w", "\n%{http_code}", "--cacert", &ca(&h2), &format!("https://localhost:{port}/")]).await;
    assert_eq!(code, 0);
    assert!(body.ends_with("403"), "{body}");
    let denied = |events: Vec<ProxyEvent>| {
        events.into_iter().any(|e| matches!(e, ProxyEvent::Denied { denial } if denial.host == "localhost"))
    };
    assert!(denied(h.events.all()));
    assert!(denied(h2.events.all()));
}

#[tokio::test]
async fn a_tie_injects_nothing_unless_a_placeholder_chooses() {
    let h = harness(Options::default()).await;
    let (code, body) = h.curl(&["--cacert", &ca(&h), "https://tie.example.test/x"]).await;
    assert_eq!(code, 0);
    assert!(echoed(&body, "authorization").is_empty());
    let (_, body) = h
        .curl(&["--cacert", &ca(&h), "-H", &format!("authorization: Bearer {PH_TIE_B}"), "https://tie.example.test/x"])
        .await;
    assert_eq!(echoed(&body, "authorization"), ["Bearer real-tie-b-default-0"]);
}

#[tokio::test]
async fn excluded_oauth_path_is_not_injected() {
    let h = harness(Options::default()).await;
    let (code, body) =
        h.curl(&["--cacert", &ca(&h), "-d", "grant_type=x", "https://api.example.test/oauth/token?x=1"]).await;
    assert_eq!(code, 0);
    assert!(echoed(&body, "authorization").is_empty());
    assert_eq!(h.source.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn unauthorized_triggers_one_forced_refresh_and_a_retry() {
    let h = harness(Options::default()).await;
    let good = FakeSource::token("openai", None, 1);
    for method_args in [vec![], vec!["-d", "small body"]] {
        let mut args = vec!["-w", "\n%{http_code}", "--cacert"];
        let ca = ca(&h);
        args.push(&ca);
        args.extend(method_args.iter().copied());
        let url = format!("https://api.example.test/unauthorized-unless/{good}");
        args.push(&url);
        let (code, body) = h.curl(&args).await;
        assert_eq!(code, 0);
        let (json, status) = body.rsplit_once('\n').unwrap();
        assert_eq!(status, "200", "{body}");
        assert_eq!(echoed(json, "authorization"), [format!("Bearer {good}")]);
        if !method_args.is_empty() {
            assert_eq!(echoed_field(json, "body"), "small body");
        }
    }
    // first request: resolve + forced resolve; second: resolve (gen 1 already) only
    assert_eq!(h.source.forced.load(Ordering::SeqCst), 1);
    assert_eq!(h.source.calls.load(Ordering::SeqCst), 3);
    assert!(
        h.events
            .all()
            .iter()
            .any(|e| matches!(e, ProxyEvent::Injected { retried_after_refresh: true, status: 200, .. }))
    );
    // A 401 that survives the refresh is returned as is, with only one retry.
    let (_, body) = h
        .curl(&["-w", "\n%{http_code}", "--cacert", &ca(&h), "https://api.example.test/unauthorized-unless/never"])
        .await;
    assert!(body.ends_with("401"), "{body}");
    assert_eq!(h.source.forced.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn resolve_failure_forwards_without_credential() {
    let h = harness(Options {
        source: FakeSource { failing: vec!["openai".into()], ..FakeSource::default() },
        ..Options::default()
    })
    .await;
    let (code, body) = h.curl(&["--cacert", &ca(&h), "https://api.example.test/x"]).await;
    assert_eq!(code, 0);
    assert!(echoed(&body, "authorization").is_empty());
    assert!(h.events.all().iter().any(|e| matches!(e,
        ProxyEvent::ResolveFailed { owner, .. } if *owner == Owner::from("openai"))));
}

fn reqwest_client(h: &Harness) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&h.proxy_ca_path).unwrap()).unwrap();
    reqwest::Client::builder().proxy(reqwest::Proxy::all(h.proxy_url()).unwrap()).tls_certs_only([ca]).build().unwrap()
}

#[tokio::test]
async fn rust_client_negotiates_h2_and_gets_the_credential() {
    let h = harness(Options::default()).await;
    let client = reqwest_client(&h);
    let response = client
        .get("https://gh.example.test/user")
        .header("authorization", format!("token {PH_GITHUB}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    let body = response.text().await.unwrap();
    // the injected header replaces the client's
    assert_eq!(echoed(&body, "authorization"), ["Bearer real-github-default-0"]);
    // upstream offered h2 too
    assert_eq!(echoed_field(&body, "version"), "HTTP/2.0");
}

#[tokio::test]
async fn streaming_responses_are_not_buffered() {
    let h = harness(Options::default()).await;
    let client = reqwest_client(&h);
    let start = Instant::now();
    let mut response = client.get("https://api.example.test/stream").send().await.unwrap();
    let mut arrivals = Vec::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        arrivals.push((start.elapsed(), chunk));
    }
    let text: String = arrivals.iter().map(|(_, c)| String::from_utf8_lossy(c).into_owned()).collect();
    assert_eq!(text.lines().count(), 5, "{text}");
    let first = arrivals.first().unwrap().0;
    let last = arrivals.last().unwrap().0;
    assert!(first < Duration::from_millis(500), "first chunk at {first:?}");
    assert!(last - first >= Duration::from_millis(600), "{arrivals:?}");
}

#[tokio::test]
async fn websocket_handshake_gets_the_credential() {
    let h = harness(Options::default()).await;
    let (stream, head) = h.raw_connect("api.example.test:443", Some(&basic_token())).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let connector = tls_client::h1_connector(&h.proxy_ca_path, true);
    let mut tls = connector.connect("api.example.test".try_into().unwrap(), stream).await.unwrap();
    tls.write_all(
        b"GET /ws HTTP/1.1\r\nHost: api.example.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    let head = read_head(&mut tls).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while byte[0] != b'\n' {
        tls.read_exact(&mut byte).await.unwrap();
        line.push(byte[0]);
    }
    let json = String::from_utf8(line).unwrap();
    assert_eq!(echoed(&json, "authorization"), ["Bearer real-openai-default-0"]);
    assert_eq!(echoed(&json, "upgrade"), ["websocket"]);
    tls.write_all(b"ping-bytes").await.unwrap();
    let mut buf = [0u8; 10];
    tls.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping-bytes");
}

#[tokio::test]
async fn egress_policy_denies_connect() {
    let h = harness(Options {
        egress: EgressPolicy { mode: EgressMode::Providers, ..EgressPolicy::default() },
        ..Options::default()
    })
    .await;
    let (_, head) = h.raw_connect("other.example.test:443", Some(&basic_token())).await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    let (_, head) = h.raw_connect("api.example.test:443", Some(&basic_token())).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(h.events.all().iter().any(|e| matches!(e,
        ProxyEvent::Denied { denial: Denial { host, port: 443, rule: DenyRule::NotAProviderHost } }
            if host == "other.example.test")));
}

#[tokio::test]
async fn python_and_node_trust_the_leaves() {
    let h = harness(Options::default()).await;
    let python = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import ssl,sys,urllib.request as u\n\
             ctx=ssl.create_default_context(cafile=sys.argv[2])\n\
             o=u.build_opener(u.ProxyHandler({'https':sys.argv[1]}),u.HTTPSHandler(context=ctx))\n\
             print(o.open('https://api.example.test/py').read().decode())",
        )
        // urllib sends Proxy-Authorization only with a user *and* a password: the token
        // goes in the password slot.
        .arg(format!("http://authsome:{TOKEN}@{}", h.proxy_addr))
        .arg(&h.proxy_ca_path)
        .output()
        .await;
    match python {
        Ok(out) if out.status.success() => {
            let body = String::from_utf8_lossy(&out.stdout);
            assert_eq!(echoed(&body, "authorization"), ["Bearer real-openai-default-0"]);
        }
        Ok(out) => panic!("python failed: {}", String::from_utf8_lossy(&out.stderr)),
        Err(e) => panic!("python3 is required for this test (bash .ci/install-deps): {e}"),
    }
    let script = r#"
const http = require('http'), tls = require('tls'), fs = require('fs');
const [proxy, caPath] = process.argv.slice(1);
const u = new URL(proxy);
const req = http.request({ host: u.hostname, port: u.port, method: 'CONNECT', path: 'api.example.test:443',
  headers: { 'Proxy-Authorization': 'Basic ' + Buffer.from(decodeURIComponent(u.username) + ':').toString('base64') } });
req.on('connect', (res, socket) => {
  if (res.statusCode !== 200) { console.error('CONNECT ' + res.statusCode); process.exit(1); }
  const s = tls.connect({ socket, servername: 'api.example.test', ca: fs.readFileSync(caPath), ALPNProtocols: ['http/1.1'] }, () => {
    s.write('GET /node HTTP/1.1\r\nHost: api.example.test\r\nConnection: close\r\n\r\n');
  });
  let data = ''; s.on('data', d => data += d); s.on('end', () => { console.log(data.split('\r\n\r\n')[1]); });
  s.on('error', e => { console.error(e.message); process.exit(1); });
});
req.end();
"#;
    let node = tokio::process::Command::new("node")
        .arg("-e")
        .arg(script)
        .arg(h.proxy_url())
        .arg(&h.proxy_ca_path)
        .output()
        .await;
    match node {
        Ok(out) if out.status.success() => {
            let body = String::from_utf8_lossy(&out.stdout);
            assert_eq!(echoed(body.trim(), "authorization"), ["Bearer real-openai-default-0"]);
        }
        Ok(out) => panic!("node failed: {}", String::from_utf8_lossy(&out.stderr)),
        Err(e) => panic!("node is required for this test (bash .ci/install-deps): {e}"),
    }
}

#[tokio::test]
async fn ip_literal_hosts_get_an_ip_san_leaf() {
    let h = harness(Options::default()).await;
    // 10.9.8.7 is private, but a connect-to entry names it, so the SSRF guard lets it pass.
    let (code, body) = h.curl(&["--cacert", &ca(&h), "https://10.9.8.7/ip"]).await;
    assert_eq!(code, 0, "{body}");
    assert_eq!(echoed(&body, "authorization"), ["Bearer real-ip-default-0"]);
}

#[tokio::test]
async fn serve_returns_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let config = authsome_proxy::ProxyConfig {
        ca: std::sync::Arc::new(authsome_proxy::CertificateAuthority::load_or_create(&dir.path().join("ca")).unwrap()),
        routes: std::sync::Arc::new(routes()),
        upstream: authsome_proxy::UpstreamConfig { system_roots: false, ..Default::default() },
        inspect_all: false,
        run_token: None,
        egress: EgressPolicy::default(),
        allowed_ports: Vec::new(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(authsome_proxy::serve(
        listener,
        config,
        std::sync::Arc::new(FakeSource::default()),
        std::sync::Arc::new(Recorder::default()),
        async {
            let _ = rx.await;
        },
    ));
    tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server).await.expect("serve returned").unwrap().unwrap();
}

#[tokio::test]
async fn connect_after_a_plain_request_on_the_same_connection() {
    let h = harness(Options::default()).await;
    let mut tcp = tokio::net::TcpStream::connect(h.proxy_addr).await.unwrap();
    let auth = basic_token();
    tcp.write_all(
        format!(
            "GET http://api.example.test/plain HTTP/1.1\r\nHost: api.example.test\r\n\
             Proxy-Authorization: {auth}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let head = read_head(&mut tcp).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let length: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(str::to_owned))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut body = vec![0u8; length];
    tcp.read_exact(&mut body).await.unwrap();
    tcp.write_all(format!("CONNECT api.example.test:443 HTTP/1.1\r\nProxy-Authorization: {auth}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut tcp).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
}

#[tokio::test]
async fn connect_to_keeps_verifying_tls_against_the_host_name() {
    let h = harness(Options::default()).await;
    let (code, body) =
        h.curl(&["-w", "\n%{http_code}", "--cacert", &ca(&h), "https://unverified.example.test/x"]).await;
    assert_eq!(code, 0);
    assert!(body.ends_with("502"), "{body}");
    assert!(h.events.all().iter().any(|e| matches!(e,
        ProxyEvent::UpstreamFailed { host, .. } if host == "unverified.example.test")));
    assert_eq!(h.upstream.hits.load(Ordering::SeqCst), 0);
}
