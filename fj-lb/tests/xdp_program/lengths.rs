//! Lengths checked against the frame (no ports from Ethernet padding), IPv6 extension headers
//! walked to a bounded depth, 802.1Q frames passed.
use super::*;

/// `pkt` (TCP/IPv6 from `tcp6`) with extension headers `exts` (each: next-header value it
/// is, its bytes with the next-header byte left to fill) between the IPv6 and TCP headers.
fn with_ext_headers(pkt: &[u8], exts: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut out = pkt[..54].to_vec();
    let mut body = Vec::new();
    for (i, (_, bytes)) in exts.iter().enumerate() {
        let mut b = bytes.clone();
        b[0] = exts.get(i + 1).map_or(6, |e| e.0);
        body.extend_from_slice(&b);
    }
    out[20] = exts[0].0;
    let payload = (body.len() + pkt.len() - 54) as u16;
    out[18..20].copy_from_slice(&payload.to_be_bytes());
    out.extend_from_slice(&body);
    out.extend_from_slice(&pkt[54..]);
    out
}

/// An 8-byte hop-by-hop / destination options header (PadN filling it).
fn options() -> Vec<u8> {
    vec![0, 0, 1, 4, 0, 0, 0, 0]
}

/// An 8-byte routing header with `left` segments left.
fn routing(left: u8) -> Vec<u8> {
    vec![0, 0, 4, left, 0, 0, 0, 0]
}

#[test]
fn ipv6_extension_headers_are_walked_to_the_transport() {
    require_root!();
    let mut lb = Lb::new(CONFIG);
    let plain = tcp6(v6(2), 40000, v6(0x100), 80);
    let home = lb.forward(&plain);
    for (what, exts) in [
        ("hop-by-hop", vec![(0, options())]),
        ("hop-by-hop, destination options", vec![(0, options()), (60, options())]),
        ("routing with no segments left", vec![(43, routing(0))]),
        ("hop-by-hop, routing, destination options, destination options", vec![(0, options()), (43, routing(0)), (60, options()), (60, options())]),
    ] {
        let p = with_ext_headers(&plain, &exts);
        assert_eq!(lb.forward(&p), home, "{what}: the same flow, the same backend");
    }
    let passed = [
        ("a routing header with segments left (not for us yet)", vec![(43, routing(1))]),
        ("five extension headers, one more than walked", vec![(0, options()), (60, options()), (60, options()), (60, options()), (60, options())]),
    ];
    for (what, exts) in passed {
        assert_passed_untouched(&lb, &with_ext_headers(&plain, &exts), what);
    }
    let mut esp = plain.clone();
    esp[20] = 50;
    assert_passed_untouched(&lb, &esp, "ESP");
    assert_eq!(lb.stat(Stat::PassIpv6ExtHeader), 3);
    let mut long = with_ext_headers(&plain, &[(0, options())]);
    long[54 + 1] = 200;
    assert_passed_untouched(&lb, &long, "an extension header longer than the packet");
    assert_eq!(lb.stat(Stat::PassMalformed), 1);
}

#[test]
fn ports_are_never_read_beyond_the_ip_length() {
    require_root!();
    let mut lb = Lb::new(CONFIG);
    let udp = udp4(CLIENT, 5353, VIP, 53);
    // An IPv4 header that says the packet ends with it: what follows, UDP-looking, is padding.
    let mut hollow = udp.clone();
    hollow[16..18].copy_from_slice(&20u16.to_be_bytes());
    hollow[24..26].copy_from_slice(&[0, 0]);
    let sum = fj_lb::model::checksum::internet(&[&hollow[14..34]]);
    hollow[24..26].copy_from_slice(&sum.to_be_bytes());
    hollow.resize(60, 0);
    assert_passed_untouched(&lb, &hollow, "ports in Ethernet padding");
    let mut long = udp.clone();
    long[16..18].copy_from_slice(&((udp.len() - 14 + 1) as u16).to_be_bytes());
    assert_passed_untouched(&lb, &long, "IPv4 total length one byte past the frame");
    let mut v6long = udp6(v6(2), 5353, v6(0x100), 53);
    let n = v6long.len();
    v6long[18..20].copy_from_slice(&((n - 54 + 1) as u16).to_be_bytes());
    assert_passed_untouched(&lb, &v6long, "IPv6 payload length one byte past the frame");
    let mut jumbo = udp6(v6(2), 5353, v6(0x100), 53);
    jumbo[18..20].copy_from_slice(&[0, 0]);
    assert_passed_untouched(&lb, &jumbo, "IPv6 payload length 0 (jumbogram)");
    assert_eq!(lb.stat(Stat::PassMalformed), 4);
    // Padding after a complete packet is fine: the minimum Ethernet frame pads small ones.
    let mut padded = udp.clone();
    padded.resize(60, 0);
    assert_eq!(lb.forward(&padded).to_string(), "10.0.0.11");
}

#[test]
fn vlan_tagged_frames_are_passed_and_counted() {
    require_root!();
    let mut lb = Lb::new(CONFIG);
    let mut tagged = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, LB_MAC)
        .single_vlan(etherparse::VlanId::try_new(100).unwrap())
        .ipv4(CLIENT, VIP, 64)
        .tcp(40000, 80, 1, 64240)
        .syn()
        .write(&mut tagged, b"")
        .unwrap();
    assert_eq!(&tagged[12..14], &[0x81, 0x00]);
    assert_passed_untouched(&lb, &tagged, "802.1Q");
    let mut qinq = tagged.clone();
    qinq[12..14].copy_from_slice(&[0x88, 0xa8]);
    assert_passed_untouched(&lb, &qinq, "802.1ad");
    assert_eq!(lb.stat(Stat::PassVlan), 2);
    assert_eq!(lb.stat(Stat::Forwarded), 0);
}
