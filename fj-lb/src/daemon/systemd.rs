//! systemd's readiness protocol (sd_notify(3)) for `Type=notify`: READY=1 once XDP is attached
//! and the maps are filled, RELOADING=1 then READY=1 around a reload, STOPPING=1 on the way
//! out, and WATCHDOG=1 from the event loop itself when the unit sets `WatchdogSec=` — so a
//! loop that hangs stops the pings and systemd restarts the daemon (the data path keeps
//! forwarding meanwhile: its link is pinned). Not under systemd ($NOTIFY_SOCKET unset) every
//! call does nothing.
use std::time::Duration;

use sd_notify::NotifyState;
use tracing::{info, warn};

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        warn!(error = %e, socket = ?std::env::var_os("NOTIFY_SOCKET"), "telling systemd our state failed");
    }
}

/// Start-up or a reload is done; `status` is what `systemctl status` shows.
pub(super) fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A reload begins. systemd wants the monotonic time with it (systemd.service(5),
/// Type=notify-reload); older managers ignore the field.
pub(super) fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(e) => {
            warn!(error = %e, "reading CLOCK_MONOTONIC failed");
            send(&[NotifyState::Reloading]);
        }
    }
}

pub(super) fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping: handing VRRP over, detaching XDP")]);
}

/// The watchdog, if the unit asked for one: due every half of `WatchdogSec=`, as
/// sd_watchdog_enabled(3) advises.
pub(super) struct Watchdog {
    every: Option<tokio::time::Interval>,
}

impl Watchdog {
    pub(super) fn from_env() -> Self {
        let every = sd_notify::watchdog_enabled().filter(|d| !d.is_zero()).map(|timeout| {
            let half = (timeout / 2).max(Duration::from_millis(1));
            info!(timeout_ms = timeout.as_millis() as u64, ping_every_ms = half.as_millis() as u64, "systemd watchdog on");
            let mut i = tokio::time::interval(half);
            i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            i
        });
        Self { every }
    }

    /// Resolves when a ping is due; never, without a watchdog.
    pub(super) async fn due(&mut self) {
        match &mut self.every {
            Some(i) => {
                i.tick().await;
            }
            None => std::future::pending().await,
        }
    }

    pub(super) fn ping(&self) {
        send(&[NotifyState::Watchdog]);
    }
}
