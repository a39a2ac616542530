//! A provider's credential rendered for the wire: the headers or query parameters its `inject`
//! rule names, with the secret filled in. Shared by the library API and `run`'s proxy.

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};

use crate::providers::{Inject, Provider};

/// What to put on a request. Values are secrets.
#[derive(Debug, Default)]
pub(crate) struct Rendered {
    pub(crate) headers: Vec<(String, SecretString)>,
    pub(crate) query: Vec<(String, SecretString)>,
}

/// Render `provider`'s inject rule with the key (`{secret}`) and, for two-value credentials,
/// the second value (`{field}` as the definition names it).
pub(crate) fn render(provider: &Provider, secret: &SecretString, second: Option<&SecretString>) -> Rendered {
    let value = secret.expose_secret();
    let tag = provider.second_value.as_ref().map(|s| format!("{{{}}}", s.field));
    let fill = |template: &str| {
        let filled = template.replace("{secret}", value);
        match (&tag, second) {
            (Some(tag), Some(second)) => filled.replace(tag.as_str(), second.expose_secret()),
            _ => filled,
        }
    };
    match &provider.inject {
        Inject::Header { name, value: template } => {
            Rendered { headers: vec![(name.clone(), SecretString::from(fill(template)))], query: Vec::new() }
        }
        Inject::Headers { headers } => Rendered {
            headers: headers.iter().map(|h| (h.name.clone(), SecretString::from(fill(&h.value)))).collect(),
            query: Vec::new(),
        },
        Inject::Basic { username, password } => {
            let pair = format!("{}:{}", fill(username), fill(password));
            let encoded = base64::engine::general_purpose::STANDARD.encode(pair.as_bytes());
            Rendered {
                headers: vec![("Authorization".into(), SecretString::from(format!("Basic {encoded}")))],
                query: Vec::new(),
            }
        }
        Inject::Query { name } => Rendered { headers: Vec::new(), query: vec![(name.clone(), secret.clone())] },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Catalog;

    fn rendered(name: &str, secret: &str) -> Rendered {
        render(&Catalog::bundled_only().get(name).unwrap().provider, &SecretString::from(secret), None)
    }

    #[test]
    fn templates() {
        let r = rendered("openai", "sk-1");
        assert_eq!(r.headers[0].0, "Authorization");
        assert_eq!(r.headers[0].1.expose_secret(), "Bearer sk-1");
        let r = rendered("anthropic", "sk-ant-1");
        assert_eq!((r.headers[0].0.as_str(), r.headers[0].1.expose_secret()), ("x-api-key", "sk-ant-1"));
        // Real Basic (upstream sent `Basic <raw key>`): base64("key:").
        let r = rendered("ashby", "key");
        assert_eq!(r.headers[0].1.expose_secret(), "Basic a2V5Og==");
        let r = rendered("semrush", "k");
        assert!(r.headers.is_empty());
        assert_eq!((r.query[0].0.as_str(), r.query[0].1.expose_secret()), ("key", "k"));
    }

    /// Two-value credentials, against the vendors' documentation (not the definitions): Datadog
    /// sends both keys as headers, Twilio is Basic SID:token, Algolia sends id and key as headers.
    #[test]
    fn two_values() {
        let catalog = Catalog::bundled_only();
        let two = |name: &str, key: &str, second: &str| {
            let provider = &catalog.get(name).unwrap().provider;
            let r = render(provider, &SecretString::from(key), Some(&SecretString::from(second)));
            let mut headers: Vec<(String, String)> =
                r.headers.iter().map(|(n, v)| (n.to_ascii_lowercase(), v.expose_secret().to_string())).collect();
            headers.sort();
            headers
        };
        assert_eq!(
            two("datadog", "ddapi", "ddapp"),
            vec![("dd-api-key".into(), "ddapi".into()), ("dd-application-key".into(), "ddapp".into())]
        );
        // base64("ACsid:token")
        assert_eq!(two("twilio", "token", "ACsid"), vec![("authorization".into(), "Basic QUNzaWQ6dG9rZW4=".into())]);
        assert_eq!(
            two("algolia", "key", "APPID"),
            vec![("x-algolia-api-key".into(), "key".into()), ("x-algolia-application-id".into(), "APPID".into())]
        );
    }
}
