//! The interface's addresses over rtnetlink: our primary address (the advert source), the
//! carrier, and adding and removing the virtual addresses.
use std::net::IpAddr;

use futures::TryStreamExt;
use netlink_packet_route::{
    address::{AddressAttribute, AddressHeaderFlag},
    link::LinkFlag,
};
use tracing::{error, info};

/// Our own address on the interface, the advert source and the tie-breaker: the first IPv4
/// address that is not virtual, or for IPv6 the link-local address (RFC 5798 §5.1.2.1).
pub(super) async fn primary(handle: &rtnetlink::Handle, ifindex: u32, v6: bool, exclude: &[IpAddr]) -> Result<Option<IpAddr>, rtnetlink::Error> {
    let mut addrs = handle.address().get().set_link_index_filter(ifindex).execute();
    while let Some(msg) = addrs.try_next().await? {
        for a in &msg.attributes {
            let ip = match a {
                AddressAttribute::Local(ip) | AddressAttribute::Address(ip) => *ip,
                _ => continue,
            };
            let wanted = match ip {
                IpAddr::V4(_) => !v6,
                IpAddr::V6(x) => v6 && (x.segments()[0] & 0xffc0) == 0xfe80,
            };
            if wanted && !exclude.contains(&ip) {
                return Ok(Some(ip));
            }
        }
    }
    Ok(None)
}

/// A failed query counts as no carrier: tracking then lowers our priority rather than trusting
/// a link we cannot see.
pub(super) async fn carrier(handle: &rtnetlink::Handle, ifindex: u32) -> bool {
    let mut links = handle.link().get().match_index(ifindex).execute();
    match links.try_next().await {
        Ok(Some(l)) => l.header.flags.contains(&LinkFlag::LowerUp),
        _ => false,
    }
}

/// Failures are logged, not returned: one address that cannot be added must not keep a new
/// master from taking the others.
pub(super) async fn add_addresses(handle: &rtnetlink::Handle, ifindex: u32, addrs: &[(IpAddr, u8)]) {
    for (ip, prefix) in addrs {
        let mut req = handle.address().add(ifindex, *ip, *prefix).replace();
        if ip.is_ipv6() {
            // No duplicate address detection: the address must answer now, not in a second.
            req.message_mut().header.flags.push(AddressHeaderFlag::Nodad);
        }
        match req.execute().await {
            Ok(()) => info!(address = %ip, prefix, "virtual address added"),
            Err(e) => error!(address = %ip, error = %e, "adding the virtual address failed"),
        }
    }
}

pub(super) async fn remove_addresses(handle: &rtnetlink::Handle, ifindex: u32, addrs: &[(IpAddr, u8)]) {
    for (ip, _) in addrs {
        let mut found = handle.address().get().set_link_index_filter(ifindex).set_address_filter(*ip).execute();
        while let Ok(Some(msg)) = found.try_next().await {
            match handle.address().del(msg).execute().await {
                Ok(()) => info!(address = %ip, "virtual address removed"),
                Err(e) => error!(address = %ip, error = %e, "removing the virtual address failed"),
            }
        }
    }
}
