//! The checker of one backend: checks at once, then every interval plus a stable offset, and
//! never waits for another backend's check.
use std::{
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use tokio::{sync::mpsc, task::JoinHandle};

use super::probe::probe;
use crate::model::{
    addr::addr_bytes,
    config::{HealthCheck, HealthConfig},
    health::CheckOutcome,
};

/// One result, tagged with where it came from and which generation of checkers sent it (a
/// reload restarts the checkers; late results of the old ones are ignored).
#[derive(Debug)]
pub struct CheckResult {
    pub generation: u64,
    pub service: String,
    pub backend: IpAddr,
    pub result: CheckOutcome,
    pub latency: Duration,
}

/// A spread of start times over one interval, derived from the backend so that it is stable
/// and thousands of checkers do not fire together.
fn jitter(backend: &IpAddr, service: &str, interval: Duration) -> Duration {
    let mut bytes = service.as_bytes().to_vec();
    bytes.extend_from_slice(&addr_bytes(*backend).0);
    let h = fj_lb_common::hash::bytes_hash(&bytes, 7) as u64;
    // Up to 10% of the interval.
    Duration::from_micros(h % (interval.as_micros() as u64 / 10 + 1))
}

/// Spawns the checker of one backend. It checks at once, then every `interval` (plus a fixed
/// per-backend offset), and never waits for another backend's check.
pub fn spawn_checker(
    generation: u64,
    service: String,
    backend: IpAddr,
    cfg: HealthConfig,
    default_port: u16,
    results: mpsc::Sender<CheckResult>,
) -> Option<JoinHandle<()>> {
    if cfg.check == HealthCheck::None {
        return None;
    }
    let port = cfg.port.unwrap_or(default_port);
    let addr = SocketAddr::new(backend, port);
    let interval = Duration::from_millis(cfg.interval_ms);
    let timeout = Duration::from_millis(cfg.timeout_ms);
    Some(tokio::spawn(async move {
        let offset = jitter(&backend, &service, interval);
        let mut next = tokio::time::Instant::now();
        loop {
            let started = Instant::now();
            let result = probe(&cfg.check, addr, timeout).await;
            let msg = CheckResult { generation, service: service.clone(), backend, result, latency: started.elapsed() };
            if results.send(msg).await.is_err() {
                return;
            }
            next += interval;
            let now = tokio::time::Instant::now();
            if next < now {
                next = now;
            }
            tokio::time::sleep_until(next + offset).await;
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_is_stable_and_within_a_tenth() {
        let ip: IpAddr = "10.0.0.11".parse().unwrap();
        let i = Duration::from_millis(1000);
        assert_eq!(jitter(&ip, "web", i), jitter(&ip, "web", i));
        assert!(jitter(&ip, "web", i) <= Duration::from_millis(100));
    }
}
