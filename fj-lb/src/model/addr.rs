//! Addresses as the maps store them (16 bytes and a family tag) and MAC addresses as people
//! read them. Pure conversions, shared by planning, reports and the edges.
use std::net::IpAddr;

use fj_lb_common::{FAMILY_V4, FAMILY_V6};

pub type Mac = [u8; 6];

/// An address as map keys hold it: IPv4 fills the first four bytes, the rest stay zero.
pub fn addr_bytes(ip: IpAddr) -> ([u8; 16], u8) {
    let mut out = [0u8; 16];
    match ip {
        IpAddr::V4(v4) => {
            out[..4].copy_from_slice(&v4.octets());
            (out, FAMILY_V4)
        }
        IpAddr::V6(v6) => (v6.octets(), FAMILY_V6),
    }
}

pub fn addr_from_bytes(bytes: &[u8; 16], family: u8) -> IpAddr {
    if family == FAMILY_V4 {
        IpAddr::from([bytes[0], bytes[1], bytes[2], bytes[3]])
    } else {
        IpAddr::from(*bytes)
    }
}

pub fn format_mac(m: &Mac) -> String {
    format!("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a MAC address (six hex bytes separated by colons)")]
pub struct BadMac(pub String);

pub fn parse_mac(s: &str) -> Result<Mac, BadMac> {
    let parts: Vec<u8> = s
        .split(':')
        .map(|p| if p.len() <= 2 { u8::from_str_radix(p, 16).ok() } else { None })
        .collect::<Option<_>>()
        .ok_or_else(|| BadMac(s.into()))?;
    parts.try_into().map_err(|_| BadMac(s.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip_through_map_bytes() {
        for ip in ["10.0.0.11", "2001:db8::11"] {
            let ip: IpAddr = ip.parse().unwrap();
            let (b, f) = addr_bytes(ip);
            assert_eq!(addr_from_bytes(&b, f), ip);
        }
        assert_eq!(&addr_bytes("10.0.0.1".parse().unwrap()).0[4..], &[0u8; 12], "IPv4 leaves the tail zero");
    }

    #[test]
    fn macs_format_and_parse() {
        let m = parse_mac("02:00:00:00:0a:ff").unwrap();
        assert_eq!(m, [2, 0, 0, 0, 0x0a, 0xff]);
        assert_eq!(format_mac(&m), "02:00:00:00:0a:ff");
        assert!(parse_mac("02:00:00:00:0a").is_err());
        assert!(parse_mac("02:00:00:00:0a:fff").is_err());
        assert!(parse_mac("zz:00:00:00:0a:ff").is_err());
    }
}
