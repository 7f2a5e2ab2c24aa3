//! Health checks: the rise/fall state machine (pure) and the probes (TCP connect, HTTP GET),
//! each backend on its own schedule so a slow one never delays another.
use std::{
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::mpsc,
    task::JoinHandle,
};

use crate::config::{HealthCheck, HealthConfig};

/// Consecutive results turned into up/down with hysteresis.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HealthState {
    pub up: bool,
    pub passes: u32,
    pub failures: u32,
    /// Checks completed since the backend appeared.
    pub checks: u32,
    /// Why the last check failed, or "ok".
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Up,
    Down,
}

impl HealthState {
    pub fn new(up: bool) -> Self {
        Self { up, passes: 0, failures: 0, checks: 0, reason: if up { "assumed up".into() } else { "not checked yet".into() } }
    }

    /// Records one check result; returns the transition it caused, if any.
    pub fn record(&mut self, result: &Result<(), String>, rise: u32, fall: u32) -> Option<Transition> {
        self.checks = self.checks.saturating_add(1);
        match result {
            Ok(()) => {
                self.passes = self.passes.saturating_add(1);
                self.failures = 0;
                self.reason = "ok".into();
                if !self.up && self.passes >= rise {
                    self.up = true;
                    return Some(Transition::Up);
                }
            }
            Err(why) => {
                self.failures = self.failures.saturating_add(1);
                self.passes = 0;
                self.reason = why.clone();
                if self.up && self.failures >= fall {
                    self.up = false;
                    return Some(Transition::Down);
                }
            }
        }
        None
    }
}

/// One result, tagged with where it came from and which generation of checkers sent it (a
/// reload restarts the checkers; late results of the old ones are ignored).
#[derive(Debug)]
pub struct CheckResult {
    pub generation: u64,
    pub service: String,
    pub backend: IpAddr,
    pub result: Result<(), String>,
    pub latency: Duration,
}

fn describe(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connect refused".into(),
        std::io::ErrorKind::ConnectionReset => "connection reset".into(),
        _ => e.to_string(),
    }
}

/// Runs one check against `addr`.
pub async fn probe(check: &HealthCheck, addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    let attempt = async {
        let mut s = TcpStream::connect(addr).await.map_err(|e| describe(&e))?;
        let HealthCheck::Http { path, expect_status } = check else {
            return Ok(());
        };
        let host = match addr.ip() {
            IpAddr::V4(v) => v.to_string(),
            IpAddr::V6(v) => format!("[{v}]"),
        };
        let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: fj-lb-health\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.map_err(|e| describe(&e))?;
        // The status line is all we need; read until it is complete.
        let mut buf = Vec::with_capacity(256);
        let mut chunk = [0u8; 256];
        while !buf.windows(2).any(|w| w == b"\r\n") && buf.len() < 4096 {
            let n = s.read(&mut chunk).await.map_err(|e| describe(&e))?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let line = String::from_utf8_lossy(&buf);
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| "not an HTTP response".to_string())?;
        if status == *expect_status { Ok(()) } else { Err(format!("HTTP {status}")) }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!("timeout after {} ms", timeout.as_millis())),
    }
}

/// A spread of start times over one interval, derived from the backend so that it is stable
/// and thousands of checkers do not fire together.
fn jitter(backend: &IpAddr, service: &str, interval: Duration) -> Duration {
    let mut bytes = service.as_bytes().to_vec();
    bytes.extend_from_slice(&crate::dataplane::addr_bytes(*backend).0);
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

    const OK: Result<(), String> = Ok(());
    fn fail() -> Result<(), String> {
        Err("connect refused".into())
    }

    #[test]
    fn starts_down_and_rises_after_rise_passes() {
        let mut h = HealthState::new(false);
        assert_eq!(h.record(&OK, 2, 3), None);
        assert_eq!(h.record(&OK, 2, 3), Some(Transition::Up));
        assert!(h.up);
        assert_eq!(h.record(&OK, 2, 3), None, "no repeated transition");
    }

    #[test]
    fn falls_after_fall_failures_with_reason() {
        let mut h = HealthState::new(true);
        assert_eq!(h.record(&fail(), 2, 3), None);
        assert_eq!(h.record(&fail(), 2, 3), None);
        assert_eq!(h.record(&fail(), 2, 3), Some(Transition::Down));
        assert_eq!(h.reason, "connect refused");
        assert_eq!(h.record(&fail(), 2, 3), None);
    }

    #[test]
    fn flapping_never_flips_state() {
        let mut down = HealthState::new(false);
        let mut up = HealthState::new(true);
        for i in 0..20 {
            let r = if i % 2 == 0 { OK } else { fail() };
            assert_eq!(down.record(&r, 2, 3), None);
            assert_eq!(up.record(&r, 2, 3), None);
        }
        assert!(!down.up && up.up);
    }

    #[test]
    fn a_pass_resets_the_failure_count() {
        let mut h = HealthState::new(true);
        h.record(&fail(), 2, 3);
        h.record(&fail(), 2, 3);
        h.record(&OK, 2, 3);
        assert_eq!(h.record(&fail(), 2, 3), None);
        assert_eq!(h.record(&fail(), 2, 3), None);
        assert_eq!(h.record(&fail(), 2, 3), Some(Transition::Down));
    }

    #[test]
    fn rise_and_fall_of_one_flip_at_once() {
        let mut h = HealthState::new(false);
        assert_eq!(h.record(&OK, 1, 1), Some(Transition::Up));
        assert_eq!(h.record(&fail(), 1, 1), Some(Transition::Down));
    }

    #[test]
    fn jitter_is_stable_and_within_a_tenth() {
        let ip: IpAddr = "10.0.0.11".parse().unwrap();
        let i = Duration::from_millis(1000);
        assert_eq!(jitter(&ip, "web", i), jitter(&ip, "web", i));
        assert!(jitter(&ip, "web", i) <= Duration::from_millis(100));
    }

    #[tokio::test]
    async fn probes_report_refused_timeout_and_status() {
        use tokio::net::TcpListener;
        // A port nobody listens on: bind then drop to find one.
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let r = probe(&HealthCheck::Tcp, free, Duration::from_millis(500)).await;
        assert_eq!(r, Err("connect refused".into()));

        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            for status in ["200 OK", "503 Service Unavailable"] {
                let (mut s, _) = l.accept().await.unwrap();
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes()).await;
            }
            // Third connection: accept and say nothing.
            let (_s, _) = l.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(2)).await;
        });
        let http = HealthCheck::Http { path: "/healthz".into(), expect_status: 200 };
        assert_eq!(probe(&http, addr, Duration::from_millis(500)).await, Ok(()));
        assert_eq!(probe(&http, addr, Duration::from_millis(500)).await, Err("HTTP 503".into()));
        assert_eq!(probe(&http, addr, Duration::from_millis(200)).await, Err("timeout after 200 ms".into()));
    }
}
