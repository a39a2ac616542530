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
    ForeignHome {
        /// The home.
        path: PathBuf,
        /// What marks it (the version file, a table).
        format: String,
    },

    /// No profile of that name.
    #[error("profile '{0}' does not exist")]
    ProfileNotFound(String),

    /// A profile of that name already exists.
    #[error("profile '{0}' already exists")]
    ProfileExists(String),

    /// A profile, provider or connection name that is not allowed.
    #[error("invalid {what} '{value}': {reason}")]
    InvalidName {
        /// What was named (`profile`, `connection`, …).
        what: &'static str,
        /// The name given.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// No connection of that name.
    #[error("connection '{connection}' not found for provider '{provider}' in profile '{profile}'")]
    ConnectionNotFound {
        /// The profile.
        profile: String,
        /// The provider.
        provider: String,
        /// The connection asked for.
        connection: String,
    },

    /// The recorded key backend cannot be used on this machine/build. Never silently replaced.
    #[error(
        "the master key of profile '{profile}' is kept in the '{backend}' backend, which is not available: {reason}"
    )]
    KeyBackendUnavailable {
        /// The profile.
        profile: String,
        /// The recorded backend.
        backend: String,
        /// Why it cannot be used.
        reason: String,
    },

    /// A connection of that name exists and replacing it was not asked for.
    #[error("connection '{connection}' of provider '{provider}' already exists in profile '{profile}'")]
    ConnectionExists {
        /// The profile.
        profile: String,
        /// The provider.
        provider: String,
        /// The connection.
        connection: String,
    },

    /// The OS keychain that holds a `keyring` profile's key could not give it (or take it).
    /// Never silently replaced by another backend.
    #[error("the master key of profile '{profile}' is kept in the 'keyring' backend, which is not available: {source}")]
    Keychain {
        /// The profile.
        profile: String,
        /// What the keychain said.
        #[source]
        source: KeychainError,
    },

    /// The key file (or keychain item) of an existing profile is gone; a new key is never made over it.
    #[error("the master key of profile '{profile}' is missing ({path})")]
    KeyMissing {
        /// The profile.
        profile: String,
        /// Where the key was expected.
        path: PathBuf,
    },

    /// The passphrase does not unwrap the key.
    #[error("wrong passphrase for profile '{0}'")]
    WrongPassphrase(String),

    #[error(
        "no passphrase available for profile '{0}': standard input is not a terminal and AUTHSOME_PASSPHRASE is not set"
    )]
    /// A passphrase profile, and no way to ask for the passphrase.
    PassphraseUnavailable(String),

    /// The key opens, but not this profile's store.
    #[error("the master key does not open profile '{0}' (the key file was replaced or belongs to another vault)")]
    KeyMismatch(String),

    /// A sealed value failed authentication: tampered with, moved between rows, or a wrong key.
    #[error("a sealed value in profile '{profile}' failed to open ({provider}/{connection}): it was altered or moved")]
    Tampered {
        /// The profile.
        profile: String,
        /// The provider.
        provider: String,
        /// The connection.
        connection: String,
    },

    /// The store is not an SQLite database, or not ours.
    #[error("{path} is not a usable authsome store: {reason}")]
    StoreCorrupt {
        /// The store.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// The store (or its directory) cannot be written: a read-only file system or file.
    /// Reads still work; only writes report this.
    #[error("{path} is read-only: authsome can read it but not change it")]
    StoreReadOnly {
        /// The store or its directory.
        path: PathBuf,
    },

    /// The store was written by a newer authsome.
    #[error("{path} was written by a newer authsome (store format {found}, this build reads up to {supported})")]
    StoreTooNew {
        /// The store.
        path: PathBuf,
        /// Its format.
        found: i64,
        /// The newest format this build reads.
        supported: i64,
    },

    /// The store stayed locked by another process.
    #[error("the store is busy (another authsome process holds it)")]
    Busy,

    /// Another writer changed the record between read and write (row version).
    #[error("the record for {provider}/{connection} changed while it was being updated")]
    Conflict {
        /// The provider.
        provider: String,
        /// The connection.
        connection: String,
    },

    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },

    /// A JSON file does not parse.
    #[error("{path}: invalid JSON: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        source: serde_json::Error,
    },

    /// SQLite failed.
    #[error("store error: {0}")]
    Sqlite(#[from] rusqlite::Error),

    /// A cryptographic primitive failed (key length, random source, key derivation); a value
    /// that does not open is [`Error::Tampered`].
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
    NotFound {
        /// The item's key id.
        id: String,
    },
    /// Anything else: what failed, and the underlying error.
    #[error("{what}: {source}")]
    Other {
        /// What was being done.
        what: String,
        /// The underlying error.
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

/// The vault's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
