//! The pure core: the config (parse, validate, what a reload may change), Maglev, health
//! state, balancer planning (what the maps should hold and the ordered writes to get there),
//! addresses and checksums, and which VIPs to announce to routers. Never imports aya, tokio,
//! libc or netlink: a test checks it, and unit tests cover it without a kernel.
pub mod addr;
pub mod announce;
pub mod balancer;
pub mod checksum;
pub mod command;
pub mod config;
pub mod datapath_model;
pub mod health;
pub mod maglev;
pub mod vrrp_config;
