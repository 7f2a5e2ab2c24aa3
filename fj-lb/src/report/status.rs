//! What the daemon reports over the control socket: plain data with stable field names (the
//! README documents them for scripts using `--json`; a test pins them), built from the
//! balancer's state and the counters. No I/O here.
use std::{
    collections::BTreeMap,
    net::IpAddr,
    time::{Duration, SystemTime},
};

use fj_lb_common::{Counters, FlowKey, FlowValue, NO_BACKEND, hash::flow_hash};
use serde::{Deserialize, Serialize};

use crate::{
    model::{
        addr::{addr_bytes, addr_from_bytes, format_mac},
        balancer::{Balancer, ServiceState},
        config::{HealthCheck, Protocol},
    },
    vrrp::VrrpStatus,
};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub interface: String,
    pub xdp_mode: String,
    pub program_id: Option<u32>,
    pub uptime_s: u64,
    pub config: String,
    /// The first VRRP instance (what `vrrp` always meant), or none.
    pub vrrp: Option<VrrpStatus>,
    /// `[announce]`: per VIP, whether its host route is in the table and why (not).
    pub announce: Option<AnnounceStatus>,
    /// Every instance, in config order. (Default: an older daemon does not send it.)
    #[serde(default)]
    pub vrrp_instances: Vec<VrrpStatus>,
    pub services: Vec<ServiceReport>,
    /// The filter of the `fj-lb trace` running, in words; null when none is (the data path
    /// then checks no trace filter). (Default: an older daemon does not send it.)
    #[serde(default)]
    pub trace: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AnnounceStatus {
    pub table: u32,
    /// "healthy" or "always".
    pub when: String,
    pub vips: Vec<VipAnnounce>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VipAnnounce {
    pub vip: IpAddr,
    /// The host route is in the table, so the speaker announces the VIP.
    pub announced: bool,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServiceReport {
    pub name: String,
    pub vip: IpAddr,
    pub port: u16,
    pub protocol: String,
    /// "dsr", "ipip" or "gue".
    pub forward: String,
    pub health_check: String,
    pub backends_up: usize,
    pub backends_total: usize,
    pub all_down: bool,
    pub packets: u64,
    pub bytes: u64,
    pub packets_per_s: f64,
    pub bits_per_s: f64,
    pub backends: Vec<BackendReport>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BackendReport {
    pub address: IpAddr,
    pub id: u32,
    pub mac: Option<String>,
    pub up: bool,
    pub health_reason: String,
    /// When the last health check finished (RFC 3339, UTC), and how long it took; null before
    /// the first and without checks.
    pub last_check: Option<String>,
    pub last_check_ms: Option<f64>,
    pub weight: u32,
    pub config_weight: u32,
    pub slots: usize,
    pub slot_share: f64,
    pub packets: u64,
    pub bytes: u64,
    pub packets_per_s: f64,
    pub bits_per_s: f64,
}

/// Counter readings at one moment, for rates.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub at: Duration,
    pub services: BTreeMap<u32, Counters>,
    pub backends: BTreeMap<u32, Counters>,
}

fn rate(now: &Counters, then: Option<&Counters>, secs: f64) -> (f64, f64) {
    match then {
        Some(t) if secs > 0.0 => (
            now.packets.saturating_sub(t.packets) as f64 / secs,
            now.bytes.saturating_sub(t.bytes) as f64 * 8.0 / secs,
        ),
        _ => (0.0, 0.0),
    }
}

/// A time as status shows it: RFC 3339 to the second, UTC.
pub fn rfc3339(t: SystemTime) -> String {
    // humantime panics before the epoch; a clock set that far back reads as the epoch.
    humantime::format_rfc3339_seconds(t.max(SystemTime::UNIX_EPOCH)).to_string()
}

fn slot_counts(st: &ServiceState) -> BTreeMap<u32, usize> {
    let mut counts = BTreeMap::new();
    for id in &st.table {
        *counts.entry(*id).or_insert(0) += 1;
    }
    counts
}

pub fn services(b: &Balancer, now: &Sample, then: Option<&Sample>) -> Vec<ServiceReport> {
    let secs = then.map_or(0.0, |t| (now.at.saturating_sub(t.at)).as_secs_f64());
    b.services()
        .map(|st| {
            let counts = slot_counts(st);
            let size = st.table.len().max(1);
            let backends: Vec<BackendReport> = st
                .backends
                .iter()
                .map(|be| {
                    let c = now.backends.get(&be.id).copied().unwrap_or_default();
                    let (pps, bps) = rate(&c, then.and_then(|t| t.backends.get(&be.id)), secs);
                    let slots = counts.get(&be.id).copied().unwrap_or(0);
                    BackendReport {
                        address: be.address,
                        id: be.id,
                        mac: be.mac.as_ref().map(format_mac),
                        up: st.serving(be),
                        health_reason: if st.healthy(be) && be.mac.is_none() {
                            "no MAC: ARP/ND unanswered".into()
                        } else {
                            be.health.reason.clone()
                        },
                        last_check: be.health.last_check.map(|c| rfc3339(c.at)),
                        last_check_ms: be.health.last_check.map(|c| c.took.as_secs_f64() * 1000.0),
                        weight: be.effective_weight(),
                        config_weight: be.weight,
                        slots,
                        slot_share: slots as f64 / size as f64,
                        packets: c.packets,
                        bytes: c.bytes,
                        packets_per_s: pps,
                        bits_per_s: bps,
                    }
                })
                .collect();
            let c = now.services.get(&st.id).copied().unwrap_or_default();
            let (pps, bps) = rate(&c, then.and_then(|t| t.services.get(&st.id)), secs);
            ServiceReport {
                name: st.config.name.clone(),
                vip: st.config.vip,
                port: st.config.port,
                protocol: st.config.protocol.to_string(),
                forward: st.config.forward.to_string(),
                health_check: match &st.config.health.check {
                    HealthCheck::None => "none".into(),
                    HealthCheck::Tcp => "tcp".into(),
                    HealthCheck::Http { path, expect_status } => format!("http {path} → {expect_status}"),
                },
                backends_up: backends.iter().filter(|b| b.up).count(),
                backends_total: backends.len(),
                all_down: st.all_down,
                packets: c.packets,
                bytes: c.bytes,
                packets_per_s: pps,
                bits_per_s: bps,
                backends,
            }
        })
        .collect()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MaglevReport {
    pub service: String,
    pub table_size: usize,
    pub empty_slots: usize,
    pub backends: Vec<MaglevShare>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MaglevShare {
    pub address: IpAddr,
    pub weight: u32,
    pub slots: usize,
    /// Share of slots this backend's weight asks for, among the backends in the table.
    pub expected_share: f64,
    pub share: f64,
    /// (share − expected) / expected, e.g. 0.004 = 0.4% more slots than the weight asks.
    pub deviation: f64,
}

pub fn maglev(st: &ServiceState) -> MaglevReport {
    let counts = slot_counts(st);
    let size = st.table.len().max(1);
    let in_table: Vec<_> = st.backends.iter().filter(|b| counts.contains_key(&b.id)).collect();
    let total_weight: u64 = in_table.iter().map(|b| b.effective_weight() as u64).sum();
    let backends = st
        .backends
        .iter()
        .map(|b| {
            let slots = counts.get(&b.id).copied().unwrap_or(0);
            let expected = if slots > 0 && total_weight > 0 { b.effective_weight() as f64 / total_weight as f64 } else { 0.0 };
            let share = slots as f64 / size as f64;
            MaglevShare {
                address: b.address,
                weight: b.effective_weight(),
                slots,
                expected_share: expected,
                share,
                deviation: if expected > 0.0 { (share - expected) / expected } else { 0.0 },
            }
        })
        .collect();
    MaglevReport {
        service: st.config.name.clone(),
        table_size: st.table.len(),
        empty_slots: counts.get(&NO_BACKEND).copied().unwrap_or(0),
        backends,
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FlowReport {
    pub src: String,
    pub dst: String,
    pub protocol: String,
    pub service: Option<String>,
    pub backend: Option<IpAddr>,
}

fn proto_name(p: u8) -> String {
    match p {
        6 => "tcp".into(),
        17 => "udp".into(),
        n => n.to_string(),
    }
}

fn sockaddr(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(v) => format!("{v}:{port}"),
        IpAddr::V6(v) => format!("[{v}]:{port}"),
    }
}

/// Service and backend ids to names and addresses, as the balancer has them now: what a flow
/// table entry needs to be shown, and cheap to hand to another thread.
#[derive(Debug, Clone, Default)]
pub struct Names {
    services: BTreeMap<u32, (String, BTreeMap<u32, IpAddr>)>,
}

impl Names {
    pub fn of(b: &Balancer) -> Self {
        let services = b
            .services()
            .map(|st| (st.id, (st.config.name.clone(), st.backends.iter().map(|be| (be.id, be.address)).collect())))
            .collect();
        Self { services }
    }

    pub fn has_service(&self, name: &str) -> bool {
        self.services.values().any(|(n, _)| n == name)
    }
}

pub fn flow(names: &Names, key: &FlowKey, backend_id: u32, service_id: u32) -> FlowReport {
    let st = names.services.get(&service_id);
    FlowReport {
        src: sockaddr(addr_from_bytes(&key.src, key.family), key.sport),
        dst: sockaddr(addr_from_bytes(&key.dst, key.family), key.dport),
        protocol: proto_name(key.proto),
        service: st.map(|(name, _)| name.clone()),
        backend: st.and_then(|(_, backends)| backends.get(&backend_id).copied()),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LookupReport {
    pub service: String,
    pub backend: Option<IpAddr>,
    /// "flow_table" when an established flow is pinned, "maglev" when the table decides.
    pub via: String,
    pub slot: Option<u32>,
    pub hash: u32,
    pub explanation: String,
}

/// Why `fj-lb lookup` cannot answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error("{0:?} is not ADDRESS:PORT (IPv6 as [ADDRESS]:PORT)")]
    Endpoint(String),
    #[error("source and destination are of different address families")]
    MixedFamilies,
    #[error("no service on {endpoint} {protocol}: such a packet is passed to the host")]
    NoService { endpoint: String, protocol: String },
}

/// Parses "IP:PORT" or "[IPv6]:PORT".
pub fn parse_endpoint(s: &str) -> Result<(IpAddr, u16), LookupError> {
    let sa: std::net::SocketAddr = s.parse().map_err(|_| LookupError::Endpoint(s.into()))?;
    Ok((sa.ip(), sa.port()))
}

pub fn flow_key(src: (IpAddr, u16), dst: (IpAddr, u16), protocol: Protocol) -> Result<FlowKey, LookupError> {
    if src.0.is_ipv4() != dst.0.is_ipv4() {
        return Err(LookupError::MixedFamilies);
    }
    let (s, family) = addr_bytes(src.0);
    let (d, _) = addr_bytes(dst.0);
    Ok(FlowKey { src: s, dst: d, sport: src.1, dport: dst.1, proto: protocol.number(), family, _pad: [0; 2] })
}

/// Where the data path sends this 5-tuple, given what the flow table holds for it.
pub fn lookup(b: &Balancer, key: &FlowKey, pinned: Option<FlowValue>, seed: u32) -> Result<LookupReport, LookupError> {
    let dst = addr_from_bytes(&key.dst, key.family);
    let st = b
        .services()
        .find(|s| s.key.addr == key.dst && s.key.port == key.dport && s.key.proto == key.proto)
        .ok_or_else(|| LookupError::NoService { endpoint: sockaddr(dst, key.dport), protocol: proto_name(key.proto) })?;
    let hash = flow_hash(key, seed);
    let name = st.config.name.clone();
    // As the data path: a pinned flow counts while its backend is the allocation it was
    // pinned under, and alive.
    if let Some(flow) = pinned
        && let Some(be) = st.backends.iter().find(|be| be.id == flow.backend && be.generation == flow.generation)
            && (st.all_down || st.healthy(be)) {
                return Ok(LookupReport {
                    service: name,
                    backend: Some(be.address),
                    via: "flow_table".into(),
                    slot: None,
                    hash,
                    explanation: format!("an established flow is pinned to {} in the flow table", be.address),
                });
            }
    let size = st.table.len() as u32;
    let slot = if size == 0 { None } else { Some(hash % size) };
    let id = slot.and_then(|s| st.table.get(s as usize).copied()).unwrap_or(NO_BACKEND);
    let backend = st.backends.iter().find(|be| be.id == id).map(|be| be.address);
    let explanation = match (backend, slot) {
        (Some(a), Some(s)) => format!("new flow: hash {hash:#010x} mod {size} = slot {s}, owned by {a}"),
        _ => "new flow: the slot has no backend, the packet is dropped".into(),
    };
    Ok(LookupReport { service: name, backend, via: "maglev".into(), slot, hash, explanation })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    #[test]
    fn timestamps_are_rfc_3339_to_the_second() {
        assert_eq!(super::rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_737_600 + 3661)), "2026-11-27T01:01:01Z");
        assert_eq!(super::rfc3339(SystemTime::UNIX_EPOCH - Duration::from_secs(5)), "1970-01-01T00:00:00Z", "before the epoch reads as the epoch");
    }
}
