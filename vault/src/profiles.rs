//! Profile management: list, create, switch, delete. Profiles are hard isolation: each has its
//! own store, master key and CA.

use crate::config::{Config, DEFAULT_PROFILE, KeyBackend};
use crate::error::{Error, Result};
use crate::home::{Home, validate_name};
use crate::keys::{self, KeySource};
use crate::vault::{CreateOptions, Exclusive, create_profile_files};

/// One profile as `profile list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileInfo {
    /// The profile's name.
    pub name: String,
    /// `None` for the default profile before anything was written to it.
    pub key_backend: Option<String>,
    /// When it was created, if recorded.
    pub created_at: Option<String>,
    /// Whether it is the default profile.
    pub is_default: bool,
}

/// The profile commands use when none is named: `config.json`'s default, else `default`.
/// A Python authsome home has no profile of ours yet: `default` (so commands that need no
/// vault, `migrate` first of all, still run; opening the vault reports the Python home).
pub fn default_profile(home: &Home) -> Result<String> {
    if home.foreign_format().is_some() {
        return Ok(DEFAULT_PROFILE.to_string());
    }
    Ok(Config::load(&home.config_path())?.default_profile)
}

/// Every profile of the home, the default one marked.
pub fn list(home: &Home) -> Result<Vec<ProfileInfo>> {
    home.check_not_foreign()?;
    let config = Config::load(&home.config_path())?;
    let mut out: Vec<ProfileInfo> = config
        .profiles
        .iter()
        .map(|(name, entry)| ProfileInfo {
            name: name.clone(),
            key_backend: Some(entry.key_backend.as_str().to_string()),
            created_at: Some(entry.created_at.clone()),
            is_default: *name == config.default_profile,
        })
        .collect();
    if !config.profiles.contains_key(DEFAULT_PROFILE) {
        out.insert(
            0,
            ProfileInfo {
                name: DEFAULT_PROFILE.into(),
                key_backend: None,
                created_at: None,
                is_default: config.default_profile == DEFAULT_PROFILE,
            },
        );
    }
    Ok(out)
}

/// Create a profile; returns the key backend it got (`options.backend`, or the automatic choice).
pub fn create(home: &Home, name: &str, options: CreateOptions, key_source: &dyn KeySource) -> Result<KeyBackend> {
    validate_name("profile", name)?;
    let config = Config::load(&home.config_path())?;
    if config.profiles.contains_key(name) {
        return Err(Error::ProfileExists(name.to_string()));
    }
    create_profile_files(home, name, options, key_source, Exclusive::Yes).map(|(entry, _)| entry.key_backend)
}

/// `authsome lock`: drop every profile's unwrapped key from the kernel-keyring cache, so the
/// next command must present the passphrase again. Returns the passphrase profiles (the only
/// ones whose keys are ever cached).
pub fn lock(home: &Home) -> Result<Vec<String>> {
    home.check_not_foreign()?;
    let config = Config::load(&home.config_path())?;
    let mut locked = Vec::new();
    for (name, entry) in &config.profiles {
        keys::forget_cached_key(home, name);
        if entry.key_backend == KeyBackend::Passphrase {
            locked.push(name.clone());
        }
    }
    Ok(locked)
}

/// Make `name` the default profile. It must exist (the `default` profile always may be chosen).
pub fn set_default(home: &Home, name: &str) -> Result<()> {
    validate_name("profile", name)?;
    home.ensure()?;
    let mut config = Config::load(&home.config_path())?;
    if name != DEFAULT_PROFILE && !config.profiles.contains_key(name) {
        return Err(Error::ProfileNotFound(name.to_string()));
    }
    config.default_profile = name.to_string();
    config.save(&home.config_path())
}

/// Delete a profile: its store, CA, key and config entry. If it was the default, `default`
/// becomes the default again. Returns a note when a keychain item could not be removed (the
/// profile is deleted all the same).
pub fn delete(home: &Home, name: &str, key_source: &dyn KeySource) -> Result<Option<String>> {
    validate_name("profile", name)?;
    home.check_not_foreign()?;
    let mut config = Config::load(&home.config_path())?;
    let dir = home.profile_dir(name);
    if !config.profiles.contains_key(name) && !dir.exists() && !home.key_path(name).exists() {
        return Err(Error::ProfileNotFound(name.to_string()));
    }
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(dir, e)),
    }
    let leftover = keys::delete_key(home, name, key_source)?;
    config.profiles.remove(name);
    if config.default_profile == name {
        config.default_profile = DEFAULT_PROFILE.to_string();
    }
    config.save(&home.config_path())?;
    Ok(leftover)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::NoPassphrase;
    use crate::record::{AuthType, ConnectionMeta, SecretSource, Secrets};
    use crate::vault::Vault;

    #[test]
    fn a_new_profile_uses_the_keychain_when_it_answers() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        let keychain = keys::tests::MemoryKeychain::default();
        assert_eq!(create(&home, "auto", CreateOptions::default(), &keychain).unwrap(), KeyBackend::Keyring);
        assert_eq!(Vault::open(&home, "auto").unwrap().key_backend(), Some(KeyBackend::Keyring));
        keychain.down.store(true, std::sync::atomic::Ordering::SeqCst);
        create(&home, "offline", CreateOptions::default(), &keychain).unwrap();
        assert_eq!(Vault::open(&home, "offline").unwrap().key_backend(), Some(KeyBackend::File));
        create(&home, "plain", CreateOptions::default(), &NoPassphrase).unwrap();
        assert_eq!(Vault::open(&home, "plain").unwrap().key_backend(), Some(KeyBackend::File));
        // An explicit choice is kept, and fails rather than falling back.
        let explicit = CreateOptions { backend: Some(KeyBackend::Keyring), key_cache_seconds: 0 };
        assert!(create(&home, "strict", explicit, &keychain).is_err());
        assert!(matches!(Vault::open(&home, "strict"), Err(Error::ProfileNotFound(_))));
    }

    #[test]
    fn profiles_are_isolated() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        assert_eq!(list(&home).unwrap().len(), 1);
        assert!(!dir.path().join("config.json").exists(), "listing must not write");

        create(&home, "work", CreateOptions::default(), &NoPassphrase).unwrap();
        assert!(matches!(create(&home, "work", CreateOptions::default(), &NoPassphrase), Err(Error::ProfileExists(_))));

        let mut work = Vault::open(&home, "work").unwrap();
        let (store, key) = work.writer(&NoPassphrase, CreateOptions::default()).unwrap();
        let secrets = Secrets { api_key: Some("k".into()), ..Default::default() };
        store
            .put_connection(
                key,
                &ConnectionMeta::new("openai", "default", AuthType::ApiKey, SecretSource::ApiKey),
                &secrets,
            )
            .unwrap();

        let default = Vault::open(&home, "default").unwrap();
        assert!(default.list_connections().unwrap().is_empty());
        assert!(!default.exists());
        assert_eq!(Vault::open(&home, "work").unwrap().list_connections().unwrap().len(), 1);

        set_default(&home, "work").unwrap();
        assert_eq!(default_profile(&home).unwrap(), "work");
        assert!(matches!(set_default(&home, "nope"), Err(Error::ProfileNotFound(_))));
        assert!(matches!(Vault::open(&home, "nope"), Err(Error::ProfileNotFound(_))));

        assert_eq!(delete(&home, "work", &NoPassphrase).unwrap(), None);
        assert_eq!(default_profile(&home).unwrap(), "default");
        assert!(!home.key_path("work").exists());
        assert!(!home.profile_dir("work").exists());
        assert!(matches!(delete(&home, "work", &NoPassphrase), Err(Error::ProfileNotFound(_))));
    }

    #[test]
    fn lost_config_is_recovered_from_the_key_file_not_regenerated() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        let mut vault = Vault::open(&home, "default").unwrap();
        let (store, key) = vault.writer(&NoPassphrase, CreateOptions::default()).unwrap();
        let secrets = Secrets { api_key: Some("k".into()), ..Default::default() };
        store
            .put_connection(
                key,
                &ConnectionMeta::new("openai", "default", AuthType::ApiKey, SecretSource::ApiKey),
                &secrets,
            )
            .unwrap();
        let key_bytes = std::fs::read(home.key_path("default")).unwrap();
        drop(vault);

        std::fs::remove_file(home.config_path()).unwrap();
        let vault = Vault::open(&home, "default").unwrap();
        assert_eq!(vault.key_backend(), Some(KeyBackend::File));
        assert!(vault.secrets(&NoPassphrase, "openai", "default").is_ok());
        assert_eq!(std::fs::read(home.key_path("default")).unwrap(), key_bytes);

        // Without the key file, the store is not silently given a new key.
        std::fs::remove_file(home.config_path()).unwrap();
        std::fs::remove_file(home.key_path("default")).unwrap();
        assert!(matches!(Vault::open(&home, "default"), Err(Error::KeyMissing { .. })));
    }
}
