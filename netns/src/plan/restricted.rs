//! The restricted plan (`FsPolicy { open: false }`): read-only host, fresh `/tmp`, `/var/tmp`,
//! `/dev`, `/dev/shm` and (optionally) home, the launcher's binds on top, the protections inside
//! the writable ones, then the trust store and the hides. Order rules: see the parent module.

use std::path::{Path, PathBuf};

use super::protect::{self, Protection, Unprotectable};
use super::rebuild;
use super::{Builder, DEV_NODES, HostView, MountOp, PathKind, RESTRICTED_STAGING, Source, Staged, staged_name};
use crate::spec::{HomePolicy, SandboxSpec};

/// Directories that hold host service sockets (`connect()` ignores read-only mounts): hidden for
/// every caller, with the `resolv.conf`/`hosts` the command needs recreated inside.
pub const SOCKET_DIRS: &[&str] = &["/run", "/var/run"];

/// Terminals numbered this high are not shown inside (reserving one allocates every pty below it).
const MAX_RESERVED_PTY: u32 = 256;

/// World-writable host directories replaced by a private tmpfs (unless named writable).
const PRIVATE_TMP: &[&str] = &["/tmp", "/var/tmp"];

/// One launcher bind: a host path shown at its own path, writable or read-only.
struct HostBind {
    path: PathBuf,
    kind: PathKind,
    index: usize,
    writable: bool,
}

/// The writable paths: `fs.writable`, deduplicated. The cwd is writable only if listed.
fn writable_paths(spec: &SandboxSpec) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = Vec::new();
    for p in &spec.fs.writable {
        if !paths.contains(p) {
            paths.push(p.clone());
        }
    }
    paths
}

pub(super) fn restricted_plan(spec: &SandboxSpec, kind: &dyn HostView) -> Result<Vec<MountOp>, Unprotectable> {
    let mut b = Builder::new(spec, kind);
    let writable = writable_paths(spec);
    let protections = protect::protections(&writable, &spec.fs.protect, kind)?;
    for p in &protections.list {
        if let Protection::Placeholder { path, kind, contents } = p {
            b.ops.push(MountOp::Placeholder { path: path.clone(), kind: *kind, contents });
        }
    }

    let ca = b.open_ca(spec);
    let dev: Vec<(&str, usize)> = DEV_NODES
        .iter()
        .filter_map(|n| {
            let path = Path::new("/dev").join(n);
            (kind.kind(&path) == Some(PathKind::File)).then(|| (*n, b.open_host(&path, PathKind::File)))
        })
        .collect();
    // The user's terminal, shown at its own path in the sandbox's devpts: `tty`/`ttyname` find
    // the command's stdin there. Only that one pty: the host's other terminals stay out of reach.
    let terminal = kind
        .terminal()
        .filter(|n| *n < MAX_RESERVED_PTY)
        .map(|n| (n, b.open_host(&Path::new("/dev/pts").join(n.to_string()), PathKind::File)));

    // The launcher's binds, in mount order: shallowest first, writable after read-only at one path.
    let mut wanted: Vec<(PathBuf, Option<PathKind>, bool)> = Vec::new();
    for p in &writable {
        wanted.push((p.clone(), Some(kind.kind(p).unwrap_or(PathKind::Dir)), true));
    }
    for p in &spec.fs.read {
        wanted.push((p.clone(), Some(kind.kind(p).unwrap_or(PathKind::Dir)), false));
    }
    let home = match &spec.fs.home {
        HomePolicy::Private { path, read_only } if kind.kind(path) == Some(PathKind::Dir) => {
            for p in read_only {
                if p.starts_with(path) && p != path {
                    wanted.push((p.clone(), kind.kind(p), false)); // missing toolchains are skipped
                }
            }
            Some(path.clone())
        }
        _ => None,
    };
    // The working directory stays visible (read-only unless writable) when a fresh mount would
    // otherwise replace it: a cwd in a private home, /tmp or /var/tmp, but not those themselves.
    let fresh_roots = PRIVATE_TMP.iter().map(PathBuf::from).chain(home.clone());
    let cwd_in_fresh = fresh_roots.into_iter().any(|f| spec.cwd.starts_with(&f) && spec.cwd != f);
    let cwd_bound = wanted.iter().any(|(p, _, _)| spec.cwd.starts_with(p));
    if cwd_in_fresh && !cwd_bound && kind.kind(&spec.cwd) == Some(PathKind::Dir) {
        wanted.push((spec.cwd.clone(), Some(PathKind::Dir), false));
    }
    wanted.retain(|(_, k, _)| k.is_some());
    wanted.sort_by_key(|(p, _, w)| (p.components().count(), *w));
    let mut binds: Vec<HostBind> = Vec::new();
    for (path, k, writable) in wanted {
        let k = k.unwrap_or(PathKind::Dir);
        // the same path twice: a writable entry wins over a read-only one
        if let Some(existing) = binds.iter_mut().find(|x| x.path == path) {
            existing.writable |= writable;
            continue;
        }
        let index = b.open_host(&path, k);
        binds.push(HostBind { path, kind: k, index, writable });
    }
    // a home named as a bind itself is shown as that bind, not replaced
    let home = home.filter(|h| !binds.iter().any(|x| x.path == *h));

    b.ops.push(MountOp::ReadOnlyAll);
    // A bind of exactly /tmp means the host's /tmp: a private tmpfs there would shadow the bind
    // (a magic-link bind source resolves to whatever is mounted on top of it).
    let mut fresh: Vec<PathBuf> = vec![PathBuf::from("/dev")];
    for tmp in PRIVATE_TMP {
        // /tmp always exists; /var/tmp may not (a tmpfs needs a mount point)
        let exists = *tmp == "/tmp" || kind.kind(Path::new(tmp)) == Some(PathKind::Dir);
        if exists && !binds.iter().any(|x| x.path == Path::new(tmp)) {
            b.ops.push(MountOp::Tmpfs { target: tmp.into(), mode: 0o1777, read_only: false });
            fresh.push(PathBuf::from(tmp));
        }
    }
    minimal_dev(&mut b, &dev, terminal);
    b.stage(Path::new(RESTRICTED_STAGING), spec);
    if let Some(home) = &home {
        if fresh.iter().any(|f| home.starts_with(f)) {
            b.ops.push(MountOp::MkdirAll { path: home.clone() }); // a home under /var/tmp…
        }
        // empty and writable (caches, state), the caller's own, gone after the run
        b.ops.push(MountOp::Tmpfs { target: home.clone(), mode: 0o700, read_only: false });
        fresh.push(home.clone());
    }

    let under_fresh =
        |path: &Path, binds: &[HostBind]| fresh.iter().any(|f| path.starts_with(f)) && !covered(path, binds);
    // hidden paths that do not exist yet must not appear during the run: rebuild their parent
    // (only read-only host directories; the launcher's binds and our tmpfs decide the rest)
    let skip = |dir: &Path| covered(dir, &binds) || fresh.iter().any(|f| dir.starts_with(f));
    for (n, dir) in rebuild::directories(&spec.fs.hide, kind, &skip).iter().enumerate() {
        rebuild::rebuild(&mut b, dir, n, &spec.fs.hide);
    }
    for (i, x) in binds.iter().enumerate() {
        if under_fresh(&x.path, &binds[..i]) {
            match x.kind {
                PathKind::Dir => b.ops.push(MountOp::MkdirAll { path: x.path.clone() }),
                PathKind::File => {
                    if let Some(parent) = x.path.parent() {
                        b.ops.push(MountOp::MkdirAll { path: parent.to_path_buf() });
                    }
                    b.ops.push(MountOp::CreateFile { path: x.path.clone() });
                }
            }
        }
        b.ops.push(MountOp::Bind {
            source: Source::Host(x.index),
            target: x.path.clone(),
            recursive: true,
            read_only: !x.writable,
        });
        if x.writable {
            b.ops.push(MountOp::MakeWritable { target: x.path.clone() });
        }
    }

    // parents first: each mount sits on the one it protects from
    let mut ordered: Vec<&Protection> = protections.list.iter().collect();
    ordered.sort_by_key(|p| p.path().components().count());
    for p in ordered {
        let (target, read_only, placeholder) = match p {
            Protection::Pin(path) => (path, false, false),
            Protection::ReadOnly(path) => (path, true, false),
            Protection::Placeholder { path, .. } => (path, true, true),
        };
        b.ops.push(MountOp::BindInPlace { target: target.clone(), read_only, placeholder });
    }

    b.etc_and_ca_binds(spec, ca);

    for dir in SOCKET_DIRS {
        b.hide(Path::new(dir));
    }
    for path in &spec.fs.hide {
        if under_fresh(path, &binds) {
            continue; // our fresh mounts do not contain it
        }
        b.hide(path);
    }

    for which in [Staged::ResolvConf, Staged::Hosts, Staged::Empty] {
        if which != Staged::Hosts || spec.hosts_file.is_some() {
            b.ops.push(MountOp::Unlink { path: Path::new(RESTRICTED_STAGING).join(staged_name(which)) });
        }
    }
    // a working directory inside a fresh mount that no bind brings in: an empty one
    if under_fresh(&spec.cwd, &binds) && !fresh.contains(&spec.cwd) {
        b.ops.push(MountOp::MkdirAll { path: spec.cwd.clone() });
    }
    b.ops.push(MountOp::Chdir { path: spec.cwd.clone() });
    Ok(b.ops)
}

/// Whether `path` lies inside one of `binds`.
fn covered(path: &Path, binds: &[HostBind]) -> bool {
    binds.iter().any(|x| path.starts_with(&x.path))
}

/// A tmpfs `/dev` with the usual nodes bound from the host, a new devpts, read-only; then a
/// fresh `/dev/shm`.
fn minimal_dev(b: &mut Builder<'_>, dev: &[(&str, usize)], terminal: Option<(u32, usize)>) {
    b.ops.push(MountOp::Tmpfs { target: "/dev".into(), mode: 0o755, read_only: false });
    for (name, index) in dev {
        let target = Path::new("/dev").join(name);
        b.ops.push(MountOp::CreateFile { path: target.clone() });
        b.ops.push(MountOp::Bind { source: Source::Host(*index), target, recursive: false, read_only: false });
    }
    b.ops.push(MountOp::MkdirAll { path: "/dev/pts".into() });
    b.ops.push(MountOp::Devpts { target: "/dev/pts".into() });
    b.ops.push(MountOp::Symlink { link: "/dev/ptmx".into(), target: "pts/ptmx".into() });
    if let Some((index, source)) = terminal {
        let target = Path::new("/dev/pts").join(index.to_string());
        b.ops.push(MountOp::ReservePty { devpts: "/dev/pts".into(), index });
        b.ops.push(MountOp::Bind { source: Source::Host(source), target, recursive: false, read_only: false });
    }
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
}
