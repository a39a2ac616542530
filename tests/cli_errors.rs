//! The error and hint text users and scripts see, pinned by snapshots: each case drives the
//! real binary into one failure and records its exit code, stderr (`error:` / causes /
//! `hint:`) and, with `--json`, the error document on stdout. Temporary paths, the version
//! and timestamps are replaced by placeholders (`common::redact`).

mod common;

use common::{Env, redact};

const OPENAI_KEY: &str = "sk-TESTKEY0000000000000000001";

/// `$ authsome ARGS`, the exit code, then stdout (when not empty) and stderr.
fn transcript(env: &Env, args: &[&str], stdin: Option<&str>) -> String {
    let run = env.run_with(args, stdin, &[]);
    assert_ne!(run.code, 0, "`authsome {}` was expected to fail:\n{}", args.join(" "), run.all());
    assert!(!run.all().contains(OPENAI_KEY), "a secret in the error output of `authsome {}`", args.join(" "));
    let mut text = format!("$ authsome {}\n[exit {}]\n", args.join(" "), run.code);
    if !run.stdout.is_empty() {
        text.push_str(&run.stdout);
    }
    text.push_str(&run.stderr);
    redact(&text, env)
}

#[test]
fn usage_errors() {
    let env = Env::new();
    insta::assert_snapshot!("usage_login_without_provider", transcript(&env, &["login"], None));
    insta::assert_snapshot!("usage_unknown_command", transcript(&env, &["frobnicate"], None));
    insta::assert_snapshot!("usage_run_without_command", transcript(&env, &["run"], None));
    insta::assert_snapshot!(
        "usage_unknown_flag_json",
        transcript(&env, &["--json", "remove", "openai", "--connection", "work"], None)
    );
}

#[test]
fn unknown_provider() {
    let env = Env::new();
    insta::assert_snapshot!("provider_login_typo", transcript(&env, &["login", "opnai", "--stdin"], Some("x")));
    insta::assert_snapshot!("provider_get_typo_json", transcript(&env, &["--json", "get", "opnai"], None));
}

#[test]
fn missing_connections() {
    let env = Env::new();
    insta::assert_snapshot!("connection_export_none", transcript(&env, &["export", "openai"], None));
    env.login("openai", "default", OPENAI_KEY);
    insta::assert_snapshot!(
        "connection_get_unknown_name",
        transcript(&env, &["get", "openai", "--connection", "work"], None)
    );
    insta::assert_snapshot!(
        "connection_get_unknown_name_json",
        transcript(&env, &["--json", "get", "openai", "--connection", "work"], None)
    );
}

#[test]
fn bad_input() {
    let env = Env::new();
    insta::assert_snapshot!("input_empty_key", transcript(&env, &["login", "openai", "--stdin"], Some("")));
    insta::assert_snapshot!("input_bad_profile_name", transcript(&env, &["--profile", "../up", "list"], None));
}

#[test]
fn homes_authsome_will_not_touch() {
    let env = Env::new();
    std::fs::write(env.file("version"), "2\n").unwrap();
    insta::assert_snapshot!("home_written_by_python_authsome", transcript(&env, &["list"], None));
}
