//! authsome: a local credential broker for AI agents.
//!
//! [`AuthService`] is the library API for programs that want a credential without shelling
//! out. Everything else in this crate serves the `authsome` binary and is private to it; the
//! layers, from top to bottom (`docs/architecture.md`):
//!
//! ```text
//! main -> cli -> { run, daemon, auth, providers, service } -> context -> { vault, proxy, netns }
//! ```
//!
//! `cli` alone knows clap; it resolves flags, files and the environment into settings
//! (`context::GlobalSettings`, `run::RunSettings`) and hands them down.
#![forbid(unsafe_code)]
#![warn(unreachable_pub)]

pub(crate) mod auth;
pub(crate) mod cli;
#[cfg(target_os = "linux")]
pub mod container;
pub(crate) mod context;
pub(crate) mod daemon;
pub(crate) mod env;
pub(crate) mod error;
pub(crate) mod inject;
#[cfg(target_os = "linux")]
pub(crate) mod keychain;
pub(crate) mod logging;
pub(crate) mod output;
pub(crate) mod providers;
pub(crate) mod run;
mod service;

pub use service::{AuthService, Error};

/// The `authsome` command line (the binary's `main`). Not a library API: its behaviour is the
/// CLI's, documented by `authsome --help`.
#[doc(hidden)]
pub fn main() -> std::process::ExitCode {
    cli::main()
}

/// The OS keychain `keyring` profiles keep their key in; `None` where authsome has no client for
/// one (outside Linux, for now).
pub(crate) fn os_keychain() -> Option<&'static dyn authsome_vault::Keychain> {
    #[cfg(target_os = "linux")]
    return Some(&keychain::SecretService);
    #[cfg(not(target_os = "linux"))]
    return None;
}
