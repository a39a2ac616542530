use std::path::{Path, PathBuf};

use secrecy::ExposeSecret;

use super::*;
use crate::keys::NoPassphrase;
use crate::vault::Vault;

/// A home written by the real Python authsome 0.2.4 (`tests/fixtures/make_python_home.py`).
fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/python-0.2.4-home")
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Every file under `dir` (relative path → bytes), without SQLite's side files.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(base, &path, out);
            } else if !path.to_string_lossy().ends_with("-wal") && !path.to_string_lossy().ends_with("-shm") {
                out.push((path.strip_prefix(base).unwrap().to_path_buf(), std::fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn python_home() -> (tempfile::TempDir, Home) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("home");
    copy_tree(&fixture(), &root);
    (dir, Home::at(root))
}

fn run(home: &Home) -> Result<Outcome, MigrateError> {
    let options = MigrateOptions { create: CreateOptions::default(), dry_run: false };
    migrate(home, &options, &NoPassphrase, &NoPythonKeyring)
}

fn api_key(vault: &Vault, provider: &str, connection: &str) -> String {
    let secrets = vault.secrets(&NoPassphrase, provider, connection).unwrap();
    secrets.api_key.unwrap().expose_secret().to_string()
}

#[test]
fn a_real_python_home_is_imported_and_kept_as_a_backup() {
    let (_dir, home) = python_home();
    let original = snapshot(home.root());
    let Outcome::Migrated(report) = run(&home).unwrap() else { panic!("not migrated") };
    assert_eq!(report.moved, vec!["config.json", "master.key", "profiles", "providers", "version"]);
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    assert_eq!(report.providers, vec!["lab.json"]);
    assert!(!report.resumed);

    // The backup is the Python home, byte for byte.
    assert_eq!(snapshot(&report.backup), original);
    assert!(report.backup.file_name().unwrap().to_str().unwrap().starts_with(BACKUP_PREFIX));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&report.backup).unwrap().permissions().mode() & 0o777, 0o700);
    }
    assert!(!home.root().join(JOURNAL).exists());
    assert!(!home.root().join(STAGING).exists());
    assert_eq!(home.foreign_format(), None);

    let vault = Vault::open(&home, "default").unwrap();
    let names: Vec<(String, String)> =
        vault.list_connections().unwrap().into_iter().map(|m| (m.provider, m.name)).collect();
    assert_eq!(
        names,
        vec![
            ("github".to_string(), "default".to_string()),
            ("lab".into(), "default".into()),
            ("openai".into(), "default".into()),
            ("openai".into(), "work".into())
        ]
    );
    assert_eq!(vault.default_connection("openai").unwrap().as_deref(), Some("work"));
    assert_eq!(api_key(&vault, "openai", "default"), "sk-TESTKEY00000000000000000001");
    assert_eq!(api_key(&vault, "openai", "work"), "sk-TESTKEY00000000000000000002");
    assert_eq!(api_key(&vault, "lab", "default"), "LABKEY-lab-123");
    let github = vault.require_connection("github", "default").unwrap();
    assert_eq!(github.scopes, Some(vec!["repo".to_string(), "read:user".to_string()]));
    assert_eq!(github.expires_at, Some(1_925_089_445)); // 2031-01-02T03:04:05Z
    assert_eq!(github.account_label.as_deref(), Some("octo"));
    assert_eq!(github.obtained_at, 1_795_604_661_048_190); // 2026-11-25T11:04:21.048190Z
    let secrets = vault.secrets(&NoPassphrase, "github", "default").unwrap();
    assert_eq!(secrets.access_token.unwrap().expose_secret(), "gho_TESTACCESS0000000000000000000001");
    assert_eq!(secrets.refresh_token.unwrap().expose_secret(), "ghr_TESTREFRESH000000000000000000001");
    let client = vault.client_with_secret(&NoPassphrase, "github").unwrap().unwrap();
    assert_eq!(client.client_id.as_deref(), Some("Iv1.testclientid"));
    assert_eq!(client.client_secret.unwrap().expose_secret(), "TESTCLIENTSECRET0000000001");
    assert_eq!(
        std::fs::read(home.providers_dir().join("lab.json")).unwrap(),
        std::fs::read(fixture().join("providers/lab.json")).unwrap()
    );

    // Idempotent: a second run finds nothing to do and changes nothing.
    let after = snapshot(home.root());
    assert_eq!(run(&home).unwrap(), Outcome::NothingToDo { backups: vec![report.backup.clone()] });
    assert_eq!(snapshot(home.root()), after);

    assert_eq!(delete_backups(&home).unwrap(), vec![report.backup.clone()]);
    assert!(!report.backup.exists());
    assert_eq!(api_key(&Vault::open(&home, "default").unwrap(), "openai", "work"), "sk-TESTKEY00000000000000000002");
}

#[test]
fn dry_run_changes_nothing() {
    let (_dir, home) = python_home();
    let before = snapshot(home.root());
    let options = MigrateOptions { dry_run: true, ..Default::default() };
    let Outcome::DryRun(report) = migrate(&home, &options, &NoPassphrase, &NoPythonKeyring).unwrap() else {
        panic!("not a dry run")
    };
    assert_eq!(report.moved.len(), 5);
    assert_eq!(report.profiles[0].connections.len(), 4);
    assert_eq!(report.profiles[0].clients, vec!["github"]);
    assert!(!report.backup.exists());
    assert_eq!(snapshot(home.root()), before);
    let debug = format!("{report:?}");
    assert!(!debug.contains("TESTKEY") && !debug.contains("TESTCLIENTSECRET"), "{debug}");
}

#[test]
fn a_wrong_master_key_stops_before_anything_moves() {
    let (_dir, home) = python_home();
    std::fs::write(
        home.root().join("master.key"),
        r#"{"version": 1, "key": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "algorithm": "AES-256-GCM"}"#,
    )
    .unwrap();
    let before = snapshot(home.root());
    let err = run(&home).unwrap_err();
    assert!(matches!(err, MigrateError::PythonKeyWrong { failed: 8, total: 8, .. }), "{err:?}");
    assert_eq!(snapshot(home.root()), before);

    std::fs::remove_file(home.root().join("master.key")).unwrap();
    assert!(matches!(run(&home).unwrap_err(), MigrateError::PythonKeyUnavailable { keyring: false, .. }));
}

struct FixedKeyring(Option<&'static str>);
impl PythonKeyring for FixedKeyring {
    fn master_key(&self) -> Result<Option<Zeroizing<Vec<u8>>>, KeychainError> {
        Ok(self.0.map(|k| Zeroizing::new(k.as_bytes().to_vec())))
    }
}

#[test]
fn keyring_mode_reads_the_key_from_the_keyring() {
    let (_dir, home) = python_home();
    let key: serde_json::Value =
        serde_json::from_slice(&std::fs::read(home.root().join("master.key")).unwrap()).unwrap();
    let key: &'static str = Box::leak(key["key"].as_str().unwrap().to_string().into_boxed_str());
    std::fs::remove_file(home.root().join("master.key")).unwrap();
    std::fs::write(
        home.root().join("config.json"),
        r#"{"spec_version": 1, "default_profile": "default", "encryption": {"mode": "keyring"}}"#,
    )
    .unwrap();
    let options = MigrateOptions::default();
    let err = migrate(&home, &options, &NoPassphrase, &NoPythonKeyring).unwrap_err();
    assert!(matches!(err, MigrateError::PythonKeyUnavailable { keyring: true, .. }), "{err:?}");
    let err = migrate(&home, &options, &NoPassphrase, &FixedKeyring(None)).unwrap_err();
    assert!(err.to_string().contains("service 'authsome', user 'master_key'"), "{err}");
    let Outcome::Migrated(report) = migrate(&home, &options, &NoPassphrase, &FixedKeyring(Some(key))).unwrap() else {
        panic!()
    };
    assert!(report.python_keyring);
    let vault = Vault::open(&home, "default").unwrap();
    assert_eq!(api_key(&vault, "lab", "default"), "LABKEY-lab-123");
}

#[test]
fn a_half_written_staging_directory_is_rebuilt() {
    let (_dir, home) = python_home();
    let original = snapshot(home.root());
    // What a crash while staging leaves: the Python files in place, a journal at `staging`,
    // partial output.
    let backup = "python-backup-20260101T000000Z";
    let moved = python_entries(home.root()).unwrap();
    write_journal(home.root(), &Journal { v: 1, backup: backup.into(), step: Step::Staging, moved }).unwrap();
    std::fs::create_dir_all(home.root().join(STAGING).join("keys")).unwrap();
    std::fs::write(home.root().join(STAGING).join("keys/default.key"), b"{\"v\":1,\"backend\":\"file\",\"key\":\"x\"}")
        .unwrap();
    assert!(matches!(Vault::open(&home, "default"), Err(Error::ForeignHome { .. })), "blocked while unfinished");
    let Outcome::Migrated(report) = run(&home).unwrap() else { panic!() };
    assert!(report.resumed);
    assert_eq!(report.backup, home.root().join(backup));
    let vault = Vault::open(&home, "default").unwrap();
    assert_eq!(api_key(&vault, "openai", "default"), "sk-TESTKEY00000000000000000001");
    assert_eq!(snapshot(&home.root().join(backup)), original);
}

#[test]
fn a_key_backend_that_fails_leaves_the_python_home_in_place() {
    let (_dir, home) = python_home();
    let before = snapshot(home.root());
    // A passphrase profile with no passphrase to be had: staging fails before anything moves.
    let options = MigrateOptions {
        create: CreateOptions { backend: Some(crate::KeyBackend::Passphrase), key_cache_seconds: 0 },
        dry_run: false,
    };
    let err = migrate(&home, &options, &NoPassphrase, &NoPythonKeyring).unwrap_err();
    assert!(matches!(err, MigrateError::Vault(Error::PassphraseUnavailable(_))), "{err:?}");
    assert_eq!(snapshot(home.root()), before, "the Python home is exactly as it was");
    assert!(!home.root().join(JOURNAL).exists() && !home.root().join(STAGING).exists());
    // With a usable backend the next run migrates.
    let Outcome::Migrated(report) = run(&home).unwrap() else { panic!() };
    assert_eq!(snapshot(&report.backup), before);
}

#[test]
fn nothing_to_do_on_our_own_or_an_empty_home() {
    let dir = tempfile::tempdir().unwrap();
    let home = Home::at(dir.path().join("none"));
    assert_eq!(run(&home).unwrap(), Outcome::NothingToDo { backups: vec![] });
    assert!(!home.root().exists());
    std::fs::create_dir_all(home.root().join("server")).unwrap();
    std::fs::write(home.root().join("server/config.json"), "{}").unwrap();
    assert!(matches!(run(&home).unwrap_err(), MigrateError::Unsupported { .. }));
}

#[test]
fn a_half_written_journal_is_not_taken_for_a_python_file() {
    let (_dir, home) = python_home();
    // What a kill while writing the first journal leaves (fsutil's temp name).
    std::fs::write(home.root().join("..migrate.json.tmp.4242"), b"{\"v\": 1, \"backup\"").unwrap();
    let Outcome::Migrated(report) = run(&home).unwrap() else { panic!() };
    assert_eq!(snapshot(&report.backup), snapshot(&fixture()));
    assert!(!home.root().join("..migrate.json.tmp.4242").exists());
}
