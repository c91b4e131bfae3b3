//! Hibernation (issue 17): idle instances that cost only storage. A Sprite pauses by itself
//! about 30 s after its last request and wakes on the next one (reference §8), so the pool
//! decides only whom it keeps talking to. `hotIdle` idle instances stay hot (the heartbeat
//! pings them); the others are left to sleep and get a rare check (`sleepingCheckSeconds`)
//! that wakes them, reads their gateway and lets them sleep again. A claim takes a hot instance
//! first; one that may be asleep is woken and verified within the claim's attempt deadline
//! before it is handed out (a cold wake restarts the gateway). `maxRunning` bounds the
//! machines the pool makes run at once, and the provider's running-limit 429 is back-pressure:
//! the wake or creation waits, nothing counts as a failure.

use std::time::Duration;

use time::OffsetDateTime;
use tokio::time::Instant;
use uuid::Uuid;

use super::lease::Lease;
use super::{ClaimError, ClaimOutcome, Engine, EngineError};
use crate::gateway::{GatewayError, GatewayStatus};
use crate::lifecycle::{Actor, EventKind, Reason};
use crate::settings::PoolSettings;
use crate::store::{Change, ClaimStatus, Instance, Secret, SleepPlan, Status};

/// Between two looks at a gateway that is still waking.
const WAKE_POLL: Duration = Duration::from_millis(250);

/// Why a possibly sleeping instance cannot be handed out.
#[derive(Debug)]
pub(super) enum WakeFailure {
    /// The provider's running limit refused the wake: nothing reached the gateway.
    Throttled { retry_after: Option<Duration> },
    /// It did not come up ready and unbound by the deadline.
    Failed(String),
}

impl Engine {
    /// Which idle instances this heartbeat pass looks at.
    pub(super) fn sleep_plan(&self, settings: &PoolSettings) -> SleepPlan {
        SleepPlan {
            idle_pause: self.settings.sprite_idle_pause,
            check_every: Duration::from_secs(settings.sleeping_check_seconds.into()),
        }
    }

    /// Restores `hotIdle` (within `maxRunning`) and wakes the instances that just became hot,
    /// without waiting for them: the heartbeat verifies them on its next pass. Returns how
    /// many were woken.
    pub(super) async fn keep_hot(&self, actor: &Actor) -> Result<usize, EngineError> {
        // A machine that never sleeps keeps every row hot, as each was created.
        if !self.provider.capabilities().hibernates {
            return Ok(0);
        }
        let promoted = self.store.keep_hot(actor).await?;
        for instance in &promoted {
            let Some(url) = instance.url.clone() else { continue };
            let gateway = self.gateway.clone();
            let token: Secret = instance.gateway_token.clone();
            // A request to its URL is what wakes a Sprite; the answer is the next pass's business.
            tokio::spawn(async move {
                let _ = gateway.status(&url, &token).await;
            });
        }
        if !promoted.is_empty() {
            tracing::info!(woken = promoted.len(), "hot idle restored");
        }
        Ok(promoted.len())
    }

    /// Machines that may still start under `maxRunning`; `None`: no limit.
    pub(super) async fn running_room(&self) -> Result<Option<i64>, EngineError> {
        if !self.provider.capabilities().hibernates {
            return Ok(None);
        }
        Ok(self.store.running_room(self.settings.sprite_idle_pause).await?)
    }

    /// Wakes a possibly sleeping instance and waits, until `deadline`, for its gateway to
    /// answer ready: a warm wake answers at once, a cold one only once the gateway booted
    /// again. The answer says whether it is bound; what that means is the caller's business.
    pub(super) async fn wake_and_verify(
        &self,
        url: &str,
        token: &Secret,
        deadline: Instant,
    ) -> Result<GatewayStatus, WakeFailure> {
        let mut last = String::from("no answer");
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(WakeFailure::Failed(format!("not awake in time: {last}")));
            }
            match tokio::time::timeout(left, self.gateway.status(url, token)).await {
                Ok(Ok(status)) if status.ready => return Ok(status),
                Ok(Ok(_)) => last = "gateway not ready".into(),
                Ok(Err(GatewayError::Throttled { retry_after })) => {
                    return Err(WakeFailure::Throttled { retry_after });
                }
                // Booting after a cold wake: nothing listens yet, or the proxy says so.
                Ok(Err(err @ (GatewayError::Unreachable(_) | GatewayError::Timeout(_)))) => {
                    last = err.to_string();
                }
                Ok(Err(err)) => return Err(WakeFailure::Failed(err.to_string())),
                Err(_) => last = "status call timed out".into(),
            }
            tokio::time::sleep(WAKE_POLL.min(deadline.saturating_duration_since(Instant::now()))).await;
        }
    }

    /// Wakes and verifies an instance a claim took, if it may be asleep: not touched by the
    /// pool within an idle pause. A hot instance pinged moments ago goes straight on.
    pub(super) async fn wake_if_asleep(
        &self,
        instance: &Instance,
        deadline: Instant,
        actor: &Actor,
    ) -> Result<(), WakeFailure> {
        if !self.provider.capabilities().hibernates {
            return Ok(());
        }
        let touched = instance.last_heartbeat_at.max(instance.ready_at);
        let pause = time::Duration::try_from(self.settings.sprite_idle_pause).unwrap_or(time::Duration::MAX);
        if touched.is_some_and(|at| OffsetDateTime::now_utc() - at < pause) {
            return Ok(());
        }
        let url = instance.url.as_deref().unwrap_or_default();
        let started = Instant::now();
        let status = self.wake_and_verify(url, &instance.gateway_token, deadline).await?;
        if status.conversation.is_some() {
            return Err(WakeFailure::Failed("woke bound to a conversation".into()));
        }
        let ms = started.elapsed().as_millis() as u64;
        tracing::info!(instance = %instance.id, ms, %actor, "woke for a claim");
        self.note_wake((&instance.id, instance.status), actor, "claim", ms).await;
        Ok(())
    }

    /// The `wake` line of the audit trail. A wake that happened is not undone by a failed
    /// write of its note: the write failure is logged and the caller goes on.
    pub(super) async fn note_wake(&self, instance: (&str, Status), actor: &Actor, why: &str, ms: u64) {
        let detail = format!("awake in {ms} ms");
        let noted = self.store.note(instance, actor, (EventKind::Wake, why), Some(&detail)).await;
        if let Err(err) = noted {
            tracing::warn!(instance = instance.0, error = %err, "the wake's history line was not written");
        }
    }

    /// The running limit refused the wake of the instance a claim took: it goes back to idle
    /// untouched, and the claim ends refused like one that found no instance (503), with the
    /// provider's wait as its `Retry-After`.
    pub(super) async fn give_back_unwoken(
        &self,
        lease: Lease<'_>,
        claim_id: Uuid,
        retry_after: Option<Duration>,
    ) -> Result<ClaimOutcome, ClaimError> {
        let detail = "running limit reached: the instance could not wake";
        lease.advance(Change::Unwoken { reason: Reason::WakeRefused, detail: Some(detail) }).await?;
        self.store.finish_claim(claim_id, ClaimStatus::Failed, None, None, Some(detail)).await?;
        Err(ClaimError::NoIdle { retry_after: retry_after.unwrap_or(self.settings.retry_after) })
    }
}
