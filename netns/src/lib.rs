//! authsome-netns: the Linux sandbox mechanics (namespaces, capture sockets, mounts, capability
//! drop). Knows nothing of HTTP, vaults or providers. All `unsafe` lives in `sys`.
//!
//! See `API.md` for the contract with the launcher and docs/architecture.md for the why.

mod codec;
mod defaults;
mod error;
mod plan;
mod proto;
mod spec;

pub use error::{HostFacts, NamespaceError, Step};
pub use proto::CommandStatus;
pub use spec::{
    ALWAYS_CAPTURED_TCP, CA_BUNDLE_PATHS, FsPolicy, GIT_DIR_PROTECTED, HOME_SECRETS, HOME_TOOLCHAINS,
    HOST_SERVICE_SOCKETS, HomePolicy, PROTECTED_NAMES, SandboxSpec, default_hidden_paths, default_home_toolchains,
    sandbox_ca_bundle_path,
};

#[cfg(target_os = "linux")]
mod channel;
#[cfg(target_os = "linux")]
mod helper;
#[cfg(target_os = "linux")]
mod init;
#[cfg(target_os = "linux")]
mod janitor;
#[cfg(target_os = "linux")]
mod mounts;
#[cfg(target_os = "linux")]
mod net;
#[cfg(target_os = "linux")]
mod placeholders;
#[cfg(target_os = "linux")]
mod probe;
#[cfg(target_os = "linux")]
mod sandbox;
#[cfg(target_os = "linux")]
mod seccomp;
#[cfg(target_os = "linux")]
mod signals;
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
mod sys;

#[cfg(target_os = "linux")]
pub use probe::{ProbeReport, probe, probe_with};
#[cfg(target_os = "linux")]
pub use sandbox::{CaptureSocket, PendingSandbox, Sandbox, Signaller};
#[cfg(target_os = "linux")]
pub use sys::die_with_parent;

/// `argv[1]` that puts the binary in helper mode.
pub const HELPER_ARG: &str = "__authsome-sandbox-helper";

/// Call first thing in `main`, before any thread or runtime exists: if `argv[1]` is
/// [`HELPER_ARG`], this process is a sandbox helper, and this never returns.
pub fn maybe_run_helper() {
    let mut args = std::env::args_os();
    if args.nth(1).as_deref() != Some(std::ffi::OsStr::new(HELPER_ARG)) {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        let fd = args.next().and_then(|a| a.to_str().and_then(|s| s.parse::<i32>().ok()));
        let code = match fd {
            Some(fd) if fd > 2 => helper::run(fd),
            _ => 125,
        };
        std::process::exit(code);
    }
    #[cfg(not(target_os = "linux"))]
    std::process::exit(125);
}
