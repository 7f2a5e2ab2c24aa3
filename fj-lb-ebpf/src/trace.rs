//! `fj-lb trace`: each packet's decision, for the packets the daemon's filter selects, written
//! into a ring buffer the daemon reads. Off (`SETTINGS_TRACE` clear, the default) the hot path
//! pays one bit test of the settings it has already read; on, a BPF-to-BPF call per packet
//! that compares the filter and, for a match, reserves and submits one record.
use aya_ebpf::{
    macros::map,
    maps::{Array, RingBuf},
};
use fj_lb_common::{
    FlowKey, TRACE_MATCH_BACKEND, TRACE_MATCH_DST, TRACE_MATCH_PORT, TRACE_MATCH_SRC, TRACE_MATCH_STAT,
    TRACE_RING_BYTES, TraceDecision, TraceFilter, TraceRecord,
};

#[map(name = "TRACE")]
pub static TRACE: RingBuf = RingBuf::with_byte_size(TRACE_RING_BYTES, 0);

/// The one filter in force (`TraceFilter`), written by the daemon before it sets the bit.
#[map(name = "TRACE_FILTER")]
pub static TRACE_FILTER: Array<TraceFilter> = Array::with_max_entries(1, 0);


/// Whether two 16-byte addresses are equal, as four word compares: `==` on arrays becomes a
/// call to `bcmp`, which the balancer must not contain.
#[inline(always)]
fn same(a: &[u8; 16], b: &[u8; 16]) -> bool {
    let (a, b) = (a.as_ptr() as *const u32, b.as_ptr() as *const u32);
    // In bounds: four words of 16 bytes each side.
    unsafe {
        let mut diff = 0;
        for i in 0..4 {
            diff |= core::ptr::read_unaligned(a.add(i)) ^ core::ptr::read_unaligned(b.add(i));
        }
        diff == 0
    }
}

/// Records `d` for the packet of `key` if it matches the filter. Not inlined: only traced
/// packets call it, and it keeps its instructions out of the balancer's main body.
/// The decision comes by pointer: a BPF function takes five arguments at most.
#[inline(never)]
pub fn emit(key: &FlowKey, d: &TraceDecision) {
    let Some(f) = TRACE_FILTER.get(0) else { return };
    let m = f.fields;
    if (m & TRACE_MATCH_STAT != 0 && f.stat != d.stat)
        || (m & TRACE_MATCH_BACKEND != 0 && f.backend != d.backend)
        || (m & TRACE_MATCH_PORT != 0 && (f.dport != key.dport || f.proto != key.proto))
        || (m & TRACE_MATCH_DST != 0 && (f.family != key.family || !same(&f.dst, &key.dst)))
        || (m & TRACE_MATCH_SRC != 0 && (f.family != key.family || !same(&f.src, &key.src)))
    {
        return;
    }
    // Full ring (the reader fell behind): the record is lost, the packet is not affected.
    let Some(mut entry) = TRACE.reserve::<TraceRecord>(0) else {
        crate::stats::count(fj_lb_common::Stat::TraceLost);
        return;
    };
    const KEY_WORDS: usize = core::mem::size_of::<FlowKey>() / 4;
    const DECISION_WORDS: usize = core::mem::size_of::<TraceDecision>() / 4;
    let out = entry.as_mut_ptr() as *mut u32;
    let (k, rest) = (key as *const FlowKey as *const u32, d as *const TraceDecision as *const u32);
    // In bounds: the entry is one `TraceRecord`, the key then the decision's words;
    // written word by word (volatile) so that no `memcpy` call is emitted, and every word
    // is written before the record is submitted.
    unsafe {
        for i in 0..KEY_WORDS {
            out.add(i).write_volatile(core::ptr::read_unaligned(k.add(i)));
        }
        for i in 0..DECISION_WORDS {
            out.add(KEY_WORDS + i).write_volatile(rest.add(i).read_volatile());
        }
    }
    entry.submit(0);
}
