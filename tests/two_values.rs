//! End-to-end: credentials that take two values (Datadog's API + application key, Twilio's SID +
//! token): stored in one record, typed at two prompts or piped as two lines, exported under each
//! vendor SDK's names; and AWS, whose request signing is out of scope, says so.

mod common;

use common::{Env, no_secret_on_disk};

const DD_API: &str = "0123456789abcdef0123456789abcdef";
const DD_APP: &str = "fedcba9876543210fedcba9876543210fedcba98";

/// Two-value credentials: both values stored in one record, exported under each vendor SDK's
/// names, from `NAME=value` lines or two plain lines.
#[test]
fn two_value_credentials_login_and_export() {
    let env = Env::new();
    let lines = format!("DD_API_KEY={DD_API}\nDD_APP_KEY={DD_APP}\n");
    env.run_stdin(&["login", "datadog", "--stdin"], &lines).ok();
    let exported = env.run(&["export", "datadog", "--format", "json"]).ok().json();
    assert_eq!(exported["DD_API_KEY"], DD_API);
    assert_eq!(exported["DD_APP_KEY"], DD_APP);
    assert_eq!(exported["DD_APPLICATION_KEY"], DD_APP);
    no_secret_on_disk(&env, DD_APP);

    let (sid, token) = ("AC0123456789abcdef0123456789abcdef", "00112233445566778899aabbccddeeff");
    env.run_stdin(&["login", "twilio", "--stdin"], &format!("{token}\n{sid}\n")).ok();
    let exported = env.run(&["export", "twilio", "--format", "json"]).ok().json();
    assert_eq!(exported, serde_json::json!({"TWILIO_AUTH_TOKEN": token, "TWILIO_ACCOUNT_SID": sid}));

    // Swapped values fail the patterns; one value alone is refused; nothing is stored.
    let swapped = env.run_stdin(&["login", "algolia", "--stdin"], "ABCDE12345\n0123456789abcdef0123456789abcdef\n");
    let swapped = swapped.fails(4);
    assert!(!swapped.all().contains("0123456789abcdef0123456789abcdef"), "{}", swapped.all());
    let one = env.run_stdin(&["login", "algolia", "--stdin"], "0123456789abcdef0123456789abcdef\n").fails(4);
    assert!(one.stderr.contains("ALGOLIA_API_KEY=") && one.stderr.contains("ALGOLIA_APP_ID="), "{}", one.stderr);
    env.run(&["export", "algolia"]).fails(5);
    // Without a terminal or --stdin: told how to pipe both.
    let run = env.run(&["login", "algolia", "--connection", "other"]);
    assert!(run.stderr.contains("--stdin"), "{}", run.stderr);
}

/// AWS signs requests (SigV4): out of scope, and `login` says so instead of "unknown provider".
#[test]
fn aws_login_says_signing_is_not_supported() {
    let env = Env::new();
    let run = env.run_stdin(&["login", "aws", "--stdin"], "AKIA...").fails(3);
    assert!(run.stderr.contains("SigV4") && run.stderr.contains("not supported"), "{}", run.stderr);
}

/// On a terminal, `login` asks for the key, then for the second value, both hidden.
#[test]
fn two_value_login_prompts_for_both_on_a_terminal() {
    use std::io::Write;
    let env = Env::new();
    // script(1) gives the command a terminal; what is typed goes through script's stdin.
    let line = format!("exec '{}' login datadog", common::BIN);
    let mut script = std::process::Command::new("script");
    script.args(["-qfec", &line, "/dev/null"]);
    for (name, value) in env.command(&[]).get_envs() {
        match value {
            Some(value) => script.env(name, value),
            None => script.env_remove(name),
        };
    }
    script
        .current_dir(env.cwd.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = match script.spawn() {
        Ok(child) => child,
        Err(e) => {
            eprintln!("SKIP two_value_login_prompts_for_both_on_a_terminal: no script(1) ({e})");
            return;
        }
    };
    // Type each value once its prompt is shown (echo is off by then).
    let shown = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut out = child.stdout.take().unwrap();
    let reader = {
        let shown = shown.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok(n) = std::io::Read::read(&mut out, &mut buf) {
                if n == 0 {
                    break;
                }
                shown.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    let mut stdin = child.stdin.take().unwrap();
    for (prompt, value) in [("API key (input hidden)", DD_API), ("application key (input hidden)", DD_APP)] {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !shown.lock().unwrap().contains(prompt) {
            assert!(std::time::Instant::now() < deadline, "no prompt {prompt:?}: {}", shown.lock().unwrap());
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        // The prompt is printed just before echo is turned off.
        std::thread::sleep(std::time::Duration::from_millis(200));
        stdin.write_all(format!("{value}\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
    }
    let output = child.wait_with_output().unwrap();
    reader.join().unwrap();
    let shown = shown.lock().unwrap().clone();
    assert!(output.status.success(), "{shown}");
    assert!(shown.contains("Datadog API key (input hidden)"), "{shown}");
    assert!(shown.contains("Datadog application key (input hidden)"), "{shown}");
    assert!(!shown.contains(DD_APP) && !shown.contains(DD_API), "typed values are not echoed: {shown}");
    let exported = env.run(&["export", "datadog", "--format", "json"]).ok().json();
    assert_eq!((exported["DD_API_KEY"].as_str(), exported["DD_APP_KEY"].as_str()), (Some(DD_API), Some(DD_APP)));
}
