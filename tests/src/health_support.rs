//! Helpers for the health-check and operator tests (`tests/tests/health.rs`): daemon configs
//! with a `[service.health]` table, the operator CLI (`fj-lb --socket S ...`) and the control
//! socket's `lookup`, and backend-side tools: stopping and restarting one backend's nginx,
//! changing what its `/healthz` answers, and a bare TCP listener for `check = "tcp"`.
use std::{
    fmt::Write as _,
    io::{BufRead, BufReader, Write as _},
    net::{Ipv4Addr, SocketAddrV4, TcpListener},
    os::unix::net::UnixStream,
    path::Path,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use crate::{
    ChildGuard, Host, Topology, VIP, backend_ip, fj_lb_bin,
    http::{self, Answer},
    poll_until,
    topology::{HTTP_PORT, spawn_nginx},
};

/// The `[service.health]` table of a service. [`HealthSettings::http`] is the HTTP check the
/// tests use by default: `GET /healthz` expecting 200, every 200 ms, 100 ms timeout, rise 2,
/// fall 3, on the service port, `when_all_down` left at its default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthSettings {
    /// "http", "tcp" or "none".
    pub check: String,
    /// HTTP only.
    pub path: Option<String>,
    /// HTTP only.
    pub expect_status: Option<u16>,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub rise: u32,
    pub fall: u32,
    pub port: Option<u16>,
    /// `None`: the key is left out (the default, send_to_all).
    pub when_all_down: Option<String>,
}

impl HealthSettings {
    pub fn http() -> HealthSettings {
        HealthSettings {
            check: "http".into(),
            path: Some("/healthz".into()),
            expect_status: Some(200),
            interval_ms: 200,
            timeout_ms: 100,
            rise: 2,
            fall: 3,
            port: None,
            when_all_down: None,
        }
    }

    /// A TCP connect check on `port`, with the same timing as [`HealthSettings::http`].
    pub fn tcp(port: u16) -> HealthSettings {
        HealthSettings {
            check: "tcp".into(),
            path: None,
            expect_status: None,
            port: Some(port),
            ..HealthSettings::http()
        }
    }

    pub fn when_all_down(mut self, policy: &str) -> Self {
        self.when_all_down = Some(policy.into());
        self
    }

    /// The longest a healthy backend that stops answering can stay up: `fall` failed checks
    /// `interval_ms` apart, the last one taking up to `timeout_ms`.
    pub fn detection_bound(&self) -> Duration {
        Duration::from_millis(self.interval_ms * u64::from(self.fall) + self.timeout_ms)
    }

    fn render(&self) -> String {
        let mut s = String::from("\n  [service.health]\n");
        writeln!(s, "  check = {:?}", self.check).unwrap();
        if let Some(p) = &self.path {
            writeln!(s, "  path = {p:?}").unwrap();
        }
        if let Some(e) = self.expect_status {
            writeln!(s, "  expect_status = {e}").unwrap();
        }
        writeln!(s, "  interval_ms = {}", self.interval_ms).unwrap();
        writeln!(s, "  timeout_ms = {}", self.timeout_ms).unwrap();
        writeln!(s, "  rise = {}", self.rise).unwrap();
        writeln!(s, "  fall = {}", self.fall).unwrap();
        if let Some(p) = self.port {
            writeln!(s, "  port = {p}").unwrap();
        }
        if let Some(w) = &self.when_all_down {
            writeln!(s, "  when_all_down = {w:?}").unwrap();
        }
        s
    }
}

/// A daemon config for `topo`: the same as [`Topology::config`] renders (one TCP service "web"
/// on VIP:80, DSR, native XDP on the LB's eth0, the lab's bpffs dir and control socket), with
/// `[service.health]` right after the service's `forward` line if `health` is given.
pub fn config_with_health(
    topo: &Topology,
    backends: &[(usize, u32)],
    health: Option<&HealthSettings>,
) -> String {
    let mut s = format!(
        r#"interface = "eth0"
xdp_mode = "native"
bpffs = "{}"
control_socket = "{}"
flow_table_size = 65536
maglev_table_size = 65537

[[service]]
name = "web"
vip = "{VIP}"
port = {HTTP_PORT}
protocol = "tcp"
forward = "dsr"
"#,
        topo.bpffs_dir().display(),
        topo.control_socket().display(),
    );
    if let Some(h) = health {
        s.push_str(&h.render());
    }
    for &(i, weight) in backends {
        write!(
            s,
            "\n  [[service.backend]]\n  address = \"{}\"\n  weight = {weight}\n",
            backend_ip(i)
        )
        .unwrap();
    }
    s
}

/// What one `fj-lb` CLI invocation did.
#[derive(Debug, Clone)]
pub struct CliRun {
    pub args: Vec<String>,
    /// Exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CliRun {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// `fj-lb --socket SOCKET ARGS...` from the root namespace, as an operator would type it.
pub fn cli(socket: &Path, args: &[&str]) -> CliRun {
    let out = Command::new(fj_lb_bin())
        .arg("--socket")
        .arg(socket)
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("starting `fj-lb {}`: {e}", args.join(" ")));
    CliRun {
        args: args.iter().map(|a| a.to_string()).collect(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Like [`cli`], `Err` (with exit code and stderr) unless it exits 0.
pub fn cli_ok(socket: &Path, args: &[&str]) -> Result<String, String> {
    let r = cli(socket, args);
    if r.success() {
        Ok(r.stdout)
    } else {
        Err(format!(
            "`fj-lb {}` exited {:?}: {}{}",
            r.args.join(" "),
            r.code,
            r.stderr.trim(),
            r.stdout.trim()
        ))
    }
}

/// One backend as `fj-lb backends --json` shows it (the fields the tests look at).
#[derive(Debug, Clone, PartialEq)]
pub struct BackendView {
    pub address: Ipv4Addr,
    pub up: bool,
    pub health_reason: String,
    pub weight: u64,
    pub slots: u64,
}

/// `fj-lb backends --json`: the backends of `service`, in the daemon's order.
pub fn backends(socket: &Path, service: &str) -> Result<Vec<BackendView>, String> {
    let out = cli_ok(socket, &["backends", "--json"])?;
    let v: serde_json::Value = serde_json::from_str(&out)
        .map_err(|e| format!("`fj-lb backends --json` printed no JSON ({e}): {out}"))?;
    let svc = v
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"].as_str() == Some(service)))
        .ok_or_else(|| format!("`fj-lb backends --json` lists no service {service:?}: {out}"))?;
    let list = svc["backends"]
        .as_array()
        .ok_or_else(|| format!("service {service:?} has no backends list: {svc}"))?;
    list.iter()
        .map(|b| {
            let field = |k: &str| format!("backend field {k:?} missing or mistyped: {b}");
            Ok(BackendView {
                address: b["address"]
                    .as_str()
                    .and_then(|a| a.parse().ok())
                    .ok_or_else(|| field("address"))?,
                up: b["up"].as_bool().ok_or_else(|| field("up"))?,
                health_reason: b["health_reason"]
                    .as_str()
                    .ok_or_else(|| field("health_reason"))?
                    .to_string(),
                weight: b["weight"].as_u64().ok_or_else(|| field("weight"))?,
                slots: b["slots"].as_u64().ok_or_else(|| field("slots"))?,
            })
        })
        .collect()
}

/// The entry of `service` in `fj-lb status --json`'s `services`.
pub fn status_service(socket: &Path, service: &str) -> Result<serde_json::Value, String> {
    let out = cli_ok(socket, &["status", "--json"])?;
    let v: serde_json::Value = serde_json::from_str(&out)
        .map_err(|e| format!("`fj-lb status --json` printed no JSON ({e}): {out}"))?;
    v["services"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"].as_str() == Some(service)))
        .cloned()
        .ok_or_else(|| format!("`fj-lb status --json` lists no service {service:?}: {out}"))
}

/// Polls `fj-lb backends --json` until `pred` holds for the backends of "web"; returns them,
/// or panics with `what`, the last listing (or error) and the daemon log from `log`.
pub fn wait_backends(
    socket: &Path,
    timeout: Duration,
    what: &str,
    log: impl Fn() -> String,
    mut pred: impl FnMut(&[BackendView]) -> bool,
) -> Vec<BackendView> {
    let mut last = String::from("nothing yet");
    let got = poll_until(timeout, Duration::from_millis(50), || {
        match backends(socket, "web") {
            Ok(list) => {
                if pred(&list) {
                    return Some(list);
                }
                last = format!("{list:#?}");
                None
            }
            Err(e) => {
                last = e;
                None
            }
        }
    });
    got.unwrap_or_else(|| {
        panic!(
            "{what}: not within {timeout:?}; last `fj-lb backends --json`: {last}\ndaemon log:\n{}",
            log()
        )
    })
}

/// Where the daemon sends new TCP flows from `CLIENT:port` to VIP:80, one `lookup` request
/// per port over one control-socket connection: `None` where the slot has no backend.
pub fn lookup_ports(
    socket: &Path,
    client: Ipv4Addr,
    ports: impl IntoIterator<Item = u16>,
) -> Vec<(u16, Option<Ipv4Addr>)> {
    // A fresh connection every few hundred requests: the daemon reads at most 64 KiB from one
    // control connection in all.
    const PER_CONNECTION: usize = 200;
    let connect = || {
        let s = UnixStream::connect(socket)
            .unwrap_or_else(|e| panic!("connecting to {}: {e}", socket.display()));
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("setting a read timeout");
        let w = s.try_clone().expect("cloning the control socket");
        (w, BufReader::new(s))
    };
    let mut conn = connect();
    let mut out = Vec::new();
    for (n, port) in ports.into_iter().enumerate() {
        if n > 0 && n % PER_CONNECTION == 0 {
            conn = connect();
        }
        let (w, r) = &mut conn;
        let req = serde_json::json!({
            "cmd": "lookup",
            "src": format!("{client}:{port}"),
            "dst": format!("{VIP}:{HTTP_PORT}"),
            "protocol": "tcp",
        });
        let mut line = serde_json::to_vec(&req).expect("serialises");
        line.push(b'\n');
        w.write_all(&line)
            .unwrap_or_else(|e| panic!("sending a lookup to {}: {e}", socket.display()));
        let mut answer = String::new();
        r.read_line(&mut answer)
            .unwrap_or_else(|e| panic!("reading a lookup answer from {}: {e}", socket.display()));
        let v: serde_json::Value = serde_json::from_str(&answer)
            .unwrap_or_else(|e| panic!("lookup answer {answer:?} is not JSON: {e}"));
        assert_eq!(
            v["ok"].as_bool(),
            Some(true),
            "lookup for {client}:{port} failed: {answer}"
        );
        let data = &v["data"];
        assert_eq!(
            data["via"].as_str(),
            Some("maglev"),
            "{client}:{port} is not a new flow: {answer}"
        );
        out.push((port, data["backend"].as_str().and_then(|b| b.parse().ok())));
    }
    out
}

/// The nginx processes running in `host`'s namespace (`ip netns pids`, by command name).
pub fn nginx_pids(host: &Host) -> Vec<u32> {
    let out = crate::ns::run(Command::new("ip").args(["netns", "pids", host.ns.name()]));
    out.split_whitespace()
        .filter_map(|p| p.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "nginx")
        })
        .collect()
}

/// What the client gets for `GET path` straight from backend `i` (not through the VIP).
pub fn direct_get(topo: &Topology, i: usize, path: &str) -> Answer {
    topo.client_get(
        SocketAddrV4::new(backend_ip(i), HTTP_PORT),
        path,
        Duration::from_millis(500),
    )
}

/// Kills backend `i`'s nginx with SIGKILL, as a crash would (its listening socket closes, so
/// connections to port 80 are refused), and waits (bounded) until the client is refused.
/// Only the nginx the lab started in that backend's namespace is signalled, by pid.
pub fn kill_nginx(topo: &Topology, i: usize) {
    let host = topo.backend(i);
    let pids = nginx_pids(host);
    assert!(
        !pids.is_empty(),
        "no nginx runs in {}'s namespace {}",
        host.name,
        host.ns.name()
    );
    for pid in &pids {
        unsafe { libc::kill(*pid as libc::pid_t, libc::SIGKILL) };
    }
    let mut last = String::new();
    let gone = poll_until(
        Duration::from_secs(5),
        Duration::from_millis(10),
        || match direct_get(topo, i, "/healthz") {
            Err(e) if e.contains("refused") => Some(()),
            other => {
                last = format!("{other:?}");
                None
            }
        },
    );
    if gone.is_none() {
        panic!(
            "nginx on {} (pids {pids:?}) still answers 5 s after SIGKILL: {last}",
            host.name
        );
    }
}

/// Starts nginx again on backend `i` with the config the lab wrote for it (same prefix, logs
/// and `nginx.conf` as [`Topology`]'s), and waits (bounded) until it answers the client.
pub fn start_nginx(topo: &Topology, i: usize) -> ChildGuard {
    let conf = topo.tmp().join(&topo.backend(i).name).join("nginx.conf");
    assert!(conf.is_file(), "the lab wrote no {}", conf.display());
    launch_nginx(topo, i, &conf, 200, "restarted")
}

/// Restarts backend `i`'s nginx so that it answers `GET /healthz` with `status`, everything
/// else unchanged (`/` still answers "bN"): the lab's nginx.conf with its `location = /healthz`
/// rewritten, saved next to it as `nginx-healthz-STATUS.conf`. The running nginx is stopped
/// (SIGTERM, by pid) and a new one started; waits (bounded) until the client sees the new
/// status. (nginx runs with `master_process off`, where a SIGHUP reload is not reliable.)
pub fn restart_nginx_with_healthz(topo: &Topology, i: usize, status: u16) -> ChildGuard {
    let host = topo.backend(i);
    let dir = topo.tmp().join(&host.name);
    let conf = dir.join("nginx.conf");
    let text = std::fs::read_to_string(&conf).unwrap_or_else(|e| panic!("reading {}: {e}", conf.display()));
    let start = text
        .find("location = /healthz {")
        .unwrap_or_else(|| panic!("{} has no `location = /healthz` block:\n{text}", conf.display()));
    let end = start + text[start..].find('}').expect("the location block ends") + 1;
    let block = format!("location = /healthz {{\n            return {status} \"status {status}\\n\";\n        }}");
    let new_conf = dir.join(format!("nginx-healthz-{status}.conf"));
    std::fs::write(&new_conf, format!("{}{block}{}", &text[..start], &text[end..])).expect("writing the new nginx.conf");

    let pids = nginx_pids(host);
    assert!(!pids.is_empty(), "no nginx runs in {}'s namespace", host.name);
    for pid in &pids {
        unsafe { libc::kill(*pid as libc::pid_t, libc::SIGTERM) };
    }
    if poll_until(Duration::from_secs(5), Duration::from_millis(5), || nginx_pids(host).is_empty().then_some(())).is_none() {
        panic!("nginx on {} (pids {pids:?}) still runs 5 s after SIGTERM", host.name);
    }
    launch_nginx(topo, i, &new_conf, status, &format!("/healthz {status}"))
}

/// Runs nginx on backend `i` with `conf` and waits (bounded) until its `/healthz` answers
/// `status` to the client.
fn launch_nginx(topo: &Topology, i: usize, conf: &Path, status: u16, what: &str) -> ChildGuard {
    let host = topo.backend(i);
    let dir = topo.tmp().join(&host.name);
    let mut child = spawn_nginx(host, &dir, conf, &format!("nginx {} ({what})", host.name));
    let mut last = String::new();
    let ok = poll_until(Duration::from_secs(10), Duration::from_millis(5), || {
        if let Some(s) = child.try_status() {
            panic!(
                "nginx on {} ({what}) exited ({s}):\n{}\n{}",
                host.name,
                child.log(),
                std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
            );
        }
        match direct_get(topo, i, "/healthz") {
            Ok((s, _)) if s == status => Some(()),
            other => {
                last = format!("{other:?}");
                None
            }
        }
    });
    if ok.is_none() {
        panic!(
            "nginx on {} ({what}) does not answer /healthz with {status} within 10 s (last: {last}); error.log:\n{}",
            host.name,
            std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
        );
    }
    child
}

/// A TCP listener on 0.0.0.0:`port` in a host's namespace that accepts and closes every
/// connection (enough for a `check = "tcp"`), until dropped.
#[derive(Debug)]
pub struct TcpAcceptor {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TcpAcceptor {
    pub fn start(host: &Host, port: u16) -> TcpAcceptor {
        let listener = host
            .run_in(|| TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)))
            .unwrap_or_else(|e| panic!("listening on port {port} in {}: {e}", host.name));
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("acceptor {}:{port}", host.name))
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((conn, _)) => drop(conn),
                        // Nothing pending: look again shortly (and at the stop flag).
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
            .expect("spawning the acceptor thread");
        TcpAcceptor {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for TcpAcceptor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Which backend answered: `Ok(i)` for a 200 with body "bi", `Err` describing anything else.
pub fn served_by(topo: &Topology, answer: &Answer) -> Result<usize, String> {
    match answer {
        Ok((200, body)) => topo
            .backend_of(body)
            .ok_or_else(|| format!("200 with unexpected body {body:?}")),
        Ok((status, body)) => Err(format!("status {status} {body:?}")),
        Err(e) => Err(e.clone()),
    }
}

/// `GET /` through the VIP over a fresh connection from client port `port`.
pub fn vip_get(topo: &Topology, port: u16, timeout: Duration) -> Answer {
    let vip = topo.vip_addr();
    topo.client()
        .run_in(|| http::get_from(vip, "/", timeout, Some(port)))
}
