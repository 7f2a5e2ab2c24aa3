//! `cargo xtask lab`: a client, an LB and three nginx backends in network namespaces, fj-lb
//! balancing the VIP 10.0.0.100:80 over them; sends requests through the VIP and shows who
//! answered. On a terminal it then holds the lab up until Ctrl-C, so it can be explored with
//! `ip netns exec <ns> ...`; everything is torn down on exit. Needs root and `FJ_LB_BIN` (or
//! a debug build of fj-lb).
use std::{collections::BTreeMap, time::Duration};

use fj_lb_tests::{Daemon, Topology, get_from, require_root};

const REQUESTS: u16 = 30;

fn main() {
    require_root();
    // Block SIGINT and SIGTERM before any thread exists: every thread inherits the mask, and
    // the main thread takes them with sigwait, so the guards tear the lab down on Ctrl-C.
    // (`Netns::spawn` gives children a clean mask.)
    let mut signals: libc::sigset_t = unsafe { std::mem::zeroed() };
    unsafe {
        libc::sigemptyset(&mut signals);
        libc::sigaddset(&mut signals, libc::SIGINT);
        libc::sigaddset(&mut signals, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &signals, std::ptr::null_mut());
    }

    let mut topo = Topology::builder().backends(3).build();
    let config = topo.config(&[(1, 100), (2, 100), (3, 100)]);
    let daemon = Daemon::start(&mut topo, &config);
    println!("fj-lb is balancing; config {}:\n{config}", daemon.config_path().display());

    let vip = topo.vip_addr();
    let answers = topo.client().run_in(|| {
        (0..REQUESTS)
            .map(|i| {
                let port = 40000 + i;
                (port, get_from(vip, "/", Duration::from_secs(2), Some(port)))
            })
            .collect::<Vec<_>>()
    });
    let mut counts = BTreeMap::<String, u32>::new();
    for (port, answer) in &answers {
        let who = match answer {
            Ok((200, body)) => body.trim().to_string(),
            Ok((status, body)) => format!("status {status}: {}", body.trim()),
            Err(e) => format!("error: {e}"),
        };
        println!("{}:{port} -> {vip}: {who}", fj_lb_tests::CLIENT_IP);
        *counts.entry(who).or_default() += 1;
    }
    println!("\n{REQUESTS} requests through the VIP, answered by: {counts:?}");

    if unsafe { libc::isatty(0) == 1 && libc::isatty(1) == 1 } {
        println!("\nThe lab is up. Namespaces:");
        for h in topo.hosts() {
            println!("  {:<7} {:<16} {}", h.name, h.ns.name(), h.ip);
        }
        println!("  switch  {}", topo.switch().name());
        println!(
            "Try: ip netns exec {} curl -s http://{}/\nDaemon log: {}\nCtrl-C tears everything down.",
            topo.client().ns.name(),
            fj_lb_tests::VIP,
            daemon.log_path().display()
        );
        let mut sig = 0;
        unsafe { libc::sigwait(&signals, &mut sig) };
        println!("\nsignal {sig}: tearing down");
    }
    drop(daemon);
    drop(topo);
    if counts.keys().any(|k| !k.starts_with('b')) {
        std::process::exit(1);
    }
}
