//! `Vault`: one profile of one home, opened for use. Metadata reads need neither the key nor
//! an existing store; the master key is loaded only when a secret is read or written.

use std::cell::OnceCell;

use crate::config::{Config, DEFAULT_PROFILE, KeyBackend, ProfileEntry};
use crate::crypto::MasterKey;
use crate::error::{Error, Result};
use crate::home::{Home, validate_name};
use crate::keys::{self, KeySource};
use crate::record::{ClientRecord, ConnectionMeta, Secrets};
use crate::store::Store;

/// Default seconds a passphrase-unwrapped key stays in the kernel keyring.
pub const DEFAULT_KEY_CACHE_SECONDS: u32 = 900;

/// Options for creating a profile on first write.
#[derive(Debug, Clone, Copy, Default)]
pub struct CreateOptions {
    /// `None`: `keyring` when the caller's keychain answers, unlocked, right now; else `file`.
    pub backend: Option<KeyBackend>,
    /// Seconds an unwrapped passphrase key may stay in the kernel keyring (0 = never).
    pub key_cache_seconds: u32,
}

/// An opened profile.
pub struct Vault {
    home: Home,
    profile: String,
    entry: Option<ProfileEntry>,
    store: Option<Store>,
    key: OnceCell<MasterKey>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault").field("home", &self.home).field("profile", &self.profile).finish()
    }
}

impl Vault {
    /// Open `profile` for reading. A missing default profile is an empty vault; a missing
    /// other profile is `ProfileNotFound`. Nothing is created.
    pub fn open(home: &Home, profile: &str) -> Result<Self> {
        validate_name("profile", profile)?;
        home.check_not_foreign()?;
        let config = Config::load(&home.config_path())?;
        let recorded = config.profiles.get(profile).cloned();
        let store_path = home.store_path(profile);
        let mut wal = store_path.clone().into_os_string();
        wal.push("-wal");
        let empty = |path: &std::path::Path| std::fs::metadata(path).map_or(true, |m| m.len() == 0);
        // Checked in turn with store creators: a store being created is empty for a moment.
        let turn = Store::take_turn(&store_path);
        if let Some(entry) = &recorded
            && std::fs::metadata(&store_path).is_ok_and(|m| m.len() == 0)
            && empty(std::path::Path::new(&wal))
        {
            // A recorded profile's store always holds at least its schema (in the file, or in its
            // write-ahead log until the first checkpoint): both empty means the store was
            // truncated or replaced, not that the profile has no connections.
            return Err(Error::StoreCorrupt {
                path: store_path,
                reason: format!(
                    "it is empty (0 bytes), but config.json records profile '{profile}' as created at {}; \
                     its connections are not in this file",
                    entry.created_at
                ),
            });
        }
        drop(turn);
        let entry = match recorded {
            Some(entry) => Some(entry),
            None => recover_entry(home, profile)?,
        };
        if entry.is_none() && profile != DEFAULT_PROFILE {
            return Err(Error::ProfileNotFound(profile.to_string()));
        }
        let store = Store::open_existing(&store_path, profile)?;
        Ok(Self { home: home.clone(), profile: profile.to_string(), entry, store, key: OnceCell::new() })
    }

    /// The home this vault belongs to.
    pub fn home(&self) -> &Home {
        &self.home
    }
    /// The profile's name.
    pub fn profile(&self) -> &str {
        &self.profile
    }
    /// The key backend recorded for this profile (None: not created yet).
    pub fn key_backend(&self) -> Option<KeyBackend> {
        self.entry.as_ref().map(|e| e.key_backend)
    }
    /// Whether the profile exists (is recorded in `config.json`).
    pub fn exists(&self) -> bool {
        self.entry.is_some()
    }

    // ---- reads without the key ---------------------------------------------------------

    /// Every connection of the profile (metadata only; no key needed).
    pub fn list_connections(&self) -> Result<Vec<ConnectionMeta>> {
        match &self.store {
            Some(store) => store.list_connections(),
            None => Ok(Vec::new()),
        }
    }

    /// One connection's metadata, if it exists.
    pub fn connection(&self, provider: &str, name: &str) -> Result<Option<ConnectionMeta>> {
        match &self.store {
            Some(store) => store.get_connection(provider, name),
            None => Ok(None),
        }
    }

    /// The provider's default connection, if one is set.
    pub fn default_connection(&self, provider: &str) -> Result<Option<String>> {
        match &self.store {
            Some(store) => store.default_connection(provider),
            None => Ok(None),
        }
    }

    /// The connection a command means: the one asked for, else the provider's default, else
    /// `default`.
    pub fn resolve_connection_name(&self, provider: &str, requested: Option<&str>) -> Result<String> {
        if let Some(name) = requested {
            validate_name("connection", name)?;
            return Ok(name.to_string());
        }
        Ok(self.default_connection(provider)?.unwrap_or_else(|| "default".to_string()))
    }

    /// A connection that must exist.
    pub fn require_connection(&self, provider: &str, name: &str) -> Result<ConnectionMeta> {
        self.connection(provider, name)?.ok_or_else(|| self.not_found(provider, name))
    }

    /// The provider's OAuth client without its secret (no key needed).
    pub fn client(&self, provider: &str) -> Result<Option<ClientRecord>> {
        match &self.store {
            Some(store) => store.get_client(None, provider),
            None => Ok(None),
        }
    }

    // ---- reads and writes with the key -------------------------------------------------

    /// The master key, loaded (and checked against the store) on first use.
    pub fn key(&self, key_source: &dyn KeySource) -> Result<&MasterKey> {
        if let Some(key) = self.key.get() {
            return Ok(key);
        }
        let entry = self.entry.as_ref().ok_or_else(|| Error::ProfileNotFound(self.profile.clone()))?;
        let key = keys::load_key(&self.home, &self.profile, entry.key_backend, entry.key_cache_seconds, key_source)?;
        if let Some(store) = &self.store {
            store.verify_key(&key)?;
        }
        Ok(self.key.get_or_init(|| key))
    }

    /// One connection's secrets, unsealed with the profile's key.
    pub fn secrets(&self, key_source: &dyn KeySource, provider: &str, name: &str) -> Result<Secrets> {
        let store = self.store.as_ref().ok_or_else(|| self.not_found(provider, name))?;
        let key = self.key(key_source)?;
        store.read_secrets(key, provider, name)
    }

    /// The provider's OAuth client with its secret unsealed.
    pub fn client_with_secret(&self, key_source: &dyn KeySource, provider: &str) -> Result<Option<ClientRecord>> {
        let Some(store) = &self.store else { return Ok(None) };
        let key = self.key(key_source)?;
        store.get_client(Some(key), provider)
    }

    /// The store and key for writing, creating the profile (key, store, config entry) first if
    /// this is the default profile and it does not exist yet.
    pub fn writer(&mut self, key_source: &dyn KeySource, create: CreateOptions) -> Result<(&mut Store, &MasterKey)> {
        if self.entry.is_none() {
            if self.profile != DEFAULT_PROFILE {
                return Err(Error::ProfileNotFound(self.profile.clone()));
            }
            let (entry, key) = create_profile_files(&self.home, &self.profile, create, key_source, Exclusive::No)?;
            self.entry = Some(entry);
            let _ = self.key.set(key);
        }
        if self.store.is_none() {
            self.store = Some(Store::open_or_create(&self.home.store_path(&self.profile), &self.profile)?);
        }
        self.key(key_source)?;
        let key = self.key.get().expect("loaded above");
        let store = self.store.as_mut().expect("opened above");
        Ok((store, key))
    }

    fn not_found(&self, provider: &str, name: &str) -> Error {
        Error::ConnectionNotFound {
            profile: self.profile.clone(),
            provider: provider.to_string(),
            connection: name.to_string(),
        }
    }
}

/// A profile missing from config.json but whose key file exists (config lost or edited): its
/// backend is read back from the key file rather than guessed. A store without a key file is
/// `KeyMissing`; a new key is never generated over an existing vault.
fn recover_entry(home: &Home, profile: &str) -> Result<Option<ProfileEntry>> {
    let key_path = home.key_path(profile);
    let store_path = home.store_path(profile);
    if !key_path.exists() {
        if store_path.exists() {
            return Err(Error::KeyMissing { profile: profile.to_string(), path: key_path });
        }
        return Ok(None);
    }
    #[derive(serde::Deserialize)]
    struct Head {
        backend: KeyBackend,
    }
    let bytes = std::fs::read(&key_path).map_err(|e| Error::io(&key_path, e))?;
    let head: Head = serde_json::from_slice(&bytes).map_err(|source| Error::Json { path: key_path.clone(), source })?;
    let entry = ProfileEntry {
        key_backend: head.backend,
        created_at: crate::time::iso_offset_micros(crate::time::now_micros()),
        key_cache_seconds: if head.backend == KeyBackend::Passphrase { DEFAULT_KEY_CACHE_SECONDS } else { 0 },
        extra: Default::default(),
    };
    let entry = Config::update(&home.config_path(), |config| {
        config.profiles.entry(profile.to_string()).or_insert(entry).clone()
    })?;
    Ok(Some(entry))
}

/// Whether creating a profile that already has a key is an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exclusive {
    /// `profile create`: another creator's key means the profile exists.
    Yes,
    /// The default profile's first write: whoever creates the key first wins and the others
    /// open that key (create-or-open), so concurrent first logins all use one key.
    No,
}

/// Create a profile's key, store and config entry.
pub(crate) fn create_profile_files(
    home: &Home,
    profile: &str,
    create: CreateOptions,
    key_source: &dyn KeySource,
    exclusive: Exclusive,
) -> Result<(ProfileEntry, MasterKey)> {
    validate_name("profile", profile)?;
    home.ensure()?;
    if exclusive == Exclusive::Yes && (home.key_path(profile).exists() || home.store_path(profile).exists()) {
        return Err(Error::ProfileExists(profile.to_string()));
    }
    let chosen = create.backend.unwrap_or_else(|| match key_source.keychain() {
        Some(keychain) if keychain.available() => KeyBackend::Keyring,
        _ => KeyBackend::File,
    });
    let (backend, key) = match keys::create_key(home, profile, chosen, key_source) {
        Ok(key) => (chosen, key),
        Err(e) if keys::is_already_exists(&e) && exclusive == Exclusive::No => {
            // Another process created the key between our checks: use its key, never a second one.
            let backend = keys::recorded_backend(home, profile)?.ok_or(e)?;
            (backend, keys::load_key(home, profile, backend, create.key_cache_seconds, key_source)?)
        }
        Err(e) if keys::is_already_exists(&e) => return Err(Error::ProfileExists(profile.to_string())),
        Err(e) => return Err(e),
    };
    let store = Store::open_or_create(&home.store_path(profile), profile)?;
    store.verify_key(&key)?;
    let fresh = ProfileEntry {
        key_backend: backend,
        created_at: crate::time::iso_offset_micros(crate::time::now_micros()),
        key_cache_seconds: create.key_cache_seconds,
        extra: Default::default(),
    };
    // The first creator's entry stays (its created_at); a racing creator just reads it.
    let entry = Config::update(&home.config_path(), |config| {
        config.profiles.entry(profile.to_string()).or_insert(fresh).clone()
    })?;
    Ok((entry, key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::NoPassphrase;
    use crate::record::{AuthType, ConnectionMeta, SecretSource};

    #[test]
    fn concurrent_first_writes_share_one_key() {
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let home = Home::at(dir.path());
            let barrier = std::sync::Barrier::new(8);
            let results: Vec<Result<()>> = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..8)
                    .map(|i| {
                        let (home, barrier) = (&home, &barrier);
                        scope.spawn(move || {
                            let mut vault = Vault::open(home, "default")?;
                            barrier.wait();
                            let (store, key) = vault.writer(&NoPassphrase, CreateOptions::default())?;
                            let secrets = Secrets { api_key: Some(format!("k{i}").into()), ..Default::default() };
                            let meta =
                                ConnectionMeta::new("openai", &format!("c{i}"), AuthType::ApiKey, SecretSource::ApiKey);
                            store.put_connection(key, &meta, &secrets).map(|_| ())
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            for result in &results {
                assert!(result.is_ok(), "{results:?}");
            }
            let vault = Vault::open(&home, "default").unwrap();
            assert_eq!(vault.list_connections().unwrap().len(), 8);
            for i in 0..8 {
                vault.secrets(&NoPassphrase, "openai", &format!("c{i}")).unwrap();
            }
            let leftovers: Vec<_> =
                std::fs::read_dir(home.keys_dir()).unwrap().flatten().map(|e| e.file_name()).collect();
            assert_eq!(leftovers, vec![std::ffi::OsString::from("default.key")], "no temporary key files left");
        }
    }

    #[test]
    fn an_emptied_store_of_a_recorded_profile_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        let mut vault = Vault::open(&home, "default").unwrap();
        let (store, key) = vault.writer(&NoPassphrase, CreateOptions::default()).unwrap();
        let secrets = Secrets { api_key: Some("k".into()), ..Default::default() };
        store
            .put_connection(key, &ConnectionMeta::new("a", "default", AuthType::ApiKey, SecretSource::ApiKey), &secrets)
            .unwrap();
        drop(vault);
        for side in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{side}", home.store_path("default").display()));
        }
        std::fs::write(home.store_path("default"), b"").unwrap();
        let err = Vault::open(&home, "default").unwrap_err();
        assert!(matches!(&err, Error::StoreCorrupt { reason, .. } if reason.contains("0 bytes")), "{err:?}");
        assert_eq!(std::fs::metadata(home.store_path("default")).unwrap().len(), 0, "nothing written to it");
    }
}
