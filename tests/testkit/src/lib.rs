//! Fixtures for end-to-end tests: a throwaway PKI (a CA and CA:FALSE leaves, as rustls
//! requires), and local echo upstreams that answer every request with a JSON description of
//! what they received (method, path, query, headers). They run on a background thread with
//! their own runtime, so plain `#[test]` functions can use them, and bind 127.0.0.1 only.
//!
//! The one place the test suites make certificates: the end-to-end tests, the OAuth test
//! identity provider (`tests/common/idp.rs`) and the proxy's own tests all use [`Pki`].
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// A test CA and a server certificate for some names, signed by it.
pub struct Pki {
    /// The CA certificate, PEM: what clients under test must trust.
    pub ca_pem: String,
    /// The leaf certificate, PEM (CA:FALSE, server auth, a SAN per name).
    pub leaf_pem: String,
    /// The leaf's private key, PKCS#8 PEM.
    pub leaf_key_pem: String,
    server: Arc<rustls::ServerConfig>,
}

impl Pki {
    /// A fresh CA and a leaf for `names` (host names, or IP addresses as IP SANs; the first
    /// is the leaf's common name).
    pub fn new(names: &[&str]) -> Self {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::default();
        ca_params.distinguished_name.push(DnType::CommonName, "authsome test upstream CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA cert");
        let issuer = Issuer::new(ca_params, ca_key);

        let leaf_key = KeyPair::generate().expect("leaf key");
        let mut leaf_params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).expect("leaf names");
        leaf_params.distinguished_name.push(DnType::CommonName, names.first().copied().unwrap_or("localhost"));
        leaf_params.is_ca = IsCa::ExplicitNoCa;
        leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf = leaf_params.signed_by(&leaf_key, &issuer).expect("leaf cert");

        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocols")
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone(), ca_cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
            )
            .expect("server config");
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Self {
            ca_pem: ca_cert.pem(),
            leaf_pem: leaf.pem(),
            leaf_key_pem: leaf_key.serialize_pem(),
            server: Arc::new(server),
        }
    }

    /// A rustls server configuration presenting the leaf (and the CA after it), offering h2
    /// and http/1.1.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        self.server.clone()
    }

    /// Write the CA certificate, the leaf and its key to `dir` as `ca.pem`, `leaf.pem` and
    /// `leaf.key`; returns the three paths in that order.
    pub fn write_files(&self, dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
        let (ca, cert, key) = (dir.join("ca.pem"), dir.join("leaf.pem"), dir.join("leaf.key"));
        std::fs::write(&ca, &self.ca_pem).expect("write CA");
        std::fs::write(&cert, &self.leaf_pem).expect("write leaf");
        std::fs::write(&key, &self.leaf_key_pem).expect("write leaf key");
        (ca, cert, key)
    }

    /// Write the CA certificate to `dir/name` and return its path.
    pub fn write_ca(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, &self.ca_pem).expect("write CA");
        path
    }
}

/// A running echo upstream; it stops when dropped.
pub struct Echo {
    /// Where it listens (127.0.0.1, a free port).
    pub addr: SocketAddr,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl Echo {
    /// HTTPS (h2 and http/1.1) with the PKI's leaf.
    pub fn https(pki: &Pki) -> Self {
        Self::start(Some(pki.server.clone()))
    }

    /// Plain HTTP.
    pub fn http() -> Self {
        Self::start(None)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    fn start(tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
                addr_tx.send(listener.local_addr().expect("addr")).expect("send addr");
                let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
                let serve = async {
                    loop {
                        let Ok((stream, _)) = listener.accept().await else { continue };
                        let acceptor = acceptor.clone();
                        tokio::spawn(async move {
                            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                            let service = service_fn(echo);
                            match acceptor {
                                Some(acceptor) => {
                                    if let Ok(tls) = acceptor.accept(stream).await {
                                        let _ =
                                            builder.serve_connection_with_upgrades(TokioIo::new(tls), service).await;
                                    }
                                }
                                None => {
                                    let _ = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).await;
                                }
                            }
                        });
                    }
                };
                tokio::select! {
                    _ = serve => {}
                    _ = stop_rx => {}
                }
            });
        });
        let addr = addr_rx.recv_timeout(Duration::from_secs(10)).expect("echo upstream started");
        Self { addr, _shutdown: stop_tx }
    }
}

type Body = BoxBody<Bytes, Infallible>;

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// `/stream`: five chunks 200 ms apart. `/status/N`: answers N. Anything else: the echo.
async fn echo(req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    if path == "/stream" {
        return Ok(Response::new(chunks()));
    }
    let status =
        path.strip_prefix("/status/").and_then(|s| s.parse::<u16>().ok()).and_then(|s| StatusCode::from_u16(s).ok());
    let headers: Vec<serde_json::Value> = req
        .headers()
        .iter()
        .map(|(name, value)| serde_json::json!([name.as_str(), String::from_utf8_lossy(value.as_bytes())]))
        .collect();
    // The same values hex-encoded: what the upstream really received, which the proxy's
    // response scrubbing (it masks the real credential on the way back) leaves alone.
    let headers_hex: Vec<serde_json::Value> =
        req.headers().iter().map(|(name, value)| serde_json::json!([name.as_str(), hex(value.as_bytes())])).collect();
    let method = req.method().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let version = format!("{:?}", req.version());
    let host = req.uri().host().map(str::to_string).or_else(|| {
        req.headers().get("host").and_then(|h| h.to_str().ok()).map(|h| h.split(':').next().unwrap_or(h).to_string())
    });
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let doc = serde_json::json!({
        "method": method,
        "path": path,
        "query": query,
        "host": host,
        "version": version,
        "headers": headers,
        "headers_hex": headers_hex,
        "query_hex": hex(query.as_bytes()),
        "body_len": body.len(),
        "body": String::from_utf8_lossy(&body),
    });
    let mut response = Response::new(full(doc.to_string()));
    *response.status_mut() = status.unwrap_or(StatusCode::OK);
    response.headers_mut().insert("content-type", "application/json".parse().expect("header"));
    Ok(response)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Five chunks, 200 ms apart: a client through the proxy must see them spaced in time.
fn chunks() -> Body {
    let stream = futures_util::stream::unfold(0u32, |i| async move {
        if i == 5 {
            return None;
        }
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Some((Ok::<_, Infallible>(Frame::data(Bytes::from(format!("chunk {i}\n")))), i + 1))
    });
    BodyExt::boxed(StreamBody::new(stream))
}
