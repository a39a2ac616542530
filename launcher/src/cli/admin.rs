//! Housekeeping commands: `log`, `set-default`, `register`, `profile`, `doctor`, `completions`.

use std::path::{Path, PathBuf};

use authsome_vault::{AuditEvent, CreateOptions, DEFAULT_KEY_CACHE_SECONDS, KeyBackend, profiles};
use serde_json::{Value, json};

use super::args::{
    Cli, CompletionsArgs, DoctorArgs, KeyBackendArg, LogArgs, ProfileCommand, ProfileCreateArgs, ProfileDeleteArgs,
    RegisterArgs, SetDefaultArgs, ShellArg,
};
use super::show::vault_status;
use crate::context::{Context, confirm};
use crate::error::{CliError, CliResult, Kind, usage};
use crate::providers::ledger::{self, Ledger};
use crate::providers::{Inject, Provider, Source, parse_definition, trust};

pub(crate) fn log(ctx: &Context, args: &LogArgs) -> CliResult {
    if let Some(id) = &args.run {
        return super::log::run(ctx, id);
    }
    if args.denied {
        return super::log::denied(ctx, args);
    }
    let lines = ctx.audit_log.tail(args.lines)?;
    let Some(lines) = lines else {
        if ctx.out.json {
            ctx.out.json(&json!([]));
        } else {
            ctx.out.note("No audit log found.");
        }
        return Ok(());
    };
    if ctx.out.json {
        let entries: Vec<Value> =
            lines.iter().map(|l| serde_json::from_str(l).unwrap_or_else(|_| json!({"unparsed": l}))).collect();
        ctx.out.json(&Value::Array(entries));
    } else if !lines.is_empty() {
        ctx.out.data(&lines.join("\n"));
    }
    Ok(())
}

pub(crate) fn set_default(ctx: &Context, args: &SetDefaultArgs) -> CliResult {
    let provider = ctx.catalog().require(&args.provider)?.provider.name.clone();
    authsome_vault::validate_name("connection", &args.connection)?;
    let mut vault = ctx.vault()?;
    vault.require_connection(&provider, &args.connection)?;
    let (store, _) = vault.writer(&ctx.key_source, ctx.create)?;
    store.set_default(&provider, &args.connection)?;
    ctx.audit(AuditEvent::new("set_default").provider(&provider).connection(&args.connection));
    if ctx.out.json {
        ctx.out.json(&json!({"status": "ok", "provider": provider, "default_connection": args.connection}));
    } else {
        ctx.out.note(&format!("Default connection for {provider} is now '{}'.", args.connection));
    }
    Ok(())
}

pub(crate) fn register(ctx: &Context, args: &RegisterArgs) -> CliResult {
    let text = std::fs::read_to_string(&args.file)
        .map_err(|e| CliError::new(Kind::Generic, format!("cannot read {}: {e}", args.file.display())))?;
    let (provider, legacy) = parse_definition(&text).map_err(|message| {
        CliError::new(Kind::Generic, format!("{}: {message}", args.file.display()))
            .hint("see `authsome inspect openai` for a complete example of the format")
    })?;
    let catalog = ctx.catalog();
    let existing = catalog.get(&provider.name);
    // Registering the file that is already in place confirms it (after a warning that its extra
    // hosts are ignored); that replaces nothing, so it needs no --force.
    let in_place = existing.and_then(|e| e.path.as_deref()).is_some_and(|path| same_file(path, &args.file));
    if let Some(entry) = existing
        && entry.source == Source::Custom
        && !args.force
        && !in_place
    {
        return Err(CliError::new(Kind::Generic, format!("provider '{}' is already registered", provider.name))
            .hint("pass --force to replace it"));
    }
    let bundled = catalog.bundled(&provider.name).map(|e| e.provider.clone());
    let extra = bundled.as_ref().map(|b| trust::extra_hosts(&provider.hosts, &b.hosts)).unwrap_or_default();
    let new_oauth = bundled.as_ref().is_some_and(|b| trust::routes_tokens_elsewhere(&provider, b));
    ctx.out.note(&register_summary(&provider, legacy, bundled.as_ref(), &extra));
    if !args.yes {
        let question = match (extra.is_empty(), new_oauth) {
            (true, false) => format!("Register '{}'?", provider.name),
            (false, _) => format!("Register '{}' and send its credentials to {} too?", provider.name, extra.join(", ")),
            (true, true) => format!("Register '{}' with its own OAuth endpoints?", provider.name),
        };
        match confirm(&question) {
            Some(true) => {}
            Some(false) => {
                ctx.out.note("Registration aborted.");
                return Ok(());
            }
            None => {
                return Err(CliError::new(
                    Kind::InputCancelled,
                    "cannot ask for confirmation: standard input is not a terminal",
                )
                .hint("pass --yes to register without asking"));
            }
        }
    }
    let path = write_definition(ctx, &provider)?;
    let endpoints: Vec<String> = provider
        .oauth
        .iter()
        .flat_map(|o| {
            [
                Some(&o.token_url),
                o.authorization_url.as_ref(),
                o.revocation_url.as_ref(),
                o.device_authorization_url.as_ref(),
            ]
        })
        .flatten()
        .cloned()
        .collect();
    ctx.audit(
        AuditEvent::new("register")
            .provider(&provider.name)
            .field("hosts", provider.hosts.clone())
            .field("extra_hosts", extra.clone())
            .field("endpoints", endpoints),
    );
    if ctx.out.json {
        ctx.out.json(&json!({"status": "registered", "provider": provider.name, "path": path.display().to_string(), "converted": legacy}));
    } else {
        ctx.out.note(&format!("Registered {} ({}).", provider.name, path.display()));
    }
    Ok(())
}

/// What `register` is about to do, with what a definition changes in a bundled provider's
/// routing (extra hosts, other OAuth endpoints) spelled out.
fn register_summary(provider: &Provider, legacy: bool, bundled: Option<&Provider>, extra: &[String]) -> String {
    let credential = match &provider.inject {
        Inject::Header { name, value } => format!("header {name}: {}", value.replace("{secret}", "<secret>")),
        Inject::Basic { .. } => "HTTP Basic".to_string(),
        Inject::Query { name } => format!("query parameter {name}"),
        Inject::Headers { headers } => {
            headers.iter().map(|h| format!("header {}", h.name)).collect::<Vec<_>>().join(", ")
        }
    };
    let mut summary = format!(
        "Provider:   {} ({})\nHosts:      {}{}\nCredential: {credential}\n",
        provider.name,
        provider.display_name,
        provider.hosts.join(", "),
        provider.path_prefix.as_deref().map(|p| format!(" (paths under {p})")).unwrap_or_default(),
    );
    if legacy {
        summary.push_str("Format:     converted from a Python authsome provider file\n");
    }
    let Some(bundled) = bundled else { return summary.trim_end().to_string() };
    summary.push_str("Note:       this replaces the bundled provider of the same name\n");
    if !extra.is_empty() {
        summary.push_str(&format!(
            "Adds hosts: {} (beyond the bundled {}); {} credentials will be sent there too\n",
            extra.join(", "),
            bundled.hosts.join(", "),
            provider.name
        ));
    }
    if trust::routes_tokens_elsewhere(provider, bundled) {
        let token_url = provider.oauth.as_ref().map_or("none", |o| o.token_url.as_str());
        summary.push_str(&format!(
            "OAuth:      differs from the bundled provider's; codes, tokens and client secrets go to {token_url}\n"
        ));
    }
    summary.trim_end().to_string()
}

/// Write the definition to `providers/<name>.json` and record its hash and hosts in the ledger
/// of confirmed files, so the catalog grants the hosts the user just saw.
fn write_definition(ctx: &Context, provider: &Provider) -> CliResult<PathBuf> {
    ctx.home.ensure()?;
    let dir = ctx.home.providers_dir();
    std::fs::create_dir_all(&dir).map_err(|e| CliError::new(Kind::Generic, format!("{}: {e}", dir.display())))?;
    let path = dir.join(format!("{}.json", provider.name));
    let body = serde_json::to_string_pretty(provider).map_err(|e| CliError::new(Kind::Generic, e.to_string()))? + "\n";
    let tmp = dir.join(format!(".{}.json.tmp", provider.name));
    std::fs::write(&tmp, &body)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| CliError::new(Kind::Generic, format!("cannot write {}: {e}", path.display())))?;
    let ledger_path = ledger::path(&ctx.home);
    // A damaged ledger is started afresh: that forgets confirmations, it never invents one.
    let mut ledger = Ledger::read(&ledger_path).ok().flatten().unwrap_or_default();
    ledger.confirm(&provider.name, ledger::sha256_hex(body.as_bytes()), provider.hosts.clone());
    ledger.forget_missing(&dir);
    ledger.write(&ledger_path).map_err(|e| {
        CliError::new(Kind::Generic, format!("cannot record the confirmation in {}: {e}", ledger_path.display())).hint(
            format!(
                "{} is written, but hosts it adds to a bundled provider stay ignored until this works",
                path.display()
            ),
        )
    })?;
    Ok(path)
}

/// Whether two paths name the same file (a missing file is nobody's).
fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

pub(crate) fn profile(ctx: &Context, command: &ProfileCommand) -> CliResult {
    match command {
        ProfileCommand::List => profile_list(ctx),
        ProfileCommand::Create(args) => profile_create(ctx, args),
        ProfileCommand::Use(args) => {
            profiles::set_default(&ctx.home, &args.name)?;
            ctx.audit(AuditEvent::new("profile_use").field("name", args.name.clone()));
            if ctx.out.json {
                ctx.out.json(&json!({"status": "ok", "default_profile": args.name}));
            } else {
                ctx.out.note(&format!("Default profile is now '{}'.", args.name));
            }
            Ok(())
        }
        ProfileCommand::Delete(args) => profile_delete(ctx, args),
    }
}

fn profile_list(ctx: &Context) -> CliResult {
    let list = profiles::list(&ctx.home)?;
    if ctx.out.json {
        ctx.out.json(&json!({
            "v": 1,
            "profiles": list.iter().map(|p| json!({
                "name": p.name, "default": p.is_default, "key_backend": p.key_backend, "created_at": p.created_at,
                "active": p.name == ctx.profile,
            })).collect::<Vec<_>>(),
        }));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = list
        .into_iter()
        .map(|p| {
            let marker = if p.name == ctx.profile { "*" } else { " " };
            let default = if p.is_default { " (default)" } else { "" };
            let backend = p.key_backend.unwrap_or_else(|| "not created yet".into());
            vec![format!("{marker} {}{default}", p.name), format!("[{backend}]")]
        })
        .collect();
    ctx.out.data(&super::show::columns(&rows));
    Ok(())
}

fn profile_create(ctx: &Context, args: &ProfileCreateArgs) -> CliResult {
    let backend = args.key_backend.map(|arg| match arg {
        KeyBackendArg::File => KeyBackend::File,
        KeyBackendArg::Passphrase => KeyBackend::Passphrase,
        KeyBackendArg::Keyring => KeyBackend::Keyring,
    });
    if args.key_cache.is_some() && backend != Some(KeyBackend::Passphrase) {
        return Err(usage("--key-cache only applies to --key-backend passphrase"));
    }
    let key_cache_seconds = match backend {
        Some(KeyBackend::Passphrase) => args.key_cache.unwrap_or(DEFAULT_KEY_CACHE_SECONDS),
        _ => 0,
    };
    let backend =
        profiles::create(&ctx.home, &args.name, CreateOptions { backend, key_cache_seconds }, &ctx.key_source)?;
    ctx.audit(
        AuditEvent::new("profile_create").field("name", args.name.clone()).field("key_backend", backend.as_str()),
    );
    if ctx.out.json {
        ctx.out.json(&json!({"status": "created", "profile": args.name, "key_backend": backend.as_str()}));
    } else {
        ctx.out.note(&format!(
            "Created profile '{}' (key backend: {}). Use it with --profile {} or `authsome profile use {}`.",
            args.name,
            backend.as_str(),
            args.name,
            args.name
        ));
    }
    Ok(())
}

fn profile_delete(ctx: &Context, args: &ProfileDeleteArgs) -> CliResult {
    if !args.yes {
        match confirm(&format!("Delete profile '{}' and every credential in it? This cannot be undone.", args.name)) {
            Some(true) => {}
            Some(false) => {
                ctx.out.note("Nothing deleted.");
                return Ok(());
            }
            None => {
                return Err(CliError::new(
                    Kind::InputCancelled,
                    "cannot ask for confirmation: standard input is not a terminal",
                )
                .hint("pass --yes to delete without asking"));
            }
        }
    }
    let was_default = profiles::default_profile(&ctx.home)? == args.name;
    if let Some(leftover) = profiles::delete(&ctx.home, &args.name, &ctx.key_source)? {
        ctx.out.warn(&format!(
            "{leftover}; remove it with your keychain's tools (for instance `secret-tool clear application authsome`)"
        ));
    }
    ctx.audit(AuditEvent::new("profile_delete").field("name", args.name.clone()).field("was_default", was_default));
    let now_default = profiles::default_profile(&ctx.home)?;
    if ctx.out.json {
        ctx.out.json(&json!({
            "status": "deleted", "profile": args.name, "was_default": was_default, "default_profile": now_default,
        }));
    } else if was_default {
        ctx.out.note(&deleted_default_note(&args.name, &now_default, &profiles::list(&ctx.home)?));
    } else {
        ctx.out.note(&format!("Deleted profile '{}'.", args.name));
    }
    Ok(())
}

/// What deleting the default profile did: commands now use `now_default` (which may not exist
/// yet), and how to choose another.
fn deleted_default_note(deleted: &str, now_default: &str, remaining: &[profiles::ProfileInfo]) -> String {
    let state = match remaining.iter().find(|p| p.name == now_default) {
        Some(p) if p.key_backend.is_some() => "",
        _ => ", which is empty: the next login creates it",
    };
    let mut note = format!(
        "Deleted profile '{deleted}', which was the default. Commands now use the profile '{now_default}'{state}."
    );
    let others: Vec<&str> = remaining.iter().map(|p| p.name.as_str()).filter(|n| *n != now_default).collect();
    if others.is_empty() {
        note.push_str(" Create another with `authsome profile create NAME`.");
    } else {
        note.push_str(&format!(
            " To make another the default: `authsome profile use NAME` ({}).",
            others.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(", ")
        ));
    }
    note
}

pub(crate) fn doctor(ctx: &Context, args: &DoctorArgs) -> CliResult {
    if args.sandbox {
        return doctor_sandbox(ctx, &args.require);
    }
    let mut checks = serde_json::Map::new();
    let mut issues: Vec<String> = Vec::new();

    let config = authsome_vault::Config::load(&ctx.home.config_path());
    match (&config, ctx.home.foreign_format()) {
        (_, Some(format)) => {
            checks.insert("config".into(), json!("error"));
            issues.push(format!("{} was written by the Python authsome ({format})", ctx.home.root().display()));
        }
        (Ok(_), None) => {
            checks.insert("config".into(), json!("ok"));
        }
        (Err(e), None) => {
            checks.insert("config".into(), json!("error"));
            issues.push(e.to_string());
        }
    }

    let catalog = ctx.catalog();
    if catalog.problems.is_empty() {
        checks.insert("providers".into(), json!("ok"));
    } else {
        checks.insert("providers".into(), json!("error"));
        issues.extend(catalog.problems.iter().map(|p| format!("{}: {}", p.path.display(), p.message)));
    }

    match ctx.vault() {
        Ok(vault) => {
            let (_, status) = vault_status(&vault);
            if status == "ok" || status == "not_created" || status == "locked" {
                checks.insert("vault".into(), json!("ok"));
            } else {
                checks.insert("vault".into(), json!("error"));
                issues.push(status);
            }
        }
        Err(e) => {
            checks.insert("vault".into(), json!("error"));
            issues.push(e.message);
        }
    }

    // Not a readiness check: the keychain is optional (profiles fall back to a key file).
    let keychain = crate::os_keychain().is_some_and(|k| k.available());
    let backends: Vec<(String, String)> = profiles::list(&ctx.home)
        .unwrap_or_default()
        .into_iter()
        .map(|p| (p.name, p.key_backend.unwrap_or_else(|| "not created yet".into())))
        .collect();

    // Not a readiness check either: containers of killed `run --sandbox=container` runs, when a
    // container engine is installed.
    #[cfg(target_os = "linux")]
    let leftovers = crate::container::engine::ContainerEngine::detect(&std::env::vars_os().collect::<Vec<_>>())
        .ok()
        .and_then(|engine| crate::container::leftover_runs(&engine).ok());
    #[cfg(not(target_os = "linux"))]
    let leftovers: Option<Vec<String>> = None;

    let ready = issues.is_empty();
    if ctx.out.json {
        let profiles: Vec<Value> =
            backends.iter().map(|(name, backend)| json!({"name": name, "key_backend": backend})).collect();
        ctx.out.json(&json!({
            "status": if ready { "ready" } else { "not_ready" },
            "checks": checks,
            "issues": issues,
            "keychain": if keychain { "available" } else { "unavailable" },
            "profiles": profiles,
            "container_leftovers": leftovers,
        }));
    } else {
        let mut text = String::new();
        for (name, value) in &checks {
            text.push_str(&format!("{name}: {}\n", value.as_str().unwrap_or("?").to_uppercase()));
        }
        text.push_str(if keychain {
            "keychain: OK (the Secret Service answers, unlocked: new profiles keep their key there)\n"
        } else {
            "keychain: NOT AVAILABLE (new profiles keep their key in a 0600 file)\n"
        });
        for (name, backend) in &backends {
            text.push_str(&format!("profile {name}: key backend {backend}\n"));
        }
        if let Some(runs) = leftovers.as_ref().filter(|runs| !runs.is_empty()) {
            text.push_str(&format!(
                "containers: {} run(s) left behind by killed runs (`authsome sandbox prune` removes them)\n",
                runs.len()
            ));
        }
        for issue in &issues {
            text.push_str(&format!("  - {issue}\n"));
        }
        ctx.out.data(&text);
    }
    if ready { Ok(()) } else { Err(CliError::new(Kind::Generic, "authsome is not ready").reported()) }
}

pub(crate) fn completions(args: &CompletionsArgs) -> CliResult {
    use clap::CommandFactory;
    let shell = match args.shell {
        ShellArg::Bash => clap_complete::Shell::Bash,
        ShellArg::Zsh => clap_complete::Shell::Zsh,
        ShellArg::Fish => clap_complete::Shell::Fish,
    };
    let mut command = Cli::command();
    clap_complete::generate(shell, &mut command, "authsome", &mut std::io::stdout());
    Ok(())
}

/// `doctor --sandbox`: host facts, a live start of the sandbox running `true`, then the
/// runtime matrix (`runtimes.rs`) when sandboxes work.
#[cfg(target_os = "linux")]
fn doctor_sandbox(ctx: &Context, require: &[String]) -> CliResult {
    super::runtimes::check_names(require)?;
    let report = authsome_netns::probe();
    let matrix = report.ok().then(super::runtimes::run_matrix);
    let unmet = match &matrix {
        Some(Ok(matrix)) => super::runtimes::unmet(matrix, require),
        _ => require.iter().map(|name| format!("{name} (not run)")).collect(),
    };
    let facts = &report.facts;
    let live = match &report.live {
        Ok(took) => json!({"ok": true, "millis": took.as_secs_f64() * 1e3}),
        Err(e) => json!({"ok": false, "error": e.to_string(), "hint": e.hint()}),
    };
    let protected: Vec<String> = authsome_netns::PROTECTED_NAMES
        .iter()
        .map(|n| n.to_string())
        .chain(authsome_netns::GIT_DIR_PROTECTED.iter().map(|n| format!(".git/{n}")))
        .collect();
    if ctx.out.json {
        ctx.out.json(&json!({
            "v": 1,
            "status": if report.ok() { "ready" } else { "not_ready" },
            "facts": {
                "euid": facts.euid,
                "unprivileged_userns_clone": facts.unprivileged_userns_clone,
                "max_user_namespaces": facts.max_user_namespaces,
                "apparmor_restrict_unprivileged_userns": facts.apparmor_restrict_userns,
                "container": facts.container,
            },
            "static_problem": report.static_problem.as_ref().map(|e| e.to_string()),
            "live_probe": live,
            "runtimes": match &matrix {
                Some(Ok(matrix)) => super::runtimes::to_json(matrix),
                Some(Err(e)) => json!({"error": e.message, "causes": e.causes}),
                None => Value::Null,
            },
            "required": {"runtimes": require, "failed": unmet},
            "defaults": {
                "egress": "providers",
                "home": "private",
                "protected_in_writable_paths": protected,
                "working_directory_not_writable": ["home", "ancestor of home", "/tmp"],
                "placeholders": "declared credential locations only",
            },
        }));
    } else {
        let show = |v: Option<u64>| v.map_or("not present".to_string(), |v| v.to_string());
        let user = format!(
            "uid {}{}",
            facts.euid,
            if facts.euid == 0 { " (root: the command keeps uid 0 without capabilities)" } else { "" }
        );
        let live = match &report.live {
            Ok(took) => format!("OK (live probe started and ran `true` in {:.1} ms)", took.as_secs_f64() * 1e3),
            Err(e) => format!("NOT AVAILABLE: {e}\n  hint: {}", e.hint()),
        };
        let mut rows = vec![
            ("user", user),
            ("kernel.unprivileged_userns_clone", show(facts.unprivileged_userns_clone)),
            ("user.max_user_namespaces", show(facts.max_user_namespaces)),
            ("kernel.apparmor_restrict_unprivileged_userns", show(facts.apparmor_restrict_userns)),
            ("container", facts.container.clone().unwrap_or_else(|| "no".into())),
            ("sandbox", live),
            ("default egress", "hosts of the connected providers, plus --allow (--egress all: every host)".into()),
            ("default home", "private and empty, toolchains read-only (--fs home: the real one)".into()),
            ("read-only in writable paths", protected.join(" ")),
            ("never writable as the cwd", "your home, its ancestors, /tmp (unless --fs open)".into()),
            ("placeholders", "swapped only where the provider takes its credential".into()),
        ];
        if let Some(Ok(matrix)) = &matrix {
            rows.push(("runtimes", super::runtimes::summary(matrix)));
        }
        let width = rows.iter().map(|(name, _)| name.len()).max().unwrap_or(0) + 1;
        let text: String = rows
            .iter()
            .map(|(name, value)| format!("{:<width$} {value}\n", format!("{name}:"), width = width))
            .collect();
        ctx.out.data(&text);
        match &matrix {
            Some(Ok(matrix)) => ctx.out.data(&super::runtimes::table(matrix)),
            Some(Err(e)) => ctx.out.error(e),
            None => {}
        }
    }
    if !report.ok() {
        return Err(CliError::new(Kind::Generic, "sandboxes do not work here").reported());
    }
    if let Some(Err(e)) = matrix {
        return Err(e.reported());
    }
    if unmet.is_empty() {
        return Ok(());
    }
    let e = CliError::new(Kind::Generic, format!("required runtimes failed: {}", unmet.join(", ")))
        .hint("the table above says, for each client, the error and the fix");
    // With --json the document says it (`required.failed`): one document on stdout.
    Err(if ctx.out.json { e.reported() } else { e })
}

#[cfg(not(target_os = "linux"))]
fn doctor_sandbox(_ctx: &Context, _require: &[String]) -> CliResult {
    Err(CliError::new(Kind::Generic, "`run --sandbox` needs Linux network namespaces"))
}
