//! `authsome ca path|install|uninstall`: the profile's MITM CA for `run`.
//!
//! `run` makes the child trust the CA through environment variables only. `install` is for
//! users who want every program to trust it (tools that ignore the variables); it is a real
//! trade-off: anything that obtains the CA key (0600 under AUTHSOME_HOME) could then
//! impersonate any site to this machine.

use std::path::{Path, PathBuf};

use authsome_proxy::CertificateAuthority;
use serde_json::json;

use super::args::CaCommand;
use crate::context::Context;
use crate::error::{CliError, CliResult, Kind};

const ANCHORS_DIR: &str = "/usr/local/share/ca-certificates";

fn ca_cert_path(ctx: &Context) -> CliResult<PathBuf> {
    ctx.home.ensure()?;
    let dir = ctx.home.ca_dir(&ctx.profile);
    CertificateAuthority::load_or_create(&dir)
        .map_err(|e| CliError::new(Kind::Generic, format!("cannot load or create the CA in {}: {e}", dir.display())))?;
    Ok(dir.join("ca.pem"))
}

fn anchor_path(ctx: &Context) -> PathBuf {
    Path::new(ANCHORS_DIR).join(format!("authsome-{}.crt", ctx.profile))
}

pub(crate) fn ca(ctx: &Context, command: &CaCommand) -> CliResult {
    match command {
        CaCommand::Path => {
            let path = ca_cert_path(ctx)?;
            if ctx.out.json {
                ctx.out.json(&json!({"v": 1, "profile": ctx.profile, "path": path.display().to_string()}));
            } else {
                ctx.out.data(&path.display().to_string());
            }
            Ok(())
        }
        CaCommand::Install => {
            let path = ca_cert_path(ctx)?;
            let anchor = anchor_path(ctx);
            if !Path::new(ANCHORS_DIR).is_dir() || which("update-ca-certificates").is_none() {
                return Err(CliError::new(Kind::Generic, "this system has no update-ca-certificates trust store").hint(format!(
                    "add {} to your system's trust store by hand (macOS: `sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain {}`)",
                    path.display(),
                    path.display()
                )));
            }
            std::fs::copy(&path, &anchor).map_err(|e| {
                CliError::new(Kind::Generic, format!("cannot write {}: {e}", anchor.display()))
                    .hint("run it as root: `sudo authsome ca install` (with the same AUTHSOME_HOME)")
            })?;
            update_trust()?;
            ctx.audit(authsome_vault::AuditEvent::new("ca_install").field("path", anchor.display().to_string()));
            ctx.out.note(&format!(
                "Installed {} as {}; every program on this machine now trusts it.",
                path.display(),
                anchor.display()
            ));
            Ok(())
        }
        CaCommand::Uninstall => {
            let anchor = anchor_path(ctx);
            if !anchor.exists() {
                ctx.out.note("The CA is not installed system-wide; nothing to do.");
                return Ok(());
            }
            std::fs::remove_file(&anchor).map_err(|e| {
                CliError::new(Kind::Generic, format!("cannot remove {}: {e}", anchor.display())).hint("run it as root")
            })?;
            update_trust()?;
            ctx.audit(authsome_vault::AuditEvent::new("ca_uninstall").field("path", anchor.display().to_string()));
            ctx.out.note("Removed the CA from the system trust store.");
            Ok(())
        }
    }
}

fn update_trust() -> CliResult {
    let status = std::process::Command::new("update-ca-certificates")
        .arg("--fresh")
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|e| CliError::new(Kind::Generic, format!("cannot run update-ca-certificates: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(CliError::new(Kind::Generic, "update-ca-certificates failed").hint("run it as root"))
    }
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(program)).find(|p| p.is_file())
}
