//! The sandbox's setup plan as data: which mounts, in which order, and the fixed sequence of
//! steps that turn the forked command process into the locked-down command. Pure: the helper
//! executes the plan (`mounts::execute`, `sys::spawn_command`); unit tests check the order here
//! without a kernel.
//!
//! Order rules (docs/architecture.md, "The sandbox"):
//! - the mount namespace is made private before anything is mounted, so nothing leaks to the host;
//! - every host path we need later is opened (`O_PATH`) before anything can shadow it;
//! - placeholders for missing protected names are created on the host before anything is mounted;
//! - the whole tree is made read-only before the writable exceptions are bound on top;
//! - fresh mounts (private `/tmp`, `/var/tmp`, `/dev/shm`, home) come before the binds that go
//!   into them; binds go shallowest first, so a `--read` inside a writable path (or the reverse)
//!   sits on top;
//! - the protections inside writable paths come after every bind, then the CA/resolv.conf binds,
//!   then the hides, which sit on top of everything (hiding `~/.ssh` inside a writable `$HOME`
//!   works);
//! - capabilities are dropped last, bounding set first, permitted after inheritable.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::error::Step;
use crate::spec::{CA_BUNDLE_PATHS, CA_CERT_DIR, CA_JAVA_STORE, SandboxSpec};

mod protect;
mod rebuild;
mod restricted;

pub use protect::Unprotectable;

/// What a host path is, as far as mounting over it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    Dir,
    /// Anything that is not a directory: regular file, socket, device.
    File,
}

/// The host as the planner sees it, before anything is mounted.
pub trait HostView {
    /// What `path` is (following symlinks), or `None` when it does not exist.
    fn kind(&self, path: &Path) -> Option<PathKind>;
    /// `path` with symlinks resolved (two CA paths are often one file).
    fn canonical(&self, path: &Path) -> PathBuf {
        path.to_path_buf()
    }
    /// Whether `path` itself is a symbolic link (not followed).
    fn is_symlink(&self, _path: &Path) -> bool {
        false
    }
    /// The entries of directory `dir`: name and kind, `None` for a symbolic link (not followed).
    fn list(&self, _dir: &Path) -> Vec<(OsString, Option<PathKind>)> {
        Vec::new()
    }
    /// The text of a small file (`.git` files, `commondir`), if it is one.
    fn read(&self, _path: &Path) -> Option<String> {
        None
    }
    /// The index N of the host pseudo-terminal `/dev/pts/N` on the caller's stdin, stdout or
    /// stderr (the terminal the user runs us from), if there is one.
    fn terminal(&self) -> Option<u32> {
        None
    }
    /// Where symbolic link `path` points.
    fn read_link(&self, _path: &Path) -> Option<PathBuf> {
        None
    }
}

impl<F: Fn(&Path) -> Option<PathKind>> HostView for F {
    fn kind(&self, path: &Path) -> Option<PathKind> {
        self(path)
    }
}

/// Files the helper writes into its own tmpfs and binds into place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Staged {
    ResolvConf,
    Hosts,
    Empty,
}

/// Where a bind mount comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The n-th `OpenHost` of the plan (bound through `/proc/self/fd`, so later mounts cannot
    /// shadow it).
    Host(usize),
    Staged(Staged),
    /// A path, looked up when the bind happens (only paths inside our own staging area).
    Path(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountOp {
    /// `mount --make-rprivate /`.
    MakePrivate,
    /// Open `path` with `O_PATH` and keep it as source number `index`.
    OpenHost {
        index: usize,
        path: PathBuf,
        kind: PathKind,
    },
    /// Every mount in the namespace read-only (recursive).
    ReadOnlyAll,
    /// A fresh tmpfs (nosuid, nodev) at `target`.
    Tmpfs {
        target: PathBuf,
        mode: u32,
        read_only: bool,
    },
    /// `mkdir -p` inside one of our own tmpfs mounts.
    MkdirAll {
        path: PathBuf,
    },
    /// An empty file as a mount point, inside one of our own tmpfs mounts.
    CreateFile {
        path: PathBuf,
    },
    Symlink {
        link: PathBuf,
        target: PathBuf,
    },
    /// A new devpts instance (ptmxmode=0666).
    Devpts {
        target: PathBuf,
    },
    /// Allocate pseudo-terminals in the devpts instance at `devpts` until `devpts/index` exists,
    /// and keep that one allocated for the whole run (a mount point for the host's terminal).
    ReservePty {
        devpts: PathBuf,
        index: u32,
    },
    /// Write a staged file at `path` (mode 0444).
    WriteStaged {
        which: Staged,
        path: PathBuf,
    },
    Bind {
        source: Source,
        target: PathBuf,
        recursive: bool,
        read_only: bool,
    },
    /// Clear the read-only flag of the mount at `target` (it was inherited from `ReadOnlyAll`).
    MakeWritable {
        target: PathBuf,
    },
    MakeReadOnly {
        target: PathBuf,
    },
    Unlink {
        path: PathBuf,
    },
    /// Remove an empty directory of our own staging area.
    RemoveDir {
        path: PathBuf,
    },
    /// Detach the mount at `target`.
    Unmount {
        target: PathBuf,
    },
    Chdir {
        path: PathBuf,
    },
    /// Create `path` on the host (before anything is mounted) if it does not exist: an empty
    /// directory, or a file holding `contents`. The helper's janitor removes the ones it made
    /// after the run, if they are still as made (`janitor`).
    Placeholder {
        path: PathBuf,
        kind: PathKind,
        contents: &'static str,
    },
    /// Bind `target` onto itself (recursively), read-only or not: either way it becomes a mount
    /// point, which cannot be renamed or removed. `placeholder`: a missing target is skipped
    /// (its placeholder could not be made because the host path is read-only anyway).
    BindInPlace {
        target: PathBuf,
        read_only: bool,
        placeholder: bool,
    },
}

impl MountOp {
    /// The step a failure of this operation is reported as.
    pub fn step(&self) -> Step {
        match self {
            MountOp::MakePrivate => Step::MountPrivate,
            MountOp::OpenHost { .. } => Step::OpenHostPath,
            MountOp::ReadOnlyAll => Step::ReadOnlyRoot,
            MountOp::Tmpfs { read_only: true, .. } => Step::HidePath,
            MountOp::Tmpfs { .. } | MountOp::Unmount { .. } => Step::MountTmpfs,
            MountOp::MkdirAll { .. }
            | MountOp::CreateFile { .. }
            | MountOp::Symlink { .. }
            | MountOp::Devpts { .. }
            | MountOp::ReservePty { .. }
            | MountOp::MakeReadOnly { .. } => Step::MountDev,
            MountOp::WriteStaged { .. } | MountOp::Unlink { .. } | MountOp::RemoveDir { .. } => Step::WriteStaged,
            MountOp::Bind { source: Source::Staged(Staged::Empty), .. } => Step::HidePath,
            MountOp::Bind { .. } => Step::BindMount,
            MountOp::MakeWritable { .. } => Step::MakeWritable,
            MountOp::Chdir { .. } => Step::Chdir,
            MountOp::Placeholder { .. } | MountOp::BindInPlace { .. } => Step::ProtectPath,
        }
    }
}

/// Parts of the sandbox's fresh `/proc` that are made read-only (what container runtimes do):
/// their files are guarded by the writer's uid, not by capabilities.
pub const PROC_READ_ONLY: &[&str] = &[
    "/proc/sys",
    "/proc/sysrq-trigger",
    "/proc/irq",
    "/proc/bus",
    "/proc/fs",
    "/proc/acpi",
    "/proc/scsi",
    "/proc/driver",
];

/// Device nodes of the sandbox's minimal `/dev` (what bubblewrap's `--dev` offers).
pub const DEV_NODES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// Where the restricted plan stages its files: the sandbox's own `/dev/shm` tmpfs, which is
/// always private (unlike `/tmp`, which is the host's when the user makes it writable).
pub(crate) const RESTRICTED_STAGING: &str = "/dev/shm";

pub fn staged_name(which: Staged) -> &'static str {
    match which {
        Staged::ResolvConf => ".authsome-resolv.conf",
        Staged::Hosts => ".authsome-hosts",
        Staged::Empty => ".authsome-empty",
    }
}

/// The staging directory of a plan (where `WriteStaged` puts files).
pub fn staging_dir(plan: &[MountOp]) -> Option<&Path> {
    plan.iter().find_map(|op| match op {
        MountOp::WriteStaged { path, .. } => path.parent(),
        _ => None,
    })
}

/// The mount plan for `spec`. `kind` says what a host path is (following symlinks), or `None`
/// when it does not exist; it is only asked about host paths, before anything is mounted.
/// Fails when a protected path cannot be protected (a symbolic link in a writable path).
pub fn mount_plan(spec: &SandboxSpec, kind: &dyn HostView) -> Result<Vec<MountOp>, Unprotectable> {
    if spec.fs.open { open_plan(spec, kind) } else { restricted::restricted_plan(spec, kind) }
}

/// The opened CA sources: the bundle, and the certificate directory and Java store when bound.
#[derive(Clone, Copy)]
pub(crate) struct CaSources {
    bundle: usize,
    dir: Option<usize>,
    store: Option<usize>,
}

pub(crate) struct Builder<'a> {
    ops: Vec<MountOp>,
    opened: usize,
    kind: &'a dyn HostView,
    /// Canonical paths already hidden (`/var/run/x` and `/run/x` are usually one file).
    hidden: Vec<PathBuf>,
    /// Staged files whose real target (symlinks resolved) must exist inside the sandbox.
    staged_targets: Vec<(Staged, PathBuf)>,
}

impl<'a> Builder<'a> {
    fn new(spec: &SandboxSpec, kind: &'a dyn HostView) -> Self {
        let mut staged_targets = Vec::new();
        if kind.kind(Path::new("/etc/resolv.conf")) == Some(PathKind::File) {
            staged_targets.push((Staged::ResolvConf, kind.canonical(Path::new("/etc/resolv.conf"))));
        }
        if spec.hosts_file.is_some() && kind.kind(Path::new("/etc/hosts")) == Some(PathKind::File) {
            staged_targets.push((Staged::Hosts, kind.canonical(Path::new("/etc/hosts"))));
        }
        Builder { ops: vec![MountOp::MakePrivate], opened: 0, kind, hidden: Vec::new(), staged_targets }
    }

    /// The CA sources: the bundle, and the hashed directory when the host has one to cover.
    fn open_ca(&mut self, spec: &SandboxSpec) -> CaSources {
        let bundle = self.open_host(&spec.ca_bundle, PathKind::File);
        let (dir, store) = match &spec.ca_dir {
            Some(dir) if self.kind.kind(Path::new(CA_CERT_DIR)) == Some(PathKind::Dir) => {
                let dir = self.open_host(dir, PathKind::Dir);
                (Some(dir), spec.ca_store.as_ref().map(|store| self.open_host(store, PathKind::File)))
            }
            _ => (None, None),
        };
        CaSources { bundle, dir, store }
    }

    fn open_host(&mut self, path: &Path, kind: PathKind) -> usize {
        let index = self.opened;
        self.opened += 1;
        self.ops.push(MountOp::OpenHost { index, path: path.to_path_buf(), kind });
        index
    }

    fn stage(&mut self, dir: &Path, spec: &SandboxSpec) {
        let mut write = |which| self.ops.push(MountOp::WriteStaged { which, path: dir.join(staged_name(which)) });
        write(Staged::ResolvConf);
        if spec.hosts_file.is_some() {
            write(Staged::Hosts);
        }
        write(Staged::Empty);
    }

    fn etc_and_ca_binds(&mut self, spec: &SandboxSpec, CaSources { bundle: ca, dir: ca_dir, store }: CaSources) {
        let ro_bind = |source, target: &str| MountOp::Bind {
            source,
            target: PathBuf::from(target),
            recursive: false,
            read_only: true,
        };
        // A dangling /etc/resolv.conf symlink (kind None) cannot be mounted over; glibc then uses
        // 127.0.0.1:53, which our :53 listener catches anyway.
        if self.kind.kind(Path::new("/etc/resolv.conf")) == Some(PathKind::File) {
            self.ops.push(ro_bind(Source::Staged(Staged::ResolvConf), "/etc/resolv.conf"));
        }
        if spec.hosts_file.is_some() && self.kind.kind(Path::new("/etc/hosts")) == Some(PathKind::File) {
            self.ops.push(ro_bind(Source::Staged(Staged::Hosts), "/etc/hosts"));
        }
        // The directory first: the bundle paths inside it are bound again on top (it holds them).
        if let Some(dir) = ca_dir {
            self.ops.push(ro_bind(Source::Host(dir), CA_CERT_DIR));
        }
        if let Some(store) = store {
            self.ops.push(ro_bind(Source::Host(store), CA_JAVA_STORE));
        }
        let mut bound: Vec<PathBuf> = Vec::new();
        for path in CA_BUNDLE_PATHS {
            let canonical = self.kind.canonical(Path::new(path));
            if self.kind.kind(Path::new(path)) == Some(PathKind::File) && !bound.contains(&canonical) {
                self.ops.push(ro_bind(Source::Host(ca), path));
                bound.push(canonical);
            }
        }
    }

    fn hide(&mut self, path: &Path) {
        let canonical = self.kind.canonical(path);
        // already hidden, or inside a directory already hidden (where it no longer exists)
        if self.hidden.iter().any(|h| canonical.starts_with(h)) {
            return;
        }
        let kind = self.kind.kind(path);
        if kind.is_some() {
            self.hidden.push(canonical);
        }
        match kind {
            Some(PathKind::Dir) => {
                let canonical = self.kind.canonical(path);
                let inside: Vec<(Staged, PathBuf)> =
                    self.staged_targets.iter().filter(|(_, t)| t.starts_with(&canonical)).cloned().collect();
                if inside.is_empty() {
                    self.ops.push(MountOp::Tmpfs { target: path.to_path_buf(), mode: 0o700, read_only: true });
                    return;
                }
                // e.g. /etc/resolv.conf -> /run/systemd/resolve/stub-resolv.conf with /run hidden:
                // recreate just that file inside the empty tmpfs, then make it read-only
                self.ops.push(MountOp::Tmpfs { target: canonical.clone(), mode: 0o755, read_only: false });
                for (which, target) in inside {
                    if let Some(parent) = target.parent() {
                        self.ops.push(MountOp::MkdirAll { path: parent.to_path_buf() });
                    }
                    self.ops.push(MountOp::CreateFile { path: target.clone() });
                    self.ops.push(MountOp::Bind {
                        source: Source::Staged(which),
                        target,
                        recursive: false,
                        read_only: true,
                    });
                }
                self.ops.push(MountOp::MakeReadOnly { target: canonical });
            }
            Some(PathKind::File) => self.ops.push(MountOp::Bind {
                source: Source::Staged(Staged::Empty),
                target: path.to_path_buf(),
                recursive: false,
                read_only: true,
            }),
            None => {}
        }
    }
}

fn open_plan(spec: &SandboxSpec, kind: &dyn HostView) -> Result<Vec<MountOp>, Unprotectable> {
    let mut b = Builder::new(spec, kind);
    let ca = b.open_ca(spec);
    // Stage in a tmpfs over /dev/shm (nothing we bind or hide lives there), detached afterwards
    // so the host's /dev/shm shows again; the binds keep the staged files alive.
    let staging = if kind.kind(Path::new("/dev/shm")) == Some(PathKind::Dir) { "/dev/shm" } else { "/tmp" };
    b.ops.push(MountOp::Tmpfs { target: staging.into(), mode: 0o700, read_only: false });
    b.stage(Path::new(staging), spec);
    b.etc_and_ca_binds(spec, ca);
    // everything is writable: the launcher's own list is what stays read-only
    for path in &spec.fs.protect {
        if kind.is_symlink(path) {
            return Err(Unprotectable(path.clone()));
        }
        if kind.kind(path).is_some() {
            b.ops.push(MountOp::BindInPlace { target: path.clone(), read_only: true, placeholder: false });
        }
    }
    for path in &spec.fs.hide {
        if !path.starts_with(staging) {
            b.hide(path);
        }
    }
    b.ops.push(MountOp::Unmount { target: staging.into() });
    b.ops.push(MountOp::Chdir { path: spec.cwd.clone() });
    Ok(b.ops)
}

/// What the forked command process does between `fork` and `execve`, in this order
/// (`sys::exec_command` runs exactly this list, without allocating).
pub const COMMAND_STEPS: [Step; 12] = [
    Step::ResetSignals,
    Step::NewSession,
    Step::JoinKeyring,
    Step::SealFds,
    Step::DropBounding,
    Step::ClearAmbient,
    Step::ClearInheritable,
    Step::ClearPermitted,
    Step::NoNewPrivs,
    Step::Seccomp,
    Step::WaitRelease,
    Step::Exec,
];

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_protect;
