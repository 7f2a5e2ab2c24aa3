//! VRRP beyond the IPv4 basics: an IPv6 virtual address (adverts to ff02::12 from link-local
//! addresses, unsolicited neighbour advertisements on takeover), and the virtual MAC, with which
//! a client's ARP entry for the VIP never changes across a failover. Two LB hosts on one bridge
//! (`lb1` priority 150, `lb2` priority 100, 100 ms adverts). Needs root and a built `fj-lb`.
use std::{
    net::{Ipv6Addr, UdpSocket},
    process::Command,
    sync::Mutex,
    time::{Duration, Instant},
};

use fj_lb_tests::{
    Daemon, Host, Topology, VIP,
    daemon::{Readiness, VrrpSettings},
    in_netns, poll_until, require_root,
};

/// Failover times are measured in tens of milliseconds on two cores: one test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const MARGIN: Duration = Duration::from_millis(100);
const VIP6: &str = "2001:db8:0:1::100";
const VMAC: &str = "00:00:5e:00:01:33";

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn ip_out(ns: &str, args: &[&str]) -> String {
    let out = Command::new("ip").arg("-n").arg(ns).args(args).output().expect("running ip");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether `dev` in `host`'s namespace holds `addr` (any family).
fn holds(host: &Host, dev: &str, addr: &str) -> bool {
    ip_out(host.ns.name(), &["-br", "addr", "show", "dev", dev]).split_whitespace().any(|w| w.split('/').next() == Some(addr))
}

/// "UP" or "DOWN" (or "" when the device does not exist).
fn link_state(host: &Host, dev: &str) -> String {
    ip_out(host.ns.name(), &["-br", "link", "show", "dev", dev]).split_whitespace().nth(1).unwrap_or("").to_string()
}

fn neighbour(ns: &str, addr: &str) -> Option<String> {
    let out = ip_out(ns, &["neigh", "show", addr, "dev", "eth0"]);
    let mut words = out.split_whitespace();
    words.find(|w| *w == "lladdr")?;
    words.next().map(str::to_string)
}

fn ipv6_config(topo: &Topology, lb: usize, priority: u8) -> String {
    format!(
        "interface = \"eth0\"\nxdp_mode = \"native\"\nbpffs = \"{}\"\ncontrol_socket = \"{}\"\nflow_table_size = 4096\n\
         maglev_table_size = 251\n\n[vrrp]\nvrid = 52\npriority = {priority}\nadvert_interval_ms = 100\n\
         virtual_addresses = [\"{VIP6}/64\"]\n",
        topo.bpffs_dir_of(lb).display(),
        topo.control_socket_of(lb).display()
    )
}

/// Polls until `d` is master and `dev` on `host` holds `addr`; when that was seen.
fn wait_master(d: &Daemon, host: &Host, dev: &str, addr: &str, timeout: Duration) -> Option<Instant> {
    poll_until(timeout, Duration::from_millis(2), || {
        let s = d.vrrp_status_fast().ok()?;
        (s.is_master() && holds(host, dev, addr)).then(Instant::now)
    })
}

fn master_down(priority: u32) -> Duration {
    Duration::from_millis(300) + Duration::from_millis(100) * (256 - priority) / 256
}

#[test]
fn ipv6_vrrp_fails_over_and_moves_the_clients_neighbour_entry() {
    require_root();
    let _serial = one_at_a_time();
    let mut topo = Topology::builder().lbs(2).backends(1).nginx(false).build();
    let client = topo.client().ns.name().to_string();
    topo.client().ns.ip(&["addr", "add", "2001:db8:0:1::2/64", "dev", "eth0", "nodad"]);
    let link_local = |h: &Host| -> String {
        let out = ip_out(h.ns.name(), &["-6", "-br", "addr", "show", "dev", "eth0", "scope", "link"]);
        out.split_whitespace().find(|w| w.starts_with("fe80")).and_then(|w| w.split('/').next()).unwrap_or("").to_string()
    };
    // Link-local addresses finish duplicate address detection before they can send.
    let (ll1, ll2) = poll_until(Duration::from_secs(5), Duration::from_millis(50), || {
        let (a, b) = (link_local(topo.lb_n(1)), link_local(topo.lb_n(2)));
        let tentative = ip_out(topo.lb_n(1).ns.name(), &["-6", "addr", "show", "tentative"]).contains("fe80")
            || ip_out(topo.lb_n(2).ns.name(), &["-6", "addr", "show", "tentative"]).contains("fe80");
        (!a.is_empty() && !b.is_empty() && !tentative).then_some((a, b))
    })
    .expect("both LBs get a usable link-local address");

    let c1 = ipv6_config(&topo, 1, 150);
    let c2 = ipv6_config(&topo, 2, 100);
    let mut d1 = Daemon::start_on(&mut topo, 1, &c1, Readiness::Attached);
    assert!(
        wait_master(&d1, topo.lb_n(1), "eth0", VIP6, Duration::from_secs(5)).is_some(),
        "lb1 alone did not become master with {VIP6}: {:?}",
        d1.vrrp_status()
    );
    let d2 = Daemon::start_on(&mut topo, 2, &c2, Readiness::Attached);
    let backup = poll_until(Duration::from_secs(5), Duration::from_millis(10), || {
        let s = d2.vrrp_status_fast().ok()?;
        (s.is_backup() && s.master.as_deref() == Some(ll1.as_str())).then_some(s)
    });
    assert!(backup.is_some(), "lb2 is not lb1's backup (lb1 is {ll1}): {:?}", d2.vrrp_status());
    assert_eq!(d1.vrrp_status().unwrap().master.as_deref(), Some(ll1.as_str()), "the master is named by its link-local");
    assert!(!holds(topo.lb_n(2), "eth0", VIP6), "the backup holds the VIP too");

    // The client learns lb1's MAC for the VIP (the master's kernel answers its solicitation).
    let vip6: Ipv6Addr = VIP6.parse().unwrap();
    in_netns(&client, || {
        let s = UdpSocket::bind("[::]:0").expect("udp socket");
        let _ = s.send_to(b"hello", (vip6, 9));
    });
    let mac1 = topo.lb_n(1).mac();
    let learned = poll_until(Duration::from_secs(2), Duration::from_millis(10), || (neighbour(&client, VIP6)? == mac1).then_some(()));
    assert!(learned.is_some(), "the client did not learn lb1's MAC {mac1} for {VIP6}: {:?}", neighbour(&client, VIP6));

    // lb1 dies; lb2 takes the VIP, and its unsolicited NA (override) rewrites the client's
    // entry with no traffic from the client.
    let killed = Instant::now();
    d1.kill();
    topo.lb_n(1).set_eth0(false);
    let took = wait_master(&d2, topo.lb_n(2), "eth0", VIP6, Duration::from_secs(3))
        .unwrap_or_else(|| panic!("lb2 did not take {VIP6}: {:?}", d2.vrrp_status()))
        - killed;
    println!("IPv6 failover: {took:?} (bound {:?} + {MARGIN:?})", master_down(100));
    assert!(took <= master_down(100) + MARGIN, "IPv6 failover took {took:?}");
    assert_eq!(d2.vrrp_status().unwrap().master.as_deref(), Some(ll2.as_str()));
    let mac2 = topo.lb_n(2).mac();
    let moved = poll_until(Duration::from_secs(2), Duration::from_millis(10), || (neighbour(&client, VIP6)? == mac2).then_some(()));
    assert!(moved.is_some(), "the client's entry for {VIP6} is {:?}, not lb2's {mac2}", neighbour(&client, VIP6));
}

#[test]
fn virtual_mac_keeps_the_clients_arp_entry_across_a_failover() {
    require_root();
    let _serial = one_at_a_time();
    let mut topo = Topology::builder().lbs(2).backends(2).build();
    let backends = [(1, 100), (2, 100)];
    let with_vmac = |c: String| c.replacen("[vrrp]\n", "[vrrp]\nuse_virtual_mac = true\naccept_mode = true\n", 1);
    let c1 = with_vmac(topo.lb_config(1, &backends, Some(&VrrpSettings::new(150))));
    let c2 = with_vmac(topo.lb_config(2, &backends, Some(&VrrpSettings::new(100))));
    assert!(c1.contains("use_virtual_mac = true"), "{c1}");
    let vip = VIP.to_string();
    let mut d1 = Daemon::start_on(&mut topo, 1, &c1, Readiness::Attached);
    assert!(
        wait_master(&d1, topo.lb_n(1), "fjvrrp51", &vip, Duration::from_secs(5)).is_some(),
        "lb1 did not become master with the VIP on fjvrrp51: {:?}",
        d1.vrrp_status()
    );
    let mut d2 = Daemon::start_on(&mut topo, 2, &c2, Readiness::Attached);
    assert!(
        poll_until(Duration::from_secs(5), Duration::from_millis(10), || d2.vrrp_status_fast().ok()?.is_backup().then_some(())).is_some(),
        "lb2 is not backup: {:?}",
        d2.vrrp_status()
    );
    assert_eq!(link_state(topo.lb_n(1), "fjvrrp51"), "UP");
    assert_eq!(link_state(topo.lb_n(2), "fjvrrp51"), "DOWN", "only the master uses the virtual MAC");
    assert!(!holds(topo.lb_n(1), "eth0", &vip), "with the virtual MAC the VIP lives on the macvlan");

    // On the wire, adverts carry the virtual MAC.
    let capture = Command::new("ip")
        .args(["netns", "exec", topo.client().ns.name(), "tshark", "-i", "eth0", "-f", "ip proto 112", "-c", "3", "-a", "duration:5"])
        .args(["-T", "fields", "-e", "eth.src"])
        .output()
        .expect("running tshark (apt-get install tshark)");
    let sources = String::from_utf8_lossy(&capture.stdout);
    assert!(!sources.trim().is_empty(), "no adverts captured: {}", String::from_utf8_lossy(&capture.stderr));
    assert!(sources.lines().all(|l| l.trim() == VMAC), "advert source MACs: {sources}");

    // A request through the VIP: the client's ARP entry is the virtual MAC, and the balancer
    // takes frames addressed to it.
    let answer = topo.client_get(topo.vip_addr(), "/", Duration::from_secs(2));
    assert!(matches!(answer, Ok((200, _))), "through the VIP: {answer:?}");
    assert_eq!(topo.client().neighbour_mac(VIP).as_deref(), Some(VMAC));

    let killed = Instant::now();
    d1.kill();
    topo.lb_n(1).set_eth0(false);
    let took = wait_master(&d2, topo.lb_n(2), "fjvrrp51", &vip, Duration::from_secs(3))
        .unwrap_or_else(|| panic!("lb2 did not take the VIP: {:?}", d2.vrrp_status()))
        - killed;
    println!("virtual-MAC failover: {took:?} (bound {:?} + {MARGIN:?})", master_down(100));
    assert!(took <= master_down(100) + MARGIN, "failover took {took:?}");
    assert_eq!(link_state(topo.lb_n(2), "fjvrrp51"), "UP");
    let answered = poll_until(Duration::from_secs(3), Duration::from_millis(50), || {
        matches!(topo.client_get(topo.vip_addr(), "/", Duration::from_millis(500)), Ok((200, _))).then_some(())
    });
    assert!(answered.is_some(), "the VIP does not answer through lb2");
    assert_eq!(topo.client().neighbour_mac(VIP).as_deref(), Some(VMAC), "the client's ARP entry never changed");

    // A clean stop removes the macvlan and gives back the parent's ARP settings.
    let lb2_ns = topo.lb_n(2).ns.name().to_string();
    let arp_ignore = || {
        let out = Command::new("ip")
            .args(["netns", "exec", &lb2_ns, "cat", "/proc/sys/net/ipv4/conf/eth0/arp_ignore"])
            .output()
            .expect("reading arp_ignore");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(arp_ignore(), "1", "while the virtual MAC is in use the parent does not answer ARP for others' addresses");
    let status = d2.stop(Duration::from_secs(5));
    assert!(status.success(), "lb2 exited with {status}");
    assert_eq!(link_state(topo.lb_n(2), "fjvrrp51"), "", "the macvlan is gone");
    assert_eq!(arp_ignore(), "0");
}
