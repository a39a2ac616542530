//! `authsome migrate`: import a home written by the Python authsome 0.2.4 in place.
//!
//! The new home is first written in our format in a staging directory (`.migrate-staging/`)
//! and made durable, so a failure there (a passphrase not given, a keychain away) leaves the
//! Python home as it was. Then the Python files are **moved** (one `rename` each) into a dated
//! backup directory inside the home, `python-backup-<UTC time>/`, which stays a complete Python
//! home (the Python authsome can be pointed at it with `AUTHSOME_HOME`), and the staged files
//! are renamed into place.
//!
//! A journal, `.migrate.json`, records the backup's name and the step reached. It is written
//! before the first move and removed after the last rename, and while it exists every other
//! command refuses the home (see `Home::foreign_format`). A crash anywhere is therefore
//! finished by running `authsome migrate` again:
//!
//! | journal step | what a rerun does |
//! |---|---|
//! | `staging` | discards any partial staging directory and stages again |
//! | `moving` | moves what is left of the Python files into the same backup |
//! | `installing` | renames what is left of the staging directory into the home |
//!
//! The Python files are read wherever they are at that point (the home, the backup, or split
//! between them after a crash while moving).
//!
//! Before anything moves, the Python home is read and decrypted in full (a wrong key stops
//! there) and a running Python daemon on the home stops the migration (it would keep writing to
//! the files being moved).
//!
//! Nothing Python is ever deleted here; `delete_backups` does that on the user's request.
//! Secrets never appear in the report or in errors: only profile, provider and connection names.

mod python;
mod stage;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{Error, KeychainError};
use crate::fsutil;
use crate::home::Home;
use crate::keys::KeySource;
use crate::vault::CreateOptions;
use stage::{discard_staging, install, stage};

/// The journal of an unfinished migration, in the home's root.
pub const JOURNAL: &str = ".migrate.json";
/// Where the new home is assembled before it is renamed into place.
pub const STAGING: &str = ".migrate-staging";
/// Backup directories are named `python-backup-<UTC time>`.
pub const BACKUP_PREFIX: &str = "python-backup-";

/// Test-only: `AUTHSOME_TEST_MIGRATE_ABORT_AFTER=N` aborts the process right after checkpoint
/// N (1 journal written, 2 a staged profile has its key, 3 staging complete, 4 first file
/// moved, 5 all moved, 6 first entry installed, 7 all installed), as a kill would. The end-to-
/// end tests use it to crash a migration at each point; unset (always, outside tests) it does
/// nothing.
pub const ABORT_HOOK_ENV: &str = "AUTHSOME_TEST_MIGRATE_ABORT_AFTER";

/// Where a Python home in `keyring` mode keeps its master key: the OS keyring item with service
/// `authsome` and user `master_key` (Python `keyring`'s attributes), holding the key in base64.
pub trait PythonKeyring {
    /// The item's secret, `None` if there is no such item; `Err` says why the keyring could not
    /// be asked.
    fn master_key(&self) -> Result<Option<Zeroizing<Vec<u8>>>, KeychainError>;
}

/// No keyring: a `keyring`-mode Python home cannot be imported.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoPythonKeyring;
impl PythonKeyring for NoPythonKeyring {
    fn master_key(&self) -> Result<Option<Zeroizing<Vec<u8>>>, KeychainError> {
        Err(KeychainError::Absent("this build of authsome has no OS keyring support".into()))
    }
}

/// What can stop a migration. No variant carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The new vault failed.
    #[error(transparent)]
    Vault(#[from] Error),

    /// The Python master key could not be had (`master.key` missing or damaged, or the keyring).
    #[error("the Python authsome's master key is not available: {reason}")]
    PythonKeyUnavailable {
        /// The key was to come from the OS keyring (not `master.key`).
        keyring: bool,
        /// Why it could not be had.
        reason: String,
    },

    /// The key opened the file but not the records: a wrong `master.key` or altered records.
    #[error("the Python authsome's master key does not open {failed} of {total} records in {store}")]
    PythonKeyWrong {
        /// The Python store.
        store: PathBuf,
        /// Records that did not open.
        failed: usize,
        /// Records in it.
        total: usize,
    },

    /// A file of the Python home could not be read or understood.
    #[error("{path}: {reason}")]
    PythonFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A layout this importer does not read (the Python authsome 0.3+ client/server split).
    #[error("{path} holds a Python authsome {layout}, which `authsome migrate` does not import (only 0.2.x homes)")]
    Unsupported {
        /// The home.
        path: PathBuf,
        /// What it holds.
        layout: String,
    },

    /// Installing the new home found a file already in its place.
    #[error("{path} already exists, so the migrated home cannot be put in place")]
    InPlace {
        /// The file in the way.
        path: PathBuf,
    },

    /// The Python authsome's daemon is running on this home: it would keep writing to the files
    /// being moved.
    #[error("the Python authsome's daemon (pid {pid}) is running on this home")]
    PythonDaemonRunning {
        /// The daemon's pid.
        pid: u32,
    },

    /// `--delete-backup` while a migration is unfinished.
    #[error("a migration of {path} is unfinished")]
    Unfinished {
        /// The home.
        path: PathBuf,
    },
}

/// Settings of one run.
#[derive(Debug, Clone, Copy, Default)]
pub struct MigrateOptions {
    /// Key backend for the migrated profiles (as for a new profile).
    pub create: CreateOptions,
    /// Only report what would happen; change nothing.
    pub dry_run: bool,
}

/// Something in the Python home that was not imported (the backup still has it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// The Python profile it belongs to.
    pub profile: String,
    /// The record's store key (names only), or what was skipped.
    pub item: String,
    /// Why it was skipped.
    pub reason: String,
}

/// One imported profile, by names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProfileReport {
    /// The profile's name.
    pub name: String,
    /// (provider, connection)
    pub connections: Vec<(String, String)>,
    /// (provider, default connection)
    pub defaults: Vec<(String, String)>,
    /// Providers with a stored OAuth client.
    pub clients: Vec<String>,
}

/// What a migration did (or, with `dry_run`, would do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The home that was (or would be) migrated.
    pub home: PathBuf,
    /// The backup directory (for a dry run: the one that would be made).
    pub backup: PathBuf,
    /// Top-level entries of the Python home moved into the backup.
    pub moved: Vec<String>,
    /// The profiles imported.
    pub profiles: Vec<ProfileReport>,
    /// The default profile of the migrated home.
    pub default_profile: String,
    /// Custom provider files copied (as file names).
    pub providers: Vec<String>,
    /// What was not imported, and why.
    pub skipped: Vec<Skipped>,
    /// The Python home kept its key in the OS keyring (the item is left there).
    pub python_keyring: bool,
    /// This run finished a migration an earlier run had started.
    pub resumed: bool,
}

/// The result of `migrate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// No Python home and no unfinished migration here; the backups still present are listed.
    NothingToDo {
        /// Backups of earlier migrations still present.
        backups: Vec<PathBuf>,
    },
    /// What a migration would do (`dry_run`).
    DryRun(Report),
    /// What the migration did.
    Migrated(Report),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Step {
    Staging,
    Moving,
    Installing,
}

#[derive(Debug, Serialize, Deserialize)]
struct Journal {
    v: u32,
    /// The backup directory's name (in the home).
    backup: String,
    step: Step,
    /// Entries moved into the backup, in order (for the report of a resumed run).
    #[serde(default)]
    moved: Vec<String>,
}

/// Import the Python home at `home` (see the module documentation).
pub fn migrate(
    home: &Home,
    options: &MigrateOptions,
    key_source: &dyn KeySource,
    python_keyring: &dyn PythonKeyring,
) -> Result<Outcome, MigrateError> {
    let root = home.root();
    // Two migrations at once would each write a journal: they take turns, the later one then
    // finding nothing to do. The lock is on the home directory itself (flock), so no lock file
    // joins the Python files; it is released when the process ends, however it ends.
    let _turn = match std::fs::File::open(root) {
        Ok(dir) => {
            dir.lock().map_err(|e| Error::io(root, e))?;
            Some(dir)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io(root, e).into()),
    };
    let journal = read_journal(root)?;
    let resumed = journal.is_some();
    let mut journal = match journal {
        Some(journal) => journal,
        None => {
            let Some(format) = home.foreign_format() else {
                return Ok(Outcome::NothingToDo { backups: backups(home)? });
            };
            if format.contains("0.3+") {
                return Err(MigrateError::Unsupported { path: root.to_path_buf(), layout: format });
            }
            if let Some(pid) = python_daemon(root) {
                return Err(MigrateError::PythonDaemonRunning { pid });
            }
            // Everything is read and decrypted before anything moves: a wrong key or an
            // unreadable store stops here with the home untouched.
            let python = python::read(root, python_keyring)?;
            let backup = new_backup_name(root);
            let moved = python_entries(root)?;
            let report = report(home, &backup, moved.clone(), &python, false);
            if options.dry_run {
                return Ok(Outcome::DryRun(report));
            }
            remove_journal_temps(root)?;
            let journal = Journal { v: 1, backup, step: Step::Staging, moved };
            write_journal(root, &journal)?;
            checkpoint(1);
            journal
        }
    };
    let backup_dir = root.join(&journal.backup);
    let layout = python::Layout { dirs: &[&backup_dir, root] };
    let python = python::read_layout(&layout, python_keyring)?;
    if options.dry_run {
        return Ok(Outcome::DryRun(report(home, &journal.backup, journal.moved.clone(), &python, true)));
    }
    remove_journal_temps(root)?;
    if journal.step == Step::Staging {
        if let Err(e) = stage(home, &python, options.create, key_source) {
            // Nothing has moved yet: leave the Python home exactly as it was.
            discard_staging(home, &python, key_source)?;
            std::fs::remove_file(root.join(JOURNAL)).map_err(|e| Error::io(root.join(JOURNAL), e))?;
            fsutil::sync_dir(root);
            return Err(e);
        }
        journal.step = Step::Moving;
        write_journal(root, &journal)?;
        checkpoint(3);
    }
    if journal.step == Step::Moving {
        fsutil::ensure_private_dir(&backup_dir)?;
        for (index, name) in python_entries(root)?.into_iter().enumerate() {
            let to = backup_dir.join(&name);
            if to.exists() {
                return Err(MigrateError::InPlace { path: to });
            }
            std::fs::rename(root.join(&name), &to).map_err(|e| Error::io(root.join(&name), e))?;
            if !journal.moved.contains(&name) {
                journal.moved.push(name);
            }
            if index == 0 {
                fsutil::sync_dir(root);
                checkpoint(4);
            }
        }
        fsutil::sync_dir(&backup_dir);
        fsutil::sync_dir(root);
        journal.step = Step::Installing;
        write_journal(root, &journal)?;
        checkpoint(5);
    }
    install(root)?;
    checkpoint(7);
    let staging = root.join(STAGING);
    match std::fs::remove_dir(&staging) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(staging, e).into()),
    }
    std::fs::remove_file(root.join(JOURNAL)).map_err(|e| Error::io(root.join(JOURNAL), e))?;
    fsutil::sync_dir(root);
    Ok(Outcome::Migrated(report(home, &journal.backup, journal.moved, &python, resumed)))
}

/// Delete the backup directories of finished migrations; returns what was deleted. The
/// Python keyring item (for homes in `keyring` mode) is not touched.
pub fn delete_backups(home: &Home) -> Result<Vec<PathBuf>, MigrateError> {
    if home.root().join(JOURNAL).exists() {
        return Err(MigrateError::Unfinished { path: home.root().to_path_buf() });
    }
    let found = backups(home)?;
    for dir in &found {
        std::fs::remove_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    fsutil::sync_dir(home.root());
    Ok(found)
}

/// Backup directories in the home, oldest first.
pub fn backups(home: &Home) -> Result<Vec<PathBuf>, MigrateError> {
    let entries = match std::fs::read_dir(home.root()) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(home.root(), e).into()),
    };
    let mut found: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with(BACKUP_PREFIX)))
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    found.sort();
    Ok(found)
}

/// The top-level entries of the Python home: everything but our own bookkeeping.
fn python_entries(root: &Path) -> Result<Vec<String>, MigrateError> {
    let mut names: Vec<String> = std::fs::read_dir(root)
        .map_err(|e| Error::io(root, e))?
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n != JOURNAL && n != STAGING && !n.starts_with(BACKUP_PREFIX) && !is_journal_temp(n))
        .collect();
    names.sort();
    Ok(names)
}

/// The pid in the Python home's `daemon/daemon.pid` if that process runs and is an authsome
/// (a stale pid file, or a pid reused by another program, does not count). Linux only: where
/// `/proc` is missing the check is skipped.
fn python_daemon(root: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(root.join("daemon").join("daemon.pid")).ok()?.trim().parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    cmdline.windows(8).any(|w| w == b"authsome").then_some(pid)
}

/// A journal being written when the process died (`fsutil::write_private_atomic`'s temp name).
fn is_journal_temp(name: &str) -> bool {
    name.strip_prefix('.').is_some_and(|rest| rest.starts_with(&format!("{JOURNAL}.tmp.")))
}

/// Remove journals a killed run left half-written; the journal itself is only ever replaced
/// whole (rename), so these were never in effect.
fn remove_journal_temps(root: &Path) -> Result<(), MigrateError> {
    let Ok(entries) = std::fs::read_dir(root) else { return Ok(()) };
    for entry in entries.flatten() {
        if entry.file_name().to_str().is_some_and(is_journal_temp) {
            std::fs::remove_file(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
        }
    }
    Ok(())
}

fn new_backup_name(root: &Path) -> String {
    let now = time::OffsetDateTime::now_utc();
    let base = format!(
        "{BACKUP_PREFIX}{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    );
    let mut name = base.clone();
    let mut n = 1;
    while root.join(&name).exists() {
        n += 1;
        name = format!("{base}-{n}");
    }
    name
}

fn read_journal(root: &Path) -> Result<Option<Journal>, MigrateError> {
    let path = root.join(JOURNAL);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).map_err(|source| Error::Json { path, source })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e).into()),
    }
}

fn write_journal(root: &Path, journal: &Journal) -> Result<(), MigrateError> {
    let path = root.join(JOURNAL);
    let mut bytes = serde_json::to_vec_pretty(journal).map_err(|source| Error::Json { path: path.clone(), source })?;
    bytes.push(b'\n');
    fsutil::write_private_atomic(&path, &bytes)?;
    fsutil::sync_dir(root);
    Ok(())
}

fn report(home: &Home, backup: &str, moved: Vec<String>, python: &python::PythonHome, resumed: bool) -> Report {
    Report {
        home: home.root().to_path_buf(),
        backup: home.root().join(backup),
        moved,
        profiles: python
            .profiles
            .iter()
            .map(|p| ProfileReport {
                name: p.name.clone(),
                connections: p.connections.iter().map(|(m, _)| (m.provider.clone(), m.name.clone())).collect(),
                defaults: p
                    .defaults
                    .iter()
                    .filter(|(provider, name)| {
                        p.connections.iter().any(|(m, _)| &m.provider == provider && &m.name == name)
                    })
                    .cloned()
                    .collect(),
                clients: p.clients.iter().map(|(provider, _)| provider.clone()).collect(),
            })
            .collect(),
        default_profile: python.default_profile.clone(),
        providers: python.providers.iter().map(|(name, _)| name.clone()).collect(),
        skipped: python.skipped.clone(),
        python_keyring: python.keyring_mode,
        resumed,
    }
}

/// The test-only crash hook (see [`ABORT_HOOK_ENV`]).
fn checkpoint(n: u32) {
    if std::env::var(ABORT_HOOK_ENV).ok().and_then(|v| v.parse::<u32>().ok()) == Some(n) {
        std::process::abort();
    }
}
