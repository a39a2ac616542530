//! authsome-proxy: the credential-injecting HTTPS proxy.
//!
//! Owns the MITM certificate authority, the explicit (`HTTP(S)_PROXY`) and transparent (sandbox)
//! ways in, and the injection engine. It knows nothing of vaults or providers: it asks a
//! `CredentialSource` for what to put on the wire.
//!
//! One engine (hyper 1 server and client, rustls, rcgen leaves) serves both ways in: whatever
//! way a client stream arrives, it ends in the same request path.
//!
//! The real credential never comes back to the child: placeholders are swapped only in the
//! provider's declared credential header or parameter (anywhere else the request is refused),
//! and responses to injected requests are scrubbed of the secret (`scrub`). Every refusal is
//! one typed [`Denial`] (rule + the flag that would allow it), reported as
//! [`ProxyEvent::Denied`] and answered in one text or JSON format.
//!
//! # Using it
//!
//! Build a [`ProxyConfig`] (the [`CertificateAuthority`], a [`RouteTable`] of [`Route`]s and
//! [`Placeholder`]s, an [`UpstreamConfig`], an [`EgressPolicy`]), then one [`Proxy`] per run
//! with a [`CredentialSource`] and an [`EventSink`]. Hand it the explicit listener
//! ([`Proxy::serve`]) and, under the sandbox, the capture listeners ([`Proxy::serve_capture`])
//! or single accepted streams ([`Proxy::serve_transparent`]); the fake-IP resolver in [`dns`]
//! answers the sandbox's DNS. The engine spawns its tasks on the ambient tokio runtime.
//!
//! # What the launcher should know
//!
//! - **Proxy URL for children**: prefer `http://authsome:TOKEN@127.0.0.1:PORT` (the run token
//!   as the password). The proxy accepts the token as user or password, but Python's `urllib`
//!   sends `Proxy-Authorization` only when the URL has both (`tests/explicit.rs` checks it).
//! - **What a refused client sees**: 407 (no or wrong run token, with
//!   `Proxy-Authenticate: Basic`), 403 (a [`Denial`]: egress policy, SSRF guard, placeholder
//!   misuse), 405 (TRACE), 502 (upstream unreachable or TLS failure), 504 (connect timeout).
//!   Bodies are one short `authsome: …` line, or JSON when the client asks for it; never a
//!   secret. Transparent TLS denials reset the connection on capture listeners (a stream handed
//!   to [`Proxy::serve_transparent`] is closed); the reason is in the event.
//! - **Refresh**: [`CredentialSource::resolve`] is called per injected request (cache in the
//!   source). After a 401 to an injected request whose body was at most
//!   [`RETRY_BODY_LIMIT`], it is called once more with `force_refresh` and the request is
//!   replayed once; larger bodies stream and are not retried.
//! - **Upstream protocol mirrors the client's**: an HTTP/1.1 client gets pooled HTTP/1.1
//!   upstream connections, an h2 client gets h2 where the upstream offers it. WebSocket
//!   handshakes always use a fresh HTTP/1.1 connection.
//! - **Errors**: [`TlsError`] (upstream trust), [`CaError`], [`ConfigError`], [`DialError`]
//!   (inside events as text), [`PatternError`]. None carries a secret.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod body;
mod ca;
mod config;
mod credential;
mod denial;
pub mod dns;
mod engine;
mod events;
mod explicit;
mod headers;
mod inject;
mod local_addrs;
mod matching;
mod raw_tcp;
mod readahead;
mod scrub;
mod ssrf;
mod traffic;
mod transparent;
mod upstream;
mod websocket;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

pub use ca::{CA_COMMON_NAME, CaError, CertificateAuthority, crypto_provider};
pub use config::{ConfigError, ConnectTo, EgressMode, EgressPolicy, ProxyConfig, UpstreamConfig};
pub use credential::{CredentialSource, Injection, ResolveError, ResolveRequest};
pub use denial::{Denial, DenialHook, DenyRule, Verdict};
pub use engine::RETRY_BODY_LIMIT;
pub use events::{EventSink, NoEvents, ProxyEvent, TracingEvents};
pub use matching::{HostPattern, Owner, PatternError, Placeholder, Route, RouteTable, Selection, normalize_path};
pub use raw_tcp::{HOST_LOOPBACK_NAME, TcpDestination, TcpDestinationError};
pub use ssrf::is_forbidden;
pub use traffic::TrafficStats;
pub use upstream::{DialError, TlsError};

/// A running proxy's shared state: build once per run, then hand it listeners (explicit way
/// in) and accepted streams (transparent way in). Cheap to clone.
pub struct Proxy<S, E> {
    engine: Arc<engine::Engine<S, E>>,
}

impl<S, E> Clone for Proxy<S, E> {
    fn clone(&self) -> Self {
        Proxy { engine: self.engine.clone() }
    }
}

impl<S, E> std::fmt::Debug for Proxy<S, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").finish_non_exhaustive()
    }
}

impl<S: CredentialSource, E: EventSink> Proxy<S, E> {
    /// Build the engine: loads upstream trust (system roots + extra roots).
    pub fn new(config: ProxyConfig, source: Arc<S>, events: Arc<E>) -> Result<Self, TlsError> {
        Ok(Proxy { engine: Arc::new(engine::Engine::new(config, source, events)?) })
    }

    /// As [`Proxy::new`], with a hook asked before an askable destination is refused (see
    /// [`DenialHook`]); without one the policy's refusal is final.
    pub fn with_hook(
        config: ProxyConfig,
        source: Arc<S>,
        events: Arc<E>,
        hook: Option<Arc<dyn DenialHook>>,
    ) -> Result<Self, TlsError> {
        let mut engine = engine::Engine::new(config, source, events)?;
        engine.ask = hook;
        Ok(Proxy { engine: Arc::new(engine) })
    }

    /// Explicit proxy (HTTP CONNECT + absolute-form) on `listener` until `shutdown` resolves.
    pub async fn serve(&self, listener: TcpListener, shutdown: impl Future<Output = ()>) -> io::Result<()> {
        self.engine.clone().serve_listener(listener, shutdown).await
    }

    /// Transparent way in: serve one connection accepted from a capture socket.
    /// `original_dst` is what the child dialled (getsockname / SO_ORIGINAL_DST); `dns` is the
    /// run's fake-IP resolver, used to name fake destinations. Decides by host name, dials by
    /// host name. Returns when the connection is done.
    pub async fn serve_transparent<IO>(&self, stream: IO, original_dst: SocketAddr, dns: Option<&dns::FakeDns>)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        self.engine.clone().serve_transparent_stream(stream, original_dst, dns, |_| {}).await;
    }

    /// Transparent way in for a whole capture listener (bound in the sandbox's namespace, any
    /// address): every accepted connection is served with its local address as the original
    /// destination. Runs until the task is dropped; accept errors back off instead of spinning.
    pub async fn serve_capture(&self, listener: TcpListener, dns: Option<Arc<dns::FakeDns>>) {
        self.engine.clone().serve_capture_listener(listener, dns).await;
    }

    /// Connections, requests and bytes by destination host so far (counted live on the
    /// child's side of the proxy; see [`TrafficStats`]).
    pub fn traffic(&self) -> std::collections::BTreeMap<String, TrafficStats> {
        self.engine.traffic.snapshot()
    }
}

/// Explicit proxy (HTTP CONNECT + absolute-form). Serves until `shutdown` resolves.
pub async fn serve<S: CredentialSource, E: EventSink>(
    listener: TcpListener,
    config: ProxyConfig,
    source: Arc<S>,
    events: Arc<E>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let proxy = Proxy::new(config, source, events).map_err(io::Error::other)?;
    proxy.serve(listener, shutdown).await
}
