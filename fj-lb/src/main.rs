use std::{
    io::{IsTerminal as _, Write as _},
    path::PathBuf,
    process::ExitCode,
    time::Duration,
};

use anyhow::{Context as _, bail};
use clap::Parser as _;
use fj_lb::{
    cli::{Cli, Command, ImportFrom, manual},
    control::{
        self, Request,
        protocol::{FlowsReply, ReloadReply, StatsReply, TraceStarted},
    },
    daemon::{Daemon, DaemonError, Options},
    datapath,
    model::{
        addr::parse_mac,
        config::{self, ConfigError},
    },
    net::LiveHost,
    report::{
        status::{LookupReport, MaglevReport, Status},
        tables,
        trace::TraceEvent,
    },
};

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
        // Colour codes only for a person at a terminal: the journal and log files get plain
        // text, one event a line. NO_COLOR (no-color.org) turns them off at a terminal too.
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()))
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
        Command::Generate { interface, src_mac, dst_mac, src, dst, port, packets, flows } => report((|| {
            let g = datapath::generate(&interface, parse_mac(&src_mac)?, parse_mac(&dst_mac)?, src, dst, port, packets, flows)?;
            println!("{}", serde_json::to_string(&g)?);
            Ok(())
        })()),
        Command::Completions { shell } => report((|| {
            std::io::stdout().write_all(&manual::completions(shell))?;
            Ok(())
        })()),
        Command::Manual { out } => report(write_manual(&out)),
        Command::Trace { vip, service, backend, reason, client, count } => {
            report(trace(&cli.socket, cli.json, Request::Trace { vip, service, backend, reason, client, count }, count))
        }
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
        | Command::Completions { .. }
        | Command::Manual { .. }
        | Command::Import { .. }
        | Command::Trace { .. }
        | Command::Decap { .. } => unreachable!("handled in main"),
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
        // The match above lists them; they never get here.
        _ => unreachable!("handled in main"),
    };
    print!("{out}");
    Ok(())
}

/// `fj-lb trace`: the filter on stderr, then one line (or one JSON object) per packet on
/// stdout until `count` of them; Ctrl-C ends it sooner (the daemon sees the connection close
/// and stops tracing).
fn trace(socket: &std::path::Path, json: bool, req: Request, count: Option<u64>) -> anyhow::Result<()> {
    let mut seen = 0u64;
    let mut out = std::io::stdout().lock();
    let mut failed = None;
    control::stream(
        socket,
        &req,
        Duration::from_secs(30),
        |s: TraceStarted| eprintln!("tracing {}{}", s.filter, count.map_or("; Ctrl-C to stop".into(), |n| format!(", {n} of them"))),
        |e: TraceEvent| {
            let line = if json { serde_json::to_string(&e).expect("events serialise") } else { fj_lb::report::trace::line(&e) };
            // A closed stdout (`| head`) ends the trace like Ctrl-C.
            if let Err(e) = writeln!(out, "{line}") {
                failed = Some(e);
                return false;
            }
            seen += 1;
            count.is_none_or(|n| seen < n)
        },
    )?;
    match failed {
        Some(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
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

fn write_manual(dir: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for page in manual::pages()? {
        let path = dir.join(&page.file);
        std::fs::write(&path, &page.roff).with_context(|| format!("writing {}", path.display()))?;
        println!("{}", path.display());
    }
    Ok(())
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
