//! `authsome run --sandbox -- CMD`: CMD runs in a Linux network namespace whose only way out is
//! this process's proxy (docs/architecture.md, "The sandbox").
//!
//! The netns crate builds the namespaces in a fresh helper process and hands back capture
//! sockets bound inside: every TCP connection to 443/80 (and `--port`s, `--allow-tcp` and
//! `--allow-host-port` ports) lands in the proxy's transparent path, every DNS query in the fake-IP stub, and cooperating clients use the inner
//! `HTTP(S)_PROXY` listener. The child trusts a CA made for this run only (its key never touches
//! the disk), sees a scrubbed environment and the filesystem policy of docs/architecture.md. If any
//! step fails, the command does not run.

use std::ffi::OsString;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use authsome_netns::{CaptureSocket, CommandStatus, FsPolicy, HomePolicy, NamespaceError, PendingSandbox, SandboxSpec};
use authsome_proxy::dns::FakeDns;
use authsome_proxy::{CertificateAuthority, EventSink};
use tokio::task::JoinSet;

use super::{
    EnvItem, FsMode, Plan, RunAudit, RunSettings, SandboxSettings, bundle, child_env, engine, exec_failure, proxy_url,
    run_failed,
};
use crate::context::Context;
use crate::error::{CliError, CliResult, Kind};

/// The listener inside the sandbox for clients that honour `HTTP(S)_PROXY`.
pub(crate) const INNER_PROXY_PORT: u16 = 3128;

/// Variables the child keeps from our environment; everything else is dropped (`--env NAME`
/// adds more).
const ENV_ALLOWLIST: &[&str] = &[
    "PATH",
    "HOME",
    "TERM",
    "COLORTERM",
    "LANG",
    "LANGUAGE",
    "USER",
    "LOGNAME",
    "SHELL",
    "TZ",
    "NO_COLOR",
    "FORCE_COLOR",
    "CLICOLOR",
    "COLUMNS",
    "LINES",
];

const HOSTS_FILE: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";

pub(crate) fn run_sandboxed(
    ctx: &Context,
    settings: &RunSettings,
    sandboxed: &SandboxSettings,
    mut plan: Plan,
    started: Instant,
    helper: Result<PendingSandbox, NamespaceError>,
) -> CliResult<i32> {
    // The helper process needs a few milliseconds to build the namespaces: hand it its spec
    // first and build the proxy engine meanwhile.
    super::notice::announce_changed_defaults(ctx);
    if let Some(notice) = &sandboxed.cwd_notice {
        ctx.out.note(&format!("authsome: {notice}"));
    }
    let prepared = prepare(ctx, settings, sandboxed, &plan).map_err(run_failed)?;
    let Prepared { ca, run_token, spec, dir } = prepared;
    let starting = std::thread::Builder::new()
        .name("authsome-sandbox-start".into())
        .spawn(move || helper.and_then(|helper| helper.configure(&spec)))
        .map_err(|e| CliError::new(Kind::RunFailed, format!("cannot start the sandbox: {e}")))?;
    let engine = engine(ctx, settings, &mut plan, ca, run_token).map_err(run_failed);
    // Fail closed: no capture, no command (a sandbox started for a failed engine is dropped,
    // which kills its helper).
    let (mut sandbox, sockets) = match starting.join() {
        Ok(Ok(started)) => started,
        Ok(Err(e)) => return exec_error(ctx, e),
        Err(_) => return Err(CliError::new(Kind::RunFailed, "the sandbox start-up thread panicked")),
    };
    let engine = engine?;
    let runtime = super::proxy_runtime()?;
    let code = runtime.block_on(async {
        let resolver = Arc::new(engine.resolver());
        let mut tasks = JoinSet::new();
        for socket in sockets {
            serve_socket(&mut tasks, socket, &engine.proxy, &resolver, &engine.events).map_err(|e| {
                CliError::new(Kind::RunFailed, format!("cannot serve the sandbox's capture sockets: {e}"))
            })?;
        }
        let released = tokio::task::block_in_place(|| sandbox.release());
        if let Err(e) = released {
            tasks.abort_all();
            return exec_error(ctx, e);
        }
        // The bundle is bound inside the sandbox by now: remove the host copy while the command
        // runs rather than after it.
        let cleanup = tokio::task::spawn_blocking(move || drop(dir));
        let audit = RunAudit::start(ctx, settings, &plan, &engine.run_id, "sandbox", started);
        let signaller = sandbox.signaller();
        let waiter = tokio::task::spawn_blocking(move || sandbox.wait());
        let code = match forward_until(waiter, signaller).await {
            Ok(status) => status.code(),
            Err(message) => {
                ctx.out.error(&CliError::new(Kind::RunFailed, message));
                125
            }
        };
        tasks.abort_all();
        audit.end(ctx, code, &engine);
        let _ = cleanup.await;
        Ok(code)
    });
    // The runtime may hold connections to the dead sandbox; do not wait on them (the audit is
    // written, the process is about to exit).
    runtime.shutdown_background();
    code
}

struct Prepared {
    ca: CertificateAuthority,
    run_token: String,
    spec: SandboxSpec,
    dir: bundle::RunDir,
}

fn prepare(ctx: &Context, settings: &RunSettings, sandboxed: &SandboxSettings, plan: &Plan) -> CliResult<Prepared> {
    // The home must exist before the sandbox starts: a hidden path that does not exist yet is
    // skipped, and the audit log written during the run would then show through.
    ctx.home.ensure()?;
    // A CA for this run only: trusted inside this sandbox, its key never written anywhere.
    let ca = CertificateAuthority::ephemeral()
        .map_err(|e| CliError::new(Kind::RunFailed, format!("cannot create the run's CA: {e}")))?;
    let run_token = super::random_token()?;
    let dir = bundle::RunDir::create()?;
    let sources = bundle::root_sources(&settings.environment, settings.upstream.extra_roots_pem.as_deref());
    let bundle_path = dir.write_bundle("bundle.pem", &sources, ca.cert_pem())?;
    let inside_bundle = authsome_netns::sandbox_ca_bundle_path().ok_or_else(|| {
        CliError::new(Kind::RunFailed, "no system CA bundle found to replace inside the sandbox")
            .hint("install your distribution's ca-certificates package")
    })?;
    // The certificate directory (cached: the run's CA only needs a link in it) and the run's
    // Java store, built from the cached roots' bags and the run's CA.
    let certs = match super::cert_dir::host_cert_dir() {
        Some(host) => {
            let (certs, bags) = bundle::cached_sandbox_certs(
                &ctx.home.ca_dir(&ctx.profile),
                &sources,
                ca.cert_der(),
                &inside_bundle,
                &host,
            )?;
            let run_bag = super::java_store::bag("authsome-run", ca.cert_der());
            let store = dir.write_with("truststore.p12", |out| {
                use std::io::Write;
                let mut roots = std::fs::File::open(&bags)?;
                let roots_len = usize::try_from(roots.metadata()?.len()).map_err(std::io::Error::other)?;
                out.write_all(&super::java_store::pkcs12_prefix(roots_len + run_bag.len()))?;
                // copy_file_range: the roots' bags go from file to file inside the kernel
                let copied = std::io::copy(&mut roots, out)?;
                if copied != roots_len as u64 {
                    return Err(std::io::Error::other(format!("{} changed while copied", bags.display())));
                }
                out.write_all(&run_bag)
            })?;
            Some((certs, store))
        }
        None => None,
    };
    let inside_certs = certs.as_ref().map(|_| Path::new(authsome_netns::CA_CERT_DIR));
    let inside_java = inside_certs.map(|dir| dir.join(super::cert_dir::JAVA_STORE));

    let mut kept = keep_env(&settings.environment, &sandboxed.env);
    if sandboxed.fs == FsMode::Restricted {
        // The private home is where tools may write their caches and state.
        kept.retain(|(name, _)| name != "HOME");
        kept.push(("HOME".into(), sandboxed.user_home.clone().into()));
    }
    let child_env = child_env::build(
        kept,
        &child_env::ChildEnvSpec {
            placeholders: &plan.env_placeholders,
            secrets: &plan.secrets,
            proxy_url: &proxy_url(&run_token, INNER_PROXY_PORT),
            bundle: &inside_bundle,
            ca_only: &inside_bundle,
            cert_dir: inside_certs,
            java_store: inside_java.as_deref(),
            provider_hosts: &plan.provider_hosts,
        },
    );

    let mut spec = SandboxSpec::new(settings.program().clone(), sandboxed.cwd.clone(), bundle_path);
    spec.ca_dir = certs.as_ref().map(|(dir, _)| dir.clone());
    spec.ca_store = certs.map(|(_, store)| store);
    spec.args = settings.command[1..].to_vec();
    spec.env = child_env;
    spec.resolv_conf = "nameserver 127.0.0.1\noptions edns0\n".into();
    spec.hosts_file = Some(HOSTS_FILE.into());
    spec.tcp_ports = super::capture_ports(settings);
    spec.dns = true;
    spec.inner_proxy_port = Some(INNER_PROXY_PORT);
    spec.fs = fs_policy(ctx, sandboxed);
    spec.validate().map_err(|e| CliError::new(Kind::Usage, e))?;
    Ok(Prepared { ca, run_token, spec, dir })
}

/// What the sandbox shows of the host's filesystem (docs/architecture.md, "The sandbox").
fn fs_policy(ctx: &Context, sandboxed: &SandboxSettings) -> FsPolicy {
    let uid = nix::unistd::getuid().as_raw();
    let mut hide = authsome_netns::default_hidden_paths(&sandboxed.user_home, ctx.home.root(), uid);
    if let Some(env_home) = &sandboxed.env_home {
        for path in authsome_netns::default_hidden_paths(env_home, ctx.home.root(), uid) {
            if !hide.contains(&path) {
                hide.push(path);
            }
        }
    }
    hide.extend(sandboxed.hide.iter().cloned());
    let home = match sandboxed.fs {
        FsMode::Restricted => {
            HomePolicy::Private { path: sandboxed.user_home.clone(), read_only: sandboxed.home_read_only.clone() }
        }
        FsMode::Home | FsMode::Open => HomePolicy::Host,
    };
    FsPolicy {
        open: sandboxed.fs == FsMode::Open,
        writable: sandboxed.writable.clone(),
        read: sandboxed.read.clone(),
        hide,
        protect: sandboxed.protect.clone(),
        home,
    }
}

/// The allowlist, `LC_*`, and `--env NAME` / `--env NAME=VALUE`.
pub(crate) fn keep_env(parent: &[(OsString, OsString)], extra: &[EnvItem]) -> Vec<(OsString, OsString)> {
    let passed = |n: &str| extra.iter().any(|e| matches!(e, EnvItem::Pass(name) if name == n));
    let mut kept: Vec<(OsString, OsString)> = parent
        .iter()
        .filter(|(name, _)| {
            name.to_str().is_some_and(|n| ENV_ALLOWLIST.contains(&n) || n.starts_with("LC_") || passed(n))
        })
        .cloned()
        .collect();
    for item in extra {
        if let EnvItem::Set(name, value) = item {
            kept.retain(|(n, _)| n != name.as_str());
            kept.push((name.into(), value.into()));
        }
    }
    kept
}

fn serve_socket(
    tasks: &mut JoinSet<()>,
    socket: CaptureSocket,
    proxy: &authsome_proxy::Proxy<super::source::VaultSource, super::events::RunEvents>,
    resolver: &Arc<FakeDns>,
    events: &Arc<super::events::RunEvents>,
) -> std::io::Result<()> {
    match socket {
        CaptureSocket::Tcp { listener, .. } => {
            listener.set_nonblocking(true)?;
            let listener = tokio::net::TcpListener::from_std(listener)?;
            let proxy = proxy.clone();
            let resolver = resolver.clone();
            tasks.spawn(async move { proxy.serve_capture(listener, Some(resolver)).await });
        }
        CaptureSocket::Udp { socket, .. } => {
            let resolver = resolver.clone();
            let events = events.clone();
            tasks.spawn(async move {
                let audit = move |denied: authsome_proxy::dns::DeniedName| {
                    // The name was refused before any connection: report it as the HTTPS
                    // destination it would have been.
                    events.record(authsome_proxy::ProxyEvent::Denied { denial: denied.denial(443) })
                };
                if let Err(e) = super::dns::serve(socket, resolver, audit).await {
                    tracing::warn!(error = %e, "sandbox DNS stub stopped");
                }
            });
        }
        CaptureSocket::InnerProxy { listener } => {
            listener.set_nonblocking(true)?;
            let listener = tokio::net::TcpListener::from_std(listener)?;
            let proxy = proxy.clone();
            tasks.spawn(async move {
                let _ = proxy.serve(listener, std::future::pending::<()>()).await;
            });
        }
    }
    Ok(())
}

/// Wait for the sandboxed command, forwarding the signals meant for it.
async fn forward_until(
    waiter: tokio::task::JoinHandle<Result<CommandStatus, NamespaceError>>,
    signaller: authsome_netns::Signaller,
) -> Result<CommandStatus, String> {
    let forward = move |sig: i32| {
        let _ = signaller.signal(sig);
    };
    super::signals::forward_while(waiter, forward)
        .await
        .map_err(|e| format!("cannot watch for signals: {e}"))?
        .map_err(|e| format!("lost the sandbox: {e}"))?
        .map_err(|e| format!("the sandbox failed: {e}"))
}

/// A command that could not be executed exits 127/126 as outside the sandbox; any other
/// failure means the sandbox could not be set up (125).
fn exec_error(ctx: &Context, e: NamespaceError) -> CliResult<i32> {
    let (program, source) = match e {
        NamespaceError::CommandNotFound { program } => (program, std::io::Error::from(std::io::ErrorKind::NotFound)),
        NamespaceError::Exec { program, source } => (program, source),
        other => return Err(namespace_error(other)),
    };
    let (code, message) = exec_failure(&program, &source);
    ctx.out.error(&CliError::new(Kind::RunFailed, message));
    Ok(code)
}

/// How a sandbox that could not be built (the command never ran) is reported; `run` falls back
/// to the container backend on it when `sandbox.image` is configured.
pub(crate) const SETUP_FAILED: &str = "cannot set up the sandbox";

fn namespace_error(e: NamespaceError) -> CliError {
    let hint = e.hint();
    // The kernel's answer (`NamespaceError::Setup`'s source) says what the step met.
    let cause = std::error::Error::source(&e).map(|s| format!(": {s}")).unwrap_or_default();
    CliError::new(Kind::RunFailed, format!("{SETUP_FAILED}: {e}{cause}"))
        .hint(format!("{hint} (the command was not run; `authsome doctor --sandbox` checks this machine)"))
}
