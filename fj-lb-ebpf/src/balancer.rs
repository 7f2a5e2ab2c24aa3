use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use fj_lb_common::{FlowKey, SETTINGS_NOT_ACCEPTED, ServiceKey, Stat, VipKey};
use fj_lb_ebpf::{
    forward::rewrite_macs,
    parse::{parse_flow, ptr_at},
};

use crate::{
    flow::select_backend,
    maps::{NOT_ACCEPTED, SERVICES, SETTINGS},
    stats::{count, count_forwarded},
};

#[inline(always)]
pub fn balance(ctx: &XdpContext) -> u32 {
    match try_balance(ctx) {
        Ok(action) => action,
        Err((stat, action)) => {
            count(stat);
            action
        }
    }
}

#[inline(always)]
fn try_balance(ctx: &XdpContext) -> Result<u32, (Stat, u32)> {
    // Without settings the daemon has not finished loading: let the host handle the packet.
    let Some(settings) = SETTINGS.get(0) else {
        return Err((Stat::PassNotService, xdp_action::XDP_PASS));
    };
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
    let mut key = FlowKey::default();
    let check_vips = settings.flags & SETTINGS_NOT_ACCEPTED != 0;
    if let Err(stat) = parse_flow(ctx, &mut key) {
        return Err(refuse_or_pass(&key, stat, check_vips));
    }
    // Multicast and broadcast frames reach every LB host on the segment: balancing them would
    // forward each one as many times. (ARP and the like were passed by the parser already.)
    if group {
        return Err((Stat::PassMulticast, xdp_action::XDP_PASS));
    }
    let skey = ServiceKey {
        addr: key.dst,
        port: key.dport,
        proto: key.proto,
        family: key.family,
    };
    let Some(svc) = (unsafe { SERVICES.get(skey) }) else {
        return Err(refuse_or_pass(&key, Stat::PassNotService, check_vips));
    };
    let svc = *svc;
    let pass = |s: Stat| (s, xdp_action::XDP_PASS);
    let (id, backend) = select_backend(&key, &svc, settings.hash_seed, settings.max_new_flows)
        .map_err(|s| (s, xdp_action::XDP_DROP))?;
    if backend.mac == [0u8; 6] {
        return Err((Stat::DropBackendUnresolved, xdp_action::XDP_DROP));
    }
    if !rewrite_macs(ctx, &backend.mac, &settings.lb_mac) {
        return Err(pass(Stat::PassMalformed));
    }
    let len = (ctx.data_end() - ctx.data()) as u64;
    count_forwarded(svc.id, id, len);
    Ok(xdp_action::XDP_TX)
}

/// A packet the balancer does not take goes to the host, unless it is addressed to a VRRP
/// virtual address that this host may not accept (RFC 5798 Accept_Mode false).
#[inline(always)]
fn refuse_or_pass(key: &FlowKey, stat: Stat, check_vips: bool) -> (Stat, u32) {
    if check_vips && key.family != 0 && matches!(stat, Stat::PassNotService | Stat::PassNotL4) {
        let vip = VipKey { addr: key.dst, family: key.family, _pad: [0; 3] };
        if unsafe { NOT_ACCEPTED.get(vip) }.is_some() {
            return (Stat::DropNotAccepted, xdp_action::XDP_DROP);
        }
    }
    (stat, xdp_action::XDP_PASS)
}
