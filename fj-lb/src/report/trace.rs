//! `fj-lb trace`: the operator's filter (names and addresses) resolved into the data path's
//! `TraceFilter`, and each `TraceRecord` the program wrote turned back into names (service,
//! backend, reason) for a line of output. Pure: the balancer's state in, data out.
use std::{collections::BTreeMap, net::IpAddr};

use fj_lb_common::{
    FlowKey, NO_BACKEND, PROTO_TCP, PROTO_UDP, ServiceKey, Stat, TRACE_MATCH_BACKEND, TRACE_MATCH_DST, TRACE_MATCH_PORT,
    TRACE_MATCH_SRC, TRACE_MATCH_STAT, TRACE_PICK_FLOW, TRACE_PICK_MAGLEV, TraceFilter, TraceRecord,
};
use serde::{Deserialize, Serialize};

use crate::model::{
    addr::{addr_bytes, addr_from_bytes},
    balancer::Balancer,
};

/// What the operator asked to see, as typed (`fj-lb trace --vip … --service …`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wanted {
    pub vip: Option<String>,
    pub service: Option<String>,
    pub backend: Option<String>,
    pub reason: Option<String>,
    pub client: Option<String>,
}

/// Why a trace cannot start: the operator named something that does not exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceError {
    #[error("no service named {0:?}")]
    NoService(String),
    #[error("{0:?} is not an IP address")]
    NotAnAddress(String),
    #[error("service {service} is on {vip}, not on --vip {asked}")]
    OtherVip { service: String, vip: IpAddr, asked: IpAddr },
    #[error("{0} is no backend of any service")]
    NoBackend(IpAddr),
    #[error("{backend} is no backend of service {service}")]
    NotItsBackend { backend: IpAddr, service: String },
    #[error("{backend} is a backend of several services ({services}): say which with --service")]
    AmbiguousBackend { backend: IpAddr, services: String },
    #[error("the addresses given are of different families (IPv4 and IPv6)")]
    MixedFamilies,
    #[error("{0:?} is counted beside a decision, not as one: every forwarded packet is reported (`forwarded`, with `flow hit` or `maglev slot N`); pick a reason from: {1}")]
    NotADecision(String, String),
    #[error("no reason named {0:?}; the reasons are: {1}")]
    NoReason(String, String),
}

/// Counters the program bumps beside the decision that ends a packet's run (how a flow was
/// looked up or pinned, how it was encapsulated, a fragment's bookkeeping): a trace record
/// carries the decision, so filtering on these would match nothing.
const BESIDE: [Stat; 11] = [
    Stat::FlowHit,
    Stat::FlowMiss,
    Stat::FlowRepinned,
    Stat::FlowInsertFailed,
    Stat::FlowInsertSkipped,
    Stat::ForwardedIpip,
    Stat::ForwardedGue,
    Stat::FragmentTracked,
    Stat::FragmentFollowed,
    Stat::FragmentInsertFailed,
    Stat::TraceLost,
];

/// The reasons a trace can filter on: every decision a packet can end with.
pub fn reasons() -> impl Iterator<Item = Stat> {
    Stat::ALL.into_iter().filter(|s| !BESIDE.contains(s))
}

fn reason_list() -> String {
    reasons().map(Stat::name).collect::<Vec<_>>().join(", ")
}

fn parse_ip(s: &str) -> Result<IpAddr, TraceError> {
    s.parse().map_err(|_| TraceError::NotAnAddress(s.into()))
}

/// The filter the data path applies, and a sentence saying what it selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub filter: TraceFilter,
    pub description: String,
}

/// Resolves the operator's names against the balancer as it is now: a service by name (its
/// VIP, port and protocol), a backend by address (its id in that service), a reason by its
/// counter name.
pub fn resolve(b: &Balancer, w: &Wanted) -> Result<Resolved, TraceError> {
    let mut f = TraceFilter::default();
    let mut said = Vec::new();
    let mut family = None;
    let mut same_family = |ip: IpAddr| -> Result<([u8; 16], u8), TraceError> {
        let (bytes, fam) = addr_bytes(ip);
        if family.replace(fam).is_some_and(|f| f != fam) {
            return Err(TraceError::MixedFamilies);
        }
        Ok((bytes, fam))
    };
    let service = match w.service.as_deref() {
        Some(name) => Some(b.service(name).ok_or_else(|| TraceError::NoService(name.into()))?),
        None => None,
    };
    let vip = w.vip.as_deref().map(parse_ip).transpose()?;
    if let (Some(st), Some(vip)) = (service, vip)
        && st.config.vip != vip
    {
        return Err(TraceError::OtherVip { service: st.config.name.clone(), vip: st.config.vip, asked: vip });
    }
    if let Some(st) = service {
        let (dst, family) = same_family(st.config.vip)?;
        f.fields |= TRACE_MATCH_DST | TRACE_MATCH_PORT;
        (f.dst, f.family, f.dport, f.proto) = (dst, family, st.key.port, st.key.proto);
        said.push(format!("service {} ({} {})", st.config.name, sockaddr(st.config.vip, st.config.port), st.config.protocol));
    } else if let Some(vip) = vip {
        let (dst, family) = same_family(vip)?;
        f.fields |= TRACE_MATCH_DST;
        (f.dst, f.family) = (dst, family);
        said.push(format!("to {vip}"));
    }
    if let Some(client) = w.client.as_deref() {
        let ip = parse_ip(client)?;
        let (src, family) = same_family(ip)?;
        f.fields |= TRACE_MATCH_SRC;
        (f.src, f.family) = (src, family);
        said.push(format!("from {ip}"));
    }
    if let Some(backend) = w.backend.as_deref() {
        let ip = parse_ip(backend)?;
        let owners: Vec<(&str, u32)> = b
            .services()
            .filter(|st| service.is_none_or(|s| s.id == st.id))
            .flat_map(|st| st.backends.iter().filter(|be| be.address == ip).map(|be| (st.config.name.as_str(), be.id)))
            .collect();
        let id = match (owners.as_slice(), service) {
            ([(_, id)], _) => *id,
            ([], Some(st)) => return Err(TraceError::NotItsBackend { backend: ip, service: st.config.name.clone() }),
            ([], None) => return Err(TraceError::NoBackend(ip)),
            (many, _) => {
                let services = many.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ");
                return Err(TraceError::AmbiguousBackend { backend: ip, services });
            }
        };
        f.fields |= TRACE_MATCH_BACKEND;
        f.backend = id;
        said.push(format!("sent to {ip}"));
    }
    if let Some(reason) = w.reason.as_deref() {
        let stat = match Stat::ALL.into_iter().find(|s| s.name() == reason) {
            Some(s) if BESIDE.contains(&s) => return Err(TraceError::NotADecision(reason.into(), reason_list())),
            Some(s) => s,
            None => return Err(TraceError::NoReason(reason.into(), reason_list())),
        };
        f.fields |= TRACE_MATCH_STAT;
        f.stat = stat as u32;
        said.push(format!("decided {reason}"));
    }
    let description = if said.is_empty() { "every packet".to_string() } else { format!("packets {}", said.join(", ")) };
    Ok(Resolved { filter: f, description })
}

/// One traced packet as `fj-lb trace --json` prints it (field names are stable; the README
/// lists them).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TraceEvent {
    /// ADDRESS:PORT (ADDRESS alone when the packet has no ports); null when the packet was
    /// not parsed that far (not IP, another host's frame).
    pub src: Option<String>,
    pub dst: Option<String>,
    /// "tcp", "udp", or the IP protocol's number; null when not parsed that far.
    pub protocol: Option<String>,
    /// The service of the destination (or, forwarded, of the backend), if any.
    pub service: Option<String>,
    /// Where the packet was sent; null when passed or dropped.
    pub backend: Option<IpAddr>,
    /// "tx", "pass" or "drop".
    pub action: String,
    /// The decision, as the counter it bumped: `forwarded`, `icmp_steered`, or the pass or
    /// drop reason (`fj-lb stats` names).
    pub reason: String,
    /// How the backend was chosen: "flow_table" (an established flow) or "maglev" (the hash
    /// picked `slot`); null when no backend was.
    pub via: Option<String>,
    pub slot: Option<u32>,
    /// The frame's length as received, bytes.
    pub len: u32,
}

/// Service and backend ids, as the balancer has them now, for naming records: cheap to
/// hand to the task that reads the ring buffer.
#[derive(Debug, Clone, Default)]
pub struct TraceNames {
    services: Vec<(ServiceKey, String)>,
    backends: BTreeMap<u32, (IpAddr, String)>,
}

impl TraceNames {
    pub fn of(b: &Balancer) -> Self {
        Self {
            services: b.services().map(|st| (st.key, st.config.name.clone())).collect(),
            backends: b
                .services()
                .flat_map(|st| st.backends.iter().map(|be| (be.id, (be.address, st.config.name.clone()))))
                .collect(),
        }
    }

    fn service_of(&self, key: &FlowKey) -> Option<String> {
        self.services
            .iter()
            .find(|(k, _)| k.family == key.family && k.addr == key.dst && k.port == key.dport && k.proto == key.proto)
            .map(|(_, n)| n.clone())
    }
}

fn sockaddr(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(v) => format!("{v}:{port}"),
        IpAddr::V6(v) => format!("[{v}]:{port}"),
    }
}

fn action_name(action: u32) -> String {
    match action {
        1 => "drop".into(),
        2 => "pass".into(),
        3 => "tx".into(),
        n => format!("action {n}"),
    }
}

/// The record, named.
pub fn event(names: &TraceNames, r: &TraceRecord) -> TraceEvent {
    let (k, d) = (&r.key, &r.decision);
    let parsed = k.family != 0;
    let ports = matches!(k.proto, PROTO_TCP | PROTO_UDP);
    let endpoint = |bytes: &[u8; 16], port: u16| {
        let ip = addr_from_bytes(bytes, k.family);
        if ports { sockaddr(ip, port) } else { ip.to_string() }
    };
    let backend = if d.backend == NO_BACKEND { None } else { names.backends.get(&d.backend) };
    let (via, slot) = match d.how {
        TRACE_PICK_FLOW => (Some("flow_table".to_string()), None),
        TRACE_PICK_MAGLEV => (Some("maglev".to_string()), Some(d.slot)),
        _ => (None, None),
    };
    TraceEvent {
        src: parsed.then(|| endpoint(&k.src, k.sport)),
        dst: parsed.then(|| endpoint(&k.dst, k.dport)),
        protocol: parsed.then(|| match k.proto {
            PROTO_TCP => "tcp".to_string(),
            PROTO_UDP => "udp".to_string(),
            n => n.to_string(),
        }),
        service: backend.map(|(_, s)| s.clone()).or_else(|| if parsed { names.service_of(k) } else { None }),
        backend: backend.map(|(a, _)| *a),
        action: action_name(d.action),
        reason: Stat::ALL.get(d.stat as usize).map_or_else(|| format!("reason {}", d.stat), |s| s.name().to_string()),
        via,
        slot,
        len: d.len,
    }
}

/// One line of `fj-lb trace`: the 5-tuple, the service, and what was done and why.
pub fn line(e: &TraceEvent) -> String {
    let flow = match (&e.src, &e.dst) {
        (Some(s), Some(d)) => format!("{s} > {d} {}", e.protocol.as_deref().unwrap_or("?")),
        _ => "(not parsed)".to_string(),
    };
    let service = e.service.as_deref().unwrap_or("-");
    let what = match (&e.backend, e.via.as_deref(), e.slot) {
        (Some(b), Some("flow_table"), _) => format!("→ {b} (flow hit)"),
        (Some(b), Some("maglev"), Some(slot)) => format!("→ {b} (maglev slot {slot})"),
        (Some(b), _, _) => format!("→ {b}"),
        (None, _, _) if e.reason == Stat::Forwarded.name() || e.reason == Stat::IcmpSteered.name() => {
            format!("{} (backend not known here)", e.action)
        }
        (None, _, _) => e.action.clone(),
    };
    format!("{flow}  {service}  {what}  {} {} bytes", e.reason, e.len)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use fj_lb_common::{FAMILY_V4, TRACE_PICK_NONE, TraceDecision};

    use super::*;
    use crate::model::{
        balancer::{Balancer, MapWriteError, MapWriter},
        config::{self, HostView},
    };

    /// A data path that takes every write and keeps none.
    struct NoMaps;
    impl MapWriter for NoMaps {
        fn set_backend(&mut self, _: u32, _: &fj_lb_common::Backend) -> Result<(), MapWriteError> {
            Ok(())
        }
        fn write_table(&mut self, _: u32, _: &[u32]) -> Result<(), MapWriteError> {
            Ok(())
        }
        fn set_service(&mut self, _: &ServiceKey, _: &fj_lb_common::ServiceValue) -> Result<(), MapWriteError> {
            Ok(())
        }
        fn remove_service(&mut self, _: &ServiceKey) -> Result<(), MapWriteError> {
            Ok(())
        }
        fn set_generation_mark(&mut self, _: u32) -> Result<(), MapWriteError> {
            Ok(())
        }
    }

    struct AnyHost;
    impl HostView for AnyHost {
        fn interface_exists(&self, _: &str) -> bool {
            true
        }
    }

    fn balancer() -> Balancer {
        let cfg = config::parse(
            r#"
interface = "eth0"
[[service]]
name = "web"
vip = "10.0.0.100"
port = 80
protocol = "tcp"
  [[service.backend]]
  address = "10.0.0.11"
  [[service.backend]]
  address = "10.0.0.12"
[[service]]
name = "dns"
vip = "10.0.0.100"
port = 53
protocol = "udp"
  [[service.backend]]
  address = "10.0.0.11"
[[service]]
name = "web6"
vip = "2001:db8::100"
port = 80
protocol = "tcp"
  [[service.backend]]
  address = "2001:db8::11"
"#,
            "t.toml",
            &AnyHost,
        )
        .unwrap();
        let mut b = Balancer::new(&cfg);
        b.apply(&cfg, &HashMap::new(), &mut NoMaps).unwrap();
        b
    }

    fn id_of(b: &Balancer, service: &str, addr: &str) -> u32 {
        b.service(service).unwrap().backends.iter().find(|be| be.address == addr.parse::<IpAddr>().unwrap()).unwrap().id
    }

    #[test]
    fn a_service_and_a_backend_become_the_vip_port_protocol_and_the_backend_id() {
        let b = balancer();
        let r = resolve(&b, &Wanted { service: Some("web".into()), backend: Some("10.0.0.11".into()), ..Default::default() }).unwrap();
        let f = r.filter;
        assert_eq!(f.fields, TRACE_MATCH_DST | TRACE_MATCH_PORT | TRACE_MATCH_BACKEND);
        assert_eq!((&f.dst[..4], f.family, f.dport, f.proto), (&[10, 0, 0, 100][..], FAMILY_V4, 80, PROTO_TCP));
        assert_eq!(f.backend, id_of(&b, "web", "10.0.0.11"));
        assert_eq!(r.description, "packets service web (10.0.0.100:80 tcp), sent to 10.0.0.11");
        let all = resolve(&b, &Wanted::default()).unwrap();
        assert_eq!((all.filter, all.description.as_str()), (TraceFilter::default(), "every packet"));
    }

    #[test]
    fn a_vip_a_client_and_a_reason() {
        let b = balancer();
        let r = resolve(&b, &Wanted { vip: Some("10.0.0.100".into()), client: Some("10.0.0.2".into()), reason: Some("pass_not_service".into()), ..Default::default() }).unwrap();
        assert_eq!(r.filter.fields, TRACE_MATCH_DST | TRACE_MATCH_SRC | TRACE_MATCH_STAT);
        assert_eq!((&r.filter.src[..4], r.filter.stat), (&[10, 0, 0, 2][..], Stat::PassNotService as u32));
    }

    #[test]
    fn unknown_names_are_refused_with_what_exists() {
        let b = balancer();
        let err = |w: Wanted| resolve(&b, &w).unwrap_err().to_string();
        assert_eq!(err(Wanted { service: Some("nope".into()), ..Default::default() }), "no service named \"nope\"");
        assert_eq!(err(Wanted { backend: Some("10.0.0.99".into()), ..Default::default() }), "10.0.0.99 is no backend of any service");
        assert_eq!(err(Wanted { backend: Some("web-1".into()), ..Default::default() }), "\"web-1\" is not an IP address");
        assert_eq!(
            err(Wanted { backend: Some("10.0.0.11".into()), ..Default::default() }),
            "10.0.0.11 is a backend of several services (dns, web): say which with --service"
        );
        assert_eq!(err(Wanted { service: Some("dns".into()), backend: Some("10.0.0.12".into()), ..Default::default() }), "10.0.0.12 is no backend of service dns");
        assert_eq!(err(Wanted { service: Some("web".into()), vip: Some("10.0.0.1".into()), ..Default::default() }), "service web is on 10.0.0.100, not on --vip 10.0.0.1");
        assert_eq!(err(Wanted { service: Some("web6".into()), client: Some("10.0.0.2".into()), ..Default::default() }), "the addresses given are of different families (IPv4 and IPv6)");
        let e = err(Wanted { reason: Some("pass_nope".into()), ..Default::default() });
        assert!(e.starts_with("no reason named \"pass_nope\"; the reasons are: forwarded, pass_not_ip,") && e.contains("drop_no_backend"), "{e}");
        let e = err(Wanted { reason: Some("flow_hit".into()), ..Default::default() });
        assert!(e.starts_with("\"flow_hit\" is counted beside a decision") && !e.contains(", flow_hit"), "{e}");
    }

    fn record(b: &Balancer, stat: Stat, action: u32, backend: u32, how: u32, slot: u32) -> TraceRecord {
        let _ = b;
        let (src, family) = addr_bytes("10.0.0.2".parse().unwrap());
        let (dst, _) = addr_bytes("10.0.0.100".parse().unwrap());
        TraceRecord {
            key: FlowKey { src, dst, sport: 40000, dport: 80, proto: PROTO_TCP, family, _pad: [0; 2] },
            decision: TraceDecision { stat: stat as u32, action, backend, how, slot, len: 74 },
        }
    }

    #[test]
    fn records_are_named_and_printed() {
        let b = balancer();
        let names = TraceNames::of(&b);
        let id = id_of(&b, "web", "10.0.0.12");
        let e = event(&names, &record(&b, Stat::Forwarded, 3, id, TRACE_PICK_MAGLEV, 17));
        assert_eq!(e.src.as_deref(), Some("10.0.0.2:40000"));
        assert_eq!((e.service.as_deref(), e.backend, e.via.as_deref(), e.slot), (Some("web"), Some("10.0.0.12".parse().unwrap()), Some("maglev"), Some(17)));
        assert_eq!(line(&e), "10.0.0.2:40000 > 10.0.0.100:80 tcp  web  → 10.0.0.12 (maglev slot 17)  forwarded 74 bytes");
        let hit = event(&names, &record(&b, Stat::Forwarded, 3, id, TRACE_PICK_FLOW, 0));
        assert_eq!(line(&hit), "10.0.0.2:40000 > 10.0.0.100:80 tcp  web  → 10.0.0.12 (flow hit)  forwarded 74 bytes");
        let mut r = record(&b, Stat::PassNotService, 2, NO_BACKEND, TRACE_PICK_NONE, 0);
        r.key.dport = 81;
        let pass = event(&names, &r);
        assert_eq!((pass.service, pass.backend, pass.via), (None, None, None));
        assert_eq!(line(&event(&names, &r)), "10.0.0.2:40000 > 10.0.0.100:81 tcp  -  pass  pass_not_service 74 bytes");
        let decision = TraceDecision { stat: Stat::PassOtherHost as u32, action: 2, backend: NO_BACKEND, len: 60, ..Default::default() };
        let other = TraceRecord { decision, ..Default::default() };
        let e = event(&names, &other);
        assert_eq!((&e.src, &e.protocol), (&None, &None));
        assert_eq!(line(&e), "(not parsed)  -  pass  pass_other_host 60 bytes");
    }
}
