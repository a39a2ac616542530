//! Which hosts a custom definition may claim. A definition that shadows a bundled provider keeps
//! the bundled provider's hosts, plus the hosts beyond them only when the user confirmed them
//! with `authsome register` for the file's current bytes (the ledger, `ledger.rs`, says why).
//! The same holds for its OAuth endpoints, which receive refresh tokens and client secrets:
//! an unconfirmed file gets the bundled provider's.
//! Definitions of new providers are left alone: a credential reaches them only after the user
//! logs in to that provider by name.
//!
//! The first load after the ledger was introduced finds files that predate it; those are
//! recorded as they are, once, with a notice listing the hosts they add.

use authsome_vault::Home;

use super::ledger::{self, Ledger};
use super::schema::OAuthSpec;
use super::{Entry, Problem, ProblemKind, Provider};

/// A custom file as read: its definition and the hash of its bytes.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub(crate) entry: Entry,
    pub(crate) sha256: String,
}

/// The ledger as opened for one catalog load.
#[derive(Debug, Default)]
pub(crate) struct Opened {
    pub(crate) ledger: Ledger,
    /// Said once, when files that predate the ledger were recorded.
    pub(crate) notices: Vec<String>,
    pub(crate) problem: Option<Problem>,
}

/// The hosts of `hosts` that no pattern of `bundled` covers.
pub(crate) fn extra_hosts(hosts: &[String], bundled: &[String]) -> Vec<String> {
    hosts.iter().filter(|host| !bundled.iter().any(|pattern| covers(pattern, host))).cloned().collect()
}

/// Whether every host `host` matches is also matched by `pattern` (`*.x.com` covers `a.x.com`
/// and `*.a.x.com`, but not `x.com`: a wildcard needs one more label).
fn covers(pattern: &str, host: &str) -> bool {
    if pattern == host {
        return true;
    }
    let Some(suffix) = pattern.strip_prefix("*.") else { return false };
    let host = host.strip_prefix("*.").unwrap_or(host);
    host.len() > suffix.len() + 1 && host.ends_with(suffix) && host[..host.len() - suffix.len()].ends_with('.')
}

/// Drop the hosts a definition shadowing `bundled` adds without a confirmation that matches the
/// file's bytes, and put back the bundled OAuth settings if such a file changes where tokens
/// and client secrets are sent. The returned problem says what, why, and what to run.
pub(crate) fn restrict(file: &mut Loaded, bundled: &Provider, ledger: &Ledger) -> Option<Problem> {
    let provider = &mut file.entry.provider;
    let confirmation = ledger.confirmed(&provider.name, &file.sha256);
    let dropped: Vec<String> = extra_hosts(&provider.hosts, &bundled.hosts)
        .into_iter()
        .filter(|host| !confirmation.is_some_and(|c| c.hosts.contains(host)))
        .collect();
    let mut changes = Vec::new();
    if !dropped.is_empty() {
        provider.hosts.retain(|host| !dropped.contains(host));
        if provider.hosts.is_empty() {
            provider.hosts = bundled.hosts.clone();
        }
        changes.push(format!(
            "the hosts it adds to the bundled provider '{name}' ({}) are ignored and {name} credentials go only to {}",
            dropped.join(", "),
            provider.hosts.join(", "),
            name = provider.name,
        ));
    }
    // Where a connection's base URL may point decides where its credential goes, like hosts.
    if confirmation.is_none() && provider.base_url != bundled.base_url {
        provider.base_url = bundled.base_url.clone();
        changes.push("its base_url section differs from the bundled provider's and is replaced by it".into());
    }
    if confirmation.is_none() && routes_tokens_elsewhere(provider, bundled) {
        provider.auth_type = bundled.auth_type;
        provider.flow = bundled.flow;
        provider.oauth = bundled.oauth.clone();
        changes.push("its OAuth settings differ from the bundled provider's and are replaced by them".into());
    }
    if changes.is_empty() {
        return None;
    }
    let why = if ledger.knows(&provider.name) {
        "the file changed after `authsome register` confirmed it"
    } else {
        "the file was not added with `authsome register`"
    };
    let path = file.entry.path.clone().unwrap_or_default();
    Some(Problem {
        kind: ProblemKind::HostsDropped,
        message: format!(
            "{why}, so {}; if you wrote it, confirm it with `authsome register {}`",
            changes.join("; and "),
            path.display()
        ),
        path,
    })
}

/// Whether `provider` would send tokens, codes or client secrets anywhere `bundled` does not:
/// another auth type, or any OAuth endpoint (or `{base_url}` default) that differs.
pub(crate) fn routes_tokens_elsewhere(provider: &Provider, bundled: &Provider) -> bool {
    fn endpoints(oauth: Option<&OAuthSpec>) -> Option<[Option<&String>; 7]> {
        oauth.map(|o| {
            [
                Some(&o.token_url),
                o.authorization_url.as_ref(),
                o.revocation_url.as_ref(),
                o.device_authorization_url.as_ref(),
                o.registration_endpoint.as_ref(),
                o.refresh_url.as_ref(),
                o.base_url.as_ref(),
            ]
        })
    }
    provider.auth_type != bundled.auth_type || endpoints(provider.oauth.as_ref()) != endpoints(bundled.oauth.as_ref())
}

/// Open the ledger, creating it on first use. `bundled_hosts` gives a bundled provider's hosts
/// by name.
///
/// Files already in `providers/` when there is no ledger yet were written before authsome kept
/// one: they are recorded as confirmed (with a notice listing what they add) so that upgrading
/// changes nothing for them. An empty ledger is written too, so a file dropped later is never
/// mistaken for one of those. Homes that do not exist or belong to the Python authsome are
/// left untouched.
pub(crate) fn open(home: &Home, files: &[Loaded], bundled_hosts: &dyn Fn(&str) -> Option<Vec<String>>) -> Opened {
    let path = ledger::path(home);
    match Ledger::read(&path) {
        Ok(Some(ledger)) => Opened { ledger, ..Opened::default() },
        Err(why) => Opened {
            ledger: Ledger::default(),
            notices: Vec::new(),
            problem: Some(Problem {
                kind: ProblemKind::Ledger,
                message: format!(
                    "{why}; custom files that shadow a bundled provider get no hosts beyond the bundled ones \
                     until you confirm them again with `authsome register FILE`"
                ),
                path,
            }),
        },
        Ok(None) if !home.root().is_dir() || home.foreign_format().is_some() => Opened::default(),
        Ok(None) => record_existing(&path, home, files, bundled_hosts),
    }
}

fn record_existing(
    path: &std::path::Path,
    home: &Home,
    files: &[Loaded],
    bundled_hosts: &dyn Fn(&str) -> Option<Vec<String>>,
) -> Opened {
    let mut opened = Opened { ledger: Ledger::default(), ..Opened::default() };
    let mut lines = Vec::new();
    for file in files {
        let provider = &file.entry.provider;
        opened.ledger.confirm(&provider.name, file.sha256.clone(), provider.hosts.clone());
        let line = match bundled_hosts(&provider.name) {
            Some(bundled) => match extra_hosts(&provider.hosts, &bundled) {
                extra if extra.is_empty() => {
                    format!("  {}.json: no hosts beyond the bundled provider's", provider.name)
                }
                extra => format!("  {}.json: adds {} to the bundled provider's hosts", provider.name, extra.join(", ")),
            },
            None => format!("  {}.json: new provider, hosts {}", provider.name, provider.hosts.join(", ")),
        };
        lines.push(line);
    }
    if let Err(e) = opened.ledger.write(path) {
        // Nothing to record: a read-only home simply stays without a ledger.
        if !files.is_empty() {
            opened.problem = Some(Problem {
                kind: ProblemKind::Ledger,
                message: format!("cannot record the custom provider files already present: {e}"),
                path: path.to_path_buf(),
            });
        }
        return opened;
    }
    if !lines.is_empty() {
        opened.notices.push(format!(
            "authsome now records which custom provider files you confirmed ({}). These files in {} predate it and \
             were recorded as they are:\n{}\nFrom now on, hosts that a file adds to a bundled provider count only once \
             you confirm the file with `authsome register FILE`.",
            path.display(),
            home.providers_dir().display(),
            lines.join("\n")
        ));
    }
    opened
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    use crate::providers::{Catalog, Source};

    /// A home whose `providers/openai.json` claims `hosts`; `ledger` is written as is if given.
    fn home_with_openai(hosts: &[&str], ledger: Option<&str>) -> (tempfile::TempDir, Home) {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        std::fs::create_dir_all(home.providers_dir()).unwrap();
        if let Some(ledger) = ledger {
            std::fs::write(ledger::path(&home), ledger).unwrap();
        }
        let mut openai = Catalog::bundled_only().get("openai").unwrap().provider.clone();
        openai.hosts = strings(hosts);
        std::fs::write(home.providers_dir().join("openai.json"), serde_json::to_string(&openai).unwrap()).unwrap();
        (dir, home)
    }

    fn openai_hosts(catalog: &Catalog) -> Vec<String> {
        let entry = catalog.get("openai").unwrap();
        assert_eq!(entry.source, Source::Custom);
        entry.provider.hosts.clone()
    }

    #[test]
    fn unconfirmed_extra_hosts_are_dropped_and_confirmed_ones_kept() {
        let empty = r#"{"v": 1, "files": {}}"#;
        let (_dir, home) = home_with_openai(&["api.openai.com", "*.evil.com"], Some(empty));
        let catalog = Catalog::load(&home);
        assert_eq!(openai_hosts(&catalog), ["api.openai.com"]);
        assert_eq!(catalog.problems.len(), 1);
        assert_eq!(catalog.problems[0].kind, ProblemKind::HostsDropped);
        assert!(catalog.entries().iter().all(|e| !e.provider.hosts.contains(&"*.evil.com".to_string())));

        let bytes = std::fs::read(home.providers_dir().join("openai.json")).unwrap();
        let mut ledger = Ledger::default();
        ledger.confirm("openai", ledger::sha256_hex(&bytes), strings(&["api.openai.com", "*.evil.com"]));
        ledger.write(&ledger::path(&home)).unwrap();
        let catalog = Catalog::load(&home);
        assert_eq!(openai_hosts(&catalog), ["api.openai.com", "*.evil.com"]);
        assert!(catalog.problems.is_empty(), "{:?}", catalog.problems);
    }

    #[test]
    fn a_definition_with_only_foreign_hosts_falls_back_to_the_bundled_ones() {
        let (_dir, home) = home_with_openai(&["*.evil.com"], Some(r#"{"v": 1, "files": {}}"#));
        let catalog = Catalog::load(&home);
        assert_eq!(openai_hosts(&catalog), Catalog::bundled_only().get("openai").unwrap().provider.hosts);
    }

    /// Damaging the ledger must not start the one-time recording over (that would confirm
    /// whatever sits in `providers/` at the time).
    #[test]
    fn a_damaged_ledger_confirms_nothing_and_stays_as_it_is() {
        let (_dir, home) = home_with_openai(&["api.openai.com", "*.evil.com"], Some("garbage"));
        let catalog = Catalog::load(&home);
        assert_eq!(openai_hosts(&catalog), ["api.openai.com"]);
        assert!(catalog.problems.iter().any(|p| p.kind == ProblemKind::Ledger && p.message.contains("damaged")));
        assert!(catalog.notices.is_empty());
        assert_eq!(std::fs::read_to_string(ledger::path(&home)).unwrap(), "garbage");
    }

    #[test]
    fn existing_files_are_recorded_once() {
        let (_dir, home) = home_with_openai(&["api.openai.com", "*.example.com"], None);
        let first = Catalog::load(&home);
        assert_eq!(openai_hosts(&first), ["api.openai.com", "*.example.com"]);
        assert_eq!(first.notices.len(), 1);
        assert!(first.notices[0].contains("openai.json: adds *.example.com"), "{}", first.notices[0]);
        let second = Catalog::load(&home);
        assert!(second.notices.is_empty());
        assert_eq!(openai_hosts(&second), ["api.openai.com", "*.example.com"]);
    }

    /// A dropped-in file must not let a connection's stored base URL point anywhere new.
    #[test]
    fn an_unconfirmed_base_url_section_is_replaced_by_the_bundled_one() {
        let (_dir, home) = home_with_openai(&["api.openai.com"], Some(r#"{"v": 1, "files": {}}"#));
        let path = home.providers_dir().join("openai.json");
        let mut doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        doc["base_url"] = serde_json::json!({"hosts": ["{host}"], "example": "https://x.example.com"});
        std::fs::write(&path, doc.to_string()).unwrap();
        let catalog = Catalog::load(&home);
        assert_eq!(catalog.get("openai").unwrap().provider.base_url, None);
        assert!(catalog.problems.iter().any(|p| p.message.contains("base_url section")), "{:?}", catalog.problems);
    }

    #[test]
    fn python_and_missing_homes_get_no_ledger() {
        let dir = tempfile::tempdir().unwrap();
        let missing = Home::at(dir.path().join("absent"));
        Catalog::load(&missing);
        assert!(!dir.path().join("absent").exists());
        std::fs::write(dir.path().join("version"), "2\n").unwrap();
        let python = Home::at(dir.path());
        assert!(python.foreign_format().is_some());
        Catalog::load(&python);
        assert!(!ledger::path(&python).exists());
    }

    /// A dropped-in `github.json` with the bundled hosts but its own token endpoint would
    /// receive refresh tokens and the client secret: unconfirmed, it gets the bundled OAuth.
    #[test]
    fn unconfirmed_oauth_endpoints_are_replaced_by_the_bundled_ones() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        std::fs::create_dir_all(home.providers_dir()).unwrap();
        std::fs::write(ledger::path(&home), r#"{"v": 1, "files": {}}"#).unwrap();
        let bundled = Catalog::bundled_only().get("github").unwrap().provider.clone();
        let mut github = bundled.clone();
        let oauth = github.oauth.as_mut().unwrap();
        oauth.token_url = "https://evil.example.com/token".into();
        oauth.scopes.push("extra".into());
        let file = home.providers_dir().join("github.json");
        std::fs::write(&file, serde_json::to_string(&github).unwrap()).unwrap();

        let catalog = Catalog::load(&home);
        let loaded = &catalog.get("github").unwrap().provider;
        assert_eq!(loaded.oauth, bundled.oauth);
        assert!(catalog.problems[0].message.contains("OAuth settings"), "{}", catalog.problems[0].message);

        let mut ledger = Ledger::default();
        ledger.confirm("github", ledger::sha256_hex(&std::fs::read(&file).unwrap()), bundled.hosts.clone());
        ledger.write(&ledger::path(&home)).unwrap();
        let catalog = Catalog::load(&home);
        assert_eq!(catalog.get("github").unwrap().provider.oauth, github.oauth, "a confirmed file is used as written");
        assert!(catalog.problems.is_empty());
    }

    #[test]
    fn extra_hosts_respect_wildcard_label_boundaries() {
        let bundled = strings(&["*.googleapis.com", "api.openai.com"]);
        let hosts = strings(&[
            "api.openai.com",
            "a.googleapis.com",
            "*.x.googleapis.com",
            "*.googleapis.com",
            "googleapis.com",
            "evilgoogleapis.com",
            "*.evilgoogleapis.com",
            "api.openai.com.evil.com",
            "openai.com",
        ]);
        assert_eq!(
            extra_hosts(&hosts, &bundled),
            strings(&[
                "googleapis.com",
                "evilgoogleapis.com",
                "*.evilgoogleapis.com",
                "api.openai.com.evil.com",
                "openai.com"
            ])
        );
    }
}
