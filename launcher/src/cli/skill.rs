//! `skill install`: write the agent skill that teaches an agent (Claude Code and other Agent
//! Skills readers) to use authsome instead of asking for keys. The text is
//! `cli/skill/SKILL.md`, built into the binary; a test parses every command it shows.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde_json::json;

use crate::context::Context;
use crate::error::{CliError, CliResult, Kind};

/// The skill, as shipped.
pub(crate) const SKILL_MD: &str = include_str!("skill/SKILL.md");

#[derive(Debug, Subcommand)]
pub(crate) enum SkillCommand {
    /// Write SKILL.md, which teaches an agent to use authsome (default:
    /// ~/.claude/skills/authsome/, where Claude Code finds personal skills).
    Install(InstallArgs),
}

#[derive(Debug, Args)]
#[command(after_help = "\
The skill tells the agent to check `authsome list --json`, to run commands with `authsome run`
(or `run --sandbox` for untrusted code), what the exit codes mean, and never to ask for a raw key.
For one project only: authsome skill install --path .claude/skills/authsome")]
pub(crate) struct InstallArgs {
    /// The skill's directory (created if missing).
    #[arg(long, value_name = "DIR")]
    pub(crate) path: Option<PathBuf>,
    /// Replace a SKILL.md that differs from this version's (e.g. edited by hand).
    #[arg(long)]
    pub(crate) force: bool,
}

pub(crate) fn skill(ctx: &Context, command: &SkillCommand) -> CliResult {
    match command {
        SkillCommand::Install(args) => install(ctx, args),
    }
}

fn install(ctx: &Context, args: &InstallArgs) -> CliResult {
    let dir = match &args.path {
        Some(path) => path.clone(),
        None => default_dir()?,
    };
    let file = dir.join("SKILL.md");
    let status = match std::fs::read_to_string(&file) {
        Ok(current) if current == SKILL_MD => "unchanged",
        Ok(_) if !args.force => {
            return Err(CliError::new(
                Kind::Generic,
                format!("{} exists and differs from this version", file.display()),
            )
            .hint("keep it, or replace it with --force"));
        }
        Ok(_) => "updated",
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "written",
        Err(e) => return Err(CliError::new(Kind::Generic, format!("cannot read {}: {e}", file.display()))),
    };
    if status != "unchanged" {
        write(&dir, &file)?;
    }
    if ctx.out.json {
        ctx.out.json(&json!({"v": 1, "path": file, "status": status}));
    } else {
        ctx.out.data(&format!("{} ({status})", file.display()));
    }
    Ok(())
}

fn write(dir: &Path, file: &Path) -> CliResult {
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(file, SKILL_MD))
        .map_err(|e| CliError::new(Kind::Generic, format!("cannot write {}: {e}", file.display())))
}

/// `~/.claude/skills/authsome`.
fn default_dir() -> CliResult<PathBuf> {
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or_else(|| CliError::new(Kind::Usage, "HOME is not set").hint("name the directory with --path DIR"))?;
    Ok(PathBuf::from(home).join(".claude/skills/authsome"))
}

/// Every `authsome …` command the skill shows: lines of its code blocks and inline code spans.
#[cfg(test)]
pub(crate) fn shown_commands(text: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut prose = String::new();
    let mut in_block = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if in_block {
            if line.trim_start().starts_with("authsome ") {
                commands.push(line.trim().to_string());
            }
        } else {
            prose.push_str(line);
            prose.push(' ');
        }
    }
    for (i, span) in prose.split('`').enumerate() {
        let span = span.split_whitespace().collect::<Vec<_>>().join(" ");
        if i % 2 == 1 && span.starts_with("authsome ") {
            commands.push(span);
        }
    }
    commands
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn every_command_the_skill_shows_parses() {
        let commands = shown_commands(SKILL_MD);
        for needed in ["authsome list --json", "authsome run -- python script.py", "authsome run --sandbox -- npm test"]
        {
            assert!(commands.iter().any(|c| c == needed), "the skill must show `{needed}`: {commands:?}");
        }
        for command in &commands {
            // No shell quoting in the skill's commands: words are split on whitespace.
            assert!(!command.contains(['\'', '"', '$', '|']), "keep commands plain: {command}");
            let words: Vec<&str> = command.split_whitespace().collect();
            if let Err(e) = super::super::args::Cli::try_parse_from(&words) {
                panic!("`{command}` does not parse:\n{e}");
            }
        }
        assert!(commands.len() >= 10, "{commands:?}");
    }

    #[test]
    fn the_skill_has_claude_code_frontmatter() {
        let front = SKILL_MD.strip_prefix("---\n").and_then(|t| t.split_once("\n---\n")).map(|(f, _)| f).unwrap();
        assert!(front.lines().any(|l| l == "name: authsome"));
        assert!(front.lines().any(|l| l.starts_with("description: ") && l.len() > 60));
    }
}
