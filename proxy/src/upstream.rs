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
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use std::sync::OnceLock;
use tokio::net::TcpStream;

use crate::body::ProxyBody;
use crate::ca::crypto_provider;
use crate::config::{ConnectTo, UpstreamConfig};
use crate::local_addrs::LocalAddrs;
use crate::readahead::ReadAhead;
use crate::ssrf::is_forbidden;

/// Why an upstream could not be dialled. Reported in events as text.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// The SSRF guard refused the address the host resolved to.
    #[error("{host}:{port} resolves to {addr}, {}; refused (SSRF guard)",
        if *local { "an address of this machine" } else { "a non-public address" })]
    Forbidden {
        /// The host asked for.
        host: String,
        /// The port asked for.
        port: u16,
        /// The refused address.
        addr: IpAddr,
        /// It is one of this machine's own addresses (not just a private range).
        local: bool,
    },
    /// An IP literal where the guard wants a host name.
    #[error("{host}:{port} is an IP address, not a host name; refused (SSRF guard)")]
    IpLiteral {
        /// The literal.
        host: String,
        /// The port asked for.
        port: u16,
    },
    /// Name resolution failed.
    #[error("could not resolve {host}")]
    Resolve {
        /// The host asked for.
        host: String,
        /// The resolver's error.
        #[source]
        source: io::Error,
    },
    /// The connect took longer than `UpstreamConfig::connect_timeout`.
    #[error("connecting to {host}:{port} timed out")]
    Timeout {
        /// The host asked for.
        host: String,
        /// The port asked for.
        port: u16,
    },
    /// The connect failed.
    #[error("could not connect to {host}:{port}")]
    Connect {
        /// The host asked for.
        host: String,
        /// The port asked for.
        port: u16,
        /// The socket error.
        #[source]
        source: io::Error,
    },
    /// The request had no host to dial.
    #[error("the request names no host")]
    NoHost,
}

/// Errors building the upstream TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The extra roots file could not be read.
    #[error("could not read extra roots from {path}")]
    ExtraRoots {
        /// The file (`AUTHSOME_EXTRA_ROOTS`).
        path: PathBuf,
        /// The read error.
        #[source]
        source: io::Error,
    },
    /// The extra roots file holds no certificate rustls accepts.
    #[error("no usable certificate in extra roots file {path}")]
    NoExtraRoots {
        /// The file (`AUTHSOME_EXTRA_ROOTS`).
        path: PathBuf,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration failed: {0}")]
    Rustls(#[from] rustls::Error),
}

#[derive(Debug)]
struct DialerInner {
    connect_to: Vec<ConnectTo>,
    allow_private: bool,
    timeout: Duration,
    local: LocalAddrs,
}

/// Resolves and connects by host name, applying connect-to and the SSRF guard.
#[derive(Debug, Clone)]
pub struct Dialer {
    inner: Arc<DialerInner>,
}

impl DialError {
    /// The refusal, when the SSRF guard (not the network) stopped the dial.
    pub fn denial(&self) -> Option<crate::denial::Denial> {
        use crate::denial::{Denial, DenyRule};
        match self {
            DialError::Forbidden { host, port, addr, local: false } => {
                Some(Denial::new(host.as_str(), *port, DenyRule::PrivateAddress(*addr)))
            }
            DialError::Forbidden { host, port, addr, local: true } => {
                Some(Denial::new(host.as_str(), *port, DenyRule::LocalAddress(*addr)))
            }
            DialError::IpLiteral { host, port } => Some(Denial::new(host.as_str(), *port, DenyRule::IpLiteral)),
            _ => None,
        }
    }
}

impl Dialer {
    pub fn new(config: &UpstreamConfig) -> Self {
        Dialer {
            inner: Arc::new(DialerInner {
                connect_to: config.connect_to.clone(),
                allow_private: config.allow_private,
                timeout: config.connect_timeout,
                local: LocalAddrs::default(),
            }),
        }
    }

    /// Connect to `host:port` by name. Unless a connect-to entry names the destination, refuses
    /// every resolved address assigned to this machine or on loopback (so a name pointing at
    /// the host's own public address cannot reach services bound to all interfaces), and,
    /// unless `allow_private` is set, an IP-literal host and every non-public address.
    pub async fn dial(&self, host: &str, port: u16) -> Result<TcpStream, DialError> {
        let inner = &self.inner;
        let redirect = inner.connect_to.iter().find_map(|c| c.apply(host, port));
        // `allow_private` opens private networks and IP literals, never this machine itself
        // (its loopback and interface addresses reach host services a sandbox must not see);
        // only a connect-to entry, which the user wrote for that destination, can go there.
        let redirected = redirect.is_some();
        let trusted = redirected || inner.allow_private;
        if !trusted && host.parse::<IpAddr>().is_ok() {
            return Err(DialError::IpLiteral { host: host.to_owned(), port });
        }
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
                    last_forbidden = Some((addr.ip(), false));
                    continue;
                }
                if !redirected && (inner.local.contains(addr.ip()) || addr.ip().is_loopback()) {
                    last_forbidden = Some((addr.ip(), true));
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
                (None, Some((addr, local))) => DialError::Forbidden { host: host.to_owned(), port, addr, local },
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

impl Dialer {
    /// Connect to the host's own loopback on `port` (127.0.0.1, then ::1): the one dial that
    /// skips the SSRF guard on purpose, for `--allow-host-port`, which names the port. Errors
    /// name the host as the sandbox sees it, `host.authsome.internal`.
    pub async fn dial_host_loopback(&self, port: u16) -> Result<TcpStream, DialError> {
        let host = crate::raw_tcp::HOST_LOOPBACK_NAME;
        let attempt = async {
            let mut last_error = None;
            for ip in [IpAddr::from([127, 0, 0, 1]), IpAddr::from(std::net::Ipv6Addr::LOCALHOST)] {
                match TcpStream::connect(SocketAddr::new(ip, port)).await {
                    Ok(stream) => {
                        let _ = stream.set_nodelay(true);
                        return Ok(stream);
                    }
                    Err(e) => last_error = Some(e),
                }
            }
            let source = last_error.unwrap_or_else(|| io::ErrorKind::ConnectionRefused.into());
            Err(DialError::Connect { host: host.to_owned(), port, source })
        };
        match tokio::time::timeout(self.inner.timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(DialError::Timeout { host: host.to_owned(), port }),
        }
    }
}

impl tower_service::Service<Uri> for Dialer {
    type Response = TokioIo<ReadAhead<TcpStream>>;
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
            dialer.dial(host, port).await.map(|stream| TokioIo::new(ReadAhead::new(stream)))
        })
    }
}

/// Upstream certificate verification with the roots loaded off the start-up path.
///
/// Reading the system store costs milliseconds (with `SSL_CERT_DIR` set it is hundreds of
/// files), which a run that never dials out should not pay: a thread starts loading the roots
/// when the first client connects (`prewarm`), and the first upstream handshake waits for it
/// if it is not done. The
/// verification itself is rustls' `WebPkiServerVerifier`, unchanged.
pub(crate) struct DeferredRoots {
    verifier: Arc<OnceLock<Result<Arc<WebPkiServerVerifier>, String>>>,
    warming: std::sync::Once,
    load: Arc<dyn Fn() -> Result<Arc<WebPkiServerVerifier>, String> + Send + Sync>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl std::fmt::Debug for DeferredRoots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeferredRoots").field("loaded", &self.verifier.get().is_some()).finish_non_exhaustive()
    }
}

impl DeferredRoots {
    fn start(system_roots: bool, extra: Vec<CertificateDer<'static>>) -> Arc<Self> {
        let provider = crypto_provider();
        let verifier_provider = provider.clone();
        let load = Arc::new(move || {
            let mut roots = RootCertStore::empty();
            if system_roots {
                let native = rustls_native_certs::load_native_certs();
                for error in &native.errors {
                    tracing::warn!(%error, "could not load some system roots");
                }
                let (added, ignored) = roots.add_parsable_certificates(native.certs);
                tracing::debug!(added, ignored, "system roots");
            }
            roots.add_parsable_certificates(extra.clone());
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), verifier_provider.clone())
                .build()
                .map_err(|e| format!("no usable trust roots for upstream TLS: {e}"))
        });
        Arc::new(DeferredRoots { verifier: Arc::new(OnceLock::new()), warming: std::sync::Once::new(), load, provider })
    }

    /// Start loading the roots on a thread, once: called when the first client connection
    /// arrives, so the load overlaps that client's handshake with us and a run that never
    /// proxies anything never pays for it.
    pub(crate) fn prewarm(self: &Arc<Self>) {
        self.warming.call_once(|| {
            let warm = self.clone();
            let _ = std::thread::Builder::new().name("authsome-roots".into()).spawn(move || {
                let _ = warm.verifier();
            });
        });
    }

    fn verifier(&self) -> Result<&Arc<WebPkiServerVerifier>, rustls::Error> {
        self.verifier.get_or_init(|| (self.load)()).as_ref().map_err(|e| rustls::Error::General(e.clone()))
    }
}

impl ServerCertVerifier for DeferredRoots {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &rustls_pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls_pki_types::UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.verifier()?.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// Read and check the extra roots now (a bad `AUTHSOME_EXTRA_ROOTS` fails the run at once);
/// the system roots follow in the background.
fn deferred_roots(config: &UpstreamConfig) -> Result<Arc<DeferredRoots>, TlsError> {
    let mut extra = Vec::new();
    if let Some(path) = &config.extra_roots_pem {
        let certs = read_pem_certs(path)?;
        let mut probe = RootCertStore::empty();
        let (added, _) = probe.add_parsable_certificates(certs.clone());
        if added == 0 {
            return Err(TlsError::NoExtraRoots { path: path.clone() });
        }
        extra = certs;
    }
    Ok(DeferredRoots::start(config.system_roots, extra))
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
    /// Upstream trust, loaded in the background (see `DeferredRoots`).
    pub roots: Arc<DeferredRoots>,
}

impl Upstream {
    pub fn new(config: &UpstreamConfig) -> Result<Self, TlsError> {
        let roots = deferred_roots(config)?;
        let tls = ClientConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(roots.clone())
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
        Ok(Upstream { dialer, client, client_h1, http1_connector, roots })
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
    /// offers it. Measured on loopback (benches/throughput/main.rs): funnelling HTTP/1.1 clients
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
