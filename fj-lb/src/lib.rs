//! fj-lb's daemon and CLI. Pure logic (config, Maglev, state planning) stays free of I/O;
//! `dataplane`, `neigh` and `daemon` are the edges that talk to the kernel.
pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod dataplane;
pub mod health;
pub mod maglev;
pub mod metrics;
pub mod neigh;
pub mod report;
pub mod state;
pub mod vrrp;
