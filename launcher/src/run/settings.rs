//! One run's settings, resolved once (by `cli::run`) from the flags, the policy file and the
//! environment, then read by everything under `run/`. Nothing under `run/` reads argv, the
//! environment or a policy file itself.

use std::ffi::OsString;
use std::path::PathBuf;

use authsome_proxy::{EgressPolicy, UpstreamConfig};

/// What `authsome run` was asked to do.
#[derive(Debug)]
pub(crate) struct RunSettings {
    /// The command and its arguments (never empty).
    pub(crate) command: Vec<OsString>,
    /// `--connection PROVIDER=NAME`: the connection used when a request carries no placeholder.
    pub(crate) connections: Vec<(String, String)>,
    /// `--provider NAME`: expose only these providers' connections (empty: every connected one).
    pub(crate) providers: Vec<String>,
    /// `--inspect-all`: intercept every HTTPS host, not only provider hosts.
    pub(crate) inspect_all: bool,
    /// Egress rules from the flags and the policy file.
    pub(crate) egress: EgressPolicy,
    /// Extra TCP ports the sandbox captures (flags and policy file).
    pub(crate) ports: Vec<u16>,
    /// Upstream trust and dialling: `AUTHSOME_EXTRA_ROOTS`, `AUTHSOME_CONNECT_TO`,
    /// `--allow-private`.
    pub(crate) upstream: UpstreamConfig,
    /// The environment authsome was started with; the child's is built from it.
    pub(crate) environment: Vec<(OsString, OsString)>,
    /// Set for `--sandbox`.
    pub(crate) sandbox: Option<SandboxSettings>,
    /// `--report`: the per-host table on stderr when the command ends.
    pub(crate) report: bool,
    /// `--learn FILE`: where the policy this run needed is written when it ends.
    pub(crate) learn: Option<std::sync::Arc<super::learn::LearnTarget>>,
    /// `--ask`: put refused destinations to the person at the terminal.
    pub(crate) ask: Option<AskSettings>,
}

/// How `--ask` asks.
#[derive(Debug, Clone)]
pub(crate) struct AskSettings {
    /// How long a request waits for an answer before it is denied (`AUTHSOME_ASK_TIMEOUT`).
    pub(crate) timeout: std::time::Duration,
    /// `--policy FILE`, absolute: where "always" adds a host.
    pub(crate) policy: Option<PathBuf>,
}

/// The `--sandbox` part of a run.
#[derive(Debug)]
pub(crate) struct SandboxSettings {
    pub(crate) fs: FsMode,
    /// Writable host paths, absolute: the working directory when it may be writable, then
    /// `--writable`.
    pub(crate) writable: Vec<PathBuf>,
    /// `--read` paths, absolute.
    pub(crate) read: Vec<PathBuf>,
    /// `--hide` paths, absolute.
    pub(crate) hide: Vec<PathBuf>,
    /// Kept read-only wherever they are: the policy file, authsome's own binary.
    pub(crate) protect: Vec<PathBuf>,
    /// `--env NAME` / `--env NAME=VALUE`.
    pub(crate) env: Vec<EnvItem>,
    /// The working directory the command runs in.
    pub(crate) cwd: PathBuf,
    /// Why the working directory is not writable, to tell the user (it is their home, an
    /// ancestor of it, or `/tmp`).
    pub(crate) cwd_notice: Option<String>,
    /// The user's home directory from the password database (not `$HOME`, which the caller
    /// controls: a wrong `HOME` must not unhide `~/.ssh`).
    pub(crate) user_home: PathBuf,
    /// `$HOME` when it names another directory: its secrets are hidden too.
    pub(crate) env_home: Option<PathBuf>,
    /// Directories under the home kept readable in a private home: toolchains and the one
    /// holding the command.
    pub(crate) home_read_only: Vec<PathBuf>,
    /// Which sandbox backend runs the command.
    pub(crate) backend: SandboxBackend,
    /// `sandbox.image` from the configuration: where namespaces are unavailable, `--sandbox`
    /// runs the command in a container from this image.
    pub(crate) fallback_image: Option<String>,
}

/// Which mechanism builds the sandbox (`--sandbox[=namespace|container]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SandboxBackend {
    /// Linux namespaces made by authsome.
    Namespace,
    /// A sidecar and a workload container from IMAGE, through podman or docker;
    /// `mount_cwd: false` (`--no-mount-cwd`) mounts no host path at all.
    Container { image: String, mount_cwd: bool },
}

/// How much of the host filesystem the sandbox shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FsMode {
    /// Host read-only, a private empty home (toolchains readable), writable paths writable.
    Restricted,
    /// As restricted, but the real home readable (credential files hidden).
    Home,
    /// The host filesystem as it is; hidden and protected paths still apply.
    Open,
}

/// One `--env` item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EnvItem {
    /// Pass this variable from authsome's environment.
    Pass(String),
    /// Set it to this value.
    Set(String, String),
}

impl RunSettings {
    /// The program (the first word of the command).
    pub(crate) fn program(&self) -> &OsString {
        &self.command[0]
    }
}
