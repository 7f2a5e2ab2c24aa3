//! VRRP version 3 (RFC 5798). Pure, importing no aya, tokio, libc or netlink: `machine`, `packet`,
//! `validate`, `status`. The edges may use them, never the reverse: `socket`, `announce` (pure
//! frame builders, plus the bursts that send them), `addresses`, `vmac`, and `runner` over them all.
mod addresses;
mod announce;
pub mod machine;
pub mod packet;
mod runner;
mod socket;
pub mod status;
pub mod validate;
mod vmac;

pub use runner::{Command, Vrrp, VrrpError, start};
pub use status::VrrpStatus;
pub use vmac::virtual_mac;
