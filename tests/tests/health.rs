//! Health checks, drain/enable and reloads, end to end through the real daemon: a client, the
//! balancer and nginx backends in network namespaces (see `fj_lb_tests::topology`), the
//! operator's view through `fj-lb --socket S backends|status --json`. Needs root and a built
//! `fj-lb` (`cargo build -p fj-lb`, or `FJ_LB_BIN`).
//!
//! Every wait is a bounded poll with a deadline; on a failed assertion the harness prints the
//! daemon's log (and nginx's) as it tears the lab down.
use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::PathBuf,
    time::{Duration, Instant},
};

use fj_lb_tests::{
    CLIENT_IP, Config, Daemon, HealthSettings, KeepAliveConn, Topology,
    backends::{TcpAcceptor, direct_get, nginx_pids, restart_nginx_with_healthz, start_nginx},
    backend_ip,
    cli::{BackendView, backends, lookup_ports, status_service, wait_backends},
    fj_lb, get_from,
    http::Answer,
    poll_until, require_root,
};

/// Per-request timeout where an answer is expected.
const TIMEOUT: Duration = Duration::from_secs(2);
/// Deadline for health states to settle (rise/fall at 200 ms intervals take well under 1 s).
const SETTLE: Duration = Duration::from_secs(10);
/// Slack on top of the health checker's own bound (interval × fall + timeout).
const MARGIN: Duration = Duration::from_millis(500);
const ALL3: [(usize, u32); 3] = [(1, 100), (2, 100), (3, 100)];

/// The lab's config for `backends`, with `health` as the service's `[service.health]`.
fn config_with_health(topo: &Topology, backends: &[(usize, u32)], health: Option<&HealthSettings>) -> Config {
    topo.config(backends).health(health)
}

/// Starts the daemon on `topo` with b1..b3 and `health`; with `wait_up`, waits (bounded, as
/// `wait_up` says) until all three are up. The daemon and its control socket.
fn start_daemon(topo: &mut Topology, health: Option<&HealthSettings>, wait_up: Option<&str>) -> (Daemon, PathBuf) {
    let config = config_with_health(topo, &ALL3, health);
    let daemon = Daemon::start(topo, &config);
    let socket = topo.control_socket();
    if let Some(what) = wait_up {
        wait_backends(&socket, SETTLE, what, || daemon.log(), all_up(3));
    }
    (daemon, socket)
}

fn all_up(n: usize) -> impl FnMut(&[BackendView]) -> bool {
    move |l: &[BackendView]| l.len() == n && l.iter().all(|b| b.up)
}

fn find(list: &[BackendView], i: usize) -> &BackendView {
    list.iter()
        .find(|b| b.address == backend_ip(i))
        .unwrap_or_else(|| panic!("b{i} is not listed: {list:#?}"))
}

/// `n` new connections through the VIP, from ports `first..first+n`: which backend answered
/// each, or the failures. Panics (with the daemon log) if any failed.
fn new_connections(topo: &Topology, daemon: &Daemon, first: u16, n: u16) -> BTreeMap<usize, u32> {
    let vip = topo.vip_addr();
    let answers: Vec<(u16, Answer)> = topo.client().run_in(|| {
        (first..first + n)
            .map(|p| (p, get_from(vip, "/", TIMEOUT, Some(p))))
            .collect()
    });
    let mut counts = BTreeMap::new();
    let mut failures = Vec::new();
    for (port, a) in &answers {
        match topo.served_by(a) {
            Ok(b) => *counts.entry(b).or_insert(0) += 1,
            Err(e) => failures.push(format!("from port {port}: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {n} new connections through the VIP failed (answered: {counts:?}); first ones:\n{}\ndaemon log:\n{}",
        failures.len(),
        failures
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n"),
        daemon.log()
    );
    counts
}

/// Opens keep-alive connections from `ports`, one request each: `(connection, backend)`.
fn open_keepalive(topo: &Topology, ports: std::ops::Range<u16>) -> Vec<(KeepAliveConn, usize)> {
    let vip = topo.vip_addr();
    topo.client().run_in(|| {
        ports
            .map(|port| {
                let mut c = KeepAliveConn::connect(vip, TIMEOUT, Some(port))
                    .unwrap_or_else(|e| panic!("keep-alive connection from port {port}: {e}"));
                let answer = c.request("/");
                let b = topo.served_by(&answer).unwrap_or_else(|e| {
                    panic!("first request on the keep-alive connection from port {port}: {e}")
                });
                (c, b)
            })
            .collect()
    })
}

/// Every connection still answers, each from the backend it started on (`rounds` requests).
fn assert_conns_stay(
    conns: &mut [(KeepAliveConn, usize)],
    rounds: usize,
    when: &str,
    daemon: &Daemon,
) {
    for (c, b) in conns.iter_mut() {
        let local = c.local_addr();
        for n in 0..rounds {
            let answer = c.request("/");
            match served_by_body(&answer) {
                Some(body) if body == format!("b{b}") => {}
                _ => panic!(
                    "{when}: request {n} on the established connection {local} (on b{b}) got {answer:?} instead of b{b}\n\
                     daemon log:\n{}",
                    daemon.log()
                ),
            }
        }
    }
}

fn served_by_body(answer: &Answer) -> Option<String> {
    match answer {
        Ok((200, body)) => Some(body.trim().to_string()),
        _ => None,
    }
}

#[test]
fn killed_backend_stops_getting_traffic_within_one_check_cycle() {
    require_root!();
    let mut topo = Topology::builder().backends(3).build();
    let health = HealthSettings::http();
    let (daemon, socket) = start_daemon(&mut topo, Some(&health), Some("all three backends up"));

    const DEAD: usize = 2;
    // Where a new flow from each source port goes while all three are up (the daemon's own
    // `lookup`; the requests sent before the kill check that the data path agrees).
    let ports: Vec<u16> = (20000..24000).collect();
    let predicted: HashMap<u16, usize> = lookup_ports(&socket, CLIENT_IP, ports.iter().copied())
        .into_iter()
        .map(|(port, b)| {
            let b =
                b.unwrap_or_else(|| panic!("lookup: no backend for port {port} with all three up"));
            (
                port,
                (1..=3)
                    .find(|&i| backend_ip(i) == b)
                    .unwrap_or_else(|| panic!("lookup: port {port} -> {b}?")),
            )
        })
        .collect();

    let bound = health.detection_bound() + MARGIN;
    const BEFORE: Duration = Duration::from_millis(300);
    const AFTER: Duration = Duration::from_millis(1000);
    let pids = nginx_pids(topo.backend(DEAD));
    assert!(!pids.is_empty(), "no nginx in b{DEAD}'s namespace");
    let vip = topo.vip_addr();
    let start = Instant::now();
    // One new connection after another, each from its own port; nginx on b2 is killed (as a
    // crash would: SIGKILL) BEFORE into the run.
    let (samples, killed_at) = topo.client().run_in(|| {
        let mut samples: Vec<(u16, Duration, Answer)> = Vec::new();
        let mut killed_at: Option<Duration> = None;
        for &port in &ports {
            if killed_at.is_none() && start.elapsed() >= BEFORE {
                for pid in &pids {
                    unsafe { libc::kill(*pid as libc::pid_t, libc::SIGKILL) };
                }
                killed_at = Some(start.elapsed());
            }
            let at = start.elapsed();
            if killed_at.is_some_and(|k| at >= k + bound + AFTER) {
                break;
            }
            samples.push((
                port,
                at,
                get_from(vip, "/", Duration::from_millis(500), Some(port)),
            ));
            // Pacing, so that a few thousand ports last the whole run.
            std::thread::sleep(Duration::from_millis(2));
        }
        (samples, killed_at)
    });
    let kill = killed_at.expect("the loop reached the kill");
    let last = samples.last().map(|s| s.1).unwrap_or_default();
    assert!(
        last + Duration::from_millis(600) >= kill + bound + AFTER,
        "ran out of source ports: last request at {last:?}, kill at {kill:?}"
    );

    let mut violations = Vec::new();
    let (mut window_failures, mut dead_after, mut survivors_in_window) = (Vec::new(), 0u32, 0u32);
    for (port, at, answer) in &samples {
        let want = predicted[port];
        let got = topo.served_by(answer);
        let when = if *at < kill {
            format!("{:?} before the kill", kill - *at)
        } else {
            format!("{:?} after the kill", *at - kill)
        };
        if want != DEAD {
            // Hashed to a survivor: never fails, never moves.
            if *at >= kill && *at < kill + bound {
                survivors_in_window += 1;
            }
            if got != Ok(want) {
                violations.push(format!(
                    "port {port} ({when}), hashed to surviving b{want}: got {got:?}"
                ));
            }
        } else if *at < kill {
            if got != Ok(DEAD) {
                violations.push(format!(
                    "port {port} ({when}), hashed to b{DEAD} while it was up: got {got:?}"
                ));
            }
        } else if *at >= kill + bound {
            dead_after += 1;
            if !matches!(got, Ok(b) if b != DEAD) {
                violations.push(format!("port {port} ({when}, past the {bound:?} bound), hashed to dead b{DEAD}: got {got:?}"));
            }
        } else {
            match got {
                Ok(b) if b == DEAD => violations.push(format!(
                    "port {port} ({when}): answered by the killed b{DEAD}"
                )),
                Ok(_) => {}
                Err(e) => window_failures.push((*at - kill, port, e)),
            }
        }
    }
    let last_failure = window_failures.iter().map(|f| f.0).max();
    eprintln!(
        "{} requests; kill at {kill:?}; {} failures in the window (all hashed to b{DEAD}), the last {last_failure:?} after \
         the kill; bound {bound:?}",
        samples.len(),
        window_failures.len()
    );
    assert!(
        violations.is_empty(),
        "{} of {} requests went wrong; first ones:\n{}\ndaemon log:\n{}",
        violations.len(),
        samples.len(),
        violations
            .iter()
            .take(15)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n"),
        daemon.log()
    );
    assert!(
        dead_after >= 10,
        "only {dead_after} requests hashed to b{DEAD} after the bound: the check has no teeth"
    );
    assert!(
        survivors_in_window >= 10,
        "only {survivors_in_window} requests to survivors during the window"
    );
    // The killed nginx is really gone (refused), and the operator sees why the backend is down.
    let direct = direct_get(&topo, DEAD, "/healthz");
    assert!(
        matches!(&direct, Err(e) if e.contains("refused")),
        "b{DEAD} after SIGKILL answered {direct:?}"
    );
    let list = wait_backends(
        &socket,
        Duration::from_secs(2),
        "b2 down (connect refused), b1 and b3 up",
        || daemon.log(),
        |l| l.len() == 3 && !find(l, DEAD).up && find(l, 1).up && find(l, 3).up,
    );
    let dead = find(&list, DEAD);
    assert_eq!(
        dead.health_reason, "connect refused",
        "reason b{DEAD} is down: {list:#?}"
    );
    assert_eq!(
        dead.slots, 0,
        "b{DEAD} is down but keeps Maglev slots: {list:#?}"
    );

    // Back up: same nginx config as the lab's. After `rise` passes it takes back its own slots,
    // and new flows go exactly where they went before the kill.
    let _restarted = start_nginx(&topo, DEAD);
    let back = Instant::now();
    let mut unused = ports
        .iter()
        .copied()
        .filter(|p| !samples.iter().any(|s| s.0 == *p));
    let mut seen = Vec::new();
    let reached = poll_until(SETTLE, Duration::from_millis(20), || {
        let port = unused
            .by_ref()
            .find(|p| predicted[p] == DEAD)
            .expect("enough unused ports hashed to b2");
        let got = topo.served_by(&topo.vip_get(Some(port), TIMEOUT));
        seen.push(format!("{port}: {got:?}"));
        assert!(
            got.is_ok(),
            "a new connection failed while b{DEAD} came back: {seen:?}\ndaemon log:\n{}",
            daemon.log()
        );
        (got == Ok(DEAD)).then_some(())
    });
    assert!(
        reached.is_some(),
        "b{DEAD} got no new flow within {SETTLE:?} of its nginx coming back; answers: {seen:?}\ndaemon log:\n{}",
        daemon.log()
    );
    eprintln!(
        "b{DEAD} took new flows again {:?} after its nginx came back",
        back.elapsed()
    );
    let list = wait_backends(
        &socket,
        Duration::from_secs(2),
        "all three up again",
        || daemon.log(),
        all_up(3),
    );
    assert_eq!(find(&list, DEAD).health_reason, "ok", "{list:#?}");
    let rest: Vec<u16> = unused.take(60).collect();
    let answers: Vec<(u16, Answer)> = topo.client().run_in(|| {
        rest.iter()
            .map(|&p| (p, get_from(vip, "/", TIMEOUT, Some(p))))
            .collect()
    });
    for (port, answer) in &answers {
        assert_eq!(
            topo.served_by(answer),
            Ok(predicted[port]),
            "after b{DEAD} came back, the new flow from port {port} does not go where it went before the kill"
        );
    }
}

#[test]
fn http_503_marks_backend_down() {
    require_root!();
    let mut topo = Topology::builder().backends(3).build();
    let (daemon, socket) = start_daemon(&mut topo, Some(&HealthSettings::http()), Some("all three backends up"));

    // b2 keeps serving (so a flow sent there would succeed and say "b2"), only its health
    // endpoint says 503 from now on.
    let _b2 = restart_nginx_with_healthz(&topo, 2, 503);
    let flipped = Instant::now();
    let list = wait_backends(
        &socket,
        SETTLE,
        "b2 down with reason HTTP 503",
        || daemon.log(),
        |l| l.len() == 3 && !find(l, 2).up && find(l, 2).health_reason == "HTTP 503",
    );
    eprintln!("b2 down {:?} after /healthz turned 503", flipped.elapsed());
    assert!(
        find(&list, 1).up && find(&list, 3).up,
        "the others went down too: {list:#?}"
    );
    assert_eq!(
        find(&list, 2).slots,
        0,
        "b2 is down but keeps Maglev slots: {list:#?}"
    );
    assert_eq!(
        direct_get(&topo, 2, "/"),
        Ok((200, "b2\n".to_string())),
        "b2 itself still serves /"
    );

    let counts = new_connections(&topo, &daemon, 21000, 100);
    assert!(
        !counts.contains_key(&2),
        "b2 is down (HTTP 503) but got new flows: {counts:?}"
    );
    assert!(
        counts.contains_key(&1) && counts.contains_key(&3),
        "new flows should spread over b1 and b3: {counts:?}"
    );
    let svc = status_service(&socket, "web").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(svc["backends_up"].as_u64(), Some(2), "status: {svc}");
}

#[test]
fn tcp_check_on_closed_port_marks_down() {
    require_root!();
    let mut topo = Topology::builder().backends(3).build();
    // Only b1 listens on the check port; nginx still serves port 80 on all three.
    let _listener = TcpAcceptor::start(topo.backend(1), 8081);
    let (daemon, socket) = start_daemon(&mut topo, Some(&HealthSettings::tcp(8081)), None);
    let list = wait_backends(
        &socket,
        SETTLE,
        "b1 up, b2 and b3 down (connect refused)",
        || daemon.log(),
        |l| {
            l.len() == 3
                && find(l, 1).up
                && [2, 3]
                    .iter()
                    .all(|&i| !find(l, i).up && find(l, i).health_reason == "connect refused")
        },
    );
    assert_eq!(find(&list, 1).health_reason, "ok", "{list:#?}");
    let counts = new_connections(&topo, &daemon, 21000, 100);
    assert_eq!(
        counts,
        BTreeMap::from([(1, 100)]),
        "every new flow should go to b1, the only healthy backend"
    );
    let svc = status_service(&socket, "web").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (svc["backends_up"].as_u64(), svc["backends_total"].as_u64()),
        (Some(1), Some(3)),
        "status: {svc}"
    );
    assert_eq!(svc["all_down"].as_bool(), Some(false), "status: {svc}");
}

#[test]
fn drained_backend_keeps_established_connections() {
    require_root!();
    let mut topo = Topology::builder().backends(3).build();
    let (daemon, socket) = start_daemon(&mut topo, None, None);

    let mut conns = open_keepalive(&topo, 22000..22024);
    let mut per_backend: BTreeMap<usize, u32> = BTreeMap::new();
    for (_, b) in &conns {
        *per_backend.entry(*b).or_default() += 1;
    }
    // Drain the backend holding the most connections.
    let drained = *per_backend
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(b, _)| b)
        .expect("connections");
    let ip = backend_ip(drained).to_string();
    eprintln!("keep-alive connections per backend: {per_backend:?}; draining b{drained}");
    let out = fj_lb(&socket, &["drain", "web", &ip]).ok()
        .unwrap_or_else(|e| panic!("{e}\ndaemon log:\n{}", daemon.log()));
    assert_eq!(out.trim(), "ok", "`fj-lb drain` printed {out:?}");
    let list = backends(&socket, "web").unwrap_or_else(|e| panic!("{e}"));
    let d = find(&list, drained);
    assert_eq!((d.weight, d.slots), (0, 0), "drained b{drained}: {list:#?}");
    assert!(d.up, "a drained backend is still healthy: {list:#?}");

    assert_conns_stay(&mut conns, 3, "after the drain", &daemon);
    let counts = new_connections(&topo, &daemon, 23000, 100);
    assert!(
        !counts.contains_key(&drained),
        "drained b{drained} got new flows: {counts:?}"
    );
    assert_eq!(
        counts.len(),
        2,
        "new flows should spread over the two others: {counts:?}"
    );
    assert_conns_stay(&mut conns, 2, "after 100 new connections", &daemon);

    let out = fj_lb(&socket, &["enable", "web", &ip]).ok()
        .unwrap_or_else(|e| panic!("{e}\ndaemon log:\n{}", daemon.log()));
    assert_eq!(out.trim(), "ok", "`fj-lb enable` printed {out:?}");
    let list = backends(&socket, "web").unwrap_or_else(|e| panic!("{e}"));
    let d = find(&list, drained);
    assert!(
        d.weight == 100 && d.slots > 0,
        "enabled b{drained}: {list:#?}"
    );
    let mut port = 24000u16;
    let mut seen = BTreeMap::<String, u32>::new();
    let reached = poll_until(SETTLE, Duration::from_millis(10), || {
        port += 1;
        let got = topo.served_by(&topo.vip_get(Some(port), TIMEOUT));
        *seen.entry(format!("{got:?}")).or_default() += 1;
        (got == Ok(drained)).then_some(())
    });
    assert!(
        reached.is_some(),
        "enabled b{drained} got no new flow within {SETTLE:?}: {seen:?}"
    );
    assert!(
        seen.keys().all(|k| k.starts_with("Ok(")),
        "new connections failed after the enable: {seen:?}"
    );
    assert_conns_stay(&mut conns, 1, "after the enable", &daemon);
}

#[test]
fn reload_adds_and_removes_backends_without_disturbing_others() {
    require_root!();
    let mut topo = Topology::builder().backends(4).build();
    let health = HealthSettings::http();
    let (daemon, socket) = start_daemon(&mut topo, Some(&health), Some("b1..b3 up"));

    // Keep-alive connections until each of b1..b3 holds at least two.
    let mut conns: Vec<(KeepAliveConn, usize)> = Vec::new();
    for port in 25000..25060u16 {
        let counts = (1..=3)
            .map(|b| conns.iter().filter(|c| c.1 == b).count())
            .collect::<Vec<_>>();
        if counts.iter().all(|&n| n >= 2) {
            break;
        }
        conns.extend(open_keepalive(&topo, port..port + 1));
    }
    for b in 1..=3 {
        assert!(
            conns.iter().filter(|c| c.1 == b).count() >= 2,
            "60 connections and fewer than two on b{b}"
        );
    }

    let new_set = [(1, 100), (2, 100), (4, 100)];
    let good = config_with_health(&topo, &new_set, Some(&health)).render();
    daemon.reload_with(&good);
    // Until the new set shows, b1 and b2 keep their health (the check did not change).
    let mut flapped = Vec::new();
    let want: BTreeSet<_> = [1, 2, 4].map(backend_ip).into();
    wait_backends(
        &socket,
        SETTLE,
        "b1, b2, b4 listed and up after the reload",
        || daemon.log(),
        |l| {
            for b in l
                .iter()
                .filter(|b| [backend_ip(1), backend_ip(2)].contains(&b.address))
            {
                if !b.up {
                    flapped.push(format!("{b:?}"));
                }
            }
            l.iter().map(|b| b.address).collect::<BTreeSet<_>>() == want && l.iter().all(|b| b.up)
        },
    );
    assert!(
        flapped.is_empty(),
        "b1/b2 went down across a reload that did not touch them: {flapped:?}"
    );

    let mut kept: Vec<(KeepAliveConn, usize)> = conns.into_iter().filter(|c| c.1 != 3).collect();
    assert_conns_stay(&mut kept, 3, "after the reload", &daemon);
    let counts = new_connections(&topo, &daemon, 26000, 100);
    let set: BTreeSet<usize> = counts.keys().copied().collect();
    assert_eq!(
        set,
        BTreeSet::from([1, 2, 4]),
        "new flows after the reload (b3 removed, b4 added): {counts:?}"
    );

    // A broken config: refused on SIGHUP (logged) and by `fj-lb reload` (exit 1, with the
    // line and field), and nothing changes.
    let broken = good.replacen("\nport = 80\n", "\nport = 0\n", 1);
    assert_ne!(
        broken, good,
        "the config has no service `port = 80` line to break:\n{good}"
    );
    let line = broken
        .lines()
        .position(|l| l == "port = 0")
        .expect("the broken line")
        + 1;
    let refusals = |log: &str| log.matches("reload refused").count();
    let before = refusals(&daemon.log());
    daemon.reload_with(&broken);
    let logged = poll_until(Duration::from_secs(5), Duration::from_millis(20), || {
        let log = daemon.log();
        (refusals(&log) > before).then(|| {
            log.lines()
                .rfind(|l| l.contains("reload refused"))
                .unwrap_or_default()
                .to_string()
        })
    })
    .unwrap_or_else(|| {
        panic!(
            "no `reload refused` in the log 5 s after SIGHUP with a broken config:\n{}",
            daemon.log()
        )
    });
    assert!(
        logged.contains("service[0].port"),
        "the logged refusal does not name the field: {logged}"
    );
    let r = fj_lb(&socket, &["reload"]);
    assert_eq!(
        r.code,
        Some(1),
        "`fj-lb reload` with a broken config: {r:?}"
    );
    assert!(
        r.stderr.contains("service[0].port") && r.stderr.contains(&format!(":{line}:")),
        "`fj-lb reload` should name line {line} and field service[0].port: {:?}",
        r.stderr
    );
    eprintln!("`fj-lb reload` said: {}", r.stderr.trim());

    let counts = new_connections(&topo, &daemon, 27000, 100);
    let after: BTreeSet<usize> = counts.keys().copied().collect();
    assert_eq!(
        after, set,
        "the refused reload changed where new flows go: {counts:?}"
    );
    assert_conns_stay(&mut kept, 2, "after the refused reload", &daemon);
    let list = backends(&socket, "web").unwrap_or_else(|e| panic!("{e}"));
    assert!(
        list.iter().map(|b| b.address).collect::<BTreeSet<_>>() == want
            && list.iter().all(|b| b.up),
        "backends after the refused reload: {list:#?}"
    );
}

#[test]
fn all_backends_down_policy() {
    require_root!();
    let mut topo = Topology::builder().backends(3).build();
    // Nothing listens on the check port anywhere: every backend fails its checks, while nginx
    // serves port 80 on all of them. when_all_down left at its default (send_to_all).
    let send_to_all = HealthSettings::tcp(8081);
    let (daemon, socket) = start_daemon(&mut topo, Some(&send_to_all), None);
    wait_backends(
        &socket,
        SETTLE,
        "every backend down (connect refused)",
        || daemon.log(),
        |l| {
            l.len() == 3
                && l.iter()
                    .all(|b| !b.up && b.health_reason == "connect refused")
        },
    );
    let svc = status_service(&socket, "web").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (svc["backends_up"].as_u64(), svc["all_down"].as_bool()),
        (Some(0), Some(true)),
        "status: {svc}"
    );
    let counts = new_connections(&topo, &daemon, 21000, 30);
    assert_eq!(
        counts.values().sum::<u32>(),
        30,
        "send_to_all: every request succeeds: {counts:?}"
    );

    // Same checks, policy drop: health is kept across the reload, so new flows are dropped as
    // soon as it applies.
    daemon.reload_with(
        &config_with_health(&topo, &ALL3, Some(&send_to_all.clone().when_all_down("drop"))).render(),
    );
    const SHORT: Duration = Duration::from_millis(300);
    let mut port = 22000u16;
    let mut seen = Vec::new();
    let dropped = poll_until(Duration::from_secs(5), Duration::from_millis(10), || {
        port += 1;
        let got = topo.vip_get(Some(port), SHORT);
        seen.push(format!("{got:?}"));
        got.is_err().then_some(())
    });
    assert!(
        dropped.is_some(),
        "requests still succeed 5 s after the reload to drop: {seen:?}\ndaemon log:\n{}",
        daemon.log()
    );
    for _ in 0..5 {
        port += 1;
        let t = Instant::now();
        let got = topo.vip_get(Some(port), SHORT);
        let took = t.elapsed();
        assert!(
            got.is_err(),
            "when_all_down = drop and nothing healthy, but from port {port}: {got:?}"
        );
        assert!(
            took < SHORT + Duration::from_millis(700),
            "failing took {took:?}: {got:?}"
        );
    }
    let svc = status_service(&socket, "web").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (svc["backends_up"].as_u64(), svc["all_down"].as_bool()),
        (Some(0), Some(false)),
        "status: {svc}"
    );

    // One backend passes its checks again: it takes every new flow.
    let _listener = TcpAcceptor::start(topo.backend(3), 8081);
    wait_backends(
        &socket,
        SETTLE,
        "b3 up",
        || daemon.log(),
        |l| l.len() == 3 && find(l, 3).up,
    );
    let counts = new_connections(&topo, &daemon, 23000, 30);
    assert_eq!(
        counts,
        BTreeMap::from([(3, 30)]),
        "b3 is the only healthy backend"
    );
}
