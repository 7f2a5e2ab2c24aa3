//! `[announce]` in the daemon: after every change that can change whether this host can serve
//! a VIP (health, MACs, reload, start, stop), decide again (`model::announce`) and bring the
//! announce table there (`crate::announce`). A crash leaves the routes where they are (the
//! pinned XDP link keeps forwarding); the next daemon adopts them at start.
use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use tracing::{info, warn};

use super::Daemon;
use crate::{
    announce::Routes,
    model::announce::{self, Decision, Route, Verdict},
    report::status::{AnnounceStatus, VipAnnounce},
};

/// How often the table is read back, so a route removed from outside (`ip route flush table
/// 100`) is put back. Not every tick: a dump walks every route of the host.
const VERIFY_EVERY: Duration = Duration::from_secs(10);

/// How long a clean stop keeps forwarding after withdrawing: the speaker tells the routers in
/// milliseconds, and flows they still send here meanwhile are balanced rather than dropped.
const WITHDRAW_GRACE: Duration = Duration::from_millis(500);

pub(super) struct Announcing {
    routes: Routes,
    /// Our routes as the kernel holds them (as far as our own changes and the last read tell).
    installed: BTreeSet<Route>,
    decisions: Vec<Decision>,
    verified: Instant,
}

impl Announcing {
    pub(super) fn new(handle: rtnetlink::Handle) -> Self {
        Self { routes: Routes::new(handle), installed: BTreeSet::new(), decisions: Vec::new(), verified: Instant::now() }
    }
}

impl Daemon {
    /// At start: take over the routes a previous daemon left in the table (it crashed, or was
    /// killed: its pinned XDP link kept forwarding), then decide.
    pub(super) async fn adopt_routes(&mut self) {
        let Some(cfg) = &self.config.announce else { return };
        match self.announcing.routes.ours(cfg.table).await {
            Ok(found) => {
                if !found.is_empty() {
                    info!(table = cfg.table, routes = ?found.iter().map(|r| r.vip).collect::<Vec<_>>(), "adopting the announce routes a previous daemon left");
                }
                self.announcing.installed = found;
            }
            Err(e) => warn!(table = cfg.table, error = %e, "reading the announce table failed; starting from an empty one"),
        }
        self.announcing.verified = Instant::now();
        self.announce().await;
    }

    /// Decides every announced VIP again and changes the table to match.
    pub(super) async fn announce(&mut self) {
        // The daemon runs only with XDP attached: start attaches before the loop, and stop
        // withdraws (`withdraw_all`) before it detaches.
        self.announce_with(true).await;
    }

    async fn announce_with(&mut self, xdp_attached: bool) {
        let a = &mut self.announcing;
        let (decisions, wanted) = match &self.config.announce {
            Some(cfg) => {
                let d = announce::decide(cfg, xdp_attached, &announce::service_health(&self.balancer));
                let w = announce::wanted(&a.installed, cfg.table, &d);
                (d, w)
            }
            // `[announce]` gone in a reload: every route of ours goes.
            None => (Vec::new(), BTreeSet::new()),
        };
        for d in &decisions {
            if a.decisions.iter().find(|o| o.vip == d.vip).is_none_or(|o| o.verdict != d.verdict) {
                info!(vip = %d.vip, verdict = ?d.verdict, reason = %d.reason, "announce decision");
            }
        }
        a.decisions = decisions;
        let plan = announce::plan(&a.installed, &wanted);
        if !plan.is_empty() {
            a.routes.apply(&mut a.installed, &plan).await;
        }
    }

    /// Once a tick: read the table back every VERIFY_EVERY, then decide again (a backend's MAC
    /// may have come or gone, a failed change is retried).
    pub(super) async fn announce_tick(&mut self) {
        if let Some(cfg) = &self.config.announce
            && self.announcing.verified.elapsed() >= VERIFY_EVERY
        {
            self.announcing.verified = Instant::now();
            match self.announcing.routes.ours(cfg.table).await {
                Ok(found) => {
                    let table = cfg.table;
                    let ours: BTreeSet<Route> = self.announcing.installed.iter().filter(|r| r.table == table).copied().collect();
                    for gone in ours.difference(&found) {
                        warn!(vip = %gone.vip, table, "the announce route was removed from outside fj-lb; adding it back if still wanted");
                    }
                    self.announcing.installed.retain(|r| r.table != table);
                    self.announcing.installed.extend(found);
                }
                Err(e) => warn!(table = cfg.table, error = %e, "reading the announce table back failed"),
            }
        }
        self.announce().await;
    }

    /// At a clean stop: every route goes, then a short grace while the routers move the flows
    /// away and XDP still forwards what arrives.
    pub(super) async fn withdraw_all(&mut self) {
        if self.announcing.installed.is_empty() {
            return;
        }
        self.announce_with(false).await;
        // Routes of a VIP no longer decided on (none configured) go too.
        let rest = announce::plan(&self.announcing.installed, &BTreeSet::new());
        let a = &mut self.announcing;
        a.routes.apply(&mut a.installed, &rest).await;
        tokio::time::sleep(WITHDRAW_GRACE).await;
    }

    pub(super) fn announce_status(&self) -> Option<AnnounceStatus> {
        let cfg = self.config.announce.as_ref()?;
        let a = &self.announcing;
        let vips = a
            .decisions
            .iter()
            .map(|d| {
                let announced = a.installed.contains(&Route { table: cfg.table, vip: d.vip });
                let disagrees = match d.verdict {
                    Verdict::Announce => !announced,
                    Verdict::Withdraw => announced,
                    Verdict::Keep => false,
                };
                let reason = if disagrees { format!("{}; changing the route failed, retried every second", d.reason) } else { d.reason.clone() };
                VipAnnounce { vip: d.vip, announced, reason }
            })
            .collect();
        Some(AnnounceStatus { table: cfg.table, when: cfg.when.as_str().into(), vips })
    }
}
