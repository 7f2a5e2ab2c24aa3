//! The control socket: the protocol (typed messages, shared), the daemon's server and the
//! CLI's client. The daemon's loop owns all state; connections hand it their requests and wait
//! for the answer.
pub mod client;
pub mod protocol;
pub mod server;

use std::path::PathBuf;

pub use client::{call, stream};
pub use protocol::{Reply, Request, Response};
pub use server::{Pending, remove_socket, serve};

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("another fj-lb is already running: its control socket {0} answers")]
    InUse(PathBuf),
    #[error("control socket {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("fj-lb is not running (nothing answers on {path}: {source})")]
    NotRunning {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("talking to fj-lb on {path}: {source}")]
    Talk {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("fj-lb answered something unreadable: {0}")]
    Garbled(String),
    /// A stream ended before the client was done with it: the daemon stopped, or closed it.
    #[error("fj-lb ended the stream (it stopped, or closed the connection)")]
    Ended,
    /// The daemon understood the request and said no; its words.
    #[error("{0}")]
    Refused(String),
}

