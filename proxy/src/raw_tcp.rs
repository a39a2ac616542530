//! Raw TCP by policy: `--allow-tcp HOST:PORT` destinations and `--allow-host-port PORT` (the
//! host's loopback, named [`HOST_LOOPBACK_NAME`] inside the sandbox).
//!
//! Such a connection is relayed byte for byte: no TLS interception, no credential, nothing
//! parsed. The decision is made before a byte is read (SSH and database servers speak first),
//! from the destination name alone: the fake-IP DNS name of the address the child dialled, or
//! the CONNECT line. Matching is exact (host and port); there are no wildcards, so a rule
//! never opens more than the one destination it names. A destination is dialled by name
//! through the same [`Dialer`](crate::upstream::Dialer) as every other way out, so the SSRF
//! guard and `--allow-private` apply unchanged. Only `host.authsome.internal` goes to the
//! host's loopback, and only on the ports the user listed (docs/architecture.md, "Ports").

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::str::FromStr;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::credential::CredentialSource;
use crate::denial::{Denial, DenyRule};
use crate::engine::Engine;
use crate::events::{EventSink, ProxyEvent};
use crate::matching::normalize_host;
use crate::upstream::DialError;

/// The reserved name under which a sandbox reaches the host's loopback (`--allow-host-port`).
/// Never `localhost`: inside the sandbox that is the sandbox's own loopback.
pub const HOST_LOOPBACK_NAME: &str = "host.authsome.internal";

/// One `--allow-tcp HOST:PORT` destination: an exact host name (or IP literal) and a port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TcpDestination {
    /// The host, normalized (lower case, no trailing dot, IPv6 without brackets).
    pub host: String,
    /// The port (never 0).
    pub port: u16,
}

/// Why a `HOST:PORT` does not parse as a [`TcpDestination`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{entry:?}: {reason}")]
pub struct TcpDestinationError {
    /// The entry as given.
    pub entry: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl FromStr for TcpDestination {
    type Err = TcpDestinationError;

    /// `db.example.com:5432`, `10.0.0.5:5432`, `[fd00::5]:5432`.
    fn from_str(entry: &str) -> Result<Self, Self::Err> {
        let err = |reason| TcpDestinationError { entry: entry.to_owned(), reason };
        let trimmed = entry.trim();
        let (host, port) = if let Some(rest) = trimmed.strip_prefix('[') {
            let (host, rest) = rest.split_once(']').ok_or_else(|| err("an IPv6 address needs its closing ]"))?;
            (host, rest.strip_prefix(':').ok_or_else(|| err("expected HOST:PORT"))?)
        } else {
            let (host, port) = trimmed.rsplit_once(':').ok_or_else(|| err("expected HOST:PORT"))?;
            if host.contains(':') {
                return Err(err("write an IPv6 address in brackets: [fd00::5]:5432"));
            }
            (host, port)
        };
        let port: u16 = port.parse().map_err(|_| err("the port must be a number from 1 to 65535"))?;
        if port == 0 {
            return Err(err("the port must be a number from 1 to 65535"));
        }
        let host = normalize_host(host).into_owned();
        if host.is_empty() {
            return Err(err("the host is empty"));
        }
        if host.contains('*') {
            return Err(err("wildcards are not allowed: name the exact host"));
        }
        let valid = host.parse::<IpAddr>().is_ok()
            || host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !valid {
            return Err(err("not a host name or IP address"));
        }
        Ok(TcpDestination { host, port })
    }
}

impl fmt::Display for TcpDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// What to do with a connection, decided from its destination before reading from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RawRoute {
    /// Not a raw TCP destination: the HTTP(S) path decides.
    Http,
    /// Relay to this `--allow-tcp` destination.
    Relay { host: String, port: u16 },
    /// Relay to the host's loopback on this port (`--allow-host-port`).
    HostLoopback { port: u16 },
    /// Refuse (reset) the connection.
    Deny(Denial),
}

/// Counts the bytes read from and written to the client side of a relay.
struct Counted<IO> {
    inner: IO,
    read: u64,
    written: u64,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Counted<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.read += (buf.filled().len() - before) as u64;
        result
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Counted<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = result {
            self.written += n as u64;
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<S: CredentialSource, E: EventSink> Engine<S, E> {
    /// The raw-TCP decision for a transparent connection to `original_dst`, named `mapped` by
    /// the fake-IP DNS. A port the run captures for HTTP(S) stays with the HTTP path unless an
    /// exact `--allow-tcp` rule or the host-loopback name says otherwise; any other captured
    /// port is raw TCP only, refused unless a rule names the destination.
    pub(crate) fn raw_route_transparent(&self, mapped: Option<&str>, original_dst: SocketAddr) -> RawRoute {
        let port = original_dst.port();
        let http_port = self.allowed_ports.is_empty() || self.allowed_ports.contains(&port);
        let Some(name) = mapped else {
            // A raw IP the child chose: only an IP-literal rule names it.
            let literal = original_dst.ip().to_canonical().to_string();
            if self.egress.tcp_allowed(&literal, port) {
                return self.raw_route_named(&literal, port);
            }
            if http_port {
                return RawRoute::Http;
            }
            return RawRoute::Deny(Denial::new(literal, port, DenyRule::UnnamedAddress));
        };
        let name = normalize_host(name);
        if name == HOST_LOOPBACK_NAME || self.egress.tcp_allowed(&name, port) || !http_port {
            return self.raw_route_named(&name, port);
        }
        RawRoute::Http
    }

    /// The raw-TCP decision for `host:port` named by CONNECT or by a raw port's connection:
    /// the host-loopback name, an exact `--allow-tcp` rule, or a refusal.
    pub(crate) fn raw_route_named(&self, host: &str, port: u16) -> RawRoute {
        let host = normalize_host(host);
        if host == HOST_LOOPBACK_NAME {
            return match self.egress.check_host_port(port) {
                Ok(()) => RawRoute::HostLoopback { port },
                Err(denial) => RawRoute::Deny(denial),
            };
        }
        match self.egress.check_tcp(&host, port) {
            Ok(()) => RawRoute::Relay { host: host.into_owned(), port },
            Err(denial) => RawRoute::Deny(denial),
        }
    }

    /// Dial what `route` names (a `Relay` or `HostLoopback`).
    pub(crate) async fn dial_raw(&self, route: &RawRoute) -> Option<Result<TcpStream, DialError>> {
        match route {
            RawRoute::Relay { host, port } => Some(self.upstream.dialer.dial(host, *port).await),
            RawRoute::HostLoopback { port } => Some(self.upstream.dialer.dial_host_loopback(*port).await),
            RawRoute::Http | RawRoute::Deny(_) => None,
        }
    }

    /// Relay bytes both ways until either side is done, then record `TcpRelayed` with the
    /// byte counts. `initial` is data the client sent before the relay began (after a CONNECT
    /// head), forwarded first.
    pub(crate) async fn relay<IO>(&self, client: IO, mut upstream: TcpStream, initial: &[u8], host: &str, port: u16)
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        use tokio::io::AsyncWriteExt;
        let mut client = Counted { inner: client, read: 0, written: 0 };
        if (initial.is_empty() || upstream.write_all(initial).await.is_ok())
            && let Err(error) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await
        {
            tracing::debug!(%error, host, port, "tcp relay closed with an error");
        }
        self.events.record(ProxyEvent::TcpRelayed {
            host: host.to_owned(),
            port,
            bytes_out: client.read + initial.len() as u64,
            bytes_in: client.written,
        });
    }

    /// Serve a connection whose route is raw: dial, then relay; a refusal or failed dial is
    /// recorded and the connection closed (`reset` makes it a TCP reset where it can).
    pub(crate) async fn serve_raw<IO>(&self, stream: IO, route: RawRoute, reset: fn(&IO))
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let (host, port) = match &route {
            RawRoute::Relay { host, port } => (host.clone(), *port),
            RawRoute::HostLoopback { port } => (HOST_LOOPBACK_NAME.to_owned(), *port),
            RawRoute::Deny(denial) => {
                self.events.record(ProxyEvent::Denied { denial: denial.clone() });
                return reset(&stream);
            }
            RawRoute::Http => return,
        };
        match self.dial_raw(&route).await {
            Some(Ok(upstream)) => self.relay(stream, upstream, &[], &host, port).await,
            Some(Err(error)) => {
                let _ = self.dial_failed(&host, port, &error);
                reset(&stream);
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_parse_exactly() {
        let d: TcpDestination = "DB.Example.com.:5432".parse().unwrap();
        assert_eq!((d.host.as_str(), d.port), ("db.example.com", 5432));
        assert_eq!(d.to_string(), "db.example.com:5432");
        let v6: TcpDestination = "[FD00::5]:22".parse().unwrap();
        assert_eq!((v6.host.as_str(), v6.to_string().as_str()), ("fd00::5", "[fd00::5]:22"));
        assert_eq!("10.0.0.5:5432".parse::<TcpDestination>().unwrap().host, "10.0.0.5");
        for (bad, why) in [
            ("db.example.com", "HOST:PORT"),
            ("db.example.com:0", "1 to 65535"),
            ("db.example.com:99999", "1 to 65535"),
            ("db.example.com:ssh", "1 to 65535"),
            ("*.example.com:22", "wildcards"),
            (":22", "empty"),
            ("fd00::5:22", "brackets"),
            ("[fd00::5:22", "closing"),
            ("a b.com:22", "not a host"),
            ("a..com:22", "not a host"),
        ] {
            let e = bad.parse::<TcpDestination>().unwrap_err();
            assert!(e.reason.contains(why), "{bad}: {e}");
        }
    }
}
