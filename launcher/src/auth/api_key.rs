//! API keys and pasted tokens: checking one against the provider's key pattern and storing it.
//! The CLI's `login` and the daemon's browser form both go through here, so the two ways in
//! write the same record.

use authsome_vault::{ConnectionMeta, CreateOptions, KeySource, SecretSource, Secrets, Vault};
use secrecy::{ExposeSecret, SecretString};

use crate::error::{CliError, CliResult, Kind};
use crate::providers::Provider;

/// What the stored value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyKind {
    /// An API key.
    ApiKey,
    /// A token pasted for an OAuth provider (stored as a Bearer access token, no refresh).
    PastedToken,
}

/// Where a key goes.
#[derive(Debug)]
pub(crate) struct StoreKey<'a> {
    pub(crate) provider: &'a Provider,
    pub(crate) connection: &'a str,
    pub(crate) kind: KeyKind,
    pub(crate) base_url: Option<String>,
    /// Replace a usable connection of that name (`--force`); otherwise storing fails with
    /// `ConnectionExists` when one exists, checked in the same transaction as the write (two
    /// concurrent logins: one stores, the other is told).
    pub(crate) replace: bool,
}

/// The provider's key pattern, as a full match. The error never repeats the value.
pub(crate) fn check(provider: &Provider, secret: &SecretString) -> CliResult {
    let Some(spec) = &provider.api_key else { return Ok(()) };
    let Some(pattern) = &spec.pattern else { return Ok(()) };
    let anchored = format!("^(?:{})$", pattern.trim_start_matches('^').trim_end_matches('$'));
    let re = regex::Regex::new(&anchored).map_err(|e| CliError::new(Kind::Generic, format!("bad key pattern: {e}")))?;
    if re.is_match(secret.expose_secret()) {
        return Ok(());
    }
    let mut err = CliError::new(
        Kind::AuthenticationFailed,
        format!("that does not look like a valid {} key; nothing was stored", provider.display_name),
    );
    if let Some(hint) = &spec.hint {
        err = err.hint(hint.clone());
    }
    Err(err)
}

/// Write the key as the connection's record (replacing one that exists: callers decide about
/// `--force` before asking for the key).
pub(crate) fn store(
    vault: &mut Vault,
    keys: &dyn KeySource,
    create: CreateOptions,
    target: &StoreKey<'_>,
    secret: SecretString,
) -> authsome_vault::Result<()> {
    let provider = target.provider;
    let (auth_type, source) = match target.kind {
        KeyKind::ApiKey => (authsome_vault::AuthType::ApiKey, SecretSource::ApiKey),
        KeyKind::PastedToken => (authsome_vault::AuthType::OAuth2, SecretSource::PastedToken),
    };
    let mut meta = ConnectionMeta::new(&provider.name, target.connection, auth_type, source);
    meta.host_url = provider.hosts.first().cloned();
    meta.base_url = target.base_url.clone();
    let secrets = match target.kind {
        KeyKind::ApiKey => Secrets { api_key: Some(secret), ..Secrets::default() },
        KeyKind::PastedToken => {
            meta.token_type = Some("Bearer".into());
            Secrets { access_token: Some(secret), ..Secrets::default() }
        }
    };
    let (store, key) = vault.writer(keys, create)?;
    if target.replace {
        store.put_connection(key, &meta, &secrets)?;
    } else {
        store.create_connection(key, &meta, &secrets)?;
    }
    Ok(())
}
