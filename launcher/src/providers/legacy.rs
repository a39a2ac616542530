//! Provider files written for the Python authsome (0.2.4, and the 0.3+ deltas: `api_url`,
//! `docs_url`, `api_key.env_var`, `authorization_params`, `authorization_method`,
//! `registration`), converted to our schema so users' custom providers keep working.
//!
//! Upstream's `regex:` hosts, which it matched against the whole host, are converted when they
//! name one host (`^api\.x\.com$`) or a domain suffix (`.*\.linear\.app`); a pattern such as
//! `.*googleapis.*` is refused, because it would also match `googleapis.evil.com`. Errors name
//! the fields as the Python authsome's files spell them.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::schema::{
    ApiKeySpec, AuthType, DeviceTokenRequest, EnvNames, Flow, Inject, OAuthSpec, Provider, SCHEMA_VERSION,
    TokenAuthMethod,
};
use super::validate::Spelling;

/// Keys only our schema has: a document with none of them is read as an upstream file.
const OUR_KEYS: [&str; 6] = ["hosts", "inject", "env", "path_prefix", "placeholder_prefix", "default_headers"];
/// Keys only upstream files have.
const UPSTREAM_KEYS: [&str; 6] = ["host_url", "api_url", "export", "docs", "metadata", "registration"];

/// Keys only upstream's `api_key` object has (ours has `pattern` and `hint`).
const UPSTREAM_API_KEY_KEYS: [&str; 5] = ["header_name", "header_prefix", "key_pattern", "key_pattern_hint", "env_var"];

/// Whether a document without our keys shows a sign of the upstream format, so that an error
/// can speak that format alone.
fn looks_upstream(obj: &Map<String, Value>) -> bool {
    UPSTREAM_KEYS.iter().any(|key| obj.contains_key(*key))
        || obj
            .get("api_key")
            .and_then(Value::as_object)
            .is_some_and(|a| UPSTREAM_API_KEY_KEYS.iter().any(|key| a.contains_key(*key)))
}

/// Whether a JSON object looks like an upstream provider file rather than ours.
pub(crate) fn is_legacy(doc: &Value) -> bool {
    doc.as_object().is_some_and(|obj| !OUR_KEYS.iter().any(|key| obj.contains_key(*key)))
}

/// How an upstream file names the fields validation may complain about.
pub(crate) fn spelling(doc: &Value) -> Spelling {
    let has = |key: &str| doc.get(key).is_some();
    Spelling {
        hosts: if !has("host_url") && has("api_url") { "api_url" } else { "host_url" },
        header_name: "api_key.header_name",
        header_value: "api_key.header_prefix",
        env: "export",
        key_pattern: "api_key.key_pattern",
        docs_url: if has("docs_url") { "docs_url" } else { "docs" },
    }
}

/// Convert an upstream provider document. Errors name the field and what to write instead.
pub(crate) fn convert(doc: &Value) -> Result<Provider, String> {
    let obj = doc.as_object().ok_or("expected a JSON object")?;
    let name = string(obj, "name")?.ok_or("'name' is missing")?.to_string();
    let display_name = string(obj, "display_name")?.unwrap_or(&name).to_string();
    let auth_type = match string(obj, "auth_type")?.unwrap_or("api_key") {
        "api_key" => AuthType::ApiKey,
        "oauth2" => AuthType::OAuth2,
        other => return Err(format!("auth_type '{other}' is not supported (api_key or oauth2)")),
    };
    let flow = match (auth_type, string(obj, "flow")?) {
        (AuthType::ApiKey, _) => Flow::ApiKey,
        (AuthType::OAuth2, Some("device_code")) => Flow::DeviceCode,
        (AuthType::OAuth2, Some("dcr_pkce")) => Flow::DcrPkce,
        (AuthType::OAuth2, Some("pkce") | None) => Flow::Pkce,
        (AuthType::OAuth2, Some(other)) => return Err(format!("flow '{other}' is not supported")),
    };
    let (hosts, path_prefix) = convert_hosts(obj)?;
    let api_key_obj = match obj.get("api_key") {
        None | Some(Value::Null) => None,
        Some(Value::Object(a)) => Some(a),
        Some(_) => return Err("'api_key' must be an object".into()),
    };
    let inject = convert_inject(auth_type, api_key_obj)?;
    let api_key = match api_key_obj {
        Some(a) => {
            let pattern = string(a, "key_pattern")?.map(str::to_string);
            let hint = string(a, "key_pattern_hint")?.map(str::to_string);
            (pattern.is_some() || hint.is_some()).then_some(ApiKeySpec { pattern, hint })
        }
        None => None,
    };
    let env = convert_env(obj, &name, auth_type);
    let oauth = match (auth_type, obj.get("oauth")) {
        (AuthType::OAuth2, Some(Value::Object(o))) => Some(convert_oauth(o, obj)?),
        (AuthType::OAuth2, None | Some(Value::Null)) => return Err("'oauth' is required for an oauth2 provider".into()),
        (AuthType::OAuth2, Some(_)) => return Err("'oauth' must be an object".into()),
        (AuthType::ApiKey, _) => None,
    };
    let description = obj
        .get("metadata")
        .and_then(|m| m.get("description"))
        .and_then(Value::as_str)
        .or_else(|| str_field(obj, "description"))
        .map(str::to_string);
    let docs_url = match string(obj, "docs_url")? {
        Some(url) => Some(url),
        None => string(obj, "docs")?,
    }
    .map(str::to_string);

    Ok(Provider {
        schema_version: SCHEMA_VERSION,
        name,
        display_name,
        description,
        docs_url,
        auth_type,
        flow,
        hosts,
        path_prefix,
        inject,
        default_headers: BTreeMap::new(),
        env,
        api_key,
        placeholder_prefix: None,
        oauth,
        second_value: None,
        base_url: None,
    })
}

/// 0.2.4 `host_url` (one value) and 0.3+ `api_url` (a string or a list) → hosts and the one
/// path prefix they share.
fn convert_hosts(obj: &Map<String, Value>) -> Result<(Vec<String>, Option<String>), String> {
    let mut raw_hosts: Vec<&str> = Vec::new();
    for field in ["host_url", "api_url"] {
        match obj.get(field) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => raw_hosts.push(s),
            Some(Value::Array(items)) if field == "api_url" => {
                for item in items {
                    raw_hosts.push(item.as_str().ok_or("'api_url' must hold strings")?);
                }
            }
            Some(_) if field == "api_url" => return Err("'api_url' must be a string or a list of strings".into()),
            Some(_) => return Err("'host_url' must be a string".into()),
        }
    }
    if raw_hosts.is_empty() {
        return Err(if !looks_upstream(obj) {
            "no API host: write \"host_url\" (the Python authsome's format) or \"hosts\" and \"inject\" \
             (see `authsome inspect openai`)"
                .into()
        } else {
            "'host_url' (or 'api_url') is missing: authsome needs the API host to inject credentials".into()
        });
    }
    let mut hosts = Vec::new();
    let mut prefixes = Vec::new();
    for raw in raw_hosts {
        let (host, prefix) = convert_host(raw)?;
        if !hosts.contains(&host) {
            hosts.push(host);
        }
        prefixes.push(prefix);
    }
    prefixes.dedup();
    let path_prefix = match prefixes.as_slice() {
        [single] => single.clone(),
        _ if prefixes.iter().all(Option::is_none) => None,
        _ => return Err("the API URLs carry different path prefixes; split them into separate providers".into()),
    };
    Ok((hosts, path_prefix))
}

/// OAuth: a bearer token. API keys: `header_name: header_prefix key`, where only a missing
/// prefix means `Bearer` (upstream bug 5: an explicit null means "no prefix").
fn convert_inject(auth_type: AuthType, api_key: Option<&Map<String, Value>>) -> Result<Inject, String> {
    if auth_type == AuthType::OAuth2 {
        return Ok(Inject::Header { name: "Authorization".into(), value: "Bearer {secret}".into() });
    }
    let header = match api_key {
        Some(a) => string(a, "header_name").map_err(|e| format!("api_key.{e}"))?,
        None => None,
    }
    .unwrap_or("Authorization");
    let prefix = match api_key.and_then(|a| a.get("header_prefix")) {
        None => Some("Bearer".to_string()),
        Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => Some(s.trim().to_string()),
        Some(_) => return Err("api_key.header_prefix must be a string or null".into()),
    };
    if header.eq_ignore_ascii_case("authorization")
        && prefix.as_deref().is_some_and(|p| p.eq_ignore_ascii_case("basic"))
    {
        // Upstream sent `Basic <raw key>`; real Basic wants base64("user:pass"). Assume the
        // key is the user name with an empty password (Ashby's and most APIs' convention).
        return Ok(Inject::Basic { username: "{secret}".into(), password: String::new() });
    }
    let value = match prefix {
        Some(prefix) => format!("{prefix} {{secret}}"),
        None => "{secret}".into(),
    };
    Ok(Inject::Header { name: header.to_string(), value })
}

/// `host`, `host/path`, `https://host/path` or a `regex:` naming one host or an anchored
/// suffix → (pattern, prefix).
fn convert_host(raw: &str) -> Result<(String, Option<String>), String> {
    let raw = raw.trim();
    if let Some(pattern) = raw.strip_prefix("regex:") {
        return regex_to_host(pattern).map(|host| (host, None)).ok_or_else(|| {
            format!(
                "host pattern 'regex:{pattern}' names neither one host (regex:^api\\.example\\.com$) nor an \
                 anchored domain suffix (regex:.*\\.example\\.com); an unanchored pattern would also match \
                 look-alike domains"
            )
        });
    }
    if raw.starts_with("http://") {
        return Err(format!("host '{raw}' must be https: credentials are only ever sent over TLS"));
    }
    let without_scheme = raw.strip_prefix("https://").unwrap_or(raw);
    let (host, path) = match without_scheme.find('/') {
        Some(i) => (&without_scheme[..i], &without_scheme[i..]),
        None => (without_scheme, ""),
    };
    let host = host.split(':').next().unwrap_or(host).to_ascii_lowercase();
    let path = path.split(['?', '#']).next().unwrap_or("").trim_end_matches('/');
    Ok((host, (!path.is_empty()).then(|| path.to_string())))
}

/// `^api\.x\.com$` or `api\.x\.com` → `api.x.com`; `.*\.linear\.app`, `^(.*\.)?linear\.app$`,
/// `([a-z0-9-]+\.)*linear\.app` → `*.linear.app`. Anything else → `None`.
fn regex_to_host(pattern: &str) -> Option<String> {
    let p = pattern.strip_prefix('^').unwrap_or(pattern);
    let p = p.strip_suffix('$').unwrap_or(p);
    let lead = ["(.*\\.)?", ".*\\.", "(.+\\.)?", ".+\\.", "([a-z0-9-]+\\.)*", "([a-z0-9-]+\\.)+"]
        .iter()
        .find_map(|lead| p.strip_prefix(lead));
    // Upstream matched a `regex:` route against the whole host, so `api\.x\.com` means the
    // same host with or without `^` and `$`.
    let (rest, wildcard) = match lead {
        Some(rest) => (rest, true),
        None => (p, false),
    };
    let domain = unescape_domain(rest)?;
    if !domain.contains('.') || domain.starts_with('.') || domain.ends_with('.') {
        return None;
    }
    Some(if wildcard { format!("*.{domain}") } else { domain })
}

/// `linear\.app` → `linear.app`; `None` for anything but escaped dots, letters, digits and `-`.
fn unescape_domain(escaped: &str) -> Option<String> {
    let mut domain = String::new();
    let mut chars = escaped.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next()? {
                '.' => domain.push('.'),
                '-' => domain.push('-'),
                _ => return None,
            },
            c if c.is_ascii_alphanumeric() || c == '-' => domain.push(c.to_ascii_lowercase()),
            _ => return None,
        }
    }
    Some(domain)
}

fn convert_env(obj: &Map<String, Value>, name: &str, auth_type: AuthType) -> EnvNames {
    let mut env = EnvNames::default();
    let mut push = |field: &str, var: &str| {
        let list = match field {
            "api_key" | "API_KEY" | "API_TOKEN" => &mut env.api_key,
            "access_token" | "ACCESS_TOKEN" => &mut env.access_token,
            "refresh_token" | "REFRESH_TOKEN" => &mut env.refresh_token,
            _ => return,
        };
        if !list.iter().any(|v| v == var) {
            list.push(var.to_string());
        }
    };
    if let Some(map) = obj.get("export").and_then(|e| e.get("env")).and_then(Value::as_object) {
        for (field, var) in map {
            if let Some(var) = var.as_str() {
                push(field, var);
            }
        }
    } else if let Some(map) = obj.get("export").and_then(Value::as_object) {
        // 0.3+ `{"ENV_NAME": "API_TOKEN" | "ACCESS_TOKEN"}`.
        for (var, field) in map {
            if let Some(field) = field.as_str() {
                push(field, var);
            }
        }
    }
    if let Some(var) = obj.get("api_key").and_then(|a| a.get("env_var")).and_then(Value::as_str) {
        push("api_key", var);
    }
    let upper: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
    match auth_type {
        AuthType::ApiKey if env.api_key.is_empty() => env.api_key.push(format!("{upper}_API_KEY")),
        AuthType::OAuth2 => {
            if env.access_token.is_empty() {
                env.access_token.push(format!("{upper}_ACCESS_TOKEN"));
            }
            if env.refresh_token.is_empty() {
                env.refresh_token.push(format!("{upper}_REFRESH_TOKEN"));
            }
        }
        AuthType::ApiKey => {}
    }
    env
}

fn convert_oauth(o: &Map<String, Value>, root: &Map<String, Value>) -> Result<OAuthSpec, String> {
    let string = |k: &str| str_field(o, k).map(str::to_string);
    let token_url = string("token_url").ok_or("oauth.token_url is missing")?;
    let scopes = match o.get("scopes") {
        Some(Value::Array(items)) => items.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        Some(Value::String(s)) => s.split([',', ' ']).filter(|s| !s.is_empty()).map(str::to_string).collect(),
        _ => Vec::new(),
    };
    let authorization_params = o
        .get("authorization_params")
        .and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string()))).collect())
        .unwrap_or_default();
    let token_auth_method = match str_field(o, "authorization_method") {
        Some("basic") => TokenAuthMethod::ClientSecretBasic,
        _ => TokenAuthMethod::ClientSecretPost,
    };
    let registration_endpoint = string("registration_endpoint").or_else(|| {
        root.get("registration")
            .and_then(|r| r.get("registration_endpoint"))
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    Ok(OAuthSpec {
        authorization_url: string("authorization_url"),
        token_url,
        revocation_url: string("revocation_url"),
        device_authorization_url: string("device_authorization_url"),
        registration_endpoint,
        refresh_url: None,
        scopes,
        scope_separator: " ".into(),
        authorization_params,
        token_auth_method,
        pkce: true,
        device_token_request: match str_field(o, "device_token_request") {
            Some("json") => DeviceTokenRequest::Json,
            _ => DeviceTokenRequest::Form,
        },
        base_url: string("base_url"),
    })
}

fn str_field<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    obj.get(key).and_then(Value::as_str)
}

/// A field that must be a string when present (`null` counts as absent).
fn string<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("'{key}' must be a string")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn api_key_provider_with_null_prefix_keeps_no_prefix() {
        let doc = json!({
            "schema_version": 1, "name": "lab", "display_name": "Lab API", "auth_type": "api_key", "flow": "api_key",
            "host_url": "https://api.lab.example.com/v2",
            "api_key": {"header_name": "X-Lab-Key", "header_prefix": null, "key_pattern": "^LABKEY-.+$", "key_pattern_hint": "starts with LABKEY-"},
            "export": {"env": {"api_key": "LAB_API_KEY"}},
            "docs": "https://lab.example.com/docs"
        });
        assert!(is_legacy(&doc));
        let p = convert(&doc).unwrap();
        assert_eq!(p.hosts, vec!["api.lab.example.com"]);
        assert_eq!(p.path_prefix.as_deref(), Some("/v2"));
        assert_eq!(p.inject, Inject::Header { name: "X-Lab-Key".into(), value: "{secret}".into() });
        assert_eq!(p.env.api_key, vec!["LAB_API_KEY"]);
        assert_eq!(p.api_key.unwrap().pattern.as_deref(), Some("^LABKEY-.+$"));
        assert_eq!(p.docs_url.as_deref(), Some("https://lab.example.com/docs"));
    }

    #[test]
    fn missing_prefix_means_bearer_and_basic_is_real_basic() {
        let p = convert(&json!({"name": "x", "auth_type": "api_key", "host_url": "api.x.com"})).unwrap();
        assert_eq!(p.inject, Inject::Header { name: "Authorization".into(), value: "Bearer {secret}".into() });
        assert_eq!(p.env.api_key, vec!["X_API_KEY"]);
        let p =
            convert(&json!({"name": "ashby", "host_url": "api.ashbyhq.com", "api_key": {"header_prefix": "Basic"}}))
                .unwrap();
        assert_eq!(p.inject, Inject::Basic { username: "{secret}".into(), password: String::new() });
    }

    #[test]
    fn oauth_provider() {
        let doc = json!({
            "name": "laboauth", "display_name": "Lab OAuth", "auth_type": "oauth2", "flow": "pkce",
            "api_url": ["api.lab.example.com", "regex:.*\\.labusercontent\\.com$"],
            "oauth": {"authorization_url": "https://lab.example.com/authorize", "token_url": "https://lab.example.com/token",
                      "scopes": ["read", "write"], "authorization_params": {"prompt": "consent"}, "authorization_method": "basic",
                      "device_token_request": "json"},
            "registration": {"registration_endpoint": "https://lab.example.com/register"},
            "export": {"LABO_TOKEN": "ACCESS_TOKEN"}
        });
        let p = convert(&doc).unwrap();
        assert_eq!(p.hosts, vec!["api.lab.example.com", "*.labusercontent.com"]);
        let o = p.oauth.unwrap();
        assert_eq!(o.scopes, vec!["read", "write"]);
        assert_eq!(o.token_auth_method, TokenAuthMethod::ClientSecretBasic);
        assert_eq!(o.device_token_request, DeviceTokenRequest::Json);
        assert_eq!(o.registration_endpoint.as_deref(), Some("https://lab.example.com/register"));
        assert_eq!(p.env.access_token, vec!["LABO_TOKEN"]);
        assert_eq!(p.env.refresh_token, vec!["LABOAUTH_REFRESH_TOKEN"]);
    }

    #[test]
    fn regex_hosts() {
        for (re, want) in [
            (".*\\.linear\\.app", Some("*.linear.app")),
            ("^(.*\\.)?example\\.com$", Some("*.example.com")),
            (".*googleapis.*", None),
            (".*\\.googleapis\\..*", None),
            // Upstream matched the whole host: anchors or not, these name one host.
            ("^api\\.x\\.com$", Some("api.x.com")),
            ("api\\.example\\.com", Some("api.example.com")),
            ("^API\\.X\\.com$", Some("api.x.com")),
            ("^api.x\\.com$", None),
            ("^api\\.x\\.com|evil\\.com$", None),
            ("^com$", None),
            ("^(api|www)\\.x\\.com$", None),
        ] {
            assert_eq!(regex_to_host(re).as_deref(), want, "{re}");
        }
        assert!(convert(&json!({"name": "g", "host_url": "regex:.*googleapis.*"})).unwrap_err().contains("anchored"));
    }
}
