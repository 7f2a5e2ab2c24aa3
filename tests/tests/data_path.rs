//! End to end through the real daemon: a client, the balancer and nginx backends, each in its
//! own network namespace on one bridge (see `fj_lb_tests::topology`). Needs root and a built
//! `fj-lb` (`cargo build -p fj-lb`, or `FJ_LB_BIN`).
use std::{collections::BTreeMap, time::Duration};

use fj_lb_tests::{
    Daemon, KeepAliveConn, Topology,
    daemon::{XDP_MODE_NATIVE, xdp_info},
    get_from,
    http::Answer,
    poll_until, require_root,
};

const TIMEOUT: Duration = Duration::from_secs(2);

#[test]
fn requests_spread_over_backends_by_weight() {
    require_root!();
    let mut topo = Topology::builder().backends(3).build();
    let weights = [(1, 100u32), (2, 100), (3, 200)];
    let config = topo.config(&weights);
    let _daemon = Daemon::start(&mut topo, &config);

    let xdp = xdp_info(topo.lb().ns.name(), "eth0").expect("XDP program on the LB's eth0");
    assert_eq!(xdp.mode, XDP_MODE_NATIVE, "XDP attached in mode {} instead of native", xdp.mode);

    // New connection each time, each from its own source port: 300 distinct flows.
    const N: u16 = 300;
    let vip = topo.vip_addr();
    let answers: Vec<(u16, Answer)> = topo
        .client()
        .run_in(|| (0..N).map(|i| (20000 + i, get_from(vip, "/", TIMEOUT, Some(20000 + i)))).collect());

    let mut counts: BTreeMap<usize, u32> = BTreeMap::new();
    let mut failures = Vec::new();
    for (port, answer) in &answers {
        match answer {
            Ok((200, body)) => match topo.backend_of(body) {
                Some(b) => *counts.entry(b).or_default() += 1,
                None => failures.push(format!("from port {port}: unexpected body {body:?}")),
            },
            Ok((status, body)) => failures.push(format!("from port {port}: status {status} {body:?}")),
            Err(e) => failures.push(format!("from port {port}: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {N} requests through the VIP failed; first ones:\n{}",
        failures.len(),
        failures.iter().take(10).cloned().collect::<Vec<_>>().join("\n")
    );

    eprintln!("answers per backend: {counts:?}");
    let total_weight: u32 = weights.iter().map(|w| w.1).sum();
    for &(b, w) in &weights {
        let expected = f64::from(N) * f64::from(w) / f64::from(total_weight);
        let got = f64::from(counts.get(&b).copied().unwrap_or(0));
        assert!(
            (got - expected).abs() <= 0.3 * expected,
            "b{b} (weight {w} of {total_weight}) answered {got} of {N} requests, expected {expected:.0} ±30%; all: {counts:?}"
        );
    }
}

#[test]
fn long_lived_connection_survives_adding_a_backend() {
    require_root!();
    let mut topo = Topology::builder().backends(4).build();
    let config = topo.config(&[(1, 100), (2, 100), (3, 100)]);
    let mut daemon = Daemon::start(&mut topo, &config);
    let vip = topo.vip_addr();

    // Several long-lived connections: adding a 4th backend gives it about a quarter of the
    // Maglev slots, so some of these hash to it afterwards (the chance that none of 16 does is
    // about 1%); only the flow table keeps them on the backend that holds their TCP state.
    const CONNS: u16 = 16;
    let mut conns: Vec<(KeepAliveConn, usize)> = topo.client().run_in(|| {
        (0..CONNS)
            .map(|i| {
                let port = 21000 + i;
                let mut c = KeepAliveConn::connect(vip, TIMEOUT, Some(port))
                    .unwrap_or_else(|e| panic!("keep-alive connection from port {port}: {e}"));
                let (status, body) = c.request("/").unwrap_or_else(|e| panic!("first request: {e}"));
                assert_eq!(status, 200, "first request from port {port}: {body:?}");
                let b = topo.backend_of(&body).unwrap_or_else(|| panic!("unexpected body {body:?}"));
                assert!(b <= 3, "b{b} answered but is not configured yet");
                (c, b)
            })
            .collect()
    });

    daemon.reload_with(&topo.config(&[(1, 100), (2, 100), (3, 100), (4, 100)]).render());

    // Poll with new connections until one reaches b4; none of them may fail meanwhile.
    let mut port = 30000u16;
    let mut seen = BTreeMap::<String, u32>::new();
    let reached = poll_until(Duration::from_secs(20), Duration::from_millis(20), || {
        port += 1;
        let answer = topo.client().run_in(|| get_from(vip, "/", TIMEOUT, Some(port)));
        let key = match &answer {
            Ok((status, body)) => format!("{status} {}", body.trim()),
            Err(e) => format!("error: {e}"),
        };
        *seen.entry(key).or_default() += 1;
        matches!(answer, Ok((200, ref body)) if body == "b4\n").then_some(())
    });
    daemon.assert_running();
    assert!(
        reached.is_some(),
        "no new connection reached b4 within 20 s of the reload; answers: {seen:?}"
    );
    let broken: Vec<_> = seen.keys().filter(|k| !k.starts_with("200 b")).collect();
    assert!(broken.is_empty(), "new connections failed during the reload: {seen:?}");

    // The old connections still work, each still answered by its own backend.
    for (c, b) in &mut conns {
        let local = c.local_addr();
        for n in 0..3 {
            let (status, body) = c
                .request("/")
                .unwrap_or_else(|e| panic!("request {n} on the old connection {local} (was on b{b}) after the reload: {e}"));
            assert_eq!(
                (status, body.as_str()),
                (200, format!("b{b}\n").as_str()),
                "old connection {local} moved from b{b} after the reload"
            );
        }
    }
    let per_backend = conns.iter().fold(BTreeMap::<usize, u32>::new(), |mut m, (_, b)| {
        *m.entry(*b).or_default() += 1;
        m
    });
    eprintln!("old connections per backend: {per_backend:?}; new connections until b4 answered: {seen:?}");
}

/// The XDP link is pinned: when the daemon dies, forwarding goes on with its last tables (the
/// kernel, which holds the VIP, would otherwise reset every connection), and a new daemon swaps
/// its program in on the same link, so connections never see a gap.
#[test]
fn a_crashed_daemon_keeps_forwarding_and_a_restart_takes_over_the_link() {
    require_root!();
    let mut topo = Topology::builder().backends(2).build();
    let config = topo.config(&[(1, 100), (2, 100)]);
    let mut first = Daemon::start(&mut topo, &config);
    let vip = topo.vip_addr();
    let prog_before = xdp_info(topo.lb().ns.name(), "eth0").and_then(|x| x.prog_id);

    let mut conns: Vec<(KeepAliveConn, usize)> = topo.client().run_in(|| {
        (0..6u16)
            .map(|i| {
                let mut c = KeepAliveConn::connect(vip, TIMEOUT, Some(22000 + i)).expect("keep-alive connection");
                let (_, body) = c.request("/").expect("first request");
                let b = topo.backend_of(&body).unwrap_or_else(|| panic!("unexpected body {body:?}"));
                (c, b)
            })
            .collect()
    });

    first.kill();
    let info = xdp_info(topo.lb().ns.name(), "eth0").expect("XDP stays attached after the daemon died");
    assert_eq!(info.prog_id, prog_before, "the program in force is still the dead daemon's");
    for (c, b) in &mut conns {
        let (status, body) = c.request("/").unwrap_or_else(|e| panic!("connection on b{b} after the crash: {e}"));
        assert_eq!((status, body.as_str()), (200, format!("b{b}\n").as_str()), "after the crash");
    }
    let fresh = topo.client().run_in(|| get_from(vip, "/", TIMEOUT, Some(23000)));
    assert!(matches!(fresh, Ok((200, _))), "a new connection while no daemon runs: {fresh:?}");

    // The restart replaces the program on the pinned link: same link, new program, no gap.
    // (The harness's readiness, the VIP answering, holds already: wait for the takeover itself.)
    let second = Daemon::start(&mut topo, &config);
    let took_over = poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
        second.log().contains("took over the XDP link").then_some(())
    });
    assert!(took_over.is_some(), "daemon log:\n{}", second.log());
    let info = xdp_info(topo.lb().ns.name(), "eth0").expect("XDP attached");
    assert_ne!(info.prog_id, prog_before, "the new daemon's program is in force; log:\n{}", second.log());
    for (c, b) in &mut conns {
        let (status, body) = c.request("/").unwrap_or_else(|e| panic!("connection on b{b} after the restart: {e}"));
        assert_eq!((status, body.as_str()), (200, format!("b{b}\n").as_str()), "after the restart");
    }
    drop(first);
}
