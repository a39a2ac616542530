//! `scan [PATH…] [--import]`: find credentials in `.env` files and the process environment,
//! compare them with the vault, and import them.
//!
//! Sources are read in order (each path's `.env`, `.env.local`, `.env.prod`,
//! `.env.production`, then the environment); a later source wins. Malformed lines are
//! reported with their line number and skipped; nothing is lost or half-imported. Statuses are
//! upstream's (`env_only`, `env_and_authsome_match`, …) plus `imported`, `skipped_unchanged`,
//! `skipped_different` (use --force) and `invalid_format`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use authsome_vault::{AuditEvent, ConnectionMeta, SecretSource, Secrets};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use super::args::ScanArgs;
use crate::auth::api_key;
use crate::context::Context;
use crate::error::{CliError, CliResult, Kind};
use crate::providers::{AuthType, Provider};

pub(crate) const DOTENV_FILES: &[&str] = &[".env", ".env.local", ".env.prod", ".env.production"];

/// One `KEY=value` found, and where.
#[derive(Debug)]
pub(crate) struct Found {
    pub(crate) value: SecretString,
    pub(crate) source: String,
}

/// A line that could not be read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct BadLine {
    pub(crate) line: usize,
    pub(crate) reason: &'static str,
}

/// Parse a `.env` file: blank lines and `#` comments skipped, `export ` stripped, single quotes
/// literal, double quotes with `\n \t \" \\` escapes (and may span lines), unquoted values end
/// at ` #`. Returns the pairs in file order and the lines it could not read.
pub(crate) fn parse_dotenv(text: &str) -> (Vec<(String, String)>, Vec<BadLine>) {
    let mut pairs = Vec::new();
    let mut bad = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let number = i + 1;
        let line = lines[i].trim_start_matches('\u{feff}').trim();
        i += 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").map(str::trim_start).unwrap_or(line);
        let Some((key, rest)) = line.split_once('=') else {
            bad.push(BadLine { line: number, reason: "not KEY=VALUE" });
            continue;
        };
        let key = key.trim();
        let key_ok = key.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        if !key_ok {
            bad.push(BadLine { line: number, reason: "not a variable name" });
            continue;
        }
        let rest = rest.trim_start();
        let value = if let Some(body) = rest.strip_prefix('\'') {
            match body.find('\'') {
                Some(end) => body[..end].to_string(),
                None => {
                    bad.push(BadLine { line: number, reason: "unterminated single quote" });
                    continue;
                }
            }
        } else if let Some(body) = rest.strip_prefix('"') {
            // May continue over following lines until the closing quote.
            let mut raw = body.to_string();
            let resume_at = i;
            let mut closed = None;
            loop {
                if let Some(end) = closing_double_quote(&raw) {
                    closed = Some(end);
                    break;
                }
                if i >= lines.len() {
                    break;
                }
                raw.push('\n');
                raw.push_str(lines[i]);
                i += 1;
            }
            match closed {
                Some(end) => unescape_double(&raw[..end]),
                None => {
                    // Do not let one stray quote swallow the rest of the file.
                    bad.push(BadLine { line: number, reason: "unterminated double quote" });
                    i = resume_at;
                    continue;
                }
            }
        } else {
            let value = match rest.find(" #") {
                Some(at) => &rest[..at],
                None => rest,
            };
            value.trim().to_string()
        };
        pairs.push((key.to_string(), value));
    }
    (pairs, bad)
}

fn closing_double_quote(s: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            '"' if !escaped => return Some(i),
            _ => escaped = false,
        }
    }
    None
}

fn unescape_double(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// env name → (provider index, field). The first provider (catalog order) to claim a name
/// keeps it.
pub(crate) fn env_index(providers: &[&Provider]) -> BTreeMap<String, (usize, &'static str)> {
    let mut index = BTreeMap::new();
    for (i, provider) in providers.iter().enumerate() {
        let field = provider.primary_field();
        for name in provider.env_names(field) {
            index.entry(name.clone()).or_insert((i, field));
        }
    }
    index
}

pub(crate) fn scan(ctx: &Context, args: &ScanArgs) -> CliResult {
    let catalog = ctx.catalog();
    let providers: Vec<&Provider> = catalog.entries().iter().map(|e| &e.provider).collect();
    let index = env_index(&providers);
    authsome_vault::validate_name("connection", &args.connection)?;

    // Read every source; later sources win.
    let mut found: BTreeMap<String, Found> = BTreeMap::new();
    let mut scanned = Vec::new();
    let roots = if args.paths.is_empty() { vec![PathBuf::from(".")] } else { args.paths.clone() };
    for root in &roots {
        let files: Vec<PathBuf> = if root.is_dir() {
            DOTENV_FILES.iter().map(|f| root.join(f)).filter(|p| p.is_file()).collect()
        } else if root.is_file() {
            vec![root.clone()]
        } else {
            return Err(CliError::new(Kind::Usage, format!("{} does not exist", root.display())));
        };
        for file in files {
            read_file(ctx, &file, &index, &mut found)?;
            scanned.push(file.display().to_string());
        }
    }
    if !args.no_env {
        for (name, value) in std::env::vars_os() {
            let (Some(name), Some(value)) = (name.to_str(), value.to_str()) else { continue };
            if index.contains_key(name) && !value.trim().is_empty() {
                found.insert(
                    name.to_string(),
                    Found { value: SecretString::from(value.trim().to_string()), source: "environment".into() },
                );
            }
        }
        scanned.push("environment".into());
    }

    let mut vault = ctx.vault()?;
    let mut results = Vec::new();
    let mut imported = 0;
    let mut configured = 0;
    for (i, provider) in providers.iter().enumerate() {
        let field = provider.primary_field();
        // The last-read source among this provider's names wins; names are tried in the
        // provider's order of preference.
        let hit = provider.env_names(field).iter().find_map(|name| {
            (index.get(name) == Some(&(i, field))).then(|| found.get(name).map(|f| (name.clone(), f))).flatten()
        });
        let existing = vault.connection(&provider.name, &args.connection)?;
        let (env_var, source) = hit.as_ref().map_or((provider.env_names(field).first().cloned(), None), |(n, f)| {
            (Some(n.clone()), Some(f.source.clone()))
        });
        let status = match (&hit, &existing) {
            (None, None) => "both_missing".to_string(),
            (None, Some(_)) => "authsome_only".to_string(),
            (Some((_, f)), existing) => {
                configured += 1;
                let stored = match existing {
                    Some(_) => stored_value(ctx, &vault, provider, &args.connection)?,
                    None => None,
                };
                let same = stored.as_ref().is_some_and(|s| s.expose_secret() == f.value.expose_secret());
                let valid =
                    api_key::check(provider, &f.value).is_ok() && !f.value.expose_secret().contains(char::is_control);
                match (args.import, existing.is_some(), same, valid) {
                    (_, true, true, _) => {
                        if args.import { "skipped_unchanged" } else { "env_and_authsome_match" }.to_string()
                    }
                    (_, _, _, false) => "invalid_format".to_string(),
                    (false, true, false, _) => "env_and_authsome_different".to_string(),
                    (false, false, _, _) => "env_only".to_string(),
                    (true, true, false, _) if !args.force => "skipped_different".to_string(),
                    (true, _, _, true) => {
                        import(ctx, &mut vault, provider, &args.connection, f)?;
                        imported += 1;
                        "imported".to_string()
                    }
                }
            }
        };
        results.push((provider.name.clone(), status, env_var, source));
    }

    if ctx.out.json {
        ctx.out.json(&json!({
            "v": 1,
            "connection": args.connection,
            "import": args.import,
            "configured_count": configured,
            "imported_count": imported,
            "scanned": scanned,
            "results": results.iter().map(|(provider, status, env_var, source)| json!({
                "provider": provider, "status": status, "env_var": env_var, "source": source,
            })).collect::<Vec<_>>(),
        }));
        return Ok(());
    }
    let shown: Vec<_> = results.iter().filter(|(_, status, _, _)| status != "both_missing").collect();
    let mut text = format!("Scanned: {}\n", scanned.join(", "));
    if shown.is_empty() {
        text.push_str("No credentials for known providers found.\n");
    }
    let rows: Vec<Vec<String>> = shown
        .iter()
        .map(|(provider, status, env_var, source)| {
            vec![
                provider.clone(),
                env_var.clone().unwrap_or_else(|| "-".into()),
                status.clone(),
                source.clone().unwrap_or_else(|| "authsome".into()),
            ]
        })
        .collect();
    text.push_str(&super::show::columns(&rows));
    ctx.out.data(&text);
    if !args.import && results.iter().any(|r| r.1 == "env_only" || r.1 == "env_and_authsome_different") {
        ctx.out.note("Run `authsome scan --import` to store them (add --force to replace different stored values).");
    } else if args.import {
        ctx.out.note(&format!("{imported} imported into connection '{}'.", args.connection));
    }
    Ok(())
}

fn read_file(
    ctx: &Context,
    file: &Path,
    index: &BTreeMap<String, (usize, &'static str)>,
    found: &mut BTreeMap<String, Found>,
) -> CliResult {
    let text = match std::fs::read(file) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => {
            ctx.out.warn(&format!("{}: {e}; skipped", file.display()));
            return Ok(());
        }
    };
    let (pairs, bad) = parse_dotenv(&text);
    for line in bad {
        ctx.out.warn(&format!("{}:{}: {}; line skipped", file.display(), line.line, line.reason));
    }
    for (name, value) in pairs {
        if index.contains_key(&name) && !value.trim().is_empty() {
            found.insert(
                name,
                Found { value: SecretString::from(value.trim().to_string()), source: file.display().to_string() },
            );
        }
    }
    Ok(())
}

/// The primary value stored in `provider`'s `connection` (which must exist).
pub(crate) fn stored_value(
    ctx: &Context,
    vault: &authsome_vault::Vault,
    provider: &Provider,
    connection: &str,
) -> CliResult<Option<SecretString>> {
    let secrets = vault.secrets(&ctx.key_source, &provider.name, connection)?;
    Ok(if provider.primary_field() == "api_key" { secrets.api_key } else { secrets.access_token })
}

/// Store `found` as `provider`'s `connection`, as `scan --import` does (audited as `import`).
pub(crate) fn import(
    ctx: &Context,
    vault: &mut authsome_vault::Vault,
    provider: &Provider,
    connection: &str,
    found: &Found,
) -> CliResult {
    let (auth_type, secrets) = match provider.auth_type {
        AuthType::ApiKey => (AuthType::ApiKey, Secrets { api_key: Some(found.value.clone()), ..Secrets::default() }),
        AuthType::OAuth2 => {
            (AuthType::OAuth2, Secrets { access_token: Some(found.value.clone()), ..Secrets::default() })
        }
    };
    let mut meta = ConnectionMeta::new(&provider.name, connection, auth_type, SecretSource::Imported);
    meta.host_url = provider.hosts.first().cloned();
    meta.metadata.insert("imported_from".into(), json!(found.source));
    let (store, key) = vault.writer(&ctx.key_source, ctx.create)?;
    store.put_connection(key, &meta, &secrets)?;
    ctx.audit(
        AuditEvent::new("import").provider(&provider.name).connection(connection).field("source", found.source.clone()),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotenv_forms() {
        let text = "\u{feff}# comment\n\nexport OPENAI_API_KEY=sk-abc # trailing\nA='lit $x \\n'\nB=\"esc \\\"q\\\" \\n end\"\nC=\"multi\nline\"\n  D = spaced  \nE=\nF=has#hash\n";
        let (pairs, bad) = parse_dotenv(text);
        assert!(bad.is_empty(), "{bad:?}");
        let map: BTreeMap<_, _> = pairs.into_iter().collect();
        assert_eq!(map["OPENAI_API_KEY"], "sk-abc");
        assert_eq!(map["A"], "lit $x \\n");
        assert_eq!(map["B"], "esc \"q\" \n end");
        assert_eq!(map["C"], "multi\nline");
        assert_eq!(map["D"], "spaced");
        assert_eq!(map["E"], "");
        assert_eq!(map["F"], "has#hash");
    }

    #[test]
    fn malformed_lines_are_reported_not_fatal() {
        let (pairs, bad) = parse_dotenv("GOOD=1\njust words\n9BAD=x\nQ='open\nR=\"never closed\nLATER=2\n");
        assert_eq!(pairs, vec![("GOOD".to_string(), "1".to_string()), ("LATER".to_string(), "2".to_string())]);
        assert_eq!(
            bad,
            vec![
                BadLine { line: 2, reason: "not KEY=VALUE" },
                BadLine { line: 3, reason: "not a variable name" },
                BadLine { line: 4, reason: "unterminated single quote" },
                BadLine { line: 5, reason: "unterminated double quote" },
            ]
        );
    }
}
