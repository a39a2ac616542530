//! The vault's one error type. No variant ever carries a secret value: only names, paths and
//! the underlying library error (which never sees plaintext either).

use std::path::PathBuf;

/// Everything that can go wrong in the vault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The home directory was written by the Python authsome (or its import is unfinished):
    /// nothing but `authsome migrate` touches it.
    #[error(
        "{path} was written by the Python authsome ({format}); import it with `authsome migrate` (authsome will not modify it otherwise)"
    )]
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

    #[error("connection '{connection}' of provider '{provider}' already exists in profile '{profile}'")]
    ConnectionExists { profile: String, provider: String, connection: String },

    /// The OS keychain that holds a `keyring` profile's key could not give it (or take it).
    /// Never silently replaced by another backend.
    #[error("the master key of profile '{profile}' is kept in the 'keyring' backend, which is not available: {source}")]
    Keychain {
        profile: String,
        #[source]
        source: KeychainError,
    },

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

    /// The store (or its directory) cannot be written: a read-only file system or file.
    /// Reads still work; only writes report this.
    #[error("{path} is read-only: authsome can read it but not change it")]
    StoreReadOnly { path: PathBuf },

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
    /// A write refused because the file system is mounted read-only (`EROFS`): a read-only
    /// home, which file permissions alone cannot produce.
    pub fn is_read_only_file_system(&self) -> bool {
        matches!(self, Error::StoreReadOnly { .. })
            || matches!(self, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::ReadOnlyFilesystem)
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}

/// Why the OS keychain (see [`crate::Keychain`]) could not do what was asked. The messages are
/// reasons for the user; none carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum KeychainError {
    /// No keychain to talk to: no session bus, or no keychain service on it.
    #[error("{0}")]
    Absent(String),
    /// The keychain is locked and was not unlocked (its prompt was dismissed, or nobody can
    /// answer one).
    #[error("{0}")]
    Locked(String),
    /// The keychain answered but holds no item with this id.
    #[error("the keychain holds no authsome key with id {id} (deleted outside authsome?)")]
    NotFound { id: String },
    /// Anything else: what failed, and the underlying error.
    #[error("{what}: {source}")]
    Other {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
}

impl KeychainError {
    /// `what` failed because of `source`.
    pub fn other(
        what: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        KeychainError::Other { what: what.into(), source: source.into() }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
