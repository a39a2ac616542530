//! The `authsome` binary: everything but the sandbox helper lives in the library's `cli`.

use std::process::ExitCode;

fn main() -> ExitCode {
    // The sandbox's helper is a fresh exec of this binary: it must run before anything else
    // (no threads, no runtime). Returns at once in every other case.
    #[cfg(target_os = "linux")]
    authsome_netns::maybe_run_helper();
    // The container backend's sidecar is this binary too (the same rule: nothing runs first).
    #[cfg(target_os = "linux")]
    authsome::container::sidecar::maybe_run();
    authsome::main()
}
