//! Ports for the servers tests start.
//!
//! A port found free is closed again before the server binds it, so something else can take
//! it in between. Outgoing connections are the usual culprit: the kernel gives each one a
//! local port from its ephemeral range (`net.ipv4.ip_local_port_range`), and a suite with
//! hundreds of connections in flight takes one of those now and then. Ports handed out here
//! therefore come from below that range, where no outgoing connection lands, and a counter
//! keeps one process from handing out the same port twice; the starting point depends on
//! the process id, so test processes running at once start apart.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};

/// The lowest port handed out (clear of the well-known and registered ports tests meet).
const LOWEST: u16 = 10_000;
/// Where the ephemeral range starts when the kernel does not say (Linux's default).
const DEFAULT_EPHEMERAL_START: u16 = 32_768;

static HANDED_OUT: AtomicU32 = AtomicU32::new(0);

/// A TCP port on 127.0.0.1 that was free a moment ago and lies outside the kernel's
/// ephemeral range. Another process can still bind it before the caller does; callers
/// that start servers retry.
pub fn free_port() -> u16 {
    let end = ephemeral_start();
    if end > LOWEST + 1_000 {
        let span = u32::from(end - LOWEST);
        let start = std::process::id().wrapping_mul(2_654_435_761) % span;
        for _ in 0..span {
            let n = HANDED_OUT.fetch_add(1, Ordering::Relaxed);
            let offset = (start + n) % span;
            let port = LOWEST + u16::try_from(offset).unwrap_or(0);
            if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return port;
            }
        }
    }
    // A kernel whose ephemeral range starts near the bottom: let it choose.
    match TcpListener::bind(("127.0.0.1", 0)).and_then(|l| l.local_addr()) {
        Ok(addr) => addr.port(),
        // Not reachable on a machine with a loopback interface.
        Err(e) => panic!("cannot bind an ephemeral port on 127.0.0.1: {e}"),
    }
}

/// The first port of the kernel's ephemeral range.
fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(DEFAULT_EPHEMERAL_START)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_and_below_the_ephemeral_range() {
        let end = ephemeral_start();
        let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
        let distinct: std::collections::BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len(), "a port handed out twice");
        if end > LOWEST + 1_000 {
            assert!(ports.iter().all(|p| (LOWEST..end).contains(p)), "{ports:?}");
        }
    }
}
