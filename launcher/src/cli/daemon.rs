//! `daemon serve|start|stop|restart|status|logs` and `ui`. `status` always prints JSON in
//! upstream's shape (`running`, `health`, `ready`, `pid_file`, `log_file`), plus `url` and
//! `home`.

use serde_json::{Value, json};

use super::args::{DaemonCommand, DaemonListenArgs, DaemonLogsArgs, UiArgs};
use crate::context::Context;
use crate::daemon::control::{self, Info, Paths, Probe, Settings};
use crate::env;
use crate::error::{CliError, CliResult, Kind};

pub(crate) fn daemon(ctx: &Context, command: &DaemonCommand) -> CliResult {
    match command {
        DaemonCommand::Serve(args) => serve(ctx, args),
        DaemonCommand::Start(args) => start(ctx, args),
        DaemonCommand::Stop => stop(ctx),
        DaemonCommand::Restart(args) => restart(ctx, args),
        DaemonCommand::Status => status(ctx),
        DaemonCommand::Logs(args) => logs(ctx, args),
    }
}

/// A runtime for the CLI's short async work.
pub(crate) fn runtime() -> CliResult<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::new(Kind::Generic, "cannot start the async runtime").cause(e))
}

fn serve(ctx: &Context, args: &DaemonListenArgs) -> CliResult {
    let settings = Settings::from_env(args.host.as_deref(), args.port)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::new(Kind::Generic, "cannot start the async runtime").cause(e))?;
    runtime.block_on(async {
        if let Probe::Ours(client) = control::probe(&ctx.home, &settings).await {
            return Err(CliError::new(
                Kind::DaemonUnavailable,
                format!("this home's daemon already runs (pid {}, {})", client.info.pid, client.base),
            )
            .hint("stop it with `authsome daemon stop`"));
        }
        let listener = tokio::net::TcpListener::bind((settings.host.as_str(), settings.port)).await.map_err(|e| {
            CliError::new(Kind::DaemonUnavailable, format!("cannot listen on {}:{}", settings.host, settings.port))
                .cause(e)
                .hint(format!("another program (or another home's daemon) may hold the port; set {}", env::DAEMON_PORT))
        })?;
        let port = listener.local_addr().map_err(|e| CliError::new(Kind::DaemonUnavailable, e.to_string()))?.port();
        ctx.home.ensure()?;
        let paths = Paths::new(&ctx.home);
        let token = crate::auth::pkce::random_token(32);
        let instance = crate::auth::pkce::random_token(16);
        let info = Info {
            pid: std::process::id(),
            host: settings.host.clone(),
            port,
            home: ctx.home.root().display().to_string(),
            instance: instance.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        };
        let io = |e: std::io::Error| {
            CliError::new(Kind::DaemonUnavailable, format!("cannot write {}", paths.dir.display())).cause(e)
        };
        // The token first: whoever sees daemon.json can read the token next to it.
        control::write_private(&paths.token, token.as_bytes()).map_err(io)?;
        control::write_private(&paths.pid, format!("{}\n", info.pid).as_bytes()).map_err(io)?;
        let doc = serde_json::to_vec_pretty(&info).unwrap_or_default();
        control::write_private(&paths.info, &doc).map_err(io)?;
        eprintln!(
            "authsome daemon {} listening on http://{}:{port} for {}",
            info.version,
            settings.host,
            ctx.home.root().display()
        );
        let config = crate::daemon::Config {
            home: ctx.home.clone(),
            port,
            public_base: env::var(env::SERVER_BASE_URL),
            token: token.into(),
        };
        let result = crate::daemon::serve(listener, config, stop_signal()).await;
        control::remove_files(&paths, &instance);
        eprintln!("authsome daemon stopped");
        result.map_err(|e| CliError::new(Kind::DaemonUnavailable, "the daemon failed").cause(e))
    })
}

/// Ctrl-C or SIGTERM.
async fn stop_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

fn start(ctx: &Context, args: &DaemonListenArgs) -> CliResult {
    let settings = Settings::from_env(args.host.as_deref(), args.port)?;
    let client = runtime()?.block_on(control::ensure_running(&ctx.home, &settings))?;
    if ctx.out.json {
        ctx.out.json(&json!({"v": 1, "running": true, "url": client.base, "pid": client.info.pid}));
    } else {
        ctx.out.note(&format!("authsome daemon running at {} (pid {})", client.base, client.info.pid));
    }
    Ok(())
}

fn stop(ctx: &Context) -> CliResult {
    let settings = Settings::from_env(None, None)?;
    let stopped = runtime()?.block_on(async {
        match control::probe(&ctx.home, &settings).await {
            Probe::Ours(client) => client.shutdown().await.map(|()| true),
            _ => Ok(false),
        }
    })?;
    let text = if stopped { "authsome daemon stopped." } else { "No daemon of this home is running." };
    if ctx.out.json {
        ctx.out.json(&json!({"v": 1, "stopped": stopped}));
    } else {
        ctx.out.note(text);
    }
    Ok(())
}

/// Stop this home's daemon if it runs, then start one with `args`.
fn restart(ctx: &Context, args: &DaemonListenArgs) -> CliResult {
    let settings = Settings::from_env(args.host.as_deref(), args.port)?;
    let (stopped, client) = runtime()?.block_on(async {
        let stopped = match control::probe(&ctx.home, &Settings::from_env(None, None)?).await {
            Probe::Ours(client) => client.shutdown().await.map(|()| true)?,
            _ => false,
        };
        control::ensure_running(&ctx.home, &settings).await.map(|client| (stopped, client))
    })?;
    if ctx.out.json {
        ctx.out.json(&json!({
            "v": 1, "stopped": stopped, "running": true, "url": client.base, "pid": client.info.pid,
        }));
    } else {
        let verb = if stopped { "restarted" } else { "started" };
        ctx.out.note(&format!("authsome daemon {verb} at {} (pid {})", client.base, client.info.pid));
    }
    Ok(())
}

/// `ui`: a one-time link to the daemon's overview (starting the daemon), opened in the
/// browser unless `--no-browser`. The link is data: it goes to stdout.
pub(crate) fn ui(ctx: &Context, args: &UiArgs) -> CliResult {
    let settings = Settings::from_env(None, None)?;
    let url = runtime()?.block_on(async {
        let client = control::ensure_running(&ctx.home, &settings).await?;
        let doc = client.post("/api/ui", &Value::Null).await?;
        doc["url"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| CliError::new(Kind::DaemonUnavailable, "the daemon sent no overview link"))
    })?;
    let opened = !args.no_browser && super::login_flows::has_display();
    if opened {
        super::login_flows::open_browser(&url);
    }
    if ctx.out.json {
        ctx.out.json(&json!({"v": 1, "url": url, "opened": opened}));
    } else {
        ctx.out.data(&url);
        if opened {
            ctx.out.note("Opened the overview in your browser (the link works once).");
        } else {
            ctx.out.note("Open this link in your browser; it works once, for the first browser that opens it.");
        }
    }
    Ok(())
}

fn status(ctx: &Context) -> CliResult {
    let settings = Settings::from_env(None, None)?;
    let paths = Paths::new(&ctx.home);
    let mut doc = runtime()?.block_on(async {
        match control::probe(&ctx.home, &settings).await {
            Probe::Ours(client) => {
                let health = client.get("/health").await.unwrap_or(Value::Null);
                let ready = client.get("/ready").await.unwrap_or(Value::Null);
                json!({"running": true, "health": health, "ready": ready, "url": client.base})
            }
            Probe::NotRunning => json!({"running": false, "health": null, "ready": null}),
            Probe::Foreign { port, .. } => json!({
                "running": false, "health": null, "ready": null,
                "note": format!("127.0.0.1:{port} is answered by something that is not this home's daemon"),
            }),
        }
    });
    doc["pid_file"] = paths.pid.display().to_string().into();
    doc["log_file"] = paths.log.display().to_string().into();
    doc["home"] = ctx.home.root().display().to_string().into();
    ctx.out.json(&doc);
    Ok(())
}

fn logs(ctx: &Context, args: &DaemonLogsArgs) -> CliResult {
    let paths = Paths::new(&ctx.home);
    if !paths.log.exists() {
        ctx.out.note("No daemon log yet.");
        return Ok(());
    }
    let lines = control::tail_lines(&paths.log, args.lines);
    if !lines.is_empty() {
        ctx.out.data(&lines.join("\n"));
    }
    Ok(())
}
