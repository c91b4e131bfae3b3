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

pub use crate::backoff::RetryPolicy;

/// The wait before attempt `attempt + 1` (attempt counts from 1), or `None` to give up.
pub(crate) fn delay_after(
    policy: &RetryPolicy,
    retry: Retry,
    attempt: u32,
    err: &SpritesError,
) -> Option<Duration> {
    let eligible = match (retry, err) {
        (Retry::Never, _) => false,
        (_, SpritesError::RateLimited { .. } | SpritesError::Unavailable { .. }) => true,
        (Retry::Idempotent, SpritesError::Transport(_)) => true,
        _ => false,
    };
    if eligible { policy.delay(attempt, err.retry_after()) } else { None }
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
            let d = delay_after(&p, Retry::Idempotent, attempt, &unavailable(None)).unwrap();
            let full = p.base_delay.saturating_mul(1 << (attempt - 1)).min(p.max_delay);
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?} not in [{:?}, {full:?}]", full / 2);
        }
    }

    #[test]
    fn server_delay_is_honoured_or_handed_back() {
        let p = RetryPolicy::default();
        let asked = Duration::from_secs(3);
        assert_eq!(delay_after(&p, Retry::Idempotent, 1, &unavailable(Some(asked))), Some(asked));
        let too_long =
            SpritesError::RateLimited { retry_after: Some(Duration::from_secs(60)), message: String::new() };
        assert_eq!(delay_after(&p, Retry::Idempotent, 1, &too_long), None);
    }

    #[test]
    fn eligibility_by_call_kind() {
        let p = RetryPolicy::default();
        let transport = SpritesError::Transport("reset".into());
        assert!(delay_after(&p, Retry::Idempotent, 1, &transport).is_some());
        assert!(delay_after(&p, Retry::Refusals, 1, &transport).is_none());
        assert!(delay_after(&p, Retry::Refusals, 1, &unavailable(None)).is_some());
        assert!(delay_after(&p, Retry::Never, 1, &unavailable(None)).is_none());
        let api = SpritesError::Api { status: 500, message: String::new() };
        assert!(delay_after(&p, Retry::Idempotent, 1, &api).is_none());
        assert!(delay_after(&p, Retry::Idempotent, p.max_attempts, &unavailable(None)).is_none());
    }
}
