pub mod config;
pub mod dataplane;
pub mod maglev;
pub mod state;
