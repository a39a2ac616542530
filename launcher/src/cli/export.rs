//! `export`: credentials as environment variables.
//!
//! Naming follows the Python authsome: the provider's env names,
//! else `<PROVIDER>_<FIELD>`; a later holder of a taken name gets `_<PROVIDER>_<CONNECTION>`,
//! then `_2`, `_3`. Unlike upstream, a provider's default connection is exported first (so it
//! gets the plain names), `export PROVIDER` uses the default connection, and values are quoted.

use authsome_vault::AuditEvent;
use secrecy::ExposeSecret;
use serde_json::{Map, Value};

use super::args::{ExportArgs, ExportFormat};
use crate::auth::refresh;
use crate::context::Context;
use crate::error::{CliError, CliResult, Kind};
use crate::providers::Provider;
use crate::providers::env_names::{Var, assign_names};

/// Characters a POSIX shell leaves alone outside quotes.
fn shell_safe(value: &str) -> bool {
    !value.is_empty() && value.chars().all(|c| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c))
}

/// Single-quote for a POSIX shell (`'` becomes `'\''`), only when needed.
pub(crate) fn shell_quote(value: &str) -> String {
    if shell_safe(value) { value.to_string() } else { format!("'{}'", value.replace('\'', r"'\''")) }
}

/// A `.env` value that bash (`set -a; . ./.env`), docker compose and python-dotenv all read
/// back exactly, or `None` when no quoting does. Their rules differ: inside double quotes bash
/// expands `$` and backticks, compose expands `$`, python-dotenv decodes backslash escapes;
/// inside single quotes python-dotenv still decodes `\\` and `\'`. So: bare when only safe
/// characters, single quotes when there is no `'` nor such an escape, double quotes when there is none of
/// `"` `$` `` ` `` `\` `!`, else refuse. A newline has no common spelling at all.
pub(crate) fn dotenv_quote(value: &str) -> Option<String> {
    if value.contains(['\n', '\r', '\0']) {
        return None;
    }
    let bare = |c: char| c.is_ascii_alphanumeric() || "_-.:/+=@%,~".contains(c);
    if !value.is_empty() && value.chars().all(bare) {
        return Some(value.to_string());
    }
    // python-dotenv decodes `\\` and `\'` inside single quotes; any other backslash is literal.
    if !value.contains('\'') && !value.contains("\\\\") && !value.ends_with('\\') {
        return Some(format!("'{value}'"));
    }
    if !value.contains(['"', '$', '`', '\\', '!']) {
        return Some(format!("\"{value}\""));
    }
    None
}

pub(crate) fn render(vars: &[Var], format: ExportFormat) -> CliResult<String> {
    if format == ExportFormat::Json {
        let map: Map<String, Value> =
            vars.iter().map(|v| (v.name.clone(), Value::String(v.value.expose_secret().to_string()))).collect();
        return Ok(serde_json::to_string_pretty(&Value::Object(map)).unwrap_or_else(|_| "{}".into()) + "\n");
    }
    let mut out = String::new();
    for v in vars {
        let value = v.value.expose_secret();
        let line = match format {
            ExportFormat::Env => format!("{}={}\n", v.name, shell_quote(value)),
            ExportFormat::Shell => format!("export {}={}\n", v.name, shell_quote(value)),
            _ => match dotenv_quote(value) {
                Some(quoted) => format!("{}={quoted}\n", v.name),
                None => {
                    return Err(CliError::new(
                        Kind::Usage,
                        format!(
                            "the value of {} cannot be written as a .env line that every reader reads back",
                            v.name
                        ),
                    )
                    .hint("it mixes quotes with `$`, backslashes or a newline: use --format json or --format shell"));
                }
            },
        };
        out.push_str(&line);
    }
    Ok(out)
}

pub(crate) fn export(ctx: &Context, args: &ExportArgs) -> CliResult {
    let catalog = ctx.catalog();
    let vault = ctx.vault()?;

    // (provider, connection names in export order)
    let mut plan: Vec<(&Provider, Vec<String>)> = Vec::new();
    if let Some(name) = &args.provider {
        let provider = &catalog.require(name)?.provider;
        let connection = vault.resolve_connection_name(&provider.name, args.connection.as_deref())?;
        vault.require_connection(&provider.name, &connection)?;
        plan.push((provider, vec![connection]));
    } else {
        let connections = vault.list_connections()?;
        for entry in catalog.entries() {
            let mut names: Vec<&authsome_vault::ConnectionMeta> = connections
                .iter()
                .filter(|c| c.provider == entry.provider.name)
                .filter(|c| args.connection.as_deref().is_none_or(|wanted| c.name == wanted))
                .collect();
            names.sort_by_key(|c| (!c.is_default, c.name.clone()));
            if !names.is_empty() {
                plan.push((&entry.provider, names.into_iter().map(|c| c.name.clone()).collect()));
            }
        }
    }

    let mut items = Vec::new();
    for (provider, names) in &plan {
        for name in names {
            // OAuth tokens near expiry are refreshed first (no runtime is built otherwise).
            let secrets = match refresh::fresh_secrets_blocking(&vault, provider, name, false, &ctx.key_source) {
                Ok(fresh) => fresh.secrets,
                // Exporting everything: one dead connection does not hold back the others.
                Err(e) if args.provider.is_none() && e.kind == Kind::RefreshFailed => {
                    ctx.out.warn(&format!("skipping {}/{name}: {}", provider.name, e.message));
                    continue;
                }
                Err(e) => return Err(e),
            };
            for (field, value) in [
                ("api_key", secrets.api_key),
                ("access_token", secrets.access_token),
                ("refresh_token", secrets.refresh_token),
            ] {
                if let Some(value) = value {
                    items.push((*provider, name.clone(), field, value));
                }
            }
            // The second value of a two-value credential, under the names its SDK reads.
            if let Some(second) = &provider.second_value
                && let Some(value) = secrets.extra.get(&second.field)
            {
                items.push((*provider, name.clone(), second.field.as_str(), value.clone()));
            }
        }
    }
    let vars = assign_names(items);

    let format_word = match args.format {
        ExportFormat::Env => "env",
        ExportFormat::Shell => "shell",
        ExportFormat::Json => "json",
        ExportFormat::Dotenv => "dotenv",
    };
    let mut event = AuditEvent::new("export").field("format", format_word).field("variables", vars.len());
    if let Some(provider) = &args.provider {
        event = event.provider(provider);
    }
    event = event.connection(match (&args.provider, &plan.first()) {
        (Some(_), Some((_, names))) => names.first().map(String::as_str).unwrap_or("default"),
        _ => args.connection.as_deref().unwrap_or("all"),
    });
    ctx.audit_required(event)?;

    let text = render(&vars, args.format)?;
    if !text.is_empty() {
        print!("{text}");
    } else if args.format == ExportFormat::Json {
        println!("{{}}");
    }
    if !vars.is_empty() {
        ctx.out.note(
            "note: these are live secrets now in your terminal or shell; `authsome run -- CMD` keeps them out of the child's environment",
        );
    }
    if vars.is_empty() {
        // Upstream printed nothing for an empty vault; say why on stderr.
        ctx.out.note("nothing to export: this profile has no connections (store one with `authsome login PROVIDER`)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Catalog;
    use secrecy::SecretString;

    fn provider(name: &str) -> Provider {
        Catalog::bundled_only().get(name).unwrap().provider.clone()
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("sk-abc_123.x/y:z"), "sk-abc_123.x/y:z");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's $HOME `x`"), r"'it'\''s $HOME `x`'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(dotenv_quote("sk-abc_123"), Some("sk-abc_123".into()));
        assert_eq!(dotenv_quote("a $(id) `id` \"x\""), Some("'a $(id) `id` \"x\"'".into()));
        assert_eq!(dotenv_quote("it's"), Some("\"it's\"".into()));
        assert_eq!(dotenv_quote("it's $x"), None);
        assert_eq!(dotenv_quote("a\nb"), None);
    }

    #[test]
    fn quoted_values_survive_a_real_shell() {
        let nasty = "p@ss w'o\"rd $(touch /tmp/authsome-pwned) `id` \\ ; | & *";
        let openai = provider("openai");
        let vars = assign_names(vec![(&openai, "default".into(), "api_key", SecretString::from(nasty))]);
        let script = render(&vars, ExportFormat::Shell).unwrap() + "printf '%s' \"$OPENAI_API_KEY\"";
        let out = std::process::Command::new("sh").arg("-c").arg(&script).output().unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), nasty);
        assert!(!std::path::Path::new("/tmp/authsome-pwned").exists());
    }

    #[test]
    fn json_is_a_flat_map() {
        let openai = provider("openai");
        let vars = assign_names(vec![(&openai, "default".into(), "api_key", SecretString::from("sk-x"))]);
        let doc: Value = serde_json::from_str(&render(&vars, ExportFormat::Json).unwrap()).unwrap();
        assert_eq!(doc, serde_json::json!({"OPENAI_API_KEY": "sk-x"}));
    }
}
