//! Reading a home written by the Python authsome 0.2.4 (layout: see the parent module): its
//! `config.json`, its master key (`master.key`, or the OS keyring in `keyring` mode), and the
//! `kv` table of each profile's `store.db`, whose values are AES-256-GCM sealed JSON records
//! (`base64(nonce) "." base64(ciphertext || tag)`, 96-bit nonce, no associated data).
//!
//! Only reads: the Python files are opened read-only and never changed here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use secrecy::SecretString;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::{MigrateError, PythonKeyring, Skipped};
use crate::home::validate_name;
use crate::record::{AuthType, ClientRecord, ConnectionMeta, SecretSource, Secrets, Status};

/// Everything worth keeping from a Python home, decrypted, in memory.
pub(crate) struct PythonHome {
    pub default_profile: String,
    pub keyring_mode: bool,
    pub profiles: Vec<PythonProfile>,
    /// Custom provider files (`providers/<name>.json`), as they are: our catalog reads them.
    pub providers: Vec<(String, Vec<u8>)>,
    pub skipped: Vec<Skipped>,
}

pub(crate) struct PythonProfile {
    pub name: String,
    pub connections: Vec<(ConnectionMeta, Secrets)>,
    /// (provider, connection) pairs the Python authsome recorded as the provider's default.
    pub defaults: Vec<(String, String)>,
    pub clients: Vec<(String, ClientRecord)>,
}

#[derive(Deserialize, Default)]
struct Config {
    #[serde(default)]
    default_profile: Option<String>,
    #[serde(default)]
    encryption: Option<Encryption>,
}

#[derive(Deserialize)]
struct Encryption {
    #[serde(default)]
    mode: Option<String>,
}

#[derive(Deserialize)]
struct MasterKeyFile {
    key: String,
}

/// Where the Python home's files are: the first of `dirs` that has an entry, so a migration
/// stopped half-way through moving (some entries in the backup, some still in the home) can be
/// read as one home.
pub(crate) struct Layout<'a> {
    pub dirs: &'a [&'a Path],
}

impl Layout<'_> {
    fn path(&self, name: &str) -> PathBuf {
        let found = self.dirs.iter().map(|dir| dir.join(name)).find(|path| path.exists());
        found.unwrap_or_else(|| self.dirs[0].join(name))
    }
}

/// Read the Python home at `root`. Fails without side effects if the master key is missing or
/// does not open the records.
pub(crate) fn read(root: &Path, keyring: &dyn PythonKeyring) -> Result<PythonHome, MigrateError> {
    read_layout(&Layout { dirs: &[root] }, keyring)
}

pub(crate) fn read_layout(layout: &Layout<'_>, keyring: &dyn PythonKeyring) -> Result<PythonHome, MigrateError> {
    let config_path = layout.path("config.json");
    let config: Config = match std::fs::read(&config_path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| MigrateError::PythonFile {
            path: config_path.clone(),
            reason: format!("invalid JSON ({e})"),
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Config::default(),
        Err(e) => return Err(MigrateError::PythonFile { path: config_path, reason: e.to_string() }),
    };
    let keyring_mode = config.encryption.and_then(|e| e.mode).as_deref() == Some("keyring");
    let mut skipped = Vec::new();
    let mut profiles = Vec::new();
    let stores = profile_stores(&layout.path("profiles"))?;
    // The key is needed only when there is something to decrypt.
    let key =
        if stores.is_empty() { None } else { Some(master_key(&layout.path("master.key"), keyring_mode, keyring)?) };
    for (name, store) in stores {
        if let Err(e) = validate_name("profile", &name) {
            skipped.push(Skipped { profile: name.clone(), item: "the whole profile".into(), reason: e.to_string() });
            continue;
        }
        let key = key.as_ref().expect("read when there are stores");
        profiles.push(read_profile(&name, &store, key, &mut skipped)?);
    }
    let mut default_profile = config.default_profile.unwrap_or_else(|| crate::DEFAULT_PROFILE.to_string());
    if validate_name("profile", &default_profile).is_err() {
        default_profile = crate::DEFAULT_PROFILE.to_string();
    }
    Ok(PythonHome {
        default_profile,
        keyring_mode,
        profiles,
        providers: providers(&layout.path("providers"))?,
        skipped,
    })
}

fn profile_stores(dir: &Path) -> Result<Vec<(String, PathBuf)>, MigrateError> {
    let dir = dir.to_path_buf();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(MigrateError::PythonFile { path: dir, reason: e.to_string() }),
    };
    let mut stores: Vec<(String, PathBuf)> = entries
        .flatten()
        .filter_map(|entry| {
            let store = entry.path().join("store.db");
            let name = entry.file_name().into_string().ok()?;
            store.is_file().then_some((name, store))
        })
        .collect();
    stores.sort();
    Ok(stores)
}

fn providers(dir: &Path) -> Result<Vec<(String, Vec<u8>)>, MigrateError> {
    let dir = dir.to_path_buf();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(MigrateError::PythonFile { path: dir, reason: e.to_string() }),
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let Ok(name) = entry.file_name().into_string() else { continue };
        if !name.ends_with(".json") || !entry.path().is_file() {
            continue;
        }
        let bytes = std::fs::read(entry.path())
            .map_err(|e| MigrateError::PythonFile { path: entry.path(), reason: e.to_string() })?;
        out.push((name, bytes));
    }
    out.sort();
    Ok(out)
}

fn master_key(
    path: &Path,
    keyring_mode: bool,
    keyring: &dyn PythonKeyring,
) -> Result<Zeroizing<[u8; 32]>, MigrateError> {
    let encoded: Zeroizing<Vec<u8>> = if keyring_mode {
        keyring
            .master_key()
            .map_err(|e| MigrateError::PythonKeyUnavailable { keyring: true, reason: e.to_string() })?
            .ok_or_else(|| MigrateError::PythonKeyUnavailable {
            keyring: true,
            reason: "the keyring has no item for service 'authsome', user 'master_key'".into(),
        })?
    } else {
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| MigrateError::PythonKeyUnavailable {
            keyring: false,
            reason: format!("{}: {e}", path.display()),
        })?);
        let file: MasterKeyFile = serde_json::from_slice(&bytes).map_err(|_| MigrateError::PythonKeyUnavailable {
            keyring: false,
            reason: format!("{} is not the Python authsome's key file (JSON with \"key\")", path.display()),
        })?;
        Zeroizing::new(Zeroizing::new(file.key).as_bytes().to_vec())
    };
    let text = std::str::from_utf8(&encoded).unwrap_or_default().trim();
    let raw = Zeroizing::new(B64.decode(text).unwrap_or_default());
    let key: [u8; 32] = raw.as_slice().try_into().map_err(|_| MigrateError::PythonKeyUnavailable {
        keyring: keyring_mode,
        reason: "the master key is not 32 bytes of base64".into(),
    })?;
    Ok(Zeroizing::new(key))
}

/// Open one sealed value; `None` if it does not authenticate under `key`.
fn open_value(key: &[u8; 32], value: &str) -> Option<Zeroizing<Vec<u8>>> {
    let (nonce, ciphertext) = value.split_once('.')?;
    let nonce = B64.decode(nonce).ok()?;
    let ciphertext = B64.decode(ciphertext).ok()?;
    let nonce = Nonce::try_from(nonce.as_slice()).ok()?;
    let cipher = Aes256Gcm::new_from_slice(key).ok()?;
    cipher.decrypt(&nonce, ciphertext.as_slice()).ok().map(Zeroizing::new)
}

fn read_profile(
    name: &str,
    store: &Path,
    key: &[u8; 32],
    skipped: &mut Vec<Skipped>,
) -> Result<PythonProfile, MigrateError> {
    let rows = kv_rows(store)?;
    let mut failed = 0;
    let mut profile =
        PythonProfile { name: name.to_string(), connections: Vec::new(), defaults: Vec::new(), clients: Vec::new() };
    let total = rows.len();
    let mut skip = |item: &str, reason: String| {
        skipped.push(Skipped { profile: name.to_string(), item: item.to_string(), reason })
    };
    for (row_key, value) in rows {
        if row_key == "__ready_test__" {
            continue;
        }
        let Some(plain) = open_value(key, &value) else {
            failed += 1;
            continue;
        };
        let parts: Vec<&str> = row_key.split(':').collect();
        let doc: serde_json::Value = match serde_json::from_slice(&plain) {
            Ok(doc) => doc,
            Err(_) => {
                skip(&row_key, "the decrypted record is not JSON".into());
                continue;
            }
        };
        match parts.as_slice() {
            ["profile", p, _, ..] if *p != name => {
                skip(&row_key, format!("it belongs to profile '{p}' but is stored in profile '{name}'"))
            }
            ["profile", _, provider, "connection", connection] => match connection_record(provider, connection, &doc) {
                Ok(Some(pair)) => profile.connections.push(pair),
                Ok(None) => {}
                Err(reason) => skip(&row_key, reason),
            },
            ["profile", _, provider, "metadata"] => {
                if let Some(default) = doc.get("default_connection").and_then(|v| v.as_str()) {
                    profile.defaults.push((provider.to_string(), default.to_string()));
                }
            }
            ["profile", _, provider, "client"] => match client_record(provider, &doc) {
                Ok(client) => profile.clients.push((provider.to_string(), client)),
                Err(reason) => skip(&row_key, reason),
            },
            // Refresh bookkeeping (last refresh time and error): nothing a user would miss.
            ["profile", _, _, "state"] => {}
            _ => skip(&row_key, "not a record kind the Python authsome 0.2.4 writes".into()),
        }
    }
    if failed > 0 {
        return Err(MigrateError::PythonKeyWrong { store: store.to_path_buf(), failed, total });
    }
    Ok(profile)
}

fn kv_rows(store: &Path) -> Result<Vec<(String, String)>, MigrateError> {
    let fail = |e: rusqlite::Error| MigrateError::PythonFile { path: store.to_path_buf(), reason: e.to_string() };
    let db = crate::store::connect_read_only(store).map_err(fail)?;
    let mut stmt = db.prepare("SELECT key, value FROM kv ORDER BY key").map_err(fail)?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))).map_err(fail)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map_err(fail)
}

fn text<'a>(doc: &'a serde_json::Value, field: &str) -> Option<&'a str> {
    doc.get(field).and_then(|v| v.as_str()).filter(|s| !s.is_empty())
}

fn secret(doc: &serde_json::Value, field: &str) -> Option<SecretString> {
    text(doc, field).map(SecretString::from)
}

fn strings(doc: &serde_json::Value, field: &str) -> Option<Vec<String>> {
    doc.get(field)?.as_array().map(|items| items.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
}

/// Python's `datetime.isoformat()`/pydantic forms: with `Z`, an offset, or naive (UTC).
fn parse_time(value: &str) -> Option<time::OffsetDateTime> {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::parse(value, &Rfc3339).ok().or_else(|| {
        let with_zone = format!("{value}Z");
        time::OffsetDateTime::parse(&with_zone, &Rfc3339).ok()
    })
}

/// One `ConnectionRecord`; `Ok(None)` for a record that holds no credential (`not_connected`).
fn connection_record(
    provider: &str,
    connection: &str,
    doc: &serde_json::Value,
) -> Result<Option<(ConnectionMeta, Secrets)>, String> {
    validate_name("provider", provider).map_err(|e| e.to_string())?;
    validate_name("connection", connection).map_err(|e| e.to_string())?;
    if doc.get("schema_version").and_then(|v| v.as_i64()).unwrap_or(1) < 2 {
        return Err("a schema version 1 record, which the Python authsome itself no longer reads; log in again".into());
    }
    let auth_type = text(doc, "auth_type").and_then(AuthType::parse).ok_or("unknown auth_type")?;
    let status = match text(doc, "status") {
        Some("not_connected") => return Ok(None),
        Some(status) => Status::parse(status).ok_or_else(|| format!("unknown status '{status}'"))?,
        None => Status::Connected,
    };
    let secrets = Secrets {
        api_key: secret(doc, "api_key"),
        access_token: secret(doc, "access_token"),
        refresh_token: secret(doc, "refresh_token"),
        client_secret: None,
        extra: Default::default(),
    };
    if secrets.present_fields().is_empty() {
        return Ok(None);
    }
    let source = match auth_type {
        AuthType::ApiKey => SecretSource::ApiKey,
        AuthType::OAuth2 => SecretSource::OAuth,
    };
    let mut meta = ConnectionMeta::new(provider, connection, auth_type, source);
    meta.status = status;
    meta.scopes = strings(doc, "scopes");
    meta.base_url = text(doc, "base_url").map(str::to_string);
    meta.host_url = text(doc, "host_url").map(str::to_string);
    meta.token_type = text(doc, "token_type").map(str::to_string);
    meta.expires_at = text(doc, "expires_at").and_then(parse_time).map(|t| t.unix_timestamp());
    if let Some(obtained) = text(doc, "obtained_at").and_then(parse_time) {
        meta.obtained_at = (obtained.unix_timestamp_nanos() / 1_000) as i64;
    }
    if let Some(account) = doc.get("account") {
        meta.account_id = text(account, "id").map(str::to_string);
        meta.account_label = text(account, "label").map(str::to_string);
    }
    if let Some(metadata) = doc.get("metadata").and_then(|v| v.as_object()) {
        meta.metadata = metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<BTreeMap<_, _>>();
    }
    meta.secret_fields = secrets.present_fields().into_iter().map(str::to_string).collect();
    Ok(Some((meta, secrets)))
}

fn client_record(provider: &str, doc: &serde_json::Value) -> Result<ClientRecord, String> {
    validate_name("provider", provider).map_err(|e| e.to_string())?;
    Ok(ClientRecord {
        client_id: text(doc, "client_id").map(str::to_string),
        client_secret: secret(doc, "client_secret"),
        base_url: text(doc, "base_url").map(str::to_string),
        scopes: strings(doc, "scopes"),
        registration: None,
    })
}
