//! Events the launcher audits. None of them carries a secret or a placeholder value; paths
//! are recorded without their query string.

use crate::denial::Denial;
use crate::matching::Owner;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProxyEvent {
    /// A credential was put on a request; `status` is the upstream's final answer.
    Injected {
        owner: Owner,
        connection: Option<String>,
        host: String,
        method: String,
        path: String,
        status: u16,
        retried_after_refresh: bool,
    },
    /// A connection was passed through without MITM.
    Tunnelled { host: String, port: u16 },
    /// A destination or request was refused (egress policy, SSRF guard, port, TRACE, a
    /// placeholder in the wrong place or to a foreign host); the client got a 403/405 (or a
    /// closed connection where no answer can be delivered). `Display` of the denial is the
    /// stderr line; `hint()` the flag that allows it.
    Denied { denial: Denial },
    /// The real credential came back in a response to an injected request and was masked
    /// (same length) on its way to the child; `occurrences` counts headers and body together.
    /// Recorded once per response, when its body ends (or the client drops it).
    SecretScrubbed { owner: Owner, host: String, occurrences: u64 },
    /// The credential source failed; the request went on without a credential.
    ResolveFailed { owner: Owner, host: String, error: String },
    /// The upstream could not be reached (connect, TLS, protocol).
    UpstreamFailed { host: String, error: String },
}

pub trait EventSink: Send + Sync + 'static {
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
