//! The Java trust store of a run: the bundle's roots as a PKCS#12 file (RFC 7292) of trusted
//! certificate entries, the format of the JDK's own `cacerts` since Java 9
//! (docs/runtimes.md).
//!
//! Each certificate is a `certBag` carrying the JDK's "trusted for any purpose" attribute
//! (without it the JDK ignores a certificate that has no key). The store is not encrypted and
//! has no integrity MAC: it holds public certificates only and is read-only to the child, and
//! the JDK reads such a store without a password (`javax.net.ssl.trustStorePassword` unset).

use super::cert_dir::tlv;

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
    let safe_contents = tlv(SEQUENCE, bags);
    let authenticated_safe = tlv(SEQUENCE, &data(&safe_contents));
    let version = tlv(0x02, &[3]);
    tlv(SEQUENCE, &[version, data(&authenticated_safe)].concat())
}

/// `ContentInfo { data, [0] OCTET STRING }`.
fn data(content: &[u8]) -> Vec<u8> {
    tlv(SEQUENCE, &[tlv(OID, DATA), tlv(EXPLICIT_0, &tlv(OCTET_STRING, content))].concat())
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
