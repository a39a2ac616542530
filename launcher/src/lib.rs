//! authsome: a local credential broker for AI agents.
//!
//! The binary's commands live in [`cli`]; [`AuthService`] is the library API for programs
//! that want a credential without shelling out.
#![forbid(unsafe_code)]

pub mod auth;
pub mod cli;
pub mod daemon;
pub mod env;
pub mod error;
pub mod inject;
#[cfg(target_os = "linux")]
pub mod keychain;
pub mod logging;
pub mod output;
pub mod providers;
pub mod run;
mod service;

pub use service::{AuthService, Error};

/// The OS keychain `keyring` profiles keep their key in; `None` where authsome has no client for
/// one (outside Linux, for now).
pub fn os_keychain() -> Option<&'static dyn authsome_vault::Keychain> {
    #[cfg(target_os = "linux")]
    return Some(&keychain::SecretService);
    #[cfg(not(target_os = "linux"))]
    return None;
}
