//! The workload container: what it sees (the run's CA bundle over the distro bundle paths, the
//! sandbox environment, the working directory at the same path) and the engine arguments that
//! confine it (no capability, no new privileges, the sidecar's network and pid namespaces).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::Names;
use crate::error::{CliError, CliResult, Kind};
use crate::run::{EnvItem, Plan, RunDir, RunSettings, SandboxSettings, bundle, child_env};

/// Distro bundle paths the run's bundle is mounted over (Debian/Ubuntu, RHEL/Fedora twice,
/// Alpine); the variables point at the first.
const BUNDLE_PATHS: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// Host variables that describe the host, not the image: the image's own values win unless
/// `--env NAME` passes them on purpose.
const HOST_ONLY: &[&str] = &["PATH", "HOME", "USER", "LOGNAME", "SHELL"];

/// Files made for the workload in the run's directory.
pub(crate) struct Prepared {
    bundle: PathBuf,
    env_file: PathBuf,
    mounts: Vec<String>,
    /// The working directory, mounted at the same path (`None`: `--no-mount-cwd`).
    cwd: Option<PathBuf>,
}

pub(crate) fn prepare(
    settings: &RunSettings,
    sandboxed: &SandboxSettings,
    mount_cwd: bool,
    plan: &Plan,
    dir: &RunDir,
    ca_pem: &str,
    run_token: &str,
) -> CliResult<Prepared> {
    let sources = bundle::root_sources(&settings.environment, settings.upstream.extra_roots_pem.as_deref());
    let bundle = dir.write_bundle("bundle.pem", &sources, ca_pem)?;
    let inside = Path::new(BUNDLE_PATHS[0]);
    let mut kept = crate::run::keep_env(&settings.environment, &sandboxed.env);
    let passed =
        |name: &str| sandboxed.env.iter().any(|e| matches!(e, EnvItem::Pass(n) | EnvItem::Set(n, _) if n == name));
    kept.retain(|(name, _)| name.to_str().is_some_and(|n| !HOST_ONLY.contains(&n) || passed(n)));
    let env = child_env::build(
        kept,
        &child_env::ChildEnvSpec {
            placeholders: &plan.env_placeholders,
            secrets: &plan.secrets,
            proxy_url: &crate::run::proxy_url(run_token, crate::run::INNER_PROXY_PORT),
            bundle: inside,
            ca_only: inside,
            cert_dir: None,
            java_store: None,
            provider_hosts: &plan.provider_hosts,
        },
    );
    let env_file = dir.path().join("env");
    super::write_private(&env_file, &env_file_text(&env))?;
    let mut mounts = Vec::new();
    if !mount_cwd {
        // Nothing of the host: the image's own filesystem and working directory.
        return Ok(Prepared { bundle, env_file, mounts, cwd: None });
    }
    let cwd_writable = sandboxed.writable.contains(&sandboxed.cwd);
    mounts.push(volume(&sandboxed.cwd, &sandboxed.cwd, !cwd_writable)?);
    for path in sandboxed.writable.iter().filter(|p| **p != sandboxed.cwd) {
        mounts.push(volume(path, path, false)?);
    }
    for path in &sandboxed.read {
        mounts.push(volume(path, path, true)?);
    }
    // What the host runs later stays read-only inside writable paths (when it exists): in a git
    // directory its configuration and hooks, so commits inside still work.
    for writable in &sandboxed.writable {
        for path in protected_paths(writable) {
            mounts.push(volume(&path, &path, true)?);
        }
    }
    Ok(Prepared { bundle, env_file, mounts, cwd: Some(sandboxed.cwd.clone()) })
}

/// The existing paths under `dir` the host runs or trusts later.
fn protected_paths(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for name in authsome_netns::PROTECTED_NAMES {
        let path = dir.join(name);
        if *name == ".git" && path.is_dir() {
            out.extend(authsome_netns::GIT_DIR_PROTECTED.iter().map(|entry| path.join(entry)).filter(|p| p.exists()));
        } else if path.exists() {
            out.push(path);
        }
    }
    out
}

/// `NAME=VALUE` lines for `--env-file` (values stay out of argv). A value with a newline
/// cannot be written there and is left out.
fn env_file_text(env: &[(OsString, OsString)]) -> String {
    let mut text = String::new();
    for (name, value) in env {
        let (Some(name), Some(value)) = (name.to_str(), value.to_str()) else { continue };
        if name.is_empty() || name.contains('=') || value.contains('\n') || name.contains('\n') {
            continue;
        }
        text.push_str(name);
        text.push('=');
        text.push_str(value);
        text.push('\n');
    }
    text
}

/// `--volume SRC:DST[:ro]`; a path with a `:` cannot be said that way.
fn volume(source: &Path, target: &Path, read_only: bool) -> CliResult<String> {
    let (Some(source), Some(target)) = (source.to_str(), target.to_str()) else {
        return Err(CliError::new(Kind::Usage, format!("{}: not a UTF-8 path", source.display())));
    };
    if source.contains(':') || target.contains(':') {
        return Err(CliError::new(Kind::Usage, format!("{source}: a path with ':' cannot be mounted in a container"))
            .hint("run from (or name) a directory without ':' in its path"));
    }
    Ok(if read_only { format!("{source}:{target}:ro") } else { format!("{source}:{target}") })
}

/// The engine arguments for the workload: `run … IMAGE CMD…`.
pub(crate) fn run_args(names: &Names, prepared: &Prepared, settings: &RunSettings, image: &str) -> Vec<OsString> {
    let mut args: Vec<OsString> = ["run", "--rm", "-i", "--name", &names.workload].iter().map(OsString::from).collect();
    if is_terminal() {
        args.push("-t".into());
    }
    args.extend(names.labels().into_iter().map(OsString::from));
    let network = format!("container:{}", names.sidecar);
    for arg in ["--network", &network, "--pid", &network, "--cap-drop", "ALL", "--security-opt", "no-new-privileges"] {
        args.push(arg.into());
    }
    args.push("--env-file".into());
    args.push(prepared.env_file.clone().into());
    let bundle = prepared.bundle.display();
    for path in BUNDLE_PATHS {
        args.push("--volume".into());
        args.push(format!("{bundle}:{path}:ro").into());
    }
    for mount in &prepared.mounts {
        args.push("--volume".into());
        args.push(mount.into());
    }
    if let Some(cwd) = &prepared.cwd {
        args.push("--workdir".into());
        args.push(cwd.clone().into());
    }
    args.push(image.into());
    args.extend(settings.command.iter().cloned());
    args
}

fn is_terminal() -> bool {
    use std::io::IsTerminal;
    std::io::stdin().is_terminal() && std::io::stdout().is_terminal()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_file_keeps_values_out_of_argv_and_skips_what_it_cannot_say() {
        let env: Vec<(OsString, OsString)> = vec![
            ("OPENAI_API_KEY".into(), "sk-authsome_abc".into()),
            ("MULTI".into(), "a\nb".into()),
            ("EQ".into(), "a=b".into()),
        ];
        assert_eq!(env_file_text(&env), "OPENAI_API_KEY=sk-authsome_abc\nEQ=a=b\n");
    }

    #[test]
    fn protected_paths_keep_the_git_directory_usable() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".git/hooks")).unwrap();
        std::fs::create_dir_all(dir.path().join(".git/objects")).unwrap();
        std::fs::write(dir.path().join(".git/config"), "").unwrap();
        std::fs::write(dir.path().join(".envrc"), "").unwrap();
        let mut found = protected_paths(dir.path());
        found.sort();
        let expected: Vec<PathBuf> =
            [".envrc", ".git/config", ".git/hooks"].iter().map(|p| dir.path().join(p)).collect();
        assert_eq!(found, expected);
    }

    #[test]
    fn volumes_refuse_colons() {
        assert_eq!(volume(Path::new("/a/b"), Path::new("/a/b"), true).unwrap(), "/a/b:/a/b:ro");
        assert_eq!(volume(Path::new("/a"), Path::new("/a"), false).unwrap(), "/a:/a");
        assert!(volume(Path::new("/a:b"), Path::new("/a:b"), false).is_err());
    }
}
