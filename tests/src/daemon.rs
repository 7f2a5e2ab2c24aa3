//! The `fj-lb` daemon under test: config rendering, start with readiness, reload, stop.
use std::{
    fmt::Write as _,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Command, ExitStatus},
    time::Duration,
};

use crate::{
    http,
    ns::{ChildGuard, TempDir, ensure_bpffs, in_netns, try_run},
    poll_until,
    topology::Topology,
};

/// How long the daemon may take to attach and answer through the VIP.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// The `fj-lb` binary: `$FJ_LB_BIN`, else `<workspace>/target/debug/fj-lb`.
pub fn fj_lb_bin() -> PathBuf {
    let bin = match std::env::var_os("FJ_LB_BIN") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the tests crate sits in the workspace")
            .join("target/debug/fj-lb"),
    };
    if !bin.is_file() {
        panic!(
            "no fj-lb binary at {}: build it first: cargo build -p fj-lb (or point FJ_LB_BIN at one)",
            bin.display()
        );
    }
    bin
}

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

/// A config with one TCP service "web" on VIP 10.0.0.100:80, DSR, on the LB's eth0, with its
/// own bpffs directory and control socket (both must be unique per run).
pub fn render_config(bpffs: &Path, control_socket: &Path, xdp_mode: &str, backends: &[(Ipv4Addr, u32)]) -> String {
    let mut s = format!(
        r#"interface = "eth0"
xdp_mode = "{xdp_mode}"
bpffs = "{}"
control_socket = "{}"
flow_table_size = 65536
maglev_table_size = 65537

[[service]]
name = "web"
vip = "{}"
port = {}
protocol = "tcp"
forward = "dsr"
"#,
        bpffs.display(),
        control_socket.display(),
        crate::VIP,
        crate::topology::HTTP_PORT,
    );
    for (ip, weight) in backends {
        write!(s, "\n  [[service.backend]]\n  address = \"{ip}\"\n  weight = {weight}\n").unwrap();
    }
    s
}

/// `fj-lb run` in the LB namespace. Stopped (SIGTERM, then SIGKILL) on Drop, which also
/// removes its bpffs directory and prints its log if the test is panicking.
#[derive(Debug)]
pub struct Daemon {
    child: ChildGuard,
    config_path: PathBuf,
    bpffs: PathBuf,
    dir: TempDir,
}

impl Daemon {
    /// Starts the daemon with `config` (which should use `topo.bpffs_dir()`), after starting
    /// `fj-lb xdp-pass` on the bridge ports; returns once XDP is attached to the LB's eth0 and
    /// the client gets an answer through the VIP. Panics with the daemon's log otherwise.
    pub fn start(topo: &mut Topology, config: &str) -> Daemon {
        crate::require_root();
        ensure_bpffs();
        let bin = fj_lb_bin();
        topo.start_xdp_pass(&bin);
        let dir = TempDir::named(topo.id(), "daemon");
        let config_path = dir.join("fj-lb.toml");
        std::fs::write(&config_path, config).expect("writing the daemon config");
        let bpffs = parse_bpffs(config).unwrap_or_else(|| topo.bpffs_dir());
        let log = dir.join("fj-lb.log");
        let mut cmd = Command::new(&bin);
        cmd.arg("run").arg("--config").arg(&config_path).env("NO_COLOR", "1");
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info,fj_lb=debug");
        }
        let child = topo.lb().ns.spawn_command("fj-lb run", cmd, &log);
        let mut daemon = Daemon { child, config_path, bpffs, dir };
        daemon.wait_ready(topo);
        daemon
    }

    fn wait_ready(&mut self, topo: &Topology) {
        let lb = topo.lb().ns.name().to_string();
        let client = topo.client().ns.name().to_string();
        let vip = topo.vip_addr();
        let mut last = String::from("XDP not attached to the LB's eth0 yet");
        let ready = poll_until(READY_TIMEOUT, Duration::from_millis(100), || {
            self.child.assert_running();
            xdp_info(&lb, "eth0")?;
            match in_netns(&client, || http::get(vip, "/", Duration::from_secs(1))) {
                Ok((200, _)) => Some(()),
                Ok(other) => {
                    last = format!("the VIP answered {other:?}");
                    None
                }
                Err(e) => {
                    last = format!("through the VIP: {e}");
                    None
                }
            }
        });
        if ready.is_none() {
            panic!(
                "fj-lb was not ready within {READY_TIMEOUT:?} (last: {last}); its log ({}):\n{}",
                self.child.log_path().unwrap().display(),
                self.log()
            );
        }
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

    pub fn log(&self) -> String {
        self.child.log()
    }

    pub fn log_path(&self) -> &Path {
        self.child.log_path().expect("the daemon logs to a file")
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    pub fn bpffs(&self) -> &Path {
        &self.bpffs
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub fn stop(&mut self, grace: Duration) -> ExitStatus {
        self.child.stop(grace)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let status = self.child.stop(Duration::from_secs(10));
        if std::thread::panicking() {
            eprintln!("---- fj-lb daemon log (exit: {status}) ----\n{}", self.log());
        }
        if self.bpffs.starts_with("/sys/fs/bpf/") && self.bpffs.exists() {
            let _ = std::fs::remove_dir_all(&self.bpffs);
        }
    }
}

fn parse_bpffs(config: &str) -> Option<PathBuf> {
    config.lines().find_map(|l| {
        let v = l.trim().strip_prefix("bpffs")?.trim_start().strip_prefix('=')?.trim();
        Some(PathBuf::from(v.trim_matches('"')))
    })
}
