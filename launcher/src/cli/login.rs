//! `login`, `logout`, `revoke`, `remove`: putting credentials in and taking them out.
//!
//! API keys (and tokens pasted for OAuth providers) come from `--stdin` or a hidden prompt on
//! the terminal, never from argv. They are checked against the provider's key pattern before
//! anything is written.

use std::io::{IsTerminal, Read};

use authsome_vault::AuditEvent;
use secrecy::SecretString;
use serde_json::json;
use zeroize::Zeroizing;

use super::args::{FlowArg, LoginArgs, ProviderArg, ProviderConnectionArgs};
use crate::auth::api_key::{self, KeyKind, StoreKey};
use crate::auth::revoke::Revocation;
use crate::context::{Context, prompt};
use crate::error::{CliError, CliResult, Kind};
use crate::providers::{AuthType, Provider, Source};

/// Longest secret accepted on stdin (a JWT-sized token fits many times over).
const MAX_SECRET_BYTES: usize = 64 * 1024;

pub(crate) fn login(ctx: &Context, args: &LoginArgs) -> CliResult {
    let entry = ctx.catalog().require(&args.provider)?;
    let provider = &entry.provider;
    authsome_vault::validate_name("connection", &args.connection)?;
    // Checked against the definition before any flow: the base URL decides where the
    // connection's credential will be sent (`providers/base_url.rs`).
    let base_url = args.base_url.as_deref().map(|url| checked_base_url(provider, url)).transpose()?;
    if let Some(spec) = provider.base_url.as_ref().filter(|spec| spec.required && base_url.is_none()) {
        return Err(CliError::new(Kind::Usage, format!("{} needs --base-url: its hosts are your own", provider.name))
            .hint(format!("e.g. --base-url {}", spec.example)));
    }

    // A token typed for an OAuth provider is stored as a pasted token; real OAuth flows run
    // through the daemon.
    let pasted = provider.auth_type == AuthType::OAuth2;
    let wants_oauth_flow = matches!(args.flow, Some(FlowArg::Pkce | FlowArg::DeviceCode | FlowArg::DcrPkce))
        || (pasted && !args.stdin && args.flow != Some(FlowArg::ApiKey));
    if wants_oauth_flow {
        // A token from the public service must not be routed to the user's server: an OAuth
        // login with a base URL needs endpoints that follow it.
        if base_url.is_some() && !provider.oauth.as_ref().is_some_and(|o| o.token_url.contains("{base_url}")) {
            return Err(CliError::new(
                Kind::Usage,
                format!("{}'s OAuth login does not follow --base-url", provider.name),
            )
            .hint(format!(
                "store a token of your server with `authsome login {} --base-url URL --stdin`",
                provider.name
            )));
        }
        return super::login_flows::oauth_login(ctx, args, provider);
    }

    let mut vault = ctx.vault()?;
    if !args.force
        && let Some(existing) = vault.connection(&provider.name, &args.connection)?
        && existing.is_usable(authsome_vault::time::now_seconds())
    {
        return already_logged_in(ctx, provider, &args.connection, pasted);
    }

    // No terminal to type the key in: the daemon's browser form (when a browser can show it,
    // or the user asked for the URL).
    // The form takes one value: a two-value credential is typed or piped.
    if !pasted
        && !args.stdin
        && provider.second_value.is_none()
        && !std::io::stdin().is_terminal()
        && (args.no_browser || args.no_wait || super::login_flows::has_display())
    {
        return super::login_flows::browser_api_key(ctx, args, provider);
    }
    let flow = flow_word(pasted);
    match typed_key(ctx, args, provider, pasted, base_url, &mut vault) {
        Ok(true) => {}
        // Another login stored this connection between our check and our write.
        Ok(false) => return already_logged_in(ctx, provider, &args.connection, pasted),
        Err(e) => {
            // Every failed login leaves a trace, as the OAuth flows' do (the message names the
            // problem, never the key).
            ctx.audit(
                AuditEvent::new("login")
                    .provider(&provider.name)
                    .connection(&args.connection)
                    .field("flow", flow)
                    .field("status", "failure")
                    .field("error", e.message.clone()),
            );
            return Err(e);
        }
    }
    ctx.audit(
        AuditEvent::new("login")
            .provider(&provider.name)
            .connection(&args.connection)
            .field("flow", flow)
            .field("status", "success"),
    );
    report(
        ctx,
        provider,
        &args.connection,
        "completed",
        &format!("Logged in to {} ({}/{}).", provider.display_name, provider.name, args.connection),
    )
}

/// Read, check and store a typed or piped key; `Ok(false)` when another login stored the
/// connection first.
fn typed_key(
    ctx: &Context,
    args: &LoginArgs,
    provider: &Provider,
    pasted: bool,
    base_url: Option<String>,
    vault: &mut authsome_vault::Vault,
) -> CliResult<bool> {
    let (secret, second) = match &provider.second_value {
        Some(_) => {
            let (secret, second) = read_pair(ctx, provider, args.stdin)?;
            (secret, Some(second))
        }
        None => (read_secret(ctx, provider, args.stdin)?, None),
    };
    api_key::check(provider, &secret)?;
    if let Some(second) = &second {
        api_key::check_second(provider, second)?;
    }

    let kind = if pasted { KeyKind::PastedToken } else { KeyKind::ApiKey };
    let stored = StoreKey { provider, connection: &args.connection, kind, base_url, replace: args.force };
    match api_key::store_pair(vault, &ctx.key_source, ctx.create, &stored, secret, second) {
        // Another login stored this connection between our check and our write.
        Err(authsome_vault::Error::ConnectionExists { .. }) => Ok(false),
        result => result.map(|_| true).map_err(CliError::from),
    }
}

fn checked_base_url(provider: &Provider, url: &str) -> CliResult<String> {
    crate::providers::base_url::check(provider, url).map_err(|why| {
        let err = CliError::new(Kind::Usage, format!("--base-url '{url}': {why}"));
        match &provider.base_url {
            Some(spec) => err.hint(format!("e.g. --base-url {}", spec.example)),
            None => err.hint(format!(
                "log in without --base-url; {} always uses {}",
                provider.name,
                provider.hosts.join(", ")
            )),
        }
    })
}

fn already_logged_in(ctx: &Context, provider: &Provider, connection: &str, pasted: bool) -> CliResult {
    ctx.audit(
        AuditEvent::new("login")
            .provider(&provider.name)
            .connection(connection)
            .field("flow", flow_word(pasted))
            .field("status", "success"),
    );
    report(
        ctx,
        provider,
        connection,
        "already_connected",
        &format!("Already logged in to {} ({}). Use the --force flag to overwrite.", provider.name, connection),
    )
}

fn flow_word(pasted: bool) -> &'static str {
    if pasted { "pasted_token" } else { "api_key" }
}

fn report(ctx: &Context, provider: &Provider, connection: &str, status: &str, text: &str) -> CliResult {
    if ctx.out.json {
        ctx.out.json(&json!({
            "status": status,
            "provider": provider.name,
            "connection": connection,
            "record_status": "connected",
        }));
    } else {
        ctx.out.note(text);
    }
    Ok(())
}

/// All of standard input, up to 64 KiB of UTF-8.
fn read_stdin(what: &str) -> CliResult<Zeroizing<String>> {
    let mut buf = Zeroizing::new(Vec::new());
    std::io::stdin()
        .take(MAX_SECRET_BYTES as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| CliError::new(Kind::InputCancelled, format!("could not read standard input: {e}")))?;
    if buf.len() > MAX_SECRET_BYTES {
        return Err(CliError::new(
            Kind::AuthenticationFailed,
            format!("the {what} on standard input is longer than 64 KiB"),
        ));
    }
    let text = String::from_utf8(buf.to_vec())
        .map_err(|_| CliError::new(Kind::AuthenticationFailed, format!("the {what} is not valid UTF-8")))?;
    Ok(Zeroizing::new(text))
}

/// Both values of a two-value credential: `--stdin` lines (`api_key::parse_pair`) or two
/// hidden prompts.
fn read_pair(ctx: &Context, provider: &Provider, from_stdin: bool) -> CliResult<(SecretString, SecretString)> {
    let Some(second) = &provider.second_value else { unreachable!("only called for two-value providers") };
    if from_stdin {
        return api_key::parse_pair(provider, &read_stdin("API key")?);
    }
    if !std::io::stdin().is_terminal() {
        let key = provider.env.api_key.first().map_or("API_KEY", String::as_str);
        let other = second.env.first().map_or("VALUE", String::as_str);
        return Err(CliError::new(
            Kind::InputCancelled,
            format!("no API key and {} given: standard input is not a terminal", second.label),
        )
        .hint(format!(
            "pipe both in with --stdin, e.g. `printf '{key}=%s\\n{other}=%s\\n' \"${key}\" \"${other}\" | authsome login {} --stdin`",
            provider.name
        )));
    }
    let key = read_secret(ctx, provider, false)?;
    let typed = prompt(&format!("{} {} (input hidden): ", provider.display_name, second.label))
        .ok_or_else(|| CliError::new(Kind::InputCancelled, "no input"))?;
    let value = Zeroizing::new(typed);
    let value = value.trim();
    if value.is_empty() || value.contains(char::is_control) {
        return Err(CliError::new(
            Kind::AuthenticationFailed,
            format!("the {} is empty or not one line", second.label),
        )
        .hint("nothing was stored"));
    }
    Ok((key, SecretString::from(value.to_string())))
}

/// The secret from stdin (`--stdin`) or a hidden prompt. Whitespace around it is dropped.
fn read_secret(ctx: &Context, provider: &Provider, from_stdin: bool) -> CliResult<SecretString> {
    let what = if provider.auth_type == AuthType::ApiKey { "API key" } else { "token" };
    let raw = if from_stdin {
        read_stdin(what)?
    } else if std::io::stdin().is_terminal() {
        if let Some(docs) = &provider.docs_url {
            ctx.out.note(&format!("Get a {what} at {docs}"));
        }
        Zeroizing::new(
            prompt(&format!("{} {what} (input hidden): ", provider.display_name))
                .ok_or_else(|| CliError::new(Kind::InputCancelled, "no input"))?,
        )
    } else {
        return Err(CliError::new(Kind::InputCancelled, format!("no {what} given: standard input is not a terminal"))
            .hint(format!(
                "pipe it in with --stdin, e.g. `printf '%s' \"$KEY\" | authsome login {} --stdin`",
                provider.name
            )));
    };
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(
            CliError::new(Kind::AuthenticationFailed, format!("the {what} is empty")).hint("nothing was stored")
        );
    }
    if trimmed.contains(char::is_control) {
        return Err(CliError::new(
            Kind::AuthenticationFailed,
            format!("the {what} contains control characters or line breaks"),
        )
        .hint("paste the value alone, on one line"));
    }
    Ok(SecretString::from(trimmed.to_string()))
}

pub(crate) fn logout(ctx: &Context, args: &ProviderConnectionArgs) -> CliResult {
    let provider = &ctx.catalog().require(&args.provider)?.provider;
    let mut vault = ctx.vault()?;
    let name = vault.resolve_connection_name(&provider.name, args.connection.as_deref())?;
    let existed = vault.connection(&provider.name, &name)?.is_some();
    // Revoke at the provider first (RFC 7009), then delete locally whatever it answered.
    let revocation = if existed {
        crate::auth::revoke::revoke_connection(&vault, provider, &name, &ctx.key_source)
    } else {
        Revocation::NotApplicable("no such connection")
    };
    if existed {
        let (store, _) = vault.writer(&ctx.key_source, ctx.create)?;
        store.delete_connection(&provider.name, &name)?;
    }
    let mut event = AuditEvent::new("logout")
        .provider(&provider.name)
        .connection(&name)
        .field("found", existed)
        .field("revocation", revocation.as_str());
    if let Revocation::Failed(why) = &revocation {
        event = event.field("revocation_error", why.clone());
        ctx.out
            .warn(&format!("could not revoke the token at {}: {why}; the local copy is deleted anyway", provider.name));
    }
    ctx.audit(event);
    let text = if existed {
        format!("Logged out of {} ({}).", provider.name, name)
    } else {
        format!("No connection '{}' for {}; nothing to do.", name, provider.name)
    };
    if ctx.out.json {
        ctx.out.json(&json!({
            "status": "logged_out", "provider": provider.name, "connection": name, "found": existed,
            "revocation": revocation.as_str(),
        }));
    } else {
        ctx.out.note(&text);
    }
    Ok(())
}

/// Delete every connection and the client record of a provider. Returns the deleted names.
fn revoke_all(ctx: &Context, provider: &str) -> CliResult<Vec<String>> {
    let mut vault = ctx.vault()?;
    if vault.list_connections()?.iter().all(|c| c.provider != provider) && vault.client(provider)?.is_none() {
        return Ok(Vec::new());
    }
    // Revoke each connection at the provider where it can (best effort), then delete.
    if let Some(entry) = ctx.catalog().get(provider) {
        for meta in vault.list_connections()?.iter().filter(|c| c.provider == provider) {
            let outcome = crate::auth::revoke::revoke_connection(&vault, &entry.provider, &meta.name, &ctx.key_source);
            if let Revocation::Failed(why) = outcome {
                ctx.out.warn(&format!("could not revoke {provider}/{} at the provider: {why}", meta.name));
            }
        }
    }
    let (store, _) = vault.writer(&ctx.key_source, ctx.create)?;
    Ok(store.delete_provider(provider)?)
}

pub(crate) fn revoke(ctx: &Context, args: &ProviderArg) -> CliResult {
    // A provider whose definition was deleted by hand can still have its connections revoked.
    let orphaned = ctx.catalog().get(&args.provider).is_none()
        && ctx.vault()?.list_connections()?.iter().any(|c| c.provider == args.provider);
    let provider =
        if orphaned { args.provider.clone() } else { ctx.catalog().require(&args.provider)?.provider.name.clone() };
    let had_client = ctx.vault()?.client(&provider)?.is_some();
    let removed = revoke_all(ctx, &provider)?;
    ctx.audit(AuditEvent::new("revoke").provider(&provider).connection("all").field("connections", removed.len()));
    if ctx.out.json {
        ctx.out.json(&json!({"status": "revoked", "provider": provider, "connections": removed}));
    } else {
        // Only an OAuth provider with a stored client has one to forget.
        let client = if had_client { " and its stored OAuth client" } else { "" };
        ctx.out.note(&format!("Revoked {} connection(s) of {provider}{client}.", removed.len()));
    }
    Ok(())
}

pub(crate) fn remove(ctx: &Context, args: &ProviderArg) -> CliResult {
    let entry = ctx.catalog().require(&args.provider)?.clone();
    let provider = entry.provider.name.clone();
    let removed = revoke_all(ctx, &provider)?;
    let deleted_definition = match (&entry.source, &entry.path) {
        (Source::Custom, Some(path)) => {
            std::fs::remove_file(path)
                .map_err(|e| CliError::new(Kind::Generic, format!("could not delete {}: {e}", path.display())))?;
            true
        }
        _ => false,
    };
    ctx.audit(
        AuditEvent::new("remove")
            .provider(&provider)
            .connection("all")
            .field("connections", removed.len())
            .field("definition_deleted", deleted_definition),
    );
    if ctx.out.json {
        ctx.out.json(&json!({
            "status": "removed", "provider": provider, "connections": removed, "definition_deleted": deleted_definition
        }));
    } else if deleted_definition {
        ctx.out.note(&format!(
            "Removed provider {provider}: {} connection(s) revoked, definition deleted.",
            removed.len()
        ));
    } else {
        ctx.out.note(&format!(
            "Revoked {} connection(s) of {provider}. It is a bundled provider, so its definition stays available.",
            removed.len()
        ));
    }
    Ok(())
}
