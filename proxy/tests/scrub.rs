//! The real credential never comes back to the child: an upstream that echoes it (in a
//! header, a body, split across frames, gzip-compressed, in Basic or percent-encoded form, over
//! h2 or a WebSocket) is answered to the child with a same-length mask in its place.

mod common;

use authsome_proxy::ProxyEvent;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "real-openai-default-0";

fn ca(h: &Harness) -> String {
    h.proxy_ca_path.to_str().unwrap().to_owned()
}

fn mask(len: usize) -> String {
    "*".repeat(len)
}

fn scrubbed(h: &Harness) -> u64 {
    h.events
        .all()
        .iter()
        .filter_map(|e| match e {
            ProxyEvent::SecretScrubbed { occurrences, owner, .. } if owner.0 == "openai" => Some(*occurrences),
            _ => None,
        })
        .sum()
}

/// Body and response head (curl `-D`) of a GET through the proxy.
async fn get(h: &Harness, url: &str, extra: &[&str]) -> (String, String) {
    let head_file = h.dir.path().join(format!("head-{}", rand_suffix()));
    let head_path = head_file.to_str().unwrap().to_owned();
    let ca = ca(h);
    let mut args: Vec<&str> = vec!["--cacert", &ca, "-D", &head_path];
    args.extend_from_slice(extra);
    args.push(url);
    let (code, body) = h.curl(&args).await;
    assert_eq!(code, 0, "{body}");
    (body, std::fs::read_to_string(&head_file).unwrap())
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[tokio::test]
async fn secret_echoed_in_a_header_is_masked() {
    let h = harness(Options::default()).await;
    let (body, head) = get(&h, "https://api.example.test/reflect/header", &[]).await;
    assert_eq!(body, "ok");
    assert_eq!(header(&head, "x-echo"), Some(format!("Bearer {}", mask(SECRET.len())).as_str()), "{head}");
    assert!(!head.contains(SECRET));
    assert_eq!(scrubbed(&h), 1);
}

#[tokio::test]
async fn secret_echoed_in_the_body_is_masked_with_the_same_length() {
    let h = harness(Options::default()).await;
    let (body, head) = get(&h, "https://api.example.test/reflect/body", &[]).await;
    let want = format!("before Bearer {} after", mask(SECRET.len()));
    assert_eq!(body, want);
    assert_eq!(header(&head, "content-length"), Some(want.len().to_string().as_str()), "{head}");
    assert_eq!(scrubbed(&h), 1);
    // A response to a request that carried no credential is not touched.
    let (plain, _) =
        get(&h, "https://other.example.test/reflect/body", &["--cacert", h.upstream_ca_path.to_str().unwrap()]).await;
    assert_eq!(plain, "before  after");
}

#[tokio::test]
async fn secret_split_across_body_frames_is_masked() {
    let h = harness(Options::default()).await;
    for version in ["--http1.1", "--http2"] {
        let (body, _) = get(&h, "https://api.example.test/reflect/split", &[version]).await;
        assert_eq!(body, format!("before Bearer {} after", mask(SECRET.len())), "{version}");
    }
}

#[tokio::test]
async fn injected_requests_ask_for_identity_and_gzip_answers_are_decoded_and_masked() {
    let h = harness(Options::default()).await;
    let (body, _) =
        get(&h, "https://api.example.test/reflect/accept-encoding", &["-H", "Accept-Encoding: gzip, br"]).await;
    assert_eq!(body, "identity");
    let (body, head) = get(&h, "https://api.example.test/reflect/gzip", &["-H", "Accept-Encoding: gzip"]).await;
    assert_eq!(body, format!("before Bearer {} after", mask(SECRET.len())));
    assert_eq!(header(&head, "content-encoding"), None, "{head}");
    // A coding the proxy cannot read is refused rather than passed on unchecked.
    let (body, head) = get(&h, "https://api.example.test/reflect/br", &[]).await;
    assert!(head.contains("HTTP/1.1 502") || head.contains("HTTP/2 502"), "{head}");
    assert!(!body.contains(SECRET), "{body}");
}

#[tokio::test]
async fn basic_form_is_masked() {
    use base64::Engine;
    let h =
        harness(Options { source: FakeSource { basic: true, ..FakeSource::default() }, ..Options::default() }).await;
    let payload = base64::engine::general_purpose::STANDARD.encode(format!("{SECRET}:"));
    let (body, head) = get(&h, "https://api.example.test/reflect/header", &[]).await;
    assert_eq!(body, "ok");
    assert_eq!(header(&head, "x-echo"), Some(format!("Basic {}", mask(payload.len())).as_str()), "{head}");
    let (body, _) = get(&h, "https://api.example.test/reflect/body", &[]).await;
    assert_eq!(body, format!("before Basic {} after", mask(payload.len())));
}

/// A two-value credential (an API key and an application key, each in its own header): an
/// upstream that echoes the second one gets it masked too.
#[tokio::test]
async fn the_second_secret_of_a_two_value_credential_is_masked() {
    const APP: &str = "app-key-0123456789abcdef";
    let source = FakeSource { second_secret: Some(APP.into()), ..FakeSource::default() };
    let h = harness(Options { source, ..Options::default() }).await;
    let (body, head) = get(&h, "https://api.example.test/reflect/second", &[]).await;
    assert!(!body.contains(APP) && !head.contains(APP), "{head}{body}");
    assert!(!body.contains(SECRET), "{body}");
    assert_eq!(body, format!("app {} key Bearer {}", mask(APP.len()), mask(SECRET.len())));
    assert_eq!(header(&head, "x-echo-app"), Some(mask(APP.len()).as_str()), "{head}");
}

#[tokio::test]
async fn percent_encoded_form_is_masked() {
    let h = harness(Options {
        source: FakeSource { query_param: Some("api_key".into()), token_suffix: "/+=".into(), ..FakeSource::default() },
        ..Options::default()
    })
    .await;
    let encoded = "real-q-default-0%2F%2B%3D";
    let (body, _) = get(&h, "https://q.example.test/reflect/query?a=1", &[]).await;
    assert_eq!(body, format!("before a=1&api_key={} after", mask(encoded.len())));
}

#[tokio::test]
async fn h2_client_gets_a_masked_body() {
    let h = harness(Options::default()).await;
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&h.proxy_ca_path).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(h.proxy_url()).unwrap())
        .tls_certs_only([ca])
        .build()
        .unwrap();
    let response = client.get("https://api.example.test/reflect/split").send().await.unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.text().await.unwrap(), format!("before Bearer {} after", mask(SECRET.len())));
}

#[tokio::test]
async fn websocket_frames_from_the_server_are_masked() {
    let h = harness(Options::default()).await;
    let (stream, head) = h.raw_connect("api.example.test:443", Some(&basic_token())).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let connector = tls_client::h1_connector(&h.proxy_ca_path, true);
    let mut tls = connector.connect("api.example.test".try_into().unwrap(), stream).await.unwrap();
    tls.write_all(
        b"GET /ws-reflect HTTP/1.1\r\nHost: api.example.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
          Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
    )
    .await
    .unwrap();
    let head = read_head(&mut tls).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let mut lines = Vec::new();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while lines.len() < 2 {
        tls.read_exact(&mut byte).await.unwrap();
        if byte[0] == b'\n' {
            lines.push(String::from_utf8(std::mem::take(&mut line)).unwrap());
        } else {
            line.push(byte[0]);
        }
    }
    // The handshake went up with the credential and without the compression offer...
    assert_eq!(echoed(&lines[0], "authorization"), [format!("Bearer {SECRET}")]);
    assert!(echoed(&lines[0], "sec-websocket-extensions").is_empty());
    // ...and the server's echo of it came back masked.
    assert_eq!(lines[1], format!("Bearer {}", mask(SECRET.len())));
    tls.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    tls.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
}
