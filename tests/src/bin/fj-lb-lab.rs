//! `cargo xtask lab`: the whole picture in network namespaces. A client, two LB hosts running
//! fj-lb with VRRP (lb1 priority 150, lb2 priority 100, 100 ms adverts) and three nginx
//! backends answering with their names (direct server return). The lab shows who is master and
//! how requests spread, then kills the master host (SIGKILL and its link down) while a client
//! keeps sending requests, and shows the backup taking the VIP, with the measured failover
//! time. On a terminal it then holds the lab up until Ctrl-C; everything is torn down on exit.
//! With `--l3` (`cargo xtask lab --l3`) it shows layer-3 direct return instead: backends in
//! another subnet behind a router, running `fj-lb decap`, served through the VIP in IPIP (IPv4)
//! and GUE (IPv6), their replies going straight back through the router.
//! Needs root and `FJ_LB_BIN` (or a debug build of fj-lb).
use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use fj_lb_tests::{
    Config, Daemon, HealthSettings, Readiness, Service, Topology, VIP, VIP6, VrrpSettings, assert_root, get_at, get_from,
    ip6_of, poll_until, routed_backend_ip,
};

const REQUESTS: u16 = 30;
const BACKENDS: [(usize, u32); 3] = [(1, 100), (2, 100), (3, 100)];

/// When a request of the client loop started (since the loop began), and who answered.
type Request = (Duration, Result<String, String>);

fn bold(s: &str) -> String {
    format!("\x1b[1m{s}\x1b[0m")
}

/// Who answered each of `answers`, as a histogram on stdout; whether all were answered.
fn show_answers(answers: &[Result<(u16, String), String>]) -> bool {
    let mut counts = BTreeMap::<String, u32>::new();
    for a in answers {
        let who = match a {
            Ok((200, body)) => body.trim().to_string(),
            Ok((status, _)) => format!("HTTP {status}"),
            Err(e) => format!("error: {e}"),
        };
        *counts.entry(who).or_default() += 1;
    }
    for (who, n) in &counts {
        println!("   {who:<6} {n:>3} {}", "█".repeat(*n as usize));
    }
    answers.iter().all(|a| matches!(a, Ok((200, _))))
}

/// Prints `out` indented, under `title`.
fn show(title: &str, out: Result<String, String>) {
    println!("\n   {title}:");
    for l in out.unwrap_or_else(|e| e).lines() {
        println!("   {l}");
    }
}

/// `--l3`: backends behind a router, IPIP and GUE, `fj-lb decap` on the backends.
fn l3_lab(signals: libc::sigset_t) {
    println!("{}", bold("fj-lb lab --l3: client → VIP → lb → (IPIP, GUE) → router → r1 r2 (10.0.1.0/24), replies via the router"));
    let mut topo = Topology::builder().backends(1).routed_backends(2).ipv6(true).build();
    for r in topo.routed_backends() {
        let out = topo.decap(r, &["--vip", &VIP.to_string(), "--vip", &VIP6.to_string()]);
        println!("   {} $ fj-lb decap --interface eth0 --vip {VIP} --vip {VIP6}\n   {}", r.name, out.stdout.trim());
        if !out.success() {
            eprintln!("{}", out.stderr);
            std::process::exit(1);
        }
    }
    let rs = [routed_backend_ip(1), routed_backend_ip(2)];
    let config = Config::new(&topo.bpffs_dir(), &topo.control_socket())
        .flow_table_size(65536)
        .maglev_table_size(65537)
        .service(Service::new("web", 80, "tcp").forward("ipip").backends(rs))
        .service(Service::new("web6", 80, "tcp").vip(VIP6).forward("gue").backends(rs.map(ip6_of)));
    let d = Daemon::start(&mut topo, &config);
    println!("\n   the LB's config ({}):\n\n{}", d.config_path().display(), config.render());
    println!("{}", bold(&format!("1. {REQUESTS} requests to {VIP}:80 (IPIP 4in4) and {REQUESTS} to [{VIP6}]:80 (GUE over IPv6)")));
    let vip = topo.vip_addr();
    // Each family's first answer may wait for the hosts' neighbour resolution (bounded).
    for addr in [std::net::SocketAddr::V4(vip), (VIP6, 80).into()] {
        let ok = poll_until(Duration::from_secs(10), Duration::from_millis(100), || {
            topo.client().run_in(|| get_at(addr, "/healthz", Duration::from_millis(500))).ok().filter(|(s, _)| *s == 200)
        });
        if ok.is_none() {
            eprintln!("{addr} does not answer the client within 10 s:\n{}", d.log());
            std::process::exit(1);
        }
    }
    let (v4, v6) = topo.client().run_in(|| {
        let v4: Vec<_> = (0..REQUESTS).map(|i| get_from(vip, "/", Duration::from_secs(2), Some(40000 + i))).collect();
        let v6: Vec<_> = (0..REQUESTS).map(|_| get_at((VIP6, 80).into(), "/", Duration::from_secs(2))).collect();
        (v4, v6)
    });
    println!("   IPv4:");
    let ok4 = show_answers(&v4);
    println!("   IPv6:");
    let ok6 = show_answers(&v6);
    show("fj-lb services (on lb)", d.cli(&["services"]));
    show("fj-lb backends (on lb: the MAC is the router's)", d.cli(&["backends"]));
    let counters = |out: Result<String, String>, keep: &[&str]| {
        out.map(|o| o.lines().filter(|l| l.starts_with("COUNTER") || keep.iter().any(|k| l.starts_with(k))).collect::<Vec<_>>().join("\n"))
    };
    show("fj-lb stats (on lb, excerpt)", counters(d.cli(&["stats"]), &["forwarded", "flow_", "drop_", "pass_n"]));
    for r in topo.routed_backends() {
        show(&format!("fj-lb decap --stats (on {})", r.name), counters(topo.decap(r, &["--stats"]).ok(), &["decap_"]));
    }
    println!("\n   {}", bold("replies never cross the LB: the backends' default route is the router"));
    if let Some(r) = topo.routed_backends().first() {
        println!("   {}: {}", r.name, r.ns.ip(&["route", "get", &fj_lb_tests::CLIENT_IP.to_string()]).trim());
    }
    if unsafe { libc::isatty(0) == 1 && libc::isatty(1) == 1 } {
        println!("\nThe lab is up. Namespaces:");
        for h in topo.hosts() {
            println!("  {:<7} {:<18} {}", h.name, h.ns.name(), h.ip);
        }
        println!("Try: ip netns exec {} curl -s http://{VIP}/   or   fj-lb --socket {} stats\nCtrl-C tears everything down.", topo.client().ns.name(), d.control_socket().display());
        let mut sig = 0;
        unsafe { libc::sigwait(&signals, &mut sig) };
        println!("\nsignal {sig}: tearing down");
    }
    drop(d);
    drop(topo);
    if !(ok4 && ok6) {
        eprintln!("not every request was answered: see above");
        std::process::exit(1);
    }
}

fn main() {
    assert_root();
    // Block SIGINT and SIGTERM before any thread exists: every thread inherits the mask, and
    // the main thread takes them with sigwait, so the guards tear the lab down on Ctrl-C.
    let signals = fj_lb_tests::ns::block_stop_signals();
    if std::env::args().any(|a| a == "--l3") {
        return l3_lab(signals);
    }

    println!("{}", bold("fj-lb lab: client → VIP 10.0.0.100:80 → (lb1 | lb2, VRRP) → b1 b2 b3, replies straight back"));
    let mut topo = Topology::builder().lbs(2).backends(3).build();
    let (v1, v2) = (VrrpSettings::new(150), VrrpSettings::new(100));
    // The lab's default config, embedded: the harness's service plus HTTP health checks
    // (GET /healthz every 200 ms, 100 ms timeout, up after one pass, down after two failures).
    let checks = HealthSettings { expect_status: None, rise: 1, fall: 2, ..HealthSettings::http() };
    let c1 = topo.lb_config(1, &BACKENDS, Some(&v1)).health(Some(&checks));
    let c2 = topo.lb_config(2, &BACKENDS, Some(&v2)).health(Some(&checks));
    let started = Instant::now();
    let mut d1 = Daemon::start_on(&mut topo, 1, &c1, Readiness::Attached);
    let d2 = Daemon::start_on(&mut topo, 2, &c2, Readiness::Attached);
    println!("two fj-lb daemons up in {:.1} s; lb1's config ({}):\n\n{}", started.elapsed().as_secs_f64(), d1.config_path().display(), c1.render());

    let master_ready = poll_until(Duration::from_secs(5), Duration::from_millis(10), || {
        let s = d1.vrrp_status().ok()?;
        (s.is_master() && topo.lb_n(1).has_address(VIP)).then_some(())
    });
    if master_ready.is_none() {
        eprintln!("lb1 did not become master within 5 s:\n{}", d1.log());
        std::process::exit(1);
    }
    // Backends start down until they pass a check; the lab waits for all three (bounded).
    let all_up = poll_until(Duration::from_secs(5), Duration::from_millis(20), || {
        let out = d1.cli(&["services"]).ok()?;
        out.contains("3/3 up").then_some(())
    });
    if all_up.is_none() {
        eprintln!("the backends did not pass their health checks within 5 s:\n{}", d1.log());
        std::process::exit(1);
    }
    println!("{}", bold("1. lb1 is master"));
    for d in [&d1, &d2] {
        if let Ok(out) = d.cli(&["status"]) {
            let vrrp_line = out.lines().find(|l| l.starts_with("VRRP")).unwrap_or("");
            println!("   {:<4} {vrrp_line}", d.host());
        }
    }

    println!("\n{}", bold(&format!("2. {REQUESTS} requests from different source ports through the VIP")));
    let vip = topo.vip_addr();
    let answers = topo.client().run_in(|| {
        (0..REQUESTS).map(|i| get_from(vip, "/", Duration::from_secs(2), Some(40000 + i))).collect::<Vec<_>>()
    });
    let all_answered = show_answers(&answers);
    if let Ok(out) = d1.cli(&["backends"]) {
        println!("\n   fj-lb backends (on lb1):");
        for l in out.lines() {
            println!("   {l}");
        }
    }

    println!("\n{}", bold("3. lb1 dies (SIGKILL, then its link goes down) while the client keeps sending"));
    let stop = Arc::new(AtomicBool::new(false));
    let log: Arc<Mutex<Vec<Request>>> = Arc::default();
    let t0 = Instant::now();
    let client = {
        let (stop, log) = (stop.clone(), log.clone());
        let ns = topo.client().ns.name().to_string();
        std::thread::spawn(move || {
            fj_lb_tests::in_netns(&ns, || {
                // Bounded: at most 400 requests, and the main thread stops it after the failover.
                for port in 41000u16..41400 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let at = t0.elapsed();
                    let r = match get_from(vip, "/", Duration::from_millis(150), Some(port)) {
                        Ok((200, body)) => Ok(body.trim().to_string()),
                        Ok((s, _)) => Err(format!("HTTP {s}")),
                        Err(e) => Err(e),
                    };
                    log.lock().expect("log lock").push((at, r));
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let killed_at = t0.elapsed();
    let kill = Instant::now();
    d1.kill();
    topo.lb_n(1).set_eth0(false);
    let took_over = poll_until(Duration::from_secs(5), Duration::from_millis(2), || {
        let s = d2.vrrp_status_fast().ok()?;
        (s.is_master() && topo.lb_n(2).has_address(VIP)).then(Instant::now)
    });
    std::thread::sleep(Duration::from_millis(1200));
    stop.store(true, Ordering::Relaxed);
    let _ = client.join();

    let Some(took_over) = took_over else {
        eprintln!("lb2 did not take over within 5 s:\n{}", d2.log());
        std::process::exit(1);
    };
    let failover = took_over - kill;
    let log = log.lock().expect("log lock");
    let (before, after): (Vec<_>, Vec<_>) = log.iter().partition(|(at, _)| *at < killed_at);
    let failed: Vec<_> = after.iter().filter(|(_, r)| r.is_err()).collect();
    let first_ok_after = after.iter().filter(|(at, r)| r.is_ok() && *at > killed_at + failover).map(|(at, _)| *at - killed_at).next();
    println!("   requests before the kill: {} ({} failed)", before.len(), before.iter().filter(|(_, r)| r.is_err()).count());
    let late_failures = failed.iter().filter(|(at, _)| *at > killed_at + failover).count();
    println!(
        "   requests after the kill:  {} ({} failed: {} while no host held the VIP, {late_failures} after lb2 took it)",
        after.len(),
        failed.len(),
        failed.len() - late_failures
    );
    for (at, r) in after.iter().take(12) {
        let t = at.saturating_sub(killed_at).as_millis();
        match r {
            Ok(b) => println!("     +{t:>4} ms  {b}"),
            Err(e) => println!("     +{t:>4} ms  failed: {e}"),
        }
    }
    println!(
        "\n   {} lb2 is master and holds the VIP {:.0} ms after lb1 died (RFC 5798 bound: master down interval {:.0} ms; keepalived's default 1 s adverts: 3.6 s)",
        bold("failover:"),
        failover.as_secs_f64() * 1e3,
        v2.master_down_interval().as_secs_f64() * 1e3
    );
    if let Some(t) = first_ok_after {
        println!("   first request answered through lb2: +{} ms", t.as_millis());
    }
    if let Ok(out) = d2.cli(&["status"]) {
        println!("\n   fj-lb status (on lb2):");
        for l in out.lines() {
            println!("   {l}");
        }
    }
    let clean = all_answered && after.iter().rev().take(10).all(|(_, r)| r.is_ok());

    fj_lb_tests::ns::hold_on_terminal(
        &signals,
        "The lab is up (lb1's daemon is dead, lb2 is master).",
        &topo,
        &format!("ip netns exec {} curl -s http://{VIP}/   or   fj-lb --socket {} status", topo.client().ns.name(), d2.control_socket().display()),
    );
    drop(d2);
    drop(d1);
    drop(topo);
    if !clean {
        eprintln!("the lab did not end with every request answered: see above");
        std::process::exit(1);
    }
}
