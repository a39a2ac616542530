//! WebSocket (HTTP/1.1 Upgrade) pass-through: the handshake is an ordinary request (so it gets
//! the credential), sent on a fresh HTTP/1.1 connection through the same dialer (SSRF guard)
//! and TLS trust as everything else; after `101` the bytes are piped both ways untouched.

use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tower_service::Service;

use crate::body::ProxyBody;
use crate::credential::CredentialSource;
use crate::engine::{Engine, Target};
use crate::events::{EventSink, ProxyEvent};
use crate::headers::text_response;
use crate::upstream::find_dial_error;

impl<S: CredentialSource, E: EventSink> Engine<S, E> {
    /// WebSocket (HTTP/1.1 Upgrade): handshake on a fresh HTTP/1.1 connection through the
    /// same dialer (SSRF guard) and TLS trust, then pipe bytes both ways.
    pub(crate) async fn forward_upgrade(
        &self,
        target: &Target,
        mut parts: http::request::Parts,
        on_upgrade: hyper::upgrade::OnUpgrade,
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
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            let upstream_upgrade = hyper::upgrade::on(&mut response);
            tokio::spawn(async move {
                let (client, upstream) = match tokio::join!(on_upgrade, upstream_upgrade) {
                    (Ok(c), Ok(u)) => (c, u),
                    _ => return,
                };
                let mut client = TokioIo::new(client);
                let mut upstream = TokioIo::new(upstream);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
            let (parts, body) = response.into_parts();
            return Response::from_parts(parts, ProxyBody::from(body));
        }
        Self::client_response(response)
    }
}
