//! The edge between the daemon and the kernel's BPF side: loads the embedded XDP objects, sizes
//! and pins its maps, owns the XDP link, and offers typed access to each map. Nothing here
//! decides anything; the plans come from `model`. Depends on aya, libc and `fj-lb-common`.
mod adopt;
mod aux;
mod bpffs;
mod decap;
mod link;
mod loader;
mod maps;
mod mmap;
mod pinned;

use std::path::PathBuf;

use aya::{Ebpf, maps::MapError, programs::ProgramError};

pub use adopt::{Inherited, inherit, layout_marker};
pub use aux::{AUX_OBJECT, Generated, attach_aux, generate, load_aux};
pub use bpffs::{BpffsLock, ensure_bpffs, lock_bpffs};
pub use decap::{DECAP_OBJECT, DecapAttached, DecapRequest, attach_decap, decap_stats, default_decap_dir, detach_decap, load_decap};
pub use link::{AttachedMode, LINK_PIN};
pub use maps::trace_record;
pub use pinned::{count_entries, read_flows, unpin_maps};

/// The balancer's XDP object (`fj-lb-ebpf/src/main.rs`), built by `build.rs` with aya-build:
/// the `program_names::BALANCER` program and the maps of `map_names::ALL`, nothing else. The
/// helper programs are in `AUX_OBJECT`.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/fj-lb"));

#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("loading the XDP object into the kernel failed: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("program {name}: {source}")]
    Program {
        name: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: MapError,
    },
    #[error("attaching XDP to {interface} in {mode} mode failed: {source}")]
    Attach {
        interface: String,
        mode: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("the XDP link pinned at {pin} is on another interface than {interface} (it runs program {program}); refusing to take it over")]
    ForeignLink { pin: PathBuf, interface: String, program: u32 },
    #[error("another fj-lb is running with bpffs directory {0} (a daemon holds its lock); give each daemon its own `bpffs`")]
    BpffsInUse(PathBuf),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub(crate) fn map_err(name: &'static str) -> impl FnOnce(MapError) -> DataplaneError {
    move |source| DataplaneError::Map { name, source }
}

/// Loads (the kernel verifies) the XDP program `name` of a loaded object.
pub(crate) fn load_xdp(ebpf: &mut Ebpf, name: &'static str) -> Result<(), DataplaneError> {
    let prog: &mut aya::programs::Xdp = ebpf
        .program_mut(name)
        .expect("the embedded object has the program")
        .try_into()
        .map_err(|source| DataplaneError::Program { name, source })?;
    prog.load().map_err(|source| DataplaneError::Program { name, source })
}

/// Entries of the FLOWS map for `per_cpu` flows a CPU: with BPF_F_NO_COMMON_LRU each CPU
/// takes entries only from its own share (max_entries / CPUs), so the map is sized CPUs times
/// over. Otherwise one busy RX queue would evict established flows at a fraction of the size
/// the operator asked for.
pub fn flow_table_entries(per_cpu: u32) -> u32 {
    let cpus = aya::util::nr_cpus().map_or(1, |n| n.max(1)) as u64;
    u32::try_from(per_cpu as u64 * cpus).unwrap_or(u32::MAX)
}

/// The loaded balancer: its object (programs and maps), its XDP link, the mapped Maglev array.
pub struct Dataplane {
    pub(crate) ebpf: Ebpf,
    /// The attachment, owned for the daemon's whole life and let go only by `detach`.
    pub(crate) link: link::Held,
    pub(crate) maglev_mmap: Option<mmap::MmapTable>,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use fj_lb_common::{map_names, program_names};

    /// The program and map names of an embedded object, parsed as aya's loader parses it
    /// (no kernel needed).
    fn contents(object: &[u8]) -> (BTreeSet<String>, BTreeSet<String>) {
        let obj = aya_obj::Object::parse(object).expect("the embedded object parses");
        (obj.programs.keys().cloned().collect(), obj.maps.keys().cloned().collect())
    }

    fn set<'a>(names: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
        names.into_iter().map(String::from).collect()
    }

    #[test]
    fn the_balancer_object_holds_the_balancer_and_its_maps_only() {
        let (programs, maps) = contents(super::OBJECT);
        assert_eq!(programs, set([program_names::BALANCER]));
        assert_eq!(maps, set(map_names::ALL), "a map the daemon does not size, pin or read is created on every load");
    }

    #[test]
    fn the_aux_object_holds_the_helper_programs_and_the_generator_maps() {
        let (programs, maps) = contents(super::AUX_OBJECT);
        assert_eq!(programs, set(program_names::AUX));
        // The generator's maps (`fj-lb-ebpf/src/bin/fj-lb-aux/generator.rs`) and the floor's
        // MAC, none of the balancer's.
        assert_eq!(maps, set(["GEN_TEMPLATE", "GEN_TEMPLATE6", "GEN_SEQ", "GEN_FLOWS", "FLOOR_TO"]));
    }

    #[test]
    fn the_decap_object_holds_the_decap_program_and_its_maps_only() {
        let (programs, maps) = contents(super::DECAP_OBJECT);
        assert_eq!(programs, set([program_names::DECAP]));
        assert_eq!(maps, set(fj_lb_common::decap_map_names::ALL));
    }

    /// Every BPF-to-BPF call in `object` to one of the compiler's byte-loop functions
    /// (memset, memcpy, memmove, memcmp, bcmp), as "section+offset -> name". A call names its
    /// callee by the callee's own symbol, or by a section symbol with the callee's offset in
    /// the immediate ((imm + 1) instructions), or, linked already, by the immediate alone
    /// (relative to the next instruction of the same section).
    fn mem_calls(object: &[u8]) -> Vec<String> {
        use std::collections::HashMap;

        use object::{Object, ObjectSection, ObjectSymbol, RelocationTarget, SectionKind, SymbolKind};
        const MEM: [&str; 5] = ["memset", "memcpy", "memmove", "memcmp", "bcmp"];
        let file = object::File::parse(object).expect("the embedded object parses");
        let function_at = |section: object::SectionIndex, address: u64| {
            file.symbols()
                .find(|s| s.kind() == SymbolKind::Text && s.section_index() == Some(section) && s.address() == address)
                .and_then(|s| s.name().ok().map(String::from))
        };
        let mut calls = Vec::new();
        for section in file.sections().filter(|s| s.kind() == SectionKind::Text) {
            let data = section.data().expect("section data");
            let relocations: HashMap<u64, object::Relocation> = section.relocations().collect();
            for (n, insn) in data.chunks_exact(8).enumerate() {
                // BPF_JMP | BPF_CALL with src_reg 1 (BPF_PSEUDO_CALL): a call to a function.
                if insn[0] != 0x85 || insn[1] >> 4 != 1 {
                    continue;
                }
                let offset = n as u64 * 8;
                let imm = i32::from_le_bytes(insn[4..8].try_into().unwrap()) as i64;
                let name = match relocations.get(&offset).map(|r| r.target()) {
                    Some(RelocationTarget::Symbol(index)) => {
                        let symbol = file.symbol_by_index(index).expect("relocation symbol");
                        if symbol.kind() == SymbolKind::Section {
                            function_at(symbol.section_index().expect("a section symbol's section"), ((imm + 1) * 8) as u64)
                        } else {
                            symbol.name().ok().map(String::from)
                        }
                    }
                    _ => function_at(section.index(), (offset as i64 + (imm + 1) * 8) as u64),
                };
                if let Some(name) = name.filter(|n| MEM.contains(&n.as_str())) {
                    calls.push(format!("{}+{offset:#x} -> {name}", section.name().unwrap_or("?")));
                }
            }
        }
        calls
    }

    /// The compiler turns some copies and zeroings (a key's `Default`, a copy between places it
    /// cannot tell apart) into calls to byte loops, each about 80 ns a packet here: none may
    /// be left in the balancer.
    #[test]
    fn the_balancer_calls_no_mem_functions() {
        let calls = mem_calls(super::OBJECT);
        assert!(calls.is_empty(), "BPF-to-BPF calls to mem* functions in the balancer: {calls:?}");
    }
}
