//! CPU time per party (load generator, proxy, upstream, mitmdump) and for the rest of the
//! machine during a timed phase, from `/proc`.

use std::time::Instant;

/// The processes whose CPU time is accounted per phase.
#[derive(Clone, Copy)]
pub(crate) struct Pids {
    pub(crate) proxy: u32,
    pub(crate) upstream: u32,
    pub(crate) mitm: Option<u32>,
}

/// Clock ticks (USER_HZ, 100 on Linux) of (user, system) time of a process so far.
pub(crate) fn proc_times(pid: &str) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let at = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (at(11), at(12))
}

/// Clock ticks of user + system time of a process so far.
pub(crate) fn proc_ticks(pid: &str) -> u64 {
    let (user, system) = proc_times(pid);
    user + system
}

/// Machine-wide (busy ticks excluding steal, steal ticks) from `/proc/stat`.
pub(crate) fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let cpu: Vec<u64> =
        stat.lines().next().unwrap_or_default().split_whitespace().skip(1).map(|v| v.parse().unwrap_or(0)).collect();
    let at = |i: usize| cpu.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal (guest is inside user)
    (at(0) + at(1) + at(2) + at(5) + at(6), at(7))
}

#[derive(Clone, Copy)]
pub(crate) struct Snapshot {
    pub(crate) at: Instant,
    pub(crate) client: u64,
    pub(crate) proxy: u64,
    /// The system-time parts of `proxy` and `mitm`.
    pub(crate) proxy_kernel: u64,
    pub(crate) mitm_kernel: u64,
    pub(crate) upstream: u64,
    pub(crate) mitm: u64,
    pub(crate) busy: u64,
    pub(crate) steal: u64,
}

pub(crate) fn snapshot(pids: Pids) -> Snapshot {
    let (busy, steal) = machine_ticks();
    let (proxy_user, proxy_kernel) = proc_times(&pids.proxy.to_string());
    let (mitm_user, mitm_kernel) = pids.mitm.map_or((0, 0), |p| proc_times(&p.to_string()));
    Snapshot {
        at: Instant::now(),
        client: proc_ticks("self"),
        proxy: proxy_user + proxy_kernel,
        proxy_kernel,
        mitm_kernel,
        upstream: proc_ticks(&pids.upstream.to_string()),
        mitm: mitm_user + mitm_kernel,
        busy,
        steal,
    }
}

/// CPU seconds each party used during a phase, and what the rest of the machine used (cores).
#[derive(Clone, Copy, Default)]
pub(crate) struct PhaseCpu {
    pub(crate) wall: f64,
    pub(crate) client: f64,
    /// authsome's process, or mitmdump's for that way (the other one idles)
    pub(crate) proxy: f64,
    /// The part of `proxy` spent in the kernel (its sockets: loopback TCP on both sides).
    pub(crate) proxy_kernel: f64,
    pub(crate) upstream: f64,
    pub(crate) other_cores: f64,
    pub(crate) steal_cores: f64,
}

pub(crate) fn phase_cpu(a: Snapshot, b: Snapshot, mitm_way: bool) -> PhaseCpu {
    let s = |t: u64| t as f64 / 100.0;
    let wall = b.at.duration_since(a.at).as_secs_f64();
    let ours = (b.client - a.client) + (b.proxy - a.proxy) + (b.upstream - a.upstream) + (b.mitm - a.mitm);
    let busy = b.busy - a.busy;
    PhaseCpu {
        wall,
        client: s(b.client - a.client),
        proxy: if mitm_way { s(b.mitm - a.mitm) } else { s(b.proxy - a.proxy) },
        proxy_kernel: if mitm_way { s(b.mitm_kernel - a.mitm_kernel) } else { s(b.proxy_kernel - a.proxy_kernel) },
        upstream: s(b.upstream - a.upstream),
        other_cores: s(busy.saturating_sub(ours)) / wall,
        steal_cores: s(b.steal - a.steal) / wall,
    }
}
