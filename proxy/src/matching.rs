//! Which owner's credential, if any, a request gets: host patterns, routes and the per-run
//! route table.
//!
//! Pure logic, no I/O. The semantics are the Python authsome's with
//! its bugs fixed: host patterns are exact names or `*.suffix` on a label boundary (never a
//! regex), and a placeholder in the request settles a tie between owners.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// Who owns a credential. The launcher uses provider names; the proxy treats it as a label.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Owner(pub String);

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Owner {
    fn from(s: &str) -> Self {
        Owner(s.to_owned())
    }
}

/// A host pattern: exact `api.openai.com` or wildcard `*.googleapis.com`.
///
/// The wildcard matches one or more labels in front of the suffix: `*.example.com` matches
/// `a.example.com` and `a.b.example.com`, never `example.com` nor `badexample.com`.
/// Stored lower-case, without a trailing dot; `Suffix` holds the part after `*.`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// This host only.
    Exact(String),
    /// Any host below this suffix (the pattern was `*.<suffix>`).
    Suffix(String),
}

/// Why a host pattern was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid host pattern {pattern:?}: {reason}")]
pub struct PatternError {
    /// The pattern as given.
    pub pattern: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl FromStr for HostPattern {
    type Err = PatternError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| PatternError { pattern: s.to_owned(), reason };
        let lowered = s.trim().to_ascii_lowercase();
        let trimmed = lowered.strip_suffix('.').unwrap_or(&lowered);
        if trimmed.is_empty() {
            return Err(err("empty"));
        }
        // An IPv6 literal is fine as an exact pattern, bracketed or not.
        let unbracketed = trimmed.strip_prefix('[').and_then(|t| t.strip_suffix(']')).unwrap_or(trimmed);
        if let Ok(ip) = unbracketed.parse::<IpAddr>() {
            return Ok(HostPattern::Exact(ip.to_string()));
        }
        let (wildcard, name) = match trimmed.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, trimmed),
        };
        if name.contains('*') {
            return Err(err("`*` is only allowed as the whole first label (`*.example.com`)"));
        }
        if name.contains([':', '/', '@', ' ', '[', ']', '?', '#']) {
            return Err(err("a host pattern is a bare host name: no scheme, port or path"));
        }
        if name.split('.').any(str::is_empty) {
            return Err(err("empty label"));
        }
        if wildcard && !name.contains('.') {
            return Err(err("a wildcard needs a suffix of at least two labels"));
        }
        Ok(if wildcard { HostPattern::Suffix(name.to_owned()) } else { HostPattern::Exact(name.to_owned()) })
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(h) => f.write_str(h),
            HostPattern::Suffix(s) => write!(f, "*.{s}"),
        }
    }
}

impl HostPattern {
    /// Does this pattern match `host`? `host` must already be normalised (lower-case, without a trailing dot).
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(h) => h == host,
            HostPattern::Suffix(suffix) => {
                host.len() > suffix.len() + 1
                    && host.ends_with(suffix.as_str())
                    && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
            }
        }
    }

    fn is_exact(&self) -> bool {
        matches!(self, HostPattern::Exact(_))
    }
}

/// Lower-case, strip a trailing dot and IPv6 brackets. Borrowed when nothing changes (the
/// common case on the request path).
pub fn normalize_host(host: &str) -> std::borrow::Cow<'_, str> {
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(host.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(host)
    }
}

/// Loopback targets never get a credential (upstream rule 2).
pub fn is_loopback_host(host: &str) -> bool {
    if host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    host.parse::<IpAddr>().is_ok_and(|ip| match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    })
}

/// One injection route of an owner: hosts + optional path prefix + paths never injected
/// (the owner's OAuth endpoints on those hosts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Whose credential this route injects.
    pub owner: Owner,
    /// The hosts it applies to.
    pub hosts: Vec<HostPattern>,
    /// Only paths under this prefix (on a segment boundary); `None` = every path.
    pub path_prefix: Option<String>,
    /// Paths never injected (query ignored), e.g. the owner's token endpoint.
    pub excluded_paths: Vec<String>,
}

/// A per-run placeholder: the string the child holds instead of a secret, bound to an owner
/// and a connection name. Never parsed; looked up exactly.
#[derive(Clone, PartialEq, Eq)]
pub struct Placeholder {
    /// The string the child holds.
    pub value: String,
    /// Whose credential it stands for.
    pub owner: Owner,
    /// Which of the owner's connections.
    pub connection: String,
}

impl fmt::Debug for Placeholder {
    // The value is not a secret, but it must not reach logs either (it would let a reader
    // correlate runs and it is what the leak guard looks for).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Placeholder")
            .field("value", &"[redacted]")
            .field("owner", &self.owner)
            .field("connection", &self.connection)
            .finish()
    }
}

/// The outcome of route selection for one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    /// Inject this owner's credential.
    Inject(Owner),
    /// No route applies.
    None,
    /// Several owners tie and no placeholder chose between them: nothing is injected.
    Ambiguous(Vec<Owner>),
}

#[derive(Debug)]
struct CompiledRoute {
    owner: Owner,
    hosts: Vec<HostPattern>,
    /// Normalised: leading `/`, no trailing `/`; empty = whole host.
    prefix: String,
    excluded: Vec<String>,
}

/// Immutable per-run routing state (cheap to share behind `Arc`).
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<CompiledRoute>,
    placeholders: HashMap<String, Placeholder>,
    /// Shortest placeholder length: header values shorter than this cannot hold one.
    min_placeholder_len: usize,
}

fn normalize_prefix(prefix: &str) -> String {
    let trimmed = prefix.trim().trim_end_matches('/');
    if trimmed.is_empty() {
        String::new()
    } else if trimmed.starts_with('/') {
        trimmed.to_owned()
    } else {
        format!("/{trimmed}")
    }
}

/// The path route matching sees: percent-escapes of unreserved characters, `/` and `\\`
/// decoded, `\\` read as `/`, `;parameters` dropped from each segment, empty and `.` segments
/// dropped, `..` resolved (never above the root). Servers and frameworks differ in which of
/// these they apply; matching on the most-normalised form means `/api/../admin`,
/// `/api/%2e%2e/admin` or `/api;x/../admin` cannot pass for a path under `/api`, and
/// `//oauth/token` or `/oauth;x/token` still hit an excluded OAuth endpoint. The request is
/// forwarded with its path as sent.
pub fn normalize_path(path: &str) -> String {
    let path = strip_query(path);
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%'
            && let Some(v) = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            && (v.is_ascii_alphanumeric() || matches!(v, b'-' | b'.' | b'_' | b'~' | b'/' | b'\\'))
        {
            decoded.push(if v == b'\\' { b'/' } else { v });
            i += 3;
            continue;
        }
        decoded.push(if b == b'\\' { b'/' } else { b });
        i += 1;
    }
    let decoded = String::from_utf8_lossy(&decoded);
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        let segment = segment.split(';').next().unwrap_or("");
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let trailing = decoded.ends_with('/') && !segments.is_empty();
    let mut out = String::with_capacity(decoded.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || trailing {
        out.push('/');
    }
    out
}

fn strip_query(path: &str) -> &str {
    path.split_once(['?', '#']).map_or(path, |(p, _)| p)
}

fn prefix_matches(prefix: &str, path: &str) -> bool {
    prefix.is_empty()
        || path == prefix
        || (path.starts_with(prefix) && path.as_bytes().get(prefix.len()) == Some(&b'/'))
}

fn path_excluded(excluded: &[String], path: &str) -> bool {
    let trimmed = if path.len() > 1 { path.trim_end_matches('/') } else { path };
    excluded.iter().any(|e| e == trimmed)
}

impl RouteTable {
    /// Compile the run's routes and placeholders (host patterns indexed for lookup).
    pub fn new(routes: Vec<Route>, placeholders: Vec<Placeholder>) -> Self {
        let routes = routes
            .into_iter()
            .map(|r| CompiledRoute {
                owner: r.owner,
                hosts: r.hosts,
                prefix: r.path_prefix.as_deref().map(normalize_prefix).unwrap_or_default(),
                excluded: r
                    .excluded_paths
                    .iter()
                    .map(|p| {
                        let p = strip_query(p.trim());
                        let p = if p.len() > 1 { p.trim_end_matches('/') } else { p };
                        if p.starts_with('/') { p.to_owned() } else { format!("/{p}") }
                    })
                    .collect(),
            })
            .collect();
        let min_placeholder_len =
            placeholders.iter().map(|p| p.value.len()).filter(|&len| len > 0).min().unwrap_or(usize::MAX);
        let placeholders =
            placeholders.into_iter().filter(|p| !p.value.is_empty()).map(|p| (p.value.clone(), p)).collect();
        RouteTable { routes, placeholders, min_placeholder_len }
    }

    /// Pick the owner whose credential goes on a request to `host` + `path` (an https
    /// request; the caller never asks for plain http). `path` may carry a query: it is ignored.
    pub fn select(&self, host: &str, path: &str, placeholder_owner: Option<&Owner>) -> Selection {
        let host = normalize_host(host);
        if is_loopback_host(&host) {
            return Selection::None;
        }
        let path = normalize_path(path);
        let path = path.as_str();
        let mut best: Option<(usize, bool)> = None;
        let mut winners: Vec<&Owner> = Vec::new();
        for route in &self.routes {
            let Some(exact) = route.hosts.iter().filter(|p| p.matches(&host)).map(HostPattern::is_exact).max() else {
                continue;
            };
            if path_excluded(&route.excluded, path) {
                // The owner's own OAuth endpoints never get a credential, from anyone.
                return Selection::None;
            }
            if !prefix_matches(&route.prefix, path) {
                continue;
            }
            let score = (route.prefix.len(), exact);
            match best {
                Some(b) if b > score => {}
                Some(b) if b == score => {
                    if !winners.contains(&&route.owner) {
                        winners.push(&route.owner);
                    }
                }
                _ => {
                    best = Some(score);
                    winners.clear();
                    winners.push(&route.owner);
                }
            }
        }
        match winners.as_slice() {
            [] => Selection::None,
            [one] => Selection::Inject((*one).clone()),
            many => match placeholder_owner {
                Some(owner) if many.contains(&owner) => Selection::Inject(owner.clone()),
                _ => {
                    let mut owners: Vec<Owner> = many.iter().map(|o| (*o).clone()).collect();
                    owners.sort();
                    Selection::Ambiguous(owners)
                }
            },
        }
    }

    /// Does any route name this host (ignoring paths)? Decides MITM vs opaque tunnel.
    pub fn owns_host(&self, host: &str) -> bool {
        let host = normalize_host(host);
        !is_loopback_host(&host) && self.routes.iter().any(|r| r.hosts.iter().any(|p| p.matches(&host)))
    }

    /// Does `owner` have a route naming this host? The leak guard's question.
    pub fn owner_owns_host(&self, owner: &Owner, host: &str) -> bool {
        let host = normalize_host(host);
        self.routes.iter().any(|r| &r.owner == owner && r.hosts.iter().any(|p| p.matches(&host)))
    }

    /// The placeholder whose value is exactly `value`.
    pub fn placeholder(&self, value: &str) -> Option<&Placeholder> {
        self.placeholders.get(value)
    }

    /// Whether the run has any placeholder (if not, requests need no scanning for one).
    pub fn has_placeholders(&self) -> bool {
        !self.placeholders.is_empty()
    }

    /// Every placeholder that occurs in `haystack` (exact substring match).
    pub(crate) fn placeholders_in<'a, 'h>(
        &'a self,
        haystack: &'h [u8],
    ) -> impl Iterator<Item = &'a Placeholder> + use<'a, 'h> {
        let possible = haystack.len() >= self.min_placeholder_len;
        self.placeholders.values().filter(move |p| possible && contains(haystack, p.value.as_bytes()))
    }
}

pub(crate) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    find(haystack, needle).is_some()
}

pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    let first = needle[0];
    let last_start = haystack.len() - needle.len();
    let mut i = 0;
    while i <= last_start {
        match haystack[i..=last_start].iter().position(|&b| b == first) {
            None => return None,
            Some(off) => {
                let at = i + off;
                if &haystack[at..at + needle.len()] == needle {
                    return Some(at);
                }
                i = at + 1;
            }
        }
    }
    None
}

#[cfg(test)]
#[path = "matching_tests.rs"]
mod tests;
