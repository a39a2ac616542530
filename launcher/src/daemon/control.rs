//! The CLI's side of the daemon: its files under `AUTHSOME_HOME/daemon/`, finding this home's
//! daemon (and only this home's: it must prove it holds `daemon.token` by answering a fresh
//! nonce with the HMAC in `security::health_proof` before the CLI sends it the token),
//! starting one on demand, stopping it, and calling its API with the bearer token.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use authsome_vault::Home;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::auth::pkce::{constant_time_eq, random_token};
use crate::env;
use crate::error::{CliError, Kind};

/// How long `start` waits for a new daemon to answer (as upstream).
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The daemon's files.
#[derive(Debug, Clone)]
pub(crate) struct Paths {
    pub(crate) dir: PathBuf,
    /// `daemon.json`: pid, host, port, home, instance id (which daemon wrote the files; not a
    /// proof of identity, that is the token).
    pub(crate) info: PathBuf,
    /// `daemon.token`: the API's bearer token (0600).
    pub(crate) token: PathBuf,
    pub(crate) pid: PathBuf,
    pub(crate) log: PathBuf,
}

impl Paths {
    pub(crate) fn new(home: &Home) -> Self {
        let dir = home.daemon_dir();
        Self {
            info: dir.join("daemon.json"),
            token: dir.join("daemon.token"),
            pid: dir.join("daemon.pid"),
            log: dir.join("daemon.log"),
            dir,
        }
    }
}

/// What `daemon.json` says.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Info {
    pub(crate) pid: u32,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) home: String,
    pub(crate) instance: String,
    pub(crate) version: String,
}

/// Where the daemon listens when none is running yet: `--host`/`--port`, else
/// `AUTHSOME_DAEMON_PORT`, else the port of a local `AUTHSOME_DAEMON_URL`, else 7998.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Settings {
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl Settings {
    pub(crate) fn from_env(host: Option<&str>, port: Option<u16>) -> Result<Self, CliError> {
        let port = match port {
            Some(port) => port,
            None => match env::var(env::DAEMON_PORT) {
                Some(text) => text.parse().map_err(|_| {
                    CliError::new(Kind::Usage, format!("{}='{text}' is not a port number", env::DAEMON_PORT))
                })?,
                None => env::var(env::DAEMON_URL)
                    .and_then(|u| url::Url::parse(&u).ok())
                    .filter(|u| matches!(u.host_str(), Some("127.0.0.1" | "localhost")))
                    .and_then(|u| u.port())
                    .unwrap_or(super::DEFAULT_PORT),
            },
        };
        Ok(Self { host: host.unwrap_or(super::DEFAULT_HOST).to_string(), port })
    }
}

/// Write a private file atomically (0600).
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

pub(crate) fn read_info(paths: &Paths) -> Option<Info> {
    serde_json::from_slice(&std::fs::read(&paths.info).ok()?).ok()
}

/// Remove the daemon's files if they still describe `instance` (a newer daemon's are kept).
pub(crate) fn remove_files(paths: &Paths, instance: &str) {
    if read_info(paths).is_some_and(|info| info.instance == instance) {
        for path in [&paths.info, &paths.token, &paths.pid] {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A loopback HTTP client (no proxy: `HTTP_PROXY` must not see the token).
fn local_http(timeout: Duration) -> Result<reqwest::Client, CliError> {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| CliError::new(Kind::Generic, "cannot set up the local HTTP client").cause(e))
}

/// This home's running daemon, verified.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    pub(crate) info: Info,
    pub(crate) base: String,
    token: SecretString,
    http: reqwest::Client,
}

/// What answers where this home's daemon would be.
#[derive(Debug)]
pub(crate) enum Probe {
    Ours(Client),
    NotRunning,
    /// Something answers on the port, but not this home's daemon.
    Foreign {
        port: u16,
    },
}

fn connect_host(host: &str) -> &str {
    match host {
        "0.0.0.0" | "" => "127.0.0.1",
        "::" => "[::1]",
        other => other,
    }
}

/// `GET /health`, with `?nonce=` when a proof is wanted. `None`: nothing answers; `Null`: an
/// answer that is not a health document.
async fn health(http: &reqwest::Client, host: &str, port: u16, nonce: Option<&str>) -> Option<Value> {
    let mut url = format!("http://{}:{port}/health", connect_host(host));
    if let Some(nonce) = nonce {
        url.push_str("?nonce=");
        url.push_str(nonce);
    }
    let response = http.get(url).send().await.ok()?;
    if !response.status().is_success() {
        return Some(Value::Null);
    }
    Some(response.json().await.unwrap_or(Value::Null))
}

/// Whether `answer` proves knowledge of `token` for `nonce`, as `home`'s daemon.
fn proves(answer: &Value, token: &str, nonce: &str, home: &Home) -> bool {
    let expected = super::security::health_proof(token, nonce, home.root());
    answer.get("proof").and_then(Value::as_str).is_some_and(|proof| constant_time_eq(proof, &expected))
}

/// Find this home's daemon: `daemon.json` says where, and whatever answers there must answer
/// a fresh nonce with the HMAC under the token in `daemon.token`. Anything else (a replayed
/// `/health`, another home's daemon, another program) never sees the token.
pub(crate) async fn probe(home: &Home, settings: &Settings) -> Probe {
    let paths = Paths::new(home);
    let Ok(http) = local_http(Duration::from_secs(3)) else { return Probe::NotRunning };
    let token = std::fs::read_to_string(&paths.token).map(|t| t.trim().to_string()).ok();
    if let Some(info) = read_info(&paths) {
        let nonce = random_token(24);
        let asked = token.as_ref().map(|_| nonce.as_str());
        if let Some(answer) = health(&http, &info.host, info.port, asked).await {
            if let Some(token) = token.filter(|t| proves(&answer, t, &nonce, home)) {
                let base = format!("http://{}:{}", connect_host(&info.host), info.port);
                let api = local_http(Duration::from_secs(30)).unwrap_or(http);
                return Probe::Ours(Client { info, base, token: SecretString::from(token), http: api });
            }
            if info.port == settings.port {
                return Probe::Foreign { port: info.port };
            }
        }
    }
    match health(&http, &settings.host, settings.port, None).await {
        Some(_) => Probe::Foreign { port: settings.port },
        None => Probe::NotRunning,
    }
}

fn foreign_error(port: u16) -> CliError {
    CliError::new(
        Kind::DaemonUnavailable,
        format!("127.0.0.1:{port} is answered by something that is not this home's authsome daemon"),
    )
    .hint(format!(
        "another AUTHSOME_HOME's daemon (or another program) holds the port; set {}=PORT to run this home's daemon elsewhere",
        env::DAEMON_PORT
    ))
}

/// This home's daemon, started if none runs.
pub(crate) async fn ensure_running(home: &Home, settings: &Settings) -> Result<Client, CliError> {
    match probe(home, settings).await {
        Probe::Ours(client) => Ok(client),
        Probe::Foreign { port, .. } => Err(foreign_error(port)),
        Probe::NotRunning => start(home, settings).await,
    }
}

/// Spawn `authsome daemon serve` detached (its own process group, output to `daemon.log`)
/// and wait until it answers with its identity.
pub(crate) async fn start(home: &Home, settings: &Settings) -> Result<Client, CliError> {
    let paths = Paths::new(home);
    let unavailable = |what: String| CliError::new(Kind::DaemonUnavailable, what);
    home.ensure()?;
    let log = {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&paths.dir)
            .map_err(|e| unavailable(e.to_string()))?;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&paths.log)
            .map_err(|e| unavailable(format!("cannot open {}: {e}", paths.log.display())))?
    };
    let exe = std::env::current_exe().map_err(|e| unavailable(format!("cannot find the authsome binary: {e}")))?;
    let log_err = log.try_clone().map_err(|e| unavailable(e.to_string()))?;
    use std::os::unix::process::CommandExt;
    let mut child = Command::new(exe)
        .args(["daemon", "serve", "--host", &settings.host, "--port", &settings.port.to_string()])
        .env(env::HOME, home.root())
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .process_group(0)
        .spawn()
        .map_err(|e| unavailable(format!("cannot start the daemon: {e}")))?;
    let started = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let tail = tail_lines(&paths.log, 3).join("\n");
            let mut err = unavailable(format!("the daemon exited at start ({status})"));
            if !tail.is_empty() {
                err = err.cause(tail);
            }
            if matches!(probe(home, settings).await, Probe::Foreign { .. }) {
                return Err(foreign_error(settings.port));
            }
            return Err(err.hint(format!(
                "see {}; another program may hold the port (set {})",
                paths.log.display(),
                env::DAEMON_PORT
            )));
        }
        if read_info(&paths).is_some_and(|info| info.pid == child.id())
            && let Probe::Ours(client) = probe(home, settings).await
        {
            return Ok(client);
        }
        if started.elapsed() > START_TIMEOUT {
            return Err(unavailable("the daemon did not become ready within 10 s".into())
                .hint(format!("see {}", paths.log.display())));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The last `n` lines of a text file.
pub(crate) fn tail_lines(path: &Path, n: usize) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].iter().map(|l| l.to_string()).collect()
}

/// Upstream's class names back to kinds (errors the daemon sends).
pub(crate) fn kind_from_class(class: &str) -> Kind {
    [
        Kind::Usage,
        Kind::ProviderNotFound,
        Kind::AuthenticationFailed,
        Kind::ConnectionNotFound,
        Kind::CredentialMissing,
        Kind::RefreshFailed,
        Kind::StoreUnavailable,
        Kind::InputCancelled,
        Kind::DaemonUnavailable,
    ]
    .into_iter()
    .find(|k| k.class_name() == class)
    .unwrap_or(Kind::Generic)
}

/// An error document from the daemon as a `CliError`.
pub(crate) fn error_from_json(doc: &Value) -> CliError {
    let text = |name: &str| doc.get(name).and_then(Value::as_str);
    let mut err = CliError::new(
        kind_from_class(text("error").unwrap_or("")),
        text("message").unwrap_or("the daemon refused the request").to_string(),
    );
    for cause in doc.get("causes").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
        err = err.cause(cause);
    }
    if let Some(hint) = text("hint") {
        err = err.hint(hint);
    }
    err
}

impl Client {
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Value, CliError> {
        let response = request.bearer_auth(self.token.expose_secret()).send().await.map_err(|e| {
            CliError::new(Kind::DaemonUnavailable, "the daemon stopped answering")
                .cause(crate::auth::http::describe(&e))
        })?;
        let status = response.status();
        let doc: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() { Ok(doc) } else { Err(error_from_json(&doc)) }
    }

    pub(crate) async fn get(&self, path: &str) -> Result<Value, CliError> {
        self.send(self.http.get(format!("{}{path}", self.base))).await
    }

    pub(crate) async fn post(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body)).await
    }

    /// Ask the daemon to stop and wait until it no longer answers.
    pub(crate) async fn shutdown(&self) -> Result<(), CliError> {
        self.post("/api/shutdown", &Value::Null).await?;
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(5) {
            if health(&self.http, &self.info.host, self.info.port, None).await.is_none() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(CliError::new(Kind::DaemonUnavailable, "the daemon did not stop within 5 s"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_round_trip() {
        assert_eq!(kind_from_class("AuthenticationFailedError"), Kind::AuthenticationFailed);
        assert_eq!(kind_from_class("whatever"), Kind::Generic);
        let err = error_from_json(&serde_json::json!({
            "error": "ProviderNotFoundError", "message": "unknown provider 'x'", "hint": "see list", "causes": ["a"]
        }));
        assert_eq!(err.kind, Kind::ProviderNotFound);
        assert_eq!(err.causes, vec!["a"]);
        assert_eq!(err.hint.as_deref(), Some("see list"));
    }

    #[test]
    fn private_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon").join("daemon.token");
        write_private(&path, b"t").unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
    }
}
