//! The daemon's TOML config, built in code: one renderer for every test, the lab and the
//! benchmark. [`Config::new`] has only what every config needs (eth0, native XDP, a bpffs
//! directory and a control socket); [`crate::Topology::config`] and
//! [`crate::Topology::lb_config`] give the lab's (table sizes, the service "web" on VIP:80).
//! A key left at `None` is left out of the file, so the daemon's default applies.
use std::{
    fmt::Write as _,
    net::{IpAddr, SocketAddrV4},
    path::{Path, PathBuf},
    time::Duration,
};

use crate::topology::{HTTP_PORT, PREFIX_LEN, VIP, backend_ip};

/// A whole daemon config. Render it with [`Config::render`].
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub interface: String,
    pub xdp_mode: String,
    pub bpffs: PathBuf,
    pub control_socket: PathBuf,
    pub flow_table_size: Option<u32>,
    pub maglev_table_size: Option<u32>,
    pub max_services: Option<u32>,
    pub max_backends: Option<u32>,
    /// New flows a CPU inserts per second before flood mode; 0 lifts the cap.
    pub max_new_flows_per_cpu: Option<u32>,
    /// `[metrics] listen = "..."`.
    pub metrics_listen: Option<SocketAddrV4>,
    /// A single `[vrrp]` table.
    pub vrrp: Option<VrrpSettings>,
    pub announce: Option<AnnounceSettings>,
    /// `[[vrrp]]` tables (instead of `vrrp`).
    pub vrrp_instances: Vec<VrrpSettings>,
    /// `[[vrrp_sync_group]]`: name and member instances.
    pub sync_groups: Vec<(String, Vec<String>)>,
    pub services: Vec<Service>,
}

impl Config {
    /// eth0, native XDP, the given bpffs directory and control socket (both must be unique per
    /// run), default table sizes, no services.
    pub fn new(bpffs: &Path, control_socket: &Path) -> Config {
        Config {
            interface: "eth0".into(),
            xdp_mode: "native".into(),
            bpffs: bpffs.to_path_buf(),
            control_socket: control_socket.to_path_buf(),
            flow_table_size: None,
            maglev_table_size: None,
            max_services: None,
            max_backends: None,
            max_new_flows_per_cpu: None,
            metrics_listen: None,
            vrrp: None,
            announce: None,
            vrrp_instances: Vec::new(),
            sync_groups: Vec::new(),
            services: Vec::new(),
        }
    }

    pub fn flow_table_size(mut self, n: u32) -> Self {
        self.flow_table_size = Some(n);
        self
    }

    pub fn maglev_table_size(mut self, n: u32) -> Self {
        self.maglev_table_size = Some(n);
        self
    }

    pub fn max_services(mut self, n: u32) -> Self {
        self.max_services = Some(n);
        self
    }

    pub fn max_backends(mut self, n: u32) -> Self {
        self.max_backends = Some(n);
        self
    }

    pub fn max_new_flows_per_cpu(mut self, n: u32) -> Self {
        self.max_new_flows_per_cpu = Some(n);
        self
    }

    pub fn metrics(mut self, listen: SocketAddrV4) -> Self {
        self.metrics_listen = Some(listen);
        self
    }

    pub fn vrrp(mut self, vrrp: Option<&VrrpSettings>) -> Self {
        self.vrrp = vrrp.cloned();
        self
    }

    pub fn announce(mut self, a: Option<&AnnounceSettings>) -> Self {
        self.announce = a.cloned();
        self
    }

    /// Adds a `[[vrrp]]` instance (the array form, for several).
    pub fn vrrp_instance(mut self, v: VrrpSettings) -> Self {
        self.vrrp_instances.push(v);
        self
    }

    /// Adds a `[[vrrp_sync_group]]` of the named instances.
    pub fn sync_group(mut self, name: &str, instances: &[&str]) -> Self {
        self.sync_groups.push((name.to_string(), instances.iter().map(|i| i.to_string()).collect()));
        self
    }

    pub fn service(mut self, s: Service) -> Self {
        self.services.push(s);
        self
    }

    /// Sets (or, with `None`, clears) the `[service.health]` table of the service "web".
    pub fn health(mut self, h: Option<&HealthSettings>) -> Self {
        let web = self
            .services
            .iter_mut()
            .find(|s| s.name == "web")
            .expect("the config has a service \"web\"");
        web.health = h.cloned();
        self
    }

    /// The TOML text: top-level keys, then `[metrics]`, `[vrrp]`, `[announce]` and the services
    /// in order.
    pub fn render(&self) -> String {
        let mut s = format!(
            "interface = {:?}\nxdp_mode = {:?}\nbpffs = \"{}\"\ncontrol_socket = \"{}\"\n",
            self.interface,
            self.xdp_mode,
            self.bpffs.display(),
            self.control_socket.display()
        );
        for (k, v) in [
            ("flow_table_size", self.flow_table_size),
            ("maglev_table_size", self.maglev_table_size),
            ("max_services", self.max_services),
            ("max_backends", self.max_backends),
            ("max_new_flows_per_cpu", self.max_new_flows_per_cpu),
        ] {
            if let Some(v) = v {
                writeln!(s, "{k} = {v}").unwrap();
            }
        }
        if let Some(listen) = self.metrics_listen {
            write!(s, "\n[metrics]\nlisten = \"{listen}\"\n").unwrap();
        }
        if let Some(v) = &self.vrrp {
            write!(s, "\n{}", v.render("[vrrp]")).unwrap();
        }
        for v in &self.vrrp_instances {
            write!(s, "\n{}", v.render("[[vrrp]]")).unwrap();
        }
        for (name, members) in &self.sync_groups {
            let list = members.iter().map(|m| format!("{m:?}")).collect::<Vec<_>>().join(", ");
            write!(s, "\n[[vrrp_sync_group]]\nname = {name:?}\ninstances = [{list}]\n").unwrap();
        }
        if let Some(a) = &self.announce {
            write!(s, "\n{}", a.render()).unwrap();
        }
        for svc in &self.services {
            svc.render_into(&mut s);
        }
        s
    }
}

/// One `[[service]]` with its backends and optional health check.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    pub name: String,
    pub vip: IpAddr,
    pub port: u16,
    /// "tcp" or "udp".
    pub protocol: String,
    /// "dsr", "ipip" or "gue".
    pub forward: String,
    /// `gue_port` (`None`: left out).
    pub gue_port: Option<u16>,
    pub health: Option<HealthSettings>,
    /// Address and weight (`None`: the key is left out, the default weight applies).
    pub backends: Vec<(IpAddr, Option<u32>)>,
}

impl Service {
    /// Service `name` on VIP:`port`/`protocol`, DSR, no backends yet.
    pub fn new(name: &str, port: u16, protocol: &str) -> Service {
        Service {
            name: name.into(),
            vip: VIP.into(),
            port,
            protocol: protocol.into(),
            forward: "dsr".into(),
            gue_port: None,
            health: None,
            backends: Vec::new(),
        }
    }

    /// The lab's service: "web", TCP on VIP:80, DSR, the given `(backend index, weight)` pairs.
    pub fn web(backends: &[(usize, u32)]) -> Service {
        Service::new("web", HTTP_PORT, "tcp").weighted(backends)
    }

    /// Adds lab backends `(index, weight)`.
    pub fn weighted(mut self, backends: &[(usize, u32)]) -> Self {
        self.backends.extend(backends.iter().map(|&(i, w)| (backend_ip(i).into(), Some(w))));
        self
    }

    /// Adds backends at the default weight.
    pub fn backends<A: Into<IpAddr>>(mut self, addresses: impl IntoIterator<Item = A>) -> Self {
        self.backends.extend(addresses.into_iter().map(|a| (a.into(), None)));
        self
    }

    /// Another VIP than the lab's (an IPv6 one, say).
    pub fn vip(mut self, vip: impl Into<IpAddr>) -> Self {
        self.vip = vip.into();
        self
    }

    /// `forward = "dsr" | "ipip" | "gue"`.
    pub fn forward(mut self, mode: &str) -> Self {
        self.forward = mode.into();
        self
    }

    pub fn gue_port(mut self, port: u16) -> Self {
        self.gue_port = Some(port);
        self
    }

    pub fn health(mut self, h: Option<&HealthSettings>) -> Self {
        self.health = h.cloned();
        self
    }

    fn render_into(&self, s: &mut String) {
        write!(
            s,
            "\n[[service]]\nname = {:?}\nvip = \"{}\"\nport = {}\nprotocol = {:?}\nforward = {:?}\n",
            self.name, self.vip, self.port, self.protocol, self.forward
        )
        .unwrap();
        if let Some(p) = self.gue_port {
            writeln!(s, "gue_port = {p}").unwrap();
        }
        if let Some(h) = &self.health {
            s.push_str(&h.render());
        }
        for (address, weight) in &self.backends {
            write!(s, "\n  [[service.backend]]\n  address = \"{address}\"\n").unwrap();
            if let Some(w) = weight {
                writeln!(s, "  weight = {w}").unwrap();
            }
        }
    }
}

/// The `[service.health]` table of a service. [`HealthSettings::http`] is the HTTP check the
/// tests use by default: `GET /healthz` expecting 200, every 200 ms, 100 ms timeout, rise 2,
/// fall 3, on the service port, `when_all_down` left at its default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthSettings {
    /// "http", "tcp" or "none".
    pub check: String,
    /// HTTP only.
    pub path: Option<String>,
    /// HTTP only; `None`: the key is left out.
    pub expect_status: Option<u16>,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub rise: u32,
    pub fall: u32,
    pub port: Option<u16>,
    /// `None`: the key is left out (the default, send_to_all).
    pub when_all_down: Option<String>,
}

impl HealthSettings {
    pub fn http() -> HealthSettings {
        HealthSettings {
            check: "http".into(),
            path: Some("/healthz".into()),
            expect_status: Some(200),
            interval_ms: 200,
            timeout_ms: 100,
            rise: 2,
            fall: 3,
            port: None,
            when_all_down: None,
        }
    }

    /// A TCP connect check on `port`, with the same timing as [`HealthSettings::http`].
    pub fn tcp(port: u16) -> HealthSettings {
        HealthSettings { check: "tcp".into(), path: None, expect_status: None, port: Some(port), ..HealthSettings::http() }
    }

    pub fn when_all_down(mut self, policy: &str) -> Self {
        self.when_all_down = Some(policy.into());
        self
    }

    /// The longest a healthy backend that stops answering can stay up: `fall` failed checks
    /// `interval_ms` apart, the last one taking up to `timeout_ms`.
    pub fn detection_bound(&self) -> Duration {
        Duration::from_millis(self.interval_ms * u64::from(self.fall) + self.timeout_ms)
    }

    fn render(&self) -> String {
        let mut s = String::from("\n  [service.health]\n");
        writeln!(s, "  check = {:?}", self.check).unwrap();
        if let Some(p) = &self.path {
            writeln!(s, "  path = {p:?}").unwrap();
        }
        if let Some(e) = self.expect_status {
            writeln!(s, "  expect_status = {e}").unwrap();
        }
        writeln!(s, "  interval_ms = {}", self.interval_ms).unwrap();
        writeln!(s, "  timeout_ms = {}", self.timeout_ms).unwrap();
        writeln!(s, "  rise = {}", self.rise).unwrap();
        writeln!(s, "  fall = {}", self.fall).unwrap();
        if let Some(p) = self.port {
            writeln!(s, "  port = {p}").unwrap();
        }
        if let Some(w) = &self.when_all_down {
            writeln!(s, "  when_all_down = {w:?}").unwrap();
        }
        s
    }
}

/// The `[vrrp]` table of a daemon config. [`VrrpSettings::new`] gives the lab's defaults: VRID
/// 51, 100 ms adverts, preemption on, the VIP as 10.0.0.100/24, tracking service "web" with a
/// delta of 60, RFC 5798 checksums. A key at `None` (or an empty list) is left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VrrpSettings {
    pub vrid: u8,
    pub priority: u8,
    pub advert_interval_ms: u32,
    pub preempt: Option<bool>,
    /// "ADDRESS/PREFIX" strings.
    pub virtual_addresses: Vec<String>,
    pub track_services: Vec<String>,
    pub track_priority_delta: Option<u8>,
    /// "rfc5798" or "rfc9568".
    pub checksum: Option<String>,
    pub use_virtual_mac: Option<bool>,
    pub accept_mode: Option<bool>,
    /// `name` (default: the daemon's, `vrid<N>`).
    pub name: Option<String>,
    /// "ADDRESS" strings; empty: multicast.
    pub unicast_peers: Vec<String>,
    pub track_interfaces: Vec<String>,
    /// Notify keys (`notify_master`, ..., `notify`) and their command lines.
    pub notify: Vec<(String, String)>,
    pub notify_timeout_ms: Option<u64>,
}

impl VrrpSettings {
    pub fn new(priority: u8) -> VrrpSettings {
        VrrpSettings {
            preempt: Some(true),
            track_services: vec!["web".to_string()],
            track_priority_delta: Some(60),
            checksum: Some("rfc5798".to_string()),
            ..VrrpSettings::bare(51, priority, &format!("{VIP}/{PREFIX_LEN}"))
        }
    }

    /// Only the keys the daemon requires: `vrid`, `priority`, 100 ms adverts and one virtual
    /// address; everything else at the daemon's defaults.
    pub fn bare(vrid: u8, priority: u8, virtual_address: &str) -> VrrpSettings {
        VrrpSettings {
            vrid,
            priority,
            advert_interval_ms: 100,
            preempt: None,
            virtual_addresses: vec![virtual_address.to_string()],
            track_services: Vec::new(),
            track_priority_delta: None,
            checksum: None,
            use_virtual_mac: None,
            accept_mode: None,
            name: None,
            unicast_peers: Vec::new(),
            track_interfaces: Vec::new(),
            notify: Vec::new(),
            notify_timeout_ms: None,
        }
    }

    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }

    /// `unicast_peers`: adverts to these addresses instead of the multicast group.
    pub fn unicast(mut self, peers: &[std::net::Ipv4Addr]) -> Self {
        self.unicast_peers = peers.iter().map(|p| p.to_string()).collect();
        self
    }

    /// Sets notify key `key` (`notify_master`, `notify_backup`, `notify_fault`, `notify_stop`,
    /// `notify`) to the command line `command`.
    pub fn notify(mut self, key: &str, command: &str) -> Self {
        self.notify.push((key.to_string(), command.to_string()));
        self
    }

    /// Tracks `services` with `delta` (0: FAULT instead of a lower priority).
    pub fn track(mut self, services: &[&str], delta: u8) -> Self {
        self.track_services = services.iter().map(|s| s.to_string()).collect();
        self.track_priority_delta = Some(delta);
        self
    }

    pub fn preempt(mut self, on: bool) -> Self {
        self.preempt = Some(on);
        self
    }

    pub fn checksum(mut self, mode: &str) -> Self {
        self.checksum = Some(mode.to_string());
        self
    }

    /// `use_virtual_mac` and `accept_mode` on.
    pub fn virtual_mac(mut self) -> Self {
        self.use_virtual_mac = Some(true);
        self.accept_mode = Some(true);
        self
    }

    /// RFC 5798's Skew_Time for this priority: ((256 − priority) × interval) / 256.
    pub fn skew_time(&self) -> Duration {
        Duration::from_millis(u64::from(self.advert_interval_ms)) * (256 - u32::from(self.priority)) / 256
    }

    /// RFC 5798's Master_Down_Interval: 3 × interval + skew time.
    pub fn master_down_interval(&self) -> Duration {
        Duration::from_millis(u64::from(self.advert_interval_ms)) * 3 + self.skew_time()
    }

    /// The table, under `header` (`[vrrp]` or `[[vrrp]]`).
    fn render(&self, header: &str) -> String {
        let list = |v: &[String]| v.iter().map(|a| format!("{a:?}")).collect::<Vec<_>>().join(", ");
        let mut s = format!(
            "{header}\nvrid = {}\npriority = {}\nadvert_interval_ms = {}\n",
            self.vrid, self.priority, self.advert_interval_ms
        );
        let mut key = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                writeln!(s, "{k} = {v}").unwrap();
            }
        };
        key("use_virtual_mac", self.use_virtual_mac.map(|b| b.to_string()));
        key("accept_mode", self.accept_mode.map(|b| b.to_string()));
        key("preempt", self.preempt.map(|b| b.to_string()));
        key("virtual_addresses", Some(format!("[{}]", list(&self.virtual_addresses))));
        key("track_services", (!self.track_services.is_empty()).then(|| format!("[{}]", list(&self.track_services))));
        key("track_priority_delta", self.track_priority_delta.map(|d| d.to_string()));
        key("checksum", self.checksum.as_ref().map(|c| format!("{c:?}")));
        key("name", self.name.as_ref().map(|n| format!("{n:?}")));
        key("unicast_peers", (!self.unicast_peers.is_empty()).then(|| format!("[{}]", list(&self.unicast_peers))));
        key("track_interfaces", (!self.track_interfaces.is_empty()).then(|| format!("[{}]", list(&self.track_interfaces))));
        for (k, command) in &self.notify {
            key(k, Some(format!("{command:?}")));
        }
        key("notify_timeout_ms", self.notify_timeout_ms.map(|t| t.to_string()));
        s
    }
}

/// The `[announce]` table: host routes for the VIPs in kernel table `table`, for the BGP
/// speaker to export. `when` and `vips` at `None` / empty are left out (the daemon's defaults:
/// "healthy", every service's VIP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceSettings {
    pub table: u32,
    /// "healthy" or "always".
    pub when: Option<String>,
    pub vips: Vec<String>,
}

impl AnnounceSettings {
    pub fn new(table: u32) -> AnnounceSettings {
        AnnounceSettings { table, when: None, vips: Vec::new() }
    }

    pub fn when(mut self, when: &str) -> Self {
        self.when = Some(when.into());
        self
    }

    fn render(&self) -> String {
        let mut s = format!("[announce]\ntable = {}\n", self.table);
        if let Some(w) = &self.when {
            writeln!(s, "when = {w:?}").unwrap();
        }
        if !self.vips.is_empty() {
            let list = self.vips.iter().map(|v| format!("{v:?}")).collect::<Vec<_>>().join(", ");
            writeln!(s, "vips = [{list}]").unwrap();
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_lab_config() {
        let c = Config::new(Path::new("/sys/fs/bpf/x"), Path::new("/tmp/x.sock"))
            .flow_table_size(65536)
            .maglev_table_size(65537)
            .vrrp(Some(&VrrpSettings::new(150)))
            .service(Service::web(&[(1, 100)]).health(Some(&HealthSettings::tcp(8081))))
            .render();
        let want = "interface = \"eth0\"\nxdp_mode = \"native\"\nbpffs = \"/sys/fs/bpf/x\"\ncontrol_socket = \"/tmp/x.sock\"\n\
                    flow_table_size = 65536\nmaglev_table_size = 65537\n\n[vrrp]\nvrid = 51\npriority = 150\n\
                    advert_interval_ms = 100\npreempt = true\nvirtual_addresses = [\"10.0.0.100/24\"]\n\
                    track_services = [\"web\"]\ntrack_priority_delta = 60\nchecksum = \"rfc5798\"\n\n[[service]]\n\
                    name = \"web\"\nvip = \"10.0.0.100\"\nport = 80\nprotocol = \"tcp\"\nforward = \"dsr\"\n\n  \
                    [service.health]\n  check = \"tcp\"\n  interval_ms = 200\n  timeout_ms = 100\n  rise = 2\n  \
                    fall = 3\n  port = 8081\n\n  [[service.backend]]\n  address = \"10.0.0.11\"\n  weight = 100\n";
        assert_eq!(c, want);
    }

    #[test]
    fn renders_announce() {
        let c = Config::new(Path::new("/b"), Path::new("/s")).announce(Some(&AnnounceSettings::new(100).when("always"))).render();
        assert!(c.ends_with("\n[announce]\ntable = 100\nwhen = \"always\"\n"), "{c}");
    }

    #[test]
    fn leaves_unset_keys_out() {
        let c = Config::new(Path::new("/b"), Path::new("/s"))
            .vrrp(Some(&VrrpSettings::bare(52, 100, "2001:db8::1/64")))
            .service(Service::new("dns", 53, "udp").backends([std::net::Ipv4Addr::new(10, 0, 0, 11)]))
            .render();
        assert!(!c.contains("flow_table_size") && !c.contains("preempt") && !c.contains("track_"), "{c}");
        assert!(c.contains("virtual_addresses = [\"2001:db8::1/64\"]\n"), "{c}");
        assert!(c.ends_with("  [[service.backend]]\n  address = \"10.0.0.11\"\n"), "{c}");
    }

    #[test]
    fn renders_several_instances_and_a_sync_group() {
        let a = VrrpSettings::bare(51, 150, "10.0.0.100/24").name("A").unicast(&[std::net::Ipv4Addr::new(10, 0, 0, 9)]).notify("notify", "/x y");
        let c = Config::new(Path::new("/b"), Path::new("/s"))
            .vrrp_instance(a)
            .vrrp_instance(VrrpSettings::bare(52, 100, "10.0.0.101/24").name("B"))
            .sync_group("G", &["A", "B"])
            .render();
        assert!(c.contains("\n[[vrrp]]\nvrid = 51\n") && c.contains("\n[[vrrp]]\nvrid = 52\n") && !c.contains("[vrrp]\n"), "{c}");
        assert!(c.contains("name = \"A\"\nunicast_peers = [\"10.0.0.9\"]\nnotify = \"/x y\"\n"), "{c}");
        assert!(c.contains("[[vrrp_sync_group]]\nname = \"G\"\ninstances = [\"A\", \"B\"]\n"), "{c}");
    }
}
