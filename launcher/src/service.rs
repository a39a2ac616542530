//! The library API: credentials for programs that would rather not shell out.
//!
//! ```
//! # let dir = tempfile::tempdir()?;
//! # let home = authsome_vault::Home::at(dir.path());
//! # {   // what `printf '%s' "$KEY" | authsome login openai --stdin` does:
//! #     let mut vault = authsome_vault::Vault::open(&home, "default")?;
//! #     let (store, key) = vault.writer(&authsome_vault::NoPassphrase, Default::default())?;
//! #     let meta = authsome_vault::ConnectionMeta::new("openai", "default",
//! #         authsome_vault::AuthType::ApiKey, authsome_vault::SecretSource::ApiKey);
//! #     let secrets = authsome_vault::Secrets { api_key: Some("sk-example0000000000000000".into()), ..Default::default() };
//! #     store.put_connection(key, &meta, &secrets)?;
//! # }
//! use secrecy::ExposeSecret;
//!
//! // `AuthService::open(None)` uses AUTHSOME_HOME (or ~/.authsome) and the default profile.
//! let service = authsome::AuthService::open_in(&home, None)?;
//! let key = service.access_token("openai", None)?;
//! assert!(key.expose_secret().starts_with("sk-"));
//! for (name, value) in service.headers("openai", None)? {
//!     assert_eq!(name, "Authorization");
//!     assert_eq!(value.expose_secret(), "Bearer sk-example0000000000000000");
//! }
//! for connection in service.list_connections()? {
//!     println!("{}/{} ({})", connection.provider, connection.name, connection.status.as_str());
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use authsome_vault::{ConnectionMeta, Home, Vault};
use secrecy::SecretString;

use crate::cli::context::NoPrompt;
use crate::error::{CliError, Kind};
use crate::providers::Catalog;

/// The library's error: the same kinds, messages and hints as the CLI's.
pub type Error = CliError;

/// Credentials of one profile.
pub struct AuthService {
    vault: Vault,
    catalog: Catalog,
}

impl std::fmt::Debug for AuthService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthService").field("profile", &self.vault.profile()).finish()
    }
}

impl AuthService {
    /// Open `profile` (default: the configured default profile) in `AUTHSOME_HOME`.
    pub fn open(profile: Option<&str>) -> Result<Self, Error> {
        Self::open_in(&Home::from_env()?, profile)
    }

    /// Open a profile in a given home directory.
    pub fn open_in(home: &Home, profile: Option<&str>) -> Result<Self, Error> {
        let profile = match profile {
            Some(p) => p.to_string(),
            None => authsome_vault::profiles::default_profile(home)?,
        };
        Ok(Self { vault: Vault::open(home, &profile)?, catalog: Catalog::load(home) })
    }

    /// The connection's primary secret: the API key, or the OAuth access token. An access
    /// token within `min(300 s, half its lifetime)` of expiry is refreshed first (see
    /// `auth::refresh`); a token that is still fresh costs no network and no runtime.
    pub fn access_token(&self, provider: &str, connection: Option<&str>) -> Result<SecretString, Error> {
        let entry = self.catalog.require(provider)?;
        let name = self.vault.resolve_connection_name(provider, connection)?;
        // Refreshes an OAuth token near expiry; a plain lookup builds no runtime.
        let secrets =
            crate::auth::refresh::fresh_secrets_blocking(&self.vault, &entry.provider, &name, false, &NoPrompt)?
                .secrets;
        let secret = match entry.provider.primary_field() {
            "api_key" => secrets.api_key.or(secrets.access_token),
            _ => secrets.access_token.or(secrets.api_key),
        };
        secret.ok_or_else(|| {
            CliError::new(Kind::CredentialMissing, format!("{provider}/{name} holds no credential"))
                .hint(format!("log in again with `authsome login {provider} --connection {name} --force`"))
        })
    }

    /// The headers the provider expects, rendered with the secret (`Authorization: Bearer …`,
    /// `x-api-key: …`, Basic). Providers that take the key as a query parameter return none.
    pub fn headers(&self, provider: &str, connection: Option<&str>) -> Result<Vec<(String, SecretString)>, Error> {
        let secret = self.access_token(provider, connection)?;
        let entry = self.catalog.require(provider)?;
        Ok(crate::inject::render(&entry.provider, &secret).headers)
    }

    /// Every connection's metadata (no secrets).
    pub fn list_connections(&self) -> Result<Vec<ConnectionMeta>, Error> {
        Ok(self.vault.list_connections()?)
    }
}
