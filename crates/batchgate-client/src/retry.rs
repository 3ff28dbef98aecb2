//! When to retry a push and how long to wait in between.

use std::time::Duration;

/// Exponential backoff between push attempts.
///
/// The default is the runbook's advice (`stop_after_attempt(3)`,
/// `wait_exponential(multiplier=1, max=60)`): 3 attempts, waiting 1 s and then 2 s, each wait
/// doubling the previous one and never longer than 60 s. Only connection errors, timeouts, 5xx
/// and 429 answers are retried; any other 4xx means the gateway will never accept the push.
///
/// A `Retry-After: <seconds>` header on a 429 or 503 answer replaces the computed wait (still
/// capped at `max_backoff`).
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in total, the first one included; `1` means no retry (`0` is read as `1`).
    pub max_attempts: u32,
    /// The wait before the first retry.
    pub initial_backoff: Duration,
    /// Each wait is the previous one times this factor.
    pub multiplier: f64,
    /// No wait is longer than this.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_secs(1),
            multiplier: 2.0,
            max_backoff: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// One attempt, no retry.
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// The default backoff with `attempts` attempts in total.
    pub fn attempts(attempts: u32) -> Self {
        RetryPolicy {
            max_attempts: attempts,
            ..RetryPolicy::default()
        }
    }

    /// Sets the first wait.
    pub fn with_initial_backoff(mut self, wait: Duration) -> Self {
        self.initial_backoff = wait;
        self
    }

    /// Sets the longest wait.
    pub fn with_max_backoff(mut self, wait: Duration) -> Self {
        self.max_backoff = wait;
        self
    }

    /// Attempts in total (at least one).
    pub fn total_attempts(&self) -> u32 {
        self.max_attempts.max(1)
    }

    /// The wait before retry number `retry` (1 for the wait after the first attempt).
    pub fn backoff(&self, retry: u32) -> Duration {
        let exponent = i32::try_from(retry.saturating_sub(1)).unwrap_or(i32::MAX);
        let secs = self.initial_backoff.as_secs_f64() * self.multiplier.powi(exponent);
        let cap = self.max_backoff.as_secs_f64();
        if secs.is_finite() && secs >= 0.0 && secs < cap {
            Duration::from_secs_f64(secs)
        } else {
            self.max_backoff
        }
    }

    /// The longest a push can spend waiting between attempts (the request time of each attempt,
    /// bounded by the timeout, comes on top).
    pub fn total_backoff(&self) -> Duration {
        (1..self.total_attempts()).map(|r| self.backoff(r)).sum()
    }

    /// The wait before retry `retry`, honouring a `Retry-After` the gateway sent.
    pub(crate) fn wait(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        retry_after.map_or_else(|| self.backoff(retry), |d| d.min(self.max_backoff))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_matches_the_runbook() {
        let p = RetryPolicy::default();
        assert_eq!(p.total_attempts(), 3);
        assert_eq!(p.backoff(1), Duration::from_secs(1));
        assert_eq!(p.backoff(2), Duration::from_secs(2));
        assert_eq!(p.backoff(7), Duration::from_secs(60));
        assert_eq!(p.backoff(u32::MAX), Duration::from_secs(60));
        assert_eq!(p.total_backoff(), Duration::from_secs(3));
    }

    #[test]
    fn none_and_zero_mean_one_attempt() {
        assert_eq!(RetryPolicy::none().total_attempts(), 1);
        assert_eq!(RetryPolicy::attempts(0).total_attempts(), 1);
        assert_eq!(RetryPolicy::attempts(0).total_backoff(), Duration::ZERO);
    }

    #[test]
    fn retry_after_is_capped() {
        let p = RetryPolicy::default().with_max_backoff(Duration::from_secs(5));
        assert_eq!(p.wait(1, Some(Duration::from_secs(3))), Duration::from_secs(3));
        assert_eq!(p.wait(1, Some(Duration::from_secs(300))), Duration::from_secs(5));
        assert_eq!(p.wait(1, None), Duration::from_secs(1));
    }
}
