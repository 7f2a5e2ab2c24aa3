//! Start-up: everything up to a running balancer, in order, and nothing left behind when a
//! step fails (the program and maps go when `Dataplane` drops; pins are made last).
use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    path::Path,
    time::Instant,
};

use fj_lb_common::{SETTINGS_NOT_ACCEPTED, Settings};
use tokio::sync::mpsc;
use tracing::info;

use super::{
    Daemon, DaemonError, Options, Signals,
    checkers::Checkers,
    neighbours::{merge_next_hops, resolution_groups, resolve, route_all},
};
use crate::{
    control,
    datapath::{self, AttachedMode, BpffsLock, Dataplane},
    model::{
        addr::Mac,
        balancer::{self, Balancer, NextHop},
        config::{self, Config},
        vrrp_config,
    },
    net::{LiveHost, Neighbours},
    report::{metrics::Metrics, serve},
    vrrp,
};

/// The data path as start-up leaves it: loaded, filled, attached and pinned.
struct Started {
    lock: BpffsLock,
    settings: Settings,
    dp: Dataplane,
    neigh: Neighbours,
    balancer: Balancer,
    macs: HashMap<IpAddr, Mac>,
    hops: HashMap<IpAddr, NextHop>,
    route_warned: HashSet<IpAddr>,
    mode: AttachedMode,
}

impl Daemon {
    pub async fn start(config_path: &Path, opts: Options) -> Result<Self, DaemonError> {
        let started = Instant::now();
        let signals = Signals::install()?;
        match crate::net::serving::raise_open_file_limit() {
            Ok(n) => info!(open_files = n, "open-file limit"),
            Err(e) => tracing::warn!(error = %e, "raising the open-file limit failed"),
        }
        let config = config::load(config_path, &LiveHost)?;
        info!(config = %config_path.display(), services = config.services.len(), "config valid");
        let (control_tx, control_rx) = mpsc::channel(16);
        let control_task = control::serve(&config.control_socket, control_tx)?;
        let Started { lock, dp, neigh, balancer, macs, hops, route_warned, mode, settings } = match start_dataplane(&config, opts.assume_healthy).await {
            Ok(s) => s,
            Err(e) => {
                control_task.abort();
                control::remove_socket(&config.control_socket);
                return Err(e);
            }
        };
        let (scrape_tx, scrape_rx) = mpsc::channel(4);
        let flow_walks = super::flow_walks::FlowWalks::new(config.bpffs.join(fj_lb_common::map_names::FLOWS));
        let neigh_handle = neigh.handle().clone();
        let mut daemon = Self {
            config_path: config_path.to_path_buf(),
            config,
            dp,
            balancer,
            neigh,
            macs,
            hops,
            route_warned,
            mode,
            started,
            control_rx,
            control_task,
            checkers: Checkers::new(),
            samples: Default::default(),
            metrics: Metrics::default(),
            scrape_rx,
            metrics_task: None,
            vrrp: None,
            announcing: super::announcing::Announcing::new(neigh_handle),
            tracked_down: Vec::new(),
            told_settled: Vec::new(),
            signals,
            watchdog: super::systemd::Watchdog::from_env(),
            _bpffs_lock: lock,
            settings,
            flood: (0, false),
            trace: super::trace::Tracing::new(),
            flow_walks,
        };
        // From here on a failure undoes everything through `stop`.
        if let Some(addr) = daemon.config.metrics_listen {
            match serve::serve(addr, scrape_tx).await {
                Ok(t) => daemon.metrics_task = Some(t),
                Err(source) => {
                    daemon.stop().await;
                    return Err(DaemonError::Metrics { addr, source });
                }
            }
        }
        if let Err(e) = daemon.start_vrrp().await {
            daemon.stop().await;
            return Err(e);
        }
        // Preemption waits until the tracked services' checks have a verdict.
        daemon.track();
        daemon.checkers.restart(&daemon.balancer);
        // Announced once attached and balancing: a router may send the first flow at once.
        daemon.adopt_routes().await;
        info!(
            interface = %daemon.config.interface,
            mode = mode.as_str(),
            bpffs = %daemon.config.bpffs.display(),
            control_socket = %daemon.config.control_socket.display(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "fj-lb is balancing"
        );
        super::systemd::ready(&format!(
            "balancing {} services on {} (XDP {} mode)",
            daemon.config.services.len(),
            daemon.config.interface,
            mode.as_str()
        ));
        Ok(daemon)
    }

    /// VRRP starts once the balancer is attached: a host that becomes master must be able to
    /// balance the first packet it attracts.
    async fn start_vrrp(&mut self) -> Result<(), DaemonError> {
        if self.config.vrrp.is_empty() {
            return Ok(());
        }
        let mut specs = Vec::with_capacity(self.config.vrrp.len());
        for v in &self.config.vrrp {
            let (ifindex, mac) = if v.interface == self.neigh.ifname {
                (self.neigh.ifindex, self.neigh.mac)
            } else {
                let n = Neighbours::open(&v.interface).await?;
                (n.ifindex, n.mac)
            };
            specs.push(vrrp::InstanceSpec { cfg: v.clone(), ifindex, mac, siblings: vrrp_config::sibling_vrids(&self.config.vrrp, v) });
        }
        let set = vrrp::start_all(specs, &self.config.vrrp_sync_groups).await?;
        self.tracked_down = vec![false; set.instances.len()];
        self.told_settled = vec![None; set.instances.len()];
        self.vrrp = Some(set);
        Ok(())
    }
}

async fn start_dataplane(config: &Config, assume_healthy: bool) -> Result<Started, DaemonError> {
    datapath::ensure_bpffs(&config.bpffs)?;
    let lock = datapath::lock_bpffs(&config.bpffs)?;
    let neigh = Neighbours::open(&config.interface).await?;
    let inherited = datapath::inherit(&config.bpffs, config.flow_table_size);
    let mut dp = Dataplane::load_adopting(balancer::sizes(config), inherited.flows.as_deref())?;
    info!(program_id = dp.program_id(), "XDP program loaded and verified");
    let mut flags = 0;
    let vips: Vec<IpAddr> = config
        .vrrp
        .iter()
        .filter(|v| !v.accept_mode && v.priority != 255)
        .flat_map(|v| v.virtual_addresses.iter().map(|(a, _)| *a))
        .collect();
    if !vips.is_empty() {
        dp.set_not_accepted(&vips)?;
        flags |= SETTINGS_NOT_ACCEPTED;
        info!(?vips, "accept_mode = false: traffic to the virtual addresses other than services is dropped");
    }
    // The virtual MAC joins once this host is master (`on_vrrp`).
    let settings = balancer::settings_for(config, Settings { lb_mac: neigh.mac, flags, ..Settings::default() });
    dp.write_settings(settings)?;
    let mut balancer = Balancer::with_previous(config, assume_healthy, inherited.ids);
    let l3: Vec<IpAddr> =
        config.services.iter().filter(|s| s.forward.is_l3()).flat_map(|s| s.backends.iter().map(|b| b.address)).collect();
    let mut route_warned = HashSet::new();
    let routes = route_all(&neigh, &l3, &mut route_warned).await;
    let macs = resolve(&neigh, &resolution_groups(&config.services, &routes)).await?;
    let mut hops = HashMap::new();
    merge_next_hops(&mut hops, &routes, &macs);
    balancer.set_next_hops(hops.clone());
    let summary = balancer.apply(config, &macs, &mut dp)?;
    info!(services = ?summary.services_added, tables = summary.tables_written, "maps filled");
    let mode = dp.attach(&config.interface, config.xdp_mode, &config.bpffs)?;
    if let Err(e) = dp.pin_maps(&config.bpffs) {
        dp.detach();
        return Err(e.into());
    }
    Ok(Started { lock, dp, neigh, balancer, macs, hops, route_warned, mode, settings })
}
