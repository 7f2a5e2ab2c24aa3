//! What HAProxy and keepalived operators reach for, against the real daemon in the namespace
//! lab: the stats page loaded by a real browser (headless Chromium) with one backend killed
//! and one drained, `/status.json` against `fj-lb status --json`, the Grafana dashboard's
//! queries against a live `/metrics`, and systemd's readiness protocol over a fake
//! `NOTIFY_SOCKET`. Needs root and a built `fj-lb` (`cargo xtask test` does both).
use std::{
    collections::BTreeSet,
    net::SocketAddrV4,
    os::unix::net::UnixDatagram,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use fj_lb_tests::{
    Daemon, HealthSettings, LB_IP, Readiness, Topology, VrrpSettings, backend_ip, backends::nginx_pids, http, poll_until,
    require_root, xdp_info,
};
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(2);
const METRICS: SocketAddrV4 = SocketAddrV4::new(LB_IP, 9900);
const BACKENDS: [(usize, u32); 3] = [(1, 100), (2, 100), (3, 100)];
/// The backend whose nginx the stats-page test kills, and the one it drains.
const DEAD: usize = 2;
const DRAINED: usize = 3;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is in the workspace").to_path_buf()
}

// ---- the lab ------------------------------------------------------------------------------

/// One LB with VRRP (alone, so it becomes master), HTTP health checks on "web" and the metrics
/// listener; returns once it is master and every backend is up.
fn lab() -> (Topology, Daemon) {
    let mut topo = Topology::builder().backends(3).build();
    let config = topo
        .lb_config(1, &BACKENDS, Some(&VrrpSettings::new(150)))
        .metrics(METRICS)
        .health(Some(&HealthSettings::http()));
    let mut daemon = Daemon::start_on(&mut topo, 1, &config, Readiness::Attached);
    let mut last = Value::Null;
    let ready = poll_until(Duration::from_secs(15), Duration::from_millis(100), || {
        daemon.assert_running();
        last = daemon.status().ok()?;
        let master = last["vrrp"]["state"] == "master";
        (master && last["services"][0]["backends_up"] == 3).then_some(())
    });
    assert!(ready.is_some(), "not master with 3 backends up within 15 s; last status:\n{last:#}");
    (topo, daemon)
}

/// `GET path` on the metrics listener from the client host, as an operator's browser or
/// Prometheus elsewhere on the network would.
fn get(topo: &Topology, path: &str) -> http::Response {
    let r = topo
        .client()
        .run_in(|| http::request(METRICS, path, TIMEOUT, None))
        .unwrap_or_else(|e| panic!("GET {path} on {METRICS}: {e}"));
    assert_eq!((r.minor_version, r.status), (1, 200), "GET {path} answered {}:\n{}", r.status, r.body);
    r
}

// ---- a real browser -----------------------------------------------------------------------

/// Headless Chromium (Debian's `chromium`) in the client's namespace, with its own profile
/// directory and a bound on its run time; `args` before the URL. Stdout on success.
fn chromium(topo: &Topology, args: &[&str], url: &str) -> String {
    let profile = topo.tmp().join("chromium-profile");
    let profile_arg = format!("--user-data-dir={}", profile.display());
    let mut full = vec!["timeout", "60", "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"];
    full.push(&profile_arg);
    full.extend_from_slice(args);
    full.push(url);
    topo.client().ns.try_exec(&full).unwrap_or_else(|e| panic!("chromium {args:?} {url}: {e}"))
}

/// The attributes of every `<tr>` of the rendered DOM that has a `data-backend`.
fn backend_rows(dom: &str) -> Vec<(String, String, String, String)> {
    let attr = |tag: &str, name: &str| -> Option<String> {
        let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
        Some(tag[start..start + tag[start..].find('"')?].to_string())
    };
    dom.split("<tr ")
        .skip(1)
        .filter_map(|rest| {
            let (tag, after) = rest.split_once('>')?;
            let row = &after[..after.find("</tr>").unwrap_or(after.len())];
            Some((attr(tag, "data-service")?, attr(tag, "data-backend")?, attr(tag, "data-state")?, row.to_string()))
        })
        .collect()
}

#[test]
fn the_stats_page_in_a_browser_shows_every_backend_and_its_state() {
    require_root!();
    let (topo, mut daemon) = lab();
    // Some traffic, so the rates on the page (and in the screenshot) are not all zero.
    for _ in 0..30 {
        let _ = topo.vip_get(None, TIMEOUT);
    }
    for pid in nginx_pids(topo.backend(DEAD)) {
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    }
    let drained = backend_ip(DRAINED).to_string();
    daemon.cli(&["drain", "web", &drained]).unwrap_or_else(|e| panic!("fj-lb drain: {e}"));
    let dead = backend_ip(DEAD).to_string();
    let mut status = Value::Null;
    poll_until(Duration::from_secs(10), Duration::from_millis(100), || {
        daemon.assert_running();
        status = daemon.status().ok()?;
        let b = status["services"][0]["backends"].as_array()?.iter().find(|b| b["address"] == dead.as_str())?.clone();
        (b["up"] == false).then_some(())
    })
    .unwrap_or_else(|| panic!("b{DEAD} not down within 10 s after its nginx was killed:\n{status:#}"));

    // What the browser renders, checked backend by backend against what status says.
    let url = format!("http://{METRICS}/");
    let dom = chromium(&topo, &["--dump-dom"], &url);
    assert!(dom.contains("<meta http-equiv=\"refresh\""), "the page does not refresh itself:\n{dom}");
    assert!(dom.contains("id=\"vrrp\" data-state=\"master\""), "no VRRP master on the page:\n{dom}");
    let rows = backend_rows(&dom);
    let want: Vec<(String, String, String)> = status["services"]
        .as_array()
        .expect("services")
        .iter()
        .flat_map(|s| {
            s["backends"].as_array().expect("backends").iter().map(move |b| {
                let state = match (b["up"].as_bool(), b["weight"].as_u64()) {
                    (Some(false), _) => "down",
                    (_, Some(0)) => "drained",
                    _ => "up",
                };
                (s["name"].as_str().unwrap().to_string(), b["address"].as_str().unwrap().to_string(), state.to_string())
            })
        })
        .collect();
    assert_eq!(want.len(), 3, "{status:#}");
    let got: Vec<(String, String, String)> = rows.iter().map(|(s, b, st, _)| (s.clone(), b.clone(), st.clone())).collect();
    assert_eq!(got, want, "the rendered rows against fj-lb status; DOM:\n{dom}");
    let states: BTreeSet<&str> = got.iter().map(|(_, _, s)| s.as_str()).collect();
    assert_eq!(states, BTreeSet::from(["up", "down", "drained"]), "one backend of each colour");
    let dead_row = &rows.iter().find(|r| r.1 == dead).expect("the dead backend's row").3;
    let reason = status["services"][0]["backends"][DEAD - 1]["health_reason"].as_str().expect("a reason");
    assert!(dead_row.contains(reason), "the dead backend's row lacks its reason {reason:?}: {dead_row}");
    assert!(dead_row.contains(" ago"), "the dead backend's row lacks its last check: {dead_row}");

    // The screenshot the README shows (docs/stats-page.png is a copy of one).
    let shot = workspace().join("target/stats-page.png");
    let _ = std::fs::remove_file(&shot);
    let shot_arg = format!("--screenshot={}", shot.display());
    chromium(&topo, &[&shot_arg, "--window-size=1280,360", "--hide-scrollbars"], &url);
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", shot.display()));
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000, "not a real screenshot: {} bytes", png.len());

    // /status.json is what `fj-lb status --json` prints: the same fields, the same backends.
    let json: Value = serde_json::from_str(&get(&topo, "/status.json").body).expect("/status.json is JSON");
    let cli = daemon.status().expect("fj-lb status --json");
    assert_eq!(keys(&json), keys(&cli), "field names of /status.json against the CLI's");
    let view = |v: &Value| -> Vec<(Value, Value, Value)> {
        v["services"][0]["backends"].as_array().unwrap().iter().map(|b| (b["address"].clone(), b["up"].clone(), b["weight"].clone())).collect()
    };
    assert_eq!(view(&json), view(&cli));
    assert_eq!(json["vrrp"]["state"], cli["vrrp"]["state"]);
}

/// Every object key of `v`, at any depth.
fn keys(v: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    fn walk(v: &Value, out: &mut BTreeSet<String>) {
        match v {
            Value::Object(m) => m.iter().for_each(|(k, v)| {
                out.insert(k.clone());
                if k != "rejected" {
                    walk(v, out);
                }
            }),
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    walk(v, &mut out);
    out
}

// ---- the Grafana dashboard ----------------------------------------------------------------

/// Every metric name the dashboard's queries use: its panels' `expr` strings and its
/// variables' queries, parsed out of the JSON.
fn dashboard_metrics() -> BTreeSet<String> {
    let path = workspace().join("deploy/grafana/fj-lb.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let dash: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    let mut queries = Vec::new();
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => m.iter().for_each(|(k, v)| match (k.as_str(), v) {
                ("expr" | "query" | "definition", Value::String(s)) => out.push(s.clone()),
                _ => walk(v, out),
            }),
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    walk(&dash, &mut queries);
    assert!(queries.len() >= 15, "only {} queries in the dashboard", queries.len());
    let mut names = BTreeSet::new();
    for q in &queries {
        let bytes = q.as_bytes();
        let mut i = 0;
        while let Some(at) = q[i..].find("fj_lb_") {
            let start = i + at;
            let end = start + bytes[start..].iter().take_while(|c| c.is_ascii_alphanumeric() || **c == b'_').count();
            names.insert(q[start..end].to_string());
            i = end;
        }
    }
    names
}

#[test]
fn every_metric_the_grafana_dashboard_queries_is_served() {
    require_root!();
    let wanted = dashboard_metrics();
    for family in [
        "fj_lb_service_bytes_total",
        "fj_lb_backend_bytes_total",
        "fj_lb_backend_up",
        "fj_lb_datapath_packets_total",
        "fj_lb_flow_table_entries",
        "fj_lb_health_check_duration_seconds_bucket",
        "fj_lb_map_update_duration_seconds_bucket",
        "fj_lb_vrrp_state",
    ] {
        assert!(wanted.contains(family), "the dashboard has no panel over {family}: {wanted:?}");
    }
    let (topo, _daemon) = lab();
    let _ = topo.vip_get(None, TIMEOUT);
    let text = get(&topo, "/metrics").body;
    let served: BTreeSet<String> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap_or("").to_string())
        .collect();
    let missing: Vec<&String> = wanted.iter().filter(|m| !served.contains(*m)).collect();
    assert!(missing.is_empty(), "the dashboard queries {missing:?}, which /metrics does not serve:\n{text}");
}

// ---- systemd readiness --------------------------------------------------------------------

/// The datagrams the daemon sends to a fake `NOTIFY_SOCKET`, as systemd would receive them.
struct Notify {
    socket: UnixDatagram,
    seen: Vec<String>,
}

impl Notify {
    fn bind(path: &Path) -> Notify {
        let socket = UnixDatagram::bind(path).unwrap_or_else(|e| panic!("binding {}: {e}", path.display()));
        socket.set_read_timeout(Some(Duration::from_millis(200))).expect("read timeout");
        Notify { socket, seen: Vec::new() }
    }

    /// Reads datagrams until one satisfies `f` (returned) or `timeout` has passed (panics with
    /// what came).
    fn until(&mut self, what: &str, timeout: Duration, f: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = self.socket.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                self.seen.push(msg.clone());
                if f(&msg) {
                    return msg;
                }
            }
        }
        panic!("no {what} within {timeout:?}; received: {:?}", self.seen);
    }
}

fn has(msg: &str, line: &str) -> bool {
    msg.lines().any(|l| l == line)
}

#[test]
fn systemd_hears_ready_reloading_stopping_and_the_watchdog() {
    require_root!();
    let mut topo = Topology::builder().backends(3).build();
    let config = topo.config(&BACKENDS).health(Some(&HealthSettings::http()));
    let path = topo.tmp().join("notify.sock");
    let mut notify = Notify::bind(&path);
    let env: [(&str, &std::ffi::OsStr); 2] = [("NOTIFY_SOCKET", path.as_os_str()), ("WATCHDOG_USEC", "400000".as_ref())];
    let mut daemon = Daemon::spawn_with_env(&mut topo, 1, &config, None, &env);

    // READY=1 comes once XDP is attached and the maps are filled: at that moment the balancer
    // already answers through the VIP.
    let ready = notify.until("READY=1", Duration::from_secs(20), |m| has(m, "READY=1"));
    assert!(ready.contains("STATUS=balancing 1 services on eth0"), "{ready:?}");
    let lb = topo.lb().ns.name().to_string();
    assert!(xdp_info(&lb, "eth0").is_some(), "READY=1 before XDP was attached");
    let answer = topo.vip_get(None, TIMEOUT);
    assert!(matches!(answer, Ok((200, _))), "READY=1 but the VIP answered {answer:?}");

    // The watchdog: WATCHDOG_USEC=400 ms, pinged every 200 ms.
    let t = Instant::now();
    let before = notify.seen.iter().filter(|m| has(m, "WATCHDOG=1")).count();
    for _ in 0..4 {
        notify.until("WATCHDOG=1", Duration::from_secs(2), |m| has(m, "WATCHDOG=1"));
    }
    let took = t.elapsed();
    assert!(took < Duration::from_millis(1500), "4 watchdog pings took {took:?}, want one every 200 ms");
    assert!(notify.seen.iter().filter(|m| has(m, "WATCHDOG=1")).count() >= before + 4);

    // A reload by SIGHUP, one by `fj-lb reload`, and a refused one: RELOADING=1 (with the
    // monotonic time systemd asks for), then READY=1 again, each time.
    let not_watchdog = |m: &str| !has(m, "WATCHDOG=1");
    for how in ["SIGHUP", "fj-lb reload", "invalid"] {
        match how {
            "SIGHUP" => daemon.reload_with(&config.render()),
            "fj-lb reload" => {
                daemon.cli(&["reload"]).unwrap_or_else(|e| panic!("fj-lb reload: {e}"));
            }
            _ => daemon.reload_with("interface = 42\n"),
        }
        let reloading = notify.until("RELOADING=1", Duration::from_secs(10), not_watchdog);
        assert!(has(&reloading, "RELOADING=1"), "{how}: first came {reloading:?}");
        assert!(reloading.lines().any(|l| l.starts_with("MONOTONIC_USEC=")), "{how}: {reloading:?}");
        let ready = notify.until("READY=1", Duration::from_secs(10), not_watchdog);
        assert!(has(&ready, "READY=1"), "{how}: after RELOADING=1 came {ready:?}");
        let status = ready.lines().find_map(|l| l.strip_prefix("STATUS=")).unwrap_or("");
        let refused = status.contains("refused");
        assert_eq!(refused, how == "invalid", "{how}: STATUS={status}");
    }

    // SIGTERM: STOPPING=1 first, then a clean exit.
    daemon.signal(libc::SIGTERM);
    let stopping = notify.until("STOPPING=1", Duration::from_secs(10), not_watchdog);
    assert!(has(&stopping, "STOPPING=1"), "after SIGTERM came {stopping:?}");
    let exit = daemon.wait_exit(Duration::from_secs(10)).expect("exits after SIGTERM");
    assert!(exit.success(), "fj-lb exited {exit:?}:\n{}", daemon.log());
    assert!(!daemon.log().contains('\x1b'), "colour codes in a log that is a file");
}
