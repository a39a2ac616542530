//! authsome-netns: the Linux sandbox mechanics (namespaces, capture sockets, mounts, capability
//! drop). Knows nothing of HTTP, vaults or providers. All `unsafe` lives in `sys`, one
//! `// SAFETY:` line per block. `docs/architecture.md` ("The sandbox") says why it is built so.
//!
//! Linux only: elsewhere the crate is an empty shell ([`maybe_run_helper`] exits 125 in helper
//! mode, the sandbox types are absent).
//!
//! # How the launcher uses it
//!
//! 1. Call [`maybe_run_helper`] first thing in `main`, before any thread or runtime exists.
//! 2. [`Sandbox::spawn`] starts the helper early; [`PendingSandbox::configure`] hands it the
//!    [`SandboxSpec`] and returns once capture and the filesystem policy are in place, with the
//!    [`CaptureSocket`]s ([`Sandbox::start`] does both at once). Any failure: no command runs.
//! 3. Serve the capture sockets (the proxy), then [`Sandbox::release`]: the command executes.
//! 4. [`Sandbox::wait`] gives its [`CommandStatus`]; [`Signaller`] forwards signals meanwhile.
//!    Dropping the [`Sandbox`] kills everything inside.
//!
//! [`probe`] answers `authsome doctor --sandbox`: the host's settings and a live run of `true`.
//! For plain `run` (no sandbox), [`die_with_parent`] ties the child's life to the launcher's.
//!
//! # Process shape
//!
//! ```text
//! launcher (multithreaded; holds the vault and the proxy)
//!  └─ helper: a fresh exec of the launcher's binary (single-threaded, empty environment, every
//!     inherited fd closed but 0/1/2 and its end of a SOCK_SEQPACKET socketpair)
//!       unshare(USER|NET|NS|PID|UTS|IPC); uid/gid map = the caller's own ids (root or not);
//!       user.max_user_namespaces=0 inside; lo up with `local 0.0.0.0/0` and `local ::/0`;
//!       capture listeners bound; mount policy applied; command resolved on the spec's PATH
//!       → Ready + the listeners' fds (SCM_RIGHTS)
//!       fork → init, PID 1 of the new pid namespace: its own /proc (/proc/sys read-only)
//!                fork → command: signals reset, own session unless stdin is a terminal,
//!                       fresh session keyring, fds ≥ 3 sealed, capabilities dropped
//!                       (bounding, ambient, inheritable, permitted), no_new_privs, seccomp;
//!                       then it blocks on a pipe the helper holds
//!       ← Release: the helper writes one byte and the command execs with exactly `spec.env`
//!         (end-of-file instead, because the helper or launcher died: it never runs)
//!       init reaps zombies, forwards signals, reports Started and Exit(status); the helper
//!       forwards signals to init and kills the namespace when the launcher's socket closes
//! ```
//!
//! # What the launcher can rely on
//!
//! - **Capture sockets are blocking**: make them non-blocking before `tokio::net::*::from_std`.
//!   For TCP, `local_addr()` of an accepted stream is the original destination
//!   (`[::ffff:1.2.3.4]:443` for IPv4). Ports without a listener refuse at once.
//! - **DNS answers must leave from the queried address**: an IPv6 client's source is `::1`, so
//!   reply with `sendmsg` and the received `IP_PKTINFO`/`IPV6_PKTINFO` (enabled on the sockets,
//!   with `IP_FREEBIND` on the IPv6 one); glibc's connected resolver drops anything else.
//! - **Filesystem**: see [`FsPolicy`], [`HomePolicy`] and the next section. The host's
//!   `/etc/resolv.conf`, `/etc/hosts` and CA bundles are never modified; the sandbox sees
//!   replacements.
//! - **Root callers** keep uid 0 inside (files written in writable paths are root's, as without
//!   a sandbox) but hold no capability and run with `no_new_privs`. Because some checks look at
//!   the uid rather than at capabilities, `/proc/sys` and its kin are read-only for everyone,
//!   `/run` and `/var/run` are hidden for everyone, and [`default_hidden_paths`] hides
//!   `/etc/shadow`, `/etc/gshadow` and `/etc/ssh` for uid 0. Root can still *read* what root
//!   reads: running as a normal user is the stronger sandbox.
//! - **Namespaces**: user, network, mount, pid, UTS and IPC (host SysV IPC objects and the
//!   hostname are out of reach). No nested user namespaces (`unshare -Ur`, bubblewrap and
//!   Chromium's sandbox fail inside).
//! - **Seccomp** (a deny-list): `ioctl` TIOCSTI/TIOCLINUX, setting a set-user-ID or
//!   set-group-ID bit (the `chmod` family; `open`, `openat`, `creat`, `mknod` creating with
//!   them) → EPERM; `openat2` and `io_uring_setup` → ENOSYS (uninspectable, libraries fall
//!   back); the x32 ABI → EPERM. Fails closed: no filter table for the architecture (only
//!   x86-64 and aarch64 have one) → `start` fails at [`Step::Seccomp`]; a kernel that rejects
//!   the filter → `release` fails.
//! - **Terminal**: with a terminal on stdin the command stays in the caller's session and
//!   foreground process group (Ctrl-C, Ctrl-Z, SIGWINCH reach it directly); otherwise it gets a
//!   session of its own. `wait` hands the terminal's foreground back if the command took it.
//!   The caller's own pty shows in the sandbox's `/dev/pts`, no other host terminal does.
//! - **Signals**: [`Sandbox::signal`] goes helper → init → command; terminal-generated signals
//!   are not forwarded twice. If the launcher dies (even by SIGKILL) the sandbox dies with it.
//! - **stdio** are the launcher's, untouched; the helper never writes to them.
//! - **Limits** are the kernel's: one `NAME=value` over 128 KiB makes `release` fail with
//!   [`NamespaceError::Exec`] (E2BIG). The encoded spec may be up to 16 MiB.
//! - **Background processes** of the command die with it (init exits with the command).
//! - **Kernel**: Linux ≥ 5.12 (`mount_setattr`); pidfds and `close_range` when present.
//!
//! # Filesystem policy
//!
//! With `open: false` (the default) everything is read-only (`mount_setattr`, recursive). On
//! top: `writable` paths bound writable (their sub-mounts stay read-only, and so does a path on
//! a host mount that is itself read-only) and `read` paths read-only, shallowest first, so a
//! `--read` inside a writable path (or the reverse) wins. `/tmp`, `/var/tmp` and `/dev/shm` are
//! private unless that very path is writable. `/run` and `/var/run` are hidden for every caller
//! (`connect()` on a Unix socket ignores read-only mounts); a `resolv.conf`/`hosts` that links
//! into them is recreated. `/dev` is minimal (null, zero, full, random, urandom, tty, a new
//! devpts, the fd links), so a root caller cannot write a disk. `resolv.conf`, `hosts` and
//! every [`CA_BUNDLE_PATHS`] entry are bound read-only. `hide` paths go behind an empty
//! read-only tmpfs (directories) or file, last of all. A `hide` path missing at start stays
//! invisible if it appears later when its nearest existing ancestor is a read-only host
//! directory (not a system one like `/etc`, at most 1,024 entries): that ancestor is rebuilt as
//! a read-only tmpfs of its entries minus the hidden ones. Not covered: a missing hidden path
//! whose nearest ancestor is writable or a `--read` bind.
//!
//! **Protected paths inside writable paths.** In every writable root the [`PROTECTED_NAMES`]
//! are read-only. `.git` stays writable (objects, refs, index: `git commit` works) but is
//! *pinned* (bound onto itself, so it cannot be renamed or removed: `EBUSY`; a `rename()`
//! across a pinned boundary fails with `EXDEV`), and its [`GIT_DIR_PROTECTED`] entries are
//! read-only; `worktrees/*` and `modules/*` likewise; a `.git` *file* is read-only and the
//! directories it points to are protected where writable. Repositories below a writable root
//! are found by a bounded breadth-first walk (depth 4, 128 directories, 8,000 entries per root,
//! skipping `node_modules`, `target`, `.venv`, …; submodules named in `.gitmodules` are
//! followed whatever the bounds); their `.git` and protected names are protected and every
//! directory down to them pinned. A protected name that is a symbolic link cannot be pinned:
//! `start` fails at [`Step::ProtectPath`] (ELOOP, naming the path). Opt-out: a path is not
//! protected when it or an ancestor below its writable root is itself in `writable`. `protect`
//! paths are bound read-only in place when they lie in a writable path. Not covered: a *new*
//! repository the command creates, and repositories beyond the walk's bounds.
//!
//! **Placeholders.** A protected name missing at a writable root (and a missing `hooks`,
//! `info`, `commondir` in its `.git`) gets a placeholder on the host before the run, so nothing
//! can be planted there: an empty file (which blocks a directory of that name too), except
//! `.git`, an empty directory (git stops its upward search at an unreadable `.git` file),
//! `hooks`/`info`, empty directories, and `commondir` holding `.`. Each is marked with the
//! `user.authsome.placeholder` xattr, held with a shared `flock` for the run and bound
//! read-only. A *janitor*, a child the helper forks before `unshare` (only when there are
//! placeholders), stays in the host's namespaces holding none of the launcher's fds, and
//! removes each placeholder once the sandbox is gone, only if it is still as made and is still
//! the same inode, and only if it gets the exclusive lock at once: a concurrent sandbox in the
//! same directory shares a marked placeholder and the last to end removes it. So placeholders
//! may outlive [`Sandbox::wait`] by a few milliseconds; killing the janitor (or a crash) leaves
//! them, harmless to git and direnv.
//!
//! `open: true`: the host tree as it is; `resolv.conf`, `hosts`, the CA paths, `hide` and
//! `protect` still apply; `home` and the protected names do not. For a root caller that means
//! the command can write whatever root can: offer it only as an explicit opt-out.
//!
//! # Tests
//!
//! Unit tests check the pure parts (mount plan order, hidden paths, encodings, error → hint,
//! the seccomp filter through a BPF interpreter). `tests/sandbox/` builds real sandboxes: as
//! root it runs every test as root, then again as an unprivileged uid through `setpriv`; it
//! skips, saying why, only when the kernel refuses user namespaces. `benches/start.rs` times a
//! sandboxed `true` against a bare spawn.
#![deny(missing_docs)]

mod codec;
mod defaults;
mod error;
mod plan;
mod proto;
mod spec;

pub use error::{HostFacts, NamespaceError, Step};
pub use proto::CommandStatus;
pub use spec::{
    ALWAYS_CAPTURED_TCP, CA_BUNDLE_PATHS, CA_CERT_DIR, CA_JAVA_STORE, FsPolicy, GIT_DIR_PROTECTED, HOME_SECRETS,
    HOME_TOOLCHAINS, HOST_SERVICE_SOCKETS, HomePolicy, PROTECTED_NAMES, SandboxSpec, default_hidden_paths,
    default_home_toolchains, sandbox_ca_bundle_path,
};

#[cfg(target_os = "linux")]
mod channel;
#[cfg(target_os = "linux")]
mod helper;
#[cfg(target_os = "linux")]
mod init;
#[cfg(target_os = "linux")]
mod janitor;
#[cfg(target_os = "linux")]
mod mounts;
#[cfg(target_os = "linux")]
mod net;
#[cfg(target_os = "linux")]
mod placeholders;
#[cfg(target_os = "linux")]
mod probe;
#[cfg(target_os = "linux")]
mod sandbox;
#[cfg(target_os = "linux")]
mod seccomp;
#[cfg(target_os = "linux")]
mod signals;
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
mod sys;

#[cfg(target_os = "linux")]
pub use probe::{ProbeReport, probe, probe_with};
#[cfg(target_os = "linux")]
pub use sandbox::{CaptureSocket, PendingSandbox, Sandbox, Signaller};
#[cfg(target_os = "linux")]
pub use sys::die_with_parent;

/// The capture of `spec` in the CURRENT network namespace, for a process that already owns
/// one (the container backend's sidecar, started with `--network none` and `NET_ADMIN`):
/// `lo` up, every destination made local, and the capture listeners bound, exactly as the
/// helper does inside a namespace it created. Call it before any other thread exists.
#[cfg(target_os = "linux")]
pub fn capture_current_namespace(spec: &SandboxSpec) -> Result<Vec<CaptureSocket>, NamespaceError> {
    let failed = |f: error::Failure| NamespaceError::Setup { step: f.step, detail: f.detail, source: f.source };
    let ipv6 = net::configure_loopback().map_err(failed)?;
    let sockets = net::bind_capture(spec, ipv6).map_err(failed)?;
    Ok(sockets.into_iter().map(|(info, fd)| CaptureSocket::from_bound(info, fd)).collect())
}

/// `argv[1]` that puts the binary in helper mode.
pub const HELPER_ARG: &str = "__authsome-sandbox-helper";

/// Call first thing in `main`, before any thread or runtime exists: if `argv[1]` is
/// [`HELPER_ARG`], this process is a sandbox helper, and this never returns.
pub fn maybe_run_helper() {
    let mut args = std::env::args_os();
    if args.nth(1).as_deref() != Some(std::ffi::OsStr::new(HELPER_ARG)) {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        let fd = args.next().and_then(|a| a.to_str().and_then(|s| s.parse::<i32>().ok()));
        let code = match fd {
            Some(fd) if fd > 2 => helper::run(fd),
            _ => 125,
        };
        std::process::exit(code);
    }
    #[cfg(not(target_os = "linux"))]
    std::process::exit(125);
}
