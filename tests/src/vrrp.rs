//! What the VRRP tests share: waiting for a master or a backup as the operator's status shows
//! it, capturing adverts with tshark, and a switch that drops multicast VRRP (the segment where
//! keepalived users end with two masters).
use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use crate::{ChildGuard, Daemon, Host, Topology, VIP, daemon::VrrpStatus, ns::Netns, poll_until};

/// How often the failover loops look at status and addresses.
pub const FAST_POLL: Duration = Duration::from_millis(2);

/// Polls until `d` (on `host`) is master of its first instance and holds the VIP on its eth0;
/// when that was seen.
pub fn wait_master(d: &Daemon, host: &Host, timeout: Duration) -> Option<Instant> {
    poll_until(timeout, FAST_POLL, || {
        let s = d.vrrp_status_fast().ok()?;
        (s.is_master() && host.has_address(VIP)).then(Instant::now)
    })
}

/// Polls until `d` is a backup that names `master` as master.
pub fn wait_backup_of(d: &Daemon, master: Ipv4Addr, timeout: Duration) -> Option<VrrpStatus> {
    let want = master.to_string();
    poll_until(timeout, Duration::from_millis(10), || {
        let s = d.vrrp_status_fast().ok()?;
        (s.is_backup() && s.master.as_deref() == Some(want.as_str())).then_some(s)
    })
}

/// Polls until instance `name` of `d` is in `state` and `host` holds (`holds`) or lacks its
/// address `vip`; when that was seen.
pub fn wait_instance(d: &Daemon, name: &str, state: &str, host: &Host, vip: Ipv4Addr, timeout: Duration) -> Option<Instant> {
    let holds = state == "master";
    poll_until(timeout, FAST_POLL, || {
        let s = d.vrrp_instance_fast(name).ok()?;
        (s.state == state && host.has_address(vip) == holds).then(Instant::now)
    })
}

/// Makes the lab's switch drop multicast VRRP (to 224.0.0.18) between its ports, as some
/// cloud networks and locked-down switches do: nftables in the bridge family, in the switch
/// namespace only. Unicast VRRP still passes.
pub fn drop_multicast_vrrp(topo: &Topology) {
    let sw = topo.switch();
    sw.exec(&["nft", "add table bridge fjt_vrrp"]);
    sw.exec(&["nft", "add chain bridge fjt_vrrp forward { type filter hook forward priority 0 ; policy accept ; }"]);
    sw.exec(&["nft", "add rule bridge fjt_vrrp forward ip protocol 112 ip daddr 224.0.0.18 counter drop"]);
}

/// How many frames the rule of [`drop_multicast_vrrp`] has dropped.
pub fn multicast_vrrp_dropped(topo: &Topology) -> u64 {
    let out = topo.switch().exec(&["nft", "list chain bridge fjt_vrrp forward"]);
    out.split("packets ").nth(1).and_then(|r| r.split_whitespace().next()).and_then(|n| n.parse().ok()).unwrap_or(0)
}

/// tshark capturing VRRP on one interface into a file, until stopped.
pub struct Capture {
    child: ChildGuard,
    file: PathBuf,
}

/// The fields [`Capture::dissect`] reads from each VRRP packet.
pub const CAPTURE_FIELDS: [&str; 11] = [
    "frame.time_relative",
    "ip.src",
    "ip.dst",
    "ip.ttl",
    "vrrp.version",
    "vrrp.type",
    "vrrp.virt_rtr_id",
    "vrrp.prio",
    "vrrp.short_adver_int",
    "vrrp.ip_addr",
    "vrrp.checksum.status",
];

impl Capture {
    /// Starts tshark on `ifname` in `ns`, writing `<dir>/<label>.pcapng`; returns once it
    /// captures.
    pub fn start(ns: &Netns, ifname: &str, dir: &Path, label: &str) -> Capture {
        let file = dir.join(format!("{label}.pcapng"));
        let log = dir.join(format!("{label}-tshark.log"));
        let args: Vec<std::ffi::OsString> =
            vec!["-n".into(), "-i".into(), ifname.into(), "-f".into(), "ip proto 112".into(), "-w".into(), file.clone().into()];
        let mut child = ns.spawn("tshark", "tshark", &args, &log);
        let ok = poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
            child.assert_running();
            child.log().contains("Capturing on").then_some(())
        });
        assert!(ok.is_some(), "tshark did not start capturing within 10 s: {}", child.log());
        Capture { child, file }
    }

    /// Stops the capture (SIGINT: tshark finishes the file).
    pub fn stop(&mut self) {
        self.child.signal(libc::SIGINT);
        let ok = poll_until(Duration::from_secs(10), Duration::from_millis(20), || self.child.try_status());
        assert!(ok.is_some(), "tshark did not stop within 10 s of SIGINT");
    }

    /// Dissects the (stopped) capture with the dissector preferences `prefs`: one map of
    /// [`CAPTURE_FIELDS`] name to value per VRRP packet.
    pub fn dissect(&self, prefs: &[&str]) -> Vec<BTreeMap<String, String>> {
        let mut cmd = Command::new("tshark");
        cmd.arg("-n").arg("-r").arg(&self.file);
        for p in prefs {
            cmd.args(["-o", p]);
        }
        cmd.args(["-Y", "vrrp", "-T", "fields", "-E", "separator=|"]);
        for f in CAPTURE_FIELDS {
            cmd.args(["-e", f]);
        }
        let out = crate::ns::run(&mut cmd);
        out.lines().map(|l| CAPTURE_FIELDS.iter().zip(l.split('|')).map(|(k, v)| (k.to_string(), v.to_string())).collect()).collect()
    }
}

/// tshark's checksum status of a packet: 1 is "Good" (0 bad, 2 unverified).
pub fn checksum_good(p: &BTreeMap<String, String>) -> bool {
    matches!(p.get("vrrp.checksum.status").map(String::as_str), Some("1") | Some("Good"))
}
