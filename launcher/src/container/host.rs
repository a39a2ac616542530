//! The host's end of the sidecar channel: accepts the sidecar's streams on the run's Unix
//! socket, checks each hello's token, and hands every captured connection to the same proxy
//! entry the namespace backend uses (`Proxy::serve_transparent`), so policy, injection,
//! scrubbing and audit are identical in both backends. DNS queries are answered by the run's
//! fake-IP resolver; inner-proxy connections go to the run's explicit listener on loopback.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authsome_proxy::dns::FakeDns;
use authsome_proxy::{EventSink, Proxy, ProxyEvent};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::oneshot;

use super::channel::{self, Hello};
use crate::run::{RunEvents, VaultSource};

/// How long the sidecar may take to send its hello (a stream that says nothing is dropped).
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// What the host serves the sidecar with.
pub(crate) struct Host {
    pub(crate) token: String,
    pub(crate) proxy: Proxy<VaultSource, RunEvents>,
    pub(crate) resolver: Arc<FakeDns>,
    pub(crate) events: Arc<RunEvents>,
    /// The run's explicit proxy listener on the host's loopback.
    pub(crate) explicit: SocketAddr,
}

/// The sidecar's control stream, once it said `ready`: dropping it tells the sidecar to exit.
pub(crate) type Lifeline = Arc<Mutex<Option<UnixStream>>>;

/// Serve `listener` until the task is dropped. `ready` gets the sidecar's first report: `Ok`
/// once its capture is in place, or why it failed. Only the first control stream is taken.
pub(crate) async fn serve(
    listener: UnixListener,
    host: Arc<Host>,
    ready: oneshot::Sender<Result<(), String>>,
    lifeline: Lifeline,
) {
    let ready = Arc::new(Mutex::new(Some(ready)));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "sidecar channel accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let host = host.clone();
        let ready = ready.clone();
        let lifeline = lifeline.clone();
        tokio::spawn(async move {
            let Ok(Ok((hello, stream))) = tokio::time::timeout(HELLO_TIMEOUT, read_hello(stream, &host.token)).await
            else {
                return;
            };
            match hello {
                Hello::Control => {
                    let Some(ready) = ready.lock().ok().and_then(|mut slot| slot.take()) else { return };
                    control(stream, ready, &lifeline).await;
                }
                Hello::Tcp(original) => {
                    host.proxy.serve_transparent(stream, original, Some(&host.resolver)).await;
                }
                Hello::Dns => {
                    let _ = dns(stream, &host).await;
                }
                Hello::Proxy => {
                    if let Ok(mut upstream) = tokio::net::TcpStream::connect(host.explicit).await {
                        let mut stream = stream;
                        let _ = tokio::io::copy_bidirectional(&mut stream, &mut upstream).await;
                    }
                }
            }
        });
    }
}

async fn read_hello(mut stream: UnixStream, token: &str) -> std::io::Result<(Hello, UnixStream)> {
    let len = stream.read_u16().await? as usize;
    if len > channel::HELLO_LIMIT {
        return Err(std::io::ErrorKind::InvalidData.into());
    }
    let mut text = vec![0u8; len];
    stream.read_exact(&mut text).await?;
    let hello = channel::parse(&text, token).map_err(|e| {
        tracing::warn!(error = %e, "refused a stream on the sidecar channel");
        std::io::Error::from(std::io::ErrorKind::PermissionDenied)
    })?;
    Ok((hello, stream))
}

/// The sidecar's one status line, then its stream is kept as the lifeline.
async fn control(stream: UnixStream, ready: oneshot::Sender<Result<(), String>>, lifeline: &Lifeline) {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    let status = match reader.read_line(&mut line).await {
        Ok(_) if line.trim_end() == "ready" => Ok(()),
        Ok(0) => Err("the sidecar exited before its capture was in place".to_string()),
        Ok(_) => Err(line.trim_end().strip_prefix("failed ").unwrap_or(line.trim_end()).to_string()),
        Err(e) => Err(format!("lost the sidecar: {e}")),
    };
    if status.is_ok()
        && let Ok(mut slot) = lifeline.lock()
    {
        *slot = Some(reader.into_inner());
    }
    let _ = ready.send(status);
}

/// One DNS query per stream: `u16` length + packet in, `u16` length + reply out.
async fn dns(mut stream: UnixStream, host: &Host) -> std::io::Result<()> {
    let len = stream.read_u16().await? as usize;
    let mut query = vec![0u8; len];
    stream.read_exact(&mut query).await?;
    let reply = match host.resolver.respond(&query) {
        Some((reply, denied)) => {
            if let Some(denied) = denied {
                // Refused before any connection: audited as the HTTPS destination it would be.
                host.events.record(ProxyEvent::Denied { denial: denied.denial(443) });
            }
            reply
        }
        None => Vec::new(),
    };
    let reply_len = u16::try_from(reply.len()).map_err(|_| std::io::ErrorKind::InvalidData)?;
    stream.write_all(&reply_len.to_be_bytes()).await?;
    stream.write_all(&reply).await?;
    Ok(())
}
