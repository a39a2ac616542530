//! The OS keychain behind the `keyring` key backend: the freedesktop Secret Service (GNOME
//! Keyring, KWallet, KeePassXC) on the D-Bus session bus, reached through the keyring
//! ecosystem's Secret Service store (`keyring-core` + `zbus-secret-service-keyring-store`).
//!
//! The vault decides what is stored; this module only moves one item in and out. The store
//! negotiates the Secret Service's encrypted session (Diffie-Hellman, then AES-128-CBC), so the
//! key does not cross the session bus in clear text. Its client blocks on a runtime of its own,
//! so every call runs on a thread of its own: it works the same from plain code and from inside
//! the daemon's or the proxy's tokio runtime.
//!
//! Items are found by the attributes `application=authsome` and `authsome_key_id=<id>` (the id is
//! in the profile's key file), which is what items written before this client carry too: they
//! keep opening as they are, and `secret-tool search application authsome` lists every item. New
//! items also carry the store's own `service=authsome`, `username=<id>`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{RecvTimeoutError, sync_channel};
use std::time::Duration;

use authsome_vault::{Keychain, KeychainError, KeychainItem};
use keyring_core::Entry;
use keyring_core::api::CredentialStoreApi as _;
use secret_service::EncryptionType;
use zbus_secret_service_keyring_store::Store;
use zeroize::Zeroizing;

/// The store's `service` attribute on new items (its `username` is the item id).
const SERVICE: &str = "authsome";

/// `available` decides whether a new profile uses the keychain: it must not hold a command up.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// A whole store, load or delete: a handful of calls and at most a prompt or two the user answers.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(300);

const NO_SERVICE: &str =
    "no Secret Service on the session bus (org.freedesktop.secrets): start GNOME Keyring, KWallet or KeePassXC";
const PROMPT_DISMISSED: &str = "the keychain is locked and its prompt to unlock it was dismissed (no desktop session to \
                                show it, or cancelled)";

/// The Secret Service of the session bus in `DBUS_SESSION_BUS_ADDRESS` (else
/// `$XDG_RUNTIME_DIR/bus`).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SecretService;

impl Keychain for SecretService {
    fn available(&self) -> bool {
        if bus_address().is_err() {
            return false;
        }
        // Usable without asking anything: a default collection exists and is unlocked. Reading
        // the alias and the `Locked` property never prompts.
        on_own_thread(PROBE_TIMEOUT, || {
            let service = secret_service::blocking::SecretService::connect(EncryptionType::Dh)
                .map_err(|e| from_service("cannot open a Secret Service session", e))?;
            match service.get_default_collection() {
                Ok(collection) => {
                    Ok(!collection.is_locked().map_err(|e| from_service("cannot read the keychain's state", e))?)
                }
                Err(_) => Ok(false),
            }
        })
        .unwrap_or(false)
    }

    fn store(&self, item: &KeychainItem<'_>, secret: &[u8]) -> Result<(), KeychainError> {
        let label = label(item);
        let id = item.id.to_string();
        let secret = Zeroizing::new(secret.to_vec());
        on_own_thread(OPERATION_TIMEOUT, move || {
            let store = open_store()?;
            let modifiers = HashMap::from([("label", label.as_str())]);
            let entry = store
                .build(SERVICE, &id, Some(&modifiers))
                .map_err(|e| from_keyring("cannot describe the keychain item", e))?;
            entry.set_secret(&secret).map_err(|e| from_keyring("cannot store the key", e))?;
            // The store creates the item with its own attributes; ours are what lookups use.
            if let Err(e) = entry.update_attributes(&our_attributes(&id)) {
                let _ = entry.delete_credential();
                return Err(from_keyring("cannot set the keychain item's attributes", e));
            }
            Ok(())
        })
    }

    fn load(&self, item: &KeychainItem<'_>) -> Result<Option<Zeroizing<Vec<u8>>>, KeychainError> {
        let id = item.id.to_string();
        on_own_thread(OPERATION_TIMEOUT, move || {
            let store = open_store()?;
            let Some(entry) = find(&store, &id)?.into_iter().next() else { return Ok(None) };
            let secret = entry.get_secret().map_err(|e| from_keyring("cannot read the key", e))?;
            Ok(Some(Zeroizing::new(secret)))
        })
    }

    fn delete(&self, item: &KeychainItem<'_>) -> Result<(), KeychainError> {
        let id = item.id.to_string();
        on_own_thread(OPERATION_TIMEOUT, move || {
            let store = open_store()?;
            // Normally one item; a second copy (a store retried by hand) is removed too, within
            // a bound, so a keychain that ignores Delete cannot keep us looping.
            for _ in 0..8 {
                let entries = find(&store, &id)?;
                if entries.is_empty() {
                    return Ok(());
                }
                for entry in entries {
                    match entry.delete_credential() {
                        Ok(()) | Err(keyring_core::Error::NoEntry) => {}
                        Err(e) => return Err(from_keyring("cannot delete the key", e)),
                    }
                }
            }
            Err(KeychainError::other("cannot delete the key", "the keychain kept the item after deleting it"))
        })
    }
}

/// The Python authsome's master key in `keyring` mode: Python `keyring` keeps it in the Secret
/// Service under the attributes `service=authsome`, `username=master_key` (base64 text), which
/// are the store's own attributes for that service and user.
/// Only read, for `authsome migrate`; the item is left for the Python authsome's backup.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PythonMasterKey;

impl authsome_vault::migrate::PythonKeyring for PythonMasterKey {
    fn master_key(&self) -> Result<Option<Zeroizing<Vec<u8>>>, KeychainError> {
        on_own_thread(OPERATION_TIMEOUT, || {
            let store = open_store()?;
            let spec = HashMap::from([("service", "authsome"), ("username", "master_key")]);
            let found = store.search(&spec).map_err(|e| from_keyring("cannot search the keychain", e))?;
            let Some(entry) = found.into_iter().next() else { return Ok(None) };
            let secret = entry.get_secret().map_err(|e| from_keyring("cannot read the key", e))?;
            Ok(Some(Zeroizing::new(secret)))
        })
    }
}

fn label(item: &KeychainItem<'_>) -> String {
    format!("authsome master key, profile '{}' ({})", item.profile, item.home.display())
}

fn our_attributes(id: &str) -> HashMap<&str, &str> {
    HashMap::from([("application", "authsome"), ("authsome_key_id", id)])
}

/// The items holding key `id`: by our attributes (every item authsome wrote, before this client
/// too), else by the store's (an item whose attributes were never set: the process ended
/// between creating it and labelling it).
fn find(store: &Store, id: &str) -> Result<Vec<Entry>, KeychainError> {
    let search =
        |spec: &HashMap<&str, &str>| store.search(spec).map_err(|e| from_keyring("cannot search the keychain", e));
    let found = search(&our_attributes(id))?;
    if !found.is_empty() {
        return Ok(found);
    }
    search(&HashMap::from([("service", SERVICE), ("username", id)]))
}

/// A connection to the Secret Service with an encrypted session, or why there is none.
fn open_store() -> Result<Arc<Store>, KeychainError> {
    bus_address()?;
    Store::new().map_err(|e| from_keyring("cannot open a Secret Service session", e))
}

/// The session bus address: `DBUS_SESSION_BUS_ADDRESS`, else the socket systemd and dbus-broker
/// put at `$XDG_RUNTIME_DIR/bus` (where zbus looks too). Checked first for a clear message.
fn bus_address() -> Result<String, KeychainError> {
    if let Some(address) = std::env::var("DBUS_SESSION_BUS_ADDRESS").ok().filter(|a| !a.is_empty()) {
        return Ok(address);
    }
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR") {
        let socket = Path::new(&dir).join("bus");
        if socket.exists() {
            return Ok(format!("unix:path={}", socket.display()));
        }
    }
    Err(KeychainError::Absent(
        "no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is unset and $XDG_RUNTIME_DIR/bus does not exist)".into(),
    ))
}

/// Run `job` on a thread of its own, within `limit`. The store's client blocks on a tokio
/// runtime of its own, which cannot run inside another (the daemon's, the proxy's). A job still
/// running at the limit is left to end by itself: a blocking D-Bus call cannot be cancelled.
fn on_own_thread<T: Send + 'static>(
    limit: Duration,
    job: impl FnOnce() -> Result<T, KeychainError> + Send + 'static,
) -> Result<T, KeychainError> {
    let (sender, receiver) = sync_channel(1);
    std::thread::Builder::new()
        .name("authsome-keychain".into())
        .spawn(move || {
            let _ = sender.send(job());
        })
        .map_err(|e| KeychainError::other("cannot start the keychain client", e))?;
    match receiver.recv_timeout(limit) {
        Ok(result) => result,
        Err(RecvTimeoutError::Timeout) => Err(KeychainError::other(
            format!("the keychain did not answer within {} s", limit.as_secs()),
            std::io::Error::from(std::io::ErrorKind::TimedOut),
        )),
        Err(RecvTimeoutError::Disconnected) => {
            Err(KeychainError::other("the keychain client failed", "it stopped without an answer"))
        }
    }
}

/// A store error as the vault's kinds: locked, absent, or other with its cause.
fn from_keyring(what: &str, error: keyring_core::Error) -> KeychainError {
    match error {
        keyring_core::Error::NoStorageAccess(inner) | keyring_core::Error::PlatformFailure(inner) => {
            match inner.downcast::<secret_service::Error>() {
                Ok(service) => from_service(what, *service),
                Err(inner) => KeychainError::Other { what: what.to_string(), source: inner },
            }
        }
        other => KeychainError::other(what, other),
    }
}

/// A Secret Service client error as the vault's kinds.
fn from_service(what: &str, error: secret_service::Error) -> KeychainError {
    use secret_service::Error as E;
    match &error {
        E::Unavailable => KeychainError::Absent(NO_SERVICE.into()),
        E::Zbus(e @ (zbus::Error::Connection(..) | zbus::Error::Address(_))) => {
            KeychainError::Absent(format!("cannot connect to the D-Bus session bus: {e}"))
        }
        E::Prompt | E::Locked => KeychainError::Locked(PROMPT_DISMISSED.into()),
        E::ZbusFdo(fdo) if is_service_unknown(fdo) => KeychainError::Absent(NO_SERVICE.into()),
        E::Zbus(zbus::Error::FDO(fdo)) if is_service_unknown(fdo) => KeychainError::Absent(NO_SERVICE.into()),
        E::Zbus(zbus::Error::MethodError(name, ..)) if name.as_str() == "org.freedesktop.DBus.Error.ServiceUnknown" => {
            KeychainError::Absent(NO_SERVICE.into())
        }
        _ => KeychainError::other(what, error),
    }
}

fn is_service_unknown(error: &zbus::fdo::Error) -> bool {
    matches!(error, zbus::fdo::Error::ServiceUnknown(_) | zbus::fdo::Error::NameHasNoOwner(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_errors_become_the_vaults_kinds() {
        assert!(
            matches!(from_service("x", secret_service::Error::Unavailable), KeychainError::Absent(m) if m == NO_SERVICE)
        );
        assert!(matches!(from_service("x", secret_service::Error::Prompt), KeychainError::Locked(_)));
        let unknown = zbus::fdo::Error::ServiceUnknown("org.freedesktop.secrets".into());
        assert!(matches!(from_service("x", secret_service::Error::ZbusFdo(unknown)), KeychainError::Absent(_)));
        let other = from_service("cannot read the key", secret_service::Error::Crypto("bad padding"));
        assert!(matches!(&other, KeychainError::Other { what, .. } if what == "cannot read the key"));
        assert!(std::error::Error::source(&other).is_some(), "the cause is kept");

        // Through the keyring-core error the store wraps them in.
        let locked = keyring_core::Error::NoStorageAccess(Box::new(secret_service::Error::Prompt));
        assert!(
            matches!(from_keyring("x", locked), KeychainError::Locked(m) if m.contains("prompt to unlock it was dismissed"))
        );
        let down = keyring_core::Error::PlatformFailure(Box::new(secret_service::Error::Unavailable));
        assert!(matches!(from_keyring("x", down), KeychainError::Absent(_)));
        let refused = std::io::Error::from(std::io::ErrorKind::NotFound);
        let address: zbus::Address = "unix:path=/nonexistent/bus".parse().unwrap();
        let no_bus = secret_service::Error::Zbus(zbus::Error::Connection(Arc::new(refused), address));
        assert!(matches!(from_service("x", no_bus), KeychainError::Absent(m) if m.contains("D-Bus session bus")));
    }

    #[test]
    fn calls_run_off_any_runtime_and_time_out() {
        // From inside a tokio runtime (the daemon's), the job still runs, on its own thread.
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let inside = runtime.block_on(async {
            on_own_thread(Duration::from_secs(5), || Ok(tokio::runtime::Handle::try_current().is_err()))
        });
        assert!(inside.unwrap(), "the job has no runtime of the caller's");
        let slow = on_own_thread(Duration::from_millis(50), || {
            std::thread::sleep(Duration::from_millis(500));
            Ok(())
        });
        assert!(matches!(slow, Err(KeychainError::Other { what, .. }) if what.contains("did not answer")));
    }
}
