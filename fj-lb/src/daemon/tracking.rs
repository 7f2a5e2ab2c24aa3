//! Health results into the balancer, and the balancer's state into VRRP and `[announce]`: a
//! host whose tracked service has no healthy backend lowers its priority so the peer can take
//! over, and one whose VIP has none withdraws the VIP's route.
use std::time::{Instant, SystemTime};

use fj_lb_common::Settings;
use tracing::{error, info, info_span, warn};

use super::{Daemon, sampling::count_update};
use crate::{health::CheckResult, model::health::LastCheck, report::metrics::BackendLabels, vrrp};

impl Daemon {
    pub(super) async fn on_health(&mut self, r: CheckResult) {
        if !self.checkers.is_current(&r) {
            return;
        }
        self.metrics
            .check_latency
            .get_or_create(&BackendLabels { service: r.service.clone(), backend: r.backend.to_string() })
            .observe(r.latency.as_secs_f64());
        // Stamped on arrival: results are handled as they come, within a tick of their end.
        let last = LastCheck { at: SystemTime::now(), took: r.latency };
        self.balancer.note_check(&r.service, r.backend, last);
        let _span = info_span!("health", service = %r.service, backend = %r.backend).entered();
        let started = Instant::now();
        match self.balancer.health_result(&r.service, r.backend, &r.result, &mut self.dp) {
            Ok(Some(_)) => {
                count_update(&self.metrics, "health", started);
                self.track();
                self.announce().await;
            }
            Ok(None) => {}
            Err(e) => error!(error = %e, "applying a health change to the maps failed"),
        }
    }

    /// The data path accepts frames for the VRRP virtual MAC only while this host is master: a
    /// switch that floods them reaches the backup too, which must not forward them as well.
    pub(super) fn on_vrrp(&mut self) {
        let Some(i) = self.config.vrrp.iter().position(|v| v.use_virtual_mac) else { return };
        let Some(v) = self.vrrp.as_ref().and_then(|set| set.instances.get(i)) else { return };
        let cfg = &self.config.vrrp[i];
        let master = v.status.borrow().state == vrrp::machine::State::Master;
        let alt_mac = if master { vrrp::virtual_mac(cfg.vrid, cfg.is_ipv6()) } else { [0; 6] };
        if alt_mac != self.settings.alt_mac {
            let settings = Settings { alt_mac, ..self.settings };
            match self.dp.write_settings(settings) {
                Ok(()) => {
                    self.settings = settings;
                    info!(master, "virtual MAC {} by the data path", if master { "accepted" } else { "no longer accepted" });
                }
                Err(e) => error!(error = %e, "updating the data path's virtual MAC failed"),
            }
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

/// The instance that carries the virtual MAC, if any (a free function: the event loop borrows
/// the daemon's other fields at the same time).
pub(super) fn vmac_instance<'a>(config: &crate::model::config::Config, set: Option<&'a mut vrrp::VrrpSet>) -> Option<&'a mut vrrp::Vrrp> {
    let i = config.vrrp.iter().position(|v| v.use_virtual_mac)?;
    set?.instances.get_mut(i)
}
