//! `authsome doctor --sandbox` and the launcher's pre-flight: what this host allows, and a live
//! run of the whole sandbox with `true`.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{HostFacts, NamespaceError};
use crate::proto::CommandStatus;
use crate::sandbox::Sandbox;
use crate::spec::{CA_BUNDLE_PATHS, SandboxSpec};

/// What [`probe`] found.
#[derive(Debug)]
pub struct ProbeReport {
    /// The host's sysctls and container markers.
    pub facts: HostFacts,
    /// A problem visible from the sysctls alone (the live run will fail too).
    pub static_problem: Option<NamespaceError>,
    /// The live run: how long `start` + `release` + `wait` of `true` took, or why it failed.
    pub live: Result<Duration, NamespaceError>,
}

impl ProbeReport {
    /// Whether the live run worked: the sandbox is usable here.
    pub fn ok(&self) -> bool {
        self.live.is_ok()
    }

    /// The error to show the user, if the sandbox does not work here.
    pub fn error(&self) -> Option<&NamespaceError> {
        self.live.as_ref().err()
    }
}

/// Probe with the running binary as the helper (the launcher's `main` calls
/// [`maybe_run_helper`](crate::maybe_run_helper)).
pub fn probe() -> ProbeReport {
    probe_with(Path::new("/proc/self/exe"))
}

/// Probe with `exe` as the helper binary.
pub fn probe_with(exe: &Path) -> ProbeReport {
    let facts = HostFacts::gather();
    let static_problem = static_problem(&facts);
    let live = live_probe(exe);
    ProbeReport { facts, static_problem, live }
}

fn static_problem(facts: &HostFacts) -> Option<NamespaceError> {
    if facts.max_user_namespaces == Some(0) {
        return Some(NamespaceError::UserNamespacesDisabled { setting: "user.max_user_namespaces = 0".into() });
    }
    if facts.unprivileged_userns_clone == Some(0) && facts.euid != 0 {
        return Some(NamespaceError::UserNamespacesDisabled { setting: "kernel.unprivileged_userns_clone = 0".into() });
    }
    None
}

fn live_probe(exe: &Path) -> Result<Duration, NamespaceError> {
    let ca = CA_BUNDLE_PATHS.iter().map(PathBuf::from).find(|p| p.is_file()).unwrap_or_else(|| "/dev/null".into());
    let mut spec = SandboxSpec::new("true", "/tmp", ca);
    spec.env = vec![("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into())];
    let started = Instant::now();
    let (mut sandbox, sockets) = Sandbox::start(exe, &spec)?;
    drop(sockets);
    sandbox.release()?;
    match sandbox.wait()? {
        CommandStatus::Exited(0) => Ok(started.elapsed()),
        other => Err(NamespaceError::Protocol(format!("`true` in the sandbox ended with {other:?}"))),
    }
}

fn read_number(path: &str) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

impl HostFacts {
    /// Read the sysctls and container markers of this host.
    pub fn gather() -> HostFacts {
        let cgroup = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let uid_map = fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
        HostFacts {
            euid: nix::unistd::geteuid().as_raw(),
            unprivileged_userns_clone: read_number("/proc/sys/kernel/unprivileged_userns_clone"),
            max_user_namespaces: read_number("/proc/sys/user/max_user_namespaces"),
            apparmor_restrict_userns: read_number("/proc/sys/kernel/apparmor_restrict_unprivileged_userns"),
            container: detect_container(
                Path::new("/.dockerenv").exists(),
                Path::new("/run/.containerenv").exists(),
                &cgroup,
                &uid_map,
            ),
        }
    }
}

/// Why we believe we are inside a container (or another user namespace), if we do.
pub(crate) fn detect_container(dockerenv: bool, containerenv: bool, cgroup: &str, uid_map: &str) -> Option<String> {
    if dockerenv {
        return Some("/.dockerenv exists".into());
    }
    if containerenv {
        return Some("/run/.containerenv exists (podman)".into());
    }
    for marker in ["docker", "kubepods", "containerd", "libpod", "lxc"] {
        if cgroup.contains(marker) {
            return Some(format!("/proc/self/cgroup mentions {marker}"));
        }
    }
    let map: Vec<&str> = uid_map.split_whitespace().collect();
    if !map.is_empty() && map != ["0", "0", "4294967295"] {
        return Some(format!("already inside a user namespace (uid_map: {})", map.join(" ")));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_markers_are_recognised() {
        let host_map = "         0          0 4294967295\n";
        assert_eq!(detect_container(false, false, "0::/user.slice/session-1.scope\n", host_map), None);
        assert!(detect_container(true, false, "", host_map).unwrap().contains("dockerenv"));
        assert!(detect_container(false, true, "", host_map).unwrap().contains("podman"));
        assert!(
            detect_container(false, false, "0::/kubepods/besteffort/pod1\n", host_map).unwrap().contains("kubepods")
        );
        assert!(detect_container(false, false, "", "0 1000 1\n").unwrap().contains("user namespace"));
    }

    #[test]
    fn static_problems_name_the_sysctl() {
        let off = HostFacts { euid: 1000, unprivileged_userns_clone: Some(0), ..HostFacts::default() };
        let e = static_problem(&off).unwrap();
        assert!(e.to_string().contains("unprivileged_userns_clone"));
        assert!(e.hint().contains("plain `authsome run`"));
        let zero = HostFacts { euid: 0, max_user_namespaces: Some(0), ..HostFacts::default() };
        assert!(static_problem(&zero).unwrap().to_string().contains("max_user_namespaces"));
        assert!(static_problem(&HostFacts { euid: 1000, ..HostFacts::default() }).is_none());
    }
}
