//! The lab: one "switch" namespace holding a Linux bridge, and hosts (client, lb, b1..bN),
//! each in its own namespace with an `eth0` veth whose peer is a port of the bridge.
//!
//! ```text
//!   client 10.0.0.2 ─┐
//!   lb     10.0.0.10 ┼─ br0 (switch namespace; ports p-client, p-lb, p-b1, ...)
//!   b1     10.0.0.11 ┤
//!   bN     10.0.0.1N ┘        VIP 10.0.0.100: on lb's eth0, on every backend's lo (DSR)
//! ```
//!
//! With [`TopologyBuilder::routed_backends`]`(n)` a router joins the bridge and backends
//! r1..rn sit behind it in another subnet, for layer-3 direct return (IPIP, GUE):
//!
//! ```text
//!   client, lb, b1..bN ─ br0 ─ rt 10.0.0.1 (eth0)   rt 10.0.1.1 (eth1) ─ br1 ─ r1 10.0.1.11
//!                                                                           └ rN 10.0.1.1N
//!   client and LB route 10.0.1.0/24 via 10.0.0.1; r1..rN's default route is 10.0.1.1, so
//!   their replies go back through the router, never through the LB. VIP on every r's lo.
//! ```
//!
//! [`TopologyBuilder::ipv6`] adds IPv6 on both segments (fd00::/64 in front, fd00:1::/64
//! behind the router, the same last digits as the IPv4 addresses), [`VIP6`] = fd00::100.
//!
//! With [`TopologyBuilder::lbs`]`(2)` there are two LB hosts instead of `lb`, for VRRP:
//!
//! ```text
//!   client 10.0.0.2  ─┐
//!   lb1    10.0.0.10 ─┤  (ports p-lb1, p-lb2)
//!   lb2    10.0.0.9  ─┼─ br0
//!   b1..bN           ─┘       VIP 10.0.0.100: on no LB at first (VRRP's master adds it to its
//!                             eth0), on every backend's lo (DSR)
//! ```
//!
//! With [`TopologyBuilder::routed`] the client sits behind a router instead, for ECMP: the
//! router forwards the VIP to the LB hosts that announce it over BGP (see [`crate::ecmp`]).
//!
//! ```text
//!   client 10.1.0.2 ── eth1 10.1.0.1 router 10.0.0.1 ─┐
//!                      lb1 10.0.0.10, lb2 .9, lb3 .8 ─┼─ br0
//!                      b1..bN (default route via .1) ─┘  VIP 10.0.0.100: on no LB; on every
//!                                                        backend's lo (DSR)
//! ```
use std::{
    net::{Ipv4Addr, Ipv6Addr, SocketAddrV4},
    path::{Path, PathBuf},
    time::Duration,
};

use crate::{
    config::{Config, Service, VrrpSettings},
    daemon::xdp_info,
    http,
    ns::{ChildGuard, Netns, TempDir, unique_id},
    poll_until,
};

pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
/// The client of a routed lab, on its own link to the router.
pub const ROUTED_CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);
/// The router of a routed lab on the LAN (ECMP: its BGP address, the hosts' default gateway;
/// layer 3: the way to the routed backends)...
pub const ROUTER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
/// ...and on the client's link.
pub const ROUTER_CLIENT_SIDE_IP: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
/// The LB of a one-LB lab, and `lb1` of a two-LB lab.
pub const LB_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 10);
/// `lb2` of a two-LB lab.
pub const LB2_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 9);
pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);
pub const PREFIX_LEN: u8 = 24;
/// The port nginx listens on and the service is configured for.
pub const HTTP_PORT: u16 = 80;
const BRIDGE: &str = "br0";
/// The segment behind the router.
const BACK_BRIDGE: &str = "br1";
const MAX_BACKENDS: usize = 80;
/// The router's address on the segment behind it (routed backends).
pub const ROUTER_BACK_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 1);
pub const BACK_SUBNET: &str = "10.0.1.0/24";
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x100);
pub const BACK_SUBNET6: &str = "fd00:1::/64";

/// Address of routed backend `i` (1-based): 10.0.1.11, 10.0.1.12, ...
pub fn routed_backend_ip(i: usize) -> Ipv4Addr {
    assert!((1..=MAX_BACKENDS).contains(&i), "routed backend index {i} out of 1..={MAX_BACKENDS}");
    Ipv4Addr::new(10, 0, 1, 10 + i as u8)
}

/// The IPv6 address with the same last digits as the IPv4 one: 10.0.0.11 → fd00::11,
/// 10.0.1.12 → fd00:1::12.
pub fn ip6_of(v4: Ipv4Addr) -> Ipv6Addr {
    let [_, _, subnet, host] = v4.octets();
    let last = u16::from_str_radix(&host.to_string(), 16).expect("decimal digits read as hex");
    Ipv6Addr::new(0xfd00, subnet as u16, 0, 0, 0, 0, 0, last)
}

/// Address of backend `i` (1-based): 10.0.0.11, 10.0.0.12, ...
pub fn backend_ip(i: usize) -> Ipv4Addr {
    assert!((1..=MAX_BACKENDS).contains(&i), "backend index {i} out of 1..={MAX_BACKENDS}");
    Ipv4Addr::new(10, 0, 0, 10 + i as u8)
}

/// Address of LB host `i` (1-based): lb1 10.0.0.10 ([`LB_IP`]), lb2 10.0.0.9 ([`LB2_IP`]),
/// lb3 10.0.0.8.
pub fn lb_ip(i: usize) -> Ipv4Addr {
    match i {
        1 => LB_IP,
        2 => LB2_IP,
        3 => Ipv4Addr::new(10, 0, 0, 8),
        _ => panic!("LB index {i} out of 1..=3"),
    }
}

/// A host: its own namespace with `eth0` plugged into the bridge by port `port`.
#[derive(Debug)]
pub struct Host {
    /// Role: "client", "lb", "b1", ...
    pub name: String,
    pub ip: Ipv4Addr,
    /// The bridge-side veth, in the switch namespace.
    pub port: String,
    pub ns: Netns,
    /// Its IPv6 address on eth0, in a lab built with [`TopologyBuilder::ipv6`].
    pub ip6: Option<Ipv6Addr>,
}

impl Host {
    /// MAC address of this host's eth0.
    pub fn mac(&self) -> String {
        let out = self.ns.ip(&["-j", "link", "show", "dev", "eth0"]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("ip -j prints JSON");
        v[0]["address"].as_str().expect("eth0 has an address").to_string()
    }

    /// Runs `f` inside this host's namespace.
    pub fn run_in<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        self.ns.run_in(f)
    }

    /// The IPv4 addresses on this host's eth0 (without prefix lengths).
    pub fn eth0_addresses(&self) -> Vec<Ipv4Addr> {
        let out = self.ns.ip(&["-j", "-4", "addr", "show", "dev", "eth0"]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("ip -j prints JSON");
        v.pointer("/0/addr_info")
            .and_then(|a| a.as_array())
            .map(|a| a.iter().filter_map(|i| i["local"].as_str()?.parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Whether `ip` is on this host's eth0 (e.g. the VIP, on a VRRP master).
    pub fn has_address(&self, ip: Ipv4Addr) -> bool {
        self.eth0_addresses().contains(&ip)
    }

    /// Sets eth0 up or down (down: the host stops answering, as a dead one would).
    pub fn set_eth0(&self, up: bool) {
        self.ns.ip(&["link", "set", "eth0", if up { "up" } else { "down" }]);
    }

    /// The MAC this host's neighbour table holds for `ip` on eth0, if any (in any state but
    /// FAILED/INCOMPLETE).
    pub fn neighbour_mac(&self, ip: Ipv4Addr) -> Option<String> {
        let out = self.ns.ip(&["-j", "neigh", "show", &ip.to_string(), "dev", "eth0"]);
        let v: serde_json::Value = serde_json::from_str(&out).ok()?;
        v.get(0)?.get("lladdr")?.as_str().map(str::to_string)
    }
}

#[derive(Debug, Clone)]
pub struct TopologyBuilder {
    backends: usize,
    nginx: bool,
    lbs: usize,
    lb_flood: Option<bool>,
    /// The client behind a router (ECMP), see `routed`.
    client_routed: bool,
    /// Backends behind a router (layer-3 return), see `routed_backends`.
    routed: usize,
    ipv6: bool,
}

impl TopologyBuilder {
    /// Number of backend hosts b1..bN (default 3).
    pub fn backends(mut self, n: usize) -> Self {
        assert!((1..=MAX_BACKENDS).contains(&n));
        self.backends = n;
        self
    }

    /// Whether to run nginx on every backend (default yes).
    pub fn nginx(mut self, on: bool) -> Self {
        self.nginx = on;
        self
    }

    /// Number of LB hosts (default 1). One: host `lb` (10.0.0.10) with the VIP on its eth0, put
    /// there by the harness. Two: hosts `lb1` (10.0.0.10) and `lb2` (10.0.0.9) and the VIP on
    /// neither: a VRRP master (fj-lb's `[vrrp]`, or keepalived) adds it, so the client's ARP
    /// for the VIP resolves to whichever is master.
    pub fn lbs(mut self, n: usize) -> Self {
        assert!((1..=3).contains(&n), "1 to 3 LB hosts, not {n}");
        self.lbs = n;
        self
    }

    /// The client behind a router (see the module's picture) instead of on the LAN: for ECMP,
    /// where the router spreads the VIP over the LB hosts that announce it. The VIP is on no
    /// LB; every backend and LB host has the router as default gateway. The router forwards
    /// with `fib_multipath_hash_policy = 1` (the L4 5-tuple picks the next hop).
    pub fn routed(mut self) -> Self {
        self.client_routed = true;
        self
    }

    /// Whether the bridge floods unknown-unicast frames to the LB ports. Default: yes with one
    /// LB (as always), no with two. A real NIC drops frames for other MACs before XDP sees
    /// them; a veth has no such filter, and fj-lb's XDP program balances whatever VIP packet
    /// reaches it. When a dead LB's port goes down the bridge forgets its MAC and floods the
    /// frames still sent to it, so the other LB, backup or not, would balance them and hide
    /// the failover window. Turning flooding off on the LB ports gives them a NIC's view.
    pub fn lb_unknown_unicast_flood(mut self, on: bool) -> Self {
        self.lb_flood = Some(on);
        self
    }

    /// Backends r1..rN behind a router, in another subnet (default none).
    pub fn routed_backends(mut self, n: usize) -> Self {
        assert!(n <= MAX_BACKENDS);
        self.routed = n;
        self
    }

    /// IPv6 on every host as well (default no); nginx listens on IPv6 too.
    pub fn ipv6(mut self, on: bool) -> Self {
        self.ipv6 = on;
        self
    }

    /// Creates everything and waits (bounded) until each nginx answers the client directly.
    pub fn build(self) -> Topology {
        crate::assert_root();
        let id = unique_id();
        let tmp = TempDir::named(&id, "lab");
        let switch = Netns::new(&id, "sw");
        switch.ip(&["link", "add", BRIDGE, "type", "bridge", "stp_state", "0"]);
        switch.ip(&["link", "set", BRIDGE, "up"]);

        let ipv6 = self.ipv6;
        let plug_on = |bridge: &str, role: &str, ip: Ipv4Addr| -> Host {
            let ns = Netns::new(&id, role);
            let port = format!("p-{role}");
            assert!(port.len() <= 15, "interface name {port} is too long");
            // Created from inside the switch namespace, each end straight in its namespace:
            // nothing ever appears in the root namespace.
            switch.ip(&["link", "add", "name", "eth0", "netns", ns.name(), "type", "veth", "peer", "name", &port]);
            switch.ip(&["link", "set", &port, "master", bridge]);
            switch.ip(&["link", "set", &port, "up"]);
            ns.ip(&["addr", "add", &format!("{ip}/{PREFIX_LEN}"), "dev", "eth0"]);
            let ip6 = ipv6.then(|| ip6_of(ip));
            if let Some(a) = ip6 {
                ns.ip(&["addr", "add", &format!("{a}/64"), "dev", "eth0", "nodad"]);
            }
            ns.ip(&["link", "set", "eth0", "up"]);
            // A veth leaves TCP/UDP checksums to "hardware" and hands the skb over with
            // CHECKSUM_PARTIAL. A frame the balancer sends back out with XDP_TX loses that
            // note and would reach the backend with a bad checksum. Real NICs deliver frames
            // with complete checksums; make the hosts compute theirs in software.
            ns.set_tx_checksum("eth0", false);
            for conf in ["all", "default", "eth0"] {
                ns.sysctl(&format!("net.ipv4.conf.{conf}.rp_filter"), "0");
            }
            Host { name: role.to_string(), ip, port, ns, ip6 }
        };
        let plug = |role: &str, ip: Ipv4Addr| plug_on(BRIDGE, role, ip);
        assert!(!(self.client_routed && self.routed > 0), "a lab has one router: the client's (ECMP) or the backends' (layer 3)");
        let (client, mut router) = if self.client_routed {
            let router = plug("router", ROUTER_IP);
            router.ns.sysctl("net.ipv4.ip_forward", "1");
            router.ns.sysctl("net.ipv4.fib_multipath_hash_policy", "1");
            let client = Netns::new(&id, "client");
            // The client's link: a veth pair straight between the two namespaces.
            router.ns.ip(&["link", "add", "name", "eth1", "type", "veth", "peer", "name", "eth0", "netns", client.name()]);
            router.ns.ip(&["addr", "add", &format!("{ROUTER_CLIENT_SIDE_IP}/24"), "dev", "eth1"]);
            router.ns.ip(&["link", "set", "eth1", "up"]);
            client.ip(&["addr", "add", &format!("{ROUTED_CLIENT_IP}/24"), "dev", "eth0"]);
            client.ip(&["link", "set", "eth0", "up"]);
            client.ip(&["route", "add", "default", "via", &ROUTER_CLIENT_SIDE_IP.to_string()]);
            // The client's frames cross an LB's XDP: complete checksums (see `plug`).
            client.set_tx_checksum("eth0", false);
            for conf in ["all", "default", "eth1"] {
                router.ns.sysctl(&format!("net.ipv4.conf.{conf}.rp_filter"), "0");
            }
            (Host { name: "client".into(), ip: ROUTED_CLIENT_IP, port: String::new(), ns: client, ip6: None }, Some(router))
        } else {
            (plug("client", CLIENT_IP), None)
        };
        let lbs = if self.lbs == 1 && !self.client_routed {
            let lb = plug("lb", LB_IP);
            // The LB answers ARP for the VIP, so the client sends VIP traffic to it.
            lb.ns.ip(&["addr", "add", &format!("{VIP}/32"), "dev", "eth0"]);
            if ipv6 {
                lb.ns.ip(&["addr", "add", &format!("{VIP6}/128"), "dev", "eth0", "nodad"]);
            }
            vec![lb]
        } else {
            // VRRP decides which of them holds the VIP, or (routed) BGP which of them gets it:
            // the harness gives it to none.
            (1..=self.lbs).map(|i| plug(&format!("lb{i}"), lb_ip(i))).collect()
        };
        if self.client_routed {
            for lb in &lbs {
                lb.ns.ip(&["route", "add", "default", "via", &ROUTER_IP.to_string()]);
            }
        }
        if !self.lb_flood.unwrap_or(self.lbs == 1) {
            for lb in &lbs {
                switch.ip(&["link", "set", &lb.port, "type", "bridge_slave", "flood", "off"]);
            }
        }
        // Direct server return: accept packets for the VIP, never claim it in ARP.
        let hold_vip = |b: &Host| {
            b.ns.ip(&["addr", "add", &format!("{VIP}/32"), "dev", "lo"]);
            if ipv6 {
                b.ns.ip(&["addr", "add", &format!("{VIP6}/128"), "dev", "lo", "nodad"]);
            }
            for conf in ["all", "eth0"] {
                b.ns.sysctl(&format!("net.ipv4.conf.{conf}.arp_ignore"), "1");
                b.ns.sysctl(&format!("net.ipv4.conf.{conf}.arp_announce"), "2");
            }
        };
        let mut backends = Vec::new();
        for i in 1..=self.backends {
            let b = plug(&format!("b{i}"), backend_ip(i));
            hold_vip(&b);
            if self.client_routed {
                // Direct return to a client behind the router.
                b.ns.ip(&["route", "add", "default", "via", &ROUTER_IP.to_string()]);
            }
            backends.push(b);
        }
        let routed = if self.routed == 0 {
            Vec::new()
        } else {
            switch.ip(&["link", "add", BACK_BRIDGE, "type", "bridge", "stp_state", "0"]);
            switch.ip(&["link", "set", BACK_BRIDGE, "up"]);
            let rt = plug("rt", ROUTER_IP);
            switch.ip(&["link", "add", "name", "eth1", "netns", rt.ns.name(), "type", "veth", "peer", "name", "p-rt1"]);
            switch.ip(&["link", "set", "p-rt1", "master", BACK_BRIDGE]);
            switch.ip(&["link", "set", "p-rt1", "up"]);
            rt.ns.ip(&["addr", "add", &format!("{ROUTER_BACK_IP}/{PREFIX_LEN}"), "dev", "eth1"]);
            if ipv6 {
                rt.ns.ip(&["addr", "add", &format!("{}/64", ip6_of(ROUTER_BACK_IP)), "dev", "eth1", "nodad"]);
            }
            rt.ns.ip(&["link", "set", "eth1", "up"]);
            rt.ns.set_tx_checksum("eth1", false);
            rt.ns.sysctl("net.ipv4.conf.eth1.rp_filter", "0");
            rt.ns.sysctl("net.ipv4.ip_forward", "1");
            rt.ns.sysctl("net.ipv6.conf.all.forwarding", "1");
            let routed: Vec<Host> = (1..=self.routed)
                .map(|i| {
                    let r = plug_on(BACK_BRIDGE, &format!("r{i}"), routed_backend_ip(i));
                    r.ns.ip(&["route", "add", "default", "via", &ROUTER_BACK_IP.to_string()]);
                    if ipv6 {
                        r.ns.ip(&["-6", "route", "add", "default", "via", &ip6_of(ROUTER_BACK_IP).to_string()]);
                    }
                    hold_vip(&r);
                    r
                })
                .collect();
            // The client (to reach the backends directly) and the LB (to encapsulate to them
            // and check their health) route the back segment through the router.
            for h in std::iter::once(&client).chain(lbs.iter()) {
                h.ns.ip(&["route", "add", BACK_SUBNET, "via", &ROUTER_IP.to_string()]);
                if ipv6 {
                    h.ns.ip(&["-6", "route", "add", BACK_SUBNET6, "via", &ip6_of(ROUTER_IP).to_string()]);
                }
            }
            router = Some(rt);
            routed
        };
        let mut topo = Topology {
            id,
            xdp_pass: None,
            nginx: Vec::new(),
            client,
            lbs,
            backends,
            router,
            routed,
            switch,
            tmp,
            daemons_started: 0,
            ipv6,
        };
        if self.nginx {
            topo.start_nginx();
        }
        topo
    }
}

/// A running lab; everything (processes, namespaces, temp files) goes away on Drop.
#[derive(Debug)]
pub struct Topology {
    id: String,
    xdp_pass: Option<ChildGuard>,
    nginx: Vec<ChildGuard>,
    client: Host,
    /// `[lb]`, or `[lb1, lb2]`, or `[lb1, lb2, lb3]`.
    lbs: Vec<Host>,
    backends: Vec<Host>,
    /// The router: in front of the client (ECMP), or to the back segment and the backends
    /// behind it (r1..rN); if any.
    router: Option<Host>,
    routed: Vec<Host>,
    switch: Netns,
    tmp: TempDir,
    /// How many daemons were started in this lab, for unique per-daemon directories.
    daemons_started: u32,
    ipv6: bool,
}

impl Topology {
    pub fn builder() -> TopologyBuilder {
        TopologyBuilder { backends: 3, nginx: true, lbs: 1, lb_flood: None, client_routed: false, routed: 0, ipv6: false }
    }

    /// `fjt-<pid>-<seq>`: prefix of every namespace of this lab.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn client(&self) -> &Host {
        &self.client
    }

    /// The router: the client's (ECMP, [`TopologyBuilder::routed`]) or the one in front of the
    /// routed backends ([`TopologyBuilder::routed_backends`]).
    pub fn router(&self) -> &Host {
        self.router.as_ref().expect("the lab was built with a router (routed or routed_backends)")
    }

    /// The LB host: `lb`, or `lb1` in a two-LB lab.
    pub fn lb(&self) -> &Host {
        &self.lbs[0]
    }

    /// Every LB host: `[lb]` or `[lb1, lb2]`.
    pub fn lbs(&self) -> &[Host] {
        &self.lbs
    }

    /// LB host `i`, 1-based (`lb_n(1)` is `lb()`).
    pub fn lb_n(&self, i: usize) -> &Host {
        assert!((1..=self.lbs.len()).contains(&i), "LB index {i} out of 1..={}", self.lbs.len());
        &self.lbs[i - 1]
    }

    /// Whether this is a lab of several LB hosts (VRRP, or ECMP behind a router), where the
    /// harness puts the VIP on no LB and each daemon gets its own bpffs dir and socket.
    pub fn is_vrrp(&self) -> bool {
        self.lbs.len() > 1 || self.router.is_some()
    }

    pub fn switch(&self) -> &Netns {
        &self.switch
    }

    pub fn backends(&self) -> &[Host] {
        &self.backends
    }

    /// Backend `i`, 1-based (b1 is `backend(1)`).
    pub fn backend(&self, i: usize) -> &Host {
        &self.backends[i - 1]
    }


    /// The backends behind the router: r1..rN.
    pub fn routed_backends(&self) -> &[Host] {
        &self.routed
    }

    /// Routed backend `i`, 1-based (r1 is `routed(1)`).
    pub fn routed(&self, i: usize) -> &Host {
        &self.routed[i - 1]
    }

    /// The bpffs directory `fj-lb decap` pins its program in on `host`.
    pub fn decap_dir(&self, host: &Host) -> PathBuf {
        PathBuf::from("/sys/fs/bpf").join(format!("{}-decap-{}", self.id, host.name))
    }

    /// `fj-lb decap --interface eth0 --bpffs DIR ARGS...` on `host` (in its namespace, with
    /// the host's bpffs): what the operator of a backend types. The program stays pinned
    /// after the command; the lab removes its pins on Drop.
    pub fn decap(&self, host: &Host, args: &[&str]) -> crate::CliRun {
        let dir = self.decap_dir(host);
        let mut cmd = std::process::Command::new(crate::fj_lb_bin());
        cmd.args(["decap", "--interface", "eth0", "--bpffs"]).arg(&dir).args(args).env("NO_COLOR", "1");
        let out = host.ns.output(cmd);
        crate::CliRun {
            args: ["decap", "--interface", "eth0"].iter().chain(args).map(|a| a.to_string()).collect(),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The lab's own temp dir (logs, configs).
    pub fn tmp(&self) -> &Path {
        self.tmp.path()
    }

    /// VIP:80.
    pub fn vip_addr(&self) -> SocketAddrV4 {
        SocketAddrV4::new(VIP, HTTP_PORT)
    }

    /// The bpffs directory a daemon of this lab pins its maps in: /sys/fs/bpf/<id>.
    pub fn bpffs_dir(&self) -> PathBuf {
        PathBuf::from("/sys/fs/bpf").join(&self.id)
    }

    /// The control socket a daemon of this lab listens on (in the lab's temp dir).
    pub fn control_socket(&self) -> PathBuf {
        self.tmp.join("control.sock")
    }

    /// The bpffs directory of the daemon on LB `i`: [`Topology::bpffs_dir`] in a one-LB lab,
    /// /sys/fs/bpf/<id>-lb<i> in a two-LB lab.
    pub fn bpffs_dir_of(&self, i: usize) -> PathBuf {
        let h = self.lb_n(i);
        if self.is_vrrp() { PathBuf::from("/sys/fs/bpf").join(format!("{}-{}", self.id, h.name)) } else { self.bpffs_dir() }
    }

    /// The control socket of the daemon on LB `i`: [`Topology::control_socket`] in a one-LB
    /// lab, `<tmp>/control-lb<i>.sock` in a two-LB lab.
    pub fn control_socket_of(&self, i: usize) -> PathBuf {
        let h = self.lb_n(i);
        if self.is_vrrp() { self.tmp.join(format!("control-{}.sock", h.name)) } else { self.control_socket() }
    }

    /// Like [`Topology::config`], for the daemon on LB `i` (its own bpffs dir and control
    /// socket), with a `[vrrp]` table if `vrrp` is given.
    pub fn lb_config(&self, i: usize, backends: &[(usize, u32)], vrrp: Option<&VrrpSettings>) -> Config {
        lab_config(&self.bpffs_dir_of(i), &self.control_socket_of(i), backends).vrrp(vrrp)
    }

    /// A fresh directory label for the next daemon started in this lab: `daemon` for the first
    /// one of a one-LB lab (as before), `daemon-<host>-<n>` otherwise.
    pub(crate) fn next_daemon_label(&mut self, host: &str) -> String {
        self.daemons_started += 1;
        if !self.is_vrrp() && self.daemons_started == 1 { "daemon".to_string() } else { format!("daemon-{host}-{}", self.daemons_started) }
    }

    /// A daemon config with one TCP service "web" on VIP:80 in DSR mode, native XDP on the
    /// LB's eth0, flow table 65,536, Maglev 65,537 slots, and the given `(backend index,
    /// weight)` pairs; extend it with [`Config`]'s builder methods.
    pub fn config(&self, backends: &[(usize, u32)]) -> Config {
        lab_config(&self.bpffs_dir(), &self.control_socket(), backends)
    }

    /// `GET path` from the client to `addr` over a fresh connection.
    pub fn client_get(&self, addr: SocketAddrV4, path: &str, timeout: Duration) -> http::Answer {
        self.client.run_in(|| http::get(addr, path, timeout))
    }

    /// `GET /` from the client through the VIP over a fresh connection, from client port
    /// `port` if given.
    pub fn vip_get(&self, port: Option<u16>, timeout: Duration) -> http::Answer {
        let vip = self.vip_addr();
        self.client.run_in(|| http::get_from(vip, "/", timeout, port))
    }

    /// Polls (every 20 ms, up to `timeout`) until a request through the VIP gets a 200 from a
    /// backend; its body. Panics with the last answer otherwise.
    pub fn wait_vip_answers(&self, timeout: Duration) -> String {
        let mut last = String::new();
        poll_until(timeout, Duration::from_millis(20), || {
            let answer = self.vip_get(None, Duration::from_secs(1));
            match self.served_by(&answer) {
                Ok(_) => answer.ok().map(|(_, body)| body),
                Err(e) => {
                    last = e;
                    None
                }
            }
        })
        .unwrap_or_else(|| panic!("the VIP did not answer the client within {timeout:?}; last: {last}"))
    }

    /// Which backend answered: `Ok(i)` for a 200 with body "bi", `Err` describing anything else.
    pub fn served_by(&self, answer: &http::Answer) -> Result<usize, String> {
        match answer {
            Ok((200, body)) => self.backend_of(body).ok_or_else(|| format!("200 with unexpected body {body:?}")),
            Ok((status, body)) => Err(format!("status {status} {body:?}")),
            Err(e) => Err(e.clone()),
        }
    }

    fn start_nginx(&mut self) {
        for b in self.backends.iter().chain(&self.routed) {
            let dir = self.tmp.join(&b.name);
            std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
            let conf = dir.join("nginx.conf");
            std::fs::write(&conf, nginx_conf(&dir, &b.name, self.ipv6)).expect("writing nginx.conf");
            let child = spawn_nginx(b, &dir, &conf, &format!("nginx {}", b.name));
            self.nginx.push(child);
        }
        for (i, b) in self.backends.iter().chain(&self.routed).enumerate() {
            let addr = SocketAddrV4::new(b.ip, HTTP_PORT);
            let mut last = String::new();
            let ok = poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
                if let Some(s) = self.nginx[i].try_status() {
                    panic!(
                        "nginx on {} exited ({s}):\n{}\n{}",
                        b.name,
                        self.nginx[i].log(),
                        std::fs::read_to_string(self.tmp.join(&b.name).join("error.log")).unwrap_or_default()
                    );
                }
                match self.client.run_in(|| http::get(addr, "/healthz", Duration::from_millis(500))) {
                    Ok((200, _)) => Some(()),
                    Ok(other) => {
                        last = format!("{other:?}");
                        None
                    }
                    Err(e) => {
                        last = e;
                        None
                    }
                }
            });
            if ok.is_none() {
                panic!("nginx on {} ({addr}) did not answer the client within 10 s; last: {last}", b.name);
            }
        }
    }

    /// Runs `fj-lb xdp-pass` in the switch namespace on every bridge port, so that frames the
    /// LB sends with XDP_TX out of its veth are delivered by the peer. Waits (bounded) until
    /// every port shows a program.
    pub fn start_xdp_pass(&mut self, bin: &Path) {
        if self.xdp_pass.is_some() {
            return;
        }
        let mut args: Vec<String> = vec!["xdp-pass".into()];
        for h in self.bridged() {
            args.push("--interface".into());
            args.push(h.port.clone());
        }
        let log = self.tmp.join("xdp-pass.log");
        let mut cmd = std::process::Command::new(bin);
        cmd.args(&args).env("NO_COLOR", "1");
        let mut child = self.switch.spawn_command("fj-lb xdp-pass", cmd, &log);
        let ports: Vec<String> = self.bridged().map(|h| h.port.clone()).collect();
        let ok = poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
            child.assert_running();
            ports.iter().all(|p| xdp_info(self.switch.name(), p).is_some()).then_some(())
        });
        if ok.is_none() {
            panic!("fj-lb xdp-pass did not attach to {ports:?} within 10 s; its log:\n{}", child.log());
        }
        self.xdp_pass = Some(child);
    }

    /// Every host: client, the LB(s), the backends, then the router and the routed backends.
    pub fn hosts(&self) -> impl Iterator<Item = &Host> {
        std::iter::once(&self.client)
            .chain(self.lbs.iter())
            .chain(self.backends.iter())
            .chain(self.router.iter())
            .chain(self.routed.iter())
    }

    /// The hosts with a port on the bridge: all but a routed lab's client.
    fn bridged(&self) -> impl Iterator<Item = &Host> {
        self.hosts().filter(|h| !h.port.is_empty())
    }

    /// Which backend served `body` ("b2\n" -> 2), if any.
    pub fn backend_of(&self, body: &str) -> Option<usize> {
        let name = body.trim();
        self.backends.iter().position(|b| b.name == name).map(|i| i + 1)
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        if let Some(mut x) = self.xdp_pass.take() {
            let title = x.label().to_string();
            x.stop_and_report(Duration::from_secs(5), &title);
        }
        let names: Vec<String> = self.backends.iter().chain(&self.routed).map(|b| b.name.clone()).collect();
        for (i, mut n) in self.nginx.drain(..).enumerate() {
            n.stop(Duration::from_secs(5));
            if std::thread::panicking() {
                let name = &names[i];
                let err = std::fs::read_to_string(self.tmp.join(name).join("error.log")).unwrap_or_default();
                eprintln!("---- nginx {name} error.log ----\n{err}{}", n.log());
            }
        }
        // `fj-lb decap` leaves its program pinned by design; the lab takes it away.
        for h in self.backends.iter().chain(&self.routed) {
            let _ = std::fs::remove_dir_all(self.decap_dir(h));
        }
        // Then the fields drop in order: host namespaces, the switch, the temp dir.
    }
}

/// The lab's tables (flow table 65,536, Maglev 65,537 slots) and its service "web".
fn lab_config(bpffs: &Path, control_socket: &Path, backends: &[(usize, u32)]) -> Config {
    Config::new(bpffs, control_socket).flow_table_size(65536).maglev_table_size(65537).service(Service::web(backends))
}

/// Runs nginx in `host`'s namespace with `conf`, its prefix, logs and temp paths under `dir`.
pub fn spawn_nginx(host: &Host, dir: &Path, conf: &Path, label: &str) -> ChildGuard {
    let args: Vec<std::ffi::OsString> =
        vec!["-p".into(), dir.into(), "-e".into(), dir.join("error.log").into(), "-c".into(), conf.into()];
    host.ns.spawn(label, "nginx", &args, &dir.join("stderr.log"))
}

fn nginx_conf(dir: &Path, name: &str, ipv6: bool) -> String {
    let d = dir.display();
    let listen6 = if ipv6 { "listen [::]:80 ipv6only=on;" } else { "" };
    format!(
        r#"# nginx for backend {name} of an fj-lb test lab
user root;
daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log notice;
events {{
    worker_connections 4096;
}}
http {{
    # client address:port, nginx connection serial number, requests so far on it, request
    log_format fjt '$remote_addr:$remote_port $connection $connection_requests "$request" $status';
    access_log {d}/access.log fjt;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    default_type text/plain;
    keepalive_timeout 60s;
    keepalive_requests 10000;
    server {{
        listen 0.0.0.0:80;
        {listen6}
        server_name _;
        location = /healthz {{
            return 200 "ok\n";
        }}
        location / {{
            return 200 "{name}\n";
        }}
    }}
}}
"#
    )
}
