//! The host's network as the daemon reads it: interfaces, the neighbour table over rtnetlink
//! (backend MACs), routes (layer-3 backends' next hops), and solicitation of missing
//! neighbours. I/O edge; depends on `model` only
//! for address types.
pub mod host;
pub mod neigh;
pub mod route;
pub mod serving;

pub use host::LiveHost;
pub use neigh::{NeighError, Neighbours};
