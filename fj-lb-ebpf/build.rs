use which::which;

/// The eBPF object depends on bpf-linker: rebuild when it changes (e.g. after `cargo xtask setup`
/// rebuilt it against a new nightly LLVM).
fn main() {
    match which("bpf-linker") {
        Ok(path) => println!("cargo:rerun-if-changed={}", path.display()),
        Err(e) => println!("cargo:warning=bpf-linker not found ({e}); run `cargo xtask setup`"),
    }
}
