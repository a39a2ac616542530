//! Statistics over rounds and the summary tables.

use crate::cpu::PhaseCpu;
use crate::{BULK_SIZE, CONNECTIONS, IDLE_CONNECTIONS, Way};

pub(crate) fn median(values: &[f64]) -> f64 {
    let mut values = values.to_vec();
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

pub(crate) fn spread(values: &[f64]) -> (f64, f64) {
    values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)))
}

/// `median (min..max)` with `decimals` digits.
pub(crate) fn cell(values: &[f64], decimals: usize) -> String {
    if values.is_empty() {
        return "-".into();
    }
    let (lo, hi) = spread(values);
    format!("{:.d$} ({:.d$}..{:.d$})", median(values), lo, hi, d = decimals)
}

pub(crate) fn ratios(num: &[f64], den: &[f64]) -> Vec<f64> {
    num.iter().zip(den).map(|(n, d)| n / d).collect()
}

pub(crate) fn differences(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x - y).collect()
}

/// Per way: the figures of every round.
#[derive(Default, Clone)]
pub(crate) struct Series {
    pub(crate) rps: Vec<f64>,
    pub(crate) rps_cpu: Vec<PhaseCpu>,
    pub(crate) latency: Vec<f64>,
    pub(crate) mib: Vec<f64>,
    pub(crate) mib_cpu: Vec<PhaseCpu>,
}

pub(crate) fn report(ways: &[&Way], series: &[Series], memory: Option<((u64, u64), (u64, u64))>, rounds: usize) {
    let index = |name: &str| ways.iter().position(|w| w.name == name);
    let (explicit, transparent, mitm) = (index("explicit"), index("transparent"), index("mitmproxy"));
    let direct = &series[0];
    let col = |i: Option<usize>, f: &dyn Fn(&Series) -> String| i.map_or_else(|| "-".to_owned(), |i| f(&series[i]));
    let ms = |v: &[f64]| v.iter().map(|x| x * 1000.0).collect::<Vec<_>>();

    println!();
    println!("Figures: median (min..max) over {rounds} rounds; ratios are per round, then the median.");
    println!();
    println!("| measure | direct | explicit | transparent | mitmproxy | target |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| (a) small GETs, {CONNECTIONS} keep-alive connections, req/s | {} | {} | {} | {} | |",
        cell(&direct.rps, 0),
        col(explicit, &|s| cell(&s.rps, 0)),
        col(transparent, &|s| cell(&s.rps, 0)),
        col(mitm, &|s| cell(&s.rps, 0)),
    );
    println!(
        "| (a) ratio to direct | 1 | {} | {} | {} | >= 0.5 |",
        col(explicit, &|s| cell(&ratios(&s.rps, &direct.rps), 2)),
        col(transparent, &|s| cell(&ratios(&s.rps, &direct.rps), 2)),
        col(mitm, &|s| cell(&ratios(&s.rps, &direct.rps), 3)),
    );
    println!(
        "| (b) median latency, 1 connection, ms | {} | {} | {} | {} | |",
        cell(&ms(&direct.latency), 3),
        col(explicit, &|s| cell(&ms(&s.latency), 3)),
        col(transparent, &|s| cell(&ms(&s.latency), 3)),
        col(mitm, &|s| cell(&ms(&s.latency), 3)),
    );
    println!(
        "| (b) added to direct, ms | 0 | {} | {} | {} | <= 0.15 |",
        col(explicit, &|s| cell(&ms(&differences(&s.latency, &direct.latency)), 3)),
        col(transparent, &|s| cell(&ms(&differences(&s.latency, &direct.latency)), 3)),
        col(mitm, &|s| cell(&ms(&differences(&s.latency, &direct.latency)), 3)),
    );
    println!(
        "| (c) bulk download ({} MiB bodies, 1 connection), MiB/s | {} | {} | {} | {} | |",
        BULK_SIZE >> 20,
        cell(&direct.mib, 0),
        col(explicit, &|s| cell(&s.mib, 0)),
        col(transparent, &|s| cell(&s.mib, 0)),
        col(mitm, &|s| cell(&s.mib, 0)),
    );
    println!(
        "| (c) ratio to direct | 1 | {} | {} | {} | >= 0.7 |",
        col(explicit, &|s| cell(&ratios(&s.mib, &direct.mib), 2)),
        col(transparent, &|s| cell(&ratios(&s.mib, &direct.mib), 2)),
        col(mitm, &|s| cell(&ratios(&s.mib, &direct.mib), 3)),
    );
    if let (Some(e), Some(t)) = (explicit, transparent) {
        println!(
            "| (e) transparent / explicit: (a) {} ; (c) {} | | | | | >= 0.9 |",
            cell(&ratios(&series[t].rps, &series[e].rps), 2),
            cell(&ratios(&series[t].mib, &series[e].mib), 2),
        );
    }
    if let (Some(e), Some(m)) = (explicit, mitm) {
        println!(
            "| authsome explicit / mitmproxy: (a) {} ; (b) latency {} ; (c) {} | | | | | |",
            cell(&ratios(&series[e].rps, &series[m].rps), 1),
            cell(&ratios(&series[e].latency, &series[m].latency), 3),
            cell(&ratios(&series[e].mib, &series[m].mib), 1),
        );
        // The latency goal is on what each proxy adds to a direct request (per round, so a
        // noisy round hits all three alike).
        let added = |s: &Series| differences(&s.latency, &direct.latency);
        println!(
            "| added latency, authsome explicit / mitmproxy | | {} | | | <= 0.05 |",
            cell(&ratios(&added(&series[e]), &added(&series[m])), 3),
        );
    }
    if let Some(((fresh_before, fresh_after), (before, after))) = memory {
        let mib = |k: u64| k as f64 / 1024.0;
        println!(
            "| (d) proxy RSS with {IDLE_CONNECTIONS} open MITM connections, MiB | | fresh {:.1} (idle {:.1}); after (a)-(c) {:.1} (before {:.1}) | | | <= 40 |",
            mib(fresh_after),
            mib(fresh_before),
            mib(after),
            mib(before),
        );
    }

    // Where the CPU goes: per request in (a), per MiB in (c); "proxy" is mitmdump for that way.
    println!();
    println!("| CPU (median over rounds) | way | load generator | proxy | of which kernel | upstream | total |");
    println!("|---|---|---|---|---|---|---|");
    for (i, way) in ways.iter().enumerate() {
        let s = &series[i];
        for (label, cpu, rates, unit, scale) in [
            ("(a) us per request", &s.rps_cpu, &s.rps, 1.0, 1e6),
            ("(c) ms per 32 MiB body", &s.mib_cpu, &s.mib, (BULK_SIZE >> 20) as f64, 1e3),
        ] {
            if cpu.is_empty() {
                continue;
            }
            // CPU seconds over the work done in the phase (rate * wall / unit).
            let per = |f: &dyn Fn(&PhaseCpu) -> f64| {
                let v: Vec<f64> =
                    cpu.iter().zip(rates.iter()).map(|(c, rate)| f(c) / (rate * c.wall / unit) * scale).collect();
                format!("{:.1}", median(&v))
            };
            println!(
                "| {label} | {} | {} | {} | {} | {} | {} |",
                way.name,
                per(&|c| c.client),
                if way.is_direct() { "-".into() } else { per(&|c| c.proxy) },
                if way.is_direct() { "-".into() } else { per(&|c| c.proxy_kernel) },
                per(&|c| c.upstream),
                per(&|c| c.client + c.proxy + c.upstream),
            );
        }
    }

    ceilings(ways, series);
}

/// CPU per unit of work in each round of a phase: (total, the proxy's user-space part).
fn per_unit(cpu: &[PhaseCpu], rates: &[f64]) -> Vec<(f64, f64)> {
    cpu.iter()
        .zip(rates)
        .map(|(c, rate)| {
            let units = rate * c.wall;
            ((c.client + c.proxy + c.upstream) / units, (c.proxy - c.proxy_kernel) / units)
        })
        .collect()
}

/// With every core busy, throughput is cores / CPU per unit, so a way's ratio to direct is
/// direct's CPU per unit over the way's. Dropping the proxy's user-space CPU (parsing, TLS,
/// injection: everything authsome's code does) from the way's total gives the ratio a proxy
/// whose own code cost nothing would reach on this machine: the kernel work of the extra
/// loopback hop stays.
fn ceilings(ways: &[&Way], series: &[Series]) {
    let direct = &series[0];
    let mut lines = Vec::new();
    for (i, way) in ways.iter().enumerate().skip(1) {
        let s = &series[i];
        for (label, cpu, rates, base_cpu, base_rates) in [
            ("(a)", &s.rps_cpu, &s.rps, &direct.rps_cpu, &direct.rps),
            ("(c)", &s.mib_cpu, &s.mib, &direct.mib_cpu, &direct.mib),
        ] {
            if cpu.is_empty() || base_cpu.is_empty() {
                continue;
            }
            let base = per_unit(base_cpu, base_rates);
            let ceiling: Vec<f64> = per_unit(cpu, rates)
                .iter()
                .zip(&base)
                .map(|((total, user), (direct_total, _))| direct_total / (total - user))
                .collect();
            lines.push(format!("{label} {} {}", way.name, cell(&ceiling, 2)));
        }
    }
    if !lines.is_empty() {
        println!();
        println!(
            "Ceiling: ratio to direct if the proxy's own (user-space) code cost nothing and every core stayed busy: {}",
            lines.join("; ")
        );
    }
}
