//! `fj-lb trace` in the program: with `SETTINGS_TRACE` set, each packet matching TRACE_FILTER
//! leaves one record in the TRACE ring buffer saying what was decided and why; others leave
//! none, and with the bit clear nothing is written whatever the filter.
use fj_lb::report::trace::{Wanted, resolve};
use fj_lb_common::{
    NO_BACKEND, PROTO_TCP, SETTINGS_TRACE, TRACE_PICK_FLOW, TRACE_PICK_MAGLEV, TRACE_PICK_NONE, TraceDecision, TraceFilter, TraceRecord,
};

use super::*;

impl Lb {
    fn trace(&mut self, w: Wanted) {
        let filter = resolve(&self.balancer, &w).expect("the filter resolves").filter;
        self.trace_filter(filter);
    }

    fn trace_filter(&mut self, filter: TraceFilter) {
        self.dp.set_trace_filter(&filter).unwrap();
        self.update_settings(|s| s.flags |= SETTINGS_TRACE);
    }

    /// Every record in the ring buffer, oldest first (leaving it empty).
    fn records(&self) -> Vec<TraceRecord> {
        let mut ring = self.dp.trace_reader().expect("a reader of TRACE");
        let mut out = Vec::new();
        while let Some(item) = ring.next() {
            out.push(datapath::trace_record(&item).expect("a record of TraceRecord's size"));
        }
        out
    }

    fn id_of(&self, service: &str, addr: IpAddr) -> u32 {
        self.balancer.service(service).unwrap().backends.iter().find(|b| b.address == addr).unwrap().id
    }
}

#[test]
fn with_the_bit_clear_nothing_is_traced() {
    require_root!();
    let mut lb = Lb::new(CONFIG);
    lb.dp.set_trace_filter(&TraceFilter::default()).unwrap();
    lb.forward(&tcp4(CLIENT, 40000, VIP, 80));
    assert_passed_untouched(&lb, &tcp4(CLIENT, 40000, VIP, 81), "other port");
    assert!(lb.records().is_empty(), "SETTINGS_TRACE clear: no record, even with a match-all filter");
    lb.trace_filter(TraceFilter::default());
    assert_passed_untouched(&lb, &tcp4(CLIENT, 40000, VIP, 81), "other port");
    assert_eq!(lb.records().len(), 1, "set: the same packet is traced");
    lb.update_settings(|s| s.flags &= !SETTINGS_TRACE);
    lb.forward(&tcp4(CLIENT, 40000, VIP, 80));
    assert!(lb.records().is_empty(), "cleared again: nothing");
}

#[test]
fn a_forwarded_packet_says_its_backend_and_maglev_slot_then_flow_hit() {
    require_root!();
    let mut lb = Lb::new(CONFIG);
    lb.trace(Wanted { service: Some("web".into()), ..Default::default() });
    let pkt = tcp4(CLIENT, 40001, VIP, 80);
    let backend = lb.forward(&pkt);
    lb.forward(&pkt);
    // Not web: another port (passed), another service on the VIP (dns), another VIP family.
    assert_passed_untouched(&lb, &tcp4(CLIENT, 40001, VIP, 81), "other port");
    lb.forward(&udp4(CLIENT, 5353, VIP, 53));
    lb.forward(&tcp6(v6(2), 40000, v6(0x100), 80));
    let r = lb.records();
    assert_eq!(r.len(), 2, "only web's two packets: {r:?}");
    let key = FlowKey {
        src: [10, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        dst: [10, 0, 0, 100, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        sport: 40001,
        dport: 80,
        proto: PROTO_TCP,
        family: 4,
        _pad: [0; 2],
    };
    let id = lb.id_of("web", backend);
    let table = lb.balancer.service("web").unwrap().table.len() as u32;
    let slot = flow_hash(&key, config_seed()) % table;
    assert_eq!(lb.balancer.service("web").unwrap().table[slot as usize], id, "the slot reported holds the backend the packet went to");
    let decision = TraceDecision { stat: Stat::Forwarded as u32, action: XDP_TX, backend: id, how: TRACE_PICK_MAGLEV, slot, len: pkt.len() as u32 };
    assert_eq!(r[0], TraceRecord { key, decision }, "a new flow: Maglev's slot");
    assert_eq!(r[1], TraceRecord { key, decision: TraceDecision { how: TRACE_PICK_FLOW, slot: 0, ..decision } }, "then the flow table");
}

/// The hash seed of `CONFIG` (none given: the default).
fn config_seed() -> u32 {
    config::parse(CONFIG, "test.toml", &AnyHost).unwrap().hash_seed
}

#[test]
fn passed_and_dropped_packets_say_their_reason() {
    require_root!();
    let mut lb = Lb::new(CONFIG);
    lb.trace(Wanted { reason: Some("pass_not_service".into()), ..Default::default() });
    lb.forward(&tcp4(CLIENT, 40002, VIP, 80));
    let other = tcp4(CLIENT, 40002, VIP, 81);
    assert_passed_untouched(&lb, &other, "other port");
    let r = lb.records();
    assert_eq!(r.len(), 1, "the forwarded packet is not pass_not_service: {r:?}");
    assert_eq!((r[0].decision.stat, r[0].decision.action, r[0].decision.backend, r[0].decision.how), (Stat::PassNotService as u32, XDP_PASS, NO_BACKEND, TRACE_PICK_NONE));
    assert_eq!((r[0].key.dport, r[0].key.sport, r[0].decision.len), (81, 40002, other.len() as u32));

    // A dropped one: no backend has a MAC, so none is in any table.
    let cfg = config::parse(CONFIG, "t", &AnyHost).unwrap();
    let mut dp = Dataplane::load(state::sizes(&cfg)).unwrap();
    dp.write_settings(Settings { lb_mac: LB_MAC, hash_seed: cfg.hash_seed, ..Default::default() }).unwrap();
    let mut b = Balancer::new(&cfg);
    b.apply(&cfg, &HashMap::new(), &mut dp).unwrap();
    let mut lb = Lb { dp, balancer: b, macs: HashMap::new() };
    lb.trace(Wanted { vip: Some("10.0.0.100".into()), ..Default::default() });
    let (action, _) = lb.run(&udp4(CLIENT, 5353, VIP, 53));
    assert_eq!(action, XDP_DROP, "no resolvable backend");
    let r = lb.records();
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!((r[0].decision.stat, r[0].decision.action, r[0].key.sport, r[0].decision.backend), (Stat::DropNoBackend as u32, XDP_DROP, 5353, NO_BACKEND));
}

#[test]
fn filters_on_backend_and_client_select_only_those() {
    require_root!();
    let mut lb = Lb::new(CONFIG);
    // Find two clients' ports that web sends to different backends.
    let to = |lb: &Lb, port: u16| lb.forward(&tcp4(CLIENT, port, VIP, 80));
    let a = to(&lb, 41000);
    let port_b = (41001..42000).find(|p| to(&lb, *p) != a).expect("another backend for some port");
    let _ = lb.records();
    lb.trace(Wanted { service: Some("web".into()), backend: Some(a.to_string()), ..Default::default() });
    to(&lb, 41000);
    to(&lb, port_b);
    let r = lb.records();
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!((r[0].key.sport, r[0].decision.backend), (41000, lb.id_of("web", a)));

    lb.trace(Wanted { client: Some("10.0.0.3".into()), ..Default::default() });
    to(&lb, 41000);
    lb.forward(&tcp4([10, 0, 0, 3], 41000, VIP, 80));
    let r = lb.records();
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(&r[0].key.src[..4], &[10, 0, 0, 3]);
}

#[test]
fn a_full_ring_loses_records_counted_as_trace_lost_never_packets() {
    require_root!();
    let mut lb = Lb::new(CONFIG);
    lb.trace_filter(TraceFilter::default());
    // Nobody reads: more matching packets than the ring holds records.
    let room = fj_lb_common::TRACE_RING_BYTES as usize / std::mem::size_of::<TraceRecord>();
    let pkt = tcp4(CLIENT, 40000, VIP, 81);
    for _ in 0..room + 100 {
        assert_eq!(lb.run(&pkt).0, XDP_PASS, "a packet is decided as ever, ring full or not");
    }
    let lost = lb.stat(Stat::TraceLost);
    let kept = lb.records().len();
    assert!(lost >= 100, "{lost} records counted lost of {} packets, {kept} kept", room + 100);
    assert_eq!(kept as u64 + lost, (room + 100) as u64, "every traced packet is a record or counted lost");
}
