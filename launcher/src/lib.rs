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
pub mod logging;
pub mod output;
pub mod providers;
pub mod run;
mod service;

pub use service::{AuthService, Error};
