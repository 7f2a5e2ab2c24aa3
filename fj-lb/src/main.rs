use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use fj_lb::{
    control::{
        self, Request,
        protocol::{FlowsReply, ReloadReply, StatsReply},
    },
    daemon::{Daemon, DaemonError, Options},
    datapath,
    model::{
        addr::parse_mac,
        config::{self, ConfigError, DEFAULT_CONTROL_SOCKET},
    },
    net::LiveHost,
    report::{
        status::{LookupReport, MaglevReport, Status},
        tables,
    },
};

#[derive(Parser)]
#[command(name = "fj-lb", version, about = "XDP layer-4 load balancer with direct server return")]
struct Cli {
    /// The running daemon's control socket.
    #[arg(long, global = true, env = "FJ_LB_SOCKET", default_value = DEFAULT_CONTROL_SOCKET)]
    socket: PathBuf,
    /// Print JSON instead of a table (field names are stable; see the README).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the config, load and attach the balancer, and run until SIGINT/SIGTERM
    /// (SIGHUP reloads the config).
    Run {
        #[arg(long, short, default_value = "/etc/fj-lb/fj-lb.toml")]
        config: PathBuf,
        /// Start backends as healthy instead of waiting for `rise` passing checks.
        #[arg(long)]
        assume_healthy: bool,
    },
    /// Validate a config file without touching the system; exit code 2 if it is invalid.
    CheckConfig {
        #[arg(long, short, default_value = "/etc/fj-lb/fj-lb.toml")]
        config: PathBuf,
    },
    /// Interface, XDP mode, uptime, VRRP, and each service's backends and traffic.
    Status,
    /// One line per service.
    Services,
    /// Backends with health, weight, Maglev share and traffic.
    Backends { service: Option<String> },
    /// Entries of the flow table.
    Flows {
        #[arg(long)]
        service: Option<String>,
        #[arg(long)]
        backend: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Slots per backend in a service's Maglev table, against its weight.
    Maglev { service: String },
    /// Data-path counters summed over CPUs, with pass and drop reasons.
    Stats,
    /// Which backend a 5-tuple goes to, and why.
    Lookup {
        /// Client address, ADDRESS:PORT ([ADDRESS]:PORT for IPv6).
        src: String,
        /// VIP:PORT.
        dst: String,
        #[arg(default_value = "tcp")]
        protocol: String,
    },
    /// Weight 0: no new flows; established flows stay until they end.
    Drain { service: String, backend: String },
    /// Undo drain/weight: back to the config's weight.
    Enable { service: String, backend: String },
    /// Set a backend's weight until `enable` or a restart.
    Weight { service: String, backend: String, weight: u32 },
    /// Re-read the config file and apply the difference (same as SIGHUP).
    Reload,
    /// Benchmark packet source: send UDP frames out of an interface as fast as possible, each a
    /// new 5-tuple (BPF_PROG_TEST_RUN live frames); prints a JSON summary.
    #[command(hide = true)]
    Generate {
        #[arg(long)]
        interface: String,
        #[arg(long)]
        src_mac: String,
        #[arg(long)]
        dst_mac: String,
        #[arg(long)]
        src: std::net::Ipv4Addr,
        #[arg(long)]
        dst: std::net::Ipv4Addr,
        #[arg(long, default_value_t = 9)]
        port: u16,
        #[arg(long, default_value_t = 10_000_000)]
        packets: u64,
    },
    /// On a backend of an `ipip` or `gue` service: attach fj-lb's decapsulation XDP program
    /// (IPIP, IP6IP6, 4in6, GUE), which stays attached after this command exits. `--detach`
    /// removes it; `--stats` shows what it did.
    Decap {
        #[arg(long, short)]
        interface: String,
        /// Decapsulate packets whose inner destination is ADDR (repeatable).
        #[arg(long = "vip", value_name = "ADDR")]
        vips: Vec<std::net::IpAddr>,
        /// Decapsulate whatever the inner destination.
        #[arg(long, conflicts_with = "vips")]
        any_vip: bool,
        /// GUE's UDP port, as the services' `gue_port`.
        #[arg(long, default_value_t = fj_lb_common::DEFAULT_GUE_PORT)]
        gue_port: u16,
        /// native | skb | auto (native, falling back to skb).
        #[arg(long, default_value = "auto")]
        xdp_mode: String,
        /// bpffs directory for the pinned program and maps [default: /sys/fs/bpf/fj-lb-decap-IF].
        #[arg(long)]
        bpffs: Option<PathBuf>,
        /// Remove the program from the interface.
        #[arg(long, conflicts_with_all = ["vips", "any_vip", "stats"])]
        detach: bool,
        /// Show the program's counters.
        #[arg(long, conflicts_with_all = ["vips", "any_vip"])]
        stats: bool,
    },
    /// Attach a pass-through XDP program to veth peers so frames the balancer sends with
    /// XDP_TX are delivered (labs and tests); runs until SIGINT/SIGTERM.
    XdpPass {
        #[arg(long = "interface", short, required = true)]
        interfaces: Vec<String>,
        /// Attach the MAC-swap XDP_TX floor program instead (benchmarks).
        #[arg(long, hide = true)]
        floor: bool,
    },
}

/// Exit code for a config that fails validation, distinct from runtime failures.
const EXIT_BAD_CONFIG: u8 = 2;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,netlink_packet_route=error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config } => match config::load(&config, &LiveHost) {
            Ok(c) => {
                let backends: usize = c.services.iter().map(|s| s.backends.len()).sum();
                println!("{}: valid ({} services, {backends} backends)", config.display(), c.services.len());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(EXIT_BAD_CONFIG)
            }
        },
        Command::Run { config, assume_healthy } => run_daemon(config, Options { assume_healthy }),
        Command::XdpPass { interfaces, floor } => report(xdp_pass(&interfaces, floor)),
        Command::Decap { interface, vips, any_vip, gue_port, xdp_mode, bpffs, detach, stats } => {
            let dir = bpffs.unwrap_or_else(|| datapath::default_decap_dir(&interface));
            report(if detach {
                decap_detach(&interface, &dir, cli.json)
            } else if stats {
                decap_stats(&dir, cli.json)
            } else {
                decap_attach(&dir, interface, vips, any_vip, gue_port, &xdp_mode, cli.json)
            })
        }
        Command::Generate { interface, src_mac, dst_mac, src, dst, port, packets } => report((|| {
            let g = datapath::generate(&interface, parse_mac(&src_mac)?, parse_mac(&dst_mac)?, src, dst, port, packets)?;
            println!("{}", serde_json::to_string(&g)?);
            Ok(())
        })()),
        other => report(client(&cli.socket, cli.json, other)),
    }
}

fn report(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_daemon(config: PathBuf, opts: Options) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        let daemon = Daemon::start(&config, opts).await?;
        daemon.run().await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(DaemonError::Config(e @ (ConfigError::Invalid { .. } | ConfigError::Read { .. }))) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_BAD_CONFIG)
        }
        Err(e) => {
            eprintln!("error: {:#}", anyhow::Error::from(e));
            ExitCode::FAILURE
        }
    }
}

fn client(socket: &std::path::Path, json: bool, cmd: Command) -> anyhow::Result<()> {
    let req = match &cmd {
        Command::Status | Command::Services | Command::Backends { .. } => Request::Status {},
        Command::Flows { service, backend, limit } => {
            Request::Flows { service: service.clone(), backend: backend.clone(), limit: Some(*limit) }
        }
        Command::Maglev { service } => Request::Maglev { service: service.clone() },
        Command::Stats => Request::Stats {},
        Command::Lookup { src, dst, protocol } => {
            Request::Lookup { src: src.clone(), dst: dst.clone(), protocol: protocol.clone() }
        }
        Command::Drain { service, backend } => Request::Drain { service: service.clone(), backend: backend.clone() },
        Command::Enable { service, backend } => Request::Enable { service: service.clone(), backend: backend.clone() },
        Command::Weight { service, backend, weight } => {
            Request::Weight { service: service.clone(), backend: backend.clone(), weight: *weight }
        }
        Command::Reload => Request::Reload {},
        Command::Run { .. }
        | Command::CheckConfig { .. }
        | Command::XdpPass { .. }
        | Command::Generate { .. }
        | Command::Decap { .. } => {
            unreachable!("handled in main")
        }
    };
    let call = |req: &Request| Asker { socket, req: req.clone() };
    let out = match cmd {
        Command::Status | Command::Services | Command::Backends { .. } => {
            let mut st: Status = call(&req).get()?;
            if let Command::Backends { service: Some(name) } = &cmd {
                if !st.services.iter().any(|s| &s.name == name) {
                    bail!("no service named {name:?}");
                }
                st.services.retain(|s| &s.name == name);
            }
            match (&cmd, json) {
                (Command::Status, true) => pretty(&st)?,
                (_, true) => pretty(&st.services)?,
                (Command::Status, false) => tables::status(&st),
                (Command::Services, false) => tables::services(&st.services),
                _ => tables::backends(&st.services),
            }
        }
        Command::Flows { .. } => {
            let f: FlowsReply = call(&req).get()?;
            if json { pretty(&f)? } else { tables::flows(f.total_entries as u64, f.capacity as u64, &f.flows) }
        }
        Command::Maglev { .. } => {
            let m: MaglevReport = call(&req).get()?;
            if json { pretty(&m)? } else { tables::maglev(&m) }
        }
        Command::Lookup { .. } => {
            let l: LookupReport = call(&req).get()?;
            if json { pretty(&l)? } else { tables::lookup(&l) }
        }
        Command::Stats => {
            let stats: StatsReply = call(&req).get()?;
            if json {
                pretty(&stats)?
            } else {
                let rows: Vec<Vec<String>> = stats.iter().map(|(k, v)| vec![k.clone(), v.to_string()]).collect();
                tables::table(&["COUNTER", "VALUE"], &rows)
            }
        }
        Command::Reload => {
            let r: ReloadReply = call(&req).get()?;
            if json { pretty(&r)? } else { format!("{}\n", r.message) }
        }
        Command::Drain { .. } | Command::Enable { .. } | Command::Weight { .. } => {
            call(&req).get::<()>()?;
            if json { "null\n".into() } else { "ok\n".into() }
        }
        Command::Run { .. }
        | Command::CheckConfig { .. }
        | Command::XdpPass { .. }
        | Command::Generate { .. }
        | Command::Decap { .. } => {
            unreachable!("handled in main")
        }
    };
    print!("{out}");
    Ok(())
}

/// One request to the daemon, read back as the type the caller names.
struct Asker<'a> {
    socket: &'a std::path::Path,
    req: Request,
}

impl Asker<'_> {
    fn get<T: control::protocol::Answer>(self) -> anyhow::Result<T> {
        Ok(control::call(self.socket, &self.req, Duration::from_secs(30))?)
    }
}

/// `--json` output: pretty JSON and a newline.
fn pretty<T: serde::Serialize>(v: &T) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(v)? + "\n")
}

fn xdp_pass(interfaces: &[String], floor: bool) -> anyhow::Result<()> {
    let program = if floor { fj_lb_common::program_names::FLOOR } else { fj_lb_common::program_names::PASS };
    let _attached = datapath::attach_aux(program, interfaces).context("attaching the program")?;
    tracing::info!(?interfaces, "pass-through XDP attached; waiting for SIGINT/SIGTERM");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        anyhow::Ok(())
    })
}

fn decap_attach(
    dir: &std::path::Path,
    interface: String,
    vips: Vec<std::net::IpAddr>,
    any_vip: bool,
    gue_port: u16,
    xdp_mode: &str,
    json: bool,
) -> anyhow::Result<()> {
    if vips.is_empty() && !any_vip {
        bail!("say which inner destinations to decapsulate for: --vip ADDR (repeatable) or --any-vip");
    }
    let mode = match xdp_mode {
        "native" => config::XdpMode::Native,
        "skb" => config::XdpMode::Skb,
        "auto" => config::XdpMode::Auto,
        other => bail!("--xdp-mode {other:?} is not one of native, skb, auto"),
    };
    let req = datapath::DecapRequest { interface, vips: vips.clone(), any_vip, gue_port, mode };
    let done = datapath::attach_decap(dir, &req).context("attaching the decapsulation program")?;
    if json {
        print!("{}", pretty(&done)?);
    } else {
        let whom = if any_vip { "any destination".to_string() } else { vips.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", ") };
        println!(
            "decapsulating IPIP, IP6IP6, 4in6 and GUE (UDP port {gue_port}) for {whom} on {} ({} mode, program {}); pinned in {}: it stays after this command, `fj-lb decap --interface {} --detach` removes it",
            done.interface,
            done.mode.as_str(),
            done.program_id.map_or("?".into(), |id| id.to_string()),
            done.pinned.display(),
            done.interface
        );
    }
    Ok(())
}

fn decap_detach(interface: &str, dir: &std::path::Path, json: bool) -> anyhow::Result<()> {
    let was = datapath::detach_decap(dir).context("detaching the decapsulation program")?;
    if json {
        println!("{}", serde_json::json!({ "interface": interface, "detached": was }));
    } else if was {
        println!("decapsulation removed from {interface}");
    } else {
        println!("no decapsulation program was pinned in {} (nothing to remove on {interface})", dir.display());
    }
    Ok(())
}

fn decap_stats(dir: &std::path::Path, json: bool) -> anyhow::Result<()> {
    let stats = datapath::decap_stats(dir)?;
    if json {
        let m: std::collections::BTreeMap<&str, u64> = stats.iter().map(|(s, v)| (s.name(), *v)).collect();
        print!("{}", pretty(&m)?);
    } else {
        let rows: Vec<Vec<String>> = stats.iter().map(|(s, v)| vec![s.name().to_string(), v.to_string()]).collect();
        print!("{}", tables::table(&["COUNTER", "VALUE"], &rows));
    }
    Ok(())
}
