//! The environment variable names a provider's credentials go by, for `export` and for the
//! placeholders `run` puts in the child's environment.
//!
//! Naming follows the Python authsome: the provider's env names, else `<PROVIDER>_<FIELD>`; a
//! later holder of a taken name gets `_<PROVIDER>_<CONNECTION>`, then `_2`, `_3`.

use secrecy::SecretString;

use super::Provider;

/// One variable to print.
#[derive(Debug)]
pub(crate) struct Var {
    pub(crate) name: String,
    pub(crate) value: SecretString,
}

/// `keywords-everywhere` → `KEYWORDS_EVERYWHERE`.
pub(crate) fn env_part(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect()
}

/// The names a provider's field is exported under.
pub(crate) fn names_for(provider: &Provider, field: &str) -> Vec<String> {
    let names = provider.env_names(field);
    if names.is_empty() {
        vec![format!("{}_{}", env_part(&provider.name), field.to_ascii_uppercase())]
    } else {
        names.to_vec()
    }
}

/// Assign names to (provider, connection, field, value) in order, resolving collisions.
pub(crate) fn assign_names(items: Vec<(&Provider, String, &str, SecretString)>) -> Vec<Var> {
    let mut taken = std::collections::HashSet::new();
    let mut out = Vec::new();
    for (provider, connection, field, value) in items {
        for base in names_for(provider, field) {
            let mut name = base.clone();
            if taken.contains(&name) {
                name = format!("{base}_{}_{}", env_part(&provider.name), env_part(&connection));
                let mut n = 2;
                while taken.contains(&name) {
                    name = format!("{base}_{}_{}_{n}", env_part(&provider.name), env_part(&connection));
                    n += 1;
                }
            }
            taken.insert(name.clone());
            out.push(Var { name, value: value.clone() });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Catalog;

    fn provider(name: &str) -> Provider {
        Catalog::bundled_only().get(name).unwrap().provider.clone()
    }

    #[test]
    fn collisions_and_default_names() {
        let openai = provider("openai");
        let github = provider("github");
        let vars = assign_names(vec![
            (&openai, "default".into(), "api_key", SecretString::from("a")),
            (&openai, "work".into(), "api_key", SecretString::from("b")),
            (&github, "default".into(), "access_token", SecretString::from("c")),
        ]);
        let names: Vec<&str> = vars.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(
            names,
            vec!["OPENAI_API_KEY", "OPENAI_API_KEY_OPENAI_WORK", "GITHUB_ACCESS_TOKEN", "GH_TOKEN", "GITHUB_TOKEN"]
        );
        let mut custom = openai.clone();
        custom.name = "keywords-everywhere".into();
        custom.env.api_key.clear();
        assert_eq!(names_for(&custom, "api_key"), vec!["KEYWORDS_EVERYWHERE_API_KEY"]);
    }
}
