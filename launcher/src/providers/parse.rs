//! Reading one provider document, in our schema or the Python authsome's, into a validated
//! `Provider`. Messages speak the format the user wrote: a converted upstream file hears about
//! `host_url`, and nobody hears serde's type names.

use serde_json::Value;

use super::validate::{self, Spelling};
use super::{Provider, legacy};

/// Parse and validate one document; the flag says it was converted from an upstream file.
pub(crate) fn parse_definition(text: &str) -> Result<(Provider, bool), String> {
    let doc: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    if !doc.is_object() {
        return Err(format!("expected a JSON object, found {}", json_kind(&doc)));
    }
    let legacy = legacy::is_legacy(&doc);
    let (provider, spelling) = if legacy {
        let spelling = legacy::spelling(&doc);
        (legacy::convert(&doc)?, spelling)
    } else {
        let provider = serde_json::from_value(doc)
            .map_err(|e| format!("does not match the provider schema: {}", plain_schema_error(&e.to_string())))?;
        (provider, Spelling::OURS)
    };
    validate::validate_as(&provider, &spelling).map_err(|e| e.to_string())?;
    Ok((provider, legacy))
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// serde's wording with our Rust type names swapped for what the file should hold.
fn plain_schema_error(message: &str) -> String {
    let message = message
        .replace("expected internally tagged enum Inject", "expected an object with a \"type\"")
        .replace("invalid type: map", "invalid type: object")
        .replace("invalid type: sequence", "invalid type: list");
    // serde also reads a struct from a list, and then complains about the list's length.
    let as_list = regex::Regex::new(r"invalid length \d+, expected struct [A-Za-z]+ with \d+ elements?")
        .expect("a valid pattern");
    let message = as_list.replace_all(&message, "invalid type: list, expected an object");
    let structs = regex::Regex::new(r"expected struct [A-Za-z]+").expect("a valid pattern");
    let message = structs.replace_all(&message, "expected an object");
    let missing = regex::Regex::new(r"missing field `([a-z_]+)`").expect("a valid pattern");
    missing.replace_all(&message, "'$1' is missing").into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> String {
        parse_definition(text).unwrap_err()
    }

    #[test]
    fn a_document_that_is_not_an_object_says_so() {
        assert_eq!(error("[]"), "expected a JSON object, found a list");
        assert_eq!(error("\"openai\""), "expected a JSON object, found a string");
        assert!(error("{ nope").starts_with("not valid JSON"));
    }

    /// A Python authsome file is told about its own fields.
    #[test]
    fn upstream_files_hear_about_their_own_fields() {
        let missing =
            error(r#"{"schema_version": 1, "name": "x", "auth_type": "api_key", "api_key": {"header_name": "X-Key"}}"#);
        assert!(missing.contains("'host_url' (or 'api_url') is missing"), "{missing}");
        assert!(!missing.contains("hosts"), "{missing}");
        let loopback = error(r#"{"name": "x", "host_url": "localhost"}"#);
        assert!(loopback.contains("host_url 'localhost': loopback"), "{loopback}");
        let listed = error(r#"{"name": "x", "api_url": ["api.x.com", "localhost"]}"#);
        assert!(listed.contains("api_url 'localhost'"), "{listed}");
        let header = error(r#"{"name": "x", "host_url": "api.x.com", "api_key": {"header_name": "X Key"}}"#);
        assert!(header.contains("api_key.header_name 'X Key' is not a valid header name"), "{header}");
        let pattern = error(r#"{"name": "x", "host_url": "api.x.com", "api_key": {"key_pattern": "("}}"#);
        assert!(pattern.contains("api_key.key_pattern does not compile"), "{pattern}");
        let docs = error(r#"{"name": "x", "host_url": "api.x.com", "docs": "http://x.com"}"#);
        assert!(docs.contains("docs 'http://x.com' must be https"), "{docs}");
        let env = error(r#"{"name": "x", "host_url": "api.x.com", "export": {"env": {"api_key": "x-key"}}}"#);
        assert!(env.contains("export name 'x-key'"), "{env}");
        assert_eq!(error(r#"{"name": "x", "host_url": 5}"#), "'host_url' must be a string");
        assert_eq!(error(r#"{"name": 5, "host_url": "api.x.com"}"#), "'name' must be a string");
    }

    #[test]
    fn our_format_errors_name_no_rust_types() {
        let base =
            r#""schema_version": 1, "name": "x", "display_name": "X", "auth_type": "api_key", "flow": "api_key""#;
        let inject = error(&format!(r#"{{{base}, "hosts": ["api.x.com"], "inject": "Bearer"}}"#));
        assert!(inject.contains("expected an object with a \"type\""), "{inject}");
        let oauth = error(&format!(
            r#"{{{base}, "hosts": ["api.x.com"], "inject": {{"type": "query", "name": "k"}}, "oauth": []}}"#
        ));
        assert!(oauth.contains("invalid type: list, expected an object"), "{oauth}");
        let missing = error(&format!(r#"{{{base}, "hosts": ["api.x.com"]}}"#));
        assert!(missing.contains("'inject' is missing"), "{missing}");
        for message in [inject, oauth, missing] {
            assert!(!message.contains("struct") && !message.contains("enum"), "{message}");
        }
        let neither = error(r#"{"schema_version": 1, "name": "x", "display_name": "X"}"#);
        assert!(neither.contains("\"host_url\"") && neither.contains("\"hosts\""), "{neither}");
    }

    #[test]
    fn an_anchored_exact_host_regex_becomes_that_host() {
        let (provider, legacy) = parse_definition(r#"{"name": "x", "host_url": "regex:^api\\.x\\.com$"}"#).unwrap();
        assert!(legacy);
        assert_eq!(provider.hosts, vec!["api.x.com"]);
    }
}
