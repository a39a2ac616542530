//! Events the launcher audits. None of them carries a secret or a placeholder value; paths
//! are recorded without their query string.

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
    /// A placeholder was sent to a host its owner does not own; answered 403.
    LeakBlocked { owner: Owner, host: String, where_: &'static str },
    /// A connection was passed through without MITM.
    Tunnelled { host: String, port: u16 },
    /// Egress policy or the SSRF guard refused a destination.
    Denied { host: String, port: u16, reason: String },
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
