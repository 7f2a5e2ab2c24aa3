//! fj-lb's daemon and CLI, one room per concern. The pure core — `model`, `cli`, `report` (but
//! its `serve`), `control::protocol`, `import`, and `vrrp`'s `machine`, `packet`, `validate`,
//! `status`, `sync` and `hooks` —
//! never imports aya, tokio, libc or netlink (`tests/layout.rs` checks it). The edges that talk
//! to the kernel and the network are `datapath`, `net`, `health`, `control`'s server and client,
//! the rest of `vrrp`, `announce` (host routes for a BGP speaker) and `report::serve`; `daemon`
//! ties them together. `cli` is the command line, with the man pages and completions
//! generated from it.
pub mod announce;
pub mod cli;
pub mod control;
pub mod daemon;
pub mod datapath;
pub mod health;
pub mod import;
pub mod model;
pub mod net;
pub mod report;
pub mod vrrp;
