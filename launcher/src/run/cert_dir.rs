//! The child's hashed certificate directory (`SSL_CERT_DIR`, and `/etc/ssl/certs` inside the
//! sandbox): every root of the run's bundle as an OpenSSL `<subject hash>.<n>` file, the way
//! `c_rehash` lays them out, so clients that look certificates up by directory (`CApath`,
//! OpenSSL's `-CApath`, Go's and .NET's `SSL_CERT_DIR`) find the run's CA next to the system
//! roots (docs/runtimes.md).
//!
//! The subject hash is OpenSSL's `X509_NAME_hash` (`openssl x509 -subject_hash`): SHA-1 of the
//! subject's canonical encoding, the first four bytes read little-endian. SHA-1 is written out
//! here (a lookup key, not a security boundary): no crate in the tree offers it to the launcher.

use std::fs;
use std::path::{Path, PathBuf};

use base64::Engine as _;

use crate::error::{CliError, CliResult, Kind};

/// The DER certificates of a PEM text, in order (anything that is not a certificate is skipped).
pub(crate) fn pem_certificates(pem: &[u8]) -> Vec<Vec<u8>> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let text = String::from_utf8_lossy(pem);
    let mut out = Vec::new();
    let mut rest = text.as_ref();
    while let Some(start) = rest.find(BEGIN) {
        let body = &rest[start + BEGIN.len()..];
        let Some(end) = body.find(END) else { break };
        let b64: String = body[..end].chars().filter(|c| !c.is_whitespace()).collect();
        if let Ok(der) = base64::engine::general_purpose::STANDARD.decode(b64) {
            out.push(der);
        }
        rest = &body[end + END.len()..];
    }
    out
}

/// One DER element: its tag, its content, and what follows it.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        (rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b)), &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// DER tag-length-value.
pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = header(tag, content.len());
    out.extend_from_slice(content);
    out
}

/// A DER tag and length for `len` bytes of content (the content follows).
pub(crate) fn header(tag: u8, len: usize) -> Vec<u8> {
    let mut out = vec![tag];
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out
}

/// The subject `Name` of a DER certificate (its content, without the outer SEQUENCE header).
fn subject(der: &[u8]) -> Option<&[u8]> {
    let (_, certificate, _) = element(der)?;
    let (_, tbs, _) = element(certificate)?;
    let mut rest = tbs;
    // [0] version is optional; then serial, signature algorithm, issuer, validity, subject.
    if rest.first() == Some(&0xa0) {
        rest = element(rest)?.2;
    }
    for _ in 0..4 {
        rest = element(rest)?.2;
    }
    let (tag, name, _) = element(rest)?;
    (tag == 0x30).then_some(name)
}

/// OpenSSL's canonical form of a name: each RDN `SET` re-encoded with its string values as
/// lower-cased, space-collapsed UTF8Strings, concatenated without the outer `SEQUENCE`.
fn canonical_name(name: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut rdns = name;
    while !rdns.is_empty() {
        let (tag, set, rest) = element(rdns)?;
        if tag != 0x31 {
            return None;
        }
        rdns = rest;
        let mut entries: Vec<Vec<u8>> = Vec::new();
        let mut avas = set;
        while !avas.is_empty() {
            let (_, ava, rest) = element(avas)?;
            avas = rest;
            let (oid_tag, oid, value_and_rest) = element(ava)?;
            let (value_tag, value, _) = element(value_and_rest)?;
            let value = match canonical_string(value_tag, value) {
                Some(text) => tlv(0x0c, text.as_bytes()),
                None => tlv(value_tag, value),
            };
            entries.push(tlv(0x30, &[tlv(oid_tag, oid), value].concat()));
        }
        entries.sort(); // DER orders a SET OF by encoding
        out.extend(tlv(0x31, &entries.concat()));
    }
    Some(out)
}

/// A string value in OpenSSL's canonical form, or `None` for types it leaves alone.
fn canonical_string(tag: u8, value: &[u8]) -> Option<String> {
    let text: String = match tag {
        // UTF8String, PrintableString, IA5String, VisibleString
        0x0c | 0x13 | 0x16 | 0x1a => String::from_utf8_lossy(value).into_owned(),
        // T61String: read as Latin-1, as OpenSSL does
        0x14 => value.iter().map(|b| char::from(*b)).collect(),
        // BMPString (UCS-2) and UniversalString (UCS-4), big-endian
        0x1e => char::decode_utf16(value.chunks(2).map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
            .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
            .collect(),
        0x1c => value
            .chunks(4)
            .map(|c| {
                let code = c.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b));
                char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER)
            })
            .collect(),
        _ => return None,
    };
    // ASCII whitespace trimmed and collapsed, ASCII letters lower-cased (bytes above 0x7f as is).
    let mut out = String::with_capacity(text.len());
    for word in text.split(|c: char| c.is_ascii_whitespace() || c == '\u{0b}').filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&word.to_ascii_lowercase());
    }
    Some(out)
}

/// `openssl x509 -subject_hash` of a DER certificate.
pub(crate) fn subject_hash(der: &[u8]) -> Option<u32> {
    let digest = sha1(&canonical_name(subject(der)?)?);
    Some(u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]]))
}

/// SHA-1 (FIPS 180-4).
fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476, 0xc3d2_e1f0];
    let mut message = data.to_vec();
    message.push(0x80);
    while message.len() % 64 != 56 {
        message.push(0);
    }
    message.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
    for block in message.chunks(64) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, word) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5a82_7999),
                20..=39 => (b ^ c ^ d, 0x6ed9_eba1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8f1b_bcdc),
                _ => (b ^ c ^ d, 0xca62_c1d6),
            };
            let temp = a.rotate_left(5).wrapping_add(f).wrapping_add(e).wrapping_add(k).wrapping_add(*word);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = temp;
        }
        for (state, value) in h.iter_mut().zip([a, b, c, d, e]) {
            *state = state.wrapping_add(value);
        }
    }
    let mut out = [0u8; 20];
    for (chunk, word) in out.chunks_mut(4).zip(h) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// The name inside the cert directory of the Java trust store (`JAVA_TOOL_OPTIONS`, and where
/// Debian's JDKs find `cacerts` through `/etc/ssl/certs/java/cacerts`).
pub(crate) const JAVA_STORE: &str = "java/cacerts";

/// Names in a host certificate directory that hold a whole bundle: inside the sandbox they hold
/// the run's bundle.
const BUNDLE_NAMES: &[&str] = &["ca-certificates.crt", "ca-bundle.crt", "ca-bundle.trust.crt", "cert.pem"];

/// Fill the empty directory `dir` with the roots of `bundle` as `<hash>.<n>` files, `bundle`
/// itself as `ca-certificates.crt`, and the Java trust store of the same roots at
/// [`JAVA_STORE`]. Returns how many roots were written.
pub(crate) fn write(dir: &Path, bundle: &[u8]) -> CliResult<usize> {
    let failed = |path: &Path, e: std::io::Error| {
        CliError::new(Kind::RunFailed, format!("cannot write the certificate directory {}: {e}", path.display()))
    };
    let certificates = pem_certificates(bundle);
    let written = write_hashed(dir, &certificates)?;
    let bundle_path = dir.join(BUNDLE_NAMES[0]);
    fs::write(&bundle_path, bundle).map_err(|e| failed(&bundle_path, e))?;
    let java = dir.join(JAVA_STORE);
    fs::create_dir_all(java.parent().unwrap_or(dir)).map_err(|e| failed(&java, e))?;
    fs::write(&java, super::java_store::pkcs12(&certificates)).map_err(|e| failed(&java, e))?;
    Ok(written.len())
}

/// The sandbox's cached directory (`bundle::cached_sandbox_certs`): the roots of `sources`
/// (the bundle without the run's CA) under their hashes, and for the run's CA (`run_ca`, whose
/// subject is the same for every run) a link to `inside_bundle`, the path inside the sandbox
/// where the run's bundle is bound. The host's bundle names are empty mount points (the bundle
/// is bound over them) or links to `inside_bundle`; `java/cacerts` is an empty mount point for
/// the run's Java store. Returns the roots' Java certificate bags.
pub(crate) fn write_sandbox_template(
    dir: &Path,
    sources: &[u8],
    run_ca: &[u8],
    inside_bundle: &Path,
    host: &Path,
) -> CliResult<Vec<u8>> {
    let failed = |path: &Path, e: std::io::Error| {
        CliError::new(Kind::RunFailed, format!("cannot write the certificate directory {}: {e}", path.display()))
    };
    let certificates = pem_certificates(sources);
    let written = write_hashed(dir, &certificates)?;
    if let Some(hash) = subject_hash(run_ca) {
        let n = written.iter().filter(|h| **h == hash).count();
        let path = dir.join(format!("{hash:08x}.{n}"));
        std::os::unix::fs::symlink(inside_bundle, &path).map_err(|e| failed(&path, e))?;
    }
    let bound: Vec<PathBuf> = authsome_netns::CA_BUNDLE_PATHS.iter().filter_map(|p| fs::canonicalize(p).ok()).collect();
    for name in BUNDLE_NAMES.iter().filter(|n| host.join(n).exists()) {
        let path = dir.join(name);
        let result = match fs::canonicalize(host.join(name)) {
            Ok(real) if bound.contains(&real) => fs::write(&path, b""),
            _ => std::os::unix::fs::symlink(inside_bundle, &path),
        };
        result.map_err(|e| failed(&path, e))?;
    }
    let java = dir.join(JAVA_STORE);
    fs::create_dir_all(java.parent().unwrap_or(dir))
        .and_then(|()| fs::write(&java, b""))
        .map_err(|e| failed(&java, e))?;
    mirror_names(dir, host).map_err(|e| failed(dir, e))?;
    Ok(super::java_store::bags(&certificates))
}

/// `<hash>.<n>` files for `certificates` (duplicates once); the hashes written, in order.
fn write_hashed(dir: &Path, certificates: &[Vec<u8>]) -> CliResult<Vec<u32>> {
    let mut written: Vec<(u32, &[u8])> = Vec::new();
    for der in certificates {
        let Some(hash) = subject_hash(der) else { continue };
        if written.iter().any(|(h, d)| *h == hash && *d == der.as_slice()) {
            continue;
        }
        let n = written.iter().filter(|(h, _)| *h == hash).count();
        let path = dir.join(format!("{hash:08x}.{n}"));
        let pem = format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            base64::engine::general_purpose::STANDARD.encode(der)
        );
        fs::write(&path, pem).map_err(|e| {
            CliError::new(Kind::RunFailed, format!("cannot write the certificate directory {}: {e}", path.display()))
        })?;
        written.push((hash, der));
    }
    Ok(written.into_iter().map(|(h, _)| h).collect())
}

/// The host directory's other entries (bundles aside): links and files that lead outside it are
/// linked to where they lead (the host root is visible inside the sandbox), its own files are
/// copied.
fn mirror_names(dir: &Path, host: &Path) -> std::io::Result<()> {
    let Ok(entries) = fs::read_dir(host) else { return Ok(()) };
    let host_real = fs::canonicalize(host)?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let target = dir.join(&name);
        if BUNDLE_NAMES.iter().any(|b| name == *b)
            || target.symlink_metadata().is_ok()
            || is_hash_name(&name.to_string_lossy())
        {
            continue;
        }
        let Ok(real) = fs::canonicalize(entry.path()) else { continue };
        if !real.is_file() {
            continue;
        }
        if real.starts_with(&host_real) {
            // a file of the directory itself (a root added by hand): a copy, certificates are small
            if fs::metadata(&real).is_ok_and(|m| m.len() <= 1 << 20) {
                fs::copy(&real, &target)?;
            }
        } else {
            std::os::unix::fs::symlink(&real, &target)?;
        }
    }
    Ok(())
}

/// `<8 hex digits>.<digits>` (certificates) or `.r<digits>` (CRLs).
fn is_hash_name(name: &str) -> bool {
    let Some((hash, n)) = name.split_once('.') else { return false };
    hash.len() == 8
        && hash.bytes().all(|b| b.is_ascii_hexdigit())
        && !n.is_empty()
        && n.trim_start_matches('r').bytes().all(|b| b.is_ascii_digit())
}

/// Where the sandbox binds the cert directory: the host's `/etc/ssl/certs` when it is one.
pub(crate) fn host_cert_dir() -> Option<PathBuf> {
    Some(PathBuf::from("/etc/ssl/certs")).filter(|p| p.is_dir())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha1_matches_the_standard_vectors() {
        let hex = |d: [u8; 20]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
        assert_eq!(hex(sha1(b"abc")), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(hex(sha1(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(
            hex(sha1(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
        );
    }

    /// The host's `c_rehash`/`update-ca-certificates` links name each root by OpenSSL's own
    /// hash: ours must agree for every one of them.
    #[test]
    fn subject_hash_agrees_with_the_hosts_openssl_links() {
        let Ok(entries) = fs::read_dir("/etc/ssl/certs") else {
            eprintln!("skipped: no /etc/ssl/certs here");
            return;
        };
        let mut checked = 0;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !is_hash_name(&name) || name.contains(".r") {
                continue;
            }
            let Ok(pem) = fs::read(entry.path()) else { continue };
            let Some(der) = pem_certificates(&pem).into_iter().next() else { continue };
            assert_eq!(format!("{:08x}", subject_hash(&der).unwrap()), name[..8], "{name}");
            checked += 1;
        }
        eprintln!("{checked} hash links checked");
    }

    #[test]
    fn the_directory_holds_each_root_under_its_hash_once() {
        let ca = authsome_proxy::CertificateAuthority::ephemeral().unwrap();
        let der = ca.cert_der().to_vec();
        let bundle = format!("{}{}", ca.cert_pem(), ca.cert_pem());
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(write(dir.path(), bundle.as_bytes()).unwrap(), 1, "a duplicate is written once");
        let name = format!("{:08x}.0", subject_hash(&der).unwrap());
        assert_eq!(pem_certificates(&fs::read(dir.path().join(name)).unwrap()), vec![der]);
        assert_eq!(fs::read(dir.path().join("ca-certificates.crt")).unwrap(), bundle.as_bytes());
        assert!(fs::read(dir.path().join(JAVA_STORE)).unwrap().starts_with(&[0x30]));
    }

    #[test]
    fn canonical_strings_are_trimmed_collapsed_and_lower_cased() {
        assert_eq!(canonical_string(0x13, b"  Foo \t  Bar  ").unwrap(), "foo bar");
        assert_eq!(canonical_string(0x1e, &[0, b'A', 0, b' ', 0, b'B']).unwrap(), "a b");
        assert_eq!(canonical_string(0x04, b"X"), None);
        assert!(is_hash_name("0a1b2c3d.0") && is_hash_name("0a1b2c3d.r1") && !is_hash_name("ca.pem"));
    }
}
