//! Free loopback ports for the servers a test starts: etcd and the upstream API server here,
//! and, through `#[path]`, the apikey-operator's admin and verify addresses and nginx.

use std::net::TcpListener;
use std::time::Instant;

/// `N` distinct free loopback ports, below the kernel's range for outgoing connections' local
/// ports: no client connection of a test running alongside can be holding one when the server
/// binds it. (Another test could still bind it first; `upstream` retries such a start.)
pub fn free_ports<const N: usize>() -> [u16; N] {
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .filter(|start| *start > 20_000)
        .unwrap_or(32_768);
    let span = u64::from(ephemeral_start - 10_000);
    let mut listeners: Vec<TcpListener> = Vec::new();
    while listeners.len() < N {
        // Random start points: tests in other processes pick too.
        let draw = std::hash::BuildHasher::hash_one(
            &std::collections::hash_map::RandomState::new(),
            (std::process::id(), Instant::now()),
        );
        let port = 10_000 + u16::try_from(draw % span).expect("below the ephemeral range");
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            listeners.push(listener);
        }
    }
    std::array::from_fn(|i| listeners[i].local_addr().expect("local address").port())
}
