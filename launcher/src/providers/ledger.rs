//! The ledger of confirmed custom provider files, `AUTHSOME_HOME/provider-ledger.json`: for each
//! file `authsome register` wrote, its SHA-256 and the hosts the user confirmed there.
//!
//! It exists because a custom definition shadowing a bundled provider decides where that
//! provider's credential goes: any process that can write `providers/` (the child of a plain
//! `authsome run`, say) could drop an `openai.json` claiming `*.evil.com`. The ledger sits beside
//! `config.json`, outside `providers/`, so write access to that directory alone cannot forge a
//! confirmation. This module owns the file (format, atomic 0600 writes); which hosts a
//! definition gets is decided in `trust.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use authsome_vault::Home;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The ledger's file name in `AUTHSOME_HOME`.
pub(crate) const FILE_NAME: &str = "provider-ledger.json";
const FORMAT: u32 = 1;

/// Confirmed files by provider name (a custom file is always `providers/<name>.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Ledger {
    v: u32,
    files: BTreeMap<String, Confirmation>,
    /// Custom files the user was told once that they are used instead of a bundled provider
    /// of the same name (a provider bundled after the file was written, say). Absent in older
    /// ledgers, which read as "told about none".
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    shadowing_told: BTreeSet<String>,
}

/// What the user confirmed for one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Confirmation {
    /// SHA-256 of the file's bytes, lower-case hex.
    pub(crate) sha256: String,
    /// The definition's hosts as the user saw them.
    pub(crate) hosts: Vec<String>,
}

pub(crate) fn path(home: &Home) -> PathBuf {
    home.root().join(FILE_NAME)
}

/// Lower-case hex SHA-256 of a file's bytes.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// An empty ledger of the current format.
impl Default for Ledger {
    fn default() -> Self {
        Self { v: FORMAT, files: BTreeMap::new(), shadowing_told: BTreeSet::new() }
    }
}

impl Ledger {
    /// The ledger at `path`; `None` when there is none yet. A damaged ledger is an error, never
    /// "none": starting over would confirm whatever files sit in `providers/` at that moment.
    pub(crate) fn read(path: &Path) -> Result<Option<Self>, String> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read it: {e}")),
        };
        let ledger: Self = serde_json::from_slice(&bytes).map_err(|e| format!("it is damaged ({e})"))?;
        if ledger.v != FORMAT {
            return Err(format!("it has format {}, this authsome reads format {FORMAT}", ledger.v));
        }
        Ok(Some(ledger))
    }

    /// Replace the file atomically (temporary file in the same directory, then rename), mode 0600.
    pub(crate) fn write(&self, path: &Path) -> std::io::Result<()> {
        use std::io::Write;
        let body = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        let dir = path.parent().unwrap_or_else(|| Path::new("."));
        let tmp = dir.join(format!(".{FILE_NAME}.tmp.{}", std::process::id()));
        let result = (|| {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&tmp)?;
            file.write_all(&body)?;
            file.write_all(b"\n")?;
            file.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// Record that the user confirmed `hosts` for the file of provider `name` with these contents.
    pub(crate) fn confirm(&mut self, name: &str, sha256: String, hosts: Vec<String>) {
        self.files.insert(name.to_string(), Confirmation { sha256, hosts });
    }

    /// The confirmation for `name` if the file still has the confirmed contents.
    pub(crate) fn confirmed(&self, name: &str, sha256: &str) -> Option<&Confirmation> {
        self.files.get(name).filter(|c| c.sha256 == sha256)
    }

    /// Whether some version of `name`'s file was ever confirmed.
    pub(crate) fn knows(&self, name: &str) -> bool {
        self.files.contains_key(name)
    }

    /// Forget files that are gone, so a file re-created later with the same bytes is not
    /// trusted on the strength of an old confirmation the user may have forgotten.
    pub(crate) fn forget_missing(&mut self, providers_dir: &Path) {
        self.files.retain(|name, _| providers_dir.join(format!("{name}.json")).is_file());
        self.shadowing_told.retain(|name| providers_dir.join(format!("{name}.json")).is_file());
    }

    /// Record that the user was told the file of `name` shadows a bundled provider; false when
    /// they already were.
    pub(crate) fn tell_shadowing(&mut self, name: &str) -> bool {
        self.shadowing_told.insert(name.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_is_private_and_matches_by_hash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        assert_eq!(Ledger::read(&path), Ok(None));
        let mut ledger = Ledger::default();
        let hash = sha256_hex(b"{}");
        assert_eq!(hash, "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a");
        ledger.confirm("openai", hash.clone(), vec!["*.example.com".into()]);
        ledger.write(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let read = Ledger::read(&path).unwrap().unwrap();
        assert_eq!(read, ledger);
        assert_eq!(read.confirmed("openai", &hash).unwrap().hosts, vec!["*.example.com"]);
        assert!(read.confirmed("openai", &sha256_hex(b"{ }")).is_none(), "another content is not confirmed");
        assert!(read.confirmed("github", &hash).is_none());
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
    }

    #[test]
    fn a_damaged_ledger_is_an_error_not_an_empty_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        std::fs::write(&path, "{ nope").unwrap();
        assert!(Ledger::read(&path).unwrap_err().contains("damaged"));
        std::fs::write(&path, r#"{"v": 9, "files": {}}"#).unwrap();
        assert!(Ledger::read(&path).unwrap_err().contains("format 9"));
    }

    #[test]
    fn forget_missing_keeps_present_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("lab.json"), "{}").unwrap();
        let mut ledger = Ledger::default();
        ledger.confirm("lab", "a".into(), vec![]);
        ledger.confirm("gone", "b".into(), vec![]);
        ledger.forget_missing(dir.path());
        assert!(ledger.confirmed("lab", "a").is_some());
        assert!(ledger.confirmed("gone", "b").is_none());
    }
}
