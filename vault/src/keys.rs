//! Master keys: one per profile, 32 random bytes, kept by the backend recorded for the profile.
//!
//! - `file`: `keys/<profile>.key` (0600) holds the key itself. Protects against other users and
//!   against copying `store.db` alone; not against this user's processes.
//! - `passphrase`: the same file holds the key wrapped with XChaCha20-Poly1305 under an
//!   argon2id-derived key. The unwrapped key may be cached in the kernel keyring.
//! - `keyring`: the OS keychain; not available in this build, and never replaced silently.
//!
//! A key file is created exclusively: an existing key is never overwritten.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::config::KeyBackend;
use crate::crypto::{self, KEY_LEN, MasterKey, RowId, Sealed};
use crate::error::{Error, Result};
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
    Unlock { profile: &'a str },
    /// Choose a passphrase for a new profile (the caller should ask twice).
    Create { profile: &'a str },
}

/// Supplies passphrases (the launcher: `AUTHSOME_PASSPHRASE` or a TTY prompt). `Ok(None)` means
/// no passphrase can be obtained (no terminal): the vault reports `PassphraseUnavailable`.
pub trait PassphraseSource {
    fn passphrase(&self, request: PassphraseRequest<'_>) -> Result<Option<SecretString>>;
}

/// A source that never has a passphrase (library use without a terminal).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoPassphrase;
impl PassphraseSource for NoPassphrase {
    fn passphrase(&self, _: PassphraseRequest<'_>) -> Result<Option<SecretString>> {
        Ok(None)
    }
}

#[derive(Serialize, Deserialize)]
struct KeyFile {
    v: u32,
    backend: KeyBackend,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kdf: Option<Kdf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nonce: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    wrapped: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Kdf {
    alg: String,
    m_kib: u32,
    t: u32,
    p: u32,
    salt: String,
}

/// Create the master key of a new profile in `backend`. Fails if a key file already exists.
pub fn create_key(
    home: &Home,
    profile: &str,
    backend: KeyBackend,
    passphrases: &dyn PassphraseSource,
) -> Result<MasterKey> {
    let key = MasterKey::generate()?;
    let path = home.key_path(profile);
    let file = match backend {
        KeyBackend::File => {
            KeyFile { v: 1, backend, key: Some(B64.encode(key.as_bytes())), kdf: None, nonce: None, wrapped: None }
        }
        KeyBackend::Passphrase => {
            let passphrase = passphrases
                .passphrase(PassphraseRequest::Create { profile })?
                .ok_or_else(|| Error::PassphraseUnavailable(profile.to_string()))?;
            let mut salt = [0u8; 16];
            crypto::random_bytes(&mut salt)?;
            let kek = derive(passphrase.expose_secret(), &salt, ARGON2_M_KIB, ARGON2_T, ARGON2_P)?;
            let sealed = crypto::seal(&kek, wrap_row(profile), key.as_bytes())?;
            KeyFile {
                v: 1,
                backend,
                key: None,
                kdf: Some(Kdf {
                    alg: "argon2id".into(),
                    m_kib: ARGON2_M_KIB,
                    t: ARGON2_T,
                    p: ARGON2_P,
                    salt: B64.encode(salt),
                }),
                nonce: Some(B64.encode(&sealed.nonce)),
                wrapped: Some(B64.encode(&sealed.ciphertext)),
            }
        }
        KeyBackend::Keyring => return Err(keyring_unavailable(profile)),
    };
    let json =
        Zeroizing::new(serde_json::to_vec_pretty(&file).map_err(|source| Error::Json { path: path.clone(), source })?);
    fsutil::create_private_exclusive(&path, &json)?;
    Ok(key)
}

/// Load the master key of an existing profile from its recorded backend.
pub fn load_key(
    home: &Home,
    profile: &str,
    backend: KeyBackend,
    cache_seconds: u32,
    passphrases: &dyn PassphraseSource,
) -> Result<MasterKey> {
    if backend == KeyBackend::Keyring {
        return Err(keyring_unavailable(profile));
    }
    let path = home.key_path(profile);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => Zeroizing::new(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::KeyMissing { profile: profile.to_string(), path });
        }
        Err(e) => return Err(Error::io(&path, e)),
    };
    let file: KeyFile = serde_json::from_slice(&bytes).map_err(|source| Error::Json { path: path.clone(), source })?;
    if file.backend != backend {
        // config.json and the key file disagree: someone edited one of them. Never guess.
        return Err(Error::KeyBackendUnavailable {
            profile: profile.to_string(),
            backend: backend.as_str().to_string(),
            reason: format!("{} holds a '{}' key", path.display(), file.backend.as_str()),
        });
    }
    let corrupt = |what: &str| Error::KeyBackendUnavailable {
        profile: profile.to_string(),
        backend: backend.as_str().to_string(),
        reason: format!("{} is damaged ({what})", path.display()),
    };
    match backend {
        KeyBackend::File => {
            let encoded = file.key.as_deref().ok_or_else(|| corrupt("no key"))?;
            let raw = Zeroizing::new(B64.decode(encoded).map_err(|_| corrupt("bad base64"))?);
            MasterKey::from_slice(&raw).map_err(|_| corrupt("wrong key length"))
        }
        KeyBackend::Passphrase => {
            let cache_id = keycache::description(home.root(), profile);
            if cache_seconds > 0
                && let Some(key) = keycache::get(&cache_id)
            {
                return Ok(key);
            }
            let kdf = file.kdf.as_ref().ok_or_else(|| corrupt("no kdf"))?;
            if kdf.alg != "argon2id" {
                return Err(corrupt("unknown kdf"));
            }
            let salt = B64.decode(&kdf.salt).map_err(|_| corrupt("bad salt"))?;
            let sealed = Sealed {
                nonce: B64
                    .decode(file.nonce.as_deref().ok_or_else(|| corrupt("no nonce"))?)
                    .map_err(|_| corrupt("bad nonce"))?,
                ciphertext: B64
                    .decode(file.wrapped.as_deref().ok_or_else(|| corrupt("no wrapped key"))?)
                    .map_err(|_| corrupt("bad wrapped key"))?,
            };
            let passphrase = passphrases
                .passphrase(PassphraseRequest::Unlock { profile })?
                .ok_or_else(|| Error::PassphraseUnavailable(profile.to_string()))?;
            let kek = derive(passphrase.expose_secret(), &salt, kdf.m_kib, kdf.t, kdf.p)?;
            let raw = crypto::open(&kek, wrap_row(profile), &sealed)
                .map_err(|_| Error::WrongPassphrase(profile.to_string()))?;
            let key = MasterKey::from_slice(&raw).map_err(|_| corrupt("wrong key length"))?;
            if cache_seconds > 0 {
                keycache::put(&cache_id, &key, cache_seconds);
            }
            Ok(key)
        }
        KeyBackend::Keyring => unreachable!("handled above"),
    }
}

/// Remove a profile's key material (file and cache). Missing files are fine.
pub fn delete_key(home: &Home, profile: &str) -> Result<()> {
    keycache::forget(&keycache::description(home.root(), profile));
    let path = home.key_path(profile);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(path, e)),
    }
}

fn wrap_row(profile: &str) -> RowId<'_> {
    RowId { profile, provider: "", connection: "", kind: "master-key" }
}

fn derive(passphrase: &str, salt: &[u8], m_kib: u32, t: u32, p: u32) -> Result<MasterKey> {
    let params =
        argon2::Params::new(m_kib, t, p, Some(KEY_LEN)).map_err(|_| Error::Crypto("invalid argon2 parameters"))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    argon
        .hash_password_into(passphrase.as_bytes(), salt, out.as_mut())
        .map_err(|_| Error::Crypto("argon2 key derivation failed"))?;
    Ok(MasterKey::from_bytes(*out))
}

fn keyring_unavailable(profile: &str) -> Error {
    Error::KeyBackendUnavailable {
        profile: profile.to_string(),
        backend: "keyring".into(),
        reason: "this build of authsome has no OS keychain support".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(&'static str);
    impl PassphraseSource for Fixed {
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
    fn missing_key_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        assert!(matches!(load_key(&home, "x", KeyBackend::File, 0, &NoPassphrase), Err(Error::KeyMissing { .. })));
        assert!(matches!(
            create_key(&home, "x", KeyBackend::Keyring, &NoPassphrase),
            Err(Error::KeyBackendUnavailable { .. })
        ));
    }
}
