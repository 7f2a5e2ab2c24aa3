//! `cargo xtask bench` (in-kernel part): per-packet cost of the balancer through
//! BPF_PROG_TEST_RUN next to the MAC-swap floor (a program of the helper object, `fj-lb-aux`),
//! how it scales, and control-plane timings, each with its baseline measured in the same run.
//! Writes `target/bench/datapath.md` and `target/bench/datapath.json`. Reports; never fails on
//! a number. Needs root.
use std::{
    collections::HashMap,
    fmt::Write as _,
    net::IpAddr,
    time::{Duration, Instant},
};

use aya::programs::{TestRun, TestRunOptions, Xdp};
use etherparse::PacketBuilder;
use fj_lb::{
    datapath::{self, Dataplane},
    health,
    model::{
        addr::{Mac, addr_bytes},
        balancer::{self as state, Balancer},
        config::{self, HostView},
        maglev,
    },
};
use fj_lb_common::{FlowKey, FlowValue, Settings, program_names};

struct AnyHost;
impl HostView for AnyHost {
    fn interface_exists(&self, _: &str) -> bool {
        true
    }
}

const LB_MAC: Mac = [2, 0x1b, 0, 0, 0, 1];
const CLIENT_MAC: Mac = [2, 0xc1, 0, 0, 0, 1];
/// Repetitions per BPF_PROG_TEST_RUN call for steady-state paths.
const REPEAT: u32 = 2_000_000;
/// Distinct flows for the new-flow path (one run each: a repeat would hit the flow table).
const NEW_FLOWS: u32 = 20_000;

/// `services` TCP services on port 80 (s0 … ), each with `backends` backends; s0's VIP also has
/// a UDP service on port 53 (u0), and an IPv6 service (v6) exists: the packets measured go to
/// s0, u0 and v6.
fn config_text(services: usize, backends: usize, table: u32, flows: u32) -> String {
    let total_services = services + 2;
    let total_backends = services * backends + backends + 1;
    let mut s = format!(
        "interface = \"lo\"\nflow_table_size = {flows}\nmaglev_table_size = {table}\nmax_services = {total_services}\nmax_backends = {total_backends}\n"
    );
    let backend_list = |s: &mut String| {
        for b in 0..backends {
            let _ = write!(s, "[[service.backend]]\naddress = \"10.{}.{}.{}\"\n", 1 + b / 62500, b / 250 % 250, 1 + b % 250);
        }
    };
    for i in 0..services {
        let _ = write!(s, "[[service]]\nname = \"s{i}\"\nvip = \"10.{}.{}.100\"\nport = 80\nprotocol = \"tcp\"\n", 100 + i / 250, i % 250);
        backend_list(&mut s);
    }
    let _ = write!(s, "[[service]]\nname = \"u0\"\nvip = \"10.100.0.100\"\nport = 53\nprotocol = \"udp\"\n");
    backend_list(&mut s);
    let _ = write!(s, "[[service]]\nname = \"v6\"\nvip = \"2001:db8::100\"\nport = 80\nprotocol = \"tcp\"\n[[service.backend]]\naddress = \"2001:db8::11\"\n");
    s
}

struct Lb {
    dp: Dataplane,
    _b: Balancer,
}

fn lb(services: usize, backends: usize, table: u32, flows: u32) -> Lb {
    let text = config_text(services, backends, table, flows);
    let cfg = config::parse(&text, "bench", &AnyHost).expect("bench config is valid");
    let mut dp = Dataplane::load(state::sizes(&cfg)).expect("load (run as root)");
    dp.write_settings(Settings { lb_mac: LB_MAC, alt_mac: [0; 6], hash_seed: cfg.hash_seed, flags: 0, max_new_flows: 0, ..Default::default() }).unwrap();
    let macs: HashMap<IpAddr, Mac> = cfg
        .services
        .iter()
        .flat_map(|s| s.backends.iter().map(|b| (b.address, [2, 0xbe, 0, 0, 0, 1])))
        .collect();
    let mut b = Balancer::new(&cfg);
    b.apply(&cfg, &macs, &mut dp).expect("maps filled");
    Lb { dp, _b: b }
}

fn tcp4(src: [u8; 4], sport: u16, dst: [u8; 4]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, LB_MAC).ipv4(src, dst, 64).tcp(sport, 80, 1, 64240).ack(1).write(&mut v, b"").unwrap();
    v
}

fn udp4(sport: u16) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, LB_MAC).ipv4([10, 9, 0, 2], [10, 100, 0, 100], 64).udp(sport, 53).write(&mut v, &[0u8; 18]).unwrap();
    v
}

fn tcp6(sport: u16) -> Vec<u8> {
    let mut src = [0u8; 16];
    src[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
    src[15] = 2;
    let mut dst = src;
    dst[14] = 1;
    dst[15] = 0;
    let mut v = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, LB_MAC).ipv6(src, dst, 64).tcp(sport, 80, 1, 64240).ack(1).write(&mut v, b"").unwrap();
    v
}

const VIP0: [u8; 4] = [10, 100, 0, 100];

fn run(prog: &Xdp, pkt: &[u8], repeat: u32) -> (u32, Duration) {
    let mut out = vec![0u8; pkt.len() + 64];
    let r = prog
        .test_run(TestRunOptions { data_in: Some(pkt), data_out: Some(&mut out), repeat, ..Default::default() })
        .expect("BPF_PROG_TEST_RUN");
    (r.return_value, r.duration)
}

/// Mean ns per packet of a path that leaves the frame as it found it (XDP_PASS; the floor's
/// MAC swap), best of 3 calls of REPEAT runs each. A path that rewrites the frame must not be
/// timed this way: the repetitions after the first would see the rewritten frame.
fn steady(prog: &Xdp, pkt: &[u8], want: u32) -> f64 {
    let (action, _) = run(prog, pkt, 1);
    assert_eq!(action, want, "unexpected XDP action");
    (0..3).map(|_| run(prog, pkt, REPEAT).1.as_nanos() as f64).fold(f64::MAX, f64::min)
}

/// Mean ns per packet over `n` calls of one run each, the kernel's own timing: every call
/// starts from the frame as given. For the established path (the flow is in the table after
/// a first, untimed run).
fn one_run(prog: &Xdp, pkt: &[u8], n: u32, want: u32) -> f64 {
    let (action, _) = run(prog, pkt, 1);
    assert_eq!(action, want, "unexpected XDP action");
    let total: f64 = (0..n).map(|_| run(prog, pkt, 1).1.as_nanos() as f64).sum();
    total / n as f64
}

/// Mean ns per packet over `n` distinct flows, one run each: the new-flow path.
fn fresh(prog: &Xdp, n: u32, want: u32, seed: u8) -> f64 {
    let mut total = 0f64;
    for i in 0..n {
        let src = [10, seed, (i >> 16) as u8, (i >> 8) as u8];
        let pkt = tcp4(src, 1024 + (i & 0xff) as u16 * 211 % 60000, VIP0);
        let (action, d) = run(prog, &pkt, 1);
        assert_eq!(action, want, "unexpected XDP action on a new flow");
        total += d.as_nanos() as f64;
    }
    total / n as f64
}

fn floor_program() -> aya::Ebpf {
    datapath::load_aux(program_names::FLOOR).expect("floor program loads")
}

fn floor(ebpf: &aya::Ebpf) -> &Xdp {
    ebpf.program(program_names::FLOOR).unwrap().try_into().unwrap()
}

struct Report {
    md: String,
    json: serde_json::Map<String, serde_json::Value>,
}

impl Report {
    fn section(&mut self, title: &str, intro: &str) {
        let _ = write!(self.md, "\n## {title}\n\n{intro}\n\n");
    }
    fn table(&mut self, head: &[&str], rows: Vec<Vec<String>>) {
        let _ = writeln!(self.md, "| {} |", head.join(" | "));
        let _ = writeln!(self.md, "|{}|", head.iter().map(|_| " --- ").collect::<Vec<_>>().join("|"));
        for r in rows {
            let _ = writeln!(self.md, "| {} |", r.join(" | "));
        }
    }
    fn put(&mut self, key: &str, v: serde_json::Value) {
        self.json.insert(key.into(), v);
    }
}

fn ns(v: f64) -> String {
    format!("{v:.1}")
}

fn ratio(v: f64, base: f64) -> String {
    format!("{:.2}×", v / base)
}

fn per_packet(r: &mut Report) {
    let f = floor_program();
    let probe = tcp4([10, 9, 0, 2], 40000, VIP0);
    let floor_steady = steady(floor(&f), &probe, 3);
    let floor_one = one_run(floor(&f), &probe, NEW_FLOWS, 3);
    let l = lb(1, 3, 65537, 1 << 20);
    let p = l.dp.program();
    let new_tcp = fresh(p, NEW_FLOWS, 3, 1);
    let est_tcp = one_run(p, &probe, NEW_FLOWS, 3);
    let udp = one_run(p, &udp4(5353), NEW_FLOWS, 3);
    let v6 = one_run(p, &tcp6(40000), NEW_FLOWS, 3);
    let pass = steady(p, &tcp4([10, 9, 0, 2], 40000, [10, 9, 0, 1]), 2);
    r.section(
        "Per-packet cost in the kernel",
        &format!(
            "BPF_PROG_TEST_RUN, the kernel's own timing. The balancer rewrites the frame, so its paths are timed one run per call \
             ({NEW_FLOWS} calls; every call starts from the original frame; new flows are {NEW_FLOWS} distinct 5-tuples), \
             against the floor timed the same way: a program that swaps the MACs and returns XDP_TX. A call's fixed cost \
             (the floor's one-run time minus its steady time, {:.0} ns) is in both. The pass path leaves the frame alone and \
             is timed like the steady floor, best of 3 × {REPEAT} repetitions.",
            floor_one - floor_steady
        ),
    );
    let row = |name: &str, v: f64, base: f64| vec![name.to_string(), ns(v), ratio(v, base), format!("{:+.0}", v - base)];
    let rows = vec![
        row("floor, one run per call (MAC swap, XDP_TX)", floor_one, floor_one),
        row("new TCP flow (Maglev, flow insert)", new_tcp, floor_one),
        row("established TCP flow (flow table hit)", est_tcp, floor_one),
        row("UDP packet (established)", udp, floor_one),
        row("IPv6 TCP packet (established)", v6, floor_one),
        row("floor, steady (MAC swap, XDP_TX)", floor_steady, floor_steady),
        row("not for a service (XDP_PASS), steady", pass, floor_steady),
    ];
    r.table(&["path", "ns/packet", "vs floor", "ns above floor"], rows);
    r.put(
        "per_packet_ns",
        serde_json::json!({"floor": floor_one, "floor_steady": floor_steady, "new_tcp": new_tcp, "established_tcp": est_tcp, "udp": udp, "ipv6": v6, "pass": pass}),
    );
}

/// Layer-3 direct return next to layer 2 and the floor, all in this run: the same established
/// TCP flow forwarded by MAC rewrite (DSR), IPIP (4in4, 6in6, 4in6) and GUE, and a new flow
/// encapsulated. Backends are reached through a "router" next hop, as `fj-lb run` resolves them.
fn encap_paths(r: &mut Report) {
    let f = floor_program();
    let probe = tcp4([10, 9, 0, 2], 40000, VIP0);
    let floor_one = one_run(floor(&f), &probe, NEW_FLOWS, 3);
    let text = "interface = \"lo\"\nflow_table_size = 1048576\nmaglev_table_size = 65537\nmax_services = 8\nmax_backends = 8\n\
        [[service]]\nname = \"dsr\"\nvip = \"10.100.0.100\"\nport = 80\nprotocol = \"tcp\"\n[[service.backend]]\naddress = \"10.200.0.1\"\n\
        [[service]]\nname = \"ipip\"\nvip = \"10.100.0.101\"\nport = 80\nprotocol = \"tcp\"\nforward = \"ipip\"\n[[service.backend]]\naddress = \"10.200.0.1\"\n\
        [[service]]\nname = \"ipip46\"\nvip = \"10.100.0.102\"\nport = 80\nprotocol = \"tcp\"\nforward = \"ipip\"\n[[service.backend]]\naddress = \"2001:db8:200::1\"\n\
        [[service]]\nname = \"gue\"\nvip = \"10.100.0.103\"\nport = 80\nprotocol = \"tcp\"\nforward = \"gue\"\n[[service.backend]]\naddress = \"10.200.0.1\"\n\
        [[service]]\nname = \"ipip6\"\nvip = \"2001:db8::100\"\nport = 80\nprotocol = \"tcp\"\nforward = \"ipip\"\n[[service.backend]]\naddress = \"2001:db8:200::1\"\n";
    let cfg = config::parse(text, "bench", &AnyHost).expect("bench config is valid");
    let mut dp = Dataplane::load(state::sizes(&cfg)).expect("load (run as root)");
    let base = Settings { lb_mac: LB_MAC, ..Default::default() };
    dp.write_settings(Settings { max_new_flows: 0, ..state::settings_for(&cfg, base) }).unwrap();
    let macs: HashMap<IpAddr, Mac> = cfg.services.iter().flat_map(|s| s.backends.iter().map(|b| (b.address, [2, 0xbe, 0, 0, 0, 1]))).collect();
    let hops = macs.keys().map(|a| (*a, state::NextHop { mac: [2, 0x77, 0, 0, 0, 1], mtu: 1500 })).collect();
    let mut b = Balancer::new(&cfg);
    b.set_next_hops(hops);
    b.apply(&cfg, &macs, &mut dp).expect("maps filled");
    let p = dp.program();
    let client = [10, 9, 0, 2];
    let dsr = one_run(p, &tcp4(client, 40000, [10, 100, 0, 100]), NEW_FLOWS, 3);
    let ipip = one_run(p, &tcp4(client, 40000, [10, 100, 0, 101]), NEW_FLOWS, 3);
    let ipip46 = one_run(p, &tcp4(client, 40000, [10, 100, 0, 102]), NEW_FLOWS, 3);
    let gue = one_run(p, &tcp4(client, 40000, [10, 100, 0, 103]), NEW_FLOWS, 3);
    let ipip6 = one_run(p, &tcp6(40000), NEW_FLOWS, 3);
    let mut new_ipip = 0f64;
    for i in 0..NEW_FLOWS {
        let pkt = tcp4([10, 8, (i >> 8) as u8, i as u8], 1024 + (i % 50_000) as u16, [10, 100, 0, 101]);
        let (action, d) = run(p, &pkt, 1);
        assert_eq!(action, 3, "unexpected XDP action on a new encapsulated flow");
        new_ipip += d.as_nanos() as f64;
    }
    let new_ipip = new_ipip / NEW_FLOWS as f64;
    r.section(
        "Layer-3 direct return (IPIP, GUE)",
        &format!(
            "The same established TCP flow, one run per call ({NEW_FLOWS} calls), forwarded by layer-2 rewrite (DSR) and \
             encapsulated to a backend behind a router; a new flow is {NEW_FLOWS} distinct 5-tuples. The floor is timed \
             the same way in this run ({} ns). Encapsulation moves the frame's start (bpf_xdp_adjust_head) and writes the \
             outer headers and their checksums; GUE derives its UDP checksum from the inner one.",
            ns(floor_one)
        ),
    );
    let row = |name: &str, v: f64| vec![name.to_string(), ns(v), ratio(v, floor_one), format!("{:+.0}", v - floor_one), format!("{:+.0}", v - dsr)];
    r.table(
        &["path", "ns/packet", "vs floor", "ns above floor", "ns above DSR"],
        vec![
            row("floor, one run per call (MAC swap, XDP_TX)", floor_one),
            row("DSR, established TCP (MAC rewrite)", dsr),
            row("IPIP 4in4, established TCP", ipip),
            row("IPIP 6in6, established TCP", ipip6),
            row("IPIP 4in6, established TCP", ipip46),
            row("GUE over IPv4, established TCP", gue),
            row("IPIP 4in4, new flow (Maglev, flow insert)", new_ipip),
        ],
    );
    r.put(
        "encap_ns",
        serde_json::json!({"floor": floor_one, "dsr": dsr, "ipip_4in4": ipip, "ipip_6in6": ipip6, "ipip_4in6": ipip46, "gue_4in4": gue, "ipip_new_flow": new_ipip}),
    );
}

fn scaling(r: &mut Report) {
    let f = floor_program();
    let floor_one = one_run(floor(&f), &tcp4([10, 9, 0, 2], 40000, VIP0), NEW_FLOWS / 4, 3);
    r.section(
        "Scaling",
        &format!(
            "ns/packet (one run per call, as above) for an established flow and for new flows as the configuration grows; \
             floor {} ns in this run.",
            ns(floor_one)
        ),
    );
    let mut rows = Vec::new();
    let mut series = Vec::new();
    for services in [1usize, 100, 10_000] {
        // 10,000 services × 65,537 slots would need 5 GB of tables: a 251-slot table keeps the
        // comparison about the service lookup.
        let l = lb(services, 2, 251, 1 << 16);
        let p = l.dp.program();
        let est = one_run(p, &tcp4([10, 9, 0, 2], 40000, VIP0), NEW_FLOWS / 4, 3);
        let new = fresh(p, NEW_FLOWS / 4, 3, 2);
        rows.push(vec![format!("{services} services (2 backends, 251 slots)"), ns(est), ns(new), ratio(est, floor_one)]);
        series.push(serde_json::json!({"axis": "services", "x": services, "established": est, "new": new}));
    }
    for backends in [2usize, 100, 1000] {
        let l = lb(1, backends, 65537, 1 << 16);
        let p = l.dp.program();
        let est = one_run(p, &tcp4([10, 9, 0, 2], 40000, VIP0), NEW_FLOWS / 4, 3);
        let new = fresh(p, NEW_FLOWS / 4, 3, 3);
        rows.push(vec![format!("{backends} backends (65,537 slots)"), ns(est), ns(new), ratio(est, floor_one)]);
        series.push(serde_json::json!({"axis": "backends", "x": backends, "established": est, "new": new}));
    }
    let capacity = 1u32 << 16;
    for pct in [1u32, 50, 100] {
        let mut l = lb(1, 3, 65537, capacity);
        let n = capacity as u64 * pct as u64 / 100;
        {
            let mut flows = l.dp.flows();
            for i in 0..n as u32 {
                let mut k = FlowKey { sport: (i & 0xffff) as u16, dport: 80, proto: 6, family: 4, ..Default::default() };
                k.src[..4].copy_from_slice(&[172, 16, (i >> 16) as u8, (i >> 8) as u8]);
                k.dst[..4].copy_from_slice(&VIP0);
                // Occupancy only: these keys are never looked up, so their generation does not matter.
                let _ = flows.insert(k, FlowValue { backend: 0, service: 0, generation: 0 }, 0);
            }
        }
        let p = l.dp.program();
        let est = one_run(p, &tcp4([10, 9, 0, 2], 40000, VIP0), NEW_FLOWS / 4, 3);
        let new = fresh(p, NEW_FLOWS / 4, 3, 4);
        rows.push(vec![format!("flow table {pct}% full ({n} of {capacity})"), ns(est), ns(new), ratio(est, floor_one)]);
        series.push(serde_json::json!({"axis": "flow_table_pct", "x": pct, "established": est, "new": new}));
    }
    r.table(&["configuration", "established ns/pkt", "new flow ns/pkt", "established vs floor"], rows);
    r.put("scaling", serde_json::Value::Array(series));
}

fn control_plane(r: &mut Report) {
    r.section(
        "Control plane",
        "Rebuilding a service's 65,537-slot table and swapping it in (Maglev build, write through the \
         mmap'd array, one service-value write), next to the baseline of one plain map write (a syscall \
         updating one array element), both measured here; medians of repeated trials.",
    );
    let mut l = lb(1, 3, 65537, 1024);
    let mut plain = Vec::new();
    for _ in 0..2000 {
        let t = Instant::now();
        l.dp.write_settings(Settings { lb_mac: LB_MAC, alt_mac: [0; 6], hash_seed: 1, flags: 0, max_new_flows: 0, ..Default::default() }).unwrap();
        plain.push(t.elapsed());
    }
    let base = median(&mut plain).as_secs_f64() * 1e6;
    let mut rows = vec![vec!["plain map write (baseline)".into(), format!("{base:.1} µs"), "—".into(), "1×".into()]];
    let mut series = Vec::new();
    for n in [10usize, 1000, 10_000] {
        let text = config_text(1, n, 65537, 1024);
        let cfg = config::parse(&text, "bench", &AnyHost).unwrap();
        let cfg2 = cfg.clone();
        let mut dp = Dataplane::load(state::sizes(&cfg2)).unwrap();
        let macs: HashMap<IpAddr, Mac> = cfg.services.iter().flat_map(|s| s.backends.iter().map(|b| (b.address, [2, 0, 0, 0, 0, 1]))).collect();
        let mut bal = Balancer::new(&cfg2);
        bal.apply(&cfg2, &macs, &mut dp).unwrap();
        let entries: Vec<maglev::Entry> = cfg.services[0]
            .backends
            .iter()
            .enumerate()
            .map(|(i, b)| maglev::Entry { identity: addr_bytes(b.address).0.to_vec(), weight: b.weight, value: i as u32 })
            .collect();
        let mut builds = Vec::new();
        let mut swaps = Vec::new();
        for trial in 0..7 {
            let t = Instant::now();
            let _ = std::hint::black_box(maglev::build(&entries, 65537));
            builds.push(t.elapsed());
            // A real update: drain one backend and let the balancer rebuild and swap.
            let victim = cfg.services[0].backends[trial % n].address.to_string();
            let t = Instant::now();
            bal.set_weight("s0", &victim, Some(0), &mut dp).unwrap();
            swaps.push(t.elapsed());
            bal.set_weight("s0", &victim, None, &mut dp).unwrap();
        }
        let b = median(&mut builds).as_secs_f64() * 1e3;
        let s = median(&mut swaps).as_secs_f64() * 1e3;
        rows.push(vec![format!("{n} backends: rebuild + swap"), format!("{s:.2} ms"), format!("{b:.2} ms"), format!("{:.0}×", s * 1e3 / base)]);
        series.push(serde_json::json!({"backends": n, "rebuild_and_swap_ms": s, "maglev_build_ms": b}));
    }
    r.table(&["update", "time", "of which Maglev build", "vs plain write"], rows);
    r.put("control_plane", serde_json::json!({"plain_write_us": base, "tables": series}));
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// From a backend's death (its listener closed) to the map update that takes it out, through
/// the real checker and balancer: detection is `interval × fall` by design, the rest is ours.
fn death_to_update(r: &mut Report) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let trials = 20;
    let (interval, timeout, fall) = (100u64, 50u64, 3u32);
    let mut total = Vec::new();
    let mut after_detection = Vec::new();
    rt.block_on(async {
        for _ in 0..trials {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            let text = format!(
                "interface = \"lo\"\nflow_table_size = 1024\nmaglev_table_size = 65537\n[[service]]\nname = \"web\"\nvip = \"10.100.0.100\"\nport = {port}\nprotocol = \"tcp\"\n[service.health]\ncheck = \"tcp\"\ninterval_ms = {interval}\ntimeout_ms = {timeout}\nrise = 1\nfall = {fall}\n[[service.backend]]\naddress = \"127.0.0.2\"\n[[service.backend]]\naddress = \"127.0.0.3\"\n"
            );
            let text = text.replace("127.0.0.2", "10.99.0.2").replace("127.0.0.3", "10.99.0.3");
            let mut cfg = config::parse(&text, "bench", &AnyHost).unwrap();
            cfg.services[0].backends[0].address = "127.0.0.1".parse().unwrap();
            let mut dp = Dataplane::load(state::sizes(&cfg)).unwrap();
            let macs: HashMap<IpAddr, Mac> = cfg.services[0].backends.iter().map(|b| (b.address, [2, 0, 0, 0, 0, 1])).collect();
            let mut bal = Balancer::with_options(&cfg, true);
            bal.apply(&cfg, &macs, &mut dp).unwrap();
            let (tx, mut rx) = tokio::sync::mpsc::channel(64);
            let svc = &cfg.services[0];
            let checker = health::spawn_checker(1, "web".into(), "127.0.0.1".parse().unwrap(), svc.health.clone(), port, tx).unwrap();
            // Let it pass a check or two, then kill the backend.
            let mut ok = 0;
            while ok < 2 {
                if let Some(res) = rx.recv().await
                    && res.result.is_ok()
                {
                    ok += 1;
                }
            }
            drop(listener);
            let died = Instant::now();
            let mut first_failure = None;
            loop {
                let res = rx.recv().await.unwrap();
                if res.result.is_err() && first_failure.is_none() {
                    first_failure = Some(Instant::now());
                }
                if bal.health_result("web", res.backend, &res.result, &mut dp).unwrap().is_some() {
                    let done = Instant::now();
                    total.push(done - died);
                    // Time from the deciding check result to the swapped table.
                    after_detection.push(done.elapsed().max(Duration::ZERO) + (done - died) - (done - died));
                    break;
                }
            }
            checker.abort();
        }
    });
    let med = median(&mut total);
    let p99 = percentile(&mut total, 0.99);
    r.section(
        "Backend death to first map update",
        &format!(
            "A TCP check every {interval} ms (timeout {timeout} ms, fall {fall}) on a loopback listener that is closed at t = 0; \
             the real checker feeds the real balancer, which rebuilds and swaps the table. {trials} trials. \
             By design detection takes up to interval × fall = {} ms.",
            interval * fall as u64
        ),
    );
    r.table(
        &["median", "p99", "bound (interval × fall + timeout)"],
        vec![vec![format!("{:.1} ms", med.as_secs_f64() * 1e3), format!("{:.1} ms", p99.as_secs_f64() * 1e3), format!("{} ms", interval * fall as u64 + timeout)]],
    );
    let _ = after_detection;
    r.put("death_to_update_ms", serde_json::json!({"median": med.as_secs_f64() * 1e3, "p99": p99.as_secs_f64() * 1e3}));
}

/// A SYN flood (or spoofed sources) against a full flow table: how many established flows,
/// pinned away from their Maglev slot (so a re-hash would move them), keep their backend, with
/// and without the new-flow cap; and what a new flow costs once the cap has tripped.
fn flood(r: &mut Report) {
    // Everything on one CPU: test runs execute on the caller's CPU, and the LRU is per CPU.
    let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    unsafe { libc::CPU_SET(0, &mut one) };
    unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &one) };
    const PER_CPU: u32 = 1 << 18;
    const ESTABLISHED: u32 = 1000;
    const FLOOD_FOR: Duration = Duration::from_secs(2);
    const CAP: u32 = fj_lb::model::config::DEFAULT_MAX_NEW_FLOWS_PER_CPU;
    let text = config_text(1, 3, 65537, PER_CPU);
    let cfg = config::parse(&text, "bench", &AnyHost).expect("bench config is valid");
    let f = floor_program();
    let floor_one = one_run(floor(&f), &tcp4([10, 9, 0, 2], 40000, VIP0), NEW_FLOWS / 4, 3);
    let mut rows = Vec::new();
    let mut json = serde_json::Map::new();
    for cap in [0, CAP] {
        let mut dp = Dataplane::load(state::sizes(&cfg)).expect("load (run as root)");
        let settings = |max_new_flows| Settings { lb_mac: LB_MAC, alt_mac: [0; 6], hash_seed: cfg.hash_seed, flags: 0, max_new_flows, ..Default::default() };
        dp.write_settings(settings(0)).unwrap();
        // Distinct MACs, to see which backend a packet went to.
        let macs: HashMap<IpAddr, Mac> =
            cfg.services.iter().flat_map(|s| s.backends.iter()).enumerate().map(|(i, b)| (b.address, [2, 0xbe, 0, 0, 1, i as u8])).collect();
        let mut b = Balancer::new(&cfg);
        b.apply(&cfg, &macs, &mut dp).expect("maps filled");
        let web = b.services().find(|s| s.config.name == "s0").expect("service s0");
        let (svc_id, ids): (u32, Vec<u32>) = (web.id, web.backends.iter().map(|x| x.id).collect());
        let mac_of_id: HashMap<u32, Mac> = web.backends.iter().map(|x| (x.id, macs[&x.address])).collect();
        let generation_of_id: HashMap<u32, u32> = web.backends.iter().map(|x| (x.id, x.generation)).collect();
        let est = |i: u32| tcp4([172, 20, (i >> 8) as u8, i as u8], 5000, VIP0);
        // A table full of older flows, then the established flows, each moved off its Maglev
        // owner to the next backend.
        let _ = fresh(dp.program(), PER_CPU, 3, 7);
        let mut pinned = Vec::new();
        for i in 0..ESTABLISHED {
            let p = est(i);
            let (action, out) = run_out(dp.program(), &p);
            assert_eq!(action, 3);
            let owner = *mac_of_id.iter().find(|(_, m)| **m == out[..6]).expect("a backend").0;
            let other = ids[(ids.iter().position(|x| *x == owner).unwrap() + 1) % ids.len()];
            let mut k = FlowKey { sport: 5000, dport: 80, proto: 6, family: 4, ..Default::default() };
            k.src[..4].copy_from_slice(&p[26..30]);
            k.dst[..4].copy_from_slice(&VIP0);
            dp.flows().insert(k, FlowValue { backend: other, service: svc_id, generation: generation_of_id[&other] }, 0).expect("pin away");
            pinned.push((p, mac_of_id[&other]));
        }
        dp.write_settings(settings(cap)).unwrap();
        // The flood: new 5-tuples, two packets each, as fast as test runs go, for FLOOD_FOR; the
        // established flows stay quiet meanwhile (long-lived connections between two messages).
        // A one-packet flood would not hurt them: the kernel's LRU keeps entries seen twice
        // (on its active list) ahead of ones seen once.
        let flood_started = Instant::now();
        let mut sent = 0u32;
        while flood_started.elapsed() < FLOOD_FOR {
            for _ in 0..1000 {
                let p = tcp4([10, 77, (sent >> 16) as u8, (sent >> 8) as u8], 1024 + (sent & 0xff) as u16, VIP0);
                // Twice: a retransmitted SYN, or a spoofed flow's second packet. A flow seen
                // again earns the LRU's second chance, as the established flows have.
                run_out(dp.program(), &p);
                run_out(dp.program(), &p);
                sent += 1;
            }
        }
        let flood_s = flood_started.elapsed().as_secs_f64();
        let kept = pinned.iter().filter(|(p, mac)| run_out(dp.program(), p).1[..6] == mac[..]).count();
        let skipped: u64 = dp.stats().unwrap().into_iter().find(|(s, _)| *s == fj_lb_common::Stat::FlowInsertSkipped).map_or(0, |(_, n)| n);
        // A new flow on the full table: inserted (no cap), or in flood mode hashed and forwarded
        // but not inserted (a cap of 1 keeps the window spent for the whole measurement).
        if cap != 0 {
            dp.write_settings(settings(1)).unwrap();
        }
        let new_flow = fresh(dp.program(), NEW_FLOWS / 4, 3, 9);
        let label = if cap == 0 { "no cap (new flow: inserted)".to_string() } else { format!("cap {cap}/s per CPU (new flow: flood mode, not inserted)") };
        rows.push(vec![
            label.clone(),
            format!("{kept} of {ESTABLISHED}"),
            format!("{:.0}", 2.0 * sent as f64 / flood_s),
            skipped.to_string(),
            ns(new_flow),
            ratio(new_flow, floor_one),
        ]);
        json.insert(label, serde_json::json!({"kept": kept, "established": ESTABLISHED, "flood_pps": 2.0 * sent as f64 / flood_s, "skipped": skipped, "new_flow_ns": new_flow}));
    }
    r.section(
        "Flood",
        &format!(
            "{ESTABLISHED} established flows pinned away from their Maglev slot, a flow table full at {PER_CPU} per CPU (all on one CPU), then {} s of new 5-tuples (two packets each) as fast as this machine runs them while the established flows stay quiet; kept = still on their pinned backend afterwards. The cap buys time in proportion to table size / cap (here {:.1} s; Katran's 8M table at 125k/s: 64 s). The last columns: a new flow on the full table afterwards (one run per call, as above), floor {} ns in this run.",
            FLOOD_FOR.as_secs(),
            PER_CPU as f64 / CAP as f64,
            ns(floor_one)
        ),
    );
    r.table(&["mode", "established kept", "flood pkt/s (test runs)", "inserts skipped", "new flow ns", "×floor"], rows);
    r.put("flood", serde_json::Value::Object(json));
}

/// One run with its output frame.
fn run_out(prog: &Xdp, pkt: &[u8]) -> (u32, Vec<u8>) {
    let mut out = vec![0u8; pkt.len() + 64];
    let r = prog.test_run(TestRunOptions { data_in: Some(pkt), data_out: Some(&mut out), repeat: 1, ..Default::default() }).expect("test run");
    out.truncate(r.data_size_out as usize);
    (r.return_value, out)
}

fn main() {
    if unsafe { libc::geteuid() } != 0 {
        // An error, not a skip: `cargo xtask bench` goes on to read the report this run writes
        // and would otherwise pick up an old one.
        eprintln!("the data-path benchmark needs root (CAP_BPF, for BPF_PROG_TEST_RUN); run `cargo xtask bench` as root");
        std::process::exit(1);
    }
    // `cargo bench` passes --bench; filters select sections.
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let want = |s: &str| args.is_empty() || args.iter().any(|a| s.contains(a.as_str()));
    let mut r = Report { md: String::from("# fj-lb data path and control plane\n"), json: Default::default() };
    let started = Instant::now();
    if want("per_packet") {
        per_packet(&mut r);
    }
    if want("encap_paths") {
        encap_paths(&mut r);
    }
    if want("scaling") {
        scaling(&mut r);
    }
    if want("control_plane") {
        control_plane(&mut r);
    }
    if want("death_to_update") {
        death_to_update(&mut r);
    }
    if want("flood") {
        flood(&mut r);
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("datapath.md"), &r.md).unwrap();
    std::fs::write(dir.join("datapath.json"), serde_json::to_string_pretty(&serde_json::Value::Object(r.json)).unwrap()).unwrap();
    println!("{}", r.md);
    eprintln!("datapath benchmark done in {:.0} s; report in {}", started.elapsed().as_secs_f64(), dir.display());
}
