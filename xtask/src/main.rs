//! Thin developer commands, as in aya's own repo: setup (idempotent installs), run, lab, test.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

mod deb;
mod fuzz;
mod setup;

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what building and testing need, only what is missing: apt packages, the
    /// nightly rust-src component, bpf-linker built against nightly's own LLVM.
    Setup,
    /// Build fj-lb (release) and run the daemon as root, e.g.
    /// `cargo xtask run -- --config /etc/fj-lb/fj-lb.toml`; arguments that start with a
    /// subcommand go to it instead (`cargo xtask run -- status`).
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build a client, two LB hosts (VRRP) and three backends in network namespaces, run
    /// fj-lb with the embedded default config, send requests through the VIP, show who
    /// answered, then kill the master.
    Lab {
        /// Instead: a router running BIRD 2 with ECMP and three LB hosts announcing the VIP over
        /// BGP (fj-lb's `[announce]`); kills one host and shows the flows surviving.
        #[arg(long, conflicts_with = "l3")]
        ecmp: bool,
        /// Instead: layer-3 direct return, backends behind a router running `fj-lb decap`, IPIP
        /// and GUE.
        #[arg(long)]
        l3: bool,
    },
    /// Benchmarks: per-packet cost and scaling in the kernel, control-plane timings, and end to
    /// end against HAProxy and direct; a Markdown report and a PNG chart in target/bench/.
    Bench {
        /// Only the in-kernel part (no namespaces, no wrk/HAProxy).
        #[arg(long)]
        quick: bool,
    },
    /// Build the Debian package target/debian/fj-lb_VERSION_amd64.deb (release build, with
    /// the systemd unit, /etc/fj-lb/fj-lb.toml as a conffile, man pages and completions).
    Deb,
    /// Run every test: unit, XDP program fixtures, namespace integration.
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter). With none, the fuzz
        /// targets also run, a few seconds each.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run every fuzz target (fuzz/) for a while, new inputs added to fuzz/corpus; then the
    /// XDP program against its reference model with a new seed, 20,000 cases a minute.
    Fuzz {
        #[arg(long, default_value_t = 10)]
        minutes: u64,
    },
}

/// Seconds per fuzz target in `cargo xtask test`.
const FUZZ_IN_TEST_S: u64 = 8;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(workspace_root());
    c
}

fn build_fj_lb(release: bool) -> Result<PathBuf> {
    let mut c = cargo();
    c.args(["build", "--package", "fj-lb", "--bin", "fj-lb"]);
    if release {
        c.arg("--release");
    }
    run(&mut c)?;
    Ok(workspace_root().join("target").join(if release { "release" } else { "debug" }).join("fj-lb"))
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Setup => setup::setup(),
        Cmd::Run { mut args } => {
            setup::setup()?;
            let bin = build_fj_lb(true)?;
            if args.first().is_none_or(|a| a.starts_with('-')) {
                args.insert(0, "run".into());
            }
            exec_as_root(&bin, &args)
        }
        Cmd::Lab { ecmp, l3 } => {
            setup::setup()?;
            let bin = build_fj_lb(false)?;
            let mut c = cargo();
            let lab = if ecmp { "fj-lb-lab-ecmp" } else { "fj-lb-lab" };
            c.args(["run", "--quiet", "--package", "fj-lb-tests", "--bin", lab]).env("FJ_LB_BIN", &bin);
            if l3 {
                c.args(["--", "--l3"]);
            }
            run(&mut c)
        }
        Cmd::Bench { quick } => {
            setup::setup()?;
            setup::bench_tools()?;
            bench(quick)
        }
        Cmd::Deb => {
            setup::setup()?;
            deb::release()
        }
        Cmd::Test { args } => {
            setup::setup()?;
            let bin = build_fj_lb(false)?;
            // The package's tests look at a .deb of the debug build just made: the same
            // packaging as `cargo xtask deb` in seconds, without a release build.
            let deb = deb::build(&bin, deb::Profile::Dev, &workspace_root().join("target/debian-test"))?;
            let mut c = cargo();
            c.env("FJ_LB_DEB", &deb);
            // Run as root, nothing may skip: a privileged test that finds itself without root
            // fails instead (see fj_lb_tests::require_root!).
            c.arg("test").args(&args).env("FJ_LB_BIN", &bin).env("FJT_REQUIRE_PRIVILEGED", "1");
            run(&mut c)?;
            if args.is_empty() {
                fuzz::fuzz(std::time::Duration::from_secs(FUZZ_IN_TEST_S), false)?;
            }
            Ok(())
        }
        Cmd::Fuzz { minutes } => {
            setup::setup()?;
            let each = std::time::Duration::from_secs(minutes * 60 / fuzz::TARGETS.len() as u64);
            fuzz::fuzz(each, true)?;
            // About half the time again: 20,000 cases of each of the two tests take some 25 s.
            fuzz::model(minutes.max(1) * 20_000)
        }
    }
}

fn bench(quick: bool) -> Result<()> {
    let root = workspace_root();
    let out = root.join("target/bench");
    std::fs::create_dir_all(&out)?;
    run(cargo().args(["bench", "--package", "fj-lb", "--bench", "datapath"]))?;
    let mut parts = vec![std::fs::read_to_string(out.join("datapath.md"))?];
    if !quick {
        let bin = build_fj_lb(true)?;
        run(cargo().args(["build", "--release", "--package", "fj-lb-bench", "--bin", "fj-lb-bench-e2e"]))?;
        run(Command::new(root.join("target/release/fj-lb-bench-e2e")).env("FJ_LB_BIN", &bin))?;
        parts.push(std::fs::read_to_string(out.join("e2e.md"))?);
    }
    let chart = out.join("scaling.png");
    match Command::new("python3")
        .arg(root.join("xtask/scripts/plot_scaling.py"))
        .arg(out.join("datapath.json"))
        .arg(&chart)
        .status()
    {
        Ok(s) if s.success() => parts.push("\n![per-packet cost as the configuration grows](scaling.png)\n".into()),
        _ => eprintln!("bench: the scaling chart could not be drawn (python3 with matplotlib)"),
    }
    let report = out.join("report.md");
    std::fs::write(&report, parts.join("\n"))?;
    println!("\nreport: {}\nchart:  {}", report.display(), chart.display());
    Ok(())
}

/// Replaces xtask with fj-lb so signals (Ctrl-C, SIGTERM from systemd) reach the daemon
/// directly; goes through sudo when not root (XDP needs CAP_BPF and CAP_NET_ADMIN).
fn exec_as_root(bin: &Path, args: &[String]) -> Result<()> {
    use std::os::unix::process::CommandExt as _;
    let is_root = unsafe { libc_geteuid() } == 0;
    let mut c = if is_root {
        Command::new(bin)
    } else {
        let mut s = Command::new("sudo");
        s.arg("--preserve-env=RUST_LOG").arg(bin);
        s
    };
    c.args(args);
    Err(c.exec()).with_context(|| format!("executing {}", bin.display()))
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}
