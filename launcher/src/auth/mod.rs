//! OAuth 2 for authsome: the protocol (authorization code + PKCE, device authorization,
//! dynamic client registration), keeping tokens fresh, and revocation.
//!
//! Owns talking to providers' OAuth endpoints and turning their answers into vault records.
//! Does not own the browser side of a login (the daemon serves the forms and the callback),
//! nor the CLI's waiting and printing (`cli::login`).
//!
//! What other modules call:
//! - [`refresh::fresh_secrets`] / [`refresh::fresh_secrets_blocking`]: a connection's
//!   secrets, refreshed first when the access token is near expiry (serialised across
//!   processes). The `run` proxy, `export` and the library go through it.
//! - [`revoke::revoke_connection`]: RFC 7009 revocation before a local delete.
//!
//! Clients: the provider's stored client (`provider_clients`) is only where the next login
//! starts. Each connection records the client that obtained it (id, origin and method in its
//! plain metadata under [`CLIENT_KEY`], the secret sealed with its tokens), and refresh and
//! revocation use that one: a later login with another client (a registration, a new
//! `--client-id`) must not change which client speaks for an older token.

pub(crate) mod api_key;
pub(crate) mod code;
pub(crate) mod dcr;
pub(crate) mod device;
pub(crate) mod http;
pub(crate) mod pkce;
pub(crate) mod refresh;
pub(crate) mod revoke;
pub(crate) mod token;

use authsome_vault::{AuthType, ClientRecord, ConnectionMeta, SecretSource, Secrets, Status};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::error::{CliError, Kind};
use crate::providers::Provider;
use crate::providers::schema::{OAuthSpec, TokenAuthMethod};
use token::TokenResponse;

/// A provider's OAuth endpoints with `{base_url}` filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoints {
    pub(crate) authorization: Option<String>,
    pub(crate) token: String,
    /// Where refresh grants go (`refresh_url`, else the token endpoint).
    pub(crate) refresh: String,
    pub(crate) revocation: Option<String>,
    pub(crate) device: Option<String>,
    pub(crate) registration: Option<String>,
}

impl Endpoints {
    pub(crate) fn resolve(provider: &Provider, base_url: Option<&str>) -> Result<Self, CliError> {
        let spec = spec(provider)?;
        let url = |u: &String| provider.oauth_url(u, base_url);
        Ok(Self {
            authorization: spec.authorization_url.as_ref().map(url),
            token: url(&spec.token_url),
            refresh: url(spec.refresh_url.as_ref().unwrap_or(&spec.token_url)),
            revocation: spec.revocation_url.as_ref().map(url),
            device: spec.device_authorization_url.as_ref().map(url),
            registration: spec.registration_endpoint.as_ref().map(url),
        })
    }
}

/// The provider's OAuth section, or an error for API-key providers.
pub(crate) fn spec(provider: &Provider) -> Result<&OAuthSpec, CliError> {
    provider.oauth.as_ref().ok_or_else(|| {
        CliError::new(Kind::Usage, format!("{} uses API keys, not OAuth", provider.display_name))
            .hint(format!("store its key with `authsome login {}`", provider.name))
    })
}

/// The metadata key under which a connection records its OAuth client (never the secret).
pub(crate) const CLIENT_KEY: &str = "oauth_client";

/// Where an OAuth client came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ClientOrigin {
    /// Entered by the user (`--client-id`, the browser form).
    Static,
    /// Obtained by dynamic client registration.
    Dcr,
}

impl ClientOrigin {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ClientOrigin::Static => "static",
            ClientOrigin::Dcr => "dcr",
        }
    }
    /// A stored record's origin: a registration answer means DCR.
    pub(crate) fn of_record(record: &ClientRecord) -> Self {
        if record.registration.is_some() { ClientOrigin::Dcr } else { ClientOrigin::Static }
    }
}

/// An OAuth client: id, optional secret, and how it authenticates at the token endpoint.
#[derive(Clone)]
pub(crate) struct ClientCredentials {
    pub(crate) id: String,
    pub(crate) secret: Option<SecretString>,
    pub(crate) method: TokenAuthMethod,
    pub(crate) origin: ClientOrigin,
}

/// What a connection's metadata says about its client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RecordedClient {
    pub(crate) client_id: String,
    pub(crate) origin: ClientOrigin,
    pub(crate) token_endpoint_auth_method: TokenAuthMethod,
}

impl RecordedClient {
    pub(crate) fn of(meta: &ConnectionMeta) -> Option<Self> {
        meta.metadata.get(CLIENT_KEY).and_then(|v| serde_json::from_value(v.clone()).ok())
    }
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("id", &self.id)
            .field("secret", &self.secret.as_ref().map(|_| "[redacted]"))
            .field("method", &self.method)
            .field("origin", &self.origin)
            .finish()
    }
}

impl ClientCredentials {
    /// The credentials of a stored client record. A registration (DCR) records the method the
    /// server agreed to; otherwise the provider's method applies.
    pub(crate) fn from_record(provider: &Provider, record: &ClientRecord) -> Option<Self> {
        let id = record.client_id.clone()?;
        let registered = record
            .registration
            .as_ref()
            .and_then(|r| r.get("token_endpoint_auth_method"))
            .and_then(|m| serde_json::from_value::<TokenAuthMethod>(m.clone()).ok());
        let method =
            registered.unwrap_or_else(|| provider.oauth.as_ref().map(|o| o.token_auth_method).unwrap_or_default());
        Some(Self { id, secret: record.client_secret.clone(), method, origin: ClientOrigin::of_record(record) })
    }

    /// The client recorded in a connection (its secret from the connection's sealed secrets).
    pub(crate) fn of_connection(meta: &ConnectionMeta, secrets: &Secrets) -> Option<Self> {
        let recorded = RecordedClient::of(meta)?;
        Some(Self {
            id: recorded.client_id,
            secret: secrets.client_secret.clone(),
            method: recorded.token_endpoint_auth_method,
            origin: recorded.origin,
        })
    }

    /// Record this client in a connection about to be stored.
    pub(crate) fn record_in(&self, meta: &mut ConnectionMeta, secrets: &mut Secrets) {
        let recorded =
            RecordedClient { client_id: self.id.clone(), origin: self.origin, token_endpoint_auth_method: self.method };
        if let Ok(value) = serde_json::to_value(recorded) {
            meta.metadata.insert(CLIENT_KEY.to_string(), value);
        }
        secrets.client_secret = self.secret.clone();
    }
}

/// The client that speaks for a stored connection: the one recorded in it, else (a record
/// written before clients were kept per connection) the provider's stored client.
pub(crate) fn connection_client(
    vault: &authsome_vault::Vault,
    key_source: &dyn authsome_vault::KeySource,
    provider: &Provider,
    meta: &ConnectionMeta,
    secrets: &Secrets,
) -> Result<Option<ClientCredentials>, authsome_vault::Error> {
    if let Some(client) = ClientCredentials::of_connection(meta, secrets) {
        return Ok(Some(client));
    }
    Ok(vault
        .client_with_secret(key_source, &provider.name)?
        .and_then(|record| ClientCredentials::from_record(provider, &record)))
}

/// Join scopes with the provider's separator.
pub(crate) fn join_scopes(provider: &Provider, scopes: &[String]) -> String {
    let separator = provider.oauth.as_ref().map(|o| o.scope_separator.as_str()).unwrap_or(" ");
    scopes.join(separator)
}

/// The scopes of a login: the ones asked for (`--scopes a,b`), else the provider's.
pub(crate) fn requested_scopes(provider: &Provider, asked: Option<&str>) -> Vec<String> {
    match asked {
        Some(text) => token::split_scopes(text),
        None => provider.oauth.as_ref().map(|o| o.scopes.clone()).unwrap_or_default(),
    }
}

/// What a login stores: the token response as a connection record, with the client that
/// obtained it. Scopes are the granted ones when the server said (upstream bug 17), else the
/// requested ones.
pub(crate) fn record_from_token(
    provider: &Provider,
    connection: &str,
    base_url: Option<&str>,
    requested: &[String],
    token: TokenResponse,
    client: &ClientCredentials,
    now_seconds: i64,
) -> (ConnectionMeta, Secrets) {
    let mut meta = ConnectionMeta::new(&provider.name, connection, AuthType::OAuth2, SecretSource::OAuth);
    meta.obtained_at = now_seconds * 1_000_000;
    meta.host_url = provider.hosts.first().cloned();
    meta.base_url = base_url.map(str::to_string);
    meta.token_type = Some(token.token_type.clone().unwrap_or_else(|| "Bearer".into()));
    meta.expires_at = token.expires_in.map(|secs| now_seconds + secs);
    let scopes = match &token.scope {
        Some(granted) => token::split_scopes(granted),
        None => requested.to_vec(),
    };
    meta.scopes = (!scopes.is_empty()).then_some(scopes);
    meta.status = Status::Connected;
    let mut secrets =
        Secrets { access_token: Some(token.access_token), refresh_token: token.refresh_token, ..Secrets::default() };
    client.record_in(&mut meta, &mut secrets);
    (meta, secrets)
}

/// Check a `--base-url` (GitHub Enterprise): an https URL of a named host.
pub(crate) fn check_base_url(url: &str) -> Result<String, CliError> {
    crate::providers::validate::check_endpoint(url).map_err(|why| {
        CliError::new(Kind::Usage, format!("--base-url '{url}': {why}"))
            .hint("e.g. --base-url https://github.example.com")
    })?;
    Ok(url.trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Catalog;
    use secrecy::ExposeSecret;

    #[test]
    fn endpoints_fill_base_url() {
        let github = Catalog::bundled_only().get("github").unwrap().provider.clone();
        let default = Endpoints::resolve(&github, None).unwrap();
        assert_eq!(default.token, "https://github.com/login/oauth/access_token");
        assert_eq!(default.refresh, default.token);
        let ghe = Endpoints::resolve(&github, Some("https://ghe.example.com/")).unwrap();
        assert_eq!(ghe.device.as_deref(), Some("https://ghe.example.com/login/device/code"));
        let openai = Catalog::bundled_only().get("openai").unwrap().provider.clone();
        assert_eq!(Endpoints::resolve(&openai, None).unwrap_err().kind, Kind::Usage);
    }

    #[test]
    fn granted_scope_wins_and_expiry_is_absolute() {
        let google = Catalog::bundled_only().get("google").unwrap().provider.clone();
        let token = TokenResponse {
            access_token: "at".into(),
            token_type: None,
            expires_in: Some(3600),
            refresh_token: Some("rt".into()),
            scope: Some("openid email".into()),
        };
        let client = ClientCredentials {
            id: "cid".into(),
            secret: Some("client-secret-value".into()),
            method: TokenAuthMethod::ClientSecretPost,
            origin: ClientOrigin::Dcr,
        };
        let requested = ["openid".into(), "x".into()];
        let (meta, secrets) = record_from_token(&google, "work", None, &requested, token, &client, 1_000);
        // The client is recorded: id, origin and method in plain, the secret sealed.
        let back = ClientCredentials::of_connection(&meta, &secrets).unwrap();
        assert_eq!(
            (back.id.as_str(), back.method, back.origin),
            ("cid", TokenAuthMethod::ClientSecretPost, ClientOrigin::Dcr)
        );
        assert_eq!(back.secret.unwrap().expose_secret(), "client-secret-value");
        assert!(!serde_json::to_string(&meta.metadata).unwrap().contains("client-secret-value"));
        assert_eq!(meta.scopes, Some(vec!["openid".to_string(), "email".to_string()]));
        assert_eq!(meta.expires_at, Some(4_600));
        assert_eq!(meta.obtained_at, 1_000_000_000);
        assert_eq!(meta.token_type.as_deref(), Some("Bearer"));
        assert_eq!(meta.source, SecretSource::OAuth);
        assert_eq!(secrets.refresh_token.unwrap().expose_secret(), "rt");
    }

    #[test]
    fn scopes_requested() {
        let github = Catalog::bundled_only().get("github").unwrap().provider.clone();
        assert_eq!(requested_scopes(&github, None), vec!["repo", "read:user"]);
        assert_eq!(requested_scopes(&github, Some("gist, repo")), vec!["gist", "repo"]);
        assert_eq!(join_scopes(&github, &["a".into(), "b".into()]), "a b");
        assert!(check_base_url("http://ghe.example.com").is_err());
        assert_eq!(check_base_url("https://ghe.example.com/").unwrap(), "https://ghe.example.com");
    }
}
