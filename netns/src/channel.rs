//! The launcher ↔ helper socket: `AF_UNIX`/`SOCK_SEQPACKET`, one protocol message per packet,
//! capture sockets attached with `SCM_RIGHTS`.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg, sendmsg, setsockopt,
    socketpair, sockopt,
};
use nix::sys::time::TimeVal;

/// Biggest packet we ever send (a spec chunk plus its header).
const MAX_PACKET: usize = crate::proto::SPEC_CHUNK + 64;
/// The kernel's limit on fds per message.
const MAX_FDS: usize = 253;

#[derive(Debug)]
pub struct Channel {
    fd: OwnedFd,
}

impl Channel {
    /// Both ends, close-on-exec.
    pub fn pair() -> io::Result<(Channel, Channel)> {
        let (a, b) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)?;
        Ok((Channel { fd: a }, Channel { fd: b }))
    }

    /// Adopt an inherited fd (the helper's end).
    pub fn from_fd(fd: OwnedFd) -> Self {
        Channel { fd }
    }

    pub fn send(&self, msg: &[u8], fds: &[RawFd]) -> io::Result<()> {
        let iov = [IoSlice::new(msg)];
        let rights = [ControlMessage::ScmRights(fds)];
        let cmsgs: &[ControlMessage<'_>] = if fds.is_empty() { &[] } else { &rights };
        loop {
            match sendmsg::<()>(self.fd.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
                Ok(n) if n == msg.len() => return Ok(()),
                Ok(_) => return Err(io::Error::new(io::ErrorKind::WriteZero, "short write on the sandbox socket")),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The next message and the fds that came with it; `None` when the peer has gone.
    pub fn recv(&self) -> io::Result<Option<(Vec<u8>, Vec<OwnedFd>)>> {
        let mut buf = vec![0u8; MAX_PACKET];
        let mut cmsg = nix::cmsg_space!([RawFd; MAX_FDS]);
        loop {
            let mut iov = [IoSliceMut::new(&mut buf)];
            let msg = match recvmsg::<()>(self.fd.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC) {
                Ok(m) => m,
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            };
            let mut fds = Vec::new();
            for c in msg.cmsgs()? {
                if let ControlMessageOwned::ScmRights(raw) = c {
                    fds.extend(raw.into_iter().map(owned));
                }
            }
            if msg.flags.intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC) {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "truncated message on the sandbox socket"));
            }
            let n = msg.bytes;
            if n == 0 {
                return Ok(None);
            }
            buf.truncate(n);
            return Ok(Some((buf, fds)));
        }
    }

    pub fn set_recv_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        let tv = match timeout {
            Some(t) => TimeVal::new(t.as_secs() as _, t.subsec_micros() as _),
            None => TimeVal::new(0, 0),
        };
        setsockopt(&self.fd, sockopt::ReceiveTimeout, &tv)?;
        Ok(())
    }
}

impl AsFd for Channel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Channel {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

fn owned(raw: RawFd) -> OwnedFd {
    crate::sys::adopt_fd(raw)
}
