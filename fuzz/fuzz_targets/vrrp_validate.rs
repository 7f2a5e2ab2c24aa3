//! What the VRRP runner checks on every received IPv4 packet (header, TTL, decode, VRID,
//! address list), on arbitrary bytes: never a panic, and an accepted advert always names our
//! VRID and comes from someone else.
#![no_main]
use std::net::IpAddr;

use fj_lb::vrrp::validate::{Instance, Verdict, ipv4};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let vips: [(IpAddr, u8); 1] = [("10.0.0.100".parse().unwrap(), 24)];
    // The first byte picks the mode: owner or not, multicast or unicast with one peer.
    let mode = data.first().copied().unwrap_or(0);
    let peers: Vec<std::net::IpAddr> = if mode & 2 != 0 { vec!["10.0.0.2".parse().unwrap()] } else { vec![] };
    let us = Instance {
        primary: "10.0.0.1".parse().unwrap(),
        vrid: 51,
        addresses: &vips,
        owner: mode & 1 != 0,
        unicast_peers: &peers,
        siblings: &[52],
    };
    if let Verdict::Accept { src, advert } = ipv4(data.get(1..).unwrap_or(&[]), &us) {
        assert_eq!(advert.vrid, 51);
        assert_ne!(src, us.primary);
        assert_ne!(advert.max_adver_int, 0);
        assert!(peers.is_empty() || peers.contains(&src), "only a listed peer is accepted in unicast mode");
    }
});
