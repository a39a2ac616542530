//! Validation of provider definitions: the same rules for bundled (checked by a test over the
//! whole catalog) and custom providers (checked by `register`).

use super::schema::{AuthType, Flow, Inject, Provider, SCHEMA_VERSION};

/// Everything wrong with a definition, so a user fixes a file in one pass.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("provider '{name}' is invalid:\n  - {}", problems.join("\n  - "))]
pub(crate) struct Invalid {
    pub(crate) name: String,
    pub(crate) problems: Vec<String>,
}

pub(crate) fn validate(p: &Provider) -> Result<(), Invalid> {
    let mut problems = Vec::new();
    let mut fail = |msg: String| problems.push(msg);

    if p.schema_version != SCHEMA_VERSION {
        fail(format!("schema_version must be {SCHEMA_VERSION}"));
    }
    if let Err(e) = authsome_vault::validate_name("provider", &p.name) {
        fail(e.to_string());
    }
    if p.display_name.trim().is_empty() {
        fail("display_name is empty".into());
    }
    match (p.auth_type, p.flow) {
        (AuthType::ApiKey, Flow::ApiKey) => {}
        (AuthType::OAuth2, Flow::Pkce | Flow::DeviceCode | Flow::DcrPkce) => {}
        (auth, flow) => fail(format!("flow '{}' does not fit auth_type '{}'", flow.as_str(), auth.as_str())),
    }
    if p.hosts.is_empty() {
        fail("hosts is empty: name at least one API host".into());
    }
    for host in &p.hosts {
        if let Err(why) = check_host_pattern(host) {
            fail(format!("host '{host}': {why}"));
        }
    }
    if let Some(prefix) = &p.path_prefix
        && (!prefix.starts_with('/') || prefix.contains(['?', '#']) || prefix.len() < 2)
    {
        fail(format!("path_prefix '{prefix}' must start with '/' and hold a path only"));
    }
    match &p.inject {
        Inject::Header { name, value } => {
            if !is_header_name(name) {
                fail(format!("inject.name '{name}' is not a valid header name"));
            }
            if value.matches("{secret}").count() != 1 {
                fail("inject.value must contain {secret} exactly once".into());
            }
            if value.contains(['\r', '\n']) {
                fail("inject.value must be one line".into());
            }
        }
        Inject::Basic { username, password } => {
            if username.matches("{secret}").count() + password.matches("{secret}").count() != 1 {
                fail("inject: {secret} must appear exactly once in username or password".into());
            }
            if username.contains(':') {
                fail("inject.username must not contain ':'".into());
            }
        }
        Inject::Query { name } => {
            if name.is_empty() || name.contains(['&', '=', '#', ' ']) {
                fail(format!("inject.name '{name}' is not a usable query parameter"));
            }
        }
    }
    for (name, value) in &p.default_headers {
        if !is_header_name(name) || value.contains(['\r', '\n']) {
            fail(format!("default header '{name}' is not a valid header"));
        }
    }
    for name in p.env.api_key.iter().chain(&p.env.access_token).chain(&p.env.refresh_token) {
        if !is_env_name(name) {
            fail(format!("env name '{name}' must be upper case letters, digits and '_'"));
        }
    }
    let primary = p.env_names(p.primary_field());
    if primary.is_empty() {
        fail(format!("env.{} is empty: name the variable tools read", p.primary_field()));
    }
    if p.auth_type == AuthType::ApiKey && !p.env.access_token.is_empty() {
        fail("an api_key provider exports api_key, not access_token".into());
    }
    if let Some(spec) = &p.api_key
        && let Some(pattern) = &spec.pattern
        && let Err(e) = regex::Regex::new(pattern)
    {
        fail(format!("api_key.pattern does not compile: {e}"));
    }
    if let Some(prefix) = &p.placeholder_prefix
        && (prefix.len() > 16 || !prefix.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        fail(format!("placeholder_prefix '{prefix}' must be at most 16 characters of [A-Za-z0-9._-]"));
    }
    match (&p.oauth, p.auth_type) {
        (None, AuthType::OAuth2) => fail("oauth is required for auth_type oauth2".into()),
        (Some(_), AuthType::ApiKey) => fail("oauth is only for auth_type oauth2".into()),
        (Some(oauth), AuthType::OAuth2) => {
            let mut urls = vec![("token_url", Some(&oauth.token_url))];
            urls.push(("authorization_url", oauth.authorization_url.as_ref()));
            urls.push(("revocation_url", oauth.revocation_url.as_ref()));
            urls.push(("device_authorization_url", oauth.device_authorization_url.as_ref()));
            urls.push(("registration_endpoint", oauth.registration_endpoint.as_ref()));
            urls.push(("refresh_url", oauth.refresh_url.as_ref()));
            for (field, url) in urls {
                let Some(url) = url else { continue };
                if url.contains("{base_url}") && oauth.base_url.is_none() {
                    fail(format!("oauth.{field} uses {{base_url}} but oauth.base_url has no default"));
                    continue;
                }
                if let Err(why) = check_endpoint(&p.oauth_url(url, None)) {
                    fail(format!("oauth.{field} '{url}': {why}"));
                }
            }
            if let Some(base) = &oauth.base_url
                && let Err(why) = check_endpoint(base)
            {
                fail(format!("oauth.base_url '{base}': {why}"));
            }
            if matches!(p.flow, Flow::Pkce | Flow::DcrPkce) && oauth.authorization_url.is_none() {
                fail(format!("flow '{}' needs oauth.authorization_url", p.flow.as_str()));
            }
            if p.flow == Flow::DeviceCode && oauth.device_authorization_url.is_none() {
                fail("flow 'device_code' needs oauth.device_authorization_url".into());
            }
            if oauth.scope_separator.is_empty() {
                fail("oauth.scope_separator is empty".into());
            }
        }
        (None, AuthType::ApiKey) => {}
    }
    for url in p.docs_url.iter() {
        if !url.starts_with("https://") {
            fail(format!("docs_url '{url}' must be https"));
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(Invalid { name: p.name.clone(), problems }) }
}

/// `api.example.com` or `*.example.com`: lower-case DNS labels, no IP literal, no port, no
/// scheme, not a loopback name. A wildcard must leave at least two labels.
pub(crate) fn check_host_pattern(pattern: &str) -> Result<(), String> {
    let host = pattern.strip_prefix("*.").unwrap_or(pattern);
    if pattern.contains("://") || pattern.contains(['/', ':', '?', '#', '@']) {
        return Err("write a bare host name (no scheme, port or path)".into());
    }
    if host.contains('*') {
        return Err("only a leading '*.' wildcard is allowed".into());
    }
    if host != host.to_ascii_lowercase() {
        return Err("use lower case".into());
    }
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Err("IP addresses are not allowed; name the host".into());
    }
    if is_loopback_name(host) {
        return Err("loopback hosts never receive credentials".into());
    }
    let labels: Vec<&str> = host.split('.').collect();
    if labels.len() < 2 {
        return Err("a host needs at least two labels".into());
    }
    for label in &labels {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!("'{label}' is not a valid DNS label"));
        }
    }
    if labels.last().is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit())) {
        return Err("the last label cannot be numeric".into());
    }
    Ok(())
}

/// An OAuth or docs endpoint: https, a named host that is not loopback or a bare IP.
pub(crate) fn check_endpoint(url: &str) -> Result<(), String> {
    let Some(rest) = url.strip_prefix("https://") else {
        return Err("must be an https:// URL".into());
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err("must not carry credentials".into());
    }
    let host = if authority.starts_with('[') {
        return Err("bare IP addresses are not allowed".into());
    } else {
        authority
            .rsplit_once(':')
            .map_or(authority, |(h, port)| if port.chars().all(|c| c.is_ascii_digit()) { h } else { authority })
    };
    let host = host.to_ascii_lowercase();
    if host.is_empty() {
        return Err("has no host".into());
    }
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Err("bare IP addresses are not allowed".into());
    }
    if is_loopback_name(&host) {
        return Err("loopback endpoints are not allowed".into());
    }
    if url.contains(char::is_whitespace) {
        return Err("contains whitespace".into());
    }
    Ok(())
}

fn is_loopback_name(host: &str) -> bool {
    let host = host.trim_end_matches('.');
    host == "localhost" || host.ends_with(".localhost") || host == "localhost.localdomain"
}

fn is_header_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns() {
        for ok in ["api.openai.com", "*.googleapis.com", "a-b.example.co.uk", "*.api.mailchimp.com"] {
            assert_eq!(check_host_pattern(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "localhost",
            "api.localhost",
            "127.0.0.1",
            "::1",
            "*.com",
            "*",
            "api.*.com",
            "*foo.com",
            "https://api.openai.com",
            "api.openai.com:443",
            "api.openai.com/v1",
            "API.openai.com",
            "-a.example.com",
            "a..b.com",
            "example.123",
            ".*googleapis.*",
        ] {
            assert!(check_host_pattern(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn endpoints() {
        for ok in ["https://github.com/login/oauth/authorize", "https://auth.example.com:8443/token?x=1"] {
            assert_eq!(check_endpoint(ok), Ok(()), "{ok}");
        }
        for bad in [
            "http://github.com/x",
            "https://localhost/token",
            "https://127.0.0.1/token",
            "https://[::1]/token",
            "https://10.0.0.1:8443/token",
            "https://user:pw@example.com/",
            "https:///path",
            "ftp://example.com",
        ] {
            assert!(check_endpoint(bad).is_err(), "{bad:?} accepted");
        }
    }
}
