//! The default path lists the launcher and the planner share: what is hidden, what is kept
//! read-only in a private home, what is protected inside writable paths. Pure data (only
//! [`default_hidden_paths`] reads a directory listing).

use std::path::{Path, PathBuf};

/// Names kept read-only inside every writable path (and in the repositories found below it):
/// things the host runs or trusts later. Missing ones get an empty read-only placeholder for the
/// run, so they cannot be created either. Inside a git directory (`.git`, or where a `.git` file
/// points) [`GIT_DIR_PROTECTED`] are protected too; objects, refs and the index stay writable.
pub const PROTECTED_NAMES: &[&str] =
    &[".git", ".gitmodules", ".envrc", ".vscode", ".idea", ".mcp.json", ".cursor", ".claude"];

/// Entries of a git directory kept read-only: configuration and what it points git at. `modules`
/// (submodules) and `worktrees` are handled entry by entry: each is a git directory of its own.
pub const GIT_DIR_PROTECTED: &[&str] = &["config", "config.worktree", "hooks", "info", "commondir", "gitdir"];

/// Host sockets through which a command could act outside the sandbox with the caller's identity
/// (as root: start units, run containers). Hidden behind an empty file when they exist.
pub const HOST_SERVICE_SOCKETS: &[&str] = &[
    "/run/docker.sock",
    "/var/run/docker.sock",
    "/run/podman/podman.sock",
    "/var/run/podman/podman.sock",
    "/run/containerd/containerd.sock",
    "/run/dbus/system_bus_socket",
    "/var/run/dbus/system_bus_socket",
    "/run/systemd/private",
    "/run/snapd.socket",
    "/run/snapd-snap.socket",
    "/run/libvirt/libvirt-sock",
    "/run/crio/crio.sock",
    "/var/lib/lxd/unix.socket",
    "/var/snap/lxd/common/lxd/unix.socket",
    "/run/incus/unix.socket",
];

/// Credential files and stores under the home directory hidden by default: what a command in
/// `--fs home` mode must not read.
pub const HOME_SECRETS: &[&str] = &[
    ".authsome",
    ".ssh",
    ".aws",
    ".config/gh",
    ".gnupg",
    ".netrc",
    ".docker",
    ".kube",
    ".git-credentials",
    ".config/git/credentials",
    ".npmrc",
    ".yarnrc.yml",
    ".pypirc",
    ".cargo/credentials",
    ".cargo/credentials.toml",
    ".config/gcloud",
    ".azure",
    ".claude/.credentials.json",
    ".config/github-copilot",
    ".config/hub",
    ".config/op",
    ".password-store",
    ".local/share/keyrings",
    ".vault-token",
    ".terraform.d/credentials.tfrc.json",
    ".gem/credentials",
    ".m2/settings-security.xml",
    // shell and REPL histories
    ".bash_history",
    ".zsh_history",
    ".zhistory",
    ".histfile",
    ".sh_history",
    ".local/share/fish/fish_history",
    ".python_history",
    ".node_repl_history",
    ".psql_history",
    ".mysql_history",
    ".sqlite_history",
    ".lesshst",
    // browser profiles (cookies, saved passwords)
    ".mozilla",
    ".config/google-chrome",
    ".config/chromium",
    ".config/BraveSoftware",
    ".config/microsoft-edge",
    ".config/vivaldi",
    ".config/opera",
    "snap/firefox",
    "snap/chromium",
    ".var/app/org.mozilla.firefox",
    ".var/app/com.google.Chrome",
];

/// The default hidden paths, for a user whose home is `home`: `authsome_home`, every directory
/// of `home` that looks like an authsome home (`.authsome*`, the Python one included),
/// [`HOME_SECRETS`], `/run` and `/var/run` (daemon sockets; the sandbox recreates the
/// `resolv.conf`/`hosts` it needs there), `/run/user/<uid>`, [`HOST_SERVICE_SOCKETS`].
///
/// For `uid` 0 also `/etc/shadow`, `/etc/gshadow` and `/etc/ssh` (host keys), which only root can
/// read: a command running as the host's root, even without capabilities, is root to every
/// daemon that checks its peer's uid on a Unix socket, and to the file permission checks.
///
/// Reads `home`'s directory listing (the `.authsome*` entries); paths that do not exist are kept
/// here (the helper skips them, and keeps them from appearing during the run). The launcher
/// appends `--hide`.
pub fn default_hidden_paths(home: &Path, authsome_home: &Path, uid: u32) -> Vec<PathBuf> {
    let mut paths = vec![authsome_home.to_path_buf()];
    if let Ok(entries) = std::fs::read_dir(home) {
        let mut lookalikes: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_name().as_encoded_bytes().starts_with(b".authsome"))
            .map(|e| e.path())
            .collect();
        lookalikes.sort();
        paths.extend(lookalikes);
    }
    paths.extend(HOME_SECRETS.iter().map(|rel| home.join(rel)));
    paths.push(PathBuf::from("/run"));
    paths.push(PathBuf::from("/var/run"));
    if uid == 0 {
        // root-only secrets of the host itself: password hashes, SSH host keys
        paths.extend(["/etc/shadow", "/etc/gshadow", "/etc/ssh"].map(PathBuf::from));
    }
    paths.push(PathBuf::from(format!("/run/user/{uid}")));
    paths.extend(HOST_SERVICE_SOCKETS.iter().map(PathBuf::from));
    let mut seen = Vec::new();
    paths.retain(|p| {
        let fresh = !seen.contains(p);
        seen.push(p.clone());
        fresh
    });
    paths
}

/// Directories under `home` kept read-only in a private home when they exist: the toolchains
/// commands need. The launcher adds the directory holding the resolved command and `~/.gitconfig`.
pub const HOME_TOOLCHAINS: &[&str] = &[
    ".cargo/bin",
    ".rustup",
    ".nvm",
    ".pyenv",
    ".rbenv",
    ".local/bin",
    ".local/lib",
    ".local/share/mise",
    ".local/share/pnpm",
    ".bun",
    ".deno",
    ".volta",
    ".asdf",
    ".sdkman",
    ".juliaup",
    ".ghcup",
    ".elan",
    ".foundry/bin",
    "go",
    ".gitconfig",
    ".config/git/config",
    ".config/git/ignore",
    ".config/git/attributes",
];

/// [`HOME_TOOLCHAINS`] under `home`, for `HomePolicy::Private { read_only }` (missing ones are
/// skipped by the helper).
pub fn default_home_toolchains(home: &Path) -> Vec<PathBuf> {
    HOME_TOOLCHAINS.iter().map(|rel| home.join(rel)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_hidden_paths_cover_design_section_9() {
        let paths = default_hidden_paths(Path::new("/home/u"), Path::new("/home/u/.authsome"), 1000);
        for expected in [
            "/home/u/.authsome",
            "/home/u/.ssh",
            "/home/u/.aws",
            "/home/u/.config/gh",
            "/home/u/.gnupg",
            "/home/u/.netrc",
            "/home/u/.docker",
            "/home/u/.kube",
            "/run/user/1000",
            "/run/docker.sock",
            "/var/run/docker.sock",
            "/run/podman/podman.sock",
        ] {
            assert!(paths.contains(&PathBuf::from(expected)), "{expected} missing from {paths:?}");
        }
        for expected in [
            ".git-credentials",
            ".npmrc",
            ".pypirc",
            ".cargo/credentials.toml",
            ".config/gcloud",
            ".azure",
            ".claude/.credentials.json",
            ".config/github-copilot",
            ".bash_history",
            ".zsh_history",
            ".mozilla",
            ".config/google-chrome",
        ] {
            assert!(paths.contains(&Path::new("/home/u").join(expected)), "{expected} missing");
        }
        assert!(paths.iter().all(|p| p.is_absolute()));
        assert!(paths.contains(&PathBuf::from("/run")), "every uid loses /run: sockets stay reachable read-only");
        let root = default_hidden_paths(Path::new("/root"), Path::new("/root/.authsome"), 0);
        assert!(root.contains(&PathBuf::from("/run")) && root.contains(&PathBuf::from("/var/run")));
        assert!(root.contains(&PathBuf::from("/root/.ssh")));
        assert!(root.contains(&PathBuf::from("/etc/shadow")) && root.contains(&PathBuf::from("/etc/ssh")));
        assert!(!paths.contains(&PathBuf::from("/etc/shadow")), "a normal user cannot read it anyway");
        let mut unique = paths.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), paths.len(), "no duplicates");
    }

    #[test]
    fn every_authsome_looking_home_is_hidden() {
        let home = std::env::temp_dir().join(format!("authsome-netns-spec-{}", std::process::id()));
        for dir in [".authsome", ".authsome-rs", ".authsome.old", "project"] {
            std::fs::create_dir_all(home.join(dir)).unwrap();
        }
        let paths = default_hidden_paths(&home, &home.join("elsewhere"), 1000);
        std::fs::remove_dir_all(&home).unwrap();
        for hidden in [".authsome", ".authsome-rs", ".authsome.old", "elsewhere"] {
            assert!(paths.contains(&home.join(hidden)), "{hidden} must be hidden: {paths:?}");
        }
        assert!(!paths.contains(&home.join("project")));
    }

    #[test]
    fn toolchains_are_under_home_and_include_gitconfig() {
        let t = default_home_toolchains(Path::new("/home/u"));
        for expected in [".cargo/bin", ".rustup", ".nvm", ".pyenv", ".local/bin", ".local/lib", ".bun", ".deno", "go"] {
            assert!(t.contains(&Path::new("/home/u").join(expected)), "{expected} missing");
        }
        assert!(t.contains(&PathBuf::from("/home/u/.gitconfig")));
        assert!(t.iter().all(|p| p.starts_with("/home/u")));
        let secrets = default_hidden_paths(Path::new("/home/u"), Path::new("/home/u/.authsome"), 1000);
        assert!(t.iter().all(|p| !secrets.iter().any(|s| p.starts_with(s))), "no toolchain dir holds a secret");
    }
}
