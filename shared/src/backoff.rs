//! The one backoff every retry in the pool uses, and the retry policy of the Sprites and
//! Railway clients.

use std::time::Duration;

use rand::Rng;

/// Capped exponential backoff with jitter. A delay the server asks for is honoured as long as
/// it fits `max_server_delay`; a longer one is handed back to the caller instead of slept through.
/// Which failures are worth retrying at all is each client's own rule.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// The first backoff; doubles per attempt.
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

    /// The wait before attempt `attempt + 1` (attempts count from 1) after a failure worth
    /// retrying, for which the server asked `retry_after`; `None` to give up.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        match retry_after {
            Some(asked) if asked > self.max_server_delay => None,
            Some(asked) => Some(asked),
            None => Some(equal_jitter(self.base_delay, self.max_delay, attempt.saturating_sub(1))),
        }
    }
}

/// "Equal jitter" after `doublings` doublings of `base`, capped at `cap`: half the delay is
/// fixed, half random, so many callers retrying at once spread out but never wait zero.
pub fn equal_jitter(base: Duration, cap: Duration, doublings: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << doublings.min(16));
    let half = exp.min(cap) / 2;
    half + half.mul_f64(rand::rng().random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_doubles_and_stays_under_the_cap() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(1);
        for doublings in 0..40 {
            let delay = equal_jitter(base, cap, doublings);
            let full = base.saturating_mul(1 << doublings.min(16)).min(cap);
            assert!(delay >= full / 2 && delay <= full, "{doublings}: {delay:?}");
        }
    }
}
