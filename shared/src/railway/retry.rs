//! Railway's retry pace, and which failed calls are sent again after how long;
//! [`crate::retry::run`] does the waiting.

use std::time::Duration;

use super::error::RailwayError;
use crate::retry::Verdict;

pub use crate::retry::RetryPolicy;

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

/// Whether a call that failed with `err` on attempt `attempt` (from 1) may be sent again, and
/// after what wait. Unauthorized, NotFound and Permanent failures are never retried; a
/// Transient failure of a call that is not idempotent is not resent either (its outcome is
/// unknown: the caller looks first). A throttle without a server-given wait is waited out on
/// `throttle_wait`'s clock, doubling per attempt within the policy's `max_server_delay`.
pub(crate) fn verdict(
    policy: &RetryPolicy,
    attempt: u32,
    err: &RailwayError,
    idempotent: bool,
    throttle_wait: Duration,
) -> Verdict {
    if !err.is_retryable() || (!idempotent && !err.surely_not_applied()) {
        return Verdict::GiveUp;
    }
    let throttled = || {
        err.throttle.then(|| {
            crate::backoff::equal_jitter(throttle_wait, policy.max_server_delay, attempt.saturating_sub(1))
        })
    };
    match err.retry_after.or_else(throttled) {
        Some(wait) => Verdict::ResendAfter(wait),
        None => Verdict::Resend,
    }
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
    fn only_retryable_kinds_are_resent_after_the_wait_asked() {
        let p = RetryPolicy::default();
        assert_eq!(verdict(&p, 1, &err(RailwayErrorKind::Transient, None), true, THROTTLE), Verdict::Resend);
        let asked = Duration::from_secs(2);
        let limited = err(RailwayErrorKind::RateLimited, Some(asked));
        assert_eq!(verdict(&p, 1, &limited, true, THROTTLE), Verdict::ResendAfter(asked));
        // Too long for the policy: `RetryPolicy` hands it back (tested in crate::retry).
        let too_long = Duration::from_secs(600);
        let limited = err(RailwayErrorKind::RateLimited, Some(too_long));
        assert_eq!(verdict(&p, 1, &limited, true, THROTTLE), Verdict::ResendAfter(too_long));
        for kind in [RailwayErrorKind::Unauthorized, RailwayErrorKind::Permanent, RailwayErrorKind::NotFound]
        {
            assert_eq!(verdict(&p, 1, &err(kind, None), true, THROTTLE), Verdict::GiveUp);
        }
    }

    #[test]
    fn a_mutation_of_unknown_outcome_is_not_resent_but_a_refused_one_is() {
        let p = RetryPolicy::default();
        assert_eq!(verdict(&p, 1, &err(RailwayErrorKind::Transient, None), false, THROTTLE), Verdict::GiveUp);
        assert_eq!(
            verdict(&p, 1, &err(RailwayErrorKind::RateLimited, None), false, THROTTLE),
            Verdict::Resend
        );
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
            let Verdict::ResendAfter(d) = verdict(&p, attempt, &throttled, false, THROTTLE) else {
                panic!("attempt {attempt}: a throttle is waited out");
            };
            let full = THROTTLE.saturating_mul(1 << (attempt - 1)).min(p.max_server_delay);
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
            assert!(d >= THROTTLE / 2, "a throttle waits longer than a request backoff");
            assert!(d <= p.max_server_delay, "and is never handed back for being too long");
        }
    }
}
