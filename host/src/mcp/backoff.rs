//! When to try starting a server again after it failed to start.
//!
//! A server that cannot start (a bad command, a crashing binary, a remote
//! that is down) would otherwise be respawned by every chat that offers
//! its tools, each waiting out the start-up timeout. After a failure the
//! next attempt waits 1 s, doubling per failure up to 30 s; until then
//! callers get the last error at once.

use std::time::{Duration, Instant};

const FIRST_DELAY: Duration = Duration::from_secs(1);
const MAX_DELAY: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
pub struct Backoff {
    failures: u32,
    retry_at: Option<Instant>,
    last_error: String,
}

impl Backoff {
    /// `Err` with why, while the server is still waiting out its delay.
    pub fn check(&self, now: Instant) -> Result<(), String> {
        match self.retry_at {
            Some(at) if now < at => Err(format!(
                "{} (failed to start {} time{} in a row; next attempt in {:.1} s)",
                self.last_error,
                self.failures,
                if self.failures == 1 { "" } else { "s" },
                (at - now).as_secs_f64()
            )),
            _ => Ok(()),
        }
    }

    pub fn failed(&mut self, now: Instant, error: &str) {
        self.failures = self.failures.saturating_add(1);
        let delay = FIRST_DELAY
            .saturating_mul(1 << (self.failures - 1).min(5))
            .min(MAX_DELAY);
        self.retry_at = Some(now + delay);
        self.last_error = error.to_owned();
    }

    pub fn succeeded(&mut self) {
        *self = Backoff::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_doubles_up_to_the_cap_and_resets_on_success() {
        let start = Instant::now();
        let mut backoff = Backoff::default();
        assert!(backoff.check(start).is_ok());
        let mut delays = Vec::new();
        for _ in 0..7 {
            backoff.failed(start, "boom");
            delays.push(backoff.retry_at.map(|at| (at - start).as_secs()));
        }
        let secs = [1, 2, 4, 8, 16, 30, 30].map(Some);
        assert_eq!(delays, secs);
        let waiting = backoff.check(start + Duration::from_secs(10)).unwrap_err();
        assert_eq!(
            waiting,
            "boom (failed to start 7 times in a row; next attempt in 20.0 s)"
        );
        assert!(backoff.check(start + MAX_DELAY).is_ok());
        backoff.succeeded();
        assert!(backoff.check(start).is_ok());
    }
}
