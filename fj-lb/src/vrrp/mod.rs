//! VRRP version 3 (RFC 5798). Pure: `machine` (the state machine, driven by a clock it is
//! given), `packet` (the advert codec) and `status`. `io` is the edge: sockets, rtnetlink for
//! the virtual addresses, gratuitous ARP / unsolicited NA, the virtual MAC.
pub mod io;
pub mod machine;
pub mod packet;
pub mod status;

pub use status::VrrpStatus;
