//! Every environment variable authsome reads, named in one place. The global ones are read by
//! `context::Context::new`, `run`'s by `cli::run::settings` (once, into `run::RunSettings`).

/// Home directory (default `~/.authsome`).
pub(crate) const HOME: &str = authsome_vault::HOME_ENV;
/// Profile to use when `--profile` is not given.
pub(crate) const PROFILE: &str = "AUTHSOME_PROFILE";
/// Passphrase for profiles with the `passphrase` key backend (non-interactive use).
pub(crate) const PASSPHRASE: &str = "AUTHSOME_PASSPHRASE";
/// Key backend for a profile created implicitly by the first write (`file`, `passphrase` or
/// `keyring`; unset: `keyring` when the Secret Service answers, unlocked, else `file`).
pub(crate) const KEY_BACKEND: &str = "AUTHSOME_KEY_BACKEND";
/// Extra PEM roots trusted for upstream TLS (corporate roots, tests).
pub(crate) const EXTRA_ROOTS: &str = "AUTHSOME_EXTRA_ROOTS";
/// `host:port:addr:port[,…]`: send upstream connections for a host elsewhere (curl's --connect-to).
pub(crate) const CONNECT_TO: &str = "AUTHSOME_CONNECT_TO";
/// The daemon's URL (default `http://127.0.0.1:7998`).
pub(crate) const DAEMON_URL: &str = "AUTHSOME_DAEMON_URL";
/// Port of this home's daemon when none runs yet (default 7998; 0 picks a free port).
pub(crate) const DAEMON_PORT: &str = "AUTHSOME_DAEMON_PORT";
/// Public base for the OAuth callback and form URLs.
pub(crate) const SERVER_BASE_URL: &str = "AUTHSOME_SERVER_BASE_URL";
/// Seconds a request refused under `run --ask` waits for an answer before it is denied
/// (default 60).
pub(crate) const ASK_TIMEOUT: &str = "AUTHSOME_ASK_TIMEOUT";
/// The no-colour convention (https://no-color.org).
pub(crate) const NO_COLOR: &str = "NO_COLOR";

pub(crate) fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// As [`var`], for values that need not be UTF-8 (a passphrase must not silently count as unset).
pub(crate) fn var_os(name: &str) -> Option<std::ffi::OsString> {
    std::env::var_os(name).filter(|v| !v.is_empty())
}
