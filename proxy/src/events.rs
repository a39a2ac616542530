//! Events the launcher audits. None of them carries a secret or a placeholder value; paths
//! are recorded without their query string.

use crate::denial::Denial;
use crate::matching::Owner;

/// What the proxy did, for the launcher's audit log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProxyEvent {
    /// A credential was put on a request; `status` is the upstream's final answer.
    Injected {
        /// Whose credential.
        owner: Owner,
        /// The connection a placeholder named, if any.
        connection: Option<String>,
        /// The upstream host.
        host: String,
        /// The request method.
        method: String,
        /// The request path, without its query string.
        path: String,
        /// The upstream's final status.
        status: u16,
        /// The first answer was 401 and the request was replayed with a refreshed credential.
        retried_after_refresh: bool,
    },
    /// A connection was passed through without MITM.
    Tunnelled {
        /// The destination host.
        host: String,
        /// The destination port.
        port: u16,
    },
    /// A raw TCP connection (`--allow-tcp`, `--allow-host-port`) was relayed and has ended.
    TcpRelayed {
        /// The destination host (`host.authsome.internal` for the host's loopback).
        host: String,
        /// The destination port.
        port: u16,
        /// Bytes the child sent.
        bytes_out: u64,
        /// Bytes the child received.
        bytes_in: u64,
    },
    /// A destination or request was refused (egress policy, SSRF guard, port, TRACE, a
    /// placeholder in the wrong place or to a foreign host); the client got a 403/405 (or a
    /// closed connection where no answer can be delivered). `Display` of the denial is the
    /// stderr line; `hint()` the flag that allows it.
    Denied {
        /// The destination and the rule.
        denial: Denial,
    },
    /// The real credential came back in a response to an injected request and was masked
    /// (same length) on its way to the child; `occurrences` counts headers and body together.
    /// Recorded once per response, when its body ends (or the client drops it).
    SecretScrubbed {
        /// Whose credential came back.
        owner: Owner,
        /// The upstream host that sent it.
        host: String,
        /// How many times it was masked.
        occurrences: u64,
    },
    /// The credential source failed; the request went on without a credential.
    ResolveFailed {
        /// Whose credential was asked for.
        owner: Owner,
        /// The request's host.
        host: String,
        /// The source's error, as text (never a secret).
        error: String,
    },
    /// The upstream could not be reached (connect, TLS, protocol).
    UpstreamFailed {
        /// The upstream host.
        host: String,
        /// What failed, as text.
        error: String,
    },
}

/// Where the proxy sends its events. Called on the proxy's tasks: keep it quick.
pub trait EventSink: Send + Sync + 'static {
    /// Record one event.
    fn record(&self, event: ProxyEvent);
}

/// Discards events (tests, benchmarks).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoEvents;

impl EventSink for NoEvents {
    fn record(&self, _event: ProxyEvent) {}
}

/// Logs events through `tracing` at info level.
#[derive(Debug, Default, Clone, Copy)]
pub struct TracingEvents;

impl EventSink for TracingEvents {
    fn record(&self, event: ProxyEvent) {
        tracing::info!(?event, "proxy event");
    }
}
