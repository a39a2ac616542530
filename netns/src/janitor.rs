//! The janitor: a child the helper forks before it leaves the host's namespaces, which removes
//! the run's placeholders once the sandbox is gone, off everyone's critical path.
//!
//! Why a process of its own: in the sandbox's mount namespace a placeholder is a mount point
//! (unmounting each costs an RCU grace period), and from the host's, the first removal waits
//! for the dead sandbox's mount namespace to be torn down (several ms). Neither the helper nor
//! the launcher's `wait` should pay that. The janitor stays in the host's mount and user
//! namespaces, learns each placeholder as it is made (one record per placeholder on a pipe),
//! waits for end-of-file (the helper and the sandbox's init, which hold the write end, are both
//! gone, whatever killed them), then removes what is untouched and not leased by a concurrent
//! sandbox (`placeholders::remove_if_untouched`). Killing the janitor itself (or the host going down)
//! is what leaves placeholders behind.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};

use nix::fcntl::OFlag;
use nix::unistd::pipe2;

use crate::proto::{FromHelper, Placeholder};
use crate::sys::{self, Forked};

/// The helper's end: records go here.
#[derive(Debug)]
pub struct Janitor {
    records: File,
}

impl Janitor {
    /// Fork the janitor. Call before `unshare` (it must stay in the host's namespaces), while
    /// the helper is single-threaded.
    pub fn spawn() -> io::Result<Janitor> {
        let (read, write) = pipe2(OFlag::O_CLOEXEC)?;
        match sys::fork()? {
            Forked::Child => {
                drop(write);
                run(read)
            }
            Forked::Parent { .. } => Ok(Janitor { records: File::from(write) }),
        }
    }

    /// Tell the janitor about one placeholder (made, or shared with a concurrent sandbox).
    pub fn record(&mut self, p: &Placeholder) -> io::Result<()> {
        let body = FromHelper::Placeholders(vec![p.clone()]).encode();
        let mut record = (body.len() as u32).to_le_bytes().to_vec();
        record.extend_from_slice(&body);
        self.records.write_all(&record)
    }
}

fn run(read: OwnedFd) -> ! {
    // Nothing of the launcher's: not its socket (its `wait` reads until end-of-file), not its
    // terminal or pipes.
    let _ = sys::close_fds_except(read.as_raw_fd());
    if let Ok(null) = File::options().read(true).write(true).open("/dev/null") {
        let _ = nix::unistd::dup2_stdin(&null);
        let _ = nix::unistd::dup2_stdout(&null);
        let _ = nix::unistd::dup2_stderr(&null);
    }
    let mut bytes = Vec::new();
    let _ = File::from(read).read_to_end(&mut bytes); // returns when every writer is gone
    for p in parse(&bytes).iter().rev() {
        crate::placeholders::remove_if_untouched(p);
    }
    sys::exit_now(0)
}

/// The placeholders in a stream of records; a torn last record (writer killed mid-write) is
/// dropped.
fn parse(mut bytes: &[u8]) -> Vec<Placeholder> {
    let mut out = Vec::new();
    while bytes.len() >= 4 {
        let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        let Some(body) = bytes.get(4..4 + len) else { break };
        if let Ok(FromHelper::Placeholders(list)) = FromHelper::decode(body) {
            out.extend(list);
        }
        bytes = &bytes[4 + len..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_parse_and_a_torn_tail_is_dropped() {
        let a =
            Placeholder { path: "/p/.envrc".into(), dir: false, contents: String::new(), dev: 8, ino: 9, changed: 1 };
        let b = Placeholder { path: "/p/.git".into(), dir: true, contents: String::new(), dev: 8, ino: 10, changed: 2 };
        let mut stream = Vec::new();
        for p in [&a, &b] {
            let body = FromHelper::Placeholders(vec![p.clone()]).encode();
            stream.extend((body.len() as u32).to_le_bytes());
            stream.extend(body);
        }
        assert_eq!(parse(&stream), vec![a.clone(), b]);
        assert_eq!(parse(&stream[..stream.len() - 1]), vec![a]);
        assert!(parse(&[1, 0]).is_empty());
    }
}
