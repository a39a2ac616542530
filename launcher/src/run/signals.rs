//! Waiting for the child while forwarding the signals meant for it.
//!
//! SIGTERM, SIGHUP, SIGUSR1 and SIGUSR2 sent to `authsome run` go to the child. SIGINT and
//! SIGQUIT are forwarded only when we are not in a terminal's foreground process group: a
//! Ctrl-C at the terminal already reaches the child directly, and a second copy would
//! interrupt its clean-up. Either way `run` itself stays alive until the child exits.

use std::io;
use std::os::unix::process::ExitStatusExt;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::signal::unix::{SignalKind, signal};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

/// Whether a terminal delivers keyboard signals to our process group (and so to the child).
fn terminal_delivers_signals() -> bool {
    let ours = nix::unistd::getpgrp();
    let stdin = io::stdin();
    let stderr = io::stderr();
    nix::unistd::tcgetpgrp(&stdin).or_else(|_| nix::unistd::tcgetpgrp(&stderr)).is_ok_and(|fg| fg == ours)
}

pub async fn wait_forwarding(child: &mut tokio::process::Child) -> io::Result<Exit> {
    let pid = child.id().map(|id| Pid::from_raw(id as i32));
    let keyboard = terminal_delivers_signals();
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut quit = signal(SignalKind::quit())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let mut usr2 = signal(SignalKind::user_defined2())?;
    let forward = |sig: Signal| {
        if let Some(pid) = pid {
            let _ = kill(pid, sig);
        }
    };
    loop {
        tokio::select! {
            status = child.wait() => {
                let status = status?;
                return Ok(match (status.code(), status.signal()) {
                    (Some(code), _) => Exit::Code(code),
                    (None, Some(sig)) => Exit::Signal(sig),
                    (None, None) => Exit::Code(1),
                });
            }
            _ = term.recv() => forward(Signal::SIGTERM),
            _ = hup.recv() => forward(Signal::SIGHUP),
            _ = usr1.recv() => forward(Signal::SIGUSR1),
            _ = usr2.recv() => forward(Signal::SIGUSR2),
            _ = int.recv() => if !keyboard { forward(Signal::SIGINT) },
            _ = quit.recv() => if !keyboard { forward(Signal::SIGQUIT) },
        }
    }
}
