//! What an operator sees: the inspection commands (`status`, `backends`, `flows`, `maglev`,
//! `stats`, `lookup`) and the Prometheus metrics, checked against the config and against what
//! the client actually experienced, through the real daemon in the namespace lab (see
//! `fj_lb_tests::topology`). Needs root and a built `fj-lb` (`cargo build -p fj-lb`, or
//! `FJ_LB_BIN`).
use std::{
    collections::{BTreeMap, BTreeSet},
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    time::Duration,
};

use fj_lb_tests::{
    CLIENT_IP, Config, Daemon, HealthSettings, KeepAliveConn, LB_IP, Service, TempDir, Topology, VIP, backend_ip,
    fj_lb, http, poll_until, require_root, xdp_info,
};
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(2);
const SLOTS: u64 = 65537;
const METRICS_PORT: u16 = 9900;
const UDP_PORT: u16 = 5353;
const EQUAL: [(usize, u32); 3] = [(1, 100), (2, 100), (3, 100)];

// ---- config -------------------------------------------------------------------------------

/// Extra pieces of a test config beyond the lab's one TCP service "web" on VIP:80.
#[derive(Default)]
struct Extras {
    /// An HTTP health check on /healthz for "web", fast enough for tests.
    health: bool,
    /// `[metrics] listen = "<LB_IP>:9900"`.
    metrics: bool,
    /// A second service "dns", UDP on VIP:5353, same backends, no health check.
    udp_service: bool,
}

/// The whole config, stated here (not taken from the harness's lab config) so that the test
/// names every value it later expects to read back.
fn render(topo: &Topology, backends: &[(usize, u32)], x: &Extras) -> Config {
    let mut c = Config::new(&topo.bpffs_dir(), &topo.control_socket())
        .flow_table_size(65536)
        .maglev_table_size(SLOTS as u32);
    if x.metrics {
        c = c.metrics(SocketAddrV4::new(LB_IP, METRICS_PORT));
    }
    let health = HealthSettings { timeout_ms: 150, ..HealthSettings::http() };
    c = c.service(Service::new("web", 80, "tcp").weighted(backends).health(x.health.then_some(&health)));
    if x.udp_service {
        c = c.service(Service::new("dns", UDP_PORT, "udp").weighted(backends));
    }
    c
}

/// A lab with three backends and the daemon started on [`render`]`(weights, x)`.
fn start(weights: &[(usize, u32)], x: &Extras) -> (Topology, Daemon) {
    let mut topo = Topology::builder().backends(3).build();
    let config = render(&topo, weights, x);
    let daemon = Daemon::start(&mut topo, &config);
    (topo, daemon)
}

// ---- the CLI ------------------------------------------------------------------------------

/// Stdout of `fj-lb --socket <the lab's> ARGS...`, which must succeed. (Run from the test's
/// root namespace: the control socket is a path in the lab's temp dir, reachable from anywhere.)
fn cli(topo: &Topology, args: &[&str]) -> String {
    let o = fj_lb(&topo.control_socket(), args);
    assert_eq!(
        o.code,
        Some(0),
        "`fj-lb {}` failed ({:?}):\nstdout: {}\nstderr: {}",
        args.join(" "),
        o.code,
        o.stdout,
        o.stderr
    );
    o.stdout
}

/// `fj-lb --json ARGS...`, parsed.
fn cli_json(topo: &Topology, args: &[&str]) -> Value {
    let mut full = vec!["--json"];
    full.extend_from_slice(args);
    let text = cli(topo, &full);
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("`fj-lb {}` printed something that is not JSON ({e}):\n{text}", full.join(" ")))
}

fn backend_index(ip: Ipv4Addr) -> usize {
    (ip.octets()[3] - 10) as usize
}

/// The one service called `name` in a list of service reports.
fn service<'a>(services: &'a Value, name: &str) -> &'a Value {
    let list = services.as_array().unwrap_or_else(|| panic!("services is not a list: {services}"));
    let found: Vec<&Value> = list.iter().filter(|s| s["name"] == name).collect();
    assert_eq!(found.len(), 1, "expected one service {name:?} in {services:#}");
    found[0]
}

fn u64_of(v: &Value, what: &str) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("{what} is not a non-negative integer: {v}"))
}

fn f64_of(v: &Value, what: &str) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("{what} is not a number: {v}"))
}

/// Waits (bounded) until `status --json` shows every backend of `svc` up; returns that status.
fn wait_all_up(topo: &Topology, daemon: &mut Daemon, svc: &str, n: u64) -> Value {
    let mut last = Value::Null;
    poll_until(Duration::from_secs(15), Duration::from_millis(100), || {
        daemon.assert_running();
        last = cli_json(topo, &["status"]);
        let s = service(&last["services"], svc);
        (s["backends_up"] == n).then(|| last.clone())
    })
    .unwrap_or_else(|| panic!("not all {n} backends of {svc} came up within 15 s; last status:\n{last:#}"))
}

// ---- traffic ------------------------------------------------------------------------------

/// `GET /` from the client, from `port`: the backend (index) that answered.
fn served_by(topo: &Topology, port: Option<u16>) -> usize {
    let answer = topo.vip_get(port, TIMEOUT);
    topo.served_by(&answer).unwrap_or_else(|e| panic!("GET / through the VIP from port {port:?}: {e}"))
}

// ---- metrics ------------------------------------------------------------------------------

/// `GET /metrics` from inside the LB's namespace, where the listener lives.
fn scrape(topo: &Topology) -> String {
    let addr = SocketAddrV4::new(LB_IP, METRICS_PORT);
    let r = topo
        .lb()
        .run_in(|| http::request(addr, "/metrics", TIMEOUT, None))
        .unwrap_or_else(|e| panic!("scraping the metrics: {e}"));
    assert!(
        (r.minor_version, r.status) == (1, 200),
        "GET /metrics answered HTTP/1.{} {}:\n{}",
        r.minor_version,
        r.status,
        r.body
    );
    r.body
}

/// The value of the sample `series` (name with its labels exactly as rendered), if present.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(series)?.strip_prefix(' ')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

fn must_metric(text: &str, series: &str) -> f64 {
    metric(text, series).unwrap_or_else(|| panic!("no sample {series} in the metrics:\n{text}"))
}

/// TCP segments the client namespace has sent so far, retransmissions included (`OutSegs`
/// leaves retransmitted data out; `RetransSegs` counts it).
fn client_tcp_segments_sent(topo: &Topology) -> u64 {
    // /proc/thread-self: /proc/net follows the thread group leader's namespace, not ours.
    let snmp = topo.client().run_in(|| std::fs::read_to_string("/proc/thread-self/net/snmp")).expect("reading snmp");
    let tcp: Vec<&str> = snmp.lines().filter(|l| l.starts_with("Tcp:")).collect();
    assert_eq!(tcp.len(), 2, "unexpected /proc/net/snmp:\n{snmp}");
    let names: Vec<&str> = tcp[0].split_whitespace().collect();
    let values: Vec<&str> = tcp[1].split_whitespace().collect();
    let get = |n: &str| -> u64 {
        let i = names.iter().position(|x| *x == n).unwrap_or_else(|| panic!("no {n} in {}", tcp[0]));
        values[i].parse().unwrap()
    };
    get("OutSegs") + get("RetransSegs")
}

// ---- tests --------------------------------------------------------------------------------

#[test]
fn cli_shows_services_backends_and_states() {
    require_root!();
    let weights = [(1usize, 100u32), (2, 200), (3, 300)];
    let (topo, mut daemon) = start(&weights, &Extras { health: true, ..Default::default() });
    wait_all_up(&topo, &mut daemon, "web", 3);
    for i in 0..30 {
        served_by(&topo, Some(23000 + i));
    }

    // status, for humans.
    let prog_id = xdp_info(topo.lb().ns.name(), "eth0").and_then(|x| x.prog_id).expect("XDP program on the LB's eth0");
    let text = cli(&topo, &["status"]);
    for want in ["eth0", "native", &format!("program id {prog_id}"), "web", &format!("{VIP}:80"), "3/3 up"] {
        assert!(text.contains(want), "`fj-lb status` does not mention {want:?}:\n{text}");
    }
    let web_line =
        text.lines().find(|l| l.starts_with("web ")).unwrap_or_else(|| panic!("no line for web in:\n{text}"));
    for want in [&format!("{VIP}:80"), "tcp", "3/3 up"] {
        assert!(web_line.contains(want), "the web line of `fj-lb status` lacks {want:?}: {web_line}");
    }

    // backends, for humans: one row per backend, state "up".
    let text = cli(&topo, &["backends"]);
    for &(i, w) in &weights {
        let ip = backend_ip(i).to_string();
        let rows: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .filter(|c| c.get(1) == Some(&ip.as_str()))
            .collect();
        assert_eq!(rows.len(), 1, "expected one row for {ip} in `fj-lb backends`:\n{text}");
        assert_eq!((rows[0][0], rows[0][2]), ("web", "up"), "row of {ip} in `fj-lb backends`:\n{text}");
        let line = text.lines().find(|l| l.split_whitespace().nth(1) == Some(ip.as_str())).unwrap();
        assert!(line.contains(&format!("  {w}  ")), "row of {ip} does not show weight {w}: {line}");
        let mac = topo.backend(i).mac();
        assert!(line.to_lowercase().contains(&mac.to_lowercase()), "row of {ip} does not show its MAC {mac}: {line}");
    }
    let only = cli(&topo, &["backends", "web"]);
    assert_eq!(only.lines().count(), 4, "`fj-lb backends web`: header and three rows expected:\n{only}");
    let o = fj_lb(&topo.control_socket(), &["backends", "nosuch"]);
    assert_ne!(o.code, Some(0), "`fj-lb backends nosuch` succeeded:\n{}", o.stdout);
    assert!(o.stderr.contains("nosuch"), "`fj-lb backends nosuch` does not name the service: {}", o.stderr);

    // status --json matches the config.
    let st = cli_json(&topo, &["status"]);
    assert_eq!(st["interface"], "eth0", "{st:#}");
    assert_eq!(st["xdp_mode"], "native", "{st:#}");
    assert_eq!(st["program_id"], prog_id, "status program_id vs `ip link`: {st:#}");
    assert!(st["vrrp"].is_null(), "no [vrrp] configured, yet vrrp is {}", st["vrrp"]);
    assert_eq!(st["config"], daemon.config_path().display().to_string(), "{st:#}");
    let services = st["services"].as_array().expect("services is a list");
    assert_eq!(services.len(), 1, "{st:#}");
    let web = service(&st["services"], "web");
    assert_eq!(web["vip"], VIP.to_string(), "{web:#}");
    assert_eq!(web["port"], 80, "{web:#}");
    assert_eq!(web["protocol"], "tcp", "{web:#}");
    assert!(web["health_check"].as_str().is_some_and(|c| c.contains("http") && c.contains("/healthz")), "{web:#}");
    assert_eq!(
        (web["backends_up"].clone(), web["backends_total"].clone(), web["all_down"].clone()),
        (3.into(), 3.into(), false.into())
    );
    let backends = web["backends"].as_array().expect("backends is a list");
    let got: BTreeMap<String, (u64, u64)> = backends
        .iter()
        .map(|b| {
            (
                b["address"].as_str().expect("address").to_string(),
                (u64_of(&b["weight"], "weight"), u64_of(&b["config_weight"], "config_weight")),
            )
        })
        .collect();
    let want: BTreeMap<String, (u64, u64)> =
        weights.iter().map(|&(i, w)| (backend_ip(i).to_string(), (u64::from(w), u64::from(w)))).collect();
    assert_eq!(got, want, "backends and weights in `status --json` vs the config");
    let mut backend_packets = 0;
    for b in backends {
        let ip: Ipv4Addr = b["address"].as_str().unwrap().parse().unwrap();
        assert_eq!(b["up"], true, "{b:#}");
        assert_eq!(b["health_reason"], "ok", "{b:#}");
        let mac = topo.backend(backend_index(ip)).mac();
        assert_eq!(b["mac"].as_str().map(str::to_lowercase), Some(mac.to_lowercase()), "MAC of {ip}: {b:#}");
        backend_packets += u64_of(&b["packets"], "packets");
    }
    let packets = u64_of(&web["packets"], "packets");
    // 30 requests, each several client packets, plus the readiness probe(s).
    assert!(packets >= 30 * 3, "web counted {packets} packets after 30 requests: {web:#}");
    assert_eq!(backend_packets, packets, "per-backend packets do not add up to the service's: {web:#}");
    // `services --json` and `backends --json` are the same service reports.
    let svcs = cli_json(&topo, &["services"]);
    assert_eq!(service(&svcs, "web")["backends"].as_array().map(Vec::len), Some(3), "{svcs:#}");
    let bks = cli_json(&topo, &["backends", "web"]);
    assert_eq!(service(&bks, "web")["vip"], VIP.to_string(), "{bks:#}");

    // maglev: every slot owned, shares as the weights ask.
    let m = cli_json(&topo, &["maglev", "web"]);
    assert_eq!(m["service"], "web", "{m:#}");
    assert_eq!(u64_of(&m["table_size"], "table_size"), SLOTS, "{m:#}");
    assert_eq!(u64_of(&m["empty_slots"], "empty_slots"), 0, "{m:#}");
    let total_weight: u32 = weights.iter().map(|w| w.1).sum();
    let mut slots_sum = 0;
    let mut shares = Vec::new();
    for &(i, w) in &weights {
        let ip = backend_ip(i).to_string();
        let b = m["backends"]
            .as_array()
            .and_then(|l| l.iter().find(|b| b["address"] == ip.as_str()))
            .unwrap_or_else(|| panic!("{ip} missing from `fj-lb maglev web`: {m:#}"));
        assert_eq!(u64_of(&b["weight"], "weight"), u64::from(w), "{b:#}");
        let slots = u64_of(&b["slots"], "slots");
        slots_sum += slots;
        let want = f64::from(w) / f64::from(total_weight);
        let share = slots as f64 / SLOTS as f64;
        shares.push(format!("{ip}: {slots} slots = {:.3}% for {:.3}%", share * 100.0, want * 100.0));
        assert!((f64_of(&b["expected_share"], "expected_share") - want).abs() < 1e-9, "expected_share of {ip}: {b:#}");
        assert!((f64_of(&b["share"], "share") - share).abs() < 1e-9, "share of {ip} is not slots/table_size: {b:#}");
        assert!(
            (share - want).abs() <= 0.01 * want,
            "{ip} (weight {w} of {total_weight}) owns {slots} slots = {:.3}%, more than 1% off its {:.3}%",
            share * 100.0,
            want * 100.0
        );
    }
    assert_eq!(slots_sum, SLOTS, "slots of the backends do not add up to the table: {m:#}");
    eprintln!("maglev: {shares:?}");
    let text = cli(&topo, &["maglev", "web"]);
    assert!(text.contains(&format!("{SLOTS} slots, 0 empty")), "`fj-lb maglev web`:\n{text}");

    // stats: the traffic above went through the data path.
    let stats = cli_json(&topo, &["stats"]);
    let forwarded = u64_of(&stats["forwarded"], "stats.forwarded");
    assert!(forwarded >= packets, "stats forwarded {forwarded} < the {packets} packets web counted: {stats:#}");
    assert!(u64_of(&stats["flow_miss"], "flow_miss") >= 30, "30 new connections but {stats:#}");
    let text = cli(&topo, &["stats"]);
    assert!(text.lines().any(|l| l.split_whitespace().next() == Some("forwarded")), "`fj-lb stats`:\n{text}");
    daemon.assert_running();
}

#[test]
fn flows_lists_pinned_connections() {
    require_root!();
    let (topo, mut daemon) = start(&EQUAL, &Extras::default());
    let vip = topo.vip_addr();

    // At least nine connections held open, each from a known port (below the ephemeral range,
    // so nothing else used them), until at least two backends have some.
    let mut conns: Vec<(KeepAliveConn, u16, usize)> = topo.client().run_in(|| {
        let mut conns = Vec::new();
        for port in 24000..24030u16 {
            let mut c = KeepAliveConn::connect(vip, TIMEOUT, Some(port))
                .unwrap_or_else(|e| panic!("connection from {port}: {e}"));
            let (status, body) = c.request("/").unwrap_or_else(|e| panic!("request from {port}: {e}"));
            assert_eq!(status, 200, "from port {port}: {body:?}");
            let b = topo.backend_of(&body).unwrap_or_else(|| panic!("unexpected body {body:?}"));
            conns.push((c, port, b));
            if conns.len() >= 9 && conns.iter().any(|(_, _, x)| *x != conns[0].2) {
                break;
            }
        }
        conns
    });
    // A second request on each: still the same backend (the flow is pinned).
    for (c, port, b) in &mut conns {
        let (status, body) = c.request("/").unwrap_or_else(|e| panic!("second request from {port}: {e}"));
        assert_eq!(
            (status, body.as_str()),
            (200, format!("b{b}\n").as_str()),
            "connection from {port} changed backend"
        );
    }
    let mine: BTreeMap<String, Ipv4Addr> =
        conns.iter().map(|(_, p, b)| (format!("{CLIENT_IP}:{p}"), backend_ip(*b))).collect();

    let flows_of = |v: &Value| -> Vec<Value> {
        v["flows"].as_array().unwrap_or_else(|| panic!("flows is not a list: {v:#}")).clone()
    };
    let all = cli_json(&topo, &["flows", "--limit", "1000"]);
    let total = u64_of(&all["total_entries"], "total_entries");
    assert_eq!(u64_of(&all["capacity"], "capacity"), 65536, "{all:#}");
    let listed = flows_of(&all);
    assert!(total as usize >= mine.len(), "{total} entries for {} open connections: {all:#}", mine.len());
    assert_eq!(listed.len() as u64, total, "with a large --limit every entry is listed: {all:#}");
    for (src, ip) in &mine {
        let e: Vec<&Value> = listed.iter().filter(|f| f["src"] == src.as_str()).collect();
        assert_eq!(e.len(), 1, "expected one flow from {src} in {all:#}");
        let e = e[0];
        assert_eq!(e["dst"], vip.to_string(), "{e}");
        assert_eq!(e["protocol"], "tcp", "{e}");
        assert_eq!(e["service"], "web", "{e}");
        assert_eq!(
            e["backend"],
            ip.to_string(),
            "flow from {src} is listed on another backend than the one that answered: {e}"
        );
    }
    let text = cli(&topo, &["flows"]);
    for (src, ip) in &mine {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{src} ")))
            .unwrap_or_else(|| panic!("no row for {src}:\n{text}"));
        assert!(line.split_whitespace().any(|c| c == ip.to_string()), "row for {src} does not name {ip}: {line}");
    }

    // --backend keeps that backend's flows, all of them.
    let used: BTreeSet<Ipv4Addr> = mine.values().copied().collect();
    assert!(used.len() >= 2, "all {} connections went to {used:?}", mine.len());
    for i in 1..=3 {
        let ip = backend_ip(i);
        let v = cli_json(&topo, &["flows", "--backend", &ip.to_string(), "--limit", "1000"]);
        let listed = flows_of(&v);
        assert!(listed.iter().all(|f| f["backend"] == ip.to_string()), "`flows --backend {ip}` lists others: {v:#}");
        let srcs: BTreeSet<&str> = listed.iter().filter_map(|f| f["src"].as_str()).collect();
        for (src, b) in &mine {
            assert_eq!(
                srcs.contains(src.as_str()),
                *b == ip,
                "`flows --backend {ip}` and the flow from {src} (on {b}): {v:#}"
            );
        }
    }
    let v = cli_json(&topo, &["flows", "--service", "web", "--limit", "1000"]);
    assert_eq!(flows_of(&v).len() as u64, total, "all flows are web's: {v:#}");

    // --limit 1: one entry, the total still counts them all.
    let v = cli_json(&topo, &["flows", "--limit", "1"]);
    assert_eq!(flows_of(&v).len(), 1, "{v:#}");
    assert!(u64_of(&v["total_entries"], "total_entries") >= mine.len() as u64, "{v:#}");
    let text = cli(&topo, &["flows", "--limit", "1"]);
    assert!(text.lines().next().is_some_and(|l| l.contains("showing 1")), "`fj-lb flows --limit 1`:\n{text}");
    assert_eq!(text.lines().count(), 3, "summary, header and one row expected:\n{text}");

    // Bad filters are refused.
    for args in [["flows", "--service", "nosuch"], ["flows", "--backend", "not-an-ip"]] {
        let o = fj_lb(&topo.control_socket(), &args);
        assert_ne!(o.code, Some(0), "`fj-lb {}` succeeded:\n{}", args.join(" "), o.stdout);
        assert!(!o.stderr.trim().is_empty(), "`fj-lb {}` failed silently", args.join(" "));
    }
    drop(conns);
    daemon.assert_running();
}

#[test]
fn lookup_agrees_with_the_backend_that_served() {
    require_root!();
    let (topo, mut daemon) = start(&EQUAL, &Extras::default());
    let vip = topo.vip_addr().to_string();
    let lookup = |port: u16| cli_json(&topo, &["lookup", &format!("{CLIENT_IP}:{port}"), &vip, "tcp"]);

    // Flows just used: the flow table names the backend that answered.
    let mut per_backend = BTreeMap::<usize, u32>::new();
    for port in 25000..25020u16 {
        let b = served_by(&topo, Some(port));
        *per_backend.entry(b).or_default() += 1;
        let l = lookup(port);
        assert_eq!(l["service"], "web", "{l:#}");
        assert_eq!(l["via"], "flow_table", "lookup of {CLIENT_IP}:{port}, just served by b{b}: {l:#}");
        assert_eq!(
            l["backend"],
            backend_ip(b).to_string(),
            "lookup of {CLIENT_IP}:{port} vs b{b} that served it: {l:#}"
        );
    }
    eprintln!("served per backend: {per_backend:?}");

    // Ports never used: Maglev predicts the backend, and that one serves the first request.
    for port in 26000..26010u16 {
        let l = lookup(port);
        assert_eq!(l["via"], "maglev", "lookup of never used {CLIENT_IP}:{port}: {l:#}");
        let slot = u64_of(&l["slot"], "slot");
        assert!(slot < SLOTS, "{l:#}");
        assert_eq!(u64_of(&l["hash"], "hash") % SLOTS, slot, "slot is not hash mod table size: {l:#}");
        let predicted: Ipv4Addr =
            l["backend"].as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no backend: {l:#}"));
        let b = served_by(&topo, Some(port));
        assert_eq!(
            backend_ip(b),
            predicted,
            "lookup predicted {predicted} for {CLIENT_IP}:{port}, but b{b} served it: {l:#}"
        );
        let again = lookup(port);
        assert_eq!(again["via"], "flow_table", "after the request: {again:#}");
        assert_eq!(again["backend"], predicted.to_string(), "after the request: {again:#}");
    }

    // The human form says the same.
    let text = cli(&topo, &["lookup", &format!("{CLIENT_IP}:26999"), &vip]);
    let l = lookup(26999);
    let b = l["backend"].as_str().unwrap();
    assert!(
        text.contains("via maglev") && text.contains(b) && text.contains("slot"),
        "`fj-lb lookup`:\n{text}\nvs {l:#}"
    );

    // Nothing configured there: refused, saying why.
    let o = fj_lb(&topo.control_socket(), &["lookup", &format!("{CLIENT_IP}:1234"), &format!("{VIP}:81"), "tcp"]);
    assert_ne!(o.code, Some(0), "lookup on a port without a service succeeded:\n{}", o.stdout);
    assert!(o.stderr.contains("no service"), "lookup on a port without a service: {}", o.stderr);
    let o = fj_lb(&topo.control_socket(), &["lookup", "10.0.0.2", &vip, "tcp"]);
    assert_ne!(o.code, Some(0), "lookup with a source without a port succeeded:\n{}", o.stdout);
    daemon.assert_running();
}

#[test]
fn commands_fail_clearly_without_a_daemon() {
    require_root!();
    let dir = TempDir::new("nodaemon");
    let missing = dir.join("missing.sock");
    // A socket file left behind by a killed daemon: it exists, nobody listens.
    let stale = dir.join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).expect("binding a socket"));
    assert!(stale.exists());
    let commands: [&[&str]; 9] = [
        &["status"],
        &["--json", "status"],
        &["services"],
        &["backends"],
        &["flows"],
        &["maglev", "web"],
        &["stats"],
        &["lookup", "10.0.0.2:1234", "10.0.0.100:80", "tcp"],
        &["reload"],
    ];
    for socket in [&missing, &stale] {
        for args in commands {
            let o = fj_lb(socket, args);
            assert_eq!(
                o.code,
                Some(1),
                "`fj-lb --socket {} {}` should exit 1; stdout: {}\nstderr: {}",
                socket.display(),
                args.join(" "),
                o.stdout,
                o.stderr
            );
            assert!(
                o.stderr.contains("not running"),
                "`fj-lb {}` on {}: stderr {:?}",
                args.join(" "),
                socket.display(),
                o.stderr
            );
            assert!(o.stdout.is_empty(), "`fj-lb {}` printed to stdout: {:?}", args.join(" "), o.stdout);
        }
    }
    let o = fj_lb(&missing, &["status"]);
    assert!(o.stderr.contains(&missing.display().to_string()), "the message should name the socket: {}", o.stderr);
}

#[test]
fn metrics_count_the_packets_sent() {
    require_root!();
    let (topo, mut daemon) = start(&EQUAL, &Extras { health: true, metrics: true, udp_service: true });
    let ips: Vec<String> = (1..=3).map(|i| backend_ip(i).to_string()).collect();
    let series = |name: &str, svc: &str, ip: &str| format!("{name}{{service=\"{svc}\",backend=\"{ip}\"}}");

    // Health: every backend up, as a gauge.
    let mut last = String::new();
    poll_until(Duration::from_secs(15), Duration::from_millis(100), || {
        daemon.assert_running();
        last = scrape(&topo);
        ips.iter().all(|ip| metric(&last, &series("fj_lb_backend_up", "web", ip)) == Some(1.0)).then_some(())
    })
    .unwrap_or_else(|| panic!("fj_lb_backend_up did not reach 1 for all three within 15 s:\n{last}"));
    for ip in &ips {
        assert_eq!(must_metric(&last, &series("fj_lb_backend_weight", "web", ip)), 100.0);
    }
    assert_eq!(must_metric(&last, "fj_lb_service_backends_up{service=\"web\"}"), 3.0);
    assert_eq!(must_metric(&last, "fj_lb_flow_table_capacity"), 65536.0);

    const N: u64 = 50;
    let svc_web = "fj_lb_service_packets_total{service=\"web\"}";
    let svc_dns = "fj_lb_service_packets_total{service=\"dns\"}";
    let fwd = "fj_lb_datapath_packets_total{reason=\"forwarded\"}";
    let backends_sum = |text: &str, svc: &str| -> f64 {
        ips.iter().map(|ip| must_metric(text, &series("fj_lb_backend_packets_total", svc, ip))).sum()
    };

    // TCP: N requests, each on a fresh connection. The client's kernel counts what it sent.
    let before = scrape(&topo);
    let sent_before = client_tcp_segments_sent(&topo);
    let mut per_backend = BTreeMap::<usize, u64>::new();
    for _ in 0..N {
        *per_backend.entry(served_by(&topo, None)).or_default() += 1;
    }
    // The last connection's closing packets may still be on their way: poll until the
    // counters stop moving (bounded).
    let mut prev: Option<(u64, f64)> = None;
    let (sent, after) = poll_until(Duration::from_secs(5), Duration::from_millis(100), || {
        let sent = client_tcp_segments_sent(&topo) - sent_before;
        let text = scrape(&topo);
        let web = must_metric(&text, svc_web);
        let now = (sent, web);
        let settled = prev == Some(now);
        prev = Some(now);
        settled.then_some((sent, text))
    })
    .expect("the counters kept moving for 5 s after the requests");
    let d = |text: &str, s: &str| must_metric(text, s) - must_metric(&before, s);
    let web = d(&after, svc_web) as u64;
    let forwarded = d(&after, fwd) as u64;
    let be_web = (backends_sum(&after, "web") - backends_sum(&before, "web")) as u64;
    eprintln!(
        "{N} requests: client sent {sent} TCP segments; web +{web}, forwarded +{forwarded}, per backend {per_backend:?}"
    );
    assert!(
        (3 * N..=20 * N).contains(&web),
        "fj_lb_service_packets_total{{service=\"web\"}} rose by {web} for {N} requests (expected 3..20 per request)"
    );
    let margin = 2 + sent / 50;
    assert!(
        web.abs_diff(sent) <= margin,
        "fj_lb_service_packets_total{{service=\"web\"}} rose by {web}, but the client sent {sent} TCP segments to the VIP"
    );
    assert_eq!(be_web, web, "web's backends' packets rose by {be_web}, the service's by {web}");
    assert_eq!(forwarded, web, "forwarded rose by {forwarded}, web by {web}, and nothing else was sent to a service");
    for (b, n) in &per_backend {
        let got = d(&after, &series("fj_lb_backend_packets_total", "web", &backend_ip(*b).to_string()));
        assert!(got >= (3 * n) as f64, "b{b} served {n} requests but its packet counter rose by {got}");
    }
    let entries = must_metric(&after, "fj_lb_flow_table_entries");
    assert!(entries >= N as f64, "{N} connections from distinct ports, but fj_lb_flow_table_entries is {entries}");

    // UDP: one datagram is one packet, so the count is exact.
    let before = after;
    let dst = SocketAddrV4::new(VIP, UDP_PORT);
    topo.client().run_in(|| {
        let s = UdpSocket::bind("0.0.0.0:0").expect("binding a UDP socket");
        for i in 0..N {
            s.send_to(format!("datagram {i}").as_bytes(), dst).unwrap_or_else(|e| panic!("sending to {dst}: {e}"));
        }
    });
    let mut last = String::new();
    poll_until(Duration::from_secs(5), Duration::from_millis(50), || {
        last = scrape(&topo);
        (must_metric(&last, svc_dns) - must_metric(&before, svc_dns) >= N as f64).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "dns counted {} of {N} datagrams within 5 s",
            must_metric(&last, svc_dns) - must_metric(&before, svc_dns)
        )
    });
    // Another scrape: nothing more comes.
    let after = scrape(&topo);
    let d = |text: &str, s: &str| must_metric(text, s) - must_metric(&before, s);
    assert_eq!(d(&after, svc_dns), N as f64, "fj_lb_service_packets_total{{service=\"dns\"}} vs {N} datagrams sent");
    assert_eq!(
        backends_sum(&after, "dns") - backends_sum(&before, "dns"),
        N as f64,
        "dns backends' packets vs {N} datagrams"
    );
    assert_eq!(d(&after, fwd), N as f64, "forwarded vs {N} datagrams (and no TCP meanwhile)");
    assert_eq!(d(&after, svc_web), 0.0, "web counted packets while only UDP was sent");

    // The CLI agrees with the metrics.
    let stats = cli_json(&topo, &["stats"]);
    let scraped = scrape(&topo);
    assert_eq!(u64_of(&stats["forwarded"], "forwarded") as f64, must_metric(&scraped, fwd), "stats --json vs metrics");
    daemon.assert_running();
}
