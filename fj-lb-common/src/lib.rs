//! Types shared by the XDP program and the daemon. Every map key and value lives here, once:
//! the kernel side and the user side can never disagree on a layout.
#![no_std]

pub mod hash;

/// Address family tags stored in keys (not AF_* values: these are hashed and must be stable).
pub const FAMILY_V4: u8 = 4;
pub const FAMILY_V6: u8 = 6;

pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// Backend id stored in a Maglev slot when a service has no usable backend.
pub const NO_BACKEND: u32 = u32::MAX;

/// The layout of the maps a daemon leaves pinned for the next one (keys, values, how ids are
/// used). A daemon adopts a previous daemon's flow table only under the same number: bump it
/// with any change to `FlowKey`, `FlowValue`, `Backend`, `ServiceKey` or `ServiceValue`.
pub const MAP_LAYOUT: u32 = 1;

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
    pub const ALL: [&str; 10] = [
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
    ];
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
    /// In `fj-lb-aux`: live-frames packet generator for the packet-rate benchmark
    /// (`fj-lb generate`).
    pub const GENERATOR: &str = "fj_lb_gen";
    /// Every program of `fj-lb-aux`.
    pub const AUX: [&str; 3] = [PASS, FLOOR, GENERATOR];
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
    /// Index into the per-service counters; also stamped on flows and backends.
    pub id: u32,
    /// Offset of this service's Maglev table inside the MAGLEV array. The daemon writes a new
    /// table elsewhere and then swaps this one field, so a packet sees the old table or the new.
    pub table_base: u32,
    pub table_size: u32,
    pub flags: u32,
}
const _: () = assert!(core::mem::size_of::<ServiceValue>() == 16);

/// Set in `Backend::flags` while the backend may keep its established flows.
pub const BACKEND_ALIVE: u8 = 1;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backend {
    pub addr: [u8; 16],
    pub mac: [u8; 6],
    pub family: u8,
    pub flags: u8,
    /// The service this backend id currently belongs to (ids are reused after removal).
    pub service: u32,
}
const _: () = assert!(core::mem::size_of::<Backend>() == 28);

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
}
const _: () = assert!(core::mem::size_of::<FlowValue>() == 8);

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
}
const _: () = assert!(core::mem::size_of::<Settings>() == 24);

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

/// Declares `Stat` from one list: the enum, `COUNT`, `ALL` and `name()` all come from it, so a
/// counter cannot be declared and then left out of the list the daemon reads.
macro_rules! stats {
    ($($(#[$attr:meta])* $variant:ident = $value:literal, $name:literal;)+) => {
        /// Why the balancer did what it did with a packet: one per-CPU counter each. The value
        /// is the counter's index in the STATS map.
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Stat {
            $($(#[$attr])* $variant = $value,)+
        }

        impl Stat {
            pub const ALL: [Stat; Self::COUNT as usize] = [$(Stat::$variant,)+];
            pub const COUNT: u32 = [$($value,)+].len() as u32;

            /// The counter's name in `fj-lb stats` and in the metrics.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Stat::$variant => $name,)+
                }
            }
        }
    };
}

stats! {
    Forwarded = 0, "forwarded";
    FlowHit = 1, "flow_hit";
    FlowMiss = 2, "flow_miss";
    FlowRepinned = 3, "flow_repinned";
    PassNotIp = 4, "pass_not_ip";
    PassNotService = 5, "pass_not_service";
    PassNotL4 = 6, "pass_not_l4";
    PassFragment = 7, "pass_fragment";
    PassIpv6ExtHeader = 8, "pass_ipv6_ext_header";
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
}

// Every value indexes the STATS map (COUNT entries): the values must be 0..COUNT in order, or
// a counter would fall outside the map (the kernel side's lookup fails and the count is lost).
const _: () = {
    let mut i = 0;
    while i < Stat::ALL.len() {
        assert!(Stat::ALL[i] as usize == i, "Stat values must be 0, 1, 2, ... in list order");
        i += 1;
    }
};

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
}

#[cfg(test)]
mod tests {
    use super::Stat;

    #[test]
    fn stats_are_numbered_in_order_with_unique_snake_case_names() {
        assert_eq!(Stat::ALL.len(), Stat::COUNT as usize);
        for (i, s) in Stat::ALL.iter().enumerate() {
            assert_eq!(*s as u32, i as u32, "{s:?} is not at its index in ALL");
            let name = s.name();
            assert!(!name.is_empty() && !name.starts_with('_') && !name.ends_with('_') && !name.contains("__"), "{name:?}");
            assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'), "{name:?} is not snake_case");
            for other in &Stat::ALL[..i] {
                assert_ne!(other.name(), name, "{s:?} and {other:?} share a name");
            }
        }
    }
}
