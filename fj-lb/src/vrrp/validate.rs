//! Whether a received VRRP packet is acted on (RFC 5798 §7.1). Pure, so that every reason to
//! discard one is tested without a socket; the runner only counts the verdicts and acts.
use std::net::{IpAddr, Ipv6Addr};

use super::packet::{Advert, MCAST_V4, MCAST_V6, Reject};

/// What a received packet is checked against: this instance as configured.
pub struct Instance<'a> {
    /// Our advert source: a packet from it is one of our own.
    pub primary: IpAddr,
    pub vrid: u8,
    pub addresses: &'a [(IpAddr, u8)],
    /// Configured with priority 255: the address owner.
    pub owner: bool,
    /// Unicast mode: only these may advertise to us. Empty: multicast.
    pub unicast_peers: &'a [IpAddr],
    /// VRIDs of our other instances on the same link and family: their adverts reach this
    /// socket too, and are theirs, not wrong.
    pub siblings: &'a [u8],
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Accept { src: IpAddr, advert: Advert },
    /// One of our own adverts: not the other router's, and no fault either, so not counted.
    Own,
    /// For another of our instances (a sibling VRID): not counted either.
    Sibling,
    Reject(Reject),
}

/// A packet from a raw IPv4 socket, which hands over the IP header too.
pub fn ipv4(pkt: &[u8], us: &Instance) -> Verdict {
    if pkt.len() < 20 || pkt[0] >> 4 != 4 {
        return Verdict::Reject(Reject::Truncated);
    }
    let ihl = (pkt[0] & 0x0f) as usize * 4;
    if pkt.len() < ihl || ihl < 20 {
        return Verdict::Reject(Reject::Truncated);
    }
    let ttl = pkt[8];
    let src = IpAddr::from([pkt[12], pkt[13], pkt[14], pkt[15]]);
    let dst = IpAddr::from([pkt[16], pkt[17], pkt[18], pkt[19]]);
    // The total length trims link-layer padding, which the checksum does not cover; one longer
    // than what arrived is not trusted past the end.
    let tot = u16::from_be_bytes([pkt[2], pkt[3]]) as usize;
    advert(src, dst, Some(ttl), &pkt[ihl..tot.clamp(ihl, pkt.len())], us)
}

/// A message from a raw IPv6 socket: the kernel strips the header and reports the hop limit
/// and the destination (`None`: not reported, taken as the multicast group).
pub fn ipv6(src: Ipv6Addr, dst: Option<Ipv6Addr>, hops: Option<u8>, msg: &[u8], us: &Instance) -> Verdict {
    advert(IpAddr::V6(src), IpAddr::V6(dst.unwrap_or(MCAST_V6)), hops, msg, us)
}

fn group_of(a: IpAddr) -> IpAddr {
    if a.is_ipv4() { IpAddr::V4(MCAST_V4) } else { IpAddr::V6(MCAST_V6) }
}

fn advert(src: IpAddr, dst: IpAddr, ttl: Option<u8>, msg: &[u8], us: &Instance) -> Verdict {
    if src == us.primary {
        return Verdict::Own;
    }
    let multicast = dst.is_multicast();
    let unicast_mode = !us.unicast_peers.is_empty();
    let decoded = match Advert::decode(msg, src, dst) {
        // keepalived before 1.3.6 (and later ones in unicast_chksum_compat mode) sum a unicast
        // advert as if it went to the multicast group.
        Err(Reject::Checksum) if !multicast => Advert::decode(msg, src, group_of(src)),
        other => other,
    };
    let (adv, _mode) = match decoded {
        Ok(v) => v,
        Err(r) => return Verdict::Reject(r),
    };
    if adv.vrid != us.vrid {
        return if us.siblings.contains(&adv.vrid) { Verdict::Sibling } else { Verdict::Reject(Reject::Vrid) };
    }
    // One mode per instance on both ends, as keepalived insists: a mismatch is a
    // misconfiguration to show, not a master to follow.
    match (unicast_mode, multicast) {
        (true, true) => return Verdict::Reject(Reject::ExpectedUnicast),
        (false, false) => return Verdict::Reject(Reject::ExpectedMulticast),
        _ => {}
    }
    // 255 proves the sender is on our link (RFC 5798 §7.1): a router would have decremented
    // it. Unicast peers may be routed (keepalived does not check there either): the peer list
    // is the check.
    if !unicast_mode && ttl != Some(255) {
        return Verdict::Reject(Reject::Ttl);
    }
    if unicast_mode && !us.unicast_peers.contains(&src) {
        return Verdict::Reject(Reject::NotAPeer);
    }
    if adv.max_adver_int == 0 {
        return Verdict::Reject(Reject::ZeroInterval);
    }
    let mut theirs = adv.addresses.clone();
    theirs.sort();
    let mut ours: Vec<IpAddr> = us.addresses.iter().map(|(a, _)| *a).collect();
    ours.sort();
    // The address owner (priority 255) is believed whatever it lists (RFC 5798 §7.1).
    if theirs != ours && adv.priority != 255 {
        return Verdict::Reject(Reject::AddressList);
    }
    if us.owner {
        return Verdict::Reject(Reject::Owner);
    }
    Verdict::Accept { src, advert: adv }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vrrp::packet::{ChecksumMode, MCAST_V4};

    const VIPS: &[(IpAddr, u8)] = &[(ip([10, 0, 0, 100]), 24), (ip([10, 0, 0, 101]), 24)];

    const fn ip(o: [u8; 4]) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::new(o[0], o[1], o[2], o[3]))
    }

    fn us() -> Instance<'static> {
        Instance { primary: ip([10, 0, 0, 1]), vrid: 51, addresses: VIPS, owner: false, unicast_peers: &[], siblings: &[] }
    }

    fn them() -> IpAddr {
        ip([10, 0, 0, 2])
    }

    fn advert_from(src: IpAddr, dst: IpAddr, addresses: Vec<IpAddr>, priority: u8) -> (Advert, Vec<u8>) {
        let a = Advert { vrid: 51, priority, max_adver_int: 100, addresses };
        let m = a.encode(src, dst, ChecksumMode::PseudoHeader);
        (a, m)
    }

    fn good_v4() -> (Advert, Vec<u8>) {
        advert_from(them(), IpAddr::V4(MCAST_V4), VIPS.iter().map(|(a, _)| *a).collect(), 100)
    }

    /// An IPv4 packet as a raw socket delivers it: no options, header checksum left at zero
    /// (the kernel has checked it by then).
    fn ip4(ttl: u8, src: IpAddr, msg: &[u8]) -> Vec<u8> {
        ip4_to(ttl, src, IpAddr::V4(MCAST_V4), msg)
    }

    fn ip4_to(ttl: u8, src: IpAddr, dst: IpAddr, msg: &[u8]) -> Vec<u8> {
        let (IpAddr::V4(s), IpAddr::V4(d)) = (src, dst) else { unreachable!() };
        let mut p = vec![0x45, 0xc0];
        p.extend_from_slice(&((20 + msg.len()) as u16).to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 0, ttl, 112, 0, 0]);
        p.extend_from_slice(&s.octets());
        p.extend_from_slice(&d.octets());
        p.extend_from_slice(msg);
        p
    }

    const PEERS: &[IpAddr] = &[ip([10, 0, 0, 2]), ip([10, 0, 0, 3])];

    fn unicast_us() -> Instance<'static> {
        Instance { unicast_peers: PEERS, ..us() }
    }

    fn unicast_from(src: IpAddr, ttl: u8) -> (Advert, Vec<u8>) {
        let (a, m) = advert_from(src, us().primary, VIPS.iter().map(|(a, _)| *a).collect(), 100);
        (a, ip4_to(ttl, src, us().primary, &m))
    }

    #[test]
    fn unicast_accepts_only_its_peers_whatever_the_ttl() {
        let (a, p) = unicast_from(them(), 255);
        assert_eq!(ipv4(&p, &unicast_us()), accepted(them(), a));
        let (a, p) = unicast_from(them(), 61);
        assert_eq!(ipv4(&p, &unicast_us()), accepted(them(), a), "a routed peer: the list is the check, as keepalived");
        let (_, p) = unicast_from(ip([10, 0, 0, 9]), 255);
        assert_eq!(ipv4(&p, &unicast_us()), Verdict::Reject(Reject::NotAPeer));
    }

    #[test]
    fn unicast_and_multicast_modes_refuse_each_other() {
        let (_, m) = good_v4();
        assert_eq!(ipv4(&ip4(255, them(), &m), &unicast_us()), Verdict::Reject(Reject::ExpectedUnicast));
        let (_, p) = unicast_from(them(), 255);
        assert_eq!(ipv4(&p, &us()), Verdict::Reject(Reject::ExpectedMulticast));
    }

    #[test]
    fn unicast_accepts_the_old_keepalived_checksum_over_the_group() {
        let a = Advert { vrid: 51, priority: 100, max_adver_int: 100, addresses: VIPS.iter().map(|(a, _)| *a).collect() };
        let m = a.encode(them(), IpAddr::V4(MCAST_V4), ChecksumMode::PseudoHeader);
        assert_eq!(ipv4(&ip4_to(255, them(), us().primary, &m), &unicast_us()), accepted(them(), a));
    }

    #[test]
    fn a_sibling_instances_advert_is_not_counted_as_wrong() {
        let a = Advert { vrid: 52, priority: 100, max_adver_int: 100, addresses: vec![ip([10, 0, 0, 200])] };
        let m = a.encode(them(), IpAddr::V4(MCAST_V4), ChecksumMode::PseudoHeader);
        let with_sibling = Instance { siblings: &[52], ..us() };
        assert_eq!(ipv4(&ip4(255, them(), &m), &with_sibling), Verdict::Sibling);
        assert_eq!(ipv4(&ip4(255, them(), &m), &us()), Verdict::Reject(Reject::Vrid));
    }

    #[test]
    fn ipv6_unicast_is_summed_with_the_destination_reported() {
        let vips = [("2001:db8::100".parse().unwrap(), 64)];
        let me: Ipv6Addr = "fe80::1".parse().unwrap();
        let src: Ipv6Addr = "fe80::2".parse().unwrap();
        let peers = [IpAddr::V6(src)];
        let us = Instance { primary: IpAddr::V6(me), vrid: 51, addresses: &vips, owner: false, unicast_peers: &peers, siblings: &[] };
        let (a, m) = advert_from(IpAddr::V6(src), IpAddr::V6(me), vec![vips[0].0], 100);
        assert_eq!(ipv6(src, Some(me), Some(255), &m, &us), accepted(IpAddr::V6(src), a));
        let (_, to_group) = advert_from(IpAddr::V6(src), IpAddr::V6(MCAST_V6), vec![vips[0].0], 100);
        assert_eq!(ipv6(src, None, Some(255), &to_group, &us), Verdict::Reject(Reject::ExpectedUnicast));
    }

    fn accepted(src: IpAddr, advert: Advert) -> Verdict {
        Verdict::Accept { src, advert }
    }

    #[test]
    fn accepts_a_good_ipv4_advert_from_the_source_in_the_header() {
        let (a, m) = good_v4();
        assert_eq!(ipv4(&ip4(255, them(), &m), &us()), accepted(them(), a));
    }

    #[test]
    fn rejects_an_advert_interval_of_zero() {
        let a = Advert { vrid: 51, priority: 100, max_adver_int: 0, addresses: VIPS.iter().map(|(a, _)| *a).collect() };
        let m = a.encode(them(), IpAddr::V4(MCAST_V4), ChecksumMode::PseudoHeader);
        assert_eq!(ipv4(&ip4(255, them(), &m), &us()), Verdict::Reject(Reject::ZeroInterval));
    }

    #[test]
    fn the_owner_discards_what_others_advertise() {
        let (_, m) = good_v4();
        let owner = Instance { owner: true, ..us() };
        assert_eq!(ipv4(&ip4(255, them(), &m), &owner), Verdict::Reject(Reject::Owner));
        let (_, m) = advert_from(ip([10, 0, 0, 1]), IpAddr::V4(MCAST_V4), vec![], 255);
        assert_eq!(ipv4(&ip4(255, ip([10, 0, 0, 1]), &m), &owner), Verdict::Own, "still our own");
    }

    #[test]
    fn accepts_the_addresses_in_any_order() {
        let (a, m) = advert_from(them(), IpAddr::V4(MCAST_V4), vec![ip([10, 0, 0, 101]), ip([10, 0, 0, 100])], 100);
        assert_eq!(ipv4(&ip4(255, them(), &m), &us()), accepted(them(), a));
    }

    #[test]
    fn accepts_a_good_ipv6_advert() {
        let vips = [("2001:db8::100".parse().unwrap(), 64)];
        let us = Instance { primary: "fe80::1".parse().unwrap(), vrid: 51, addresses: &vips, owner: false, unicast_peers: &[], siblings: &[] };
        let src: Ipv6Addr = "fe80::2".parse().unwrap();
        let (a, m) = advert_from(IpAddr::V6(src), IpAddr::V6(MCAST_V6), vec![vips[0].0], 100);
        assert_eq!(ipv6(src, None, Some(255), &m, &us), accepted(IpAddr::V6(src), a));
    }

    #[test]
    fn ignores_our_own_adverts_before_any_other_check() {
        let (_, m) = advert_from(us().primary, IpAddr::V4(MCAST_V4), vec![], 7);
        assert_eq!(ipv4(&ip4(1, us().primary, &m), &us()), Verdict::Own, "own, though TTL and addresses are wrong");
        let ll: Ipv6Addr = "fe80::1".parse().unwrap();
        let us6 = Instance { primary: IpAddr::V6(ll), vrid: 51, addresses: &[], owner: false, unicast_peers: &[], siblings: &[] };
        assert_eq!(ipv6(ll, None, None, &[], &us6), Verdict::Own);
    }

    #[test]
    fn an_ipv4_header_is_parsed_before_own_packets_are_recognised() {
        let (_, m) = advert_from(us().primary, IpAddr::V4(MCAST_V4), vec![], 100);
        let p = ip4(255, us().primary, &m);
        assert_eq!(ipv4(&p[..19], &us()), Verdict::Reject(Reject::Truncated));
    }

    #[test]
    fn rejects_truncated_ipv4_headers() {
        let (_, m) = good_v4();
        let p = ip4(255, them(), &m);
        assert_eq!(ipv4(&[], &us()), Verdict::Reject(Reject::Truncated));
        assert_eq!(ipv4(&p[..19], &us()), Verdict::Reject(Reject::Truncated));
        let mut v6 = p.clone();
        v6[0] = 0x65;
        assert_eq!(ipv4(&v6, &us()), Verdict::Reject(Reject::Truncated), "not IPv4 at all");
    }

    #[test]
    fn rejects_a_bad_ihl() {
        let (_, m) = good_v4();
        let mut short = ip4(255, them(), &m);
        short[0] = 0x44;
        assert_eq!(ipv4(&short, &us()), Verdict::Reject(Reject::Truncated), "IHL below 5 words");
        let mut long = ip4(255, them(), &m);
        long[0] = 0x4f;
        assert_eq!(ipv4(&long, &us()), Verdict::Reject(Reject::Truncated), "IHL beyond the packet");
    }

    #[test]
    fn skips_ipv4_options() {
        let (a, m) = good_v4();
        let mut p = ip4(255, them(), &[]);
        p[0] = 0x46;
        p.extend_from_slice(&[1, 1, 1, 0]);
        p.extend_from_slice(&m);
        let tot = (p.len() as u16).to_be_bytes();
        p[2..4].copy_from_slice(&tot);
        assert_eq!(ipv4(&p, &us()), accepted(them(), a));
    }

    #[test]
    fn the_total_length_trims_padding_and_is_clamped_to_the_packet() {
        let (a, m) = good_v4();
        let mut padded = ip4(255, them(), &m);
        padded.extend_from_slice(&[0xaa; 6]);
        assert_eq!(ipv4(&padded, &us()), accepted(them(), a.clone()), "padding is not part of the message");
        let mut beyond = ip4(255, them(), &m);
        beyond[2..4].copy_from_slice(&1500u16.to_be_bytes());
        assert_eq!(ipv4(&beyond, &us()), accepted(them(), a), "a total length beyond the packet reads to its end");
        let mut inside = ip4(255, them(), &m);
        inside[2..4].copy_from_slice(&10u16.to_be_bytes());
        assert_eq!(ipv4(&inside, &us()), Verdict::Reject(Reject::Truncated), "shorter than the header: no message");
    }

    #[test]
    fn rejects_a_ttl_or_hop_limit_other_than_255() {
        let (_, m) = good_v4();
        assert_eq!(ipv4(&ip4(254, them(), &m), &us()), Verdict::Reject(Reject::Ttl));
        let src: Ipv6Addr = "fe80::2".parse().unwrap();
        let us6 = Instance { primary: "fe80::1".parse().unwrap(), vrid: 51, addresses: &[], owner: false, unicast_peers: &[], siblings: &[] };
        let (_, m6) = advert_from(IpAddr::V6(src), IpAddr::V6(MCAST_V6), vec![], 100);
        assert_eq!(ipv6(src, None, Some(64), &m6, &us6), Verdict::Reject(Reject::Ttl));
        assert_eq!(ipv6(src, None, None, &m6, &us6), Verdict::Reject(Reject::Ttl), "no hop limit reported");
    }

    #[test]
    fn rejects_a_truncated_message() {
        let (_, m) = good_v4();
        assert_eq!(ipv4(&ip4(255, them(), &m[..7]), &us()), Verdict::Reject(Reject::Truncated));
        assert_eq!(ipv4(&ip4(255, them(), &m[..10]), &us()), Verdict::Reject(Reject::Truncated), "fewer addresses than counted");
    }

    #[test]
    fn rejects_a_wrong_version() {
        let (_, mut m) = good_v4();
        m[0] = 0x21;
        assert_eq!(ipv4(&ip4(255, them(), &m), &us()), Verdict::Reject(Reject::Version));
    }

    #[test]
    fn rejects_a_wrong_type() {
        let (_, mut m) = good_v4();
        m[0] = 0x32;
        assert_eq!(ipv4(&ip4(255, them(), &m), &us()), Verdict::Reject(Reject::Type));
    }

    #[test]
    fn rejects_a_bad_checksum() {
        let (_, mut m) = good_v4();
        m[2] ^= 1;
        assert_eq!(ipv4(&ip4(255, them(), &m), &us()), Verdict::Reject(Reject::Checksum));
        let (_, m) = good_v4();
        assert_eq!(ipv4(&ip4(255, ip([10, 0, 0, 3]), &m), &us()), Verdict::Reject(Reject::Checksum), "summed for another source");
    }

    #[test]
    fn rejects_another_vrid() {
        let a = Advert { vrid: 52, priority: 100, max_adver_int: 100, addresses: VIPS.iter().map(|(a, _)| *a).collect() };
        let m = a.encode(them(), IpAddr::V4(MCAST_V4), ChecksumMode::PseudoHeader);
        assert_eq!(ipv4(&ip4(255, them(), &m), &us()), Verdict::Reject(Reject::Vrid));
    }

    #[test]
    fn rejects_another_address_list_unless_from_the_owner() {
        for addresses in [vec![ip([10, 0, 0, 100])], vec![ip([10, 0, 0, 100]), ip([10, 0, 0, 102])], vec![]] {
            let (_, m) = advert_from(them(), IpAddr::V4(MCAST_V4), addresses.clone(), 254);
            assert_eq!(ipv4(&ip4(255, them(), &m), &us()), Verdict::Reject(Reject::AddressList), "{addresses:?}");
            let (a, m) = advert_from(them(), IpAddr::V4(MCAST_V4), addresses, 255);
            assert_eq!(ipv4(&ip4(255, them(), &m), &us()), accepted(them(), a), "priority 255 owns the addresses");
        }
    }
}
