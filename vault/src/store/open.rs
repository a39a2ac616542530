//! Opening a `store.db`: the schema steps (`MIGRATIONS[i]` takes a store from format `i` to
//! `i + 1`), read-write opening with migration, the read-only fallback for a home on a
//! read-only mount, and the mapping of SQLite failures to the vault's errors.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::Store;
use crate::error::{Error, Result};
use crate::fsutil;

/// Schema steps; the store's format version is the number of steps applied.
pub(super) const MIGRATIONS: &[&str] = &[
    // format 1
    r#"
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
    CREATE TABLE connections (
        provider           TEXT NOT NULL,
        connection         TEXT NOT NULL,
        auth_type          TEXT NOT NULL,
        source             TEXT NOT NULL,
        status             TEXT NOT NULL,
        scopes             TEXT,
        base_url           TEXT,
        host_url           TEXT,
        token_type         TEXT,
        expires_at         INTEGER,
        obtained_at        INTEGER NOT NULL,
        updated_at         INTEGER NOT NULL,
        account_id         TEXT,
        account_label      TEXT,
        metadata           TEXT NOT NULL DEFAULT '{}',
        version            INTEGER NOT NULL DEFAULT 1,
        last_refresh_at    INTEGER,
        last_refresh_error TEXT,
        secret_fields      TEXT NOT NULL DEFAULT '',
        nonce              BLOB NOT NULL,
        sealed             BLOB NOT NULL,
        PRIMARY KEY (provider, connection)
    ) WITHOUT ROWID;
    CREATE TABLE provider_state (
        provider           TEXT PRIMARY KEY,
        default_connection TEXT,
        updated_at         INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE provider_clients (
        provider      TEXT PRIMARY KEY,
        client_id     TEXT,
        base_url      TEXT,
        scopes        TEXT,
        registration  TEXT,
        nonce         BLOB,
        sealed        BLOB,
        updated_at    INTEGER NOT NULL
    ) WITHOUT ROWID;
    "#,
];

/// The newest store format this build writes and reads.
pub const STORE_FORMAT: i64 = MIGRATIONS.len() as i64;

impl Store {
    /// Open an existing store (`None` if there is none). Runs pending migrations.
    pub fn open_existing(path: &Path, profile: &str) -> Result<Option<Self>> {
        let _turn = Self::take_turn(path);
        if !path.exists() {
            return Ok(None);
        }
        Self::open_inner(path, profile).map(Some)
    }

    /// Processes opening or creating a store take turns: an exclusive flock on the store's
    /// directory, held while the file is created and its schema written, released when the
    /// returned handle is dropped (or the process ends). So nobody reads a store another process
    /// is still creating. `None` when the directory does not exist yet or cannot be locked.
    pub fn take_turn(path: &Path) -> Option<std::fs::File> {
        path.parent().and_then(|dir| std::fs::File::open(dir).ok()).filter(|dir| dir.lock().is_ok())
    }

    /// Open the store, creating it (0600, in a 0700 directory) if missing.
    pub fn open_or_create(path: &Path, profile: &str) -> Result<Self> {
        if let Some(dir) = path.parent() {
            fsutil::ensure_private_dir(dir)?;
        }
        let _turn = Self::take_turn(path);
        if !path.exists() {
            // Create the file 0600 ourselves: SQLite gives -wal and -shm the main file's mode.
            fsutil::create_private_exclusive(path, b"").or_else(|e| if path.exists() { Ok(()) } else { Err(e) })?;
        }
        Self::open_inner(path, profile)
    }

    /// Open read-write; when the file system or the file refuses writes, open read-only so
    /// reads still work (writes then fail with `StoreReadOnly`).
    fn open_inner(path: &Path, profile: &str) -> Result<Self> {
        // Switching a new store to WAL and creating its schema take locks for which SQLite may
        // answer BUSY at once instead of waiting (several processes creating one store at the
        // same moment, e.g. concurrent first logins): try again for a while before giving up.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut pause = std::time::Duration::from_millis(5);
        loop {
            match Self::open_read_write(path, profile) {
                Err(Error::StoreReadOnly { .. }) => return Self::open_read_only(path, profile),
                Err(Error::Busy) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(std::time::Duration::from_millis(100));
                }
                other => return other,
            }
        }
    }

    fn open_read_write(path: &Path, profile: &str) -> Result<Self> {
        let corrupt = |e: rusqlite::Error| classify(path, e);
        let db = Connection::open(path).map_err(corrupt)?;
        db.busy_timeout(std::time::Duration::from_secs(10)).map_err(corrupt)?;
        // The first statement that reads the file tells a database from garbage; nothing is
        // written before it succeeds.
        let _: i64 = db.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0)).map_err(corrupt)?;
        db.pragma_update(None, "journal_mode", "WAL").map_err(corrupt)?;
        db.pragma_update(None, "synchronous", "NORMAL").map_err(corrupt)?;
        let mut store = Self { db, path: path.to_path_buf(), profile: profile.to_string(), read_only: false };
        store.migrate()?;
        for suffix in ["-wal", "-shm"] {
            let mut side = path.as_os_str().to_owned();
            side.push(suffix);
            fsutil::tighten_file(Path::new(&side))?;
        }
        Ok(store)
    }

    /// A store on a read-only file system (or a read-only file), opened for reads only; a store
    /// whose schema needs an upgrade cannot be used so.
    fn open_read_only(path: &Path, profile: &str) -> Result<Self> {
        let db = connect_read_only(path).map_err(|e| classify(path, e))?;
        db.busy_timeout(std::time::Duration::from_secs(10)).map_err(|e| classify(path, e))?;
        let store = Self { db, path: path.to_path_buf(), profile: profile.to_string(), read_only: true };
        let format = store.format()?;
        if format > STORE_FORMAT {
            return Err(Error::StoreTooNew { path: path.to_path_buf(), found: format, supported: STORE_FORMAT });
        }
        if format < STORE_FORMAT {
            // Its schema needs an upgrade, which is a write.
            return Err(Error::StoreReadOnly { path: path.to_path_buf() });
        }
        Ok(store)
    }

    fn migrate(&mut self) -> Result<()> {
        let current = format_of(&self.db, &self.path)?;
        if current > STORE_FORMAT {
            return Err(Error::StoreTooNew { path: self.path.clone(), found: current, supported: STORE_FORMAT });
        }
        if current == STORE_FORMAT {
            return Ok(());
        }
        let path = self.path.clone();
        let tx = self.db.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| classify(&path, e))?;
        // Re-read inside the write lock: another process may have migrated meanwhile.
        let current = format_of(&tx, &path)?;
        for (step, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
            tx.execute_batch(sql).map_err(|e| classify(&path, e))?;
            let format = step as i64 + 1;
            tx.execute(
                "INSERT INTO meta(key, value) VALUES ('format', ?1) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![format.to_string()],
            )?;
        }
        tx.execute(
            "INSERT INTO meta(key, value) VALUES ('profile', ?1) ON CONFLICT(key) DO NOTHING",
            params![self.profile],
        )?;
        tx.commit()?;
        Ok(())
    }
}

/// Open an SQLite file for reading only, also on a read-only mount: SQLite's `mode=ro`, and
/// when a WAL database cannot get its shared-memory file, `immutable=1`, which is only correct
/// when no write-ahead log holds pages that are not in the main file yet.
pub(crate) fn connect_read_only(path: &Path) -> rusqlite::Result<Connection> {
    use rusqlite::OpenFlags;
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let text = path.to_str().ok_or_else(|| rusqlite::Error::InvalidPath(path.to_path_buf()))?;
    let escaped = text.replace('%', "%25").replace('?', "%3f").replace('#', "%23");
    let probe = |db: Connection| {
        db.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get::<_, i64>(0))?;
        Ok(db)
    };
    match Connection::open_with_flags(format!("file:{escaped}?mode=ro"), flags).and_then(probe) {
        Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::CannotOpen) && !has_pending_wal(path) => {
            Connection::open_with_flags(format!("file:{escaped}?mode=ro&immutable=1"), flags).and_then(probe)
        }
        other => other,
    }
}

pub(super) fn format_of(db: &Connection, path: &Path) -> Result<i64> {
    let has_meta: bool = db
        .query_row("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'", [], |_| Ok(true))
        .optional()
        .map_err(|e| classify(path, e))?
        .unwrap_or(false);
    if !has_meta {
        let tables: i64 = db
            .query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table'", [], |r| r.get(0))
            .map_err(|e| classify(path, e))?;
        if tables > 0 {
            return Err(Error::StoreCorrupt {
                path: path.to_path_buf(),
                reason: "it is an SQLite database, but not one written by authsome".into(),
            });
        }
        return Ok(0);
    }
    let value: Option<String> =
        db.query_row("SELECT value FROM meta WHERE key = 'format'", [], |r| r.get(0)).optional()?;
    value.as_deref().unwrap_or("0").parse().map_err(|_| Error::StoreCorrupt {
        path: path.to_path_buf(),
        reason: "its format version is unreadable".into(),
    })
}

pub(super) fn classify(path: &Path, e: rusqlite::Error) -> Error {
    use rusqlite::ErrorCode;
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => Error::StoreCorrupt {
            path: path.to_path_buf(),
            reason: "the file is not an SQLite database or is damaged".into(),
        },
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => Error::Busy,
        Some(ErrorCode::CannotOpen | ErrorCode::PermissionDenied | ErrorCode::ReadOnly) => {
            Error::StoreReadOnly { path: path.to_path_buf() }
        }
        _ => Error::Sqlite(e),
    }
}

/// Whether `<store>-wal` holds frames (then `immutable=1` would read stale data).
fn has_pending_wal(path: &Path) -> bool {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(Path::new(&wal)).is_ok_and(|m| m.len() > 0)
}
