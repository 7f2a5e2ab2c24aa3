//! Loading and verifying the balancer program, with map sizes from the config.
use std::path::Path;

use aya::{EbpfLoader, programs::Xdp};
use fj_lb_common::{map_names as names, program_names};
use tracing::warn;

use super::{Dataplane, DataplaneError, OBJECT, map_err, mmap::MmapTable};
use crate::model::balancer::MapSizes;

impl Dataplane {
    /// Loads the object with the given map sizes and loads (verifies) the balancer program.
    pub fn load(sizes: MapSizes) -> Result<Self, DataplaneError> {
        Self::load_adopting(sizes, None)
    }

    /// Like `load`, but with the flow table pinned at `flows` (left by a previous daemon and
    /// checked by `adopt::inherit`) instead of a fresh one.
    pub fn load_adopting(sizes: MapSizes, flows: Option<&Path>) -> Result<Self, DataplaneError> {
        let mut loader = EbpfLoader::new();
        if let Some(pin) = flows {
            loader.map_pin_path(names::FLOWS, pin);
        }
        let mut ebpf = loader
            .map_max_entries(names::FLOWS, super::flow_table_entries(sizes.flow_table))
            .map_max_entries(names::MAGLEV, sizes.maglev_slots)
            .map_max_entries(names::SERVICES, sizes.services)
            .map_max_entries(names::VIPS, sizes.services)
            .map_max_entries(names::SERVICE_COUNTERS, sizes.services)
            .map_max_entries(names::BACKENDS, sizes.backends)
            .map_max_entries(names::BACKEND_COUNTERS, sizes.backends)
            .load(OBJECT)?;
        super::load_xdp(&mut ebpf, program_names::BALANCER)?;
        let maglev_mmap = match MmapTable::new(&ebpf, sizes.maglev_slots) {
            Ok(m) => Some(m),
            Err(e) => {
                warn!(error = %e, "cannot map the Maglev array; writing tables slot by slot (slower updates)");
                None
            }
        };
        Ok(Self { ebpf, link: super::link::Held::None, maglev_mmap })
    }

    /// Writes `table` at `base` in the MAGLEV array: one memcpy through the mapping, or one
    /// syscall per slot when the mapping is unavailable.
    pub fn write_maglev(&mut self, base: u32, table: &[u32]) -> Result<(), DataplaneError> {
        if let Some(m) = self.maglev_mmap.as_mut()
            && m.write(base, table) {
                // Order the table's stores before the service swap that publishes it.
                std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
                return Ok(());
            }
        let mut map = self.maglev();
        for (i, v) in table.iter().enumerate() {
            map.set(base + i as u32, v, 0).map_err(map_err(names::MAGLEV))?;
        }
        Ok(())
    }

    pub fn program(&self) -> &Xdp {
        self.ebpf
            .program(program_names::BALANCER)
            .expect("the embedded object has the balancer program")
            .try_into()
            .expect("the balancer is an XDP program")
    }

    /// The kernel's id of the loaded balancer program (what `bpftool prog` and `ip link` show).
    pub fn program_id(&self) -> Option<u32> {
        self.program().info().ok().map(|i| i.id())
    }

    pub fn program_mut(&mut self) -> &mut Xdp {
        self.ebpf
            .program_mut(program_names::BALANCER)
            .expect("the embedded object has the balancer program")
            .try_into()
            .expect("the balancer is an XDP program")
    }
}
