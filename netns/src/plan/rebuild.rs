//! Keeping hidden paths hidden when they do not exist yet. An empty mount needs a mount point,
//! and making one on the host would litter the user's home; without one, a `~/.aws` created on
//! the host during the run would show up inside. Instead the nearest existing (read-only)
//! ancestor is rebuilt: a tmpfs over it holding its entries as they were at start (bound from a
//! staging bind of the real directory, symbolic links recreated), read-only, so nothing new
//! on the host appears there, and the hidden names are not among them.

use std::path::{Path, PathBuf};

use super::{Builder, HostView, MountOp, PathKind, RESTRICTED_STAGING, Source};

/// Directories never rebuilt: the system's own (big, and not where credentials appear).
const SYSTEM_DIRS: &[&str] = &[
    "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32", "/media", "/mnt", "/opt",
    "/proc", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/var", "/var/run", "/var/tmp", "/snap",
];

/// A directory with more entries than this is not rebuilt (start-up cost).
pub const REBUILD_MAX_ENTRIES: usize = 1024;

/// The directories to rebuild for the `hide` paths that do not exist, shallowest first: the
/// nearest existing ancestor of each, unless `skip(ancestor)` (it is writable, or under a fresh
/// mount, so the launcher's binds or our tmpfs decide what it shows) or it is a system directory.
pub fn directories(hide: &[PathBuf], host: &dyn HostView, skip: &dyn Fn(&Path) -> bool) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for path in hide {
        if host.kind(path).is_some() || host.is_symlink(path) {
            continue; // exists: an ordinary hide
        }
        let Some(ancestor) = path.ancestors().skip(1).find(|a| host.kind(a) == Some(PathKind::Dir)) else { continue };
        if SYSTEM_DIRS.iter().any(|s| ancestor == Path::new(s))
            || ancestor.starts_with("/run")
            || ancestor.starts_with("/var/run")
            || skip(ancestor)
            || dirs.iter().any(|d| d == ancestor)
        {
            continue;
        }
        dirs.push(ancestor.to_path_buf());
    }
    dirs.sort_by_key(|d| d.components().count());
    dirs
}

/// Append the operations that rebuild `dir` (see the module doc). `hidden` entries become empty
/// directories or files (the hide that follows mounts over them); `n` names the staging point.
pub fn rebuild(b: &mut Builder<'_>, dir: &Path, n: usize, hide: &[PathBuf]) {
    let entries = b.kind.list(dir);
    if entries.len() > REBUILD_MAX_ENTRIES {
        return;
    }
    let staging = Path::new(RESTRICTED_STAGING).join(format!(".authsome-rebuild-{n}"));
    b.ops.push(MountOp::MkdirAll { path: staging.clone() });
    b.ops.push(MountOp::Bind {
        source: Source::Path(dir.to_path_buf()),
        target: staging.clone(),
        recursive: true,
        read_only: true,
    });
    b.ops.push(MountOp::Tmpfs { target: dir.to_path_buf(), mode: 0o755, read_only: false });
    for (name, kind) in entries {
        let target = dir.join(&name);
        let hidden = hide.contains(&target);
        match kind {
            None if hidden => {}
            None => {
                if let Some(link) = b.kind.read_link(&target) {
                    b.ops.push(MountOp::Symlink { link: target, target: link });
                }
            }
            Some(PathKind::Dir) => {
                b.ops.push(MountOp::MkdirAll { path: target.clone() });
                if !hidden {
                    b.ops.push(bind_from(&staging, &name, target));
                }
            }
            Some(PathKind::File) => {
                b.ops.push(MountOp::CreateFile { path: target.clone() });
                if !hidden {
                    b.ops.push(bind_from(&staging, &name, target));
                }
            }
        }
    }
    b.ops.push(MountOp::MakeReadOnly { target: dir.to_path_buf() });
    b.ops.push(MountOp::Unmount { target: staging.clone() });
    b.ops.push(MountOp::RemoveDir { path: staging });
}

/// Read-only without a remount of its own: a bind takes the flags of its source, the read-only
/// staging bind.
fn bind_from(staging: &Path, name: &std::ffi::OsStr, target: PathBuf) -> MountOp {
    MountOp::Bind { source: Source::Path(staging.join(name)), target, recursive: true, read_only: false }
}
