//! The addresses assigned to this machine's interfaces, for the SSRF guard.
//!
//! Range checks alone miss the host's own public IPv4 and global IPv6 addresses, through which
//! a destination name resolving there reaches every host service bound to all interfaces. The
//! list is read from `/proc/net/fib_trie` (IPv4 `LOCAL` routes) and `/proc/net/if_inet6`
//! rather than `getifaddrs`, since this crate has no `unsafe` and the kernel's text tables say
//! the same thing; it is re-read at most every few seconds, as addresses come and go (DHCP,
//! SLAAC). Where `/proc` is missing (not Linux), only the range checks apply.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const REFRESH: Duration = Duration::from_secs(2);

/// IPv4 addresses of `LOCAL` (host) routes in the kernel's FIB dump.
pub(crate) fn parse_fib_trie(text: &str) -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    let mut last: Option<Ipv4Addr> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("|-- ") {
            last = rest.trim().parse().ok();
        } else if trimmed.starts_with("/32 host LOCAL")
            && let Some(addr) = last
            && !out.contains(&addr)
        {
            out.push(addr);
        }
    }
    out
}

/// IPv6 addresses in `/proc/net/if_inet6` (32 hex digits first on each line).
pub(crate) fn parse_if_inet6(text: &str) -> Vec<Ipv6Addr> {
    text.lines()
        .filter_map(|line| {
            let hex = line.split_whitespace().next()?;
            (hex.len() == 32).then(|| u128::from_str_radix(hex, 16).ok().map(Ipv6Addr::from)).flatten()
        })
        .collect()
}

fn read() -> HashSet<IpAddr> {
    let mut set = HashSet::new();
    if let Ok(text) = std::fs::read_to_string("/proc/net/fib_trie") {
        set.extend(parse_fib_trie(&text).into_iter().map(IpAddr::V4));
    }
    if let Ok(text) = std::fs::read_to_string("/proc/net/if_inet6") {
        set.extend(parse_if_inet6(&text).into_iter().map(IpAddr::V6));
    }
    set
}

/// This machine's addresses, cached for a short while.
#[derive(Debug, Default)]
pub(crate) struct LocalAddrs {
    cache: Mutex<Option<(Instant, Arc<HashSet<IpAddr>>)>>,
}

impl LocalAddrs {
    fn current(&self) -> Arc<HashSet<IpAddr>> {
        let mut cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match &*cache {
            Some((at, set)) if at.elapsed() < REFRESH => set.clone(),
            _ => {
                let set = Arc::new(read());
                *cache = Some((Instant::now(), set.clone()));
                set
            }
        }
    }

    /// Is `ip` assigned to one of this machine's interfaces?
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.current().contains(&ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_kernel_tables() {
        let fib = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 0.0.0.0\n        /0 universe UNICAST\n     +-- 127.0.0.0/8 2 0 2\n        +-- 127.0.0.0/31 1 0 0\n           |-- 127.0.0.0\n              /8 host LOCAL\n           |-- 127.0.0.1\n              /32 host LOCAL\n        |-- 127.255.255.255\n           /32 link BROADCAST\n     |-- 203.0.113.7\n        /32 host LOCAL\nLocal:\n     |-- 203.0.113.7\n        /32 host LOCAL\n";
        assert_eq!(parse_fib_trie(fib), ["127.0.0.1".parse::<Ipv4Addr>().unwrap(), "203.0.113.7".parse().unwrap()]);
        let inet6 = "00000000000000000000000000000001 01 80 10 80       lo\n20010db8000000000000000000000007 02 40 00 80     eth0\n";
        assert_eq!(parse_if_inet6(inet6), ["::1".parse::<Ipv6Addr>().unwrap(), "2001:db8::7".parse().unwrap()]);
    }

    #[test]
    fn loopback_is_among_this_machines_addresses() {
        let local = LocalAddrs::default();
        if std::path::Path::new("/proc/net/fib_trie").exists() {
            assert!(local.contains("127.0.0.1".parse().unwrap()));
            assert!(local.contains("::ffff:127.0.0.1".parse().unwrap()));
        }
        assert!(!local.contains("192.0.2.200".parse().unwrap()));
    }
}
