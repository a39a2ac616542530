//! The one shape of a refusal: [`Denial`] (which destination, by which [`DenyRule`]) and the
//! answer a refused client gets.
//!
//! Every refusal the proxy makes (egress policy, SSRF guard, ports, TRACE, a placeholder in
//! the wrong place or sent to a foreign host) is a `Denial`: the launcher turns the event into
//! its stderr line and audit record, and the client gets a 403 (405 for TRACE) whose body is
//! the same sentence, as text, or as JSON when the request's `Accept` names JSON. `hint()` is
//! the exact flag that would allow the destination, or what to do instead where no flag
//! should (placeholder misuse, TRACE). Nothing here carries a secret or a placeholder value.

use std::fmt;
use std::net::IpAddr;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};

use crate::body::ProxyBody;
use crate::matching::{HostPattern, Owner};

/// Why a destination or request was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DenyRule {
    /// A `--deny` pattern (or policy-file deny entry) matched.
    DenyPattern(HostPattern),
    /// `--egress=providers`: no provider owns the host and no `--allow` names it.
    NotAProviderHost,
    /// `--egress=allowlist`: neither a provider nor an `--allow` pattern names the host.
    NotAllowlisted,
    /// The port is not one the run captures or allows (443, 80, `--port`s).
    Port,
    /// A raw TCP connection to a destination no `--allow-tcp HOST:PORT` names.
    TcpNotAllowed,
    /// `host.authsome.internal` on a port no `--allow-host-port` names.
    HostPortNotAllowed,
    /// The host resolves to a private, loopback, link-local or other non-public address.
    PrivateAddress(IpAddr),
    /// The host resolves to an address assigned to one of this machine's interfaces.
    LocalAddress(IpAddr),
    /// The destination was given as an IP literal rather than a host name.
    IpLiteral,
    /// A raw IP was dialled (transparent path) with no SNI and no name from our DNS.
    UnnamedAddress,
    /// A placeholder was sent to a host its provider does not own.
    PlaceholderForeignHost {
        /// The placeholder's owner.
        owner: Owner,
        /// Where it was found ("header", "query").
        location: &'static str,
    },
    /// A placeholder appeared outside its provider's declared credential header/parameter.
    PlaceholderMisplaced {
        /// The placeholder's owner.
        owner: Owner,
        /// Where it was found (a header name, "query", …).
        location: String,
    },
    /// TRACE / TRACK would echo the injected request back to the client.
    TraceMethod,
}

impl DenyRule {
    /// A stable machine name for the rule (JSON bodies, audit).
    pub fn code(&self) -> &'static str {
        match self {
            DenyRule::DenyPattern(_) => "deny_pattern",
            DenyRule::NotAProviderHost => "not_a_provider_host",
            DenyRule::NotAllowlisted => "not_allowlisted",
            DenyRule::Port => "port",
            DenyRule::TcpNotAllowed => "tcp_not_allowed",
            DenyRule::HostPortNotAllowed => "host_port_not_allowed",
            DenyRule::PrivateAddress(_) => "private_address",
            DenyRule::LocalAddress(_) => "local_address",
            DenyRule::IpLiteral => "ip_literal",
            DenyRule::UnnamedAddress => "unnamed_address",
            DenyRule::PlaceholderForeignHost { .. } => "placeholder_foreign_host",
            DenyRule::PlaceholderMisplaced { .. } => "placeholder_misplaced",
            DenyRule::TraceMethod => "trace_method",
        }
    }
}

impl fmt::Display for DenyRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DenyRule::DenyPattern(p) => write!(f, "matches the deny pattern {p}"),
            DenyRule::NotAProviderHost => f.write_str("not a provider host"),
            DenyRule::NotAllowlisted => f.write_str("not in the allowlist"),
            DenyRule::Port => f.write_str("port not allowed"),
            DenyRule::TcpNotAllowed => f.write_str("not an allowed TCP destination"),
            DenyRule::HostPortNotAllowed => f.write_str("a host port not allowed"),
            DenyRule::PrivateAddress(addr) => write!(f, "resolves to the non-public address {addr}"),
            DenyRule::LocalAddress(addr) => write!(f, "resolves to {addr}, an address of this machine"),
            DenyRule::IpLiteral => f.write_str("an IP address, not a host name"),
            DenyRule::UnnamedAddress => f.write_str("a raw IP without a host name"),
            DenyRule::PlaceholderForeignHost { owner, location } => {
                write!(
                    f,
                    "a {owner} credential placeholder in the {location} of a request to a host {owner} does not own"
                )
            }
            DenyRule::PlaceholderMisplaced { owner, location } => {
                write!(f, "a {owner} credential placeholder in the {location}, where {owner} takes no credential")
            }
            DenyRule::TraceMethod => f.write_str("TRACE/TRACK would echo the credential back"),
        }
    }
}

/// A refused destination or request: what the launcher prints once per destination and
/// audits, and what the client reads in the 403 body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial {
    /// The destination host (or IP) as the client named it.
    pub host: String,
    /// The destination port.
    pub port: u16,
    /// Which rule refused it.
    pub rule: DenyRule,
}

impl Denial {
    /// A refusal of `host:port` by `rule`.
    pub fn new(host: impl Into<String>, port: u16, rule: DenyRule) -> Self {
        Denial { host: host.into(), port, rule }
    }

    /// The flag or policy line that allows this destination, or what to do instead:
    /// `allow with --allow api.example.com`, `allow with --port 8443`, …
    pub fn hint(&self) -> String {
        let host = &self.host;
        match &self.rule {
            DenyRule::DenyPattern(p) => format!("remove --deny {p} (or its policy-file deny entry) to allow it"),
            DenyRule::NotAProviderHost | DenyRule::NotAllowlisted => format!("allow with --allow {host}"),
            DenyRule::Port => format!("allow with --port {}", self.port),
            DenyRule::TcpNotAllowed => {
                let host = if host.contains(':') { format!("[{host}]") } else { host.clone() };
                format!("allow with --allow-tcp {host}:{}", self.port)
            }
            DenyRule::HostPortNotAllowed if self.port == 0 => "allow with --allow-host-port PORT".to_owned(),
            DenyRule::HostPortNotAllowed => format!("allow with --allow-host-port {}", self.port),
            DenyRule::PrivateAddress(_) | DenyRule::IpLiteral => "allow with --allow-private".to_owned(),
            DenyRule::LocalAddress(_) => {
                "this machine's own addresses are never reachable through the proxy".to_owned()
            }
            DenyRule::UnnamedAddress => "connect by host name (the sandbox's DNS names every host)".to_owned(),
            DenyRule::PlaceholderForeignHost { owner, .. } => {
                format!("send the {owner} placeholder only to {owner}'s API hosts")
            }
            DenyRule::PlaceholderMisplaced { owner, .. } => {
                format!("put the {owner} placeholder only in the header or query parameter {owner} authenticates with")
            }
            DenyRule::TraceMethod => "use another method; TRACE and TRACK are never forwarded".to_owned(),
        }
    }

    /// The `--policy` file entry that allows this destination, where one does:
    /// `"allow": ["api.example.com"]`, `"ports": [8443]`.
    pub fn policy_entry(&self) -> Option<String> {
        match &self.rule {
            DenyRule::NotAProviderHost | DenyRule::NotAllowlisted => {
                Some(format!("\"allow\": [{}]", json_string(&self.host)))
            }
            DenyRule::Port => Some(format!("\"ports\": [{}]", self.port)),
            _ => None,
        }
    }

    fn status(&self) -> StatusCode {
        match self.rule {
            DenyRule::TraceMethod => StatusCode::METHOD_NOT_ALLOWED,
            _ => StatusCode::FORBIDDEN,
        }
    }

    fn json(&self) -> String {
        let quote = |s: &str| json_string(s);
        let policy = self.policy_entry().map(|p| format!(",\"policy\":{}", quote(&p))).unwrap_or_default();
        format!(
            "{{\"error\":\"denied\",\"host\":{},\"port\":{},\"rule\":{},\"reason\":{},\"hint\":{}{policy},\"message\":{}}}\n",
            quote(&self.host),
            self.port,
            quote(self.rule.code()),
            quote(&self.rule.to_string()),
            quote(&self.hint()),
            quote(&format!("authsome: {self}")),
        )
    }

    /// The answer for the client: text, or JSON when `request_headers` accept JSON.
    pub(crate) fn response(&self, request_headers: Option<&HeaderMap>) -> Response<ProxyBody> {
        let json = request_headers.is_some_and(accepts_json);
        let (body, content_type) = if json {
            (self.json(), "application/json")
        } else {
            (format!("authsome: {self}\n"), "text/plain; charset=utf-8")
        };
        let mut response = Response::new(ProxyBody::full(Bytes::from(body)));
        *response.status_mut() = self.status();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        if self.rule == DenyRule::TraceMethod {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"));
        }
        response
    }
}

/// `denied api.example.com:443 (not in the allowlist); allow with --allow api.example.com`
impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        // Port 0: refused before any connection named a port (a DNS answer).
        let port = if self.port == 0 { String::new() } else { format!(":{}", self.port) };
        write!(f, "denied {host}{port} ({}); {}", self.rule, self.hint())
    }
}

impl std::error::Error for Denial {}

impl Denial {
    /// Could a person lift this refusal for the run (an egress or port rule), so that a
    /// [`DenialHook`] is asked? Deliberate refusals (`--deny`, the SSRF guard, placeholder
    /// misuse, TRACE) are never put to a question.
    pub fn askable(&self) -> bool {
        matches!(self.rule, DenyRule::NotAProviderHost | DenyRule::NotAllowlisted | DenyRule::Port)
    }
}

/// The answer of a [`DenialHook`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Let this connection or request through.
    Allow,
    /// Refuse it as the policy said.
    Deny,
}

/// Asked, before a destination is refused, whether to let it through after all (the
/// launcher's `--ask`: a question on a terminal). Called only for [`Denial::askable`]
/// refusals, and only when one is installed: the allowed path never awaits anything. The
/// request waits while the future runs; the hook owns its own timeout.
pub trait DenialHook: Send + Sync + 'static {
    /// Decide on `denial`.
    fn decide(&self, denial: Denial) -> std::pin::Pin<Box<dyn Future<Output = Verdict> + Send + '_>>;
}

/// `s` as a JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Does the client's `Accept` name JSON (`application/json`, `application/*+json`)?
fn accepts_json(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(|item| {
        let media = item.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        media == "application/json" || (media.starts_with("application/") && media.ends_with("+json"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_the_stderr_line() {
        let d = Denial::new("api.example.com", 443, DenyRule::NotAllowlisted);
        assert_eq!(
            d.to_string(),
            "denied api.example.com:443 (not in the allowlist); allow with --allow api.example.com"
        );
        let d = Denial::new("db.example.com", 5432, DenyRule::Port);
        assert_eq!(d.hint(), "allow with --port 5432");
        let d = Denial::new("::1", 443, DenyRule::PrivateAddress("::1".parse().unwrap()));
        assert!(d.to_string().starts_with("denied [::1]:443 ("), "{d}");
        assert!(d.to_string().ends_with("allow with --allow-private"), "{d}");
        let d = Denial::new("x.com", 443, DenyRule::DenyPattern("*.x.com".parse().unwrap()));
        assert!(d.hint().contains("--deny *.x.com"));
        let misplaced =
            DenyRule::PlaceholderMisplaced { owner: Owner::from("openai"), location: "header x-echo".into() };
        let d = Denial::new("api.openai.com", 443, misplaced);
        assert!(!d.hint().contains("--"), "no flag allows placeholder misuse: {}", d.hint());
    }

    #[test]
    fn json_only_when_accepted() {
        let d = Denial::new("a\"b.com", 443, DenyRule::NotAProviderHost);
        let text = d.response(None);
        assert_eq!(text.status(), StatusCode::FORBIDDEN);
        assert_eq!(text.headers()[header::CONTENT_TYPE], "text/plain; charset=utf-8");
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, "text/html, application/vnd.api+json;q=0.9".parse().unwrap());
        let json = d.response(Some(&headers));
        assert_eq!(json.headers()[header::CONTENT_TYPE], "application/json");
        let body = match json.body() {
            ProxyBody::Full(Some(b)) => String::from_utf8(b.to_vec()).unwrap(),
            _ => panic!("full body"),
        };
        assert!(body.contains(r#""host":"a\"b.com""#), "{body}");
        assert!(body.contains(r#""rule":"not_a_provider_host""#), "{body}");
        assert!(body.contains(r#""policy":"\"allow\": [\"a\\\"b.com\"]""#), "{body}");
        headers.insert(header::ACCEPT, "*/*".parse().unwrap());
        assert_eq!(d.response(Some(&headers)).headers()[header::CONTENT_TYPE], "text/plain; charset=utf-8");
        assert_eq!(
            Denial::new("h", 443, DenyRule::TraceMethod).response(None).status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
    }
}
