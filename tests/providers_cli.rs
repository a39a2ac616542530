//! End-to-end: the provider catalog (`list`, `inspect`), custom providers (`register`, in our
//! format and the Python authsome's), and `scan` of `.env` files and the environment.

mod common;

use common::Env;

fn write(env: &Env, name: &str, text: &str) -> String {
    let path = env.cwd.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

const LEGACY_LAB: &str = r#"{
  "schema_version": 1, "name": "lab", "display_name": "Lab API", "auth_type": "api_key", "flow": "api_key",
  "host_url": "https://api.lab.example.com/v2",
  "api_key": {"header_name": "X-Lab-Key", "header_prefix": null, "key_pattern": "^LABKEY-[a-z0-9-]+$", "key_pattern_hint": "Lab keys start with LABKEY-"},
  "export": {"env": {"api_key": "LAB_API_KEY"}},
  "docs": "https://lab.example.com/docs"
}"#;

#[test]
fn list_json_has_every_bundled_provider() {
    let env = Env::new();
    let list = env.run(&["list", "--json"]).ok().json();
    let bundled = list["bundled"].as_array().unwrap();
    assert!(bundled.len() >= 47, "{}", bundled.len());
    for entry in bundled {
        assert_eq!(entry["source"], "bundled");
        assert_eq!(entry["connections"], serde_json::json!([]));
        for key in ["name", "display_name", "auth_type"] {
            assert!(entry[key].is_string(), "{key} in {entry}");
        }
    }
    let text = env.run(&["list"]).ok().stdout;
    assert!(text.starts_with(&format!("Providers: {} total, 0 connected\n", bundled.len())), "{text}");
}

#[test]
fn register_a_python_authsome_provider_file() {
    let env = Env::new();
    let file = write(&env, "lab.json", LEGACY_LAB);
    let refused = env.run(&["register", &file]).fails(8);
    assert!(refused.stderr.contains("--yes"), "{}", refused.stderr);
    let run = env.run(&["register", &file, "--yes"]).ok();
    assert!(run.stderr.contains("converted from a Python authsome provider file"), "{}", run.stderr);
    assert!(run.stderr.contains("header X-Lab-Key: <secret>"), "the explicit null prefix must survive: {}", run.stderr);

    let inspect = env.run(&["inspect", "lab"]).ok().json();
    assert_eq!(inspect["source"], "custom");
    assert_eq!(inspect["hosts"], serde_json::json!(["api.lab.example.com"]));
    assert_eq!(inspect["path_prefix"], "/v2");
    assert_eq!(inspect["inject"], serde_json::json!({"type": "header", "name": "X-Lab-Key", "value": "{secret}"}));

    env.run_stdin(&["login", "lab", "--stdin"], "LABKEY-lab-123").ok();
    let bad = env.run_stdin(&["login", "lab", "--connection", "x", "--stdin"], "nope").fails(4);
    assert!(bad.stderr.contains("Lab keys start with LABKEY-"));
    assert_eq!(env.run(&["export", "lab"]).ok().stdout, "LAB_API_KEY=LABKEY-lab-123\n");
    let list = env.run(&["list", "--json"]).ok().json();
    assert_eq!(list["custom"][0]["name"], "lab");
    assert_eq!(list["custom"][0]["connections"][0]["status"], "connected");

    let dup = env.run(&["register", &file, "--yes"]).fails(1);
    assert!(dup.stderr.contains("already registered") && dup.stderr.contains("--force"), "{}", dup.stderr);
    env.run(&["register", &file, "--yes", "--force"]).ok();

    let removed = env.run(&["remove", "lab"]).ok();
    assert!(removed.stderr.contains("definition deleted"), "{}", removed.stderr);
    env.run(&["inspect", "lab"]).fails(3);
    let log = env.run(&["log", "--json"]).ok().json();
    assert!(log.as_array().unwrap().iter().any(|e| e["event"] == "register" && e["provider"] == "lab"));
}

#[test]
fn register_our_format_and_reject_unsafe_definitions() {
    let env = Env::new();
    let ours = r#"{"schema_version": 1, "name": "acme", "display_name": "Acme", "auth_type": "api_key", "flow": "api_key",
        "hosts": ["api.acme.dev", "*.acme-cdn.dev"], "inject": {"type": "basic", "username": "{secret}", "password": ""},
        "env": {"api_key": ["ACME_KEY"]}}"#;
    env.run(&["register", &write(&env, "acme.json", ours), "--yes"]).ok();
    assert_eq!(
        env.run(&["inspect", "acme"]).ok().json()["hosts"],
        serde_json::json!(["api.acme.dev", "*.acme-cdn.dev"])
    );

    for (name, body, needle) in [
        ("http", LEGACY_LAB.replace("https://api.lab", "http://api.lab").replace("\"lab\"", "\"lab1\""), None),
        (
            "loopback",
            r#"{"name": "lo", "auth_type": "oauth2", "host_url": "api.lo.dev", "oauth": {"token_url": "https://localhost/token", "authorization_url": "https://lo.dev/a"}}"#.to_string(),
            Some("loopback"),
        ),
        (
            "ip",
            r#"{"name": "ip", "auth_type": "oauth2", "host_url": "api.ip.dev", "oauth": {"token_url": "https://10.0.0.1/token", "authorization_url": "https://ip.dev/a"}}"#.to_string(),
            Some("bare IP"),
        ),
        ("regex", r#"{"name": "g", "host_url": "regex:.*googleapis.*"}"#.to_string(), Some("anchored")),
        ("badname", r#"{"name": "../evil", "host_url": "api.evil.dev"}"#.to_string(), Some("provider")),
        ("json", "{ nope".to_string(), Some("not valid JSON")),
    ] {
        let file = write(&env, &format!("{name}.json"), &body);
        let run = env.run(&["register", &file, "--yes"]).fails(1);
        if let Some(needle) = needle {
            assert!(run.stderr.contains(needle), "{name}: {}", run.stderr);
        }
    }
    let custom = env.run(&["list", "--json"]).ok().json()["custom"].as_array().unwrap().len();
    assert_eq!(custom, 1, "only acme was registered");
}

#[test]
fn scan_reports_and_imports() {
    let env = Env::new();
    env.login("anthropic", "default", "sk-ant-STORED0000000000000000000");
    write(
        &env,
        ".env",
        "# keys\nexport OPENAI_API_KEY=\"sk-FROMDOTENV000000000000000001\"\nANTHROPIC_API_KEY=sk-ant-DIFFERENT00000000000000000\nthis line is broken\nGROQ_API_KEY='gsk_fromdotenv'\n",
    );
    write(&env, ".env.local", "GROQ_API_KEY=gsk_fromlocal\nOPENAI_API_KEY=not-a-valid-openai-key\n");
    let scan = env.run_with(&["scan", "--json"], None, &[("MISTRAL_API_KEY", "mistral-from-env")]).ok();
    assert!(scan.stderr.contains(".env:4: not KEY=VALUE; line skipped"), "{}", scan.stderr);
    let doc = scan.json();
    assert_eq!(doc["v"], 1);
    assert_eq!(doc["import"], false);
    let status = |p: &str| {
        doc["results"].as_array().unwrap().iter().find(|r| r["provider"] == p).unwrap_or_else(|| panic!("{p}")).clone()
    };
    assert_eq!(status("openai")["status"], "invalid_format", ".env.local wins and is not a valid key");
    assert_eq!(status("anthropic")["status"], "env_and_authsome_different");
    assert_eq!(status("groq")["status"], "env_only");
    assert!(status("groq")["source"].as_str().unwrap().ends_with(".env.local"));
    assert_eq!(status("mistral")["source"], "environment");
    assert_eq!(status("ahrefs")["status"], "both_missing");
    assert!(!scan.stdout.contains("gsk_fromlocal"), "scan must not print values");

    let imported =
        env.run_with(&["scan", "--import", "--json"], None, &[("MISTRAL_API_KEY", "mistral-from-env")]).ok().json();
    assert_eq!(imported["imported_count"], 2);
    let status = |p: &str| {
        imported["results"].as_array().unwrap().iter().find(|r| r["provider"] == p).unwrap()["status"].clone()
    };
    assert_eq!(status("groq"), "imported");
    assert_eq!(status("mistral"), "imported");
    assert_eq!(status("anthropic"), "skipped_different");
    assert_eq!(status("openai"), "invalid_format");
    assert_eq!(env.run(&["export", "groq"]).ok().stdout, "GROQ_API_KEY=gsk_fromlocal\n");
    assert!(env.run(&["export", "anthropic"]).ok().stdout.contains("STORED"), "a different stored key is kept");
    let record = env.run(&["get", "groq", "--json"]).ok().json();
    assert_eq!(record["metadata"]["source"], "imported");

    let forced = env.run(&["scan", "--import", "--force", "--no-env", "--json"]).ok().json();
    assert!(
        forced["results"].as_array().unwrap().iter().any(|r| r["provider"] == "anthropic" && r["status"] == "imported")
    );
    assert!(env.run(&["export", "anthropic"]).ok().stdout.contains("DIFFERENT"));
    let again = env.run(&["scan", "--import", "--no-env", "--json"]).ok().json();
    assert_eq!(again["imported_count"], 0);
    let log = env.run(&["log", "--json"]).ok().json();
    assert!(log.as_array().unwrap().iter().filter(|e| e["event"] == "import").count() >= 3);
}

#[test]
fn scan_of_a_missing_path_and_text_output() {
    let env = Env::new();
    env.run(&["scan", "/definitely/not/here"]).fails(2);
    write(&env, ".env", "GROQ_API_KEY=gsk_x\n");
    let text = env.run(&["scan", "--no-env"]).ok();
    assert!(text.stdout.contains("groq") && text.stdout.contains("env_only"), "{}", text.stdout);
    assert!(text.stderr.contains("authsome scan --import"), "{}", text.stderr);
}

/// The bundled openai definition with `extra` hosts added, as a hostile process would write it.
fn openai_with_hosts(env: &Env, extra: &[&str]) -> String {
    let mut doc = env.run(&["inspect", "openai"]).ok().json();
    for key in ["source", "connections", "path"] {
        doc.as_object_mut().unwrap().remove(key);
    }
    let hosts = doc["hosts"].as_array_mut().unwrap();
    hosts.extend(extra.iter().map(|h| serde_json::json!(h)));
    serde_json::to_string_pretty(&doc).unwrap()
}

fn bundled_openai_hosts(env: &Env) -> serde_json::Value {
    env.run(&["inspect", "openai"]).ok().json()["hosts"].clone()
}

/// A process that can write `providers/` drops `openai.json` claiming `*.evil.com`: the real
/// key must keep going only to OpenAI's hosts until the user confirms the file.
#[test]
fn a_shadowing_file_dropped_behind_authsomes_back_gets_no_extra_hosts() {
    let env = Env::new();
    let bundled = bundled_openai_hosts(&env);
    let dropped = env.file("providers/openai.json");
    std::fs::create_dir_all(env.file("providers")).unwrap();
    std::fs::write(&dropped, openai_with_hosts(&env, &["*.evil.com"])).unwrap();

    let inspect = env.run(&["inspect", "openai"]).ok();
    assert_eq!(inspect.json()["source"], "custom");
    assert_eq!(inspect.json()["hosts"], bundled, "an unconfirmed file must not add hosts");
    assert!(inspect.stderr.contains("*.evil.com"), "{}", inspect.stderr);
    assert!(inspect.stderr.contains("not added with `authsome register`"), "{}", inspect.stderr);
    assert!(inspect.stderr.contains(&format!("authsome register {}", dropped.display())), "{}", inspect.stderr);
    let doctor = env.run(&["doctor", "--json"]).fails(1).json();
    assert_eq!(doctor["checks"]["providers"], "error");

    // The user confirms it (no --force needed for the file already in place).
    let confirmed = env.run(&["register", dropped.to_str().unwrap(), "--yes"]).ok();
    assert!(confirmed.stderr.contains("Adds hosts: *.evil.com"), "{}", confirmed.stderr);
    let inspect = env.run(&["inspect", "openai"]).ok();
    assert!(inspect.json()["hosts"].as_array().unwrap().contains(&serde_json::json!("*.evil.com")));
    assert!(!inspect.stderr.contains("warning"), "{}", inspect.stderr);

    // Changed behind authsome's back: the confirmation no longer holds.
    std::fs::write(&dropped, openai_with_hosts(&env, &["*.evil.com", "*.worse.com"])).unwrap();
    let inspect = env.run(&["inspect", "openai"]).ok();
    assert_eq!(inspect.json()["hosts"], bundled);
    assert!(inspect.stderr.contains("changed after `authsome register` confirmed it"), "{}", inspect.stderr);
}

#[test]
fn register_shows_and_asks_about_hosts_beyond_the_bundled_ones() {
    let env = Env::new();
    let file = write(&env, "openai.json", &openai_with_hosts(&env, &["api.my-gateway.dev"]));
    let refused = env.run(&["register", &file]).fails(8);
    assert!(refused.stderr.contains("Adds hosts: api.my-gateway.dev (beyond the bundled"), "{}", refused.stderr);
    assert!(refused.stderr.contains("--yes"), "{}", refused.stderr);
    assert!(!env.file("providers/openai.json").exists(), "nothing written without a confirmation");
    env.run(&["register", &file, "--yes"]).ok();
    let hosts = bundled_openai_hosts(&env);
    assert!(hosts.as_array().unwrap().contains(&serde_json::json!("api.my-gateway.dev")), "{hosts}");
    use std::os::unix::fs::PermissionsExt;
    let ledger = std::fs::metadata(env.file("provider-ledger.json")).unwrap();
    assert_eq!(ledger.permissions().mode() & 0o777, 0o600);
    let log = env.run(&["log", "--json"]).ok().json();
    let event = log.as_array().unwrap().iter().find(|e| e["event"] == "register").unwrap().clone();
    assert_eq!(event["extra_hosts"], serde_json::json!(["api.my-gateway.dev"]));
}

/// Files from before the ledger existed are recorded once, with a notice of what they add.
#[test]
fn files_that_predate_the_ledger_are_recorded_once_with_a_notice() {
    // Read the bundled definition in another home: any command creates the ledger.
    let shadow = openai_with_hosts(&Env::new(), &["api.my-gateway.dev"]);
    let env = Env::new();
    std::fs::create_dir_all(env.file("providers")).unwrap();
    std::fs::write(env.file("providers/openai.json"), &shadow).unwrap();
    std::fs::write(env.file("providers/lab.json"), LEGACY_LAB).unwrap();
    assert!(!env.file("provider-ledger.json").exists());

    let first = env.run(&["list"]).ok();
    assert!(first.stderr.contains("openai.json: adds api.my-gateway.dev"), "{}", first.stderr);
    assert!(first.stderr.contains("lab.json: new provider, hosts api.lab.example.com"), "{}", first.stderr);
    let second = env.run(&["inspect", "openai"]).ok();
    assert!(second.stderr.is_empty(), "the notice is said once: {}", second.stderr);
    assert!(second.json()["hosts"].as_array().unwrap().contains(&serde_json::json!("api.my-gateway.dev")));

    // A file dropped after that first load is not one of them.
    std::fs::write(env.file("providers/github.json"), {
        let mut doc = env.run(&["inspect", "github"]).ok().json();
        for key in ["source", "connections"] {
            doc.as_object_mut().unwrap().remove(key);
        }
        doc["hosts"].as_array_mut().unwrap().push(serde_json::json!("*.evil.com"));
        doc.to_string()
    })
    .unwrap();
    let inspect = env.run(&["inspect", "github"]).ok();
    assert!(!inspect.json()["hosts"].as_array().unwrap().contains(&serde_json::json!("*.evil.com")));
    assert!(inspect.stderr.contains("not added with `authsome register`"), "{}", inspect.stderr);
}

/// A home that existed without custom files gets an empty ledger, so a file dropped later is
/// not taken for one that predates it.
#[test]
fn a_file_dropped_into_a_home_without_custom_files_is_not_grandfathered() {
    let env = Env::new();
    let bundled = bundled_openai_hosts(&env);
    std::fs::create_dir_all(env.file("providers")).unwrap();
    std::fs::write(env.file("providers/openai.json"), openai_with_hosts(&env, &["*.evil.com"])).unwrap();
    let inspect = env.run(&["inspect", "openai"]).ok();
    assert_eq!(inspect.json()["hosts"], bundled);
    assert!(!inspect.stderr.contains("predate"), "{}", inspect.stderr);
}

/// Python authsome files: an exact-host `regex:` converts to that host, and errors name the
/// file's own fields, never ours or serde's.
#[test]
fn register_speaks_the_python_files_format() {
    let env = Env::new();
    let exact = r#"{"name": "xapi", "auth_type": "api_key", "host_url": "regex:^api\\.x\\.com$",
        "api_key": {"header_name": "X-Key", "header_prefix": null}}"#;
    env.run(&["register", &write(&env, "xapi.json", exact), "--yes"]).ok();
    assert_eq!(env.run(&["inspect", "xapi"]).ok().json()["hosts"], serde_json::json!(["api.x.com"]));

    for (name, body, needle, not) in [
        (
            "nohost",
            r#"{"schema_version": 1, "name": "nohost", "auth_type": "api_key", "api_key": {"header_name": "X-Key"}}"#,
            "'host_url' (or 'api_url') is missing",
            "hosts",
        ),
        ("list", "[]", "expected a JSON object", "sequence"),
        ("loop", r#"{"name": "loop", "host_url": "localhost"}"#, "host_url 'localhost'", "host 'localhost'"),
    ] {
        let run = env.run(&["register", &write(&env, &format!("{name}.json"), body), "--yes"]).fails(1);
        assert!(run.stderr.contains(needle), "{name}: {}", run.stderr);
        assert!(!run.stderr.contains(not), "{name}: {}", run.stderr);
    }
}

/// A dropped-in `github.json` keeping GitHub's hosts but pointing the token endpoint elsewhere
/// would receive refresh tokens and the client secret.
#[test]
fn a_dropped_file_cannot_move_a_bundled_providers_token_endpoint() {
    let env = Env::new();
    let mut doc = env.run(&["inspect", "github"]).ok().json();
    let bundled_token_url = doc["oauth"]["token_url"].clone();
    for key in ["source", "connections"] {
        doc.as_object_mut().unwrap().remove(key);
    }
    doc["oauth"]["token_url"] = serde_json::json!("https://tokens.evil.example.com/token");
    std::fs::create_dir_all(env.file("providers")).unwrap();
    let file = env.file("providers/github.json");
    std::fs::write(&file, doc.to_string()).unwrap();

    let inspect = env.run(&["inspect", "github"]).ok();
    assert_eq!(inspect.json()["oauth"]["token_url"], bundled_token_url);
    assert!(inspect.stderr.contains("OAuth settings"), "{}", inspect.stderr);
    let asked = env.run(&["register", file.to_str().unwrap()]).fails(8);
    assert!(asked.stderr.contains("tokens.evil.example.com"), "{}", asked.stderr);
}

/// A user's own definition of a provider that a later authsome bundles (here: `datadog`, as
/// a user would have written it before, one header): their file keeps winning, with the hosts
/// they confirmed at `register`; they are told once; their connection keeps working.
#[test]
fn a_custom_definition_whose_name_becomes_bundled_keeps_working() {
    let env = Env::new();
    let own = r#"{
  "schema_version": 1, "name": "datadog", "display_name": "My Datadog", "auth_type": "api_key", "flow": "api_key",
  "hosts": ["api.datadoghq.eu", "dd.internal-gateway.example"],
  "inject": {"type": "header", "name": "DD-API-KEY", "value": "{secret}"},
  "env": {"api_key": ["MY_DD_KEY"]}
}"#;
    // As the earlier authsome left it: the file, confirmed with its hosts in the ledger.
    std::fs::create_dir_all(env.file("providers")).unwrap();
    std::fs::write(env.file("providers/datadog.json"), own).unwrap();
    let sha: String = {
        use sha2::Digest;
        sha2::Sha256::digest(own.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
    };
    let ledger = serde_json::json!({"v": 1, "files": {"datadog": {"sha256": sha, "hosts": ["api.datadoghq.eu", "dd.internal-gateway.example"]}}});
    std::fs::write(env.file("provider-ledger.json"), ledger.to_string()).unwrap();

    let first = env.run(&["inspect", "datadog"]).ok();
    let doc = first.json();
    assert_eq!(doc["source"], "custom");
    assert_eq!(doc["display_name"], "My Datadog");
    assert_eq!(
        doc["hosts"],
        serde_json::json!(["api.datadoghq.eu", "dd.internal-gateway.example"]),
        "confirmed hosts kept"
    );
    assert!(
        first.stderr.contains("datadog: your definition") && first.stderr.contains("is used, not the bundled one"),
        "{}",
        first.stderr
    );
    let second = env.run(&["inspect", "datadog"]).ok();
    assert!(second.stderr.is_empty(), "told once: {}", second.stderr);

    // Its single-value login and export work as before.
    env.run_stdin(&["login", "datadog", "--stdin"], "ddkey-single").ok();
    assert_eq!(env.run(&["export", "datadog"]).ok().stdout, "MY_DD_KEY=ddkey-single\n");
    // Deleting the file switches to the bundled definition, which takes two values: the
    // one-value connection is left out of `run` with a hint, and the run goes on.
    std::fs::remove_file(env.file("providers/datadog.json")).unwrap();
    let run = env.run(&["run", "--", "true"]).ok();
    assert!(
        run.stderr.contains("datadog/default: not used in this run: it holds no application key"),
        "{}",
        run.stderr
    );

    // A file of that name dropped without `register` gets only the bundled hosts (the shadowing rule).
    let other = Env::new();
    std::fs::create_dir_all(other.file("providers")).unwrap();
    other.run(&["list"]).ok();
    std::fs::write(other.file("providers/datadog.json"), own).unwrap();
    let dropped = other.run(&["inspect", "datadog"]).ok();
    let hosts = dropped.json()["hosts"].clone();
    assert_eq!(hosts, serde_json::json!(["api.datadoghq.eu"]), "{}", dropped.stderr);
    assert!(dropped.stderr.contains("dd.internal-gateway.example"), "{}", dropped.stderr);
}
