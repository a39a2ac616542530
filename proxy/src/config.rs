//! Run configuration: upstream trust and dialling ([`UpstreamConfig`], [`ConnectTo`]) and
//! egress policy ([`EgressPolicy`]). Parsing only; nothing here touches the network.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::ca::CertificateAuthority;
use crate::denial::{Denial, DenyRule};
use crate::matching::{HostPattern, RouteTable, normalize_host};
use crate::raw_tcp::TcpDestination;

/// Everything one proxy instance needs besides its credential source and event sink. Its
/// `Debug` never shows the run token.
#[derive(Clone)]
pub struct ProxyConfig {
    /// Signs the leaves the child sees for intercepted hosts.
    pub ca: Arc<CertificateAuthority>,
    /// Which owner's credential goes where, and the run's placeholders.
    pub routes: Arc<RouteTable>,
    /// Upstream trust and dialling.
    pub upstream: UpstreamConfig,
    /// MITM every host (full audit + leak guard), not only the hosts a route owns.
    pub inspect_all: bool,
    /// Explicit listener: required `Proxy-Authorization` (else 407).
    pub run_token: Option<String>,
    /// Which destinations the child may reach at all.
    pub egress: EgressPolicy,
    /// Destination ports the child may reach, by every way in (CONNECT, absolute-form,
    /// transparent). Empty = any port (plain `run`); a sandbox passes the ports it captures
    /// (443, 80 and its `--port`s) so an allowed host's SSH or database port stays closed.
    pub allowed_ports: Vec<u16>,
}

impl std::fmt::Debug for ProxyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyConfig")
            .field("ca", &self.ca)
            .field("routes", &self.routes)
            .field("upstream", &self.upstream)
            .field("inspect_all", &self.inspect_all)
            .field("run_token", &self.run_token.as_ref().map(|_| "[redacted]"))
            .field("egress", &self.egress)
            .field("allowed_ports", &self.allowed_ports)
            .finish()
    }
}

/// How the proxy reaches and trusts upstreams. The default trusts the system roots, keeps the
/// SSRF guard on and gives up connecting after 10 s.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// `AUTHSOME_EXTRA_ROOTS`: PEM file of extra trusted roots (corporate roots, tests).
    pub extra_roots_pem: Option<PathBuf>,
    /// `AUTHSOME_CONNECT_TO`, curl `--connect-to` meaning.
    pub connect_to: Vec<ConnectTo>,
    /// Turns the SSRF guard off.
    pub allow_private: bool,
    /// How long a TCP connect may take before the client gets 504.
    pub connect_timeout: Duration,
    /// Trust the system roots (`rustls-native-certs`). Tests and benchmarks turn it off to
    /// trust `extra_roots_pem` only and skip reading the system store.
    pub system_roots: bool,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            extra_roots_pem: None,
            connect_to: Vec::new(),
            allow_private: false,
            connect_timeout: Duration::from_secs(10),
            system_roots: true,
        }
    }
}

/// A configuration value that does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A bad `AUTHSOME_CONNECT_TO` entry.
    #[error("invalid connect-to entry {entry:?}: {reason} (expected host:port:addr:port)")]
    ConnectTo {
        /// The entry as given.
        entry: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// One `host:port:addr:port` entry: connections for `host:port` go to `addr:port` instead.
/// Only the TCP destination changes; TLS is still verified against `host`. An empty field
/// matches any host/port (left side) or keeps the original (right side), as in curl.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectTo {
    /// The host this entry applies to; `None` = any host.
    pub host: Option<String>,
    /// The port this entry applies to; `None` = any port.
    pub port: Option<u16>,
    /// Where to connect instead; `None` = the original host.
    pub addr: Option<String>,
    /// Which port to connect to instead; `None` = the original port.
    pub addr_port: Option<u16>,
}

fn split_fields(entry: &str) -> Option<[&str; 4]> {
    let mut fields = [""; 4];
    let mut rest = entry;
    for (i, field) in fields.iter_mut().enumerate() {
        let end = if rest.starts_with('[') { rest.find(']')? + 1 } else { rest.find(':').unwrap_or(rest.len()) };
        *field = &rest[..end];
        rest = &rest[end..];
        if i < 3 {
            rest = rest.strip_prefix(':')?;
        }
    }
    rest.is_empty().then_some(fields)
}

impl ConnectTo {
    /// A comma-separated list of entries (empty entries are skipped).
    pub fn parse_list(s: &str) -> Result<Vec<ConnectTo>, ConfigError> {
        s.split(',').map(str::trim).filter(|e| !e.is_empty()).map(ConnectTo::parse).collect()
    }

    /// One `host:port:addr:port` entry (IPv6 addresses in brackets).
    pub fn parse(entry: &str) -> Result<ConnectTo, ConfigError> {
        let err = |reason| ConfigError::ConnectTo { entry: entry.to_owned(), reason };
        let [host, port, addr, addr_port] = split_fields(entry).ok_or_else(|| err("needs four fields"))?;
        let port_of = |p: &str| -> Result<Option<u16>, ConfigError> {
            if p.is_empty() { Ok(None) } else { p.parse().map(Some).map_err(|_| err("bad port")) }
        };
        let name = |h: &str| (!h.is_empty()).then(|| normalize_host(h).into_owned());
        Ok(ConnectTo { host: name(host), port: port_of(port)?, addr: name(addr), addr_port: port_of(addr_port)? })
    }

    /// Where a connection to `host:port` really goes, if this entry applies.
    pub fn apply(&self, host: &str, port: u16) -> Option<(String, u16)> {
        if self.host.as_deref().is_some_and(|h| h != host) || self.port.is_some_and(|p| p != port) {
            return None;
        }
        Some((self.addr.clone().unwrap_or_else(|| host.to_owned()), self.addr_port.unwrap_or(port)))
    }
}

/// Which destinations the child may reach at all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EgressMode {
    /// Everything not denied (plain `run`).
    #[default]
    All,
    /// Hosts a route owns, plus `allow` patterns (the sandbox's default: `--allow` adds hosts
    /// on top of the connected providers').
    Providers,
    /// Only `allow` patterns and hosts a route owns. Same test as `Providers`; kept as its own
    /// word so a refusal names the rule the user chose.
    Allowlist,
}

/// The egress policy: a mode, hosts allowed on top of it, and hosts denied whatever else says.
#[derive(Debug, Clone, Default)]
pub struct EgressPolicy {
    /// What is reachable by default.
    pub mode: EgressMode,
    /// Hosts reachable in every mode (`--allow`, policy file).
    pub allow: Vec<HostPattern>,
    /// Wins over everything else.
    pub deny: Vec<HostPattern>,
    /// Exact destinations relayed as raw TCP (`--allow-tcp HOST:PORT`): no interception, no
    /// credential. Separate from `allow`: naming a host here opens that port only.
    pub tcp: Vec<TcpDestination>,
    /// Ports of the host's loopback reachable as `host.authsome.internal` (`--allow-host-port`).
    pub host_ports: Vec<u16>,
}

impl EgressPolicy {
    /// May `host:port` be reached? `owned` = a route owns the host. The refusal names the
    /// rule, so the launcher can print the flag that would allow it.
    pub fn check(&self, host: &str, port: u16, owned: bool) -> Result<(), Denial> {
        let host = normalize_host(host);
        let deny = |rule| Err(Denial::new(host.as_ref(), port, rule));
        if let Some(p) = self.deny.iter().find(|p| p.matches(&host)) {
            return deny(DenyRule::DenyPattern(p.clone()));
        }
        if self.mode == EgressMode::All || owned || self.allow.iter().any(|p| p.matches(&host)) {
            return Ok(());
        }
        match self.mode {
            EgressMode::Providers => deny(DenyRule::NotAProviderHost),
            _ => deny(DenyRule::NotAllowlisted),
        }
    }

    /// Is `host:port` an `--allow-tcp` destination (exact match, deny patterns aside)?
    pub fn tcp_allowed(&self, host: &str, port: u16) -> bool {
        let host = normalize_host(host);
        self.tcp.iter().any(|d| d.port == port && d.host == host)
    }

    /// May a raw TCP connection go to `host:port`? Deny patterns win, then the exact
    /// `--allow-tcp` list; HTTP rules (`allow`, the mode) never open a raw port.
    pub fn check_tcp(&self, host: &str, port: u16) -> Result<(), Denial> {
        let host = normalize_host(host);
        if let Some(p) = self.deny.iter().find(|p| p.matches(&host)) {
            return Err(Denial::new(host.as_ref(), port, DenyRule::DenyPattern(p.clone())));
        }
        if self.tcp_allowed(&host, port) {
            return Ok(());
        }
        Err(Denial::new(host.as_ref(), port, DenyRule::TcpNotAllowed))
    }

    /// May the sandbox reach the host's loopback on `port` (`--allow-host-port`)?
    pub fn check_host_port(&self, port: u16) -> Result<(), Denial> {
        if self.host_ports.contains(&port) {
            return Ok(());
        }
        Err(Denial::new(crate::raw_tcp::HOST_LOOPBACK_NAME, port, DenyRule::HostPortNotAllowed))
    }

    /// The ports raw TCP needs captured: every `--allow-tcp` port and `--allow-host-port`,
    /// sorted, once each.
    pub fn raw_tcp_ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self.tcp.iter().map(|d| d.port).chain(self.host_ports.iter().copied()).collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_run_token() {
        let config = ProxyConfig {
            ca: Arc::new(CertificateAuthority::ephemeral().unwrap()),
            routes: Arc::new(RouteTable::new(Vec::new(), Vec::new())),
            upstream: UpstreamConfig::default(),
            inspect_all: false,
            run_token: Some("run-token-SECRET123".into()),
            egress: EgressPolicy::default(),
            allowed_ports: Vec::new(),
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("SECRET123") && shown.contains("[redacted]"), "{shown}");
    }

    #[test]
    fn connect_to_parses_like_curl() {
        let list =
            ConnectTo::parse_list("api.openai.com:443:127.0.0.1:8443, ::[::1]:9000,a.b:443::,x.y:80:[fe80::1]:81")
                .unwrap();
        assert_eq!(
            list[0],
            ConnectTo {
                host: Some("api.openai.com".into()),
                port: Some(443),
                addr: Some("127.0.0.1".into()),
                addr_port: Some(8443),
            }
        );
        assert_eq!(list[1].host, None);
        assert_eq!(list[1].port, None);
        assert_eq!(list[1].addr.as_deref(), Some("::1"));
        assert_eq!(list[2].apply("a.b", 443), Some(("a.b".into(), 443)));
        assert_eq!(list[3].addr.as_deref(), Some("fe80::1"));
        assert_eq!(list[0].apply("api.openai.com", 443), Some(("127.0.0.1".into(), 8443)));
        assert_eq!(list[0].apply("api.openai.com", 80), None);
        assert_eq!(list[1].apply("anything", 1), Some(("::1".into(), 9000)));
        for bad in ["a:443:b", "a:x:b:1", "a:443:b:99999", "a:1:[::1:2"] {
            assert!(ConnectTo::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn egress_policy_modes() {
        let p = |mode, allow: &[&str], deny: &[&str]| EgressPolicy {
            mode,
            allow: allow.iter().map(|a| a.parse().unwrap()).collect(),
            deny: deny.iter().map(|a| a.parse().unwrap()).collect(),
            ..EgressPolicy::default()
        };
        let rule = |r: Result<(), Denial>| r.unwrap_err().rule;
        let all = p(EgressMode::All, &[], &["*.evil.com"]);
        assert!(all.check("ok.com", 443, false).is_ok());
        assert_eq!(rule(all.check("x.evil.com", 443, true)), DenyRule::DenyPattern("*.evil.com".parse().unwrap()));
        let providers = p(EgressMode::Providers, &["ok.com"], &[]);
        assert!(providers.check("api.x.com", 443, true).is_ok());
        // `--allow` counts in providers mode too.
        assert!(providers.check("ok.com", 443, false).is_ok());
        let refused = providers.check("Other.COM", 8443, false).unwrap_err();
        assert_eq!(
            (refused.host.as_str(), refused.port, &refused.rule),
            ("other.com", 8443, &DenyRule::NotAProviderHost)
        );
        assert_eq!(refused.hint(), "allow with --allow other.com");
        let allow = p(EgressMode::Allowlist, &["*.ok.com"], &["bad.ok.com"]);
        assert!(allow.check("a.ok.com", 443, false).is_ok());
        assert!(allow.check("A.OK.COM", 443, false).is_ok());
        assert!(allow.check("owned.com", 443, true).is_ok());
        assert_eq!(rule(allow.check("other.com", 443, false)), DenyRule::NotAllowlisted);
        assert!(allow.check("bad.ok.com", 443, true).is_err());
    }

    #[test]
    fn raw_tcp_is_exact_and_apart_from_http_rules() {
        let policy = EgressPolicy {
            mode: EgressMode::All,
            allow: vec!["*.example.com".parse().unwrap()],
            deny: vec!["evil.example.com".parse().unwrap()],
            tcp: vec!["db.example.com:5432".parse().unwrap(), "evil.example.com:22".parse().unwrap()],
            host_ports: vec![3000],
        };
        assert!(policy.check_tcp("DB.example.com", 5432).is_ok());
        let rule = |r: Result<(), Denial>| r.unwrap_err().rule;
        // Another port of the allowed host, the same port elsewhere, an --allow host: refused.
        assert_eq!(rule(policy.check_tcp("db.example.com", 5433)), DenyRule::TcpNotAllowed);
        assert_eq!(rule(policy.check_tcp("other.example.com", 5432)), DenyRule::TcpNotAllowed);
        assert_eq!(rule(policy.check_tcp("api.example.com", 22)), DenyRule::TcpNotAllowed);
        // Deny still wins.
        assert!(matches!(rule(policy.check_tcp("evil.example.com", 22)), DenyRule::DenyPattern(_)));
        let refused = policy.check_tcp("db.example.com", 5433).unwrap_err();
        assert_eq!(refused.hint(), "allow with --allow-tcp db.example.com:5433");
        assert!(policy.check_host_port(3000).is_ok());
        let refused = policy.check_host_port(3001).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "denied host.authsome.internal:3001 (a host port not allowed); allow with --allow-host-port 3001"
        );
        assert_eq!(policy.raw_tcp_ports(), vec![22, 3000, 5432]);
    }
}
