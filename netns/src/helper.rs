//! The helper: a fresh, single-threaded exec of the launcher's binary that builds the sandbox.
//!
//! ```text
//! helper (host pid ns)      unshare(USER|NET|NS|PID|UTS|IPC) → maps → lo + routes → listeners → mounts
//!                           → Ready(fds) → wait for Release → fork → supervise init
//!   init (pid 1 inside)     mount /proc → fork command → reap, forward signals → Exit(status)
//!     command               keyring, caps, no_new_privs, seccomp → execve
//! ```
//! Everything before `Ready` fails closed: the launcher gets `Failed{step, errno}` and no command
//! runs. Only signals sent on purpose (`SI_USER`, e.g. `Sandbox::signal`) are forwarded down the
//! chain; terminal-generated ones reach the command directly through its process group.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::{SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Pid, getegid, geteuid, isatty, pipe2};

use crate::channel::Channel;
use crate::error::{Failure, Step};
use crate::proto::{FromHelper, MAX_SPEC, ToHelper};
use crate::signals::{blocked_signals, sent_by_a_process};
use crate::spec::SandboxSpec;
use crate::sys::{self, Forked, PreparedCommand};

/// Helper entry point; returns the process exit code.
pub fn run(sock: RawFd) -> i32 {
    if sys::close_fds_except(sock).is_err() {
        return 125;
    }
    let chan = Channel::from_fd(sys::adopt_fd(sock));
    if fcntl(chan.as_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).is_err() {
        return 125;
    }
    if sigprocmask(SigmaskHow::SIG_BLOCK, Some(&blocked_signals()), None).is_err() {
        return 125;
    }
    let spec = match receive_spec(&chan) {
        Ok(Some(spec)) => spec,
        Ok(None) => return 125,
        Err(f) => {
            let _ = chan.send(&f.message_for_launcher().encode(), &[]);
            return 125;
        }
    };
    // placeholders made (or shared) on the host for the run: leased while it lasts, removed
    // by the janitor after it, however it ends
    let mut held = crate::placeholders::Placeholders::default();
    let prepared = match setup(&spec, &mut held) {
        Ok(p) => p,
        Err(f) => {
            let _ = chan.send(&f.message_for_launcher().encode(), &[]);
            return 125;
        }
    };
    run_prepared(&chan, &spec, prepared, &mut held.leases)
}

fn run_prepared(
    chan: &Channel,
    spec: &SandboxSpec,
    prepared: Prepared,
    leases: &mut Vec<crate::placeholders::Lease>,
) -> i32 {
    let infos = prepared.sockets.iter().map(|(info, _)| *info).collect();
    let raw: Vec<RawFd> = prepared.sockets.iter().map(|(_, fd)| fd.as_raw_fd()).collect();
    if chan.send(&FromHelper::Ready(infos).encode(), &raw).is_err() {
        return 125;
    }
    let Prepared { sockets, command, terminal: _terminal } = prepared;
    drop(sockets); // the launcher owns the listeners now

    // Build PID 1 and the command right away, while the launcher starts its proxy: the command
    // waits, capabilities already dropped, on `release` until we pass on the launcher's Release.
    let (release_read, release_write) = match pipe2(OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => {
            let _ = chan.send(&Failure::new(Step::ForkInit, e, "").message_for_launcher().encode(), &[]);
            return 125;
        }
    };
    if let Err(f) = ensure_single_threaded() {
        let _ = chan.send(&f.message_for_launcher().encode(), &[]);
        return 125;
    }
    let init = match sys::fork() {
        Err(e) => {
            let _ = chan.send(&Failure::new(Step::ForkInit, e, "").message_for_launcher().encode(), &[]);
            return 125;
        }
        Ok(Forked::Child) => {
            drop(release_write); // the command must see EOF if the helper dies
            // The leases are the helper's: init would keep them alive after a SIGKILLed helper
            // and block their removal. Close our copies without unlocking (the lock belongs to
            // the open file, which the helper still holds).
            for lease in leases.drain(..) {
                let raw = lease.as_raw_fd();
                std::mem::forget(lease);
                drop(sys::adopt_fd(raw));
            }
            crate::init::run(chan, &command, release_read, &spec.program)
        }
        Ok(Forked::Parent { child }) => Pid::from_raw(child),
    };
    drop(release_read);

    match chan.recv() {
        Ok(Some((msg, _))) if ToHelper::decode(&msg) == Ok(ToHelper::Release) => {
            // EPIPE if init already failed: its Failed message is on the way to the launcher
            let _ = nix::unistd::write(&release_write, b"R");
            drop(release_write);
            supervise(chan, init)
        }
        _ => {
            // the launcher went away or said something else: the command never runs
            let _ = kill(init, Signal::SIGKILL);
            wait_exit_code(init);
            125
        }
    }
}

fn receive_spec(chan: &Channel) -> Result<Option<SandboxSpec>, Failure> {
    let bad =
        |what: &str| Failure::new(Step::ReadSpec, io::Error::new(io::ErrorKind::InvalidData, what.to_owned()), "");
    let Some((first, _)) = chan.recv().map_err(|e| Failure::new(Step::ReadSpec, e, ""))? else { return Ok(None) };
    let len = match ToHelper::decode(&first) {
        Ok(ToHelper::SpecBegin { len }) if (len as usize) <= MAX_SPEC => len as usize,
        _ => return Err(bad("expected the spec header")),
    };
    let mut bytes = Vec::with_capacity(len);
    while bytes.len() < len {
        let Some((msg, _)) = chan.recv().map_err(|e| Failure::new(Step::ReadSpec, e, ""))? else { return Ok(None) };
        match ToHelper::decode(&msg) {
            Ok(ToHelper::SpecData(d)) if bytes.len() + d.len() <= len => bytes.extend_from_slice(&d),
            _ => return Err(bad("bad spec chunk")),
        }
    }
    SandboxSpec::decode(&bytes).map(Some).map_err(|e| bad(&e.to_string()))
}

struct Prepared {
    sockets: Vec<(crate::proto::SocketInfo, OwnedFd)>,
    command: PreparedCommand,
    /// The reserved pty under the user's terminal in the sandbox's `/dev/pts`: held (by the
    /// helper, close-on-exec) until the run ends, or its mount point would vanish.
    terminal: Vec<OwnedFd>,
}

fn setup(spec: &SandboxSpec, held: &mut crate::placeholders::Placeholders) -> Result<Prepared, Failure> {
    spec.validate().map_err(|e| Failure::new(Step::ReadSpec, io::Error::new(io::ErrorKind::InvalidInput, e), ""))?;
    let (uid, gid) = (geteuid().as_raw(), getegid().as_raw());
    let last_cap = read_last_cap();
    // Fail closed before touching anything: no filter for this architecture, no command.
    let seccomp = crate::seccomp::program().ok_or_else(|| {
        Failure::new(
            Step::Seccomp,
            io::Error::from_raw_os_error(libc::ENOSYS),
            "no seccomp filter for this architecture",
        )
    })?;
    let plan = crate::plan::mount_plan(spec, &crate::mounts::HostFs).map_err(|e| {
        Failure::new(
            Step::ProtectPath,
            io::Error::from_raw_os_error(libc::ELOOP),
            format!("{} is a symbolic link in a writable path; name it with --writable to opt out", e.0.display()),
        )
    })?;
    // a janitor when we make placeholders, or share another sandbox's (marked ones)
    let needs_janitor = plan.iter().any(|op| match op {
        crate::plan::MountOp::Placeholder { .. } => true,
        // a protected path that exists now may be another sandbox's placeholder, or be removed
        // by its janitor before our mount: ours re-makes and removes it then
        crate::plan::MountOp::BindInPlace { .. } => true,
        _ => false,
    });
    if needs_janitor {
        held.janitor = Some(
            crate::janitor::Janitor::spawn()
                .map_err(|e| Failure::new(Step::ProtectPath, e, "starting the placeholder janitor"))?,
        );
    }

    // UTS and IPC too: the host's SysV IPC objects and hostname stay out of reach.
    unshare(
        CloneFlags::CLONE_NEWUSER
            | CloneFlags::CLONE_NEWNET
            | CloneFlags::CLONE_NEWNS
            | CloneFlags::CLONE_NEWPID
            | CloneFlags::CLONE_NEWUTS
            | CloneFlags::CLONE_NEWIPC,
    )
    .map_err(|e| Failure::new(Step::Unshare, e, ""))?;
    // Map our own ids to themselves: inside, the command sees the caller's uid (0 for root).
    fs::write("/proc/self/setgroups", "deny").map_err(|e| Failure::new(Step::SetGroups, e, ""))?;
    fs::write("/proc/self/uid_map", format!("{uid} {uid} 1\n")).map_err(|e| Failure::new(Step::UidMap, e, ""))?;
    fs::write("/proc/self/gid_map", format!("{gid} {gid} 1\n")).map_err(|e| Failure::new(Step::GidMap, e, ""))?;
    // No user namespaces below ours: the command cannot build its own (nested `unshare -Ur`
    // fails), which also keeps the kernel's user-namespace attack surface out of its reach.
    // The limit is per user namespace and checked at every level above a new one.
    fs::write("/proc/sys/user/max_user_namespaces", "0").map_err(|e| Failure::new(Step::LimitNesting, e, ""))?;

    let ipv6 = crate::net::configure_loopback()?;
    let sockets = crate::net::bind_capture(spec, ipv6)?;
    let terminal = crate::mounts::execute(&plan, spec, held)?;

    let path = resolve_command(&spec.program, &spec.env).ok_or_else(|| {
        Failure::new(Step::ResolveCommand, io::Error::from_raw_os_error(libc::ENOENT), program_name(spec))
    })?;
    let mut argv: Vec<&OsStr> = vec![spec.program.as_os_str()];
    argv.extend(spec.args.iter().map(OsString::as_os_str));
    let env: Vec<(&OsStr, &OsStr)> = spec.env.iter().map(|(k, v)| (k.as_os_str(), v.as_os_str())).collect();
    // A command on the user's terminal keeps the session so Ctrl-C and job control reach it
    // directly; otherwise it gets a session of its own and no controlling terminal.
    let new_session = !isatty(io::stdin()).unwrap_or(false);
    let command = PreparedCommand::new(&path, &argv, &env, last_cap, new_session, seccomp)
        .map_err(|e| Failure::new(Step::ResolveCommand, e, program_name(spec)))?;
    Ok(Prepared { sockets, command, terminal })
}

fn program_name(spec: &SandboxSpec) -> String {
    spec.program.to_string_lossy().into_owned()
}

fn read_last_cap() -> u32 {
    fs::read_to_string("/proc/sys/kernel/cap_last_cap").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(40)
}

/// `execvp`-style lookup with the command's own `PATH`, in the sandbox's view of the filesystem.
///
/// A name with a slash is taken as is if it exists at all, and a `PATH` search settles for an
/// existing file without the exec bit when no executable one is found: `execve` then reports
/// why it cannot run (EACCES → 126), as outside the sandbox. Only a command that exists nowhere
/// is "not found" (127).
pub(crate) fn resolve_command(program: &OsStr, env: &[(OsString, OsString)]) -> Option<PathBuf> {
    let is_exec = |p: &Path| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    let is_file = |p: &Path| fs::metadata(p).is_ok_and(|m| m.is_file());
    if program.as_bytes().contains(&b'/') {
        let p = PathBuf::from(program);
        return fs::metadata(&p).is_ok().then_some(p);
    }
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| OsString::from("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"));
    let candidates: Vec<PathBuf> = path
        .as_bytes()
        .split(|&b| b == b':')
        .map(|dir| {
            let dir = if dir.is_empty() { Path::new(".") } else { Path::new(OsStr::from_bytes(dir)) };
            dir.join(program)
        })
        .collect();
    let found = candidates.iter().find(|c| is_exec(c)).or_else(|| candidates.iter().find(|c| is_file(c)));
    found.cloned()
}

/// A runtime or library thread left behind would make `fork` unsafe: check before forking.
fn ensure_single_threaded() -> Result<(), Failure> {
    let stat = fs::read_to_string("/proc/self/stat").map_err(|e| Failure::new(Step::ForkInit, e, ""))?;
    let threads =
        stat.rsplit(')').next().and_then(|rest| rest.split_whitespace().nth(17)).and_then(|n| n.parse::<u32>().ok());
    match threads {
        Some(1) => Ok(()),
        other => Err(Failure::new(
            Step::ForkInit,
            io::Error::other(format!("helper has {other:?} threads")),
            "the helper must be single-threaded",
        )),
    }
}

/// The helper after the fork: pass on deliberate signals, kill everything if the launcher
/// vanishes, and exit with init's status.
fn supervise(chan: &Channel, init: Pid) -> i32 {
    let Ok(sfd) = SignalFd::with_flags(&blocked_signals(), SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK) else {
        let _ = kill(init, Signal::SIGKILL);
        return wait_exit_code(init);
    };
    loop {
        let mut fds = [PollFd::new(sfd.as_fd(), PollFlags::POLLIN), PollFd::new(chan.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        }
        let signal_ready = fds[0].revents().is_some_and(|r| !r.is_empty());
        let chan_ready = fds[1].revents().is_some_and(|r| !r.is_empty());
        if signal_ready {
            while let Ok(Some(info)) = sfd.read_signal() {
                let signo = info.ssi_signo as i32;
                if signo == libc::SIGCHLD {
                    match waitpid(init, Some(WaitPidFlag::WNOHANG)) {
                        Ok(WaitStatus::Exited(_, code)) => return code,
                        Ok(WaitStatus::Signaled(_, sig, _)) => return 128 + sig as i32,
                        _ => {}
                    }
                } else if sent_by_a_process(info.ssi_code)
                    && let Ok(sig) = Signal::try_from(signo)
                {
                    let _ = kill(init, sig);
                }
            }
        }
        if chan_ready {
            match chan.recv() {
                Ok(Some(_)) => {} // nothing is expected after Release; ignore
                _ => break,       // launcher gone: the sandbox goes with it
            }
        }
    }
    let _ = kill(init, Signal::SIGKILL);
    wait_exit_code(init)
}

fn wait_exit_code(pid: Pid) -> i32 {
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, sig, _)) => return 128 + sig as i32,
            Err(nix::errno::Errno::EINTR) | Ok(_) => continue,
            Err(_) => return 125,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_finds_commands_on_the_given_path_only() {
        let env = vec![(OsString::from("PATH"), OsString::from("/nonexistent:/bin:/usr/bin"))];
        let sh = resolve_command(OsStr::new("sh"), &env).expect("sh on /bin or /usr/bin");
        assert!(sh.ends_with("sh"));
        assert_eq!(resolve_command(OsStr::new("definitely-not-a-command-xyz"), &env), None);
        let empty_path = vec![(OsString::from("PATH"), OsString::from("/nonexistent"))];
        assert_eq!(resolve_command(OsStr::new("sh"), &empty_path), None);
        assert_eq!(resolve_command(OsStr::new("/bin/sh"), &empty_path), Some(PathBuf::from("/bin/sh")));
        // exists but is not executable: execve says why (EACCES, 126), not "not found" (127)
        assert_eq!(resolve_command(OsStr::new("/etc/passwd"), &empty_path), Some(PathBuf::from("/etc/passwd")));
        assert_eq!(resolve_command(OsStr::new("/nonexistent/x"), &empty_path), None);
    }

    #[test]
    fn resolve_prefers_an_executable_and_falls_back_to_a_non_executable_file() {
        use std::os::unix::fs::PermissionsExt;
        let root = std::env::temp_dir().join(format!("authsome-resolve-{}", std::process::id()));
        let (first, second) = (root.join("a"), root.join("b"));
        fs::create_dir_all(&first).unwrap();
        fs::create_dir_all(&second).unwrap();
        let write = |p: &Path, mode: u32| {
            fs::write(p, "#!/bin/sh\n").unwrap();
            fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
        };
        write(&first.join("tool"), 0o644);
        let path = std::env::join_paths([&first, &second]).unwrap();
        let env = vec![(OsString::from("PATH"), path)];
        assert_eq!(resolve_command(OsStr::new("tool"), &env), Some(first.join("tool")));
        write(&second.join("tool"), 0o755);
        assert_eq!(resolve_command(OsStr::new("tool"), &env), Some(second.join("tool")));
        fs::remove_dir_all(&root).unwrap();
    }
}
