//! The balancer's object: the `fj_lb` program and the maps it uses, nothing else (the helper
//! programs are in `fj-lb-aux`). The daemon loads this object.
#![no_std]
#![no_main]

mod balancer;
mod flow;
mod frag;
mod icmp;
mod maps;
mod stats;
mod trace;

use aya_ebpf::{macros::xdp, programs::XdpContext};

/// The balancer: attached to the LB's interface.
#[xdp]
pub fn fj_lb(ctx: XdpContext) -> u32 {
    balancer::balance(&ctx)
}

fj_lb_ebpf::object_common!();
