//! Bigger socket reads under rustls.
//!
//! rustls asks its transport for at most one TLS record at a time (about 16 KiB), so a bulk
//! download through the proxy costs one `recv` per record on each side, and every `recv` also
//! runs the kernel's window-update path. [`ReadAhead`] reads up to [`CHUNK`] bytes per syscall and
//! hands them out record-sized. Writes pass straight through.
//!
//! Memory: a connection holds a buffer only while it has data in flight. When a read would block
//! with nothing buffered (the connection is idle) the buffer goes back to a small per-thread
//! spare list, so a thousand idle keep-alive connections cost no buffers and a busy connection
//! does not allocate (or zero) one per read.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes read from the socket per syscall, at most.
const CHUNK: usize = 64 * 1024;

/// Spare buffers kept per thread; more than this many connections busy at once allocate.
const SPARES: usize = 16;

thread_local! {
    static SPARE: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}

// `try_with`: a stream dropped while its thread exits finds the spare list gone; its buffer is
// then simply freed.
fn take_buffer() -> Box<[u8]> {
    SPARE.try_with(|spare| spare.borrow_mut().pop()).ok().flatten().unwrap_or_else(|| vec![0; CHUNK].into_boxed_slice())
}

fn give_back(buffer: Box<[u8]>) {
    let _ = SPARE.try_with(|spare| {
        let mut spare = spare.borrow_mut();
        if spare.len() < SPARES {
            spare.push(buffer);
        }
    });
}

/// A stream whose reads are served from a [`CHUNK`]-sized read-ahead buffer.
#[derive(Debug)]
pub struct ReadAhead<IO> {
    io: IO,
    /// Empty while the connection is idle.
    buffer: Box<[u8]>,
    start: usize,
    end: usize,
}

impl<IO> ReadAhead<IO> {
    pub(crate) fn new(io: IO) -> Self {
        ReadAhead { io, buffer: Box::default(), start: 0, end: 0 }
    }

    fn release(&mut self) {
        if !self.buffer.is_empty() {
            give_back(std::mem::take(&mut self.buffer));
        }
        self.start = 0;
        self.end = 0;
    }
}

impl<IO> Drop for ReadAhead<IO> {
    fn drop(&mut self) {
        self.release();
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for ReadAhead<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.start == this.end {
            // A read at least as big as ours gains nothing from a copy.
            if out.remaining() >= CHUNK {
                this.release();
                return Pin::new(&mut this.io).poll_read(cx, out);
            }
            if this.buffer.is_empty() {
                this.buffer = take_buffer();
            }
            let mut chunk = ReadBuf::new(&mut this.buffer);
            match Pin::new(&mut this.io).poll_read(cx, &mut chunk) {
                Poll::Ready(Ok(())) => {
                    this.start = 0;
                    this.end = chunk.filled().len();
                }
                other => {
                    // Idle (or failed): nothing is buffered, so the buffer can serve another
                    // connection meanwhile.
                    this.release();
                    return other;
                }
            }
            if this.end == 0 {
                this.release();
                return Poll::Ready(Ok(())); // end of stream
            }
        }
        let n = out.remaining().min(this.end - this.start);
        out.put_slice(&this.buffer[this.start..this.start + n]);
        this.start += n;
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for ReadAhead<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl hyper_util::client::legacy::connect::Connection for ReadAhead<tokio::net::TcpStream> {
    fn connected(&self) -> hyper_util::client::legacy::connect::Connected {
        self.io.connected()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn small_reads_see_every_byte_in_order_and_the_end() {
        let (mut near, far) = tokio::io::duplex(256 * 1024);
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let expected = data.clone();
        let writer = tokio::spawn(async move {
            near.write_all(&data).await.unwrap();
            near.shutdown().await.unwrap();
        });
        let mut reader = ReadAhead::new(far);
        let mut got = Vec::new();
        let mut piece = [0u8; 4096];
        loop {
            let n = reader.read(&mut piece).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&piece[..n]);
        }
        writer.await.unwrap();
        assert_eq!(got, expected);
        // Finished: the buffer went back to the spare list.
        assert!(reader.buffer.is_empty());
    }

    /// Counts the reads that reach the wrapped stream.
    struct Counting<R> {
        inner: R,
        reads: usize,
    }

    impl<R: AsyncRead + Unpin> AsyncRead for Counting<R> {
        fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
            self.reads += 1;
            Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    #[tokio::test]
    async fn record_sized_reads_reach_the_socket_a_chunk_at_a_time() {
        // 256 KiB already waiting, read as rustls does: one 16 KiB record at a time.
        let data = vec![7u8; 4 * CHUNK];
        let mut reader = ReadAhead::new(Counting { inner: &data[..], reads: 0 });
        let mut piece = vec![0u8; 16 * 1024 + 5];
        let mut total = 0;
        loop {
            let n = reader.read(&mut piece).await.unwrap();
            if n == 0 {
                break;
            }
            total += n;
        }
        assert_eq!(total, data.len());
        // Four full chunks and the read that sees the end, instead of 17 record-sized reads.
        assert_eq!(reader.io.reads, 5);
    }

    #[tokio::test]
    async fn an_idle_stream_holds_no_buffer_and_writes_pass_through() {
        let (near, mut far) = tokio::io::duplex(1024);
        let mut stream = ReadAhead::new(near);
        stream.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        far.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
        // Nothing to read yet: the read is pending and the buffer is released.
        let mut piece = [0u8; 16];
        let pending = tokio::time::timeout(std::time::Duration::from_millis(20), stream.read(&mut piece)).await;
        assert!(pending.is_err());
        assert!(stream.buffer.is_empty());
        far.write_all(b"pong").await.unwrap();
        let n = stream.read(&mut piece).await.unwrap();
        assert_eq!(&piece[..n], b"pong");
    }
}
