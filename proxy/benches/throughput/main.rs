//! Throughput, latency, bulk and memory of the proxy against a local HTTPS upstream, with a
//! direct connection and mitmproxy (if `MITMDUMP` points at `mitmdump`) measured in the same
//! run as baselines. Run: `cargo bench -p authsome-proxy` (release profile).
//!
//! The proxy and the upstream each run in a child process (this binary re-executed with
//! `--proxy-child` / `--upstream-child`), the load generator in the parent; CPU time and
//! resident memory are read from `/proc`. All of them share the machine's cores.
//!
//! Ways measured, interleaved round by round so a change in background load shifts every
//! column alike:
//! - `direct`: the load generator talks TLS to the upstream itself (and sends the header the
//!   proxies inject);
//! - `explicit`: CONNECT through the proxy's `HTTP(S)_PROXY` listener (`Proxy::serve`);
//! - `transparent`: TLS with SNI and no CONNECT to a capture listener served by
//!   `Proxy::serve_capture`, the loop `run --sandbox` runs on its capture sockets (here on
//!   loopback, so the original destination's port is the listener's; `ConnectTo` sends the SNI
//!   host at that port to the local upstream);
//! - `mitmproxy`: mitmdump with an addon that sets the same header.
//!
//! Every figure is the median over rounds with the spread (min..max) beside it; ratios are
//! taken within a round, then the median. The CPU used by other processes on the machine
//! during the timed phases is reported, since it moves every figure.
//!
//! Knobs (environment): `BENCH_ROUNDS` (5), `BENCH_PHASE_SECS` (1.5), `BENCH_MEASURES`
//! (subset of `abcd`, default all), `BENCH_WAYS` (comma list of `explicit,transparent,mitmproxy`;
//! `direct` is always measured), `BENCH_PROXY_RUNTIME` (`current`, or a worker count; default
//! 2 workers as the launcher), `MITMDUMP`.

use std::convert::Infallible;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use authsome_proxy::{
    CertificateAuthority, ConnectTo, CredentialSource, EgressPolicy, Injection, NoEvents, Owner, Proxy, ProxyConfig,
    ResolveError, ResolveRequest, Route, RouteTable, UpstreamConfig,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use secrecy::SecretString;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

mod cpu;
mod mitm;
mod report;
#[path = "../../tests/common/tls_client.rs"]
mod tls_client;

use cpu::{PhaseCpu, Pids, phase_cpu, snapshot};
use mitm::start_mitmdump;
use report::{Series, cell, median, report};

const HOST: &str = "api.bench.test";
const TOKEN: &str = "benchtoken";
const CONNECTIONS: usize = 16;
/// Length of each timed phase; `BENCH_PHASE_SECS` overrides (profiling).
fn phase() -> Duration {
    let secs = std::env::var("BENCH_PHASE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(1.5);
    Duration::from_secs_f64(secs)
}
const LATENCY_REQUESTS: usize = 2000;
const BULK_SIZE: usize = 32 * 1024 * 1024;
const IDLE_CONNECTIONS: usize = 1000;

// ---------------------------------------------------------------- proxy child

struct StaticSource;

impl CredentialSource for StaticSource {
    async fn resolve(&self, _req: &ResolveRequest) -> Result<Injection, ResolveError> {
        Ok(Injection::new(SecretString::from("bench-secret"))
            .with_headers(vec![(http::header::AUTHORIZATION, http::HeaderValue::from_static("Bearer bench-secret"))]))
    }
}

fn upstream_child(ca_out: &Path) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let pki = pki();
        std::fs::write(ca_out, &pki.ca_pem).unwrap();
        let addr = start_upstream(pki.server).await;
        println!("{}", addr.port());
        std::io::stdout().flush().unwrap();
        let _ = tokio::task::spawn_blocking(|| {
            let mut sink = String::new();
            while std::io::stdin().read_line(&mut sink).unwrap_or(0) > 0 {}
        })
        .await;
    });
}

fn proxy_runtime_name() -> String {
    match std::env::var("BENCH_PROXY_RUNTIME").as_deref() {
        Ok("current") => "current-thread".into(),
        Ok(n) if n.parse::<usize>().is_ok() => format!("multi-thread, {n} workers"),
        _ => "multi-thread, 2 workers (as the launcher)".into(),
    }
}

fn proxy_child(upstream_port: u16, upstream_ca: &Path, proxy_ca_out: &Path) {
    let runtime = match std::env::var("BENCH_PROXY_RUNTIME").as_deref() {
        Ok("current") => tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap(),
        Ok(n) if n.parse::<usize>().is_ok() => {
            tokio::runtime::Builder::new_multi_thread().worker_threads(n.parse().unwrap()).enable_all().build().unwrap()
        }
        _ => tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap(),
    };
    runtime.block_on(async {
        // The transparent way in, bound first: its port is the original destination's.
        let capture = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let capture_port = capture.local_addr().unwrap().port();
        let ca = CertificateAuthority::ephemeral().unwrap();
        std::fs::write(proxy_ca_out, ca.cert_pem()).unwrap();
        let config = ProxyConfig {
            ca: Arc::new(ca),
            routes: Arc::new(RouteTable::new(
                vec![Route {
                    owner: Owner::from("bench"),
                    hosts: vec![HOST.parse().unwrap()],
                    path_prefix: None,
                    excluded_paths: vec![],
                }],
                vec![],
            )),
            upstream: UpstreamConfig {
                extra_roots_pem: Some(upstream_ca.to_owned()),
                connect_to: ConnectTo::parse_list(&format!(
                    "{HOST}:443:127.0.0.1:{upstream_port},{HOST}:{capture_port}:127.0.0.1:{upstream_port}"
                ))
                .unwrap(),
                allow_private: false,
                connect_timeout: Duration::from_secs(5),
                system_roots: false,
            },
            inspect_all: false,
            run_token: Some(TOKEN.into()),
            egress: EgressPolicy::default(),
            allowed_ports: Vec::new(),
        };
        let proxy = Proxy::new(config, Arc::new(StaticSource), Arc::new(NoEvents)).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("{} {capture_port}", listener.local_addr().unwrap().port());
        std::io::stdout().flush().unwrap();
        let transparent = proxy.clone();
        tokio::spawn(async move { transparent.serve_capture(capture, None).await });
        // Serve until the parent closes our stdin.
        let stdin_closed = tokio::task::spawn_blocking(|| {
            let mut sink = String::new();
            while std::io::stdin().read_line(&mut sink).unwrap_or(0) > 0 {}
        });
        proxy
            .serve(listener, async {
                let _ = stdin_closed.await;
            })
            .await
            .unwrap();
    });
}

// ---------------------------------------------------------------- upstream

struct Pki {
    ca_pem: String,
    server: Arc<rustls::ServerConfig>,
}

fn pki() -> Pki {
    let pki = authsome_testkit::Pki::new(&[HOST, "127.0.0.1"]);
    let mut server = (*pki.server_config()).clone();
    server.alpn_protocols = if std::env::var("BENCH_UPSTREAM_ALPN").as_deref() == Ok("h1") {
        vec![b"http/1.1".to_vec()]
    } else {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    };
    Pki { ca_pem: pki.ca_pem.clone(), server: Arc::new(server) }
}

static BULK: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();

async fn upstream_handler(req: http::Request<Incoming>) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let body = if req.uri().path() == "/bulk" {
        BULK.get_or_init(|| Bytes::from(vec![b'x'; BULK_SIZE])).clone()
    } else {
        let authorized = req.headers().contains_key(http::header::AUTHORIZATION);
        Bytes::from_static(if authorized { b"ok:auth" } else { b"ok:none" })
    };
    Ok(http::Response::new(Full::new(body)))
}

async fn start_upstream(server: Arc<rustls::ServerConfig>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(server);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service_fn(upstream_handler))
                    .await;
            });
        }
    });
    addr
}

// ---------------------------------------------------------------- clients

#[derive(Clone)]
enum Dial {
    Direct(SocketAddr),
    /// proxy address, CONNECT authority, Proxy-Authorization
    Proxy(SocketAddr, String, Option<String>),
    /// capture listener: TLS with SNI straight away, no CONNECT
    Transparent(SocketAddr),
}

#[derive(Clone)]
struct Way {
    name: &'static str,
    route: Dial,
    tls: tokio_rustls::TlsConnector,
    server_name: ServerName<'static>,
}

impl Way {
    fn is_direct(&self) -> bool {
        matches!(self.route, Dial::Direct(_))
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

async fn open(way: &Way) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    let tcp = match &way.route {
        Dial::Direct(addr) | Dial::Transparent(addr) => TcpStream::connect(addr).await.unwrap(),
        Dial::Proxy(addr, authority, auth) => {
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            let mut head = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
            if let Some(auth) = auth {
                head.push_str(&format!("Proxy-Authorization: {auth}\r\n"));
            }
            head.push_str("\r\n");
            tcp.write_all(head.as_bytes()).await.unwrap();
            let mut response = Vec::new();
            let mut byte = [0u8; 1];
            while !response.ends_with(b"\r\n\r\n") {
                let n = tokio::io::AsyncReadExt::read(&mut tcp, &mut byte).await.unwrap();
                assert!(n > 0, "proxy closed during CONNECT");
                response.push(byte[0]);
            }
            assert!(
                response.starts_with(b"HTTP/1.1 200") || response.starts_with(b"HTTP/1.0 200"),
                "{}: {}",
                way.name,
                String::from_utf8_lossy(&response)
            );
            tcp
        }
    };
    let _ = tcp.set_nodelay(true);
    let tls = way.tls.connect(way.server_name.clone(), tcp).await.unwrap();
    let io: Box<dyn Io> = Box::new(tls);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
}

async fn get(
    sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    path: &'static str,
    direct: bool,
) -> (u64, Bytes) {
    sender.ready().await.unwrap();
    let mut request = http::Request::get(path).header(http::header::HOST, HOST);
    if direct {
        // What the proxies inject, so the upstream sees the same request either way.
        request = request.header(http::header::AUTHORIZATION, "Bearer bench-secret");
    }
    let request = request.body(Empty::new()).unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert!(response.status().is_success(), "status {}", response.status());
    let mut body = response.into_body();
    let mut total = 0u64;
    let mut first = Bytes::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            total += data.len() as u64;
            if first.is_empty() {
                first = data;
            }
        }
    }
    (total, first)
}

// ---------------------------------------------------------------- measures

/// Requests per second over `CONNECTIONS` keep-alive connections, and the phase's CPU.
async fn throughput(way: &Way, pids: Pids) -> (f64, PhaseCpu) {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let way = way.clone();
        let stop = stop.clone();
        let count = count.clone();
        tasks.push(tokio::spawn(async move {
            let mut sender = open(&way).await;
            // warm up: the first request also opens the proxy's upstream connection
            let (_, body) = get(&mut sender, "/small", way.is_direct()).await;
            assert_eq!(&body[..], b"ok:auth", "{}: credential not injected", way.name);
            while !stop.load(Ordering::Relaxed) {
                get(&mut sender, "/small", way.is_direct()).await;
                count.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start_count = count.load(Ordering::Relaxed);
    let before = snapshot(pids);
    tokio::time::sleep(phase()).await;
    let done = count.load(Ordering::Relaxed) - start_count;
    let after = snapshot(pids);
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = after.at.duration_since(before.at).as_secs_f64();
    (done as f64 / elapsed, phase_cpu(before, after, way.name == "mitmproxy"))
}

async fn latency(way: &Way) -> f64 {
    let mut sender = open(way).await;
    for _ in 0..200 {
        get(&mut sender, "/small", way.is_direct()).await;
    }
    let mut samples = Vec::with_capacity(LATENCY_REQUESTS);
    for _ in 0..LATENCY_REQUESTS {
        let t = Instant::now();
        get(&mut sender, "/small", way.is_direct()).await;
        samples.push(t.elapsed());
    }
    samples.sort();
    samples[samples.len() / 2].as_secs_f64()
}

/// MiB/s downloading `BULK_SIZE` bodies on one connection, and the phase's CPU.
async fn bulk(way: &Way, pids: Pids) -> (f64, PhaseCpu) {
    let mut sender = open(way).await;
    get(&mut sender, "/bulk", way.is_direct()).await;
    let before = snapshot(pids);
    let mut bytes = 0u64;
    while before.at.elapsed() < phase() {
        let (n, _) = get(&mut sender, "/bulk", way.is_direct()).await;
        assert_eq!(n as usize, BULK_SIZE);
        bytes += n;
    }
    let after = snapshot(pids);
    let elapsed = after.at.duration_since(before.at).as_secs_f64();
    (bytes as f64 / elapsed / (1024.0 * 1024.0), phase_cpu(before, after, way.name == "mitmproxy"))
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

async fn idle_memory(way: &Way, pid: u32) -> (u64, u64) {
    let before = rss_kib(pid);
    let mut senders = Vec::with_capacity(IDLE_CONNECTIONS);
    for _ in 0..IDLE_CONNECTIONS / 50 {
        let mut opening = Vec::new();
        for _ in 0..50 {
            let way = way.clone();
            opening.push(tokio::spawn(async move {
                let mut sender = open(&way).await;
                get(&mut sender, "/small", way.is_direct()).await;
                sender
            }));
        }
        for o in opening {
            senders.push(o.await.unwrap());
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib(pid);
    drop(senders);
    (before, after)
}

// ---------------------------------------------------------------- main

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--upstream-child") {
        upstream_child(Path::new(&args[i + 1]));
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--proxy-child") {
        let port: u16 = args[i + 1].parse().unwrap();
        proxy_child(port, Path::new(&args[i + 2]), Path::new(&args[i + 3]));
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(run());
}

/// Start the proxy in a child process; returns it, its explicit port and its capture port.
fn spawn_proxy(upstream_port: u16, upstream_ca: &Path, proxy_ca: &Path) -> (Child, u16, u16) {
    let port = upstream_port.to_string();
    let (child, line) =
        spawn_child(&["--proxy-child".as_ref(), port.as_ref(), upstream_ca.as_os_str(), proxy_ca.as_os_str()]);
    let mut ports = line.split_whitespace().map(|p| p.parse::<u16>().expect("proxy child printed its ports"));
    let explicit = ports.next().expect("explicit port");
    let capture = ports.next().expect("capture port");
    (child, explicit, capture)
}

/// Re-execute this binary in a child role; it prints its port(s) and serves until stdin closes.
fn spawn_child(args: &[&std::ffi::OsStr]) -> (Child, String) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    (child, line.trim().to_owned())
}

fn basic(token: &str) -> String {
    use base64::Engine;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{token}:")))
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

async fn run() {
    let dir = tempfile::tempdir().unwrap();
    let measures = std::env::var("BENCH_MEASURES").unwrap_or_else(|_| "abcd".into());
    let wanted = std::env::var("BENCH_WAYS").unwrap_or_else(|_| "explicit,transparent,mitmproxy".into());
    let wanted: Vec<&str> = wanted.split(',').map(str::trim).collect();
    // The upstream runs in its own process, as a real server would: the direct baseline
    // then pays the same cross-process wake-ups as the proxied runs.
    let upstream_ca = dir.path().join("upstream-ca.pem");
    let (mut upstream_child, upstream_line) = spawn_child(&["--upstream-child".as_ref(), upstream_ca.as_os_str()]);
    let upstream: SocketAddr = ([127, 0, 0, 1], upstream_line.parse().expect("upstream port")).into();

    let proxy_ca = dir.path().join("proxy-ca.pem");
    let (mut child, proxy_port, capture_port) = spawn_proxy(upstream.port(), &upstream_ca, &proxy_ca);

    let direct = Way {
        name: "direct",
        route: Dial::Direct(upstream),
        tls: tls_client::h1_connector(&upstream_ca, true),
        server_name: ServerName::try_from(HOST).unwrap(),
    };
    let explicit = Way {
        name: "explicit",
        route: Dial::Proxy(([127, 0, 0, 1], proxy_port).into(), format!("{HOST}:443"), Some(basic(TOKEN))),
        tls: tls_client::h1_connector(&proxy_ca, true),
        server_name: ServerName::try_from(HOST).unwrap(),
    };
    let transparent = Way {
        name: "transparent",
        route: Dial::Transparent(([127, 0, 0, 1], capture_port).into()),
        tls: tls_client::h1_connector(&proxy_ca, true),
        server_name: ServerName::try_from(HOST).unwrap(),
    };
    let mitm = if wanted.contains(&"mitmproxy") {
        start_mitmdump(dir.path(), &upstream_ca)
    } else {
        Err("not in BENCH_WAYS".into())
    };
    let mitm_way = mitm.as_ref().ok().map(|m| Way {
        name: "mitmproxy",
        route: Dial::Proxy(([127, 0, 0, 1], m.port).into(), format!("127.0.0.1:{}", upstream.port()), None),
        tls: tls_client::h1_connector(&m.ca, true),
        server_name: ServerName::try_from("127.0.0.1").unwrap(),
    });
    let pids =
        Pids { proxy: child.id(), upstream: upstream_child.id(), mitm: mitm.as_ref().ok().map(|m| m.child.id()) };
    // Sanity: without a header the upstream says so; every measured route sees one.
    {
        let mut s = open(&direct).await;
        assert_eq!(&get(&mut s, "/small", false).await.1[..], b"ok:none");
    }

    let mut ways = vec![&direct];
    if wanted.contains(&"explicit") {
        ways.push(&explicit);
    }
    if wanted.contains(&"transparent") {
        ways.push(&transparent);
    }
    if let Some(m) = &mitm_way {
        ways.push(m);
    }
    let rounds = std::env::var("BENCH_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5usize);
    println!(
        "authsome-proxy benchmark (release): upstream https on loopback; load generator, proxy and upstream share {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{rounds} interleaved rounds per measure, {:.1} s phases; proxy runtime: {}; proxy pid {}, upstream pid {}",
        phase().as_secs_f64(),
        proxy_runtime_name(),
        pids.proxy,
        pids.upstream
    );
    if let Err(reason) = &mitm {
        println!("mitmproxy column skipped: {reason}");
    }
    let load_before = loadavg();

    // Rounds interleave the ways: a change in background load shifts all columns alike.
    let mut series = vec![Series::default(); ways.len()];
    if measures.contains('a') {
        for _ in 0..rounds {
            for (i, way) in ways.iter().enumerate() {
                let (r, cpu) = throughput(way, pids).await;
                series[i].rps.push(r);
                series[i].rps_cpu.push(cpu);
            }
        }
    }
    if measures.contains('b') {
        for _ in 0..rounds {
            for (i, way) in ways.iter().enumerate() {
                series[i].latency.push(latency(way).await);
            }
        }
    }
    if measures.contains('c') {
        for _ in 0..rounds {
            for (i, way) in ways.iter().enumerate() {
                let (m, cpu) = bulk(way, pids).await;
                series[i].mib.push(m);
                series[i].mib_cpu.push(cpu);
            }
        }
    }
    let load_after = loadavg();
    let memory = if measures.contains('d') && wanted.contains(&"explicit") {
        let after_load = idle_memory(&explicit, pids.proxy).await;
        // The same on a fresh proxy that has not carried the load phases first.
        let fresh_ca = dir.path().join("fresh-proxy-ca.pem");
        let (mut fresh, fresh_port, _) = spawn_proxy(upstream.port(), &upstream_ca, &fresh_ca);
        let fresh_way = Way {
            name: "explicit (fresh)",
            route: Dial::Proxy(([127, 0, 0, 1], fresh_port).into(), format!("{HOST}:443"), Some(basic(TOKEN))),
            tls: tls_client::h1_connector(&fresh_ca, true),
            server_name: ServerName::try_from(HOST).unwrap(),
        };
        let fresh_figures = idle_memory(&fresh_way, fresh.id()).await;
        drop(fresh.stdin.take());
        let _ = fresh.wait();
        Some((fresh_figures, after_load))
    } else {
        None
    };

    report(&ways, &series, memory, rounds);
    // Contention: what the rest of the machine did while the timed phases ran.
    let others: Vec<f64> =
        series.iter().flat_map(|s| s.rps_cpu.iter().chain(&s.mib_cpu)).map(|c| c.other_cores).collect();
    let steal: Vec<f64> =
        series.iter().flat_map(|s| s.rps_cpu.iter().chain(&s.mib_cpu)).map(|c| c.steal_cores).collect();
    println!();
    println!(
        "Contention: other processes used {} cores during the timed (a)/(c) phases (median (min..max)); steal {} cores; load average {load_before} before, {load_after} after.",
        cell(&others, 2),
        cell(&steal, 2),
    );
    if median(&others) > 0.2 {
        println!("WARNING: the machine was busy with other work; compare ratios, not absolute figures.");
    }

    drop(child.stdin.take());
    let _ = child.wait();
    drop(upstream_child.stdin.take());
    let _ = upstream_child.wait();
    if let Ok(mut m) = mitm {
        let _ = m.child.kill();
        let _ = m.child.wait();
    }
}
