//! When a failed call may be sent again, and how long to wait first.

use std::time::Duration;

use super::error::SpritesError;

/// Which failures a call may be repeated after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Repeating has the same effect as sending once: retry on 429, 502–504 and transport errors.
    Idempotent,
    /// Only when the server said it did nothing (429, 502–504); a transport error leaves the
    /// outcome unknown and goes back to the caller.
    Refusals,
    /// Creates and execs: the caller decides (a durable step checks what happened first).
    Never,
}

/// Capped exponential backoff with jitter. A delay the server asks for is honoured as long as
/// it fits `max_server_delay`; a longer one is returned to the caller instead of slept through.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    pub max_server_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(8),
            max_server_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// No retries at all (useful where a caller wants to see every failure).
    pub fn none() -> Self {
        RetryPolicy { max_attempts: 1, ..RetryPolicy::default() }
    }

    /// The wait before attempt `attempt + 1` (attempt counts from 1), or `None` to give up.
    pub(crate) fn delay_after(&self, retry: Retry, attempt: u32, err: &SpritesError) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        let eligible = match (retry, err) {
            (Retry::Never, _) => false,
            (_, SpritesError::RateLimited { .. } | SpritesError::Unavailable { .. }) => true,
            (Retry::Idempotent, SpritesError::Transport(_)) => true,
            _ => false,
        };
        if !eligible {
            return None;
        }
        match err.retry_after() {
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
    use super::*;

    fn unavailable(retry_after: Option<Duration>) -> SpritesError {
        SpritesError::Unavailable { status: 503, retry_after, message: String::new() }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy { max_attempts: 20, ..RetryPolicy::default() };
        for attempt in 1..15 {
            let d = p.delay_after(Retry::Idempotent, attempt, &unavailable(None)).unwrap();
            let full = p.base_delay.saturating_mul(1 << (attempt - 1)).min(p.max_delay);
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?} not in [{:?}, {full:?}]", full / 2);
        }
    }

    #[test]
    fn server_delay_is_honoured_or_handed_back() {
        let p = RetryPolicy::default();
        let asked = Duration::from_secs(3);
        assert_eq!(p.delay_after(Retry::Idempotent, 1, &unavailable(Some(asked))), Some(asked));
        let too_long =
            SpritesError::RateLimited { retry_after: Some(Duration::from_secs(60)), message: String::new() };
        assert_eq!(p.delay_after(Retry::Idempotent, 1, &too_long), None);
    }

    #[test]
    fn eligibility_by_call_kind() {
        let p = RetryPolicy::default();
        let transport = SpritesError::Transport("reset".into());
        assert!(p.delay_after(Retry::Idempotent, 1, &transport).is_some());
        assert!(p.delay_after(Retry::Refusals, 1, &transport).is_none());
        assert!(p.delay_after(Retry::Refusals, 1, &unavailable(None)).is_some());
        assert!(p.delay_after(Retry::Never, 1, &unavailable(None)).is_none());
        let api = SpritesError::Api { status: 500, message: String::new() };
        assert!(p.delay_after(Retry::Idempotent, 1, &api).is_none());
        assert!(p.delay_after(Retry::Idempotent, p.max_attempts, &unavailable(None)).is_none());
    }
}
