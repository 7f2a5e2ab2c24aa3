use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use fj_lb::{
    config::{self, ConfigError, LiveHost},
    daemon::{Daemon, DaemonError},
    dataplane,
};

#[derive(Parser)]
#[command(name = "fj-lb", version, about = "XDP layer-4 load balancer with direct server return")]
struct Cli {
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
    },
    /// Validate a config file without touching the system; exit code 2 if it is invalid.
    CheckConfig {
        #[arg(long, short, default_value = "/etc/fj-lb/fj-lb.toml")]
        config: PathBuf,
    },
    /// Attach a pass-through XDP program to veth peers so frames the balancer sends with
    /// XDP_TX are delivered (labs and tests); runs until SIGINT/SIGTERM.
    XdpPass {
        #[arg(long = "interface", short, required = true)]
        interfaces: Vec<String>,
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
        Command::Run { config } => {
            let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: starting the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let result = rt.block_on(async {
                let daemon = Daemon::start(&config).await?;
                daemon.run().await
            });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(DaemonError::Config(e @ ConfigError::Invalid { .. })) | Err(DaemonError::Config(e @ ConfigError::Read { .. })) => {
                    eprintln!("error: {e}");
                    ExitCode::from(EXIT_BAD_CONFIG)
                }
                Err(e) => {
                    eprintln!("error: {:#}", anyhow::Error::from(e));
                    ExitCode::FAILURE
                }
            }
        }
        Command::XdpPass { interfaces } => match xdp_pass(&interfaces) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn xdp_pass(interfaces: &[String]) -> anyhow::Result<()> {
    let _attached = dataplane::attach_pass(interfaces).context("attaching the pass-through program")?;
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
