use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

/// Builds the XDP objects with the nightly toolchain and bpf-linker: aya-build builds every
/// binary of fj-lb-ebpf and copies each to `OUT_DIR/<binary name>`, so `OUT_DIR/fj-lb` (the
/// balancer, embedded by `src/datapath/mod.rs`), `OUT_DIR/fj-lb-aux` (helper programs,
/// embedded by `src/datapath/aux.rs`) and `OUT_DIR/fj-lb-decap` (`src/datapath/decap.rs`).
/// `cargo xtask setup` installs the toolchain and linker.
fn main() -> anyhow::Result<()> {
    // The fuzz targets (fuzz/) exercise the pure core only: they build with AYA_BUILD_SKIP=1
    // and get empty objects in place of the XDP programs, which they never load.
    if std::env::var_os("AYA_BUILD_SKIP").is_some_and(|v| v == "1") {
        let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").context("OUT_DIR")?);
        for object in ["fj-lb", "fj-lb-aux", "fj-lb-decap"] {
            std::fs::write(out.join(object), []).context("writing a placeholder object")?;
        }
        println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
        return Ok(());
    }
    let cargo_metadata::Metadata { packages, .. } = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("MetadataCommand::exec")?;
    let ebpf_package = packages
        .into_iter()
        .find(|p| p.name.as_str() == "fj-lb-ebpf")
        .ok_or_else(|| anyhow!("fj-lb-ebpf package not found"))?;
    let root_dir = ebpf_package
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {}", ebpf_package.manifest_path))?;
    aya_build::build_ebpf(
        [Package {
            name: ebpf_package.name.as_str(),
            root_dir: root_dir.as_str(),
            ..Default::default()
        }],
        Toolchain::default(),
    )
}
