//! `run --ask`: a destination the policy refuses (egress or port) waits while the person at
//! the terminal decides: allow once, for this run, always (added to the `--policy` file), or
//! deny (for the rest of the run).
//!
//! The proxy only knows the [`DenialHook`] it awaits; the terminal lives here. Three cases:
//! - no terminal (`/dev/tty` cannot be opened): denied, as without `--ask`;
//! - a terminal in its normal (canonical) mode: the question is written to it and the answer
//!   read from it;
//! - a terminal the command has put in raw mode (a full-screen agent owns it): one line on
//!   stderr asks the user to answer with `authsome approve` from another terminal, through a
//!   Unix socket in `AUTHSOME_HOME/runs/` (which the sandbox hides); denied after the timeout.
//!
//! Questions are asked one at a time; a destination decided for the run is not asked again.
//! Each decision is audited (`proxy_ask`). Host names are printed whole, control characters
//! replaced, so a crafted name cannot rewrite the question.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authsome_proxy::{Denial, DenialHook, DenyRule, Verdict};
use authsome_vault::{AuditEvent, AuditLog};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

/// How long a request waits for `authsome approve` (or a typed answer) before it is denied.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// What the person decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Decision {
    /// This connection or request only.
    Once,
    /// Every connection to this destination for the rest of the run.
    Run,
    /// As `Run`, and the host added to the `--policy` file.
    Always,
    /// Refused, for the rest of the run.
    Deny,
}

impl Decision {
    fn word(self) -> &'static str {
        match self {
            Decision::Once => "once",
            Decision::Run => "run",
            Decision::Always => "always",
            Decision::Deny => "deny",
        }
    }
}

/// One request on the approval socket (`authsome approve`).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ApproveRequest {
    /// `None`: list what is waiting.
    pub(crate) host: Option<String>,
    /// `None`: any waiting port of `host`.
    pub(crate) port: Option<u16>,
    pub(crate) decision: Option<Decision>,
}

/// The socket's answer.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct ApproveReply {
    /// `host:port` of each destination waiting (after a decision: those it applied to).
    pub(crate) destinations: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

type Key = (String, u16);

/// The `--ask` hook of one run.
pub(crate) struct Asker {
    run_id: String,
    profile: String,
    audit: AuditLog,
    /// `--policy FILE`: where "always" adds the host.
    policy: Option<PathBuf>,
    /// Where the approval socket goes (`AUTHSOME_HOME/runs`).
    runs_dir: PathBuf,
    timeout: Duration,
    decided: Mutex<BTreeMap<Key, bool>>,
    /// Requests waiting for `authsome approve`.
    waiting: Arc<Mutex<BTreeMap<Key, Vec<oneshot::Sender<Decision>>>>>,
    told: Mutex<BTreeSet<Key>>,
    socket: Mutex<Option<PathBuf>>,
    /// One question at a time.
    turn: tokio::sync::Mutex<()>,
    /// A terminal read still waiting after its question timed out.
    reader: tokio::sync::Mutex<Option<tokio::task::JoinHandle<Option<String>>>>,
}

impl Asker {
    pub(crate) fn new(
        run_id: &str,
        profile: &str,
        audit: AuditLog,
        policy: Option<PathBuf>,
        runs_dir: PathBuf,
        timeout: Duration,
    ) -> Self {
        Asker {
            run_id: run_id.to_string(),
            profile: profile.to_string(),
            audit,
            policy,
            runs_dir,
            timeout,
            decided: Mutex::new(BTreeMap::new()),
            waiting: Arc::new(Mutex::new(BTreeMap::new())),
            told: Mutex::new(BTreeSet::new()),
            socket: Mutex::new(None),
            turn: tokio::sync::Mutex::new(()),
            reader: tokio::sync::Mutex::new(None),
        }
    }

    /// The socket path for run `run_id` in `runs_dir`.
    pub(crate) fn socket_path(runs_dir: &Path, run_id: &str) -> PathBuf {
        runs_dir.join(format!("{run_id}.sock"))
    }

    /// Remove the approval socket (the run is over).
    pub(crate) fn close(&self) {
        if let Some(path) = self.socket.lock().expect("ask lock").take() {
            let _ = std::fs::remove_file(path);
        }
    }

    async fn decide_inner(&self, denial: Denial) -> Verdict {
        let key: Key = (denial.host.clone(), denial.port);
        if let Some(allowed) = self.remembered(&key) {
            return verdict(allowed);
        }
        let _turn = self.turn.lock().await;
        if let Some(allowed) = self.remembered(&key) {
            return verdict(allowed);
        }
        let (decision, via) = match open_tty() {
            None => (Decision::Deny, "no_terminal"),
            Some((tty, raw)) if !raw => match self.ask_on(tty, &denial).await {
                Some(decision) => (decision, "terminal"),
                None => (Decision::Deny, "timeout"),
            },
            Some(_) => match self.wait_for_approval(&key, &denial).await {
                Some(decision) => (decision, "approve"),
                None => (Decision::Deny, "timeout"),
            },
        };
        let decision = self.apply(&key, &denial, decision);
        let _ = self.audit.append(
            &AuditEvent::new("proxy_ask")
                .profile(&self.profile)
                .field("run_id", self.run_id.clone())
                .field("host", denial.host.clone())
                .field("port", denial.port)
                .field("rule", denial.rule.code())
                .field("decision", decision.word())
                .field("via", via),
        );
        verdict(decision != Decision::Deny)
    }

    fn remembered(&self, key: &Key) -> Option<bool> {
        self.decided.lock().expect("ask lock").get(key).copied()
    }

    /// Remember a decision for the run; "always" also goes to the policy file (falling back
    /// to "run" with a warning when it cannot be written).
    fn apply(&self, key: &Key, denial: &Denial, decision: Decision) -> Decision {
        let mut decision = decision;
        if decision == Decision::Always {
            let port = (denial.rule == DenyRule::Port).then_some(denial.port);
            match self.policy.as_deref().map(|p| super::learn::add_to_policy(p, &denial.host, port)) {
                Some(Ok(())) => {}
                Some(Err(message)) => {
                    eprintln!("authsome: warning: {message}; allowed for this run only");
                    decision = Decision::Run;
                }
                None => decision = Decision::Run,
            }
        }
        match decision {
            Decision::Once => {}
            Decision::Run | Decision::Always => {
                self.decided.lock().expect("ask lock").insert(key.clone(), true);
            }
            Decision::Deny => {
                self.decided.lock().expect("ask lock").insert(key.clone(), false);
            }
        }
        decision
    }

    /// The question on the terminal; the answer read from it (`None`: no answer in time).
    async fn ask_on(&self, tty: std::fs::File, denial: &Denial) -> Option<Decision> {
        let always = match &self.policy {
            Some(path) => format!(", [a]lways (adds it to {})", path.display()),
            None => String::new(),
        };
        let question = format!(
            "\nauthsome: {} wants {} ({}).\nauthsome: allow [o]nce, for this [r]un{always}, or [d]eny? ",
            "the command",
            destination(denial),
            denial.rule
        );
        let has_policy = self.policy.is_some();
        let mut writer = tty.try_clone().ok()?;
        writer.write_all(question.as_bytes()).ok()?;
        writer.flush().ok()?;
        // A blocked read cannot be cancelled: a read left waiting by a question that timed out
        // takes the next answer typed, so it is reused rather than raced by a second one.
        let mut slot = self.reader.lock().await;
        let mut reader = slot.take().unwrap_or_else(|| {
            tokio::task::spawn_blocking(move || {
                let mut line = String::new();
                std::io::BufReader::new(tty).read_line(&mut line).ok().map(|_| line)
            })
        });
        match tokio::time::timeout(self.timeout, &mut reader).await {
            Ok(Ok(line)) => line.map(|line| parse_answer(&line, has_policy)),
            Ok(Err(_)) => None,
            Err(_) => {
                *slot = Some(reader);
                None
            }
        }
    }

    /// The command owns the terminal: one line on stderr, then wait for `authsome approve`.
    async fn wait_for_approval(&self, key: &Key, denial: &Denial) -> Option<Decision> {
        if let Err(message) = self.listen() {
            eprintln!("authsome: warning: --ask cannot wait for `authsome approve`: {message}");
            return None;
        }
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().expect("ask lock").entry(key.clone()).or_default().push(tx);
        if self.told.lock().expect("ask lock").insert(key.clone()) {
            eprintln!(
                "\r\nauthsome: {} is waiting ({}): answer from another terminal with `authsome approve {}` \
                 (or --once, --always, --deny); denied in {} s\r",
                destination(denial),
                denial.rule,
                approve_target(denial),
                self.timeout.as_secs()
            );
        }
        let decision = tokio::time::timeout(self.timeout, rx).await.ok().and_then(Result::ok);
        self.waiting.lock().expect("ask lock").remove(key);
        decision
    }

    /// Bind the approval socket on first need.
    fn listen(&self) -> Result<PathBuf, String> {
        let mut slot = self.socket.lock().expect("ask lock");
        if let Some(path) = &*slot {
            return Ok(path.clone());
        }
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.runs_dir)
                .map_err(|e| format!("cannot create {}: {e}", self.runs_dir.display()))?;
        }
        let path = Self::socket_path(&self.runs_dir, &self.run_id);
        let _ = std::fs::remove_file(&path);
        let listener =
            tokio::net::UnixListener::bind(&path).map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
        let waiting = self.waiting.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let waiting = waiting.clone();
                tokio::spawn(async move {
                    let _ = serve_approval(stream, &waiting).await;
                });
            }
        });
        *slot = Some(path.clone());
        Ok(path)
    }
}

impl Drop for Asker {
    fn drop(&mut self) {
        self.close();
    }
}

impl DenialHook for Asker {
    fn decide(&self, denial: Denial) -> Pin<Box<dyn Future<Output = Verdict> + Send + '_>> {
        Box::pin(self.decide_inner(denial))
    }
}

fn verdict(allowed: bool) -> Verdict {
    if allowed { Verdict::Allow } else { Verdict::Deny }
}

/// One JSON line in, one JSON line out. Only this user can reach the socket (its directory is
/// 0700 under `AUTHSOME_HOME`, which no sandbox sees).
async fn serve_approval(
    stream: tokio::net::UnixStream,
    waiting: &Mutex<BTreeMap<Key, Vec<oneshot::Sender<Decision>>>>,
) -> std::io::Result<()> {
    use tokio::io::AsyncReadExt;
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    tokio::io::BufReader::new(read.take(4096)).read_line(&mut line).await?;
    let reply = match serde_json::from_str::<ApproveRequest>(&line) {
        Err(e) => ApproveReply { error: Some(format!("bad request: {e}")), ..Default::default() },
        Ok(request) => {
            let mut waiting = waiting.lock().expect("ask lock");
            let matching: Vec<Key> = waiting
                .keys()
                .filter(|(h, p)| {
                    request.host.as_deref().is_none_or(|host| host.eq_ignore_ascii_case(h))
                        && request.port.is_none_or(|port| port == *p)
                })
                .cloned()
                .collect();
            let destinations = matching.iter().map(|(h, p)| format!("{}:{p}", printable(h))).collect();
            match request.decision {
                Some(decision) if request.host.is_some() => {
                    for key in &matching {
                        for tx in waiting.remove(key).unwrap_or_default() {
                            let _ = tx.send(decision);
                        }
                    }
                    ApproveReply { destinations, error: None }
                }
                _ => ApproveReply { destinations, error: None },
            }
        }
    };
    let mut out = serde_json::to_vec(&reply).unwrap_or_default();
    out.push(b'\n');
    write.write_all(&out).await
}

/// The terminal to ask on, and whether the command has put it in raw (non-canonical) mode.
fn open_tty() -> Option<(std::fs::File, bool)> {
    let tty = std::fs::OpenOptions::new().read(true).write(true).open("/dev/tty").ok()?;
    let raw = match nix::sys::termios::tcgetattr(&tty) {
        Ok(attrs) => !attrs.local_flags.contains(nix::sys::termios::LocalFlags::ICANON),
        Err(_) => return None,
    };
    Some((tty, raw))
}

fn parse_answer(line: &str, has_policy: bool) -> Decision {
    match line.trim().to_ascii_lowercase().as_str() {
        "o" | "once" => Decision::Once,
        "r" | "run" => Decision::Run,
        "a" | "always" if has_policy => Decision::Always,
        _ => Decision::Deny,
    }
}

/// `api.example.com:443`, whole, with control characters made harmless.
fn destination(denial: &Denial) -> String {
    let host = printable(&denial.host);
    if host.contains(':') { format!("[{host}]:{}", denial.port) } else { format!("{host}:{}", denial.port) }
}

fn approve_target(denial: &Denial) -> String {
    format!("{}:{}", printable(&denial.host), denial.port)
}

fn printable(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        assert_eq!(parse_answer("o\n", false), Decision::Once);
        assert_eq!(parse_answer(" Run \n", false), Decision::Run);
        assert_eq!(parse_answer("a\n", true), Decision::Always);
        assert_eq!(parse_answer("a\n", false), Decision::Deny, "no --policy: no always");
        assert_eq!(parse_answer("\n", true), Decision::Deny);
        assert_eq!(parse_answer("yes\n", true), Decision::Deny);
    }

    #[test]
    fn destinations_are_whole_and_inert() {
        let d = Denial::new("evil\u{1b}[2J.example", 443, DenyRule::NotAllowlisted);
        assert_eq!(destination(&d), "evil?[2J.example:443");
        let long = "a".repeat(200) + ".example.org";
        assert_eq!(destination(&Denial::new(long.clone(), 8443, DenyRule::Port)), format!("{long}:8443"));
    }
}
