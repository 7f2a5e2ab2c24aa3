//! `cargo xtask setup`: brings a fresh machine to where the README's commands work, and does
//! nothing (in seconds) on one that is already there.
use std::process::Command;

use anyhow::{Context as _, Result, bail};

use crate::run;

/// Debian packages the tests and the lab use: `iproute2` for namespaces, `nginx` as the
/// backends' HTTP server, `util-linux` for nsenter, keepalived as the VRRP peer fj-lb must
/// interoperate with, tshark to check fj-lb's adverts on the wire, chromium to load the stats
/// page in a real browser, lintian to check the Debian package, BIRD 2 as the BGP speaker of
/// the ECMP lab and tests (router and LB hosts; fj-lb only keeps the routes it exports),
/// nftables for a switch that drops multicast VRRP, haproxy for the example configs
/// `fj-lb import` is tested on (keepalived's samples come with keepalived):
/// /usr/share/doc/haproxy/examples, and bpftool to read what the data path holds (the trace
/// tests check the pinned settings with it; the benchmarks read programs' run times).
const APT_PACKAGES: &[&str] = &[
    "iproute2", "nginx", "util-linux", "curl", "keepalived", "tshark", "chromium", "lintian", "bird2", "nftables", "haproxy",
    "bpftool",
];

/// cargo-deb, pinned: `cargo xtask test` packages the debug build, which 3.x does with a
/// warning and a later release may refuse.
const CARGO_DEB_VERSION: &str = "3.8.0";

/// What the end-to-end benchmark adds: load generators (haproxy, the proxy we compare
/// against, is installed for the tests already).
const BENCH_PACKAGES: &[&str] = &["wrk", "iperf3"];

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("starting {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn apt_installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

fn apt(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages.iter().copied().filter(|p| !apt_installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("setup: installing Debian packages {missing:?}");
    run(Command::new("apt-get").arg("update").arg("-q"))?;
    // tshark asks whether non-root users may capture; the answer does not matter here.
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// Benchmark-only tools: apt packages and matplotlib for the chart.
pub fn bench_tools() -> Result<()> {
    apt(BENCH_PACKAGES)?;
    let has_matplotlib = Command::new("python3").args(["-c", "import matplotlib"]).output().is_ok_and(|o| o.status.success());
    if !has_matplotlib {
        eprintln!("setup: installing matplotlib for the benchmark chart");
        run(Command::new("python3").args(["-m", "pip", "install", "--quiet", "matplotlib"]))?;
    }
    Ok(())
}

fn nightly() -> Result<()> {
    let toolchains = output(Command::new("rustup").args(["toolchain", "list"]))?;
    if !toolchains.lines().any(|l| l.starts_with("nightly")) {
        eprintln!("setup: installing the nightly toolchain (the eBPF build needs it)");
        run(Command::new("rustup").args(["toolchain", "install", "nightly", "--profile", "minimal"]))?;
    }
    let comps = output(Command::new("rustup").args(["component", "list", "--toolchain", "nightly", "--installed"]))?;
    if !comps.lines().any(|l| l.starts_with("rust-src")) {
        eprintln!("setup: adding rust-src to nightly");
        run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))?;
    }
    Ok(())
}

/// bpf-linker must link against the LLVM that nightly rustc itself uses: its sysroot ships
/// `libLLVM.so.<version>`; a `libLLVM.so` link beside it lets llvm-sys find it.
fn bpf_linker() -> Result<()> {
    if Command::new("bpf-linker").arg("--version").output().is_ok_and(|o| o.status.success()) {
        return Ok(());
    }
    let vv = output(Command::new("rustc").args(["+nightly", "-vV"]))?;
    let major = vv
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .context("rustc +nightly -vV does not say its LLVM version")?
        .to_string();
    let sysroot = output(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))?.trim().to_string();
    let lib = std::path::Path::new(&sysroot).join("lib");
    let versioned = std::fs::read_dir(&lib)
        .with_context(|| format!("reading {}", lib.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("libLLVM.so.") || (n.starts_with("libLLVM-") && n.ends_with(".so")))
        .with_context(|| format!("no libLLVM shared library in {}", lib.display()))?;
    let link = lib.join("libLLVM.so");
    if !link.exists() {
        std::os::unix::fs::symlink(&versioned, &link).with_context(|| format!("linking {}", link.display()))?;
    }
    eprintln!("setup: building bpf-linker against nightly's LLVM {major} (about a minute)");
    run(Command::new("cargo")
        .args(["+nightly", "install", "bpf-linker", "--no-default-features", "--features"])
        .arg(format!("llvm-{major}"))
        .env("LLVM_PREFIX", &sysroot))
}

/// cargo-deb, for `cargo xtask deb` and the package's tests (a few minutes to build, once).
fn cargo_deb() -> Result<()> {
    if Command::new("cargo").args(["deb", "--version"]).output().is_ok_and(|o| o.status.success()) {
        return Ok(());
    }
    eprintln!("setup: installing cargo-deb {CARGO_DEB_VERSION} (builds the Debian package; a few minutes, once)");
    run(Command::new("cargo").args(["install", "cargo-deb", "--locked", "--version", CARGO_DEB_VERSION]))
}

pub fn setup() -> Result<()> {
    apt(APT_PACKAGES)?;
    nightly()?;
    bpf_linker()?;
    cargo_deb()?;
    Ok(())
}
