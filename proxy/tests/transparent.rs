//! The transparent way in: connections accepted on a loopback "capture" listener and handed
//! to the proxy with a made-up original destination, as the sandbox will do.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use authsome_proxy::dns::FakeDns;
use authsome_proxy::{EgressMode, EgressPolicy, ProxyEvent};
use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// A capture listener: every accepted connection is served as if it had been sent to `dst`.
async fn capture(h: &Harness, dst: SocketAddr, dns: Arc<FakeDns>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let proxy = h.proxy.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let proxy = proxy.clone();
            let dns = dns.clone();
            tokio::spawn(async move { proxy.serve_transparent(stream, dst, Some(&dns)).await });
        }
    });
    addr
}

/// GET `path` over TLS to `addr`, verifying `name` against `ca`; returns the body.
async fn tls_get(
    addr: SocketAddr,
    ca: &Path,
    name: &str,
    sni: bool,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, String), String> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = tls_client::h1_connector(ca, sni)
        .connect(name.to_owned().try_into().unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut request = http::Request::get(path).header("host", name);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response =
        sender.send_request(request.body(Empty::<Bytes>::new()).unwrap()).await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

#[tokio::test]
async fn sni_names_an_owned_host_which_is_mitmed_and_injected() {
    let h = harness(Options::default()).await;
    let dns = Arc::new(FakeDns::new());
    // The child dialled some address; the decision is by SNI, not by that address.
    let addr = capture(&h, "203.0.113.7:443".parse().unwrap(), dns).await;
    let (status, body) = tls_get(addr, &h.proxy_ca_path, "api.example.test", true, "/t", &[]).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(echoed(&body, "authorization"), ["Bearer real-openai-default-0"]);
}

#[tokio::test]
async fn fake_ip_names_the_host_when_there_is_no_sni() {
    let h = harness(Options::default()).await;
    let dns = Arc::new(FakeDns::new());
    let ip = dns.ip_for("api.example.test");
    let addr = capture(&h, SocketAddr::new(ip.into(), 443), dns).await;
    let (status, body) = tls_get(addr, &h.proxy_ca_path, "api.example.test", false, "/t", &[]).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(echoed(&body, "authorization"), ["Bearer real-openai-default-0"]);
}

#[tokio::test]
async fn unowned_host_is_tunnelled_to_the_real_upstream() {
    let h = harness(Options::default()).await;
    let dns = Arc::new(FakeDns::new());
    let ip = dns.ip_for("other.example.test");
    let addr = capture(&h, SocketAddr::new(ip.into(), 443), dns).await;
    // Only the upstream's own CA is trusted: works only through an opaque tunnel.
    let (status, body) =
        tls_get(addr, &h.upstream_ca_path, "other.example.test", true, "/t", &[("authorization", "Bearer own")])
            .await
            .unwrap();
    assert_eq!(status, 200);
    assert_eq!(echoed(&body, "authorization"), ["Bearer own"]);
    assert!(h.events.all().iter().any(|e| matches!(e,
        ProxyEvent::Tunnelled { host, port: 443 } if host == "other.example.test")));
}

#[tokio::test]
async fn raw_ip_without_sni_is_denied() {
    let h = harness(Options::default()).await;
    let dns = Arc::new(FakeDns::new());
    let addr = capture(&h, "203.0.113.9:443".parse().unwrap(), dns).await;
    let result = tls_get(addr, &h.proxy_ca_path, "api.example.test", false, "/t", &[]).await;
    assert!(result.is_err(), "{result:?}");
    assert!(h.events.all().iter().any(|e| matches!(e,
        ProxyEvent::Denied { denial } if denial.host == "203.0.113.9" && denial.port == 443)));
}

#[tokio::test]
async fn egress_policy_closes_denied_tls() {
    let h = harness(Options {
        egress: EgressPolicy { mode: EgressMode::Providers, ..EgressPolicy::default() },
        ..Options::default()
    })
    .await;
    let dns = Arc::new(FakeDns::new());
    let addr = capture(&h, "203.0.113.7:443".parse().unwrap(), dns).await;
    let result = tls_get(addr, &h.upstream_ca_path, "other.example.test", true, "/t", &[]).await;
    assert!(result.is_err(), "{result:?}");
    assert!(h.events.all().iter().any(|e| matches!(e,
        ProxyEvent::Denied { denial } if denial.host == "other.example.test")));
    // an owned host still works
    let (status, _) = tls_get(addr, &h.proxy_ca_path, "api.example.test", true, "/t", &[]).await.unwrap();
    assert_eq!(status, 200);
}

#[tokio::test]
async fn plain_http_is_named_by_the_fake_ip_and_never_injected() {
    let h = harness(Options::default()).await;
    let dns = Arc::new(FakeDns::new());
    let ip = dns.ip_for("api.example.test");
    let addr = capture(&h, SocketAddr::new(ip.into(), 80), dns).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /plain HTTP/1.1\r\nHost: ignored.invalid\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut response = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut tcp, &mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let body = response.split("\r\n\r\n").nth(1).unwrap();
    assert!(echoed(body, "authorization").is_empty());
    assert_eq!(echoed_field(body, "authority"), "api.example.test");
    // leak guard on plain http too
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(
        format!("GET /plain HTTP/1.1\r\nHost: x\r\nX-Key: {PH_GITHUB}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut response = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut tcp, &mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 403"), "{response}");
}
