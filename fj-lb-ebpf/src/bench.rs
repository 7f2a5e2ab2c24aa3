//! Programs for the benchmarks only; the daemon never attaches them.
//!
//! The generator turns BPF_PROG_TEST_RUN in live-frames mode into a packet source: the kernel
//! hands it a frame, it writes a fresh copy of the template (live-frames mode reuses frames the
//! program already rewrote), gives it a new source port so every packet is a new 5-tuple, and
//! sends it out of the interface it was "received" on with XDP_TX.
use aya_ebpf::{bindings::xdp_action, macros::map, maps::{Array, PerCpuArray}, programs::XdpContext};

use crate::parse::ptr_at;

/// Frame template: Ethernet + IPv4 + UDP + payload, 60 bytes, UDP checksum 0 (none).
pub const GEN_FRAME_LEN: usize = 60;
/// Offset of the UDP source port in the template.
const SPORT_OFFSET: usize = 34;

#[map(name = "GEN_TEMPLATE")]
pub static GEN_TEMPLATE: Array<[u8; GEN_FRAME_LEN]> = Array::with_max_entries(1, 0);

#[map(name = "GEN_SEQ")]
pub static GEN_SEQ: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
pub fn generate(ctx: &XdpContext) -> u32 {
    let Some(template) = GEN_TEMPLATE.get(0) else { return xdp_action::XDP_ABORTED };
    let Some(frame) = ptr_at::<[u8; GEN_FRAME_LEN]>(ctx, 0) else { return xdp_action::XDP_ABORTED };
    let Some(seq) = GEN_SEQ.get_ptr_mut(0) else { return xdp_action::XDP_ABORTED };
    let n = unsafe {
        *seq = (*seq).wrapping_add(1);
        *seq
    };
    unsafe {
        *frame = *template;
        let port = ((n % 64_000) as u16 + 1024).to_be_bytes();
        (*frame)[SPORT_OFFSET] = port[0];
        (*frame)[SPORT_OFFSET + 1] = port[1];
        // Vary the source address too, past 64,000 flows.
        (*frame)[29] = (n / 64_000) as u8;
    }
    xdp_action::XDP_TX
}
