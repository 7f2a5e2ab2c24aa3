//! The backends' side of layer-3 direct return (`fj-lb decap`): strips the outer header of
//! IPIP (4in4), 6in4, IP6IP6 (6in6), 4in6 and GUE (UDP to the GUE port, the inner version read
//! from its first nibble) packets whose inner destination is one of the VIPs (or any, with
//! `--any-vip`), rewrites the ethertype and hands the inner packet to the stack (XDP_PASS),
//! which delivers it to the socket listening on the VIP. Hosts without the kernel's tunnel
//! modules (ipip, ip6_tunnel, fou) need nothing else. Everything else passes untouched;
//! every decision is counted.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    helpers::bpf_xdp_adjust_head,
    macros::{map, xdp},
    maps::{Array, HashMap, PerCpuArray},
    programs::XdpContext,
};
use fj_lb_common::{DECAP_ANY_VIP, DecapConfig, DecapStat, PROTO_IPIP, PROTO_IPV6, PROTO_UDP};
use fj_lb_ebpf::{
    forward::move_macs,
    parse::{ETH_P_IP, ETH_P_IPV6, EthHdr, Ipv4Hdr, Ipv6Hdr, UdpHdr, frame_len, ptr_at},
};

#[map(name = "DECAP_VIPS4")]
static VIPS4: HashMap<[u8; 4], u8> = HashMap::with_max_entries(1024, 0);

#[map(name = "DECAP_VIPS6")]
static VIPS6: HashMap<[u8; 16], u8> = HashMap::with_max_entries(1024, 0);

#[map(name = "DECAP_CONFIG")]
static CONFIG: Array<DecapConfig> = Array::with_max_entries(1, 0);

#[map(name = "DECAP_STATS")]
static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(DecapStat::COUNT, 0);

const IP_MF_OFFSET: u16 = 0x3fff;

#[xdp]
pub fn fj_lb_decap(ctx: XdpContext) -> u32 {
    let (stat, action) = match decap(&ctx) {
        Ok(stat) => (stat, xdp_action::XDP_PASS),
        Err(stat) if stat as u32 == DecapStat::DropAdjustFailed as u32 => (stat, xdp_action::XDP_DROP),
        Err(stat) => (stat, xdp_action::XDP_PASS),
    };
    if let Some(p) = STATS.get_ptr_mut(stat as u32) {
        // Per-CPU slot: no other writer.
        unsafe { *p += 1 };
    }
    action
}

#[inline(always)]
fn decap(ctx: &XdpContext) -> Result<DecapStat, DecapStat> {
    let cfg = CONFIG.get(0).ok_or(DecapStat::PassNotEncapsulated)?;
    let eth: *const EthHdr = ptr_at(ctx, 0).ok_or(DecapStat::PassMalformed)?;
    let (outer_len, inner_v6, stat) = match u16::from_be_bytes(unsafe { (*eth).ether_type }) {
        ETH_P_IP => {
            let ip: *const Ipv4Hdr = ptr_at(ctx, EthHdr::LEN).ok_or(DecapStat::PassMalformed)?;
            let (version_ihl, proto) = unsafe { ((*ip).version_ihl, (*ip).proto) };
            if version_ihl >> 4 != 4 || !matches!(proto, PROTO_IPIP | PROTO_IPV6 | PROTO_UDP) {
                return Err(DecapStat::PassNotEncapsulated);
            }
            let tot_len = u16::from_be_bytes(unsafe { (*ip).tot_len }) as usize;
            if EthHdr::LEN + tot_len > frame_len(ctx) || tot_len < Ipv4Hdr::LEN {
                return Err(DecapStat::PassMalformed);
            }
            if version_ihl & 0x0f != 5 || u16::from_be_bytes(unsafe { (*ip).frag_off }) & IP_MF_OFFSET != 0 {
                return Err(DecapStat::PassFragmentOrOptions);
            }
            match proto {
                PROTO_IPIP => (Ipv4Hdr::LEN, false, DecapStat::Decap4in4),
                PROTO_IPV6 => (Ipv4Hdr::LEN, true, DecapStat::Decap6in4),
                _ => (Ipv4Hdr::LEN + UdpHdr::LEN, gue_inner_v6(ctx, Ipv4Hdr::LEN, cfg.gue_port)?, DecapStat::DecapGue),
            }
        }
        ETH_P_IPV6 => {
            let ip: *const Ipv6Hdr = ptr_at(ctx, EthHdr::LEN).ok_or(DecapStat::PassMalformed)?;
            let (vtc, next) = unsafe { ((*ip).vtc_flow[0], (*ip).next_hdr) };
            // fj-lb sends no extension headers in front of the inner packet; an IPv6 fragment
            // header is next header 44, not a tunnel.
            if vtc >> 4 != 6 || !matches!(next, PROTO_IPIP | PROTO_IPV6 | PROTO_UDP) {
                return Err(DecapStat::PassNotEncapsulated);
            }
            let payload = u16::from_be_bytes(unsafe { (*ip).payload_len }) as usize;
            if EthHdr::LEN + Ipv6Hdr::LEN + payload > frame_len(ctx) {
                return Err(DecapStat::PassMalformed);
            }
            match next {
                PROTO_IPIP => (Ipv6Hdr::LEN, false, DecapStat::Decap4in6),
                PROTO_IPV6 => (Ipv6Hdr::LEN, true, DecapStat::Decap6in6),
                _ => (Ipv6Hdr::LEN + UdpHdr::LEN, gue_inner_v6(ctx, Ipv6Hdr::LEN, cfg.gue_port)?, DecapStat::DecapGue),
            }
        }
        _ => return Err(DecapStat::PassNotEncapsulated),
    };
    let inner = EthHdr::LEN + outer_len;
    if cfg.flags & DECAP_ANY_VIP == 0 {
        let listed = if inner_v6 {
            let ip: *const Ipv6Hdr = ptr_at(ctx, inner).ok_or(DecapStat::PassMalformed)?;
            unsafe { VIPS6.get((*ip).daddr) }.is_some()
        } else {
            let ip: *const Ipv4Hdr = ptr_at(ctx, inner).ok_or(DecapStat::PassMalformed)?;
            unsafe { VIPS4.get((*ip).daddr) }.is_some()
        };
        if !listed {
            return Err(DecapStat::PassNotVip);
        }
    }
    // The Ethernet header moves forward over the outer header, its type now the inner one's.
    let old: *const EthHdr = ptr_at(ctx, 0).ok_or(DecapStat::PassMalformed)?;
    let new: *mut EthHdr = ptr_at(ctx, outer_len).ok_or(DecapStat::PassMalformed)?;
    move_macs(old, new);
    unsafe {
        (*new).ether_type = if inner_v6 { ETH_P_IPV6 } else { ETH_P_IP }.to_be_bytes();
    }
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, outer_len as i32) } != 0 {
        return Err(DecapStat::DropAdjustFailed);
    }
    Ok(stat)
}

/// For a UDP packet after an outer IP header of `ip_len` bytes: whether it is GUE (to the GUE
/// port) and carries IPv6 (true) or IPv4 (false), by the first nibble of what follows.
#[inline(always)]
fn gue_inner_v6(ctx: &XdpContext, ip_len: usize, gue_port: u16) -> Result<bool, DecapStat> {
    let udp: *const UdpHdr = ptr_at(ctx, EthHdr::LEN + ip_len).ok_or(DecapStat::PassMalformed)?;
    if u16::from_be_bytes(unsafe { (*udp).dport }) != gue_port {
        return Err(DecapStat::PassNotEncapsulated);
    }
    let first: *const u8 = ptr_at(ctx, EthHdr::LEN + ip_len + UdpHdr::LEN).ok_or(DecapStat::PassMalformed)?;
    match unsafe { *first } >> 4 {
        4 => Ok(false),
        6 => Ok(true),
        _ => Err(DecapStat::PassNotEncapsulated),
    }
}

fj_lb_ebpf::object_common!();
