//! Shutdown: the announced routes go first, VRRP hands over (priority 0, then the VIPs go),
//! then checkers, sockets, XDP and the pins. A clean stop leaves nothing behind.
use std::time::Duration;

use tracing::info;

use super::Daemon;
use crate::{control, datapath};

/// How long VRRP may take to say priority 0, release its addresses and run its stop scripts.
const VRRP_SHUTDOWN: Duration = Duration::from_secs(5);

impl Daemon {
    pub(super) async fn stop(mut self) {
        // Withdrawn first, while XDP still forwards: the routers move flows to the other hosts
        // before this one stops taking them.
        self.withdraw_all().await;
        super::systemd::stopping();
        if let Some(v) = self.vrrp.take() {
            v.shutdown(VRRP_SHUTDOWN).await;
        }
        self.checkers.stop();
        self.control_task.abort();
        if let Some(t) = self.metrics_task.take() {
            t.abort();
        }
        control::remove_socket(&self.config.control_socket);
        self.dp.detach();
        datapath::unpin_maps(&self.config.bpffs);
        info!(interface = %self.config.interface, "XDP detached, pins and control socket removed; fj-lb stopped");
    }
}
