//! `run --learn FILE`: write, when the command ends, an allowlist policy (the `--policy` format)
//! holding every host the run reached or was refused for lack of an `--allow`, for the user to
//! review and then pass as `--policy FILE`.
//!
//! An existing FILE is never replaced by less: it was read (and checked to be a policy) before
//! the command started, and what the run learned is added to that content, so several runs
//! build one file. What the command itself writes to FILE during the run is ignored (the
//! content read at the start is the base), and the file is replaced by a rename in the
//! directory opened at the start: a sandboxed command that swaps a directory of the path for
//! a symbolic link cannot redirect the write.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use authsome_proxy::{DenyRule, HostPattern};
use serde_json::{Map, Value};

use super::events::HostStats;

/// Where the learned policy goes, and what the file held when the run started.
#[derive(Debug)]
pub(crate) struct LearnTarget {
    /// The path as the user named it (for messages).
    pub(crate) path: PathBuf,
    /// The directory that holds it, opened before the command started.
    dir: File,
    /// The file's name in `dir`.
    name: std::ffi::OsString,
    /// The file's content at the start (an empty object when it did not exist).
    base: Map<String, Value>,
}

impl LearnTarget {
    /// Open `path`'s directory and read what the file holds now. `base` is the file already
    /// parsed as a policy (`None`: it does not exist).
    pub(crate) fn open(path: &Path, base: Option<Map<String, Value>>) -> Result<Self, String> {
        let name = path.file_name().ok_or_else(|| format!("{} names no file", path.display()))?.to_os_string();
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let dir = File::open(&parent).map_err(|e| format!("cannot open the directory {}: {e}", parent.display()))?;
        if !dir.metadata().map(|m| m.is_dir()).unwrap_or(false) {
            return Err(format!("{} is not a directory", parent.display()));
        }
        Ok(LearnTarget { path: path.to_path_buf(), dir, name, base: base.unwrap_or_default() })
    }

    /// A path to `name` inside the directory opened at the start, whatever has happened to
    /// the path's directories since.
    fn in_dir(&self, name: &std::ffi::OsStr) -> PathBuf {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            PathBuf::from(format!("/proc/self/fd/{}", self.dir.as_raw_fd())).join(name)
        }
        #[cfg(not(target_os = "linux"))]
        {
            self.path.parent().unwrap_or(Path::new(".")).join(name)
        }
    }

    /// Write the base plus what was learned; returns the hosts added.
    pub(crate) fn write(
        &self,
        hosts: &BTreeMap<String, HostStats>,
        denied: &BTreeMap<(String, u16), DenyRule>,
    ) -> Result<Vec<String>, String> {
        self.write_learned(&learned(hosts, denied))
    }

    /// Write the base plus `learned`; returns the hosts added.
    fn write_learned(&self, learned: &Learned) -> Result<Vec<String>, String> {
        let (document, added) = merge(&self.base, learned);
        let mut text = serde_json::to_string_pretty(&Value::Object(document)).expect("a JSON object serializes");
        text.push('\n');
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(&self.name);
        tmp_name.push(format!(".authsome-{}.tmp", std::process::id()));
        let tmp = self.in_dir(&tmp_name);
        let written = (|| {
            // create_new: never follows a link someone left at the temporary name.
            let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&tmp, self.in_dir(&self.name))
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(format!("cannot write {}: {e}", self.path.display()));
        }
        Ok(added)
    }
}

/// `--ask`'s "always": add `host` (and `port`, for a port refusal) to the policy file at
/// `path`, as it is now.
pub(crate) fn add_to_policy(path: &Path, host: &str, port: Option<u16>) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let base: Map<String, Value> =
        serde_json::from_str(&text).map_err(|e| format!("{} is not a policy file: {e}", path.display()))?;
    let learned = Learned { hosts: [host.to_string()].into(), ports: port.into_iter().collect() };
    LearnTarget::open(path, Some(base))?.write_learned(&learned).map(drop)
}

/// What the run needs: hosts it reached, hosts refused only for want of an `--allow`, and
/// ports refused only for want of a `--port`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Learned {
    pub(crate) hosts: BTreeSet<String>,
    pub(crate) ports: BTreeSet<u16>,
}

pub(crate) fn learned(hosts: &BTreeMap<String, HostStats>, denied: &BTreeMap<(String, u16), DenyRule>) -> Learned {
    let mut out = Learned::default();
    for (host, s) in hosts {
        if s.conns + s.requests + s.injected + s.tunnelled > 0 {
            out.hosts.insert(host.clone());
        }
    }
    for ((host, port), rule) in denied {
        match rule {
            DenyRule::NotAProviderHost | DenyRule::NotAllowlisted => {
                out.hosts.insert(host.clone());
            }
            DenyRule::Port => {
                out.hosts.insert(host.clone());
                out.ports.insert(*port);
            }
            // Denied on purpose (--deny, the SSRF guard, placeholder misuse): never learned.
            _ => {}
        }
    }
    // Only names a policy file can hold (no IP literals).
    out.hosts
        .retain(|h| !h.contains(':') && h.parse::<std::net::IpAddr>().is_err() && h.parse::<HostPattern>().is_ok());
    out
}

/// The base document with the learned hosts and ports added (hosts a base `allow` pattern
/// already covers are not repeated). A new file says `"egress": "allowlist"`; an existing
/// one keeps its mode (or its lack of one).
pub(crate) fn merge(base: &Map<String, Value>, learned: &Learned) -> (Map<String, Value>, Vec<String>) {
    let mut doc = base.clone();
    if base.is_empty() {
        doc.insert("egress".into(), Value::from("allowlist"));
    }
    let strings = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect())
            .unwrap_or_default()
    };
    let mut allow = strings(base.get("allow"));
    let patterns: Vec<HostPattern> = allow.iter().filter_map(|a| a.parse().ok()).collect();
    let mut added = Vec::new();
    for host in &learned.hosts {
        if !patterns.iter().any(|p| p.matches(host)) && !allow.contains(host) {
            allow.push(host.clone());
            added.push(host.clone());
        }
    }
    doc.insert("allow".into(), Value::from(allow));
    doc.entry("deny").or_insert_with(|| Value::Array(Vec::new()));
    let mut ports: BTreeSet<u64> = base
        .get("ports")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    ports.extend(learned.ports.iter().map(|p| u64::from(*p)));
    doc.insert("ports".into(), Value::from(ports.into_iter().collect::<Vec<_>>()));
    (doc, added)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_reached_and_allowable_denials_only() {
        let mut hosts = BTreeMap::new();
        hosts.insert("api.openai.com".to_string(), HostStats { injected: 1, ..Default::default() });
        hosts.insert("registry.npmjs.org".to_string(), HostStats { conns: 1, ..Default::default() });
        hosts.insert("127.0.0.1".to_string(), HostStats { conns: 1, ..Default::default() });
        hosts.insert("quiet.example".to_string(), HostStats::default());
        let mut denied = BTreeMap::new();
        denied.insert(("cdn.example.org".to_string(), 443), DenyRule::NotAProviderHost);
        denied.insert(("db.example.org".to_string(), 8443), DenyRule::Port);
        denied.insert(("evil.example".to_string(), 443), DenyRule::DenyPattern("evil.example".parse().unwrap()));
        denied.insert(("10.0.0.1".to_string(), 443), DenyRule::IpLiteral);
        let got = learned(&hosts, &denied);
        let names: Vec<&str> = got.hosts.iter().map(String::as_str).collect();
        assert_eq!(names, ["api.openai.com", "cdn.example.org", "db.example.org", "registry.npmjs.org"]);
        assert_eq!(got.ports.into_iter().collect::<Vec<_>>(), [8443]);
    }

    #[test]
    fn merge_keeps_the_base_and_adds_only_what_is_new() {
        let base: Map<String, Value> = serde_json::from_str(
            r#"{"egress": "providers", "allow": ["*.example.org"], "deny": ["bad.example"], "ports": [8080]}"#,
        )
        .unwrap();
        let learned = Learned { hosts: ["a.example.org", "pypi.org"].map(String::from).into(), ports: [8443].into() };
        let (doc, added) = merge(&base, &learned);
        assert_eq!(added, ["pypi.org"]);
        assert_eq!(
            Value::Object(doc),
            serde_json::json!({"egress": "providers", "allow": ["*.example.org", "pypi.org"], "deny": ["bad.example"], "ports": [8080, 8443]})
        );
        let (fresh, _) = merge(&Map::new(), &learned);
        assert_eq!(fresh["egress"], "allowlist");
        assert_eq!(fresh["deny"], serde_json::json!([]));
    }
}
