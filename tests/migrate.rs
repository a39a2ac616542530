//! End-to-end: `authsome migrate` on a home written by the real Python authsome 0.2.4
//! (`tests/fixtures/python-0.2.4-home`, made by `tests/fixtures/make_python_home.py`), including
//! a migration killed at every step and finished by a rerun, the keyring mode, and every error
//! path with its hint.

mod common;
#[path = "common/secret_service.rs"]
mod secret_service;

use std::path::{Path, PathBuf};

use common::Env;
use secret_service::SecretService;

/// The test values the fixture's records hold (not credentials).
const SECRETS: &[&str] = &[
    "sk-TESTKEY00000000000000000001",
    "sk-TESTKEY00000000000000000002",
    "gho_TESTACCESS0000000000000000000001",
    "ghr_TESTREFRESH000000000000000000001",
    "TESTCLIENTSECRET0000000001",
    "LABKEY-lab-123",
];
const ABORT: &str = "AUTHSOME_TEST_MIGRATE_ABORT_AFTER";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/python-0.2.4-home")
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// Every file under `dir`, relative path → bytes, without SQLite's side files.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).unwrap().flatten() {
            let path = entry.path();
            let name = path.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                stack.push(path);
            } else if !name.ends_with("-wal") && !name.ends_with("-shm") {
                out.push((name, std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// Assert two trees hold the same files with the same bytes (naming the first difference).
#[track_caller]
fn assert_same_tree(actual: &Path, expected: &Path, context: &str) {
    let (actual, expected) = (snapshot(actual), snapshot(expected));
    let names = |tree: &[(String, Vec<u8>)]| tree.iter().map(|(name, _)| name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&actual), names(&expected), "{context}: different files");
    for ((name, a), (_, b)) in actual.iter().zip(&expected) {
        assert!(a == b, "{context}: {name} differs");
    }
}

fn python_env() -> Env {
    let env = Env::new();
    copy_tree(&fixture(), env.home());
    env
}

/// What a user can observe of a migrated home: connections, defaults, every secret, the
/// custom provider, the files (names) at the top of the home.
fn observe(env: &Env) -> serde_json::Value {
    let list = env.run(&["list", "--json"]).ok().json();
    let export = env.run(&["export", "--format", "json"]).ok().json();
    let client = env.run(&["inspect", "github"]).ok().json();
    let github = env.run(&["get", "github", "--json"]).ok().json();
    let mut top: Vec<String> = std::fs::read_dir(env.home())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.starts_with("python-backup-") && n != "audit.log")
        .collect();
    top.sort();
    serde_json::json!({
        "list": list, "export": export, "connections": client["connections"], "top": top,
        "github": {"scopes": github["scopes"], "expires_at": github["expires_at"], "account": github["account"]},
    })
}

fn backup_of(env: &Env) -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir(env.home())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with("python-backup-"))
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found.pop().unwrap()
}

#[test]
fn a_python_home_is_imported_in_place() {
    let env = python_env();
    let original = snapshot(env.home());

    // Before: every vault command names the way out.
    let refused = env.run(&["list"]).fails(7);
    assert!(refused.stderr.contains("authsome migrate"), "{}", refused.stderr);

    // A dry run lists what would move and changes nothing.
    let dry = env.run(&["migrate", "--dry-run", "--json"]).ok().json();
    assert_eq!(dry["v"], 1);
    assert_eq!(dry["status"], "dry_run");
    assert_eq!(dry["moved"], serde_json::json!(["config.json", "master.key", "profiles", "providers", "version"]));
    assert_eq!(dry["profiles"][0]["connections"].as_array().unwrap().len(), 4);
    assert_eq!(snapshot(env.home()), original);
    let dry_text = env.run(&["migrate", "--dry-run"]).ok();
    assert!(
        dry_text.stdout.contains("Would move to ") && dry_text.stdout.contains("openai/work"),
        "{}",
        dry_text.stdout
    );
    assert!(dry_text.stderr.contains("Nothing was changed"), "{}", dry_text.stderr);

    let run = env.run(&["migrate"]).ok();
    for secret in SECRETS {
        assert!(!run.all().contains(secret), "{secret} in the output");
    }
    assert!(run.stdout.contains("Imported profile 'default': 4 connection(s)"), "{}", run.stdout);
    assert!(run.stderr.contains("authsome migrate --delete-backup"), "{}", run.stderr);
    assert!(run.stderr.contains("plaintext master.key"), "{}", run.stderr);

    // The backup is the Python home, byte for byte, private, inside AUTHSOME_HOME.
    let backup = backup_of(&env);
    assert_eq!(snapshot(&backup), original);
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777, 0o700);
    }
    assert!(run.stderr.contains(&format!("AUTHSOME_HOME={}", backup.display())), "{}", run.stderr);

    // Every command works on the migrated home, with every secret and default.
    let seen = observe(&env);
    assert_eq!(seen["export"]["OPENAI_API_KEY"], "sk-TESTKEY00000000000000000002", "the default is 'work': {seen}");
    assert_eq!(seen["export"]["LAB_API_KEY"], "LABKEY-lab-123", "{seen}");
    let shown = env.run(&["get", "github", "--field", "access_token", "--show-secret"]).ok();
    assert_eq!(shown.stdout.trim(), "gho_TESTACCESS0000000000000000000001");
    assert_eq!(seen["github"]["account"]["label"], "octo");
    assert_eq!(seen["github"]["scopes"], serde_json::json!(["repo", "read:user"]));
    let openai = seen["list"]["bundled"].as_array().unwrap().iter().find(|p| p["name"] == "openai").unwrap().clone();
    let default: Vec<&str> = openai["connections"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["is_default"] == true)
        .map(|c| c["connection_name"].as_str().unwrap())
        .collect();
    assert_eq!(default, vec!["work"]);
    let lab = &seen["list"]["custom"][0];
    assert_eq!(lab["name"], "lab", "{seen}");
    env.run(&["doctor"]).ok();

    // Idempotent.
    let again = env.run(&["migrate", "--json"]).ok().json();
    assert_eq!(again["status"], "nothing_to_do");
    assert_eq!(again["backups"], serde_json::json!([backup]));
    assert_eq!(observe(&env), seen);

    let deleted = env.run(&["migrate", "--delete-backup", "--json"]).ok().json();
    assert_eq!(deleted, serde_json::json!({"v": 1, "status": "backup_deleted", "deleted": [backup]}));
    assert!(!backup.exists());
    assert_eq!(observe(&env), seen);
}

#[test]
fn a_migration_killed_at_any_step_finishes_on_rerun() {
    let clean = python_env();
    clean.run(&["migrate"]).ok();
    let expected = observe(&clean);

    for step in 1..=7 {
        let env = python_env();
        let killed = env.run_with(&["migrate"], None, &[(ABORT, &step.to_string())]);
        assert_eq!(killed.code, -1, "step {step}: the hook must kill the process: {killed:?}");
        // Half-way, the home is neither format: every command refuses it and says what to do.
        let refused = env.run(&["export"]).fails(7);
        assert!(
            refused.stderr.contains("unfinished import") && refused.stderr.contains("authsome migrate"),
            "{}",
            refused.stderr
        );
        let dry = env.run(&["migrate", "--dry-run", "--json"]).ok().json();
        assert_eq!(dry["status"], "dry_run", "step {step}");

        let resumed = env.run(&["migrate", "--json"]).ok().json();
        assert_eq!(resumed["status"], "migrated", "step {step}");
        assert_eq!(resumed["resumed"], true, "step {step}");
        assert_eq!(observe(&env), expected, "step {step}");
        assert_same_tree(&backup_of(&env), &fixture(), &format!("step {step}"));
        assert!(!env.file(".migrate.json").exists() && !env.file(".migrate-staging").exists(), "step {step}");
    }
}

#[test]
fn keyring_mode_takes_the_key_from_the_secret_service() {
    let service = SecretService::start();
    let env = python_env();
    let master: serde_json::Value = serde_json::from_slice(&std::fs::read(env.file("master.key")).unwrap()).unwrap();
    std::fs::remove_file(env.file("master.key")).unwrap();
    std::fs::write(
        env.file("config.json"),
        r#"{"spec_version": 1, "default_profile": "default", "encryption": {"mode": "keyring"}}"#,
    )
    .unwrap();

    // No keyring reachable: nothing moves, and the hint says where the key is.
    let before = snapshot(env.home());
    let refused = env.run(&["migrate"]).fails(7);
    assert!(refused.stderr.contains("hint:") && refused.stderr.contains("service 'authsome'"), "{}", refused.stderr);
    assert_eq!(snapshot(env.home()), before);

    // What Python's `keyring` stores: service/username attributes, the base64 key as the secret.
    let mut store = service.command("secret-tool");
    store
        .args([
            "store",
            "--label=Password for 'master_key' on 'authsome'",
            "service",
            "authsome",
            "username",
            "master_key",
        ])
        .stdin(std::process::Stdio::piped());
    let mut child = store.spawn().unwrap();
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(master["key"].as_str().unwrap().as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());

    let with_bus = [("DBUS_SESSION_BUS_ADDRESS", service.address.as_str()), ("AUTHSOME_KEY_BACKEND", "file")];
    let run = env.run_with(&["migrate", "--json"], None, &with_bus).ok().json();
    assert_eq!(run["python_keyring"], true);
    assert_eq!(env.run(&["export", "lab"]).ok().stdout, "LAB_API_KEY=LABKEY-lab-123\n");
}

#[test]
fn failures_leave_the_python_home_as_it_was_and_say_what_to_do() {
    // A master.key that is not the one the records were written with.
    let env = python_env();
    std::fs::write(
        env.file("master.key"),
        r#"{"version": 1, "key": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "algorithm": "AES-256-GCM"}"#,
    )
    .unwrap();
    let before = snapshot(env.home());
    let wrong = env.run(&["migrate"]).fails(7);
    assert!(wrong.stderr.contains("does not open 8 of 8 records"), "{}", wrong.stderr);
    assert!(wrong.stderr.contains("hint: master.key is not the key"), "{}", wrong.stderr);
    assert_eq!(snapshot(env.home()), before);
    let json = env.run(&["migrate", "--json"]).fails(7).json();
    assert_eq!(json["error"], "StoreUnavailableError");
    assert!(json["hint"].as_str().unwrap().contains("restore the original"));

    // No master.key at all.
    std::fs::remove_file(env.file("master.key")).unwrap();
    let missing = env.run(&["migrate"]).fails(7);
    assert!(missing.stderr.contains("hint: put back the master.key"), "{}", missing.stderr);

    // The new home's key cannot be made (a passphrase profile, no passphrase): nothing moves.
    let no_pass = python_env();
    let before = snapshot(no_pass.home());
    let refused = no_pass.run_with(&["migrate"], None, &[("AUTHSOME_KEY_BACKEND", "passphrase")]).fails(8);
    assert!(refused.stderr.contains("hint:") && refused.stderr.contains("AUTHSOME_PASSPHRASE"), "{}", refused.stderr);
    assert_eq!(snapshot(no_pass.home()), before);

    // A damaged Python file: named, with what to do, and nothing moves.
    let damaged = python_env();
    std::fs::write(damaged.file("config.json"), "{ not json").unwrap();
    let before = snapshot(damaged.home());
    let bad = damaged.run(&["migrate"]).fails(7);
    assert!(
        bad.stderr.contains("config.json: invalid JSON") && bad.stderr.contains("hint: repair or restore"),
        "{}",
        bad.stderr
    );
    assert_eq!(snapshot(damaged.home()), before);

    // A 0.3+ home is not ours to import.
    let newer = Env::new();
    std::fs::create_dir_all(newer.file("server")).unwrap();
    std::fs::write(newer.file("server/config.json"), r#"{"spec_version": 3}"#).unwrap();
    let unsupported = newer.run(&["migrate"]).fails(7);
    assert!(
        unsupported.stderr.contains("only 0.2.x homes") && unsupported.stderr.contains("hint:"),
        "{}",
        unsupported.stderr
    );

    // Something in the way of the new home: reported, and the rerun finishes once it is gone.
    let blocked = python_env();
    assert_eq!(blocked.run_with(&["migrate"], None, &[(ABORT, "5")]).code, -1);
    std::fs::create_dir(blocked.file("keys")).unwrap();
    let in_place = blocked.run(&["migrate"]).fails(7);
    assert!(
        in_place.stderr.contains("already exists") && in_place.stderr.contains("hint: move"),
        "{}",
        in_place.stderr
    );
    // The backup cannot be deleted while the migration is unfinished.
    let unfinished = blocked.run(&["migrate", "--delete-backup"]).fails(1);
    assert!(unfinished.stderr.contains("hint: run `authsome migrate` to finish it"), "{}", unfinished.stderr);
    std::fs::remove_dir(blocked.file("keys")).unwrap();
    blocked.run(&["migrate"]).ok();
    assert_eq!(blocked.run(&["export", "lab"]).ok().stdout, "LAB_API_KEY=LABKEY-lab-123\n");

    // Nothing to migrate: says so, exit 0, creates nothing.
    let empty = Env::new();
    let home = empty.home().join("absent");
    let run = empty.run_with(&["migrate"], None, &[("AUTHSOME_HOME", home.to_str().unwrap())]).ok();
    assert!(run.stderr.contains("holds no Python authsome home"), "{}", run.stderr);
    assert!(!home.exists());
}

#[test]
fn a_read_only_python_home_is_refused_with_a_hint_and_left_alone() {
    let env = python_env();
    let before = snapshot(env.home());
    let template = env.command(&[]);
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount --bind "$AUTHSOME_HOME" "$AUTHSOME_HOME" && mount -o remount,bind,ro "$AUTHSOME_HOME" && exec "$BIN" migrate"#)
        .env("BIN", common::BIN);
    for (name, value) in template.get_envs() {
        match value {
            Some(value) => cmd.env(name, value),
            None => cmd.env_remove(name),
        };
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "{stderr}");
    assert!(stderr.contains("Read-only file system") && stderr.contains("hint: fix the cause above"), "{stderr}");
    assert_eq!(snapshot(env.home()), before);
}

#[test]
fn a_migration_killed_at_random_moments_converges() {
    let clean = python_env();
    clean.run(&["migrate"]).ok();
    let expected = observe(&clean);
    // SIGKILL after 0, 20, 40, … ms (a migration takes about 300 ms here): wherever it lands, a
    // rerun finishes and yields the same home, and the backup is the Python home.
    for delay in (0..400).step_by(20) {
        let env = python_env();
        let mut child = env
            .command(&["migrate"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay));
        let _ = child.kill();
        child.wait().unwrap();
        env.run(&["migrate"]).ok();
        assert_eq!(observe(&env), expected, "killed after {delay} ms");
        assert_same_tree(&backup_of(&env), &fixture(), &format!("killed after {delay} ms"));
    }
}

#[test]
fn the_migrated_profile_can_use_a_passphrase() {
    let env = python_env();
    let with = [("AUTHSOME_KEY_BACKEND", "passphrase"), ("AUTHSOME_PASSPHRASE", "correct horse")];
    env.run_with(&["migrate"], None, &with).ok();
    let key_file = std::fs::read_to_string(env.file("keys/default.key")).unwrap();
    assert!(key_file.contains("argon2id"), "{key_file}");
    let right = env.run_with(&["export", "lab"], None, &[("AUTHSOME_PASSPHRASE", "correct horse")]).ok();
    assert_eq!(right.stdout, "LAB_API_KEY=LABKEY-lab-123\n");
    env.run_with(&["export", "lab"], None, &[("AUTHSOME_PASSPHRASE", "wrong")]).fails(4);
}

#[test]
fn a_running_python_daemon_stops_the_migration_until_it_is_gone() {
    let env = python_env();
    // A process that looks like the Python daemon (its command line names authsome).
    let mut daemon = std::process::Command::new("python3")
        .args(["-c", "import time; time.sleep(60)", "authsome.server.daemon"])
        .spawn()
        .unwrap();
    // The interpreter shows its final command line once it has started: wait for it.
    let cmdline = format!("/proc/{}/cmdline", daemon.id());
    for _ in 0..200 {
        if std::fs::read(&cmdline).is_ok_and(|c| c.windows(8).any(|w| w == b"authsome")) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    std::fs::create_dir_all(env.file("daemon")).unwrap();
    std::fs::write(env.file("daemon/daemon.pid"), daemon.id().to_string()).unwrap();
    let before = snapshot(env.home());
    let refused = env.run(&["migrate"]).fails(7);
    assert!(refused.stderr.contains(&format!("daemon (pid {}) is running", daemon.id())), "{}", refused.stderr);
    assert!(refused.stderr.contains("hint: stop it first"), "{}", refused.stderr);
    assert_eq!(snapshot(env.home()), before);
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    // A stale pid file does not block.
    env.run(&["migrate"]).ok();
    assert!(backup_of(&env).join("daemon/daemon.pid").is_file());
}

#[test]
fn concurrent_migrations_take_turns() {
    let clean = python_env();
    clean.run(&["migrate"]).ok();
    let expected = observe(&clean);
    let env = python_env();
    let children: Vec<_> = (0..4)
        .map(|_| {
            env.command(&["migrate", "--json"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut statuses: Vec<String> = children
        .into_iter()
        .map(|child| {
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            doc["status"].as_str().unwrap().to_string()
        })
        .collect();
    statuses.sort();
    assert_eq!(statuses, vec!["migrated", "nothing_to_do", "nothing_to_do", "nothing_to_do"]);
    assert_eq!(observe(&env), expected);
    assert_same_tree(&backup_of(&env), &fixture(), "concurrent");
}
