//! The task of one sync group: it hears every change of its members, passes what `sync`
//! decides back to them as commands, and runs the group's notify scripts (type `GROUP`) when
//! the group as a whole changes state, and `STOP` when the daemon stops.
use std::time::Duration;

use tokio::{sync::mpsc, task::JoinHandle};
use tracing::{Instrument, info, warn};

use super::{
    hooks::{self, Kind},
    machine::State,
    notify::Notifier,
    runner::Command,
    sync::{Member, SyncGroup},
};
use crate::model::config::SyncGroupConfig;

/// One member's change, as it reports it.
pub(super) struct Report {
    pub(super) member: usize,
    pub(super) now: Member,
    pub(super) ordered: bool,
}

/// How a member reaches its group: its place in it, and the channel. Unbounded, so that a
/// member never waits on its group (the group waits on nobody either: see `spawn`).
pub(super) struct GroupLink {
    pub(super) member: usize,
    pub(super) tx: mpsc::UnboundedSender<Report>,
}

/// Runs until every member has stopped (dropped its sender).
pub(super) fn spawn(cfg: SyncGroupConfig, members: Vec<mpsc::Sender<Command>>, mut rx: mpsc::UnboundedReceiver<Report>) -> JoinHandle<()> {
    let span = tracing::info_span!("vrrp_sync_group", group = %cfg.name);
    tokio::spawn(
        async move {
            let mut group = SyncGroup::new(members.len());
            let mut notifier = Notifier::start(cfg.name.clone(), Duration::from_millis(cfg.notify.timeout_ms));
            info!(instances = ?cfg.instances, "sync group starting");
            while let Some(r) = rx.recv().await {
                for (j, order) in group.report(r.member, r.now, r.ordered) {
                    // try_send: a member's queue is only full while it is busy stopping; an
                    // order that would wait for it is of no use by then.
                    if members[j].try_send(Command::Sync(order)).is_err() {
                        warn!(member = %cfg.instances[j], ?order, "a member did not take the group's order");
                    }
                }
                if let Some(state) = group.changed() {
                    info!(state = state.as_str(), "sync group state");
                    notifier.run(hooks::commands(&cfg.notify, Kind::Group, &cfg.name, state, 0));
                }
            }
            if group.ever_notified() {
                notifier.run(hooks::commands(&cfg.notify, Kind::Group, &cfg.name, State::Initialize, 0));
            }
            notifier.finish(Duration::from_millis(cfg.notify.timeout_ms)).await;
        }
        .instrument(span),
    )
}
