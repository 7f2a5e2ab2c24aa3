//! `cargo xtask deb`: the Debian package, made by cargo-deb from fj-lb/Cargo.toml's
//! `[package.metadata.deb]`. The man pages and completions in it are rendered by the very
//! binary being packaged (`fj-lb manual`, `fj-lb completions`) into
//! `fj-lb/target/deb-assets/`, where that table lists them.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::{cargo, run, workspace_root};

/// Which build goes into the package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// `cargo xtask deb`: the release build, best compression.
    Release,
    /// What `cargo xtask test` packages: the debug build it already has, stripped, fast
    /// compression; seconds instead of a release build.
    Dev,
}

/// Completion scripts: shell, and the file name the package's assets expect.
const COMPLETIONS: [(&str, &str); 3] = [("bash", "fj-lb.bash"), ("zsh", "_fj-lb"), ("fish", "fj-lb.fish")];

/// Renders the man pages and completions with `bin` into fj-lb/target/deb-assets.
fn assets(bin: &Path) -> Result<()> {
    let dir = workspace_root().join("fj-lb/target/deb-assets");
    let _ = std::fs::remove_dir_all(&dir);
    let completions = dir.join("completions");
    std::fs::create_dir_all(&completions).with_context(|| format!("creating {}", completions.display()))?;
    let out = Command::new(bin).arg("manual").arg("--out").arg(dir.join("man")).output()?;
    if !out.status.success() {
        bail!("{} manual failed: {}", bin.display(), String::from_utf8_lossy(&out.stderr));
    }
    for (shell, file) in COMPLETIONS {
        let out = Command::new(bin).args(["completions", shell]).output()?;
        if !out.status.success() {
            bail!("{} completions {shell} failed: {}", bin.display(), String::from_utf8_lossy(&out.stderr));
        }
        std::fs::write(completions.join(file), out.stdout)?;
    }
    Ok(())
}

/// Packages `bin` (built with `profile`) into `out`; returns the .deb's path.
pub fn build(bin: &Path, profile: Profile, out: &Path) -> Result<PathBuf> {
    assets(bin)?;
    let mut c = cargo();
    c.args(["deb", "--package", "fj-lb", "--no-build", "--output"]).arg(out);
    if profile == Profile::Dev {
        // cargo-deb warns that a dev build is not what releases are made of (true, and the
        // point here); -q keeps that out of the test suite's output.
        c.args(["--profile", "dev", "--strip", "--fast", "--quiet"]);
    }
    let output = c.output().context("running cargo deb (cargo xtask setup installs it)")?;
    if !output.status.success() {
        bail!("cargo deb failed:\n{}", String::from_utf8_lossy(&output.stderr));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let deb = stdout.lines().rev().find(|l| l.ends_with(".deb")).context("cargo deb printed no .deb path")?;
    let deb = workspace_root().join(deb.trim());
    if !deb.is_file() {
        bail!("cargo deb said {}, which is not a file", deb.display());
    }
    Ok(deb)
}

/// `cargo xtask deb`: the release package, what went in, and lintian's verdict.
pub fn release() -> Result<()> {
    let bin = crate::build_fj_lb(true)?;
    let deb = build(&bin, Profile::Release, &workspace_root().join("target/debian"))?;
    run(Command::new("dpkg-deb").arg("--info").arg(&deb))?;
    run(Command::new("dpkg-deb").arg("--contents").arg(&deb))?;
    run(Command::new("lintian").args(["--fail-on", "error,warning"]).arg(&deb))?;
    println!("\n{}", deb.display());
    Ok(())
}
