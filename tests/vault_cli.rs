//! End-to-end: storing, reading, exporting and deleting credentials with the real binary, and
//! everything that must go wrong cleanly (bad input, corrupted store, wrong passphrase, a
//! Python authsome home) without losing what is stored or leaking a secret.

mod common;
#[path = "common/secret_service.rs"]
mod secret_service;

use common::{Env, no_secret_on_disk, redact};
use secret_service::SecretService;

const OPENAI_KEY: &str = "sk-TESTKEY0000000000000000001";
const GH_PAT: &str = "ghp_TESTPAT00000000000000000000000000";

#[test]
fn login_list_get_export_round_trip() {
    let env = Env::new();
    let run = env.run_stdin(&["login", "openai", "--stdin"], &format!("{OPENAI_KEY}\n")).ok();
    assert!(run.stderr.contains("Logged in to OpenAI"), "{}", run.stderr);
    assert!(!run.all().contains(OPENAI_KEY));

    let list = env.run(&["list", "--json"]).ok().json();
    let openai = list["bundled"].as_array().unwrap().iter().find(|p| p["name"] == "openai").unwrap();
    assert_eq!(
        openai["connections"],
        serde_json::json!([{"connection_name": "default", "is_default": true, "auth_type": "api_key", "status": "connected"}])
    );
    assert_eq!(list["custom"], serde_json::json!([]));

    let get = env.run(&["get", "openai", "--json"]).ok();
    assert!(!get.stdout.contains(OPENAI_KEY));
    let record = get.json();
    assert_eq!(record["api_key"], "***REDACTED***");
    assert_eq!(record["access_token"], serde_json::Value::Null);
    assert_eq!(record["host_url"], "api.openai.com");
    assert_eq!(record["schema_version"], 2);
    assert_eq!(record["metadata"]["source"], "api_key");

    assert_eq!(env.run(&["get", "openai", "--field", "api_key"]).ok().stdout.trim(), "***REDACTED***");
    let shown = env.run(&["get", "openai", "--field", "api_key", "--show-secret"]).ok();
    assert_eq!(shown.stdout.trim(), OPENAI_KEY);

    assert_eq!(env.run(&["export", "openai"]).ok().stdout, format!("OPENAI_API_KEY={OPENAI_KEY}\n"));
    assert_eq!(env.run(&["export", "--format", "json"]).ok().json(), serde_json::json!({"OPENAI_API_KEY": OPENAI_KEY}));
    let export = env.run(&["export", "openai"]).ok();
    assert!(export.stderr.contains("authsome run"), "export should point at run: {}", export.stderr);

    // The audit log has every event, and never the secret.
    let log = env.run(&["log", "--json"]).ok().json();
    let events: Vec<&str> = log.as_array().unwrap().iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(events, vec!["login", "get", "export", "export", "export"]);
    for entry in log.as_array().unwrap() {
        assert!(entry["timestamp"].as_str().unwrap().ends_with("+00:00"));
    }
    no_secret_on_disk(&env, OPENAI_KEY);
}

#[test]
fn shell_export_evaluates_to_the_exact_value() {
    let env = Env::new();
    // ahrefs has no key pattern: a value full of shell metacharacters must survive eval.
    let nasty = "k3y with 'quotes' \"and\" $(touch pwned) `id`;|&";
    env.login("ahrefs", "default", nasty);
    for format in ["shell", "env"] {
        let script = env.run(&["export", "ahrefs", "--format", format]).ok().stdout;
        let prefix = if format == "env" { "set -a; " } else { "" };
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{prefix}{script}\nprintf '%s' \"$AHREFS_API_KEY\""))
            .current_dir(env.cwd.path())
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), nasty, "format {format}");
        assert!(!env.cwd.path().join("pwned").exists());
    }
    // That value mixes both quote kinds with `$`: no .env spelling is read back alike by bash
    // and dotenv parsers, so it is refused rather than written wrong.
    let refused = env.run(&["export", "ahrefs", "--format", "dotenv"]).fails(2);
    assert!(refused.stderr.contains("--format json"), "{}", refused.stderr);
    assert!(!refused.all().contains("pwned"), "the value is never echoed");
}

#[test]
fn pasted_token_for_an_oauth_provider_and_named_connections() {
    let env = Env::new();
    env.run_stdin(&["login", "github", "--connection", "work", "--stdin"], GH_PAT).ok();
    let record = env.run(&["get", "github", "--json"]).ok().json();
    assert_eq!(record["connection_name"], "work", "the only connection is the default");
    assert_eq!(record["auth_type"], "oauth2");
    assert_eq!(record["access_token"], "***REDACTED***");
    assert_eq!(record["metadata"]["source"], "pasted_token");

    env.run_stdin(&["login", "github", "--connection", "personal", "--stdin"], "ghp_PERSONAL000000000000000000000000")
        .ok();
    let export = env.run(&["export", "github"]).ok().stdout;
    assert!(export.contains(&format!("GH_TOKEN={GH_PAT}")), "{export}");
    assert!(export.contains(&format!("GITHUB_TOKEN={GH_PAT}")), "{export}");

    // Both spellings of set-default; the default connection then exports under plain names.
    env.run(&["set-default", "github", "personal"]).ok();
    assert!(env.run(&["export", "github"]).ok().stdout.contains("GH_TOKEN=ghp_PERSONAL"));
    env.run(&["connection", "set-default", "github", "work"]).ok();
    let all = env.run(&["export"]).ok().stdout;
    assert!(all.contains(&format!("GH_TOKEN={GH_PAT}\n")), "{all}");
    assert!(all.contains("GH_TOKEN_GITHUB_PERSONAL=ghp_PERSONAL"), "{all}");
    env.run(&["set-default", "github", "nope"]).fails(5);
}

#[test]
fn already_logged_in_and_force() {
    let env = Env::new();
    env.login("openai", "default", OPENAI_KEY);
    let again = env.run_stdin(&["login", "openai", "--stdin"], "sk-OTHERKEY000000000000000000").ok();
    assert!(again.stderr.contains("Already logged in to openai (default)"), "{}", again.stderr);
    assert!(env.run(&["export", "openai"]).ok().stdout.contains(OPENAI_KEY));
    env.run_stdin(&["login", "openai", "--stdin", "--force"], "sk-OTHERKEY000000000000000000").ok();
    assert!(env.run(&["export", "openai"]).ok().stdout.contains("sk-OTHERKEY"));
}

#[test]
fn bad_keys_are_refused_and_nothing_is_lost() {
    let env = Env::new();
    env.login("openai", "default", OPENAI_KEY);
    let before = std::fs::read(env.file("profiles/default/store.db")).unwrap();

    let bad = env.run_stdin(&["login", "openai", "--connection", "x", "--stdin"], "not-an-openai-key").fails(4);
    assert!(bad.stderr.contains("nothing was stored"));
    assert!(bad.stderr.contains("hint: OpenAI keys start with sk-"), "{}", bad.stderr);
    assert!(!bad.all().contains("not-an-openai-key"), "the rejected value must not be echoed");

    env.run_stdin(&["login", "openai", "--connection", "x", "--stdin"], "   \n").fails(4);
    env.run_stdin(&["login", "openai", "--connection", "x", "--stdin"], "sk-aaaaaaaaaaaaaaaaaaaaaaaa\nsecond line")
        .fails(4);
    let no_input = env.run(&["login", "openai", "--connection", "x"]).fails(8);
    assert!(no_input.stderr.contains("--stdin"), "{}", no_input.stderr);
    env.run_stdin(&["login", "openai", "--connection", "../x", "--stdin"], OPENAI_KEY).fails(2);

    let list = env.run(&["list", "--json"]).ok().json();
    let openai = list["bundled"].as_array().unwrap().iter().find(|p| p["name"] == "openai").unwrap().clone();
    assert_eq!(openai["connections"].as_array().unwrap().len(), 1);
    assert_eq!(std::fs::read(env.file("profiles/default/store.db")).unwrap().len(), before.len());
    assert!(env.run(&["export", "openai"]).ok().stdout.contains(OPENAI_KEY));
}

#[test]
fn unknown_provider_and_connection_errors() {
    let env = Env::new();
    let run = env.run(&["get", "opnai"]).fails(3);
    assert!(run.stderr.starts_with("error: unknown provider 'opnai'\n"), "{}", run.stderr);
    assert!(run.stderr.contains("hint: did you mean openai?"), "{}", run.stderr);
    let json = env.run(&["--json", "get", "openai"]).fails(5).json();
    assert_eq!(json["error"], "ConnectionNotFoundError");
    assert!(json["hint"].as_str().unwrap().contains("authsome login openai"));
    env.run(&["export", "openai"]).fails(5);
    env.run(&["get", "openai", "--connection", "nope"]).fails(5);
    let usage = env.run(&["login"]).fails(2);
    assert!(usage.stderr.contains("Usage"));
}

#[test]
fn logout_revoke_remove() {
    let env = Env::new();
    env.login("openai", "default", OPENAI_KEY);
    env.login("openai", "work", "sk-WORKKEY00000000000000000000");
    env.run(&["logout", "openai", "--connection", "work"]).ok();
    env.run(&["get", "openai", "--connection", "work"]).fails(5);
    let again = env.run(&["logout", "openai", "--connection", "work"]).ok();
    assert!(again.stderr.contains("nothing to do"));
    env.run(&["logout", "openai"]).ok();
    env.run(&["get", "openai"]).fails(5);

    env.login("anthropic", "a", "sk-ant-TESTKEY000000000000000000");
    env.login("anthropic", "b", "sk-ant-TESTKEY000000000000000001");
    env.login("anthropic", "c", "sk-ant-TESTKEY000000000000000002");
    let text = env.run(&["revoke", "anthropic"]).ok();
    assert!(
        text.stderr.contains("Revoked 3 connection(s) of anthropic."),
        "an API-key provider has no OAuth client: {}",
        text.stderr
    );
    env.login("anthropic", "a", "sk-ant-TESTKEY000000000000000000");
    env.login("anthropic", "b", "sk-ant-TESTKEY000000000000000001");
    let revoked = env.run(&["--json", "revoke", "anthropic"]).ok().json();
    assert_eq!(revoked["connections"], serde_json::json!(["a", "b"]));
    let removed = env.run(&["remove", "anthropic"]).ok();
    assert!(removed.stderr.contains("bundled provider, so its definition stays"), "{}", removed.stderr);
    let log = env.run(&["log", "-n", "3", "--json"]).ok().json();
    let events: Vec<&str> = log.as_array().unwrap().iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(events, vec!["login", "revoke", "remove"]);
}

#[test]
fn profiles_are_isolated_and_switchable() {
    let env = Env::new();
    env.run(&["profile", "create", "work"]).ok();
    env.run(&["profile", "create", "work"]).fails(1);
    env.run_stdin(&["--profile", "work", "login", "openai", "--stdin"], OPENAI_KEY).ok();
    env.run(&["get", "openai"]).fails(5);
    env.run(&["--profile", "work", "get", "openai"]).ok();
    env.run(&["get", "openai", "--profile", "work"]).ok();
    env.run_with(&["get", "openai"], None, &[("AUTHSOME_PROFILE", "work")]).ok();
    env.run(&["--profile", "nope", "list"]).fails(1);
    env.run_stdin(&["--profile", "nope", "login", "openai", "--stdin"], OPENAI_KEY).fails(1);

    env.run(&["profile", "use", "work"]).ok();
    env.run(&["get", "openai"]).ok();
    let profiles = env.run(&["profile", "list", "--json"]).ok().json();
    let names: Vec<&str> =
        profiles["profiles"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["default", "work"]);
    assert_eq!(profiles["profiles"][1]["default"], true);

    env.run(&["profile", "delete", "work"]).fails(8);
    env.run(&["profile", "delete", "work", "--yes"]).ok();
    env.run(&["get", "openai"]).fails(5);
    assert!(!env.file("keys/work.key").exists());
    let log = env.run(&["log", "--json"]).ok().json();
    let events: Vec<&str> = log.as_array().unwrap().iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert!(
        events.contains(&"profile_create") && events.contains(&"profile_use") && events.contains(&"profile_delete")
    );
}

#[test]
fn passphrase_profile_wrong_passphrase_loses_nothing() {
    let env = Env::new();
    let with = |pass: &'static str| [("AUTHSOME_PASSPHRASE", pass)];
    // No kernel-keyring cache here: every command must present the passphrase.
    env.run_with(
        &["profile", "create", "vault", "--key-backend", "passphrase", "--key-cache", "0"],
        None,
        &with("correct horse"),
    )
    .ok();
    let key_file = std::fs::read_to_string(env.file("keys/vault.key")).unwrap();
    assert!(key_file.contains("argon2id"));
    env.run_with(&["--profile", "vault", "login", "openai", "--stdin"], Some(OPENAI_KEY), &with("correct horse")).ok();
    let wrong = env.run_with(&["--profile", "vault", "export", "openai"], None, &with("wrong")).fails(4);
    assert!(wrong.stderr.contains("wrong passphrase"), "{}", wrong.stderr);
    assert!(!wrong.stdout.contains(OPENAI_KEY));
    // Without a passphrase and without a terminal: a clear error, not a hang.
    let locked = env.run(&["--profile", "vault", "export", "openai"]).fails(8);
    assert!(locked.stderr.contains("AUTHSOME_PASSPHRASE"), "{}", locked.stderr);
    // Metadata reads need no passphrase.
    env.run(&["--profile", "vault", "list"]).ok();
    env.run(&["--profile", "vault", "get", "openai"]).ok();
    let right = env.run_with(&["--profile", "vault", "export", "openai"], None, &with("correct horse")).ok();
    assert!(right.stdout.contains(OPENAI_KEY));
    assert_eq!(std::fs::read_to_string(env.file("keys/vault.key")).unwrap(), key_file, "the key file never changes");
}

#[test]
fn corrupted_store_is_reported_and_left_alone() {
    let env = Env::new();
    env.login("openai", "default", OPENAI_KEY);
    let store = env.file("profiles/default/store.db");
    for side in ["store.db-wal", "store.db-shm"] {
        let _ = std::fs::remove_file(env.file(&format!("profiles/default/{side}")));
    }
    let garbage = b"definitely not sqlite; a user's precious bytes ".repeat(200);
    std::fs::write(&store, &garbage).unwrap();
    for args in [&["list"][..], &["get", "openai"], &["export"]] {
        let run = env.run(args).fails(7);
        assert!(run.stderr.contains("not a usable authsome store"), "{}", run.stderr);
        assert!(run.stderr.contains("hint: authsome will not write to it"), "{}", run.stderr);
    }
    env.run_stdin(&["login", "openai", "--connection", "x", "--stdin"], OPENAI_KEY).fails(7);
    assert_eq!(std::fs::read(&store).unwrap(), garbage);
}

#[test]
fn python_authsome_home_is_detected_and_untouched() {
    let env = Env::new();
    std::fs::write(env.file("version"), "2\n").unwrap();
    std::fs::write(env.file("config.json"), r#"{"spec_version": 1, "default_profile": "default"}"#).unwrap();
    // Commands that need no vault work regardless.
    env.run(&["completions", "bash"]).ok();
    env.run(&["doctor", "--sandbox"]).ok();
    let doctor = env.run(&["doctor"]);
    assert_ne!(doctor.code, 7, "{}", doctor.all());
    assert!(doctor.stdout.contains("Python authsome"), "{}", doctor.all());
    let run = env.run(&["list"]).fails(7);
    assert!(run.stderr.contains("written by the Python authsome"), "{}", run.stderr);
    assert!(run.stderr.contains("AUTHSOME_HOME"), "{}", run.stderr);
    env.run_stdin(&["login", "openai", "--stdin"], OPENAI_KEY).fails(7);
    let mut names: Vec<String> =
        std::fs::read_dir(env.home()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, vec!["config.json", "version"]);
}

#[test]
fn home_is_created_lazily_with_private_modes() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let home = env.home().join("nested/authsome");
    let run =
        |args: &[&str], stdin: Option<&str>| env.run_with(args, stdin, &[("AUTHSOME_HOME", home.to_str().unwrap())]);
    run(&["list"], None).ok();
    run(&["whoami"], None).ok();
    assert!(!home.exists(), "read-only commands must not create the home");
    run(&["login", "openai", "--stdin"], Some(OPENAI_KEY)).ok();
    for dir in ["", "keys", "profiles", "profiles/default"] {
        assert_eq!(std::fs::metadata(home.join(dir)).unwrap().permissions().mode() & 0o777, 0o700, "{dir}");
    }
    for file in ["config.json", "audit.log", "keys/default.key", "profiles/default/store.db"] {
        assert_eq!(std::fs::metadata(home.join(file)).unwrap().permissions().mode() & 0o777, 0o600, "{file}");
    }
}

#[test]
fn whoami_and_doctor() {
    let env = Env::new();
    let who = env.run(&["whoami", "--json"]).ok().json();
    assert_eq!(who["active_identity"], "default");
    assert_eq!(who["vault_status"], "not_created");
    env.login("openai", "default", OPENAI_KEY);
    let who = env.run(&["whoami", "--json"]).ok().json();
    assert_eq!(who["connected_providers_count"], 1);
    assert_eq!(who["vault_status"], "ok");
    let text = env.run(&["whoami"]).ok().stdout;
    insta::assert_snapshot!("whoami", redact(&text, &env));

    let doctor = env.run(&["doctor", "--json"]).ok().json();
    assert_eq!(doctor["status"], "ready");
    assert_eq!(doctor["checks"], serde_json::json!({"config": "ok", "providers": "ok", "vault": "ok"}));
    assert_eq!(doctor["issues"], serde_json::json!([]));
    // Whether a keychain answers (the test environment has no session bus) and each profile's
    // key backend.
    assert_eq!(doctor["keychain"], "unavailable");
    assert_eq!(doctor["profiles"], serde_json::json!([{"name": "default", "key_backend": "file"}]));
    let text = env.run(&["doctor"]).ok().stdout;
    assert!(text.contains("keychain: NOT AVAILABLE") && text.contains("profile default: key backend file"), "{text}");
    std::fs::create_dir_all(env.file("providers")).unwrap();
    std::fs::write(env.file("providers/broken.json"), "{").unwrap();
    let doctor = env.run(&["doctor", "--json"]).fails(1).json();
    assert_eq!(doctor["status"], "not_ready");
    assert_eq!(doctor["checks"]["providers"], "error");
    let text = env.run(&["doctor"]).fails(1);
    assert!(text.stdout.contains("providers: ERROR"), "{}", text.stdout);
}

#[test]
fn list_text_snapshot() {
    let env = Env::new();
    env.login("openai", "default", OPENAI_KEY);
    env.login("openai", "work", "sk-WORKKEY00000000000000000000");
    env.run_stdin(&["login", "github", "--stdin"], GH_PAT).ok();
    let out = env.run(&["list"]).ok().stdout;
    let interesting: Vec<&str> = out
        .lines()
        .filter(|l| {
            l.starts_with("Providers:")
                || l.starts_with("Provider ")
                || l.starts_with("---")
                || l.contains("connected ")
        })
        .filter(|l| !l.contains("not_connected"))
        .collect();
    insta::assert_snapshot!("list", interesting.join("\n"));
}

#[test]
fn completions_for_every_shell() {
    let env = Env::new();
    for shell in ["bash", "zsh", "fish"] {
        let out = env.run(&["completions", shell]).ok().stdout;
        assert!(out.contains("authsome") && out.contains("login"), "{shell}");
    }
}

#[test]
fn version_and_help() {
    let env = Env::new();
    assert_eq!(env.run(&["-v"]).ok().stdout.trim(), format!("authsome {}", env!("CARGO_PKG_VERSION")));
    assert_eq!(env.run(&["--version"]).ok().stdout.trim(), format!("authsome {}", env!("CARGO_PKG_VERSION")));
    let help = env.run(&["--help"]).ok().stdout;
    for word in ["login", "list", "export", "scan", "profile", "--profile", "--json"] {
        assert!(help.contains(word), "help lacks {word}");
    }
}

#[test]
fn quiet_hides_notes_but_never_data() {
    let env = Env::new();
    let login = env.run_stdin(&["--quiet", "login", "openai", "--stdin"], OPENAI_KEY).ok();
    assert_eq!(login.stderr, "");
    let export = env.run(&["export", "openai", "--quiet"]).ok();
    assert_eq!(export.stdout, format!("OPENAI_API_KEY={OPENAI_KEY}\n"));
    assert_eq!(export.stderr, "");
    assert!(env.run(&["--quiet", "list"]).ok().stdout.contains("openai"));
}

/// The shape users and scripts see for errors: `error:` / `hint:` on stderr, the JSON document
/// on stdout with --json.
#[test]
fn error_output_snapshots() {
    let env = Env::new();
    let unknown = env.run(&["get", "opnai"]).fails(3);
    let missing = env.run(&["--json", "export", "openai"]).fails(5);
    env.login("openai", "default", OPENAI_KEY);
    for side in ["store.db-wal", "store.db-shm"] {
        let _ = std::fs::remove_file(env.file(&format!("profiles/default/{side}")));
    }
    std::fs::write(env.file("profiles/default/store.db"), b"not a database").unwrap();
    let corrupt = env.run(&["list"]).fails(7);
    insta::assert_snapshot!(
        "errors",
        redact(
            &format!(
                "$ authsome get opnai\n{}\n$ authsome --json export openai\n{}\n$ authsome list   (store.db corrupted)\n{}",
                unknown.stderr, missing.stdout, corrupt.stderr
            ),
            &env
        )
    );
}

fn key_backend(env: &Env, profile: &str) -> String {
    let list = env.run(&["profile", "list", "--json"]).ok().json();
    let entry = list["profiles"].as_array().unwrap().iter().find(|p| p["name"] == profile).cloned().unwrap();
    entry["key_backend"].as_str().unwrap_or("").to_string()
}

fn keychain_id(env: &Env, profile: &str) -> String {
    let text = std::fs::read_to_string(env.file(&format!("keys/{profile}.key"))).unwrap();
    let file: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(file.get("key").is_none(), "a keyring profile's key file holds no key: {text}");
    file["keychain_id"].as_str().unwrap().to_string()
}

#[test]
fn keyring_backend_keeps_the_key_in_the_secret_service() {
    let mut service = SecretService::start();
    let env = Env::new().set("DBUS_SESSION_BUS_ADDRESS", &service.address);

    // A Secret Service answers, unlocked: the first write creates the profile on the keyring.
    env.run_stdin(&["login", "openai", "--stdin"], OPENAI_KEY).ok();
    assert_eq!(key_backend(&env, "default"), "keyring");
    let id = keychain_id(&env, "default");
    // Another client (libsecret's secret-tool) sees the item under our attributes.
    let items = service.authsome_items();
    assert!(items.contains(&format!("attribute.authsome_key_id = {id}")), "{items}");
    assert!(items.contains("profile 'default'"), "{items}");
    no_secret_on_disk(&env, OPENAI_KEY);

    // A fresh process gets the key from the keychain.
    assert!(env.run(&["export", "openai"]).ok().stdout.contains(OPENAI_KEY));
    assert_eq!(env.run(&["whoami", "--json"]).ok().json()["vault_status"], "ok");

    // The keychain goes away: a clear error, nothing lost, no key generated in its place.
    let key_file = std::fs::read(env.file("keys/default.key")).unwrap();
    service.stop_keyring();
    let down = env.run(&["export", "openai"]).fails(7);
    assert!(
        down.stderr.contains("'keyring' backend") && down.stderr.contains("hint: the key is in the OS keychain"),
        "{}",
        down.stderr
    );
    assert!(down.stderr.contains("no Secret Service on the session bus"), "{}", down.stderr);
    assert!(!down.stdout.contains(OPENAI_KEY) && !down.stderr.contains(OPENAI_KEY));
    env.run_stdin(&["login", "github", "--stdin"], GH_PAT).fails(7);
    env.run(&["list"]).ok();
    assert_eq!(std::fs::read(env.file("keys/default.key")).unwrap(), key_file);

    // Back again (a new daemon, the password typed again): everything is there.
    service.start_keyring();
    assert!(env.run(&["export", "openai"]).ok().stdout.contains(OPENAI_KEY));

    // A second keyring profile; deleting it removes its item and only its item.
    env.run(&["profile", "create", "work", "--key-backend", "keyring"]).ok();
    let work = keychain_id(&env, "work");
    assert_ne!(work, id);
    assert!(service.authsome_items().contains(&work));
    env.run_stdin(&["--profile", "work", "login", "github", "--stdin"], GH_PAT).ok();
    env.run(&["profile", "delete", "work", "--yes"]).ok();
    let items = service.authsome_items();
    assert!(!items.contains(&work) && items.contains(&id), "{items}");
    assert!(env.run(&["export", "openai"]).ok().stdout.contains(OPENAI_KEY));

    // Deleting a keyring profile while the keychain is away: the profile goes, and the warning
    // names the item left behind (it is still there when the keychain returns).
    env.run(&["profile", "create", "away", "--key-backend", "keyring"]).ok();
    let away = keychain_id(&env, "away");
    service.stop_keyring();
    let deleted = env.run(&["profile", "delete", "away", "--yes"]).ok();
    assert!(deleted.stderr.contains(&format!("authsome_key_id={away}")), "{}", deleted.stderr);
    assert!(!env.file("keys/away.key").exists());
    env.run(&["--profile", "away", "list"]).fails(1);
    service.start_keyring();
    assert!(service.authsome_items().contains(&away));
}

#[test]
fn keyring_backend_without_a_usable_keychain() {
    // No session bus: asking for the keyring fails with a hint and creates nothing; the default
    // backend is then the key file.
    let env = Env::new();
    let refused = env.run(&["profile", "create", "work", "--key-backend", "keyring"]).fails(7);
    assert!(refused.stderr.contains("D-Bus session bus") && refused.stderr.contains("hint:"), "{}", refused.stderr);
    assert!(!env.file("keys/work.key").exists());
    env.run(&["--profile", "work", "list"]).fails(1);
    env.run_stdin(&["login", "openai", "--stdin"], OPENAI_KEY).ok();
    assert_eq!(key_backend(&env, "default"), "file");

    // A locked keychain is not picked for a new profile, and a keyring profile whose keychain is
    // locked (nobody here to type the password) fails promptly instead of waiting.
    let mut service = SecretService::start();
    let on_keyring = Env::new().set("DBUS_SESSION_BUS_ADDRESS", &service.address);
    on_keyring.run_stdin(&["login", "openai", "--stdin"], OPENAI_KEY).ok();
    assert_eq!(key_backend(&on_keyring, "default"), "keyring");
    service.stop_keyring();
    service.start_locked_keyring();
    let started = std::time::Instant::now();
    let locked = on_keyring.run(&["export", "openai"]).fails(7);
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "took {:?}", started.elapsed());
    // The reason, not the hint (which always mentions unlocking).
    assert!(locked.stderr.contains("prompt to unlock it was dismissed"), "{}", locked.stderr);
    let fresh = Env::new().set("DBUS_SESSION_BUS_ADDRESS", &service.address);
    fresh.run_stdin(&["login", "openai", "--stdin"], OPENAI_KEY).ok();
    assert_eq!(key_backend(&fresh, "default"), "file");
}

/// Run `script` (sh) under `wrapper` (e.g. `keyctl session -`), with the test environment of
/// `env` and `$BIN` naming the authsome binary. Its files land in the working directory.
fn sh_under(env: &Env, wrapper: &[&str], script: &str) -> common::Run {
    let template = env.command(&[]);
    let mut cmd = std::process::Command::new(wrapper[0]);
    cmd.args(&wrapper[1..]).args(["sh", "-c", script]).current_dir(env.cwd.path());
    for (name, value) in template.get_envs() {
        match value {
            Some(value) => cmd.env(name, value),
            None => cmd.env_remove(name),
        };
    }
    cmd.env("BIN", common::BIN);
    let out = cmd.output().unwrap();
    common::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn cwd_file(env: &Env, name: &str) -> String {
    std::fs::read_to_string(env.cwd.path().join(name)).unwrap_or_default()
}

#[test]
fn a_cached_passphrase_key_never_lets_a_wrong_passphrase_read() {
    let env = Env::new();
    let with = |pass: &'static str| [("AUTHSOME_PASSPHRASE", pass)];
    env.run_with(&["profile", "create", "vault", "--key-backend", "passphrase"], None, &with("correct horse")).ok();
    env.run_with(&["--profile", "vault", "login", "openai", "--stdin"], Some(OPENAI_KEY), &with("correct horse")).ok();
    // One login session with its own session keyring (what pam_keyinit gives a real login).
    let script = r#"
        AUTHSOME_PASSPHRASE='correct horse' "$BIN" --profile vault export openai > unlocked.out || exit 10
        "$BIN" --profile vault export openai > cached.out 2> cached.err || exit 11
        AUTHSOME_PASSPHRASE=wrong "$BIN" --profile vault export openai > wrong.out 2> wrong.err; echo $? > wrong.code
        "$BIN" lock 2> lock.err || exit 12
        "$BIN" --profile vault export openai > locked.out 2> locked.err; echo $? > locked.code
    "#;
    let run = sh_under(&env, &["keyctl", "session", "-"], script);
    assert_eq!(run.code, 0, "{run:?}\ncached: {}", cwd_file(&env, "cached.err"));
    // The cache spares the prompt: no passphrase needed right after an unlock.
    assert!(cwd_file(&env, "cached.out").contains(OPENAI_KEY), "the cache did not serve the key");
    // A supplied passphrase is checked all the same: a wrong one reads nothing.
    assert_eq!(cwd_file(&env, "wrong.code").trim(), "4", "{}", cwd_file(&env, "wrong.err"));
    assert!(cwd_file(&env, "wrong.err").contains("wrong passphrase"), "{}", cwd_file(&env, "wrong.err"));
    assert!(!cwd_file(&env, "wrong.out").contains(OPENAI_KEY));
    // `authsome lock` drops the cache.
    assert!(cwd_file(&env, "lock.err").contains("'vault'"), "{}", cwd_file(&env, "lock.err"));
    assert_eq!(cwd_file(&env, "locked.code").trim(), "8", "{}", cwd_file(&env, "locked.err"));
    assert!(cwd_file(&env, "locked.err").contains("AUTHSOME_PASSPHRASE"));
    assert_eq!(
        env.run(&["lock", "--json"]).ok().json(),
        serde_json::json!({"v": 1, "status": "locked", "profiles": ["vault"]})
    );
}

#[test]
fn a_read_only_home_still_serves_reads() {
    let env = Env::new();
    env.login("openai", "default", OPENAI_KEY);
    env.run(&["run", "--", "true"]).ok(); // the profile's CA exists from an earlier run
    // A read-only bind mount of the home in a private mount namespace (root ignores file modes).
    let script = r#"
        mount --bind "$AUTHSOME_HOME" "$AUTHSOME_HOME" && mount -o remount,bind,ro "$AUTHSOME_HOME" || exit 20
        touch "$AUTHSOME_HOME/probe" 2>/dev/null && exit 21
        "$BIN" export openai > export.out 2> export.err; echo $? > export.code
        "$BIN" get openai --json > get.out 2> get.err; echo $? > get.code
        "$BIN" list > list.out 2> list.err; echo $? > list.code
        "$BIN" run -- sh -c 'test -n "$OPENAI_API_KEY"' > run.out 2> run.err; echo $? > run.code
        printf sk-TESTKEY0000000000000000009 | "$BIN" login openai --connection other --stdin > login.out 2> login.err
        echo $? > login.code
    "#;
    let run = sh_under(&env, &["unshare", "--mount", "--propagation", "private"], script);
    assert_eq!(run.code, 0, "{run:?}");
    for command in ["export", "get", "list", "run"] {
        assert_eq!(
            cwd_file(&env, &format!("{command}.code")).trim(),
            "0",
            "{command}: {}",
            cwd_file(&env, &format!("{command}.err"))
        );
    }
    assert_eq!(cwd_file(&env, "export.out"), format!("OPENAI_API_KEY={OPENAI_KEY}\n"));
    // A write says what is wrong, and the hint is true: nothing to move aside.
    let login = cwd_file(&env, "login.err");
    assert_eq!(cwd_file(&env, "login.code").trim(), "7", "{login}");
    assert!(login.contains("is read-only") && login.contains("hint: reading works"), "{login}");
    assert!(!login.contains("move"), "{login}");
    env.run(&["export", "openai"]).ok();
}

#[test]
fn concurrent_first_logins_all_succeed_with_one_key() {
    let env = Env::new();
    let children: Vec<_> = (0..8)
        .map(|i| {
            let mut cmd = env.command(&["login", "openai", "--connection", &format!("c{i}"), "--stdin"]);
            cmd.stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            let mut child = cmd.spawn().unwrap();
            use std::io::Write as _;
            child.stdin.take().unwrap().write_all(format!("sk-TESTKEY000000000000000000{i:02}").as_bytes()).unwrap();
            child
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    for i in 0..8 {
        let out = env.run(&["export", "openai", "--connection", &format!("c{i}")]).ok();
        assert!(out.stdout.contains(&format!("sk-TESTKEY000000000000000000{i:02}")), "{}", out.stdout);
    }
    let keys: Vec<_> = std::fs::read_dir(env.file("keys")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(keys, vec![std::ffi::OsString::from("default.key")]);
}

#[test]
fn an_emptied_store_is_reported_not_read_as_empty() {
    let env = Env::new();
    env.login("openai", "default", OPENAI_KEY);
    for side in ["store.db-wal", "store.db-shm"] {
        let _ = std::fs::remove_file(env.file(&format!("profiles/default/{side}")));
    }
    std::fs::write(env.file("profiles/default/store.db"), b"").unwrap();
    for args in [&["list"][..], &["export"]] {
        let run = env.run(args).fails(7);
        assert!(run.stderr.contains("0 bytes"), "{}", run.stderr);
        assert!(run.stderr.contains("hint:"), "{}", run.stderr);
    }
    env.run_stdin(&["login", "openai", "--connection", "x", "--stdin"], OPENAI_KEY).fails(7);
    assert_eq!(std::fs::metadata(env.file("profiles/default/store.db")).unwrap().len(), 0);
}

/// Concurrent logins to one connection without --force: exactly one stores its key, the others
/// are told the connection exists (before, all said "Logged in" and the last write won).
#[test]
fn concurrent_logins_without_force_store_exactly_one() {
    let env = Env::new();
    env.login("openai", "seed", OPENAI_KEY); // the profile and its key exist: only the race remains
    let outputs: Vec<common::Run> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let env = &env;
                scope.spawn(move || {
                    env.run_stdin(&["login", "openai", "--stdin"], &format!("sk-RACE{i:02}0000000000000000000"))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let stored = outputs.iter().filter(|r| r.stderr.contains("Logged in to")).count();
    let told = outputs.iter().filter(|r| r.stderr.contains("Already logged in")).count();
    assert!(outputs.iter().all(|r| r.code == 0), "{:?}", outputs.iter().map(common::Run::all).collect::<Vec<_>>());
    assert_eq!((stored, told), (1, 7), "{:?}", outputs.iter().map(common::Run::all).collect::<Vec<_>>());
}

/// Issue #11: deleting the default profile says so: which profile commands use now, and how to
/// choose another. Deleting any other profile stays a one-liner.
#[test]
fn deleting_the_default_profile_says_what_is_default_now() {
    let env = Env::new();
    env.run(&["profile", "create", "work"]).ok();
    env.run(&["profile", "create", "home"]).ok();
    env.run(&["profile", "use", "work"]).ok();
    let deleted = env.run(&["profile", "delete", "work", "--yes"]).ok();
    let other = env.run(&["profile", "delete", "home", "--yes"]).ok();
    env.run(&["profile", "create", "x"]).ok();
    env.run(&["profile", "use", "x"]).ok();
    let doc = env.run(&["profile", "delete", "x", "--yes", "--json"]).ok().json();
    assert_eq!(doc["was_default"], true, "{doc}");
    assert_eq!(doc["default_profile"], "default", "{doc}");
    let profiles = env.run(&["profile", "list", "--json"]).ok().json();
    assert_eq!(profiles["profiles"][0]["default"], true, "{profiles}");
    insta::assert_snapshot!(
        "delete_default_profile",
        redact(
            &format!(
                "$ authsome profile delete work --yes   (the default)\n{}\n$ authsome profile delete home --yes\n{}",
                deleted.stderr, other.stderr
            ),
            &env
        )
    );
}

/// Issue #11: every failed login is audited, the API-key ones too (a key that fails the
/// provider's pattern, an empty key), with the reason and never the typed value.
#[test]
fn failed_api_key_logins_are_audited_without_the_key() {
    let env = Env::new();
    let wrong = "not-an-openai-key-SECRETVALUE123";
    env.run_stdin(&["login", "openai", "--stdin"], &format!("{wrong}\n")).fails(4);
    env.run_stdin(&["login", "openai", "--connection", "empty", "--stdin"], "\n").fails(4);
    let log = env.run(&["log", "--json"]).ok();
    assert!(!log.stdout.contains(wrong), "the typed value is in the audit log: {}", log.stdout);
    let events = log.json();
    let failures: Vec<&serde_json::Value> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "login" && e["status"] == "failure" && e["provider"] == "openai")
        .collect();
    assert_eq!(failures.len(), 2, "{events}");
    assert!(failures.iter().all(|e| e["error"].as_str().is_some_and(|m| !m.is_empty())), "{events}");
}
