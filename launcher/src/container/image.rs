//! The sidecar image: `localhost/authsome-sidecar:<version>-<build>`, built locally from the
//! running binary (no registry), the binary and its shared libraries on an empty root.
//!
//! The tag names the binary it was built from (its version, and a fingerprint of the file), so
//! a sidecar built by another authsome is never used: a missing tag is built on first use and
//! by `authsome image build`.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use sha2::{Digest, Sha256};

use super::engine::ContainerEngine;
use crate::error::{CliError, CliResult, Kind};

const REPOSITORY: &str = "localhost/authsome-sidecar";
/// The runtime stage every sidecar image is built with (images/Containerfile ends with it).
const CONTAINERFILE: &str = include_str!("../../../images/sidecar.Containerfile");
/// Where the binary lives inside the image (the Containerfile's entrypoint).
const BINARY_INSIDE: &str = "usr/local/bin/authsome";

/// The tag for the binary at `exe`: its version and a fingerprint of the file (size, change
/// time, inode), cheap to compute on every run and different for every rebuilt binary.
pub(crate) fn tag_for(exe: &Path) -> CliResult<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(exe)
        .map_err(|e| CliError::new(Kind::RunFailed, format!("cannot read {}: {e}", exe.display())))?;
    let identity = format!("{}:{}:{}:{}", meta.len(), meta.ctime(), meta.ctime_nsec(), meta.ino());
    let digest = Sha256::digest(identity.as_bytes());
    let build: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    Ok(format!("{REPOSITORY}:{}-{build}", env!("CARGO_PKG_VERSION")))
}

/// The running binary's sidecar image tag (the image may not be built yet).
pub(crate) fn current_tag() -> CliResult<String> {
    tag_for(&current_exe()?)
}

/// Build the running binary's sidecar image unless it exists. Concurrent first runs take turns
/// (a lock file), so the image is built once and no half-tagged copy is left behind.
pub(crate) fn build_if_missing(engine: &ContainerEngine) -> CliResult<String> {
    let exe = current_exe()?;
    let tag = tag_for(&exe)?;
    let lock_path = std::env::temp_dir().join("authsome-sidecar-build.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| CliError::new(Kind::RunFailed, format!("cannot open {}: {e}", lock_path.display())))?;
    let _lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| CliError::new(Kind::RunFailed, format!("cannot lock {}: {e}", lock_path.display())))?;
    if !engine.image_exists(&tag) {
        build(engine, &exe, &tag)?;
    }
    Ok(tag)
}

/// `authsome image build`: (re)build the running binary's sidecar image; returns its tag.
pub(crate) fn build_current(engine: &ContainerEngine) -> CliResult<String> {
    let exe = current_exe()?;
    let tag = tag_for(&exe)?;
    build(engine, &exe, &tag)?;
    Ok(tag)
}

fn current_exe() -> CliResult<PathBuf> {
    std::env::current_exe().map_err(|e| CliError::new(Kind::RunFailed, format!("cannot find the authsome binary: {e}")))
}

fn build(engine: &ContainerEngine, exe: &Path, tag: &str) -> CliResult<()> {
    let failed = |what: String| CliError::new(Kind::RunFailed, format!("cannot build the sidecar image: {what}"));
    let context = BuildDir::create().map_err(|e| failed(format!("cannot create a build directory: {e}")))?;
    let rootfs = context.path().join("rootfs");
    copy_into(&rootfs, exe, Path::new(BINARY_INSIDE)).map_err(|e| failed(format!("{}: {e}", exe.display())))?;
    for library in shared_libraries(exe) {
        let inside = library.strip_prefix("/").unwrap_or(&library);
        copy_into(&rootfs, &library, inside).map_err(|e| failed(format!("{}: {e}", library.display())))?;
    }
    std::fs::write(context.path().join("Containerfile"), CONTAINERFILE)
        .map_err(|e| failed(format!("cannot write the Containerfile: {e}")))?;
    let output = engine
        .command()
        .args(["build", "--quiet", "--tag", tag, "--file"])
        .arg(context.path().join("Containerfile"))
        .arg(context.path())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| failed(format!("{} does not answer: {e}", engine.name())))?;
    if !output.status.success() {
        return Err(failed(String::from_utf8_lossy(&output.stderr).trim().to_string())
            .hint(format!("check that `{} build` works on this machine", engine.name())));
    }
    remove_older(engine, tag);
    Ok(())
}

/// Sidecar images of other binaries are never used again (a tag names one binary): remove
/// them so each upgrade does not leave one behind. One still in use stays (the engine refuses).
fn remove_older(engine: &ContainerEngine, keep: &str) {
    let Ok(listing) = engine.output(&["images", "--format", "{{.Repository}}:{{.Tag}}", REPOSITORY]) else {
        return;
    };
    let old: Vec<&str> = listing.lines().map(str::trim).filter(|t| t.starts_with(REPOSITORY) && *t != keep).collect();
    let quiet = |args: &[&str]| {
        let _ = engine.command().args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status();
    };
    if !old.is_empty() {
        let mut args = vec!["rmi"];
        args.extend(old);
        quiet(&args);
    }
    // A rebuilt tag leaves the previous image untagged.
    quiet(&["image", "prune", "--force", "--filter", "label=io.authsome.sidecar=1"]);
}

/// A private scratch directory for the build context, removed on drop.
struct BuildDir(PathBuf);

impl BuildDir {
    fn create() -> std::io::Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        let mut suffix = [0u8; 8];
        authsome_vault::crypto::random_bytes(&mut suffix).map_err(std::io::Error::other)?;
        let name: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
        let path = std::env::temp_dir().join(format!("authsome-sidecar-{name}"));
        std::fs::DirBuilder::new().mode(0o700).create(&path)?;
        Ok(Self(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for BuildDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Copy `source` (following links) to `rootfs/inside`, executable bits kept.
fn copy_into(rootfs: &Path, source: &Path, inside: &Path) -> std::io::Result<()> {
    let target = rootfs.join(inside);
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::copy(source, &target)?;
    Ok(())
}

/// The libraries (and the loader) a dynamic binary needs, from `ldd`; none for a static one.
fn shared_libraries(exe: &Path) -> Vec<PathBuf> {
    let Ok(output) = std::process::Command::new("ldd").arg(exe).stdin(Stdio::null()).output() else {
        return Vec::new();
    };
    parse_ldd(&String::from_utf8_lossy(&output.stdout))
}

/// Absolute paths out of `ldd` output (`libc.so.6 => /lib/…/libc.so.6 (0x…)`, `/lib64/ld-… (0x…)`).
fn parse_ldd(text: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for line in text.lines() {
        let path = match line.split_once("=>") {
            Some((_, right)) => right.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(path) = path.filter(|p| p.starts_with('/')) {
            let path = PathBuf::from(path);
            if !out.contains(&path) {
                out.push(path);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_gives_libraries_and_loader() {
        let text = "\tlinux-vdso.so.1 (0x00007ffc)\n\tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x7f)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x7f)\n\t/lib64/ld-linux-x86-64.so.2 (0x7f)\n";
        assert_eq!(
            parse_ldd(text),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
        assert!(parse_ldd("\tnot a dynamic executable\n").is_empty());
    }

    #[test]
    fn the_tag_names_the_version_and_changes_with_the_binary() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::write(&a, "one").unwrap();
        let first = tag_for(&a).unwrap();
        assert!(first.starts_with(&format!("{REPOSITORY}:{}-", env!("CARGO_PKG_VERSION"))), "{first}");
        std::fs::write(&a, "a longer binary").unwrap();
        assert_ne!(tag_for(&a).unwrap(), first);
    }
}
