//! The operator's side of the daemon: the `fj-lb` binary run as a CLI (`fj-lb --socket S ...`),
//! the control socket spoken to directly (one JSON line each way, quick enough to poll every
//! few milliseconds), and what the tests read back from them.
use std::{
    io::{BufRead, BufReader, Write as _},
    net::Ipv4Addr,
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use crate::{
    poll_until,
    topology::{HTTP_PORT, VIP},
};

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

    /// Stdout, or `Err` with the command, exit code, stderr and stdout unless it exited 0.
    pub fn ok(self) -> Result<String, String> {
        if self.success() {
            Ok(self.stdout)
        } else {
            Err(format!(
                "`fj-lb {}` exited {:?}:\nstdout: {}\nstderr: {}",
                self.args.join(" "),
                self.code,
                self.stdout.trim(),
                self.stderr.trim()
            ))
        }
    }

    /// Stdout parsed as JSON; `Err` unless it exited 0 and printed JSON.
    pub fn json(self) -> Result<serde_json::Value, String> {
        let what = self.args.join(" ");
        let out = self.ok()?;
        serde_json::from_str(&out).map_err(|e| format!("`fj-lb {what}` printed something that is not JSON ({e}):\n{out}"))
    }
}

/// `fj-lb --socket SOCKET ARGS...` from the calling thread's namespace, as an operator would type
/// it (the control socket is a path, reachable from any network namespace).
pub fn fj_lb(socket: &Path, args: &[&str]) -> CliRun {
    let out = Command::new(fj_lb_bin())
        .arg("--socket")
        .arg(socket)
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("FJ_LB_SOCKET")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("starting `fj-lb {}`: {e}", args.join(" ")));
    CliRun {
        args: args.iter().map(|a| a.to_string()).collect(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// One connection to a daemon's control socket, carrying any number of requests.
#[derive(Debug)]
pub struct ControlConn {
    socket: PathBuf,
    writer: UnixStream,
    reader: BufReader<UnixStream>,
}

impl ControlConn {
    pub fn connect(socket: &Path, timeout: Duration) -> Result<ControlConn, String> {
        let s = UnixStream::connect(socket).map_err(|e| format!("connecting to {}: {e}", socket.display()))?;
        s.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
        s.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
        let writer = s.try_clone().map_err(|e| format!("cloning the control socket: {e}"))?;
        Ok(ControlConn { socket: socket.to_path_buf(), writer, reader: BufReader::new(s) })
    }

    /// Sends `request` and returns the answer's `data`; `Err` if the answer is not `ok`.
    pub fn request(&mut self, request: &serde_json::Value) -> Result<serde_json::Value, String> {
        let socket = self.socket.display();
        let mut line = serde_json::to_vec(request).expect("serialises");
        line.push(b'\n');
        self.writer.write_all(&line).map_err(|e| format!("writing to {socket}: {e}"))?;
        let mut answer = String::new();
        self.reader.read_line(&mut answer).map_err(|e| format!("reading from {socket}: {e}"))?;
        let v: serde_json::Value =
            serde_json::from_str(&answer).map_err(|e| format!("{socket} answered {answer:?}: {e}"))?;
        if v["ok"].as_bool() != Some(true) {
            return Err(format!("{socket} answered an error to {request}: {answer}"));
        }
        Ok(v["data"].clone())
    }
}

/// One request over a fresh control connection: its answer's `data`.
pub fn control_request(socket: &Path, request: &serde_json::Value, timeout: Duration) -> Result<serde_json::Value, String> {
    ControlConn::connect(socket, timeout)?.request(request)
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

/// The entry named `name` in a JSON list of service reports.
fn find_service(list: &serde_json::Value, name: &str, what: &str) -> Result<serde_json::Value, String> {
    list.as_array()
        .and_then(|a| a.iter().find(|s| s["name"].as_str() == Some(name)))
        .cloned()
        .ok_or_else(|| format!("{what} lists no service {name:?}: {list}"))
}

/// `fj-lb backends --json`: the backends of `service`, in the daemon's order.
pub fn backends(socket: &Path, service: &str) -> Result<Vec<BackendView>, String> {
    let v = fj_lb(socket, &["backends", "--json"]).json()?;
    let svc = find_service(&v, service, "`fj-lb backends --json`")?;
    let list = svc["backends"].as_array().ok_or_else(|| format!("service {service:?} has no backends list: {svc}"))?;
    list.iter()
        .map(|b| {
            let field = |k: &str| format!("backend field {k:?} missing or mistyped: {b}");
            Ok(BackendView {
                address: b["address"].as_str().and_then(|a| a.parse().ok()).ok_or_else(|| field("address"))?,
                up: b["up"].as_bool().ok_or_else(|| field("up"))?,
                health_reason: b["health_reason"].as_str().ok_or_else(|| field("health_reason"))?.to_string(),
                weight: b["weight"].as_u64().ok_or_else(|| field("weight"))?,
                slots: b["slots"].as_u64().ok_or_else(|| field("slots"))?,
            })
        })
        .collect()
}

/// The entry of `service` in `fj-lb status --json`'s `services`.
pub fn status_service(socket: &Path, service: &str) -> Result<serde_json::Value, String> {
    let v = fj_lb(socket, &["status", "--json"]).json()?;
    find_service(&v["services"], service, "`fj-lb status --json`")
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
    let got = poll_until(timeout, Duration::from_millis(50), || match backends(socket, "web") {
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
    });
    got.unwrap_or_else(|| {
        panic!("{what}: not within {timeout:?}; last `fj-lb backends --json`: {last}\ndaemon log:\n{}", log())
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
    let connect = || ControlConn::connect(socket, Duration::from_secs(10)).unwrap_or_else(|e| panic!("{e}"));
    let mut conn = connect();
    let mut out = Vec::new();
    for (n, port) in ports.into_iter().enumerate() {
        if n > 0 && n % PER_CONNECTION == 0 {
            conn = connect();
        }
        let req = serde_json::json!({
            "cmd": "lookup",
            "src": format!("{client}:{port}"),
            "dst": format!("{VIP}:{HTTP_PORT}"),
            "protocol": "tcp",
        });
        let data = conn.request(&req).unwrap_or_else(|e| panic!("lookup for {client}:{port} failed: {e}"));
        assert_eq!(data["via"].as_str(), Some("maglev"), "{client}:{port} is not a new flow: {data}");
        out.push((port, data["backend"].as_str().and_then(|b| b.parse().ok())));
    }
    out
}
