//! When a failed Railway call is sent again, and after how long.

use std::time::Duration;

use super::error::RailwayError;

/// Capped exponential backoff with jitter for rate limits and transient failures; a
/// `Retry-After` the server sends is honoured as long as it fits `max_server_delay`.
/// Unauthorized, NotFound and Permanent failures are never retried.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// The first backoff (5 s, as the runtime's pool did); doubles per attempt.
    pub base_delay: Duration,
    pub max_delay: Duration,
    pub max_server_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_secs(5),
            max_delay: Duration::from_secs(40),
            max_server_delay: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        RetryPolicy { max_attempts: 1, ..RetryPolicy::default() }
    }

    /// The wait before attempt `attempt + 1` (attempts count from 1), or None to give up.
    pub fn delay_after(&self, attempt: u32, err: &RailwayError) -> Option<Duration> {
        if attempt >= self.max_attempts || !err.is_retryable() {
            return None;
        }
        match err.retry_after {
            Some(asked) if asked > self.max_server_delay => None,
            Some(asked) => Some(asked),
            None => Some(self.backoff(attempt)),
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        crate::backoff::equal_jitter(self.base_delay, self.max_delay, attempt.saturating_sub(1))
    }
}

#[cfg(test)]
mod tests {
    use super::super::error::RailwayErrorKind;
    use super::*;

    fn err(kind: RailwayErrorKind, retry_after: Option<Duration>) -> RailwayError {
        RailwayError { kind, operation: "t", message: String::new(), retry_after, status: 0 }
    }

    #[test]
    fn backoff_grows_is_capped_and_only_for_retryable_kinds() {
        let p = RetryPolicy { max_attempts: 10, ..RetryPolicy::default() };
        for attempt in 1..9 {
            let d = p.delay_after(attempt, &err(RailwayErrorKind::Transient, None)).unwrap();
            let full = p.base_delay.saturating_mul(1 << (attempt - 1)).min(p.max_delay);
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
        }
        let asked = Some(Duration::from_secs(2));
        assert_eq!(p.delay_after(1, &err(RailwayErrorKind::RateLimited, asked)), asked);
        assert_eq!(
            p.delay_after(1, &err(RailwayErrorKind::RateLimited, Some(Duration::from_secs(600)))),
            None
        );
        for kind in [RailwayErrorKind::Unauthorized, RailwayErrorKind::Permanent, RailwayErrorKind::NotFound]
        {
            assert_eq!(p.delay_after(1, &err(kind, None)), None);
        }
        assert_eq!(p.delay_after(10, &err(RailwayErrorKind::Transient, None)), None);
    }
}
