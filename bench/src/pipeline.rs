//! Pipeline packet rate (issue 14): the live-frames generator → veth → bridge → the LB's veth
//! with the balancer in native XDP, every fj-lb run between two runs of a baseline program on
//! the same interface, in alternating rounds; medians over rounds.
//!
//! The daemon keeps running the whole time. The baselines (the floor: the MACs rewritten to a
//! backend's and the LB's, XDP_TX, so that its frames take the path forwarded ones take; and the
//! XDP_PASS program for frames to no service) are swapped onto the daemon's own XDP link with
//! BPF_LINK_UPDATE and the balancer swapped back the same way: one syscall each way, no gap on
//! the interface, the same native attachment, and the daemon's maps (the flow table the
//! established mode relies on, its counters) untouched. The floor cannot be attached beside
//! the link (an interface has one XDP program in native mode), and restarting the daemon with
//! adoption of the pinned flow table would take a second or more per swap and re-create the
//! counters. Nothing of this is in the product: the helper programs come from fj-lb's embedded
//! helper object, loaded here.
use std::{
    collections::BTreeMap,
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::{AsFd as _, AsRawFd as _, FromRawFd as _, OwnedFd, RawFd},
    path::Path,
    time::Duration,
};

use aya::{Ebpf, programs::Xdp};
use fj_lb_common::program_names;
use fj_lb_tests::{Daemon, LB_IP, Service, VIP, VIP6, backend_ip, daemon::XDP_MODE_NATIVE, ip6_of, poll_until, xdp_info};
use serde_json::{Value, json};

use super::{BACKENDS, Gen, Lab, Report, UDP_PORT, bpf_prog_stats, check_stop, counters_delta, f, generate, link_stats, median};

/// Frames per generator run. About 0.7 s a run at this lab's rate, 64 runs: lower it for a
/// quick check of the code (FJ_LB_BENCH_PIPELINE_FRAMES overrides it, as does
/// FJ_LB_BENCH_PIPELINE_ROUNDS the rounds).
pub const FRAMES: u64 = 500_000;
/// Rounds that count, and rounds run first and left out (they fill the flow table and the
/// caches: the first new-flow run inserts into an empty LRU, every later one evicts).
pub const ROUNDS: usize = 7;
const WARMUP_ROUNDS: usize = 1;
/// Established mode: the generator cycles through this many 5-tuples, so after the first 256
/// frames of the first run every frame hits the flow table.
const EST_FLOWS: u32 = 256;
/// Frames for no service go to the LB host's own address (the issue's "the LB host's own
/// traffic": health-check answers, SSH, BGP), on a UDP port nothing listens on: fj-lb passes
/// them to the kernel (`pass_not_service`) after its VIP filter, whose UDP finds no socket.
const NO_SERVICE_PORT: u16 = 9;
/// Template sources. The generator overwrites the third octet (its CPU and round), so the
/// second octet tells the modes apart, and a new-flow run's 5-tuples from every other run's:
/// 10.(1 + run % 190).x.2 for new flows.
const EST_SRC: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 2);
const NO_SERVICE_SRC: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 2);
/// The IPv6 generator writes its CPU and round into the source's 15th byte; fd00:c8::/32 is no
/// lab host's.
const EST6_SRC: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xc8, 0, 0, 0, 0, 0, 2);

/// Issue 14's goals, reported and never enforced.
const GOAL_ESTABLISHED_RATIO: f64 = 1.25;
const GOAL_NEW_FLOW_RATIO: f64 = 4.5;
const GOAL_NO_SERVICE_NS: f64 = 30.0;
const GOAL_IPV6_WITHIN: f64 = 0.10;

fn frames() -> u64 {
    std::env::var("FJ_LB_BENCH_PIPELINE_FRAMES").ok().and_then(|s| s.parse().ok()).filter(|n| *n > 0).unwrap_or(FRAMES)
}

fn rounds() -> usize {
    std::env::var("FJ_LB_BENCH_PIPELINE_ROUNDS").ok().and_then(|s| s.parse().ok()).filter(|n| *n > 0).unwrap_or(ROUNDS)
}

// ---------------------------------------------------------------------------------------------
// bpf(2), the three commands the swap needs (aya 0.14 has no public way to open a pinned link
// as a raw fd or to replace a link's program only if it is the expected one).

const BPF_OBJ_GET: libc::c_long = 7;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_LINK_UPDATE: libc::c_long = 29;
/// BPF_LINK_UPDATE: replace only if the link still runs `old_prog_fd`.
const BPF_F_REPLACE: u32 = 1 << 2;

fn sys_bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, size_of::<T>() as libc::c_uint) };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(r) }
}

fn fd_from(r: libc::c_long) -> OwnedFd {
    unsafe { OwnedFd::from_raw_fd(r as RawFd) }
}

fn obj_get(path: &Path) -> io::Result<OwnedFd> {
    #[repr(C)]
    struct Attr {
        pathname: u64,
        bpf_fd: u32,
        file_flags: u32,
    }
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).map_err(io::Error::other)?;
    let mut a = Attr { pathname: c.as_ptr() as u64, bpf_fd: 0, file_flags: 0 };
    sys_bpf(BPF_OBJ_GET, &mut a).map(fd_from)
}

fn prog_fd_by_id(id: u32) -> io::Result<OwnedFd> {
    #[repr(C)]
    struct Attr {
        prog_id: u32,
        next_id: u32,
        open_flags: u32,
    }
    let mut a = Attr { prog_id: id, next_id: 0, open_flags: 0 };
    sys_bpf(BPF_PROG_GET_FD_BY_ID, &mut a).map(fd_from)
}

fn link_update(link: RawFd, new: RawFd, old: RawFd) -> io::Result<()> {
    #[repr(C)]
    struct Attr {
        link_fd: u32,
        new_prog_fd: u32,
        flags: u32,
        old_prog_fd: u32,
    }
    let mut a = Attr { link_fd: link as u32, new_prog_fd: new as u32, flags: BPF_F_REPLACE, old_prog_fd: old as u32 };
    sys_bpf(BPF_LINK_UPDATE, &mut a).map(|_| ())
}

// ---------------------------------------------------------------------------------------------
// The programs, and swapping them on the daemon's link.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prog {
    Balancer,
    /// The MACs rewritten to backend b1's (from the LB's), XDP_TX: the balancer's least work,
    /// its frames ending at a backend as forwarded ones do (`fj_lb_floor_to`).
    Floor,
    /// XDP_PASS.
    Pass,
}

/// The daemon's XDP link with the balancer on it, and the two baselines ready to take its
/// place. Dropped, it puts the balancer back.
struct Swapper {
    lb_ns: String,
    link: OwnedFd,
    balancer: OwnedFd,
    balancer_id: u32,
    floor: Ebpf,
    pass: Ebpf,
    on: Prog,
}

fn aux_prog<'a>(ebpf: &'a Ebpf, name: &str) -> &'a Xdp {
    ebpf.program(name).expect("the helper object has the program").try_into().expect("helper programs are XDP")
}

impl Swapper {
    fn new(lb_ns: &str, bpffs: &Path, backend_mac: [u8; 6]) -> Result<Swapper, String> {
        let balancer_id = xdp_info(lb_ns, "eth0").and_then(|x| x.prog_id).ok_or("no XDP program on the LB's eth0")? as u32;
        let pin = bpffs.join(fj_lb::datapath::LINK_PIN);
        let link = obj_get(&pin).map_err(|e| format!("opening the daemon's pinned XDP link {}: {e}", pin.display()))?;
        let balancer = prog_fd_by_id(balancer_id).map_err(|e| format!("the balancer program (id {balancer_id}): {e}"))?;
        let load = |name| fj_lb::datapath::load_aux(name).map_err(|e| format!("loading {name}: {e}"));
        let mut floor = load(program_names::FLOOR_TO)?;
        let mut to: aya::maps::Array<_, [u8; 6]> =
            aya::maps::Array::try_from(floor.map_mut("FLOOR_TO").ok_or("the helper object has no FLOOR_TO map")?)
                .map_err(|e| format!("FLOOR_TO: {e}"))?;
        to.set(0, backend_mac, 0).map_err(|e| format!("writing the floor's MAC: {e}"))?;
        Ok(Swapper {
            lb_ns: lb_ns.into(),
            link,
            balancer,
            balancer_id,
            floor,
            pass: load(program_names::PASS)?,
            on: Prog::Balancer,
        })
    }

    fn fd(&self, p: Prog) -> RawFd {
        match p {
            Prog::Balancer => self.balancer.as_raw_fd(),
            Prog::Floor => aux_prog(&self.floor, program_names::FLOOR_TO).fd().expect("loaded").as_fd().as_raw_fd(),
            Prog::Pass => aux_prog(&self.pass, program_names::PASS).fd().expect("loaded").as_fd().as_raw_fd(),
        }
    }

    fn id(&self, p: Prog) -> u32 {
        match p {
            Prog::Balancer => self.balancer_id,
            Prog::Floor => aux_prog(&self.floor, program_names::FLOOR_TO).info().expect("loaded").id(),
            Prog::Pass => aux_prog(&self.pass, program_names::PASS).info().expect("loaded").id(),
        }
    }

    /// Puts `p` on the link, and checks with the kernel that it runs there in native mode.
    fn put(&mut self, p: Prog) -> Result<(), String> {
        self.swap(p)?;
        match xdp_info(&self.lb_ns, "eth0") {
            Some(x) if x.prog_id == Some(self.id(p) as u64) && x.mode == XDP_MODE_NATIVE => Ok(()),
            other => Err(format!("after the swap the LB's eth0 has {other:?}, not {p:?} (id {}) in native mode", self.id(p))),
        }
    }

    fn swap(&mut self, p: Prog) -> Result<(), String> {
        if p != self.on {
            link_update(self.link.as_raw_fd(), self.fd(p), self.fd(self.on))
                .map_err(|e| format!("swapping {:?} for {:?} on the daemon's XDP link: {e}", p, self.on))?;
            self.on = p;
        }
        Ok(())
    }
}

impl Drop for Swapper {
    /// Only the swap: this may run while a panic unwinds, where a failing check must not
    /// panic again.
    fn drop(&mut self) {
        if let Err(e) = self.swap(Prog::Balancer) {
            eprintln!("fj-lb-bench-e2e: putting the balancer back: {e}");
        }
    }
}

/// `kernel.bpf_stats_enabled` = 1 while it lives (the kernel's run time of each program), the
/// previous value restored after. A kernel-wide sysctl, but no interface, route or firewall.
struct BpfStatsOn {
    was: String,
}

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl BpfStatsOn {
    fn new() -> BpfStatsOn {
        let was = std::fs::read_to_string(BPF_STATS).map(|s| s.trim().to_string()).unwrap_or_else(|_| "0".into());
        if let Err(e) = std::fs::write(BPF_STATS, "1") {
            eprintln!("fj-lb-bench-e2e: {BPF_STATS}: {e}: no kernel run times");
        }
        BpfStatsOn { was }
    }
}

impl Drop for BpfStatsOn {
    fn drop(&mut self) {
        let _ = std::fs::write(BPF_STATS, &self.was);
    }
}

// ---------------------------------------------------------------------------------------------
// Runs.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Established,
    NewFlow,
    Established6,
    NoService,
}

impl Mode {
    const ALL: [Mode; 4] = [Mode::Established, Mode::NewFlow, Mode::Established6, Mode::NoService];

    fn key(self) -> &'static str {
        match self {
            Mode::Established => "established",
            Mode::NewFlow => "new_flow",
            Mode::Established6 => "established_ipv6",
            Mode::NoService => "not_for_a_service",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Mode::Established => "fj-lb, established (IPv4)",
            Mode::NewFlow => "fj-lb, new flow every frame, every one inserted",
            Mode::Established6 => "fj-lb, established (IPv6)",
            Mode::NoService => "fj-lb, not for a service (XDP_PASS)",
        }
    }

    /// The generator's source, destination, UDP port and flows for this mode's frames.
    fn frames(self, run_no: usize) -> (IpAddr, IpAddr, u16, u32) {
        match self {
            Mode::Established => (EST_SRC.into(), VIP.into(), UDP_PORT, EST_FLOWS),
            Mode::NewFlow => (Ipv4Addr::new(10, 1 + (run_no % 190) as u8, 0, 2).into(), VIP.into(), UDP_PORT, 0),
            Mode::Established6 => (EST6_SRC.into(), VIP6.into(), UDP_PORT, EST_FLOWS),
            Mode::NoService => (NO_SERVICE_SRC.into(), LB_IP.into(), NO_SERVICE_PORT, EST_FLOWS),
        }
    }

    /// The baseline program of this mode's sandwich.
    fn baseline(self) -> Prog {
        if self == Mode::NoService { Prog::Pass } else { Prog::Floor }
    }
}

/// One generator run.
#[derive(Debug, Clone)]
struct Run {
    prog: Prog,
    tx: Gen,
    /// Frames the client's bridge port received (reached the switch).
    bridge_rx: u64,
    /// Frames the LB's eth0 received: on a veth, the frames its XDP program ran on.
    lb_rx: u64,
    /// What the program under test did as it should: fj-lb's `forwarded` (or, frames to no
    /// service, `pass_not_service`); a baseline's, every frame it saw.
    handled: u64,
    /// run_time_ns, run_cnt deltas of the program on the link (bpf_stats).
    bpf: Option<(u64, u64)>,
    /// fj-lb's counter deltas.
    counters: BTreeMap<String, u64>,
    /// Busy CPU seconds of each CPU over the generator's run (/proc/stat, machine-wide).
    cpu_busy: Vec<f64>,
    /// Of those, softirq: where the path's NAPI work ran.
    cpu_softirq: Vec<f64>,
}

impl Run {
    /// Time a packet through the pipeline, ns: the generator's sending time over the frames the
    /// LB's program handled. The generator, the bridge and the LB run in softirq on the same
    /// CPU(s), so when the LB's program costs more, fewer frames a second get through; what
    /// the LB did not keep up with is lost on its veth ring and does not count.
    fn ns_per_packet(&self) -> f64 {
        if self.handled == 0 { f64::NAN } else { self.tx.seconds * 1e9 / self.handled as f64 }
    }
    fn mpps(&self) -> f64 {
        self.handled as f64 / self.tx.seconds / 1e6
    }
    /// Busy CPU time a packet, ns, summed over every CPU: counts the work wherever it ran,
    /// where the time a packet sees only what delays the generator.
    fn cpu_ns_per_packet(&self) -> f64 {
        if self.handled == 0 { f64::NAN } else { self.cpu_busy.iter().sum::<f64>() * 1e9 / self.handled as f64 }
    }
    /// The kernel's run time of the program a run, ns.
    fn bpf_ns(&self) -> f64 {
        match self.bpf {
            Some((t, c)) if c > 0 => t as f64 / c as f64,
            _ => f64::NAN,
        }
    }
}

/// Reads the bridge port's and the LB's rx counts once they stop moving: the generator returns
/// when it has queued its last frame, and the veth rings drain in softirq a little later.
fn settled_counts(lab: &Lab) -> (u64, u64) {
    let (sw, port, lb_ns) = (lab.topo.switch().name(), &lab.topo.client().port, lab.topo.lb().ns.name());
    let read = || (link_stats(sw, port).0, link_stats(lb_ns, "eth0").0);
    let mut last = read();
    // Bounded: 50 polls of 10 ms, far more than a ring of frames takes to drain.
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(10));
        let now = read();
        if now == last {
            break;
        }
        last = now;
    }
    last
}

fn one_run(lab: &Lab, d: &Daemon, sw: &mut Swapper, prog: Prog, mode: Mode, run_no: usize) -> Result<Run, String> {
    check_stop();
    sw.put(prog)?;
    let (src, dst, port, flows) = mode.frames(run_no);
    let topo = &lab.topo;
    let id = sw.id(prog) as u64;
    let s0 = (prog == Prog::Balancer).then(|| lab.stats(d));
    let (br0, lb0) = settled_counts(lab);
    let k0 = bpf_prog_stats(id);
    let c0 = per_cpu_busy_s();
    let tx = generate(lab, topo.client().ns.name(), &topo.lb().mac(), &topo.client().mac(), src, dst, port, frames(), flows)?;
    // Before the settle's `ip` processes add theirs; the frames still in the rings are
    // microseconds of work.
    let c1 = per_cpu_busy_s();
    let cpu_busy = c1.iter().zip(&c0).map(|(b, a)| b.0 - a.0).collect();
    let cpu_softirq = c1.iter().zip(&c0).map(|(b, a)| b.1 - a.1).collect();
    let (br1, lb1) = settled_counts(lab);
    let k1 = bpf_prog_stats(id);
    let bpf = match (k0, k1) {
        (Some((t0, c0)), Some((t1, c1))) if c1 > c0 => Some((t1 - t0, c1 - c0)),
        _ => None,
    };
    let lb_rx = lb1 - lb0;
    let counters = s0.map(|s0| counters_delta(&s0, &lab.stats(d))).unwrap_or_default();
    let handled = match (prog, mode) {
        (Prog::Balancer, Mode::NoService) => counters.get("pass_not_service").copied().unwrap_or(0),
        (Prog::Balancer, _) => counters.get("forwarded").copied().unwrap_or(0),
        _ => lb_rx,
    };
    Ok(Run { prog, tx, bridge_rx: br1 - br0, lb_rx, handled, bpf, counters, cpu_busy, cpu_softirq })
}

/// Busy seconds of each CPU so far (the `cpuN` lines of /proc/stat: user + nice + system + irq
/// + softirq + steal), and of those softirq, in clock ticks' resolution.
fn per_cpu_busy_s() -> Vec<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    stat.lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .map(|l| {
            let v: Vec<u64> = l.split_whitespace().skip(1).map(|x| x.parse().unwrap_or(0)).collect();
            let g = |i: usize| v.get(i).copied().unwrap_or(0);
            let t = super::clk_tck();
            ((g(0) + g(1) + g(2) + g(5) + g(6) + g(7)) as f64 / t, g(6) as f64 / t)
        })
        .collect()
}

/// A round: each fj-lb run between two runs of its baseline with the same kind of frames. The
/// floor between established and new flow serves both.
const ROUND: [(Prog, Mode); 11] = [
    (Prog::Floor, Mode::Established),
    (Prog::Balancer, Mode::Established),
    (Prog::Floor, Mode::Established),
    (Prog::Balancer, Mode::NewFlow),
    (Prog::Floor, Mode::Established),
    (Prog::Floor, Mode::Established6),
    (Prog::Balancer, Mode::Established6),
    (Prog::Floor, Mode::Established6),
    (Prog::Pass, Mode::NoService),
    (Prog::Balancer, Mode::NoService),
    (Prog::Pass, Mode::NoService),
];

pub struct Pipeline {
    frames: u64,
    rounds: Vec<Vec<Run>>,
}

/// Starts fj-lb (the web and dns services, the new-flow cap lifted) and runs the rounds.
pub fn measure(lab: &mut Lab) -> Result<Pipeline, String> {
    let dns6 = Service::new("dns6", UDP_PORT, "udp").vip(VIP6).backends((1..=BACKENDS).map(|i| ip6_of(backend_ip(i))));
    let services = [super::web_service(), super::dns_service(), dns6];
    // Lifted, so that in new-flow mode every packet inserts (flood mode would forward by hash
    // without inserting: `flow_insert_skipped`).
    let config = lab.config("pipeline", &services).max_new_flows_per_cpu(0);
    let d = lab.start_daemon("pipeline", &config);
    let lb_ns = lab.topo.lb().ns.name().to_string();
    let _stats = BpfStatsOn::new();
    let b1 = fj_lb::model::addr::parse_mac(&lab.topo.backend(1).mac()).map_err(|e| format!("backend b1: {e}"))?;
    let mut sw = Swapper::new(&lb_ns, &config.bpffs, b1)?;
    // The daemon was ready as soon as it forwarded HTTP over IPv4; the IPv6 backends'
    // neighbour entries may come later.
    for mode in [Mode::Established, Mode::Established6] {
        wait_forwarding(lab, &d, mode)?;
    }
    let (n, frames) = (rounds(), frames());
    let mut rounds = Vec::new();
    let mut run_no = 0;
    for r in 0..WARMUP_ROUNDS + n {
        eprintln!(
            "fj-lb-bench-e2e: pipeline round {}/{} ({}), {} runs of {frames} frames",
            r + 1,
            WARMUP_ROUNDS + n,
            if r < WARMUP_ROUNDS { "warm-up, not counted" } else { "counted" },
            ROUND.len()
        );
        let mut round = Vec::new();
        for (prog, mode) in ROUND {
            round.push(one_run(lab, &d, &mut sw, prog, mode, run_no)?);
            run_no += 1;
        }
        if r >= WARMUP_ROUNDS {
            rounds.push(round);
        }
    }
    sw.put(Prog::Balancer)?;
    drop(sw);
    drop(d);
    Ok(Pipeline { frames, rounds })
}

/// Small generator runs until fj-lb forwards every frame of `mode` (its backends' MACs known).
fn wait_forwarding(lab: &Lab, d: &Daemon, mode: Mode) -> Result<(), String> {
    const PROBE: u64 = 1000;
    let topo = &lab.topo;
    let (src, dst, port, flows) = mode.frames(0);
    let mut last = BTreeMap::new();
    let ok = poll_until(Duration::from_secs(15), Duration::from_millis(50), || {
        check_stop();
        let s0 = lab.stats(d);
        generate(lab, topo.client().ns.name(), &topo.lb().mac(), &topo.client().mac(), src, dst, port, PROBE, flows).ok()?;
        settled_counts(lab);
        last = counters_delta(&s0, &lab.stats(d));
        (last.get("forwarded").copied().unwrap_or(0) >= PROBE).then_some(())
    });
    ok.ok_or_else(|| format!("fj-lb did not forward {} frames within 15 s (last probe's counters: {last:?})", mode.key()))
}

// ---------------------------------------------------------------------------------------------
// Report.

/// One mode's figures in one round, against the mean of its two neighbouring baseline runs.
#[derive(Debug, Clone, Copy)]
struct Sandwich {
    lb_mpps: f64,
    base_mpps: f64,
    lb_ns: f64,
    base_ns: f64,
    time_ratio: f64,
    rate_ratio: f64,
    ns_above: f64,
    bpf_lb: f64,
    bpf_base: f64,
    cpu_lb: f64,
    cpu_base: f64,
}

fn sandwich(round: &[Run], mode: Mode) -> Sandwich {
    let i = ROUND.iter().position(|&(p, m)| p == Prog::Balancer && m == mode).expect("every mode is in a round");
    let (a, lb, b) = (&round[i - 1], &round[i], &round[i + 1]);
    debug_assert!(a.prog == mode.baseline() && b.prog == mode.baseline());
    let mean = |x: f64, y: f64| (x + y) / 2.0;
    let (base_ns, base_mpps) = (mean(a.ns_per_packet(), b.ns_per_packet()), mean(a.mpps(), b.mpps()));
    Sandwich {
        lb_mpps: lb.mpps(),
        base_mpps,
        lb_ns: lb.ns_per_packet(),
        base_ns,
        time_ratio: lb.ns_per_packet() / base_ns,
        rate_ratio: lb.mpps() / base_mpps,
        ns_above: lb.ns_per_packet() - base_ns,
        bpf_lb: lb.bpf_ns(),
        bpf_base: mean(a.bpf_ns(), b.bpf_ns()),
        cpu_lb: lb.cpu_ns_per_packet(),
        cpu_base: mean(a.cpu_ns_per_packet(), b.cpu_ns_per_packet()),
    }
}

fn med(v: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = v.filter(|x| x.is_finite()).collect();
    median(v)
}

pub fn report(r: &mut Report, res: &Result<Pipeline, String>, cpus: usize) {
    let (frames_n, rounds_s) = match res {
        Ok(p) => (p.frames, p.rounds.len().to_string()),
        Err(_) => (frames(), rounds().to_string()),
    };
    let frames_s = frames_n.to_string();
    let table = fj_lb::model::config::DEFAULT_FLOW_TABLE_SIZE;
    // The first new-flow run that finds the LRU share full at its start, or fills it midway.
    let full = (table as u64).div_ceil(frames_n.max(1));
    r.section(
        "Packet rate through the pipeline, sandwiched between floor runs",
        &format!(
            "Pipeline figures (issue 14), not the in-kernel one-run-per-call figures of `datapath.md` \
             (`fj-lb/benches/datapath.rs`, BPF_PROG_TEST_RUN on one frame, 20,000 calls). Here `fj-lb generate` \
             (BPF_PROG_TEST_RUN in live-frames mode, a fresh 60-byte UDP frame from the template every packet, XDP_TX out \
             of the client's eth0, pinned to CPU 0 unless FJ_LB_BENCH_GEN_UNPINNED is set) sends {frames_s} frames a run \
             to {VIP} → veth → bridge → the LB's veth, where the program under test runs in native XDP. One fj-lb daemon \
             (services web tcp/80 and dns udp/{UDP_PORT} over b1–b3, default table sizes, `max_new_flows_per_cpu = 0`: no \
             cap, every new flow inserted) runs throughout; for the baseline runs the bench swaps the floor (`fj_lb_floor_to`: the destination MAC rewritten to backend b1's, \
             the source to the LB's, XDP_TX: the same 12 bytes a MAC swap writes, and its frames end at a backend's stack as \
             forwarded ones do) \
             program (or, for frames to no service, the XDP_PASS program) onto the daemon's own XDP link with \
             BPF_LINK_UPDATE, and the balancer back after: same interface, same native attachment, the daemon's flow table \
             and counters untouched. A round is floor → fj-lb established → floor → fj-lb new flow → floor, then floor → fj-lb \
             established over IPv6 → floor (the IPv6 frames), then pass → fj-lb not for a service → pass; {WARMUP_ROUNDS} warm-up round first (not counted), then {rounds_s} rounds. Each fj-lb \
             run is compared with the mean of the two baseline runs either side of it; the table gives the median over \
             rounds of each figure.\n\n\
             Modes: *established* — `--flows {EST_FLOWS}`, the generator cycles through {EST_FLOWS} 5-tuples, all in the \
             flow table after the first round (*IPv6*: the same with 80-byte IPv6 frames to [{VIP6}]:{UDP_PORT}, service \
             dns6 over the backends' IPv6 addresses, its floor runs sending the IPv6 frames too; compared with IPv4 \
             established round by round); *new flow* — every frame a new 5-tuple (a new template source per run, \
             so no run meets another's flows), every one a flow miss and an insert into the LRU flow table (default size, \
             {table} flows a CPU's share; the frames all arrive on one CPU, so from new-flow run {full} on, counting \
             the warm-up's, inserts evict); *not for a service* — frames to the LB host's own address {LB_IP}:{NO_SERVICE_PORT}/udp, which fj-lb \
             passes to the kernel (`pass_not_service`), against the XDP_PASS program with the same frames (the \
             kernel's UDP then finds no socket in both). The IPv4 floor runs send the established mode's frames.\n\n\
             **Time a packet** is the pipeline's: the generator's sending time over the frames the program handled \
             (fj-lb's `forwarded`, or `pass_not_service`; a baseline's, the frames its eth0 received), so \
             1 / the handled rate. The generator, the bridge and the LB's XDP run in softirq on the same {cpus} CPUs \
             (mostly the generator's), so a costlier program lowers the rate and what the LB does not keep up with is \
             lost on its veth ring; this time includes the generator's and the bridge's work, which is why the ratios \
             are far below the in-kernel ones. **bpf_stats ns/run** is the kernel's own run time \
             of the program on the link (`kernel.bpf_stats_enabled` = 1 for this section, restored after; run_time_ns / \
             run_cnt deltas from `bpftool prog show --json`): the program alone, a cross-check; bpf_stats adds its own \
             clock reads to every run of every program. Goals are issue 14's, reported and never enforced."
        ),
    );
    let p = match res {
        Ok(p) => p,
        Err(e) => {
            let cell = r.fail("pipeline", e);
            r.para(&format!("Not measured: {cell}"));
            r.put("pipeline", json!({"error": e}));
            return;
        }
    };
    let mut rows = Vec::new();
    let mut crows = Vec::new();
    let mut beyond = Vec::new();
    let mut j = serde_json::Map::new();
    for mode in Mode::ALL {
        let s: Vec<Sandwich> = p.rounds.iter().map(|round| sandwich(round, mode)).collect();
        let m = |g: fn(&Sandwich) -> f64| med(s.iter().map(g));
        let (time_ratio, ns_above, bpf_lb, bpf_base) = (m(|x| x.time_ratio), m(|x| x.ns_above), m(|x| x.bpf_lb), m(|x| x.bpf_base));
        let bpf_above = m(|x| x.bpf_lb - x.bpf_base);
        // What the pipeline adds over the programs' own difference: the paths after the LB.
        let after_lb = m(|x| (x.lb_ns - x.base_ns) - (x.bpf_lb - x.bpf_base));
        beyond.push(format!("{} {:+.0} ns", mode.key().replace('_', " "), after_lb));
        let label = mode.label();
        // IPv6 against IPv4 established, round by round: the program's own time, and the time
        // a packet over each one's own floor (their frames differ in size and path).
        let v4: Vec<Sandwich> = p.rounds.iter().map(|round| sandwich(round, Mode::Established)).collect();
        let v6_bpf = med(s.iter().zip(&v4).map(|(a, b)| a.bpf_lb / b.bpf_lb));
        let v6_time = med(s.iter().zip(&v4).map(|(a, b)| a.time_ratio / b.time_ratio));
        let goal = match mode {
            Mode::Established => goal_ratio(time_ratio, GOAL_ESTABLISHED_RATIO, bpf_lb / bpf_base),
            Mode::NewFlow => goal_ratio(time_ratio, GOAL_NEW_FLOW_RATIO, bpf_lb / bpf_base),
            Mode::Established6 => goal_ipv6(v6_time, v6_bpf),
            Mode::NoService => goal_ns(ns_above, bpf_above),
        };
        rows.push(vec![
            label.into(),
            match mode {
                Mode::NoService => "XDP_PASS program".into(),
                Mode::Established6 => "floor (MACs to a backend, XDP_TX), IPv6 frames".into(),
                _ => "floor (MACs to a backend, XDP_TX)".into(),
            },
            format!("{} / {}", f(m(|x| x.lb_mpps), 3), f(m(|x| x.base_mpps), 3)),
            format!("{} / {}", f(m(|x| x.lb_ns), 0), f(m(|x| x.base_ns), 0)),
            format!("{}× ({})", f(time_ratio, 2), s.iter().map(|x| f(x.time_ratio, 2)).collect::<Vec<_>>().join(", ")),
            format!("{}×", f(m(|x| x.rate_ratio), 2)),
            format!("{:+.0}", ns_above),
            format!("{} / {} ({:+.0})", f(bpf_lb, 0), f(bpf_base, 0), bpf_above),
            goal,
        ]);
        // Counters over every counted fj-lb run of this mode.
        let runs: Vec<&Run> = p.rounds.iter().flat_map(|round| round.iter().zip(ROUND)).filter(|(_, (pr, md))| *pr == Prog::Balancer && *md == mode).map(|(x, _)| x).collect();
        let sum = |g: &dyn Fn(&Run) -> u64| runs.iter().map(|x| g(x)).sum::<u64>();
        let c = |k: &'static str| move |x: &Run| x.counters.get(k).copied().unwrap_or(0);
        let (sent, bridge, lb_rx, handled) = (sum(&|x| x.tx.packets), sum(&|x| x.bridge_rx), sum(&|x| x.lb_rx), sum(&|x| x.handled));
        let (miss, hit, skipped, failed) = (sum(&c("flow_miss")), sum(&c("flow_hit")), sum(&c("flow_insert_skipped")), sum(&c("flow_insert_failed")));
        let mut totals: BTreeMap<String, u64> = BTreeMap::new();
        for x in &runs {
            for (k, v) in &x.counters {
                *totals.entry(k.clone()).or_default() += v;
            }
        }
        crows.push(vec![
            label.into(),
            sent.to_string(),
            bridge.to_string(),
            format!("{lb_rx} ({}% lost at the LB)", f(100.0 * bridge.saturating_sub(lb_rx) as f64 / bridge.max(1) as f64, 1)),
            handled.to_string(),
            format!("{miss} ({}% of those)", f(100.0 * miss as f64 / lb_rx.max(1) as f64, 1)),
            hit.to_string(),
            skipped.to_string(),
            failed.to_string(),
        ]);
        let per_round = |g: fn(&Sandwich) -> f64| s.iter().map(g).collect::<Vec<f64>>();
        j.insert(
            mode.key().into(),
            json!({
                "baseline": if mode.baseline() == Prog::Pass { "xdp_pass" } else { "floor_macs_to_backend_xdp_tx" },
                "vs_ipv4_established": if mode == Mode::Established6 { json!({"bpf_stats_ns_per_run_ratio": v6_bpf, "time_per_packet_ratio_ratio": v6_time}) } else { Value::Null },
                "median": {"fj_lb_mpps": m(|x| x.lb_mpps), "baseline_mpps": m(|x| x.base_mpps),
                    "fj_lb_ns_per_packet": m(|x| x.lb_ns), "baseline_ns_per_packet": m(|x| x.base_ns),
                    "time_per_packet_ratio": time_ratio, "rate_ratio": m(|x| x.rate_ratio), "ns_above_baseline": ns_above,
                    "bpf_stats_ns_per_run_fj_lb": bpf_lb, "bpf_stats_ns_per_run_baseline": bpf_base, "bpf_stats_ns_above_baseline": bpf_above,
                    "busy_cpu_ns_per_packet_fj_lb": m(|x| x.cpu_lb), "busy_cpu_ns_per_packet_baseline": m(|x| x.cpu_base),
                    "ns_above_baseline_minus_bpf_stats_ns_above": after_lb},
                "per_round": {"time_per_packet_ratio": per_round(|x| x.time_ratio), "rate_ratio": per_round(|x| x.rate_ratio),
                    "ns_above_baseline": per_round(|x| x.ns_above), "fj_lb_mpps": per_round(|x| x.lb_mpps), "baseline_mpps": per_round(|x| x.base_mpps),
                    "bpf_stats_ns_per_run_fj_lb": per_round(|x| x.bpf_lb), "bpf_stats_ns_per_run_baseline": per_round(|x| x.bpf_base),
                    "busy_cpu_ns_per_packet_fj_lb": per_round(|x| x.cpu_lb), "busy_cpu_ns_per_packet_baseline": per_round(|x| x.cpu_base),
                    "fj_lb_busy_cpu_s_by_cpu": runs.iter().map(|x| x.cpu_busy.clone()).collect::<Vec<_>>(),
                    "fj_lb_softirq_s_by_cpu": runs.iter().map(|x| x.cpu_softirq.clone()).collect::<Vec<_>>()},
                "totals_over_counted_fj_lb_runs": {"sent": sent, "reached_bridge": bridge, "lb_eth0_rx": lb_rx, "handled": handled,
                    "flow_miss": miss, "flow_hit": hit, "flow_insert_skipped": skipped, "flow_insert_failed": failed, "counters": totals},
            }),
        );
    }
    r.table(
        &[
            "mode",
            "baseline",
            "Mpps, fj-lb / baseline",
            "time a packet ns, fj-lb / baseline",
            "time a packet vs baseline (each round)",
            "rate vs baseline",
            "ns a packet above baseline",
            "bpf_stats ns/run, fj-lb / baseline (above)",
            "goal (issue 14)",
        ],
        &rows,
    );
    r.para(&format!(
        "The time a packet includes every hop after the LB. Both programs' frames take the same path after it (the \
         floor's to backend b1, fj-lb's to b1–b3: the same kind of namespace, UDP with no socket; frames for no service \
         to the LB's own stack either way), so the ns a packet above the baseline minus the programs' own difference \
         (bpf_stats), median over rounds, should be near 0; it is: {}. Where it is far from 0 the receivers differ \
         (the IPv6 frames, say, or backends' neighbour and ICMP work) and the bpf_stats figures are the balancer's.",
        beyond.join(", ")
    ));
    // Where the path's work ran: if all its softirq time is on the generator's CPU, the time a
    // packet is that CPU's time a packet; work on another CPU would not slow the generator.
    let mut softirq = vec![0.0; p.rounds.first().and_then(|r| r.first()).map_or(0, |x| x.cpu_softirq.len())];
    for x in p.rounds.iter().flatten() {
        for (t, v) in softirq.iter_mut().zip(&x.cpu_softirq) {
            *t += v;
        }
    }
    let total: f64 = p.rounds.iter().flatten().map(|x| x.tx.seconds).sum();
    r.para(&format!(
        "Softirq time by CPU over all counted runs ({} s of sending): {}. The path's work runs in the generator's \
         system call (live frames) and in softirq on the CPU that raised it; where it is all on one CPU, the time a \
         packet is that CPU's time a packet. Busy CPU by CPU is in the JSON (`fj_lb_busy_cpu_s_by_cpu`), machine-wide, \
         so with anything else running it says little.",
        f(total, 1),
        softirq.iter().enumerate().map(|(i, v)| format!("CPU {i} {} s", f(*v, 2))).collect::<Vec<_>>().join(", ")
    ));
    r.para("fj-lb's counters summed over the counted fj-lb runs of each mode (deltas of `fj-lb stats`):");
    r.table(
        &["mode", "frames sent", "reached the bridge", "reached the LB's XDP", "handled", "flow_miss", "flow_hit", "flow_insert_skipped", "flow_insert_failed"],
        &crows,
    );
    let mut all = serde_json::Map::new();
    all.insert("frames_per_run".into(), json!(p.frames));
    all.insert("rounds_counted".into(), json!(p.rounds.len()));
    all.insert("warmup_rounds".into(), json!(WARMUP_ROUNDS));
    all.insert("round".into(), json!(ROUND.iter().map(|(p, m)| format!("{p:?}/{}", m.key())).collect::<Vec<_>>()));
    all.insert("modes".into(), Value::Object(j));
    r.put("pipeline", Value::Object(all));
}

fn goal_ratio(ratio: f64, goal: f64, bpf_ratio: f64) -> String {
    let verdict = |x: f64| if !x.is_finite() { "—" } else if x <= goal { "met" } else { "not met" };
    format!("≤ {goal}×: {} by time a packet; bpf_stats {}× ({})", verdict(ratio), f(bpf_ratio, 2), verdict(bpf_ratio))
}

fn goal_ipv6(time_vs_v4: f64, bpf_vs_v4: f64) -> String {
    let verdict = |x: f64| if !x.is_finite() { "—" } else if (x - 1.0).abs() <= GOAL_IPV6_WITHIN { "met" } else { "not met" };
    format!(
        "within {}% of IPv4: time a packet over its floor {}× IPv4's ({}); bpf_stats {}× IPv4's ({})",
        GOAL_IPV6_WITHIN * 100.0,
        f(time_vs_v4, 3),
        verdict(time_vs_v4),
        f(bpf_vs_v4, 2),
        verdict(bpf_vs_v4)
    )
}

fn goal_ns(above: f64, bpf_above: f64) -> String {
    let verdict = |x: f64| if !x.is_finite() { "—" } else if x <= GOAL_NO_SERVICE_NS { "met" } else { "not met" };
    format!("≤ +{GOAL_NO_SERVICE_NS} ns: {} by time a packet; bpf_stats {:+.0} ns ({})", verdict(above), bpf_above, verdict(bpf_above))
}
