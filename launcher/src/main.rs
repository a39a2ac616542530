//! The `authsome` binary: parse, dispatch, render errors, exit with the right code.

use std::process::ExitCode;

use clap::Parser;

use authsome::cli::{self, args::Cli, context::Context};
use authsome::error::CliError;
use authsome::output::Output;

fn main() -> ExitCode {
    // The sandbox's helper is a fresh exec of this binary: it must run before anything else
    // (no threads, no runtime). Returns at once in every other case.
    #[cfg(target_os = "linux")]
    authsome_netns::maybe_run_helper();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help/version to stdout and usage errors to stderr; usage errors exit 2.
            let _ = e.print();
            return ExitCode::from(e.exit_code().clamp(0, 255) as u8);
        }
    };
    authsome::logging::init(cli.global.verbose, cli.global.log_file.as_deref());
    let color = !cli.global.no_color && std::env::var_os("NO_COLOR").is_none();
    let fallback = Output::new(cli.global.json, cli.global.quiet, color);
    let result = Context::new(&cli.global).and_then(|ctx| cli::dispatch(&ctx, &cli.command));
    match result {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => exit_with(&fallback, &e),
    }
}

fn exit_with(out: &Output, e: &CliError) -> ExitCode {
    if !e.reported {
        out.error(e);
    }
    ExitCode::from(e.exit_code().clamp(0, 255) as u8)
}
