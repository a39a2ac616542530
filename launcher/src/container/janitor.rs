//! The container janitor: a process of its own, started with each container run, that removes
//! the run's containers once the run is over, whatever ended it.
//!
//! Why a process: on `kill -9` of authsome the sidecar's lifeline closes and it exits, and the
//! kernel kills the workload with it, but the engine then refuses to remove the sidecar
//! (`--rm`) while the workload, which joined its namespaces, still exists. Nothing in a
//! container can fix that. The janitor holds the read end of a pipe whose write end only
//! authsome has; at end-of-file (authsome exited or was killed) it removes every container
//! labelled with the run id, workload first, then the run's directory (the channel socket, the
//! CA bundle, the workload's environment file), which a killed authsome could not remove. It
//! runs in a session of its own so a Ctrl-C at the terminal does not take it down first.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::engine::{ContainerEngine, Flavour};

/// `argv[1]` that makes the binary the janitor: `JANITOR_ARG ENGINE FLAVOUR RUN_ID RUN_DIR`.
pub(crate) const JANITOR_ARG: &str = "__authsome-container-janitor";

/// Start the janitor for `run_id`; the returned child's stdin is the lifeline (drop it, or
/// die, and the janitor cleans up).
pub(crate) fn start(engine: &ContainerEngine, run_id: &str, run_dir: &Path) -> std::io::Result<Child> {
    let exe = std::env::current_exe()?;
    let flavour = match engine.flavour {
        Flavour::Podman => "podman",
        Flavour::Docker => "docker",
    };
    Command::new(exe)
        .arg(JANITOR_ARG)
        .arg(&engine.program)
        .arg(flavour)
        .arg(run_id)
        .arg(run_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
}

/// Run as the janitor if `argv[1]` says so (called from `sidecar::maybe_run`).
pub(crate) fn maybe_run(args: &[String]) -> Option<i32> {
    if args.get(1).map(String::as_str) != Some(JANITOR_ARG) {
        return None;
    }
    let (Some(program), Some(flavour), Some(run_id), Some(run_dir)) =
        (args.get(2), args.get(3), args.get(4), args.get(5))
    else {
        return Some(2);
    };
    let flavour = if flavour == "docker" { Flavour::Docker } else { Flavour::Podman };
    let engine = ContainerEngine { program: PathBuf::from(program), flavour };
    // Block until authsome's end of the pipe is gone.
    let mut sink = [0u8; 64];
    let mut stdin = std::io::stdin();
    while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
    engine.remove_run(run_id);
    // Only a run directory of ours (authsome removes it itself when it can).
    let run_dir = Path::new(run_dir);
    if run_dir.file_name().is_some_and(|n| n.to_string_lossy().starts_with("authsome-run-")) {
        let _ = std::fs::remove_dir_all(run_dir);
    }
    Some(0)
}
