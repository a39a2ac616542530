//! `client list` and `client forget`: the OAuth clients a profile keeps.
//!
//! A provider's stored client is where its next login starts (`--client-id`, the browser form,
//! a dynamic registration). Each connection records the client that obtained it, and refresh
//! and revocation use that one (`auth`), so forgetting the stored client never breaks a
//! connection: it only makes the next login ask for (or register) a client again. Client
//! secrets are never shown; only ids and where they came from.

use std::collections::BTreeSet;

use authsome_vault::AuditEvent;
use serde_json::{Value, json};

use super::args::{ClientCommand, ProviderArg};
use crate::auth::{ClientOrigin, RecordedClient};
use crate::context::Context;
use crate::error::{CliError, CliResult, Kind};

pub(crate) fn client(ctx: &Context, command: &ClientCommand) -> CliResult {
    match command {
        ClientCommand::List => list(ctx),
        ClientCommand::Forget(args) => forget(ctx, args),
    }
}

/// One row per provider with a stored client or a connection that records one.
fn rows(ctx: &Context) -> CliResult<Vec<Value>> {
    let vault = ctx.vault()?;
    let connections = vault.list_connections()?;
    let mut providers: BTreeSet<String> = ctx.catalog().entries().iter().map(|e| e.provider.name.clone()).collect();
    providers.extend(connections.iter().map(|c| c.provider.clone()));
    let mut rows = Vec::new();
    for provider in providers {
        let stored = vault.client(&provider)?.and_then(|record| {
            let id = record.client_id.clone()?;
            Some(json!({"client_id": id, "source": ClientOrigin::of_record(&record).as_str()}))
        });
        let used: Vec<Value> = connections
            .iter()
            .filter(|c| c.provider == provider)
            .filter_map(|c| {
                let recorded = RecordedClient::of(c)?;
                Some(json!({
                    "connection": c.name, "client_id": recorded.client_id, "source": recorded.origin.as_str(),
                }))
            })
            .collect();
        if stored.is_some() || !used.is_empty() {
            rows.push(json!({"provider": provider, "stored": stored, "connections": used}));
        }
    }
    Ok(rows)
}

fn list(ctx: &Context) -> CliResult {
    let rows = rows(ctx)?;
    if ctx.out.json {
        ctx.out.json(&json!({"clients": rows}));
        return Ok(());
    }
    if rows.is_empty() {
        ctx.out.note("No OAuth clients are stored.");
        return Ok(());
    }
    for row in &rows {
        let provider = row["provider"].as_str().unwrap_or_default();
        match row["stored"].as_object() {
            Some(stored) => ctx.out.data(&format!(
                "{provider}: next login uses {} ({})",
                stored["client_id"].as_str().unwrap_or_default(),
                stored["source"].as_str().unwrap_or_default()
            )),
            None => ctx.out.data(&format!("{provider}: no stored client (the next login asks for one)")),
        }
        for used in row["connections"].as_array().into_iter().flatten() {
            ctx.out.data(&format!(
                "  {provider}/{}: obtained with {} ({})",
                used["connection"].as_str().unwrap_or_default(),
                used["client_id"].as_str().unwrap_or_default(),
                used["source"].as_str().unwrap_or_default()
            ));
        }
    }
    Ok(())
}

fn forget(ctx: &Context, args: &ProviderArg) -> CliResult {
    // A provider whose definition was deleted by hand can still have its client forgotten.
    let provider = match ctx.catalog().get(&args.provider) {
        Some(entry) => entry.provider.name.clone(),
        None => {
            authsome_vault::validate_name("provider", &args.provider)?;
            args.provider.clone()
        }
    };
    let mut vault = ctx.vault()?;
    let Some(record) = vault.client(&provider)? else {
        return Err(CliError::new(Kind::ProviderNotFound, format!("no OAuth client is stored for {provider}"))
            .hint("see the stored clients with `authsome client list`"));
    };
    let (store, _) = vault.writer(&ctx.key_source, ctx.create)?;
    store.delete_client(&provider)?;
    let source = ClientOrigin::of_record(&record).as_str();
    let id = record.client_id.unwrap_or_default();
    ctx.audit(
        AuditEvent::new("client_forget").provider(&provider).field("client_id", id.clone()).field("source", source),
    );
    if ctx.out.json {
        ctx.out.json(&json!({"status": "forgotten", "provider": provider, "client_id": id, "source": source}));
    } else {
        ctx.out.note(&format!(
            "Forgot the OAuth client {id} of {provider}. Its connections keep working; the next login asks for a client."
        ));
    }
    Ok(())
}
