//! End-to-end: the `keyring` key backend against a private GNOME Keyring — what another process
//! of the user watching the session bus can see, and items written by earlier versions of
//! authsome still opening.

mod common;
#[path = "common/secret_service.rs"]
mod secret_service;

use common::Env;
use secret_service::{SecretService, contains};

const OPENAI_KEY: &str = "sk-TESTKEY0000000000000000001";

fn keychain_id(env: &Env, profile: &str) -> String {
    let text = std::fs::read_to_string(env.file(&format!("keys/{profile}.key"))).unwrap();
    let file: serde_json::Value = serde_json::from_str(&text).unwrap();
    file["keychain_id"].as_str().unwrap().to_string()
}

/// The secret of the item with authsome's attributes, read with libsecret's `secret-tool`.
fn stored_key(service: &SecretService, id: &str) -> String {
    let out = service
        .command("secret-tool")
        .args(["lookup", "application", "authsome", "authsome_key_id", id])
        .output()
        .unwrap();
    assert!(out.status.success(), "secret-tool lookup: {}", String::from_utf8_lossy(&out.stderr));
    let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(key.len(), 44, "a base64 32-byte key");
    key
}

#[test]
fn the_master_key_never_crosses_the_session_bus_in_clear_text() {
    let service = SecretService::start();
    let env = Env::new().set("DBUS_SESSION_BUS_ADDRESS", &service.address);

    // A process of the same user records the session bus while authsome creates a keyring
    // profile (storing the key and reading it back) and later opens it again.
    let monitor = service.monitor();
    env.run_stdin(&["login", "openai", "--stdin"], OPENAI_KEY).ok();
    assert!(env.run(&["export", "openai"]).ok().stdout.contains(OPENAI_KEY));
    let seen = monitor.stop();

    let id = keychain_id(&env, "default");
    let key = stored_key(&service, &id);
    // The recording did capture authsome's calls (the item's attributes are not secret)...
    assert!(contains(&seen, id.as_bytes()), "the monitor saw none of authsome's keychain calls");
    // ...but never the key: the session with the keychain is encrypted.
    assert!(!contains(&seen, key.as_bytes()), "the master key crossed the session bus in clear text");
}

#[test]
fn items_written_by_earlier_versions_keep_opening() {
    let service = SecretService::start();
    let env = Env::new().set("DBUS_SESSION_BUS_ADDRESS", &service.address);
    env.run(&["profile", "create", "work", "--key-backend", "keyring"]).ok();
    env.run_stdin(&["--profile", "work", "login", "openai", "--stdin"], OPENAI_KEY).ok();
    let id = keychain_id(&env, "work");
    let key = stored_key(&service, &id);

    // Replace the item by one as earlier authsome versions wrote it: only the attributes
    // `application` and `authsome_key_id`, and the base64 key as its secret.
    let cleared = service
        .command("secret-tool")
        .args(["clear", "application", "authsome", "authsome_key_id", &id])
        .output()
        .unwrap();
    assert!(cleared.status.success(), "{}", String::from_utf8_lossy(&cleared.stderr));
    let gone = env.run(&["--profile", "work", "export", "openai"]).fails(7);
    assert!(gone.stderr.contains(&format!("holds no authsome key with id {id}")), "{}", gone.stderr);
    assert!(gone.stderr.contains("hint: the key is in the OS keychain, which no longer holds it"), "{}", gone.stderr);
    assert!(!gone.all().contains(OPENAI_KEY));

    let mut store = service
        .command("secret-tool")
        .args(["store", "--label=authsome master key, profile 'work'", "application", "authsome", "authsome_key_id"])
        .arg(&id)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut store.stdin.take().unwrap(), key.as_bytes()).unwrap();
    assert!(store.wait().unwrap().success());
    let items = service.authsome_items();
    assert!(!items.contains("attribute.service") && !items.contains("attribute.username"), "{items}");

    // It opens as it is, and deleting the profile removes it.
    assert!(env.run(&["--profile", "work", "export", "openai"]).ok().stdout.contains(OPENAI_KEY));
    env.run(&["profile", "delete", "work", "--yes"]).ok();
    assert!(!service.authsome_items().contains(&id), "{}", service.authsome_items());
}
