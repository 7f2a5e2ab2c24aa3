//! The backends' decapsulation program (`fj-lb decap`): every encapsulation the balancer
//! sends comes out as the original packet, for the listed VIPs only; everything else passes.
use std::net::IpAddr;

use aya::maps::{MapData, PerCpuArray, PerCpuValues};
use fj_lb::{datapath::DecapRequest, model::config::XdpMode};
use fj_lb_common::DecapStat;

use super::{
    l3::{L3_CONFIG, ROUTER_MAC, ip},
    *,
};

struct Decap {
    ebpf: aya::Ebpf,
}

impl Decap {
    fn new(vips: &[&str], any_vip: bool) -> Decap {
        let req = DecapRequest {
            interface: "unused".into(),
            vips: vips.iter().map(|v| ip(v)).collect(),
            any_vip,
            gue_port: 6080,
            mode: XdpMode::Auto,
        };
        Decap { ebpf: datapath::load_decap(&req).expect("the decap program loads and verifies (run as root)") }
    }

    fn run(&self, pkt: &[u8]) -> (u32, Vec<u8>) {
        run_program(self.ebpf.program(program_names::DECAP).unwrap().try_into().unwrap(), pkt)
    }

    fn stat(&self, s: DecapStat) -> u64 {
        let map: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(self.ebpf.map("DECAP_STATS").unwrap()).unwrap();
        let v: PerCpuValues<u64> = map.get(&(s as u32), 0).unwrap();
        v.iter().sum()
    }
}

/// `pkt` as the decap program must hand it to the stack after the balancer encapsulated it:
/// the encapsulated frame's MACs, the inner ethertype, the inner packet.
fn decapsulated(pkt: &[u8]) -> Vec<u8> {
    let mut want = ROUTER_MAC.to_vec();
    want.extend_from_slice(&LB_MAC);
    want.extend_from_slice(&pkt[12..]);
    want
}

#[test]
fn everything_the_balancer_encapsulates_comes_out_as_the_original_packet() {
    require_root!();
    let lb = Lb::l3(L3_CONFIG, 1500);
    let d = Decap::new(&["10.0.0.200", "2001:db8::200", "10.0.0.201", "10.0.0.202", "2001:db8::202", "10.0.0.203"], false);
    let client6 = v6(2);
    let v6vip = |s: &str| match ip(s) {
        IpAddr::V6(a) => a.octets(),
        _ => unreachable!(),
    };
    let cases = [
        (DecapStat::Decap4in4, tcp4(CLIENT, 40000, [10, 0, 0, 200], 80)),
        (DecapStat::Decap6in6, tcp6(client6, 40000, v6vip("2001:db8::200"), 80)),
        (DecapStat::Decap4in6, tcp4(CLIENT, 40000, [10, 0, 0, 201], 80)),
        (DecapStat::DecapGue, tcp4(CLIENT, 40000, [10, 0, 0, 202], 80)),
        (DecapStat::DecapGue, tcp6(client6, 40000, v6vip("2001:db8::202"), 80)),
        (DecapStat::DecapGue, udp4(CLIENT, 5353, [10, 0, 0, 203], 53)),
    ];
    for (stat, pkt) in &cases {
        let before = d.stat(*stat);
        let outer = lb.encapsulated(pkt);
        // 6in6/GUE-over-IPv6 with a GUE port of 7000 is not ours: say so below.
        let (action, out) = d.run(&outer);
        if outer[14 + 40 + 2..14 + 40 + 4] == 7000u16.to_be_bytes() && outer[12..14] == [0x86, 0xdd] {
            assert_eq!((action, &out), (XDP_PASS, &outer), "GUE to port 7000 with --gue-port 6080: not ours");
            continue;
        }
        assert_eq!(action, XDP_PASS, "{stat:?}");
        assert_eq!(out, decapsulated(pkt), "{stat:?}: the original packet, the ethertype its own");
        assert_eq!(d.stat(*stat), before + 1, "{stat:?} counted");
    }
    assert_eq!(d.stat(DecapStat::PassNotEncapsulated), 1);
}

#[test]
fn only_the_listed_vips_are_decapsulated_unless_any_vip() {
    require_root!();
    let lb = Lb::l3(L3_CONFIG, 1500);
    let outer = lb.encapsulated(&tcp4(CLIENT, 40000, [10, 0, 0, 200], 80));
    let d = Decap::new(&["10.0.0.99"], false);
    assert_eq!(d.run(&outer), (XDP_PASS, outer.clone()), "another VIP: untouched (the kernel drops it as an unknown protocol)");
    assert_eq!(d.stat(DecapStat::PassNotVip), 1);
    let any = Decap::new(&[], true);
    assert_eq!(any.run(&outer), (XDP_PASS, decapsulated(&tcp4(CLIENT, 40000, [10, 0, 0, 200], 80))));
}

#[test]
fn ipv6_in_ipv4_is_decapsulated_too() {
    require_root!();
    let inner = tcp6(v6(2), 40000, v6(0x100), 80);
    let mut ip4 = vec![0x45, 0];
    ip4.extend_from_slice(&((20 + inner.len() - 14) as u16).to_be_bytes());
    ip4.extend_from_slice(&[0, 0, 0x40, 0, 64, 41, 0, 0, 172, 16, 1, 2, 10, 1, 0, 11]);
    let sum = fj_lb::model::checksum::internet(&[&ip4]);
    ip4[10..12].copy_from_slice(&sum.to_be_bytes());
    let outer = [&ROUTER_MAC[..], &LB_MAC, &[0x08, 0x00], &ip4, &inner[14..]].concat();
    let d = Decap::new(&["2001:db8::100"], false);
    assert_eq!(d.run(&outer), (XDP_PASS, decapsulated(&inner)));
    assert_eq!(d.stat(DecapStat::Decap6in4), 1);
}

#[test]
fn plain_fragmented_optioned_and_truncated_packets_pass_untouched() {
    require_root!();
    let lb = Lb::l3(L3_CONFIG, 1500);
    let d = Decap::new(&["10.0.0.200"], false);
    let plain = tcp4(CLIENT, 40000, [10, 0, 0, 200], 80);
    assert_eq!(d.run(&plain), (XDP_PASS, plain.clone()));
    let outer = lb.encapsulated(&plain);
    let mut frag = outer.clone();
    frag[20] |= 0x20; // MF
    assert_eq!(d.run(&frag), (XDP_PASS, frag.clone()), "an outer fragment");
    let options = with_ipv4_options(&outer);
    assert_eq!(d.run(&options), (XDP_PASS, options.clone()), "outer IPv4 options");
    assert_eq!(d.stat(DecapStat::PassFragmentOrOptions), 2);
    let cut = &outer[..outer.len() - 1];
    assert_eq!(d.run(cut), (XDP_PASS, cut.to_vec()), "outer length past the frame");
    assert_eq!(d.stat(DecapStat::PassMalformed), 1);
    assert_eq!(d.stat(DecapStat::PassNotEncapsulated), 1);
}
