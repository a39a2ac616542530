//! API keys and pasted tokens: checking one against the provider's key pattern and storing it.
//! The CLI's `login` and the daemon's browser form both go through here, so the two ways in
//! write the same record. Also reads the two values of a two-value credential from text.

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
    let what = format!("{} key", provider.display_name);
    check_pattern(spec.pattern.as_deref(), spec.hint.as_deref(), &what, secret)
}

/// The second value's pattern (two-value credentials), as `check`.
pub(crate) fn check_second(provider: &Provider, value: &SecretString) -> CliResult {
    let Some(second) = &provider.second_value else { return Ok(()) };
    let what = format!("{} {}", provider.display_name, second.label);
    check_pattern(second.pattern.as_deref(), second.hint.as_deref(), &what, value)
}

fn check_pattern(pattern: Option<&str>, hint: Option<&str>, what: &str, value: &SecretString) -> CliResult {
    let Some(pattern) = pattern else { return Ok(()) };
    let anchored = format!("^(?:{})$", pattern.trim_start_matches('^').trim_end_matches('$'));
    let re = regex::Regex::new(&anchored).map_err(|e| CliError::new(Kind::Generic, format!("bad key pattern: {e}")))?;
    if re.is_match(value.expose_secret()) {
        return Ok(());
    }
    let mut err = CliError::new(
        Kind::AuthenticationFailed,
        format!("that does not look like a valid {what}; nothing was stored"),
    );
    if let Some(hint) = hint {
        err = err.hint(hint.to_string());
    }
    Err(err)
}

/// The key and the second value of a two-value credential from `login --stdin` text: either
/// `NAME=value` lines, NAME being the field or one of the variable names of each value
/// (`DD_API_KEY=…`, `DD_APP_KEY=…`), in any order; or exactly two lines, the key first. Errors
/// name the values by what they are, never by their content.
pub(crate) fn parse_pair<'t>(provider: &Provider, text: &'t str) -> CliResult<(SecretString, SecretString)> {
    let Some(second) = &provider.second_value else {
        return Err(CliError::new(Kind::Generic, format!("{} takes one value", provider.name)));
    };
    let usage = || {
        let key_name = provider.env.api_key.first().map_or("api_key", String::as_str);
        let second_name = second.env.first().map_or(second.field.as_str(), String::as_str);
        format!(
            "give two lines, `{key_name}=…` and `{second_name}=…` (or the key, then the {} on the next line)",
            second.label
        )
    };
    let bad = |message: String| CliError::new(Kind::AuthenticationFailed, message).hint(usage());
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let key_names: Vec<&str> =
        std::iter::once("api_key").chain(provider.env.api_key.iter().map(String::as_str)).collect();
    let second_names: Vec<&str> =
        std::iter::once(second.field.as_str()).chain(second.env.iter().map(String::as_str)).collect();
    let named = |line: &'t str| -> Option<(&'t str, &'t str)> {
        line.split_once('=').filter(|(name, _)| key_names.contains(&name.trim()) || second_names.contains(&name.trim()))
    };
    let (key, value) = if lines.iter().any(|line| named(line).is_some()) {
        let (mut key, mut value) = (None, None);
        for line in &lines {
            let Some((name, content)) = named(line) else {
                return Err(bad("a line is not `NAME=value` with a NAME this provider reads".into()));
            };
            let slot = if key_names.contains(&name.trim()) { &mut key } else { &mut value };
            if slot.replace(content.trim()).is_some() {
                return Err(bad(format!("{} is given twice", name.trim())));
            }
        }
        match (key, value) {
            (Some(key), Some(value)) => (key, value),
            (None, _) => return Err(bad("the API key is missing".into())),
            (_, None) => return Err(bad(format!("the {} is missing", second.label))),
        }
    } else if let [key, value] = lines.as_slice() {
        (*key, *value)
    } else {
        return Err(bad(format!("expected 2 lines, found {}", lines.len())));
    };
    for (what, content) in [("API key", key), (second.label.as_str(), value)] {
        if content.is_empty() {
            return Err(bad(format!("the {what} is empty")));
        }
        if content.contains(char::is_control) {
            return Err(bad(format!("the {what} contains control characters")));
        }
    }
    Ok((SecretString::from(key.to_string()), SecretString::from(value.to_string())))
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
    store_pair(vault, keys, create, target, secret, None)
}

/// `store` for a two-value credential: the second value is sealed in the same record, under
/// the field name the definition gives it.
pub(crate) fn store_pair(
    vault: &mut Vault,
    keys: &dyn KeySource,
    create: CreateOptions,
    target: &StoreKey<'_>,
    secret: SecretString,
    second: Option<SecretString>,
) -> authsome_vault::Result<()> {
    let provider = target.provider;
    let (auth_type, source) = match target.kind {
        KeyKind::ApiKey => (authsome_vault::AuthType::ApiKey, SecretSource::ApiKey),
        KeyKind::PastedToken => (authsome_vault::AuthType::OAuth2, SecretSource::PastedToken),
    };
    let mut meta = ConnectionMeta::new(&provider.name, target.connection, auth_type, source);
    meta.host_url = provider.hosts.first().cloned();
    meta.base_url = target.base_url.clone();
    let mut secrets = match target.kind {
        KeyKind::ApiKey => Secrets { api_key: Some(secret), ..Secrets::default() },
        KeyKind::PastedToken => {
            meta.token_type = Some("Bearer".into());
            Secrets { access_token: Some(secret), ..Secrets::default() }
        }
    };
    if let (Some(spec), Some(value)) = (&provider.second_value, second) {
        secrets.extra.insert(spec.field.clone(), value);
    }
    let (store, key) = vault.writer(keys, create)?;
    if target.replace {
        store.put_connection(key, &meta, &secrets)?;
    } else {
        store.create_connection(key, &meta, &secrets)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Catalog;

    fn pair(name: &str, text: &str) -> CliResult<(String, String)> {
        let provider = Catalog::bundled_only().get(name).unwrap().provider.clone();
        parse_pair(&provider, text).map(|(k, v)| (k.expose_secret().to_string(), v.expose_secret().to_string()))
    }

    #[test]
    fn two_values_from_named_or_ordered_lines() {
        let both = ("k1".to_string(), "v2".to_string());
        assert_eq!(pair("datadog", "DD_API_KEY=k1\nDD_APP_KEY=v2\n").unwrap(), both);
        assert_eq!(pair("datadog", "DD_APPLICATION_KEY=v2\r\n  api_key=k1  \n\n").unwrap(), both);
        assert_eq!(pair("datadog", "k1\nv2").unwrap(), both);
        // A value may hold '=' (base64 padding) when it is not a NAME=value line.
        assert_eq!(pair("twilio", "tok=\nACsid").unwrap(), ("tok=".to_string(), "ACsid".to_string()));
        assert_eq!(pair("twilio", "TWILIO_ACCOUNT_SID=ACsid\nTWILIO_AUTH_TOKEN=tok").unwrap().0, "tok");
        for bad in [
            "",
            "k1",
            "k1\nv2\nv3",
            "DD_API_KEY=k1",
            "DD_API_KEY=k1\nDD_API_KEY=k2",
            "DD_API_KEY=k1\nv2",
            "DD_API_KEY=\nDD_APP_KEY=v",
        ] {
            let err = pair("datadog", bad).unwrap_err();
            assert!(err.hint.as_deref().unwrap().contains("DD_API_KEY=…"), "{bad:?}: {err:?}");
            assert!(!err.message.contains("k1") && !err.message.contains("k2"), "{bad:?}: {}", err.message);
        }
    }
}
