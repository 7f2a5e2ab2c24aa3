//! The packet generator of the packet-rate benchmark; the daemon never loads it.
//!
//! It turns BPF_PROG_TEST_RUN in live-frames mode into a packet source: the kernel
//! hands it a frame, it writes a fresh copy of the template (live-frames mode reuses frames the
//! program already rewrote), gives it a new source port so every packet is a new 5-tuple (or,
//! with `GEN_FLOWS` set, cycles through that many 5-tuples a CPU: established flows), and
//! sends it out of the interface it was "received" on with XDP_TX. `fj_lb_gen6` does the same
//! with an IPv6 template.
use aya_ebpf::{bindings::xdp_action, helpers::bpf_get_smp_processor_id, macros::map, maps::{Array, PerCpuArray}, programs::XdpContext};

use fj_lb_ebpf::parse::ptr_at;

/// Frame template: Ethernet + IPv4 + UDP + payload, 60 bytes, UDP checksum 0 (none).
pub const GEN_FRAME_LEN: usize = 60;
/// Offset of the UDP source port in the template.
const SPORT_OFFSET: usize = 34;
/// Offset of the third octet of the IPv4 source address, and of the header checksum.
const SRC_OCTET3: usize = 28;
const IP_CHECK: usize = 24;

#[map(name = "GEN_TEMPLATE")]
pub static GEN_TEMPLATE: Array<[u8; GEN_FRAME_LEN]> = Array::with_max_entries(1, 0);

/// A sequence per CPU; the CPU's number goes into the source address, so two CPUs never send
/// the same 5-tuple.
#[map(name = "GEN_SEQ")]
pub static GEN_SEQ: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

/// How many 5-tuples each CPU cycles through; 0 (the default): every packet a new one.
#[map(name = "GEN_FLOWS")]
pub static GEN_FLOWS: Array<u32> = Array::with_max_entries(1, 0);

/// IPv6 frame template: Ethernet + IPv6 + UDP + the same 18-byte payload, 80 bytes. IPv6 UDP
/// must carry a checksum: the template's is right, and mended as the port and source change.
pub const GEN6_FRAME_LEN: usize = 80;
const SPORT6_OFFSET: usize = 54;
/// The 15th byte of the IPv6 source (bytes 22–37): the CPU and round, as the IPv4 third octet.
const SRC6_BYTE: usize = 22 + 14;
const UDP6_CHECK: usize = 60;

#[map(name = "GEN_TEMPLATE6")]
pub static GEN_TEMPLATE6: Array<[u8; GEN6_FRAME_LEN]> = Array::with_max_entries(1, 0);

/// RFC 1624: the checksum after one 16-bit word of the header changes from `old` to `new`.
#[inline(always)]
fn update_checksum(check: u16, old: u16, new: u16) -> u16 {
    let mut sum = (!check as u32) + (!old as u32) + new as u32;
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// This CPU's next frame number (cycling through `GEN_FLOWS` 5-tuples when set) and the CPU.
#[inline(always)]
fn next_frame() -> Option<(u32, u32)> {
    let seq = GEN_SEQ.get_ptr_mut(0)?;
    let n = unsafe {
        *seq = (*seq).wrapping_add(1);
        *seq
    };
    let flows = GEN_FLOWS.get(0).copied().unwrap_or(0);
    Some((if flows != 0 { n % flows } else { n }, unsafe { bpf_get_smp_processor_id() }))
}

#[inline(always)]
pub fn generate(ctx: &XdpContext) -> u32 {
    let Some(template) = GEN_TEMPLATE.get(0) else { return xdp_action::XDP_ABORTED };
    let Some(frame) = ptr_at::<[u8; GEN_FRAME_LEN]>(ctx, 0) else { return xdp_action::XDP_ABORTED };
    let Some((n, cpu)) = next_frame() else { return xdp_action::XDP_ABORTED };
    unsafe {
        *frame = *template;
        let port = ((n % 64_000) as u16 + 1024).to_be_bytes();
        (*frame)[SPORT_OFFSET] = port[0];
        (*frame)[SPORT_OFFSET + 1] = port[1];
        // The source address's third octet: CPU number (3 bits) and, past 64,000 flows, the
        // round (5 bits). The template's is 0, so sources never meet a real host's; the header
        // checksum is mended.
        let f = &mut *frame;
        let old = u16::from_be_bytes([f[SRC_OCTET3], f[SRC_OCTET3 + 1]]);
        f[SRC_OCTET3] = (((cpu & 7) << 5) | ((n / 64_000) & 31)) as u8;
        let new = u16::from_be_bytes([f[SRC_OCTET3], f[SRC_OCTET3 + 1]]);
        let check = update_checksum(u16::from_be_bytes([f[IP_CHECK], f[IP_CHECK + 1]]), old, new);
        f[IP_CHECK..IP_CHECK + 2].copy_from_slice(&check.to_be_bytes());
    }
    xdp_action::XDP_TX
}

#[inline(always)]
pub fn generate6(ctx: &XdpContext) -> u32 {
    let Some(template) = GEN_TEMPLATE6.get(0) else { return xdp_action::XDP_ABORTED };
    let Some(frame) = ptr_at::<[u8; GEN6_FRAME_LEN]>(ctx, 0) else { return xdp_action::XDP_ABORTED };
    let Some((n, cpu)) = next_frame() else { return xdp_action::XDP_ABORTED };
    unsafe {
        *frame = *template;
        let f = &mut *frame;
        let old_port = u16::from_be_bytes([f[SPORT6_OFFSET], f[SPORT6_OFFSET + 1]]);
        let port = (n % 64_000) as u16 + 1024;
        f[SPORT6_OFFSET..SPORT6_OFFSET + 2].copy_from_slice(&port.to_be_bytes());
        // The source is in the UDP checksum's pseudo-header: both changes mend it.
        let old = u16::from_be_bytes([f[SRC6_BYTE], f[SRC6_BYTE + 1]]);
        f[SRC6_BYTE] = (((cpu & 7) << 5) | ((n / 64_000) & 31)) as u8;
        let new = u16::from_be_bytes([f[SRC6_BYTE], f[SRC6_BYTE + 1]]);
        let check = u16::from_be_bytes([f[UDP6_CHECK], f[UDP6_CHECK + 1]]);
        let check = update_checksum(update_checksum(check, old_port, port), old, new);
        // A computed 0 is sent as all ones: 0 would mean "no checksum", invalid over IPv6.
        let check = if check == 0 { 0xffff } else { check };
        f[UDP6_CHECK..UDP6_CHECK + 2].copy_from_slice(&check.to_be_bytes());
    }
    xdp_action::XDP_TX
}
