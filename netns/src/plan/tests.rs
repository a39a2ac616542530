use super::*;
use crate::spec::{FsPolicy, default_hidden_paths};

fn plan_of(spec: &SandboxSpec, host: &dyn HostView) -> Vec<MountOp> {
    mount_plan(spec, host).expect("a plan")
}

/// A host like this machine: Debian CA path, /etc/resolv.conf, /etc/hosts, ~/.ssh (dir),
/// ~/.netrc (file), the docker socket, the usual /dev nodes.
fn host(path: &Path) -> Option<PathKind> {
    let dirs = ["/home/u", "/home/u/project", "/home/u/.ssh", "/home/u/.authsome", "/data", "/dev/shm", "/tmp/work"];
    let files = [
        "/etc/ssl/certs/ca-certificates.crt",
        "/usr/lib/ssl/cert.pem",
        "/etc/resolv.conf",
        "/etc/hosts",
        "/home/u/.netrc",
        "/run/docker.sock",
        "/run/ca.pem",
        "/dev/null",
        "/dev/zero",
        "/dev/full",
        "/dev/random",
        "/dev/urandom",
        "/dev/tty",
    ];
    let p = path.to_str().unwrap();
    if dirs.contains(&p) {
        Some(PathKind::Dir)
    } else if files.contains(&p) {
        Some(PathKind::File)
    } else {
        None
    }
}

fn spec() -> SandboxSpec {
    let mut s = SandboxSpec::new("sh", "/home/u", "/run/ca.pem");
    s.fs = FsPolicy {
        writable: vec!["/home/u".into(), "/data".into()],
        hide: default_hidden_paths(Path::new("/home/u"), Path::new("/home/u/.authsome"), 1000),
        ..FsPolicy::default()
    };
    s
}

fn position(plan: &[MountOp], pred: impl Fn(&MountOp) -> bool) -> usize {
    plan.iter().position(pred).expect("operation missing from the plan")
}

fn last_position(plan: &[MountOp], pred: impl Fn(&MountOp) -> bool) -> usize {
    plan.iter().rposition(pred).expect("operation missing from the plan")
}

fn is_bind_to(op: &MountOp, target: &str) -> bool {
    matches!(op, MountOp::Bind { target: t, .. } if t == Path::new(target))
}

#[test]
fn mounts_go_private_before_anything_else() {
    for open in [false, true] {
        let mut s = spec();
        s.fs.open = open;
        let plan = plan_of(&s, &host);
        assert_eq!(plan[0], MountOp::MakePrivate);
        assert_eq!(plan.iter().filter(|op| **op == MountOp::MakePrivate).count(), 1);
        assert!(matches!(plan.last(), Some(MountOp::Chdir { path }) if path == Path::new("/home/u")));
    }
}

#[test]
fn host_paths_are_opened_before_the_tree_changes() {
    let plan = plan_of(&spec(), &host);
    let last_open = last_position(&plan, |op| matches!(op, MountOp::OpenHost { .. }));
    let read_only = position(&plan, |op| *op == MountOp::ReadOnlyAll);
    assert!(last_open < read_only);
    assert!(
        plan[..read_only]
            .iter()
            .all(|op| matches!(op, MountOp::MakePrivate | MountOp::Placeholder { .. } | MountOp::OpenHost { .. }))
    );
    let first_open = position(&plan, |op| matches!(op, MountOp::OpenHost { .. }));
    let last_placeholder = last_position(&plan, |op| matches!(op, MountOp::Placeholder { .. }));
    assert!(last_placeholder < first_open, "placeholders exist before anything is opened");
    let opened: Vec<usize> = plan
        .iter()
        .filter_map(|op| match op {
            MountOp::OpenHost { index, .. } => Some(*index),
            _ => None,
        })
        .collect();
    assert_eq!(opened, (0..opened.len()).collect::<Vec<_>>(), "sources are numbered in order");
}

#[test]
fn read_only_root_then_writable_binds_then_ca_then_hides() {
    let plan = plan_of(&spec(), &host);
    let read_only = position(&plan, |op| *op == MountOp::ReadOnlyAll);
    let cwd_bind = position(&plan, |op| is_bind_to(op, "/home/u"));
    let cwd_writable =
        position(&plan, |op| matches!(op, MountOp::MakeWritable { target } if target == Path::new("/home/u")));
    let data_writable =
        position(&plan, |op| matches!(op, MountOp::MakeWritable { target } if target == Path::new("/data")));
    let ca = position(&plan, |op| is_bind_to(op, "/etc/ssl/certs/ca-certificates.crt"));
    let ssh = position(
        &plan,
        |op| matches!(op, MountOp::Tmpfs { target, read_only: true, .. } if target == Path::new("/home/u/.ssh")),
    );
    let netrc = position(&plan, |op| is_bind_to(op, "/home/u/.netrc"));
    assert!(read_only < cwd_bind && cwd_bind < cwd_writable);
    assert!(data_writable < ca && ca < ssh && ca < netrc, "hides sit on top of the writable home");
    assert!(matches!(
        &plan[cwd_bind],
        MountOp::Bind { source: Source::Host(_), recursive: true, read_only: false, .. }
    ));
}

#[test]
fn ca_bundle_goes_over_every_existing_distro_path_read_only() {
    let plan = plan_of(&spec(), &host);
    for path in ["/etc/ssl/certs/ca-certificates.crt", "/usr/lib/ssl/cert.pem"] {
        let op = &plan[position(&plan, |op| is_bind_to(op, path))];
        assert!(matches!(op, MountOp::Bind { source: Source::Host(0), read_only: true, recursive: false, .. }));
    }
    assert!(!plan.iter().any(|op| is_bind_to(op, "/etc/pki/tls/certs/ca-bundle.crt")), "missing paths are skipped");
    let first_open = &plan[position(&plan, |op| matches!(op, MountOp::OpenHost { .. }))];
    assert!(matches!(first_open, MountOp::OpenHost { index: 0, path, .. } if path == Path::new("/run/ca.pem")));
}

#[test]
fn the_hashed_directory_goes_over_etc_ssl_certs_before_the_bundle_files() {
    let with_dir = |path: &Path| if path == Path::new("/etc/ssl/certs") { Some(PathKind::Dir) } else { host(path) };
    let mut s = spec();
    s.ca_dir = Some("/run/certs".into());
    s.ca_store = Some("/run/store.p12".into());
    for open in [false, true] {
        s.fs.open = open;
        let plan = plan_of(&s, &with_dir);
        let dir = position(
            &plan,
            |op| matches!(op, MountOp::OpenHost { path, kind: PathKind::Dir, .. } if path == Path::new("/run/certs")),
        );
        let MountOp::OpenHost { index, .. } = plan[dir] else { unreachable!() };
        let bind = position(&plan, |op| is_bind_to(op, "/etc/ssl/certs"));
        assert!(matches!(&plan[bind], MountOp::Bind { source: Source::Host(i), read_only: true, .. } if *i == index));
        assert!(bind < position(&plan, |op| is_bind_to(op, "/etc/ssl/certs/ca-certificates.crt")), "open={open}");
        let store = position(&plan, |op| is_bind_to(op, "/etc/ssl/certs/java/cacerts"));
        assert!(bind < store && matches!(&plan[store], MountOp::Bind { read_only: true, .. }), "open={open}");
    }
    // no directory on the host to cover (or none asked for): no bind
    assert!(!plan_of(&s, &host).iter().any(|op| is_bind_to(op, "/etc/ssl/certs")));
    s.ca_dir = None;
    assert!(!plan_of(&s, &with_dir).iter().any(|op| is_bind_to(op, "/etc/ssl/certs")));
}

#[test]
fn ca_paths_that_are_one_file_are_bound_once() {
    struct Linked;
    impl HostView for Linked {
        fn kind(&self, path: &Path) -> Option<PathKind> {
            host(path)
        }
        fn canonical(&self, path: &Path) -> PathBuf {
            if path == Path::new("/usr/lib/ssl/cert.pem") {
                PathBuf::from("/etc/ssl/certs/ca-certificates.crt")
            } else {
                path.to_path_buf()
            }
        }
    }
    let plan = plan_of(&spec(), &Linked);
    assert!(plan.iter().any(|op| is_bind_to(op, "/etc/ssl/certs/ca-certificates.crt")));
    assert!(!plan.iter().any(|op| is_bind_to(op, "/usr/lib/ssl/cert.pem")));
}

#[test]
fn a_hidden_file_reached_by_two_names_is_hidden_once() {
    struct VarRun;
    impl HostView for VarRun {
        fn kind(&self, path: &Path) -> Option<PathKind> {
            if path == Path::new("/var/run/docker.sock") { Some(PathKind::File) } else { host(path) }
        }
        fn canonical(&self, path: &Path) -> PathBuf {
            match path.strip_prefix("/var/run") {
                Ok(rest) => Path::new("/run").join(rest),
                Err(_) => path.to_path_buf(),
            }
        }
    }
    let plan = plan_of(&spec(), &VarRun);
    let binds = plan.iter().filter(|op| is_bind_to(op, "/run/docker.sock") || is_bind_to(op, "/var/run/docker.sock"));
    assert_eq!(binds.count(), 1);
}

#[test]
fn resolv_conf_linked_into_a_hidden_run_is_recreated_there() {
    struct Resolved;
    impl HostView for Resolved {
        fn kind(&self, path: &Path) -> Option<PathKind> {
            match path.to_str().unwrap() {
                "/run" | "/var/run" => Some(PathKind::Dir),
                "/run/systemd/resolve/stub-resolv.conf" => Some(PathKind::File),
                p => host(Path::new(p)),
            }
        }
        fn canonical(&self, path: &Path) -> PathBuf {
            match path.to_str().unwrap() {
                "/etc/resolv.conf" => PathBuf::from("/run/systemd/resolve/stub-resolv.conf"),
                "/var/run" => PathBuf::from("/run"),
                p => PathBuf::from(p),
            }
        }
    }
    let mut s = spec();
    s.fs.hide = default_hidden_paths(Path::new("/root"), Path::new("/root/.authsome"), 0);
    let plan = plan_of(&s, &Resolved);
    let run_tmpfs = position(
        &plan,
        |op| matches!(op, MountOp::Tmpfs { target, read_only: false, .. } if target == Path::new("/run")),
    );
    let rebind = position(&plan, |op| is_bind_to(op, "/run/systemd/resolve/stub-resolv.conf"));
    let sealed = position(&plan, |op| matches!(op, MountOp::MakeReadOnly { target } if target == Path::new("/run")));
    assert!(run_tmpfs < rebind && rebind < sealed);
    assert!(matches!(&plan[rebind], MountOp::Bind { source: Source::Staged(Staged::ResolvConf), read_only: true, .. }));
    let run_mounts =
        plan.iter().filter(|op| matches!(op, MountOp::Tmpfs { target, .. } if target == Path::new("/run"))).count();
    assert_eq!(run_mounts, 1, "/var/run is the same directory");
    let under_run = plan.iter().filter(|op| matches!(op, MountOp::Tmpfs { target, .. } | MountOp::Bind { target, .. } if target.starts_with("/run"))).count();
    assert_eq!(under_run, 2, "/run itself and the resolv.conf rebind; nothing hidden inside /run again");
}

#[test]
fn resolv_conf_and_hosts_are_staged_bound_and_unlinked() {
    let mut s = spec();
    s.hosts_file = Some("127.0.0.1 localhost\n".into());
    let plan = plan_of(&s, &host);
    let write = position(&plan, |op| matches!(op, MountOp::WriteStaged { which: Staged::ResolvConf, .. }));
    let bind = position(&plan, |op| is_bind_to(op, "/etc/resolv.conf"));
    let unlink =
        position(&plan, |op| matches!(op, MountOp::Unlink { path } if path.ends_with(".authsome-resolv.conf")));
    assert!(write < bind && bind < unlink);
    assert!(plan.iter().any(|op| is_bind_to(op, "/etc/hosts")));
    let shm = position(&plan, |op| matches!(op, MountOp::Tmpfs { target, .. } if target == Path::new("/dev/shm")));
    assert!(shm < write, "staging lives in the sandbox's own /dev/shm");
    assert_eq!(staging_dir(&plan), Some(Path::new("/dev/shm")));
    // without a hosts file, /etc/hosts is left alone
    assert!(!plan_of(&spec(), &host).iter().any(|op| is_bind_to(op, "/etc/hosts")));
}

#[test]
fn hidden_paths_get_empty_mounts_and_missing_ones_are_skipped() {
    let plan = plan_of(&spec(), &host);
    assert!(plan.iter().any(
        |op| matches!(op, MountOp::Tmpfs { target, read_only: true, .. } if target == Path::new("/home/u/.authsome"))
    ));
    assert!(plan.iter().any(|op| matches!(op, MountOp::Bind { source: Source::Staged(Staged::Empty), target, read_only: true, .. } if target == Path::new("/run/docker.sock"))));
    assert!(!plan.iter().any(|op| matches!(op, MountOp::Tmpfs { target, .. } | MountOp::Bind { target, .. } if target.starts_with("/home/u/.aws"))));
}

/// With the cwd exactly /tmp the host's /tmp is bound (a private tmpfs there would shadow
/// the bind), and paths hidden inside it are still hidden.
#[test]
fn a_tmp_cwd_binds_the_hosts_tmp_and_still_hides_inside_it() {
    let mut s = spec();
    s.cwd = PathBuf::from("/tmp");
    s.fs.writable.push(PathBuf::from("/tmp"));
    s.fs.hide.push(PathBuf::from("/tmp/vault"));
    struct Tmp;
    impl HostView for Tmp {
        fn kind(&self, path: &Path) -> Option<PathKind> {
            if path == Path::new("/tmp") || path == Path::new("/tmp/vault") { Some(PathKind::Dir) } else { host(path) }
        }
        fn canonical(&self, path: &Path) -> PathBuf {
            path.to_path_buf()
        }
    }
    let plan = plan_of(&s, &Tmp);
    assert!(!plan.iter().any(|op| matches!(op, MountOp::Tmpfs { target, .. } if target == Path::new("/tmp"))));
    let bind = position(&plan, |op| is_bind_to(op, "/tmp"));
    let hide = position(
        &plan,
        |op| matches!(op, MountOp::Tmpfs { target, read_only: true, .. } if target == Path::new("/tmp/vault")),
    );
    assert!(bind < hide);
}

#[test]
fn writable_paths_under_the_private_tmp_are_recreated_there() {
    let mut s = spec();
    s.cwd = "/tmp/work".into();
    s.fs.writable.push("/tmp/work".into());
    s.fs.hide.push("/tmp/work/.env-dir".into());
    let plan = plan_of(&s, &|p: &Path| {
        if p == Path::new("/tmp/work/.env-dir") { Some(PathKind::Dir) } else { host(p) }
    });
    let tmp = position(&plan, |op| matches!(op, MountOp::Tmpfs { target, .. } if target == Path::new("/tmp")));
    let mkdir = position(&plan, |op| matches!(op, MountOp::MkdirAll { path } if path == Path::new("/tmp/work")));
    let bind = position(&plan, |op| is_bind_to(op, "/tmp/work"));
    let hide =
        position(&plan, |op| matches!(op, MountOp::Tmpfs { target, .. } if target == Path::new("/tmp/work/.env-dir")));
    assert!(tmp < mkdir && mkdir < bind && bind < hide);
}

#[test]
fn the_cwd_is_writable_only_when_listed() {
    for cwd in ["/", "/home/u", "/tmp"] {
        let mut s = spec();
        s.cwd = cwd.into();
        s.fs.writable = vec!["/data".into()];
        let plan = plan_of(&s, &host);
        assert!(!plan.iter().any(|op| matches!(op, MountOp::MakeWritable { target } if target == Path::new(cwd))));
        assert!(!plan.iter().any(|op| is_bind_to(op, cwd)), "{cwd} is not bound at all");
        assert!(plan.iter().any(|op| matches!(op, MountOp::MakeWritable { target } if target == Path::new("/data"))));
        assert!(matches!(plan.last(), Some(MountOp::Chdir { path }) if path == Path::new(cwd)));
    }
    // /tmp as a cwd that is not writable: the private /tmp, not the host's
    let mut s = spec();
    s.cwd = "/tmp".into();
    let plan = plan_of(&s, &|p: &Path| if p == Path::new("/tmp") { Some(PathKind::Dir) } else { host(p) });
    assert!(plan.iter().any(|op| matches!(op, MountOp::Tmpfs { target, .. } if target == Path::new("/tmp"))));
}

#[test]
fn minimal_dev_is_built_then_made_read_only() {
    let plan = plan_of(&spec(), &host);
    let dev = position(&plan, |op| matches!(op, MountOp::Tmpfs { target, .. } if target == Path::new("/dev")));
    let null = position(&plan, |op| is_bind_to(op, "/dev/null"));
    let pts = position(&plan, |op| matches!(op, MountOp::Devpts { .. }));
    let ro = position(&plan, |op| matches!(op, MountOp::MakeReadOnly { target } if target == Path::new("/dev")));
    let shm = position(
        &plan,
        |op| matches!(op, MountOp::Tmpfs { target, read_only: false, .. } if target == Path::new("/dev/shm")),
    );
    assert!(dev < null && null < pts && pts < ro && ro < shm);
}

#[test]
fn open_policy_keeps_the_host_tree_but_still_binds_and_hides() {
    let mut s = spec();
    s.fs.open = true;
    let plan = plan_of(&s, &host);
    assert!(!plan.contains(&MountOp::ReadOnlyAll));
    assert!(!plan.iter().any(|op| matches!(op, MountOp::MakeWritable { .. })));
    assert!(plan.iter().any(|op| is_bind_to(op, "/etc/ssl/certs/ca-certificates.crt")));
    assert!(
        plan.iter().any(
            |op| matches!(op, MountOp::Tmpfs { target, read_only: true, .. } if target == Path::new("/home/u/.ssh"))
        )
    );
    let staging = position(
        &plan,
        |op| matches!(op, MountOp::Tmpfs { target, read_only: false, .. } if target == Path::new("/dev/shm")),
    );
    let unmount = position(&plan, |op| matches!(op, MountOp::Unmount { target } if target == Path::new("/dev/shm")));
    let last_bind = last_position(&plan, |op| matches!(op, MountOp::Bind { .. }));
    assert!(staging < last_bind && last_bind < unmount);
}

#[test]
fn command_drops_capabilities_last_bounding_set_first() {
    let at = |s: Step| COMMAND_STEPS.iter().position(|x| *x == s).unwrap();
    assert!(at(Step::JoinKeyring) < at(Step::DropBounding));
    assert!(at(Step::NewSession) < at(Step::DropBounding));
    assert!(at(Step::DropBounding) < at(Step::ClearAmbient));
    assert!(at(Step::ClearAmbient) < at(Step::ClearInheritable));
    assert!(at(Step::ClearInheritable) < at(Step::ClearPermitted));
    assert!(at(Step::ClearPermitted) < at(Step::NoNewPrivs));
    assert!(at(Step::NoNewPrivs) < at(Step::Seccomp), "seccomp without CAP_SYS_ADMIN needs no_new_privs");
    assert!(at(Step::Seccomp) < at(Step::WaitRelease), "everything is done before waiting for release");
    assert_eq!(COMMAND_STEPS.last(), Some(&Step::Exec));
}

/// The test host, run from a terminal: `/dev/pts/N` on its stdin.
struct OnTerminal(u32);

impl HostView for OnTerminal {
    fn kind(&self, path: &Path) -> Option<PathKind> {
        if path == Path::new(&format!("/dev/pts/{}", self.0)) { Some(PathKind::File) } else { host(path) }
    }
    fn terminal(&self) -> Option<u32> {
        Some(self.0)
    }
}

#[test]
fn the_users_terminal_alone_is_bound_into_the_new_devpts() {
    let plan = plan_of(&spec(), &OnTerminal(5));
    let opened = position(&plan, |op| matches!(op, MountOp::OpenHost { path, .. } if path == Path::new("/dev/pts/5")));
    let read_only_all = position(&plan, |op| matches!(op, MountOp::ReadOnlyAll));
    let pts = position(&plan, |op| matches!(op, MountOp::Devpts { .. }));
    let reserve = position(&plan, |op| matches!(op, MountOp::ReservePty { index: 5, .. }));
    let bind = position(&plan, |op| is_bind_to(op, "/dev/pts/5"));
    let ro = position(&plan, |op| matches!(op, MountOp::MakeReadOnly { target } if target == Path::new("/dev")));
    assert!(opened < read_only_all, "the host's pty is opened before anything is mounted");
    assert!(pts < reserve && reserve < bind && bind < ro);
    // no terminal, or one numbered too high to reserve: the new devpts alone
    for plan in [plan_of(&spec(), &host), plan_of(&spec(), &OnTerminal(100_000))] {
        assert!(!plan.iter().any(|op| matches!(op, MountOp::ReservePty { .. })));
        assert!(!plan.iter().any(|op| matches!(op, MountOp::OpenHost { path, .. } if path.starts_with("/dev/pts"))));
    }
}
