//! Types shared by the XDP program and the daemon. Every map key and value lives here, once:
//! the kernel side and the user side can never disagree on a layout.
#![no_std]

pub mod hash;

/// Address family tags stored in keys (not AF_* values: these are hashed and must be stable).
pub const FAMILY_V4: u8 = 4;
pub const FAMILY_V6: u8 = 6;

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;
/// IPv4 in IP (IPIP, RFC 2003) and IPv6 in IP (RFC 2473, RFC 4213).
pub const PROTO_IPIP: u8 = 4;
pub const PROTO_IPV6: u8 = 41;

/// fj-lb's default UDP port for GUE (Katran's).
pub const DEFAULT_GUE_PORT: u16 = 6080;

/// Backend id stored in a Maglev slot when a service has no usable backend.
pub const NO_BACKEND: u32 = u32::MAX;

/// The layout of the maps a daemon leaves pinned for the next one (keys, values, how ids are
/// used). A daemon adopts a previous daemon's flow table only under the same number: bump it
/// with any change to `FlowKey`, `FlowValue`, `Backend`, `ServiceKey` or `ServiceValue`.
pub const MAP_LAYOUT: u32 = 3;

/// Names of the maps, shared so that the daemon, the CLI and the tests look up the same ones.
pub mod map_names {
    pub const SERVICES: &str = "SERVICES";
    pub const BACKENDS: &str = "BACKENDS";
    pub const MAGLEV: &str = "MAGLEV";
    pub const FLOWS: &str = "FLOWS";
    pub const SETTINGS: &str = "SETTINGS";
    pub const SERVICE_COUNTERS: &str = "SERVICE_COUNTERS";
    pub const BACKEND_COUNTERS: &str = "BACKEND_COUNTERS";
    pub const STATS: &str = "STATS";
    pub const NOT_ACCEPTED: &str = "NOT_ACCEPTED";
    pub const FLOOD: &str = "FLOOD";
    pub const FRAGMENTS: &str = "FRAGMENTS";
    pub const VIPS: &str = "VIPS";
    pub const ICMP_RATE: &str = "ICMP_RATE";
    pub const VIP_FILTER: &str = "VIP_FILTER";
    /// `fj-lb trace`: the ring buffer the program writes one `TraceRecord` a matching packet
    /// into, and the single-entry array holding the `TraceFilter` saying which match.
    pub const TRACE: &str = "TRACE";
    pub const TRACE_FILTER: &str = "TRACE_FILTER";
    pub const ALL: [&str; 16] = [
        SERVICES,
        BACKENDS,
        MAGLEV,
        FLOWS,
        SETTINGS,
        SERVICE_COUNTERS,
        BACKEND_COUNTERS,
        STATS,
        NOT_ACCEPTED,
        FLOOD,
        FRAGMENTS,
        VIPS,
        ICMP_RATE,
        VIP_FILTER,
        TRACE,
        TRACE_FILTER,
    ];
}

/// Names of the maps of the backends' decapsulation object (`fj-lb decap`).
pub mod decap_map_names {
    /// IPv4 VIPs (`[u8; 4]` keys) and IPv6 VIPs (`[u8; 16]`): one map each, so that no key
    /// carries padding.
    pub const VIPS4: &str = "DECAP_VIPS4";
    pub const VIPS6: &str = "DECAP_VIPS6";
    pub const CONFIG: &str = "DECAP_CONFIG";
    pub const STATS: &str = "DECAP_STATS";
    pub const ALL: [&str; 4] = [VIPS4, VIPS6, CONFIG, STATS];
}

/// Program names inside the two embedded objects. The balancer's object (`fj-lb`) holds
/// `BALANCER` alone, with the maps of `map_names::ALL`; the helpers' object (`fj-lb-aux`)
/// holds the programs of `AUX` and the generator's maps, for labs and benchmarks only, so that
/// loading the balancer never creates them.
pub mod program_names {
    /// The balancer, the one program of the `fj-lb` object.
    pub const BALANCER: &str = "fj_lb";
    /// In `fj-lb-aux`: attached to the far end of a veth so that frames sent with XDP_TX are
    /// delivered (`fj-lb xdp-pass`).
    pub const PASS: &str = "fj_lb_pass";
    /// In `fj-lb-aux`: MAC swap and XDP_TX, the floor the benchmarks measure the balancer
    /// against (`fj-lb xdp-pass --floor`).
    pub const FLOOR: &str = "fj_lb_floor";
    /// In `fj-lb-aux`: the floor with the frame's path after the LB the balancer's: the
    /// destination MAC becomes the one in `FLOOR_TO` (a backend's), the source the frame's
    /// old destination (the LB's), XDP_TX. As cheap as the swap, but its frames end where
    /// forwarded ones do, so a pipeline's time a packet compares like with like.
    pub const FLOOR_TO: &str = "fj_lb_floor_to";
    /// In `fj-lb-aux`: live-frames packet generator for the packet-rate benchmark
    /// (`fj-lb generate`).
    pub const GENERATOR: &str = "fj_lb_gen";
    /// In `fj-lb-aux`: the same generator with an IPv6 template.
    pub const GENERATOR6: &str = "fj_lb_gen6";
    /// Every program of `fj-lb-aux`.
    pub const AUX: [&str; 5] = [PASS, FLOOR, FLOOR_TO, GENERATOR, GENERATOR6];
    /// The one program of the `fj-lb-decap` object: attached to a backend's interface by
    /// `fj-lb decap`, it strips the outer header of IPIP / IP6IP6 / 4in6 / GUE packets.
    pub const DECAP: &str = "fj_lb_decap";
}

/// A service: (VIP, port, protocol). Addresses are in network byte order; an IPv4 address
/// fills the first four bytes and the rest stay zero. The port is in host byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ServiceKey {
    pub addr: [u8; 16],
    pub port: u16,
    pub proto: u8,
    pub family: u8,
}
const _: () = assert!(core::mem::size_of::<ServiceKey>() == 20);

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceValue {
    /// Index into the per-service counters; also stamped on backends.
    pub id: u32,
    /// Offset of this service's Maglev table inside the MAGLEV array. The daemon writes a new
    /// table elsewhere and then swaps this one field, so a packet sees the old table or the new.
    pub table_base: u32,
    pub table_size: u32,
}
const _: () = assert!(core::mem::size_of::<ServiceValue>() == 12);

/// Layer-2 direct return: only the MACs change.
pub const FORWARD_DSR: u16 = 0;
/// IPIP / IP6IP6 / 4in6, by the backend's family.
pub const FORWARD_IPIP: u16 = 1;
/// GUE variant 1: an outer IP header and a UDP header, then the inner packet.
pub const FORWARD_GUE: u16 = 2;

/// Set in `Backend::flags` while the backend may keep its established flows.
pub const BACKEND_ALIVE: u8 = 1;

/// One backend of one service. Everything a packet of an established flow needs is here, so
/// that a flow-table hit forwards without looking its service up.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backend {
    pub addr: [u8; 16],
    /// Where frames for this backend go: its own MAC (DSR), or the MAC of the next hop the
    /// kernel routes its address through (IPIP, GUE).
    pub mac: [u8; 6],
    pub family: u8,
    pub flags: u8,
    /// The service this backend id currently belongs to (ids are reused after removal).
    pub service: u32,
    /// Which allocation of this id the entry is: the daemon never gives two allocations the
    /// same number (0 is never used), and a flow remembers the one it was pinned under. A
    /// flow-table hit is trusted only while the two agree, so a flow whose service went away
    /// (and whose backend id was reused, for another service or another VIP) misses instead of
    /// being forwarded to a stranger.
    pub generation: u32,
    /// The largest IP packet the path to this backend carries (the route's MTU, else the
    /// interface's). An encapsulated packet must fit in it, outer header included.
    pub mtu: u16,
    /// How packets reach this backend, its service's mode: one of `FORWARD_*`.
    pub forward: u16,
    /// The UDP destination port of GUE (`FORWARD_GUE`), host byte order; 0 otherwise.
    pub gue_port: u16,
    pub _pad: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<Backend>() == 40);

/// One L4 flow as the balancer sees it. `_pad` is explicit because the key is hashed byte for
/// byte by the kernel: implicit padding could hold garbage and split one flow into many.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub family: u8,
    pub _pad: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<FlowKey>() == 40);

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowValue {
    pub backend: u32,
    pub service: u32,
    /// The backend's `generation` when the flow was pinned.
    pub generation: u32,
}
const _: () = assert!(core::mem::size_of::<FlowValue>() == 12);

/// Process-wide settings, a single-entry array.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// MAC of the interface the balancer is attached to: source of every forwarded frame.
    pub lb_mac: [u8; 6],
    /// A second MAC frames for us may carry (the VRRP virtual MAC), or zero.
    pub alt_mac: [u8; 6],
    pub hash_seed: u32,
    /// `SETTINGS_*` bits.
    pub flags: u32,
    /// New flows each CPU may insert into the flow table per second; above it (a SYN flood,
    /// spoofed sources) new flows are still hashed and forwarded but not inserted, so they
    /// cannot evict established ones. 0 = no cap.
    pub max_new_flows: u32,
    /// ICMP fragmentation-needed / packet-too-big replies each CPU may send per second; 0 =
    /// none (oversized packets are dropped and counted).
    pub icmp_too_big_per_cpu: u32,
    /// The /16 outer IPv4 sources of encapsulated packets come from: the first two bytes are
    /// the prefix, the last two are derived from the flow.
    pub encap_src_v4: [u8; 4],
    /// The /64 outer IPv6 sources come from: the first eight bytes; the rest from the flow.
    pub encap_src_v6: [u8; 16],
}
const _: () = assert!(core::mem::size_of::<Settings>() == 48);

/// The flood guard's per-CPU window: when it began and how many flows it inserted since.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FloodWindow {
    pub start_ns: u64,
    pub inserts: u64,
}
const _: () = assert!(core::mem::size_of::<FloodWindow>() == 16);

/// NOT_ACCEPTED holds addresses: look packets up in it (saves a hash lookup per packet that is
/// not for a service when it is empty, which is the common case).
pub const SETTINGS_NOT_ACCEPTED: u32 = 1;
/// A later fragment whose first fragment was not seen is passed to the host instead of dropped.
pub const SETTINGS_PASS_ORPHAN_FRAGMENTS: u32 = 2;

/// `fj-lb trace` is running: each packet's decision is checked against TRACE_FILTER and, if it
/// matches, written to the TRACE ring buffer. Off, tracing costs the hot path this one bit test.
pub const SETTINGS_TRACE: u32 = 4;

/// Bytes of the TRACE ring buffer (a power of two, a multiple of the page size): about 4,000
/// records; when the reader falls behind, further records are lost (the packets are not).
pub const TRACE_RING_BYTES: u32 = 256 * 1024;

/// `TraceFilter::fields` bits: which of the filter's fields a packet must match (all that
/// are set; none set matches every packet).
pub const TRACE_MATCH_DST: u32 = 1;
/// Destination port and protocol (with `TRACE_MATCH_DST`: one service).
pub const TRACE_MATCH_PORT: u32 = 2;
pub const TRACE_MATCH_SRC: u32 = 4;
pub const TRACE_MATCH_BACKEND: u32 = 8;
pub const TRACE_MATCH_STAT: u32 = 16;

/// Which packets `fj-lb trace` reports, as the daemon resolved the operator's names: the
/// value of TRACE_FILTER's one entry. Addresses as in `FlowKey`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TraceFilter {
    /// `TRACE_MATCH_*` bits.
    pub fields: u32,
    /// The `Stat` a packet's decision must be (`TraceDecision::stat`).
    pub stat: u32,
    /// The backend id a packet must have been sent to.
    pub backend: u32,
    /// Host byte order, as in `FlowKey`.
    pub dport: u16,
    pub proto: u8,
    /// The family of `dst` and `src` (both, when both are set).
    pub family: u8,
    pub dst: [u8; 16],
    pub src: [u8; 16],
}
const _: () = assert!(core::mem::size_of::<TraceFilter>() == 48);

/// `TraceDecision::how`: nothing was picked (the packet was passed or dropped before a backend).
pub const TRACE_PICK_NONE: u32 = 0;
/// The flow table had the flow, on a live backend.
pub const TRACE_PICK_FLOW: u32 = 1;
/// The Maglev table decided (a new flow, or one whose backend is gone): `slot` says where.
pub const TRACE_PICK_MAGLEV: u32 = 2;

/// One traced packet, as the program writes it into TRACE: the 5-tuple it was judged by and
/// the decision.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TraceRecord {
    /// The packet's 5-tuple as far as it was parsed (zero beyond that); for an ICMP error
    /// steered to a backend, the flow the error is about.
    pub key: FlowKey,
    pub decision: TraceDecision,
}
const _: () = assert!(core::mem::size_of::<TraceRecord>() == 64);

/// What was decided for a traced packet, and for a forwarded one where it went and why there.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TraceDecision {
    /// The decisive `Stat`: `Forwarded`, `IcmpSteered`, `IcmpTooBigSent`, or the pass or drop
    /// reason.
    pub stat: u32,
    /// The XDP action returned (`XDP_PASS` = 2, `XDP_TX` = 3, `XDP_DROP` = 1).
    pub action: u32,
    /// The backend id the packet was sent to, or `NO_BACKEND`.
    pub backend: u32,
    /// `TRACE_PICK_*`.
    pub how: u32,
    /// The Maglev slot (with `TRACE_PICK_MAGLEV`), else 0.
    pub slot: u32,
    /// The frame's length as received, bytes (for a too-big reply built in place of the
    /// packet, the reply's).
    pub len: u32,
}
const _: () = assert!(core::mem::size_of::<TraceDecision>() == 24);

/// A datagram being fragmented, as the key of FRAGMENTS: what RFC 791 / RFC 8200 say
/// identifies the fragments of one datagram (source, destination, identification, protocol).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FragKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// IPv4's 16-bit identification, or IPv6's 32-bit one (fragment header), host byte order.
    pub id: u32,
    pub proto: u8,
    pub family: u8,
    pub _pad: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<FragKey>() == 40);

/// The ports the first fragment carried, for the fragments after it (which carry none).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragValue {
    pub sport: u16,
    pub dport: u16,
}
const _: () = assert!(core::mem::size_of::<FragValue>() == 4);

/// The decapsulation program's settings, a single-entry array.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecapConfig {
    /// GUE's UDP destination port, host byte order.
    pub gue_port: u16,
    /// `DECAP_*` bits.
    pub flags: u16,
}
const _: () = assert!(core::mem::size_of::<DecapConfig>() == 4);

/// Decapsulate whatever the inner destination (`fj-lb decap --any-vip`).
pub const DECAP_ANY_VIP: u16 = 1;

/// A virtual address, as the key of NOT_ACCEPTED.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct VipKey {
    pub addr: [u8; 16],
    pub family: u8,
    pub _pad: [u8; 3],
}
const _: () = assert!(core::mem::size_of::<VipKey>() == 20);

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub packets: u64,
    pub bytes: u64,
}
const _: () = assert!(core::mem::size_of::<Counters>() == 16);

/// Declares a counter enum from one list: the enum, `COUNT`, `ALL` and `name()` all come from
/// it, so a counter cannot be declared and then left out of the list the daemon reads.
macro_rules! stats {
    ($(#[$enum_attr:meta])* $enum:ident { $($(#[$attr:meta])* $variant:ident = $value:literal, $name:literal;)+ }) => {
        $(#[$enum_attr])*
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $enum {
            $($(#[$attr])* $variant = $value,)+
        }

        impl $enum {
            pub const ALL: [$enum; Self::COUNT as usize] = [$($enum::$variant,)+];
            pub const COUNT: u32 = [$($value,)+].len() as u32;

            /// The counter's name in `fj-lb stats` and in the metrics.
            pub const fn name(self) -> &'static str {
                match self {
                    $($enum::$variant => $name,)+
                }
            }
        }

        // Every value indexes a per-CPU array of COUNT entries: the values must be 0..COUNT in
        // order, or a counter would fall outside the map (the kernel side's lookup fails and
        // the count is lost).
        const _: () = {
            let mut i = 0;
            while i < $enum::ALL.len() {
                assert!($enum::ALL[i] as usize == i, "counter values must be 0, 1, 2, ... in list order");
                i += 1;
            }
        };
    };
}

stats! {
    /// Why the balancer did what it did with a packet: one per-CPU counter each. The value is
    /// the counter's index in the STATS map.
    Stat {
    /// Derived by the daemon from the service counters, not counted in the data path.
    Forwarded = 0, "forwarded";
    FlowHit = 1, "flow_hit";
    FlowMiss = 2, "flow_miss";
    FlowRepinned = 3, "flow_repinned";
    PassNotIp = 4, "pass_not_ip";
    PassNotService = 5, "pass_not_service";
    PassNotL4 = 6, "pass_not_l4";
    /// A later fragment (no ports) of a datagram not sent to a VIP, or not TCP/UDP: the host's.
    PassFragment = 7, "pass_fragment";
    /// IPv6 with an extension header the balancer does not walk (ESP, AH, mobility, a routing
    /// header with segments left, more than `MAX_EXT_HEADERS`).
    PassIpv6ExtHeader = 8, "pass_ipv6_ext_header";
    /// Truncated, inconsistent (an IP length beyond the frame, a transport header beyond the
    /// IP length, in Ethernet padding) or otherwise malformed.
    PassMalformed = 9, "pass_malformed";
    DropNoBackend = 10, "drop_no_backend";
    DropBackendUnresolved = 11, "drop_backend_unresolved";
    FlowInsertFailed = 12, "flow_insert_failed";
    DropNotAccepted = 13, "drop_not_accepted";
    PassOtherHost = 14, "pass_other_host";
    /// A new flow above `max_new_flows`: forwarded by hash, not inserted (flood mode).
    FlowInsertSkipped = 15, "flow_insert_skipped";
    /// An IP frame sent to a multicast or broadcast MAC: a switch flooding it reaches every
    /// LB host, so none balances it.
    PassMulticast = 16, "pass_multicast";
    /// Of `forwarded`, those sent IPIP-encapsulated (4in4, 6in6, 4in6).
    ForwardedIpip = 17, "forwarded_ipip";
    /// Of `forwarded`, those sent GUE-encapsulated.
    ForwardedGue = 18, "forwarded_gue";
    /// An 802.1Q / 802.1ad tagged frame: passed to the host untouched, never balanced.
    PassVlan = 19, "pass_vlan";
    /// A first fragment (offset 0, more to come) of a balanced flow: its ports were stored
    /// for the fragments after it.
    FragmentTracked = 20, "fragment_tracked";
    /// A later fragment balanced with the ports its first fragment stored.
    FragmentFollowed = 21, "fragment_followed";
    /// A later fragment to a VIP whose first fragment was not seen (lost, evicted, or out of
    /// order): dropped (`orphan_fragments = "drop"`, the default).
    DropFragmentOrphan = 22, "drop_fragment_orphan";
    /// The same, passed to the host (`orphan_fragments = "pass"`).
    PassFragmentOrphan = 23, "pass_fragment_orphan";
    FragmentInsertFailed = 24, "fragment_insert_failed";
    /// An ICMP error about a balanced flow (IPv4 destination unreachable, ICMPv6 destination
    /// unreachable or packet too big) sent to that flow's backend.
    IcmpSteered = 25, "icmp_steered";
    /// An ICMP error to a VIP about a flow that is no service's: passed to the host.
    PassIcmpNotService = 26, "pass_icmp_not_service";
    /// Neighbour discovery (ICMPv6 133 to 137): always passed, even to a virtual address
    /// with `accept_mode = false`.
    PassNeighbourDiscovery = 27, "pass_neighbour_discovery";
    /// A packet too big for the path to its backend once encapsulated: answered with ICMP
    /// fragmentation needed (IPv4 with DF) or packet too big (IPv6) built in XDP.
    IcmpTooBigSent = 28, "icmp_too_big_sent";
    /// Too big once encapsulated and IPv4 without DF: XDP cannot fragment it.
    DropTooBig = 29, "drop_too_big";
    /// Too big, and this CPU already sent `icmp_too_big_per_cpu` replies this second.
    DropTooBigRateLimited = 30, "drop_too_big_rate_limited";
    /// The kernel refused to grow or shrink the frame (bpf_xdp_adjust_head / _tail).
    DropAdjustFailed = 31, "drop_adjust_failed";
    /// A packet `fj-lb trace` wanted found the TRACE ring buffer full (its reader fell
    /// behind): the record is lost, the packet went its way.
    TraceLost = 32, "trace_lost";
    }
}

stats! {
    /// What the decapsulation program (`fj-lb decap`) did with a packet.
    DecapStat {
    /// IPv4 in IPv4 (IP protocol 4) stripped.
    Decap4in4 = 0, "decap_4in4";
    /// IPv6 in IPv6 (next header 41) stripped.
    Decap6in6 = 1, "decap_6in6";
    /// IPv4 in IPv6 (next header 4) stripped.
    Decap4in6 = 2, "decap_4in6";
    /// IPv6 in IPv4 (IP protocol 41) stripped.
    Decap6in4 = 3, "decap_6in4";
    /// GUE (UDP to the GUE port, inner version from the first nibble) stripped.
    DecapGue = 4, "decap_gue";
    /// Not encapsulated, or encapsulated otherwise: passed untouched.
    PassNotEncapsulated = 5, "pass_not_encapsulated";
    /// Encapsulated, but the inner destination is not one of the VIPs: passed untouched.
    PassNotVip = 6, "pass_not_vip";
    /// An outer fragment, or an outer IPv4 header with options: passed untouched (the
    /// kernel, having no tunnel, will drop it).
    PassFragmentOrOptions = 7, "pass_fragment_or_options";
    /// Truncated or inconsistent: passed untouched.
    PassMalformed = 8, "pass_malformed";
    /// The kernel refused to move the frame's start.
    DropAdjustFailed = 9, "drop_adjust_failed";
    }
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    unsafe impl aya::Pod for ServiceKey {}
    unsafe impl aya::Pod for ServiceValue {}
    unsafe impl aya::Pod for Backend {}
    unsafe impl aya::Pod for FlowKey {}
    unsafe impl aya::Pod for FlowValue {}
    unsafe impl aya::Pod for Settings {}
    unsafe impl aya::Pod for FloodWindow {}
    unsafe impl aya::Pod for Counters {}
    unsafe impl aya::Pod for VipKey {}
    unsafe impl aya::Pod for FragKey {}
    unsafe impl aya::Pod for FragValue {}
    unsafe impl aya::Pod for DecapConfig {}
    unsafe impl aya::Pod for TraceFilter {}
    unsafe impl aya::Pod for TraceRecord {}
    unsafe impl aya::Pod for TraceDecision {}
}

#[cfg(test)]
mod tests {
    use super::{DecapStat, Stat};

    fn numbered_in_order_with_unique_snake_case_names(list: &[(u32, &'static str)]) {
        for (i, &(value, name)) in list.iter().enumerate() {
            assert_eq!(value, i as u32, "{name} is not at its index in ALL");
            assert!(!name.is_empty() && !name.starts_with('_') && !name.ends_with('_') && !name.contains("__"), "{name:?}");
            assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'), "{name:?} is not snake_case");
            for (_, other) in &list[..i] {
                assert_ne!(*other, name, "two counters share the name {name}");
            }
        }
    }

    #[test]
    fn stats_are_numbered_in_order_with_unique_snake_case_names() {
        assert_eq!(Stat::ALL.len(), Stat::COUNT as usize);
        numbered_in_order_with_unique_snake_case_names(&Stat::ALL.map(|s| (s as u32, s.name())));
        assert_eq!(DecapStat::ALL.len(), DecapStat::COUNT as usize);
        numbered_in_order_with_unique_snake_case_names(&DecapStat::ALL.map(|s| (s as u32, s.name())));
    }
}
