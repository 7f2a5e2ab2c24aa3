//! Running notify scripts off the VRRP task: one queue per instance (or sync group), worked
//! through in order by its own task, each script bounded by the timeout and killed past it.
//! The state machine only enqueues, so a slow or hung script never delays an advert; and a
//! transition is enqueued exactly once, so its scripts run once.
use std::{process::Stdio, time::Duration};

use tokio::{process::Command, sync::mpsc, task::JoinHandle};
use tracing::{error, info, warn};

pub(super) struct Notifier {
    tx: Option<mpsc::UnboundedSender<Vec<Vec<String>>>>,
    task: Option<JoinHandle<()>>,
}

impl Notifier {
    /// `owner` names the instance or group in the logs.
    pub(super) fn start(owner: String, timeout: Duration) -> Notifier {
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<Vec<String>>>();
        let task = tokio::spawn(async move {
            while let Some(batch) = rx.recv().await {
                for argv in batch {
                    run_one(&owner, &argv, timeout).await;
                }
            }
        });
        Notifier { tx: Some(tx), task: Some(task) }
    }

    /// Queues the scripts of one transition; returns at once.
    pub(super) fn run(&self, commands: Vec<Vec<String>>) {
        if commands.is_empty() {
            return;
        }
        if let Some(tx) = &self.tx
            && tx.send(commands).is_err()
        {
            error!("the notify queue is gone: scripts not run");
        }
    }

    /// Lets the queued scripts finish (the stop's among them), for at most `bound`.
    pub(super) async fn finish(&mut self, bound: Duration) {
        self.tx = None;
        if let Some(mut t) = self.task.take()
            && tokio::time::timeout(bound, &mut t).await.is_err()
        {
            warn!(bound_ms = bound.as_millis() as u64, "notify scripts still running at stop: abandoned");
            t.abort();
        }
    }
}

async fn run_one(owner: &str, argv: &[String], timeout: Duration) {
    let script = argv.join(" ");
    let child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A script that outlives its timeout is killed when its future is dropped.
        .kill_on_drop(true)
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) => return error!(instance = owner, script, error = %e, "notify script could not be started"),
    };
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Err(_) => warn!(instance = owner, script, timeout_ms = timeout.as_millis() as u64, "notify script timed out and was killed"),
        Ok(Err(e)) => error!(instance = owner, script, error = %e, "waiting for the notify script failed"),
        Ok(Ok(out)) => {
            for (stream, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
                for line in String::from_utf8_lossy(bytes).lines().filter(|l| !l.trim().is_empty()) {
                    info!(instance = owner, script, stream, line, "notify script output");
                }
            }
            if out.status.success() {
                info!(instance = owner, script, "notify script ran");
            } else {
                warn!(instance = owner, script, status = %out.status, "notify script failed");
            }
        }
    }
}
