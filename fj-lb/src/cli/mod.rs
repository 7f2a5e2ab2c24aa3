//! The command line: every subcommand and flag, declared once with clap. The binary parses
//! it; the man pages and shell completions are generated from the same definition
//! (`manual`), so they cannot drift from `--help`.
pub mod manual;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::model::config::DEFAULT_CONTROL_SOCKET;

#[derive(Parser)]
#[command(name = "fj-lb", version, about = "XDP layer-4 load balancer with direct server return")]
pub struct Cli {
    /// The running daemon's control socket.
    #[arg(long, global = true, env = "FJ_LB_SOCKET", default_value = DEFAULT_CONTROL_SOCKET)]
    pub socket: PathBuf,
    /// Print JSON instead of a table (field names are stable; see the README).
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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
    /// The data path's decisions, live: one line per packet matching every filter given
    /// (5-tuple, service, backend and `flow hit` / `maglev slot N`, or the pass or drop
    /// reason), until `--count` packets or Ctrl-C. Tracing stops when this command does.
    Trace {
        /// Packets to this address (a VIP, or any address the program sees).
        #[arg(long)]
        vip: Option<String>,
        /// Packets to this service (its VIP, port and protocol).
        #[arg(long)]
        service: Option<String>,
        /// Packets sent to this backend (an address; with --service when it serves several).
        #[arg(long)]
        backend: Option<String>,
        /// Packets decided so: a counter name of `fj-lb stats` (forwarded, pass_not_service,
        /// drop_no_backend, ...).
        #[arg(long)]
        reason: Option<String>,
        /// Packets from this client address.
        #[arg(long)]
        client: Option<String>,
        /// Stop after this many packets.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        count: Option<u64>,
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
        /// IPv4 or IPv6, as `--dst`.
        #[arg(long)]
        src: std::net::IpAddr,
        #[arg(long)]
        dst: std::net::IpAddr,
        #[arg(long, default_value_t = 9)]
        port: u16,
        #[arg(long, default_value_t = 10_000_000)]
        packets: u64,
        /// Cycle through this many 5-tuples a CPU (established flows); 0: every packet a new one.
        #[arg(long, default_value_t = 0)]
        flows: u32,
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
    /// Print a completion script for SHELL on stdout, e.g.
    /// `fj-lb completions bash > /etc/bash_completion.d/fj-lb`.
    Completions { shell: clap_complete::Shell },
    /// Write the man pages (fj-lb.8, one fj-lb-COMMAND.8 per command, fj-lb.toml.5) into DIR;
    /// packaging uses it.
    #[command(hide = true)]
    Manual {
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum ImportFrom {
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
