//! End-to-end: the command line's surface with the real binary — flag spellings the Python
//! authsome's users type, usage errors, help, export formats and where the home is taken from.

mod common;

use common::Env;

/// `.env` files are read by bash (`set -a; . ./.env`), docker compose and python-dotenv, and
/// each reads quotes differently: every value that export writes must come back exact from
/// bash and python-dotenv (docker compose is not installed on the test machines).
#[test]
fn dotenv_export_reads_back_exactly_in_bash_and_python_dotenv() {
    for value in ["plain-key_0123", "a $(touch pwned) `id` \"q\" ;|&", "it's here", "back\\slash $HOME", "x#y z"] {
        let env = Env::new();
        env.login("ahrefs", "default", value);
        let dotenv = env.run(&["export", "ahrefs", "--format", "dotenv"]).ok().stdout;
        let file = env.cwd.path().join(".env");
        std::fs::write(&file, &dotenv).unwrap();
        let bash = std::process::Command::new("bash")
            .arg("-c")
            .arg("set -a; . ./.env; printf '%s' \"$AHREFS_API_KEY\"")
            .current_dir(env.cwd.path())
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&bash.stdout), value, "bash read {dotenv:?} wrong");
        let python = std::process::Command::new(common::python())
            .args(["-c", "import dotenv,sys; sys.stdout.write(dotenv.dotenv_values('.env')['AHREFS_API_KEY'])"])
            .current_dir(env.cwd.path())
            .output()
            .unwrap();
        assert!(python.status.success(), "python-dotenv: {}", String::from_utf8_lossy(&python.stderr));
        assert_eq!(String::from_utf8_lossy(&python.stdout), value, "python-dotenv read {dotenv:?} wrong");
        assert!(!env.cwd.path().join("pwned").exists());
    }
}

/// The Python authsome spells flows `device_code`, `dcr_pkce`, `api_key`; both spellings parse
/// and help shows the upstream one.
#[test]
fn flow_names_parse_in_both_spellings() {
    let env = Env::new();
    for flow in ["device_code", "device-code", "dcr_pkce", "dcr-pkce", "api_key", "api-key", "pkce"] {
        // An unknown provider fails after parsing (exit 3), a bad flag value before it (exit 2).
        env.run(&["login", "nosuchprovider", "--flow", flow]).fails(3);
    }
    let bad = env.run(&["login", "openai", "--flow", "magic"]).fails(2);
    assert!(bad.stderr.contains("device_code"), "{}", bad.stderr);
    let help = env.run(&["login", "--help"]).ok();
    assert!(help.stdout.contains("device_code") && !help.stdout.contains("device-code"), "{}", help.stdout);
}

/// `--stdin` reads the key; `--client-secret-stdin` reads an OAuth client secret: both at once
/// would store the client secret as the token.
#[test]
fn stdin_and_client_secret_stdin_together_are_a_usage_error() {
    let env = Env::new();
    let run =
        env.run_stdin(&["login", "github", "--stdin", "--client-id", "x", "--client-secret-stdin"], "s3cret").fails(2);
    assert!(run.stderr.contains("cannot be used with"), "{}", run.stderr);
    assert!(!env.home().join("profiles").exists(), "nothing was written");
}

/// A relative AUTHSOME_HOME means one directory, made absolute at start (the daemon and the
/// sandbox helper run elsewhere).
#[test]
fn a_relative_home_is_made_absolute() {
    let env = Env::new();
    let mut cmd = std::process::Command::new(common::BIN);
    cmd.args(["whoami", "--json"]).current_dir(env.cwd.path()).env_clear().env("PATH", std::env::var("PATH").unwrap());
    let out = cmd.env("AUTHSOME_HOME", "relative-home").env("HOME", env.home()).output().unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let shown = doc.to_string();
    let expected = env.cwd.path().join("relative-home");
    assert!(shown.contains(expected.to_str().unwrap()), "{shown}");
}

/// With --json, a usage error is the JSON error document on stdout like every other error.
#[test]
fn json_usage_errors_are_json_on_stdout() {
    let env = Env::new();
    let run = env.run(&["--json", "login"]).fails(2);
    let doc = run.json();
    assert_eq!(doc["error"], "UsageError");
    assert!(doc["message"].as_str().unwrap().contains("<PROVIDER>"), "{doc}");
    assert!(doc["hint"].as_str().unwrap().contains("Usage: authsome login"), "{doc}");
    assert!(run.stderr.is_empty(), "{}", run.stderr);
    // Help is not an error, with or without --json.
    assert!(env.run(&["--json", "login", "--help"]).ok().stdout.contains("Usage:"));
}

/// Help lists the global options apart from a command's own, every environment variable and
/// the exit codes (`run --help`: its own).
#[test]
fn help_lists_global_options_environment_and_exit_codes() {
    let env = Env::new();
    let export = env.run(&["export", "--help"]).ok().stdout;
    let global = export.find("Global options:").expect("a Global options heading");
    assert!(export[global..].contains("--profile") && !export[..global].contains("--profile"), "{export}");
    let top = env.run(&["--help"]).ok().stdout;
    for name in [
        "AUTHSOME_HOME",
        "AUTHSOME_KEY_BACKEND",
        "AUTHSOME_SERVER_BASE_URL",
        "AUTHSOME_DAEMON_URL",
        "AUTHSOME_LOG",
        "AUTHSOME_CONNECT_TO",
        "Exit codes",
    ] {
        assert!(top.contains(name), "{name} missing from --help");
    }
    let run = env.run(&["run", "--help"]).ok().stdout;
    for code in ["125", "126", "127", "128+N"] {
        assert!(run.contains(code), "{code} missing from run --help");
    }
}

/// The column (in characters) where a line's `n`-th whitespace-separated field starts.
fn field_start(line: &str, n: usize) -> Option<usize> {
    let chars: Vec<char> = line.chars().collect();
    (0..chars.len()).filter(|&i| !chars[i].is_whitespace() && (i == 0 || chars[i - 1].is_whitespace())).nth(n)
}

/// Issue #11: `scan` and `profile list` line their columns up whatever the names' widths.
#[test]
fn scan_and_profile_list_columns_line_up() {
    let env = Env::new();
    env.login("openai", "default", "sk-stored-0000000000000000");
    std::fs::write(
        env.cwd.path().join(".env"),
        "OPENAI_API_KEY=sk-different-000000000000\nMISTRAL_API_KEY=mistral-0000000000\n",
    )
    .unwrap();
    let scan = env.run(&["scan", "--no-env"]).ok().stdout;
    let rows: Vec<&str> = scan.lines().skip(1).collect();
    assert!(rows.len() >= 2, "{scan}");
    let statuses: Vec<&str> = rows.iter().map(|r| r.split_whitespace().nth(2).unwrap()).collect();
    assert!(statuses.windows(2).any(|w| w[0].len() != w[1].len()), "statuses of different widths: {scan}");
    for column in 1..4 {
        let starts: Vec<Option<usize>> = rows.iter().map(|r| field_start(r, column)).collect();
        assert!(starts.windows(2).all(|w| w[0] == w[1]), "column {column} does not line up:\n{scan}");
    }

    env.run(&["profile", "create", "w"]).ok();
    env.run(&["profile", "create", "a-much-longer-profile-name"]).ok();
    let list = env.run(&["profile", "list"]).ok().stdout;
    let starts: Vec<Option<usize>> = list.lines().map(|l| l.find('[')).collect();
    assert_eq!(starts.len(), 3, "{list}");
    assert!(starts.iter().all(|s| s.is_some() && *s == starts[0]), "the backend column does not line up:\n{list}");
}

/// Issue #11: `doctor --sandbox` puts every value in one column (continuation lines aside).
#[test]
fn doctor_sandbox_values_line_up() {
    let env = Env::new();
    let run = env.run(&["doctor", "--sandbox"]);
    let starts: Vec<usize> = run
        .stdout
        .lines()
        .filter(|l| !l.starts_with(' '))
        .map(|l| {
            let colon = l.find(": ").unwrap_or_else(|| panic!("no name: {l:?}"));
            colon + 1 + l[colon + 1..].chars().take_while(|c| *c == ' ').count()
        })
        .collect();
    assert!(starts.len() > 5, "{}", run.stdout);
    assert!(starts.iter().all(|s| *s == starts[0]), "values do not line up:\n{}", run.stdout);
}
