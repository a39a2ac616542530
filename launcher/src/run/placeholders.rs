//! Per-run placeholders: what the child holds instead of a secret.
//!
//! Format (docs/architecture.md, "The proxy"): the provider's key prefix where SDKs check a shape (`sk-`,
//! `ghp_`, …) + `authsome_` + 24 random base62 characters. Fresh every run; the proxy maps a
//! placeholder to its provider and connection by exact lookup, never by parsing it.

use authsome_vault::crypto::random_bytes;

use crate::error::{CliError, CliResult, Kind};
use crate::providers::Provider;

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
pub(crate) const RANDOM_LEN: usize = 24;

/// A fresh placeholder for one connection of `provider`.
pub(crate) fn generate(provider: &Provider) -> CliResult<String> {
    let mut out = String::with_capacity(40);
    out.push_str(provider.placeholder_prefix.as_deref().unwrap_or(""));
    out.push_str("authsome_");
    // Rejection sampling keeps the characters uniform (256 is not a multiple of 62).
    let mut filled = 0;
    let mut buf = [0u8; 48];
    while filled < RANDOM_LEN {
        random_bytes(&mut buf).map_err(|e| CliError::new(Kind::RunFailed, e.to_string()))?;
        for byte in buf {
            if filled == RANDOM_LEN {
                break;
            }
            if byte < 248 {
                out.push(BASE62[(byte % 62) as usize] as char);
                filled += 1;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Catalog;

    #[test]
    fn shape_and_uniqueness() {
        let catalog = Catalog::bundled_only();
        let openai = &catalog.get("openai").unwrap().provider;
        let a = generate(openai).unwrap();
        let b = generate(openai).unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("sk-authsome_"), "{a}");
        assert_eq!(a.len(), "sk-authsome_".len() + RANDOM_LEN);
        assert!(a["sk-authsome_".len()..].bytes().all(|c| c.is_ascii_alphanumeric()));
        // SDKs that validate the key's shape accept it.
        let pattern = regex::Regex::new(openai.api_key.as_ref().unwrap().pattern.as_deref().unwrap()).unwrap();
        assert!(pattern.is_match(&a));
        let anthropic = &catalog.get("anthropic").unwrap().provider;
        let pattern = regex::Regex::new(anthropic.api_key.as_ref().unwrap().pattern.as_deref().unwrap()).unwrap();
        assert!(pattern.is_match(&generate(anthropic).unwrap()));
        assert!(generate(&catalog.get("github").unwrap().provider).unwrap().starts_with("ghp_authsome_"));
    }
}
