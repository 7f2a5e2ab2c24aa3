//! Counter samples for rates, map-update timings, and the scrape: what the maps and the state
//! hold now, rendered as Prometheus text off the main loop where it walks the flow table.
use std::time::Instant;

use fj_lb_common::Stat;
use tracing::{info, warn};

use super::Daemon;
use crate::{
    report::{
        metrics::{self, CauseLabels, Metrics},
        serve::ScrapeRequest,
        status,
    },
};

pub(super) use crate::report::status::Sample;

/// Counter samples kept for rates ("the last few seconds").
const RATE_WINDOW: usize = 5;

/// Counts one write of the maps and how long it took, by what caused it.
pub(super) fn count_update(metrics: &Metrics, cause: &str, started: Instant) {
    let l = CauseLabels { cause: cause.into() };
    metrics.map_updates.get_or_create(&l).inc();
    metrics.map_update_seconds.get_or_create(&l).observe(started.elapsed().as_secs_f64());
}

impl Daemon {
    pub(super) fn read_sample(&mut self) -> Sample {
        let mut s = Sample { at: self.started.elapsed(), ..Default::default() };
        let ids: Vec<(u32, Vec<u32>)> =
            self.balancer.services().map(|st| (st.id, st.backends.iter().map(|b| b.id).collect())).collect();
        for (sid, bids) in ids {
            if let Ok(c) = self.dp.service_counter(sid) {
                s.services.insert(sid, c);
            }
            for bid in bids {
                if let Ok(c) = self.dp.backend_counter(bid) {
                    s.backends.insert(bid, c);
                }
            }
        }
        s
    }

    pub(super) fn sample(&mut self) {
        let s = self.read_sample();
        self.samples.push_back(s);
        while self.samples.len() > RATE_WINDOW {
            self.samples.pop_front();
        }
    }

    /// Answers a request of the metrics listener: the status (stats page, /status.json) or a
    /// scrape. Counting the flow table walks up to millions of entries, so that part of a
    /// scrape runs off the main loop, on the pinned map, and the rest is read here.
    pub(super) fn on_scrape(&mut self, request: ScrapeRequest) {
        let reply = match request {
            ScrapeRequest::Metrics(reply) => reply,
            ScrapeRequest::Status(reply) => {
                let _ = reply.send(self.status());
                return;
            }
        };
        let now = self.read_sample();
        let services = status::services(&self.balancer, &now, self.samples.front());
        let stats = self.dp.stats().map(|v| v.into_iter().map(|(s, n)| (s.name().to_string(), n)).collect()).unwrap_or_default();
        let vrrp = self.vrrp_statuses();
        let vrrp_states: Vec<(String, &str)> = vrrp.iter().map(|v| (v.name.clone(), v.state.as_str())).collect();
        let announced = self.announce_status().map(|a| a.vips.into_iter().map(|v| (v.vip.to_string(), v.announced)).collect()).unwrap_or_default();
        // The capacity a user can count on: flow_table_size flows whatever the RSS spread (the
        // map holds up to that many per CPU).
        let (metrics, capacity) = (self.metrics.clone(), self.config.flow_table_size as u64);
        let walks = self.flow_walks.clone();
        tokio::task::spawn_blocking(move || {
            let flow_entries = walks.entries();
            let text = metrics::render(
                &metrics,
                &metrics::Snapshot { services: &services, stats, flow_entries, flow_capacity: capacity, vrrp_states, announced },
            );
            let _ = reply.send(text);
        });
    }

    /// Says when flood mode starts and ends: the data path stops inserting new flows above
    /// `max_new_flows_per_cpu` (they are still forwarded), counted as flow_insert_skipped.
    pub(super) fn watch_flood(&mut self) {
        let Ok(skipped) = self.dp.stat(Stat::FlowInsertSkipped) else { return };
        let (last, on) = self.flood;
        let now_on = skipped > last;
        if now_on && !on {
            warn!(
                skipped = skipped - last,
                max_new_flows_per_cpu = self.config.max_new_flows_per_cpu,
                "flood mode: more new flows than max_new_flows_per_cpu; they are forwarded by hash but not inserted, established flows stay"
            );
        } else if on && !now_on {
            info!(skipped_total = skipped, "flood mode ended: new flows are inserted again");
        }
        self.flood = (skipped, now_on);
    }

    /// Every instance's status, in config order.
    pub(super) fn vrrp_statuses(&self) -> Vec<crate::vrrp::VrrpStatus> {
        self.vrrp.iter().flat_map(|set| set.instances.iter().map(|v| v.status.borrow().clone())).collect()
    }
}
