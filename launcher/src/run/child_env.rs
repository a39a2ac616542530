//! The child's environment for `authsome run`: the parent's, with every real secret removed,
//! each connected provider's variables set to placeholders, the proxy variables pointing at our
//! listener (with the per-run token) and the CA-trust variables pointing at a bundle that adds
//! our CA. Pure: tested without a process.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::Path;

use secrecy::{ExposeSecret, SecretString};

/// Variables that *replace* a tool's trust store: pointed at the combined bundle (system roots,
/// the user's own extra roots, our CA). Each runtime reads its own variable: curl/OpenSSL, Python, Node, git, Deno…
pub(crate) const BUNDLE_VARS: &[&str] = &[
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
    "AWS_CA_BUNDLE",
    "PIP_CERT",
    "CARGO_HTTP_CAINFO",
    "npm_config_cafile",
    "NPM_CONFIG_CAFILE",
    "BUNDLE_SSL_CA_CERT",
    "NIX_SSL_CERT_FILE",
    "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH",
    "HEX_CACERTS_PATH",
    "PERL_LWP_SSL_CA_FILE",
    "HTTPS_CA_FILE",
    "HTTPLIB2_CA_CERTS",
    "CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE",
];

/// Variables that *add* to a tool's trust store: our CA alone (Bun and Deno read
/// `NODE_EXTRA_CA_CERTS` too).
pub(crate) const ADDITIVE_VARS: &[&str] = &["NODE_EXTRA_CA_CERTS", "DENO_CERT"];

/// The hashed certificate directory (OpenSSL, Go, .NET, Ruby; `cert_dir.rs`).
pub(crate) const CERT_DIR_VAR: &str = "SSL_CERT_DIR";

/// The JVM's options variable: our trust store is appended (`java_store.rs`).
pub(crate) const JAVA_OPTIONS_VAR: &str = "JAVA_TOOL_OPTIONS";

/// The JVM system properties that name a trust store: ours replace the parent's.
const JAVA_TRUST_PROPERTIES: &[&str] =
    &["-Djavax.net.ssl.trustStore=", "-Djavax.net.ssl.trustStoreType=", "-Djavax.net.ssl.trustStorePassword="];

/// Proxy variables, upper and lower case, for every client family we know.
pub(crate) const PROXY_VARS: &[&str] = &[
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "http_proxy",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
    "WS_PROXY",
    "WSS_PROXY",
    "YARN_HTTP_PROXY",
    "YARN_HTTPS_PROXY",
    "GLOBAL_AGENT_HTTP_PROXY",
    "GLOBAL_AGENT_HTTPS_PROXY",
    "grpc_proxy",
];

/// Variables the child must never see: they unlock the vault.
pub(crate) const NEVER_PASSED: &[&str] = &[crate::env::PASSPHRASE];

pub(crate) struct ChildEnvSpec<'a> {
    /// Variable name → placeholder.
    pub(crate) placeholders: &'a BTreeMap<String, String>,
    /// Every secret of the run: any parent variable containing one is dropped.
    pub(crate) secrets: &'a [SecretString],
    /// `http://TOKEN@127.0.0.1:PORT`.
    pub(crate) proxy_url: &'a str,
    pub(crate) bundle: &'a Path,
    pub(crate) ca_only: &'a Path,
    /// The hashed certificate directory (`SSL_CERT_DIR`), when the run made one.
    pub(crate) cert_dir: Option<&'a Path>,
    /// The PKCS#12 trust store for the JVM (`JAVA_TOOL_OPTIONS`), when the run made one.
    pub(crate) java_store: Option<&'a Path>,
    /// Host patterns some provider owns (never listed in NO_PROXY).
    pub(crate) provider_hosts: &'a [String],
}

pub(crate) fn build(
    parent: impl IntoIterator<Item = (OsString, OsString)>,
    spec: &ChildEnvSpec<'_>,
) -> Vec<(OsString, OsString)> {
    let ours: Vec<&str> = BUNDLE_VARS
        .iter()
        .chain(ADDITIVE_VARS)
        .chain(PROXY_VARS)
        .chain(NEVER_PASSED)
        .chain(&["NO_PROXY", "no_proxy", "NODE_USE_ENV_PROXY", "AUTHSOME_PROXY_MODE"])
        .chain(spec.cert_dir.map(|_| &CERT_DIR_VAR))
        .copied()
        .collect();
    let mut java_options: Option<String> = None;
    let mut no_proxy: Vec<String> = Vec::new();
    let mut out: Vec<(OsString, OsString)> = Vec::new();
    for (name, value) in parent {
        let Some(name_str) = name.to_str() else {
            out.push((name, value));
            continue;
        };
        if name_str.eq_ignore_ascii_case("no_proxy") {
            no_proxy.extend(value.to_string_lossy().split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()));
            continue;
        }
        if ours.contains(&name_str) || spec.placeholders.contains_key(name_str) {
            continue;
        }
        if holds_secret(&value, spec.secrets) {
            continue;
        }
        if name_str == JAVA_OPTIONS_VAR
            && spec.java_store.is_some()
            && let Some(options) = value.to_str()
        {
            java_options = Some(options.to_string());
            continue;
        }
        if name_str == "NODE_OPTIONS"
            && let Some(rest) = value.to_str().and_then(super::node_preload::without_ours)
        {
            if !rest.is_empty() {
                out.push((name, rest.into()));
            }
            continue;
        }
        out.push((name, value));
    }
    for (name, placeholder) in spec.placeholders {
        out.push((name.into(), placeholder.into()));
    }
    for name in PROXY_VARS {
        out.push(((*name).into(), spec.proxy_url.into()));
    }
    out.push(("NODE_USE_ENV_PROXY".into(), "1".into()));
    // Clients must never be sent around the proxy for a provider host (the child would then
    // hold nothing usable); local addresses stay direct.
    no_proxy.retain(|entry| !names_provider_host(entry, spec.provider_hosts));
    // The host-loopback name (`--allow-host-port`) is relayed as raw TCP, never by the proxy
    // listener: HTTP clients must dial it themselves.
    for local in ["localhost", "127.0.0.1", "::1", authsome_proxy::HOST_LOOPBACK_NAME] {
        if !no_proxy.iter().any(|e| e == local) {
            no_proxy.push(local.to_string());
        }
    }
    let no_proxy = no_proxy.join(",");
    out.push(("NO_PROXY".into(), no_proxy.clone().into()));
    out.push(("no_proxy".into(), no_proxy.into()));
    for name in BUNDLE_VARS {
        out.push(((*name).into(), spec.bundle.as_os_str().to_owned()));
    }
    for name in ADDITIVE_VARS {
        out.push(((*name).into(), spec.ca_only.as_os_str().to_owned()));
    }
    if let Some(dir) = spec.cert_dir {
        out.push((CERT_DIR_VAR.into(), dir.as_os_str().to_owned()));
    }
    if let Some(options) = spec.java_store.and_then(|store| java_tool_options(java_options.as_deref(), store)) {
        out.push((JAVA_OPTIONS_VAR.into(), options.into()));
    } else if let Some(options) = java_options {
        out.push((JAVA_OPTIONS_VAR.into(), options.into()));
    }
    out.push(("AUTHSOME_PROXY_MODE".into(), "true".into()));
    out
}

/// The parent's JVM options without its trust-store properties, then ours. `None` when the
/// store's path cannot be written there (the JVM splits the variable at white space).
fn java_tool_options(parent: Option<&str>, store: &Path) -> Option<String> {
    let store = store.to_str().filter(|s| !s.contains(char::is_whitespace) && !s.contains(['"', '\'']))?;
    let mut options: Vec<String> = parent
        .unwrap_or_default()
        .split_whitespace()
        .filter(|o| !JAVA_TRUST_PROPERTIES.iter().any(|p| o.starts_with(p)))
        .map(str::to_string)
        .collect();
    options.push(format!("{}{store}", JAVA_TRUST_PROPERTIES[0]));
    options.push(format!("{}PKCS12", JAVA_TRUST_PROPERTIES[1]));
    Some(options.join(" "))
}

fn holds_secret(value: &OsStr, secrets: &[SecretString]) -> bool {
    let value = value.as_encoded_bytes();
    secrets.iter().any(|s| {
        let s = s.expose_secret().as_bytes();
        // Very short values would match by accident; real credentials are long.
        s.len() >= 8 && value.windows(s.len()).any(|w| w == s)
    })
}

/// Whether a NO_PROXY entry (`.example.com`, `example.com`, `*.example.com`, `*`) would exempt
/// a host some provider owns.
fn names_provider_host(entry: &str, hosts: &[String]) -> bool {
    let entry = entry.trim().trim_start_matches("*.").trim_start_matches('.').to_ascii_lowercase();
    if entry == "*" || entry.is_empty() {
        return entry == "*";
    }
    let entry = entry.split(':').next().unwrap_or(&entry).to_string();
    hosts.iter().any(|pattern| {
        let host = pattern.trim_start_matches("*.");
        // `example.com` exempts `example.com` and its subdomains in most clients.
        host == entry || host.ends_with(&format!(".{entry}")) || entry.ends_with(&format!(".{host}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn env_map(vars: &[(OsString, OsString)]) -> BTreeMap<String, String> {
        vars.iter().map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned())).collect()
    }

    #[test]
    fn builds_a_secret_free_environment() {
        let placeholders: BTreeMap<String, String> =
            [("OPENAI_API_KEY".to_string(), "sk-authsome_abc".to_string())].into_iter().collect();
        let secrets = vec![SecretString::from("sk-REALSECRET123456")];
        let bundle = PathBuf::from("/run/a/bundle.pem");
        let ca = PathBuf::from("/run/a/ca.pem");
        let spec = ChildEnvSpec {
            placeholders: &placeholders,
            secrets: &secrets,
            proxy_url: "http://tok@127.0.0.1:4444",
            bundle: &bundle,
            ca_only: &ca,
            cert_dir: Some(Path::new("/run/a/certs")),
            java_store: Some(Path::new("/run/a/certs/java/cacerts")),
            provider_hosts: &["api.openai.com".to_string(), "*.googleapis.com".to_string()],
        };
        let parent = vec![
            ("PATH".into(), "/usr/bin".into()),
            ("OPENAI_API_KEY".into(), "sk-REALSECRET123456".into()),
            ("MY_COPY".into(), "Bearer sk-REALSECRET123456".into()),
            ("AUTHSOME_PASSPHRASE".into(), "hunter2-hunter2".into()),
            ("SSL_CERT_FILE".into(), "/etc/ssl/certs/ca-certificates.crt".into()),
            ("NO_PROXY".into(), "internal.corp,.openai.com,googleapis.com,localhost".into()),
            ("HTTPS_PROXY".into(), "http://corp-proxy:3128".into()),
            ("SSL_CERT_DIR".into(), "/etc/ssl/certs".into()),
            ("JAVA_TOOL_OPTIONS".into(), "-Xmx1g -Djavax.net.ssl.trustStore=/old.jks -Dfile.encoding=UTF-8".into()),
        ];
        let env = env_map(&build(parent, &spec));
        assert_eq!(env["PATH"], "/usr/bin");
        assert_eq!(env["OPENAI_API_KEY"], "sk-authsome_abc");
        assert!(!env.contains_key("MY_COPY"));
        assert!(!env.contains_key("AUTHSOME_PASSPHRASE"));
        assert!(env.values().all(|v| !v.contains("REALSECRET")));
        assert_eq!(env["HTTPS_PROXY"], "http://tok@127.0.0.1:4444");
        assert_eq!(env["https_proxy"], "http://tok@127.0.0.1:4444");
        assert_eq!(env["NO_PROXY"], "internal.corp,localhost,127.0.0.1,::1,host.authsome.internal");
        assert_eq!(env["no_proxy"], env["NO_PROXY"]);
        assert_eq!(env["SSL_CERT_FILE"], "/run/a/bundle.pem");
        assert_eq!(env["GIT_SSL_CAINFO"], "/run/a/bundle.pem");
        assert_eq!(env["NODE_EXTRA_CA_CERTS"], "/run/a/ca.pem");
        assert_eq!(env["NODE_USE_ENV_PROXY"], "1");
        assert_eq!(env["AUTHSOME_PROXY_MODE"], "true");
        assert_eq!(env["SSL_CERT_DIR"], "/run/a/certs");
        assert_eq!(
            env["JAVA_TOOL_OPTIONS"],
            "-Xmx1g -Dfile.encoding=UTF-8 -Djavax.net.ssl.trustStore=/run/a/certs/java/cacerts \
             -Djavax.net.ssl.trustStoreType=PKCS12"
        );
    }

    #[test]
    fn java_options_are_kept_when_the_store_cannot_be_named() {
        assert_eq!(java_tool_options(None, Path::new("/a b/cacerts")), None);
        assert_eq!(
            java_tool_options(Some("-Xss2m"), Path::new("/s.p12")).unwrap(),
            "-Xss2m -Djavax.net.ssl.trustStore=/s.p12 -Djavax.net.ssl.trustStoreType=PKCS12"
        );
    }

    #[test]
    fn no_proxy_star_is_dropped() {
        assert!(names_provider_host("*", &["api.openai.com".into()]));
        assert!(!names_provider_host("example.org", &["api.openai.com".into()]));
        assert!(names_provider_host("api.openai.com:443", &["api.openai.com".into()]));
    }
}
