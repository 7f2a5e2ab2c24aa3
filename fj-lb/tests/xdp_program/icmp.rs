//! ICMP errors about a balanced flow go to that flow's backend (flow table first, else
//! Maglev, never inserting), layer 2 and layer 3; neighbour discovery is never dropped.
use std::net::IpAddr;

use fj_lb::model::checksum::internet;

use super::{
    l3::{L3_CONFIG, ROUTER_MAC, ip, outer_src4},
    *,
};

/// A router on the path back to the client.
const ROUTER: [u8; 4] = [10, 0, 0, 1];

/// The first 28 bytes of a packet the backend sent from `vip`:`vport` to `client`:`cport`
/// (IPv4 header claiming 60 bytes, then the transport's first 8 bytes), as routers quote it.
fn quoted4(vip: [u8; 4], vport: u16, client: [u8; 4], cport: u16, proto: u8) -> Vec<u8> {
    let mut h = vec![0x45, 0, 0, 60, 0x12, 0x34, 0x40, 0, 63, proto, 0, 0];
    h.extend_from_slice(&vip);
    h.extend_from_slice(&client);
    let sum = internet(&[&h]);
    h[10..12].copy_from_slice(&sum.to_be_bytes());
    h.extend_from_slice(&vport.to_be_bytes());
    h.extend_from_slice(&cport.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0x30, 0x39]);
    h
}

/// ICMPv4 `kind`/`code` from the router to `vip` about the backend's packet to `cport`.
pub fn icmp4(kind: u8, code: u8, rest: [u8; 4], vip: [u8; 4], vport: u16, cport: u16, proto: u8) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, LB_MAC)
        .ipv4(ROUTER, vip, 64)
        .icmpv4_raw(kind, code, rest)
        .write(&mut v, &quoted4(vip, vport, CLIENT, cport, proto))
        .unwrap();
    v
}

/// ICMPv6 `kind` from a router to `vip` about the backend's packet to `client`:`cport`.
fn icmp6(kind: u8, rest: [u8; 4], vip: [u8; 16], vport: u16, client: [u8; 16], cport: u16) -> Vec<u8> {
    let mut inner = vec![0x60, 0, 0, 0, 0, 20, 6, 63];
    inner.extend_from_slice(&vip);
    inner.extend_from_slice(&client);
    inner.extend_from_slice(&vport.to_be_bytes());
    inner.extend_from_slice(&cport.to_be_bytes());
    inner.extend_from_slice(&[0, 0, 0x30, 0x39]);
    let mut v = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, LB_MAC).ipv6(v6(1), vip, 64).icmpv6_raw(kind, 0, rest).write(&mut v, &inner).unwrap();
    v
}

const MTU_1400: [u8; 4] = [0, 0, 0x05, 0x78];

fn flows(lb: &mut Lb) -> usize {
    lb.dp.flows().keys().count()
}

#[test]
fn fragmentation_needed_about_a_flow_goes_to_its_backend_by_maglev_without_a_flow_entry() {
    require_root!();
    let mut lb = Lb::new(CONFIG);
    for port in 30000..30040u16 {
        let icmp = icmp4(3, 4, MTU_1400, VIP, 80, port, 6);
        let before = flows(&mut lb);
        let (action, out) = lb.run(&icmp);
        assert_eq!(action, XDP_TX, "steered");
        assert_eq!(&out[6..], &[&LB_MAC[..], &icmp[12..]].concat()[..], "only the MACs change (layer 2)");
        assert_eq!(flows(&mut lb), before, "an ICMP error never inserts a flow");
        // The flow it is about, when it comes, goes to the same backend.
        let dst: Mac = out[..6].try_into().unwrap();
        let flow_backend = lb.forward(&tcp4(CLIENT, port, VIP, 80));
        assert_eq!(mac_of(flow_backend), dst, "port {port}");
    }
    assert_eq!(lb.stat(Stat::IcmpSteered), 40);
}

#[test]
fn an_icmp_error_follows_the_flow_table_where_maglev_would_now_pick_another_backend() {
    require_root!();
    let mut lb = Lb::new(CONFIG);
    let before: Vec<(u16, IpAddr)> = (20000..20200u16).map(|p| (p, lb.forward(&tcp4(CLIENT, p, VIP, 80)))).collect();
    lb.reconfigure(&with_a_fourth_web_backend());
    let web = lb.balancer.service("web").unwrap().clone();
    let mut moved = 0;
    for (port, backend) in &before {
        let mut key = FlowKey { sport: *port, dport: 80, proto: 6, family: 4, ..Default::default() };
        key.src[..4].copy_from_slice(&CLIENT);
        key.dst[..4].copy_from_slice(&VIP);
        let id = web.table[(flow_hash(&key, fj_lb_common::hash::DEFAULT_SEED) % 251) as usize];
        if web.backends.iter().find(|b| b.id == id).unwrap().address != *backend {
            moved += 1;
        }
        let (action, out) = lb.run(&icmp4(3, 3, [0; 4], VIP, 80, *port, 6));
        assert_eq!(action, XDP_TX);
        assert_eq!(&out[..6], &mac_of(*backend), "port {port}: the error goes where the flow is pinned");
    }
    assert!(moved > 0, "some flows' Maglev slot moved to the new backend");
}

#[test]
fn icmpv6_packet_too_big_and_destination_unreachable_are_steered() {
    require_root!();
    let mut lb = Lb::new(CONFIG);
    let vip = v6(0x100);
    for (kind, rest) in [(2u8, 1400u32.to_be_bytes()), (1, [0; 4])] {
        let icmp = icmp6(kind, rest, vip, 80, v6(2), 40000);
        let (action, out) = lb.run(&icmp);
        assert_eq!(action, XDP_TX, "ICMPv6 type {kind}");
        let want = lb.forward(&tcp6(v6(2), 40000, vip, 80));
        assert_eq!(&out[..6], &mac_of(want), "type {kind} goes to the flow's backend");
        assert_eq!(&out[12..], &icmp[12..]);
    }
    assert_eq!(lb.stat(Stat::IcmpSteered), 2);
}

#[test]
fn icmp_errors_about_other_traffic_and_echo_pass_to_the_host() {
    require_root!();
    let mut lb = Lb::new(CONFIG);
    assert_passed_untouched(&lb, &icmp4(3, 4, MTU_1400, VIP, 22, 40000, 6), "about VIP:22, no service");
    assert_passed_untouched(&lb, &icmp4(3, 4, MTU_1400, VIP, 80, 40000, 1), "about ICMP");
    assert_passed_untouched(&lb, &icmp4(11, 0, [0; 4], VIP, 80, 40000, 6), "time exceeded: not steered");
    let mut other = icmp4(3, 4, MTU_1400, VIP, 80, 40000, 6);
    other[42 + 12..42 + 16].copy_from_slice(&[10, 0, 0, 99]);
    assert_passed_untouched(&lb, &other, "the quoted packet was not sent from the VIP it came to");
    assert_eq!(lb.stat(Stat::PassIcmpNotService), 3);
    assert_eq!(lb.stat(Stat::PassNotL4), 1);
    assert_eq!(lb.stat(Stat::IcmpSteered), 0);
}

#[test]
fn icmp_errors_go_encapsulated_to_layer_3_backends_with_the_flows_outer_header() {
    require_root!();
    let mut lb = Lb::l3(L3_CONFIG, 1500);
    let icmp = icmp4(3, 4, MTU_1400, [10, 0, 0, 200], 80, 40000, 6);
    let out = lb.encapsulated(&icmp);
    assert_eq!(&out[..6], &ROUTER_MAC);
    assert_eq!(out[14 + 9], 4, "IPIP");
    assert_eq!(&out[26..30], &outer_src4(ip("10.0.0.2"), 40000), "the outer source of the flow's own packets");
    assert_eq!(&out[34..], &icmp[14..], "the ICMP packet untouched inside");
    let data = lb.encapsulated(&tcp4(CLIENT, 40000, [10, 0, 0, 200], 80));
    assert_eq!(&out[26..34], &data[26..34], "same outer addresses as the flow");
    assert_eq!(lb.stat(Stat::IcmpSteered), 1);
    // GUE: the error is not TCP or UDP, so the outer checksum is zero.
    let icmp = icmp4(3, 4, MTU_1400, [10, 0, 0, 202], 80, 40000, 6);
    let out = lb.encapsulated(&icmp);
    assert_eq!((out[14 + 9], &out[40..42]), (17, &[0u8, 0][..]));
    assert_eq!(&out[42..], &icmp[14..]);
}

#[test]
fn icmpv6_packet_too_big_goes_6in6_to_a_layer_3_backend() {
    require_root!();
    let lb = Lb::l3(L3_CONFIG, 1500);
    let vip: [u8; 16] = "2001:db8::200".parse::<std::net::Ipv6Addr>().unwrap().octets();
    let icmp = icmp6(2, 1400u32.to_be_bytes(), vip, 80, v6(2), 40000);
    let out = lb.encapsulated(&icmp);
    let data = lb.encapsulated(&tcp6(v6(2), 40000, vip, 80));
    assert_eq!((&out[..6], &out[12..14], out[14 + 6]), (&ROUTER_MAC[..], &[0x86, 0xdd][..], 41), "IP6IP6 to the router");
    assert_eq!(&out[14 + 8..14 + 40], &data[14 + 8..14 + 40], "the flow's outer addresses");
    assert_eq!(&out[54..], &icmp[14..], "the ICMPv6 packet untouched inside");
}

#[test]
fn neighbour_discovery_for_a_virtual_address_passes_even_without_accept_mode() {
    require_root!();
    let mut lb = Lb::new(CONFIG);
    let vip = v6(0x100);
    lb.dp.set_not_accepted(&[IpAddr::from(vip)]).unwrap();
    lb.update_settings(|s| s.flags |= fj_lb_common::SETTINGS_NOT_ACCEPTED);
    // A unicast neighbour solicitation for the VIP (a reachability probe), and an
    // advertisement: RFC 4861 needs them answered and taken.
    for kind in [135u8, 136] {
        let mut ns = Vec::new();
        let mut body = vip.to_vec();
        body.extend_from_slice(&[1, 1]);
        body.extend_from_slice(&CLIENT_MAC);
        PacketBuilder::ethernet2(CLIENT_MAC, LB_MAC).ipv6(v6(2), vip, 255).icmpv6_raw(kind, 0, [0; 4]).write(&mut ns, &body).unwrap();
        assert_passed_untouched(&lb, &ns, &format!("ICMPv6 {kind} to the VIP"));
    }
    assert_eq!(lb.stat(Stat::PassNeighbourDiscovery), 2);
    // RFC 5798's rule still holds for everything else: an echo request to the VIP is dropped.
    let mut echo = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, LB_MAC).ipv6(v6(2), vip, 64).icmpv6_echo_request(1, 1).write(&mut echo, b"ping").unwrap();
    assert_eq!(lb.run(&echo).0, XDP_DROP);
    assert_eq!(lb.stat(Stat::DropNotAccepted), 1);
}
