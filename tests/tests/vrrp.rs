//! VRRP end to end: two LB hosts on one bridge (`lb1` 10.0.0.10, `lb2` 10.0.0.9), the VIP
//! 10.0.0.100 held by whichever is master, nginx backends answering the client directly (DSR).
//! Failover on a crash and on a clean stop, preemption, interoperation with keepalived (and
//! tshark's reading of fj-lb's adverts), and malformed adverts. Needs root, a built `fj-lb`
//! (`cargo build -p fj-lb`, or `FJ_LB_BIN`), keepalived and tshark (Debian packages).
//!
//! Every wait is a bounded poll; the times asserted are RFC 5798's: Master_Down_Interval =
//! 3 × Advertisement_Interval + Skew_Time, Skew_Time = (256 − Priority) × interval / 256.
use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use fj_lb_tests::{
    Daemon, Host, KeepAliveConn, Readiness, Topology, VIP, VrrpSettings,
    daemon::{Keepalived, KeepalivedSettings, VrrpStatus},
    http::{self, Answer},
    in_netns, lb_ip, one_at_a_time, poll_until, require_root,
    vrrp::{Capture, FAST_POLL, checksum_good, wait_backup_of, wait_master},
};

const TIMEOUT: Duration = Duration::from_secs(2);
/// What the tests allow on top of RFC 5798's intervals: process scheduling, the address change
/// over rtnetlink, and the polling itself.
const MARGIN: Duration = Duration::from_millis(100);
const BACKENDS: [(usize, u32); 2] = [(1, 100), (2, 100)];

// ---- helpers ----------------------------------------------------------------------------

fn start_vrrp(topo: &mut Topology, lb: usize, v: &VrrpSettings) -> Daemon {
    let config = topo.lb_config(lb, &BACKENDS, Some(v));
    Daemon::start_on(topo, lb, &config, Readiness::Attached)
}

fn vrrp(d: &Daemon) -> VrrpStatus {
    d.vrrp_status().unwrap_or_else(|e| panic!("fj-lb status on {}: {e}", d.host()))
}

/// Starts `lb1` with `v1`, waits until it is master, then `lb2` with `v2`, and waits until lb2
/// is its backup.
fn start_pair(topo: &mut Topology, v1: &VrrpSettings, v2: &VrrpSettings) -> (Daemon, Daemon) {
    let d1 = start_vrrp(topo, 1, v1);
    if wait_master(&d1, topo.lb_n(1), Duration::from_secs(5)).is_none() {
        panic!("lb1 alone did not become master within 5 s; status: {:?}", d1.vrrp_status());
    }
    let d2 = start_vrrp(topo, 2, v2);
    if wait_backup_of(&d2, lb_ip(1), Duration::from_secs(5)).is_none() {
        panic!("lb2 did not become lb1's backup within 5 s; status: {:?}", d2.vrrp_status());
    }
    (d1, d2)
}

/// A two-LB lab with two backends: lb1 (priority 150) master, lb2 (100) its backup, and that
/// checked for `hold` ([`assert_only_master`]).
fn started_pair(hold: Duration) -> (Topology, VrrpSettings, VrrpSettings, Daemon, Daemon) {
    let mut topo = Topology::builder().lbs(2).backends(2).build();
    let (v1, v2) = (VrrpSettings::new(150), VrrpSettings::new(100));
    let (d1, d2) = start_pair(&mut topo, &v1, &v2);
    assert_only_master(&topo, &d1, 1, &d2, 2, hold);
    (topo, v1, v2, d1, d2)
}

/// For `hold`: `master` (on LB `m`) is master and the only host with the VIP, `backup` (on LB
/// `b`) is its backup. Checked every 50 ms, with the CLI an operator would use.
fn assert_only_master(topo: &Topology, master: &Daemon, m: usize, backup: &Daemon, b: usize, hold: Duration) {
    let end = Instant::now() + hold;
    let want = lb_ip(m).to_string();
    loop {
        let (sm, sb) = (vrrp(master), vrrp(backup));
        assert!(sm.is_master(), "{} is not master: {sm:?}", master.host());
        assert!(sb.is_backup(), "{} is not backup: {sb:?}", backup.host());
        assert_eq!(sb.master.as_deref(), Some(want.as_str()), "{}'s idea of the master: {sb:?}", backup.host());
        assert!(topo.lb_n(m).has_address(VIP), "the master {} does not hold the VIP", master.host());
        assert!(!topo.lb_n(b).has_address(VIP), "the backup {} holds the VIP too", backup.host());
        if Instant::now() >= end {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The MAC the client has for the VIP, polled until it is `mac` (gratuitous ARP is async).
fn wait_client_arp(topo: &Topology, mac: &str, timeout: Duration) {
    let got = poll_until(timeout, Duration::from_millis(10), || {
        let m = topo.client().neighbour_mac(VIP);
        (m.as_deref() == Some(mac)).then_some(())
    });
    assert!(
        got.is_some(),
        "the client's ARP entry for the VIP is {:?}, not {mac} (lb1 {}, lb2 {})",
        topo.client().neighbour_mac(VIP),
        topo.lb_n(1).mac(),
        topo.lb_n(2).mac()
    );
}

fn count_lines(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

/// One request through the VIP, new connection each time.
#[derive(Debug)]
struct Record {
    start: Instant,
    end: Instant,
    answer: Answer,
}

impl Record {
    fn ok(&self) -> bool {
        matches!(&self.answer, Ok((200, body)) if body.starts_with('b'))
    }
}

/// A client that keeps opening connections to the VIP, one request each, until stopped (at
/// most 60 s).
struct RequestLoop {
    stop: Arc<AtomicBool>,
    records: Arc<Mutex<Vec<Record>>>,
    handle: Option<JoinHandle<()>>,
}

impl RequestLoop {
    fn start(topo: &Topology, every: Duration) -> RequestLoop {
        let ns = topo.client().ns.name().to_string();
        let vip = topo.vip_addr();
        let stop = Arc::new(AtomicBool::new(false));
        let records = Arc::new(Mutex::new(Vec::new()));
        let (s, r) = (stop.clone(), records.clone());
        let handle = std::thread::spawn(move || {
            in_netns(&ns, || {
                let deadline = Instant::now() + Duration::from_secs(60);
                while !s.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let start = Instant::now();
                    let answer = http::get(vip, "/", TIMEOUT);
                    r.lock().unwrap().push(Record { start, end: Instant::now(), answer });
                    std::thread::sleep(every);
                }
            })
        });
        RequestLoop { stop, records, handle: Some(handle) }
    }

    /// Successful requests that started after `t`.
    fn successes_after(&self, t: Instant) -> usize {
        self.records.lock().unwrap().iter().filter(|r| r.start >= t && r.ok()).count()
    }

    fn finish(mut self) -> Vec<Record> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            h.join().expect("the request loop panicked");
        }
        std::mem::take(&mut *self.records.lock().unwrap())
    }
}

impl Drop for RequestLoop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

// ---- a: crash ---------------------------------------------------------------------------

#[test]
fn backup_takes_the_vip_when_the_master_is_killed() {
    require_root!();
    let _serial = one_at_a_time();
    let (topo, _v1, v2, mut d1, d2) = started_pair(Duration::from_secs(1));
    topo.wait_vip_answers(Duration::from_secs(10));
    let (lb1_mac, lb2_mac) = (topo.lb_n(1).mac(), topo.lb_n(2).mac());
    wait_client_arp(&topo, &lb1_mac, Duration::from_secs(2));

    // A long-lived connection through lb1, idle across the failover.
    let vip = topo.vip_addr();
    let mut conn = topo
        .client()
        .run_in(|| KeepAliveConn::connect(vip, TIMEOUT, Some(24000)))
        .unwrap_or_else(|e| panic!("keep-alive connection through the VIP: {e}"));
    let (status, body) =
        conn.request("/").unwrap_or_else(|e| panic!("first request on the keep-alive connection: {e}"));
    assert_eq!(status, 200, "{body:?}");
    let backend = topo.backend_of(&body).unwrap_or_else(|| panic!("unexpected body {body:?}"));

    let loop_start = Instant::now();
    let requests = RequestLoop::start(&topo, Duration::from_millis(10));
    let warm = poll_until(Duration::from_secs(5), Duration::from_millis(10), || {
        (requests.successes_after(loop_start) >= 5).then_some(())
    });
    assert!(warm.is_some(), "the request loop got no 5 answers through lb1 within 5 s");

    // The crash: no priority 0, no goodbye. A dead host stops answering ARP too. (Between the
    // kill and the link going down, lb1's kernel still holds the VIP but XDP went with the
    // process: it refuses connections, and would reset established ones, for those few ms.)
    let t0 = Instant::now();
    d1.kill();
    topo.lb_n(1).set_eth0(false);
    let budget = v2.master_down_interval() + MARGIN;
    let failover_at = wait_master(&d2, topo.lb_n(2), Duration::from_secs(5))
        .unwrap_or_else(|| panic!("lb2 did not take over within 5 s of SIGKILL; status: {:?}", d2.vrrp_status()));
    let took = failover_at - t0;
    println!(
        "failover after SIGKILL of the master: {took:?} (master down interval {:?}, budget {budget:?})",
        v2.master_down_interval()
    );
    assert!(took <= budget, "lb2 took {took:?} to become master and hold the VIP; allowed {budget:?}");

    // The client's ARP cache follows the gratuitous ARPs, and new connections work again.
    wait_client_arp(&topo, &lb2_mac, Duration::from_secs(1));
    let after = poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
        (requests.successes_after(failover_at) >= 20).then_some(())
    });
    let records = requests.finish();
    let window: Vec<&Record> = records.iter().filter(|r| r.start < failover_at && r.end > t0).collect();
    let failed_in_window = window.iter().filter(|r| !r.ok()).count();
    let late: Vec<&Record> = records.iter().filter(|r| r.start >= failover_at).collect();
    let late_failed: Vec<String> =
        late.iter().filter(|r| !r.ok()).map(|r| format!("+{:?}: {:?}", r.start - t0, r.answer)).collect();
    println!(
        "requests: {} in all, {} overlapping the failover window ({failed_in_window} of them failed), {} after it ({} failed)",
        records.len(),
        window.len(),
        late.len(),
        late_failed.len()
    );
    for r in window.iter().filter(|r| !r.ok()) {
        println!(
            "  failed in the window: started +{:?} after the kill, ended +{:?}: {:?}",
            r.start.saturating_duration_since(t0),
            r.end - t0,
            r.answer
        );
    }
    // FJT_VERBOSE=1: every request of the loop, in ms relative to the kill.
    if std::env::var_os("FJT_VERBOSE").is_some() {
        let rel = |t: Instant| if t >= t0 { (t - t0).as_secs_f64() * 1e3 } else { -(t0 - t).as_secs_f64() * 1e3 };
        for r in &records {
            println!("  {:+10.3} .. {:+10.3} ms: {:?}", rel(r.start), rel(r.end), r.answer);
        }
    }
    let slowest = window.iter().filter(|r| r.ok()).map(|r| r.end - r.start).max();
    println!("  slowest successful request in the window: {slowest:?}");
    assert!(after.is_some(), "fewer than 20 requests succeeded within 10 s after the failover");
    assert!(late_failed.is_empty(), "requests started after the failover failed:\n{}", late_failed.join("\n"));

    // The old connection survives: lb2 has the same Maglev table, so it sends the flow to the
    // same backend, which answers the client directly.
    let local = conn.local_addr();
    for n in 0..3 {
        let (status, body) = conn.request("/").unwrap_or_else(|e| {
            panic!("request {n} on the old connection {local} (on b{backend}) after the failover: {e}")
        });
        assert_eq!((status, body.as_str()), (200, format!("b{backend}\n").as_str()), "old connection {local} moved");
    }
    let s2 = vrrp(&d2);
    assert!(s2.is_master(), "{s2:?}");
    assert_eq!(s2.master.as_deref(), Some(lb_ip(2).to_string().as_str()), "{s2:?}");
}

// ---- b: clean stop ----------------------------------------------------------------------

#[test]
fn clean_shutdown_hands_over_within_skew_time() {
    require_root!();
    let _serial = one_at_a_time();
    let (topo, _v1, v2, mut d1, d2) = started_pair(Duration::from_millis(500));
    topo.wait_vip_answers(Duration::from_secs(10));

    let t0 = Instant::now();
    d1.signal(libc::SIGTERM);
    let budget = v2.skew_time() + MARGIN;
    let took = wait_master(&d2, topo.lb_n(2), Duration::from_secs(5))
        .unwrap_or_else(|| panic!("lb2 did not take over within 5 s of SIGTERM; status: {:?}", d2.vrrp_status()))
        - t0;
    println!("hand-over after SIGTERM of the master: {took:?} (skew time {:?}, budget {budget:?})", v2.skew_time());

    let status = d1.wait_exit(Duration::from_secs(10)).expect("lb1's fj-lb exits within 10 s of SIGTERM");
    assert!(status.success(), "fj-lb on lb1 exited with {status}; log:\n{}", d1.log());
    assert!(!topo.lb_n(1).has_address(VIP), "lb1 still holds the VIP after a clean stop");
    let log1 = d1.log();
    assert!(took <= budget, "lb2 took {took:?} to become master after lb1's priority 0; allowed {budget:?}");
    assert_eq!(vrrp(&d2).master_priority, Some(100));

    wait_client_arp(&topo, &topo.lb_n(2).mac(), Duration::from_secs(1));
    let body = topo.wait_vip_answers(Duration::from_secs(2));
    assert!(topo.backend_of(&body).is_some(), "{body:?}");
    assert!(log1.contains("virtual address removed"), "lb1's log does not say it removed the VIP:\n{log1}");
}

// ---- c: preemption ----------------------------------------------------------------------

#[test]
fn preemption_on_and_off() {
    require_root!();
    let _serial = one_at_a_time();
    let (mut topo, v1, _v2, d1, d2) = started_pair(Duration::from_millis(500));

    // lb1 leaves: lb2 takes over.
    drop(d1);
    assert!(
        wait_master(&d2, topo.lb_n(2), Duration::from_secs(2)).is_some(),
        "lb2 did not take over: {:?}",
        d2.vrrp_status()
    );

    // lb1 comes back with preemption on: it ignores the weaker master and takes over after
    // its master down interval.
    let d1 = start_vrrp(&mut topo, 1, &v1);
    let ready = Instant::now();
    let took = wait_master(&d1, topo.lb_n(1), Duration::from_secs(3))
        .unwrap_or_else(|| panic!("lb1 (150, preempt) did not take back the VIP within 3 s; {:?}", d1.vrrp_status()))
        - ready;
    println!(
        "preemption: lb1 master again {took:?} after it answered status (its master down interval {:?})",
        v1.master_down_interval()
    );
    assert!(
        wait_backup_of(&d2, lb_ip(1), Duration::from_secs(1)).is_some(),
        "lb2 did not step back for lb1: {:?}",
        d2.vrrp_status()
    );
    assert_only_master(&topo, &d1, 1, &d2, 2, Duration::from_millis(500));
    topo.wait_vip_answers(Duration::from_secs(5));

    // Again, with preemption off on lb1: it stays backup of the lower-priority master.
    drop(d1);
    assert!(
        wait_master(&d2, topo.lb_n(2), Duration::from_secs(2)).is_some(),
        "lb2 did not take over: {:?}",
        d2.vrrp_status()
    );
    let transitions2 = vrrp(&d2).transitions;
    let d1 = start_vrrp(&mut topo, 1, &v1.clone().preempt(false));
    let s1 = wait_backup_of(&d1, lb_ip(2), Duration::from_secs(2))
        .unwrap_or_else(|| panic!("lb1 (preempt off) did not settle as lb2's backup: {:?}", d1.vrrp_status()));
    let received = s1.adverts_received;
    // Many master down intervals: a preempting lb1 would have taken over long before.
    assert_only_master(&topo, &d2, 2, &d1, 1, Duration::from_secs(2));
    let s1 = vrrp(&d1);
    assert_eq!(s1.master_priority, Some(100), "{s1:?}");
    assert!(s1.adverts_received > received + 10, "lb1 should keep hearing lb2's adverts: {s1:?}");
    assert_eq!(vrrp(&d2).transitions, transitions2, "lb2 changed state while lb1 (preempt off) rejoined");
    topo.wait_vip_answers(Duration::from_secs(5));
}

// ---- d: keepalived ----------------------------------------------------------------------

#[test]
fn interoperates_with_keepalived() {
    require_root!();
    let _serial = one_at_a_time();
    let mut topo = Topology::builder().lbs(2).backends(2).build();
    let mut capture = Capture::start(&topo.client().ns, "eth0", topo.tmp(), "vrrp");
    let v1 = VrrpSettings::new(150);

    // A: fj-lb (150) master on lb1, keepalived (100) backup on lb2. lb2 also runs fj-lb, without
    // [vrrp], so it balances whatever the VIP attracts while keepalived holds it there.
    let mut d1 = start_vrrp(&mut topo, 1, &v1);
    assert!(wait_master(&d1, topo.lb_n(1), Duration::from_secs(5)).is_some(), "lb1 alone did not become master");
    let plain = topo.lb_config(2, &BACKENDS, None);
    let _balancer2 = Daemon::start_on(&mut topo, 2, &plain, Readiness::Attached);
    let mut ka = Keepalived::start(&mut topo, 2, &KeepalivedSettings::new(100));
    let end = Instant::now() + Duration::from_secs(1);
    while Instant::now() < end {
        assert!(vrrp(&d1).is_master(), "fj-lb lost mastership to keepalived (100): {:?}", d1.vrrp_status());
        assert!(!topo.lb_n(2).has_address(VIP), "keepalived took the VIP while fj-lb (150) is master");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(ka.states(), ["BACKUP"], "keepalived should stay backup of fj-lb; its log:\n{}", ka.log());
    topo.wait_vip_answers(Duration::from_secs(5));

    // B: fj-lb stops cleanly; keepalived takes over within its skew time.
    let t0 = Instant::now();
    d1.signal(libc::SIGTERM);
    // Timed by the VIP showing up on lb2: keepalived's log may reach its file later.
    let got = poll_until(Duration::from_secs(5), FAST_POLL, || topo.lb_n(2).has_address(VIP).then(|| t0.elapsed()));
    let took = got.unwrap_or_else(|| {
        panic!("keepalived did not take the VIP within 5 s of fj-lb's SIGTERM; its log:\n{}", ka.log())
    });
    let said = poll_until(Duration::from_secs(2), Duration::from_millis(10), || {
        (ka.state().as_deref() == Some("MASTER")).then(|| t0.elapsed())
    });
    assert!(said.is_some(), "keepalived holds the VIP but its log does not say MASTER:\n{}", ka.log());
    let skew100 = VrrpSettings::new(100).skew_time();
    println!("fj-lb (SIGTERM) -> keepalived: {took:?} (keepalived's skew time {skew100:?})");
    assert!(
        took <= skew100 + MARGIN,
        "keepalived took {took:?} after fj-lb's priority 0; allowed {:?}",
        skew100 + MARGIN
    );
    let status = d1.wait_exit(Duration::from_secs(10)).expect("fj-lb exits after SIGTERM");
    assert!(status.success(), "fj-lb exited with {status}");
    assert!(!topo.lb_n(1).has_address(VIP));
    wait_client_arp(&topo, &topo.lb_n(2).mac(), Duration::from_secs(2));
    topo.wait_vip_answers(Duration::from_secs(5));
    drop(d1);

    // C: fj-lb (150, preempt) comes back and takes over from keepalived (100).
    let d1 = start_vrrp(&mut topo, 1, &v1);
    assert!(
        wait_master(&d1, topo.lb_n(1), Duration::from_secs(3)).is_some(),
        "fj-lb (150) did not preempt keepalived (100): {:?}",
        d1.vrrp_status()
    );
    let ok = poll_until(Duration::from_secs(2), Duration::from_millis(10), || {
        (ka.state().as_deref() == Some("BACKUP") && !topo.lb_n(2).has_address(VIP)).then_some(())
    });
    assert!(ok.is_some(), "keepalived did not yield to fj-lb (150); its log:\n{}", ka.log());
    let s1 = vrrp(&d1);
    assert!(s1.adverts_received > 0, "fj-lb accepted no advert of keepalived's while it was backup: {s1:?}");
    assert!(s1.rejected.is_empty(), "fj-lb rejected keepalived's adverts: {s1:?}");
    wait_client_arp(&topo, &topo.lb_n(1).mac(), Duration::from_secs(2));
    topo.wait_vip_answers(Duration::from_secs(5));

    // D: keepalived restarted at 200 preempts fj-lb (150).
    ka.stop(Duration::from_secs(10));
    let first_ka_log = ka.log();
    drop(ka);
    let mut ka = Keepalived::start(&mut topo, 2, &KeepalivedSettings::new(200));
    let ok = poll_until(Duration::from_secs(3), Duration::from_millis(10), || {
        (ka.state().as_deref() == Some("MASTER") && topo.lb_n(2).has_address(VIP)).then_some(())
    });
    assert!(ok.is_some(), "keepalived (200) did not take over from fj-lb (150); its log:\n{}", ka.log());
    let s1 = wait_backup_of(&d1, lb_ip(2), Duration::from_secs(2))
        .unwrap_or_else(|| panic!("fj-lb did not become keepalived's backup: {:?}", d1.vrrp_status()));
    assert_eq!(s1.master_priority, Some(200), "{s1:?}");
    let end = Instant::now() + Duration::from_secs(1);
    while Instant::now() < end {
        let s = vrrp(&d1);
        assert!(s.is_backup(), "fj-lb (150) did not stay backup of keepalived (200): {s:?}");
        assert!(!topo.lb_n(1).has_address(VIP), "fj-lb holds the VIP while backup");
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_client_arp(&topo, &topo.lb_n(2).mac(), Duration::from_secs(2));
    topo.wait_vip_answers(Duration::from_secs(5));

    // E: keepalived stops (priority 0); fj-lb takes over within its skew time.
    let t0 = Instant::now();
    ka.signal(libc::SIGTERM);
    let took = wait_master(&d1, topo.lb_n(1), Duration::from_secs(5)).unwrap_or_else(|| {
        panic!("fj-lb did not take over within 5 s of keepalived's SIGTERM: {:?}", d1.vrrp_status())
    }) - t0;
    println!("keepalived (SIGTERM) -> fj-lb: {took:?} (fj-lb's skew time {:?})", v1.skew_time());
    assert!(
        took <= v1.skew_time() + MARGIN,
        "fj-lb took {took:?} after keepalived's priority 0; allowed {:?}",
        v1.skew_time() + MARGIN
    );
    ka.stop(Duration::from_secs(10));
    assert!(!topo.lb_n(2).has_address(VIP), "keepalived left the VIP behind");
    wait_client_arp(&topo, &topo.lb_n(1).mac(), Duration::from_secs(2));
    topo.wait_vip_answers(Duration::from_secs(5));
    let s1 = vrrp(&d1);
    assert!(s1.rejected.is_empty(), "fj-lb rejected packets (only keepalived talked to it): {s1:?}");
    let ka_logs = format!("{first_ka_log}{}", ka.log());
    drop(ka);
    drop(d1);

    // What tshark makes of the adverts (RFC 5798 checksums: the pseudo-header is included).
    capture.stop();
    let packets = capture.dissect(&["vrrp.v3_checksum_as_in_v2:FALSE"]);
    let from = |ip: Ipv4Addr| packets.iter().filter(|p| p["ip.src"] == ip.to_string()).collect::<Vec<_>>();
    let (fj, kad) = (from(lb_ip(1)), from(lb_ip(2)));
    let summary = packets.iter().fold(BTreeMap::<String, u32>::new(), |mut m, p| {
        let k = format!(
            "{} v{} prio {} checksum status {}",
            p["ip.src"], p["vrrp.version"], p["vrrp.prio"], p["vrrp.checksum.status"]
        );
        *m.entry(k).or_default() += 1;
        m
    });
    println!(
        "captured {} VRRP packets: {} from fj-lb, {} from keepalived: {summary:#?}",
        packets.len(),
        fj.len(),
        kad.len()
    );
    assert!(fj.len() >= 10, "too few adverts of fj-lb's captured: {}", fj.len());
    assert!(kad.len() >= 10, "too few adverts of keepalived's captured: {}", kad.len());
    for p in fj.iter().chain(kad.iter()) {
        assert_eq!(p["vrrp.version"], "3", "{p:?}");
        assert_eq!(p["vrrp.type"], "1", "{p:?}");
        assert_eq!(p["vrrp.virt_rtr_id"], "51", "{p:?}");
        assert_eq!(p["ip.ttl"], "255", "{p:?}");
        assert_eq!(p["vrrp.ip_addr"], VIP.to_string(), "{p:?}");
        assert_eq!(p["vrrp.short_adver_int"], "10", "{p:?}");
        assert!(checksum_good(p), "tshark finds a bad checksum: {p:?}");
    }
    let prios = |v: &[&BTreeMap<String, String>]| {
        let mut s: Vec<String> = v.iter().map(|p| p["vrrp.prio"].clone()).collect();
        s.sort();
        s.dedup();
        s
    };
    assert_eq!(prios(&fj), ["0", "150"], "fj-lb's advert priorities (150, and 0 when it stopped)");
    // On the wire every advert_interval_ms while master (the median gap; the gaps between
    // its terms as master are long).
    let times: Vec<f64> =
        fj.iter().filter(|p| p["vrrp.prio"] == "150").map(|p| p["frame.time_relative"].parse().unwrap()).collect();
    let mut gaps: Vec<f64> = times.windows(2).map(|w| (w[1] - w[0]) * 1e3).collect();
    gaps.sort_by(f64::total_cmp);
    let median = gaps[gaps.len() / 2];
    println!("fj-lb's adverts: median gap {median:.1} ms");
    assert!(
        (80.0..=120.0).contains(&median),
        "median gap between fj-lb's adverts {median:.1} ms, not about 100: {gaps:?}"
    );
    assert!(prios(&kad).contains(&"0".to_string()), "keepalived's priorities: {:?}", prios(&kad));
    // keepalived logs what it finds wrong with a packet it receives (bad checksum, TTL, address
    // list, interval...); "received lower priority ... discarding" is only preemption at work.
    for complaint in ["invalid", "Invalid", "mismatch", "bogus", "checksum", "TTL", "ttl", "wrong", "malformed"] {
        assert!(
            !ka_logs.lines().any(|l| l.contains(complaint)),
            "keepalived complained ({complaint:?}) about fj-lb's packets:\n{ka_logs}"
        );
    }
}

// ---- e: malformed adverts -----------------------------------------------------------------

/// RFC 1071 checksum.
fn inet_checksum(parts: &[&[u8]]) -> u16 {
    let bytes: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
    let mut sum: u32 = bytes.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

const MCAST: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Cksum {
    /// RFC 5798: pseudo-header included.
    PseudoHeader,
    /// RFC 9568 for IPv4 (and VRRPv2): the message alone.
    MessageOnly,
    /// A valid one, plus one.
    Wrong,
}

/// A VRRPv3 advertisement for the VIP from `src`, with the checksum as asked.
fn advert_v3(src: Ipv4Addr, vrid: u8, priority: u8, centis: u16, ck: Cksum) -> Vec<u8> {
    let mut m = vec![0x31, vrid, priority, 1];
    m.extend_from_slice(&(centis & 0x0fff).to_be_bytes());
    m.extend_from_slice(&[0, 0]);
    m.extend_from_slice(&VIP.octets());
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&MCAST.octets());
    pseudo.extend_from_slice(&[0, 112]);
    pseudo.extend_from_slice(&(m.len() as u16).to_be_bytes());
    let sum = match ck {
        Cksum::PseudoHeader => inet_checksum(&[&pseudo, &m]),
        Cksum::MessageOnly => inet_checksum(&[&m]),
        Cksum::Wrong => inet_checksum(&[&pseudo, &m]).wrapping_add(1),
    };
    m[6..8].copy_from_slice(&sum.to_be_bytes());
    m
}

/// A well-formed VRRPv2 advertisement (RFC 3768): 1 s interval, no authentication.
fn advert_v2(vrid: u8, priority: u8) -> Vec<u8> {
    let mut m = vec![0x21, vrid, priority, 1, 0, 1, 0, 0];
    m.extend_from_slice(&VIP.octets());
    m.extend_from_slice(&[0; 8]);
    let sum = inet_checksum(&[&m]);
    m[6..8].copy_from_slice(&sum.to_be_bytes());
    m
}

/// An Ethernet frame carrying `payload` as IPv4 protocol 112 from `src` to 224.0.0.18.
fn vrrp_frame(src_mac: [u8; 6], src: Ipv4Addr, ttl: u8, payload: &[u8]) -> Vec<u8> {
    let mut ip = vec![0x45, 0xc0];
    ip.extend_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 0, 0, 0, ttl, 112, 0, 0]);
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&MCAST.octets());
    let sum = inet_checksum(&[&ip]);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    let mut f = vec![0x01, 0x00, 0x5e, 0x00, 0x00, 0x12];
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&ip);
    f.extend_from_slice(payload);
    f
}

fn parse_mac(s: &str) -> [u8; 6] {
    let v: Vec<u8> = s.split(':').map(|x| u8::from_str_radix(x, 16).expect("a MAC")).collect();
    v.try_into().expect("six bytes")
}

/// Sends raw Ethernet frames out of `host`'s eth0 (AF_PACKET, from inside its namespace).
fn send_frames(host: &Host, frames: &[Vec<u8>]) {
    host.run_in(|| {
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        assert!(fd >= 0, "AF_PACKET socket: {}", std::io::Error::last_os_error());
        let ifindex = unsafe { libc::if_nametoindex(c"eth0".as_ptr()) };
        assert!(ifindex != 0, "no eth0");
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = ifindex as i32;
        sll.sll_halen = 6;
        for f in frames {
            sll.sll_addr[..6].copy_from_slice(&f[..6]);
            let r = unsafe {
                libc::sendto(
                    fd,
                    f.as_ptr().cast(),
                    f.len(),
                    0,
                    (&sll as *const libc::sockaddr_ll).cast(),
                    size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            assert!(r == f.len() as isize, "sending a frame: {}", std::io::Error::last_os_error());
            std::thread::sleep(Duration::from_millis(5));
        }
        unsafe { libc::close(fd) };
    });
}

#[test]
fn malformed_adverts_are_counted_not_acted_on() {
    require_root!();
    let _serial = one_at_a_time();
    let mut topo = Topology::builder().lbs(2).backends(2).build();
    let mut capture = Capture::start(&topo.client().ns, "eth0", topo.tmp(), "vrrp");
    // RFC 9568 checksums here (the message alone, keepalived's v3_checksum_as_v2), RFC 5798
    // ones in the keepalived test: tshark checks both below.
    let v1 = VrrpSettings::new(150).checksum("rfc9568");
    let d1 = start_vrrp(&mut topo, 1, &v1);
    assert!(wait_master(&d1, topo.lb_n(1), Duration::from_secs(5)).is_some(), "lb1 did not become master");
    let before = vrrp(&d1);
    assert!(before.rejected.is_empty(), "rejects before anything was sent: {before:?}");

    // From lb2 (no VRRP running there): each claims priority 254, each is wrong in one way.
    let attacker = topo.lb_n(2);
    let (mac, src) = (parse_mac(&attacker.mac()), attacker.ip);
    const N: u64 = 5;
    let kinds: [(&str, Vec<u8>); 4] = [
        ("bad_ttl", vrrp_frame(mac, src, 64, &advert_v3(src, 51, 254, 10, Cksum::PseudoHeader))),
        ("wrong_vrid", vrrp_frame(mac, src, 255, &advert_v3(src, 52, 254, 10, Cksum::PseudoHeader))),
        ("bad_checksum", vrrp_frame(mac, src, 255, &advert_v3(src, 51, 254, 10, Cksum::Wrong))),
        ("wrong_version", vrrp_frame(mac, src, 255, &advert_v2(51, 254))),
    ];
    let mut frames = Vec::new();
    for _ in 0..N {
        frames.extend(kinds.iter().map(|(_, f)| f.clone()));
    }
    send_frames(attacker, &frames);

    let want: BTreeMap<String, u64> = kinds.iter().map(|(k, _)| (k.to_string(), N)).collect();
    let got = poll_until(Duration::from_secs(3), Duration::from_millis(20), || {
        let s = d1.vrrp_status_fast().ok()?;
        (s.rejected == want).then_some(s)
    });
    let after = got.unwrap_or_else(|| panic!("rejected counts are not {want:?}: {:?}", d1.vrrp_status()));
    println!("rejected after {} malformed adverts: {:?}", frames.len(), after.rejected);
    // Not acted on: still master, no transition, the VIP where it was; for a while.
    let end = Instant::now() + Duration::from_millis(500);
    loop {
        let s = vrrp(&d1);
        assert!(s.is_master(), "lb1 gave up mastership to a malformed advert: {s:?}");
        assert_eq!(s.transitions, before.transitions, "lb1 changed state: {s:?}");
        assert_eq!(s.adverts_received, before.adverts_received, "a malformed advert was counted as received: {s:?}");
        assert!(topo.lb_n(1).has_address(VIP));
        if Instant::now() >= end {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Logged, but rate-limited: one line for the burst (at most every 10 s).
    let discarded = count_lines(&d1.log(), "VRRP packet discarded");
    assert!((1..=2).contains(&discarded), "{discarded} 'VRRP packet discarded' log lines for one burst:\n{}", d1.log());

    // The control: the same advert done right is acted on (either checksum form), which shows
    // the malformed ones reached the daemon and were refused for what was wrong with them.
    for ck in [Cksum::PseudoHeader, Cksum::MessageOnly] {
        let t = vrrp(&d1).transitions;
        send_frames(attacker, &[vrrp_frame(mac, src, 255, &advert_v3(src, 51, 254, 10, ck))]);
        let s = wait_backup_of(&d1, src, Duration::from_secs(1)).unwrap_or_else(|| {
            panic!("a valid priority-254 advert ({ck:?}) did not make lb1 backup: {:?}", d1.vrrp_status())
        });
        assert_eq!(s.master_priority, Some(254), "{s:?}");
        assert!(s.transitions > t);
        // Nobody follows up: lb1 takes over again after its master down interval.
        assert!(
            wait_master(&d1, topo.lb_n(1), Duration::from_secs(2)).is_some(),
            "lb1 did not take over again after the silent 254: {:?}",
            d1.vrrp_status()
        );
    }
    let s = vrrp(&d1);
    assert_eq!(s.rejected, want, "the valid adverts were rejected: {s:?}");
    assert_eq!(s.adverts_received, before.adverts_received + 2, "{s:?}");
    let sent = s.adverts_sent;
    drop(d1);

    // tshark agrees: fj-lb's RFC 9568 checksums are good read that way and bad read the RFC
    // 5798 way, and the forged "bad_checksum" adverts are bad either way.
    capture.stop();
    let rfc9568 = capture.dissect(&["vrrp.v3_checksum_as_in_v2:TRUE"]);
    let rfc5798 = capture.dissect(&["vrrp.v3_checksum_as_in_v2:FALSE"]);
    let fj = |v: &[BTreeMap<String, String>]| -> Vec<BTreeMap<String, String>> {
        v.iter().filter(|p| p["ip.src"] == lb_ip(1).to_string()).cloned().collect()
    };
    let forged_bad = |v: &[BTreeMap<String, String>]| -> Vec<BTreeMap<String, String>> {
        v.iter()
            .filter(|p| p["ip.src"] == src.to_string() && p["vrrp.version"] == "3" && p["ip.ttl"] == "255")
            .filter(|p| p["vrrp.virt_rtr_id"] == "51" && p["vrrp.prio"] == "254")
            .cloned()
            .collect()
    };
    let (fj9568, fj5798) = (fj(&rfc9568), fj(&rfc5798));
    println!("captured {} adverts of fj-lb's (rfc9568); it had sent {sent} (+1 at stop)", fj9568.len());
    assert!(fj9568.len() >= 5, "too few adverts of fj-lb's captured: {rfc9568:?}");
    for p in &fj9568 {
        assert_eq!((p["vrrp.version"].as_str(), p["ip.ttl"].as_str()), ("3", "255"), "{p:?}");
        assert!(checksum_good(p), "tshark (v3_checksum_as_in_v2) finds a bad checksum: {p:?}");
    }
    assert!(
        fj5798.iter().all(|p| !checksum_good(p)),
        "rfc9568 checksums read as RFC 5798 ones should be bad: {fj5798:?}"
    );
    // Forged with priority 254, VRID 51, TTL 255, version 3: the bad-checksum ones (5) and the
    // valid controls (one per checksum form).
    let (f9568, f5798) = (forged_bad(&rfc9568), forged_bad(&rfc5798));
    assert_eq!(f5798.len(), N as usize + 2, "{f5798:?}");
    assert_eq!(f5798.iter().filter(|p| !checksum_good(p)).count(), N as usize + 1, "{f5798:?}");
    assert_eq!(f9568.iter().filter(|p| !checksum_good(p)).count(), N as usize + 1, "{f9568:?}");
}

/// Recomputes a VRRPv3 message's checksum (RFC 5798, pseudo-header) after a field was changed.
fn rechecksum(src: Ipv4Addr, mut m: Vec<u8>) -> Vec<u8> {
    m[6..8].copy_from_slice(&[0, 0]);
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&MCAST.octets());
    pseudo.extend_from_slice(&[0, 112]);
    pseudo.extend_from_slice(&(m.len() as u16).to_be_bytes());
    let sum = inet_checksum(&[&pseudo, &m]);
    m[6..8].copy_from_slice(&sum.to_be_bytes());
    m
}

/// Hostile adverts on the wire (issue 15): from a third host, every field of a priority-254
/// advert wrong in turn, then random bytes as VRRP; a running master and its backup act on
/// none (states, master and transitions unchanged) and each counts every one under its reason.
#[test]
fn every_field_wrong_in_turn_and_random_bytes_are_counted_not_acted_on() {
    require_root!();
    let _serial = one_at_a_time();
    let mut topo = Topology::builder().lbs(3).backends(2).build();
    let (v1, v2) = (VrrpSettings::new(150), VrrpSettings::new(100));
    let (d1, d2) = start_pair(&mut topo, &v1, &v2);
    let (b1, b2) = (vrrp(&d1), vrrp(&d2));
    assert!(b1.rejected.is_empty() && b2.rejected.is_empty(), "rejects before anything was sent: {b1:?} {b2:?}");

    let attacker = topo.lb_n(3);
    let (mac, src) = (parse_mac(&attacker.mac()), attacker.ip);
    let good = || advert_v3(src, 51, 254, 10, Cksum::PseudoHeader);
    let with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut m = good();
        f(&mut m);
        rechecksum(src, m)
    };
    let kinds: Vec<(&str, Vec<u8>)> = vec![
        ("bad_ttl", vrrp_frame(mac, src, 64, &good())),
        ("bad_checksum", vrrp_frame(mac, src, 255, &advert_v3(src, 51, 254, 10, Cksum::Wrong))),
        ("wrong_version", vrrp_frame(mac, src, 255, &advert_v2(51, 254))),
        ("wrong_type", vrrp_frame(mac, src, 255, &with(&|m| m[0] = 0x32))),
        ("wrong_vrid", vrrp_frame(mac, src, 255, &with(&|m| m[1] = 52))),
        ("zero_interval", vrrp_frame(mac, src, 255, &with(&|m| m[4..6].copy_from_slice(&[0, 0])))),
        ("wrong_addresses", vrrp_frame(mac, src, 255, &with(&|m| m[8..12].copy_from_slice(&[10, 0, 0, 99])))),
        ("truncated", vrrp_frame(mac, src, 255, &good()[..6])),
    ];
    const N: u64 = 3;
    let mut frames = Vec::new();
    for _ in 0..N {
        frames.extend(kinds.iter().map(|(_, f)| f.clone()));
    }
    send_frames(attacker, &frames);
    let want: BTreeMap<String, u64> = kinds.iter().map(|(k, _)| (k.to_string(), N)).collect();
    for d in [&d1, &d2] {
        let got = poll_until(Duration::from_secs(3), Duration::from_millis(20), || {
            let s = d.vrrp_status_fast().ok()?;
            (s.rejected == want).then_some(s)
        });
        got.unwrap_or_else(|| panic!("{}: rejected counts are not {want:?}: {:?}", d.host(), d.vrrp_status()));
    }

    // Random bytes as VRRP (seeded xorshift): each rejected under some reason.
    let mut x: u64 = 0x15_15_15_15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    const RANDOM: u64 = 60;
    let random: Vec<Vec<u8>> = (0..RANDOM)
        .map(|_| {
            let len = (next() % 48) as usize;
            let m: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            vrrp_frame(mac, src, 255, &m)
        })
        .collect();
    send_frames(attacker, &random);
    let total = |s: &VrrpStatus| s.rejected.values().sum::<u64>();
    for d in [&d1, &d2] {
        let got = poll_until(Duration::from_secs(3), Duration::from_millis(20), || {
            let s = d.vrrp_status_fast().ok()?;
            (total(&s) == N * kinds.len() as u64 + RANDOM).then_some(s)
        });
        let s = got.unwrap_or_else(|| panic!("{}: not every random advert was rejected: {:?}", d.host(), d.vrrp_status()));
        println!("{}: rejected {:?}", d.host(), s.rejected);
    }
    // Not acted on, for a while: lb1 master with the VIP, lb2 its backup, no transition.
    let end = Instant::now() + Duration::from_millis(500);
    loop {
        let (s1, s2) = (vrrp(&d1), vrrp(&d2));
        assert!(s1.is_master() && topo.lb_n(1).has_address(VIP), "lb1 gave up mastership: {s1:?}");
        assert_eq!(s1.transitions, b1.transitions, "lb1 changed state: {s1:?}");
        assert_eq!(s2.state, "backup", "{s2:?}");
        assert_eq!((s2.transitions, s2.master.as_deref(), s2.master_priority), (b2.transitions, b2.master.as_deref(), b2.master_priority), "lb2 followed a forged advert: {s2:?}");
        if Instant::now() >= end {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
