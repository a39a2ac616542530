//! Per-host traffic counters for a run's report: connections, requests and bytes between the
//! child and the proxy, by destination host.
//!
//! Counted live (relaxed atomic adds on the client stream), not reported at connection end, so
//! a report taken when the child exits already holds what the child sent and received, also on
//! connections that are still open. Bytes are those on the child's side of the proxy: TLS
//! records for intercepted and tunnelled connections, the HTTP bytes for plain http. Plain-http
//! requests through the explicit listener count as requests without bytes (one proxy
//! connection may carry requests to several hosts).

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What one destination host saw during the run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrafficStats {
    /// Client connections opened to it (intercepted or tunnelled).
    pub connections: u64,
    /// HTTP requests on intercepted or plain-http connections (tunnels carry none we can see).
    pub requests: u64,
    /// Bytes from the child towards the host.
    pub bytes_up: u64,
    /// Bytes from the host back to the child.
    pub bytes_down: u64,
}

/// One host's live counters.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    connections: AtomicU64,
    requests: AtomicU64,
    up: AtomicU64,
    down: AtomicU64,
}

impl Counters {
    pub(crate) fn request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn sent_up(&self, n: usize) {
        self.up.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Every host's counters for one proxy instance.
#[derive(Debug, Default)]
pub(crate) struct Traffic {
    hosts: Mutex<HashMap<Arc<str>, Arc<Counters>>>,
}

impl Traffic {
    fn counters(&self, host: &str) -> Arc<Counters> {
        let mut hosts = self.hosts.lock().expect("traffic lock");
        if let Some(c) = hosts.get(host) {
            return c.clone();
        }
        let c = Arc::new(Counters::default());
        hosts.insert(host.into(), c.clone());
        c
    }

    /// A new client connection to `host`: its counters, the connection counted.
    pub(crate) fn connection(&self, host: &str) -> Arc<Counters> {
        let c = self.counters(host);
        c.connections.fetch_add(1, Ordering::Relaxed);
        c
    }

    /// One request to `host` on a connection not tied to it (explicit plain http).
    pub(crate) fn request(&self, host: &str) {
        self.counters(host).request();
    }

    /// What every host saw so far.
    pub(crate) fn snapshot(&self) -> BTreeMap<String, TrafficStats> {
        let hosts = self.hosts.lock().expect("traffic lock");
        hosts
            .iter()
            .map(|(host, c)| {
                let stats = TrafficStats {
                    connections: c.connections.load(Ordering::Relaxed),
                    requests: c.requests.load(Ordering::Relaxed),
                    bytes_up: c.up.load(Ordering::Relaxed),
                    bytes_down: c.down.load(Ordering::Relaxed),
                };
                (host.to_string(), stats)
            })
            .collect()
    }
}

/// A client stream whose reads count as bytes up and writes as bytes down.
pub(crate) struct Counted<IO> {
    inner: IO,
    counters: Arc<Counters>,
}

impl<IO> Counted<IO> {
    pub(crate) fn new(inner: IO, counters: Arc<Counters>) -> Self {
        Counted { inner, counters }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Counted<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            self.counters.sent_up(buf.filled().len() - before);
        }
        result
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Counted<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = result {
            self.counters.down.fetch_add(n as u64, Ordering::Relaxed);
        }
        result
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
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = result {
            self.counters.down.fetch_add(n as u64, Ordering::Relaxed);
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn reads_count_up_and_writes_count_down() {
        let traffic = Traffic::default();
        let (client, mut far) = tokio::io::duplex(64);
        let mut counted = Counted::new(client, traffic.connection("a.example"));
        far.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 5];
        counted.read_exact(&mut buf).await.unwrap();
        counted.write_all(b"hi").await.unwrap();
        traffic.request("a.example");
        traffic.connection("a.example");
        let stats = traffic.snapshot()["a.example"];
        assert_eq!(stats, TrafficStats { connections: 2, requests: 1, bytes_up: 5, bytes_down: 2 });
    }
}
