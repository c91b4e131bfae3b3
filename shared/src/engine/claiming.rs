//! Claiming (ARCHITECTURE §5): with the request checked field by field (claim_request.rs),
//! take the oldest idle instance in one statement, create or join the conversation with the instance's own token, record the
//! answer in one more, and never put an instance that may be half-bound back to idle: a failed
//! attempt recycles it and tries once more elsewhere.

use std::time::Duration;

use tokio::time::Instant;
use uuid::Uuid;

pub(super) use super::claim_request::invalid;
pub use super::claim_request::{ClaimRequest, Idempotency, Invalid};
pub use super::claim_result::ClaimResult;
use super::hibernation::WakeFailure;
use super::lease::Lease;
use super::outcome::{JoinAnswer, Outcome};
use super::{Engine, EngineError};
use crate::gateway::{CreateConversation, GatewayError, JoinConversation, JoinOutcome};
use crate::lifecycle::{Actor, Reason};
use crate::store::{Answered, Change, ClaimStatus, Instance, NewClaim, Step, StoreError};

#[derive(Debug, Clone)]
pub enum ClaimOutcome {
    /// Created, joined, or waiting for the invite's creator to accept.
    Done(ClaimResult),
    /// The join is still running; the claim id gives its status later.
    Accepted { claim_id: Uuid, instance_id: String },
}

#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// The message names the same wait as the answer's `Retry-After`.
    #[error("No idle instances available. Try again in {} seconds.", retry_after.as_secs())]
    NoIdle { retry_after: Duration },
    /// Every attempt failed; the instances involved are being recycled.
    #[error("claim failed: {0}")]
    Failed(String),
    /// The Idempotency-Key of an earlier claim, with another request (issue 15.5).
    #[error("Idempotency-Key was already used with a different request")]
    KeyReused,
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl From<StoreError> for ClaimError {
    fn from(err: StoreError) -> Self {
        ClaimError::Engine(err.into())
    }
}

/// One failed instance may be followed by one more attempt on another.
const CLAIM_ATTEMPTS: i32 = 2;
/// A retry is only worth starting with at least this much of the claim budget left.
const MIN_ATTEMPT_TIME: Duration = Duration::from_secs(2);

impl Engine {
    /// A claim for `actor` (the API caller, poolctl), named on each history line it writes.
    pub async fn claim(&self, request: ClaimRequest, actor: &Actor) -> Result<ClaimOutcome, ClaimError> {
        // A repeat (same Idempotency-Key) or a second agent for one invite gets the first claim.
        if let Some(earlier) = self.earlier_claim(&request).await? {
            return Ok(earlier);
        }
        let claim_id = Uuid::new_v4();
        let started = Instant::now();
        let result = match &request.join_url {
            None => self.claim_by_creating(claim_id, &request, actor).await,
            Some(_) => self.claim_by_joining(claim_id, &request, actor).await,
        };
        // It raced one and lost: nothing was taken, and the winner's claim is the answer.
        let result = match result {
            Err(ClaimError::Engine(EngineError::Store(StoreError::DuplicateClaim(what)))) => {
                tracing::info!(claim = %claim_id, duplicate_of = what, "claim answered by an earlier one");
                return match self.earlier_claim(&request).await? {
                    Some(earlier) => Ok(earlier),
                    None => Err(ClaimError::Failed(format!(
                        "a concurrent claim with this {what} ended meanwhile"
                    ))),
                };
            }
            // Refused while a racing repeat held the idle instances it was about to give back:
            // the repeat's claim, once recorded, is this request's answer too.
            Err(ClaimError::NoIdle { retry_after })
                if request.idempotency.is_some() || request.join_url.is_some() =>
            {
                match self.earlier_claim_after_refusal(&request).await? {
                    Some(earlier) => return Ok(earlier),
                    None => Err(ClaimError::NoIdle { retry_after }),
                }
            }
            other => other,
        };
        let (outcome, instance) = match &result {
            Ok(ClaimOutcome::Done(done)) => (done.status.as_str(), done.instance_id.as_deref()),
            Ok(ClaimOutcome::Accepted { instance_id, .. }) => ("accepted", Some(instance_id.as_str())),
            Err(ClaimError::NoIdle { .. }) => ("no_idle", None),
            Err(_) => ("failed", None),
        };
        let ms = started.elapsed().as_millis() as u64;
        let mode = if request.join_url.is_some() { "join" } else { "create" };
        tracing::info!(claim = %claim_id, mode, outcome, instance, ms, %actor, "claim");
        // Refill at once; the tick is only the safety net.
        if let Err(err) = self.replenish(actor).await {
            tracing::warn!(error = %err, "replenish after claim failed");
        }
        // The hot instance it took is replaced by waking another (hibernation.rs).
        if instance.is_some()
            && let Err(err) = self.keep_hot(actor).await
        {
            tracing::warn!(error = %err, "restoring hot idle after claim failed");
        }
        result
    }

    async fn claim_by_creating(
        &self,
        claim_id: Uuid,
        request: &ClaimRequest,
        actor: &Actor,
    ) -> Result<ClaimOutcome, ClaimError> {
        let view = new_claim(claim_id, request);
        let build = self.build();
        let deadline = Instant::now() + self.settings.claim_budget;
        let mut last_error = String::new();
        for attempt in 0..CLAIM_ATTEMPTS {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if attempt > 0 && remaining < MIN_ATTEMPT_TIME {
                break;
            }
            // The instance carries the request, so a retry elsewhere needs nothing but the row.
            let Some((lease, instance)) =
                self.leases.take_for_claim(&view, Step::ClaimCreate, &build.wanted(), actor).await?
            else {
                if attempt == 0 {
                    // Recorded as failed by the same statement that found no instance.
                    return Err(ClaimError::NoIdle { retry_after: self.settings.retry_after });
                }
                break;
            };
            // A sleeping instance wakes as part of the claim, within this attempt's deadline.
            let attempt_end = Instant::now() + remaining.min(self.settings.claim_attempt);
            let woke = tokio::select! {
                woke = self.wake_if_asleep(&instance, attempt_end, actor) => woke,
                never = lease.keep_alive() => match never {},
            };
            match woke {
                Ok(()) => {}
                Err(WakeFailure::Throttled { retry_after }) => {
                    return self.give_back_unwoken(lease, claim_id, retry_after).await;
                }
                Err(WakeFailure::Failed(error)) => {
                    tracing::warn!(instance = %instance.id, attempt, error = %error, "wake before claim failed; recycling");
                    self.begin_recycle(lease, Reason::ClaimFailed, Some(&error)).await?;
                    last_error = error;
                    continue;
                }
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            let body = CreateConversation {
                name: request.agent_name.clone(),
                profile_name: request.agent_name.clone(),
                env: self.settings.xmtp_env.clone(),
                instructions: request.instructions.clone(),
            };
            let url = instance.url.as_deref().unwrap_or_default();
            let call = self.gateway.create_conversation(url, &instance.gateway_token, &body);
            // One attempt never takes the whole budget: a hung gateway is left for the next
            // instance. The lease is renewed for as long as the gateway takes, so the tick never
            // mistakes this live call for an interrupted one.
            let wait = remaining.min(self.settings.claim_attempt);
            let answer = tokio::select! {
                answer = tokio::time::timeout(wait, call) => {
                    answer.unwrap_or(Err(GatewayError::Timeout(wait)))
                }
                never = lease.keep_alive() => match never {},
            };
            match answer {
                Ok(created) => {
                    let answered = Answered {
                        claim_id,
                        claim_status: ClaimStatus::Created,
                        conversation_id: Some(&created.conversation_id),
                        invite_url: Some(&created.invite_url),
                        reason: Reason::Created,
                    };
                    if lease.advance(Change::Claimed(answered)).await? {
                        let result = ClaimResult::new(
                            claim_id,
                            Some(instance.id.clone()),
                            ClaimStatus::Created,
                            request.agent_name.clone(),
                        );
                        let result = result
                            .with_invite(Some(created.conversation_id), Some(created.invite_url))
                            .with_gateway(&instance)
                            .with_expiry(instance.claim_expires_at);
                        return Ok(ClaimOutcome::Done(result));
                    }
                    last_error =
                        "the instance was taken away while the conversation was being created".into();
                    tracing::error!(instance = %instance.id, "claim lease lost after create; instance left to the sweeps");
                }
                Err(err) => {
                    last_error = err.to_string();
                    tracing::warn!(instance = %instance.id, attempt, error = %err, "create conversation failed; recycling");
                    self.begin_recycle(lease, Reason::ClaimFailed, Some(&last_error)).await?;
                }
            }
        }
        self.store.finish_claim(claim_id, ClaimStatus::Failed, None, None, Some(&last_error)).await?;
        Err(ClaimError::Failed(last_error))
    }

    /// Joining can wait a minute for the invite's creator, longer than an API may hold a
    /// request, so it runs as a step; the caller waits a bounded time, then gets 202.
    async fn claim_by_joining(
        &self,
        claim_id: Uuid,
        request: &ClaimRequest,
        actor: &Actor,
    ) -> Result<ClaimOutcome, ClaimError> {
        let view = new_claim(claim_id, request);
        let build = self.build();
        let Some((lease, instance)) =
            self.leases.take_for_claim(&view, Step::ClaimJoin, &build.wanted(), actor).await?
        else {
            // Recorded as failed by the same statement that found no instance.
            return Err(ClaimError::NoIdle { retry_after: self.settings.retry_after });
        };
        // Hand the step over: the lease released, the step due now and delivered.
        lease.wait_until(Duration::ZERO).await?;
        let deadline = Instant::now() + self.settings.claim_wait.min(self.settings.claim_budget);
        loop {
            let claim = self
                .store
                .claim(claim_id)
                .await?
                .ok_or_else(|| ClaimError::Failed("claim vanished".into()))?;
            match claim.status {
                ClaimStatus::Pending => {}
                ClaimStatus::Failed => return Err(ClaimError::Failed(claim.error.unwrap_or_default())),
                _ => return Ok(ClaimOutcome::Done(ClaimResult::from(&claim).with_gateway(&instance))),
            }
            if Instant::now() >= deadline {
                let instance_id = claim.instance_id.unwrap_or(instance.id);
                return Ok(ClaimOutcome::Accepted { claim_id, instance_id });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The join step (run by the chain or the tick, never by the API request).
    pub(super) async fn join_step(&self, instance: &Instance) -> Outcome {
        let Some(claim_id) = instance.claim_id else {
            return Outcome::ClaimFailed("claiming without a claim".into());
        };
        let body = JoinConversation {
            invite_url: instance.join_url.clone().unwrap_or_default(),
            profile_name: instance.agent_name.clone().unwrap_or_default(),
            env: self.settings.xmtp_env.clone(),
            instructions: instance.instructions.clone().unwrap_or_default(),
        };
        let url = instance.url.as_deref().unwrap_or_default();
        let wake_deadline = Instant::now() + self.settings.claim_attempt;
        match self.wake_if_asleep(instance, wake_deadline, &Actor::Step).await {
            Ok(()) => {}
            // The running limit: the step waits its turn, the instance stays with the claim.
            Err(WakeFailure::Throttled { retry_after }) => {
                return Outcome::Wait(retry_after.unwrap_or(self.settings.retry_after));
            }
            Err(WakeFailure::Failed(error)) => return Outcome::ClaimFailed(error),
        }
        match self.gateway.join(url, &instance.gateway_token, &body).await {
            Ok(JoinOutcome::Joined { conversation_id }) => Outcome::Joined(JoinAnswer {
                claim_id,
                reason: Reason::Joined,
                conversation_id: Some(conversation_id),
            }),
            // Nothing was bound; the instance stays with this claim (the invite's creator may
            // still accept) until the caller recycles it.
            Ok(JoinOutcome::WaitingForAcceptance) => Outcome::Joined(JoinAnswer {
                claim_id,
                reason: Reason::WaitingForAcceptance,
                conversation_id: None,
            }),
            Err(err) => {
                let message = err.to_string();
                tracing::warn!(instance = %instance.id, error = %message, "join failed; recycling");
                Outcome::ClaimFailed(message)
            }
        }
    }

    /// Records a join's answer on the instance and its claim in one statement.
    pub(super) async fn record_join(
        &self,
        lease: Lease<'_>,
        instance: &Instance,
        answer: JoinAnswer,
    ) -> Result<bool, EngineError> {
        let claim_status = match answer.reason {
            Reason::Joined => ClaimStatus::Joined,
            _ => ClaimStatus::WaitingForAcceptance,
        };
        let answered = Answered {
            claim_id: answer.claim_id,
            claim_status,
            conversation_id: answer.conversation_id.as_deref(),
            invite_url: instance.join_url.as_deref(),
            reason: answer.reason,
        };
        lease.advance(Change::Claimed(answered)).await
    }

    /// Met by the step runner, `claim_create` means the API process that held it died
    /// mid-call: the conversation may or may not exist, so the instance is recycled.
    pub(super) fn claim_interrupted(&self) -> Outcome {
        Outcome::ClaimFailed("claim interrupted: the process creating the conversation stopped".into())
    }

    /// A claim step failed: the instance is recycled (it may be half-bound), then a join is
    /// tried once more elsewhere and an interrupted create's claim ends failed.
    pub(super) async fn claim_step_failed(
        &self,
        lease: Lease<'_>,
        instance: &Instance,
        detail: &str,
    ) -> Result<bool, EngineError> {
        if self.begin_recycle(lease, Reason::ClaimFailed, Some(detail)).await?.is_none() {
            return Ok(false);
        }
        if let Some(claim_id) = instance.claim_id {
            match instance.step {
                Some(Step::ClaimJoin) => self.retry_join_elsewhere(claim_id, detail).await?,
                _ => {
                    self.store.finish_claim(claim_id, ClaimStatus::Failed, None, None, Some(detail)).await?;
                }
            }
        }
        Ok(true)
    }

    async fn retry_join_elsewhere(&self, claim_id: Uuid, error: &str) -> Result<(), EngineError> {
        let Some(claim) = self.store.claim(claim_id).await? else { return Ok(()) };
        if claim.attempts < CLAIM_ATTEMPTS {
            let view = NewClaim {
                id: claim_id,
                agent_name: &claim.agent_name,
                instructions: &claim.instructions,
                join_url: claim.join_url.as_deref(),
                // The claim row exists: the retry updates it and keeps its key.
                idempotency_key: None,
                request_digest: None,
                // ... and its expiry.
                ttl: None,
            };
            let build = self.build();
            if let Some((next, _)) =
                self.leases.take_for_claim(&view, Step::ClaimJoin, &build.wanted(), &Actor::Step).await?
            {
                next.wait_until(Duration::ZERO).await?;
                return Ok(());
            }
        }
        self.store.finish_claim(claim_id, ClaimStatus::Failed, None, None, Some(error)).await?;
        Ok(())
    }

    /// The claim, for the status URL of a 202.
    pub async fn claim_status(&self, claim_id: Uuid) -> Result<Option<ClaimResult>, EngineError> {
        Ok(self.store.claim(claim_id).await?.as_ref().map(ClaimResult::from))
    }
}

fn new_claim(id: Uuid, request: &ClaimRequest) -> NewClaim<'_> {
    NewClaim {
        id,
        agent_name: &request.agent_name,
        instructions: &request.instructions,
        join_url: request.join_url.as_deref(),
        idempotency_key: request.idempotency.as_ref().map(|i| i.key.as_str()),
        request_digest: request.idempotency.as_ref().map(|i| i.digest.as_str()),
        ttl: request.ttl_seconds.map(|s| Duration::from_secs(s.into())),
    }
}
