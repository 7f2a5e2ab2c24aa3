//! Shutdown: the announced routes go first, VRRP hands over (priority 0, then the VIPs go),
//! then checkers, sockets, XDP and the pins. A clean stop leaves nothing behind.
use std::time::Duration;

use tracing::{info, warn};

use super::Daemon;
use crate::{control, datapath};

/// How long VRRP may take to say priority 0, release its addresses and run its stop scripts.
const VRRP_SHUTDOWN: Duration = Duration::from_secs(5);

impl Daemon {
    /// What every way of stopping does: systemd told, VRRP handed to the peer, checkers,
    /// control socket and metrics listener gone.
    async fn stop_serving(&mut self) {
        super::systemd::stopping();
        // First, so that a program left attached for the next daemon stops tracing.
        self.stop_trace();
        if let Some(v) = self.vrrp.take() {
            v.shutdown(VRRP_SHUTDOWN).await;
        }
        self.checkers.stop();
        self.control_task.abort();
        if let Some(t) = self.metrics_task.take() {
            t.abort();
        }
        control::remove_socket(&self.config.control_socket);
    }

    /// Exits for an upgrade or a restart without a gap: XDP stays attached with its pinned maps
    /// (the flow table and the ids the next daemon adopts), and announced routes stay, so
    /// traffic keeps flowing until the next daemon swaps its program in. VRRP still hands the
    /// VIP to its peer (priority 0), since no one here answers for it meanwhile.
    pub(super) async fn hand_over(mut self) {
        self.stop_serving().await;
        if self.dp.keep_for_next() {
            info!(interface = %self.config.interface, bpffs = %self.config.bpffs.display(), "XDP left attached with its pinned maps for the next fj-lb; stopped");
        } else {
            warn!(interface = %self.config.interface, "the XDP link is not pinned, so it goes with this process: the next fj-lb attaches afresh");
        }
    }

    pub(super) async fn stop(mut self) {
        // Withdrawn first, while XDP still forwards: the routers move flows to the other hosts
        // before this one stops taking them.
        self.withdraw_all().await;
        self.stop_serving().await;
        self.dp.detach();
        datapath::unpin_maps(&self.config.bpffs);
        info!(interface = %self.config.interface, "XDP detached, pins and control socket removed; fj-lb stopped");
    }
}
