//! ICMP the balancer acts on: errors about a balanced flow, steered to that flow's backend, and
//! the packet-too-big replies it builds itself for packets that would not fit once
//! encapsulated.
//!
//! An ICMP error carries the header of the packet that caused it. A backend's reply (from
//! the VIP to the client) that meets a link too small for it, or a dead end, makes a router
//! send the error to the VIP, that is to this host: without steering, the backend never hears
//! of it and path-MTU discovery breaks for every flow it serves. The embedded header, its
//! addresses and ports swapped, is the flow's key: the flow table says where the flow went
//! (never inserting: an ICMP error is not a flow), else the Maglev table, and the whole ICMP
//! packet goes there as the flow's packets do (layer 2, IPIP or GUE).
use aya_ebpf::{
    bindings::xdp_action,
    helpers::{bpf_xdp_adjust_head, bpf_xdp_adjust_tail},
    programs::XdpContext,
};
use fj_lb_common::{FAMILY_V4, FlowKey, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, ServiceKey, Settings, Stat};
use fj_lb_ebpf::{
    csum::{add_words, finish},
    forward::put,
    parse::{ETH_P_IP, ETH_P_IPV6, EthHdr, IcmpHdr, Ipv4Hdr, Ipv6Hdr, L3, frame_len, ptr_at, ptr_in},
};

use crate::{
    balancer::{forward, refuse_or_pass},
    flow::{peek_backend, within_rate},
    maps::{ICMP_RATE, SERVICES},
    stats::count,
};

const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_FRAG_NEEDED: u8 = 4;
const ICMPV6_DEST_UNREACH: u8 = 1;
const ICMPV6_PACKET_TOO_BIG: u8 = 2;
/// Router solicitation .. redirect (RFC 4861).
const ND_FIRST: u8 = 133;
const ND_LAST: u8 = 137;
/// IPv6's minimum link MTU (RFC 8200 §5): a packet-too-big never asks for less.
const IPV6_MIN_MTU: u32 = 1280;
/// Bytes of the offending packet quoted in a too-big reply, from its IP header on: enough
/// for the longest IPv4 header and a TCP header with options (RFC 1812 §4.3.2.3 asks for at
/// least the header and 8 bytes; Linux reads no more than the transport ports).
pub const TOO_BIG_QUOTE: usize = 128;
const REPLY_TTL: u8 = 64;

/// An ICMP or ICMPv6 packet (not a fragment) to this host: neighbour discovery is always the
/// host's; an error about a balanced flow goes to its backend; anything else (echo, errors
/// about other traffic) is passed, or dropped for a virtual address this host may not accept.
/// `key` holds the packet's addresses; for an error that is steered it becomes the key of the
/// flow the error is about.
#[inline(always)]
pub fn steer(ctx: &XdpContext, settings: &Settings, key: &mut FlowKey, l3: &L3, group: bool, check_vips: bool) -> Result<u32, (Stat, u32)> {
    let pass = |s: Stat| (s, xdp_action::XDP_PASS);
    let icmp: *const IcmpHdr = ptr_in(ctx, l3.l4_off, l3.ip_end).ok_or(pass(Stat::PassMalformed))?;
    let kind = unsafe { (*icmp).kind };
    let inner_off = l3.l4_off + IcmpHdr::LEN;
    // The embedded packet went from the VIP (this packet's destination) to the client.
    let v4 = key.family == FAMILY_V4;
    let (inner_proto, ports_off, client) = if v4 {
        if l3.proto != PROTO_ICMP || kind != ICMP_DEST_UNREACH {
            return Err(refuse_or_pass(key, Stat::PassNotL4, check_vips));
        }
        let ip: *const Ipv4Hdr = ptr_in(ctx, inner_off, l3.ip_end).ok_or(pass(Stat::PassMalformed))?;
        let version_ihl = unsafe { (*ip).version_ihl };
        let ihl = ((version_ihl & 0x0f) as usize) * 4;
        if version_ihl >> 4 != 4 || ihl < Ipv4Hdr::LEN {
            return Err(pass(Stat::PassMalformed));
        }
        let (vip, client) = unsafe { ((*ip).saddr, (*ip).daddr) };
        if vip != [key.dst[0], key.dst[1], key.dst[2], key.dst[3]] {
            return Err(refuse_or_pass(key, Stat::PassIcmpNotService, check_vips));
        }
        let client = [client[0], client[1], client[2], client[3], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        (unsafe { (*ip).proto }, inner_off + ihl, client)
    } else {
        if l3.proto != PROTO_ICMPV6 {
            return Err(refuse_or_pass(key, Stat::PassNotL4, check_vips));
        }
        if (ND_FIRST..=ND_LAST).contains(&kind) {
            // RFC 5798 §6.4.3 and RFC 4861: the master must answer neighbour solicitations
            // for its virtual addresses whatever Accept_Mode says.
            return Err(pass(Stat::PassNeighbourDiscovery));
        }
        if kind != ICMPV6_DEST_UNREACH && kind != ICMPV6_PACKET_TOO_BIG {
            return Err(refuse_or_pass(key, Stat::PassNotL4, check_vips));
        }
        let ip: *const Ipv6Hdr = ptr_in(ctx, inner_off, l3.ip_end).ok_or(pass(Stat::PassMalformed))?;
        if unsafe { (*ip).saddr } != key.dst {
            return Err(refuse_or_pass(key, Stat::PassIcmpNotService, check_vips));
        }
        unsafe { ((*ip).next_hdr, inner_off + Ipv6Hdr::LEN, (*ip).daddr) }
    };
    if inner_proto != PROTO_TCP && inner_proto != PROTO_UDP {
        return Err(refuse_or_pass(key, Stat::PassIcmpNotService, check_vips));
    }
    // Source port, destination port: the first four bytes of TCP and UDP alike.
    let ports: *const [u8; 4] = ptr_in(ctx, ports_off, l3.ip_end).ok_or(pass(Stat::PassMalformed))?;
    let p = unsafe { *ports };
    if group {
        return Err(pass(Stat::PassMulticast));
    }
    let (vip_port, client_port) = (u16::from_be_bytes([p[0], p[1]]), u16::from_be_bytes([p[2], p[3]]));
    let skey = ServiceKey { addr: key.dst, port: vip_port, proto: inner_proto, family: key.family };
    let Some(svc) = (unsafe { SERVICES.get(skey) }) else {
        return Err(refuse_or_pass(key, Stat::PassIcmpNotService, check_vips));
    };
    let svc = *svc;
    // The flow runs the other way: from the client to the VIP.
    put(&mut key.src, &client);
    key.sport = client_port;
    key.dport = vip_port;
    key.proto = inner_proto;
    let backend = peek_backend(key, &svc, settings.hash_seed).ok_or((Stat::DropNoBackend, xdp_action::XDP_DROP))?;
    if backend.mac == [0u8; 6] {
        return Err((Stat::DropBackendUnresolved, xdp_action::XDP_DROP));
    }
    // An error about an error is never sent: an oversized one is dropped (`may_reply` false).
    let action = forward(ctx, settings, backend, key, l3, false)?;
    count(Stat::IcmpSteered);
    Ok(action)
}

/// A packet that would not fit the path to its backend once encapsulated (`mtu`: the most
/// the inner packet may be). IPv4 with DF and IPv6 get fragmentation-needed / packet-too-big
/// from the VIP, built here and sent back (rate-limited per CPU); IPv4 without DF cannot be
/// fragmented in XDP and is dropped.
#[inline(always)]
pub fn too_big(ctx: &XdpContext, settings: &Settings, key: &FlowKey, l3: &L3, mtu: u32) -> (Stat, u32) {
    let drop = |s: Stat| (s, xdp_action::XDP_DROP);
    let v6 = key.family != FAMILY_V4;
    if !v6 && !l3.df {
        return drop(Stat::DropTooBig);
    }
    let cap = settings.icmp_too_big_per_cpu;
    if cap == 0 || !within_rate(ICMP_RATE.get_ptr_mut(0), cap) {
        return drop(Stat::DropTooBigRateLimited);
    }
    match reply_too_big(ctx, key, v6, mtu) {
        Ok(()) => (Stat::IcmpTooBigSent, xdp_action::XDP_TX),
        Err(s) => drop(s),
    }
}

/// Turns the frame into the reply: cut to Ethernet + `TOO_BIG_QUOTE` bytes of the packet,
/// then an IP and an ICMP header in front, from the VIP back to the sender's MAC.
#[inline(always)]
fn reply_too_big(ctx: &XdpContext, key: &FlowKey, v6: bool, mtu: u32) -> Result<(), Stat> {
    let len = frame_len(ctx);
    let keep = EthHdr::LEN + TOO_BIG_QUOTE;
    if len < keep {
        return Err(Stat::DropTooBig);
    }
    let eth: *const EthHdr = ptr_at(ctx, 0).ok_or(Stat::DropAdjustFailed)?;
    let (peer, us) = unsafe { ((*eth).src, (*eth).dst) };
    if unsafe { bpf_xdp_adjust_tail(ctx.ctx, -((len - keep) as i32)) } != 0 {
        return Err(Stat::DropAdjustFailed);
    }
    let hdr_len = if v6 { Ipv6Hdr::LEN } else { Ipv4Hdr::LEN };
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -((hdr_len + IcmpHdr::LEN) as i32)) } != 0 {
        return Err(Stat::DropAdjustFailed);
    }
    let eth: *mut EthHdr = ptr_at(ctx, 0).ok_or(Stat::DropAdjustFailed)?;
    unsafe {
        put(&mut (*eth).dst, &peer);
        put(&mut (*eth).src, &us);
        (*eth).ether_type = if v6 { ETH_P_IPV6 } else { ETH_P_IP }.to_be_bytes();
    }
    let quote: *const [u8; TOO_BIG_QUOTE] =
        ptr_at(ctx, EthHdr::LEN + hdr_len + IcmpHdr::LEN).ok_or(Stat::DropAdjustFailed)?;
    let quoted = add_words(0, unsafe { &*quote });
    let icmp_len = (IcmpHdr::LEN + TOO_BIG_QUOTE) as u32;
    let icmp: *mut IcmpHdr = ptr_at(ctx, EthHdr::LEN + hdr_len).ok_or(Stat::DropAdjustFailed)?;
    if v6 {
        let ip: *mut Ipv6Hdr = ptr_at(ctx, EthHdr::LEN).ok_or(Stat::DropAdjustFailed)?;
        let mtu = if mtu < IPV6_MIN_MTU { IPV6_MIN_MTU } else { mtu };
        let pseudo = add_words(add_words(0, &key.dst), &key.src) + icmp_len + PROTO_ICMPV6 as u32;
        let sum = pseudo + ((ICMPV6_PACKET_TOO_BIG as u32) << 8) + (mtu >> 16) + (mtu & 0xffff) + quoted;
        unsafe {
            (*ip).vtc_flow = (6u32 << 28).to_be_bytes();
            (*ip).payload_len = (icmp_len as u16).to_be_bytes();
            (*ip).next_hdr = PROTO_ICMPV6;
            (*ip).hop_limit = REPLY_TTL;
            put(&mut (*ip).saddr, &key.dst);
            put(&mut (*ip).daddr, &key.src);
            (*icmp).kind = ICMPV6_PACKET_TOO_BIG;
            (*icmp).code = 0;
            (*icmp).check = finish(sum).to_be_bytes();
            (*icmp).rest = mtu.to_be_bytes();
        }
    } else {
        let ip: *mut Ipv4Hdr = ptr_at(ctx, EthHdr::LEN).ok_or(Stat::DropAdjustFailed)?;
        let src = [key.dst[0], key.dst[1], key.dst[2], key.dst[3]];
        let dst = [key.src[0], key.src[1], key.src[2], key.src[3]];
        let tot_len = Ipv4Hdr::LEN as u32 + icmp_len;
        let ip_sum = 0x4500 + tot_len + ((REPLY_TTL as u32) << 8 | PROTO_ICMP as u32) + add_words(add_words(0, &src), &dst);
        let mtu = mtu & 0xffff;
        let sum = ((ICMP_DEST_UNREACH as u32) << 8 | ICMP_FRAG_NEEDED as u32) + mtu + quoted;
        unsafe {
            (*ip).version_ihl = 0x45;
            (*ip).tos = 0;
            (*ip).tot_len = (tot_len as u16).to_be_bytes();
            (*ip).id = [0, 0];
            (*ip).frag_off = [0, 0];
            (*ip).ttl = REPLY_TTL;
            (*ip).proto = PROTO_ICMP;
            (*ip).check = finish(ip_sum).to_be_bytes();
            (*ip).saddr = src;
            (*ip).daddr = dst;
            (*icmp).kind = ICMP_DEST_UNREACH;
            (*icmp).code = ICMP_FRAG_NEEDED;
            (*icmp).check = finish(sum).to_be_bytes();
            (*icmp).rest = [0, 0, (mtu >> 8) as u8, mtu as u8];
        }
    }
    Ok(())
}
