//! Providers: the schema, the bundled catalog embedded in the binary, and custom definitions in
//! `AUTHSOME_HOME/providers/*.json` (which shadow bundled ones of the same name, with only the
//! extra hosts the user confirmed: see `trust.rs`).

pub(crate) mod base_url;
pub(crate) mod env_names;
pub(crate) mod ledger;
pub(crate) mod legacy;
mod parse;
pub(crate) mod schema;
pub(crate) mod trust;
pub(crate) mod validate;

use std::cell::OnceCell;
use std::path::{Path, PathBuf};

use authsome_vault::Home;

use crate::error::{CliError, Kind};
pub(crate) use parse::parse_definition;
pub(crate) use schema::{AuthType, Flow, Inject, Provider};

mod bundled {
    include!(concat!(env!("OUT_DIR"), "/bundled_providers.rs"));
}

/// Where a definition comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    Bundled,
    Custom,
}

impl Source {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Source::Bundled => "bundled",
            Source::Custom => "custom",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) provider: Provider,
    pub(crate) source: Source,
    /// The file of a custom provider.
    pub(crate) path: Option<PathBuf>,
}

/// Something wrong with the custom providers (reported, never fatal for other commands).
#[derive(Debug, Clone)]
pub(crate) struct Problem {
    pub(crate) kind: ProblemKind,
    pub(crate) path: PathBuf,
    pub(crate) message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProblemKind {
    /// The file could not be used at all.
    Skipped,
    /// The definition is used without the hosts it adds to a bundled provider.
    HostsDropped,
    /// The ledger of confirmed files (`path`) could not be read or written.
    Ledger,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = self.path.display();
        match self.kind {
            ProblemKind::Skipped => write!(f, "skipping custom provider {path}: {}", self.message),
            ProblemKind::HostsDropped => write!(f, "custom provider {path}: {}", self.message),
            ProblemKind::Ledger => write!(f, "{path}: {}", self.message),
        }
    }
}

/// Bundled providers (sorted by name) followed by custom ones (sorted); a custom provider
/// replaces a bundled one of the same name.
///
/// Bundled definitions are parsed on demand: `get` parses the one provider a command names,
/// `entries` parses all of them once (list, export of everything, run).
#[derive(Debug, Clone, Default)]
pub(crate) struct Catalog {
    custom: Vec<Entry>,
    /// One slot per bundled definition, in `bundled::BUNDLED` order.
    bundled: Vec<OnceCell<Option<Entry>>>,
    all: OnceCell<Vec<Entry>>,
    pub(crate) problems: Vec<Problem>,
    /// One-time information for the user (files recorded when the ledger was created).
    pub(crate) notices: Vec<String>,
}

impl Catalog {
    pub(crate) fn load(home: &Home) -> Self {
        let mut catalog = Self::bundled_only();
        let (mut files, mut problems) = load_custom(&home.providers_dir());
        let bundled_hosts = |name: &str| catalog.bundled(name).map(|e| e.provider.hosts.clone());
        let mut opened = trust::open(home, &files, &bundled_hosts);
        let ledger_usable = opened.problem.is_none();
        problems.extend(opened.problem.take());
        let mut shadowing = Vec::new();
        for file in &mut files {
            if let Some(bundled) = catalog.bundled(&file.entry.provider.name) {
                problems.extend(trust::restrict(file, &bundled.provider, &opened.ledger));
                shadowing.push(file.entry.clone());
            }
        }
        // Only beside a ledger authsome keeps: never written into a home of the Python authsome.
        if ledger_usable && ledger::path(home).is_file() {
            // Files just recorded were listed, with what they add to the bundled provider, in
            // the recording notice: they count as told.
            let recorded = !opened.notices.is_empty();
            let told = tell_shadowing(home, &mut opened.ledger, &shadowing);
            opened.notices.extend(told.filter(|_| !recorded));
        }
        catalog.custom = files.into_iter().map(|file| file.entry).collect();
        catalog.problems = problems;
        catalog.notices = opened.notices;
        catalog
    }

    /// The embedded catalog alone.
    pub(crate) fn bundled_only() -> Self {
        Self { bundled: bundled::BUNDLED.iter().map(|_| OnceCell::new()).collect(), ..Self::default() }
    }

    fn bundled_at(&self, index: usize) -> Option<&Entry> {
        self.bundled[index]
            .get_or_init(|| {
                let (_, json) = bundled::BUNDLED[index];
                serde_json::from_str(json).ok().map(|provider| Entry { provider, source: Source::Bundled, path: None })
            })
            .as_ref()
    }

    /// Every provider: bundled ones not shadowed by a custom one, then the custom ones.
    pub(crate) fn entries(&self) -> &[Entry] {
        self.all.get_or_init(|| {
            let mut all: Vec<Entry> = (0..self.bundled.len())
                .filter_map(|i| self.bundled_at(i))
                .filter(|e| !self.custom.iter().any(|c| c.provider.name == e.provider.name))
                .cloned()
                .collect();
            all.extend(self.custom.iter().cloned());
            all
        })
    }

    /// The entries named in `names`, in the order of [`Catalog::entries`], parsing no other
    /// bundled definition (`run` needs only the providers it has connections for; parsing the
    /// whole catalog would cost every run more as it grows).
    pub(crate) fn entries_named(&self, names: &std::collections::BTreeSet<&str>) -> Vec<&Entry> {
        let custom = |name: &str| self.custom.iter().any(|c| c.provider.name == name);
        // BUNDLED and `names` are both sorted by name: the bundled part keeps its order.
        let mut out: Vec<&Entry> = names.iter().filter(|n| !custom(n)).filter_map(|n| self.bundled(n)).collect();
        out.extend(self.custom.iter().filter(|c| names.contains(c.provider.name.as_str())));
        out
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Entry> {
        if let Some(custom) = self.custom.iter().find(|e| e.provider.name == name) {
            return Some(custom);
        }
        self.bundled(name)
    }

    /// The bundled definition of `name`, even when a custom one shadows it.
    pub(crate) fn bundled(&self, name: &str) -> Option<&Entry> {
        let index = bundled::BUNDLED.binary_search_by(|(n, _)| (*n).cmp(name)).ok()?;
        self.bundled_at(index)
    }

    /// A provider that must exist, with a "did you mean" hint.
    pub(crate) fn require(&self, name: &str) -> Result<&Entry, CliError> {
        if self.get(name).is_none() && aws_like(name) {
            return Err(CliError::new(
                Kind::ProviderNotFound,
                format!("'{name}': AWS request signing (SigV4) is not supported"),
            )
            .hint(
                "AWS signs every request with the secret key instead of sending a credential authsome could put on \
                 the wire; keep using the AWS CLI's own credentials (aws configure, aws sso login)",
            ));
        }
        self.get(name).ok_or_else(|| {
            let mut err = CliError::new(Kind::ProviderNotFound, format!("unknown provider '{name}'"));
            let close: Vec<&str> = self
                .entries()
                .iter()
                .map(|e| e.provider.name.as_str())
                .filter(|candidate| similar(name, candidate))
                .take(3)
                .collect();
            err = if close.is_empty() {
                err.hint("see `authsome list` for every provider, or add your own with `authsome register FILE`")
            } else {
                err.hint(format!("did you mean {}? (`authsome list` shows every provider)", close.join(", ")))
            };
            err
        })
    }
}

/// Once per file: a custom definition is used instead of the bundled provider of the same name.
/// A provider bundled after the user wrote their own keeps working as the user's file says
/// (restricted to the hosts they confirmed, `trust.rs`); this says so, and how to switch.
fn tell_shadowing(home: &Home, ledger: &mut ledger::Ledger, shadowing: &[Entry]) -> Option<String> {
    let untold: Vec<&Entry> = shadowing.iter().filter(|entry| ledger.tell_shadowing(&entry.provider.name)).collect();
    if untold.is_empty() || ledger.write(&ledger::path(home)).is_err() {
        return None;
    }
    let lines: Vec<String> = untold
        .iter()
        .map(|entry| {
            let path = entry.path.as_deref().map(|p| p.display().to_string()).unwrap_or_default();
            format!("  {}: your definition {path} is used, not the bundled one", entry.provider.name)
        })
        .collect();
    Some(format!(
        "authsome bundles providers with the names of your own definitions:\n{}\nDelete a file to use the bundled \
         definition instead; its connections stay as they are.",
        lines.join("\n")
    ))
}

/// Parse the embedded catalog. The definitions are validated by a test, so a parse failure
/// here is a build defect; such an entry is skipped rather than taking the CLI down.
#[cfg(test)]
fn bundled_providers() -> Vec<Provider> {
    bundled::BUNDLED.iter().filter_map(|(_, json)| serde_json::from_str(json).ok()).collect()
}

fn load_custom(dir: &Path) -> (Vec<trust::Loaded>, Vec<Problem>) {
    let mut files = Vec::new();
    let mut problems = Vec::new();
    let Ok(read) = std::fs::read_dir(dir) else { return (files, problems) };
    let mut paths: Vec<PathBuf> =
        read.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "json")).collect();
    paths.sort();
    for path in paths {
        let skipped = |path: PathBuf, message: String| Problem { kind: ProblemKind::Skipped, path, message };
        // Hash the very bytes that are parsed, so a confirmation covers what is used.
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) => {
                problems.push(skipped(path, e.to_string()));
                continue;
            }
        };
        let parsed = std::str::from_utf8(&bytes).map_err(|_| "not UTF-8 text".to_string()).and_then(parse_definition);
        match parsed {
            Ok((provider, _)) => {
                let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
                if stem != provider.name {
                    let message = format!("the file name does not match the provider name '{}'", provider.name);
                    problems.push(skipped(path, message));
                    continue;
                }
                let entry = Entry { provider, source: Source::Custom, path: Some(path) };
                files.push(trust::Loaded { entry, sha256: ledger::sha256_hex(&bytes) });
            }
            Err(message) => problems.push(skipped(path, message)),
        }
    }
    (files, problems)
}

/// Names that mean an AWS service, whose APIs take SigV4 signatures, not bearer credentials.
fn aws_like(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["aws", "amazon", "bedrock", "s3", "sagemaker", "dynamodb", "sqs", "sns"].contains(&name.as_str())
        || ["aws-", "aws_", "amazon-", "amazon_", "bedrock-"].iter().any(|prefix| name.starts_with(prefix))
}

/// A cheap "did you mean": shared prefix of 3+, containment, or one edit apart.
fn similar(asked: &str, candidate: &str) -> bool {
    let asked = asked.to_ascii_lowercase();
    if asked.len() >= 3
        && (candidate.starts_with(&asked[..3]) || candidate.contains(&asked) || asked.contains(candidate))
    {
        return true;
    }
    edit_distance(&asked, candidate) <= 1
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb { prev } else { 1 + prev.min(row[j]).min(row[j + 1]) };
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every bundled file parses and passes the same validation as a custom provider
    /// (upstream bug 22: a catalog the code could not read shipped once).
    #[test]
    fn every_bundled_provider_is_valid() {
        assert_eq!(bundled::BUNDLED.len(), bundled_providers().len(), "a bundled file failed to parse");
        for (name, json) in bundled::BUNDLED {
            let provider: Provider = serde_json::from_str(json).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(&provider.name, name, "file name and provider name differ");
            validate::validate_as(&provider, &validate::Spelling::OURS).unwrap_or_else(|e| panic!("{e}"));
        }
    }

    /// `run` looks up only the providers it has connections for, in the order the whole
    /// catalog lists them, and parses no other definition.
    #[test]
    fn entries_named_keeps_the_catalog_order_and_parses_only_those() {
        let catalog = Catalog::bundled_only();
        let names: std::collections::BTreeSet<&str> = ["openai", "github", "anthropic", "no-such-provider"].into();
        let got: Vec<&str> = catalog.entries_named(&names).iter().map(|e| e.provider.name.as_str()).collect();
        assert_eq!(got, ["anthropic", "github", "openai"]);
        let parsed = catalog.bundled.iter().filter(|cell| cell.get().is_some()).count();
        assert_eq!(parsed, 3, "only the named definitions are parsed");
        let all: Vec<&str> =
            catalog.entries().iter().map(|e| e.provider.name.as_str()).filter(|n| names.contains(n)).collect();
        assert_eq!(got, all);
    }

    #[test]
    fn catalog_covers_upstream_and_more() {
        let names: Vec<String> = bundled_providers().into_iter().map(|p| p.name).collect();
        let upstream = [
            "ahrefs",
            "apollo",
            "ashby",
            "atlassian",
            "beehiiv",
            "brevo",
            "buffer",
            "calendly",
            "clearbit",
            "discord",
            "dub",
            "g2",
            "github",
            "gitlab",
            "google",
            "hubspot",
            "hunter",
            "instantly",
            "intercom",
            "keywords-everywhere",
            "klaviyo",
            "klaviyo-oauth",
            "lemlist",
            "linear",
            "livestorm",
            "mailchimp",
            "mention-me",
            "microsoft",
            "notion",
            "notion_dcr",
            "openai",
            "optimizely",
            "postiz",
            "postmark",
            "resend",
            "rewardful",
            "savvycal",
            "semrush",
            "sendgrid",
            "slack",
            "tolt",
            "typeform",
            "wistia",
            "x",
            "zapier",
        ];
        assert_eq!(upstream.len(), 45);
        for name in upstream.iter().chain(&["anthropic", "stripe"]) {
            assert!(names.iter().any(|n| n == name), "{name} missing");
        }
    }

    #[test]
    fn provider_facts_tools_rely_on() {
        let catalog = Catalog::bundled_only();
        let p = |n: &str| catalog.get(n).unwrap().provider.clone();
        let github = p("github");
        for var in ["GH_TOKEN", "GITHUB_TOKEN", "GITHUB_ACCESS_TOKEN"] {
            assert!(github.env.access_token.iter().any(|v| v == var), "{var}");
        }
        assert_eq!(p("anthropic").inject, Inject::Header { name: "x-api-key".into(), value: "{secret}".into() });
        assert!(p("anthropic").env.api_key.contains(&"ANTHROPIC_API_KEY".to_string()));
        assert_eq!(p("google").hosts, vec!["*.googleapis.com"], "google must be an anchored wildcard");
        assert!(p("google").oauth.unwrap().authorization_params.contains_key("access_type"));
        assert_eq!(p("ashby").inject, Inject::Basic { username: "{secret}".into(), password: String::new() });
        assert_eq!(p("openai").placeholder_prefix.as_deref(), Some("sk-"));
    }

    /// A shadowing file is announced once; a Python authsome home is never written to for it.
    #[test]
    fn shadowing_is_told_once_and_never_into_a_python_home() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        std::fs::create_dir_all(home.providers_dir()).unwrap();
        std::fs::write(ledger::path(&home), r#"{"v": 1, "files": {}}"#).unwrap();
        let openai = Catalog::bundled_only().get("openai").unwrap().provider.clone();
        std::fs::write(home.providers_dir().join("openai.json"), serde_json::to_string(&openai).unwrap()).unwrap();
        let first = Catalog::load(&home);
        assert!(first.notices.iter().any(|n| n.contains("openai: your definition")), "{:?}", first.notices);
        assert!(Catalog::load(&home).notices.is_empty());

        let python = tempfile::tempdir().unwrap();
        std::fs::write(python.path().join("version"), "2\n").unwrap();
        let python = Home::at(python.path());
        std::fs::create_dir_all(python.providers_dir()).unwrap();
        std::fs::write(python.providers_dir().join("openai.json"), serde_json::to_string(&openai).unwrap()).unwrap();
        assert!(Catalog::load(&python).notices.is_empty());
        assert!(!ledger::path(&python).exists());
    }

    #[test]
    fn unknown_provider_suggests() {
        let catalog = Catalog::bundled_only();
        let err = catalog.require("opnai").unwrap_err();
        assert_eq!(err.kind, Kind::ProviderNotFound);
        assert!(err.hint.unwrap().contains("openai"));
        assert!(catalog.require("zzzzzz").unwrap_err().hint.unwrap().contains("authsome list"));
        for aws in ["aws", "AWS-S3", "bedrock", "aws_sts"] {
            let err = catalog.require(aws).unwrap_err();
            assert!(err.message.contains("SigV4") && err.message.contains("not supported"), "{aws}: {}", err.message);
        }
    }

    #[test]
    fn custom_shadows_bundled_and_bad_files_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        std::fs::create_dir_all(home.providers_dir()).unwrap();
        let mut openai = Catalog::bundled_only().get("openai").unwrap().provider.clone();
        openai.display_name = "My OpenAI".into();
        std::fs::write(home.providers_dir().join("openai.json"), serde_json::to_string(&openai).unwrap()).unwrap();
        std::fs::write(home.providers_dir().join("broken.json"), "{ not json").unwrap();
        let catalog = Catalog::load(&home);
        let entry = catalog.get("openai").unwrap();
        assert_eq!(entry.source, Source::Custom);
        assert_eq!(entry.provider.display_name, "My OpenAI");
        assert_eq!(catalog.entries().iter().filter(|e| e.provider.name == "openai").count(), 1);
        assert_eq!(catalog.problems.len(), 1);
        assert!(catalog.problems[0].message.contains("not valid JSON"));
    }
}
