use secrecy::{ExposeSecret, SecretString};

use super::open::MIGRATIONS;
use super::*;

fn fresh() -> (tempfile::TempDir, Store, MasterKey) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_or_create(&dir.path().join("p/store.db"), "default").unwrap();
    let key = MasterKey::generate().unwrap();
    store.verify_key(&key).unwrap();
    (dir, store, key)
}

fn api_key(value: &str) -> Secrets {
    Secrets { api_key: Some(SecretString::from(value)), ..Secrets::default() }
}

#[test]
fn put_get_and_secrets_never_in_plain_bytes() {
    let (dir, mut store, key) = fresh();
    let meta = ConnectionMeta::new("openai", "default", AuthType::ApiKey, SecretSource::ApiKey);
    let stored = store.put_connection(&key, &meta, &api_key("sk-VERYSECRETVALUE123456789")).unwrap();
    assert_eq!(stored.version, 1);
    assert!(stored.is_default);
    assert_eq!(stored.secret_fields, vec!["api_key"]);
    let secrets = store.read_secrets(&key, "openai", "default").unwrap();
    assert_eq!(secrets.api_key.unwrap().expose_secret(), "sk-VERYSECRETVALUE123456789");
    drop(store);
    for entry in std::fs::read_dir(dir.path().join("p")).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(!bytes.windows(12).any(|w| w == b"VERYSECRETVA"), "secret found in plain bytes");
    }
}

#[test]
fn files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, mut store, key) = fresh();
    store
        .put_connection(
            &key,
            &ConnectionMeta::new("a", "default", AuthType::ApiKey, SecretSource::ApiKey),
            &api_key("k"),
        )
        .unwrap();
    for entry in std::fs::read_dir(dir.path().join("p")).unwrap() {
        let path = entry.unwrap().path();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", path.display());
    }
    let mode = std::fs::metadata(dir.path().join("p")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
}

#[test]
fn defaults_follow_connections() {
    let (_dir, mut store, key) = fresh();
    for name in ["work", "default", "personal"] {
        store
            .put_connection(
                &key,
                &ConnectionMeta::new("github", name, AuthType::OAuth2, SecretSource::PastedToken),
                &api_key(name),
            )
            .unwrap();
    }
    assert_eq!(store.default_connection("github").unwrap().as_deref(), Some("work"));
    store.set_default("github", "personal").unwrap();
    let list = store.list_connections().unwrap();
    assert_eq!(list.iter().filter(|c| c.is_default).map(|c| c.name.as_str()).collect::<Vec<_>>(), vec!["personal"]);
    assert!(matches!(store.set_default("github", "nope"), Err(Error::ConnectionNotFound { .. })));
    assert!(store.delete_connection("github", "personal").unwrap());
    assert_eq!(store.default_connection("github").unwrap().as_deref(), Some("default"));
    assert!(!store.delete_connection("github", "personal").unwrap());
    assert_eq!(store.delete_provider("github").unwrap(), vec!["default", "work"]);
    assert!(store.list_connections().unwrap().is_empty());
    assert_eq!(store.default_connection("github").unwrap(), None);
}

#[test]
fn compare_and_swap_on_version() {
    let (_dir, mut store, key) = fresh();
    let meta = ConnectionMeta::new("lab", "default", AuthType::OAuth2, SecretSource::OAuth);
    let v1 = store.put_connection(&key, &meta, &api_key("a")).unwrap();
    let v2 = store.put_connection_if_version(&key, &v1, &api_key("b"), v1.version).unwrap();
    assert_eq!(v2.version, v1.version + 1);
    assert!(matches!(
        store.put_connection_if_version(&key, &v1, &api_key("c"), v1.version),
        Err(Error::Conflict { .. })
    ));
    assert_eq!(store.read_secrets(&key, "lab", "default").unwrap().api_key.unwrap().expose_secret(), "b");
}

#[test]
fn swapped_rows_fail_to_open() {
    let (_dir, mut store, key) = fresh();
    for (name, secret) in [("a", "secret-a"), ("b", "secret-b")] {
        store
            .put_connection(
                &key,
                &ConnectionMeta::new("p", name, AuthType::ApiKey, SecretSource::ApiKey),
                &api_key(secret),
            )
            .unwrap();
    }
    // An attacker with write access copies a's ciphertext into b's row.
    store
        .db
        .execute_batch(
            "UPDATE connections SET nonce = (SELECT nonce FROM connections WHERE connection = 'a'),
                                    sealed = (SELECT sealed FROM connections WHERE connection = 'a')
             WHERE connection = 'b'",
        )
        .unwrap();
    assert!(matches!(store.read_secrets(&key, "p", "b"), Err(Error::Tampered { .. })));
    assert_eq!(store.read_secrets(&key, "p", "a").unwrap().api_key.unwrap().expose_secret(), "secret-a");
}

#[test]
fn wrong_key_is_refused() {
    let (_dir, store, _key) = fresh();
    let other = MasterKey::generate().unwrap();
    assert!(matches!(store.verify_key(&other), Err(Error::KeyMismatch(_))));
}

#[test]
fn reopen_keeps_data() {
    let (dir, mut store, key) = fresh();
    store
        .put_connection(
            &key,
            &ConnectionMeta::new("a", "default", AuthType::ApiKey, SecretSource::ApiKey),
            &api_key("k"),
        )
        .unwrap();
    drop(store);
    let store = Store::open_existing(&dir.path().join("p/store.db"), "default").unwrap().unwrap();
    assert_eq!(store.format().unwrap(), STORE_FORMAT);
    store.verify_key(&key).unwrap();
    assert_eq!(store.list_connections().unwrap().len(), 1);
}

#[test]
fn missing_store_is_not_created_by_reads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p/store.db");
    assert!(Store::open_existing(&path, "default").unwrap().is_none());
    assert!(!path.exists());
}

#[test]
fn garbage_file_is_reported_and_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let garbage = b"this is not sqlite at all, but it is somebody's data".repeat(100);
    std::fs::write(&path, &garbage).unwrap();
    assert!(matches!(Store::open_existing(&path, "default"), Err(Error::StoreCorrupt { .. })));
    assert!(matches!(Store::open_or_create(&path, "default"), Err(Error::StoreCorrupt { .. })));
    assert_eq!(std::fs::read(&path).unwrap(), garbage);
}

#[test]
fn foreign_sqlite_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    Connection::open(&path).unwrap().execute_batch("CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT)").unwrap();
    assert!(matches!(Store::open_existing(&path, "default"), Err(Error::StoreCorrupt { .. })));
}

#[test]
fn newer_format_is_refused() {
    let (dir, store, _key) = fresh();
    store.db.execute("UPDATE meta SET value = '99' WHERE key = 'format'", []).unwrap();
    drop(store);
    let err = Store::open_existing(&dir.path().join("p/store.db"), "default").unwrap_err();
    assert!(matches!(err, Error::StoreTooNew { found: 99, .. }), "{err:?}");
}

/// A store at format 1 written by hand (as an older build would have) opens and migrates to
/// the current format with its rows intact.
#[test]
fn format_1_store_opens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let db = Connection::open(&path).unwrap();
    db.execute_batch(MIGRATIONS[0]).unwrap();
    db.execute_batch("INSERT INTO meta VALUES ('format', '1'), ('profile', 'default')").unwrap();
    drop(db);
    let mut store = Store::open_existing(&path, "default").unwrap().unwrap();
    assert_eq!(store.format().unwrap(), STORE_FORMAT);
    let key = MasterKey::generate().unwrap();
    store.verify_key(&key).unwrap();
    store
        .put_connection(
            &key,
            &ConnectionMeta::new("a", "default", AuthType::ApiKey, SecretSource::ApiKey),
            &api_key("k"),
        )
        .unwrap();
}

#[test]
fn client_records() {
    let (_dir, mut store, key) = fresh();
    let client = ClientRecord {
        client_id: Some("cid".into()),
        client_secret: Some(SecretString::from("csecret")),
        scopes: Some(vec!["repo".into()]),
        ..ClientRecord::default()
    };
    store.put_client(&key, "github", &client).unwrap();
    let without_key = store.get_client(None, "github").unwrap().unwrap();
    assert_eq!(without_key.client_id.as_deref(), Some("cid"));
    assert!(without_key.client_secret.is_none());
    let with_key = store.get_client(Some(&key), "github").unwrap().unwrap();
    assert_eq!(with_key.client_secret.unwrap().expose_secret(), "csecret");
    assert_eq!(with_key.scopes.unwrap(), vec!["repo"]);
    assert!(store.delete_client("github").unwrap());
    assert!(store.get_client(None, "github").unwrap().is_none());
}

#[test]
fn concurrent_logins_without_force_store_exactly_one() {
    let (dir, _store, key) = fresh();
    let path = dir.path().join("p/store.db");
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
    let results: Vec<Result<ConnectionMeta>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let (barrier, path, key) = (barrier.clone(), path.clone(), key.clone());
                scope.spawn(move || {
                    let mut store = Store::open_existing(&path, "default").unwrap().unwrap();
                    let meta = ConnectionMeta::new("openai", "default", AuthType::ApiKey, SecretSource::ApiKey);
                    barrier.wait();
                    store.create_connection(&key, &meta, &api_key(&format!("sk-{i}")))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let won = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(won, 1, "{results:?}");
    assert!(results.iter().filter(|r| r.is_err()).all(|r| matches!(r, Err(Error::ConnectionExists { .. }))));
    let store = Store::open_existing(&path, "default").unwrap().unwrap();
    assert_eq!(store.get_connection("openai", "default").unwrap().unwrap().version, 1, "written once");
}

#[test]
fn create_connection_replaces_only_what_is_not_usable() {
    let (_dir, mut store, key) = fresh();
    let mut meta = ConnectionMeta::new("openai", "default", AuthType::ApiKey, SecretSource::ApiKey);
    meta.expires_at = Some(1);
    store.create_connection(&key, &meta, &api_key("old")).unwrap();
    meta.expires_at = None;
    store.create_connection(&key, &meta, &api_key("new")).unwrap();
    assert!(matches!(store.create_connection(&key, &meta, &api_key("x")), Err(Error::ConnectionExists { .. })));
    let secrets = store.read_secrets(&key, "openai", "default").unwrap();
    assert_eq!(secrets.api_key.unwrap().expose_secret(), "new");
}
