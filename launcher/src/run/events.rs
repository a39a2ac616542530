//! What the proxy saw during a run: a per-host summary written to the audit log when the run
//! ends, and an audit line at once for every denial and every blocked placeholder leak.
//! Nothing here ever holds a secret or a placeholder.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use authsome_proxy::{Denial, DenyRule, EventSink, ProxyEvent};
use authsome_vault::{AuditEvent, AuditLog};
use serde::Serialize;

#[derive(Debug, Default, Clone, Serialize)]
pub(crate) struct HostStats {
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
    told: Mutex<BTreeSet<String>>,
}

impl RunEvents {
    pub(crate) fn new(audit: AuditLog, profile: &str, run_id: &str, tell: bool) -> Self {
        Self {
            audit,
            profile: profile.to_string(),
            run_id: run_id.to_string(),
            hosts: Mutex::new(BTreeMap::new()),
            tell,
            told: Mutex::new(BTreeSet::new()),
        }
    }

    /// `authsome: denied api.example.com:443 (…); allow with --allow api.example.com`, once per
    /// destination and rule: the user (and an agent reading stderr) learns what to allow.
    fn tell_once(&self, denial: &Denial) {
        if !self.tell {
            return;
        }
        let key = format!("{}:{} {}", denial.host, denial.port, denial.rule.code());
        if self.told.lock().expect("events lock").insert(key) {
            eprintln!("authsome: {denial}");
        }
    }

    pub(crate) fn summary(&self) -> BTreeMap<String, HostStats> {
        self.hosts.lock().expect("events lock").clone()
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
                self.tell_once(&denial);
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
                        .field("reason", denial.rule.to_string()),
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
