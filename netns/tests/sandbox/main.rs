//! Real-kernel tests of the sandbox: real namespaces, real commands (sh, python3, curl, ip, nft,
//! unshare), the test process playing the launcher and accepting on the capture sockets.
//!
//! `harness = false`: `main` calls `maybe_run_helper()` first, so this binary is its own helper.
//! Run as root it runs every test, then runs itself again as an unprivileged uid (rootless
//! mode) through `setpriv`. A test is skipped only when the kernel refuses user namespaces,
//! and the reason is printed.
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
use std::thread;
use std::time::{Duration, Instant};

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
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let rootless = std::env::var_os(ROOTLESS_ENV).is_some();
    let mode = if rootless {
        "rootless"
    } else if nix::unistd::geteuid().is_root() {
        "root"
    } else {
        "user"
    };
    let ctx = Ctx::new();

    let report = probe_with(&ctx.exe);
    if let Err(e) = &report.live {
        if matches!(
            e,
            NamespaceError::UserNamespacesDisabled { .. }
                | NamespaceError::AppArmorRestricted { .. }
                | NamespaceError::InContainer { .. }
        ) {
            println!("SKIP [{mode}] all sandbox tests: the kernel refuses: {e} (hint: {})", e.hint());
            println!("0 passed, 0 failed, 1 skipped");
            return;
        }
        println!("probe failed [{mode}]: {e:?} (hint: {})", e.hint());
    }

    let tests: &[(&str, TestFn)] = &[
        ("probe_live_run_succeeds", probe_live_run_succeeds),
        ("exit_code_propagates", exit_code_propagates),
        ("large_environment_and_odd_arguments_arrive_intact", large_environment_and_odd_arguments_arrive_intact),
        ("death_by_signal_propagates", death_by_signal_propagates),
        ("background_processes_end_with_the_command", background_processes_end_with_the_command),
        ("signals_are_forwarded_to_the_command", signals_are_forwarded_to_the_command),
        ("tcp_udp_and_inner_proxy_are_captured", tcp_udp_and_inner_proxy_are_captured),
        ("curl_reaches_the_capture_listener", curl_reaches_the_capture_listener),
        ("escape_attempts_fail", escape_attempts_fail),
        ("host_loopback_and_abstract_sockets_are_out_of_reach", host_loopback_and_abstract_sockets_are_out_of_reach),
        ("host_root_is_read_only_and_cwd_writable", host_root_is_read_only_and_cwd_writable),
        ("secrets_are_hidden_even_inside_writable_home", secrets_are_hidden_even_inside_writable_home),
        ("cwd_under_tmp_stays_writable", cwd_under_tmp_stays_writable),
        (
            "planted_git_config_hooks_and_editor_files_are_refused",
            planted_git_config_hooks_and_editor_files_are_refused,
        ),
        ("nested_repositories_and_worktrees_are_protected", nested_repositories_and_worktrees_are_protected),
        ("host_sockets_are_out_of_reach", host_sockets_are_out_of_reach),
        ("more_home_secrets_are_hidden", more_home_secrets_are_hidden),
        ("a_working_directory_can_be_read_only_or_root", a_working_directory_can_be_read_only_or_root),
        ("private_home_is_empty_writable_and_keeps_toolchains", private_home_is_empty_writable_and_keeps_toolchains),
        ("placeholders_are_removed_on_every_ending", placeholders_are_removed_on_every_ending),
        ("a_concurrent_sandbox_keeps_its_placeholders", a_concurrent_sandbox_keeps_its_placeholders),
        ("back_to_back_runs_in_one_directory_start", back_to_back_runs_in_one_directory_start),
        ("hidden_paths_that_appear_during_the_run_stay_hidden", hidden_paths_that_appear_during_the_run_stay_hidden),
        ("proc_shows_only_the_sandbox", proc_shows_only_the_sandbox),
        ("capabilities_are_dropped", capabilities_are_dropped),
        ("sysctls_and_host_ipc_are_out_of_reach", sysctls_and_host_ipc_are_out_of_reach),
        ("terminal_injection_is_blocked", terminal_injection_is_blocked),
        ("set_user_id_files_cannot_be_made", set_user_id_files_cannot_be_made),
        ("ca_bundle_and_resolv_conf_inside_only", ca_bundle_and_resolv_conf_inside_only),
        ("open_policy_keeps_host_tree", open_policy_keeps_host_tree),
        ("stdio_passes_through_untouched", stdio_passes_through_untouched),
        ("fails_closed_before_the_command_runs", fails_closed_before_the_command_runs),
        ("launcher_death_kills_the_sandbox", launcher_death_kills_the_sandbox),
        ("helper_is_reaped_after_wait", helper_is_reaped_after_wait),
        ("probe_inside_a_sandbox_explains_the_refusal", probe_inside_a_sandbox_explains_the_refusal),
        ("session_keyring_is_fresh", session_keyring_is_fresh),
        ("ctrl_c_on_a_terminal_reaches_the_command", ctrl_c_on_a_terminal_reaches_the_command),
    ];
    let (mut passed, mut failed) = (0, 0);
    for (name, test) in tests {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let started = Instant::now();
        match test(&ctx) {
            Ok(()) => {
                passed += 1;
                println!("test [{mode}] {name} ... ok ({} ms)", started.elapsed().as_millis());
            }
            Err(e) => {
                failed += 1;
                println!("test [{mode}] {name} ... FAILED\n    {}", e.replace('\n', "\n    "));
            }
        }
    }
    let (mut skipped, mut total_passed, mut total_failed) = (0, passed, failed);
    if mode == "root" {
        match run_rootless(&ctx, filter.as_deref()) {
            Ok((p, f)) => {
                total_passed += p;
                total_failed += f;
            }
            Err(why) => {
                println!("SKIP [rootless] suite: {why}");
                skipped += 1;
            }
        }
    }
    let _ = fs::remove_dir_all(&ctx.base);
    if skipped > 0 {
        println!("{total_passed} passed, {total_failed} failed, {skipped} skipped");
    } else {
        println!("{total_passed} passed, {total_failed} failed");
    }
    std::process::exit(if total_failed == 0 { 0 } else { 1 });
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

/// Run this binary again as an unprivileged uid (no passwd entry needed) and fold its results in.
fn run_rootless(ctx: &Ctx, filter: Option<&str>) -> Result<(u32, u32), String> {
    if !Path::new("/usr/bin/setpriv").exists() {
        return Err("setpriv (util-linux) is not installed".into());
    }
    // The unprivileged uid must be able to run this binary: copy it out of a private tree.
    let searchable =
        ctx.exe.ancestors().skip(1).all(|dir| fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o001 != 0));
    let copy_dir = PathBuf::from(format!("/var/tmp/authsome-netns-rootless-{}", std::process::id()));
    let exe = if searchable {
        ctx.exe.clone()
    } else {
        fs::create_dir_all(&copy_dir).map_err(|e| e.to_string())?;
        fs::set_permissions(&copy_dir, fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
        let copy = copy_dir.join("sandbox-tests");
        fs::copy(&ctx.exe, &copy).map_err(|e| format!("copying the test binary: {e}"))?;
        copy
    };
    let mut cmd = Command::new("/usr/bin/setpriv");
    cmd.args(["--reuid", &ROOTLESS_UID.to_string(), "--regid", &ROOTLESS_UID.to_string(), "--clear-groups", "--"])
        .arg(&exe)
        .args(filter)
        .env(ROOTLESS_ENV, "1")
        .env("HOME", "/nonexistent")
        .current_dir("/")
        .stdout(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("setpriv: {e}"))?;
    let (mut passed, mut failed) = (None, None);
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.map_err(|e| e.to_string())?;
        if let Some((p, rest)) = line.split_once(" passed, ")
            && let Some(f) = rest.split(" failed").next()
        {
            passed = p.trim().parse().ok();
            failed = f.trim().parse().ok();
            if rest.contains("skipped") {
                println!("[rootless] {line}");
            }
            continue;
        }
        println!("{line}");
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    let _ = fs::remove_dir_all(&copy_dir);
    match (passed, failed) {
        (Some(p), Some(f)) => Ok((p, f)),
        _ => Err(format!("the rootless run printed no summary ({status})")),
    }
}
