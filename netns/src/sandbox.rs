//! The launcher's side: spawn the helper, hand it the spec, collect the capture sockets, release
//! the command, wait for its status. Safe to use from a multithreaded (tokio) process: the only
//! thing done between fork and exec here is clearing close-on-exec on one fd.

use std::ffi::{CString, OsString};
use std::io;
use std::net::{TcpListener, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, fcntl};
use nix::spawn::{PosixSpawnAttr, PosixSpawnFileActions, PosixSpawnFlags, posix_spawn};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, pthread_sigmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Pid, getpgrp, isatty, tcgetpgrp, tcsetpgrp};

use crate::HELPER_ARG;
use crate::channel::Channel;
use crate::error::{HostFacts, NamespaceError, Step, classify};
use crate::proto::{CommandStatus, FromHelper, SPEC_CHUNK, SocketKind, ToHelper};
use crate::spec::SandboxSpec;
use crate::sys;

/// How long `start` waits for the helper to report capture in place.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A capture socket created inside the sandbox's network namespace, now owned by the launcher.
/// Sockets are blocking; set them non-blocking before handing them to an async runtime.
/// (The helper is started with `posix_spawn`: nothing runs between fork and exec in the
/// launcher, and spawning stays cheap however large the launcher's memory is.)
#[derive(Debug)]
pub enum CaptureSocket {
    /// `[::]:port`, dual-stack: `local_addr()` of an accepted stream is the original destination.
    Tcp {
        /// The captured destination port.
        port: u16,
        /// The listener.
        listener: TcpListener,
    },
    /// `0.0.0.0:53` or `[::]:53` (IPv6 only); replies go out from the queried address.
    Udp {
        /// The captured port (53).
        port: u16,
        /// The socket, with `IP_PKTINFO`/`IPV6_RECVPKTINFO` on.
        socket: UdpSocket,
    },
    /// `127.0.0.1:inner_proxy_port`, for clients that honour `HTTP(S)_PROXY`.
    InnerProxy {
        /// The listener.
        listener: TcpListener,
    },
}

impl CaptureSocket {
    pub(crate) fn from_bound(info: crate::proto::SocketInfo, fd: OwnedFd) -> Self {
        match info.kind {
            SocketKind::Tcp => CaptureSocket::Tcp { port: info.port, listener: TcpListener::from(fd) },
            SocketKind::Udp => CaptureSocket::Udp { port: info.port, socket: UdpSocket::from(fd) },
            SocketKind::InnerProxy => CaptureSocket::InnerProxy { listener: TcpListener::from(fd) },
        }
    }
}

/// A running sandbox (the helper process and, after [`release`](Sandbox::release), the command).
/// Dropping it kills everything inside.
#[derive(Debug)]
pub struct Sandbox {
    /// The helper; `None` once reaped.
    helper: Option<Pid>,
    chan: Option<Channel>,
    signaller: Signaller,
    program: OsString,
    released: bool,
    was_foreground: bool,
}

/// Sends signals to the sandboxed command from any thread, also while [`Sandbox::wait`] blocks.
/// Backed by a pidfd, so a signal can never hit a recycled pid.
#[derive(Debug, Clone)]
pub struct Signaller {
    pid: u32,
    pidfd: Option<Arc<OwnedFd>>,
}

impl Signaller {
    /// Forward `sig` to the command (through the helper and the sandbox's init). Signalling a
    /// sandbox that has already ended is not an error.
    pub fn signal(&self, sig: i32) -> Result<(), NamespaceError> {
        let result = match &self.pidfd {
            Some(fd) => sys::pidfd_send_signal(fd, sig),
            None => Signal::try_from(sig)
                .map_err(io::Error::from)
                .and_then(|s| kill(Pid::from_raw(self.pid as i32), s).map_err(io::Error::from)),
        };
        match result {
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
            Err(e) => {
                Err(NamespaceError::Setup { step: Step::SpawnHelper, detail: format!("signal {sig}"), source: e })
            }
            Ok(()) => Ok(()),
        }
    }
}

impl Sandbox {
    /// Spawn the helper from `exe` (normally `/proc/self/exe`, whose `main` calls
    /// [`maybe_run_helper`](crate::maybe_run_helper) first) and wait until capture is in place.
    /// Fails closed: on any error no command runs. Blocking (a few ms): from async code, call it
    /// in `spawn_blocking`, like `release` and `wait`.
    pub fn start(exe: &Path, spec: &SandboxSpec) -> Result<(Sandbox, Vec<CaptureSocket>), NamespaceError> {
        Sandbox::spawn(exe)?.configure(spec)
    }

    /// Start the helper process now and give it its spec later with
    /// [`configure`](PendingSandbox::configure): its exec and start-up then overlap whatever
    /// the caller does to build the spec. Dropping the result kills the helper.
    pub fn spawn(exe: &Path) -> Result<PendingSandbox, NamespaceError> {
        let spawn_error = |e: io::Error| NamespaceError::Setup {
            step: Step::SpawnHelper,
            detail: exe.display().to_string(),
            source: e,
        };
        let (ours, theirs) = Channel::pair().map_err(spawn_error)?;
        let was_foreground = in_terminal_foreground();
        let pid = spawn_helper(exe, &theirs).map_err(spawn_error)?;
        drop(theirs);
        let raw_pid = pid.as_raw() as u32;
        let signaller = Signaller { pid: raw_pid, pidfd: sys::pidfd_open(raw_pid).ok().map(Arc::new) };
        Ok(PendingSandbox(Sandbox {
            helper: Some(pid),
            chan: Some(ours),
            signaller,
            program: OsString::new(),
            released: false,
            was_foreground,
        }))
    }

    fn chan(&self) -> &Channel {
        self.chan.as_ref().expect("the channel lives until wait or drop")
    }

    fn handshake(&mut self, encoded: &[u8]) -> Result<Vec<CaptureSocket>, NamespaceError> {
        let send_error =
            |e: io::Error| NamespaceError::Setup { step: Step::SendSpec, detail: String::new(), source: e };
        let chan = self.chan();
        chan.send(&ToHelper::SpecBegin { len: encoded.len() as u32 }.encode(), &[]).map_err(send_error)?;
        for chunk in encoded.chunks(SPEC_CHUNK) {
            chan.send(&ToHelper::SpecData(chunk.to_vec()).encode(), &[]).map_err(send_error)?;
        }
        chan.set_recv_timeout(Some(START_TIMEOUT)).map_err(send_error)?;
        let reply = self.receive();
        self.chan().set_recv_timeout(None).map_err(send_error)?;
        match reply? {
            Some((FromHelper::Ready(infos), fds)) if infos.len() == fds.len() => {
                Ok(infos.into_iter().zip(fds).map(|(info, fd)| CaptureSocket::from_bound(info, fd)).collect())
            }
            Some((FromHelper::Failed { step, errno, detail }, _)) => Err(self.failure(step, errno, detail)),
            other => Err(self.protocol_error("capture sockets", other.map(|(m, _)| m))),
        }
    }

    fn receive(&self) -> Result<Option<(FromHelper, Vec<OwnedFd>)>, NamespaceError> {
        match self.chan().recv() {
            Ok(Some((bytes, fds))) => {
                FromHelper::decode(&bytes).map(|m| Some((m, fds))).map_err(|e| NamespaceError::Protocol(e.to_string()))
            }
            Ok(None) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                Err(NamespaceError::Protocol(format!("the helper did not answer within {START_TIMEOUT:?}")))
            }
            Err(e) => Err(NamespaceError::Protocol(format!("reading from the helper: {e}"))),
        }
    }

    fn failure(&mut self, step: Step, errno: i32, detail: String) -> NamespaceError {
        self.shutdown();
        let detail = if step == Step::ResolveCommand || step == Step::Exec {
            self.program.to_string_lossy().into_owned()
        } else {
            detail
        };
        classify(step, errno, detail, &HostFacts::gather())
    }

    fn protocol_error(&mut self, expected: &str, got: Option<FromHelper>) -> NamespaceError {
        // the helper may be stuck (that is one way to get here): do not wait for it politely
        let _ = self.signaller.signal(libc::SIGKILL);
        let status = self.shutdown();
        match got {
            None => NamespaceError::Protocol(format!("the helper exited ({status}) before sending the {expected}")),
            Some(m) => NamespaceError::Protocol(format!("expected the {expected}, got {m:?}")),
        }
    }

    /// Close our end (the helper then kills the sandbox) and reap the helper.
    fn shutdown(&mut self) -> String {
        self.chan = None;
        let Some(pid) = self.helper.take() else { return "already reaped".into() };
        loop {
            match waitpid(pid, None) {
                Ok(WaitStatus::Exited(_, code)) => return format!("exit status: {code}"),
                Ok(WaitStatus::Signaled(_, sig, _)) => return format!("signal: {sig}"),
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(e) => return e.to_string(),
            }
        }
    }

    /// Tell the helper the proxy is serving: the command may now run. Returns once it has been
    /// executed; an error means it never ran.
    pub fn release(&mut self) -> Result<(), NamespaceError> {
        if self.released {
            return Ok(());
        }
        self.chan().send(&ToHelper::Release.encode(), &[]).map_err(|e| NamespaceError::Setup {
            step: Step::WaitRelease,
            detail: String::new(),
            source: e,
        })?;
        self.released = true;
        match self.receive()? {
            Some((FromHelper::Started, _)) => Ok(()),
            Some((FromHelper::Failed { step, errno, detail }, _)) => Err(self.failure(step, errno, detail)),
            other => Err(self.protocol_error("start confirmation", other.map(|(m, _)| m))),
        }
    }

    /// The helper's pid (in the launcher's pid namespace).
    pub fn pid(&self) -> u32 {
        self.signaller.pid
    }

    /// Forward `sig` to the command.
    pub fn signal(&self, sig: i32) -> Result<(), NamespaceError> {
        self.signaller.signal(sig)
    }

    /// A handle for signalling the command from another thread while `wait` blocks.
    pub fn signaller(&self) -> Signaller {
        self.signaller.clone()
    }

    /// Block until the command ends; its exit code or the signal that killed it.
    pub fn wait(mut self) -> Result<CommandStatus, NamespaceError> {
        if !self.released {
            self.shutdown();
            return Err(NamespaceError::Protocol("wait() before release(): the command never ran".into()));
        }
        let mut status = None;
        loop {
            match self.receive() {
                Ok(Some((FromHelper::Exit(s), _))) => status = Some(s),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        let status = match status {
            // End of file: every process of the sandbox is gone (init and the command exited
            // before the helper closed its end). What the helper's exit still does is the
            // kernel's teardown of the sandbox's mount namespace, which takes an RCU grace
            // period (~20 ms on a loaded VM): reap it off the caller's path.
            Some(status) => {
                self.reap_in_background();
                Ok(status)
            }
            None => {
                let helper = self.shutdown();
                Err(NamespaceError::Protocol(format!("the sandbox ended ({helper}) without the command's status")))
            }
        };
        if self.was_foreground {
            restore_terminal_foreground();
        }
        status
    }

    /// Reap the helper now if it is gone, else on a thread of its own (a zombie until then).
    fn reap_in_background(&mut self) {
        self.chan = None;
        let Some(pid) = self.helper.take() else { return };
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::EINTR) => {
                let reaper = std::thread::Builder::new().name("authsome-sandbox-reaper".into()).spawn(move || {
                    while matches!(waitpid(pid, None), Ok(WaitStatus::StillAlive) | Err(Errno::EINTR)) {}
                });
                if reaper.is_err() {
                    // no thread to spare: reap here rather than leave a zombie
                    while matches!(waitpid(pid, None), Ok(WaitStatus::StillAlive) | Err(Errno::EINTR)) {}
                }
            }
            _ => {}
        }
    }
}

/// A helper started by [`Sandbox::spawn`], waiting for its spec.
#[derive(Debug)]
pub struct PendingSandbox(Sandbox);

impl PendingSandbox {
    /// Send `spec` and wait until capture is in place (see [`Sandbox::start`]).
    pub fn configure(self, spec: &SandboxSpec) -> Result<(Sandbox, Vec<CaptureSocket>), NamespaceError> {
        spec.validate().map_err(NamespaceError::InvalidSpec)?;
        let encoded = spec.encode();
        if encoded.len() > crate::proto::MAX_SPEC {
            return Err(NamespaceError::InvalidSpec("the environment and arguments exceed 16 MiB".into()));
        }
        let PendingSandbox(mut sandbox) = self;
        sandbox.program = spec.program.clone();
        let sockets = sandbox.handshake(&encoded)?;
        Ok((sandbox, sockets))
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if self.chan.is_some() || self.helper.is_some() {
            // SIGKILL the helper: its init (PDEATHSIG) and with it the whole pid namespace follow,
            // even if the helper were stuck in setup. Closing the socket alone would also do, but
            // only once the helper reads it.
            let _ = self.signaller.signal(libc::SIGKILL);
            self.shutdown();
        }
    }
}

/// The helper's end of the socket always arrives as this fd number.
const HELPER_FD: RawFd = 3;

/// `exe HELPER_ARG 3` with an empty environment, the socket dup'ed onto fd 3 (which clears
/// close-on-exec in the child only, so concurrent spawns by other threads never inherit it).
fn spawn_helper(exe: &Path, theirs: &Channel) -> io::Result<Pid> {
    // dup2(3, 3) would keep close-on-exec: move the socket off fd 3 first if it sits there
    let moved;
    let source = if theirs.as_raw_fd() == HELPER_FD {
        moved = fcntl(theirs, FcntlArg::F_DUPFD_CLOEXEC(HELPER_FD + 1))?;
        moved.as_raw_fd()
    } else {
        theirs.as_raw_fd()
    };
    let mut actions = PosixSpawnFileActions::init()?;
    actions.add_dup2(source, HELPER_FD)?;
    // Start the helper with no signal blocked and every disposition at its default, whatever the
    // calling thread of the launcher had (the command inherits them through the helper).
    let mut attr = PosixSpawnAttr::init()?;
    attr.set_flags(PosixSpawnFlags::POSIX_SPAWN_SETSIGMASK | PosixSpawnFlags::POSIX_SPAWN_SETSIGDEF)?;
    attr.set_sigmask(&SigSet::empty())?;
    attr.set_sigdefault(&SigSet::all())?;
    let path = CString::new(exe.as_os_str().as_bytes())?;
    let args = [path.clone(), CString::new(HELPER_ARG)?, CString::new(HELPER_FD.to_string())?];
    let env: [CString; 0] = [];
    Ok(posix_spawn(path.as_c_str(), &actions, &attr, &args, &env)?)
}

fn in_terminal_foreground() -> bool {
    let stdin = io::stdin();
    isatty(&stdin).unwrap_or(false) && tcgetpgrp(&stdin).is_ok_and(|fg| fg == getpgrp())
}

/// A command that took the terminal's foreground (an interactive shell does) leaves it pointing
/// at a dead process group; give it back to the launcher's group.
fn restore_terminal_foreground() {
    let stdin = io::stdin();
    if tcgetpgrp(&stdin).is_ok_and(|fg| fg == getpgrp()) {
        return;
    }
    let mut ttou = SigSet::empty();
    ttou.add(Signal::SIGTTOU);
    let mut old = SigSet::empty();
    if pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&ttou), Some(&mut old)).is_ok() {
        let _ = tcsetpgrp(&stdin, getpgrp());
        let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    }
}
