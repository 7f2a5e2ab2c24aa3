//! Several VRRP instances in one daemon: two virtual routers across the two LB hosts, each
//! master on one (active/active: both hosts carry traffic), each failing over on its own; and a
//! sync group whose members fault and move together.
//!
//! The lab has a second VIP, 10.0.0.101, on every backend's lo (direct return) and a service
//! "web2" on it. Needs root, a built `fj-lb` (`FJ_LB_BIN`) and nginx. Every wait is a bounded
//! poll; failover bounds are RFC 5798's plus [`MARGIN`].
use std::{
    net::{Ipv4Addr, SocketAddrV4},
    time::{Duration, Instant},
};

use fj_lb_tests::{
    Config, Daemon, HTTP_PORT, Host, Readiness, Service, Topology, VIP, VrrpSettings, one_at_a_time, poll_until,
    require_root,
    vrrp::wait_instance,
};

const VIP2: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 101);
const BACKENDS: [(usize, u32); 2] = [(1, 100), (2, 100)];
const MARGIN: Duration = Duration::from_millis(100);

/// A two-LB lab whose backends also serve VIP2.
fn lab() -> Topology {
    let topo = Topology::builder().lbs(2).backends(2).build();
    for b in topo.backends() {
        b.ns.ip(&["addr", "add", &format!("{VIP2}/32"), "dev", "lo"]);
    }
    topo
}

/// Instance A (VRID 51, the VIP) and B (VRID 52, VIP2) at the given priorities.
fn instances(a: u8, b: u8) -> (VrrpSettings, VrrpSettings) {
    (VrrpSettings::bare(51, a, "10.0.0.100/24").name("A"), VrrpSettings::bare(52, b, "10.0.0.101/24").name("B"))
}

/// LB `lb`'s config: "web" on the VIP, "web2" on VIP2, both over b1 and b2; the instances.
fn config(topo: &Topology, lb: usize, a: VrrpSettings, b: VrrpSettings) -> Config {
    let web2 = Service { vip: std::net::IpAddr::V4(VIP2), ..Service::new("web2", HTTP_PORT, "tcp").weighted(&BACKENDS) };
    topo.lb_config(lb, &BACKENDS, None).service(web2).vrrp_instance(a).vrrp_instance(b)
}

fn start(topo: &mut Topology, lb: usize, c: &Config) -> Daemon {
    Daemon::start_on(topo, lb, c, Readiness::Attached)
}

fn wait(d: &Daemon, name: &str, state: &str, host: &Host, vip: Ipv4Addr, timeout: Duration) -> Instant {
    wait_instance(d, name, state, host, vip, timeout).unwrap_or_else(|| {
        panic!("{name} on {} is not {state} (with its address as such) within {timeout:?}: {:?}", d.host(), d.vrrp_instances_fast())
    })
}

/// Polls until the client gets a 200 from a backend through `vip`, and its ARP entry for it
/// is `mac`: the traffic of that VIP goes through that host.
fn wait_served_through(topo: &Topology, vip: Ipv4Addr, mac: &str, timeout: Duration) {
    let addr = SocketAddrV4::new(vip, HTTP_PORT);
    let mut last = String::new();
    let ok = poll_until(timeout, Duration::from_millis(20), || {
        let answer = topo.client_get(addr, "/", Duration::from_secs(1));
        let arp = topo.client().neighbour_mac(vip);
        match (topo.served_by(&answer), arp.as_deref() == Some(mac)) {
            (Ok(_), true) => Some(()),
            (r, _) => {
                last = format!("{r:?}, ARP {arp:?}");
                None
            }
        }
    });
    assert!(ok.is_some(), "{vip} not served through {mac} within {timeout:?}: {last}");
}

#[test]
fn two_instances_active_active_with_failover_of_each() {
    require_root!();
    let _serial = one_at_a_time();
    let mut topo = lab();
    let (a1, b1) = instances(150, 100);
    let (a2, b2) = instances(100, 150);
    let b1_down = b1.master_down_interval();
    let c1 = config(&topo, 1, a1, b1);
    let c2 = config(&topo, 2, a2.clone(), b2);
    let d1 = start(&mut topo, 1, &c1);
    let d2 = start(&mut topo, 2, &c2);
    let (h1, h2) = (topo.lb_n(1), topo.lb_n(2));

    // Each host master of one instance, backup of the other.
    wait(&d1, "A", "master", h1, VIP, Duration::from_secs(5));
    wait(&d2, "B", "master", h2, VIP2, Duration::from_secs(5));
    wait(&d1, "B", "backup", h1, VIP2, Duration::from_secs(2));
    wait(&d2, "A", "backup", h2, VIP, Duration::from_secs(2));
    let (mac1, mac2) = (h1.mac(), h2.mac());
    wait_served_through(&topo, VIP, &mac1, Duration::from_secs(5));
    wait_served_through(&topo, VIP2, &mac2, Duration::from_secs(5));
    let table = d1.cli(&["status"]).expect("fj-lb status");
    println!("{table}");
    assert!(table.contains("VRRP A: master (vrid 51") && table.contains("VRRP B: backup (vrid 52"), "{table}");
    let st = d2.status().expect("status --json");
    assert_eq!(st["vrrp"]["name"], "A", "`vrrp` is the first instance: {st}");
    let names: Vec<&str> = st["vrrp_instances"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["A", "B"]);
    for d in [&d1, &d2] {
        for v in d.vrrp_instances_fast().unwrap() {
            assert!(v.rejected.is_empty(), "{}'s {} rejected adverts (its sibling's?): {v:?}", d.host(), v.name);
        }
    }

    // A fails over: lb1 stops, lb2 takes A within its skew time and keeps B.
    let t0 = Instant::now();
    drop(d1);
    let took = wait(&d2, "A", "master", h2, VIP, Duration::from_secs(5)) - t0;
    println!("A: lb1 stopped, lb2 master of A after {took:?}");
    assert!(took <= a2.skew_time() + MARGIN, "A took {took:?} to move after lb1's priority 0 (skew {:?})", a2.skew_time());
    assert!(d2.vrrp_instance_fast("B").unwrap().is_master());
    wait_served_through(&topo, VIP, &mac2, Duration::from_secs(2));
    wait_served_through(&topo, VIP2, &mac2, Duration::from_secs(2));

    // lb1 comes back and takes A again (preemption); B stays on lb2.
    let d1 = start(&mut topo, 1, &c1);
    let (h1, h2) = (topo.lb_n(1), topo.lb_n(2));
    wait(&d1, "A", "master", h1, VIP, Duration::from_secs(3));
    wait(&d2, "A", "backup", h2, VIP, Duration::from_secs(2));
    wait(&d1, "B", "backup", h1, VIP2, Duration::from_secs(1));
    assert!(d2.vrrp_instance_fast("B").unwrap().is_master());
    wait_served_through(&topo, VIP, &mac1, Duration::from_secs(2));

    // B fails over: lb2 dies (SIGKILL, link down); lb1 takes B in its master down interval.
    let mut d2 = d2;
    let t0 = Instant::now();
    d2.kill();
    h2.set_eth0(false);
    let took = wait(&d1, "B", "master", h1, VIP2, Duration::from_secs(5)) - t0;
    println!("B: lb2 killed, lb1 master of B after {took:?} (its master down interval {b1_down:?})");
    assert!(took <= b1_down + MARGIN, "B took {took:?}; allowed {:?}", b1_down + MARGIN);
    assert!(d1.vrrp_instance_fast("A").unwrap().is_master(), "A left lb1 when B arrived");
    wait_served_through(&topo, VIP2, &mac1, Duration::from_secs(2));
    wait_served_through(&topo, VIP, &mac1, Duration::from_secs(2));
}

/// A veth pair `trk0`/`trk1` in `host`'s namespace: `trk0` loses its carrier when `trk1` goes
/// down, a tracked interface to fail on demand.
fn tracked_link(host: &Host) {
    host.ns.ip(&["link", "add", "trk0", "type", "veth", "peer", "name", "trk1"]);
    host.ns.ip(&["link", "set", "trk0", "up"]);
    host.ns.ip(&["link", "set", "trk1", "up"]);
}

#[test]
fn a_sync_group_faults_and_moves_together() {
    require_root!();
    let _serial = one_at_a_time();
    let mut topo = lab();
    tracked_link(topo.lb_n(1));
    let (mut a1, b1) = instances(150, 150);
    // Weight 0: a tracked interface down is FAULT, not a lower priority.
    a1.track_interfaces = vec!["trk0".into()];
    a1.track_priority_delta = Some(0);
    let (a2, b2) = instances(100, 100);
    let c1 = config(&topo, 1, a1, b1).sync_group("G", &["A", "B"]);
    let c2 = config(&topo, 2, a2, b2).sync_group("G", &["A", "B"]);
    let d1 = start(&mut topo, 1, &c1);
    let d2 = start(&mut topo, 2, &c2);
    let (h1, h2) = (topo.lb_n(1), topo.lb_n(2));
    wait(&d1, "A", "master", h1, VIP, Duration::from_secs(5));
    wait(&d1, "B", "master", h1, VIP2, Duration::from_secs(2));
    wait(&d2, "A", "backup", h2, VIP, Duration::from_secs(2));
    wait(&d2, "B", "backup", h2, VIP2, Duration::from_secs(2));

    // A's tracked link fails: A is in fault, B is held in fault with it, both move to lb2.
    h1.ns.ip(&["link", "set", "trk1", "down"]);
    wait(&d1, "A", "fault", h1, VIP, Duration::from_secs(3));
    wait(&d1, "B", "fault", h1, VIP2, Duration::from_secs(1));
    wait(&d2, "A", "master", h2, VIP, Duration::from_secs(2));
    wait(&d2, "B", "master", h2, VIP2, Duration::from_secs(2));
    let a = d1.vrrp_instance_fast("A").unwrap();
    let st = d1.status().unwrap();
    let b_reason = st["vrrp_instances"][1]["last_transition_reason"].as_str().unwrap_or_default().to_string();
    println!("lb1 A: {} ({:?}); B: {b_reason}", a.state, st["vrrp_instances"][0]["last_transition_reason"]);
    assert!(b_reason.contains("sync group"), "B's reason: {b_reason}");
    let table = d1.cli(&["status"]).unwrap();
    assert!(table.contains("VRRP A: fault") && table.contains("sync group G"), "{table}");

    // The link comes back: both leave fault and, preempting together, return to lb1.
    h1.ns.ip(&["link", "set", "trk1", "up"]);
    wait(&d1, "A", "master", h1, VIP, Duration::from_secs(4));
    wait(&d1, "B", "master", h1, VIP2, Duration::from_secs(1));
    wait(&d2, "A", "backup", h2, VIP, Duration::from_secs(2));
    wait(&d2, "B", "backup", h2, VIP2, Duration::from_secs(2));
    // And they stay so.
    let end = Instant::now() + Duration::from_secs(1);
    while Instant::now() < end {
        let states: Vec<String> = d1.vrrp_instances_fast().unwrap().into_iter().map(|v| v.state).collect();
        assert_eq!(states, ["master", "master"], "lb1's group split");
        std::thread::sleep(Duration::from_millis(50));
    }
}
