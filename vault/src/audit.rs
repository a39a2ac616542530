//! `audit.log`: one JSON object per line, UTC ISO-8601 timestamps with `+00:00`, appended with
//! a single `write` on an `O_APPEND` file so concurrent processes never interleave a line.
//! Events carry names (profile, provider, connection, field, format…), never a secret value.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::fsutil;

/// One audit event. Field order on disk: timestamp, event, profile, provider, connection, then
/// the event's own fields.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEvent {
    /// When it happened (ISO 8601, microseconds, UTC offset).
    pub timestamp: String,
    /// What happened (`login`, `refresh`, `proxy.inject`, …).
    pub event: String,
    /// The profile it concerns, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// The provider it concerns, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The connection it concerns, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
    /// The event's own fields (never a secret).
    #[serde(flatten)]
    pub fields: BTreeMap<String, serde_json::Value>,
}

impl AuditEvent {
    /// An event named `event`, stamped now.
    pub fn new(event: &str) -> Self {
        Self {
            timestamp: crate::time::iso_offset_micros(crate::time::now_micros()),
            event: event.to_string(),
            profile: None,
            provider: None,
            connection: None,
            fields: BTreeMap::new(),
        }
    }
    /// Name the profile.
    pub fn profile(mut self, profile: &str) -> Self {
        self.profile = Some(profile.to_string());
        self
    }
    /// Name the provider.
    pub fn provider(mut self, provider: &str) -> Self {
        self.provider = Some(provider.to_string());
        self
    }
    /// Name the connection.
    pub fn connection(mut self, connection: &str) -> Self {
        self.connection = Some(connection.to_string());
        self
    }
    /// Add a field. Null values are dropped, as upstream did.
    pub fn field(mut self, name: &str, value: impl Into<serde_json::Value>) -> Self {
        let value = value.into();
        if !value.is_null() {
            self.fields.insert(name.to_string(), value);
        }
        self
    }
}

/// The audit log of one home.
#[derive(Debug, Clone)]
pub struct AuditLog {
    path: PathBuf,
}

impl AuditLog {
    /// The log at `path` (created on the first append).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The log file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append one event as a JSON line.
    pub fn append(&self, event: &AuditEvent) -> Result<()> {
        let mut line = serde_json::to_vec(event).map_err(|source| Error::Json { path: self.path.clone(), source })?;
        line.push(b'\n');
        if let Some(dir) = self.path.parent() {
            fsutil::ensure_private_dir(dir)?;
        }
        let mut file = fsutil::open_append_private(&self.path)?;
        file.write_all(&line).map_err(|e| Error::io(&self.path, e))
    }

    /// The last `n` lines, oldest first; `None` when there is no log yet. Reads backwards from
    /// the end, so a large log costs only what is shown.
    pub fn tail(&self, n: usize) -> Result<Option<Vec<String>>> {
        let mut file = match std::fs::File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&self.path, e)),
        };
        if n == 0 {
            return Ok(Some(Vec::new()));
        }
        let len = file.metadata().map_err(|e| Error::io(&self.path, e))?.len();
        let mut pos = len;
        let mut buf: Vec<u8> = Vec::new();
        const CHUNK: u64 = 64 * 1024;
        // Read chunks from the end until we hold n complete lines (n + 1 newlines, or the start).
        while pos > 0 && buf.iter().filter(|b| **b == b'\n').count() <= n {
            let start = pos.saturating_sub(CHUNK);
            let mut chunk = vec![0; (pos - start) as usize];
            file.seek(SeekFrom::Start(start)).map_err(|e| Error::io(&self.path, e))?;
            file.read_exact(&mut chunk).map_err(|e| Error::io(&self.path, e))?;
            chunk.extend_from_slice(&buf);
            buf = chunk;
            pos = start;
        }
        let text = String::from_utf8_lossy(&buf);
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        // When we stopped early, the first line may be partial: drop it unless we read from 0.
        let complete = if pos > 0 && !lines.is_empty() { &lines[1..] } else { &lines[..] };
        let skip = complete.len().saturating_sub(n);
        Ok(Some(complete[skip..].iter().map(|l| l.to_string()).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_json_lines_in_order_and_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(dir.path().join("audit.log"));
        assert!(log.tail(5).unwrap().is_none());
        for i in 0..3 {
            log.append(
                &AuditEvent::new("login")
                    .provider("openai")
                    .connection("default")
                    .field("n", i)
                    .field("gone", serde_json::Value::Null),
            )
            .unwrap();
        }
        let lines = log.tail(2).unwrap().unwrap();
        assert_eq!(lines.len(), 2);
        let first: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(first["n"], 1);
        assert!(first.get("gone").is_none());
        assert!(lines[0].starts_with("{\"timestamp\":\""), "{}", lines[0]);
        assert!(first["timestamp"].as_str().unwrap().ends_with("+00:00"));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(log.path()).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn tail_of_large_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(dir.path().join("audit.log"));
        let mut text = String::new();
        for i in 0..20_000 {
            text.push_str(&format!("{{\"i\":{i}}}\n"));
        }
        std::fs::write(log.path(), text).unwrap();
        let lines = log.tail(3).unwrap().unwrap();
        assert_eq!(lines, vec!["{\"i\":19997}", "{\"i\":19998}", "{\"i\":19999}"]);
        assert_eq!(log.tail(50_000).unwrap().unwrap().len(), 20_000);
    }
}
