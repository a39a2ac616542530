//! The shapes of MCP configuration files and the rewrites `mcp wrap` and `mcp unwrap` make to
//! them, as pure functions over `serde_json::Value` (no file, no vault): which client wrote a
//! file, where its servers are, what kind each server is, and how one is wrapped or unwrapped.
//!
//! A wrapped server is recognised from the wrapping itself, so `unwrap` needs no other record:
//! its `command` is an `authsome` binary, its `args` are `run [FLAGS] -- ORIGINAL…`, and each
//! variable whose key moved into the vault holds a marker `authsome:PROVIDER/CONNECTION`
//! (`authsome run` replaces it with a placeholder). docs/mcp.md explains the choices.

use std::path::Path;

use serde_json::{Map, Value};

/// Prefix of the value left in `env` for a key that moved into the vault.
pub(crate) const MARKER_PREFIX: &str = "authsome:";

/// The application a configuration file belongs to: it decides where the servers are and how a
/// variable can refer to the environment the application was started with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Client {
    /// `~/.cursor/mcp.json`, `.cursor/mcp.json`: `mcpServers`; `${env:NAME}` expands.
    Cursor,
    /// `.mcp.json`, `~/.claude.json`: `mcpServers` (and `projects.*.mcpServers`); `${NAME}`.
    ClaudeCode,
    /// `claude_desktop_config.json`: `mcpServers`; no expansion.
    ClaudeDesktop,
    /// VS Code's `mcp.json`: `servers` (and `inputs`); `${env:NAME}` expands.
    VsCode,
    /// Another file with `mcpServers`: no expansion is assumed.
    Other,
}

impl Client {
    pub(crate) fn detect(path: &Path, doc: &Value) -> Self {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let parent = path.parent().and_then(|p| p.file_name()).and_then(|n| n.to_str()).unwrap_or_default();
        let has = |key: &str| doc.get(key).is_some_and(Value::is_object);
        if has("servers") && !has("mcpServers") {
            Client::VsCode
        } else if name == ".claude.json" || name == ".mcp.json" || has("projects") {
            Client::ClaudeCode
        } else if name == "claude_desktop_config.json" {
            Client::ClaudeDesktop
        } else if parent == ".cursor" {
            Client::Cursor
        } else {
            Client::Other
        }
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            Client::Cursor => "cursor",
            Client::ClaudeCode => "claude-code",
            Client::ClaudeDesktop => "claude-desktop",
            Client::VsCode => "vscode",
            Client::Other => "mcp",
        }
    }

    /// How this client's file refers to a variable of the environment it was started with.
    pub(crate) fn env_reference(self, name: &str) -> Option<String> {
        match self {
            Client::ClaudeCode => Some(format!("${{{name}}}")),
            Client::Cursor | Client::VsCode => Some(format!("${{env:{name}}}")),
            Client::ClaudeDesktop | Client::Other => None,
        }
    }
}

/// Where one map of servers sits in the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerMap {
    /// JSON pointer to the map.
    pub(crate) pointer: String,
    /// `~/.claude.json`'s project path for a per-project map.
    pub(crate) project: Option<String>,
}

/// Every map of servers in the document, in file order.
pub(crate) fn server_maps(doc: &Value, client: Client) -> Vec<ServerMap> {
    let key = if client == Client::VsCode { "servers" } else { "mcpServers" };
    let mut maps = Vec::new();
    if doc.get(key).is_some_and(Value::is_object) {
        maps.push(ServerMap { pointer: format!("/{key}"), project: None });
    }
    if client == Client::ClaudeCode
        && let Some(projects) = doc.get("projects").and_then(Value::as_object)
    {
        for (project, settings) in projects {
            if settings.get("mcpServers").is_some_and(Value::is_object) {
                maps.push(ServerMap {
                    pointer: format!("/projects/{}/mcpServers", escape_pointer(project)),
                    project: Some(project.clone()),
                });
            }
        }
    }
    maps
}

fn escape_pointer(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// What a server entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Entry {
    /// Launched as a local process speaking MCP over stdio.
    Stdio { command: String, args: Vec<String> },
    /// Already launched under `authsome run`.
    Wrapped { flags: Vec<String>, command: String, args: Vec<String> },
    /// Reached over HTTP (`url`, or an HTTP/SSE `type`).
    Remote,
    /// Neither: left alone.
    Unknown(&'static str),
}

pub(crate) fn classify(entry: &Value) -> Entry {
    let Some(object) = entry.as_object() else { return Entry::Unknown("not an object") };
    let kind = object.get("type").and_then(Value::as_str).unwrap_or("stdio");
    if object.contains_key("url") || object.contains_key("serverUrl") || kind != "stdio" {
        return if matches!(kind, "http" | "sse" | "streamable-http" | "streamableHttp" | "stdio") {
            Entry::Remote
        } else {
            Entry::Unknown("unknown server type")
        };
    }
    let Some(command) = object.get("command").and_then(Value::as_str) else {
        return Entry::Unknown("no command");
    };
    let args: Option<Vec<String>> = match object.get("args") {
        None | Some(Value::Null) => Some(Vec::new()),
        Some(Value::Array(items)) => items.iter().map(|a| a.as_str().map(str::to_string)).collect(),
        Some(_) => None,
    };
    let Some(args) = args else { return Entry::Unknown("args is not a list of strings") };
    if is_authsome(command) && args.first().map(String::as_str) == Some("run") {
        if let Some(split) = args.iter().position(|a| a == "--")
            && split + 1 < args.len()
        {
            return Entry::Wrapped {
                flags: args[1..split].to_vec(),
                command: args[split + 1].clone(),
                args: args[split + 2..].to_vec(),
            };
        }
        return Entry::Unknown("runs authsome without `--`");
    }
    Entry::Stdio { command: command.to_string(), args }
}

/// `authsome`, `/usr/local/bin/authsome`, `authsome.exe`.
fn is_authsome(command: &str) -> bool {
    let name = command.rsplit(['/', '\\']).next().unwrap_or(command);
    name == "authsome" || name == "authsome.exe"
}

/// The base name of a command (`/usr/bin/npx` → `npx`).
pub(crate) fn command_name(command: &str) -> &str {
    command.rsplit(['/', '\\']).next().unwrap_or(command)
}

/// The `--allow` groups a launcher needs to fetch the server it starts, for `--sandbox`.
pub(crate) fn launcher_groups(command: &str, args: &[String]) -> Vec<&'static str> {
    let name = command_name(command).trim_end_matches(".exe").trim_end_matches(".cmd");
    match name {
        "npx" | "npm" | "pnpm" | "pnpx" | "yarn" | "bunx" | "bun" => vec!["@npm"],
        "uvx" | "uv" | "pipx" | "pip" | "pip3" => vec!["@pypi"],
        "python" | "python3" if args.windows(2).any(|w| w[0] == "-m" && matches!(w[1].as_str(), "pip" | "pipx")) => {
            vec!["@pypi"]
        }
        "cargo" => vec!["@crates"],
        _ => Vec::new(),
    }
}

/// The marker left in place of a key that moved into the vault.
pub(crate) fn marker(provider: &str, connection: &str) -> String {
    format!("{MARKER_PREFIX}{provider}/{connection}")
}

/// `authsome:openai/default` → (`openai`, `default`).
pub(crate) fn parse_marker(value: &str) -> Option<(&str, &str)> {
    let rest = value.strip_prefix(MARKER_PREFIX)?;
    let (provider, connection) = rest.split_once('/')?;
    let ok = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    (ok(provider) && ok(connection)).then_some((provider, connection))
}

/// A value that refers to something else (`${input:key}`, `${env:KEY}`, `${KEY}`) rather than
/// holding a key.
pub(crate) fn is_reference(value: &str) -> bool {
    value.contains("${")
}

/// Launch `entry` under `authsome run FLAGS -- COMMAND ARGS…` and replace the moved variables'
/// values with their markers. Every other key keeps its place and value.
pub(crate) fn wrap(entry: &mut Map<String, Value>, authsome: &str, flags: &[String], moved: &[(String, String)]) {
    let command = entry.get("command").and_then(Value::as_str).unwrap_or_default().to_string();
    let old_args: Vec<Value> = entry.get("args").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut args: Vec<Value> = vec!["run".into()];
    args.extend(flags.iter().map(|f| Value::from(f.as_str())));
    args.push("--".into());
    args.push(command.into());
    args.extend(old_args);
    entry.insert("command".into(), authsome.into());
    set_args(entry, args);
    if let Some(env) = entry.get_mut("env").and_then(Value::as_object_mut) {
        for (name, marker) in moved {
            if let Some(value) = env.get_mut(name) {
                *value = marker.as_str().into();
            }
        }
    }
}

/// A variable whose key stays in the vault after `unwrap`, and what it became.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unwrapped {
    pub(crate) name: String,
    pub(crate) provider: String,
    pub(crate) connection: String,
    /// The reference written instead (`${env:NAME}`), or `None` when the client has none and
    /// the variable was removed.
    pub(crate) reference: Option<String>,
}

/// Undo [`wrap`]: the original command and arguments back; each marker becomes a reference to
/// the client's own environment (or is removed where the client cannot expand one).
pub(crate) fn unwrap(entry: &mut Map<String, Value>, client: Client) -> Vec<Unwrapped> {
    let Entry::Wrapped { command, args, .. } = classify(&Value::Object(entry.clone())) else { return Vec::new() };
    entry.insert("command".into(), command.into());
    set_args(entry, args.into_iter().map(Value::from).collect());
    let mut out = Vec::new();
    if let Some(env) = entry.get_mut("env").and_then(Value::as_object_mut) {
        let names: Vec<String> = env.keys().cloned().collect();
        for name in names {
            let Some((provider, connection)) = env[&name].as_str().and_then(parse_marker) else { continue };
            let (provider, connection) = (provider.to_string(), connection.to_string());
            let reference = client.env_reference(&name);
            match &reference {
                Some(text) => env[&name] = text.as_str().into(),
                None => {
                    env.shift_remove(&name);
                }
            }
            out.push(Unwrapped { name, provider, connection, reference });
        }
    }
    out
}

/// `args` in place when the entry had it, else added after `command`.
fn set_args(entry: &mut Map<String, Value>, args: Vec<Value>) {
    if args.is_empty() && !entry.contains_key("args") {
        return;
    }
    if let Some(slot) = entry.get_mut("args") {
        *slot = Value::Array(args);
        return;
    }
    let at = entry.keys().position(|k| k == "command").map_or(entry.len(), |i| i + 1);
    entry.shift_insert(at, "args".into(), Value::Array(args));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn clients_are_told_apart_by_name_and_shape() {
        let servers = json!({"servers": {}});
        let mcp = json!({"mcpServers": {}});
        assert_eq!(Client::detect(Path::new("/p/.vscode/mcp.json"), &servers), Client::VsCode);
        assert_eq!(Client::detect(Path::new("/h/.cursor/mcp.json"), &mcp), Client::Cursor);
        assert_eq!(Client::detect(Path::new("/p/.mcp.json"), &mcp), Client::ClaudeCode);
        assert_eq!(Client::detect(Path::new("/h/.claude.json"), &json!({"projects": {}})), Client::ClaudeCode);
        assert_eq!(Client::detect(Path::new("/c/claude_desktop_config.json"), &mcp), Client::ClaudeDesktop);
        assert_eq!(Client::detect(Path::new("/x/servers.json"), &mcp), Client::Other);
    }

    #[test]
    fn entries_are_classified() {
        assert_eq!(
            classify(&json!({"command": "npx", "args": ["-y", "pkg"]})),
            Entry::Stdio { command: "npx".into(), args: vec!["-y".into(), "pkg".into()] }
        );
        assert_eq!(
            classify(&json!({"type": "stdio", "command": "node"})),
            Entry::Stdio { command: "node".into(), args: vec![] }
        );
        assert_eq!(classify(&json!({"url": "https://mcp.example.com/mcp"})), Entry::Remote);
        assert_eq!(classify(&json!({"type": "http", "url": "https://x"})), Entry::Remote);
        assert_eq!(classify(&json!({"type": "sse", "url": "https://x"})), Entry::Remote);
        assert_eq!(
            classify(&json!({"command": "/opt/bin/authsome", "args": ["run", "--sandbox", "--", "npx", "pkg"]})),
            Entry::Wrapped { flags: vec!["--sandbox".into()], command: "npx".into(), args: vec!["pkg".into()] }
        );
        assert!(matches!(classify(&json!({"command": "x", "args": [1]})), Entry::Unknown(_)));
        assert!(matches!(classify(&json!({"args": []})), Entry::Unknown(_)));
        assert!(matches!(classify(&json!({"command": "authsome", "args": ["run", "x"]})), Entry::Unknown(_)));
    }

    #[test]
    fn wrap_then_unwrap_restores_the_launch_and_keeps_key_order() {
        let original = json!({
            "type": "stdio", "command": "npx", "args": ["-y", "pkg"],
            "env": {"LOG": "1", "OPENAI_API_KEY": "sk-x"}, "disabled": false
        });
        let mut entry = original.as_object().unwrap().clone();
        let moved = vec![("OPENAI_API_KEY".to_string(), marker("openai", "default"))];
        wrap(&mut entry, "/bin/authsome", &["--provider".into(), "openai".into()], &moved);
        assert_eq!(
            Value::Object(entry.clone()).to_string(),
            json!({
                "type": "stdio", "command": "/bin/authsome",
                "args": ["run", "--provider", "openai", "--", "npx", "-y", "pkg"],
                "env": {"LOG": "1", "OPENAI_API_KEY": "authsome:openai/default"}, "disabled": false
            })
            .to_string()
        );
        let mut cursor = entry.clone();
        let vars = unwrap(&mut cursor, Client::Cursor);
        assert_eq!(vars.len(), 1);
        assert_eq!(vars[0].reference.as_deref(), Some("${env:OPENAI_API_KEY}"));
        assert_eq!(cursor["command"], "npx");
        assert_eq!(cursor["args"], json!(["-y", "pkg"]));
        assert_eq!(cursor.keys().collect::<Vec<_>>(), original.as_object().unwrap().keys().collect::<Vec<_>>());
        let mut desktop = entry.clone();
        let vars = unwrap(&mut desktop, Client::ClaudeDesktop);
        assert_eq!(vars[0].reference, None);
        assert_eq!(desktop["env"], json!({"LOG": "1"}));
        let mut claude = entry;
        unwrap(&mut claude, Client::ClaudeCode);
        assert_eq!(claude["env"]["OPENAI_API_KEY"], "${OPENAI_API_KEY}");
    }

    #[test]
    fn args_are_added_after_command_when_missing() {
        let mut entry = json!({"command": "server", "env": {}}).as_object().unwrap().clone();
        wrap(&mut entry, "authsome", &[], &[]);
        assert_eq!(entry.keys().collect::<Vec<_>>(), vec!["command", "args", "env"]);
        assert_eq!(entry["args"], json!(["run", "--", "server"]));
    }

    #[test]
    fn launchers_get_their_registries() {
        assert_eq!(launcher_groups("npx", &[]), vec!["@npm"]);
        assert_eq!(launcher_groups("/usr/local/bin/uvx", &[]), vec!["@pypi"]);
        assert_eq!(launcher_groups("python3", &["-m".into(), "pip".into()]), vec!["@pypi"]);
        assert!(launcher_groups("node", &["server.js".into()]).is_empty());
    }

    #[test]
    fn markers_round_trip_and_reject_junk() {
        assert_eq!(parse_marker(&marker("openai", "default")), Some(("openai", "default")));
        assert_eq!(parse_marker("authsome:"), None);
        assert_eq!(parse_marker("authsome:a/b c"), None);
        assert_eq!(parse_marker("sk-abc"), None);
    }

    #[test]
    fn project_maps_of_claude_json() {
        let doc = json!({"mcpServers": {}, "projects": {"/a/b": {"mcpServers": {}}, "/c": {"x": 1}}});
        let maps = server_maps(&doc, Client::ClaudeCode);
        assert_eq!(maps.len(), 2);
        assert_eq!(maps[1].pointer, "/projects/~1a~1b/mcpServers");
        assert!(doc.pointer(&maps[1].pointer).is_some());
    }
}
