//! Start-up latency of everyday commands against `true` (bare fork + exec), measured in the
//! same run and interleaved so machine noise hits both alike. Run: `cargo bench -p authsome
//! --bench cli_latency`. Bars: `authsome list --json` on an empty home, median under 10 ms
//! (issue 2); an OAuth token lookup that needs no refresh (`export`, or the library from a
//! cold `AuthService`), at most 5 ms end to end (issue 5). The Python authsome takes about
//! 2 s per command.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ROUNDS: usize = 200;

/// A named way to build the command to time.
type Case<'a> = (&'static str, Box<dyn Fn() -> Command + 'a>);

fn time(cmd: &mut Command) -> Duration {
    let start = Instant::now();
    let status = cmd.stdout(Stdio::null()).stderr(Stdio::null()).status().expect("spawn");
    let elapsed = start.elapsed();
    assert!(status.success(), "{cmd:?} failed");
    elapsed
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `--lookup-child HOME`: what a program using the library does from a cold start (the
/// "library" half of issue 5's bar): open the service, one lookup, exit.
fn lookup_child(home: &str) {
    let home = authsome_vault::Home::at(home);
    let service = authsome::AuthService::open_in(&home, None).unwrap();
    let headers = service.headers("github", None).unwrap();
    assert_eq!(headers.len(), 1);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--lookup-child") {
        return lookup_child(&args[2]);
    }
    let bin = env!("CARGO_BIN_EXE_authsome");
    let this = std::env::current_exe().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let stocked = tempfile::tempdir().unwrap();
    // A home with a few connections, for the "real" case.
    for (provider, key) in [("openai", "sk-BENCH000000000000000000001"), ("anthropic", "sk-ant-BENCH00000000000000000")]
    {
        let mut child = Command::new(bin)
            .args(["login", provider, "--stdin"])
            .env("AUTHSOME_HOME", stocked.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(key.as_bytes()).unwrap();
        assert!(child.wait().unwrap().success());
    }

    // An OAuth connection far from expiry (with a refresh token), as a browser login stores it.
    {
        use authsome_vault::{AuthType, ConnectionMeta, SecretSource, Secrets, Vault};
        let home = authsome_vault::Home::at(stocked.path());
        let mut vault = Vault::open(&home, "default").unwrap();
        let (store, key) = vault.writer(&authsome_vault::NoPassphrase, Default::default()).unwrap();
        let mut meta = ConnectionMeta::new("github", "default", AuthType::OAuth2, SecretSource::OAuth);
        meta.expires_at = Some(authsome_vault::time::now_seconds() + 8 * 3600);
        meta.token_type = Some("Bearer".into());
        let secrets = Secrets {
            access_token: Some("gho_BENCH0000000000000000000000000000".into()),
            refresh_token: Some("ghr_BENCH0000000000000000000000000000".into()),
            ..Secrets::default()
        };
        store.put_connection(key, &meta, &secrets).unwrap();
    }

    let cases: Vec<Case> = vec![
        ("true (baseline)", Box::new(|| Command::new("true"))),
        (
            "authsome list --json (empty home)",
            Box::new(|| {
                let mut c = Command::new(bin);
                c.args(["list", "--json"]).env("AUTHSOME_HOME", empty.path());
                c
            }),
        ),
        (
            "authsome list --json (2 connections)",
            Box::new(|| {
                let mut c = Command::new(bin);
                c.args(["list", "--json"]).env("AUTHSOME_HOME", stocked.path());
                c
            }),
        ),
        (
            "authsome export openai (decrypts)",
            Box::new(|| {
                let mut c = Command::new(bin);
                c.args(["export", "openai"]).env("AUTHSOME_HOME", stocked.path());
                c
            }),
        ),
        (
            "authsome export github (OAuth, fresh)",
            Box::new(|| {
                let mut c = Command::new(bin);
                c.args(["export", "github", "--format", "json"]).env("AUTHSOME_HOME", stocked.path());
                c
            }),
        ),
        (
            "library lookup (github, cold process)",
            Box::new(|| {
                let mut c = Command::new(&this);
                c.arg("--lookup-child").arg(stocked.path());
                c
            }),
        ),
        (
            "authsome run -- true",
            Box::new(|| {
                let mut c = Command::new(bin);
                c.args(["run", "--", "true"]).env("AUTHSOME_HOME", stocked.path());
                c
            }),
        ),
        (
            "bwrap --ro-bind / / --unshare-all true",
            Box::new(|| {
                let mut c = Command::new("bwrap");
                c.args(["--ro-bind", "/", "/", "--unshare-all", "true"]);
                c
            }),
        ),
        (
            "authsome run --sandbox -- true",
            Box::new(|| {
                let mut c = Command::new(bin);
                c.args(["run", "--sandbox", "--", "true"]).env("AUTHSOME_HOME", stocked.path());
                c
            }),
        ),
    ];
    let bwrap_works = Command::new("bwrap")
        .args(["--ro-bind", "/", "/", "--unshare-all", "true"])
        .status()
        .is_ok_and(|s| s.success());
    let cases: Vec<Case> = if bwrap_works {
        cases
    } else {
        println!("bwrap is not installed or cannot run here: no bubblewrap baseline (apt-get install bubblewrap)");
        cases.into_iter().filter(|(n, _)| !n.starts_with("bwrap")).collect()
    };
    let mut samples: Vec<Vec<Duration>> = vec![Vec::with_capacity(ROUNDS); cases.len()];
    for _ in 0..5 {
        for (_, make) in &cases {
            time(&mut make());
        }
    }
    for _ in 0..ROUNDS {
        for (i, (_, make)) in cases.iter().enumerate() {
            samples[i].push(time(&mut make()));
        }
    }
    let baseline = median(samples[0].clone());
    let medians: Vec<Duration> = samples.into_iter().map(median).collect();
    println!("{:<40} {:>10} {:>12} {:>8}", "command", "median ms", "over true", "ratio");
    for ((name, _), m) in cases.iter().zip(&medians) {
        let m = *m;
        println!("{name:<40} {:>10.2} {:>+12.2} {:>8.1}", ms(m), ms(m) - ms(baseline), ms(m) / ms(baseline));
    }
    // Sandbox start against bubblewrap's, measured in the same rounds (the targets: plain
    // run <= bubblewrap, run --sandbox <= 2x bubblewrap).
    let named = |prefix: &str| cases.iter().position(|(n, _)| n.starts_with(prefix)).map(|i| medians[i]);
    if let (Some(bwrap), Some(run), Some(sandbox)) =
        (named("bwrap"), named("authsome run -- true"), named("authsome run --sandbox"))
    {
        println!(
            "ratio to bubblewrap: run -- true {:.2}x (target <= 1); run --sandbox -- true {:.2}x (target <= 2)",
            ms(run) / ms(bwrap),
            ms(sandbox) / ms(bwrap)
        );
    }
    println!("bar: `authsome list --json` on an empty home < 10 ms (median, {ROUNDS} rounds)");
    println!("bar: an OAuth lookup without refresh <= 5 ms end to end");
    println!("bar: `authsome run -- true` <= 10 ms over `true`; `run --sandbox -- true` <= 15 ms over `true`");

    container_ratio(bin, stocked.path());

    // The library, in process (code already warm): a fresh AuthService (opens config, store, key) and one lookup.
    let home = authsome_vault::Home::at(stocked.path());
    let mut library = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let service = authsome::AuthService::open_in(&home, None).unwrap();
        let headers = service.headers("github", None).unwrap();
        library.push(start.elapsed());
        assert_eq!(headers.len(), 1);
    }
    println!("{:<40} {:>10.3}", "library in process: open + headers(github)", ms(median(library)));
}

/// `run --sandbox=container --image IMG -- true` against a plain `podman run --rm IMG true`, in
/// the same rounds, both engines warm (target <= 1.3x). IMG: the offline test image
/// (images/test-image.sh); skipped, saying so, when podman or the image is missing.
fn container_ratio(bin: &str, home: &std::path::Path) {
    const IMAGE: &str = "localhost/authsome-test:1";
    const ROUNDS: usize = 7;
    let image_there = Command::new("podman")
        .args(["image", "exists", IMAGE])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !image_there {
        println!("no podman or no {IMAGE} (images/test-image.sh): no container ratio");
        return;
    }
    let plain = || {
        let mut c = Command::new("podman");
        c.args(["run", "--rm", IMAGE, "true"]);
        c
    };
    let ours = || {
        let mut c = Command::new(bin);
        c.args(["run", "--quiet", "--sandbox=container", "--image", IMAGE, "--", "true"]).env("AUTHSOME_HOME", home);
        c
    };
    // Warm both (the first container run also builds the sidecar image).
    time(&mut plain());
    time(&mut ours());
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        b.push(time(&mut plain()));
        a.push(time(&mut ours()));
        // The previous run's janitor removes its sidecar meanwhile: let it finish.
        std::thread::sleep(Duration::from_millis(500));
    }
    let (ours, plain) = (median(a), median(b));
    println!(
        "container: run --sandbox=container -- true {:.0} ms, podman run --rm true {:.0} ms: {:.2}x (target <= 1.3)",
        ms(ours),
        ms(plain),
        ms(ours) / ms(plain)
    );
}
