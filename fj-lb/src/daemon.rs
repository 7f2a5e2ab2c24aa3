//! `fj-lb run`: load, fill, attach, pin; then follow signals, health checks, the control
//! socket and the neighbour table until told to stop, and leave nothing behind.
use std::{
    collections::{HashMap, VecDeque},
    net::IpAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use fj_lb_common::Settings;
use serde_json::json;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{mpsc, oneshot},
    task::JoinHandle,
};
use tracing::{Instrument, error, info, info_span, warn};

use crate::{
    config::{self, Config, ConfigError, LiveHost, Protocol},
    control::{self, ControlError, Pending, Request, Response},
    dataplane::{self, AttachedMode, Dataplane, DataplaneError},
    health::{self, CheckResult},
    metrics::{self, BackendLabels, CauseLabels, Metrics, ScrapeRequest},
    neigh::{NeighError, Neighbours},
    report::{self, Sample},
    state::{self, ApplyError, Balancer, Mac},
    vrrp::{self, io::Vrrp},
};

/// How often the neighbour table is read and counters are sampled.
const TICK: Duration = Duration::from_secs(1);
/// How long start-up and reload wait for backends' MACs before going ahead without them.
const RESOLVE_WAIT: Duration = Duration::from_secs(2);
const RESOLVE_SOME: Duration = Duration::from_millis(300);
/// Counter samples kept for rates ("the last few seconds").
const RATE_WINDOW: usize = 5;

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
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error("serving metrics on {addr}: {source}")]
    Metrics {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Vrrp(#[from] vrrp::io::VrrpError),
    #[error("installing signal handlers failed: {0}")]
    Signals(#[source] std::io::Error),
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Start backends as healthy instead of waiting for `rise` passing checks.
    pub assume_healthy: bool,
}

pub struct Daemon {
    config_path: PathBuf,
    config: Config,
    dp: Dataplane,
    balancer: Balancer,
    neigh: Neighbours,
    macs: HashMap<IpAddr, Mac>,
    mode: AttachedMode,
    started: Instant,
    control_rx: mpsc::Receiver<Pending>,
    control_task: JoinHandle<()>,
    health_tx: mpsc::Sender<CheckResult>,
    health_rx: mpsc::Receiver<CheckResult>,
    checkers: Vec<JoinHandle<()>>,
    generation: u64,
    samples: VecDeque<Sample>,
    metrics: Metrics,
    scrape_rx: mpsc::Receiver<ScrapeRequest>,
    metrics_task: Option<JoinHandle<()>>,
    vrrp: Option<Vrrp>,
    tracked_down: bool,
}

impl Daemon {
    /// Everything up to a running balancer. On error nothing stays attached or pinned: the
    /// program and maps are released when `Dataplane` drops, and pins are only made last.
    pub async fn start(config_path: &Path, opts: Options) -> Result<Self, DaemonError> {
        let started = Instant::now();
        let config = config::load(config_path, &LiveHost)?;
        info!(config = %config_path.display(), services = config.services.len(), "config valid");
        let (control_tx, control_rx) = mpsc::channel(16);
        let control_task = control::serve(&config.control_socket, control_tx)?;
        let result = Self::start_dataplane(&config, opts.assume_healthy).await;
        let (dp, neigh, balancer, macs, mode) = match result {
            Ok(v) => v,
            Err(e) => {
                control_task.abort();
                control::remove_socket(&config.control_socket);
                return Err(e);
            }
        };
        let (health_tx, health_rx) = mpsc::channel(1024);
        let (scrape_tx, scrape_rx) = mpsc::channel(4);
        let mut daemon = Self {
            config_path: config_path.to_path_buf(),
            config,
            dp,
            balancer,
            neigh,
            macs,
            mode,
            started,
            control_rx,
            control_task,
            health_tx,
            health_rx,
            checkers: Vec::new(),
            generation: 0,
            samples: VecDeque::new(),
            metrics: Metrics::default(),
            scrape_rx,
            metrics_task: None,
            vrrp: None,
            tracked_down: false,
        };
        // From here on a failure undoes everything through `stop`.
        if let Some(addr) = daemon.config.metrics_listen {
            match metrics::serve(addr, scrape_tx).await {
                Ok(t) => daemon.metrics_task = Some(t),
                Err(source) => {
                    daemon.stop().await;
                    return Err(DaemonError::Metrics { addr, source });
                }
            }
        }
        if let Some(v) = daemon.config.vrrp.clone() {
            // VRRP starts once the balancer is attached: a host that becomes master must be
            // able to balance the first packet it attracts.
            let (ifindex, mac) = if v.interface == daemon.neigh.ifname {
                (daemon.neigh.ifindex, daemon.neigh.mac)
            } else {
                match Neighbours::open(&v.interface).await {
                    Ok(n) => (n.ifindex, n.mac),
                    Err(e) => {
                        daemon.stop().await;
                        return Err(e.into());
                    }
                }
            };
            match vrrp::io::start(v, daemon.neigh.handle().clone(), ifindex, mac).await {
                Ok(h) => daemon.vrrp = Some(h),
                Err(e) => {
                    daemon.stop().await;
                    return Err(e.into());
                }
            }
        }
        daemon.restart_checkers();
        info!(
            interface = %daemon.config.interface,
            mode = mode.as_str(),
            bpffs = %daemon.config.bpffs.display(),
            control_socket = %daemon.config.control_socket.display(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "fj-lb is balancing"
        );
        Ok(daemon)
    }

    async fn start_dataplane(
        config: &Config,
        assume_healthy: bool,
    ) -> Result<(Dataplane, Neighbours, Balancer, HashMap<IpAddr, Mac>, AttachedMode), DaemonError> {
        dataplane::ensure_bpffs(&config.bpffs)?;
        let neigh = Neighbours::open(&config.interface).await?;
        let mut dp = Dataplane::load(state::sizes(config))?;
        info!(program_id = dp.program_id(), "XDP program loaded and verified");
        let alt_mac = match &config.vrrp {
            Some(v) if v.use_virtual_mac => vrrp::io::virtual_mac(v.vrid, v.virtual_addresses.iter().any(|(a, _)| a.is_ipv6())),
            _ => [0; 6],
        };
        let mut flags = 0;
        if let Some(v) = config.vrrp.as_ref().filter(|v| !v.accept_mode && v.priority != 255) {
            let vips: Vec<IpAddr> = v.virtual_addresses.iter().map(|(a, _)| *a).collect();
            dp.set_not_accepted(&vips)?;
            flags |= fj_lb_common::SETTINGS_NOT_ACCEPTED;
            info!(?vips, "accept_mode = false: traffic to the virtual addresses other than services is dropped");
        }
        dp.write_settings(Settings { lb_mac: neigh.mac, alt_mac, hash_seed: config.hash_seed, flags })?;
        let mut balancer = Balancer::with_options(config, assume_healthy);
        let groups: Vec<Vec<IpAddr>> =
            config.services.iter().map(|s| s.backends.iter().map(|b| b.address).collect()).collect();
        let macs = resolve(&neigh, &groups).await?;
        let summary = balancer.apply(config, &macs, &mut dp)?;
        info!(services = ?summary.services_added, tables = summary.tables_written, "maps filled");
        let mode = dp.attach(&config.interface, config.xdp_mode, &config.bpffs)?;
        if let Err(e) = dp.pin_maps(&config.bpffs) {
            dp.detach();
            return Err(e.into());
        }
        Ok((dp, neigh, balancer, macs, mode))
    }

    /// Runs until SIGINT or SIGTERM; SIGHUP reloads the config.
    pub async fn run(mut self) -> Result<(), DaemonError> {
        let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
        let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;
        let mut hup = signal(SignalKind::hangup()).map_err(DaemonError::Signals)?;
        let mut tick = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                _ = term.recv() => { info!("SIGTERM: stopping"); break; }
                _ = int.recv() => { info!("SIGINT: stopping"); break; }
                _ = hup.recv() => {
                    let span = info_span!("reload", trigger = "SIGHUP", config = %self.config_path.display());
                    let _ = self.reload().instrument(span).await;
                }
                Some(result) = self.health_rx.recv() => self.on_health(result),
                Some(reply) = self.scrape_rx.recv() => self.scrape(reply),
                Some((req, reply)) = self.control_rx.recv() => {
                    let span = info_span!("control", request = ?req);
                    if let Request::Flows { service, backend, limit } = req {
                        // Walks the whole flow table: off the main loop, like the metrics count.
                        let _entered = span.enter();
                        self.flows(service, backend, limit.unwrap_or(100), reply);
                    } else {
                        let resp = self.handle(req).instrument(span).await;
                        let _ = reply.send(resp);
                    }
                }
                _ = tick.tick() => {
                    if let Err(e) = self.refresh_neighbours().await {
                        warn!(error = %e, "reading the neighbour table failed");
                    }
                    self.sample();
                    self.track();
                }
            }
        }
        self.stop().await;
        Ok(())
    }

    fn on_health(&mut self, r: CheckResult) {
        if r.generation != self.generation {
            return;
        }
        self.metrics
            .check_latency
            .get_or_create(&BackendLabels { service: r.service.clone(), backend: r.backend.to_string() })
            .observe(r.latency.as_secs_f64());
        let _span = info_span!("health", service = %r.service, backend = %r.backend).entered();
        let started = Instant::now();
        match self.balancer.health_result(&r.service, r.backend, &r.result, &mut self.dp) {
            Ok(Some(_)) => {
                self.count_update("health", started);
                self.track();
            }
            Ok(None) => {}
            Err(e) => error!(error = %e, "applying a health change to the maps failed"),
        }
    }

    /// Tells VRRP whether a tracked service has lost every healthy backend.
    fn track(&mut self) {
        let (Some(v), Some(cfg)) = (&self.vrrp, &self.config.vrrp) else { return };
        // Down = no healthy backend, once every backend had the chance to pass `rise` checks
        // (before that "down" only means "not checked yet").
        let down = cfg.track_services.iter().any(|name| {
            self.balancer.service(name).is_some_and(|st| {
                let settled = st.backends.iter().all(|b| b.health.checks >= st.config.health.rise || b.health.failures > 0);
                settled && !st.backends.iter().any(|b| st.healthy(b))
            })
        });
        if down != self.tracked_down {
            self.tracked_down = down;
            if v.commands.try_send(vrrp::io::Command::ServicesDown(down)).is_err() {
                warn!("VRRP did not take the tracking update");
            }
        }
    }

    fn vrrp_status(&self) -> Option<vrrp::io::VrrpStatus> {
        self.vrrp.as_ref().map(|v| v.status.borrow().clone())
    }

    fn count_update(&self, cause: &str, started: Instant) {
        count_update(&self.metrics, cause, started);
    }

    /// Answers a scrape. Counting the flow table walks up to millions of entries, so that
    /// part runs off the main loop, on the pinned map, and the rest is read here.
    fn scrape(&mut self, reply: ScrapeRequest) {
        let now = self.read_sample();
        let services = report::services(&self.balancer, &now, self.samples.front());
        let stats = self.dp.stats().map(|v| v.into_iter().map(|(s, n)| (s.name().to_string(), n)).collect()).unwrap_or_default();
        let vrrp_state = self.vrrp_status().map(|v| v.state.as_str().to_string());
        let (metrics, capacity) = (self.metrics.clone(), self.config.flow_table_size as u64);
        let flows_pin = self.config.bpffs.join(fj_lb_common::map_names::FLOWS);
        tokio::task::spawn_blocking(move || {
            let flow_entries = dataplane::count_entries(&flows_pin).unwrap_or(0);
            let text = metrics::render(
                &metrics,
                &metrics::Snapshot { services: &services, stats, flow_entries, flow_capacity: capacity, vrrp_state: vrrp_state.as_deref() },
            );
            let _ = reply.send(text);
        });
    }

    fn restart_checkers(&mut self) {
        for c in self.checkers.drain(..) {
            c.abort();
        }
        self.generation += 1;
        for st in self.balancer.services() {
            for b in &st.backends {
                if let Some(h) = health::spawn_checker(
                    self.generation,
                    st.config.name.clone(),
                    b.address,
                    st.config.health.clone(),
                    st.config.port,
                    self.health_tx.clone(),
                ) {
                    self.checkers.push(h);
                }
            }
        }
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
        let started = Instant::now();
        if self.balancer.update_macs(&self.macs, &mut self.dp)? > 0 {
            self.count_update("neighbour", started);
        }
        Ok(())
    }

    fn read_sample(&mut self) -> Sample {
        let mut s = Sample { at: self.started.elapsed(), ..Default::default() };
        let ids: Vec<(u32, Vec<u32>)> =
            self.balancer.services().map(|st| (st.id, st.backends.iter().map(|b| b.id).collect())).collect();
        for (sid, bids) in ids {
            if let Ok(c) = self.dp.service_counter(sid) {
                s.services.insert(sid, c);
            }
            for bid in bids {
                if let Ok(c) = self.dp.backend_counter(bid) {
                    s.backends.insert(bid, c);
                }
            }
        }
        s
    }

    fn sample(&mut self) {
        let s = self.read_sample();
        self.samples.push_back(s);
        while self.samples.len() > RATE_WINDOW {
            self.samples.pop_front();
        }
    }

    /// Re-reads the config and applies the difference. A config that fails validation, or
    /// changes what only a restart can, is refused whole and the running config stays.
    pub async fn reload(&mut self) -> Result<String, String> {
        let new = match config::load(&self.config_path, &LiveHost) {
            Ok(c) => c,
            Err(e) => {
                error!("reload refused, the running config stays in force: {e}");
                return Err(format!("reload refused, the running config stays in force: {e}"));
            }
        };
        let fresh: Vec<IpAddr> = new
            .services
            .iter()
            .flat_map(|s| s.backends.iter().map(|b| b.address))
            .filter(|a| !self.macs.contains_key(a))
            .collect();
        match resolve(&self.neigh, &[fresh]).await {
            Ok(m) => self.macs.extend(m),
            Err(e) => warn!(error = %e, "reading the neighbour table failed"),
        }
        let started = Instant::now();
        match self.balancer.apply(&new, &self.macs, &mut self.dp) {
            Ok(s) => {
                self.count_update("reload", started);
                let msg = format!(
                    "config reloaded: added {:?}, removed {:?}, changed {:?}, {} tables written",
                    s.services_added, s.services_removed, s.services_changed, s.tables_written
                );
                info!("{msg}");
                self.config = new;
                self.restart_checkers();
                self.track();
                Ok(msg)
            }
            Err(e @ ApplyError::NeedsRestart { .. }) => {
                error!("reload refused, the running config stays in force: {e}");
                Err(format!("reload refused, the running config stays in force: {e}"))
            }
            Err(e) => {
                error!("reload failed part-way: {e}");
                Err(format!("reload failed part-way: {e}"))
            }
        }
    }

    async fn handle(&mut self, req: Request) -> Response {
        let started = Instant::now();
        let metrics = self.metrics.clone();
        let set = |r: Result<(), state::OpErrorOr>| match r {
            Ok(()) => {
                count_update(&metrics, "operator", started);
                Response::ok(serde_json::Value::Null)
            }
            Err(e) => Response::err(e),
        };
        match req {
            Request::Drain { service, backend } => set(self.balancer.set_weight(&service, &backend, Some(0), &mut self.dp)),
            Request::Weight { service, backend, weight } => {
                set(self.balancer.set_weight(&service, &backend, Some(weight), &mut self.dp))
            }
            Request::Enable { service, backend } => set(self.balancer.set_weight(&service, &backend, None, &mut self.dp)),
            Request::Reload {} => match self.reload().await {
                Ok(msg) => Response::ok(json!({ "message": msg })),
                Err(msg) => Response::err(msg),
            },
            Request::Status {} => {
                let now = self.read_sample();
                let services = report::services(&self.balancer, &now, self.samples.front());
                let status = report::Status {
                    interface: self.config.interface.clone(),
                    xdp_mode: self.mode.as_str().into(),
                    program_id: self.dp.program_id(),
                    uptime_s: self.started.elapsed().as_secs(),
                    config: self.config_path.display().to_string(),
                    vrrp: self.vrrp_status().map(|v| serde_json::to_value(v).expect("serialises")),
                    services,
                };
                Response::ok(serde_json::to_value(status).expect("status serialises"))
            }
            Request::Maglev { service } => match self.balancer.service(&service) {
                Some(st) => Response::ok(serde_json::to_value(report::maglev(st)).expect("serialises")),
                None => Response::err(format!("no service named {service:?}")),
            },
            Request::Stats {} => match self.dp.stats() {
                Ok(stats) => {
                    let m: serde_json::Map<String, serde_json::Value> =
                        stats.into_iter().map(|(s, v)| (s.name().to_string(), json!(v))).collect();
                    Response::ok(serde_json::Value::Object(m))
                }
                Err(e) => Response::err(e),
            },
            Request::Flows { .. } => unreachable!("flows are answered off the main loop, in run()"),
            Request::Lookup { src, dst, protocol } => self.lookup(&src, &dst, &protocol),
        }
    }

    fn flows(&mut self, service: Option<String>, backend: Option<String>, limit: usize, reply: oneshot::Sender<Response>) {
        let names = report::Names::of(&self.balancer);
        if let Some(s) = &service
            && !names.has_service(s)
        {
            let _ = reply.send(Response::err(format!("no service named {s:?}")));
            return;
        }
        let backend_ip: Option<IpAddr> = match backend.as_deref().map(str::parse) {
            None => None,
            Some(Ok(ip)) => Some(ip),
            Some(Err(_)) => {
                let _ = reply.send(Response::err(format!("{:?} is not an IP address", backend.unwrap_or_default())));
                return;
            }
        };
        let capacity = self.config.flow_table_size;
        let pin = self.config.bpffs.join(fj_lb_common::map_names::FLOWS);
        tokio::task::spawn_blocking(move || {
            let resp = match dataplane::read_flows(&pin) {
                Ok(entries) => {
                    let total = entries.len();
                    let flows: Vec<report::FlowReport> = entries
                        .iter()
                        .map(|(k, v)| report::flow(&names, k, v.backend, v.service))
                        .filter(|f| service.as_ref().is_none_or(|s| f.service.as_ref() == Some(s)))
                        .filter(|f| backend_ip.is_none_or(|b| f.backend == Some(b)))
                        .take(limit)
                        .collect();
                    Response::ok(json!({ "total_entries": total, "capacity": capacity, "flows": flows }))
                }
                Err(e) => Response::err(format!("reading the flow table: {e}")),
            };
            let _ = reply.send(resp);
        });
    }

    fn lookup(&mut self, src: &str, dst: &str, protocol: &str) -> Response {
        let proto = match protocol {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            other => return Response::err(format!("{other:?} is not tcp or udp")),
        };
        let key = match report::parse_endpoint(src)
            .and_then(|s| report::parse_endpoint(dst).map(|d| (s, d)))
            .and_then(|(s, d)| report::flow_key(s, d, proto))
        {
            Ok(k) => k,
            Err(e) => return Response::err(e),
        };
        let pinned = self.dp.flows().get(&key, 0).ok().map(|v| (v.backend, v.service));
        match report::lookup(&self.balancer, &key, pinned, self.config.hash_seed) {
            Ok(r) => Response::ok(serde_json::to_value(r).expect("serialises")),
            Err(e) => Response::err(e),
        }
    }

    async fn stop(mut self) {
        if let Some(v) = self.vrrp.take() {
            // Priority 0 first, so a backup takes over within its skew time, then the VIP goes.
            let (tx, rx) = tokio::sync::oneshot::channel();
            if v.commands.send(vrrp::io::Command::Shutdown(tx)).await.is_ok() {
                let _ = tokio::time::timeout(Duration::from_secs(5), rx).await;
            }
            v.task.abort();
        }
        for c in self.checkers.drain(..) {
            c.abort();
        }
        self.control_task.abort();
        if let Some(t) = self.metrics_task.take() {
            t.abort();
        }
        control::remove_socket(&self.config.control_socket);
        self.dp.detach();
        dataplane::unpin_maps(&self.config.bpffs);
        info!(interface = %self.config.interface, "XDP detached, pins and control socket removed; fj-lb stopped");
    }
}

fn count_update(metrics: &Metrics, cause: &str, started: Instant) {
    let l = CauseLabels { cause: cause.into() };
    metrics.map_updates.get_or_create(&l).inc();
    metrics.map_update_seconds.get_or_create(&l).observe(started.elapsed().as_secs_f64());
}

/// Solicits the addresses not yet in the neighbour table and waits, bounded, for them: up to
/// RESOLVE_WAIT while some group (a service's backends) has no MAC at all, RESOLVE_SOME once
/// every group has one (the rest join within a tick, and start-up is not held up by one dead
/// backend).
async fn resolve(neigh: &Neighbours, groups: &[Vec<IpAddr>]) -> Result<HashMap<IpAddr, Mac>, NeighError> {
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
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
