//! `run`'s flags, its `--policy FILE` and the environment, resolved into one
//! [`RunSettings`](crate::run::RunSettings) before anything starts.
//!
//! A policy file holds the same egress rules as the flags, for rules kept next to a project:
//!
//! ```json
//! {"egress": "allowlist", "allow": ["registry.npmjs.org", "*.githubusercontent.com"],
//!  "deny": ["*.pastebin.com"], "ports": [8443],
//!  "allow_tcp": ["github.com:22", "db.internal:5432"], "allow_host_ports": [3000]}
//! ```
//!
//! Flags win for the mode; lists from the file and the flags add up (deny still wins). The raw
//! TCP lists mean something only inside a sandbox: the flags are refused without `--sandbox`,
//! the file's entries are ignored there (plain `run` confines nothing to open).

use std::path::{Path, PathBuf};

use authsome_proxy::{
    ConnectTo, EgressMode, EgressPolicy, HOST_LOOPBACK_NAME, HostPattern, TcpDestination, UpstreamConfig,
};
use serde::Deserialize;

use super::args::{EgressArg, FsArg, RunArgs, SandboxArg};
use crate::context::Context;
use crate::env;
use crate::error::{CliError, CliResult, Kind};
use crate::run::{EnvItem, FsMode, RunSettings, SandboxBackend, SandboxSettings};

/// `authsome run`: resolve the settings, then run.
pub(crate) fn run(ctx: &Context, args: &RunArgs) -> CliResult<i32> {
    // Anything that stops `run` before the child starts exits 125, bad flag values included:
    // scripts tell "run failed" from the child's own codes that way.
    let mut settings = settings(args).map_err(|mut e| {
        e.kind = Kind::RunFailed;
        e
    })?;
    if let Some(sandbox) = &mut settings.sandbox {
        sandbox.fallback_image = configured_image(ctx);
    }
    crate::run::run(ctx, &settings)
}

/// `{"sandbox": {"image": "node:22"}}` in config.json: the container image `--sandbox` falls
/// back to where namespaces are unavailable.
fn configured_image(ctx: &Context) -> Option<String> {
    let config = authsome_vault::Config::load(&ctx.home.config_path()).ok()?;
    let image = config.extra.get("sandbox")?.get("image")?.as_str()?.trim();
    (!image.is_empty()).then(|| image.to_string())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    #[allow(dead_code)]
    v: Option<u32>,
    egress: Option<EgressArg>,
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
    #[serde(default)]
    ports: Vec<u16>,
    #[serde(default)]
    allow_tcp: Vec<String>,
    #[serde(default)]
    allow_host_ports: Vec<u16>,
}

fn settings(args: &RunArgs) -> CliResult<RunSettings> {
    let file = match &args.policy {
        Some(path) => read_policy(path)?,
        None => PolicyFile::default(),
    };
    // A sandbox reaches only what it needs by default: the hosts of the providers it holds
    // credentials for, plus what --allow names. Plain `run` keeps every host.
    let default = if args.sandbox.is_some() { EgressArg::Providers } else { EgressArg::All };
    let mode = match args.egress.or(file.egress).unwrap_or(default) {
        EgressArg::All => EgressMode::All,
        // Both: hosts a route owns plus the allow patterns (--allow adds to the default).
        EgressArg::Providers => EgressMode::Providers,
        EgressArg::Allowlist => EgressMode::Allowlist,
    };
    let mut allow = patterns(&args.allow, "--allow")?;
    allow.extend(patterns(&file.allow, "policy file allow")?);
    let mut deny = patterns(&args.deny, "--deny")?;
    deny.extend(patterns(&file.deny, "policy file deny")?);
    let mut ports = args.ports.clone();
    ports.extend(&file.ports);
    ports.sort_unstable();
    ports.dedup();

    let (tcp, host_ports) = if args.sandbox.is_some() {
        raw_tcp(args, &file, &ports)?
    } else if let Some(flag) = (!args.allow_tcp.is_empty())
        .then_some("--allow-tcp")
        .or((!args.allow_host_ports.is_empty()).then_some("--allow-host-port"))
    {
        return Err(CliError::new(Kind::Usage, format!("{flag} needs --sandbox")).hint(
            "without --sandbox the command's own connections are not confined, so there is nothing to allow: \
             add --sandbox",
        ));
    } else {
        (Vec::new(), Vec::new())
    };

    let sandbox = if args.sandbox.is_some() { Some(sandbox_settings(args)?) } else { None };
    Ok(RunSettings {
        command: args.command.clone(),
        connections: connection_choices(&args.connections)?,
        providers: args.providers.clone(),
        inspect_all: args.inspect_all,
        egress: EgressPolicy { mode, allow, deny, tcp, host_ports },
        ports,
        upstream: upstream(args.allow_private)?,
        environment: std::env::vars_os().collect(),
        sandbox,
        report: args.report,
        learn: args.learn.as_deref().map(learn_target).transpose()?,
        ask: if args.ask { Some(ask_settings(args)?) } else { None },
    })
}

/// `--allow-tcp` and `--allow-host-port` with the policy file's lists, checked: exact
/// `HOST:PORT`s, never a port the sandbox captures for HTTP(S) (443, 80, `--port`: `--allow`
/// is the rule there), never the loopback by name (`--allow-host-port` is the way there).
fn raw_tcp(args: &RunArgs, file: &PolicyFile, http_ports: &[u16]) -> CliResult<(Vec<TcpDestination>, Vec<u16>)> {
    let mut tcp: Vec<TcpDestination> = Vec::new();
    let entries = args
        .allow_tcp
        .iter()
        .map(|e| (e, "--allow-tcp"))
        .chain(file.allow_tcp.iter().map(|e| (e, "policy file allow_tcp")));
    for (entry, origin) in entries {
        let destination: TcpDestination = entry.parse().map_err(|e: authsome_proxy::TcpDestinationError| {
            CliError::new(Kind::Usage, format!("{origin} {}: {}", e.entry, e.reason))
                .hint("name one exact destination, e.g. --allow-tcp github.com:22 or --allow-tcp db.internal:5432")
        })?;
        let host = destination.host.as_str();
        if host == HOST_LOOPBACK_NAME || host == "localhost" || host.ends_with(".localhost") {
            return Err(CliError::new(Kind::Usage, format!("{origin} {destination}: names this machine's loopback"))
                .hint(format!(
                    "use --allow-host-port {} (the sandbox reaches it as {HOST_LOOPBACK_NAME}:{})",
                    destination.port, destination.port
                )));
        }
        if authsome_netns::ALWAYS_CAPTURED_TCP.contains(&destination.port) || http_ports.contains(&destination.port) {
            return Err(CliError::new(
                Kind::Usage,
                format!("{origin} {destination}: port {} is captured for HTTP(S)", destination.port),
            )
            .hint(format!("use --allow {host}: HTTPS and HTTP to it are proxied and audited on that port")));
        }
        if !tcp.contains(&destination) {
            tcp.push(destination);
        }
    }
    let mut host_ports: Vec<u16> = args.allow_host_ports.iter().chain(&file.allow_host_ports).copied().collect();
    if host_ports.contains(&0) {
        return Err(CliError::new(Kind::Usage, "--allow-host-port 0: not a port")
            .hint("name the port the host's service listens on, e.g. --allow-host-port 3000"));
    }
    // The sandbox's own HTTP(S)_PROXY listener holds this port inside.
    let inner = crate::run::INNER_PROXY_PORT;
    if tcp.iter().any(|d| d.port == inner) || host_ports.contains(&inner) {
        return Err(CliError::new(Kind::Usage, format!("port {inner} is the sandbox's own proxy listener")).hint(
            format!("raw TCP to port {inner} cannot be allowed inside the sandbox; use the service's other port"),
        ));
    }
    host_ports.sort_unstable();
    host_ports.dedup();
    Ok((tcp, host_ports))
}

/// Named host groups for `--allow @NAME`: what a package manager needs to install and publish.
pub(crate) const ALLOW_GROUPS: &[(&str, &[&str])] = &[
    ("npm", &["registry.npmjs.org", "registry.yarnpkg.com"]),
    ("pypi", &["pypi.org", "files.pythonhosted.org"]),
    ("crates", &["crates.io", "index.crates.io", "static.crates.io"]),
    ("github", &["github.com", "api.github.com", "codeload.github.com", "*.githubusercontent.com"]),
];

fn patterns(list: &[String], origin: &str) -> CliResult<Vec<HostPattern>> {
    let mut out = Vec::new();
    for item in list {
        if let Some(group) = item.strip_prefix('@') {
            let Some((_, hosts)) = ALLOW_GROUPS.iter().find(|(name, _)| *name == group) else {
                let names: Vec<String> = ALLOW_GROUPS.iter().map(|(n, _)| format!("@{n}")).collect();
                return Err(CliError::new(Kind::Usage, format!("{origin}: no host group named {item}"))
                    .hint(format!("the groups are {}", names.join(", "))));
            };
            out.extend(hosts.iter().map(|h| h.parse::<HostPattern>().expect("the groups are valid patterns")));
            continue;
        }
        out.push(item.parse::<HostPattern>().map_err(|e| {
            CliError::new(Kind::Usage, format!("{origin}: {e}"))
                .hint("use api.example.com, *.example.com or a group such as @npm")
        })?);
    }
    Ok(out)
}

fn read_policy(path: &Path) -> CliResult<PolicyFile> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::new(Kind::Usage, format!("cannot read the policy file {}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| {
        CliError::new(Kind::Usage, format!("{}: {e}", path.display())).hint(
            r#"a policy file looks like {"egress": "allowlist", "allow": ["registry.npmjs.org"], "deny": [], "ports": [], "allow_tcp": ["github.com:22"], "allow_host_ports": [3000]}"#,
        )
    })
}

/// `--learn FILE`: its directory opened now, and its content when it exists (it must then be
/// a policy file: what the run learns is added to it, never replacing it).
fn learn_target(path: &Path) -> CliResult<std::sync::Arc<crate::run::learn::LearnTarget>> {
    let base = if path.exists() {
        read_policy(path)
            .map_err(|e| e.hint("--learn adds to an existing policy file; name a new file, or fix this one"))?;
        let text = std::fs::read_to_string(path)
            .map_err(|e| CliError::new(Kind::Usage, format!("cannot read {}: {e}", path.display())))?;
        Some(serde_json::from_str(&text).map_err(|e| CliError::new(Kind::Usage, format!("{}: {e}", path.display())))?)
    } else {
        None
    };
    crate::run::learn::LearnTarget::open(path, base).map(std::sync::Arc::new).map_err(|message| {
        CliError::new(Kind::Usage, format!("--learn: {message}")).hint("name a file in an existing directory")
    })
}

/// `--ask`: the wait from `AUTHSOME_ASK_TIMEOUT`, and the policy file "always" adds to.
fn ask_settings(args: &RunArgs) -> CliResult<crate::run::AskSettings> {
    let timeout = match env::var(env::ASK_TIMEOUT) {
        None => crate::run::ask::DEFAULT_TIMEOUT,
        Some(value) => std::time::Duration::from_secs(value.trim().parse().map_err(|_| {
            CliError::new(Kind::Usage, format!("{}: {value:?} is not a number of seconds", env::ASK_TIMEOUT))
        })?),
    };
    let policy = match &args.policy {
        Some(path) => Some(
            std::path::absolute(path)
                .map_err(|e| CliError::new(Kind::Usage, format!("--policy {}: {e}", path.display())))?,
        ),
        None => None,
    };
    Ok(crate::run::AskSettings { timeout, policy })
}

/// Parse `--connection PROVIDER=NAME` choices.
fn connection_choices(items: &[String]) -> CliResult<Vec<(String, String)>> {
    items
        .iter()
        .map(|item| {
            item.split_once('=')
                .map(|(p, c)| (p.trim().to_string(), c.trim().to_string()))
                .filter(|(p, c)| !p.is_empty() && !c.is_empty())
                .ok_or_else(|| {
                    CliError::new(Kind::Usage, format!("--connection {item}: expected PROVIDER=NAME"))
                        .hint("e.g. --connection github=work")
                })
        })
        .collect()
}

fn upstream(allow_private: bool) -> CliResult<UpstreamConfig> {
    let connect_to = match env::var(env::CONNECT_TO) {
        Some(list) => ConnectTo::parse_list(&list)
            .map_err(|e| CliError::new(Kind::RunFailed, format!("{}: {e}", env::CONNECT_TO)))?,
        None => Vec::new(),
    };
    let extra_roots_pem = env::var(env::EXTRA_ROOTS).map(PathBuf::from);
    if let Some(path) = &extra_roots_pem
        && !path.is_file()
    {
        return Err(CliError::new(Kind::RunFailed, format!("{}: {} is not a file", env::EXTRA_ROOTS, path.display())));
    }
    Ok(UpstreamConfig { extra_roots_pem, connect_to, allow_private, ..UpstreamConfig::default() })
}

fn sandbox_settings(args: &RunArgs) -> CliResult<SandboxSettings> {
    let cwd = std::env::current_dir()
        .map_err(|e| CliError::new(Kind::RunFailed, format!("cannot read the current directory: {e}")))?;
    let absolute = |p: &PathBuf| if p.is_absolute() { p.clone() } else { cwd.join(p) };
    let env = args
        .env
        .iter()
        .map(|item| match item.split_once('=') {
            Some(("", _)) => Err(CliError::new(Kind::Usage, format!("--env {item}: expected NAME or NAME=VALUE"))),
            Some((name, value)) => Ok(EnvItem::Set(name.to_string(), value.to_string())),
            None => Ok(EnvItem::Pass(item.clone())),
        })
        .collect::<CliResult<Vec<_>>>()?;
    let fs = match args.fs {
        FsArg::Restricted => FsMode::Restricted,
        FsArg::Home => FsMode::Home,
        FsArg::Open => FsMode::Open,
    };
    let user_home = user_home();
    let env_home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .filter(|h| h.is_absolute() && h != &user_home && h != Path::new("/"));
    let homes: Vec<&Path> = std::iter::once(user_home.as_path()).chain(env_home.as_deref()).collect();

    // A working directory that is the home, holds it, or is /tmp would make all of that
    // writable: shell start-up files, ~/.ssh/authorized_keys, autostart entries, other users'
    // sockets in /tmp. Such a run gets nothing writable on the host.
    let risky = |dir: &Path| unsafe_to_write(dir, &homes);
    let mut writable = Vec::new();
    let cwd_notice = match (fs, risky(&cwd)) {
        (FsMode::Open, _) | (_, None) => {
            writable.push(cwd.clone());
            None
        }
        (_, Some(why)) => Some(format!(
            "the working directory {} is {why}: nothing on the host is writable in this run (the private \
             home and /tmp still are); run from a project directory, or add --writable DIR for one below it",
            cwd.display()
        )),
    };
    for path in args.writable.iter().map(absolute) {
        if fs != FsMode::Open
            && let Some(why) = risky(&path)
        {
            return Err(CliError::new(Kind::Usage, format!("--writable {}: it is {why}", path.display())).hint(
                "name a directory below it (a project), or use --fs open to drop the filesystem policy altogether",
            ));
        }
        writable.push(path);
    }

    let mut protect: Vec<PathBuf> = args.policy.iter().map(absolute).collect();
    if let Ok(exe) = std::env::current_exe() {
        protect.push(exe);
    }
    let mut home_read_only = authsome_netns::default_home_toolchains(&user_home);
    if let Some(dir) = command_dir(&args.command[0], &cwd)
        && dir.starts_with(&user_home)
    {
        home_read_only.push(dir);
    }
    let backend = match (args.sandbox, &args.image) {
        (Some(SandboxArg::Container), Some(image)) => {
            SandboxBackend::Container { image: image.clone(), mount_cwd: !args.no_mount_cwd }
        }
        (Some(SandboxArg::Container), None) => {
            return Err(CliError::new(Kind::Usage, "--sandbox=container needs --image IMAGE")
                .hint("name the image the command runs in, e.g. --image node:22"));
        }
        (_, Some(_)) => {
            return Err(CliError::new(Kind::Usage, "--image is for --sandbox=container")
                .hint("add --sandbox=container, or drop --image"));
        }
        (_, None) => SandboxBackend::Namespace,
    };
    Ok(SandboxSettings {
        backend,
        fallback_image: None,
        fs,
        writable,
        read: args.read.iter().map(absolute).collect(),
        hide: args.hide.iter().map(absolute).collect(),
        protect,
        env,
        cwd_notice,
        user_home,
        env_home,
        home_read_only,
        cwd,
    })
}

/// Why writing `dir` from inside a sandbox would reach what the host runs or trusts: it is a
/// home, an ancestor of one, or `/tmp`.
fn unsafe_to_write(dir: &Path, homes: &[&Path]) -> Option<&'static str> {
    if dir == Path::new("/tmp") || dir == Path::new("/var/tmp") {
        return Some("the shared temporary directory");
    }
    if homes.contains(&dir) {
        return Some("your home directory");
    }
    if homes.iter().any(|h| h.starts_with(dir)) {
        return Some("an ancestor of your home directory");
    }
    None
}

/// The directory holding the command as `PATH` resolves it (so a tool installed under the home,
/// e.g. by a version manager, stays runnable in a private home).
fn command_dir(program: &std::ffi::OsStr, cwd: &Path) -> Option<PathBuf> {
    let program = Path::new(program);
    let found = if program.components().count() > 1 {
        Some(if program.is_absolute() { program.to_path_buf() } else { cwd.join(program) })
    } else {
        std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
    }?;
    let resolved = std::fs::canonicalize(&found).unwrap_or(found);
    resolved.parent().map(Path::to_path_buf)
}

/// The caller's home from the password database; `$HOME` only when the database has no entry
/// for this uid.
fn user_home() -> PathBuf {
    if let Ok(Some(user)) = nix::unistd::User::from_uid(nix::unistd::getuid()) {
        return user.dir;
    }
    std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_groups_expand_and_unknown_groups_are_refused() {
        let got = patterns(&["@npm".into(), "x.example.com".into()], "--allow").unwrap();
        let names: Vec<String> = got.iter().map(ToString::to_string).collect();
        assert_eq!(names, ["registry.npmjs.org", "registry.yarnpkg.com", "x.example.com"]);
        for (name, _) in ALLOW_GROUPS {
            assert!(patterns(&[format!("@{name}")], "--allow").is_ok(), "{name}");
        }
        let err = patterns(&["@nope".into()], "--allow").unwrap_err();
        assert!(err.hint.unwrap().contains("@pypi"));
    }
}

#[cfg(test)]
mod cwd_tests {
    use super::*;

    #[test]
    fn homes_their_ancestors_and_tmp_are_not_writable_roots() {
        let home = Path::new("/home/alice");
        let other = Path::new("/srv/fake-home");
        let homes = [home, other];
        for dir in ["/", "/home", "/home/alice", "/tmp", "/srv", "/srv/fake-home", "/var/tmp"] {
            assert!(unsafe_to_write(Path::new(dir), &homes).is_some(), "{dir}");
        }
        for dir in ["/home/alice/project", "/home/bob", "/tmp/build", "/srv/fake-home/p", "/work"] {
            assert!(unsafe_to_write(Path::new(dir), &homes).is_none(), "{dir}");
        }
    }
}
