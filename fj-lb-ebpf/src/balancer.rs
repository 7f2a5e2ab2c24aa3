use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use fj_lb_common::{
    Backend, FORWARD_GUE, FORWARD_IPIP, FlowKey, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, SETTINGS_NOT_ACCEPTED,
    NO_BACKEND, SETTINGS_TRACE, ServiceKey, Settings, Stat, TRACE_PICK_FLOW, TRACE_PICK_MAGLEV, TRACE_PICK_NONE, TraceDecision, VipKey,
    hash::vip_filter_bit,
};
use fj_lb_ebpf::{
    encap::{encapsulate, overhead},
    forward::rewrite_macs,
    parse::{FRAG_FIRST, FRAG_LATER, FRAG_NONE, L3, parse_l3, parse_ports, ptr_at, zeroed_key},
};

use crate::{
    flow::{Pinned, established, pick_new},
    frag, icmp,
    maps::{NOT_ACCEPTED, SERVICES, SETTINGS, VIP_FILTER},
    stats::{count, count_forwarded},
    trace,
};

#[inline(always)]
pub fn balance(ctx: &XdpContext) -> u32 {
    // Without settings the daemon has not finished loading: let the host handle the packet.
    let Some(settings) = SETTINGS.get(0) else {
        count(Stat::PassNotService);
        return xdp_action::XDP_PASS;
    };
    // Here rather than in `try_balance`, so that `fj-lb trace` reports the 5-tuple as far as
    // it was parsed whatever the outcome.
    let mut slot = core::mem::MaybeUninit::uninit();
    let key = zeroed_key(&mut slot);
    match try_balance(ctx, settings, key) {
        Ok(sent) => {
            // The one test tracing costs when it is off (`fj-lb trace`).
            if settings.flags & SETTINGS_TRACE != 0 {
                trace::emit(key, &sent);
            }
            sent.action
        }
        Err((stat, action)) => {
            count(stat);
            if settings.flags & SETTINGS_TRACE != 0 {
                trace::emit(key, &decision(action, stat, NO_BACKEND, TRACE_PICK_NONE, 0, frame_len(ctx)));
            }
            action
        }
    }
}

/// The frame's length now, bytes.
#[inline(always)]
fn frame_len(ctx: &XdpContext) -> u32 {
    (ctx.data_end() - ctx.data()) as u32
}

/// A packet's decision as `fj-lb trace` records it: sent on (`Forwarded` to `backend`, picked
/// by `how`/`slot`; `IcmpSteered`, backend not reported), or passed or dropped for `stat`.
#[inline(always)]
fn decision(action: u32, stat: Stat, backend: u32, how: u32, slot: u32, len: u32) -> TraceDecision {
    TraceDecision { stat: stat as u32, action, backend, how, slot, len }
}

#[inline(always)]
fn try_balance(ctx: &XdpContext, settings: &Settings, key: &mut FlowKey) -> Result<TraceDecision, (Stat, u32)> {
    // Only unicast frames sent to us: a bridge flooding frames for another host (a dead
    // master's MAC, say) must not make this host forward them too. Broadcast and multicast
    // (ARP, VRRP) go on to the parser, which passes them.
    let group = match ptr_at::<[u8; 6]>(ctx, 0) {
        Some(dst) => {
            let dst = unsafe { *dst };
            let unicast = dst[0] & 1 == 0;
            if unicast && dst != settings.lb_mac && (settings.alt_mac == [0; 6] || dst != settings.alt_mac) {
                return Err((Stat::PassOtherHost, xdp_action::XDP_PASS));
            }
            !unicast
        }
        None => return Err((Stat::PassMalformed, xdp_action::XDP_PASS)),
    };
    let check_vips = settings.flags & SETTINGS_NOT_ACCEPTED != 0;
    let l3 = match parse_l3(ctx, key) {
        Ok(l3) => l3,
        Err(stat) => return Err(refuse_or_pass(key, stat, check_vips)),
    };
    match l3.proto {
        PROTO_TCP | PROTO_UDP if l3.frag == FRAG_LATER => frag::follow(key, &l3, settings)?,
        PROTO_TCP | PROTO_UDP => {
            if let Err(stat) = parse_ports(ctx, key, &l3) {
                return Err(refuse_or_pass(key, stat, check_vips));
            }
        }
        PROTO_ICMP | PROTO_ICMPV6 if l3.frag == FRAG_NONE => {
            // Before steering may encapsulate the frame; for `fj-lb trace`, on ICMP only.
            let len = frame_len(ctx);
            return icmp::steer(ctx, settings, key, &l3, group, check_vips)
                .map(|action| decision(action, Stat::IcmpSteered, NO_BACKEND, TRACE_PICK_NONE, 0, len));
        }
        // Later fragments of anything else carry no header to judge: the host's.
        _ if l3.frag == FRAG_LATER => return Err((Stat::PassFragment, xdp_action::XDP_PASS)),
        _ => return Err(refuse_or_pass(key, Stat::PassNotL4, check_vips)),
    }
    // Multicast and broadcast frames reach every LB host on the segment: balancing them would
    // forward each one as many times. (ARP and the like were passed by the parser already.)
    if group {
        return Err((Stat::PassMulticast, xdp_action::XDP_PASS));
    }
    if !maybe_vip(&key.dst) {
        return Err(refuse_or_pass(key, Stat::PassNotService, check_vips));
    }
    let len = (ctx.data_end() - ctx.data()) as u64;
    // The flow table first: an established flow's backend entry carries all forwarding needs,
    // so most packets skip the service lookup. Both ways end in one call of `send`: inlined
    // twice, the forwarding code (encapsulation, too-big replies) would double the program
    // the verifier walks.
    let pinned = established(key);
    let (id, backend, how, slot) = if let Pinned::Hit(id, backend) = pinned {
        count(Stat::FlowHit);
        (id, backend, TRACE_PICK_FLOW, 0)
    } else {
        let skey = ServiceKey {
            addr: key.dst,
            port: key.dport,
            proto: key.proto,
            family: key.family,
        };
        let Some(svc) = (unsafe { SERVICES.get(skey) }) else {
            return Err(refuse_or_pass(key, Stat::PassNotService, check_vips));
        };
        let repinned = matches!(pinned, Pinned::Stale);
        let (id, backend, slot) = pick_new(key, svc, settings.hash_seed, settings.max_new_flows, repinned)
            .map_err(|s| (s, xdp_action::XDP_DROP))?;
        (id, backend, TRACE_PICK_MAGLEV, slot)
    };
    let action = send(ctx, settings, id, backend, key, &l3, len)?;
    Ok(decision(action, Stat::Forwarded, id, how, slot, len as u32))
}

/// Forwards a packet of a balanced flow to backend `id` and counts it.
#[inline(always)]
fn send(
    ctx: &XdpContext,
    settings: &Settings,
    id: u32,
    backend: &Backend,
    key: &FlowKey,
    l3: &L3,
    len: u64,
) -> Result<u32, (Stat, u32)> {
    if backend.mac == [0u8; 6] {
        return Err((Stat::DropBackendUnresolved, xdp_action::XDP_DROP));
    }
    if l3.frag == FRAG_FIRST {
        frag::track(key, l3);
    }
    let action = forward(ctx, settings, backend, key, l3, true)?;
    count_forwarded(backend.service, id, len);
    Ok(action)
}

/// Sends the packet to `backend` the way its service forwards: MACs rewritten (DSR), or
/// encapsulated (IPIP, GUE) when it fits the path; too big for it, answered with ICMP
/// (`may_reply`) or dropped.
#[inline(always)]
pub fn forward(
    ctx: &XdpContext,
    settings: &Settings,
    backend: &Backend,
    key: &FlowKey,
    l3: &L3,
    may_reply: bool,
) -> Result<u32, (Stat, u32)> {
    if backend.forward == FORWARD_IPIP || backend.forward == FORWARD_GUE {
        let gue = backend.forward == FORWARD_GUE;
        let over = overhead(backend.family == fj_lb_common::FAMILY_V6, gue);
        let mtu = backend.mtu as u32;
        if l3.ip_len + over > mtu {
            return Err(if may_reply {
                icmp::too_big(ctx, settings, key, l3, mtu.saturating_sub(over))
            } else {
                (Stat::DropTooBig, xdp_action::XDP_DROP)
            });
        }
        encapsulate(ctx, backend, settings, key, l3, if gue { backend.gue_port } else { 0 })
            .map_err(|s| (s, xdp_action::XDP_DROP))?;
        count(if gue { Stat::ForwardedGue } else { Stat::ForwardedIpip });
        return Ok(xdp_action::XDP_TX);
    }
    if !rewrite_macs(ctx, &backend.mac, &settings.lb_mac) {
        return Err((Stat::PassMalformed, xdp_action::XDP_PASS));
    }
    Ok(xdp_action::XDP_TX)
}

/// Whether `dst` may be a VIP (its bit in the filter is set); false means surely not.
#[inline(always)]
fn maybe_vip(dst: &[u8; 16]) -> bool {
    let bit = vip_filter_bit(dst);
    match VIP_FILTER.get(bit >> 6) {
        Some(word) => (*word >> (bit & 63)) & 1 != 0,
        // Cannot happen (the bit is in range); if it did, the lookups decide.
        None => true,
    }
}

/// A packet the balancer does not take goes to the host, unless it is addressed to a VRRP
/// virtual address that this host may not accept (RFC 5798 Accept_Mode false).
#[inline(always)]
pub fn refuse_or_pass(key: &FlowKey, stat: Stat, check_vips: bool) -> (Stat, u32) {
    if check_vips
        && key.family != 0
        && matches!(stat, Stat::PassNotService | Stat::PassNotL4 | Stat::PassIcmpNotService)
        && not_accepted(&key.dst, key.family)
    {
        return (Stat::DropNotAccepted, xdp_action::XDP_DROP);
    }
    (stat, xdp_action::XDP_PASS)
}

/// Whether `addr` is a virtual address this host may not accept. A function of its own (a
/// BPF-to-BPF call on the pass path only). The key is written as five 4-byte volatile stores:
/// built as a struct, its three padding bytes become a call to `memset`.
#[inline(never)]
fn not_accepted(addr: &[u8; 16], family: u8) -> bool {
    #[repr(C, align(4))]
    struct Slot(VipKey);
    let mut slot = core::mem::MaybeUninit::<Slot>::uninit();
    let words = slot.as_mut_ptr() as *mut u32;
    // In bounds: `VipKey` is 20 bytes, aligned to 4 here; every byte is written before the
    // lookup reads the key.
    unsafe {
        for i in 0..4 {
            words.add(i).write_volatile(core::ptr::read_unaligned(addr.as_ptr().add(4 * i) as *const u32));
        }
        words.add(4).write_volatile(u32::from_ne_bytes([family, 0, 0, 0]));
        NOT_ACCEPTED.get(&(*slot.as_ptr()).0).is_some()
    }
}
