//! `fj-lb run`: start-up (`start`), the loop that turns each event into its handler (`run`),
//! and shutdown (`stop`). The daemon owns all state; everything else reaches it through
//! channels. Depends on every other room; nothing depends on it but the binary.
mod announcing;
mod checkers;
mod control;
mod flow_walks;
mod neighbours;
mod reload;
mod sampling;
mod start;
mod stop;
mod systemd;
mod trace;
mod tracking;

use std::{
    collections::{HashMap, HashSet, VecDeque},
    net::IpAddr,
    path::PathBuf,
    time::{Duration, Instant},
};

use fj_lb_common::Settings;
use tokio::{
    signal::unix::{Signal, SignalKind, signal},
    sync::mpsc,
    task::JoinHandle,
};
use tracing::{Instrument, info, info_span, warn};

pub use reload::ReloadError;

use crate::{
    control::{ControlError, Pending},
    datapath::{AttachedMode, BpffsLock, Dataplane, DataplaneError},
    health::CheckResult,
    model::{
        addr::Mac,
        balancer::{ApplyError, Balancer, NextHop},
        config::{Config, ConfigError},
    },
    net::{NeighError, Neighbours},
    report::{metrics::Metrics, serve::ScrapeRequest},
    vrrp,
};

/// How often the neighbour table is read and counters are sampled.
const TICK: Duration = Duration::from_secs(1);

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
    Vrrp(#[from] vrrp::VrrpError),
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
    /// Layer-3 backends' next hops, as last resolved.
    hops: HashMap<IpAddr, NextHop>,
    /// Layer-3 backends already warned about (no route, another interface).
    route_warned: HashSet<IpAddr>,
    mode: AttachedMode,
    started: Instant,
    control_rx: mpsc::Receiver<Pending>,
    control_task: JoinHandle<()>,
    checkers: checkers::Checkers,
    samples: VecDeque<sampling::Sample>,
    metrics: Metrics,
    scrape_rx: mpsc::Receiver<ScrapeRequest>,
    metrics_task: Option<JoinHandle<()>>,
    /// The VRRP instances, when configured.
    vrrp: Option<vrrp::VrrpSet>,
    /// `[announce]`: the host routes this daemon keeps and why.
    announcing: announcing::Announcing,
    /// What each instance was last told about its tracked services.
    tracked_down: Vec<bool>,
    told_settled: Vec<Option<bool>>,
    /// Installed before start-up begins, so a SIGHUP or SIGTERM during start-up waits for the
    /// loop instead of killing a half-started daemon.
    signals: Signals,
    /// systemd's watchdog, pinged from this loop (see `systemd`).
    watchdog: systemd::Watchdog,
    /// This daemon's claim on its bpffs directory.
    _bpffs_lock: BpffsLock,
    flow_walks: flow_walks::FlowWalks,
    /// The settings as last written to the data path.
    settings: Settings,
    /// Flood mode: the skipped-insert counter at the last tick, and whether it is on.
    flood: (u64, bool),
    /// `fj-lb trace`: the one running, if any.
    trace: trace::Tracing,
}

struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
    /// SIGQUIT: exit, leaving the data path to the next daemon (an upgrade without a gap).
    quit: Signal,
}

impl Signals {
    fn install() -> Result<Self, DaemonError> {
        let on = |kind| signal(kind).map_err(DaemonError::Signals);
        Ok(Self {
            term: on(SignalKind::terminate())?,
            int: on(SignalKind::interrupt())?,
            hup: on(SignalKind::hangup())?,
            quit: on(SignalKind::quit())?,
        })
    }
}

/// What can happen to a running daemon; `run` waits for one and hands it to its handler.
enum Event {
    Stop(&'static str),
    /// Stop, but leave XDP attached with its pinned maps (and announced routes) for the next
    /// daemon, which adopts them.
    HandOver,
    Reload,
    Health(CheckResult),
    Scrape(ScrapeRequest),
    Control(Pending),
    /// Trace N ended (its count reached, its client gone).
    TraceDone(u64),
    /// The VRRP instance's status changed (a transition, an advert).
    Vrrp,
    Tick,
    Watchdog,
}

/// The instance with the virtual MAC (the config allows one) changed its status: the data
/// path follows whether it is master.
async fn vrrp_changed(v: Option<&mut vrrp::Vrrp>) -> bool {
    match v {
        Some(v) => v.status.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

impl Daemon {
    /// Runs until SIGINT or SIGTERM (a clean stop: XDP detached, pins removed) or SIGQUIT (a
    /// hand-over: XDP keeps forwarding for the next daemon); SIGHUP reloads the config.
    pub async fn run(mut self) -> Result<(), DaemonError> {
        let mut tick = tokio::time::interval(TICK);
        loop {
            let event = tokio::select! {
                _ = self.signals.term.recv() => Event::Stop("SIGTERM"),
                _ = self.signals.int.recv() => Event::Stop("SIGINT"),
                _ = self.signals.hup.recv() => Event::Reload,
                _ = self.signals.quit.recv() => Event::HandOver,
                Some(result) = self.checkers.rx.recv() => Event::Health(result),
                Some(reply) = self.scrape_rx.recv() => Event::Scrape(reply),
                Some(pending) = self.control_rx.recv() => Event::Control(pending),
                Some(n) = self.trace.done_rx.recv() => Event::TraceDone(n),
                true = vrrp_changed(tracking::vmac_instance(&self.config, self.vrrp.as_mut())) => Event::Vrrp,
                _ = tick.tick() => Event::Tick,
                _ = self.watchdog.due() => Event::Watchdog,
            };
            match event {
                Event::Stop(signal) => {
                    info!(signal, "stopping");
                    break;
                }
                Event::HandOver => {
                    info!(signal = "SIGQUIT", "handing over to the next fj-lb");
                    self.hand_over().await;
                    return Ok(());
                }
                Event::Reload => {
                    let span = info_span!("reload", trigger = "SIGHUP", config = %self.config_path.display());
                    let _ = self.reload().instrument(span).await;
                }
                Event::Health(result) => self.on_health(result).await,
                Event::Scrape(reply) => self.on_scrape(reply),
                Event::Control((req, reply, stream)) => {
                    let span = info_span!("control", request = ?req);
                    self.on_control(req, reply, stream).instrument(span).await;
                }
                Event::TraceDone(n) => self.on_trace_done(n),
                Event::Vrrp => self.on_vrrp(),
                Event::Tick => self.on_tick().await,
                Event::Watchdog => self.watchdog.ping(),
            }
        }
        self.stop().await;
        Ok(())
    }

    /// Once a second: re-read the neighbour table, sample the counters, re-check tracking and
    /// what to announce.
    async fn on_tick(&mut self) {
        if let Err(e) = self.refresh_neighbours().await {
            warn!(error = %e, "reading the neighbour table failed");
        }
        self.sample();
        self.track();
        self.watch_flood();
        self.announce_tick().await;
    }
}
