//! The fj-lb data path, split by concern as Katran splits its own: packet parsing (`parse`),
//! maps (`maps`), counters (`stats`), backend choice and the flow table (`flow`), and the layer-2
//! rewrite that sends a packet to its backend (`forward`). The flow hash itself lives in
//! `fj-lb-common` so the daemon computes the very same value.
#![no_std]

pub mod balancer;
pub mod bench;
pub mod flow;
pub mod forward;
pub mod maps;
pub mod parse;
pub mod stats;
