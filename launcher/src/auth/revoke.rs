//! Token revocation (RFC 7009) before a connection is deleted: the access token, then the
//! refresh token, authenticated as the client that obtained the connection. The caller deletes the local
//! record whatever happens here and audits the outcome.

use authsome_vault::{KeySource, Vault};
use secrecy::ExposeSecret;

use super::Endpoints;
use super::token::post_form;
use crate::providers::Provider;

/// What revocation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Revocation {
    /// The provider has no revocation endpoint, or the connection holds no OAuth token.
    NotApplicable(&'static str),
    Revoked,
    /// The provider (or the network) refused; the reason, without secrets.
    Failed(String),
}

impl Revocation {
    /// The audit log's word.
    pub(crate) fn as_str(&self) -> &'static str {
        match self {
            Revocation::NotApplicable(_) => "not_applicable",
            Revocation::Revoked => "revoked",
            Revocation::Failed(_) => "failed",
        }
    }
}

/// Revoke a stored connection's tokens at the provider (sync; a runtime is built only when
/// there is something to revoke).
pub(crate) fn revoke_connection(
    vault: &Vault,
    provider: &Provider,
    connection: &str,
    key_source: &dyn KeySource,
) -> Revocation {
    let Some(meta) = vault.connection(&provider.name, connection).ok().flatten() else {
        return Revocation::NotApplicable("no such connection");
    };
    let Ok(endpoints) = Endpoints::resolve(provider, meta.base_url.as_deref()) else {
        return Revocation::NotApplicable("not an OAuth provider");
    };
    let Some(url) = endpoints.revocation else {
        return Revocation::NotApplicable("the provider has no revocation endpoint");
    };
    let secrets = match vault.secrets(key_source, &provider.name, connection) {
        Ok(secrets) => secrets,
        Err(e) => return Revocation::Failed(e.to_string()),
    };
    let tokens: Vec<(&str, String)> =
        [("access_token", &secrets.access_token), ("refresh_token", &secrets.refresh_token)]
            .into_iter()
            .filter_map(|(hint, token)| token.as_ref().map(|t| (hint, t.expose_secret().to_string())))
            .collect();
    if tokens.is_empty() {
        return Revocation::NotApplicable("the connection holds no token");
    }
    // The client that obtained the tokens: a server refuses revocation by another client.
    let client = match super::connection_client(vault, key_source, provider, &meta, &secrets) {
        Ok(client) => client,
        Err(e) => return Revocation::Failed(e.to_string()),
    };
    let Some(client) = client else { return Revocation::NotApplicable("no OAuth client is stored (a pasted token)") };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return Revocation::Failed(e.to_string()),
    };
    runtime.block_on(async {
        let http = match super::http::client() {
            Ok(http) => http,
            Err(e) => return Revocation::Failed(e.message),
        };
        let mut failures = Vec::new();
        for (hint, token) in tokens {
            let params = vec![("token".to_string(), token), ("token_type_hint".to_string(), hint.to_string())];
            if let Err(e) = post_form(&http, &url, &client, params).await {
                failures.push(format!("{hint}: {}", e.provider_message()));
            }
        }
        if failures.is_empty() { Revocation::Revoked } else { Revocation::Failed(failures.join("; ")) }
    })
}
