//! The config file: parsing and validation, free of I/O but for reading the file, so every
//! refusal is a unit test. A refusal names the file, the line and column, and the field.
use std::{
    collections::{HashMap, HashSet},
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    ops::Range,
    path::{Path, PathBuf},
};

use serde::Deserialize;
use toml::Spanned;

pub use super::announce::AnnounceConfig;
use super::announce::{RESERVED_TABLES, When};
use super::vrrp_config::{self, RawSyncGroup, RawVrrps};

/// Longest interface name the kernel takes, with its NUL (IFNAMSIZ in <net/if.h>).
const IFNAMSIZ: usize = 16;

pub const DEFAULT_BPFFS: &str = "/sys/fs/bpf/fj-lb";
pub const DEFAULT_FLOW_TABLE_SIZE: u32 = 1_048_576;
pub const DEFAULT_MAGLEV_TABLE_SIZE: u32 = 65_537;
pub const DEFAULT_MAX_SERVICES: u32 = 64;
pub const DEFAULT_MAX_BACKENDS: u32 = 4096;
/// Katran's default cap on new flows per CPU and second.
pub const DEFAULT_MAX_NEW_FLOWS_PER_CPU: u32 = 125_000;
/// Where outer IPv4 sources of encapsulated packets come from (Katran's choice): a private
/// /16 no host on the path owns, the low 16 bits derived from each flow.
pub const DEFAULT_ENCAP_SOURCE_V4: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 0);
/// The IPv6 one: the RFC 6666 discard-only prefix 100::/64, the low 64 bits from each flow.
pub const DEFAULT_ENCAP_SOURCE_V6: Ipv6Addr = Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0);
/// Packet-too-big replies each CPU sends per second at most (as Linux's icmp_msgs_per_sec).
pub const DEFAULT_ICMP_TOO_BIG_PER_CPU: u32 = 1000;
const MAX_ICMP_TOO_BIG_PER_CPU: u32 = 1_000_000;
/// Bounds that keep the maps within what a host can allocate without surprises. Kernel memory
/// is finite and a map that cannot be created fails start-up late and obscurely; refusing the
/// config says why at once.
/// Per CPU: the flow table is a per-CPU LRU, each CPU holding `flow_table_size` flows.
const MAX_FLOW_TABLE_SIZE: u32 = 1 << 24;
const MAX_MAGLEV_TABLE_SIZE: u32 = 1 << 24;
const MAX_SERVICES: u32 = 1 << 16;
const MAX_BACKENDS: u32 = 1 << 20;
/// The MAGLEV array holds (max_services + 2) tables (the spare ones take a table being
/// rewritten); the kernel lays array elements out at 8 bytes each.
const MAGLEV_SLOT_BYTES: u64 = 8;
const MAX_MAGLEV_ARRAY_BYTES: u64 = 1 << 30;
/// A flow table entry in the kernel: key, value, and the hash table's own element header.
const FLOW_ENTRY_BYTES: u64 = 40 + 8 + 48;

/// Slots of the MAGLEV array for a config, in 64 bits (the product overflows u32 long before
/// it is refused).
pub fn maglev_slots(max_services: u32, maglev_table_size: u32) -> u64 {
    (max_services as u64 + 2) * maglev_table_size as u64
}
const MAX_WEIGHT: u32 = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    Native,
    Skb,
    Auto,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => fj_lb_common::PROTO_TCP,
            Protocol::Udp => fj_lb_common::PROTO_UDP,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Forward {
    /// Layer-2 direct server return.
    Dsr,
    /// Layer-3 direct return: IPIP, IP6IP6 or IPv4-in-IPv6 by the backend's family.
    Ipip,
    /// Layer-3 direct return in GUE (variant 1: outer IP, UDP to `gue_port`, inner packet).
    Gue,
}

impl Forward {
    /// Whether packets are encapsulated (backends may sit behind routers).
    pub fn is_l3(self) -> bool {
        self != Forward::Dsr
    }
}

impl fmt::Display for Forward {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Forward::Dsr => "dsr",
            Forward::Ipip => "ipip",
            Forward::Gue => "gue",
        })
    }
}

/// What happens to a later fragment whose first fragment was not seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OrphanFragments {
    /// Dropped and counted: it could only reach the wrong backend or none.
    Drop,
    /// Passed to the LB host's own stack, counted.
    Pass,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase", tag = "check")]
pub enum HealthCheck {
    /// No checks: the backend counts as healthy while it is configured.
    None,
    /// A TCP connect.
    Tcp,
    /// An HTTP GET that must answer `expect_status`.
    Http { path: String, expect_status: u16 },
}

/// What a service does when no backend passes its checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenAllDown {
    /// Keep sending to every configured backend: checks may be wrong, and if the backends are
    /// really down nothing is lost that dropping would have kept.
    SendToAll,
    /// Drop new flows.
    Drop,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HealthConfig {
    #[serde(flatten)]
    pub check: HealthCheck,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub rise: u32,
    pub fall: u32,
    pub port: Option<u16>,
    pub when_all_down: WhenAllDown,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            check: HealthCheck::None,
            interval_ms: 1000,
            timeout_ms: 500,
            rise: 2,
            fall: 3,
            port: None,
            when_all_down: WhenAllDown::SendToAll,
        }
    }
}

pub use super::vrrp_config::{NotifyConfig, SyncGroupConfig, VrrpConfig};

pub const DEFAULT_CONTROL_SOCKET: &str = "/run/fj-lb/control.sock";

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Config {
    pub interface: String,
    pub xdp_mode: XdpMode,
    pub bpffs: PathBuf,
    /// Flows each CPU's share of the flow table holds (the table is per-CPU LRU: see
    /// `flow_table_entries`).
    pub flow_table_size: u32,
    /// New flows a CPU inserts per second before flood mode (0: no cap).
    pub max_new_flows_per_cpu: u32,
    /// The /16 outer IPv4 sources of encapsulated packets are taken from (its network address).
    pub encap_source_v4: Ipv4Addr,
    /// The /64 outer IPv6 sources are taken from (its network address).
    pub encap_source_v6: Ipv6Addr,
    pub orphan_fragments: OrphanFragments,
    /// Packet-too-big replies a CPU sends per second (0: none, oversized packets are dropped).
    pub icmp_too_big_per_cpu: u32,
    pub maglev_table_size: u32,
    pub max_services: u32,
    pub max_backends: u32,
    pub hash_seed: u32,
    pub control_socket: PathBuf,
    /// Where Prometheus scrapes `/metrics`; none when the `[metrics]` table is absent.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// The VRRP instances, `[vrrp]` or `[[vrrp]]`; none without VRRP.
    pub vrrp: Vec<VrrpConfig>,
    pub vrrp_sync_groups: Vec<SyncGroupConfig>,
    /// `[announce]`: host routes for the VIPs in a kernel table a BGP speaker exports.
    pub announce: Option<AnnounceConfig>,
    pub services: Vec<Service>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Service {
    pub name: String,
    pub vip: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
    pub forward: Forward,
    /// GUE's UDP destination port (`forward = "gue"`; the default otherwise, unused).
    pub gue_port: u16,
    pub health: HealthConfig,
    pub backends: Vec<BackendConfig>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BackendConfig {
    pub address: IpAddr,
    pub weight: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read the config: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {field}: {message}")]
    Invalid {
        path: String,
        line: usize,
        column: usize,
        field: String,
        message: String,
    },
}

/// What validation needs to know about the host. Injected so validation stays pure.
pub trait HostView {
    fn interface_exists(&self, name: &str) -> bool;
    /// The host's own addresses: none of them can be a backend (the packet would come back to
    /// the LB). Test doubles that do not care may keep the default, none.
    fn local_addresses(&self) -> Vec<IpAddr> {
        Vec::new()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    interface: Spanned<String>,
    xdp_mode: Option<Spanned<String>>,
    bpffs: Option<Spanned<String>>,
    flow_table_size: Option<Spanned<u32>>,
    maglev_table_size: Option<Spanned<u32>>,
    max_services: Option<Spanned<u32>>,
    max_backends: Option<Spanned<u32>>,
    hash_seed: Option<Spanned<u32>>,
    max_new_flows_per_cpu: Option<Spanned<u32>>,
    encap_source_v4: Option<Spanned<String>>,
    encap_source_v6: Option<Spanned<String>>,
    orphan_fragments: Option<Spanned<String>>,
    icmp_too_big_per_cpu: Option<Spanned<u32>>,
    control_socket: Option<Spanned<String>>,
    metrics: Option<RawMetrics>,
    vrrp: Option<RawVrrps>,
    #[serde(default)]
    vrrp_sync_group: Vec<RawSyncGroup>,
    announce: Option<Spanned<RawAnnounce>>,
    #[serde(default)]
    service: Vec<Spanned<RawService>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAnnounce {
    table: Spanned<u32>,
    when: Option<Spanned<String>>,
    vips: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    name: Spanned<String>,
    vip: Spanned<String>,
    port: Spanned<u32>,
    protocol: Spanned<String>,
    forward: Option<Spanned<String>>,
    gue_port: Option<Spanned<u32>>,
    health: Option<Spanned<RawHealth>>,
    #[serde(default)]
    backend: Vec<Spanned<RawBackend>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    check: Spanned<String>,
    path: Option<Spanned<String>>,
    expect_status: Option<Spanned<u32>>,
    interval_ms: Option<Spanned<u64>>,
    timeout_ms: Option<Spanned<u64>>,
    rise: Option<Spanned<u32>>,
    fall: Option<Spanned<u32>>,
    port: Option<Spanned<u32>>,
    when_all_down: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackend {
    address: Spanned<String>,
    weight: Option<Spanned<u32>>,
}

/// Reads and validates a config file.
pub fn load(path: &Path, host: &dyn HostView) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&text, &path.display().to_string(), host)
}

pub(super) struct Ctx<'a> {
    text: &'a str,
    path: &'a str,
}

impl Ctx<'_> {
    pub(super) fn err(&self, span: Range<usize>, field: impl Into<String>, message: impl Into<String>) -> ConfigError {
        let (line, column) = line_col(self.text, span.start);
        ConfigError::Invalid {
            path: self.path.to_string(),
            line,
            column,
            field: field.into(),
            message: message.into(),
        }
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
    (line, column)
}

/// Parses and validates config text; `origin` names it in errors (usually the file's path).
pub fn parse(text: &str, origin: &str, host: &dyn HostView) -> Result<Config, ConfigError> {
    let cx = Ctx { text, path: origin };
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        // The span of a serde error points at the offending key or value: name it as the field.
        let at = text.get(span.clone()).unwrap_or("").trim();
        let field = if !at.is_empty() && at.len() <= 40 && !at.contains('\n') {
            at.trim_matches('"').to_string()
        } else {
            "toml".to_string()
        };
        cx.err(span, field, e.message().trim().to_string())
    })?;
    validate(raw, &cx, host)
}

fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2u64;
    while d * d <= n as u64 {
        if (n as u64).is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

pub(super) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// "ADDRESS/PREFIX" as an address and a prefix length within its family's width.
fn parse_prefix(text: &str) -> Option<(IpAddr, u8)> {
    let (ip, len) = text.split_once('/')?;
    let ip: IpAddr = ip.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    (len <= if ip.is_ipv4() { 32 } else { 128 }).then_some((ip, len))
}

fn family(ip: &IpAddr) -> &'static str {
    if ip.is_ipv4() { "IPv4" } else { "IPv6" }
}

fn validate(raw: RawConfig, cx: &Ctx<'_>, host: &dyn HostView) -> Result<Config, ConfigError> {
    let interface = raw.interface.get_ref().clone();
    if interface.is_empty() || interface.len() >= IFNAMSIZ {
        return Err(cx.err(raw.interface.span(), "interface", "must be an interface name of 1 to 15 characters"));
    }
    if !host.interface_exists(&interface) {
        return Err(cx.err(
            raw.interface.span(),
            "interface",
            format!("no interface named {interface:?} on this host (see `ip link`)"),
        ));
    }
    let xdp_mode = match raw.xdp_mode.as_ref().map(|m| (m.get_ref().as_str(), m.span())) {
        None | Some(("auto", _)) => XdpMode::Auto,
        Some(("native", _)) => XdpMode::Native,
        Some(("skb", _)) => XdpMode::Skb,
        Some((other, span)) => {
            return Err(cx.err(span, "xdp_mode", format!("{other:?} is not one of \"native\", \"skb\", \"auto\"")));
        }
    };
    let bpffs = match &raw.bpffs {
        None => PathBuf::from(DEFAULT_BPFFS),
        Some(p) => {
            let path = PathBuf::from(p.get_ref());
            if !path.is_absolute() {
                return Err(cx.err(p.span(), "bpffs", "must be an absolute path"));
            }
            // fj-lb mounts a bpffs on the directory's parent when it has none, and removes the
            // directory on stop: a parent such as /run or /sys/fs would be covered by that mount.
            let under_bpf = path.parent().is_some_and(|parent| parent.starts_with("/sys/fs/bpf"));
            if !under_bpf || path.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
                return Err(cx.err(
                    p.span(),
                    "bpffs",
                    format!("{} must be a directory under /sys/fs/bpf (where bpffs is mounted), e.g. /sys/fs/bpf/fj-lb", path.display()),
                ));
            }
            path
        }
    };
    let flow_table_size = match &raw.flow_table_size {
        None => DEFAULT_FLOW_TABLE_SIZE,
        Some(s) if (1..=MAX_FLOW_TABLE_SIZE).contains(s.get_ref()) => *s.get_ref(),
        Some(s) => {
            return Err(cx.err(
                s.span(),
                "flow_table_size",
                format!(
                    "must be between 1 and {MAX_FLOW_TABLE_SIZE} flows per CPU (about {} MiB of kernel memory per CPU at {FLOW_ENTRY_BYTES} bytes an entry)",
                    (MAX_FLOW_TABLE_SIZE as u64 * FLOW_ENTRY_BYTES) >> 20
                ),
            ));
        }
    };
    let maglev_table_size = match &raw.maglev_table_size {
        None => DEFAULT_MAGLEV_TABLE_SIZE,
        Some(s) => {
            let n = *s.get_ref();
            if !is_prime(n) || n > MAX_MAGLEV_TABLE_SIZE {
                return Err(cx.err(
                    s.span(),
                    "maglev_table_size",
                    format!("{n} must be a prime of at most {MAX_MAGLEV_TABLE_SIZE} (Maglev needs a prime table; 65537 is the usual choice)"),
                ));
            }
            n
        }
    };
    let positive = |v: &Option<Spanned<u32>>, field: &str, default: u32| -> Result<u32, ConfigError> {
        match v {
            None => Ok(default),
            Some(s) if *s.get_ref() >= 1 => Ok(*s.get_ref()),
            Some(s) => Err(cx.err(s.span(), field, "must be at least 1")),
        }
    };
    let at_most = |v: &Option<Spanned<u32>>, field: &str, default: u32, max: u32| -> Result<u32, ConfigError> {
        let n = positive(v, field, default)?;
        match v {
            Some(s) if n > max => Err(cx.err(s.span(), field, format!("{n} is more than the most fj-lb supports, {max}"))),
            _ => Ok(n),
        }
    };
    let max_services = at_most(&raw.max_services, "max_services", DEFAULT_MAX_SERVICES, MAX_SERVICES)?;
    let max_backends = at_most(&raw.max_backends, "max_backends", DEFAULT_MAX_BACKENDS, MAX_BACKENDS)?;
    let maglev_bytes = maglev_slots(max_services, maglev_table_size) * MAGLEV_SLOT_BYTES;
    if maglev_bytes > MAX_MAGLEV_ARRAY_BYTES {
        let span = raw.max_services.as_ref().or(raw.maglev_table_size.as_ref()).map_or(0..0, |s| s.span());
        return Err(cx.err(
            span,
            "max_services",
            format!(
                "(max_services {max_services} + 2) × maglev_table_size {maglev_table_size} × {MAGLEV_SLOT_BYTES} bytes = {:.1} MiB of kernel memory for Maglev tables, more than the {} MiB allowed: lower max_services or maglev_table_size",
                maglev_bytes as f64 / (1u64 << 20) as f64,
                MAX_MAGLEV_ARRAY_BYTES >> 20
            ),
        ));
    }
    let hash_seed = raw.hash_seed.as_ref().map_or(fj_lb_common::hash::DEFAULT_SEED, |s| *s.get_ref());
    let max_new_flows_per_cpu = raw.max_new_flows_per_cpu.as_ref().map_or(DEFAULT_MAX_NEW_FLOWS_PER_CPU, |s| *s.get_ref());
    let encap_source_v4 = match &raw.encap_source_v4 {
        None => DEFAULT_ENCAP_SOURCE_V4,
        Some(p) => match parse_prefix(p.get_ref()) {
            Some((IpAddr::V4(a), 16)) if a.octets()[2..] == [0, 0] => a,
            _ => {
                return Err(cx.err(
                    p.span(),
                    "encap_source_v4",
                    format!("{:?} must be an IPv4 /16 network such as \"172.16.0.0/16\" (each flow fills in the low 16 bits)", p.get_ref()),
                ));
            }
        },
    };
    let encap_source_v6 = match &raw.encap_source_v6 {
        None => DEFAULT_ENCAP_SOURCE_V6,
        Some(p) => match parse_prefix(p.get_ref()) {
            Some((IpAddr::V6(a), 64)) if a.octets()[8..] == [0; 8] => a,
            _ => {
                return Err(cx.err(
                    p.span(),
                    "encap_source_v6",
                    format!("{:?} must be an IPv6 /64 network such as \"100::/64\" (each flow fills in the low 64 bits)", p.get_ref()),
                ));
            }
        },
    };
    let orphan_fragments = match raw.orphan_fragments.as_ref().map(|o| (o.get_ref().as_str(), o.span())) {
        None | Some(("drop", _)) => OrphanFragments::Drop,
        Some(("pass", _)) => OrphanFragments::Pass,
        Some((other, span)) => {
            return Err(cx.err(span, "orphan_fragments", format!("{other:?} is not \"drop\" or \"pass\"")));
        }
    };
    let icmp_too_big_per_cpu = match &raw.icmp_too_big_per_cpu {
        None => DEFAULT_ICMP_TOO_BIG_PER_CPU,
        Some(n) if *n.get_ref() <= MAX_ICMP_TOO_BIG_PER_CPU => *n.get_ref(),
        Some(n) => {
            return Err(cx.err(n.span(), "icmp_too_big_per_cpu", format!("must be at most {MAX_ICMP_TOO_BIG_PER_CPU} (replies per CPU and second; 0 = none)")));
        }
    };
    let control_socket = match &raw.control_socket {
        None => PathBuf::from(DEFAULT_CONTROL_SOCKET),
        Some(p) if p.get_ref().starts_with('/') && p.get_ref().len() < 100 => PathBuf::from(p.get_ref()),
        Some(p) => return Err(cx.err(p.span(), "control_socket", "must be an absolute path shorter than 100 bytes")),
    };

    let metrics_listen = match &raw.metrics {
        None => None,
        Some(m) => Some(m.listen.get_ref().parse::<std::net::SocketAddr>().map_err(|_| {
            cx.err(m.listen.span(), "metrics.listen", format!("{:?} is not ADDRESS:PORT (e.g. \"127.0.0.1:9900\")", m.listen.get_ref()))
        })?),
    };
    if raw.service.len() > max_services as usize {
        return Err(cx.err(
            raw.service[max_services as usize].span(),
            "service",
            format!("{} services, more than max_services = {max_services}", raw.service.len()),
        ));
    }
    let local = host.local_addresses();
    let mut names = HashMap::new();
    let mut endpoints = HashMap::new();
    let mut services = Vec::with_capacity(raw.service.len());
    let mut total_backends = 0usize;
    for (i, s) in raw.service.iter().enumerate() {
        let s = s.get_ref();
        let field = |f: &str| format!("service[{i}].{f}");
        let name = s.name.get_ref().clone();
        if !valid_name(&name) {
            return Err(cx.err(s.name.span(), field("name"), format!("{name:?}: use 1 to 64 letters, digits, '-', '_' or '.'")));
        }
        if let Some(first) = names.insert(name.clone(), i) {
            return Err(cx.err(s.name.span(), field("name"), format!("service {name:?} is already defined as service[{first}]")));
        }
        let vip: IpAddr = s.vip.get_ref().parse().map_err(|_| {
            cx.err(s.vip.span(), field("vip"), format!("{:?} is not an IPv4 or IPv6 address (no prefix length here)", s.vip.get_ref()))
        })?;
        if vip.is_unspecified() || vip.is_multicast() || vip.is_loopback() {
            return Err(cx.err(s.vip.span(), field("vip"), format!("{vip} cannot be a virtual IP")));
        }
        let port = *s.port.get_ref();
        if !(1..=65535).contains(&port) {
            return Err(cx.err(s.port.span(), field("port"), format!("{port} is not a port (1 to 65535)")));
        }
        let port = port as u16;
        let protocol = match s.protocol.get_ref().as_str() {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            other => return Err(cx.err(s.protocol.span(), field("protocol"), format!("{other:?} is not \"tcp\" or \"udp\""))),
        };
        let forward = match s.forward.as_ref().map(|f| (f.get_ref().as_str(), f.span())) {
            None | Some(("dsr", _)) => Forward::Dsr,
            Some(("ipip", _)) => Forward::Ipip,
            Some(("gue", _)) => Forward::Gue,
            Some((other, span)) => {
                return Err(cx.err(
                    span,
                    field("forward"),
                    format!("{other:?} is not one of \"dsr\" (layer-2 direct return), \"ipip\" (IPIP / IP6IP6 / 4in6), \"gue\" (GUE over UDP)"),
                ));
            }
        };
        let gue_port = match &s.gue_port {
            None => fj_lb_common::DEFAULT_GUE_PORT,
            Some(p) if forward != Forward::Gue => {
                return Err(cx.err(p.span(), field("gue_port"), format!("gue_port applies to forward = \"gue\" only (this service forwards {forward})")));
            }
            Some(p) if (1..=65535).contains(p.get_ref()) => *p.get_ref() as u16,
            Some(p) => return Err(cx.err(p.span(), field("gue_port"), format!("{} is not a port (1 to 65535)", p.get_ref()))),
        };
        let health = match &s.health {
            None => HealthConfig::default(),
            Some(h) => validate_health(h.get_ref(), cx, i)?,
        };
        if let Some(other) = endpoints.insert((vip, port, protocol), name.clone()) {
            return Err(cx.err(
                s.vip.span(),
                field("vip"),
                format!("{vip} port {port}/{protocol} is already served by service {other:?}"),
            ));
        }
        if s.backend.is_empty() {
            return Err(cx.err(s.name.span(), field("backend"), format!("service {name:?} has no backend")));
        }
        let mut seen = HashSet::new();
        let mut backends = Vec::with_capacity(s.backend.len());
        for (j, b) in s.backend.iter().enumerate() {
            let b = b.get_ref();
            let bfield = |f: &str| format!("service[{i}].backend[{j}].{f}");
            let address: IpAddr = b.address.get_ref().parse().map_err(|_| {
                cx.err(b.address.span(), bfield("address"), format!("{:?} is not an IPv4 or IPv6 address", b.address.get_ref()))
            })?;
            // Encapsulation carries IPv4 in IPv6 (4in6), never IPv6 in IPv4.
            if vip.is_ipv6() && address.is_ipv4() && forward.is_l3() {
                return Err(cx.err(
                    b.address.span(),
                    bfield("address"),
                    format!("service {name:?}: its VIP {vip} is IPv6 but backend {address} is IPv4; IPv6 in IPv4 is not supported (IPv4 in IPv6 is)"),
                ));
            }
            if address.is_ipv4() != vip.is_ipv4() && !forward.is_l3() {
                return Err(cx.err(
                    b.address.span(),
                    bfield("address"),
                    format!(
                        "service {name:?} mixes address families: its VIP {vip} is {} but backend {address} is {} (forward = \"ipip\" or \"gue\" can carry IPv4 to IPv6 backends)",
                        family(&vip),
                        family(&address)
                    ),
                ));
            }
            if address.is_unspecified() || address.is_multicast() || address.is_loopback() || address == vip {
                return Err(cx.err(b.address.span(), bfield("address"), format!("{address} cannot be a backend")));
            }
            if local.contains(&address) {
                return Err(cx.err(
                    b.address.span(),
                    bfield("address"),
                    format!("{address} is an address of this LB host: the packets would come straight back to it"),
                ));
            }
            if !seen.insert(address) {
                return Err(cx.err(b.address.span(), bfield("address"), format!("backend {address} is listed twice in service {name:?}")));
            }
            let weight = match &b.weight {
                None => 100,
                Some(w) if *w.get_ref() <= MAX_WEIGHT => *w.get_ref(),
                Some(w) => return Err(cx.err(w.span(), bfield("weight"), format!("must be at most {MAX_WEIGHT}"))),
            };
            backends.push(BackendConfig { address, weight });
        }
        if backends.iter().all(|b| b.weight == 0) {
            return Err(cx.err(
                s.name.span(),
                field("backend"),
                format!("every backend of service {name:?} has weight 0: it could not accept a single new flow"),
            ));
        }
        if backends.len() as u64 >= maglev_table_size as u64 {
            return Err(cx.err(
                s.name.span(),
                field("backend"),
                format!("{} backends do not fit a Maglev table of {maglev_table_size} slots", backends.len()),
            ));
        }
        total_backends += backends.len();
        if total_backends > max_backends as usize {
            return Err(cx.err(
                s.name.span(),
                field("backend"),
                format!("{total_backends} backends in all, more than max_backends = {max_backends}"),
            ));
        }
        services.push(Service { name, vip, port, protocol, forward, gue_port, health, backends });
    }
    let (vrrp, vrrp_sync_groups) = vrrp_config::validate(raw.vrrp.as_ref(), &raw.vrrp_sync_group, &interface, &services, cx, host)?;
    let announce = match &raw.announce {
        None => None,
        Some(a) => Some(validate_announce(a, &services, &vrrp, cx)?),
    };
    Ok(Config {
        interface,
        xdp_mode,
        bpffs,
        flow_table_size,
        max_new_flows_per_cpu,
        encap_source_v4,
        encap_source_v6,
        orphan_fragments,
        icmp_too_big_per_cpu,
        maglev_table_size,
        max_services,
        max_backends,
        hash_seed,
        control_socket,
        metrics_listen,
        vrrp,
        announce,
        vrrp_sync_groups,
        services,
    })
}

fn validate_announce(a: &Spanned<RawAnnounce>, services: &[Service], vrrp: &[VrrpConfig], cx: &Ctx<'_>) -> Result<AnnounceConfig, ConfigError> {
    let raw = a.get_ref();
    let table = *raw.table.get_ref();
    if RESERVED_TABLES.contains(&table) {
        return Err(cx.err(
            raw.table.span(),
            "announce.table",
            format!("{table} is a table of the kernel's own (0 unspec, 253 default, 254 main, 255 local): give fj-lb a table of its own, e.g. 100, and let the BGP speaker export it"),
        ));
    }
    let when = match raw.when.as_ref().map(|w| (w.get_ref().as_str(), w.span())) {
        None | Some(("healthy", _)) => When::Healthy,
        Some(("always", _)) => When::Always,
        Some((other, span)) => return Err(cx.err(span, "announce.when", format!("{other:?} is not \"healthy\" or \"always\""))),
    };
    let mut vips: Vec<(IpAddr, Range<usize>)> = Vec::new();
    match &raw.vips {
        // Every service's VIP, once each, in the order the services come.
        None => {
            for s in services {
                if !vips.iter().any(|(v, _)| *v == s.vip) {
                    vips.push((s.vip, a.span()));
                }
            }
        }
        Some(list) => {
            for v in list {
                let ip: IpAddr = v.get_ref().parse().map_err(|_| {
                    cx.err(v.span(), "announce.vips", format!("{:?} is not an IPv4 or IPv6 address (no prefix length: each VIP is announced as a host route)", v.get_ref()))
                })?;
                if !services.iter().any(|s| s.vip == ip) {
                    return Err(cx.err(v.span(), "announce.vips", format!("{ip} is the VIP of no service: this host could not serve what it announced")));
                }
                if vips.iter().any(|(x, _)| *x == ip) {
                    return Err(cx.err(v.span(), "announce.vips", format!("{ip} is listed twice")));
                }
                vips.push((ip, v.span()));
            }
        }
    }
    // One VIP, one way of reaching it: a VRRP master takes the VIP onto its interface for the
    // whole segment while ECMP spreads it over every announcing host; both at once would split
    // its traffic between the master and the routers' choice.
    if let Some((ip, span)) = vips.iter().find(|(ip, _)| vrrp.iter().any(|v| v.virtual_addresses.iter().any(|(va, _)| va == ip)))
    {
        return Err(cx.err(
            span.clone(),
            "announce",
            format!("{ip} is both a [vrrp] virtual address and announced by [announce]: they are alternatives for a VIP (see \"Scaling out: ECMP\" in the README); list the VIPs to announce in announce.vips"),
        ));
    }
    Ok(AnnounceConfig { table, when, vips: vips.into_iter().map(|(ip, _)| ip).collect() })
}

fn validate_health(h: &RawHealth, cx: &Ctx<'_>, i: usize) -> Result<HealthConfig, ConfigError> {
    let field = |f: &str| format!("service[{i}].health.{f}");
    let d = HealthConfig::default();
    let http_only = |v: Option<std::ops::Range<usize>>, name: &str| match v {
        Some(span) => Err(cx.err(span, field(name), format!("{name} applies to check = \"http\" only"))),
        None => Ok(()),
    };
    let check = match h.check.get_ref().as_str() {
        "none" | "tcp" => {
            http_only(h.path.as_ref().map(|p| p.span()), "path")?;
            http_only(h.expect_status.as_ref().map(|p| p.span()), "expect_status")?;
            if h.check.get_ref() == "none" { HealthCheck::None } else { HealthCheck::Tcp }
        }
        "http" => {
            let path = match &h.path {
                None => "/".to_string(),
                Some(p) if p.get_ref().starts_with('/') && !p.get_ref().chars().any(|c| c.is_whitespace() || c.is_control()) => p.get_ref().clone(),
                Some(p) => return Err(cx.err(p.span(), field("path"), format!("{:?} must start with '/' and hold no spaces", p.get_ref()))),
            };
            let expect_status = match &h.expect_status {
                None => 200,
                Some(s) if (100..=599).contains(s.get_ref()) => *s.get_ref() as u16,
                Some(s) => return Err(cx.err(s.span(), field("expect_status"), format!("{} is not an HTTP status", s.get_ref()))),
            };
            HealthCheck::Http { path, expect_status }
        }
        other => {
            return Err(cx.err(h.check.span(), field("check"), format!("{other:?} is not one of \"tcp\", \"http\", \"none\"")));
        }
    };
    let interval_ms = match &h.interval_ms {
        None => d.interval_ms,
        Some(v) if (10..=3_600_000).contains(v.get_ref()) => *v.get_ref(),
        Some(v) => return Err(cx.err(v.span(), field("interval_ms"), "must be between 10 and 3600000")),
    };
    let timeout_ms = match &h.timeout_ms {
        None => d.timeout_ms.min(interval_ms),
        Some(v) if *v.get_ref() >= 1 && *v.get_ref() <= interval_ms => *v.get_ref(),
        Some(v) => {
            return Err(cx.err(v.span(), field("timeout_ms"), format!("must be between 1 and interval_ms ({interval_ms}): a check may not outlast its interval")));
        }
    };
    let count = |v: &Option<Spanned<u32>>, name: &str, default: u32| match v {
        None => Ok(default),
        Some(n) if (1..=100).contains(n.get_ref()) => Ok(*n.get_ref()),
        Some(n) => Err(cx.err(n.span(), field(name), "must be between 1 and 100")),
    };
    let rise = count(&h.rise, "rise", d.rise)?;
    let fall = count(&h.fall, "fall", d.fall)?;
    let port = match &h.port {
        None => None,
        Some(p) if (1..=65535).contains(p.get_ref()) => Some(*p.get_ref() as u16),
        Some(p) => return Err(cx.err(p.span(), field("port"), format!("{} is not a port (1 to 65535)", p.get_ref()))),
    };
    let when_all_down = match h.when_all_down.as_ref().map(|w| (w.get_ref().as_str(), w.span())) {
        None | Some(("send_to_all", _)) => WhenAllDown::SendToAll,
        Some(("drop", _)) => WhenAllDown::Drop,
        Some((other, span)) => {
            return Err(cx.err(span, field("when_all_down"), format!("{other:?} is not \"send_to_all\" or \"drop\"")));
        }
    };
    Ok(HealthConfig { check, interval_ms, timeout_ms, rise, fall, port, when_all_down })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct FakeHost;
    impl HostView for FakeHost {
        fn interface_exists(&self, name: &str) -> bool {
            name == "eth0"
        }
        fn local_addresses(&self) -> Vec<IpAddr> {
            vec!["10.0.0.2".parse().unwrap()]
        }
    }

    const GOOD: &str = r#"
interface = "eth0"
xdp_mode = "auto"
bpffs = "/sys/fs/bpf/fj-lb"
flow_table_size = 1048576
maglev_table_size = 65537

[[service]]
name = "web"
vip = "10.0.0.100"
port = 80
protocol = "tcp"
forward = "dsr"

  [[service.backend]]
  address = "10.0.0.11"
  weight = 100

  [[service.backend]]
  address = "10.0.0.12"
  weight = 0
"#;

    fn refuse(text: &str) -> (usize, String, String) {
        match parse(text, "fj-lb.toml", &FakeHost) {
            Ok(_) => panic!("config was accepted:\n{text}"),
            Err(ConfigError::Invalid { path, line, field, message, .. }) => {
                assert_eq!(path, "fj-lb.toml");
                (line, field, message)
            }
            Err(e) => panic!("unexpected error {e}"),
        }
    }

    fn replace(from: &str, to: &str) -> String {
        assert!(GOOD.contains(from), "fixture lacks {from:?}");
        GOOD.replacen(from, to, 1)
    }

    fn second_service(vip: &str, port: u16, name: &str, backend: &str) -> String {
        format!(
            "{GOOD}\n[[service]]\nname = \"{name}\"\nvip = \"{vip}\"\nport = {port}\nprotocol = \"tcp\"\n[[service.backend]]\naddress = \"{backend}\"\n"
        )
    }

    #[test]
    fn the_documented_example_is_accepted() {
        let c = parse(GOOD, "x", &FakeHost).expect("valid config");
        assert_eq!(c.interface, "eth0");
        assert_eq!(c.xdp_mode, XdpMode::Auto);
        assert_eq!(c.services.len(), 1);
        assert_eq!(c.services[0].backends[1].weight, 0);
        assert_eq!(c.services[0].protocol, Protocol::Tcp);
    }

    #[test]
    fn defaults_fill_optional_fields() {
        let c = parse(
            "interface = \"eth0\"\n[[service]]\nname=\"a\"\nvip=\"2001:db8::1\"\nport=53\nprotocol=\"udp\"\n[[service.backend]]\naddress=\"2001:db8::2\"\n",
            "x",
            &FakeHost,
        )
        .expect("valid");
        assert_eq!(c.flow_table_size, DEFAULT_FLOW_TABLE_SIZE);
        assert_eq!(c.maglev_table_size, DEFAULT_MAGLEV_TABLE_SIZE);
        assert_eq!(c.bpffs, PathBuf::from(DEFAULT_BPFFS));
        assert_eq!(c.services[0].backends[0].weight, 100);
        assert_eq!(c.services[0].forward, Forward::Dsr);
    }

    #[test]
    fn refuses_unknown_key_naming_line_and_key() {
        let (line, field, msg) = refuse(&replace("port = 80", "port = 80\nprot = 81"));
        assert_eq!(line, 12);
        assert_eq!(field, "prot");
        assert!(msg.contains("unknown field"), "{msg}");
    }

    #[test]
    fn refuses_unknown_top_level_key() {
        let (line, field, _) = refuse(&format!("colour = 1\n{GOOD}"));
        assert_eq!((line, field.as_str()), (1, "colour"));
    }

    #[test]
    fn refuses_wrong_type() {
        let (line, _, msg) = refuse(&replace("port = 80", "port = \"80\""));
        assert_eq!(line, 11);
        assert!(msg.contains("invalid type"), "{msg}");
    }

    #[test]
    fn refuses_duplicate_service_name() {
        let (line, field, msg) = refuse(&second_service("10.0.0.101", 80, "web", "10.0.0.11"));
        assert_eq!(field, "service[1].name");
        assert_eq!(line, 24);
        assert!(msg.contains("already defined"), "{msg}");
    }

    #[test]
    fn refuses_duplicate_service_endpoint() {
        let (_, field, msg) = refuse(&second_service("10.0.0.100", 80, "web2", "10.0.0.11"));
        assert_eq!(field, "service[1].vip");
        assert!(msg.contains("already served by service \"web\""), "{msg}");
    }

    #[test]
    fn same_vip_on_another_port_is_another_service() {
        parse(&second_service("10.0.0.100", 443, "tls", "10.0.0.11"), "x", &FakeHost).expect("valid");
    }

    #[test]
    fn refuses_vip_and_backend_in_two_families() {
        let (_, field, msg) = refuse(&replace("address = \"10.0.0.11\"", "address = \"2001:db8::11\""));
        assert_eq!(field, "service[0].backend[0].address");
        assert!(msg.contains("mixes address families"), "{msg}");
    }

    #[test]
    fn refuses_all_weights_zero() {
        let (_, field, msg) = refuse(&replace("weight = 100", "weight = 0"));
        assert_eq!(field, "service[0].backend");
        assert!(msg.contains("weight 0"), "{msg}");
    }

    #[test]
    fn refuses_maglev_tables_beyond_kernel_memory_in_64_bits() {
        // (70,000 + 2) × 65,537 wraps a u32 to 292,913,698 slots: it must be refused, not wrapped.
        let (_, field, msg) = refuse(&replace("maglev_table_size = 65537", "maglev_table_size = 65537\nmax_services = 65536"));
        assert_eq!(field, "max_services");
        assert!(msg.contains("MiB of kernel memory for Maglev tables"), "{msg}");
        let (_, field, msg) = refuse(&replace("maglev_table_size = 65537", "maglev_table_size = 4294967291"));
        assert_eq!(field, "maglev_table_size", "{msg}");
        let (_, field, _) = refuse(&replace("maglev_table_size = 65537", "maglev_table_size = 65537\nmax_services = 70000"));
        assert_eq!(field, "max_services");
        let (_, field, _) = refuse(&replace("maglev_table_size = 65537", "maglev_table_size = 65537\nmax_backends = 2000000"));
        assert_eq!(field, "max_backends");
        let (_, field, msg) = refuse(&replace("flow_table_size = 1048576", "flow_table_size = 4000000000"));
        assert_eq!(field, "flow_table_size");
        assert!(msg.contains("MiB of kernel memory"), "{msg}");
        // The largest accepted combination still fits the map's u32 size.
        let c = parse(&replace("maglev_table_size = 65537", "maglev_table_size = 65537\nmax_services = 2045"), "x", &FakeHost).expect("fits");
        assert!(maglev_slots(c.max_services, c.maglev_table_size) < u32::MAX as u64);
    }

    #[test]
    fn refuses_a_bpffs_directory_outside_sys_fs_bpf() {
        for bad in ["/run/fj-lb", "/sys/fs", "/fj-lb", "/sys/fs/bpf/../../run/x", "/sys/fs/bpf"] {
            let (_, field, msg) = refuse(&replace("bpffs = \"/sys/fs/bpf/fj-lb\"", &format!("bpffs = \"{bad}\"")));
            assert_eq!(field, "bpffs", "{bad}: {msg}");
            assert!(msg.contains("under /sys/fs/bpf"), "{msg}");
        }
        parse(&replace("bpffs = \"/sys/fs/bpf/fj-lb\"", "bpffs = \"/sys/fs/bpf/lb2/fj-lb\""), "x", &FakeHost).expect("nested is fine");
    }

    #[test]
    fn refuses_a_backend_that_is_the_lb_itself() {
        let (_, field, msg) = refuse(&replace("address = \"10.0.0.11\"", "address = \"10.0.0.2\""));
        assert_eq!(field, "service[0].backend[0].address");
        assert!(msg.contains("an address of this LB host"), "{msg}");
        let (_, _, msg) = refuse(&replace("address = \"10.0.0.11\"", "address = \"10.0.0.100\""));
        assert!(msg.contains("cannot be a backend"), "the VIP itself: {msg}");
    }

    #[test]
    fn refuses_non_prime_table_size() {
        let (line, field, msg) = refuse(&replace("maglev_table_size = 65537", "maglev_table_size = 65536"));
        assert_eq!((line, field.as_str()), (6, "maglev_table_size"));
        assert!(msg.contains("prime"), "{msg}");
    }

    #[test]
    fn refuses_missing_interface() {
        let (line, field, msg) = refuse(&replace("interface = \"eth0\"", "interface = \"eth9\""));
        assert_eq!((line, field.as_str()), (2, "interface"));
        assert!(msg.contains("no interface named \"eth9\""), "{msg}");
    }

    #[test]
    fn refuses_bad_xdp_mode() {
        let (_, field, _) = refuse(&replace("xdp_mode = \"auto\"", "xdp_mode = \"turbo\""));
        assert_eq!(field, "xdp_mode");
    }

    #[test]
    fn refuses_bad_vip() {
        let (_, field, _) = refuse(&replace("vip = \"10.0.0.100\"", "vip = \"10.0.0.100/24\""));
        assert_eq!(field, "service[0].vip");
    }

    #[test]
    fn refuses_bad_protocol() {
        let (_, field, _) = refuse(&replace("protocol = \"tcp\"", "protocol = \"sctp\""));
        assert_eq!(field, "service[0].protocol");
    }

    #[test]
    fn refuses_port_zero_and_too_large() {
        assert_eq!(refuse(&replace("port = 80", "port = 0")).1, "service[0].port");
        assert_eq!(refuse(&replace("port = 80", "port = 70000")).1, "service[0].port");
    }

    #[test]
    fn refuses_unsupported_forward_mode() {
        let (_, field, msg) = refuse(&replace("forward = \"dsr\"", "forward = \"nat\""));
        assert_eq!(field, "service[0].forward");
        assert!(msg.contains("dsr"), "{msg}");
    }

    #[test]
    fn refuses_duplicate_backend() {
        let (_, field, _) = refuse(&replace("address = \"10.0.0.12\"", "address = \"10.0.0.11\""));
        assert_eq!(field, "service[0].backend[1].address");
    }

    #[test]
    fn refuses_service_without_backends() {
        let text = "interface = \"eth0\"\n[[service]]\nname=\"a\"\nvip=\"10.0.0.1\"\nport=1\nprotocol=\"udp\"\n";
        assert_eq!(refuse(text).1, "service[0].backend");
    }

    #[test]
    fn refuses_relative_bpffs_and_zero_flow_table() {
        assert_eq!(refuse(&replace("bpffs = \"/sys/fs/bpf/fj-lb\"", "bpffs = \"bpf\"")).1, "bpffs");
        assert_eq!(refuse(&replace("flow_table_size = 1048576", "flow_table_size = 0")).1, "flow_table_size");
    }

    #[test]
    fn refuses_more_services_than_max() {
        let text = format!("max_services = 1\n{}", second_service("10.0.0.101", 80, "two", "10.0.0.11"));
        assert_eq!(refuse(&text).1, "service");
    }

    #[test]
    fn refuses_excessive_weight() {
        assert_eq!(refuse(&replace("weight = 100", "weight = 2000000")).1, "service[0].backend[0].weight");
    }

    #[test]
    fn error_text_names_file_line_and_field() {
        let err = parse(&replace("port = 80", "port = 0"), "/etc/fj-lb.toml", &FakeHost).unwrap_err();
        assert_eq!(err.to_string(), "/etc/fj-lb.toml:11:8: service[0].port: 0 is not a port (1 to 65535)");
    }

    const HEALTH: &str = "\n  [service.health]\n  check = \"http\"\n  path = \"/healthz\"\n  expect_status = 200\n  interval_ms = 1000\n  timeout_ms = 500\n  rise = 2\n  fall = 3\n  port = 8080\n";

    fn with_health(h: &str) -> String {
        replace("forward = \"dsr\"\n", &format!("forward = \"dsr\"\n{h}"))
    }

    #[test]
    fn health_section_is_read() {
        let c = parse(&with_health(HEALTH), "x", &FakeHost).expect("valid");
        let h = &c.services[0].health;
        assert_eq!(h.check, HealthCheck::Http { path: "/healthz".into(), expect_status: 200 });
        assert_eq!((h.interval_ms, h.timeout_ms, h.rise, h.fall, h.port), (1000, 500, 2, 3, Some(8080)));
        assert_eq!(h.when_all_down, WhenAllDown::SendToAll);
    }

    #[test]
    fn no_health_section_means_no_checks() {
        let c = parse(GOOD, "x", &FakeHost).unwrap();
        assert_eq!(c.services[0].health.check, HealthCheck::None);
    }

    #[test]
    fn refuses_bad_health_settings() {
        let cases = [
            (HEALTH.replace("\"http\"", "\"icmp\""), "service[0].health.check"),
            (HEALTH.replace("timeout_ms = 500", "timeout_ms = 1500"), "service[0].health.timeout_ms"),
            (HEALTH.replace("rise = 2", "rise = 0"), "service[0].health.rise"),
            (HEALTH.replace("fall = 3", "fall = 0"), "service[0].health.fall"),
            (HEALTH.replace("expect_status = 200", "expect_status = 42"), "service[0].health.expect_status"),
            (HEALTH.replace("/healthz", "healthz"), "service[0].health.path"),
            (HEALTH.replace("port = 8080", "port = 0"), "service[0].health.port"),
            (HEALTH.replace("interval_ms = 1000", "interval_ms = 1"), "service[0].health.interval_ms"),
            (HEALTH.replace("check = \"http\"", "check = \"tcp\""), "service[0].health.path"),
            (format!("{HEALTH}  when_all_down = \"panic\"\n"), "service[0].health.when_all_down"),
            (format!("{HEALTH}  colour = 1\n"), "colour"),
        ];
        for (h, want) in cases {
            assert_eq!(refuse(&with_health(&h)).1, want, "{h}");
        }
    }

    #[test]
    fn metrics_listen_is_read_and_checked() {
        let text = GOOD.replacen("\n[[service]]", "\n[metrics]\nlisten = \"127.0.0.1:9900\"\n\n[[service]]", 1);
        let c = parse(&text, "x", &FakeHost).unwrap();
        assert_eq!(c.metrics_listen, Some("127.0.0.1:9900".parse().unwrap()));
        let bad = GOOD.replacen("\n[[service]]", "\n[metrics]\nlisten = \"localhost\"\n\n[[service]]", 1);
        assert_eq!(refuse(&bad).1, "metrics.listen");
    }

    const VRRP: &str = "\n[vrrp]\ninterface = \"eth0\"\nvrid = 51\npriority = 150\nadvert_interval_ms = 1000\npreempt = true\nvirtual_addresses = [\"10.0.0.100/24\"]\nuse_virtual_mac = false\ntrack_services = [\"web\"]\ntrack_priority_delta = 60\n";

    fn with_vrrp(v: &str) -> String {
        GOOD.replacen("\n[[service]]", &format!("{v}\n[[service]]"), 1)
    }

    #[test]
    fn vrrp_section_is_read() {
        let c = parse(&with_vrrp(VRRP), "x", &FakeHost).unwrap();
        let v = &c.vrrp[0];
        assert_eq!(c.vrrp.len(), 1);
        assert_eq!((v.vrid, v.priority, v.advert_interval_ms, v.preempt), (51, 150, 1000, true));
        assert_eq!(v.virtual_addresses, vec![("10.0.0.100".parse().unwrap(), 24)]);
        assert_eq!(v.track_services, vec!["web"]);
        assert_eq!(v.track_priority_delta, 60);
        assert_eq!(v.checksum, crate::vrrp::packet::ChecksumMode::PseudoHeader);
        assert!(!v.accept_mode, "RFC 5798's default");
    }

    #[test]
    fn refuses_bad_vrrp_settings() {
        let cases = [
            (VRRP.replace("vrid = 51", "vrid = 0"), "vrrp.vrid"),
            (VRRP.replace("priority = 150", "priority = 0"), "vrrp.priority"),
            (VRRP.replace("advert_interval_ms = 1000", "advert_interval_ms = 105"), "vrrp.advert_interval_ms"),
            (VRRP.replace("10.0.0.100/24", "10.0.0.100/33"), "vrrp.virtual_addresses"),
            (VRRP.replace("\"10.0.0.100/24\"", "\"10.0.0.100/24\", \"2001:db8::1/64\""), "vrrp.virtual_addresses"),
            (VRRP.replace("[\"10.0.0.100/24\"]", "[]"), "vrrp.virtual_addresses"),
            (VRRP.replace("[\"web\"]", "[\"api\"]"), "vrrp.track_services"),
            (VRRP.replace("interface = \"eth0\"", "interface = \"eth7\""), "vrrp.interface"),
            (format!("{VRRP}checksum = \"crc32\"\n"), "vrrp.checksum"),
            (format!("{VRRP}nopreempt = true\n"), "nopreempt"),
            (format!("{VRRP}preempt_delay_ms = 2000000\n"), "vrrp.preempt_delay_ms"),
        ];
        for (v, want) in cases {
            assert_eq!(refuse(&with_vrrp(&v)).1, want, "{v}");
        }
    }

    fn with_announce(a: &str) -> String {
        GOOD.replacen("\n[[service]]", &format!("\n[announce]\n{a}\n[[service]]"), 1)
    }

    #[test]
    fn announce_section_is_read_with_every_vip_by_default() {
        let c = parse(&with_announce("table = 100\n"), "x", &FakeHost).unwrap();
        let a = c.announce.unwrap();
        assert_eq!((a.table, a.when), (100, When::Healthy));
        assert_eq!(a.vips, vec!["10.0.0.100".parse::<IpAddr>().unwrap()]);
        let text = second_service("10.0.0.101", 80, "api", "10.0.0.11").replacen("\n[[service]]", "\n[announce]\ntable = 7\nwhen = \"always\"\nvips = [\"10.0.0.101\"]\n\n[[service]]", 1);
        let a = parse(&text, "x", &FakeHost).unwrap().announce.unwrap();
        assert_eq!((a.table, a.when, a.vips), (7, When::Always, vec!["10.0.0.101".parse().unwrap()]));
        assert!(parse(GOOD, "x", &FakeHost).unwrap().announce.is_none());
    }

    #[test]
    fn refuses_bad_announce_settings() {
        let cases = [
            ("table = 254\n", "announce.table"),
            ("table = 0\n", "announce.table"),
            ("table = 255\n", "announce.table"),
            // A missing key is serde's refusal; it names the key in the message.
            ("when = \"healthy\"\n", "toml"),
            ("table = 100\nwhen = \"sometimes\"\n", "announce.when"),
            ("table = 100\nvips = [\"10.0.0.100/32\"]\n", "announce.vips"),
            ("table = 100\nvips = [\"10.0.0.200\"]\n", "announce.vips"),
            ("table = 100\nvips = [\"10.0.0.100\", \"10.0.0.100\"]\n", "announce.vips"),
            ("table = 100\nhold_time = 3\n", "hold_time"),
        ];
        for (a, want) in cases {
            let (_, field, msg) = refuse(&with_announce(a));
            assert_eq!(field, want, "{a}: {msg}");
        }
    }

    #[test]
    fn refuses_announce_and_vrrp_for_the_same_vip() {
        let both = with_announce("table = 100\n").replacen("\n[announce]", &format!("{VRRP}\n[announce]"), 1);
        let (_, field, msg) = refuse(&both);
        assert_eq!(field, "announce");
        assert!(msg.contains("alternatives"), "{msg}");
        // VRRP for one VIP, ECMP for another: fine.
        let text = second_service("10.0.0.101", 80, "api", "10.0.0.11")
            .replacen("\n[[service]]", &format!("{VRRP}\n[announce]\ntable = 100\nvips = [\"10.0.0.101\"]\n\n[[service]]"), 1);
        let c = parse(&text, "x", &FakeHost).unwrap();
        assert!(!c.vrrp.is_empty() && c.announce.is_some());
    }

    #[test]
    fn forward_modes_and_gue_port_are_read() {
        let c = parse(&replace("forward = \"dsr\"", "forward = \"gue\"\ngue_port = 7000"), "x", &FakeHost).unwrap();
        assert_eq!((c.services[0].forward, c.services[0].gue_port), (Forward::Gue, 7000));
        let c = parse(&replace("forward = \"dsr\"", "forward = \"gue\""), "x", &FakeHost).unwrap();
        assert_eq!(c.services[0].gue_port, fj_lb_common::DEFAULT_GUE_PORT, "6080 by default");
        let c = parse(&replace("forward = \"dsr\"", "forward = \"ipip\""), "x", &FakeHost).unwrap();
        assert_eq!(c.services[0].forward, Forward::Ipip);
        assert!(c.services[0].forward.is_l3() && !Forward::Dsr.is_l3());
    }

    #[test]
    fn refuses_gue_port_without_gue() {
        let (_, field, msg) = refuse(&replace("forward = \"dsr\"", "forward = \"ipip\"\ngue_port = 6080"));
        assert_eq!(field, "service[0].gue_port");
        assert!(msg.contains("applies to forward = \"gue\" only"), "{msg}");
    }

    #[test]
    fn refuses_gue_port_zero_or_too_large() {
        for bad in ["0", "65536"] {
            let (_, field, msg) = refuse(&replace("forward = \"dsr\"", &format!("forward = \"gue\"\ngue_port = {bad}")));
            assert_eq!(field, "service[0].gue_port", "{bad}: {msg}");
        }
    }

    #[test]
    fn ipv4_vips_may_have_ipv6_backends_when_encapsulated() {
        let text = replace("forward = \"dsr\"", "forward = \"ipip\"").replace("address = \"10.0.0.11\"", "address = \"2001:db8::11\"");
        let c = parse(&text, "x", &FakeHost).expect("4in6 is allowed");
        assert!(c.services[0].backends[0].address.is_ipv6());
        let (_, _, msg) = refuse(&replace("address = \"10.0.0.11\"", "address = \"2001:db8::11\""));
        assert!(msg.contains("mixes address families") && msg.contains("ipip"), "DSR still refuses, and says what would work: {msg}");
    }

    #[test]
    fn refuses_ipv6_vips_with_ipv4_backends_even_encapsulated() {
        let text = "interface = \"eth0\"\n[[service]]\nname=\"a\"\nvip=\"2001:db8::1\"\nport=53\nprotocol=\"udp\"\nforward=\"gue\"\n[[service.backend]]\naddress=\"10.0.0.11\"\n";
        let (_, field, msg) = refuse(text);
        assert_eq!(field, "service[0].backend[0].address");
        assert!(msg.contains("IPv6 in IPv4 is not supported"), "{msg}");
    }

    #[test]
    fn encap_sources_orphans_and_icmp_rate_have_defaults_and_are_read() {
        let c = parse(GOOD, "x", &FakeHost).unwrap();
        assert_eq!((c.encap_source_v4, c.encap_source_v6), (DEFAULT_ENCAP_SOURCE_V4, DEFAULT_ENCAP_SOURCE_V6));
        assert_eq!(c.encap_source_v6.to_string(), "100::");
        assert_eq!((c.orphan_fragments, c.icmp_too_big_per_cpu), (OrphanFragments::Drop, DEFAULT_ICMP_TOO_BIG_PER_CPU));
        let text = format!("encap_source_v4 = \"10.99.0.0/16\"\nencap_source_v6 = \"fd00:99::/64\"\norphan_fragments = \"pass\"\nicmp_too_big_per_cpu = 0\n{GOOD}");
        let c = parse(&text, "x", &FakeHost).unwrap();
        assert_eq!(c.encap_source_v4.to_string(), "10.99.0.0");
        assert_eq!(c.encap_source_v6.to_string(), "fd00:99::");
        assert_eq!((c.orphan_fragments, c.icmp_too_big_per_cpu), (OrphanFragments::Pass, 0));
    }

    #[test]
    fn refuses_encap_sources_that_are_not_a_16_or_a_64() {
        for (key, bad) in [
            ("encap_source_v4", "172.16.0.0/24"),
            ("encap_source_v4", "172.16.1.0/16"),
            ("encap_source_v4", "100::/64"),
            ("encap_source_v4", "172.16.0.0"),
            ("encap_source_v6", "100::/48"),
            ("encap_source_v6", "100::1/64"),
            ("encap_source_v6", "172.16.0.0/16"),
        ] {
            let (line, field, msg) = refuse(&format!("{key} = \"{bad}\"\n{GOOD}"));
            assert_eq!((line, field.as_str()), (1, key), "{bad}: {msg}");
            assert!(msg.contains("network such as"), "{msg}");
        }
    }

    #[test]
    fn refuses_bad_orphan_fragments_policy() {
        let (_, field, msg) = refuse(&format!("orphan_fragments = \"reassemble\"\n{GOOD}"));
        assert_eq!(field, "orphan_fragments");
        assert!(msg.contains("\"drop\" or \"pass\""), "{msg}");
    }

    #[test]
    fn refuses_an_unbounded_icmp_rate() {
        assert_eq!(refuse(&format!("icmp_too_big_per_cpu = 2000000\n{GOOD}")).1, "icmp_too_big_per_cpu");
    }

    #[test]
    fn primes() {
        assert!(is_prime(65537) && is_prime(251) && is_prime(2));
        assert!(!is_prime(65536) && !is_prime(1) && !is_prime(0) && !is_prime(65535));
    }
}
