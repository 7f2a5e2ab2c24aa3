//! The edge between the daemon and the kernel: loads the embedded XDP object, sizes and pins
//! its maps, attaches it, and offers typed access to each map. Nothing here decides anything.
use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, MapError, PerCpuArray, PerCpuValues},
    programs::{
        ProgramError, Xdp, XdpMode as AyaXdpMode,
        links::{FdLink, LinkError, PinnedLink},
        xdp::{XdpLink, XdpLinkId},
    },
};
use fj_lb_common::{
    Backend, Counters, FAMILY_V4, FAMILY_V6, FlowKey, FlowValue, ServiceKey, ServiceValue,
    Settings, Stat, VipKey, map_names as names, program_names,
};
use tracing::{info, warn};

use crate::config::XdpMode;

/// The XDP object, built by `build.rs` with aya-build.
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
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn map_err(name: &'static str) -> impl FnOnce(MapError) -> DataplaneError {
    move |source| DataplaneError::Map { name, source }
}

/// Map sizes, fixed at load time.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub flow_table: u32,
    pub maglev_slots: u32,
    pub services: u32,
    pub backends: u32,
}

/// The mode XDP actually runs in after attaching.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachedMode {
    Native,
    Skb,
}

impl AttachedMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AttachedMode::Native => "native",
            AttachedMode::Skb => "skb",
        }
    }
}

pub struct Dataplane {
    ebpf: Ebpf,
    link: Option<XdpLinkId>,
    /// The attachment pinned in bpffs: if the daemon dies, XDP keeps forwarding with the last
    /// tables (instead of the kernel resetting every connection to the VIP it still holds),
    /// and the next daemon swaps its program in on the same link without a gap.
    pinned_link: Option<PinnedLink>,
    maglev_mmap: Option<MmapTable>,
}

/// File name of the pinned XDP link inside the bpffs directory.
pub const LINK_PIN: &str = "xdp_link";

/// The MAGLEV array mapped into our memory (the map is BPF_F_MMAPABLE). The kernel lays array
/// elements out at 8-byte strides, so each u32 slot is the first half of a u64.
struct MmapTable {
    ptr: *mut u64,
    entries: usize,
    bytes: usize,
}

// SAFETY: the mapping is owned by the Dataplane and only written through `&mut self`.
unsafe impl Send for MmapTable {}

impl MmapTable {
    fn new(ebpf: &Ebpf, entries: u32) -> std::io::Result<Self> {
        use std::os::fd::{AsFd, AsRawFd};
        let Some(aya::maps::Map::Array(data)) = ebpf.map(names::MAGLEV) else {
            return Err(std::io::Error::other("MAGLEV is not an array"));
        };
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let bytes = (entries as usize * 8).div_ceil(page) * page;
        let fd = data.fd().as_fd().as_raw_fd();
        let ptr = unsafe {
            libc::mmap(std::ptr::null_mut(), bytes, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0)
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self { ptr: ptr.cast(), entries: entries as usize, bytes })
    }

    fn write(&mut self, base: u32, table: &[u32]) -> bool {
        let base = base as usize;
        if base + table.len() > self.entries {
            return false;
        }
        // SAFETY: in bounds of the mapping, checked above. The upper halves are padding.
        let slots = unsafe { std::slice::from_raw_parts_mut(self.ptr.add(base), table.len()) };
        for (slot, v) in slots.iter_mut().zip(table) {
            let mut bytes = [0u8; 8];
            bytes[..4].copy_from_slice(&v.to_ne_bytes());
            *slot = u64::from_ne_bytes(bytes);
        }
        true
    }
}

impl Drop for MmapTable {
    fn drop(&mut self) {
        unsafe { libc::munmap(self.ptr.cast(), self.bytes) };
    }
}

pub fn addr_bytes(ip: IpAddr) -> ([u8; 16], u8) {
    let mut out = [0u8; 16];
    match ip {
        IpAddr::V4(v4) => {
            out[..4].copy_from_slice(&v4.octets());
            (out, FAMILY_V4)
        }
        IpAddr::V6(v6) => (v6.octets(), FAMILY_V6),
    }
}

pub fn addr_from_bytes(bytes: &[u8; 16], family: u8) -> IpAddr {
    if family == FAMILY_V4 {
        IpAddr::from([bytes[0], bytes[1], bytes[2], bytes[3]])
    } else {
        IpAddr::from(*bytes)
    }
}

impl Dataplane {
    /// Loads the object with the given map sizes and loads (verifies) the balancer program.
    pub fn load(sizes: Sizes) -> Result<Self, DataplaneError> {
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(names::FLOWS, sizes.flow_table)
            .map_max_entries(names::MAGLEV, sizes.maglev_slots)
            .map_max_entries(names::SERVICES, sizes.services)
            .map_max_entries(names::SERVICE_COUNTERS, sizes.services)
            .map_max_entries(names::BACKENDS, sizes.backends)
            .map_max_entries(names::BACKEND_COUNTERS, sizes.backends)
            .load(OBJECT)?;
        let name = program_names::BALANCER;
        let prog: &mut Xdp = ebpf
            .program_mut(name)
            .expect("the embedded object has the balancer program")
            .try_into()
            .map_err(|source| DataplaneError::Program { name, source })?;
        prog.load().map_err(|source| DataplaneError::Program { name, source })?;
        let maglev_mmap = match MmapTable::new(&ebpf, sizes.maglev_slots) {
            Ok(m) => Some(m),
            Err(e) => {
                warn!(error = %e, "cannot map the Maglev array; writing tables slot by slot (slower updates)");
                None
            }
        };
        Ok(Self { ebpf, link: None, pinned_link: None, maglev_mmap })
    }

    /// Writes `table` at `base` in the MAGLEV array: one memcpy through the mapping, or one
    /// syscall per slot when the mapping is unavailable.
    pub fn write_maglev(&mut self, base: u32, table: &[u32]) -> Result<(), DataplaneError> {
        if let Some(m) = self.maglev_mmap.as_mut()
            && m.write(base, table) {
                // Order the table's stores before the service swap that publishes it.
                std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
                return Ok(());
            }
        let mut map = self.maglev();
        for (i, v) in table.iter().enumerate() {
            map.set(base + i as u32, v, 0).map_err(map_err(names::MAGLEV))?;
        }
        Ok(())
    }

    pub fn program(&self) -> &Xdp {
        self.ebpf
            .program(program_names::BALANCER)
            .expect("the embedded object has the balancer program")
            .try_into()
            .expect("the balancer is an XDP program")
    }

    /// The kernel's id of the loaded balancer program (what `bpftool prog` and `ip link` show).
    pub fn program_id(&self) -> Option<u32> {
        self.program().info().ok().map(|i| i.id())
    }

    /// Attaches the balancer and pins the attachment under `pin_dir`. When a previous daemon
    /// left its link pinned there (it crashed), the program on that link is replaced in one
    /// step and forwarding never stops; otherwise `auto` tries native (driver) mode and falls
    /// back to skb mode.
    pub fn attach(&mut self, interface: &str, mode: XdpMode, pin_dir: &Path) -> Result<AttachedMode, DataplaneError> {
        let pin = pin_dir.join(LINK_PIN);
        if pin.exists() {
            match self.take_over(&pin) {
                Ok(()) => {
                    let mode = current_mode(interface).unwrap_or(AttachedMode::Native);
                    info!(%interface, mode = mode.as_str(), "took over the XDP link a previous fj-lb left pinned: no gap in forwarding");
                    return Ok(mode);
                }
                Err(e) => {
                    warn!(error = %e, path = %pin.display(), "a pinned XDP link is left but cannot be reused; attaching afresh");
                    let _ = std::fs::remove_file(&pin);
                }
            }
        }
        let prog = self.program_mut();
        let attach = |prog: &mut Xdp, m: AttachedMode| {
            let aya_mode = match m {
                AttachedMode::Native => AyaXdpMode::Driver,
                AttachedMode::Skb => AyaXdpMode::Skb,
            };
            prog.attach(interface, aya_mode).map_err(|source| DataplaneError::Attach {
                interface: interface.to_string(),
                mode: m.as_str(),
                source,
            })
        };
        let (link, mode) = match mode {
            XdpMode::Native => (attach(prog, AttachedMode::Native)?, AttachedMode::Native),
            XdpMode::Skb => (attach(prog, AttachedMode::Skb)?, AttachedMode::Skb),
            XdpMode::Auto => match attach(prog, AttachedMode::Native) {
                Ok(link) => (link, AttachedMode::Native),
                Err(e) => {
                    warn!(%interface, error = %e, "native XDP unavailable, falling back to skb (generic) mode: expect lower throughput");
                    (attach(prog, AttachedMode::Skb)?, AttachedMode::Skb)
                }
            },
        };
        self.pin_link(link, &pin);
        info!(%interface, mode = mode.as_str(), "XDP program attached");
        Ok(mode)
    }

    fn take_over(&mut self, pin: &Path) -> Result<(), DataplaneError> {
        let link_err = |e: LinkError| DataplaneError::Io { what: "reusing the pinned XDP link", path: pin.to_path_buf(), source: std::io::Error::other(e) };
        let pinned = PinnedLink::from_pin(pin).map_err(link_err)?;
        let fd: FdLink = pinned.into();
        let xdp_link = XdpLink::try_from(fd).map_err(link_err)?;
        let id = self.program_mut().attach_to_link(xdp_link).map_err(|source| DataplaneError::Attach {
            interface: "(pinned link)".into(),
            mode: "inherited",
            source,
        })?;
        // The pin is re-made by us, for our link object.
        let _ = std::fs::remove_file(pin);
        self.pin_link(id, pin);
        Ok(())
    }

    fn pin_link(&mut self, id: XdpLinkId, pin: &Path) {
        let link = match self.program_mut().take_link(id) {
            Ok(l) => l,
            Err(e) => {
                warn!(error = %e, "cannot take the XDP link to pin it");
                return;
            }
        };
        let fd = match FdLink::try_from(link) {
            Ok(fd) => fd,
            Err(e) => {
                warn!(error = %e, "XDP is attached through netlink, not a BPF link: it cannot be pinned, so it stops if the daemon dies");
                return;
            }
        };
        if let Some(dir) = pin.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        match fd.pin(pin) {
            Ok(p) => self.pinned_link = Some(p),
            Err(e) => warn!(error = %e, path = %pin.display(), "pinning the XDP link failed: XDP stops if the daemon dies"),
        }
    }

    pub fn detach(&mut self) {
        if let Some(link) = self.link.take()
            && let Err(e) = self.program_mut().detach(link) {
                warn!(error = %e, "detaching XDP failed; it goes away when the daemon exits");
            }
        if let Some(p) = self.pinned_link.take() {
            // Unpinned, the link's last reference is ours: dropping it detaches the program.
            match p.unpin() {
                Ok(fd) => drop(fd),
                Err(e) => warn!(error = %e, "unpinning the XDP link failed"),
            }
        }
    }

    /// Pins every map under `dir` (a bpffs directory), replacing stale pins of a daemon that
    /// died without cleaning up.
    pub fn pin_maps(&self, dir: &Path) -> Result<(), DataplaneError> {
        std::fs::create_dir_all(dir).map_err(|source| DataplaneError::Io {
            what: "creating pin directory",
            path: dir.to_path_buf(),
            source,
        })?;
        for name in names::ALL {
            let path = dir.join(name);
            if path.exists() {
                let _ = std::fs::remove_file(&path);
            }
            let map = self.ebpf.map(name).expect("the embedded object has every map");
            map.pin(&path).map_err(|e| DataplaneError::Map {
                name,
                source: MapError::PinError { name: Some(name.to_string()), error: e },
            })?;
        }
        Ok(())
    }

    pub fn program_mut(&mut self) -> &mut Xdp {
        self.ebpf
            .program_mut(program_names::BALANCER)
            .expect("the embedded object has the balancer program")
            .try_into()
            .expect("the balancer is an XDP program")
    }

    pub fn services(&mut self) -> HashMap<&mut MapData, ServiceKey, ServiceValue> {
        typed(&mut self.ebpf, names::SERVICES)
    }

    pub fn backends(&mut self) -> Array<&mut MapData, Backend> {
        typed(&mut self.ebpf, names::BACKENDS)
    }

    pub fn maglev(&mut self) -> Array<&mut MapData, u32> {
        typed(&mut self.ebpf, names::MAGLEV)
    }

    pub fn flows(&mut self) -> HashMap<&mut MapData, FlowKey, FlowValue> {
        typed(&mut self.ebpf, names::FLOWS)
    }

    pub fn settings(&mut self) -> Array<&mut MapData, Settings> {
        typed(&mut self.ebpf, names::SETTINGS)
    }

    pub fn service_counters(&mut self) -> PerCpuArray<&mut MapData, Counters> {
        typed(&mut self.ebpf, names::SERVICE_COUNTERS)
    }

    pub fn backend_counters(&mut self) -> PerCpuArray<&mut MapData, Counters> {
        typed(&mut self.ebpf, names::BACKEND_COUNTERS)
    }

    pub fn stats_map(&mut self) -> PerCpuArray<&mut MapData, u64> {
        typed(&mut self.ebpf, names::STATS)
    }

    /// Virtual addresses to drop non-service traffic for (Accept_Mode false).
    pub fn set_not_accepted(&mut self, addrs: &[IpAddr]) -> Result<(), DataplaneError> {
        let mut map: HashMap<&mut MapData, VipKey, u8> = typed(&mut self.ebpf, names::NOT_ACCEPTED);
        for ip in addrs {
            let (addr, family) = addr_bytes(*ip);
            map.insert(VipKey { addr, family, _pad: [0; 3] }, 1, 0).map_err(map_err(names::NOT_ACCEPTED))?;
        }
        Ok(())
    }

    pub fn write_settings(&mut self, settings: Settings) -> Result<(), DataplaneError> {
        self.settings().set(0, settings, 0).map_err(map_err(names::SETTINGS))
    }

    /// Counters summed over CPUs, by reason.
    pub fn stats(&mut self) -> Result<Vec<(Stat, u64)>, DataplaneError> {
        let map = self.stats_map();
        Stat::ALL
            .iter()
            .map(|s| {
                let v: PerCpuValues<u64> = map.get(&(*s as u32), 0).map_err(map_err(names::STATS))?;
                Ok((*s, v.iter().sum()))
            })
            .collect()
    }

    pub fn backend_counter(&mut self, id: u32) -> Result<Counters, DataplaneError> {
        sum_counters(&self.backend_counters(), id).map_err(map_err(names::BACKEND_COUNTERS))
    }

    pub fn service_counter(&mut self, id: u32) -> Result<Counters, DataplaneError> {
        sum_counters(&self.service_counters(), id).map_err(map_err(names::SERVICE_COUNTERS))
    }
}

fn sum_counters(map: &PerCpuArray<&mut MapData, Counters>, id: u32) -> Result<Counters, MapError> {
    let v = map.get(&id, 0)?;
    Ok(v.iter().fold(Counters::default(), |a, c| Counters {
        packets: a.packets + c.packets,
        bytes: a.bytes + c.bytes,
    }))
}

fn typed<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> T
where
    T: TryFrom<&'a mut aya::maps::Map, Error = MapError>,
{
    let map = ebpf.map_mut(name).expect("the embedded object has every map");
    T::try_from(map).expect("map types match fj-lb-common")
}

fn pinned_flows(pin: &Path) -> Result<HashMap<MapData, FlowKey, FlowValue>, MapError> {
    HashMap::try_from(aya::maps::Map::from_map_data(MapData::from_pin(pin)?)?)
}

/// Number of entries in the flow table pinned at `pin`. Walks its keys: slow for a big table,
/// so callers keep it off latency-sensitive paths.
pub fn count_entries(pin: &Path) -> Result<u64, MapError> {
    Ok(pinned_flows(pin)?.keys().count() as u64)
}

/// Every entry of the flow table pinned at `pin` (same caveat).
pub fn read_flows(pin: &Path) -> Result<Vec<(FlowKey, FlowValue)>, MapError> {
    Ok(pinned_flows(pin)?.iter().filter_map(Result::ok).collect())
}

/// Removes the pins `pin_maps` made.
pub fn unpin_maps(dir: &Path) {
    for name in names::ALL {
        let _ = std::fs::remove_file(dir.join(name));
    }
    let _ = std::fs::remove_dir(dir);
}

/// Makes sure `dir`'s parent is on a bpffs, mounting one at the conventional place if needed.
pub fn ensure_bpffs(dir: &Path) -> Result<(), DataplaneError> {
    const BPF_FS_MAGIC: i64 = 0xcafe4a11;
    let mount_point = dir.parent().unwrap_or(Path::new("/sys/fs/bpf"));
    std::fs::create_dir_all(mount_point).map_err(|source| DataplaneError::Io {
        what: "creating bpffs mount point",
        path: mount_point.to_path_buf(),
        source,
    })?;
    let is_bpffs = |p: &Path| {
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).expect("path without NUL");
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        unsafe { libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == BPF_FS_MAGIC }
    };
    if is_bpffs(mount_point) {
        return Ok(());
    }
    info!(path = %mount_point.display(), "mounting bpffs");
    let target = std::ffi::CString::new(mount_point.as_os_str().as_encoded_bytes()).expect("path without NUL");
    let rc = unsafe {
        libc::mount(c"bpf".as_ptr(), target.as_ptr(), c"bpf".as_ptr(), 0, std::ptr::null())
    };
    if rc != 0 {
        return Err(DataplaneError::Io {
            what: "mounting bpffs at",
            path: mount_point.to_path_buf(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// Loads one of the object's helper programs (pass-through, floor) without attaching it.
pub fn load_aux(name: &'static str) -> Result<Ebpf, DataplaneError> {
    let mut ebpf = EbpfLoader::new().load(OBJECT)?;
    let prog: &mut Xdp = ebpf
        .program_mut(name)
        .expect("the embedded object has the program")
        .try_into()
        .map_err(|source| DataplaneError::Program { name, source })?;
    prog.load().map_err(|source| DataplaneError::Program { name, source })?;
    Ok(ebpf)
}

/// Loads one of the helper programs and attaches it to `interfaces` in native mode.
pub fn attach_aux(name: &'static str, interfaces: &[String]) -> Result<Ebpf, DataplaneError> {
    let mut ebpf = load_aux(name)?;
    let prog: &mut Xdp = ebpf
        .program_mut(name)
        .expect("the embedded object has the program")
        .try_into()
        .expect("helper programs are XDP");
    for iface in interfaces {
        prog.attach(iface, AyaXdpMode::Driver).map_err(|source| DataplaneError::Attach {
            interface: iface.clone(),
            mode: "native",
            source,
        })?;
    }
    Ok(ebpf)
}

/// What a generator run did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Generated {
    pub packets: u64,
    pub seconds: f64,
    pub packets_per_s: f64,
}

/// Sends `packets` UDP frames out of `interface` as fast as this machine allows, each a new
/// 5-tuple (the `fj_lb_gen` program in BPF_PROG_TEST_RUN live-frames mode).
pub fn generate(
    interface: &str,
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: std::net::Ipv4Addr,
    dst: std::net::Ipv4Addr,
    port: u16,
    packets: u64,
) -> Result<Generated, DataplaneError> {
    use aya::programs::{TestRun, TestRunAttrs, TestRunOptions};
    let mut ebpf = load_aux(program_names::GENERATOR)?;
    let mut frame = [0u8; 60];
    frame[..6].copy_from_slice(&dst_mac);
    frame[6..12].copy_from_slice(&src_mac);
    frame[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip_len: u16 = 60 - 14;
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let sum = crate::vrrp::packet::checksum(&[&ip]);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    frame[14..34].copy_from_slice(&ip);
    frame[36..38].copy_from_slice(&port.to_be_bytes());
    frame[38..40].copy_from_slice(&(ip_len - 20).to_be_bytes());
    {
        let mut t: Array<&mut MapData, [u8; 60]> =
            Array::try_from(ebpf.map_mut("GEN_TEMPLATE").expect("generator template map")).expect("array");
        t.set(0, frame, 0).map_err(map_err("GEN_TEMPLATE"))?;
    }
    let c = std::ffi::CString::new(interface).map_err(|_| DataplaneError::Io {
        what: "interface name",
        path: interface.into(),
        source: std::io::Error::other("NUL in name"),
    })?;
    let ifindex = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if ifindex == 0 {
        return Err(DataplaneError::Io { what: "no interface", path: interface.into(), source: std::io::Error::last_os_error() });
    }
    // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex.
    // The kernel wants data_end to equal the frame's length and the frame on the given device.
    let mut ctx = [0u8; 24];
    ctx[4..8].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
    ctx[12..16].copy_from_slice(&ifindex.to_ne_bytes());
    let prog: &Xdp = ebpf.program(program_names::GENERATOR).expect("generator").try_into().expect("xdp");
    let started = std::time::Instant::now();
    let mut sent = 0u64;
    while sent < packets {
        let chunk = (packets - sent).min(10_000_000) as u32;
        prog.test_run(TestRunOptions {
            data_in: Some(&frame),
            ctx_in: Some(&ctx),
            repeat: chunk,
            attrs: TestRunAttrs::new().xdp_live_frames(64),
            ..Default::default()
        })
        .map_err(|source| DataplaneError::Program { name: program_names::GENERATOR, source })?;
        sent += chunk as u64;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(Generated { packets: sent, seconds, packets_per_s: sent as f64 / seconds })
}

/// The XDP mode in force on `interface`, from the kernel (for a link inherited from a
/// previous daemon, whose mode we did not choose).
fn current_mode(interface: &str) -> Option<AttachedMode> {
    let out = std::process::Command::new("ip").args(["-j", "-d", "link", "show", "dev", interface]).output().ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    match v.get(0)?.get("xdp")?.get("mode")?.as_u64()? {
        1 => Some(AttachedMode::Native),
        2 => Some(AttachedMode::Skb),
        _ => None,
    }
}
