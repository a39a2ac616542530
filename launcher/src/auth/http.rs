//! The HTTP client for OAuth endpoints: TLS verified against the system roots plus
//! `AUTHSOME_EXTRA_ROOTS`, `AUTHSOME_CONNECT_TO` honoured (curl's `--connect-to` meaning: only
//! the TCP destination changes, TLS is still verified against the URL's host name), redirects
//! never followed (a token endpoint that redirects is an error, not a hop), and timeouts on
//! everything. Built only on the paths that talk to a provider, never on a plain token lookup.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use crate::env;
use crate::error::{CliError, Kind};

/// Time allowed for one request to an OAuth endpoint.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One `AUTHSOME_CONNECT_TO` entry: connections for `host:port` go to `addr:to_port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConnectTo {
    pub(crate) host: String,
    /// `None` when the entry left the port empty (any port).
    pub(crate) port: Option<u16>,
    pub(crate) addr: String,
    pub(crate) to_port: u16,
}

/// Parse `host:port:addr:port[,…]`. IPv6 addresses go in brackets (`[::1]`).
pub(crate) fn parse_connect_to(value: &str) -> Result<Vec<ConnectTo>, String> {
    let mut out = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let parts = split_entry(entry).ok_or_else(|| format!("'{entry}' is not host:port:addr:port"))?;
        let [host, port, addr, to_port] = parts;
        let parse_port = |p: &str| p.parse::<u16>().map_err(|_| format!("'{entry}': '{p}' is not a port"));
        out.push(ConnectTo {
            host: host.to_ascii_lowercase(),
            port: if port.is_empty() { None } else { Some(parse_port(port)?) },
            addr: addr.trim_start_matches('[').trim_end_matches(']').to_string(),
            to_port: parse_port(to_port)?,
        });
    }
    Ok(out)
}

/// Split on the three colons that are not inside brackets.
fn split_entry(entry: &str) -> Option<[&str; 4]> {
    let mut parts = Vec::with_capacity(4);
    let (mut depth, mut start) = (0, 0);
    for (i, c) in entry.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ':' if depth == 0 => {
                parts.push(&entry[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&entry[start..]);
    let parts: [&str; 4] = parts.try_into().ok()?;
    (!parts[0].is_empty() && !parts[2].is_empty()).then_some(parts)
}

/// The client every OAuth request goes through.
pub(crate) fn client() -> Result<reqwest::Client, CliError> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        // Servers close idle keep-alive connections (Node after 5 s); reusing one for a POST that
        // cannot be retried fails with a reset, so idle connections are dropped before that.
        .pool_idle_timeout(Duration::from_secs(2))
        .user_agent(concat!("authsome/", env!("CARGO_PKG_VERSION")))
        .https_only(true)
        .no_proxy();
    if let Some(path) = env::var(env::EXTRA_ROOTS) {
        let pem = std::fs::read(&path).map_err(|e| {
            CliError::new(Kind::Generic, format!("cannot read {}={path}: {e}", env::EXTRA_ROOTS))
                .hint("point it at a PEM file of CA certificates, or unset it")
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            CliError::new(Kind::Generic, format!("{}={path} holds no usable PEM certificate: {e}", env::EXTRA_ROOTS))
        })?;
        builder = builder.tls_certs_merge(certs);
    }
    if let Some(value) = env::var(env::CONNECT_TO) {
        let entries =
            parse_connect_to(&value).map_err(|e| CliError::new(Kind::Usage, format!("{}: {e}", env::CONNECT_TO)))?;
        for entry in entries {
            // reqwest overrides DNS per host name; the resolved port is used for URLs on the
            // scheme's default port, and an explicit URL port always wins. So an entry for
            // port 443 (or any port) moves the connection anywhere; an entry for another port
            // only works when it keeps the port.
            if entry.port.is_some_and(|p| p != 443 && p != entry.to_port) {
                tracing::warn!(host = %entry.host, "AUTHSOME_CONNECT_TO: a non-443 source port must map to the same port");
                continue;
            }
            let addrs: Vec<SocketAddr> = (entry.addr.as_str(), entry.to_port)
                .to_socket_addrs()
                .map_err(|e| {
                    CliError::new(Kind::Usage, format!("{}: cannot resolve {}: {e}", env::CONNECT_TO, entry.addr))
                })?
                .collect();
            builder = builder.resolve_to_addrs(&entry.host, &addrs);
        }
    }
    builder.build().map_err(|e| CliError::new(Kind::Generic, "cannot set up the HTTPS client").cause(e))
}

/// The text of a transport error and its causes.
pub(crate) fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_to_entries() {
        let entries = parse_connect_to("idp.example.test:443:127.0.0.1:8443, api.x.com::[::1]:9000").unwrap();
        assert_eq!(
            entries,
            vec![
                ConnectTo { host: "idp.example.test".into(), port: Some(443), addr: "127.0.0.1".into(), to_port: 8443 },
                ConnectTo { host: "api.x.com".into(), port: None, addr: "::1".into(), to_port: 9000 },
            ]
        );
        for bad in ["idp:443:127.0.0.1", "idp:x:127.0.0.1:1", ":443:127.0.0.1:1", "idp:443::1"] {
            assert!(parse_connect_to(bad).is_err(), "{bad}");
        }
        assert!(parse_connect_to("").unwrap().is_empty());
    }
}
