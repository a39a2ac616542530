//! The Node preload for plain `run`: Node before 24 ignores `HTTP(S)_PROXY`, so its `http`,
//! `https` and `fetch` would go straight to the provider carrying the placeholder. `run` puts
//! `--require <this file>` into the child's `NODE_OPTIONS` (after what the user had there);
//! the script (`node_preload.cjs`, built-in modules only) routes those clients through the
//! proxy. Not used under `--sandbox`, where every connection is captured anyway and the
//! profile's directory is hidden from the child.

use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{CliError, CliResult, Kind};

/// The script, embedded in the binary. It holds no secret: the proxy URL comes from the env.
pub(crate) const SCRIPT: &str = include_str!("node_preload.cjs");

/// The script's file name: how an inherited `NODE_OPTIONS` is recognised as ours.
const FILE_NAME: &str = "node-preload.cjs";

/// Write the script into the profile's CA directory (private to the user, like the bundles
/// cached there) unless it is already there unchanged, and return its path. Written to a
/// temporary name and renamed, so a concurrent run never loads half a file.
pub(crate) fn install(ca_dir: &Path) -> CliResult<PathBuf> {
    let path = ca_dir.join(FILE_NAME);
    if fs::read(&path).is_ok_and(|bytes| bytes == SCRIPT.as_bytes()) {
        return Ok(path);
    }
    let cannot = |e: std::io::Error| CliError::new(Kind::RunFailed, format!("cannot write {}: {e}", path.display()));
    let mut suffix = [0u8; 6];
    authsome_vault::crypto::random_bytes(&mut suffix).map_err(|e| CliError::new(Kind::RunFailed, e.to_string()))?;
    let tmp =
        ca_dir.join(format!(".node-preload.{}.tmp", suffix.iter().map(|b| format!("{b:02x}")).collect::<String>()));
    let written = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .and_then(|mut file| file.write_all(SCRIPT.as_bytes()))
        .and_then(|()| fs::rename(&tmp, &path));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(cannot(e));
    }
    Ok(path)
}

/// `NODE_OPTIONS` as inherited, minus a `--require` of our script that an outer `run` added:
/// a nested plain `run` adds its own, and under `--sandbox` the outer one's path (in the
/// profile, which the sandbox hides) would stop Node from starting. Anything else is kept;
/// the value is rewritten only when something was taken out.
pub(crate) fn without_ours(value: &str) -> Option<String> {
    let tokens = split_options(value);
    let mut kept: Vec<&str> = Vec::new();
    let mut removed = false;
    let mut i = 0;
    while i < tokens.len() {
        let token = tokens[i].as_str();
        let ours = |path: &str| path.ends_with(&format!("/{FILE_NAME}"));
        if matches!(token, "--require" | "-r") && tokens.get(i + 1).is_some_and(|p| ours(p)) {
            removed = true;
            i += 2;
            continue;
        }
        if token.strip_prefix("--require=").is_some_and(ours) {
            removed = true;
            i += 1;
            continue;
        }
        kept.push(token);
        i += 1;
    }
    removed.then(|| kept.iter().map(|t| quote(t)).collect::<Vec<_>>().join(" "))
}

/// Split `NODE_OPTIONS` as Node does: on spaces, with double quotes grouping and a backslash
/// escaping the next character inside them.
fn split_options(value: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut current = String::new();
    let mut in_token = false;
    let mut quoted = false;
    let mut chars = value.chars();
    while let Some(ch) = chars.next() {
        match ch {
            '\\' if quoted => {
                if let Some(next) = chars.next() {
                    current.push(next);
                }
            }
            '"' => {
                quoted = !quoted;
                in_token = true;
            }
            ' ' | '\t' | '\n' if !quoted => {
                if in_token {
                    tokens.push(std::mem::take(&mut current));
                    in_token = false;
                }
            }
            _ => {
                current.push(ch);
                in_token = true;
            }
        }
    }
    if in_token {
        tokens.push(current);
    }
    tokens
}

/// One `NODE_OPTIONS` word, quoted when it holds a space, quote or backslash.
fn quote(word: &str) -> String {
    if word.contains([' ', '"', '\\', '\'', '\t', '\n']) || word.is_empty() {
        format!("\"{}\"", word.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        word.to_string()
    }
}

/// Add `--require PATH` to the child's `NODE_OPTIONS`, after the user's own options (which
/// stay in force). A path with a space or quote is quoted as Node's option parser expects.
pub(crate) fn add_to(env: &mut Vec<(OsString, OsString)>, script: &Path) {
    let ours = format!("--require {}", quote(&script.to_string_lossy()));
    match env.iter_mut().find(|(name, _)| name == "NODE_OPTIONS") {
        Some((_, value)) if !value.is_empty() => {
            let mut joined = value.clone();
            joined.push(" ");
            joined.push(&ours);
            *value = joined;
        }
        Some((_, value)) => *value = ours.into(),
        None => env.push(("NODE_OPTIONS".into(), ours.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node_options(env: &[(OsString, OsString)]) -> String {
        env.iter().find(|(k, _)| k == "NODE_OPTIONS").map(|(_, v)| v.to_string_lossy().into_owned()).unwrap()
    }

    #[test]
    fn appends_to_the_users_node_options() {
        let mut env = vec![("NODE_OPTIONS".into(), "--max-old-space-size=512".into())];
        add_to(&mut env, Path::new("/h/ca/node-preload.cjs"));
        assert_eq!(node_options(&env), "--max-old-space-size=512 --require /h/ca/node-preload.cjs");
        let mut env = Vec::new();
        add_to(&mut env, Path::new("/my home/ca/node-preload.cjs"));
        assert_eq!(node_options(&env), "--require \"/my home/ca/node-preload.cjs\"");
    }

    #[test]
    fn an_outer_runs_preload_is_taken_out_and_the_rest_kept() {
        assert_eq!(without_ours("--max-old-space-size=512"), None);
        assert_eq!(
            without_ours("--max-old-space-size=512 --require /h/profiles/default/ca/node-preload.cjs").as_deref(),
            Some("--max-old-space-size=512")
        );
        assert_eq!(
            without_ours(r#"-r "/my dir/x.js" --require "/my home/ca/node-preload.cjs" --trace-warnings"#).as_deref(),
            Some(r#"-r "/my dir/x.js" --trace-warnings"#)
        );
        assert_eq!(without_ours("--require=/h/ca/node-preload.cjs").as_deref(), Some(""));
        assert_eq!(split_options(r#"a "b \" c" d"#), vec!["a", "b \" c", "d"]);
    }

    #[test]
    fn installs_once_and_repairs_a_changed_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = install(dir.path()).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), SCRIPT);
        fs::write(&path, "tampered").unwrap();
        assert_eq!(install(dir.path()).unwrap(), path);
        assert_eq!(fs::read_to_string(&path).unwrap(), SCRIPT);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");
    }
}
