//! Executes a [`plan::mount_plan`](crate::plan::mount_plan) in the helper's new mount namespace
//! (the placeholders' lifecycle is `placeholders`).

use std::ffi::OsString;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::stat::Mode;
use nix::sys::statvfs::{FsFlags, statvfs};

use crate::error::Failure;
use crate::placeholders::{self, Placeholders};
use crate::plan::{HostView, MountOp, PathKind, Source, Staged, staged_name, staging_dir};
use crate::spec::SandboxSpec;

/// The real host filesystem, for the planner.
#[derive(Debug)]
pub struct HostFs;

impl HostView for HostFs {
    fn kind(&self, path: &Path) -> Option<PathKind> {
        fs::metadata(path).ok().map(|m| if m.is_dir() { PathKind::Dir } else { PathKind::File })
    }
    fn canonical(&self, path: &Path) -> PathBuf {
        fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
    }
    fn is_symlink(&self, path: &Path) -> bool {
        fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
    }
    fn list(&self, dir: &Path) -> Vec<(OsString, Option<PathKind>)> {
        let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
        entries
            .filter_map(Result::ok)
            .map(|e| {
                let kind = e.file_type().ok().and_then(|t| {
                    if t.is_symlink() {
                        None
                    } else if t.is_dir() {
                        Some(PathKind::Dir)
                    } else {
                        Some(PathKind::File)
                    }
                });
                (e.file_name(), kind)
            })
            .collect()
    }
    fn read_link(&self, path: &Path) -> Option<PathBuf> {
        fs::read_link(path).ok()
    }
    fn terminal(&self) -> Option<u32> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        (0..=2).find_map(|fd| {
            let link = format!("/proc/self/fd/{fd}");
            let name = fs::read_link(&link).ok()?;
            let index: u32 = name.to_str()?.strip_prefix("/dev/pts/")?.parse().ok()?;
            // the name must be that very terminal (not a namesake in another devpts instance)
            let (ours, named) = (fs::metadata(&link).ok()?, fs::metadata(&name).ok()?);
            let same = ours.file_type().is_char_device()
                && (ours.dev(), ours.ino(), ours.rdev()) == (named.dev(), named.ino(), named.rdev());
            same.then_some(index)
        })
    }
    fn read(&self, path: &Path) -> Option<String> {
        use std::io::Read;
        let mut text = String::new();
        let file = File::open(path).ok()?;
        if !file.metadata().ok()?.is_file() {
            return None;
        }
        file.take(64 * 1024).read_to_string(&mut text).ok()?;
        Some(text)
    }
}

const NONE: Option<&str> = None;

/// Run `plan`. The placeholders it creates or adopts are recorded in `held` as they come, so
/// the caller can remove them even when a later step fails. Returns the fds that must stay open
/// for the whole run (a reserved pty's master: closing it would remove the mount point).
pub fn execute(plan: &[MountOp], spec: &SandboxSpec, held: &mut Placeholders) -> Result<Vec<OwnedFd>, Failure> {
    let staging = staging_dir(plan).map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/tmp"));
    let mut sources: Vec<OwnedFd> = Vec::new();
    let mut kept: Vec<OwnedFd> = Vec::new();
    for op in plan {
        if let MountOp::ReservePty { devpts, index } = op {
            let master = reserve_pty(devpts, *index).map_err(|e| Failure::new(op.step(), e, describe(op)))?;
            kept.push(master);
            continue;
        }
        run(op, spec, &staging, &mut sources, held).map_err(|e| Failure::new(op.step(), e, describe(op)))?;
    }
    Ok(kept)
}

/// Open the instance's `ptmx` until pty `index` is allocated (the kernel hands out the lowest
/// free number); keep that master, close the others.
fn reserve_pty(devpts: &Path, index: u32) -> io::Result<OwnedFd> {
    let ptmx = devpts.join("ptmx");
    let mut opened = Vec::new();
    loop {
        let master = open(ptmx.as_path(), OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC, Mode::empty())?;
        let number = crate::sys::pty_number(&master)?;
        if number == index {
            return Ok(master);
        }
        if number > index || opened.len() > index as usize {
            return Err(io::Error::from_raw_os_error(libc::EBUSY));
        }
        opened.push(master);
    }
}

fn describe(op: &MountOp) -> String {
    match op {
        MountOp::MakePrivate | MountOp::ReadOnlyAll => "/".into(),
        MountOp::OpenHost { path, .. }
        | MountOp::Tmpfs { target: path, .. }
        | MountOp::MkdirAll { path }
        | MountOp::CreateFile { path }
        | MountOp::Symlink { link: path, .. }
        | MountOp::Devpts { target: path }
        | MountOp::ReservePty { devpts: path, .. }
        | MountOp::WriteStaged { path, .. }
        | MountOp::Bind { target: path, .. }
        | MountOp::MakeWritable { target: path }
        | MountOp::MakeReadOnly { target: path }
        | MountOp::Unlink { path }
        | MountOp::RemoveDir { path }
        | MountOp::Unmount { target: path }
        | MountOp::Placeholder { path, .. }
        | MountOp::BindInPlace { target: path, .. }
        | MountOp::Chdir { path } => path.display().to_string(),
    }
}

fn run(
    op: &MountOp,
    spec: &SandboxSpec,
    staging: &Path,
    sources: &mut Vec<OwnedFd>,
    held: &mut Placeholders,
) -> io::Result<()> {
    match op {
        MountOp::Placeholder { path, kind, contents } => placeholders::make(path, *kind, contents, held)?,
        MountOp::BindInPlace { target, read_only, placeholder } => {
            // Standing on another sandbox's placeholder (read-only or not, e.g. a `.git` it
            // made that our plan took for a real one): lease it, or its janitor removes it
            // under us and detaches this mount.
            if !*placeholder {
                placeholders::adopt(target, held)?;
            }
            // Gone since the plan (an earlier or concurrent sandbox's janitor removed its
            // placeholder), before or right after our bind: hold the name with a placeholder of
            // our own, leased, and bind again.
            let mut attempts = 0;
            loop {
                match bind_in_place(target, *read_only) {
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                        if *placeholder && held.skipped(target) {
                            return Ok(());
                        }
                        if held.janitor.is_none() || attempts == 4 {
                            return Err(e);
                        }
                        attempts += 1;
                        let name = target.file_name().and_then(|n| n.to_str()).unwrap_or("");
                        let kind =
                            if matches!(name, ".git" | "hooks" | "info") { PathKind::Dir } else { PathKind::File };
                        placeholders::make(target, kind, if name == "commondir" { "." } else { "" }, held)?;
                    }
                    other => break other?,
                }
            }
        }
        MountOp::MakePrivate => mount(NONE, "/", NONE, MsFlags::MS_REC | MsFlags::MS_PRIVATE, NONE)?,
        MountOp::OpenHost { index, path, .. } => {
            debug_assert_eq!(*index, sources.len());
            sources.push(open(path.as_path(), OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())?);
        }
        MountOp::ReadOnlyAll => match crate::sys::mount_read_only_recursive(Path::new("/")) {
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => read_only_each_mount()?,
            other => other?,
        },
        MountOp::Tmpfs { target, mode, read_only } => {
            let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
            if *read_only {
                flags |= MsFlags::MS_RDONLY | MsFlags::MS_NOEXEC;
            }
            let data = format!("mode={mode:o}");
            mount(Some("tmpfs"), target.as_path(), Some("tmpfs"), flags, Some(data.as_str()))?;
        }
        MountOp::MkdirAll { path } => DirBuilder::new().recursive(true).mode(0o755).create(path)?,
        MountOp::CreateFile { path } => {
            drop(OpenOptions::new().write(true).create(true).truncate(false).mode(0o644).open(path)?)
        }
        MountOp::Symlink { link, target } => std::os::unix::fs::symlink(target, link)?,
        MountOp::Devpts { target } => mount(
            Some("devpts"),
            target.as_path(),
            Some("devpts"),
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            Some("newinstance,ptmxmode=0666,mode=620"),
        )?,
        MountOp::WriteStaged { which, path } => {
            let contents = match which {
                Staged::ResolvConf => spec.resolv_conf.as_str(),
                Staged::Hosts => spec.hosts_file.as_deref().unwrap_or(""),
                Staged::Empty => "",
            };
            let mut f = OpenOptions::new().write(true).create_new(true).mode(0o444).open(path)?;
            f.write_all(contents.as_bytes())?;
        }
        MountOp::Bind { source, target, recursive, read_only } => {
            let from = match source {
                Source::Host(i) => {
                    let fd = sources.get(*i).ok_or_else(|| io::Error::other("plan refers to an unopened source"))?;
                    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
                }
                Source::Staged(which) => staging.join(staged_name(*which)),
                Source::Path(path) => path.clone(),
            };
            let mut flags = MsFlags::MS_BIND;
            if *recursive {
                flags |= MsFlags::MS_REC;
            }
            mount(Some(from.as_path()), target.as_path(), NONE, flags, NONE)?;
            if *read_only {
                remount(target, true)?;
            }
        }
        MountOp::MakeWritable { target } => match remount(target, false) {
            // the host mount itself is read-only (and locked): it stays read-only, as on the host
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {}
            other => other?,
        },
        MountOp::MakeReadOnly { target } => remount(target, true)?,
        MountOp::Unlink { path } => fs::remove_file(path)?,
        MountOp::RemoveDir { path } => fs::remove_dir(path)?,
        MountOp::Unmount { target } => umount2(target.as_path(), MntFlags::MNT_DETACH)?,
        MountOp::Chdir { path } => std::env::set_current_dir(path)?,
        MountOp::ReservePty { .. } => return Err(io::Error::other("a pty reservation is kept by `execute`")),
    }
    Ok(())
}

/// Bind `path` onto itself and make that mount read-only.
pub fn bind_read_only_in_place(path: &Path) -> io::Result<()> {
    mount(Some(path), path, NONE, MsFlags::MS_BIND | MsFlags::MS_REC, NONE)?;
    remount(path, true)
}

/// Linux < 5.12 has no recursive `mount_setattr`: remount every mount point read-only, one
/// by one, parents first (the order of /proc/self/mountinfo).
fn read_only_each_mount() -> io::Result<()> {
    let table = fs::read_to_string("/proc/self/mountinfo")?;
    for mount_point in mount_points(&table) {
        match remount(&mount_point, true) {
            // covered by a later mount, or under a directory we cannot search: unreachable
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::EACCES)) => {}
            other => other?,
        }
    }
    Ok(())
}

/// Mount points of a mountinfo table (field 5, with the kernel's octal escapes undone).
pub(crate) fn mount_points(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo.lines().filter_map(|line| line.split(' ').nth(4)).map(unescape_octal).collect()
}

fn unescape_octal(field: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && (b'0'..=b'3').contains(&bytes[i + 1])
            && bytes[i + 2..i + 4].iter().all(|b| (b'0'..=b'7').contains(b))
        {
            out.push((bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    PathBuf::from(OsString::from_vec(out))
}

/// Change only the read-only flag of the mount at `target`, keeping the flags a remount in a
/// user namespace may not clear (nosuid, nodev, noexec, atime: locked when inherited).
/// Bind `target` onto itself (a mount point cannot be renamed or removed), read-only if asked.
fn bind_in_place(target: &Path, read_only: bool) -> io::Result<()> {
    mount(Some(target), target, NONE, MsFlags::MS_BIND | MsFlags::MS_REC, NONE)?;
    if read_only {
        remount(target, true)?;
    }
    Ok(())
}

fn remount(target: &Path, read_only: bool) -> io::Result<()> {
    let current = statvfs(target)?.flags();
    let mut flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND;
    for (st, ms) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if current.contains(st) {
            flags |= ms;
        }
    }
    if read_only {
        flags |= MsFlags::MS_RDONLY;
    }
    mount(NONE, target, NONE, flags, NONE).map_err(|e: Errno| e.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_mount_points_are_unescaped() {
        let table = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/vda rw\n\
                     23 22 0:5 / /mnt/with\\040space rw - tmpfs tmpfs rw\n\
                     24 22 0:6 / /back\\134slash\\011tab rw - tmpfs tmpfs rw\n";
        assert_eq!(
            mount_points(table),
            vec![PathBuf::from("/"), PathBuf::from("/mnt/with space"), PathBuf::from("/back\\slash\ttab")]
        );
    }
}
