//! The MAGLEV array mapped into the daemon's memory, so a table is written with one copy.
use aya::Ebpf;
use fj_lb_common::map_names as names;

/// The MAGLEV array mapped into our memory (the map is BPF_F_MMAPABLE). The kernel lays array
/// elements out at 8-byte strides, so each u32 slot is the first half of a u64.
pub(crate) struct MmapTable {
    ptr: *mut u64,
    entries: usize,
    bytes: usize,
}

// SAFETY: the mapping is owned by the Dataplane and only written through `&mut self`.
unsafe impl Send for MmapTable {}

impl MmapTable {
    pub(crate) fn new(ebpf: &Ebpf, entries: u32) -> std::io::Result<Self> {
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

    pub(crate) fn write(&mut self, base: u32, table: &[u32]) -> bool {
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
