//! A profile's `store.db`: SQLite in WAL mode with a busy timeout. Row identity is plain;
//! every secret value is sealed (see `crypto`) with the row identity as associated data.
//!
//! The schema carries a format version in `meta`; `MIGRATIONS[i]` takes a store from format
//! `i` to `i + 1`, so a store written by one version opens in the next. A store from a newer
//! authsome is refused, never downgraded. A file that is not a store is reported and never
//! written to.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use zeroize::Zeroizing;

use crate::crypto::{self, MasterKey, RowId, Sealed};
use crate::error::{Error, Result};
use crate::record::{AuthType, ClientRecord, ConnectionMeta, SecretSource, Secrets, Status};

pub use open::STORE_FORMAT;
pub(crate) use open::connect_read_only;
use open::{classify, format_of};

const KEY_CHECK: &[u8] = b"authsome key check v1";
const KIND_SECRETS: &str = "secrets";
const KIND_CLIENT: &str = "client";
const KIND_KEY_CHECK: &str = "key-check";

/// An open `store.db`.
pub struct Store {
    db: Connection,
    path: PathBuf,
    profile: String,
    /// Opened read-only (read-only file system or file): every write is refused up front.
    read_only: bool,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).field("profile", &self.profile).finish()
    }
}

impl Store {
    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the store could only be opened for reading.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    fn writable(&self) -> Result<()> {
        if self.read_only { Err(Error::StoreReadOnly { path: self.path.clone() }) } else { Ok(()) }
    }

    /// The store's format version.
    pub fn format(&self) -> Result<i64> {
        format_of(&self.db, &self.path)
    }

    /// Check that `key` is this store's key; the first key used on a new store is recorded.
    pub fn verify_key(&self, key: &MasterKey) -> Result<()> {
        let existing: Option<String> =
            self.db.query_row("SELECT value FROM meta WHERE key = 'key_check'", [], |r| r.get(0)).optional()?;
        if existing.is_none() {
            self.writable()?;
            let sealed = crypto::seal(key, self.row(KIND_KEY_CHECK, "", ""), KEY_CHECK)?;
            // A concurrent creator may win this insert: the check below reads whatever is stored.
            self.db.execute(
                "INSERT INTO meta(key, value) VALUES ('key_check', ?1) ON CONFLICT(key) DO NOTHING",
                params![encode_sealed(&sealed)],
            )?;
        }
        let encoded: String = self.db.query_row("SELECT value FROM meta WHERE key = 'key_check'", [], |r| r.get(0))?;
        let sealed = decode_sealed(&encoded).ok_or_else(|| Error::KeyMismatch(self.profile.clone()))?;
        match crypto::open(key, self.row(KIND_KEY_CHECK, "", ""), &sealed) {
            Ok(plain) if plain.as_slice() == KEY_CHECK => Ok(()),
            _ => Err(Error::KeyMismatch(self.profile.clone())),
        }
    }

    fn row<'a>(&'a self, kind: &'a str, provider: &'a str, connection: &'a str) -> RowId<'a> {
        RowId { profile: &self.profile, provider, connection, kind }
    }

    // ---- connections -------------------------------------------------------------------

    /// Every connection's metadata (no key needed), ordered by provider then connection.
    pub fn list_connections(&self) -> Result<Vec<ConnectionMeta>> {
        let defaults = self.defaults()?;
        let mut stmt =
            self.db.prepare_cached(&format!("SELECT {META_COLUMNS} FROM connections ORDER BY provider, connection"))?;
        let rows = stmt.query_map([], read_meta)?;
        let mut out = Vec::new();
        for row in rows {
            let mut meta = row?;
            meta.is_default = defaults.get(&meta.provider) == Some(&meta.name);
            out.push(meta);
        }
        Ok(out)
    }

    /// The metadata of one connection, if it exists.
    pub fn get_connection(&self, provider: &str, name: &str) -> Result<Option<ConnectionMeta>> {
        let mut meta = self
            .db
            .query_row(
                &format!("SELECT {META_COLUMNS} FROM connections WHERE provider = ?1 AND connection = ?2"),
                params![provider, name],
                read_meta,
            )
            .optional()?;
        if let Some(meta) = meta.as_mut() {
            meta.is_default = self.default_connection(provider)?.as_deref() == Some(name);
        }
        Ok(meta)
    }

    /// Decrypt a connection's secrets.
    pub fn read_secrets(&self, key: &MasterKey, provider: &str, name: &str) -> Result<Secrets> {
        let sealed = self
            .db
            .query_row(
                "SELECT nonce, sealed FROM connections WHERE provider = ?1 AND connection = ?2",
                params![provider, name],
                |r| Ok(Sealed { nonce: r.get(0)?, ciphertext: r.get(1)? }),
            )
            .optional()?
            .ok_or_else(|| Error::ConnectionNotFound {
                profile: self.profile.clone(),
                provider: provider.to_string(),
                connection: name.to_string(),
            })?;
        let plain = crypto::open(key, self.row(KIND_SECRETS, provider, name), &sealed)?;
        serde_json::from_slice(&plain).map_err(|_| Error::Tampered {
            profile: self.profile.clone(),
            provider: provider.to_string(),
            connection: name.to_string(),
        })
    }

    /// Insert or replace a connection. The first connection of a provider becomes its default.
    /// Returns the stored metadata (new version, secret fields, default flag).
    pub fn put_connection(
        &mut self,
        key: &MasterKey,
        meta: &ConnectionMeta,
        secrets: &Secrets,
    ) -> Result<ConnectionMeta> {
        self.write_connection(key, meta, secrets, Write::Upsert)
    }

    /// Store a connection unless a usable one (connected, not expired) is already there: `login`
    /// without `--force`. The check and the write are one transaction, so of two concurrent
    /// logins exactly one succeeds and the other gets `ConnectionExists`.
    pub fn create_connection(
        &mut self,
        key: &MasterKey,
        meta: &ConnectionMeta,
        secrets: &Secrets,
    ) -> Result<ConnectionMeta> {
        self.write_connection(key, meta, secrets, Write::New)
    }

    /// Replace a connection only if its row version is still `expected_version` (the refresh
    /// path's compare-and-swap). `Error::Conflict` otherwise.
    pub fn put_connection_if_version(
        &mut self,
        key: &MasterKey,
        meta: &ConnectionMeta,
        secrets: &Secrets,
        expected_version: i64,
    ) -> Result<ConnectionMeta> {
        self.write_connection(key, meta, secrets, Write::IfVersion(expected_version))
    }

    fn write_connection(
        &mut self,
        key: &MasterKey,
        meta: &ConnectionMeta,
        secrets: &Secrets,
        mode: Write,
    ) -> Result<ConnectionMeta> {
        self.writable()?;
        let plain = Zeroizing::new(serde_json::to_vec(secrets).map_err(|_| Error::Crypto("could not encode secrets"))?);
        let sealed = crypto::seal(key, self.row(KIND_SECRETS, &meta.provider, &meta.name), &plain)?;
        let fields = secrets.field_names().join(",");
        let scopes = meta.scopes.as_ref().map(|s| serde_json::to_string(s).unwrap_or_default());
        let metadata = serde_json::to_string(&meta.metadata).unwrap_or_else(|_| "{}".into());
        let now = crate::time::now_micros();
        let path = self.path.clone();
        let tx = self.db.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| classify(&path, e))?;
        let existing: Option<(i64, String, Option<i64>)> = tx
            .query_row(
                "SELECT version, status, expires_at FROM connections WHERE provider = ?1 AND connection = ?2",
                params![meta.provider, meta.name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let current = existing.as_ref().map(|(version, _, _)| *version);
        let usable = existing.as_ref().is_some_and(|(_, status, expires_at)| {
            status == Status::Connected.as_str() && expires_at.is_none_or(|at| at > now / 1_000_000)
        });
        match mode {
            Write::IfVersion(expected) if current != Some(expected) => {
                return Err(Error::Conflict { provider: meta.provider.clone(), connection: meta.name.clone() });
            }
            Write::New if usable => {
                return Err(Error::ConnectionExists {
                    profile: self.profile.clone(),
                    provider: meta.provider.clone(),
                    connection: meta.name.clone(),
                });
            }
            _ => {}
        }
        let version = current.unwrap_or(0) + 1;
        tx.execute(
            "INSERT INTO connections (provider, connection, auth_type, source, status, scopes, base_url, host_url,
                 token_type, expires_at, obtained_at, updated_at, account_id, account_label, metadata, version,
                 last_refresh_at, last_refresh_error, secret_fields, nonce, sealed)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)
             ON CONFLICT(provider, connection) DO UPDATE SET
                 auth_type = excluded.auth_type, source = excluded.source, status = excluded.status,
                 scopes = excluded.scopes, base_url = excluded.base_url, host_url = excluded.host_url,
                 token_type = excluded.token_type, expires_at = excluded.expires_at,
                 obtained_at = excluded.obtained_at, updated_at = excluded.updated_at,
                 account_id = excluded.account_id, account_label = excluded.account_label,
                 metadata = excluded.metadata, version = excluded.version,
                 last_refresh_at = excluded.last_refresh_at, last_refresh_error = excluded.last_refresh_error,
                 secret_fields = excluded.secret_fields, nonce = excluded.nonce, sealed = excluded.sealed",
            params![
                meta.provider,
                meta.name,
                meta.auth_type.as_str(),
                meta.source.as_str(),
                meta.status.as_str(),
                scopes,
                meta.base_url,
                meta.host_url,
                meta.token_type,
                meta.expires_at,
                meta.obtained_at,
                now,
                meta.account_id,
                meta.account_label,
                metadata,
                version,
                meta.last_refresh_at,
                meta.last_refresh_error,
                fields,
                sealed.nonce,
                sealed.ciphertext,
            ],
        )?;
        tx.execute(
            "INSERT INTO provider_state (provider, default_connection, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT(provider) DO UPDATE SET default_connection = excluded.default_connection, updated_at = excluded.updated_at
             WHERE provider_state.default_connection IS NULL",
            params![meta.provider, meta.name, now],
        )?;
        tx.commit()?;
        self.get_connection(&meta.provider, &meta.name)?.ok_or_else(|| Error::ConnectionNotFound {
            profile: self.profile.clone(),
            provider: meta.provider.clone(),
            connection: meta.name.clone(),
        })
    }

    /// Update plain fields only (status, refresh bookkeeping) without touching the secrets.
    pub fn update_status(
        &mut self,
        provider: &str,
        name: &str,
        status: Status,
        refresh_error: Option<&str>,
    ) -> Result<()> {
        self.writable()?;
        let now = crate::time::now_micros();
        self.db.execute(
            "UPDATE connections SET status = ?3, last_refresh_error = ?4, last_refresh_at = ?5, updated_at = ?5,
                 version = version + 1
             WHERE provider = ?1 AND connection = ?2",
            params![provider, name, status.as_str(), refresh_error, now],
        )?;
        Ok(())
    }

    /// Delete a connection. If it was the default, the alphabetically first remaining
    /// connection becomes the default. Returns whether a row was deleted.
    pub fn delete_connection(&mut self, provider: &str, name: &str) -> Result<bool> {
        self.writable()?;
        let path = self.path.clone();
        let tx = self.db.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| classify(&path, e))?;
        let deleted =
            tx.execute("DELETE FROM connections WHERE provider = ?1 AND connection = ?2", params![provider, name])?;
        let default: Option<Option<String>> = tx
            .query_row("SELECT default_connection FROM provider_state WHERE provider = ?1", params![provider], |r| {
                r.get(0)
            })
            .optional()?;
        if default.flatten().as_deref() == Some(name) {
            let next: Option<String> = tx
                .query_row(
                    "SELECT connection FROM connections WHERE provider = ?1 ORDER BY connection LIMIT 1",
                    params![provider],
                    |r| r.get(0),
                )
                .optional()?;
            tx.execute(
                "UPDATE provider_state SET default_connection = ?2, updated_at = ?3 WHERE provider = ?1",
                params![provider, next, crate::time::now_micros()],
            )?;
        }
        tx.commit()?;
        Ok(deleted > 0)
    }

    /// Delete every connection, the default and the client record of a provider.
    /// Returns the names of the deleted connections.
    pub fn delete_provider(&mut self, provider: &str) -> Result<Vec<String>> {
        self.writable()?;
        let path = self.path.clone();
        let tx = self.db.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| classify(&path, e))?;
        let names = {
            let mut stmt = tx.prepare("SELECT connection FROM connections WHERE provider = ?1 ORDER BY connection")?;
            stmt.query_map(params![provider], |r| r.get::<_, String>(0))?.collect::<rusqlite::Result<Vec<_>>>()?
        };
        tx.execute("DELETE FROM connections WHERE provider = ?1", params![provider])?;
        tx.execute("DELETE FROM provider_state WHERE provider = ?1", params![provider])?;
        tx.execute("DELETE FROM provider_clients WHERE provider = ?1", params![provider])?;
        tx.commit()?;
        Ok(names)
    }

    /// The provider's default connection, if one is set.
    pub fn default_connection(&self, provider: &str) -> Result<Option<String>> {
        Ok(self
            .db
            .query_row("SELECT default_connection FROM provider_state WHERE provider = ?1", params![provider], |r| {
                r.get(0)
            })
            .optional()?
            .flatten())
    }

    fn defaults(&self) -> Result<BTreeMap<String, String>> {
        let mut stmt = self.db.prepare_cached(
            "SELECT provider, default_connection FROM provider_state WHERE default_connection IS NOT NULL",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        rows.collect::<rusqlite::Result<BTreeMap<_, _>>>().map_err(Error::from)
    }

    /// Make `name` the provider's default connection; it must exist.
    pub fn set_default(&mut self, provider: &str, name: &str) -> Result<()> {
        self.writable()?;
        if self.get_connection(provider, name)?.is_none() {
            return Err(Error::ConnectionNotFound {
                profile: self.profile.clone(),
                provider: provider.to_string(),
                connection: name.to_string(),
            });
        }
        self.db.execute(
            "INSERT INTO provider_state (provider, default_connection, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT(provider) DO UPDATE SET default_connection = excluded.default_connection, updated_at = excluded.updated_at",
            params![provider, name, crate::time::now_micros()],
        )?;
        Ok(())
    }

    // ---- OAuth clients -----------------------------------------------------------------

    /// Store (or replace) the provider's OAuth client, its secret sealed with `key`.
    pub fn put_client(&mut self, key: &MasterKey, provider: &str, client: &ClientRecord) -> Result<()> {
        self.writable()?;
        let sealed = match &client.client_secret {
            Some(secret) => {
                use secrecy::ExposeSecret;
                Some(crypto::seal(key, self.row(KIND_CLIENT, provider, ""), secret.expose_secret().as_bytes())?)
            }
            None => None,
        };
        let scopes = client.scopes.as_ref().map(|s| serde_json::to_string(s).unwrap_or_default());
        let registration = client.registration.as_ref().map(|r| r.to_string());
        self.db.execute(
            "INSERT INTO provider_clients (provider, client_id, base_url, scopes, registration, nonce, sealed, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT(provider) DO UPDATE SET client_id = excluded.client_id, base_url = excluded.base_url,
                 scopes = excluded.scopes, registration = excluded.registration, nonce = excluded.nonce,
                 sealed = excluded.sealed, updated_at = excluded.updated_at",
            params![
                provider,
                client.client_id,
                client.base_url,
                scopes,
                registration,
                sealed.as_ref().map(|s| s.nonce.clone()),
                sealed.as_ref().map(|s| s.ciphertext.clone()),
                crate::time::now_micros()
            ],
        )?;
        Ok(())
    }

    /// The provider's client record; the secret is decrypted only when `key` is given.
    pub fn get_client(&self, key: Option<&MasterKey>, provider: &str) -> Result<Option<ClientRecord>> {
        type Row = (Option<String>, Option<String>, Option<String>, Option<String>, Option<Vec<u8>>, Option<Vec<u8>>);
        let row: Option<Row> = self
            .db
            .query_row(
                "SELECT client_id, base_url, scopes, registration, nonce, sealed FROM provider_clients WHERE provider = ?1",
                params![provider],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
            )
            .optional()?;
        let Some((client_id, base_url, scopes, registration, nonce, sealed)) = row else { return Ok(None) };
        let client_secret = match (key, nonce, sealed) {
            (Some(key), Some(nonce), Some(ciphertext)) => {
                let plain = crypto::open(key, self.row(KIND_CLIENT, provider, ""), &Sealed { nonce, ciphertext })?;
                let text = String::from_utf8(plain.to_vec()).map_err(|_| Error::Tampered {
                    profile: self.profile.clone(),
                    provider: provider.to_string(),
                    connection: String::new(),
                })?;
                Some(secrecy::SecretString::from(text))
            }
            _ => None,
        };
        Ok(Some(ClientRecord {
            client_id,
            client_secret,
            base_url,
            scopes: scopes.and_then(|s| serde_json::from_str(&s).ok()),
            registration: registration.and_then(|s| serde_json::from_str(&s).ok()),
        }))
    }

    /// Delete the provider's OAuth client; `false` if there was none.
    pub fn delete_client(&mut self, provider: &str) -> Result<bool> {
        self.writable()?;
        Ok(self.db.execute("DELETE FROM provider_clients WHERE provider = ?1", params![provider])? > 0)
    }
}

/// How `write_connection` treats an existing row.
#[derive(Clone, Copy)]
enum Write {
    Upsert,
    IfVersion(i64),
    New,
}

const META_COLUMNS: &str = "provider, connection, auth_type, source, status, scopes, base_url, host_url, token_type,
    expires_at, obtained_at, updated_at, account_id, account_label, metadata, version, last_refresh_at,
    last_refresh_error, secret_fields";

fn read_meta(r: &rusqlite::Row<'_>) -> rusqlite::Result<ConnectionMeta> {
    let text = |i: usize| r.get::<_, String>(i);
    let bad = |i: usize, what: &str| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, format!("unknown {what}").into())
    };
    let scopes: Option<String> = r.get(5)?;
    let metadata: String = r.get(14)?;
    let fields: String = r.get(18)?;
    Ok(ConnectionMeta {
        provider: text(0)?,
        name: text(1)?,
        auth_type: AuthType::parse(&text(2)?).ok_or_else(|| bad(2, "auth type"))?,
        source: SecretSource::parse(&text(3)?).ok_or_else(|| bad(3, "secret source"))?,
        status: Status::parse(&text(4)?).ok_or_else(|| bad(4, "status"))?,
        scopes: scopes.and_then(|s| serde_json::from_str(&s).ok()),
        base_url: r.get(6)?,
        host_url: r.get(7)?,
        token_type: r.get(8)?,
        expires_at: r.get(9)?,
        obtained_at: r.get(10)?,
        updated_at: r.get(11)?,
        account_id: r.get(12)?,
        account_label: r.get(13)?,
        metadata: serde_json::from_str(&metadata).unwrap_or_default(),
        version: r.get(15)?,
        last_refresh_at: r.get(16)?,
        last_refresh_error: r.get(17)?,
        secret_fields: fields.split(',').filter(|f| !f.is_empty()).map(str::to_string).collect(),
        is_default: false,
    })
}

fn encode_sealed(sealed: &Sealed) -> String {
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::STANDARD;
    format!("{}.{}", engine.encode(&sealed.nonce), engine.encode(&sealed.ciphertext))
}

fn decode_sealed(text: &str) -> Option<Sealed> {
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::STANDARD;
    let (nonce, ciphertext) = text.split_once('.')?;
    Some(Sealed { nonce: engine.decode(nonce).ok()?, ciphertext: engine.decode(ciphertext).ok()? })
}

mod open;
#[cfg(test)]
mod tests;
