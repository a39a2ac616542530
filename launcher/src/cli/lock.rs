//! `authsome lock`: drop unwrapped passphrase keys from the kernel-keyring cache, so the next
//! command has to present the passphrase again (before leaving a shared session, for instance).

use authsome_vault::AuditEvent;
use serde_json::json;

use crate::context::Context;
use crate::error::CliResult;

pub(crate) fn lock(ctx: &Context) -> CliResult {
    let locked = authsome_vault::profiles::lock(&ctx.home)?;
    if !locked.is_empty() {
        ctx.audit(AuditEvent::new("lock").field("profiles", locked.clone()));
    }
    if ctx.out.json {
        ctx.out.json(&json!({"v": 1, "status": "locked", "profiles": locked}));
    } else if locked.is_empty() {
        ctx.out.note("No passphrase profile here; nothing is cached.");
    } else {
        ctx.out.note(&format!(
            "Locked {}: the next command asks for the passphrase again.",
            locked.iter().map(|p| format!("'{p}'")).collect::<Vec<_>>().join(", ")
        ));
    }
    Ok(())
}
