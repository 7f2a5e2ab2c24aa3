//! Part 6 of the end-to-end benchmark: N active hosts behind ECMP. How long after an LB host
//! can no longer serve does the router stop sending it flows, next to the bound each way of
//! failing has: a clean `fj-lb` stop (the route goes, BIRD sends a BGP withdraw: no timer at
//! all), the health of the host's last backend lost (the health checks' detection bound), and
//! the host dying (the BGP hold time; BFD would bound it at its interval × multiplier). In the
//! tests crate's ECMP lab: a router running BIRD 2, three fj-lb hosts each with `[announce]` and
//! a BIRD, three nginx backends. The clock starts at the failure and stops when the router's
//! kernel route to the VIP has lost the host's next hop.
use std::{
    collections::BTreeSet,
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use fj_lb_tests::{
    HealthSettings, lb_ip,
    backends::TcpAcceptor,
    bird::BgpTimers,
    ecmp::{CONVERGE_TIMEOUT, EcmpLab},
};
use serde_json::json;

use super::{Report, check_stop, f, ratio};

/// Trials per kind of failure (median and max reported).
const TRIALS: usize = 3;
/// The port lb3 checks its backends on; closing it is "lb3 lost its last backend".
const CHECK_PORT: u16 = 8081;

/// One kind of failure, its times, and the bound it is measured against.
pub struct Failure {
    pub what: &'static str,
    pub ms: Vec<f64>,
    pub bound_ms: f64,
    pub bound: String,
}

fn hops(lbs: &[usize]) -> BTreeSet<Ipv4Addr> {
    lbs.iter().map(|&i| lb_ip(i)).collect()
}

/// Runs the failures in one lab; `Err` if a withdrawal or a recovery did not happen in time.
pub fn measure() -> Result<Vec<Failure>, String> {
    let timers = BgpTimers::default();
    let http = HealthSettings::http();
    let tcp = HealthSettings::tcp(CHECK_PORT);
    let topo = EcmpLab::topology(3, 3);
    let mut acceptors: Vec<TcpAcceptor> = topo.backends().iter().map(|b| TcpAcceptor::start(b, CHECK_PORT)).collect();
    let mut lab = EcmpLab::start_on(topo, timers, |i, c| c.health(Some(if i == 3 { &tcp } else { &http })));
    let all = hops(&[1, 2, 3]);
    let hold_ms = f64::from(timers.hold_time_s) * 1e3;
    let mut stop = Failure { what: "`fj-lb` stopped (SIGTERM)", ms: Vec::new(), bound_ms: hold_ms, bound: format!("none (a BGP withdraw); the hold time {} s for comparison", timers.hold_time_s) };
    let mut health = Failure {
        what: "the host's last backend fails its checks",
        ms: Vec::new(),
        bound_ms: tcp.detection_bound().as_secs_f64() * 1e3,
        bound: format!("detection: interval {} ms × fall {} + timeout {} ms", tcp.interval_ms, tcp.fall, tcp.timeout_ms),
    };
    let mut crash = Failure { what: "the host dies (link down, fj-lb and BIRD killed)", ms: Vec::new(), bound_ms: hold_ms, bound: format!("BGP hold time {} s", timers.hold_time_s) };
    let back = |lab: &EcmpLab, what: &str| -> Result<(), String> {
        lab.wait_next_hops(&all, CONVERGE_TIMEOUT).map(|_| ()).ok_or_else(|| format!("{what}: the router has {:?}, not all three hosts", lab.next_hops()))
    };
    let timed = |lab: &EcmpLab, want: &BTreeSet<Ipv4Addr>, t0: Instant, what: &str| -> Result<f64, String> {
        lab.wait_next_hops(want, Duration::from_secs(20))
            .map(|_| t0.elapsed().as_secs_f64() * 1e3)
            .ok_or_else(|| format!("{what}: the router still has {:?} after 20 s", lab.next_hops()))
    };
    for trial in 1..=TRIALS {
        check_stop();
        eprintln!("fj-lb-bench-e2e: ECMP trial {trial}: clean stop of lb2");
        let t0 = Instant::now();
        lab.daemon(2).signal(libc::SIGTERM);
        stop.ms.push(timed(&lab, &hops(&[1, 3]), t0, "clean stop")?);
        lab.restart_daemon(2);
        back(&lab, "lb2 restarted")?;

        check_stop();
        eprintln!("fj-lb-bench-e2e: ECMP trial {trial}: lb3 loses its backends");
        let t0 = Instant::now();
        acceptors.clear();
        health.ms.push(timed(&lab, &hops(&[1, 2]), t0, "health lost")?);
        acceptors = lab.topo.backends().iter().map(|b| TcpAcceptor::start(b, CHECK_PORT)).collect();
        back(&lab, "lb3's backends back")?;

        check_stop();
        eprintln!("fj-lb-bench-e2e: ECMP trial {trial}: lb1 dies");
        let t0 = Instant::now();
        lab.crash(1);
        crash.ms.push(timed(&lab, &hops(&[2, 3]), t0, "crash")?);
        lab.revive(1);
        back(&lab, "lb1 revived")?;
    }
    drop(lab);
    drop(acceptors);
    Ok(vec![stop, health, crash])
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() { f64::NAN } else { s[s.len() / 2] }
}

pub fn report(r: &mut Report, result: Result<Vec<Failure>, String>) {
    r.section(
        "ECMP: an LB host's failure to the router's withdrawal",
        &format!(
            "The ECMP lab: a router running BIRD 2 (`merge paths on`, `fib_multipath_hash_policy = 1`), three fj-lb hosts \
             each with `[announce] table = 100` and a BIRD exporting that table over eBGP (keepalive 1 s, hold time 3 s), \
             three nginx backends (health: HTTP every 200 ms, fall 3; lb3 checks TCP port {CHECK_PORT} instead, which the \
             benchmark closes to fail lb3's backends for lb3 alone). From the failure to the moment the router's kernel \
             route to the VIP lost that host's next hop (polled every 2 ms); {TRIALS} trials each, the host restored in \
             between. No BFD here: with BIRD's `bfd` on the BGP sessions a dead host would be withdrawn after the BFD \
             interval × multiplier instead of the hold time."
        ),
    );
    match result {
        Err(e) => {
            let msg = r.fail("ECMP withdrawal", &e);
            r.para(&msg);
        }
        Ok(failures) => {
            let mut rows = Vec::new();
            let mut j = Vec::new();
            for fl in &failures {
                let (med, max) = (median(&fl.ms), fl.ms.iter().copied().fold(f64::NAN, f64::max));
                rows.push(vec![fl.what.to_string(), format!("{} ms", f(med, 0)), format!("{} ms", f(max, 0)), fl.bound.clone(), format!("{} ms", f(fl.bound_ms, 0)), ratio(med, fl.bound_ms)]);
                j.push(json!({"failure": fl.what, "ms": fl.ms, "median_ms": med, "max_ms": max, "bound": fl.bound, "bound_ms": fl.bound_ms}));
            }
            r.table(&["failure", "withdrawn, median", "max", "bound", "bound ms", "median / bound"], &rows);
            r.para(
                "A clean stop removes the routes before XDP detaches: BIRD hears of it over netlink and sends the withdraw at \
                 once. A host whose backends fail withdraws within the checks' detection bound plus that same netlink and \
                 BGP hop. A dead host says nothing: the router's hold timer runs out the hold time after the last message \
                 it got from the host, so the withdrawal comes at most the hold time after the death, and sooner by however \
                 long before the death that last keepalive came.",
            );
            r.put("ecmp_withdrawal", json!(j));
        }
    }
}
