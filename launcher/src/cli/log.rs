//! `authsome log --run ID` (a run's per-host table, from its end record) and `authsome log
//! --denied` (refused destinations across runs), both read from the audit log; `--json` gives
//! the audit records themselves.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::args::LogArgs;
use crate::context::Context;
use crate::error::{CliError, CliResult, Kind};
use crate::run::report::{self, RunLine};

/// The audit log's records, oldest first (lines that do not parse are skipped).
fn records(ctx: &Context) -> CliResult<Vec<Value>> {
    let path = ctx.audit_log.path();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(CliError::new(Kind::Generic, format!("cannot read {}: {e}", path.display()))),
    };
    Ok(text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
}

fn is_denial(record: &Value) -> bool {
    matches!(record["event"].as_str(), Some("proxy_deny" | "proxy_leak_blocked"))
}

/// `log --run ID`: the table `run --report` printed, from the run's end record.
pub(crate) fn run(ctx: &Context, id: &str) -> CliResult {
    let all = records(ctx)?;
    let run_records = |phase: &str| -> Vec<&Value> {
        all.iter()
            .filter(|r| r["event"] == "run" && r["phase"] == phase)
            .filter(|r| r["run_id"].as_str().is_some_and(|rid| !id.is_empty() && rid.starts_with(id)))
            .collect()
    };
    let ends = run_records("end");
    let ids: std::collections::BTreeSet<&str> = ends.iter().filter_map(|r| r["run_id"].as_str()).collect();
    if ids.len() > 1 {
        return Err(CliError::new(Kind::Usage, format!("--run {id}: several runs start with it"))
            .hint("give more of the id (see `authsome log --json`)"));
    }
    let Some(end) = ends.last() else {
        let hint = if run_records("start").is_empty() {
            "`run --report` prints the id; `authsome log --json` lists runs with their run_id"
        } else {
            "the run has not ended, or its authsome was killed before writing its summary; \
             `authsome log --denied` still lists its denials"
        };
        return Err(CliError::new(Kind::Generic, format!("no finished run with id {id} in the audit log")).hint(hint));
    };
    if ctx.out.json {
        ctx.out.json(end);
        return Ok(());
    }
    let hosts: BTreeMap<String, crate::run::events::HostStats> =
        serde_json::from_value(end["hosts"].clone()).unwrap_or_default();
    let line = RunLine {
        run_id: end["run_id"].as_str().unwrap_or(id),
        command: end["command"].as_str().unwrap_or(""),
        exit_code: end["exit_code"].as_i64(),
        duration_ms: end["duration_ms"].as_u64(),
    };
    ctx.out.data(&report::render(&line, &hosts));
    Ok(())
}

/// `log --denied`: the last `args.lines` refusals, across runs.
pub(crate) fn denied(ctx: &Context, args: &LogArgs) -> CliResult {
    let all = records(ctx)?;
    let denials: Vec<&Value> = all.iter().filter(|r| is_denial(r)).collect();
    let shown = &denials[denials.len().saturating_sub(args.lines)..];
    if ctx.out.json {
        ctx.out.json(&json!(shown));
        return Ok(());
    }
    if shown.is_empty() {
        ctx.out.note("No denials in the audit log.");
        return Ok(());
    }
    let lines: Vec<String> = shown.iter().map(|r| denial_line(r)).collect();
    ctx.out.data(&lines.join("\n"));
    Ok(())
}

/// `2026-…  run 3f2a…  denied blocked.example.org:443 (not a provider host); allow with --allow …`
fn denial_line(r: &Value) -> String {
    let text = |key: &str| r[key].as_str().unwrap_or("").to_string();
    let host = text("host");
    let host = if host.contains(':') { format!("[{host}]") } else { host };
    let port = r["port"].as_u64().map(|p| format!(":{p}")).unwrap_or_default();
    let mut line = format!("{}  run {}  denied {host}{port} ({})", text("timestamp"), text("run_id"), text("reason"));
    let hint = text("hint");
    if !hint.is_empty() {
        line.push_str("; ");
        line.push_str(&hint);
    }
    line
}
