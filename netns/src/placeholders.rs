//! Placeholders for missing protected paths (`plan::MountOp::Placeholder`): making them on the
//! host, marking and leasing them so concurrent sandboxes in one directory can share them, and
//! removing them (by the janitor, `janitor`) only when no sandbox stands on them any more.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::plan::PathKind;

pub use crate::proto::Placeholder as Created;

/// The placeholders of one run: the leases held on them while it lasts, and the janitor that
/// removes them afterwards (each one is recorded with it as soon as it exists).
#[derive(Debug, Default)]
pub struct Placeholders {
    pub leases: Vec<Lease>,
    pub janitor: Option<crate::janitor::Janitor>,
    /// Placeholders not made because the host path is read-only (nothing to mount there).
    skipped: Vec<PathBuf>,
}

impl Placeholders {
    /// Whether the placeholder at `path` was not made because its host path is read-only.
    pub fn skipped(&self, path: &Path) -> bool {
        self.skipped.contains(&path.to_path_buf())
    }

    fn hold(&mut self, p: Created, lease: Lease) -> io::Result<()> {
        self.leases.push(lease);
        match &mut self.janitor {
            Some(j) => j.record(&p),
            // the plan had no placeholder, so no janitor: only adoption gets here
            None => Ok(()),
        }
    }
}

/// Extended attribute marking a placeholder as ours, so a concurrent sandbox in the same
/// directory can tell it from a user's file and share it (see [`Lease`]).
const MARKER: &str = "user.authsome.placeholder";

/// A shared `flock` on a placeholder, held by the helper for the whole run. Whoever removes a
/// placeholder first takes an exclusive lock without waiting: while another sandbox still holds
/// its shared lease (it found our placeholder and mounted over it), the placeholder stays, and
/// that sandbox's launcher removes it later. Removing it under a running sandbox would detach
/// that sandbox's read-only mount there and let its command create the path.
pub type Lease = Flock<File>;

/// Whether `path` is a placeholder some sandbox made (it carries our marker).
pub fn is_placeholder(path: &Path) -> bool {
    crate::sys::has_xattr(path, MARKER)
}

/// Create placeholder `path` (see `MountOp::Placeholder`), mark it, lease it, record it.
///
/// An earlier run's janitor may remove it between its creation and its lease: a new inode
/// often reuses the number of the one that janitor recorded, and the status-change time has
/// the kernel's coarse clock, so within a few milliseconds the two look alike. The lease is
/// what stops that janitor; before it exists, a placeholder that vanished is made again.
pub fn make(path: &Path, kind: PathKind, contents: &str, held: &mut Placeholders) -> io::Result<()> {
    let mut attempts = 0;
    loop {
        match make_once(path, kind, contents, held) {
            Err(e)
                if e.kind() == io::ErrorKind::NotFound && attempts < 4 && path.parent().is_some_and(Path::exists) =>
            {
                attempts += 1;
            }
            other => return other,
        }
    }
}

fn make_once(path: &Path, kind: PathKind, contents: &str, held: &mut Placeholders) -> io::Result<()> {
    // Made under a temporary name, marked, then renamed into place only if the name is free:
    // the path never exists without its marker, so a concurrent sandbox that finds it always
    // knows it for a placeholder and leases it (unmarked, it would take it for the user's own,
    // hold no lease, and our janitor could remove it under that sandbox's mount).
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let temporary = path.with_file_name(format!(".{name}.authsome-{}-{nanos}", std::process::id()));
    let made = match kind {
        PathKind::Dir => DirBuilder::new().mode(0o755).create(&temporary),
        PathKind::File => OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&temporary)
            .and_then(|mut f| f.write_all(contents.as_bytes())),
    };
    match made {
        Ok(()) => {}
        // the host path is read-only: nobody in the sandbox can create it either
        Err(e) if e.raw_os_error() == Some(libc::EROFS) => {
            held.skipped.push(path.to_path_buf());
            return Ok(());
        }
        Err(e) => return Err(e),
    }
    // best effort: without the marker a concurrent sandbox just does not share it
    let _ = crate::sys::set_xattr(&temporary, MARKER, b"1");
    let remove_temporary = || match kind {
        PathKind::Dir => fs::remove_dir(&temporary),
        PathKind::File => fs::remove_file(&temporary),
    };
    match nix::fcntl::renameat2(
        nix::fcntl::AT_FDCWD,
        &temporary,
        nix::fcntl::AT_FDCWD,
        path,
        nix::fcntl::RenameFlags::RENAME_NOREPLACE,
    ) {
        Ok(()) => {}
        // someone made it meanwhile: share it if it is a placeholder
        Err(nix::errno::Errno::EEXIST) => {
            let _ = remove_temporary();
            return adopt(path, held);
        }
        Err(e) => {
            let _ = remove_temporary();
            return Err(e.into());
        }
    }
    // Reopened read-only for the lease: a file open for writing would keep its mount from
    // becoming read-only (EBUSY).
    let file = File::open(path)?;
    let meta = file.metadata()?;
    let lease = Flock::lock(file, FlockArg::LockShared).map_err(|(_, e)| io::Error::from(e))?;
    let made = Created {
        path: path.to_path_buf(),
        dir: kind == PathKind::Dir,
        contents: contents.to_owned(),
        dev: meta.dev(),
        ino: meta.ino(),
        changed: changed(&meta),
    };
    held.hold(made, lease)
}

/// The status-change time in ns: with device and inode, tells a placeholder from a newer one
/// that reused its inode number.
fn changed(meta: &fs::Metadata) -> u64 {
    (meta.ctime() as u64).wrapping_mul(1_000_000_000).wrapping_add(meta.ctime_nsec() as u64)
}

/// Remove placeholder `c` if the path still names the one recorded, no other sandbox holds a
/// lease on it, and it is still as made (an empty directory, a file with our contents): the
/// host may have put something there meanwhile. Best effort.
pub fn remove_if_untouched(c: &Created) {
    let Ok(file) = File::open(&c.path) else { return };
    let Ok(meta) = file.metadata() else { return };
    if (meta.dev(), meta.ino(), changed(&meta)) != (c.dev, c.ino, c.changed) {
        return; // a newer run's placeholder: theirs to remove
    }
    let Ok(_exclusive) = Flock::lock(file, FlockArg::LockExclusiveNonblock) else { return };
    if c.dir {
        let _ = fs::remove_dir(&c.path); // fails unless empty
    } else if fs::read(&c.path).is_ok_and(|b| b == c.contents.as_bytes()) {
        let _ = fs::remove_file(&c.path);
    }
}

/// An existing protected path that another sandbox made as a placeholder and that is still
/// untouched: share it (lease) and have our janitor remove it too, if we end last.
pub fn adopt(path: &Path, held: &mut Placeholders) -> io::Result<()> {
    if held.janitor.is_none() || !is_placeholder(path) {
        return Ok(());
    }
    let Ok(file) = File::open(path) else { return Ok(()) };
    let Ok(meta) = file.metadata() else { return Ok(()) };
    let contents = if meta.is_dir() {
        String::new()
    } else {
        match fs::read_to_string(path) {
            Ok(text) if text.is_empty() || text == "." => text,
            _ => return Ok(()),
        }
    };
    let Ok(lease) = Flock::lock(file, FlockArg::LockShared) else { return Ok(()) };
    let shared = Created {
        path: path.to_path_buf(),
        dir: meta.is_dir(),
        contents,
        dev: meta.dev(),
        ino: meta.ino(),
        changed: changed(&meta),
    };
    held.hold(shared, lease)
}
