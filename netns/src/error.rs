//! [`NamespaceError`], the setup [`Step`]s it names, and the mapping from "step X failed with
//! errno E on a host with these [`HostFacts`]" to an error that says what to do. Pure.

use std::ffi::OsString;
use std::fmt;
use std::io;

/// One step of building the sandbox; a failure names the step it happened in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum Step {
    /// Starting the sandbox helper.
    SpawnHelper = 1,
    /// Sending the sandbox spec to the helper.
    SendSpec,
    /// Reading the sandbox spec.
    ReadSpec,
    /// Creating the user, network, mount and pid namespaces.
    Unshare,
    /// Writing /proc/self/setgroups.
    SetGroups,
    /// Writing /proc/self/uid_map.
    UidMap,
    /// Writing /proc/self/gid_map.
    GidMap,
    /// Disabling nested user namespaces (user.max_user_namespaces=0 inside).
    LimitNesting,
    /// Opening a netlink socket in the new network namespace.
    Netlink,
    /// Bringing lo up.
    LoopbackUp,
    /// Adding the route `local 0.0.0.0/0 dev lo`.
    LocalRouteV4,
    /// Adding the route `local ::/0 dev lo`.
    LocalRouteV6,
    /// Binding a capture listener.
    BindCapture,
    /// Handing the capture sockets to the launcher.
    SendSockets,
    /// Making the mount namespace private.
    MountPrivate,
    /// Opening a host path for the sandbox.
    OpenHostPath,
    /// Making the host root read-only.
    ReadOnlyRoot,
    /// Mounting a tmpfs.
    MountTmpfs,
    /// Building the sandbox's /dev.
    MountDev,
    /// Writing resolv.conf/hosts for the sandbox.
    WriteStaged,
    /// Bind-mounting a file into the sandbox.
    BindMount,
    /// Making a writable path writable.
    MakeWritable,
    /// Hiding a host path.
    HidePath,
    /// Changing to the working directory.
    Chdir,
    /// Finding the command.
    ResolveCommand,
    /// Waiting for the launcher to release the command.
    WaitRelease,
    /// Starting the sandbox's init process.
    ForkInit,
    /// Mounting /proc for the sandbox.
    MountProc,
    /// Starting the command.
    ForkCommand,
    /// Resetting signal handlers.
    ResetSignals,
    /// Starting a new session.
    NewSession,
    /// Joining a fresh session keyring.
    JoinKeyring,
    /// Closing inherited file descriptors.
    SealFds,
    /// Dropping the capability bounding set.
    DropBounding,
    /// Clearing ambient capabilities.
    ClearAmbient,
    /// Clearing inheritable capabilities.
    ClearInheritable,
    /// Clearing permitted capabilities.
    ClearPermitted,
    /// Setting no_new_privs.
    NoNewPrivs,
    /// Installing the seccomp filter.
    Seccomp,
    /// Executing the command.
    Exec,
    /// Keeping a path the host runs later read-only inside a writable path.
    ProtectPath,
}

impl Step {
    const ALL: [Step; 41] = [
        Step::SpawnHelper,
        Step::SendSpec,
        Step::ReadSpec,
        Step::Unshare,
        Step::SetGroups,
        Step::UidMap,
        Step::GidMap,
        Step::LimitNesting,
        Step::Netlink,
        Step::LoopbackUp,
        Step::LocalRouteV4,
        Step::LocalRouteV6,
        Step::BindCapture,
        Step::SendSockets,
        Step::MountPrivate,
        Step::OpenHostPath,
        Step::ReadOnlyRoot,
        Step::MountTmpfs,
        Step::MountDev,
        Step::WriteStaged,
        Step::BindMount,
        Step::MakeWritable,
        Step::HidePath,
        Step::Chdir,
        Step::ResolveCommand,
        Step::WaitRelease,
        Step::ForkInit,
        Step::MountProc,
        Step::ForkCommand,
        Step::ResetSignals,
        Step::NewSession,
        Step::JoinKeyring,
        Step::SealFds,
        Step::DropBounding,
        Step::ClearAmbient,
        Step::ClearInheritable,
        Step::ClearPermitted,
        Step::NoNewPrivs,
        Step::Seccomp,
        Step::Exec,
        Step::ProtectPath,
    ];

    /// The step's number on the wire between helper and launcher.
    pub fn code(self) -> u16 {
        self as u16
    }

    /// The step with this wire number, if any.
    pub fn from_code(code: u16) -> Option<Step> {
        Step::ALL.iter().copied().find(|s| s.code() == code)
    }

    /// Steps that run after `unshare`, inside the new user namespace: an EPERM there (not in
    /// unshare itself) is the AppArmor signature.
    fn inside_userns(self) -> bool {
        self.code() > Step::Unshare.code()
    }

    /// What the step does, as the error message names it ("… failed while *this*").
    pub fn describe(self) -> &'static str {
        match self {
            Step::SpawnHelper => "starting the sandbox helper",
            Step::SendSpec => "sending the sandbox spec to the helper",
            Step::ReadSpec => "reading the sandbox spec",
            Step::Unshare => "creating the user, network, mount and pid namespaces",
            Step::SetGroups => "writing /proc/self/setgroups",
            Step::UidMap => "writing /proc/self/uid_map",
            Step::GidMap => "writing /proc/self/gid_map",
            Step::LimitNesting => "disabling nested user namespaces (user.max_user_namespaces=0 inside)",
            Step::Netlink => "opening a netlink socket in the new network namespace",
            Step::LoopbackUp => "bringing lo up",
            Step::LocalRouteV4 => "adding the route `local 0.0.0.0/0 dev lo`",
            Step::LocalRouteV6 => "adding the route `local ::/0 dev lo`",
            Step::BindCapture => "binding a capture listener",
            Step::SendSockets => "handing the capture sockets to the launcher",
            Step::MountPrivate => "making the mount namespace private",
            Step::OpenHostPath => "opening a host path for the sandbox",
            Step::ReadOnlyRoot => "making the host root read-only",
            Step::MountTmpfs => "mounting a tmpfs",
            Step::MountDev => "building the sandbox's /dev",
            Step::WriteStaged => "writing resolv.conf/hosts for the sandbox",
            Step::BindMount => "bind-mounting a file into the sandbox",
            Step::MakeWritable => "making a writable path writable",
            Step::HidePath => "hiding a host path",
            Step::Chdir => "changing to the working directory",
            Step::ResolveCommand => "finding the command",
            Step::WaitRelease => "waiting for the launcher to release the command",
            Step::ForkInit => "starting the sandbox's init process",
            Step::MountProc => "mounting /proc for the sandbox",
            Step::ForkCommand => "starting the command",
            Step::ResetSignals => "resetting signal handlers",
            Step::NewSession => "starting a new session",
            Step::JoinKeyring => "joining a fresh session keyring",
            Step::SealFds => "closing inherited file descriptors",
            Step::DropBounding => "dropping the capability bounding set",
            Step::ClearAmbient => "clearing ambient capabilities",
            Step::ClearInheritable => "clearing inheritable capabilities",
            Step::ClearPermitted => "clearing permitted capabilities",
            Step::NoNewPrivs => "setting no_new_privs",
            Step::Seccomp => "installing the seccomp filter",
            Step::Exec => "executing the command",
            Step::ProtectPath => "keeping a path the host runs later read-only inside a writable path",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// Why a sandbox could not be built or run. No variant ever holds a secret: paths, ports, steps.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NamespaceError {
    /// A sysctl forbids (unprivileged) user namespaces.
    #[error("user namespaces are disabled on this system ({setting})")]
    UserNamespacesDisabled {
        /// The sysctl and its value, e.g. `user.max_user_namespaces = 0`.
        setting: String,
    },
    #[error(
        "user namespaces are restricted by AppArmor (kernel.apparmor_restrict_unprivileged_userns=1): {step} failed"
    )]
    /// Ubuntu's AppArmor restriction: the namespace was made but nothing may be done inside.
    AppArmorRestricted {
        /// The first step refused inside the new user namespace.
        step: Step,
        /// The kernel's answer (EPERM or EACCES).
        #[source]
        source: io::Error,
    },
    #[error("cannot build a sandbox inside this container ({detail}): {step} failed")]
    /// We run inside a container that does not grant what a sandbox needs.
    InContainer {
        /// The step that was refused.
        step: Step,
        /// Why we think this is a container (`/.dockerenv exists`, a cgroup marker, …).
        detail: String,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
    #[error("sandbox setup failed while {step}{}", detail_suffix(.detail))]
    /// Any other failure while building the sandbox.
    Setup {
        /// The step that failed.
        step: Step,
        /// What the step worked on (a path, an address), or empty.
        detail: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The command exists nowhere on the `PATH` the sandbox sees.
    #[error("command not found in the sandbox: {}", .program.to_string_lossy())]
    CommandNotFound {
        /// The command as given in the spec.
        program: OsString,
    },
    /// The command was found but could not be executed.
    #[error("could not execute {} in the sandbox", .program.to_string_lossy())]
    Exec {
        /// The command as given in the spec.
        program: OsString,
        /// Why `execve` refused (EACCES, ENOEXEC, E2BIG, …).
        #[source]
        source: io::Error,
    },
    /// The spec fails [`SandboxSpec::validate`](crate::SandboxSpec::validate) or is too large.
    #[error("invalid sandbox spec: {0}")]
    InvalidSpec(String),
    /// The helper said something unexpected, or vanished without the command's status.
    #[error("the sandbox helper broke the protocol: {0}")]
    Protocol(String),
    /// Not Linux.
    #[error("the network sandbox is only available on Linux")]
    Unsupported,
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() { String::new() } else { format!(" ({detail})") }
}

impl NamespaceError {
    /// What the user should do about it, for the launcher's `hint:` line.
    pub fn hint(&self) -> &'static str {
        match self {
            NamespaceError::UserNamespacesDisabled { .. } => {
                "enable unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1 / \
                 user.max_user_namespaces>0), or use plain `authsome run` (no sandbox)"
            }
            NamespaceError::AppArmorRestricted { .. } => {
                "install an AppArmor profile for the authsome binary that grants `userns,` \
                 (see README#ubuntu), or use plain `authsome run` (no sandbox)"
            }
            NamespaceError::InContainer { .. } => {
                "run authsome on the host, give the container user-namespace rights (e.g. docker \
                 --security-opt seccomp=unconfined --security-opt apparmor=unconfined), or use plain \
                 `authsome run` (no sandbox)"
            }
            NamespaceError::Setup { .. } => "run `authsome doctor --sandbox` to see what this system allows",
            NamespaceError::CommandNotFound { .. } => {
                "check the command name and the PATH given to the sandbox; host paths hidden by \
                 the filesystem policy are not visible inside"
            }
            NamespaceError::Exec { .. } => {
                "check that the command is an executable for this machine and that the filesystem \
                 policy does not hide it"
            }
            NamespaceError::InvalidSpec(_) => "fix the sandbox options (ports, paths, environment)",
            NamespaceError::Protocol(_) => {
                "the authsome binary may have been replaced while running; run it again, and \
                 report a bug if it persists"
            }
            NamespaceError::Unsupported => "sandboxes need Linux; use plain `authsome run` here",
        }
    }
}

/// A failed step inside the helper, init or the command's pre-exec code, before it is sent to
/// the launcher (which turns it into a [`NamespaceError`] with [`classify`]).
#[cfg(target_os = "linux")]
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) step: Step,
    pub(crate) source: io::Error,
    /// What the step was working on (a path, an address, the program); may be empty.
    pub(crate) detail: String,
}

#[cfg(target_os = "linux")]
impl Failure {
    pub(crate) fn new(step: Step, source: impl Into<io::Error>, detail: impl Into<String>) -> Self {
        Failure { step, source: source.into(), detail: detail.into() }
    }

    /// The `Failed` message: the errno when there is one (`EIO` otherwise, with the error's
    /// text as the detail so the launcher still learns what went wrong).
    pub(crate) fn message_for_launcher(&self) -> crate::proto::FromHelper {
        crate::proto::FromHelper::Failed {
            step: self.step,
            errno: self.source.raw_os_error().unwrap_or(libc_errno::EIO),
            detail: if self.source.raw_os_error().is_some() || !self.detail.is_empty() {
                self.detail.clone()
            } else {
                self.source.to_string()
            },
        }
    }
}

/// Facts about the host that turn a bare errno into an actionable error.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFacts {
    /// The caller's effective uid (root is exempt from some restrictions).
    pub euid: u32,
    /// `kernel.unprivileged_userns_clone` (Debian/Ubuntu kernels), if present.
    pub unprivileged_userns_clone: Option<u64>,
    /// `user.max_user_namespaces`.
    pub max_user_namespaces: Option<u64>,
    /// `kernel.apparmor_restrict_unprivileged_userns` (Ubuntu ≥ 23.10), if present.
    pub apparmor_restrict_userns: Option<u64>,
    /// Why we think we run inside a container, if we do.
    pub container: Option<String>,
}

/// Map a failed step to the error the user should see.
pub(crate) fn classify(step: Step, errno: i32, detail: String, facts: &HostFacts) -> NamespaceError {
    let source = io::Error::from_raw_os_error(errno);
    let denied = matches!(errno, libc_errno::EPERM | libc_errno::EACCES);
    // The command's own failure to execute (no exec bit, a directory, a bad interpreter) says
    // nothing about the host's namespace support: never blame AppArmor or a container for it.
    if step == Step::Exec {
        return NamespaceError::Exec { program: detail.into(), source };
    }
    if step == Step::Unshare && (denied || matches!(errno, libc_errno::ENOSPC | libc_errno::EUSERS)) {
        if facts.max_user_namespaces == Some(0) {
            return NamespaceError::UserNamespacesDisabled { setting: "user.max_user_namespaces = 0".into() };
        }
        if facts.unprivileged_userns_clone == Some(0) && facts.euid != 0 {
            return NamespaceError::UserNamespacesDisabled { setting: "kernel.unprivileged_userns_clone = 0".into() };
        }
    }
    if denied && step.inside_userns() && facts.apparmor_restrict_userns == Some(1) && facts.euid != 0 {
        return NamespaceError::AppArmorRestricted { step, source };
    }
    let namespace_step = step.code() >= Step::Unshare.code() && step.code() < Step::WaitRelease.code();
    if (denied || errno == libc_errno::EINVAL)
        && namespace_step
        && let Some(container) = &facts.container
    {
        return NamespaceError::InContainer { step, detail: container.clone(), source };
    }
    match step {
        Step::ResolveCommand if errno == libc_errno::ENOENT => {
            NamespaceError::CommandNotFound { program: detail.into() }
        }
        Step::Exec => NamespaceError::Exec { program: detail.into(), source },
        _ => NamespaceError::Setup { step, detail, source },
    }
}

/// The few errno values we match on, spelled out so this module stays free of `libc`.
mod libc_errno {
    pub const EPERM: i32 = 1;
    pub const ENOENT: i32 = 2;
    pub const EIO: i32 = 5;
    pub const EACCES: i32 = 13;
    pub const EINVAL: i32 = 22;
    pub const ENOSPC: i32 = 28;
    pub const EUSERS: i32 = 87;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> HostFacts {
        HostFacts { euid: 1000, ..HostFacts::default() }
    }

    #[test]
    fn step_codes_round_trip() {
        for s in Step::ALL {
            assert_eq!(Step::from_code(s.code()), Some(s));
            assert!(!s.describe().is_empty());
        }
        assert_eq!(Step::from_code(0), None);
        assert_eq!(Step::from_code(999), None);
    }

    #[test]
    fn unshare_eperm_with_userns_sysctl_off_says_disabled() {
        let f = HostFacts { unprivileged_userns_clone: Some(0), ..facts() };
        let e = classify(Step::Unshare, 1, String::new(), &f);
        assert!(
            matches!(e, NamespaceError::UserNamespacesDisabled { ref setting } if setting.contains("unprivileged_userns_clone"))
        );
        assert!(e.hint().contains("plain `authsome run`"));
        // root is not subject to the Debian knob
        let root = HostFacts { euid: 0, ..f };
        assert!(matches!(classify(Step::Unshare, 1, String::new(), &root), NamespaceError::Setup { .. }));
    }

    #[test]
    fn unshare_enospc_with_zero_max_user_namespaces_says_disabled() {
        let f = HostFacts { max_user_namespaces: Some(0), ..facts() };
        let e = classify(Step::Unshare, 28, String::new(), &f);
        assert!(
            matches!(e, NamespaceError::UserNamespacesDisabled { ref setting } if setting.contains("max_user_namespaces"))
        );
    }

    #[test]
    fn netlink_eperm_under_apparmor_restriction_says_apparmor() {
        let f = HostFacts { apparmor_restrict_userns: Some(1), ..facts() };
        let e = classify(Step::LoopbackUp, 1, String::new(), &f);
        assert!(matches!(e, NamespaceError::AppArmorRestricted { step: Step::LoopbackUp, .. }));
        assert!(e.hint().contains("userns,"));
        assert!(e.hint().contains("plain `authsome run`"));
        // the same errno without the sysctl is a plain setup failure
        assert!(matches!(classify(Step::LoopbackUp, 1, String::new(), &facts()), NamespaceError::Setup { .. }));
    }

    #[test]
    fn eperm_in_a_container_says_container() {
        let f = HostFacts { container: Some("/.dockerenv exists".into()), ..facts() };
        let e = classify(Step::MountPrivate, 13, String::new(), &f);
        assert!(matches!(e, NamespaceError::InContainer { .. }));
        assert!(e.to_string().contains("/.dockerenv"));
        assert!(e.hint().contains("plain `authsome run`"));
    }

    #[test]
    fn command_errors_name_the_program() {
        let e = classify(Step::ResolveCommand, 2, "nosuchcmd".into(), &facts());
        assert!(matches!(e, NamespaceError::CommandNotFound { .. }));
        assert!(e.to_string().contains("nosuchcmd"));
        assert!(e.hint().contains("PATH"));
        let e = classify(Step::Exec, 8, "./script".into(), &facts());
        assert!(matches!(e, NamespaceError::Exec { .. }));
        // a file without the exec bit, under AppArmor's userns restriction or in a container
        for f in [
            HostFacts { apparmor_restrict_userns: Some(1), euid: 1000, ..facts() },
            HostFacts { container: Some("/.dockerenv exists".into()), ..facts() },
        ] {
            let e = classify(Step::Exec, 13, "./noexec".into(), &f);
            assert!(matches!(e, NamespaceError::Exec { .. }), "{e:?}");
        }
    }

    #[test]
    fn every_error_has_a_hint_and_setup_names_the_step() {
        let e = classify(Step::BindCapture, 98, "[::]:443".into(), &facts());
        assert_eq!(e.to_string(), "sandbox setup failed while binding a capture listener ([::]:443)");
        for e in [
            e,
            NamespaceError::InvalidSpec("x".into()),
            NamespaceError::Protocol("x".into()),
            NamespaceError::Unsupported,
        ] {
            assert!(!e.hint().is_empty());
        }
    }
}
