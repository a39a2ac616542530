//! `mcp wrap PATH` and `mcp unwrap PATH`: launch every stdio server of an MCP configuration
//! (Cursor, Claude Code, Claude Desktop, VS Code) under `authsome run`, moving the API keys of
//! its `env` block into the vault as `scan --import` does, and undo it. The file shapes and the
//! rewrites are `config`'s (pure); `file` reads and writes files; this module decides, imports
//! and reports. docs/mcp.md is the user's guide.

mod config;
mod file;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use authsome_vault::Vault;
use clap::{Args, Subcommand};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use self::config::{Client, Entry};
use super::scan;
use crate::auth::api_key;
use crate::context::Context;
use crate::error::{CliError, CliResult, Kind};
use crate::providers::Provider;

/// Keys move into this connection of their provider.
const CONNECTION: &str = "default";

#[derive(Debug, Subcommand)]
pub(crate) enum McpCommand {
    /// Launch each stdio server of an MCP configuration under `authsome run`, moving the API
    /// keys of its `env` block into the vault.
    Wrap(WrapArgs),
    /// Launch the servers `mcp wrap` wrapped directly again (their keys stay in the vault).
    Unwrap(UnwrapArgs),
}

#[derive(Debug, Args)]
#[command(after_help = "\
Files: ~/.cursor/mcp.json and .cursor/mcp.json (Cursor), .mcp.json and ~/.claude.json (Claude
Code, top-level and per-project servers), claude_desktop_config.json (Claude Desktop),
.vscode/mcp.json or the user mcp.json (VS Code, `servers`).

Each stdio server becomes `authsome run [--provider P…] -- ORIGINAL COMMAND…`. A value in its
`env` block that is a key of a known provider (OPENAI_API_KEY=sk-…) is stored in the vault as
PROVIDER/default and replaced by the marker `authsome:PROVIDER/default`; `authsome run` gives the
server a placeholder there and puts the real key on the wire. Other values stay and are listed.
Remote (URL) servers, servers already wrapped and files without changes are left alone, so
running it twice changes nothing. The original is kept as NAME.authsome-backup-TIME next to it
(0600 when it held keys: delete it once you have checked). Keys and values are never printed.

Examples:
  authsome mcp wrap ~/.cursor/mcp.json --dry-run
  authsome mcp wrap .mcp.json --sandbox     # npx servers get --allow @npm, uvx/pipx @pypi")]
pub(crate) struct WrapArgs {
    /// The MCP configuration file.
    pub(crate) path: PathBuf,
    /// Run each server with `run --sandbox`, allowing the registry its launcher fetches from
    /// (npx, bunx, pnpm: @npm; uvx, pipx: @pypi; cargo: @crates).
    #[arg(long)]
    pub(crate) sandbox: bool,
    /// Show what would change (no values); change nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Replace a different key already stored as PROVIDER/default (otherwise such a server is
    /// left alone and listed).
    #[arg(long)]
    pub(crate) force: bool,
}

#[derive(Debug, Args)]
#[command(after_help = "\
The original command and arguments come back from the wrapping itself. Keys stay in the vault and
do not come back into the file: each marker becomes a reference to the editor's own environment
(${NAME} for Claude Code, ${env:NAME} for Cursor and VS Code; Claude Desktop has none, so the
variable is removed). Start the editor with the key in its environment, e.g.
eval \"$(authsome export openai --format shell)\", or restore the backup `mcp wrap` made.")]
pub(crate) struct UnwrapArgs {
    /// The MCP configuration file.
    pub(crate) path: PathBuf,
    /// Show what would change; change nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
}

pub(crate) fn mcp(ctx: &Context, command: &McpCommand) -> CliResult {
    match command {
        McpCommand::Wrap(args) => wrap(ctx, args),
        McpCommand::Unwrap(args) => unwrap(ctx, args),
    }
}

/// One variable of a server's `env` block and what happens to it.
#[derive(Debug)]
struct Var {
    name: String,
    /// `moved`, `kept`, `reference`, `invalid`, `different`.
    status: &'static str,
    provider: Option<String>,
    /// For a moved key: `imported`, `replaced`, `already_stored` (`to_import`, `to_replace`
    /// with `--dry-run`).
    vault: Option<&'static str>,
}

/// One server and what happened to it.
#[derive(Debug)]
struct Server {
    name: String,
    project: Option<String>,
    /// `wrapped`, `already_wrapped`, `remote`, `skipped`, `unwrapped`, `not_wrapped`.
    status: &'static str,
    command: Option<String>,
    flags: Vec<String>,
    vars: Vec<Var>,
    reason: Option<String>,
}

impl Server {
    fn new(name: &str, project: &Option<String>, status: &'static str) -> Self {
        Self {
            name: name.to_string(),
            project: project.clone(),
            status,
            command: None,
            flags: Vec::new(),
            vars: Vec::new(),
            reason: None,
        }
    }
}

fn wrap(ctx: &Context, args: &WrapArgs) -> CliResult {
    let file = file::read(&args.path)?;
    let client = Client::detect(&file.path, &file.doc);
    let maps = servers_or_fail(&file, client)?;
    let authsome = authsome_path()?;
    let catalog = ctx.catalog();
    let providers: Vec<&Provider> = catalog.entries().iter().map(|e| &e.provider).collect();
    let index = scan::env_index(&providers);
    let mut vault: Option<Vault> = None;
    let mut doc = file.doc.clone();
    let mut servers = Vec::new();
    let mut held_keys = false;

    for map in &maps {
        let names: Vec<String> =
            doc.pointer(&map.pointer).and_then(Value::as_object).into_iter().flat_map(|m| m.keys().cloned()).collect();
        for name in names {
            let entry = doc.pointer_mut(&map.pointer).and_then(|m| m.get_mut(&name)).expect("listed above");
            let (command, original_args) = match config::classify(entry) {
                Entry::Remote => {
                    servers.push(Server::new(&name, &map.project, "remote"));
                    continue;
                }
                Entry::Wrapped { command, flags, .. } => {
                    let mut server = Server::new(&name, &map.project, "already_wrapped");
                    server.command = Some(config::command_name(&command).to_string());
                    server.flags = flags;
                    servers.push(server);
                    continue;
                }
                Entry::Unknown(reason) => {
                    let mut server = Server::new(&name, &map.project, "skipped");
                    server.reason = Some(reason.to_string());
                    servers.push(server);
                    continue;
                }
                Entry::Stdio { command, args } => (command, args),
            };
            let mut server = Server::new(&name, &map.project, "wrapped");
            server.command = Some(config::command_name(&command).to_string());

            // Decide for every variable before touching the vault: a server is wrapped whole
            // or not at all.
            let mut keys: Vec<(&Provider, SecretString)> = Vec::new();
            let env = entry.get("env").and_then(Value::as_object).cloned().unwrap_or_default();
            for (var, value) in &env {
                let text = value.as_str().unwrap_or_default();
                let known = index.get(var).map(|(i, _)| providers[*i]);
                let mut row = Var { name: var.clone(), status: "kept", provider: None, vault: None };
                match known {
                    _ if !value.is_string() || text.trim().is_empty() => {}
                    _ if config::is_reference(text) => row.status = "reference",
                    None => {}
                    Some(provider) => {
                        row.provider = Some(provider.name.clone());
                        let secret = SecretString::from(text.trim().to_string());
                        let valid = api_key::check(provider, &secret).is_ok() && !text.contains(char::is_control);
                        if !valid {
                            row.status = "invalid";
                            server.reason = Some(format!(
                                "{var} is not shaped like a key of {}: fix or remove it, then wrap again",
                                provider.display_name
                            ));
                        } else {
                            if vault.is_none() {
                                vault = Some(ctx.vault()?);
                            }
                            let vault = vault.as_ref().expect("opened above");
                            let stored = match vault.connection(&provider.name, CONNECTION)? {
                                Some(_) => scan::stored_value(ctx, vault, provider, CONNECTION)?,
                                None => None,
                            };
                            row.status = "moved";
                            row.vault = Some(match stored {
                                None if args.dry_run => "to_import",
                                None => "imported",
                                Some(s) if s.expose_secret() == secret.expose_secret() => "already_stored",
                                Some(_) if args.force && args.dry_run => "to_replace",
                                Some(_) if args.force => "replaced",
                                Some(_) => {
                                    row.status = "different";
                                    server.reason = Some(format!(
                                        "the vault holds a different {} key as {}/{CONNECTION}: --force replaces it",
                                        provider.display_name, provider.name
                                    ));
                                    "different"
                                }
                            });
                            keys.push((provider, secret));
                        }
                    }
                }
                server.vars.push(row);
            }
            if server.reason.is_some() {
                server.status = "skipped";
                servers.push(server);
                continue;
            }

            let mut moved = Vec::new();
            let mut used: BTreeSet<&str> = BTreeSet::new();
            for (row, (provider, secret)) in server.vars.iter().filter(|v| v.status == "moved").zip(&keys) {
                if !args.dry_run && matches!(row.vault, Some("imported" | "replaced")) {
                    let vault = vault.as_mut().expect("opened for the comparison");
                    let source = format!("{}#{}", file.path.display(), name);
                    scan::import(ctx, vault, provider, CONNECTION, &scan::Found { value: secret.clone(), source })?;
                }
                moved.push((row.name.clone(), config::marker(&provider.name, CONNECTION)));
                used.insert(provider.name.as_str());
                held_keys = true;
            }
            let mut flags = Vec::new();
            if args.sandbox {
                flags.push("--sandbox".to_string());
                for group in config::launcher_groups(&command, &original_args) {
                    flags.extend(["--allow".to_string(), group.to_string()]);
                }
                // The sandbox starts from a minimal environment: pass on the variables the
                // client sets from the file (the moved keys come back as placeholders anyway).
                for var in server.vars.iter().filter(|v| v.status != "moved" && !v.name.contains('=')) {
                    flags.extend(["--env".to_string(), var.name.clone()]);
                }
            }
            for provider in used {
                flags.extend(["--provider".to_string(), provider.to_string()]);
            }
            let object = entry.as_object_mut().expect("classified as an object");
            config::wrap(object, &authsome, &flags, &moved);
            server.flags = flags;
            servers.push(server);
        }
    }
    finish(ctx, &file, client, &doc, servers, args.dry_run, held_keys, "wrap")
}

fn unwrap(ctx: &Context, args: &UnwrapArgs) -> CliResult {
    let file = file::read(&args.path)?;
    let client = Client::detect(&file.path, &file.doc);
    let maps = servers_or_fail(&file, client)?;
    let mut doc = file.doc.clone();
    let mut servers = Vec::new();
    for map in &maps {
        let Some(object) = doc.pointer_mut(&map.pointer).and_then(Value::as_object_mut) else { continue };
        for (name, entry) in object.iter_mut() {
            let Entry::Wrapped { command, .. } = config::classify(entry) else {
                servers.push(Server::new(name, &map.project, "not_wrapped"));
                continue;
            };
            let mut server = Server::new(name, &map.project, "unwrapped");
            server.command = Some(config::command_name(&command).to_string());
            let entry = entry.as_object_mut().expect("a wrapped entry is an object");
            for var in config::unwrap(entry, client) {
                server.vars.push(Var {
                    name: var.name,
                    status: if var.reference.is_some() { "reference" } else { "removed" },
                    // `openai`, or `openai/work` for another connection than the default.
                    provider: Some(if var.connection == CONNECTION {
                        var.provider
                    } else {
                        format!("{}/{}", var.provider, var.connection)
                    }),
                    vault: Some("in_vault"),
                });
            }
            servers.push(server);
        }
    }
    finish(ctx, &file, client, &doc, servers, args.dry_run, false, "unwrap")
}

fn servers_or_fail(file: &file::ConfigFile, client: Client) -> CliResult<Vec<config::ServerMap>> {
    let maps = config::server_maps(&file.doc, client);
    if maps.is_empty() {
        return Err(CliError::new(Kind::Usage, format!("{} has no MCP servers", file.path.display())).hint(
            "servers are listed under `mcpServers` (Cursor, Claude Code, Claude Desktop) or `servers` (VS Code)",
        ));
    }
    Ok(maps)
}

/// This binary, absolute: editors start servers without the user's shell `PATH`. The entry of
/// `PATH` that runs it is preferred to the resolved file (a package manager's link such as
/// `/opt/homebrew/bin/authsome` survives upgrades; the versioned file behind it does not).
fn authsome_path() -> CliResult<String> {
    let exe = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .map_err(|e| CliError::new(Kind::Generic, format!("cannot tell where the authsome binary is: {e}")))?;
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    let chosen = on_path(&path_var, &exe).unwrap_or(exe);
    chosen
        .to_str()
        .map(str::to_string)
        .ok_or_else(|| CliError::new(Kind::Generic, "the authsome binary's path is not UTF-8"))
}

/// The first absolute `PATH` entry whose `authsome` is the file `exe`.
fn on_path(path_var: &std::ffi::OsStr, exe: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let target = std::fs::metadata(exe).ok()?;
    std::env::split_paths(path_var).filter(|dir| dir.is_absolute()).map(|dir| dir.join("authsome")).find(|candidate| {
        std::fs::metadata(candidate).is_ok_and(|m| m.dev() == target.dev() && m.ino() == target.ino())
    })
}

/// Write the file if anything changed (after a backup), then report.
#[allow(clippy::too_many_arguments)]
fn finish(
    ctx: &Context,
    file: &file::ConfigFile,
    client: Client,
    doc: &Value,
    servers: Vec<Server>,
    dry_run: bool,
    held_keys: bool,
    verb: &str,
) -> CliResult {
    let changed = *doc != file.doc;
    let mut backup = None;
    if changed && !dry_run {
        let path = file.backup(held_keys)?;
        file.replace(&file.render(doc))?;
        ctx.audit(
            authsome_vault::AuditEvent::new(&format!("mcp_{verb}"))
                .field("path", file.path.display().to_string())
                .field("backup", path.display().to_string()),
        );
        backup = Some(path);
    }
    if ctx.out.json {
        ctx.out.json(&json!({
            "v": 1,
            "path": file.path,
            "client": client.label(),
            "dry_run": dry_run,
            "changed": changed,
            "backup": backup,
            "servers": servers.iter().map(server_json).collect::<Vec<_>>(),
        }));
        return Ok(());
    }
    ctx.out.data(&render_text(file, client, &servers, verb));
    if dry_run {
        ctx.out.note(if changed { "Nothing written (--dry-run)." } else { "Nothing to change." });
    } else if let Some(backup) = &backup {
        let keys =
            if held_keys { " (0600: it holds the keys now in the vault; delete it once you have checked)" } else { "" };
        ctx.out.note(&format!("Wrote {}; the original is at {}{keys}.", file.path.display(), backup.display()));
    } else {
        ctx.out.note("Nothing to change.");
    }
    if verb == "unwrap" && servers.iter().any(|s| !s.vars.is_empty()) {
        ctx.out.note(
            "The keys stay in the vault: start the editor with them in its environment, e.g. \
             eval \"$(authsome export PROVIDER --format shell)\", or wrap again.",
        );
    }
    Ok(())
}

fn server_json(server: &Server) -> Value {
    json!({
        "name": server.name,
        "project": server.project,
        "status": server.status,
        "command": server.command,
        "run_flags": server.flags,
        "reason": server.reason,
        "env": server.vars.iter().map(|v| json!({
            "name": v.name, "status": v.status, "provider": v.provider, "vault": v.vault,
        })).collect::<Vec<_>>(),
    })
}

/// A diff-like summary: `~` changed, `=` left as it is, `!` left alone for a reason. Names and
/// providers only, never a value.
fn render_text(file: &file::ConfigFile, client: Client, servers: &[Server], verb: &str) -> String {
    let mut out = format!("{} ({})\n", file.path.display(), client.label());
    for server in servers {
        let label = match &server.project {
            Some(project) => format!("{project}: {}", server.name),
            None => server.name.clone(),
        };
        let command = server.command.as_deref().unwrap_or("?");
        let line = match server.status {
            "wrapped" => {
                let flags =
                    if server.flags.is_empty() { String::new() } else { format!("{} ", server.flags.join(" ")) };
                format!("~ {label}: {command} … → authsome run {flags}-- {command} …")
            }
            "unwrapped" => format!("~ {label}: authsome run … -- {command} … → {command} …"),
            "already_wrapped" => format!("= {label}: already runs under authsome ({command})"),
            "not_wrapped" => format!("= {label}: not wrapped"),
            "remote" => format!("= {label}: remote (URL) server, left alone"),
            _ => format!("! {label}: left alone: {}", server.reason.as_deref().unwrap_or("not understood")),
        };
        out.push_str(&line);
        out.push('\n');
        for var in &server.vars {
            let provider = var.provider.as_deref().unwrap_or("?");
            let text = match (verb, var.status) {
                (_, "moved") => format!(
                    "env.{}: {provider} key → the vault ({provider}/{CONNECTION}, {}); the file keeps authsome:{provider}/{CONNECTION}",
                    var.name,
                    var.vault.unwrap_or_default().replace('_', " ")
                ),
                ("unwrap", "reference") => format!(
                    "env.{}: → {} (the key stays in the vault as {provider})",
                    var.name,
                    client.env_reference(&var.name).unwrap_or_default()
                ),
                (_, "removed") => format!(
                    "env.{}: removed ({} cannot refer to its environment; the key stays in the vault as {provider})",
                    var.name,
                    client.label()
                ),
                (_, "reference") => format!("env.{}: kept (a reference, not a key)", var.name),
                (_, "invalid") => format!("env.{}: named like a {provider} key but not shaped like one", var.name),
                (_, "different") => format!("env.{}: differs from the vault's {provider}/{CONNECTION}", var.name),
                _ => format!("env.{}: kept in the file (matches no provider)", var.name),
            };
            out.push_str(&format!("    {text}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_path_entry_that_runs_this_binary_is_preferred() {
        let dir = tempfile::tempdir().unwrap();
        let cellar = dir.path().join("cellar/1.0/bin");
        let bin = dir.path().join("bin");
        let other = dir.path().join("other");
        for d in [&cellar, &bin, &other] {
            std::fs::create_dir_all(d).unwrap();
        }
        let exe = cellar.join("authsome");
        std::fs::write(&exe, "binary").unwrap();
        std::fs::write(other.join("authsome"), "another binary").unwrap();
        std::os::unix::fs::symlink(&exe, bin.join("authsome")).unwrap();
        let path_var = std::env::join_paths([other.as_path(), Path::new("relative"), bin.as_path()]).unwrap();
        assert_eq!(on_path(&path_var, &exe), Some(bin.join("authsome")));
        let path_var = std::env::join_paths([other.as_path()]).unwrap();
        assert_eq!(on_path(&path_var, &exe), None);
    }
}
