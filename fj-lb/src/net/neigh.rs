//! Backend MACs come from the kernel's neighbour table, read over rtnetlink. The kernel does
//! the ARP / neighbour discovery; we only nudge it (a datagram to the backend makes it resolve)
//! and read what it learned.
use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr, UdpSocket},
    os::fd::AsRawFd,
};

use futures::TryStreamExt;
use netlink_packet_route::{
    link::LinkAttribute,
    neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourState},
};
use tracing::debug;

use crate::model::addr::Mac;

#[derive(Debug, thiserror::Error)]
pub enum NeighError {
    #[error("opening an rtnetlink socket failed: {0}")]
    Socket(#[source] std::io::Error),
    #[error("rtnetlink request failed: {0}")]
    Netlink(#[from] rtnetlink::Error),
    #[error("interface {0} not found")]
    NoInterface(String),
    #[error("interface {0} has no Ethernet address; layer-2 forwarding needs one")]
    NoMac(String),
}

pub struct Neighbours {
    handle: rtnetlink::Handle,
    pub ifindex: u32,
    pub ifname: String,
    pub mac: Mac,
    /// The interface's MTU when it was opened.
    pub mtu: Option<u32>,
}

impl Neighbours {
    /// Opens rtnetlink (the connection runs on the current tokio runtime) and looks up the
    /// interface's index and MAC.
    pub async fn open(ifname: &str) -> Result<Self, NeighError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(NeighError::Socket)?;
        tokio::spawn(conn);
        let mut links = handle.link().get().match_name(ifname.to_string()).execute();
        let link = match links.try_next().await {
            Ok(Some(l)) => l,
            Ok(None) | Err(rtnetlink::Error::NetlinkError(_)) => return Err(NeighError::NoInterface(ifname.into())),
            Err(e) => return Err(e.into()),
        };
        let mac = link
            .attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::Address(b) if b.len() == 6 => Some([b[0], b[1], b[2], b[3], b[4], b[5]]),
                _ => None,
            })
            .ok_or_else(|| NeighError::NoMac(ifname.into()))?;
        let mtu = link.attributes.iter().find_map(|a| if let LinkAttribute::Mtu(m) = a { Some(*m) } else { None });
        Ok(Self { handle, ifindex: link.header.index, ifname: ifname.into(), mac, mtu })
    }

    pub fn handle(&self) -> &rtnetlink::Handle {
        &self.handle
    }

    /// The resolved neighbours on our interface.
    pub async fn table(&self) -> Result<HashMap<IpAddr, Mac>, NeighError> {
        let mut out = HashMap::new();
        let mut dump = self.handle.neighbours().get().execute();
        while let Some(msg) = dump.try_next().await? {
            if msg.header.ifindex != self.ifindex {
                continue;
            }
            if matches!(
                msg.header.state,
                NeighbourState::Incomplete | NeighbourState::Failed | NeighbourState::None
            ) {
                continue;
            }
            let mut ip = None;
            let mut mac = None;
            for a in &msg.attributes {
                match a {
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => ip = Some(IpAddr::V4(*v4)),
                    NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => ip = Some(IpAddr::V6(*v6)),
                    NeighbourAttribute::LinkLocalAddress(b) if b.len() == 6 => {
                        mac = Some([b[0], b[1], b[2], b[3], b[4], b[5]])
                    }
                    _ => {}
                }
            }
            if let (Some(ip), Some(mac)) = (ip, mac)
                && mac != [0; 6] {
                    out.insert(ip, mac);
                }
        }
        Ok(out)
    }

    /// Makes the kernel resolve `addrs`: a datagram to the discard port, sent out of our
    /// interface, starts ARP or neighbour discovery for each.
    pub fn solicit(&self, addrs: &[IpAddr]) {
        for addr in addrs {
            let bind: SocketAddr = if addr.is_ipv4() { "0.0.0.0:0".parse() } else { "[::]:0".parse() }
                .expect("literal socket address");
            let Ok(sock) = UdpSocket::bind(bind) else { continue };
            let name = self.ifname.as_bytes();
            // Bound to the device so the probe leaves where the data path forwards.
            unsafe {
                libc::setsockopt(
                    sock.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_BINDTODEVICE,
                    name.as_ptr().cast(),
                    name.len() as libc::socklen_t,
                );
            }
            if let Err(e) = sock.send_to(b"fj-lb neighbour probe", SocketAddr::new(*addr, 9)) {
                debug!(backend = %addr, error = %e, "neighbour probe not sent");
            }
        }
    }
}
