//! Which paths inside the writable paths stay read-only: the names the host runs or trusts later
//! ([`PROTECTED_NAMES`]: git configuration and hooks, direnv, editor and agent configuration), in
//! every writable root and in the git repositories, worktrees and submodules found below it, plus
//! the launcher's `protect` list. Pure: the host is asked through [`HostView`].
//!
//! Why the shape: a read-only bind stops writes to a file, but a child in a writable directory
//! could still rename or delete the protected entry and create a new one. A mount point cannot
//! be renamed or removed (`EBUSY`), so every protected entry is a mount (read-only, or for `.git`
//! itself, writable but pinned), and so is every directory between a writable root and a nested
//! repository (renaming an ancestor would carry the repository away and let the child plant a
//! fresh one at its old path). Missing protected names get a placeholder created on the host for
//! the run (an empty file, which blocks a directory of that name too; `.git`, `hooks` and `info`
//! an empty directory; `commondir` gets `.`, which git reads as "this directory"), bound
//! read-only like the rest, and removed after the run (`mounts`, `Sandbox`).

use std::path::{Component, Path, PathBuf};

use super::{HostView, PathKind};
use crate::spec::{GIT_DIR_PROTECTED, PROTECTED_NAMES};

/// Directories the repository search never enters: big, generated, and never the home of a
/// repository the user runs git in.
pub const WALK_SKIP: &[&str] = &[
    ".git",
    "node_modules",
    "target",
    ".venv",
    "venv",
    "__pycache__",
    ".tox",
    ".cache",
    ".gradle",
    ".next",
    ".mypy_cache",
    ".pytest_cache",
    ".terraform",
];
/// How deep below a writable root nested repositories are searched.
pub const WALK_MAX_DEPTH: usize = 4;
/// How many directories the search reads per writable root at most, breadth first: reading one
/// costs ~40 us on a small VM (open, getdents, close), so this keeps the search under ~5 ms on
/// a huge tree. Repositories beyond it are not protected (submodules named in `.gitmodules`
/// always are).
pub const WALK_MAX_DIRS: usize = 128;
/// And how many entries in all (a few enormous directories cost as much as many small ones).
pub const WALK_MAX_ENTRIES: usize = 8_000;
/// How deep `.git/modules` nests submodule git directories that we follow.
const MODULES_MAX_DEPTH: usize = 4;

/// One protection: what to mount at `path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protection {
    /// Bind the directory onto itself, still writable: it can no longer be renamed or removed.
    Pin(PathBuf),
    /// Bind onto itself read-only (and thereby pinned).
    ReadOnly(PathBuf),
    /// Create `path` on the host (a directory, or a file with `contents`) before anything is
    /// mounted, then bind it read-only; the helper's janitor removes it after the run if still
    /// untouched.
    Placeholder { path: PathBuf, kind: PathKind, contents: &'static str },
}

impl Protection {
    pub fn path(&self) -> &Path {
        match self {
            Protection::Pin(p) | Protection::ReadOnly(p) | Protection::Placeholder { path: p, .. } => p,
        }
    }
}

/// A protected path that cannot be protected: a symbolic link (a link is not a mount point;
/// the child could replace it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unprotectable(pub PathBuf);

/// What the planner found, in mount order (parents before children).
#[derive(Debug, Default)]
pub struct Protections {
    pub list: Vec<Protection>,
    /// Whether a repository search hit [`WALK_MAX_ENTRIES`] (the rest of that root was not searched).
    pub truncated: bool,
}

struct Ctx<'a> {
    host: &'a dyn HostView,
    writable: &'a [PathBuf],
    out: Protections,
}

/// The protections for `writable` roots (cwd and `--writable`) and the extra `protect` paths.
pub fn protections(
    writable: &[PathBuf],
    protect: &[PathBuf],
    host: &dyn HostView,
) -> Result<Protections, Unprotectable> {
    let mut c = Ctx { host, writable, out: Protections::default() };
    for root in writable {
        if c.root_is_an_opt_out(root) || host.kind(root) != Some(PathKind::Dir) {
            continue;
        }
        c.names_in(root, root, true)?;
        // submodule checkouts named in .gitmodules (whatever the walk's bounds), then whatever
        // the bounded walk finds; each repository's own .gitmodules adds its submodules
        let mut queue: Vec<PathBuf> = c.submodule_paths(root);
        queue.extend(c.nested_repositories(root));
        let mut done: Vec<PathBuf> = Vec::new();
        while let Some(repo) = queue.pop() {
            if done.contains(&repo) || !repo.starts_with(root) || repo == *root {
                continue;
            }
            // pin every directory from the root down to the repository, then its names
            let mut dir = root.clone();
            for part in repo.strip_prefix(root).unwrap_or(Path::new("")).components() {
                dir.push(part);
                c.push(Protection::Pin(dir.clone()), root);
            }
            c.names_in(&repo, root, false)?;
            queue.extend(c.submodule_paths(&repo));
            done.push(repo);
        }
    }
    for path in protect {
        let Some(root) = writable.iter().find(|w| path.starts_with(w)) else { continue };
        if host.is_symlink(path) {
            return Err(Unprotectable(path.clone()));
        }
        if host.kind(path).is_some() {
            c.push(Protection::ReadOnly(path.clone()), root);
        }
    }
    Ok(c.out)
}

impl Ctx<'_> {
    /// A writable root that is itself a protected name (`--writable .git`) is the explicit
    /// opt-out for it: nothing is protected inside it.
    fn root_is_an_opt_out(&self, root: &Path) -> bool {
        let name = root.file_name().and_then(|n| n.to_str()).unwrap_or("");
        PROTECTED_NAMES.contains(&name)
            || self.writable.iter().any(|w| w != root && root.starts_with(w) && self.inside_protected(root, w))
    }

    /// Whether `path` (below `root`) lies at or under a protected name of `root`.
    fn inside_protected(&self, path: &Path, root: &Path) -> bool {
        path.strip_prefix(root).ok().and_then(|rel| rel.components().next()).is_some_and(|first| match first {
            Component::Normal(n) => PROTECTED_NAMES.iter().any(|p| n == *p),
            _ => false,
        })
    }

    /// Add `p` unless it, or an ancestor of it below `root`, is listed in `writable` (the
    /// opt-out), or it is already there.
    fn push(&mut self, p: Protection, root: &Path) {
        let path = p.path();
        let opted_out = self.writable.iter().any(|w| w != root && path.starts_with(w) && w.starts_with(root));
        // a pinned ancestor directory that is itself a writable root is already a mount
        let pin_of_root = matches!(p, Protection::Pin(_)) && self.writable.iter().any(|w| w == path);
        if !opted_out && !pin_of_root && !self.out.list.iter().any(|q| q.path() == path) {
            self.out.list.push(p);
        }
    }

    /// The protected names of a repository (or writable root) `dir`. Placeholders only at a
    /// writable root: a nested directory's missing names are not worth littering for.
    fn names_in(&mut self, dir: &Path, root: &Path, placeholders: bool) -> Result<(), Unprotectable> {
        for name in PROTECTED_NAMES {
            let path = dir.join(name);
            if self.host.is_symlink(&path) {
                if self.writable.iter().any(|w| w != root && path.starts_with(w) && w.starts_with(root)) {
                    continue; // opted out: nothing to protect
                }
                return Err(Unprotectable(path));
            }
            match (self.host.kind(&path), *name) {
                // a `.git` directory without HEAD is no repository (e.g. another sandbox's
                // placeholder): read-only as a whole, nothing made inside it
                (Some(PathKind::Dir), ".git") if self.host.kind(&path.join("HEAD")).is_some() => {
                    self.push(Protection::Pin(path.clone()), root);
                    self.git_dir(&path, root, true, 0)?;
                }
                (Some(PathKind::File), ".git") => {
                    self.push(Protection::ReadOnly(path.clone()), root);
                    self.linked_git_dir(&path, dir)?;
                }
                (Some(_), _) => self.push(Protection::ReadOnly(path), root),
                (None, _) if placeholders => {
                    // An empty file blocks a directory of that name just as well, and removing a
                    // file is cheap (rmdir waits on the mount namespace lock). `.git` stays a
                    // directory: git stops its search upward at a `.git` file it cannot read.
                    let kind = if *name == ".git" { PathKind::Dir } else { PathKind::File };
                    self.push(Protection::Placeholder { path, kind, contents: "" }, root);
                }
                (None, _) => {}
            }
        }
        Ok(())
    }

    /// A `.git` file (`gitdir: X`): a linked worktree or a submodule checkout. Its git directory
    /// and the common directory behind it are protected where they are writable.
    fn linked_git_dir(&mut self, dot_git: &Path, dir: &Path) -> Result<(), Unprotectable> {
        let Some(target) = self.host.read(dot_git).and_then(|s| s.strip_prefix("gitdir:").map(|t| t.trim().to_owned()))
        else {
            return Ok(());
        };
        let git_dir = normalize(&dir.join(target));
        if let Some(w) = self.writable.iter().find(|w| git_dir.starts_with(w)).cloned()
            && self.host.kind(&git_dir) == Some(PathKind::Dir)
        {
            self.push(Protection::Pin(git_dir.clone()), &w);
            self.git_dir(&git_dir, &w, false, 0)?;
        }
        Ok(())
    }

    /// The protected entries of git directory `git_dir`. `main`: a repository's own `.git`
    /// (missing entries get placeholders there); worktree and submodule git directories only
    /// protect what exists, plus the common directory they point at.
    fn git_dir(&mut self, git_dir: &Path, root: &Path, main: bool, depth: usize) -> Result<(), Unprotectable> {
        for name in GIT_DIR_PROTECTED {
            let path = git_dir.join(name);
            if self.host.is_symlink(&path) {
                return Err(Unprotectable(path));
            }
            match self.host.kind(&path) {
                Some(_) => self.push(Protection::ReadOnly(path), root),
                None if main => match *name {
                    "hooks" | "info" => {
                        self.push(Protection::Placeholder { path, kind: PathKind::Dir, contents: "" }, root)
                    }
                    // git reads a `commondir` file in any git directory; "." means this one
                    "commondir" => {
                        self.push(Protection::Placeholder { path, kind: PathKind::File, contents: "." }, root)
                    }
                    _ => {}
                },
                None => {}
            }
        }
        if let Some(common) = self.host.read(&git_dir.join("commondir")).map(|s| s.trim().to_owned())
            && common != "."
        {
            let common = normalize(&git_dir.join(common));
            if let Some(w) = self.writable.iter().find(|w| common.starts_with(w)).cloned()
                && common != git_dir
                && self.host.kind(&common) == Some(PathKind::Dir)
            {
                self.push(Protection::Pin(common.clone()), &w);
                self.git_dir(&common, &w, false, depth + 1)?;
            }
        }
        if depth >= MODULES_MAX_DEPTH {
            return Ok(());
        }
        // worktrees/<name> and modules/<name...>: git directories of their own; pin the
        // containers so they cannot be swapped for planted ones
        for container in ["worktrees", "modules"] {
            let dir = git_dir.join(container);
            if self.host.kind(&dir) != Some(PathKind::Dir) {
                continue;
            }
            self.push(Protection::Pin(dir.clone()), root);
            self.sub_git_dirs(&dir, root, depth)?;
        }
        Ok(())
    }

    fn sub_git_dirs(&mut self, dir: &Path, root: &Path, depth: usize) -> Result<(), Unprotectable> {
        for (name, kind) in self.host.list(dir) {
            if kind != Some(PathKind::Dir) {
                continue;
            }
            let sub = dir.join(name);
            self.push(Protection::Pin(sub.clone()), root);
            let is_git_dir =
                self.host.kind(&sub.join("HEAD")).is_some() || self.host.kind(&sub.join("commondir")).is_some();
            if is_git_dir {
                self.git_dir(&sub, root, false, depth + 1)?;
            } else if depth + 1 < MODULES_MAX_DEPTH {
                // submodule names may contain slashes: modules/a/b
                self.sub_git_dirs(&sub, root, depth + 1)?;
            }
        }
        Ok(())
    }

    /// The checkouts of the submodules `dir/.gitmodules` names (`path = …`) that exist.
    fn submodule_paths(&self, dir: &Path) -> Vec<PathBuf> {
        let Some(text) = self.host.read(&dir.join(".gitmodules")) else { return Vec::new() };
        text.lines()
            .filter_map(|line| {
                let (key, value) = line.split_once('=')?;
                (key.trim() == "path").then(|| normalize(&dir.join(value.trim())))
            })
            .filter(|p| p.starts_with(dir) && p != dir && self.host.kind(&p.join(".git")).is_some())
            .collect()
    }

    /// Directories below `root` (not `root` itself) that hold a `.git`, breadth first, bounded.
    fn nested_repositories(&mut self, root: &Path) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let mut queue = std::collections::VecDeque::from([(root.to_path_buf(), 0usize)]);
        let (mut entries, mut dirs) = (0usize, 0usize);
        while let Some((dir, depth)) = queue.pop_front() {
            dirs += 1;
            if dirs > WALK_MAX_DIRS {
                self.out.truncated = true;
                return found;
            }
            let listing = self.host.list(&dir);
            entries += listing.len();
            if entries > WALK_MAX_ENTRIES {
                self.out.truncated = true;
                return found;
            }
            // one listing says both whether this is a repository and where to go next: no stat
            // per directory (the listing's entry types come from the directory itself)
            if depth > 0 && listing.iter().any(|(name, _)| name == ".git") {
                found.push(dir.clone());
            }
            if depth + 1 > WALK_MAX_DEPTH {
                continue;
            }
            for (name, kind) in listing {
                if kind != Some(PathKind::Dir) || WALK_SKIP.iter().any(|s| name == *s) {
                    continue;
                }
                let sub = dir.join(&name);
                if !self.writable.contains(&sub) {
                    queue.push_back((sub, depth + 1)); // a writable root is searched as such
                }
            }
        }
        found
    }
}

/// `a/b/../c` -> `a/c`, without touching the filesystem (git writes `gitdir:` paths plainly).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}
