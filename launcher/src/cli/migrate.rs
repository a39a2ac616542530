//! `authsome migrate`: import a home written by the Python authsome 0.2.4, in place. The
//! mechanics (backup, journal, crash recovery) are `authsome_vault::migrate`'s; this module
//! chooses the keyring client, renders the report and gives every failure a hint.

use authsome_vault::AuditEvent;
use authsome_vault::migrate::{self, MigrateError, MigrateOptions, Outcome, Report};
use serde_json::{Value, json};

use super::args::MigrateArgs;
use crate::context::Context;
use crate::error::{CliError, CliResult, Kind};

pub(crate) fn migrate(ctx: &Context, args: &MigrateArgs) -> CliResult {
    if args.delete_backup {
        return delete_backup(ctx);
    }
    let options = MigrateOptions { create: ctx.create, dry_run: args.dry_run };
    #[cfg(target_os = "linux")]
    let keyring = crate::keychain::PythonMasterKey;
    #[cfg(not(target_os = "linux"))]
    let keyring = migrate::NoPythonKeyring;
    let outcome = migrate::migrate(&ctx.home, &options, &ctx.key_source, &keyring).map_err(hint)?;
    match outcome {
        Outcome::NothingToDo { backups } => {
            if ctx.out.json {
                ctx.out.json(&json!({
                    "v": 1, "status": "nothing_to_do", "home": ctx.home.root(), "backups": backups,
                }));
            } else {
                ctx.out.note(&format!("{} holds no Python authsome home to import.", ctx.home.root().display()));
                for backup in &backups {
                    ctx.out.note(&format!(
                        "A backup of the Python files is still at {}; delete it with `authsome migrate --delete-backup`.",
                        backup.display()
                    ));
                }
            }
        }
        Outcome::DryRun(report) => render(ctx, &report, "dry_run"),
        Outcome::Migrated(report) => {
            let connections: usize = report.profiles.iter().map(|p| p.connections.len()).sum();
            ctx.audit(
                AuditEvent::new("migrate")
                    .field("backup", report.backup.display().to_string())
                    .field("connections", connections)
                    .field("resumed", report.resumed),
            );
            render(ctx, &report, "migrated");
        }
    }
    Ok(())
}

fn delete_backup(ctx: &Context) -> CliResult {
    let deleted = migrate::delete_backups(&ctx.home).map_err(hint)?;
    if ctx.out.json {
        ctx.out.json(&json!({"v": 1, "status": "backup_deleted", "deleted": deleted}));
        return Ok(());
    }
    if deleted.is_empty() {
        ctx.out.note("No backup of Python authsome files here.");
    }
    for dir in &deleted {
        ctx.out.note(&format!("Deleted {}.", dir.display()));
    }
    Ok(())
}

fn render(ctx: &Context, report: &Report, status: &str) {
    let dry = status == "dry_run";
    if ctx.out.json {
        ctx.out.json(&json!({
            "v": 1,
            "status": status,
            "home": report.home,
            "backup": report.backup,
            "moved": report.moved,
            "default_profile": report.default_profile,
            "profiles": report.profiles.iter().map(|p| json!({
                "name": p.name,
                "connections": p.connections.iter().map(|(provider, connection)| json!({"provider": provider, "connection": connection})).collect::<Vec<Value>>(),
                "defaults": p.defaults.iter().map(|(provider, connection)| json!({"provider": provider, "connection": connection})).collect::<Vec<Value>>(),
                "clients": p.clients,
            })).collect::<Vec<Value>>(),
            "providers": report.providers,
            "skipped": report.skipped,
            "python_keyring": report.python_keyring,
            "resumed": report.resumed,
        }));
    } else {
        let mut text = String::new();
        let verb = if dry { "Would move" } else { "Moved" };
        text.push_str(&format!("{verb} to {}: {}\n", report.backup.display(), report.moved.join(", ")));
        for profile in &report.profiles {
            let names: Vec<String> = profile.connections.iter().map(|(p, c)| format!("{p}/{c}")).collect();
            text.push_str(&format!(
                "{} profile '{}': {} connection(s){}{}\n",
                if dry { "Would import" } else { "Imported" },
                profile.name,
                names.len(),
                if names.is_empty() { String::new() } else { format!(" ({})", names.join(", ")) },
                if profile.clients.is_empty() {
                    String::new()
                } else {
                    format!(", OAuth client(s) of {}", profile.clients.join(", "))
                },
            ));
        }
        if !report.providers.is_empty() {
            text.push_str(&format!("Custom providers: {}\n", report.providers.join(", ")));
        }
        for skipped in &report.skipped {
            text.push_str(&format!("Skipped {} in profile '{}': {}\n", skipped.item, skipped.profile, skipped.reason));
        }
        ctx.out.data(&text);
    }
    if dry {
        ctx.out.note("Nothing was changed. Run `authsome migrate` to do it.");
        return;
    }
    if report.resumed {
        ctx.out.note("Finished the migration an earlier run had started.");
    }
    ctx.out.note(&format!(
        "The Python authsome's files are in {0}, including its plaintext master.key (the Python authsome still \
         works with AUTHSOME_HOME={0}). Once `authsome list` shows what you expect, delete them with \
         `authsome migrate --delete-backup`.",
        report.backup.display()
    ));
    if report.python_keyring {
        ctx.out.note(
            "The Python authsome's key is still in the OS keyring (service 'authsome', user 'master_key'); \
             remove it there when you no longer need the backup.",
        );
    }
}

/// A migration failure with what to do about it.
fn hint(e: MigrateError) -> CliError {
    let again = "then run `authsome migrate` again (a migration that was interrupted resumes where it stopped)";
    let message = e.to_string();
    let (kind, hint) = match e {
        MigrateError::Vault(inner) => {
            let err = CliError::from(inner);
            // Moving or writing failed (permissions, a read-only mount, a full disk): the
            // journal lets a rerun continue once the cause is fixed.
            return if err.hint.is_some() { err } else { err.hint(format!("fix the cause above; {again}")) };
        }
        MigrateError::PythonKeyUnavailable { keyring: true, .. } => (
            Kind::StoreUnavailable,
            format!(
                "the Python authsome kept its key in the OS keyring (service 'authsome', user 'master_key'): run \
                 migrate in the session whose keyring holds it, unlocked; {again}"
            ),
        ),
        MigrateError::PythonKeyUnavailable { keyring: false, .. } => (
            Kind::StoreUnavailable,
            format!("put back the master.key the Python authsome created with this home; {again}"),
        ),
        MigrateError::PythonKeyWrong { .. } => (
            Kind::StoreUnavailable,
            format!("master.key is not the key these records were written with: restore the original; {again}"),
        ),
        MigrateError::PythonFile { .. } => (Kind::StoreUnavailable, format!("repair or restore that file; {again}")),
        MigrateError::Unsupported { .. } => (
            Kind::StoreUnavailable,
            "this authsome imports homes of the Python authsome 0.2.x; for a fresh home point AUTHSOME_HOME at \
             another directory"
                .to_string(),
        ),
        MigrateError::InPlace { path } => {
            (Kind::StoreUnavailable, format!("move {} out of the home; {again}", path.display()))
        }
        MigrateError::PythonDaemonRunning { pid } => (
            Kind::StoreUnavailable,
            format!(
                "stop it first (`authsome daemon stop` with the Python installation, or `kill {pid}`), so nothing \
                 writes to the files being moved; {again}"
            ),
        ),
        MigrateError::Unfinished { .. } => {
            (Kind::Generic, "run `authsome migrate` to finish it, then delete the backup".to_string())
        }
    };
    CliError::new(kind, message).hint(hint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_has_a_hint_and_no_secret_field() {
        let errors = [
            MigrateError::PythonKeyUnavailable { keyring: true, reason: "r".into() },
            MigrateError::PythonKeyUnavailable { keyring: false, reason: "r".into() },
            MigrateError::PythonKeyWrong { store: "s".into(), failed: 1, total: 2 },
            MigrateError::PythonFile { path: "p".into(), reason: "r".into() },
            MigrateError::Unsupported { path: "p".into(), layout: "l".into() },
            MigrateError::InPlace { path: "p".into() },
            MigrateError::Unfinished { path: "p".into() },
            MigrateError::PythonDaemonRunning { pid: 1 },
        ];
        for e in errors {
            let err = hint(e);
            assert!(err.hint.is_some(), "{}", err.message);
            assert_ne!(err.exit_code(), 0);
        }
    }
}
