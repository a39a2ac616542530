//! Writing the migrated home: staging it from the Python records (`STAGING`, made durable),
//! discarding a partial staging, and renaming the staged entries into the home. The order and
//! the journal around these steps are the parent module's.

use std::path::Path;

use super::{MigrateError, STAGING, checkpoint, python};
use crate::config::Config;
use crate::error::Error;
use crate::fsutil;
use crate::home::Home;
use crate::keys::{self, KeySource};
use crate::store::Store;
use crate::vault::{CreateOptions, Exclusive, create_profile_files};

/// Write the new home into `STAGING` from scratch, durably.
pub(super) fn stage(
    home: &Home,
    python: &python::PythonHome,
    create: CreateOptions,
    key_source: &dyn KeySource,
) -> Result<(), MigrateError> {
    let dir = home.root().join(STAGING);
    let staging = Home::at(&dir);
    // A crash while staging: start over.
    discard_staging(home, python, key_source)?;
    fsutil::ensure_private_dir(&dir)?;
    for (index, profile) in python.profiles.iter().enumerate() {
        let (_, key) = create_profile_files(&staging, &profile.name, create, key_source, Exclusive::Yes)?;
        if index == 0 {
            checkpoint(2);
        }
        let mut store = Store::open_or_create(&staging.store_path(&profile.name), &profile.name)?;
        for (meta, secrets) in &profile.connections {
            store.put_connection(&key, meta, secrets)?;
        }
        for (provider, connection) in &profile.defaults {
            if store.get_connection(provider, connection)?.is_some() {
                store.set_default(provider, connection)?;
            }
        }
        for (provider, client) in &profile.clients {
            store.put_client(&key, provider, client)?;
        }
        // Closing checkpoints the write-ahead log into store.db.
        drop(store);
    }
    let default_profile = python.default_profile.clone();
    Config::update(&staging.config_path(), |config| config.default_profile = default_profile)?;
    for (name, bytes) in &python.providers {
        fsutil::write_private_atomic(&staging.providers_dir().join(name), bytes)?;
    }
    sync_tree(&dir)?;
    Ok(())
}

/// Remove the staging directory and the keychain items its profiles may have made.
pub(super) fn discard_staging(
    home: &Home,
    python: &python::PythonHome,
    key_source: &dyn KeySource,
) -> Result<(), MigrateError> {
    let dir = home.root().join(STAGING);
    if !dir.exists() {
        return Ok(());
    }
    let staging = Home::at(&dir);
    for profile in &python.profiles {
        // Best effort: an unreachable keychain leaves an unused item, never a used one.
        let _ = keys::delete_key(&staging, &profile.name, key_source);
    }
    std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e).into())
}

/// fsync every file and directory under `dir`.
fn sync_tree(dir: &Path) -> Result<(), MigrateError> {
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            sync_tree(&path)?;
        } else if let Ok(file) = std::fs::File::open(&path) {
            file.sync_all().map_err(|e| Error::io(&path, e))?;
        }
    }
    fsutil::sync_dir(dir);
    Ok(())
}

/// Rename what is left in `STAGING` into the home (a rerun continues where a crash stopped).
pub(super) fn install(root: &Path) -> Result<(), MigrateError> {
    let staging = root.join(STAGING);
    let mut names: Vec<String> = match std::fs::read_dir(&staging) {
        Ok(entries) => entries.flatten().filter_map(|e| e.file_name().into_string().ok()).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::io(&staging, e).into()),
    };
    // config.json last: the profiles it names are in place before it is.
    names.sort_by_key(|n| (n == "config.json", n.clone()));
    for (index, name) in names.iter().enumerate() {
        let to = root.join(name);
        if to.exists() {
            return Err(MigrateError::InPlace { path: to });
        }
        std::fs::rename(staging.join(name), &to).map_err(|e| Error::io(&to, e))?;
        if index == 0 {
            fsutil::sync_dir(root);
            checkpoint(6);
        }
    }
    fsutil::sync_dir(root);
    Ok(())
}
