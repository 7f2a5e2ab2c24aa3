//! VRRP version 3 (RFC 5798), several instances per daemon, optionally in sync groups. Pure,
//! importing no aya, tokio, libc or netlink: `machine`, `packet`, `validate`, `status`,
//! `sync` (the sync-group rules) and `hooks` (which notify scripts a transition runs). The
//! edges may use them, never the reverse: `socket`, `announce` (pure frame builders, plus the
//! bursts that send them), `addresses`, `vmac`, `notify` (running the scripts), `group` (a sync
//! group's task) and `runner` over them all.
mod addresses;
mod announce;
mod group;
pub mod hooks;
pub mod machine;
mod notify;
pub mod packet;
mod runner;
mod socket;
pub mod status;
pub mod sync;
pub mod validate;
mod vmac;

pub use runner::{Command, InstanceSpec, Vrrp, VrrpError, VrrpSet, start_all};
pub use status::VrrpStatus;
pub use vmac::virtual_mac;
