//! Sealing: XChaCha20-Poly1305 with a random 24-byte nonce and the row identity as associated
//! data, so a ciphertext copied into another row (or another profile) fails to open.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::{Error, Result};

/// Length of a master key (XChaCha20-Poly1305).
pub const KEY_LEN: usize = 32;
/// Length of a nonce (XChaCha20).
pub const NONCE_LEN: usize = 24;

/// A profile's 32-byte master key. Zeroed on drop; `Debug` never prints it.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MasterKey([u8; KEY_LEN]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey([redacted])")
    }
}

impl MasterKey {
    /// A new random key.
    pub fn generate() -> Result<Self> {
        let mut bytes = [0u8; KEY_LEN];
        random_bytes(&mut bytes)?;
        Ok(Self(bytes))
    }

    /// A key from its bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// A key from a slice that must be [`KEY_LEN`] bytes long.
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        let array: [u8; KEY_LEN] = bytes.try_into().map_err(|_| Error::Crypto("master key has the wrong length"))?;
        Ok(Self(array))
    }

    /// The key's bytes (to wrap or store it).
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&Key::from(self.0))
    }
}

/// The identity a sealed value is bound to. Names cannot contain NUL (see `validate_name`), so
/// the NUL-joined encoding is unambiguous.
#[derive(Debug, Clone, Copy)]
pub struct RowId<'a> {
    /// The profile.
    pub profile: &'a str,
    /// The provider.
    pub provider: &'a str,
    /// The connection (or the client row).
    pub connection: &'a str,
    /// Which record of the row (`secrets`, `client`).
    pub kind: &'a str,
}

impl RowId<'_> {
    fn aad(&self) -> Vec<u8> {
        format!("authsome/v1\0{}\0{}\0{}\0{}", self.profile, self.provider, self.connection, self.kind).into_bytes()
    }
}

/// A sealed value: nonce and ciphertext (with its 16-byte tag) as stored in the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The random nonce, [`NONCE_LEN`] bytes.
    pub nonce: Vec<u8>,
    /// The ciphertext with its authentication tag.
    pub ciphertext: Vec<u8>,
}

/// Encrypt `plaintext` with `key`, bound to `row` (as associated data), under a fresh nonce.
pub fn seal(key: &MasterKey, row: RowId<'_>, plaintext: &[u8]) -> Result<Sealed> {
    let mut nonce = [0u8; NONCE_LEN];
    random_bytes(&mut nonce)?;
    let aad = row.aad();
    let ciphertext = key
        .cipher()
        .encrypt(&XNonce::from(nonce), Payload { msg: plaintext, aad: &aad })
        .map_err(|_| Error::Crypto("encryption failed"))?;
    Ok(Sealed { nonce: nonce.to_vec(), ciphertext })
}

/// Open a sealed value. Any failure (wrong key, altered bytes, another row's value) is
/// `Error::Tampered`; the plaintext is zeroed when dropped.
pub fn open(key: &MasterKey, row: RowId<'_>, sealed: &Sealed) -> Result<Zeroizing<Vec<u8>>> {
    let tampered = || Error::Tampered {
        profile: row.profile.to_string(),
        provider: row.provider.to_string(),
        connection: row.connection.to_string(),
    };
    if sealed.nonce.len() != NONCE_LEN {
        return Err(tampered());
    }
    let nonce = XNonce::try_from(sealed.nonce.as_slice()).map_err(|_| tampered())?;
    let aad = row.aad();
    key.cipher()
        .decrypt(&nonce, Payload { msg: &sealed.ciphertext, aad: &aad })
        .map(Zeroizing::new)
        .map_err(|_| tampered())
}

/// Fill `out` from the operating system's random source.
pub fn random_bytes(out: &mut [u8]) -> Result<()> {
    getrandom::fill(out).map_err(|_| Error::Crypto("the operating system's random source failed"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROW: RowId<'static> =
        RowId { profile: "default", provider: "openai", connection: "default", kind: "secrets" };

    #[test]
    fn round_trip() {
        let key = MasterKey::generate().unwrap();
        let sealed = seal(&key, ROW, b"sk-secret").unwrap();
        assert_eq!(sealed.nonce.len(), NONCE_LEN);
        assert!(!sealed.ciphertext.windows(9).any(|w| w == b"sk-secret"));
        assert_eq!(&open(&key, ROW, &sealed).unwrap()[..], b"sk-secret");
    }

    #[test]
    fn nonces_differ() {
        let key = MasterKey::generate().unwrap();
        let a = seal(&key, ROW, b"x").unwrap();
        let b = seal(&key, ROW, b"x").unwrap();
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
    }

    #[test]
    fn tampered_ciphertext_fails() {
        let key = MasterKey::generate().unwrap();
        let mut sealed = seal(&key, ROW, b"sk-secret").unwrap();
        sealed.ciphertext[0] ^= 1;
        assert!(matches!(open(&key, ROW, &sealed), Err(Error::Tampered { .. })));
        let mut sealed = seal(&key, ROW, b"sk-secret").unwrap();
        sealed.nonce[3] ^= 0x80;
        assert!(matches!(open(&key, ROW, &sealed), Err(Error::Tampered { .. })));
        let mut sealed = seal(&key, ROW, b"sk-secret").unwrap();
        sealed.nonce.pop();
        assert!(matches!(open(&key, ROW, &sealed), Err(Error::Tampered { .. })));
    }

    #[test]
    fn swapped_rows_fail() {
        let key = MasterKey::generate().unwrap();
        let sealed = seal(&key, ROW, b"sk-secret").unwrap();
        for other in [
            RowId { connection: "work", ..ROW },
            RowId { provider: "anthropic", ..ROW },
            RowId { profile: "work", ..ROW },
            RowId { kind: "client", ..ROW },
        ] {
            assert!(matches!(open(&key, other, &sealed), Err(Error::Tampered { .. })), "{other:?}");
        }
    }

    #[test]
    fn wrong_key_fails() {
        let sealed = seal(&MasterKey::generate().unwrap(), ROW, b"sk-secret").unwrap();
        let other = MasterKey::generate().unwrap();
        assert!(matches!(open(&other, ROW, &sealed), Err(Error::Tampered { .. })));
    }

    #[test]
    fn debug_is_redacted() {
        let key = MasterKey::from_bytes([7; KEY_LEN]);
        assert_eq!(format!("{key:?}"), "MasterKey([redacted])");
    }
}
