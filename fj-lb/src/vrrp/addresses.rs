//! The interface's addresses over rtnetlink: our primary address (the advert source), the
//! carrier, adding and removing the virtual addresses, and watching for their removal.
use std::net::IpAddr;

use futures::TryStreamExt;
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::{
    RouteNetlinkMessage,
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
    matches!(links.try_next().await, Ok(Some(l)) if l.header.flags.contains(&LinkFlag::LowerUp))
}

/// The carrier of a tracked interface, looked up by name each time: it may be recreated (a
/// bond, a VLAN) under another index. One that does not exist has no carrier.
pub(super) async fn carrier_by_name(handle: &rtnetlink::Handle, name: &str) -> bool {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    matches!(links.try_next().await, Ok(Some(l)) if l.header.flags.contains(&LinkFlag::LowerUp))
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
        loop {
            match found.try_next().await {
                Ok(Some(msg)) => match handle.address().del(msg).execute().await {
                    Ok(()) => info!(address = %ip, "virtual address removed"),
                    Err(e) => error!(address = %ip, error = %e, "removing the virtual address failed"),
                },
                Ok(None) => break,
                Err(e) => {
                    error!(address = %ip, error = %e, "listing the interface's addresses failed: the virtual address may stay");
                    break;
                }
            }
        }
    }
}

/// Which of `addrs` the interface holds now.
pub(super) async fn present(handle: &rtnetlink::Handle, ifindex: u32, addrs: &[(IpAddr, u8)]) -> Result<Vec<IpAddr>, rtnetlink::Error> {
    let mut held = Vec::new();
    let mut msgs = handle.address().get().set_link_index_filter(ifindex).execute();
    while let Some(msg) = msgs.try_next().await? {
        for a in &msg.attributes {
            if let AddressAttribute::Local(ip) | AddressAttribute::Address(ip) = a
                && addrs.iter().any(|(v, _)| v == ip)
                && !held.contains(ip)
            {
                held.push(*ip);
            }
        }
    }
    Ok(held)
}

/// Address removals anywhere on the host, as the kernel announces them (RTMGRP_*_IFADDR): how
/// a master learns at once that someone (networkd reapplying, `ip addr flush`) took a virtual
/// address away.
pub(super) struct Removals {
    rx: futures::channel::mpsc::UnboundedReceiver<(NetlinkMessage<RouteNetlinkMessage>, netlink_sys::SocketAddr)>,
    _connection: tokio::task::JoinHandle<()>,
}

impl Removals {
    pub(super) fn subscribe() -> std::io::Result<Self> {
        use netlink_sys::AsyncSocket as _;
        let (mut conn, _handle, rx) = rtnetlink::new_connection()?;
        let groups = rtnetlink::constants::RTMGRP_IPV4_IFADDR | rtnetlink::constants::RTMGRP_IPV6_IFADDR;
        conn.socket_mut().socket_mut().bind(&netlink_sys::SocketAddr::new(0, groups))?;
        Ok(Self { rx, _connection: tokio::spawn(conn) })
    }

    /// The next address removed: (interface index, address). `None` when the subscription ends.
    pub(super) async fn next(&mut self) -> Option<(u32, IpAddr)> {
        use futures::StreamExt as _;
        loop {
            let (msg, _) = self.rx.next().await?;
            if let NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelAddress(m)) = msg.payload {
                let ip = m.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Local(ip) | AddressAttribute::Address(ip) => Some(*ip),
                    _ => None,
                });
                if let Some(ip) = ip {
                    return Some((m.header.index, ip));
                }
            }
        }
    }
}
