//! The logins that need more than a pasted secret: OAuth in the browser (through this home's
//! daemon), the device flow (in this process, or handed to the daemon with `--no-wait`), and
//! the browser form for an API key when there is no terminal to type it in.
//!
//! `login` waits until the connection is stored and exits 0 only then (upstream bug 12);
//! `--no-wait` returns once the login is started. Progress goes to stderr; with `--json` the
//! result document (upstream's keys: `status`, `provider`, `connection`, `record_status`) is
//! the only thing on stdout.

use std::io::{IsTerminal, Read};
use std::time::Duration;

use authsome_vault::{AuditEvent, ClientRecord};
use secrecy::SecretString;
use serde_json::{Value, json};

use super::args::{FlowArg, LoginArgs};
use super::daemon::runtime;
use super::spinner::Spinner;
use crate::auth::{self, ClientCredentials, Endpoints, device};
use crate::context::{Context, prompt};
use crate::daemon::control::{self, Settings};
use crate::error::{CliError, CliResult, Kind};
use crate::providers::{Flow, Provider};

/// Whether a browser can be opened here (a graphical session, or macOS).
pub(crate) fn has_display() -> bool {
    cfg!(target_os = "macos") || std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some()
}

/// Open `url` in the user's browser; failures are silent (the URL is printed anyway).
///
/// The URL is in the opener's argv, which other local users can read in `/proc`. Only URLs
/// that are worthless once opened go here: the daemon's login and overview links are one-time
/// and bound to the first browser (`daemon::sessions`), device-flow pages are the provider's.
pub(crate) fn open_browser(url: &str) {
    if !has_display() {
        return;
    }
    let opener = if cfg!(target_os = "macos") { "open" } else { "xdg-open" };
    let _ = std::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
}

fn report(
    ctx: &Context,
    provider: &Provider,
    connection: &str,
    status: &str,
    record_status: &str,
    extra: Value,
    text: &str,
) {
    if ctx.out.json {
        let mut doc = json!({
            "status": status, "provider": provider.name, "connection": connection, "record_status": record_status,
        });
        if let (Some(doc), Value::Object(extra)) = (doc.as_object_mut(), extra) {
            doc.extend(extra);
        }
        ctx.out.json(&doc);
    } else {
        ctx.out.note(text);
    }
}

fn audit_login(ctx: &Context, provider: &Provider, connection: &str, flow: Flow, outcome: &CliResult) {
    let mut event = AuditEvent::new("login")
        .provider(&provider.name)
        .connection(connection)
        .field("flow", flow.as_str())
        .field("status", if outcome.is_ok() { "success" } else { "failure" });
    if let Err(e) = outcome {
        event = event.field("error", e.message.clone());
    }
    ctx.audit(event);
}

/// `login PROVIDER` for an OAuth provider.
pub(crate) fn oauth_login(ctx: &Context, args: &LoginArgs, provider: &Provider) -> CliResult {
    auth::spec(provider)?;
    let mut flow = match args.flow {
        Some(FlowArg::Pkce) => Flow::Pkce,
        Some(FlowArg::DeviceCode) => Flow::DeviceCode,
        Some(FlowArg::DcrPkce) => Flow::DcrPkce,
        Some(FlowArg::ApiKey) | None => provider.flow,
    };
    if flow == Flow::DcrPkce && args.client_id.is_some() {
        // A client the user registered by hand: no dynamic registration.
        flow = Flow::Pkce;
    }
    if flow == Flow::DeviceCode && !provider.supports_device_flow() {
        return Err(CliError::new(Kind::Usage, format!("{} has no device-code login", provider.display_name))
            .hint(format!("use the browser: `authsome login {}`", provider.name)));
    }
    let base_url = args.base_url.as_deref().map(auth::check_base_url).transpose()?;
    let scopes = auth::requested_scopes(provider, args.scopes.as_deref());

    let mut vault = ctx.vault()?;
    if !args.force
        && let Some(existing) = vault.connection(&provider.name, &args.connection)?
        && existing.is_usable(authsome_vault::time::now_seconds())
        && (args.scopes.is_none() || same_set(existing.scopes.as_deref().unwrap_or_default(), &scopes))
        && (args.base_url.is_none() || existing.base_url == base_url)
    {
        audit_login(ctx, provider, &args.connection, flow, &Ok(()));
        report(
            ctx,
            provider,
            &args.connection,
            "already_connected",
            "connected",
            json!({}),
            &format!(
                "Already logged in to {} ({}). Use the --force flag to log in again.",
                provider.name, args.connection
            ),
        );
        return Ok(());
    }
    // Create the profile (and unlock its key) here, where a prompt is possible.
    let (store, key) = vault.writer(&ctx.key_source, ctx.create)?;
    if let Some(client_id) = &args.client_id {
        let secret = read_client_secret(args)?;
        let record = ClientRecord {
            client_id: Some(client_id.trim().to_string()),
            client_secret: secret,
            base_url: base_url.clone(),
            ..ClientRecord::default()
        };
        store.put_client(key, &provider.name, &record)?;
    } else if flow != Flow::DcrPkce {
        say_stored_client(ctx, &vault, provider)?;
    }

    if flow == Flow::DeviceCode && !args.no_wait {
        let outcome = device_login(ctx, args, provider, base_url.as_deref(), &scopes);
        audit_login(ctx, provider, &args.connection, flow, &outcome);
        outcome?;
        return done(ctx, provider, &args.connection);
    }
    let request = json!({
        "profile": ctx.profile, "provider": provider.name, "connection": args.connection,
        "flow": flow.as_str(), "scopes": scopes, "base_url": base_url,
    });
    daemon_login(ctx, args, provider, request)
}

/// A client id given once with `--client-id` is kept for the next logins, also when that
/// login failed (a mistyped id, a refused secret). Say which one this login uses and how to
/// drop it, so a bad one is never reused without the user seeing it. A dynamically registered
/// client is not announced: reusing it is the point of registering once.
fn say_stored_client(ctx: &Context, vault: &authsome_vault::Vault, provider: &Provider) -> CliResult {
    let Some(record) = vault.client(&provider.name)? else { return Ok(()) };
    let Some(id) = record.client_id.as_deref().filter(|_| record.registration.is_none()) else { return Ok(()) };
    ctx.out.note(&format!(
        "Using the stored OAuth client {id} for {name} (given earlier with --client-id). \
         To use another, pass --client-id, or forget it with `authsome client forget {name}`.",
        name = provider.name
    ));
    Ok(())
}

fn same_set(a: &[String], b: &[String]) -> bool {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort();
    b.sort();
    a == b
}

/// The client secret for `--client-id`: standard input with `--client-secret-stdin`, else a
/// hidden prompt on a terminal (empty: a public client), else none.
fn read_client_secret(args: &LoginArgs) -> CliResult<Option<SecretString>> {
    let text = if args.client_secret_stdin {
        let mut buf = String::new();
        std::io::stdin()
            .take(16 * 1024)
            .read_to_string(&mut buf)
            .map_err(|e| CliError::new(Kind::InputCancelled, format!("could not read standard input: {e}")))?;
        buf
    } else if std::io::stdin().is_terminal() {
        prompt("Client secret (input hidden; empty for a public client): ")
            .ok_or_else(|| CliError::new(Kind::InputCancelled, "no input"))?
    } else {
        String::new()
    };
    let text = text.trim();
    if text.contains(char::is_control) {
        return Err(CliError::new(Kind::AuthenticationFailed, "the client secret contains line breaks"));
    }
    Ok((!text.is_empty()).then(|| SecretString::from(text.to_string())))
}

/// The device flow in this process: print the code, wait with a spinner, store the token.
fn device_login(
    ctx: &Context,
    args: &LoginArgs,
    provider: &Provider,
    base_url: Option<&str>,
    scopes: &[String],
) -> CliResult {
    let vault = ctx.vault()?;
    let client = vault
        .client_with_secret(&ctx.key_source, &provider.name)?
        .and_then(|record| ClientCredentials::from_record(provider, &record))
        .ok_or_else(|| {
            CliError::new(Kind::CredentialMissing, format!("no OAuth client is stored for {}", provider.name)).hint(
                format!(
                    "pass your OAuth app's client id once: `authsome login {} --flow device_code --client-id ID`",
                    provider.name
                ),
            )
        })?;
    let endpoints = Endpoints::resolve(provider, base_url)?;
    let body = auth::spec(provider)?.device_token_request;
    let token = runtime()?.block_on(async {
        let http = auth::http::client()?;
        let authorization =
            device::start(&http, &endpoints, &client, Some(auth::join_scopes(provider, scopes))).await?;
        let open = authorization.verification_uri_complete.as_deref().unwrap_or(&authorization.verification_uri);
        // The code is what the user needs: printed even with --quiet or --json (stderr).
        eprintln!("First copy your one-time code: {}", authorization.user_code);
        eprintln!("Then open {} and enter it.", authorization.verification_uri);
        if !args.no_browser {
            open_browser(open);
        }
        let mut spinner = Spinner::start("Waiting for the login to be approved…", ctx.out.quiet);
        let token = device::poll(&http, &endpoints, &client, body, &authorization).await;
        spinner.stop();
        token
    })?;
    let (meta, secrets) = auth::record_from_token(
        provider,
        &args.connection,
        base_url,
        scopes,
        token,
        &client,
        authsome_vault::time::now_seconds(),
    );
    let mut vault = ctx.vault()?;
    let (store, key) = vault.writer(&ctx.key_source, ctx.create)?;
    store.put_connection(key, &meta, &secrets)?;
    Ok(())
}

/// Confirm the connection is stored, then say so.
fn done(ctx: &Context, provider: &Provider, connection: &str) -> CliResult {
    let meta = ctx.vault()?.require_connection(&provider.name, connection)?;
    let scopes = meta.scopes.clone().unwrap_or_default();
    report(
        ctx,
        provider,
        connection,
        "completed",
        meta.status.as_str(),
        json!({"scopes": scopes}),
        &format!("Logged in to {} ({}/{connection}).", provider.display_name, provider.name),
    );
    Ok(())
}

/// A login that goes through this home's daemon: start a session, show its URL (or device
/// code), and wait for it to end unless `--no-wait`.
fn daemon_login(ctx: &Context, args: &LoginArgs, provider: &Provider, request: Value) -> CliResult {
    let settings = Settings::from_env(None, None)?;
    let result = runtime()?.block_on(async {
        let daemon = control::ensure_running(&ctx.home, &settings).await?;
        let session = daemon.post("/auth/sessions", &request).await?;
        let id = session["id"].as_str().unwrap_or_default().to_string();
        let mut extra = json!({"session": id});
        if let Some(device) = session.get("device") {
            let code = device["user_code"].as_str().unwrap_or_default();
            let uri = device["verification_uri"].as_str().unwrap_or_default();
            eprintln!("First copy your one-time code: {code}");
            eprintln!("Then open {uri} and enter it.");
            extra["user_code"] = code.into();
            extra["verification_uri"] = uri.into();
        } else if let Some(url) = session["next_action"]["url"].as_str() {
            eprintln!("Open this URL to continue the login to {}:\n  {url}", provider.display_name);
            if !args.no_browser {
                open_browser(url);
            }
            extra["url"] = url.into();
        }
        if args.no_wait {
            return Ok(Some(extra));
        }
        let mut spinner = Spinner::start("Waiting for the login to finish in the browser…", ctx.out.quiet);
        let result = wait(&daemon, &id).await;
        spinner.stop();
        result.map(|()| None)
    });
    match result {
        // The daemon audits the login's start and end.
        Ok(Some(extra)) => {
            report(
                ctx,
                provider,
                &args.connection,
                "started",
                "waiting_for_user",
                extra,
                &format!(
                    "Login started for {} ({}). Run 'authsome list' to see when it is connected.",
                    provider.name, args.connection
                ),
            );
            Ok(())
        }
        Ok(None) => done(ctx, provider, &args.connection),
        Err(e) => Err(e),
    }
}

/// Poll a session until it ends.
async fn wait(daemon: &control::Client, id: &str) -> CliResult {
    loop {
        let session = daemon.get(&format!("/auth/sessions/{id}")).await.map_err(|e| {
            if e.kind == Kind::ConnectionNotFound {
                CliError::new(Kind::DaemonUnavailable, "the daemon restarted and lost the login")
                    .hint("start the login again")
            } else {
                e
            }
        })?;
        match session["status"].as_str() {
            Some("completed") => return Ok(()),
            Some("failed" | "expired") => return Err(control::error_from_json(&session)),
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// `login PROVIDER` for an API key when there is no terminal: the daemon's form.
pub(crate) fn browser_api_key(ctx: &Context, args: &LoginArgs, provider: &Provider) -> CliResult {
    let mut vault = ctx.vault()?;
    vault.writer(&ctx.key_source, ctx.create)?;
    let request = json!({
        "profile": ctx.profile, "provider": provider.name, "connection": args.connection, "flow": "api_key",
    });
    daemon_login(ctx, args, provider, request)
}
