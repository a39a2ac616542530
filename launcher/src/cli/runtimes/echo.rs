//! The doctor's upstream: an HTTPS server on the host's loopback that plays the provider the
//! probes call. It answers `/probe/<name>` (200 when the doctor's credential arrived, 401
//! without it) and serves a bare git repository read-only under `/git/` (git's "dumb" HTTP
//! protocol: plain files), and remembers which probes reached it and with what.
//!
//! Only the doctor's own `authsome run --sandbox` is pointed at it (`AUTHSOME_CONNECT_TO`),
//! with a CA of its own that only that run trusts for upstream TLS.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use authsome_proxy::CertificateAuthority;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What reached the upstream, by probe name: `true` when the doctor's credential came along.
pub(super) type Seen = Arc<Mutex<BTreeMap<String, bool>>>;

pub(super) struct Echo {
    pub(super) port: u16,
    /// The upstream CA (PEM), for `AUTHSOME_EXTRA_ROOTS`.
    pub(super) ca_pem: String,
    pub(super) seen: Seen,
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    expected: String,
    git_root: Option<PathBuf>,
}

impl Echo {
    /// Bind `127.0.0.1:0` with a certificate for `host`; `authorization` is the header value the
    /// proxy must put on the wire.
    pub(super) async fn bind(host: &str, authorization: String, git_root: Option<PathBuf>) -> Result<Self, String> {
        let ca = CertificateAuthority::ephemeral().map_err(|e| format!("cannot create the upstream CA: {e}"))?;
        let (chain, key) = ca.leaf_pem(host).map_err(|e| format!("cannot create the upstream certificate: {e}"))?;
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(chain.as_bytes()).collect::<Result<_, _>>().map_err(|e| e.to_string())?;
        let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|e| e.to_string())?;
        let mut tls = ServerConfig::builder_with_provider(authsome_proxy::crypto_provider())
            .with_safe_default_protocol_versions()
            .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key))
            .map_err(|e| format!("cannot set up the upstream TLS: {e}"))?;
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let listener =
            TcpListener::bind(("127.0.0.1", 0)).await.map_err(|e| format!("cannot listen on 127.0.0.1: {e}"))?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        Ok(Self {
            port,
            ca_pem: ca.cert_pem().to_string(),
            seen: Arc::default(),
            listener,
            tls: Arc::new(tls),
            expected: authorization,
            git_root,
        })
    }

    /// Serve until the runtime stops.
    pub(super) async fn serve(self) {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.tls);
        let shared = Arc::new((self.expected, self.git_root, self.seen));
        loop {
            let Ok((stream, _)) = self.listener.accept().await else { continue };
            let acceptor = acceptor.clone();
            let shared = shared.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else { return };
                let Some(request) = read_head(&mut tls).await else { return };
                let (expected, git_root, seen) = &*shared;
                let (status, body) = answer(&request, expected, git_root.as_deref(), seen);
                let head = format!(
                    "HTTP/1.1 {status}\r\ncontent-length: {}\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = tls.write_all(head.as_bytes()).await;
                let _ = tls.write_all(&body).await;
                let _ = tls.shutdown().await;
            });
        }
    }
}

/// The request line and headers (GET requests only: no body is read).
async fn read_head<S: AsyncReadExt + Unpin>(stream: &mut S) -> Option<String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() > 32 * 1024 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(String::from_utf8_lossy(&buf).into_owned())
}

fn answer(request: &str, expected: &str, git_root: Option<&Path>, seen: &Seen) -> (&'static str, Vec<u8>) {
    let target = request.split_whitespace().nth(1).unwrap_or("/");
    let path = target.split('?').next().unwrap_or(target);
    let authorized = request
        .lines()
        .filter_map(|l| l.split_once(':'))
        .any(|(name, value)| name.trim().eq_ignore_ascii_case("authorization") && value.trim() == expected);
    let probe = match path.strip_prefix("/probe/") {
        Some(name) => name.to_string(),
        None if path.starts_with("/git/") => "git".to_string(),
        None => return ("404 Not Found", b"not a probe path\n".to_vec()),
    };
    if let Ok(mut seen) = seen.lock() {
        let entry = seen.entry(probe.clone()).or_insert(false);
        *entry |= authorized;
    }
    if !authorized {
        return ("401 Unauthorized", b"the credential did not arrive\n".to_vec());
    }
    let Some(file) = path.strip_prefix("/git/") else {
        return ("200 OK", format!("authsome doctor: {probe} ok\n").into_bytes());
    };
    match git_root.and_then(|root| inside(root, file)).and_then(|p| std::fs::read(p).ok()) {
        Some(bytes) => ("200 OK", bytes),
        None => ("404 Not Found", b"no such file\n".to_vec()),
    }
}

/// `relative` under `root`, refusing anything that could leave it.
fn inside(root: &Path, relative: &str) -> Option<PathBuf> {
    let relative = Path::new(relative);
    relative.components().all(|c| matches!(c, Component::Normal(_))).then(|| root.join(relative))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_probes_by_credential_and_serves_only_the_repository() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("repo.git")).unwrap();
        std::fs::write(root.path().join("repo.git/HEAD"), "ref: refs/heads/main\n").unwrap();
        let seen = Seen::default();
        let get = |path: &str, auth: &str| {
            answer(
                &format!("GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n\r\n"),
                "Bearer k",
                Some(root.path()),
                &seen,
            )
        };
        assert_eq!(get("/probe/curl", "Bearer k").0, "200 OK");
        assert_eq!(get("/probe/node-https", "Bearer placeholder").0, "401 Unauthorized");
        assert_eq!(get("/git/repo.git/HEAD", "Bearer k"), ("200 OK", b"ref: refs/heads/main\n".to_vec()));
        assert_eq!(get("/git/../secret", "Bearer k").0, "404 Not Found");
        assert_eq!(get("/elsewhere", "Bearer k").0, "404 Not Found");
        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen.into_iter().collect::<Vec<_>>(),
            vec![("curl".into(), true), ("git".into(), true), ("node-https".into(), false)]
        );
    }
}
