//! Instance rows as the sweeps, the dashboard and the operator read them. Every write is a
//! lease's (leases.rs, records.rs), the claim's (claiming.rs) or a refill's (pool_state.rs).

use std::time::Duration;

use time::OffsetDateTime;

use super::{Instance, Status, Step, Store, StoreError, secs};

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

impl Store {
    pub async fn instance(&self, id: &str) -> Result<Option<Instance>, StoreError> {
        let instance = sqlx::query_as!(
            Instance,
            r#"SELECT id, provider, provider_ref, sprite_name, url, status AS "status: _",
                   step AS "step: _", attempts, lease_owner, lease_expires_at, next_run_at, hop,
                   step_started_at, last_error, golden_checkpoint_id, gateway_token AS "gateway_token: _",
                   agent_name, instructions, join_url, invite_url, conversation_id, join_status,
                   claim_id, openclaw_git_ref, heartbeat_failures, heartbeat_recoveries,
                   last_heartbeat_at, sprite_created_at, created_at, ready_at, claimed_at,
                   status_changed_at, updated_at, openrouter_key_hash, openrouter_key AS "openrouter_key: _",
                   agentmail_inbox_id, openrouter_key_requested_at, agentmail_client_id,
                   retired_openrouter_key_hash, retired_agentmail_inbox_id, claim_expires_at,
                   runtime_image
               FROM instances WHERE id = $1"#,
            id
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(instance)
    }

    pub async fn instances(&self) -> Result<Vec<Instance>, StoreError> {
        let instances = sqlx::query_as!(
            Instance,
            r#"SELECT id, provider, provider_ref, sprite_name, url, status AS "status: _",
                   step AS "step: _", attempts, lease_owner, lease_expires_at, next_run_at, hop,
                   step_started_at, last_error, golden_checkpoint_id, gateway_token AS "gateway_token: _",
                   agent_name, instructions, join_url, invite_url, conversation_id, join_status,
                   claim_id, openclaw_git_ref, heartbeat_failures, heartbeat_recoveries,
                   last_heartbeat_at, sprite_created_at, created_at, ready_at, claimed_at,
                   status_changed_at, updated_at, openrouter_key_hash, openrouter_key AS "openrouter_key: _",
                   agentmail_inbox_id, openrouter_key_requested_at, agentmail_client_id,
                   retired_openrouter_key_hash, retired_agentmail_inbox_id, claim_expires_at,
                   runtime_image
               FROM instances ORDER BY created_at, id"#
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(instances)
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
        let rows = sqlx::query_as!(
            Known,
            r#"SELECT id, provider, sprite_name, status AS "status: _", step AS "step: _", sprite_created_at,
                      (lease_expires_at IS NOT NULL AND lease_expires_at >= now()) AS "leased!"
               FROM instances ORDER BY id"#
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// How many instances are in each status (absent statuses are zero).
    pub async fn counts(&self) -> Result<Vec<(Status, i64)>, StoreError> {
        let rows = sqlx::query!(
            r#"SELECT status AS "status: Status", count(*) AS "n!" FROM instances GROUP BY status"#
        )
        .fetch_all(&self.pool)
        .await?;
        let mut counts: Vec<(Status, i64)> = Status::ALL.iter().map(|s| (*s, 0)).collect();
        for row in rows {
            if let Some(slot) = counts.iter_mut().find(|(s, _)| *s == row.status) {
                slot.1 = row.n;
            }
        }
        Ok(counts)
    }

    /// Up to `limit` idle instances (all when `None`), oldest first: what a drain takes.
    pub async fn idle_ids(&self, limit: Option<i64>) -> Result<Vec<String>, StoreError> {
        let ids = sqlx::query_scalar!(
            "SELECT id FROM instances WHERE status = 'idle' ORDER BY ready_at, id LIMIT $1",
            limit,
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(ids)
    }
}
