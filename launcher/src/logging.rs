//! Debug logging: `--verbose` on stderr, `--log-file PATH` to a file. Off by default. Log lines
//! carry names and outcomes, never secret values.

use std::path::Path;

use tracing_subscriber::EnvFilter;

pub(crate) fn init(verbose: bool, log_file: Option<&Path>) {
    let file = log_file
        .filter(|p| !p.as_os_str().is_empty())
        .and_then(|path| std::fs::OpenOptions::new().create(true).append(true).open(path).ok());
    if !verbose && file.is_none() {
        return;
    }
    let filter = EnvFilter::try_from_env("AUTHSOME_LOG")
        .unwrap_or_else(|_| EnvFilter::new(if verbose { "debug" } else { "info" }));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false);
    let _ = match file {
        Some(file) => builder.with_ansi(false).with_writer(std::sync::Mutex::new(file)).try_init(),
        None => builder.with_writer(std::io::stderr).try_init(),
    };
}
