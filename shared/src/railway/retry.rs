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

/// The first wait after a per-user creation throttle ("creating volumes too quickly"): such a
/// throttle outlasts a few seconds of request backoff (the old pool's 3 tries × 2 s failed
/// through it), so its waits start here and double.
pub const DEFAULT_THROTTLE_WAIT: Duration = Duration::from_secs(15);

/// The wait before attempt `attempt + 1` (attempts count from 1), or None to give up.
/// Unauthorized, NotFound and Permanent failures are never retried; a Transient failure of a
/// call that is not idempotent is not resent either (its outcome is unknown: the caller looks
/// first). A throttle without a server-given wait is waited out on `throttle_wait`'s clock,
/// within the policy's `max_server_delay`.
pub fn delay_after(
    policy: &RetryPolicy,
    attempt: u32,
    err: &RailwayError,
    idempotent: bool,
    throttle_wait: Duration,
) -> Option<Duration> {
    if !err.is_retryable() || (!idempotent && !err.surely_not_applied()) {
        return None;
    }
    let asked = err.retry_after.or_else(|| {
        err.throttle
            .then(|| crate::backoff::equal_jitter(throttle_wait, policy.max_server_delay, attempt - 1))
    });
    policy.delay(attempt, asked)
}

#[cfg(test)]
mod tests {
    use super::super::error::RailwayErrorKind;
    use super::*;

    fn err(kind: RailwayErrorKind, retry_after: Option<Duration>) -> RailwayError {
        RailwayError { retry_after, ..RailwayError::new(kind, "t", "") }
    }

    const THROTTLE: Duration = Duration::from_secs(15);

    #[test]
    fn backoff_grows_is_capped_and_only_for_retryable_kinds() {
        let p = RetryPolicy { max_attempts: 10, ..RetryPolicy::default() };
        for attempt in 1..9 {
            let d =
                delay_after(&p, attempt, &err(RailwayErrorKind::Transient, None), true, THROTTLE).unwrap();
            let full = p.base_delay.saturating_mul(1 << (attempt - 1)).min(p.max_delay);
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
        }
        let asked = Some(Duration::from_secs(2));
        assert_eq!(delay_after(&p, 1, &err(RailwayErrorKind::RateLimited, asked), true, THROTTLE), asked);
        let too_long = err(RailwayErrorKind::RateLimited, Some(Duration::from_secs(600)));
        assert_eq!(delay_after(&p, 1, &too_long, true, THROTTLE), None);
        for kind in [RailwayErrorKind::Unauthorized, RailwayErrorKind::Permanent, RailwayErrorKind::NotFound]
        {
            assert_eq!(delay_after(&p, 1, &err(kind, None), true, THROTTLE), None);
        }
        assert_eq!(delay_after(&p, 10, &err(RailwayErrorKind::Transient, None), true, THROTTLE), None);
    }

    #[test]
    fn a_mutation_of_unknown_outcome_is_not_resent_but_a_refused_one_is() {
        let p = RetryPolicy::default();
        assert_eq!(delay_after(&p, 1, &err(RailwayErrorKind::Transient, None), false, THROTTLE), None);
        assert!(delay_after(&p, 1, &err(RailwayErrorKind::RateLimited, None), false, THROTTLE).is_some());
    }

    #[test]
    fn throttles_wait_longer_than_request_backoff() {
        let p = RetryPolicy {
            max_attempts: 4,
            max_server_delay: Duration::from_secs(60),
            ..RetryPolicy::default()
        };
        let throttled = RailwayError { throttle: true, ..err(RailwayErrorKind::RateLimited, None) };
        for attempt in 1..4 {
            let d = delay_after(&p, attempt, &throttled, false, THROTTLE).unwrap();
            let full = THROTTLE.saturating_mul(1 << (attempt - 1)).min(p.max_server_delay);
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
            assert!(d >= THROTTLE / 2, "a throttle waits longer than a request backoff");
        }
    }
}
