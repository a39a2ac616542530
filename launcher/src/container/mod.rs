//! `authsome run --sandbox=container --image IMG -- CMD`: the sandbox boundary built from
//! containers, for hosts where the namespace backend cannot run (docs/container.md).
//!
//! A sidecar container (the running binary in a minimal image, `--network none`, `NET_ADMIN`)
//! owns the network namespace and captures every connection; the workload container joins its
//! network and pid namespaces with no capability at all. Captured connections travel to this
//! process over a Unix socket bind-mounted into the sidecar, each opened with a run-scoped
//! token, and end in the same proxy as the namespace backend's: no credential ever enters a
//! container. Every object carries the run id as a label and is removed when the run ends; if
//! this process dies, the sidecar's lifeline closes, it exits, and the workload (in its pid
//! namespace) dies with it.

mod channel;
pub(crate) mod engine;
mod host;
pub(crate) mod image;
mod janitor;
mod workload;

pub mod sidecar;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use authsome_proxy::CertificateAuthority;

use self::engine::{ContainerEngine, PID_LABEL, RUN_LABEL};
use crate::context::Context;
use crate::error::{CliError, CliResult, Kind};
use crate::run::{Plan, RunAudit, RunSettings, SandboxSettings, signals};

/// How long the sidecar may take from `run -d` to a capture in place.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) fn run(
    ctx: &Context,
    settings: &RunSettings,
    sandboxed: &SandboxSettings,
    image: &str,
    mount_cwd: bool,
    mut plan: Plan,
    started: Instant,
) -> CliResult<i32> {
    let engine_cli = ContainerEngine::detect(&settings.environment)?;
    ctx.out.note(&format!("authsome: sandbox backend: container ({}, sidecar)", engine_cli.name()));
    if let Some(notice) = &sandboxed.cwd_notice {
        ctx.out.note(&format!("authsome: {notice}"));
    }
    // Checked by starting it: asking the engine first would cost a round trip on every run.
    let sidecar_image = image::current_tag()?;
    ctx.home.ensure()?;
    // A CA for this run only, as in the namespace backend: its key stays in this process.
    let ca = CertificateAuthority::ephemeral()
        .map_err(|e| CliError::new(Kind::RunFailed, format!("cannot create the run's CA: {e}")))?;
    let run_token = crate::run::random_token()?;
    // The channel has its own token: the proxy's is in the workload's HTTPS_PROXY.
    let channel_token = crate::run::random_token()?;
    let dir = crate::run::RunDir::create()?;
    let prepared = workload::prepare(settings, sandboxed, mount_cwd, &plan, &dir, ca.cert_pem(), &run_token)?;
    write_private(&dir.path().join(channel::TOKEN_NAME), &channel_token)?;
    let engine = crate::run::engine(ctx, settings, &mut plan, ca, run_token)?;
    let run_id = engine.run_id.clone();

    let runtime = crate::run::proxy_runtime()?;
    let code = runtime.block_on(async {
        let failed = |what: &str, e: std::io::Error| CliError::new(Kind::RunFailed, format!("{what}: {e}"));
        let explicit = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| failed("cannot listen on 127.0.0.1", e))?;
        let explicit_addr = explicit.local_addr().map_err(|e| failed("cannot listen on 127.0.0.1", e))?;
        let proxy = engine.proxy.clone();
        tokio::spawn(async move { proxy.serve(explicit, std::future::pending::<()>()).await });
        let socket_path = dir.path().join(channel::SOCKET_NAME);
        let listener = tokio::net::UnixListener::bind(&socket_path)
            .map_err(|e| failed(&format!("cannot listen on {}", socket_path.display()), e))?;
        let host = Arc::new(host::Host {
            token: channel_token,
            proxy: engine.proxy.clone(),
            resolver: Arc::new(engine.resolver()),
            events: engine.events.clone(),
            explicit: explicit_addr,
        });
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let lifeline: host::Lifeline = Arc::new(Mutex::new(None));
        let server = tokio::spawn(host::serve(listener, host, ready_tx, lifeline.clone()));

        let names = Names::new(&run_id);
        // Started before any container exists: from here on, whatever ends this process, the
        // run's containers are removed.
        let janitor = janitor::start(&engine_cli, &run_id, dir.path())
            .map_err(|e| CliError::new(Kind::RunFailed, format!("cannot start the container janitor: {e}")))?;
        let sidecar = start_sidecar(&engine_cli, &names, &sidecar_image, settings, dir.path(), ready_rx).await;
        if let Err(e) = sidecar {
            server.abort();
            remove(&engine_cli, &run_id).await;
            return Err(e);
        }
        // The sidecar has read its token: nothing else may.
        let _ = std::fs::remove_file(dir.path().join(channel::TOKEN_NAME));

        let mut command = tokio::process::Command::new(&engine_cli.program);
        command.args(workload::run_args(&names, &prepared, settings, image)).kill_on_drop(true);
        // A `kill -9` of this process takes the engine's client with it; the container itself
        // dies with the sidecar's lifeline.
        if let Err(e) = authsome_netns::die_with_parent(command.as_std_mut()) {
            remove(&engine_cli, &run_id).await;
            return Err(CliError::new(Kind::RunFailed, format!("cannot tie the workload to this process: {e}")));
        }
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) => {
                remove(&engine_cli, &run_id).await;
                return Err(CliError::new(Kind::RunFailed, format!("cannot start {}: {e}", engine_cli.name())));
            }
        };
        let audit = RunAudit::start(ctx, settings, &plan, &run_id, "container", started);
        let code = match signals::wait_forwarding(&mut child).await {
            Ok(signals::Exit::Code(code)) => code,
            Ok(signals::Exit::Signal(sig)) => 128 + sig,
            Err(e) => {
                ctx.out.error(&CliError::new(Kind::RunFailed, format!("lost the workload container: {e}")));
                125
            }
        };
        // Closing the lifeline stops the sidecar (the workload's own `--rm` has removed it by
        // now). Closing the janitor's pipe has it remove what is left, off the exit path: the
        // command's status is not held back by the engine's clean-up.
        drop(lifeline.lock().ok().and_then(|mut slot| slot.take()));
        server.abort();
        drop(janitor);
        audit.end(ctx, code, &engine);
        Ok(code)
    });
    runtime.shutdown_background();
    drop(dir);
    code
}

/// The run's container names.
pub(crate) struct Names {
    pub(crate) run_id: String,
    pub(crate) workload: String,
    pub(crate) sidecar: String,
}

impl Names {
    fn new(run_id: &str) -> Self {
        Self {
            run_id: run_id.to_string(),
            workload: format!("authsome-{run_id}"),
            sidecar: format!("authsome-{run_id}-sidecar"),
        }
    }

    /// `--label` arguments every object of the run carries.
    pub(crate) fn labels(&self) -> Vec<String> {
        vec![
            "--label".into(),
            format!("{RUN_LABEL}={}", self.run_id),
            "--label".into(),
            format!("{PID_LABEL}={}", std::process::id()),
        ]
    }
}

async fn start_sidecar(
    engine_cli: &ContainerEngine,
    names: &Names,
    sidecar_image: &str,
    settings: &RunSettings,
    dir: &std::path::Path,
    ready: tokio::sync::oneshot::Receiver<Result<(), String>>,
) -> CliResult<()> {
    let ports: Vec<String> = crate::run::capture_ports(settings).iter().map(u16::to_string).collect();
    let ports = if ports.is_empty() { "-".to_string() } else { ports.join(",") };
    let mut args: Vec<String> = ["run", "-d", "--rm", "--name", &names.sidecar].iter().map(|s| s.to_string()).collect();
    args.extend(names.labels());
    args.extend(
        [
            "--network",
            "none",
            "--cap-drop",
            "ALL",
            "--cap-add",
            "NET_ADMIN",
            "--cap-add",
            "NET_BIND_SERVICE",
            "--security-opt",
            "no-new-privileges",
            "--read-only",
            "--volume",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    args.push(format!("{}:{}", dir.display(), channel::SIDECAR_DIR));
    args.push(sidecar_image.to_string());
    args.push(ports);
    let engine = engine_cli.clone();
    let image = sidecar_image.to_string();
    let started = tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        engine.output(&refs).or_else(|e| {
            // First run of this binary: build its sidecar image, then start again.
            if engine.image_exists(&image) {
                return Err(e);
            }
            image::build_if_missing(&engine)?;
            engine.output(&refs)
        })
    })
    .await
    .map_err(|e| CliError::new(Kind::RunFailed, format!("cannot start the sidecar: {e}")))?;
    started.map_err(|e| {
        let mut e = e.hint("the command was not run; `authsome image build` rebuilds the sidecar image");
        e.message = format!("cannot start the sidecar container: {}", e.message);
        e
    })?;
    match tokio::time::timeout(READY_TIMEOUT, ready).await {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(why))) => Err(CliError::new(Kind::RunFailed, format!("the sidecar cannot capture: {why}"))
            .hint("the command was not run: the container engine must grant the sidecar NET_ADMIN")),
        Ok(Err(_)) | Err(_) => Err(CliError::new(Kind::RunFailed, "the sidecar never reported ready").hint(
            "the command was not run; check that the engine can bind-mount this machine's paths (when authsome \
             itself runs in a container, see docs/container.md)",
        )),
    }
}

/// Run ids whose containers remain although their authsome process is gone (a run killed
/// before its janitor could clean up, or the janitor killed too). Live runs are left alone.
pub(crate) fn leftover_runs(engine_cli: &ContainerEngine) -> CliResult<Vec<String>> {
    let mut runs: Vec<String> = Vec::new();
    for (_, run, pid) in engine_cli.labelled_containers()? {
        let alive = pid.is_some_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists());
        if !alive && !run.is_empty() && !runs.contains(&run) {
            runs.push(run);
        }
    }
    Ok(runs)
}

async fn remove(engine_cli: &ContainerEngine, run_id: &str) {
    let engine = engine_cli.clone();
    let run_id = run_id.to_string();
    let _ = tokio::task::spawn_blocking(move || engine.remove_run(&run_id)).await;
}

fn write_private(path: &std::path::Path, text: &str) -> CliResult<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .map_err(|e| CliError::new(Kind::RunFailed, format!("cannot write {}: {e}", path.display())))
}
