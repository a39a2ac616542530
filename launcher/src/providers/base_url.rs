//! A connection's own API location, from `login --base-url`: self-hosted products (GitHub
//! Enterprise, GitLab self-managed, Jira and Confluence Data Center) and regional or per-tenant
//! hosts (Datadog sites, Azure OpenAI resources, Supabase projects).
//!
//! Owns the check of a typed base URL against what the definition allows (its `base_url`
//! section) and the hosts and path a connection's credential is routed to. A base URL names
//! exactly one host, the one the user typed: never a wildcard, never a parent domain, never an
//! IP literal, loopback or a URL carrying credentials. The OAuth `{base_url}` substitution is in
//! `schema.rs`; this module decides where the API credential goes.

use super::schema::{BaseUrlSpec, Provider};
use super::validate::check_host_pattern;

/// Where a connection's credential goes on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Location {
    /// Exact names or `*.suffix` patterns (a base URL gives one exact name).
    pub(crate) hosts: Vec<String>,
    /// Only requests under this path get the credential.
    pub(crate) path_prefix: Option<String>,
    /// Whether the connection's base URL decided this (rather than the definition's hosts).
    pub(crate) own: bool,
}

/// A typed base URL taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Parts {
    host: String,
    /// `:8443`, or empty.
    port: String,
    /// Without a trailing `/`; empty for the root.
    path: String,
}

/// Check `url` for a connection of `provider` and return it normalised (lower-case host, no
/// trailing `/`). The error says why, without repeating anything but the URL.
pub(crate) fn check(provider: &Provider, url: &str) -> Result<String, String> {
    let Some(spec) = &provider.base_url else {
        return Err(format!("{} does not take a base URL (its API hosts are fixed)", provider.name));
    };
    let parts = split(url)?;
    if !spec.hosts.iter().any(|template| template_matches(template, &parts.host)) {
        return Err(format!("{} is not a {} host: expected {}", parts.host, provider.display_name, allowed(spec)));
    }
    Ok(format!("https://{}{}{}", parts.host, parts.port, parts.path))
}

/// The hosts a base URL may name, for messages.
pub(crate) fn allowed(spec: &BaseUrlSpec) -> String {
    if spec.hosts.iter().any(|t| t == "{host}") {
        return "the https URL of your own server".into();
    }
    spec.hosts.join(", ")
}

/// Where the credential of a connection with `base_url` (None: the definition's hosts) goes.
///
/// A base URL the definition does not take (a record written before definitions declared one)
/// is ignored, as it always was. A base URL the definition takes but that does not pass the
/// check any more (the definition narrowed its hosts) is an error: the connection gets no route
/// rather than the definition's default hosts, which would hand its token to another server.
pub(crate) fn location(provider: &Provider, base_url: Option<&str>) -> Result<Location, String> {
    let default = Location { hosts: provider.hosts.clone(), path_prefix: provider.path_prefix.clone(), own: false };
    let Some(spec) = &provider.base_url else { return Ok(default) };
    let Some(url) = base_url else {
        if spec.required {
            return Err(format!("is missing: {} needs one ({})", provider.name, allowed(spec)));
        }
        return Ok(default);
    };
    // The OAuth default (`https://github.com`) is the public service, not a server of one's own.
    let oauth_default = provider.oauth.as_ref().and_then(|o| o.base_url.as_deref());
    if oauth_default.is_some_and(|d| d.trim_end_matches('/').eq_ignore_ascii_case(url.trim_end_matches('/'))) {
        return Ok(default);
    }
    check(provider, url)?;
    let parts = split(url)?;
    let path_prefix = match (parts.path.as_str(), spec.path_prefix.as_deref()) {
        ("", None) => None,
        (path, Some(api)) => Some(format!("{path}{api}")),
        (path, None) => Some(path.to_string()),
    };
    Ok(Location { hosts: vec![parts.host], path_prefix, own: true })
}

/// `https://host[:port][/path]`, strictly: a named host that is a valid DNS name, no user
/// info, no wildcard, no query or fragment, no dot segments or escapes in the path.
fn split(url: &str) -> Result<Parts, String> {
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains whitespace or control characters".into());
    }
    let Some(rest) = url.strip_prefix("https://") else {
        return Err("must be an https:// URL".into());
    };
    if rest.contains(['?', '#']) {
        return Err("must not carry a query or fragment".into());
    }
    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    if authority.contains('@') {
        return Err("must not carry credentials".into());
    }
    if authority.contains('*') {
        return Err("wildcards are not allowed: name the one host".into());
    }
    if authority.starts_with('[') {
        return Err("IP addresses are not allowed: name the host".into());
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => {
            if port.parse::<u16>().map_or(true, |p| p == 0) {
                return Err(format!("'{port}' is not a port"));
            }
            (host, format!(":{port}"))
        }
        None => (authority, String::new()),
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host.is_empty() {
        return Err("has no host".into());
    }
    check_host_pattern(&host)?;
    let path = path.trim_end_matches('/');
    if path.contains(['%', '\\', ';']) {
        return Err("the path must be plain (no escapes)".into());
    }
    if path.split('/').any(|segment| matches!(segment, "" | "." | "..")) && !path.is_empty() {
        return Err("the path must not hold empty, '.' or '..' segments".into());
    }
    let path = if path.is_empty() { String::new() } else { format!("/{path}") };
    Ok(Parts { host, port, path })
}

/// `{host}`: any host; `{label}.suffix`: exactly one label in front of `suffix`; else exact.
fn template_matches(template: &str, host: &str) -> bool {
    if template == "{host}" {
        return true;
    }
    if let Some(rest) = template.strip_prefix('{') {
        let Some((_, suffix)) = rest.split_once("}.") else { return false };
        let Some((label, tail)) = host.split_once('.') else { return false };
        return !label.is_empty() && tail == suffix;
    }
    template == host
}

/// Problems with a definition's `base_url` section (for `validate.rs`).
pub(crate) fn check_spec(provider: &Provider, spec: &BaseUrlSpec, problems: &mut Vec<String>) {
    if spec.hosts.is_empty() {
        problems.push("base_url.hosts is empty: name the hosts a base URL may point to".into());
    }
    for template in &spec.hosts {
        if let Err(why) = check_template(template) {
            problems.push(format!("base_url.hosts '{template}': {why}"));
        }
    }
    if let Some(prefix) = &spec.path_prefix
        && (!prefix.starts_with('/') || prefix.ends_with('/') || prefix.contains(['?', '#', '%']) || prefix.len() < 2)
    {
        problems.push(format!("base_url.path_prefix '{prefix}' must start with '/' and hold a path only"));
    }
    if let Err(why) = check(provider, &spec.example) {
        problems.push(format!("base_url.example '{}': {why}", spec.example));
    }
}

fn check_template(template: &str) -> Result<(), String> {
    if template == "{host}" {
        return Ok(());
    }
    let Some(rest) = template.strip_prefix('{') else {
        if template.contains(['{', '}', '*']) {
            return Err("write an exact host, '{name}.suffix' or '{host}'".into());
        }
        return check_host_pattern(template);
    };
    let Some((name, suffix)) = rest.split_once("}.") else {
        return Err("a '{name}' must be the whole first label".into());
    };
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
        return Err("a placeholder is a lower-case name".into());
    }
    if suffix.contains(['{', '}', '*']) {
        return Err("only the first label may be a placeholder".into());
    }
    check_host_pattern(suffix)?;
    // `{x}.com` would let a base URL name any .com host.
    if suffix.split('.').count() < 2 {
        return Err("the part after the placeholder needs at least two labels".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Catalog;

    fn with_spec(hosts: &[&str], path_prefix: Option<&str>) -> Provider {
        let mut p = Catalog::bundled_only().get("openai").unwrap().provider.clone();
        p.base_url = Some(BaseUrlSpec {
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            path_prefix: path_prefix.map(str::to_string),
            example: "https://x.example.com".into(),
            required: false,
        });
        p
    }

    /// Per-tenant hosts: without a base URL a connection goes nowhere, not to every tenant.
    #[test]
    fn a_required_base_url_leaves_a_connection_without_one_unrouted() {
        let mut p = with_spec(&["{project}.supabase.co"], None);
        p.hosts.clear();
        p.base_url.as_mut().unwrap().example = "https://abcd.supabase.co".into();
        p.base_url.as_mut().unwrap().required = true;
        let mut problems = Vec::new();
        check_spec(&p, p.base_url.as_ref().unwrap(), &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        assert!(crate::providers::validate::validate_as(&p, &crate::providers::validate::Spelling::OURS).is_ok());
        assert!(location(&p, None).unwrap_err().contains("needs one"));
        assert_eq!(location(&p, Some("https://abcd.supabase.co")).unwrap().hosts, vec!["abcd.supabase.co"]);
    }

    #[test]
    fn self_hosted_takes_one_named_host_and_never_widens() {
        let p = with_spec(&["{host}"], Some("/api"));
        assert_eq!(check(&p, "https://GHE.example.com/").unwrap(), "https://ghe.example.com");
        assert_eq!(check(&p, "https://ghe.example.com:8443/git").unwrap(), "https://ghe.example.com:8443/git");
        let location = location(&p, Some("https://ghe.example.com/git")).unwrap();
        assert_eq!(location.hosts, vec!["ghe.example.com"]);
        assert_eq!(location.path_prefix.as_deref(), Some("/git/api"));
        for bad in [
            "https://*.example.com",
            "https://*",
            "https://example.*",
            "https://user:pw@ghe.example.com",
            "https://token@ghe.example.com",
            "https://10.0.0.1",
            "https://[::1]",
            "https://127.0.0.1:8443",
            "https://localhost",
            "https://ghe.localhost",
            "https://com",
            "http://ghe.example.com",
            "ghe.example.com",
            "https://ghe.example.com/?x=1",
            "https://ghe.example.com/#f",
            "https://ghe.example.com/a/../b",
            "https://ghe.example.com/%2e%2e",
            "https://ghe.example.com:0",
            "https://ghe.example.com:99999",
            "https://ghe example.com",
            "https://ghe.example.com\n",
            "https://",
        ] {
            assert!(check(&p, bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn regional_and_tenant_templates_match_exactly_one_label() {
        let p = with_spec(&["{resource}.openai.azure.com", "api.datadoghq.eu"], None);
        assert!(check(&p, "https://my-res.openai.azure.com").is_ok());
        assert!(check(&p, "https://api.datadoghq.eu").is_ok());
        for bad in [
            "https://openai.azure.com",
            "https://a.b.openai.azure.com",
            "https://my-res.openai.azure.com.evil.test",
            "https://evil-openai.azure.com",
            "https://x.datadoghq.eu",
            "https://api.datadoghq.eu.evil.test",
        ] {
            assert!(check(&p, bad).is_err(), "{bad:?} accepted");
        }
        let location = location(&p, Some("https://my-res.openai.azure.com")).unwrap();
        assert_eq!(
            (location.hosts, location.path_prefix, location.own),
            (vec!["my-res.openai.azure.com".into()], None, true)
        );
    }

    #[test]
    fn without_a_section_a_base_url_is_refused_at_login_and_ignored_in_old_records() {
        let openai = Catalog::bundled_only().get("openai").unwrap().provider.clone();
        assert!(check(&openai, "https://api.openai.com").unwrap_err().contains("does not take a base URL"));
        let location = location(&openai, Some("https://elsewhere.example.com")).unwrap();
        assert_eq!(location.hosts, openai.hosts);
        assert!(!location.own);
    }

    #[test]
    fn a_record_the_definition_no_longer_allows_gets_no_route() {
        let p = with_spec(&["api.datadoghq.eu"], None);
        assert!(location(&p, Some("https://api.evil.test")).is_err());
    }

    #[test]
    fn templates_in_definitions() {
        for ok in ["{host}", "{resource}.openai.azure.com", "api.datadoghq.eu", "{project}.supabase.co"] {
            assert_eq!(check_template(ok), Ok(()), "{ok}");
        }
        for bad in [
            "*",
            "*.example.com",
            "{x}.com",
            "{x}",
            "a.{x}.com",
            "{X}.example.com",
            "{}.example.com",
            "{x}.*.com",
            "127.0.0.1",
            "localhost",
        ] {
            assert!(check_template(bad).is_err(), "{bad:?} accepted");
        }
    }
}
