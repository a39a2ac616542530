//! `AUTHSOME_HOME`: where everything lives, and the names allowed inside it.
//!
//! ```text
//! config.json                 default profile, each profile's key backend ("v": 1)
//! keys/<profile>.key          master key (file / passphrase backends), 0600, not beside store.db
//! profiles/<name>/store.db    sealed SQLite store (WAL)
//! profiles/<name>/ca/         the profile's MITM CA (owned by the proxy crate)
//! providers/*.json            custom provider definitions
//! audit.log                   JSON lines, never a secret
//! ```
//! Nothing is created until something is written. A home written by the Python authsome is
//! detected and never modified, except by `authsome migrate` (see `migrate`).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::fsutil;

/// Environment variable naming the home directory.
pub const HOME_ENV: &str = "AUTHSOME_HOME";

/// The authsome home directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// `AUTHSOME_HOME`, else `~/.authsome`.
    pub fn from_env() -> Result<Self> {
        if let Some(dir) = std::env::var_os(HOME_ENV).filter(|v| !v.is_empty()) {
            return Ok(Self::at(PathBuf::from(dir)));
        }
        let user_home = std::env::var_os("HOME").filter(|v| !v.is_empty()).ok_or_else(|| Error::Io {
            path: PathBuf::from("~"),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "HOME is not set; set AUTHSOME_HOME"),
        })?;
        Ok(Self::at(PathBuf::from(user_home).join(".authsome")))
    }

    /// The home at `root`.
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Its directory.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// `config.json`: profiles and their key backends.
    pub fn config_path(&self) -> PathBuf {
        self.root.join("config.json")
    }
    /// `audit.log`: one JSON line per event.
    pub fn audit_path(&self) -> PathBuf {
        self.root.join("audit.log")
    }
    /// `providers/`: custom provider definitions.
    pub fn providers_dir(&self) -> PathBuf {
        self.root.join("providers")
    }
    /// `keys/`: the profiles' key files (apart from the stores).
    pub fn keys_dir(&self) -> PathBuf {
        self.root.join("keys")
    }
    /// The key file of `profile`.
    pub fn key_path(&self, profile: &str) -> PathBuf {
        self.keys_dir().join(format!("{profile}.key"))
    }
    /// `profiles/`: one directory per profile.
    pub fn profiles_dir(&self) -> PathBuf {
        self.root.join("profiles")
    }
    /// The directory of `profile`.
    pub fn profile_dir(&self, profile: &str) -> PathBuf {
        self.profiles_dir().join(profile)
    }
    /// The sealed store of `profile` (`store.db`).
    pub fn store_path(&self, profile: &str) -> PathBuf {
        self.profile_dir(profile).join("store.db")
    }
    /// The MITM certificate authority's directory of `profile`.
    pub fn ca_dir(&self, profile: &str) -> PathBuf {
        self.profile_dir(profile).join("ca")
    }
    /// The daemon's directory.
    pub fn daemon_dir(&self) -> PathBuf {
        self.root.join("daemon")
    }

    /// Create the home directory (0700) if needed, after checking it is not a Python home.
    pub fn ensure(&self) -> Result<()> {
        self.check_not_foreign()?;
        fsutil::ensure_private_dir(&self.root)
    }

    /// Fail if the directory holds a home written by the Python authsome.
    pub fn check_not_foreign(&self) -> Result<()> {
        match self.foreign_format() {
            Some(format) => Err(Error::ForeignHome { path: self.root.clone(), format }),
            None => Ok(()),
        }
    }

    /// Which Python authsome layout, if any, this directory holds. Cheap: a few `stat`s.
    pub fn foreign_format(&self) -> Option<String> {
        if self.root.join(crate::migrate::JOURNAL).exists() {
            return Some("an unfinished import: run `authsome migrate` again to finish it".into());
        }
        let version = self.root.join("version");
        if let Ok(text) = std::fs::read_to_string(&version) {
            return Some(format!("version file '{}'", text.trim()));
        }
        if self.root.join("master.key").is_file() {
            return Some("master.key".into());
        }
        if self.root.join("server").join("config.json").is_file()
            || self.root.join("client").join("config.json").is_file()
        {
            return Some("0.3+ client/server layout".into());
        }
        // Our own config.json (`"v": N`): a home we wrote. Upstream's has `spec_version`.
        if let Ok(bytes) = std::fs::read(self.config_path())
            && serde_json::from_slice::<serde_json::Value>(&bytes)
                .is_ok_and(|doc| doc.get("v").is_some_and(|v| v.is_u64()))
        {
            return None;
        }
        // A store.db with upstream's `kv` table, whatever the version file says.
        if let Ok(entries) = std::fs::read_dir(self.profiles_dir()) {
            for entry in entries.flatten() {
                let db = entry.path().join("store.db");
                if db.is_file() && has_kv_table(&db) {
                    return Some("kv store".into());
                }
            }
        }
        None
    }
}

fn has_kv_table(db: &Path) -> bool {
    let Ok(conn) = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY) else {
        return false;
    };
    conn.query_row("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'kv'", [], |_| Ok(())).is_ok()
}

/// Check a profile, provider or connection name: `[A-Za-z0-9][A-Za-z0-9._-]*`, at most 64
/// characters, no `..`. These names become file names and row identities.
pub fn validate_name(what: &'static str, value: &str) -> Result<()> {
    let fail = |reason| Err(Error::InvalidName { what, value: value.to_string(), reason });
    if value.is_empty() {
        return fail("it is empty");
    }
    if value.len() > 64 {
        return fail("it is longer than 64 characters");
    }
    let mut chars = value.chars();
    if !chars.next().is_some_and(|c| c.is_ascii_alphanumeric()) {
        return fail("it must start with a letter or digit");
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) {
        return fail("only letters, digits, '.', '_' and '-' are allowed");
    }
    if value.contains("..") {
        return fail("it must not contain '..'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["default", "work", "keywords-everywhere", "notion_dcr", "a.b", "A1"] {
            validate_name("connection", ok).unwrap();
        }
        for bad in ["", ".hidden", "-x", "a/b", "a..b", "a b", "ü", &"x".repeat(65)] {
            assert!(validate_name("connection", bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn python_home_detected() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        assert_eq!(home.foreign_format(), None);
        std::fs::write(dir.path().join("version"), "2\n").unwrap();
        assert_eq!(home.foreign_format().as_deref(), Some("version file '2'"));
        assert!(matches!(home.ensure(), Err(Error::ForeignHome { .. })));
    }

    #[test]
    fn our_config_skips_the_store_probe_but_upstream_markers_still_win() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        std::fs::write(home.config_path(), r#"{"v":1,"default_profile":"default"}"#).unwrap();
        assert_eq!(home.foreign_format(), None);
        std::fs::write(home.config_path(), r#"{"spec_version":1,"default_profile":"default"}"#).unwrap();
        let profile = dir.path().join("profiles/default");
        std::fs::create_dir_all(&profile).unwrap();
        rusqlite::Connection::open(profile.join("store.db"))
            .unwrap()
            .execute_batch("CREATE TABLE kv (key TEXT)")
            .unwrap();
        assert_eq!(home.foreign_format().as_deref(), Some("kv store"));
        std::fs::write(dir.path().join("version"), "2\n").unwrap();
        std::fs::write(home.config_path(), r#"{"v":1}"#).unwrap();
        assert!(home.foreign_format().is_some(), "a version file is upstream's whatever config.json says");
    }

    #[test]
    fn python_kv_store_detected() {
        let dir = tempfile::tempdir().unwrap();
        let profile = dir.path().join("profiles/default");
        std::fs::create_dir_all(&profile).unwrap();
        let db = rusqlite::Connection::open(profile.join("store.db")).unwrap();
        db.execute("CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL)", []).unwrap();
        drop(db);
        assert_eq!(Home::at(dir.path()).foreign_format().as_deref(), Some("kv store"));
    }
}
