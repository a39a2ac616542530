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
mod tests {
    use super::*;
    use crate::spec::{FsPolicy, default_hidden_paths};

    /// A host like this machine: Debian CA path, /etc/resolv.conf, /etc/hosts, ~/.ssh (dir),
    /// ~/.netrc (file), the docker socket, the usual /dev nodes.
    fn host(path: &Path) -> Option<PathKind> {
        let dirs =
            ["/home/u", "/home/u/project", "/home/u/.ssh", "/home/u/.authsome", "/data", "/dev/shm", "/tmp/work"];
        let files = [
            "/etc/ssl/certs/ca-certificates.crt",
            "/usr/lib/ssl/cert.pem",
            "/etc/resolv.conf",
            "/etc/hosts",
            "/home/u/.netrc",
            "/run/docker.sock",
            "/run/ca.pem",
            "/dev/null",
            "/dev/zero",
            "/dev/full",
            "/dev/random",
            "/dev/urandom",
            "/dev/tty",
        ];
        let p = path.to_str().unwrap();
        if dirs.contains(&p) {
            Some(PathKind::Dir)
        } else if files.contains(&p) {
            Some(PathKind::File)
        } else {
            None
        }
    }

    fn spec() -> SandboxSpec {
        let mut s = SandboxSpec::new("sh", "/home/u", "/run/ca.pem");
        s.fs = FsPolicy {
            open: false,
            writable: vec!["/data".into()],
            hide: default_hidden_paths(Path::new("/home/u"), Path::new("/home/u/.authsome"), 1000),
        };
        s
    }

    fn position(plan: &[MountOp], pred: impl Fn(&MountOp) -> bool) -> usize {
        plan.iter().position(pred).expect("operation missing from the plan")
    }

    fn last_position(plan: &[MountOp], pred: impl Fn(&MountOp) -> bool) -> usize {
        plan.iter().rposition(pred).expect("operation missing from the plan")
    }

    fn is_bind_to(op: &MountOp, target: &str) -> bool {
        matches!(op, MountOp::Bind { target: t, .. } if t == Path::new(target))
    }

    #[test]
    fn mounts_go_private_before_anything_else() {
        for open in [false, true] {
            let mut s = spec();
            s.fs.open = open;
            let plan = mount_plan(&s, &host);
            assert_eq!(plan[0], MountOp::MakePrivate);
            assert_eq!(plan.iter().filter(|op| **op == MountOp::MakePrivate).count(), 1);
            assert!(matches!(plan.last(), Some(MountOp::Chdir { path }) if path == Path::new("/home/u")));
        }
    }

    #[test]
    fn host_paths_are_opened_before_the_tree_changes() {
        let plan = mount_plan(&spec(), &host);
        let last_open = last_position(&plan, |op| matches!(op, MountOp::OpenHost { .. }));
        let read_only = position(&plan, |op| *op == MountOp::ReadOnlyAll);
        assert!(last_open < read_only);
        assert!(plan[..read_only].iter().all(|op| matches!(op, MountOp::MakePrivate | MountOp::OpenHost { .. })));
        let opened: Vec<usize> = plan
            .iter()
            .filter_map(|op| match op {
                MountOp::OpenHost { index, .. } => Some(*index),
                _ => None,
            })
            .collect();
        assert_eq!(opened, (0..opened.len()).collect::<Vec<_>>(), "sources are numbered in order");
    }

    #[test]
    fn read_only_root_then_writable_binds_then_ca_then_hides() {
        let plan = mount_plan(&spec(), &host);
        let read_only = position(&plan, |op| *op == MountOp::ReadOnlyAll);
        let cwd_bind = position(&plan, |op| is_bind_to(op, "/home/u"));
        let cwd_writable =
            position(&plan, |op| matches!(op, MountOp::MakeWritable { target } if target == Path::new("/home/u")));
        let data_writable =
            position(&plan, |op| matches!(op, MountOp::MakeWritable { target } if target == Path::new("/data")));
        let ca = position(&plan, |op| is_bind_to(op, "/etc/ssl/certs/ca-certificates.crt"));
        let ssh = position(
            &plan,
            |op| matches!(op, MountOp::Tmpfs { target, read_only: true, .. } if target == Path::new("/home/u/.ssh")),
        );
        let netrc = position(&plan, |op| is_bind_to(op, "/home/u/.netrc"));
        assert!(read_only < cwd_bind && cwd_bind < cwd_writable);
        assert!(data_writable < ca && ca < ssh && ca < netrc, "hides sit on top of the writable home");
        assert!(matches!(
            &plan[cwd_bind],
            MountOp::Bind { source: Source::Host(_), recursive: true, read_only: false, .. }
        ));
    }

    #[test]
    fn ca_bundle_goes_over_every_existing_distro_path_read_only() {
        let plan = mount_plan(&spec(), &host);
        for path in ["/etc/ssl/certs/ca-certificates.crt", "/usr/lib/ssl/cert.pem"] {
            let op = &plan[position(&plan, |op| is_bind_to(op, path))];
            assert!(matches!(op, MountOp::Bind { source: Source::Host(0), read_only: true, recursive: false, .. }));
        }
        assert!(!plan.iter().any(|op| is_bind_to(op, "/etc/pki/tls/certs/ca-bundle.crt")), "missing paths are skipped");
        assert!(matches!(&plan[1], MountOp::OpenHost { index: 0, path, .. } if path == Path::new("/run/ca.pem")));
    }

    #[test]
    fn ca_paths_that_are_one_file_are_bound_once() {
        struct Linked;
        impl HostView for Linked {
            fn kind(&self, path: &Path) -> Option<PathKind> {
                host(path)
            }
            fn canonical(&self, path: &Path) -> PathBuf {
                if path == Path::new("/usr/lib/ssl/cert.pem") {
                    PathBuf::from("/etc/ssl/certs/ca-certificates.crt")
                } else {
                    path.to_path_buf()
                }
            }
        }
        let plan = mount_plan(&spec(), &Linked);
        assert!(plan.iter().any(|op| is_bind_to(op, "/etc/ssl/certs/ca-certificates.crt")));
        assert!(!plan.iter().any(|op| is_bind_to(op, "/usr/lib/ssl/cert.pem")));
    }

    #[test]
    fn a_hidden_file_reached_by_two_names_is_hidden_once() {
        struct VarRun;
        impl HostView for VarRun {
            fn kind(&self, path: &Path) -> Option<PathKind> {
                if path == Path::new("/var/run/docker.sock") { Some(PathKind::File) } else { host(path) }
            }
            fn canonical(&self, path: &Path) -> PathBuf {
                match path.strip_prefix("/var/run") {
                    Ok(rest) => Path::new("/run").join(rest),
                    Err(_) => path.to_path_buf(),
                }
            }
        }
        let plan = mount_plan(&spec(), &VarRun);
        let binds =
            plan.iter().filter(|op| is_bind_to(op, "/run/docker.sock") || is_bind_to(op, "/var/run/docker.sock"));
        assert_eq!(binds.count(), 1);
    }

    #[test]
    fn resolv_conf_linked_into_a_hidden_run_is_recreated_there() {
        struct Resolved;
        impl HostView for Resolved {
            fn kind(&self, path: &Path) -> Option<PathKind> {
                match path.to_str().unwrap() {
                    "/run" | "/var/run" => Some(PathKind::Dir),
                    "/run/systemd/resolve/stub-resolv.conf" => Some(PathKind::File),
                    p => host(Path::new(p)),
                }
            }
            fn canonical(&self, path: &Path) -> PathBuf {
                match path.to_str().unwrap() {
                    "/etc/resolv.conf" => PathBuf::from("/run/systemd/resolve/stub-resolv.conf"),
                    "/var/run" => PathBuf::from("/run"),
                    p => PathBuf::from(p),
                }
            }
        }
        let mut s = spec();
        s.fs.hide = default_hidden_paths(Path::new("/root"), Path::new("/root/.authsome"), 0);
        let plan = mount_plan(&s, &Resolved);
        let run_tmpfs = position(
            &plan,
            |op| matches!(op, MountOp::Tmpfs { target, read_only: false, .. } if target == Path::new("/run")),
        );
        let rebind = position(&plan, |op| is_bind_to(op, "/run/systemd/resolve/stub-resolv.conf"));
        let sealed =
            position(&plan, |op| matches!(op, MountOp::MakeReadOnly { target } if target == Path::new("/run")));
        assert!(run_tmpfs < rebind && rebind < sealed);
        assert!(matches!(
            &plan[rebind],
            MountOp::Bind { source: Source::Staged(Staged::ResolvConf), read_only: true, .. }
        ));
        let run_mounts =
            plan.iter().filter(|op| matches!(op, MountOp::Tmpfs { target, .. } if target == Path::new("/run"))).count();
        assert_eq!(run_mounts, 1, "/var/run is the same directory");
        let under_run = plan.iter().filter(|op| matches!(op, MountOp::Tmpfs { target, .. } | MountOp::Bind { target, .. } if target.starts_with("/run"))).count();
        assert_eq!(under_run, 2, "/run itself and the resolv.conf rebind; nothing hidden inside /run again");
    }

    #[test]
    fn resolv_conf_and_hosts_are_staged_bound_and_unlinked() {
        let mut s = spec();
        s.hosts_file = Some("127.0.0.1 localhost\n".into());
        let plan = mount_plan(&s, &host);
        let write = position(&plan, |op| matches!(op, MountOp::WriteStaged { which: Staged::ResolvConf, .. }));
        let bind = position(&plan, |op| is_bind_to(op, "/etc/resolv.conf"));
        let unlink =
            position(&plan, |op| matches!(op, MountOp::Unlink { path } if path.ends_with(".authsome-resolv.conf")));
        assert!(write < bind && bind < unlink);
        assert!(plan.iter().any(|op| is_bind_to(op, "/etc/hosts")));
        let shm = position(&plan, |op| matches!(op, MountOp::Tmpfs { target, .. } if target == Path::new("/dev/shm")));
        assert!(shm < write, "staging lives in the sandbox's own /dev/shm");
        assert_eq!(staging_dir(&plan), Some(Path::new("/dev/shm")));
        // without a hosts file, /etc/hosts is left alone
        assert!(!mount_plan(&spec(), &host).iter().any(|op| is_bind_to(op, "/etc/hosts")));
    }

    #[test]
    fn hidden_paths_get_empty_mounts_and_missing_ones_are_skipped() {
        let plan = mount_plan(&spec(), &host);
        assert!(plan.iter().any(|op| matches!(op, MountOp::Tmpfs { target, read_only: true, .. } if target == Path::new("/home/u/.authsome"))));
        assert!(plan.iter().any(|op| matches!(op, MountOp::Bind { source: Source::Staged(Staged::Empty), target, read_only: true, .. } if target == Path::new("/run/docker.sock"))));
        assert!(!plan.iter().any(|op| matches!(op, MountOp::Tmpfs { target, .. } | MountOp::Bind { target, .. } if target.starts_with("/home/u/.aws"))));
    }

    /// With the cwd exactly /tmp the host's /tmp is bound (a private tmpfs there would shadow
    /// the bind), and paths hidden inside it are still hidden.
    #[test]
    fn a_tmp_cwd_binds_the_hosts_tmp_and_still_hides_inside_it() {
        let mut s = spec();
        s.cwd = PathBuf::from("/tmp");
        s.fs.hide.push(PathBuf::from("/tmp/vault"));
        struct Tmp;
        impl HostView for Tmp {
            fn kind(&self, path: &Path) -> Option<PathKind> {
                if path == Path::new("/tmp") || path == Path::new("/tmp/vault") {
                    Some(PathKind::Dir)
                } else {
                    host(path)
                }
            }
            fn canonical(&self, path: &Path) -> PathBuf {
                path.to_path_buf()
            }
        }
        let plan = mount_plan(&s, &Tmp);
        assert!(!plan.iter().any(|op| matches!(op, MountOp::Tmpfs { target, .. } if target == Path::new("/tmp"))));
        let bind = position(&plan, |op| is_bind_to(op, "/tmp"));
        let hide = position(
            &plan,
            |op| matches!(op, MountOp::Tmpfs { target, read_only: true, .. } if target == Path::new("/tmp/vault")),
        );
        assert!(bind < hide);
    }

    #[test]
    fn writable_paths_under_the_private_tmp_are_recreated_there() {
        let mut s = spec();
        s.cwd = "/tmp/work".into();
        s.fs.hide.push("/tmp/work/.env-dir".into());
        let plan = mount_plan(&s, &|p: &Path| {
            if p == Path::new("/tmp/work/.env-dir") { Some(PathKind::Dir) } else { host(p) }
        });
        let tmp = position(&plan, |op| matches!(op, MountOp::Tmpfs { target, .. } if target == Path::new("/tmp")));
        let mkdir = position(&plan, |op| matches!(op, MountOp::MkdirAll { path } if path == Path::new("/tmp/work")));
        let bind = position(&plan, |op| is_bind_to(op, "/tmp/work"));
        let hide = position(
            &plan,
            |op| matches!(op, MountOp::Tmpfs { target, .. } if target == Path::new("/tmp/work/.env-dir")),
        );
        assert!(tmp < mkdir && mkdir < bind && bind < hide);
    }

    #[test]
    fn a_cwd_of_root_is_not_made_writable() {
        let mut s = spec();
        s.cwd = "/".into();
        let plan = mount_plan(&s, &host);
        assert!(!plan.iter().any(|op| matches!(op, MountOp::MakeWritable { target } if target == Path::new("/"))));
        assert!(plan.iter().any(|op| matches!(op, MountOp::MakeWritable { target } if target == Path::new("/data"))));
        assert!(matches!(plan.last(), Some(MountOp::Chdir { path }) if path == Path::new("/")));
    }

    #[test]
    fn minimal_dev_is_built_then_made_read_only() {
        let plan = mount_plan(&spec(), &host);
        let dev = position(&plan, |op| matches!(op, MountOp::Tmpfs { target, .. } if target == Path::new("/dev")));
        let null = position(&plan, |op| is_bind_to(op, "/dev/null"));
        let pts = position(&plan, |op| matches!(op, MountOp::Devpts { .. }));
        let ro = position(&plan, |op| matches!(op, MountOp::MakeReadOnly { target } if target == Path::new("/dev")));
        let shm = position(
            &plan,
            |op| matches!(op, MountOp::Tmpfs { target, read_only: false, .. } if target == Path::new("/dev/shm")),
        );
        assert!(dev < null && null < pts && pts < ro && ro < shm);
    }

    #[test]
    fn open_policy_keeps_the_host_tree_but_still_binds_and_hides() {
        let mut s = spec();
        s.fs.open = true;
        let plan = mount_plan(&s, &host);
        assert!(!plan.contains(&MountOp::ReadOnlyAll));
        assert!(!plan.iter().any(|op| matches!(op, MountOp::MakeWritable { .. })));
        assert!(plan.iter().any(|op| is_bind_to(op, "/etc/ssl/certs/ca-certificates.crt")));
        assert!(plan.iter().any(
            |op| matches!(op, MountOp::Tmpfs { target, read_only: true, .. } if target == Path::new("/home/u/.ssh"))
        ));
        let staging = position(
            &plan,
            |op| matches!(op, MountOp::Tmpfs { target, read_only: false, .. } if target == Path::new("/dev/shm")),
        );
        let unmount =
            position(&plan, |op| matches!(op, MountOp::Unmount { target } if target == Path::new("/dev/shm")));
        let last_bind = last_position(&plan, |op| matches!(op, MountOp::Bind { .. }));
        assert!(staging < last_bind && last_bind < unmount);
    }

    #[test]
    fn command_drops_capabilities_last_bounding_set_first() {
        let at = |s: Step| COMMAND_STEPS.iter().position(|x| *x == s).unwrap();
        assert!(at(Step::JoinKeyring) < at(Step::DropBounding));
        assert!(at(Step::NewSession) < at(Step::DropBounding));
        assert!(at(Step::DropBounding) < at(Step::ClearAmbient));
        assert!(at(Step::ClearAmbient) < at(Step::ClearInheritable));
        assert!(at(Step::ClearInheritable) < at(Step::ClearPermitted));
        assert!(at(Step::ClearPermitted) < at(Step::NoNewPrivs));
        assert!(at(Step::NoNewPrivs) < at(Step::Seccomp), "seccomp without CAP_SYS_ADMIN needs no_new_privs");
        assert!(at(Step::Seccomp) < at(Step::WaitRelease), "everything is done before waiting for release");
        assert_eq!(COMMAND_STEPS.last(), Some(&Step::Exec));
    }
}
