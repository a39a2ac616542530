//! Real-kernel tests of the sandbox: real namespaces, real commands (sh, python3, curl, ip, nft,
//! unshare), the test process playing the launcher and accepting on the capture sockets.
//!
//! `harness = false` with `libtest-mimic`: `main` calls `maybe_run_helper()` first, so this
//! binary is its own helper, then runs the tests with libtest's usual command line (filters,
//! `--exact`, `--list`, `--ignored`). Run as root, every test runs twice: as root, and as an
//! unprivileged uid (rootless mode, `rootless::<name>`: this binary again through `setpriv`).
//! The tests are skipped (ignored) only when the kernel refuses user namespaces, and the
//! reason is printed.
//!
//! Safety: every test that tries an escape or sends traffic first checks, inside the sandbox,
//! that it is in a network namespace of its own holding only `lo` ("Guard for
//! destructive escape tests") and otherwise exits 99 without doing anything. All traffic stays
//! inside the sandbox's namespace.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use libtest_mimic::Trial;

mod filesystem;
mod hardening;
mod network;
mod process;

use filesystem::*;
use hardening::*;
use network::*;
use process::*;

use authsome_netns::{
    CaptureSocket, CommandStatus, FsPolicy, HomePolicy, NamespaceError, Sandbox, SandboxSpec, default_hidden_paths,
    maybe_run_helper, probe_with,
};

const ROOTLESS_ENV: &str = "AUTHSOME_NETNS_TEST_ROOTLESS";
const LAUNCHER_ENV: &str = "AUTHSOME_NETNS_TEST_LAUNCHER";
const KEYRING_ENV: &str = "AUTHSOME_NETNS_TEST_KEYRING";
const TTY_ENV: &str = "AUTHSOME_NETNS_TEST_TTY";
const NESTED_ENV: &str = "AUTHSOME_NETNS_TEST_NESTED_PROBE";
const ROOTLESS_UID: u32 = 64_123;
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const TEST_CA: &str = "-----BEGIN CERTIFICATE-----\nauthsome test bundle\n-----END CERTIFICATE-----\n";

/// Shell prelude: refuse to do anything unless we are in our own netns with only `lo`.
const GUARD: &str = r#"
guard() {
  [ "$(stat -L -c %i /proc/self/ns/net)" != "$AUTHSOME_TEST_HOST_NETNS" ] || { echo "GUARD: same netns as the host"; exit 99; }
  links=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\n' ' ')
  [ "$links" = "lo " ] || { echo "GUARD: unexpected links: $links"; exit 99; }
}
guard
"#;

struct Ctx {
    exe: PathBuf,
    host_netns: u64,
    base: PathBuf,
    ca: PathBuf,
    uid: u32,
}

type TestFn = fn(&Ctx) -> Result<(), String>;

/// Every real-kernel test, each named once: the macro takes the name from the function.
macro_rules! sandbox_tests {
    ($($test:ident),* $(,)?) => {
        &[$((stringify!($test), $test as TestFn)),*]
    };
}

const TESTS: &[(&str, TestFn)] = sandbox_tests![
    probe_live_run_succeeds,
    exit_code_propagates,
    large_environment_and_odd_arguments_arrive_intact,
    death_by_signal_propagates,
    background_processes_end_with_the_command,
    signals_are_forwarded_to_the_command,
    tcp_udp_and_inner_proxy_are_captured,
    curl_reaches_the_capture_listener,
    escape_attempts_fail,
    host_loopback_and_abstract_sockets_are_out_of_reach,
    host_root_is_read_only_and_cwd_writable,
    secrets_are_hidden_even_inside_writable_home,
    cwd_under_tmp_stays_writable,
    planted_git_config_hooks_and_editor_files_are_refused,
    nested_repositories_and_worktrees_are_protected,
    host_sockets_are_out_of_reach,
    more_home_secrets_are_hidden,
    a_working_directory_can_be_read_only_or_root,
    private_home_is_empty_writable_and_keeps_toolchains,
    placeholders_are_removed_on_every_ending,
    a_concurrent_sandbox_keeps_its_placeholders,
    back_to_back_runs_in_one_directory_start,
    overlapping_runs_in_one_directory_start_and_stay_protected,
    hidden_paths_that_appear_during_the_run_stay_hidden,
    proc_shows_only_the_sandbox,
    capabilities_are_dropped,
    sysctls_and_host_ipc_are_out_of_reach,
    terminal_injection_is_blocked,
    set_user_id_files_cannot_be_made,
    ca_bundle_and_resolv_conf_inside_only,
    open_policy_keeps_host_tree,
    stdio_passes_through_untouched,
    fails_closed_before_the_command_runs,
    launcher_death_kills_the_sandbox,
    helper_is_reaped_after_wait,
    probe_inside_a_sandbox_explains_the_refusal,
    session_keyring_is_fresh,
    ctrl_c_on_a_terminal_reaches_the_command,
];

/// Prefix of the trials that run one test again as an unprivileged uid.
const ROOTLESS_PREFIX: &str = "rootless::";

fn main() {
    maybe_run_helper();
    if std::env::var_os(LAUNCHER_ENV).is_some() {
        launcher_child();
    }
    if std::env::var_os(KEYRING_ENV).is_some() {
        keyring_child();
    }
    if std::env::var_os(TTY_ENV).is_some() {
        tty_child();
    }
    if std::env::var_os(NESTED_ENV).is_some() {
        nested_probe_child();
    }
    let mut args = libtest_mimic::Arguments::from_args();
    // One sandbox at a time, as a user runs them: the tests share the machine's ports and
    // the helper's timing assertions assume an otherwise idle sandbox.
    args.test_threads = Some(1);
    let rootless = std::env::var_os(ROOTLESS_ENV).is_some();
    let is_root = nix::unistd::geteuid().is_root();
    let ctx = Arc::new(Ctx::new());

    // The kernel refusing user namespaces is the one reason to skip, and it is said once here.
    let report = probe_with(&ctx.exe);
    let refused = match &report.live {
        Err(
            e @ (NamespaceError::UserNamespacesDisabled { .. }
            | NamespaceError::AppArmorRestricted { .. }
            | NamespaceError::InContainer { .. }),
        ) => {
            println!("SKIP all sandbox tests: the kernel refuses: {e} (hint: {})", e.hint());
            true
        }
        Err(e) => {
            println!("probe failed: {e:?} (hint: {})", e.hint());
            false
        }
        Ok(_) => false,
    };

    let mut trials: Vec<Trial> = TESTS
        .iter()
        .map(|&(name, test)| {
            let ctx = ctx.clone();
            Trial::test(name, move || test(&ctx).map_err(Into::into)).with_ignored_flag(refused)
        })
        .collect();
    // As root, every test runs a second time as an unprivileged uid (rootless mode).
    if is_root && !rootless {
        let rootless_exe = rootless_binary(&ctx).and_then(|exe| rootless_refused(&exe).map(|()| exe));
        trials.extend(TESTS.iter().map(|&(name, _)| {
            let exe = rootless_exe.clone();
            let ignored = refused || exe.is_err();
            Trial::test(format!("{ROOTLESS_PREFIX}{name}"), move || {
                let exe = exe.as_ref().map_err(|why| format!("rootless run impossible: {why}"))?;
                run_rootless(exe, name).map_err(Into::into)
            })
            .with_ignored_flag(ignored)
        }));
        if let Err(why) = &rootless_exe {
            println!("SKIP the rootless half: {why}");
        }
    }
    let conclusion = libtest_mimic::run(&args, trials);
    if is_root && !rootless {
        let _ = fs::remove_dir_all(rootless_dir());
    }
    let _ = fs::remove_dir_all(&ctx.base);
    conclusion.exit();
}

impl Ctx {
    fn new() -> Ctx {
        let uid = nix::unistd::geteuid().as_raw();
        // Not under /tmp: the sandbox's /tmp is private, and a cwd under $HOME is the usual case.
        let base = PathBuf::from(format!("/var/tmp/authsome-netns-test-{}-{uid}", std::process::id()));
        fs::create_dir_all(&base).expect("create the test base directory");
        let ca = base.join("combined-ca.pem");
        fs::write(&ca, TEST_CA).expect("write the test CA bundle");
        // A test binary under /tmp (a checkout there) would be hidden by the private /tmp of
        // the tests that exec it inside a sandbox: use a copy outside it.
        let mut exe = std::env::current_exe().expect("current_exe");
        if exe.starts_with("/tmp") {
            let copy = base.join("sandbox-test-binary");
            fs::copy(&exe, &copy).expect("copy the test binary out of /tmp");
            exe = copy;
        }
        Ctx { exe, host_netns: fs::metadata("/proc/self/ns/net").expect("stat our netns").ino(), base, ca, uid }
    }

    /// A fresh, empty working directory for one test.
    fn workdir(&self, name: &str) -> PathBuf {
        let dir = self.base.join(name);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create a test workdir");
        dir
    }

    fn spec(&self, cwd: &Path, script: &str) -> SandboxSpec {
        let mut spec = SandboxSpec::new("/bin/sh", cwd, &self.ca);
        spec.args = vec!["-c".into(), format!("exec >out.txt 2>&1\n{GUARD}\n{script}").into()];
        spec.env = vec![
            ("PATH".into(), PATH.into()),
            ("HOME".into(), cwd.join("home").into()),
            ("AUTHSOME_TEST_HOST_NETNS".into(), self.host_netns.to_string().into()),
        ];
        // the launcher's job: the working directory is writable only when listed
        spec.fs.writable = vec![cwd.to_path_buf()];
        spec
    }
}

/// Start, serve the capture sockets, release, wait; the command's status and its output.
fn run(spec: &SandboxSpec, serve_sockets: bool) -> Result<(CommandStatus, String), String> {
    let (mut sandbox, sockets) = Sandbox::start(&std::env::current_exe().unwrap(), spec)
        .map_err(|e| format!("start: {e} ({e:?}); hint: {}", e.hint()))?;
    if serve_sockets {
        serve(sockets);
    }
    sandbox.release().map_err(|e| format!("release: {e} ({e:?})"))?;
    let status = sandbox.wait().map_err(|e| format!("wait: {e:?}"))?;
    let out = fs::read_to_string(spec.cwd.join("out.txt")).unwrap_or_default();
    Ok((status, out))
}

fn expect_success(status: CommandStatus, out: &str) -> Result<(), String> {
    if status == CommandStatus::Exited(0) {
        Ok(())
    } else {
        Err(format!("command ended with {status:?}; output:\n{out}"))
    }
}

fn lines(out: &str) -> BTreeMap<String, String> {
    out.lines().filter_map(|l| l.split_once('=').map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))).collect()
}

fn check(cond: bool, what: &str, out: &str) -> Result<(), String> {
    if cond { Ok(()) } else { Err(format!("{what}; output:\n{out}")) }
}

fn probe_live_run_succeeds(ctx: &Ctx) -> Result<(), String> {
    let report = probe_with(&ctx.exe);
    report.live.map(drop).map_err(|e| format!("{e:?}; hint: {}", e.hint()))?;
    // what the launcher calls: the helper is /proc/self/exe
    let report = authsome_netns::probe();
    check(report.ok() && report.static_problem.is_none(), &format!("probe(): {report:?}"), "")
}

// ------------------------------------------------------------------------------------------
// rootless re-run

fn rootless_dir() -> PathBuf {
    PathBuf::from(format!("/var/tmp/authsome-netns-rootless-{}", std::process::id()))
}

/// A copy of this binary the unprivileged uid can run (the original may sit in a private tree).
fn rootless_binary(ctx: &Ctx) -> Result<PathBuf, String> {
    if !Path::new("/usr/bin/setpriv").exists() {
        return Err("setpriv (util-linux) is not installed".into());
    }
    let searchable =
        ctx.exe.ancestors().skip(1).all(|dir| fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o001 != 0));
    if searchable {
        return Ok(ctx.exe.clone());
    }
    let copy_dir = rootless_dir();
    fs::create_dir_all(&copy_dir).map_err(|e| e.to_string())?;
    fs::set_permissions(&copy_dir, fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
    let copy = copy_dir.join("sandbox-tests");
    fs::copy(&ctx.exe, &copy).map_err(|e| format!("copying the test binary: {e}"))?;
    Ok(copy)
}

/// `Err(why)` when the kernel refuses the unprivileged uid its namespaces (the rootless half
/// is then skipped, as the whole suite is when root is refused): a run of the probe test only.
fn rootless_refused(exe: &Path) -> Result<(), String> {
    let output = rootless_command(exe, "probe_live_run_succeeds").output().map_err(|e| format!("setpriv: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    match stdout.lines().find(|line| line.starts_with("SKIP all sandbox tests")) {
        Some(line) => Err(format!("as uid {ROOTLESS_UID}: {line}")),
        None => Ok(()),
    }
}

fn rootless_command(exe: &Path, name: &str) -> Command {
    let mut command = Command::new("/usr/bin/setpriv");
    command
        .args(["--reuid", &ROOTLESS_UID.to_string(), "--regid", &ROOTLESS_UID.to_string(), "--clear-groups", "--"])
        .arg(exe)
        .args(["--exact", name, "--nocapture"])
        .env(ROOTLESS_ENV, "1")
        .env("HOME", "/nonexistent")
        .current_dir("/");
    command
}

/// Run one test of this binary again as an unprivileged uid (no passwd entry needed).
fn run_rootless(exe: &Path, name: &str) -> Result<(), String> {
    let output = rootless_command(exe, name).output().map_err(|e| format!("setpriv: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(format!("the rootless run failed ({}):\n{stdout}{stderr}", output.status));
    }
    // The child must have run the test, not skipped or filtered it away.
    if !stdout.contains("1 passed") {
        return Err(format!("the rootless run did not pass the test:\n{stdout}{stderr}"));
    }
    Ok(())
}
