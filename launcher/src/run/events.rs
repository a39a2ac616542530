//! What the proxy saw during a run: a per-host summary written to the audit log when the run
//! ends, and an audit line at once for each denied destination and every blocked placeholder
//! leak.
//! Nothing here ever holds a secret or a placeholder.

use std::collections::BTreeMap;
use std::sync::Mutex;

use authsome_proxy::{Denial, DenyRule, EventSink, ProxyEvent, TrafficStats};
use authsome_vault::{AuditEvent, AuditLog};
use serde::{Deserialize, Serialize};

/// One host's line of a run's summary: in the `run` end record of the audit log, in
/// `--report` and in `authsome log --run`.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct HostStats {
    /// Client connections opened to the host (intercepted or tunnelled).
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) conns: u64,
    /// HTTP requests seen (tunnels carry none the proxy can see).
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) requests: u64,
    /// Bytes from the child towards the host, on the child's side of the proxy.
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) bytes_up: u64,
    /// Bytes from the host back to the child.
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) bytes_down: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) injected: u64,
    /// `provider/connection` → requests.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) connections: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) refreshed_after_401: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) tunnelled: u64,
    /// Raw TCP connections relayed (`--allow-tcp`, `--allow-host-port`), and their bytes.
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) tcp_connections: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) bytes_out: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) bytes_in: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) denied: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) leaks_blocked: u64,
    /// Occurrences of a real credential masked in responses.
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) scrubbed: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) credential_errors: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) upstream_errors: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

pub(crate) struct RunEvents {
    audit: AuditLog,
    profile: String,
    run_id: String,
    hosts: Mutex<BTreeMap<String, HostStats>>,
    /// Print one stderr line per denied destination (`--quiet` turns it off).
    tell: bool,
    /// Every denied destination, with the first rule that refused it (`--learn` reads it).
    denied: Mutex<BTreeMap<(String, u16), DenyRule>>,
}

impl RunEvents {
    pub(crate) fn new(audit: AuditLog, profile: &str, run_id: &str, tell: bool) -> Self {
        Self {
            audit,
            profile: profile.to_string(),
            run_id: run_id.to_string(),
            hosts: Mutex::new(BTreeMap::new()),
            tell,
            denied: Mutex::new(BTreeMap::new()),
        }
    }

    /// `authsome: denied api.example.com:443 (…); allow with --allow api.example.com`, once per
    /// destination (host and port): the user (and an agent reading stderr) learns what to allow.
    /// True the first time.
    fn tell_once(&self, denial: &Denial) -> bool {
        let first = self
            .denied
            .lock()
            .expect("events lock")
            .insert((denial.host.clone(), denial.port), denial.rule.clone())
            .is_none();
        if first && self.tell {
            eprintln!("authsome: {denial}");
        }
        first
    }

    /// Each host's counts, with the proxy's live traffic counters merged in.
    pub(crate) fn summary(&self, traffic: &BTreeMap<String, TrafficStats>) -> BTreeMap<String, HostStats> {
        let mut hosts = self.hosts.lock().expect("events lock").clone();
        for (host, t) in traffic {
            let stats = hosts.entry(host.clone()).or_default();
            stats.conns += t.connections;
            stats.requests += t.requests;
            stats.bytes_up += t.bytes_up;
            stats.bytes_down += t.bytes_down;
        }
        hosts
    }

    /// Every destination refused during the run, with the rule that refused it first.
    pub(crate) fn denied(&self) -> BTreeMap<(String, u16), DenyRule> {
        self.denied.lock().expect("events lock").clone()
    }

    fn audit(&self, event: AuditEvent) {
        // Best effort: the run goes on if the log cannot be written (it was writable at start).
        let _ = self.audit.append(&event.profile(&self.profile).field("run_id", self.run_id.clone()));
    }
}

impl EventSink for RunEvents {
    fn record(&self, event: ProxyEvent) {
        let mut hosts = self.hosts.lock().expect("events lock");
        match event {
            ProxyEvent::Injected { owner, connection, host, status, retried_after_refresh, method, path } => {
                let stats = hosts.entry(host).or_default();
                stats.injected += 1;
                let key = format!("{}/{}", owner.0, connection.as_deref().unwrap_or("default"));
                *stats.connections.entry(key).or_default() += 1;
                if retried_after_refresh {
                    stats.refreshed_after_401 += 1;
                }
                tracing::debug!(%owner, %method, %path, status, "injected");
            }
            ProxyEvent::Tunnelled { host, .. } => hosts.entry(host).or_default().tunnelled += 1,
            ProxyEvent::TcpRelayed { host, port, bytes_out, bytes_in } => {
                let stats = hosts.entry(host.clone()).or_default();
                stats.tcp_connections += 1;
                stats.bytes_out += bytes_out;
                stats.bytes_in += bytes_in;
                drop(hosts);
                self.audit(
                    AuditEvent::new("proxy_tcp")
                        .field("host", host)
                        .field("port", port)
                        .field("bytes_out", bytes_out)
                        .field("bytes_in", bytes_in),
                );
            }
            ProxyEvent::Denied { denial } => {
                let stats = hosts.entry(denial.host.clone()).or_default();
                let leak = matches!(
                    denial.rule,
                    DenyRule::PlaceholderForeignHost { .. } | DenyRule::PlaceholderMisplaced { .. }
                );
                if leak {
                    stats.leaks_blocked += 1;
                } else {
                    stats.denied += 1;
                }
                drop(hosts);
                // One `proxy_deny` record per destination and run (a lookup alone asks for A
                // and AAAA); every blocked placeholder leak is recorded.
                if !self.tell_once(&denial) && !leak {
                    return;
                }
                let event = match &denial.rule {
                    DenyRule::PlaceholderForeignHost { owner, location } => {
                        AuditEvent::new("proxy_leak_blocked").provider(&owner.0).field("location", *location)
                    }
                    DenyRule::PlaceholderMisplaced { owner, location } => {
                        AuditEvent::new("proxy_leak_blocked").provider(&owner.0).field("location", location.clone())
                    }
                    _ => AuditEvent::new("proxy_deny"),
                };
                self.audit(
                    event
                        .field("host", denial.host.clone())
                        .field("port", denial.port)
                        .field("rule", denial.rule.code())
                        .field("reason", denial.rule.to_string())
                        .field("hint", denial.hint()),
                );
            }
            ProxyEvent::SecretScrubbed { host, occurrences, .. } => {
                hosts.entry(host).or_default().scrubbed += occurrences;
            }
            ProxyEvent::ResolveFailed { owner, host, error } => {
                hosts.entry(host.clone()).or_default().credential_errors += 1;
                drop(hosts);
                self.audit(
                    AuditEvent::new("proxy_credential_error")
                        .provider(&owner.0)
                        .field("host", host)
                        .field("error", error),
                );
            }
            ProxyEvent::UpstreamFailed { host, error } => {
                hosts.entry(host).or_default().upstream_errors += 1;
                tracing::debug!(%error, "upstream failed");
            }
        }
    }
}
