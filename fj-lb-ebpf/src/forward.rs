//! Layer-2 direct return: the frame goes to the backend unchanged above Ethernet; the backend
//! holds the VIP on its loopback and answers the client itself.
use aya_ebpf::programs::XdpContext;

use crate::parse::{EthHdr, ptr_at};

/// Rewrites the MACs in place. Returns false when the frame is too short to hold a header,
/// which the parser has already excluded; the check stays because the verifier wants it here.
#[inline(always)]
pub fn rewrite_macs(ctx: &XdpContext, dst: &[u8; 6], src: &[u8; 6]) -> bool {
    let Some(eth) = ptr_at::<EthHdr>(ctx, 0) else {
        return false;
    };
    unsafe {
        (*eth).dst = *dst;
        (*eth).src = *src;
    }
    true
}

/// Swaps source and destination MACs and returns XDP_TX (XDP_PASS if the frame is too short).
#[inline(always)]
pub fn swap_macs(ctx: &XdpContext) -> u32 {
    let Some(eth) = ptr_at::<EthHdr>(ctx, 0) else {
        return aya_ebpf::bindings::xdp_action::XDP_PASS;
    };
    unsafe { core::mem::swap(&mut (*eth).dst, &mut (*eth).src) };
    aya_ebpf::bindings::xdp_action::XDP_TX
}
