//! The command line: clap definitions (`args`), shared settings (`context`) and one module per
//! group of commands. `dispatch` is the only place that maps a command to its function.

pub mod admin;
pub mod args;
pub mod ca;
pub mod context;
pub mod daemon;
pub mod export;
pub mod lock;
pub mod login;
pub mod login_flows;
pub mod migrate;
pub mod scan;
pub mod show;
pub mod spinner;

use args::{Command, ConnectionCommand};
use context::Context;

use crate::error::CliResult;

/// Run a command; the result is the process exit code (0 for every command but `run`).
pub fn dispatch(ctx: &Context, command: &Command) -> CliResult<i32> {
    let done = match command {
        Command::Run(args) => return crate::run::run(ctx, args),
        Command::Ca(command) => ca::ca(ctx, command),
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
        Command::Lock => lock::lock(ctx),
    };
    done.map(|()| 0)
}
