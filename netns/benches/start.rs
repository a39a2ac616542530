//! Sandbox start-up cost: `Sandbox::start` + `release` + `wait` of `true`, against a bare
//! spawn of `true`, measured in the same run. `harness = false`; this binary is its own helper.
//!
//! `[AUTHSOME_BENCH_CWD=DIR] cargo bench -p authsome-netns --bench start [-- ITERATIONS]`

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use authsome_netns::{CommandStatus, Sandbox, SandboxSpec, maybe_run_helper};

fn stats(mut samples: Vec<Duration>) -> (f64, f64, f64) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mean = samples.iter().map(|d| ms(*d)).sum::<f64>() / samples.len() as f64;
    (mean, ms(samples[samples.len() / 2]), ms(samples[samples.len() * 9 / 10]))
}

fn main() {
    maybe_run_helper();
    let iterations: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(100);
    let exe = std::env::current_exe().expect("current_exe");
    let true_bin = ["/usr/bin/true", "/bin/true"].into_iter().map(PathBuf::from).find(|p| p.exists()).expect("true");
    let ca = ["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| "/dev/null".into());
    // AUTHSOME_BENCH_CWD: a writable working directory to start in (e.g. a big git checkout,
    // to see the cost of the protections and of the repository search); default an empty one.
    let scratch = std::env::temp_dir().join(format!("authsome-netns-bench-{}", std::process::id()));
    let cwd = match std::env::var_os("AUTHSOME_BENCH_CWD") {
        Some(dir) => PathBuf::from(dir),
        None => {
            std::fs::create_dir_all(&scratch).expect("a scratch working directory");
            scratch.clone()
        }
    };
    let mut spec = SandboxSpec::new(true_bin.as_os_str(), &cwd, &ca);
    spec.fs.writable = vec![cwd.clone()];
    spec.env = vec![("PATH".into(), "/usr/bin:/bin".into())];

    // warm-up (page cache, first exec)
    for _ in 0..5 {
        Command::new(&true_bin).status().expect("spawn true");
        let (mut sb, _s) = Sandbox::start(&exe, &spec).expect("start");
        sb.release().expect("release");
        sb.wait().expect("wait");
    }

    let (mut bare, mut total, mut start, mut release, mut wait) = (vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..iterations {
        let t = Instant::now();
        let status = Command::new(&true_bin).status().expect("spawn true");
        bare.push(t.elapsed());
        assert!(status.success());

        let t0 = Instant::now();
        let (mut sb, sockets) = Sandbox::start(&exe, &spec).expect("start");
        let t1 = Instant::now();
        sb.release().expect("release");
        let t2 = Instant::now();
        let status = sb.wait().expect("wait");
        let t3 = Instant::now();
        drop(sockets);
        assert_eq!(status, CommandStatus::Exited(0));
        start.push(t1 - t0);
        release.push(t2 - t1);
        wait.push(t3 - t2);
        total.push(t3 - t0);
    }
    // The launcher starts its proxy between start and release; the helper prepares init and the
    // command meanwhile, so release itself should then be short.
    let mut release_after_work = vec![];
    for _ in 0..iterations.min(50) {
        let (mut sb, _sockets) = Sandbox::start(&exe, &spec).expect("start");
        std::thread::sleep(Duration::from_millis(5));
        let t = Instant::now();
        sb.release().expect("release");
        release_after_work.push(t.elapsed());
        assert_eq!(sb.wait().expect("wait"), CommandStatus::Exited(0));
    }
    let _ = std::fs::remove_dir_all(&scratch);
    let uid = nix::unistd::geteuid().as_raw();
    println!("sandbox start-up, {iterations} iterations, uid {uid}, cwd {}, helper {}", cwd.display(), exe.display());
    println!("{:<28} {:>9} {:>9} {:>9}", "", "mean ms", "p50 ms", "p90 ms");
    for (name, s) in [
        ("bare spawn of true", bare.clone()),
        ("Sandbox::start", start),
        ("release (fork init+command)", release),
        ("wait", wait),
        ("release, 5 ms after start", release_after_work),
        ("sandboxed true, total", total.clone()),
    ] {
        let (mean, p50, p90) = stats(s);
        println!("{name:<28} {mean:>9.2} {p50:>9.2} {p90:>9.2}");
    }
    let (bare_mean, bare_p50, _) = stats(bare);
    let (total_mean, total_p50, _) = stats(total);
    println!(
        "overhead over bare true: mean {:+.2} ms (x{:.1}), p50 {:+.2} ms (x{:.1})",
        total_mean - bare_mean,
        total_mean / bare_mean,
        total_p50 - bare_p50,
        total_p50 / bare_p50
    );
}
