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

pub(crate) fn render(provider: &Provider, secret: &SecretString) -> Rendered {
    let value = secret.expose_secret();
    match &provider.inject {
        Inject::Header { name, value: template } => Rendered {
            headers: vec![(name.clone(), SecretString::from(template.replace("{secret}", value)))],
            query: Vec::new(),
        },
        Inject::Basic { username, password } => {
            let pair = format!("{}:{}", username.replace("{secret}", value), password.replace("{secret}", value));
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
        render(&Catalog::bundled_only().get(name).unwrap().provider, &SecretString::from(secret))
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
}
