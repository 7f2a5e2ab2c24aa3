//! Shutdown: the announced routes go first, VRRP hands over (priority 0, then the VIPs go),
//! then checkers, sockets, XDP and the pins. A clean stop leaves nothing behind.
use std::time::Duration;

use tracing::info;

use super::Daemon;
use crate::{control, datapath, vrrp};

/// How long VRRP may take to say priority 0 and release its addresses.
const VRRP_SHUTDOWN: Duration = Duration::from_secs(5);

impl Daemon {
    pub(super) async fn stop(mut self) {
        // Withdrawn first, while XDP still forwards: the routers move flows to the other hosts
        // before this one stops taking them.
        self.withdraw_all().await;
        super::systemd::stopping();
        if let Some(v) = self.vrrp.take() {
            let (tx, rx) = tokio::sync::oneshot::channel();
            if v.commands.send(vrrp::Command::Shutdown(tx)).await.is_ok() {
                let _ = tokio::time::timeout(VRRP_SHUTDOWN, rx).await;
            }
            v.task.abort();
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
