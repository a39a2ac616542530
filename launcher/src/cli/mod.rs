//! The command line: clap definitions (`args`), turning them into settings, and one module per
//! group of commands. `main` parses and renders errors; `dispatch` is the only place that maps a
//! command to its function. Nothing below `cli` knows about clap.

pub(crate) mod admin;
pub(crate) mod approve;
pub(crate) mod args;
pub(crate) mod ca;
pub(crate) mod client;
#[cfg(target_os = "linux")]
pub(crate) mod container;
pub(crate) mod daemon;
pub(crate) mod export;
pub(crate) mod lock;
pub(crate) mod log;
pub(crate) mod login;
pub(crate) mod login_flows;
pub(crate) mod mcp;
pub(crate) mod migrate;
pub(crate) mod run;
#[cfg(target_os = "linux")]
mod runtimes;
pub(crate) mod scan;
pub(crate) mod show;
pub(crate) mod skill;
pub(crate) mod spinner;

use args::{Command, ConnectionCommand};
use std::process::ExitCode;

use clap::Parser;

use crate::context::{Context, GlobalSettings};

use crate::error::{CliError, CliResult};
use crate::output::Output;

/// The whole command line: parse, set up logging, run, render the error, exit.
pub(crate) fn main() -> ExitCode {
    let cli = match args::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    harden_process();
    crate::logging::init(&crate::logging::LogSettings {
        verbose: cli.global.verbose,
        log_file: cli.global.log_file.as_deref(),
        no_color: cli.global.no_color,
    });
    let global = global_settings(&cli.global);
    let fallback = global.output();
    let result = Context::new(&global).and_then(|ctx| dispatch(&ctx, &cli.command));
    match result {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => exit_with(&fallback, &e),
    }
}

/// authsome holds keys in memory: no core dump may write them to disk, and no other process of
/// the same user may read this one's memory (`/proc/PID/mem`, ptrace) or environment. Programs
/// authsome executes start dumpable again (execve resets the flag).
fn harden_process() {
    #[cfg(target_os = "linux")]
    {
        use nix::sys::resource::{Resource, setrlimit};
        let (_, hard) = nix::sys::resource::getrlimit(Resource::RLIMIT_CORE).unwrap_or((0, 0));
        if let Err(e) = setrlimit(Resource::RLIMIT_CORE, 0, hard) {
            tracing::debug!(error = %e, "cannot disable core dumps");
        }
        if let Err(e) = nix::sys::prctl::set_dumpable(false) {
            tracing::debug!(error = %e, "cannot clear the dumpable flag");
        }
    }
}

/// clap prints help and the version to stdout and usage errors to stderr (exit 2). With
/// `--json` anywhere on the line a usage error is the JSON error document on stdout, as every
/// other error is, so scripts parse one shape.
fn usage_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let json = std::env::args_os().skip(1).take_while(|a| a != "--").any(|a| a == "--json");
    let informational = matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion);
    if json && !informational {
        // clap's text: "error: …" (maybe over several lines), then "Usage: …", then a tip.
        let rendered = e.render().to_string();
        let message: Vec<&str> = rendered
            .lines()
            .map(str::trim)
            .take_while(|l| !l.starts_with("Usage:"))
            .filter(|l| !l.is_empty() && !l.starts_with("tip:"))
            .collect();
        let message = message.join(" ").trim_start_matches("error: ").to_string();
        let usage = rendered.lines().find(|l| l.starts_with("Usage:")).map(str::trim);
        let hint = match usage {
            Some(usage) => format!("{usage} (see --help)"),
            None => "see `authsome --help`".to_string(),
        };
        let error = CliError::new(crate::error::Kind::Usage, message).hint(hint);
        Output::new(true, false, false).error(&error);
    } else {
        let _ = e.print();
    }
    ExitCode::from(e.exit_code().clamp(0, 255) as u8)
}

fn global_settings(global: &args::GlobalArgs) -> GlobalSettings {
    GlobalSettings {
        profile: global.profile.clone(),
        json: global.json,
        quiet: global.quiet,
        no_color: global.no_color,
    }
}

fn exit_with(out: &Output, e: &CliError) -> ExitCode {
    if !e.reported {
        out.error(e);
    }
    ExitCode::from(e.exit_code().clamp(0, 255) as u8)
}

/// Run a command; the result is the process exit code (0 for every command but `run`).
fn dispatch(ctx: &Context, command: &Command) -> CliResult<i32> {
    let done = match command {
        Command::Run(args) => return run::run(ctx, args),
        Command::Approve(args) => approve::approve(ctx, args),
        Command::Ca(command) => ca::ca(ctx, command),
        Command::Client(command) => client::client(ctx, command),
        Command::Login(args) => login::login(ctx, args),
        Command::Logout(args) => login::logout(ctx, args),
        Command::Revoke(args) => login::revoke(ctx, args),
        Command::Remove(args) => login::remove(ctx, args),
        Command::List => show::list(ctx),
        Command::Get(args) => show::get(ctx, args),
        Command::Inspect(args) => show::inspect(ctx, args),
        Command::Whoami => show::whoami(ctx),
        Command::Export(args) => export::export(ctx, args),
        Command::Scan(args) => scan::scan(ctx, args),
        Command::Log(args) => admin::log(ctx, args),
        Command::SetDefault(args) | Command::Connection(ConnectionCommand::SetDefault(args)) => {
            admin::set_default(ctx, args)
        }
        Command::Register(args) => admin::register(ctx, args),
        Command::Doctor(args) => admin::doctor(ctx, args),
        Command::Profile(command) => admin::profile(ctx, command),
        Command::Completions(args) => admin::completions(args),
        Command::Daemon(command) => daemon::daemon(ctx, command),
        Command::Migrate(args) => migrate::migrate(ctx, args),
        #[cfg(target_os = "linux")]
        Command::Image(command) => container::image(ctx, command),
        #[cfg(target_os = "linux")]
        Command::Sandbox(command) => container::sandbox(ctx, command),
        #[cfg(not(target_os = "linux"))]
        Command::Image(_) | Command::Sandbox(_) => {
            Err(CliError::new(crate::error::Kind::RunFailed, "the container backend is only built for Linux hosts yet"))
        }
        Command::Lock => lock::lock(ctx),
        Command::Ui(args) => daemon::ui(ctx, args),
        Command::Mcp(command) => mcp::mcp(ctx, command),
        Command::Skill(command) => skill::skill(ctx, command),
    };
    done.map(|()| 0)
}
