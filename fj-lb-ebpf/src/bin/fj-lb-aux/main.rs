//! The helper programs of labs and benchmarks, in an object of their own so that loading the
//! balancer never creates their maps. The daemon never attaches them.
#![no_std]
#![no_main]

mod generator;

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::Array,
    programs::XdpContext,
};
use fj_lb_ebpf::parse::{EthHdr, ptr_at};

/// Does nothing but let frames through. A veth delivers frames sent with XDP_TX only when its
/// peer has an XDP program attached, so labs and tests put this one on the peer.
#[xdp]
pub fn fj_lb_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// The floor benchmarks compare against: swap the MACs and send the frame back (XDP_TX), the
/// least an XDP forwarder can do.
#[xdp]
pub fn fj_lb_floor(ctx: XdpContext) -> u32 {
    fj_lb_ebpf::forward::swap_macs(&ctx)
}

/// The MAC `fj_lb_floor_to` sends frames to, written by the benchmark.
#[map(name = "FLOOR_TO")]
static FLOOR_TO: Array<[u8; 6]> = Array::with_max_entries(1, 0);

/// The floor whose frames go where forwarded ones go: to `FLOOR_TO`'s MAC, from the frame's
/// own destination (the LB's), XDP_TX. Without a MAC set, the frame is passed.
#[xdp]
pub fn fj_lb_floor_to(ctx: XdpContext) -> u32 {
    let (Some(eth), Some(to)) = (ptr_at::<EthHdr>(&ctx, 0), FLOOR_TO.get(0)) else {
        return xdp_action::XDP_PASS;
    };
    // As integers, the way the balancer writes MACs (no call to memcpy).
    unsafe {
        let dst = eth as *mut u8;
        let old = (core::ptr::read_unaligned(dst as *const u32), core::ptr::read_unaligned(dst.add(4) as *const u16));
        let to = to.as_ptr();
        core::ptr::write_unaligned(dst as *mut u32, core::ptr::read_unaligned(to as *const u32));
        core::ptr::write_unaligned(dst.add(4) as *mut u16, core::ptr::read_unaligned(to.add(4) as *const u16));
        core::ptr::write_unaligned(dst.add(6) as *mut u32, old.0);
        core::ptr::write_unaligned(dst.add(10) as *mut u16, old.1);
    }
    xdp_action::XDP_TX
}

/// Packet generator for the packet-rate benchmark (see `generator.rs`).
#[xdp]
pub fn fj_lb_gen(ctx: XdpContext) -> u32 {
    generator::generate(&ctx)
}

/// The same generator with an IPv6 template.
#[xdp]
pub fn fj_lb_gen6(ctx: XdpContext) -> u32 {
    generator::generate6(&ctx)
}

fj_lb_ebpf::object_common!();
