//! Making sure the pin directory lives on a bpffs, mounting one if the host has none.
use std::path::Path;

use tracing::info;

use super::DataplaneError;

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

/// The claim of one daemon on its bpffs directory: an exclusive flock(2) on the directory,
/// held while the daemon lives and released by the kernel however it ends. A second daemon
/// configured with the same directory is refused instead of taking over the first's link and
/// maps (and removing the pins under it when it stops).
#[derive(Debug)]
pub struct BpffsLock {
    _dir: std::fs::File,
}

/// Creates `dir` if needed and locks it.
pub fn lock_bpffs(dir: &Path) -> Result<BpffsLock, DataplaneError> {
    use std::os::fd::AsRawFd;
    let io = |what, source| DataplaneError::Io { what, path: dir.to_path_buf(), source };
    std::fs::create_dir_all(dir).map_err(|e| io("creating pin directory", e))?;
    let file = std::fs::File::open(dir).map_err(|e| io("opening pin directory", e))?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(if e.kind() == std::io::ErrorKind::WouldBlock {
            DataplaneError::BpffsInUse(dir.to_path_buf())
        } else {
            io("locking pin directory", e)
        });
    }
    Ok(BpffsLock { _dir: file })
}
