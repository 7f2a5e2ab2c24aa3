//! Hostile input, proven (issue 15): generated frames through the real program
//! (BPF_PROG_TEST_RUN) and through the reference model (`fj_lb::model::datapath_model`); they
//! must agree on the verdict, every counter's delta, the service and backend counters and the
//! output bytes. On every case, whatever the model covers: a frame that is not forwarded
//! leaves the program byte for byte as it came; a forwarded one differs only in its MACs.
//!
//! Seeded and reproducible: `MODEL_CASES` cases (default 6,000 for layer 2 and for layer 3; `cargo xtask fuzz` runs more),
//! `MODEL_SEED` picks another sequence. A failure is shrunk and printed as a fixture to paste
//! into a regular test.
use std::collections::HashMap as Map;

use fj_lb::model::datapath_model::{self as dm, Decision, Outcome, Tables};
use fj_lb_common::{FlowValue, PROTO_ICMP, PROTO_IPIP, PROTO_IPV6, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, SETTINGS_NOT_ACCEPTED, SETTINGS_PASS_ORPHAN_FRAGMENTS};
use proptest::{
    prelude::*,
    test_runner::{Config as PtConfig, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner},
};

use super::*;

const ALT_MAC: Mac = [0x00, 0x00, 0x5e, 0x00, 0x01, 0x07];

/// One frame, as choices; [`build`] makes the bytes.
#[derive(Debug, Clone)]
struct Recipe {
    /// 0 ours, 1 the alternative MAC, 2 another host, 3 broadcast, 4 IPv4 multicast.
    dst_mac: u8,
    /// 0 IPv4, 1 IPv6, 2 802.1Q-tagged IPv4, 3 802.1ad, 4 ARP, 5 anything.
    ether: u8,
    ether_any: u16,
    /// 0..2 the VIP, 2 another address.
    dst: u8,
    src: u8,
    /// 0 TCP, 1 UDP, 2 ICMP (of the family), 3 anything.
    proto: u8,
    proto_any: u8,
    sport: u16,
    /// 0 port 80, 1 port 53, 2 anything.
    dport: u8,
    dport_any: u16,
    /// IPv4 options, in 4-byte words.
    options: Vec<u32>,
    /// 0 none, 1 DF, 2 first of several, 3 a later one.
    frag: u8,
    frag_offset: u16,
    frag_id: u8,
    /// IPv6 extension headers before the transport: (next-header value, length byte, byte 3).
    ext: Vec<(u8, u8, u8)>,
    tcp_doff: u8,
    payload: Vec<u8>,
    /// 0 none, 1 truncate at `at`, 2 the IP length field set to `value`, 3 trailing bytes,
    /// 4 a byte at `at` set to `value`.
    mutation: u8,
    at: usize,
    value: u16,
}

const EXT: [u8; 8] = [0, 60, 43, 44, 50, 51, 135, 253];

fn recipe() -> impl Strategy<Value = Recipe> {
    let addressing = (prop_oneof![8 => Just(0u8), 1 => Just(1u8), 2 => 2u8..5], prop_oneof![6 => 0u8..2, 1 => 2u8..6], any::<u16>(), 0u8..3, 0u8..2, 0u8..4, any::<u8>(), 1000u16..1004, 0u8..3, any::<u16>());
    let ip = (
        prop_oneof![3 => Just(vec![]), 1 => prop::collection::vec(any::<u32>(), 1..11)],
        prop_oneof![3 => 0u8..2, 1 => 2u8..4],
        1u16..0x1fff,
        0u8..2,
        prop_oneof![2 => Just(vec![]), 1 => prop::collection::vec((prop::sample::select(EXT.to_vec()), prop_oneof![3 => Just(0u8), 1 => any::<u8>()], prop_oneof![3 => Just(0u8), 1 => any::<u8>()]), 1..7)],
        prop_oneof![6 => Just(5u8), 1 => 0u8..16],
        prop_oneof![3 => prop::collection::vec(any::<u8>(), 0..24), 1 => prop::collection::vec(any::<u8>(), 24..160)],
    );
    let mutation = (prop_oneof![4 => Just(0u8), 2 => Just(1u8), 1 => 2u8..5], 0usize..200, any::<u16>());
    (addressing, ip, mutation).prop_map(
        |(
            (dst_mac, ether, ether_any, dst, src, proto, proto_any, sport, dport, dport_any),
            (options, frag, frag_offset, frag_id, ext, tcp_doff, payload),
            (mutation, at, value),
        )| Recipe {
            dst_mac,
            ether,
            ether_any,
            dst,
            src,
            proto,
            proto_any,
            sport,
            dport,
            dport_any,
            options,
            frag,
            frag_offset,
            frag_id,
            ext,
            tcp_doff,
            payload,
            mutation,
            at,
            value,
        },
    )
}

/// An ICMP or ICMPv6 message (an error with probability) quoting a packet from the VIP (or,
/// `proto_any` bit 2, another address) to the client: inner protocol TCP, UDP or other,
/// IPv4 options (bit 3), the VIP's port `dport`, the client's `sport`, then `payload`.
fn icmp_error(r: &Recipe, is_v6: bool, dport: u16) -> Vec<u8> {
    let kind = match (is_v6, r.tcp_doff % 4) {
        (false, 0) => 8,
        (false, _) => 3,
        (true, 0) => [128, 135, 2][r.sport as usize % 3],
        (true, 1) => 2,
        (true, _) => 1,
    };
    let mut m = vec![kind, 4, 0, 0, 0, 0, 5, 0xdc];
    let inner_proto = [PROTO_TCP, PROTO_UDP, 47, PROTO_TCP][r.proto_any as usize % 4];
    let (vip, client) = (if r.proto_any & 4 == 0 { 0x100 } else { 0x101 }, 2 + r.src as u16);
    if is_v6 {
        m.extend_from_slice(&[0x60, 0, 0, 0, 0, 20, inner_proto, 64]);
        m.extend_from_slice(&v6(vip));
        m.extend_from_slice(&v6(client));
    } else {
        let opts = r.proto_any & 8 != 0;
        m.extend_from_slice(&[if opts { 0x46 } else { 0x45 }, 0, 0, 40, 0, 0, 0x40, 0, 64, inner_proto, 0, 0]);
        m.extend_from_slice(&[10, 0, 0, (vip & 0xff) as u8]);
        m.extend_from_slice(&[10, 0, 0, client as u8]);
        if opts {
            m.extend_from_slice(&[1, 1, 1, 0]);
        }
    }
    m.extend_from_slice(&dport.to_be_bytes());
    m.extend_from_slice(&r.sport.to_be_bytes());
    m.extend_from_slice(&[0, 0, 0, 1]);
    m.extend_from_slice(&r.payload);
    m
}

fn build(r: &Recipe) -> Vec<u8> {
    let is_v6 = r.ether == 1 || (r.ether >= 2 && r.ether_any & 1 == 1);
    let mut f = match r.dst_mac {
        0 => LB_MAC.to_vec(),
        1 => ALT_MAC.to_vec(),
        2 => vec![0x02, 0x99, 0, 0, 0, 9],
        3 => vec![0xff; 6],
        _ => vec![0x01, 0x00, 0x5e, 0, 0, 0x12],
    };
    f.extend_from_slice(&CLIENT_MAC);
    match r.ether {
        2 | 3 => {
            f.extend_from_slice(if r.ether == 2 { &[0x81, 0x00] } else { &[0x88, 0xa8] });
            f.extend_from_slice(&(r.ether_any & 0x0fff).to_be_bytes());
        }
        4 => f.extend_from_slice(&[0x08, 0x06]),
        5 => f.extend_from_slice(&r.ether_any.to_be_bytes()),
        _ => {}
    }
    let l2 = f.len();
    f.extend_from_slice(if is_v6 { &[0x86, 0xdd] } else { &[0x08, 0x00] });
    if r.ether >= 4 {
        f.truncate(l2);
        if r.ether == 4 {
            f.extend_from_slice(&[0x08, 0x06]);
        } else {
            f.extend_from_slice(&r.ether_any.to_be_bytes());
        }
    }
    let proto = match r.proto {
        0 => PROTO_TCP,
        1 => PROTO_UDP,
        2 if is_v6 => PROTO_ICMPV6,
        2 => PROTO_ICMP,
        _ => r.proto_any,
    };
    let dport = match r.dport {
        0 => 80,
        1 => 53,
        _ => r.dport_any,
    };
    let mut l4 = Vec::new();
    l4.extend_from_slice(&r.sport.to_be_bytes());
    l4.extend_from_slice(&dport.to_be_bytes());
    if proto == PROTO_UDP {
        l4.extend_from_slice(&((8 + r.payload.len()) as u16).to_be_bytes());
        l4.extend_from_slice(&[0, 0]);
    } else {
        l4.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, r.tcp_doff << 4, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    }
    l4.extend_from_slice(&r.payload);
    if r.proto == 2 {
        l4 = icmp_error(r, is_v6, dport);
    }
    // Encapsulated: the TCP packet inside IPIP (4), IPv6 (41) or GUE (UDP to 6080).
    let proto = match (r.proto, r.proto_any % 8) {
        (3, k @ 0..3) => {
            let inner = if k == 1 { tcp6(v6(2), r.sport, v6(0x100), dport) } else { tcp4(CLIENT, r.sport, VIP, dport) };
            l4 = inner[14..].to_vec();
            if k == 2 {
                let mut gue = r.sport.to_be_bytes().to_vec();
                gue.extend_from_slice(&[0x17, 0xc0, 0, (12 + l4.len()) as u8, 0, 0, 0, 4, 0, 0]);
                gue.extend_from_slice(&l4);
                l4 = gue;
            }
            [PROTO_IPIP, PROTO_IPV6, PROTO_UDP][k as usize]
        }
        _ => proto,
    };
    let ip_start = f.len();
    if is_v6 {
        let dst = match r.dst {
            0 | 1 => v6(0x100),
            _ => v6(0x101),
        };
        let mut ext = Vec::new();
        let mut nexts: Vec<u8> = r.ext.iter().map(|e| e.0).collect();
        if r.frag >= 2 && !nexts.contains(&44) {
            nexts.push(44);
        }
        let first = *nexts.first().unwrap_or(&proto);
        for (i, n) in nexts.iter().enumerate() {
            let next = *nexts.get(i + 1).unwrap_or(&proto);
            let (_, len, b3) = r.ext.get(i).copied().unwrap_or((44, 0, 0));
            if *n == 44 {
                let of: u16 = match r.frag {
                    2 => 1,
                    3 => (r.frag_offset << 3) | (len as u16 & 1),
                    _ => 0,
                };
                ext.extend_from_slice(&[next, 0]);
                ext.extend_from_slice(&of.to_be_bytes());
                ext.extend_from_slice(&(r.frag_id as u32).to_be_bytes());
            } else {
                let len = len % 4;
                let mut h = vec![0u8; (len as usize + 1) * 8];
                h[0] = next;
                h[1] = len;
                h[3] = if *n == 43 { b3 % 3 } else { b3 };
                ext.extend_from_slice(&h);
            }
        }
        let payload = (ext.len() + l4.len()) as u16;
        f.extend_from_slice(&[0x60, 0, 0, 0]);
        f.extend_from_slice(&payload.to_be_bytes());
        f.extend_from_slice(&[first, 64]);
        f.extend_from_slice(&v6(2 + r.src as u16));
        f.extend_from_slice(&dst);
        f.extend_from_slice(&ext);
    } else {
        let dst = match r.dst {
            0 | 1 => VIP,
            _ => [10, 0, 0, 101],
        };
        let ihl = 5 + r.options.len().min(10);
        let frag: u16 = match r.frag {
            1 => 0x4000,
            2 => 0x2000,
            3 => r.frag_offset,
            _ => 0,
        };
        f.push(0x40 | ihl as u8);
        f.push(0);
        f.extend_from_slice(&((ihl * 4 + l4.len()) as u16).to_be_bytes());
        f.extend_from_slice(&(r.frag_id as u16).to_be_bytes());
        f.extend_from_slice(&frag.to_be_bytes());
        f.extend_from_slice(&[64, proto, 0, 0]);
        f.extend_from_slice(&[10, 0, 0, 2 + r.src]);
        f.extend_from_slice(&dst);
        for o in r.options.iter().take(10) {
            f.extend_from_slice(&o.to_be_bytes());
        }
    }
    // A later fragment carries data, not a transport header.
    f.extend_from_slice(&l4);
    match r.mutation {
        1 => f.truncate(r.at % (f.len() + 1)),
        2 if f.len() > ip_start + 6 => {
            let off = ip_start + if is_v6 { 4 } else { 2 };
            f[off..off + 2].copy_from_slice(&(r.value % 256 + if r.value & 0x100 != 0 { 0 } else { 1200 }).to_be_bytes());
        }
        3 => f.extend(std::iter::repeat_n(0xee, (r.value % 40) as usize)),
        4 => {
            let at = r.at % f.len();
            f[at] = r.value as u8;
        }
        _ => {}
    }
    f
}

/// A case: frames run in order against tables that start empty of flows and fragments, then
/// (optionally) every flow the case created re-pointed to another backend and service, under
/// that backend's generation or a stale one, and the first frame run again.
#[derive(Debug, Clone)]
struct Case {
    flags: u32,
    alt_mac: bool,
    frames: Vec<Recipe>,
    again: Option<Option<(u8, u8, bool)>>,
}

fn case() -> impl Strategy<Value = Case> {
    (0u32..4, any::<bool>(), prop::collection::vec(recipe(), 1..4), prop_oneof![2 => Just(None), 1 => Just(Some(None)), 1 => (0u8..20, 0u8..6, any::<bool>()).prop_map(|r| Some(Some(r)))], prop::bool::weighted(0.3))
        .prop_map(|(flags, alt_mac, mut frames, again, follow)| {
            // The first frame a first fragment, a later fragment of its datagram at the end.
            if follow {
                frames[0].frag = 2;
                let mut later = frames[0].clone();
                (later.frag, later.mutation) = (3, 0);
                frames.push(later);
            }
            Case { flags, alt_mac, frames, again }
        })
}

fn tables(lb: &mut Lb) -> Tables {
    let settings = lb.dp.settings().get(&0, 0).unwrap();
    let services = lb.dp.services().iter().map(Result::unwrap).collect();
    let backends = lb.dp.backends();
    let backends = (0..backends.len()).map(|i| backends.get(&i, 0).unwrap()).collect();
    let maglev = lb.dp.maglev();
    let maglev = (0..maglev.len()).map(|i| maglev.get(&i, 0).unwrap()).collect();
    let not_accepted = [IpAddr::from(VIP), IpAddr::from(v6(0x100))].iter().map(|ip| fj_lb::model::addr::addr_bytes(*ip)).collect();
    Tables { settings, services, backends, maglev, flows: Default::default(), fragments: Default::default(), not_accepted }
}

fn stats(lb: &mut Lb) -> Map<u32, u64> {
    lb.dp.stats().unwrap().into_iter().map(|(s, n)| (s as u32, n)).collect()
}

thread_local! {
    /// Frames the program sent on (XDP_TX) and frames it counted under some reason.
    static SEEN: std::cell::RefCell<(u64, Map<&'static str, u64>)> = Default::default();
}

/// Runs one frame through both; Ok(true) when the model covered it.
fn one(lb: &mut Lb, t: &mut Tables, frame: &[u8]) -> Result<bool, TestCaseError> {
    // BPF_PROG_TEST_RUN refuses a frame shorter than an Ethernet header (EINVAL), as no
    // driver hands one to XDP.
    if frame.len() < 14 {
        return Ok(false);
    }
    let before = stats(lb);
    let model = dm::decide(t, frame);
    let counters_before = match &model {
        Outcome::Decided(Decision { forwarded: Some((s, b, _)), .. }) => Some((lb.dp.service_counter(*s).unwrap(), lb.dp.backend_counter(*b).unwrap())),
        _ => None,
    };
    let (action, out) = lb.run(frame);
    if action != XDP_TX {
        prop_assert_eq!(&out, frame, "a frame not sent on leaves as it came (action {})", action);
    }
    let d = match model {
        Outcome::Unmodelled(_) => {
            // Not modelled: keep the model's tables as the program left them.
            t.flows = lb.dp.flows().iter().map(Result::unwrap).collect();
            t.fragments = lb.dp.fragments().iter().map(Result::unwrap).collect();
            return Ok(false);
        }
        Outcome::Decided(d) => d,
    };
    SEEN.with(|s| {
        let mut s = s.borrow_mut();
        s.0 += (d.action == XDP_TX) as u64;
        for st in &d.stats {
            *s.1.entry(st.name()).or_default() += 1;
        }
    });
    prop_assert_eq!(action, d.action, "verdict");
    prop_assert_eq!(&out, &d.frame, "output frame");
    if action == XDP_TX && d.forwarded.is_some() {
        prop_assert_eq!(&out[6..12], &LB_MAC[..]);
        // Layer 2 changes the MACs only; layer 3 puts an outer IPv4/IPv6 header (and UDP for
        // GUE) before the packet, which is carried whole.
        let over = out.len() - frame.len();
        prop_assert!([0, 20, 28, 40, 48].contains(&over), "{} bytes added", over);
        prop_assert_eq!(&out[12 + if over == 0 { 0 } else { 2 + over }..], &frame[if over == 0 { 12 } else { 14 }..], "the packet is carried as it came");
    }
    let after = stats(lb);
    let mut want: Map<u32, u64> = Map::new();
    for s in &d.stats {
        *want.entry(*s as u32).or_default() += 1;
    }
    for s in Stat::ALL {
        let got = after[&(s as u32)] - before[&(s as u32)];
        prop_assert_eq!(got, want.get(&(s as u32)).copied().unwrap_or(0), "counter {}", s.name());
    }
    if let (Some((s, b, bytes)), Some((sc, bc))) = (d.forwarded, counters_before) {
        let (sn, bn) = (lb.dp.service_counter(s).unwrap(), lb.dp.backend_counter(b).unwrap());
        prop_assert_eq!((sn.packets - sc.packets, sn.bytes - sc.bytes), (1, bytes), "service counters");
        prop_assert_eq!((bn.packets - bc.packets, bn.bytes - bc.bytes), (1, bytes), "backend counters");
    }
    Ok(true)
}

fn run_case(lb: &mut Lb, base: &Tables, c: &Case, covered: &mut u64) -> Result<(), TestCaseError> {
    let mut t = base.clone();
    t.settings.flags = c.flags & (SETTINGS_NOT_ACCEPTED | SETTINGS_PASS_ORPHAN_FRAGMENTS);
    t.settings.alt_mac = if c.alt_mac { ALT_MAC } else { [0; 6] };
    lb.dp.write_settings(t.settings).unwrap();
    let frames: Vec<Vec<u8>> = c.frames.iter().map(build).collect();
    let result = (|| {
        for f in &frames {
            *covered += one(lb, &mut t, f)? as u64;
        }
        if let Some(repin) = c.again {
            if let Some((backend, service, current)) = repin {
                let live = t.backends.get(backend as usize).map_or(0, |b| b.generation);
                let generation = if current { live } else { live.wrapping_add(1) };
                let v = FlowValue { backend: backend as u32, service: service as u32, generation };
                for (k, val) in t.flows.iter_mut() {
                    *val = v;
                    lb.dp.flows().insert(k, v, 0).unwrap();
                }
            }
            *covered += one(lb, &mut t, &frames[0])? as u64;
        }
        Ok(())
    })();
    // Every case starts from empty flow and fragment tables.
    let flows: Vec<_> = lb.dp.flows().keys().map(Result::unwrap).collect();
    for k in flows {
        lb.dp.flows().remove(&k).unwrap();
    }
    let frags: Vec<_> = lb.dp.fragments().keys().map(Result::unwrap).collect();
    for k in frags {
        lb.dp.fragments().remove(&k).unwrap();
    }
    result
}

fn fixture(c: &Case) -> String {
    let mut s = format!("// settings.flags = {}, alt_mac = {}, then again = {:?}\nlet frames: &[&[u8]] = &[\n", c.flags & 3, c.alt_mac, c.again);
    for r in &c.frames {
        let hex: Vec<String> = build(r).iter().map(|b| format!("0x{b:02x}")).collect();
        s += &format!("    &[{}],\n", hex.join(", "));
    }
    s + "];"
}

/// CONFIG's VIPs, ports and protocols reached by layer-3 return: TCP by IPIP (4in4, 4in6,
/// 6in6), UDP by GUE; with `Lb::l3`'s path MTU small enough that some frames do not fit.
fn l3_model_config() -> String {
    CONFIG
        .replace("protocol = \"tcp\"\n", "protocol = \"tcp\"\nforward = \"ipip\"\n")
        .replace("protocol = \"udp\"\n", "protocol = \"udp\"\nforward = \"gue\"\n")
        .replace("address = \"10.0.0.13\"", "address = \"2001:db8:1::13\"")
        .replace("address = \"10.0.0.", "address = \"10.1.0.")
        .replace("address = \"2001:db8::", "address = \"2001:db8:1::")
}

#[test]
fn generated_frames_agree_with_the_reference_model() {
    require_root!();
    agree(Lb::new(CONFIG), 1);
}

#[test]
fn generated_frames_agree_with_the_reference_model_in_layer_3() {
    require_root!();
    agree(Lb::l3(&l3_model_config(), 150), 2);
}

/// Runs the cases against `lb`; `part` varies the default seed.
fn agree(mut lb: Lb, part: u64) {
    lb.dp.set_not_accepted(&[IpAddr::from(VIP), IpAddr::from(v6(0x100))]).unwrap();
    let mut base = tables(&mut lb);
    // Too-big replies without a budget: the model leaves per-second budgets out.
    base.settings.icmp_too_big_per_cpu = u32::MAX;
    let cases: u32 = std::env::var("MODEL_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(6_000);
    let seed: u64 = std::env::var("MODEL_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(15) * part;
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let config = PtConfig { cases, failure_persistence: None, max_shrink_iters: 2000, ..PtConfig::default() };
    let mut runner = TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes));
    let lb = std::cell::RefCell::new(lb);
    let (mut frames, mut covered) = (0u64, 0u64);
    let counts = std::cell::RefCell::new((0u64, 0u64));
    let result = runner.run(&case(), |c| {
        let mut n = counts.borrow_mut();
        n.0 += c.frames.len() as u64 + c.again.is_some() as u64;
        run_case(&mut lb.borrow_mut(), &base, &c, &mut n.1)
    });
    (frames, covered) = (frames + counts.borrow().0, covered + counts.borrow().1);
    let (tx, reasons) = SEEN.with(|s| s.borrow().clone());
    let _ = writeln!(std::io::stderr(), "model (part {part}): {cases} cases (seed {seed}), {frames} frames, {covered} decided by the model, {tx} forwarded; counters {reasons:?}");
    match result {
        Ok(()) => {}
        Err(TestError::Fail(why, c)) => panic!("program and model disagree: {why}\nminimal case, as a fixture:\n{}", fixture(&c)),
        Err(e) => panic!("{e}"),
    }
}
