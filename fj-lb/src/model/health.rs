//! Health as a state: consecutive check results turned into up/down with hysteresis, and
//! why a check failed. Pure; the probes that produce results live in `crate::health`.
use std::time::{Duration, SystemTime};

/// Why one check failed. The texts are what `fj-lb backends` shows as the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckFailure {
    #[error("connect refused")]
    Refused,
    #[error("connection reset")]
    Reset,
    #[error("timeout after {ms} ms")]
    Timeout { ms: u128 },
    #[error("HTTP {0}")]
    HttpStatus(u16),
    #[error("not an HTTP response")]
    NotHttp,
    /// Any other socket error, as the OS describes it.
    #[error("{0}")]
    Io(String),
}

/// The result of one check.
pub type CheckOutcome = Result<(), CheckFailure>;

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
    /// When the last check finished and how long it took; `None` before the first. The
    /// daemon's clock, handed in: this file reads none.
    pub last_check: Option<LastCheck>,
}

/// The last completed check of one backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct LastCheck {
    pub at: SystemTime,
    pub took: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Up,
    Down,
}

impl HealthState {
    pub fn new(up: bool) -> Self {
        Self {
            up,
            passes: 0,
            failures: 0,
            checks: 0,
            reason: if up { "assumed up".into() } else { "not checked yet".into() },
            last_check: None,
        }
    }

    /// Records one check result; returns the transition it caused, if any.
    pub fn record(&mut self, result: &CheckOutcome, rise: u32, fall: u32) -> Option<Transition> {
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
                self.reason = why.to_string();
                if self.up && self.failures >= fall {
                    self.up = false;
                    return Some(Transition::Down);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: CheckOutcome = Ok(());
    fn fail() -> CheckOutcome {
        Err(CheckFailure::Refused)
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
}
