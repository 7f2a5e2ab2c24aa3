//! Network-namespace harness for fj-lb: builds a small switched LAN out of namespaces, veth
//! pairs and a Linux bridge, runs real nginx backends and the real `fj-lb` daemon in it, and
//! tears everything down again, even when a test panics. Used by the integration tests in
//! `tests/`, by `cargo xtask lab` (`src/bin/fj-lb-lab.rs`) and by the end-to-end benchmark
//! (the `fj-lb-bench` crate).
//!
//! One module per concern, each the only one of its kind:
//! - [`ns`]: namespaces, commands, child processes and temp dirs behind guards; bpffs;
//! - [`topology`]: the lab (client, LB hosts, nginx backends on one bridge; optionally a
//!   router and backends in another subnet behind it, and IPv6; or the client behind a router);
//! - [`bird`]: BIRD 2, the BGP speaker of the ECMP lab (router and LB hosts);
//! - [`ecmp`]: the ECMP lab: router, N fj-lb hosts announcing the VIP over BGP, backends;
//! - [`config`]: the daemon's TOML config, built in code;
//! - [`daemon`]: the `fj-lb run` guard (and keepalived's);
//! - [`cli`]: the `fj-lb` CLI and the control socket, and what tests read from them;
//! - [`http`]: the HTTP client the "client" host uses;
//! - [`backends`]: what tests do to the backends (stop or change nginx, a bare TCP listener);
//! - [`vrrp`]: what the VRRP tests wait for and capture, and a switch that drops multicast VRRP.
//!
//! Everything lives inside namespaces named `fjt-<pid>-<seq>-<role>`; the root namespace's
//! interfaces, routes and firewall are never touched. A crashed run leaves namespaces behind;
//! [`sweep_stale`] (run automatically once per process) removes those whose creating process
//! is gone.
//!
//! Needs root: every privileged test starts with [`require_root!`], which skips it (one line
//! per test binary) for a normal user, so a plain `cargo test` passes quietly.

pub mod backends;
pub mod bird;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod ecmp;
pub mod http;
pub mod ns;
pub mod topology;
pub mod vrrp;

use std::{io::Write as _, os::fd::AsRawFd as _, path::Path, sync::Once, time::Duration};

pub use cli::{CliRun, fj_lb, fj_lb_bin};
pub use config::{AnnounceSettings, Config, HealthSettings, Service, VrrpSettings};
pub use daemon::{Daemon, Readiness, XdpInfo, xdp_info};
pub use http::{Answer, KeepAliveConn, get, get_at, get_from};
pub use ns::{ChildGuard, Netns, TempDir, in_netns, sweep_stale};
pub use topology::{
    CLIENT_IP, HTTP_PORT, Host, LB_IP, ROUTED_CLIENT_IP, ROUTER_IP, Topology, TopologyBuilder, VIP, VIP6, backend_ip, ip6_of,
    lb_ip, routed_backend_ip,
};

/// What a normal user sees instead of the privileged tests.
pub const SKIP_LINE: &str = "skipping: needs root (CAP_NET_ADMIN, CAP_BPF); run `cargo xtask test`";

/// Set (by `cargo xtask test`) to make a skipped privileged test a failure instead.
pub const REQUIRE_PRIVILEGED_ENV: &str = "FJT_REQUIRE_PRIVILEGED";

/// Whether this process may build the lab: namespaces, veth, XDP and bpffs need root.
pub fn privileged() -> bool {
    unsafe { libc::geteuid() == 0 }
}

/// Starts a privileged test: returns from it, as skipped, unless the process runs as root.
/// The first skip in a test binary prints [`SKIP_LINE`] on stderr, past the test's output
/// capture; the others are silent. Under `FJT_REQUIRE_PRIVILEGED` a skip fails the test.
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::privileged() {
            $crate::skip_unprivileged();
            return;
        }
    };
}

/// The skip of [`require_root!`]; see there.
pub fn skip_unprivileged() {
    if std::env::var_os(REQUIRE_PRIVILEGED_ENV).is_some() {
        panic!("{REQUIRE_PRIVILEGED_ENV} is set, but this test process does not run as root");
    }
    static ONCE: Once = Once::new();
    // Straight to the file descriptor: the test harness captures `eprintln!`.
    ONCE.call_once(|| drop(writeln!(std::io::stderr(), "{SKIP_LINE}")));
}

/// Panics with a clear message unless the process runs as root: for the harness's own entry
/// points and the binaries, where there is nothing to skip.
pub fn assert_root() {
    if !privileged() {
        panic!("{SKIP_LINE:?} — this needs root (network namespaces, veth, XDP): run it as root");
    }
}

/// Held while a test measures failover times: such tests run one at a time, so that two of
/// them do not starve each other's daemons of the machine's two cores. An exclusive `flock` of
/// one file, so it also holds across test binaries running at once; released on drop.
#[derive(Debug)]
pub struct OneAtATime {
    _file: std::fs::File,
}

/// Waits for, and takes, the [`OneAtATime`] lock.
pub fn one_at_a_time() -> OneAtATime {
    assert_root();
    let dir = Path::new(ns::MARKER_DIR);
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    let path = dir.join("one-at-a-time.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    loop {
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return OneAtATime { _file: file };
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            panic!("locking {}: {e}", path.display());
        }
    }
}

/// Polls `f` every `every` until it returns `Some` or `timeout` has passed. The loop is bounded
/// by the deadline; the short sleeps are the polling interval, not a synchronisation.
pub fn poll_until<T>(timeout: Duration, every: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
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
