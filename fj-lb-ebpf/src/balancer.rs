use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use fj_lb_common::{ServiceKey, Stat};

use crate::{
    flow::select_backend,
    forward::rewrite_macs,
    maps::{SERVICES, SETTINGS},
    parse::parse_flow,
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
    let pass = |s: Stat| (s, xdp_action::XDP_PASS);
    let key = parse_flow(ctx).map_err(pass)?;
    let skey = ServiceKey {
        addr: key.dst,
        port: key.dport,
        proto: key.proto,
        family: key.family,
    };
    let svc = *unsafe { SERVICES.get(&skey) }.ok_or(pass(Stat::PassNotService))?;
    // Without settings the daemon has not finished loading: let the host handle the packet.
    let settings = SETTINGS.get(0).ok_or(pass(Stat::PassNotService))?;
    let (id, backend) = select_backend(&key, &svc, settings.hash_seed)
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
