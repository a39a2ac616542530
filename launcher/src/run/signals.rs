//! Waiting for the child while forwarding the signals meant for it.
//!
//! SIGTERM, SIGHUP, SIGUSR1 and SIGUSR2 sent to `authsome run` go to the child. SIGINT and
//! SIGQUIT are forwarded only when we are not in a terminal's foreground process group: a
//! Ctrl-C at the terminal already reaches the child directly, and a second copy would
//! interrupt its clean-up. Either way `run` itself stays alive until the child exits.

use std::future::Future;
use std::io;
use std::os::unix::process::ExitStatusExt;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::signal::unix::{SignalKind, signal};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
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

/// Wait for `work` while forwarding the signals meant for the child through `forward`.
pub(crate) async fn forward_while<F: Future>(work: F, forward: impl Fn(i32)) -> io::Result<F::Output> {
    let keyboard = terminal_delivers_signals();
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut quit = signal(SignalKind::quit())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let mut usr2 = signal(SignalKind::user_defined2())?;
    let mut work = std::pin::pin!(work);
    loop {
        tokio::select! {
            output = &mut work => return Ok(output),
            _ = term.recv() => forward(Signal::SIGTERM as i32),
            _ = hup.recv() => forward(Signal::SIGHUP as i32),
            _ = usr1.recv() => forward(Signal::SIGUSR1 as i32),
            _ = usr2.recv() => forward(Signal::SIGUSR2 as i32),
            _ = int.recv() => if !keyboard { forward(Signal::SIGINT as i32) },
            _ = quit.recv() => if !keyboard { forward(Signal::SIGQUIT as i32) },
        }
    }
}

/// Wait for a child process, forwarding signals to it.
pub(crate) async fn wait_forwarding(child: &mut tokio::process::Child) -> io::Result<Exit> {
    let pid = child.id().map(|id| Pid::from_raw(id as i32));
    let forward = |sig: i32| {
        if let (Some(pid), Ok(sig)) = (pid, Signal::try_from(sig)) {
            let _ = kill(pid, sig);
        }
    };
    let status = forward_while(child.wait(), forward).await??;
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) => Exit::Code(code),
        (None, Some(sig)) => Exit::Signal(sig),
        (None, None) => Exit::Code(1),
    })
}
