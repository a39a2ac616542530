//! The explicit way in: an `HTTP(S)_PROXY` listener. CONNECT (MITM for owned hosts, opaque
//! tunnel otherwise) and absolute-form plain http. Every request needs the run token when
//! one is set (407 otherwise), so other local users cannot borrow credentials.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::body::ProxyBody;
use crate::credential::CredentialSource;
use crate::engine::{Engine, Target};
use crate::events::{EventSink, ProxyEvent};
use crate::headers::text_response;
use crate::raw_tcp::{HOST_LOOPBACK_NAME, RawRoute};
use crate::transparent::Rewind;

/// Compare without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `Proxy-Authorization: Basic base64(user:password)`; the token may be the user
/// (`http://TOKEN@host:port`) or the password.
pub(crate) fn authorized(token: &str, header: Option<&HeaderValue>) -> bool {
    let Some(value) = header.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some((scheme, encoded)) = value.trim().split_once(' ') else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return false;
    }
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return false;
    };
    let (user, password) = match decoded.iter().position(|&b| b == b':') {
        Some(i) => (&decoded[..i], &decoded[i + 1..]),
        None => (&decoded[..], &[][..]),
    };
    // Evaluate both, so timing does not tell which one matched.
    let user_ok = constant_time_eq(user, token.as_bytes());
    let password_ok = constant_time_eq(password, token.as_bytes());
    user_ok | password_ok
}

fn proxy_auth_required() -> Response<ProxyBody> {
    let mut response = text_response(
        StatusCode::PROXY_AUTHENTICATION_REQUIRED,
        "authsome: this proxy needs the run token (use the HTTPS_PROXY value authsome set)\n",
    );
    response.headers_mut().insert(header::PROXY_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"authsome\""));
    response
}

fn split_authority(authority: &http::uri::Authority, default_port: u16) -> (&str, u16) {
    let host = authority.host();
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    (host, authority.port_u16().unwrap_or(default_port))
}

impl<S: CredentialSource, E: EventSink> Engine<S, E> {
    /// Accept until `shutdown` resolves. A bad connection is logged, never fatal.
    pub async fn serve_listener(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                () = &mut shutdown => return Ok(()),
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(error) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            self.upstream.roots.prewarm();
            let engine = self.clone();
            tokio::spawn(engine.serve_explicit(stream, peer));
        }
    }

    /// CONNECT, the common case, is parsed here and the raw stream handed on (no hyper
    /// connection or upgrade buffers kept per tunnel); anything else is served by hyper.
    async fn serve_explicit(self: Arc<Self>, mut stream: TcpStream, peer: SocketAddr) {
        let _ = stream.set_nodelay(true);
        let mut buf = Vec::with_capacity(1024);
        loop {
            let prefix = &b"CONNECT "[..buf.len().min(8)];
            if !buf.starts_with(prefix) {
                break;
            }
            if buf.len() >= 8
                && let Some(head_len) = head_length(&buf)
            {
                return self.raw_connect(stream, buf, head_len).await;
            }
            if buf.len() > CONNECT_HEAD_LIMIT {
                let _ = stream
                    .write_all(&render(&text_response(
                        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                        "authsome: request head too large\n",
                    )))
                    .await;
                return;
            }
            // read_buf into the Vec: no stack array kept in this (long-lived) task's state.
            buf.reserve(2048);
            match tokio::time::timeout(HEAD_TIMEOUT, stream.read_buf(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return,
            }
        }
        let engine = self.clone();
        let service = service_fn(move |req| {
            let engine = engine.clone();
            async move { Ok::<_, Infallible>(engine.explicit_request(req).await) }
        });
        let io = Rewind::new(Bytes::from(buf), stream);
        if let Err(error) = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades()
            .await
        {
            tracing::debug!(%peer, %error, "proxy client connection ended with an error");
        }
    }

    async fn raw_connect(self: Arc<Self>, mut stream: TcpStream, buf: Vec<u8>, head_len: usize) {
        let Some((authority, headers)) = parse_connect(&buf[..head_len]) else {
            let _ = stream
                .write_all(&render(&text_response(StatusCode::BAD_REQUEST, "authsome: malformed CONNECT\n")))
                .await;
            return;
        };
        let leftover = Bytes::copy_from_slice(&buf[head_len..]);
        drop(buf);
        let outcome = self.connect_decision(authority.as_ref(), &headers).await;
        match outcome {
            Connect::Reply(response) => {
                let _ = stream.write_all(&render(&response)).await;
            }
            Connect::Intercept(target) => {
                if stream.write_all(ESTABLISHED).await.is_ok() {
                    self.serve_tls(Rewind::new(leftover, stream), target).await;
                }
            }
            Connect::Tunnel(upstream, host) => {
                if stream.write_all(ESTABLISHED).await.is_ok() {
                    self.tunnel(stream, upstream, &leftover, &host).await;
                }
            }
            Connect::Relay { upstream, host, port } => {
                if stream.write_all(ESTABLISHED).await.is_ok() {
                    self.relay(stream, upstream, &leftover, &host, port).await;
                }
            }
        }
    }

    async fn explicit_request(self: Arc<Self>, req: Request<Incoming>) -> Response<ProxyBody> {
        if let Some(token) = &self.run_token
            && !authorized(token, req.headers().get(header::PROXY_AUTHORIZATION))
        {
            return proxy_auth_required();
        }
        if req.method() == Method::CONNECT {
            return self.connect(req).await;
        }
        let uri = req.uri();
        let (Some(authority), Some("http")) = (uri.authority(), uri.scheme_str()) else {
            return text_response(
                StatusCode::BAD_REQUEST,
                "authsome: this is a proxy: send CONNECT or an absolute http:// URL\n",
            );
        };
        let (host, port) = split_authority(authority, 80);
        let Some(target) = Target::new(host, port, false) else {
            return text_response(StatusCode::BAD_REQUEST, "authsome: bad host\n");
        };
        if let Err(denial) = self.admit(&target.host, port).await {
            return denial.response(Some(req.headers()));
        }
        self.traffic.request(&target.host);
        self.forward(&target, req, false).await
    }

    /// What to do with `CONNECT authority`: answer, MITM, or tunnel (already dialled, so a
    /// refusal can still be told to the client).
    async fn connect_decision(&self, authority: Option<&http::uri::Authority>, headers: &HeaderMap) -> Connect {
        if let Some(token) = &self.run_token
            && !authorized(token, headers.get(header::PROXY_AUTHORIZATION))
        {
            return Connect::Reply(proxy_auth_required());
        }
        let Some(authority) = authority else {
            return Connect::Reply(text_response(StatusCode::BAD_REQUEST, "authsome: CONNECT needs host:port\n"));
        };
        let (host, port) = split_authority(authority, 443);
        // Raw TCP first: an `--allow-tcp` destination or the host's loopback is relayed as it
        // is (never intercepted, even on a provider host); the host-loopback name is refused
        // on any port not listed.
        let normalized = crate::matching::normalize_host(host);
        if normalized == HOST_LOOPBACK_NAME || self.egress.tcp_allowed(&normalized, port) {
            let route = self.raw_route_named(&normalized, port);
            if let RawRoute::Deny(denial) = route {
                return Connect::Reply(self.refuse(denial, Some(headers)));
            }
            return match self.dial_raw(&route).await {
                Some(Ok(upstream)) => Connect::Relay { upstream, host: normalized.into_owned(), port },
                Some(Err(error)) => match error.denial() {
                    Some(denial) => Connect::Reply(self.refuse(denial, Some(headers))),
                    None => Connect::Reply(self.dial_failed(&normalized, port, &error)),
                },
                None => Connect::Reply(text_response(StatusCode::BAD_GATEWAY, "authsome: no route\n")),
            };
        }
        let Some(target) = Target::new(host, port, true) else {
            return Connect::Reply(text_response(StatusCode::BAD_REQUEST, "authsome: bad host\n"));
        };
        if let Err(denial) = self.admit(&target.host, port).await {
            return Connect::Reply(denial.response(Some(headers)));
        }
        if self.intercepts(&target.host) {
            return Connect::Intercept(target);
        }
        match self.upstream.dialer.dial(&target.host, port).await {
            Ok(upstream) => {
                self.events.record(ProxyEvent::Tunnelled { host: target.host.to_string(), port });
                Connect::Tunnel(upstream, target.host)
            }
            Err(error) => match error.denial() {
                Some(denial) => Connect::Reply(self.refuse(denial, Some(headers))),
                None => Connect::Reply(self.dial_failed(&target.host, port, &error)),
            },
        }
    }

    /// CONNECT arriving after another request on a kept-alive proxy connection.
    async fn connect(self: Arc<Self>, mut req: Request<Incoming>) -> Response<ProxyBody> {
        let authority = req.uri().authority().cloned();
        let headers = req.headers().clone();
        match self.connect_decision(authority.as_ref(), &headers).await {
            Connect::Reply(response) => response,
            Connect::Intercept(target) => {
                let on_upgrade = hyper::upgrade::on(&mut req);
                tokio::spawn(async move {
                    match on_upgrade.await {
                        Ok(upgraded) => self.serve_tls(TokioIo::new(upgraded), target).await,
                        Err(error) => tracing::debug!(%error, "CONNECT upgrade failed"),
                    }
                });
                Response::new(ProxyBody::empty())
            }
            Connect::Tunnel(upstream, host) => {
                let on_upgrade = hyper::upgrade::on(&mut req);
                tokio::spawn(async move {
                    match on_upgrade.await {
                        Ok(upgraded) => self.tunnel(TokioIo::new(upgraded), upstream, &[], &host).await,
                        Err(error) => tracing::debug!(%error, "CONNECT upgrade failed"),
                    }
                });
                Response::new(ProxyBody::empty())
            }
            Connect::Relay { upstream, host, port } => {
                let on_upgrade = hyper::upgrade::on(&mut req);
                tokio::spawn(async move {
                    match on_upgrade.await {
                        Ok(upgraded) => self.relay(TokioIo::new(upgraded), upstream, &[], &host, port).await,
                        Err(error) => tracing::debug!(%error, "CONNECT upgrade failed"),
                    }
                });
                Response::new(ProxyBody::empty())
            }
        }
    }
}

enum Connect {
    Reply(Response<ProxyBody>),
    Intercept(Target),
    Tunnel(TcpStream, Arc<str>),
    /// Raw TCP (`--allow-tcp`, `--allow-host-port`): relayed and counted.
    Relay {
        upstream: TcpStream,
        host: String,
        port: u16,
    },
}

const ESTABLISHED: &[u8] = b"HTTP/1.1 200 Connection established\r\n\r\n";
const CONNECT_HEAD_LIMIT: usize = 16 * 1024;
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// The authority and the headers that matter (`Proxy-Authorization`, `Accept`) of a complete
/// CONNECT head. A plain function, so the header array never lives in a connection task's
/// state.
fn parse_connect(head: &[u8]) -> Option<(Option<http::uri::Authority>, HeaderMap)> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return None,
    }
    let authority = request.path.and_then(|p| p.parse().ok());
    let mut kept = HeaderMap::new();
    for h in request.headers.iter() {
        let name = if h.name.eq_ignore_ascii_case("proxy-authorization") {
            header::PROXY_AUTHORIZATION
        } else if h.name.eq_ignore_ascii_case("accept") {
            header::ACCEPT
        } else {
            continue;
        };
        if let Ok(value) = HeaderValue::from_bytes(h.value) {
            kept.append(name, value);
        }
    }
    Some((authority, kept))
}

fn head_length(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Serialize one of our own (small, fully buffered) answers for a raw connection.
fn render(response: &Response<ProxyBody>) -> Vec<u8> {
    let body: &[u8] = match response.body() {
        ProxyBody::Full(Some(bytes)) => bytes,
        _ => &[],
    };
    let mut out =
        format!("HTTP/1.1 {} {}\r\n", response.status().as_u16(), response.status().canonical_reason().unwrap_or(""))
            .into_bytes();
    for (name, value) in response.headers() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("content-length: {}\r\nconnection: close\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(s: &str) -> HeaderValue {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(s)).parse().unwrap()
    }

    #[test]
    fn proxy_authorization() {
        assert!(authorized("tok", Some(&basic("tok:"))));
        assert!(authorized("tok", Some(&basic("tok"))));
        assert!(authorized("tok", Some(&basic("user:tok"))));
        assert!(authorized("tok", Some(&"basic dG9rOg==".parse().unwrap())));
        assert!(!authorized("tok", Some(&basic("tok2:"))));
        assert!(!authorized("tok", Some(&basic(":"))));
        assert!(!authorized("tok", Some(&"Bearer tok".parse().unwrap())));
        assert!(!authorized("tok", Some(&"Basic !!!".parse().unwrap())));
        assert!(!authorized("tok", None));
    }
}
