//! Layer-3 direct return: every encapsulation byte for byte (4in4, 6in6, 4in6, GUE over IPv4
//! and IPv6), the next hop's MAC, the outer source derived from the flow, GUE's checksum
//! derived from the inner one, and the packet-too-big replies.
use std::net::IpAddr;

use fj_lb::model::{addr::addr_bytes, balancer::NextHop, checksum::internet};

use super::*;

pub const L3_CONFIG: &str = r#"
interface = "lb0"
flow_table_size = 4096
maglev_table_size = 251
max_services = 16
max_backends = 16

[[service]]
name = "ipip4"
vip = "10.0.0.200"
port = 80
protocol = "tcp"
forward = "ipip"
  [[service.backend]]
  address = "10.1.0.11"

[[service]]
name = "ipip6"
vip = "2001:db8::200"
port = 80
protocol = "tcp"
forward = "ipip"
  [[service.backend]]
  address = "2001:db8:1::11"

[[service]]
name = "ipip46"
vip = "10.0.0.201"
port = 80
protocol = "tcp"
forward = "ipip"
  [[service.backend]]
  address = "2001:db8:1::12"

[[service]]
name = "gue4"
vip = "10.0.0.202"
port = 80
protocol = "tcp"
forward = "gue"
  [[service.backend]]
  address = "10.1.0.12"

[[service]]
name = "gue6"
vip = "2001:db8::202"
port = 80
protocol = "tcp"
forward = "gue"
gue_port = 7000
  [[service.backend]]
  address = "2001:db8:1::13"

[[service]]
name = "gue46"
vip = "10.0.0.203"
port = 53
protocol = "udp"
forward = "gue"
  [[service.backend]]
  address = "2001:db8:1::14"

[[service]]
name = "gue4udp"
vip = "10.0.0.202"
port = 53
protocol = "udp"
forward = "gue"
  [[service.backend]]
  address = "10.1.0.12"
"#;

/// The router every layer-3 backend is reached through, and its MAC.
pub const ROUTER_MAC: Mac = [0x02, 0x77, 0, 0, 0, 0x01];

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

impl Lb {
    /// A balancer for `text` whose layer-3 backends are reached through `ROUTER_MAC` with a
    /// path MTU of `mtu`, with the config's data-path settings (encapsulation prefixes, ICMP
    /// rate).
    pub fn l3(text: &str, mtu: u16) -> Lb {
        let cfg = config::parse(text, "test.toml", &AnyHost).expect("test config is valid");
        let mut dp = Dataplane::load(state::sizes(&cfg)).expect("XDP program loads and verifies (run as root)");
        let base = Settings { lb_mac: LB_MAC, ..Default::default() };
        dp.write_settings(Settings { max_new_flows: 0, ..state::settings_for(&cfg, base) }).unwrap();
        let mut macs: HashMap<IpAddr, Mac> = HashMap::new();
        let mut hops = HashMap::new();
        for s in &cfg.services {
            for b in &s.backends {
                macs.insert(b.address, mac_of(b.address));
                if s.forward.is_l3() {
                    hops.insert(b.address, NextHop { mac: ROUTER_MAC, mtu });
                }
            }
        }
        let mut balancer = Balancer::new(&cfg);
        balancer.set_next_hops(hops);
        balancer.apply(&cfg, &macs, &mut dp).expect("maps filled");
        Lb { dp, balancer, macs }
    }

    /// Runs a packet that must leave encapsulated; returns the output frame.
    pub fn encapsulated(&self, pkt: &[u8]) -> Vec<u8> {
        let (action, out) = self.run(pkt);
        assert_eq!(action, XDP_TX, "an encapsulated packet is sent back out (XDP_TX)");
        out
    }
}

/// The outer source's entropy as the README documents it: the client's address folded to 32
/// bits (XOR of its words), XOR its port times 0x9e3779b1.
pub fn entropy(client: IpAddr, sport: u16) -> u32 {
    let b = addr_bytes(client).0;
    let w = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    w(0) ^ w(4) ^ w(8) ^ w(12) ^ (sport as u32).wrapping_mul(0x9e37_79b1)
}

pub fn entropy16(e: u32) -> u16 {
    (e ^ (e >> 16)) as u16
}

/// The outer IPv4 source for a flow: 172.16.x.y, x.y from the entropy.
pub fn outer_src4(client: IpAddr, sport: u16) -> [u8; 4] {
    let e = entropy16(entropy(client, sport)).to_be_bytes();
    [172, 16, e[0], e[1]]
}

/// The outer IPv6 source for a flow: 100::/64, then 0000:0000 and the entropy.
pub fn outer_src6(client: IpAddr, sport: u16) -> [u8; 16] {
    let e = entropy(client, sport).to_be_bytes();
    [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, e[0], e[1], e[2], e[3]]
}

/// The inner packet's TOS / traffic class.
fn tos(inner: &[u8]) -> u8 {
    if inner[0] >> 4 == 4 { inner[1] } else { (inner[0] << 4) | (inner[1] >> 4) }
}

/// An outer IPv4 header: DF, id 0, TTL 64, the inner TOS, RFC 1071 checksum.
pub fn outer4(src: [u8; 4], dst: [u8; 4], proto: u8, payload: &[u8]) -> Vec<u8> {
    let len = (20 + payload.len()) as u16;
    let mut h = vec![0x45, tos(payload_inner(proto, payload))];
    h.extend_from_slice(&len.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    let sum = internet(&[&h]);
    h[10..12].copy_from_slice(&sum.to_be_bytes());
    h
}

/// An outer IPv6 header: the inner traffic class, the flow's entropy as flow label, hop
/// limit 64.
pub fn outer6(src: [u8; 16], dst: [u8; 16], next: u8, label: u32, payload: &[u8]) -> Vec<u8> {
    let vtc = (6u32 << 28) | ((tos(payload_inner(next, payload)) as u32) << 20) | (label & 0xfffff);
    let mut h = vtc.to_be_bytes().to_vec();
    h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    h.extend_from_slice(&[next, 64]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h
}

/// The inner IP packet inside an outer payload (past the UDP header of GUE).
fn payload_inner(proto: u8, payload: &[u8]) -> &[u8] {
    if proto == 17 { &payload[8..] } else { payload }
}

/// A GUE UDP header and the inner packet, the checksum computed in full over the outer
/// pseudo-header (what the program derives from the inner checksum must equal it).
pub fn gue(src: &[u8], dst: &[u8], sport: u16, dport: u16, inner: &[u8]) -> Vec<u8> {
    let len = (8 + inner.len()) as u16;
    let mut udp = sport.to_be_bytes().to_vec();
    udp.extend_from_slice(&dport.to_be_bytes());
    udp.extend_from_slice(&len.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    let pseudo: Vec<u8> = if src.len() == 4 {
        [src, dst, &[0, 17], &len.to_be_bytes()].concat()
    } else {
        [src, dst, &(len as u32).to_be_bytes(), &[0, 0, 0, 17]].concat()
    };
    let sum = match internet(&[&pseudo, &udp, inner]) {
        0 => 0xffff,
        s => s,
    };
    udp[6..8].copy_from_slice(&sum.to_be_bytes());
    udp.extend_from_slice(inner);
    udp
}

pub fn frame(dst: Mac, ethertype: u16, l3: &[u8]) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&LB_MAC);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(l3);
    f
}

fn v4(s: &str) -> [u8; 4] {
    match ip(s) {
        IpAddr::V4(a) => a.octets(),
        _ => panic!("{s} is not IPv4"),
    }
}

fn v6a(s: &str) -> [u8; 16] {
    match ip(s) {
        IpAddr::V6(a) => a.octets(),
        _ => panic!("{s} is not IPv6"),
    }
}

#[test]
fn ipip_4in4_wraps_the_packet_in_an_outer_ipv4_header_to_the_backend_via_its_next_hop() {
    require_root!();
    let mut lb = Lb::l3(L3_CONFIG, 1500);
    let pkt = tcp4(CLIENT, 40000, [10, 0, 0, 200], 80);
    let out = lb.encapsulated(&pkt);
    let inner = &pkt[14..];
    let want = frame(ROUTER_MAC, 0x0800, &[outer4(outer_src4(ip("10.0.0.2"), 40000), v4("10.1.0.11"), 4, inner), inner.to_vec()].concat());
    assert_eq!(out, want, "4in4: next hop's MAC, outer IPv4 (DF, TTL 64, checksum), the packet untouched");
    assert_eq!(lb.stat(Stat::ForwardedIpip), 1);
    assert_eq!(lb.stat(Stat::Forwarded), 1);
}

#[test]
fn ipip_6in6_wraps_the_packet_in_an_outer_ipv6_header() {
    require_root!();
    let lb = Lb::l3(L3_CONFIG, 1500);
    let client = v6(2);
    let pkt = tcp6(client, 40000, v6a("2001:db8::200"), 80);
    let out = lb.encapsulated(&pkt);
    let inner = &pkt[14..];
    let e = entropy(IpAddr::from(client), 40000);
    let want = frame(ROUTER_MAC, 0x86dd, &[outer6(outer_src6(IpAddr::from(client), 40000), v6a("2001:db8:1::11"), 41, e, inner), inner.to_vec()].concat());
    assert_eq!(out, want);
}

#[test]
fn ipip_4in6_carries_an_ipv4_flow_to_an_ipv6_backend() {
    require_root!();
    let lb = Lb::l3(L3_CONFIG, 1500);
    let mut pkt = tcp4(CLIENT, 40001, [10, 0, 0, 201], 80);
    // A TOS of 0x28 (AF11) travels in the outer traffic class.
    pkt[15] = 0x28;
    let sum = etherparse::Ipv4HeaderSlice::from_slice(&pkt[14..34]).unwrap().to_header().calc_header_checksum();
    pkt[24..26].copy_from_slice(&sum.to_be_bytes());
    let out = lb.encapsulated(&pkt);
    let inner = &pkt[14..];
    let e = entropy(ip("10.0.0.2"), 40001);
    let want = frame(ROUTER_MAC, 0x86dd, &[outer6(outer_src6(ip("10.0.0.2"), 40001), v6a("2001:db8:1::12"), 4, e, inner), inner.to_vec()].concat());
    assert_eq!(out, want);
    assert_eq!(out[14] & 0x0f, 0x02 & 0x0f, "traffic class 0x28 starts in the first byte's low nibble");
}

#[test]
fn gue_over_ipv4_has_a_udp_header_with_the_flows_entropy_and_a_checksum_derived_from_the_inner_one() {
    require_root!();
    let lb = Lb::l3(L3_CONFIG, 1500);
    for (pkt, sport) in [(tcp4(CLIENT, 40002, [10, 0, 0, 202], 80), 40002), (udp4(CLIENT, 5300, [10, 0, 0, 202], 53), 5300)] {
        let out = lb.encapsulated(&pkt);
        let inner = &pkt[14..];
        let src = outer_src4(ip("10.0.0.2"), sport);
        let dst = v4("10.1.0.12");
        let udp = gue(&src, &dst, entropy16(entropy(ip("10.0.0.2"), sport)), 6080, inner);
        let want = frame(ROUTER_MAC, 0x0800, &[outer4(src, dst, 17, &udp), udp].concat());
        assert_eq!(out, want, "GUE/IPv4 of {}", if pkt[23] == 6 { "TCP" } else { "UDP" });
    }
}

#[test]
fn gue_over_ipv6_to_the_services_port_and_gue_4in6() {
    require_root!();
    let lb = Lb::l3(L3_CONFIG, 1500);
    let client = IpAddr::from(v6(2));
    let pkt = tcp6(v6(2), 40003, v6a("2001:db8::202"), 80);
    let inner = &pkt[14..];
    let src = outer_src6(client, 40003);
    let dst = v6a("2001:db8:1::13");
    let e = entropy(client, 40003);
    let udp = gue(&src, &dst, entropy16(e), 7000, inner);
    assert_eq!(lb.encapsulated(&pkt), frame(ROUTER_MAC, 0x86dd, &[outer6(src, dst, 17, e, &udp), udp.clone()].concat()), "gue_port = 7000");

    let pkt = udp4(CLIENT, 5301, [10, 0, 0, 203], 53);
    let inner = &pkt[14..];
    let src = outer_src6(ip("10.0.0.2"), 5301);
    let dst = v6a("2001:db8:1::14");
    let e = entropy(ip("10.0.0.2"), 5301);
    let udp = gue(&src, &dst, entropy16(e), 6080, inner);
    assert_eq!(lb.encapsulated(&pkt), frame(ROUTER_MAC, 0x86dd, &[outer6(src, dst, 17, e, &udp), udp].concat()), "GUE 4in6");
}

#[test]
fn gue_sends_checksum_zero_when_the_inner_one_cannot_be_reused() {
    require_root!();
    let lb = Lb::l3(L3_CONFIG, 1500);
    // UDP without a checksum (IPv4 allows it): no inner sum to derive from.
    let mut pkt = udp4(CLIENT, 5302, [10, 0, 0, 202], 53);
    pkt[40..42].copy_from_slice(&[0, 0]);
    let out = lb.encapsulated(&pkt);
    assert_eq!(&out[14 + 20 + 6..14 + 20 + 8], &[0, 0], "outer UDP checksum zero");
    assert_eq!(&out[14 + 28..], &pkt[14..], "inner untouched");
}

#[test]
fn one_flow_always_gets_the_same_outer_header_and_flows_spread_over_sources() {
    require_root!();
    let lb = Lb::l3(L3_CONFIG, 1500);
    let mut sources = std::collections::HashSet::new();
    for port in 41000..41064u16 {
        let pkt = tcp4(CLIENT, port, [10, 0, 0, 200], 80);
        let a = lb.encapsulated(&pkt);
        assert_eq!(lb.encapsulated(&pkt), a, "port {port}: the same flow, the same frame");
        sources.insert(a[26..30].to_vec());
    }
    assert!(sources.len() >= 60, "64 flows from one client have {} distinct outer sources", sources.len());
}

#[test]
fn dsr_services_keep_the_backends_own_mac_even_with_next_hops_known() {
    require_root!();
    // A backend of a DSR service must get its own MAC, never a router's (the router would
    // send the VIP's packet back to the LB).
    let text = format!("{L3_CONFIG}\n[[service]]\nname = \"dsr\"\nvip = \"10.0.0.204\"\nport = 80\nprotocol = \"tcp\"\n  [[service.backend]]\n  address = \"10.1.0.11\"\n");
    let lb = Lb::l3(&text, 1500);
    let pkt = tcp4(CLIENT, 40000, [10, 0, 0, 204], 80);
    let (action, out) = lb.run(&pkt);
    assert_eq!(action, XDP_TX);
    assert_eq!(&out[..6], &mac_of(ip("10.1.0.11")), "the backend's own MAC");
    assert_eq!(&out[6..], &[&LB_MAC[..], &pkt[12..]].concat()[..], "nothing else changes");
}

/// A TCP packet to `dst`:80 of IP length `len` (DF unless `df` is false).
pub fn big_tcp4(dst: [u8; 4], sport: u16, len: usize, df: bool) -> Vec<u8> {
    let mut v = Vec::new();
    let b = PacketBuilder::ethernet2(CLIENT_MAC, LB_MAC).ipv4(CLIENT, dst, 64).tcp(sport, 80, 1000, 64240).ack(1);
    b.write(&mut v, &vec![0x5a; len - 40]).unwrap();
    // etherparse sets DF by default.
    if df {
        v[20] |= 0x40;
    } else {
        v[20] &= !0x40;
    }
    v[24..26].copy_from_slice(&[0, 0]);
    let sum = etherparse::Ipv4HeaderSlice::from_slice(&v[14..34]).unwrap().to_header().calc_header_checksum();
    v[24..26].copy_from_slice(&sum.to_be_bytes());
    v
}

/// The fragmentation-needed reply to `pkt` fj-lb builds: from the VIP to the client's MAC,
/// the first 128 bytes of the packet quoted.
fn frag_needed(pkt: &[u8], mtu: u16) -> Vec<u8> {
    let quote = &pkt[14..14 + 128];
    let mut icmp = vec![3, 4, 0, 0, 0, 0];
    icmp.extend_from_slice(&mtu.to_be_bytes());
    icmp.extend_from_slice(quote);
    let sum = internet(&[&icmp]);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    let len = (20 + icmp.len()) as u16;
    let mut ip4 = vec![0x45, 0];
    ip4.extend_from_slice(&len.to_be_bytes());
    ip4.extend_from_slice(&[0, 0, 0, 0, 64, 1, 0, 0]);
    ip4.extend_from_slice(&pkt[30..34]);
    ip4.extend_from_slice(&pkt[26..30]);
    let sum = internet(&[&ip4]);
    ip4[10..12].copy_from_slice(&sum.to_be_bytes());
    let mut f = pkt[6..12].to_vec();
    f.extend_from_slice(&pkt[0..6]);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&ip4);
    f.extend_from_slice(&icmp);
    f
}

#[test]
fn a_packet_too_big_once_encapsulated_is_answered_with_fragmentation_needed() {
    require_root!();
    let mut lb = Lb::l3(L3_CONFIG, 1500);
    // 1,480 bytes fit (1,500 with the outer header); 1,481 do not.
    lb.encapsulated(&big_tcp4([10, 0, 0, 200], 42000, 1480, true));
    let pkt = big_tcp4([10, 0, 0, 200], 42000, 1481, true);
    let (action, out) = lb.run(&pkt);
    assert_eq!(action, XDP_TX, "answered");
    assert_eq!(out, frag_needed(&pkt, 1480), "ICMP 3/4 from the VIP with MTU 1500 − 20");
    assert_eq!(lb.stat(Stat::IcmpTooBigSent), 1);
    // GUE's overhead is 28.
    let pkt = big_tcp4([10, 0, 0, 202], 42000, 1473, true);
    assert_eq!(lb.run(&pkt), (XDP_TX, frag_needed(&pkt, 1472)));
    // Without DF nothing may be sent back, and XDP cannot fragment: dropped.
    let pkt = big_tcp4([10, 0, 0, 200], 42000, 1481, false);
    assert_eq!(lb.run(&pkt), (XDP_DROP, pkt.clone()));
    assert_eq!(lb.stat(Stat::DropTooBig), 1);
}

#[test]
fn the_path_mtu_of_the_next_hop_is_what_must_fit() {
    require_root!();
    let lb = Lb::l3(L3_CONFIG, 1400);
    lb.encapsulated(&big_tcp4([10, 0, 0, 200], 42000, 1380, true));
    let pkt = big_tcp4([10, 0, 0, 200], 42000, 1381, true);
    assert_eq!(lb.run(&pkt), (XDP_TX, frag_needed(&pkt, 1380)));
}

#[test]
fn ipv6_too_big_is_answered_with_packet_too_big() {
    require_root!();
    let mut lb = Lb::l3(L3_CONFIG, 1500);
    let client = v6(2);
    let mut pkt = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, LB_MAC)
        .ipv6(client, v6a("2001:db8::200"), 64)
        .tcp(43000, 80, 1, 64240)
        .ack(1)
        .write(&mut pkt, &vec![0x6b; 1461 - 60])
        .unwrap();
    assert_eq!(pkt.len() - 14, 1461, "IPv6 packet of 1,461 bytes: 1,501 with the outer header");
    let (action, out) = lb.run(&pkt);
    assert_eq!(action, XDP_TX);
    let quote = &pkt[14..14 + 128];
    let vip = v6a("2001:db8::200");
    let mut icmp = vec![2, 0, 0, 0];
    icmp.extend_from_slice(&1460u32.to_be_bytes());
    icmp.extend_from_slice(quote);
    let len = icmp.len() as u32;
    let pseudo = [&vip[..], &client[..], &len.to_be_bytes(), &[0, 0, 0, 58]].concat();
    let sum = internet(&[&pseudo, &icmp]);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    let mut want = CLIENT_MAC.to_vec();
    want.extend_from_slice(&LB_MAC);
    want.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
    want.extend_from_slice(&(len as u16).to_be_bytes());
    want.extend_from_slice(&[58, 64]);
    want.extend_from_slice(&vip);
    want.extend_from_slice(&client);
    want.extend_from_slice(&icmp);
    assert_eq!(out, want, "ICMPv6 packet too big from the VIP, MTU 1500 − 40");
    assert_eq!(lb.stat(Stat::IcmpTooBigSent), 1);
}

#[test]
fn too_big_replies_are_rate_limited_per_cpu() {
    require_root!();
    let mut lb = Lb::l3(L3_CONFIG, 1500);
    lb.update_settings(|s| s.icmp_too_big_per_cpu = 2);
    // The window is per CPU: stay on one.
    let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    unsafe { libc::CPU_SET(0, &mut one) };
    assert_eq!(unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &one) }, 0, "pinning the test to CPU 0");
    let pkt = big_tcp4([10, 0, 0, 200], 42001, 1481, true);
    let actions: Vec<u32> = (0..5).map(|_| lb.run(&pkt).0).collect();
    assert_eq!(actions, [XDP_TX, XDP_TX, XDP_DROP, XDP_DROP, XDP_DROP]);
    assert_eq!((lb.stat(Stat::IcmpTooBigSent), lb.stat(Stat::DropTooBigRateLimited)), (2, 3));
    lb.update_settings(|s| s.icmp_too_big_per_cpu = 0);
    assert_eq!(lb.run(&pkt).0, XDP_DROP, "0: never answered");
}
