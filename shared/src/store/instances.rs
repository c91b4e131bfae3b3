//! Instance rows: creation, leases, fenced transitions, and the reads the sweeps need.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::PgConnection;
use time::OffsetDateTime;

use super::events::{self, Entry};
use super::{Instance, InstanceRow, Status, Step, Store, StoreError, parse_status, parse_step, secs};

/// Which writer may change a row. Every fence also names the status the writer saw, so a row
/// that moved on since is never overwritten.
#[derive(Debug, Clone, Copy)]
pub enum Fence<'a> {
    /// The writer holds the lease (a step in progress).
    Lease { owner: &'a str, status: Status },
    /// Nobody holds a live lease and the row is still in `status` (sweeps, operator actions).
    Free { status: Status },
}

impl<'a> Fence<'a> {
    fn parts(self) -> (Option<&'a str>, &'static str) {
        match self {
            Fence::Lease { owner, status } => (Some(owner), status.as_str()),
            Fence::Free { status } => (None, status.as_str()),
        }
    }

    fn status(self) -> Status {
        match self {
            Fence::Lease { status, .. } | Fence::Free { status } => status,
        }
    }
}

/// What reconcile needs of every row.
#[derive(Debug, Clone)]
pub struct Known {
    pub id: String,
    /// The provider the row's machine lives on; reconcile only judges its own provider's rows.
    pub provider: String,
    pub sprite_name: String,
    pub status: Status,
    pub step: Option<Step>,
    pub sprite_created_at: Option<OffsetDateTime>,
    pub leased: bool,
}

/// A change of status (and the step that comes with it), with the reason for the history.
pub(crate) struct Move<'a> {
    pub to: Status,
    pub step: Option<Step>,
    pub delay: Duration,
    pub reason: &'a str,
    pub detail: Option<&'a str>,
}

async fn log_move(
    conn: &mut PgConnection,
    id: &str,
    from: Status,
    to: Status,
    step: Option<Step>,
    reason: &str,
    detail: Option<&str>,
) -> Result<(), StoreError> {
    let entry = Entry {
        instance_id: id,
        from: Some(from.as_str()),
        to: to.as_str(),
        step: step.map(Step::as_str),
        reason,
        detail,
    };
    events::append(conn, entry).await
}

impl Store {
    pub async fn instance(&self, id: &str) -> Result<Option<Instance>, StoreError> {
        let row = sqlx::query_as!(InstanceRow, "SELECT * FROM instances WHERE id = $1", id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(Instance::try_from).transpose()
    }

    pub async fn instances(&self) -> Result<Vec<Instance>, StoreError> {
        let rows = sqlx::query_as!(InstanceRow, "SELECT * FROM instances ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(Instance::try_from).collect()
    }

    /// Takes the lease on a due step (ARCHITECTURE §4 rule 1). `None`: another worker holds it,
    /// the step is not due yet, or the instance is at rest.
    pub async fn take_lease(
        &self,
        id: &str,
        owner: &str,
        ttl: Duration,
        hop: i32,
    ) -> Result<Option<Instance>, StoreError> {
        let row = sqlx::query_as!(
            InstanceRow,
            "UPDATE instances
             SET lease_owner = $2, lease_expires_at = now() + make_interval(secs => $3),
                 hop = $4, updated_at = now()
             WHERE id = $1 AND step IS NOT NULL
               AND (lease_expires_at IS NULL OR lease_expires_at < now())
               AND (next_run_at IS NULL OR next_run_at <= now())
             RETURNING *",
            id,
            owner,
            secs(ttl),
            hop,
        )
        .fetch_optional(&self.pool)
        .await?;
        row.map(Instance::try_from).transpose()
    }

    /// Keeps a lease alive through a long step. `false`: the lease was lost.
    pub async fn extend_lease(&self, id: &str, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        let done = sqlx::query!(
            "UPDATE instances SET lease_expires_at = now() + make_interval(secs => $3)
             WHERE id = $1 AND lease_owner = $2",
            id,
            owner,
            secs(ttl),
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Moves to a new status and/or step and releases the lease; `false` if the fence failed.
    pub(crate) async fn transition(
        &self,
        id: &str,
        fence: Fence<'_>,
        change: Move<'_>,
    ) -> Result<bool, StoreError> {
        let (owner, from) = fence.parts();
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query!(
            "UPDATE instances SET
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
                        ELSE lease_owner = $2 END",
            id,
            owner,
            from,
            change.to.as_str(),
            change.step.map(Step::as_str),
            secs(change.delay),
        )
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        if fence.status() != change.to {
            log_move(&mut tx, id, fence.status(), change.to, change.step, change.reason, change.detail)
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Starts a recycle: forgets the conversation and sets the token the restored instance will
    /// be given, so whoever held the old one can no longer reach it. The previous tenant's
    /// OpenRouter key and inbox become retired handles, deleted by `rotate_resources` (or by a
    /// destroy) and replaced by new ones (issue 14.3).
    /// Forgets the claim and starts `first`: a restore (`recycling`/`restore`) where the
    /// provider has checkpoints, a replacement (`destroying`/`destroy`) where it has none.
    pub(crate) async fn begin_recycle(
        &self,
        id: &str,
        fence: Fence<'_>,
        new_token: &SecretString,
        first: (Status, Step),
        reason: &str,
        detail: Option<&str>,
    ) -> Result<bool, StoreError> {
        let (owner, from) = fence.parts();
        let (to, step) = first;
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query!(
            "UPDATE instances SET
                status = $5, step = $6, attempts = 0, last_error = NULL,
                lease_owner = NULL, lease_expires_at = NULL, next_run_at = now(),
                step_started_at = now(), status_changed_at = now(), updated_at = now(),
                gateway_token = $4, agent_name = NULL, instructions = NULL, join_url = NULL,
                invite_url = NULL, conversation_id = NULL, join_status = NULL, claim_id = NULL,
                claimed_at = NULL, heartbeat_failures = 0, heartbeat_recoveries = 0,
                retired_openrouter_key_hash = COALESCE(openrouter_key_hash, retired_openrouter_key_hash),
                openrouter_key_hash = NULL, openrouter_key = NULL,
                retired_agentmail_inbox_id = COALESCE(agentmail_inbox_id, retired_agentmail_inbox_id),
                agentmail_inbox_id = NULL, agentmail_client_id = NULL
             WHERE id = $1 AND status = $3
               AND CASE WHEN $2::text IS NULL
                        THEN lease_expires_at IS NULL OR lease_expires_at < now()
                        ELSE lease_owner = $2 END",
            id,
            owner,
            from,
            new_token.expose_secret(),
            to.as_str(),
            step.as_str(),
        )
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        log_move(&mut tx, id, fence.status(), to, Some(step), reason, detail).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// A failed attempt: counted, kept for the dashboard, retried after `delay`.
    pub(crate) async fn step_failed(
        &self,
        id: &str,
        owner: &str,
        status: Status,
        step: Step,
        error: &str,
        delay: Duration,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query!(
            "UPDATE instances SET
                attempts = attempts + 1, last_error = $3,
                lease_owner = NULL, lease_expires_at = NULL,
                next_run_at = now() + make_interval(secs => $4), updated_at = now()
             WHERE id = $1 AND lease_owner = $2",
            id,
            owner,
            error,
            secs(delay),
        )
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        log_move(&mut tx, id, status, status, Some(step), "step_failed", Some(error)).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Not done yet (a wait, a running install): run the same step again after `delay`.
    pub(crate) async fn step_wait(&self, id: &str, owner: &str, delay: Duration) -> Result<bool, StoreError> {
        let done = sqlx::query!(
            "UPDATE instances SET
                lease_owner = NULL, lease_expires_at = NULL,
                next_run_at = now() + make_interval(secs => $3), updated_at = now()
             WHERE id = $1 AND lease_owner = $2",
            id,
            owner,
            secs(delay),
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn set_machine(
        &self,
        id: &str,
        owner: &str,
        url: &str,
        provider_ref: Option<&str>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query!(
            "UPDATE instances SET url = $3, provider_ref = $4,
                sprite_created_at = COALESCE(sprite_created_at, now()), updated_at = now()
             WHERE id = $1 AND lease_owner = $2",
            id,
            owner,
            url,
            provider_ref,
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn set_checkpoint(
        &self,
        id: &str,
        owner: &str,
        checkpoint: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query!(
            "UPDATE instances SET golden_checkpoint_id = $3, updated_at = now()
             WHERE id = $1 AND lease_owner = $2",
            id,
            owner,
            checkpoint,
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The instance is gone for good; its history stays.
    pub(crate) async fn delete_instance(
        &self,
        id: &str,
        fence: Fence<'_>,
        reason: &str,
        detail: Option<&str>,
    ) -> Result<bool, StoreError> {
        let (owner, from) = fence.parts();
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query!(
            "DELETE FROM instances
             WHERE id = $1 AND status = $3
               AND CASE WHEN $2::text IS NULL
                        THEN lease_expires_at IS NULL OR lease_expires_at < now()
                        ELSE lease_owner = $2 END",
            id,
            owner,
            from,
        )
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        let entry = Entry { instance_id: id, from: Some(from), to: "destroyed", step: None, reason, detail };
        events::append(&mut tx, entry).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Steps that are due and that nobody holds (never started, lost event, dead worker).
    pub async fn due_steps(&self, limit: i64) -> Result<Vec<String>, StoreError> {
        let ids = sqlx::query_scalar!(
            "SELECT id FROM instances
             WHERE step IS NOT NULL AND next_run_at <= now()
               AND (lease_expires_at IS NULL OR lease_expires_at < now())
             ORDER BY next_run_at LIMIT $1",
            limit,
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(ids)
    }

    /// Unleased instances that have been in `status` longer than `older_than`.
    pub async fn lingering(&self, status: Status, older_than: Duration) -> Result<Vec<String>, StoreError> {
        let ids = sqlx::query_scalar!(
            "SELECT id FROM instances
             WHERE status = $1 AND status_changed_at < now() - make_interval(secs => $2)
               AND (lease_expires_at IS NULL OR lease_expires_at < now())
             ORDER BY status_changed_at",
            status.as_str(),
            secs(older_than),
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(ids)
    }

    pub async fn known_instances(&self) -> Result<Vec<Known>, StoreError> {
        let rows = sqlx::query!(
            r#"SELECT id, provider, sprite_name, status, step, sprite_created_at,
                      (lease_expires_at IS NOT NULL AND lease_expires_at >= now()) AS "leased!"
               FROM instances ORDER BY id"#
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(Known {
                    status: parse_status(&r.status)?,
                    step: parse_step(r.step.as_deref())?,
                    id: r.id,
                    provider: r.provider,
                    sprite_name: r.sprite_name,
                    sprite_created_at: r.sprite_created_at,
                    leased: r.leased,
                })
            })
            .collect()
    }

    /// How many instances are in each status (absent statuses are zero).
    pub async fn counts(&self) -> Result<Vec<(Status, i64)>, StoreError> {
        let rows = sqlx::query!(r#"SELECT status, count(*) AS "n!" FROM instances GROUP BY status"#)
            .fetch_all(&self.pool)
            .await?;
        let mut counts: Vec<(Status, i64)> = Status::ALL.iter().map(|s| (*s, 0)).collect();
        for row in rows {
            let status = parse_status(&row.status)?;
            if let Some(slot) = counts.iter_mut().find(|(s, _)| *s == status) {
                slot.1 = row.n;
            }
        }
        Ok(counts)
    }

    /// Moves up to `limit` idle instances (all when `None`) to destroying, oldest first.
    pub(crate) async fn drain_idle(
        &self,
        limit: Option<i64>,
        reason: &str,
    ) -> Result<Vec<String>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let ids = sqlx::query_scalar!(
            "UPDATE instances SET
                status = 'destroying', step = 'destroy', attempts = 0, next_run_at = now(),
                step_started_at = now(), status_changed_at = now(), updated_at = now()
             WHERE id IN (SELECT id FROM instances WHERE status = 'idle'
                          ORDER BY ready_at, id LIMIT $1 FOR UPDATE SKIP LOCKED)
             RETURNING id",
            limit,
        )
        .fetch_all(&mut *tx)
        .await?;
        for id in &ids {
            log_move(&mut tx, id, Status::Idle, Status::Destroying, Some(Step::Destroy), reason, None)
                .await?;
        }
        tx.commit().await?;
        Ok(ids)
    }
}
