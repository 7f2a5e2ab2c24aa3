//! `cargo xtask lab --ecmp`: N active LB hosts behind ECMP. A client behind a router running
//! BIRD 2 (multipath, `fib_multipath_hash_policy = 1`), three LB hosts each running fj-lb with
//! `[announce]` and a BIRD that exports fj-lb's table to the router over BGP, three nginx
//! backends answering with their names (direct server return). The lab shows the spread of
//! connections over the LB hosts and the backends, then kills one LB host (link down, SIGKILL
//! to fj-lb and BIRD) and shows the router withdrawing it, every established connection still
//! answered by its backend, and new ones spread over the two hosts left. On a terminal it then
//! holds the lab up until Ctrl-C; everything is torn down on exit.
//! Needs root, BIRD 2 and `FJ_LB_BIN` (or a debug build of fj-lb).
use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use fj_lb_tests::{
    HealthSettings, VIP, assert_root,
    bird::BgpTimers,
    ecmp::EcmpLab,
    http::KeepAliveConn,
    lb_ip,
};

const CONNS: usize = 30;
const CONN_TIMEOUT: Duration = Duration::from_secs(15);

fn bold(s: &str) -> String {
    format!("\x1b[1m{s}\x1b[0m")
}

fn bars<K: std::fmt::Display>(counts: &BTreeMap<K, usize>) {
    for (k, n) in counts {
        println!("   {k:<6} {n:>3} {}", "█".repeat(*n));
    }
}

fn per_backend(conns: &[(KeepAliveConn, usize)]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for (_, b) in conns {
        *m.entry(format!("b{b}")).or_insert(0) += 1;
    }
    m
}

fn per_host(counts: BTreeMap<usize, usize>) -> BTreeMap<String, usize> {
    counts.into_iter().map(|(i, n)| (format!("lb{i}"), n)).collect()
}

fn main() {
    assert_root();
    // Ctrl-C and SIGTERM are taken with sigwait, so the guards tear the lab down.
    let signals = fj_lb_tests::ns::block_stop_signals();
    println!("{}", bold("fj-lb ECMP lab: client → router (BIRD 2, ECMP) → lb1 | lb2 | lb3 (fj-lb + BIRD 2) → b1 b2 b3, replies straight back"));
    let timers = BgpTimers::default();
    let checks = HealthSettings { expect_status: None, rise: 1, fall: 2, ..HealthSettings::http() };
    let started = Instant::now();
    let mut lab = EcmpLab::start(3, 3, timers, |_, c| c.health(Some(&checks)));
    println!(
        "3 LB hosts up and announcing in {:.1} s (BGP hold time {} s, keepalive {} s); lb1's fj-lb config:\n\n{}",
        started.elapsed().as_secs_f64(),
        timers.hold_time_s,
        timers.keepalive_s,
        std::fs::read_to_string(lab.daemon(1).config_path()).unwrap_or_default()
    );
    println!("{}", bold("1. the router's route to the VIP: one next hop per announcing host"));
    let route = lab.topo.router().ns.ip(&["route", "show", &format!("{VIP}/32")]);
    for l in route.lines() {
        println!("   {l}");
    }
    for i in 1..=3 {
        if let Ok(out) = lab.daemon(i).cli(&["status"]) {
            for l in out.lines().skip_while(|l| !l.starts_with("Announce")).take(2) {
                println!("   lb{i}  {l}");
            }
        }
    }

    println!("\n{}", bold(&format!("2. {CONNS} long-lived connections through the VIP")));
    let mut conns = lab.open_conns(CONNS, CONN_TIMEOUT);
    println!("   over the LB hosts (router's L4 hash):");
    bars(&per_host(lab.carriers(&[1, 2, 3], &conns)));
    println!("   over the backends (Maglev, the same table on every host):");
    bars(&per_backend(&conns));

    println!("\n{}", bold("3. lb1 dies: link down, fj-lb and BIRD killed"));
    let t0 = Instant::now();
    lab.crash(1);
    let left: std::collections::BTreeSet<_> = [lb_ip(2), lb_ip(3)].into_iter().collect();
    let took = lab.wait_next_hops(&left, Duration::from_secs(u64::from(timers.hold_time_s) + 10));
    match took {
        Some(_) => println!(
            "   the router withdrew lb1 {:.0} ms after it died (bound: BGP hold time {} s after its last keepalive)",
            t0.elapsed().as_secs_f64() * 1e3,
            timers.hold_time_s
        ),
        None => {
            eprintln!("the router never withdrew lb1: it has {:?}", lab.next_hops());
            std::process::exit(1);
        }
    }
    let topo = &lab.topo;
    let (mut same, mut changed, mut failed) = (0, 0, 0);
    topo.client().run_in(|| {
        for (c, b) in conns.iter_mut() {
            match topo.served_by(&c.request("/")) {
                Ok(now) if now == *b => same += 1,
                Ok(_) => changed += 1,
                Err(_) => failed += 1,
            }
        }
    });
    println!("   the {CONNS} established connections: {same} answered by the same backend, {changed} by another, {failed} failed");
    let fresh = lab.open_conns(CONNS, CONN_TIMEOUT);
    println!("   {CONNS} new connections, over the hosts left:");
    bars(&per_host(lab.carriers(&[2, 3], &fresh)));
    println!("   and over the backends:");
    bars(&per_backend(&fresh));
    let clean = same == CONNS;

    fj_lb_tests::ns::hold_on_terminal(
        &signals,
        "The lab is up (lb1 is dead).",
        &lab.topo,
        &format!(
            "ip netns exec {} curl -s http://{VIP}/   or   ip -n {} route show {VIP}   or   fj-lb --socket {} status",
            lab.topo.client().ns.name(),
            lab.topo.router().ns.name(),
            lab.daemon(2).control_socket().display()
        ),
    );
    drop(conns);
    drop(fresh);
    drop(lab);
    if !clean {
        eprintln!("not every established connection kept its backend: see above");
        std::process::exit(1);
    }
}
