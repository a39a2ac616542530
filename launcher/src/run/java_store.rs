//! The Java trust store of a run: the bundle's roots as a PKCS#12 file (RFC 7292) of trusted
//! certificate entries, the format of the JDK's own `cacerts` since Java 9
//! (docs/runtimes.md).
//!
//! Each certificate is a `certBag` carrying the JDK's "trusted for any purpose" attribute
//! (without it the JDK ignores a certificate that has no key). The store is not encrypted and
//! has no integrity MAC: it holds public certificates only and is read-only to the child, and
//! the JDK reads such a store without a password (`javax.net.ssl.trustStorePassword` unset).

use super::cert_dir::{header, tlv};

/// `1.2.840.113549.1.7.1` (PKCS#7 data).
const DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01];
/// `1.2.840.113549.1.12.10.1.3` (PKCS#12 certBag).
const CERT_BAG: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x0a, 0x01, 0x03];
/// `1.2.840.113549.1.9.22.1` (x509Certificate).
const X509_CERTIFICATE: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x16, 0x01];
/// `1.2.840.113549.1.9.20` (friendlyName: the alias).
const FRIENDLY_NAME: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x14];
/// `2.16.840.1.113894.746875.1.1` (the JDK's trusted-key-usage attribute).
const JDK_TRUSTED_KEY_USAGE: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x86, 0xf9, 0x66, 0xad, 0xca, 0x7b, 0x01, 0x01];
/// `2.5.29.37.0` (anyExtendedKeyUsage).
const ANY_EXTENDED_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x25, 0x00];

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const OCTET_STRING: u8 = 0x04;
const BMP_STRING: u8 = 0x1e;
const EXPLICIT_0: u8 = 0xa0;

/// The PKCS#12 trust store holding `certificates` (DER), aliases `authsome-<n>`.
pub(crate) fn pkcs12(certificates: &[Vec<u8>]) -> Vec<u8> {
    pkcs12_from_bags(&bags(certificates))
}

/// The certificate bags of `certificates`, aliases `authsome-<n>` (kept to build stores later).
pub(crate) fn bags(certificates: &[Vec<u8>]) -> Vec<u8> {
    certificates.iter().enumerate().flat_map(|(n, der)| cert_bag(&format!("authsome-{n}"), der)).collect()
}

/// One certificate's bag, under `alias`.
pub(crate) fn bag(alias: &str, der: &[u8]) -> Vec<u8> {
    cert_bag(alias, der)
}

/// The store holding the concatenated `bags`.
pub(crate) fn pkcs12_from_bags(bags: &[u8]) -> Vec<u8> {
    [pkcs12_prefix(bags.len()), bags.to_vec()].concat()
}

/// Everything a store holds before its `bags_len` bytes of concatenated bags: the store is
/// this prefix followed by the bags. A run writes the prefix, then has the kernel copy the
/// cached roots' bags into the file, then appends its CA's bag: no copy of the ~170 KB of roots
/// passes through memory on `run --sandbox`'s start (nesting them in memory cost ~500 page
/// faults, a millisecond).
///
/// `PFX { version 3, ContentInfo { data, [0] OCTET STRING { AuthenticatedSafe { ContentInfo {
/// data, [0] OCTET STRING { SafeContents { bags } } } } } } }`.
pub(crate) fn pkcs12_prefix(bags_len: usize) -> Vec<u8> {
    let oid = tlv(OID, DATA);
    // Inside out: each header's length is what it wraps.
    let safe_contents = header(SEQUENCE, bags_len);
    let (inner_octets, inner_explicit, inner_info) = content_info_headers(oid.len(), safe_contents.len() + bags_len);
    let inner_len = inner_info.len() + oid.len() + inner_explicit.len() + inner_octets.len();
    let inner_total = inner_len + safe_contents.len() + bags_len;
    let authenticated_safe = header(SEQUENCE, inner_total);
    let (outer_octets, outer_explicit, outer_info) =
        content_info_headers(oid.len(), authenticated_safe.len() + inner_total);
    let version = tlv(0x02, &[3]);
    let outer_total = outer_info.len()
        + oid.len()
        + outer_explicit.len()
        + outer_octets.len()
        + authenticated_safe.len()
        + inner_total;
    let pfx = header(SEQUENCE, version.len() + outer_total);
    [
        pfx,
        version,
        outer_info,
        oid.clone(),
        outer_explicit,
        outer_octets,
        authenticated_safe,
        inner_info,
        oid,
        inner_explicit,
        inner_octets,
        safe_contents,
    ]
    .concat()
}

/// The headers of `ContentInfo { data, [0] OCTET STRING { content } }` for `content_len` bytes of
/// content: the OCTET STRING's, the `[0]`'s and the ContentInfo SEQUENCE's.
fn content_info_headers(oid_len: usize, content_len: usize) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let octets = header(OCTET_STRING, content_len);
    let explicit = header(EXPLICIT_0, octets.len() + content_len);
    let info = header(SEQUENCE, oid_len + explicit.len() + octets.len() + content_len);
    (octets, explicit, info)
}

fn cert_bag(alias: &str, der: &[u8]) -> Vec<u8> {
    let cert = tlv(SEQUENCE, &[tlv(OID, X509_CERTIFICATE), tlv(EXPLICIT_0, &tlv(OCTET_STRING, der))].concat());
    let alias: Vec<u8> = alias.encode_utf16().flat_map(u16::to_be_bytes).collect();
    let attributes = [
        attribute(FRIENDLY_NAME, &tlv(BMP_STRING, &alias)),
        attribute(JDK_TRUSTED_KEY_USAGE, &tlv(OID, ANY_EXTENDED_KEY_USAGE)),
    ]
    .concat();
    tlv(SEQUENCE, &[tlv(OID, CERT_BAG), tlv(EXPLICIT_0, &cert), tlv(SET, &attributes)].concat())
}

fn attribute(id: &[u8], value: &[u8]) -> Vec<u8> {
    tlv(SEQUENCE, &[tlv(OID, id), tlv(SET, value)].concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The store nested in memory, element by element: what the prefix must agree with.
    fn nested(bags: &[u8]) -> Vec<u8> {
        let data =
            |content: &[u8]| tlv(SEQUENCE, &[tlv(OID, DATA), tlv(EXPLICIT_0, &tlv(OCTET_STRING, content))].concat());
        let authenticated_safe = tlv(SEQUENCE, &data(&tlv(SEQUENCE, bags)));
        tlv(SEQUENCE, &[tlv(0x02, &[3]), data(&authenticated_safe)].concat())
    }

    /// Every length form (short, one, two and three length bytes) gives the nested encoding.
    #[test]
    fn the_prefix_and_the_bags_are_the_nested_store() {
        for len in [0usize, 1, 90, 127, 128, 200, 255, 256, 4000, 65_535, 65_536, 180_000] {
            let bags: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            assert_eq!(pkcs12_from_bags(&bags), nested(&bags), "{len} bytes of bags");
        }
    }

    /// The JDK's own tool reads the store and lists each certificate as a trusted entry.
    #[test]
    fn keytool_lists_every_certificate_as_trusted() {
        let Ok(keytool) = which("keytool") else {
            eprintln!("skipped: no keytool here");
            return;
        };
        let a = authsome_proxy::CertificateAuthority::ephemeral().unwrap();
        let b = authsome_proxy::CertificateAuthority::ephemeral().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.p12");
        let store = pkcs12_from_bags(&[bags(&[a.cert_der().to_vec()]), bag("authsome-run", b.cert_der())].concat());
        std::fs::write(&path, store).unwrap();
        let out = std::process::Command::new(keytool)
            .args(["-list", "-storetype", "PKCS12", "-keystore"])
            .arg(&path)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
        assert!(text.contains("contains 2 entries"), "{text}");
        assert_eq!(text.matches("trustedCertEntry").count(), 2, "{text}");
    }

    fn which(name: &str) -> Result<std::path::PathBuf, ()> {
        std::env::split_paths(&std::env::var_os("PATH").ok_or(())?)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
            .ok_or(())
    }
}
