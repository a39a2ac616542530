//! Plan tests for the hardening: protections inside writable paths, the private home, the
//! private socket and temporary directories. A fake host tree stands in for the kernel.

use std::collections::BTreeMap;

use super::protect::{WALK_MAX_DEPTH, WALK_MAX_DIRS, WALK_MAX_ENTRIES};
use super::*;
use crate::spec::{FsPolicy, HomePolicy, default_hidden_paths, default_home_toolchains};

#[derive(Clone)]
enum Node {
    Dir,
    File(&'static str),
    Link(&'static str),
}

#[derive(Clone, Default)]
struct Tree(BTreeMap<PathBuf, Node>);

impl Tree {
    /// A user `u` with a project that is a git checkout, the Debian CA path, the /dev nodes.
    fn new() -> Tree {
        let mut t = Tree::default();
        for d in ["/", "/home", "/home/u", "/home/u/project", "/home/u/.ssh", "/home/u/.cargo", "/home/u/.cargo/bin"] {
            t.dir(d);
        }
        for d in ["/run", "/var", "/var/tmp", "/tmp", "/dev", "/etc", "/etc/ssl", "/etc/ssl/certs"] {
            t.dir(d);
        }
        for f in ["/etc/resolv.conf", "/etc/ssl/certs/ca-certificates.crt", "/var/tmp/ca.pem", "/home/u/.gitconfig"] {
            t.file(f, "x");
        }
        for n in DEV_NODES {
            t.file(&format!("/dev/{n}"), "");
        }
        t.git("/home/u/project/.git");
        t
    }
    fn dir(&mut self, p: &str) -> &mut Self {
        self.0.insert(p.into(), Node::Dir);
        self
    }
    fn file(&mut self, p: &str, text: &'static str) -> &mut Self {
        self.0.insert(p.into(), Node::File(text));
        self
    }
    fn git(&mut self, git_dir: &str) -> &mut Self {
        self.dir(git_dir);
        for d in ["hooks", "info", "objects", "refs"] {
            self.dir(&format!("{git_dir}/{d}"));
        }
        self.file(&format!("{git_dir}/config"), "[core]\n").file(&format!("{git_dir}/HEAD"), "ref: refs/heads/main\n")
    }
}

impl HostView for Tree {
    fn kind(&self, path: &Path) -> Option<PathKind> {
        match self.0.get(path)? {
            Node::Dir => Some(PathKind::Dir),
            Node::File(_) => Some(PathKind::File),
            Node::Link(to) => self.kind(Path::new(to)),
        }
    }
    fn is_symlink(&self, path: &Path) -> bool {
        matches!(self.0.get(path), Some(Node::Link(_)))
    }
    fn list(&self, dir: &Path) -> Vec<(OsString, Option<PathKind>)> {
        self.0
            .iter()
            .filter(|(p, _)| p.parent() == Some(dir) && p.as_path() != dir)
            .map(|(p, n)| {
                let kind = match n {
                    Node::Dir => Some(PathKind::Dir),
                    Node::File(_) => Some(PathKind::File),
                    Node::Link(_) => None,
                };
                (p.file_name().unwrap().to_owned(), kind)
            })
            .collect()
    }
    fn read(&self, path: &Path) -> Option<String> {
        match self.0.get(path)? {
            Node::File(t) => Some((*t).to_owned()),
            _ => None,
        }
    }
}

const PROJECT: &str = "/home/u/project";

fn spec() -> SandboxSpec {
    let mut s = SandboxSpec::new("sh", PROJECT, "/var/tmp/ca.pem");
    s.fs = FsPolicy { writable: vec![PROJECT.into()], ..FsPolicy::default() };
    s
}

fn at(plan: &[MountOp], pred: impl Fn(&MountOp) -> bool) -> Option<usize> {
    plan.iter().position(pred)
}

fn in_place(plan: &[MountOp], target: &str) -> Option<(usize, bool)> {
    plan.iter().enumerate().find_map(|(i, op)| match op {
        MountOp::BindInPlace { target: t, read_only, .. } if t == Path::new(target) => Some((i, *read_only)),
        _ => None,
    })
}

fn placeholder(plan: &[MountOp], path: &str) -> Option<(usize, PathKind, &'static str)> {
    plan.iter().enumerate().find_map(|(i, op)| match op {
        MountOp::Placeholder { path: p, kind, contents } if p == Path::new(path) => Some((i, *kind, *contents)),
        _ => None,
    })
}

#[test]
fn git_config_hooks_and_info_are_read_only_and_git_is_pinned() {
    let plan = mount_plan(&spec(), &Tree::new()).unwrap();
    let bind = at(&plan, |op| matches!(op, MountOp::Bind { target, .. } if target == Path::new(PROJECT))).unwrap();
    let (pin, ro) = in_place(&plan, "/home/u/project/.git").expect(".git pinned");
    assert!(!ro, "objects, refs and the index stay writable");
    assert!(bind < pin, "protections sit on top of the writable bind");
    for entry in ["config", "hooks", "info"] {
        let (i, ro) = in_place(&plan, &format!("{PROJECT}/.git/{entry}")).unwrap_or_else(|| panic!("{entry}"));
        assert!(ro && pin < i, "{entry} read-only, on top of the pin");
    }
    for entry in ["objects", "refs", "HEAD", "index"] {
        assert!(in_place(&plan, &format!("{PROJECT}/.git/{entry}")).is_none(), "{entry} stays writable");
    }
}

#[test]
fn missing_protected_names_get_placeholders_before_anything_is_mounted() {
    let plan = mount_plan(&spec(), &Tree::new()).unwrap();
    let read_only_all = at(&plan, |op| *op == MountOp::ReadOnlyAll).unwrap();
    for (name, kind) in [
        (".envrc", PathKind::File),
        (".gitmodules", PathKind::File),
        (".mcp.json", PathKind::File),
        (".vscode", PathKind::File),
        (".idea", PathKind::File),
        (".cursor", PathKind::File),
        (".claude", PathKind::File),
    ] {
        let path = format!("{PROJECT}/{name}");
        let (i, k, contents) = placeholder(&plan, &path).unwrap_or_else(|| panic!("{name} placeholder"));
        assert!(i < read_only_all && k == kind && contents.is_empty(), "{name}");
        let (_, ro) = in_place(&plan, &path).unwrap();
        assert!(ro, "{name} bound read-only");
    }
    // git reads a commondir file in any git directory: planting one would redirect config/hooks
    let (_, kind, contents) = placeholder(&plan, &format!("{PROJECT}/.git/commondir")).expect("commondir");
    assert_eq!((kind, contents), (PathKind::File, "."), "'.' is what git reads as this very directory");
    assert!(placeholder(&plan, &format!("{PROJECT}/.git/config")).is_none(), "existing: no placeholder");
    // not a repository: `.git` itself is held by an empty directory (git looks further up past it)
    let mut no_repo = Tree::new();
    no_repo.0.retain(|p, _| !p.starts_with("/home/u/project/.git"));
    let plan = mount_plan(&spec(), &no_repo).unwrap();
    assert_eq!(placeholder(&plan, &format!("{PROJECT}/.git")).map(|(_, k, _)| k), Some(PathKind::Dir));
    // and such an empty `.git` (another sandbox's placeholder) is read-only as a whole
    no_repo.dir("/home/u/project/.git");
    let plan = mount_plan(&spec(), &no_repo).unwrap();
    assert!(in_place(&plan, &format!("{PROJECT}/.git")).is_some_and(|(_, ro)| ro));
    assert!(
        !plan
            .iter()
            .any(|op| matches!(op, MountOp::Placeholder { path, .. } if path.starts_with("/home/u/project/.git/")))
    );
}

#[test]
fn a_writable_git_is_the_opt_out() {
    let mut s = spec();
    s.fs.writable.push(format!("{PROJECT}/.git").into());
    let plan = mount_plan(&s, &Tree::new()).unwrap();
    assert!(!plan.iter().any(|op| matches!(op,
        MountOp::BindInPlace { target, .. } | MountOp::Placeholder { path: target, .. }
            if target.starts_with("/home/u/project/.git"))));
    assert!(in_place(&plan, &format!("{PROJECT}/.vscode")).is_some(), "the other names stay protected");
    // hooks alone
    let mut s = spec();
    s.fs.writable.push(format!("{PROJECT}/.git/hooks").into());
    let plan = mount_plan(&s, &Tree::new()).unwrap();
    assert!(in_place(&plan, &format!("{PROJECT}/.git/hooks")).is_none());
    assert!(in_place(&plan, &format!("{PROJECT}/.git/config")).is_some_and(|(_, ro)| ro));
}

#[test]
fn worktree_git_files_and_their_common_directory_are_protected() {
    let mut t = Tree::new();
    t.git("/home/u/main/.git");
    t.dir("/home/u/main").dir("/home/u/main/.git/worktrees").dir("/home/u/main/.git/worktrees/feature");
    t.file("/home/u/main/.git/worktrees/feature/commondir", "../..\n");
    t.file("/home/u/main/.git/worktrees/feature/HEAD", "ref: refs/heads/feature\n");
    t.dir("/home/u/wt");
    t.file("/home/u/wt/.git", "gitdir: /home/u/main/.git/worktrees/feature\n");
    let mut s = spec();
    s.cwd = "/home/u/wt".into();
    s.fs.writable = vec!["/home/u/wt".into(), "/home/u/main".into()];
    let plan = mount_plan(&s, &t).unwrap();
    assert!(in_place(&plan, "/home/u/wt/.git").is_some_and(|(_, ro)| ro), "the .git file cannot be rewritten");
    assert!(in_place(&plan, "/home/u/main/.git/worktrees/feature").is_some_and(|(_, ro)| !ro), "gitdir pinned");
    assert!(in_place(&plan, "/home/u/main/.git/worktrees/feature/commondir").is_some_and(|(_, ro)| ro));
    assert!(in_place(&plan, "/home/u/main/.git/worktrees").is_some(), "the container is pinned too");
    for e in ["config", "hooks", "info"] {
        assert!(in_place(&plan, &format!("/home/u/main/.git/{e}")).is_some_and(|(_, ro)| ro), "{e}");
    }
    // with only the worktree writable, the main repository is read-only anyway: nothing to add there
    s.fs.writable = vec!["/home/u/wt".into()];
    let plan = mount_plan(&s, &t).unwrap();
    assert!(in_place(&plan, "/home/u/wt/.git").is_some());
    assert!(
        !plan.iter().any(|op| matches!(op, MountOp::BindInPlace { target, .. } if target.starts_with("/home/u/main")))
    );
}

#[test]
fn submodule_git_directories_are_protected() {
    let mut t = Tree::new();
    t.dir(&format!("{PROJECT}/.git/modules")).dir(&format!("{PROJECT}/.git/modules/libs"));
    t.git(&format!("{PROJECT}/.git/modules/libs/a"));
    t.dir(&format!("{PROJECT}/libs")).dir(&format!("{PROJECT}/libs/a"));
    t.file(&format!("{PROJECT}/libs/a/.git"), "gitdir: ../../.git/modules/libs/a\n");
    let plan = mount_plan(&spec(), &t).unwrap();
    let m = format!("{PROJECT}/.git/modules/libs/a");
    assert!(in_place(&plan, &format!("{m}/config")).is_some_and(|(_, ro)| ro));
    assert!(in_place(&plan, &format!("{m}/hooks")).is_some_and(|(_, ro)| ro));
    assert!(in_place(&plan, &m).is_some_and(|(_, ro)| !ro), "pinned");
    assert!(in_place(&plan, &format!("{PROJECT}/.git/modules")).is_some());
    assert!(in_place(&plan, &format!("{PROJECT}/libs/a/.git")).is_some_and(|(_, ro)| ro));
    // the path down to the checkout is pinned: renaming libs/ cannot carry the repository away
    let libs = in_place(&plan, &format!("{PROJECT}/libs")).expect("libs pinned").0;
    let a = in_place(&plan, &format!("{PROJECT}/libs/a")).expect("libs/a pinned").0;
    let dot_git = in_place(&plan, &format!("{PROJECT}/libs/a/.git")).unwrap().0;
    assert!(libs < a && a < dot_git, "parents first");
}

#[test]
fn nested_repositories_are_found_within_bounds() {
    let mut t = Tree::new();
    t.dir(&format!("{PROJECT}/vendor")).dir(&format!("{PROJECT}/vendor/dep"));
    t.git(&format!("{PROJECT}/vendor/dep/.git"));
    t.dir(&format!("{PROJECT}/node_modules")).dir(&format!("{PROJECT}/node_modules/pkg"));
    t.git(&format!("{PROJECT}/node_modules/pkg/.git"));
    let mut deep = PROJECT.to_owned();
    for i in 0..=WALK_MAX_DEPTH {
        deep.push_str(&format!("/d{i}"));
        t.dir(&deep);
    }
    t.git(&format!("{deep}/.git"));
    let plan = mount_plan(&spec(), &t).unwrap();
    assert!(in_place(&plan, &format!("{PROJECT}/vendor/dep/.git/config")).is_some_and(|(_, ro)| ro));
    assert!(in_place(&plan, &format!("{PROJECT}/vendor/dep/.git")).is_some());
    assert!(in_place(&plan, &format!("{PROJECT}/vendor")).is_some(), "ancestor pinned");
    assert!(placeholder(&plan, &format!("{PROJECT}/vendor/dep/.envrc")).is_none(), "no litter in nested repositories");
    assert!(in_place(&plan, &format!("{PROJECT}/node_modules/pkg/.git")).is_none(), "node_modules is skipped");
    assert!(in_place(&plan, &format!("{deep}/.git")).is_none(), "beyond the depth bound");

    // the directory budget stops the walk
    let mut many = Tree::new();
    for i in 0..WALK_MAX_DIRS + 1 {
        many.dir(&format!("{PROJECT}/a{i:04}"));
    }
    many.dir(&format!("{PROJECT}/zz")).git(&format!("{PROJECT}/zz/.git"));
    let p = protect::protections(&[PROJECT.into()], &[], &many).unwrap();
    assert!(p.truncated && !p.list.iter().any(|x| x.path().starts_with("/home/u/project/zz")));
    // and so does the entry budget
    let mut wide = Tree::new();
    for i in 0..WALK_MAX_ENTRIES + 10 {
        wide.0.insert(PathBuf::from(format!("{PROJECT}/f{i:06}")), Node::File(""));
    }
    wide.dir(&format!("{PROJECT}/zz")).git(&format!("{PROJECT}/zz/.git"));
    let p = protect::protections(&[PROJECT.into()], &[], &wide).unwrap();
    assert!(p.truncated);
}

#[test]
fn symlinked_protected_names_fail_closed() {
    let mut t = Tree::new();
    t.0.insert(format!("{PROJECT}/.envrc").into(), Node::Link("/home/u/dotfiles/envrc"));
    assert_eq!(mount_plan(&spec(), &t).unwrap_err(), Unprotectable(format!("{PROJECT}/.envrc").into()));
    let mut s = spec();
    s.fs.writable.push(format!("{PROJECT}/.envrc").into());
    assert!(mount_plan(&s, &t).is_ok(), "listing it writable is the opt-out");
}

#[test]
fn protect_paths_are_read_only_only_where_writable() {
    let mut t = Tree::new();
    t.file(&format!("{PROJECT}/authsome-policy.toml"), "").file("/etc/authsome.toml", "");
    let mut s = spec();
    s.fs.protect = vec![format!("{PROJECT}/authsome-policy.toml").into(), "/etc/authsome.toml".into()];
    let plan = mount_plan(&s, &t).unwrap();
    assert!(in_place(&plan, &format!("{PROJECT}/authsome-policy.toml")).is_some_and(|(_, ro)| ro));
    assert!(in_place(&plan, "/etc/authsome.toml").is_none(), "already read-only");
    s.fs.open = true;
    let plan = mount_plan(&s, &t).unwrap();
    assert!(in_place(&plan, "/etc/authsome.toml").is_some_and(|(_, ro)| ro), "open: everything is writable");
}

#[test]
fn private_home_is_a_fresh_tmpfs_with_the_project_and_toolchains_bound_back() {
    let t = Tree::new();
    let mut s = spec();
    s.fs.home =
        HomePolicy::Private { path: "/home/u".into(), read_only: default_home_toolchains(Path::new("/home/u")) };
    s.fs.hide = default_hidden_paths(Path::new("/home/u"), Path::new("/home/u/.authsome"), 1000);
    s.fs.read = vec!["/home/u/.ssh".into()];
    let plan = mount_plan(&s, &t).unwrap();
    let read_only_all = at(&plan, |op| *op == MountOp::ReadOnlyAll).unwrap();
    let home = at(
        &plan,
        |op| matches!(op, MountOp::Tmpfs { target, mode: 0o700, read_only: false } if target == Path::new("/home/u")),
    )
    .expect("home tmpfs 0700, writable");
    let mkdir = at(&plan, |op| matches!(op, MountOp::MkdirAll { path } if path == Path::new(PROJECT))).unwrap();
    let project =
        at(&plan, |op| matches!(op, MountOp::Bind { target, read_only: false, .. } if target == Path::new(PROJECT)))
            .unwrap();
    assert!(read_only_all < home && home < mkdir && mkdir < project);
    for ro in ["/home/u/.cargo/bin", "/home/u/.gitconfig"] {
        let i = at(&plan, |op| matches!(op, MountOp::Bind { target, read_only: true, .. } if target == Path::new(ro)))
            .unwrap_or_else(|| panic!("{ro}"));
        assert!(home < i);
    }
    assert!(
        !plan.iter().any(|op| matches!(op, MountOp::Bind { target, .. } if target == Path::new("/home/u/.rustup"))),
        "missing toolchains skipped"
    );
    assert!(
        at(&plan, |op| matches!(op, MountOp::CreateFile { path } if path == Path::new("/home/u/.gitconfig"))).is_some()
    );
    // --read ~/.ssh brings it in, but the hide list still wins over it
    let ssh_read = at(
        &plan,
        |op| matches!(op, MountOp::Bind { target, read_only: true, .. } if target == Path::new("/home/u/.ssh")),
    )
    .unwrap();
    let ssh_hide = at(
        &plan,
        |op| matches!(op, MountOp::Tmpfs { target, read_only: true, .. } if target == Path::new("/home/u/.ssh")),
    )
    .unwrap();
    assert!(ssh_read < ssh_hide);
    // hidden paths the tmpfs does not contain need no mount
    assert!(!plan.iter().any(|op| matches!(op, MountOp::Tmpfs { target, .. } | MountOp::Bind { target, .. } if target == Path::new("/home/u/.aws"))));
}

#[test]
fn private_home_shows_a_read_only_cwd_and_starts_from_home_itself() {
    let t = Tree::new();
    let mut s = spec();
    s.fs.writable = vec![];
    s.fs.home = HomePolicy::Private { path: "/home/u".into(), read_only: vec![] };
    let plan = mount_plan(&s, &t).unwrap();
    assert!(
        at(&plan, |op| matches!(op, MountOp::Bind { target, read_only: true, .. } if target == Path::new(PROJECT)))
            .is_some()
    );
    assert!(!plan.iter().any(|op| matches!(op, MountOp::MakeWritable { .. })));
    s.cwd = "/home/u".into();
    let plan = mount_plan(&s, &t).unwrap();
    assert!(matches!(plan.last(), Some(MountOp::Chdir { path }) if path == Path::new("/home/u")));
    assert!(!plan.iter().any(|op| matches!(op, MountOp::Bind { target, .. } if target == Path::new("/home/u"))));
}

#[test]
fn run_and_var_tmp_are_private_for_every_caller() {
    let mut s = spec();
    s.fs.hide = default_hidden_paths(Path::new("/home/u"), Path::new("/home/u/.authsome"), 1000);
    s.fs.hide.retain(|p| !p.starts_with("/run") && !p.starts_with("/var/run"));
    let plan = mount_plan(&s, &Tree::new()).unwrap();
    assert!(
        at(&plan, |op| matches!(op, MountOp::Tmpfs { target, read_only: true, .. } if target == Path::new("/run")))
            .is_some(),
        "/run hidden even when the spec does not ask"
    );
    assert!(
        at(
            &plan,
            |op| matches!(op, MountOp::Tmpfs { target, read_only: false, .. } if target == Path::new("/var/tmp"))
        )
        .is_some()
    );
    // a writable path under /var/tmp is recreated inside the private one
    let mut s = spec();
    s.cwd = "/var/tmp/work".into();
    s.fs.writable = vec!["/var/tmp/work".into()];
    let mut t = Tree::new();
    t.dir("/var/tmp/work");
    let plan = mount_plan(&s, &t).unwrap();
    let tmpfs = at(&plan, |op| matches!(op, MountOp::Tmpfs { target, .. } if target == Path::new("/var/tmp"))).unwrap();
    let mkdir = at(&plan, |op| matches!(op, MountOp::MkdirAll { path } if path == Path::new("/var/tmp/work"))).unwrap();
    let bind =
        at(&plan, |op| matches!(op, MountOp::Bind { target, .. } if target == Path::new("/var/tmp/work"))).unwrap();
    assert!(tmpfs < mkdir && mkdir < bind);
}

#[test]
fn hidden_paths_missing_at_start_are_kept_from_appearing() {
    let mut s = spec();
    s.fs.hide = vec!["/home/u/.aws".into(), "/home/u/.ssh".into(), "/home/u/project/.env-missing".into()];
    let plan = mount_plan(&s, &Tree::new()).unwrap();
    let staging_bind = at(
        &plan,
        |op| matches!(op, MountOp::Bind { source: Source::Path(p), read_only: true, .. } if p == Path::new("/home/u")),
    )
    .expect("the real home kept at a staging point");
    let tmpfs = at(&plan, |op| matches!(op, MountOp::Tmpfs { target, .. } if target == Path::new("/home/u"))).unwrap();
    let sealed =
        at(&plan, |op| matches!(op, MountOp::MakeReadOnly { target } if target == Path::new("/home/u"))).unwrap();
    let project = at(
        &plan,
        |op| matches!(op, MountOp::Bind { source: Source::Host(_), target, .. } if target == Path::new(PROJECT)),
    )
    .unwrap();
    assert!(staging_bind < tmpfs && tmpfs < sealed && sealed < project, "rebuilt before the launcher's binds");
    let entry_bound = |name: &str| {
        plan.iter().any(|op| matches!(op, MountOp::Bind { source: Source::Path(_), target, .. } if target == &Path::new("/home/u").join(name)))
    };
    assert!(entry_bound("project") && entry_bound(".cargo") && entry_bound(".gitconfig"));
    assert!(!entry_bound(".ssh"), "a hidden entry is not brought back");
    assert!(!entry_bound(".aws"), "a missing one cannot be");
    let staging = match &plan[staging_bind] {
        MountOp::Bind { target, .. } => target.clone(),
        _ => unreachable!(),
    };
    assert!(plan.iter().any(|op| *op == MountOp::RemoveDir { path: staging.clone() }), "no trace in /dev/shm");
    // inside a writable path (the launcher's), nothing is rebuilt
    assert!(!plan.iter().any(|op| matches!(op, MountOp::Tmpfs { target, .. } if target == Path::new(PROJECT))));

    // a private home already shows nothing that appears later
    s.fs.home = HomePolicy::Private { path: "/home/u".into(), read_only: vec![] };
    let plan = mount_plan(&s, &Tree::new()).unwrap();
    assert!(!plan.iter().any(|op| matches!(op, MountOp::Bind { source: Source::Path(_), .. })));
}

#[test]
fn submodules_named_in_gitmodules_are_protected_beyond_the_walk() {
    let mut t = Tree::new();
    let mut deep = PROJECT.to_owned();
    for i in 0..=WALK_MAX_DEPTH + 2 {
        deep.push_str(&format!("/d{i}"));
        t.dir(&deep);
    }
    t.file(&format!("{deep}/.git"), "gitdir: /elsewhere\n");
    let rel = deep.strip_prefix(PROJECT).unwrap().trim_start_matches('/').to_owned();
    let gitmodules: &'static str =
        Box::leak(format!("[submodule \"x\"]\n\tpath = {rel}\n\turl = u\n").into_boxed_str());
    t.file(&format!("{PROJECT}/.gitmodules"), gitmodules);
    let plan = mount_plan(&spec(), &t).unwrap();
    assert!(in_place(&plan, &format!("{deep}/.git")).is_some_and(|(_, ro)| ro), "the submodule's .git file");
    assert!(in_place(&plan, &format!("{PROJECT}/d0")).is_some(), "its ancestors pinned");
}
