//! Growth kept bounded: finished claims, history lines, pool events and finished webhook
//! deliveries past the retention period go, a batch at a time, so a backlog (a first run on an old database) never holds one long
//! statement or lock.

use std::time::Duration;

use super::{Store, StoreError, secs};

/// What one prune removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Pruned {
    pub claims: u64,
    pub events: u64,
    /// The pool's own events (settings changes, breaker, drains, orphan deletions).
    pub pool_events: u64,
    /// Webhook deliveries delivered or given up.
    pub webhooks: u64,
}

impl Store {
    /// Deletes up to `batch` each of finished claims, history lines, pool events and finished
    /// deliveries older than `older_than`.
    pub(crate) async fn prune(&self, older_than: Duration, batch: i64) -> Result<Pruned, StoreError> {
        let claims = sqlx::query!(
            "DELETE FROM claims WHERE id IN (
                 SELECT id FROM claims
                 WHERE finished_at IS NOT NULL AND finished_at < now() - make_interval(secs => $1)
                 ORDER BY finished_at LIMIT $2)",
            secs(older_than),
            batch,
        )
        .execute(&self.pool)
        .await?;
        let events = sqlx::query!(
            "DELETE FROM instance_events WHERE id IN (
                 SELECT id FROM instance_events
                 WHERE at < now() - make_interval(secs => $1)
                 ORDER BY id LIMIT $2)",
            secs(older_than),
            batch,
        )
        .execute(&self.pool)
        .await?;
        let pool_events = sqlx::query!(
            "DELETE FROM pool_events WHERE id IN (
                 SELECT id FROM pool_events
                 WHERE at < now() - make_interval(secs => $1)
                 ORDER BY id LIMIT $2)",
            secs(older_than),
            batch,
        )
        .execute(&self.pool)
        .await?;
        let webhooks = sqlx::query!(
            "DELETE FROM webhook_outbox WHERE id IN (
                 SELECT id FROM webhook_outbox
                 WHERE status <> 'pending' AND created_at < now() - make_interval(secs => $1)
                 ORDER BY id LIMIT $2)",
            secs(older_than),
            batch,
        )
        .execute(&self.pool)
        .await?;
        Ok(Pruned {
            claims: claims.rows_affected(),
            events: events.rows_affected(),
            pool_events: pool_events.rows_affected(),
            webhooks: webhooks.rows_affected(),
        })
    }
}
