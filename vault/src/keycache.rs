//! Optional cache of unwrapped passphrase keys in the Linux kernel keyring (the session
//! keyring, with a timeout), so a login session types its passphrase once.
//!
//! Every error here means "not cached", never a failure: containers, cron and CI often have no
//! usable session keyring (`EACCES`), and that must not break anything. The sandbox's command
//! joins a fresh session keyring, so it cannot read this cache.

use crate::crypto::MasterKey;

/// Key description: unique per home directory and profile.
pub fn description(home: &std::path::Path, profile: &str) -> String {
    // FNV-1a: a stable, dependency-free tag for the home path (not a security boundary).
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in home.as_os_str().as_encoded_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("authsome:{hash:016x}:{profile}")
}

#[cfg(target_os = "linux")]
mod imp {
    use linux_keyutils::{KeyRing, KeyRingIdentifier};

    use crate::crypto::MasterKey;

    fn session() -> Option<KeyRing> {
        KeyRing::from_special_id(KeyRingIdentifier::Session, false).ok()
    }

    pub fn get(description: &str) -> Option<MasterKey> {
        let key = session()?.search(description).ok()?;
        let bytes = zeroize::Zeroizing::new(key.read_to_vec().ok()?);
        MasterKey::from_slice(&bytes).ok()
    }

    pub fn put(description: &str, master: &MasterKey, seconds: u32) {
        let Some(ring) = session() else { return };
        if let Ok(key) = ring.add_key(description, master.as_bytes()) {
            // A key without its timeout would outlive the user's choice: remove it then.
            if key.set_timeout(seconds as usize).is_err() {
                let _ = key.invalidate();
            }
        }
    }

    pub fn forget(description: &str) {
        if let Some(key) = session().and_then(|ring| ring.search(description).ok()) {
            let _ = key.invalidate();
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use crate::crypto::MasterKey;
    pub fn get(_: &str) -> Option<MasterKey> {
        None
    }
    pub fn put(_: &str, _: &MasterKey, _: u32) {}
    pub fn forget(_: &str) {}
}

pub fn get(description: &str) -> Option<MasterKey> {
    imp::get(description)
}

pub fn put(description: &str, key: &MasterKey, seconds: u32) {
    imp::put(description, key, seconds)
}

pub fn forget(description: &str) {
    imp::forget(description)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn description_is_stable_and_distinct() {
        let a = description(std::path::Path::new("/home/a/.authsome"), "default");
        assert_eq!(a, description(std::path::Path::new("/home/a/.authsome"), "default"));
        assert_ne!(a, description(std::path::Path::new("/home/b/.authsome"), "default"));
        assert_ne!(a, description(std::path::Path::new("/home/a/.authsome"), "work"));
    }

    #[test]
    fn cache_errors_mean_not_cached() {
        // Whatever this machine's keyring allows, these calls must not panic or fail.
        let id = description(std::path::Path::new("/nonexistent/test-home"), "cache-test");
        let key = MasterKey::from_bytes([9; 32]);
        put(&id, &key, 5);
        if let Some(found) = get(&id) {
            assert_eq!(found.as_bytes(), key.as_bytes());
        }
        forget(&id);
        assert!(get(&id).is_none());
    }
}
