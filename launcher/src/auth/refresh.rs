//! Keeping OAuth tokens fresh: the one place that refreshes.
//!
//! Callers (the `run` proxy, `export`, the library) ask for a connection's secrets with
//! [`fresh_secrets`] (async) or [`fresh_secrets_blocking`] (sync; builds a runtime only when a
//! refresh is due, so a plain lookup costs no runtime or HTTP client). Both return a [`Fresh`]:
//! the connection's metadata and secrets after any refresh.
//!
//! Rules (docs/architecture.md; the Python authsome's refresh, fixed where it raced):
//! - A token is refreshed within `min(300 s, half its lifetime)` of `expires_at` (so a token
//!   that lives 60 s is not refreshed on every use), or always with `force` (a 401 upstream).
//!   Tokens without `expires_at` (pasted tokens) are never refreshed.
//! - Refreshes are serialised across processes by an exclusive lock on
//!   `profiles/<profile>/locks/<provider>@<connection>.lock`. After taking it the row is read
//!   again: if another process refreshed meanwhile, its token is used and no request is made,
//!   so a rotating refresh token is never presented twice (oidc-provider revokes the whole
//!   grant on reuse). The write is a compare-and-swap on the row version.
//! - A new refresh token (rotation) replaces the old one; the granted scope is stored.
//! - A failure before hard expiry returns the old token and records `last_refresh_error`
//!   (and another attempt waits [`RETRY_AFTER_FAILURE`]); after expiry the connection is
//!   marked `expired` and the error (exit 6) says to log in again.

use std::fs::{File, OpenOptions};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use authsome_vault::{ConnectionMeta, CreateOptions, Home, KeySource, Secrets, Status, Vault};
use secrecy::ExposeSecret;

use super::Endpoints;
use super::token::token_request;
use crate::error::{CliError, Kind};
use crate::providers::Provider;

/// The largest refresh margin.
pub(crate) const MAX_MARGIN: i64 = 300;
/// After a failed refresh (token still valid), wait this long before trying again.
pub(crate) const RETRY_AFTER_FAILURE: i64 = 30;
/// Give up waiting for another process's refresh after this long.
const LOCK_TIMEOUT: Duration = Duration::from_secs(60);

/// A connection's metadata and secrets, refreshed if that was due.
#[derive(Debug, Clone)]
pub(crate) struct Fresh {
    pub(crate) meta: ConnectionMeta,
    pub(crate) secrets: Secrets,
}

/// Seconds before `expires_at` at which a token counts as due: `min(300, lifetime / 2)`.
pub(crate) fn margin(meta: &ConnectionMeta) -> i64 {
    let Some(expires_at) = meta.expires_at else { return 0 };
    let lifetime = expires_at - meta.obtained_at.div_euclid(1_000_000);
    (lifetime.max(0) / 2).min(MAX_MARGIN)
}

/// Whether the connection's access token is due for a refresh at `now` (unix seconds).
pub(crate) fn needs_refresh(meta: &ConnectionMeta, now: i64) -> bool {
    match meta.expires_at {
        Some(expires_at) => now >= expires_at - margin(meta),
        None => false,
    }
}

/// Whether a refresh is worth attempting now: due (or forced), and not just failed.
fn should_refresh(meta: &ConnectionMeta, now: i64, force: bool) -> bool {
    if meta.status == Status::Expired {
        return true;
    }
    if !force && !needs_refresh(meta, now) {
        return false;
    }
    let recently_failed = meta.last_refresh_error.is_some()
        && meta.last_refresh_at.is_some_and(|at| now - at.div_euclid(1_000_000) < RETRY_AFTER_FAILURE);
    let still_valid = meta.expires_at.is_none_or(|at| now < at);
    !(recently_failed && still_valid && !force)
}

fn check_usable(meta: &ConnectionMeta) -> Result<(), CliError> {
    match meta.status {
        Status::Connected | Status::Expired => Ok(()),
        other => Err(CliError::new(
            Kind::CredentialMissing,
            format!("{}/{} is {}", meta.provider, meta.name, other.as_str()),
        )
        .hint(login_hint(&meta.provider, &meta.name))),
    }
}

fn login_hint(provider: &str, connection: &str) -> String {
    format!("log in again with `authsome login {provider} --connection {connection} --force`")
}

/// The sync entry point. Reads through `vault` and returns at once when no refresh is due
/// (no runtime, no HTTP client); otherwise runs [`fresh_secrets`] on a current-thread runtime
/// (on a helper thread when called from inside a runtime).
pub(crate) fn fresh_secrets_blocking(
    vault: &Vault,
    provider: &Provider,
    connection: &str,
    force: bool,
    key_source: &(dyn KeySource + Sync),
) -> Result<Fresh, CliError> {
    let meta = vault.require_connection(&provider.name, connection)?;
    check_usable(&meta)?;
    if !should_refresh(&meta, authsome_vault::time::now_seconds(), force) {
        let secrets = vault.secrets(key_source, &provider.name, connection)?;
        return Ok(Fresh { meta, secrets });
    }
    let home = vault.home().clone();
    let profile = vault.profile().to_string();
    let run = || -> Result<Fresh, CliError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| CliError::new(Kind::Generic, "cannot start the async runtime").cause(e))?;
        runtime.block_on(fresh_secrets(&home, &profile, provider, connection, force, key_source))
    };
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|scope| {
            scope.spawn(run).join().unwrap_or_else(|_| Err(CliError::new(Kind::Generic, "refresh panicked")))
        })
    } else {
        run()
    }
}

/// The async entry point: a connection's secrets, refreshed first when due or `force`d.
pub(crate) async fn fresh_secrets(
    home: &Home,
    profile: &str,
    provider: &Provider,
    connection: &str,
    force: bool,
    key_source: &(dyn KeySource + Sync),
) -> Result<Fresh, CliError> {
    let mut vault = Vault::open(home, profile)?;
    let first = vault.require_connection(&provider.name, connection)?;
    check_usable(&first)?;
    if !should_refresh(&first, authsome_vault::time::now_seconds(), force) {
        let secrets = vault.secrets(key_source, &provider.name, connection)?;
        return Ok(Fresh { meta: first, secrets });
    }

    let _lock = ConnectionLock::acquire(home, profile, &provider.name, connection).await?;
    // Read again under the lock: another process may have refreshed (and rotated) already.
    let meta = vault.require_connection(&provider.name, connection)?;
    check_usable(&meta)?;
    let now = authsome_vault::time::now_seconds();
    let refreshed_elsewhere = meta.version != first.version && meta.status == Status::Connected;
    if refreshed_elsewhere || !should_refresh(&meta, now, force) {
        let secrets = vault.secrets(key_source, &provider.name, connection)?;
        return Ok(Fresh { meta, secrets });
    }
    let secrets = vault.secrets(key_source, &provider.name, connection)?;
    let expired = meta.expires_at.is_some_and(|at| now >= at);

    // Everything the request needs, gathered before the first await (a `Vault` is not Sync,
    // so no borrow of it may live across one: the proxy spawns this future).
    let prepared = (|| -> Result<_, String> {
        let refresh_token = secrets
            .refresh_token
            .as_ref()
            .ok_or_else(|| "no refresh token was issued for this connection".to_string())?
            .expose_secret()
            .to_string();
        // The client that obtained this connection, not whichever logged in last.
        let client = super::connection_client(&vault, key_source, provider, &meta, &secrets)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "no OAuth client is stored for this connection".to_string())?;
        let endpoints = Endpoints::resolve(provider, meta.base_url.as_deref()).map_err(|e| e.message)?;
        let http = super::http::client().map_err(|e| e.message)?;
        let params =
            vec![("grant_type".to_string(), "refresh_token".to_string()), ("refresh_token".to_string(), refresh_token)];
        Ok((http, endpoints.refresh, client, params))
    })();
    let outcome = match prepared {
        Ok((http, url, client, params)) => {
            token_request(&http, &url, &client, params).await.map_err(|e| e.provider_message())
        }
        Err(why) => Err(why),
    };
    let token = match outcome {
        Ok(token) => token,
        Err(why) => {
            let (store, _) = vault.writer(key_source, CreateOptions::default())?;
            if !expired && meta.status == Status::Connected {
                tracing::warn!(provider = %provider.name, connection, error = %why, "refresh failed; the current token is still valid");
                store.update_status(&provider.name, connection, Status::Connected, Some(&why))?;
                let meta = vault.require_connection(&provider.name, connection)?;
                return Ok(Fresh { meta, secrets });
            }
            store.update_status(&provider.name, connection, Status::Expired, Some(&why))?;
            return Err(CliError::new(
                Kind::RefreshFailed,
                format!(
                    "the {} token of {}/{connection} expired and could not be refreshed",
                    provider.display_name, provider.name
                ),
            )
            .cause(why)
            .hint(login_hint(&provider.name, connection)));
        }
    };

    let mut next = meta.clone();
    let now = authsome_vault::time::now_seconds();
    next.obtained_at = now * 1_000_000;
    next.expires_at = token.expires_in.map(|secs| now + secs);
    if let Some(kind) = &token.token_type {
        next.token_type = Some(kind.clone());
    }
    if let Some(granted) = &token.scope {
        next.scopes = Some(super::token::split_scopes(granted));
    }
    next.status = Status::Connected;
    next.last_refresh_at = Some(now * 1_000_000);
    next.last_refresh_error = None;
    let next_secrets = Secrets {
        access_token: Some(token.access_token),
        refresh_token: token.refresh_token.or(secrets.refresh_token),
        api_key: secrets.api_key,
        client_secret: secrets.client_secret,
        extra: secrets.extra,
    };
    let (store, key) = vault.writer(key_source, CreateOptions::default())?;
    match store.put_connection_if_version(key, &next, &next_secrets, meta.version) {
        Ok(stored) => Ok(Fresh { meta: stored, secrets: next_secrets }),
        // Written without the lock meanwhile (a new login): that record wins.
        Err(authsome_vault::Error::Conflict { .. }) => {
            let meta = vault.require_connection(&provider.name, connection)?;
            let secrets = vault.secrets(key_source, &provider.name, connection)?;
            Ok(Fresh { meta, secrets })
        }
        Err(e) => Err(e.into()),
    }
}

/// An exclusive advisory lock on one connection, held until dropped.
struct ConnectionLock {
    _file: File,
}

impl ConnectionLock {
    fn path(home: &Home, profile: &str, provider: &str, connection: &str) -> PathBuf {
        home.profile_dir(profile).join("locks").join(format!("{provider}@{connection}.lock"))
    }

    async fn acquire(home: &Home, profile: &str, provider: &str, connection: &str) -> Result<Self, CliError> {
        let path = Self::path(home, profile, provider, connection);
        let io_error = |e: std::io::Error| {
            CliError::new(Kind::StoreUnavailable, format!("cannot open the refresh lock {}", path.display())).cause(e)
        };
        if let Some(dir) = path.parent() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io_error)?;
        }
        use std::os::unix::fs::OpenOptionsExt;
        let file =
            OpenOptions::new().create(true).truncate(false).write(true).mode(0o600).open(&path).map_err(io_error)?;
        let started = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Self { _file: file }),
                Err(std::fs::TryLockError::WouldBlock) => {}
                Err(std::fs::TryLockError::Error(e)) => return Err(io_error(e)),
            }
            if started.elapsed() > LOCK_TIMEOUT {
                return Err(CliError::new(
                    Kind::StoreUnavailable,
                    format!("another process has been refreshing {provider}/{connection} for over a minute"),
                )
                .hint(format!("if no authsome process is running, delete {}", path.display())));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use authsome_vault::{AuthType, SecretSource};

    fn meta(obtained: i64, expires: Option<i64>) -> ConnectionMeta {
        let mut m = ConnectionMeta::new("p", "c", AuthType::OAuth2, SecretSource::OAuth);
        m.obtained_at = obtained * 1_000_000;
        m.expires_at = expires;
        m
    }

    #[test]
    fn the_async_entry_point_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        let home = Home::at("/nonexistent");
        let provider = crate::providers::Catalog::bundled_only().get("github").unwrap().provider.clone();
        let future = fresh_secrets(&home, "default", &provider, "default", false, &authsome_vault::NoPassphrase);
        assert_send(&future);
    }

    #[test]
    fn margin_is_capped_at_half_the_lifetime() {
        // One hour: 300 s margin.
        let hour = meta(1_000, Some(4_600));
        assert_eq!(margin(&hour), 300);
        assert!(!needs_refresh(&hour, 4_299));
        assert!(needs_refresh(&hour, 4_300));
        // One minute: 30 s, not every use (upstream bug 10).
        let minute = meta(1_000, Some(1_060));
        assert_eq!(margin(&minute), 30);
        assert!(!needs_refresh(&minute, 1_029));
        assert!(needs_refresh(&minute, 1_030));
        // No expiry: never.
        assert!(!needs_refresh(&meta(1_000, None), i64::MAX / 2));
        // Clock skew (expiry before issue): refresh when past expiry.
        let odd = meta(2_000, Some(1_000));
        assert_eq!(margin(&odd), 0);
        assert!(needs_refresh(&odd, 1_000));
    }

    #[test]
    fn a_recent_failure_waits_unless_expired_or_forced() {
        let mut m = meta(1_000, Some(1_060));
        m.last_refresh_error = Some("invalid_grant".into());
        m.last_refresh_at = Some(1_040 * 1_000_000);
        assert!(!should_refresh(&m, 1_045, false));
        assert!(should_refresh(&m, 1_045, true));
        assert!(should_refresh(&m, 1_061, false), "past expiry: try again (the caller needs a token)");
        assert!(should_refresh(&m, 1_071 + RETRY_AFTER_FAILURE, false));
        m.status = Status::Expired;
        assert!(should_refresh(&m, 1_045, false));
    }
}
