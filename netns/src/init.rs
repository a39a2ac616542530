//! PID 1 of the sandbox's pid namespace: mounts its `/proc`, starts the command, reaps every
//! zombie, forwards signals to the command, and reports the command's status to the launcher.
//! When it exits the kernel kills whatever is left in the namespace.

use std::ffi::OsStr;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::fcntl::OFlag;
use nix::mount::{MsFlags, mount};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::prctl;
use nix::sys::signal::{Signal, kill};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Pid, pipe2};

use crate::channel::Channel;
use crate::error::{Failure, Step};
use crate::proto::{CommandStatus, FromHelper};
use crate::signals::{blocked_signals, sent_by_a_process};
use crate::sys::{self, PreparedCommand};

pub fn run(chan: &Channel, command: &PreparedCommand, release: OwnedFd, program: &OsStr) -> ! {
    let code = match start(chan, command, release, program) {
        Ok(child) => watch(chan, child, command.new_session()),
        Err(f) => {
            let _ = chan.send(&f.message_for_launcher().encode(), &[]);
            127
        }
    };
    sys::exit_now(code)
}

fn start(chan: &Channel, command: &PreparedCommand, release: OwnedFd, program: &OsStr) -> Result<Pid, Failure> {
    // If the helper dies, so do we, and with us the whole pid namespace.
    prctl::set_pdeathsig(Signal::SIGKILL).map_err(|e| Failure::new(Step::ForkInit, e, ""))?;
    mount(
        Some("proc"),
        "/proc",
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(|e| Failure::new(Step::MountProc, e, "/proc"))?;
    // Writable /proc/sys would let a command running as the host's uid 0 (root caller) change
    // global sysctls such as kernel.core_pattern without any capability: the check is the euid.
    for path in crate::plan::PROC_READ_ONLY {
        let path = std::path::Path::new(path);
        if path.exists() {
            crate::mounts::bind_read_only_in_place(path)
                .map_err(|e| Failure::new(Step::MountProc, e, path.display().to_string()))?;
        }
    }
    let (report_read, report_write) = pipe2(OFlag::O_CLOEXEC).map_err(|e| Failure::new(Step::ForkCommand, e, ""))?;
    let child = sys::spawn_command(command, report_write.as_raw_fd(), release.as_raw_fd())
        .map_err(|e| Failure::new(Step::ForkCommand, e, ""))?;
    drop(report_write);
    drop(release);
    let mut report = [0u8; 6];
    let mut file = std::fs::File::from(report_read);
    let mut got = 0;
    while got < report.len() {
        match file.read(&mut report[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    if got == 0 {
        chan.send(&FromHelper::Started.encode(), &[]).map_err(|e| Failure::new(Step::Exec, e, ""))?;
        return Ok(Pid::from_raw(child));
    }
    let _ = waitpid(Pid::from_raw(child), None);
    let step = Step::from_code(u16::from_le_bytes([report[0], report[1]])).unwrap_or(Step::Exec);
    if step == Step::WaitRelease {
        return Err(Failure::new(step, std::io::Error::from_raw_os_error(libc::ECANCELED), "never released"));
    }
    let errno = i32::from_le_bytes([report[2], report[3], report[4], report[5]]);
    let detail = if step == Step::Exec { program.to_string_lossy().into_owned() } else { String::new() };
    Err(Failure::new(step, std::io::Error::from_raw_os_error(errno), detail))
}

fn watch(chan: &Channel, child: Pid, command_has_own_session: bool) -> i32 {
    let Ok(sfd) = SignalFd::with_flags(&blocked_signals(), SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK) else {
        let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
        return 125;
    };
    loop {
        let mut fds = [PollFd::new(sfd.as_fd(), PollFlags::POLLIN), PollFd::new(chan.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return 125,
        }
        if fds[0].revents().is_some_and(|r| !r.is_empty()) {
            while let Ok(Some(info)) = sfd.read_signal() {
                let signo = info.ssi_signo as i32;
                if signo == libc::SIGCHLD {
                    if let Some(status) = reap(child) {
                        let _ = chan.send(&FromHelper::Exit(status).encode(), &[]);
                        return status.code();
                    }
                    continue;
                }
                // Signals from a process (the helper forwarding Sandbox::signal, or anything in
                // the namespace) go on to the command. Terminal signals reach a command that
                // shares the terminal by themselves; pass them on only if it has its own session.
                let forward =
                    sent_by_a_process(info.ssi_code) || (info.ssi_code == libc::SI_KERNEL && command_has_own_session);
                if forward && let Ok(sig) = Signal::try_from(signo) {
                    let _ = kill(child, sig);
                }
            }
        }
        if fds[1].revents().is_some_and(|r| !r.is_empty()) && !matches!(chan.recv(), Ok(Some(_))) {
            // the launcher is gone: take everything in the namespace down with us
            let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
            return 137;
        }
    }
}

/// Reap every zombie; the command's status once it has ended.
fn reap(child: Pid) -> Option<CommandStatus> {
    let mut found = None;
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == child => found = Some(CommandStatus::Exited(code)),
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == child => found = Some(CommandStatus::Signaled(sig as i32)),
            Ok(WaitStatus::StillAlive) | Err(_) => return found,
            Ok(_) => {}
        }
    }
}
