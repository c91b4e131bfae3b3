//! Which failed Sprites calls may be sent again; [`crate::retry::run`] does the waiting.

use super::error::SpritesError;
use crate::retry::Verdict;

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

pub use crate::retry::RetryPolicy;

/// Whether a call of kind `retry` that failed with `err` may be sent again, and after the
/// wait the server asked for if it did.
pub(crate) fn verdict(retry: Retry, err: &SpritesError) -> Verdict {
    let eligible = match (retry, err) {
        (Retry::Never, _) => false,
        (_, SpritesError::RateLimited { .. } | SpritesError::Unavailable { .. }) => true,
        (Retry::Idempotent, SpritesError::Transport(_)) => true,
        _ => false,
    };
    match err.retry_after() {
        _ if !eligible => Verdict::GiveUp,
        Some(asked) => Verdict::ResendAfter(asked),
        None => Verdict::Resend,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn unavailable(retry_after: Option<Duration>) -> SpritesError {
        SpritesError::Unavailable { status: 503, retry_after, message: String::new() }
    }

    #[test]
    fn the_servers_wait_goes_with_the_verdict() {
        let asked = Duration::from_secs(3);
        assert_eq!(verdict(Retry::Idempotent, &unavailable(Some(asked))), Verdict::ResendAfter(asked));
        let too_long = Duration::from_secs(60);
        let limited = SpritesError::RateLimited { retry_after: Some(too_long), message: String::new() };
        // Too long for the policy: `RetryPolicy` hands it back (tested in crate::retry).
        assert_eq!(verdict(Retry::Refusals, &limited), Verdict::ResendAfter(too_long));
        assert_eq!(verdict(Retry::Idempotent, &unavailable(None)), Verdict::Resend);
    }

    #[test]
    fn eligibility_by_call_kind() {
        let transport = SpritesError::Transport("reset".into());
        assert_eq!(verdict(Retry::Idempotent, &transport), Verdict::Resend);
        assert_eq!(verdict(Retry::Refusals, &transport), Verdict::GiveUp);
        assert_eq!(verdict(Retry::Refusals, &unavailable(None)), Verdict::Resend);
        assert_eq!(verdict(Retry::Never, &unavailable(None)), Verdict::GiveUp);
        assert_eq!(verdict(Retry::Never, &unavailable(Some(Duration::from_secs(1)))), Verdict::GiveUp);
        let api = SpritesError::Api { status: 500, message: String::new() };
        assert_eq!(verdict(Retry::Idempotent, &api), Verdict::GiveUp);
    }
}
