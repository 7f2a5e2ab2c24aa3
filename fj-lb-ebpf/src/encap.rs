//! Layer-3 direct return: the packet, untouched from its IP header on, goes inside an outer
//! IP header (IPIP, IP6IP6, 4in6: the backend's family decides) or an outer IP and UDP header
//! (GUE variant 1, RFC draft-ietf-intarea-gue §5: no GUE header, the inner version read from
//! its first nibble) addressed to the backend, and leaves with `XDP_TX` towards the next hop
//! the kernel routes the backend's address through.
//!
//! The outer source comes from the flow: a configured prefix (172.16.0.0/16 and 100::/64 by
//! default), the rest from the client's address and port, so one flow always has the same
//! outer header and the backend's NIC spreads flows over its queues (RSS hashes addresses).
//! Outer IPv4 carries DF (a fragment of a tunnel packet could not be decapsulated in XDP)
//! and TTL 64; IPv6 hop limit 64, the flow's entropy as flow label. TOS / traffic class are
//! copied from the inner header.
use aya_ebpf::{helpers::bpf_xdp_adjust_head, programs::XdpContext};
use fj_lb_common::{Backend, FAMILY_V6, FlowKey, PROTO_IPIP, PROTO_IPV6, PROTO_TCP, PROTO_UDP, Settings, Stat};

use crate::{
    csum::{add_words, finish, fold},
    forward::put,
    parse::{ETH_P_IP, ETH_P_IPV6, EthHdr, FRAG_NONE, Ipv4Hdr, Ipv6Hdr, L3, TcpHdr, UdpHdr, ptr_at, ptr_in},
};

pub const OUTER_TTL: u8 = 64;
const IP_DF: u16 = 0x4000;

/// Bytes encapsulation adds in front of the inner IP packet.
#[inline(always)]
pub fn overhead(outer_v6: bool, gue: bool) -> u32 {
    (if outer_v6 { Ipv6Hdr::LEN } else { Ipv4Hdr::LEN }) as u32 + if gue { UdpHdr::LEN as u32 } else { 0 }
}

/// 32 bits that differ from flow to flow and never within one: the client's address folded to
/// 32 bits, mixed with its port.
#[inline(always)]
pub fn flow_entropy(key: &FlowKey) -> u32 {
    let s = &key.src;
    let word = |i: usize| u32::from_be_bytes([s[i], s[i + 1], s[i + 2], s[i + 3]]);
    (word(0) ^ word(4) ^ word(8) ^ word(12)) ^ (key.sport as u32).wrapping_mul(0x9e37_79b1)
}

#[inline(always)]
pub fn entropy16(e: u32) -> u16 {
    (e ^ (e >> 16)) as u16
}

/// Wraps the frame's IP packet for `b`: an IPIP-family header, or (with `gue_port` non-zero)
/// a GUE one. `key` is the flow the packet belongs to (for an ICMP error, the flow it is
/// about), `l3` the packet as parsed.
#[inline(always)]
pub fn encapsulate(ctx: &XdpContext, b: &Backend, s: &Settings, key: &FlowKey, l3: &L3, gue_port: u16) -> Result<(), Stat> {
    let outer_v6 = b.family == FAMILY_V6;
    let inner_v6 = key.family == FAMILY_V6;
    let gue = gue_port != 0;
    // What the UDP checksum needs from the inner packet, read before the frame moves.
    let inner_sum = if gue { gue_inner_sum(ctx, l3, inner_v6) } else { None };
    let entropy = flow_entropy(key);
    let e16 = entropy16(entropy);
    let hdr_len = if outer_v6 { Ipv6Hdr::LEN } else { Ipv4Hdr::LEN };
    let over = overhead(outer_v6, gue);
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(over as i32)) } != 0 {
        return Err(Stat::DropAdjustFailed);
    }
    let eth: *mut EthHdr = ptr_at(ctx, 0).ok_or(Stat::DropAdjustFailed)?;
    unsafe {
        put(&mut (*eth).dst, &b.mac);
        put(&mut (*eth).src, &s.lb_mac);
        (*eth).ether_type = if outer_v6 { ETH_P_IPV6 } else { ETH_P_IP }.to_be_bytes();
    }
    let proto = if gue {
        PROTO_UDP
    } else if inner_v6 {
        PROTO_IPV6
    } else {
        PROTO_IPIP
    };
    let udp_len = l3.ip_len + UdpHdr::LEN as u32;
    // The outer pseudo-header's sum, for GUE's checksum.
    let pseudo;
    if outer_v6 {
        let ip: *mut Ipv6Hdr = ptr_at(ctx, EthHdr::LEN).ok_or(Stat::DropAdjustFailed)?;
        let payload = if gue { udp_len } else { l3.ip_len };
        let vtc = (6u32 << 28) | ((l3.tos as u32) << 20) | (entropy & 0x000f_ffff);
        let p = &s.encap_src_v6;
        let e = entropy.to_be_bytes();
        let src = [p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], 0, 0, 0, 0, e[0], e[1], e[2], e[3]];
        unsafe {
            (*ip).vtc_flow = vtc.to_be_bytes();
            (*ip).payload_len = (payload as u16).to_be_bytes();
            (*ip).next_hdr = proto;
            (*ip).hop_limit = OUTER_TTL;
            put(&mut (*ip).saddr, &src);
            put(&mut (*ip).daddr, &b.addr);
        }
        pseudo = add_words(add_words(0, &src), &b.addr) + PROTO_UDP as u32 + udp_len;
    } else {
        let ip: *mut Ipv4Hdr = ptr_at(ctx, EthHdr::LEN).ok_or(Stat::DropAdjustFailed)?;
        let tot_len = l3.ip_len + over;
        let src = [s.encap_src_v4[0], s.encap_src_v4[1], (e16 >> 8) as u8, e16 as u8];
        let dst = [b.addr[0], b.addr[1], b.addr[2], b.addr[3]];
        let addrs = add_words(add_words(0, &src), &dst);
        let sum = 0x4500 + l3.tos as u32 + tot_len + IP_DF as u32 + ((OUTER_TTL as u32) << 8 | proto as u32) + addrs;
        unsafe {
            (*ip).version_ihl = 0x45;
            (*ip).tos = l3.tos;
            (*ip).tot_len = (tot_len as u16).to_be_bytes();
            (*ip).id = [0, 0];
            (*ip).frag_off = IP_DF.to_be_bytes();
            (*ip).ttl = OUTER_TTL;
            (*ip).proto = proto;
            (*ip).check = finish(sum).to_be_bytes();
            (*ip).saddr = src;
            (*ip).daddr = dst;
        }
        pseudo = addrs + PROTO_UDP as u32 + udp_len;
    }
    if gue {
        let udp: *mut UdpHdr = ptr_at(ctx, EthHdr::LEN + hdr_len).ok_or(Stat::DropAdjustFailed)?;
        // Never port 0 ("no source port"): the entropy is what spreads GUE flows.
        let sport = if e16 == 0 { 1 } else { e16 };
        let check = match inner_sum {
            Some(inner) => match finish(inner + pseudo + sport as u32 + gue_port as u32 + udp_len) {
                0 => 0xffff,
                c => c,
            },
            // Zero: no checksum. Allowed for UDP over IPv4 (RFC 768) and for tunnels over
            // IPv6 (RFC 6935, RFC 6936); fj-lb's decap never checks it.
            None => 0,
        };
        unsafe {
            (*udp).sport = sport.to_be_bytes();
            (*udp).dport = gue_port.to_be_bytes();
            (*udp).len = (udp_len as u16).to_be_bytes();
            (*udp).check = check.to_be_bytes();
        }
    }
    Ok(())
}

/// The sum the inner packet adds to GUE's UDP checksum, from its own transport checksum
/// (RFC 1624): a TCP or UDP segment with a correct checksum sums to the complement of its
/// pseudo-header, and a valid IPv4 header to zero, so nothing but the headers is read. None
/// (send checksum zero) when that does not hold or would need more: fragments, UDP without a
/// checksum, other protocols (ICMP errors steered to a backend), IPv6 extension headers.
#[inline(always)]
fn gue_inner_sum(ctx: &XdpContext, l3: &L3, inner_v6: bool) -> Option<u32> {
    if l3.frag != FRAG_NONE {
        return None;
    }
    match l3.proto {
        PROTO_TCP => {
            ptr_in::<TcpHdr>(ctx, l3.l4_off, l3.ip_end)?;
        }
        PROTO_UDP => {
            let udp: *const UdpHdr = ptr_in(ctx, l3.l4_off, l3.ip_end)?;
            if unsafe { (*udp).check } == [0, 0] {
                return None;
            }
        }
        _ => return None,
    }
    let segment = (l3.ip_end - l3.l4_off) as u32 + l3.proto as u32;
    if inner_v6 {
        if l3.l4_off != EthHdr::LEN + Ipv6Hdr::LEN {
            return None;
        }
        let ip: *const Ipv6Hdr = ptr_at(ctx, EthHdr::LEN)?;
        let (head, addrs) = unsafe {
            let v = (*ip).vtc_flow;
            let p = (*ip).payload_len;
            (add_words(0, &[v[0], v[1], v[2], v[3], p[0], p[1], (*ip).next_hdr, (*ip).hop_limit]), add_words(add_words(0, &(*ip).saddr), &(*ip).daddr))
        };
        Some(head + addrs + (!fold(addrs + segment)) as u32)
    } else {
        let ip: *const Ipv4Hdr = ptr_at(ctx, EthHdr::LEN)?;
        let addrs = unsafe { add_words(add_words(0, &(*ip).saddr), &(*ip).daddr) };
        Some((!fold(addrs + segment)) as u32)
    }
}
