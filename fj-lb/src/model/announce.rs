//! Announcing VIPs to routers (`[announce]`): which VIPs this host should have a host route
//! for in its announce table, and the route changes that get the table there. The local BGP
//! speaker (BIRD 2, FRR) exports that table; fj-lb never speaks BGP itself. Pure: the daemon
//! feeds it the balancer's health and applies the plan through rtnetlink (`crate::announce`).
use std::{collections::BTreeSet, fmt, net::IpAddr};

use serde::{Deserialize, Serialize};

use super::balancer::Balancer;

/// Kernel routing tables fj-lb refuses to keep its routes in: unspec (0) and the kernel's own
/// default (253), main (254) and local (255). A host route `VIP dev lo` in main or local would
/// change how the host itself routes the VIP; a table of fj-lb's own only feeds the speaker.
pub const RESERVED_TABLES: [u32; 4] = [0, 253, 254, 255];

/// The `protocol` fj-lb's routes carry (`ip route ... proto 250`): how a restarted daemon
/// tells its own routes from anyone else's in the table, and what a speaker's filter can match
/// (BIRD: `krt_source = 250`). Unassigned in iproute2's rt_protos.
pub const ROUTE_PROTOCOL: u8 = 250;

/// When a VIP is announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum When {
    /// While XDP is attached and some service on the VIP has a healthy backend.
    Healthy,
    /// While XDP is attached, whatever the health checks say.
    Always,
}

impl When {
    pub fn as_str(self) -> &'static str {
        match self {
            When::Healthy => "healthy",
            When::Always => "always",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AnnounceConfig {
    /// The kernel routing table the host routes go into.
    pub table: u32,
    pub when: When,
    /// The VIPs announced: `announce.vips`, or every service's VIP.
    pub vips: Vec<IpAddr>,
}

/// One host route fj-lb keeps: `vip/32` (or `/128`) `dev lo table T proto 250`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Route {
    pub table: u32,
    pub vip: IpAddr,
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let len = if self.vip.is_ipv4() { 32 } else { 128 };
        write!(f, "{}/{len} table {}", self.vip, self.table)
    }
}

/// What the health checks say about one service, as the decision needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceHealth {
    pub name: String,
    pub vip: IpAddr,
    /// Backends that are healthy and have a MAC: they can take a flow now.
    pub serving: usize,
    pub total: usize,
    /// Every backend has a verdict (see `ServiceState::settled`).
    pub settled: bool,
}

/// Every service's health, from the balancer.
pub fn service_health(b: &Balancer) -> Vec<ServiceHealth> {
    b.services()
        .map(|st| ServiceHealth {
            name: st.config.name.clone(),
            vip: st.config.vip,
            serving: st.backends.iter().filter(|be| st.serving(be)).count(),
            total: st.backends.len(),
            settled: st.settled(),
        })
        .collect()
}

/// Whether a VIP should be announced now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Announce,
    Withdraw,
    /// Not known yet (health checks without a verdict): keep the route as it is. A daemon
    /// restarted after a crash adopts the routes its predecessor left and must not withdraw
    /// them only because its own checks have not run yet.
    Keep,
}

/// The decision for one VIP, with the reason an operator reads in `fj-lb status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub vip: IpAddr,
    pub verdict: Verdict,
    pub reason: String,
}

/// "web 2/3" for each service on the VIP.
fn counts(services: &[&ServiceHealth]) -> String {
    services.iter().map(|s| format!("{} {}/{}", s.name, s.serving, s.total)).collect::<Vec<_>>().join(", ")
}

/// Decides each announced VIP: announced while XDP is attached and (for `when = "healthy"`) some
/// service on the VIP has a serving backend; withdrawn when none has one and every such service
/// has its verdict; kept as it is while the checks have not decided.
pub fn decide(cfg: &AnnounceConfig, xdp_attached: bool, health: &[ServiceHealth]) -> Vec<Decision> {
    cfg.vips
        .iter()
        .map(|&vip| {
            let on_vip: Vec<&ServiceHealth> = health.iter().filter(|s| s.vip == vip).collect();
            let (verdict, reason) = if !xdp_attached {
                (Verdict::Withdraw, "XDP is not attached: this host cannot forward".to_string())
            } else if on_vip.is_empty() {
                (Verdict::Withdraw, "no service on this VIP".to_string())
            } else if cfg.when == When::Always {
                (Verdict::Announce, "when = \"always\": announced while XDP is attached".to_string())
            } else if on_vip.iter().any(|s| s.serving > 0) {
                (Verdict::Announce, format!("serving ({} backends healthy)", counts(&on_vip)))
            } else if on_vip.iter().all(|s| s.settled) {
                (Verdict::Withdraw, format!("no service on this VIP has a healthy backend ({})", counts(&on_vip)))
            } else {
                (Verdict::Keep, format!("waiting for the first health check verdicts ({})", counts(&on_vip)))
            };
            Decision { vip, verdict, reason }
        })
        .collect()
}

/// Route changes, in the order to make them: additions first, so a VIP that moves table is
/// never unannounced in between.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutePlan {
    pub add: Vec<Route>,
    pub remove: Vec<Route>,
}

impl RoutePlan {
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }
}

/// The routes the table should hold after `decisions`, given what it holds: every announced
/// VIP in `table`, every kept one where it is, nothing else of ours (a VIP a reload dropped, a
/// table a reload changed, a route a previous daemon left for a VIP no longer configured).
pub fn wanted(installed: &BTreeSet<Route>, table: u32, decisions: &[Decision]) -> BTreeSet<Route> {
    decisions
        .iter()
        .filter(|d| match d.verdict {
            Verdict::Announce => true,
            Verdict::Withdraw => false,
            Verdict::Keep => installed.contains(&Route { table, vip: d.vip }),
        })
        .map(|d| Route { table, vip: d.vip })
        .collect()
}

/// The changes from `installed` to `wanted`.
pub fn plan(installed: &BTreeSet<Route>, wanted: &BTreeSet<Route>) -> RoutePlan {
    RoutePlan {
        add: wanted.difference(installed).copied().collect(),
        remove: installed.difference(wanted).copied().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn cfg(when: When, vips: &[&str]) -> AnnounceConfig {
        AnnounceConfig { table: 100, when, vips: vips.iter().map(|v| ip(v)).collect() }
    }

    fn svc(name: &str, vip: &str, serving: usize, settled: bool) -> ServiceHealth {
        ServiceHealth { name: name.into(), vip: ip(vip), serving, total: 3, settled }
    }

    fn verdicts(d: &[Decision]) -> Vec<Verdict> {
        d.iter().map(|d| d.verdict.clone()).collect()
    }

    fn routes(table: u32, vips: &[&str]) -> BTreeSet<Route> {
        vips.iter().map(|v| Route { table, vip: ip(v) }).collect()
    }

    #[test]
    fn healthy_announces_a_vip_while_one_of_its_services_serves() {
        let c = cfg(When::Healthy, &["10.0.0.100"]);
        let d = decide(&c, true, &[svc("web", "10.0.0.100", 0, true), svc("tls", "10.0.0.100", 1, true)]);
        assert_eq!(verdicts(&d), [Verdict::Announce]);
        assert!(d[0].reason.contains("web 0/3, tls 1/3"), "{}", d[0].reason);
    }

    #[test]
    fn healthy_withdraws_once_every_service_on_the_vip_is_down() {
        let c = cfg(When::Healthy, &["10.0.0.100", "10.0.0.101"]);
        let h = [svc("web", "10.0.0.100", 0, true), svc("tls", "10.0.0.100", 0, true), svc("api", "10.0.0.101", 2, true)];
        let d = decide(&c, true, &h);
        assert_eq!(verdicts(&d), [Verdict::Withdraw, Verdict::Announce]);
        assert!(d[0].reason.starts_with("no service on this VIP has a healthy backend"), "{}", d[0].reason);
    }

    #[test]
    fn healthy_keeps_the_route_until_the_checks_have_decided() {
        let c = cfg(When::Healthy, &["10.0.0.100"]);
        let d = decide(&c, true, &[svc("web", "10.0.0.100", 0, false), svc("tls", "10.0.0.100", 0, true)]);
        assert_eq!(verdicts(&d), [Verdict::Keep]);
        // Kept means: an adopted route stays, a missing one is not added yet.
        assert_eq!(wanted(&routes(100, &["10.0.0.100"]), 100, &d), routes(100, &["10.0.0.100"]));
        assert!(wanted(&BTreeSet::new(), 100, &d).is_empty());
        // One serving service is enough, settled or not.
        let d = decide(&c, true, &[svc("web", "10.0.0.100", 1, false)]);
        assert_eq!(verdicts(&d), [Verdict::Announce]);
    }

    #[test]
    fn always_announces_without_healthy_backends_but_never_without_xdp() {
        let c = cfg(When::Always, &["10.0.0.100"]);
        assert_eq!(verdicts(&decide(&c, true, &[svc("web", "10.0.0.100", 0, true)])), [Verdict::Announce]);
        assert_eq!(verdicts(&decide(&c, true, &[svc("web", "10.0.0.100", 0, false)])), [Verdict::Announce]);
        let d = decide(&c, false, &[svc("web", "10.0.0.100", 3, true)]);
        assert_eq!(verdicts(&d), [Verdict::Withdraw]);
        assert!(d[0].reason.contains("XDP is not attached"));
        let h = cfg(When::Healthy, &["10.0.0.100"]);
        assert_eq!(verdicts(&decide(&h, false, &[svc("web", "10.0.0.100", 3, true)])), [Verdict::Withdraw]);
    }

    #[test]
    fn a_vip_without_a_service_is_withdrawn() {
        let c = cfg(When::Always, &["10.0.0.100"]);
        assert_eq!(verdicts(&decide(&c, true, &[svc("web", "10.0.0.101", 3, true)])), [Verdict::Withdraw]);
    }

    #[test]
    fn the_plan_adds_what_is_missing_and_removes_what_is_ours_but_unwanted() {
        let installed = routes(100, &["10.0.0.100", "10.0.0.102"]);
        let c = cfg(When::Healthy, &["10.0.0.100", "10.0.0.101"]);
        let d = decide(&c, true, &[svc("web", "10.0.0.100", 1, true), svc("api", "10.0.0.101", 1, true)]);
        let p = plan(&installed, &wanted(&installed, 100, &d));
        assert_eq!(p.add, routes(100, &["10.0.0.101"]).into_iter().collect::<Vec<_>>());
        // 10.0.0.102 is not configured any more (a reload dropped it, or a previous daemon left it).
        assert_eq!(p.remove, routes(100, &["10.0.0.102"]).into_iter().collect::<Vec<_>>());
        assert!(plan(&wanted(&installed, 100, &d), &wanted(&installed, 100, &d)).is_empty());
    }

    #[test]
    fn a_reload_that_drops_a_vip_or_moves_the_table_is_a_diff() {
        let installed = routes(100, &["10.0.0.100", "2001:db8::100"]);
        let h = [svc("web", "10.0.0.100", 1, true), svc("web6", "2001:db8::100", 1, true)];
        // The reload drops the IPv6 VIP.
        let d = decide(&cfg(When::Healthy, &["10.0.0.100"]), true, &h);
        let p = plan(&installed, &wanted(&installed, 100, &d));
        assert!(p.add.is_empty());
        assert_eq!(p.remove, [Route { table: 100, vip: ip("2001:db8::100") }]);
        // The reload moves everything to table 200: added there, removed from 100.
        let moved = AnnounceConfig { table: 200, ..cfg(When::Healthy, &["10.0.0.100", "2001:db8::100"]) };
        let d = decide(&moved, true, &h);
        let p = plan(&installed, &wanted(&installed, 200, &d));
        assert_eq!(p.add, routes(200, &["10.0.0.100", "2001:db8::100"]).into_iter().collect::<Vec<_>>());
        assert_eq!(p.remove, installed.iter().copied().collect::<Vec<_>>());
        // A kept VIP whose table moved is not carried over: the new table gets it once decided.
        let d = decide(&moved, true, &[svc("web", "10.0.0.100", 0, false), svc("web6", "2001:db8::100", 0, false)]);
        assert!(wanted(&installed, 200, &d).is_empty());
    }

    #[test]
    fn a_clean_stop_removes_everything() {
        let installed = routes(100, &["10.0.0.100", "10.0.0.101"]);
        let p = plan(&installed, &BTreeSet::new());
        assert!(p.add.is_empty());
        assert_eq!(p.remove.len(), 2);
    }

    #[test]
    fn routes_print_as_host_routes() {
        assert_eq!(Route { table: 100, vip: ip("10.0.0.100") }.to_string(), "10.0.0.100/32 table 100");
        assert_eq!(Route { table: 7, vip: ip("2001:db8::1") }.to_string(), "2001:db8::1/128 table 7");
    }
}
