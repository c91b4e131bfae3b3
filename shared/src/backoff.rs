//! The one backoff every retry in the pool uses: the clients' retry loop ([`crate::retry`])
//! and the engine's wait before a failed step runs again.

use std::time::Duration;

use rand::Rng;

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
