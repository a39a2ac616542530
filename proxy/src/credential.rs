//! The seam to the launcher: what the proxy asks for ([`ResolveRequest`]) and what it gets
//! ([`Injection`]). The proxy never knows where a credential comes from.

use std::fmt;
use std::future::Future;

use http::{HeaderName, HeaderValue};
use secrecy::SecretString;

use crate::matching::Owner;

/// What to put on the wire for one request.
///
/// The declared credential locations of the provider are the names in `headers` and `query`
/// plus `client_headers` and `client_query`: a placeholder of the run is swapped for the
/// secret only there, and a placeholder anywhere else in the request line or headers makes the
/// proxy refuse the request (403), so an endpoint that echoes a parameter cannot hand the real
/// key back. Build with [`Injection::new`] and the `with_*` methods.
pub struct Injection {
    /// Set, replacing same-named client headers. Values should be marked sensitive
    /// (`HeaderValue::set_sensitive(true)`); the proxy marks them again anyway.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Set or replace query parameters (names and values unencoded; the proxy encodes them).
    pub query: Vec<(String, String)>,
    /// The raw secret: swapped in for a bound placeholder at a declared location, and masked
    /// out of the responses to the request.
    pub secret: SecretString,
    /// Headers the injection does not set but in which the client itself may carry the
    /// placeholder (`Authorization: token <placeholder>` when the provider's header is set
    /// by the client). The placeholder is swapped for the secret there.
    pub client_headers: Vec<HeaderName>,
    /// Query parameters (unencoded names) in which the client may carry the placeholder.
    pub client_query: Vec<String>,
    /// Further secret values the injection puts on the wire (the second secret of a two-value
    /// credential, e.g. an application key beside an API key): masked out of the responses like
    /// `secret`. Identifiers that are not secret (an account id) do not belong here: masking them
    /// would mangle answers that name them.
    pub other_secrets: Vec<SecretString>,
}

impl Injection {
    /// An injection that sets nothing yet: add locations with the `with_*` methods.
    pub fn new(secret: SecretString) -> Self {
        Injection {
            headers: Vec::new(),
            query: Vec::new(),
            secret,
            client_headers: Vec::new(),
            client_query: Vec::new(),
            other_secrets: Vec::new(),
        }
    }

    /// Further secret values to mask out of the responses (see [`Injection::other_secrets`]).
    pub fn with_other_secrets(mut self, secrets: Vec<SecretString>) -> Self {
        self.other_secrets = secrets;
        self
    }

    /// Headers to set (replacing the client's of the same name).
    pub fn with_headers(mut self, headers: Vec<(HeaderName, HeaderValue)>) -> Self {
        self.headers = headers;
        self
    }

    /// Query parameters to set (unencoded names and values).
    pub fn with_query(mut self, query: Vec<(String, String)>) -> Self {
        self.query = query;
        self
    }

    /// Headers where the client may carry the placeholder itself.
    pub fn with_client_headers(mut self, names: Vec<HeaderName>) -> Self {
        self.client_headers = names;
        self
    }

    /// Query parameters where the client may carry the placeholder itself.
    pub fn with_client_query(mut self, names: Vec<String>) -> Self {
        self.client_query = names;
        self
    }

    /// Is `name` a header where a placeholder may stand?
    pub(crate) fn declares_header(&self, name: &HeaderName) -> bool {
        self.headers.iter().any(|(n, _)| n == name) || self.client_headers.contains(name)
    }

    /// Is the raw (as sent, possibly percent-encoded) query parameter `name` one where a
    /// placeholder may stand?
    pub(crate) fn declares_query(&self, raw_name: &str) -> bool {
        let same =
            |declared: &String| declared == raw_name || crate::inject::encode_query_component(declared) == raw_name;
        self.query.iter().any(|(n, _)| same(n)) || self.client_query.iter().any(same)
    }
}

impl fmt::Debug for Injection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Injection")
            .field("headers", &self.headers.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>())
            .field("query", &self.query.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>())
            .field("secret", &"[redacted]")
            .field("client_headers", &self.client_headers)
            .field("client_query", &self.client_query)
            .field("other_secrets", &self.other_secrets.len())
            .finish()
    }
}

/// What the proxy asks the launcher for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolveRequest {
    /// Whose credential (the owner of the route that matched).
    pub owner: Owner,
    /// The connection a placeholder in the request named; `None` = the run's choice or the
    /// owner's default.
    pub connection: Option<String>,
    /// The request's host (without port).
    pub host: String,
    /// Request path without the query string.
    pub path: String,
    /// Set once, after the upstream answered 401 to the injected request.
    pub force_refresh: bool,
}

/// Why no credential could be had. Never carries a secret.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ResolveError {
    /// No connection for the owner (or none with that name).
    #[error("{owner} has no connection{}", connection.as_deref().map(|c| format!(" named {c}")).unwrap_or_default())]
    NotConnected {
        /// The owner asked for.
        owner: Owner,
        /// The connection asked for, if one was named.
        connection: Option<String>,
    },
    /// The credential expired and refreshing it failed.
    #[error("the credential for {owner} has expired and could not be refreshed")]
    Expired {
        /// The owner asked for.
        owner: Owner,
    },
    /// Anything else (vault, keychain, network); `reason` never holds a secret.
    #[error("could not resolve the credential for {owner}: {reason}")]
    Failed {
        /// The owner asked for.
        owner: Owner,
        /// What went wrong, for the audit log.
        reason: String,
    },
}

/// Where credentials come from. The launcher implements it over vault + auth; tests with a map.
pub trait CredentialSource: Send + Sync + 'static {
    /// Credential for `owner`/`connection` (None = the run's choice or the owner's default).
    /// `force_refresh` is set once after a 401 from upstream.
    fn resolve(&self, req: &ResolveRequest) -> impl Future<Output = Result<Injection, ResolveError>> + Send;
}
