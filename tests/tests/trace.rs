//! `fj-lb trace` against the real daemon in the namespace lab: the lines name the backends
//! that actually answered the client, a `--reason` filter catches a packet the balancer
//! passed, and once the trace ends (its `--count` reached, or its client killed) the daemon
//! and the data path stop tracing: `status` shows no trace and `SETTINGS_TRACE` is clear in
//! the pinned SETTINGS map. Needs root and a built `fj-lb` (`FJ_LB_BIN`).
use std::{
    collections::{BTreeMap, BTreeSet},
    io::{BufRead, BufReader},
    net::{SocketAddrV4, TcpStream},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use fj_lb_tests::{CLIENT_IP, Config, Daemon, Service, Topology, VIP, backend_ip, fj_lb, fj_lb_bin, poll_until, require_root};
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(2);
/// `SETTINGS_TRACE` in fj-lb-common.
const SETTINGS_TRACE: u32 = 4;
/// Offset of `Settings::flags` (after two MACs and the hash seed).
const FLAGS_AT: usize = 16;

fn start() -> (Topology, Daemon) {
    let mut topo = Topology::builder().backends(3).build();
    let config = Config::new(&topo.bpffs_dir(), &topo.control_socket())
        .flow_table_size(65536)
        .service(Service::new("web", 80, "tcp").weighted(&[(1, 100), (2, 100), (3, 100)]));
    let daemon = Daemon::start(&mut topo, &config);
    (topo, daemon)
}

/// `fj-lb --json trace ARGS...` running in the background, its stdout lines arriving on a
/// channel (read by a thread, so that the test can wait on them with a deadline).
struct Trace {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Trace {
    fn start(topo: &Topology, args: &[&str]) -> Trace {
        let mut child = Command::new(fj_lb_bin())
            .arg("--socket")
            .arg(topo.control_socket())
            .args(["--json", "trace"])
            .args(args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting fj-lb trace");
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Trace { child, lines }
    }

    /// Every line printed so far, parsed.
    fn events(&self) -> Vec<Value> {
        self.lines
            .try_iter()
            .map(|l| serde_json::from_str(&l).unwrap_or_else(|e| panic!("a trace line that is not JSON ({e}): {l}")))
            .collect()
    }

    fn stderr(&mut self) -> String {
        let mut s = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut s);
        }
        s
    }
}

impl Drop for Trace {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn status(topo: &Topology) -> Value {
    let o = fj_lb(&topo.control_socket(), &["--json", "status"]);
    o.json().unwrap_or_else(|e| panic!("{e}"))
}

/// Waits (bounded) until `status` says whether a trace runs as `running`; the status then.
fn wait_tracing(topo: &Topology, running: bool) -> Value {
    let mut last = Value::Null;
    poll_until(Duration::from_secs(5), Duration::from_millis(20), || {
        last = status(topo);
        (last["trace"].is_string() == running).then(|| last.clone())
    })
    .unwrap_or_else(|| panic!("status never showed trace {}: {last:#}", if running { "running" } else { "ended" }))
}

/// `Settings::flags` as the data path reads them: the pinned SETTINGS map, through bpftool.
fn settings_flags(topo: &Topology) -> u32 {
    let pin = topo.bpffs_dir().join("SETTINGS");
    let out = Command::new("bpftool").args(["-j", "map", "dump", "pinned"]).arg(&pin).output().expect("running bpftool");
    assert!(out.status.success(), "bpftool map dump pinned {}: {}", pin.display(), String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("bpftool -j prints JSON");
    let entry = &v[0];
    if let Some(flags) = entry["formatted"]["value"]["flags"].as_u64() {
        return flags as u32;
    }
    let bytes: Vec<u8> = entry["value"]
        .as_array()
        .unwrap_or_else(|| panic!("no value in bpftool's dump: {v}"))
        .iter()
        .map(|b| u8::from_str_radix(b.as_str().unwrap().trim_start_matches("0x"), 16).unwrap())
        .collect();
    u32::from_ne_bytes(bytes[FLAGS_AT..FLAGS_AT + 4].try_into().unwrap())
}

/// `GET /` through the VIP from client port `port`: the backend (index) that answered.
fn served_by(topo: &Topology, port: u16) -> usize {
    let answer = topo.vip_get(Some(port), TIMEOUT);
    topo.served_by(&answer).unwrap_or_else(|e| panic!("GET / through the VIP from port {port}: {e}"))
}

#[test]
fn trace_names_the_backends_that_answered_and_stops_when_its_client_goes() {
    require_root!();
    let (topo, mut daemon) = start();
    topo.wait_vip_answers(Duration::from_secs(10));
    assert_eq!(settings_flags(&topo) & SETTINGS_TRACE, 0, "no trace yet: the bit is clear");

    let mut trace = Trace::start(&topo, &["--service", "web"]);
    let st = wait_tracing(&topo, true);
    assert_eq!(st["trace"], format!("packets service web ({VIP}:80 tcp)"), "{st:#}");
    assert_ne!(settings_flags(&topo) & SETTINGS_TRACE, 0, "tracing: the bit is set");
    // A second one at the same time is refused, saying why.
    let second = fj_lb(&topo.control_socket(), &["trace", "--vip", &VIP.to_string(), "--count", "1"]);
    assert_ne!(second.code, Some(0), "a second trace was accepted");
    assert!(second.stderr.contains("a trace is already running"), "{}", second.stderr);

    let served: BTreeMap<u16, usize> = (27000..27006u16).map(|p| (p, served_by(&topo, p))).collect();
    // Every packet of those connections from the client to the VIP is a line: SYN, ACK, the
    // request, FIN, ACK at least, each forwarded to the backend that answered.
    let mut events = Vec::new();
    let complete = poll_until(Duration::from_secs(5), Duration::from_millis(20), || {
        events.extend(trace.events());
        let ports: BTreeSet<u16> = events.iter().filter_map(port_of).collect();
        (served.keys().all(|p| events.iter().filter(|e| port_of(e) == Some(*p)).count() >= 4) && ports.len() >= served.len())
            .then_some(())
    });
    assert!(complete.is_some(), "not every connection's packets were traced within 5 s: {events:#?}\nstderr: {}", trace.stderr());
    for e in &events {
        assert_eq!(e["service"], "web", "{e}");
        assert_eq!(e["dst"], format!("{VIP}:80"), "{e}");
        assert_eq!(e["protocol"], "tcp", "{e}");
        assert_eq!((e["action"].as_str(), e["reason"].as_str()), (Some("tx"), Some("forwarded")), "{e}");
        let Some(port) = port_of(e) else { continue };
        let Some(b) = served.get(&port) else { continue };
        assert_eq!(e["backend"], backend_ip(*b).to_string(), "a packet from port {port}, which b{b} answered: {e}");
    }
    for port in served.keys() {
        let of: Vec<&Value> = events.iter().filter(|e| port_of(e) == Some(*port)).collect();
        assert_eq!(of[0]["via"], "maglev", "a connection's first packet (SYN) is Maglev's: {:#?}", of);
        assert!(of[0]["slot"].as_u64().is_some(), "{:#?}", of[0]);
        assert!(of[1..].iter().all(|e| e["via"] == "flow_table" && e["slot"].is_null()), "then flow hits: {of:#?}");
    }

    // Killed (no goodbye): the daemon sees the connection close and stops tracing.
    trace.child.kill().expect("killing fj-lb trace");
    let _ = trace.child.wait();
    wait_tracing(&topo, false);
    assert_eq!(settings_flags(&topo) & SETTINGS_TRACE, 0, "the trace's client is gone: the bit is clear again");
    daemon.assert_running();
}

#[test]
fn a_reason_filter_catches_a_passed_packet_and_count_ends_the_trace() {
    require_root!();
    let (topo, mut daemon) = start();
    topo.wait_vip_answers(Duration::from_secs(10));

    // Unknown names are refused before anything is traced.
    for (args, says) in [
        (&["--service", "nope"][..], "no service named \"nope\""),
        (&["--reason", "pass_nope"][..], "no reason named \"pass_nope\""),
        (&["--backend", "10.0.0.99"][..], "10.0.0.99 is no backend of any service"),
    ] {
        let o = fj_lb(&topo.control_socket(), &[&["trace"][..], args].concat());
        assert_ne!(o.code, Some(0), "trace {args:?} was accepted");
        assert!(o.stderr.contains(says), "trace {args:?}: {}", o.stderr);
    }
    assert!(status(&topo)["trace"].is_null());

    let mut trace = Trace::start(&topo, &["--reason", "pass_not_service", "--client", &CLIENT_IP.to_string(), "--count", "1"]);
    wait_tracing(&topo, true);
    // Port 81 is no service: the balancer passes the SYN to the LB host, which refuses it.
    // (The connection's outcome does not matter; the packet's decision does.)
    let _ = topo.client().run_in(|| TcpStream::connect_timeout(&SocketAddrV4::new(VIP, 81).into(), TIMEOUT));
    let exited = poll_until(Duration::from_secs(5), Duration::from_millis(20), || trace.child.try_wait().ok().flatten());
    let Some(code) = exited else { panic!("`fj-lb trace --count 1` did not exit after its packet: {:?}", trace.events()) };
    let stderr = trace.stderr();
    assert!(code.success(), "`fj-lb trace --count 1` exited {code}: {stderr}");
    assert!(stderr.contains(&format!("tracing packets from {CLIENT_IP}, decided pass_not_service, 1 of them")), "{stderr}");
    let events = trace.events();
    assert_eq!(events.len(), 1, "{events:#?}");
    let e = &events[0];
    assert_eq!((e["action"].as_str(), e["reason"].as_str()), (Some("pass"), Some("pass_not_service")), "{e}");
    assert_eq!(e["dst"], format!("{VIP}:81"), "{e}");
    assert!(e["backend"].is_null() && e["service"].is_null() && e["via"].is_null(), "{e}");
    assert!(e["src"].as_str().is_some_and(|s| s.starts_with(&format!("{CLIENT_IP}:"))), "{e}");

    // Its count reached, the daemon ended the trace by itself.
    wait_tracing(&topo, false);
    assert_eq!(settings_flags(&topo) & SETTINGS_TRACE, 0, "the bit is clear after --count");
    // And a reload during a trace keeps it tracing.
    let _trace = Trace::start(&topo, &["--vip", &VIP.to_string()]);
    wait_tracing(&topo, true);
    let reload = fj_lb(&topo.control_socket(), &["reload"]);
    assert!(reload.success(), "{reload:?}");
    assert_ne!(settings_flags(&topo) & SETTINGS_TRACE, 0, "a reload keeps the trace bit");
    daemon.assert_running();
}

#[test]
fn a_reload_resolves_the_filter_again_and_ends_a_trace_whose_service_is_gone() {
    require_root!();
    let (topo, mut daemon) = start();
    topo.wait_vip_answers(Duration::from_secs(10));
    let mut trace = Trace::start(&topo, &["--service", "web"]);
    wait_tracing(&topo, true);
    let config = |name: &str, port: u16| {
        Config::new(&topo.bpffs_dir(), &topo.control_socket())
            .flow_table_size(65536)
            .service(Service::new(name, port, "tcp").weighted(&[(1, 100), (2, 100), (3, 100)]))
            .render()
    };
    // web moves to port 8080: the trace follows it (the backends refuse 8080; the SYN's
    // decision is what counts).
    daemon.reload_with(&config("web", 8080));
    let moved = poll_until(Duration::from_secs(5), Duration::from_millis(20), || {
        (status(&topo)["trace"] == format!("packets service web ({VIP}:8080 tcp)")).then_some(())
    });
    assert!(moved.is_some(), "the running trace's filter still says {}", status(&topo)["trace"]);
    let mut events = Vec::new();
    let seen = poll_until(Duration::from_secs(5), Duration::from_millis(50), || {
        let _ = topo.client().run_in(|| TcpStream::connect_timeout(&SocketAddrV4::new(VIP, 8080).into(), Duration::from_millis(200)));
        events.extend(trace.events());
        events.iter().any(|e| e["dst"] == format!("{VIP}:8080") && e["service"] == "web").then_some(())
    });
    assert!(seen.is_some(), "no packet to web's new port was traced: {events:#?}");
    // web goes away: the trace ends rather than show other packets, and the bit is cleared.
    daemon.reload_with(&config("api", 8080));
    let exited = poll_until(Duration::from_secs(5), Duration::from_millis(20), || trace.child.try_wait().ok().flatten());
    assert!(exited.is_some(), "`fj-lb trace --service web` still runs after web was removed");
    wait_tracing(&topo, false);
    assert_eq!(settings_flags(&topo) & SETTINGS_TRACE, 0, "the trace ended: the bit is clear");
    daemon.assert_running();
}

/// The client's source port of an event from the client.
fn port_of(e: &Value) -> Option<u16> {
    let src = e["src"].as_str()?;
    let (ip, port) = src.rsplit_once(':')?;
    (ip == CLIENT_IP.to_string()).then(|| port.parse().ok()).flatten()
}
