//! End-to-end: `authsome mcp wrap/unwrap` on sample configurations of each client (Cursor,
//! Claude Code's `.mcp.json` and `~/.claude.json`, Claude Desktop, VS Code), then a wrapped
//! server started the way an editor starts it, speaking JSON lines over stdio, whose request to
//! a provider host (a local HTTPS echo standing in for api.openai.com) carries the real key.
//! Also `authsome skill install`.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use authsome_testkit::{Echo, Pki};
use common::{Env, seen};
use serde_json::{Value, json};

const GITHUB_TOKEN: &str = "ghp_MCPFIXTUREGITHUB0000000000000000001";
const OPENAI_KEY: &str = "sk-MCPFIXTUREOPENAI00000000000001";
const ANTHROPIC_KEY: &str = "sk-ant-MCPFIXTUREANTHROPIC0000000001";
const INTERNAL_SECRET: &str = "s3cr3t-MCPFIXTURE-INTERNAL";
const ALL_VALUES: &[&str] = &[GITHUB_TOKEN, OPENAI_KEY, ANTHROPIC_KEY, INTERNAL_SECRET];

/// (fixture, where the client keeps it relative to a project or home directory).
const FORMATS: &[(&str, &str)] = &[
    ("cursor", ".cursor/mcp.json"),
    ("claude-code", ".mcp.json"),
    ("claude", ".claude.json"),
    ("claude-desktop", "claude_desktop_config.json"),
    ("vscode", ".vscode/mcp.json"),
];

/// The keys each fixture holds, by provider.
fn keys_of(fixture: &str) -> &'static [(&'static str, &'static str)] {
    match fixture {
        "cursor" => &[("github", GITHUB_TOKEN)],
        "claude-code" | "claude-desktop" => &[("openai", OPENAI_KEY)],
        "claude" => &[("anthropic", ANTHROPIC_KEY), ("openai", OPENAI_KEY)],
        "vscode" => &[("anthropic", ANTHROPIC_KEY)],
        other => panic!("no fixture {other}"),
    }
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/mcp")
}

/// Copy fixture `name` to where its client keeps it, under the test's working directory.
fn place(env: &Env, name: &str, relative: &str) -> PathBuf {
    let path = env.cwd.path().join(relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::copy(fixtures().join(format!("{name}.json")), &path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    path
}

fn authsome_bin() -> String {
    std::fs::canonicalize(common::BIN).unwrap().display().to_string()
}

fn expected(name: &str) -> String {
    std::fs::read_to_string(fixtures().join(format!("{name}.wrapped.json")))
        .unwrap()
        .replace("@AUTHSOME@", &authsome_bin())
}

fn backups(path: &Path) -> Vec<PathBuf> {
    let name = path.file_name().unwrap().to_str().unwrap().to_string();
    let mut found: Vec<PathBuf> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with(&format!("{name}.authsome-backup-")))
        .collect();
    found.sort();
    found
}

fn stored(env: &Env, provider: &str) -> Option<String> {
    let run = env.run(&["export", provider, "--format", "json"]);
    if run.code != 0 {
        return None;
    }
    run.json().as_object().unwrap().values().next().and_then(Value::as_str).map(str::to_string)
}

#[test]
fn each_format_is_wrapped_as_expected_and_a_second_wrap_changes_nothing() {
    for (name, relative) in FORMATS {
        let env = Env::new();
        let path = place(&env, name, relative);
        let original = std::fs::read_to_string(&path).unwrap();
        let run = env.run(&["mcp", "wrap", path.to_str().unwrap()]).ok();
        for value in ALL_VALUES {
            assert!(!run.all().contains(value), "{name}: a value was printed:\n{}", run.all());
        }
        let wrapped = std::fs::read_to_string(&path).unwrap();
        assert_eq!(wrapped, expected(name), "{name}: wrapped file differs from {name}.wrapped.json");
        for key in [GITHUB_TOKEN, OPENAI_KEY, ANTHROPIC_KEY] {
            assert!(!wrapped.contains(key), "{name}: a key stayed in the file");
        }
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o644, "{name}: mode kept");
        for (provider, key) in keys_of(name) {
            assert_eq!(stored(&env, provider).as_deref(), Some(*key), "{name}: {provider} not in the vault");
        }

        // The original, untouched, 0600 because it held keys.
        let saved = backups(&path);
        assert_eq!(saved.len(), 1, "{name}: {saved:?}");
        assert_eq!(std::fs::read_to_string(&saved[0]).unwrap(), original);
        assert_eq!(std::fs::metadata(&saved[0]).unwrap().permissions().mode() & 0o777, 0o600);

        // Twice: nothing changes, no new backup.
        let again = env.run(&["mcp", "wrap", path.to_str().unwrap()]).ok();
        assert!(again.stderr.contains("Nothing to change"), "{name}: {}", again.all());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), wrapped);
        assert_eq!(backups(&path).len(), 1);
    }
}

#[test]
fn keys_move_into_the_vault_and_unmatched_values_stay_listed() {
    let env = Env::new();
    let path = place(&env, "claude-desktop", "claude_desktop_config.json");
    let run = env.run(&["mcp", "wrap", path.to_str().unwrap(), "--json"]).ok();
    let report = run.json();
    assert_eq!(report["client"], "claude-desktop");
    assert_eq!(report["changed"], true);
    let assistant = &report["servers"][1];
    assert_eq!(assistant["status"], "wrapped");
    assert_eq!(assistant["run_flags"], json!(["--provider", "openai"]));
    assert_eq!(
        assistant["env"],
        json!([
            {"name": "OPENAI_API_KEY", "status": "moved", "provider": "openai", "vault": "imported"},
            {"name": "INTERNAL_SERVICE_SECRET", "status": "kept", "provider": null, "vault": null},
        ])
    );
    assert_eq!(stored(&env, "openai").as_deref(), Some(OPENAI_KEY));
    let file = std::fs::read_to_string(&path).unwrap();
    assert!(file.contains(INTERNAL_SECRET), "values that match no provider stay in the file");
    assert!(!run.all().contains(INTERNAL_SECRET));

    // The audit log records the import and the rewrite, never a value.
    let log = env.run(&["log", "--json", "-n", "50"]).ok();
    let entries = log.json();
    let events: Vec<&str> = entries.as_array().unwrap().iter().filter_map(|e| e["event"].as_str()).collect();
    assert!(events.contains(&"import") && events.contains(&"mcp_wrap"), "{events:?}");
    for value in ALL_VALUES {
        assert!(!log.stdout.contains(value));
    }
}

#[test]
fn dry_run_shows_a_summary_without_values_and_writes_nothing() {
    let env = Env::new();
    let path = place(&env, "cursor", ".cursor/mcp.json");
    let original = std::fs::read_to_string(&path).unwrap();
    let run = env.run(&["mcp", "wrap", path.to_str().unwrap(), "--dry-run", "--sandbox"]).ok();
    assert!(
        run.stdout.contains(
            "~ github: npx … → authsome run --sandbox --allow @npm --env GITHUB_TOOLSETS --provider github -- npx …"
        ),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("env.GITHUB_TOKEN: github key → the vault (github/default, to import)"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("env.GITHUB_TOOLSETS: kept in the file"), "{}", run.stdout);
    assert!(run.stdout.contains("= context7: remote (URL) server, left alone"), "{}", run.stdout);
    assert!(run.stderr.contains("Nothing written (--dry-run)"), "{}", run.stderr);
    for value in ALL_VALUES {
        assert!(!run.all().contains(value));
    }
    assert!(!run.all().contains("mcp.context7.com"), "a remote server's URL may hold a token: not shown");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), original);
    assert!(backups(&path).is_empty());
    assert_eq!(stored(&env, "github"), None, "--dry-run imports nothing");
}

#[test]
fn sandbox_wraps_allow_the_registry_the_launcher_needs() {
    let env = Env::new();
    let path = place(&env, "vscode", ".vscode/mcp.json");
    env.run(&["mcp", "wrap", path.to_str().unwrap(), "--sandbox"]).ok();
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        doc["servers"]["perplexity"]["args"],
        json!([
            "run",
            "--sandbox",
            "--allow",
            "@npm",
            "--env",
            "PERPLEXITY_API_KEY",
            "--",
            "npx",
            "-y",
            "server-perplexity-ask"
        ])
    );
    assert_eq!(
        doc["servers"]["claude"]["args"],
        json!(["run", "--sandbox", "--allow", "@pypi", "--provider", "anthropic", "--", "uvx", "claude-mcp"])
    );
    // The flags are ones `run` accepts (the sandbox itself is tested in tests/sandbox.rs).
    let args: Vec<&str> =
        doc["servers"]["claude"]["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    let split = args.iter().position(|a| *a == "--").unwrap();
    let mut check: Vec<&str> = args[..split].iter().copied().filter(|a| *a != "--sandbox").collect();
    check.extend(["--", "true"]);
    env.run(&check).ok();
}

#[test]
fn unwrap_restores_the_launch_and_leaves_the_keys_in_the_vault() {
    for (name, relative) in FORMATS {
        let env = Env::new();
        let path = place(&env, name, relative);
        let original: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        env.run(&["mcp", "wrap", path.to_str().unwrap()]).ok();
        let wrapped_backups = backups(&path);
        // Unwrap from the wrapping itself: the wrap's backup is not needed.
        for backup in &wrapped_backups {
            std::fs::remove_file(backup).unwrap();
        }
        let run = env.run(&["mcp", "unwrap", path.to_str().unwrap()]).ok();
        for value in ALL_VALUES {
            assert!(!run.all().contains(value));
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for key in [GITHUB_TOKEN, OPENAI_KEY, ANTHROPIC_KEY] {
            assert!(!text.contains(key), "{name}: unwrap put a key back");
        }
        let unwrapped: Value = serde_json::from_str(&text).unwrap();
        let reference = |var: &str| match *name {
            "claude-code" | "claude" => Some(format!("${{{var}}}")),
            "cursor" | "vscode" => Some(format!("${{env:{var}}}")),
            _ => None,
        };
        assert_eq!(unwrapped, with_keys_as(&original, &reference), "{name}");
        for (provider, key) in keys_of(name) {
            assert_eq!(stored(&env, provider).as_deref(), Some(*key), "{name}: unwrap keeps {provider} in the vault");
        }
        // And unwrapping again changes nothing.
        let again = env.run(&["mcp", "unwrap", path.to_str().unwrap()]).ok();
        assert!(again.stderr.contains("Nothing to change"), "{}", again.all());
    }
}

/// `original` with each provider key in an `env` block replaced by `reference(NAME)` (or the
/// variable removed when there is none).
fn with_keys_as(original: &Value, reference: &dyn Fn(&str) -> Option<String>) -> Value {
    let mut doc = original.clone();
    fn walk(value: &mut Value, reference: &dyn Fn(&str) -> Option<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::Object(env)) = map.get_mut("env") {
                    let names: Vec<String> = env.keys().cloned().collect();
                    for name in names {
                        let is_key =
                            env[&name].as_str().is_some_and(|v| [GITHUB_TOKEN, OPENAI_KEY, ANTHROPIC_KEY].contains(&v));
                        if is_key {
                            match reference(&name) {
                                Some(text) => env[&name] = text.into(),
                                None => {
                                    env.shift_remove(&name);
                                }
                            }
                        }
                    }
                }
                for child in map.values_mut() {
                    walk(child, reference);
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|i| walk(i, reference)),
            _ => {}
        }
    }
    walk(&mut doc, reference);
    doc
}

#[test]
fn a_different_key_in_the_vault_leaves_the_server_alone_unless_forced() {
    let env = Env::new();
    env.login("openai", "default", "sk-ALREADYSTOREDOPENAI000000000009");
    let path = place(&env, "claude-code", ".mcp.json");
    let original = std::fs::read_to_string(&path).unwrap();
    let run = env.run(&["mcp", "wrap", path.to_str().unwrap()]).ok();
    assert!(
        run.stdout.contains("! openai-tools: left alone: the vault holds a different OpenAI key"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("--force"), "{}", run.stdout);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), original);
    assert_eq!(stored(&env, "openai").as_deref(), Some("sk-ALREADYSTOREDOPENAI000000000009"));

    env.run(&["mcp", "wrap", path.to_str().unwrap(), "--force"]).ok();
    assert_eq!(stored(&env, "openai").as_deref(), Some(OPENAI_KEY));
    assert!(!std::fs::read_to_string(&path).unwrap().contains(OPENAI_KEY));
}

#[test]
fn files_that_cannot_be_wrapped_get_a_hint() {
    let env = Env::new();
    let run = env.run(&["mcp", "wrap", "missing.json"]).fails(2);
    assert!(run.stderr.contains("hint:") && run.stderr.contains(".mcp.json"), "{}", run.stderr);
    std::fs::write(env.cwd.path().join("settings.json"), "{\"editor\": {}}").unwrap();
    let run = env.run(&["mcp", "wrap", "settings.json"]).fails(2);
    assert!(run.stderr.contains("has no MCP servers") && run.stderr.contains("mcpServers"), "{}", run.stderr);
    std::fs::write(env.cwd.path().join("mcp.json"), "{\n  // mine\n  \"servers\": {}\n}").unwrap();
    let run = env.run(&["mcp", "wrap", "mcp.json", "--json"]).fails(2);
    assert!(run.json()["hint"].as_str().unwrap().contains("JSONC"), "{}", run.stdout);
}

#[test]
fn a_wrapped_server_talks_stdio_and_its_key_reaches_the_provider() {
    let pki = Pki::new(&["api.openai.com"]);
    let echo = Echo::https(&pki);
    let env = Env::new();
    let ca = pki.write_ca(env.cwd.path(), "upstream-ca.pem");
    let env = env
        .set("AUTHSOME_CONNECT_TO", &format!("api.openai.com:443:127.0.0.1:{}", echo.port()))
        .set("AUTHSOME_EXTRA_ROOTS", ca.to_str().unwrap());

    // A tiny MCP-like server: JSON lines in, JSON lines out; `call` asks the provider.
    let server = env.cwd.path().join("echo_server.py");
    std::fs::write(
        &server,
        r#"import json, os, sys, urllib.request
for line in sys.stdin:
    msg = json.loads(line)
    if msg.get("method") == "call":
        key = os.environ.get("OPENAI_API_KEY", "")
        req = urllib.request.Request("https://api.openai.com/v1/mcp", headers={"Authorization": "Bearer " + key})
        with urllib.request.urlopen(req) as r:
            out = {"id": msg["id"], "upstream": json.loads(r.read()), "held": key}
    else:
        out = {"id": msg["id"], "echo": msg}
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
"#,
    )
    .unwrap();
    let config = env.cwd.path().join(".mcp.json");
    let doc = json!({"mcpServers": {"echo": {
        "command": "python3",
        "args": [server.to_str().unwrap()],
        "env": {"OPENAI_API_KEY": OPENAI_KEY, "ECHO_MODE": "lines"},
    }}});
    std::fs::write(&config, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    env.run(&["mcp", "wrap", config.to_str().unwrap()]).ok();

    // Start it as an editor would: the file's command, args and env.
    let wrapped: Value = serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    let entry = &wrapped["mcpServers"]["echo"];
    assert_eq!(entry["command"], authsome_bin().as_str());
    assert_eq!(entry["env"]["OPENAI_API_KEY"], "authsome:openai/default");
    let args: Vec<&str> = entry["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    let mut cmd = env.command(&args);
    for (name, value) in entry["env"].as_object().unwrap() {
        cmd.env(name, value.as_str().unwrap());
    }
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut exchange = |message: Value| -> Value {
        writeln!(stdin, "{message}").unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    };
    let hello = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"ünïcode": "✓", "n": [1, 2.5]}});
    assert_eq!(exchange(hello.clone()), json!({"id": 1, "echo": hello}), "stdio passes through untouched");
    let reply = exchange(json!({"id": 2, "method": "call"}));
    assert_eq!(seen(&reply["upstream"], "authorization"), vec![format!("Bearer {OPENAI_KEY}")]);
    let held = reply["held"].as_str().unwrap();
    assert!(held.starts_with("sk-authsome_"), "the server holds a placeholder, not the key: {held}");
    drop(stdin);
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{stderr}");
    assert!(!stderr.contains(OPENAI_KEY));
}

#[test]
fn skill_install_writes_the_repos_skill_and_keeps_edits() {
    let env = Env::new();
    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/cli/skill/SKILL.md")).unwrap();
    let dir = env.cwd.path().join("skills/authsome");
    let run = env.run(&["skill", "install", "--path", dir.to_str().unwrap(), "--json"]).ok();
    assert_eq!(run.json()["status"], "written");
    assert_eq!(std::fs::read_to_string(dir.join("SKILL.md")).unwrap(), shipped);
    let run = env.run(&["skill", "install", "--path", dir.to_str().unwrap(), "--json"]).ok();
    assert_eq!(run.json()["status"], "unchanged");

    std::fs::write(dir.join("SKILL.md"), "my own notes\n").unwrap();
    let run = env.run(&["skill", "install", "--path", dir.to_str().unwrap()]).fails(1);
    assert!(run.stderr.contains("hint:") && run.stderr.contains("--force"), "{}", run.stderr);
    assert_eq!(std::fs::read_to_string(dir.join("SKILL.md")).unwrap(), "my own notes\n");
    env.run(&["skill", "install", "--path", dir.to_str().unwrap(), "--force"]).ok();
    assert_eq!(std::fs::read_to_string(dir.join("SKILL.md")).unwrap(), shipped);

    // By default: Claude Code's personal skills directory.
    let home = env.cwd.path().join("home");
    let run = env.run_with(&["skill", "install"], None, &[("HOME", home.to_str().unwrap())]).ok();
    assert!(run.stdout.contains(".claude/skills/authsome/SKILL.md"), "{}", run.stdout);
    assert_eq!(std::fs::read_to_string(home.join(".claude/skills/authsome/SKILL.md")).unwrap(), shipped);
}

#[test]
fn a_sandbox_wrapped_server_gets_its_variables_and_its_key_only_through_the_capture() {
    let s = common::sandbox::setup();
    // The server checks first that it runs in a network namespace of its own holding only `lo`
    // (otherwise it does nothing and exits 99), then ignores every proxy setting: only the
    // sandbox's capture can carry its request to the provider host.
    let server = s.project.join("sandboxed_server.py");
    std::fs::write(
        &server,
        r#"import json, os, sys, urllib.request
host = os.environ.get("HOST_NETNS", "")
links = [l.split(":")[0].strip() for l in open("/proc/net/dev").read().splitlines()[2:]]
if not host or os.readlink("/proc/self/ns/net") == host or links != ["lo"]:
    print(json.dumps({"guard": "not in a sandbox"}), flush=True)
    sys.exit(99)
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
for line in sys.stdin:
    msg = json.loads(line)
    key = os.environ.get("OPENAI_API_KEY", "")
    req = urllib.request.Request("https://api.openai.com/v1/sandboxed", headers={"Authorization": "Bearer " + key})
    with opener.open(req) as r:
        out = {"id": msg["id"], "upstream": json.loads(r.read()), "held": key}
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
"#,
    )
    .unwrap();
    let config = s.project.join(".mcp.json");
    let doc = json!({"mcpServers": {"py": {
        "command": "python3",
        "args": [server.to_str().unwrap()],
        "env": {"OPENAI_API_KEY": common::sandbox::OPENAI_KEY, "HOST_NETNS": common::sandbox::host_netns()},
    }}});
    std::fs::write(&config, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    let run = s.env.run(&["mcp", "wrap", config.to_str().unwrap(), "--sandbox", "--json"]).ok();
    assert_eq!(run.json()["servers"][0]["env"][0]["vault"], "already_stored", "{}", run.stdout);

    let wrapped: Value = serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    let entry = &wrapped["mcpServers"]["py"];
    let args: Vec<&str> = entry["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(args[..6], ["run", "--sandbox", "--env", "HOST_NETNS", "--provider", "openai"]);
    let mut cmd = s.env.command(&args);
    cmd.current_dir(&s.project);
    for (name, value) in entry["env"].as_object().unwrap() {
        cmd.env(name, value.as_str().unwrap());
    }
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    writeln!(stdin, "{}", json!({"id": 1})).unwrap();
    stdin.flush().unwrap();
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    drop(stdin);
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    let reply: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}\n{stderr}"));
    assert_ne!(status.code(), Some(99), "the sandbox failed open: {line}");
    assert_eq!(seen(&reply["upstream"], "authorization"), vec![format!("Bearer {}", common::sandbox::OPENAI_KEY)]);
    assert!(reply["held"].as_str().unwrap().starts_with("sk-authsome_"), "{reply}");
    assert!(status.success(), "{stderr}");
}

#[test]
fn a_value_named_like_a_key_but_not_shaped_like_one_leaves_the_server_alone() {
    let env = Env::new();
    let path = env.cwd.path().join(".mcp.json");
    let text = "{\n  \"mcpServers\": {\n    \"tools\": {\n      \"command\": \"node\",\n      \"env\": {\n        \"OPENAI_API_KEY\": \"pasted-by-mistake-SECRETVALUE\"\n      }\n    }\n  }\n}\n";
    std::fs::write(&path, text).unwrap();
    let run = env.run(&["mcp", "wrap", path.to_str().unwrap()]).ok();
    assert!(
        run.stdout.contains("! tools: left alone: OPENAI_API_KEY is not shaped like a key of OpenAI"),
        "{}",
        run.stdout
    );
    assert!(!run.all().contains("SECRETVALUE"), "{}", run.all());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    assert!(backups(&path).is_empty());
    assert_eq!(stored(&env, "openai"), None);
}
