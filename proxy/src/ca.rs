//! The MITM certificate authority: a persisted per-profile CA (`load_or_create`) or an
//! ephemeral per-run one (`ephemeral`, for `--sandbox`), and a bounded cache of leaf
//! certificates, each wrapped in a ready rustls `ServerConfig`.
//!
//! Leaves are short-lived (7 days) and share one P-256 key per CA instance, so a new host
//! costs one signature, not a key generation. IP-literal hosts get an IP SAN.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::OffsetDateTime;

/// Subject of every authsome CA. Fixed, so a persisted CA can be re-made into an issuer from
/// its key alone (the authority key identifier comes from the key).
pub const CA_COMMON_NAME: &str = "authsome local MITM CA";
const CA_ORGANIZATION: &str = "authsome";
const LEAF_VALIDITY: Duration = Duration::from_secs(7 * 24 * 3600);
/// Leaves are re-made well before they expire.
const LEAF_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
const LEAF_CACHE_CAPACITY: usize = 1024;

/// Why the CA could not be loaded, created or used. Never holds key material.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// Reading or writing the CA's files failed.
    #[error("could not {action} {path}")]
    Io {
        /// What we tried ("read", "write", "create the directory", …).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// `ca.key` and `ca.pem` do not match (one was replaced): nothing is overwritten.
    #[error("the CA key in {path} does not belong to the certificate beside it")]
    KeyMismatch {
        /// The key file.
        path: PathBuf,
    },
    /// rcgen could not make a certificate or key.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused a leaf (server configuration).
    #[error("TLS configuration failed: {0}")]
    Tls(#[from] rustls::Error),
}

/// The MITM certificate authority: its certificate (what clients trust), its key, and a cache
/// of per-host leaves it signs on demand. `load_or_create` persists it (plain `run`, so users
/// may trust it system-wide); `ephemeral` never touches the disk (`--sandbox`).
pub struct CertificateAuthority {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
    leaf_key: KeyPair,
    provider: Arc<CryptoProvider>,
    leaves: Mutex<HashMap<String, (Instant, Arc<ServerConfig>)>>,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority").field("common_name", &CA_COMMON_NAME).finish_non_exhaustive()
    }
}

/// The one crypto provider the crate uses, installed as the process default if none is.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    // Another provider may already be installed by the embedding program: that is fine, we
    // pass ours explicitly to every config anyway.
    let _ = CryptoProvider::install_default(rustls::crypto::aws_lc_rs::default_provider());
    provider
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_COMMON_NAME);
    dn.push(DnType::OrganizationName, CA_ORGANIZATION);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CaError + 'a {
    move |source| CaError::Io { action, path: path.to_owned(), source }
}

#[cfg(unix)]
fn write_private(path: &Path, contents: &str, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, contents: &str, _mode: u32) -> io::Result<()> {
    let mut file = fs::OpenOptions::new().write(true).create_new(true).open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

impl CertificateAuthority {
    /// Load `dir/ca.pem` + `dir/ca.key`, or create them (dir 0700, key 0600). Reused across
    /// runs so a CA the user trusted system-wide keeps working.
    pub fn load_or_create(dir: &Path) -> Result<Self, CaError> {
        let cert_path = dir.join("ca.pem");
        let key_path = dir.join("ca.key");
        if key_path.exists() && cert_path.exists() {
            let key_pem = fs::read_to_string(&key_path).map_err(io_err("read", &key_path))?;
            let cert_pem = fs::read_to_string(&cert_path).map_err(io_err("read", &cert_path))?;
            let key = KeyPair::from_pem(&key_pem)?;
            return Self::from_parts(cert_pem, key, &cert_path);
        }
        create_private_dir(dir)?;
        let key = KeyPair::generate()?;
        let mut params = ca_params();
        let now = OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(5 * 365);
        let cert = params.self_signed(&key)?;
        // Key first: a crash between the two writes leaves no certificate without its key.
        let tmp_key = dir.join("ca.key.tmp");
        let _ = fs::remove_file(&tmp_key);
        write_private(&tmp_key, &key.serialize_pem(), 0o600).map_err(io_err("write", &tmp_key))?;
        fs::rename(&tmp_key, &key_path).map_err(io_err("write", &key_path))?;
        let tmp_cert = dir.join("ca.pem.tmp");
        let _ = fs::remove_file(&tmp_cert);
        write_private(&tmp_cert, &cert.pem(), 0o644).map_err(io_err("write", &tmp_cert))?;
        fs::rename(&tmp_cert, &cert_path).map_err(io_err("write", &cert_path))?;
        Self::build(cert.pem(), cert.der().clone(), key)
    }

    /// A CA that lives only in memory (`--sandbox`: trusted inside that sandbox only).
    pub fn ephemeral() -> Result<Self, CaError> {
        let key = KeyPair::generate()?;
        let mut params = ca_params();
        let now = OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(30);
        let cert = params.self_signed(&key)?;
        Self::build(cert.pem(), cert.der().clone(), key)
    }

    fn from_parts(cert_pem: String, key: KeyPair, cert_path: &Path) -> Result<Self, CaError> {
        let der = rustls_pki_types::pem::PemObject::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| io_err("parse", cert_path)(io::Error::new(io::ErrorKind::InvalidData, e)))?;
        let der: CertificateDer<'static> = der;
        // The certificate's SubjectPublicKeyInfo embeds the raw public key.
        let public = key.public_key_raw();
        if !der.windows(public.len()).any(|w| w == public) {
            return Err(CaError::KeyMismatch { path: cert_path.to_owned() });
        }
        Self::build(cert_pem, der, key)
    }

    fn build(cert_pem: String, cert_der: CertificateDer<'static>, key: KeyPair) -> Result<Self, CaError> {
        Ok(CertificateAuthority {
            cert_pem,
            cert_der,
            issuer: Issuer::new(ca_params(), key),
            leaf_key: KeyPair::generate()?,
            provider: crypto_provider(),
            leaves: Mutex::new(HashMap::new()),
        })
    }

    /// The CA certificate, PEM. What clients must trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// A leaf for `host` (DNS name or IP literal), PEM chain and key; mostly for tests.
    pub fn leaf_pem(&self, host: &str) -> Result<(String, String), CaError> {
        let cert = self.make_leaf(host)?;
        Ok((cert.pem(), self.leaf_key.serialize_pem()))
    }

    fn make_leaf(&self, host: &str) -> Result<rcgen::Certificate, CaError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, host);
        params.distinguished_name = dn;
        let unbracketed = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        params.subject_alt_names = vec![match unbracketed.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(host.try_into()?),
        }];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let now = OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + LEAF_VALIDITY;
        let mut serial = [0u8; 16];
        getrandom_fill(&mut serial);
        serial[0] &= 0x7f;
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        Ok(params.signed_by(&self.leaf_key, &self.issuer)?)
    }

    /// A TLS server config presenting a leaf for `host`, ALPN h2 + http/1.1. Cached.
    pub(crate) fn server_config(&self, host: &str) -> Result<Arc<ServerConfig>, CaError> {
        let now = Instant::now();
        if let Some((made, config)) = self.leaves.lock().expect("leaf cache").get(host)
            && now.duration_since(*made) < LEAF_MAX_AGE
        {
            return Ok(config.clone());
        }
        let leaf = self.make_leaf(host)?;
        let chain = vec![leaf.der().clone(), self.cert_der.clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.leaf_key.serialize_der()));
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let config = Arc::new(config);
        let mut leaves = self.leaves.lock().expect("leaf cache");
        if leaves.len() >= LEAF_CACHE_CAPACITY {
            leaves.retain(|_, (made, _)| now.duration_since(*made) < LEAF_MAX_AGE);
            if leaves.len() >= LEAF_CACHE_CAPACITY {
                // Bounded: drop an arbitrary half rather than track recency per hit.
                let drop: Vec<String> = leaves.keys().take(LEAF_CACHE_CAPACITY / 2).cloned().collect();
                for k in drop {
                    leaves.remove(&k);
                }
            }
        }
        leaves.insert(host.to_owned(), (now, config.clone()));
        Ok(config)
    }

    #[cfg(test)]
    fn cached_leaves(&self) -> usize {
        self.leaves.lock().expect("leaf cache").len()
    }
}

fn getrandom_fill(buf: &mut [u8]) {
    rustls::crypto::aws_lc_rs::default_provider().secure_random.fill(buf).expect("system random number generator");
}

fn create_private_dir(dir: &Path) -> Result<(), CaError> {
    fs::create_dir_all(dir).map_err(io_err("create", dir))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_err("set permissions on", dir))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persisted_ca_is_reused_and_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ca");
        let first = CertificateAuthority::load_or_create(&dir).unwrap();
        let second = CertificateAuthority::load_or_create(&dir).unwrap();
        assert_eq!(first.cert_pem(), second.cert_pem());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&dir), 0o700);
            assert_eq!(mode(&dir.join("ca.key")), 0o600);
        }
        // A leaf made by the reloaded CA chains to the original certificate.
        let (leaf, _) = second.leaf_pem("api.example.test").unwrap();
        assert!(leaf.contains("BEGIN CERTIFICATE"));
        assert!(first.cert_pem().contains("BEGIN CERTIFICATE"));
    }

    #[test]
    fn mismatched_key_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a");
        let b = tmp.path().join("b");
        CertificateAuthority::load_or_create(&a).unwrap();
        CertificateAuthority::load_or_create(&b).unwrap();
        fs::copy(b.join("ca.key"), a.join("ca.key")).unwrap();
        assert!(matches!(CertificateAuthority::load_or_create(&a), Err(CaError::KeyMismatch { .. })));
    }

    #[test]
    fn leaf_configs_are_cached() {
        let ca = CertificateAuthority::ephemeral().unwrap();
        let one = ca.server_config("a.example.test").unwrap();
        let again = ca.server_config("a.example.test").unwrap();
        assert!(Arc::ptr_eq(&one, &again));
        ca.server_config("127.0.0.1").unwrap();
        ca.server_config("::1").unwrap();
        assert_eq!(ca.cached_leaves(), 3);
    }
}
