//! A reference model of the XDP balancer's decision (fj-lb-ebpf `balancer`, `parse`, `flow`,
//! `frag`, `forward`) in plain Rust, for the property tests that run generated frames through
//! the real program (fj-lb/tests/datapath_model.rs) and compare: verdict, counters, output
//! frame.
//!
//! Modelled: the destination-MAC checks (ours, the alternative MAC, group MACs), the
//! ethertype (IPv4, IPv6, VLAN tags, others), IPv4 (version, header length and options, total
//! length against the frame, fragment bits), IPv6 (version, payload length, the extension
//! header walk: hop-by-hop, destination options, routing with and without segments left,
//! fragment headers, the other extension values), TCP and UDP headers inside the IP packet,
//! the service lookup, Accept_Mode (not-accepted VIPs), the flow table (hit, miss, repin,
//! stale owner, dead backend), the Maglev pick with the shared hash, fragments (a first
//! fragment tracked, a later one followed, orphans dropped or passed), layer-2 direct return
//! (the MAC rewrite) and the per-service and per-backend counters.
//!
//!
//! ICMP and ICMPv6: neighbour discovery passed, errors about a balanced flow (the embedded
//! header from the VIP) steered to the flow's backend without touching the flow table, other
//! ICMP passed or refused.
//!
//! Layer-3 return: IPIP (4in4, 6in6, 4in6, 6in4) and GUE outer headers byte for byte (outer
//! sources from the flow, checksums, the GUE UDP checksum over the inner one), the path MTU
//! check, too-big packets dropped when no reply may be sent, and the fragmentation-needed /
//! packet-too-big replies built byte for byte.
//!
//! Not modelled (the model says [`Outcome::Unmodelled`]): the per-second budgets, the reply
//! one (`icmp_too_big_per_cpu` must be 0 or unlimited, `u32::MAX`) and the new-flow cap
//! (`max_new_flows` must be 0).
use std::collections::{HashMap, HashSet};

use fj_lb_common::{
    BACKEND_ALIVE, Backend, FAMILY_V4, FAMILY_V6, FORWARD_DSR, FORWARD_GUE, FlowKey, FlowValue, FragKey, FragValue, NO_BACKEND,
    PROTO_ICMP, PROTO_ICMPV6, PROTO_IPIP, PROTO_IPV6, PROTO_TCP, PROTO_UDP, SETTINGS_NOT_ACCEPTED, SETTINGS_PASS_ORPHAN_FRAGMENTS, ServiceKey,
    ServiceValue, Settings, Stat, hash::{flow_hash, vip_filter_bit},
};

/// XDP verdicts as the kernel numbers them.
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;

const ETH_LEN: usize = 14;
const IPV4_LEN: usize = 20;
const IPV6_LEN: usize = 40;
const TCP_LEN: usize = 20;
const UDP_LEN: usize = 8;
/// As `parse::MAX_EXT_HEADERS`.
const MAX_EXT_HEADERS: usize = 4;
const IPV6_EXT_HEADERS: [u8; 11] = [0, 43, 44, 50, 51, 60, 135, 139, 140, 253, 254];

/// The maps the program reads, as plain collections. `flows` and `fragments` are updated by
/// [`decide`] as the program updates its maps.
#[derive(Debug, Clone, Default)]
pub struct Tables {
    pub settings: Settings,
    pub services: HashMap<ServiceKey, ServiceValue>,
    /// Indexed by backend id.
    pub backends: Vec<Backend>,
    pub maglev: Vec<u32>,
    pub flows: HashMap<FlowKey, FlowValue>,
    pub fragments: HashMap<FragKey, FragValue>,
    /// Addresses (16 bytes, family) with Accept_Mode false.
    pub not_accepted: HashSet<([u8; 16], u8)>,
}

impl Tables {
    /// Whether some service has `addr` as its VIP (the program's `VIPS` map).
    fn is_vip(&self, addr: &[u8; 16], family: u8) -> bool {
        self.services.keys().any(|k| k.addr == *addr && k.family == family)
    }

    /// The program's VIP filter: the bit of `addr` set by some service's VIP (a set bit only
    /// means perhaps).
    fn maybe_vip(&self, addr: &[u8; 16]) -> bool {
        let bit = vip_filter_bit(addr);
        self.services.keys().any(|k| vip_filter_bit(&k.addr) == bit)
    }
}

/// What the program does with one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Decided(Decision),
    /// A path the model leaves out (see the module's documentation).
    Unmodelled(&'static str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub action: u32,
    /// Every global counter incremented, once per increment, in no particular order.
    pub stats: Vec<Stat>,
    /// For a forwarded frame: the service id, the backend id and the bytes counted.
    pub forwarded: Option<(u32, u32, u64)>,
    /// The frame as the program leaves it.
    pub frame: Vec<u8>,
}

#[derive(Clone, Copy)]
enum Frag {
    None,
    First,
    Later,
}

struct L3 {
    l4_off: usize,
    ip_end: usize,
    ip_len: u32,
    tos: u8,
    df: bool,
    proto: u8,
    frag: Frag,
    frag_proto: u8,
    frag_id: u32,
}

fn be16(f: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([f[off], f[off + 1]])
}

/// Decides `frame` as the program would, updating the flow and fragment tables.
pub fn decide(t: &mut Tables, frame: &[u8]) -> Outcome {
    let mut stats = Vec::new();
    match balance(t, frame, &mut stats) {
        Err(Unmodelled(why)) => Outcome::Unmodelled(why),
        Ok(Ok((counted, out))) => {
            if counted.is_some() {
                stats.push(Stat::Forwarded);
            }
            Outcome::Decided(Decision {
                action: XDP_TX,
                stats,
                forwarded: counted.map(|(svc, backend)| (svc, backend, frame.len() as u64)),
                frame: out,
            })
        }
        Ok(Err((stat, action))) => {
            stats.push(stat);
            Outcome::Decided(Decision { action, stats, forwarded: None, frame: frame.to_vec() })
        }
    }
}

struct Unmodelled(&'static str);

/// Sent on to the backend's MAC, with the (service, backend) counted (none for a steered ICMP
/// error), or a reason and verdict.
type Forward = Result<(Option<(u32, u32)>, Vec<u8>), (Stat, u32)>;

fn balance(t: &mut Tables, f: &[u8], stats: &mut Vec<Stat>) -> Result<Forward, Unmodelled> {
    let s = t.settings;
    if f.len() < 6 {
        return Ok(Err((Stat::PassMalformed, XDP_PASS)));
    }
    let dst: [u8; 6] = f[..6].try_into().unwrap();
    let unicast = dst[0] & 1 == 0;
    if unicast && dst != s.lb_mac && (s.alt_mac == [0; 6] || dst != s.alt_mac) {
        return Ok(Err((Stat::PassOtherHost, XDP_PASS)));
    }
    let group = !unicast;
    let check_vips = s.flags & SETTINGS_NOT_ACCEPTED != 0;
    let mut key = FlowKey::default();
    let l3 = match parse_l3(f, &mut key) {
        Ok(l3) => l3,
        Err(stat) => return Ok(Err(refuse_or_pass(t, &key, stat, check_vips))),
    };
    match (l3.proto, l3.frag) {
        (PROTO_TCP | PROTO_UDP, Frag::Later) => {
            let fk = frag_key(&key, &l3);
            if let Some(v) = t.fragments.get(&fk) {
                key.sport = v.sport;
                key.dport = v.dport;
                stats.push(Stat::FragmentFollowed);
            } else if !t.is_vip(&key.dst, key.family) {
                return Ok(Err((Stat::PassFragment, XDP_PASS)));
            } else if s.flags & SETTINGS_PASS_ORPHAN_FRAGMENTS != 0 {
                return Ok(Err((Stat::PassFragmentOrphan, XDP_PASS)));
            } else {
                return Ok(Err((Stat::DropFragmentOrphan, XDP_DROP)));
            }
        }
        (PROTO_TCP | PROTO_UDP, _) => {
            if let Err(stat) = parse_ports(f, &mut key, &l3) {
                return Ok(Err(refuse_or_pass(t, &key, stat, check_vips)));
            }
        }
        (PROTO_ICMP | PROTO_ICMPV6, Frag::None) => return steer(t, f, &mut key, &l3, group, check_vips, stats),
        (_, Frag::Later) => return Ok(Err((Stat::PassFragment, XDP_PASS))),
        _ => return Ok(Err(refuse_or_pass(t, &key, Stat::PassNotL4, check_vips))),
    }
    if group {
        return Ok(Err((Stat::PassMulticast, XDP_PASS)));
    }
    if !t.maybe_vip(&key.dst) {
        return Ok(Err(refuse_or_pass(t, &key, Stat::PassNotService, check_vips)));
    }
    // The flow table before the services, as the program: a hit needs no service.
    let pinned = t.flows.get(&key).copied();
    let hit = pinned.and_then(|v| pinned_backend(t, &v).map(|b| (v.backend, b)));
    let (id, backend) = match hit {
        Some(hit) => {
            stats.push(Stat::FlowHit);
            hit
        }
        None => {
            let skey = ServiceKey { addr: key.dst, port: key.dport, proto: key.proto, family: key.family };
            let Some(svc) = t.services.get(&skey).copied() else {
                return Ok(Err(refuse_or_pass(t, &key, Stat::PassNotService, check_vips)));
            };
            if s.max_new_flows != 0 {
                return Err(Unmodelled("the new-flow cap"));
            }
            match pick_new(t, &key, &svc, pinned.is_some(), stats) {
                Ok(b) => b,
                Err(stat) => return Ok(Err((stat, XDP_DROP))),
            }
        }
    };
    if backend.mac == [0; 6] {
        return Ok(Err((Stat::DropBackendUnresolved, XDP_DROP)));
    }
    if let Frag::First = l3.frag {
        t.fragments.insert(frag_key(&key, &l3), FragValue { sport: key.sport, dport: key.dport });
        stats.push(Stat::FragmentTracked);
    }
    Ok(forward(t, f, &backend, &key, &l3, true, stats)?.map(|(sent, out)| (sent.then_some((backend.service, id)), out)))
}

/// Ok((true, frame)): sent on to the backend; Ok((false, frame)): a too-big reply instead.
type Sent = Result<(bool, Vec<u8>), (Stat, u32)>;

/// As `balancer::forward`: the MACs rewritten (layer 2), or the packet wrapped for the
/// backend (IPIP, GUE) when it fits the path. Too big: dropped, or (`may_reply`) answered
/// with ICMP.
#[allow(clippy::too_many_arguments)]
fn forward(t: &Tables, f: &[u8], b: &Backend, key: &FlowKey, l3: &L3, may_reply: bool, stats: &mut Vec<Stat>) -> Result<Sent, Unmodelled> {
    let s = &t.settings;
    if b.forward == FORWARD_DSR {
        let mut out = f.to_vec();
        out[..6].copy_from_slice(&b.mac);
        out[6..12].copy_from_slice(&s.lb_mac);
        return Ok(Ok((true, out)));
    }
    let gue = b.forward == FORWARD_GUE;
    let outer_v6 = b.family == FAMILY_V6;
    let over = if outer_v6 { IPV6_LEN } else { IPV4_LEN } as u32 + if gue { UDP_LEN as u32 } else { 0 };
    if l3.ip_len + over > b.mtu as u32 {
        // As `icmp::too_big`: IPv4 without DF cannot be answered; no reply budget, none sent.
        return if !may_reply || (key.family == FAMILY_V4 && !l3.df) {
            Ok(Err((Stat::DropTooBig, XDP_DROP)))
        } else if s.icmp_too_big_per_cpu == 0 {
            Ok(Err((Stat::DropTooBigRateLimited, XDP_DROP)))
        } else if s.icmp_too_big_per_cpu != u32::MAX {
            Err(Unmodelled("the too-big reply budget"))
        } else {
            Ok(too_big_reply(f, key, (b.mtu as u32).saturating_sub(over)).map(|r| {
                stats.push(Stat::IcmpTooBigSent);
                (false, r)
            }))
        };
    }
    let inner_sum = if gue { gue_inner_sum(f, l3, key.family == FAMILY_V6) } else { None };
    let w = |i: usize| u32::from_be_bytes(key.src[i..i + 4].try_into().unwrap());
    let entropy = (w(0) ^ w(4) ^ w(8) ^ w(12)) ^ (key.sport as u32).wrapping_mul(0x9e37_79b1);
    let e16 = (entropy ^ (entropy >> 16)) as u16;
    let proto = if gue {
        PROTO_UDP
    } else if key.family == FAMILY_V6 {
        PROTO_IPV6
    } else {
        PROTO_IPIP
    };
    let udp_len = l3.ip_len + UDP_LEN as u32;
    let mut out = b.mac.to_vec();
    out.extend_from_slice(&s.lb_mac);
    let pseudo = if outer_v6 {
        out.extend_from_slice(&[0x86, 0xdd]);
        let vtc = (6u32 << 28) | ((l3.tos as u32) << 20) | (entropy & 0x000f_ffff);
        let mut src = [0u8; 16];
        src[..8].copy_from_slice(&s.encap_src_v6[..8]);
        src[12..].copy_from_slice(&entropy.to_be_bytes());
        out.extend_from_slice(&vtc.to_be_bytes());
        out.extend_from_slice(&((if gue { udp_len } else { l3.ip_len }) as u16).to_be_bytes());
        out.extend_from_slice(&[proto, 64]);
        out.extend_from_slice(&src);
        out.extend_from_slice(&b.addr);
        words(&src) + words(&b.addr) + PROTO_UDP as u32 + udp_len
    } else {
        out.extend_from_slice(&[0x08, 0x00]);
        let src = [s.encap_src_v4[0], s.encap_src_v4[1], (e16 >> 8) as u8, e16 as u8];
        let dst = &b.addr[..4];
        let mut h = vec![0x45, l3.tos];
        h.extend_from_slice(&((l3.ip_len + over) as u16).to_be_bytes());
        h.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0]);
        h.extend_from_slice(&src);
        h.extend_from_slice(dst);
        let sum = !fold(words(&h));
        h[10..12].copy_from_slice(&sum.to_be_bytes());
        out.extend_from_slice(&h);
        words(&src) + words(dst) + PROTO_UDP as u32 + udp_len
    };
    if gue {
        let sport = if e16 == 0 { 1 } else { e16 };
        let check = inner_sum.map_or(0, |inner| match !fold(inner + pseudo + sport as u32 + b.gue_port as u32 + udp_len) {
            0 => 0xffff,
            c => c,
        });
        out.extend_from_slice(&sport.to_be_bytes());
        out.extend_from_slice(&b.gue_port.to_be_bytes());
        out.extend_from_slice(&(udp_len as u16).to_be_bytes());
        out.extend_from_slice(&check.to_be_bytes());
    }
    out.extend_from_slice(&f[ETH_LEN..]);
    stats.push(if gue { Stat::ForwardedGue } else { Stat::ForwardedIpip });
    Ok(Ok((true, out)))
}

/// As `icmp::reply_too_big`: the frame cut to 128 bytes of the packet and turned into
/// fragmentation-needed (IPv4) or packet-too-big (IPv6) from the VIP back to the sender.
fn too_big_reply(f: &[u8], key: &FlowKey, mtu: u32) -> Result<Vec<u8>, (Stat, u32)> {
    const QUOTE: usize = 128;
    if f.len() < ETH_LEN + QUOTE {
        return Err((Stat::DropTooBig, XDP_DROP));
    }
    let quote = &f[ETH_LEN..ETH_LEN + QUOTE];
    let mut out = f[6..12].to_vec();
    out.extend_from_slice(&f[..6]);
    let icmp_len = (8 + QUOTE) as u32;
    if key.family == FAMILY_V6 {
        let mtu = mtu.max(1280);
        out.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
        out.extend_from_slice(&(icmp_len as u16).to_be_bytes());
        out.extend_from_slice(&[PROTO_ICMPV6, 64]);
        out.extend_from_slice(&key.dst);
        out.extend_from_slice(&key.src);
        let sum = words(&key.dst) + words(&key.src) + icmp_len + PROTO_ICMPV6 as u32 + (2 << 8) + (mtu >> 16) + (mtu & 0xffff) + words(quote);
        out.extend_from_slice(&[2, 0]);
        out.extend_from_slice(&(!fold(sum)).to_be_bytes());
        out.extend_from_slice(&mtu.to_be_bytes());
    } else {
        let mtu = mtu & 0xffff;
        let mut h = vec![0x45, 0];
        h.extend_from_slice(&((20 + icmp_len) as u16).to_be_bytes());
        h.extend_from_slice(&[0, 0, 0, 0, 64, PROTO_ICMP, 0, 0]);
        h.extend_from_slice(&key.dst[..4]);
        h.extend_from_slice(&key.src[..4]);
        let sum = !fold(words(&h));
        h[10..12].copy_from_slice(&sum.to_be_bytes());
        out.extend_from_slice(&[0x08, 0x00]);
        out.extend_from_slice(&h);
        out.extend_from_slice(&[3, 4]);
        out.extend_from_slice(&(!fold((3 << 8 | 4) + mtu + words(quote))).to_be_bytes());
        out.extend_from_slice(&[0, 0, (mtu >> 8) as u8, mtu as u8]);
    }
    out.extend_from_slice(quote);
    Ok(out)
}

fn words(b: &[u8]) -> u32 {
    b.chunks(2).map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32).sum()
}

fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// As `encap::gue_inner_sum`: the inner transport checksum's contribution, when the inner
/// packet is one whose checksum the outer UDP one can cover.
fn gue_inner_sum(f: &[u8], l3: &L3, inner_v6: bool) -> Option<u32> {
    if !matches!(l3.frag, Frag::None) {
        return None;
    }
    match l3.proto {
        PROTO_TCP if l3.l4_off + TCP_LEN <= l3.ip_end => {}
        PROTO_UDP if l3.l4_off + UDP_LEN <= l3.ip_end && f[l3.l4_off + 6..l3.l4_off + 8] != [0, 0] => {}
        _ => return None,
    }
    let segment = (l3.ip_end - l3.l4_off) as u32 + l3.proto as u32;
    if inner_v6 {
        if l3.l4_off != ETH_LEN + IPV6_LEN {
            return None;
        }
        let addrs = words(&f[22..54]);
        Some(words(&f[14..22]) + addrs + (!fold(addrs + segment)) as u32)
    } else {
        Some((!fold(words(&f[26..34]) + segment)) as u32)
    }
}

/// As `icmp::steer`: an ICMP error about a balanced flow goes where the flow goes, without
/// touching the flow table.
fn steer(t: &Tables, f: &[u8], key: &mut FlowKey, l3: &L3, group: bool, check_vips: bool, stats: &mut Vec<Stat>) -> Result<Forward, Unmodelled> {
    let pass = |s: Stat| Ok(Err((s, XDP_PASS)));
    let refuse = |key: &FlowKey, s: Stat| Ok(Err(refuse_or_pass(t, key, s, check_vips)));
    if l3.l4_off + 8 > l3.ip_end {
        return pass(Stat::PassMalformed);
    }
    let kind = f[l3.l4_off];
    let inner = l3.l4_off + 8;
    let (inner_proto, ports_off, client) = if key.family == FAMILY_V4 {
        if l3.proto != PROTO_ICMP || kind != 3 {
            return refuse(key, Stat::PassNotL4);
        }
        if inner + IPV4_LEN > l3.ip_end {
            return pass(Stat::PassMalformed);
        }
        let ihl = (f[inner] & 0x0f) as usize * 4;
        if f[inner] >> 4 != 4 || ihl < IPV4_LEN {
            return pass(Stat::PassMalformed);
        }
        if f[inner + 12..inner + 16] != key.dst[..4] {
            return refuse(key, Stat::PassIcmpNotService);
        }
        let mut client = [0u8; 16];
        client[..4].copy_from_slice(&f[inner + 16..inner + 20]);
        (f[inner + 9], inner + ihl, client)
    } else {
        if l3.proto != PROTO_ICMPV6 {
            return refuse(key, Stat::PassNotL4);
        }
        if (133..=137).contains(&kind) {
            return pass(Stat::PassNeighbourDiscovery);
        }
        if kind != 1 && kind != 2 {
            return refuse(key, Stat::PassNotL4);
        }
        if inner + IPV6_LEN > l3.ip_end {
            return pass(Stat::PassMalformed);
        }
        if f[inner + 8..inner + 24] != key.dst {
            return refuse(key, Stat::PassIcmpNotService);
        }
        (f[inner + 6], inner + IPV6_LEN, f[inner + 24..inner + 40].try_into().unwrap())
    };
    if inner_proto != PROTO_TCP && inner_proto != PROTO_UDP {
        return refuse(key, Stat::PassIcmpNotService);
    }
    if ports_off + 4 > l3.ip_end {
        return pass(Stat::PassMalformed);
    }
    if group {
        return pass(Stat::PassMulticast);
    }
    let (vip_port, client_port) = (be16(f, ports_off), be16(f, ports_off + 2));
    let skey = ServiceKey { addr: key.dst, port: vip_port, proto: inner_proto, family: key.family };
    let Some(svc) = t.services.get(&skey).copied() else {
        return refuse(key, Stat::PassIcmpNotService);
    };
    key.src = client;
    key.sport = client_port;
    key.dport = vip_port;
    key.proto = inner_proto;
    let flow = t.flows.get(key).and_then(|v| pinned_backend(t, v)).filter(|b| b.service == svc.id);
    let Some(backend) = flow.or_else(|| maglev_pick(t, key, &svc).and_then(|id| live_backend(t, id, svc.id))) else {
        return Ok(Err((Stat::DropNoBackend, XDP_DROP)));
    };
    if backend.mac == [0; 6] {
        return Ok(Err((Stat::DropBackendUnresolved, XDP_DROP)));
    }
    let out = forward(t, f, &backend, key, l3, false, stats)?;
    if out.is_ok() {
        stats.push(Stat::IcmpSteered);
    }
    Ok(out.map(|(_, o)| (None, o)))
}

fn maglev_pick(t: &Tables, key: &FlowKey, svc: &ServiceValue) -> Option<u32> {
    if svc.table_size == 0 {
        return None;
    }
    let slot = flow_hash(key, t.settings.hash_seed) % svc.table_size;
    t.maglev.get(svc.table_base.wrapping_add(slot) as usize).copied().filter(|id| *id != NO_BACKEND)
}

fn frag_key(key: &FlowKey, l3: &L3) -> FragKey {
    FragKey { src: key.src, dst: key.dst, id: l3.frag_id, proto: l3.frag_proto, family: key.family, _pad: [0; 2] }
}

fn refuse_or_pass(t: &Tables, key: &FlowKey, stat: Stat, check_vips: bool) -> (Stat, u32) {
    if check_vips
        && key.family != 0
        && matches!(stat, Stat::PassNotService | Stat::PassNotL4 | Stat::PassIcmpNotService)
        && t.not_accepted.contains(&(key.dst, key.family))
    {
        return (Stat::DropNotAccepted, XDP_DROP);
    }
    (stat, XDP_PASS)
}

fn live_backend(t: &Tables, id: u32, service: u32) -> Option<Backend> {
    let b = *t.backends.get(id as usize)?;
    (b.service == service && b.flags & BACKEND_ALIVE != 0).then_some(b)
}

/// As `flow::pinned`: the flow's backend while alive and of the generation it was pinned under.
fn pinned_backend(t: &Tables, v: &FlowValue) -> Option<Backend> {
    let b = *t.backends.get(v.backend as usize)?;
    (b.generation == v.generation && b.flags & BACKEND_ALIVE != 0).then_some(b)
}

fn pick_new(t: &mut Tables, key: &FlowKey, svc: &ServiceValue, repinned: bool, stats: &mut Vec<Stat>) -> Result<(u32, Backend), Stat> {
    let id = maglev_pick(t, key, svc).ok_or(Stat::DropNoBackend)?;
    let b = live_backend(t, id, svc.id).ok_or(Stat::DropNoBackend)?;
    t.flows.insert(*key, FlowValue { backend: id, service: svc.id, generation: b.generation });
    stats.push(if repinned { Stat::FlowRepinned } else { Stat::FlowMiss });
    Ok((id, b))
}

fn parse_l3(f: &[u8], key: &mut FlowKey) -> Result<L3, Stat> {
    if f.len() < ETH_LEN {
        return Err(Stat::PassMalformed);
    }
    match be16(f, 12) {
        0x0800 => parse_ipv4(f, key),
        0x86dd => parse_ipv6(f, key),
        0x8100 | 0x88a8 => Err(Stat::PassVlan),
        _ => Err(Stat::PassNotIp),
    }
}

fn parse_ipv4(f: &[u8], key: &mut FlowKey) -> Result<L3, Stat> {
    if f.len() < ETH_LEN + IPV4_LEN {
        return Err(Stat::PassMalformed);
    }
    let ip = &f[ETH_LEN..];
    if ip[0] >> 4 != 4 {
        return Err(Stat::PassMalformed);
    }
    let ihl = (ip[0] & 0x0f) as usize * 4;
    if ihl < IPV4_LEN {
        return Err(Stat::PassMalformed);
    }
    let tot_len = be16(ip, 2) as usize;
    let ip_end = ETH_LEN + tot_len;
    if tot_len < ihl || ip_end > f.len() {
        return Err(Stat::PassMalformed);
    }
    let frag_off = be16(ip, 6);
    let frag = if frag_off & 0x1fff != 0 {
        Frag::Later
    } else if frag_off & 0x2000 != 0 {
        Frag::First
    } else {
        Frag::None
    };
    key.family = FAMILY_V4;
    key.proto = ip[9];
    key.src[..4].copy_from_slice(&ip[12..16]);
    key.dst[..4].copy_from_slice(&ip[16..20]);
    Ok(L3 {
        l4_off: ETH_LEN + ihl,
        ip_end,
        ip_len: tot_len as u32,
        tos: ip[1],
        df: frag_off & 0x4000 != 0,
        proto: ip[9],
        frag,
        frag_proto: ip[9],
        frag_id: be16(ip, 4) as u32,
    })
}

fn parse_ipv6(f: &[u8], key: &mut FlowKey) -> Result<L3, Stat> {
    if f.len() < ETH_LEN + IPV6_LEN {
        return Err(Stat::PassMalformed);
    }
    let ip = &f[ETH_LEN..];
    if ip[0] >> 4 != 6 {
        return Err(Stat::PassMalformed);
    }
    let ip_end = ETH_LEN + IPV6_LEN + be16(ip, 4) as usize;
    if ip_end > f.len() {
        return Err(Stat::PassMalformed);
    }
    key.family = FAMILY_V6;
    key.src.copy_from_slice(&ip[8..24]);
    key.dst.copy_from_slice(&ip[24..40]);
    let mut next = ip[6];
    let mut off = ETH_LEN + IPV6_LEN;
    let (mut frag, mut frag_proto, mut frag_id) = (Frag::None, 0, 0);
    for _ in 0..MAX_EXT_HEADERS {
        match next {
            0 | 60 | 43 => {
                if off + 4 > ip_end {
                    return Err(Stat::PassMalformed);
                }
                if next == 43 && f[off + 3] != 0 {
                    return Err(Stat::PassIpv6ExtHeader);
                }
                next = f[off];
                off += (f[off + 1] as usize + 1) * 8;
            }
            44 => {
                if off + 8 > ip_end {
                    return Err(Stat::PassMalformed);
                }
                let offset_flags = be16(f, off + 2);
                next = f[off];
                frag_proto = next;
                frag_id = u32::from_be_bytes(f[off + 4..off + 8].try_into().unwrap());
                off += 8;
                if offset_flags & 0xfff8 != 0 {
                    frag = Frag::Later;
                    break;
                }
                if offset_flags & 1 != 0 {
                    frag = Frag::First;
                }
            }
            _ => break,
        }
    }
    if !matches!(frag, Frag::Later) && IPV6_EXT_HEADERS.contains(&next) {
        return Err(Stat::PassIpv6ExtHeader);
    }
    if off > ip_end {
        return Err(Stat::PassMalformed);
    }
    key.proto = next;
    Ok(L3 { l4_off: off, ip_end, ip_len: (ip_end - ETH_LEN) as u32, tos: (f[14] << 4) | (f[15] >> 4), df: true, proto: next, frag, frag_proto, frag_id })
}

fn parse_ports(f: &[u8], key: &mut FlowKey, l3: &L3) -> Result<(), Stat> {
    let need = if key.proto == PROTO_TCP { TCP_LEN } else { UDP_LEN };
    if l3.l4_off + need > l3.ip_end {
        return Err(Stat::PassMalformed);
    }
    if key.proto == PROTO_TCP && f[l3.l4_off + 12] >> 4 < 5 {
        return Err(Stat::PassMalformed);
    }
    key.sport = be16(f, l3.l4_off);
    key.dport = be16(f, l3.l4_off + 2);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LB: [u8; 6] = [2, 0x1b, 0, 0, 0, 1];

    fn tables() -> Tables {
        let mut t = Tables { settings: Settings { lb_mac: LB, ..Default::default() }, ..Default::default() };
        let mut vip = [0u8; 16];
        vip[..4].copy_from_slice(&[10, 0, 0, 100]);
        t.services.insert(
            ServiceKey { addr: vip, port: 80, proto: PROTO_TCP, family: FAMILY_V4 },
            ServiceValue { id: 0, table_base: 0, table_size: 1 },
        );
        t.backends.push(Backend { mac: [2, 0xbe, 0, 0, 4, 11], family: FAMILY_V4, flags: BACKEND_ALIVE, generation: 1, ..Default::default() });
        t.maglev.push(0);
        t
    }

    fn syn() -> Vec<u8> {
        let mut f = LB.to_vec();
        f.extend([2, 0xc1, 0, 0, 0, 1, 0x08, 0x00]);
        f.extend([0x45, 0, 0, 40, 0, 1, 0, 0, 64, 6, 0, 0, 10, 0, 0, 2, 10, 0, 0, 100]);
        f.extend([0x30, 0x39, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 2, 0xff, 0xff, 0, 0, 0, 0]);
        f
    }

    #[test]
    fn a_syn_to_the_service_is_forwarded_then_hits_its_flow() {
        let mut t = tables();
        let Outcome::Decided(d) = decide(&mut t, &syn()) else { panic!() };
        assert_eq!(d.action, XDP_TX);
        assert_eq!(&d.frame[..6], &[2, 0xbe, 0, 0, 4, 11]);
        assert_eq!(&d.frame[12..], &syn()[12..]);
        assert!(d.stats.contains(&Stat::FlowMiss));
        let Outcome::Decided(d) = decide(&mut t, &syn()) else { panic!() };
        assert!(d.stats.contains(&Stat::FlowHit));
    }

    #[test]
    fn every_truncation_is_passed_untouched() {
        for n in 0..syn().len() {
            let f = &syn()[..n];
            let Outcome::Decided(d) = decide(&mut tables(), f) else { panic!() };
            assert_eq!((d.action, d.frame.as_slice()), (XDP_PASS, f), "{n}");
        }
    }
}
