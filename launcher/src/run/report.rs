//! The per-run table: what `run --report` prints on stderr when the command ends, and what
//! `authsome log --run ID` prints later from the run's end record in the audit log. One
//! renderer, so the two never disagree.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::events::HostStats;

/// What the table's first line says about the run.
pub(crate) struct RunLine<'a> {
    pub(crate) run_id: &'a str,
    pub(crate) command: &'a str,
    pub(crate) exit_code: Option<i64>,
    pub(crate) duration_ms: Option<u64>,
}

/// `authsome: run 3f2a… (curl, exit 0, 0.4 s)`, then one row per host, then the totals.
pub(crate) fn render(run: &RunLine<'_>, hosts: &BTreeMap<String, HostStats>) -> String {
    let mut out = format!("authsome: run {}", run.run_id);
    let mut about: Vec<String> = Vec::new();
    if !run.command.is_empty() {
        about.push(run.command.to_string());
    }
    if let Some(code) = run.exit_code {
        about.push(format!("exit {code}"));
    }
    if let Some(ms) = run.duration_ms {
        about.push(format!("{:.1} s", ms as f64 / 1000.0));
    }
    if !about.is_empty() {
        let _ = write!(out, " ({})", about.join(", "));
    }
    out.push('\n');
    if hosts.is_empty() {
        out.push_str("  no network traffic through the proxy\n");
        return out;
    }
    let header = ["HOST", "CONNS", "REQUESTS", "INJECTED", "DENIED", "UP", "DOWN"];
    let mut rows: Vec<[String; 7]> = hosts.iter().map(|(host, s)| row(host, s)).collect();
    let total = hosts.values().fold(HostStats::default(), |mut t, s| {
        t.conns += s.conns;
        t.requests += s.requests;
        t.injected += s.injected;
        t.denied += s.denied;
        t.leaks_blocked += s.leaks_blocked;
        t.bytes_up += s.bytes_up;
        t.bytes_down += s.bytes_down;
        t
    });
    rows.push(row(&format!("total ({} hosts)", hosts.len()), &total));
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut line = |cells: &[String]| {
        let mut text = String::from("  ");
        for (i, cell) in cells.iter().enumerate() {
            if i == 0 {
                let _ = write!(text, "{cell:<w$}", w = widths[0]);
            } else {
                let _ = write!(text, "  {cell:>w$}", w = widths[i]);
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&header.map(String::from));
    for r in &rows {
        line(r);
    }
    out
}

fn row(host: &str, s: &HostStats) -> [String; 7] {
    [
        host.to_string(),
        s.conns.to_string(),
        s.requests.to_string(),
        s.injected.to_string(),
        // Placeholders refused in the wrong place are denials too.
        (s.denied + s.leaks_blocked).to_string(),
        bytes(s.bytes_up),
        bytes(s.bytes_down),
    ]
}

/// `512 B`, `1.5 KiB`, `3.2 MiB`, `1.0 GiB`.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_with_totals() {
        let mut hosts = BTreeMap::new();
        hosts.insert(
            "api.openai.com".to_string(),
            HostStats { conns: 1, requests: 2, injected: 2, bytes_up: 900, bytes_down: 3000, ..Default::default() },
        );
        hosts.insert("blocked.example.org".to_string(), HostStats { denied: 1, ..Default::default() });
        let run = RunLine { run_id: "abc123", command: "curl", exit_code: Some(0), duration_ms: Some(1500) };
        let text = render(&run, &hosts);
        let expected = "\
authsome: run abc123 (curl, exit 0, 1.5 s)
  HOST                 CONNS  REQUESTS  INJECTED  DENIED     UP     DOWN
  api.openai.com           1         2         2       0  900 B  2.9 KiB
  blocked.example.org      0         0         0       1    0 B      0 B
  total (2 hosts)          1         2         2       1  900 B  2.9 KiB
";
        assert_eq!(text, expected);
        let empty = render(&RunLine { run_id: "x", command: "", exit_code: None, duration_ms: None }, &BTreeMap::new());
        assert_eq!(empty, "authsome: run x\n  no network traffic through the proxy\n");
    }

    #[test]
    fn byte_units() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(5 * 1024 * 1024), "5.0 MiB");
    }
}
