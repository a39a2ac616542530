//! A TLS client that trusts one PEM CA file and offers HTTP/1.1: the tests' and the
//! benchmark's way to talk to the proxy (or the echo upstream) as an application would.
//! Shared by `tests/common` and `benches/throughput` (included there by path).

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// Trusts only the certificates in `ca` (PEM); sends SNI when `sni`.
pub fn h1_connector(ca: &Path, sni: bool) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(authsome_proxy::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.enable_sni = sni;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
}
