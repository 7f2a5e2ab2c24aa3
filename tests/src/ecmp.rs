//! The ECMP lab: a client behind a router running BIRD 2 with multipath, N fj-lb hosts each
//! with `[announce]` and a BIRD that exports fj-lb's table to the router, and nginx backends
//! on the LAN. Used by the ECMP test, `cargo xtask lab --ecmp` and the benchmark.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::{Ipv4Addr, SocketAddrV4},
    time::{Duration, Instant},
};

use crate::{
    bird::{BgpTimers, Bird, lb_conf, router_conf},
    cli,
    config::{AnnounceSettings, Config},
    daemon::{Daemon, Readiness},
    http::KeepAliveConn,
    ns::run,
    poll_until,
    topology::{ROUTER_IP, Topology, VIP, lb_ip},
};

/// fj-lb's announce table on every LB host.
pub const ANNOUNCE_TABLE: u32 = 100;
/// How long BGP may take to come up and the router to learn every host's route.
pub const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);

/// A running ECMP lab; everything goes away on Drop (daemons and BIRDs first, then the lab).
#[derive(Debug)]
pub struct EcmpLab {
    /// Per LB host (index 0 is lb1): its fj-lb, `None` once killed.
    pub daemons: Vec<Option<Daemon>>,
    /// Per LB host: its BIRD, `None` once killed.
    pub birds: Vec<Option<Bird>>,
    /// Per LB host: its daemon's config, for restarts.
    pub configs: Vec<Config>,
    pub router_bird: Bird,
    pub timers: BgpTimers,
    // Last: the namespaces go after every process in them.
    pub topo: Topology,
}

impl EcmpLab {
    /// Builds the lab with `lbs` LB hosts and `backends` nginx backends; the daemon on host `i`
    /// (1-based) runs `config(i, base)` where `base` is the lab's config for it with
    /// `[announce] table = 100`. Returns once every host's daemon answers and the router has a
    /// next hop through each of them.
    pub fn start(lbs: usize, backends: usize, timers: BgpTimers, config: impl Fn(usize, Config) -> Config) -> EcmpLab {
        Self::start_on(Self::topology(lbs, backends), timers, config)
    }

    /// The lab's topology, for [`EcmpLab::start_on`]: routed, `lbs` LB hosts, `backends` nginx
    /// backends.
    pub fn topology(lbs: usize, backends: usize) -> Topology {
        Topology::builder().routed().lbs(lbs).backends(backends).build()
    }

    /// Like [`EcmpLab::start`] on a topology from [`EcmpLab::topology`] that the caller has
    /// prepared (e.g. extra listeners on the backends).
    pub fn start_on(mut topo: Topology, timers: BgpTimers, config: impl Fn(usize, Config) -> Config) -> EcmpLab {
        let (lbs, backends) = (topo.lbs().len(), topo.backends().len());
        let all: Vec<(usize, u32)> = (1..=backends).map(|i| (i, 100)).collect();
        let lb_ips: Vec<Ipv4Addr> = (1..=lbs).map(lb_ip).collect();
        let router_bird = Bird::start(topo.router(), &topo.tmp().join("bird-router"), &router_conf(ROUTER_IP, &lb_ips, timers));
        let mut daemons = Vec::new();
        let mut birds = Vec::new();
        let mut configs = Vec::new();
        for i in 1..=lbs {
            let c = config(i, topo.lb_config(i, &all, None).announce(Some(&AnnounceSettings::new(ANNOUNCE_TABLE))));
            daemons.push(Some(Daemon::start_on(&mut topo, i, &c, Readiness::Attached)));
            birds.push(Some(Self::start_lb_bird(&topo, i, timers)));
            configs.push(c);
        }
        let lab = EcmpLab { daemons, birds, configs, router_bird, timers, topo };
        let want: BTreeSet<Ipv4Addr> = lb_ips.into_iter().collect();
        if lab.wait_next_hops(&want, CONVERGE_TIMEOUT).is_none() {
            panic!(
                "the router did not get a route to {VIP} through every LB host within {CONVERGE_TIMEOUT:?} (has {:?});\n\
                 router's BIRD:\n{}\n{}",
                lab.next_hops(),
                lab.router_bird.birdc("show protocols").unwrap_or_default(),
                lab.router_bird.log()
            );
        }
        lab
    }

    /// (Re)starts BIRD on LB host `i`.
    pub fn start_lb_bird(topo: &Topology, i: usize, timers: BgpTimers) -> Bird {
        let dir = topo.tmp().join(format!("bird-lb{i}"));
        Bird::start(topo.lb_n(i), &dir, &lb_conf(lb_ip(i), ROUTER_IP, ANNOUNCE_TABLE, timers))
    }

    pub fn daemon(&self, i: usize) -> &Daemon {
        self.daemons[i - 1].as_ref().unwrap_or_else(|| panic!("fj-lb on lb{i} was killed"))
    }

    /// The router's next hops for the VIP (its kernel's main table), as BIRD installed them.
    pub fn next_hops(&self) -> BTreeSet<Ipv4Addr> {
        router_next_hops(&self.topo)
    }

    /// Polls (every 2 ms) until the router's next hops for the VIP are `want`; how long that
    /// took, or `None` after `timeout`.
    pub fn wait_next_hops(&self, want: &BTreeSet<Ipv4Addr>, timeout: Duration) -> Option<Duration> {
        let t0 = Instant::now();
        poll_until(timeout, Duration::from_millis(2), || (&self.next_hops() == want).then(|| t0.elapsed()))
    }

    /// LB host `i` dies: its link goes down, then SIGKILL to its fj-lb and its BIRD. Nothing
    /// tells the router: it notices when the BGP hold time runs out. (The link goes first: the
    /// kernel closes a killed BIRD's TCP session with a FIN, which would tell the router at
    /// once, as a dead host cannot.)
    pub fn crash(&mut self, i: usize) {
        self.topo.lb_n(i).set_eth0(false);
        if let Some(mut d) = self.daemons[i - 1].take() {
            d.kill();
            // The guard's Drop removes the pins of a daemon that is gone anyway.
            drop(d);
        }
        if let Some(mut b) = self.birds[i - 1].take() {
            b.kill();
        }
    }

    /// (Re)starts fj-lb on LB host `i` with its config; returns once it answers.
    pub fn restart_daemon(&mut self, i: usize) {
        drop(self.daemons[i - 1].take());
        let c = self.configs[i - 1].clone();
        self.daemons[i - 1] = Some(Daemon::start_on(&mut self.topo, i, &c, Readiness::Attached));
    }

    /// Brings LB host `i` back after [`EcmpLab::crash`]: link up (and its default route, which
    /// went with the link), BIRD, fj-lb.
    pub fn revive(&mut self, i: usize) {
        let host = self.topo.lb_n(i);
        host.set_eth0(true);
        host.ns.ip(&["route", "replace", "default", "via", &ROUTER_IP.to_string()]);
        self.birds[i - 1] = Some(Self::start_lb_bird(&self.topo, i, self.timers));
        self.restart_daemon(i);
    }

    /// `fj-lb status --json`'s `announce.vips[0]` of host `i`: (announced, reason).
    pub fn announced(&self, i: usize) -> Result<(bool, String), String> {
        let st = self.daemon(i).status()?;
        let v = st.pointer("/announce/vips/0").ok_or_else(|| format!("no announce.vips in {st}"))?;
        Ok((v["announced"].as_bool().unwrap_or(false), v["reason"].as_str().unwrap_or("").to_string()))
    }

    /// The client source ports in LB host `i`'s flow table (flows to the VIP).
    pub fn flow_ports(&self, i: usize) -> BTreeSet<u16> {
        let flows = cli::fj_lb(self.daemon(i).control_socket(), &["flows", "--json", "--limit", "100000"]).json();
        let flows = flows.unwrap_or_else(|e| panic!("fj-lb flows on lb{i}: {e}"));
        flows["flows"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|f| f["dst"].as_str().is_some_and(|d| d.starts_with(&format!("{VIP}:"))))
                    .filter_map(|f| f["src"].as_str()?.rsplit(':').next()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Packets LB host `i` balanced for service "web" so far.
    pub fn web_packets(&self, i: usize) -> u64 {
        cli::status_service(self.daemon(i).control_socket(), "web")
            .unwrap_or_else(|e| panic!("status of lb{i}: {e}"))["packets"]
            .as_u64()
            .unwrap_or(0)
    }

    pub fn vip_addr(&self) -> SocketAddrV4 {
        self.topo.vip_addr()
    }

    /// Opens `n` keep-alive connections to the VIP from the client, each asked once: the
    /// connections and the backend (1-based) that answered each. Panics on a failure.
    pub fn open_conns(&self, n: usize, timeout: Duration) -> Vec<(KeepAliveConn, usize)> {
        let vip = self.vip_addr();
        self.topo.client().run_in(|| {
            (0..n)
                .map(|k| {
                    let mut c = KeepAliveConn::connect(vip, timeout, None).unwrap_or_else(|e| panic!("connection {k}: {e}"));
                    let b = self.topo.served_by(&c.request("/")).unwrap_or_else(|e| panic!("connection {k} through the VIP: {e}"));
                    (c, b)
                })
                .collect()
        })
    }

    /// How many of `conns` each of the LB hosts `lbs` carries: the one whose flow table holds
    /// the connection's source port.
    pub fn carriers(&self, lbs: &[usize], conns: &[(KeepAliveConn, usize)]) -> BTreeMap<usize, usize> {
        let tables: Vec<(usize, BTreeSet<u16>)> = lbs.iter().map(|&i| (i, self.flow_ports(i))).collect();
        let mut per_lb = BTreeMap::new();
        for (c, _) in conns {
            let port = c.local_addr().port();
            if let Some((i, _)) = tables.iter().find(|(_, t)| t.contains(&port)) {
                *per_lb.entry(*i).or_insert(0) += 1;
            }
        }
        per_lb
    }
}

impl Drop for EcmpLab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- router: ip route ----\n{}", run(std::process::Command::new("ip").args(["-n", self.topo.router().ns.name(), "route"])));
            eprintln!("---- router's BIRD ----\n{}\n{}", self.router_bird.birdc("show protocols all").unwrap_or_default(), self.router_bird.log());
        }
        // Daemons first (a clean stop withdraws), then the BIRDs; the topology last.
        self.daemons.clear();
        self.birds.clear();
    }
}

/// The router's next hops for the VIP in its main table: one `gateway`, or several
/// `nexthops`; empty without a route.
pub fn router_next_hops(topo: &Topology) -> BTreeSet<Ipv4Addr> {
    let out = run(std::process::Command::new("ip").args(["-n", topo.router().ns.name(), "-j", "route", "show", &format!("{VIP}/32")]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    let Some(route) = v.get(0) else { return BTreeSet::new() };
    let gw = |x: &serde_json::Value| x.get("gateway").and_then(|g| g.as_str()).and_then(|g| g.parse().ok());
    match route.get("nexthops").and_then(|n| n.as_array()) {
        Some(hops) => hops.iter().filter_map(gw).collect(),
        None => gw(route).into_iter().collect(),
    }
}
