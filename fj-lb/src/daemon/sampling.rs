//! Counter samples for rates, map-update timings, and the scrape: what the maps and the state
//! hold now, rendered as Prometheus text off the main loop where it walks the flow table.
use std::time::Instant;

use fj_lb_common::map_names;

use super::Daemon;
use crate::{
    datapath,
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

    /// Answers a scrape. Counting the flow table walks up to millions of entries, so that
    /// part runs off the main loop, on the pinned map, and the rest is read here.
    pub(super) fn on_scrape(&mut self, reply: ScrapeRequest) {
        let now = self.read_sample();
        let services = status::services(&self.balancer, &now, self.samples.front());
        let stats = self.dp.stats().map(|v| v.into_iter().map(|(s, n)| (s.name().to_string(), n)).collect()).unwrap_or_default();
        let vrrp = self.vrrp_statuses();
        let vrrp_states: Vec<(String, &str)> = vrrp.iter().map(|v| (v.name.clone(), v.state.as_str())).collect();
        let (metrics, capacity) = (self.metrics.clone(), self.config.flow_table_size as u64);
        let flows_pin = self.config.bpffs.join(map_names::FLOWS);
        tokio::task::spawn_blocking(move || {
            let flow_entries = datapath::count_entries(&flows_pin).unwrap_or(0);
            let text = metrics::render(
                &metrics,
                &metrics::Snapshot { services: &services, stats, flow_entries, flow_capacity: capacity, vrrp_states },
            );
            let _ = reply.send(text);
        });
    }

    /// Every instance's status, in config order.
    pub(super) fn vrrp_statuses(&self) -> Vec<crate::vrrp::VrrpStatus> {
        self.vrrp.iter().flat_map(|set| set.instances.iter().map(|v| v.status.borrow().clone())).collect()
    }
}
