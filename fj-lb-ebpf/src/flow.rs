//! Backend choice: the flow table first, so an established flow stays where it is while its
//! backend lives; Maglev for a new flow, or for one whose backend is gone.
use fj_lb_common::{
    BACKEND_ALIVE, Backend, FloodWindow, FlowKey, FlowValue, NO_BACKEND, ServiceValue, Stat, hash::flow_hash,
};

use aya_ebpf::helpers::bpf_ktime_get_ns;

use crate::{
    maps::{BACKENDS, FLOOD, FLOWS, MAGLEV},
    stats::count,
};

const ONE_SECOND_NS: u64 = 1_000_000_000;

/// Whether this CPU may insert one more flow this second. Above the cap (Katran's flood mode),
/// new flows are still forwarded by hash but not inserted, so a flood of new 5-tuples cannot
/// evict the established flows; the cap counts inserts, not SYNs, because after a VRRP or
/// ECMP move established flows arrive here as non-SYN packets and must still be pinned.
#[inline(always)]
fn may_insert(cap: u32) -> bool {
    if cap == 0 {
        return true;
    }
    within_rate(FLOOD.get_ptr_mut(0), cap)
}

/// One more event in a per-CPU one-second window that allows `cap` of them; without the
/// window's slot, allowed.
#[inline(always)]
pub fn within_rate(window: Option<*mut FloodWindow>, cap: u32) -> bool {
    let Some(w) = window else { return true };
    let now = unsafe { bpf_ktime_get_ns() };
    // Per-CPU slot: no other writer.
    unsafe {
        if now.wrapping_sub((*w).start_ns) >= ONE_SECOND_NS {
            (*w).start_ns = now;
            (*w).inserts = 0;
        }
        if (*w).inserts >= cap as u64 {
            return false;
        }
        (*w).inserts += 1;
    }
    true
}

/// The backend `id` if it still belongs to `service` and is alive. Ids are reused after a
/// backend is removed, so the owner check keeps a Maglev slot read mid-swap from landing on a
/// stranger.
#[inline(always)]
fn live_backend(id: u32, service: u32) -> Option<&'static Backend> {
    let b = BACKENDS.get(id)?;
    if b.service == service && b.flags & BACKEND_ALIVE != 0 {
        Some(b)
    } else {
        None
    }
}

/// The flow's pinned backend while it is alive and still the allocation the flow was pinned
/// under (`Backend::generation`): then the packet needs no service lookup, because the entry
/// has everything forwarding needs, and a generation that still matches means the service the
/// flow was pinned for still exists (removing it releases its backends).
#[inline(always)]
fn pinned(flow: &FlowValue) -> Option<&'static Backend> {
    let b = BACKENDS.get(flow.backend)?;
    if b.generation == flow.generation && b.flags & BACKEND_ALIVE != 0 {
        Some(b)
    } else {
        None
    }
}

/// What the flow table says about a packet's flow.
pub enum Pinned {
    /// Established on a live backend: (id, entry).
    Hit(u32, &'static Backend),
    /// In the table, but its backend died or its id was reused: pick again.
    Stale,
    Absent,
}

#[inline(always)]
pub fn established(key: &FlowKey) -> Pinned {
    match unsafe { FLOWS.get(key) } {
        Some(flow) => match pinned(flow) {
            Some(b) => Pinned::Hit(flow.backend, b),
            None => Pinned::Stale,
        },
        None => Pinned::Absent,
    }
}

/// The backend id in the flow's Maglev slot, and the slot (which `fj-lb trace` reports).
#[inline(always)]
pub fn maglev_pick(key: &FlowKey, svc: &ServiceValue, seed: u32) -> Option<(u32, u32)> {
    if svc.table_size == 0 {
        return None;
    }
    let slot = flow_hash(key, seed) % svc.table_size;
    let id = *MAGLEV.get(svc.table_base.wrapping_add(slot))?;
    if id == NO_BACKEND { None } else { Some((id, slot)) }
}

/// A backend for a flow the table had no live entry for (`repinned`: it had a stale one), by
/// Maglev, pinned in the flow table unless the flood guard says no: (id, entry, Maglev slot).
#[inline(always)]
pub fn pick_new(
    key: &FlowKey,
    svc: &ServiceValue,
    seed: u32,
    max_new_flows: u32,
    repinned: bool,
) -> Result<(u32, &'static Backend, u32), Stat> {
    let (id, slot) = maglev_pick(key, svc, seed).ok_or(Stat::DropNoBackend)?;
    let b = live_backend(id, svc.id).ok_or(Stat::DropNoBackend)?;
    let value = FlowValue {
        backend: id,
        service: svc.id,
        generation: b.generation,
    };
    if !may_insert(max_new_flows) {
        count(Stat::FlowInsertSkipped);
    } else if FLOWS.insert(key, value, 0).is_err() {
        count(Stat::FlowInsertFailed);
    }
    count(if repinned {
        Stat::FlowRepinned
    } else {
        Stat::FlowMiss
    });
    Ok((id, b, slot))
}

/// The backend a flow would go to, without touching the flow table or any counter: for
/// packets about a flow that are not of it (ICMP errors), which must never pin one.
#[inline(always)]
pub fn peek_backend(key: &FlowKey, svc: &ServiceValue, seed: u32) -> Option<&'static Backend> {
    if let Some(flow) = unsafe { FLOWS.get(key) }
        && let Some(b) = pinned(flow)
        && b.service == svc.id
    {
        return Some(b);
    }
    live_backend(maglev_pick(key, svc, seed)?.0, svc.id)
}
