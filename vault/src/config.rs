//! `config.json`: the default profile and, per profile, the key backend recorded when the
//! profile was created. Written atomically; unknown fields are kept so a newer authsome's
//! settings survive an older one's write.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fsutil;

/// The `v` of the `config.json` this build writes.
pub const CONFIG_VERSION: u32 = 1;
/// The profile used when none is named.
pub const DEFAULT_PROFILE: &str = "default";

/// Where a profile's master key lives. Recorded at creation, never switched silently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyBackend {
    /// OS keychain / Secret Service.
    Keyring,
    /// `keys/<profile>.key`, 0600 (default on headless Linux).
    File,
    /// `keys/<profile>.key` wrapped with an argon2id-derived key.
    Passphrase,
}

impl KeyBackend {
    /// The word recorded in `config.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyBackend::Keyring => "keyring",
            KeyBackend::File => "file",
            KeyBackend::Passphrase => "passphrase",
        }
    }
}

impl std::str::FromStr for KeyBackend {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "keyring" => Ok(KeyBackend::Keyring),
            "file" => Ok(KeyBackend::File),
            "passphrase" => Ok(KeyBackend::Passphrase),
            other => Err(format!("unknown key backend '{other}' (expected file, passphrase or keyring)")),
        }
    }
}

/// One profile in `config.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileEntry {
    /// Where the profile's master key lives.
    pub key_backend: KeyBackend,
    /// When the profile was created (ISO 8601).
    pub created_at: String,
    /// Seconds an unwrapped passphrase key may stay in the kernel keyring (0 = never cached).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub key_cache_seconds: u32,
    /// Fields this build does not know, kept as they were.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

/// The home's `config.json`: the default profile and each profile's key backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Format version ([`CONFIG_VERSION`]).
    pub v: u32,
    /// The profile used when none is named.
    pub default_profile: String,
    /// Every profile, by name.
    #[serde(default)]
    pub profiles: BTreeMap<String, ProfileEntry>,
    /// Fields this build does not know, kept as they were.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            v: CONFIG_VERSION,
            default_profile: DEFAULT_PROFILE.into(),
            profiles: BTreeMap::new(),
            extra: BTreeMap::new(),
        }
    }
}

impl Config {
    /// Read `config.json`; a missing file is the default configuration (nothing is written).
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(Error::io(path, e)),
        };
        serde_json::from_slice(&bytes).map_err(|source| Error::Json { path: path.to_path_buf(), source })
    }

    /// Read, change and write `config.json` under an exclusive lock (`config.json.lock`), so
    /// two processes creating profiles at once do not lose each other's entry.
    pub fn update<T>(path: &Path, change: impl FnOnce(&mut Config) -> T) -> Result<T> {
        let mut lock_name = path.as_os_str().to_owned();
        lock_name.push(".lock");
        let lock_path = std::path::PathBuf::from(lock_name);
        if let Some(dir) = lock_path.parent() {
            fsutil::ensure_private_dir(dir)?;
        }
        let lock = fsutil::open_append_private(&lock_path)?;
        lock.lock().map_err(|e| Error::io(&lock_path, e))?;
        let mut config = Self::load(path)?;
        let out = change(&mut config);
        config.save(path)?;
        Ok(out)
    }

    /// Write it atomically, readable by the owner only.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut bytes =
            serde_json::to_vec_pretty(self).map_err(|source| Error::Json { path: path.to_path_buf(), source })?;
        bytes.push(b'\n');
        fsutil::write_private_atomic(path, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_is_default_and_round_trips_unknown_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        assert_eq!(Config::load(&path).unwrap(), Config::default());
        std::fs::write(
            &path,
            r#"{"v":1,"default_profile":"work","future":{"x":1},"profiles":{"work":{"key_backend":"passphrase","created_at":"t","key_cache_seconds":600,"later":true}}}"#,
        )
        .unwrap();
        let config = Config::load(&path).unwrap();
        assert_eq!(config.profiles["work"].key_backend, KeyBackend::Passphrase);
        config.save(&path).unwrap();
        let again = Config::load(&path).unwrap();
        assert_eq!(again, config);
        assert!(again.extra.contains_key("future"));
        assert!(again.profiles["work"].extra.contains_key("later"));
    }
}
