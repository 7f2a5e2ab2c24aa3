//! VRRP modes beyond the IPv4 basics of `vrrp.rs`, on the two-LB lab (`lb1` priority 150,
//! `lb2` priority 100, 100 ms adverts, both on one bridge with the client):
//!
//! - an IPv6 virtual address: adverts to ff02::12 from each host's link-local address with hop
//!   limit 255, the VIP added without DAD, unsolicited neighbour advertisements (override flag)
//!   on takeover that rewrite a client's existing neighbour entry with no traffic from it;
//! - the virtual MAC (`use_virtual_mac`): the VIP lives on the macvlan `fjvrrp51`
//!   (00:00:5e:00:01:33), up only on the master, so a client's ARP entry for the VIP never
//!   changes across a failover; a clean stop removes the macvlan and restores `arp_ignore`.
//!
//! Needs root, a built `fj-lb` (`FJ_LB_BIN`), nginx and tshark. Every wait is a bounded poll;
//! the failover bound is RFC 5798's Master_Down_Interval (3 × interval + (256 − priority) ×
//! interval / 256) plus [`MARGIN`].
use std::{
    collections::BTreeMap,
    net::{Ipv6Addr, UdpSocket},
    process::Command,
    time::{Duration, Instant},
};

use fj_lb_tests::{
    ChildGuard, Config, Daemon, Host, Readiness, Topology, VIP, VrrpSettings, lb_ip, ns::try_run, one_at_a_time,
    poll_until, require_root,
};

// ---- helpers ----------------------------------------------------------------------------

/// What the tests allow on top of the master down interval: scheduling, rtnetlink, polling.
const MARGIN: Duration = Duration::from_millis(100);
/// How often the failover loops look at status and addresses.
const FAST_POLL: Duration = Duration::from_millis(2);
const BACKENDS: [(usize, u32); 2] = [(1, 100), (2, 100)];

/// `ip -n NS -j ARGS...`, parsed; `Null` when the command fails (e.g. no such device).
fn ip_json(ns: &str, args: &[&str]) -> serde_json::Value {
    match try_run(Command::new("ip").arg("-n").arg(ns).arg("-j").args(args)) {
        Ok(out) if !out.trim().is_empty() => serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("`ip -j {}` in {ns} printed no JSON ({e}): {out}", args.join(" "))),
        _ => serde_json::Value::Null,
    }
}

/// The `addr_info` entries of `dev` on `host` (empty if the device does not exist).
fn addr_info(host: &Host, dev: &str) -> Vec<serde_json::Value> {
    ip_json(host.ns.name(), &["addr", "show", "dev", dev])
        .pointer("/0/addr_info")
        .and_then(|a| a.as_array())
        .cloned()
        .unwrap_or_default()
}

/// The `addr_info` entry of `addr` on `dev` of `host`, if it holds it.
fn address(host: &Host, dev: &str, addr: &str) -> Option<serde_json::Value> {
    addr_info(host, dev).into_iter().find(|a| a["local"].as_str() == Some(addr))
}

fn holds(host: &Host, dev: &str, addr: &str) -> bool {
    address(host, dev, addr).is_some()
}

/// `ip -j link show dev DEV` of `host`: `None` if there is no such device.
fn link(host: &Host, dev: &str) -> Option<serde_json::Value> {
    ip_json(host.ns.name(), &["link", "show", "dev", dev]).get(0).cloned()
}

/// Whether `dev` is administratively up (the UP flag).
fn link_up(l: &serde_json::Value) -> bool {
    l["flags"].as_array().is_some_and(|f| f.iter().any(|x| x == "UP"))
}

/// The link-local address of `host`'s eth0, once it has finished duplicate address detection.
fn usable_link_local(host: &Host) -> Option<String> {
    addr_info(host, "eth0").into_iter().find_map(|a| {
        let local = a["local"].as_str()?;
        let done = a["tentative"].as_bool() != Some(true) && a["dadfailed"].as_bool() != Some(true);
        (a["family"] == "inet6" && a["scope"] == "link" && local.starts_with("fe80") && done).then(|| local.to_string())
    })
}

/// The client's neighbour entry for `addr` on eth0: (lladdr, states), if it has one with a
/// link-layer address.
fn neighbour(client: &Host, addr: &str) -> Option<(String, Vec<String>)> {
    let v = ip_json(client.ns.name(), &["neigh", "show", addr, "dev", "eth0"]);
    let e = v.get(0)?;
    let mac = e["lladdr"].as_str()?.to_string();
    let states = e["state"]
        .as_array()
        .map(|s| s.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    Some((mac, states))
}

/// `vrrp.<field>` of `fj-lb --socket S status --json`, as an operator's script would read it.
fn cli_vrrp(d: &Daemon, field: &str) -> serde_json::Value {
    let s = d.status().unwrap_or_else(|e| panic!("fj-lb status --json on {}: {e}", d.host()));
    s["vrrp"][field].clone()
}

/// Polls until `d` is master and `dev` on `host` holds `addr`; when that was seen.
fn wait_master(d: &Daemon, host: &Host, dev: &str, addr: &str, timeout: Duration) -> Option<Instant> {
    poll_until(timeout, FAST_POLL, || {
        let s = d.vrrp_status_fast().ok()?;
        (s.is_master() && holds(host, dev, addr)).then(Instant::now)
    })
}

/// Polls until `d` is a backup naming `master` as the master.
fn wait_backup_of(d: &Daemon, master: &str, timeout: Duration) -> bool {
    poll_until(timeout, Duration::from_millis(10), || {
        let s = d.vrrp_status_fast().ok()?;
        (s.is_backup() && s.master.as_deref() == Some(master)).then_some(())
    })
    .is_some()
}

/// A live tshark on a host's eth0 printing one line of `fields` per packet (flushed at once,
/// `-l`) into its log: poll [`LiveCapture::packets`] for what must have been seen. (A file
/// capture stopped with SIGINT loses the packets still in the kernel's capture buffer.)
struct LiveCapture {
    child: ChildGuard,
    fields: Vec<String>,
}

impl LiveCapture {
    /// Captures what the capture filter `filter` and the display filter `display` let
    /// through; returns once tshark is capturing.
    fn start(topo: &Topology, host: &Host, label: &str, filter: &str, display: &str, fields: &[&str]) -> LiveCapture {
        let log = topo.tmp().join(format!("{label}.tshark.log"));
        let mut args: Vec<String> =
            ["-n", "-l", "-i", "eth0", "-f", filter, "-Y", display, "-T", "fields", "-E", "separator=|"]
                .iter()
                .map(|a| a.to_string())
                .collect();
        for f in fields {
            args.push("-e".into());
            args.push(f.to_string());
        }
        let mut child = host.ns.spawn(&format!("tshark {label}"), "tshark", &args, &log);
        let ok = poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
            child.assert_running();
            child.log().contains("Capturing on").then_some(())
        });
        assert!(ok.is_some(), "tshark did not start capturing within 10 s (is it installed?): {}", child.log());
        LiveCapture { child, fields: fields.iter().map(|f| f.to_string()).collect() }
    }

    /// Every packet printed so far: field → value.
    fn packets(&self) -> Vec<BTreeMap<String, String>> {
        let n = self.fields.len();
        self.child
            .log()
            .lines()
            .filter(|l| l.matches('|').count() == n - 1)
            .map(|l| self.fields.iter().cloned().zip(l.split('|').map(str::to_string)).collect())
            .collect()
    }

    /// Polls until `enough` holds for the packets seen; them, or `None` after `timeout`.
    fn wait_for(
        &self,
        timeout: Duration,
        mut enough: impl FnMut(&[BTreeMap<String, String>]) -> bool,
    ) -> Option<Vec<BTreeMap<String, String>>> {
        poll_until(timeout, Duration::from_millis(50), || {
            let p = self.packets();
            enough(&p).then_some(p)
        })
    }
}

/// tshark's checksum status: 1 is "Good" (0 bad, 2 unverified).
fn checksum_good(p: &BTreeMap<String, String>) -> bool {
    matches!(p.get("vrrp.checksum.status").map(String::as_str), Some("1") | Some("Good"))
}

/// tshark's booleans print as 1/0 or True/False depending on the version.
fn truthy(v: Option<&String>) -> bool {
    matches!(v.map(String::as_str), Some("1") | Some("True") | Some("true"))
}

// ---- IPv6 -------------------------------------------------------------------------------

const VIP6: &str = "2001:db8:0:1::100";
const CLIENT6: &str = "2001:db8:0:1::2";
const VRID6: u8 = 52;
const CAPTURE_FIELDS: [&str; 15] = [
    "frame.time_relative",
    "eth.src",
    "ipv6.src",
    "ipv6.dst",
    "ipv6.hlim",
    "vrrp.version",
    "vrrp.virt_rtr_id",
    "vrrp.prio",
    "vrrp.ipv6_addr",
    "vrrp.checksum.status",
    "icmpv6.type",
    "icmpv6.nd.na.target_address",
    "icmpv6.nd.na.flag.s",
    "icmpv6.nd.na.flag.o",
    "icmpv6.opt.linkaddr",
];

/// The `[vrrp]` table of the IPv6 test: VRID 52, 100 ms adverts, one IPv6 virtual address,
/// everything else at the daemon's defaults.
fn ipv6_vrrp(priority: u8) -> VrrpSettings {
    VrrpSettings::bare(VRID6, priority, &format!("{VIP6}/64"))
}

/// A VRRP-only config: no `[[service]]`, one IPv6 virtual address.
fn ipv6_config(topo: &Topology, lb: usize, priority: u8) -> Config {
    Config::new(&topo.bpffs_dir_of(lb), &topo.control_socket_of(lb))
        .flow_table_size(4096)
        .maglev_table_size(251)
        .vrrp(Some(&ipv6_vrrp(priority)))
}

/// The master's IPv6 VIP must be usable at once: on eth0 as /64, added without DAD, neither
/// tentative nor failed.
fn assert_vip6_usable(host: &Host) {
    let a = address(host, "eth0", VIP6).unwrap_or_else(|| panic!("{} does not hold {VIP6} on eth0", host.name));
    assert_eq!(a["prefixlen"].as_u64(), Some(64), "{VIP6} on {}: {a}", host.name);
    assert_eq!(a["nodad"].as_bool(), Some(true), "{VIP6} on {} was added with DAD: {a}", host.name);
    assert!(
        a["tentative"].as_bool() != Some(true) && a["dadfailed"].as_bool() != Some(true),
        "{VIP6} on {} is not usable: {a}",
        host.name
    );
}

#[test]
fn ipv6_vrrp_fails_over() {
    require_root!();
    let _serial = one_at_a_time();
    let mut topo = Topology::builder().lbs(2).backends(1).nginx(false).build();
    topo.client().ns.ip(&["addr", "add", &format!("{CLIENT6}/64"), "dev", "eth0", "nodad"]);
    // The daemons send from their link-local addresses: wait (bounded) until both have
    // finished duplicate address detection.
    let (ll1, ll2) = poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
        Some((usable_link_local(topo.lb_n(1))?, usable_link_local(topo.lb_n(2))?))
    })
    .unwrap_or_else(|| {
        panic!("the LBs have no usable link-local addresses after 10 s: {:?}", addr_info(topo.lb_n(1), "eth0"))
    });
    let (mac1, mac2) = (topo.lb_n(1).mac(), topo.lb_n(2).mac());
    // What the client sees of VRRP: adverts, and neighbour advertisements for the VIP.
    let capture = LiveCapture::start(
        &topo,
        topo.client(),
        "v6",
        "ip6 proto 112 or icmp6",
        &format!("vrrp || (icmpv6.type == 136 && icmpv6.nd.na.target_address == {VIP6})"),
        &CAPTURE_FIELDS,
    );

    let c1 = ipv6_config(&topo, 1, 150);
    let c2 = ipv6_config(&topo, 2, 100);
    assert!(!c1.render().contains("[[service]]"));
    let mut d1 = Daemon::start_on(&mut topo, 1, &c1, Readiness::Attached);
    assert!(
        wait_master(&d1, topo.lb_n(1), "eth0", VIP6, Duration::from_secs(5)).is_some(),
        "lb1 alone did not become master holding {VIP6} on eth0 within 5 s: {:?}\n{}",
        d1.vrrp_status(),
        d1.log()
    );
    let d2 = Daemon::start_on(&mut topo, 2, &c2, Readiness::Attached);
    assert!(
        wait_backup_of(&d2, &ll1, Duration::from_secs(5)),
        "lb2 did not become the backup of lb1 ({ll1}) within 5 s: {:?}",
        d2.vrrp_status()
    );

    // Exactly one master, lb1, and the only one with the VIP; both name lb1's link-local
    // address as the master in `fj-lb status --json`. For half a second, every 50 ms.
    let end = Instant::now() + Duration::from_millis(500);
    loop {
        assert_eq!(cli_vrrp(&d1, "state"), "master", "lb1's state");
        assert_eq!(cli_vrrp(&d2, "state"), "backup", "lb2's state");
        assert_eq!(cli_vrrp(&d1, "master"), ll1.as_str(), "lb1's vrrp.master is not its link-local address {ll1}");
        assert_eq!(cli_vrrp(&d2, "master"), ll1.as_str(), "lb2's vrrp.master is not lb1's link-local address {ll1}");
        assert_eq!(cli_vrrp(&d2, "master_priority"), 150, "lb2's vrrp.master_priority");
        assert!(holds(topo.lb_n(1), "eth0", VIP6), "the master lb1 does not hold {VIP6}");
        assert!(!holds(topo.lb_n(2), "eth0", VIP6), "the backup lb2 holds {VIP6} too");
        if Instant::now() >= end {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_vip6_usable(topo.lb_n(1));

    // The client resolves the VIP before the failover: one datagram, the master's kernel
    // answers the solicitation. The entry is fresh (REACHABLE), not stale.
    let client = topo.client();
    let vip6: Ipv6Addr = VIP6.parse().unwrap();
    client.run_in(|| {
        let s = UdpSocket::bind("[::]:0").expect("a UDP socket in the client namespace");
        s.send_to(b"who has the VIP?", (vip6, 9)).expect("sending a datagram to the VIP");
    });
    let before = poll_until(Duration::from_secs(2), Duration::from_millis(10), || {
        neighbour(client, VIP6).filter(|(m, s)| *m == mac1 && s.iter().any(|x| x == "REACHABLE"))
    });
    assert!(
        before.is_some(),
        "the client has no REACHABLE entry for {VIP6} with lb1's MAC {mac1}: {:?}",
        neighbour(client, VIP6)
    );

    // lb1 crashes and its link goes down; from here on the client sends nothing.
    let killed = Instant::now();
    d1.kill();
    topo.lb_n(1).set_eth0(false);
    let bound = ipv6_vrrp(100).master_down_interval() + MARGIN;
    let took = wait_master(&d2, topo.lb_n(2), "eth0", VIP6, Duration::from_secs(5)).unwrap_or_else(|| {
        panic!("lb2 did not become master holding {VIP6} within 5 s of lb1's crash: {:?}", d2.vrrp_status())
    }) - killed;
    println!(
        "IPv6 failover after SIGKILL: {took:?} (master down interval {:?}, bound {bound:?})",
        ipv6_vrrp(100).master_down_interval()
    );
    assert!(took <= bound, "lb2 took {took:?} to become master and hold {VIP6}; allowed {bound:?}");
    assert_vip6_usable(topo.lb_n(2));
    assert_eq!(cli_vrrp(&d2, "state"), "master");
    assert_eq!(cli_vrrp(&d2, "master"), ll2.as_str(), "lb2's vrrp.master is not its link-local address {ll2}");

    // lb2's unsolicited NA (override) rewrites the client's existing entry, with no traffic
    // from the client (an unsolicited NA leaves the entry STALE; a solicited one would make it
    // REACHABLE).
    let moved = poll_until(Duration::from_secs(2), Duration::from_millis(10), || {
        neighbour(client, VIP6).filter(|(m, _)| *m == mac2).map(|e| (e, killed.elapsed()))
    });
    let after = neighbour(client, VIP6);

    // Wait (bounded) until the capture has lb2's announcements and a few of its adverts.
    let packets = capture
        .wait_for(Duration::from_secs(5), |p| {
            p.iter().filter(|x| x["ipv6.src"] == ll2 && x["vrrp.version"] == "3").count() >= 3
                && p.iter().any(|x| x["ipv6.src"] == ll2 && x["icmpv6.type"] == "136")
        })
        .unwrap_or_else(|| capture.packets());
    let adverts: Vec<_> = packets.iter().filter(|p| !p["vrrp.version"].is_empty()).collect();
    let nas: Vec<_> = packets.iter().filter(|p| p["icmpv6.type"] == "136").collect();
    println!("captured {} adverts and {} neighbour advertisements for {VIP6}", adverts.len(), nas.len());
    for na in &nas {
        let f = |k: &str| na[k].as_str();
        println!(
            "  NA at {} s: {} -> {}, hop limit {}, S={} O={}, target's MAC {}",
            f("frame.time_relative"),
            f("ipv6.src"),
            f("ipv6.dst"),
            f("ipv6.hlim"),
            f("icmpv6.nd.na.flag.s"),
            f("icmpv6.nd.na.flag.o"),
            f("icmpv6.opt.linkaddr")
        );
    }

    let ((mac, states), at) = moved.unwrap_or_else(|| {
        panic!(
            "2 s after the failover the client's entry for {VIP6} is {after:?}, not lb2's MAC {mac2} (lb1 {mac1}); \
             neighbour advertisements seen by the client: {nas:#?}"
        )
    });
    println!("client's entry for {VIP6}: {mac} {states:?}, {at:?} after the crash");
    assert!(
        states.iter().any(|s| s == "STALE"),
        "the client's entry moved to lb2 but is {states:?}, not STALE: was it solicited?"
    );

    // On the wire: VRRPv3 adverts to ff02::12 from each master's link-local address, hop
    // limit 255, for the VIP, with good checksums.
    let from = |ll: &str| adverts.iter().copied().filter(|p| p["ipv6.src"] == ll).collect::<Vec<_>>();
    let (a1, a2) = (from(&ll1), from(&ll2));
    assert!(a1.len() >= 5, "too few adverts from lb1 ({ll1}) captured: {adverts:#?}");
    assert!(a2.len() >= 3, "fewer than 3 adverts from lb2 ({ll2}) captured after the failover: {adverts:#?}");
    assert_eq!(a1.len() + a2.len(), adverts.len(), "adverts from other sources: {adverts:#?}");
    for (p, prio, mac) in a1.iter().map(|p| (p, "150", &mac1)).chain(a2.iter().map(|p| (p, "100", &mac2))) {
        assert_eq!(p["ipv6.dst"], "ff02::12", "{p:?}");
        assert_eq!(p["ipv6.hlim"], "255", "{p:?}");
        assert_eq!(p["eth.src"], *mac, "{p:?}");
        assert_eq!(p["vrrp.version"], "3", "{p:?}");
        assert_eq!(p["vrrp.virt_rtr_id"], VRID6.to_string(), "{p:?}");
        assert_eq!(p["vrrp.prio"], prio, "{p:?}");
        assert_eq!(p["vrrp.ipv6_addr"], VIP6, "{p:?}");
        assert!(checksum_good(p), "tshark finds a bad checksum: {p:?}");
    }
    // lb2's unsolicited NAs: to all nodes, from its link-local address, hop limit 255,
    // override set, solicited clear, its MAC as the target's link-layer address.
    let lb2_nas: Vec<_> = nas.iter().filter(|p| p["ipv6.src"] == ll2).collect();
    let lb1_nas = nas.iter().filter(|p| p["ipv6.src"] == ll1 && p["icmpv6.opt.linkaddr"] == mac1).count();
    assert!(lb1_nas >= 1, "no unsolicited neighbour advertisement from lb1 ({ll1}) when it became master: {nas:#?}");
    assert!(!lb2_nas.is_empty(), "no neighbour advertisement for {VIP6} from lb2 ({ll2}) captured: {nas:#?}");
    for p in &lb2_nas {
        assert_eq!(p["ipv6.dst"], "ff02::1", "{p:?}");
        assert_eq!(p["ipv6.hlim"], "255", "{p:?}");
        assert!(truthy(p.get("icmpv6.nd.na.flag.o")), "override flag not set: {p:?}");
        assert!(!truthy(p.get("icmpv6.nd.na.flag.s")), "an unsolicited NA with the solicited flag: {p:?}");
        assert_eq!(p["icmpv6.opt.linkaddr"], mac2, "{p:?}");
    }
}

// ---- virtual MAC ----------------------------------------------------------------------------

const VMAC: &str = "00:00:5e:00:01:33";
const VMAC_DEV: &str = "fjvrrp51";

/// `/proc/sys/net/ipv4/conf/eth0/<name>` in `host`'s namespace.
fn eth0_sysctl(host: &Host, name: &str) -> String {
    host.ns.exec(&["cat", &format!("/proc/sys/net/ipv4/conf/eth0/{name}")]).trim().to_string()
}

/// The source MAC and address of the next `n` adverts the client sees (tshark, bounded).
fn capture_adverts(topo: &Topology, n: usize) -> Vec<(String, String)> {
    let out = topo.client().ns.exec(&[
        "tshark",
        "-n",
        "-i",
        "eth0",
        "-f",
        "ip proto 112",
        "-c",
        &n.to_string(),
        "-a",
        "duration:10",
        "-T",
        "fields",
        "-e",
        "eth.src",
        "-e",
        "ip.src",
    ]);
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut f = l.split('\t');
            (f.next().unwrap_or("").to_string(), f.next().unwrap_or("").to_string())
        })
        .collect()
}

/// The next `n` adverts the client sees (within 10 s) all come from `src` with the virtual MAC.
fn assert_vmac_adverts(topo: &Topology, n: usize, src: &str, when: &str) {
    let adverts = capture_adverts(topo, n);
    println!("adverts {when} (eth.src, ip.src): {adverts:?}");
    assert_eq!(adverts.len(), n, "captured {} of {n} adverts within 10 s: {adverts:?}", adverts.len());
    assert!(adverts.iter().all(|(m, s)| m == VMAC && s == src), "adverts not from {src} with {VMAC}: {adverts:?}");
}

#[test]
fn virtual_mac_keeps_the_clients_arp_entry_across_a_failover() {
    require_root!();
    let _serial = one_at_a_time();
    let mut topo = Topology::builder().lbs(2).backends(2).build();
    let (v1, v2) = (VrrpSettings::new(150).virtual_mac(), VrrpSettings::new(100).virtual_mac());
    let c1 = topo.lb_config(1, &BACKENDS, Some(&v1));
    let c2 = topo.lb_config(2, &BACKENDS, Some(&v2));
    for c in [&c1, &c2] {
        let text = c.render();
        assert!(
            text.contains("use_virtual_mac = true\n") && text.contains("accept_mode = true\n"),
            "no virtual MAC in the rendered config:\n{text}"
        );
    }
    let vip = VIP.to_string();
    let (lb1_ip, lb2_ip) = (lb_ip(1).to_string(), lb_ip(2).to_string());
    assert_eq!(eth0_sysctl(topo.lb_n(2), "arp_ignore"), "0", "lb2's arp_ignore before the daemon runs");
    let arp_announce_before = eth0_sysctl(topo.lb_n(2), "arp_announce");

    let mut d1 = Daemon::start_on(&mut topo, 1, &c1, Readiness::Attached);
    assert!(
        wait_master(&d1, topo.lb_n(1), VMAC_DEV, &vip, Duration::from_secs(5)).is_some(),
        "lb1 alone did not become master with the VIP on {VMAC_DEV} within 5 s: {:?}\n{}",
        d1.vrrp_status(),
        d1.log()
    );
    let mut d2 = Daemon::start_on(&mut topo, 2, &c2, Readiness::Attached);
    assert!(
        wait_backup_of(&d2, &lb1_ip, Duration::from_secs(5)),
        "lb2 did not become lb1's backup within 5 s: {:?}",
        d2.vrrp_status()
    );

    // lb1's macvlan is up with the VIP; lb2's exists, down, without it; eth0 holds the VIP on
    // neither host.
    let l1 = link(topo.lb_n(1), VMAC_DEV).unwrap_or_else(|| panic!("lb1 has no {VMAC_DEV}"));
    assert!(link_up(&l1), "lb1's {VMAC_DEV} is not up: {l1}");
    assert_eq!(l1["address"], VMAC, "lb1's {VMAC_DEV}: {l1}");
    assert!(
        holds(topo.lb_n(1), VMAC_DEV, &vip),
        "lb1's {VMAC_DEV} has no VIP: {:?}",
        addr_info(topo.lb_n(1), VMAC_DEV)
    );
    let l2 = link(topo.lb_n(2), VMAC_DEV).unwrap_or_else(|| panic!("the backup lb2 has no {VMAC_DEV}"));
    assert!(!link_up(&l2), "the backup's {VMAC_DEV} is up: {l2}");
    assert_eq!(l2["address"], VMAC, "lb2's {VMAC_DEV}: {l2}");
    assert!(!holds(topo.lb_n(2), VMAC_DEV, &vip), "the backup's {VMAC_DEV} holds the VIP");
    for i in 1..=2 {
        assert!(!topo.lb_n(i).has_address(VIP), "lb{i} holds the VIP on eth0 with the virtual MAC in use");
    }

    // Adverts on the wire carry the virtual MAC.
    assert_vmac_adverts(&topo, 5, &lb1_ip, "before the failover");

    // A request through the VIP: the balancer takes frames to the virtual MAC, and the client
    // ties the VIP to it.
    topo.wait_vip_answers(Duration::from_secs(10));
    assert_eq!(topo.client().neighbour_mac(VIP).as_deref(), Some(VMAC), "the client's ARP entry for the VIP");

    // Every change to the client's neighbour table from here on. Listening is confirmed with
    // a marker entry before the failover starts.
    let monitor_log = topo.tmp().join("ip-monitor-neigh.log");
    let mut monitor = topo.client().ns.spawn("ip monitor neigh", "ip", &["monitor", "neigh"], &monitor_log);
    let marker = "10.0.0.254";
    topo.client().ns.ip(&[
        "neigh",
        "replace",
        marker,
        "lladdr",
        "02:00:00:00:00:fe",
        "dev",
        "eth0",
        "nud",
        "permanent",
    ]);
    let listening = poll_until(Duration::from_secs(5), Duration::from_millis(10), || {
        monitor.assert_running();
        monitor.log().contains(marker).then_some(())
    });
    assert!(listening.is_some(), "`ip monitor neigh` in the client shows nothing: {}", monitor.log());
    topo.client().ns.ip(&["neigh", "del", marker, "dev", "eth0"]);

    // lb1 crashes and its link goes down.
    let killed = Instant::now();
    d1.kill();
    topo.lb_n(1).set_eth0(false);
    let bound = v2.master_down_interval() + MARGIN;
    let took = wait_master(&d2, topo.lb_n(2), VMAC_DEV, &vip, Duration::from_secs(5)).unwrap_or_else(|| {
        panic!("lb2 did not become master with the VIP on {VMAC_DEV} within 5 s: {:?}", d2.vrrp_status())
    }) - killed;
    println!(
        "virtual-MAC failover after SIGKILL: {took:?} (master down interval {:?}, bound {bound:?})",
        v2.master_down_interval()
    );
    assert!(took <= bound, "lb2 took {took:?} to become master with the VIP on {VMAC_DEV}; allowed {bound:?}");
    let l2 = link(topo.lb_n(2), VMAC_DEV).unwrap_or_else(|| panic!("lb2 has no {VMAC_DEV}"));
    assert!(link_up(&l2), "the new master's {VMAC_DEV} is not up: {l2}");
    assert!(!topo.lb_n(2).has_address(VIP), "lb2 holds the VIP on eth0 with the virtual MAC in use");
    assert_eq!(
        topo.client().neighbour_mac(VIP).as_deref(),
        Some(VMAC),
        "the client's ARP entry right after the failover"
    );

    // Requests through the VIP work again, through lb2, with the same ARP entry.
    topo.wait_vip_answers(Duration::from_secs(5));
    println!("first answer through lb2: {:?} after the crash", killed.elapsed());
    assert_eq!(
        topo.client().neighbour_mac(VIP).as_deref(),
        Some(VMAC),
        "the client's ARP entry after requests through lb2"
    );
    assert_vmac_adverts(&topo, 3, &lb2_ip, "after the failover");

    // The client's entry for the VIP never named another MAC, nor went away.
    monitor.stop(Duration::from_secs(5));
    let events = monitor.log();
    let vip_events: Vec<&str> = events.lines().filter(|l| l.split_whitespace().any(|w| w == vip)).collect();
    println!("the client's neighbour events for the VIP across the failover: {vip_events:#?}");
    for e in &vip_events {
        let mut w = e.split_whitespace();
        let mac = w.find(|x| *x == "lladdr").and_then(|_| w.next());
        assert_eq!(mac, Some(VMAC), "the client's entry for the VIP changed: {e:?}; all events:\n{events}");
        assert!(
            !e.starts_with("Deleted") && !e.contains("FAILED") && !e.contains("INCOMPLETE"),
            "the client's entry for the VIP went away: {e:?}; all events:\n{events}"
        );
    }
    drop(monitor);

    // A clean stop (SIGTERM) removes the macvlan and gives eth0 back its ARP settings.
    assert_eq!(eth0_sysctl(topo.lb_n(2), "arp_ignore"), "1", "lb2's arp_ignore while the virtual MAC is in use");
    assert_eq!(eth0_sysctl(topo.lb_n(2), "arp_announce"), "2", "lb2's arp_announce while the virtual MAC is in use");
    let status = d2.stop(Duration::from_secs(5));
    assert!(status.success(), "lb2's daemon exited with {status} on SIGTERM:\n{}", d2.log());
    assert!(link(topo.lb_n(2), VMAC_DEV).is_none(), "{VMAC_DEV} is still there after a clean stop");
    assert_eq!(eth0_sysctl(topo.lb_n(2), "arp_ignore"), "0", "lb2's arp_ignore after a clean stop");
    assert_eq!(eth0_sysctl(topo.lb_n(2), "arp_announce"), arp_announce_before, "lb2's arp_announce after a clean stop");
    assert!(!holds(topo.lb_n(2), "eth0", &vip));
}
