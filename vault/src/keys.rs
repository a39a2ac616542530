//! Master keys: one per profile, 32 random bytes, kept by the backend recorded for the profile.
//!
//! - `file`: `keys/<profile>.key` (0600) holds the key itself. Protects against other users and
//!   against copying `store.db` alone; not against this user's processes.
//! - `passphrase`: the same file holds the key wrapped with XChaCha20-Poly1305 under an
//!   argon2id-derived key. The unwrapped key may be cached in the kernel keyring.
//! - `keyring`: the OS keychain (on Linux the Secret Service: GNOME Keyring, KWallet, KeePassXC)
//!   holds the key; the key file holds only the id of the keychain item. The vault never talks
//!   to the keychain itself: the caller's [`KeySource::keychain`] does.
//!
//! A key file is created exclusively: an existing key is never overwritten.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::config::KeyBackend;
use crate::crypto::{self, KEY_LEN, MasterKey, RowId, Sealed};
use crate::error::{Error, KeychainError, Result};
use crate::fsutil;
use crate::home::Home;
use crate::keycache;

/// Argon2id cost: 64 MiB, 3 passes, 1 lane (OWASP's strongest listed profile is 46 MiB/1/1).
const ARGON2_M_KIB: u32 = 64 * 1024;
const ARGON2_T: u32 = 3;
const ARGON2_P: u32 = 1;

/// Why a passphrase is being asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassphraseRequest<'a> {
    /// Unlock an existing profile.
    Unlock {
        /// The profile.
        profile: &'a str,
    },
    /// Choose a passphrase for a new profile (the caller should ask twice).
    Create {
        /// The profile.
        profile: &'a str,
    },
}

/// Where key material outside the vault comes from: passphrases (the launcher:
/// `AUTHSOME_PASSPHRASE` or a TTY prompt) and the OS keychain.
pub trait KeySource {
    /// `Ok(None)` means no passphrase can be obtained (no terminal): the vault reports
    /// `PassphraseUnavailable`.
    fn passphrase(&self, request: PassphraseRequest<'_>) -> Result<Option<SecretString>>;

    /// A passphrase for `profile` that is at hand without asking anyone (`AUTHSOME_PASSPHRASE`).
    /// When there is one it is always checked, even if the key is cached: a wrong passphrase
    /// must never read secrets. `None` (the default): only [`KeySource::passphrase`] is asked,
    /// after the cache.
    fn supplied_passphrase(&self, _profile: &str) -> Result<Option<SecretString>> {
        Ok(None)
    }

    /// The OS keychain that keeps `keyring` profiles' keys; `None` when this program has none.
    fn keychain(&self) -> Option<&dyn Keychain> {
        None
    }
}

/// An OS keychain item holding one profile's master key.
#[derive(Debug, Clone, Copy)]
pub struct KeychainItem<'a> {
    /// Random id chosen at creation and recorded in the key file; the item is found by it.
    pub id: &'a str,
    /// The profile whose key it holds.
    pub profile: &'a str,
    /// The home the profile belongs to (for the item's label only).
    pub home: &'a std::path::Path,
}

/// An OS keychain. The vault wraps its errors in [`Error::Keychain`].
pub trait Keychain {
    /// Whether a keychain answers now, unlocked, so a new profile can use it without asking the
    /// user anything. Quick, and never prompts.
    fn available(&self) -> bool;
    /// Store `secret` under `item` (may prompt the user to unlock the keychain).
    fn store(&self, item: &KeychainItem<'_>, secret: &[u8]) -> std::result::Result<(), KeychainError>;
    /// The secret stored under `item`, `None` if there is no such item.
    fn load(&self, item: &KeychainItem<'_>) -> std::result::Result<Option<Zeroizing<Vec<u8>>>, KeychainError>;
    /// Delete `item`; a missing item is not an error.
    fn delete(&self, item: &KeychainItem<'_>) -> std::result::Result<(), KeychainError>;
}

/// A source that never has a passphrase (library use without a terminal).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoPassphrase;
impl KeySource for NoPassphrase {
    fn passphrase(&self, _: PassphraseRequest<'_>) -> Result<Option<SecretString>> {
        Ok(None)
    }
}

/// `keys/<profile>.key`: a format version and, tagged by `backend`, what that backend keeps.
#[derive(Serialize, Deserialize)]
struct KeyFile {
    v: u32,
    #[serde(flatten)]
    body: KeyBody,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "backend", rename_all = "lowercase")]
enum KeyBody {
    /// The key itself, base64.
    File { key: String },
    /// The key sealed under an argon2id-derived key.
    Passphrase(WrappedKey),
    /// The id of the keychain item that holds the key.
    Keyring { keychain_id: String },
}

impl KeyBody {
    fn backend(&self) -> KeyBackend {
        match self {
            KeyBody::File { .. } => KeyBackend::File,
            KeyBody::Passphrase(_) => KeyBackend::Passphrase,
            KeyBody::Keyring { .. } => KeyBackend::Keyring,
        }
    }
}

/// A passphrase profile's key, sealed under the key the KDF derives from the passphrase.
#[derive(Serialize, Deserialize)]
struct WrappedKey {
    kdf: Kdf,
    /// base64
    nonce: String,
    /// base64 of the ciphertext and its tag
    wrapped: String,
}

#[derive(Serialize, Deserialize)]
struct Kdf {
    alg: String,
    m_kib: u32,
    t: u32,
    p: u32,
    salt: String,
}

/// Create the master key of a new profile in `backend`. Fails with an `AlreadyExists` I/O error
/// if a key file already exists (see [`is_already_exists`]); the existing key is never touched.
pub fn create_key(home: &Home, profile: &str, backend: KeyBackend, key_source: &dyn KeySource) -> Result<MasterKey> {
    let key = MasterKey::generate()?;
    let path = home.key_path(profile);
    let body = match backend {
        KeyBackend::File => KeyBody::File { key: B64.encode(key.as_bytes()) },
        KeyBackend::Passphrase => {
            let passphrase = key_source
                .passphrase(PassphraseRequest::Create { profile })?
                .ok_or_else(|| Error::PassphraseUnavailable(profile.to_string()))?;
            let mut salt = [0u8; 16];
            crypto::random_bytes(&mut salt)?;
            let kek = derive(&passphrase, &salt, ARGON2_M_KIB, ARGON2_T, ARGON2_P)?;
            let sealed = crypto::seal(&kek, wrap_row(profile), key.as_bytes())?;
            KeyBody::Passphrase(WrappedKey {
                kdf: Kdf {
                    alg: "argon2id".into(),
                    m_kib: ARGON2_M_KIB,
                    t: ARGON2_T,
                    p: ARGON2_P,
                    salt: B64.encode(salt),
                },
                nonce: B64.encode(&sealed.nonce),
                wrapped: B64.encode(&sealed.ciphertext),
            })
        }
        KeyBackend::Keyring => {
            let keychain = key_source.keychain().ok_or_else(|| no_keychain(profile))?;
            let mut raw_id = [0u8; 16];
            crypto::random_bytes(&mut raw_id)?;
            let id: String = raw_id.iter().map(|b| format!("{b:02x}")).collect();
            // The key file (holding only the id) is created first and exclusively, so a second
            // creator fails before touching the keychain; it is removed if the keychain refuses.
            write_key_file(&path, KeyBody::Keyring { keychain_id: id.clone() })?;
            let item = KeychainItem { id: &id, profile, home: home.root() };
            let stored = Zeroizing::new(B64.encode(key.as_bytes()));
            let result = keychain.store(&item, stored.as_bytes()).and_then(|()| match keychain.load(&item)? {
                Some(back) if back.as_slice() == stored.as_bytes() => Ok(()),
                _ => Err(KeychainError::other(
                    "the keychain did not return the key just stored",
                    "the item read back is missing or differs",
                )),
            });
            if let Err(source) = result {
                let _ = keychain.delete(&item);
                let _ = std::fs::remove_file(&path);
                return Err(keyring_error(profile, source));
            }
            return Ok(key);
        }
    };
    write_key_file(&path, body)?;
    Ok(key)
}

/// Whether `error` is `create_key` finding a key file already there (another process created
/// the profile first).
pub fn is_already_exists(error: &Error) -> bool {
    matches!(error, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::AlreadyExists)
}

/// The backend recorded in a profile's key file, `None` if there is no key file.
pub fn recorded_backend(home: &Home, profile: &str) -> Result<Option<KeyBackend>> {
    let path = home.key_path(profile);
    match read_key_file(&path) {
        Ok(file) => Ok(Some(file.body.backend())),
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn write_key_file(path: &std::path::Path, body: KeyBody) -> Result<()> {
    let file = KeyFile { v: 1, body };
    let json = Zeroizing::new(
        serde_json::to_vec_pretty(&file).map_err(|source| Error::Json { path: path.to_path_buf(), source })?,
    );
    fsutil::publish_private_exclusive(path, &json)
}

fn read_key_file(path: &std::path::Path) -> Result<KeyFile> {
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| Error::io(path, e))?);
    serde_json::from_slice(&bytes).map_err(|source| Error::Json { path: path.to_path_buf(), source })
}

/// Load the master key of an existing profile from its recorded backend.
pub fn load_key(
    home: &Home,
    profile: &str,
    backend: KeyBackend,
    cache_seconds: u32,
    key_source: &dyn KeySource,
) -> Result<MasterKey> {
    let path = home.key_path(profile);
    let file = match read_key_file(&path) {
        Ok(file) => file,
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::KeyMissing { profile: profile.to_string(), path });
        }
        Err(e) => return Err(e),
    };
    if file.body.backend() != backend {
        // config.json and the key file disagree: someone edited one of them. Never guess.
        return Err(Error::KeyBackendUnavailable {
            profile: profile.to_string(),
            backend: backend.as_str().to_string(),
            reason: format!("{} holds a '{}' key", path.display(), file.body.backend().as_str()),
        });
    }
    let damaged = Damaged { profile, backend, path: &path };
    match &file.body {
        KeyBody::File { key } => load_file_key(key, &damaged),
        KeyBody::Passphrase(wrapped) => {
            load_passphrase_key(home, profile, wrapped, cache_seconds, key_source, &damaged)
        }
        KeyBody::Keyring { keychain_id } => load_keyring_key(home, profile, keychain_id, key_source, &damaged),
    }
}

/// Builds the "key file is damaged" error for one profile.
struct Damaged<'a> {
    profile: &'a str,
    backend: KeyBackend,
    path: &'a std::path::Path,
}

impl Damaged<'_> {
    fn because(&self, what: &str) -> Error {
        Error::KeyBackendUnavailable {
            profile: self.profile.to_string(),
            backend: self.backend.as_str().to_string(),
            reason: format!("{} is damaged ({what})", self.path.display()),
        }
    }
}

fn load_file_key(encoded: &str, damaged: &Damaged<'_>) -> Result<MasterKey> {
    let raw = Zeroizing::new(B64.decode(encoded).map_err(|_| damaged.because("bad base64"))?);
    MasterKey::from_slice(&raw).map_err(|_| damaged.because("wrong key length"))
}

/// A passphrase given without asking (`AUTHSOME_PASSPHRASE`) is always checked against the key
/// file, so a wrong one never reads through the cache; the cache only spares the prompt.
fn load_passphrase_key(
    home: &Home,
    profile: &str,
    WrappedKey { kdf, nonce, wrapped }: &WrappedKey,
    cache_seconds: u32,
    key_source: &dyn KeySource,
    damaged: &Damaged<'_>,
) -> Result<MasterKey> {
    let cache_id = keycache::description(home.root(), profile);
    let supplied = key_source.supplied_passphrase(profile)?;
    if supplied.is_none()
        && cache_seconds > 0
        && let Some(key) = keycache::get(&cache_id)
    {
        return Ok(key);
    }
    if kdf.alg != "argon2id" {
        return Err(damaged.because("unknown kdf"));
    }
    let salt = B64.decode(&kdf.salt).map_err(|_| damaged.because("bad salt"))?;
    let sealed = Sealed {
        nonce: B64.decode(nonce).map_err(|_| damaged.because("bad nonce"))?,
        ciphertext: B64.decode(wrapped).map_err(|_| damaged.because("bad wrapped key"))?,
    };
    let passphrase = match supplied {
        Some(passphrase) => passphrase,
        None => key_source
            .passphrase(PassphraseRequest::Unlock { profile })?
            .ok_or_else(|| Error::PassphraseUnavailable(profile.to_string()))?,
    };
    let kek = derive(&passphrase, &salt, kdf.m_kib, kdf.t, kdf.p)?;
    let raw =
        crypto::open(&kek, wrap_row(profile), &sealed).map_err(|_| Error::WrongPassphrase(profile.to_string()))?;
    let key = MasterKey::from_slice(&raw).map_err(|_| damaged.because("wrong key length"))?;
    if cache_seconds > 0 {
        keycache::put(&cache_id, &key, cache_seconds);
    }
    Ok(key)
}

/// How long a process that lost the race to create a `keyring` profile waits for the winner to
/// put the key in the keychain.
const KEYCHAIN_RACE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

fn load_keyring_key(
    home: &Home,
    profile: &str,
    id: &str,
    key_source: &dyn KeySource,
    damaged: &Damaged<'_>,
) -> Result<MasterKey> {
    let keychain = key_source.keychain().ok_or_else(|| no_keychain(profile))?;
    let item = KeychainItem { id, profile, home: home.root() };
    let started = std::time::Instant::now();
    let stored = loop {
        match keychain.load(&item).map_err(|source| keyring_error(profile, source))? {
            Some(stored) => break stored,
            // A key file younger than the wait may belong to a creator still storing the key.
            None if started.elapsed() < KEYCHAIN_RACE_WAIT && key_file_is_fresh(damaged.path) => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            None => {
                return Err(keyring_error(profile, KeychainError::NotFound { id: id.to_string() }));
            }
        }
    };
    let raw =
        Zeroizing::new(B64.decode(stored.as_slice()).map_err(|_| damaged.because("keychain item is not base64"))?);
    MasterKey::from_slice(&raw).map_err(|_| damaged.because("wrong key length in the keychain"))
}

fn key_file_is_fresh(path: &std::path::Path) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|modified| modified.elapsed().ok())
        .is_some_and(|age| age < KEYCHAIN_RACE_WAIT)
}

/// Drop a profile's unwrapped key from the kernel-keyring cache (`authsome lock`). Nothing
/// cached is not an error.
pub fn forget_cached_key(home: &Home, profile: &str) {
    keycache::forget(&keycache::description(home.root(), profile));
}

/// Remove a profile's key material: the key file, its kernel-keyring cache and, for `keyring`
/// profiles, the keychain item. Missing files are fine. The files are removed even when the
/// keychain cannot be reached; the returned note then says which keychain item was left behind.
pub fn delete_key(home: &Home, profile: &str, key_source: &dyn KeySource) -> Result<Option<String>> {
    forget_cached_key(home, profile);
    let path = home.key_path(profile);
    let mut leftover = None;
    if let Ok(KeyFile { body: KeyBody::Keyring { keychain_id: id }, .. }) = read_key_file(&path) {
        let item = KeychainItem { id: &id, profile, home: home.root() };
        let result = match key_source.keychain() {
            Some(keychain) => keychain.delete(&item),
            None => Err(KeychainError::Absent(NO_KEYCHAIN.into())),
        };
        if let Err(reason) = result {
            leftover = Some(format!(
                "the keychain item of profile '{profile}' (attribute authsome_key_id={id}) was not removed: {reason}"
            ));
        }
    }
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(leftover),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(leftover),
        Err(e) => Err(Error::io(path, e)),
    }
}

fn wrap_row(profile: &str) -> RowId<'_> {
    RowId { profile, provider: "", connection: "", kind: "master-key" }
}

fn derive(passphrase: &SecretString, salt: &[u8], m_kib: u32, t: u32, p: u32) -> Result<MasterKey> {
    let params =
        argon2::Params::new(m_kib, t, p, Some(KEY_LEN)).map_err(|_| Error::Crypto("invalid argon2 parameters"))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    argon
        .hash_password_into(passphrase.expose_secret().as_bytes(), salt, out.as_mut())
        .map_err(|_| Error::Crypto("argon2 key derivation failed"))?;
    Ok(MasterKey::from_bytes(*out))
}

const NO_KEYCHAIN: &str = "this build of authsome has no OS keychain support";

fn keyring_error(profile: &str, source: KeychainError) -> Error {
    Error::Keychain { profile: profile.to_string(), source }
}

fn no_keychain(profile: &str) -> Error {
    keyring_error(profile, KeychainError::Absent(NO_KEYCHAIN.into()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    struct Fixed(&'static str);
    impl KeySource for Fixed {
        fn passphrase(&self, _: PassphraseRequest<'_>) -> Result<Option<SecretString>> {
            Ok(Some(SecretString::from(self.0)))
        }
    }

    #[test]
    fn file_key_round_trip_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        let key = create_key(&home, "default", KeyBackend::File, &NoPassphrase).unwrap();
        let loaded = load_key(&home, "default", KeyBackend::File, 0, &NoPassphrase).unwrap();
        assert_eq!(key.as_bytes(), loaded.as_bytes());
        assert!(create_key(&home, "default", KeyBackend::File, &NoPassphrase).is_err());
        assert_eq!(load_key(&home, "default", KeyBackend::File, 0, &NoPassphrase).unwrap().as_bytes(), key.as_bytes());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(home.key_path("default")).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            let dir_mode = std::fs::metadata(home.keys_dir()).unwrap().permissions().mode();
            assert_eq!(dir_mode & 0o777, 0o700);
        }
    }

    #[test]
    fn passphrase_key() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        let key = create_key(&home, "p", KeyBackend::Passphrase, &Fixed("correct horse")).unwrap();
        let text = std::fs::read_to_string(home.key_path("p")).unwrap();
        assert!(text.contains("argon2id") && !text.contains("\"key\""));
        let loaded = load_key(&home, "p", KeyBackend::Passphrase, 0, &Fixed("correct horse")).unwrap();
        assert_eq!(key.as_bytes(), loaded.as_bytes());
        assert!(matches!(
            load_key(&home, "p", KeyBackend::Passphrase, 0, &Fixed("wrong")),
            Err(Error::WrongPassphrase(_))
        ));
        assert!(matches!(
            load_key(&home, "p", KeyBackend::Passphrase, 0, &NoPassphrase),
            Err(Error::PassphraseUnavailable(_))
        ));
        // The recorded backend wins: asking for the file backend is refused, not guessed.
        assert!(matches!(
            load_key(&home, "p", KeyBackend::File, 0, &NoPassphrase),
            Err(Error::KeyBackendUnavailable { .. })
        ));
    }

    #[test]
    fn key_files_of_the_earlier_layout_still_load() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        std::fs::create_dir_all(home.keys_dir()).unwrap();
        let key = B64.encode([7u8; 32]);
        std::fs::write(
            home.key_path("old"),
            format!("{{\n  \"v\": 1,\n  \"backend\": \"file\",\n  \"key\": \"{key}\"\n}}"),
        )
        .unwrap();
        assert_eq!(load_key(&home, "old", KeyBackend::File, 0, &NoPassphrase).unwrap().as_bytes(), &[7u8; 32]);
        assert_eq!(recorded_backend(&home, "old").unwrap(), Some(KeyBackend::File));
        // A passphrase key file keeps its flat shape: kdf, nonce and wrapped beside the tag.
        create_key(&home, "p", KeyBackend::Passphrase, &Fixed("pw")).unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(home.key_path("p")).unwrap()).unwrap();
        let mut fields: Vec<&str> = doc.as_object().unwrap().keys().map(String::as_str).collect();
        fields.sort();
        assert_eq!(fields, vec!["backend", "kdf", "nonce", "v", "wrapped"]);
    }

    #[test]
    fn missing_key_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        assert!(matches!(load_key(&home, "x", KeyBackend::File, 0, &NoPassphrase), Err(Error::KeyMissing { .. })));
        assert!(matches!(
            create_key(&home, "x", KeyBackend::Keyring, &NoPassphrase),
            Err(Error::Keychain { source: KeychainError::Absent(_), .. })
        ));
        assert!(!home.key_path("x").exists(), "a refused keyring creation leaves no key file");
    }

    /// An in-memory keychain; `up` false makes every call fail as an unreachable one would.
    #[derive(Default)]
    pub(crate) struct MemoryKeychain {
        pub items: std::sync::Mutex<std::collections::BTreeMap<String, Vec<u8>>>,
        pub down: std::sync::atomic::AtomicBool,
    }
    impl MemoryKeychain {
        fn check(&self) -> std::result::Result<(), KeychainError> {
            if self.down.load(std::sync::atomic::Ordering::SeqCst) {
                Err(KeychainError::Absent("keychain down".into()))
            } else {
                Ok(())
            }
        }
    }
    impl Keychain for MemoryKeychain {
        fn available(&self) -> bool {
            self.check().is_ok()
        }
        fn store(&self, item: &KeychainItem<'_>, secret: &[u8]) -> std::result::Result<(), KeychainError> {
            self.check()?;
            self.items.lock().unwrap().insert(item.id.to_string(), secret.to_vec());
            Ok(())
        }
        fn load(&self, item: &KeychainItem<'_>) -> std::result::Result<Option<Zeroizing<Vec<u8>>>, KeychainError> {
            self.check()?;
            Ok(self.items.lock().unwrap().get(item.id).cloned().map(Zeroizing::new))
        }
        fn delete(&self, item: &KeychainItem<'_>) -> std::result::Result<(), KeychainError> {
            self.check()?;
            self.items.lock().unwrap().remove(item.id);
            Ok(())
        }
    }
    impl KeySource for MemoryKeychain {
        fn passphrase(&self, _: PassphraseRequest<'_>) -> Result<Option<SecretString>> {
            Ok(None)
        }
        fn keychain(&self) -> Option<&dyn Keychain> {
            Some(self)
        }
    }

    #[test]
    fn keyring_key_lives_in_the_keychain_only() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        let keychain = MemoryKeychain::default();
        let key = create_key(&home, "k", KeyBackend::Keyring, &keychain).unwrap();
        let text = std::fs::read_to_string(home.key_path("k")).unwrap();
        assert!(text.contains("keychain_id") && !text.contains("\"key\""), "{text}");
        assert!(!text.contains(&B64.encode(key.as_bytes())));
        assert_eq!(keychain.items.lock().unwrap().len(), 1);
        let loaded = load_key(&home, "k", KeyBackend::Keyring, 0, &keychain).unwrap();
        assert_eq!(key.as_bytes(), loaded.as_bytes());

        // Without the keychain (or with it unreachable) the key is unavailable, never replaced.
        assert!(matches!(
            load_key(&home, "k", KeyBackend::Keyring, 0, &NoPassphrase),
            Err(Error::Keychain { source: KeychainError::Absent(_), .. })
        ));
        keychain.down.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(matches!(
            load_key(&home, "k", KeyBackend::Keyring, 0, &keychain),
            Err(Error::Keychain { source: KeychainError::Absent(reason), .. }) if reason == "keychain down"
        ));
        // Deleting with the keychain down removes the files and says what was left behind.
        let note = delete_key(&home, "k", &keychain).unwrap().expect("a leftover note");
        assert!(note.contains("authsome_key_id="), "{note}");
        assert!(!home.key_path("k").exists());
        keychain.down.store(false, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(keychain.items.lock().unwrap().len(), 1, "the item is still there, as the note says");
    }

    #[test]
    fn keyring_item_is_removed_with_the_profile_and_a_failed_store_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        let keychain = MemoryKeychain::default();
        create_key(&home, "k", KeyBackend::Keyring, &keychain).unwrap();
        assert_eq!(delete_key(&home, "k", &keychain).unwrap(), None);
        assert!(keychain.items.lock().unwrap().is_empty());
        assert!(!home.key_path("k").exists());

        keychain.down.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(matches!(
            create_key(&home, "k", KeyBackend::Keyring, &keychain),
            Err(Error::Keychain { source: KeychainError::Absent(_), .. })
        ));
        assert!(!home.key_path("k").exists(), "a failed store removes the key file it wrote");
    }

    #[test]
    fn a_deleted_keychain_item_is_reported_not_regenerated() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        let keychain = MemoryKeychain::default();
        create_key(&home, "k", KeyBackend::Keyring, &keychain).unwrap();
        keychain.items.lock().unwrap().clear();
        let err = load_key(&home, "k", KeyBackend::Keyring, 0, &keychain).unwrap_err();
        assert!(err.to_string().contains("keyring"), "{err}");
        assert!(
            matches!(&err, Error::Keychain { source: KeychainError::NotFound { id }, .. } if !id.is_empty()),
            "{err:?}"
        );
        assert!(err.to_string().contains("holds no authsome key"), "{err}");
        assert!(home.key_path("k").exists());
    }
}
