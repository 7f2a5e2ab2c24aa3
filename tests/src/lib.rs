//! Network-namespace harness for fj-lb: builds a small switched LAN out of namespaces, veth
//! pairs and a Linux bridge, runs real nginx backends and the real `fj-lb` daemon in it, and
//! tears everything down again, even when a test panics. Used by the integration tests in
//! `tests/` and meant to be reused by `cargo xtask lab`.
//!
//! Everything lives inside namespaces named `fjt-<pid>-<seq>-<role>`; the root namespace's
//! interfaces, routes and firewall are never touched. A crashed run leaves namespaces behind;
//! [`sweep_stale`] (run automatically once per process) removes those whose creating process
//! is gone.
//!
//! Needs root.

pub mod daemon;
pub mod health_support;
pub mod http;
pub mod ns;
pub mod topology;

pub use daemon::{Daemon, XdpInfo, fj_lb_bin, render_config, xdp_info};
pub use http::{KeepAliveConn, get, get_from};
pub use ns::{ChildGuard, Netns, TempDir, in_netns, sweep_stale};
pub use topology::{CLIENT_IP, Host, LB_IP, Topology, TopologyBuilder, VIP, backend_ip};

/// Panics with a clear message unless the process runs as root.
pub fn require_root() {
    if unsafe { libc::geteuid() } != 0 {
        panic!(
            "these tests need root (network namespaces, veth, XDP); run them as root, e.g. \
             `sudo -E cargo test -p fj-lb-tests`"
        );
    }
}

/// Polls `f` every `every` until it returns `Some` or `timeout` has passed. The loop is bounded
/// by the deadline; the short sleeps are the polling interval, not a synchronisation.
pub fn poll_until<T>(
    timeout: std::time::Duration,
    every: std::time::Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}
