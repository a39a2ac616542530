//! The transparent way in (sandbox capture sockets): a TCP connection accepted elsewhere,
//! with the destination the child dialled.
//!
//! The host name comes from the TLS SNI, else the fake-IP DNS map for the destination, else
//! (plain HTTP) the `Host` header. Decisions are made by that name, never by the IP the child
//! chose; a raw IP that did not come from our DNS and carries no SNI is denied. Owned hosts
//! (or all, with `inspect_all`) are MITM'd by the same engine as the explicit path; others
//! are tunnelled by dialling the host name (SSRF guard applies).
//!
//! Before any of that, and before reading a byte, `crate::raw_tcp` decides whether the
//! destination is raw TCP (`--allow-tcp`, `host.authsome.internal`, or a captured port that is
//! not an HTTP(S) one): such a connection is relayed as it is, or reset.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::header;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;

use crate::credential::CredentialSource;
use crate::denial::{Denial, DenyRule};
use crate::dns::FakeDns;
use crate::engine::{Engine, Target};
use crate::events::{EventSink, ProxyEvent};
use crate::headers::text_response;
use crate::raw_tcp::RawRoute;
use crate::traffic::Counted;

const CLIENT_HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// A ClientHello larger than this is refused (post-quantum key shares fit well below).
const CLIENT_HELLO_LIMIT: usize = 64 * 1024;
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Replays bytes already read from a stream before reading on.
pub(crate) struct Rewind<IO> {
    prefix: Bytes,
    inner: IO,
}

impl<IO> Rewind<IO> {
    pub fn new(prefix: Bytes, inner: IO) -> Self {
        Rewind { prefix, inner }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Rewind<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Rewind<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Close a refused TCP connection with a reset (`SO_LINGER` 0 makes the close send RST).
fn reset_tcp(stream: &tokio::net::TcpStream) {
    let _ = stream.set_zero_linger();
}

/// Read until the ClientHello is complete; returns the bytes read and the SNI (if any).
async fn read_client_hello<IO: AsyncRead + Unpin>(
    stream: &mut IO,
    mut buf: Vec<u8>,
) -> io::Result<(Vec<u8>, Option<String>)> {
    let mut acceptor = rustls::server::Acceptor::default();
    let mut fed = 0;
    loop {
        while fed < buf.len() {
            let mut slice = &buf[fed..];
            let n = acceptor.read_tls(&mut slice)?;
            if n == 0 {
                break;
            }
            fed += n;
        }
        match acceptor.accept() {
            Ok(Some(accepted)) => {
                let sni = accepted.client_hello().server_name().map(str::to_owned);
                return Ok((buf, sni));
            }
            Ok(None) => {}
            Err((error, _alert)) => return Err(io::Error::new(io::ErrorKind::InvalidData, error)),
        }
        if buf.len() >= CLIENT_HELLO_LIMIT {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "ClientHello too large"));
        }
        buf.reserve(4096);
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}

impl<S: CredentialSource, E: EventSink> Engine<S, E> {
    pub(crate) async fn serve_capture_listener(self: Arc<Self>, listener: TcpListener, dns: Option<Arc<FakeDns>>) {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(%error, "capture accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(local) = stream.local_addr() else { continue };
            // Dual-stack sockets report IPv4 destinations as ::ffff:a.b.c.d.
            let original = SocketAddr::new(local.ip().to_canonical(), local.port());
            // As the explicit listener: without it Nagle holds back the tails of TLS records
            // and bulk transfers stall on delayed ACKs.
            let _ = stream.set_nodelay(true);
            let mapped = dns.as_deref().and_then(|d| d.name_for(original.ip()));
            let route = self.raw_route_transparent(mapped.as_deref(), original);
            let engine = self.clone();
            if route != RawRoute::Http {
                // Raw TCP: decided before reading (the server may speak first); a refusal is a
                // reset, as for a port nobody captures.
                let reset = |s: &tokio::net::TcpStream| {
                    let _ = s.set_zero_linger();
                };
                tokio::spawn(async move { engine.serve_raw(stream, route, reset).await });
                continue;
            }
            let dns = dns.clone();
            tokio::spawn(
                async move { engine.serve_transparent_stream(stream, original, dns.as_deref(), reset_tcp).await },
            );
        }
    }

    /// `reset` makes the stream's close a reset (RST), for a TLS connection refused by
    /// policy: the client sees "connection reset" at once rather than a handshake that ends.
    pub(crate) async fn serve_transparent_stream<IO>(
        self: Arc<Self>,
        mut stream: IO,
        original_dst: SocketAddr,
        dns: Option<&FakeDns>,
        reset: fn(&IO),
    ) where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        self.upstream.roots.prewarm();
        let mapped = dns.and_then(|d| d.name_for(original_dst.ip()));
        let route = self.raw_route_transparent(mapped.as_deref(), original_dst);
        if route != RawRoute::Http {
            return self.serve_raw(stream, route, |_| {}).await;
        }
        let port = original_dst.port();
        let mut first = vec![0u8; 4096];
        let n = match tokio::time::timeout(CLIENT_HELLO_TIMEOUT, stream.read(&mut first)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => return,
        };
        first.truncate(n);
        if first[0] != TLS_HANDSHAKE_RECORD {
            return self.serve_transparent_plain(Rewind::new(Bytes::from(first), stream), mapped, port).await;
        }
        let hello = tokio::time::timeout(CLIENT_HELLO_TIMEOUT, read_client_hello(&mut stream, first)).await;
        let (buf, sni) = match hello {
            Ok(Ok(pair)) => pair,
            Ok(Err(error)) => {
                tracing::debug!(%original_dst, %error, "not a usable ClientHello");
                return;
            }
            Err(_) => {
                tracing::debug!(%original_dst, "ClientHello timed out");
                return;
            }
        };
        let Some(host) = sni.or(mapped) else {
            let denial = Denial::new(original_dst.ip().to_string(), port, DenyRule::UnnamedAddress);
            self.events.record(ProxyEvent::Denied { denial });
            reset(&stream);
            return;
        };
        let Some(target) = Target::new(&host, port, true) else {
            return;
        };
        if self.admit(&target.host, port).await.is_err() {
            // No 403 can be delivered inside TLS: the connection is reset.
            reset(&stream);
            return;
        }
        let replay = Rewind::new(Bytes::from(buf), stream);
        if self.intercepts(&target.host) {
            return self.serve_tls(replay, target).await;
        }
        let Rewind { prefix, inner } = replay;
        match self.upstream.dialer.dial(&target.host, port).await {
            Ok(upstream) => {
                self.events.record(ProxyEvent::Tunnelled { host: target.host.to_string(), port });
                self.tunnel(inner, upstream, &prefix, &target.host).await;
            }
            Err(error) => {
                // The answer is not deliverable inside TLS; record it and close.
                let _ = self.dial_failed(&target.host, port, &error);
            }
        }
    }

    /// Plain HTTP from the sandbox: never injected; named by the fake-IP map or `Host`.
    async fn serve_transparent_plain<IO>(self: Arc<Self>, io: IO, mapped: Option<String>, port: u16)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let mapped: Option<Arc<str>> = mapped.map(Into::into);
        // Named by our DNS: the whole connection is that host's (bytes counted); else each
        // request names its own host and only requests are counted.
        let counters = mapped.as_deref().map(|host| self.traffic.connection(host));
        let io = Counted::new(io, counters.clone().unwrap_or_default());
        let engine = self.clone();
        let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
            let engine = engine.clone();
            let mapped = mapped.clone();
            let counters = counters.clone();
            async move {
                let from_header = || {
                    let value = req.headers().get(header::HOST)?.to_str().ok()?;
                    let authority: http::uri::Authority = value.parse().ok()?;
                    let host = authority.host();
                    Some(host.trim_start_matches('[').trim_end_matches(']').to_owned())
                };
                let host = match mapped.as_deref() {
                    Some(name) => Some(name.to_owned()),
                    None => from_header(),
                };
                let Some(target) = host.and_then(|h| Target::new(&h, port, false)) else {
                    return Ok::<_, Infallible>(text_response(
                        http::StatusCode::BAD_REQUEST,
                        "authsome: no Host header\n",
                    ));
                };
                if let Err(denial) = engine.admit(&target.host, port).await {
                    return Ok(denial.response(Some(req.headers())));
                }
                match &counters {
                    Some(counters) => counters.request(),
                    None => engine.traffic.request(&target.host),
                }
                Ok(engine.forward(&target, req, false).await)
            }
        });
        if let Err(error) = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades()
            .await
        {
            tracing::debug!(%error, "transparent http connection ended with an error");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rewind_replays_then_reads_on() {
        let (mut a, b) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut a, b" world").await.unwrap();
        drop(a);
        let mut r = Rewind::new(Bytes::from_static(b"hello"), b);
        let mut out = String::new();
        r.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "hello world");
    }
}
