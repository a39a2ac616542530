//! The OS keychain behind the `keyring` key backend: the freedesktop Secret Service (GNOME
//! Keyring, KWallet, KeePassXC) on the D-Bus session bus.
//!
//! The vault decides what is stored; this module only moves one item in and out. Each call opens
//! its own bus connection on a private thread and runtime, so it works the same from plain code
//! and from inside the daemon's or the proxy's tokio runtime.
//!
//! The session uses the Secret Service's `plain` algorithm: the key crosses the user's own
//! session bus unencrypted, where any process of this user could also ask the service for it.
//! Items carry the attributes `application=authsome` and `authsome_key_id=<id>` (the id is in the
//! profile's key file), so `secret-tool search application authsome` lists them.

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::time::Duration;

use authsome_vault::{Keychain, KeychainItem};
use futures_util::StreamExt as _;
use zbus::message::Type as MessageType;
use zbus::wire::{ObjectPath, OwnedObjectPath, OwnedVariant, Variant};
use zbus::{Connection, MatchRule, MessageStream};
use zeroize::Zeroizing;

const SERVICE: &str = "org.freedesktop.secrets";
const SERVICE_PATH: &str = "/org/freedesktop/secrets";
const SERVICE_IFACE: &str = "org.freedesktop.Secret.Service";
const COLLECTION_IFACE: &str = "org.freedesktop.Secret.Collection";
const ITEM_IFACE: &str = "org.freedesktop.Secret.Item";
const PROMPT_IFACE: &str = "org.freedesktop.Secret.Prompt";
const SESSION_IFACE: &str = "org.freedesktop.Secret.Session";

/// Every call except waiting for a prompt the user answers.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// `available` decides whether a new profile uses the keychain: it must not hold a command up.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// A prompt is the keychain asking the user for a password (to unlock it, for instance).
const PROMPT_TIMEOUT: Duration = Duration::from_secs(120);
/// A whole store, load or delete: a handful of calls and at most a prompt or two.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(300);

/// The Secret Service of the session bus in `DBUS_SESSION_BUS_ADDRESS` (else
/// `$XDG_RUNTIME_DIR/bus`).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SecretService;

/// What travels in a Secret Service `Secret` struct: (session, parameters, value, content type).
type SecretStruct = (OwnedObjectPath, Vec<u8>, Vec<u8>, String);

impl Keychain for SecretService {
    fn available(&self) -> bool {
        if bus_address().is_err() {
            return false;
        }
        block_on(PROBE_TIMEOUT, async {
            let conn = connect().await?;
            let owned: bool = call(
                &conn,
                "org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus",
                "NameHasOwner",
                &(SERVICE,),
            )
            .await?;
            let activatable = if owned {
                true
            } else {
                let names: Vec<String> = call(
                    &conn,
                    "org.freedesktop.DBus",
                    "/org/freedesktop/DBus",
                    "org.freedesktop.DBus",
                    "ListActivatableNames",
                    &(),
                )
                .await?;
                names.iter().any(|n| n == SERVICE)
            };
            if !activatable {
                return Ok(false);
            }
            // Usable without asking anything: a default collection exists and is unlocked.
            let collection: OwnedObjectPath =
                call(&conn, SERVICE, SERVICE_PATH, SERVICE_IFACE, "ReadAlias", &("default",)).await?;
            if collection.as_str() == "/" {
                return Ok(false);
            }
            let locked: OwnedVariant = call(
                &conn,
                SERVICE,
                collection.as_str(),
                "org.freedesktop.DBus.Properties",
                "Get",
                &(COLLECTION_IFACE, "Locked"),
            )
            .await?;
            Ok(!bool::try_from(locked).map_err(|e| e.to_string())?)
        })
        .unwrap_or(false)
    }

    fn store(&self, item: &KeychainItem<'_>, secret: &[u8]) -> Result<(), String> {
        let label = label(item);
        let secret = Zeroizing::new(secret.to_vec());
        block_on(OPERATION_TIMEOUT, async {
            let conn = connect().await?;
            let session = Session::open(&conn).await?;
            let result = async {
                let collection = default_collection(&conn).await?;
                unlock(&conn, vec![collection.clone()]).await?;
                let attributes = attributes(item.id);
                let mut properties: HashMap<&str, Variant<'_>> = HashMap::new();
                properties.insert("org.freedesktop.Secret.Item.Label", Variant::from(label.as_str()));
                properties.insert("org.freedesktop.Secret.Item.Attributes", Variant::from(attributes));
                let value: (ObjectPath<'_>, Vec<u8>, &[u8], &str) =
                    (session.path.as_ref(), Vec::new(), secret.as_slice(), "text/plain");
                let (_item, prompt_path): (OwnedObjectPath, OwnedObjectPath) = call(
                    &conn,
                    SERVICE,
                    collection.as_str(),
                    COLLECTION_IFACE,
                    "CreateItem",
                    &(properties, value, true),
                )
                .await?;
                prompt(&conn, &prompt_path, "store the key").await.map(|_| ())
            }
            .await;
            session.close(&conn).await;
            result
        })
    }

    fn load(&self, item: &KeychainItem<'_>) -> Result<Option<Zeroizing<Vec<u8>>>, String> {
        load_where(attributes(item.id))
    }

    fn delete(&self, item: &KeychainItem<'_>) -> Result<(), String> {
        block_on(OPERATION_TIMEOUT, async {
            let conn = connect().await?;
            // Normally one item; a second copy (a store retried by hand) is removed too, within
            // a bound, so a keychain that ignores Delete cannot keep us looping.
            for _ in 0..8 {
                let Some(path) = find(&conn, attributes(item.id)).await? else { return Ok(()) };
                let prompt_path: OwnedObjectPath =
                    call(&conn, SERVICE, path.as_str(), ITEM_IFACE, "Delete", &()).await?;
                prompt(&conn, &prompt_path, "delete the key").await?;
            }
            Err("the keychain kept the item after deleting it".into())
        })
    }
}

/// The Python authsome's master key in `keyring` mode: Python `keyring` keeps it in the Secret
/// Service under the attributes `service=authsome`, `username=master_key` (base64 text).
/// Only read, for `authsome migrate`; the item is left for the Python authsome's backup.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PythonMasterKey;

impl authsome_vault::migrate::PythonKeyring for PythonMasterKey {
    fn master_key(&self) -> Result<Option<Zeroizing<Vec<u8>>>, String> {
        bus_address()?;
        load_where(HashMap::from([("service", "authsome".to_string()), ("username", "master_key".to_string())]))
    }
}

/// The secret of the first item with these attributes (unlocking it if needed), or `None`.
fn load_where(attributes: HashMap<&'static str, String>) -> Result<Option<Zeroizing<Vec<u8>>>, String> {
    block_on(OPERATION_TIMEOUT, async {
        let conn = connect().await?;
        let Some(path) = find(&conn, attributes).await? else { return Ok(None) };
        let session = Session::open(&conn).await?;
        let result = async {
            let secret: SecretStruct =
                call(&conn, SERVICE, path.as_str(), ITEM_IFACE, "GetSecret", &(session.path.as_ref(),)).await?;
            Ok(Some(Zeroizing::new(secret.2)))
        }
        .await;
        session.close(&conn).await;
        result
    })
}

fn label(item: &KeychainItem<'_>) -> String {
    format!("authsome master key, profile '{}' ({})", item.profile, item.home.display())
}

fn attributes(id: &str) -> HashMap<&'static str, String> {
    HashMap::from([("application", "authsome".to_string()), ("authsome_key_id", id.to_string())])
}

/// The session bus address: `DBUS_SESSION_BUS_ADDRESS`, else the socket systemd and dbus-broker
/// put at `$XDG_RUNTIME_DIR/bus`.
fn bus_address() -> Result<String, String> {
    if let Some(address) = std::env::var("DBUS_SESSION_BUS_ADDRESS").ok().filter(|a| !a.is_empty()) {
        return Ok(address);
    }
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR") {
        let socket = Path::new(&dir).join("bus");
        if socket.exists() {
            return Ok(format!("unix:path={}", socket.display()));
        }
    }
    Err("no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is unset and $XDG_RUNTIME_DIR/bus does not exist)".into())
}

async fn connect() -> Result<Connection, String> {
    let address = bus_address()?;
    zbus::connection::Builder::address(address.as_str())
        .build()
        .await
        .map_err(|e| format!("cannot connect to the D-Bus session bus: {e}"))
}

/// Run `future` to completion on a private thread and runtime, within `limit`.
fn block_on<T: Send>(limit: Duration, future: impl Future<Output = Result<T, String>> + Send) -> Result<T, String> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("cannot start the keychain client: {e}"))?;
                runtime.block_on(async {
                    match tokio::time::timeout(limit, future).await {
                        Ok(result) => result,
                        Err(_) => Err(format!("the keychain did not answer within {} s", limit.as_secs())),
                    }
                })
            })
            .join()
            .unwrap_or_else(|_| Err("the keychain client failed".into()))
    })
}

/// One method call with a deserialised reply, within `CALL_TIMEOUT`.
async fn call<B, R>(
    conn: &Connection,
    destination: &str,
    path: &str,
    interface: &str,
    method: &str,
    body: &B,
) -> Result<R, String>
where
    B: serde::Serialize + zbus::wire::Type,
    R: for<'d> zbus::wire::DynamicDeserialize<'d>,
{
    let reply =
        tokio::time::timeout(CALL_TIMEOUT, conn.call_method(Some(destination), path, Some(interface), method, body))
            .await
            .map_err(|_| format!("the keychain did not answer {method} within {} s", CALL_TIMEOUT.as_secs()))?
            .map_err(|e| describe(method, e))?;
    reply.body().deserialize::<R>().map_err(|e| format!("unexpected reply to {method}: {e}"))
}

fn describe(method: &str, error: zbus::Error) -> String {
    // zbus reports the standard D-Bus error names (ServiceUnknown among them) as `Error::FDO`.
    if let zbus::Error::FDO(fdo) = &error
        && matches!(**fdo, zbus::fdo::Error::ServiceUnknown(_))
    {
        return "no Secret Service on the session bus (org.freedesktop.secrets): start GNOME Keyring, KWallet or \
                KeePassXC"
            .to_string();
    }
    format!("{method}: {error}")
}

struct Session {
    path: OwnedObjectPath,
}

impl Session {
    async fn open(conn: &Connection) -> Result<Self, String> {
        let (_output, path): (OwnedVariant, OwnedObjectPath) =
            call(conn, SERVICE, SERVICE_PATH, SERVICE_IFACE, "OpenSession", &("plain", Variant::from(""))).await?;
        Ok(Self { path })
    }

    async fn close(self, conn: &Connection) {
        let _: Result<(), String> = call(conn, SERVICE, self.path.as_str(), SESSION_IFACE, "Close", &()).await;
    }
}

/// The collection behind the `default` alias, created (the service may prompt) if there is none.
async fn default_collection(conn: &Connection) -> Result<OwnedObjectPath, String> {
    let path: OwnedObjectPath = call(conn, SERVICE, SERVICE_PATH, SERVICE_IFACE, "ReadAlias", &("default",)).await?;
    if path.as_str() != "/" {
        return Ok(path);
    }
    let mut properties: HashMap<&str, Variant<'_>> = HashMap::new();
    properties.insert("org.freedesktop.Secret.Collection.Label", Variant::from("Login"));
    let (path, prompt_path): (OwnedObjectPath, OwnedObjectPath) =
        call(conn, SERVICE, SERVICE_PATH, SERVICE_IFACE, "CreateCollection", &(properties, "default")).await?;
    if path.as_str() != "/" {
        return Ok(path);
    }
    let created = prompt(conn, &prompt_path, "create a keychain").await?;
    created
        .and_then(|v| OwnedObjectPath::try_from(v).ok())
        .filter(|p| p.as_str() != "/")
        .ok_or_else(|| "the keychain did not create a default collection".to_string())
}

async fn unlock(conn: &Connection, objects: Vec<OwnedObjectPath>) -> Result<(), String> {
    let (_unlocked, prompt_path): (Vec<OwnedObjectPath>, OwnedObjectPath) =
        call(conn, SERVICE, SERVICE_PATH, SERVICE_IFACE, "Unlock", &(objects,)).await?;
    prompt(conn, &prompt_path, "unlock it").await.map(|_| ())
}

/// The item with these attributes (unlocked, unlocking it if needed), or `None`.
async fn find(conn: &Connection, attributes: HashMap<&'static str, String>) -> Result<Option<OwnedObjectPath>, String> {
    let (unlocked, locked): (Vec<OwnedObjectPath>, Vec<OwnedObjectPath>) =
        call(conn, SERVICE, SERVICE_PATH, SERVICE_IFACE, "SearchItems", &(attributes,)).await?;
    if let Some(path) = unlocked.into_iter().next() {
        return Ok(Some(path));
    }
    let Some(path) = locked.into_iter().next() else { return Ok(None) };
    unlock(conn, vec![path.clone()]).await?;
    Ok(Some(path))
}

/// Run the prompt at `path` ("/" means none was needed) and return its result.
async fn prompt(conn: &Connection, path: &OwnedObjectPath, what: &str) -> Result<Option<OwnedVariant>, String> {
    if path.as_str() == "/" {
        return Ok(None);
    }
    let rule = MatchRule::builder()
        .msg_type(MessageType::Signal)
        .interface(PROMPT_IFACE)
        .member("Completed")
        .path(path.as_str())
        .build()
        .map_err(|e| format!("cannot watch the prompt: {e}"))?;
    let mut completed =
        MessageStream::for_match_rule(rule, conn, None).await.map_err(|e| format!("cannot watch the prompt: {e}"))?;
    let () = call(conn, SERVICE, path.as_str(), PROMPT_IFACE, "Prompt", &("",)).await?;
    let message = match tokio::time::timeout(PROMPT_TIMEOUT, completed.next()).await {
        Ok(Some(Ok(message))) => message,
        Ok(_) => return Err("the keychain closed the connection during a prompt".into()),
        Err(_) => {
            return Err(format!(
                "the keychain asked to {what} and nobody answered within {} s",
                PROMPT_TIMEOUT.as_secs()
            ));
        }
    };
    let (dismissed, result): (bool, OwnedVariant) =
        message.body().deserialize().map_err(|e| format!("unexpected prompt result: {e}"))?;
    if dismissed {
        return Err(format!(
            "the keychain's prompt to {what} was dismissed (no desktop session to show it, or cancelled)"
        ));
    }
    Ok(Some(result))
}
