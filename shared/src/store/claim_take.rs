//! A claim's two statements (issue 13: a claim in three round trips): taking an idle instance
//! (a current one before a stale one during a rollout) records the claim, moves the instance to
//! `claiming` under the caller's lease and logs the move; recording the gateway's answer moves
//! it to `claimed`, logs it and ends the claim. Both lines name the claim's actor (issue 16.2).
//! The fences and the other moves are in leases.rs.

use std::time::Duration;

use super::claims::NewClaim;
use super::leases::{Answered, Fence};
use super::{Instance, Status, Step, Store, StoreError, secs};
use crate::lifecycle::Actor;

/// What an instance built now would be made of besides the stored settings (engine/rollout.rs):
/// with the settings document the statement reads, it names the desired version.
pub struct WantedVersion<'a> {
    /// What follows the ref and the image in a version.
    pub build: &'a str,
    /// The environment's runtime image (`None`: the provider runs no image).
    pub image: Option<&'a str>,
}

impl Store {
    /// Takes an idle instance for `claim` under a lease of `owner`, in one statement: one whose
    /// last heartbeat was answered if any is free, else any. Among those, an awake one first
    /// (hibernation), then, during a rollout, one built from the desired version (`wanted`)
    /// before a stale one, then the oldest. A stale one is still taken when it is all there is.
    /// The first attempt also records the claim: `pending` with its instance, or `failed` with
    /// "no idle instance" when none was free. A later attempt (the same claim id) only moves the
    /// claim to the instance it now has.
    pub(crate) async fn take_for_claim(
        &self,
        owner: String,
        ttl: Duration,
        step: Step,
        claim: &NewClaim<'_>,
        wanted: &WantedVersion<'_>,
        actor: Actor,
    ) -> Result<Option<(Fence, Instance)>, StoreError> {
        let instance = sqlx::query_as!(
            Instance,
            r#"WITH lifetime AS (
                   -- A later attempt keeps the claim's expiry; a first one takes the request's
                   -- ttlSeconds, else the pool's claimTtlSeconds, else none.
                   SELECT CASE WHEN EXISTS (SELECT 1 FROM claims WHERE id = $4)
                               THEN (SELECT expires_at FROM claims WHERE id = $4)
                               ELSE now() + make_interval(secs => COALESCE($10::float8,
                                   (SELECT (document->>'claimTtlSeconds')::float8
                                    FROM pool_settings WHERE id)))
                          END AS expires_at
               ), desired AS (
                   SELECT pool_version(document, '', $11, $12) AS version FROM pool_settings WHERE id
               ), taken AS (
                   UPDATE instances SET
                       status = 'claiming', step = $3, attempts = 0, hop = 0, last_error = NULL,
                       lease_owner = $1, lease_expires_at = now() + make_interval(secs => $2),
                       next_run_at = now(), step_started_at = now(), status_changed_at = now(),
                       updated_at = now(), claim_id = $4, agent_name = $5, instructions = $6,
                       join_url = $7, claim_expires_at = (SELECT expires_at FROM lifetime)
                   WHERE id = COALESCE(
                       (SELECT id FROM instances WHERE status = 'idle' AND heartbeat_failures = 0
                        ORDER BY hot DESC, build_version = (SELECT version FROM desired) IS TRUE DESC,
                                 ready_at, id LIMIT 1 FOR UPDATE SKIP LOCKED),
                       (SELECT id FROM instances WHERE status = 'idle'
                        ORDER BY hot DESC, build_version = (SELECT version FROM desired) IS TRUE DESC,
                                 ready_at, id LIMIT 1 FOR UPDATE SKIP LOCKED),
                       -- All idle rows locked (other claims; a sweep's update for a few ms):
                       -- wait, not 503. A row a claim took is no longer idle, and is passed over.
                       (SELECT id FROM instances WHERE status = 'idle'
                        ORDER BY hot DESC, build_version = (SELECT version FROM desired) IS TRUE DESC,
                                 ready_at, id LIMIT 1 FOR UPDATE))
                   RETURNING *
               ), recorded AS (
                   INSERT INTO claims
                       (id, agent_name, instructions, join_url, status, attempts, instance_id, error, finished_at,
                        idempotency_key, request_digest, expires_at)
                   -- A refused claim keeps no instructions: only what explains the 503. Nor
                   -- its key: a retry after the 503 may take an instance.
                   SELECT $4, $5, CASE WHEN taken.id IS NULL THEN '' ELSE $6 END, $7,
                          CASE WHEN taken.id IS NULL THEN 'failed' ELSE 'pending' END,
                          CASE WHEN taken.id IS NULL THEN 0 ELSE 1 END,
                          taken.id,
                          CASE WHEN taken.id IS NULL THEN 'no idle instance' END,
                          CASE WHEN taken.id IS NULL THEN now() END,
                          CASE WHEN taken.id IS NULL THEN NULL ELSE $8 END, $9, taken.claim_expires_at
                   FROM (VALUES (1)) AS one (x) LEFT JOIN taken ON true
                   ON CONFLICT (id) DO UPDATE
                       SET instance_id = EXCLUDED.instance_id, attempts = claims.attempts + 1
                       WHERE claims.status = 'pending' AND EXCLUDED.instance_id IS NOT NULL
               ), logged AS (
                   INSERT INTO instance_events (instance_id, from_status, to_status, step, reason, detail, actor)
                   SELECT id, 'idle', 'claiming', $3, 'claim', 'claim ' || $4::text, $13 FROM taken
               )
               SELECT id AS "id!", provider AS "provider!", provider_ref, sprite_name AS "sprite_name!",
                      url, status AS "status!: _", step AS "step: _", attempts AS "attempts!", lease_owner,
                      lease_expires_at, next_run_at, hop AS "hop!", step_started_at, last_error,
                      golden_checkpoint_id, gateway_token AS "gateway_token!: _", agent_name,
                      instructions, join_url, invite_url, conversation_id, join_status, claim_id,
                      openclaw_git_ref AS "openclaw_git_ref!",
                      heartbeat_failures AS "heartbeat_failures!",
                      heartbeat_recoveries AS "heartbeat_recoveries!", last_heartbeat_at,
                      sprite_created_at, created_at AS "created_at!", ready_at, claimed_at,
                      status_changed_at AS "status_changed_at!", updated_at AS "updated_at!",
                      openrouter_key_hash, openrouter_key AS "openrouter_key: _", agentmail_inbox_id,
                      openrouter_key_requested_at, agentmail_client_id,
                      retired_openrouter_key_hash, retired_agentmail_inbox_id, claim_expires_at,
                   runtime_image
               FROM taken"#,
            owner,
            secs(ttl),
            step.as_str(),
            claim.id,
            claim.agent_name,
            claim.instructions,
            claim.join_url,
            claim.idempotency_key,
            claim.request_digest,
            claim.ttl.map(secs),
            wanted.build,
            wanted.image,
            actor.to_string(),
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(super::claims::duplicate_claim)?;
        Ok(instance.map(|i| (Fence::held(i.id.clone(), owner, Status::Claiming, actor), i)))
    }

    /// Records the gateway's answer: the instance `claiming` -> `claimed` (fenced on the lease), its event, and the claim's end, in one statement. `false`: the lease was
    /// lost meanwhile and nothing was written.
    pub(super) async fn record_claimed(
        &self,
        fence: &Fence,
        answered: &Answered<'_>,
    ) -> Result<bool, StoreError> {
        let moved = sqlx::query_scalar!(
            r#"WITH moved AS (
                   UPDATE instances SET
                       status = 'claimed', step = NULL, attempts = 0, last_error = NULL,
                       lease_owner = NULL, lease_expires_at = NULL, next_run_at = NULL,
                       step_started_at = NULL, status_changed_at = now(), updated_at = now(),
                       claimed_at = now(), conversation_id = $3, invite_url = $4, join_status = $5
                   WHERE id = $1 AND status = 'claiming' AND lease_owner = $2
                   RETURNING id
               ), logged AS (
                   INSERT INTO instance_events (instance_id, from_status, to_status, step, reason, detail, actor)
                   SELECT id, 'claiming', 'claimed', NULL, $5, $3, $8 FROM moved
               ), finished AS (
                   UPDATE claims SET status = $7, conversation_id = $3, invite_url = $4, error = NULL,
                       finished_at = now()
                   WHERE id = $6 AND status = 'pending' AND EXISTS (SELECT 1 FROM moved)
               )
               SELECT EXISTS (SELECT 1 FROM moved) AS "moved!""#,
            fence.id(),
            fence.owner(),
            answered.conversation_id,
            answered.invite_url,
            answered.reason.as_str(),
            answered.claim_id,
            answered.claim_status.as_str(),
            fence.actor().to_string(),
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(moved)
    }
}
