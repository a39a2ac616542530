//! `authsome image build` and `authsome sandbox prune`: the container backend's housekeeping
//! (docs/container.md).

use super::args::{ImageCommand, SandboxCommand};
use crate::container::engine::ContainerEngine;
use crate::context::Context;
use crate::error::CliResult;

/// `image build`: (re)build the running binary's sidecar image; its tag goes to stdout.
pub(crate) fn image(ctx: &Context, command: &ImageCommand) -> CliResult {
    match command {
        ImageCommand::Build => {
            let engine = ContainerEngine::detect(&std::env::vars_os().collect::<Vec<_>>())?;
            let tag = crate::container::image::build_current(&engine)?;
            if ctx.out.json {
                ctx.out.json(&serde_json::json!({"v": 1, "image": tag, "engine": engine.name()}));
            } else {
                ctx.out.data(&tag);
            }
            Ok(())
        }
    }
}

/// `sandbox prune`: remove the containers of runs whose authsome process is gone.
pub(crate) fn sandbox(ctx: &Context, command: &SandboxCommand) -> CliResult {
    match command {
        SandboxCommand::Prune => {
            let engine = ContainerEngine::detect(&std::env::vars_os().collect::<Vec<_>>())?;
            let runs = crate::container::leftover_runs(&engine)?;
            for run in &runs {
                engine.remove_run(run);
            }
            if ctx.out.json {
                ctx.out.json(&serde_json::json!({"v": 1, "removed_runs": runs}));
            } else if runs.is_empty() {
                ctx.out.note("authsome: nothing to prune");
            } else {
                ctx.out.note(&format!("authsome: removed the containers of {} killed run(s)", runs.len()));
                for run in &runs {
                    ctx.out.data(run);
                }
            }
            Ok(())
        }
    }
}
