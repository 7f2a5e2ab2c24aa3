//! The virtual MAC (RFC 5798 §7.3): the macvlan that carries it, and the parent's sysctls that
//! keep the parent's own MAC from being tied to the virtual addresses.
use futures::TryStreamExt;
use tracing::{error, info, warn};

use super::runner::VrrpError;
use crate::model::addr::{Mac, format_mac};

/// RFC 5798 §7.3: 00-00-5E-00-01-{VRID} for IPv4, 00-00-5E-00-02-{VRID} for IPv6.
pub fn virtual_mac(vrid: u8, v6: bool) -> Mac {
    [0x00, 0x00, 0x5e, 0x00, if v6 { 0x02 } else { 0x01 }, vrid]
}

/// The macvlan that carries the virtual MAC: the VIPs live on it, so the kernel answers ARP
/// for them with the virtual MAC and the NIC accepts frames sent to it. The XDP program on
/// the parent still sees every frame first.
pub(super) struct VirtualMac {
    pub(super) name: String,
    pub(super) ifindex: u32,
    /// The parent's arp_ignore and arp_announce before we changed them, restored on stop.
    sysctls: Vec<(String, String)>,
}

fn arp_sysctl(ifname: &str, name: &str) -> String {
    format!("/proc/sys/net/ipv4/conf/{ifname}/{name}")
}

impl VirtualMac {
    pub(super) async fn create(handle: &rtnetlink::Handle, parent: &str, parent_index: u32, vrid: u8, v6: bool) -> Result<VirtualMac, VrrpError> {
        // Bridge mode: a multicast frame whose source MAC is one of our macvlans (the other
        // router's adverts carry the same virtual MAC) still reaches the parent; private mode
        // would take it for our own and swallow it.
        const MACVLAN_MODE_BRIDGE: u32 = 4;
        let name = format!("fjvrrp{vrid}");
        // A leftover from a daemon that was killed: it also left the sysctls below as it set them,
        // so what we would read now is ours, not the host's; the kernel defaults (0) stand in.
        let mut old = handle.link().get().match_name(name.clone()).execute();
        let leftover = match old.try_next().await {
            Ok(Some(l)) => {
                let _ = handle.link().del(l.header.index).execute().await;
                true
            }
            _ => false,
        };
        handle
            .link()
            .add()
            .macvlan(name.clone(), parent_index, MACVLAN_MODE_BRIDGE)
            .address(virtual_mac(vrid, v6).to_vec())
            .execute()
            .await?;
        let mut links = handle.link().get().match_name(name.clone()).execute();
        let ifindex = links.try_next().await?.map(|l| l.header.index).ok_or(VrrpError::NoPrimary(name.clone(), "virtual-MAC"))?;
        // Down until we are master: only the master may use the virtual MAC (RFC 5798 §7.3), and
        // an up macvlan would swallow the master's adverts, which carry the same source MAC.
        handle.link().set(ifindex).down().execute().await?;
        let mut sysctls = Vec::new();
        let mut set = |path: String, value: &str| {
            if leftover {
                sysctls.push((path.clone(), "0".to_string()));
            } else if let Ok(old) = std::fs::read_to_string(&path) {
                sysctls.push((path.clone(), old.trim().to_string()));
            }
            if let Err(e) = std::fs::write(&path, value) {
                warn!(path, error = %e, "cannot set it: clients may learn another MAC for the VIP");
            }
        };
        if v6 {
            // No link-local address of its own (it would be the same on every router): adverts
            // and neighbour advertisements go out from the parent's. Set before it is ever up.
            set(format!("/proc/sys/net/ipv6/conf/{name}/addr_gen_mode"), "1");
        } else {
            // Only the macvlan may tie the VIPs to a MAC, the virtual one: the parent must neither
            // answer ARP for addresses that are not its own (arp_ignore=1) nor put a VIP as sender
            // in its own ARP requests (arp_announce=2), or clients would learn the parent's MAC.
            set(arp_sysctl(parent, "arp_ignore"), "1");
            set(arp_sysctl(parent, "arp_announce"), "2");
        }
        info!(interface = %name, mac = %format_mac(&virtual_mac(vrid, v6)), "virtual MAC interface created");
        Ok(VirtualMac { name, ifindex, sysctls })
    }

    /// Logged, not returned: the state machine has already decided the transition, which goes
    /// on either way.
    pub(super) async fn up(&self, handle: &rtnetlink::Handle) {
        if let Err(e) = handle.link().set(self.ifindex).up().execute().await {
            error!(interface = %self.name, error = %e, "bringing the virtual MAC interface up failed");
        }
    }

    pub(super) async fn down(&self, handle: &rtnetlink::Handle) {
        if let Err(e) = handle.link().set(self.ifindex).down().execute().await {
            error!(interface = %self.name, error = %e, "taking the virtual MAC interface down failed");
        }
    }

    pub(super) async fn remove(&self, handle: &rtnetlink::Handle) {
        for (path, old) in &self.sysctls {
            let _ = std::fs::write(path, old);
        }
        match handle.link().del(self.ifindex).execute().await {
            Ok(()) => info!(interface = %self.name, "virtual MAC interface removed"),
            Err(e) => warn!(interface = %self.name, error = %e, "removing the virtual MAC interface failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_macs_follow_rfc_5798() {
        assert_eq!(virtual_mac(51, false), [0, 0, 0x5e, 0, 1, 51]);
        assert_eq!(virtual_mac(7, true), [0, 0, 0x5e, 0, 2, 7]);
    }
}
