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
}

/// The `--sandbox` part of a run.
#[derive(Debug)]
pub(crate) struct SandboxSettings {
    /// `--fs open`: the host filesystem as it is (hidden paths still hidden).
    pub(crate) open: bool,
    /// `--writable` paths, absolute.
    pub(crate) writable: Vec<PathBuf>,
    /// `--hide` paths, absolute.
    pub(crate) hide: Vec<PathBuf>,
    /// `--env NAME` / `--env NAME=VALUE`.
    pub(crate) env: Vec<EnvItem>,
    /// The working directory the command runs in.
    pub(crate) cwd: PathBuf,
    /// The user's home directory from the password database (not `$HOME`, which the caller
    /// controls: a wrong `HOME` must not unhide `~/.ssh`).
    pub(crate) user_home: PathBuf,
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
