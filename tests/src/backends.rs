//! What the tests do to the backends themselves: stopping and restarting one backend's nginx,
//! changing what its `/healthz` answers, asking it directly, and a bare TCP listener for
//! `check = "tcp"`.
use std::{
    net::{Ipv4Addr, SocketAddrV4, TcpListener},
    path::Path,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use crate::{
    ChildGuard, Host, Topology, backend_ip,
    http::Answer,
    poll_until,
    topology::{HTTP_PORT, spawn_nginx},
};

/// The nginx processes running in `host`'s namespace (`ip netns pids`, by command name).
pub fn nginx_pids(host: &Host) -> Vec<u32> {
    let out = crate::ns::run(Command::new("ip").args(["netns", "pids", host.ns.name()]));
    out.split_whitespace()
        .filter_map(|p| p.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "nginx")
        })
        .collect()
}

/// What the client gets for `GET path` straight from backend `i` (not through the VIP).
pub fn direct_get(topo: &Topology, i: usize, path: &str) -> Answer {
    topo.client_get(
        SocketAddrV4::new(backend_ip(i), HTTP_PORT),
        path,
        Duration::from_millis(500),
    )
}

/// Starts nginx again on backend `i` with the config the lab wrote for it (same prefix, logs
/// and `nginx.conf` as [`Topology`]'s), and waits (bounded) until it answers the client.
pub fn start_nginx(topo: &Topology, i: usize) -> ChildGuard {
    let conf = topo.tmp().join(&topo.backend(i).name).join("nginx.conf");
    assert!(conf.is_file(), "the lab wrote no {}", conf.display());
    launch_nginx(topo, i, &conf, 200, "restarted")
}

/// Restarts backend `i`'s nginx so that it answers `GET /healthz` with `status`, everything
/// else unchanged (`/` still answers "bN"): the lab's nginx.conf with its `location = /healthz`
/// rewritten, saved next to it as `nginx-healthz-STATUS.conf`. The running nginx is stopped
/// (SIGTERM, by pid) and a new one started; waits (bounded) until the client sees the new
/// status. (nginx runs with `master_process off`, where a SIGHUP reload is not reliable.)
pub fn restart_nginx_with_healthz(topo: &Topology, i: usize, status: u16) -> ChildGuard {
    let host = topo.backend(i);
    let dir = topo.tmp().join(&host.name);
    let conf = dir.join("nginx.conf");
    let text = std::fs::read_to_string(&conf).unwrap_or_else(|e| panic!("reading {}: {e}", conf.display()));
    let start = text
        .find("location = /healthz {")
        .unwrap_or_else(|| panic!("{} has no `location = /healthz` block:\n{text}", conf.display()));
    let end = start + text[start..].find('}').expect("the location block ends") + 1;
    let block = format!("location = /healthz {{\n            return {status} \"status {status}\\n\";\n        }}");
    let new_conf = dir.join(format!("nginx-healthz-{status}.conf"));
    std::fs::write(&new_conf, format!("{}{block}{}", &text[..start], &text[end..])).expect("writing the new nginx.conf");

    stop_nginx(topo, i);
    launch_nginx(topo, i, &new_conf, status, &format!("/healthz {status}"))
}

/// Stops backend `i`'s nginx (SIGTERM, by pid) and waits (bounded) until it is gone: the
/// backend refuses connections, as a crashed server would. [`start_nginx`] brings it back.
pub fn stop_nginx(topo: &Topology, i: usize) {
    let host = topo.backend(i);
    let pids = nginx_pids(host);
    assert!(!pids.is_empty(), "no nginx runs in {}'s namespace", host.name);
    for pid in &pids {
        unsafe { libc::kill(*pid as libc::pid_t, libc::SIGTERM) };
    }
    if poll_until(Duration::from_secs(5), Duration::from_millis(5), || nginx_pids(host).is_empty().then_some(())).is_none() {
        panic!("nginx on {} (pids {pids:?}) still runs 5 s after SIGTERM", host.name);
    }
}

/// Runs nginx on backend `i` with `conf` and waits (bounded) until its `/healthz` answers
/// `status` to the client.
fn launch_nginx(topo: &Topology, i: usize, conf: &Path, status: u16, what: &str) -> ChildGuard {
    let host = topo.backend(i);
    let dir = topo.tmp().join(&host.name);
    let mut child = spawn_nginx(host, &dir, conf, &format!("nginx {} ({what})", host.name));
    let mut last = String::new();
    let ok = poll_until(Duration::from_secs(10), Duration::from_millis(5), || {
        if let Some(s) = child.try_status() {
            panic!(
                "nginx on {} ({what}) exited ({s}):\n{}\n{}",
                host.name,
                child.log(),
                std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
            );
        }
        match direct_get(topo, i, "/healthz") {
            Ok((s, _)) if s == status => Some(()),
            other => {
                last = format!("{other:?}");
                None
            }
        }
    });
    if ok.is_none() {
        panic!(
            "nginx on {} ({what}) does not answer /healthz with {status} within 10 s (last: {last}); error.log:\n{}",
            host.name,
            std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
        );
    }
    child
}

/// A TCP listener on 0.0.0.0:`port` in a host's namespace that accepts and closes every
/// connection (enough for a `check = "tcp"`), until dropped.
#[derive(Debug)]
pub struct TcpAcceptor {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TcpAcceptor {
    pub fn start(host: &Host, port: u16) -> TcpAcceptor {
        let listener = host
            .run_in(|| TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)))
            .unwrap_or_else(|e| panic!("listening on port {port} in {}: {e}", host.name));
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("acceptor {}:{port}", host.name))
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((conn, _)) => drop(conn),
                        // Nothing pending: look again shortly (and at the stop flag).
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
            .expect("spawning the acceptor thread");
        TcpAcceptor {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for TcpAcceptor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
