use fj_lb_common::{Counters, Stat};

use crate::maps::{BACKEND_COUNTERS, SERVICE_COUNTERS, STATS};

#[inline(always)]
pub fn count(stat: Stat) {
    if let Some(p) = STATS.get_ptr_mut(stat as u32) {
        // Per-CPU slot: no other writer, no atomics needed.
        unsafe { *p += 1 };
    }
}

#[inline(always)]
fn add(c: Option<*mut Counters>, bytes: u64) {
    if let Some(p) = c {
        unsafe {
            (*p).packets += 1;
            (*p).bytes += bytes;
        }
    }
}

#[inline(always)]
pub fn count_forwarded(service: u32, backend: u32, bytes: u64) {
    add(SERVICE_COUNTERS.get_ptr_mut(service), bytes);
    add(BACKEND_COUNTERS.get_ptr_mut(backend), bytes);
    // `forwarded` is the sum of the service counters, derived by the daemon: one per-CPU
    // update less on the hot path.
}
