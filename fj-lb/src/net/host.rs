//! What config validation asks of the real host, answered by the kernel without changing it.
use crate::model::config::HostView;

/// The running host: interfaces are looked up by name.
pub struct LiveHost;

impl HostView for LiveHost {
    fn interface_exists(&self, name: &str) -> bool {
        let Ok(c) = std::ffi::CString::new(name) else {
            return false;
        };
        unsafe { libc::if_nametoindex(c.as_ptr()) != 0 }
    }
}
