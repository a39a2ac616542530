//! Where output goes. stdout is data (tables, JSON, exported values); notes, warnings and
//! confirmations go to stderr and `--quiet` hides them, never the data. Colour only on a
//! terminal, and never with `--no-color` or `NO_COLOR`.

use std::io::{IsTerminal, Write};

use crate::error::CliError;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Output {
    pub(crate) json: bool,
    pub(crate) quiet: bool,
    color_stdout: bool,
    color_stderr: bool,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Style {
    Green,
    Yellow,
    Red,
    Dim,
}

impl Output {
    pub(crate) fn new(json: bool, quiet: bool, color: bool) -> Self {
        Self {
            json,
            quiet,
            color_stdout: color && std::io::stdout().is_terminal(),
            color_stderr: color && std::io::stderr().is_terminal(),
        }
    }

    /// Data on stdout: shown even with `--quiet`.
    pub(crate) fn data(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        if !text.ends_with('\n') {
            let _ = out.write_all(b"\n");
        }
        let _ = out.flush();
    }

    /// A JSON document on stdout.
    pub(crate) fn json(&self, value: &serde_json::Value) {
        self.data(&serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".into()));
    }

    /// A note for the human on stderr (hidden by `--quiet`).
    pub(crate) fn note(&self, text: &str) {
        if !self.quiet {
            eprintln!("{text}");
        }
    }

    pub(crate) fn warn(&self, text: &str) {
        if !self.quiet {
            eprintln!("{} {text}", self.paint_err("warning:", Style::Yellow));
        }
    }

    /// Colour for stdout text.
    pub(crate) fn paint(&self, text: &str, style: Style) -> String {
        paint(text, style, self.color_stdout)
    }

    fn paint_err(&self, text: &str, style: Style) -> String {
        paint(text, style, self.color_stderr)
    }

    /// Render an error: text on stderr, or the JSON error document on stdout with `--json`.
    pub(crate) fn error(&self, e: &CliError) {
        if self.json {
            let mut doc = serde_json::json!({ "error": e.kind.class_name(), "message": e.message });
            if let Some(hint) = &e.hint {
                doc["hint"] = hint.clone().into();
            }
            if !e.causes.is_empty() {
                doc["causes"] = e.causes.clone().into();
            }
            self.json(&doc);
            return;
        }
        let mut text = format!("{} {}\n", self.paint_err("error:", Style::Red), e.message);
        for cause in &e.causes {
            text.push_str(&format!("  caused by: {cause}\n"));
        }
        if let Some(hint) = &e.hint {
            text.push_str(&format!("{} {hint}\n", self.paint_err("hint:", Style::Green)));
        }
        let _ = std::io::stderr().write_all(text.as_bytes());
    }
}

fn paint(text: &str, style: Style, enabled: bool) -> String {
    if !enabled {
        return text.to_string();
    }
    let code = match style {
        Style::Green => "32",
        Style::Yellow => "33",
        Style::Red => "31",
        Style::Dim => "2",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

/// `expires in 59m` / `expired 3h ago` (units s/m/h/d), as upstream's list showed.
pub(crate) fn relative_expiry(expires_at: i64, now: i64) -> String {
    let delta = expires_at - now;
    let span = |secs: i64| {
        let secs = secs.abs();
        if secs < 60 {
            format!("{secs}s")
        } else if secs < 3_600 {
            format!("{}m", secs / 60)
        } else if secs < 86_400 {
            format!("{}h", secs / 3_600)
        } else {
            format!("{}d", secs / 86_400)
        }
    };
    if delta >= 0 { format!("expires in {}", span(delta)) } else { format!("expired {} ago", span(delta)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_words() {
        assert_eq!(relative_expiry(1_000 + 59 * 60 + 5, 1_000), "expires in 59m");
        assert_eq!(relative_expiry(1_000, 1_000 + 3 * 3_600 + 12), "expired 3h ago");
        assert_eq!(relative_expiry(1_030, 1_000), "expires in 30s");
        assert_eq!(relative_expiry(1_000 + 2 * 86_400, 1_000), "expires in 2d");
    }
}
