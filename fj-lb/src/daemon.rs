//! `fj-lb run`: load, fill, attach, pin; then follow signals and the neighbour table until
//! told to stop, and leave nothing behind.
use std::{
    collections::HashMap,
    net::IpAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use fj_lb_common::Settings;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info, info_span, warn, Instrument};

use crate::{
    config::{self, Config, ConfigError, LiveHost},
    dataplane::{self, AttachedMode, Dataplane, DataplaneError},
    neigh::{NeighError, Neighbours},
    state::{self, ApplyError, Balancer, Mac},
};

/// How often the neighbour table is read for new or changed backend MACs.
const NEIGHBOUR_POLL: Duration = Duration::from_secs(1);
/// How long start-up and reload wait for backends' MACs before going ahead without them.
const RESOLVE_WAIT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
    #[error(transparent)]
    Neighbours(#[from] NeighError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error("installing signal handlers failed: {0}")]
    Signals(#[source] std::io::Error),
}

pub struct Daemon {
    config_path: PathBuf,
    config: Config,
    dp: Dataplane,
    balancer: Balancer,
    neigh: Neighbours,
    macs: HashMap<IpAddr, Mac>,
    pub mode: AttachedMode,
}

impl Daemon {
    /// Everything up to a running balancer. On error nothing stays attached or pinned: the
    /// program and maps are released when `Dataplane` drops, and pins are only made last.
    pub async fn start(config_path: &Path) -> Result<Self, DaemonError> {
        let started = Instant::now();
        let config = config::load(config_path, &LiveHost)?;
        info!(config = %config_path.display(), services = config.services.len(), "config valid");
        dataplane::ensure_bpffs(&config.bpffs)?;
        let neigh = Neighbours::open(&config.interface).await?;
        let mut dp = Dataplane::load(state::sizes(&config))?;
        info!(program_id = dp.program_id(), "XDP program loaded and verified");
        dp.write_settings(Settings { lb_mac: neigh.mac, _pad: [0; 2], hash_seed: config.hash_seed })?;
        let mut balancer = Balancer::new(&config);
        let wanted: Vec<IpAddr> = config.services.iter().flat_map(|s| s.backends.iter().map(|b| b.address)).collect();
        let macs = resolve(&neigh, &wanted).await?;
        let summary = balancer.apply(&config, &macs, &mut dp)?;
        info!(services = ?summary.services_added, tables = summary.tables_written, "maps filled");
        let mode = dp.attach(&config.interface, config.xdp_mode)?;
        if let Err(e) = dp.pin_maps(&config.bpffs) {
            dp.detach();
            return Err(e.into());
        }
        info!(
            interface = %config.interface,
            mode = mode.as_str(),
            bpffs = %config.bpffs.display(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "fj-lb is balancing"
        );
        Ok(Self { config_path: config_path.to_path_buf(), config, dp, balancer, neigh, macs, mode })
    }

    /// Runs until SIGINT or SIGTERM; SIGHUP reloads the config.
    pub async fn run(mut self) -> Result<(), DaemonError> {
        let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
        let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;
        let mut hup = signal(SignalKind::hangup()).map_err(DaemonError::Signals)?;
        let mut tick = tokio::time::interval(NEIGHBOUR_POLL);
        loop {
            tokio::select! {
                _ = term.recv() => { info!("SIGTERM: stopping"); break; }
                _ = int.recv() => { info!("SIGINT: stopping"); break; }
                _ = hup.recv() => {
                    let span = info_span!("reload", config = %self.config_path.display());
                    self.reload().instrument(span).await;
                }
                _ = tick.tick() => {
                    if let Err(e) = self.refresh_neighbours().await {
                        warn!(error = %e, "reading the neighbour table failed");
                    }
                }
            }
        }
        self.stop();
        Ok(())
    }

    async fn refresh_neighbours(&mut self) -> Result<(), DaemonError> {
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
        self.balancer.update_macs(&self.macs, &mut self.dp)?;
        Ok(())
    }

    /// Re-reads the config and applies the difference. A config that fails validation, or
    /// changes what only a restart can, is refused whole and the running config stays.
    pub async fn reload(&mut self) {
        let new = match config::load(&self.config_path, &LiveHost) {
            Ok(c) => c,
            Err(e) => {
                error!("reload refused, the running config stays in force: {e}");
                return;
            }
        };
        let fresh: Vec<IpAddr> = new
            .services
            .iter()
            .flat_map(|s| s.backends.iter().map(|b| b.address))
            .filter(|a| !self.macs.contains_key(a))
            .collect();
        match resolve(&self.neigh, &fresh).await {
            Ok(m) => self.macs.extend(m),
            Err(e) => warn!(error = %e, "reading the neighbour table failed"),
        }
        match self.balancer.apply(&new, &self.macs, &mut self.dp) {
            Ok(s) => {
                info!(
                    added = ?s.services_added,
                    removed = ?s.services_removed,
                    changed = ?s.services_changed,
                    tables_written = s.tables_written,
                    "config reloaded"
                );
                self.config = new;
            }
            Err(e @ ApplyError::NeedsRestart { .. }) => error!("reload refused, the running config stays in force: {e}"),
            Err(e) => error!("reload failed part-way: {e}"),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    fn stop(mut self) {
        self.dp.detach();
        dataplane::unpin_maps(&self.config.bpffs);
        info!(interface = %self.config.interface, "XDP detached, pins removed; fj-lb stopped");
    }
}

/// Solicits the addresses not yet in the neighbour table and waits, bounded, for them.
async fn resolve(neigh: &Neighbours, wanted: &[IpAddr]) -> Result<HashMap<IpAddr, Mac>, NeighError> {
    let deadline = Instant::now() + RESOLVE_WAIT;
    let mut solicited = false;
    loop {
        let table = neigh.table().await?;
        let missing: Vec<IpAddr> = wanted.iter().filter(|a| !table.contains_key(a)).copied().collect();
        if missing.is_empty() || Instant::now() >= deadline {
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
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
