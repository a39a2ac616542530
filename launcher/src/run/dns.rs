//! The sandbox's DNS stub: answers queries caught on the sandbox's :53/udp sockets with the
//! proxy's fake-IP resolver. A reply must come from the address the client asked (an IPv6
//! client's source is `::1`, and a connected resolver drops answers from elsewhere), so each
//! reply carries the received destination as `IP_PKTINFO` / `IPV6_PKTINFO`.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::AsRawFd;
use std::sync::Arc;

use authsome_proxy::dns::{DeniedName, FakeDns};
use nix::libc;
use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, sendmsg};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Where a query was sent (its reply must come from there).
pub(crate) enum Destination {
    V4(libc::in_pktinfo),
    V6(libc::in6_pktinfo),
    Unknown,
}

/// Serve one capture socket until it fails.
pub(crate) async fn serve(
    socket: std::net::UdpSocket,
    resolver: Arc<FakeDns>,
    on_denied: impl Fn(DeniedName) + Send + 'static,
) -> io::Result<()> {
    socket.set_nonblocking(true)?;
    let socket = UdpSocket::from_std(socket)?;
    let mut buf = vec![0u8; 4096];
    loop {
        let (len, from, destination) = socket.async_io(Interest::READABLE, || receive(&socket, &mut buf)).await?;
        let Some(from) = from else { continue };
        let Some((reply, denied)) = resolver.respond(&buf[..len]) else { continue };
        if let Some(denied) = denied {
            on_denied(denied);
        }
        let _ = socket.async_io(Interest::WRITABLE, || send(&socket, &reply, &from, &destination)).await;
    }
}

pub(crate) fn receive(socket: &UdpSocket, buf: &mut [u8]) -> io::Result<(usize, Option<SockaddrStorage>, Destination)> {
    let mut iov = [IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!(libc::in_pktinfo, libc::in6_pktinfo);
    let msg = recvmsg::<SockaddrStorage>(socket.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::empty())
        .map_err(io::Error::from)?;
    let mut destination = Destination::Unknown;
    if let Ok(cmsgs) = msg.cmsgs() {
        for cmsg in cmsgs {
            match cmsg {
                ControlMessageOwned::Ipv4PacketInfo(info) => destination = Destination::V4(info),
                ControlMessageOwned::Ipv6PacketInfo(info) => destination = Destination::V6(info),
                _ => {}
            }
        }
    }
    Ok((msg.bytes, msg.address, destination))
}

pub(crate) fn send(
    socket: &UdpSocket,
    reply: &[u8],
    to: &SockaddrStorage,
    destination: &Destination,
) -> io::Result<usize> {
    let iov = [IoSlice::new(reply)];
    let fd = socket.as_raw_fd();
    let sent = match destination {
        Destination::V4(received) => {
            // Reply from the address the query was sent to.
            let info =
                libc::in_pktinfo { ipi_ifindex: 0, ipi_spec_dst: received.ipi_addr, ipi_addr: received.ipi_addr };
            sendmsg(fd, &iov, &[ControlMessage::Ipv4PacketInfo(&info)], MsgFlags::empty(), Some(to))
        }
        Destination::V6(received) => {
            let info = libc::in6_pktinfo { ipi6_addr: received.ipi6_addr, ipi6_ifindex: 0 };
            sendmsg(fd, &iov, &[ControlMessage::Ipv6PacketInfo(&info)], MsgFlags::empty(), Some(to))
        }
        Destination::Unknown => sendmsg(fd, &iov, &[], MsgFlags::empty(), Some(to)),
    };
    sent.map_err(io::Error::from)
}
