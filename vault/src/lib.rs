//! authsome-vault: profiles, the sealed SQLite store, master keys and the audit log.
//!
//! Owns everything authsome keeps on disk under `AUTHSOME_HOME` except the proxy's CA files
//! and custom provider definitions. Does no network I/O and never prints: callers render.
//!
//! ```no_run
//! use authsome_vault::{Home, Vault, NoPassphrase};
//! let home = Home::from_env()?;
//! let vault = Vault::open(&home, "default")?;
//! for connection in vault.list_connections()? {
//!     println!("{} / {}", connection.provider, connection.name);
//! }
//! # Ok::<(), authsome_vault::Error>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod audit;
pub mod config;
pub mod crypto;
mod error;
mod fsutil;
pub mod home;
mod keycache;
pub mod keys;
pub mod migrate;
pub mod profiles;
pub mod record;
pub mod store;
pub mod time;
mod vault;

pub use audit::{AuditEvent, AuditLog};
pub use config::{Config, DEFAULT_PROFILE, KeyBackend};
pub use error::{Error, KeychainError, Result};
pub use home::{HOME_ENV, Home, validate_name};
pub use keys::{KeySource, Keychain, KeychainItem, NoPassphrase, PassphraseRequest};
pub use record::{AuthType, ClientRecord, ConnectionMeta, SecretSource, Secrets, Status};
pub use store::{STORE_FORMAT, Store};
pub use vault::{CreateOptions, DEFAULT_KEY_CACHE_SECONDS, Vault};
