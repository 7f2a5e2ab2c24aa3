//! The host routes of `[announce]`, through rtnetlink: `VIP/32 dev lo table T proto 250` for
//! each announced VIP. The BGP speaker on the host (BIRD 2's `protocol kernel { kernel table T;
//! learn; }`, FRR's `ip import-table T`) sees them come and go and announces or withdraws the
//! VIP. I/O edge: which routes to keep is decided in `model::announce`.
use std::{
    collections::BTreeSet,
    net::IpAddr,
};

use futures::TryStreamExt;
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope};
use rtnetlink::IpVersion;
use tracing::{info, warn};

use crate::model::announce::{ROUTE_PROTOCOL, Route, RoutePlan};

/// The kernel creates `lo` first in every network namespace, so it is always index 1. The
/// route's device does not matter to the speaker (it announces the VIP with itself as next
/// hop); `lo` is the one device every host has.
const LOOPBACK_IFINDEX: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum AnnounceError {
    #[error("{op} the route {route}: {source}")]
    Route {
        op: &'static str,
        route: Route,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("reading the routing table: {0}")]
    Dump(#[source] rtnetlink::Error),
}

/// The host routes fj-lb keeps, over an rtnetlink connection.
pub struct Routes {
    handle: rtnetlink::Handle,
}

fn host_len(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}

/// The table of a dumped route: the attribute when there is one (tables above 255 need it),
/// else the header's byte.
fn table_of(m: &RouteMessage) -> u32 {
    m.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(m.header.table))
}

fn destination(m: &RouteMessage) -> Option<IpAddr> {
    m.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(RouteAddress::Inet(v4)) => Some(IpAddr::V4(*v4)),
        RouteAttribute::Destination(RouteAddress::Inet6(v6)) => Some(IpAddr::V6(*v6)),
        _ => None,
    })
}

impl Routes {
    pub fn new(handle: rtnetlink::Handle) -> Self {
        Self { handle }
    }

    /// The routes of ours in `table`: host routes carrying fj-lb's protocol number, whoever
    /// added them (this daemon, or one before it that crashed).
    pub async fn ours(&self, table: u32) -> Result<BTreeSet<Route>, AnnounceError> {
        let mut out = BTreeSet::new();
        for version in [IpVersion::V4, IpVersion::V6] {
            let mut dump = self.handle.route().get(version).execute();
            while let Some(m) = dump.try_next().await.map_err(AnnounceError::Dump)? {
                if m.header.protocol != RouteProtocol::Other(ROUTE_PROTOCOL) || table_of(&m) != table {
                    continue;
                }
                if let Some(vip) = destination(&m).filter(|ip| m.header.destination_prefix_length == host_len(*ip)) {
                    out.insert(Route { table, vip });
                }
            }
        }
        Ok(out)
    }

    /// The message that names `r`, for adding and for removing it.
    fn message(&self, r: Route) -> RouteMessage {
        let add = self.handle.route().add().table_id(r.table).protocol(RouteProtocol::Other(ROUTE_PROTOCOL)).scope(RouteScope::Link);
        let mut msg = match r.vip {
            IpAddr::V4(v4) => add.v4().destination_prefix(v4, 32).output_interface(LOOPBACK_IFINDEX).message_mut().clone(),
            IpAddr::V6(v6) => add.v6().destination_prefix(v6, 128).output_interface(LOOPBACK_IFINDEX).message_mut().clone(),
        };
        if r.table > 255 {
            // As `ip route` does: the header's byte says "see the attribute".
            msg.header.table = RouteHeader::RT_TABLE_UNSPEC;
        }
        msg
    }

    /// Adds `r`, or leaves it if it is there already.
    pub async fn add(&self, r: Route) -> Result<(), AnnounceError> {
        let msg = self.message(r);
        let mut req = self.handle.route().add();
        *req.message_mut() = msg;
        req.replace().execute().await.map_err(|source| AnnounceError::Route { op: "adding", route: r, source })
    }

    /// Removes `r`; one that is gone already counts as removed.
    pub async fn remove(&self, r: Route) -> Result<(), AnnounceError> {
        match self.handle.route().del(self.message(r)).execute().await {
            Ok(()) => Ok(()),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ESRCH => Ok(()),
            Err(source) => Err(AnnounceError::Route { op: "removing", route: r, source }),
        }
    }

    /// Carries out `plan`, additions first, keeping `installed` true to what the kernel now
    /// holds. A change that fails is logged and left for the next pass; the rest go ahead.
    pub async fn apply(&self, installed: &mut BTreeSet<Route>, plan: &RoutePlan) -> usize {
        let mut failed = 0;
        for r in &plan.add {
            match self.add(*r).await {
                Ok(()) => {
                    installed.insert(*r);
                    info!(vip = %r.vip, table = r.table, "VIP announced: host route added");
                }
                Err(e) => {
                    failed += 1;
                    warn!(vip = %r.vip, table = r.table, error = %e, "announcing the VIP failed");
                }
            }
        }
        for r in &plan.remove {
            match self.remove(*r).await {
                Ok(()) => {
                    installed.remove(r);
                    info!(vip = %r.vip, table = r.table, "VIP withdrawn: host route removed");
                }
                Err(e) => {
                    failed += 1;
                    warn!(vip = %r.vip, table = r.table, error = %e, "withdrawing the VIP failed");
                }
            }
        }
        failed
    }
}
