//! ECMP end to end: a client behind a router running BIRD 2 with multipath and the L4 hash
//! (`fib_multipath_hash_policy = 1`), LB hosts each running fj-lb with `[announce]` and a BIRD
//! exporting fj-lb's table to the router, nginx backends on the LAN answering the client
//! directly (DSR). Flows survive the loss of an LB host because every host hashes the same
//! 5-tuple onto the same Maglev table; a host that cannot serve withdraws its route. Needs
//! root, a built `fj-lb` and BIRD 2 (`bird2`, installed by `cargo xtask setup`).
//!
//! Every wait is a bounded poll. The bound asserted for a dead host is BGP's own: the router
//! gives up on a session `hold time` after the last keepalive it got.
use std::{
    collections::BTreeSet,
    net::Ipv4Addr,
    time::Duration,
};

use fj_lb_tests::{
    AnnounceSettings, HealthSettings, lb_ip, one_at_a_time, poll_until, require_root,
    backends::TcpAcceptor,
    bird::BgpTimers,
    ecmp::{ANNOUNCE_TABLE, EcmpLab},
};

/// Connections the tests hold open through the VIP.
const CONNS: usize = 30;
/// New connections after each failure.
const NEW_CONNS: usize = 20;
/// The port lb3 checks its backends on (`check = "tcp"`): closing it makes lb3, and lb3 alone,
/// see every backend fail, as a host cut off from its backends would.
const LB3_CHECK_PORT: u16 = 8081;
/// What the tests allow on top of a bound: BIRD's timer and the kernel route update, process
/// scheduling on a shared 2-core machine, the polling.
const MARGIN: Duration = Duration::from_millis(700);
/// Long enough for TCP to retransmit across a hold time's worth of lost packets.
const CONN_TIMEOUT: Duration = Duration::from_secs(15);

fn hops(lbs: &[usize]) -> BTreeSet<Ipv4Addr> {
    lbs.iter().map(|&i| lb_ip(i)).collect()
}

#[test]
fn flows_survive_losing_an_lb_host_and_a_host_without_healthy_backends_withdraws() {
    require_root!();
    let _one = one_at_a_time();
    let timers = BgpTimers::default();
    let http = HealthSettings::http();
    let tcp = HealthSettings::tcp(LB3_CHECK_PORT);
    // lb3 checks another port than the others; each backend listens there until the test
    // closes it.
    let topo = EcmpLab::topology(3, 3);
    let acceptors: Vec<TcpAcceptor> = topo.backends().iter().map(|b| TcpAcceptor::start(b, LB3_CHECK_PORT)).collect();
    let mut lab = EcmpLab::start_on(topo, timers, |i, c| c.health(Some(if i == 3 { &tcp } else { &http })));
    for i in 1..=3 {
        let ok = poll_until(Duration::from_secs(10), Duration::from_millis(50), || lab.announced(i).ok().filter(|(a, _)| *a));
        assert!(ok.is_some(), "lb{i} does not announce the VIP: {:?}", lab.announced(i));
    }

    // 1. Thirty long-lived connections, spread by the router's L4 hash over the hosts.
    let mut conns = lab.open_conns(CONNS, CONN_TIMEOUT);
    let spread = lab.carriers(&[1, 2, 3], &conns);
    assert_eq!(spread.values().sum::<usize>(), CONNS, "every connection is in one host's flow table: {spread:?}");
    assert!(spread.len() >= 2, "{CONNS} connections all went through one LB host: {spread:?}");
    eprintln!("connections per LB host: {spread:?}");

    // 2. The busier of lb1 and lb2 dies: fj-lb and BIRD killed, link down.
    let victim = if spread.get(&1).copied().unwrap_or(0) >= spread.get(&2).copied().unwrap_or(0) { 1 } else { 2 };
    let survivor = 3 - victim;
    lab.crash(victim);
    let bound = Duration::from_secs(timers.hold_time_s.into()) + MARGIN;
    let took = lab.wait_next_hops(&hops(&[survivor, 3]), bound + Duration::from_secs(5));
    let took = took.unwrap_or_else(|| panic!("the router still has {:?} {:?} after lb{victim} died", lab.next_hops(), bound + Duration::from_secs(5)));
    eprintln!("lb{victim} killed: the router withdrew it after {took:?} (hold time {} s)", timers.hold_time_s);
    assert!(took <= bound, "the router took {took:?} to withdraw lb{victim}, more than the hold time {} s + {MARGIN:?}", timers.hold_time_s);

    // Every connection, moved or not, still talks to its backend.
    let topo = &lab.topo;
    topo.client().run_in(|| {
        for (k, (c, b)) in conns.iter_mut().enumerate() {
            let now = topo.served_by(&c.request("/")).unwrap_or_else(|e| panic!("connection {k} after lb{victim} died: {e}"));
            assert_eq!(now, *b, "connection {k} ({}) was served by b{b}, after lb{victim} died by b{now}", c.local_addr());
        }
    });
    let moved = lab.carriers(&[survivor, 3], &conns);
    assert_eq!(moved.values().sum::<usize>(), CONNS, "after the failure every connection is on a live host: {moved:?}");
    // New connections work and spread over the two hosts left.
    let fresh = lab.open_conns(NEW_CONNS, CONN_TIMEOUT);
    let fresh_spread = lab.carriers(&[survivor, 3], &fresh);
    assert_eq!(fresh_spread.values().sum::<usize>(), NEW_CONNS, "{fresh_spread:?}");
    eprintln!("new connections per LB host after lb{victim} died: {fresh_spread:?}");

    // 3. lb3 loses every backend (its checks fail; the others' pass): it withdraws, and the
    // router stops sending it anything.
    drop(acceptors);
    let detect = tcp.detection_bound() + MARGIN;
    let took = lab.wait_next_hops(&hops(&[survivor]), detect + Duration::from_secs(5));
    let took = took.unwrap_or_else(|| panic!("the router still has {:?} after lb3 lost its backends: {:?}", lab.next_hops(), lab.announced(3)));
    eprintln!("lb3 lost its backends: the router withdrew it after {took:?} (health detection bound {:?})", tcp.detection_bound());
    assert!(took <= detect, "withdrawing lb3 took {took:?}, more than the detection bound {:?} + {MARGIN:?}", tcp.detection_bound());
    let (announced, reason) = lab.announced(3).expect("lb3's status");
    assert!(!announced && reason.contains("no service on this VIP has a healthy backend"), "lb3: {announced} {reason:?}");
    assert!(lab.announced(survivor).expect("status").0, "lb{survivor} still announces");
    let before = lab.web_packets(3);
    let last = lab.open_conns(NEW_CONNS, CONN_TIMEOUT);
    assert_eq!(lab.web_packets(3), before, "the router still sends new connections to lb3");
    assert_eq!(lab.carriers(&[survivor], &last).values().sum::<usize>(), NEW_CONNS);
}

#[test]
fn clean_stop_withdraws_a_crash_keeps_the_route_and_a_restart_adopts_it() {
    require_root!();
    let _one = one_at_a_time();
    let http = HealthSettings::http();
    let mut lab = EcmpLab::start(2, 2, BgpTimers::default(), |_, c| c.health(Some(&http)));
    let both = hops(&[1, 2]);
    let route_in_table = |lab: &EcmpLab, i: usize| {
        lab.topo.lb_n(i).ns.ip(&["route", "show", "table", &ANNOUNCE_TABLE.to_string()]).contains("10.0.0.100 dev lo proto 250")
    };
    assert!(route_in_table(&lab, 2));

    // A crash of fj-lb alone (BIRD and the link stay): the route stays, so does the next hop,
    // and the pinned XDP link keeps forwarding.
    let config = lab.topo.lb_config(2, &[(1, 100), (2, 100)], None).announce(Some(&AnnounceSettings::new(ANNOUNCE_TABLE))).health(Some(&http));
    lab.daemons[1].as_mut().expect("lb2's daemon").crash_keeping_pins();
    std::thread::sleep(Duration::from_secs(1));
    assert!(route_in_table(&lab, 2), "the crashed daemon's route stays");
    assert_eq!(lab.next_hops(), both);
    // A restarted daemon adopts the route: it never goes while the checks settle.
    let old = lab.daemons[1].take();
    let d = fj_lb_tests::Daemon::start_on(&mut lab.topo, 2, &config, fj_lb_tests::Readiness::Attached);
    drop(old);
    let adopted = poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
        assert!(route_in_table(&lab, 2), "the route went while the restarted daemon started:\n{}", d.log());
        d.log().contains("adopting the announce routes").then_some(())
    });
    assert!(adopted.is_some(), "the restarted daemon did not adopt the route:\n{}", d.log());
    lab.daemons[1] = Some(d);
    let ok = poll_until(Duration::from_secs(10), Duration::from_millis(20), || lab.announced(2).ok().filter(|(a, r)| *a && r.starts_with("serving")));
    assert!(ok.is_some(), "lb2 after its restart: {:?}", lab.announced(2));
    assert_eq!(lab.next_hops(), both);

    // A reload without [announce] withdraws; one with it announces again.
    let without = config.clone().announce(None);
    lab.daemon(2).reload_with(&without.render());
    assert!(lab.wait_next_hops(&hops(&[1]), Duration::from_secs(5)).is_some(), "reload without [announce]: {:?}", lab.next_hops());
    assert!(!route_in_table(&lab, 2));
    lab.daemon(2).reload_with(&config.render());
    assert!(lab.wait_next_hops(&both, Duration::from_secs(5)).is_some(), "reload with [announce]: {:?}", lab.next_hops());

    // A clean stop withdraws at once: no hold time to wait for, BGP stays up.
    let mut d = lab.daemons[1].take().expect("lb2's daemon");
    d.signal(libc::SIGTERM);
    let took = lab.wait_next_hops(&hops(&[1]), Duration::from_secs(2));
    assert!(took.is_some(), "a clean stop of lb2 did not withdraw it: {:?}", lab.next_hops());
    assert!(d.wait_exit(Duration::from_secs(10)).is_some_and(|s| s.success()), "fj-lb on lb2 did not stop cleanly:\n{}", d.log());
    assert!(!route_in_table(&lab, 2), "the clean stop left its route");
    eprintln!("clean stop of lb2: withdrawn at the router after {:?}", took.unwrap());
}
