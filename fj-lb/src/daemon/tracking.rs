//! Health results into the balancer, and the balancer's state into VRRP: a host whose tracked
//! service has no healthy backend lowers its priority so the peer can take over.
use std::time::Instant;

use tracing::{error, info_span, warn};

use super::{Daemon, sampling::count_update};
use crate::{health::CheckResult, report::metrics::BackendLabels, vrrp};

impl Daemon {
    pub(super) fn on_health(&mut self, r: CheckResult) {
        if !self.checkers.is_current(&r) {
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
                count_update(&self.metrics, "health", started);
                self.track();
            }
            Ok(None) => {}
            Err(e) => error!(error = %e, "applying a health change to the maps failed"),
        }
    }

    /// Tells each VRRP instance when the answer to "has one of its tracked services lost
    /// every healthy backend?" changes, and when their checks have settled.
    pub(super) fn track(&mut self) {
        let Some(set) = &self.vrrp else { return };
        for (i, (v, cfg)) in set.instances.iter().zip(&self.config.vrrp).enumerate() {
            let down = self.balancer.any_service_down(&cfg.track_services);
            if down != self.tracked_down[i] {
                if v.commands.try_send(vrrp::Command::ServicesDown(down)).is_ok() {
                    self.tracked_down[i] = down;
                } else {
                    warn!(instance = %cfg.name, "VRRP did not take the tracking update");
                }
            }
            let settled = self.balancer.services_settled(&cfg.track_services);
            if Some(settled) != self.told_settled[i] {
                if v.commands.try_send(vrrp::Command::HealthSettled(settled)).is_ok() {
                    self.told_settled[i] = Some(settled);
                } else {
                    warn!(instance = %cfg.name, "VRRP did not take the health-settled update");
                }
            }
        }
    }
}
