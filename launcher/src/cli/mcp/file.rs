//! Reading and rewriting a configuration file the way its owner would: the indentation and final
//! newline it had, its permissions, atomically (a temporary file in the same directory, then a
//! rename), with a dated backup of the original next to it first.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::error::{CliError, CliResult, Kind};

/// A configuration file as read.
#[derive(Debug)]
pub(crate) struct ConfigFile {
    /// The path as given (shown, and where the backup goes).
    pub(crate) path: PathBuf,
    /// Where the content is: the path with symbolic links resolved, so a configuration kept in
    /// a dotfiles repository stays a link to it.
    target: PathBuf,
    pub(crate) text: String,
    pub(crate) doc: Value,
    mode: u32,
}

pub(crate) fn read(path: &Path) -> CliResult<ConfigFile> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        let error = CliError::new(Kind::Usage, format!("cannot read {}: {e}", path.display()));
        if e.kind() == std::io::ErrorKind::NotFound {
            error.hint("give the MCP configuration file itself, e.g. ~/.cursor/mcp.json, .mcp.json or .vscode/mcp.json")
        } else {
            error
        }
    })?;
    let doc: Value = serde_json::from_str(&text).map_err(|e| {
        // serde_json's message names a line and column, never the text around it.
        CliError::new(Kind::Usage, format!("{} is not JSON: {e}", path.display())).hint(
            "comments and trailing commas (JSONC) cannot be kept by a rewrite: remove them, or edit the file by hand",
        )
    })?;
    if !doc.is_object() {
        return Err(CliError::new(Kind::Usage, format!("{} is not a JSON object", path.display()))
            .hint("an MCP configuration is an object with `mcpServers` (or `servers` for VS Code)"));
    }
    let mode = std::fs::metadata(path).map(|m| m.permissions().mode() & 0o7777).unwrap_or(0o600);
    let target = std::fs::canonicalize(path).map_err(|e| io_error("cannot resolve", path, e))?;
    Ok(ConfigFile { path: path.to_path_buf(), target, text, doc, mode })
}

impl ConfigFile {
    /// The document in the file's own style: its indentation (first indented line) and its
    /// final newline.
    pub(crate) fn render(&self, doc: &Value) -> String {
        let indent: String = self
            .text
            .lines()
            .skip(1)
            .find(|l| l.starts_with([' ', '\t']))
            .map(|l| l.chars().take_while(|c| *c == ' ' || *c == '\t').collect())
            .unwrap_or_else(|| "  ".into());
        let formatter = serde_json::ser::PrettyFormatter::with_indent(indent.as_bytes());
        let mut out = Vec::new();
        let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
        doc.serialize(&mut serializer).expect("a Value always serializes");
        let mut text = String::from_utf8(out).expect("serde_json writes UTF-8");
        if self.text.ends_with('\n') {
            text.push('\n');
        }
        text
    }

    /// Copy the original next to the file as `NAME.authsome-backup-STAMP`: 0600 when it held
    /// keys, else the file's own mode. Never overwrites an earlier backup.
    pub(crate) fn backup(&self, held_secrets: bool) -> CliResult<PathBuf> {
        let stamp = authsome_vault::time::iso_z_seconds(authsome_vault::time::now_seconds()).replace([':', '-'], "");
        let name = self.path.file_name().and_then(|n| n.to_str()).unwrap_or("mcp.json");
        let mode = if held_secrets { 0o600 } else { self.mode };
        for n in 0..100 {
            let suffix = if n == 0 { String::new() } else { format!(".{n}") };
            let backup = self.path.with_file_name(format!("{name}.authsome-backup-{stamp}{suffix}"));
            let opened = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&backup);
            match opened {
                Ok(mut file) => {
                    file.write_all(self.text.as_bytes())
                        .and_then(|()| file.set_permissions(std::fs::Permissions::from_mode(mode)))
                        .and_then(|()| file.sync_all())
                        .map_err(|e| io_error("cannot write the backup", &backup, e))?;
                    return Ok(backup);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_error("cannot write the backup", &backup, e)),
            }
        }
        Err(CliError::new(Kind::Generic, format!("too many backups of {} this second", self.path.display())))
    }

    /// Replace the file with `text` atomically, keeping its permissions. Refused when the file
    /// changed since it was read (an editor writing it meanwhile): its change would be lost.
    pub(crate) fn replace(&self, text: &str) -> CliResult {
        let dir = self.target.parent().unwrap_or(Path::new("/"));
        let mut temp = tempfile_in(dir, &self.target)?;
        let result = temp
            .1
            .write_all(text.as_bytes())
            .and_then(|()| temp.1.set_permissions(std::fs::Permissions::from_mode(self.mode)))
            .and_then(|()| temp.1.sync_all());
        if let Err(e) = result {
            let _ = std::fs::remove_file(&temp.0);
            return Err(io_error("cannot write", &self.path, e));
        }
        if std::fs::read_to_string(&self.target).ok().as_deref() != Some(self.text.as_str()) {
            let _ = std::fs::remove_file(&temp.0);
            return Err(CliError::new(
                Kind::Generic,
                format!("{} changed while authsome was rewriting it; nothing was written", self.path.display()),
            )
            .hint("close the application that writes it (or wait a moment) and run the command again"));
        }
        if let Err(e) = std::fs::rename(&temp.0, &self.target) {
            let _ = std::fs::remove_file(&temp.0);
            return Err(io_error("cannot write", &self.path, e));
        }
        Ok(())
    }
}

/// A new file beside `target`, readable by the owner only until its mode is set.
fn tempfile_in(dir: &Path, target: &Path) -> CliResult<(PathBuf, std::fs::File)> {
    let name = target.file_name().and_then(|n| n.to_str()).unwrap_or("mcp.json");
    for n in 0..100u32 {
        let path = dir.join(format!(".{name}.authsome-{}-{n}.tmp", std::process::id()));
        match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path) {
            Ok(file) => return Ok((path, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_error("cannot write next to", target, e)),
        }
    }
    Err(CliError::new(Kind::Generic, format!("cannot create a temporary file next to {}", target.display())))
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> CliError {
    CliError::new(Kind::Generic, format!("{what} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_indentation_newline_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mcp.json");
        std::fs::write(&path, "{\n    \"servers\": {\n        \"a\": 1\n    }\n}\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let file = read(&path).unwrap();
        let text = file.render(&file.doc);
        assert_eq!(text, file.text);
        let backup = file.backup(true).unwrap();
        assert_eq!(std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&backup).unwrap(), file.text);
        assert_ne!(file.backup(false).unwrap(), backup, "a second backup never overwrites the first");
        file.replace("{}\n").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o640);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{}\n");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(left.len(), 3, "no temporary file left: {left:?}");
    }

    #[test]
    fn a_symbolic_link_stays_a_link_and_a_concurrent_change_is_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("dotfiles")).unwrap();
        let real = dir.path().join("dotfiles/mcp.json");
        std::fs::write(&real, "{}\n").unwrap();
        let link = dir.path().join("mcp.json");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let file = read(&link).unwrap();
        file.replace("{\"a\": 1}\n").unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read_to_string(&real).unwrap(), "{\"a\": 1}\n");

        let file = read(&link).unwrap();
        std::fs::write(&real, "{\"editor\": true}\n").unwrap();
        let err = file.replace("{}\n").unwrap_err();
        assert!(err.message.contains("changed while"), "{}", err.message);
        assert!(err.hint.is_some());
        assert_eq!(std::fs::read_to_string(&real).unwrap(), "{\"editor\": true}\n");
        assert_eq!(std::fs::read_dir(dir.path().join("dotfiles")).unwrap().count(), 1, "no temporary file left");
    }

    #[test]
    fn jsonc_is_refused_with_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mcp.json");
        std::fs::write(&path, "{ // comment\n \"servers\": {} }").unwrap();
        let err = read(&path).unwrap_err();
        assert!(err.hint.unwrap().contains("JSONC"));
    }
}
