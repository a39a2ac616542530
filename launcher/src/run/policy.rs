//! The run's egress policy: `--egress`, `--allow`, `--deny`, `--port`, and `--policy FILE`, a
//! JSON document with the same fields, for rules kept next to a project:
//!
//! ```json
//! {"egress": "allowlist", "allow": ["registry.npmjs.org", "*.githubusercontent.com"],
//!  "deny": ["*.pastebin.com"], "ports": [8443]}
//! ```
//!
//! Flags win for the mode; lists from the file and the flags add up (deny still wins).

use std::path::Path;

use authsome_proxy::{EgressMode, EgressPolicy, HostPattern};
use serde::Deserialize;

use crate::cli::args::{EgressArg, RunArgs};
use crate::error::{CliError, CliResult, Kind};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    #[allow(dead_code)]
    v: Option<u32>,
    egress: Option<EgressArg>,
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
    #[serde(default)]
    ports: Vec<u16>,
}

/// What the proxy and the sandbox enforce.
#[derive(Debug, Clone)]
pub struct Policy {
    pub egress: EgressPolicy,
    /// Extra TCP ports the sandbox captures.
    pub ports: Vec<u16>,
}

pub fn resolve(args: &RunArgs) -> CliResult<Policy> {
    let file = match &args.policy {
        Some(path) => read(path)?,
        None => PolicyFile::default(),
    };
    let mode = match args.egress.or(file.egress).unwrap_or(EgressArg::All) {
        EgressArg::All => EgressMode::All,
        EgressArg::Providers => EgressMode::Providers,
        EgressArg::Allowlist => EgressMode::Allowlist,
    };
    let patterns = |list: Vec<&String>, origin: &str| {
        list.into_iter()
            .map(|h| {
                h.parse::<HostPattern>().map_err(|e| {
                    CliError::new(Kind::Usage, format!("{origin}: {e}")).hint("use api.example.com or *.example.com")
                })
            })
            .collect::<CliResult<Vec<_>>>()
    };
    let mut allow = patterns(args.allow.iter().collect(), "--allow")?;
    allow.extend(patterns(file.allow.iter().collect(), "policy file allow")?);
    let mut deny = patterns(args.deny.iter().collect(), "--deny")?;
    deny.extend(patterns(file.deny.iter().collect(), "policy file deny")?);
    let mut ports = args.ports.clone();
    ports.extend(file.ports);
    ports.sort_unstable();
    ports.dedup();
    Ok(Policy { egress: EgressPolicy { mode, allow, deny }, ports })
}

fn read(path: &Path) -> CliResult<PolicyFile> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::new(Kind::Usage, format!("cannot read the policy file {}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| {
        CliError::new(Kind::Usage, format!("{}: {e}", path.display())).hint(
            r#"a policy file looks like {"egress": "allowlist", "allow": ["registry.npmjs.org"], "deny": [], "ports": []}"#,
        )
    })
}
