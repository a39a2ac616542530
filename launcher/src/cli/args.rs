//! The command line, as clap structures. Words, flags and exit codes follow the Python
//! authsome 0.2.4 so users' scripts keep working.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

const AFTER_HELP: &str = "\
Examples:
  printf '%s' \"$OPENAI_API_KEY\" | authsome login openai --stdin
  authsome list
  authsome run -- python agent.py          # the child only ever sees placeholders
  eval \"$(authsome export openai --format shell)\"
  authsome login github --flow device_code --client-id ID

Environment:
  AUTHSOME_HOME             where the vault lives (default ~/.authsome)
  AUTHSOME_PROFILE          the profile when --profile is not given
  AUTHSOME_PASSPHRASE       the passphrase of a passphrase profile (non-interactive use)
  AUTHSOME_KEY_BACKEND      key backend of a profile created by its first write: file,
                            passphrase or keyring
  AUTHSOME_DAEMON_PORT      port of this home's daemon (default 7998)
  AUTHSOME_DAEMON_URL       a daemon elsewhere (default http://127.0.0.1:7998)
  AUTHSOME_SERVER_BASE_URL  public base URL for the OAuth callback and forms
  AUTHSOME_EXTRA_ROOTS      PEM file of extra roots trusted for upstream TLS
  AUTHSOME_CONNECT_TO       host:port:addr:port[,...]: dial a host elsewhere (curl's --connect-to)
  AUTHSOME_ASK_TIMEOUT      seconds `run --ask` waits for an answer (default 60)
  AUTHSOME_LOG              log filter for --verbose (e.g. debug, authsome=trace)
  NO_COLOR                  no colours

Exit codes: 0 ok, 1 error, 2 usage, 3 unknown provider, 4 authentication failed, 5 connection
or credential missing, 6 refresh failed, 7 store unavailable, 8 input cancelled, 9 daemon
unavailable; `run` returns its command's code (see `authsome run --help`).";

#[derive(Debug, Parser)]
#[command(
    name = "authsome",
    version,
    about = "A local credential broker for AI agents: an encrypted vault for API keys and OAuth tokens, \
             and a proxy that puts them on the wire so your tools never hold them.",
    disable_version_flag = true,
    after_help = AFTER_HELP,
    max_term_width = 100
)]
pub(crate) struct Cli {
    /// Print the version.
    #[arg(short = 'v', long = "version", action = ArgAction::Version)]
    pub(crate) version: Option<bool>,

    #[command(flatten)]
    pub(crate) global: GlobalArgs,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct GlobalArgs {
    /// Profile to use (hard isolation: its own store, key and CA) [env: AUTHSOME_PROFILE].
    #[arg(long, global = true, help_heading = "Global options", value_name = "NAME")]
    pub(crate) profile: Option<String>,
    /// Machine-readable JSON on stdout (errors too).
    #[arg(long, global = true, help_heading = "Global options")]
    pub(crate) json: bool,
    /// Hide notes and warnings (data is still printed).
    #[arg(long, global = true, help_heading = "Global options")]
    pub(crate) quiet: bool,
    /// Debug logging on stderr.
    #[arg(long, global = true, help_heading = "Global options")]
    pub(crate) verbose: bool,
    /// No ANSI colours (also: NO_COLOR).
    #[arg(long, global = true, help_heading = "Global options")]
    pub(crate) no_color: bool,
    /// Also write the debug log to this file (an empty value disables it).
    #[arg(long, global = true, help_heading = "Global options", value_name = "PATH")]
    pub(crate) log_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Store a credential: an API key (hidden prompt, --stdin or the browser form), an OAuth
    /// login (browser, device code, dynamic registration), or a pasted token (--stdin).
    Login(LoginArgs),
    /// Delete a connection (revoking it at the provider when it can).
    Logout(ProviderConnectionArgs),
    /// Delete every connection of a provider and its stored OAuth client.
    Revoke(ProviderArg),
    /// Revoke a provider and delete its custom definition.
    Remove(ProviderArg),
    /// Providers and their connections.
    List,
    /// One connection's record; secrets are redacted unless --show-secret (audited).
    Get(GetArgs),
    /// Print credentials as environment variables (prefer `authsome run`).
    Export(ExportArgs),
    /// Find API keys in .env files and the environment, and optionally import them.
    Scan(ScanArgs),
    /// The audit log.
    Log(LogArgs),
    /// Make CONNECTION the default connection of PROVIDER.
    SetDefault(SetDefaultArgs),
    /// Connection commands.
    #[command(subcommand)]
    Connection(ConnectionCommand),
    /// OAuth clients: list them, forget a provider's stored one.
    #[command(subcommand)]
    Client(ClientCommand),
    /// Add a custom provider from a JSON file (ours or the Python authsome's format).
    Register(RegisterArgs),
    /// A provider's definition and connections, as JSON.
    Inspect(ProviderArg),
    /// Version, home, profile, key backend and connected providers.
    Whoami,
    /// Check that authsome can work here.
    Doctor(DoctorArgs),
    /// Profiles: separate vaults with their own keys.
    #[command(subcommand)]
    Profile(ProfileCommand),
    /// Print a shell completion script.
    Completions(CompletionsArgs),
    /// Run a command whose HTTPS requests get your credentials on the wire; it only ever
    /// holds placeholders.
    Run(Box<RunArgs>),
    /// Answer a `run --ask` that waits for a refused destination (from another terminal);
    /// without DESTINATION, list what is waiting.
    Approve(ApproveArgs),
    /// The proxy's certificate authority for `run`.
    #[command(subcommand)]
    Ca(CaCommand),
    /// The local daemon that serves browser logins (started on demand).
    #[command(subcommand)]
    Daemon(DaemonCommand),
    /// Import a home written by the Python authsome 0.2.4 (its files move to a backup first).
    Migrate(MigrateArgs),
    /// The sidecar image of `run --sandbox=container`.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Sandbox housekeeping.
    #[command(subcommand)]
    Sandbox(SandboxCommand),
    /// Forget cached passphrase keys: the next command asks for the passphrase again.
    Lock,
    /// Open the daemon's page of providers and connections in the browser (starts the daemon).
    Ui(UiArgs),
    /// MCP configurations: launch their servers under `authsome run`, keys moved to the vault.
    #[command(subcommand)]
    Mcp(super::mcp::McpCommand),
    /// Agent skills: teach an agent to use authsome instead of asking for keys.
    #[command(subcommand)]
    Skill(super::skill::SkillCommand),
}

#[derive(Debug, Args)]
pub(crate) struct UiArgs {
    /// Print the one-time URL instead of opening a browser.
    #[arg(long)]
    pub(crate) no_browser: bool,
}

#[derive(Debug, Args)]
#[command(after_help = "\
The new home is written first; then the Python files are moved, not copied, into
AUTHSOME_HOME/python-backup-<time>/ (0700), which the Python authsome can still use with
AUTHSOME_HOME pointing at it, and the new files take their place. Safe to interrupt: run it again
and it finishes. The backup holds the Python authsome's plaintext master.key: delete it with
--delete-backup once you have checked.")]
pub(crate) struct MigrateArgs {
    /// List what would move and be imported; change nothing.
    #[arg(long, conflicts_with = "delete_backup")]
    pub(crate) dry_run: bool,
    /// Delete the backup of the Python files left by an earlier migration.
    #[arg(long)]
    pub(crate) delete_backup: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum EgressArg {
    /// Every host (credentials only where a provider owns the host).
    All,
    /// Only hosts of connected providers, and --allow hosts.
    Providers,
    /// The same as `providers` (the name policy files used before --allow counted everywhere).
    Allowlist,
}

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  authsome run -- python agent.py
  authsome run --connection github=work -- gh api user
  MCP config: \"command\": \"authsome\", \"args\": [\"run\", \"--\", \"node\", \"server.js\"]

The child gets HTTP(S)_PROXY pointing at a per-run proxy on 127.0.0.1 (with a per-run token),
CA variables pointing at a bundle that adds the profile's CA, and placeholders such as
OPENAI_API_KEY=sk-authsome_… where your keys would be. stdin/stdout pass through untouched and
the exit code is the child's.

Captured: clients that read HTTP(S)_PROXY (curl, Python requests/httpx/urllib), and Node's
http, https (default agent) and fetch (a preload added to NODE_OPTIONS before Node 24). A client
that ignores the proxy variables goes direct with only the placeholder: use --sandbox for it.

Refusals: one line per refused destination on stderr (unless --quiet), naming the flag that
allows it. --report adds a per-host table at exit, --learn FILE writes the allowlist the run
needed, --ask asks on the terminal (or waits for `authsome approve`; AUTHSOME_ASK_TIMEOUT
seconds, default 60). Later: `authsome log --run ID`, `authsome log --denied`.

Exit codes: the command's own; 128+N if it died of signal N; 125 if run itself failed before
the command started (a bad flag value included); 126 if the command cannot be executed; 127 if
it is not found.")]
pub(crate) struct RunArgs {
    /// Use connection NAME of PROVIDER for requests that carry no placeholder (repeatable).
    #[arg(long = "connection", value_name = "PROVIDER=NAME")]
    pub(crate) connections: Vec<String>,
    /// Intercept every HTTPS host (full audit and leak guard), not only provider hosts.
    #[arg(long)]
    pub(crate) inspect_all: bool,
    /// Let the proxy reach loopback, link-local and private addresses.
    #[arg(long)]
    pub(crate) allow_private: bool,
    /// Which hosts the child may reach through the proxy (default: `all` for plain run,
    /// `providers` with --sandbox). --allow hosts count in every mode.
    #[arg(long, value_enum)]
    pub(crate) egress: Option<EgressArg>,
    /// Also allow HOST (exact or *.suffix), or a group of package registries: @npm, @pypi,
    /// @crates, @github (repeatable).
    #[arg(long = "allow", value_name = "HOST|@GROUP")]
    pub(crate) allow: Vec<String>,
    /// Expose only PROVIDER's connections to the command (repeatable; default: every connected
    /// provider).
    #[arg(long = "provider", value_name = "PROVIDER")]
    pub(crate) providers: Vec<String>,
    /// Never allow HOST (exact or *.suffix; repeatable; wins over everything).
    #[arg(long = "deny", value_name = "HOST")]
    pub(crate) deny: Vec<String>,
    /// Egress rules from a JSON file: {"egress": "allowlist", "allow": […], "deny": […], "ports": […],
    /// "allow_tcp": ["HOST:PORT", …], "allow_host_ports": […]}.
    #[arg(long, value_name = "FILE")]
    pub(crate) policy: Option<PathBuf>,
    /// Run the command in a network namespace whose only way out is the proxy (Linux): even
    /// clients that ignore HTTPS_PROXY are captured, and the host's secrets are hidden.
    /// `--sandbox=container` runs it in a container (podman or docker, with --image) instead.
    #[arg(long, value_enum, num_args = 0..=1, require_equals = true, default_missing_value = "namespace",
          value_name = "BACKEND")]
    pub(crate) sandbox: Option<SandboxArg>,
    /// With --sandbox=container: the image the command runs in (e.g. node:22).
    #[arg(long, value_name = "IMAGE", requires = "sandbox")]
    pub(crate) image: Option<String>,
    /// With --sandbox=container: mount nothing of the host (not even the working directory);
    /// the command starts in the image's own working directory.
    #[arg(long, requires = "image")]
    pub(crate) no_mount_cwd: bool,
    /// With --sandbox: `restricted` (host read-only, a private empty home, the working directory
    /// writable), `home` (as restricted, but the real home readable minus credential files) or
    /// `open` (the host filesystem as it is; secrets still hidden).
    #[arg(long, value_enum, default_value = "restricted", requires = "sandbox")]
    pub(crate) fs: FsArg,
    /// With --sandbox: also writable (repeatable). Files the host runs later (.git/config,
    /// .git/hooks, .envrc, .vscode/, …) stay read-only inside; `--writable .git` opts out.
    #[arg(long = "writable", value_name = "PATH", requires = "sandbox")]
    pub(crate) writable: Vec<PathBuf>,
    /// With --sandbox: also readable, read-only (repeatable), e.g. a directory of your home.
    #[arg(long = "read", value_name = "PATH", requires = "sandbox")]
    pub(crate) read: Vec<PathBuf>,
    /// With --sandbox: also hidden (repeatable).
    #[arg(long = "hide", value_name = "PATH", requires = "sandbox")]
    pub(crate) hide: Vec<PathBuf>,
    /// With --sandbox: pass NAME from this environment (or set NAME=VALUE); the sandbox starts
    /// from PATH, HOME, TERM, LANG, USER, SHELL, TZ (repeatable).
    #[arg(long = "env", value_name = "NAME[=VALUE]", requires = "sandbox")]
    pub(crate) env: Vec<String>,
    /// With --sandbox: also capture TCP PORT (443 and 80 always are; repeatable).
    #[arg(long = "port", value_name = "PORT", requires = "sandbox")]
    pub(crate) ports: Vec<u16>,
    /// With --sandbox: relay raw TCP to exactly HOST:PORT, e.g. github.com:22 or
    /// db.internal:5432 (no interception, no credential; audited with bytes in and out; the
    /// SSRF guard and --allow-private apply; repeatable).
    #[arg(long = "allow-tcp", value_name = "HOST:PORT")]
    pub(crate) allow_tcp: Vec<String>,
    /// With --sandbox: reach a service on this machine's loopback at PORT under the name
    /// host.authsome.internal (raw TCP, audited; never localhost; repeatable).
    #[arg(long = "allow-host-port", value_name = "PORT")]
    pub(crate) allow_host_ports: Vec<u16>,
    /// When the command ends, print on stderr (even with --quiet) the run id and a table per
    /// host: connections, requests, injections, denials, bytes up and down. `authsome log
    /// --run ID` shows it again later.
    #[arg(long)]
    pub(crate) report: bool,
    /// When the command ends, write to FILE (the --policy format) an allowlist of every host
    /// it reached or was refused for want of --allow, to review and pass as --policy FILE. An
    /// existing FILE must be a policy file: the new hosts are added to it.
    #[arg(long, value_name = "FILE")]
    pub(crate) learn: Option<PathBuf>,
    /// Ask before refusing a destination the egress or port policy refuses: the request waits
    /// while you answer on the terminal (allow once, for this run, always = add it to the
    /// --policy file, or deny). When the command holds the terminal in raw mode, answer with
    /// `authsome approve` from another terminal. No terminal: refused as without --ask.
    #[arg(long)]
    pub(crate) ask: bool,
    /// The command to run, after `--`.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "COMMAND")]
    pub(crate) command: Vec<OsString>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ImageCommand {
    /// Build the sidecar image from this authsome binary (no registry needed); prints its tag.
    Build,
}

#[derive(Debug, Subcommand)]
pub(crate) enum SandboxCommand {
    /// Remove the containers left by container runs whose authsome was killed.
    Prune,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum SandboxArg {
    /// Linux namespaces made by authsome (the default).
    Namespace,
    /// A sidecar and a workload container, through podman or docker.
    Container,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum FsArg {
    /// Host read-only, a private empty home, the working directory writable.
    Restricted,
    /// As restricted, with the real home readable (credential files still hidden).
    Home,
    /// The host filesystem as it is (secrets still hidden).
    Open,
}

#[derive(Debug, Subcommand)]
pub(crate) enum CaCommand {
    /// Print the path of the profile's CA certificate (created if missing).
    Path,
    /// Trust the CA system-wide (Debian/Ubuntu: update-ca-certificates; needs root).
    Install,
    /// Remove the CA from the system trust store.
    Uninstall,
}

#[derive(Debug, Subcommand)]
pub(crate) enum DaemonCommand {
    /// Run the daemon in the foreground.
    Serve(DaemonListenArgs),
    /// Start the daemon in the background (if this home's is not running).
    Start(DaemonListenArgs),
    /// Stop this home's daemon.
    Stop,
    /// Stop this home's daemon (if it runs), then start it again.
    Restart(DaemonListenArgs),
    /// Whether this home's daemon runs (always JSON).
    Status,
    /// The daemon's log.
    Logs(DaemonLogsArgs),
}

#[derive(Debug, Args)]
pub(crate) struct DaemonListenArgs {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR")]
    pub(crate) host: Option<String>,
    /// Port (default: AUTHSOME_DAEMON_PORT, else 7998; 0 picks a free one).
    #[arg(long, value_name = "PORT")]
    pub(crate) port: Option<u16>,
}

#[derive(Debug, Args)]
pub(crate) struct DaemonLogsArgs {
    /// Number of lines.
    #[arg(short = 'n', long = "lines", default_value_t = 80, value_name = "N")]
    pub(crate) lines: usize,
}

#[derive(Debug, Args)]
pub(crate) struct ProviderArg {
    /// Provider name (see `authsome list`).
    pub(crate) provider: String,
}

#[derive(Debug, Args)]
pub(crate) struct ProviderConnectionArgs {
    pub(crate) provider: String,
    /// Connection name (default: the provider's default connection).
    #[arg(long, value_name = "NAME")]
    pub(crate) connection: Option<String>,
}

/// Login flows, spelled as the Python authsome spells them (`device_code`); the kebab-case
/// spelling (`device-code`) is accepted too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum FlowArg {
    /// Browser: authorization code + PKCE.
    Pkce,
    /// A code to enter on another device (over SSH, headless).
    #[value(name = "device_code", alias = "device-code")]
    DeviceCode,
    /// Register the OAuth client first (RFC 7591), then code + PKCE.
    #[value(name = "dcr_pkce", alias = "dcr-pkce")]
    DcrPkce,
    /// An API key (prompt, --stdin or the browser form).
    #[value(name = "api_key", alias = "api-key")]
    ApiKey,
}

#[derive(Debug, Args)]
pub(crate) struct LoginArgs {
    pub(crate) provider: String,
    /// Connection name, for several accounts of one provider.
    #[arg(long, value_name = "NAME", default_value = "default")]
    pub(crate) connection: String,
    /// Read the secret from standard input (never pass secrets as arguments). Providers that
    /// take two values (datadog, twilio, algolia) read `NAME=value` lines, NAME being a variable
    /// name of the value (`DD_API_KEY=…` and `DD_APP_KEY=…`), or two lines: key, then the other.
    #[arg(long, conflicts_with = "client_secret_stdin")]
    pub(crate) stdin: bool,
    /// Login flow (default: the provider's).
    #[arg(long, value_enum)]
    pub(crate) flow: Option<FlowArg>,
    /// Scopes, comma-separated (OAuth).
    #[arg(long, value_name = "A,B")]
    pub(crate) scopes: Option<String>,
    /// Base URL for providers that take one (GitHub Enterprise, GitLab self-managed, a Datadog
    /// site, an Azure OpenAI resource): the connection's credential goes to that host only.
    #[arg(long, value_name = "URL")]
    pub(crate) base_url: Option<String>,
    /// Replace an existing connection.
    #[arg(long)]
    pub(crate) force: bool,
    /// Print the login URL instead of opening a browser.
    #[arg(long)]
    pub(crate) no_browser: bool,
    /// Return once the login is started instead of waiting for it to finish.
    #[arg(long)]
    pub(crate) no_wait: bool,
    /// OAuth client id of your app (the secret is asked on the terminal, or read with
    /// --client-secret-stdin; never an argument).
    #[arg(long, value_name = "ID")]
    pub(crate) client_id: Option<String>,
    /// Read the OAuth client secret from standard input (with --client-id).
    #[arg(long, requires = "client_id")]
    pub(crate) client_secret_stdin: bool,
}

#[derive(Debug, Args)]
pub(crate) struct GetArgs {
    pub(crate) provider: String,
    #[arg(long, value_name = "NAME")]
    pub(crate) connection: Option<String>,
    /// Print one field only.
    #[arg(long, value_name = "FIELD")]
    pub(crate) field: Option<String>,
    /// Reveal secret values (recorded in the audit log).
    #[arg(long)]
    pub(crate) show_secret: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ExportFormat {
    /// NAME=value lines, quoted where a shell needs it.
    Env,
    /// `export NAME='value'` lines for eval.
    Shell,
    /// One flat JSON object.
    Json,
    /// NAME="value" lines with escapes, for .env files.
    Dotenv,
}

#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// Provider (default: every connection of every provider).
    pub(crate) provider: Option<String>,
    #[arg(long, value_name = "NAME")]
    pub(crate) connection: Option<String>,
    #[arg(long, value_enum, default_value = "env")]
    pub(crate) format: ExportFormat,
}

#[derive(Debug, Args)]
pub(crate) struct ScanArgs {
    /// Directories or files to scan (default: the current directory).
    pub(crate) paths: Vec<PathBuf>,
    /// Import what was found into the vault.
    #[arg(long)]
    pub(crate) import: bool,
    /// Connection to import into.
    #[arg(long, value_name = "NAME", default_value = "default")]
    pub(crate) connection: String,
    /// Do not read the process environment.
    #[arg(long)]
    pub(crate) no_env: bool,
    /// With --import, replace stored values that differ from what was found.
    #[arg(long)]
    pub(crate) force: bool,
}

#[derive(Debug, Args)]
pub(crate) struct LogArgs {
    /// Number of entries.
    #[arg(short = 'n', long = "lines", default_value_t = 50, value_name = "N")]
    pub(crate) lines: usize,
    /// The per-host table of run ID (the id `run --report` prints; a unique prefix will do).
    #[arg(long = "run", value_name = "ID", conflicts_with = "denied")]
    pub(crate) run: Option<String>,
    /// Only refused destinations and requests, across runs (the last N).
    #[arg(long)]
    pub(crate) denied: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ApproveArgs {
    /// HOST or HOST:PORT as the waiting line shows it (no port: every waiting port of HOST).
    pub(crate) destination: Option<String>,
    /// Only the run with this id (or id prefix); default: every run waiting for DESTINATION.
    #[arg(long = "run", value_name = "ID")]
    pub(crate) run: Option<String>,
    /// Allow this one connection only (default: for the rest of the run).
    #[arg(long, group = "decision")]
    pub(crate) once: bool,
    /// Allow for the rest of the run and add the host to the run's --policy file.
    #[arg(long, group = "decision")]
    pub(crate) always: bool,
    /// Refuse it (for the rest of the run).
    #[arg(long, group = "decision")]
    pub(crate) deny: bool,
}

#[derive(Debug, Args)]
pub(crate) struct SetDefaultArgs {
    pub(crate) provider: String,
    pub(crate) connection: String,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ClientCommand {
    /// The stored OAuth client of each provider and the client each connection was obtained
    /// with (ids and origin: static or dcr; never secrets).
    List,
    /// Forget a provider's stored OAuth client; its connections keep working.
    Forget(ProviderArg),
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConnectionCommand {
    /// Make CONNECTION the default connection of PROVIDER.
    SetDefault(SetDefaultArgs),
}

#[derive(Debug, Args)]
pub(crate) struct RegisterArgs {
    /// The provider definition (JSON).
    pub(crate) file: PathBuf,
    /// Replace a custom provider of the same name.
    #[arg(long)]
    pub(crate) force: bool,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub(crate) yes: bool,
}

#[derive(Debug, Args)]
pub(crate) struct DoctorArgs {
    /// Check whether `run --sandbox` works here (live probe), and if not why; then run each
    /// installed client (curl, Python, Node, git, Go, Java, Deno, Bun, .NET, Ruby) inside a
    /// sandbox against a local upstream: captured? CA trusted? through which variable? the fix.
    #[arg(long)]
    pub(crate) sandbox: bool,
    /// With --sandbox: exit 1 unless these pass (comma-separated runtimes such as `node,python`,
    /// or single clients such as `python-requests`); a runtime that is not installed fails.
    #[arg(long, value_delimiter = ',', value_name = "RUNTIMES", requires = "sandbox")]
    pub(crate) require: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ProfileCommand {
    /// List profiles.
    List,
    /// Create a profile.
    Create(ProfileCreateArgs),
    /// Make a profile the default.
    Use(ProfileNameArg),
    /// Delete a profile and every credential in it.
    Delete(ProfileDeleteArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ProfileNameArg {
    pub(crate) name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum KeyBackendArg {
    /// A 0600 key file under AUTHSOME_HOME/keys (the default when no keychain answers).
    File,
    /// The key file wrapped with a passphrase (argon2id); cached in the kernel keyring.
    Passphrase,
    /// The OS keychain: the Secret Service (GNOME Keyring, KWallet, KeePassXC) of the session bus.
    Keyring,
}

#[derive(Debug, Args)]
pub(crate) struct ProfileCreateArgs {
    pub(crate) name: String,
    /// Where the profile's master key lives (recorded now, never switched silently). Default:
    /// `keyring` when the session's Secret Service answers, unlocked; else `file`.
    #[arg(long, value_enum)]
    pub(crate) key_backend: Option<KeyBackendArg>,
    /// Seconds an unlocked passphrase key stays cached in the kernel keyring (0: never).
    #[arg(long, value_name = "SECONDS")]
    pub(crate) key_cache: Option<u32>,
}

#[derive(Debug, Args)]
pub(crate) struct ProfileDeleteArgs {
    pub(crate) name: String,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub(crate) yes: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum ShellArg {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    pub(crate) shell: ShellArg,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn globals_are_accepted_after_the_subcommand() {
        let cli = Cli::try_parse_from(["authsome", "list", "--json", "--profile", "work"]).unwrap();
        assert!(cli.global.json);
        assert_eq!(cli.global.profile.as_deref(), Some("work"));
    }
}
