//! How the kernel routes an address (`ip route get ADDR` over rtnetlink): the gateway, the
//! output interface and the MTU (a route's `mtu`, or a learned path MTU). Layer-3 backends'
//! frames go to that next hop, so backends may sit behind routers.
use std::net::IpAddr;

use futures::StreamExt;
use netlink_packet_core::{NLM_F_REQUEST, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    route::{RouteAddress, RouteAttribute, RouteMessage, RouteMetric},
};

use super::{NeighError, Neighbours};

/// The kernel's route to one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The router it goes through; none when the address is on a directly attached network.
    pub gateway: Option<IpAddr>,
    pub oif: Option<u32>,
    /// The route's MTU metric (configured, or a learned path MTU), if any.
    pub mtu: Option<u32>,
}

impl Route {
    /// The address whose MAC frames to `dst` are sent to.
    pub fn next_hop(&self, dst: IpAddr) -> IpAddr {
        self.gateway.unwrap_or(dst)
    }
}

fn route_address(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

impl Neighbours {
    /// The route the kernel would take to `dst`, or `None` if it has none.
    pub async fn route_to(&self, dst: IpAddr) -> Result<Option<Route>, NeighError> {
        let mut msg = RouteMessage::default();
        let (family, len, addr) = match dst {
            IpAddr::V4(a) => (AddressFamily::Inet, 32, RouteAddress::Inet(a)),
            IpAddr::V6(a) => (AddressFamily::Inet6, 128, RouteAddress::Inet6(a)),
        };
        msg.header.address_family = family;
        msg.header.destination_prefix_length = len;
        msg.attributes.push(RouteAttribute::Destination(addr));
        let mut req = NetlinkMessage::from(RouteNetlinkMessage::GetRoute(msg));
        // A lookup, not a dump: the kernel answers with the one route it would use.
        req.header.flags = NLM_F_REQUEST;
        let mut answers = self.handle().clone().request(req)?;
        while let Some(answer) = answers.next().await {
            match answer.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(r)) => {
                    let mut route = Route { gateway: None, oif: None, mtu: None };
                    for a in &r.attributes {
                        match a {
                            RouteAttribute::Gateway(g) => route.gateway = route_address(g),
                            RouteAttribute::Oif(i) => route.oif = Some(*i),
                            RouteAttribute::Metrics(m) => {
                                route.mtu = m.iter().find_map(|x| if let RouteMetric::Mtu(v) = x { Some(*v) } else { None })
                            }
                            _ => {}
                        }
                    }
                    return Ok(Some(route));
                }
                // ENETUNREACH and the like: no route.
                NetlinkPayload::Error(_) => return Ok(None),
                _ => {}
            }
        }
        Ok(None)
    }
}
