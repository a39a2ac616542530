//! Read-only commands: `list`, `get`, `inspect`, `whoami`. They need neither the daemon nor
//! (except `get --show-secret`) the master key, so they answer in milliseconds.

use std::collections::BTreeMap;

use authsome_vault::{AuditEvent, ConnectionMeta, KeyBackend, Secrets, Vault};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use super::args::{GetArgs, ProviderArg};
use crate::context::{Context, NoPrompt};
use crate::error::{CliError, CliResult, Kind};
use crate::output::{Style, relative_expiry};
use crate::providers::{Entry, Source};

const REDACTED: &str = "***REDACTED***";

/// A connection in `list --json` / `inspect` (upstream's shape: `scopes` and `expires_at`
/// only when set).
fn connection_summary(meta: &ConnectionMeta) -> Value {
    let mut doc = json!({
        "connection_name": meta.name,
        "is_default": meta.is_default,
        "auth_type": meta.auth_type.as_str(),
        "status": meta.status.as_str(),
    });
    if let Some(scopes) = meta.scopes.as_ref().filter(|s| !s.is_empty()) {
        doc["scopes"] = json!(scopes);
    }
    if let Some(at) = meta.expires_at {
        doc["expires_at"] = json!(authsome_vault::time::iso_z_seconds(at));
    }
    doc
}

fn group_by_provider(connections: Vec<ConnectionMeta>) -> BTreeMap<String, Vec<ConnectionMeta>> {
    let mut by_provider: BTreeMap<String, Vec<ConnectionMeta>> = BTreeMap::new();
    for meta in connections {
        by_provider.entry(meta.provider.clone()).or_default().push(meta);
    }
    by_provider
}

pub(crate) fn list(ctx: &Context) -> CliResult {
    let vault = ctx.vault()?;
    let mut by_provider = group_by_provider(vault.list_connections()?);
    let entries = ctx.catalog().entries();
    if ctx.out.json {
        ctx.out.json(&list_document(entries, &mut by_provider));
    } else {
        let now = authsome_vault::time::now_seconds();
        let (rows, connected) = list_rows(entries, &mut by_provider, now);
        let mut text = format!("Providers: {} total, {connected} connected\n", entries.len());
        text.push_str(&render_table(ctx, &rows));
        ctx.out.data(&text);
    }
    report_orphans(ctx, &by_provider);
    Ok(())
}

/// `list --json`: upstream's `{"bundled": [...], "custom": [...]}`. Takes each provider's
/// connections out of `by_provider`, leaving the orphans.
fn list_document(entries: &[Entry], by_provider: &mut BTreeMap<String, Vec<ConnectionMeta>>) -> Value {
    let mut bundled = Vec::new();
    let mut custom = Vec::new();
    for entry in entries {
        let connections = by_provider.remove(&entry.provider.name).unwrap_or_default();
        let doc = json!({
            "name": entry.provider.name,
            "display_name": entry.provider.display_name,
            "auth_type": entry.provider.auth_type.as_str(),
            "source": entry.source.as_str(),
            "connections": connections.iter().map(connection_summary).collect::<Vec<_>>(),
        });
        match entry.source {
            Source::Bundled => bundled.push(doc),
            Source::Custom => custom.push(doc),
        }
    }
    json!({"bundled": bundled, "custom": custom})
}

/// One table row per connection (one `not_connected` row for a provider without any), and
/// how many providers have a usable connection. Takes the connections out of `by_provider`.
fn list_rows(
    entries: &[Entry],
    by_provider: &mut BTreeMap<String, Vec<ConnectionMeta>>,
    now: i64,
) -> (Vec<[String; 6]>, usize) {
    let mut rows: Vec<[String; 6]> = Vec::new();
    let mut connected = 0;
    for entry in entries {
        let provider = &entry.provider;
        let label = format!("{} [{}]", provider.display_name, provider.name);
        let connections = by_provider.remove(&provider.name).unwrap_or_default();
        if connections.iter().any(|c| c.is_usable(now)) {
            connected += 1;
        }
        if connections.is_empty() {
            rows.push([
                label.clone(),
                entry.source.as_str().into(),
                provider.auth_type.as_str().into(),
                "-".into(),
                "not_connected".into(),
                "-".into(),
            ]);
        }
        for meta in &connections {
            let name = if meta.is_default { format!("{} (default)", meta.name) } else { meta.name.clone() };
            let expires = meta.expires_at.map_or("-".to_string(), |at| relative_expiry(at, now));
            rows.push([
                label.clone(),
                entry.source.as_str().into(),
                meta.auth_type.as_str().into(),
                name,
                meta.status.as_str().into(),
                expires,
            ]);
        }
    }
    (rows, connected)
}

/// The `list` table: a header, a rule, and the rows in aligned columns, the status painted.
fn render_table(ctx: &Context, rows: &[[String; 6]]) -> String {
    let header = ["Provider", "Source", "Auth", "Connection", "Status", "Expires"];
    let mut widths = header.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 6]| {
        let mut out = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if i == 5 {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  "));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut text = line(header);
    let dashes = widths.map(|w| "-".repeat(w));
    text.push_str(&line([&dashes[0], &dashes[1], &dashes[2], &dashes[3], &dashes[4], &dashes[5]]));
    for row in rows {
        let status = match row[4].as_str() {
            "connected" => ctx.out.paint(&format!("{:<w$}", row[4], w = widths[4]), Style::Green),
            "not_connected" => ctx.out.paint(&format!("{:<w$}", row[4], w = widths[4]), Style::Dim),
            _ => ctx.out.paint(&format!("{:<w$}", row[4], w = widths[4]), Style::Yellow),
        };
        let mut out = String::new();
        for (i, width) in widths.iter().enumerate().take(4) {
            out.push_str(&format!("{:<width$}  ", row[i]));
        }
        out.push_str(&status);
        out.push_str("  ");
        out.push_str(&row[5]);
        text.push_str(out.trim_end());
        text.push('\n');
    }
    text
}

/// Connections whose provider definition is gone (a custom file deleted by hand).
fn report_orphans(ctx: &Context, left: &BTreeMap<String, Vec<ConnectionMeta>>) {
    for (provider, connections) in left {
        ctx.out.warn(&format!(
            "{} connection(s) for '{provider}', which has no definition any more: register it again, or delete them with `authsome revoke {provider}`",
            connections.len()
        ));
    }
}

/// The record in upstream's `get --json` shape. Secrets are the redaction marker unless
/// `secrets` is given.
fn record(ctx: &Context, entry: &Entry, meta: &ConnectionMeta, secrets: Option<&Secrets>) -> Value {
    let secret = |field: &str, value: Option<&secrecy::SecretString>| -> Value {
        match (secrets, meta.has_secret(field)) {
            (Some(_), _) => value.map_or(Value::Null, |v| Value::String(v.expose_secret().to_string())),
            (None, true) => Value::String(REDACTED.into()),
            (None, false) => Value::Null,
        }
    };
    let mut metadata: serde_json::Map<String, Value> = meta.metadata.clone().into_iter().collect();
    metadata.insert("source".into(), json!(meta.source.as_str()));
    if let Some(error) = &meta.last_refresh_error {
        metadata.insert("last_refresh_error".into(), json!(error));
    }
    json!({
        "schema_version": 2,
        "provider": meta.provider,
        "profile": ctx.profile,
        "connection_name": meta.name,
        "auth_type": meta.auth_type.as_str(),
        "status": meta.status.as_str(),
        "base_url": meta.base_url,
        "host_url": meta.host_url.clone().or_else(|| entry.provider.hosts.first().cloned()),
        "scopes": meta.scopes,
        "access_token": secret("access_token", secrets.and_then(|s| s.access_token.as_ref())),
        "refresh_token": secret("refresh_token", secrets.and_then(|s| s.refresh_token.as_ref())),
        "token_type": meta.token_type,
        "expires_at": meta.expires_at.map(authsome_vault::time::iso_z_seconds),
        "obtained_at": authsome_vault::time::iso_z_micros(meta.obtained_at),
        "api_key": secret("api_key", secrets.and_then(|s| s.api_key.as_ref())),
        "account": {"id": meta.account_id, "label": meta.account_label},
        "metadata": metadata,
    })
}

pub(crate) fn get(ctx: &Context, args: &GetArgs) -> CliResult {
    let entry = ctx.catalog().require(&args.provider)?;
    let vault = ctx.vault()?;
    let name = vault.resolve_connection_name(&entry.provider.name, args.connection.as_deref())?;
    let meta = vault.require_connection(&entry.provider.name, &name)?;
    let secrets = if args.show_secret {
        let secrets = vault.secrets(&ctx.key_source, &entry.provider.name, &name)?;
        ctx.audit_required(
            AuditEvent::new("get")
                .provider(&entry.provider.name)
                .connection(&name)
                .field("field", args.field.clone().unwrap_or_else(|| "all".into())),
        )?;
        Some(secrets)
    } else {
        None
    };
    let doc = record(ctx, entry, &meta, secrets.as_ref());
    if let Some(field) = &args.field {
        let value = lookup(&doc, field).ok_or_else(|| {
            let fields: Vec<&str> = doc.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
            CliError::new(Kind::Generic, format!("unknown field '{field}'"))
                .hint(format!("fields: {}", fields.join(", ")))
        })?;
        if ctx.out.json {
            ctx.out.json(&value);
        } else {
            ctx.out.data(&match value {
                Value::String(s) => s,
                Value::Null => String::new(),
                other => other.to_string(),
            });
        }
        return Ok(());
    }
    if ctx.out.json {
        ctx.out.json(&doc);
        return Ok(());
    }
    let mut text = String::new();
    for (key, value) in doc.as_object().into_iter().flatten() {
        let shown = match value {
            Value::String(s) => s.clone(),
            Value::Null => "null".into(),
            other => other.to_string(),
        };
        text.push_str(&format!("{key}: {shown}\n"));
    }
    ctx.out.data(&text);
    Ok(())
}

/// `account.id` style lookups as well as top-level fields.
fn lookup(doc: &Value, field: &str) -> Option<Value> {
    let mut current = doc;
    for part in field.split('.') {
        current = current.get(part)?;
    }
    Some(current.clone())
}

pub(crate) fn inspect(ctx: &Context, args: &ProviderArg) -> CliResult {
    let entry = ctx.catalog().require(&args.provider)?;
    let vault = ctx.vault()?;
    let connections: Vec<Value> = vault
        .list_connections()?
        .iter()
        .filter(|c| c.provider == entry.provider.name)
        .map(connection_summary)
        .collect();
    let mut doc = serde_json::to_value(&entry.provider).map_err(|e| CliError::new(Kind::Generic, e.to_string()))?;
    doc["source"] = json!(entry.source.as_str());
    if let Some(path) = &entry.path {
        doc["path"] = json!(path.display().to_string());
    }
    doc["connections"] = json!(connections);
    ctx.out.json(&doc);
    Ok(())
}

/// The vault's state without prompting: a passphrase profile is "locked" unless the key is
/// available non-interactively.
pub(crate) fn vault_status(vault: &Vault) -> (String, String) {
    let backend = match vault.key_backend() {
        None => return ("Not created yet (created on first login)".into(), "not_created".into()),
        Some(backend) => backend,
    };
    let description = match backend {
        KeyBackend::File => format!("Local Key ({})", vault.home().key_path(vault.profile()).display()),
        KeyBackend::Passphrase => {
            format!("Passphrase-wrapped key ({})", vault.home().key_path(vault.profile()).display())
        }
        KeyBackend::Keyring => "OS keychain (Secret Service)".to_string(),
    };
    let status = match vault.key(&NoPrompt) {
        Ok(_) => "ok".to_string(),
        Err(authsome_vault::Error::PassphraseUnavailable(_)) => "locked".to_string(),
        Err(e) => format!("error: {e}"),
    };
    (description, status)
}

pub(crate) fn whoami(ctx: &Context) -> CliResult {
    let vault = ctx.vault()?;
    let (description, status) = vault_status(&vault);
    let now = authsome_vault::time::now_seconds();
    let by_provider = group_by_provider(vault.list_connections()?);
    let connected: Vec<(String, Vec<String>)> = by_provider
        .iter()
        .filter(|(_, conns)| conns.iter().any(|c| c.is_usable(now)))
        .map(|(p, conns)| (p.clone(), conns.iter().map(|c| c.name.clone()).collect()))
        .collect();
    if ctx.out.json {
        ctx.out.json(&json!({
            "authsome_version": env!("CARGO_PKG_VERSION"),
            "home_directory": ctx.home.root().display().to_string(),
            "active_identity": ctx.profile,
            "encryption_backend": description,
            "vault_status": status,
            "connected_providers_count": connected.len(),
            "connected_providers": connected.iter().map(|(name, conns)| json!({
                "name": name, "count": conns.len(), "connections": conns,
            })).collect::<Vec<_>>(),
        }));
        return Ok(());
    }
    let mut text = format!(
        "Authsome Version:  {}\nHome Directory:    {}\nActive Identity:   {}\nEncryption:        {} [{}]\n\nConnected Providers: {}\n",
        env!("CARGO_PKG_VERSION"),
        ctx.home.root().display(),
        ctx.profile,
        description,
        status.to_uppercase(),
        connected.len()
    );
    for (name, conns) in &connected {
        text.push_str(&format!("  {name} ({})\n", conns.join(", ")));
    }
    ctx.out.data(&text);
    Ok(())
}

/// Rows as text columns, each cell padded to its column's widest (in characters, so a name with
/// non-ASCII letters lines up too), two spaces apart, no trailing blanks.
pub(crate) fn columns(rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            let width = cell.chars().count();
            match widths.get_mut(i) {
                Some(w) => *w = (*w).max(width),
                None => widths.push(width),
            }
        }
    }
    let mut text = String::new();
    for row in rows {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(&widths) {
            line.push_str(cell);
            line.extend(std::iter::repeat_n(' ', width - cell.chars().count() + 2));
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::columns;

    #[test]
    fn columns_line_up_whatever_the_widths() {
        let rows = vec![
            vec!["a".to_string(), "env_only".to_string(), "x".to_string()],
            vec!["längername".to_string(), "imported".to_string(), String::new()],
            vec!["mid".to_string(), "skipped_different".to_string(), "z".to_string()],
        ];
        assert_eq!(
            columns(&rows),
            "a           env_only           x\nlängername  imported\nmid         skipped_different  z\n"
        );
    }
}
