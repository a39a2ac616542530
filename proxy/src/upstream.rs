//! The upstream side: dialling by host name with our own resolution, the SSRF guard and
//! connect-to redirection ([`Dialer`]); TLS trust (system roots + extra PEM roots); the pooled
//! hyper client (HTTP/2 where ALPN offers it, HTTP/1.1 otherwise).
//!
//! Every way out goes through the [`Dialer`]: pooled requests, WebSocket handshakes and opaque
//! tunnels alike, so the SSRF guard cannot be bypassed by a protocol.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio::net::TcpStream;

use crate::body::ProxyBody;
use crate::ca::crypto_provider;
use crate::config::{ConnectTo, UpstreamConfig};
use crate::ssrf::is_forbidden;

#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("{host}:{port} resolves to {addr}, a non-public address; refused (SSRF guard)")]
    Forbidden { host: String, port: u16, addr: IpAddr },
    #[error("could not resolve {host}")]
    Resolve {
        host: String,
        #[source]
        source: io::Error,
    },
    #[error("connecting to {host}:{port} timed out")]
    Timeout { host: String, port: u16 },
    #[error("could not connect to {host}:{port}")]
    Connect {
        host: String,
        port: u16,
        #[source]
        source: io::Error,
    },
    #[error("the request names no host")]
    NoHost,
}

/// Errors building the upstream TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("could not read extra roots from {path}")]
    ExtraRoots {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("no usable certificate in extra roots file {path}")]
    NoExtraRoots { path: PathBuf },
    #[error("TLS configuration failed: {0}")]
    Rustls(#[from] rustls::Error),
}

#[derive(Debug)]
struct DialerInner {
    connect_to: Vec<ConnectTo>,
    allow_private: bool,
    timeout: Duration,
}

/// Resolves and connects by host name, applying connect-to and the SSRF guard.
#[derive(Debug, Clone)]
pub struct Dialer {
    inner: Arc<DialerInner>,
}

impl Dialer {
    pub fn new(config: &UpstreamConfig) -> Self {
        Dialer {
            inner: Arc::new(DialerInner {
                connect_to: config.connect_to.clone(),
                allow_private: config.allow_private,
                timeout: config.connect_timeout,
            }),
        }
    }

    pub async fn dial(&self, host: &str, port: u16) -> Result<TcpStream, DialError> {
        let inner = &self.inner;
        let redirect = inner.connect_to.iter().find_map(|c| c.apply(host, port));
        let trusted = redirect.is_some() || inner.allow_private;
        let (dest_host, dest_port) = redirect.unwrap_or_else(|| (host.to_owned(), port));
        let timeout = inner.timeout;
        let attempt = async {
            let addrs: Vec<SocketAddr> = match dest_host.parse::<IpAddr>() {
                Ok(ip) => vec![SocketAddr::new(ip, dest_port)],
                Err(_) => tokio::net::lookup_host((dest_host.as_str(), dest_port))
                    .await
                    .map_err(|source| DialError::Resolve { host: dest_host.clone(), source })?
                    .collect(),
            };
            let mut last_forbidden = None;
            let mut last_error = None;
            for addr in addrs {
                if !trusted && is_forbidden(addr.ip()) {
                    last_forbidden = Some(addr.ip());
                    continue;
                }
                match TcpStream::connect(addr).await {
                    Ok(stream) => {
                        let _ = stream.set_nodelay(true);
                        return Ok(stream);
                    }
                    Err(e) => last_error = Some(e),
                }
            }
            Err(match (last_error, last_forbidden) {
                (Some(source), _) => DialError::Connect { host: host.to_owned(), port, source },
                (None, Some(addr)) => DialError::Forbidden { host: host.to_owned(), port, addr },
                (None, None) => DialError::Resolve {
                    host: dest_host.clone(),
                    source: io::Error::new(io::ErrorKind::NotFound, "no addresses"),
                },
            })
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(DialError::Timeout { host: host.to_owned(), port }),
        }
    }
}

impl tower_service::Service<Uri> for Dialer {
    type Response = TokioIo<TcpStream>;
    type Error = DialError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, DialError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), DialError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let dialer = self.clone();
        Box::pin(async move {
            let host = uri.host().ok_or(DialError::NoHost)?;
            let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
            let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
                Some("http") => 80,
                _ => 443,
            });
            dialer.dial(host, port).await.map(TokioIo::new)
        })
    }
}

fn load_roots(config: &UpstreamConfig) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    if config.system_roots {
        let native = rustls_native_certs::load_native_certs();
        for error in &native.errors {
            tracing::warn!(%error, "could not load some system roots");
        }
        let (added, ignored) = roots.add_parsable_certificates(native.certs);
        tracing::debug!(added, ignored, "system roots");
    }
    if let Some(path) = &config.extra_roots_pem {
        let certs = read_pem_certs(path)?;
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(TlsError::NoExtraRoots { path: path.clone() });
        }
    }
    Ok(roots)
}

fn read_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |source| TlsError::ExtraRoots { path: path.to_owned(), source };
    let data = std::fs::read(path).map_err(err)?;
    CertificateDer::pem_slice_iter(&data)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(io::Error::new(io::ErrorKind::InvalidData, e)))
}

pub(crate) const H2_STREAM_WINDOW: u32 = 2 * 1024 * 1024;
pub(crate) const H2_CONNECTION_WINDOW: u32 = 8 * 1024 * 1024;
pub(crate) const H2_MAX_FRAME: u32 = 64 * 1024;

pub(crate) type HttpsClient = Client<HttpsConnector<Dialer>, ProxyBody>;

/// The upstream machinery one proxy instance shares across connections.
pub(crate) struct Upstream {
    pub dialer: Dialer,
    /// Pooled; ALPN h2 + http/1.1: for clients that speak h2 to us.
    pub client: HttpsClient,
    /// Pooled; ALPN http/1.1 only: for clients that speak HTTP/1.1 to us (see `for_version`).
    pub client_h1: HttpsClient,
    /// HTTP/1.1 only, unpooled use: WebSocket handshakes need an HTTP/1.1 upgrade.
    pub http1_connector: HttpsConnector<Dialer>,
}

impl Upstream {
    pub fn new(config: &UpstreamConfig) -> Result<Self, TlsError> {
        let roots = load_roots(config)?;
        let tls = ClientConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let dialer = Dialer::new(config);
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls.clone())
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(dialer.clone());
        let http1_connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(dialer.clone());
        let client = Self::client_builder().build(connector);
        let client_h1 = Self::client_builder().build(http1_connector.clone());
        Ok(Upstream { dialer, client, client_h1, http1_connector })
    }

    fn client_builder() -> hyper_util::client::legacy::Builder {
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(64)
            // Flatten head + body into one buffer: one TLS record per small message.
            .http1_writev(false)
            // Fixed, generous windows: the default 64 KiB window throttles bulk downloads
            // on fast links (BDP-based adaptive windows react too slowly for short bursts).
            .http2_initial_stream_window_size(H2_STREAM_WINDOW)
            .http2_initial_connection_window_size(H2_CONNECTION_WINDOW)
            .http2_max_frame_size(H2_MAX_FRAME);
        builder
    }

    /// The upstream protocol mirrors the client's: a client speaking HTTP/1.1 to us gets an
    /// HTTP/1.1 upstream connection, a client speaking h2 gets h2 where the upstream's ALPN
    /// offers it. Measured on loopback (benches/throughput.rs): funnelling HTTP/1.1 clients
    /// into one h2 upstream connection doubled the added latency and cut bulk throughput.
    pub fn for_version(&self, client_version: http::Version) -> &HttpsClient {
        if client_version == http::Version::HTTP_2 { &self.client } else { &self.client_h1 }
    }
}

/// Walk an error's source chain for a dial error (what the pooled client wraps).
pub(crate) fn find_dial_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a DialError> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(dial) = e.downcast_ref::<DialError>() {
            return Some(dial);
        }
        current = e.source();
    }
    None
}
