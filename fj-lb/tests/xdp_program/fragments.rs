//! Fragments of balanced datagrams follow their first fragment to its backend, in and out of
//! order, IPv4 and IPv6, layer 2 and layer 3; never to another backend.
use super::{
    l3::{L3_CONFIG, ROUTER_MAC},
    *,
};

/// An IPv4 fragment of a UDP datagram: `offset8` in 8-byte units, `more` the MF bit, `body`
/// the fragment's payload (for offset 0, starting with the UDP header).
fn frag4(src: [u8; 4], dst: [u8; 4], id: u16, offset8: u16, more: bool, body: &[u8]) -> Vec<u8> {
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&((20 + body.len()) as u16).to_be_bytes());
    ip.extend_from_slice(&id.to_be_bytes());
    ip.extend_from_slice(&(offset8 | if more { 0x2000 } else { 0 }).to_be_bytes());
    ip.extend_from_slice(&[64, 17, 0, 0]);
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    let sum = fj_lb::model::checksum::internet(&[&ip]);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    let mut f = LB_MAC.to_vec();
    f.extend_from_slice(&CLIENT_MAC);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&ip);
    f.extend_from_slice(body);
    f
}

/// The three fragments of a 2,000-byte UDP datagram from CLIENT:`sport` to `dst`:`dport`.
fn datagram4(dst: [u8; 4], sport: u16, dport: u16, id: u16) -> [Vec<u8>; 3] {
    let mut udp = sport.to_be_bytes().to_vec();
    udp.extend_from_slice(&dport.to_be_bytes());
    udp.extend_from_slice(&2008u16.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(&[0xab; 2000]);
    [
        frag4(CLIENT, dst, id, 0, true, &udp[..800]),
        frag4(CLIENT, dst, id, 100, true, &udp[800..1600]),
        frag4(CLIENT, dst, id, 200, false, &udp[1600..]),
    ]
}

/// An IPv6 fragment (fragment header, next header UDP) of a datagram with identification `id`.
fn frag6(src: [u8; 16], dst: [u8; 16], id: u32, offset8: u16, more: bool, body: &[u8]) -> Vec<u8> {
    let mut f = LB_MAC.to_vec();
    f.extend_from_slice(&CLIENT_MAC);
    f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
    f.extend_from_slice(&((8 + body.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[44, 64]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&[17, 0]);
    f.extend_from_slice(&((offset8 << 3) | more as u16).to_be_bytes());
    f.extend_from_slice(&id.to_be_bytes());
    f.extend_from_slice(body);
    f
}

#[test]
fn fragments_in_order_follow_the_first_to_its_backend() {
    require_root!();
    let mut lb = Lb::new(CONFIG);
    let [first, second, last] = datagram4(VIP, 5353, 53, 77);
    assert_eq!(lb.forward(&first).to_string(), "10.0.0.11");
    assert_eq!(lb.forward(&second).to_string(), "10.0.0.11");
    assert_eq!(lb.forward(&last).to_string(), "10.0.0.11");
    assert_eq!((lb.stat(Stat::FragmentTracked), lb.stat(Stat::FragmentFollowed)), (1, 2));
}

#[test]
fn fragments_never_reach_another_backend_than_their_first() {
    require_root!();
    let lb = Lb::new(CONFIG);
    // Two services on one VIP with three backends (web, TCP) and one (dns): UDP to port 80 is
    // no service, so use TCP fragments to web from 50 source ports.
    let mut seen = std::collections::HashSet::new();
    for i in 0..50u16 {
        let sport = 30000 + i * 7;
        let mut tcp = sport.to_be_bytes().to_vec();
        tcp.extend_from_slice(&80u16.to_be_bytes());
        tcp.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x10, 0xff, 0xff, 0, 0, 0, 0]);
        tcp.extend_from_slice(&[0xcd; 1200]);
        let mut first = frag4(CLIENT, VIP, 1000 + i, 0, true, &tcp[..600]);
        let mut later = frag4(CLIENT, VIP, 1000 + i, 75, false, &tcp[600..]);
        for f in [&mut first, &mut later] {
            f[23] = 6;
            f[24..26].copy_from_slice(&[0, 0]);
            let sum = fj_lb::model::checksum::internet(&[&f[14..34]]);
            f[24..26].copy_from_slice(&sum.to_be_bytes());
        }
        // The later fragment first: an orphan, dropped, never guessed at.
        assert_eq!(lb.run(&later).0, XDP_DROP, "port {sport}: out of order");
        let b = lb.forward(&first);
        assert_eq!(lb.forward(&later), b, "port {sport}: the later fragment follows its first");
        assert_eq!(lb.forward(&tcp4(CLIENT, sport, VIP, 80)), b, "port {sport}: and so does the flow");
        seen.insert(b);
    }
    assert_eq!(seen.len(), 3, "50 datagrams spread over the three backends");
}

#[test]
fn reversed_fragments_are_counted_as_orphans_and_the_rest_still_follows() {
    require_root!();
    let mut lb = Lb::new(CONFIG);
    let [first, second, last] = datagram4(VIP, 5354, 53, 78);
    for f in [&last, &second] {
        let (action, out) = lb.run(f);
        assert_eq!((action, &out), (XDP_DROP, f), "before its first: dropped untouched");
    }
    assert_eq!(lb.stat(Stat::DropFragmentOrphan), 2);
    assert_eq!(lb.forward(&first).to_string(), "10.0.0.11");
    assert_eq!(lb.forward(&last).to_string(), "10.0.0.11", "a retransmission after the first follows");
}

#[test]
fn fragments_not_for_a_vip_and_of_other_protocols_are_the_hosts() {
    require_root!();
    let mut lb = Lb::new(CONFIG);
    let [_, second, _] = datagram4([10, 0, 0, 10], 5355, 53, 79);
    assert_passed_untouched(&lb, &second, "a later fragment to the LB's own address");
    let [_, mut icmp, _] = datagram4(VIP, 5355, 53, 80);
    icmp[23] = 1;
    assert_passed_untouched(&lb, &icmp, "a later fragment of ICMP to the VIP (a large ping)");
    assert_eq!(lb.stat(Stat::PassFragment), 2);
    assert_eq!(lb.stat(Stat::DropFragmentOrphan), 0);
}

#[test]
fn ipv6_fragments_follow_their_first_by_the_fragment_headers_identification() {
    require_root!();
    let mut lb = Lb::new(CONFIG);
    let (client, vip) = (v6(2), v6(0x100));
    let mut udp = 5353u16.to_be_bytes().to_vec();
    udp.extend_from_slice(&53u16.to_be_bytes());
    udp.extend_from_slice(&1608u16.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(&[0xef; 1600]);
    let first = frag6(client, vip, 0x1234_5678, 0, true, &udp[..808]);
    let last = frag6(client, vip, 0x1234_5678, 101, false, &udp[808..]);
    assert_eq!(lb.run(&last).0, XDP_DROP, "orphan first");
    assert_eq!(lb.forward(&first).to_string(), "2001:db8::12");
    assert_eq!(lb.forward(&last).to_string(), "2001:db8::12");
    let other = frag6(client, vip, 0x1234_5679, 101, false, &udp[808..]);
    assert_eq!(lb.run(&other).0, XDP_DROP, "another identification is another datagram");
    assert_eq!((lb.stat(Stat::FragmentTracked), lb.stat(Stat::FragmentFollowed), lb.stat(Stat::DropFragmentOrphan)), (1, 1, 2));
}

#[test]
fn fragments_of_a_layer_3_service_are_each_encapsulated_to_the_same_backend() {
    require_root!();
    let lb = Lb::l3(L3_CONFIG, 9000);
    let [first, second, last] = datagram4([10, 0, 0, 202], 5356, 53, 81);
    let outer: Vec<Vec<u8>> = [&first, &second, &last].iter().map(|f| lb.encapsulated(f)).collect();
    for (o, f) in outer.iter().zip([&first, &second, &last]) {
        assert_eq!(&o[..6], &ROUTER_MAC);
        assert_eq!(&o[14 + 16..14 + 20], &[10, 1, 0, 12], "to gue4udp's backend");
        assert_eq!(&o[14 + 28..], &f[14..], "the fragment untouched inside");
        assert_eq!(&o[14 + 12..14 + 16], &outer[0][14 + 12..14 + 16], "one outer source for the datagram");
        // The UDP checksum of a fragmented datagram covers all of it, not this fragment.
        assert_eq!(&o[14 + 26..14 + 28], &[0, 0], "no inner checksum to derive GUE's from: zero");
    }
}
