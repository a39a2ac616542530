//! Settings resolved once from flags and environment, and the handles commands share.

use std::cell::OnceCell;
use std::io::IsTerminal;

use authsome_vault::{
    AuditEvent, AuditLog, CreateOptions, DEFAULT_KEY_CACHE_SECONDS, Home, KeyBackend, KeySource, Keychain,
    PassphraseRequest, Vault,
};
use secrecy::SecretString;

use super::args::GlobalArgs;
use crate::env;
use crate::error::{CliError, CliResult, Kind};
use crate::output::Output;
use crate::providers::Catalog;

pub struct Context {
    pub home: Home,
    pub profile: String,
    pub out: Output,
    pub audit_log: AuditLog,
    pub key_source: Prompter,
    /// Backend for a default profile created by its first write.
    pub create: CreateOptions,
    catalog: OnceCell<Catalog>,
}

impl Context {
    pub fn new(global: &GlobalArgs) -> CliResult<Self> {
        let color = !global.no_color && env::var(env::NO_COLOR).is_none();
        let out = Output::new(global.json, global.quiet, color);
        let home = Home::from_env()?;
        let profile = match global.profile.clone().or_else(|| env::var(env::PROFILE)) {
            Some(profile) => profile,
            None => authsome_vault::profiles::default_profile(&home)?,
        };
        authsome_vault::validate_name("profile", &profile)?;
        let backend = match env::var(env::KEY_BACKEND) {
            Some(value) => Some(value.parse::<KeyBackend>().map_err(|e| {
                CliError::new(Kind::Usage, format!("{}: {e}", env::KEY_BACKEND)).hint("use file, passphrase or keyring")
            })?),
            None => None,
        };
        let create = CreateOptions {
            backend,
            key_cache_seconds: if backend == Some(KeyBackend::Passphrase) { DEFAULT_KEY_CACHE_SECONDS } else { 0 },
        };
        let audit_log = AuditLog::new(home.audit_path());
        Ok(Self { home, profile, out, audit_log, key_source: Prompter, create, catalog: OnceCell::new() })
    }

    pub fn catalog(&self) -> &Catalog {
        self.catalog.get_or_init(|| {
            let catalog = Catalog::load(&self.home);
            for problem in &catalog.problems {
                self.out.warn(&format!("skipping custom provider {}: {}", problem.path.display(), problem.message));
            }
            catalog
        })
    }

    pub fn vault(&self) -> CliResult<Vault> {
        Ok(Vault::open(&self.home, &self.profile)?)
    }

    /// Append an audit event. For events that must precede what they record (a secret
    /// reveal), use `audit_required`.
    pub fn audit(&self, event: AuditEvent) {
        if let Err(e) = self.audit_log.append(&event.profile(&self.profile)) {
            self.out.warn(&format!("could not write the audit log: {e}"));
        }
    }

    /// Append an audit event or fail: secrets are only revealed once the reveal is recorded.
    /// A home on a read-only mount is the exception: nothing can be recorded there (nor
    /// changed), permissions cannot cause it, and reads must keep working; the user is told.
    pub fn audit_required(&self, event: AuditEvent) -> CliResult<()> {
        match self.audit_log.append(&event.profile(&self.profile)) {
            Err(e) if e.is_read_only_file_system() => {
                self.out.warn(&format!("not recorded in the audit log (read-only file system): {e}"));
                Ok(())
            }
            result => result.map_err(|e| {
                CliError::from(e)
                    .hint("secrets are only revealed once the audit log records it; fix the log file's permissions")
            }),
        }
    }
}

/// Passphrases from `AUTHSOME_PASSPHRASE` (as [`NoPrompt`]), else a hidden prompt on the terminal.
#[derive(Debug, Clone, Copy)]
pub struct Prompter;

impl KeySource for Prompter {
    fn keychain(&self) -> Option<&dyn Keychain> {
        crate::os_keychain()
    }

    fn supplied_passphrase(&self, profile: &str) -> authsome_vault::Result<Option<SecretString>> {
        NoPrompt.supplied_passphrase(profile)
    }

    fn passphrase(&self, request: PassphraseRequest<'_>) -> authsome_vault::Result<Option<SecretString>> {
        if let Some(value) = NoPrompt.passphrase(request)? {
            return Ok(Some(value));
        }
        if !std::io::stdin().is_terminal() && !std::io::stderr().is_terminal() {
            return Ok(None);
        }
        match request {
            PassphraseRequest::Unlock { profile } => {
                Ok(prompt(&format!("Passphrase for profile '{profile}': ")).map(SecretString::from))
            }
            PassphraseRequest::Create { profile } => {
                for _ in 0..3 {
                    let Some(first) = prompt(&format!("New passphrase for profile '{profile}': ")) else {
                        return Ok(None);
                    };
                    if first.is_empty() {
                        eprintln!("The passphrase cannot be empty.");
                        continue;
                    }
                    let Some(second) = prompt("Repeat the passphrase: ") else { return Ok(None) };
                    if first == second {
                        return Ok(Some(SecretString::from(first)));
                    }
                    eprintln!("The passphrases differ; try again.");
                }
                Ok(None)
            }
        }
    }
}

/// Key material without asking anyone: passphrases from `AUTHSOME_PASSPHRASE` only (the library
/// and status checks never prompt on a terminal), keys of `keyring` profiles from the OS keychain.
#[derive(Debug, Clone, Copy)]
pub struct NoPrompt;

impl KeySource for NoPrompt {
    fn keychain(&self) -> Option<&dyn Keychain> {
        crate::os_keychain()
    }

    /// `AUTHSOME_PASSPHRASE` is checked even when the key is cached (a wrong one never reads).
    fn supplied_passphrase(&self, profile: &str) -> authsome_vault::Result<Option<SecretString>> {
        self.passphrase(PassphraseRequest::Unlock { profile })
    }

    fn passphrase(&self, _: PassphraseRequest<'_>) -> authsome_vault::Result<Option<SecretString>> {
        // Lossy, not `var`: a passphrase that is not UTF-8 must not silently count as "none".
        Ok(std::env::var_os(env::PASSPHRASE).map(|v| SecretString::from(v.to_string_lossy().into_owned())))
    }
}

/// A hidden prompt on the controlling terminal (`None` when there is none).
pub fn prompt(text: &str) -> Option<String> {
    rpassword::prompt_password(text).ok()
}

/// Ask a yes/no question on the terminal; `None` when there is no terminal.
pub fn confirm(question: &str) -> Option<bool> {
    if !std::io::stdin().is_terminal() {
        return None;
    }
    eprint!("{question} [y/N] ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).ok()?;
    Some(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}
