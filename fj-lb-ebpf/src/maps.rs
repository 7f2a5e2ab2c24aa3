//! Every map of the data path. Sizes here are placeholders: the daemon sets the real ones from
//! the config before loading (`EbpfLoader::set_max_entries`).
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray},
};
use fj_lb_common::{
    Backend, Counters, FloodWindow, FlowKey, FlowValue, FragKey, FragValue, ServiceKey, ServiceValue, Settings, Stat,
    VipKey, hash::VIP_FILTER_BITS,
};

/// BPF_F_NO_PREALLOC: updates of a service swap its value under RCU, so a packet never reads a
/// half-written `ServiceValue` (preallocated hash maps recycle elements in place).
const NO_PREALLOC: u32 = 1;

#[map(name = "SERVICES")]
pub static SERVICES: HashMap<ServiceKey, ServiceValue> =
    HashMap::with_max_entries(64, NO_PREALLOC);

#[map(name = "BACKENDS")]
pub static BACKENDS: Array<Backend> = Array::with_max_entries(4096, 0);

/// BPF_F_MMAPABLE: the daemon writes a whole table with one memcpy instead of one syscall per
/// slot, so a dead backend leaves the table in microseconds, not tens of milliseconds.
const MMAPABLE: u32 = 1 << 10;

/// All services' Maglev tables back to back; `ServiceValue::table_base` says where each starts.
#[map(name = "MAGLEV")]
pub static MAGLEV: Array<u32> = Array::with_max_entries(65537, MMAPABLE);

/// BPF_F_NO_COMMON_LRU: each CPU keeps its own LRU list, so inserting a new flow takes no
/// lock shared with the other CPUs (as Katran's per-CPU LRU does).
const NO_COMMON_LRU: u32 = 1 << 1;

#[map(name = "FLOWS")]
pub static FLOWS: LruHashMap<FlowKey, FlowValue> = LruHashMap::with_max_entries(1_048_576, NO_COMMON_LRU);

#[map(name = "SETTINGS")]
pub static SETTINGS: Array<Settings> = Array::with_max_entries(1, 0);

#[map(name = "SERVICE_COUNTERS")]
pub static SERVICE_COUNTERS: PerCpuArray<Counters> = PerCpuArray::with_max_entries(64, 0);

#[map(name = "BACKEND_COUNTERS")]
pub static BACKEND_COUNTERS: PerCpuArray<Counters> = PerCpuArray::with_max_entries(4096, 0);

#[map(name = "STATS")]
pub static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Stat::COUNT, 0);

/// VRRP virtual addresses this host must not accept traffic for, beyond its services
/// (Accept_Mode false, not the address owner). Empty otherwise.
#[map(name = "NOT_ACCEPTED")]
pub static NOT_ACCEPTED: HashMap<VipKey, u8> = HashMap::with_max_entries(64, 0);

/// Each CPU's count of flows inserted in the current one-second window (the flood guard).
#[map(name = "FLOOD")]
pub static FLOOD: PerCpuArray<FloodWindow> = PerCpuArray::with_max_entries(1, 0);

/// The ports of datagrams being fragmented, stored from each first fragment for the ones
/// after it (Cilium's scheme: no reassembly, no buffering). One LRU shared by all CPUs: the
/// fragments of one datagram may arrive on different queues.
#[map(name = "FRAGMENTS")]
pub static FRAGMENTS: LruHashMap<FragKey, FragValue> = LruHashMap::with_max_entries(FRAGMENT_TABLE_SIZE, 0);

/// Entries of FRAGMENTS: datagrams in flight at once; a first fragment evicted before its last
/// fragment arrives makes that one an orphan.
pub const FRAGMENT_TABLE_SIZE: u32 = 65_536;

/// Every service VIP, keyed as a service with port and protocol 0: a fragment without its
/// first is an orphan only when it is sent to one (the host's own fragmented traffic is
/// passed).
#[map(name = "VIPS")]
pub static VIPS: HashMap<ServiceKey, u8> = HashMap::with_max_entries(64, 0);

/// One bit per hashed destination address (`hash::vip_filter_bit`), set for every VIP: a clear
/// bit passes the packet before any hash-map lookup. An array lookup is a bounds check and a
/// load once the verifier has inlined it.
#[map(name = "VIP_FILTER")]
pub static VIP_FILTER: Array<u64> = Array::with_max_entries(VIP_FILTER_BITS / 64, 0);

/// Each CPU's count of ICMP too-big replies in the current one-second window.
#[map(name = "ICMP_RATE")]
pub static ICMP_RATE: PerCpuArray<FloodWindow> = PerCpuArray::with_max_entries(1, 0);
