//! Program tests in Katran's style: a crafted input packet, the expected output packet and
//! action, run through BPF_PROG_TEST_RUN against the embedded object with maps filled by the
//! daemon's own code. Needs root (CAP_BPF): as another user each test says so and passes.
use std::{collections::HashMap, io::Write as _, net::IpAddr};

use aya::programs::{TestRun, TestRunOptions, Xdp};
use etherparse::PacketBuilder;
use fj_lb::{
    datapath::{self, Dataplane},
    model::{
        addr::Mac,
        balancer::{self as state, Balancer},
        config::{self, Config, HostView},
    },
};
use fj_lb_common::{FlowKey, Settings, Stat, hash::flow_hash, program_names};

/// Returns from the test unless it runs as root, after one line on stderr (written past the
/// harness's capture, so it shows), so that `cargo test` as a normal user passes quietly.
macro_rules! require_root {
    () => {
        if unsafe { libc::geteuid() } != 0 {
            let test = std::thread::current().name().unwrap_or("xdp_program").to_string();
            let _ = writeln!(std::io::stderr(), "{test}: skipping: needs root (CAP_BPF); run `cargo xtask test` as root");
            return;
        }
    };
}

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;

const LB_MAC: Mac = [0x02, 0x1b, 0, 0, 0, 0x01];
const CLIENT_MAC: Mac = [0x02, 0xc1, 0, 0, 0, 0x01];

struct AnyHost;
impl HostView for AnyHost {
    fn interface_exists(&self, _: &str) -> bool {
        true
    }
}

const CONFIG: &str = r#"
interface = "lb0"
flow_table_size = 4096
maglev_table_size = 251
max_services = 8
max_backends = 16

[[service]]
name = "web"
vip = "10.0.0.100"
port = 80
protocol = "tcp"
  [[service.backend]]
  address = "10.0.0.11"
  [[service.backend]]
  address = "10.0.0.12"
  [[service.backend]]
  address = "10.0.0.13"

[[service]]
name = "dns"
vip = "10.0.0.100"
port = 53
protocol = "udp"
  [[service.backend]]
  address = "10.0.0.11"

[[service]]
name = "web6"
vip = "2001:db8::100"
port = 80
protocol = "tcp"
  [[service.backend]]
  address = "2001:db8::11"
  [[service.backend]]
  address = "2001:db8::12"

[[service]]
name = "dns6"
vip = "2001:db8::100"
port = 53
protocol = "udp"
  [[service.backend]]
  address = "2001:db8::12"
"#;

fn mac_of(ip: IpAddr) -> Mac {
    let o = match ip {
        IpAddr::V4(v) => v.octets()[3],
        IpAddr::V6(v) => v.octets()[15],
    };
    [0x02, 0xbe, 0, 0, if ip.is_ipv4() { 4 } else { 6 }, o]
}

struct Lb {
    dp: Dataplane,
    balancer: Balancer,
    macs: HashMap<IpAddr, Mac>,
}

impl Lb {
    fn new(text: &str) -> Self {
        let cfg = config::parse(text, "test.toml", &AnyHost).expect("test config is valid");
        let mut dp = Dataplane::load(state::sizes(&cfg)).expect("XDP program loads and verifies (run as root)");
        dp.write_settings(Settings { lb_mac: LB_MAC, alt_mac: [0; 6], hash_seed: cfg.hash_seed, flags: 0, max_new_flows: 0, ..Default::default() }).unwrap();
        let macs: HashMap<IpAddr, Mac> = cfg
            .services
            .iter()
            .flat_map(|s| s.backends.iter().map(|b| (b.address, mac_of(b.address))))
            .chain(["10.0.0.14", "10.0.0.15"].iter().map(|a| (a.parse().unwrap(), mac_of(a.parse().unwrap()))))
            .collect();
        let mut balancer = Balancer::new(&cfg);
        balancer.apply(&cfg, &macs, &mut dp).expect("maps filled");
        Lb { dp, balancer, macs }
    }

    fn reconfigure(&mut self, text: &str) {
        let cfg: Config = config::parse(text, "test.toml", &AnyHost).expect("valid");
        self.balancer.apply(&cfg, &self.macs, &mut self.dp).expect("applied");
    }

    fn run(&self, pkt: &[u8]) -> (u32, Vec<u8>) {
        run_program(self.dp.program(), pkt)
    }

    /// Runs a packet that must be forwarded; returns the backend address it went to.
    fn forward(&self, pkt: &[u8]) -> IpAddr {
        let (action, out) = self.run(pkt);
        assert_eq!(action, XDP_TX, "a packet for a service is sent back out (XDP_TX)");
        assert_eq!(out.len(), pkt.len());
        assert_eq!(&out[6..12], &LB_MAC, "source MAC is the LB's");
        assert_eq!(&out[12..], &pkt[12..], "nothing above the MACs changes");
        let dst: Mac = out[..6].try_into().unwrap();
        *self.macs.iter().find(|(_, m)| **m == dst).unwrap_or_else(|| panic!("destination MAC {dst:02x?} is no backend's")).0
    }

    fn stat(&mut self, s: Stat) -> u64 {
        self.dp.stats().unwrap().into_iter().find(|(k, _)| *k == s).unwrap().1
    }

    /// Changes the settings the program reads.
    fn update_settings(&mut self, f: impl FnOnce(&mut Settings)) {
        let mut s = self.dp.settings().get(&0, 0).unwrap();
        f(&mut s);
        self.dp.write_settings(s).unwrap();
    }
}

/// One BPF_PROG_TEST_RUN of `pkt`: the action and the frame as the program left it.
fn run_program(prog: &Xdp, pkt: &[u8]) -> (u32, Vec<u8>) {
    let mut out = vec![0u8; pkt.len() + 256];
    let r = prog
        .test_run(TestRunOptions { data_in: Some(pkt), data_out: Some(&mut out), ..Default::default() })
        .expect("BPF_PROG_TEST_RUN");
    out.truncate(r.data_size_out as usize);
    (r.return_value, out)
}

fn tcp4(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(CLIENT_MAC, LB_MAC).ipv4(src, dst, 64).tcp(sport, dport, 1000, 64240).syn();
    let mut v = Vec::new();
    b.write(&mut v, b"").unwrap();
    v
}

fn udp4(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, LB_MAC).ipv4(src, dst, 64).udp(sport, dport).write(&mut v, b"query").unwrap();
    v
}

fn v6(last: u16) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
    a[14..].copy_from_slice(&last.to_be_bytes());
    a
}

fn tcp6(src: [u8; 16], sport: u16, dst: [u8; 16], dport: u16) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, LB_MAC).ipv6(src, dst, 64).tcp(sport, dport, 1, 64240).syn().write(&mut v, b"").unwrap();
    v
}

fn udp6(src: [u8; 16], sport: u16, dst: [u8; 16], dport: u16) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, LB_MAC).ipv6(src, dst, 64).udp(sport, dport).write(&mut v, b"q").unwrap();
    v
}

const CLIENT: [u8; 4] = [10, 0, 0, 2];
const VIP: [u8; 4] = [10, 0, 0, 100];

/// `frame` (IPv4) with 4 bytes of options (NOP NOP NOP EOL) after its 20-byte header; IHL,
/// length and checksum fixed.
fn with_ipv4_options(frame: &[u8]) -> Vec<u8> {
    let mut p = frame[..34].to_vec();
    p.extend_from_slice(&[1, 1, 1, 0]);
    p.extend_from_slice(&frame[34..]);
    p[14] = 0x46;
    let tot = u16::from_be_bytes([p[16], p[17]]) + 4;
    p[16..18].copy_from_slice(&tot.to_be_bytes());
    p[24..26].copy_from_slice(&[0, 0]);
    let sum = etherparse::Ipv4HeaderSlice::from_slice(&p[14..38]).unwrap().to_header().calc_header_checksum();
    p[24..26].copy_from_slice(&sum.to_be_bytes());
    p
}

/// CONFIG with a fourth backend for "web", 10.0.0.14.
fn with_a_fourth_web_backend() -> String {
    let grown = CONFIG.replacen(
        "  [[service.backend]]\n  address = \"10.0.0.13\"\n",
        "  [[service.backend]]\n  address = \"10.0.0.13\"\n  [[service.backend]]\n  address = \"10.0.0.14\"\n",
        1,
    );
    assert_ne!(grown, CONFIG);
    grown
}

fn assert_passed_untouched(lb: &Lb, pkt: &[u8], what: &str) {
    let (action, out) = lb.run(pkt);
    assert_eq!(action, XDP_PASS, "{what}: passed to the host");
    assert_eq!(out, pkt, "{what}: not a byte changed");
}

#[test]
fn tcp_to_ipv4_vip_goes_to_one_of_its_backends() {
    require_root!();
    let lb = Lb::new(CONFIG);
    let b = lb.forward(&tcp4(CLIENT, 40000, VIP, 80));
    assert!(["10.0.0.11", "10.0.0.12", "10.0.0.13"].contains(&b.to_string().as_str()), "{b}");
}

#[test]
fn udp_to_ipv4_vip_goes_to_its_backend() {
    require_root!();
    let lb = Lb::new(CONFIG);
    assert_eq!(lb.forward(&udp4(CLIENT, 5353, VIP, 53)).to_string(), "10.0.0.11");
}

#[test]
fn tcp_to_ipv6_vip_goes_to_one_of_its_backends() {
    require_root!();
    let lb = Lb::new(CONFIG);
    let b = lb.forward(&tcp6(v6(2), 40000, v6(0x100), 80));
    assert!(["2001:db8::11", "2001:db8::12"].contains(&b.to_string().as_str()), "{b}");
}

#[test]
fn udp_to_ipv6_vip_goes_to_its_backend() {
    require_root!();
    let lb = Lb::new(CONFIG);
    assert_eq!(lb.forward(&udp6(v6(2), 5353, v6(0x100), 53)).to_string(), "2001:db8::12");
}

#[test]
fn ipv4_with_options_is_balanced() {
    require_root!();
    let lb = Lb::new(CONFIG);
    let plain = tcp4(CLIENT, 40000, VIP, 80);
    let via_options = lb.forward(&with_ipv4_options(&plain));
    assert_eq!(via_options, lb.forward(&plain), "options do not change the flow");
}

#[test]
fn traffic_not_for_a_service_passes_untouched() {
    require_root!();
    let mut lb = Lb::new(CONFIG);
    assert_passed_untouched(&lb, &tcp4(CLIENT, 40000, [10, 0, 0, 101], 80), "other address");
    assert_passed_untouched(&lb, &tcp4(CLIENT, 40000, VIP, 81), "other port");
    assert_passed_untouched(&lb, &udp4(CLIENT, 40000, VIP, 80), "other protocol on a TCP port");
    assert_passed_untouched(&lb, &tcp6(v6(2), 40000, v6(0x101), 80), "other IPv6 address");
    assert_eq!(lb.stat(Stat::PassNotService), 4);

    let mut arp = Vec::new();
    arp.extend_from_slice(&[0xff; 6]);
    arp.extend_from_slice(&CLIENT_MAC);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&CLIENT_MAC);
    arp.extend_from_slice(&CLIENT);
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&VIP);
    assert_passed_untouched(&lb, &arp, "ARP");
    assert_eq!(lb.stat(Stat::PassNotIp), 1);

    let mut icmp = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, LB_MAC).ipv4(CLIENT, VIP, 64).icmpv4_echo_request(1, 1).write(&mut icmp, b"ping").unwrap();
    assert_passed_untouched(&lb, &icmp, "ICMP to the VIP");
    assert_eq!(lb.stat(Stat::PassNotL4), 1);
}

#[test]
fn a_later_fragment_without_its_first_is_dropped_or_passed_as_configured() {
    require_root!();
    // Until fragments were tracked, later fragments went to the host; now one whose first
    // fragment was not seen is an orphan: dropped by default (`orphan_fragments = "drop"`).
    let mut lb = Lb::new(CONFIG);
    let mut p = udp4(CLIENT, 5353, VIP, 53);
    p[20..22].copy_from_slice(&(0x2000u16 | 185).to_be_bytes()); // MF, offset 1480 bytes
    let (action, out) = lb.run(&p);
    assert_eq!((action, out.as_slice()), (XDP_DROP, p.as_slice()), "orphan: dropped, untouched");
    assert_eq!(lb.stat(Stat::DropFragmentOrphan), 1);
    lb.update_settings(|s| s.flags |= fj_lb_common::SETTINGS_PASS_ORPHAN_FRAGMENTS);
    assert_passed_untouched(&lb, &p, "orphan with orphan_fragments = \"pass\"");
    assert_eq!(lb.stat(Stat::PassFragmentOrphan), 1);
    let mut first = udp4(CLIENT, 5353, VIP, 53);
    first[20..22].copy_from_slice(&0x2000u16.to_be_bytes()); // MF, offset 0: carries the ports
    assert_eq!(lb.forward(&first).to_string(), "10.0.0.11");
}

#[test]
fn truncated_and_malformed_headers_are_never_rewritten() {
    require_root!();
    let mut lb = Lb::new(CONFIG);
    let tcp = tcp4(CLIENT, 40000, VIP, 80);
    for cut in [14, 20, 33, 34, 40, 53] {
        assert_passed_untouched(&lb, &tcp[..cut], &format!("TCP/IPv4 cut to {cut} bytes"));
    }
    let udp = udp6(v6(2), 5353, v6(0x100), 53);
    for cut in [30, 53, 61] {
        assert_passed_untouched(&lb, &udp[..cut], &format!("UDP/IPv6 cut to {cut} bytes"));
    }
    let mut bad_ihl = tcp.clone();
    bad_ihl[14] = 0x43;
    assert_passed_untouched(&lb, &bad_ihl, "IHL below 5");
    let mut bad_version = tcp.clone();
    bad_version[14] = 0x65;
    assert_passed_untouched(&lb, &bad_version, "IPv4 ethertype with version 6");
    let mut bad_doff = tcp.clone();
    bad_doff[46] = 0x40;
    assert_passed_untouched(&lb, &bad_doff, "TCP data offset below 5");
    let mut short_total = tcp.clone();
    short_total[16..18].copy_from_slice(&10u16.to_be_bytes());
    assert_passed_untouched(&lb, &short_total, "IPv4 total length shorter than its header");
    let mut ext = tcp6(v6(2), 40000, v6(0x100), 80);
    ext[20] = 0; // hop-by-hop options header first
    assert_passed_untouched(&lb, &ext, "IPv6 extension header");
    assert_eq!(lb.stat(Stat::Forwarded), 0);
    assert!(lb.stat(Stat::PassMalformed) >= 12);
}

#[test]
fn the_same_flow_always_picks_the_same_backend_and_the_hash_agrees_with_user_space() {
    require_root!();
    let lb = Lb::new(CONFIG);
    let web = lb.balancer.service("web").unwrap();
    let mut seen = std::collections::HashSet::new();
    for port in 30000..30100u16 {
        let pkt = tcp4(CLIENT, port, VIP, 80);
        let first = lb.forward(&pkt);
        for _ in 0..3 {
            assert_eq!(lb.forward(&pkt), first, "source port {port}");
        }
        // What user space predicts from the same hash and table (`fj-lb lookup` relies on it).
        let mut key = FlowKey { sport: port, dport: 80, proto: 6, family: 4, ..Default::default() };
        key.src[..4].copy_from_slice(&CLIENT);
        key.dst[..4].copy_from_slice(&VIP);
        let id = web.table[(flow_hash(&key, fj_lb_common::hash::DEFAULT_SEED) % 251) as usize];
        let predicted = web.backends.iter().find(|b| b.id == id).unwrap().address;
        assert_eq!(predicted, first, "source port {port}");
        seen.insert(first);
    }
    assert_eq!(seen.len(), 3, "100 flows spread over all three backends");
}

#[test]
fn established_flows_keep_their_backend_when_one_is_added() {
    require_root!();
    let mut lb = Lb::new(CONFIG);
    let before: Vec<(u16, IpAddr)> = (20000..20200u16).map(|p| (p, lb.forward(&tcp4(CLIENT, p, VIP, 80)))).collect();
    lb.reconfigure(&with_a_fourth_web_backend());
    for (p, b) in &before {
        assert_eq!(lb.forward(&tcp4(CLIENT, *p, VIP, 80)), *b, "established flow from port {p} moved");
    }
    let fresh: Vec<IpAddr> = (50000..50200u16).map(|p| lb.forward(&tcp4(CLIENT, p, VIP, 80))).collect();
    assert!(fresh.iter().any(|b| b.to_string() == "10.0.0.14"), "new flows reach the new backend");
}

#[test]
fn flows_of_a_removed_backend_move_to_a_live_one() {
    require_root!();
    let mut lb = Lb::new(CONFIG);
    let flows: Vec<(u16, IpAddr)> = (20000..20100u16).map(|p| (p, lb.forward(&tcp4(CLIENT, p, VIP, 80)))).collect();
    let shrunk = CONFIG.replacen("  [[service.backend]]\n  address = \"10.0.0.12\"\n", "", 1);
    assert_ne!(shrunk, CONFIG);
    lb.reconfigure(&shrunk);
    let mut moved = 0;
    for (p, b) in &flows {
        let now = lb.forward(&tcp4(CLIENT, *p, VIP, 80));
        assert_ne!(now.to_string(), "10.0.0.12");
        if b.to_string() == "10.0.0.12" {
            moved += 1;
        } else {
            assert_eq!(now, *b, "a flow of a surviving backend stays");
        }
    }
    assert!(moved > 0);
    assert_eq!(lb.stat(Stat::FlowRepinned), moved);
}

/// The flow table is looked up before the services: a flow left behind by a removed service
/// must not be forwarded when its backend id is handed to someone else.
#[test]
fn a_flow_of_a_removed_service_is_not_forwarded_when_its_backend_id_is_reused() {
    require_root!();
    let one = |name: &str, vip: &str, backends: &[&str]| {
        let mut s = format!("interface = \"lb0\"\nflow_table_size = 4096\nmaglev_table_size = 251\nmax_services = 2\nmax_backends = 2\n\n[[service]]\nname = \"{name}\"\nvip = \"{vip}\"\nport = 80\nprotocol = \"tcp\"\n");
        for b in backends {
            s += &format!("  [[service.backend]]\n  address = \"{b}\"\n");
        }
        s
    };
    let mut lb = Lb::new(&one("web", "10.0.0.100", &["10.0.0.11", "10.0.0.12"]));
    let web_ids: Vec<u32> = lb.balancer.service("web").unwrap().backends.iter().map(|b| b.id).collect();
    let flows: Vec<Vec<u8>> = (20000..20040u16).map(|p| tcp4(CLIENT, p, VIP, 80)).collect();
    for f in &flows {
        lb.forward(f);
    }
    // Two reloads later the ids web's backends had belong to a service on another VIP (the
    // pool hands out released ids only once the fresh ones are used up).
    lb.reconfigure(&one("api", "10.0.0.200", &["10.0.0.13"]));
    lb.reconfigure(&one("other", "10.0.0.201", &["10.0.0.14", "10.0.0.15"]));
    let other_ids: Vec<u32> = lb.balancer.service("other").unwrap().backends.iter().map(|b| b.id).collect();
    assert!(other_ids.iter().any(|id| web_ids.contains(id)), "the test needs web's ids reused: web {web_ids:?}, other {other_ids:?}");
    let hits = lb.stat(Stat::FlowHit);
    for f in &flows {
        assert_passed_untouched(&lb, f, "a packet of a removed service's flow");
    }
    assert_eq!(lb.stat(Stat::FlowHit), hits, "no stale flow counts as a hit");
    // The VIP filter learnt the new VIP and forgot the old ones.
    let to = lb.forward(&tcp4(CLIENT, 20000, [10, 0, 0, 201], 80));
    assert!(["10.0.0.14", "10.0.0.15"].contains(&to.to_string().as_str()), "the new service's VIP is balanced, to {to}");
    assert_passed_untouched(&lb, &tcp4(CLIENT, 20001, [10, 0, 0, 200], 80), "api's VIP, removed");
}

#[test]
fn counters_count_packets_and_bytes_per_service_and_backend() {
    require_root!();
    let mut lb = Lb::new(CONFIG);
    let pkt = udp4(CLIENT, 5353, VIP, 53);
    for _ in 0..10 {
        lb.forward(&pkt);
    }
    let dns = lb.balancer.service("dns").unwrap().clone();
    let s = lb.dp.service_counter(dns.id).unwrap();
    assert_eq!((s.packets, s.bytes), (10, 10 * pkt.len() as u64));
    let b = lb.dp.backend_counter(dns.backends[0].id).unwrap();
    assert_eq!(b.packets, 10);
    assert_eq!(lb.stat(Stat::Forwarded), 10);
    assert_eq!(lb.stat(Stat::FlowMiss), 1);
    assert_eq!(lb.stat(Stat::FlowHit), 9);
}

#[test]
fn a_backend_without_a_mac_is_not_sent_traffic() {
    require_root!();
    let cfg = config::parse(CONFIG, "t", &AnyHost).unwrap();
    let mut dp = Dataplane::load(state::sizes(&cfg)).unwrap();
    dp.write_settings(Settings { lb_mac: LB_MAC, alt_mac: [0; 6], hash_seed: cfg.hash_seed, flags: 0, max_new_flows: 0, ..Default::default() }).unwrap();
    let mut b = Balancer::new(&cfg);
    b.apply(&cfg, &HashMap::new(), &mut dp).unwrap();
    let lb = Lb { dp, balancer: b, macs: HashMap::new() };
    let (action, out) = lb.run(&udp4(CLIENT, 5353, VIP, 53));
    assert_eq!(action, XDP_DROP, "no resolvable backend: dropped, not sent to a zero MAC");
    assert_eq!(out, udp4(CLIENT, 5353, VIP, 53));
}

#[test]
fn accept_mode_off_drops_other_traffic_to_the_vip_only() {
    require_root!();
    let mut lb = Lb::new(CONFIG);
    lb.dp.set_not_accepted(&["10.0.0.100".parse().unwrap()]).unwrap();
    lb.dp
        .write_settings(Settings {
            lb_mac: LB_MAC,
            alt_mac: [0; 6],
            hash_seed: fj_lb_common::hash::DEFAULT_SEED,
            flags: fj_lb_common::SETTINGS_NOT_ACCEPTED,
            max_new_flows: 0,
            ..Default::default()
        })
        .unwrap();
    let mut icmp = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, LB_MAC).ipv4(CLIENT, VIP, 64).icmpv4_echo_request(1, 1).write(&mut icmp, b"ping").unwrap();
    assert_eq!(lb.run(&icmp).0, XDP_DROP, "ping to the VIP");
    assert_eq!(lb.run(&tcp4(CLIENT, 40000, VIP, 22)).0, XDP_DROP, "ssh to the VIP");
    assert_eq!(lb.stat(Stat::DropNotAccepted), 2);
    lb.forward(&tcp4(CLIENT, 40000, VIP, 80));
    assert_passed_untouched(&lb, &tcp4(CLIENT, 40000, [10, 0, 0, 10], 22), "ssh to the LB's own address");
}

#[test]
fn frames_for_another_host_are_not_balanced() {
    require_root!();
    let mut lb = Lb::new(CONFIG);
    // A bridge flooding a frame meant for the other LB host (its MAC forgotten, say).
    let mut p = tcp4(CLIENT, 40000, VIP, 80);
    p[..6].copy_from_slice(&[0x02, 0x1b, 0, 0, 0, 0x02]);
    assert_passed_untouched(&lb, &p, "frame for another MAC");
    assert_eq!(lb.stat(Stat::PassOtherHost), 1);
    // The VRRP virtual MAC, when configured, is ours too.
    lb.dp
        .write_settings(Settings { lb_mac: LB_MAC, alt_mac: [0, 0, 0x5e, 0, 1, 51], hash_seed: fj_lb_common::hash::DEFAULT_SEED, flags: 0, max_new_flows: 0, ..Default::default() })
        .unwrap();
    p[..6].copy_from_slice(&[0, 0, 0x5e, 0, 1, 51]);
    let (action, out) = lb.run(&p);
    assert_eq!(action, XDP_TX);
    assert_eq!(&out[6..12], &LB_MAC);
}

#[test]
fn the_helper_programs_load_from_their_own_object_and_behave() {
    require_root!();
    let pkt = tcp4(CLIENT, 40000, VIP, 80);
    let run = |name: &'static str| {
        let ebpf = datapath::load_aux(name).unwrap_or_else(|e| panic!("{name} loads and verifies: {e}"));
        run_program(ebpf.program(name).unwrap().try_into().unwrap(), &pkt)
    };
    assert_eq!(run(program_names::PASS), (XDP_PASS, pkt.clone()), "pass-through: untouched");
    let (action, out) = run(program_names::FLOOR);
    assert_eq!(action, XDP_TX, "floor: sent back");
    assert_eq!((&out[..6], &out[6..12], &out[12..]), (&pkt[6..12], &pkt[..6], &pkt[12..]), "floor: MACs swapped, nothing else");
    // The generator needs live frames and an interface to run; loading verifies it.
    datapath::load_aux(program_names::GENERATOR).expect("the generator loads and verifies");
    datapath::load_aux(program_names::GENERATOR6).expect("the IPv6 generator loads and verifies");
}

#[test]
fn ip_frames_to_a_group_mac_are_never_balanced() {
    require_root!();
    let mut lb = Lb::new(CONFIG);
    // A switch floods these to every LB host; balancing them would forward each once per host.
    for (dst, what) in [([0xff; 6], "broadcast"), ([0x01, 0x00, 0x5e, 0, 0, 0x12], "IPv4 multicast MAC")] {
        let mut p = tcp4(CLIENT, 40000, VIP, 80);
        p[..6].copy_from_slice(&dst);
        assert_passed_untouched(&lb, &p, what);
    }
    assert_eq!(lb.stat(Stat::PassMulticast), 2);
    assert_eq!(lb.stat(Stat::Forwarded), 0);
}

#[test]
fn above_the_new_flow_cap_new_flows_are_forwarded_but_not_inserted() {
    require_root!();
    let mut lb = Lb::new(CONFIG);
    let established = tcp4(CLIENT, 1000, VIP, 80);
    let home = lb.forward(&established);
    lb.dp
        .write_settings(Settings { lb_mac: LB_MAC, alt_mac: [0; 6], hash_seed: fj_lb_common::hash::DEFAULT_SEED, flags: 0, max_new_flows: 3, ..Default::default() })
        .unwrap();
    // The window is per CPU: stay on one, or each CPU would grant its own 3.
    let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    unsafe { libc::CPU_SET(0, &mut one) };
    assert_eq!(unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &one) }, 0, "pinning the test to CPU 0");
    // Without a cap the window was never touched, so these open one: 3 are inserted, the rest
    // forwarded by hash only.
    for port in 2000..2010 {
        lb.forward(&tcp4(CLIENT, port, VIP, 80));
    }
    assert_eq!(lb.stat(Stat::FlowInsertSkipped), 7, "3 inserted, 7 skipped");
    let in_table = lb.dp.flows().keys().filter_map(Result::ok).filter(|k| (2000..2010).contains(&k.sport)).count();
    assert_eq!(in_table, 3);
    // Established flows are untouched and still hit.
    let hits = lb.stat(Stat::FlowHit);
    assert_eq!(lb.forward(&established), home);
    assert_eq!(lb.stat(Stat::FlowHit), hits + 1);
}

// Layer-3 direct return and the awkward packets (issue 10), one file per concern.
#[path = "xdp_program/l3.rs"]
mod l3;
#[path = "xdp_program/icmp.rs"]
mod icmp;
#[path = "xdp_program/fragments.rs"]
mod fragments;
#[path = "xdp_program/lengths.rs"]
mod lengths;
#[path = "xdp_program/decap.rs"]
mod decap;
#[path = "xdp_program/model.rs"]
mod model;
// `fj-lb trace` (issue 16).
#[path = "xdp_program/trace.rs"]
mod trace;
