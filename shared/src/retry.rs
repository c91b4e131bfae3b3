//! The one retry policy and the one retry loop of the clients of outside APIs (Sprites,
//! Railway, OpenRouter, AgentMail).
//!
//! The loop is `backon`'s: it sends, asks the client whether a failure may be sent again,
//! sleeps and repeats. What is ours is the policy (how many attempts, the equal-jitter backoff
//! of [`crate::backoff`], how long a server may make us wait) and, per client, the [`Verdict`]
//! on a failure: each client alone knows which of its calls may be repeated after what.

use std::fmt::Display;
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use backon::Retryable;

use crate::backoff::equal_jitter;

/// Capped exponential backoff with jitter. A delay the server asks for is honoured as long as
/// it fits `max_server_delay`; a longer one is handed back to the caller instead of slept through.
/// Which failures are worth retrying at all is each client's own rule ([`Verdict`]).
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = no retries).
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

/// What a client says about one failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not to be sent again: refused for good, or its outcome is unknown and the call must
    /// not be repeated blindly.
    GiveUp,
    /// May be sent again after the policy's backoff.
    Resend,
    /// May be sent again after this wait: the one the server asked for, or a client's own
    /// clock (a Railway throttle). Longer than `max_server_delay`, it ends the retries.
    ResendAfter(Duration),
}

impl RetryPolicy {
    /// No retries at all (useful where a caller wants to see every failure).
    pub fn none() -> Self {
        RetryPolicy { max_attempts: 1, ..RetryPolicy::default() }
    }

    /// The backoff before each retry: `max_attempts - 1` waits, doubling from `base_delay` up
    /// to `max_delay`, with equal jitter.
    fn backoff(&self) -> impl Iterator<Item = Duration> + Send + Sync + Unpin + use<> {
        let (base, cap) = (self.base_delay, self.max_delay);
        (1..self.max_attempts.max(1)).map(move |attempt| equal_jitter(base, cap, attempt - 1))
    }

    /// The wait before the next attempt after a failure judged `verdict`, when the backoff's
    /// next wait is `backoff` (`None`: the attempts ran out); `None` to give up.
    fn wait(&self, backoff: Option<Duration>, verdict: Verdict) -> Option<Duration> {
        let backoff = backoff?;
        match verdict {
            Verdict::GiveUp => None,
            Verdict::Resend => Some(backoff),
            Verdict::ResendAfter(asked) => (asked <= self.max_server_delay).then_some(asked),
        }
    }
}

/// Runs `attempt` (given its number, from 1) until it succeeds, `verdict` gives up on its
/// failure (given the same number), the attempts run out, or a wait longer than the policy
/// allows is asked for; the last failure then goes back to the caller, the asked wait in it.
/// Returns the outcome and how many attempts were made.
pub async fn run<T, E, Fut>(
    policy: &RetryPolicy,
    mut attempt: impl FnMut(u32) -> Fut,
    mut verdict: impl FnMut(&E, u32) -> Verdict,
) -> (Result<T, E>, u32)
where
    E: Display,
    Fut: Future<Output = Result<T, E>>,
{
    let made = AtomicU32::new(0);
    let outcome = (|| attempt(made.fetch_add(1, Ordering::Relaxed) + 1))
        .retry(policy.backoff())
        .adjust(|err, backoff| policy.wait(backoff, verdict(err, made.load(Ordering::Relaxed))))
        .notify(|err, delay| {
            tracing::debug!(error = %err, delay_ms = delay.as_millis() as u64, "call will be retried");
        })
        .await;
    (outcome, made.into_inner())
}

/// `Retry-After` as seconds, whole or fractional (the HTTP-date form is rare from these APIs
/// and ignored): the one reading for every client.
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    let secs: f64 = value.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy { max_attempts: 20, ..RetryPolicy::default() };
        let waits: Vec<Duration> = p.backoff().collect();
        assert_eq!(waits.len(), 19, "a wait before each attempt after the first");
        for (i, d) in waits.into_iter().enumerate() {
            let full = p.base_delay.saturating_mul(1 << i).min(p.max_delay);
            assert!(d >= full / 2 && d <= full, "retry {}: {d:?} not in [{:?}, {full:?}]", i + 1, full / 2);
        }
        assert_eq!(RetryPolicy::none().backoff().count(), 0);
    }

    #[test]
    fn server_delay_is_honoured_or_handed_back() {
        let p = RetryPolicy::default();
        let backoff = Some(Duration::from_millis(300));
        let asked = Duration::from_secs(3);
        assert_eq!(p.wait(backoff, Verdict::ResendAfter(asked)), Some(asked));
        assert_eq!(p.wait(backoff, Verdict::ResendAfter(p.max_server_delay)), Some(p.max_server_delay));
        assert_eq!(p.wait(backoff, Verdict::ResendAfter(Duration::from_secs(60))), None);
        assert_eq!(p.wait(backoff, Verdict::Resend), backoff);
        assert_eq!(p.wait(backoff, Verdict::GiveUp), None);
        assert_eq!(p.wait(None, Verdict::Resend), None, "the attempts ran out");
        assert_eq!(p.wait(None, Verdict::ResendAfter(asked)), None, "the attempts ran out");
    }

    fn quick(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
            max_server_delay: Duration::from_millis(50),
        }
    }

    /// Fails with its attempt number until `succeed_at`, noting the attempts `verdict` saw.
    async fn scenario(
        policy: &RetryPolicy,
        succeed_at: u32,
        verdict: impl Fn(u32) -> Verdict,
    ) -> (Result<&'static str, u32>, u32, Vec<u32>) {
        let judged = Mutex::new(Vec::new());
        let (outcome, made) = run(
            policy,
            |n| async move { if n >= succeed_at { Ok("done") } else { Err(n) } },
            |err: &u32, n| {
                assert_eq!(*err, n, "the verdict sees the number of the attempt that failed");
                judged.lock().unwrap().push(n);
                verdict(n)
            },
        )
        .await;
        (outcome, made, judged.into_inner().unwrap())
    }

    #[tokio::test]
    async fn resends_until_success_within_the_attempts() {
        let (outcome, made, judged) = scenario(&quick(4), 3, |_| Verdict::Resend).await;
        assert_eq!((outcome, made, judged), (Ok("done"), 3, vec![1, 2]));
        let (outcome, made, _) = scenario(&quick(4), 9, |_| Verdict::Resend).await;
        assert_eq!((outcome, made), (Err(4), 4), "the last failure goes back once the attempts run out");
        let (outcome, made, _) = scenario(&RetryPolicy::none(), 9, |_| Verdict::Resend).await;
        assert_eq!((outcome, made), (Err(1), 1));
    }

    #[tokio::test]
    async fn a_verdict_ends_or_paces_the_retries() {
        let (outcome, made, _) = scenario(&quick(4), 9, |_| Verdict::GiveUp).await;
        assert_eq!((outcome, made), (Err(1), 1));
        let (outcome, made, _) =
            scenario(&quick(4), 9, |n| if n < 2 { Verdict::Resend } else { Verdict::GiveUp }).await;
        assert_eq!((outcome, made), (Err(2), 2));

        let asked = Duration::from_millis(30);
        let started = std::time::Instant::now();
        let (outcome, made, _) = scenario(&quick(4), 2, |_| Verdict::ResendAfter(asked)).await;
        assert_eq!((outcome, made), (Ok("done"), 2));
        assert!(started.elapsed() >= asked, "the server's wait was slept through: {:?}", started.elapsed());

        let started = std::time::Instant::now();
        let too_long = Duration::from_secs(60);
        let (outcome, made, _) = scenario(&quick(4), 2, |_| Verdict::ResendAfter(too_long)).await;
        assert_eq!((outcome, made), (Err(1), 1), "a wait longer than allowed is handed back");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
