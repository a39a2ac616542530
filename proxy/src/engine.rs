//! The engine: one request path for every way in. A client stream, once its target host is
//! known, is either MITM'd here ([`Engine::serve_tls`]), served as plain HTTP
//! ([`Engine::forward`] with `tls = false`), or tunnelled opaquely ([`Engine::tunnel`]).
//!
//! Per request: TRACE/TRACK refused, hop-by-hop headers out, placeholders found, leak guard,
//! route selection, credential resolution, placeholder-location check, injection, forward on
//! the pooled client, one retry after a 401, and the response to an injected request scrubbed
//! of the credential (`crate::scrub`).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;

use crate::body::ProxyBody;
use crate::ca::CertificateAuthority;
use crate::config::{EgressPolicy, ProxyConfig};
use crate::credential::{CredentialSource, Injection, ResolveRequest};
use crate::denial::{Denial, DenialHook, DenyRule, Verdict};
use crate::events::{EventSink, ProxyEvent};
use crate::headers::{is_websocket_upgrade, strip_hop_by_hop, text_response};
use crate::inject::{self, Found};
use crate::matching::{Owner, RouteTable, Selection};
use crate::readahead::ReadAhead;
use crate::scrub::{Decoder, NeedleCache, ScrubbedBody};
use crate::traffic::{Counted, Counters, Traffic};
use crate::upstream::{
    DialError, H2_CONNECTION_WINDOW, H2_MAX_FRAME, H2_STREAM_WINDOW, TlsError, Upstream, find_dial_error,
};

/// Bodies up to this size are kept so an injected request can be retried after a 401.
pub const RETRY_BODY_LIMIT: u64 = 64 * 1024;
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

/// Where the connection's requests go. Fixed per client connection: decided from the CONNECT
/// line, the SNI, or the fake-IP map, never from what the child later puts in `Host`.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub host: Arc<str>,
    pub port: u16,
    pub authority: Authority,
}

impl Target {
    pub fn new(host: &str, port: u16, tls: bool) -> Option<Self> {
        let host = crate::matching::normalize_host(host).into_owned();
        let bracketed = if host.contains(':') { format!("[{host}]") } else { host.clone() };
        let default_port = if tls { 443 } else { 80 };
        let authority = if port == default_port { bracketed } else { format!("{bracketed}:{port}") };
        Some(Target { authority: authority.parse().ok()?, host: host.into(), port })
    }
}

pub(crate) struct Engine<S, E> {
    pub routes: Arc<RouteTable>,
    pub ca: Arc<CertificateAuthority>,
    pub egress: EgressPolicy,
    pub allowed_ports: Vec<u16>,
    pub inspect_all: bool,
    pub run_token: Option<String>,
    pub source: Arc<S>,
    pub events: Arc<E>,
    pub upstream: Upstream,
    pub needles: NeedleCache,
    pub traffic: Traffic,
    /// Asked before an askable refusal (`None`: refuse at once).
    pub ask: Option<Arc<dyn DenialHook>>,
}

/// What a retry after 401 needs of the first attempt.
struct Replay<'a> {
    client: &'a crate::upstream::HttpsClient,
    tls: bool,
    method: Method,
    headers: http::HeaderMap,
    bytes: Bytes,
    original_pq: Option<PathAndQuery>,
    path: String,
}

pub(crate) struct Chosen {
    pub owner: Owner,
    connection: Option<String>,
    pub injection: Injection,
    bound: Vec<String>,
}

impl<S: CredentialSource, E: EventSink> Engine<S, E> {
    pub fn new(config: ProxyConfig, source: Arc<S>, events: Arc<E>) -> Result<Self, TlsError> {
        Ok(Engine {
            upstream: Upstream::new(&config.upstream)?,
            routes: config.routes,
            ca: config.ca,
            egress: config.egress,
            allowed_ports: config.allowed_ports,
            inspect_all: config.inspect_all,
            run_token: config.run_token,
            source,
            events,
            needles: NeedleCache::default(),
            traffic: Traffic::default(),
            ask: None,
        })
    }

    /// Should connections to this host be MITM'd (else tunnelled)?
    pub fn intercepts(&self, host: &str) -> bool {
        self.inspect_all || self.routes.owns_host(host)
    }

    /// Port and egress policy for a destination; an askable refusal is put to the
    /// [`DenialHook`] first, when there is one. Records `Denied` and returns the refusal.
    pub async fn admit(&self, host: &str, port: u16) -> Result<(), Denial> {
        let result = if !self.allowed_ports.is_empty() && !self.allowed_ports.contains(&port) {
            Err(Denial::new(crate::matching::normalize_host(host).into_owned(), port, DenyRule::Port))
        } else {
            self.egress.check(host, port, self.routes.owns_host(host))
        };
        let Err(denial) = result else { return Ok(()) };
        if let Some(hook) = &self.ask
            && denial.askable()
            && hook.decide(denial.clone()).await == Verdict::Allow
        {
            return Ok(());
        }
        self.events.record(ProxyEvent::Denied { denial: denial.clone() });
        Err(denial)
    }

    /// Record a refusal and build the client's answer (JSON when `headers` accept it).
    pub fn refuse(&self, denial: Denial, headers: Option<&http::HeaderMap>) -> Response<ProxyBody> {
        tracing::info!(%denial, "refused");
        let response = denial.response(headers);
        self.events.record(ProxyEvent::Denied { denial });
        response
    }

    /// Terminate TLS with a leaf for `target.host` and serve HTTP/1.1 or h2 (by ALPN).
    pub async fn serve_tls<IO>(self: Arc<Self>, io: IO, target: Target)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let config = match self.ca.server_config(&target.host) {
            Ok(config) => config,
            Err(error) => {
                tracing::warn!(host = %target.host, %error, "no leaf certificate");
                return;
            }
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let counters = self.traffic.connection(&target.host);
        let io = ReadAhead::new(Counted::new(io, counters.clone()));
        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(io)).await {
            Ok(Ok(tls)) => self.serve_tls_stream(tls, target, Some(counters)).await,
            Ok(Err(error)) => {
                tracing::debug!(host = %target.host, %error, "client TLS handshake failed")
            }
            Err(_) => tracing::debug!(host = %target.host, "client TLS handshake timed out"),
        }
    }

    pub async fn serve_tls_stream<IO>(
        self: Arc<Self>,
        tls: TlsStream<IO>,
        target: Target,
        counters: Option<Arc<Counters>>,
    ) where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        self.serve_http(TokioIo::new(tls), target, true, h2, counters).await;
    }

    /// Serve HTTP on an established (decrypted or plain) client stream; each request is
    /// counted on `counters` (the report's per-host table).
    pub async fn serve_http<IO>(
        self: Arc<Self>,
        io: TokioIo<IO>,
        target: Target,
        tls: bool,
        h2: bool,
        counters: Option<Arc<Counters>>,
    ) where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let target = Arc::new(target);
        let engine = self.clone();
        let service_target = target.clone();
        let service = service_fn(move |req| {
            let engine = engine.clone();
            let target = service_target.clone();
            if let Some(counters) = &counters {
                counters.request();
            }
            async move { Ok::<_, Infallible>(engine.forward(&target, req, tls).await) }
        });
        let result = if h2 {
            hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .initial_stream_window_size(H2_STREAM_WINDOW)
                .initial_connection_window_size(H2_CONNECTION_WINDOW)
                .max_frame_size(H2_MAX_FRAME)
                .serve_connection(io, service)
                .await
        } else {
            // No header-read timer on the hot path: these connections come from the run's own
            // child over loopback or a capture socket, not from the open network.
            hyper::server::conn::http1::Builder::new().writev(false).serve_connection(io, service).with_upgrades().await
        };
        if let Err(error) = result {
            tracing::debug!(host = %target.host, %error, "client connection ended with an error");
        }
    }

    /// Opaque pass-through to `host`: no MITM. `initial` is data already read from the client
    /// (a ClientHello peeked by the transparent path).
    pub async fn tunnel<IO>(&self, client: IO, mut upstream: tokio::net::TcpStream, initial: &[u8], host: &str)
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        use tokio::io::AsyncWriteExt;
        let counters = self.traffic.connection(host);
        counters.sent_up(initial.len());
        let mut client = Counted::new(client, counters);
        if !initial.is_empty() && upstream.write_all(initial).await.is_err() {
            return;
        }
        if let Err(error) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            tracing::debug!(%error, "tunnel closed with an error");
        }
    }

    /// Record the refusal of a dial and build the answer for the client.
    pub fn dial_failed(&self, host: &str, _port: u16, error: &DialError) -> Response<ProxyBody> {
        if let Some(denial) = error.denial() {
            return self.refuse(denial, None);
        }
        self.events.record(ProxyEvent::UpstreamFailed { host: host.to_owned(), error: error.to_string() });
        match error {
            DialError::Timeout { .. } => {
                text_response(StatusCode::GATEWAY_TIMEOUT, "authsome: upstream connect timed out\n")
            }
            _ => text_response(StatusCode::BAD_GATEWAY, "authsome: upstream unreachable\n"),
        }
    }

    /// A placeholder sent to a host its owner does not own (leak guard).
    fn leak_check(&self, target: &Target, found: &[Found<'_>]) -> Option<Denial> {
        let leak = found.iter().find(|f| !self.routes.owner_owns_host(&f.placeholder.owner, &target.host))?;
        tracing::warn!(owner = %leak.placeholder.owner, host = %target.host, "placeholder sent to a host its owner does not own: blocked");
        Some(Denial::new(
            target.host.as_ref(),
            target.port,
            DenyRule::PlaceholderForeignHost { owner: leak.placeholder.owner.clone(), location: leak.location.kind() },
        ))
    }

    async fn choose(&self, target: &Target, path: &str, found: &[Found<'_>]) -> Option<Chosen> {
        let owner = match self.routes.select(&target.host, path, inject::single_owner(found)) {
            Selection::Inject(owner) => owner,
            Selection::None => return None,
            Selection::Ambiguous(owners) => {
                tracing::warn!(host = %target.host, ?owners, "several providers match this request equally: nothing injected");
                return None;
            }
        };
        let connection = found.iter().find(|f| f.placeholder.owner == owner).map(|f| f.placeholder.connection.clone());
        let bound = found
            .iter()
            .filter(|f| f.placeholder.owner == owner && Some(&f.placeholder.connection) == connection.as_ref())
            .map(|f| f.placeholder.value.clone())
            .collect();
        let injection = self.resolve(&owner, connection.clone(), target, path, false).await?;
        Some(Chosen { owner, connection, injection, bound })
    }

    async fn resolve(
        &self,
        owner: &Owner,
        connection: Option<String>,
        target: &Target,
        path: &str,
        force_refresh: bool,
    ) -> Option<Injection> {
        let request = ResolveRequest {
            owner: owner.clone(),
            connection,
            host: target.host.to_string(),
            path: path.to_owned(),
            force_refresh,
        };
        match self.source.resolve(&request).await {
            Ok(injection) => Some(injection),
            Err(error) => {
                tracing::warn!(%owner, host = %target.host, %error, "credential unavailable; forwarding without it");
                self.events.record(ProxyEvent::ResolveFailed {
                    owner: owner.clone(),
                    host: target.host.to_string(),
                    error: error.to_string(),
                });
                None
            }
        }
    }

    fn upstream_uri(target: &Target, tls: bool, pq: Option<PathAndQuery>) -> Uri {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(if tls { Scheme::HTTPS } else { Scheme::HTTP });
        parts.authority = Some(target.authority.clone());
        parts.path_and_query = Some(pq.unwrap_or_else(|| PathAndQuery::from_static("/")));
        Uri::from_parts(parts).expect("scheme, authority and path are set")
    }

    /// One request from a client on an intercepted (`tls`) or plain-http connection.
    pub async fn forward(
        self: &Arc<Self>,
        target: &Target,
        mut req: Request<Incoming>,
        tls: bool,
    ) -> Response<ProxyBody> {
        if req.method() == Method::CONNECT {
            return text_response(StatusCode::METHOD_NOT_ALLOWED, "authsome: CONNECT inside a tunnel\n");
        }
        if req.method() == Method::TRACE || req.method().as_str().eq_ignore_ascii_case("TRACK") {
            // TRACE echoes the request, injected credential included.
            return self
                .refuse(Denial::new(target.host.as_ref(), target.port, DenyRule::TraceMethod), Some(req.headers()));
        }
        let client = self.upstream.for_version(req.version());
        let websocket = is_websocket_upgrade(&req);
        let on_upgrade = websocket.then(|| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        strip_hop_by_hop(&mut parts.headers, websocket);
        parts.headers.remove(header::HOST);
        parts.extensions = http::Extensions::new();
        parts.version = Version::HTTP_11;

        let found = inject::find_placeholders(&self.routes, &parts.headers, parts.uri.path(), parts.uri.query());
        if let Some(denial) = self.leak_check(target, &found) {
            return self.refuse(denial, Some(&parts.headers));
        }
        // Plain http is never injected.
        let chosen = if tls { self.choose(target, parts.uri.path(), &found).await } else { None };
        if let Some(chosen) = &chosen
            && let Some(wrong) = inject::misplaced(&found, &chosen.injection)
        {
            // Swapped anywhere but the provider's credential location, the secret could be
            // echoed back; nothing goes upstream.
            let rule = DenyRule::PlaceholderMisplaced {
                owner: wrong.placeholder.owner.clone(),
                location: wrong.location.describe(),
            };
            return self.refuse(Denial::new(target.host.as_ref(), target.port, rule), Some(&parts.headers));
        }
        drop(found);
        let original_pq = parts.uri.path_and_query().cloned();

        let Some(chosen) = chosen else {
            parts.uri = Self::upstream_uri(target, tls, original_pq);
            if let Some(on_upgrade) = on_upgrade {
                return Box::pin(self.forward_upgrade(target, parts, on_upgrade, None)).await;
            }
            let request = Request::from_parts(parts, ProxyBody::from(body));
            return match client.request(request).await {
                Ok(response) => Self::client_response(response),
                Err(error) => self.client_failed(target, &error),
            };
        };
        // The response is searched for the secret: it must come back uncompressed (or in a
        // coding the scrubber decodes).
        parts.headers.insert(header::ACCEPT_ENCODING, http::HeaderValue::from_static("identity"));

        let bound: Vec<&str> = chosen.bound.iter().map(String::as_str).collect();
        let method = parts.method.clone();
        let path = parts.uri.path().to_owned();

        if let Some(on_upgrade) = on_upgrade {
            let pq = inject::apply(&mut parts.headers, original_pq.as_ref(), &chosen.injection, &bound);
            parts.uri = Self::upstream_uri(target, tls, pq.or(original_pq));
            // No permessage-deflate: frames from the server must stay searchable.
            parts.headers.remove(header::SEC_WEBSOCKET_EXTENSIONS);
            let response = Box::pin(self.forward_upgrade(target, parts, on_upgrade, Some(&chosen))).await;
            self.record_injected(&chosen, target, &method, path, response.status(), false);
            return response;
        }

        // Keep small bodies so the request can be replayed after a refresh.
        let (first_body, retry) = if body.is_end_stream() {
            (ProxyBody::empty(), Some((parts.headers.clone(), Bytes::new())))
        } else if body.size_hint().upper().is_some_and(|u| u <= RETRY_BODY_LIMIT) {
            match body.collect().await {
                Ok(collected) => {
                    let bytes = collected.to_bytes();
                    (ProxyBody::full(bytes.clone()), Some((parts.headers.clone(), bytes)))
                }
                Err(_) => {
                    return text_response(StatusCode::BAD_REQUEST, "authsome: could not read the request body\n");
                }
            }
        } else {
            (ProxyBody::from(body), None)
        };
        let retry = retry.map(|(headers, bytes)| (parts.method.clone(), headers, bytes));

        let pq = inject::apply(&mut parts.headers, original_pq.as_ref(), &chosen.injection, &bound);
        parts.uri = Self::upstream_uri(target, tls, pq.or_else(|| original_pq.clone()));
        let response = match client.request(Request::from_parts(parts, first_body)).await {
            Ok(response) => response,
            Err(error) => return self.client_failed(target, &error),
        };
        if response.status() != StatusCode::UNAUTHORIZED {
            self.record_injected(&chosen, target, &method, path, response.status(), false);
            return self.injected_response(response, &chosen, None, target);
        }
        let Some((method, headers, bytes)) = retry else {
            self.record_injected(&chosen, target, &method, path, response.status(), false);
            return self.injected_response(response, &chosen, None, target);
        };
        let replay = Replay { client, tls, method, headers, bytes, original_pq, path };
        // Boxed: the rare path should not grow every connection's in-flight future.
        Box::pin(self.retry_after_refresh(target, &chosen, &bound, replay, response)).await
    }

    /// The upstream said 401 to an injected request: resolve once more with
    /// `force_refresh` and replay the request once.
    async fn retry_after_refresh(
        &self,
        target: &Target,
        chosen: &Chosen,
        bound: &[&str],
        replay: Replay<'_>,
        response: Response<Incoming>,
    ) -> Response<ProxyBody> {
        let Replay { client, tls, method, mut headers, bytes, original_pq, path } = replay;
        let Some(fresh) = self.resolve(&chosen.owner, chosen.connection.clone(), target, &path, true).await else {
            self.record_injected(chosen, target, &method, path, response.status(), false);
            return self.injected_response(response, chosen, None, target);
        };
        drop(response);
        let pq = inject::apply(&mut headers, original_pq.as_ref(), &fresh, bound);
        let mut request = Request::new(ProxyBody::full(bytes));
        *request.method_mut() = method.clone();
        *request.uri_mut() = Self::upstream_uri(target, tls, pq.or(original_pq));
        *request.headers_mut() = headers;
        match client.request(request).await {
            Ok(response) => {
                self.record_injected(chosen, target, &method, path, response.status(), true);
                self.injected_response(response, chosen, Some(&fresh), target)
            }
            Err(error) => self.client_failed(target, &error),
        }
    }

    fn record_injected(
        &self,
        chosen: &Chosen,
        target: &Target,
        method: &Method,
        path: String,
        status: StatusCode,
        retried_after_refresh: bool,
    ) {
        self.events.record(ProxyEvent::Injected {
            owner: chosen.owner.clone(),
            connection: chosen.connection.clone(),
            host: target.host.to_string(),
            method: method.as_str().to_owned(),
            path,
            status: status.as_u16(),
            retried_after_refresh,
        });
    }

    /// The upstream's answer to an injected request, on its way to the child with every
    /// occurrence of the credential masked (headers now, body as it streams). A body in a
    /// coding the scrubber cannot see through is refused (502) rather than passed on unread.
    fn injected_response(
        &self,
        response: Response<Incoming>,
        chosen: &Chosen,
        fresh: Option<&Injection>,
        target: &Target,
    ) -> Response<ProxyBody> {
        let needles = match fresh {
            Some(fresh) => self.needles.get(&[&chosen.injection, fresh]),
            None => self.needles.get(&[&chosen.injection]),
        };
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers, false);
        if needles.is_empty() {
            return Response::from_parts(parts, ProxyBody::from(body));
        }
        let header_count = needles.scrub_headers(&mut parts.headers);
        let mut decoder = None;
        let coding = parts.headers.get(header::CONTENT_ENCODING).map(|v| v.to_str().unwrap_or("?").trim().to_owned());
        if let Some(coding) = coding.filter(|c| !c.is_empty() && !c.eq_ignore_ascii_case("identity")) {
            if body.is_end_stream() {
                // Nothing to decode (HEAD, 204, 304): the header describes a body not sent.
            } else if let Some(d) = Decoder::for_coding(&coding) {
                decoder = Some(d);
                parts.headers.remove(header::CONTENT_ENCODING);
                parts.headers.remove(header::CONTENT_LENGTH);
            } else {
                tracing::warn!(host = %target.host, %coding, "injected request answered in a coding the scrubber cannot read");
                self.events.record(ProxyEvent::UpstreamFailed {
                    host: target.host.to_string(),
                    error: format!(
                        "response to an injected request in content-encoding {coding:?}, which cannot be scrubbed"
                    ),
                });
                return text_response(
                    StatusCode::BAD_GATEWAY,
                    "authsome: the upstream answered in a compression the proxy cannot check for the credential\n",
                );
            }
        }
        let events = self.events.clone();
        let (owner, host) = (chosen.owner.clone(), target.host.to_string());
        let report = Box::new(move |occurrences: u64| {
            if occurrences > 0 {
                events.record(ProxyEvent::SecretScrubbed { owner, host, occurrences });
            }
        });
        let body = ScrubbedBody::new(body, needles, decoder, header_count, report);
        Response::from_parts(parts, ProxyBody::Scrubbed(Box::new(body)))
    }

    pub(crate) fn client_response(response: Response<Incoming>) -> Response<ProxyBody> {
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers, false);
        Response::from_parts(parts, ProxyBody::from(body))
    }

    fn client_failed(&self, target: &Target, error: &hyper_util::client::legacy::Error) -> Response<ProxyBody> {
        if let Some(dial) = find_dial_error(error) {
            return self.dial_failed(&target.host, target.port, dial);
        }
        let mut message = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        tracing::warn!(host = %target.host, error = %message, "upstream request failed");
        self.events.record(ProxyEvent::UpstreamFailed { host: target.host.to_string(), error: message });
        text_response(StatusCode::BAD_GATEWAY, "authsome: upstream request failed\n")
    }
}
