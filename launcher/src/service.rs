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

use crate::context::NoPrompt;
use crate::error::CliError;
use crate::providers::{Catalog, Entry};

/// Why the library could not hand out a credential. Never holds a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No bundled or custom provider has this name.
    #[error("unknown provider {0:?}")]
    UnknownProvider(String),
    /// The vault could not be opened or read: no such profile or connection, a locked keychain,
    /// a wrong passphrase, a damaged store, a home written by the Python authsome…
    #[error(transparent)]
    Vault(#[from] authsome_vault::Error),
    /// The connection exists but holds no credential.
    #[error("{provider}/{connection} holds no credential")]
    NoCredential { provider: String, connection: String },
    /// The token was due for a refresh (or has expired) and could not be made fresh.
    #[error("the credential of {provider}/{connection} could not be refreshed")]
    Refresh {
        provider: String,
        connection: String,
        #[source]
        source: Cause,
    },
}

impl Error {
    /// What to do about it, as the CLI would say it (`None` when there is nothing to add).
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::UnknownProvider(_) => Some("see `authsome list` for the providers authsome knows".into()),
            Error::Vault(e) => crate::error::classify(e).1,
            Error::NoCredential { provider, connection } | Error::Refresh { provider, connection, .. } => {
                Some(format!("log in again with `authsome login {provider} --connection {connection} --force`"))
            }
        }
    }

    /// The exit code the CLI uses for this error (the Python authsome's codes).
    pub fn exit_code(&self) -> i32 {
        use crate::error::Kind;
        match self {
            Error::UnknownProvider(_) => Kind::ProviderNotFound.exit_code(),
            Error::Vault(e) => crate::error::classify(e).0.exit_code(),
            Error::NoCredential { .. } => Kind::CredentialMissing.exit_code(),
            Error::Refresh { source, .. } => source.exit_code,
        }
    }
}

/// One link of a cause chain: what failed during a refresh, then what caused that.
#[derive(Debug)]
pub struct Cause {
    message: String,
    exit_code: i32,
    next: Option<Box<Cause>>,
}

impl Cause {
    fn from_cli(e: CliError) -> Self {
        let exit_code = e.exit_code();
        let next =
            e.causes.into_iter().rev().fold(None, |next, message| Some(Box::new(Cause { message, exit_code, next })));
        Cause { message: e.message, exit_code, next }
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.next.as_deref().map(|c| c as _)
    }
}

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
        let home = Home::from_env()?;
        let home = crate::context::absolute_home(home)
            .map_err(|e| Error::Vault(authsome_vault::Error::Io { path: crate::env::HOME.into(), source: e }))?;
        Self::open_in(&home, profile)
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
        let entry = self.entry(provider)?;
        let name = self.vault.resolve_connection_name(provider, connection)?;
        self.vault.require_connection(provider, &name)?;
        // Refreshes an OAuth token near expiry; a plain lookup builds no runtime.
        let secrets =
            crate::auth::refresh::fresh_secrets_blocking(&self.vault, &entry.provider, &name, false, &NoPrompt)
                .map_err(|e| Error::Refresh {
                    provider: provider.to_string(),
                    connection: name.clone(),
                    source: Cause::from_cli(e),
                })?
                .secrets;
        let secret = match entry.provider.primary_field() {
            "api_key" => secrets.api_key.or(secrets.access_token),
            _ => secrets.access_token.or(secrets.api_key),
        };
        secret.ok_or_else(|| Error::NoCredential { provider: provider.to_string(), connection: name })
    }

    /// The headers the provider expects, rendered with the secret (`Authorization: Bearer …`,
    /// `x-api-key: …`, Basic). Providers that take the key as a query parameter return none.
    pub fn headers(&self, provider: &str, connection: Option<&str>) -> Result<Vec<(String, SecretString)>, Error> {
        let secret = self.access_token(provider, connection)?;
        let entry = self.entry(provider)?;
        // A two-value credential (Datadog, Twilio, Algolia) renders with its second value too.
        let second = match &entry.provider.second_value {
            Some(second) => {
                let name = self.vault.resolve_connection_name(provider, connection)?;
                self.vault.secrets(&NoPrompt, provider, &name)?.extra.remove(&second.field)
            }
            None => None,
        };
        Ok(crate::inject::render(&entry.provider, &secret, second.as_ref()).headers)
    }

    fn entry(&self, provider: &str) -> Result<&Entry, Error> {
        self.catalog.get(provider).ok_or_else(|| Error::UnknownProvider(provider.to_string()))
    }

    /// Every connection's metadata (no secrets).
    pub fn list_connections(&self) -> Result<Vec<ConnectionMeta>, Error> {
        Ok(self.vault.list_connections()?)
    }
}
