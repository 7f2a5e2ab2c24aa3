//! What config validation asks of the real host, answered by the kernel without changing it.
use std::net::IpAddr;

use crate::model::config::HostView;

/// The running host: interfaces are looked up by name, addresses with getifaddrs(3).
pub struct LiveHost;

impl HostView for LiveHost {
    fn interface_exists(&self, name: &str) -> bool {
        let Ok(c) = std::ffi::CString::new(name) else {
            return false;
        };
        unsafe { libc::if_nametoindex(c.as_ptr()) != 0 }
    }

    fn local_addresses(&self) -> Vec<IpAddr> {
        let mut out = Vec::new();
        let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
        // SAFETY: getifaddrs fills a list we walk read-only and free once.
        unsafe {
            if libc::getifaddrs(&mut head) != 0 {
                return out;
            }
            let mut cur = head;
            while !cur.is_null() {
                let a = (*cur).ifa_addr;
                if !a.is_null() {
                    match i32::from((*a).sa_family) {
                        libc::AF_INET => {
                            let sin = &*(a as *const libc::sockaddr_in);
                            out.push(IpAddr::from(sin.sin_addr.s_addr.to_ne_bytes()));
                        }
                        libc::AF_INET6 => {
                            let sin6 = &*(a as *const libc::sockaddr_in6);
                            out.push(IpAddr::from(sin6.sin6_addr.s6_addr));
                        }
                        _ => {}
                    }
                }
                cur = (*cur).ifa_next;
            }
            libc::freeifaddrs(head);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_among_the_local_addresses() {
        assert!(LiveHost.local_addresses().contains(&"127.0.0.1".parse().unwrap()));
    }
}
