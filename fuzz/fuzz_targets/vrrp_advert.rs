//! The VRRP advert decoder on arbitrary bytes: never a panic, and whatever it accepts encodes
//! back to a message it accepts the same way.
#![no_main]
use std::net::IpAddr;

use fj_lb::vrrp::packet::Advert;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the family; the message follows.
    let Some((&family, msg)) = data.split_first() else { return };
    let (src, dst): (IpAddr, IpAddr) = if family & 1 == 0 {
        ("10.0.0.2".parse().unwrap(), "224.0.0.18".parse().unwrap())
    } else {
        ("fe80::2".parse().unwrap(), "ff02::12".parse().unwrap())
    };
    if let Ok((advert, mode)) = Advert::decode(msg, src, dst) {
        let again = advert.encode(src, dst, mode);
        let (back, _) = Advert::decode(&again, src, dst).expect("an accepted advert re-encodes to an accepted one");
        assert_eq!(back, advert);
    }
});
