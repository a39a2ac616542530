//! Filesystem policy tests: read-only host, writable paths, hidden paths, trust store, suid.

use super::*;

pub fn host_root_is_read_only_and_cwd_writable(ctx: &Ctx) -> Result<(), String> {
    let cwd = ctx.workdir("readonly");
    let outside = ctx.workdir("readonly-outside");
    fs::write(outside.join("owned-by-me"), "original").unwrap();
    let extra = ctx.workdir("readonly-extra");
    let host_marker = PathBuf::from(format!("/tmp/authsome-netns-host-marker-{}", std::process::id()));
    fs::write(&host_marker, "host").unwrap();
    let script = format!(
        r#"
echo x > {outside}/owned-by-me 2>/dev/null; echo write_outside=$?
touch {outside}/new 2>/dev/null; echo create_outside=$?
touch /etc/authsome-netns-probe 2>/dev/null; echo create_etc=$?
touch /usr/authsome-netns-probe 2>/dev/null; echo create_usr=$?
touch /var/tmp/authsome-netns-probe 2>/dev/null; echo create_var_tmp=$?
echo inside > cwd-file; echo write_cwd=$?
mkdir -p sub/dir && echo deep > sub/dir/f; echo write_cwd_deep=$?
echo extra > {extra}/f; echo write_extra=$?
test -e {marker}; echo host_tmp_visible=$?
echo t > /tmp/inside-only; echo write_tmp=$?
echo s > /dev/shm/inside-only; echo write_shm=$?
echo n > /dev/null; echo write_dev_null=$?
ls /dev | tr '\n' ' ' | sed 's/^/dev=/'; echo
"#,
        outside = outside.display(),
        extra = extra.display(),
        marker = host_marker.display()
    );
    let mut spec = ctx.spec(&cwd, &script);
    spec.fs.writable.push(extra.clone());
    let (status, out) = run(&spec, false)?;
    let _ = fs::remove_file(&host_marker);
    expect_success(status, &out)?;
    let got = lines(&out);
    for key in ["write_outside", "create_outside", "create_etc", "create_usr", "host_tmp_visible"] {
        check(got.get(key).is_some_and(|c| c != "0"), &format!("{key} must fail"), &out)?;
    }
    // /var/tmp is private like /tmp: writable inside, never the host's
    check(!Path::new("/var/tmp/authsome-netns-probe").exists(), "the sandbox's /var/tmp leaked to the host", &out)?;
    for key in
        ["write_cwd", "write_cwd_deep", "write_extra", "write_tmp", "create_var_tmp", "write_shm", "write_dev_null"]
    {
        check(got.get(key).map(String::as_str) == Some("0"), &format!("{key} must succeed"), &out)?;
    }
    check(fs::read_to_string(outside.join("owned-by-me")).unwrap() == "original", "host file changed", &out)?;
    check(fs::read_to_string(cwd.join("cwd-file")).is_ok_and(|s| s == "inside\n"), "cwd write not on host", &out)?;
    check(fs::read_to_string(extra.join("f")).is_ok_and(|s| s == "extra\n"), "--writable write not on host", &out)?;
    check(!Path::new("/tmp/inside-only").exists(), "the sandbox's /tmp leaked to the host", &out)?;
    check(
        got.get("dev").map(String::as_str)
            == Some("fd full null ptmx pts random shm stderr stdin stdout tty urandom zero"),
        "/dev must be the minimal set",
        &out,
    )
}

pub fn secrets_are_hidden_even_inside_writable_home(ctx: &Ctx) -> Result<(), String> {
    // $HOME inside the writable cwd, as when running from the home directory
    let cwd = ctx.workdir("hidden");
    let home = cwd.join("home");
    let authsome_home = home.join(".authsome");
    for dir in [".ssh", ".aws", ".config/gh", ".gnupg", ".docker", ".kube", ".authsome/profiles/default"] {
        fs::create_dir_all(home.join(dir)).unwrap();
    }
    fs::write(home.join(".ssh/id_ed25519"), "PRIVATE KEY").unwrap();
    fs::write(home.join(".aws/credentials"), "aws_secret_access_key=x").unwrap();
    fs::write(home.join(".netrc"), "machine x password y").unwrap();
    fs::write(authsome_home.join("profiles/default/store.db"), "vault").unwrap();
    let custom = cwd.join("project-secrets");
    fs::create_dir_all(&custom).unwrap();
    fs::write(custom.join("token"), "t").unwrap();
    let script = r#"
for p in .ssh .aws .config/gh .gnupg .docker .kube .authsome; do echo "$p=$(ls -A "$HOME/$p" | wc -l)"; done
echo netrc_bytes=$(wc -c < "$HOME/.netrc")
echo custom=$(ls -A project-secrets | wc -l)
echo run_entries=$(ls -A /run 2>/dev/null | wc -l)
echo shadow_bytes=$(cat /etc/shadow 2>/dev/null | wc -c)
touch "$HOME/.ssh/planted" 2>/dev/null; echo plant_ssh=$?
echo x >> "$HOME/.netrc" 2>/dev/null; echo write_netrc=$?
echo ok > "$HOME/.bashrc-test"; echo write_home=$?
"#;
    let mut spec = ctx.spec(&cwd, script);
    spec.fs.hide = default_hidden_paths(&home, &authsome_home, ctx.uid);
    spec.fs.hide.push(custom.clone());
    let (status, out) = run(&spec, false)?;
    expect_success(status, &out)?;
    let got = lines(&out);
    for key in [".ssh", ".aws", ".config/gh", ".gnupg", ".docker", ".kube", ".authsome", "netrc_bytes", "custom"] {
        check(got.get(key).map(String::as_str) == Some("0"), &format!("{key} must look empty"), &out)?;
    }
    for key in ["plant_ssh", "write_netrc"] {
        check(got.get(key).is_some_and(|c| c != "0"), &format!("{key} must fail"), &out)?;
    }
    check(got.get("write_home").map(String::as_str) == Some("0"), "the rest of a writable home stays writable", &out)?;
    // /run (daemon sockets) is hidden for every caller: connect() ignores read-only mounts
    check(got.get("run_entries").map(String::as_str) == Some("0"), "/run is hidden", &out)?;
    if ctx.uid == 0 {
        check(got.get("shadow_bytes").map(String::as_str) == Some("0"), "as root, /etc/shadow is hidden", &out)?;
    }
    check(fs::read_to_string(home.join(".ssh/id_ed25519")).unwrap() == "PRIVATE KEY", "host secret changed", &out)
}

pub fn cwd_under_tmp_stays_writable(ctx: &Ctx) -> Result<(), String> {
    let cwd = PathBuf::from(format!("/tmp/authsome-netns-test-cwd-{}-{}", std::process::id(), ctx.uid));
    let _ = fs::remove_dir_all(&cwd);
    fs::create_dir_all(&cwd).unwrap();
    fs::write(cwd.join("existing"), "here").unwrap();
    let spec = ctx
        .spec(&cwd, "cat existing; echo; echo made > made; echo write=$?; ls /tmp | wc -l | sed 's/^/tmp_entries=/'");
    let result = run(&spec, false);
    let made = fs::read_to_string(cwd.join("made"));
    let _ = fs::remove_dir_all(&cwd);
    let (status, out) = result?;
    expect_success(status, &out)?;
    check(out.starts_with("here"), "the cwd's host content must be visible", &out)?;
    check(made.is_ok_and(|s| s == "made\n"), "a write in a cwd under /tmp must reach the host", &out)?;
    check(lines(&out).get("tmp_entries").map(String::as_str) == Some("1"), "only the cwd's path in /tmp", &out)
}

pub fn set_user_id_files_cannot_be_made(ctx: &Ctx) -> Result<(), String> {
    let cwd = ctx.workdir("suid");
    let script = r#"
cp /bin/true ./prog && chmod u+s ./prog 2>/dev/null; echo chmod_suid=$?
chmod 755 ./prog; echo chmod_plain=$?
python3 -c 'import os; os.open("created", os.O_CREAT | os.O_WRONLY, 0o4755)' 2>/dev/null; echo create_suid=$?
python3 -c 'import os; os.close(os.open("plain", os.O_CREAT | os.O_WRONLY, 0o644))'; echo create_plain=$?
chmod g+s ./prog 2>/dev/null; echo chmod_sgid=$?
python3 -c 'import os; os.open("created-sgid", os.O_CREAT | os.O_WRONLY, 0o2755)' 2>/dev/null; echo create_sgid=$?
chmod 1777 ./prog; echo chmod_sticky=$?
"#;
    let (status, out) = run(&ctx.spec(&cwd, script), false)?;
    expect_success(status, &out)?;
    let got = lines(&out);
    for key in ["chmod_suid", "create_suid", "chmod_sgid", "create_sgid"] {
        check(got.get(key).is_some_and(|c| c != "0"), &format!("{key} must fail"), &out)?;
    }
    for key in ["chmod_plain", "create_plain", "chmod_sticky"] {
        check(got.get(key).map(String::as_str) == Some("0"), &format!("{key} must work"), &out)?;
    }
    let mode = fs::metadata(cwd.join("prog")).map(|m| m.permissions().mode()).unwrap_or(0);
    check(mode & 0o6000 == 0, &format!("the host sees a set-user/group-ID file (mode {mode:o})"), &out)?;
    check(!cwd.join("created").exists(), "the set-user-ID create must not leave a file", &out)?;
    check(!cwd.join("created-sgid").exists(), "the set-group-ID create must not leave a file", &out)
}

pub fn digest(path: &Path) -> Option<Vec<u8>> {
    fs::read(path).ok()
}

pub fn ca_bundle_and_resolv_conf_inside_only(ctx: &Ctx) -> Result<(), String> {
    let cwd = ctx.workdir("trust");
    let host_ca = Path::new("/etc/ssl/certs/ca-certificates.crt");
    let before = (digest(Path::new("/etc/resolv.conf")), digest(host_ca), digest(Path::new("/etc/hosts")));
    let mut spec = ctx.spec(&cwd, "cat /etc/resolv.conf; cat /etc/hosts; cat /etc/ssl/certs/ca-certificates.crt; test -f /usr/lib/ssl/cert.pem && cat /usr/lib/ssl/cert.pem; ls -A /tmp | wc -l");
    spec.resolv_conf = "nameserver 198.18.0.53\n".into();
    spec.hosts_file = Some("127.0.0.1 localhost authsome-test-host\n".into());
    let (status, out) = run(&spec, false)?;
    expect_success(status, &out)?;
    let after = (digest(Path::new("/etc/resolv.conf")), digest(host_ca), digest(Path::new("/etc/hosts")));
    check(before == after, "the host's resolv.conf / CA bundle / hosts changed", &out)?;
    check(out.contains("nameserver 198.18.0.53") && out.contains("authsome-test-host"), "our resolv.conf/hosts", &out)?;
    check(out.contains("authsome test bundle"), "our CA bundle over the distro path", &out)?;
    let inside = authsome_netns::sandbox_ca_bundle_path().ok_or("no distro CA path on this host")?;
    check(inside == Path::new("/etc/ssl/certs/ca-certificates.crt"), "sandbox_ca_bundle_path on Debian", &out)?;
    check(out.trim_end().ends_with('0'), "staging files must not be left in /tmp", &out)?;
    check(!String::from_utf8_lossy(&after.0.unwrap_or_default()).contains("198.18.0.53"), "host resolv.conf", &out)
}

pub fn open_policy_keeps_host_tree(ctx: &Ctx) -> Result<(), String> {
    let cwd = ctx.workdir("open");
    let home = cwd.join("home");
    fs::create_dir_all(home.join(".ssh")).unwrap();
    fs::write(home.join(".ssh/id_rsa"), "k").unwrap();
    let marker = PathBuf::from(format!("/tmp/authsome-netns-open-marker-{}-{}", std::process::id(), ctx.uid));
    fs::write(&marker, "m").unwrap();
    let script = format!(
        "test -e {}; echo host_tmp=$?\necho ssh=$(ls -A $HOME/.ssh | wc -l)\ngrep -c authsome /etc/ssl/certs/ca-certificates.crt | sed 's/^/ca=/'",
        marker.display()
    );
    let mut spec = ctx.spec(&cwd, &script);
    spec.fs = FsPolicy { open: true, hide: vec![home.join(".ssh")], ..FsPolicy::default() };
    let result = run(&spec, false);
    let _ = fs::remove_file(&marker);
    let (status, out) = result?;
    expect_success(status, &out)?;
    let got = lines(&out);
    check(got.get("host_tmp").map(String::as_str) == Some("0"), "open policy shows the host /tmp", &out)?;
    check(got.get("ssh").map(String::as_str) == Some("0"), "hide still applies", &out)?;
    check(got.get("ca").map(String::as_str) == Some("1"), "CA bundle still replaced", &out)
}
