//! The sidecar container's process: `authsome __authsome-container-sidecar PORTS`, PID 1 of a
//! container started with `--network none` and `NET_ADMIN` (docs/container.md).
//!
//! It owns the network namespace the workload joins: `lo` up, every destination made local,
//! the capture listeners bound (the same code the namespace backend's helper runs), then each
//! captured TCP connection, DNS query and inner-proxy connection is forwarded to the host's
//! authsome over the run's Unix socket, opened with the run's token. It holds no credential and
//! does no TLS: MITM, injection and audit stay on the host. It exits when the host's end of its
//! control stream closes; as PID 1 of the pid namespace the workload shares, its exit takes the
//! workload with it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use authsome_netns::{CaptureSocket, SandboxSpec};
use tokio::io::Interest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket, UnixStream};

use super::channel::{self, Hello, SIDECAR_DIR};
use crate::run::INNER_PROXY_PORT;

/// `argv[1]` that makes the binary the sidecar.
pub const SIDECAR_ARG: &str = "__authsome-container-sidecar";

/// Call first thing in `main`: if `argv[1]` is [`SIDECAR_ARG`], run the sidecar and exit.
/// The container janitor (`super::janitor`) is dispatched here too.
pub fn maybe_run() {
    let args: Vec<String> = std::env::args().take(7).collect();
    if let Some(code) = super::janitor::maybe_run(&args) {
        std::process::exit(code);
    }
    if args.get(1).map(String::as_str) != Some(SIDECAR_ARG) {
        return;
    }
    let ports = args.get(2).map(|list| parse_ports(list)).unwrap_or_default();
    std::process::exit(run(Path::new(SIDECAR_DIR), ports));
}

/// `"8443,9000"` → ports; `-` (no extra port) or garbage entries give nothing.
fn parse_ports(list: &str) -> Vec<u16> {
    list.split(',').filter_map(|p| p.parse().ok()).filter(|p| *p != 0).collect()
}

fn run(dir: &Path, ports: Vec<u16>) -> i32 {
    // The workload shares this process's pid namespace: not dumpable means its /proc/1/environ,
    // /proc/1/root (where the channel socket and token are), /proc/1/mem and fds are refused to
    // anything without CAP_SYS_PTRACE, which the workload never has.
    let _ = nix::sys::prctl::set_dumpable(false);
    let token = match std::fs::read_to_string(dir.join(channel::TOKEN_NAME)) {
        Ok(token) => token.trim().to_string(),
        Err(e) => {
            eprintln!("authsome sidecar: cannot read the run token: {e}");
            return 125;
        }
    };
    let mut spec = SandboxSpec::new("true", "/", "/");
    spec.tcp_ports = ports;
    spec.dns = true;
    spec.inner_proxy_port = Some(INNER_PROXY_PORT);
    // Before any runtime exists: the capture set-up runs its own short-lived one.
    let capture = authsome_netns::capture_current_namespace(&spec).map_err(|e| e.to_string());
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("authsome sidecar: cannot start: {e}");
            return 125;
        }
    };
    let link = Link { socket: dir.join(channel::SOCKET_NAME), token: Arc::from(token) };
    runtime.block_on(serve(link, capture))
}

/// How to reach the host: the socket path and the run's token.
#[derive(Clone)]
struct Link {
    socket: PathBuf,
    token: Arc<str>,
}

impl Link {
    async fn open(&self, hello: &Hello) -> std::io::Result<UnixStream> {
        let mut stream = UnixStream::connect(&self.socket).await?;
        stream.write_all(&channel::encode(&self.token, hello)).await?;
        Ok(stream)
    }
}

async fn serve(link: Link, capture: Result<Vec<CaptureSocket>, String>) -> i32 {
    let mut control = match link.open(&Hello::Control).await {
        Ok(stream) => stream,
        Err(e) => {
            eprintln!("authsome sidecar: cannot reach authsome on the host: {e}");
            return 125;
        }
    };
    let sockets = match capture {
        Ok(sockets) => sockets,
        Err(e) => {
            let _ = control.write_all(format!("failed {e}\n").as_bytes()).await;
            return 125;
        }
    };
    for socket in sockets {
        if let Err(e) = spawn_forwarder(socket, &link) {
            let _ = control.write_all(format!("failed cannot serve a capture socket: {e}\n").as_bytes()).await;
            return 125;
        }
    }
    if control.write_all(b"ready\n").await.is_err() {
        return 125;
    }
    lifeline(control).await
}

/// Live until the host's end of the control stream closes (its run ended, or it was killed)
/// or the engine stops us; reap the orphans a PID 1 inherits meanwhile.
async fn lifeline(mut control: UnixStream) -> i32 {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut child)) = (signal(SignalKind::terminate()), signal(SignalKind::child())) else {
        return 125;
    };
    let mut buf = [0u8; 64];
    loop {
        tokio::select! {
            read = control.read(&mut buf) => match read {
                Ok(0) | Err(_) => return 0,
                Ok(_) => {}
            },
            _ = term.recv() => return 0,
            _ = child.recv() => reap(),
        }
    }
}

fn reap() {
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
}

fn spawn_forwarder(socket: CaptureSocket, link: &Link) -> std::io::Result<()> {
    let link = link.clone();
    match socket {
        CaptureSocket::Tcp { listener, .. } => {
            listener.set_nonblocking(true)?;
            let listener = TcpListener::from_std(listener)?;
            tokio::spawn(accept_loop(listener, link, Hello::Tcp));
        }
        CaptureSocket::InnerProxy { listener } => {
            listener.set_nonblocking(true)?;
            let listener = TcpListener::from_std(listener)?;
            tokio::spawn(accept_loop(listener, link, |_| Hello::Proxy));
        }
        CaptureSocket::Udp { socket, .. } => {
            socket.set_nonblocking(true)?;
            let socket = Arc::new(UdpSocket::from_std(socket)?);
            tokio::spawn(dns_loop(socket, link));
        }
    }
    Ok(())
}

async fn accept_loop(listener: TcpListener, link: Link, hello: fn(SocketAddr) -> Hello) {
    loop {
        let mut stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // EMFILE and friends: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let link = link.clone();
        tokio::spawn(async move {
            // With every destination local, the accepted socket's own address is what the
            // workload dialled (IPv4 arrives IPv4-mapped on the dual-stack listener).
            let Ok(local) = stream.local_addr() else { return };
            let original = SocketAddr::new(local.ip().to_canonical(), local.port());
            let _ = stream.set_nodelay(true);
            let Ok(mut host) = link.open(&hello(original)).await else { return };
            let _ = tokio::io::copy_bidirectional(&mut stream, &mut host).await;
        });
    }
}

async fn dns_loop(socket: Arc<UdpSocket>, link: Link) {
    let mut buf = vec![0u8; 4096];
    loop {
        let received = socket.async_io(Interest::READABLE, || crate::run::dns::receive(&socket, &mut buf)).await;
        let Ok((len, Some(from), destination)) = received else { continue };
        let query = buf[..len].to_vec();
        let socket = socket.clone();
        let link = link.clone();
        tokio::spawn(async move {
            let ask = ask_host(&link, &query);
            let Ok(Ok(reply)) = tokio::time::timeout(Duration::from_secs(5), ask).await else { return };
            if !reply.is_empty() {
                let _ = socket
                    .async_io(Interest::WRITABLE, || crate::run::dns::send(&socket, &reply, &from, &destination))
                    .await;
            }
        });
    }
}

async fn ask_host(link: &Link, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = link.open(&Hello::Dns).await?;
    let len = u16::try_from(query.len()).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    stream.write_all(&len.to_be_bytes()).await?;
    stream.write_all(query).await?;
    let reply_len = stream.read_u16().await? as usize;
    let mut reply = vec![0u8; reply_len];
    stream.read_exact(&mut reply).await?;
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_argument() {
        assert_eq!(parse_ports("-"), Vec::<u16>::new());
        assert_eq!(parse_ports("8443,9000"), vec![8443, 9000]);
        assert_eq!(parse_ports("8443,x,0"), vec![8443]);
    }
}
