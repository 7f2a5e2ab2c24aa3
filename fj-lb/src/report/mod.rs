//! What the daemon shows: the status model with its stable `--json` names (`status`), the
//! operator's tables (`tables`), Prometheus text (`metrics`), the HTML stats page (`page`),
//! `fj-lb trace`'s filter and lines (`trace`) — all pure — and the HTTP endpoint that serves
//! the stats (`serve`, the one I/O file here).
pub mod metrics;
pub mod page;
pub mod serve;
pub mod status;
pub mod tables;
pub mod trace;
