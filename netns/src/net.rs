//! Inside the new network namespace: `lo` up, the `local` routes that make every destination
//! "here" (local routes on lo, no netfilter), and the capture listeners. Runs in the helper.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, OwnedFd};

use netlink_packet_route::route::{RouteScope, RouteType};
use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, SockaddrIn, SockaddrIn6, bind, listen, setsockopt, socket, sockopt,
};
use rtnetlink::{LinkUnspec, RouteMessageBuilder};

use crate::error::{Failure, Step};
use crate::proto::{SocketInfo, SocketKind};
use crate::spec::SandboxSpec;

/// `lo` is interface 1 in every new network namespace.
const LOOPBACK_INDEX: u32 = 1;
const RT_TABLE_LOCAL: u32 = 255;

fn netlink_failure(step: Step, err: rtnetlink::Error) -> Failure {
    let source = match err {
        rtnetlink::Error::NetlinkError(msg) => msg.to_io(),
        other => io::Error::other(other.to_string()),
    };
    Failure::new(step, source, "")
}

/// `ip link set lo up; ip route add local 0.0.0.0/0 dev lo table local; ip -6 route add local
/// ::/0 dev lo table local`, over rtnetlink in a current-thread runtime that is gone when this
/// returns (the helper must be single-threaded again before it forks).
///
/// Returns whether IPv6 is available: on a kernel booted with `ipv6.disable=1` the IPv6 route
/// cannot exist (`EAFNOSUPPORT`), and neither can IPv6 traffic, so capture is IPv4 only.
pub fn configure_loopback() -> Result<bool, Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| Failure::new(Step::Netlink, e, "tokio runtime"))?;
    runtime.block_on(async {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(|e| Failure::new(Step::Netlink, e, ""))?;
        let connection = tokio::spawn(connection);
        let result = async {
            handle
                .link()
                .set(LinkUnspec::new_with_index(LOOPBACK_INDEX).up().build())
                .execute()
                .await
                .map_err(|e| netlink_failure(Step::LoopbackUp, e))?;
            let v4 = RouteMessageBuilder::<Ipv4Addr>::new()
                .table_id(RT_TABLE_LOCAL)
                .kind(RouteType::Local)
                .scope(RouteScope::Host)
                .destination_prefix(Ipv4Addr::UNSPECIFIED, 0)
                .output_interface(LOOPBACK_INDEX)
                .build();
            handle.route().add(v4).execute().await.map_err(|e| netlink_failure(Step::LocalRouteV4, e))?;
            let v6 = RouteMessageBuilder::<Ipv6Addr>::new()
                .table_id(RT_TABLE_LOCAL)
                .kind(RouteType::Local)
                .scope(RouteScope::Host)
                .destination_prefix(Ipv6Addr::UNSPECIFIED, 0)
                .output_interface(LOOPBACK_INDEX)
                .build();
            match handle.route().add(v6).execute().await.map_err(|e| netlink_failure(Step::LocalRouteV6, e)) {
                Ok(()) => Ok(true),
                Err(f) if f.source.raw_os_error() == Some(libc::EAFNOSUPPORT) => Ok(false),
                Err(f) => Err(f),
            }
        }
        .await;
        connection.abort();
        result
    })
}

fn tcp_dual_stack(port: u16) -> io::Result<OwnedFd> {
    let fd = socket(AddressFamily::Inet6, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    setsockopt(&fd, sockopt::Ipv6V6Only, &false)?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    bind(fd.as_raw_fd(), &SockaddrIn6::from(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, port, 0, 0)))?;
    listen(&fd, Backlog::new(1024).unwrap_or(Backlog::MAXCONN))?;
    Ok(fd)
}

fn tcp_v4(ip: Ipv4Addr, port: u16) -> io::Result<OwnedFd> {
    let fd = socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    bind(fd.as_raw_fd(), &SockaddrIn::from(SocketAddrV4::new(ip, port)))?;
    listen(&fd, Backlog::new(1024).unwrap_or(Backlog::MAXCONN))?;
    Ok(fd)
}

fn udp_v4(port: u16) -> io::Result<OwnedFd> {
    let fd = socket(AddressFamily::Inet, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)?;
    setsockopt(&fd, sockopt::Ipv4PacketInfo, &true)?;
    bind(fd.as_raw_fd(), &SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)))?;
    Ok(fd)
}

fn udp_v6_only(port: u16) -> io::Result<OwnedFd> {
    let fd = socket(AddressFamily::Inet6, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)?;
    setsockopt(&fd, sockopt::Ipv6V6Only, &true)?;
    setsockopt(&fd, sockopt::Ipv6RecvPacketInfo, &true)?;
    // lets the launcher answer from the queried address, which is local only by route
    setsockopt(&fd, sockopt::IpFreebind, &true)?;
    bind(fd.as_raw_fd(), &SockaddrIn6::from(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, port, 0, 0)))?;
    Ok(fd)
}

/// Bind every capture listener of `spec`, in the order the launcher gets them: TCP ports
/// (`[::]:p`, dual-stack), then `0.0.0.0:53/udp` and `[::]:53/udp`, then the inner proxy.
///
/// The UDP sockets report each datagram's destination (`IP_PKTINFO` / `IPV6_RECVPKTINFO`): an
/// IPv6 client's source is `::1`, so the answer must name the queried address as its source
/// (sendmsg with the same pktinfo) or a connected client drops it.
pub fn bind_capture(spec: &SandboxSpec, ipv6: bool) -> Result<Vec<(SocketInfo, OwnedFd)>, Failure> {
    let mut out = Vec::new();
    let fail = |e: io::Error, what: String| Failure::new(Step::BindCapture, e, what);
    for port in spec.capture_ports() {
        let fd = if ipv6 {
            tcp_dual_stack(port).map_err(|e| fail(e, format!("[::]:{port}/tcp")))?
        } else {
            tcp_v4(Ipv4Addr::UNSPECIFIED, port).map_err(|e| fail(e, format!("0.0.0.0:{port}/tcp")))?
        };
        out.push((SocketInfo { kind: SocketKind::Tcp, port }, fd));
    }
    if spec.dns {
        let v4 = udp_v4(53).map_err(|e| fail(e, "0.0.0.0:53/udp".into()))?;
        out.push((SocketInfo { kind: SocketKind::Udp, port: 53 }, v4));
        if ipv6 {
            let v6 = udp_v6_only(53).map_err(|e| fail(e, "[::]:53/udp".into()))?;
            out.push((SocketInfo { kind: SocketKind::Udp, port: 53 }, v6));
        }
    }
    if let Some(port) = spec.inner_proxy_port {
        let fd = tcp_v4(Ipv4Addr::LOCALHOST, port).map_err(|e| fail(e, format!("127.0.0.1:{port}/tcp")))?;
        out.push((SocketInfo { kind: SocketKind::InnerProxy, port }, fd));
    }
    Ok(out)
}
