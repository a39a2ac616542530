//! The per-run directory (0700, removed when the run ends) and the CA bundles the child trusts:
//! `bundle.pem` = the system roots + the roots the user already pointed tools at (corporate
//! roots) + `AUTHSOME_EXTRA_ROOTS` + our CA; `ca.pem` = our CA alone, for additive knobs.

use std::ffi::OsString;
use std::fs::{self, DirBuilder};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crate::error::{CliError, CliResult, Kind};

/// Distro bundle locations, most common first (reference/sandbox-recipes.md section 7).
pub const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/usr/lib/ssl/cert.pem",
    "/etc/ssl/ca-bundle.pem",
];

/// Parent variables that may name roots the user relies on (corporate CAs).
const USER_ROOT_VARS: &[&str] = &[
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
    "AWS_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
];

/// A private directory for one run's files, removed on drop.
#[derive(Debug)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    pub fn create() -> CliResult<Self> {
        let base = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|p| p.is_dir())
            .unwrap_or_else(std::env::temp_dir);
        let mut suffix = [0u8; 8];
        authsome_vault::crypto::random_bytes(&mut suffix).map_err(|e| CliError::new(Kind::RunFailed, e.to_string()))?;
        let name: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
        let path = base.join(format!("authsome-run-{name}"));
        DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| CliError::new(Kind::RunFailed, format!("cannot create {}: {e}", path.display())))?;
        Ok(Self { path })
    }

    pub fn write(&self, name: &str, bytes: &[u8]) -> CliResult<PathBuf> {
        let path = self.path.join(name);
        fs::write(&path, bytes)
            .map_err(|e| CliError::new(Kind::RunFailed, format!("cannot write {}: {e}", path.display())))?;
        Ok(path)
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// The files whose roots go into the bundle, in order, without duplicates.
pub fn root_sources(parent_env: &[(OsString, OsString)], extra_roots: Option<&Path>) -> Vec<PathBuf> {
    let mut sources: Vec<PathBuf> = Vec::new();
    let mut push = |path: PathBuf| {
        let canonical = fs::canonicalize(&path).unwrap_or(path);
        if canonical.is_file() && !sources.contains(&canonical) {
            sources.push(canonical);
        }
    };
    if let Some(system) = SYSTEM_BUNDLES.iter().map(Path::new).find(|p| p.is_file()) {
        push(system.to_path_buf());
    }
    for var in USER_ROOT_VARS {
        if let Some((_, value)) = parent_env.iter().find(|(k, _)| k == var) {
            push(PathBuf::from(value));
        }
    }
    if let Some(extra) = extra_roots {
        push(extra.to_path_buf());
    }
    sources
}

/// For additive knobs (`NODE_EXTRA_CA_CERTS`, `DENO_CERT`): what the user already added
/// there, `AUTHSOME_EXTRA_ROOTS`, and our CA. Node keeps its bundled roots underneath.
pub fn additive_bundle(
    parent_env: &[(OsString, OsString)],
    extra_roots: Option<&Path>,
    ca_pem: &str,
) -> CliResult<Vec<u8>> {
    let mut sources: Vec<PathBuf> = Vec::new();
    for var in ["NODE_EXTRA_CA_CERTS", "DENO_CERT"] {
        if let Some((_, value)) = parent_env.iter().find(|(k, _)| k == var) {
            let path = fs::canonicalize(value).unwrap_or_else(|_| PathBuf::from(value));
            if path.is_file() && !sources.contains(&path) {
                sources.push(path);
            }
        }
    }
    if let Some(extra) = extra_roots.filter(|p| p.is_file()) {
        sources.push(extra.to_path_buf());
    }
    combined_bundle(&sources, ca_pem)
}

/// Concatenate the sources and our CA into one PEM bundle.
pub fn combined_bundle(sources: &[PathBuf], ca_pem: &str) -> CliResult<Vec<u8>> {
    let mut out = Vec::with_capacity(256 * 1024);
    for source in sources {
        let bytes = fs::read(source).map_err(|e| {
            CliError::new(Kind::RunFailed, format!("cannot read the CA bundle {}: {e}", source.display()))
                .hint("check the path in SSL_CERT_FILE / REQUESTS_CA_BUNDLE / AUTHSOME_EXTRA_ROOTS")
        })?;
        out.extend_from_slice(&bytes);
        if !out.ends_with(b"\n") {
            out.push(b'\n');
        }
    }
    out.extend_from_slice(b"# authsome run CA (trusted only by this run's child)\n");
    out.extend_from_slice(ca_pem.as_bytes());
    if !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_adds_our_ca_to_every_source_once() {
        let dir = tempfile::tempdir().unwrap();
        let corp = dir.path().join("corp.pem");
        fs::write(&corp, "-----BEGIN CERTIFICATE-----\nCORP\n-----END CERTIFICATE-----").unwrap();
        let env = vec![
            ("REQUESTS_CA_BUNDLE".into(), corp.clone().into_os_string()),
            ("CURL_CA_BUNDLE".into(), corp.clone().into_os_string()),
        ];
        let sources = root_sources(&env, None);
        assert_eq!(sources.iter().filter(|p| p.ends_with("corp.pem")).count(), 1);
        let bundle = String::from_utf8(
            combined_bundle(&sources, "-----BEGIN CERTIFICATE-----\nOURS\n-----END CERTIFICATE-----\n").unwrap(),
        )
        .unwrap();
        assert!(bundle.contains("CORP\n-----END CERTIFICATE-----\n"));
        assert!(bundle.trim_end().ends_with("OURS\n-----END CERTIFICATE-----"));
    }

    #[test]
    fn run_dir_is_private_and_removed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = RunDir::create().unwrap();
        let path = dir.path.clone();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o700);
        dir.write("x", b"y").unwrap();
        drop(dir);
        assert!(!path.exists());
    }
}
