//! Test fixtures: a test PKI (`authsome_testkit::Pki`), a local HTTPS echo
//! upstream (rustls, h2 + http/1.1) plus a plain-http one, a fake credential source that
//! counts calls, an event recorder, and a proxy wired to all of them through connect-to.
//!
//! The echo endpoint answers with what it received as hex-encoded JSON (`echoed` decodes it):
//! the proxy masks the real credential out of responses, so an echo in clear would only ever
//! show the mask. The `/reflect/...` endpoints echo the credential in clear on purpose, to
//! test that masking.
#![allow(dead_code)]

pub mod tls_client;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authsome_proxy::{
    CertificateAuthority, ConnectTo, CredentialSource, EgressPolicy, EventSink, Injection, Owner, Placeholder, Proxy,
    ProxyConfig, ProxyEvent, ResolveError, ResolveRequest, Route, RouteTable, UpstreamConfig,
};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use secrecy::SecretString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const TOKEN: &str = "runtoken123";
pub const PH_OPENAI_WORK: &str = "sk-authsome_openaiWorkPlaceholder0001";
pub const PH_GITHUB: &str = "ghp_authsome_githubPlaceholder000000001";
pub const PH_TIE_B: &str = "tb-authsome_tieBPlaceholder0000000001";
pub const HOSTS: &[&str] = &[
    "api.example.test",
    "gh.example.test",
    "tie.example.test",
    "other.example.test",
    "q.example.test",
    "10.9.8.7",
    "scoped.example.test",
];

type Body = BoxBody<Bytes, Infallible>;

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed()
}

fn echo_json<B>(req: &Request<B>, body: &[u8]) -> serde_json::Value {
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into()))
        .collect();
    serde_json::json!({
        "method": req.method().as_str(),
        "uri": req.uri().path_and_query().map(ToString::to_string).unwrap_or_default(),
        "version": format!("{:?}", req.version()),
        "authority": req
            .uri()
            .authority()
            .map(ToString::to_string)
            .or_else(|| req.headers().get("host").map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())),
        "headers": headers,
        "body": String::from_utf8_lossy(body),
    })
}

pub fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

/// Answers that echo the credential in clear: `/reflect/<how>`; the echoed text is the
/// request's `authorization` header, or its query string for `/reflect/query`.
fn reflect(how: &str, req: &Request<Incoming>) -> Option<Response<Body>> {
    let authorization = req.headers().get("authorization").map(|v| v.as_bytes().to_vec()).unwrap_or_default();
    let echo = if how == "query" { req.uri().query().unwrap_or("").as_bytes().to_vec() } else { authorization };
    let mut text = b"before ".to_vec();
    text.extend_from_slice(&echo);
    text.extend_from_slice(b" after");
    Some(match how {
        "header" => Response::builder()
            .header("x-echo", http::HeaderValue::from_bytes(&echo).unwrap())
            .body(full(Bytes::from_static(b"ok")))
            .unwrap(),
        "body" | "query" => Response::new(full(text)),
        "split" => {
            // One frame per piece, cut inside the credential, sent apart.
            let cut = 7 + echo.len() / 2;
            let pieces = [text[..cut - 3].to_vec(), text[cut - 3..cut].to_vec(), text[cut..].to_vec()];
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(1);
            tokio::spawn(async move {
                for piece in pieces {
                    if tx.send(Ok(Frame::data(Bytes::from(piece)))).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            });
            let stream =
                futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
            Response::new(StreamBody::new(stream).boxed())
        }
        "gzip" => {
            use std::io::Write;
            // Compressed although the request may have asked for identity.
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(&text).unwrap();
            Response::builder().header("content-encoding", "gzip").body(full(encoder.finish().unwrap())).unwrap()
        }
        "br" => Response::builder().header("content-encoding", "br").body(full(text)).unwrap(),
        "second" => {
            // Both values of a two-value credential, in a header and in the body.
            let second = req.headers().get("x-app-key").map(|v| v.as_bytes().to_vec()).unwrap_or_default();
            let mut body = b"app ".to_vec();
            body.extend_from_slice(&second);
            body.extend_from_slice(b" key ");
            body.extend_from_slice(&echo);
            Response::builder()
                .header("x-echo-app", http::HeaderValue::from_bytes(&second).unwrap())
                .body(full(body))
                .unwrap()
        }
        "accept-encoding" => {
            Response::new(full(req.headers().get("accept-encoding").map(|v| v.as_bytes().to_vec()).unwrap_or_default()))
        }
        _ => return None,
    })
}

async fn upstream_handler(mut req: Request<Incoming>, hits: Arc<AtomicUsize>) -> Result<Response<Body>, Infallible> {
    hits.fetch_add(1, Ordering::Relaxed);
    let path = req.uri().path().to_owned();
    if let Some(how) = path.strip_prefix("/reflect/")
        && let Some(response) = reflect(how, &req)
    {
        return Ok(response);
    }
    if let Some(n) = path.strip_prefix("/bytes/") {
        let n: usize = n.parse().unwrap_or(0);
        return Ok(Response::new(full(vec![b'x'; n])));
    }
    if path == "/small" {
        return Ok(Response::new(full(Bytes::from_static(b"ok"))));
    }
    if path == "/stream" {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(1);
        tokio::spawn(async move {
            for i in 0..5 {
                if tx.send(Ok(Frame::data(Bytes::from(format!("chunk{i}\n"))))).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
        return Ok(Response::new(StreamBody::new(stream).boxed()));
    }
    if path == "/ws" || path == "/ws-reflect" {
        let reflected = req.headers().get("authorization").map(|v| v.as_bytes().to_vec());
        let reflect = path == "/ws-reflect";
        let echo = hex(echo_json(&req, b"").to_string().as_bytes());
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(upgraded) = on_upgrade.await {
                let mut io = TokioIo::new(upgraded);
                let mut line = echo.into_bytes();
                line.push(b'\n');
                let _ = io.write_all(&line).await;
                if reflect {
                    let mut clear = reflected.unwrap_or_default();
                    clear.push(b'\n');
                    // Two writes, cut inside the credential.
                    let cut = clear.len() / 2;
                    let _ = io.write_all(&clear[..cut]).await;
                    let _ = io.flush().await;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let _ = io.write_all(&clear[cut..]).await;
                }
                let mut buf = [0u8; 1024];
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        });
        return Ok(Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .body(full(Bytes::new()))
            .unwrap());
    }
    let authorization = req.headers().get("authorization").map(|v| v.as_bytes().to_vec());
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    let req = Request::from_parts(parts, ());
    let echo = echo_json(&req, &body);
    let mut response = Response::new(full(hex(echo.to_string().as_bytes())));
    if let Some(token) = path.strip_prefix("/unauthorized-unless/") {
        let want = format!("Bearer {token}");
        if authorization.as_deref() != Some(want.as_bytes()) {
            *response.status_mut() = StatusCode::UNAUTHORIZED;
        }
    }
    Ok(response)
}

/// A local upstream: HTTPS (rustls, h2 + http/1.1) and plain http, same handler.
pub struct Upstream {
    pub tls_addr: SocketAddr,
    pub plain_addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    pub ca_pem: String,
}

pub async fn start_upstream() -> Upstream {
    let pki = authsome_testkit::Pki::new(HOSTS);
    let hits = Arc::new(AtomicUsize::new(0));
    let tls_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plain_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = Upstream {
        tls_addr: tls_listener.local_addr().unwrap(),
        plain_addr: plain_listener.local_addr().unwrap(),
        hits: hits.clone(),
        ca_pem: pki.ca_pem.clone(),
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(pki.server_config());
    let tls_hits = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = tls_listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let hits = tls_hits.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                serve_upstream_conn(TokioIo::new(tls), hits).await;
            });
        }
    });
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = plain_listener.accept().await else {
                return;
            };
            tokio::spawn(serve_upstream_conn(TokioIo::new(tcp), hits.clone()));
        }
    });
    upstream
}

async fn serve_upstream_conn<IO>(io: TokioIo<IO>, hits: Arc<AtomicUsize>)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| upstream_handler(req, hits.clone()));
    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection_with_upgrades(io, service)
        .await;
}

/// Credential source: `Bearer real-<owner>-<connection>-<generation>`; a forced refresh bumps
/// the generation. Counts calls.
#[derive(Default)]
pub struct FakeSource {
    pub calls: AtomicUsize,
    pub forced: AtomicUsize,
    pub generation: Mutex<HashMap<String, usize>>,
    pub requests: Mutex<Vec<ResolveRequest>>,
    /// Owners whose resolution fails.
    pub failing: Vec<String>,
    pub query_param: Option<String>,
    /// Put the token in `Authorization: Basic base64(token:)` instead of Bearer.
    pub basic: bool,
    /// Appended to every token (characters that need percent-encoding in a query).
    pub token_suffix: String,
    /// A second secret set as `x-app-key` (a two-value credential), declared as such.
    pub second_secret: Option<String>,
}

impl FakeSource {
    pub fn token(owner: &str, connection: Option<&str>, generation: usize) -> String {
        format!("real-{owner}-{}-{generation}", connection.unwrap_or("default"))
    }
}

impl CredentialSource for FakeSource {
    async fn resolve(&self, req: &ResolveRequest) -> Result<Injection, ResolveError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.requests.lock().unwrap().push(req.clone());
        if self.failing.contains(&req.owner.0) {
            return Err(ResolveError::NotConnected { owner: req.owner.clone(), connection: req.connection.clone() });
        }
        let key = format!("{}/{:?}", req.owner, req.connection);
        let generation = {
            let mut map = self.generation.lock().unwrap();
            let g = map.entry(key).or_insert(0);
            if req.force_refresh {
                self.forced.fetch_add(1, Ordering::SeqCst);
                *g += 1;
            }
            *g
        };
        let token = Self::token(&req.owner.0, req.connection.as_deref(), generation) + &self.token_suffix;
        let rendered = if self.basic {
            use base64::Engine;
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{token}:")))
        } else {
            format!("Bearer {token}")
        };
        let mut value: http::HeaderValue = rendered.parse().unwrap();
        value.set_sensitive(true);
        let mut headers = if self.query_param.is_some() { vec![] } else { vec![(http::header::AUTHORIZATION, value)] };
        if let Some(second) = &self.second_secret {
            headers.push((http::HeaderName::from_static("x-app-key"), second.parse().unwrap()));
        }
        Ok(Injection::new(SecretString::from(token.clone()))
            .with_other_secrets(self.second_secret.iter().map(|s| SecretString::from(s.clone())).collect())
            .with_headers(headers)
            .with_query(self.query_param.iter().map(|q| (q.clone(), token.clone())).collect())
            // Where the query-parameter provider's client may carry the placeholder itself.
            .with_client_headers(if self.query_param.is_some() { vec![http::header::AUTHORIZATION] } else { vec![] }))
    }
}

#[derive(Default)]
pub struct Recorder {
    pub events: Mutex<Vec<ProxyEvent>>,
}

impl EventSink for Recorder {
    fn record(&self, event: ProxyEvent) {
        self.events.lock().unwrap().push(event);
    }
}

impl Recorder {
    pub fn all(&self) -> Vec<ProxyEvent> {
        self.events.lock().unwrap().clone()
    }
}

pub struct Options {
    pub run_token: Option<String>,
    pub inspect_all: bool,
    pub egress: EgressPolicy,
    pub source: FakeSource,
    pub allowed_ports: Vec<u16>,
    pub allow_private: bool,
    /// Add the connect-to entries that send every test host to the local upstream.
    pub connect_to: bool,
    /// More connect-to entries (`host:port:addr:port`), e.g. for raw TCP servers.
    pub extra_connect_to: Vec<String>,
    /// Asked before an askable refusal.
    pub hook: Option<Arc<dyn authsome_proxy::DenialHook>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            run_token: Some(TOKEN.to_owned()),
            inspect_all: false,
            egress: EgressPolicy::default(),
            source: FakeSource::default(),
            allowed_ports: Vec::new(),
            allow_private: false,
            connect_to: true,
            extra_connect_to: Vec::new(),
            hook: None,
        }
    }
}

pub fn routes() -> RouteTable {
    let route = |owner: &str, host: &str, excluded: &[&str]| Route {
        owner: Owner::from(owner),
        hosts: vec![host.parse().unwrap()],
        path_prefix: None,
        excluded_paths: excluded.iter().map(|e| (*e).to_owned()).collect(),
    };
    let scoped = Route { path_prefix: Some("/api".into()), ..route("scoped", "scoped.example.test", &[]) };
    let ph = |value: &str, owner: &str, connection: &str| Placeholder {
        value: value.to_owned(),
        owner: Owner::from(owner),
        connection: connection.to_owned(),
    };
    RouteTable::new(
        vec![
            route("openai", "api.example.test", &["/oauth/token"]),
            route("github", "gh.example.test", &[]),
            route("tie-a", "tie.example.test", &[]),
            route("tie-b", "tie.example.test", &[]),
            route("q", "q.example.test", &[]),
            route("ip", "10.9.8.7", &[]),
            route("unverified", "unverified.example.test", &[]),
            scoped,
        ],
        vec![
            ph(PH_OPENAI_WORK, "openai", "work"),
            ph(PH_GITHUB, "github", "default"),
            ph(PH_TIE_B, "tie-b", "default"),
        ],
    )
}

pub struct Harness {
    pub proxy_addr: SocketAddr,
    pub upstream: Upstream,
    pub source: Arc<FakeSource>,
    pub events: Arc<Recorder>,
    pub proxy_ca_path: PathBuf,
    pub upstream_ca_path: PathBuf,
    pub proxy: Proxy<FakeSource, Recorder>,
    pub dir: tempfile::TempDir,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

pub fn connect_to_for(upstream: &Upstream) -> Vec<ConnectTo> {
    // Routed to the upstream, whose certificate does not name it.
    let mut list = format!("unverified.example.test:443:127.0.0.1:{},", upstream.tls_addr.port());
    for host in HOSTS {
        list.push_str(&format!("{host}:443:127.0.0.1:{},", upstream.tls_addr.port()));
        list.push_str(&format!("{host}:80:127.0.0.1:{},", upstream.plain_addr.port()));
    }
    ConnectTo::parse_list(&list).unwrap()
}

pub async fn harness(options: Options) -> Harness {
    let upstream = start_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::ephemeral().unwrap();
    let proxy_ca_path = dir.path().join("proxy-ca.pem");
    std::fs::write(&proxy_ca_path, ca.cert_pem()).unwrap();
    let upstream_ca_path = dir.path().join("upstream-ca.pem");
    std::fs::write(&upstream_ca_path, &upstream.ca_pem).unwrap();
    let config = ProxyConfig {
        ca: Arc::new(ca),
        routes: Arc::new(routes()),
        upstream: UpstreamConfig {
            extra_roots_pem: Some(upstream_ca_path.clone()),
            connect_to: {
                let mut list = if options.connect_to { connect_to_for(&upstream) } else { Vec::new() };
                list.extend(options.extra_connect_to.iter().map(|e| ConnectTo::parse(e).unwrap()));
                list
            },
            allow_private: options.allow_private,
            connect_timeout: Duration::from_secs(5),
            system_roots: false,
        },
        inspect_all: options.inspect_all,
        run_token: options.run_token,
        egress: options.egress,
        allowed_ports: options.allowed_ports,
    };
    let source = Arc::new(options.source);
    let events = Arc::new(Recorder::default());
    let proxy = Proxy::with_hook(config, source.clone(), events.clone(), options.hook).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let serving = proxy.clone();
    tokio::spawn(async move {
        serving
            .serve(listener, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    Harness { proxy_addr, upstream, source, events, proxy_ca_path, upstream_ca_path, proxy, dir, _shutdown: tx }
}

impl Harness {
    pub fn proxy_url(&self) -> String {
        format!("http://{TOKEN}@{}", self.proxy_addr)
    }

    /// Run curl through the proxy; returns (exit code, stdout).
    pub async fn curl(&self, args: &[&str]) -> (i32, String) {
        let output = tokio::process::Command::new("curl")
            .args(["-sS", "--max-time", "20", "--proxy", &self.proxy_url()])
            .args(args)
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .env_remove("HTTP_PROXY")
            .env_remove("http_proxy")
            .env_remove("CURL_CA_BUNDLE")
            .env_remove("SSL_CERT_FILE")
            .output()
            .await
            .expect("curl is installed");
        if !output.status.success() {
            eprintln!("curl stderr: {}", String::from_utf8_lossy(&output.stderr));
        }
        (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Send a raw CONNECT; returns the response head.
    pub async fn raw_connect(&self, authority: &str, auth: Option<&str>) -> (TcpStream, String) {
        let mut stream = TcpStream::connect(self.proxy_addr).await.unwrap();
        let mut request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
        if let Some(auth) = auth {
            request.push_str(&format!("Proxy-Authorization: {auth}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let head = read_head(&mut stream).await;
        (stream, head)
    }
}

pub fn basic_token() -> String {
    use base64::Engine;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{TOKEN}:")))
}

pub async fn read_head<R: tokio::io::AsyncRead + Unpin>(stream: &mut R) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.unwrap_or(0) == 0 {
            break;
        }
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// The echo's JSON: the body is hex (see the module doc).
fn echo_value(body: &str) -> serde_json::Value {
    let body = body.trim();
    let bytes: Option<Vec<u8>> = body
        .len()
        .is_multiple_of(2)
        .then(|| (0..body.len()).step_by(2).map(|i| u8::from_str_radix(body.get(i..i + 2)?, 16).ok()).collect())
        .flatten();
    let json = bytes.map(|b| String::from_utf8(b).unwrap()).unwrap_or_else(|| body.to_owned());
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("not JSON ({e}): {json}"))
}

/// The header values the upstream echo saw under `name`.
pub fn echoed(json: &str, name: &str) -> Vec<String> {
    let v = echo_value(json);
    v["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h[0].as_str() == Some(name))
        .map(|h| h[1].as_str().unwrap().to_owned())
        .collect()
}

pub fn echoed_field(json: &str, field: &str) -> String {
    let v = echo_value(json);
    v[field].as_str().unwrap_or_default().to_owned()
}
