//! Map pins in bpffs, and readers that open the pinned flow table from another thread so
//! that walking it never holds up the daemon's loop.
use std::path::Path;

use aya::maps::{HashMap, MapData, MapError};
use fj_lb_common::{FlowKey, FlowValue, map_names as names};

use super::{Dataplane, DataplaneError};

impl Dataplane {
    /// Pins every map under `dir` (a bpffs directory), replacing stale pins of a daemon that
    /// died without cleaning up.
    pub fn pin_maps(&self, dir: &Path) -> Result<(), DataplaneError> {
        std::fs::create_dir_all(dir).map_err(|source| DataplaneError::Io {
            what: "creating pin directory",
            path: dir.to_path_buf(),
            source,
        })?;
        for name in names::ALL {
            let path = dir.join(name);
            if path.exists() {
                let _ = std::fs::remove_file(&path);
            }
            let map = self.ebpf.map(name).expect("the embedded object has every map");
            map.pin(&path).map_err(|e| DataplaneError::Map {
                name,
                source: MapError::PinError { name: Some(name.to_string()), error: e },
            })?;
        }
        let marker = super::layout_marker(dir);
        std::fs::create_dir_all(&marker).map_err(|source| DataplaneError::Io { what: "marking the map layout", path: marker, source })?;
        Ok(())
    }
}

fn pinned_flows(pin: &Path) -> Result<HashMap<MapData, FlowKey, FlowValue>, MapError> {
    HashMap::try_from(aya::maps::Map::from_map_data(MapData::from_pin(pin)?)?)
}

/// Number of entries in the flow table pinned at `pin`. Walks its keys: slow for a big table,
/// so callers keep it off latency-sensitive paths.
pub fn count_entries(pin: &Path) -> Result<u64, MapError> {
    Ok(pinned_flows(pin)?.keys().count() as u64)
}

/// Every entry of the flow table pinned at `pin` (same caveat).
pub fn read_flows(pin: &Path) -> Result<Vec<(FlowKey, FlowValue)>, MapError> {
    Ok(pinned_flows(pin)?.iter().filter_map(Result::ok).collect())
}

/// Removes the pins `pin_maps` made.
pub fn unpin_maps(dir: &Path) {
    for name in names::ALL {
        let _ = std::fs::remove_file(dir.join(name));
    }
    let _ = std::fs::remove_dir(super::layout_marker(dir));
    let _ = std::fs::remove_dir(dir);
}
