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
    pub const ALL: [&str; 9] = [
        SERVICES,
        BACKENDS,
        MAGLEV,
        FLOWS,
        SETTINGS,
        SERVICE_COUNTERS,
        BACKEND_COUNTERS,
        STATS,
        NOT_ACCEPTED,
    ];
}

/// Program names inside the embedded object.
pub mod program_names {
    pub const BALANCER: &str = "fj_lb";
    /// Attached to the far end of a veth so that frames sent with XDP_TX are delivered.
    pub const PASS: &str = "fj_lb_pass";
    /// MAC swap and XDP_TX: the floor the benchmarks measure the balancer against.
    pub const FLOOR: &str = "fj_lb_floor";
    /// Live-frames packet generator for the packet-rate benchmark.
    pub const GENERATOR: &str = "fj_lb_gen";
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
}
const _: () = assert!(core::mem::size_of::<Settings>() == 20);

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

/// Why the balancer did what it did with a packet: one per-CPU counter each.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stat {
    Forwarded = 0,
    FlowHit = 1,
    FlowMiss = 2,
    FlowRepinned = 3,
    PassNotIp = 4,
    PassNotService = 5,
    PassNotL4 = 6,
    PassFragment = 7,
    PassIpv6ExtHeader = 8,
    PassMalformed = 9,
    DropNoBackend = 10,
    DropBackendUnresolved = 11,
    FlowInsertFailed = 12,
    DropNotAccepted = 13,
    PassOtherHost = 14,
}

impl Stat {
    pub const COUNT: u32 = 15;
    pub const ALL: [Stat; Self::COUNT as usize] = [
        Stat::Forwarded,
        Stat::FlowHit,
        Stat::FlowMiss,
        Stat::FlowRepinned,
        Stat::PassNotIp,
        Stat::PassNotService,
        Stat::PassNotL4,
        Stat::PassFragment,
        Stat::PassIpv6ExtHeader,
        Stat::PassMalformed,
        Stat::DropNoBackend,
        Stat::DropBackendUnresolved,
        Stat::FlowInsertFailed,
        Stat::DropNotAccepted,
        Stat::PassOtherHost,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Stat::Forwarded => "forwarded",
            Stat::FlowHit => "flow_hit",
            Stat::FlowMiss => "flow_miss",
            Stat::FlowRepinned => "flow_repinned",
            Stat::PassNotIp => "pass_not_ip",
            Stat::PassNotService => "pass_not_service",
            Stat::PassNotL4 => "pass_not_l4",
            Stat::PassFragment => "pass_fragment",
            Stat::PassIpv6ExtHeader => "pass_ipv6_ext_header",
            Stat::PassMalformed => "pass_malformed",
            Stat::DropNoBackend => "drop_no_backend",
            Stat::DropBackendUnresolved => "drop_backend_unresolved",
            Stat::FlowInsertFailed => "flow_insert_failed",
            Stat::DropNotAccepted => "drop_not_accepted",
            Stat::PassOtherHost => "pass_other_host",
        }
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
    unsafe impl aya::Pod for Counters {}
    unsafe impl aya::Pod for VipKey {}
}
