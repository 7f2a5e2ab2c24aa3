//! Backend MACs: waited for (bounded) at start-up and reload, re-read every tick, and written
//! into the maps when they change.
use std::{
    collections::HashMap,
    net::IpAddr,
    time::{Duration, Instant},
};

use tracing::warn;

use super::{Daemon, DaemonError, sampling::count_update};
use crate::{
    model::addr::Mac,
    net::{NeighError, Neighbours},
};

/// How long start-up and reload wait for backends' MACs before going ahead without them.
const RESOLVE_WAIT: Duration = Duration::from_secs(2);
const RESOLVE_SOME: Duration = Duration::from_millis(300);
/// How often the neighbour table is re-read while waiting.
const RESOLVE_POLL: Duration = Duration::from_millis(50);

impl Daemon {
    pub(super) async fn refresh_neighbours(&mut self) -> Result<(), DaemonError> {
        let addrs = self.balancer.backend_addresses();
        let table = self.neigh.table().await?;
        let missing: Vec<IpAddr> = addrs.iter().filter(|a| !table.contains_key(a)).copied().collect();
        if !missing.is_empty() {
            self.neigh.solicit(&missing);
        }
        for (ip, mac) in table {
            if addrs.contains(&ip) {
                self.macs.insert(ip, mac);
            }
        }
        let started = Instant::now();
        if self.balancer.update_macs(&self.macs, &mut self.dp)? > 0 {
            count_update(&self.metrics, "neighbour", started);
        }
        Ok(())
    }
}

/// Solicits the addresses not yet in the neighbour table and waits, bounded, for them: up to
/// RESOLVE_WAIT while some group (a service's backends) has no MAC at all, RESOLVE_SOME once
/// every group has one (the rest join within a tick, and start-up is not held up by one dead
/// backend).
pub(super) async fn resolve(neigh: &Neighbours, groups: &[Vec<IpAddr>]) -> Result<HashMap<IpAddr, Mac>, NeighError> {
    let started = Instant::now();
    let wanted: Vec<IpAddr> = groups.iter().flatten().copied().collect();
    let mut solicited = false;
    loop {
        let table = neigh.table().await?;
        let missing: Vec<IpAddr> = wanted.iter().filter(|a| !table.contains_key(a)).copied().collect();
        let every_group_served = groups.iter().all(|g| g.is_empty() || g.iter().any(|a| table.contains_key(a)));
        let waited = started.elapsed();
        if missing.is_empty() || waited >= RESOLVE_WAIT || (every_group_served && waited >= RESOLVE_SOME) {
            for a in &missing {
                warn!(
                    backend = %a,
                    interface = %neigh.ifname,
                    "no MAC for backend yet: it gets no new flows until it answers ARP/ND (is it on the same L2 segment?)"
                );
            }
            return Ok(table.into_iter().filter(|(ip, _)| wanted.contains(ip)).collect());
        }
        if !solicited {
            neigh.solicit(&missing);
            solicited = true;
        }
        tokio::time::sleep(RESOLVE_POLL).await;
    }
}
