//! The local daemon (`authsome daemon serve`): an axum server on `127.0.0.1:7998` (port
//! configurable) that serves what needs a browser: the login forms (API key, OAuth client id
//! and secret), the OAuth callback `/auth/callback/oauth`, and a small JSON API the CLI uses
//! to start and watch logins, and the overview page of `authsome ui` (`ui`).
//!
//! Owns login sessions and the daemon's files under `AUTHSOME_HOME/daemon/`; the OAuth
//! protocol itself is `crate::auth`. Security beyond upstream (its bugs 1, 7, 19):
//! - every API call needs the bearer token from `daemon/daemon.token` (0600), else 401;
//! - forms carry a per-session CSRF token, a POST without it gets 403;
//! - the `Host` header must be the daemon's own (`127.0.0.1:PORT`, `localhost:PORT`, or the
//!   host of `AUTHSOME_SERVER_BASE_URL`), else 421 (DNS rebinding); a cross-origin `Origin`
//!   gets 403;
//! - no route returns a secret;
//! - one daemon per home: `daemon/daemon.json` says where it listens, and before the CLI sends
//!   it anything it must answer a fresh nonce with an HMAC under `daemon.token`
//!   (`security::health_proof`); the public `/health` holds nothing that identifies it, so a
//!   program squatting the port cannot pass for it (upstream bug 7).

pub(crate) mod control;
mod login;
mod pages;
mod security;
mod server;
mod sessions;
mod ui;

pub(crate) use server::{Config, serve};

/// The default port, as upstream.
pub(crate) const DEFAULT_PORT: u16 = 7998;
/// The default listen address.
pub(crate) const DEFAULT_HOST: &str = "127.0.0.1";
