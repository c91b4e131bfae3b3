//! The fenced writes of an instance's lease (the store's half of `engine::lease`): taking and
//! keeping a lease, and the moves it makes. A move and its history line are one statement, so
//! each costs one round trip and one commit; the line names the fence's actor (issue 16.2). A
//! claim's own two statements are in claim_take.rs.
//!
//! Every write is fenced: on the lease owner when the writer holds one, else on the row being
//! unleased and still in the status the writer saw. Zero rows touched means someone else moved
//! the row first; the caller drops its result (ARCHITECTURE §4).

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use super::claim_lifetime::ClaimEnd;
use super::claims::ClaimStatus;
use super::{Instance, Reason, Status, Step, Store, StoreError, secs};
use crate::lifecycle::Actor;

/// Who may write a row and the status they saw; only the store makes one, on taking a lease or
/// for a row at rest.
#[derive(Debug, Clone)]
pub struct Fence {
    pub(super) id: String,
    /// `None`: nobody may hold a live lease (sweeps, operator actions on rows at rest).
    pub(super) owner: Option<String>,
    pub(super) status: Status,
    /// Who writes: every history line the fence's writes append names it (issue 16.2).
    pub(super) actor: Actor,
}

impl Fence {
    pub(crate) fn held(id: String, owner: String, status: Status, actor: Actor) -> Self {
        Fence { id, owner: Some(owner), status, actor }
    }

    pub fn at_rest(id: String, status: Status, actor: Actor) -> Self {
        Fence { id, owner: None, status, actor }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn status(&self) -> Status {
        self.status
    }

    pub fn is_held(&self) -> bool {
        self.owner.is_some()
    }

    pub(super) fn owner(&self) -> Option<&str> {
        self.owner.as_deref()
    }

    /// Who writes, as every history line of these writes names it.
    pub fn actor(&self) -> &Actor {
        &self.actor
    }
}

/// A change the lease makes to its row; `engine::lease::Lease::advance` is its only writer.
pub(crate) enum Change<'a> {
    /// To `to` (and `step`, due after `delay`), the lease released.
    Move { to: Status, step: Option<Step>, delay: Duration, reason: Reason, detail: Option<&'a str> },
    /// Forgets the tenant and starts a recycle at `first` with a new gateway token; the
    /// tenant's OpenRouter key and inbox become retired handles (issue 14.3).
    /// `ends`: the claim the instance served ends too, in the same statement.
    Recycle {
        first: (Status, Step),
        token: &'a SecretString,
        reason: Reason,
        detail: Option<&'a str>,
        ends: Option<ClaimEnd>,
    },
    /// A failed attempt: counted, kept for the dashboard, the same step retried after `delay`.
    Retry { step: Step, error: &'a str, delay: Duration },
    /// The row is deleted; its history stays.
    Remove { reason: Reason, detail: Option<&'a str> },
    /// The gateway's answer to a claim: `claiming` -> `claimed` and the claim ended.
    Claimed(Answered<'a>),
    /// A claim that could not wake its instance gives it back to idle (store/hibernation.rs).
    Unwoken { reason: Reason, detail: Option<&'a str> },
}

impl Change<'_> {
    /// Where the change leads, for the lifecycle table.
    pub(crate) fn transition(&self, from: Status) -> crate::lifecycle::Transition {
        use crate::lifecycle::Transition;
        let from = Some(from);
        match self {
            Change::Move { to, step, reason, .. } => {
                Transition { from, to: Some(*to), step: *step, reason: *reason }
            }
            Change::Recycle { first: (to, step), reason, .. } => {
                Transition { from, to: Some(*to), step: Some(*step), reason: *reason }
            }
            Change::Retry { step, .. } => {
                Transition { from, to: from, step: Some(*step), reason: Reason::StepFailed }
            }
            Change::Remove { reason, .. } => Transition { from, to: None, step: None, reason: *reason },
            Change::Claimed(answered) => {
                Transition { from, to: Some(Status::Claimed), step: None, reason: answered.reason }
            }
            Change::Unwoken { reason, .. } => {
                Transition { from, to: Some(Status::Idle), step: None, reason: *reason }
            }
        }
    }
}

/// What the gateway answered, to be recorded on the instance and its claim at once.
pub(crate) struct Answered<'a> {
    pub claim_id: Uuid,
    pub claim_status: ClaimStatus,
    pub conversation_id: Option<&'a str>,
    pub invite_url: Option<&'a str>,
    /// The event's reason and the instance's `join_status`: created, joined, waiting_for_acceptance.
    pub reason: Reason,
}

impl Store {
    /// Takes the lease on a due step (ARCHITECTURE §4 rule 1). `None`: another worker holds it,
    /// the step is not due yet, or the instance is at rest.
    pub async fn take_lease(
        &self,
        id: &str,
        owner: impl Into<String>,
        ttl: Duration,
        hop: i32,
        actor: Actor,
    ) -> Result<Option<(Fence, Instance)>, StoreError> {
        let owner = owner.into();
        let instance = sqlx::query_as!(
            Instance,
            r#"UPDATE instances
               SET lease_owner = $2, lease_expires_at = now() + make_interval(secs => $3),
                   hop = $4, updated_at = now()
               WHERE id = $1 AND step IS NOT NULL
                 AND (lease_expires_at IS NULL OR lease_expires_at < now())
                 AND (next_run_at IS NULL OR next_run_at <= now())
               RETURNING id, provider, provider_ref, sprite_name, url, status AS "status: _",
                   step AS "step: _", attempts, lease_owner, lease_expires_at, next_run_at, hop,
                   step_started_at, last_error, golden_checkpoint_id, gateway_token AS "gateway_token: _",
                   agent_name, instructions, join_url, invite_url, conversation_id, join_status,
                   claim_id, openclaw_git_ref, heartbeat_failures, heartbeat_recoveries,
                   last_heartbeat_at, sprite_created_at, created_at, ready_at, claimed_at,
                   status_changed_at, updated_at, openrouter_key_hash, openrouter_key AS "openrouter_key: _",
                   agentmail_inbox_id, openrouter_key_requested_at, agentmail_client_id,
                   retired_openrouter_key_hash, retired_agentmail_inbox_id, claim_expires_at,
                   runtime_image"#,
            id,
            owner,
            secs(ttl),
            hop,
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(instance.map(|i| (Fence::held(i.id.clone(), owner, i.status, actor), i)))
    }

    /// Keeps a lease alive through a long step. `false`: the lease was lost.
    pub async fn extend_lease(&self, fence: &Fence, ttl: Duration) -> Result<bool, StoreError> {
        let done = sqlx::query!(
            "UPDATE instances SET lease_expires_at = now() + make_interval(secs => $3)
             WHERE id = $1 AND lease_owner = $2",
            fence.id,
            fence.owner,
            secs(ttl),
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Not done yet (a wait, a running install, a hand-over): the lease released, the same step
    /// due again after `delay`.
    pub(crate) async fn release_until(&self, fence: &Fence, delay: Duration) -> Result<bool, StoreError> {
        let done = sqlx::query!(
            "UPDATE instances SET
                lease_owner = NULL, lease_expires_at = NULL,
                next_run_at = now() + make_interval(secs => $3), updated_at = now()
             WHERE id = $1 AND lease_owner = $2",
            fence.id,
            fence.owner,
            secs(delay),
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Writes `change` and its history line; `false` if the fence failed and nothing was written.
    pub(crate) async fn apply(&self, fence: &Fence, change: &Change<'_>) -> Result<bool, StoreError> {
        match change {
            Change::Move { to, step, delay, reason, detail } => {
                self.move_to(fence, *to, *step, *delay, *reason, *detail).await
            }
            Change::Recycle { first, token, reason, detail, ends } => {
                self.begin_recycle(fence, *first, token, (*reason, *detail), *ends).await
            }
            Change::Retry { step, error, delay } => self.retry(fence, *step, error, *delay).await,
            Change::Remove { reason, detail } => self.remove(fence, *reason, *detail).await,
            Change::Claimed(answered) => self.record_claimed(fence, answered).await,
            Change::Unwoken { reason, detail } => self.release_unwoken(fence, *reason, *detail).await,
        }
    }

    /// A move; an instance provisioned (`provisioning -> idle`) also closes the circuit
    /// breaker, in the same statement, so a success is never recorded without its instance.
    async fn move_to(
        &self,
        fence: &Fence,
        to: Status,
        step: Option<Step>,
        delay: Duration,
        reason: Reason,
        detail: Option<&str>,
    ) -> Result<bool, StoreError> {
        let moved = sqlx::query!(
            r#"WITH moved AS (
                   UPDATE instances SET
                       status = $4, step = $5, attempts = 0, last_error = NULL,
                       lease_owner = NULL, lease_expires_at = NULL,
                       next_run_at = CASE WHEN $5::text IS NULL THEN NULL
                                          ELSE now() + make_interval(secs => $6) END,
                       step_started_at = CASE WHEN $5::text IS NULL THEN NULL ELSE now() END,
                       ready_at = CASE WHEN $4 = 'idle' THEN now() ELSE ready_at END,
                       heartbeat_failures = CASE WHEN status = $4 THEN heartbeat_failures ELSE 0 END,
                       heartbeat_recoveries = CASE WHEN status = $4 THEN heartbeat_recoveries ELSE 0 END,
                       status_changed_at = CASE WHEN status = $4 THEN status_changed_at ELSE now() END,
                       updated_at = now()
                   WHERE id = $1 AND status = $3
                     AND CASE WHEN $2::text IS NULL
                              THEN lease_expires_at IS NULL OR lease_expires_at < now()
                              ELSE lease_owner = $2 END
                   RETURNING id
               ), logged AS (
                   INSERT INTO instance_events (instance_id, from_status, to_status, step, reason, detail, actor)
                   SELECT id, $3, $4, $5, $7, $8, $9 FROM moved WHERE $3 <> $4
               ), breaker_closed AS (
                   UPDATE pool_state SET consecutive_failures = 0, breaker_open_until = NULL,
                       updated_at = now()
                   WHERE id AND $3 = 'provisioning' AND $4 = 'idle' AND EXISTS (SELECT 1 FROM moved)
                     AND (consecutive_failures <> 0 OR breaker_open_until IS NOT NULL)
               ), breaker_event AS (
                   -- The statement's snapshot: the breaker as it was before this move.
                   INSERT INTO pool_events (kind, actor, detail)
                   SELECT 'breaker', $9, jsonb_build_object('state', 'closed', 'instanceId', $1::text)
                   FROM pool_state
                   WHERE id AND $3 = 'provisioning' AND $4 = 'idle' AND EXISTS (SELECT 1 FROM moved)
                     AND breaker_open_until IS NOT NULL
               )
               SELECT EXISTS (SELECT 1 FROM moved) AS "moved!",
                      -- The statement's snapshot: the breaker as it was before this move.
                      (SELECT breaker_open_until IS NOT NULL FROM pool_state WHERE id) AS "was_open!""#,
            fence.id,
            fence.owner,
            fence.status.as_str(),
            to.as_str(),
            step.map(Step::as_str),
            secs(delay),
            reason.as_str(),
            detail,
            fence.actor().to_string(),
        )
        .fetch_one(&self.pool)
        .await?;
        if moved.moved && moved.was_open && fence.status == Status::Provisioning && to == Status::Idle {
            tracing::info!(instance = %fence.id, "circuit breaker closed: an instance became idle");
        }
        Ok(moved.moved)
    }

    async fn begin_recycle(
        &self,
        fence: &Fence,
        (to, step): (Status, Step),
        token: &SecretString,
        (reason, detail): (Reason, Option<&str>),
        ends: Option<ClaimEnd>,
    ) -> Result<bool, StoreError> {
        let moved = sqlx::query_scalar!(
            r#"WITH moved AS (
                   UPDATE instances SET
                       status = $5, step = $6, attempts = 0, last_error = NULL,
                       lease_owner = NULL, lease_expires_at = NULL, next_run_at = now(),
                       step_started_at = now(), status_changed_at = now(), updated_at = now(),
                       gateway_token = $4, agent_name = NULL, instructions = NULL, join_url = NULL,
                       invite_url = NULL, conversation_id = NULL, join_status = NULL, claim_id = NULL,
                       claimed_at = NULL, heartbeat_failures = 0, heartbeat_recoveries = 0,
                       retired_openrouter_key_hash = COALESCE(openrouter_key_hash, retired_openrouter_key_hash),
                       openrouter_key_hash = NULL, openrouter_key = NULL,
                       retired_agentmail_inbox_id = COALESCE(agentmail_inbox_id, retired_agentmail_inbox_id),
                       agentmail_inbox_id = NULL, agentmail_client_id = NULL, claim_expires_at = NULL
                   WHERE id = $1 AND status = $3
                     AND CASE WHEN $2::text IS NULL
                              THEN lease_expires_at IS NULL OR lease_expires_at < now()
                              ELSE lease_owner = $2 END
                     AND ($9::uuid IS NULL OR claim_id = $9)
                     AND (NOT $11 OR claim_expires_at <= now())
                   RETURNING id
               ), logged AS (
                   INSERT INTO instance_events (instance_id, from_status, to_status, step, reason, detail, actor)
                   SELECT id, $3, $5, $6, $7, $8, $12 FROM moved
               ), ended AS (
                   UPDATE claims SET status = $10, error = $8, finished_at = COALESCE(finished_at, now())
                   WHERE id = $9 AND EXISTS (SELECT 1 FROM moved)
               )
               SELECT EXISTS (SELECT 1 FROM moved) AS "moved!""#,
            fence.id,
            fence.owner,
            fence.status.as_str(),
            token.expose_secret(),
            to.as_str(),
            step.as_str(),
            reason.as_str(),
            detail,
            ends.map(|e| e.claim_id),
            ends.map(|e| e.status.as_str()),
            ends.is_some_and(|e| e.only_if_expired),
            fence.actor().to_string(),
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(moved)
    }

    async fn retry(
        &self,
        fence: &Fence,
        step: Step,
        error: &str,
        delay: Duration,
    ) -> Result<bool, StoreError> {
        let moved = sqlx::query_scalar!(
            r#"WITH moved AS (
                   UPDATE instances SET
                       attempts = attempts + 1, last_error = $3,
                       lease_owner = NULL, lease_expires_at = NULL,
                       next_run_at = now() + make_interval(secs => $4), updated_at = now()
                   WHERE id = $1 AND lease_owner = $2
                   RETURNING id
               ), logged AS (
                   INSERT INTO instance_events (instance_id, from_status, to_status, step, reason, detail, actor, kind)
                   SELECT id, $5, $5, $6, 'step_failed', $3, $7, 'step_failed' FROM moved
               )
               SELECT EXISTS (SELECT 1 FROM moved) AS "moved!""#,
            fence.id,
            fence.owner,
            error,
            secs(delay),
            fence.status.as_str(),
            step.as_str(),
            fence.actor().to_string(),
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(moved)
    }

    async fn remove(&self, fence: &Fence, reason: Reason, detail: Option<&str>) -> Result<bool, StoreError> {
        let moved = sqlx::query_scalar!(
            r#"WITH removed AS (
                   DELETE FROM instances
                   WHERE id = $1 AND status = $3
                     AND CASE WHEN $2::text IS NULL
                              THEN lease_expires_at IS NULL OR lease_expires_at < now()
                              ELSE lease_owner = $2 END
                   RETURNING id
               ), logged AS (
                   INSERT INTO instance_events (instance_id, from_status, to_status, step, reason, detail, actor)
                   SELECT id, $3, 'destroyed', NULL, $4, $5, $6 FROM removed
               )
               SELECT EXISTS (SELECT 1 FROM removed) AS "moved!""#,
            fence.id,
            fence.owner,
            fence.status.as_str(),
            reason.as_str(),
            detail,
            fence.actor().to_string(),
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(moved)
    }
}
