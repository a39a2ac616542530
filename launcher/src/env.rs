//! Every environment variable authsome reads, in one place. Commands never read the
//! environment themselves: `Settings` does, once.

/// Home directory (default `~/.authsome`).
pub const HOME: &str = authsome_vault::HOME_ENV;
/// Profile to use when `--profile` is not given.
pub const PROFILE: &str = "AUTHSOME_PROFILE";
/// Passphrase for profiles with the `passphrase` key backend (non-interactive use).
pub const PASSPHRASE: &str = "AUTHSOME_PASSPHRASE";
/// Key backend for a profile created implicitly by the first write (`file`, `passphrase` or
/// `keyring`; unset: `keyring` when the Secret Service answers, unlocked, else `file`).
pub const KEY_BACKEND: &str = "AUTHSOME_KEY_BACKEND";
/// Extra PEM roots trusted for upstream TLS (corporate roots, tests).
pub const EXTRA_ROOTS: &str = "AUTHSOME_EXTRA_ROOTS";
/// `host:port:addr:port[,…]`: send upstream connections for a host elsewhere (curl's --connect-to).
pub const CONNECT_TO: &str = "AUTHSOME_CONNECT_TO";
/// The daemon's URL (default `http://127.0.0.1:7998`).
pub const DAEMON_URL: &str = "AUTHSOME_DAEMON_URL";
/// Port of this home's daemon when none runs yet (default 7998; 0 picks a free port).
pub const DAEMON_PORT: &str = "AUTHSOME_DAEMON_PORT";
/// Public base for the OAuth callback and form URLs.
pub const SERVER_BASE_URL: &str = "AUTHSOME_SERVER_BASE_URL";
/// The no-colour convention (https://no-color.org).
pub const NO_COLOR: &str = "NO_COLOR";

pub fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}
