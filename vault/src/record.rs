//! The records kept in a profile's store: connection metadata (plain), secrets (sealed) and
//! OAuth client registrations.

use std::collections::BTreeMap;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// How a provider authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthType {
    /// A key or token the user supplies.
    ApiKey,
    /// OAuth 2.0 (tokens obtained and refreshed by authsome).
    #[serde(rename = "oauth2")]
    OAuth2,
}

impl AuthType {
    /// The word stored and shown (`api_key`, `oauth2`).
    pub fn as_str(self) -> &'static str {
        match self {
            AuthType::ApiKey => "api_key",
            AuthType::OAuth2 => "oauth2",
        }
    }
    /// The value for a stored word, if it is one.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "api_key" => Some(AuthType::ApiKey),
            "oauth2" => Some(AuthType::OAuth2),
            _ => None,
        }
    }
}

/// How the secret of a connection was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretSource {
    /// Typed, piped or entered in the browser form.
    ApiKey,
    /// An OAuth flow (code + PKCE, device, DCR).
    OAuth,
    /// A token pasted for an OAuth provider (e.g. a GitHub personal access token).
    PastedToken,
    /// Imported by `authsome scan --import`.
    Imported,
}

impl SecretSource {
    /// The word stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            SecretSource::ApiKey => "api_key",
            SecretSource::OAuth => "oauth",
            SecretSource::PastedToken => "pasted_token",
            SecretSource::Imported => "imported",
        }
    }
    /// The value for a stored word, if it is one.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "api_key" => Some(SecretSource::ApiKey),
            "oauth" => Some(SecretSource::OAuth),
            "pasted_token" => Some(SecretSource::PastedToken),
            "imported" => Some(SecretSource::Imported),
            _ => None,
        }
    }
}

/// Upstream's connection status words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Usable.
    Connected,
    /// Past its expiry and not refreshed.
    Expired,
    /// Revoked by the user or the provider.
    Revoked,
    /// Refused by the provider (refresh failed for good).
    Invalid,
}

impl Status {
    /// The word stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Connected => "connected",
            Status::Expired => "expired",
            Status::Revoked => "revoked",
            Status::Invalid => "invalid",
        }
    }
    /// The value for a stored word, if it is one.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "connected" => Some(Status::Connected),
            "expired" => Some(Status::Expired),
            "revoked" => Some(Status::Revoked),
            "invalid" => Some(Status::Invalid),
            _ => None,
        }
    }
}

/// The secret values of a connection. Sealed as one JSON document; `Debug` is redacted by
/// `SecretString`.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Secrets {
    /// An API key (or a pasted token).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_secret")]
    pub api_key: Option<SecretString>,
    /// An OAuth access token.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_secret")]
    pub access_token: Option<SecretString>,
    /// An OAuth refresh token.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_secret")]
    pub refresh_token: Option<SecretString>,
    /// The secret of the OAuth client that obtained this connection (refresh and revocation
    /// authenticate with it). Not a credential to inject, so not among `present_fields`.
    /// Absent in records written before clients were kept per connection.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_secret")]
    pub client_secret: Option<SecretString>,
    /// Further values of a credential that takes more than one (Datadog's application key,
    /// Twilio's account SID), by the field name the provider definition gives them. Absent in
    /// single-value records, which read back unchanged.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", with = "secret_map")]
    pub extra: BTreeMap<String, SecretString>,
}

impl Secrets {
    /// Names of the credential fields that hold a value (stored in plain so metadata reads
    /// need no key). The client secret is not one.
    pub fn present_fields(&self) -> Vec<&'static str> {
        let mut fields = Vec::new();
        if self.api_key.is_some() {
            fields.push("api_key");
        }
        if self.access_token.is_some() {
            fields.push("access_token");
        }
        if self.refresh_token.is_some() {
            fields.push("refresh_token");
        }
        fields
    }

    /// `present_fields` and the names of the further values (what a record lists in plain).
    pub fn field_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.present_fields().into_iter().map(str::to_string).collect();
        names.extend(self.extra.keys().cloned());
        names
    }
}

mod secret_map {
    use std::collections::BTreeMap;

    use secrecy::{ExposeSecret, SecretString};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(map: &BTreeMap<String, SecretString>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(map.iter().map(|(name, value)| (name, value.expose_secret())))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, SecretString>, D::Error> {
        let plain = BTreeMap::<String, String>::deserialize(d)?;
        Ok(plain.into_iter().map(|(name, value)| (name, SecretString::from(value))).collect())
    }
}

mod opt_secret {
    use secrecy::{ExposeSecret, SecretString};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(secret) => s.serialize_some(secret.expose_secret()),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SecretString>, D::Error> {
        Ok(Option::<String>::deserialize(d)?.map(SecretString::from))
    }
}

/// A connection's plain metadata: everything but the secrets.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionMeta {
    /// The provider.
    pub provider: String,
    /// The connection's name (`default` unless named).
    pub name: String,
    /// How the provider authenticates.
    pub auth_type: AuthType,
    /// How the secret was obtained.
    pub source: SecretSource,
    /// Upstream's status word.
    pub status: Status,
    /// The OAuth scopes granted, if known.
    pub scopes: Option<Vec<String>>,
    /// The API base URL, for providers with a per-account one.
    pub base_url: Option<String>,
    /// The host the credential is for, when it is not the provider's default.
    pub host_url: Option<String>,
    /// The OAuth token type (`Bearer`, …), if given.
    pub token_type: Option<String>,
    /// Unix seconds.
    pub expires_at: Option<i64>,
    /// Unix microseconds.
    pub obtained_at: i64,
    /// Unix microseconds.
    pub updated_at: i64,
    /// The account's id at the provider, if known.
    pub account_id: Option<String>,
    /// The account's human-readable name (login, e-mail), if known.
    pub account_label: Option<String>,
    /// Other non-secret data about the connection.
    pub metadata: BTreeMap<String, serde_json::Value>,
    /// Row version: bumped on every write; the refresh lock compares it.
    pub version: i64,
    /// When it was last refreshed (Unix seconds).
    pub last_refresh_at: Option<i64>,
    /// Why the last refresh failed, if it did (never a secret).
    pub last_refresh_error: Option<String>,
    /// Which secret fields hold a value.
    pub secret_fields: Vec<String>,
    /// Whether this is the provider's default connection (derived, not stored in the row).
    pub is_default: bool,
}

impl ConnectionMeta {
    /// A fresh record for `provider`/`name`, obtained now.
    pub fn new(provider: &str, name: &str, auth_type: AuthType, source: SecretSource) -> Self {
        let now = crate::time::now_micros();
        Self {
            provider: provider.to_string(),
            name: name.to_string(),
            auth_type,
            source,
            status: Status::Connected,
            scopes: None,
            base_url: None,
            host_url: None,
            token_type: None,
            expires_at: None,
            obtained_at: now,
            updated_at: now,
            account_id: None,
            account_label: None,
            metadata: BTreeMap::new(),
            version: 0,
            last_refresh_at: None,
            last_refresh_error: None,
            secret_fields: Vec::new(),
            is_default: false,
        }
    }

    /// Connected and not past its expiry.
    pub fn is_usable(&self, now_seconds: i64) -> bool {
        self.status == Status::Connected && self.expires_at.is_none_or(|at| at > now_seconds)
    }

    /// Whether the sealed secrets hold a value for `field`.
    pub fn has_secret(&self, field: &str) -> bool {
        self.secret_fields.iter().any(|f| f == field)
    }
}

/// An OAuth client registration for a provider (entered by the user or obtained by DCR).
#[derive(Debug, Clone, Default)]
pub struct ClientRecord {
    /// The client id.
    pub client_id: Option<String>,
    /// The client secret, for confidential clients.
    pub client_secret: Option<SecretString>,
    /// The base URL the client was registered against, if per-account.
    pub base_url: Option<String>,
    /// The scopes to ask for, if not the provider's.
    pub scopes: Option<Vec<String>>,
    /// RFC 7591 registration response metadata (never secret fields).
    pub registration: Option<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn client_secret_is_sealed_with_the_connection_and_old_documents_still_open() {
        let old: Secrets = serde_json::from_str(r#"{"access_token":"at","refresh_token":"rt"}"#).unwrap();
        assert!(old.client_secret.is_none());
        let with = Secrets { access_token: Some("at".into()), client_secret: Some("cs".into()), ..Secrets::default() };
        assert_eq!(with.present_fields(), vec!["access_token"]);
        let back: Secrets = serde_json::from_str(&serde_json::to_string(&with).unwrap()).unwrap();
        assert_eq!(back.client_secret.unwrap().expose_secret(), "cs");
        assert!(!format!("{with:?}").contains("cs\""));
    }

    /// Two-value credentials keep their second value beside the first; records written before
    /// (and by the Python authsome) have none and read back as they were.
    #[test]
    fn further_values_round_trip_and_single_value_records_still_open() {
        let old: Secrets = serde_json::from_str(r#"{"api_key":"k"}"#).unwrap();
        assert!(old.extra.is_empty());
        assert_eq!(serde_json::to_string(&old).unwrap(), r#"{"api_key":"k"}"#);
        let mut two = Secrets { api_key: Some("dd-api".into()), ..Secrets::default() };
        two.extra.insert("application_key".into(), SecretString::from("dd-app"));
        assert_eq!(two.field_names(), vec!["api_key", "application_key"]);
        let back: Secrets = serde_json::from_str(&serde_json::to_string(&two).unwrap()).unwrap();
        assert_eq!(back.extra["application_key"].expose_secret(), "dd-app");
        assert!(!format!("{two:?}").contains("dd-app"), "Debug stays redacted");
    }
}
