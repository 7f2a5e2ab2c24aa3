//! The `fj-lb` daemon under test, behind one guard: start (with readiness), reload, signals,
//! stop; and keepalived, the reference VRRP implementation fj-lb has to get along with.
use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::{Path, PathBuf},
    process::{Command, ExitStatus},
    time::Duration,
};

use crate::{
    cli::{self, control_request, fj_lb_bin},
    config::Config,
    http,
    ns::{ChildGuard, TempDir, ensure_bpffs, in_netns, try_run},
    poll_until,
    topology::Topology,
};

/// How long the daemon may take to attach and answer through the VIP.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// What `ip -d link` says about the XDP program on an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XdpInfo {
    /// 1 native (driver), 2 generic (skb), 3 offload, 4 several.
    pub mode: u64,
    pub prog_id: Option<u64>,
}

pub const XDP_MODE_NATIVE: u64 = 1;
pub const XDP_MODE_SKB: u64 = 2;

/// The XDP program attached to `ifname` in namespace `ns`, if any.
pub fn xdp_info(ns: &str, ifname: &str) -> Option<XdpInfo> {
    let out = try_run(Command::new("ip").args(["-n", ns, "-j", "-d", "link", "show", "dev", ifname]))
        .unwrap_or_else(|e| panic!("{e}"));
    let v: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("`ip -j -d link show dev {ifname}` in {ns}: {e}: {out}"));
    let xdp = v.get(0)?.get("xdp")?;
    let mode = xdp.get("mode")?.as_u64()?;
    let prog_id = xdp
        .pointer("/prog/id")
        .or_else(|| xdp.pointer("/attached/0/prog/id"))
        .and_then(|id| id.as_u64());
    Some(XdpInfo { mode, prog_id })
}

/// How [`Daemon::start_on`] decides that the daemon is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// XDP is attached to the LB's eth0 and the client gets an answer through the VIP. For a
    /// one-LB lab, where the harness put the VIP on the LB.
    ThroughVip,
    /// XDP is attached to the LB's eth0 and `fj-lb --socket S status` answers. For a VRRP host,
    /// which may well be a backup and not hold the VIP at all.
    Attached,
}

/// What `fj-lb status --json` says about VRRP (the fields the tests look at).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VrrpStatus {
    /// The instance's name.
    pub name: String,
    /// "master", "backup", "fault" or "initialize".
    pub state: String,
    pub priority: u64,
    pub master: Option<String>,
    pub master_priority: Option<u64>,
    pub last_transition: Option<String>,
    pub transitions: u64,
    pub adverts_sent: u64,
    pub adverts_received: u64,
    /// Reason ("bad_ttl", "wrong_vrid", "bad_checksum", "wrong_version", ...) → count.
    pub rejected: BTreeMap<String, u64>,
}

impl VrrpStatus {
    /// Reads the `vrrp` object of a status; `Err` if it is null or lacks a field.
    pub fn from_status(status: &serde_json::Value) -> Result<VrrpStatus, String> {
        let v = status.get("vrrp").filter(|v| !v.is_null()).ok_or_else(|| format!("status has no vrrp: {status}"))?;
        VrrpStatus::parse(v)
    }

    /// Every entry of a status's `vrrp_instances`, in config order.
    pub fn instances(status: &serde_json::Value) -> Result<Vec<VrrpStatus>, String> {
        let list = status.get("vrrp_instances").and_then(|l| l.as_array()).ok_or_else(|| format!("status has no vrrp_instances: {status}"))?;
        list.iter().map(VrrpStatus::parse).collect()
    }

    /// One instance's object (an entry of `vrrp_instances`, or `vrrp`).
    pub fn parse(v: &serde_json::Value) -> Result<VrrpStatus, String> {
        let u = |k: &str| v.get(k).and_then(|x| x.as_u64()).ok_or_else(|| format!("vrrp.{k} missing or not a number: {v}"));
        let opt_s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
        let rejected = match v.get("rejected") {
            Some(serde_json::Value::Object(m)) => m.iter().map(|(k, n)| (k.clone(), n.as_u64().unwrap_or(0))).collect(),
            Some(serde_json::Value::Null) | None => BTreeMap::new(),
            Some(other) => return Err(format!("vrrp.rejected is not an object: {other}")),
        };
        Ok(VrrpStatus {
            name: opt_s("name").ok_or_else(|| format!("vrrp.name missing: {v}"))?,
            state: v.get("state").and_then(|x| x.as_str()).ok_or_else(|| format!("vrrp.state missing: {v}"))?.to_string(),
            priority: u("priority")?,
            master: opt_s("master"),
            master_priority: v.get("master_priority").and_then(|x| x.as_u64()),
            last_transition: opt_s("last_transition"),
            transitions: u("transitions")?,
            adverts_sent: u("adverts_sent")?,
            adverts_received: u("adverts_received")?,
            rejected,
        })
    }

    pub fn is_master(&self) -> bool {
        self.state == "master"
    }

    pub fn is_backup(&self) -> bool {
        self.state == "backup"
    }

    pub fn is_fault(&self) -> bool {
        self.state == "fault"
    }
}

/// `fj-lb run` in an LB namespace. Stopped (SIGTERM, then SIGKILL) on Drop, which also
/// removes its bpffs directory and prints its log if the test is panicking.
#[derive(Debug)]
pub struct Daemon {
    child: ChildGuard,
    config_path: PathBuf,
    bpffs: PathBuf,
    socket: PathBuf,
    /// "lb", "lb1", "lb2".
    host: String,
    dir: TempDir,
    /// Leave the bpffs directory on Drop: a daemon started after this one adopts its pins.
    keep_bpffs: bool,
}

impl Daemon {
    /// Starts the daemon with `config` (which should use `topo.bpffs_dir()`), after starting
    /// `fj-lb xdp-pass` on the bridge ports; returns once XDP is attached to the LB's eth0 and
    /// the client gets an answer through the VIP. Panics with the daemon's log otherwise.
    pub fn start(topo: &mut Topology, config: &Config) -> Daemon {
        Daemon::start_on(topo, 1, config, Readiness::ThroughVip)
    }

    /// Starts the daemon on LB host `lb` (1-based: `lb`/`lb1`, `lb2`) with `config` (which
    /// should use that host's `topo.bpffs_dir_of(lb)` and `topo.control_socket_of(lb)`, as
    /// [`Topology::lb_config`] does), after starting `fj-lb xdp-pass` on the bridge ports;
    /// returns once `ready` holds, panics with the daemon's log otherwise.
    ///
    /// Each daemon gets its own directory (config, log). Drop a daemon before starting the next
    /// one on the same host: its Drop removes the bpffs directory the two share.
    pub fn start_on(topo: &mut Topology, lb: usize, config: &Config, ready: Readiness) -> Daemon {
        let mut daemon = Daemon::spawn_on(topo, lb, config, None);
        daemon.wait_ready(topo, lb, ready);
        daemon
    }

    /// Like [`Daemon::start_on`] without waiting for anything: returns as soon as the process
    /// runs (for measuring the start itself). `log_filter` is its RUST_LOG; `None`: `$RUST_LOG`
    /// if set, else info with fj-lb's debug messages.
    pub fn spawn_on(topo: &mut Topology, lb: usize, config: &Config, log_filter: Option<&str>) -> Daemon {
        Daemon::spawn_with_env(topo, lb, config, log_filter, &[])
    }

    /// [`Daemon::spawn_on`] with extra environment variables for the daemon (as systemd sets
    /// `NOTIFY_SOCKET` and `WATCHDOG_USEC`).
    pub fn spawn_with_env(
        topo: &mut Topology,
        lb: usize,
        config: &Config,
        log_filter: Option<&str>,
        env: &[(&str, &std::ffi::OsStr)],
    ) -> Daemon {
        crate::assert_root();
        ensure_bpffs();
        let bin = fj_lb_bin();
        topo.start_xdp_pass(&bin);
        let host = topo.lb_n(lb).name.clone();
        let label = topo.next_daemon_label(&host);
        let dir = TempDir::named(topo.id(), &label);
        let config_path = dir.join("fj-lb.toml");
        std::fs::write(&config_path, config.render()).expect("writing the daemon config");
        let log = dir.join("fj-lb.log");
        let mut cmd = Command::new(&bin);
        cmd.arg("run").arg("--config").arg(&config_path).env("NO_COLOR", "1").envs(env.iter().copied());
        match log_filter {
            Some(f) => {
                cmd.env("RUST_LOG", f);
            }
            // Not every status poll: the tests poll the control socket every few ms.
            None if std::env::var_os("RUST_LOG").is_none() => {
                cmd.env("RUST_LOG", "info,fj_lb=debug,fj_lb::control=info");
            }
            None => {}
        }
        let child = topo.lb_n(lb).ns.spawn_command(&format!("fj-lb run on {host}"), cmd, &log);
        Daemon {
            child,
            config_path,
            bpffs: config.bpffs.clone(),
            socket: config.control_socket.clone(),
            host,
            dir,
            keep_bpffs: false,
        }
    }

    fn wait_ready(&mut self, topo: &Topology, lb: usize, ready: Readiness) {
        let lb_ns = topo.lb_n(lb).ns.name().to_string();
        let client = topo.client().ns.name().to_string();
        let vip = topo.vip_addr();
        let mut last = format!("XDP not attached to {}'s eth0 yet", self.host);
        let ok = poll_until(READY_TIMEOUT, Duration::from_millis(100), || {
            self.child.assert_running();
            xdp_info(&lb_ns, "eth0")?;
            match ready {
                Readiness::ThroughVip => match in_netns(&client, || http::get(vip, "/", Duration::from_secs(1))) {
                    Ok((200, _)) => Some(()),
                    Ok(other) => {
                        last = format!("the VIP answered {other:?}");
                        None
                    }
                    Err(e) => {
                        last = format!("through the VIP: {e}");
                        None
                    }
                },
                Readiness::Attached => match self.cli(&["status"]) {
                    Ok(_) => Some(()),
                    Err(e) => {
                        last = e;
                        None
                    }
                },
            }
        });
        if ok.is_none() {
            panic!(
                "fj-lb on {} was not ready ({ready:?}) within {READY_TIMEOUT:?} (last: {last}); its log ({}):\n{}",
                self.host,
                self.child.log_path().unwrap().display(),
                self.log()
            );
        }
    }

    /// `fj-lb --socket S ARGS...` (as an operator would type it), run from the root namespace;
    /// stdout, or `Err` with the exit status and stderr.
    pub fn cli(&self, args: &[&str]) -> Result<String, String> {
        cli::fj_lb(&self.socket, args).ok()
    }

    /// `fj-lb --socket S status --json`, parsed.
    pub fn status(&self) -> Result<serde_json::Value, String> {
        cli::fj_lb(&self.socket, &["status", "--json"]).json()
    }

    /// The `vrrp` part of `fj-lb status --json`.
    pub fn vrrp_status(&self) -> Result<VrrpStatus, String> {
        VrrpStatus::from_status(&self.status()?)
    }

    /// The same as [`Daemon::vrrp_status`], straight over the control socket (no process
    /// start): for tight polling loops that measure time.
    pub fn vrrp_status_fast(&self) -> Result<VrrpStatus, String> {
        let data = control_request(&self.socket, &serde_json::json!({"cmd": "status"}), Duration::from_secs(2))?;
        VrrpStatus::from_status(&data)
    }

    /// Every VRRP instance of `fj-lb status --json` (`vrrp_instances`), straight over the
    /// control socket.
    pub fn vrrp_instances_fast(&self) -> Result<Vec<VrrpStatus>, String> {
        let data = control_request(&self.socket, &serde_json::json!({"cmd": "status"}), Duration::from_secs(2))?;
        VrrpStatus::instances(&data)
    }

    /// The VRRP instance `name`, straight over the control socket.
    pub fn vrrp_instance_fast(&self, name: &str) -> Result<VrrpStatus, String> {
        self.vrrp_instances_fast()?.into_iter().find(|v| v.name == name).ok_or_else(|| format!("no VRRP instance {name:?} on {}", self.host))
    }

    /// Rewrites the config file (atomically) with `new_toml` and sends SIGHUP. The effect is
    /// asynchronous: poll for it.
    pub fn reload_with(&self, new_toml: &str) {
        let tmp = self.dir.join("fj-lb.toml.new");
        std::fs::write(&tmp, new_toml).expect("writing the new config");
        std::fs::rename(&tmp, &self.config_path).expect("replacing the config");
        self.child.signal(libc::SIGHUP);
    }

    /// Panics (with the log) if the daemon has exited.
    pub fn assert_running(&mut self) {
        self.child.assert_running();
    }

    /// The exit status if the daemon has exited, `None` while it runs.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child.try_status()
    }

    pub fn log(&self) -> String {
        self.child.log()
    }

    pub fn log_path(&self) -> &Path {
        self.child.log_path().expect("the daemon logs to a file")
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// The LB host it runs on: "lb", "lb1" or "lb2".
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    pub fn bpffs(&self) -> &Path {
        &self.bpffs
    }

    pub fn control_socket(&self) -> &Path {
        &self.socket
    }

    /// Sends `sig` now and returns at once (unless the daemon is known to have exited).
    pub fn signal(&self, sig: libc::c_int) {
        self.child.signal(sig);
    }

    /// SIGKILL, as a crash would: nothing runs on the way out (no priority-0 advert, the VIP
    /// stays on the interface, pins and control socket stay). Waits (bounded) for the exit.
    pub fn kill(&mut self) -> ExitStatus {
        self.child.signal(libc::SIGKILL);
        self.wait_exit(Duration::from_secs(10))
            .unwrap_or_else(|| panic!("fj-lb on {} (pid {}) still runs 10 s after SIGKILL", self.host, self.pid()))
    }

    /// [`Daemon::kill`], and this guard leaves the pins (and with them the XDP link, still
    /// forwarding) for the next daemon on the same bpffs directory to adopt; that one's guard
    /// removes them.
    pub fn crash_keeping_pins(&mut self) -> ExitStatus {
        self.keep_bpffs = true;
        self.kill()
    }

    /// Waits up to `timeout` for the daemon to exit (after a signal); its status, or `None`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        poll_until(timeout, Duration::from_millis(5), || self.child.try_status())
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub fn stop(&mut self, grace: Duration) -> ExitStatus {
        self.child.stop(grace)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.child.stop_and_report(Duration::from_secs(10), &format!("fj-lb daemon on {}", self.host));
        if !self.keep_bpffs && self.bpffs.starts_with("/sys/fs/bpf/") && self.bpffs.exists() {
            let _ = std::fs::remove_dir_all(&self.bpffs);
        }
    }
}

/// The keepalived binary: `$KEEPALIVED_BIN`, else `keepalived` from Debian's package.
pub fn keepalived_bin() -> PathBuf {
    crate::ns::system_binary("keepalived", "KEEPALIVED_BIN", "keepalived")
}

/// A keepalived VRRP instance: the same knobs as fj-lb's `[vrrp]`. [`KeepalivedSettings::new`]
/// matches [`VrrpSettings::new`]: VRID 51, 0.1 s adverts, preemption on, 10.0.0.100/24.
#[derive(Debug, Clone, PartialEq)]
pub struct KeepalivedSettings {
    pub vrid: u8,
    pub priority: u8,
    /// Seconds; VRRPv3 allows fractions (0.1 = 100 ms).
    pub advert_int: f64,
    pub preempt: bool,
    pub virtual_addresses: Vec<String>,
    /// `unicast_src_ip` and `unicast_peer { ... }`: unicast adverts instead of multicast.
    pub unicast: Option<(String, Vec<String>)>,
}

impl KeepalivedSettings {
    pub fn new(priority: u8) -> KeepalivedSettings {
        KeepalivedSettings {
            vrid: 51,
            priority,
            advert_int: 0.1,
            preempt: true,
            virtual_addresses: vec![format!("{}/{}", crate::VIP, crate::topology::PREFIX_LEN)],
            unicast: None,
        }
    }

    /// Unicast adverts from `src` to `peers`, as keepalived's `unicast_src_ip` / `unicast_peer`.
    pub fn unicast(mut self, src: std::net::Ipv4Addr, peers: &[std::net::Ipv4Addr]) -> Self {
        self.unicast = Some((src.to_string(), peers.iter().map(|p| p.to_string()).collect()));
        self
    }

    /// keepalived.conf for one VRRPv3 instance `VI_1` on eth0, starting as backup.
    pub fn render(&self, router_id: &str) -> String {
        let mut addrs = String::new();
        for a in &self.virtual_addresses {
            writeln!(addrs, "        {a} dev eth0").unwrap();
        }
        let mut unicast = String::new();
        if let Some((src, peers)) = &self.unicast {
            writeln!(unicast, "    unicast_src_ip {src}\n    unicast_peer {{").unwrap();
            for p in peers {
                writeln!(unicast, "        {p}").unwrap();
            }
            unicast.push_str("    }\n");
        }
        format!(
            r#"# keepalived for {router_id} of an fj-lb test lab
global_defs {{
    router_id {router_id}
    vrrp_version 3
}}
vrrp_instance VI_1 {{
    state BACKUP
    interface eth0
    virtual_router_id {}
    priority {}
    advert_int {}
    {}
{unicast}    virtual_ipaddress {{
{addrs}    }}
}}
"#,
            self.vrid,
            self.priority,
            self.advert_int,
            if self.preempt { "" } else { "nopreempt" },
        )
    }
}

/// keepalived (VRRP only, in the foreground, logging to its log file) in an LB namespace,
/// with its pid files in its own directory: nothing of it touches the root namespace.
/// Stopped with SIGTERM (it then sends priority 0 and removes the VIP) on Drop.
#[derive(Debug)]
pub struct Keepalived {
    child: ChildGuard,
    host: String,
    dir: TempDir,
}

impl Keepalived {
    /// Starts keepalived on LB host `lb` and waits (bounded) until its VRRP instance has
    /// entered its first state (BACKUP, as configured).
    pub fn start(topo: &mut Topology, lb: usize, settings: &KeepalivedSettings) -> Keepalived {
        crate::assert_root();
        let bin = keepalived_bin();
        let host = topo.lb_n(lb).name.clone();
        let label = topo.next_daemon_label(&format!("keepalived-{host}"));
        let dir = TempDir::named(topo.id(), &label);
        let conf = dir.join("keepalived.conf");
        std::fs::write(&conf, settings.render(&format!("fjt_{host}"))).expect("writing keepalived.conf");
        let mut cmd = Command::new(&bin);
        cmd.args(["--dont-fork", "--log-console", "--log-detail", "--vrrp"])
            .arg("--use-file")
            .arg(&conf)
            .arg("--pid")
            .arg(dir.join("keepalived.pid"))
            .arg("--vrrp_pid")
            .arg(dir.join("vrrp.pid"))
            .arg("--checkers_pid")
            .arg(dir.join("checkers.pid"));
        let log = dir.join("keepalived.log");
        let child = topo.lb_n(lb).ns.spawn_command(&format!("keepalived on {host}"), cmd, &log);
        let mut k = Keepalived { child, host, dir };
        let ok = poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
            k.child.assert_running();
            k.state()
        });
        if ok.is_none() {
            panic!("keepalived on {} entered no VRRP state within 10 s; its log:\n{}", k.host, k.log());
        }
        k
    }

    /// Every state its instance entered, in order ("BACKUP", "MASTER", "FAULT"), from
    /// its "(VI_1) Entering ... STATE" log lines.
    pub fn states(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter_map(|l| {
                let rest = &l[l.find("(VI_1) Entering ")? + "(VI_1) Entering ".len()..];
                Some(rest.split_whitespace().next()?.to_string())
            })
            .collect()
    }

    /// The state it entered last.
    pub fn state(&self) -> Option<String> {
        self.states().pop()
    }

    pub fn log(&self) -> String {
        self.child.log()
    }

    pub fn log_path(&self) -> &Path {
        self.child.log_path().expect("keepalived logs to a file")
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Sends `sig` to the main keepalived process and returns at once.
    pub fn signal(&self, sig: libc::c_int) {
        self.child.signal(sig);
    }

    /// SIGTERM (keepalived's master sends priority 0 and removes the VIP), then SIGKILL after
    /// `grace`.
    pub fn stop(&mut self, grace: Duration) -> ExitStatus {
        self.child.stop(grace)
    }
}

impl Drop for Keepalived {
    fn drop(&mut self) {
        self.child.stop_and_report(Duration::from_secs(10), &format!("keepalived on {}", self.host));
    }
}
