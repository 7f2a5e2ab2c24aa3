//! BIRD 2, the BGP speaker of the ECMP lab: one on the router (ECMP over every LB host that
//! announces the VIP) and one on each LB host (exporting fj-lb's announce table). fj-lb never
//! speaks BGP itself; these are the configs an operator would write (`deploy/bird.conf` is the
//! LB host's, commented).
use std::{
    fmt::Write as _,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use crate::{
    ns::{ChildGuard, try_run},
    poll_until,
    topology::Host,
};

/// The router's AS and the LB hosts' (one AS for all of them: their routes to the VIP then have
/// equal AS paths, which BIRD's `merge paths` needs to install them as one multipath route).
pub const ROUTER_AS: u32 = 65000;
pub const LB_AS: u32 = 65010;

/// BGP timers of the lab: keepalives every second, a session dead after `hold_time_s` without
/// one (3 s, the least BGP allows but 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BgpTimers {
    pub hold_time_s: u32,
    pub keepalive_s: u32,
}

impl Default for BgpTimers {
    fn default() -> Self {
        BgpTimers { hold_time_s: 3, keepalive_s: 1 }
    }
}

impl BgpTimers {
    fn render(&self) -> String {
        format!(
            "    hold time {};\n    keepalive time {};\n    connect retry time 1;\n    error wait time 1, 2;\n",
            self.hold_time_s, self.keepalive_s
        )
    }
}

/// bird.conf of an LB host: learns the host routes fj-lb keeps in kernel table `table` and
/// announces them to the router, nothing else, and imports nothing.
pub fn lb_conf(me: Ipv4Addr, router: Ipv4Addr, table: u32, timers: BgpTimers) -> String {
    format!(
        r#"# BIRD 2 on an fj-lb host of the ECMP lab (see deploy/bird.conf)
router id {me};
protocol device {{ scan time 10; }}
# fj-lb's [announce] table: `learn` takes routes other programs added (fj-lb's, proto 250);
# netlink tells BIRD of each change at once, the scan is only a fallback.
protocol kernel fjlb {{
    kernel table {table};
    learn;
    scan time 10;
    ipv4 {{ import where krt_source = 250; export none; }};
}}
protocol bgp uplink {{
    local {me} as {LB_AS};
    neighbor {router} as {ROUTER_AS};
{}    ipv4 {{ import none; export where proto = "fjlb"; next hop self; }};
}}
"#,
        timers.render()
    )
}

/// bird.conf of the router: a session with each LB host, their routes into the kernel's main
/// table, equal ones merged into one multipath route.
pub fn router_conf(me: Ipv4Addr, lbs: &[Ipv4Addr], timers: BgpTimers) -> String {
    let mut s = format!(
        r#"# BIRD 2 on the router of the ECMP lab
router id {me};
protocol device {{ scan time 10; }}
protocol kernel {{
    merge paths on;
    ipv4 {{ import none; export all; }};
}}
template bgp lbhost {{
    local {me} as {ROUTER_AS};
{}    ipv4 {{ import all; export none; }};
}}
"#,
        timers.render()
    );
    for (i, lb) in lbs.iter().enumerate() {
        writeln!(s, "protocol bgp lb{} from lbhost {{ neighbor {lb} as {LB_AS}; }}", i + 1).unwrap();
    }
    s
}

/// The bird binary: `$BIRD_BIN`, else Debian's.
fn bird_bin() -> PathBuf {
    crate::ns::system_binary("bird", "BIRD_BIN", "bird2")
}

/// BIRD in a host's namespace, in the foreground, its config, control socket and pid file in
/// `dir`. Killed on Drop (BIRD keeps no state worth a clean stop here).
#[derive(Debug)]
pub struct Bird {
    child: ChildGuard,
    socket: PathBuf,
    host: String,
}

impl Bird {
    /// Writes `conf` to `dir/bird.conf`, starts BIRD on `host` and waits (bounded) until its
    /// control socket answers.
    pub fn start(host: &Host, dir: &Path, conf: &str) -> Bird {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        let path = dir.join("bird.conf");
        std::fs::write(&path, conf).expect("writing bird.conf");
        let socket = dir.join("bird.ctl");
        let args: Vec<std::ffi::OsString> = vec![
            "-f".into(),
            "-c".into(),
            path.into(),
            "-s".into(),
            socket.clone().into(),
            "-P".into(),
            dir.join("bird.pid").into(),
        ];
        let child = host.ns.spawn(&format!("bird on {}", host.name), bird_bin(), &args, &dir.join("bird.log"));
        let mut bird = Bird { child, socket, host: host.name.clone() };
        let up = poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
            bird.child.assert_running();
            bird.birdc("show status").ok()
        });
        if up.is_none() {
            panic!("bird on {} does not answer on {} within 10 s; its log:\n{}", host.name, bird.socket.display(), bird.child.log());
        }
        bird
    }

    /// `birdc -s SOCKET CMD...`: its output, or `Err`.
    pub fn birdc(&self, cmd: &str) -> Result<String, String> {
        try_run(Command::new("birdc").arg("-s").arg(&self.socket).args(cmd.split_whitespace()))
    }

    /// Whether BGP session `name` is established.
    pub fn established(&self, name: &str) -> bool {
        self.birdc(&format!("show protocols {name}")).is_ok_and(|o| o.contains("Established"))
    }

    /// SIGKILL, as a host that dies: no BGP notification goes out, the peer waits for its hold
    /// time. Waits (bounded) for the exit.
    pub fn kill(&mut self) {
        self.child.signal(libc::SIGKILL);
        if poll_until(Duration::from_secs(10), Duration::from_millis(5), || self.child.try_status()).is_none() {
            panic!("bird on {} still runs 10 s after SIGKILL", self.host);
        }
    }

    pub fn log(&self) -> String {
        self.child.log()
    }
}

impl Drop for Bird {
    fn drop(&mut self) {
        self.child.signal(libc::SIGKILL);
        self.child.stop_and_report(Duration::from_secs(5), &format!("bird on {}", self.host));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lb_host_exports_fj_lbs_table_only() {
        let c = lb_conf(Ipv4Addr::new(10, 0, 0, 10), Ipv4Addr::new(10, 0, 0, 1), 100, BgpTimers::default());
        assert!(c.contains("kernel table 100;") && c.contains("learn;"), "{c}");
        assert!(c.contains("export where proto = \"fjlb\"") && c.contains("import none"), "{c}");
        assert!(c.contains("hold time 3;"), "{c}");
    }

    /// BIRD's own parser (`bird -p`, no root needed) on every config the lab writes and on
    /// deploy/bird.conf; skipped with a line where BIRD is not installed, unless the run
    /// requires everything (`cargo xtask test`).
    #[test]
    fn bird_parses_the_configs() {
        let Some(bin) = ["/usr/sbin/bird", "/usr/bin/bird"].into_iter().find(|p| Path::new(p).is_file()) else {
            assert!(std::env::var_os(crate::REQUIRE_PRIVILEGED_ENV).is_none(), "bird is not installed (cargo xtask setup)");
            eprintln!("skipping: bird is not installed");
            return;
        };
        let dir = std::env::temp_dir().join(format!("fj-lb-bird-parse-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (me, peer) = (Ipv4Addr::new(10, 0, 0, 10), Ipv4Addr::new(10, 0, 0, 1));
        let deploy = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/bird.conf")).expect("deploy/bird.conf");
        for (name, conf) in [
            ("lb", lb_conf(me, peer, 100, BgpTimers::default())),
            ("router", router_conf(peer, &[me], BgpTimers::default())),
            ("deploy", deploy),
        ] {
            let path = dir.join(format!("{name}.conf"));
            std::fs::write(&path, conf).unwrap();
            let r = try_run(Command::new(bin).arg("-p").arg("-c").arg(&path));
            assert!(r.is_ok(), "bird -p on the {name} config: {r:?}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_router_merges_paths_and_peers_with_each_host() {
        let c = router_conf(Ipv4Addr::new(10, 0, 0, 1), &[Ipv4Addr::new(10, 0, 0, 10), Ipv4Addr::new(10, 0, 0, 9)], BgpTimers::default());
        assert!(c.contains("merge paths on;"), "{c}");
        assert!(c.contains("protocol bgp lb2 from lbhost { neighbor 10.0.0.9 as 65010; }"), "{c}");
    }
}
