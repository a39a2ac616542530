//! The container engine, driven through its CLI (`podman`, else `docker`): detection, the
//! labels every object of a run carries, and removing a run's objects.
//!
//! The CLI rather than the engines' HTTP APIs: both CLIs take the same flags for what we use,
//! they already honour the user's contexts, `DOCKER_HOST` and podman machine connections, and
//! it keeps an HTTP client for two dialects out of the binary.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{CliError, CliResult, Kind};

/// Label on every container of a run: its run id.
pub(crate) const RUN_LABEL: &str = "io.authsome.run";
/// Label naming the pid of the authsome process that owns the run (prune leaves live runs be).
pub(crate) const PID_LABEL: &str = "io.authsome.pid";

/// Which engine answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavour {
    Podman,
    Docker,
}

/// A container engine CLI found on `PATH`.
#[derive(Debug, Clone)]
pub(crate) struct ContainerEngine {
    pub(crate) program: PathBuf,
    pub(crate) flavour: Flavour,
}

impl ContainerEngine {
    /// podman, then docker; docker first when `DOCKER_HOST` names a daemon (the user pointed
    /// at one on purpose). Found on the `PATH` of `environment`.
    pub(crate) fn detect(environment: &[(OsString, OsString)]) -> CliResult<Self> {
        let var = |name: &str| environment.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
        let path = var("PATH").unwrap_or_default();
        let docker_host = var("DOCKER_HOST").is_some_and(|v| !v.is_empty());
        let order: &[(&str, Flavour)] = if docker_host {
            &[("docker", Flavour::Docker), ("podman", Flavour::Podman)]
        } else {
            &[("podman", Flavour::Podman), ("docker", Flavour::Docker)]
        };
        for (name, flavour) in order {
            if let Some(program) = find_on_path(name, &path) {
                return Ok(Self { program, flavour: *flavour });
            }
        }
        Err(CliError::new(Kind::RunFailed, "no container engine found: neither podman nor docker is on PATH").hint(
            "install podman (Linux: `apt-get install podman`; macOS: `brew install podman && podman machine init \
             && podman machine start`) or Docker, or run with --sandbox (Linux namespaces)",
        ))
    }

    pub(crate) fn name(&self) -> &'static str {
        match self.flavour {
            Flavour::Podman => "podman",
            Flavour::Docker => "docker",
        }
    }

    pub(crate) fn command(&self) -> Command {
        Command::new(&self.program)
    }

    /// Run `args`, stdout captured; an engine failure becomes an error naming the engine and
    /// carrying its stderr (which never holds a secret of ours: none is ever in argv).
    pub(crate) fn output(&self, args: &[&str]) -> CliResult<String> {
        let output =
            self.command().args(args).stdin(Stdio::null()).output().map_err(|e| self.unreachable(&e.to_string()))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let what = args.first().copied().unwrap_or_default();
            return Err(CliError::new(Kind::RunFailed, format!("`{} {what}` failed: {}", self.name(), stderr.trim())));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    fn unreachable(&self, detail: &str) -> CliError {
        CliError::new(Kind::RunFailed, format!("the container engine {} does not answer: {detail}", self.name()))
            .hint(format!("check that `{} info` works (macOS: is the machine or Docker Desktop running?)", self.name()))
    }

    pub(crate) fn image_exists(&self, image: &str) -> bool {
        self.command()
            .args(["image", "inspect", "--format", "{{.Id}}", image])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Containers labelled by authsome, as (id, run id, owner pid).
    pub(crate) fn labelled_containers(&self) -> CliResult<Vec<(String, String, Option<u32>)>> {
        let format = format!("{{{{.ID}}}} {{{{index .Labels \"{RUN_LABEL}\"}}}} {{{{index .Labels \"{PID_LABEL}\"}}}}");
        let out = self.output(&["ps", "-a", "--filter", &format!("label={RUN_LABEL}"), "--format", &format])?;
        Ok(out
            .lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                let id = words.next()?.to_string();
                let run = words.next().unwrap_or_default().to_string();
                let pid = words.next().and_then(|p| p.parse().ok());
                Some((id, run, pid))
            })
            .collect())
    }

    /// Remove every container of run `run_id` (no grace period: the run is over). The workload
    /// goes first: the engine refuses to remove the sidecar while a container joined to it exists.
    pub(crate) fn remove_run(&self, run_id: &str) {
        let filter = format!("label={RUN_LABEL}={run_id}");
        let names = self.output(&["ps", "-a", "--filter", &filter, "--format", "{{.Names}}"]).unwrap_or_default();
        let (sidecars, workloads): (Vec<&str>, Vec<&str>) =
            names.split_whitespace().partition(|name| name.ends_with("-sidecar"));
        for batch in [workloads, sidecars] {
            if batch.is_empty() {
                continue;
            }
            let mut args = match self.flavour {
                Flavour::Podman => vec!["rm", "-f", "-t", "0"],
                // docker's `rm -f` kills at once and has no timeout flag.
                Flavour::Docker => vec!["rm", "-f"],
            };
            args.extend(batch);
            let _ =
                self.command().args(&args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status();
        }
    }
}

fn find_on_path(name: &str, path: &OsString) -> Option<PathBuf> {
    std::env::split_paths(path).map(|dir| dir.join(name)).find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_bin(dir: &Path, name: &str) {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        std::fs::write(&path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn env(path: &Path, docker_host: Option<&str>) -> Vec<(OsString, OsString)> {
        let mut env = vec![("PATH".into(), path.as_os_str().to_owned())];
        if let Some(host) = docker_host {
            env.push(("DOCKER_HOST".into(), host.into()));
        }
        env
    }

    #[test]
    fn podman_first_then_docker_and_docker_host_wins() {
        let dir = tempfile::tempdir().unwrap();
        fake_bin(dir.path(), "docker");
        assert_eq!(ContainerEngine::detect(&env(dir.path(), None)).unwrap().flavour, Flavour::Docker);
        fake_bin(dir.path(), "podman");
        assert_eq!(ContainerEngine::detect(&env(dir.path(), None)).unwrap().flavour, Flavour::Podman);
        let chosen = ContainerEngine::detect(&env(dir.path(), Some("tcp://127.0.0.1:2375"))).unwrap();
        assert_eq!(chosen.flavour, Flavour::Docker);
    }

    #[test]
    fn neither_engine_is_an_error_with_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        let error = ContainerEngine::detect(&env(dir.path(), None)).unwrap_err();
        assert!(error.message.contains("neither podman nor docker"), "{}", error.message);
        assert!(error.hint.as_deref().unwrap_or_default().contains("install podman"));
    }
}
