//! Health checking at the edge: one task per backend runs its probe on a stable schedule and
//! sends each result to the daemon's loop. Depends on `model` (the check config and the
//! result types) and tokio; the rise/fall state lives in `model::health`.
mod checker;
mod probe;

pub use checker::{CheckResult, spawn_checker};
pub use probe::probe;
