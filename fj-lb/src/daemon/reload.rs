//! Reload: re-read the config and apply the difference. A config that fails validation, or
//! changes what only a restart can, is refused whole and the running config stays.
use std::{net::IpAddr, time::Instant};

use tracing::{error, info, warn};

use super::{
    Daemon,
    neighbours::{resolution_groups, resolve, route_all},
    sampling::count_update,
};
use crate::{
    control::protocol::ReloadReply,
    model::{
        balancer::ApplyError,
        config::{self, ConfigError},
    },
    net::LiveHost,
};

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("reload refused, the running config stays in force: {0}")]
    Invalid(#[from] ConfigError),
    #[error("reload refused, the running config stays in force: {0}")]
    NeedsRestart(#[source] ApplyError),
    #[error("reload failed and was undone, the running config stays in force: {0}")]
    RolledBack(#[source] ApplyError),
    #[error("reload refused, the running config stays in force: writing the data-path settings (max_new_flows_per_cpu, encap_source_*, orphan_fragments, icmp_too_big_per_cpu) failed: {0}")]
    Settings(#[source] crate::datapath::DataplaneError),
    #[error("reload failed part-way: {0}")]
    PartWay(#[source] ApplyError),
}

impl Daemon {
    pub(super) async fn reload(&mut self) -> Result<ReloadReply, ReloadError> {
        super::systemd::reloading();
        let result = self.try_reload().await;
        match &result {
            Ok(r) => info!(message = %r.message, "config reloaded"),
            Err(e) => error!(error = %e, "reload failed"),
        }
        // Ready again either way: a refused reload leaves the running config in force.
        super::systemd::ready(&match &result {
            Ok(r) => r.message.clone(),
            Err(e) => e.to_string(),
        });
        result
    }

    async fn try_reload(&mut self) -> Result<ReloadReply, ReloadError> {
        let new = config::load(&self.config_path, &LiveHost)?;
        // New layer-3 backends' routes, then every address not resolved yet: new DSR
        // backends and next hops not seen before.
        let l3: Vec<IpAddr> = new
            .services
            .iter()
            .filter(|s| s.forward.is_l3())
            .flat_map(|s| s.backends.iter().map(|b| b.address))
            .filter(|a| !self.hops.contains_key(a))
            .collect();
        let routes = route_all(&self.neigh, &l3, &mut self.route_warned).await;
        let fresh: Vec<IpAddr> = resolution_groups(&new.services, &routes)
            .into_iter()
            .flatten()
            .filter(|a| !self.macs.contains_key(a))
            .collect();
        match resolve(&self.neigh, &[fresh]).await {
            Ok(m) => self.macs.extend(m),
            Err(e) => warn!(error = %e, "reading the neighbour table failed"),
        }
        let mut hops = self.hops.clone();
        for (backend, (hop, mtu)) in &routes {
            if let Some(mac) = self.macs.get(hop) {
                hops.insert(*backend, crate::model::balancer::NextHop { mac: *mac, mtu: *mtu });
            }
        }
        self.hops = hops;
        self.balancer.set_next_hops(self.hops.clone());
        let started = Instant::now();
        // The settings a reload may change go first, and back if the maps refuse the rest.
        let old_settings = self.settings;
        let settings = crate::model::balancer::settings_for(&new, old_settings);
        if settings != old_settings {
            self.dp.write_settings(settings).map_err(ReloadError::Settings)?;
        }
        let applied = self.balancer.apply(&new, &self.macs, &mut self.dp);
        if applied.is_err() && settings != old_settings && let Err(e) = self.dp.write_settings(old_settings) {
            error!(error = %e, "restoring the data-path settings after a failed reload failed");
        }
        self.settings = if applied.is_ok() { settings } else { old_settings };
        let s = applied.map_err(|e| match e {
            e @ ApplyError::NeedsRestart { .. } => ReloadError::NeedsRestart(e),
            e @ ApplyError::RolledBack { .. } => ReloadError::RolledBack(e),
            e => ReloadError::PartWay(e),
        })?;
        count_update(&self.metrics, "reload", started);
        let message = format!(
            "config reloaded: added {:?}, removed {:?}, changed {:?}, {} tables written",
            s.services_added, s.services_removed, s.services_changed, s.tables_written
        );
        self.config = new;
        self.trace_names_changed();
        self.checkers.restart(&self.balancer);
        self.track();
        // A VIP the new config drops loses its route; a new one is announced once it serves.
        self.announce().await;
        Ok(ReloadReply { message })
    }
}
