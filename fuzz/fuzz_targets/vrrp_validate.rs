//! What the VRRP runner checks on every received IPv4 packet (header, TTL, decode, VRID,
//! address list), on arbitrary bytes: never a panic, and an accepted advert always names our
//! VRID and comes from someone else.
#![no_main]
use std::net::IpAddr;

use fj_lb::vrrp::validate::{Instance, Verdict, ipv4};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let vips: [(IpAddr, u8); 1] = [("10.0.0.100".parse().unwrap(), 24)];
    let us = Instance { primary: "10.0.0.1".parse().unwrap(), vrid: 51, addresses: &vips, owner: data.first() == Some(&0xff) };
    if let Verdict::Accept { src, advert } = ipv4(data, &us) {
        assert_eq!(advert.vrid, 51);
        assert_ne!(src, us.primary);
        assert_ne!(advert.max_adver_int, 0);
    }
});
