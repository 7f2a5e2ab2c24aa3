//! `fj-lb decap`, the backends' half of layer-3 direct return: loads the decapsulation object
//! (`fj-lb-ebpf/src/bin/fj-lb-decap`), fills its maps, attaches it and pins the attachment and
//! the maps in a bpffs directory of the interface's own, so it stays after the command exits;
//! `--detach` removes it; the pinned counters say what it did.
use std::{net::IpAddr, path::Path};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, Map, MapData, PerCpuArray},
    programs::{Xdp, links::PinnedLink},
};
use fj_lb_common::{DECAP_ANY_VIP, DecapConfig, DecapStat, decap_map_names as names, program_names};

use super::{
    AttachedMode, DataplaneError, ensure_bpffs,
    link::{self, Held},
    map_err,
};
use crate::model::config::XdpMode;

/// The decapsulation object, built by `build.rs` with aya-build: the `program_names::DECAP`
/// program and the maps of `decap_map_names::ALL`.
pub static DECAP_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/fj-lb-decap"));

/// File name of the pinned link inside the decap directory.
const LINK: &str = "link";

/// Where `fj-lb decap --interface IF` pins its link and maps unless told otherwise: one
/// directory per interface.
pub fn default_decap_dir(interface: &str) -> std::path::PathBuf {
    Path::new("/sys/fs/bpf").join(format!("fj-lb-decap-{interface}"))
}

/// What to decapsulate.
#[derive(Debug, Clone)]
pub struct DecapRequest {
    pub interface: String,
    /// Inner destinations to decapsulate for; ignored with `any_vip`.
    pub vips: Vec<IpAddr>,
    pub any_vip: bool,
    pub gue_port: u16,
    pub mode: XdpMode,
}

/// What attaching did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DecapAttached {
    pub interface: String,
    pub mode: AttachedMode,
    pub program_id: Option<u32>,
    /// The directory the link and the maps are pinned in.
    pub pinned: std::path::PathBuf,
}

/// Loads (and verifies) the decapsulation program with its maps filled for `req`, without
/// attaching it.
pub fn load_decap(req: &DecapRequest) -> Result<Ebpf, DataplaneError> {
    let mut ebpf = EbpfLoader::new().load(DECAP_OBJECT)?;
    {
        let mut v4: HashMap<&mut MapData, [u8; 4], u8> = typed(ebpf.map_mut(names::VIPS4))?;
        for ip in &req.vips {
            if let IpAddr::V4(a) = ip {
                v4.insert(a.octets(), 1, 0).map_err(map_err(names::VIPS4))?;
            }
        }
    }
    {
        let mut v6: HashMap<&mut MapData, [u8; 16], u8> = typed(ebpf.map_mut(names::VIPS6))?;
        for ip in &req.vips {
            if let IpAddr::V6(a) = ip {
                v6.insert(a.octets(), 1, 0).map_err(map_err(names::VIPS6))?;
            }
        }
    }
    {
        let mut cfg: Array<&mut MapData, DecapConfig> = typed(ebpf.map_mut(names::CONFIG))?;
        let flags = if req.any_vip { DECAP_ANY_VIP } else { 0 };
        cfg.set(0, DecapConfig { gue_port: req.gue_port, flags }, 0).map_err(map_err(names::CONFIG))?;
    }
    super::load_xdp(&mut ebpf, program_names::DECAP)?;
    Ok(ebpf)
}

/// Attaches (or, when already attached from `dir`, replaces in one step) the decapsulation
/// program on `req.interface`, pinned in `dir`.
pub fn attach_decap(dir: &Path, req: &DecapRequest) -> Result<DecapAttached, DataplaneError> {
    ensure_bpffs(dir)?;
    std::fs::create_dir_all(dir).map_err(|source| DataplaneError::Io { what: "creating the decap directory", path: dir.to_path_buf(), source })?;
    let mut ebpf = load_decap(req)?;
    let name = program_names::DECAP;
    let prog: &mut Xdp = ebpf.program_mut(name).expect("the decap object has its program").try_into().expect("decap is XDP");
    let program_id = prog.info().ok().map(|i| i.id());
    let (held, mode) = link::attach_pinned(prog, name, &req.interface, req.mode, &dir.join(LINK))?;
    // The maps are pinned too: `--stats` reads the counters, and the program keeps them
    // after this process (and its map descriptors) are gone.
    for map in names::ALL {
        let path = dir.join(map);
        let _ = std::fs::remove_file(&path);
        ebpf.map(map).expect("the decap object has its maps").pin(&path).map_err(|e| DataplaneError::Map {
            name: map,
            source: aya::maps::MapError::PinError { name: Some(map.to_string()), error: e },
        })?;
    }
    if !matches!(held, Held::Pinned(_)) {
        tracing::warn!(interface = %req.interface, "the decap program could not be pinned: it stays only while this command runs");
    }
    // Dropping the pinned link's handle leaves the attachment to its pin.
    drop(held);
    Ok(DecapAttached { interface: req.interface.clone(), mode, program_id, pinned: dir.to_path_buf() })
}

/// Removes the decapsulation program pinned in `dir` from its interface, and its pins.
/// Returns whether one was attached.
pub fn detach_decap(dir: &Path) -> Result<bool, DataplaneError> {
    let pin = dir.join(LINK);
    let attached = pin.exists();
    if attached {
        let link = PinnedLink::from_pin(&pin).map_err(|e| DataplaneError::Io {
            what: "opening the pinned decap link",
            path: pin.clone(),
            source: std::io::Error::other(e),
        })?;
        link::unpin_link(link);
    }
    for map in names::ALL {
        let _ = std::fs::remove_file(dir.join(map));
    }
    let _ = std::fs::remove_dir(dir);
    Ok(attached)
}

/// The decapsulation program's counters, summed over CPUs, from its pinned map in `dir`.
pub fn decap_stats(dir: &Path) -> Result<Vec<(DecapStat, u64)>, DataplaneError> {
    let path = dir.join(names::STATS);
    if !path.exists() {
        return Err(DataplaneError::Io {
            what: "no decapsulation program is pinned here (run `fj-lb decap --interface IF` first):",
            path,
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
    }
    let data = MapData::from_pin(&path).map_err(map_err(names::STATS))?;
    let map = Map::from_map_data(data).map_err(map_err(names::STATS))?;
    let stats: PerCpuArray<MapData, u64> = PerCpuArray::try_from(map).map_err(map_err(names::STATS))?;
    super::maps::sum_per_cpu(&stats, &DecapStat::ALL, |s| s as u32, names::STATS)
}

fn typed<'a, T>(map: Option<&'a mut Map>) -> Result<T, DataplaneError>
where
    T: TryFrom<&'a mut Map, Error = aya::maps::MapError>,
{
    T::try_from(map.expect("the decap object has its maps")).map_err(map_err("decap map"))
}
