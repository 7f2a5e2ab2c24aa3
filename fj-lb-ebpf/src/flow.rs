//! Backend choice: the flow table first, so an established flow stays where it is while its
//! backend lives; Maglev for a new flow, or for one whose backend is gone.
use fj_lb_common::{
    BACKEND_ALIVE, Backend, FlowKey, FlowValue, NO_BACKEND, ServiceValue, Stat, hash::flow_hash,
};

use crate::{
    maps::{BACKENDS, FLOWS, MAGLEV},
    stats::count,
};

/// The backend `id` if it still belongs to `service` and is alive. Ids are reused after a
/// backend is removed, so the owner check keeps a stale flow from landing on a stranger.
#[inline(always)]
fn live_backend(id: u32, service: u32) -> Option<&'static Backend> {
    let b = BACKENDS.get(id)?;
    if b.service == service && b.flags & BACKEND_ALIVE != 0 {
        Some(b)
    } else {
        None
    }
}

#[inline(always)]
pub fn maglev_pick(key: &FlowKey, svc: &ServiceValue, seed: u32) -> Option<u32> {
    if svc.table_size == 0 {
        return None;
    }
    let slot = flow_hash(key, seed) % svc.table_size;
    let id = *MAGLEV.get(svc.table_base.wrapping_add(slot))?;
    if id == NO_BACKEND { None } else { Some(id) }
}

#[inline(always)]
pub fn select_backend(
    key: &FlowKey,
    svc: &ServiceValue,
    seed: u32,
) -> Result<(u32, &'static Backend), Stat> {
    let mut repinned = false;
    if let Some(flow) = unsafe { FLOWS.get(key) } {
        let (id, service) = (flow.backend, flow.service);
        if service == svc.id
            && let Some(b) = live_backend(id, svc.id)
        {
            count(Stat::FlowHit);
            return Ok((id, b));
        }
        repinned = true;
    }
    let id = maglev_pick(key, svc, seed).ok_or(Stat::DropNoBackend)?;
    let b = live_backend(id, svc.id).ok_or(Stat::DropNoBackend)?;
    let value = FlowValue {
        backend: id,
        service: svc.id,
    };
    if FLOWS.insert(key, value, 0).is_err() {
        count(Stat::FlowInsertFailed);
    }
    count(if repinned {
        Stat::FlowRepinned
    } else {
        Stat::FlowMiss
    });
    Ok((id, b))
}
