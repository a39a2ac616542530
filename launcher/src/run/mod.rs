//! `authsome run -- CMD`: start the credential-injecting proxy, run CMD with placeholders in
//! its environment and the proxy in its `HTTP(S)_PROXY`, and exit with CMD's status.
//!
//! Wires the vault (secrets), the providers (routes, env names, templates) and the proxy crate
//! together. stdin, stdout and stderr belong to the child (MCP servers speak JSON-RPC over
//! them): nothing of ours is printed on stdout. Exit codes: the child's; 128+N when it died of
//! signal N; 125 when `run` itself failed before the child started; 126/127 when the command
//! could not be executed or was not found (as `env` and `docker run` do).

pub(crate) mod ask;
pub(crate) mod bundle;
pub(crate) mod cert_dir;
pub(crate) mod child_env;
#[cfg(target_os = "linux")]
pub(crate) mod dns;
pub(crate) mod events;
mod java_store;
pub(crate) mod learn;
mod node_preload;
#[cfg(target_os = "linux")]
mod notice;
pub(crate) mod placeholders;
pub(crate) mod report;
mod routes;
#[cfg(target_os = "linux")]
mod sandbox;
mod settings;
pub(crate) mod signals;
pub(crate) mod source;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use authsome_proxy::{CertificateAuthority, EgressPolicy, Placeholder, Proxy, ProxyConfig, RouteTable};
use authsome_vault::{AuditEvent, ConnectionMeta, Secrets, Vault};
use secrecy::SecretString;

use crate::context::{Context, Prompter};
use crate::error::{CliError, CliResult, Kind};
use crate::providers::Provider;
pub(crate) use bundle::RunDir;
pub(crate) use events::RunEvents;
#[cfg(target_os = "linux")]
pub(crate) use sandbox::{INNER_PROXY_PORT, keep_env};
pub(crate) use settings::{AskSettings, EnvItem, FsMode, RunSettings, SandboxBackend, SandboxSettings};
pub(crate) use source::VaultSource;
use source::{LoadError, Loader};

/// Everything decided before the proxy starts.
pub(crate) struct Plan {
    /// By owner label: the provider name, or `provider@host` for connections with a base URL
    /// (`routes.rs`).
    providers: HashMap<String, Provider>,
    /// Owner label → provider name.
    owners: HashMap<String, String>,
    /// Owner label → the connection used when a request carries no placeholder.
    chosen: HashMap<String, String>,
    loaded: Vec<(String, String, ConnectionMeta, Secrets)>,
    pub(crate) env_placeholders: BTreeMap<String, String>,
    routes: RouteTable,
    pub(crate) provider_hosts: Vec<String>,
    pub(crate) secrets: Vec<SecretString>,
    vault: Arc<Mutex<Vault>>,
}

pub(crate) fn run(ctx: &Context, settings: &RunSettings) -> CliResult<i32> {
    let started = Instant::now();
    if let Some(sandbox) = &settings.sandbox {
        #[cfg(target_os = "linux")]
        if let SandboxBackend::Container { image, mount_cwd } = &sandbox.backend {
            let plan = plan(ctx, settings).map_err(run_failed)?;
            return crate::container::run(ctx, settings, sandbox, image, *mount_cwd, plan, started).map_err(run_failed);
        }
        #[cfg(target_os = "linux")]
        {
            // The sandbox's helper execs and starts up while the vault is read and the spec built.
            let helper = authsome_netns::Sandbox::spawn(std::path::Path::new("/proc/self/exe"));
            let plan = plan(ctx, settings).map_err(run_failed)?;
            return match sandbox::run_sandboxed(ctx, settings, sandbox, plan, started, helper) {
                Err(e) if e.message.starts_with(sandbox::SETUP_FAILED) => fall_back(ctx, settings, sandbox, e, started),
                other => other,
            };
        }
        #[cfg(not(target_os = "linux"))]
        return Err(CliError::new(Kind::RunFailed, "--sandbox needs Linux network namespaces")
            .hint("run without --sandbox; the container backend is not available yet"));
    }
    let plan = plan(ctx, settings).map_err(run_failed)?;
    let runtime = proxy_runtime()?;
    let code = runtime.block_on(execute(ctx, settings, plan, started));
    // Joining the workers costs a millisecond and nothing is left to flush: the process exits.
    runtime.shutdown_background();
    code
}

/// Namespaces are unavailable here (the command did not run): the container engine with the
/// configured `sandbox.image`, else the error with the way to ask for a container.
#[cfg(target_os = "linux")]
fn fall_back(
    ctx: &Context,
    settings: &RunSettings,
    sandbox: &SandboxSettings,
    error: CliError,
    started: Instant,
) -> CliResult<i32> {
    let Some(image) = &sandbox.fallback_image else {
        let hint = error.hint.clone().unwrap_or_default();
        return Err(error.hint(format!(
            "{hint}; or run it in a container: --sandbox=container --image IMAGE (with \"sandbox\": {{\"image\": \
             IMAGE}} in config.json, --sandbox falls back to it)"
        )));
    };
    ctx.out
        .note(&format!("authsome: {}; falling back to the container backend (sandbox.image {image})", error.message));
    let plan = plan(ctx, settings).map_err(run_failed)?;
    crate::container::run(ctx, settings, sandbox, image, true, plan, started).map_err(run_failed)
}

fn run_failed(mut e: CliError) -> CliError {
    e.kind = Kind::RunFailed;
    e
}

fn plan(ctx: &Context, settings: &RunSettings) -> CliResult<Plan> {
    let catalog = ctx.catalog();
    let vault = ctx.vault()?;
    let now = authsome_vault::time::now_seconds();
    let connections = vault.list_connections()?;

    let mut chosen: HashMap<String, String> = HashMap::new();
    for name in &settings.providers {
        catalog.require(name)?;
        if !connections.iter().any(|c| &c.provider == name) {
            return Err(CliError::new(
                Kind::ConnectionNotFound,
                format!("--provider {name}: {name} has no connection"),
            )
            .hint(format!("log in with `authsome login {name}`, or see `authsome list`")));
        }
    }
    let exposed = |name: &str| settings.providers.is_empty() || settings.providers.iter().any(|p| p == name);
    for (provider, connection) in &settings.connections {
        catalog.require(provider)?;
        vault.require_connection(provider, connection)?;
        if !exposed(provider) {
            return Err(CliError::new(
                Kind::Usage,
                format!("--connection {provider}={connection}: {provider} is not among the --provider choices"),
            )
            .hint(format!("add --provider {provider}")));
        }
        chosen.insert(provider.clone(), connection.clone());
    }

    let mut providers = HashMap::new();
    let mut owners = HashMap::new();
    let mut loaded = Vec::new();
    let mut routes = Vec::new();
    let mut provider_hosts = Vec::new();
    let mut secrets = Vec::new();
    let mut env_items: Vec<(&Provider, String, &str, SecretString)> = Vec::new();
    let mut placeholders = Vec::new();
    let connected: std::collections::BTreeSet<&str> = connections.iter().map(|c| c.provider.as_str()).collect();
    for entry in catalog.entries_named(&connected) {
        let provider = &entry.provider;
        if !exposed(&provider.name) {
            continue;
        }
        // Usable connections, and expired ones that a refresh token can bring back.
        let mut mine: Vec<&ConnectionMeta> = connections
            .iter()
            .filter(|c| c.provider == provider.name && (c.is_usable(now) || c.has_secret("refresh_token")))
            .collect();
        // A two-value credential stored without its second value (imported by `scan`, or by a
        // definition that took one value) cannot be put on the wire: said, and left out.
        if let Some(second) = &provider.second_value {
            mine.retain(|c| {
                let complete = c.has_secret(&second.field);
                if !complete {
                    ctx.out.warn(&format!(
                        "{}/{}: not used in this run: it holds no {}; log in again with `authsome login {} --connection {} --force`",
                        provider.name, c.name, second.label, provider.name, c.name
                    ));
                }
                complete
            });
        }
        if mine.is_empty() {
            continue;
        }
        let pick = chosen
            .get(&provider.name)
            .cloned()
            .or_else(|| mine.iter().find(|c| c.is_default).map(|c| c.name.clone()))
            .unwrap_or_else(|| mine[0].name.clone());
        chosen.remove(&provider.name);
        // The chosen connection first: it gets the plain variable names.
        mine.sort_by_key(|c| (c.name != pick, c.name.clone()));
        // Each group of connections that point to the same place is its own route and owner.
        let (groups, unrouted) = routes::group(provider, &mine);
        for skipped in unrouted {
            ctx.out.warn(&format!(
                "{}/{}: not used in this run: its base URL {}",
                provider.name, skipped.connection, skipped.reason
            ));
        }
        for group in &groups {
            let default = mine.iter().find(|c| c.is_default && group.connections.contains(&c.name));
            let group_pick = if group.connections.contains(&pick) {
                pick.clone()
            } else {
                default.map_or_else(|| group.connections[0].clone(), |c| c.name.clone())
            };
            chosen.insert(group.owner.0.clone(), group_pick);
            owners.insert(group.owner.0.clone(), provider.name.clone());
            routes.push(routes::route(provider, group)?);
            provider_hosts.extend(group.location.hosts.iter().cloned());
            providers.insert(group.owner.0.clone(), provider.clone());
        }
        for meta in mine {
            let Some(group) = groups.iter().find(|g| g.connections.contains(&meta.name)) else { continue };
            let stored = vault.secrets(&ctx.key_source, &provider.name, &meta.name)?;
            for value in [&stored.api_key, &stored.access_token, &stored.refresh_token].into_iter().flatten() {
                secrets.push(value.clone());
            }
            let placeholder = placeholders::generate(provider)?;
            env_items.push((
                provider,
                meta.name.clone(),
                provider.primary_field(),
                SecretString::from(placeholder.clone()),
            ));
            placeholders.push(Placeholder {
                value: placeholder,
                owner: group.owner.clone(),
                connection: meta.name.clone(),
            });
            // The second value of a two-value credential: a placeholder of its own when it is a
            // secret, else the identifier itself (SDKs put it in paths and host names).
            if let Some(second) = &provider.second_value
                && let Some(value) = stored.extra.get(&second.field)
            {
                let shown = if second.secret {
                    secrets.push(value.clone());
                    let placeholder = placeholders::generate(provider)?;
                    placeholders.push(Placeholder {
                        value: placeholder.clone(),
                        owner: group.owner.clone(),
                        connection: meta.name.clone(),
                    });
                    SecretString::from(placeholder)
                } else {
                    value.clone()
                };
                env_items.push((provider, meta.name.clone(), second.field.as_str(), shown));
            }
            loaded.push((group.owner.0.clone(), meta.name.clone(), meta.clone(), stored));
        }
    }
    let env_placeholders = crate::providers::env_names::assign_names(env_items)
        .into_iter()
        .map(|v| {
            use secrecy::ExposeSecret;
            (v.name, v.value.expose_secret().to_string())
        })
        .collect();
    Ok(Plan {
        providers,
        owners,
        chosen,
        loaded,
        env_placeholders,
        routes: RouteTable::new(routes, placeholders),
        provider_hosts,
        secrets,
        vault: Arc::new(Mutex::new(vault)),
    })
}

/// The proxy's runtime: two workers (the machines we run on have few cores to share with the
/// command).
pub(crate) fn proxy_runtime() -> CliResult<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("authsome-proxy")
        .enable_all()
        .build()
        .map_err(|e| CliError::new(Kind::RunFailed, format!("cannot start the proxy runtime: {e}")))
}

pub(crate) fn random_token() -> CliResult<String> {
    let mut bytes = [0u8; 24];
    authsome_vault::crypto::random_bytes(&mut bytes).map_err(|e| CliError::new(Kind::RunFailed, e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The proxy and what it reports to, built the same way for both ways in.
pub(crate) struct Engine {
    pub(crate) proxy: Proxy<VaultSource, RunEvents>,
    pub(crate) events: Arc<RunEvents>,
    pub(crate) routes: Arc<RouteTable>,
    pub(crate) egress: EgressPolicy,
    pub(crate) run_token: String,
    pub(crate) run_id: String,
    pub(crate) ca_pem: String,
    /// `--ask`: the hook the proxy awaits before refusing.
    pub(crate) ask: Option<Arc<ask::Asker>>,
}

impl Engine {
    /// The sandbox's fake-IP resolver. With `--ask` every name resolves, so a refused one is
    /// put to the person when it is dialled (the proxy's check); otherwise a refused name
    /// gets NXDOMAIN at once (and is audited then).
    pub(crate) fn resolver(&self) -> authsome_proxy::dns::FakeDns {
        use authsome_proxy::dns::{DeniedAnswer, FakeDns};
        if self.ask.is_some() {
            return FakeDns::new();
        }
        FakeDns::with_policy(self.egress.clone(), self.routes.clone(), DeniedAnswer::NxDomain)
    }
}

pub(crate) fn engine(
    ctx: &Context,
    settings: &RunSettings,
    plan: &mut Plan,
    ca: CertificateAuthority,
    run_token: String,
) -> CliResult<Engine> {
    let run_id = run_token[..12].to_string();
    let vault = plan.vault.clone();
    // Re-read a credential, refreshing an OAuth token that is due (or after a 401, `force`).
    // Refresh is serialised across processes by the auth module (lock + re-read).
    let loader: Arc<Loader> = Arc::new(move |provider: &Provider, connection: &str, force: bool| {
        let vault = vault.lock().map_err(|_| LoadError::Failed("the vault lock is poisoned".into()))?;
        let meta = vault
            .connection(&provider.name, connection)
            .map_err(|e| LoadError::Failed(e.to_string()))?
            .ok_or(LoadError::NotConnected)?;
        if meta.has_secret("refresh_token") {
            let fresh = crate::auth::refresh::fresh_secrets_blocking(&vault, provider, connection, force, &Prompter)
                .map_err(|e| {
                    if e.kind == Kind::RefreshFailed { LoadError::Expired } else { LoadError::Failed(e.message) }
                })?;
            return Ok((fresh.meta, fresh.secrets));
        }
        if !meta.is_usable(authsome_vault::time::now_seconds()) {
            return Err(LoadError::Expired);
        }
        let secrets =
            vault.secrets(&Prompter, &provider.name, connection).map_err(|e| LoadError::Failed(e.to_string()))?;
        Ok((meta, secrets))
    });
    let source = Arc::new(VaultSource::new(plan.providers.clone(), plan.chosen.clone(), loader));
    for (owner, connection, meta, secrets) in &plan.loaded {
        let provider = plan.owners.get(owner).unwrap_or(owner);
        source.prime(owner, connection, meta, secrets).map_err(|e| {
            CliError::new(Kind::RunFailed, format!("{provider}/{connection}: {e}"))
                .hint(format!("log in again with `authsome login {provider} --connection {connection} --force`"))
        })?;
    }
    let events = Arc::new(RunEvents::new(ctx.audit_log.clone(), &ctx.profile, &run_id, !ctx.out.quiet));
    let routes = Arc::new(std::mem::replace(&mut plan.routes, RouteTable::new(Vec::new(), Vec::new())));
    let egress = settings.egress.clone();
    let ca_pem = ca.cert_pem().to_string();
    let config = ProxyConfig {
        ca: Arc::new(ca),
        routes: routes.clone(),
        upstream: settings.upstream.clone(),
        inspect_all: settings.inspect_all,
        run_token: Some(run_token.clone()),
        egress: egress.clone(),
        allowed_ports: allowed_ports(settings),
    };
    let ask = settings.ask.as_ref().map(|a| {
        Arc::new(ask::Asker::new(
            &run_id,
            &ctx.profile,
            ctx.audit_log.clone(),
            a.policy.clone(),
            ctx.home.root().join("runs"),
            a.timeout,
        ))
    });
    let hook = ask.clone().map(|a| a as Arc<dyn authsome_proxy::DenialHook>);
    let proxy = Proxy::with_hook(config, source, events.clone(), hook)
        .map_err(|e| CliError::new(Kind::RunFailed, format!("cannot set up upstream TLS: {e}")))?;
    Ok(Engine { proxy, events, routes, egress, run_token, run_id, ca_pem, ask })
}

/// The destination ports a sandboxed command may reach through the proxy, by either way in:
/// the captured ones. Plain `run` allows any (its child is not confined anyway).
fn allowed_ports(settings: &RunSettings) -> Vec<u16> {
    if settings.sandbox.is_none() {
        return Vec::new();
    }
    let mut ports = authsome_netns::ALWAYS_CAPTURED_TCP.to_vec();
    ports.extend(settings.ports.iter().filter(|p| !ports.contains(p)).copied().collect::<Vec<_>>());
    ports
}

/// The extra TCP ports a sandbox captures: `--port`s (HTTP/HTTPS) and the raw TCP ports
/// (`--allow-tcp`, `--allow-host-port`); 443 and 80 always are. A raw port carries only the
/// destinations a rule names; the proxy refuses (resets) the rest.
pub(crate) fn capture_ports(settings: &RunSettings) -> Vec<u16> {
    let mut ports = settings.ports.clone();
    ports.extend(settings.egress.raw_tcp_ports().into_iter().filter(|p| !settings.ports.contains(p)));
    ports
}

/// `http://authsome:TOKEN@127.0.0.1:PORT`. User "authsome", token as password: Python
/// requests sends no credentials for a proxy URL with a user but no password.
pub(crate) fn proxy_url(token: &str, port: u16) -> String {
    format!("http://authsome:{token}@127.0.0.1:{port}")
}

/// The `run` audit events around the child's life.
pub(crate) struct RunAudit {
    run_id: String,
    command: String,
    providers: Vec<String>,
    mode: &'static str,
    started: Instant,
    /// `--report`: print the per-host table on stderr at the end.
    report: bool,
    /// `--learn FILE`: write the policy this run needed at the end.
    learn: Option<Arc<learn::LearnTarget>>,
}

impl RunAudit {
    pub(crate) fn start(
        ctx: &Context,
        settings: &RunSettings,
        plan: &Plan,
        run_id: &str,
        mode: &'static str,
        started: Instant,
    ) -> Self {
        let command = std::path::Path::new(settings.program())
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let providers: Vec<String> = plan
            .chosen
            .iter()
            .map(|(owner, c)| format!("{}/{c}", plan.owners.get(owner).unwrap_or(owner)))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        ctx.audit(
            AuditEvent::new("run")
                .field("phase", "start")
                .field("run_id", run_id)
                .field("command", command.clone())
                .field("providers", providers.clone())
                .field("mode", mode),
        );
        Self {
            run_id: run_id.to_string(),
            command,
            providers,
            mode,
            started,
            report: settings.report,
            learn: settings.learn.clone(),
        }
    }

    /// The `run` end record, with each host's counts; and the `--report` table on stderr.
    pub(crate) fn end(self, ctx: &Context, code: i32, engine: &Engine) {
        if let Some(ask) = &engine.ask {
            ask.close();
        }
        let hosts = engine.events.summary(&engine.proxy.traffic());
        let duration_ms = self.started.elapsed().as_millis() as u64;
        if self.report {
            // Asked for by name: shown even with --quiet (stdout stays the command's).
            let line = report::RunLine {
                run_id: &self.run_id,
                command: &self.command,
                exit_code: Some(code.into()),
                duration_ms: Some(duration_ms),
            };
            eprint!("{}", report::render(&line, &hosts));
        }
        if let Some(target) = &self.learn {
            match target.write(&hosts, &engine.events.denied()) {
                Ok(added) => ctx.out.note(&format!(
                    "authsome: wrote the policy this run needed to {} ({} new host{}); review it, then run with --policy {}",
                    target.path.display(),
                    added.len(),
                    if added.len() == 1 { "" } else { "s" },
                    target.path.display()
                )),
                Err(message) => ctx.out.warn(&format!("--learn: {message}")),
            }
        }
        let summary = serde_json::to_value(&hosts).unwrap_or_default();
        ctx.audit(
            AuditEvent::new("run")
                .field("phase", "end")
                .field("run_id", self.run_id)
                .field("command", self.command)
                .field("providers", self.providers)
                .field("mode", self.mode)
                .field("exit_code", code)
                .field("duration_ms", duration_ms)
                .field("hosts", summary),
        );
    }
}

/// Exit code and message when the command could not be executed (as `env` and `docker run`).
pub(crate) fn exec_failure(program: &std::ffi::OsStr, e: &std::io::Error) -> (i32, String) {
    let name = program.to_string_lossy();
    match e.kind() {
        std::io::ErrorKind::NotFound => (127, format!("command not found: {name}")),
        std::io::ErrorKind::PermissionDenied => (126, format!("cannot execute {name}: permission denied")),
        _ => (126, format!("cannot execute {name}: {e}")),
    }
}

async fn execute(ctx: &Context, settings: &RunSettings, mut plan: Plan, started: Instant) -> CliResult<i32> {
    let setup = async {
        ctx.home.ensure()?;
        let ca = CertificateAuthority::load_or_create(&ctx.home.ca_dir(&ctx.profile)).map_err(|e| {
            CliError::new(Kind::RunFailed, format!("cannot load or create the proxy CA: {e}"))
                .hint(format!("check {}", ctx.home.ca_dir(&ctx.profile).display()))
        })?;
        let engine = engine(ctx, settings, &mut plan, ca, random_token()?)?;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| CliError::new(Kind::RunFailed, format!("cannot listen on 127.0.0.1: {e}")))?;
        let port = listener.local_addr().map_err(|e| CliError::new(Kind::RunFailed, e.to_string()))?.port();

        let bundles = bundle::cached_bundles(
            &ctx.home.ca_dir(&ctx.profile),
            &settings.environment,
            settings.upstream.extra_roots_pem.as_deref(),
            &engine.ca_pem,
        )?;
        let mut child_env = child_env::build(
            settings.environment.clone(),
            &child_env::ChildEnvSpec {
                placeholders: &plan.env_placeholders,
                secrets: &plan.secrets,
                proxy_url: &proxy_url(&engine.run_token, port),
                bundle: &bundles.bundle,
                ca_only: &bundles.additive,
                cert_dir: Some(&bundles.cert_dir),
                java_store: Some(&bundles.java_store),
                provider_hosts: &plan.provider_hosts,
            },
        );
        node_preload::add_to(&mut child_env, &node_preload::install(&ctx.home.ca_dir(&ctx.profile))?);
        Ok::<_, CliError>((engine, listener, child_env))
    };
    let (engine, listener, child_env) = setup.await.map_err(run_failed)?;

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let proxy = engine.proxy.clone();
    let server = tokio::spawn(async move {
        let _ = proxy
            .serve(listener, async {
                let _ = stop_rx.await;
            })
            .await;
    });

    let program = settings.program();
    let mut command = tokio::process::Command::new(program);
    command.args(&settings.command[1..]).env_clear().envs(child_env).kill_on_drop(true);
    // Even a `kill -9` of this process takes the child with it: it must not run on without its
    // proxy. `execute` is the future `run` blocks on, so it runs on the main thread, and the
    // spawn below happens there (the death signal follows the spawning thread).
    #[cfg(target_os = "linux")]
    if let Err(e) = authsome_netns::die_with_parent(command.as_std_mut()) {
        let _ = stop_tx.send(());
        return Err(CliError::new(Kind::RunFailed, format!("cannot tie the command to this process: {e}")));
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            let _ = stop_tx.send(());
            let (code, message) = exec_failure(program, &e);
            ctx.out.error(&CliError::new(Kind::RunFailed, message));
            return Ok(code);
        }
    };
    let audit = RunAudit::start(ctx, settings, &plan, &engine.run_id, "proxy", started);
    let code = match signals::wait_forwarding(&mut child).await {
        Ok(signals::Exit::Code(code)) => code,
        Ok(signals::Exit::Signal(sig)) => 128 + sig,
        Err(e) => {
            ctx.out.error(&CliError::new(Kind::RunFailed, format!("lost the child process: {e}")));
            125
        }
    };
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    audit.end(ctx, code, &engine);
    Ok(code)
}
