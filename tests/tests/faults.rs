//! Faults an unlucky operator or an attacker brings: a daemon killed and restarted under live
//! connections, signals during start-up, a VIP taken away from a master, a crowd of idle
//! metrics clients. Each test fails on a daemon without the matching defence. Needs root and
//! a built `fj-lb` (`FJ_LB_BIN`).
use std::{
    collections::BTreeMap,
    net::{SocketAddrV4, TcpStream},
    time::{Duration, Instant},
};

use fj_lb_tests::{
    Daemon, HealthSettings, KeepAliveConn, Readiness, Topology, VIP, VrrpSettings, backends::nginx_pids, lb_ip, poll_until,
    require_root,
};

const TIMEOUT: Duration = Duration::from_secs(2);

#[test]
fn connections_pinned_away_from_their_slot_survive_kill_9_and_a_restart() {
    require_root!();
    survive_a_restart(|d| {
        d.kill();
    });
}

#[test]
fn connections_survive_a_hand_over_on_sigquit() {
    require_root!();
    survive_a_restart(|d| {
        d.signal(libc::SIGQUIT);
        let exit = d.wait_exit(Duration::from_secs(10));
        assert!(exit.is_some_and(|s| s.success()), "SIGQUIT is a clean exit ({exit:?}); log:\n{}", d.log());
        assert!(d.log().contains("left attached with its pinned maps"), "it says what it left:\n{}", d.log());
    });
}

/// 20 long-lived connections, some pinned away from their Maglev slot by a fourth backend;
/// the daemon goes (`stop`), XDP keeps forwarding meanwhile, a new daemon starts: every
/// connection keeps working on its backend.
fn survive_a_restart(stop: impl FnOnce(&mut Daemon)) {
    let mut topo = Topology::builder().backends(4).build();
    let three = topo.config(&[(1, 100), (2, 100), (3, 100)]);
    let four = topo.config(&[(1, 100), (2, 100), (3, 100), (4, 100)]);
    let mut first = Daemon::start(&mut topo, &three);
    let vip = topo.vip_addr();
    // 20 long-lived connections, then a fourth backend: it takes about a quarter of the Maglev
    // slots, so some of the 20 now hash to b4 and only their flow entries keep them home (the
    // chance that none of 20 does is 0.75^20, 0.3%).
    let mut conns: Vec<(KeepAliveConn, usize)> = topo.client().run_in(|| {
        (0..20u16)
            .map(|i| {
                let port = 24000 + i;
                let mut c = KeepAliveConn::connect(vip, TIMEOUT, Some(port)).unwrap_or_else(|e| panic!("connection from {port}: {e}"));
                let (_, body) = c.request("/").unwrap_or_else(|e| panic!("first request from {port}: {e}"));
                let b = topo.backend_of(&body).unwrap_or_else(|| panic!("unexpected body {body:?}"));
                (c, b)
            })
            .collect()
    });
    first.reload_with(&four.render());
    // b4 takes its slots once its MAC is known (a tick at most): only then are flows pinned away.
    wait_in_table(&first, "10.0.0.14");
    let per_backend = conns.iter().fold(BTreeMap::<usize, u32>::new(), |mut m, (_, b)| {
        *m.entry(*b).or_default() += 1;
        m
    });
    eprintln!("connections per backend before the crash: {per_backend:?}; backends: {:?}", first.cli(&["backends"]));

    let prog = fj_lb_tests::xdp_info(topo.lb().ns.name(), "eth0").and_then(|x| x.prog_id);
    stop(&mut first);
    assert_eq!(fj_lb_tests::xdp_info(topo.lb().ns.name(), "eth0").and_then(|x| x.prog_id), prog, "XDP stays attached while no daemon runs");
    for (c, b) in &mut conns {
        let (status, body) = c.request("/").unwrap_or_else(|e| panic!("a connection on b{b} while no daemon runs: {e}"));
        assert_eq!((status, body.as_str()), (200, format!("b{b}\n").as_str()), "while no daemon runs");
    }
    let second = Daemon::start(&mut topo, &four);
    wait_in_table(&second, "10.0.0.14");
    for (c, b) in &mut conns {
        let local = c.local_addr();
        for n in 0..3 {
            let (status, body) =
                c.request("/").unwrap_or_else(|e| panic!("request {n} on {local} (on b{b}) after kill -9 and restart: {e}"));
            assert_eq!((status, body.as_str()), (200, format!("b{b}\n").as_str()), "connection {local} moved from b{b}");
        }
    }
    assert!(second.log().contains("adopting the flow table"), "the log says what happened:\n{}", second.log());
    // New connections still spread over all four.
    let mut seen = BTreeMap::<String, u32>::new();
    for port in 25000..25040u16 {
        let (status, body) = topo.vip_get(Some(port), TIMEOUT).unwrap_or_else(|e| panic!("new connection from {port}: {e}"));
        assert_eq!(status, 200);
        *seen.entry(body.trim().to_string()).or_default() += 1;
    }
    assert_eq!(seen.len(), 4, "new connections after the restart: {seen:?}; backends: {:?}; log:\n{}", second.cli(&["backends"]), second.log());
    drop(second);
    drop(first);
}

/// Waits until `backend` holds Maglev slots in the only service.
fn wait_in_table(d: &Daemon, backend: &str) {
    let ok = poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
        let st = d.status().ok()?;
        let bs = st["services"][0]["backends"].as_array()?.clone();
        bs.iter().any(|b| b["address"] == backend && b["slots"].as_u64().is_some_and(|n| n > 0)).then_some(())
    });
    assert!(ok.is_some(), "{backend} never took slots: {:?}", d.status());
}

#[test]
fn sighup_during_start_up_does_not_kill_the_daemon() {
    require_root!();
    let mut topo = Topology::builder().backends(2).build();
    let config = topo.config(&[(1, 100), (2, 100)]);
    let mut d = Daemon::spawn_on(&mut topo, 1, &config, None);
    // "config valid" is logged once start-up is under way (past process start), well before
    // the daemon is ready: a SIGHUP from then on is what `systemctl reload` sends too early.
    let under_way = poll_until(Duration::from_secs(10), Duration::from_millis(1), || d.log().contains("config valid").then_some(()));
    assert!(under_way.is_some(), "start-up never logged 'config valid':\n{}", d.log());
    for _ in 0..5 {
        d.signal(libc::SIGHUP);
        std::thread::sleep(Duration::from_millis(2));
    }
    let ready = poll_until(Duration::from_secs(15), Duration::from_millis(50), || {
        if let Some(status) = d.try_status() {
            panic!("the daemon died of a SIGHUP during start-up ({status}); its log:\n{}", d.log());
        }
        matches!(topo.vip_get(None, TIMEOUT), Ok((200, _))).then_some(())
    });
    assert!(ready.is_some(), "the daemon did not come up after SIGHUPs during start-up; log:\n{}", d.log());
    let reloaded = poll_until(Duration::from_secs(5), Duration::from_millis(20), || d.log().contains("config reloaded").then_some(()));
    assert!(reloaded.is_some(), "the SIGHUP was not acted on as a reload once running; log:\n{}", d.log());
    d.assert_running();
}

#[test]
fn a_vip_removed_from_a_master_is_put_back() {
    require_root!();
    let mut topo = Topology::builder().lbs(2).backends(2).build();
    let config = topo.lb_config(1, &[(1, 100), (2, 100)], Some(&VrrpSettings::new(150)));
    let d = Daemon::start_on(&mut topo, 1, &config, Readiness::Attached);
    let lb = topo.lb_n(1);
    let master = poll_until(Duration::from_secs(5), Duration::from_millis(5), || {
        let s = d.vrrp_status_fast().ok()?;
        (s.is_master() && lb.has_address(VIP)).then_some(())
    });
    assert!(master.is_some(), "lb1 alone did not become master; status: {:?}", d.vrrp_status());
    for round in 0..2 {
        // What networkd reapplying or an operator's `ip addr flush` does behind VRRP's back.
        lb.ns.ip(&["addr", "del", &format!("{VIP}/24"), "dev", "eth0"]);
        let removed_at = Instant::now();
        let back = poll_until(Duration::from_secs(3), Duration::from_millis(5), || lb.has_address(VIP).then(Instant::now));
        let Some(at) = back else { panic!("round {round}: the master did not put its VIP back within 3 s; log:\n{}", d.log()) };
        eprintln!("round {round}: VIP back after {:?}", at - removed_at);
        assert!(d.vrrp_status().map(|s| s.is_master()).unwrap_or(false), "still master");
        let answered = poll_until(Duration::from_secs(3), Duration::from_millis(20), || matches!(topo.vip_get(None, TIMEOUT), Ok((200, _))).then_some(()));
        assert!(answered.is_some(), "round {round}: the VIP does not answer after being put back");
    }
    assert!(d.log().contains("removed from outside"), "the log says what happened:\n{}", d.log());
}

#[test]
fn two_thousand_idle_metrics_clients_do_not_delay_a_failover_of_a_backend() {
    require_root!();
    let mut topo = Topology::builder().backends(2).build();
    let listen = SocketAddrV4::new(lb_ip(1), 9900);
    let health = HealthSettings { interval_ms: 100, timeout_ms: 80, rise: 1, fall: 3, ..HealthSettings::http() };
    let bound = health.detection_bound();
    let config = topo.config(&[(1, 100), (2, 100)]).metrics(listen).health(Some(&health));
    let mut d = Daemon::start(&mut topo, &config);
    let all_up = poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
        let st = d.status().ok()?;
        (st["services"][0]["backends_up"].as_u64() == Some(2)).then_some(())
    });
    assert!(all_up.is_some(), "both backends up: {:?}", d.status());
    // The distribution default: 1,024 descriptors. A daemon that gives every idle client a
    // descriptor runs out long before 2,000, and then its health checks fail too.
    let set = std::process::Command::new("prlimit").args(["--pid", &d.pid().to_string(), "--nofile=1024:"]).status();
    assert!(set.is_ok_and(|s| s.success()), "prlimit on the daemon");
    // 2,000 connections that never send a byte, held open from the client.
    let idle: Vec<TcpStream> = topo.client().run_in(|| {
        (0..2000).filter_map(|_| TcpStream::connect_timeout(&listen.into(), Duration::from_millis(500)).ok()).collect()
    });
    eprintln!("{} idle connections to /metrics opened", idle.len());
    // A backend dies (SIGKILL, as a crash): checks every 100 ms, 3 to fall, 80 ms timeout.
    let pids = nginx_pids(topo.backend(2));
    assert!(!pids.is_empty(), "no nginx on b2");
    for pid in &pids {
        unsafe { libc::kill(*pid as libc::pid_t, libc::SIGKILL) };
    }
    let died = Instant::now();
    let moved = poll_until(Duration::from_secs(3), Duration::from_millis(10), || {
        let st = d.status().ok()?;
        (st["services"][0]["backends_up"].as_u64() == Some(1)).then(Instant::now)
    });
    let Some(at) = moved else { panic!("the dead backend was not taken out within 3 s with 2,000 idle metrics clients; log:\n{}", d.log()) };
    let took = at - died;
    eprintln!("backend out of the table {took:?} after it died");
    // The bound health checking promises, plus the scheduling of a busy 2-core machine.
    assert!(took < bound + Duration::from_millis(700), "the move took {took:?}, bound {bound:?}");
    // The live backend's checks kept passing all along (a daemon out of descriptors fails
    // them too), and the service still answers.
    for _ in 0..10 {
        let st = d.status().expect("status");
        assert_eq!(st["services"][0]["backends_up"].as_u64(), Some(1), "b1 stays up with the crowd connected: {st:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(matches!(topo.vip_get(None, TIMEOUT), Ok((200, ref b)) if b == "b1\n"), "the service answers from b1");
    // Scrapes still work once the idle crowd has gone.
    drop(idle);
    let scraped = poll_until(Duration::from_secs(15), Duration::from_millis(100), || {
        topo.client().run_in(|| fj_lb_tests::http::get(listen, "/metrics", TIMEOUT)).ok().filter(|(s, _)| *s == 200)
    });
    assert!(scraped.is_some(), "a scrape after the crowd left");
    d.assert_running();
}

#[test]
fn a_second_daemon_on_the_same_bpffs_directory_is_refused() {
    require_root!();
    let mut topo = Topology::builder().backends(2).build();
    let config = topo.config(&[(1, 100), (2, 100)]);
    let mut first = Daemon::start(&mut topo, &config);
    let prog = fj_lb_tests::xdp_info(topo.lb().ns.name(), "eth0").and_then(|x| x.prog_id);
    // Same bpffs, its own control socket: only the shared directory stands in the way.
    let other_socket = topo.tmp().join("second.sock");
    let second_config = fj_lb_tests::Config::new(&config.bpffs, &other_socket)
        .flow_table_size(65536)
        .maglev_table_size(65537)
        .service(fj_lb_tests::Service::web(&[(1, 100), (2, 100)]));
    let mut second = Daemon::spawn_on(&mut topo, 1, &second_config, None);
    let exit = second.wait_exit(Duration::from_secs(10));
    assert!(exit.is_some_and(|s| !s.success()), "the second daemon must refuse to start ({exit:?}); its log:\n{}", second.log());
    assert!(second.log().contains("another fj-lb is running with bpffs directory"), "it says why:\n{}", second.log());
    assert_eq!(fj_lb_tests::xdp_info(topo.lb().ns.name(), "eth0").and_then(|x| x.prog_id), prog, "the first daemon's program stays in force");
    first.assert_running();
    assert!(matches!(topo.vip_get(None, TIMEOUT), Ok((200, _))), "the first daemon still balances");
    // Each guard removes the shared bpffs directory: the first goes first.
    drop(first);
    drop(second);
}
