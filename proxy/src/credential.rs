//! The seam to the launcher: what the proxy asks for ([`ResolveRequest`]) and what it gets
//! ([`Injection`]). The proxy never knows where a credential comes from.

use std::fmt;
use std::future::Future;

use http::{HeaderName, HeaderValue};
use secrecy::SecretString;

use crate::matching::Owner;

/// What to put on the wire for one request.
pub struct Injection {
    /// Set, replacing same-named client headers. Values should be marked sensitive
    /// (`HeaderValue::set_sensitive(true)`); the proxy marks them again anyway.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Set or replace query parameters (names and values unencoded; the proxy encodes them).
    pub query: Vec<(String, String)>,
    /// The raw secret, swapped in wherever the bound placeholder appears in a header value
    /// or the query string (so `Authorization: token <placeholder>` works too).
    pub secret: SecretString,
}

impl fmt::Debug for Injection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Injection")
            .field("headers", &self.headers.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>())
            .field("query", &self.query.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>())
            .field("secret", &"[redacted]")
            .finish()
    }
}

/// What the proxy asks the launcher for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolveRequest {
    pub owner: Owner,
    /// The connection a placeholder in the request named; `None` = the run's choice or the
    /// owner's default.
    pub connection: Option<String>,
    pub host: String,
    /// Request path without the query string.
    pub path: String,
    /// Set once, after the upstream answered 401 to the injected request.
    pub force_refresh: bool,
}

/// Why no credential could be had. Never carries a secret.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ResolveError {
    #[error("{owner} has no connection{}", connection.as_deref().map(|c| format!(" named {c}")).unwrap_or_default())]
    NotConnected { owner: Owner, connection: Option<String> },
    #[error("the credential for {owner} has expired and could not be refreshed")]
    Expired { owner: Owner },
    #[error("could not resolve the credential for {owner}: {reason}")]
    Failed { owner: Owner, reason: String },
}

/// Where credentials come from. The launcher implements it over vault + auth; tests with a map.
pub trait CredentialSource: Send + Sync + 'static {
    /// Credential for `owner`/`connection` (None = the run's choice or the owner's default).
    /// `force_refresh` is set once after a 401 from upstream.
    fn resolve(&self, req: &ResolveRequest) -> impl Future<Output = Result<Injection, ResolveError>> + Send;
}
