//! When a failed Railway call is sent again, and after how long.

use std::time::Duration;

use super::error::RailwayError;

pub use crate::backoff::RetryPolicy;

/// Railway's own pace, the runtime pool's: 5 s doubling up to 40 s, a `Retry-After` of up to a
/// minute waited out.
pub fn patient() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_secs(5),
        max_delay: Duration::from_secs(40),
        max_server_delay: Duration::from_secs(60),
    }
}

/// The wait before attempt `attempt + 1` (attempts count from 1), or None to give up.
/// Unauthorized, NotFound and Permanent failures are never retried.
pub fn delay_after(policy: &RetryPolicy, attempt: u32, err: &RailwayError) -> Option<Duration> {
    if err.is_retryable() { policy.delay(attempt, err.retry_after) } else { None }
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
            let d = delay_after(&p, attempt, &err(RailwayErrorKind::Transient, None)).unwrap();
            let full = p.base_delay.saturating_mul(1 << (attempt - 1)).min(p.max_delay);
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
        }
        let asked = Some(Duration::from_secs(2));
        assert_eq!(delay_after(&p, 1, &err(RailwayErrorKind::RateLimited, asked)), asked);
        assert_eq!(
            delay_after(&p, 1, &err(RailwayErrorKind::RateLimited, Some(Duration::from_secs(600)))),
            None
        );
        for kind in [RailwayErrorKind::Unauthorized, RailwayErrorKind::Permanent, RailwayErrorKind::NotFound]
        {
            assert_eq!(delay_after(&p, 1, &err(kind, None)), None);
        }
        assert_eq!(delay_after(&p, 10, &err(RailwayErrorKind::Transient, None)), None);
    }
}
