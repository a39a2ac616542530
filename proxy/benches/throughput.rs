//! Throughput, latency, bulk and memory of the proxy against a local HTTPS upstream, with a
//! direct connection and mitmproxy (if `MITMDUMP` points at `mitmdump`) measured in the same
//! run as baselines. Run: `cargo bench -p authsome-proxy` (release profile).
//!
//! The proxy and the upstream each run in a child process (this binary re-executed with
//! `--proxy-child` / `--upstream-child`), the load generator in the parent; the proxy's
//! resident memory and CPU time are read from `/proc/<pid>/`. All three share the machine's
//! cores.

use std::convert::Infallible;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
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
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, SanType};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use secrecy::SecretString;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

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
        Ok(Injection {
            headers: vec![(http::header::AUTHORIZATION, http::HeaderValue::from_static("Bearer bench-secret"))],
            query: vec![],
            secret: SecretString::from("bench-secret"),
        })
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

fn proxy_child(upstream_port: u16, upstream_ca: &Path, proxy_ca_out: &Path) {
    let runtime = match std::env::var("BENCH_PROXY_RUNTIME").as_deref() {
        Ok("current") => tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap(),
        Ok(n) if n.parse::<usize>().is_ok() => {
            tokio::runtime::Builder::new_multi_thread().worker_threads(n.parse().unwrap()).enable_all().build().unwrap()
        }
        _ => tokio::runtime::Runtime::new().unwrap(),
    };
    runtime.block_on(async {
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
                connect_to: ConnectTo::parse_list(&format!("{HOST}:443:127.0.0.1:{upstream_port}")).unwrap(),
                allow_private: false,
                connect_timeout: Duration::from_secs(5),
                system_roots: false,
            },
            inspect_all: false,
            run_token: Some(TOKEN.into()),
            egress: EgressPolicy::default(),
        };
        let proxy = Proxy::new(config, Arc::new(StaticSource), Arc::new(NoEvents)).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("{}", listener.local_addr().unwrap().port());
        std::io::stdout().flush().unwrap();
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
    let provider = authsome_proxy::crypto_provider();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::default();
    ca.distinguished_name.push(DnType::CommonName, "bench upstream CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::default();
    leaf.subject_alt_names =
        vec![SanType::DnsName(HOST.try_into().unwrap()), SanType::IpAddress("127.0.0.1".parse().unwrap())];
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())))
        .unwrap();
    server.alpn_protocols = if std::env::var("BENCH_UPSTREAM_ALPN").as_deref() == Ok("h1") {
        vec![b"http/1.1".to_vec()]
    } else {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    };
    Pki { ca_pem: ca_cert.pem(), server: Arc::new(server) }
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

fn connector(ca_pem_path: &Path) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_pem_path).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(authsome_proxy::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

async fn open(way: &Way) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    let tcp = match &way.route {
        Dial::Direct(addr) => TcpStream::connect(addr).await.unwrap(),
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

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Interleaved rounds per measure; `BENCH_ROUNDS` overrides.
fn rounds() -> usize {
    std::env::var("BENCH_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3)
}

/// CPU time (user + system) of a process so far, from `/proc/<pid>/stat`.
fn cpu_time(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

/// Requests per second, and CPU microseconds per request of (this process, the proxy).
async fn throughput(way: &Way, proxy_pid: u32) -> (f64, f64, f64) {
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
    let start = Instant::now();
    let (own0, proxy0) = (cpu_time("self"), cpu_time(&proxy_pid.to_string()));
    tokio::time::sleep(phase()).await;
    let done = count.load(Ordering::Relaxed) - start_count;
    let elapsed = start.elapsed();
    let (own1, proxy1) = (cpu_time("self"), cpu_time(&proxy_pid.to_string()));
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let per = |d: Duration| d.as_secs_f64() * 1e6 / done as f64;
    (done as f64 / elapsed.as_secs_f64(), per(own1 - own0), per(proxy1 - proxy0))
}

async fn latency(way: &Way) -> Duration {
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
    samples[samples.len() / 2]
}

async fn bulk(way: &Way) -> f64 {
    let mut sender = open(way).await;
    get(&mut sender, "/bulk", way.is_direct()).await;
    let start = Instant::now();
    let mut bytes = 0u64;
    while start.elapsed() < phase() {
        let (n, _) = get(&mut sender, "/bulk", way.is_direct()).await;
        assert_eq!(n as usize, BULK_SIZE);
        bytes += n;
    }
    bytes as f64 / start.elapsed().as_secs_f64() / (1024.0 * 1024.0)
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
    for chunk in 0..IDLE_CONNECTIONS / 50 {
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
        let _ = chunk;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib(pid);
    drop(senders);
    (before, after)
}

// ---------------------------------------------------------------- mitmproxy

struct Mitm {
    child: Child,
    port: u16,
    ca: PathBuf,
}

fn start_mitmdump(dir: &Path, upstream_ca: &Path) -> Result<Mitm, String> {
    let Some(mitmdump) = std::env::var_os("MITMDUMP") else {
        return Err("MITMDUMP is not set (e.g. MITMDUMP=/opt/mitm/bin/mitmdump)".into());
    };
    if !Path::new(&mitmdump).exists() {
        return Err(format!("MITMDUMP={} does not exist", mitmdump.to_string_lossy()));
    }
    let addon = dir.join("inject.py");
    std::fs::write(&addon, "def request(flow):\n    flow.request.headers['authorization'] = 'Bearer bench-secret'\n")
        .map_err(|e| e.to_string())?;
    let port =
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
    let confdir = dir.join("mitm-conf");
    let child = Command::new(&mitmdump)
        .args(["-q", "--listen-host", "127.0.0.1", "--listen-port", &port.to_string()])
        .arg("--set")
        .arg(format!("confdir={}", confdir.display()))
        .arg("--set")
        .arg(format!("ssl_verify_upstream_trusted_ca={}", upstream_ca.display()))
        .arg("-s")
        .arg(&addon)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("could not start mitmdump: {e}"))?;
    let ca = confdir.join("mitmproxy-ca-cert.pem");
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if ca.exists() && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(Mitm { child, port, ca });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err("mitmdump did not start listening within 30 s".into())
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

/// Start the proxy in a child process; returns it and its port.
fn spawn_proxy(upstream_port: u16, upstream_ca: &Path, proxy_ca: &Path) -> (Child, u16) {
    let port = upstream_port.to_string();
    spawn_child(&["--proxy-child".as_ref(), port.as_ref(), upstream_ca.as_os_str(), proxy_ca.as_os_str()])
}

/// Re-execute this binary in a child role; it prints its port and serves until stdin closes.
fn spawn_child(args: &[&std::ffi::OsStr]) -> (Child, u16) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let port: u16 = line.trim().parse().expect("proxy child printed its port");
    (child, port)
}

fn basic(token: &str) -> String {
    use base64::Engine;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{token}:")))
}

async fn run() {
    let dir = tempfile::tempdir().unwrap();
    // The upstream runs in its own process, as a real server would: the direct baseline
    // then pays the same cross-process wake-ups as the proxied runs.
    let upstream_ca = dir.path().join("upstream-ca.pem");
    let (mut upstream_child, upstream_port) = spawn_child(&["--upstream-child".as_ref(), upstream_ca.as_os_str()]);
    let upstream: SocketAddr = ([127, 0, 0, 1], upstream_port).into();

    let proxy_ca = dir.path().join("proxy-ca.pem");
    let (mut child, proxy_port) = spawn_proxy(upstream.port(), &upstream_ca, &proxy_ca);
    let proxy_pid = child.id();

    let direct = Way {
        name: "direct",
        route: Dial::Direct(upstream),
        tls: connector(&upstream_ca),
        server_name: ServerName::try_from(HOST).unwrap(),
    };
    let ours = Way {
        name: "authsome",
        route: Dial::Proxy(([127, 0, 0, 1], proxy_port).into(), format!("{HOST}:443"), Some(basic(TOKEN))),
        tls: connector(&proxy_ca),
        server_name: ServerName::try_from(HOST).unwrap(),
    };
    let mitm = start_mitmdump(dir.path(), &upstream_ca);
    let mitm_way = mitm.as_ref().ok().map(|m| Way {
        name: "mitmproxy",
        route: Dial::Proxy(([127, 0, 0, 1], m.port).into(), format!("127.0.0.1:{}", upstream.port()), None),
        tls: connector(&m.ca),
        server_name: ServerName::try_from("127.0.0.1").unwrap(),
    });
    // Sanity: without a header the upstream says so; every measured route sees one.
    {
        let mut s = open(&direct).await;
        assert_eq!(&get(&mut s, "/small", false).await.1[..], b"ok:none");
    }

    println!(
        "authsome-proxy benchmark (release); upstream https on loopback, client/proxy/upstream share {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{} interleaved rounds per measure, {:.1} s phases; figures are medians over rounds",
        rounds(),
        phase().as_secs_f64()
    );
    if let Err(reason) = &mitm {
        println!("mitmproxy column skipped: {reason}");
    }
    let mut ways = vec![&direct, &ours];
    if let Some(m) = &mitm_way {
        ways.push(m);
    }

    // Rounds interleave the ways, and each figure is the median over rounds, so a change
    // in background load on the machine shifts all columns alike instead of one.
    let rounds = rounds();
    let mut rps_rounds = vec![Vec::new(); ways.len()];
    let mut cpu_rounds = vec![Vec::new(); ways.len()];
    for _ in 0..rounds {
        for (i, way) in ways.iter().enumerate() {
            let (r, own, proxy) = throughput(way, proxy_pid).await;
            rps_rounds[i].push(r);
            cpu_rounds[i].push((own, proxy));
        }
    }
    let mut lat_rounds = vec![Vec::new(); ways.len()];
    for _ in 0..rounds {
        for (i, way) in ways.iter().enumerate() {
            lat_rounds[i].push(latency(way).await.as_secs_f64());
        }
    }
    let mut mib_rounds = vec![Vec::new(); ways.len()];
    for _ in 0..rounds {
        for (i, way) in ways.iter().enumerate() {
            mib_rounds[i].push(bulk(way).await);
        }
    }
    let rps: Vec<f64> = rps_rounds.into_iter().map(median).collect();
    let lat: Vec<Duration> = lat_rounds.into_iter().map(|v| Duration::from_secs_f64(median(v))).collect();
    let mib: Vec<f64> = mib_rounds.into_iter().map(median).collect();
    let cpu: Vec<(f64, f64)> = cpu_rounds
        .into_iter()
        .map(|v| (median(v.iter().map(|c| c.0).collect()), median(v.iter().map(|c| c.1).collect())))
        .collect();
    let (rss_before, rss_after) = idle_memory(&ours, proxy_pid).await;
    // The same on a fresh proxy that has not carried the load phases first.
    let fresh_ca = dir.path().join("fresh-proxy-ca.pem");
    let (mut fresh, fresh_port) = spawn_proxy(upstream.port(), &upstream_ca, &fresh_ca);
    let fresh_way = Way {
        name: "authsome (fresh)",
        route: Dial::Proxy(([127, 0, 0, 1], fresh_port).into(), format!("{HOST}:443"), Some(basic(TOKEN))),
        tls: connector(&fresh_ca),
        server_name: ServerName::try_from(HOST).unwrap(),
    };
    let (fresh_before, fresh_after) = idle_memory(&fresh_way, fresh.id()).await;
    drop(fresh.stdin.take());
    let _ = fresh.wait();

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!();
    println!("| measure | direct | authsome | ratio / added | mitmproxy | ratio / added | target |");
    println!("|---|---|---|---|---|---|---|");
    let mitm_cell = |v: Option<String>| v.unwrap_or_else(|| "skipped".into());
    println!(
        "| (a) small GETs, {CONNECTIONS} keep-alive connections, req/s | {:.0} | {:.0} | {:.2} | {} | {} | ratio >= 0.5 |",
        rps[0],
        rps[1],
        rps[1] / rps[0],
        mitm_cell(rps.get(2).map(|v| format!("{v:.0}"))),
        mitm_cell(rps.get(2).map(|v| format!("{:.2}", v / rps[0]))),
    );
    println!(
        "| (b) median latency, 1 connection, ms | {:.3} | {:.3} | +{:.3} | {} | {} | added <= 0.15 ms |",
        ms(lat[0]),
        ms(lat[1]),
        ms(lat[1]) - ms(lat[0]),
        mitm_cell(lat.get(2).map(|v| format!("{:.3}", ms(*v)))),
        mitm_cell(lat.get(2).map(|v| format!("+{:.3}", ms(*v) - ms(lat[0])))),
    );
    println!(
        "| (c) bulk download ({} MiB bodies), MiB/s | {:.0} | {:.0} | {:.2} | {} | {} | ratio >= 0.7 |",
        BULK_SIZE >> 20,
        mib[0],
        mib[1],
        mib[1] / mib[0],
        mitm_cell(mib.get(2).map(|v| format!("{v:.0}"))),
        mitm_cell(mib.get(2).map(|v| format!("{:.2}", v / mib[0]))),
    );
    println!(
        "| (a') CPU per request: load generator / authsome process, us | {:.1} | {:.1} / {:.1} | | {} | | |",
        cpu[0].0,
        cpu[1].0,
        cpu[1].1,
        mitm_cell(cpu.get(2).map(|c| format!("{:.1} / (mitmdump not measured)", c.0))),
    );
    println!(
        "| (d) proxy RSS with {IDLE_CONNECTIONS} open MITM connections, MiB | | fresh {:.1} (before {:.1}); after (a)-(c) {:.1} (before {:.1}) | | | | <= 40 MiB |",
        fresh_after as f64 / 1024.0,
        fresh_before as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        rss_before as f64 / 1024.0,
    );

    drop(child.stdin.take());
    let _ = child.wait();
    drop(upstream_child.stdin.take());
    let _ = upstream_child.wait();
    if let Ok(mut m) = mitm {
        let _ = m.child.kill();
        let _ = m.child.wait();
    }
}
