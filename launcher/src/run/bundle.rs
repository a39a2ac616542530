//! The per-run directory (0700, removed when the run ends) and the CA bundles the child trusts:
//! `bundle.pem` = the system roots + the roots the user already pointed tools at (corporate
//! roots) + `AUTHSOME_EXTRA_ROOTS` + our CA; `ca.pem` = our CA alone, for additive knobs.

use std::ffi::OsString;
use std::fs::{self, DirBuilder};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, FileExt};
use std::path::{Path, PathBuf};

use crate::error::{CliError, CliResult, Kind};

/// Distro bundle locations, most common first (Debian/Ubuntu, RHEL/Fedora, Alpine, macOS-style).
pub(crate) const SYSTEM_BUNDLES: &[&str] = &[
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
pub(crate) struct RunDir {
    path: PathBuf,
}

impl RunDir {
    pub(crate) fn create() -> CliResult<Self> {
        // Memory-backed where there is one: writing and removing a few hundred KB there costs
        // a fraction of what it does on a disk-backed /tmp.
        let base = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|p| p.is_dir())
            .or_else(|| Some(PathBuf::from("/dev/shm")).filter(|p| p.is_dir()))
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

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// `name` in this directory, written by `write`.
    pub(crate) fn write_with(
        &self,
        name: &str,
        write: impl FnOnce(&mut fs::File) -> std::io::Result<()>,
    ) -> CliResult<PathBuf> {
        let path = self.path.join(name);
        fs::File::create(&path)
            .and_then(|mut file| write(&mut file))
            .map_err(|e| CliError::new(Kind::RunFailed, format!("cannot write {}: {e}", path.display())))?;
        Ok(path)
    }

    /// `name` in this directory, made by [`write_combined_bundle`].
    pub(crate) fn write_bundle(&self, name: &str, sources: &[PathBuf], ca_pem: &str) -> CliResult<PathBuf> {
        let path = self.path.join(name);
        let mut file = fs::File::create(&path)
            .map_err(|e| CliError::new(Kind::RunFailed, format!("cannot write {}: {e}", path.display())))?;
        write_combined_bundle(&mut file, sources, ca_pem)?;
        Ok(path)
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// The files whose roots go into the bundle, in order, without duplicates.
pub(crate) fn root_sources(parent_env: &[(OsString, OsString)], extra_roots: Option<&Path>) -> Vec<PathBuf> {
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
/// there and `AUTHSOME_EXTRA_ROOTS` (our CA is appended). Node keeps its bundled roots
/// underneath.
fn additive_sources(parent_env: &[(OsString, OsString)], extra_roots: Option<&Path>) -> Vec<PathBuf> {
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
    sources
}

/// The child's trust files for plain `run`.
#[derive(Debug, Clone)]
pub(crate) struct Bundles {
    pub(crate) bundle: PathBuf,
    pub(crate) additive: PathBuf,
    /// The hashed certificate directory (`SSL_CERT_DIR`).
    pub(crate) cert_dir: PathBuf,
    /// The JVM's trust store, inside `cert_dir`.
    pub(crate) java_store: PathBuf,
}

/// The bundles for plain `run`, cached in the profile's CA directory. They change only when a
/// source (its path, size or modification time) or the CA does; rebuilding them on every run
/// (reading and writing a couple of hundred KB twice) was most of `run`'s start-up file work.
/// Written atomically, manifest last, so concurrent runs never see a torn bundle.
pub(crate) fn cached_bundles(
    ca_dir: &Path,
    parent_env: &[(OsString, OsString)],
    extra_roots: Option<&Path>,
    ca_pem: &str,
) -> CliResult<Bundles> {
    let sources = root_sources(parent_env, extra_roots);
    let additive = additive_sources(parent_env, extra_roots);
    let mut manifest = String::from("authsome child bundles v1\n");
    for (kind, list) in [("bundle", &sources), ("additive", &additive)] {
        for path in list.iter() {
            let meta = fs::metadata(path).map_err(|e| {
                CliError::new(Kind::RunFailed, format!("cannot read the CA bundle {}: {e}", path.display()))
            })?;
            let mtime = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
            manifest.push_str(&format!(
                "{kind} {} {} {}\n",
                path.display(),
                meta.len(),
                mtime.map_or(0, |d| d.as_nanos())
            ));
        }
    }
    manifest.push_str(&format!("ca {:016x}\n", fnv1a(ca_pem.as_bytes())));
    // The directory is named by its contents: a run never sees one half rebuilt.
    let cert_dir = ca_dir.join(format!("child-certs-{:016x}", fnv1a(manifest.as_bytes())));
    let out = Bundles {
        bundle: ca_dir.join("child-bundle.pem"),
        additive: ca_dir.join("child-additive.pem"),
        java_store: cert_dir.join(super::cert_dir::JAVA_STORE),
        cert_dir,
    };
    let manifest_path = ca_dir.join("child-bundles.manifest");
    let fresh = fs::read_to_string(&manifest_path).is_ok_and(|m| m == manifest)
        && out.bundle.is_file()
        && out.additive.is_file()
        && out.java_store.is_file();
    if !fresh {
        let bundle = combined_bundle(&sources, ca_pem)?;
        write_atomic(&out.bundle, &bundle)?;
        write_atomic(&out.additive, &combined_bundle(&additive, ca_pem)?)?;
        if !out.java_store.is_file() {
            write_cert_dir_atomic(&out.cert_dir, &bundle)?;
        }
        write_atomic(&manifest_path, manifest.as_bytes())?;
    }
    Ok(out)
}

/// The sandbox's certificate directory and its roots' Java bags
/// (`cert_dir::write_sandbox_template`), cached in the profile's CA directory by what they are
/// made of: building them costs more than the rest of a sandbox's start. The run's own CA is not
/// in them (the directory links its hash to the bundle bound inside).
pub(crate) fn cached_sandbox_certs(
    ca_dir: &Path,
    sources: &[PathBuf],
    run_ca: &[u8],
    inside_bundle: &Path,
    host: &Path,
) -> CliResult<(PathBuf, PathBuf)> {
    let mut manifest = format!(
        "authsome sandbox certs v1\nca {:?}\ninside {}\n",
        super::cert_dir::subject_hash(run_ca),
        inside_bundle.display()
    );
    for path in sources.iter().map(PathBuf::as_path).chain([host]) {
        let meta = fs::metadata(path).map_err(|e| {
            CliError::new(Kind::RunFailed, format!("cannot read the CA bundle {}: {e}", path.display()))
        })?;
        let mtime = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
        manifest.push_str(&format!("{} {} {}\n", path.display(), meta.len(), mtime.map_or(0, |d| d.as_nanos())));
    }
    let id = format!("{:016x}", fnv1a(manifest.as_bytes()));
    let dir = ca_dir.join(format!("sandbox-certs-{id}"));
    let bags = ca_dir.join(format!("sandbox-certs-{id}.bags"));
    if dir.is_dir() && bags.is_file() {
        return Ok((dir, bags));
    }
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(ca_dir)
        .map_err(|e| CliError::new(Kind::RunFailed, format!("cannot create {}: {e}", ca_dir.display())))?;
    let roots = combined_bundle(sources, "")?;
    replace_dir_atomic(&dir, "sandbox-certs-", |tmp| {
        let java_bags = super::cert_dir::write_sandbox_template(tmp, &roots, run_ca, inside_bundle, host)?;
        write_atomic(&bags, &java_bags)
    })?;
    Ok((dir, bags))
}

/// Build the cert directory beside `path` and rename it into place; drop the directories older
/// runs built from other roots (after a day, so a run still using one keeps it).
fn write_cert_dir_atomic(path: &Path, bundle: &[u8]) -> CliResult {
    replace_dir_atomic(path, "child-certs-", |tmp| super::cert_dir::write(tmp, bundle).map(|_| ()))
}

/// Fill a fresh directory with `fill` and rename it to `path`; remove the day-old siblings
/// named `prefix…` (other sources, other CAs).
fn replace_dir_atomic(path: &Path, prefix: &str, fill: impl FnOnce(&Path) -> CliResult) -> CliResult {
    let parent = path.parent().unwrap_or(Path::new("."));
    let mut suffix = [0u8; 6];
    authsome_vault::crypto::random_bytes(&mut suffix).map_err(|e| CliError::new(Kind::RunFailed, e.to_string()))?;
    let tmp = parent.join(format!(".child-certs-tmp{}", suffix.iter().map(|b| format!("{b:02x}")).collect::<String>()));
    let built = DirBuilder::new()
        .mode(0o700)
        .create(&tmp)
        .map_err(|e| CliError::new(Kind::RunFailed, format!("cannot write {}: {e}", tmp.display())))
        .and_then(|()| fill(&tmp));
    let renamed = built.and_then(|()| {
        fs::rename(&tmp, path).or_else(|e| {
            // another run put the same directory in place first
            if path.join(super::cert_dir::JAVA_STORE).is_file() {
                Ok(())
            } else {
                Err(CliError::new(Kind::RunFailed, format!("cannot write {}: {e}", path.display())))
            }
        })
    });
    let _ = fs::remove_dir_all(&tmp);
    renamed?;
    let day_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(24 * 3600);
    for entry in fs::read_dir(parent).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let stale = name.starts_with(prefix)
            && entry.path() != path
            && entry.path() != path.with_extension("bags")
            && entry.metadata().and_then(|m| m.modified()).is_ok_and(|t| t < day_ago);
        if stale {
            let _ = fs::remove_dir_all(entry.path()).or_else(|_| fs::remove_file(entry.path()));
        }
    }
    Ok(())
}

fn write_atomic(path: &Path, bytes: &[u8]) -> CliResult {
    let mut suffix = [0u8; 6];
    authsome_vault::crypto::random_bytes(&mut suffix).map_err(|e| CliError::new(Kind::RunFailed, e.to_string()))?;
    let tmp = path.with_extension(format!("tmp{}", suffix.iter().map(|b| format!("{b:02x}")).collect::<String>()));
    let result = fs::write(&tmp, bytes).and_then(|()| fs::rename(&tmp, path));
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(CliError::new(Kind::RunFailed, format!("cannot write {}: {e}", path.display())));
    }
    Ok(())
}

/// FNV-1a, to notice a changed CA certificate (not a security boundary).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// Concatenate the sources and our CA into one PEM bundle.
pub(crate) fn combined_bundle(sources: &[PathBuf], ca_pem: &str) -> CliResult<Vec<u8>> {
    let mut out = Vec::with_capacity(256 * 1024);
    write_combined_bundle(&mut out, sources, ca_pem)?;
    Ok(out)
}

/// [`combined_bundle`] streamed into `out`: from file to file the kernel copies the sources
/// (no buffers of a few hundred KB to fault in, which costs a millisecond on some VMs).
pub(crate) fn write_combined_bundle<W: Write>(out: &mut W, sources: &[PathBuf], ca_pem: &str) -> CliResult {
    let unreadable = |source: &Path, e: std::io::Error| {
        CliError::new(Kind::RunFailed, format!("cannot read the CA bundle {}: {e}", source.display()))
            .hint("check the path in SSL_CERT_FILE / REQUESTS_CA_BUNDLE / AUTHSOME_EXTRA_ROOTS")
    };
    let write_error = |e: std::io::Error| CliError::new(Kind::RunFailed, format!("cannot write the CA bundle: {e}"));
    for source in sources {
        let mut file = fs::File::open(source).map_err(|e| unreadable(source, e))?;
        let copied = std::io::copy(&mut file, out).map_err(|e| unreadable(source, e))?;
        let mut last = [b'\n'];
        if copied > 0 {
            file.read_exact_at(&mut last, copied - 1).map_err(|e| unreadable(source, e))?;
        }
        if last[0] != b'\n' {
            out.write_all(b"\n").map_err(write_error)?;
        }
    }
    out.write_all(b"# authsome run CA (trusted only by this run's child)\n").map_err(write_error)?;
    out.write_all(ca_pem.as_bytes()).map_err(write_error)?;
    if !ca_pem.ends_with('\n') {
        out.write_all(b"\n").map_err(write_error)?;
    }
    Ok(())
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
    fn cached_bundles_are_reused_and_rebuilt_when_a_source_changes() {
        let dir = tempfile::tempdir().unwrap();
        let extra = dir.path().join("extra.pem");
        fs::write(&extra, "-----BEGIN CERTIFICATE-----\nEXTRA1\n-----END CERTIFICATE-----\n").unwrap();
        let ca = "-----BEGIN CERTIFICATE-----\nCA1\n-----END CERTIFICATE-----\n";
        let first = cached_bundles(dir.path(), &[], Some(&extra), ca).unwrap();
        let built = fs::metadata(&first.bundle).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let again = cached_bundles(dir.path(), &[], Some(&extra), ca).unwrap();
        assert_eq!(fs::metadata(&again.bundle).unwrap().modified().unwrap(), built, "reused");
        fs::write(&extra, "-----BEGIN CERTIFICATE-----\nEXTRA22\n-----END CERTIFICATE-----\n").unwrap();
        cached_bundles(dir.path(), &[], Some(&extra), ca).unwrap();
        assert!(fs::read_to_string(&first.bundle).unwrap().contains("EXTRA22"));
        assert!(fs::read_to_string(&first.additive).unwrap().contains("EXTRA22"));
        cached_bundles(dir.path(), &[], Some(&extra), "-----BEGIN CERTIFICATE-----\nCA2\n-----END CERTIFICATE-----\n")
            .unwrap();
        assert!(fs::read_to_string(&first.bundle).unwrap().contains("CA2"));
    }

    #[test]
    fn cached_cert_dir_follows_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let a = authsome_proxy::CertificateAuthority::ephemeral().unwrap();
        let b = authsome_proxy::CertificateAuthority::ephemeral().unwrap();
        let first = cached_bundles(dir.path(), &[], None, a.cert_pem()).unwrap();
        let has = |bundles: &Bundles, ca: &authsome_proxy::CertificateAuthority| {
            fs::read_dir(&bundles.cert_dir).unwrap().flatten().any(|e| {
                fs::read(e.path()).is_ok_and(|pem| {
                    e.file_name().to_string_lossy().ends_with(".0")
                        && super::super::cert_dir::pem_certificates(&pem) == vec![ca.cert_der().to_vec()]
                })
            })
        };
        assert!(has(&first, &a) && first.java_store.is_file());
        let second = cached_bundles(dir.path(), &[], None, b.cert_pem()).unwrap();
        assert_ne!(first.cert_dir, second.cert_dir);
        assert!(has(&second, &b) && !has(&second, &a));
        assert!(first.cert_dir.is_dir(), "a directory another run may still use is kept for a day");
    }

    #[test]
    fn run_dir_is_private_and_removed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = RunDir::create().unwrap();
        let path = dir.path.clone();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o700);
        let source = path.join("source.pem");
        fs::write(&source, "ROOTS").unwrap();
        let bundle = dir.write_bundle("bundle.pem", std::slice::from_ref(&source), "OURS\n").unwrap();
        let text = fs::read_to_string(&bundle).unwrap();
        assert!(text.starts_with("ROOTS\n# authsome run CA"), "a newline goes after a source without one: {text}");
        assert!(text.ends_with("OURS\n"));
        drop(dir);
        assert!(!path.exists());
    }
}
