//! Notify hooks, as keepalived runs them (`notify_master`, `notify_backup`, `notify_fault`,
//! `notify_stop`, and `notify` with type, name, state, priority): exactly once per transition,
//! in order, with a timeout that kills a hung script without delaying VRRP, failures and
//! output logged. And FAULT when a service tracked with weight 0 has no healthy backend.
//!
//! Each host's scripts append their arguments to a file of its own; the test compares the
//! file with the transitions the host went through. Needs root, a built `fj-lb`
//! (`FJ_LB_BIN`) and nginx. Every wait is a bounded poll.
use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use fj_lb_tests::{
    Daemon, HealthSettings, Readiness, Topology, VIP, VrrpSettings,
    backends::{start_nginx, stop_nginx},
    lb_ip, one_at_a_time, poll_until, require_root,
    vrrp::{wait_backup_of, wait_master},
};

const BACKENDS: [(usize, u32); 2] = [(1, 100), (2, 100)];
const MARGIN: Duration = Duration::from_millis(100);

/// Writes an executable `/bin/sh` script that appends its arguments (one line) to `log`, then
/// runs `then` (e.g. `exit 3`, `sleep 30`).
fn script(dir: &Path, name: &str, log: &Path, then: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\necho \"$*\" >> '{}'\n{then}\n", log.display())).expect("writing a notify script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

fn lines(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log).unwrap_or_default().lines().map(str::to_string).collect()
}

/// Polls until `log` holds exactly `want`.
fn wait_lines(log: &Path, want: &[&str], timeout: Duration) {
    let ok = poll_until(timeout, Duration::from_millis(10), || (lines(log) == want).then_some(()));
    assert!(ok.is_some(), "{} holds {:#?}, not {want:#?}", log.display(), lines(log));
}

#[test]
fn notify_hooks_run_exactly_once_per_transition() {
    require_root!();
    let _serial = one_at_a_time();
    let mut topo = Topology::builder().lbs(2).backends(2).build();
    let dir = topo.tmp().to_path_buf();
    let (log1, log2) = (dir.join("lb1-notify.log"), dir.join("lb2-notify.log"));
    let hook1 = script(&dir, "hook1.sh", &log1, "");
    let hook2 = script(&dir, "hook2.sh", &log2, "");
    // lb2's fault script fails (and says so on stderr); its backup script hangs.
    let failing = script(&dir, "failing.sh", &log2, "echo 'fault script complains' >&2\nexit 3");
    let hanging = script(&dir, "hanging.sh", &log2, "sleep 30");
    let with_hooks = |v: VrrpSettings, hook: &Path, fault: &Path, backup: &Path| {
        let (h, f, b) = (hook.display(), fault.display(), backup.display());
        v.name("VI_1")
            .notify("notify_master", &format!("{h} master-hook"))
            .notify("notify_backup", &format!("{b} backup-hook"))
            .notify("notify_fault", &format!("{f} fault-hook"))
            .notify("notify_stop", &format!("{h} stop-hook"))
            .notify("notify", &h.to_string())
    };
    let v1 = with_hooks(VrrpSettings::new(150), &hook1, &hook1, &hook1);
    let mut v2 = with_hooks(VrrpSettings::new(100).track(&["web"], 0), &hook2, &failing, &hanging);
    v2.notify_timeout_ms = Some(500);

    // lb1 starts alone: backup, then master.
    let c1 = topo.lb_config(1, &BACKENDS, Some(&v1));
    let mut d1 = Daemon::start_on(&mut topo, 1, &c1, Readiness::Attached);
    assert!(wait_master(&d1, topo.lb_n(1), Duration::from_secs(5)).is_some(), "lb1 did not become master");
    wait_lines(&log1, &["backup-hook", "INSTANCE VI_1 BACKUP 150", "master-hook", "INSTANCE VI_1 MASTER 150"], Duration::from_secs(3));

    // lb2 starts as lb1's backup; its backup script hangs and is killed after 500 ms.
    let c2 = topo.lb_config(2, &BACKENDS, Some(&v2)).health(Some(&HealthSettings::tcp(80)));
    let d2 = Daemon::start_on(&mut topo, 2, &c2, Readiness::Attached);
    assert!(wait_backup_of(&d2, lb_ip(1), Duration::from_secs(5)).is_some(), "lb2 is not lb1's backup: {:?}", d2.vrrp_status());
    wait_lines(&log2, &["backup-hook", "INSTANCE VI_1 BACKUP 100"], Duration::from_secs(3));
    assert!(
        poll_until(Duration::from_secs(3), Duration::from_millis(20), || d2.log().contains("notify script timed out and was killed").then_some(())).is_some(),
        "lb2's log does not say the hanging script was killed:\n{}",
        d2.log()
    );

    // lb1 stops: its stop hooks run; lb2 takes over within its skew time, while a hung
    // script of its own was still in its queue a moment ago.
    let t0 = Instant::now();
    d1.signal(libc::SIGTERM);
    let took = wait_master(&d2, topo.lb_n(2), Duration::from_secs(5)).expect("lb2 takes over") - t0;
    assert!(took <= v2.skew_time() + MARGIN, "lb2 took {took:?}; allowed {:?}", v2.skew_time() + MARGIN);
    assert!(d1.wait_exit(Duration::from_secs(10)).is_some_and(|s| s.success()), "lb1 did not stop cleanly");
    wait_lines(
        &log1,
        &["backup-hook", "INSTANCE VI_1 BACKUP 150", "master-hook", "INSTANCE VI_1 MASTER 150", "stop-hook", "INSTANCE VI_1 STOP 150"],
        Duration::from_secs(1),
    );
    let transitions1 = 3; // backup, master, stop
    assert_eq!(lines(&log1).iter().filter(|l| l.starts_with("INSTANCE")).count(), transitions1);
    drop(d1);
    wait_lines(&log2, &["backup-hook", "INSTANCE VI_1 BACKUP 100", "master-hook", "INSTANCE VI_1 MASTER 100"], Duration::from_secs(2));

    // Every backend of the tracked service dies: weight 0 means FAULT, not a lower priority.
    // The master says priority 0 and gives the VIP up; the fault script fails, and that is logged.
    for i in 1..=2 {
        stop_nginx(&topo, i);
    }
    let fault = poll_until(Duration::from_secs(5), Duration::from_millis(10), || {
        let s = d2.vrrp_status_fast().ok()?;
        (s.is_fault() && !topo.lb_n(2).has_address(VIP)).then_some(s)
    });
    let s = fault.unwrap_or_else(|| panic!("lb2 did not enter FAULT with every backend of web down: {:?}", d2.vrrp_status()));
    assert_eq!(s.priority, 100, "weight 0 leaves the priority alone: {s:?}");
    let st = d2.status().unwrap();
    assert_eq!(st["vrrp"]["last_transition_reason"], "fault: a tracked service has no healthy backend", "{st}");
    let in_fault = ["backup-hook", "INSTANCE VI_1 BACKUP 100", "master-hook", "INSTANCE VI_1 MASTER 100", "fault-hook", "INSTANCE VI_1 FAULT 100"];
    wait_lines(&log2, &in_fault, Duration::from_secs(2));
    let logged = poll_until(Duration::from_secs(2), Duration::from_millis(20), || {
        let log = d2.log();
        (log.contains("notify script failed") && log.contains("fault script complains")).then_some(())
    });
    assert!(logged.is_some(), "lb2's log does not show the fault script's failure and output:\n{}", d2.log());

    // The backends come back: FAULT ends as backup, and with no peer left, master again.
    let _nginx: Vec<_> = (1..=2).map(|i| start_nginx(&topo, i)).collect();
    assert!(wait_master(&d2, topo.lb_n(2), Duration::from_secs(5)).is_some(), "lb2 did not recover: {:?}", d2.vrrp_status());
    let mut all: Vec<&str> = in_fault.to_vec();
    all.extend(["backup-hook", "INSTANCE VI_1 BACKUP 100", "master-hook", "INSTANCE VI_1 MASTER 100"]);
    wait_lines(&log2, &all, Duration::from_secs(2));
    let transitions2 = d2.vrrp_status().unwrap().transitions;
    assert_eq!(transitions2, 5, "backup, master, fault, backup, master: {:?}", d2.vrrp_status());

    // lb2 stops: STOP, once; then nothing more, for a while.
    drop(d2);
    all.extend(["stop-hook", "INSTANCE VI_1 STOP 100"]);
    wait_lines(&log2, &all, Duration::from_secs(2));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(lines(&log2), all, "a hook ran again after the stop");
    assert_eq!(lines(&log2).iter().filter(|l| l.starts_with("INSTANCE")).count() as u64, transitions2 + 1, "one `notify` per transition");
}
