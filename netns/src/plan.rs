//! The sandbox's setup plan as data: which mounts, in which order, and the fixed sequence of
//! steps that turn the forked command process into the locked-down command. Pure: the helper
//! executes the plan (`helper::mounts`, `sys::exec_command`); unit tests check the order here
//! without a kernel.
//!
//! Order rules (DESIGN section 9, sandbox-recipes sections 7 and 9):
//! - the mount namespace is made private before anything is mounted, so nothing leaks to the host;
//! - every host path we need later is opened (`O_PATH`) before anything can shadow it;
//! - the whole tree is made read-only before the writable exceptions are bound on top;
//! - writable binds come before the CA/resolv.conf binds and the hides, which therefore sit on
//!   top of them (hiding `~/.ssh` inside a writable `$HOME` works);
//! - capabilities are dropped last, bounding set first, permitted after inheritable.

use std::path::{Path, PathBuf};

use crate::error::Step;
use crate::spec::{CA_BUNDLE_PATHS, SandboxSpec};

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
    /// Detach the mount at `target`.
    Unmount {
        target: PathBuf,
    },
    Chdir {
        path: PathBuf,
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
            | MountOp::MakeReadOnly { .. } => Step::MountDev,
            MountOp::WriteStaged { .. } | MountOp::Unlink { .. } => Step::WriteStaged,
            MountOp::Bind { source: Source::Staged(Staged::Empty), .. } => Step::HidePath,
            MountOp::Bind { .. } => Step::BindMount,
            MountOp::MakeWritable { .. } => Step::MakeWritable,
            MountOp::Chdir { .. } => Step::Chdir,
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
const RESTRICTED_STAGING: &str = "/dev/shm";

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
pub fn mount_plan(spec: &SandboxSpec, kind: &dyn HostView) -> Vec<MountOp> {
    if spec.fs.open { open_plan(spec, kind) } else { restricted_plan(spec, kind) }
}

struct Builder<'a> {
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

    fn etc_and_ca_binds(&mut self, spec: &SandboxSpec, ca: usize) {
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
        self.hidden.push(canonical);
        match self.kind.kind(path) {
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

/// `cwd` and the `writable` paths. A cwd of `/` is not made writable: that would be the whole
/// host (name `/` in `writable` to really mean it).
fn writable_paths(spec: &SandboxSpec) -> Vec<PathBuf> {
    let mut paths = if spec.cwd == Path::new("/") { vec![] } else { vec![spec.cwd.clone()] };
    for p in &spec.fs.writable {
        if !paths.contains(p) {
            paths.push(p.clone());
        }
    }
    paths
}

/// Paths that live in mounts the sandbox replaces with its own (they do not exist inside).
/// Whether `path` lies under a mount the restricted plan makes fresh: `/dev` always, `/tmp`
/// unless the host's `/tmp` itself is writable.
fn under_private_mount(path: &Path, private_tmp: bool) -> bool {
    (private_tmp && path.starts_with("/tmp")) || path.starts_with("/dev")
}

fn restricted_plan(spec: &SandboxSpec, kind: &dyn HostView) -> Vec<MountOp> {
    let mut b = Builder::new(spec, kind);
    let ca = b.open_host(&spec.ca_bundle, PathKind::File);
    let dev: Vec<(&str, usize)> = DEV_NODES
        .iter()
        .filter_map(|n| {
            let path = Path::new("/dev").join(n);
            (kind.kind(&path) == Some(PathKind::File)).then(|| (*n, b.open_host(&path, PathKind::File)))
        })
        .collect();
    let writable: Vec<(PathBuf, PathKind, usize)> = writable_paths(spec)
        .into_iter()
        .map(|p| {
            let k = kind.kind(&p).unwrap_or(PathKind::Dir);
            let index = b.open_host(&p, k);
            (p, k, index)
        })
        .collect();

    b.ops.push(MountOp::ReadOnlyAll);
    // A cwd of exactly /tmp means the host's /tmp: a private tmpfs there would shadow the bind
    // (a magic-link bind source resolves to whatever is mounted on top of it).
    let private_tmp = !writable.iter().any(|(p, _, _)| p == Path::new("/tmp"));
    if private_tmp {
        b.ops.push(MountOp::Tmpfs { target: "/tmp".into(), mode: 0o1777, read_only: false });
    }

    b.ops.push(MountOp::Tmpfs { target: "/dev".into(), mode: 0o755, read_only: false });
    for (name, index) in dev {
        let target = Path::new("/dev").join(name);
        b.ops.push(MountOp::CreateFile { path: target.clone() });
        b.ops.push(MountOp::Bind { source: Source::Host(index), target, recursive: false, read_only: false });
    }
    b.ops.push(MountOp::MkdirAll { path: "/dev/pts".into() });
    b.ops.push(MountOp::Devpts { target: "/dev/pts".into() });
    b.ops.push(MountOp::Symlink { link: "/dev/ptmx".into(), target: "pts/ptmx".into() });
    b.ops.push(MountOp::MkdirAll { path: "/dev/shm".into() });
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        b.ops.push(MountOp::Symlink { link: Path::new("/dev").join(link), target: target.into() });
    }
    b.ops.push(MountOp::MakeReadOnly { target: "/dev".into() });
    b.ops.push(MountOp::Tmpfs { target: "/dev/shm".into(), mode: 0o1777, read_only: false });

    b.stage(Path::new(RESTRICTED_STAGING), spec);

    for (path, k, index) in &writable {
        if under_private_mount(path, private_tmp) {
            match k {
                PathKind::Dir => b.ops.push(MountOp::MkdirAll { path: path.clone() }),
                PathKind::File => {
                    if let Some(parent) = path.parent() {
                        b.ops.push(MountOp::MkdirAll { path: parent.to_path_buf() });
                    }
                    b.ops.push(MountOp::CreateFile { path: path.clone() });
                }
            }
        }
        b.ops.push(MountOp::Bind {
            source: Source::Host(*index),
            target: path.clone(),
            recursive: true,
            read_only: false,
        });
        b.ops.push(MountOp::MakeWritable { target: path.clone() });
    }

    b.etc_and_ca_binds(spec, ca);

    for path in &spec.fs.hide {
        let inside_writable = writable.iter().any(|(w, _, _)| path.starts_with(w));
        if under_private_mount(path, private_tmp) && !inside_writable {
            continue; // our fresh /tmp and /dev do not contain it
        }
        b.hide(path);
    }

    for which in [Staged::ResolvConf, Staged::Hosts, Staged::Empty] {
        if which != Staged::Hosts || spec.hosts_file.is_some() {
            b.ops.push(MountOp::Unlink { path: Path::new(RESTRICTED_STAGING).join(staged_name(which)) });
        }
    }
    b.ops.push(MountOp::Chdir { path: spec.cwd.clone() });
    b.ops
}

fn open_plan(spec: &SandboxSpec, kind: &dyn HostView) -> Vec<MountOp> {
    let mut b = Builder::new(spec, kind);
    let ca = b.open_host(&spec.ca_bundle, PathKind::File);
    // Stage in a tmpfs over /dev/shm (nothing we bind or hide lives there), detached afterwards
    // so the host's /dev/shm shows again; the binds keep the staged files alive.
    let staging = if kind.kind(Path::new("/dev/shm")) == Some(PathKind::Dir) { "/dev/shm" } else { "/tmp" };
    b.ops.push(MountOp::Tmpfs { target: staging.into(), mode: 0o700, read_only: false });
    b.stage(Path::new(staging), spec);
    b.etc_and_ca_binds(spec, ca);
    for path in &spec.fs.hide {
        if !path.starts_with(staging) {
            b.hide(path);
        }
    }
    b.ops.push(MountOp::Unmount { target: staging.into() });
    b.ops.push(MountOp::Chdir { path: spec.cwd.clone() });
    b.ops
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
