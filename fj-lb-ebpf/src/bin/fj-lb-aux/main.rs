//! The helper programs of labs and benchmarks, in an object of their own so that loading the
//! balancer never creates their maps. The daemon never attaches them.
#![no_std]
#![no_main]

mod generator;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

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
