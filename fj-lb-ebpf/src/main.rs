#![no_std]
#![no_main]

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

/// The balancer: attached to the LB's interface.
#[xdp]
pub fn fj_lb(ctx: XdpContext) -> u32 {
    fj_lb_ebpf::balancer::balance(&ctx)
}

/// Does nothing but let frames through. A veth delivers frames sent with XDP_TX only when its
/// peer has an XDP program attached, so labs and tests put this one on the peer.
#[xdp]
pub fn fj_lb_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// The floor benchmarks compare against: swap the MACs and send the frame back (XDP_TX), the
/// least an XDP forwarder can do. Never attached by the daemon.
#[xdp]
pub fn fj_lb_floor(ctx: XdpContext) -> u32 {
    fj_lb_ebpf::forward::swap_macs(&ctx)
}

/// Packet generator for the packet-rate benchmark (see `bench.rs`).
#[xdp]
pub fn fj_lb_gen(ctx: XdpContext) -> u32 {
    fj_lb_ebpf::bench::generate(&ctx)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
