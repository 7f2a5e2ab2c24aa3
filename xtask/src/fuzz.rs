//! `cargo xtask fuzz`: every fuzz target in fuzz/ (cargo-fuzz, libFuzzer, nightly) for a
//! bounded time each, starting from the corpus kept in the tree. Short runs are part of
//! `cargo xtask test`; they write what they discover to target/, never into the tree.
use std::{path::Path, process::Command, time::Duration};

use anyhow::{Context as _, Result, bail};

use crate::{run, workspace_root};

pub const TARGETS: &[&str] = &["vrrp_advert", "vrrp_validate", "config", "control_request", "import"];

/// cargo-fuzz, from crates.io, once.
pub fn install() -> Result<()> {
    if Command::new("cargo").args(["fuzz", "--version"]).output().is_ok_and(|o| o.status.success()) {
        return Ok(());
    }
    eprintln!("setup: installing cargo-fuzz");
    run(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))
}

/// Runs each target for `each`. With `keep`, new inputs go into the tree's corpus (a long run
/// whose finds are worth keeping); otherwise into target/fuzz-corpus.
pub fn fuzz(each: Duration, keep: bool) -> Result<()> {
    install()?;
    let root = workspace_root();
    let fuzz_dir = root.join("fuzz");
    let mut failed = Vec::new();
    for t in TARGETS {
        let seeds = fuzz_dir.join("corpus").join(t);
        let work = if keep { seeds.clone() } else { root.join("target/fuzz-corpus").join(t) };
        std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
        eprintln!("fuzz: {t} for {} s", each.as_secs());
        let mut c = Command::new("cargo");
        c.current_dir(&fuzz_dir)
            .args(["+nightly", "fuzz", "run", "--sanitizer", "none", t])
            .arg(&work)
            .args(if keep { vec![] } else { vec![seeds.as_os_str().to_owned()] })
            .arg("--")
            .arg(format!("-max_total_time={}", each.as_secs().max(1)))
            // Bounded memory and time per input: an input that needs more is a finding.
            .args(["-rss_limit_mb=2048", "-timeout=10", "-max_len=65536"])
            // The pure core only: no XDP object is built or embedded.
            .env("AYA_BUILD_SKIP", "1");
        let status = c.status().with_context(|| format!("starting {c:?}"))?;
        if !status.success() {
            failed.push(*t);
        }
    }
    let artifacts = fuzz_dir.join("artifacts");
    println!("fuzz: {} passed, {} failed", TARGETS.len() - failed.len(), failed.len());
    if !failed.is_empty() {
        bail!("fuzz targets {failed:?} found crashes; the inputs are in {}", display(&artifacts));
    }
    Ok(())
}

fn display(p: &Path) -> String {
    p.display().to_string()
}

/// The property tests of the XDP program against its reference model
/// (fj-lb/tests/xdp_program/model.rs) with `cases` cases and a new seed, printed so that a
/// failure can be run again (`MODEL_SEED=... MODEL_CASES=...`).
pub fn model(cases: u64) -> Result<()> {
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(15, |d| d.as_secs());
    eprintln!("fuzz: the XDP program against its model, {cases} cases, MODEL_SEED={seed}");
    run(Command::new("cargo")
        .current_dir(workspace_root())
        .args(["test", "-p", "fj-lb", "--test", "xdp_program", "model::"])
        .env("MODEL_CASES", cases.to_string())
        .env("MODEL_SEED", seed.to_string()))
}
