//! VRRP with unicast peers, on a segment whose switch drops multicast VRRP (nftables in the
//! bridge family, in the switch namespace): the network where keepalived users end up with two
//! masters. Two fj-lb hosts with unicast peers elect one master there, and fj-lb and keepalived
//! (`unicast_peer`) follow each other both ways, tshark checking that every advert is unicast.
//!
//! Needs root, a built `fj-lb` (`FJ_LB_BIN`), keepalived, tshark and nft. Every wait is a
//! bounded poll; the failover bounds are RFC 5798's (see `vrrp.rs`).
use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use fj_lb_tests::{
    Daemon, Readiness, Topology, VIP, VrrpSettings,
    daemon::{Keepalived, KeepalivedSettings},
    lb_ip, one_at_a_time, poll_until, require_root,
    vrrp::{Capture, FAST_POLL, checksum_good, drop_multicast_vrrp, multicast_vrrp_dropped, wait_backup_of, wait_master},
};

const BACKENDS: [(usize, u32); 2] = [(1, 100), (2, 100)];
/// What the tests allow on top of RFC 5798's intervals: scheduling, rtnetlink, polling.
const MARGIN: Duration = Duration::from_millis(100);

fn start(topo: &mut Topology, lb: usize, v: &VrrpSettings) -> Daemon {
    let config = topo.lb_config(lb, &BACKENDS, Some(v));
    Daemon::start_on(topo, lb, &config, Readiness::Attached)
}

/// The same peer list on both hosts, as an operator would deploy it: each skips itself.
fn unicast(priority: u8) -> VrrpSettings {
    VrrpSettings::new(priority).unicast(&[lb_ip(1), lb_ip(2)])
}

/// Which of the two daemons say master, checked for `hold` every 50 ms; panics if it is not
/// exactly one, or if the VIP is not on that one host alone.
fn assert_one_master(topo: &Topology, d: [&Daemon; 2], hold: Duration) -> usize {
    let end = Instant::now() + hold;
    let mut master = None;
    loop {
        let states: Vec<String> = d.iter().map(|d| d.vrrp_status().map(|s| s.state).unwrap_or_else(|e| e)).collect();
        let masters: Vec<usize> = (0..2).filter(|&i| states[i] == "master").map(|i| i + 1).collect();
        assert_eq!(masters.len(), 1, "not exactly one master: lb1 {}, lb2 {}", states[0], states[1]);
        let m = masters[0];
        assert!(master.is_none_or(|x| x == m), "the master moved from lb{} to lb{m}", master.unwrap_or(0));
        master = Some(m);
        assert!(topo.lb_n(m).has_address(VIP), "master lb{m} lacks the VIP");
        assert!(!topo.lb_n(3 - m).has_address(VIP), "backup lb{} holds the VIP too", 3 - m);
        if Instant::now() >= end {
            return m;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn unicast_peers_elect_one_master_where_multicast_is_dropped() {
    require_root!();
    let _serial = one_at_a_time();
    let mut topo = Topology::builder().lbs(2).backends(2).build();
    drop_multicast_vrrp(&topo);

    // The control: with multicast the two hosts never hear each other, so both are master.
    let (m1, m2) = (start(&mut topo, 1, &VrrpSettings::new(150)), start(&mut topo, 2, &VrrpSettings::new(100)));
    let both = poll_until(Duration::from_secs(5), Duration::from_millis(20), || {
        let (a, b) = (m1.vrrp_status_fast().ok()?, m2.vrrp_status_fast().ok()?);
        (a.is_master() && b.is_master()).then_some(())
    });
    assert!(both.is_some(), "the switch does not drop multicast VRRP: lb1 {:?}, lb2 {:?}", m1.vrrp_status(), m2.vrrp_status());
    assert!(multicast_vrrp_dropped(&topo) > 0, "the nftables rule dropped nothing");
    println!("multicast VRRP dropped by the switch: both hosts master (split brain), {} adverts dropped", multicast_vrrp_dropped(&topo));
    drop(m1);
    drop(m2);

    // Unicast peers: one master, the other its backup, for several seconds.
    let (v1, v2) = (unicast(150), unicast(100));
    let d1 = start(&mut topo, 1, &v1);
    assert!(wait_master(&d1, topo.lb_n(1), Duration::from_secs(5)).is_some(), "lb1 did not become master: {:?}", d1.vrrp_status());
    let mut d2 = start(&mut topo, 2, &v2);
    let s2 = wait_backup_of(&d2, lb_ip(1), Duration::from_secs(5))
        .unwrap_or_else(|| panic!("lb2 did not become lb1's backup over unicast: {:?}", d2.vrrp_status()));
    assert!(s2.adverts_received > 0, "{s2:?}");
    assert_eq!(assert_one_master(&topo, [&d1, &d2], Duration::from_secs(2)), 1);
    topo.wait_vip_answers(Duration::from_secs(5));
    let (r1, r2) = (d1.vrrp_status().unwrap().rejected, d2.vrrp_status().unwrap().rejected);
    assert!(r1.is_empty() && r2.is_empty(), "rejected: lb1 {r1:?}, lb2 {r2:?}");

    // The master dies: the backup takes over in its master down interval, and stays the one.
    drop(d1);
    let t0 = Instant::now();
    let took = wait_master(&d2, topo.lb_n(2), Duration::from_secs(5))
        .unwrap_or_else(|| panic!("lb2 did not take over: {:?}", d2.vrrp_status()))
        - t0;
    println!("unicast: lb1 stopped, lb2 master after {took:?}");
    assert!(took <= v2.skew_time() + MARGIN, "lb2 took {took:?} after lb1's priority 0 (skew {:?})", v2.skew_time());
    // lb1 comes back and preempts: again exactly one master.
    let d1 = start(&mut topo, 1, &v1);
    assert!(wait_master(&d1, topo.lb_n(1), Duration::from_secs(3)).is_some(), "lb1 did not preempt: {:?}", d1.vrrp_status());
    assert!(wait_backup_of(&d2, lb_ip(1), Duration::from_secs(2)).is_some(), "lb2 did not step back: {:?}", d2.vrrp_status());
    assert_eq!(assert_one_master(&topo, [&d1, &d2], Duration::from_secs(1)), 1);
    d2.assert_running();
}

#[test]
fn interoperates_with_keepalived_unicast_peers_both_ways() {
    require_root!();
    let _serial = one_at_a_time();
    let mut topo = Topology::builder().lbs(2).backends(2).build();
    // Multicast could not carry it: only unicast adverts get through.
    drop_multicast_vrrp(&topo);
    // On lb1's switch port: everything lb1 sends and everything sent to it.
    let port = topo.lb_n(1).port.clone();
    let mut capture = Capture::start(topo.switch(), &port, topo.tmp(), "unicast");
    let v1 = unicast(150);
    let ka = |priority| KeepalivedSettings::new(priority).unicast(lb_ip(2), &[lb_ip(1)]);

    // fj-lb (150) master, keepalived (100) backup: keepalived follows fj-lb's unicast adverts.
    let mut d1 = start(&mut topo, 1, &v1);
    assert!(wait_master(&d1, topo.lb_n(1), Duration::from_secs(5)).is_some(), "fj-lb alone did not become master");
    // lb2 balances with fj-lb (no VRRP) whatever the VIP brings while keepalived holds it there.
    let plain = topo.lb_config(2, &BACKENDS, None);
    let _balancer2 = Daemon::start_on(&mut topo, 2, &plain, Readiness::Attached);
    let mut k = Keepalived::start(&mut topo, 2, &ka(100));
    let end = Instant::now() + Duration::from_secs(1);
    while Instant::now() < end {
        assert!(d1.vrrp_status().unwrap().is_master(), "fj-lb lost mastership to keepalived (100)");
        assert!(!topo.lb_n(2).has_address(VIP), "keepalived took the VIP: it does not hear fj-lb's unicast adverts");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(k.states(), ["BACKUP"], "keepalived should stay backup; its log:\n{}", k.log());
    topo.wait_vip_answers(Duration::from_secs(5));

    // fj-lb stops: its priority 0 reaches keepalived, which takes over within its skew time.
    let t0 = Instant::now();
    d1.signal(libc::SIGTERM);
    let took = poll_until(Duration::from_secs(5), FAST_POLL, || topo.lb_n(2).has_address(VIP).then(|| t0.elapsed()))
        .unwrap_or_else(|| panic!("keepalived did not take the VIP after fj-lb's SIGTERM; its log:\n{}", k.log()));
    let skew100 = VrrpSettings::new(100).skew_time();
    println!("fj-lb (SIGTERM) -> keepalived over unicast: {took:?} (skew {skew100:?})");
    assert!(took <= skew100 + MARGIN, "keepalived took {took:?}; allowed {:?}", skew100 + MARGIN);
    assert!(d1.wait_exit(Duration::from_secs(10)).is_some_and(|s| s.success()), "fj-lb did not exit cleanly");
    drop(d1);

    // keepalived master; fj-lb (150) comes back as its backup first, hearing its unicast
    // adverts, then preempts it.
    let d1 = start(&mut topo, 1, &v1);
    assert!(wait_master(&d1, topo.lb_n(1), Duration::from_secs(3)).is_some(), "fj-lb (150) did not preempt keepalived (100)");
    let yielded = poll_until(Duration::from_secs(2), Duration::from_millis(10), || {
        (k.state().as_deref() == Some("BACKUP") && !topo.lb_n(2).has_address(VIP)).then_some(())
    });
    assert!(yielded.is_some(), "keepalived did not yield to fj-lb; its log:\n{}", k.log());
    let s1 = d1.vrrp_status().unwrap();
    assert!(s1.adverts_received > 0, "fj-lb accepted no unicast advert of keepalived's: {s1:?}");

    // keepalived at 200 preempts fj-lb, which stays its backup; then keepalived stops and
    // fj-lb takes over within its skew time.
    k.stop(Duration::from_secs(10));
    let first_log = k.log();
    drop(k);
    let mut k = Keepalived::start(&mut topo, 2, &ka(200));
    let s1 = wait_backup_of(&d1, lb_ip(2), Duration::from_secs(3))
        .unwrap_or_else(|| panic!("fj-lb did not become keepalived's (200) backup: {:?}; keepalived:\n{}", d1.vrrp_status(), k.log()));
    assert_eq!(s1.master_priority, Some(200));
    let end = Instant::now() + Duration::from_secs(1);
    while Instant::now() < end {
        assert!(d1.vrrp_status().unwrap().is_backup(), "fj-lb (150) did not stay keepalived's backup");
        std::thread::sleep(Duration::from_millis(50));
    }
    let t0 = Instant::now();
    k.signal(libc::SIGTERM);
    let took = wait_master(&d1, topo.lb_n(1), Duration::from_secs(5))
        .unwrap_or_else(|| panic!("fj-lb did not take over after keepalived's SIGTERM: {:?}", d1.vrrp_status()))
        - t0;
    println!("keepalived (SIGTERM) -> fj-lb over unicast: {took:?} (skew {:?})", v1.skew_time());
    assert!(took <= v1.skew_time() + MARGIN, "fj-lb took {took:?}; allowed {:?}", v1.skew_time() + MARGIN);
    let s1 = d1.vrrp_status().unwrap();
    assert!(s1.rejected.is_empty(), "fj-lb rejected keepalived's unicast adverts: {s1:?}");
    k.stop(Duration::from_secs(10));
    let logs = format!("{first_log}{}", k.log());
    drop(k);
    drop(d1);

    // On the wire: every advert unicast, from one host to the other, TTL 255, good checksums.
    capture.stop();
    let packets = capture.dissect(&["vrrp.v3_checksum_as_in_v2:FALSE"]);
    let from = |src: usize, dst: usize| -> Vec<&BTreeMap<String, String>> {
        packets.iter().filter(|p| p["ip.src"] == lb_ip(src).to_string() && p["ip.dst"] == lb_ip(dst).to_string()).collect()
    };
    let (fj, kad) = (from(1, 2), from(2, 1));
    println!("captured {} VRRP packets on lb1's port: {} fj-lb -> lb2, {} keepalived -> lb1", packets.len(), fj.len(), kad.len());
    assert_eq!(fj.len() + kad.len(), packets.len(), "an advert went elsewhere than to the peer: {packets:#?}");
    assert!(fj.len() >= 10 && kad.len() >= 10, "too few unicast adverts: fj-lb {}, keepalived {}", fj.len(), kad.len());
    for p in fj.iter().chain(kad.iter()) {
        assert_eq!((p["vrrp.version"].as_str(), p["vrrp.virt_rtr_id"].as_str(), p["ip.ttl"].as_str()), ("3", "51", "255"), "{p:?}");
        assert_eq!(p["vrrp.ip_addr"], VIP.to_string(), "{p:?}");
        assert!(checksum_good(p), "tshark finds a bad checksum: {p:?}");
    }
    let prios = |v: &[&BTreeMap<String, String>]| {
        let mut s: Vec<String> = v.iter().map(|p| p["vrrp.prio"].clone()).collect();
        s.sort();
        s.dedup();
        s
    };
    assert_eq!(prios(&fj), ["0", "150"], "fj-lb's priorities");
    assert!(prios(&kad).contains(&"0".to_string()), "keepalived's priorities: {:?}", prios(&kad));
    for complaint in ["invalid", "Invalid", "mismatch", "checksum", "TTL", "Expected", "not a unicast peer"] {
        assert!(!logs.lines().any(|l| l.contains(complaint)), "keepalived complained ({complaint:?}):\n{logs}");
    }
}
