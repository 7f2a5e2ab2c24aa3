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
    /// Print an fj-lb.toml made from a keepalived.conf or haproxy.cfg; what could not be
    /// carried over goes to stderr with its file and line. Exit 0 if everything was, 3 if not.
    Import {
        #[command(subcommand)]
        from: ImportFrom,
    },
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

#[derive(Subcommand)]
enum ImportFrom {
    /// keepalived.conf, with what it includes: vrrp_instance, vrrp_sync_group, virtual_server.
    Keepalived {
        path: PathBuf,
        /// keepalived's config id (its `-i`): which `@id` lines apply.
        #[arg(long)]
        config_id: Option<String>,
    },
    /// haproxy.cfg: frontend/backend/listen sections in mode tcp.
    Haproxy { path: PathBuf },
}

/// Exit code for a config that fails validation, distinct from runtime failures.
const EXIT_BAD_CONFIG: u8 = 2;
/// Exit code of `fj-lb import` when some constructs were not carried over.
const EXIT_PARTIAL_IMPORT: u8 = 3;

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
        Command::Import { from } => import(from),
        Command::XdpPass { interfaces, floor } => report(xdp_pass(&interfaces, floor)),
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
        Command::Run { .. } | Command::CheckConfig { .. } | Command::XdpPass { .. } | Command::Generate { .. } | Command::Import { .. } => {
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
        Command::Run { .. } | Command::CheckConfig { .. } | Command::XdpPass { .. } | Command::Generate { .. } | Command::Import { .. } => {
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

/// The file system, for the importer (which is pure and reads through this).
struct Files;

impl fj_lb::import::Source for Files {
    fn read(&self, path: &std::path::Path) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }
    fn list(&self, dir: &std::path::Path) -> std::io::Result<Vec<String>> {
        std::fs::read_dir(dir)?.map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned())).collect()
    }
}

fn import(from: ImportFrom) -> ExitCode {
    let result = match &from {
        ImportFrom::Keepalived { path, config_id } => fj_lb::import::keepalived(path, &Files, config_id.as_deref()),
        ImportFrom::Haproxy { path } => fj_lb::import::haproxy(path, &Files),
    };
    match result {
        Ok(imported) => {
            print!("{}", imported.toml);
            for n in &imported.notes {
                eprintln!("not carried over: {n}");
            }
            if imported.notes.is_empty() {
                ExitCode::SUCCESS
            } else {
                eprintln!("{} construct(s) not carried over (or not exactly): see above", imported.notes.len());
                ExitCode::from(EXIT_PARTIAL_IMPORT)
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_BAD_CONFIG)
        }
    }
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
