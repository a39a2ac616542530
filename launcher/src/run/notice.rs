//! The one-time notice of changed `--sandbox` defaults, for users whose earlier sandboxed runs
//! had the old ones (the audit log says so). Shown once per home; new users never see it.

use std::io::{BufRead, BufReader};

use crate::context::Context;

/// Bump when a later release changes sandbox defaults again (a new marker file, a new notice).
const MARKER: &str = "notices/sandbox-defaults-1";

const NOTICE: &str = "authsome: `run --sandbox` has safer defaults since this version: it reaches only the \
connected providers' hosts (add --allow HOST or @npm/@pypi/@crates/@github; --egress all for every host), the \
home is private (--fs home for the real one), .git/config, hooks, .envrc and editor/agent config stay \
read-only in writable directories, and nothing is writable when run from your home or /tmp. See README \
\"Upgrading\"; `authsome doctor --sandbox` lists the defaults. (Shown once.)";

/// Print the notice if this home ran sandboxes before and has not been told yet.
pub(crate) fn announce_changed_defaults(ctx: &Context) {
    let marker = ctx.home.root().join(MARKER);
    if marker.exists() {
        return;
    }
    if ran_sandboxes_before(ctx) {
        ctx.out.note(NOTICE);
    }
    // Best effort: a home we cannot write (read-only mount) shows the notice again next time.
    if let Some(dir) = marker.parent()
        && std::fs::create_dir_all(dir).is_ok()
    {
        let _ = std::fs::write(&marker, b"");
    }
}

/// Whether the audit log records a sandboxed run (written before this release's first one).
fn ran_sandboxes_before(ctx: &Context) -> bool {
    let Ok(file) = std::fs::File::open(ctx.home.audit_path()) else { return false };
    BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .any(|line| line.contains("\"event\":\"run\"") && line.contains("\"mode\":\"sandbox\""))
}
