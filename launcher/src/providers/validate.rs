//! Validation of provider definitions: the same rules for bundled (checked by a test over the
//! whole catalog) and custom providers (checked by `register`).

use super::schema::{AuthType, Flow, Inject, OAuthSpec, Provider, SCHEMA_VERSION, SecondValue};

/// Everything wrong with a definition, so a user fixes a file in one pass.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("provider '{name}' is invalid:\n  - {}", problems.join("\n  - "))]
pub(crate) struct Invalid {
    pub(crate) name: String,
    pub(crate) problems: Vec<String>,
}

/// How the file the user wrote spells the fields a message may name, so that a converted
/// Python authsome file is told about `host_url`, not about our `hosts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Spelling {
    pub(crate) hosts: &'static str,
    pub(crate) header_name: &'static str,
    pub(crate) header_value: &'static str,
    pub(crate) env: &'static str,
    pub(crate) key_pattern: &'static str,
    pub(crate) docs_url: &'static str,
}

impl Spelling {
    /// Our own schema.
    pub(crate) const OURS: Self = Self {
        hosts: "hosts",
        header_name: "inject.name",
        header_value: "inject.value",
        env: "env",
        key_pattern: "api_key.pattern",
        docs_url: "docs_url",
    };
}

/// Validate `p`, naming fields as `spelling` writes them.
pub(crate) fn validate_as(p: &Provider, spelling: &Spelling) -> Result<(), Invalid> {
    let mut problems = Vec::new();
    check_identity(p, &mut problems);
    check_hosts(p, spelling, &mut problems);
    check_inject(p, spelling, &mut problems);
    if let Some(second) = &p.second_value {
        check_second_value(p, second, &mut problems);
    }
    check_env_and_key(p, spelling, &mut problems);
    match (&p.oauth, p.auth_type) {
        (None, AuthType::OAuth2) => problems.push("oauth is required for auth_type oauth2".into()),
        (Some(_), AuthType::ApiKey) => problems.push("oauth is only for auth_type oauth2".into()),
        (Some(oauth), AuthType::OAuth2) => check_oauth(p, oauth, &mut problems),
        (None, AuthType::ApiKey) => {}
    }
    if let Some(spec) = &p.base_url {
        super::base_url::check_spec(p, spec, &mut problems);
    }
    for url in p.docs_url.iter() {
        if !url.starts_with("https://") {
            problems.push(format!("{} '{url}' must be https", spelling.docs_url));
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(Invalid { name: p.name.clone(), problems }) }
}

fn check_identity(p: &Provider, problems: &mut Vec<String>) {
    if p.schema_version != SCHEMA_VERSION {
        problems.push(format!("schema_version must be {SCHEMA_VERSION}"));
    }
    if let Err(e) = authsome_vault::validate_name("provider", &p.name) {
        problems.push(e.to_string());
    }
    if p.display_name.trim().is_empty() {
        problems.push("display_name is empty".into());
    }
    match (p.auth_type, p.flow) {
        (AuthType::ApiKey, Flow::ApiKey) => {}
        (AuthType::OAuth2, Flow::Pkce | Flow::DeviceCode | Flow::DcrPkce) => {}
        (auth, flow) => problems.push(format!("flow '{}' does not fit auth_type '{}'", flow.as_str(), auth.as_str())),
    }
}

fn check_hosts(p: &Provider, spelling: &Spelling, problems: &mut Vec<String>) {
    if p.hosts.is_empty() && !p.base_url.as_ref().is_some_and(|b| b.required) {
        problems.push(format!("{} is empty: name at least one API host", spelling.hosts));
    }
    for host in &p.hosts {
        if let Err(why) = check_host_pattern(host) {
            problems.push(format!("{} '{host}': {why}", spelling.hosts));
        }
    }
    if let Some(prefix) = &p.path_prefix
        && (!prefix.starts_with('/') || prefix.contains(['?', '#']) || prefix.len() < 2)
    {
        problems.push(format!("path_prefix '{prefix}' must start with '/' and hold a path only"));
    }
    for (name, value) in &p.default_headers {
        if !is_header_name(name) || value.contains(['\r', '\n']) {
            problems.push(format!("default header '{name}' is not a valid header"));
        }
    }
}

fn check_inject(p: &Provider, spelling: &Spelling, problems: &mut Vec<String>) {
    let templates: Vec<&String> = match &p.inject {
        Inject::Header { name, value } => {
            if !is_header_name(name) {
                problems.push(format!("{} '{name}' is not a valid header name", spelling.header_name));
            }
            if value.matches("{secret}").count() != 1 {
                problems.push(format!("{} must contain {{secret}} exactly once", spelling.header_value));
            }
            if value.contains(['\r', '\n']) {
                problems.push(format!("{} must be one line", spelling.header_value));
            }
            vec![value]
        }
        Inject::Basic { username, password } => {
            if username.matches("{secret}").count() + password.matches("{secret}").count() != 1 {
                problems.push("inject: {secret} must appear exactly once in username or password".into());
            }
            if username.contains(':') {
                problems.push("inject.username must not contain ':'".into());
            }
            vec![username, password]
        }
        Inject::Query { name } => {
            if name.is_empty() || name.contains(['&', '=', '#', ' ']) {
                problems.push(format!("inject.name '{name}' is not a usable query parameter"));
            }
            if p.second_value.is_some() {
                problems
                    .push("a query parameter carries one value: inject a second value with headers or basic".into());
            }
            Vec::new()
        }
        Inject::Headers { headers } => {
            if headers.is_empty() {
                problems.push("inject.headers is empty".into());
            }
            for (i, header) in headers.iter().enumerate() {
                if !is_header_name(&header.name) {
                    problems.push(format!("inject.headers name '{}' is not a valid header name", header.name));
                }
                if header.value.contains(['\r', '\n']) {
                    problems.push(format!("inject.headers value of '{}' must be one line", header.name));
                }
                if headers[..i].iter().any(|h| h.name.eq_ignore_ascii_case(&header.name)) {
                    problems.push(format!("inject.headers names '{}' twice", header.name));
                }
            }
            let count: usize = headers.iter().map(|h| h.value.matches("{secret}").count()).sum();
            if count != 1 {
                problems.push("inject.headers: {secret} must appear exactly once".into());
            }
            headers.iter().map(|h| &h.value).collect()
        }
    };
    if let Some(second) = &p.second_value
        && !matches!(p.inject, Inject::Query { .. })
    {
        let tag = format!("{{{}}}", second.field);
        let count: usize = templates.iter().map(|t| t.matches(tag.as_str()).count()).sum();
        if count != 1 {
            problems.push(format!("inject: {tag} (the second value) must appear exactly once"));
        }
    }
}

/// The second value's own fields (see `schema::SecondValue`).
fn check_second_value(p: &Provider, second: &SecondValue, problems: &mut Vec<String>) {
    const TAKEN: [&str; 5] = ["api_key", "access_token", "refresh_token", "client_secret", "secret"];
    let field_ok = !second.field.is_empty()
        && second.field.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        && !TAKEN.contains(&second.field.as_str());
    if !field_ok {
        problems.push(format!(
            "second_value.field '{}' must be a lower-case name other than {}",
            second.field,
            TAKEN.join(", ")
        ));
    }
    if p.auth_type != AuthType::ApiKey {
        problems.push("second_value is for auth_type api_key".into());
    }
    if second.label.trim().is_empty() {
        problems.push("second_value.label is empty".into());
    }
    if second.env.is_empty() {
        problems.push("second_value.env is empty: name the variable tools read".into());
    }
    for name in &second.env {
        if !is_env_name(name) {
            problems.push(format!("second_value.env name '{name}' must be upper case letters, digits and '_'"));
        }
        if p.env.api_key.contains(name) {
            problems.push(format!("second_value.env name '{name}' is also the key's"));
        }
    }
    if let Some(pattern) = &second.pattern
        && let Err(e) = regex::Regex::new(pattern)
    {
        problems.push(format!("second_value.pattern does not compile: {e}"));
    }
}

fn check_env_and_key(p: &Provider, spelling: &Spelling, problems: &mut Vec<String>) {
    for name in p.env.api_key.iter().chain(&p.env.access_token).chain(&p.env.refresh_token) {
        if !is_env_name(name) {
            problems.push(format!("{} name '{name}' must be upper case letters, digits and '_'", spelling.env));
        }
    }
    if p.env_names(p.primary_field()).is_empty() {
        problems.push(format!("{}.{} is empty: name the variable tools read", spelling.env, p.primary_field()));
    }
    if p.auth_type == AuthType::ApiKey && !p.env.access_token.is_empty() {
        problems.push("an api_key provider exports api_key, not access_token".into());
    }
    if let Some(spec) = &p.api_key
        && let Some(pattern) = &spec.pattern
        && let Err(e) = regex::Regex::new(pattern)
    {
        problems.push(format!("{} does not compile: {e}", spelling.key_pattern));
    }
    if let Some(prefix) = &p.placeholder_prefix
        && (prefix.len() > 16 || !prefix.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        problems.push(format!("placeholder_prefix '{prefix}' must be at most 16 characters of [A-Za-z0-9._-]"));
    }
}

fn check_oauth(p: &Provider, oauth: &OAuthSpec, problems: &mut Vec<String>) {
    let urls = [
        ("token_url", Some(&oauth.token_url)),
        ("authorization_url", oauth.authorization_url.as_ref()),
        ("revocation_url", oauth.revocation_url.as_ref()),
        ("device_authorization_url", oauth.device_authorization_url.as_ref()),
        ("registration_endpoint", oauth.registration_endpoint.as_ref()),
        ("refresh_url", oauth.refresh_url.as_ref()),
    ];
    for (field, url) in urls {
        let Some(url) = url else { continue };
        if url.contains("{base_url}") && oauth.base_url.is_none() {
            problems.push(format!("oauth.{field} uses {{base_url}} but oauth.base_url has no default"));
            continue;
        }
        if let Err(why) = check_endpoint(&p.oauth_url(url, None)) {
            problems.push(format!("oauth.{field} '{url}': {why}"));
        }
    }
    if let Some(base) = &oauth.base_url
        && let Err(why) = check_endpoint(base)
    {
        problems.push(format!("oauth.base_url '{base}': {why}"));
    }
    if matches!(p.flow, Flow::Pkce | Flow::DcrPkce) && oauth.authorization_url.is_none() {
        problems.push(format!("flow '{}' needs oauth.authorization_url", p.flow.as_str()));
    }
    if p.flow == Flow::DeviceCode && oauth.device_authorization_url.is_none() {
        problems.push("flow 'device_code' needs oauth.device_authorization_url".into());
    }
    if oauth.scope_separator.is_empty() {
        problems.push("oauth.scope_separator is empty".into());
    }
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
