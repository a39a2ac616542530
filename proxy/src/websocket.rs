//! WebSocket (HTTP/1.1 Upgrade) pass-through: the handshake is an ordinary request (so it gets
//! the credential), sent on a fresh HTTP/1.1 connection through the same dialer (SSRF guard)
//! and TLS trust as everything else; after `101` the bytes are piped both ways, and when the
//! handshake carried an injected credential the server-to-client direction is scrubbed of it
//! (same-length masks keep frame lengths valid; the engine strips the extension offer so
//! frames are never compressed).

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tower_service::Service;

use crate::body::ProxyBody;
use crate::credential::CredentialSource;
use crate::engine::{Chosen, Engine, Target};
use crate::events::{EventSink, ProxyEvent};
use crate::headers::text_response;
use crate::scrub::{Needles, ScrubbedBody, StreamScrubber};
use crate::upstream::find_dial_error;

impl<S: CredentialSource, E: EventSink> Engine<S, E> {
    /// WebSocket (HTTP/1.1 Upgrade): handshake on a fresh HTTP/1.1 connection through the
    /// same dialer (SSRF guard) and TLS trust, then pipe bytes both ways.
    pub(crate) async fn forward_upgrade(
        &self,
        target: &Target,
        mut parts: http::request::Parts,
        on_upgrade: hyper::upgrade::OnUpgrade,
        injected: Option<&Chosen>,
    ) -> Response<ProxyBody> {
        let mut connector = self.upstream.http1_connector.clone();
        let io = match connector.call(parts.uri.clone()).await {
            Ok(io) => io,
            Err(error) => {
                if let Some(dial) = find_dial_error(error.as_ref()) {
                    return self.dial_failed(&target.host, target.port, dial);
                }
                self.events
                    .record(ProxyEvent::UpstreamFailed { host: target.host.to_string(), error: error.to_string() });
                return text_response(StatusCode::BAD_GATEWAY, "authsome: upstream unreachable\n");
            }
        };
        let (mut sender, connection) = match hyper::client::conn::http1::handshake(io).await {
            Ok(pair) => pair,
            Err(error) => {
                self.events
                    .record(ProxyEvent::UpstreamFailed { host: target.host.to_string(), error: error.to_string() });
                return text_response(StatusCode::BAD_GATEWAY, "authsome: upstream handshake failed\n");
            }
        };
        tokio::spawn(async move {
            if let Err(error) = connection.with_upgrades().await {
                tracing::debug!(%error, "upstream upgrade connection ended with an error");
            }
        });
        let origin_form = parts.uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
        parts.uri = Uri::from(origin_form);
        if let Ok(host) = HeaderValue::from_str(target.authority.as_str()) {
            parts.headers.insert(header::HOST, host);
        }
        let mut response = match sender.send_request(Request::from_parts(parts, ProxyBody::empty())).await {
            Ok(response) => response,
            Err(error) => {
                self.events
                    .record(ProxyEvent::UpstreamFailed { host: target.host.to_string(), error: error.to_string() });
                return text_response(StatusCode::BAD_GATEWAY, "authsome: upstream handshake failed\n");
            }
        };
        let needles = injected.map(|chosen| self.needles.get(&[&chosen.injection]));
        let mut header_count = 0;
        if let Some(needles) = &needles {
            header_count = needles.scrub_headers(response.headers_mut());
        }
        let report = injected.map(|chosen| {
            let events = self.events.clone();
            let (owner, host) = (chosen.owner.clone(), target.host.to_string());
            move |occurrences: u64| {
                if occurrences > 0 {
                    events.record(ProxyEvent::SecretScrubbed { owner, host, occurrences });
                }
            }
        });
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            let upstream_upgrade = hyper::upgrade::on(&mut response);
            tokio::spawn(async move {
                let (client, upstream) = match tokio::join!(on_upgrade, upstream_upgrade) {
                    (Ok(c), Ok(u)) => (c, u),
                    _ => return,
                };
                let mut client = TokioIo::new(client);
                let mut upstream = TokioIo::new(upstream);
                match needles {
                    None => {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    }
                    Some(needles) => {
                        let masked = pipe_scrubbed(client, upstream, needles).await;
                        if let Some(report) = report {
                            report(header_count + masked);
                        }
                    }
                }
            });
            let (parts, body) = response.into_parts();
            return Response::from_parts(parts, ProxyBody::from(body));
        }
        match (needles, report) {
            (Some(needles), Some(report)) => {
                let (mut parts, body) = response.into_parts();
                crate::headers::strip_hop_by_hop(&mut parts.headers, false);
                let body = ScrubbedBody::new(body, needles, None, header_count, Box::new(report));
                Response::from_parts(parts, ProxyBody::Scrubbed(Box::new(body)))
            }
            _ => Self::client_response(response),
        }
    }
}

/// Pipe an upgraded connection: client-to-server as is, server-to-client scrubbed. Returns the
/// number of occurrences masked.
async fn pipe_scrubbed<C, U>(client: C, upstream: U, needles: Arc<Needles>) -> u64
where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    U: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut upstream_read, mut upstream_write) = tokio::io::split(upstream);
    let outbound = async {
        let _ = tokio::io::copy(&mut client_read, &mut upstream_write).await;
        let _ = upstream_write.shutdown().await;
    };
    let inbound = async {
        let mut scrubber = StreamScrubber::new(needles);
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match upstream_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let out = scrubber.push(Bytes::copy_from_slice(&buf[..n]));
            if !out.is_empty() && client_write.write_all(&out).await.is_err() {
                return scrubber.count;
            }
        }
        let _ = client_write.write_all(&scrubber.finish()).await;
        let _ = client_write.shutdown().await;
        scrubber.count
    };
    let ((), count) = tokio::join!(outbound, inbound);
    count
}
