//! The supervisor between plain `run` and its command (Linux): a fresh exec of this binary
//! that starts the command, relays the signals `run` forwards, and exits with the command's
//! status. It exists for one case: `run` killed with `kill -9`. The command itself dies then
//! (the death signal), but what it started — `sh -c 'server & wait'`, a build's workers — would
//! run on without the proxy they were configured for. The supervisor is a child subreaper (the
//! orphans of the command's tree become its children) with a catchable death signal, so when
//! `run` dies it kills every process below it before it exits.
//!
//! Single-threaded, no runtime: once the command has started, it waits for signals
//! synchronously with them blocked.

use std::ffi::OsString;
use std::io;
use std::process::Command;

use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Pid, getpid, getppid};

use crate::error::{CliError, Kind};
use crate::output::Output;

/// `argv[1]` that puts the binary in supervisor mode:
/// `authsome ARG PARENT_PID OUTPUT_FLAGS -- PROGRAM ARGS…`.
pub(crate) const ARG: &str = "__authsome-run-supervisor";

/// The death signal: catchable, so the supervisor can clean up. `run` also forwards a
/// SIGTERM meant for the command; the two are told apart by whether `run` is still the parent.
const PARENT_DIED: Signal = Signal::SIGTERM;

/// Output settings the supervisor needs to report a command that cannot be started the way
/// `run` would: `j` (`--json`), `q` (`--quiet`).
pub(crate) fn output_flags(json: bool, quiet: bool) -> String {
    let mut flags = String::from("-");
    for (on, flag) in [(json, 'j'), (quiet, 'q')] {
        if on {
            flags.push(flag);
        }
    }
    flags
}

/// The command line that runs `program args` under a supervisor.
pub(crate) fn command(program: &std::ffi::OsStr, args: &[OsString], output: &str) -> Command {
    let mut command = Command::new("/proc/self/exe");
    command.arg(ARG).arg(getpid().as_raw().to_string()).arg(output).arg("--").arg(program).args(args);
    command
}

/// If this process was started as a supervisor, run it and return its exit code.
pub(crate) fn maybe_run() -> Option<u8> {
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() != Some(std::ffi::OsStr::new(ARG)) {
        return None;
    }
    let parent = args.next().and_then(|a| a.to_str().and_then(|s| s.parse::<i32>().ok())).map(Pid::from_raw);
    let flags = args.next().unwrap_or_default().to_string_lossy().into_owned();
    let separator = args.next();
    let rest: Vec<OsString> = args.collect();
    let (Some(parent), Some("--"), Some((program, program_args))) =
        (parent, separator.as_deref().and_then(|s| s.to_str()), rest.split_first())
    else {
        eprintln!("error: {ARG} is internal to `authsome run`");
        return Some(125);
    };
    let colour = std::env::var_os(crate::env::NO_COLOR).is_none();
    let output = Output::new(flags.contains('j'), flags.contains('q'), colour);
    Some(supervise(parent, program, program_args, &output))
}

fn supervise(parent: Pid, program: &OsString, args: &[OsString], output: &Output) -> u8 {
    let fail = |what: &str, e: Errno| {
        output.error(&CliError::new(Kind::RunFailed, format!("cannot supervise the command: {what}: {e}")));
        125
    };
    // Like `run` itself: the command (same user) may not read this process's memory or
    // environment through /proc or ptrace it. The command's exec makes it dumpable again.
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        return fail("clearing the dumpable flag", e);
    }
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        return fail("becoming a subreaper", e);
    }
    if let Err(e) = nix::sys::prctl::set_pdeathsig(PARENT_DIED) {
        return fail("arming the death signal", e);
    }
    // `run` died before the death signal was armed: the signal will never come.
    if getppid() != parent {
        return 125;
    }
    let mut command = Command::new(program);
    command.args(args);
    // Should the supervisor itself be killed outright, the command goes with it.
    if let Err(e) = authsome_netns::die_with_parent(&mut command) {
        output.error(&CliError::new(Kind::RunFailed, format!("cannot supervise the command: {e}")));
        return 125;
    }
    let child = match command.spawn() {
        Ok(child) => Pid::from_raw(child.id() as i32),
        Err(e) => {
            let (code, message) = super::exec_failure(program, &e);
            output.error(&CliError::new(Kind::RunFailed, message));
            return code as u8;
        }
    };
    // Blocked only now: a child inherits the signal mask, and the command must start with
    // none blocked. Until here a signal takes its default action (a SIGTERM ends this process
    // and the command with it); a SIGCHLD sent before is lost, hence the first reap.
    let mut signals = SigSet::empty();
    for signal in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGINT,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
    ] {
        signals.add(signal);
    }
    if let Err(e) = signals.thread_block() {
        let _ = kill(child, Signal::SIGKILL);
        return fail("blocking signals", e);
    }
    if let Some(code) = reap(child) {
        return code;
    }
    let keyboard = super::signals::terminal_delivers_signals();
    loop {
        let Ok(signal) = signals.wait() else { continue };
        match signal {
            Signal::SIGCHLD => {
                if let Some(code) = reap(child) {
                    return code;
                }
            }
            PARENT_DIED if getppid() != parent => {
                kill_descendants();
                return 128 + PARENT_DIED as u8;
            }
            // A Ctrl-C at the terminal reached the command already (see `signals`).
            Signal::SIGINT | Signal::SIGQUIT if keyboard => {}
            other => {
                let _ = kill(child, other);
            }
        }
    }
}

/// Reap every exited child (orphans adopted as subreaper included); the command's exit code
/// once it has ended (128+N for signal N, as `run` reports it).
fn reap(command: Pid) -> Option<u8> {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == command => return Some(code as u8),
            Ok(WaitStatus::Signaled(pid, signal, _)) if pid == command => return Some(128 + signal as u8),
            Ok(WaitStatus::StillAlive) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

/// SIGKILL every process below this one, pass after pass: a killed process forks no more, and
/// the children of a killed one are adopted here (subreaper) and found by the next pass.
fn kill_descendants() {
    let me = getpid();
    for _ in 0..100 {
        let below = descendants(me).unwrap_or_default();
        if below.is_empty() {
            return;
        }
        for pid in below {
            let _ = kill(pid, Signal::SIGKILL);
        }
        while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            if status == WaitStatus::StillAlive {
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// The processes whose parent chain leads to `root`, from `/proc`.
fn descendants(root: Pid) -> io::Result<Vec<Pid>> {
    let mut parents: Vec<(i32, i32)> = Vec::new();
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        if let Some(ppid) = parent_of(&stat) {
            parents.push((pid, ppid));
        }
    }
    let mut found = vec![root.as_raw()];
    let mut i = 0;
    while i < found.len() {
        let current = found[i];
        found.extend(parents.iter().filter(|(_, ppid)| *ppid == current).map(|(pid, _)| *pid));
        i += 1;
    }
    Ok(found.into_iter().skip(1).map(Pid::from_raw).collect())
}

/// The parent pid in a `/proc/PID/stat` line (the fourth field; the second, the command name
/// in parentheses, may itself hold spaces and parentheses).
fn parent_of(stat: &str) -> Option<i32> {
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_pid_from_a_stat_line() {
        assert_eq!(parent_of("123 (sleep) S 77 123 1 0 -1"), Some(77));
        assert_eq!(parent_of("9 (a) b) (c) R 1 9 9 0"), Some(1));
        assert_eq!(parent_of("garbage"), None);
    }

    #[test]
    fn flags_round_trip() {
        assert_eq!(output_flags(true, true), "-jq");
        assert_eq!(output_flags(false, false), "-");
    }
}
