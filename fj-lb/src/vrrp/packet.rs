//! VRRP version 3 advertisements (RFC 5798 §5), IPv4 and IPv6: encoding, decoding and the
//! checksum. Over IPv4 the checksum covers a pseudo-header as RFC 5798 says and keepalived
//! does by default; RFC 9568 drops the pseudo-header for IPv4 (keepalived's
//! `v3_checksum_as_v2`). We send either, as configured, and accept both.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const IPPROTO_VRRP: u8 = 112;
pub const MCAST_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
pub const MCAST_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
const VERSION: u8 = 3;
const TYPE_ADVERTISEMENT: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    pub vrid: u8,
    pub priority: u8,
    /// Centiseconds, 12 bits.
    pub max_adver_int: u16,
    pub addresses: Vec<IpAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChecksumMode {
    /// RFC 5798: the pseudo-header is included (IPv4 and IPv6).
    PseudoHeader,
    /// RFC 9568 for IPv4: the VRRP message alone. IPv6 always uses the pseudo-header.
    MessageOnly,
}

/// Why a received packet was not acted on; each has its own counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reject {
    Truncated,
    Version,
    Type,
    Checksum,
    Ttl,
    Vrid,
    AddressList,
    Family,
    /// Max_Adver_Int 0: a master-down interval of nothing would make us master at once.
    ZeroInterval,
    /// We own the addresses (priority 255): what others advertise changes nothing (RFC 5798
    /// §6.4.3).
    Owner,
    /// With unicast peers: from an address that is not one of them.
    NotAPeer,
    /// With unicast peers: sent to the multicast group (keepalived refuses those too).
    ExpectedUnicast,
    /// Without unicast peers: sent to us alone.
    ExpectedMulticast,
}

impl Reject {
    pub fn as_str(self) -> &'static str {
        match self {
            Reject::Truncated => "truncated",
            Reject::Version => "wrong_version",
            Reject::Type => "wrong_type",
            Reject::Checksum => "bad_checksum",
            Reject::Ttl => "bad_ttl",
            Reject::Vrid => "wrong_vrid",
            Reject::AddressList => "wrong_addresses",
            Reject::Family => "wrong_family",
            Reject::ZeroInterval => "zero_interval",
            Reject::Owner => "owner_ignores",
            Reject::NotAPeer => "not_a_peer",
            Reject::ExpectedUnicast => "expected_unicast",
            Reject::ExpectedMulticast => "expected_multicast",
        }
    }
}

use crate::model::checksum::internet as checksum;

fn pseudo_header(src: IpAddr, dst: IpAddr, len: usize) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut p = Vec::with_capacity(12);
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&[0, IPPROTO_VRRP]);
            p.extend_from_slice(&(len as u16).to_be_bytes());
            p
        }
        (s, d) => {
            let to6 = |a: IpAddr| match a {
                IpAddr::V6(v) => v.octets(),
                IpAddr::V4(v) => v.to_ipv6_mapped().octets(),
            };
            let mut p = Vec::with_capacity(40);
            p.extend_from_slice(&to6(s));
            p.extend_from_slice(&to6(d));
            p.extend_from_slice(&(len as u32).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, IPPROTO_VRRP]);
            p
        }
    }
}

impl Advert {
    /// The VRRP message, checksum filled in for a packet from `src` to `dst`.
    pub fn encode(&self, src: IpAddr, dst: IpAddr, mode: ChecksumMode) -> Vec<u8> {
        let mut m = vec![
            (VERSION << 4) | TYPE_ADVERTISEMENT,
            self.vrid,
            self.priority,
            self.addresses.len() as u8,
        ];
        m.extend_from_slice(&(self.max_adver_int & 0x0fff).to_be_bytes());
        m.extend_from_slice(&[0, 0]);
        for a in &self.addresses {
            match a {
                IpAddr::V4(v) => m.extend_from_slice(&v.octets()),
                IpAddr::V6(v) => m.extend_from_slice(&v.octets()),
            }
        }
        let sum = if src.is_ipv4() && mode == ChecksumMode::MessageOnly {
            checksum(&[&m])
        } else {
            checksum(&[&pseudo_header(src, dst, m.len()), &m])
        };
        m[6..8].copy_from_slice(&sum.to_be_bytes());
        m
    }

    /// Decodes a VRRP message received from `src` to `dst` (IPv4 over IPv4, IPv6 over IPv6).
    /// Either checksum form is accepted over IPv4; the mode that matched is returned.
    pub fn decode(msg: &[u8], src: IpAddr, dst: IpAddr) -> Result<(Advert, ChecksumMode), Reject> {
        if msg.len() < 8 {
            return Err(Reject::Truncated);
        }
        if msg[0] >> 4 != VERSION {
            return Err(Reject::Version);
        }
        if msg[0] & 0x0f != TYPE_ADVERTISEMENT {
            return Err(Reject::Type);
        }
        let count = msg[3] as usize;
        let alen = if src.is_ipv4() { 4 } else { 16 };
        if msg.len() < 8 + count * alen {
            return Err(Reject::Truncated);
        }
        // The checksum covers what the sender sent, which is all of msg (trailing bytes
        // included); a length that disagrees with the count is caught after the checksum.
        let mode = if checksum(&[&pseudo_header(src, dst, msg.len()), msg]) == 0 {
            ChecksumMode::PseudoHeader
        } else if src.is_ipv4() && checksum(&[msg]) == 0 {
            ChecksumMode::MessageOnly
        } else {
            return Err(Reject::Checksum);
        };
        let addresses = msg[8..8 + count * alen]
            .chunks_exact(alen)
            .map(|c| {
                if alen == 4 {
                    IpAddr::from([c[0], c[1], c[2], c[3]])
                } else {
                    let mut o = [0u8; 16];
                    o.copy_from_slice(c);
                    IpAddr::from(o)
                }
            })
            .collect();
        Ok((
            Advert {
                vrid: msg[1],
                priority: msg[2],
                max_adver_int: u16::from_be_bytes([msg[4], msg[5]]) & 0x0fff,
                addresses,
            },
            mode,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A keepalived 2.2 VRRPv3 advert (vrid 51, priority 100, 1 s, 10.0.0.100) captured from
    /// 10.0.0.20, with the RFC 5798 pseudo-header checksum (computed by hand: see below).
    #[test]
    fn known_good_ipv4_advert() {
        let a = Advert { vrid: 51, priority: 100, max_adver_int: 100, addresses: vec![v4("10.0.0.100")] };
        let m = a.encode(v4("10.0.0.20"), IpAddr::V4(MCAST_V4), ChecksumMode::PseudoHeader);
        assert_eq!(&m[..6], &[0x31, 51, 100, 1, 0x00, 0x64]);
        assert_eq!(&m[8..], &[10, 0, 0, 100]);
        // Sum by hand: pseudo 0a00+0014+e000+0012+0070+000c, message 3133+6401+0064+0a00+0064.
        let words: u32 = [0x0a00u32, 0x0014, 0xe000, 0x0012, 0x0070, 0x000c, 0x3133, 0x6401, 0x0064, 0x0a00, 0x0064]
            .iter()
            .sum();
        let folded = (words & 0xffff) + (words >> 16);
        assert_eq!(u16::from_be_bytes([m[6], m[7]]), !(folded as u16));
    }

    #[test]
    fn round_trips_both_families_and_modes() {
        let a = Advert { vrid: 7, priority: 150, max_adver_int: 10, addresses: vec![v4("10.0.0.100"), v4("10.0.0.101")] };
        for mode in [ChecksumMode::PseudoHeader, ChecksumMode::MessageOnly] {
            let m = a.encode(v4("10.0.0.1"), IpAddr::V4(MCAST_V4), mode);
            assert_eq!(Advert::decode(&m, v4("10.0.0.1"), IpAddr::V4(MCAST_V4)), Ok((a.clone(), mode)));
        }
        let b = Advert { vrid: 9, priority: 255, max_adver_int: 4095, addresses: vec!["2001:db8::100".parse().unwrap()] };
        let src: IpAddr = "fe80::1".parse().unwrap();
        let m = b.encode(src, IpAddr::V6(MCAST_V6), ChecksumMode::MessageOnly);
        assert_eq!(m.len(), 8 + 16);
        assert_eq!(Advert::decode(&m, src, IpAddr::V6(MCAST_V6)), Ok((b, ChecksumMode::PseudoHeader)), "IPv6 always uses the pseudo-header");
    }

    #[test]
    fn rejects_malformed_packets() {
        let a = Advert { vrid: 51, priority: 100, max_adver_int: 100, addresses: vec![v4("10.0.0.100")] };
        let (src, dst) = (v4("10.0.0.20"), IpAddr::V4(MCAST_V4));
        let good = a.encode(src, dst, ChecksumMode::PseudoHeader);
        assert_eq!(Advert::decode(&good[..7], src, dst), Err(Reject::Truncated));
        assert_eq!(Advert::decode(&good[..10], src, dst), Err(Reject::Truncated));
        let mut v2 = good.clone();
        v2[0] = 0x21;
        assert_eq!(Advert::decode(&v2, src, dst), Err(Reject::Version));
        let mut t = good.clone();
        t[0] = 0x32;
        assert_eq!(Advert::decode(&t, src, dst), Err(Reject::Type));
        let mut c = good.clone();
        c[2] = 101;
        assert_eq!(Advert::decode(&c, src, dst), Err(Reject::Checksum));
        assert_eq!(Advert::decode(&good, v4("10.0.0.21"), dst), Err(Reject::Checksum), "pseudo-header binds the source");
    }

    #[test]
    fn checksum_of_odd_length_and_zero() {
        assert_eq!(checksum(&[&[0x01]]), !0x0100);
        assert_eq!(checksum(&[&[]]), 0xffff);
        let data = [0x45u8, 0x00, 0x00, 0x1c];
        let c = checksum(&[&data]);
        assert_eq!(checksum(&[&data, &c.to_be_bytes()]), 0);
    }
}
