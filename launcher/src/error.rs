//! The CLI's error: a kind (exit code and upstream's class name), a message, the cause chain
//! and a hint saying what to do. Rendered by `main` as
//! `error: …` / `  caused by: …` / `hint: …` on stderr, or with `--json` as
//! `{"error": KIND, "message": …, "hint": …}` on stdout. Never holds a secret.

use authsome_vault::{Error as VaultError, KeychainError};

/// Exit codes of the Python authsome 0.2.4, plus `run`'s own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Generic,
    Usage,
    ProviderNotFound,
    AuthenticationFailed,
    ConnectionNotFound,
    CredentialMissing,
    RefreshFailed,
    StoreUnavailable,
    InputCancelled,
    DaemonUnavailable,
    /// `run` failed before the child started.
    RunFailed,
}

impl Kind {
    pub(crate) fn exit_code(self) -> i32 {
        match self {
            Kind::Generic => 1,
            Kind::Usage => 2,
            Kind::ProviderNotFound => 3,
            Kind::AuthenticationFailed => 4,
            Kind::ConnectionNotFound | Kind::CredentialMissing => 5,
            Kind::RefreshFailed => 6,
            Kind::StoreUnavailable => 7,
            Kind::InputCancelled => 8,
            Kind::DaemonUnavailable => 9,
            Kind::RunFailed => 125,
        }
    }

    /// Upstream's exception class names, kept for scripts that match on them.
    pub(crate) fn class_name(self) -> &'static str {
        match self {
            Kind::Generic => "AuthsomeError",
            Kind::Usage => "UsageError",
            Kind::ProviderNotFound => "ProviderNotFoundError",
            Kind::AuthenticationFailed => "AuthenticationFailedError",
            Kind::ConnectionNotFound => "ConnectionNotFoundError",
            Kind::CredentialMissing => "CredentialMissingError",
            Kind::RefreshFailed => "RefreshFailedError",
            Kind::StoreUnavailable => "StoreUnavailableError",
            Kind::InputCancelled => "InputCancelledError",
            Kind::DaemonUnavailable => "DaemonUnavailableError",
            Kind::RunFailed => "RunError",
        }
    }
}

#[derive(Debug)]
pub(crate) struct CliError {
    pub(crate) kind: Kind,
    pub(crate) message: String,
    pub(crate) causes: Vec<String>,
    pub(crate) hint: Option<String>,
    /// The command already told the user (e.g. `doctor`'s report): only the exit code remains.
    pub(crate) reported: bool,
}

impl CliError {
    pub(crate) fn new(kind: Kind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), causes: Vec::new(), hint: None, reported: false }
    }
    pub(crate) fn reported(mut self) -> Self {
        self.reported = true;
        self
    }
    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
    pub(crate) fn cause(mut self, cause: impl std::fmt::Display) -> Self {
        self.causes.push(cause.to_string());
        self
    }
    pub(crate) fn exit_code(&self) -> i32 {
        self.kind.exit_code()
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

pub(crate) type CliResult<T = ()> = Result<T, CliError>;

/// What to do when the OS keychain could not give a `keyring` profile's key.
fn keychain_hint(error: &KeychainError) -> &'static str {
    match error {
        KeychainError::Locked(_) => {
            "the key is in the OS keychain, which is locked: unlock it (log in to the desktop session, or type \
             the keychain's password when it asks) and try again; authsome never switches a profile's key backend \
             by itself"
        }
        KeychainError::NotFound { .. } => {
            "the key is in the OS keychain, which no longer holds it: restore the item from a backup of the \
             keychain; authsome never creates a new key over an existing vault"
        }
        KeychainError::Absent(_) | KeychainError::Other { .. } => {
            "the key is in the OS keychain: run authsome in the session whose Secret Service holds it \
             (DBUS_SESSION_BUS_ADDRESS), with the keychain unlocked; authsome never switches a profile's key \
             backend by itself"
        }
    }
}

/// Shorthands used across commands.
pub(crate) fn usage(message: impl Into<String>) -> CliError {
    CliError::new(Kind::Usage, message)
}

impl From<VaultError> for CliError {
    fn from(e: VaultError) -> Self {
        let (kind, hint) = classify(&e);
        CliError { kind, message: e.to_string(), causes: Vec::new(), hint, reported: false }
    }
}

/// The exit-code kind and the hint for a vault error (shared by the CLI and the library).
pub(crate) fn classify(e: &VaultError) -> (Kind, Option<String>) {
    match e {
        VaultError::ForeignHome { path, .. } => (
            Kind::StoreUnavailable,
            Some(format!(
                "run `authsome migrate` to import it (its files move to a backup the Python authsome can still use; \
                 `authsome migrate --dry-run` lists what would move), or point AUTHSOME_HOME at another directory \
                 (e.g. AUTHSOME_HOME={}-rs)",
                path.display()
            )),
        ),
        VaultError::ProfileNotFound(name) => (
            Kind::Generic,
            Some(format!("create it with `authsome profile create {name}`, or see `authsome profile list`")),
        ),
        VaultError::ProfileExists(_) => (Kind::Generic, Some("see `authsome profile list`".into())),
        VaultError::InvalidName { .. } => (Kind::Usage, None),
        VaultError::ConnectionNotFound { provider, connection, .. } => (
            Kind::ConnectionNotFound,
            Some(format!(
                "log in with `authsome login {provider} --connection {connection}`, or see `authsome list` for existing connections"
            )),
        ),
        VaultError::Keychain { source, .. } => (Kind::StoreUnavailable, Some(keychain_hint(source).into())),
        VaultError::KeyBackendUnavailable { backend, .. } if backend == "keyring" => {
            (Kind::StoreUnavailable, Some(keychain_hint(&KeychainError::Absent(String::new())).into()))
        }
        VaultError::KeyBackendUnavailable { .. } => (
            Kind::StoreUnavailable,
            Some(
                "authsome never switches a profile's key backend by itself; restore access to the recorded backend"
                    .into(),
            ),
        ),
        VaultError::KeyMissing { path, .. } => (
            Kind::StoreUnavailable,
            Some(format!(
                "restore {} from a backup; authsome never creates a new key over an existing vault",
                path.display()
            )),
        ),
        VaultError::WrongPassphrase(_) => {
            (Kind::AuthenticationFailed, Some("try again; the passphrase is case-sensitive".into()))
        }
        VaultError::PassphraseUnavailable(_) => {
            (Kind::InputCancelled, Some("run in a terminal, or set AUTHSOME_PASSPHRASE for non-interactive use".into()))
        }
        VaultError::KeyMismatch(_) => (
            Kind::StoreUnavailable,
            Some("the key file and store.db come from different vaults; restore the matching key file".into()),
        ),
        VaultError::Tampered { provider, connection, .. } => (
            Kind::StoreUnavailable,
            Some(format!(
                "the record was changed outside authsome; replace it with `authsome login {provider} --connection {connection} --force`"
            )),
        ),
        VaultError::StoreCorrupt { path, .. } => (
            Kind::StoreUnavailable,
            Some(format!(
                "authsome will not write to it; move {} aside (keep it as a backup) and log in again",
                path.display()
            )),
        ),
        VaultError::StoreReadOnly { .. } => (
            Kind::StoreUnavailable,
            Some(
                "reading works (list, get, export, run); to change anything, make AUTHSOME_HOME writable or point \
                 AUTHSOME_HOME at a writable copy of it"
                    .into(),
            ),
        ),
        VaultError::ConnectionExists { provider, connection, .. } => (
            Kind::Generic,
            Some(format!(
                "another login stored it first; replace it with `authsome login {provider} --connection {connection} --force`"
            )),
        ),
        VaultError::StoreTooNew { .. } => (Kind::StoreUnavailable, Some("upgrade authsome to open this store".into())),
        VaultError::Busy => (Kind::StoreUnavailable, Some("another authsome process is writing; try again".into())),
        VaultError::Conflict { .. } => {
            (Kind::RefreshFailed, Some("another process updated it first; try again".into()))
        }
        VaultError::Io { .. } | VaultError::Json { .. } | VaultError::Sqlite(_) | VaultError::Crypto(_) => {
            (Kind::StoreUnavailable, None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_match_upstream_0_2_4() {
        assert_eq!(Kind::Usage.exit_code(), 2);
        assert_eq!(Kind::ProviderNotFound.exit_code(), 3);
        assert_eq!(Kind::AuthenticationFailed.exit_code(), 4);
        assert_eq!(Kind::ConnectionNotFound.exit_code(), 5);
        assert_eq!(Kind::CredentialMissing.exit_code(), 5);
        assert_eq!(Kind::RefreshFailed.exit_code(), 6);
        assert_eq!(Kind::StoreUnavailable.exit_code(), 7);
        assert_eq!(Kind::InputCancelled.exit_code(), 8);
        assert_eq!(Kind::DaemonUnavailable.exit_code(), 9);
        assert_eq!(Kind::RunFailed.exit_code(), 125);
    }

    #[test]
    fn every_vault_error_with_a_path_gets_a_hint() {
        let e: CliError = VaultError::StoreCorrupt { path: "/x/store.db".into(), reason: "bad".into() }.into();
        assert_eq!(e.kind, Kind::StoreUnavailable);
        assert!(e.hint.unwrap().contains("/x/store.db"));
        let e: CliError =
            VaultError::ConnectionNotFound { profile: "d".into(), provider: "openai".into(), connection: "w".into() }
                .into();
        assert_eq!(e.exit_code(), 5);
        assert!(e.hint.unwrap().contains("authsome login openai --connection w"));
    }
}
