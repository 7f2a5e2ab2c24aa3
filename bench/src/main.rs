//! `cargo xtask bench` (end-to-end part): fj-lb in a namespace lab, next to HAProxy in TCP mode
//! on the same LB host and to the client talking to a backend directly, with the same client,
//! the same LB host and the same nginx backends, all measured in one run:
//!
//! 1. HTTP requests/s and latency percentiles (wrk), with keep-alive and with a new connection
//!    per request, and CPU time per request on the machine and in the proxy process;
//! 2. TCP throughput (iperf3);
//! 3. packet rate of new UDP flows (`fj-lb generate`) through the balancer, next to the
//!    MAC-swap XDP_TX floor program on the same interface; and the same pipeline with every
//!    fj-lb run between two floor runs, in alternating rounds (`pipeline.rs`);
//! 4. daemon start to first request forwarded, next to `fj-lb check-config` of the same file;
//! 5. resident memory with 1,000 services, next to the same daemon with one;
//! 6. ECMP: an LB host's failure (clean stop, last backend's health lost, crash) to the
//!    router's route withdrawn, next to the bound of each (`ecmp.rs`).
//!
//! Writes `target/bench/e2e.md` and `target/bench/e2e.json` under the workspace root and prints
//! the Markdown. Reports; never fails on a number. A setup step that fails (namespaces, nginx,
//! HAProxy, the daemon not coming up) panics at once, the guards tearing the lab down; a
//! measurement whose tool fails is reported as such and makes the exit status 1 at the end.
//!
//! Needs root, `FJ_LB_BIN` (a release build of fj-lb), and wrk, haproxy, iperf3, nsenter, bird.
//! `FJ_LB_BENCH_ONLY=http,iperf,pps,pipeline,start,mem,ecmp` runs a subset (for working on this
//! file); `FJ_LB_BENCH_PIPELINE_FRAMES` and `FJ_LB_BENCH_PIPELINE_ROUNDS` shrink the pipeline
//! section for a quick check of its code.
mod ecmp;
mod pipeline;

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr, SocketAddrV4},
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::atomic::{AtomicBool, AtomicU32, Ordering},
    time::{Duration, Instant},
};

use fj_lb_tests::{
    Config, Daemon, LB_IP, Service, Topology, VIP, assert_root, backend_ip, fj_lb, fj_lb_bin, get,
    ns::{self, ChildGuard, ensure_bpffs},
    poll_until, xdp_info,
};
use serde_json::{Value, json};

/// Backends in the lab (b1..b3), each running nginx answering "bN\n".
const BACKENDS: usize = 3;
/// wrk: threads, connections, seconds per measured run.
const WRK_THREADS: u32 = 2;
const WRK_CONNECTIONS: u32 = 50;
const WRK_SECONDS: u32 = 10;
/// iperf3 seconds per path.
const IPERF_SECONDS: u32 = 5;
const IPERF_PORT: u16 = 5201;
/// HAProxy's HTTP frontend on the LB host's own address.
const HAPROXY_HTTP_PORT: u16 = 8080;
/// UDP service for the packet-rate test.
const UDP_PORT: u16 = 53;
/// Frames per generator run, and runs per path (the median by forwarded rate is reported).
const GEN_PACKETS: u64 = 1_000_000;
const GEN_TRIALS: u8 = 3;
/// The established-flow mode: the generator cycles through this many 5-tuples (on its one
/// CPU), so after the first round every frame hits the flow table.
const GEN_ESTABLISHED_FLOWS: u32 = 256;
/// Daemon start trials (median reported).
const START_TRIALS: usize = 3;
/// Services in the memory test, and the table sizes used there (for both daemons).
const MEM_SERVICES: usize = 1000;
const MEM_MAGLEV: u32 = 4099;
const MEM_FLOW_TABLE: u32 = 65536;
const READY_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Signals: Ctrl-C / SIGTERM stop the run between steps, so the guards still tear the lab down.

static STOP: AtomicBool = AtomicBool::new(false);
/// The pid of the foreground tool (wrk, iperf3, the generator) running right now, if any.
static FOREGROUND: AtomicU32 = AtomicU32::new(0);

fn install_signal_watcher() {
    let set = ns::block_stop_signals();
    std::thread::spawn(move || {
        let mut sig = 0;
        unsafe { libc::sigwait(&set, &mut sig) };
        eprintln!("fj-lb-bench-e2e: signal {sig}: stopping after the current step and cleaning up");
        STOP.store(true, Ordering::SeqCst);
        let pid = FOREGROUND.load(Ordering::SeqCst);
        if pid != 0 {
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
    });
}

fn check_stop() {
    if STOP.load(Ordering::SeqCst) {
        panic!("interrupted by a signal");
    }
}

/// Runs a short-lived tool to completion (stdin closed, a clean signal mask), recording its pid
/// so a signal can end it. `Err` names the command, its status and stderr.
fn run_tool(cmd: &mut Command) -> Result<String, String> {
    check_stop();
    let what = ns::describe(cmd);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    unsafe {
        cmd.pre_exec(|| {
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| format!("`{what}` could not be started: {e}"))?;
    FOREGROUND.store(child.id(), Ordering::SeqCst);
    let out = child.wait_with_output();
    FOREGROUND.store(0, Ordering::SeqCst);
    let out = out.map_err(|e| format!("waiting for `{what}`: {e}"))?;
    ns::output_result(&what, &out)
}

/// `ip netns exec NS ARGS...` as a foreground tool.
fn ns_exec(ns: &str, args: &[&str]) -> Result<String, String> {
    run_tool(Command::new("ip").args(["netns", "exec", ns]).args(args))
}

fn find_tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("`{name}` is not installed; install the benchmark tools: apt-get install -y wrk haproxy iperf3 (or `cargo xtask setup`)")
        })
}

// ---------------------------------------------------------------------------------------------
// CPU and memory accounting.

fn clk_tck() -> f64 {
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) as f64 }
}

/// Machine-wide busy CPU seconds so far (user + nice + system + irq + softirq + steal, summed
/// over CPUs) from the first line of /proc/stat. /proc/stat is not per namespace.
fn busy_cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").expect("reading /proc/stat");
    let line = stat.lines().next().expect("/proc/stat has a cpu line");
    let f: Vec<u64> = line.split_whitespace().skip(1).map(|x| x.parse().unwrap_or(0)).collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let busy = f[0] + f[1] + f[2] + f.get(5).copied().unwrap_or(0) + f.get(6).copied().unwrap_or(0) + f.get(7).copied().unwrap_or(0);
    busy as f64 / clk_tck()
}

/// utime + stime of a process (all its threads), seconds.
fn process_cpu_s(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / clk_tck())
}

/// A `Vm*` field of /proc/PID/status, in KiB.
fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find_map(|l| l.strip_prefix(field)?.strip_prefix(':')?.trim().strip_suffix("kB")?.trim().parse().ok())
}

/// Sum of `memlock` over the BPF maps a process holds open (from /proc/PID/fdinfo): the kernel
/// memory its maps are charged for.
fn bpf_map_memlock(pid: u32) -> (u64, usize) {
    let mut total = 0;
    let mut maps = 0;
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else { return (0, 0) };
    for e in rd.flatten() {
        let Ok(info) = std::fs::read_to_string(e.path()) else { continue };
        if !info.contains("map_type:") {
            continue;
        }
        if let Some(m) = info.lines().find_map(|l| l.strip_prefix("memlock:")?.trim().parse::<u64>().ok()) {
            total += m;
            maps += 1;
        }
    }
    (total, maps)
}

/// Resident KiB of a process's mappings of BPF maps (`anon_inode:bpf-map` in /proc/PID/smaps):
/// the part of RssFile that is the mmap'd Maglev array, not the daemon's own memory.
fn bpf_map_mmap_rss_kib(pid: u32) -> u64 {
    let Ok(smaps) = std::fs::read_to_string(format!("/proc/{pid}/smaps")) else { return 0 };
    let mut in_map = false;
    let mut total = 0;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            in_map = line.contains("bpf-map");
        } else if in_map && let Some(v) = line.strip_prefix("Rss:") {
            total += v.trim().trim_end_matches("kB").trim().parse::<u64>().unwrap_or(0);
        }
    }
    total
}

/// `ip -s -j link show dev IF` in namespace `ns`: (rx packets, rx dropped, tx packets, tx dropped).
fn link_stats(ns: &str, ifname: &str) -> (u64, u64, u64, u64) {
    let out = run_tool(Command::new("ip").args(["-n", ns, "-s", "-j", "link", "show", "dev", ifname]))
        .unwrap_or_else(|e| panic!("{e}"));
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("ip -s -j link: {e}: {out}"));
    let s = &v[0]["stats64"];
    let n = |p: &str| s.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    (n("/rx/packets"), n("/rx/dropped"), n("/tx/packets"), n("/tx/dropped"))
}

// ---------------------------------------------------------------------------------------------
// The daemon: the harness's guard, started here with a fresh bpffs dir and control socket per
// run, info logging, and its own readiness poll (finer than the harness's, and stoppable).

/// The web service: tcp/80 over b1..b3, default weights, no health checks (backends count as
/// healthy).
fn web_service() -> Service {
    Service::new("web", 80, "tcp").backends((1..=BACKENDS).map(backend_ip))
}

/// The packet-rate service: udp/53 over b1..b3.
fn dns_service() -> Service {
    Service::new("dns", UDP_PORT, "udp").backends((1..=BACKENDS).map(backend_ip))
}

/// `GET /` from the client to `addr`: `Ok` if a backend answered (200, "bN"), else the answer.
fn answered_by_backend(topo: &Topology, addr: SocketAddrV4) -> Result<(), String> {
    match topo.client().run_in(|| get(addr, "/", Duration::from_millis(500))) {
        Ok((200, body)) if body.starts_with('b') => Ok(()),
        other => Err(format!("{other:?}")),
    }
}

struct Lab {
    topo: Topology,
    bin: PathBuf,
    runs: u32,
}

impl Lab {
    /// A config on the LB's eth0 (native XDP), VIP 10.0.0.100 for every service, no metrics
    /// listener, no VRRP (the harness put the VIP on eth0), default table sizes; a bpffs dir and
    /// control socket of its own.
    fn config(&mut self, label: &str, services: &[Service]) -> Config {
        self.runs += 1;
        let n = self.runs;
        let bpffs = PathBuf::from("/sys/fs/bpf").join(format!("{}-bench{n}", self.topo.id()));
        let socket = self.topo.tmp().join(format!("{label}-{n}.sock"));
        services.iter().cloned().fold(Config::new(&bpffs, &socket), Config::service)
    }

    /// Spawns `fj-lb run` with `config` in the LB namespace, at once.
    fn spawn_daemon(&mut self, config: &Config) -> Daemon {
        check_stop();
        Daemon::spawn_on(&mut self.topo, 1, config, Some("info"))
    }

    /// Starts a daemon and waits (bounded) until XDP is on the LB's eth0 and a request through
    /// VIP:80 is answered by a backend. Panics with the daemon's log otherwise.
    fn start_daemon(&mut self, label: &str, config: &Config) -> Daemon {
        let mut d = self.spawn_daemon(config);
        let lb_ns = self.topo.lb().ns.name().to_string();
        let vip = self.topo.vip_addr();
        let mut last = String::from("XDP not attached yet");
        let ok = poll_until(READY_TIMEOUT, Duration::from_millis(20), || {
            check_stop();
            d.assert_running();
            xdp_info(&lb_ns, "eth0")?;
            answered_by_backend(&self.topo, vip).map_err(|e| last = e).ok()
        });
        if ok.is_none() {
            panic!("fj-lb ({label}) was not balancing within {READY_TIMEOUT:?} (last: {last}); its log:\n{}", d.log());
        }
        d
    }

    fn stats(&self, d: &Daemon) -> BTreeMap<String, u64> {
        let v = fj_lb(d.control_socket(), &["stats", "--json"]).json().unwrap_or_else(|e| panic!("fj-lb stats: {e}"));
        v.as_object()
            .unwrap_or_else(|| panic!("fj-lb stats --json is not an object: {v}"))
            .iter()
            .map(|(k, n)| (k.clone(), n.as_u64().unwrap_or(0)))
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// 1. HTTP with wrk.

#[derive(Debug, Clone, Default)]
struct Wrk {
    requests: u64,
    seconds: f64,
    rps: f64,
    p50_ms: f64,
    p75_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    socket_errors: u64,
    socket_errors_text: String,
    non_2xx: u64,
}

/// "1.23ms" / "456.00us" / "1.01s" / "2.00m" → milliseconds.
fn parse_duration_ms(s: &str) -> Option<f64> {
    let (num, unit) = s.find(|c: char| c.is_ascii_alphabetic()).map(|i| s.split_at(i))?;
    let v: f64 = num.parse().ok()?;
    Some(match unit {
        "us" => v / 1e3,
        "ms" => v,
        "s" => v * 1e3,
        "m" => v * 60e3,
        "h" => v * 3600e3,
        _ => return None,
    })
}

fn parse_wrk(out: &str) -> Result<Wrk, String> {
    let mut w = Wrk::default();
    let mut got = (false, false, false);
    for line in out.lines() {
        let t = line.trim();
        let mut it = t.split_whitespace();
        if let (Some(p @ ("50%" | "75%" | "90%" | "99%")), Some(d)) = (it.next(), it.next()) {
            let ms = parse_duration_ms(d).ok_or_else(|| format!("wrk: cannot read {t:?}"))?;
            match p {
                "50%" => w.p50_ms = ms,
                "75%" => w.p75_ms = ms,
                "90%" => w.p90_ms = ms,
                _ => {
                    w.p99_ms = ms;
                    got.2 = true;
                }
            }
        }
        if let Some(rest) = t.strip_suffix(" read").and_then(|r| r.split_once(" requests in ")) {
            w.requests = rest.0.trim().parse().map_err(|_| format!("wrk: cannot read {t:?}"))?;
            let secs = rest.1.split(',').next().unwrap_or("");
            w.seconds = parse_duration_ms(secs.trim()).ok_or_else(|| format!("wrk: cannot read {t:?}"))? / 1e3;
            got.0 = true;
        }
        if let Some(r) = t.strip_prefix("Requests/sec:") {
            w.rps = r.trim().parse().map_err(|_| format!("wrk: cannot read {t:?}"))?;
            got.1 = true;
        }
        if let Some(r) = t.strip_prefix("Socket errors:") {
            w.socket_errors_text = r.trim().to_string();
            w.socket_errors = r.split(',').filter_map(|p| p.split_whitespace().nth(1)?.parse::<u64>().ok()).sum();
        }
        if let Some(r) = t.strip_prefix("Non-2xx or 3xx responses:") {
            w.non_2xx = r.trim().parse().unwrap_or(0);
        }
    }
    if got != (true, true, true) {
        return Err(format!("wrk printed no complete summary:\n{out}"));
    }
    Ok(w)
}

#[derive(Debug, Clone)]
struct HttpRun {
    wrk: Result<Wrk, String>,
    wall_s: f64,
    busy_cpu_s: f64,
    /// utime+stime of the proxy process over the run (HAProxy, or the fj-lb daemon).
    proc_cpu_s: Option<f64>,
}

fn run_wrk(client_ns: &str, addr: SocketAddrV4, close: bool, seconds: u32, proc: Option<u32>) -> HttpRun {
    let url = format!("http://{addr}/");
    let (t, c, d) = (format!("-t{WRK_THREADS}"), format!("-c{WRK_CONNECTIONS}"), format!("-d{seconds}s"));
    let mut args = vec!["wrk", &t, &c, &d, "--latency"];
    if close {
        args.extend(["-H", "Connection: close"]);
    }
    args.push(&url);
    let p0 = proc.and_then(process_cpu_s);
    let b0 = busy_cpu_s();
    let t0 = Instant::now();
    let out = ns_exec(client_ns, &args);
    let wall_s = t0.elapsed().as_secs_f64();
    let busy = busy_cpu_s() - b0;
    let proc_cpu_s = match (p0, proc.and_then(process_cpu_s)) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    HttpRun { wrk: out.and_then(|o| parse_wrk(&o)), wall_s, busy_cpu_s: busy, proc_cpu_s }
}

// ---------------------------------------------------------------------------------------------
// 2. iperf3.

#[derive(Debug, Clone)]
struct Iperf {
    gbit_s: f64,
    retransmits: u64,
}

fn run_iperf(client_ns: &str, addr: Ipv4Addr, port: u16) -> Result<Iperf, String> {
    let (a, p, t) = (addr.to_string(), port.to_string(), IPERF_SECONDS.to_string());
    let out = ns_exec(client_ns, &["iperf3", "-c", &a, "-p", &p, "-t", &t, "-J", "--connect-timeout", "3000"]);
    let text = match out {
        Ok(o) => o,
        Err(e) => return Err(e.lines().take(6).collect::<Vec<_>>().join(" ")),
    };
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("iperf3 -J printed no JSON ({e})"))?;
    if let Some(e) = v.get("error").and_then(Value::as_str) {
        return Err(format!("iperf3: {e}"));
    }
    let bps = v.pointer("/end/sum_received/bits_per_second").and_then(Value::as_f64).ok_or("iperf3: no end.sum_received")?;
    let retransmits = v.pointer("/end/sum_sent/retransmits").and_then(Value::as_u64).unwrap_or(0);
    Ok(Iperf { gbit_s: bps / 1e9, retransmits })
}

// ---------------------------------------------------------------------------------------------
// 3. Packet rate.

#[derive(Debug, Clone, Default)]
struct Gen {
    packets: u64,
    seconds: f64,
    packets_per_s: f64,
}

#[allow(clippy::too_many_arguments)] // the generator's command line
fn generate(lab: &Lab, client_ns: &str, dst_mac: &str, src_mac: &str, src: IpAddr, dst: IpAddr, port: u16, packets: u64, flows: u32) -> Result<Gen, String> {
    let out = run_tool(
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{client_ns}"))
            .arg("--")
            .args(gen_pin())
            .arg(&lab.bin)
            .args(["generate", "--interface", "eth0", "--src-mac", src_mac, "--dst-mac", dst_mac])
            .args(["--src", &src.to_string(), "--dst", &dst.to_string(), "--port", &port.to_string()])
            .args(["--packets", &packets.to_string(), "--flows", &flows.to_string()])
            .env("NO_COLOR", "1"),
    )?;
    let line = out.lines().rev().find(|l| l.trim_start().starts_with('{')).ok_or_else(|| format!("generate printed {out:?}"))?;
    let v: Value = serde_json::from_str(line).map_err(|e| format!("generate printed {line:?}: {e}"))?;
    Ok(Gen {
        packets: v["packets"].as_u64().unwrap_or(0),
        seconds: v["seconds"].as_f64().unwrap_or(0.0),
        packets_per_s: v["packets_per_s"].as_f64().unwrap_or(0.0),
    })
}

#[derive(Debug, Clone, Default)]
struct PpsRun {
    tx: Gen,
    /// Frames the client's bridge port received from the generator (reached the switch).
    bridge_rx: u64,
    /// Frames the LB's eth0 received (veth rx = frames its XDP program saw).
    lb_rx: u64,
    lb_rx_dropped: u64,
    /// fj-lb only: forwarded, drops (drop_* + flow_insert_failed), passes (pass_*).
    forwarded: Option<u64>,
    dropped: Option<u64>,
    passed: Option<u64>,
    counters: BTreeMap<String, u64>,
    /// The kernel's own time for the LB's XDP program over the run (`kernel.bpf_stats_enabled`):
    /// run_time_ns / run_cnt deltas, ns a packet.
    bpf_ns_per_run: Option<f64>,
}

/// run_time_ns and run_cnt of BPF program `id` (`bpftool prog show --json`; counted while
/// `kernel.bpf_stats_enabled` is 1).
fn bpf_prog_stats(id: u64) -> Option<(u64, u64)> {
    let out = Command::new("bpftool").args(["prog", "show", "id", &id.to_string(), "--json"]).output().ok()?;
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    // bpftool leaves both out while they are 0.
    let field = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    v.get("id")?;
    Some((field("run_time_ns"), field("run_cnt")))
}

fn counters_delta(a: &BTreeMap<String, u64>, b: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    b.iter().map(|(k, v)| (k.clone(), v.saturating_sub(a.get(k).copied().unwrap_or(0)))).filter(|(_, v)| *v > 0).collect()
}

/// `taskset -c 0` unless FJ_LB_BENCH_GEN_UNPINNED is set (see the packet-rate section).
fn gen_pin() -> Vec<String> {
    if std::env::var_os("FJ_LB_BENCH_GEN_UNPINNED").is_some() { vec![] } else { vec!["taskset".into(), "-c".into(), "0".into()] }
}

/// One generator run. `trial` picks the template's source address, 10.0.<trial>.2, so that each
/// trial's 5-tuples are new to the flow table.
fn pps_run(lab: &Lab, daemon: Option<&Daemon>, trial: u8, flows: u32) -> Result<PpsRun, String> {
    let topo = &lab.topo;
    let lb_ns = topo.lb().ns.name();
    let sw = topo.switch().name();
    let client_port = &topo.client().port;
    let (lb_mac, client_mac) = (topo.lb().mac(), topo.client().mac());
    let s0 = daemon.map(|d| lab.stats(d));
    let br0 = link_stats(sw, client_port);
    let lb0 = link_stats(lb_ns, "eth0");
    let src = Ipv4Addr::new(10, 0, trial, 2);
    let prog = xdp_info(lb_ns, "eth0").and_then(|x| x.prog_id);
    let k0 = prog.and_then(bpf_prog_stats);
    let tx = generate(lab, topo.client().ns.name(), &lb_mac, &client_mac, src.into(), VIP.into(), UDP_PORT, GEN_PACKETS, flows)?;
    // Let the queues drain before reading the counters (the generator returns once it queued
    // the last frame).
    std::thread::sleep(Duration::from_millis(300));
    let br1 = link_stats(sw, client_port);
    let lb1 = link_stats(lb_ns, "eth0");
    let k1 = prog.and_then(bpf_prog_stats);
    let mut r = PpsRun { tx, bridge_rx: br1.0 - br0.0, lb_rx: lb1.0 - lb0.0, lb_rx_dropped: lb1.1 - lb0.1, ..Default::default() };
    if let (Some((t0, c0)), Some((t1, c1))) = (k0, k1)
        && c1 > c0
    {
        r.bpf_ns_per_run = Some((t1 - t0) as f64 / (c1 - c0) as f64);
    }
    if let (Some(d), Some(s0)) = (daemon, s0) {
        let delta = counters_delta(&s0, &lab.stats(d));
        let sum = |f: &dyn Fn(&str) -> bool| delta.iter().filter(|(k, _)| f(k)).map(|(_, v)| *v).sum::<u64>();
        r.forwarded = Some(delta.get("forwarded").copied().unwrap_or(0));
        r.dropped = Some(sum(&|k| k.starts_with("drop_") || k == "flow_insert_failed"));
        r.passed = Some(sum(&|k| k.starts_with("pass_")));
        r.counters = delta;
    }
    Ok(r)
}

impl PpsRun {
    /// What went through: fj-lb's `forwarded`, or for the floor what its eth0 received.
    fn forwarded_per_s(&self) -> f64 {
        self.forwarded.unwrap_or(self.lb_rx) as f64 / self.tx.seconds
    }
}

/// [`GEN_TRIALS`] runs; the median one by forwarded rate, and every trial's forwarded Mpps.
fn pps_trials(lab: &Lab, daemon: Option<&Daemon>, flows: u32) -> Result<(PpsRun, Vec<f64>), String> {
    let mut runs = Vec::new();
    for t in 0..GEN_TRIALS {
        check_stop();
        runs.push(pps_run(lab, daemon, t, flows)?);
    }
    let rates: Vec<f64> = runs.iter().map(|r| r.forwarded_per_s() / 1e6).collect();
    runs.sort_by(|a, b| a.forwarded_per_s().partial_cmp(&b.forwarded_per_s()).unwrap());
    Ok((runs.swap_remove(runs.len() / 2), rates))
}

// ---------------------------------------------------------------------------------------------
// HAProxy and iperf3 servers.

/// As many connections as the file-descriptor limit HAProxy inherits allows (two descriptors
/// each), at most 50,000: far above the benchmark's 50 concurrent connections.
fn haproxy_maxconn() -> u64 {
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 { lim.rlim_max as u64 } else { 4096 };
    (soft.saturating_sub(200) / 2).clamp(1000, 50_000)
}

fn haproxy_config(dir: &Path) -> String {
    let maxconn = haproxy_maxconn();
    let mut s = format!(
        "# HAProxy for the fj-lb end-to-end benchmark: TCP mode on the LB host\n\
         global\n    maxconn {maxconn}\n    pidfile {}/haproxy.pid\n\
         defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 60s\n    timeout server 60s\n    maxconn {maxconn}\n\
         listen web\n    bind {LB_IP}:{HAPROXY_HTTP_PORT}\n    balance roundrobin\n",
        dir.display()
    );
    for i in 1..=BACKENDS {
        writeln!(s, "    server b{i} {}:80", backend_ip(i)).unwrap();
    }
    // iperf3 opens a control and a data connection that must reach the same server: one backend.
    write!(s, "listen iperf\n    bind {LB_IP}:{IPERF_PORT}\n    server b1 {}:{IPERF_PORT}\n", backend_ip(1)).unwrap();
    s
}

fn start_haproxy(topo: &Topology, haproxy: &Path) -> ChildGuard {
    let dir = topo.tmp().join("haproxy");
    std::fs::create_dir_all(&dir).expect("creating the haproxy dir");
    let conf = dir.join("haproxy.cfg");
    std::fs::write(&conf, haproxy_config(&dir)).expect("writing haproxy.cfg");
    if let Err(e) = run_tool(Command::new(haproxy).arg("-c").arg("-f").arg(&conf)) {
        panic!("HAProxy refuses its config: {e}");
    }
    let mut cmd = Command::new(haproxy);
    cmd.arg("-db").arg("-f").arg(&conf);
    let mut child = topo.lb().ns.spawn_command("haproxy", cmd, &dir.join("haproxy.log"));
    let addr = SocketAddrV4::new(LB_IP, HAPROXY_HTTP_PORT);
    let mut last = String::new();
    let ok = poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
        check_stop();
        child.assert_running();
        answered_by_backend(topo, addr).map_err(|e| last = e).ok()
    });
    if ok.is_none() {
        panic!("HAProxy did not answer on {addr} within 10 s (last: {last}); its log:\n{}", child.log());
    }
    child
}

fn start_iperf_servers(topo: &Topology, iperf3: &Path) -> Vec<ChildGuard> {
    let b1 = topo.backend(1);
    let mut servers = Vec::new();
    for addr in [b1.ip, VIP] {
        let mut cmd = Command::new(iperf3);
        cmd.args(["-s", "-B", &addr.to_string(), "-p", &IPERF_PORT.to_string()]);
        servers.push(b1.ns.spawn_command(&format!("iperf3 -s on {addr}"), cmd, &topo.tmp().join(format!("iperf3-{addr}.log"))));
    }
    let want = [format!("{}:{IPERF_PORT}", b1.ip), format!("{VIP}:{IPERF_PORT}")];
    let ok = poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
        check_stop();
        for s in servers.iter_mut() {
            s.assert_running();
        }
        let out = ns_exec(b1.ns.name(), &["ss", "-Hltn"]).ok()?;
        want.iter().all(|w| out.split_whitespace().any(|x| x == w)).then_some(())
    });
    if ok.is_none() {
        panic!("iperf3 servers did not listen on {want:?} in b1 within 10 s");
    }
    servers
}

// ---------------------------------------------------------------------------------------------
// Report.

/// The daemon's memory, from /proc/PID/status and fdinfo.
#[derive(Debug, Clone, Copy)]
struct Mem {
    services: usize,
    rss_kib: u64,
    hwm_kib: u64,
    anon_kib: u64,
    file_kib: u64,
    shmem_kib: u64,
    /// Resident KiB of mmap'd BPF maps (inside RssFile).
    map_mmap_kib: u64,
    memlock: u64,
    maps: usize,
}

struct Report {
    md: String,
    json: serde_json::Map<String, Value>,
    failures: Vec<String>,
}

impl Report {
    fn section(&mut self, title: &str, intro: &str) {
        write!(self.md, "\n## {title}\n\n{intro}\n\n").unwrap();
    }
    fn table(&mut self, head: &[&str], rows: &[Vec<String>]) {
        writeln!(self.md, "| {} |", head.join(" | ")).unwrap();
        writeln!(self.md, "|{}|", head.iter().map(|_| " --- ").collect::<Vec<_>>().join("|")).unwrap();
        for r in rows {
            writeln!(self.md, "| {} |", r.join(" | ")).unwrap();
        }
        self.md.push('\n');
    }
    fn para(&mut self, text: &str) {
        writeln!(self.md, "{text}\n").unwrap();
    }
    fn put(&mut self, key: &str, v: Value) {
        self.json.insert(key.into(), v);
    }
    fn fail(&mut self, what: &str, e: &str) -> String {
        let msg = format!("{what}: {e}");
        eprintln!("fj-lb-bench-e2e: measurement failed: {msg}");
        self.failures.push(msg);
        let short: String = e.chars().take(120).collect();
        format!("failed: {}", short.replace('|', "/").replace('\n', " "))
    }
}

fn f(v: f64, prec: usize) -> String {
    if v.is_finite() { format!("{v:.prec$}") } else { "—".into() }
}

fn ratio(v: f64, base: f64) -> String {
    if base != 0.0 && v.is_finite() && base.is_finite() { format!("{:.2}×", v / base) } else { "—".into() }
}

fn ratio_v(v: f64, base: f64) -> Value {
    if base != 0.0 && v.is_finite() && base.is_finite() { json!(v / base) } else { Value::Null }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if v.is_empty() { f64::NAN } else { v[v.len() / 2] }
}

fn tool_version(cmd: &[&str]) -> String {
    Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .map(|o| {
            let s = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
            s.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------

const PATHS: [(&str, &str); 3] = [("direct", "client → b1 directly"), ("haproxy", "HAProxy (TCP mode) on the LB"), ("fj_lb", "fj-lb (VIP, DSR)")];

fn wants(only: &Option<Vec<String>>, part: &str) -> bool {
    only.as_ref().is_none_or(|o| o.iter().any(|p| p == part))
}

fn main() {
    assert_root();
    install_signal_watcher();
    let only: Option<Vec<String>> =
        std::env::var("FJ_LB_BENCH_ONLY").ok().map(|s| s.split(',').map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect());
    let started = Instant::now();
    let bin = fj_lb_bin();
    find_tool("wrk");
    let haproxy = find_tool("haproxy");
    let iperf3 = find_tool("iperf3");
    find_tool("nsenter");
    find_tool("ss");
    ensure_bpffs();

    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the tests crate sits in the workspace").to_path_buf();
    let out_dir = workspace.join("target/bench");
    std::fs::create_dir_all(&out_dir).unwrap_or_else(|e| panic!("creating {}: {e}", out_dir.display()));

    let mut r = Report { md: String::from("# fj-lb end to end\n"), json: Default::default(), failures: Vec::new() };
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let versions = json!({
        "wrk": tool_version(&["wrk", "-v"]),
        "haproxy": tool_version(&["haproxy", "-v"]),
        "iperf3": tool_version(&["iperf3", "--version"]),
        "nginx": tool_version(&["nginx", "-v"]),
    });

    // What else runs on the machine: busy CPU over one idle second, and other harness labs.
    let foreign_ns = |own: Option<&str>| -> usize {
        std::fs::read_dir("/run/netns")
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| n.starts_with("fjt-") && own.is_none_or(|o| !n.starts_with(o)))
                    .count()
            })
            .unwrap_or(0)
    };
    let idle_busy = {
        let b0 = busy_cpu_s();
        std::thread::sleep(Duration::from_secs(1));
        busy_cpu_s() - b0
    };
    let foreign_before = foreign_ns(None);
    eprintln!("fj-lb-bench-e2e: building the lab (client, lb, {BACKENDS} nginx backends)");
    // IPv6 too for the pipeline's IPv6 mode (addresses only: every other part uses IPv4).
    let mut topo = Topology::builder().backends(BACKENDS).ipv6(wants(&only, "pipeline")).build();
    // XDP_TX out of a veth is delivered only if the peer has an XDP program: pass-through on
    // every bridge port, for the whole run (every path, direct included, crosses these ports).
    topo.start_xdp_pass(&bin);
    let client_ns = topo.client().ns.name().to_string();
    let lb_ns = topo.lb().ns.name().to_string();
    // The bridge stands in for a switch, which runs no firewall. Where the kernel has
    // br_netfilter, a new bridge calls iptables for every frame (per-namespace default 1), which
    // costs CPU on every path and validates IPv4 headers: it drops the generator's frames (see
    // the packet-rate section). Off, in this lab's switch namespace only.
    let mut br_nf_was_on = false;
    for t in ["iptables", "ip6tables", "arptables"] {
        let key = format!("net.bridge.bridge-nf-call-{t}");
        if let Ok(v) = ns_exec(topo.switch().name(), &["sysctl", "-n", &key]) {
            br_nf_was_on |= v.trim() == "1";
            topo.switch().sysctl(&key, "0");
        }
    }
    // Many short connections: a wide port range and TIME_WAIT reuse where connections start.
    for h in [topo.client(), topo.lb()] {
        h.ns.sysctl("net.ipv4.ip_local_port_range", "1024 65535");
        h.ns.sysctl("net.ipv4.tcp_tw_reuse", "1");
    }
    let mut lab = Lab { topo, bin: bin.clone(), runs: 0 };

    write!(
        r.md,
        "\nOne run on {cpus} CPUs, kernel {kernel}; lab: client 10.0.0.2, LB 10.0.0.10 (VIP {VIP} on its eth0), \
         {BACKENDS} nginx backends 10.0.0.11–13 (one worker each, body \"bN\\n\", VIP on lo for DSR), all in network \
         namespaces joined by veth pairs and a bridge; fj-lb attaches in native XDP on the LB's veth, and a pass-through \
         XDP program sits on every bridge port for every case.{} Tools: {}; {}; {}. Each figure is next to its \
         baseline from this same run and the ratio.\n",
        if br_nf_was_on {
            " The kernel has br_netfilter: the switch namespace's `net.bridge.bridge-nf-call-{iptables,ip6tables,arptables}` \
             are set to 0 for this run (a switch runs no firewall; on, it costs CPU on every path and drops the \
             generator's frames, see the packet-rate section)."
        } else {
            ""
        },
        versions["wrk"].as_str().unwrap_or("wrk"),
        versions["haproxy"].as_str().unwrap_or("haproxy"),
        versions["iperf3"].as_str().unwrap_or("iperf3"),
    )
    .unwrap();
    write!(
        r.md,
        "\nBackground load: {} CPU-seconds busy over one idle second before the run; {} network namespaces of other \
         fj-lb test runs existed at the start{}. Busy CPU is machine-wide, so anything else running shows in the CPU \
         figures.\n",
        f(idle_busy, 2),
        foreign_before,
        if foreign_before > 0 { " (concurrent test runs share the CPUs: treat the numbers with care)" } else { "" },
    )
    .unwrap();
    r.put("environment", json!({"idle_busy_cpu_s_per_s": idle_busy, "other_harness_namespaces_at_start": foreign_before, "cpus": cpus, "kernel": kernel, "tools": versions, "backends": BACKENDS, "switch_bridge_nf_call_iptables_turned_off": br_nf_was_on,
        "generator_pinned_cpu0": !gen_pin().is_empty()}));

    let iperf_servers = if wants(&only, "iperf") { start_iperf_servers(&lab.topo, &iperf3) } else { Vec::new() };

    // ---- Phase A: direct and HAProxy (no fj-lb daemon running) ----
    let b1 = SocketAddrV4::new(backend_ip(1), 80);
    let hap_addr = SocketAddrV4::new(LB_IP, HAPROXY_HTTP_PORT);
    let vip = lab.topo.vip_addr();
    // http[mode][path]
    let mut http: BTreeMap<(&str, &str), HttpRun> = BTreeMap::new();
    let mut iperf: BTreeMap<&str, Result<Iperf, String>> = BTreeMap::new();
    let modes = [("keepalive", false), ("close", true)];
    if wants(&only, "http") || wants(&only, "iperf") {
        let mut hap = start_haproxy(&lab.topo, &haproxy);
        let hap_pid = hap.pid();
        if wants(&only, "http") {
            for (path, addr, pid) in [("direct", b1, None), ("haproxy", hap_addr, Some(hap_pid))] {
                eprintln!("fj-lb-bench-e2e: wrk warm-up, {path}");
                let _ = run_wrk(&client_ns, addr, false, 1, None);
                for (mode, close) in modes {
                    eprintln!("fj-lb-bench-e2e: wrk {WRK_SECONDS} s, {path}, {mode}");
                    http.insert((mode, path), run_wrk(&client_ns, addr, close, WRK_SECONDS, pid));
                }
            }
        }
        if wants(&only, "iperf") {
            eprintln!("fj-lb-bench-e2e: iperf3 direct and through HAProxy");
            iperf.insert("direct", run_iperf(&client_ns, backend_ip(1), IPERF_PORT));
            iperf.insert("haproxy", run_iperf(&client_ns, LB_IP, IPERF_PORT));
        }
        hap.assert_running();
        hap.stop(Duration::from_secs(5));
    }

    // ---- Phase B: fj-lb ----
    let mut pps_lb: Option<Result<(PpsRun, Vec<f64>), String>> = None;
    let mut pps_lb_est: Option<Result<(PpsRun, Vec<f64>), String>> = None;
    let mut pps_floor: Option<Result<(PpsRun, Vec<f64>), String>> = None;
    let mut lb_services_note = String::new();
    if wants(&only, "http") || wants(&only, "iperf") || wants(&only, "pps") {
        let services = [
            web_service(),
            Service::new("iperf", IPERF_PORT, "tcp").backends([backend_ip(1)]),
            dns_service(),
        ];
        lb_services_note = "web (tcp/80 → b1..b3), iperf (tcp/5201 → b1), dns (udp/53 → b1..b3), default table sizes".into();
        eprintln!("fj-lb-bench-e2e: starting fj-lb");
        let config = lab.config("perf", &services);
        let d = lab.start_daemon("perf", &config);
        if wants(&only, "http") {
            eprintln!("fj-lb-bench-e2e: wrk warm-up, fj-lb");
            let _ = run_wrk(&client_ns, vip, false, 1, None);
            for (mode, close) in modes {
                eprintln!("fj-lb-bench-e2e: wrk {WRK_SECONDS} s, fj-lb, {mode}");
                http.insert((mode, "fj_lb"), run_wrk(&client_ns, vip, close, WRK_SECONDS, Some(d.pid())));
            }
        }
        if wants(&only, "iperf") {
            eprintln!("fj-lb-bench-e2e: iperf3 through fj-lb");
            iperf.insert("fj_lb", run_iperf(&client_ns, VIP, IPERF_PORT));
        }
        if wants(&only, "pps") {
            eprintln!("fj-lb-bench-e2e: packet rate through fj-lb ({GEN_TRIALS} × {GEN_PACKETS} frames)");
            // The kernel's per-program run time, as a cross-check of the rates.
            let _ = std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "1");
            pps_lb = Some(pps_trials(&lab, Some(&d), 0));
            eprintln!("fj-lb-bench-e2e: packet rate through fj-lb, established flows ({GEN_ESTABLISHED_FLOWS} 5-tuples cycled)");
            pps_lb_est = Some(pps_trials(&lab, Some(&d), GEN_ESTABLISHED_FLOWS));
        }
        drop(d);
        if wants(&only, "pps") {
            check_stop();
            eprintln!("fj-lb-bench-e2e: packet rate through the floor program ({GEN_TRIALS} × {GEN_PACKETS} frames)");
            let mut cmd = Command::new(&lab.bin);
            cmd.args(["xdp-pass", "--interface", "eth0", "--floor"]).env("NO_COLOR", "1");
            let mut floor = lab.topo.lb().ns.spawn_command("fj-lb xdp-pass --floor", cmd, &lab.topo.tmp().join("floor.log"));
            let ok = poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
                floor.assert_running();
                xdp_info(&lb_ns, "eth0").and_then(|x| x.prog_id)
            });
            if ok.is_none() {
                panic!("the floor program did not attach to the LB's eth0 within 10 s; its log:\n{}", floor.log());
            }
            pps_floor = Some(pps_trials(&lab, None, 0));
            let _ = std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "0");
            floor.stop(Duration::from_secs(5));
            // The XDP program goes with its process; wait until eth0 is bare again.
            let gone = poll_until(Duration::from_secs(10), Duration::from_millis(20), || xdp_info(&lb_ns, "eth0").is_none().then_some(()));
            if gone.is_none() {
                panic!("the floor program still sits on the LB's eth0 10 s after its process ended");
            }
        }
    }

    // ---- 3b. The pipeline, sandwiched: a daemon of its own (the new-flow cap lifted) ----
    let pipeline_result = wants(&only, "pipeline").then(|| {
        eprintln!("fj-lb-bench-e2e: pipeline packet rate, fj-lb between floor runs");
        pipeline::measure(&mut lab)
    });

    // ---- 4. Daemon start to first forwarded request ----
    let mut start_ms: Vec<f64> = Vec::new();
    let mut check_ms: Vec<f64> = Vec::new();
    if wants(&only, "start") {
        // The same config every trial but for a fresh bpffs dir and socket; check-config reads
        // the last one.
        let mut config = lab.config("start", &[web_service()]);
        for trial in 0..START_TRIALS {
            check_stop();
            eprintln!("fj-lb-bench-e2e: start trial {}", trial + 1);
            config = lab.config("start", &[web_service()]);
            // From the guard's spawn: it writes the config file into the daemon's own
            // directory first (microseconds), then starts the process.
            let t0 = Instant::now();
            let mut d = lab.spawn_daemon(&config);
            let elapsed = lab.topo.client().run_in(|| {
                let deadline = t0 + READY_TIMEOUT;
                loop {
                    if STOP.load(Ordering::SeqCst) {
                        return None;
                    }
                    if let Some(s) = d.try_status() {
                        panic!("fj-lb exited ({s}) before forwarding; its log:\n{}", d.log());
                    }
                    if let Ok((200, body)) = get(vip, "/", Duration::from_millis(200))
                        && body.starts_with('b')
                    {
                        return Some(t0.elapsed());
                    }
                    if Instant::now() >= deadline {
                        return None;
                    }
                    std::thread::sleep(Duration::from_micros(500));
                }
            });
            check_stop();
            let Some(elapsed) = elapsed else {
                panic!("fj-lb did not forward a request within {READY_TIMEOUT:?} of its start; its log:\n{}", d.log());
            };
            start_ms.push(elapsed.as_secs_f64() * 1e3);
            drop(d);
        }
        let conf = lab.topo.tmp().join("check-config.toml");
        std::fs::write(&conf, config.render()).expect("writing the check-config config");
        for _ in 0..START_TRIALS {
            check_stop();
            let mut cmd = Command::new(&lab.bin);
            cmd.arg("check-config").arg("--config").arg(&conf).env("NO_COLOR", "1");
            let t0 = Instant::now();
            let mut c = lab.topo.lb().ns.spawn_command("fj-lb check-config", cmd, &lab.topo.tmp().join("check-config.log"));
            let status = poll_until(Duration::from_secs(10), Duration::from_micros(200), || c.try_status());
            let elapsed = t0.elapsed();
            match status {
                Some(s) if s.success() => check_ms.push(elapsed.as_secs_f64() * 1e3),
                Some(s) => panic!("fj-lb check-config exited {s}; its log:\n{}", c.log()),
                None => panic!("fj-lb check-config still runs after 10 s"),
            }
        }
    }

    // ---- 5. Memory ----
    let mut mem: Vec<Mem> = Vec::new();
    if wants(&only, "mem") {
        for n in [1, MEM_SERVICES] {
            check_stop();
            eprintln!("fj-lb-bench-e2e: memory with {n} service(s)");
            let services: Vec<Service> = (0..n)
                .map(|i| {
                    if i == 0 {
                        Service::new("web", 80, "tcp").backends([backend_ip(1), backend_ip(2)])
                    } else {
                        Service::new(&format!("s{i}"), 20000 + i as u16, "tcp")
                            .backends([backend_ip(1 + i % BACKENDS), backend_ip(1 + (i + 1) % BACKENDS)])
                    }
                })
                .collect();
            let label = format!("mem{n}");
            let config = lab
                .config(&label, &services)
                .flow_table_size(MEM_FLOW_TABLE)
                .maglev_table_size(MEM_MAGLEV)
                .max_services(MEM_SERVICES as u32)
                .max_backends(4096);
            let d = lab.start_daemon(&label, &config);
            // Balancing (a request went through); let its background tasks settle.
            std::thread::sleep(Duration::from_secs(1));
            let pid = d.pid();
            let k = |field: &str| proc_status_kib(pid, field).unwrap_or_else(|| panic!("no {field} for fj-lb pid {pid}"));
            let (memlock, maps) = bpf_map_memlock(pid);
            mem.push(Mem {
                services: n,
                rss_kib: k("VmRSS"),
                hwm_kib: k("VmHWM"),
                anon_kib: k("RssAnon"),
                file_kib: k("RssFile"),
                shmem_kib: k("RssShmem"),
                map_mmap_kib: bpf_map_mmap_rss_kib(pid),
                memlock,
                maps,
            });
            drop(d);
        }
    }

    drop(iperf_servers);
    let topo_id = lab.topo.id().to_string();
    let foreign_after = foreign_ns(Some(&topo_id));
    drop(lab);

    // ---- 6. ECMP withdrawal, in a lab of its own (router, three LB hosts) ----
    let ecmp_result = wants(&only, "ecmp").then(|| {
        eprintln!("fj-lb-bench-e2e: ECMP lab: failure to withdrawal");
        ecmp::measure()
    });

    // ------------------------------------------------------------------------------------------
    // Report.
    if wants(&only, "http") {
        r.section(
            "HTTP through each path",
            &format!(
                "wrk `-t{WRK_THREADS} -c{WRK_CONNECTIONS} -d{WRK_SECONDS}s --latency` from the client namespace, GET / (a 3-byte body). \
                 Paths: the client straight to one backend (b1, one nginx worker), HAProxy 2.x in TCP mode on the LB host \
                 (`{LB_IP}:{HAPROXY_HTTP_PORT}`, `balance roundrobin` over b1–b3, maxconn {}, default threads, no fj-lb attached), and fj-lb on the VIP \
                 (DSR over b1–b3). \"close\" sends `Connection: close`: a new TCP connection, hence a new flow, per request. \
                 Ratios are against the direct path of the same mode. Note the direct path has one nginx worker behind it \
                 while both balancers spread over three, on a machine where client, LB and backends share {cpus} CPUs.",
                haproxy_maxconn()
            ),
        );
        let mut rows = Vec::new();
        let mut j = serde_json::Map::new();
        for (mode, _) in modes {
            let base = http.get(&(mode, "direct")).and_then(|h| h.wrk.as_ref().ok()).cloned();
            let mut jm = serde_json::Map::new();
            for (path, label) in PATHS {
                let Some(h) = http.get(&(mode, path)) else { continue };
                match &h.wrk {
                    Ok(w) => {
                        let b = base.clone().unwrap_or_default();
                        let errs = if w.socket_errors + w.non_2xx > 0 {
                            format!("{} ({}; non-2xx {})", w.socket_errors + w.non_2xx, w.socket_errors_text, w.non_2xx)
                        } else {
                            "0".into()
                        };
                        rows.push(vec![
                            mode.into(),
                            label.into(),
                            format!("{} ({})", f(w.rps, 0), ratio(w.rps, b.rps)),
                            format!("{} ({})", f(w.p50_ms, 3), ratio(w.p50_ms, b.p50_ms)),
                            format!("{} ({})", f(w.p90_ms, 3), ratio(w.p90_ms, b.p90_ms)),
                            format!("{} ({})", f(w.p99_ms, 3), ratio(w.p99_ms, b.p99_ms)),
                            errs,
                        ]);
                        jm.insert(
                            path.into(),
                            json!({
                                "requests": w.requests, "seconds": w.seconds, "requests_per_s": w.rps,
                                "latency_ms": {"p50": w.p50_ms, "p75": w.p75_ms, "p90": w.p90_ms, "p99": w.p99_ms},
                                "socket_errors": w.socket_errors, "socket_errors_detail": w.socket_errors_text, "non_2xx": w.non_2xx,
                                "ratio_vs_direct": {"requests_per_s": ratio_v(w.rps, b.rps), "p50": ratio_v(w.p50_ms, b.p50_ms),
                                    "p90": ratio_v(w.p90_ms, b.p90_ms), "p99": ratio_v(w.p99_ms, b.p99_ms)},
                            }),
                        );
                    }
                    Err(e) => {
                        let cell = r.fail(&format!("wrk {mode} {path}"), e);
                        rows.push(vec![mode.into(), label.into(), cell, "".into(), "".into(), "".into(), "".into()]);
                        jm.insert(path.into(), json!({"error": e}));
                    }
                }
            }
            j.insert(mode.into(), Value::Object(jm));
        }
        r.table(&["mode", "path", "requests/s (vs direct)", "p50 ms", "p90 ms", "p99 ms", "errors"], &rows);
        r.put("http", Value::Object(j));

        r.section(
            "CPU per request",
            "Busy CPU is machine-wide: user + nice + system + irq + softirq + steal from /proc/stat over the wrk run, \
             summed over CPUs. It includes wrk, nginx, the kernel's TCP stacks in every namespace, the bridge and \
             whatever else runs on the machine; fj-lb's XDP program runs in softirq, which no process is charged for, so \
             it shows only here. Busy µs/request is that total over the requests wrk completed. Extra µs/request is a \
             path's busy µs/request minus the direct path's in the same mode: the direct path does all the client and \
             backend work and no LB work. (The difference per request is used, not (busy − busy of direct) / requests \
             of the totals, because every run saturates the CPUs, so the totals are all about the same; that figure is \
             in the JSON as `extra_cpu_us_per_request_from_totals`.) The extra includes the additional trip through \
             the bridge and two veths that any LB on the path adds, not only the balancer's own work. It can come out \
             negative: the client's and backends' cost per request falls as more requests share each wakeup, and the \
             direct path drives one nginx worker where the balancers drive three. Process CPU is utime + stime from \
             /proc/PID/stat of HAProxy (all its threads), or of the fj-lb daemon (user space only: the control socket, \
             neighbour refresh; no health checks here), over the same run.",
        );
        let mut rows = Vec::new();
        let mut j = serde_json::Map::new();
        for (mode, _) in modes {
            let per_req = |h: &HttpRun| h.wrk.as_ref().ok().filter(|w| w.requests > 0).map(|w| h.busy_cpu_s * 1e6 / w.requests as f64);
            let base = http.get(&(mode, "direct")).and_then(per_req).unwrap_or(f64::NAN);
            let base_busy = http.get(&(mode, "direct")).map(|h| h.busy_cpu_s).unwrap_or(f64::NAN);
            let totals_extra = |h: &HttpRun, w: &Wrk| (h.busy_cpu_s - base_busy) * 1e6 / w.requests.max(1) as f64;
            let mut jm = serde_json::Map::new();
            let mut extras = BTreeMap::new();
            for (path, label) in PATHS {
                let Some(h) = http.get(&(mode, path)) else { continue };
                let Ok(w) = &h.wrk else { continue };
                let busy = per_req(h).unwrap_or(f64::NAN);
                let extra = busy - base;
                extras.insert(path, extra);
                let proc_us = h.proc_cpu_s.filter(|_| w.requests > 0).map(|c| c * 1e6 / w.requests as f64);
                rows.push(vec![
                    mode.into(),
                    label.into(),
                    format!("{} / {} s", f(h.busy_cpu_s, 2), f(h.wall_s, 1)),
                    w.requests.to_string(),
                    format!("{} ({})", f(busy, 2), ratio(busy, base)),
                    if path == "direct" { "0 (baseline)".into() } else { f(extra, 2) },
                    match (path, proc_us) {
                        ("direct", _) => "—".into(),
                        (_, Some(p)) => format!("{} ({})", f(p, 3), if path == "haproxy" { "haproxy" } else { "fj-lb daemon" }),
                        (_, None) => "n/a".into(),
                    },
                ]);
                jm.insert(
                    path.into(),
                    json!({"busy_cpu_s": h.busy_cpu_s, "wall_s": h.wall_s, "requests": w.requests,
                        "busy_cpu_us_per_request": busy, "ratio_vs_direct": ratio_v(busy, base),
                        "extra_cpu_us_per_request": if path == "direct" { json!(0.0) } else { json!(extra) },
                        "extra_cpu_us_per_request_from_totals": totals_extra(h, w),
                        "process_cpu_us_per_request": proc_us}),
                );
            }
            if let (Some(l), Some(h)) = (extras.get("fj_lb"), extras.get("haproxy")) {
                let v = if *l > 0.0 && *h > 0.0 { ratio_v(*l, *h) } else { Value::Null };
                jm.insert("fj_lb_extra_vs_haproxy_extra".into(), v);
            }
            j.insert(mode.into(), Value::Object(jm));
        }
        r.table(&["mode", "path", "busy CPU / wall", "requests", "busy µs/request (vs direct)", "extra µs/request", "process CPU µs/request"], &rows);
        for (mode, _) in modes {
            let get_extra = |p: &str| j.get(mode)?.get(p)?.get("extra_cpu_us_per_request")?.as_f64();
            if let (Some(l), Some(h)) = (get_extra("fj_lb"), get_extra("haproxy")) {
                let cmp = if l > 0.0 && h > 0.0 {
                    format!("{} of HAProxy's", ratio(l, h))
                } else if l <= 0.0 && h > 0.0 {
                    "fj-lb's path costs no more per request than the direct one in this run".to_string()
                } else {
                    "no meaningful ratio".to_string()
                };
                r.para(&format!("{mode}: extra CPU per request, fj-lb {} µs, HAProxy {} µs ({cmp}).", f(l, 2), f(h, 2)));
            }
        }
        r.put("cpu_per_request", Value::Object(j));
    }

    if wants(&only, "iperf") {
        r.section(
            "TCP throughput",
            &format!(
                "iperf3 `-t {IPERF_SECONDS}` from the client (one stream, client → server: the direction that crosses the \
                 LB; with DSR the ACKs return straight from the backend). Server in b1, listening on its own address \
                 (direct and HAProxy's backend) and on the VIP (fj-lb: service iperf, tcp/{IPERF_PORT}, b1 only, since \
                 iperf3's control and data connections must reach the same server); HAProxy: `{LB_IP}:{IPERF_PORT}` → \
                 b1:{IPERF_PORT} in TCP mode. All hosts compute TCP checksums in software (the lab turns TX checksum \
                 offload off), so no TSO: 1500-byte frames."
            ),
        );
        let base = iperf.get("direct").and_then(|x| x.as_ref().ok()).map(|x| x.gbit_s).unwrap_or(f64::NAN);
        let mut rows = Vec::new();
        let mut j = serde_json::Map::new();
        for (path, label) in PATHS {
            let Some(res) = iperf.get(path).cloned() else { continue };
            match res {
                Ok(x) => {
                    rows.push(vec![label.into(), f(x.gbit_s, 2), ratio(x.gbit_s, base), x.retransmits.to_string()]);
                    j.insert(path.into(), json!({"gbit_s": x.gbit_s, "ratio_vs_direct": ratio_v(x.gbit_s, base), "retransmits": x.retransmits}));
                }
                Err(e) => {
                    let cell = r.fail(&format!("iperf3 {path}"), &e);
                    rows.push(vec![label.into(), cell, "".into(), "".into()]);
                    j.insert(path.into(), json!({"error": e}));
                }
            }
        }
        r.table(&["path", "Gbit/s", "vs direct", "retransmits"], &rows);
        r.put("iperf3", Value::Object(j));
    }

    if wants(&only, "pps") {
        r.section(
            "Packet rate, new UDP flows",
            &format!(
                "`fj-lb generate` in the client namespace (entered with nsenter, so bpffs stays visible){}, sends \
                 {GEN_PACKETS} 60-byte UDP frames to {VIP}:{UDP_PORT}, addressed to the LB's eth0 MAC, as fast as it can \
                 (BPF_PROG_TEST_RUN live frames, XDP_TX out of the client's eth0); every frame is a new 5-tuple, and \
                 trial T (of {GEN_TRIALS} per path) uses the template source 10.0.T.2, so no trial reuses another's \
                 flows. The row shows the median trial by forwarded rate, with every trial's rate. fj-lb: \
                 service dns, udp/{UDP_PORT} over b1–b3 (default sizes: flow table 1,048,576); forwarded = its \
                 `forwarded` counter, dropped = `drop_*` + `flow_insert_failed`, passed = `pass_*`, all deltas over the \
                 run. Floor: the daemon stopped, `fj-lb xdp-pass --interface eth0 --floor` on the LB's eth0 (swap the \
                 MACs, XDP_TX: every frame goes back to the client), the same frames sent; what it forwarded is what the \
                 LB's eth0 received (on a veth, `ip -s link` rx packets counts the frames its XDP program ran on). \
                 \"Reached the bridge\" is the client's bridge port's rx count: the rest overflowed the veth ring \
                 between the generator and the bridge. \"Lost at the LB\" is what reached the bridge but not the LB's \
                 XDP program (its veth ring was full: the LB did not keep up) plus what fj-lb dropped. Rates are over \
                 the generator's sending time. Generator, bridge, LB and backends share {cpus} CPUs and the softirq \
                 work of the whole path largely runs on the generator's CPU, so these are rates of the lab path, not of \
                 a NIC; the ratio to the floor is the meaningful figure.\n\n\
                 Source addresses, as the generator makes them: it overwrites frame byte 29, which is the *fourth* octet \
                 of the IPv4 source (bytes 26–29), with sequence / 64,000, and does not update the IPv4 header \
                 checksum. So the sources run 10.0.T.0, 10.0.T.1, … 10.0.T.{} (in trial 0 among them the client's, the \
                 LB's and the backends' own addresses), and every frame whose last octet differs from the template's (.2) has a \
                 bad header checksum. fj-lb's XDP program does not check that checksum and forwards them (the backends' \
                 stacks then drop them); a bridge with br_netfilter drops them, which is why this run turns \
                 bridge-nf-call-iptables off in the switch namespace. The generator's sequence counter is per CPU \
                 (`GEN_SEQ`, a per-CPU array): when BPF_PROG_TEST_RUN is rescheduled onto another CPU mid-run, the \
                 sequence starts again from 0 there and 5-tuples repeat, which fj-lb counts as flow-table hits; pinned \
                 to one CPU every frame is a new flow (`flow_miss` below; set FJ_LB_BENCH_GEN_UNPINNED=1 to see the \
                 difference).",
                if gen_pin().is_empty() { " (not pinned: FJ_LB_BENCH_GEN_UNPINNED is set)" } else { ", pinned to CPU 0 with taskset (see below)" },
                GEN_PACKETS / 64_000
            ),
        );
        let mut rows = Vec::new();
        let mut j = serde_json::Map::new();
        let floor_fwd = pps_floor.as_ref().and_then(|x| x.as_ref().ok()).map(|x| x.0.forwarded_per_s()).unwrap_or(f64::NAN);
        let paths = [
            ("fj_lb", "fj-lb, new flow every frame", &pps_lb),
            ("fj_lb_established", "fj-lb, established flows", &pps_lb_est),
            ("floor", "floor (MAC swap, XDP_TX)", &pps_floor),
        ];
        for (key, label, res) in paths {
            let Some(res) = res else { continue };
            match res {
                Ok((x, trials)) => {
                    let secs = x.tx.seconds;
                    let fwd = x.forwarded.unwrap_or(x.lb_rx);
                    let fwd_mpps = fwd as f64 / secs / 1e6;
                    let loss = (1.0 - fwd as f64 / x.tx.packets as f64).max(0.0);
                    let lost_at_lb = x.bridge_rx.saturating_sub(x.lb_rx) + x.dropped.unwrap_or(0);
                    let lost_at_lb_frac = if x.bridge_rx > 0 { lost_at_lb as f64 / x.bridge_rx as f64 } else { f64::NAN };
                    rows.push(vec![
                        label.into(),
                        format!("{} ({} in {} s)", f(x.tx.packets_per_s / 1e6, 3), x.tx.packets, f(secs, 2)),
                        x.bridge_rx.to_string(),
                        x.lb_rx.to_string(),
                        match (x.forwarded, x.dropped, x.passed) {
                            (Some(fw), Some(d), Some(p)) => format!("{fw} / {d} / {p}"),
                            _ => format!("{} / — / —", x.lb_rx),
                        },
                        format!("{} ({})", f(fwd_mpps, 3), trials.iter().map(|t| f(*t, 3)).collect::<Vec<_>>().join(", ")),
                        format!("{}%", f(loss * 100.0, 1)),
                        format!("{lost_at_lb} ({}%)", f(lost_at_lb_frac * 100.0, 1)),
                        ratio(fwd as f64 / secs, floor_fwd),
                        x.bpf_ns_per_run.map_or("—".into(), |ns| f(ns, 0)),
                    ]);
                    j.insert(
                        key.into(),
                        json!({"sent": x.tx.packets, "seconds": secs, "sent_mpps": x.tx.packets_per_s / 1e6,
                            "reached_bridge": x.bridge_rx, "lb_eth0_rx": x.lb_rx, "lb_eth0_rx_dropped": x.lb_rx_dropped,
                            "forwarded": fwd, "forwarded_mpps": fwd_mpps, "loss_vs_sent": loss,
                            "lost_at_lb": lost_at_lb, "lost_at_lb_of_reached_bridge": lost_at_lb_frac,
                            "dropped": x.dropped, "passed": x.passed, "counters": x.counters,
                            "ratio_vs_floor": ratio_v(fwd as f64 / secs, floor_fwd), "trials_forwarded_mpps": trials,
                            "kernel_ns_per_run": x.bpf_ns_per_run}),
                    );
                }
                Err(e) => {
                    let cell = r.fail(&format!("packet rate {key}"), e);
                    let mut row = vec![label.to_string(), cell];
                    row.resize(10, String::new());
                    rows.push(row);
                    j.insert(key.into(), json!({"error": e}));
                }
            }
        }
        r.table(
            &[
                "path",
                "sent Mpps",
                "reached the bridge",
                "reached the LB's XDP",
                "forwarded / dropped / passed",
                "forwarded Mpps (each trial)",
                "loss vs sent",
                "lost at the LB",
                "forwarded rate vs floor",
                "kernel ns/run (bpf_stats)",
            ],
            &rows,
        );
        r.para(&format!(
            "Established flows: the same runs with `fj-lb generate --flows {GEN_ESTABLISHED_FLOWS}`: the generator cycles \
             through {GEN_ESTABLISHED_FLOWS} 5-tuples, so all but the first {GEN_ESTABLISHED_FLOWS} frames of a trial hit \
             the flow table (a fresh frame from the template every packet all the same). \"Kernel ns/run\" is the LB \
             program's run_time_ns / run_cnt delta over the median trial (`kernel.bpf_stats_enabled` = 1 during these \
             runs; `bpftool prog show --json`): the program's own time, without the rest of the path, as a cross-check \
             of the rates. These are pipeline figures (a live frame through veth and bridge); the one-run-per-call \
             in-kernel figures are in `datapath.md` (`fj-lb/benches/datapath.rs`)."
        ));
        if let Some(Ok((x, _))) = &pps_lb {
            let list = x.counters.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ");
            r.para(&format!("fj-lb's counters over its median trial: {list}."));
        }
        r.put("packet_rate", Value::Object(j));
    }

    if let Some(res) = &pipeline_result {
        pipeline::report(&mut r, res, cpus);
    }

    if wants(&only, "start") {
        let (s, c) = (median(start_ms.clone()), median(check_ms.clone()));
        r.section(
            "Daemon start to first request forwarded",
            &format!(
                "From spawning `fj-lb run` in the LB namespace to the first HTTP request through the VIP answered by a \
                 backend (the client retries every 0.5 ms, 200 ms timeout; before XDP is attached the LB's kernel refuses \
                 the connection at once). One service (web, 3 backends, no health checks, default sizes: flow table \
                 1,048,576, Maglev 65,537 slots, 64 services). The LB's neighbour table already knows the backends' MACs. \
                 Baseline: `fj-lb check-config` of the same file, spawned the same way (process start, config parse and \
                 validation). Median of {START_TRIALS}."
            ),
        );
        r.table(
            &["measure", "median ms", "trials ms", "vs check-config"],
            &[
                vec!["`fj-lb run` → first request forwarded".into(), f(s, 1), start_ms.iter().map(|x| f(*x, 1)).collect::<Vec<_>>().join(", "), ratio(s, c)],
                vec!["`fj-lb check-config` (baseline)".into(), f(c, 1), check_ms.iter().map(|x| f(*x, 1)).collect::<Vec<_>>().join(", "), "1.00×".into()],
            ],
        );
        r.put("startup", json!({"run_to_first_forward_ms": {"median": s, "trials": start_ms}, "check_config_ms": {"median": c, "trials": check_ms}, "ratio": ratio_v(s, c)}));
    }

    if wants(&only, "mem") && mem.len() == 2 {
        r.section(
            "Daemon memory",
            &format!(
                "VmRSS (and peak VmHWM) of `fj-lb run` from /proc/PID/status one second after a request through the VIP \
                 was forwarded. Both daemons use the same sizes: maglev_table_size = {MEM_MAGLEV} (not the default 65,537, \
                 to keep kernel memory sane with 1,000 services), max_services = {MEM_SERVICES}, flow_table_size = \
                 {MEM_FLOW_TABLE}, max_backends = 4096; each service has 2 backends and no health checks. Kernel memory of \
                 its BPF maps (sum of `memlock` over the map fds it holds, from /proc/PID/fdinfo) is shown alongside: \
                 kernel memory, of which only the part the daemon maps into its address space also shows in its RSS."
            ),
        );
        let (one, many) = (mem[0], mem[1]);
        let mib = |k: u64| f(k as f64 / 1024.0, 1);
        let rows: Vec<Vec<String>> = [many, one]
            .iter()
            .map(|m| {
                vec![
                    format!("{} service{}", m.services, if m.services == 1 { " (baseline)" } else { "s" }),
                    mib(m.rss_kib),
                    ratio(m.rss_kib as f64, one.rss_kib as f64),
                    format!("{} / {} / {}", mib(m.anon_kib), mib(m.file_kib), mib(m.shmem_kib)),
                    mib(m.map_mmap_kib),
                    format!(
                        "{} ({})",
                        mib(m.rss_kib.saturating_sub(m.map_mmap_kib)),
                        ratio(m.rss_kib.saturating_sub(m.map_mmap_kib) as f64, one.rss_kib.saturating_sub(one.map_mmap_kib) as f64)
                    ),
                    mib(m.hwm_kib),
                    format!("{} ({} maps)", f(m.memlock as f64 / 1048576.0, 1), m.maps),
                ]
            })
            .collect();
        r.table(
            &[
                "config",
                "VmRSS MiB",
                "vs 1 service",
                "anon / file / shmem MiB",
                "of which mmap'd BPF maps MiB",
                "RSS without them MiB (vs 1 service)",
                "VmHWM MiB",
                "BPF map memlock MiB",
            ],
            &rows,
        );
        r.para(
            "The daemon maps the Maglev table array into its memory (BPF_F_MMAPABLE) to write a table with one copy; \
             resident pages of that mapping (`anon_inode:bpf-map` in /proc/PID/smaps) count in RssFile but are kernel \
             map memory, so the RSS without them is shown too.",
        );
        let jm = |m: Mem| {
            json!({"services": m.services, "vm_rss_kib": m.rss_kib, "vm_hwm_kib": m.hwm_kib, "rss_anon_kib": m.anon_kib,
                "rss_file_kib": m.file_kib, "rss_shmem_kib": m.shmem_kib, "bpf_map_mmap_rss_kib": m.map_mmap_kib, "bpf_map_memlock_bytes": m.memlock, "bpf_maps": m.maps})
        };
        r.put("memory", json!({"maglev_table_size": MEM_MAGLEV, "max_services": MEM_SERVICES, "flow_table_size": MEM_FLOW_TABLE,
            "max_backends": 4096, "one_service": jm(one), "many_services": jm(many),
            "rss_ratio": ratio_v(many.rss_kib as f64, one.rss_kib as f64),
            "rss_without_map_mmap_ratio": ratio_v(many.rss_kib.saturating_sub(many.map_mmap_kib) as f64, one.rss_kib.saturating_sub(one.map_mmap_kib) as f64)}));
    }

    if let Some(result) = ecmp_result {
        ecmp::report(&mut r, result);
    }

    let total = started.elapsed().as_secs_f64();
    r.para(&format!(
        "Whole run: {} s; other fj-lb test runs' namespaces at the end: {foreign_after}. fj-lb config for the HTTP, iperf3 \
         and packet-rate runs: {lb_services_note}.",
        f(total, 0)
    ));
    r.put("other_harness_namespaces_at_end", json!(foreign_after));
    r.put("run_seconds", json!(total));
    if !r.failures.is_empty() {
        r.put("failures", json!(r.failures));
    }

    let md_path = out_dir.join("e2e.md");
    let json_path = out_dir.join("e2e.json");
    std::fs::write(&md_path, &r.md).unwrap_or_else(|e| panic!("writing {}: {e}", md_path.display()));
    std::fs::write(&json_path, serde_json::to_string_pretty(&Value::Object(r.json.clone())).unwrap() + "\n")
        .unwrap_or_else(|e| panic!("writing {}: {e}", json_path.display()));
    println!("{}", r.md);
    eprintln!("fj-lb-bench-e2e: wrote {} and {}", md_path.display(), json_path.display());

    // Nothing of this run may be left behind.
    let left: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|rd| rd.flatten().filter_map(|e| e.file_name().into_string().ok()).filter(|n| n.starts_with(&topo_id)).collect())
        .unwrap_or_default();
    if !left.is_empty() {
        eprintln!("fj-lb-bench-e2e: namespaces left behind: {left:?}");
        std::process::exit(1);
    }
    if !r.failures.is_empty() {
        eprintln!("fj-lb-bench-e2e: {} measurement(s) failed:\n  {}", r.failures.len(), r.failures.join("\n  "));
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_duration_ms, parse_wrk};

    #[test]
    fn reads_wrk_latency_output() {
        let out = "Running 10s test @ http://10.0.0.11:80/
  2 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.23ms    2.00ms  40.00ms   90.00%
    Req/Sec    30.00k     2.00k   35.00k    70.00%
  Latency Distribution
     50%  520.00us
     75%    1.10ms
     90%    2.55ms
     99%   15.58ms
  743635 requests in 10.04s, 108.20MB read
  Socket errors: connect 0, read 3, write 0, timeout 2
  Non-2xx or 3xx responses: 4
Requests/sec:  74061.20
Transfer/sec:     10.78MB
";
        let w = parse_wrk(out).unwrap();
        assert_eq!(w.requests, 743635);
        assert!((w.seconds - 10.04).abs() < 1e-9);
        assert!((w.rps - 74061.2).abs() < 1e-6);
        assert!((w.p50_ms - 0.52).abs() < 1e-9 && (w.p90_ms - 2.55).abs() < 1e-9 && (w.p99_ms - 15.58).abs() < 1e-9);
        assert_eq!((w.socket_errors, w.non_2xx), (5, 4));
        assert!(parse_wrk("unable to connect to 10.0.0.11:80 Connection refused").is_err());
        assert_eq!(parse_duration_ms("1.01s"), Some(1010.0));
        assert_eq!(parse_duration_ms("12"), None);
    }
}
