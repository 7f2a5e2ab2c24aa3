//! What every listener of the daemon shares (the control socket, the metrics endpoint): a cap
//! on open connections, and an accept loop that backs off when accepting fails. Without them a
//! client holding thousands of idle connections, or EMFILE, turns the accept loop into a spin
//! that starves health checks and VRRP of the CPU and of file descriptors.
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::warn;

/// How long accepting waits after the first failure; doubled on each further one.
const BACKOFF_START: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// A failing accept loop says so at most this often.
const LOG_EVERY: Duration = Duration::from_secs(10);

pub struct Gate {
    what: &'static str,
    permits: Arc<Semaphore>,
    backoff: Duration,
    last_log: Option<Instant>,
    refused: u64,
}

impl Gate {
    pub fn new(what: &'static str, max_connections: usize) -> Self {
        Self { what, permits: Arc::new(Semaphore::new(max_connections)), backoff: BACKOFF_START, last_log: None, refused: 0 }
    }

    /// The next connection worth serving and its place: waits for `accept`, backs off when it
    /// failed, closes one over the cap; `None` in those two cases (the caller loops).
    pub async fn next<S, A>(&mut self, accept: impl std::future::Future<Output = std::io::Result<(S, A)>>) -> Option<(S, OwnedSemaphorePermit)> {
        match accept.await {
            Ok((stream, _)) => self.admit().map(|permit| (stream, permit)),
            Err(e) => {
                self.accept_failed(e).await;
                None
            }
        }
    }

    /// A place for one more connection, or `None` when the cap is reached: the caller closes
    /// the connection at once, which keeps the descriptors in use bounded.
    pub fn admit(&mut self) -> Option<OwnedSemaphorePermit> {
        self.backoff = BACKOFF_START;
        match self.permits.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => {
                self.refused += 1;
                self.log(|what, refused| warn!(listener = what, refused, "connection cap reached: closing new connections (logged at most every 10 s)"));
                None
            }
        }
    }

    /// After a failed accept (EMFILE, ENFILE, ENOMEM, ECONNABORTED): wait before the next try,
    /// longer each time, instead of spinning.
    pub async fn accept_failed(&mut self, e: std::io::Error) {
        let backoff = self.backoff;
        self.log(|what, _| warn!(listener = what, error = %e, backoff_ms = backoff.as_millis() as u64, "accepting a connection failed; backing off (logged at most every 10 s)"));
        tokio::time::sleep(self.backoff).await;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }

    fn log(&mut self, f: impl FnOnce(&'static str, u64)) {
        if self.last_log.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
            self.last_log = Some(Instant::now());
            f(self.what, self.refused);
        }
    }
}

/// Raises the soft limit on open files to the hard limit: health checks, connections and the
/// BPF objects all take descriptors, and the default soft limit (1,024) is low for a balancer.
pub fn raise_open_file_limit() -> std::io::Result<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(lim.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_cap_admits_up_to_its_size_and_frees_with_the_permit() {
        let mut g = Gate::new("test", 2);
        let a = g.admit().expect("first");
        let _b = g.admit().expect("second");
        assert!(g.admit().is_none(), "third is over the cap");
        drop(a);
        assert!(g.admit().is_some(), "a closed connection frees its place");
        assert_eq!(g.refused, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn failed_accepts_back_off_doubling_to_a_second() {
        let mut g = Gate::new("test", 1);
        let mut waits = Vec::new();
        for _ in 0..9 {
            let t = tokio::time::Instant::now();
            g.accept_failed(std::io::Error::from_raw_os_error(libc::EMFILE)).await;
            waits.push(t.elapsed().as_millis());
        }
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        let _ = g.admit();
        assert_eq!(g.backoff, BACKOFF_START, "a successful accept resets the backoff");
    }

    #[test]
    fn the_open_file_limit_is_raised_to_the_hard_limit() {
        let n = raise_open_file_limit().expect("getrlimit works");
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
        assert_eq!((n, lim.rlim_cur), (lim.rlim_max, lim.rlim_max));
    }
}
