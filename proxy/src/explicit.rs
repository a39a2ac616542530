//! The explicit way in: an `HTTP(S)_PROXY` listener. CONNECT (MITM for owned hosts, opaque
//! tunnel otherwise) and absolute-form plain http. Every request needs the run token when
//! one is set (407 otherwise), so other local users cannot borrow credentials.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine as _;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};

use crate::body::ProxyBody;
use crate::credential::CredentialSource;
use crate::engine::{Engine, Target};
use crate::events::{EventSink, ProxyEvent};
use crate::headers::text_response;

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
    response.headers_mut().insert(
        header::PROXY_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"authsome\""),
    );
    response
}

fn split_authority(authority: &http::uri::Authority, default_port: u16) -> (&str, u16) {
    let host = authority.host();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
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
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let engine = self.clone();
            tokio::spawn(engine.serve_explicit(stream, peer));
        }
    }

    async fn serve_explicit(self: Arc<Self>, stream: TcpStream, peer: SocketAddr) {
        let _ = stream.set_nodelay(true);
        let engine = self.clone();
        let service = service_fn(move |req| {
            let engine = engine.clone();
            async move { Ok::<_, Infallible>(engine.explicit_request(req).await) }
        });
        if let Err(error) = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades()
            .await
        {
            tracing::debug!(%peer, %error, "proxy client connection ended with an error");
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
        if !self.egress_allows(&target.host, port) {
            return text_response(
                StatusCode::FORBIDDEN,
                "authsome: destination denied by egress policy\n",
            );
        }
        self.forward(&target, req, false).await
    }

    async fn connect(self: Arc<Self>, mut req: Request<Incoming>) -> Response<ProxyBody> {
        let Some(authority) = req.uri().authority() else {
            return text_response(
                StatusCode::BAD_REQUEST,
                "authsome: CONNECT needs host:port\n",
            );
        };
        let (host, port) = split_authority(authority, 443);
        let Some(target) = Target::new(host, port, true) else {
            return text_response(StatusCode::BAD_REQUEST, "authsome: bad host\n");
        };
        if !self.egress_allows(&target.host, port) {
            return text_response(
                StatusCode::FORBIDDEN,
                "authsome: destination denied by egress policy\n",
            );
        }
        let on_upgrade = hyper::upgrade::on(&mut req);
        if self.intercepts(&target.host) {
            tokio::spawn(async move {
                match on_upgrade.await {
                    Ok(upgraded) => self.serve_tls(TokioIo::new(upgraded), target).await,
                    Err(error) => tracing::debug!(%error, "CONNECT upgrade failed"),
                }
            });
            return Response::new(ProxyBody::empty());
        }
        // Not ours: dial first, so a refusal can still be told to the client.
        let upstream = match self.upstream.dialer.dial(&target.host, port).await {
            Ok(upstream) => upstream,
            Err(error) => return self.dial_failed(&target.host, port, &error),
        };
        self.events.record(ProxyEvent::Tunnelled {
            host: target.host.to_string(),
            port,
        });
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => self.tunnel(TokioIo::new(upgraded), upstream, &[]).await,
                Err(error) => tracing::debug!(%error, "CONNECT upgrade failed"),
            }
        });
        Response::new(ProxyBody::empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(s: &str) -> HeaderValue {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(s)
        )
        .parse()
        .unwrap()
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
