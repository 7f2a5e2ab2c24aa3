//! What a daemon takes over from the one before it on the same bpffs directory: the flow
//! table (so every established connection keeps its backend across a crash, a restart or an
//! upgrade) and the ids it handed out (flow entries name backends and services by id). Only a
//! layout this build understands is adopted; anything else starts fresh, and says so.
use std::{collections::HashMap, net::IpAddr, path::Path};

use aya::maps::{Array, HashMap as BpfHashMap, Map, MapData, MapInfo, MapType};
use fj_lb_common::{Backend, FlowKey, FlowValue, MAP_LAYOUT, ServiceKey, ServiceValue, map_names as names};
use tracing::{info, warn};

use crate::model::{addr::addr_from_bytes, balancer::{PreviousBackend, PreviousIds}};

/// The marker (an empty directory in bpffs) saying which map layout the pins beside it have.
pub fn layout_marker(dir: &Path) -> std::path::PathBuf {
    dir.join(format!("layout-v{MAP_LAYOUT}"))
}

/// What the previous daemon left that this one can use.
#[derive(Debug, Default)]
pub struct Inherited {
    /// The pinned flow table, to be reused as this daemon's FLOWS.
    pub flows: Option<std::path::PathBuf>,
    pub ids: PreviousIds,
}

/// Looks at the pins in `dir`. A flow table is adopted only when the marker names this
/// build's layout and the map is exactly what this daemon would create (type, key and value
/// sizes, capacity); pins of another layout are removed so that fresh maps take their place.
pub fn inherit(dir: &Path, flow_table_size: u32) -> Inherited {
    let flows = dir.join(names::FLOWS);
    if !flows.exists() {
        return Inherited::default();
    }
    let marker = layout_marker(dir);
    let compatible = marker.exists()
        && match MapInfo::from_pin(&flows) {
            Ok(i) => {
                let fits = matches!(i.map_type(), Ok(MapType::LruHash))
                    && i.key_size() as usize == size_of::<FlowKey>()
                    && i.value_size() as usize == size_of::<FlowValue>()
                    && i.max_entries() == super::flow_table_entries(flow_table_size);
                if !fits {
                    warn!(
                        key_size = i.key_size(),
                        value_size = i.value_size(),
                        max_entries = i.max_entries(),
                        flow_table_size,
                        "the pinned flow table does not match this config (flow_table_size changed?): starting with a fresh one"
                    );
                }
                fits
            }
            Err(e) => {
                warn!(error = %e, "the pinned flow table cannot be read: starting with a fresh one");
                false
            }
        };
    if !compatible {
        if !marker.exists() {
            warn!(dir = %dir.display(), layout = MAP_LAYOUT, "maps pinned by an fj-lb of another map layout: starting with fresh maps (established flows re-pick by hash)");
        }
        for name in names::ALL {
            let _ = std::fs::remove_file(dir.join(name));
        }
        return Inherited::default();
    }
    let ids = match previous_ids(dir) {
        Ok(ids) => ids,
        Err(e) => {
            // Without the previous ids and generations, the flows' (backend, generation) pairs
            // could match this daemon's new allocations: the flow table goes too.
            warn!(error = %e, "the pinned services and backends cannot be read: starting with fresh maps (established flows re-pick by hash)");
            for name in names::ALL {
                let _ = std::fs::remove_file(dir.join(name));
            }
            return Inherited::default();
        }
    };
    info!(
        dir = %dir.display(),
        services = ids.services.len(),
        backends = ids.backends.len(),
        "adopting the flow table and ids a previous fj-lb left pinned: established flows keep their backends"
    );
    Inherited { flows: Some(flows), ids }
}

fn previous_ids(dir: &Path) -> Result<PreviousIds, aya::maps::MapError> {
    let services: BpfHashMap<MapData, ServiceKey, ServiceValue> =
        BpfHashMap::try_from(Map::from_map_data(MapData::from_pin(dir.join(names::SERVICES))?)?)?;
    let backends: Array<MapData, Backend> = Array::try_from(Map::from_map_data(MapData::from_pin(dir.join(names::BACKENDS))?)?)?;
    let mut ids = PreviousIds::default();
    for (k, v) in services.iter().filter_map(Result::ok) {
        ids.services.insert(k, v.id);
    }
    let mut by_service: HashMap<(u32, IpAddr), PreviousBackend> = HashMap::new();
    for (id, b) in (0..backends.len()).filter_map(|i| backends.get(&i, 0).ok().map(|b| (i, b))) {
        ids.generation = ids.generation.max(b.generation);
        // Entries without a family are ids released by the previous daemon.
        if b.family != 0 {
            by_service.insert((b.service, addr_from_bytes(&b.addr, b.family)), PreviousBackend { id, generation: b.generation });
        }
    }
    ids.backends = by_service;
    Ok(ids)
}
