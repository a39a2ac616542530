//! Debug logging: `--verbose` on stderr, `--log-file PATH` to a file as well (both when both are
//! given). Off by default. Colour only on a terminal, never with `--no-color` or `NO_COLOR`, and
//! never in the file. Log lines carry names and outcomes, never secret values.

use std::io::IsTerminal;
use std::path::Path;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::MakeWriterExt;

/// Where the log goes: stderr (`--verbose`) and/or a file (`--log-file`).
pub(crate) struct LogSettings<'a> {
    pub(crate) verbose: bool,
    pub(crate) log_file: Option<&'a Path>,
    /// `--no-color` was given.
    pub(crate) no_color: bool,
}

pub(crate) fn init(settings: &LogSettings<'_>) {
    let file = settings
        .log_file
        .filter(|p| !p.as_os_str().is_empty())
        .and_then(|path| std::fs::OpenOptions::new().create(true).append(true).open(path).ok());
    if !settings.verbose && file.is_none() {
        return;
    }
    // The help promises a debug log wherever it goes; AUTHSOME_LOG narrows or widens it.
    let filter = EnvFilter::try_from_env("AUTHSOME_LOG").unwrap_or_else(|_| EnvFilter::new("debug"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false);
    let _ = match (settings.verbose, file) {
        // Two destinations share one format: escape codes would garble the file, so none.
        (true, Some(file)) => {
            builder.with_ansi(false).with_writer(std::io::stderr.and(std::sync::Mutex::new(file))).try_init()
        }
        (false, Some(file)) => builder.with_ansi(false).with_writer(std::sync::Mutex::new(file)).try_init(),
        (_, None) => builder.with_ansi(stderr_colour(settings.no_color)).with_writer(std::io::stderr).try_init(),
    };
}

/// Colour codes on stderr only for a person at a terminal who did not opt out.
fn stderr_colour(no_color: bool) -> bool {
    !no_color && std::env::var_os(crate::env::NO_COLOR).is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}
