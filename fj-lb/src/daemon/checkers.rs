//! The health checkers the daemon runs: one task per backend, all restarted together under a
//! new generation when the config changes, so late results of the old ones are ignored.
use tokio::{sync::mpsc, task::JoinHandle};

use crate::{
    health::{self, CheckResult},
    model::balancer::Balancer,
};

/// Results waiting for the loop, at most.
const RESULTS_QUEUE: usize = 1024;

pub(super) struct Checkers {
    tx: mpsc::Sender<CheckResult>,
    pub(super) rx: mpsc::Receiver<CheckResult>,
    tasks: Vec<JoinHandle<()>>,
    generation: u64,
}

impl Checkers {
    pub(super) fn new() -> Self {
        let (tx, rx) = mpsc::channel(RESULTS_QUEUE);
        Self { tx, rx, tasks: Vec::new(), generation: 0 }
    }

    /// Whether a result comes from the checkers running now.
    pub(super) fn is_current(&self, r: &CheckResult) -> bool {
        r.generation == self.generation
    }

    /// One checker per backend of every service, under a new generation.
    pub(super) fn restart(&mut self, balancer: &Balancer) {
        self.stop();
        self.generation += 1;
        for st in balancer.services() {
            for b in &st.backends {
                if let Some(h) = health::spawn_checker(
                    self.generation,
                    st.config.name.clone(),
                    b.address,
                    st.config.health.clone(),
                    st.config.port,
                    self.tx.clone(),
                ) {
                    self.tasks.push(h);
                }
            }
        }
    }

    pub(super) fn stop(&mut self) {
        for c in self.tasks.drain(..) {
            c.abort();
        }
    }
}
