//! What every command shares: the home, the profile, output, the audit log and the key source,
//! resolved once from the global settings and the environment. Also the two ways key material is
//! obtained (`Prompter` on a terminal, `NoPrompt` for the library and the daemon) and the small
//! terminal questions. Sits below `cli` so that `run`, `daemon` and the library use it without
//! depending on the command line.

use std::cell::OnceCell;
use std::io::IsTerminal;

use authsome_vault::{
    AuditEvent, AuditLog, CreateOptions, DEFAULT_KEY_CACHE_SECONDS, Home, KeyBackend, KeySource, Keychain,
    PassphraseRequest, Vault,
};
use secrecy::SecretString;

use crate::env;
use crate::error::{CliError, CliResult, Kind};
use crate::output::Output;
use crate::providers::Catalog;

pub(crate) struct Context {
    pub(crate) home: Home,
    pub(crate) profile: String,
    pub(crate) out: Output,
    pub(crate) audit_log: AuditLog,
    pub(crate) key_source: Prompter,
    /// Backend for a default profile created by its first write.
    pub(crate) create: CreateOptions,
    catalog: OnceCell<Catalog>,
}

/// The global options every command takes, as the command line gave them.
#[derive(Debug, Clone, Default)]
pub(crate) struct GlobalSettings {
    pub(crate) profile: Option<String>,
    pub(crate) json: bool,
    pub(crate) quiet: bool,
    /// `--no-color` (NO_COLOR is read here).
    pub(crate) no_color: bool,
}

impl GlobalSettings {
    /// The output for these settings: colour unless `--no-color` or `NO_COLOR`.
    pub(crate) fn output(&self) -> Output {
        let color = !self.no_color && env::var_os(env::NO_COLOR).is_none();
        Output::new(self.json, self.quiet, color)
    }
}

impl Context {
    pub(crate) fn new(global: &GlobalSettings) -> CliResult<Self> {
        let out = global.output();
        let home = home_from_env()?;
        let profile = match global.profile.clone().or_else(|| env::var(env::PROFILE)) {
            Some(profile) => profile,
            None => match authsome_vault::profiles::default_profile(&home) {
                Ok(profile) => profile,
                // A home written by the Python authsome: commands that need no vault (doctor,
                // completions, migrate) still work; every vault access reports it.
                Err(authsome_vault::Error::ForeignHome { .. }) => authsome_vault::DEFAULT_PROFILE.to_string(),
                Err(e) => return Err(e.into()),
            },
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

    pub(crate) fn catalog(&self) -> &Catalog {
        self.catalog.get_or_init(|| {
            let catalog = Catalog::load(&self.home);
            for problem in &catalog.problems {
                self.out.warn(&problem.to_string());
            }
            for notice in &catalog.notices {
                self.out.warn(notice);
            }
            catalog
        })
    }

    pub(crate) fn vault(&self) -> CliResult<Vault> {
        Ok(Vault::open(&self.home, &self.profile)?)
    }

    /// Append an audit event. For events that must precede what they record (a secret
    /// reveal), use `audit_required`.
    pub(crate) fn audit(&self, event: AuditEvent) {
        if let Err(e) = self.audit_log.append(&event.profile(&self.profile)) {
            self.out.warn(&format!("could not write the audit log: {e}"));
        }
    }

    /// Append an audit event or fail: secrets are only revealed once the reveal is recorded.
    /// A home on a read-only mount is the exception: nothing can be recorded there (nor
    /// changed), permissions cannot cause it, and reads must keep working; the user is told.
    pub(crate) fn audit_required(&self, event: AuditEvent) -> CliResult<()> {
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

/// `AUTHSOME_HOME` (or `~/.authsome`), made absolute: a relative value would otherwise mean
/// another directory for every process started elsewhere (the daemon, a sandbox helper).
pub(crate) fn home_from_env() -> CliResult<Home> {
    let home = Home::from_env()?;
    absolute_home(home).map_err(|e| {
        CliError::new(
            Kind::StoreUnavailable,
            format!("{} is relative and the current directory is unreadable", env::HOME),
        )
        .cause(e)
        .hint(format!("set {} to an absolute path", env::HOME))
    })
}

/// `home` as an absolute path (the CLI and the library both resolve a relative one this way).
pub(crate) fn absolute_home(home: Home) -> std::io::Result<Home> {
    if home.root().is_absolute() {
        return Ok(home);
    }
    Ok(Home::at(std::env::current_dir()?.join(home.root())))
}

/// Passphrases from `AUTHSOME_PASSPHRASE` (as [`NoPrompt`]), else a hidden prompt on the terminal.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Prompter;

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
pub(crate) struct NoPrompt;

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
pub(crate) fn prompt(text: &str) -> Option<String> {
    rpassword::prompt_password(text).ok()
}

/// Ask a yes/no question on the terminal; `None` when there is no terminal.
pub(crate) fn confirm(question: &str) -> Option<bool> {
    if !std::io::stdin().is_terminal() {
        return None;
    }
    eprint!("{question} [y/N] ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).ok()?;
    Some(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}
