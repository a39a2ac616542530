//! The crate's only `unsafe`: raw syscalls that neither `std` nor `nix` wrap safely (or whose
//! safe wrappers allocate where we must not). Each block says why it is sound.
//!
//! The code that runs between `fork` and `execve` of the command ([`exec_command`]) allocates
//! nothing and touches no lock: it reads only what [`PreparedCommand`] computed before the fork.

use std::ffi::{CString, OsStr, c_char, c_int, c_ulong};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::error::Step;
use crate::plan::COMMAND_STEPS;

fn check(ret: c_int) -> io::Result<c_int> {
    if ret < 0 { Err(io::Error::last_os_error()) } else { Ok(ret) }
}

fn check_long(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 { Err(io::Error::last_os_error()) } else { Ok(ret) }
}

/// Close every fd above 2 except `keep`: whatever the launcher leaked to us (fds without
/// close-on-exec) must not stay open in the helper and the sandbox's init for the whole run.
pub fn close_fds_except(keep: RawFd) -> io::Result<()> {
    let close_range = |first: u32, last: u32| {
        if first > last {
            return Ok(());
        }
        // SAFETY: integer arguments only; the fds in the range are ours to close (nothing in this
        // freshly exec'd helper has borrowed them yet).
        check_long(unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) }).map(drop)
    };
    let keep_u32 = u32::try_from(keep).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    match close_range(3, keep_u32.saturating_sub(1)).and_then(|()| close_range(keep_u32 + 1, u32::MAX)) {
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
            // Linux < 5.9: list our fds first (the listing holds one itself), then close them
            let open: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")?
                .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
                .collect();
            for fd in open.into_iter().filter(|&fd| fd > 2 && fd != keep) {
                let _ = nix::unistd::close(fd); // EBADF for the listing's own, already closed, fd
            }
            Ok(())
        }
        other => other,
    }
}

/// Outcome of [`fork`].
#[derive(Debug)]
pub enum Forked {
    Parent { child: libc::pid_t },
    Child,
}

/// `fork(2)`. Only called in the helper, which is single-threaded (checked by the caller).
pub fn fork() -> io::Result<Forked> {
    // SAFETY: the helper process has one thread (no runtime alive, `helper::ensure_single_threaded`),
    // so the child inherits no lock held by a vanished thread.
    let pid = check(unsafe { libc::fork() })?;
    Ok(if pid == 0 { Forked::Child } else { Forked::Parent { child: pid } })
}

/// Leave the process at once, without running atexit handlers or flushing std buffers (which
/// belong to the parent's copy of the process image).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit(2) is always safe to call; it never returns.
    unsafe { libc::_exit(code) }
}

/// Make every mount below `path` read-only in one call (`mount_setattr`, Linux ≥ 5.12).
pub fn mount_read_only_recursive(path: &Path) -> io::Result<()> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    const MOUNT_ATTR_RDONLY: u64 = 1;
    const AT_RECURSIVE: c_int = 0x8000;
    let cpath = CString::new(path.as_os_str().as_bytes())?;
    let attr = MountAttr { attr_set: MOUNT_ATTR_RDONLY, attr_clr: 0, propagation: 0, userns_fd: 0 };
    // SAFETY: cpath is a valid NUL-terminated string and attr a properly sized mount_attr that
    // both outlive the call; the kernel only reads them.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            cpath.as_ptr(),
            AT_RECURSIVE | libc::AT_SYMLINK_NOFOLLOW,
            &attr as *const MountAttr,
            size_of::<MountAttr>(),
        )
    };
    check_long(ret).map(drop)
}

/// A pidfd for `pid` (Linux ≥ 5.3): signals sent through it can never hit a recycled pid.
pub fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes plain integers and returns a new fd or -1.
    let fd = check_long(unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) })?;
    // SAFETY: the kernel just returned this fd to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

pub fn pidfd_send_signal(pidfd: &OwnedFd, sig: i32) -> io::Result<()> {
    // SAFETY: plain integers and a null siginfo pointer (the kernel fills in SI_USER).
    let ret = unsafe {
        libc::syscall(libc::SYS_pidfd_send_signal, pidfd.as_raw_fd(), sig, std::ptr::null::<libc::siginfo_t>(), 0)
    };
    check_long(ret).map(drop)
}

/// Make the command `command` will spawn die (SIGKILL) when this process dies, even by
/// `kill -9`: a plain `run` child outliving its proxy would keep running with placeholders and
/// nowhere to send them, unsupervised.
///
/// The kernel sends `PR_SET_PDEATHSIG` when the *thread* that forked exits, not the process: a
/// spawn from a runtime worker or a short-lived thread would kill the child early. So this
/// refuses to arm unless called on the main thread (which lives as long as the process), and the
/// caller must spawn from that same thread. The hook also checks that the parent did not die
/// between `fork` and `prctl` (then the signal would never come): the child then exits at once.
pub fn die_with_parent(command: &mut std::process::Command) -> io::Result<()> {
    use std::os::unix::process::CommandExt;
    let parent = nix::unistd::getpid().as_raw();
    if nix::unistd::gettid().as_raw() != parent {
        return Err(io::Error::other(
            "a child that dies with its parent must be spawned from the main thread (the death signal follows the spawning thread)",
        ));
    }
    let hook = move || {
        // SAFETY: prctl with integer arguments and getppid take no pointers; both are
        // async-signal-safe, and the closure allocates nothing (it runs between fork and exec).
        let (armed, ppid) = unsafe { (libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0), libc::getppid()) };
        if armed != 0 {
            return Err(io::Error::last_os_error());
        }
        if ppid != parent {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        Ok(())
    };
    // SAFETY: the hook only makes the async-signal-safe calls above and touches no lock or heap.
    unsafe { command.pre_exec(hook) };
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The command process

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Everything the command's process needs after `fork`, computed before it.
#[derive(Debug)]
pub struct PreparedCommand {
    path: CString,
    _argv: Vec<CString>,
    _envp: Vec<CString>,
    argv_ptrs: Vec<*const c_char>,
    envp_ptrs: Vec<*const c_char>,
    last_cap: c_ulong,
    new_session: bool,
    seccomp: Vec<libc::sock_filter>,
}

impl PreparedCommand {
    /// `path` is the resolved executable, `argv[0]` the name the user typed.
    pub fn new(
        path: &Path,
        argv: &[&OsStr],
        env: &[(&OsStr, &OsStr)],
        last_cap: u32,
        new_session: bool,
        seccomp: Vec<libc::sock_filter>,
    ) -> io::Result<Self> {
        if seccomp.is_empty() || seccomp.len() > usize::from(u16::MAX) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "no usable seccomp filter"));
        }
        let cstr = |b: &[u8]| CString::new(b).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte"));
        let path = cstr(path.as_os_str().as_bytes())?;
        let argv: Vec<CString> = argv.iter().map(|a| cstr(a.as_bytes())).collect::<io::Result<_>>()?;
        let envp: Vec<CString> =
            env.iter().map(|(k, v)| cstr(&[k.as_bytes(), b"=", v.as_bytes()].concat())).collect::<io::Result<_>>()?;
        let argv_ptrs = argv.iter().map(|c| c.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
        let envp_ptrs = envp.iter().map(|c| c.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
        Ok(Self {
            path,
            _argv: argv,
            _envp: envp,
            argv_ptrs,
            envp_ptrs,
            last_cap: c_ulong::from(last_cap),
            new_session,
            seccomp,
        })
    }
}

impl PreparedCommand {
    /// Whether the command gets a session of its own (no controlling terminal).
    pub fn new_session(&self) -> bool {
        self.new_session
    }
}

/// Fork the command. The child runs [`COMMAND_STEPS`] and execs; if a step fails it writes
/// `(step code u16, errno i32)` to `report_fd` (close-on-exec, so a successful exec closes it
/// with nothing written) and exits 127.
///
/// Before `execve` the child blocks reading `release_fd`: one byte means go, end-of-file means
/// the helper is gone and the command must never run.
pub fn spawn_command(cmd: &PreparedCommand, report_fd: RawFd, release_fd: RawFd) -> io::Result<libc::pid_t> {
    match fork()? {
        Forked::Parent { child } => Ok(child),
        Forked::Child => exec_command(cmd, report_fd, release_fd),
    }
}

fn exec_command(cmd: &PreparedCommand, report_fd: RawFd, release_fd: RawFd) -> ! {
    for step in COMMAND_STEPS {
        if let Err(errno) = run_command_step(cmd, step, release_fd) {
            let mut msg = [0u8; 6];
            msg[..2].copy_from_slice(&step.code().to_le_bytes());
            msg[2..].copy_from_slice(&errno.to_le_bytes());
            // SAFETY: msg is a live stack buffer of the stated length; write(2) is async-signal-safe.
            unsafe { libc::write(report_fd, msg.as_ptr().cast(), msg.len()) };
            exit_now(127);
        }
    }
    exit_now(127) // unreachable: Exec is the last step and only returns on error
}

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

fn ok_or_errno(ret: libc::c_long) -> Result<(), i32> {
    if ret < 0 { Err(errno()) } else { Ok(()) }
}

/// One step of the command's pre-exec sequence. No allocation, no locks.
fn run_command_step(cmd: &PreparedCommand, step: Step, release_fd: RawFd) -> Result<(), i32> {
    match step {
        Step::ResetSignals => {
            // SAFETY: sigset_t and sigaction are plain C structs initialised by the libc calls;
            // signal numbers out of range just return EINVAL, which we ignore.
            unsafe {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
                for sig in 1..libc::SIGRTMAX() {
                    if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                        libc::signal(sig, libc::SIG_DFL);
                    }
                }
            }
            Ok(())
        }
        Step::NewSession => {
            if cmd.new_session {
                // SAFETY: setsid(2) takes no arguments.
                ok_or_errno(libc::c_long::from(unsafe { libc::setsid() }))
            } else {
                Ok(())
            }
        }
        Step::JoinKeyring => {
            const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
            // SAFETY: a NULL name asks for a new anonymous session keyring.
            let ret =
                unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, std::ptr::null::<c_char>()) };
            match ok_or_errno(ret) {
                Err(libc::ENOSYS) => Ok(()), // kernel without keys: nothing to isolate
                other => other,
            }
        }
        Step::SealFds => {
            const CLOSE_RANGE_CLOEXEC: libc::c_uint = 4;
            // SAFETY: integer arguments only; marks fds >= 3 close-on-exec (our report fd already is).
            let ret = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, CLOSE_RANGE_CLOEXEC) };
            match ok_or_errno(ret) {
                Err(libc::ENOSYS | libc::EINVAL) => Ok(()), // old kernel: our fds are all CLOEXEC anyway
                other => other,
            }
        }
        Step::DropBounding => {
            for cap in 0..=cmd.last_cap {
                // SAFETY: prctl with integer arguments.
                let ret = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
                ok_or_errno(libc::c_long::from(ret))?;
            }
            Ok(())
        }
        Step::ClearAmbient => {
            // SAFETY: prctl with integer arguments.
            let ret = unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) };
            match ok_or_errno(libc::c_long::from(ret)) {
                Err(libc::EINVAL) => Ok(()), // kernel < 4.3 has no ambient set
                other => other,
            }
        }
        Step::ClearInheritable | Step::ClearPermitted => {
            let mut header = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
            let mut data = [CapData { effective: 0, permitted: 0, inheritable: 0 }; 2];
            // SAFETY: header and data are the v3 layout the kernel expects (two 32-bit words).
            ok_or_errno(unsafe { libc::syscall(libc::SYS_capget, &mut header as *mut CapHeader, data.as_mut_ptr()) })?;
            for d in &mut data {
                d.inheritable = 0;
                if step == Step::ClearPermitted {
                    d.permitted = 0;
                    d.effective = 0;
                }
            }
            // SAFETY: as above; the kernel only reads them.
            ok_or_errno(unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut CapHeader, data.as_ptr()) })
        }
        Step::NoNewPrivs => {
            // SAFETY: prctl with integer arguments.
            ok_or_errno(libc::c_long::from(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) }))
        }
        Step::Seccomp => {
            let prog = libc::sock_fprog { len: cmd.seccomp.len() as u16, filter: cmd.seccomp.as_ptr().cast_mut() };
            // SAFETY: prog points at a filter that lives in cmd for the whole call; the kernel copies it.
            let ret = unsafe { libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog as *const _, 0, 0) };
            // Fail closed: EINVAL (no seccomp filters, or ours rejected) stops the command too.
            ok_or_errno(libc::c_long::from(ret))
        }
        Step::WaitRelease => {
            let mut go = 0u8;
            loop {
                // SAFETY: reads at most one byte into a live stack variable.
                let n = unsafe { libc::read(release_fd, (&mut go as *mut u8).cast(), 1) };
                match n {
                    1 => return Ok(()),
                    0 => return Err(libc::ECANCELED),
                    _ if errno() == libc::EINTR => continue,
                    _ => return Err(errno()),
                }
            }
        }
        Step::Exec => {
            // SAFETY: path, argv and envp are NUL-terminated strings and NULL-terminated pointer
            // arrays owned by cmd, alive until exec replaces the image.
            unsafe { libc::execve(cmd.path.as_ptr(), cmd.argv_ptrs.as_ptr(), cmd.envp_ptrs.as_ptr()) };
            Err(errno())
        }
        // Steps of the helper and init, never of the command. Listed rather than `_` so a new
        // step must be placed on one side or the other; one put in `COMMAND_STEPS` by mistake
        // stops the command (fail closed) instead of being skipped.
        Step::SpawnHelper
        | Step::SendSpec
        | Step::ReadSpec
        | Step::Unshare
        | Step::SetGroups
        | Step::UidMap
        | Step::GidMap
        | Step::LimitNesting
        | Step::Netlink
        | Step::LoopbackUp
        | Step::LocalRouteV4
        | Step::LocalRouteV6
        | Step::BindCapture
        | Step::SendSockets
        | Step::MountPrivate
        | Step::OpenHostPath
        | Step::ReadOnlyRoot
        | Step::MountTmpfs
        | Step::MountDev
        | Step::WriteStaged
        | Step::BindMount
        | Step::MakeWritable
        | Step::HidePath
        | Step::Chdir
        | Step::ResolveCommand
        | Step::ForkInit
        | Step::MountProc
        | Step::ForkCommand
        | Step::ProtectPath => Err(libc::EINVAL),
    }
}

/// The number N of the pseudo-terminal whose master is `master` (its slave is `pts/N`).
pub fn pty_number(master: &OwnedFd) -> io::Result<u32> {
    let mut number: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes one unsigned int into the live stack variable we pass.
    check(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut number as *mut libc::c_uint) })?;
    Ok(number)
}

/// Take ownership of an fd the kernel just gave us (from `SCM_RIGHTS`, or inherited by number).
pub fn adopt_fd(raw: RawFd) -> OwnedFd {
    // SAFETY: callers pass fds that are open and owned by nobody else in this process: freshly
    // received with SCM_RIGHTS, or the helper's inherited socket whose number came in argv.
    unsafe { OwnedFd::from_raw_fd(raw) }
}

/// Set extended attribute `name` of `path` itself (not following a link) to `value`.
pub fn set_xattr(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let path = CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let name = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: path and name are NUL-terminated strings, value a live slice of the given length.
    check(unsafe { libc::lsetxattr(path.as_ptr(), name.as_ptr(), value.as_ptr().cast(), value.len(), 0) }).map(drop)
}

/// Whether `path` itself (not following a link) has extended attribute `name`.
pub fn has_xattr(path: &Path, name: &str) -> bool {
    let (Ok(path), Ok(name)) = (CString::new(path.as_os_str().as_bytes()), CString::new(name)) else { return false };
    // SAFETY: NUL-terminated strings; a NULL buffer of size 0 only asks for the value's size.
    unsafe { libc::lgetxattr(path.as_ptr(), name.as_ptr(), std::ptr::null_mut(), 0) >= 0 }
}
