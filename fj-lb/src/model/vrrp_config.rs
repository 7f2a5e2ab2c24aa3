//! The VRRP part of the config: `[vrrp]` (one instance) or `[[vrrp]]` (several), and
//! `[[vrrp_sync_group]]`. Parsed and validated here, apart from the rest of the file, so that
//! a refusal still names its line and field (`vrrp.priority` for the single table,
//! `vrrp[1].priority` in the array).
use std::{collections::HashMap, fmt, net::IpAddr};

use serde::{
    Deserialize, Deserializer,
    de::{MapAccess, SeqAccess, Visitor, value::MapAccessDeserializer, value::SeqAccessDeserializer},
};
use toml::Spanned;

use super::{
    command,
    config::{ConfigError, Ctx, HostView, Service, valid_name},
};
use crate::vrrp::packet::ChecksumMode;

/// Scripts run on each transition (keepalived's `notify_*`), as argument vectors.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct NotifyConfig {
    pub master: Option<Vec<String>>,
    pub backup: Option<Vec<String>>,
    pub fault: Option<Vec<String>>,
    pub stop: Option<Vec<String>>,
    /// Called on every transition with keepalived's arguments: type (INSTANCE or GROUP), name,
    /// state (MASTER, BACKUP, FAULT, STOP) and priority (0 for a group).
    pub notify: Option<Vec<String>>,
    /// A script still running after this long is killed.
    pub timeout_ms: u64,
}

impl NotifyConfig {
    pub fn is_empty(&self) -> bool {
        [&self.master, &self.backup, &self.fault, &self.stop, &self.notify].iter().all(|s| s.is_none())
    }
}

pub const DEFAULT_NOTIFY_TIMEOUT_MS: u64 = 5_000;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VrrpConfig {
    /// The instance's name: `fj-lb status` shows it, notify scripts get it.
    pub name: String,
    pub interface: String,
    pub vrid: u8,
    pub priority: u8,
    pub advert_interval_ms: u32,
    pub preempt: bool,
    /// After start-up, how long this host waits before preempting a lower-priority master
    /// (keepalived's `preempt_delay`); it also waits for its health checks to settle.
    pub preempt_delay_ms: u64,
    /// RFC 5798 Accept_Mode: may the master accept traffic addressed to the virtual addresses
    /// (beyond the balanced services)? The address owner (priority 255) always does.
    pub accept_mode: bool,
    /// Address and prefix length.
    pub virtual_addresses: Vec<(IpAddr, u8)>,
    /// Adverts go to each of these instead of the multicast group, and only theirs are
    /// accepted (keepalived's `unicast_peer`). Empty: multicast.
    pub unicast_peers: Vec<IpAddr>,
    pub use_virtual_mac: bool,
    pub track_services: Vec<String>,
    /// Interfaces whose carrier counts like a tracked service (keepalived's `track_interface`).
    pub track_interfaces: Vec<String>,
    /// What a failing tracked service or interface costs: this much priority, or with 0 the
    /// FAULT state (keepalived's weight 0).
    pub track_priority_delta: u8,
    /// Gratuitous ARPs (unsolicited NAs) sent on becoming master, and again 5 s later.
    pub garp_repeat: u32,
    pub garp_interval_ms: u32,
    pub checksum: ChecksumMode,
    pub notify: NotifyConfig,
    /// The `[[vrrp_sync_group]]` this instance belongs to.
    pub sync_group: Option<String>,
}

impl VrrpConfig {
    pub fn is_ipv6(&self) -> bool {
        self.virtual_addresses.iter().any(|(a, _)| a.is_ipv6())
    }
}

/// Instances that change state together (keepalived's `vrrp_sync_group`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SyncGroupConfig {
    pub name: String,
    pub instances: Vec<String>,
    pub notify: NotifyConfig,
}

/// The notify keys, which `[vrrp]` and `[[vrrp_sync_group]]` share.
struct RawNotify<'a> {
    notify_master: &'a Option<Spanned<String>>,
    notify_backup: &'a Option<Spanned<String>>,
    notify_fault: &'a Option<Spanned<String>>,
    notify_stop: &'a Option<Spanned<String>>,
    notify: &'a Option<Spanned<String>>,
    notify_timeout_ms: &'a Option<Spanned<u64>>,
}

/// Declares a raw table with its own keys and then the notify keys, and `notify_keys()` to
/// read those. (Not a flattened struct: serde would buffer it and lose the spans.)
macro_rules! with_notify_keys {
    ($name:ident { $($(#[$fm:meta])* $field:ident: $ty:ty,)* }) => {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        pub(super) struct $name {
            $($(#[$fm])* $field: $ty,)*
            notify_master: Option<Spanned<String>>,
            notify_backup: Option<Spanned<String>>,
            notify_fault: Option<Spanned<String>>,
            notify_stop: Option<Spanned<String>>,
            notify: Option<Spanned<String>>,
            notify_timeout_ms: Option<Spanned<u64>>,
        }

        impl $name {
            fn notify_keys(&self) -> RawNotify<'_> {
                RawNotify {
                    notify_master: &self.notify_master,
                    notify_backup: &self.notify_backup,
                    notify_fault: &self.notify_fault,
                    notify_stop: &self.notify_stop,
                    notify: &self.notify,
                    notify_timeout_ms: &self.notify_timeout_ms,
                }
            }
        }
    };
}

with_notify_keys!(RawVrrp {
    name: Option<Spanned<String>>,
    interface: Option<Spanned<String>>,
    vrid: Spanned<u32>,
    priority: Option<Spanned<u32>>,
    advert_interval_ms: Option<Spanned<u32>>,
    preempt: Option<bool>,
    preempt_delay_ms: Option<Spanned<u64>>,
    accept_mode: Option<bool>,
    virtual_addresses: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    unicast_peers: Vec<Spanned<String>>,
    use_virtual_mac: Option<Spanned<bool>>,
    #[serde(default)]
    track_services: Vec<Spanned<String>>,
    #[serde(default)]
    track_interfaces: Vec<Spanned<String>>,
    track_priority_delta: Option<Spanned<u32>>,
    garp_repeat: Option<Spanned<u32>>,
    garp_interval_ms: Option<Spanned<u32>>,
    checksum: Option<Spanned<String>>,
});

with_notify_keys!(RawSyncGroup {
    name: Spanned<String>,
    instances: Spanned<Vec<Spanned<String>>>,
});

/// `[vrrp]` or `[[vrrp]]`: a table or an array of tables under one key. Read with a visitor
/// rather than an untagged enum, which would buffer the value and lose the line numbers (and
/// the names of unknown keys) that refusals carry.
pub(super) enum RawVrrps {
    One(Box<RawVrrp>),
    Many(Vec<RawVrrp>),
}

impl<'de> Deserialize<'de> for RawVrrps {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawVrrps;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a [vrrp] table or [[vrrp]] tables")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawVrrps, A::Error> {
                RawVrrp::deserialize(MapAccessDeserializer::new(map)).map(|v| RawVrrps::One(Box::new(v)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<RawVrrps, A::Error> {
                Vec::<RawVrrp>::deserialize(SeqAccessDeserializer::new(seq)).map(RawVrrps::Many)
            }
        }
        d.deserialize_any(V)
    }
}

fn validate_command(cx: &Ctx<'_>, s: &Spanned<String>, field: &str) -> Result<Vec<String>, ConfigError> {
    let argv = command::split(s.get_ref()).map_err(|e| cx.err(s.span(), field, format!("{:?}: {e}", s.get_ref())))?;
    // The daemon's PATH is not the operator's shell's: name the program exactly.
    if !argv[0].starts_with('/') {
        return Err(cx.err(s.span(), field, format!("{:?} must be an absolute path (no shell runs it)", argv[0])));
    }
    Ok(argv)
}

fn validate_notify(n: &RawNotify<'_>, cx: &Ctx<'_>, prefix: &str) -> Result<NotifyConfig, ConfigError> {
    let one = |s: &Option<Spanned<String>>, key: &str| s.as_ref().map(|s| validate_command(cx, s, &format!("{prefix}.{key}"))).transpose();
    let timeout_ms = match n.notify_timeout_ms {
        None => DEFAULT_NOTIFY_TIMEOUT_MS,
        Some(t) if (1..=600_000).contains(t.get_ref()) => *t.get_ref(),
        Some(t) => return Err(cx.err(t.span(), format!("{prefix}.notify_timeout_ms"), "must be between 1 and 600000 (10 minutes)")),
    };
    Ok(NotifyConfig {
        master: one(n.notify_master, "notify_master")?,
        backup: one(n.notify_backup, "notify_backup")?,
        fault: one(n.notify_fault, "notify_fault")?,
        stop: one(n.notify_stop, "notify_stop")?,
        notify: one(n.notify, "notify")?,
        timeout_ms,
    })
}

/// Every instance and sync group, validated each on its own and then against each other.
pub(super) fn validate(
    raw: Option<&RawVrrps>,
    groups: &[RawSyncGroup],
    lb_interface: &str,
    services: &[Service],
    cx: &Ctx<'_>,
    host: &dyn HostView,
) -> Result<(Vec<VrrpConfig>, Vec<SyncGroupConfig>), ConfigError> {
    let raws: Vec<(String, &RawVrrp)> = match raw {
        None => Vec::new(),
        Some(RawVrrps::One(v)) => vec![("vrrp".to_string(), v.as_ref())],
        Some(RawVrrps::Many(vs)) => vs.iter().enumerate().map(|(i, v)| (format!("vrrp[{i}]"), v)).collect(),
    };
    let mut instances: Vec<VrrpConfig> = Vec::with_capacity(raws.len());
    for (prefix, v) in &raws {
        let c = validate_instance(v, prefix, lb_interface, services, cx, host)?;
        if let Some(other) = instances.iter().find(|o| o.name == c.name) {
            let span = v.name.as_ref().map_or(v.vrid.span(), |n| n.span());
            return Err(cx.err(span, format!("{prefix}.name"), format!("instance {:?} is already defined (vrid {})", other.name, other.vrid)));
        }
        if let Some(other) = instances.iter().find(|o| o.interface == c.interface && o.vrid == c.vrid && o.is_ipv6() == c.is_ipv6()) {
            return Err(cx.err(
                v.vrid.span(),
                format!("{prefix}.vrid"),
                format!("instance {:?} already uses vrid {} on {}: a VRID names one virtual router per link and family", other.name, c.vrid, c.interface),
            ));
        }
        for (a, _) in &c.virtual_addresses {
            if let Some(other) = instances.iter().find(|o| o.virtual_addresses.iter().any(|(b, _)| b == a)) {
                return Err(cx.err(v.virtual_addresses.span(), format!("{prefix}.virtual_addresses"), format!("{a} is already an address of instance {:?}", other.name)));
            }
        }
        if c.use_virtual_mac && instances.iter().any(|o| o.use_virtual_mac) {
            let span = v.use_virtual_mac.as_ref().map_or(v.vrid.span(), |s| s.span());
            return Err(cx.err(span, format!("{prefix}.use_virtual_mac"), "only one instance may use a virtual MAC: the XDP program recognises one"));
        }
        instances.push(c);
    }
    let mut sync_groups: Vec<SyncGroupConfig> = Vec::with_capacity(groups.len());
    for (i, g) in groups.iter().enumerate() {
        let prefix = format!("vrrp_sync_group[{i}]");
        let name = g.name.get_ref().clone();
        if !valid_name(&name) {
            return Err(cx.err(g.name.span(), format!("{prefix}.name"), format!("{name:?}: use 1 to 64 letters, digits, '-', '_' or '.'")));
        }
        if sync_groups.iter().any(|o| o.name == name) {
            return Err(cx.err(g.name.span(), format!("{prefix}.name"), format!("sync group {name:?} is already defined")));
        }
        let mut members = Vec::new();
        for m in g.instances.get_ref() {
            let field = format!("{prefix}.instances");
            let Some(inst) = instances.iter_mut().find(|v| &v.name == m.get_ref()) else {
                return Err(cx.err(m.span(), field, format!("no VRRP instance named {:?}", m.get_ref())));
            };
            if let Some(other) = &inst.sync_group {
                return Err(cx.err(m.span(), field, format!("instance {:?} is already in sync group {other:?}", inst.name)));
            }
            if inst.priority == 255 {
                return Err(cx.err(m.span(), field, format!("instance {:?} is the address owner (priority 255): it is master whatever its group does", inst.name)));
            }
            inst.sync_group = Some(name.clone());
            members.push(inst.name.clone());
        }
        if members.len() < 2 {
            return Err(cx.err(g.instances.span(), format!("{prefix}.instances"), "a sync group needs at least two instances"));
        }
        let notify = validate_notify(&g.notify_keys(), cx, &prefix)?;
        sync_groups.push(SyncGroupConfig { name, instances: members, notify });
    }
    Ok((instances, sync_groups))
}

fn validate_instance(
    v: &RawVrrp,
    prefix: &str,
    lb_interface: &str,
    services: &[Service],
    cx: &Ctx<'_>,
    host: &dyn HostView,
) -> Result<VrrpConfig, ConfigError> {
    let f = |name: &str| format!("{prefix}.{name}");
    let interface = match &v.interface {
        None => lb_interface.to_string(),
        Some(i) if host.interface_exists(i.get_ref()) => i.get_ref().clone(),
        Some(i) => return Err(cx.err(i.span(), f("interface"), format!("no interface named {:?} on this host", i.get_ref()))),
    };
    let vrid = match *v.vrid.get_ref() {
        n @ 1..=255 => n as u8,
        n => return Err(cx.err(v.vrid.span(), f("vrid"), format!("{n} is not a VRID (1 to 255)"))),
    };
    let priority = match &v.priority {
        None => 100,
        Some(p) if (1..=255).contains(p.get_ref()) => *p.get_ref() as u8,
        Some(p) => {
            return Err(cx.err(p.span(), f("priority"), format!("{} is not a priority (1 to 254, or 255 for the address owner; 0 is reserved for leaving)", p.get_ref())));
        }
    };
    let advert_interval_ms = match &v.advert_interval_ms {
        None => 1000,
        Some(a) if (10..=40950).contains(a.get_ref()) && a.get_ref() % 10 == 0 => *a.get_ref(),
        Some(a) => {
            return Err(cx.err(a.span(), f("advert_interval_ms"), format!("{} must be a multiple of 10 between 10 and 40950 (VRRPv3 counts centiseconds)", a.get_ref())));
        }
    };
    let mut virtual_addresses: Vec<(IpAddr, u8)> = Vec::new();
    for a in v.virtual_addresses.get_ref() {
        let text = a.get_ref();
        let (ip, prefix_len) = match text.split_once('/') {
            Some((ip, p)) => (ip.parse::<IpAddr>().ok(), p.parse::<u8>().ok()),
            None => (text.parse::<IpAddr>().ok(), None),
        };
        let ip = ip.ok_or_else(|| cx.err(a.span(), f("virtual_addresses"), format!("{text:?} is not an address (ADDRESS or ADDRESS/PREFIX)")))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix_len = match prefix_len {
            None if !text.contains('/') => max,
            Some(p) if p <= max => p,
            _ => return Err(cx.err(a.span(), f("virtual_addresses"), format!("{text:?}: the prefix length must be 0 to {max}"))),
        };
        if let Some((first, _)) = virtual_addresses.first()
            && first.is_ipv4() != ip.is_ipv4()
        {
            return Err(cx.err(a.span(), f("virtual_addresses"), "one VRRP instance carries one address family (RFC 5798): split IPv4 and IPv6"));
        }
        if virtual_addresses.iter().any(|(x, _)| *x == ip) {
            return Err(cx.err(a.span(), f("virtual_addresses"), format!("{ip} is listed twice")));
        }
        virtual_addresses.push((ip, prefix_len));
    }
    let Some(&(first, _)) = virtual_addresses.first() else {
        return Err(cx.err(v.virtual_addresses.span(), f("virtual_addresses"), "needs at least one address"));
    };
    let name = match &v.name {
        None if first.is_ipv6() => format!("vrid{vrid}-ipv6"),
        None => format!("vrid{vrid}"),
        Some(n) if valid_name(n.get_ref()) => n.get_ref().clone(),
        Some(n) => return Err(cx.err(n.span(), f("name"), format!("{:?}: use 1 to 64 letters, digits, '-', '_' or '.'", n.get_ref()))),
    };
    let mut unicast_peers = Vec::new();
    for p in &v.unicast_peers {
        let ip: IpAddr = p.get_ref().parse().map_err(|_| cx.err(p.span(), f("unicast_peers"), format!("{:?} is not an IP address", p.get_ref())))?;
        if ip.is_ipv4() != first.is_ipv4() {
            return Err(cx.err(p.span(), f("unicast_peers"), format!("{ip} is not of the virtual addresses' family: adverts go over one family")));
        }
        if ip.is_multicast() || ip.is_unspecified() || ip.is_loopback() {
            return Err(cx.err(p.span(), f("unicast_peers"), format!("{ip} cannot be a peer")));
        }
        if unicast_peers.contains(&ip) {
            return Err(cx.err(p.span(), f("unicast_peers"), format!("{ip} is listed twice")));
        }
        unicast_peers.push(ip);
    }
    let use_virtual_mac = v.use_virtual_mac.as_ref().is_some_and(|b| *b.get_ref());
    let mut track_services = Vec::new();
    for t in &v.track_services {
        if !services.iter().any(|s| &s.name == t.get_ref()) {
            return Err(cx.err(t.span(), f("track_services"), format!("no service named {:?}", t.get_ref())));
        }
        track_services.push(t.get_ref().clone());
    }
    let mut track_interfaces = Vec::new();
    for t in &v.track_interfaces {
        if !host.interface_exists(t.get_ref()) {
            return Err(cx.err(t.span(), f("track_interfaces"), format!("no interface named {:?} on this host", t.get_ref())));
        }
        track_interfaces.push(t.get_ref().clone());
    }
    let track_priority_delta = match &v.track_priority_delta {
        None => 50,
        Some(d) if (0..=254).contains(d.get_ref()) => *d.get_ref() as u8,
        Some(d) => return Err(cx.err(d.span(), f("track_priority_delta"), "must be between 0 (FAULT instead of a lower priority) and 254")),
    };
    let garp_repeat = match &v.garp_repeat {
        None => 5,
        Some(n) if (1..=100).contains(n.get_ref()) => *n.get_ref(),
        Some(n) => return Err(cx.err(n.span(), f("garp_repeat"), "must be between 1 and 100")),
    };
    let garp_interval_ms = match &v.garp_interval_ms {
        None => 20,
        Some(n) if *n.get_ref() <= 10_000 => *n.get_ref(),
        Some(n) => return Err(cx.err(n.span(), f("garp_interval_ms"), "must be at most 10000")),
    };
    // keepalived allows up to 1,000 s.
    let preempt_delay_ms = match &v.preempt_delay_ms {
        None => 0,
        Some(n) if *n.get_ref() <= 1_000_000 => *n.get_ref(),
        Some(n) => return Err(cx.err(n.span(), f("preempt_delay_ms"), "must be at most 1000000 (1,000 s, as keepalived)")),
    };
    let checksum = match v.checksum.as_ref().map(|c| (c.get_ref().as_str(), c.span())) {
        None | Some(("rfc5798", _)) => ChecksumMode::PseudoHeader,
        Some(("rfc9568", _)) => ChecksumMode::MessageOnly,
        Some((other, span)) => {
            return Err(cx.err(span, f("checksum"), format!("{other:?} is not \"rfc5798\" (pseudo-header, keepalived's default) or \"rfc9568\" (keepalived's v3_checksum_as_v2)")));
        }
    };
    let notify = validate_notify(&v.notify_keys(), cx, prefix)?;
    Ok(VrrpConfig {
        name,
        interface,
        vrid,
        priority,
        advert_interval_ms,
        preempt: v.preempt.unwrap_or(true),
        preempt_delay_ms,
        accept_mode: v.accept_mode.unwrap_or(false),
        virtual_addresses,
        unicast_peers,
        use_virtual_mac,
        track_services,
        track_interfaces,
        track_priority_delta,
        garp_repeat,
        garp_interval_ms,
        checksum,
        notify,
        sync_group: None,
    })
}

/// The VRIDs of the other instances that share `c`'s link and family: their adverts reach
/// `c`'s socket too and are theirs to judge, not `c`'s to count as wrong.
pub fn sibling_vrids(all: &[VrrpConfig], c: &VrrpConfig) -> Vec<u8> {
    all.iter().filter(|o| o.name != c.name && o.interface == c.interface && o.is_ipv6() == c.is_ipv6()).map(|o| o.vrid).collect()
}

/// Instance names by sync group, for the daemon to wire the groups.
pub fn members(groups: &[SyncGroupConfig]) -> HashMap<&str, &str> {
    groups.iter().flat_map(|g| g.instances.iter().map(move |i| (i.as_str(), g.name.as_str()))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::parse;

    struct Host;
    impl HostView for Host {
        fn interface_exists(&self, name: &str) -> bool {
            matches!(name, "eth0" | "eth1")
        }
    }

    const SERVICE: &str = "\n[[service]]\nname = \"web\"\nvip = \"10.0.0.100\"\nport = 80\nprotocol = \"tcp\"\n[[service.backend]]\naddress = \"10.0.0.11\"\n";

    fn text(vrrp: &str) -> String {
        format!("interface = \"eth0\"\n{vrrp}{SERVICE}")
    }

    fn refuse(vrrp: &str) -> (usize, String, String) {
        match parse(&text(vrrp), "fj-lb.toml", &Host) {
            Ok(_) => panic!("accepted:\n{vrrp}"),
            Err(ConfigError::Invalid { line, field, message, .. }) => (line, field, message),
            Err(e) => panic!("{e}"),
        }
    }

    const TWO: &str = r#"
[[vrrp]]
name = "VI_A"
vrid = 51
priority = 150
virtual_addresses = ["10.0.0.100/24"]
unicast_peers = ["10.0.0.9", "10.0.0.10"]
track_services = ["web"]
track_interfaces = ["eth1"]
track_priority_delta = 0
notify_master = "/etc/fj-lb/notify.sh master 'VI A'"
notify = "/etc/fj-lb/notify.sh"
notify_timeout_ms = 2000

[[vrrp]]
name = "VI_B"
vrid = 52
virtual_addresses = ["10.0.0.101/24"]

[[vrrp_sync_group]]
name = "VG"
instances = ["VI_A", "VI_B"]
notify_fault = "/bin/true"
"#;

    #[test]
    fn several_instances_unicast_tracking_notify_and_a_sync_group() {
        let c = parse(&text(TWO), "x", &Host).unwrap();
        assert_eq!(c.vrrp.len(), 2);
        let (a, b) = (&c.vrrp[0], &c.vrrp[1]);
        assert_eq!((a.name.as_str(), a.vrid, b.name.as_str(), b.vrid, b.priority), ("VI_A", 51, "VI_B", 52, 100));
        assert_eq!(a.unicast_peers, vec!["10.0.0.9".parse::<IpAddr>().unwrap(), "10.0.0.10".parse().unwrap()]);
        assert!(b.unicast_peers.is_empty(), "multicast by default");
        assert_eq!((a.track_priority_delta, a.track_interfaces.as_slice()), (0, ["eth1".to_string()].as_slice()));
        assert_eq!(a.notify.master, Some(vec!["/etc/fj-lb/notify.sh".into(), "master".into(), "VI A".into()]));
        assert_eq!((a.notify.timeout_ms, b.notify.timeout_ms), (2000, DEFAULT_NOTIFY_TIMEOUT_MS));
        assert_eq!((a.sync_group.as_deref(), b.sync_group.as_deref()), (Some("VG"), Some("VG")));
        assert_eq!(c.vrrp_sync_groups[0].instances, ["VI_A", "VI_B"]);
        assert_eq!(c.vrrp_sync_groups[0].notify.fault, Some(vec!["/bin/true".to_string()]));
        assert_eq!(sibling_vrids(&c.vrrp, a), vec![52]);
    }

    #[test]
    fn the_single_table_is_one_instance_named_by_its_vrid() {
        let c = parse(&text("[vrrp]\nvrid = 7\nvirtual_addresses = [\"10.0.0.100\"]\n"), "x", &Host).unwrap();
        assert_eq!((c.vrrp.len(), c.vrrp[0].name.as_str(), c.vrrp[0].virtual_addresses[0].1), (1, "vrid7", 32));
        let c = parse(&text("[vrrp]\nvrid = 7\nvirtual_addresses = [\"2001:db8::1/64\"]\n"), "x", &Host).unwrap();
        assert_eq!(c.vrrp[0].name, "vrid7-ipv6");
    }

    #[test]
    fn refusals_name_the_instance_line_and_field() {
        let second = |extra: &str| TWO.replacen("name = \"VI_B\"\nvrid = 52\n", &format!("name = \"VI_B\"\nvrid = 52\n{extra}"), 1);
        let (line, field, msg) = refuse(&second("priority = 0\n"));
        assert_eq!((line, field.as_str()), (19, "vrrp[1].priority"), "{msg}");
        let (_, field, msg) = refuse(&second("colour = 1\n"));
        assert_eq!(field, "colour", "{msg}");
        let (_, field, msg) = refuse(&TWO.replace("vrid = 52", "vrid = 51"));
        assert_eq!(field, "vrrp[1].vrid");
        assert!(msg.contains("already uses vrid 51"), "{msg}");
        let (_, field, _) = refuse(&TWO.replace("name = \"VI_B\"", "name = \"VI_A\""));
        assert_eq!(field, "vrrp[1].name");
        let (_, field, msg) = refuse(&TWO.replace("10.0.0.101/24", "10.0.0.100/24"));
        assert_eq!(field, "vrrp[1].virtual_addresses");
        assert!(msg.contains("already an address of instance \"VI_A\""), "{msg}");
        let (_, field, _) = refuse(&second("use_virtual_mac = true\n").replacen("priority = 150\n", "priority = 150\nuse_virtual_mac = true\n", 1));
        assert_eq!(field, "vrrp[1].use_virtual_mac");
    }

    #[test]
    fn refuses_bad_unicast_tracking_and_notify_settings() {
        let cases = [
            (TWO.replace("\"10.0.0.9\"", "\"2001:db8::9\""), "vrrp[0].unicast_peers"),
            (TWO.replace("\"10.0.0.9\"", "\"224.0.0.18\""), "vrrp[0].unicast_peers"),
            (TWO.replace("\"10.0.0.9\"", "\"10.0.0.10\""), "vrrp[0].unicast_peers"),
            (TWO.replace("\"10.0.0.9\"", "\"lb2\""), "vrrp[0].unicast_peers"),
            (TWO.replace("[\"eth1\"]", "[\"eth9\"]"), "vrrp[0].track_interfaces"),
            (TWO.replace("track_priority_delta = 0", "track_priority_delta = 255"), "vrrp[0].track_priority_delta"),
            (TWO.replace("\"/etc/fj-lb/notify.sh master 'VI A'\"", "\"notify.sh\""), "vrrp[0].notify_master"),
            (TWO.replace("\"/etc/fj-lb/notify.sh master 'VI A'\"", "\"/x 'open\""), "vrrp[0].notify_master"),
            (TWO.replace("notify_timeout_ms = 2000", "notify_timeout_ms = 0"), "vrrp[0].notify_timeout_ms"),
            (TWO.replace("instances = [\"VI_A\", \"VI_B\"]", "instances = [\"VI_A\", \"VI_C\"]"), "vrrp_sync_group[0].instances"),
            (TWO.replace("instances = [\"VI_A\", \"VI_B\"]", "instances = [\"VI_A\"]"), "vrrp_sync_group[0].instances"),
            (TWO.replace("instances = [\"VI_A\", \"VI_B\"]", "instances = [\"VI_A\", \"VI_A\"]"), "vrrp_sync_group[0].instances"),
            (TWO.replace("priority = 150", "priority = 255"), "vrrp_sync_group[0].instances"),
            (TWO.replace("notify_fault = \"/bin/true\"", "notify_fault = \"true\""), "vrrp_sync_group[0].notify_fault"),
            (format!("{TWO}\n[[vrrp_sync_group]]\nname = \"VG\"\ninstances = []\n"), "vrrp_sync_group[1].name"),
        ];
        for (v, want) in cases {
            assert_eq!(refuse(&v).1, want, "{v}");
        }
    }
}
