//! Fragments of balanced datagrams, tracked as Cilium does: the first fragment (offset 0)
//! carries the ports, so it is balanced like any packet and its ports are stored under
//! (source, destination, identification, protocol); a later fragment looks them up and follows
//! it to the same backend. Nothing is reassembled or buffered: a later fragment that arrives
//! before its first (reordering), or after the entry was evicted, is an orphan, counted and
//! dropped (or passed, `orphan_fragments = "pass"`), never guessed at.
use aya_ebpf::bindings::xdp_action;
use fj_lb_common::{FlowKey, FragKey, FragValue, SETTINGS_PASS_ORPHAN_FRAGMENTS, ServiceKey, Settings, Stat};
use fj_lb_ebpf::parse::L3;

use crate::{
    maps::{FRAGMENTS, VIPS},
    stats::count,
};

#[inline(always)]
fn frag_key(key: &FlowKey, l3: &L3) -> FragKey {
    FragKey { src: key.src, dst: key.dst, id: l3.frag_id, proto: l3.frag_proto, family: key.family, _pad: [0; 2] }
}

/// Stores a first fragment's ports for the fragments after it.
#[inline(always)]
pub fn track(key: &FlowKey, l3: &L3) {
    let value = FragValue { sport: key.sport, dport: key.dport };
    if FRAGMENTS.insert(frag_key(key, l3), value, 0).is_ok() {
        count(Stat::FragmentTracked);
    } else {
        count(Stat::FragmentInsertFailed);
    }
}

/// Fills in a later fragment's ports from its first fragment, or says what to do without.
#[inline(always)]
pub fn follow(key: &mut FlowKey, l3: &L3, settings: &Settings) -> Result<(), (Stat, u32)> {
    if let Some(v) = unsafe { FRAGMENTS.get(frag_key(key, l3)) } {
        key.sport = v.sport;
        key.dport = v.dport;
        count(Stat::FragmentFollowed);
        return Ok(());
    }
    let vip = ServiceKey { addr: key.dst, port: 0, proto: 0, family: key.family };
    if unsafe { VIPS.get(vip) }.is_none() {
        return Err((Stat::PassFragment, xdp_action::XDP_PASS));
    }
    if settings.flags & SETTINGS_PASS_ORPHAN_FRAGMENTS != 0 {
        Err((Stat::PassFragmentOrphan, xdp_action::XDP_PASS))
    } else {
        Err((Stat::DropFragmentOrphan, xdp_action::XDP_DROP))
    }
}
