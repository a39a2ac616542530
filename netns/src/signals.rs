//! Which signals the helper and the sandbox's init pass on to the command, and how they tell a
//! signal someone sent on purpose from one the kernel raised. Shared by `helper` and `init`, so
//! neither imports the other.

use nix::sys::signal::{SigSet, Signal};

/// Signals the helper and init pass on to the command (everything a user or supervisor sends
/// on purpose; not the synchronous faults, not SIGCHLD, not the unblockable ones).
pub(crate) const FORWARDED: [Signal; 13] = [
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGCONT,
    Signal::SIGTSTP,
    Signal::SIGTTIN,
    Signal::SIGTTOU,
    Signal::SIGALRM,
    Signal::SIGPIPE,
];

/// The set the helper and init block and read from a signalfd: the forwarded ones and SIGCHLD.
pub(crate) fn blocked_signals() -> SigSet {
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(s);
    }
    set.add(Signal::SIGCHLD);
    set
}

/// `si_code` of a signal sent by a process (kill, sigqueue, tgkill) rather than by the kernel
/// (terminal, child state). Only these are forwarded by the helper.
pub(crate) fn sent_by_a_process(code: i32) -> bool {
    code <= 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_process_sent_signals_are_forwarded_by_the_helper() {
        assert!(sent_by_a_process(libc::SI_USER));
        assert!(sent_by_a_process(libc::SI_QUEUE));
        assert!(sent_by_a_process(libc::SI_TKILL));
        assert!(!sent_by_a_process(libc::SI_KERNEL)); // the terminal already told the command
    }

    #[test]
    fn the_blocked_set_is_the_forwarded_signals_and_sigchld() {
        let set = blocked_signals();
        assert!(FORWARDED.iter().all(|s| set.contains(*s)));
        assert!(set.contains(Signal::SIGCHLD));
        for never in [Signal::SIGKILL, Signal::SIGSTOP, Signal::SIGSEGV] {
            assert!(!set.contains(never), "{never} must not be blocked");
        }
    }
}
