//! Prometheus metrics, encoded by prometheus-client. Counters that live in the BPF maps are
//! read at scrape time; what only the daemon sees (check latencies, map updates) is recorded as
//! it happens. Pure: the HTTP endpoint is `report::serve`.
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use super::status::ServiceReport;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    pub service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    pub service: String,
    pub backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CauseLabels {
    /// What made the daemon write the maps: reload, health, neighbour, operator.
    pub cause: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InstanceStateLabels {
    pub instance: String,
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VipLabels {
    pub vip: String,
}

/// What the daemon records as it goes.
#[derive(Clone)]
pub struct Metrics {
    pub check_latency: Family<BackendLabels, Histogram>,
    pub map_updates: Family<CauseLabels, Counter>,
    pub map_update_seconds: Family<CauseLabels, Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            check_latency: Family::new_with_constructor(|| {
                Histogram::new([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5])
            }),
            map_updates: Family::default(),
            map_update_seconds: Family::new_with_constructor(|| {
                Histogram::new([0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0])
            }),
        }
    }
}

/// What is read from the maps and the state at scrape time.
pub struct Snapshot<'a> {
    pub services: &'a [ServiceReport],
    pub stats: Vec<(String, u64)>,
    pub flow_entries: u64,
    pub flow_capacity: u64,
    /// Each VRRP instance's name and state, in config order.
    pub vrrp_states: Vec<(String, &'a str)>,
    /// `[announce]`: each announced VIP and whether its route is in the table now.
    pub announced: Vec<(String, bool)>,
}

pub const VRRP_STATES: [&str; 4] = ["initialize", "backup", "master", "fault"];

pub fn render(m: &Metrics, s: &Snapshot<'_>) -> String {
    let mut r = Registry::with_prefix("fj_lb");
    r.register("health_check_duration_seconds", "Health-check latency", m.check_latency.clone());
    r.register("map_updates", "Writes of the data path's maps, by cause", m.map_updates.clone());
    r.register("map_update_duration_seconds", "Time to apply one map update, by cause", m.map_update_seconds.clone());

    let svc_packets = Family::<ServiceLabels, Counter>::default();
    let svc_bytes = Family::<ServiceLabels, Counter>::default();
    let svc_up = Family::<ServiceLabels, Gauge>::default();
    let be_packets = Family::<BackendLabels, Counter>::default();
    let be_bytes = Family::<BackendLabels, Counter>::default();
    let be_up = Family::<BackendLabels, Gauge>::default();
    let be_weight = Family::<BackendLabels, Gauge>::default();
    for svc in s.services {
        let l = ServiceLabels { service: svc.name.clone() };
        svc_packets.get_or_create(&l).inc_by(svc.packets);
        svc_bytes.get_or_create(&l).inc_by(svc.bytes);
        svc_up.get_or_create(&l).set(svc.backends_up as i64);
        for b in &svc.backends {
            let l = BackendLabels { service: svc.name.clone(), backend: b.address.to_string() };
            be_packets.get_or_create(&l).inc_by(b.packets);
            be_bytes.get_or_create(&l).inc_by(b.bytes);
            be_up.get_or_create(&l).set(b.up as i64);
            be_weight.get_or_create(&l).set(b.weight as i64);
        }
    }
    r.register("service_packets", "Packets forwarded per service", svc_packets);
    r.register("service_bytes", "Bytes forwarded per service", svc_bytes);
    r.register("service_backends_up", "Healthy backends per service", svc_up);
    r.register("backend_packets", "Packets forwarded per backend", be_packets);
    r.register("backend_bytes", "Bytes forwarded per backend", be_bytes);
    r.register("backend_up", "1 while the backend passes its health checks", be_up);
    r.register("backend_weight", "Weight in force (0 = drained)", be_weight);

    let reasons = Family::<ReasonLabels, Counter>::default();
    for (name, v) in &s.stats {
        reasons.get_or_create(&ReasonLabels { reason: name.clone() }).inc_by(*v);
    }
    r.register("datapath_packets", "Packets seen by the XDP program, by outcome (forwarded, pass_*, drop_*, flow_*)", reasons);

    let entries = Gauge::<i64>::default();
    entries.set(s.flow_entries as i64);
    r.register("flow_table_entries", "Entries in the flow table", entries);
    let cap = Gauge::<i64>::default();
    cap.set(s.flow_capacity as i64);
    r.register("flow_table_capacity", "Size of the flow table", cap);

    // `vrrp_state` is the first instance's, as it was when there was one; every instance
    // is in `vrrp_instance_state`.
    if let Some((_, state)) = s.vrrp_states.first() {
        let g = Family::<StateLabels, Gauge>::default();
        for st in VRRP_STATES {
            g.get_or_create(&StateLabels { state: st.into() }).set((st == *state) as i64);
        }
        r.register("vrrp_state", "1 for the VRRP state this host is in (the first instance)", g);
        let each = Family::<InstanceStateLabels, Gauge>::default();
        for (instance, state) in &s.vrrp_states {
            for st in VRRP_STATES {
                each.get_or_create(&InstanceStateLabels { instance: instance.clone(), state: st.into() }).set((st == *state) as i64);
            }
        }
        r.register("vrrp_instance_state", "1 for the state each VRRP instance is in", each);
    }
    if !s.announced.is_empty() {
        let g = Family::<VipLabels, Gauge>::default();
        for (vip, on) in &s.announced {
            g.get_or_create(&VipLabels { vip: vip.clone() }).set(*on as i64);
        }
        r.register("vip_announced", "1 while the VIP's route is in the [announce] table (the BGP speaker announces it)", g);
    }
    let mut out = String::new();
    encode(&mut out, &r).expect("encoding into a String cannot fail");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::status::{BackendReport, ServiceReport};

    #[test]
    fn renders_counters_gauges_and_histograms() {
        let m = Metrics::default();
        m.check_latency
            .get_or_create(&BackendLabels { service: "web".into(), backend: "10.0.0.11".into() })
            .observe(0.002);
        m.map_updates.get_or_create(&CauseLabels { cause: "health".into() }).inc();
        let svc = ServiceReport {
            name: "web".into(),
            vip: "10.0.0.100".parse().unwrap(),
            port: 80,
            protocol: "tcp".into(),
            forward: "dsr".into(),
            health_check: "tcp".into(),
            backends_up: 1,
            backends_total: 1,
            all_down: false,
            packets: 42,
            bytes: 4200,
            packets_per_s: 0.0,
            bits_per_s: 0.0,
            backends: vec![BackendReport {
                address: "10.0.0.11".parse().unwrap(),
                id: 0,
                mac: None,
                up: true,
                health_reason: "ok".into(),
                last_check: None,
                last_check_ms: None,
                weight: 100,
                config_weight: 100,
                slots: 1,
                slot_share: 1.0,
                packets: 42,
                bytes: 4200,
                packets_per_s: 0.0,
                bits_per_s: 0.0,
            }],
        };
        let text = render(
            &m,
            &Snapshot {
                services: &[svc],
                stats: vec![("forwarded".into(), 42), ("pass_not_ip".into(), 3)],
                flow_entries: 7,
                flow_capacity: 1024,
                vrrp_states: vec![("VI_1".into(), "master"), ("VI_2".into(), "fault")],
                announced: vec![("10.0.0.100".into(), true)],
            },
        );
        for want in [
            "fj_lb_service_packets_total{service=\"web\"} 42",
            "fj_lb_backend_up{service=\"web\",backend=\"10.0.0.11\"} 1",
            "fj_lb_datapath_packets_total{reason=\"pass_not_ip\"} 3",
            "fj_lb_flow_table_entries 7",
            "fj_lb_vrrp_state{state=\"master\"} 1",
            "fj_lb_vrrp_state{state=\"backup\"} 0",
            "fj_lb_vip_announced{vip=\"10.0.0.100\"} 1",
            "fj_lb_vrrp_instance_state{instance=\"VI_2\",state=\"fault\"} 1",
            "fj_lb_vrrp_instance_state{instance=\"VI_1\",state=\"fault\"} 0",
            "fj_lb_health_check_duration_seconds_count{service=\"web\",backend=\"10.0.0.11\"} 1",
            "fj_lb_map_updates_total{cause=\"health\"} 1",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }
}
