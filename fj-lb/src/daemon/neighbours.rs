//! Backend MACs: waited for (bounded) at start-up and reload, re-read every tick, and written
//! into the maps when they change. Layer-2 (DSR) backends get their own neighbour entry;
//! layer-3 (IPIP, GUE) backends the entry of the next hop the kernel routes them through,
//! with the route's MTU.
use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    time::{Duration, Instant},
};

use tracing::warn;

use super::{Daemon, DaemonError, sampling::count_update};
use crate::{
    model::{
        addr::Mac,
        balancer::{DEFAULT_MTU, NextHop},
        config::Service,
    },
    net::{NeighError, Neighbours},
};

/// How long start-up and reload wait for backends' MACs before going ahead without them.
const RESOLVE_WAIT: Duration = Duration::from_secs(2);
const RESOLVE_SOME: Duration = Duration::from_millis(300);
/// How often the neighbour table is re-read while waiting.
const RESOLVE_POLL: Duration = Duration::from_millis(50);

/// Where layer-3 backends' frames go: the next hop's address and the path MTU, per backend.
pub(super) type Routes = HashMap<IpAddr, (IpAddr, u16)>;

impl Daemon {
    pub(super) async fn refresh_neighbours(&mut self) -> Result<(), DaemonError> {
        let addrs = self.balancer.backend_addresses();
        let routes = route_all(&self.neigh, &self.balancer.l3_backend_addresses(), &mut self.route_warned).await;
        let table = self.neigh.table().await?;
        let missing: Vec<IpAddr> = addrs
            .iter()
            .chain(routes.values().map(|(hop, _)| hop))
            .filter(|a| !table.contains_key(a))
            .copied()
            .collect();
        if !missing.is_empty() {
            self.neigh.solicit(&missing);
        }
        for (ip, mac) in &table {
            if addrs.contains(ip) {
                self.macs.insert(*ip, *mac);
            }
        }
        merge_next_hops(&mut self.hops, &routes, &table);
        self.balancer.set_next_hops(self.hops.clone());
        let started = Instant::now();
        if self.balancer.update_macs(&self.macs, &mut self.dp)? > 0 {
            count_update(&self.metrics, "neighbour", started);
        }
        Ok(())
    }
}

/// The kernel's route to each layer-3 backend: its next hop and MTU (the route's, else the
/// interface's). A backend routed out of another interface than the balancer's gets none
/// (XDP_TX only sends back out of the interface it received on), with a warning the first
/// time.
pub(super) async fn route_all(neigh: &Neighbours, addrs: &[IpAddr], warned: &mut HashSet<IpAddr>) -> Routes {
    let mut out = HashMap::new();
    if addrs.is_empty() {
        return out;
    }
    // Read when the daemon started: a changed interface MTU takes a restart, a route's `mtu`
    // is followed every second.
    let interface_mtu = neigh.mtu;
    for addr in addrs {
        let route = match neigh.route_to(*addr).await {
            Ok(Some(r)) => r,
            Ok(None) => {
                if warned.insert(*addr) {
                    warn!(backend = %addr, "no route to the backend: it gets no new flows until there is one");
                }
                continue;
            }
            Err(e) => {
                warn!(backend = %addr, error = %e, "looking up the route to the backend failed");
                continue;
            }
        };
        if route.oif.is_some_and(|i| i != neigh.ifindex) {
            if warned.insert(*addr) {
                warn!(
                    backend = %addr,
                    interface = %neigh.ifname,
                    "the route to the backend leaves through another interface: fj-lb sends only out of the one it listens on; it gets no new flows"
                );
            }
            continue;
        }
        warned.remove(addr);
        let mtu = route.mtu.or(interface_mtu).map_or(DEFAULT_MTU, |m| m.min(u16::MAX as u32) as u16);
        out.insert(*addr, (route.next_hop(*addr), mtu));
    }
    out
}

/// Updates `hops` from the routes and the neighbour table. A next hop whose MAC is not known
/// keeps the last one (as backend MACs do): the old router most likely still forwards.
pub(super) fn merge_next_hops(hops: &mut HashMap<IpAddr, NextHop>, routes: &Routes, table: &HashMap<IpAddr, Mac>) {
    hops.retain(|b, _| routes.contains_key(b));
    for (backend, (hop, mtu)) in routes {
        match table.get(hop) {
            Some(mac) => {
                hops.insert(*backend, NextHop { mac: *mac, mtu: *mtu });
            }
            None => {
                if let Some(h) = hops.get_mut(backend) {
                    h.mtu = *mtu;
                }
            }
        }
    }
}

/// What each service's forwarding needs a MAC for: its backends (DSR), or their next hops
/// (IPIP, GUE), one group per service.
pub(super) fn resolution_groups(services: &[Service], routes: &Routes) -> Vec<Vec<IpAddr>> {
    services
        .iter()
        .map(|s| {
            s.backends
                .iter()
                .filter_map(|b| if s.forward.is_l3() { routes.get(&b.address).map(|(hop, _)| *hop) } else { Some(b.address) })
                .collect()
        })
        .collect()
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
                    address = %a,
                    interface = %neigh.ifname,
                    "no MAC for a backend (or the router before it) yet: it gets no new flows until it answers ARP/ND (a DSR backend must be on the same L2 segment)"
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_hops_take_the_routers_mac_and_keep_the_last_one_while_it_is_unknown() {
        let (b1, b2, r) = ("10.1.0.11".parse().unwrap(), "10.1.0.12".parse().unwrap(), "10.0.0.1".parse().unwrap());
        let routes: Routes = [(b1, (r, 1500)), (b2, (b2, 1400))].into();
        let mut hops = HashMap::new();
        merge_next_hops(&mut hops, &routes, &[(r, [2, 0, 0, 0, 0, 1])].into());
        assert_eq!(hops, [(b1, NextHop { mac: [2, 0, 0, 0, 0, 1], mtu: 1500 })].into(), "b2's own entry is not known yet");
        let routes: Routes = [(b1, (r, 1400))].into();
        merge_next_hops(&mut hops, &routes, &HashMap::new());
        assert_eq!(hops, [(b1, NextHop { mac: [2, 0, 0, 0, 0, 1], mtu: 1400 })].into(), "the router's entry vanished: its MAC stays, the MTU follows the route");
        merge_next_hops(&mut hops, &HashMap::new(), &HashMap::new());
        assert!(hops.is_empty(), "no route: no next hop");
    }
}
