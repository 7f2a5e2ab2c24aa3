//! What the maps should hold, and the ordered writes that get them there. The balancer keeps
//! the ids it handed out (services, backends, table slots) so that a reload or a neighbour
//! change touches only what changed; `MapWriter` is the only way out to the kernel, so the
//! ordering (backends, then a table in a spare slot, then the one-value service swap) is tested
//! without one.
use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    net::IpAddr,
};

use fj_lb_common::{
    BACKEND_ALIVE, Backend, FORWARD_DSR, FORWARD_GUE, FORWARD_IPIP, SETTINGS_PASS_ORPHAN_FRAGMENTS, ServiceKey,
    ServiceValue, Settings,
};
use tracing::{error, info, warn};

use super::{
    addr::{Mac, addr_bytes, format_mac},
    config::{Config, Forward, HealthCheck, OrphanFragments, Service, WhenAllDown},
    health::{CheckOutcome, HealthState, LastCheck, Transition},
    maglev,
};

/// The one way out to the kernel's maps. The daemon's data path implements it; tests record
/// the writes, so the order (backends, then a table in a spare slot, then the one-value service
/// swap) is checked without a kernel.
pub trait MapWriter {
    fn set_backend(&mut self, id: u32, backend: &Backend) -> Result<(), MapWriteError>;
    fn write_table(&mut self, base: u32, table: &[u32]) -> Result<(), MapWriteError>;
    fn set_service(&mut self, key: &ServiceKey, value: &ServiceValue) -> Result<(), MapWriteError>;
    fn remove_service(&mut self, key: &ServiceKey) -> Result<(), MapWriteError>;
    /// Makes the set of VIPs the data path knows (for fragments, and its VIP filter) exactly
    /// `vips`, each keyed as a service with port and protocol 0. Writers that do not track VIPs
    /// ignore it.
    fn set_vips(&mut self, vips: &[ServiceKey]) -> Result<(), MapWriteError> {
        let _ = vips;
        Ok(())
    }
    /// Writes `mark`, a bound on every `Backend::generation` this daemon hands out, where the
    /// next daemon finds it: the last entry of BACKENDS, which is never a backend's id
    /// (`sizes` leaves it out of the id pool). Released entries keep their generations, but
    /// the next daemon starts with fresh maps and writes only the entries it uses, so
    /// without the mark a daemon two restarts later could hand out a generation a flow in the
    /// adopted table still names.
    fn set_generation_mark(&mut self, mark: u32) -> Result<(), MapWriteError>;
}

/// Where frames for a layer-3 backend go, as the kernel routes its address: the next hop's MAC
/// (the backend's own when it is on the segment, else a router's) and the path's MTU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextHop {
    pub mac: Mac,
    pub mtu: u16,
}

/// The path MTU assumed for a backend whose route says nothing (Ethernet's).
pub const DEFAULT_MTU: u16 = 1500;

/// The data-path settings a config asks for, on top of `base` (the MACs, the VRRP flags).
pub fn settings_for(cfg: &Config, base: Settings) -> Settings {
    let orphan = match cfg.orphan_fragments {
        OrphanFragments::Drop => 0,
        OrphanFragments::Pass => SETTINGS_PASS_ORPHAN_FRAGMENTS,
    };
    let v6 = cfg.encap_source_v6.octets();
    Settings {
        hash_seed: cfg.hash_seed,
        max_new_flows: cfg.max_new_flows_per_cpu,
        icmp_too_big_per_cpu: cfg.icmp_too_big_per_cpu,
        encap_src_v4: cfg.encap_source_v4.octets(),
        encap_src_v6: [v6[0], v6[1], v6[2], v6[3], v6[4], v6[5], v6[6], v6[7], 0, 0, 0, 0, 0, 0, 0, 0],
        flags: (base.flags & !SETTINGS_PASS_ORPHAN_FRAGMENTS) | orphan,
        ..base
    }
}

/// The MAC and path MTU frames for `address` get under `forward`: its own neighbour entry for
/// layer-2 return (never a router's: a router would send the VIP's packets back), the next hop
/// the kernel routes it through for layer 3.
fn destination(
    forward: Forward,
    address: IpAddr,
    macs: &HashMap<IpAddr, Mac>,
    hops: &HashMap<IpAddr, NextHop>,
) -> (Option<Mac>, u16) {
    match hops.get(&address) {
        Some(hop) if forward.is_l3() => (Some(hop.mac), hop.mtu),
        _ => (macs.get(&address).copied(), DEFAULT_MTU),
    }
}

/// A service's value in the SERVICES map, its table at `base`.
fn service_value(st: &ServiceState, base: u32, table_size: u32) -> ServiceValue {
    ServiceValue { id: st.id, table_base: base, table_size }
}

/// A map write the kernel refused, with the map's name.
#[derive(Debug, thiserror::Error)]
#[error("map {map}: {source}")]
pub struct MapWriteError {
    pub map: &'static str,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// Map capacities, fixed when the maps are created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapSizes {
    pub flow_table: u32,
    pub maglev_slots: u32,
    pub services: u32,
    pub backends: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Map(#[from] MapWriteError),
    #[error("no free {what} id left (the maps were sized for {capacity}); restart fj-lb to resize them")]
    Capacity { what: &'static str, capacity: u32 },
    #[error("{field} cannot change while fj-lb runs ({old} → {new}); restart fj-lb to apply it")]
    NeedsRestart { field: &'static str, old: String, new: String },
    #[error("{failure}; the maps were put back as they were")]
    RolledBack { failure: Box<ApplyError> },
    #[error("{failure}; putting the maps back failed too ({rollback}): restart fj-lb")]
    RollbackFailed { failure: Box<ApplyError>, rollback: MapWriteError },
}

/// Hands out small integer ids; a released id waits behind the others before it is reused, so
/// a packet still reading the old owner's entry does not meet the new owner.
#[derive(Debug, Clone)]
struct IdPool {
    next: u32,
    capacity: u32,
    free: VecDeque<u32>,
    /// Ids a previous daemon gave out, kept for their owners (`take`) until the first apply.
    reserved: HashSet<u32>,
    /// Reserved ids their owners took: never handed out by `alloc`.
    claimed: HashSet<u32>,
    what: &'static str,
}

impl IdPool {
    fn new(capacity: u32, what: &'static str) -> Self {
        Self { next: 0, capacity, free: VecDeque::new(), reserved: HashSet::new(), claimed: HashSet::new(), what }
    }

    fn alloc(&mut self) -> Result<u32, ApplyError> {
        while self.next < self.capacity {
            self.next += 1;
            if !self.reserved.contains(&(self.next - 1)) && !self.claimed.contains(&(self.next - 1)) {
                return Ok(self.next - 1);
            }
        }
        self.free.pop_front().ok_or(ApplyError::Capacity { what: self.what, capacity: self.capacity })
    }

    fn reserve(&mut self, ids: impl IntoIterator<Item = u32>) {
        self.reserved.extend(ids.into_iter().filter(|id| *id < self.capacity));
    }

    /// A reserved id for its owner, if it is still reserved.
    fn take(&mut self, id: u32) -> Option<u32> {
        if self.reserved.remove(&id) {
            self.claimed.insert(id);
            Some(id)
        } else {
            None
        }
    }

    /// Ends the reservation: ids nobody claimed become ordinary free ids, and `next` moves
    /// past every claimed one so that plain allocation never meets them again.
    fn unreserve(&mut self) {
        let end = self.claimed.iter().chain(&self.reserved).map(|id| id + 1).max().unwrap_or(0).max(self.next);
        // Unclaimed reservations, and ids below `end` that plain allocation skipped over.
        let mut holes: HashSet<u32> = self.reserved.drain().collect();
        holes.extend((self.next..end).filter(|id| !self.claimed.contains(id)));
        let mut holes: Vec<u32> = holes.into_iter().filter(|id| !self.free.contains(id)).collect();
        holes.sort_unstable();
        self.free.extend(holes);
        self.next = end;
        self.claimed.clear();
    }

    fn release(&mut self, id: u32) {
        self.free.push_back(id);
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BackendState {
    pub id: u32,
    pub address: IpAddr,
    /// The weight in the config.
    pub weight: u32,
    /// A weight set at run time (`fj-lb drain`, `fj-lb weight`); it survives reloads until
    /// `fj-lb enable` clears it.
    pub weight_override: Option<u32>,
    pub mac: Option<Mac>,
    /// The path MTU towards the backend (layer-3 services; `DEFAULT_MTU` otherwise).
    #[serde(skip)]
    pub mtu: u16,
    /// This allocation's `Backend::generation`: flows pinned under another one miss.
    #[serde(skip)]
    pub generation: u32,
    pub health: HealthState,
    /// The entry as last written to the BACKENDS map.
    #[serde(skip)]
    written: Option<Backend>,
}

impl BackendState {
    pub fn effective_weight(&self) -> u32 {
        self.weight_override.unwrap_or(self.weight)
    }
}

#[derive(Debug, Clone)]
pub struct ServiceState {
    pub config: Service,
    pub id: u32,
    pub key: ServiceKey,
    pub table_slot: u32,
    pub backends: Vec<BackendState>,
    /// The Maglev table as last written, in backend ids.
    pub table: Vec<u32>,
    /// True while no backend is healthy and `when_all_down = "send_to_all"` is in force.
    pub all_down: bool,
    /// What the table was built from, to skip rebuilding an unchanged table.
    built_from: Option<TableInput>,
}

impl ServiceState {
    pub fn healthy(&self, b: &BackendState) -> bool {
        self.config.health.check == HealthCheck::None || b.health.up
    }

    /// Healthy and reachable: a backend whose MAC is not known gets no traffic, so it does not
    /// count as serving (for status, and for VRRP tracking).
    pub fn serving(&self, b: &BackendState) -> bool {
        self.healthy(b) && b.mac.is_some()
    }

    /// Every backend has had the chance to pass `rise` checks, or has failed one: "none is
    /// healthy" now means down, not "not checked yet". Unchecked services are settled at once.
    pub fn settled(&self) -> bool {
        self.config.health.check == HealthCheck::None
            || self.backends.iter().all(|b| b.health.checks >= self.config.health.rise || b.health.failures > 0)
    }

    /// The table's input: the backends that could take flows by config (weight, known MAC),
    /// those of them that are healthy, and whether the all-down fallback is in force.
    fn plan(&self) -> TableInput {
        let mut base = Vec::with_capacity(self.backends.len());
        let mut healthy = Vec::with_capacity(self.backends.len());
        for b in self.backends.iter().filter(|b| b.effective_weight() > 0 && b.mac.is_some()) {
            let e = (b.address, b.effective_weight(), b.id);
            base.push(e);
            if self.healthy(b) {
                healthy.push(e);
            }
        }
        base.sort();
        healthy.sort();
        let any_healthy = self.backends.iter().any(|b| self.healthy(b));
        let all_down = !any_healthy && self.config.health.when_all_down == WhenAllDown::SendToAll;
        if all_down {
            TableInput { healthy: base.clone(), base, all_down }
        } else {
            TableInput { base, healthy, all_down }
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct TableInput {
    base: Vec<(IpAddr, u32, u32)>,
    healthy: Vec<(IpAddr, u32, u32)>,
    all_down: bool,
}

impl TableInput {
    /// The table: Maglev over every backend the config lets take flows, then each slot of an
    /// unhealthy backend handed to the owner of that slot in a Maglev table of the healthy
    /// ones. A backend going down moves only its own slots, and coming back takes back only
    /// those; both depend on nothing but the config and the health, so every LB host with the
    /// same view builds the same table.
    fn build(&self, size: u32) -> Vec<u32> {
        let entries = |v: &[(IpAddr, u32, u32)]| -> Vec<maglev::Entry> {
            v.iter()
                .map(|(addr, weight, id)| maglev::Entry { identity: addr_bytes(*addr).0.to_vec(), weight: *weight, value: *id })
                .collect()
        };
        let mut table = maglev::build(&entries(&self.base), size);
        if self.healthy.len() == self.base.len() {
            return table;
        }
        let fallback = maglev::build(&entries(&self.healthy), size);
        let healthy: std::collections::HashSet<u32> = self.healthy.iter().map(|e| e.2).collect();
        for (slot, alt) in table.iter_mut().zip(fallback) {
            if !healthy.contains(slot) {
                *slot = alt;
            }
        }
        table
    }
}

/// The VIPs of `services`, each once, keyed as a service with port and protocol 0.
fn vip_set(services: impl Iterator<Item = ServiceKey>) -> Vec<ServiceKey> {
    let mut v: Vec<ServiceKey> = services.map(|k| ServiceKey { port: 0, proto: 0, ..k }).collect();
    v.sort_by_key(|k| (k.family, k.addr));
    v.dedup();
    v
}

pub fn service_key(s: &Service) -> ServiceKey {
    let (addr, family) = addr_bytes(s.vip);
    ServiceKey { addr, port: s.port, proto: s.protocol.number(), family }
}

/// The ids a previous daemon gave its services and backends, read from its pinned maps: flow
/// entries it left name backends by id, so keeping the ids keeps the flows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PreviousIds {
    pub services: HashMap<ServiceKey, u32>,
    /// (service id, backend address) → the backend's id and generation.
    pub backends: HashMap<(u32, IpAddr), PreviousBackend>,
    /// The highest generation in the pinned entries, released ones included: new allocations
    /// start above it, so no flow the previous daemon pinned can match one of them.
    pub generation: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreviousBackend {
    pub id: u32,
    pub generation: u32,
}

/// What an apply changed, for the log line an operator reads after a reload.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ApplySummary {
    pub services_added: Vec<String>,
    pub services_removed: Vec<String>,
    pub services_changed: Vec<String>,
    pub tables_written: usize,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpError {
    #[error("no service named {0:?}")]
    NoService(String),
    #[error("service {service:?} has no backend {backend}")]
    NoBackend { service: String, backend: String },
    #[error("weight {0} is out of range (0 to 1000000)")]
    Weight(u32),
    #[error("refusing: every other backend of service {0:?} has weight 0 or is down; the service could not take a new flow")]
    LastBackend(String),
}

#[derive(Debug, Clone)]
pub struct Balancer {
    table_size: u32,
    services: BTreeMap<String, ServiceState>,
    service_ids: IdPool,
    backend_ids: IdPool,
    table_slots: IdPool,
    /// Start backends as healthy instead of waiting for `rise` passes.
    assume_healthy: bool,
    /// Ids to give back to their owners at the first apply.
    previous: PreviousIds,
    /// Settings fixed when the maps were created.
    fixed: Config,
    /// Next hops of layer-3 backends, as the daemon last resolved them.
    next_hops: HashMap<IpAddr, NextHop>,
    /// The last `Backend::generation` handed out. Never goes back, not even when an apply is
    /// rolled back: the failed apply's generations may be in the flow table.
    generation: u32,
    /// The generation mark as last written (`MapWriter::set_generation_mark`): always at
    /// least `generation`.
    mark: u32,
}

/// Map capacities for a config: ids are allocated before the ones they replace are released,
/// so a reload that replaces everything needs room for both.
pub fn sizes(cfg: &Config) -> MapSizes {
    MapSizes {
        flow_table: cfg.flow_table_size,
        maglev_slots: u32::try_from(super::config::maglev_slots(cfg.max_services, cfg.maglev_table_size))
            .expect("validation bounds the Maglev array well below u32::MAX slots"),
        services: cfg.max_services * 2,
        // One more entry than ids: the last holds the generation mark.
        backends: cfg.max_backends * 2 + 1,
    }
}

impl Balancer {
    pub fn new(cfg: &Config) -> Self {
        Self::with_options(cfg, false)
    }

    pub fn with_options(cfg: &Config, assume_healthy: bool) -> Self {
        let s = sizes(cfg);
        Self {
            table_size: cfg.maglev_table_size,
            services: BTreeMap::new(),
            service_ids: IdPool::new(s.services, "service"),
            backend_ids: IdPool::new(s.backends - 1, "backend"),
            table_slots: IdPool::new(cfg.max_services + 2, "Maglev table"),
            assume_healthy,
            previous: PreviousIds::default(),
            fixed: cfg.clone(),
            next_hops: HashMap::new(),
            generation: 0,
            mark: 0,
        }
    }

    /// A balancer that gives services and backends the ids a previous daemon had given them
    /// (same key, same address), so the flow table it left stays valid.
    pub fn with_previous(cfg: &Config, assume_healthy: bool, previous: PreviousIds) -> Self {
        let mut b = Self::with_options(cfg, assume_healthy);
        b.service_ids.reserve(previous.services.values().copied());
        b.backend_ids.reserve(previous.backends.values().map(|p| p.id));
        b.generation = previous.generation;
        b.previous = previous;
        b
    }

    pub fn services(&self) -> impl Iterator<Item = &ServiceState> {
        self.services.values()
    }

    pub fn service(&self, name: &str) -> Option<&ServiceState> {
        self.services.get(name)
    }

    /// VRRP tracking's question: has any of these services lost every healthy backend? Only
    /// once every backend had the chance to pass `rise` checks: before that "down" means "not
    /// checked yet", and a host that just started must not give up mastership for it.
    pub fn any_service_down(&self, names: &[String]) -> bool {
        names.iter().any(|name| self.service(name).is_some_and(|st| st.settled() && !st.backends.iter().any(|b| st.serving(b))))
    }

    /// Whether every one of these services has a health verdict for each backend: before
    /// that, a host should not preempt (it does not know yet whether it can serve).
    pub fn services_settled(&self, names: &[String]) -> bool {
        names.iter().all(|name| self.service(name).is_none_or(ServiceState::settled))
    }

    /// Takes in where layer-3 backends' frames go (written at the next apply or `update_macs`).
    /// A layer-3 backend without an entry falls back to its own neighbour entry, as if on
    /// the segment.
    pub fn set_next_hops(&mut self, hops: HashMap<IpAddr, NextHop>) {
        self.next_hops = hops;
    }

    /// Backend addresses of layer-3 services: the daemon resolves their next hops.
    pub fn l3_backend_addresses(&self) -> Vec<IpAddr> {
        let mut v: Vec<IpAddr> = self
            .services
            .values()
            .filter(|s| s.config.forward.is_l3())
            .flat_map(|s| s.backends.iter().map(|b| b.address))
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// The VIPs of the services, as the VIPS map keys them.
    fn vip_keys(&self) -> Vec<ServiceKey> {
        vip_set(self.services.values().map(|st| st.key))
    }

    /// Every backend address the data path needs a MAC for.
    pub fn backend_addresses(&self) -> Vec<IpAddr> {
        let mut v: Vec<IpAddr> =
            self.services.values().flat_map(|s| s.backends.iter().map(|b| b.address)).collect();
        v.sort();
        v.dedup();
        v
    }

    /// Refuses a config that changes what the maps were sized or built for. Fields compare
    /// by value; their text only goes into the message.
    fn check_fixed(&self, cfg: &Config) -> Result<(), ApplyError> {
        fn differs<T: PartialEq + std::fmt::Debug>(field: &'static str, old: &T, new: &T) -> Result<(), ApplyError> {
            if old == new {
                return Ok(());
            }
            Err(ApplyError::NeedsRestart { field, old: format!("{old:?}"), new: format!("{new:?}") })
        }
        let f = &self.fixed;
        differs("interface", &f.interface, &cfg.interface)?;
        differs("xdp_mode", &f.xdp_mode, &cfg.xdp_mode)?;
        differs("bpffs", &f.bpffs, &cfg.bpffs)?;
        differs("flow_table_size", &f.flow_table_size, &cfg.flow_table_size)?;
        differs("maglev_table_size", &f.maglev_table_size, &cfg.maglev_table_size)?;
        differs("max_services", &f.max_services, &cfg.max_services)?;
        differs("max_backends", &f.max_backends, &cfg.max_backends)?;
        differs("hash_seed", &f.hash_seed, &cfg.hash_seed)?;
        differs("control_socket", &f.control_socket, &cfg.control_socket)?;
        differs("metrics.listen", &f.metrics_listen, &cfg.metrics_listen)?;
        differs("[vrrp]", &f.vrrp, &cfg.vrrp)?;
        differs("[[vrrp_sync_group]]", &f.vrrp_sync_groups, &cfg.vrrp_sync_groups)
    }

    /// Brings the maps from the current state to `cfg`, all or nothing: if a write fails
    /// part-way, the state and the maps are put back as they were (`ApplyError::RolledBack`).
    /// Services whose (VIP, port, protocol) and backends did not change are not written at all.
    pub fn apply(
        &mut self,
        cfg: &Config,
        macs: &HashMap<IpAddr, Mac>,
        maps: &mut impl MapWriter,
    ) -> Result<ApplySummary, ApplyError> {
        self.check_fixed(cfg)?;
        let before = self.clone();
        match self.apply_writes(cfg, macs, maps) {
            Ok(s) => {
                // The previous daemon's ids went to whoever is still configured; the rest are
                // ordinary free ids now.
                self.service_ids.unreserve();
                self.backend_ids.unreserve();
                self.previous = PreviousIds::default();
                Ok(s)
            }
            Err(failure) => {
                let failed = std::mem::replace(self, before);
                (self.generation, self.mark) = (failed.generation, failed.mark);
                let failure = Box::new(failure);
                match self.restore(&failed, maps) {
                    Ok(()) => Err(ApplyError::RolledBack { failure }),
                    Err(rollback) => Err(ApplyError::RollbackFailed { failure, rollback }),
                }
            }
        }
    }

    /// Puts the maps back to this (earlier) state after `failed` wrote part of a change. Each
    /// table goes into a slot no live service reads and is then swapped in, as in `sync`, so
    /// no packet meets a half-written table.
    fn restore(&mut self, failed: &Balancer, maps: &mut impl MapWriter) -> Result<(), MapWriteError> {
        let size = self.table_size;
        // The VIP filter must hold every VIP of the services about to be written back (the
        // failed change may have taken some out); the final set comes at the end.
        let both = self.services.values().chain(failed.services.values()).map(|st| st.key);
        maps.set_vips(&vip_set(both))?;
        let ours: std::collections::HashSet<ServiceKey> = self.services.values().map(|st| st.key).collect();
        // Services only the failed change had: gone first, so at most ours stay live.
        let mut live: HashMap<ServiceKey, u32> = HashMap::new();
        for st in failed.services.values() {
            if ours.contains(&st.key) {
                live.insert(st.key, st.table_slot);
            } else {
                maps.remove_service(&st.key)?;
            }
        }
        for st in self.services.values_mut() {
            for b in st.backends.iter_mut() {
                let entry = b.written.unwrap_or(released(b.generation));
                maps.set_backend(b.id, &entry)?;
            }
        }
        let capacity = self.table_slots.capacity;
        for st in self.services.values_mut() {
            let busy: std::collections::HashSet<u32> = live.values().copied().collect();
            let slot = (0..capacity).find(|s| !busy.contains(s)).expect("at most max_services tables are live, of max_services + 2 slots");
            maps.write_table(slot * size, &st.table)?;
            maps.set_service(&st.key, &service_value(st, slot * size, size))?;
            live.insert(st.key, slot);
            st.table_slot = slot;
        }
        let kept: std::collections::HashSet<u32> = self.services.values().flat_map(|st| st.backends.iter().map(|b| b.id)).collect();
        for b in failed.services.values().flat_map(|st| st.backends.iter()) {
            if !kept.contains(&b.id) {
                maps.set_backend(b.id, &released(b.generation))?;
            }
        }
        // The slots in use moved: every other slot is free again.
        let used: std::collections::HashSet<u32> = self.services.values().map(|st| st.table_slot).collect();
        self.table_slots.next = capacity;
        self.table_slots.free = (0..capacity).filter(|s| !used.contains(s)).collect();
        maps.set_vips(&self.vip_keys())
    }

    fn apply_writes(
        &mut self,
        cfg: &Config,
        macs: &HashMap<IpAddr, Mac>,
        maps: &mut impl MapWriter,
    ) -> Result<ApplySummary, ApplyError> {
        let mut summary = ApplySummary::default();
        // Before any generation above the mark is used: at most one per configured backend.
        let bound = self.generation + cfg.services.iter().map(|s| s.backends.len() as u32).sum::<u32>();
        if bound > self.mark {
            maps.set_generation_mark(bound)?;
            self.mark = bound;
        }
        // The VIPs of old and new services until the end: a new service's packets must get
        // past the data path's VIP filter as soon as its entry is written.
        let old = self.services.values().map(|st| st.key);
        maps.set_vips(&vip_set(old.chain(cfg.services.iter().map(service_key))))?;
        // Removed services, and services whose key changed (re-added below under the new key).
        let stale: Vec<String> = self
            .services
            .iter()
            .filter(|(name, st)| {
                cfg.services.iter().find(|s| &s.name == *name).is_none_or(|s| service_key(s) != st.key)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            let st = self.services.remove(&name).expect("listed above");
            maps.remove_service(&st.key)?;
            for b in &st.backends {
                maps.set_backend(b.id, &released(b.generation))?;
                self.backend_ids.release(b.id);
            }
            self.table_slots.release(st.table_slot);
            self.service_ids.release(st.id);
            if !cfg.services.iter().any(|s| s.name == name) {
                summary.services_removed.push(name);
            }
        }
        for svc in &cfg.services {
            let existed = self.services.contains_key(&svc.name);
            if !existed {
                let key = service_key(svc);
                let id = match self.previous.services.get(&key).and_then(|id| self.service_ids.take(*id)) {
                    Some(id) => id,
                    None => self.service_ids.alloc()?,
                };
                let table_slot = self.table_slots.alloc()?;
                self.services.insert(
                    svc.name.clone(),
                    ServiceState {
                        config: svc.clone(),
                        id,
                        key: service_key(svc),
                        table_slot,
                        backends: Vec::new(),
                        table: Vec::new(),
                        all_down: false,
                        built_from: None,
                    },
                );
                summary.services_added.push(svc.name.clone());
            }
            let st = self.services.get_mut(&svc.name).expect("inserted above");
            if existed && st.config != *svc {
                summary.services_changed.push(svc.name.clone());
            }
            let checks_changed = st.config.health.check != svc.health.check || st.config.health.port != svc.health.port;
            let mode_changed = existed && (st.config.forward != svc.forward || st.config.gue_port != svc.gue_port);
            // The mode is in each backend's entry, written with the MAC that goes with it (a
            // router's MAC under layer-2 return would send VIP packets to the router).
            st.config = svc.clone();
            // Backends: keep ids, health and overrides of addresses that stay.
            let mut next = Vec::with_capacity(svc.backends.len());
            for b in &svc.backends {
                let initial = HealthState::new(self.assume_healthy || svc.health.check == HealthCheck::None);
                let (mac, mtu) = destination(svc.forward, b.address, macs, &self.next_hops);
                next.push(match st.backends.iter().find(|old| old.address == b.address) {
                    Some(old) => BackendState {
                        weight: b.weight,
                        // A MAC learned under another mode is not kept: it may be a router's.
                        mac: mac.or(if mode_changed { None } else { old.mac }),
                        mtu,
                        health: if checks_changed { initial } else { old.health.clone() },
                        ..old.clone()
                    },
                    None => {
                        let previous = self.previous.backends.get(&(st.id, b.address)).copied();
                        let (id, generation) = match previous.and_then(|p| self.backend_ids.take(p.id).map(|id| (id, p.generation))) {
                            Some(kept) => kept,
                            None => {
                                self.generation += 1;
                                (self.backend_ids.alloc()?, self.generation)
                            }
                        };
                        BackendState {
                        id,
                        generation,
                        address: b.address,
                        weight: b.weight,
                        weight_override: None,
                        mac,
                        mtu,
                        health: initial,
                        written: None,
                    }
                    }
                });
            }
            let removed: Vec<(u32, u32)> = st
                .backends
                .iter()
                .filter(|old| !next.iter().any(|n| n.address == old.address))
                .map(|old| (old.id, old.generation))
                .collect();
            st.backends = next;
            if Self::sync(st, self.table_size, &mut self.table_slots, maps, !existed)? {
                summary.tables_written += 1;
            }
            // Only now, with no table pointing at them, may removed backends lose their entry:
            // their established flows are re-pinned by the data path to the new table.
            for (id, generation) in removed {
                maps.set_backend(id, &released(generation))?;
                self.backend_ids.release(id);
            }
        }
        maps.set_vips(&self.vip_keys())?;
        Ok(summary)
    }

    /// Writes what changed for one service: backend entries first, then (if its input changed)
    /// a new table into a spare slot, then the one-value swap of the service to that table.
    fn sync(
        st: &mut ServiceState,
        table_size: u32,
        slots: &mut IdPool,
        maps: &mut impl MapWriter,
        force: bool,
    ) -> Result<bool, ApplyError> {
        let input = st.plan();
        let all_down = input.all_down;
        if all_down != st.all_down {
            // Before every backend had the chance to pass `rise` checks, "all down" only means
            // "not known yet": say so calmly.
            let rise = st.config.health.rise;
            let settling = st.backends.iter().all(|b| b.health.checks < rise && b.health.failures == 0);
            if all_down && settling {
                info!(service = %st.config.name, "health not known yet: sending to all configured backends until checks pass");
            } else if all_down {
                error!(
                    service = %st.config.name,
                    backends = input.base.len(),
                    "EVERY BACKEND IS DOWN: sending new flows to all configured backends anyway (when_all_down = \"send_to_all\")"
                );
            } else {
                info!(service = %st.config.name, "a backend is healthy again; the all-down fallback is over");
            }
            st.all_down = all_down;
        }
        let was_serving = st.built_from.as_ref().is_none_or(|b| !b.healthy.is_empty());
        if input.healthy.is_empty() && !st.backends.is_empty() && was_serving {
            error!(service = %st.config.name, "no backend can take new flows: they are dropped until one is healthy");
        }
        for i in 0..st.backends.len() {
            let alive = all_down || st.healthy(&st.backends[i]);
            let b = &mut st.backends[i];
            let entry = backend_entry(b, &st.config, st.id, alive);
            if b.written != Some(entry) {
                maps.set_backend(b.id, &entry)?;
                b.written = Some(entry);
            }
        }
        if !force && st.built_from.as_ref() == Some(&input) {
            return Ok(false);
        }
        let table = input.build(table_size);
        let slot = if force { st.table_slot } else { slots.alloc()? };
        maps.write_table(slot * table_size, &table)?;
        maps.set_service(&st.key, &service_value(st, slot * table_size, table_size))?;
        if !force {
            slots.release(st.table_slot);
        }
        st.table_slot = slot;
        st.table = table;
        st.built_from = Some(input);
        Ok(true)
    }

    /// Takes in the MACs the neighbour table knows now. Entries whose MAC changed are rewritten;
    /// tables are rebuilt only where a backend became eligible or stopped being so.
    pub fn update_macs(
        &mut self,
        macs: &HashMap<IpAddr, Mac>,
        maps: &mut impl MapWriter,
    ) -> Result<usize, ApplyError> {
        let mut changed = 0;
        for st in self.services.values_mut() {
            for b in st.backends.iter_mut() {
                let (mac, mtu) = destination(st.config.forward, b.address, macs, &self.next_hops);
                // A vanished neighbour entry keeps the last MAC: the backend most likely still
                // answers there, and dropping its flows would lose traffic we could keep.
                let Some(mac) = mac else { continue };
                if b.mac != Some(mac) {
                    let via = if st.config.forward.is_l3() { "next hop" } else { "on the segment" };
                    info!(backend = %b.address, mac = %format_mac(&mac), via, service = %st.config.name, "backend MAC learned");
                    b.mac = Some(mac);
                    changed += 1;
                }
                if b.mtu != mtu {
                    info!(backend = %b.address, mtu, service = %st.config.name, "path MTU to the backend");
                    b.mtu = mtu;
                    changed += 1;
                }
            }
            Self::sync(st, self.table_size, &mut self.table_slots, maps, false)?;
        }
        Ok(changed)
    }

    /// Records a health-check result; on a transition, moves the backend in or out of the
    /// table (Maglev moves only its slots) and marks it dead or alive for pinned flows.
    pub fn health_result(
        &mut self,
        service: &str,
        backend: IpAddr,
        result: &CheckOutcome,
        maps: &mut impl MapWriter,
    ) -> Result<Option<Transition>, ApplyError> {
        let Some(st) = self.services.get_mut(service) else { return Ok(None) };
        let (rise, fall) = (st.config.health.rise, st.config.health.fall);
        let Some(b) = st.backends.iter_mut().find(|b| b.address == backend) else { return Ok(None) };
        let t = b.health.record(result, rise, fall);
        if let Some(t) = t {
            match t {
                Transition::Down => warn!(service, %backend, reason = %b.health.reason, "backend DOWN: its flows move to the others"),
                Transition::Up => info!(service, %backend, "backend UP: it takes new flows again"),
            }
            Self::sync(st, self.table_size, &mut self.table_slots, maps, false)?;
        }
        Ok(t)
    }

    /// Notes when a backend's check finished and how long it took, whatever its result: what
    /// status shows as the last check.
    pub fn note_check(&mut self, service: &str, backend: IpAddr, last: LastCheck) {
        let found = self.services.get_mut(service).and_then(|st| st.backends.iter_mut().find(|b| b.address == backend));
        if let Some(b) = found {
            b.health.last_check = Some(last);
        }
    }

    /// Sets (Some) or clears (None) a run-time weight. Weight 0 drains: no new flows, the
    /// established ones stay.
    pub fn set_weight(
        &mut self,
        service: &str,
        backend: &str,
        weight: Option<u32>,
        maps: &mut impl MapWriter,
    ) -> Result<(), OpErrorOr> {
        if let Some(w) = weight
            && w > 1_000_000 {
                return Err(OpError::Weight(w).into());
            }
        let st = self.services.get_mut(service).ok_or_else(|| OpError::NoService(service.into()))?;
        let ip: Option<IpAddr> = backend.parse().ok();
        let idx = st
            .backends
            .iter()
            .position(|b| Some(b.address) == ip)
            .ok_or_else(|| OpError::NoBackend { service: service.into(), backend: backend.into() })?;
        let new_effective = weight.unwrap_or(st.backends[idx].weight);
        if new_effective == 0
            && st.backends.iter().enumerate().all(|(i, b)| i == idx || b.effective_weight() == 0 || !st.healthy(b))
        {
            return Err(OpError::LastBackend(service.into()).into());
        }
        st.backends[idx].weight_override = weight;
        info!(service, backend, weight = new_effective, "weight set at run time");
        Self::sync(st, self.table_size, &mut self.table_slots, maps, false)?;
        Ok(())
    }
}

/// An operator's request failed either because it was wrong or because the maps refused.
#[derive(Debug, thiserror::Error)]
pub enum OpErrorOr {
    #[error(transparent)]
    Op(#[from] OpError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
}

fn backend_entry(b: &BackendState, svc: &Service, service: u32, alive: bool) -> Backend {
    let (addr, family) = addr_bytes(b.address);
    let forward = match svc.forward {
        Forward::Dsr => FORWARD_DSR,
        Forward::Ipip => FORWARD_IPIP,
        Forward::Gue => FORWARD_GUE,
    };
    Backend {
        addr,
        mac: b.mac.unwrap_or_default(),
        family,
        flags: if alive { BACKEND_ALIVE } else { 0 },
        service,
        generation: b.generation,
        mtu: b.mtu,
        forward,
        gue_port: if svc.forward == Forward::Gue { svc.gue_port } else { 0 },
        _pad: [0; 2],
    }
}

/// The entry of a released backend id: never alive, but it keeps the generation it last had,
/// so that a daemon reading the pins after this one still sees every generation handed out.
pub fn released(generation: u32) -> Backend {
    Backend { generation, ..Backend::default() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::{BackendConfig, Forward, Protocol, XdpMode};
    use fj_lb_common::NO_BACKEND;

    #[derive(Default, Clone)]
    struct FakeMaps {
        /// Refuse one write, after this many more succeed.
        fail_after: Option<usize>,
        log: Vec<String>,
        backends: HashMap<u32, Backend>,
        maglev: HashMap<u32, u32>,
        services: HashMap<ServiceKey, ServiceValue>,
        /// The last VIP set written (counted as a write, so that it can fail; not logged).
        vips: Vec<ServiceKey>,
        /// Every generation a backend entry was ever written with.
        generations: HashSet<u32>,
        /// The generation mark as last written.
        mark: u32,
    }

    impl FakeMaps {
        fn write(&mut self) -> Result<(), MapWriteError> {
            match self.fail_after.as_mut() {
                Some(0) => {
                    // One refusal, as a transient kernel failure: the rollback's writes go through.
                    self.fail_after = None;
                    Err(MapWriteError { map: "TEST", source: "refused by the test".into() })
                }
                Some(n) => {
                    *n -= 1;
                    Ok(())
                }
                None => Ok(()),
            }
        }

        /// What packets see: each service key's id and table, resolved to backend entries.
        fn seen(&self) -> BTreeMap<(u16, u8), (u32, Vec<Backend>)> {
            self.services
                .iter()
                .map(|(k, v)| {
                    let table = (v.table_base..v.table_base + v.table_size)
                        .map(|i| self.maglev[&i])
                        .map(|id| self.backends.get(&id).copied().unwrap_or_default())
                        .collect();
                    ((k.port, k.proto), (v.id, table))
                })
                .collect()
        }
    }

    impl MapWriter for FakeMaps {
        fn set_backend(&mut self, id: u32, b: &Backend) -> Result<(), MapWriteError> {
            self.write()?;
            self.log.push(format!("backend {id} alive={}", b.flags & BACKEND_ALIVE));
            self.backends.insert(id, *b);
            self.generations.insert(b.generation);
            Ok(())
        }
        fn write_table(&mut self, base: u32, table: &[u32]) -> Result<(), MapWriteError> {
            self.write()?;
            self.log.push(format!("table {base}"));
            for (i, v) in table.iter().enumerate() {
                self.maglev.insert(base + i as u32, *v);
            }
            Ok(())
        }
        fn set_service(&mut self, k: &ServiceKey, v: &ServiceValue) -> Result<(), MapWriteError> {
            self.write()?;
            self.log.push(format!("service {} base {}", k.port, v.table_base));
            assert!(
                self.vips.iter().any(|x| x.addr == k.addr && x.family == k.family),
                "service {k:?} written while its VIP is not in the VIP set {:?}: its packets would be passed",
                self.vips
            );
            self.services.insert(*k, *v);
            Ok(())
        }
        fn remove_service(&mut self, k: &ServiceKey) -> Result<(), MapWriteError> {
            self.write()?;
            self.log.push(format!("remove {}", k.port));
            self.services.remove(k);
            Ok(())
        }
        fn set_vips(&mut self, vips: &[ServiceKey]) -> Result<(), MapWriteError> {
            self.write()?;
            self.vips = vips.to_vec();
            Ok(())
        }
        /// Counted as a write (it can fail), not logged: the log is about what packets see.
        fn set_generation_mark(&mut self, mark: u32) -> Result<(), MapWriteError> {
            self.write()?;
            self.mark = mark;
            Ok(())
        }
    }

    impl FakeMaps {
        /// The backend ids a service's current table points at.
        fn table_ids(&self, port: u16) -> std::collections::BTreeSet<u32> {
            let (_, v) = self.services.iter().find(|(k, _)| k.port == port).expect("service present");
            (v.table_base..v.table_base + v.table_size).map(|i| self.maglev[&i]).collect()
        }
    }

    fn svc(name: &str, port: u16, backends: &[(&str, u32)]) -> Service {
        Service {
            name: name.into(),
            vip: "10.0.0.100".parse().unwrap(),
            port,
            protocol: Protocol::Tcp,
            forward: Forward::Dsr,
            gue_port: fj_lb_common::DEFAULT_GUE_PORT,
            health: Default::default(),
            backends: backends
                .iter()
                .map(|(a, w)| BackendConfig { address: a.parse().unwrap(), weight: *w })
                .collect(),
        }
    }

    fn cfg(services: Vec<Service>) -> Config {
        Config {
            interface: "eth0".into(),
            xdp_mode: XdpMode::Auto,
            bpffs: "/sys/fs/bpf/x".into(),
            flow_table_size: 1024,
            max_new_flows_per_cpu: 0,
            encap_source_v4: crate::model::config::DEFAULT_ENCAP_SOURCE_V4,
            encap_source_v6: crate::model::config::DEFAULT_ENCAP_SOURCE_V6,
            orphan_fragments: OrphanFragments::Drop,
            icmp_too_big_per_cpu: 0,
            maglev_table_size: 13,
            max_services: 4,
            max_backends: 8,
            hash_seed: 1,
            control_socket: "/run/x.sock".into(),
            metrics_listen: None,
            announce: None,
            vrrp: Vec::new(),
            vrrp_sync_groups: Vec::new(),
            services,
        }
    }

    fn macs(addrs: &[&str]) -> HashMap<IpAddr, Mac> {
        addrs.iter().enumerate().map(|(i, a)| (a.parse().unwrap(), [2, 0, 0, 0, 0, i as u8 + 1])).collect()
    }

    const ROUTER: Mac = [2, 0x77, 0, 0, 0, 1];

    fn via_router(addrs: &[&str], mtu: u16) -> HashMap<IpAddr, NextHop> {
        addrs.iter().map(|a| (a.parse().unwrap(), NextHop { mac: ROUTER, mtu })).collect()
    }

    #[test]
    fn layer_3_backends_take_their_next_hops_mac_and_mtu_and_dsr_ones_their_own() {
        let mut l3 = svc("l3", 80, &[("10.1.0.11", 1)]);
        l3.forward = Forward::Gue;
        l3.gue_port = 7000;
        let dsr = svc("dsr", 81, &[("10.1.0.11", 1)]);
        let c = cfg(vec![l3, dsr]);
        let mut b = Balancer::new(&c);
        b.set_next_hops(via_router(&["10.1.0.11"], 1400));
        let mut m = FakeMaps::default();
        b.apply(&c, &macs(&["10.1.0.11"]), &mut m).unwrap();
        let entry = |name: &str| m.backends[&b.service(name).unwrap().backends[0].id];
        assert_eq!((entry("l3").mac, entry("l3").mtu), (ROUTER, 1400), "the router's MAC, the route's MTU");
        assert_eq!((entry("dsr").mac, entry("dsr").mtu), ([2, 0, 0, 0, 0, 1], DEFAULT_MTU), "its own MAC, never a router's");
        assert_eq!((entry("l3").forward, entry("l3").gue_port), (FORWARD_GUE, 7000), "the mode is in each backend's entry");
        assert_eq!((entry("dsr").forward, entry("dsr").gue_port), (FORWARD_DSR, 0));
        assert_eq!(b.l3_backend_addresses(), vec!["10.1.0.11".parse::<IpAddr>().unwrap()]);
        assert_eq!(m.vips.len(), 1, "two services, one VIP: {:?}", m.vips);
        assert_eq!((m.vips[0].port, m.vips[0].proto, m.vips[0].addr[..4].to_vec()), (0, 0, vec![10, 0, 0, 100]));
    }

    #[test]
    fn switching_to_layer_3_and_back_writes_the_mode_and_its_mac_in_one_entry() {
        let dsr = cfg(vec![svc("web", 80, &[("10.1.0.11", 1)])]);
        let mut ipip = dsr.clone();
        ipip.services[0].forward = Forward::Ipip;
        let mut b = Balancer::new(&dsr);
        b.set_next_hops(via_router(&["10.1.0.11"], 1500));
        let mut m = FakeMaps::default();
        let mk = macs(&["10.1.0.11"]);
        b.apply(&dsr, &mk, &mut m).unwrap();
        m.log.clear();
        b.apply(&ipip, &mk, &mut m).unwrap();
        // One write: no packet can see the router's MAC under layer-2 return, or its own MAC
        // under layer 3 (a router's MAC under DSR would send VIP packets to the router).
        assert_eq!(m.log, vec!["backend 0 alive=1"], "mode and the router's MAC together");
        assert_eq!((m.backends[&0].mac, m.backends[&0].forward), (ROUTER, FORWARD_IPIP));
        m.log.clear();
        b.apply(&dsr, &mk, &mut m).unwrap();
        assert_eq!(m.log, vec!["backend 0 alive=1"], "own MAC and the mode together");
        assert_eq!((m.backends[&0].mac, m.backends[&0].forward), ([2, 0, 0, 0, 0, 1], FORWARD_DSR));
    }

    #[test]
    fn a_mac_learned_under_another_mode_is_not_kept() {
        // Off the segment, a backend has no MAC of its own: after leaving layer 3 it must not
        // keep the router's.
        let mut ipip = cfg(vec![svc("web", 80, &[("10.1.0.11", 1), ("10.0.0.12", 1)])]);
        ipip.services[0].forward = Forward::Ipip;
        let mut dsr = ipip.clone();
        dsr.services[0].forward = Forward::Dsr;
        let mut b = Balancer::new(&ipip);
        b.set_next_hops(via_router(&["10.1.0.11", "10.0.0.12"], 1500));
        let mut m = FakeMaps::default();
        b.apply(&ipip, &macs(&["10.0.0.12"]), &mut m).unwrap();
        b.apply(&dsr, &macs(&["10.0.0.12"]), &mut m).unwrap();
        let st = b.service("web").unwrap();
        assert_eq!(st.backends[0].mac, None, "10.1.0.11 is behind the router: no MAC for DSR");
        assert_eq!(m.backends[&st.backends[0].id].mac, [0; 6]);
    }

    #[test]
    fn settings_for_takes_the_configs_data_path_settings_and_keeps_the_rest() {
        let mut c = cfg(vec![]);
        c.orphan_fragments = OrphanFragments::Pass;
        c.icmp_too_big_per_cpu = 7;
        c.max_new_flows_per_cpu = 9;
        let base = Settings { lb_mac: [2, 0, 0, 0, 0, 9], flags: fj_lb_common::SETTINGS_NOT_ACCEPTED, ..Default::default() };
        let s = settings_for(&c, base);
        assert_eq!((s.lb_mac, s.hash_seed, s.max_new_flows, s.icmp_too_big_per_cpu), (base.lb_mac, 1, 9, 7));
        assert_eq!(s.flags, fj_lb_common::SETTINGS_NOT_ACCEPTED | SETTINGS_PASS_ORPHAN_FRAGMENTS);
        assert_eq!((s.encap_src_v4, s.encap_src_v6[..2].to_vec(), s.encap_src_v6[8..].to_vec()), ([172, 16, 0, 0], vec![1, 0], vec![0; 8]));
        c.orphan_fragments = OrphanFragments::Drop;
        assert_eq!(settings_for(&c, s).flags, fj_lb_common::SETTINGS_NOT_ACCEPTED, "the orphan bit goes, the VRRP one stays");
    }

    #[test]
    fn first_apply_writes_backends_before_table_before_service() {
        let c = cfg(vec![svc("web", 80, &[("10.0.0.11", 1), ("10.0.0.12", 1)])]);
        let mut b = Balancer::new(&c);
        let mut m = FakeMaps::default();
        let s = b.apply(&c, &macs(&["10.0.0.11", "10.0.0.12"]), &mut m).unwrap();
        assert_eq!(s.services_added, vec!["web"]);
        assert_eq!(m.log, vec!["backend 0 alive=1", "backend 1 alive=1", "table 0", "service 80 base 0"]);
        assert_eq!(m.table_ids(80), [0, 1].into());
    }

    #[test]
    fn unchanged_reload_writes_nothing() {
        let c = cfg(vec![svc("web", 80, &[("10.0.0.11", 1)])]);
        let mut b = Balancer::new(&c);
        let mut m = FakeMaps::default();
        let mk = macs(&["10.0.0.11"]);
        b.apply(&c, &mk, &mut m).unwrap();
        m.log.clear();
        let s = b.apply(&c, &mk, &mut m).unwrap();
        assert_eq!(s.tables_written, 0);
        assert!(m.log.iter().all(|l| l.starts_with("backend")), "{:?}", m.log);
    }

    #[test]
    fn backend_without_mac_gets_no_slot_until_learned() {
        let c = cfg(vec![svc("web", 80, &[("10.0.0.11", 1), ("10.0.0.12", 1)])]);
        let mut b = Balancer::new(&c);
        let mut m = FakeMaps::default();
        b.apply(&c, &macs(&["10.0.0.11"]), &mut m).unwrap();
        assert_eq!(m.table_ids(80), [0].into());
        let changed = b.update_macs(&macs(&["10.0.0.11", "10.0.0.12"]), &mut m).unwrap();
        assert_eq!(changed, 1, "only the newly learned MAC is written");
        assert_eq!(m.table_ids(80), [0, 1].into());
    }

    #[test]
    fn new_table_goes_to_another_slot_then_the_service_swaps() {
        let one = cfg(vec![svc("web", 80, &[("10.0.0.11", 1)])]);
        let two = cfg(vec![svc("web", 80, &[("10.0.0.11", 1), ("10.0.0.13", 1)])]);
        let mut b = Balancer::new(&one);
        let mut m = FakeMaps::default();
        let mk = macs(&["10.0.0.11", "10.0.0.13"]);
        b.apply(&one, &mk, &mut m).unwrap();
        m.log.clear();
        b.apply(&two, &mk, &mut m).unwrap();
        let table_pos = m.log.iter().position(|l| l.starts_with("table")).unwrap();
        let swap_pos = m.log.iter().position(|l| l.starts_with("service")).unwrap();
        assert!(table_pos < swap_pos);
        assert_ne!(m.log[table_pos], "table 0", "the table in force is never overwritten in place");
        assert_eq!(m.table_ids(80), [0, 1].into());
    }

    #[test]
    fn removed_backend_is_cleared_only_after_the_swap() {
        let two = cfg(vec![svc("web", 80, &[("10.0.0.11", 1), ("10.0.0.12", 1)])]);
        let one = cfg(vec![svc("web", 80, &[("10.0.0.11", 1)])]);
        let mut b = Balancer::new(&two);
        let mut m = FakeMaps::default();
        let mk = macs(&["10.0.0.11", "10.0.0.12"]);
        b.apply(&two, &mk, &mut m).unwrap();
        m.log.clear();
        b.apply(&one, &mk, &mut m).unwrap();
        let swap = m.log.iter().position(|l| l.starts_with("service")).unwrap();
        let clear = m.log.iter().position(|l| l == "backend 1 alive=0").unwrap();
        assert!(swap < clear, "{:?}", m.log);
        assert_eq!(m.table_ids(80), [0].into());
    }

    #[test]
    fn removed_service_is_deleted_and_its_backends_cleared() {
        let both = cfg(vec![svc("web", 80, &[("10.0.0.11", 1)]), svc("api", 81, &[("10.0.0.12", 1)])]);
        let web = cfg(vec![svc("web", 80, &[("10.0.0.11", 1)])]);
        let mut b = Balancer::new(&both);
        let mut m = FakeMaps::default();
        let mk = macs(&["10.0.0.11", "10.0.0.12"]);
        b.apply(&both, &mk, &mut m).unwrap();
        let s = b.apply(&web, &mk, &mut m).unwrap();
        assert_eq!(s.services_removed, vec!["api"]);
        assert_eq!(m.services.len(), 1);
        assert_eq!(m.backends[&1].flags, 0);
    }

    #[test]
    fn drained_backend_keeps_its_entry_but_no_slot() {
        let c = cfg(vec![svc("web", 80, &[("10.0.0.11", 1), ("10.0.0.12", 0)])]);
        let mut b = Balancer::new(&c);
        let mut m = FakeMaps::default();
        b.apply(&c, &macs(&["10.0.0.11", "10.0.0.12"]), &mut m).unwrap();
        assert_eq!(m.backends[&1].flags, BACKEND_ALIVE, "established flows stay");
        assert_eq!(m.table_ids(80), [0].into());
    }

    #[test]
    fn fixed_settings_refuse_a_reload() {
        let c = cfg(vec![svc("web", 80, &[("10.0.0.11", 1)])]);
        let mut b = Balancer::new(&c);
        let mut m = FakeMaps::default();
        let mut other = c.clone();
        other.maglev_table_size = 17;
        let e = b.apply(&other, &HashMap::new(), &mut m).unwrap_err();
        assert!(e.to_string().contains("maglev_table_size cannot change"), "{e}");
        assert!(m.log.is_empty(), "nothing half-applied");
    }

    fn checked(mut s: Service, when: WhenAllDown) -> Service {
        s.health = crate::model::config::HealthConfig {
            check: HealthCheck::Tcp,
            rise: 1,
            fall: 1,
            when_all_down: when,
            ..Default::default()
        };
        s
    }

    const FAIL: CheckOutcome = Err(crate::model::health::CheckFailure::Refused);

    #[test]
    fn a_reload_that_fails_at_any_write_leaves_the_maps_and_state_as_before() {
        let old = cfg(vec![
            svc("web", 80, &[("10.0.0.11", 1), ("10.0.0.12", 1)]),
            svc("api", 81, &[("10.0.0.11", 1)]),
            svc("gone", 82, &[("10.0.0.13", 1)]),
        ]);
        let mut moved = svc("api", 91, &[("10.0.0.11", 1)]);
        moved.port = 91;
        let new = cfg(vec![
            svc("web", 80, &[("10.0.0.12", 3), ("10.0.0.14", 1)]),
            moved,
            svc("fresh", 83, &[("10.0.0.15", 1)]),
        ]);
        let all = macs(&["10.0.0.11", "10.0.0.12", "10.0.0.13", "10.0.0.14", "10.0.0.15"]);
        let mut b = Balancer::new(&old);
        let mut m = FakeMaps::default();
        b.apply(&old, &all, &mut m).unwrap();
        let seen_before = m.seen();
        let names_before: Vec<_> = b.services().map(|s| (s.config.clone(), s.backends.iter().map(|x| x.id).collect::<Vec<_>>())).collect();
        // How many writes the whole reload takes, then fail at each of them in turn.
        let mut probe = (b.clone(), m.clone());
        probe.0.apply(&new, &all, &mut probe.1).unwrap();
        let writes = probe.1.log.len() - m.log.len();
        assert!(writes > 5, "a reload worth testing: {writes} writes");
        for k in 0..writes {
            let (mut b2, mut m2) = (b.clone(), m.clone());
            m2.fail_after = Some(k);
            let e = b2.apply(&new, &all, &mut m2).unwrap_err();
            let failed_generations: HashSet<u32> = m2.generations.difference(&m.generations).copied().collect();
            assert!(matches!(e, ApplyError::RolledBack { .. }), "write {k}: {e}");
            assert!(e.to_string().contains("put back"), "{e}");
            assert_eq!(m2.seen(), seen_before, "after failing at write {k} of {writes}, packets see the old tables");
            let names: Vec<_> = b2.services().map(|s| (s.config.clone(), s.backends.iter().map(|x| x.id).collect::<Vec<_>>())).collect();
            assert_eq!(names, names_before, "the balancer's state is the old one");
            // And the next reload, with nothing failing, still works from there.
            m2.fail_after = None;
            b2.apply(&new, &all, &mut m2).unwrap_or_else(|e| panic!("after a rollback at write {k}, a clean reload fails: {e}"));
            // Where a clean one does, but with generations of its own: the failed attempt's
            // may be in the flow table, and must never be handed out again.
            let strip = |m: &FakeMaps| {
                let mut seen = m.seen();
                seen.values_mut().flat_map(|(_, t)| t.iter_mut()).for_each(|b| b.generation = 0);
                seen
            };
            assert_eq!(strip(&m2), strip(&probe.1), "after the rollback at write {k}, the retried reload ends where a clean one does");
            for b in m2.seen().values().flat_map(|(_, t)| t.iter()) {
                assert!(!failed_generations.contains(&b.generation), "after the rollback at write {k}, a new backend reuses generation {} of the failed attempt", b.generation);
            }
        }
    }

    #[test]
    fn a_restarted_balancer_gives_back_the_previous_daemons_ids() {
        // The previous daemon: web with .11, .12, then .13 added by a reload, .11 removed.
        let first = cfg(vec![svc("web", 80, &[("10.0.0.11", 1), ("10.0.0.12", 1)]), svc("api", 81, &[("10.0.0.21", 1)])]);
        let later = cfg(vec![svc("web", 80, &[("10.0.0.12", 1), ("10.0.0.13", 1)]), svc("api", 81, &[("10.0.0.21", 1)])]);
        let all = macs(&["10.0.0.11", "10.0.0.12", "10.0.0.13", "10.0.0.21", "10.0.0.31"]);
        let mut old = Balancer::new(&first);
        let mut m = FakeMaps::default();
        old.apply(&first, &all, &mut m).unwrap();
        old.apply(&later, &all, &mut m).unwrap();
        let ids = |b: &Balancer| -> BTreeMap<(String, IpAddr), (u32, u32)> {
            b.services().flat_map(|s| s.backends.iter().map(move |x| ((s.config.name.clone(), x.address), (s.id, x.id)))).collect()
        };
        // What the maps tell the next daemon: the mark is BACKENDS' last entry.
        let mut previous = PreviousIds { generation: m.mark, ..Default::default() };
        for (k, v) in &m.services {
            previous.services.insert(*k, v.id);
        }
        for (id, be) in &m.backends {
            previous.generation = previous.generation.max(be.generation);
            if be.family != 0 {
                previous.backends.insert((be.service, crate::model::addr::addr_from_bytes(&be.addr, be.family)), PreviousBackend { id: *id, generation: be.generation });
            }
        }
        // A fresh daemon without them would number .12 and .13 from 0; with them, it keeps them.
        let mut fresh = Balancer::new(&later);
        fresh.apply(&later, &all, &mut FakeMaps::default()).unwrap();
        assert_ne!(ids(&fresh), ids(&old), "the test needs ids that a fresh start would not repeat");
        // The first apply may bring a backend the previous daemon never had: it must get an id
        // no kept backend holds.
        let with_new = cfg(vec![svc("web", 80, &[("10.0.0.12", 1), ("10.0.0.13", 1), ("10.0.0.31", 1)]), svc("api", 81, &[("10.0.0.21", 1)])]);
        let mut first_apply = Balancer::with_previous(&with_new, false, previous.clone());
        first_apply.apply(&with_new, &all, &mut FakeMaps::default()).unwrap();
        let got = ids(&first_apply);
        let held: HashSet<u32> = got.values().map(|(_, b)| *b).collect();
        assert_eq!(held.len(), got.len(), "every backend has its own id: {got:?}");
        for (k, v) in ids(&old) {
            assert_eq!(got.get(&k), Some(&v), "{k:?} keeps its id");
        }
        let mut next = Balancer::with_previous(&later, false, previous);
        let mut m2 = FakeMaps::default();
        next.apply(&later, &all, &mut m2).unwrap();
        assert_eq!(ids(&next), ids(&old));
        // A backend added later gets an id nobody holds.
        let more = cfg(vec![svc("web", 80, &[("10.0.0.12", 1), ("10.0.0.13", 1), ("10.0.0.31", 1)]), svc("api", 81, &[("10.0.0.21", 1)])]);
        next.apply(&more, &all, &mut m2).unwrap();
        let taken: Vec<u32> = next.services().flat_map(|s| s.backends.iter().map(|b| b.id)).collect();
        let unique: HashSet<u32> = taken.iter().copied().collect();
        assert_eq!(unique.len(), taken.len(), "ids are unique: {taken:?}");
        // Kept backends keep their generation (their flows stay valid); the new one gets a
        // generation no entry of the previous daemon ever had, released ones included (.11's).
        let generation = |b: &Balancer, a: &str| b.service("web").unwrap().backends.iter().find(|x| x.address == a.parse::<IpAddr>().unwrap()).unwrap().generation;
        assert_eq!(generation(&next, "10.0.0.12"), generation(&old, "10.0.0.12"));
        assert_eq!(generation(&next, "10.0.0.13"), generation(&old, "10.0.0.13"));
        assert!(generation(&next, "10.0.0.31") > *m.generations.iter().max().unwrap(), "a fresh generation for a fresh backend");
    }

    /// What `adopt::previous_ids` reads from the pins a daemon leaves: its services' ids, its
    /// backends' ids and generations, and the highest generation in BACKENDS (the mark, in
    /// its last entry, included).
    fn pins(m: &FakeMaps) -> PreviousIds {
        let mut p = PreviousIds { generation: m.mark, ..Default::default() };
        for (k, v) in &m.services {
            p.services.insert(*k, v.id);
        }
        for (id, be) in &m.backends {
            p.generation = p.generation.max(be.generation);
            if be.family != 0 {
                let addr = crate::model::addr::addr_from_bytes(&be.addr, be.family);
                p.backends.insert((be.service, addr), PreviousBackend { id: *id, generation: be.generation });
            }
        }
        p
    }

    #[test]
    fn a_flow_of_a_backend_removed_two_restarts_ago_matches_no_live_backend() {
        let all = macs(&["10.0.0.11", "10.0.0.12", "10.0.0.13", "10.0.0.21"]);
        let three = cfg(vec![svc("web", 80, &[("10.0.0.11", 1), ("10.0.0.12", 1), ("10.0.0.13", 1)])]);
        let two = cfg(vec![svc("web", 80, &[("10.0.0.11", 1), ("10.0.0.12", 1)])]);
        let more = cfg(vec![svc("web", 80, &[("10.0.0.11", 1), ("10.0.0.12", 1)]), svc("api", 81, &[("10.0.0.21", 1)])]);
        // Daemon A: .13 is removed by a reload; its idle flows stay in the flow table.
        let (mut a, mut ma) = (Balancer::new(&three), FakeMaps::default());
        a.apply(&three, &all, &mut ma).unwrap();
        let gone = a.service("web").unwrap().backends.iter().find(|b| b.address.to_string() == "10.0.0.13").map(|b| (b.id, b.generation)).unwrap();
        a.apply(&two, &all, &mut ma).unwrap();
        // B adopts A's pins with fresh maps and writes only what it uses; C adopts B's and
        // brings a backend A never had.
        let (mut b, mut mb) = (Balancer::with_previous(&two, false, pins(&ma)), FakeMaps::default());
        b.apply(&two, &all, &mut mb).unwrap();
        let (mut c, mut mc) = (Balancer::with_previous(&more, false, pins(&mb)), FakeMaps::default());
        c.apply(&more, &all, &mut mc).unwrap();
        for (id, e) in &mc.backends {
            assert!(
                !(e.flags & BACKEND_ALIVE != 0 && (*id, e.generation) == gone),
                "backend {id} of daemon C is alive under generation {}: a flow .13 left two restarts ago is forwarded to it",
                e.generation
            );
        }
    }

    #[test]
    fn a_released_backend_id_keeps_its_generation_and_its_next_owner_gets_a_new_one() {
        let two = cfg(vec![svc("web", 80, &[("10.0.0.11", 1), ("10.0.0.12", 1)])]);
        let one = cfg(vec![svc("web", 80, &[("10.0.0.12", 1)])]);
        let other = cfg(vec![svc("web", 80, &[("10.0.0.12", 1)]), svc("api", 81, &[("10.0.0.21", 1)])]);
        let all = macs(&["10.0.0.11", "10.0.0.12", "10.0.0.21"]);
        let mut b = Balancer::new(&two);
        let mut m = FakeMaps::default();
        b.apply(&two, &all, &mut m).unwrap();
        let gone = b.service("web").unwrap().backends.iter().find(|x| x.address.to_string() == "10.0.0.11").map(|x| (x.id, x.generation)).unwrap();
        assert_ne!(gone.1, 0, "0 is never a generation: zeroed flow values must not match");
        b.apply(&one, &all, &mut m).unwrap();
        let entry = m.backends[&gone.0];
        assert_eq!((entry.flags & BACKEND_ALIVE, entry.family, entry.generation), (0, 0, gone.1), "released, generation kept");
        // Whoever gets an id next, no entry ever again carries the released generation with a
        // live backend: flows pinned to .11 miss.
        for _ in 0..3 {
            b.apply(&other, &all, &mut m).unwrap();
            b.apply(&one, &all, &mut m).unwrap();
        }
        b.apply(&other, &all, &mut m).unwrap();
        for (id, e) in &m.backends {
            assert!(!(e.flags & BACKEND_ALIVE != 0 && e.generation == gone.1), "backend {id} is alive under the released generation {}", gone.1);
        }
        let gens: Vec<u32> = b.services().flat_map(|s| s.backends.iter().map(|x| x.generation)).collect();
        assert_eq!(gens.iter().copied().collect::<HashSet<_>>().len(), gens.len(), "one generation per allocation: {gens:?}");
    }

    #[test]
    fn the_last_check_is_noted_per_backend_and_kept_across_a_reload() {
        let c = cfg(vec![checked(svc("web", 80, &[("10.0.0.11", 1), ("10.0.0.12", 1)]), WhenAllDown::Drop)]);
        let mut b = Balancer::new(&c);
        let mut m = FakeMaps::default();
        let all = macs(&["10.0.0.11", "10.0.0.12"]);
        b.apply(&c, &all, &mut m).unwrap();
        let at = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        let last = LastCheck { at, took: std::time::Duration::from_millis(3) };
        b.note_check("web", "10.0.0.12".parse().unwrap(), last);
        b.note_check("nope", "10.0.0.12".parse().unwrap(), last);
        let checks = |b: &Balancer| b.service("web").unwrap().backends.iter().map(|x| x.health.last_check).collect::<Vec<_>>();
        assert_eq!(checks(&b), [None, Some(last)]);
        let more = cfg(vec![checked(svc("web", 80, &[("10.0.0.11", 1), ("10.0.0.12", 2)]), WhenAllDown::Drop)]);
        b.apply(&more, &all, &mut m).unwrap();
        assert_eq!(checks(&b), [None, Some(last)], "a reload keeps what was checked");
    }

    #[test]
    fn a_tracked_service_is_down_only_once_its_checks_have_settled() {
        let c = cfg(vec![checked(svc("web", 80, &[("10.0.0.11", 1), ("10.0.0.12", 1)]), WhenAllDown::Drop)]);
        let mut b = Balancer::new(&c);
        let mut m = FakeMaps::default();
        b.apply(&c, &macs(&["10.0.0.11", "10.0.0.12"]), &mut m).unwrap();
        let tracked = vec!["web".to_string()];
        assert!(!b.any_service_down(&tracked), "not checked yet is not down");
        assert!(!b.services_settled(&tracked));
        b.health_result("web", "10.0.0.11".parse().unwrap(), &FAIL, &mut m).unwrap();
        assert!(!b.any_service_down(&tracked), "10.0.0.12 has not had its chance yet");
        b.health_result("web", "10.0.0.12".parse().unwrap(), &FAIL, &mut m).unwrap();
        assert!(b.any_service_down(&tracked), "every backend failed, none is healthy");
        assert!(b.services_settled(&tracked) && b.services_settled(&[]));
        assert!(!b.any_service_down(&["api".to_string()]), "an unknown service is not down");
        assert!(!b.any_service_down(&[]));
        for _ in 0..c.services[0].health.rise {
            b.health_result("web", "10.0.0.12".parse().unwrap(), &Ok(()), &mut m).unwrap();
        }
        assert!(!b.any_service_down(&tracked), "one backend came back");
        // Healthy but unreachable is not serving.
        b.update_macs(&macs(&["10.0.0.11"]), &mut m).unwrap();
        let st = b.service("web").unwrap();
        assert!(st.serving(&st.backends[1]));
        let mut lost = b.service("web").unwrap().clone();
        lost.backends[1].mac = None;
        assert!(lost.healthy(&lost.backends[1]) && !lost.serving(&lost.backends[1]));
    }

    #[test]
    fn checked_backends_start_down_and_enter_the_table_when_up() {
        let c = cfg(vec![checked(svc("web", 80, &[("10.0.0.11", 1), ("10.0.0.12", 1)]), WhenAllDown::Drop)]);
        let mut b = Balancer::new(&c);
        let mut m = FakeMaps::default();
        b.apply(&c, &macs(&["10.0.0.11", "10.0.0.12"]), &mut m).unwrap();
        assert_eq!(m.table_ids(80), [NO_BACKEND].into(), "nothing healthy yet, policy drop");
        let t = b.health_result("web", "10.0.0.12".parse().unwrap(), &Ok(()), &mut m).unwrap();
        assert_eq!(t, Some(Transition::Up));
        assert_eq!(m.table_ids(80), [1].into());
        assert_eq!(m.backends[&1].flags, BACKEND_ALIVE);
        assert_eq!(m.backends[&0].flags, 0);
    }

    #[test]
    fn a_backend_going_down_loses_its_slots_and_its_pinned_flows() {
        let c = cfg(vec![checked(svc("web", 80, &[("10.0.0.11", 1), ("10.0.0.12", 1), ("10.0.0.13", 1)]), WhenAllDown::Drop)]);
        let mut b = Balancer::with_options(&c, true);
        let mut m = FakeMaps::default();
        b.apply(&c, &macs(&["10.0.0.11", "10.0.0.12", "10.0.0.13"]), &mut m).unwrap();
        let before = b.service("web").unwrap().table.clone();
        b.health_result("web", "10.0.0.12".parse().unwrap(), &FAIL, &mut m).unwrap();
        let after = b.service("web").unwrap().table.clone();
        assert_eq!(m.table_ids(80), [0, 2].into());
        assert_eq!(m.backends[&1].flags, 0, "pinned flows re-pick");
        for (x, y) in before.iter().zip(&after) {
            if *x != 1 {
                assert_eq!(x, y, "only the dead backend's slots move");
            }
        }
    }

    #[test]
    fn all_down_sends_to_all_by_default_and_says_so() {
        let c = cfg(vec![checked(svc("web", 80, &[("10.0.0.11", 1), ("10.0.0.12", 1)]), WhenAllDown::SendToAll)]);
        let mut b = Balancer::with_options(&c, true);
        let mut m = FakeMaps::default();
        b.apply(&c, &macs(&["10.0.0.11", "10.0.0.12"]), &mut m).unwrap();
        b.health_result("web", "10.0.0.11".parse().unwrap(), &FAIL, &mut m).unwrap();
        assert!(!b.service("web").unwrap().all_down);
        b.health_result("web", "10.0.0.12".parse().unwrap(), &FAIL, &mut m).unwrap();
        assert!(b.service("web").unwrap().all_down);
        assert_eq!(m.table_ids(80), [0, 1].into());
        assert!(m.backends.values().all(|e| e.flags == BACKEND_ALIVE));
        b.health_result("web", "10.0.0.12".parse().unwrap(), &Ok(()), &mut m).unwrap();
        assert!(!b.service("web").unwrap().all_down);
        assert_eq!(m.table_ids(80), [1].into());
    }

    #[test]
    fn drain_and_enable_at_run_time() {
        let c = cfg(vec![svc("web", 80, &[("10.0.0.11", 1), ("10.0.0.12", 1)])]);
        let mut b = Balancer::new(&c);
        let mut m = FakeMaps::default();
        let mk = macs(&["10.0.0.11", "10.0.0.12"]);
        b.apply(&c, &mk, &mut m).unwrap();
        b.set_weight("web", "10.0.0.12", Some(0), &mut m).unwrap();
        assert_eq!(m.table_ids(80), [0].into());
        assert_eq!(m.backends[&1].flags, BACKEND_ALIVE, "drained: established flows stay");
        let e = b.set_weight("web", "10.0.0.11", Some(0), &mut m).unwrap_err();
        assert!(e.to_string().contains("has weight 0 or is down"), "{e}");
        b.apply(&c, &mk, &mut m).unwrap();
        assert_eq!(m.table_ids(80), [0].into(), "a drain survives a reload");
        b.set_weight("web", "10.0.0.12", None, &mut m).unwrap();
        assert_eq!(m.table_ids(80), [0, 1].into());
    }

    #[test]
    fn bad_operator_requests_change_nothing() {
        let c = cfg(vec![svc("web", 80, &[("10.0.0.11", 1)])]);
        let mut b = Balancer::new(&c);
        let mut m = FakeMaps::default();
        b.apply(&c, &macs(&["10.0.0.11"]), &mut m).unwrap();
        m.log.clear();
        assert!(matches!(b.set_weight("api", "10.0.0.11", Some(1), &mut m), Err(OpErrorOr::Op(OpError::NoService(_)))));
        assert!(matches!(b.set_weight("web", "10.0.0.99", Some(1), &mut m), Err(OpErrorOr::Op(OpError::NoBackend { .. }))));
        assert!(matches!(b.set_weight("web", "nonsense", Some(1), &mut m), Err(OpErrorOr::Op(OpError::NoBackend { .. }))));
        assert!(matches!(b.set_weight("web", "10.0.0.11", Some(2_000_000), &mut m), Err(OpErrorOr::Op(OpError::Weight(_)))));
        assert!(m.log.is_empty());
    }
}
