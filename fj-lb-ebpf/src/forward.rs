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
        put(&mut (*eth).dst, dst);
        put(&mut (*eth).src, src);
    }
    true
}

/// Copies `src` into the frame at `dst`. A plain assignment between two places the compiler
/// cannot tell apart (a map value, the packet) becomes a call to `memmove`, a byte loop as a
/// BPF-to-BPF call; the copy the compiler may assume non-overlapping is inlined as loads and
/// stores.
#[inline(always)]
pub fn put<const N: usize>(dst: &mut [u8; N], src: &[u8; N]) {
    unsafe { core::ptr::copy_nonoverlapping(src.as_ptr(), dst.as_mut_ptr(), N) };
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

/// Copies the two MAC addresses (12 bytes) of one Ethernet header to another in the same
/// frame. Read and written as integers: two copies within the packet would be merged into a
/// `memmove` call (the compiler cannot tell whether they overlap).
#[inline(always)]
pub fn move_macs(from: *const EthHdr, to: *mut EthHdr) {
    unsafe {
        let a = core::ptr::read_unaligned(from as *const u64);
        let b = core::ptr::read_unaligned((from as *const u8).add(8) as *const u32);
        core::ptr::write_unaligned(to as *mut u64, a);
        core::ptr::write_unaligned((to as *mut u8).add(8) as *mut u32, b);
    }
}
