//! The vault's one error type. No variant ever carries a secret value: only names, paths and
//! the underlying library error (which never sees plaintext either).

use std::path::PathBuf;

/// Everything that can go wrong in the vault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The home directory was written by the Python authsome: we never touch it.
    #[error("{path} was written by the Python authsome (format {format}); authsome will not modify it")]
    ForeignHome { path: PathBuf, format: String },

    #[error("profile '{0}' does not exist")]
    ProfileNotFound(String),

    #[error("profile '{0}' already exists")]
    ProfileExists(String),

    #[error("invalid {what} '{value}': {reason}")]
    InvalidName { what: &'static str, value: String, reason: &'static str },

    #[error("connection '{connection}' not found for provider '{provider}' in profile '{profile}'")]
    ConnectionNotFound { profile: String, provider: String, connection: String },

    /// The recorded key backend cannot be used on this machine/build. Never silently replaced.
    #[error(
        "the master key of profile '{profile}' is kept in the '{backend}' backend, which is not available: {reason}"
    )]
    KeyBackendUnavailable { profile: String, backend: String, reason: String },

    #[error("the master key of profile '{profile}' is missing ({path})")]
    KeyMissing { profile: String, path: PathBuf },

    #[error("wrong passphrase for profile '{0}'")]
    WrongPassphrase(String),

    #[error(
        "no passphrase available for profile '{0}': standard input is not a terminal and AUTHSOME_PASSPHRASE is not set"
    )]
    PassphraseUnavailable(String),

    #[error("the master key does not open profile '{0}' (the key file was replaced or belongs to another vault)")]
    KeyMismatch(String),

    /// A sealed value failed authentication: tampered with, moved between rows, or a wrong key.
    #[error("a sealed value in profile '{profile}' failed to open ({provider}/{connection}): it was altered or moved")]
    Tampered { profile: String, provider: String, connection: String },

    #[error("{path} is not a usable authsome store: {reason}")]
    StoreCorrupt { path: PathBuf, reason: String },

    #[error("{path} was written by a newer authsome (store format {found}, this build reads up to {supported})")]
    StoreTooNew { path: PathBuf, found: i64, supported: i64 },

    #[error("the store is busy (another authsome process holds it)")]
    Busy,

    #[error("the record for {provider}/{connection} changed while it was being updated")]
    Conflict { provider: String, connection: String },

    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },

    #[error("{path}: invalid JSON: {source}")]
    Json { path: PathBuf, source: serde_json::Error },

    #[error("store error: {0}")]
    Sqlite(#[from] rusqlite::Error),

    #[error("cryptography failure: {0}")]
    Crypto(&'static str),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
